//! The task pipeline end to end, on the real RabbitMQ, PostgreSQL, MariaDB, nginx and bind:
//! API → outbox → RabbitMQ → workers → state.

use berth_contracts::{StepStatus, TaskStatus};
use berth_tests::{World, WorldOptions, row_counts};
use serde_json::{Value, json};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

/// Waits until every outbox row has been published (`sent_at` set): after it, the rows a
/// test counts stay as they are until the test itself asks for something.
async fn wait_outbox_sent(store: &berth_store::Store, within: Duration) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + within;
    loop {
        let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
            .fetch_one(&store.pool)
            .await?;
        if n == 0 {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            anyhow::bail!("{n} outbox row(s) still unsent after {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_server_is_verified_by_the_db_http_and_dns_workers() {
    let w = World::start().await.unwrap();
    let created = w.create_server("server_master", "localhost").await.unwrap();
    assert_eq!(created["name"], "server_master");
    assert!(
        created["services"]["db"].get("admin_password").is_none(),
        "the db password must never be answered: {created}"
    );
    let task_id = created["verify_task"].as_str().unwrap().parse().unwrap();
    let task = w.wait_finished(task_id, WAIT).await.unwrap();
    assert_eq!(task.status, TaskStatus::Success, "{task:#?}");
    assert_eq!(task.task_type, "verify");
    let steps = task.steps.as_ref().unwrap();
    let services: Vec<&str> = steps.iter().map(|s| s.service.as_str()).collect();
    assert_eq!(services, ["db", "http", "dns"]);
    assert!(steps.iter().all(|s| s.status == StepStatus::Success));
    let log = task.log.as_ref().unwrap();
    let lines_of = |service: &str| -> Vec<String> {
        let step = steps.iter().find(|s| s.service == service).unwrap();
        log.iter()
            .filter(|l| l.step_id == Some(step.id))
            .map(|l| l.message.clone())
            .collect()
    };
    let db = lines_of("db").join("\n");
    assert!(db.contains("created database berth_verify_"), "{db}");
    assert!(db.contains("created user berth_verify_"), "{db}");
    assert!(db.contains("granted"), "{db}");
    assert!(db.contains("removed user and database"), "{db}");
    let http = lines_of("http").join("\n");
    assert!(http.contains("nginx accepts its configuration"), "{http}");
    let dns = lines_of("dns").join("\n");
    assert!(dns.contains("named-checkconf accepts"), "{dns}");
    // The verify database and user are gone again.
    let mut my = <sqlx::MySqlConnection as sqlx::Connection>::connect(&berth_tests::mysql_url())
        .await
        .unwrap();
    let db_name = db
        .split_whitespace()
        .find(|w| w.starts_with("berth_verify_"))
        .unwrap()
        .to_string();
    let (n,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM information_schema.schemata WHERE schema_name = ?")
            .bind(&db_name)
            .fetch_one(&mut my)
            .await
            .unwrap();
    assert_eq!(n, 0, "verify left database {db_name} behind");
    // The trace id comes back with the task.
    assert_eq!(task.trace_id.len(), 32);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_with_a_wrong_db_password_fails_verify_and_says_why() {
    let w = World::start().await.unwrap();
    let r = w
        .post(
            "/api/v1/servers",
            &json!({"name": "server_master", "host": "localhost", "services": {
                "db": {"type": "mariadb", "host": "127.0.0.1", "port": 3306,
                       "admin_user": "berth_no_such_user", "admin_password": "wrong-password-123"}}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    let task = w
        .wait_finished(v["verify_task"].as_str().unwrap().parse().unwrap(), WAIT)
        .await
        .unwrap();
    assert_eq!(task.status, TaskStatus::Error);
    let step = &task.steps.as_ref().unwrap()[0];
    assert_eq!(step.status, StepStatus::Error);
    assert!(
        step.error.as_deref().unwrap().contains("Access denied"),
        "{step:?}"
    );
    // A refused login is permanent: no retries.
    assert_eq!(step.history.len(), 1, "{step:?}");
    let all = serde_json::to_string(&task).unwrap();
    assert!(
        !all.contains("wrong-password-123"),
        "password leaked into the task"
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transient_failure_is_retried_with_backoff_and_succeeds_on_the_third_attempt() {
    let w = World::with_bare_server(WorldOptions::default()).await;
    let t = w
        .create_task(
            "noop",
            "server_master",
            json!({"fail": {"times": 2, "kind": "transient"}}),
        )
        .await
        .unwrap();
    let task = w.wait_finished(t.id, WAIT).await.unwrap();
    assert_eq!(task.status, TaskStatus::Success, "{task:#?}");
    let step = &task.steps.as_ref().unwrap()[0];
    assert_eq!(step.attempts, 3);
    assert_eq!(step.history.len(), 2, "{step:#?}");
    let delays = &w.opts.retry_delays_ms;
    for (i, h) in step.history.iter().enumerate() {
        assert_eq!(h.attempt as usize, i + 1);
        let backoff = h
            .retry_in_ms
            .expect("a retried attempt says when it comes back");
        let tier = delays[i] as f64;
        assert!(
            (backoff as f64) >= tier * 0.8 && (backoff as f64) <= tier * 1.2,
            "attempt {} backoff {backoff} ms outside {tier} ±20%",
            h.attempt
        );
    }
    // The backoff really happened: attempts are at least ~the delay apart.
    let gap = (step.history[1].at - step.history[0].at).num_milliseconds();
    assert!(
        gap as f64 >= step.history[0].retry_in_ms.unwrap() as f64 * 0.9,
        "attempt 2 came {gap} ms after attempt 1"
    );
    let log: Vec<String> = task.log.unwrap().into_iter().map(|l| l.message).collect();
    assert!(
        log.iter()
            .any(|l| l.contains("attempt 1 failed") && l.contains("retrying in")),
        "{log:#?}"
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_permanent_failure_is_dead_lettered_then_replayed_and_discarded() {
    let w = World::with_bare_server(WorldOptions::default()).await;
    let t = w
        .create_task(
            "noop",
            "server_master",
            json!({"fail": {"times": 1, "kind": "permanent"}}),
        )
        .await
        .unwrap();
    let task = w.wait_finished(t.id, WAIT).await.unwrap();
    assert_eq!(task.status, TaskStatus::Error);
    let step = &task.steps.as_ref().unwrap()[0];
    assert_eq!(step.history.len(), 1, "permanent errors are not retried");
    assert!(
        step.error.as_deref().unwrap().contains("injected"),
        "{step:?}"
    );

    let dead: Value = w.get_json("/api/v1/dead-letters").await;
    assert_eq!(dead["total"], 1, "{dead}");
    let d = &dead["items"][0];
    assert_eq!(d["task_id"], t.id.to_string());
    assert!(d["error"].as_str().unwrap().contains("injected"));
    assert_eq!(d["history"].as_array().unwrap().len(), 1);
    assert_eq!(d["payload"]["action"], "noop");
    assert_eq!(d["routing_key"], "http.server_master");

    // Replay: the step runs again as attempt 2, which the injected failure lets through.
    let id = d["id"].as_str().unwrap();
    let r = w
        .post(&format!("/api/v1/dead-letters/{id}/replay"), &json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let task = w
        .wait_task(t.id, WAIT, "success after replay", |t| {
            t.status == TaskStatus::Success
        })
        .await
        .unwrap();
    let step = &task.steps.as_ref().unwrap()[0];
    assert_eq!(step.attempts, 2, "{step:?}");
    // Replaying twice is refused.
    let again = w
        .post(&format!("/api/v1/dead-letters/{id}/replay"), &json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 409);

    // Discard removes it from the list.
    let r = w
        .http
        .delete(w.url(&format!("/api/v1/dead-letters/{id}")))
        .bearer_auth(&w.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let dead: Value = w.get_json("/api/v1/dead-letters").await;
    assert_eq!(dead["total"], 0, "{dead}");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transient_failures_past_the_last_attempt_are_dead_lettered_with_their_history() {
    let w = World::with_bare_server(WorldOptions::default()).await;
    let t = w
        .create_task(
            "noop",
            "server_master",
            json!({"fail": {"times": 99, "kind": "transient"}}),
        )
        .await
        .unwrap();
    let task = w.wait_finished(t.id, WAIT).await.unwrap();
    assert_eq!(task.status, TaskStatus::Error);
    let step = &task.steps.as_ref().unwrap()[0];
    let attempts = 1 + w.opts.retry_delays_ms.len();
    assert_eq!(step.history.len(), attempts, "{step:#?}");
    assert!(step.history.last().unwrap().retry_in_ms.is_none());
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tasks_on_one_server_run_one_after_the_other_and_on_two_servers_side_by_side() {
    let w = World::with_bare_server(WorldOptions {
        servers: vec!["server_master".into(), "server_webexamplecom".into()],
        ..Default::default()
    })
    .await;
    w.create_bare_server("server_webexamplecom", "web.example.com")
        .await
        .unwrap();
    let sleep = json!({"sleep_ms": 700});
    let a1 = w
        .create_task("noop", "server_master", sleep.clone())
        .await
        .unwrap();
    let a2 = w
        .create_task("noop", "server_master", sleep.clone())
        .await
        .unwrap();
    let b1 = w
        .create_task("noop", "server_webexamplecom", sleep.clone())
        .await
        .unwrap();
    let span = |t: &berth_contracts::Task| {
        let s = &t.steps.as_ref().unwrap()[0];
        (s.started_at.unwrap(), s.finished_at.unwrap())
    };
    let a1 = span(&w.wait_finished(a1.id, WAIT).await.unwrap());
    let a2 = span(&w.wait_finished(a2.id, WAIT).await.unwrap());
    let b1 = span(&w.wait_finished(b1.id, WAIT).await.unwrap());
    assert!(
        a2.0 >= a1.1,
        "second task on server_master started before the first ended"
    );
    assert!(
        b1.0 < a1.1 && a1.0 < b1.1,
        "tasks on two servers did not overlap: {a1:?} {b1:?}"
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redelivered_step_result_changes_nothing() {
    // One event at a time in the state service (concurrency 1 is its consumer's prefetch):
    // a marker published after the redelivery is handled only once the redelivery has been.
    let w = World::with_bare_server(WorldOptions {
        servers: vec!["server_master".into(), "server_otherexamplecom".into()],
        concurrency: 1,
        ..Default::default()
    })
    .await;
    w.create_bare_server("server_otherexamplecom", "other.example.com")
        .await
        .unwrap();
    let t = w
        .create_task("noop", "server_master", json!({}))
        .await
        .unwrap();
    let task = w.wait_finished(t.id, WAIT).await.unwrap();
    assert_eq!(task.status, TaskStatus::Success);
    let step = task.steps.as_ref().unwrap()[0].clone();
    let log_before = task.log.as_ref().unwrap().len();
    // A task still running elsewhere, whose log shows when the marker has been handled.
    let running = w
        .create_task(
            "noop",
            "server_otherexamplecom",
            json!({"sleep_ms": 60_000}),
        )
        .await
        .unwrap();
    let running = w
        .wait_task(running.id, WAIT, "its step running", |t| {
            t.steps
                .as_ref()
                .is_some_and(|s| s.first().is_some_and(|s| s.status == StepStatus::Running))
        })
        .await
        .unwrap();
    let running_step = running.steps.as_ref().unwrap()[0].id;
    let broker = berth_broker::Broker::new(&w.amqp_url);
    let publisher = broker.publisher().await.unwrap();
    let event = |task_id, target: &str, step_id, outcome, log| berth_contracts::StepEvent {
        task_id,
        target: Some(target.into()),
        step_id,
        phase: berth_contracts::StepPhase::Run,
        attempt: 1,
        worker: "replayer@test".into(),
        at: chrono::Utc::now(),
        started_at: chrono::Utc::now(),
        log,
        outcome,
    };
    let publish = |ev: berth_contracts::StepEvent| {
        let publisher = &publisher;
        async move {
            publisher
                .publish(
                    berth_contracts::exchanges::EVENTS,
                    berth_contracts::exchanges::STEP_KEY,
                    &uuid::Uuid::new_v4().to_string(),
                    &serde_json::to_vec(&ev).unwrap(),
                    berth_broker::MessageHeaders::default(),
                )
                .await
                .unwrap()
        }
    };
    // The same success again, as a broker redelivery would bring it (with a warning and a
    // log line that a recorded event would show).
    publish(event(
        t.id,
        "server_master",
        step.id,
        berth_contracts::StepOutcome::Succeeded {
            output: berth_contracts::StepOutput::Done,
            warning: true,
        },
        vec![berth_contracts::WorkerLog {
            at: chrono::Utc::now(),
            level: berth_contracts::LogLevel::Warning,
            message: "redelivered line".into(),
        }],
    ))
    .await;
    let marker = format!("marker {}", uuid::Uuid::new_v4());
    publish(event(
        running.id,
        "server_otherexamplecom",
        running_step,
        berth_contracts::StepOutcome::Progress,
        vec![berth_contracts::WorkerLog {
            at: chrono::Utc::now(),
            level: berth_contracts::LogLevel::Info,
            message: marker.clone(),
        }],
    ))
    .await;
    w.wait_task(running.id, WAIT, "the marker handled", |t| {
        t.log
            .as_ref()
            .is_some_and(|l| l.iter().any(|l| l.message == marker))
    })
    .await
    .unwrap();
    // The redelivery has been handled before the marker: nothing of it was recorded.
    let after = w.task(t.id).await.unwrap();
    assert_eq!(after.status, TaskStatus::Success, "{after:#?}");
    assert_eq!(after.steps.as_ref().unwrap()[0].status, StepStatus::Success);
    assert_eq!(after.log.as_ref().unwrap().len(), log_before, "{after:#?}");
    // The sleeper is not waited for.
    let r = w
        .post(&format!("/api/v1/tasks/{}/cancel", running.id), &json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    w.wait_finished(running.id, WAIT).await.unwrap();
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_gets_problem_json_and_writes_nothing() {
    let w = World::start().await.unwrap();
    let server = w
        .create_bare_server("server_master", "localhost")
        .await
        .unwrap();
    // Let the server's own verify finish, and its last messages leave the outbox, so that
    // nothing moves while we count.
    if let Some(verify) = server["verify_task"].as_str() {
        w.wait_finished(verify.parse().unwrap(), WAIT)
            .await
            .unwrap();
    }
    wait_outbox_sent(&w.store, WAIT).await.unwrap();
    let before = row_counts(&w.store).await.unwrap();
    let big = "x".repeat(70_000);
    let cases: Vec<(&str, reqwest::RequestBuilder, u16)> = vec![
        (
            "unknown task type",
            w.post(
                "/api/v1/tasks",
                &json!({"type": "explode", "target": "server_master"}),
            ),
            422,
        ),
        (
            "invalid server name",
            w.post(
                "/api/v1/servers",
                &json!({"host": "web.example.com", "name": "server_Bad/../x"}),
            ),
            422,
        ),
        (
            "invalid host",
            w.post("/api/v1/servers", &json!({"host": "Web..example.com"})),
            422,
        ),
        (
            "unknown target",
            w.post(
                "/api/v1/tasks",
                &json!({"type": "noop", "target": "server_nowhere"}),
            ),
            422,
        ),
        (
            "malformed JSON",
            w.http
                .post(w.url("/api/v1/tasks"))
                .bearer_auth(&w.token)
                .header("content-type", "application/json")
                .body("{\"type\": \"noop\", "),
            400,
        ),
        (
            "oversized body",
            w.post(
                "/api/v1/tasks",
                &json!({"type": "noop", "target": "server_master", "args": {"pad": big}}),
            ),
            413,
        ),
        (
            "missing token",
            w.http
                .post(w.url("/api/v1/tasks"))
                .json(&json!({"type": "noop", "target": "server_master"})),
            401,
        ),
        (
            "wrong token",
            w.http
                .post(w.url("/api/v1/tasks"))
                .bearer_auth("berth_not-a-token")
                .json(&json!({"type": "noop", "target": "server_master"})),
            401,
        ),
        (
            "unknown field",
            w.post(
                "/api/v1/tasks",
                &json!({"type": "noop", "target": "server_master", "priority": 9}),
            ),
            422,
        ),
        (
            "bad service type",
            w.post(
                "/api/v1/servers",
                &json!({"host": "db.example.com", "services": {"db": {"type": "oracle"}}}),
            ),
            422,
        ),
    ];
    for (what, req, status) in cases {
        let r = req.send().await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{what}");
        assert_eq!(
            r.headers()["content-type"],
            "application/problem+json",
            "{what}"
        );
        let p: Value = r.json().await.unwrap();
        assert_eq!(p["status"], status, "{what}: {p}");
        assert!(
            p["title"].is_string() && p["type"].is_string(),
            "{what}: {p}"
        );
        assert!(
            p["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{what}: {p}"
        );
    }
    assert_eq!(
        row_counts(&w.store).await.unwrap(),
        before,
        "a refused request wrote something"
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idempotency_key_gives_the_first_answer_again_and_refuses_another_body() {
    let w = World::with_bare_server(WorldOptions::default()).await;
    let body = json!({"type": "noop", "target": "server_master"});
    let first = w
        .post("/api/v1/tasks", &body)
        .header("Idempotency-Key", "order-42")
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 202);
    let loc1 = first.headers()["location"].to_str().unwrap().to_string();
    let first: Value = first.json().await.unwrap();
    let second = w
        .post("/api/v1/tasks", &body)
        .header("Idempotency-Key", "order-42")
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), 202);
    assert_eq!(second.headers()["location"].to_str().unwrap(), loc1);
    let second: Value = second.json().await.unwrap();
    assert_eq!(first["id"], second["id"]);
    let other = w
        .post(
            "/api/v1/tasks",
            &json!({"type": "noop", "target": "server_master", "args": {"service": "db"}}),
        )
        .header("Idempotency-Key", "order-42")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 422);
    let page: Value = w.get_json("/api/v1/tasks?type=noop").await;
    assert_eq!(page["total"], 1, "{page}");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_queued_task_can_be_cancelled_and_a_failed_one_retried() {
    let w = World::start().await.unwrap();
    w.server_verified("server_master", "localhost", "null")
        .await;
    // Hold the target with a long sleeping task, started by the state service before the
    // next one is queued: the next one then really waits behind it.
    let busy = w
        .create_task("noop", "server_master", json!({"sleep_ms": 60_000}))
        .await
        .unwrap();
    w.wait_task(busy.id, WAIT, "the busy task processing", |t| {
        t.status == TaskStatus::Processing
    })
    .await
    .unwrap();
    let queued = w
        .create_task("noop", "server_master", json!({}))
        .await
        .unwrap();
    assert_eq!(w.task(queued.id).await.unwrap().status, TaskStatus::Queued);
    // A queued task is cancelled at once (200).
    let r = w
        .post(&format!("/api/v1/tasks/{}/cancel", queued.id), &json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let c: Value = r.json().await.unwrap();
    assert_eq!(c["status"], "cancelled");
    // A processing one is marked and stopped (202, decision 0013): it ends cancelled long
    // before its sleep would have.
    let r = w
        .post(&format!("/api/v1/tasks/{}/cancel", busy.id), &json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let c: Value = r.json().await.unwrap();
    assert_eq!(c["status"], "processing", "{c}");
    assert!(c["cancel_requested_at"].is_string(), "{c}");
    let b = w.wait_finished(busy.id, WAIT).await.unwrap();
    assert_eq!(b.status, TaskStatus::Cancelled, "{b:#?}");
    // A finished one cannot be cancelled.
    let r = w
        .post(&format!("/api/v1/tasks/{}/cancel", busy.id), &json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let cancelled = w.task(queued.id).await.unwrap();
    assert_eq!(cancelled.status, TaskStatus::Cancelled);
    assert!(
        cancelled.steps.unwrap().is_empty(),
        "a cancelled queued task never ran"
    );

    // A failed task: a platform verify whose codebase is not there yet.
    let root = w.dir.join("platforms/platform_late");
    let r = w
        .post(
            "/api/v1/platforms",
            &json!({"name": "platform_late", "root": root.display().to_string()}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let p: Value = r.json().await.unwrap();
    let failed: uuid::Uuid = p["task"].as_str().unwrap().parse().unwrap();
    let f = w.wait_finished(failed, WAIT).await.unwrap();
    assert_eq!(f.status, TaskStatus::Error, "{f:#?}");
    let why = f.steps.as_ref().unwrap()[0]
        .error
        .clone()
        .unwrap_or_default();
    assert!(why.contains("is not a directory"), "{why}");
    // The codebase arrives; retry makes a new task with the same arguments, which runs.
    w.copy_fixture("drupal10", "platform_late").unwrap();
    let r = w
        .post(&format!("/api/v1/tasks/{failed}/retry"), &json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let retry: Value = r.json().await.unwrap();
    assert_eq!(retry["retry_of"], failed.to_string());
    assert_eq!(retry["type"], "verify");
    assert_eq!(retry["target"], "platform_late");
    let retry_id: uuid::Uuid = retry["id"].as_str().unwrap().parse().unwrap();
    assert_ne!(retry_id, failed);
    let done = w.wait_finished(retry_id, WAIT).await.unwrap();
    assert_eq!(done.status, TaskStatus::Success, "{done:#?}");
    assert_eq!(
        w.get_json("/api/v1/platforms/platform_late").await["status"],
        "verified"
    );
    assert_eq!(
        w.task(failed).await.unwrap().status,
        TaskStatus::Error,
        "the failed task keeps its outcome"
    );
    // A task that did not fail or get cancelled is not retried.
    let r = w
        .post(&format!("/api/v1/tasks/{retry_id}/retry"), &json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    // Filters and pagination.
    let page: Value = w.get_json("/api/v1/tasks?status=cancelled&limit=1").await;
    assert_eq!(page["total"], 2, "{page}");
    assert_eq!(page["items"].as_array().unwrap().len(), 1, "{page}");
    let page: Value = w.get_json("/api/v1/tasks?status=error").await;
    assert_eq!(page["total"], 1, "{page}");
    assert_eq!(page["items"][0]["id"], failed.to_string());
    let r = w.get("/api/v1/tasks?status=bogus").send().await.unwrap();
    assert_eq!(r.status(), 400);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_step_takes_back_the_steps_before_it_newest_first_and_replay_runs_them_again() {
    let w = World::with_bare_server(WorldOptions::default()).await;
    let t = w
        .create_task(
            "noop",
            "server_master",
            json!({"steps": 3, "fail": {"times": 1, "kind": "permanent"}}),
        )
        .await
        .unwrap();
    let task = w.wait_finished(t.id, WAIT).await.unwrap();
    assert_eq!(task.status, TaskStatus::Error);
    let statuses: Vec<StepStatus> = task
        .steps
        .as_ref()
        .unwrap()
        .iter()
        .map(|s| s.status)
        .collect();
    assert_eq!(
        statuses,
        [
            StepStatus::Compensated,
            StepStatus::Compensated,
            StepStatus::Error
        ]
    );
    let log: Vec<String> = task.log.unwrap().into_iter().map(|l| l.message).collect();
    let pos = |needle: &str| {
        log.iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("`{needle}` not in {log:#?}"))
    };
    assert!(
        pos("taking back step 2") < pos("taking back step 1"),
        "{log:#?}"
    );
    assert!(pos("step 2 (http noop on server_master): taken back") < pos("finished: error"));

    // Replay: the taken-back steps run again, then the failed one, now past its failure.
    let dead: Value = w.get_json("/api/v1/dead-letters").await;
    let id = dead["items"][0]["id"].as_str().unwrap().to_string();
    let r = w
        .post(&format!("/api/v1/dead-letters/{id}/replay"), &json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let task = w
        .wait_task(t.id, WAIT, "success after replay", |t| {
            t.status == TaskStatus::Success
        })
        .await
        .unwrap();
    assert!(
        task.steps
            .unwrap()
            .iter()
            .all(|s| s.status == StepStatus::Success && s.attempts == 2),
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_and_readiness_tell_what_the_pipeline_holds() {
    let w = World::with_bare_server(WorldOptions::default()).await;
    let t = w
        .create_task(
            "noop",
            "server_master",
            json!({"fail": {"times": 1, "kind": "transient"}}),
        )
        .await
        .unwrap();
    w.wait_finished(t.id, WAIT).await.unwrap();
    let ready = w.http.get(w.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let text = w
        .http
        .get(w.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        "berth_tasks{type=\"noop\",status=\"success\"} 1",
        "berth_tasks{type=\"verify\",status=\"success\"} 1",
        "berth_step_retries_total{service=\"http\",action=\"noop\"} 1",
        "berth_step_duration_seconds_count{service=\"http\",action=\"noop\"} 1",
        "berth_queue_messages{queue=\"state.tasks\"} 0",
        "berth_queue_consumers{queue=\"work.http.server_master\"} 1",
        "berth_dead_letters 0",
        "berth_outbox_unsent 0",
    ] {
        assert!(text.contains(needle), "`{needle}` missing from:\n{text}");
    }
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn servers_are_changed_with_a_new_verify_and_deleted_only_when_unused() {
    let w = World::start().await.unwrap();
    w.create_server("server_master", "localhost").await.unwrap();
    // A second server with the same host is refused.
    let dup = w
        .post("/api/v1/servers", &json!({"host": "localhost"}))
        .send()
        .await
        .unwrap();
    assert_eq!(dup.status(), 409);
    // PATCH changes only what is given, keeps the sealed password, and queues a verify.
    let r = w
        .http
        .patch(w.url("/api/v1/servers/server_master"))
        .bearer_auth(&w.token)
        .json(&json!({"services": {"http": {"type": "nginx", "port": 8081}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let s: Value = r.json().await.unwrap();
    assert_eq!(s["services"]["http"]["port"], 8081);
    assert_eq!(s["services"]["db"]["type"], "mariadb");
    let verify = w
        .wait_finished(s["verify_task"].as_str().unwrap().parse().unwrap(), WAIT)
        .await
        .unwrap();
    assert_eq!(
        verify.status,
        TaskStatus::Success,
        "the db password survived the change"
    );
    // Refused while a task is on it; allowed once it is done; its tasks keep their rows.
    let busy = w
        .create_task("noop", "server_master", json!({"sleep_ms": 1000}))
        .await
        .unwrap();
    let del = w
        .http
        .delete(w.url("/api/v1/servers/server_master"))
        .bearer_auth(&w.token)
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 409);
    w.wait_finished(busy.id, WAIT).await.unwrap();
    let del = w
        .http
        .delete(w.url("/api/v1/servers/server_master"))
        .bearer_auth(&w.token)
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 204);
    assert_eq!(
        w.get("/api/v1/servers/server_master")
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(w.task(busy.id).await.unwrap().status, TaskStatus::Success);
    w.stop().await;
}
