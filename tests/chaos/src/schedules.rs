//! Schedules firing while processes are killed: two `berth serve scheduler` processes fire a
//! cron schedule for every site through the run; at the end each slot of each watched site
//! (two sites the workload never touches) must have exactly one run (fired, skipped or
//! missed: none lost), every scheduled task exactly one run (none doubled), and every
//! scheduled task must have ended.

use crate::workload::{Client, Sent};
use crate::{Env, say};
use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use serde_json::json;
use std::time::{Duration, Instant};

pub const SCHEDULE: &str = "chaos-cron";
const EXPRESSION: &str = "*/15 * * * * *";
const WINDOW_SECS: i64 = 10;

/// What the schedule did, and what went wrong with it.
#[derive(Debug, Default)]
pub struct Account {
    pub watched: Vec<String>,
    pub created: Option<DateTime<Utc>>,
    pub fired: i64,
    pub skipped: i64,
    pub missed: i64,
    pub tasks: i64,
    pub lost: Vec<String>,
    pub doubled: Vec<String>,
    pub unfinished: Vec<String>,
}

/// Installs the watched sites and creates the schedule (before the disruptions start).
pub async fn setup(c: &Client, e: &Env) -> Result<Account> {
    let mut a = Account::default();
    for label in ["watch-a", "watch-b"] {
        let uri = format!("{label}.chaos.test");
        let Sent::Accepted(v) = c
            .send(
                "/api/v1/sites",
                &json!({"uri": uri, "platform": e.platforms[0].0}),
            )
            .await?
        else {
            bail!("site {uri} refused");
        };
        let task = v["task"].as_str().context("task")?;
        let s = c.wait_task(task, Duration::from_secs(180)).await?;
        if s != "success" {
            let (_, log) = c.get(&format!("/api/v1/tasks/{task}/log")).await?;
            bail!("install of {uri} ended {s}: {log}");
        }
        a.watched.push(uri);
    }
    let Sent::Accepted(s) = c
        .send(
            "/api/v1/schedules",
            &json!({"name": SCHEDULE, "scope": "all", "expression": EXPRESSION,
                    "job": {"kind": "cron"}, "window_secs": WINDOW_SECS, "spread_secs": 5}),
        )
        .await?
    else {
        bail!("schedule refused");
    };
    a.created = Some(s["created_at"].as_str().context("created_at")?.parse()?);
    say(&format!(
        "schedule {SCHEDULE}: cron of every site {EXPRESSION}, watched {}",
        a.watched.join(", ")
    ));
    Ok(a)
}

/// Disables the schedule, waits for its tasks to end, and accounts for every run.
pub async fn check(e: &Env, mut a: Account) -> Result<Account> {
    let http = reqwest::Client::new();
    let stopped = loop {
        let r = http
            .patch(format!("{}/api/v1/schedules/{SCHEDULE}", e.api))
            .bearer_auth(&e.token)
            .json(&json!({"enabled": false}))
            .send()
            .await;
        if matches!(&r, Ok(r) if r.status().is_success()) {
            break Utc::now();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let pg = sqlx::PgPool::connect(&e.pg_url).await?;
    let requested_by = format!("schedule:{SCHEDULE}");
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let (open,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM tasks WHERE requested_by = $1 AND status IN ('queued', 'processing')",
        )
        .bind(&requested_by)
        .fetch_one(&pg)
        .await?;
        if open == 0 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let counts: Vec<(String, i64)> = sqlx::query_as(
        "SELECT status, count(*) FROM schedule_runs WHERE schedule = $1 GROUP BY status",
    )
    .bind(SCHEDULE)
    .fetch_all(&pg)
    .await?;
    for (status, n) in counts {
        match status.as_str() {
            "fired" => a.fired = n,
            "skipped" => a.skipped = n,
            "missed" => a.missed = n,
            _ => {}
        }
    }
    // Doubled: a scheduled task that no run or more than one run names (a task row is only
    // ever written with its run, in one transaction). Pruned cron tasks left their run
    // with no task; they are counted as fired and not checked further.
    let orphans: Vec<(uuid::Uuid,)> = sqlx::query_as(
        "SELECT t.id FROM tasks t WHERE t.requested_by = $1
           AND (SELECT count(*) FROM schedule_runs r WHERE r.task_id = t.id) <> 1",
    )
    .bind(&requested_by)
    .fetch_all(&pg)
    .await?;
    a.doubled.extend(
        orphans
            .iter()
            .map(|(id,)| format!("scheduled task {id} has not exactly one run")),
    );
    let (tasks,): (i64,) = sqlx::query_as("SELECT count(*) FROM tasks WHERE requested_by = $1")
        .bind(&requested_by)
        .fetch_one(&pg)
        .await?;
    a.tasks = tasks;
    let unfinished: Vec<(uuid::Uuid, String)> = sqlx::query_as(
        "SELECT id, status FROM tasks WHERE requested_by = $1 AND status IN ('queued', 'processing')",
    )
    .bind(&requested_by)
    .fetch_all(&pg)
    .await?;
    a.unfinished.extend(
        unfinished
            .iter()
            .map(|(id, s)| format!("scheduled task {id} still {s}")),
    );
    // Lost: a slot of a watched site, closed before the schedule stopped, with no run.
    let expr = berth_schedule::Expression::parse(EXPRESSION, "UTC")?;
    let created = a.created.context("schedule created")?;
    let (slots, _) = expr.slots_between(
        created,
        stopped - chrono::Duration::seconds(WINDOW_SECS + 2),
        100_000,
    );
    for site in &a.watched {
        let have: Vec<(DateTime<Utc>,)> =
            sqlx::query_as("SELECT slot FROM schedule_runs WHERE schedule = $1 AND site = $2")
                .bind(SCHEDULE)
                .bind(site)
                .fetch_all(&pg)
                .await?;
        let have: std::collections::BTreeSet<DateTime<Utc>> =
            have.into_iter().map(|(s,)| s).collect();
        for slot in &slots {
            if !have.contains(slot) {
                a.lost.push(format!("{site}: slot {slot} has no run"));
            }
        }
    }
    say(&format!(
        "schedule {SCHEDULE}: {} slots x {} watched sites checked; {} fired, {} skipped, {} missed, {} tasks",
        slots.len(),
        a.watched.len(),
        a.fired,
        a.skipped,
        a.missed,
        a.tasks
    ));
    Ok(a)
}
