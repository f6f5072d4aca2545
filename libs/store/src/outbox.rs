//! The transactional outbox: a message is written in the transaction that makes it true,
//! and published after commit with publisher confirms (berth-outbox): at once by the process
//! that wrote it, or later by any relay's sweep if that did not happen.

use crate::Result;
use sqlx::PgConnection;
use uuid::Uuid;

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

/// Adds a message to the outbox. The row it returns is to be handed to the publisher once
/// the transaction has committed (and dropped if it rolls back).
pub async fn enqueue(conn: &mut PgConnection, m: OutboxMessage<'_>) -> Result<OutboxRow> {
    let (id,): (i64,) = sqlx::query_as(
        "INSERT INTO outbox (exchange, routing_key, message_id, payload, traceparent, attempt, task_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(m.exchange)
    .bind(m.routing_key)
    .bind(&m.message_id)
    .bind(&m.payload)
    .bind(m.traceparent)
    .bind(m.attempt)
    .bind(m.task_id)
    .fetch_one(&mut *conn)
    .await?;
    Ok(OutboxRow {
        id,
        exchange: m.exchange.to_string(),
        routing_key: m.routing_key.to_string(),
        message_id: m.message_id,
        payload: m.payload,
        traceparent: m.traceparent.to_string(),
        attempt: m.attempt,
        task_id: m.task_id,
    })
}

/// Unsent rows older than `min_age_ms`, oldest first, locked so that concurrent sweeps never
/// publish the same row. The age leaves fresh rows to the process that wrote them.
pub async fn lock_unsent(
    conn: &mut PgConnection,
    limit: i64,
    min_age_ms: i64,
) -> Result<Vec<OutboxRow>> {
    Ok(sqlx::query_as(
        "SELECT id, exchange, routing_key, message_id, payload, traceparent, attempt, task_id
         FROM outbox WHERE sent_at IS NULL AND created_at < now() - make_interval(secs => $2)
         ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
    )
    .bind(limit)
    .bind(min_age_ms as f64 / 1000.0)
    .fetch_all(&mut *conn)
    .await?)
}

pub async fn mark_sent<'c, E>(conn: E, ids: &[i64]) -> Result<()>
where
    E: sqlx::PgExecutor<'c>,
{
    sqlx::query("UPDATE outbox SET sent_at = now() WHERE id = ANY($1) AND sent_at IS NULL")
        .bind(ids)
        .execute(conn)
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

/// Writes `event` as a notice (to `berth.notices`, for webhooks: decision 0021) in the
/// caller's transaction, the one that makes it true; `traceparent`: the task's trace, which
/// its deliveries carry. A task's own outbox rows are its messages to run it, so the notice
/// names no task (its body does).
pub async fn enqueue_notice(
    conn: &mut PgConnection,
    event: berth_contracts::NoticeEvent,
    traceparent: &str,
) -> Result<OutboxRow> {
    let notice = berth_contracts::Notice {
        id: Uuid::now_v7(),
        at: chrono::Utc::now(),
        event,
    };
    enqueue(
        conn,
        OutboxMessage {
            exchange: berth_contracts::exchanges::NOTICES,
            routing_key: notice.event.kind(),
            message_id: notice.id.to_string(),
            payload: serde_json::to_value(&notice).expect("serialisable"),
            traceparent,
            attempt: 1,
            task_id: None,
        },
    )
    .await
}
