//! `berth-bench webhooks`: task finished → webhook received, at a fixed rate of finishes,
//! with 1 and with 100 endpoints.
//!
//! A finish is stood in for by what the state service writes when a task ends: a
//! `task.finished` notice through the outbox in its own transaction, published by an outbox
//! relay (the full task pipeline at 100 tasks/s is measured by `berth-bench pipeline`; here
//! the webhook half is measured alone). The real notices service (in-process) matches,
//! records, signs and POSTs each to a real HTTP receiver on loopback, which takes the
//! latency from the notice's commit time (`at`) to its arrival.

use crate::stats::Summary;
use anyhow::{Result, bail};
use axum::extract::State;
use berth_contracts::{Notice, NoticeEvent, TargetKind, TaskStatus, TaskType, exchanges};
use berth_outbox::Relay;
use berth_store::outbox::{self, OutboxMessage};
use berth_tests::{World, WorldOptions};
use chrono::Utc;
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub struct Config {
    /// Finishes per second.
    pub rate: f64,
    /// How long finishes are offered.
    pub secs: u64,
    /// Endpoint counts to measure, one run each.
    pub endpoints: Vec<usize>,
    /// Attempts in flight in the notices service.
    pub concurrency: u16,
    pub timeout: Duration,
}

#[derive(Clone, Default)]
struct Receiver {
    /// Milliseconds from the notice's commit to its arrival, one per delivery.
    latencies: Arc<Mutex<Vec<f64>>>,
}

async fn receive(State(r): State<Receiver>, body: String) -> &'static str {
    let now = Utc::now();
    if let Ok(n) = serde_json::from_str::<Notice>(&body) {
        let ms = (now - n.at).num_microseconds().unwrap_or(0) as f64 / 1000.0;
        r.latencies.lock().unwrap().push(ms);
    }
    ""
}

pub async fn run(cfg: Config) -> Result<()> {
    let w = World::start_with(WorldOptions {
        workers: false,
        ..WorldOptions::default()
    })
    .await?;
    let rx = Receiver::default();
    let app = axum::Router::new()
        .route("/{n}", axum::routing::post(receive))
        .with_state(rx.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let stop = CancellationToken::new();
    let notices_cfg = berth_notices::NoticesConfig {
        database_url: w.database_url.clone(),
        amqp_url: w.amqp_url.clone(),
        secret_key: berth_secrets::SecretKey::from_hex(&w.secret_hex)?,
        concurrency: cfg.concurrency,
        retry: berth_webhook::RetrySchedule::default(),
        timeout: Duration::from_secs(10),
        allow_private: true,
        sweep_every: Duration::from_secs(30),
        log_keep: Duration::from_secs(30 * 86_400),
        mail: berth_notices::mail::MailConfig {
            relay: None,
            from: "berth <berth@localhost>".into(),
        },
    };
    let s = stop.clone();
    let notices = tokio::spawn(async move { berth_notices::run(notices_cfg, s).await });
    let (relay, outbox) = Relay::new(w.store.clone(), berth_broker::Broker::new(&w.amqp_url));
    let relay = tokio::spawn(relay.run(stop.clone()));

    println!(
        "webhooks: {} finishes/s for {} s, notices concurrency {}; latency = notice committed → POST received (ms)",
        cfg.rate, cfg.secs, cfg.concurrency
    );
    println!("endpoints  deliveries  p50 / p95 / p99 / max          delivered/s  drained after");
    let mut hooks: Vec<String> = Vec::new();
    for &n in &cfg.endpoints {
        while hooks.len() < n {
            let (status, v) = w
                .post_json(
                    "/api/v1/webhooks",
                    &json!({"url": format!("{base}/{}", hooks.len()), "events": ["task.finished"]}),
                )
                .await;
            if status != 201 {
                bail!("create webhook: {status} {v}");
            }
            hooks.push(v["id"].as_str().unwrap_or_default().to_string());
        }
        rx.latencies.lock().unwrap().clear();
        let finishes = (cfg.rate * cfg.secs as f64).round() as usize;
        let expected = finishes * n;
        let started = Instant::now();
        let every = Duration::from_secs_f64(1.0 / cfg.rate);
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        for _ in 0..finishes {
            tick.tick().await;
            let notice = Notice {
                id: Uuid::now_v7(),
                at: Utc::now(),
                event: NoticeEvent::TaskFinished {
                    task_id: Uuid::now_v7(),
                    task_type: TaskType::Verify,
                    target: "server_master".into(),
                    target_kind: TargetKind::Server,
                    status: TaskStatus::Success,
                    trace_id: "0af7651916cd43dd8448eb211c80319c".into(),
                    client: None,
                },
            };
            let mut tx = w.store.pool.begin().await?;
            let row = outbox::enqueue(
                &mut tx,
                OutboxMessage {
                    exchange: exchanges::NOTICES,
                    routing_key: notice.event.kind(),
                    message_id: notice.id.to_string(),
                    payload: serde_json::to_value(&notice)?,
                    traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                    attempt: 1,
                    task_id: None,
                },
            )
            .await?;
            tx.commit().await?;
            outbox.publish(vec![row]);
        }
        let offered = started.elapsed();
        let deadline = Instant::now() + cfg.timeout;
        loop {
            let got = rx.latencies.lock().unwrap().len();
            if got >= expected {
                break;
            }
            if Instant::now() > deadline {
                println!("  timed out: {got} of {expected} deliveries received");
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let total = started.elapsed();
        let samples = rx.latencies.lock().unwrap().clone();
        let got = samples.len();
        let summary = Summary::of(samples);
        println!(
            "{n:>9}  {got:>10}  {summary:<29}  {:>11.0}  {:.1} s (offered over {:.1} s)",
            got as f64 / total.as_secs_f64(),
            total.as_secs_f64(),
            offered.as_secs_f64()
        );
    }
    stop.cancel();
    let _ = notices.await;
    let _ = relay.await;
    w.stop().await;
    Ok(())
}
