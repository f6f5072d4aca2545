//! `berth-bench backlog`: what a queue of 100,000 messages does to berth.
//!
//! In berth a backlog builds up in one place: the state service's queue (`state.tasks`),
//! when the API goes on accepting tasks while the state service is down or slower than
//! the clients. (Work queues hold at most one step per target: a target's tasks wait in
//! PostgreSQL, not in the broker.) So:
//!
//! 1. with the state service stopped, the API accepts `--tasks` no-op tasks spread over
//!    `--targets` servers: the accept rate and latency, then the queue's depth and the
//!    broker's memory;
//! 2. the state service starts: the time to drain the queue and finish every task, the
//!    depth over time, and the latency of `GET /api/v1/tasks` meanwhile.

use crate::stats::Summary;
use anyhow::{Context, Result, ensure};
use berth_tests::{World, WorldOptions, rabbit_management};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

pub struct Config {
    pub tasks: usize,
    pub targets: usize,
    pub in_flight: usize,
    pub concurrency: u16,
    pub timeout: Duration,
}

pub async fn run(cfg: Config) -> Result<()> {
    ensure!(cfg.tasks > 0 && cfg.targets > 0 && cfg.in_flight > 0);
    let servers: Vec<String> = (0..cfg.targets)
        .map(|i| format!("server_backlog{i:03}examplecom"))
        .collect();
    let world = World::start_with(WorldOptions {
        servers: servers.clone(),
        concurrency: cfg.concurrency,
        state: false,
        ..WorldOptions::default()
    })
    .await
    .context("start the world (PostgreSQL and RabbitMQ must be running: ops/setup.sh)")?;
    let result = bench(&world, &cfg, &servers).await;
    world.stop().await;
    println!("{}", result?);
    Ok(())
}

async fn bench(world: &World, cfg: &Config, servers: &[String]) -> Result<String> {
    for (i, name) in servers.iter().enumerate() {
        world
            .create_bare_server(name, &format!("backlog{i:03}.example.com"))
            .await?;
    }
    let mut out = String::new();
    let accepted = Arc::new(AtomicUsize::new(0));
    let latencies = Arc::new(std::sync::Mutex::new(Vec::with_capacity(cfg.tasks)));
    eprintln!(
        "state service stopped; submitting {} tasks over {} targets…",
        cfg.tasks, cfg.targets
    );
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..cfg.in_flight {
        let (next, accepted, latencies) = (next.clone(), accepted.clone(), latencies.clone());
        let http = world.http.clone();
        let (url, token) = (world.url("/api/v1/tasks"), world.token.clone());
        let servers = servers.to_vec();
        let total = cfg.tasks;
        clients.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= total {
                    return Ok::<_, anyhow::Error>(());
                }
                let body =
                    json!({"type": "noop", "target": servers[i % servers.len()], "args": {}});
                let t = Instant::now();
                let r = http
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&body)
                    .send()
                    .await?;
                let status = r.status();
                ensure!(status.as_u16() == 202, "task {i}: {status}");
                latencies.lock().unwrap().push(t.elapsed());
                accepted.fetch_add(1, Ordering::SeqCst);
                if i % 10_000 == 0 && i > 0 {
                    eprintln!(
                        "  {i} accepted after {:.0} s",
                        started.elapsed().as_secs_f64()
                    );
                }
            }
        }));
    }
    for c in clients {
        c.await??;
    }
    let took = started.elapsed();
    let lat = Summary::of(
        latencies
            .lock()
            .unwrap()
            .iter()
            .map(|d| d.as_secs_f64() * 1e3)
            .collect(),
    );
    out += &format!(
        "backlog: {} tasks over {} targets, state service down\n\
         accept       {:.0} tasks/s over {:.1} s; POST /api/v1/tasks p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms\n",
        cfg.tasks,
        cfg.targets,
        cfg.tasks as f64 / took.as_secs_f64(),
        took.as_secs_f64(),
        lat.p50,
        lat.p99,
        lat.max,
    );
    // Let the relays publish what is left in the outbox.
    let q = wait_depth(world, cfg.tasks, Duration::from_secs(120)).await?;
    let node = mgmt(world, "/api/nodes").await?;
    let mem_mb = node[0]["mem_used"].as_f64().unwrap_or(0.0) / 1e6;
    let unsent: (i64,) = sqlx::query_as("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
        .fetch_one(&world.store.pool)
        .await?;
    out += &format!(
        "queue        state.tasks holds {} messages ({:.1} MB of bodies, {:.1} MB queue memory); broker memory {mem_mb:.0} MB; outbox unsent {}\n",
        q["messages"],
        q["message_bytes"].as_f64().unwrap_or(0.0) / 1e6,
        q["memory"].as_f64().unwrap_or(0.0) / 1e6,
        unsent.0
    );

    eprintln!("starting the state service…");
    let shutdown = CancellationToken::new();
    let state_cfg = berth_state::StateConfig {
        database_url: world.database_url.clone(),
        amqp_url: world.amqp_url.clone(),
        concurrency: cfg.concurrency,
        limits: Default::default(),
        drill_domain: "drill.berth.invalid".into(),
    };
    let s = shutdown.clone();
    let state = tokio::spawn(async move { berth_state::run(state_cfg, s).await });
    let drain_started = Instant::now();
    let mut reads = Vec::new();
    let mut samples = Vec::new();
    let mut drained_at = None;
    let total = cfg.tasks as i64 + cfg.targets as i64; // and each server's verify
    loop {
        let t = Instant::now();
        let r = world.get("/api/v1/tasks?limit=20").send().await?;
        ensure!(r.status().is_success(), "GET /api/v1/tasks: {}", r.status());
        r.bytes().await?;
        reads.push(t.elapsed());
        if reads.len() % 25 == 0 {
            let (done,): (i64,) = sqlx::query_as(
                "SELECT count(*) FROM tasks WHERE status IN ('success', 'warning', 'error', 'cancelled')",
            )
            .fetch_one(&world.store.pool)
            .await?;
            let depth = state_tasks(world)
                .await
                .map(|q| q["messages"].as_i64().unwrap_or(-1))
                .unwrap_or(-1);
            let secs = drain_started.elapsed().as_secs_f64();
            if depth == 0 && drained_at.is_none() {
                drained_at = Some(secs);
            }
            samples.push((secs, depth, done));
            if samples.len() % 6 == 0 {
                eprintln!("  {secs:.0} s: state.tasks {depth}, finished {done}/{total}");
            }
            if done >= total {
                break;
            }
            ensure!(
                drain_started.elapsed() < cfg.timeout,
                "not drained after {:?}: {done}/{total} finished",
                cfg.timeout
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let drain = drain_started.elapsed();
    let errors: (i64,) = sqlx::query_as("SELECT count(*) FROM tasks WHERE status <> 'success'")
        .fetch_one(&world.store.pool)
        .await?;
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(15), state).await;
    let n_reads = reads.len();
    let reads = Summary::of(reads.iter().map(|d| d.as_secs_f64() * 1e3).collect());
    out += &format!(
        "drain        every task finished {:.1} s after the state service started ({:.0} tasks/s); state.tasks empty after {}; not success: {}\n\
         reads        GET /api/v1/tasks?limit=20 during the drain: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} requests)\n\
         depth        {}\n",
        drain.as_secs_f64(),
        total as f64 / drain.as_secs_f64(),
        drained_at
            .map(|s| format!("{s:.0} s"))
            .unwrap_or_else(|| "-".into()),
        errors.0,
        reads.p50,
        reads.p99,
        reads.max,
        n_reads,
        samples
            .iter()
            .step_by((samples.len() / 8).max(1))
            .map(|(s, d, f)| format!("{s:.0}s: {d} queued / {f} done"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(out)
}

async fn mgmt(world: &World, path: &str) -> Result<Value> {
    Ok(world
        .http
        .get(format!("{}{path}", rabbit_management()))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?)
}

/// The management API's view of the world's `state.tasks` queue.
async fn state_tasks(world: &World) -> Result<Value> {
    mgmt(world, &format!("/api/queues/{}/state.tasks", world.vhost)).await
}

/// Waits until `state.tasks` holds `want` messages (the relays publish after the commit).
async fn wait_depth(world: &World, want: usize, within: Duration) -> Result<Value> {
    let deadline = Instant::now() + within;
    loop {
        let q = state_tasks(world).await?;
        if q["messages"].as_u64().unwrap_or(0) as usize >= want || Instant::now() > deadline {
            return Ok(q);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
