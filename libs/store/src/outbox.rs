//! The transactional outbox: a message is written in the transaction that makes it true,
//! and the relay (berth-outbox) publishes it after commit, with publisher confirms.

use crate::Result;
use sqlx::PgConnection;
use uuid::Uuid;

/// Channel of the PostgreSQL notification sent on every enqueue; relays listen to it.
pub const NOTIFY_CHANNEL: &str = "berth_outbox";

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OutboxRow {
    pub id: i64,
    pub exchange: String,
    pub routing_key: String,
    pub message_id: String,
    pub payload: serde_json::Value,
    pub traceparent: String,
    pub attempt: i32,
    pub task_id: Option<Uuid>,
}

pub struct OutboxMessage<'a> {
    pub exchange: &'a str,
    pub routing_key: &'a str,
    pub message_id: String,
    pub payload: serde_json::Value,
    pub traceparent: &'a str,
    pub attempt: i32,
    pub task_id: Option<Uuid>,
}

/// Adds a message to the outbox; the notification is delivered when the transaction commits.
pub async fn enqueue(conn: &mut PgConnection, m: OutboxMessage<'_>) -> Result<i64> {
    let (id,): (i64,) = sqlx::query_as(
        "INSERT INTO outbox (exchange, routing_key, message_id, payload, traceparent, attempt, task_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(m.exchange)
    .bind(m.routing_key)
    .bind(m.message_id)
    .bind(m.payload)
    .bind(m.traceparent)
    .bind(m.attempt)
    .bind(m.task_id)
    .fetch_one(&mut *conn)
    .await?;
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(NOTIFY_CHANNEL)
        .execute(&mut *conn)
        .await?;
    Ok(id)
}

/// Unsent rows, oldest first, locked so that concurrent relays never publish the same row.
pub async fn lock_unsent(conn: &mut PgConnection, limit: i64) -> Result<Vec<OutboxRow>> {
    Ok(sqlx::query_as(
        "SELECT id, exchange, routing_key, message_id, payload, traceparent, attempt, task_id
         FROM outbox WHERE sent_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
    )
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?)
}

pub async fn mark_sent(conn: &mut PgConnection, ids: &[i64]) -> Result<()> {
    sqlx::query("UPDATE outbox SET sent_at = now() WHERE id = ANY($1)")
        .bind(ids)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Deletes rows sent longer ago than `keep_secs`.
pub async fn prune(conn: &mut PgConnection, keep_secs: i64) -> Result<u64> {
    Ok(sqlx::query(
        "DELETE FROM outbox WHERE sent_at IS NOT NULL AND sent_at < now() - make_interval(secs => $1)",
    )
    .bind(keep_secs as f64)
    .execute(&mut *conn)
    .await?
    .rows_affected())
}

pub async fn unsent_count(conn: &mut PgConnection) -> Result<i64> {
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
        .fetch_one(&mut *conn)
        .await?;
    Ok(n)
}
