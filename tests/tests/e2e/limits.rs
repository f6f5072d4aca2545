//! Limits: a step that no worker takes does not wait for ever. The work queue's message TTL
//! (BERTH_STEP_QUEUE_TTL_S, 6 h by default; 2 s here) dead-letters it, the task fails with a
//! reason that names the queue, and replaying the dead letter once a worker runs finishes
//! the task. (Steps that run too long are ended by the worker's step timeout: see
//! `a_step_past_its_timeout_is_ended_and_the_worker_goes_on` in libs/broker/tests/worker.rs.)

use berth_broker::topology::Limits;
use berth_contracts::TaskStatus;
use berth_tests::{World, WorldOptions};
use serde_json::{Value, json};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_no_worker_takes_ends_its_task_and_replays_once_a_worker_runs() {
    let mut w = World::with_bare_server(WorldOptions {
        workers: false,
        limits: Limits {
            work_queue_ttl: Duration::from_secs(2),
            // The queue's TTL is what this test is about: no early failure for want of a
            // worker.
            no_worker_grace: None,
        },
        ..Default::default()
    })
    .await;
    let t = w
        .create_task("noop", "server_master", json!({}))
        .await
        .unwrap();
    let task = w.wait_finished(t.id, WAIT).await.unwrap();
    assert_eq!(task.status, TaskStatus::Error, "{task:#?}");
    let step = &task.steps.as_ref().unwrap()[0];
    let error = step.error.as_deref().unwrap_or_default();
    assert!(
        error.contains("no worker took the step from `work.http.server_master` in time"),
        "{error}"
    );

    // Once a worker runs, the dead letter replays: the step runs and the task succeeds.
    let servers = w.opts.servers.clone();
    w.start_workers(&servers);
    let dead: Value = w.get_json("/api/v1/dead-letters").await;
    let d = dead["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["task_id"] == t.id.to_string())
        .unwrap_or_else(|| panic!("no dead letter for the task: {dead}"));
    let r = w
        .post(
            &format!("/api/v1/dead-letters/{}/replay", d["id"].as_str().unwrap()),
            &json!({}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202, "{}", r.text().await.unwrap());
    let again = w
        .wait_task(t.id, WAIT, "success after replay", |t| {
            t.status == TaskStatus::Success
        })
        .await
        .unwrap();
    // The expired delivery never reached a worker: the replay is the step's first attempt.
    assert_eq!(again.steps.as_ref().unwrap()[0].attempts, 1, "{again:#?}");
    w.stop().await;
}

/// A step for a server whose worker is not running: published to a work queue without
/// consumer, it expires after the grace (BERTH_NO_WORKER_GRACE_S; 1 s here) instead of the
/// queue's 6 h TTL, and the task ends in error naming the worker to start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_for_a_server_without_a_worker_ends_quickly_naming_the_worker() {
    let w = World::start_with(WorldOptions {
        limits: Limits {
            no_worker_grace: Some(Duration::from_secs(1)),
            ..Default::default()
        },
        ..Default::default()
    })
    .await
    .unwrap();
    // Workers run for server_master only.
    w.create_bare_server("server_master", "localhost")
        .await
        .unwrap();
    w.create_bare_server("server_web1examplecom", "web1.example.com")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let t = w
        .create_task("noop", "server_web1examplecom", json!({"service": "db"}))
        .await
        .unwrap();
    let task = w.wait_finished(t.id, WAIT).await.unwrap();
    assert_eq!(task.status, TaskStatus::Error, "{task:#?}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the task took {:?} to fail",
        started.elapsed()
    );
    let error = task.steps.as_ref().unwrap()[0]
        .error
        .clone()
        .unwrap_or_default();
    assert!(
        error.contains("no db worker is running for server_web1examplecom")
            && error.contains("queue work.db.server_web1examplecom has no consumer")
            && error.contains(
                "start `berth serve db` with BERTH_SERVERS including server_web1examplecom"
            ),
        "{error}"
    );
    // The same step on a server whose worker runs is not touched by the grace.
    let ok = w
        .create_task("noop", "server_master", json!({"service": "db"}))
        .await
        .unwrap();
    let ok = w.wait_finished(ok.id, WAIT).await.unwrap();
    assert_eq!(ok.status, TaskStatus::Success, "{ok:#?}");
    w.stop().await;
}

/// Back-pressure: past BERTH_MAX_QUEUED_TASKS waiting tasks (3 here, with the state service
/// stopped so that nothing starts), a new task is refused with a 503 problem and Retry-After,
/// and nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_queued_tasks_limit_new_tasks_are_refused_with_retry_after() {
    let w = World::start_with(WorldOptions {
        state: false,
        max_queued_tasks: 3,
        ..Default::default()
    })
    .await
    .unwrap();
    // The server's verify is the first queued task, then two no-ops.
    w.create_bare_server("server_master", "localhost")
        .await
        .unwrap();
    for _ in 0..2 {
        w.create_task("noop", "server_master", json!({}))
            .await
            .unwrap();
    }
    let before = berth_tests::row_counts(&w.store).await.unwrap();
    let r = w
        .post(
            "/api/v1/tasks",
            &json!({"type": "noop", "target": "server_master", "args": {}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 503);
    assert_eq!(r.headers()["retry-after"], "10");
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let p: Value = r.json().await.unwrap();
    let detail = p["detail"].as_str().unwrap();
    assert!(
        detail.contains("3 tasks are waiting to start")
            && detail.contains("BERTH_MAX_QUEUED_TASKS"),
        "{p}"
    );
    assert_eq!(berth_tests::row_counts(&w.store).await.unwrap(), before);
    w.stop().await;
}

/// The API dying between an Idempotency-Key's claim and its answer (found by the chaos run:
/// a resend after a SIGKILLed API was refused with 409 "still being processed", for ever).
/// After the claim's lease, a resend takes over a claim whose request created nothing, and
/// learns the task of one whose request created it: never a second task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resend_after_the_api_died_mid_request_is_answered() {
    let w = World::with_bare_server(WorldOptions::default()).await;
    let body = json!({"type": "noop", "target": "server_master", "args": {}});
    let send = |key: &'static str| {
        w.post("/api/v1/tasks", &body)
            .header("Idempotency-Key", key)
            .send()
    };
    let token_id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM api_tokens LIMIT 1")
        .fetch_one(&w.store.pool)
        .await
        .unwrap();
    let hash: String = {
        // The claim a first request leaves: made by sending once, then unsaved by hand.
        let r = send("died-before-the-task").await.unwrap();
        assert_eq!(r.status().as_u16(), 202);
        sqlx::query_scalar(
            "SELECT request_hash FROM idempotency_keys WHERE key = 'died-before-the-task'",
        )
        .fetch_one(&w.store.pool)
        .await
        .unwrap()
    };
    let tasks_before: i64 = sqlx::query_scalar("SELECT count(*) FROM tasks")
        .fetch_one(&w.store.pool)
        .await
        .unwrap();

    // A claim still within its lease: its request may yet answer; resend in a second.
    sqlx::query(
        "INSERT INTO idempotency_keys (token_id, key, request_hash) VALUES ($1, 'in-flight', $2)",
    )
    .bind(token_id)
    .bind(&hash)
    .execute(&w.store.pool)
    .await
    .unwrap();
    let r = send("in-flight").await.unwrap();
    assert_eq!(r.status().as_u16(), 409);
    assert_eq!(r.headers()["retry-after"], "1");

    // A claim whose request died before creating anything, older than the lease.
    sqlx::query(
        "INSERT INTO idempotency_keys (token_id, key, request_hash, created_at)
         VALUES ($1, 'died-early', $2, now() - interval '1 minute')",
    )
    .bind(token_id)
    .bind(&hash)
    .execute(&w.store.pool)
    .await
    .unwrap();
    let r = send("died-early").await.unwrap();
    assert_eq!(r.status().as_u16(), 202, "{}", r.text().await.unwrap());

    // A claim whose request created its task, then died before saving the answer.
    let task: uuid::Uuid = sqlx::query_scalar("SELECT id FROM tasks ORDER BY created_at LIMIT 1")
        .fetch_one(&w.store.pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO idempotency_keys (token_id, key, request_hash, task_id, created_at)
         VALUES ($1, 'died-late', $2, $3, now() - interval '1 minute')",
    )
    .bind(token_id)
    .bind(&hash)
    .bind(task)
    .execute(&w.store.pool)
    .await
    .unwrap();
    let r = send("died-late").await.unwrap();
    assert_eq!(r.status().as_u16(), 409);
    assert_eq!(
        r.headers()["location"].to_str().unwrap(),
        format!("/api/v1/tasks/{task}")
    );
    let p: Value = r.json().await.unwrap();
    assert!(
        p["detail"].as_str().unwrap().contains("answer was lost"),
        "{p}"
    );
    // One task more: the takeover's; none for the lost answer.
    let tasks_after: i64 = sqlx::query_scalar("SELECT count(*) FROM tasks")
        .fetch_one(&w.store.pool)
        .await
        .unwrap();
    assert_eq!(tasks_after, tasks_before + 1);
    // And a request's own task is noted with its key, in its transaction.
    let noted: Option<uuid::Uuid> = sqlx::query_scalar(
        "SELECT task_id FROM idempotency_keys WHERE key = 'died-before-the-task'",
    )
    .fetch_one(&w.store.pool)
    .await
    .unwrap();
    assert!(noted.is_some());
    w.stop().await;
}
