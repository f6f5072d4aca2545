//! Crashes at the one point the outbox sweep exists for, made deterministic: a `berth`
//! process started with `BERTH_FAULT=abort-before-publish:N` (debug builds) aborts the Nth
//! time it hands rows it has just committed to its outbox, before publishing any. The API
//! dies between accepting a task and publishing it; the state service dies between
//! recording a step's result and publishing the next step. Each time the sweep of a
//! surviving process publishes the row, and the task completes with every step run once.

use berth_contracts::{StepStatus, Task, TaskStatus};
use berth_tests::{World, WorldOptions};
use serde_json::{Value, json};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);

/// A `berth` process this test started: killed when the test ends, also by a failed
/// assertion, so that none outlives its world.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

fn spawn(w: &World, service: &str, env: &[(&str, &str)]) -> (Reaped, std::path::PathBuf) {
    let (c, log) = w.spawn_berth(service, env);
    (Reaped(c), log)
}

/// Waits for a process to end on its own; its exit status.
async fn exited(Reaped(child): &mut Reaped, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "process {} still running after {within:?}",
            child.id()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The address a `berth serve api` process listens on, from its log.
async fn api_address(log: &Path) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        for line in text.lines() {
            if let Ok(v) = serde_json::from_str::<Value>(line)
                && v["fields"]["message"] == "API listening"
                && let Some(a) = v["fields"]["addr"].as_str()
            {
                return format!("http://{a}");
            }
        }
        assert!(
            Instant::now() < deadline,
            "the API process never said where it listens:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether the task's outbox rows were all published (`sent_at` set), and how many it has.
async fn outbox_of(w: &World, task: uuid::Uuid) -> (i64, i64) {
    sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE sent_at IS NULL) FROM outbox WHERE task_id = $1",
    )
    .bind(task)
    .fetch_one(&w.store.pool)
    .await
    .unwrap()
}

/// The outbox rows that send a step to its worker: (all, unsent).
async fn step_rows(w: &World, step: uuid::Uuid) -> (i64, i64) {
    sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE sent_at IS NULL) FROM outbox
         WHERE exchange = 'berth.work' AND payload->>'step_id' = $1",
    )
    .bind(step.to_string())
    .fetch_one(&w.store.pool)
    .await
    .unwrap()
}

/// The one outbox row `filter` (with `$1`) names was published by a sweep: the sweep takes
/// only rows older than `SWEEP_MIN_AGE_MS`, while the publish right after a commit marks its
/// rows within milliseconds.
async fn swept(w: &World, filter: &str, arg: &str) {
    let (n, age_ms): (i64, f64) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT count(*), coalesce(max(extract(epoch FROM sent_at - created_at) * 1000), 0)::float8
         FROM outbox WHERE {filter}"
    )))
    .bind(arg)
    .fetch_one(&w.store.pool)
    .await
    .unwrap();
    assert_eq!(n, 1, "one row: {filter}");
    assert!(
        age_ms >= berth_outbox::SWEEP_MIN_AGE_MS as f64,
        "the row was published {age_ms} ms after its commit: not by the sweep"
    );
}

fn assert_aborted(status: std::process::ExitStatus, log: &Path) {
    let text = std::fs::read_to_string(log).unwrap();
    assert_eq!(
        status.signal(),
        Some(6),
        "the process must have died at the fault point (SIGABRT), not {status}:\n{text}"
    );
    assert!(
        text.contains("BERTH_FAULT: aborting after a commit"),
        "the fault point was not the one reached:\n{text}"
    );
}

/// Every step ran once, and its result was recorded once.
fn ran_once(t: &Task, steps: usize) {
    assert_eq!(t.status, TaskStatus::Success, "{t:#?}");
    let s = t.steps.as_ref().unwrap();
    assert_eq!(s.len(), steps, "{t:#?}");
    for step in s {
        assert_eq!(step.status, StepStatus::Success, "{t:#?}");
        assert_eq!(step.attempts, 1, "a step ran again: {t:#?}");
    }
    let log = t.log.as_ref().unwrap();
    let runs = log.iter().filter(|l| l.message == "noop done").count();
    assert_eq!(runs, steps, "each step runs once: {log:#?}");
    let recorded = log
        .iter()
        .filter(|l| l.message.contains(": success on attempt"))
        .count();
    assert_eq!(recorded, steps, "each result is recorded once: {log:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_api_that_dies_between_its_commit_and_its_publish_has_its_task_swept_and_run_once() {
    let w = World::start().await.unwrap();
    let s = w
        .create_bare_server("server_master", "localhost")
        .await
        .unwrap();
    // The server's verify ends first: a task ending starts the next one queued for its
    // target from the database, which would run the task without the sweep.
    let v = w
        .wait_finished(s["verify_task"].as_str().unwrap().parse().unwrap(), WAIT)
        .await
        .unwrap();
    assert_eq!(v.status, TaskStatus::Success, "{v:#?}");
    // A second API, in its own process, that dies at its first hand-over to the outbox.
    let (mut api, log) = spawn(
        &w,
        "api",
        &[
            ("BERTH_LISTEN", "127.0.0.1:0"),
            ("BERTH_FAULT", "abort-before-publish:1"),
        ],
    );
    let url = api_address(&log).await;
    let body = json!({"type": "noop", "target": "server_master", "args": {}});
    let key = "storefront-order-1";
    let sent = w
        .http
        .post(format!("{url}/api/v1/tasks"))
        .bearer_auth(&w.token)
        .header("Idempotency-Key", key)
        .json(&body)
        .send()
        .await;
    assert!(
        sent.is_err(),
        "the API must die before answering: {:?}",
        sent.map(|r| r.status())
    );
    let status = exited(&mut api, WAIT).await;
    assert_aborted(status, &log);

    // The task was committed with its outbox row.
    let tasks: Vec<(uuid::Uuid,)> = sqlx::query_as("SELECT id FROM tasks WHERE type = 'noop'")
        .fetch_all(&w.store.pool)
        .await
        .unwrap();
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    let id = tasks[0].0;
    assert_eq!(outbox_of(&w, id).await.0, 1, "one outbox row");

    // The sweep of the surviving processes publishes it; the task runs once.
    let t = w.wait_finished(id, WAIT).await.unwrap();
    ran_once(&t, 1);
    assert_eq!(
        outbox_of(&w, id).await.1,
        0,
        "every row of the task published"
    );
    swept(
        &w,
        "exchange = 'berth.tasks' AND task_id::text = $1",
        &id.to_string(),
    )
    .await;

    // The client resends its request (same key) to an API that runs, as a storefront does
    // after a dropped connection, honouring Retry-After while the claim's lease runs: it
    // is told its task, and no second one is made.
    let deadline = Instant::now() + Duration::from_secs(90);
    let answer = loop {
        let r = w
            .post("/api/v1/tasks", &body)
            .header("Idempotency-Key", key)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let retry_after = r.headers().get("retry-after").cloned();
        let location = r
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_string());
        let text = r.text().await.unwrap();
        assert_eq!(status, 409, "a resend must not make a task: {text}");
        if let Some(l) = location {
            break (l, text);
        }
        assert!(
            retry_after.is_some(),
            "409 without Retry-After nor Location: {text}"
        );
        assert!(
            Instant::now() < deadline,
            "the resend is never told its task: {text}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    assert_eq!(answer.0, format!("/api/v1/tasks/{id}"), "{}", answer.1);
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM tasks WHERE type = 'noop'")
        .fetch_one(&w.store.pool)
        .await
        .unwrap();
    assert_eq!(n, 1, "one task for the one request");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_state_service_that_dies_mid_task_has_its_next_step_swept_and_every_step_run_once() {
    let w = World::with_bare_server(WorldOptions {
        state: false,
        ..Default::default()
    })
    .await;
    // The server's verify, with a state service that does not fail.
    let (mut first, _) = spawn(&w, "state", &[]);
    let verify: uuid::Uuid = sqlx::query_scalar("SELECT id FROM tasks WHERE type = 'verify'")
        .fetch_one(&w.store.pool)
        .await
        .unwrap();
    let v = w.wait_finished(verify, WAIT).await.unwrap();
    assert_eq!(v.status, TaskStatus::Success, "{v:#?}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first.0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(exited(&mut first, WAIT).await.success());
    // Hand-over 1: the noop task's first step. Hand-over 2: the first step's result
    // recorded, with the second step: the crash.
    let (mut state, log) = spawn(&w, "state", &[("BERTH_FAULT", "abort-before-publish:2")]);
    let t = w
        .create_task(
            "noop",
            "server_master",
            json!({"steps": 3, "sleep_ms": 200}),
        )
        .await
        .unwrap();
    let status = exited(&mut state, WAIT).await;
    assert_aborted(status, &log);

    // The first step's result is recorded, the second step committed and not published.
    let mid = w.task(t.id).await.unwrap();
    assert_eq!(mid.status, TaskStatus::Processing, "{mid:#?}");
    let steps = mid.steps.as_ref().unwrap();
    assert_eq!(steps[0].status, StepStatus::Success, "{mid:#?}");
    assert!(
        steps[1..].iter().all(|s| s.attempts == 0),
        "no later step has run: {mid:#?}"
    );
    let second = steps[1].id;
    assert_eq!(
        step_rows(&w, second).await.0,
        1,
        "the second step's one row is in the outbox"
    );
    assert_eq!(step_rows(&w, steps[2].id).await, (0, 0), "{mid:#?}");

    // With no state service at all, the API's sweep publishes the second step (the worker
    // runs it; its result waits in state.events).
    let deadline = Instant::now() + WAIT;
    while step_rows(&w, second).await != (1, 0) {
        assert!(
            Instant::now() < deadline,
            "the sweep never published the second step"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    swept(
        &w,
        "exchange = 'berth.work' AND payload->>'step_id' = $1",
        &second.to_string(),
    )
    .await;
    // A new state service takes the task to its end: the first step's redelivered result
    // changes nothing, the second's is recorded, the third runs.
    let (again, _) = spawn(&w, "state", &[]);
    let done = w.wait_finished(t.id, WAIT).await.unwrap();
    ran_once(&done, 3);
    drop(again);
    w.stop().await;
}
