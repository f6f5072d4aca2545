//! `berth-bench pipeline`: no-op tasks through the whole path, timed from PostgreSQL.
//!
//! Timings come from the rows the pipeline writes, not from polling the API:
//! - accepted: `tasks.created_at` (the API's transaction);
//! - relayed: `outbox.sent_at` of the task's `TaskQueued` (when an outbox relay began the
//!   transaction that published it);
//! - dispatched: `tasks.started_at` (the state service's transaction that planned the task
//!   and put its step command in the outbox);
//! - step relayed: `outbox.sent_at` of the step command;
//! - picked up: `steps.started_at` of step 1 (when the worker began it, as it reports);
//! - finished: `tasks.finished_at` (the state service recording the step's result).
//!
//! PostgreSQL's `now()` is the start of the transaction. All clocks are this machine's, so
//! the differences are comparable.

use crate::machine::{self, CpuSample, CpuUse};
use crate::raw::{self, RawResult};
use crate::stats::{Summary, ms};
use anyhow::{Context, Result, bail, ensure};
use berth_contracts::exchanges;
use berth_tests::{World, WorldOptions};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use serde_json::json;
use sqlx::PgPool;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio::time::MissedTickBehavior;
use uuid::Uuid;

pub struct Config {
    pub tasks: usize,
    /// One fixed-load phase per rate, in tasks/s.
    pub rates: Vec<f64>,
    pub targets: usize,
    pub in_flight: usize,
    pub concurrency: u16,
    pub raw_window: usize,
    pub timeout: Duration,
}

/// Aims of the issue: a share of the raw ceiling, and pickup p99 at the fixed load.
const AIM_RATIO: f64 = 0.25;
const AIM_PICKUP_P99_MS: f64 = 20.0;
const AIM_RATE: f64 = 200.0;

/// PostgreSQL flushes a backend's transaction counters to `pg_stat_database` when it has
/// been idle for up to 10 s; waiting this long makes the per-task counts exact.
const PG_STATS_SETTLE: Duration = Duration::from_millis(11_500);

pub async fn run(cfg: Config) -> Result<()> {
    ensure!(cfg.tasks > 0, "--tasks must be at least 1");
    ensure!(
        !cfg.rates.is_empty() && cfg.rates.iter().all(|r| *r > 0.0),
        "--rate must be positive"
    );
    ensure!(cfg.targets > 0, "--targets must be at least 1");
    ensure!(
        cfg.in_flight > 0 && cfg.raw_window > 0,
        "windows must be at least 1"
    );
    // Aegir's naming rule: `server_` and the host without its dots.
    let hosts: Vec<String> = (0..cfg.targets)
        .map(|i| format!("bench{i:02}.example.com"))
        .collect();
    let servers: Vec<String> = hosts
        .iter()
        .map(|h| format!("server_{}", h.replace('.', "")))
        .collect();

    // First, in a vhost of its own: with the world's hundreds of idle quorum queues and
    // consumers around, the broker may answer new connections slowly (see the docs).
    eprintln!("raw ceiling: {} messages…", cfg.tasks);
    let cpu_before = CpuSample::now();
    let raw = raw::ceiling(cfg.tasks, cfg.concurrency, cfg.raw_window).await?;
    let raw = (raw, CpuSample::now().since(&cpu_before));

    let world = World::start_with(WorldOptions {
        servers: servers.clone(),
        concurrency: cfg.concurrency,
        ..WorldOptions::default()
    })
    .await
    .context("start the world (PostgreSQL and RabbitMQ must be running: ops/setup.sh)")?;
    let result = bench(&world, &cfg, &servers, &hosts, raw).await;
    world.stop().await;
    let report = result?;
    println!("{report}");
    ensure!(
        report.phases.iter().all(|p| p.all_succeeded()),
        "not every task succeeded: the figures above are not a valid measurement"
    );
    Ok(())
}

async fn bench(
    world: &World,
    cfg: &Config,
    servers: &[String],
    hosts: &[String],
    (raw, raw_cpu): (RawResult, CpuUse),
) -> Result<Report> {
    let load_before = machine::loadavg();
    let client = Client::new(world);
    let pool = &world.store.pool;

    eprintln!("creating {} servers…", servers.len());
    let mut verify = Vec::new();
    for (name, host) in servers.iter().zip(hosts) {
        let created = world.create_bare_server(name, host).await?;
        let id = created["verify_task"]
            .as_str()
            .context("no verify_task in the answer")?;
        verify.push(id.parse()?);
    }
    wait_finished(pool, &verify, cfg.timeout).await?;

    // One task per server first, so that connections, pools and the relays' work queue
    // declarations are in place before anything is timed.
    eprintln!("warming up…");
    let warm = submit_flat(&client, servers, servers.len(), cfg.in_flight).await?;
    wait_finished(pool, &warm.ids(), cfg.timeout).await?;

    let mut phases = Vec::new();
    let loads = cfg.rates.iter().map(|r| Load::Fixed(*r));
    for load in loads.chain([Load::FlatOut(cfg.in_flight)]) {
        tokio::time::sleep(PG_STATS_SETTLE).await;
        let pg_before = pg_xacts(pool).await?;
        let cpu_before = CpuSample::now();
        eprintln!("{}: submitting {} tasks…", load.name(), cfg.tasks);
        let submitted = match load {
            Load::Fixed(rate) => submit_open_loop(&client, servers, cfg.tasks, rate).await?,
            Load::FlatOut(n) => submit_flat(&client, servers, cfg.tasks, n).await?,
        };
        let ids = submitted.ids();
        wait_finished(pool, &ids, cfg.timeout).await?;
        let cpu = CpuSample::now().since(&cpu_before);
        let timings = Timings::read(pool, &ids).await?;
        let batches = relay_batches(pool, &ids).await?;
        tokio::time::sleep(PG_STATS_SETTLE).await;
        let pg_after = pg_xacts(pool).await?;
        let pg = pg_after.minus(pg_before);
        let phase = Phase::new(load, &submitted, &timings, cpu, pg, batches);
        eprintln!("{phase}");
        phases.push(phase);
    }

    Ok(Report {
        tasks: cfg.tasks,
        targets: cfg.targets,
        concurrency: cfg.concurrency,
        raw_window: cfg.raw_window,
        phases,
        raw,
        raw_cpu,
        load_before,
        load_after: machine::loadavg(),
    })
}

#[derive(Debug, Clone, Copy)]
enum Load {
    /// Open loop at this many tasks/s.
    Fixed(f64),
    /// As fast as the API takes them, with this many POSTs in flight.
    FlatOut(usize),
}

impl Load {
    fn name(&self) -> String {
        match self {
            Load::Fixed(rate) => format!("fixed {rate:.0}/s"),
            Load::FlatOut(_) => "flat out".into(),
        }
    }
}

/// Posts tasks through the real API, as an operator's client would.
#[derive(Clone)]
struct Client {
    http: reqwest::Client,
    url: String,
    token: String,
}

impl Client {
    fn new(world: &World) -> Self {
        Self {
            http: world.http.clone(),
            url: world.url("/api/v1/tasks"),
            token: world.token.clone(),
        }
    }

    /// Queues a noop on `target`; returns its id and how long the API took to accept it.
    async fn noop(&self, target: &str) -> Result<(Uuid, Duration)> {
        let t0 = Instant::now();
        let r = self
            .http
            .post(&self.url)
            .bearer_auth(&self.token)
            .json(&json!({"type": "noop", "target": target}))
            .send()
            .await?;
        let status = r.status();
        let body: serde_json::Value = r.json().await?;
        if status != reqwest::StatusCode::ACCEPTED {
            bail!("POST /api/v1/tasks: {status} {body}");
        }
        let id = body["id"]
            .as_str()
            .context("no id in the answer")?
            .parse()?;
        Ok((id, t0.elapsed()))
    }
}

struct Submitted {
    /// Task ids and the API's accept latency, in submission order.
    tasks: Vec<(Uuid, Duration)>,
    /// First POST sent → last POST sent (open loop) or answered (flat out).
    secs: f64,
}

impl Submitted {
    fn ids(&self) -> Vec<Uuid> {
        self.tasks.iter().map(|t| t.0).collect()
    }

    fn offered_per_sec(&self) -> f64 {
        if self.secs > 0.0 {
            (self.tasks.len() - 1) as f64 / self.secs
        } else {
            f64::NAN
        }
    }
}

/// Open loop: a POST every 1/rate s whether or not the earlier ones have been answered, so
/// that a slow API shows up as latency instead of lowering the offered load.
async fn submit_open_loop(
    client: &Client,
    servers: &[String],
    n: usize,
    rate: f64,
) -> Result<Submitted> {
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    // Catch up after a late tick, keeping the average rate.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut posts = Vec::with_capacity(n);
    let mut first = None;
    for i in 0..n {
        ticker.tick().await;
        first.get_or_insert_with(Instant::now);
        let client = client.clone();
        let target = servers[i % servers.len()].clone();
        posts.push(tokio::spawn(async move { client.noop(&target).await }));
    }
    let secs = first.map_or(0.0, |t| t.elapsed().as_secs_f64());
    let mut tasks = Vec::with_capacity(n);
    for p in posts {
        tasks.push(p.await??);
    }
    Ok(Submitted { tasks, secs })
}

/// Closed loop with `in_flight` POSTs outstanding: as fast as the API accepts.
async fn submit_flat(
    client: &Client,
    servers: &[String],
    n: usize,
    in_flight: usize,
) -> Result<Submitted> {
    let start = Instant::now();
    let results: Vec<Result<(Uuid, Duration)>> = futures_util::stream::iter(0..n)
        .map(|i| client.noop(&servers[i % servers.len()]))
        .buffered(in_flight)
        .collect()
        .await;
    let secs = start.elapsed().as_secs_f64();
    let tasks = results.into_iter().collect::<Result<Vec<_>>>()?;
    Ok(Submitted { tasks, secs })
}

/// Waits until every task in `ids` has finished, whatever its status.
async fn wait_finished(pool: &PgPool, ids: &[Uuid], within: Duration) -> Result<()> {
    let start = Instant::now();
    let mut said = Instant::now();
    loop {
        let (left,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM tasks WHERE id = ANY($1) AND finished_at IS NULL")
                .bind(ids)
                .fetch_one(pool)
                .await?;
        if left == 0 {
            return Ok(());
        }
        if start.elapsed() > within {
            bail!("{left} of {} tasks unfinished after {within:?}", ids.len());
        }
        if said.elapsed() > Duration::from_secs(5) {
            eprintln!("  {left} of {} tasks unfinished", ids.len());
            said = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One task's timestamps.
#[derive(sqlx::FromRow)]
struct TaskTimes {
    status: String,
    created_at: DateTime<Utc>,
    relayed_at: Option<DateTime<Utc>>,
    dispatched_at: Option<DateTime<Utc>>,
    step_relayed_at: Option<DateTime<Utc>>,
    picked_up_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
}

struct Timings(Vec<TaskTimes>);

impl Timings {
    async fn read(pool: &PgPool, ids: &[Uuid]) -> Result<Self> {
        // The outbox has no index on task_id: one scan for all the tasks.
        let rows: Vec<TaskTimes> = sqlx::query_as(
            "WITH o AS (
                SELECT task_id,
                       min(sent_at) FILTER (WHERE exchange = $2) AS relayed_at,
                       min(sent_at) FILTER (WHERE exchange = $3) AS step_relayed_at
                FROM outbox WHERE task_id = ANY($1) GROUP BY task_id)
             SELECT t.status, t.created_at, o.relayed_at, t.started_at AS dispatched_at,
                    o.step_relayed_at, s.started_at AS picked_up_at, t.finished_at
             FROM tasks t
             LEFT JOIN steps s ON s.task_id = t.id AND s.position = 1
             LEFT JOIN o ON o.task_id = t.id
             WHERE t.id = ANY($1)",
        )
        .bind(ids)
        .bind(exchanges::TASKS)
        .bind(exchanges::WORK)
        .fetch_all(pool)
        .await?;
        ensure!(
            rows.len() == ids.len(),
            "{} of {} tasks found",
            rows.len(),
            ids.len()
        );
        Ok(Self(rows))
    }

    /// Milliseconds from `from` to `to` of every task that has both.
    fn span(
        &self,
        from: impl Fn(&TaskTimes) -> Option<DateTime<Utc>>,
        to: impl Fn(&TaskTimes) -> Option<DateTime<Utc>>,
    ) -> Summary {
        Summary::of(
            self.0
                .iter()
                .filter_map(|t| Some(millis(to(t)? - from(t)?)))
                .collect(),
        )
    }

    /// Tasks per second from the first acceptance to the last finish.
    fn throughput(&self) -> f64 {
        let first = self.0.iter().map(|t| t.created_at).min();
        let last = self.0.iter().filter_map(|t| t.finished_at).max();
        match (first, last) {
            (Some(a), Some(b)) if b > a => self.0.len() as f64 / (millis(b - a) / 1000.0),
            _ => f64::NAN,
        }
    }

    fn statuses(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for t in &self.0 {
            *counts.entry(t.status.clone()).or_default() += 1;
        }
        counts
    }
}

fn millis(d: chrono::TimeDelta) -> f64 {
    d.num_microseconds()
        .map_or(f64::INFINITY, |us| us as f64 / 1000.0)
}

/// Transactions PostgreSQL counted in this database.
#[derive(Debug, Clone, Copy)]
struct PgXacts {
    commits: i64,
    rollbacks: i64,
}

impl PgXacts {
    fn minus(self, before: Self) -> Self {
        Self {
            commits: self.commits - before.commits,
            rollbacks: self.rollbacks - before.rollbacks,
        }
    }
}

/// Outbox rows the relays published per transaction, as (transactions, rows, largest).
/// A relay marks a batch sent with its transaction's `now()`, so a batch is the rows
/// sharing a `sent_at`.
async fn relay_batches(pool: &PgPool, ids: &[Uuid]) -> Result<(i64, i64, i64)> {
    Ok(sqlx::query_as(
        "SELECT count(*), COALESCE(sum(n), 0)::int8, COALESCE(max(n), 0)
         FROM (SELECT count(*) AS n FROM outbox WHERE task_id = ANY($1) GROUP BY sent_at) b",
    )
    .bind(ids)
    .fetch_one(pool)
    .await?)
}

async fn pg_xacts(pool: &PgPool) -> Result<PgXacts> {
    let (commits, rollbacks): (i64, i64) = sqlx::query_as(
        "SELECT xact_commit, xact_rollback FROM pg_stat_database WHERE datname = current_database()",
    )
    .fetch_one(pool)
    .await?;
    Ok(PgXacts { commits, rollbacks })
}

struct Phase {
    load: Load,
    tasks: usize,
    offered: f64,
    throughput: f64,
    accept: Summary,
    /// The pickup path, segment by segment.
    relay: Summary,
    deliver: Summary,
    dispatch: Summary,
    step_deliver: Summary,
    pickup: Summary,
    run: Summary,
    end_to_end: Summary,
    statuses: BTreeMap<String, usize>,
    cpu: CpuUse,
    pg: PgXacts,
    /// Relay transactions that published something, rows they published, largest batch.
    batches: (i64, i64, i64),
}

impl Phase {
    fn new(
        load: Load,
        s: &Submitted,
        t: &Timings,
        cpu: CpuUse,
        pg: PgXacts,
        batches: (i64, i64, i64),
    ) -> Self {
        let accepted = |t: &TaskTimes| Some(t.created_at);
        Self {
            load,
            tasks: s.tasks.len(),
            offered: s.offered_per_sec(),
            throughput: t.throughput(),
            accept: Summary::of(s.tasks.iter().map(|t| t.1.as_secs_f64() * 1e3).collect()),
            relay: t.span(accepted, |t| t.relayed_at),
            deliver: t.span(|t| t.relayed_at, |t| t.dispatched_at),
            dispatch: t.span(|t| t.dispatched_at, |t| t.step_relayed_at),
            step_deliver: t.span(|t| t.step_relayed_at, |t| t.picked_up_at),
            pickup: t.span(accepted, |t| t.picked_up_at),
            run: t.span(|t| t.picked_up_at, |t| t.finished_at),
            end_to_end: t.span(accepted, |t| t.finished_at),
            statuses: t.statuses(),
            cpu,
            pg,
            batches,
        }
    }

    fn all_succeeded(&self) -> bool {
        self.statuses.get("success") == Some(&self.tasks)
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.tasks as f64;
        writeln!(
            f,
            "{}: {} tasks, offered {:.1}/s, done {:.1} tasks/s",
            self.load.name(),
            self.tasks,
            self.offered,
            self.throughput
        )?;
        writeln!(f, "  statuses: {:?}", self.statuses)?;
        writeln!(f, "  ms p50 / p95 / p99 / max")?;
        writeln!(f, "  POST answered (client)      {}", self.accept)?;
        writeln!(f, "  accepted → relayed          {}", self.relay)?;
        writeln!(f, "  relayed → dispatched        {}", self.deliver)?;
        writeln!(f, "  dispatched → step relayed   {}", self.dispatch)?;
        writeln!(f, "  step relayed → picked up    {}", self.step_deliver)?;
        writeln!(f, "  accepted → picked up        {}", self.pickup)?;
        writeln!(f, "  picked up → finished        {}", self.run)?;
        writeln!(f, "  accepted → finished         {}", self.end_to_end)?;
        writeln!(f, "  CPU: {}", self.cpu)?;
        writeln!(
            f,
            "  CPU ms per task: bench process {:.2}, PostgreSQL {:.2}, RabbitMQ {:.2}",
            self.cpu.own * 1e3 / n,
            self.cpu.postgres * 1e3 / n,
            self.cpu.rabbitmq * 1e3 / n
        )?;
        writeln!(
            f,
            "  PostgreSQL: {:.1} commits and {:.1} rollbacks per task",
            self.pg.commits as f64 / n,
            self.pg.rollbacks as f64 / n
        )?;
        let (batches, rows, largest) = self.batches;
        write!(
            f,
            "  outbox relays: {rows} rows in {batches} publishing transactions \
             ({:.1} rows each on average, {largest} at most)",
            rows as f64 / batches.max(1) as f64
        )
    }
}

struct Report {
    tasks: usize,
    targets: usize,
    concurrency: u16,
    raw_window: usize,
    phases: Vec<Phase>,
    raw: RawResult,
    raw_cpu: CpuUse,
    load_before: String,
    load_after: String,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "\nberth-bench pipeline: {} noop tasks per phase on {} servers, concurrency {}",
            self.tasks, self.targets, self.concurrency
        )?;
        writeln!(
            f,
            "machine: {} cores, load average {} before, {} after\n",
            machine::cores(),
            self.load_before,
            self.load_after
        )?;
        for p in &self.phases {
            writeln!(f, "{p}\n")?;
        }
        writeln!(
            f,
            "raw ceiling: {} persistent {}-byte messages, quorum queue, {} confirms in flight, \
             prefetch {}, ack each: {:.0} msgs/s (publish+confirm alone {:.0} msgs/s)\n  CPU: {}\n",
            self.raw.messages,
            self.raw.body_bytes,
            self.raw_window,
            self.concurrency,
            self.raw.per_sec(),
            self.raw.messages as f64 / self.raw.publish_secs,
            self.raw_cpu
        )?;
        writeln!(
            f,
            "| phase | tasks | offered/s | done/s | pickup p50 / p95 / p99 / max ms | accepted→finished p50 / p95 / p99 / max ms | CPU busy (stalled) |"
        )?;
        writeln!(f, "|---|---:|---:|---:|---|---|---:|")?;
        for p in &self.phases {
            writeln!(
                f,
                "| {} | {} | {:.1} | {:.1} | {} | {} | {:.0}% ({:.0}%) |",
                p.load.name(),
                p.tasks,
                p.offered,
                p.throughput,
                p.pickup,
                p.end_to_end,
                p.cpu.machine_pct,
                p.cpu.cpu_pressure_pct
            )?;
        }
        writeln!(
            f,
            "| raw ceiling (msgs) | {} | | {:.1} | | | {:.0}% ({:.0}%) |",
            self.raw.messages,
            self.raw.per_sec(),
            self.raw_cpu.machine_pct,
            self.raw_cpu.cpu_pressure_pct
        )?;
        let flat = self
            .phases
            .iter()
            .find(|p| matches!(p.load, Load::FlatOut(_)));
        let fixed = self
            .phases
            .iter()
            .filter(|p| matches!(p.load, Load::Fixed(_)));
        if let Some(flat) = flat {
            let ratio = flat.throughput / self.raw.per_sec();
            writeln!(
                f,
                "\nratio flat-out tasks/s ÷ raw msgs/s = {ratio:.3} (aim ≥ {AIM_RATIO}: {}). \
                 A task costs 3 confirmed publishes and 3 acked deliveries (TaskQueued, step \
                 command, step event) plus {:.1} PostgreSQL commits, against 1 and 1 for a raw message.",
                verdict(ratio >= AIM_RATIO),
                flat.pg.commits as f64 / flat.tasks as f64
            )?;
        }
        for p in fixed {
            let within = p.pickup.p99 <= AIM_PICKUP_P99_MS;
            let at_aim_rate = matches!(p.load, Load::Fixed(r) if r == AIM_RATE);
            writeln!(
                f,
                "pickup p99 at {} = {} ms ({}).",
                p.load.name(),
                ms(p.pickup.p99),
                if at_aim_rate {
                    format!(
                        "aim ≤ {AIM_PICKUP_P99_MS} ms at {AIM_RATE}/s: {}",
                        verdict(within)
                    )
                } else {
                    format!("{} {AIM_PICKUP_P99_MS} ms", if within { "≤" } else { ">" })
                }
            )?;
        }
        Ok(())
    }
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}
