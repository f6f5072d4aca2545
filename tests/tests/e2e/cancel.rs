//! Cancelling a task while it runs (decision 0013): its running step is stopped by its
//! worker, the steps done are taken back newest first, and it ends `cancelled`; a step no
//! worker consumes is given up at once, so that its server can then be deleted.

use berth_contracts::{StepStatus, TaskStatus};
use berth_tests::{World, WorldOptions};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);

async fn cancel(w: &World, id: uuid::Uuid) -> (u16, Value) {
    let r = w
        .post(&format!("/api/v1/tasks/{id}/cancel"), &json!({}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

/// Step 1 of 3 sleeping 30 s: the cancel stops it midway and takes it back (a step stopped
/// midway may have done part of its work), never starts steps 2 and 3, and the task ends
/// `cancelled` long before the sleep would have.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_running_task_is_cancelled_its_step_stopped_and_its_done_steps_taken_back() {
    let w = World::with_bare_server(WorldOptions::default()).await;
    let t = w
        .create_task(
            "noop",
            "server_master",
            json!({"steps": 3, "sleep_ms": 30_000}),
        )
        .await
        .unwrap();
    let running = w
        .wait_task(t.id, WAIT, "step 1 sleeping", |t| {
            t.log
                .as_ref()
                .is_some_and(|l| l.iter().any(|e| e.message.contains("sleeping")))
        })
        .await
        .unwrap();
    assert_eq!(running.status, TaskStatus::Processing);
    let asked = Instant::now();
    let (status, body) = cancel(&w, t.id).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "processing", "{body}");
    assert!(body["cancel_requested_at"].is_string(), "{body}");
    let task = w.wait_finished(t.id, WAIT).await.unwrap();
    assert!(
        asked.elapsed() < Duration::from_secs(20),
        "the cancel took {:?}: the step was not stopped",
        asked.elapsed()
    );
    assert_eq!(task.status, TaskStatus::Cancelled, "{task:#?}");
    let steps = task.steps.as_ref().unwrap();
    assert_eq!(steps[0].status, StepStatus::Compensated, "{steps:#?}");
    assert!(
        steps[0]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("stopped midway")),
        "{steps:#?}"
    );
    assert_eq!(steps[1].status, StepStatus::Pending, "{steps:#?}");
    assert_eq!(steps[2].status, StepStatus::Pending, "{steps:#?}");
    let log = task.log.as_ref().unwrap();
    assert!(
        log.iter()
            .any(|e| e.message.contains("cancel requested by")),
        "{log:#?}"
    );
    assert!(
        log.iter()
            .any(|e| e.message == "step 1 (http noop on server_master): taken back"),
        "{log:#?}"
    );
    // A finished task cannot be cancelled.
    let (status, body) = cancel(&w, t.id).await;
    assert_eq!(status, 409, "{body}");
    w.stop().await;
}

/// Step 1 done, step 2 running: the cancel stops step 2 and takes back step 2, then
/// step 1 (newest first); step 3 never runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancel_takes_back_the_done_steps_newest_first() {
    let w = World::with_bare_server(WorldOptions::default()).await;
    let t = w
        .create_task(
            "noop",
            "server_master",
            json!({"steps": 3, "sleep_ms": 4_000}),
        )
        .await
        .unwrap();
    w.wait_task(t.id, WAIT, "step 2 running", |t| {
        let steps = t.steps.as_deref().unwrap_or_default();
        steps.len() == 3 && steps[0].status == StepStatus::Success
    })
    .await
    .unwrap();
    let (status, body) = cancel(&w, t.id).await;
    assert_eq!(status, 202, "{body}");
    let task = w.wait_finished(t.id, WAIT).await.unwrap();
    assert_eq!(task.status, TaskStatus::Cancelled, "{task:#?}");
    let steps = task.steps.as_ref().unwrap();
    assert_eq!(
        steps.iter().map(|s| s.status).collect::<Vec<_>>(),
        [
            StepStatus::Compensated,
            StepStatus::Compensated,
            StepStatus::Pending
        ],
        "{steps:#?}"
    );
    assert!(
        steps[1]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("stopped midway")),
        "step 2 ran to its end instead of being stopped: {steps:#?}"
    );
    let log = task.log.as_ref().unwrap();
    let at = |m: &str| {
        log.iter()
            .position(|e| e.message == m)
            .unwrap_or_else(|| panic!("no `{m}` in {log:#?}"))
    };
    assert!(
        at("step 2 (http noop on server_master): taken back")
            < at("step 1 (http noop on server_master): taken back")
    );
    w.stop().await;
}

/// A server whose worker is not running, with a task waiting on its queue (the early failure
/// turned off, as when a worker died after the step was sent): the server cannot be
/// deleted (409); the task is cancelled at once (nobody consumes its queue); then the server
/// is deleted, and its queues with the step left in them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_whose_worker_is_missing_is_deleted_once_its_tasks_are_cancelled() {
    let w = World::start_with(WorldOptions {
        limits: berth_broker::topology::Limits {
            no_worker_grace: None,
            ..Default::default()
        },
        ..Default::default()
    })
    .await
    .unwrap();
    let server = "server_web1examplecom";
    w.create_bare_server(server, "web1.example.com")
        .await
        .unwrap();
    let t = w.create_task("noop", server, json!({})).await.unwrap();
    w.wait_task(t.id, WAIT, "its step sent", |t| {
        t.steps
            .as_deref()
            .is_some_and(|s| s.first().is_some_and(|s| s.status == StepStatus::Running))
    })
    .await
    .unwrap();
    let r = w
        .http
        .delete(w.url(&format!("/api/v1/servers/{server}")))
        .bearer_auth(&w.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 409, "{}", r.text().await.unwrap());

    let (status, body) = cancel(&w, t.id).await;
    assert_eq!(status, 202, "{body}");
    let task = w.wait_finished(t.id, WAIT).await.unwrap();
    assert_eq!(task.status, TaskStatus::Cancelled, "{task:#?}");
    let error = task.steps.as_ref().unwrap()[0]
        .error
        .clone()
        .unwrap_or_default();
    assert!(
        error.contains("no http worker consumes `work.http.server_web1examplecom`"),
        "{error}"
    );

    let r = w
        .http
        .delete(w.url(&format!("/api/v1/servers/{server}")))
        .bearer_auth(&w.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204, "{}", r.text().await.unwrap());
    let broker = berth_broker::Broker::new(&w.amqp_url);
    assert!(
        broker
            .queue_stats("work.http.server_web1examplecom")
            .await
            .is_err(),
        "the deleted server's work queue is still there"
    );
    w.stop().await;
}
