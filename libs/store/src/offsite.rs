//! Off-site backup targets and the copies of backups on them (decision 0017).

use crate::{PgConnection, Result, Store, StoreError, conflict_on_unique};
use berth_contracts::{BackupCopy, BackupTarget, NewBackupTarget};
use berth_hosting::offsite::{CopyFacts, TargetFacts};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use uuid::Uuid;

#[derive(sqlx::FromRow)]
struct TargetRow {
    name: String,
    kind: String,
    endpoint: String,
    bucket: String,
    prefix: String,
    region: String,
    access_key_id: String,
    retention: Option<sqlx::types::Json<berth_contracts::schedule::RetentionSpec>>,
    copies: i64,
    created_at: DateTime<Utc>,
}

impl TargetRow {
    fn into_contract(self) -> BackupTarget {
        BackupTarget {
            name: self.name,
            kind: self.kind,
            endpoint: self.endpoint,
            bucket: self.bucket,
            prefix: self.prefix,
            region: self.region,
            access_key_id: self.access_key_id,
            retention: self.retention.map(|r| r.0),
            copies: self.copies,
            created_at: self.created_at,
        }
    }

    fn facts(self) -> TargetFacts {
        TargetFacts {
            name: self.name,
            endpoint: self.endpoint,
            bucket: self.bucket,
            prefix: self.prefix,
            region: self.region,
            access_key_id: self.access_key_id,
        }
    }
}

const TARGET_COLUMNS: &str = "t.name, t.kind, t.endpoint, t.bucket, t.prefix, t.region,
    t.access_key_id, t.retention, t.created_at,
    (SELECT count(*) FROM backup_copies c WHERE c.target = t.name AND c.deleted_at IS NULL)
      AS copies";

/// Saves a checked target with its secret sealed (`sealed`); a name taken is a conflict.
pub async fn insert_target(
    conn: &mut PgConnection,
    t: &NewBackupTarget,
    sealed: &str,
) -> Result<BackupTarget> {
    sqlx::query(
        "INSERT INTO backup_targets (name, kind, endpoint, bucket, prefix, region,
             access_key_id, secret_access_key_sealed, retention)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&t.name)
    .bind(&t.kind)
    .bind(&t.endpoint)
    .bind(&t.bucket)
    .bind(&t.prefix)
    .bind(&t.region)
    .bind(&t.access_key_id)
    .bind(sealed)
    .bind(t.retention.as_ref().map(sqlx::types::Json))
    .execute(&mut *conn)
    .await
    .map_err(|e| conflict_on_unique(e, || format!("backup target `{}` exists", t.name)))?;
    target(conn, &t.name)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("backup target `{}`", t.name)))
}

/// Sets (or, `None`, drops) the target's own retention; `None` if there is no such target.
pub async fn set_target_retention(
    conn: &mut PgConnection,
    name: &str,
    retention: Option<&berth_contracts::schedule::RetentionSpec>,
) -> Result<Option<BackupTarget>> {
    let n = sqlx::query("UPDATE backup_targets SET retention = $2 WHERE name = $1")
        .bind(name)
        .bind(retention.map(sqlx::types::Json))
        .execute(&mut *conn)
        .await?
        .rows_affected();
    if n == 0 {
        return Ok(None);
    }
    target(conn, name).await
}

pub async fn target(conn: &mut PgConnection, name: &str) -> Result<Option<BackupTarget>> {
    let row: Option<TargetRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {TARGET_COLUMNS} FROM backup_targets t WHERE t.name = $1"
    )))
    .bind(name)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(TargetRow::into_contract))
}

/// The names among `names` that are no target.
pub async fn unknown_targets(conn: &mut PgConnection, names: &[String]) -> Result<Vec<String>> {
    let known: Vec<String> =
        sqlx::query_scalar("SELECT name FROM backup_targets WHERE name = ANY($1)")
            .bind(names)
            .fetch_all(&mut *conn)
            .await?;
    Ok(names
        .iter()
        .filter(|n| !known.contains(n))
        .cloned()
        .collect())
}

/// The targets named, in the order named; `Err` names one that is gone.
pub async fn target_facts(
    conn: &mut PgConnection,
    names: &[String],
) -> Result<std::result::Result<Vec<TargetFacts>, String>> {
    let rows: Vec<TargetRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {TARGET_COLUMNS} FROM backup_targets t WHERE t.name = ANY($1)"
    )))
    .bind(names)
    .fetch_all(&mut *conn)
    .await?;
    let mut by_name: BTreeMap<String, TargetFacts> = rows
        .into_iter()
        .map(|r| (r.name.clone(), r.facts()))
        .collect();
    let mut out = Vec::new();
    for n in names {
        match by_name.remove(n) {
            Some(f) => out.push(f),
            None if out.iter().any(|f: &TargetFacts| &f.name == n) => {}
            None => return Ok(Err(format!("backup target `{n}` does not exist"))),
        }
    }
    Ok(Ok(out))
}

/// The target's sealed secret access key (the state service attaches it to a step).
pub async fn target_secret_sealed(conn: &mut PgConnection, name: &str) -> Result<Option<String>> {
    Ok(
        sqlx::query_scalar("SELECT secret_access_key_sealed FROM backup_targets WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *conn)
            .await?,
    )
}

/// What a target removal did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetRemoval {
    Removed,
    NotFound,
    /// Refused: this many live copies are on it.
    InUse(i64),
}

/// Removes a target that holds no live copy (its deleted copies' rows go with it).
pub async fn delete_target(conn: &mut PgConnection, name: &str) -> Result<TargetRemoval> {
    let exists: Option<String> =
        sqlx::query_scalar("SELECT name FROM backup_targets WHERE name = $1 FOR UPDATE")
            .bind(name)
            .fetch_optional(&mut *conn)
            .await?;
    if exists.is_none() {
        return Ok(TargetRemoval::NotFound);
    }
    let live: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM backup_copies WHERE target = $1 AND deleted_at IS NULL",
    )
    .bind(name)
    .fetch_one(&mut *conn)
    .await?;
    if live > 0 {
        return Ok(TargetRemoval::InUse(live));
    }
    sqlx::query("DELETE FROM backup_copies WHERE target = $1")
        .bind(name)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM backup_targets WHERE name = $1")
        .bind(name)
        .execute(&mut *conn)
        .await?;
    Ok(TargetRemoval::Removed)
}

/// Records an upload's copy of the backup at `(server, path)`, only if its sha256 is the
/// backup's; `false` when it is not (or the backup is not known): nothing recorded.
pub async fn record_copy(
    conn: &mut PgConnection,
    id: Uuid,
    server: &str,
    c: &berth_contracts::steps::CopyMade,
) -> Result<bool> {
    let done: Option<Uuid> = sqlx::query_scalar("SELECT id FROM backup_copies WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    if done.is_some() {
        return Ok(true);
    }
    // A copy uploaded again replaces the live one on the same target (same key).
    sqlx::query(
        "UPDATE backup_copies SET deleted_at = now()
         WHERE target = $2 AND deleted_at IS NULL AND backup =
           (SELECT id FROM backups WHERE server = $1 AND path = $3)",
    )
    .bind(server)
    .bind(&c.target)
    .bind(&c.path)
    .execute(&mut *conn)
    .await?;
    let n = sqlx::query(
        "INSERT INTO backup_copies (id, backup, target, object_key, size, sha256)
         SELECT $1, b.id, $3, $5, $6, $7 FROM backups b
         WHERE b.server = $2 AND b.path = $4 AND b.sha256 = $7 AND b.size = $6",
    )
    .bind(id)
    .bind(server)
    .bind(&c.target)
    .bind(&c.path)
    .bind(&c.key)
    .bind(c.size)
    .bind(&c.sha256)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(n == 1)
}

pub async fn mark_copy_deleted(conn: &mut PgConnection, target: &str, key: &str) -> Result<()> {
    sqlx::query(
        "UPDATE backup_copies SET deleted_at = now()
         WHERE target = $1 AND object_key = $2 AND deleted_at IS NULL",
    )
    .bind(target)
    .bind(key)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct CopyRow {
    backup: Uuid,
    target: String,
    object_key: String,
    size: i64,
    sha256: String,
    uploaded_at: DateTime<Utc>,
}

impl CopyRow {
    fn into_contract(self) -> BackupCopy {
        BackupCopy {
            backup: self.backup,
            target: self.target,
            object_key: self.object_key,
            size: self.size,
            sha256: self.sha256,
            uploaded_at: self.uploaded_at,
        }
    }
}

/// The live copies of backups with their targets, oldest first (a restore fetches from
/// the first, a backup-delete or prune removes them all).
pub async fn copies_of_backups(
    conn: &mut PgConnection,
    backups: &[Uuid],
) -> Result<Vec<CopyFacts>> {
    #[derive(sqlx::FromRow)]
    struct Row {
        backup: Uuid,
        backup_server: String,
        object_key: String,
        sha256: String,
        #[sqlx(flatten)]
        t: TargetRow,
    }
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT c.backup, b.server AS backup_server, c.object_key, c.sha256, {TARGET_COLUMNS}
         FROM backup_copies c JOIN backup_targets t ON t.name = c.target
           JOIN backups b ON b.id = c.backup
         WHERE c.backup = ANY($1) AND c.deleted_at IS NULL ORDER BY c.uploaded_at, c.id"
    )))
    .bind(backups)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| CopyFacts {
            backup: r.backup,
            server: r.backup_server,
            key: r.object_key,
            sha256: r.sha256,
            target: r.t.facts(),
        })
        .collect())
}

/// The live copies of the given backups, by backup.
pub async fn copies_of(
    conn: &mut PgConnection,
    backups: &[Uuid],
) -> Result<BTreeMap<Uuid, Vec<BackupCopy>>> {
    let rows: Vec<CopyRow> = sqlx::query_as(
        "SELECT backup, target, object_key, size, sha256, uploaded_at FROM backup_copies
         WHERE backup = ANY($1) AND deleted_at IS NULL ORDER BY uploaded_at, target",
    )
    .bind(backups)
    .fetch_all(&mut *conn)
    .await?;
    let mut out: BTreeMap<Uuid, Vec<BackupCopy>> = BTreeMap::new();
    for r in rows {
        out.entry(r.backup).or_default().push(r.into_contract());
    }
    Ok(out)
}

impl Store {
    pub async fn backup_targets(&self) -> Result<Vec<BackupTarget>> {
        let rows: Vec<TargetRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {TARGET_COLUMNS} FROM backup_targets t ORDER BY t.name"
        )))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(TargetRow::into_contract).collect())
    }

    pub async fn backup_target(&self, name: &str) -> Result<Option<BackupTarget>> {
        target(&mut *self.pool.acquire().await?, name).await
    }
}
