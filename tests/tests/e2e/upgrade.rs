//! An upgrade with work in flight (decision 0015): a message another version of berth wrote,
//! or a step it planned, is not guessed at — its task ends in `error`, its log saying to
//! retry it, and a retry plans it anew and runs.

use berth_broker::topology::Limits;
use berth_contracts::{StepStatus, TaskStatus};
use berth_tests::{World, WorldOptions};
use lapin::BasicProperties;
use lapin::options::{BasicPublishOptions, QueuePurgeOptions};
use lapin::types::{AMQPValue, FieldTable};
use serde_json::json;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

fn log_of(task: &berth_contracts::Task) -> String {
    task.log
        .as_ref()
        .unwrap()
        .iter()
        .map(|l| l.message.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

/// A world without workers whose noop task's step waits in its work queue (no early
/// failure for want of a worker): the world, the task and the step.
async fn waiting_noop() -> (World, berth_contracts::Task, uuid::Uuid) {
    let w = World::with_bare_server(WorldOptions {
        workers: false,
        limits: Limits {
            no_worker_grace: None,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let t = w
        .create_task("noop", "server_master", json!({}))
        .await
        .unwrap();
    let running = w
        .wait_task(t.id, WAIT, "its step sent", |t| {
            t.steps
                .as_deref()
                .is_some_and(|s| s.first().is_some_and(|s| s.status == StepStatus::Running))
        })
        .await
        .unwrap();
    let step = running.steps.as_ref().unwrap()[0].id;
    (w, t, step)
}

/// Publishes `body` as berth's message version 1 did: persistent, `x-berth-version: 1`.
async fn publish_v1(channel: &lapin::Channel, exchange: &str, key: &str, body: &serde_json::Value) {
    let mut headers = FieldTable::default();
    headers.insert("x-berth-version".into(), AMQPValue::LongLongInt(1));
    channel
        .basic_publish(
            exchange.into(),
            key.into(),
            BasicPublishOptions::default(),
            &serde_json::to_vec(body).unwrap(),
            BasicProperties::default()
                .with_delivery_mode(2)
                .with_headers(headers),
        )
        .await
        .unwrap()
        .await
        .unwrap();
}

/// A step event as berth's message version 1 wrote it (an untyped output), for a step that
/// is running, fails its task with what to do; the retry runs once a worker is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_step_event_fails_its_task_saying_to_retry_it() {
    let (mut w, t, step) = waiting_noop().await;
    let body = json!({
        "task_id": t.id, "target": "server_master", "step_id": step, "phase": "run",
        "attempt": 1, "worker": "http@old", "at": chrono::Utc::now(),
        "started_at": chrono::Utc::now(), "log": [],
        "outcome": {"kind": "succeeded", "output": {"worker": "http@old"}, "warning": false},
    });
    let channel = berth_broker::Broker::new(&w.amqp_url)
        .channel()
        .await
        .unwrap();
    publish_v1(
        &channel,
        berth_contracts::exchanges::EVENTS,
        berth_contracts::exchanges::STEP_KEY,
        &body,
    )
    .await;
    let task = w.wait_finished(t.id, WAIT).await.unwrap();
    assert_eq!(task.status, TaskStatus::Error, "{task:#?}");
    let log = log_of(&task);
    assert!(
        log.contains("berth message version 1 cannot be read") && log.contains("retry the task"),
        "{log}"
    );

    // The retry plans the task anew; with a worker running, it succeeds.
    let servers = w.opts.servers.clone();
    w.start_workers(&servers);
    let r = w
        .post(&format!("/api/v1/tasks/{}/retry", t.id), &json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap_or_default());
    let again: berth_contracts::Task = r.json().await.unwrap();
    let done = w.wait_finished(again.id, WAIT).await.unwrap();
    assert_eq!(done.status, TaskStatus::Success, "{done:#?}");
    w.stop().await;
}

/// A step command of message version 1 still in its work queue at an upgrade: the worker
/// refuses it, the queue dead-letters it, and the state service fails its task saying to
/// retry it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_step_command_fails_its_task_saying_to_retry_it() {
    let (mut w, t, step) = waiting_noop().await;
    // The queue holds the step as version 1 wrote it instead.
    let queue = berth_broker::topology::work_queue("http", "server_master");
    let broker = berth_broker::Broker::new(&w.amqp_url);
    // The step is marked sent when its outbox row is written; the relay publishes it after
    // commit: wait until it is in the queue, or the purge could come first and the real
    // step after it.
    let deadline = std::time::Instant::now() + WAIT;
    while !matches!(broker.queue_depth(&queue).await, Ok(n) if n > 0) {
        assert!(
            std::time::Instant::now() < deadline,
            "the step never reached {queue}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let channel = broker.channel().await.unwrap();
    channel
        .queue_purge(queue.as_str().into(), QueuePurgeOptions::default())
        .await
        .unwrap();
    let body = json!({
        "task_id": t.id, "step_id": step, "task_type": "noop", "target": "server_master",
        "service": "http", "server": "server_master", "action": "noop", "phase": "run",
        "args": {"service": "http"},
    });
    publish_v1(
        &channel,
        berth_contracts::exchanges::WORK,
        "http.server_master",
        &body,
    )
    .await;
    let servers = w.opts.servers.clone();
    w.start_workers(&servers);
    let task = w.wait_finished(t.id, WAIT).await.unwrap();
    assert_eq!(task.status, TaskStatus::Error, "{task:#?}");
    let log = log_of(&task);
    assert!(
        log.contains("berth message version 1 cannot be read") && log.contains("retry the task"),
        "{log}"
    );
    w.stop().await;
}

/// A step an older berth planned (stored with protocol 1) is not sent: when the task comes
/// to it, the task ends in error saying to retry it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_planned_by_an_older_berth_is_not_sent() {
    let w = World::with_bare_server(WorldOptions::default()).await;
    let t = w
        .create_task(
            "noop",
            "server_master",
            json!({"steps": 2, "sleep_ms": 1500}),
        )
        .await
        .unwrap();
    w.wait_task(t.id, WAIT, "its first step running", |t| {
        t.steps
            .as_deref()
            .is_some_and(|s| s.first().is_some_and(|s| s.status == StepStatus::Running))
    })
    .await
    .unwrap();
    // As an upgrade finds a task an older berth planned.
    let changed = sqlx::query("UPDATE steps SET protocol = 1 WHERE task_id = $1 AND position = 2")
        .bind(t.id)
        .execute(&w.store.pool)
        .await
        .unwrap();
    assert_eq!(changed.rows_affected(), 1);
    let task = w.wait_finished(t.id, WAIT).await.unwrap();
    assert_eq!(task.status, TaskStatus::Error, "{task:#?}");
    let steps = task.steps.as_ref().unwrap();
    assert_eq!(steps[1].status, StepStatus::Pending, "{steps:#?}");
    let log = log_of(&task);
    assert!(
        log.contains("planned by an older berth (message version 1")
            && log.contains("retry the task"),
        "{log}"
    );
    w.stop().await;
}
