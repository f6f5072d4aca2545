//! Dead letters: step commands that failed for good, kept for operators to replay or discard.

use crate::{Result, Store};
use berth_contracts::{AttemptRecord, DeadLetter};
use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeadRow {
    pub id: Uuid,
    pub task_id: Uuid,
    pub step_id: Uuid,
    pub routing_key: String,
    pub error: String,
    pub history: serde_json::Value,
    pub payload: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub replayed_at: Option<DateTime<Utc>>,
}

impl DeadRow {
    pub fn into_contract(self) -> DeadLetter {
        let mut payload = self.payload;
        // The sealed secret is ciphertext, but an operator has no use for it: keep it out.
        if let Some(o) = payload.as_object_mut() {
            o.remove("sealed");
            o.remove("secrets");
        }
        DeadLetter {
            id: self.id,
            task_id: self.task_id,
            step_id: self.step_id,
            routing_key: self.routing_key,
            error: self.error,
            history: serde_json::from_value::<Vec<AttemptRecord>>(self.history).unwrap_or_default(),
            payload,
            created_at: self.created_at,
            replayed_at: self.replayed_at,
        }
    }
}

const COLUMNS: &str =
    "id, task_id, step_id, routing_key, error, history, payload, created_at, replayed_at";

pub struct NewDead<'a> {
    pub task_id: Uuid,
    pub step_id: Uuid,
    pub routing_key: &'a str,
    pub error: &'a str,
    pub history: &'a [AttemptRecord],
    pub payload: serde_json::Value,
}

/// Records a dead letter once per (step, attempt count): a redelivered dead message is a no-op.
pub async fn insert(conn: &mut PgConnection, d: NewDead<'_>) -> Result<bool> {
    let attempts = d.history.len() as i32;
    let done = sqlx::query(
        "INSERT INTO dead_letters (id, task_id, step_id, routing_key, error, history, payload)
         SELECT $1, $2, $3, $4, $5, $6, $7
         WHERE NOT EXISTS (SELECT 1 FROM dead_letters WHERE step_id = $3 AND replayed_at IS NULL
                             AND jsonb_array_length(history) = $8)",
    )
    .bind(Uuid::now_v7())
    .bind(d.task_id)
    .bind(d.step_id)
    .bind(d.routing_key)
    .bind(d.error)
    .bind(serde_json::to_value(d.history).expect("serialisable"))
    .bind(d.payload)
    .bind(attempts)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(done == 1)
}

pub async fn lock(conn: &mut PgConnection, id: Uuid) -> Result<Option<DeadRow>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM dead_letters WHERE id = $1 AND discarded_at IS NULL FOR UPDATE"
    )))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?)
}

pub async fn mark_replayed(conn: &mut PgConnection, id: Uuid) -> Result<()> {
    sqlx::query("UPDATE dead_letters SET replayed_at = now() WHERE id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

impl Store {
    /// Dead letters not discarded, newest first (replayed ones show `replayed_at`).
    pub async fn list_dead_letters(
        &self,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<DeadLetter>, i64)> {
        let (total,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM dead_letters WHERE discarded_at IS NULL")
                .fetch_one(&self.pool)
                .await?;
        let rows: Vec<DeadRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM dead_letters WHERE discarded_at IS NULL
             ORDER BY created_at DESC LIMIT $1 OFFSET $2"
        )))
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        Ok((
            rows.into_iter().map(DeadRow::into_contract).collect(),
            total,
        ))
    }

    pub async fn get_dead_letter(&self, id: Uuid) -> Result<Option<DeadLetter>> {
        let row: Option<DeadRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM dead_letters WHERE id = $1 AND discarded_at IS NULL"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(DeadRow::into_contract))
    }

    /// Discards a dead letter: it leaves the list; the task keeps its history.
    pub async fn discard_dead_letter(&self, id: Uuid) -> Result<bool> {
        Ok(sqlx::query(
            "UPDATE dead_letters SET discarded_at = now() WHERE id = $1 AND discarded_at IS NULL",
        )
        .bind(id)
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1)
    }
}

impl Store {
    /// Replays a dead letter: its task is queued again, resuming at the failed step (steps
    /// taken back by compensation run again too). The dispatcher sends the step with the
    /// next attempt number.
    pub async fn replay_dead_letter(
        &self,
        id: Uuid,
        by: &str,
    ) -> Result<(berth_contracts::Task, crate::outbox::OutboxRow)> {
        use crate::StoreError;
        use crate::tasks as t;
        use berth_contracts::{LogLevel, TaskStatus};
        let mut tx = self.pool.begin().await?;
        let Some(d) = lock(&mut tx, id).await? else {
            return Err(StoreError::NotFound(format!("dead letter {id}")));
        };
        if d.replayed_at.is_some() {
            return Err(StoreError::Conflict(format!(
                "dead letter {id} was replayed already; see task {}",
                d.task_id
            )));
        }
        let target = t::target_of(&mut tx, d.task_id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("task {}", d.task_id)))?;
        t::lock_target(&mut tx, &target).await?;
        let task = t::lock_task(&mut tx, d.task_id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("task {}", d.task_id)))?;
        if !task.status().is_finished() {
            return Err(StoreError::Conflict(format!(
                "task {} is {}; replay it once it has finished",
                task.id, task.status
            )));
        }
        sqlx::query(
            "UPDATE steps SET status = 'pending', error = NULL, finished_at = NULL
             WHERE task_id = $1 AND status IN ('error', 'compensated', 'compensating')",
        )
        .bind(task.id)
        .execute(&mut *tx)
        .await?;
        t::set_task_status(&mut tx, task.id, TaskStatus::Queued).await?;
        t::append_log(
            &mut tx,
            task.id,
            Some(d.step_id),
            LogLevel::Warning,
            &format!("dead letter {id} replayed by {by}: task queued again"),
            None,
        )
        .await?;
        let message = t::announce_task(&mut tx, task.id, &task.target, &task.traceparent).await?;
        mark_replayed(&mut tx, id).await?;
        let row = t::get_task_row(&mut tx, task.id)
            .await?
            .expect("locked task exists");
        tx.commit().await?;
        Ok((row.into_contract(), message))
    }
}
