//! Sites (Aegir's site contexts), their aliases and their package registry.

use crate::clients::Visibility;
use crate::servers::get_server;
use crate::site_names::{self, NameKind};
use crate::{Result, Store, StoreError, conflict_on_unique, platforms};
use berth_contracts::{Package, PackageType, Site};
use berth_hosting::facts::SiteFacts;
use chrono::{DateTime, Duration, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

/// How long a one-time login link is shown on the site.
pub const LOGIN_LINK_TTL_HOURS: i64 = 24;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SiteRow {
    pub uri: String,
    pub platform: String,
    pub db_server: String,
    /// The client's name (joined from `clients`).
    pub client: Option<String>,
    pub client_id: Uuid,
    pub client_email: Option<String>,
    pub profile: String,
    pub language: String,
    pub redirection: bool,
    pub guarded: bool,
    pub disk_bytes: Option<i64>,
    pub disk_files_bytes: Option<i64>,
    pub disk_db_bytes: Option<i64>,
    pub disk_partial: bool,
    pub disk_measured_at: Option<DateTime<Utc>>,
    pub status: String,
    pub suspended: bool,
    pub db_name: String,
    pub db_user: String,
    pub db_password_sealed: String,
    /// The unix user (and group) the site's PHP and installer run as.
    pub unix_uid: i32,
    pub login_link: Option<String>,
    pub login_link_at: Option<DateTime<Utc>>,
    pub cron_key_given: bool,
    #[sqlx(flatten)]
    pub last_cron: crate::cron::LastCronRow,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub aliases: Vec<String>,
}

const SELECT: &str = "SELECT s.*, c.name AS client,
       COALESCE((SELECT array_agg(a.alias ORDER BY a.position, a.alias)
       FROM site_aliases a WHERE a.site = s.uri), '{}') AS aliases
       FROM sites s JOIN clients c ON c.id = s.client_id";

impl SiteRow {
    /// The site as clients see it: no password; the login link only while it is fresh.
    pub fn into_contract(self) -> Site {
        let expires = self
            .login_link_at
            .map(|at| at + Duration::hours(LOGIN_LINK_TTL_HOURS));
        let fresh = expires.is_some_and(|e| e > Utc::now());
        Site {
            uri: self.uri,
            platform: self.platform,
            db_server: self.db_server,
            client: self.client,
            client_email: self.client_email,
            profile: self.profile,
            language: self.language,
            aliases: self.aliases,
            redirection: self.redirection,
            guarded: self.guarded,
            status: self.status,
            suspended: self.suspended,
            db_name: self.db_name,
            db_user: self.db_user,
            login_link: self.login_link.filter(|_| fresh),
            login_link_expires_at: expires.filter(|_| fresh),
            last_cron: self.last_cron.into_contract(),
            disk_bytes: self.disk_bytes,
            disk_files_bytes: self.disk_files_bytes,
            disk_db_bytes: self.disk_db_bytes,
            disk_partial: self.disk_partial,
            disk_measured_at: self.disk_measured_at,
            created_at: self.created_at,
            updated_at: self.updated_at,
            task: None,
        }
    }
}

pub struct NewSiteRow<'a> {
    pub uri: &'a str,
    pub platform: &'a str,
    pub db_server: &'a str,
    pub client_id: Uuid,
    pub client_email: Option<&'a str>,
    pub profile: &'a str,
    pub language: &'a str,
    pub redirection: bool,
    pub db_name: &'a str,
    pub db_user: &'a str,
    pub db_password_sealed: &'a str,
    pub aliases: &'a [String],
}

/// Which of `names` a site other than `except_site` holds: for answers that write nothing
/// (a migrate plan). What writes reserves its names ([`site_names::reserve`]).
pub async fn names_taken(
    conn: &mut PgConnection,
    names: &[String],
    except_site: Option<&str>,
) -> Result<Vec<String>> {
    site_names::held(conn, names, except_site).await
}

/// Saves a new site (installing) with its aliases, reserving its uri and aliases in the
/// same transaction: a name another site holds is a [`StoreError::Conflict`] saying which.
/// A deleted site of the same uri is moved aside, kept as history.
pub async fn insert_site(conn: &mut PgConnection, s: NewSiteRow<'_>) -> Result<()> {
    site_names::retire_deleted(conn, s.uri).await?;
    site_names::reserve_site(conn, s.uri, s.aliases).await?;
    sqlx::query(
        "INSERT INTO sites (uri, platform, db_server, client_id, client_email, profile, language,
                            redirection, status, db_name, db_user, db_password_sealed)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'installing', $9, $10, $11)",
    )
    .bind(s.uri)
    .bind(s.platform)
    .bind(s.db_server)
    .bind(s.client_id)
    .bind(s.client_email)
    .bind(s.profile)
    .bind(s.language)
    .bind(s.redirection)
    .bind(s.db_name)
    .bind(s.db_user)
    .bind(s.db_password_sealed)
    .execute(&mut *conn)
    .await
    .map_err(|e| conflict_on_unique(e, || format!("site `{}` exists already", s.uri)))?;
    insert_aliases(conn, s.uri, s.aliases).await
}

/// Replaces the site's aliases, reserving the new ones (see [`insert_site`]).
pub async fn set_aliases(conn: &mut PgConnection, uri: &str, aliases: &[String]) -> Result<()> {
    sqlx::query("DELETE FROM site_aliases WHERE site = $1")
        .bind(uri)
        .execute(&mut *conn)
        .await?;
    site_names::release_aliases(conn, uri).await?;
    site_names::reserve(conn, uri, aliases, NameKind::Alias, None).await?;
    insert_aliases(conn, uri, aliases).await
}

/// The alias rows of a site whose aliases are reserved.
async fn insert_aliases(conn: &mut PgConnection, uri: &str, aliases: &[String]) -> Result<()> {
    if aliases.is_empty() {
        return Ok(());
    }
    let positions: Vec<i32> = (0..aliases.len() as i32).collect();
    sqlx::query(
        "INSERT INTO site_aliases (alias, site, position)
         SELECT a, $1, p FROM unnest($2::text[], $3::int[]) AS u(a, p)",
    )
    .bind(uri)
    .bind(aliases)
    .bind(&positions)
    .execute(&mut *conn)
    .await
    .map_err(|e| conflict_on_unique(e, || "an alias belongs to another site already".into()))?;
    Ok(())
}

pub async fn get_site(conn: &mut PgConnection, uri: &str) -> Result<Option<SiteRow>> {
    get_visible_site(conn, uri, Visibility::All).await
}

/// The site, if the caller may see it (a client-bound caller sees its client's only).
pub async fn get_visible_site(
    conn: &mut PgConnection,
    uri: &str,
    seen: Visibility,
) -> Result<Option<SiteRow>> {
    Ok(sqlx::query_as::<_, SiteRow>(sqlx::AssertSqlSafe(format!(
        "{SELECT} WHERE s.uri = $1 AND ($2::uuid IS NULL OR s.client_id = $2)"
    )))
    .bind(uri)
    .bind(seen.client())
    .fetch_optional(&mut *conn)
    .await?)
}

/// Guards or unguards a site: a guarded site refuses disable and delete.
pub async fn set_guarded(conn: &mut PgConnection, uri: &str, guarded: bool) -> Result<()> {
    sqlx::query("UPDATE sites SET guarded = $2, updated_at = now() WHERE uri = $1")
        .bind(uri)
        .bind(guarded)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// What the planner needs of a site: its row, its platform and web server, its db server.
pub async fn facts(conn: &mut PgConnection, uri: &str) -> Result<Option<SiteFacts>> {
    let Some(s) = get_site(conn, uri).await? else {
        return Ok(None);
    };
    let platform = platforms::facts(conn, &s.platform)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("site {uri}: no platform {}", s.platform)))?;
    let db_server = get_server(conn, &s.db_server)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("site {uri}: no server {}", s.db_server)))?;
    Ok(Some(SiteFacts {
        uri: s.uri,
        aliases: s.aliases,
        redirection: s.redirection,
        profile: s.profile,
        language: s.language,
        client_email: s.client_email,
        status: s.status,
        suspended: s.suspended,
        db_name: s.db_name,
        db_user: s.db_user,
        unix_uid: s.unix_uid as u32,
        cron_key_given: s.cron_key_given,
        platform,
        db_server: db_server.facts(),
    }))
}

pub async fn db_password_sealed(conn: &mut PgConnection, uri: &str) -> Result<Option<String>> {
    let row: Option<(String,)> =
        sqlx::query_as("SELECT db_password_sealed FROM sites WHERE uri = $1")
            .bind(uri)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(row.map(|(s,)| s))
}

/// Changes a site's client, client e-mail and redirection; what is `None` stays.
pub async fn change_details(
    conn: &mut PgConnection,
    uri: &str,
    client_id: Option<Uuid>,
    client_email: Option<&str>,
    redirection: Option<bool>,
) -> Result<()> {
    sqlx::query(
        "UPDATE sites SET client_id = COALESCE($2, client_id), client_email = COALESCE($3, client_email),
           redirection = COALESCE($4, redirection), updated_at = now() WHERE uri = $1",
    )
    .bind(uri)
    .bind(client_id)
    .bind(client_email)
    .bind(redirection)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A deleted site frees its names for other sites, and its uri for a new site.
pub async fn set_status(conn: &mut PgConnection, uri: &str, status: &str) -> Result<()> {
    sqlx::query("UPDATE sites SET status = $2, updated_at = now() WHERE uri = $1")
        .bind(uri)
        .bind(status)
        .execute(&mut *conn)
        .await?;
    if status == berth_hosting::sites::status::DELETED {
        site_names::release_all(conn, uri).await?;
    }
    Ok(())
}

/// The site now lives in another database (a restore or migrate finished).
pub async fn set_database(
    conn: &mut PgConnection,
    uri: &str,
    db_name: &str,
    db_user: &str,
    db_password_sealed: &str,
) -> Result<()> {
    sqlx::query(
        "UPDATE sites SET db_name = $2, db_user = $3, db_password_sealed = $4, updated_at = now(),
           cron_key_given = false
         WHERE uri = $1",
    )
    .bind(uri)
    .bind(db_name)
    .bind(db_user)
    .bind(db_password_sealed)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The site has a new name (a migrate with a new uri finished); its aliases, packages and
/// backups follow (ON UPDATE CASCADE); its tasks keep the name they ran under. The new
/// name was reserved with the migrate; the old one is free now.
pub async fn rename(conn: &mut PgConnection, uri: &str, new_uri: &str) -> Result<()> {
    site_names::retire_deleted(conn, new_uri).await?;
    sqlx::query("UPDATE sites SET uri = $2, updated_at = now() WHERE uri = $1")
        .bind(uri)
        .bind(new_uri)
        .execute(&mut *conn)
        .await?;
    site_names::renamed(conn, uri, new_uri).await
}

/// The site now lives on another platform and db server (a migrate finished).
pub async fn set_home(
    conn: &mut PgConnection,
    uri: &str,
    platform: &str,
    db_server: &str,
) -> Result<()> {
    sqlx::query(
        "UPDATE sites SET platform = $2, db_server = $3, updated_at = now() WHERE uri = $1",
    )
    .bind(uri)
    .bind(platform)
    .bind(db_server)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn mark_backup_deleted(conn: &mut PgConnection, server: &str, path: &str) -> Result<()> {
    sqlx::query(
        "UPDATE backups SET deleted_at = now() WHERE server = $1 AND path = $2 AND deleted_at IS NULL",
    )
    .bind(server)
    .bind(path)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The site serves (or no longer serves) its "suspended" page.
pub async fn set_suspended(conn: &mut PgConnection, uri: &str, suspended: bool) -> Result<()> {
    sqlx::query("UPDATE sites SET suspended = $2, updated_at = now() WHERE uri = $1")
        .bind(uri)
        .bind(suspended)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The disk the site's directory takes, as a walk measured it; `disk_bytes` (what
/// `max_disk_bytes` counts) becomes it plus the database's last measure.
pub async fn record_files_usage(
    conn: &mut PgConnection,
    uri: &str,
    bytes: i64,
    complete: bool,
) -> Result<()> {
    sqlx::query(
        "UPDATE sites SET disk_files_bytes = $2, disk_partial = NOT $3,
                disk_bytes = $2 + coalesce(disk_db_bytes, 0), disk_measured_at = now()
         WHERE uri = $1",
    )
    .bind(uri)
    .bind(bytes)
    .bind(complete)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The size of the site's database; `disk_bytes` becomes it plus the files' last measure.
pub async fn record_db_usage(conn: &mut PgConnection, uri: &str, bytes: i64) -> Result<()> {
    sqlx::query(
        "UPDATE sites SET disk_db_bytes = $2,
                disk_bytes = coalesce(disk_files_bytes, 0) + $2, disk_measured_at = now()
         WHERE uri = $1",
    )
    .bind(uri)
    .bind(bytes)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A pruned backup's file was fetched back from a copy to where it was.
pub async fn mark_backup_on_disk(conn: &mut PgConnection, server: &str, path: &str) -> Result<()> {
    sqlx::query(
        "UPDATE backups SET deleted_at = NULL
         WHERE server = $1 AND path = $2 AND deleted_at IS NOT NULL",
    )
    .bind(server)
    .bind(path)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A backup of the site that still exists, on disk or off-site.
pub async fn backup(
    conn: &mut PgConnection,
    uri: &str,
    id: uuid::Uuid,
) -> Result<Option<berth_contracts::Backup>> {
    let row: Option<BackupRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {BACKUP_COLUMNS} FROM backups WHERE site = $1 AND id = $2 AND {BACKUP_EXISTS}"
    )))
    .bind(uri)
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(BackupRow::into_contract))
}

/// The site's newest backup that still exists, on disk or off-site (what a drill restores
/// by default).
pub async fn newest_backup(
    conn: &mut PgConnection,
    uri: &str,
) -> Result<Option<berth_contracts::Backup>> {
    let row: Option<BackupRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {BACKUP_COLUMNS} FROM backups WHERE site = $1 AND {BACKUP_EXISTS}
         ORDER BY created_at DESC, id DESC LIMIT 1"
    )))
    .bind(uri)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(BackupRow::into_contract))
}

/// A drill (task `task_id`) restored the backup and the copy served the site's content.
pub async fn set_backup_verified(
    conn: &mut PgConnection,
    id: uuid::Uuid,
    task_id: uuid::Uuid,
) -> Result<()> {
    sqlx::query("UPDATE backups SET verified_at = now(), verified_by_task = $2 WHERE id = $1")
        .bind(id)
        .bind(task_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// A unix uid no site has and none will get: a drill's throwaway site runs as it.
pub async fn new_unix_uid(conn: &mut PgConnection) -> Result<u32> {
    let (uid,): (i64,) = sqlx::query_as("SELECT nextval('site_unix_uid')")
        .fetch_one(&mut *conn)
        .await?;
    Ok(uid as u32)
}

pub async fn set_login_link(conn: &mut PgConnection, uri: &str, link: &str) -> Result<()> {
    sqlx::query(
        "UPDATE sites SET login_link = $2, login_link_at = now(), updated_at = now() WHERE uri = $1",
    )
    .bind(uri)
    .bind(link)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Forgets the login link (it was used).
pub async fn clear_login_link(conn: &mut PgConnection, uri: &str) -> Result<()> {
    sqlx::query("UPDATE sites SET login_link = NULL, login_link_at = NULL WHERE uri = $1")
        .bind(uri)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Replaces the site's package registry with what its last verify found.
pub async fn record_packages(
    conn: &mut PgConnection,
    uri: &str,
    packages: &[Package],
) -> Result<()> {
    sqlx::query("DELETE FROM site_packages WHERE site = $1")
        .bind(uri)
        .execute(&mut *conn)
        .await?;
    if packages.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO site_packages (site, name, type, version, schema_version, enabled)
         SELECT $1, n, t, v, sv, e FROM unnest($2::text[], $3::text[], $4::text[], $5::bigint[], $6::bool[])
           AS u(n, t, v, sv, e)
         ON CONFLICT DO NOTHING",
    )
    .bind(uri)
    .bind(packages.iter().map(|p| p.name.clone()).collect::<Vec<_>>())
    .bind(
        packages
            .iter()
            .map(|p| p.package_type.as_str().to_string())
            .collect::<Vec<_>>(),
    )
    .bind(packages.iter().map(|p| p.version.clone()).collect::<Vec<_>>())
    .bind(packages.iter().map(|p| p.schema_version).collect::<Vec<_>>())
    .bind(packages.iter().map(|p| p.enabled.unwrap_or(true)).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub struct NewBackup<'a> {
    /// The backup step's id: a redelivered result records nothing twice.
    pub id: uuid::Uuid,
    pub site: &'a str,
    pub server: &'a str,
    pub file: &'a str,
    pub path: &'a str,
    pub size: i64,
    pub sha256: &'a str,
    pub compression: &'a str,
    pub description: &'a str,
    pub task_id: uuid::Uuid,
}

pub async fn record_backup(conn: &mut PgConnection, b: NewBackup<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO backups (id, site, server, file, path, size, sha256, compression, description, task_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING",
    )
    .bind(b.id)
    .bind(b.site)
    .bind(b.server)
    .bind(b.file)
    .bind(b.path)
    .bind(b.size)
    .bind(b.sha256)
    .bind(b.compression)
    .bind(b.description)
    .bind(b.task_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct SitePackageRow {
    name: String,
    #[sqlx(rename = "type")]
    package_type: String,
    version: Option<String>,
    schema_version: Option<i64>,
    enabled: bool,
}

#[derive(sqlx::FromRow)]
struct BackupRow {
    id: uuid::Uuid,
    site: String,
    server: String,
    file: String,
    path: String,
    size: i64,
    sha256: String,
    compression: String,
    description: String,
    task_id: uuid::Uuid,
    created_at: DateTime<Utc>,
    verified_at: Option<DateTime<Utc>>,
    verified_by_task: Option<uuid::Uuid>,
    on_disk: bool,
}

/// The columns of a [`BackupRow`].
const BACKUP_COLUMNS: &str = "id, site, server, file, path, size, sha256, compression, \
    description, task_id, created_at, verified_at, verified_by_task, \
    deleted_at IS NULL AS on_disk";

/// A backup that still exists: its file on its server, or a live off-site copy of it (kept by
/// a target's own retention after the file was pruned).
const BACKUP_EXISTS: &str = "(deleted_at IS NULL OR EXISTS (SELECT 1 FROM backup_copies c \
    WHERE c.backup = backups.id AND c.deleted_at IS NULL))";

impl BackupRow {
    fn into_contract(self) -> berth_contracts::Backup {
        berth_contracts::Backup {
            id: self.id,
            site: self.site,
            server: self.server,
            file: self.file,
            path: self.path,
            size: self.size,
            sha256: self.sha256,
            compression: self.compression,
            description: self.description,
            task_id: self.task_id,
            created_at: self.created_at,
            copies: Vec::new(),
            on_disk: self.on_disk,
            verified_at: self.verified_at,
            verified_by_task: self.verified_by_task,
        }
    }
}

/// The filters of the sites list ($1 to $4 of its queries).
const SITE_FILTER: &str = "($1::text IS NULL OR s.platform = $1)
    AND ($2::text IS NULL OR s.status = $2)
    AND ($3::text IS NULL OR c.name = $3)
    AND ($4::uuid IS NULL OR s.client_id = $4)";

/// Filters for `GET /api/v1/sites`.
#[derive(Debug, Default, Clone)]
pub struct SiteFilter {
    pub platform: Option<String>,
    pub status: Option<String>,
    pub client: Option<String>,
}

impl Store {
    pub async fn get_site(&self, uri: &str) -> Result<Option<SiteRow>> {
        let mut conn = self.pool.acquire().await?;
        get_site(&mut conn, uri).await
    }

    /// The sites `f` and `seen` allow, filtered in SQL (a client's sites come off
    /// `sites_client`), by uri: one page of them (`(limit, offset)`) when `page` is given,
    /// else all.
    pub async fn list_sites(
        &self,
        f: &SiteFilter,
        seen: Visibility,
        page: Option<(i64, i64)>,
    ) -> Result<Vec<Site>> {
        let (limit, offset) = page.map_or((None, 0), |(l, o)| (Some(l), o));
        let rows = sqlx::query_as::<_, SiteRow>(sqlx::AssertSqlSafe(format!(
            "{SELECT} WHERE {SITE_FILTER}
             ORDER BY s.uri LIMIT $5 OFFSET $6"
        )))
        .bind(&f.platform)
        .bind(&f.status)
        .bind(&f.client)
        .bind(seen.client())
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(SiteRow::into_contract).collect())
    }

    /// How many sites `f` and `seen` allow: the total of [`Store::list_sites`]' pages.
    pub async fn count_sites(&self, f: &SiteFilter, seen: Visibility) -> Result<i64> {
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM sites s JOIN clients c ON c.id = s.client_id
             WHERE {SITE_FILTER}"
        )))
        .bind(&f.platform)
        .bind(&f.status)
        .bind(&f.client)
        .bind(seen.client())
        .fetch_one(&self.pool)
        .await?)
    }

    pub async fn site_backups(&self, uri: &str) -> Result<Vec<berth_contracts::Backup>> {
        let rows: Vec<BackupRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {BACKUP_COLUMNS} FROM backups WHERE site = $1 AND {BACKUP_EXISTS}
             ORDER BY created_at DESC"
        )))
        .bind(uri)
        .fetch_all(&self.pool)
        .await?;
        let mut backups: Vec<_> = rows.into_iter().map(BackupRow::into_contract).collect();
        let ids: Vec<_> = backups.iter().map(|b| b.id).collect();
        let mut copies = crate::offsite::copies_of(&mut *self.pool.acquire().await?, &ids).await?;
        for b in &mut backups {
            b.copies = copies.remove(&b.id).unwrap_or_default();
        }
        Ok(backups)
    }

    pub async fn site_packages(&self, uri: &str) -> Result<Vec<Package>> {
        let rows = sqlx::query_as::<_, SitePackageRow>(
            "SELECT name, type, version, schema_version, enabled FROM site_packages
             WHERE site = $1 ORDER BY type, name",
        )
        .bind(uri)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| Package {
                name: r.name,
                package_type: PackageType::parse(&r.package_type).unwrap_or(PackageType::Module),
                title: None,
                version: r.version,
                schema_version: r.schema_version,
                path: String::new(),
                languages: Vec::new(),
                old_short_name: None,
                enabled: Some(r.enabled),
            })
            .collect())
    }
}
