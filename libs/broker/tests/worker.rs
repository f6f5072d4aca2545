//! The worker framework against the real broker: retries with backoff, dead letters,
//! the noop diagnostic step, graceful shutdown.

mod common;

use std::sync::Arc;
use std::time::Duration;

use berth_broker::worker::{StepContext, StepError, StepHandler, StepOk, WorkerConfig, run_worker};
use berth_broker::{Broker, BrokerError, CancellationToken, Publisher, dead, topology};
use berth_contracts::{
    DeadLetterMessage, ErrorKind, StepCommand, StepEvent, StepOutcome, StepOutput,
};
use common::{TestVhost, next_event, next_message, noop, probe, probed, send_step, step};
use serde_json::json;
use tokio::task::JoinHandle;

const SERVICE: &str = "http";
const SERVER: &str = "server_test";

/// `flaky`: fails transiently on the first `times` attempts (from the args), then
/// succeeds; `forever`: always fails transiently; `broken`: fails permanently.
struct TestHandler;

impl StepHandler for TestHandler {
    async fn handle(&self, cmd: &StepCommand, ctx: &StepContext) -> Result<StepOk, StepError> {
        ctx.info(format!("attempt {}", ctx.attempt()));
        let (behaviour, times) = probed(cmd);
        match behaviour.as_str() {
            "flaky" if ctx.attempt() <= times => Err(StepError::transient("not yet")),
            "flaky" => Ok(StepOk::new(StepOutput::Reloaded {
                reload: 1,
                batch: 1,
            })),
            "forever" => Err(StepError::transient("still down")),
            "broken" => Err(StepError::permanent("bad input")),
            other => Err(StepError::permanent(format!("unknown behaviour {other}"))),
        }
    }
}

struct Running {
    shutdown: CancellationToken,
    handle: JoinHandle<Result<(), BrokerError>>,
}

impl Running {
    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.handle)
            .await
            .expect("the worker stops")
            .expect("worker task")
            .expect("run_worker ends cleanly");
    }
}

async fn start_worker(vhost: &TestVhost, delays: &[u64], diagnostics: bool) -> Running {
    start_worker_with(
        vhost,
        delays,
        diagnostics,
        berth_broker::worker::DEFAULT_STEP_TIMEOUT,
    )
    .await
}

async fn start_worker_with(
    vhost: &TestVhost,
    delays: &[u64],
    diagnostics: bool,
    step_timeout: Duration,
) -> Running {
    let cfg = WorkerConfig {
        amqp_url: vhost.url.clone(),
        service: SERVICE.into(),
        servers: vec![SERVER.into()],
        concurrency: 4,
        retry_delays_ms: delays.to_vec(),
        worker_name: "http@test#1".into(),
        diagnostics,
        step_timeout,
        limits: Default::default(),
    };
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(run_worker(cfg, Arc::new(TestHandler), shutdown.clone()));
    let broker = vhost.broker().await;
    common::wait_for_consumers(&broker, &topology::work_queue(SERVICE, SERVER), 1).await;
    Running { shutdown, handle }
}

async fn next_dead(broker: &Broker) -> DeadLetterMessage {
    let d = next_message(broker, topology::DEAD_QUEUE, common::WAIT)
        .await
        .expect("a dead letter in time");
    dead::decode_dead_letter(&d).expect("a DeadLetterMessage")
}

async fn no_event(broker: &Broker) {
    let extra = next_message(broker, topology::EVENTS_QUEUE, Duration::from_millis(200)).await;
    assert!(
        extra.is_none(),
        "unexpected event: {:?}",
        extra.map(|d| String::from_utf8_lossy(&d.body).into_owned())
    );
}

fn ms(d: chrono::TimeDelta) -> i64 {
    d.num_milliseconds()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_are_retried_with_backoff_then_succeed() {
    let vhost = TestVhost::new().await;
    let delays = [100, 200];
    let worker = start_worker(&vhost, &delays, false).await;
    let broker = vhost.broker().await;
    let cmd = step(SERVER, probe("flaky", 2));
    send_step(&Publisher::new(broker.clone()), &cmd).await;

    let mut events: Vec<StepEvent> = Vec::new();
    for _ in 0..3 {
        events.push(next_event(&broker).await);
    }
    for (i, e) in events.iter().enumerate() {
        assert_eq!((e.task_id, e.step_id), (cmd.task_id, cmd.step_id));
        assert_eq!(e.attempt, i as u32 + 1);
        assert_eq!(e.worker, "http@test#1");
        assert_eq!(e.log[0].message, format!("attempt {}", i + 1));
    }
    for (i, delay) in delays.iter().enumerate() {
        let StepOutcome::Retrying { error, retry_in_ms } = &events[i].outcome else {
            panic!(
                "attempt {} should be retrying: {:?}",
                i + 1,
                events[i].outcome
            );
        };
        assert_eq!(error, "not yet");
        assert!(
            (delay * 8 / 10..=delay * 12 / 10).contains(retry_in_ms),
            "retry_in_ms {retry_in_ms} is not {delay} ± 20%"
        );
        // The backoff really happened: the next attempt began after the jittered delay.
        let waited = ms(events[i + 1].started_at - events[i].at);
        assert!(
            waited >= (*delay as i64) * 8 / 10,
            "attempt {} began {waited} ms after attempt {} failed (delay {delay})",
            i + 2,
            i + 1
        );
    }
    assert_eq!(
        events[2].outcome,
        StepOutcome::Succeeded {
            output: StepOutput::Reloaded {
                reload: 1,
                batch: 1
            },
            warning: false
        }
    );
    no_event(&broker).await;
    worker.stop().await;
    assert_eq!(
        broker
            .queue_depth(&topology::work_queue(SERVICE, SERVER))
            .await
            .unwrap(),
        0
    );
    for d in delays {
        assert_eq!(
            broker.queue_depth(&topology::retry_tier(d)).await.unwrap(),
            0
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_failure_is_dead_lettered_at_once() {
    let vhost = TestVhost::new().await;
    let worker = start_worker(&vhost, &[50, 100], false).await;
    let broker = vhost.broker().await;
    let cmd = step(SERVER, probe("broken", 0));
    send_step(&Publisher::new(broker.clone()), &cmd).await;

    let dead = next_dead(&broker).await;
    assert_eq!(dead.command, cmd);
    assert_eq!(dead.routing_key, "http.server_test");
    assert_eq!(dead.error, "bad input");
    assert_eq!(dead.history.len(), 1);
    assert_eq!(dead.history[0].attempt, 1);
    assert_eq!(dead.history[0].kind, ErrorKind::Permanent);
    assert_eq!(dead.history[0].retry_in_ms, None);
    assert_eq!(dead.log[0].message, "attempt 1");
    // No step event: the state service fails the step from the dead letter.
    no_event(&broker).await;
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_are_dead_lettered_when_attempts_run_out() {
    let vhost = TestVhost::new().await;
    let worker = start_worker(&vhost, &[50, 100], false).await;
    let broker = vhost.broker().await;
    let cmd = step(SERVER, probe("forever", 0));
    send_step(&Publisher::new(broker.clone()), &cmd).await;

    let dead = next_dead(&broker).await;
    assert_eq!(dead.command, cmd);
    assert_eq!(dead.error, "still down");
    let attempts: Vec<u32> = dead.history.iter().map(|h| h.attempt).collect();
    assert_eq!(attempts, [1, 2, 3]);
    assert!(
        dead.history
            .iter()
            .all(|h| h.kind == ErrorKind::Transient && h.error == "still down")
    );
    assert!(dead.history[0].retry_in_ms.is_some() && dead.history[1].retry_in_ms.is_some());
    assert_eq!(dead.history[2].retry_in_ms, None);
    assert_eq!(dead.log[0].message, "attempt 3");

    for attempt in 1..=2 {
        let e = next_event(&broker).await;
        assert_eq!(e.attempt, attempt);
        assert!(
            matches!(e.outcome, StepOutcome::Retrying { .. }),
            "{:?}",
            e.outcome
        );
    }
    no_event(&broker).await;
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noop_ignores_diagnostics_when_they_are_off() {
    let vhost = TestVhost::new().await;
    let worker = start_worker(&vhost, &[50], false).await;
    let broker = vhost.broker().await;
    let cmd = step(
        SERVER,
        noop(json!({"fail": {"times": 5, "kind": "permanent"}, "sleep_ms": 10_000})),
    );
    send_step(&Publisher::new(broker.clone()), &cmd).await;

    let e = next_event(&broker).await;
    assert_eq!(e.attempt, 1);
    assert_eq!(
        e.outcome,
        StepOutcome::Succeeded {
            output: StepOutput::Noop {
                worker: "http@test#1".into()
            },
            warning: true
        }
    );
    let lines: Vec<&str> = e.log.iter().map(|l| l.message.as_str()).collect();
    assert!(lines[0].contains("diagnostics are off"), "{lines:?}");
    assert_eq!(lines.last(), Some(&"noop done"));
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noop_injects_failures_when_diagnostics_are_on() {
    let vhost = TestVhost::new().await;
    let worker = start_worker(&vhost, &[50], true).await;
    let broker = vhost.broker().await;
    let publisher = Publisher::new(broker.clone());

    // One transient failure, then success on the second attempt.
    let flaky = step(
        SERVER,
        noop(json!({"fail": {"times": 1, "kind": "transient"}})),
    );
    send_step(&publisher, &flaky).await;
    let e = next_event(&broker).await;
    assert_eq!(
        e.outcome,
        StepOutcome::Retrying {
            error: "injected transient failure (attempt 1 of 1)".into(),
            retry_in_ms: match e.outcome {
                StepOutcome::Retrying { retry_in_ms, .. } => retry_in_ms,
                _ => 0,
            }
        }
    );
    let e = next_event(&broker).await;
    assert_eq!(e.attempt, 2);
    assert!(
        matches!(e.outcome, StepOutcome::Succeeded { warning: false, .. }),
        "{:?}",
        e.outcome
    );

    // A permanent failure goes straight to the dead letters.
    let broken = step(
        SERVER,
        noop(json!({"fail": {"times": 1, "kind": "permanent"}})),
    );
    send_step(&publisher, &broken).await;
    let dead = next_dead(&broker).await;
    assert_eq!(dead.command.step_id, broken.step_id);
    assert_eq!(dead.error, "injected permanent failure (attempt 1 of 1)");
    worker.stop().await;
}

/// A step still running at the step timeout is ended and fails (permanently: dead-lettered)
/// while the worker goes on with the next step. Without it, RabbitMQ's consumer timeout
/// would close the channel and hand the still-running step to another worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_past_its_timeout_is_ended_and_the_worker_goes_on() {
    let vhost = TestVhost::new().await;
    let worker = start_worker_with(&vhost, &[50], true, Duration::from_millis(300)).await;
    let broker = vhost.broker().await;
    let publisher = Publisher::new(broker.clone());
    let slow = step(SERVER, noop(json!({"sleep_ms": 60_000})));
    send_step(&publisher, &slow).await;
    let dead = next_dead(&broker).await;
    assert_eq!(dead.command.step_id, slow.step_id);
    assert_eq!(
        dead.error,
        "the step did not finish within 0.3 s and was ended (BERTH_STEP_TIMEOUT_S)"
    );

    let quick = step(SERVER, noop(json!({})));
    send_step(&publisher, &quick).await;
    loop {
        let e = next_event(&broker).await;
        if e.step_id == quick.step_id && matches!(e.outcome, StepOutcome::Succeeded { .. }) {
            break;
        }
    }
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_the_step_in_flight_finish() {
    let vhost = TestVhost::new().await;
    let worker = start_worker(&vhost, &[50], true).await;
    let broker = vhost.broker().await;
    let cmd = step(SERVER, noop(json!({"sleep_ms": 500})));
    send_step(&Publisher::new(broker.clone()), &cmd).await;

    // The handler is sleeping once its progress line is out.
    let e = next_event(&broker).await;
    assert_eq!(e.outcome, StepOutcome::Progress);
    assert_eq!(e.log[0].message, "sleeping 500 ms");
    worker.stop().await;

    let e = next_event(&broker).await;
    assert!(
        matches!(e.outcome, StepOutcome::Succeeded { .. }),
        "{:?}",
        e.outcome
    );
    assert_eq!(
        e.log.iter().map(|l| l.message.as_str()).collect::<Vec<_>>(),
        ["noop done"]
    );
    // Acked, not requeued when the connection closed.
    let stats = broker
        .queue_stats(&topology::work_queue(SERVICE, SERVER))
        .await
        .unwrap();
    assert_eq!((stats.messages, stats.consumers), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_command_is_dead_lettered_by_the_broker() {
    let vhost = TestVhost::new().await;
    let worker = start_worker(&vhost, &[50], false).await;
    let broker = vhost.broker().await;
    Publisher::new(broker.clone())
        .publish(
            topology::WORK_EXCHANGE,
            &topology::work_routing_key(SERVICE, SERVER),
            "junk",
            b"{\"not\": \"a step\"}",
            berth_broker::MessageHeaders::default(),
        )
        .await
        .unwrap();

    let d = next_message(&broker, topology::DEAD_QUEUE, common::WAIT)
        .await
        .expect("dead-lettered through the work queue's DLX");
    assert_eq!(d.body, b"{\"not\": \"a step\"}");
    let death = dead::death_of(&d.raw_headers).expect("x-death");
    assert_eq!(death.reason, "rejected");
    assert_eq!(death.queue, topology::work_queue(SERVICE, SERVER));
    assert!(dead::decode_dead_letter(&d).is_none());
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_continue_the_trace_of_the_step_command() {
    let vhost = TestVhost::new().await;
    let worker = start_worker(&vhost, &[50], false).await;
    let broker = vhost.broker().await;
    let cmd = step(SERVER, noop(json!({})));
    let traceparent =
        tracing::info_span!("dispatch").in_scope(berth_telemetry::current_traceparent);
    let trace_id = berth_telemetry::trace_id_of(&traceparent).expect("tests have trace ids");
    Publisher::new(broker.clone())
        .publish_json(
            topology::WORK_EXCHANGE,
            &cmd.routing_key(),
            &cmd.step_id.to_string(),
            &cmd,
            berth_broker::MessageHeaders::for_task(cmd.task_id)
                .with_traceparent(traceparent.clone()),
        )
        .await
        .unwrap();

    let d = next_message(&broker, topology::EVENTS_QUEUE, common::WAIT)
        .await
        .expect("an event");
    assert_eq!(
        d.message_id.as_deref(),
        Some(cmd.step_id.to_string().as_str())
    );
    assert_eq!(d.headers.task_id, Some(cmd.task_id.to_string()));
    let event_tp = d
        .headers
        .traceparent
        .expect("the event carries a traceparent");
    assert_eq!(
        berth_telemetry::trace_id_of(&event_tp),
        Some(trace_id),
        "same trace"
    );
    assert_ne!(event_tp, traceparent, "from the worker's own span");
    worker.stop().await;
}
