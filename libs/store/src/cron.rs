//! Site cron: each site's cron key and last run, and the bounded history of cron tasks
//! (decision 0016).

use crate::{Result, Store};
use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

/// The site's sealed cron key, if it has one.
pub async fn cron_key_sealed(conn: &mut PgConnection, uri: &str) -> Result<Option<String>> {
    let row: Option<(Option<String>,)> =
        sqlx::query_as("SELECT cron_key_sealed FROM sites WHERE uri = $1")
            .bind(uri)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(row.and_then(|(k,)| k))
}

/// Gives the site `sealed` as its cron key unless it has one; returns whether it was set.
pub async fn ensure_cron_key(conn: &mut PgConnection, uri: &str, sealed: &str) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE sites SET cron_key_sealed = $2, cron_key_given = false
         WHERE uri = $1 AND cron_key_sealed IS NULL",
    )
    .bind(uri)
    .bind(sealed)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Whether the site's database holds its cron key.
pub async fn set_cron_key_given(conn: &mut PgConnection, uri: &str, given: bool) -> Result<()> {
    sqlx::query("UPDATE sites SET cron_key_given = $2 WHERE uri = $1")
        .bind(uri)
        .bind(given)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The site's last cron is the task `task`, ending now: its start and duration are the
/// task's.
pub async fn record_last_cron(
    conn: &mut PgConnection,
    uri: &str,
    task: Uuid,
    ok: bool,
) -> Result<()> {
    sqlx::query(
        "UPDATE sites s SET cron_last_task = t.id,
                cron_last_started_at = COALESCE(t.started_at, t.created_at),
                cron_last_duration_ms = GREATEST(0, (EXTRACT(EPOCH FROM
                    (COALESCE(t.finished_at, now()) - COALESCE(t.started_at, t.created_at))) * 1000)::bigint),
                cron_last_result = $3
         FROM tasks t WHERE s.uri = $1 AND t.id = $2",
    )
    .bind(uri)
    .bind(task)
    .bind(if ok { "success" } else { "failed" })
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// What one batch of [`prune_cron_batch`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pruned {
    pub tasks: u64,
}

/// Deletes up to `batch` cron tasks that the bounded history no longer keeps: per site,
/// every failed (error, cancelled) cron task and the newest `keep_successful` successful
/// ones stay, and so do the site's last cron, a task a retry names and a task with an
/// outbox message not yet sent. Queued and processing tasks are never touched; a task row
/// another transaction holds (the state service recording it) is skipped, not waited for.
/// Its steps, log lines, secrets and dead letters go by their foreign keys' cascade; its
/// sent outbox rows and idempotency keys go here.
pub async fn prune_cron_batch(
    conn: &mut PgConnection,
    keep_successful: u32,
    batch: u32,
) -> Result<Pruned> {
    let deleted = sqlx::query(
        "WITH ranked AS (
             SELECT id, row_number() OVER (PARTITION BY target ORDER BY created_at DESC, id DESC) AS n
             FROM tasks
             WHERE type = 'cron' AND target_kind = 'site' AND status IN ('success', 'warning')
         ), doomed AS (
             SELECT t.id FROM tasks t JOIN ranked r ON r.id = t.id
             WHERE r.n > $1
               AND t.status IN ('success', 'warning')
               AND NOT EXISTS (SELECT 1 FROM sites s WHERE s.cron_last_task = t.id)
               AND NOT EXISTS (SELECT 1 FROM tasks rt WHERE rt.retry_of = t.id)
               AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.sent_at IS NULL AND o.task_id = t.id)
             LIMIT $2
             FOR UPDATE OF t SKIP LOCKED
         ), outbox_rows AS (
             DELETE FROM outbox o USING doomed d WHERE o.task_id = d.id
         ), idempotency_rows AS (
             DELETE FROM idempotency_keys k USING doomed d WHERE k.task_id = d.id
         )
         DELETE FROM tasks t USING doomed d WHERE t.id = d.id",
    )
    .bind(i64::from(keep_successful))
    .bind(i64::from(batch.max(1)))
    .execute(&mut *conn)
    .await?;
    Ok(Pruned {
        tasks: deleted.rows_affected(),
    })
}

/// A site's last cron, as stored on the site.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LastCronRow {
    pub cron_last_task: Option<Uuid>,
    pub cron_last_started_at: Option<DateTime<Utc>>,
    pub cron_last_duration_ms: Option<i64>,
    pub cron_last_result: Option<String>,
}

impl LastCronRow {
    pub fn into_contract(self) -> Option<berth_contracts::LastCron> {
        Some(berth_contracts::LastCron {
            task: self.cron_last_task?,
            started_at: self.cron_last_started_at?,
            duration_ms: self.cron_last_duration_ms.unwrap_or(0),
            result: self.cron_last_result?,
        })
    }
}

impl Store {
    /// Prunes the cron history in batches of `batch`, each in its own transaction (short
    /// locks, while tasks run), until a batch finds nothing more; returns the tasks deleted.
    pub async fn prune_cron_history(&self, keep_successful: u32, batch: u32) -> Result<u64> {
        let mut total = 0;
        loop {
            let mut tx = self.pool.begin().await?;
            let p = prune_cron_batch(&mut tx, keep_successful, batch).await?;
            tx.commit().await?;
            total += p.tasks;
            if p.tasks < u64::from(batch.max(1)) {
                return Ok(total);
            }
        }
    }
}
