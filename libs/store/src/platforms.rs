//! Platforms (Aegir's platform contexts) and their package registry.

use crate::servers::get_server;
use crate::{Result, Store, StoreError, conflict_on_unique};
use berth_contracts::{CronMethod, Installer, Package, PackageType, Platform};
use berth_hosting::facts::PlatformFacts;
use chrono::{DateTime, Utc};
use sqlx::PgConnection;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PlatformRow {
    pub name: String,
    pub root: String,
    pub web_server: String,
    pub installer: serde_json::Value,
    pub cron_method: String,
    pub status: String,
    pub locked: bool,
    pub drupal_major: Option<i32>,
    pub core_version: Option<String>,
    pub found_sites: serde_json::Value,
    pub verified_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub sites: i64,
}

const SELECT: &str = "SELECT p.*, (SELECT count(*) FROM sites s WHERE s.platform = p.name
       AND s.status NOT IN ('deleted', 'failed')) AS sites FROM platforms p";

impl PlatformRow {
    pub fn into_contract(self) -> Platform {
        Platform {
            name: self.name,
            root: self.root,
            web_server: self.web_server,
            installer: serde_json::from_value(self.installer).unwrap_or_default(),
            cron_method: CronMethod::parse(&self.cron_method).unwrap_or_default(),
            status: self.status,
            locked: self.locked,
            drupal_major: self.drupal_major,
            core_version: self.core_version,
            found_sites: serde_json::from_value(self.found_sites).unwrap_or_default(),
            sites: self.sites,
            verified_at: self.verified_at,
            created_at: self.created_at,
            updated_at: self.updated_at,
            task: None,
        }
    }
}

pub async fn insert_platform(
    conn: &mut PgConnection,
    name: &str,
    root: &str,
    web_server: &str,
    installer: &Installer,
    cron_method: CronMethod,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO platforms (name, root, web_server, installer, cron_method)
         VALUES ($1, $2, $3, $4, $5)",
    )
        .bind(name)
        .bind(root)
        .bind(web_server)
        .bind(serde_json::to_value(installer).expect("serialisable"))
        .bind(cron_method.as_str())
        .execute(&mut *conn)
        .await
        .map_err(|e| {
            conflict_on_unique(e, || {
                format!(
                    "a platform named `{name}` exists already, or another platform has root `{root}` on `{web_server}`"
                )
            })
        })?;
    Ok(())
}

/// The `(name, root)` of every platform (not deleted) on `web_server`, after taking the
/// transaction's lock on that server's roots: two platforms created at once are checked
/// one after the other, so they cannot nest.
pub async fn roots_on(conn: &mut PgConnection, web_server: &str) -> Result<Vec<(String, String)>> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('platform-roots'), hashtext($1))")
        .bind(web_server)
        .execute(&mut *conn)
        .await?;
    Ok(sqlx::query_as(
        "SELECT name, root FROM platforms WHERE web_server = $1 AND status <> 'deleted'
         ORDER BY name",
    )
    .bind(web_server)
    .fetch_all(&mut *conn)
    .await?)
}

pub async fn get_platform(conn: &mut PgConnection, name: &str) -> Result<Option<PlatformRow>> {
    Ok(
        sqlx::query_as::<_, PlatformRow>(sqlx::AssertSqlSafe(format!(
            "{SELECT} WHERE p.name = $1"
        )))
        .bind(name)
        .fetch_optional(&mut *conn)
        .await?,
    )
}

/// What the planner needs of a platform: its row and its web server.
pub async fn facts(conn: &mut PgConnection, name: &str) -> Result<Option<PlatformFacts>> {
    let Some(p) = get_platform(conn, name).await? else {
        return Ok(None);
    };
    let server = get_server(conn, &p.web_server).await?.ok_or_else(|| {
        StoreError::Corrupt(format!("platform {name}: no server {}", p.web_server))
    })?;
    Ok(Some(PlatformFacts {
        name: p.name,
        root: p.root,
        web_host: server.server.host.clone(),
        web_server: server.facts(),
        installer: serde_json::from_value(p.installer)
            .map_err(|e| StoreError::Corrupt(format!("platform {name}: its installer: {e}")))?,
        drupal_major: p.drupal_major,
        cron_method: CronMethod::parse(&p.cron_method).ok_or_else(|| {
            StoreError::Corrupt(format!("platform {name}: cron method `{}`", p.cron_method))
        })?,
    }))
}

/// Records a verify's scan: the package registry is replaced whole, and the sites found
/// in `sites/` that berth does not host are kept as importable.
pub async fn record_scan(
    conn: &mut PgConnection,
    name: &str,
    drupal_major: Option<i32>,
    core_version: Option<&str>,
    packages: &[Package],
    found_sites: &[String],
) -> Result<()> {
    let known: Vec<(String,)> = sqlx::query_as(
        "SELECT uri FROM sites WHERE platform = $1 AND status <> 'deleted'
                        UNION SELECT a.alias FROM site_aliases a JOIN sites s ON s.uri = a.site
                        WHERE s.platform = $1",
    )
    .bind(name)
    .fetch_all(&mut *conn)
    .await?;
    let found: Vec<&String> = found_sites
        .iter()
        .filter(|f| !known.iter().any(|(k,)| k == *f))
        .collect();
    sqlx::query(
        "UPDATE platforms SET drupal_major = $2, core_version = $3, found_sites = $4,
           verified_at = now(), updated_at = now() WHERE name = $1",
    )
    .bind(name)
    .bind(drupal_major)
    .bind(core_version)
    .bind(serde_json::to_value(&found).expect("serialisable"))
    .execute(&mut *conn)
    .await?;
    sqlx::query("DELETE FROM platform_packages WHERE platform = $1")
        .bind(name)
        .execute(&mut *conn)
        .await?;
    if packages.is_empty() {
        return Ok(());
    }
    let col = |f: fn(&Package) -> Option<String>| packages.iter().map(f).collect::<Vec<_>>();
    sqlx::query(
        "INSERT INTO platform_packages (platform, name, type, title, version, schema_version, path,
                                        languages, old_short_name)
         SELECT $1, n, t, ti, v, sv, p, string_to_array(l, ','), o
         FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::text[],
                     $8::text[], $9::text[]) AS u(n, t, ti, v, sv, p, l, o)
         ON CONFLICT DO NOTHING",
    )
    .bind(name)
    .bind(col(|p| Some(p.name.clone())))
    .bind(col(|p| Some(p.package_type.as_str().to_string())))
    .bind(col(|p| p.title.clone()))
    .bind(col(|p| p.version.clone()))
    .bind(
        packages
            .iter()
            .map(|p| p.schema_version)
            .collect::<Vec<_>>(),
    )
    .bind(col(|p| Some(p.path.clone())))
    .bind(col(|p| Some(p.languages.join(","))))
    .bind(col(|p| p.old_short_name.clone()))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn set_status(conn: &mut PgConnection, name: &str, status: &str) -> Result<()> {
    sqlx::query("UPDATE platforms SET status = $2, updated_at = now() WHERE name = $1")
        .bind(name)
        .bind(status)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct PackageRow {
    name: String,
    #[sqlx(rename = "type")]
    package_type: String,
    title: Option<String>,
    version: Option<String>,
    schema_version: Option<i64>,
    path: String,
    languages: Vec<String>,
    old_short_name: Option<String>,
}

pub async fn packages(conn: &mut PgConnection, name: &str) -> Result<Vec<Package>> {
    let rows = sqlx::query_as::<_, PackageRow>(
        "SELECT name, type, title, version, schema_version, path, languages, old_short_name
         FROM platform_packages WHERE platform = $1 ORDER BY type, name",
    )
    .bind(name)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Package {
            name: r.name,
            package_type: PackageType::parse(&r.package_type).unwrap_or(PackageType::Module),
            title: r.title,
            version: r.version,
            schema_version: r.schema_version,
            path: r.path,
            languages: r.languages.into_iter().filter(|l| !l.is_empty()).collect(),
            old_short_name: r.old_short_name,
            enabled: None,
        })
        .collect())
}

/// A profile of the platform by its name or its `old_short_name`, with its languages.
pub async fn profile(
    conn: &mut PgConnection,
    platform: &str,
    profile: &str,
) -> Result<Option<(String, Vec<String>)>> {
    let row: Option<(String, Vec<String>)> = sqlx::query_as(
        "SELECT name, languages FROM platform_packages WHERE platform = $1 AND type = 'profile'
           AND (name = $2 OR old_short_name = $2) ORDER BY (name = $2) DESC LIMIT 1",
    )
    .bind(platform)
    .bind(profile)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row)
}

impl Store {
    pub async fn get_platform(&self, name: &str) -> Result<Option<Platform>> {
        let mut conn = self.pool.acquire().await?;
        Ok(get_platform(&mut conn, name)
            .await?
            .map(PlatformRow::into_contract))
    }

    pub async fn list_platforms(&self) -> Result<Vec<Platform>> {
        let rows = sqlx::query_as::<_, PlatformRow>(sqlx::AssertSqlSafe(format!(
            "{SELECT} WHERE p.status <> 'deleted' ORDER BY p.name"
        )))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(PlatformRow::into_contract).collect())
    }

    pub async fn platform_packages(&self, name: &str) -> Result<Vec<Package>> {
        let mut conn = self.pool.acquire().await?;
        packages(&mut conn, name).await
    }

    pub async fn set_platform_locked(&self, name: &str, locked: bool) -> Result<Platform> {
        let mut conn = self.pool.acquire().await?;
        let n = sqlx::query(
            "UPDATE platforms SET locked = $2, updated_at = now() WHERE name = $1 AND status <> 'deleted'",
        )
        .bind(name)
        .bind(locked)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound(format!("platform `{name}`")));
        }
        Ok(get_platform(&mut conn, name)
            .await?
            .expect("just updated")
            .into_contract())
    }

    /// Marks a platform deleted (its row and history stay; its codebase is left alone),
    /// unless sites are on it or a task on it is unfinished.
    pub async fn delete_platform(&self, name: &str) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let row: Option<(String,)> = sqlx::query_as(
            "SELECT status FROM platforms WHERE name = $1 AND status <> 'deleted' FOR UPDATE",
        )
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?;
        if row.is_none() {
            return Err(StoreError::NotFound(format!("platform `{name}`")));
        }
        let sites: Vec<(String,)> = sqlx::query_as(
            "SELECT uri FROM sites WHERE platform = $1 AND status NOT IN ('deleted', 'failed')
             ORDER BY uri LIMIT 5",
        )
        .bind(name)
        .fetch_all(&mut *tx)
        .await?;
        if !sites.is_empty() {
            let list: Vec<_> = sites.into_iter().map(|(u,)| u).collect();
            return Err(StoreError::Conflict(format!(
                "platform `{name}` still has sites ({}); migrate or delete them first",
                list.join(", ")
            )));
        }
        let (busy,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM tasks WHERE target = $1 AND status IN ('queued', 'processing')",
        )
        .bind(name)
        .fetch_one(&mut *tx)
        .await?;
        if busy > 0 {
            return Err(StoreError::Conflict(format!(
                "platform `{name}` has {busy} unfinished task(s); wait for them or cancel them"
            )));
        }
        sqlx::query("UPDATE platforms SET status = 'deleted', updated_at = now() WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}
