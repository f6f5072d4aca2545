//! The db worker: site databases and users on MariaDB/MySQL, over a real connection.
//! It verifies a db server (with the admin credentials it proves it can create a
//! database, create a user and grant it the database, then removes what it made), and
//! creates and drops sites' databases and users.

use berth_broker::worker::{StepContext, StepError, StepHandler, StepOk, WorkerConfig, run_worker};
use berth_contracts::steps::{DbServiceSpec, DbStep, SiteDbSpec, SiteSpec, Work};
use berth_contracts::{StepCommand, StepOutput};
use berth_secrets::SecretKey;
use rand::RngCore;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::{ConnectOptions, Connection};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct DbConfig {
    pub worker: WorkerConfig,
    /// Opens the sealed admin passwords that come with the steps.
    pub secret_key: SecretKey,
}

pub struct DbWorker {
    cfg: DbConfig,
}

/// MySQL error codes that no retry will fix: access denied (1045; 1698, which MariaDB gives
/// for an account with no password for this way in, and for some unknown users), no
/// privilege (1044, 1142, 1227).
const ACCESS_DENIED: [u16; 5] = [1044, 1045, 1142, 1227, 1698];

fn classify(what: &str, e: sqlx::Error) -> StepError {
    let msg = format!("{what}: {e}");
    match &e {
        sqlx::Error::Database(d) => {
            let code = d
                .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
                .map(|m| m.number())
                .unwrap_or(0);
            if ACCESS_DENIED.contains(&code) {
                StepError::Permanent(msg)
            } else {
                StepError::Transient(msg)
            }
        }
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Protocol(_) => {
            StepError::Transient(msg)
        }
        _ => StepError::Permanent(msg),
    }
}

impl DbWorker {
    pub fn new(cfg: DbConfig) -> Self {
        Self { cfg }
    }

    /// Connects as the admin of `server` with the sealed admin password of the command.
    async fn admin_connection_to(
        &self,
        server: Admin<'_>,
        cmd: &StepCommand,
        ctx: &StepContext,
    ) -> Result<MySqlConnection, StepError> {
        let Admin { host, port, user } = server;
        let password = match &cmd.secrets.db_admin {
            Some(s) => self.cfg.secret_key.open(s).map_err(|e| {
                StepError::Permanent(format!("cannot open the db admin password: {e}"))
            })?,
            None => String::new(),
        };
        let mut opts = MySqlConnectOptions::new()
            .host(host)
            .port(port)
            .username(user)
            .log_statements(tracing::log::LevelFilter::Off);
        // An empty password means none: sending "" would be a login *with* a password.
        if !password.is_empty() {
            opts = opts.password(&password);
        }
        let conn = tokio::time::timeout(Duration::from_secs(10), opts.connect())
            .await
            .map_err(|_| StepError::Transient(format!("connecting to {host}:{port} timed out")))?
            .map_err(|e| classify(&format!("connecting to {host}:{port} as {user}"), e))?;
        ctx.info(format!("connected to {host}:{port} as {user}"));
        Ok(conn)
    }

    async fn verify(
        &self,
        spec: &DbServiceSpec,
        cmd: &StepCommand,
        ctx: &StepContext,
    ) -> Result<StepOk, StepError> {
        let mut conn = self
            .admin_connection_to(Admin::of_server(spec), cmd, ctx)
            .await?;
        let name = verify_name(cmd.step_id);
        // A worker killed mid-verify left this step's database and user behind: its
        // redelivery (same step, same name) removes them first.
        drop_verify_leftovers(&mut conn, &name).await;
        let mut pw = [0u8; 16];
        rand::rng().fill_bytes(&mut pw);
        let password = hex_encode(&pw);
        let result = async {
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE `{name}`")))
                .execute(&mut conn)
                .await
                .map_err(|e| classify("create database", e))?;
            ctx.info(format!("created database {name}"));
            // The password is hex we just made; statement logging is off on this connection.
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "CREATE USER '{name}'@'%' IDENTIFIED BY '{password}'"
            )))
            .execute(&mut conn)
            .await
            .map_err(|e| masked(classify("create user", e), &password))?;
            ctx.info(format!("created user {name}"));
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "GRANT ALL PRIVILEGES ON `{}`.* TO '{name}'@'%'",
                grant_db(&name)
            )))
            .execute(&mut conn)
            .await
            .map_err(|e| classify("grant", e))?;
            ctx.info(format!("granted {name} all privileges on {name}"));
            Ok::<(), StepError>(())
        }
        .await;
        // Take back what was made, whatever happened above.
        drop_verify_leftovers(&mut conn, &name).await;
        ctx.info(format!("removed user and database {name}"));
        let _ = conn.close().await;
        result?;
        Ok(StepOk::default())
    }
}

/// The probe database and user of a server verify: named after its step, hex digits only
/// (safe to quote as identifiers), so that a redelivered step finds what a killed worker
/// made.
fn verify_name(step_id: uuid::Uuid) -> String {
    // The random end of a v7 uuid (its start is a timestamp).
    format!("berth_verify_{}", &step_id.simple().to_string()[20..])
}

async fn drop_verify_leftovers(conn: &mut sqlx::MySqlConnection, name: &str) {
    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP USER IF EXISTS '{name}'@'%'"
    )))
    .execute(&mut *conn)
    .await;
    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS `{name}`"
    )))
    .execute(&mut *conn)
    .await;
}

/// The db server and admin a step connects to.
#[derive(Debug, Clone, Copy)]
struct Admin<'a> {
    host: &'a str,
    port: u16,
    user: &'a str,
}

impl<'a> Admin<'a> {
    fn of_server(s: &'a DbServiceSpec) -> Self {
        Self {
            host: &s.host,
            port: s.port,
            user: &s.admin_user,
        }
    }

    fn of_site(db: &'a SiteDbSpec) -> Self {
        Self {
            host: &db.host,
            port: db.port,
            user: &db.admin_user,
        }
    }
}

/// The site database names and hosts of a site step, checked again here: they are
/// quoted into SQL, so only the characters berth itself generates are accepted.
struct SiteDb {
    name: String,
    user: String,
    hosts: Vec<String>,
}

fn site_db(db: &SiteDbSpec) -> Result<SiteDb, StepError> {
    let ident = |k: &str, v: &str| -> Result<String, StepError> {
        if (1..=64).contains(&v.len())
            && v.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            Ok(v.to_string())
        } else {
            Err(StepError::permanent(format!(
                "bad database identifier `{v}` for {k}"
            )))
        }
    };
    let hosts = db.grant_hosts.clone();
    if hosts.is_empty()
        || !hosts.iter().all(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'%'))
        })
    {
        return Err(StepError::permanent(format!("bad grant hosts {hosts:?}")));
    }
    Ok(SiteDb {
        name: ident("name", &db.name)?,
        user: ident("user", &db.user)?,
        hosts,
    })
}

/// Whether database `name` exists on the server.
async fn database_exists(conn: &mut MySqlConnection, name: &str) -> Result<bool, StepError> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
    )
    .bind(name)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| classify("look for the database", e))?;
    Ok(n > 0)
}

async fn exec(conn: &mut MySqlConnection, what: &str, sql: String) -> Result<(), StepError> {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&mut *conn)
        .await
        .map(|_| ())
        .map_err(|e| classify(what, e))
}

/// A step error with `secret` masked: a server's error may quote the statement it
/// refused, and a statement that sets a password holds it.
fn masked(e: StepError, secret: &str) -> StepError {
    match e {
        StepError::Permanent(m) => StepError::Permanent(berth_command::mask(&m, &[secret])),
        StepError::Transient(m) => StepError::Transient(berth_command::mask(&m, &[secret])),
    }
}

impl DbWorker {
    /// The site's password, opened from the command's sealed secrets; hex only (berth
    /// makes it so), because it is quoted into `IDENTIFIED BY`.
    fn site_password(&self, cmd: &StepCommand) -> Result<String, StepError> {
        self.cfg
            .secret_key
            .site_password(
                cmd.secrets.site_db.as_deref(),
                cmd.site_db_derivation().as_deref(),
            )
            .map_err(|e| StepError::permanent(format!("the site's password: {e}")))
    }

    /// Database, user (one per web host) and grants; each "if absent", so a redelivered
    /// step finds its own work and goes on.
    async fn site_db_create(
        &self,
        spec: &SiteSpec,
        cmd: &StepCommand,
        ctx: &StepContext,
    ) -> Result<StepOk, StepError> {
        let site = site_db(&spec.db)?;
        let password = self.site_password(cmd)?;
        let mut conn = self
            .admin_connection_to(Admin::of_site(&spec.db), cmd, ctx)
            .await?;
        // A database already there was made by an earlier delivery of this step, and later
        // steps may have filled it (an import): a redelivery must never drop it.
        let existed = database_exists(&mut conn, &site.name).await?;
        let made = self.make_site_db(&mut conn, &site, &password, ctx).await;
        if let Err(e) = &made
            && existed
        {
            ctx.warn(format!(
                "{}; database {} was there before this attempt: left as it is",
                e.message(),
                site.name
            ));
        } else if let Err(e) = &made {
            // A failed step is not taken back by the dispatcher: what it made goes now (the
            // database and users are this site's own, named with a fresh suffix).
            ctx.warn(format!("{}; taking back what this step made", e.message()));
            for host in &site.hosts {
                let _ = exec(
                    &mut conn,
                    "drop user",
                    format!("DROP USER IF EXISTS '{}'@'{host}'", site.user),
                )
                .await;
            }
            match exec(
                &mut conn,
                "drop database",
                format!("DROP DATABASE IF EXISTS `{}`", site.name),
            )
            .await
            {
                Ok(()) => ctx.info(format!("database {} dropped", site.name)),
                Err(e) => ctx.warn(format!("database {} stays: {}", site.name, e.message())),
            }
        }
        let _ = conn.close().await;
        made.map(|()| StepOk::default())
    }

    async fn make_site_db(
        &self,
        conn: &mut MySqlConnection,
        site: &SiteDb,
        password: &str,
        ctx: &StepContext,
    ) -> Result<(), StepError> {
        let conn = &mut *conn;
        let (db, user) = (&site.name, &site.user);
        exec(
            conn,
            "create database",
            format!("CREATE DATABASE IF NOT EXISTS `{db}` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"),
        )
        .await?;
        ctx.info(format!("database {db} ready"));
        for host in &site.hosts {
            exec(
                conn,
                "create user",
                format!("CREATE USER IF NOT EXISTS '{user}'@'{host}' IDENTIFIED BY '{password}'"),
            )
            .await
            .map_err(|e| masked(e, password))?;
            // A user left by an earlier attempt gets this attempt's password.
            exec(
                conn,
                "set password",
                format!("ALTER USER '{user}'@'{host}' IDENTIFIED BY '{password}'"),
            )
            .await
            .map_err(|e| masked(e, password))?;
            // A grant made before database names were escaped in grants covered every
            // name its pattern matched: it goes (absent, MariaDB says so; that is fine).
            let _ = exec(
                conn,
                "revoke",
                format!("REVOKE ALL PRIVILEGES ON `{db}`.* FROM '{user}'@'{host}'"),
            )
            .await;
            exec(
                conn,
                "grant",
                format!(
                    "GRANT ALL PRIVILEGES ON `{}`.* TO '{user}'@'{host}'",
                    grant_db(db)
                ),
            )
            .await?;
            ctx.info(format!("user {user}@{host} granted all on {db}"));
        }
        Ok(())
    }

    /// The site's users' grants as they must be (a site verify): all privileges on its own
    /// database, and no grant left from before database names were escaped in grants (one
    /// that covered every name its pattern matched). Changes nothing else.
    async fn site_db_grant(
        &self,
        spec: &SiteSpec,
        cmd: &StepCommand,
        ctx: &StepContext,
    ) -> Result<StepOk, StepError> {
        let site = site_db(&spec.db)?;
        let mut conn = self
            .admin_connection_to(Admin::of_site(&spec.db), cmd, ctx)
            .await?;
        let (db, user) = (&site.name, &site.user);
        for host in &site.hosts {
            if db.contains('_') {
                // An error is 1141, no such grant: as it should be.
                if exec(
                    &mut conn,
                    "revoke",
                    format!("REVOKE ALL PRIVILEGES ON `{db}`.* FROM '{user}'@'{host}'"),
                )
                .await
                .is_ok()
                {
                    ctx.warn(format!(
                        "user {user}@{host} had a grant on every database named like {db}: revoked"
                    ));
                }
            }
            exec(
                &mut conn,
                "grant",
                format!(
                    "GRANT ALL PRIVILEGES ON `{}`.* TO '{user}'@'{host}'",
                    grant_db(db)
                ),
            )
            .await?;
            ctx.info(format!("user {user}@{host} granted all on {db} only"));
        }
        let _ = conn.close().await;
        Ok(StepOk::default())
    }

    /// Revokes and drops the site's users and drops its database (absent ones are fine).
    async fn site_db_drop(
        &self,
        spec: &SiteSpec,
        cmd: &StepCommand,
        ctx: &StepContext,
    ) -> Result<StepOk, StepError> {
        let site = site_db(&spec.db)?;
        let mut conn = self
            .admin_connection_to(Admin::of_site(&spec.db), cmd, ctx)
            .await?;
        for host in &site.hosts {
            exec(
                &mut conn,
                "drop user",
                format!("DROP USER IF EXISTS '{}'@'{host}'", site.user),
            )
            .await?;
        }
        ctx.info(format!("users {} dropped", site.user));
        exec(
            &mut conn,
            "drop database",
            format!("DROP DATABASE IF EXISTS `{}`", site.name),
        )
        .await?;
        ctx.info(format!("database {} dropped", site.name));
        let _ = conn.close().await;
        Ok(StepOk::default())
    }
}

/// How long the size query may take: `information_schema.TABLES` opens every table's
/// definition, so a database of very many tables is slow to list; past this the size is
/// reported unknown (the last measure stands) rather than holding the verify up.
const USAGE_QUERY_TIMEOUT: Duration = Duration::from_secs(20);

/// The size of one database as the server accounts it: data and indexes of its tables
/// (InnoDB's figures come from its statistics, refreshed as tables change).
const USAGE_SQL: &str = "SELECT CAST(COALESCE(SUM(DATA_LENGTH + INDEX_LENGTH), 0) AS SIGNED) \
                         FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?";

impl DbWorker {
    /// The size of the site's database, read by the admin from `information_schema` (the
    /// site's own name bound as a parameter; nothing of another schema is read).
    async fn site_db_usage(
        &self,
        spec: &SiteSpec,
        cmd: &StepCommand,
        ctx: &StepContext,
    ) -> Result<StepOk, StepError> {
        let site = site_db(&spec.db)?;
        let mut conn = self
            .admin_connection_to(Admin::of_site(&spec.db), cmd, ctx)
            .await?;
        let query = sqlx::query_scalar::<_, i64>(USAGE_SQL)
            .bind(&site.name)
            .fetch_one(&mut conn);
        let bytes = match tokio::time::timeout(USAGE_QUERY_TIMEOUT, query).await {
            Ok(found) => found.map_err(|e| classify("measure the database", e))?,
            Err(_) => {
                // The connection is dropped mid-query, not closed: the server ends it.
                ctx.warn(format!(
                    "database {}: its size was not known within {} s; the last measure stands",
                    site.name,
                    USAGE_QUERY_TIMEOUT.as_secs()
                ));
                return Ok(StepOk::new(StepOutput::DbMeasured { bytes: None }));
            }
        };
        ctx.info(format!(
            "database {}: {bytes} bytes of data and indexes",
            site.name
        ));
        let _ = conn.close().await;
        Ok(StepOk::new(StepOutput::DbMeasured { bytes: Some(bytes) }))
    }
}

/// A database name as a GRANT must give it: there `_` and `%` are wildcards (`GRANT … ON
/// \`a_b\`.*` also grants `axb`, `a-b`…, and the right to create them), so they are escaped
/// and the grant is of this one database only.
fn grant_db(name: &str) -> String {
    name.replace('\\', "\\\\")
        .replace('_', "\\_")
        .replace('%', "\\%")
}

fn hex_encode(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl StepHandler for DbWorker {
    async fn handle(&self, cmd: &StepCommand, ctx: &StepContext) -> Result<StepOk, StepError> {
        let Work::Db(step) = &cmd.work else {
            return Err(StepError::permanent(format!(
                "this is the db worker; the step is for the {} worker",
                cmd.service()
            )));
        };
        match step {
            DbStep::Verify(spec) => self.verify(spec, cmd, ctx).await,
            DbStep::SiteDbCreate(spec) => self.site_db_create(spec, cmd, ctx).await,
            DbStep::SiteDbDrop(spec) => self.site_db_drop(spec, cmd, ctx).await,
            DbStep::SiteDbGrant(spec) => self.site_db_grant(spec, cmd, ctx).await,
            DbStep::SiteDbUsage(spec) => self.site_db_usage(spec, cmd, ctx).await,
        }
    }
}

pub async fn run(
    cfg: DbConfig,
    shutdown: CancellationToken,
) -> Result<(), berth_broker::BrokerError> {
    let worker = cfg.worker.clone();
    run_worker(worker, Arc::new(DbWorker::new(cfg)), shutdown).await
}

#[cfg(test)]
mod tests {
    use super::{SiteDbSpec, grant_db, site_db, verify_name};

    #[test]
    fn a_verify_probe_is_named_after_its_step_so_a_redelivery_finds_it() {
        let step = uuid::Uuid::now_v7();
        assert_eq!(verify_name(step), verify_name(step));
        assert_ne!(verify_name(step), verify_name(uuid::Uuid::now_v7()));
        let name = verify_name(step);
        assert!(
            name.starts_with("berth_verify_") && name.len() == 25,
            "{name}"
        );
        assert!(name[13..].bytes().all(|b| b.is_ascii_hexdigit()));
    }

    fn spec(name: &str, user: &str, hosts: &[&str]) -> SiteDbSpec {
        SiteDbSpec {
            service_type: "mysql".into(),
            host: "127.0.0.1".into(),
            port: 3306,
            admin_user: "root".into(),
            name: name.into(),
            user: user.into(),
            grant_hosts: hosts.iter().map(|h| h.to_string()).collect(),
        }
    }

    #[test]
    fn only_names_berth_makes_reach_the_sql() {
        let ok = site_db(&spec(
            "www_example_com_1a2b",
            "www_example_1a2b",
            &["%", "10.0.0.%"],
        ))
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(ok.name, "www_example_com_1a2b");
        assert_eq!(ok.hosts, ["%", "10.0.0.%"]);
        for bad in [
            spec("x`; DROP DATABASE mysql; --", "u", &["%"]),
            spec("db", "u'@'%", &["%"]),
            spec("", "u", &["%"]),
            spec(&"a".repeat(65), "u", &["%"]),
            spec("Db", "u", &["%"]),
            spec("db", "u", &[]),
            spec("db", "u", &["host' IDENTIFIED BY 'x"]),
            spec("db", "u", &[""]),
        ] {
            assert!(site_db(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_granted_database_name_matches_itself_only() {
        assert_eq!(
            grant_db("www_example_com_1a2b3c"),
            r"www\_example\_com\_1a2b3c"
        );
        assert_eq!(grant_db("a%b"), r"a\%b");
        assert_eq!(grant_db("plain"), "plain");
    }
}
