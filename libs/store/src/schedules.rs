//! Schedules, their runs (one row per schedule, site and slot: the unique key that keeps any
//! number of scheduler processes from firing a slot twice) and their alerts.

use crate::clients::Visibility;
use crate::{Result, Store, StoreError, conflict_on_unique};
use berth_contracts::schedule::{ScheduleAlert, ScheduleRun};
use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ScheduleRow {
    #[sqlx(flatten)]
    pub values: ScheduleValues,
    pub closed_through: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A schedule a client-bound caller (`$1`) may see: one scoped to one of its sites.
const VISIBLE: &str = "($1::uuid IS NULL OR EXISTS (SELECT 1 FROM sites s
    WHERE s.client_id = $1 AND 'site:' || s.uri = schedules.scope))";

const COLUMNS: &str = "name, kind, scope, expression, time_zone, job, window_secs, spread_secs, \
    cap_per_web_server, cap_per_db_server, alert_after_failures, enabled, closed_through, \
    created_at, updated_at";

/// A schedule as saved (checked by the caller).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ScheduleValues {
    pub name: String,
    pub kind: String,
    pub scope: String,
    pub expression: String,
    pub time_zone: String,
    pub job: serde_json::Value,
    pub window_secs: i32,
    pub spread_secs: i32,
    pub cap_per_web_server: i32,
    pub cap_per_db_server: i32,
    pub alert_after_failures: i32,
    pub enabled: bool,
}

/// What the scheduler knows of a site that schedules may cover.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SiteHomeRow {
    pub uri: String,
    pub platform: String,
    pub client: Option<String>,
    /// The client's id: what notices name (webhook endpoints are bound by it).
    pub client_id: uuid::Uuid,
    pub web_server: String,
    pub db_server: String,
    /// Whether berth holds the site's cron key (a site installed before keys has none yet).
    pub has_cron_key: bool,
}

/// A site's newest fired runs of a schedule, newest first: `Some(status)` of the task, or
/// `None` when the task row is gone (pruned: it had ended).
pub type RecentRuns = HashMap<String, Vec<Option<String>>>;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RunRow {
    pub id: i64,
    pub schedule: String,
    pub site: String,
    pub slot: DateTime<Utc>,
    pub due_at: DateTime<Utc>,
    pub status: String,
    pub task_id: Option<Uuid>,
    pub task_status: Option<String>,
    pub recorded_at: DateTime<Utc>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AlertRow {
    pub id: i64,
    pub schedule: String,
    pub site: Option<String>,
    pub kind: String,
    pub message: String,
    pub raised_at: DateTime<Utc>,
    pub cleared_at: Option<DateTime<Utc>>,
}

impl RunRow {
    pub fn into_contract(self) -> ScheduleRun {
        ScheduleRun {
            id: self.id,
            schedule: self.schedule,
            site: self.site,
            slot: self.slot,
            due_at: self.due_at,
            status: self.status,
            task_id: self.task_id,
            task_status: self.task_status,
            recorded_at: self.recorded_at,
        }
    }
}

impl AlertRow {
    pub fn into_contract(self) -> ScheduleAlert {
        ScheduleAlert {
            id: self.id,
            schedule: self.schedule,
            site: self.site,
            kind: self.kind,
            message: self.message,
            raised_at: self.raised_at,
            cleared_at: self.cleared_at,
        }
    }
}

pub async fn insert(conn: &mut PgConnection, v: &ScheduleValues) -> Result<ScheduleRow> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO schedules (name, kind, scope, expression, time_zone, job, window_secs,
            spread_secs, cap_per_web_server, cap_per_db_server, alert_after_failures, enabled)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING {COLUMNS}"
    )))
    .bind(&v.name)
    .bind(&v.kind)
    .bind(&v.scope)
    .bind(&v.expression)
    .bind(&v.time_zone)
    .bind(&v.job)
    .bind(v.window_secs)
    .bind(v.spread_secs)
    .bind(v.cap_per_web_server)
    .bind(v.cap_per_db_server)
    .bind(v.alert_after_failures)
    .bind(v.enabled)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| {
        conflict_on_unique(e, || {
            format!(
                "a schedule named `{}`, or a {} schedule for `{}`, exists already",
                v.name, v.kind, v.scope
            )
        })
    })
}

/// Replaces a schedule's settings (not its name, kind or scope). Slots before now are not
/// fired late because of a change: `closed_through` moves to now when the expression or the
/// time zone changes, or when the schedule is enabled again.
pub async fn update(conn: &mut PgConnection, v: &ScheduleValues) -> Result<ScheduleRow> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE schedules SET expression = $2, time_zone = $3, job = $4, window_secs = $5,
            spread_secs = $6, cap_per_web_server = $7, cap_per_db_server = $8,
            alert_after_failures = $9,
            closed_through = CASE WHEN expression <> $2 OR time_zone <> $3 OR (NOT enabled AND $10)
                                  THEN greatest(closed_through, now()) ELSE closed_through END,
            enabled = $10, updated_at = now()
         WHERE name = $1 RETURNING {COLUMNS}"
    )))
    .bind(&v.name)
    .bind(&v.expression)
    .bind(&v.time_zone)
    .bind(&v.job)
    .bind(v.window_secs)
    .bind(v.spread_secs)
    .bind(v.cap_per_web_server)
    .bind(v.cap_per_db_server)
    .bind(v.alert_after_failures)
    .bind(v.enabled)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| StoreError::NotFound(format!("schedule `{}`", v.name)))
}

pub async fn get(conn: &mut PgConnection, name: &str) -> Result<Option<ScheduleRow>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM schedules WHERE name = $1"
    )))
    .bind(name)
    .fetch_optional(&mut *conn)
    .await?)
}

/// Moves the watermark: every slot at or before `through` has a row for each site.
pub async fn close_through(
    conn: &mut PgConnection,
    name: &str,
    through: DateTime<Utc>,
) -> Result<()> {
    sqlx::query(
        "UPDATE schedules SET closed_through = greatest(closed_through, $2) WHERE name = $1",
    )
    .bind(name)
    .bind(through)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Records a site's run of a slot, unless one is recorded already (another scheduler's):
/// whether this call recorded it.
pub async fn record_run(
    conn: &mut PgConnection,
    schedule: &str,
    site: &str,
    slot: DateTime<Utc>,
    due_at: DateTime<Utc>,
    status: &str,
) -> Result<Option<i64>> {
    let id: Option<(i64,)> = sqlx::query_as(
        "INSERT INTO schedule_runs (schedule, site, slot, due_at, status)
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (schedule, site, slot) DO NOTHING RETURNING id",
    )
    .bind(schedule)
    .bind(site)
    .bind(slot)
    .bind(due_at)
    .bind(status)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(id.map(|(id,)| id))
}

pub async fn set_run_task(conn: &mut PgConnection, run: i64, task_id: Uuid) -> Result<()> {
    sqlx::query("UPDATE schedule_runs SET task_id = $2 WHERE id = $1")
        .bind(run)
        .bind(task_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The sites that have a run (of any status) recorded for a slot.
pub async fn sites_with_run(
    conn: &mut PgConnection,
    schedule: &str,
    slot: DateTime<Utc>,
) -> Result<HashSet<String>> {
    let rows: Vec<(String,)> =
        sqlx::query_as("SELECT site FROM schedule_runs WHERE schedule = $1 AND slot = $2")
            .bind(schedule)
            .bind(slot)
            .fetch_all(&mut *conn)
            .await?;
    Ok(rows.into_iter().map(|(s,)| s).collect())
}

/// Each site's newest `n` fired runs of a schedule with their tasks' statuses.
pub async fn recent_runs(conn: &mut PgConnection, schedule: &str, n: i64) -> Result<RecentRuns> {
    let rows: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT r.site, t.status FROM (
             SELECT site, task_id, slot,
                    row_number() OVER (PARTITION BY site ORDER BY slot DESC) AS rn
             FROM schedule_runs WHERE schedule = $1 AND status = 'fired') r
         LEFT JOIN tasks t ON t.id = r.task_id
         WHERE r.rn <= $2 ORDER BY r.site, r.slot DESC",
    )
    .bind(schedule)
    .bind(n.max(1))
    .fetch_all(&mut *conn)
    .await?;
    let mut out: RecentRuns = HashMap::new();
    for (site, status) in rows {
        out.entry(site).or_default().push(status);
    }
    Ok(out)
}

/// For each site with a backup still there: when its newest one was verified by a drill.
pub async fn newest_backup_verified(
    conn: &mut PgConnection,
) -> Result<HashMap<String, Option<DateTime<Utc>>>> {
    let rows: Vec<(String, Option<DateTime<Utc>>)> = sqlx::query_as(
        "SELECT DISTINCT ON (site) site, verified_at FROM backups
         WHERE deleted_at IS NULL ORDER BY site, created_at DESC",
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().collect())
}

/// The enabled sites, with their web and db servers.
pub async fn site_homes(conn: &mut PgConnection) -> Result<Vec<SiteHomeRow>> {
    Ok(sqlx::query_as(
        "SELECT s.uri, s.platform, (SELECT c.name FROM clients c WHERE c.id = s.client_id) AS client, s.client_id, p.web_server, s.db_server,
                s.cron_key_sealed IS NOT NULL AS has_cron_key
         FROM sites s JOIN platforms p ON p.name = s.platform
         WHERE s.status = 'enabled' ORDER BY s.uri",
    )
    .fetch_all(&mut *conn)
    .await?)
}

/// Which server a cap is counted on.
#[derive(Debug, Clone, Copy)]
pub enum CapOn<'a> {
    WebServer(&'a str),
    DbServer(&'a str),
}

/// Takes the cap's lock for the rest of the transaction (so that two schedulers never both
/// see room for one more), then counts the tasks of `task_type` queued or running on sites of
/// the server.
pub async fn lock_and_count(
    conn: &mut PgConnection,
    task_type: &str,
    on: CapOn<'_>,
) -> Result<i64> {
    let (key, server, sql) = match on {
        CapOn::WebServer(s) => (
            "web",
            s,
            "SELECT count(*) FROM tasks t JOIN sites s ON s.uri = t.target
             JOIN platforms p ON p.name = s.platform
             WHERE t.type = $1 AND t.status IN ('queued', 'processing') AND p.web_server = $2",
        ),
        CapOn::DbServer(s) => (
            "db",
            s,
            "SELECT count(*) FROM tasks t JOIN sites s ON s.uri = t.target
             WHERE t.type = $1 AND t.status IN ('queued', 'processing') AND s.db_server = $2",
        ),
    };
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
        .bind(format!("berth.schedule.cap.{key}.{task_type}.{server}"))
        .execute(&mut *conn)
        .await?;
    let (n,): (i64,) = sqlx::query_as(sql)
        .bind(task_type)
        .bind(server)
        .fetch_one(&mut *conn)
        .await?;
    Ok(n)
}

/// Raises an alert unless one of its kind is open for the schedule and site: its id when
/// raised now.
pub async fn raise_alert(
    conn: &mut PgConnection,
    schedule: &str,
    site: Option<&str>,
    kind: &str,
    message: &str,
) -> Result<Option<AlertRow>> {
    Ok(sqlx::query_as(
        "INSERT INTO schedule_alerts (schedule, site, kind, message) VALUES ($1, $2, $3, $4)
         ON CONFLICT (schedule, coalesce(site, ''), kind) WHERE cleared_at IS NULL DO NOTHING
         RETURNING id, schedule, site, kind, message, raised_at, cleared_at",
    )
    .bind(schedule)
    .bind(site)
    .bind(kind)
    .bind(message)
    .fetch_optional(&mut *conn)
    .await?)
}

/// The open alerts of a schedule, as (site, kind).
pub async fn open_alerts(
    conn: &mut PgConnection,
    schedule: &str,
) -> Result<HashSet<(Option<String>, String)>> {
    let rows: Vec<(Option<String>, String)> = sqlx::query_as(
        "SELECT site, kind FROM schedule_alerts WHERE schedule = $1 AND cleared_at IS NULL",
    )
    .bind(schedule)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().collect())
}

/// Clears the open alert of a kind for a schedule and site, if any.
pub async fn clear_alert(
    conn: &mut PgConnection,
    schedule: &str,
    site: Option<&str>,
    kind: &str,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE schedule_alerts SET cleared_at = now()
         WHERE schedule = $1 AND coalesce(site, '') = coalesce($2, '') AND kind = $3
           AND cleared_at IS NULL",
    )
    .bind(schedule)
    .bind(site)
    .bind(kind)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Forgets runs older than `before` but the newest `keep` of each site and schedule, in
/// batches of `batch`: how many went.
pub async fn prune_runs(
    conn: &mut PgConnection,
    before: DateTime<Utc>,
    keep: i64,
    batch: i64,
) -> Result<u64> {
    let done = sqlx::query(
        "DELETE FROM schedule_runs WHERE id IN (
             SELECT id FROM (
                 SELECT id, slot, row_number() OVER (PARTITION BY schedule, site ORDER BY slot DESC) AS rn
                 FROM schedule_runs) r
             WHERE r.rn > $2 AND r.slot < $1 LIMIT $3)",
    )
    .bind(before)
    .bind(keep)
    .bind(batch)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected())
}

/// Filters of the runs list.
#[derive(Debug, Default, Clone)]
pub struct RunFilter {
    pub schedule: Option<String>,
    pub site: Option<String>,
    pub status: Option<String>,
    pub limit: i64,
    pub offset: i64,
}

impl Store {
    pub async fn schedules(&self) -> Result<Vec<ScheduleRow>> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM schedules ORDER BY name"
        )))
        .fetch_all(&self.pool)
        .await?)
    }

    /// The schedules `seen` allows: a client sees those scoped to one of its sites.
    pub async fn visible_schedules(&self, seen: Visibility) -> Result<Vec<ScheduleRow>> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM schedules WHERE {VISIBLE} ORDER BY name"
        )))
        .bind(seen.client())
        .fetch_all(&self.pool)
        .await?)
    }

    /// The schedule, if `seen` allows it.
    pub async fn visible_schedule(
        &self,
        name: &str,
        seen: Visibility,
    ) -> Result<Option<ScheduleRow>> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM schedules WHERE {VISIBLE} AND name = $2"
        )))
        .bind(seen.client())
        .bind(name)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn schedule(&self, name: &str) -> Result<Option<ScheduleRow>> {
        let mut conn = self.pool.acquire().await?;
        get(&mut conn, name).await
    }

    pub async fn delete_schedule(&self, name: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM schedules WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn schedule_runs(&self, f: &RunFilter, seen: Visibility) -> Result<Vec<RunRow>> {
        Ok(sqlx::query_as(
            "SELECT r.id, r.schedule, r.site, r.slot, r.due_at, r.status, r.task_id,
                    t.status AS task_status, r.recorded_at
             FROM schedule_runs r LEFT JOIN tasks t ON t.id = r.task_id
             WHERE ($1::text IS NULL OR r.schedule = $1) AND ($2::text IS NULL OR r.site = $2)
               AND ($3::text IS NULL OR r.status = $3)
               AND ($6::uuid IS NULL OR r.site IN (SELECT uri FROM sites WHERE client_id = $6))
             ORDER BY r.slot DESC, r.site LIMIT $4 OFFSET $5",
        )
        .bind(&f.schedule)
        .bind(&f.site)
        .bind(&f.status)
        .bind(f.limit)
        .bind(f.offset)
        .bind(seen.client())
        .fetch_all(&self.pool)
        .await?)
    }

    /// Open alerts by schedule.
    pub async fn open_alert_counts(&self) -> Result<HashMap<String, i64>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT schedule, count(*) FROM schedule_alerts WHERE cleared_at IS NULL GROUP BY schedule",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().collect())
    }

    /// Alerts, newest first; only the open ones unless `all`.
    pub async fn schedule_alerts(
        &self,
        schedule: Option<&str>,
        site: Option<&str>,
        all: bool,
        seen: Visibility,
    ) -> Result<Vec<AlertRow>> {
        Ok(sqlx::query_as(
            "SELECT id, schedule, site, kind, message, raised_at, cleared_at FROM schedule_alerts
             WHERE ($1::text IS NULL OR schedule = $1) AND ($2::text IS NULL OR site = $2)
               AND ($3 OR cleared_at IS NULL)
               AND ($4::uuid IS NULL OR site IN (SELECT uri FROM sites WHERE client_id = $4))
             ORDER BY raised_at DESC, id DESC LIMIT 500",
        )
        .bind(schedule)
        .bind(site)
        .bind(all)
        .bind(seen.client())
        .fetch_all(&self.pool)
        .await?)
    }
}
