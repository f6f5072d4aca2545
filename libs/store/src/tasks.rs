//! Tasks, their steps and their logs.

use crate::clients::Visibility;
use crate::outbox::{self, OutboxMessage, OutboxRow};
use crate::{Result, Store, StoreError};
use berth_contracts::{
    AttemptRecord, LogEntry, LogLevel, MESSAGE_VERSION, Page, SecretNeeds, Step, StepPhase,
    StepStatus, TargetKind, Task, TaskQueued, TaskStatus, Work, exchanges,
};
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, QueryBuilder};
use uuid::Uuid;

/// What cancelling did.
#[derive(Debug)]
pub enum Cancelled {
    /// A queued task ended `cancelled` at once: its `task.finished` notice (none for a
    /// task of a type or target kind this build does not know).
    Now(Option<OutboxRow>),
    /// A processing task: the state service's order to stop it.
    Requested(OutboxRow),
}

/// The `task.finished` notice of a queued task cancelled here (the state service writes
/// the notice of every task that ends through it).
async fn cancelled_notice(conn: &mut PgConnection, row: &TaskRow) -> Result<Option<OutboxRow>> {
    let (Some(task_type), Some(target_kind)) = (
        berth_contracts::TaskType::from_name(&row.task_type),
        TargetKind::parse(&row.target_kind),
    ) else {
        return Ok(None);
    };
    let client: Option<String> = match target_kind {
        TargetKind::Site => sqlx::query_scalar("SELECT client_id::text FROM sites WHERE uri = $1")
            .bind(&row.target)
            .fetch_optional(&mut *conn)
            .await?
            .flatten(),
        _ => None,
    };
    let event = berth_contracts::NoticeEvent::TaskFinished {
        task_id: row.id,
        task_type,
        target: row.target.clone(),
        target_kind,
        status: TaskStatus::Cancelled,
        trace_id: row.trace_id.clone(),
        client,
    };
    Ok(Some(
        outbox::enqueue_notice(conn, event, &row.traceparent).await?,
    ))
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TaskRow {
    pub id: Uuid,
    #[sqlx(rename = "type")]
    pub task_type: String,
    pub target: String,
    pub target_kind: String,
    pub args: serde_json::Value,
    pub status: String,
    pub trace_id: String,
    pub traceparent: String,
    pub requested_by: String,
    pub retry_of: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub cancel_requested_at: Option<DateTime<Utc>>,
}

const TASK_COLUMNS: &str = "id, type, target, target_kind, args, status, trace_id, traceparent, \
     requested_by, retry_of, created_at, started_at, finished_at, cancel_requested_at";

impl TaskRow {
    pub fn status(&self) -> TaskStatus {
        TaskStatus::parse(&self.status).unwrap_or(TaskStatus::Error)
    }

    pub fn into_contract(self) -> Task {
        Task {
            id: self.id,
            status: self.status(),
            target_kind: TargetKind::parse(&self.target_kind).unwrap_or(TargetKind::Server),
            task_type: self.task_type,
            target: self.target,
            args: self.args,
            trace_id: self.trace_id,
            requested_by: self.requested_by,
            retry_of: self.retry_of,
            created_at: self.created_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
            cancel_requested_at: self.cancel_requested_at,
            steps: None,
            log: None,
        }
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StepRow {
    pub id: Uuid,
    pub task_id: Uuid,
    pub position: i32,
    pub service: String,
    pub server: String,
    pub action: String,
    pub args: serde_json::Value,
    pub compensation: Option<String>,
    pub secret: Option<String>,
    /// The step that takes this one back (typed work, as `args`).
    pub undo: Option<serde_json::Value>,
    /// The message version the step was planned with.
    pub protocol: i32,
    pub status: String,
    pub attempts: i32,
    pub error: Option<String>,
    pub history: serde_json::Value,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

const STEP_COLUMNS: &str = "id, task_id, position, service, server, action, args, compensation, \
     secret, undo, protocol, status, attempts, error, history, started_at, finished_at";

impl StepRow {
    pub fn status(&self) -> StepStatus {
        StepStatus::parse(&self.status).unwrap_or(StepStatus::Error)
    }

    pub fn history(&self) -> Vec<AttemptRecord> {
        serde_json::from_value(self.history.clone()).unwrap_or_default()
    }

    /// The step's work in `phase` (the run, or what takes it back); `Err` says why it
    /// cannot be sent: planned by an older berth, or stored unreadable.
    pub fn work(&self, phase: StepPhase) -> std::result::Result<Work, String> {
        if self.protocol != MESSAGE_VERSION as i32 {
            return Err(format!(
                "step {} was planned by an older berth (message version {}; this one speaks {}): \
                 retry the task to plan it anew (POST /api/v1/tasks/{}/retry)",
                self.position, self.protocol, MESSAGE_VERSION, self.task_id
            ));
        }
        let stored = match phase {
            StepPhase::Run => Some(&self.args),
            StepPhase::Compensate => self.undo.as_ref(),
        };
        let stored =
            stored.ok_or_else(|| format!("step {} has nothing to take it back", self.position))?;
        serde_json::from_value(stored.clone())
            .map_err(|e| format!("step {} is stored unreadable: {e}", self.position))
    }

    pub fn secret_needs(&self) -> std::result::Result<SecretNeeds, String> {
        SecretNeeds::parse(self.secret.as_deref())
    }

    pub fn into_contract(self) -> Step {
        Step {
            id: self.id,
            position: self.position,
            status: self.status(),
            history: self.history(),
            service: self.service,
            server: self.server,
            action: self.action,
            attempts: self.attempts,
            error: self.error,
            compensation: self.compensation,
            started_at: self.started_at,
            finished_at: self.finished_at,
        }
    }
}

/// A task to queue.
pub struct NewTaskRow<'a> {
    pub id: Uuid,
    pub task_type: &'a str,
    pub target: &'a str,
    pub target_kind: TargetKind,
    pub args: &'a serde_json::Value,
    pub trace_id: &'a str,
    pub traceparent: &'a str,
    pub requested_by: &'a str,
    pub retry_of: Option<Uuid>,
}

/// Writes a queued task and the outbox message that hands it to the dispatcher, in the
/// caller's transaction: either both are written or neither is. The outbox row is for the
/// publisher, after commit.
pub async fn queue_task(
    conn: &mut PgConnection,
    t: NewTaskRow<'_>,
) -> Result<(TaskRow, OutboxRow)> {
    let row: TaskRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO tasks (id, type, target, target_kind, args, status, trace_id, traceparent, requested_by, retry_of, client_id)
         VALUES ($1, $2, $3, $4, $5, 'queued', $6, $7, $8, $9,
                 (SELECT client_id FROM sites WHERE uri = $3 AND $4 = 'site'))
         RETURNING {TASK_COLUMNS}"
    )))
    .bind(t.id)
    .bind(t.task_type)
    .bind(t.target)
    .bind(t.target_kind.as_str())
    .bind(t.args)
    .bind(t.trace_id)
    .bind(t.traceparent)
    .bind(t.requested_by)
    .bind(t.retry_of)
    .fetch_one(&mut *conn)
    .await?;
    let message = announce_task(conn, t.id, t.target, t.traceparent).await?;
    Ok((row, message))
}

/// Puts a `TaskQueued` message for the dispatcher in the outbox.
pub async fn announce_task(
    conn: &mut PgConnection,
    task_id: Uuid,
    target: &str,
    traceparent: &str,
) -> Result<OutboxRow> {
    outbox::enqueue(
        conn,
        OutboxMessage {
            exchange: exchanges::TASKS,
            routing_key: exchanges::TASK_KEY,
            message_id: task_id.to_string(),
            payload: serde_json::to_value(TaskQueued {
                task_id,
                target: Some(target.to_string()),
            })
            .expect("serialisable"),
            traceparent,
            attempt: 1,
            task_id: Some(task_id),
        },
    )
    .await
}

pub async fn get_task_row(conn: &mut PgConnection, id: Uuid) -> Result<Option<TaskRow>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?)
}

/// Locks the task row for the rest of the transaction.
/// Stores a sealed secret the task's steps will need.
pub async fn insert_task_secret(
    conn: &mut PgConnection,
    task_id: Uuid,
    name: &str,
    sealed: &str,
) -> Result<()> {
    sqlx::query("INSERT INTO task_secrets (task_id, name, sealed) VALUES ($1, $2, $3)")
        .bind(task_id)
        .bind(name)
        .bind(sealed)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Gives task `to` the secrets task `from` came with (a retry needs what its task had: a
/// restore's new database password).
pub async fn copy_task_secrets(conn: &mut PgConnection, to: Uuid, from: Uuid) -> Result<()> {
    sqlx::query(
        "INSERT INTO task_secrets (task_id, name, sealed)
         SELECT $1, name, sealed FROM task_secrets WHERE task_id = $2",
    )
    .bind(to)
    .bind(from)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Tasks waiting to start (`queued`), counting at most `limit` of them.
pub async fn queued_count(conn: &mut PgConnection, limit: u64) -> Result<u64> {
    let (queued,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM (SELECT 1 FROM tasks WHERE status = 'queued' LIMIT $1) q",
    )
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_one(&mut *conn)
    .await?;
    Ok(queued as u64)
}

pub async fn task_secret(
    conn: &mut PgConnection,
    task_id: Uuid,
    name: &str,
) -> Result<Option<String>> {
    let row: Option<(String,)> =
        sqlx::query_as("SELECT sealed FROM task_secrets WHERE task_id = $1 AND name = $2")
            .bind(task_id)
            .bind(name)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(row.map(|(s,)| s))
}

pub async fn lock_task(conn: &mut PgConnection, id: Uuid) -> Result<Option<TaskRow>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1 FOR UPDATE"
    )))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?)
}

pub async fn target_of(conn: &mut PgConnection, id: Uuid) -> Result<Option<String>> {
    let row: Option<(String,)> = sqlx::query_as("SELECT target FROM tasks WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.map(|r| r.0))
}

/// Serialises everything the dispatcher does to one target, for the rest of the
/// transaction. Always taken before any task row lock, so that lock order is fixed.
pub async fn lock_target(conn: &mut PgConnection, target: &str) -> Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(target)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The task to start on a target: its oldest queued one, if none is processing.
pub async fn startable(conn: &mut PgConnection, target: &str) -> Result<Option<Uuid>> {
    let row: Option<(Uuid,)> = sqlx::query_as(
        "SELECT id FROM tasks WHERE target = $1 AND status = 'queued'
           AND NOT EXISTS (SELECT 1 FROM tasks WHERE target = $1 AND status = 'processing')
         ORDER BY created_at, id LIMIT 1",
    )
    .bind(target)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|r| r.0))
}

/// Appends several log lines in one statement.
pub async fn append_logs(conn: &mut PgConnection, lines: &[NewLog]) -> Result<()> {
    if lines.is_empty() {
        return Ok(());
    }
    let task: Vec<Uuid> = lines.iter().map(|l| l.task_id).collect();
    let step: Vec<Option<Uuid>> = lines.iter().map(|l| l.step_id).collect();
    let level: Vec<&str> = lines.iter().map(|l| l.level.as_str()).collect();
    let message: Vec<&str> = lines.iter().map(|l| l.message.as_str()).collect();
    let at: Vec<DateTime<Utc>> = lines.iter().map(|l| l.at).collect();
    // WITH ORDINALITY keeps the lines in the order given (seq follows insertion order).
    sqlx::query(
        "INSERT INTO task_log (task_id, step_id, level, message, at)
         SELECT t, s, l, m, a FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::timestamptz[])
              WITH ORDINALITY AS x(t, s, l, m, a, n) ORDER BY n",
    )
    .bind(&task)
    .bind(&step)
    .bind(&level)
    .bind(&message)
    .bind(&at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A task log line to append with [`append_logs`].
#[derive(Debug, Clone)]
pub struct NewLog {
    pub task_id: Uuid,
    pub step_id: Option<Uuid>,
    pub level: LogLevel,
    pub message: String,
    pub at: DateTime<Utc>,
}

/// The oldest queued task of a target: the one to start when the target frees up.
pub async fn next_queued(conn: &mut PgConnection, target: &str) -> Result<Option<Uuid>> {
    let row: Option<(Uuid,)> = sqlx::query_as(
        "SELECT id FROM tasks WHERE target = $1 AND status = 'queued' ORDER BY created_at, id LIMIT 1",
    )
    .bind(target)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|r| r.0))
}

pub async fn set_task_status(conn: &mut PgConnection, id: Uuid, status: TaskStatus) -> Result<()> {
    let sql = match status {
        TaskStatus::Processing => {
            "UPDATE tasks SET status = $2, started_at = COALESCE(started_at, now()) WHERE id = $1"
        }
        s if s.is_finished() => "UPDATE tasks SET status = $2, finished_at = now() WHERE id = $1",
        _ => "UPDATE tasks SET status = $2, finished_at = NULL WHERE id = $1",
    };
    sqlx::query(sql)
        .bind(id)
        .bind(status.as_str())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub struct NewStep<'a> {
    pub id: Uuid,
    pub position: i32,
    pub service: &'a str,
    pub server: &'a str,
    pub action: &'a str,
    pub args: &'a serde_json::Value,
    pub compensation: Option<&'a str>,
    pub secret: Option<&'a str>,
    pub undo: Option<&'a serde_json::Value>,
}

/// Inserts a task's plan in one statement; returns the steps in order.
pub async fn insert_steps(
    conn: &mut PgConnection,
    task_id: Uuid,
    steps: &[NewStep<'_>],
) -> Result<Vec<StepRow>> {
    let ids: Vec<Uuid> = steps.iter().map(|s| s.id).collect();
    let positions: Vec<i32> = steps.iter().map(|s| s.position).collect();
    let services: Vec<&str> = steps.iter().map(|s| s.service).collect();
    let servers: Vec<&str> = steps.iter().map(|s| s.server).collect();
    let actions: Vec<&str> = steps.iter().map(|s| s.action).collect();
    let args: Vec<&serde_json::Value> = steps.iter().map(|s| s.args).collect();
    let compensations: Vec<Option<&str>> = steps.iter().map(|s| s.compensation).collect();
    let secrets: Vec<Option<&str>> = steps.iter().map(|s| s.secret).collect();
    let undos: Vec<Option<&serde_json::Value>> = steps.iter().map(|s| s.undo).collect();
    let mut rows: Vec<StepRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO steps (id, task_id, position, service, server, action, args, compensation, secret, undo, protocol, status)
         SELECT i, $2, p, sv, se, a, ar, c, sc, u, $11, 'pending'
         FROM unnest($1::uuid[], $3::int[], $4::text[], $5::text[], $6::text[], $7::jsonb[], $8::text[], $9::text[], $10::jsonb[])
              AS x(i, p, sv, se, a, ar, c, sc, u)
         RETURNING {STEP_COLUMNS}"
    )))
    .bind(&ids)
    .bind(task_id)
    .bind(&positions)
    .bind(&services)
    .bind(&servers)
    .bind(&actions)
    .bind(&args)
    .bind(&compensations)
    .bind(&secrets)
    .bind(&undos)
    .bind(MESSAGE_VERSION as i32)
    .fetch_all(&mut *conn)
    .await?;
    rows.sort_by_key(|r| r.position);
    Ok(rows)
}

pub async fn steps_of(conn: &mut PgConnection, task_id: Uuid) -> Result<Vec<StepRow>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {STEP_COLUMNS} FROM steps WHERE task_id = $1 ORDER BY position"
    )))
    .bind(task_id)
    .fetch_all(&mut *conn)
    .await?)
}

/// Moves a step from one of `from` to `to`; returns false (and changes nothing) when the
/// step is not in one of `from`: that is how a redelivered result is recognised.
pub async fn transition_step(
    conn: &mut PgConnection,
    step_id: Uuid,
    from: &[StepStatus],
    to: StepStatus,
    change: StepChange<'_>,
) -> Result<bool> {
    let from: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
    let done = sqlx::query(
        "UPDATE steps SET status = $3,
            attempts = GREATEST(attempts, COALESCE($4, attempts)),
            error = CASE WHEN $5::text IS NULL THEN error ELSE $5 END,
            started_at = COALESCE(started_at, $6),
            finished_at = CASE WHEN $7 THEN now() ELSE NULL END
         WHERE id = $1 AND status = ANY($2)",
    )
    .bind(step_id)
    .bind(&from)
    .bind(to.as_str())
    .bind(change.attempt)
    .bind(change.error)
    .bind(change.started_at)
    .bind(change.finished)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(done == 1)
}

#[derive(Default)]
pub struct StepChange<'a> {
    pub attempt: Option<i32>,
    pub error: Option<&'a str>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished: bool,
}

/// Records a failed attempt in the step's history, once per attempt number.
pub async fn record_attempt(
    conn: &mut PgConnection,
    step_id: Uuid,
    record: &AttemptRecord,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE steps SET history = history || jsonb_build_array($2::jsonb),
            attempts = GREATEST(attempts, $3), started_at = COALESCE(started_at, $4)
         WHERE id = $1 AND status = 'running'
           AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements(history) h WHERE (h->>'attempt')::int = $3)",
    )
    .bind(step_id)
    .bind(serde_json::to_value(record).expect("serialisable"))
    .bind(record.attempt as i32)
    .bind(record.at)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(done == 1)
}

pub async fn set_step_history(
    conn: &mut PgConnection,
    step_id: Uuid,
    history: &[AttemptRecord],
) -> Result<()> {
    sqlx::query("UPDATE steps SET history = $2, attempts = GREATEST(attempts, $3) WHERE id = $1")
        .bind(step_id)
        .bind(serde_json::to_value(history).expect("serialisable"))
        .bind(history.iter().map(|h| h.attempt as i32).max().unwrap_or(0))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub async fn append_log(
    conn: &mut PgConnection,
    task_id: Uuid,
    step_id: Option<Uuid>,
    level: LogLevel,
    message: &str,
    at: Option<DateTime<Utc>>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO task_log (task_id, step_id, level, message, at) VALUES ($1, $2, $3, $4, COALESCE($5, now()))",
    )
    .bind(task_id)
    .bind(step_id)
    .bind(level.as_str())
    .bind(message)
    .bind(at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn task_log(conn: &mut PgConnection, task_id: Uuid, after: i64) -> Result<Vec<LogEntry>> {
    type Row = (i64, DateTime<Utc>, String, Option<Uuid>, String);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT seq, at, level, step_id, message FROM task_log WHERE task_id = $1 AND seq > $2 ORDER BY seq",
    )
    .bind(task_id)
    .bind(after)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(seq, at, level, step_id, message)| LogEntry {
            seq,
            at,
            level: LogLevel::parse(&level),
            step_id,
            message,
        })
        .collect())
}

#[derive(Debug, Default, Clone)]
pub struct TaskFilter {
    pub status: Option<TaskStatus>,
    pub task_type: Option<String>,
    pub target: Option<String>,
    pub limit: i64,
    pub offset: i64,
}

impl Store {
    /// The tasks `seen` allows (a client's: those of its sites), filtered in SQL.
    pub async fn list_tasks(&self, f: &TaskFilter, seen: Visibility) -> Result<Page<Task>> {
        let filtered = |qb: &mut QueryBuilder<sqlx::Postgres>, f: &TaskFilter| {
            qb.push(" WHERE true");
            if let Some(c) = seen.client() {
                qb.push(" AND client_id = ").push_bind(c);
            }
            if let Some(s) = f.status {
                qb.push(" AND status = ").push_bind(s.as_str());
            }
            if let Some(t) = &f.task_type {
                qb.push(" AND type = ").push_bind(t);
            }
            if let Some(t) = &f.target {
                qb.push(" AND target = ").push_bind(t.clone());
            }
        };
        let mut count = QueryBuilder::new("SELECT count(*) FROM tasks");
        filtered(&mut count, f);
        let (total,): (i64,) = count.build_query_as().fetch_one(&self.pool).await?;
        let mut qb = QueryBuilder::new(format!("SELECT {TASK_COLUMNS} FROM tasks"));
        filtered(&mut qb, f);
        qb.push(" ORDER BY created_at DESC, id DESC LIMIT ")
            .push_bind(f.limit)
            .push(" OFFSET ")
            .push_bind(f.offset);
        let rows: Vec<TaskRow> = qb.build_query_as().fetch_all(&self.pool).await?;
        Ok(Page {
            items: rows.into_iter().map(TaskRow::into_contract).collect(),
            total,
            limit: f.limit,
            offset: f.offset,
        })
    }

    /// A queued or running task of this type on this target, if any.
    pub async fn unfinished_task(&self, target: &str, task_type: &str) -> Result<Option<Uuid>> {
        let row: Option<(Uuid,)> = sqlx::query_as(
            "SELECT id FROM tasks WHERE target = $1 AND type = $2
               AND status IN ('queued', 'processing') ORDER BY created_at LIMIT 1",
        )
        .bind(target)
        .bind(task_type)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(id,)| id))
    }

    /// Whether the task exists and `seen` allows it.
    pub async fn task_visible(&self, id: Uuid, seen: Visibility) -> Result<bool> {
        let (found,): (bool,) = sqlx::query_as(
            "SELECT EXISTS (SELECT 1 FROM tasks WHERE id = $1
                              AND ($2::uuid IS NULL OR client_id = $2))",
        )
        .bind(id)
        .bind(seen.client())
        .fetch_one(&self.pool)
        .await?;
        Ok(found)
    }

    pub async fn get_task(&self, id: Uuid) -> Result<Option<Task>> {
        self.get_visible_task(id, Visibility::All).await
    }

    /// A task with its steps and log, if `seen` allows it.
    pub async fn get_visible_task(&self, id: Uuid, seen: Visibility) -> Result<Option<Task>> {
        if !self.task_visible(id, seen).await? {
            return Ok(None);
        }
        let mut conn = self.pool.acquire().await?;
        let Some(row) = get_task_row(&mut conn, id).await? else {
            return Ok(None);
        };
        let steps = steps_of(&mut conn, id).await?;
        let log = task_log(&mut conn, id, 0).await?;
        let mut task = row.into_contract();
        task.steps = Some(steps.into_iter().map(StepRow::into_contract).collect());
        task.log = Some(log);
        Ok(Some(task))
    }

    pub async fn task_log(
        &self,
        id: Uuid,
        after: i64,
    ) -> Result<Option<(TaskStatus, Vec<LogEntry>)>> {
        let mut conn = self.pool.acquire().await?;
        let Some(row) = get_task_row(&mut conn, id).await? else {
            return Ok(None);
        };
        Ok(Some((row.status(), task_log(&mut conn, id, after).await?)))
    }

    /// Cancels a task: a queued one at once (with its `task.finished` notice); a processing
    /// one is marked for cancelling and the state service told, which stops its running
    /// step, takes back its done steps and ends it `cancelled`. A finished task is refused.
    /// Either way, the outbox row to publish after this commits.
    pub async fn cancel_task(&self, id: Uuid, by: &str) -> Result<(Task, Cancelled)> {
        let mut tx = self.pool.begin().await?;
        let Some(target) = target_of(&mut tx, id).await? else {
            return Err(StoreError::NotFound(format!("task {id}")));
        };
        lock_target(&mut tx, &target).await?;
        let row = lock_task(&mut tx, id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("task {id}")))?;
        let message = match row.status() {
            TaskStatus::Queued => {
                set_task_status(&mut tx, id, TaskStatus::Cancelled).await?;
                append_log(
                    &mut tx,
                    id,
                    None,
                    LogLevel::Warning,
                    &format!("cancelled by {by}"),
                    None,
                )
                .await?;
                Cancelled::Now(cancelled_notice(&mut tx, &row).await?)
            }
            TaskStatus::Processing => {
                if row.cancel_requested_at.is_none() {
                    sqlx::query(
                        "UPDATE tasks SET cancel_requested_at = now(), cancel_requested_by = $2
                         WHERE id = $1",
                    )
                    .bind(id)
                    .bind(by)
                    .execute(&mut *tx)
                    .await?;
                    append_log(
                        &mut tx,
                        id,
                        None,
                        LogLevel::Warning,
                        &format!(
                            "cancel requested by {by}: the running step is stopped, the steps \
                             done are taken back"
                        ),
                        None,
                    )
                    .await?;
                }
                // Asked again: tell the state service again (it changes nothing twice).
                Cancelled::Requested(announce_task(&mut tx, id, &target, &row.traceparent).await?)
            }
            s => {
                return Err(StoreError::Conflict(format!(
                    "task {id} is {}: only a queued or processing task can be cancelled",
                    s.as_str()
                )));
            }
        };
        let row = get_task_row(&mut tx, id).await?.expect("locked row exists");
        tx.commit().await?;
        Ok((row.into_contract(), message))
    }
}
