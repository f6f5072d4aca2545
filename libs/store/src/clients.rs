//! Clients (tenants): who owns sites, their quotas and usage; and [`Visibility`], the filter
//! every query that a client-bound token can reach takes.

use crate::{Result, Store, StoreError, conflict_on_unique};
use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

/// The client every site made without one belongs to.
pub const DEFAULT_CLIENT: &str = "default";

/// What a caller may see: everything (an unbound token), or one client's sites and what
/// hangs off them (a token bound to that client). Queries that list or fetch site-scoped
/// rows for the API take one, so that none can be written without deciding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    All,
    Client(Uuid),
}

impl Visibility {
    /// The client id to filter on (`$n::uuid IS NULL OR … = $n`), or none.
    pub fn client(&self) -> Option<Uuid> {
        match self {
            Self::All => None,
            Self::Client(id) => Some(*id),
        }
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClientRow {
    pub id: Uuid,
    pub name: String,
    pub email: Option<String>,
    pub storefront: Option<String>,
    pub external_ref: Option<String>,
    pub status: String,
    pub max_sites: Option<i32>,
    pub max_disk_bytes: Option<i64>,
    pub max_backup_bytes: Option<i64>,
    /// A cancelled client's sites are deleted once this passes.
    pub cancel_after: Option<DateTime<Utc>>,
    /// When the scheduler queued the deletes of a cancelled client's sites.
    pub sites_deleted_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, name, email, storefront, external_ref, status, max_sites, \
    max_disk_bytes, max_backup_bytes, cancel_after, sites_deleted_at, created_at, updated_at";

/// A client's usage: sites counted live, disk and backup bytes as recorded.
#[derive(Debug, Clone, Copy, Default, sqlx::FromRow)]
pub struct Usage {
    pub sites: i64,
    pub disk_bytes: i64,
    /// Sites whose disk use was never measured (their bytes are not in `disk_bytes`).
    pub sites_unmeasured: i64,
    pub backup_bytes: i64,
}

/// The quotas a request is weighed against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quota {
    Sites,
    DiskBytes,
    BackupBytes,
}

impl Quota {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Sites => "max_sites",
            Self::DiskBytes => "max_disk_bytes",
            Self::BackupBytes => "max_backup_bytes",
        }
    }
}

/// A quota a request would go past.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaExceeded {
    pub client: String,
    pub quota: Quota,
    pub limit: i64,
    pub usage: i64,
}

/// What adding one more of `adding` does to `client`'s quotas: the first one it would go
/// past. A new site adds one site and no bytes yet: it is refused once the disk is full.
pub fn weigh(client: &ClientRow, usage: &Usage, adding: Quota) -> Option<QuotaExceeded> {
    let over = |quota: Quota, limit: Option<i64>, used: i64, full_at: i64| {
        limit
            .filter(|l| used + full_at > *l)
            .map(|limit| QuotaExceeded {
                client: client.name.clone(),
                quota,
                limit,
                usage: used,
            })
    };
    match adding {
        Quota::Sites => over(
            Quota::Sites,
            client.max_sites.map(i64::from),
            usage.sites,
            1,
        )
        .or_else(|| over(Quota::DiskBytes, client.max_disk_bytes, usage.disk_bytes, 1)),
        Quota::DiskBytes => over(Quota::DiskBytes, client.max_disk_bytes, usage.disk_bytes, 1),
        Quota::BackupBytes => over(
            Quota::BackupBytes,
            client.max_backup_bytes,
            usage.backup_bytes,
            1,
        ),
    }
}

pub struct NewClient<'a> {
    pub name: &'a str,
    pub email: Option<&'a str>,
    pub storefront: Option<&'a str>,
    pub external_ref: Option<&'a str>,
    pub max_sites: Option<i32>,
    pub max_disk_bytes: Option<i64>,
    pub max_backup_bytes: Option<i64>,
}

/// What changes on a client; `None` stays. A quota given as `Some(None)` is lifted.
#[derive(Debug, Default)]
pub struct ClientChange<'a> {
    pub name: Option<&'a str>,
    pub email: Option<&'a str>,
    pub max_sites: Option<Option<i32>>,
    pub max_disk_bytes: Option<Option<i64>>,
    pub max_backup_bytes: Option<Option<i64>>,
}

/// Creates a client; with a (storefront, external_ref) that exists already, answers that
/// client instead (`false`: not created). One statement: two concurrent retries of the same
/// order make one client.
pub async fn create(conn: &mut PgConnection, c: NewClient<'_>) -> Result<(ClientRow, bool)> {
    if let (Some(sf), Some(r)) = (c.storefront, c.external_ref)
        && let Some(existing) = by_external_ref(conn, sf, r).await?
    {
        return Ok((existing, false));
    }
    let inserted: Option<ClientRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO clients (id, name, email, storefront, external_ref, max_sites,
                              max_disk_bytes, max_backup_bytes)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (storefront, external_ref) WHERE external_ref IS NOT NULL DO NOTHING
         RETURNING {COLUMNS}"
    )))
    .bind(Uuid::now_v7())
    .bind(c.name)
    .bind(c.email)
    .bind(c.storefront)
    .bind(c.external_ref)
    .bind(c.max_sites)
    .bind(c.max_disk_bytes)
    .bind(c.max_backup_bytes)
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| conflict_on_unique(e, || format!("a client named `{}` exists already", c.name)))?;
    match inserted {
        Some(row) => Ok((row, true)),
        // A concurrent request with the same reference won: its client is ours.
        None => {
            let (Some(sf), Some(r)) = (c.storefront, c.external_ref) else {
                return Err(StoreError::Corrupt("client insert did nothing".into()));
            };
            let row = by_external_ref(conn, sf, r)
                .await?
                .ok_or_else(|| StoreError::Corrupt("client by reference vanished".into()))?;
            Ok((row, false))
        }
    }
}

async fn by_external_ref(
    conn: &mut PgConnection,
    storefront: &str,
    external_ref: &str,
) -> Result<Option<ClientRow>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM clients WHERE storefront = $1 AND external_ref = $2"
    )))
    .bind(storefront)
    .bind(external_ref)
    .fetch_optional(&mut *conn)
    .await?)
}

/// The client of this name, if the caller may see it.
pub async fn get(
    conn: &mut PgConnection,
    name: &str,
    seen: Visibility,
) -> Result<Option<ClientRow>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM clients WHERE name = $1 AND ($2::uuid IS NULL OR id = $2)"
    )))
    .bind(name)
    .bind(seen.client())
    .fetch_optional(&mut *conn)
    .await?)
}

pub async fn get_by_id(conn: &mut PgConnection, id: Uuid) -> Result<Option<ClientRow>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM clients WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?)
}

/// The client of this name, made if it does not exist (the site API's `client` field, kept
/// for compatibility).
pub async fn ensure(conn: &mut PgConnection, name: &str) -> Result<ClientRow> {
    sqlx::query("INSERT INTO clients (id, name) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
        .bind(Uuid::now_v7())
        .bind(name)
        .execute(&mut *conn)
        .await?;
    get(conn, name, Visibility::All)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("client `{name}` vanished")))
}

/// Locks the client's row until the transaction ends: quota checks and the inserts they
/// allow are serialised per client, so two concurrent creates cannot both pass.
pub async fn lock(conn: &mut PgConnection, id: Uuid) -> Result<ClientRow> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM clients WHERE id = $1 FOR UPDATE"
    )))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| StoreError::NotFound(format!("client {id}")))
}

/// A client's status: what suspending, unsuspending and cancelling write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Active,
    Suspended,
    /// Its sites go once the time passes.
    Cancelled {
        delete_after: DateTime<Utc>,
    },
}

/// Sets the client's status (and, cancelled, when its sites go; otherwise none).
pub async fn set_standing(conn: &mut PgConnection, id: Uuid, s: Standing) -> Result<()> {
    let (status, after) = match s {
        Standing::Active => ("active", None),
        Standing::Suspended => ("suspended", None),
        Standing::Cancelled { delete_after } => ("cancelled", Some(delete_after)),
    };
    sqlx::query(
        "UPDATE clients SET status = $2, cancel_after = $3, sites_deleted_at = NULL,
                updated_at = now()
         WHERE id = $1",
    )
    .bind(id)
    .bind(status)
    .bind(after)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The client's sites that serve (enabled or disabled), by name: those a suspension,
/// unsuspension or cancellation acts on.
pub async fn serving_sites(conn: &mut PgConnection, id: Uuid) -> Result<Vec<(String, bool)>> {
    Ok(sqlx::query_as(
        "SELECT uri, guarded FROM sites
         WHERE client_id = $1 AND status IN ('enabled', 'disabled') ORDER BY uri",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?)
}

/// Cancelled clients whose grace has passed and whose sites are not yet being deleted,
/// locked (skipping those another scheduler holds) until the transaction ends.
pub async fn due_cancellations(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
) -> Result<Vec<ClientRow>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM clients
         WHERE status = 'cancelled' AND cancel_after <= $1 AND sites_deleted_at IS NULL
         ORDER BY cancel_after LIMIT 100 FOR UPDATE SKIP LOCKED"
    )))
    .bind(now)
    .fetch_all(&mut *conn)
    .await?)
}

/// The deletes of a cancelled client's sites are queued.
pub async fn mark_sites_deleted(conn: &mut PgConnection, id: Uuid) -> Result<()> {
    sqlx::query("UPDATE clients SET sites_deleted_at = now() WHERE id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub async fn usage(conn: &mut PgConnection, id: Uuid) -> Result<Usage> {
    Ok(sqlx::query_as(
        "SELECT
           (SELECT count(*) FROM sites WHERE client_id = $1 AND status NOT IN ('deleted', 'failed')) AS sites,
           (SELECT coalesce(sum(disk_bytes), 0)::bigint FROM sites
             WHERE client_id = $1 AND status NOT IN ('deleted', 'failed')) AS disk_bytes,
           (SELECT count(*) FROM sites WHERE client_id = $1 AND disk_bytes IS NULL
               AND status NOT IN ('deleted', 'failed')) AS sites_unmeasured,
           (SELECT coalesce(sum(b.size), 0)::bigint FROM backups b JOIN sites s ON s.uri = b.site
             WHERE s.client_id = $1 AND b.deleted_at IS NULL) AS backup_bytes",
    )
    .bind(id)
    .fetch_one(&mut *conn)
    .await?)
}

pub async fn change(conn: &mut PgConnection, id: Uuid, c: &ClientChange<'_>) -> Result<()> {
    sqlx::query(
        "UPDATE clients SET name = coalesce($2, name), email = coalesce($3, email),
           max_sites = CASE WHEN $4 THEN $5 ELSE max_sites END,
           max_disk_bytes = CASE WHEN $6 THEN $7 ELSE max_disk_bytes END,
           max_backup_bytes = CASE WHEN $8 THEN $9 ELSE max_backup_bytes END,
           updated_at = now()
         WHERE id = $1",
    )
    .bind(id)
    .bind(c.name)
    .bind(c.email)
    .bind(c.max_sites.is_some())
    .bind(c.max_sites.flatten())
    .bind(c.max_disk_bytes.is_some())
    .bind(c.max_disk_bytes.flatten())
    .bind(c.max_backup_bytes.is_some())
    .bind(c.max_backup_bytes.flatten())
    .execute(&mut *conn)
    .await
    .map_err(|e| {
        conflict_on_unique(e, || {
            format!(
                "a client named `{}` exists already",
                c.name.unwrap_or_default()
            )
        })
    })?;
    Ok(())
}

impl Store {
    /// Clients the caller may see, by name, with their usage.
    pub async fn list_clients(&self, seen: Visibility) -> Result<Vec<(ClientRow, Usage)>> {
        let rows: Vec<ClientRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM clients WHERE ($1::uuid IS NULL OR id = $1) ORDER BY name"
        )))
        .bind(seen.client())
        .fetch_all(&self.pool)
        .await?;
        let mut conn = self.pool.acquire().await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let u = usage(&mut conn, r.id).await?;
            out.push((r, u));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(max_sites: Option<i32>, disk: Option<i64>, backup: Option<i64>) -> ClientRow {
        ClientRow {
            id: Uuid::nil(),
            name: "acme".into(),
            email: None,
            storefront: None,
            external_ref: None,
            status: "active".into(),
            max_sites,
            max_disk_bytes: disk,
            max_backup_bytes: backup,
            cancel_after: None,
            sites_deleted_at: None,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    #[test]
    fn a_site_past_max_sites_is_refused_naming_limit_and_usage() {
        let used = Usage {
            sites: 2,
            ..Usage::default()
        };
        assert_eq!(
            weigh(&client(Some(3), None, None), &used, Quota::Sites),
            None
        );
        let e = weigh(&client(Some(2), None, None), &used, Quota::Sites).unwrap();
        assert_eq!((e.quota, e.limit, e.usage), (Quota::Sites, 2, 2));
        assert_eq!(weigh(&client(None, None, None), &used, Quota::Sites), None);
    }

    #[test]
    fn a_full_disk_refuses_new_sites_and_full_backup_storage_refuses_backups() {
        let used = Usage {
            sites: 1,
            disk_bytes: 100,
            backup_bytes: 50,
            ..Usage::default()
        };
        let c = client(None, Some(100), Some(50));
        assert_eq!(
            weigh(&c, &used, Quota::Sites).unwrap().quota,
            Quota::DiskBytes
        );
        assert_eq!(
            weigh(&c, &used, Quota::BackupBytes).unwrap().quota,
            Quota::BackupBytes
        );
        let roomy = client(None, Some(101), Some(51));
        assert_eq!(weigh(&roomy, &used, Quota::Sites), None);
        assert_eq!(weigh(&roomy, &used, Quota::BackupBytes), None);
    }
}
