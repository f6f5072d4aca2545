//! The db worker: site databases and users on MariaDB/MySQL, over a real connection.
//! For now it verifies a db server: with the admin credentials it proves it can create a
//! database, create a user and grant it the database, then removes what it made.

use berth_broker::worker::{StepContext, StepError, StepHandler, StepOk, WorkerConfig, run_worker};
use berth_contracts::StepCommand;
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

/// MySQL error codes that no retry will fix.
const ACCESS_DENIED: [u16; 4] = [1044, 1045, 1142, 1227];

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

    async fn admin_connection(
        &self,
        cmd: &StepCommand,
        ctx: &StepContext,
    ) -> Result<MySqlConnection, StepError> {
        let host = cmd
            .args
            .get("host")
            .and_then(|v| v.as_str())
            .unwrap_or("127.0.0.1");
        let port = cmd
            .args
            .get("port")
            .and_then(|v| v.as_u64())
            .unwrap_or(3306) as u16;
        let user = cmd
            .args
            .get("admin_user")
            .and_then(|v| v.as_str())
            .unwrap_or("root");
        let password = match &cmd.sealed {
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

    async fn verify(&self, cmd: &StepCommand, ctx: &StepContext) -> Result<StepOk, StepError> {
        let mut conn = self.admin_connection(cmd, ctx).await?;
        let mut raw = [0u8; 6];
        rand::rng().fill_bytes(&mut raw);
        // Generated here from hex digits only: safe to quote as identifiers.
        let name = format!("berth_verify_{}", hex_encode(&raw));
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
            .map_err(|e| classify("create user", e))?;
            ctx.info(format!("created user {name}"));
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "GRANT ALL PRIVILEGES ON `{name}`.* TO '{name}'@'%'"
            )))
            .execute(&mut conn)
            .await
            .map_err(|e| classify("grant", e))?;
            ctx.info(format!("granted {name} all privileges on {name}"));
            Ok::<(), StepError>(())
        }
        .await;
        // Take back what was made, whatever happened above.
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP USER IF EXISTS '{name}'@'%'"
        )))
        .execute(&mut conn)
        .await;
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS `{name}`"
        )))
        .execute(&mut conn)
        .await;
        ctx.info(format!("removed user and database {name}"));
        let _ = conn.close().await;
        result?;
        Ok(StepOk::default())
    }
}

fn hex_encode(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl StepHandler for DbWorker {
    async fn handle(&self, cmd: &StepCommand, ctx: &StepContext) -> Result<StepOk, StepError> {
        match cmd.action.as_str() {
            "verify" => self.verify(cmd, ctx).await,
            other => Err(StepError::Permanent(format!(
                "the db worker has no action `{other}`"
            ))),
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
