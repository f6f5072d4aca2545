//! Aggregates for `/metrics`, computed from the state tables so that every process's work
//! is counted, whichever process answers the scrape.

use crate::{Result, Store};

pub struct Snapshot {
    /// (type, status, count)
    pub tasks: Vec<(String, String, i64)>,
    /// (service, action, bucket upper bound in seconds, cumulative count) + (service, action, sum, count)
    pub step_buckets: Vec<(String, String, f64, i64)>,
    pub step_sums: Vec<(String, String, f64, i64)>,
    /// (service, action, retries)
    pub retries: Vec<(String, String, i64)>,
    pub dead_letters_open: i64,
    pub outbox_unsent: i64,
    /// (kind, raised ever, open now)
    pub schedule_alerts: Vec<(String, i64, i64)>,
    /// (status, count) of the schedules' runs kept
    pub schedule_runs: Vec<(String, i64)>,
}

pub const STEP_BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0];

impl Store {
    pub async fn metrics_snapshot(&self) -> Result<Snapshot> {
        let tasks = sqlx::query_as(
            "SELECT type, status, count(*) FROM tasks GROUP BY type, status ORDER BY type, status",
        )
        .fetch_all(&self.pool)
        .await?;
        let step_buckets = sqlx::query_as(
            "SELECT s.service, s.action, b.le, count(*) FILTER (WHERE extract(epoch FROM s.finished_at - s.started_at) <= b.le)
             FROM steps s CROSS JOIN unnest($1::float8[]) AS b(le)
             WHERE s.finished_at IS NOT NULL AND s.started_at IS NOT NULL
             GROUP BY s.service, s.action, b.le ORDER BY s.service, s.action, b.le",
        )
        .bind(&STEP_BUCKETS[..])
        .fetch_all(&self.pool)
        .await?;
        let step_sums = sqlx::query_as(
            "SELECT service, action, COALESCE(sum(extract(epoch FROM finished_at - started_at)), 0)::float8, count(*)
             FROM steps WHERE finished_at IS NOT NULL AND started_at IS NOT NULL
             GROUP BY service, action ORDER BY service, action",
        )
        .fetch_all(&self.pool)
        .await?;
        let retries = sqlx::query_as(
            "SELECT service, action, COALESCE(sum(jsonb_array_length(history)), 0)::int8
             FROM steps GROUP BY service, action ORDER BY service, action",
        )
        .fetch_all(&self.pool)
        .await?;
        let (dead_letters_open,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM dead_letters WHERE discarded_at IS NULL AND replayed_at IS NULL",
        )
        .fetch_one(&self.pool)
        .await?;
        let (outbox_unsent,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
                .fetch_one(&self.pool)
                .await?;
        let schedule_alerts = sqlx::query_as(
            "SELECT kind, count(*), count(*) FILTER (WHERE cleared_at IS NULL)
             FROM schedule_alerts GROUP BY kind ORDER BY kind",
        )
        .fetch_all(&self.pool)
        .await?;
        let schedule_runs = sqlx::query_as(
            "SELECT status, count(*) FROM schedule_runs GROUP BY status ORDER BY status",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(Snapshot {
            tasks,
            step_buckets,
            step_sums,
            retries,
            dead_letters_open,
            outbox_unsent,
            schedule_alerts,
            schedule_runs,
        })
    }
}
