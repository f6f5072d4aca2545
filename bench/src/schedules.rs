//! `berth-bench schedules`: what the scheduler costs at 10,000 sites, and the off-site copy.
//!
//! 1. **Cron for 10,000 sites**: a test world's database with one web server, one platform
//!    and N enabled sites as rows (nothing installed: the scheduler's own cost is measured),
//!    a cron schedule firing every `period` seconds with its runs spread over the period, and
//!    `berth_scheduler::tick` called every `tick` ms in real time, in this process, with its
//!    outbox relay publishing to the world's vhost. No state service runs: once a second the
//!    bench marks the queued cron tasks `success` with one UPDATE (standing in for the state
//!    service and the workers, so that the next slot is not skipped). Baseline in the same
//!    run: the same N cron tasks queued with bare `berth_store::tasks::queue_task`, one
//!    transaction each, published by the same relay (what any intake pays).
//! 2. **Off-site upload**: a file of random bytes (a zstd tarball does not compress further)
//!    uploaded to a moto_server on loopback by the backup worker's own
//!    `berth_backup::offsite::upload`, against writing the same bytes to local disk with
//!    fsync, in the same run.
//!
//! 3. **Nightly backups in a window**, compressed: N sites installed for real on the fixture
//!    platform (each given M MB of generated files, as `berth-bench backup` makes them), one
//!    backup task first (the single-site figure), then a backup schedule with one slot, a
//!    window of W seconds and `cap_per_web_server` K, ticked in-process while the world's
//!    state service and backup worker do the backups.

use crate::machine::{self, CpuSample, CpuUse};
use crate::stats::Summary;
use anyhow::{Context, Result, ensure};
use berth_contracts::TargetKind;
use berth_contracts::steps::{BackupSource, TargetSpec, UploadSpec};
use berth_outbox::{Outbox, Relay};
use berth_scheduler::SchedulerConfig;
use berth_secrets::SecretKey;
use berth_store::Store;
use berth_store::schedules::{self as stored, ScheduleValues};
use berth_store::tasks::{self, NewTaskRow};
use berth_tests::{World, WorldOptions};
use chrono::{DateTime, Timelike, Utc};
use serde_json::json;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const MB: f64 = 1_048_576.0;
const SERVER: &str = "server_benchexamplecom";
const PLATFORM: &str = "platform_bench";
const SCHEDULE: &str = "cron";
/// The relations a firing writes to (and the ones pruning empties).
const TABLES: [&str; 5] = [
    "tasks",
    "outbox",
    "schedule_runs",
    "schedule_alerts",
    "sites",
];

pub struct Config {
    pub sites: usize,
    pub slots: usize,
    pub period_secs: u32,
    pub tick_ms: u64,
    pub upload_mb: u64,
    pub dir: PathBuf,
    /// Nightly backups: sites (0: not measured), MB of files each, cap, window.
    pub backup_sites: usize,
    pub backup_mb: u64,
    pub backup_cap: i32,
    pub backup_window_secs: u32,
}

pub async fn run(cfg: Config) -> Result<()> {
    ensure!(
        cfg.sites > 0 && cfg.slots > 0,
        "--sites and --slots must be at least 1"
    );
    ensure!(
        (2..=59).contains(&cfg.period_secs) || cfg.period_secs == 60,
        "--period-secs must be 2–60 (a seconds field)"
    );
    let load_before = machine::loadavg();
    let world = World::start_with(WorldOptions {
        servers: vec![SERVER.into()],
        // The idle workers declare the broker's topology the API's readiness wants; no cron
        // task reaches them (the state service, which would plan their steps, is not run).
        state: false,
        ..WorldOptions::default()
    })
    .await
    .context("start the world (PostgreSQL and RabbitMQ must be running: ops/setup.sh)")?;
    let cron = cron(&world, &cfg).await;
    world.stop().await;
    let cron = cron?;
    println!("{cron}");
    let upload = upload(&cfg).await;
    let _ = std::fs::remove_dir_all(&cfg.dir);
    let upload = upload?;
    println!("{upload}");
    if cfg.backup_sites > 0 {
        println!("{}", nightly(&cfg).await?);
    }
    println!(
        "load average before {load_before}, after {}",
        machine::loadavg()
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Cron for N sites.

struct CronReport {
    sites: usize,
    period: u32,
    tick_ms: u64,
    slots: Vec<SlotFigures>,
    fired: usize,
    skipped: usize,
    missed: usize,
    waiting: usize,
    ticks: usize,
    tick_ms_summary: Summary,
    lateness: Summary,
    cpu: CpuUse,
    wall: f64,
    growth: Growth,
    prune: PruneFigures,
    /// ms: site_homes, recent_runs, sites_with_run, a clear_alert per site.
    parts: [f64; 4],
    /// An idle tick, ms: wall, process CPU, PostgreSQL CPU.
    idle: [f64; 3],
    bare_cpu: CpuUse,
    bare_wall: f64,
    bare_growth: Growth,
}

struct SlotFigures {
    slot: DateTime<Utc>,
    fired: i64,
    lateness: Summary,
}

/// Rows and bytes (tables and their indexes) of [`TABLES`].
#[derive(Debug, Clone, Copy, Default)]
struct Sizes {
    bytes: [i64; TABLES.len()],
    rows: [i64; TABLES.len()],
}

struct Growth {
    firings: usize,
    before: Sizes,
    after: Sizes,
    /// Average `pg_column_size` of a live row written per firing: task, outbox row, run.
    row_data: f64,
}

struct PruneFigures {
    cron_tasks_secs: f64,
    cron_tasks_gone: u64,
    runs_secs: f64,
    runs_gone: u64,
}

async fn sizes(pool: &sqlx::PgPool) -> Result<Sizes> {
    let mut s = Sizes::default();
    for (i, t) in TABLES.iter().enumerate() {
        let (b, n): (i64, i64) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT pg_total_relation_size('{t}'), (SELECT count(*) FROM {t})"
        )))
        .fetch_one(pool)
        .await?;
        s.bytes[i] = b;
        s.rows[i] = n;
    }
    Ok(s)
}

async fn seed(world: &World, n: usize) -> Result<()> {
    let pool = &world.store.pool;
    sqlx::query("INSERT INTO servers (name, host) VALUES ($1, 'bench.example.com')")
        .bind(SERVER)
        .execute(pool)
        .await?;
    sqlx::query(
        "INSERT INTO platforms (name, root, web_server, status) VALUES ($1, '/var/www/bench', $2, 'verified')",
    )
    .bind(PLATFORM)
    .bind(SERVER)
    .execute(pool)
    .await?;
    // Every site already has its cron key (made at install): the steady state.
    let key = SecretKey::from_hex(&world.secret_hex)?;
    sqlx::query(
        "INSERT INTO sites (uri, platform, db_server, profile, status, db_name, db_user,
                            db_password_sealed, cron_key_sealed, cron_key_given, client_id)
         SELECT 'site' || i || '.bench.example.com', $1, $2, 'standard', 'enabled',
                'site' || i, 'site' || i, $3, $3, true,
                (SELECT id FROM clients WHERE name = 'default')
         FROM generate_series(1, $4) i",
    )
    .bind(PLATFORM)
    .bind(SERVER)
    .bind(key.seal(&SecretKey::new_password()))
    .bind(n as i64)
    .execute(pool)
    .await?;
    Ok(())
}

/// Stands in for the state service and the workers: queued cron tasks succeed, once a second.
fn finisher(pool: sqlx::PgPool, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while !stop.is_cancelled() {
            let _ = sqlx::query(
                "UPDATE tasks SET status = 'success', started_at = now(), finished_at = now()
                 WHERE type = 'cron' AND status = 'queued'",
            )
            .execute(&pool)
            .await;
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.cancelled() => {}
            }
        }
    })
}

/// Waits until the relay has sent every outbox row (so that its updates are in the sizes).
async fn outbox_drained(pool: &sqlx::PgPool) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
            .fetch_one(pool)
            .await?;
        if n == 0 {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "{n} outbox rows not sent after 120 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn cron(world: &World, cfg: &Config) -> Result<CronReport> {
    let pool = &world.store.pool;
    eprintln!("seeding {} sites…", cfg.sites);
    seed(world, cfg.sites).await?;
    // The scheduler's own connections, as `berth serve scheduler` makes them (4).
    let store = Store::connect(&world.database_url, 4).await?;
    let broker = berth_broker::Broker::new(&world.amqp_url);
    let (relay, outbox) = Relay::new(store.clone(), broker);
    let stop = CancellationToken::new();
    let relay_task = tokio::spawn(relay.run(stop.clone()));
    let finish_stop = CancellationToken::new();
    let finish = finisher(pool.clone(), finish_stop.clone());

    let result = cron_phases(world, cfg, &store, &outbox).await;
    finish_stop.cancel();
    let _ = finish.await;
    stop.cancel();
    let _ = relay_task.await;
    result
}

async fn cron_phases(
    world: &World,
    cfg: &Config,
    store: &Store,
    outbox: &Outbox,
) -> Result<CronReport> {
    let pool = &world.store.pool;
    let sched_cfg = SchedulerConfig {
        database_url: world.database_url.clone(),
        amqp_url: world.amqp_url.clone(),
        tick: Duration::from_millis(cfg.tick_ms),
        // No limit: nothing consumes the queue here, and the limit's count is its own cost.
        max_queued_tasks: 0,
        secret_key: SecretKey::from_hex(&world.secret_hex)?,
        run_history: chrono::Duration::days(7),
        limits: Default::default(),
    };
    // The schedule starts on the next slot boundary, so the first slot is a whole one.
    let period = cfg.period_secs;
    let expression = if period == 60 {
        "0 * * * * *".to_string()
    } else {
        format!("*/{period} * * * * *")
    };
    {
        let mut conn = pool.acquire().await?;
        stored::insert(
            &mut conn,
            &ScheduleValues {
                name: SCHEDULE.into(),
                kind: "cron".into(),
                scope: "all".into(),
                expression,
                time_zone: "UTC".into(),
                job: json!({"kind": "cron"}),
                window_secs: period as i32,
                // The whole period, but a second for the last ones to start in the window.
                spread_secs: period as i32 - 1,
                cap_per_web_server: 0,
                cap_per_db_server: 0,
                alert_after_failures: 3,
                enabled: true,
            },
        )
        .await?;
    }
    let before = sizes(pool).await?;
    eprintln!(
        "scheduler: {} slots of {} s, a tick every {} ms…",
        cfg.slots, period, cfg.tick_ms
    );
    // Run until every site's run of every slot is recorded (or the last window closed).
    let now = Utc::now();
    let first_slot = next_boundary(now, period);
    let last_closes =
        first_slot + chrono::Duration::seconds(i64::from(period) * cfg.slots as i64 + 2);
    let want = cfg.sites * cfg.slots;
    let cpu0 = CpuSample::now();
    let t0 = Instant::now();
    let (mut fired, mut skipped, mut missed, mut waiting, mut ticks) = (0, 0, 0, 0, 0);
    let mut tick_ms = Vec::new();
    let mut interval = tokio::time::interval(Duration::from_millis(cfg.tick_ms));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while fired + skipped + missed < want && Utc::now() < last_closes {
        interval.tick().await;
        let t = Instant::now();
        let r = berth_scheduler::tick(store, outbox, &sched_cfg, Utc::now()).await?;
        tick_ms.push(t.elapsed().as_secs_f64() * 1e3);
        ticks += 1;
        fired += r.fired;
        skipped += r.skipped;
        missed += r.missed;
        waiting += r.waiting;
    }
    outbox_drained(pool).await?;
    let cpu = CpuSample::now().since(&cpu0);
    let wall = t0.elapsed().as_secs_f64();
    // The finisher's last pass, so that the sizes hold every task's final version.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let after = sizes(pool).await?;

    let (row_data,): (f64,) = sqlx::query_as(
        "SELECT ((SELECT coalesce(sum(pg_column_size(t.*)), 0) FROM tasks t WHERE type = 'cron')
               + (SELECT coalesce(sum(pg_column_size(o.*)), 0) FROM outbox o)
               + (SELECT coalesce(sum(pg_column_size(r.*)), 0) FROM schedule_runs r))::float8
               / greatest((SELECT count(*) FROM schedule_runs WHERE status = 'fired'), 1)",
    )
    .fetch_one(pool)
    .await?;

    let runs: Vec<(DateTime<Utc>, f64)> = sqlx::query_as(
        "SELECT slot, extract(epoch FROM recorded_at - due_at)::float8 * 1000
         FROM schedule_runs WHERE status = 'fired' ORDER BY slot",
    )
    .fetch_all(pool)
    .await?;
    let mut slots: Vec<SlotFigures> = Vec::new();
    for (slot, _) in &runs {
        if slots.last().map(|s| s.slot) != Some(*slot) {
            let of_slot: Vec<f64> = runs
                .iter()
                .filter(|(s, _)| s == slot)
                .map(|(_, l)| *l)
                .collect();
            slots.push(SlotFigures {
                slot: *slot,
                fired: of_slot.len() as i64,
                lateness: Summary::of(of_slot),
            });
        }
    }
    let lateness = Summary::of(runs.iter().map(|(_, l)| *l).collect());

    // Where a tick's time goes: its reads, and the alerts pass (a statement per site).
    let parts = {
        let mut conn = store.pool.acquire().await?;
        let t = Instant::now();
        let homes = stored::site_homes(&mut conn).await?;
        let homes_ms = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        stored::recent_runs(&mut conn, SCHEDULE, 3).await?;
        let recent_ms = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        stored::sites_with_run(&mut conn, SCHEDULE, first_slot).await?;
        let with_run_ms = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        for h in &homes {
            stored::clear_alert(&mut conn, SCHEDULE, Some(&h.uri), "failing").await?;
        }
        let clear_ms = t.elapsed().as_secs_f64() * 1e3;
        [homes_ms, recent_ms, with_run_ms, clear_ms]
    };

    // Ticks with nothing due (the schedule's next slot a year away): the fixed cost that a
    // real hour pays 3,600 times at a 1 s tick, where the compressed one paid it 60 times.
    sqlx::query("UPDATE schedules SET expression = '0 0 0 1 1 *' WHERE name = $1")
        .bind(SCHEDULE)
        .execute(pool)
        .await?;
    let idle_ticks = 10;
    let cpu0 = CpuSample::now();
    let t = Instant::now();
    for _ in 0..idle_ticks {
        berth_scheduler::tick(store, outbox, &sched_cfg, Utc::now()).await?;
    }
    let idle_wall_ms = t.elapsed().as_secs_f64() * 1e3 / f64::from(idle_ticks);
    let idle_cpu = CpuSample::now().since(&cpu0);
    let idle = [
        idle_wall_ms,
        idle_cpu.own * 1e3 / f64::from(idle_ticks),
        idle_cpu.postgres * 1e3 / f64::from(idle_ticks),
    ];

    // Pruning as the scheduler does it every minute: with at most `slots` runs per site,
    // nothing is old enough; this is the cost of looking.
    eprintln!("pruning…");
    let t = Instant::now();
    let cron_tasks_gone = store
        .prune_cron_history(berth_scheduler::RUNS_KEPT_PER_SITE as u32, 5_000)
        .await?;
    let cron_tasks_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let runs_gone = {
        let mut conn = store.pool.acquire().await?;
        stored::prune_runs(
            &mut conn,
            Utc::now() - chrono::Duration::days(7),
            berth_scheduler::RUNS_KEPT_PER_SITE,
            5_000,
        )
        .await?
    };
    let runs_secs = t.elapsed().as_secs_f64();

    // Baseline: the same tasks, queued bare.
    eprintln!("baseline: {} bare queue_task calls…", cfg.sites);
    let homes: Vec<String> = sqlx::query_scalar("SELECT uri FROM sites ORDER BY uri")
        .fetch_all(pool)
        .await?;
    let bare_before = sizes(pool).await?;
    let cpu0 = CpuSample::now();
    let t0 = Instant::now();
    for uri in &homes {
        let mut tx = store.pool.begin().await?;
        let id = Uuid::now_v7();
        let (_, message) = tasks::queue_task(
            &mut tx,
            NewTaskRow {
                id,
                task_type: "cron",
                target: uri,
                target_kind: TargetKind::Site,
                args: &berth_contracts::task::TaskArgs::None.to_stored(),
                trace_id: "",
                traceparent: "",
                requested_by: "bench",
                retry_of: None,
            },
        )
        .await?;
        tx.commit().await?;
        outbox.publish(vec![message]);
    }
    outbox_drained(pool).await?;
    let bare_cpu = CpuSample::now().since(&cpu0);
    let bare_wall = t0.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let bare_after = sizes(pool).await?;

    Ok(CronReport {
        sites: cfg.sites,
        period,
        tick_ms: cfg.tick_ms,
        slots,
        fired,
        skipped,
        missed,
        waiting,
        ticks,
        tick_ms_summary: Summary::of(tick_ms),
        lateness,
        cpu,
        wall,
        growth: Growth {
            firings: fired,
            before,
            after,
            row_data,
        },
        parts,
        idle,
        prune: PruneFigures {
            cron_tasks_secs,
            cron_tasks_gone,
            runs_secs,
            runs_gone,
        },
        bare_cpu,
        bare_wall,
        bare_growth: Growth {
            firings: homes.len(),
            before: bare_before,
            after: bare_after,
            row_data: 0.0,
        },
    })
}

/// The first multiple of `period` seconds (within the minute) after `now`.
fn next_boundary(now: DateTime<Utc>, period: u32) -> DateTime<Utc> {
    let s = now.timestamp();
    let minute = s - s.rem_euclid(60);
    let mut t = minute;
    while t <= s {
        t += i64::from(period);
        if t - minute >= 60 {
            t = minute + 60;
            break;
        }
    }
    DateTime::from_timestamp(t, 0).unwrap_or(now)
}

impl Growth {
    fn bytes(&self) -> i64 {
        self.after.bytes.iter().sum::<i64>() - self.before.bytes.iter().sum::<i64>()
    }
    fn rows(&self) -> i64 {
        self.after.rows.iter().sum::<i64>() - self.before.rows.iter().sum::<i64>()
    }
    fn per_firing(&self, v: i64) -> f64 {
        v as f64 / self.firings.max(1) as f64
    }
}

impl std::fmt::Display for CronReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.fired.max(1) as f64;
        // A slot is a firing per site.
        let per_slot = self.cpu.own / n * self.sites as f64;
        let per_firing_ms = self.cpu.own / n * 1e3;
        let bare_ms = self.bare_cpu.own / self.bare_growth.firings.max(1) as f64 * 1e3;
        writeln!(
            f,
            "\n== cron: {} sites, a slot every {} s spread over {} s, a tick every {} ms ==",
            self.sites,
            self.period,
            self.period - 1,
            self.tick_ms
        )?;
        writeln!(
            f,
            "fired {} / skipped {} / missed {} / waiting {} in {} ticks ({:.0} s)",
            self.fired, self.skipped, self.missed, self.waiting, self.ticks, self.wall
        )?;
        writeln!(
            f,
            "tick duration ms p50/p95/p99/max: {}",
            self.tick_ms_summary
        )?;
        for s in &self.slots {
            writeln!(
                f,
                "  slot {}: {} fired, lateness ms p50/p95/p99/max {}",
                s.slot.format("%H:%M:%S"),
                s.fired,
                s.lateness
            )?;
        }
        writeln!(
            f,
            "a tick's parts, ms: site_homes {:.0}, recent_runs {:.0}, sites_with_run {:.0}, \
             a clear_alert per site {:.0}",
            self.parts[0], self.parts[1], self.parts[2], self.parts[3]
        )?;
        writeln!(
            f,
            "a tick with nothing due: {:.0} ms wall, {:.0} ms process CPU, {:.0} ms PostgreSQL CPU \
             (× 3,600 ticks an hour: {:.0} s and {:.0} s of CPU an hour)",
            self.idle[0],
            self.idle[1],
            self.idle[2],
            self.idle[1] * 3.6,
            self.idle[2] * 3.6
        )?;
        writeln!(
            f,
            "lateness (recorded_at − due_at) ms p50/p95/p99/max: {}",
            self.lateness
        )?;
        writeln!(
            f,
            "CPU s: bench process {:.2} (scheduler + its relay), PostgreSQL {:.2}, RabbitMQ {:.2}, \
             other {:.2}; machine busy {:.0} %",
            self.cpu.own,
            self.cpu.postgres,
            self.cpu.rabbitmq,
            self.cpu.other,
            self.cpu.machine_pct
        )?;
        writeln!(
            f,
            "scheduler CPU: {per_slot:.2} s per slot, {per_firing_ms:.3} ms per firing; \
             PostgreSQL {:.3} ms per firing",
            self.cpu.postgres / n * 1e3
        )?;
        writeln!(
            f,
            "baseline, {} bare queue_task + publish: {:.1} s wall, bench process {:.2} s \
             ({bare_ms:.3} ms per task), PostgreSQL {:.2} s ({:.3} ms per task)",
            self.bare_growth.firings,
            self.bare_wall,
            self.bare_cpu.own,
            self.bare_cpu.postgres,
            self.bare_cpu.postgres / self.bare_growth.firings.max(1) as f64 * 1e3
        )?;
        writeln!(
            f,
            "ratio scheduler/bare per task: process CPU {:.1}×, PostgreSQL CPU {:.1}×",
            per_firing_ms / bare_ms.max(1e-9),
            (self.cpu.postgres / n)
                / (self.bare_cpu.postgres / self.bare_growth.firings as f64).max(1e-12)
        )?;
        let g = &self.growth;
        let b = &self.bare_growth;
        writeln!(f, "PostgreSQL growth (tables + indexes) per firing:")?;
        for (i, t) in TABLES.iter().enumerate() {
            writeln!(
                f,
                "  {t:16} {:>6.2} rows {:>8.0} B   (bare: {:>5.2} rows {:>7.0} B)",
                g.per_firing(g.after.rows[i] - g.before.rows[i]),
                g.per_firing(g.after.bytes[i] - g.before.bytes[i]),
                b.per_firing(b.after.rows[i] - b.before.rows[i]),
                b.per_firing(b.after.bytes[i] - b.before.bytes[i]),
            )?;
        }
        let bytes = g.per_firing(g.bytes());
        writeln!(
            f,
            "  total            {:>6.2} rows {:>8.0} B   (bare: {:>5.2} rows {:>7.0} B); \
             live row data {:.0} B per firing",
            g.per_firing(g.rows()),
            bytes,
            b.per_firing(b.rows()),
            b.per_firing(b.bytes()),
            g.row_data
        )?;
        let day = 24.0 * self.sites as f64;
        writeln!(
            f,
            "unpruned, {} sites hourly ({day:.0} firings a day): {:.0} rows, {:.0} MB a day \
             (scheduler's writes only, before the state service's steps and logs)",
            self.sites,
            g.per_firing(g.rows()) * day,
            bytes * day / MB
        )?;
        writeln!(
            f,
            "pruning at this size: prune_cron_history {:.3} s ({} gone), prune_runs {:.3} s ({} gone)",
            self.prune.cron_tasks_secs,
            self.prune.cron_tasks_gone,
            self.prune.runs_secs,
            self.prune.runs_gone
        )
    }
}

// ---------------------------------------------------------------------------------------
// Off-site upload against local disk.

struct UploadReport {
    mb: f64,
    disk_secs: f64,
    send_secs: f64,
    total_secs: f64,
    cpu_disk: CpuUse,
    cpu_upload: CpuUse,
}

async fn upload(cfg: &Config) -> Result<UploadReport> {
    let dir = cfg.dir.clone();
    let _ = std::fs::remove_dir_all(&dir);
    let backups = dir.join("backups");
    std::fs::create_dir_all(&backups)?;
    let bytes = (cfg.upload_mb << 20) as usize;
    eprintln!("upload: generating {} MB…", cfg.upload_mb);
    let mut data = vec![0u8; bytes];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for chunk in data.chunks_mut(8) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let v = x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
    // Local disk: the same bytes written and fsynced, as the backup's own tarball is.
    let file = backups.join("bench.tar.zst");
    let cpu0 = CpuSample::now();
    let t = Instant::now();
    {
        let mut f = std::fs::File::create(&file)?;
        for chunk in data.chunks(1 << 20) {
            f.write_all(chunk)?;
        }
        f.sync_all()?;
    }
    let disk_secs = t.elapsed().as_secs_f64();
    let cpu_disk = CpuSample::now().since(&cpu0);
    drop(data);

    eprintln!("upload: starting moto_server…");
    let moto = berth_test_servers::moto::Moto::start(&dir.join("moto"), "berth-bench")?;
    let archiver = berth_backup::Archiver::new(&backups, "mariadb-dump", "mariadb");
    let spec = UploadSpec {
        target: TargetSpec {
            name: "bench".into(),
            endpoint: moto.endpoint(),
            bucket: moto.bucket.clone(),
            region: "us-east-1".into(),
            access_key_id: moto.access_key_id.clone(),
        },
        source: BackupSource::File("bench".into()),
        key: "bench/site/bench.tar.zst".into(),
        sha256: None,
    };
    eprintln!("upload: {} MB to moto_server…", cfg.upload_mb);
    let quiet = |_: String| {};
    let cpu0 = CpuSample::now();
    let t = Instant::now();
    let up = berth_backup::offsite::upload(&archiver, &spec, &moto.secret_access_key, &quiet)
        .await
        .map_err(|e| anyhow::anyhow!("upload: {e}"))?;
    let total_secs = t.elapsed().as_secs_f64();
    let cpu_upload = CpuSample::now().since(&cpu0);
    ensure!(
        up.made.size as usize == bytes,
        "uploaded {} bytes",
        up.made.size
    );
    Ok(UploadReport {
        mb: bytes as f64 / MB,
        disk_secs,
        send_secs: up.secs,
        total_secs,
        cpu_disk,
        cpu_upload,
    })
}

impl std::fmt::Display for UploadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let disk = self.mb / self.disk_secs;
        let send = self.mb / self.send_secs;
        let total = self.mb / self.total_secs;
        writeln!(f, "\n== off-site copy of {:.0} MB ==", self.mb)?;
        writeln!(
            f,
            "local disk, write + fsync: {:.2} s, {disk:.0} MB/s (bench CPU {:.2} s)",
            self.disk_secs, self.cpu_disk.own
        )?;
        writeln!(
            f,
            "upload to moto_server (multipart, sha256): {:.2} s, {send:.0} MB/s; with the read-back \
             check {:.2} s, {total:.0} MB/s (bench CPU {:.2} s, other processes {:.2} s)",
            self.send_secs, self.total_secs, self.cpu_upload.own, self.cpu_upload.other
        )?;
        writeln!(
            f,
            "ratio upload/disk: sending {:.2}×, with read-back {:.2}×",
            send / disk,
            total / disk
        )
    }
}

// ---------------------------------------------------------------------------------------
// Nightly backups in a window, compressed.

struct NightlyReport {
    sites: usize,
    cap: i32,
    window: u32,
    site_mb: f64,
    single_secs: f64,
    single_mb: f64,
    fired: i64,
    missed: i64,
    outside_window: i64,
    not_success: i64,
    max_queued_or_running: usize,
    max_running: usize,
    first_to_last: f64,
    total_mb: f64,
    last_start_secs: f64,
    cpu: CpuUse,
}

/// A backup task: site, status, created, started and finished.
type TaskSpan = (String, String, DateTime<Utc>, DateTime<Utc>, DateTime<Utc>);

/// The most intervals open at once.
fn max_overlap(spans: &[(DateTime<Utc>, DateTime<Utc>)]) -> usize {
    let mut edges: Vec<(DateTime<Utc>, i32)> = spans
        .iter()
        .flat_map(|(a, b)| [(*a, 1), (*b, -1)])
        .collect();
    // An end before a start at the same instant: back to back is not at once.
    edges.sort_by_key(|e| (e.0, e.1));
    let (mut open, mut most) = (0i32, 0i32);
    for (_, d) in edges {
        open += d;
        most = most.max(open);
    }
    most as usize
}

async fn nightly(cfg: &Config) -> Result<NightlyReport> {
    eprintln!("nightly: starting a world with the fixture platform…");
    let world = World::with_platform(WorldOptions::web(false)).await;
    let r = nightly_in(&world, cfg).await;
    world.stop().await;
    r
}

async fn nightly_in(world: &World, cfg: &Config) -> Result<NightlyReport> {
    let pool = &world.store.pool;
    let n = cfg.backup_sites;
    let mut uris = Vec::new();
    let mut site_bytes = std::collections::HashMap::new();
    let mut rng = crate::backup::Rng(0x005e_ed0f_be71);
    let words = crate::backup::Words::new(&mut rng);
    for i in 0..n {
        let uri = world.site_uri(&format!("n{i}"));
        eprintln!("nightly: installing {uri} ({}/{n})…", i + 1);
        world.installed_on_platform(&uri).await;
        let (root,): (String,) = sqlx::query_as(
            "SELECT p.root FROM sites s JOIN platforms p ON p.name = s.platform WHERE s.uri = $1",
        )
        .bind(&uri)
        .fetch_one(pool)
        .await?;
        let dir = std::path::Path::new(&root).join("sites").join(&uri);
        crate::backup::make_site(&dir.join("files/bench"), cfg.backup_mb, &mut rng, &words)?;
        site_bytes.insert(uri.clone(), crate::backup::du(&dir));
        uris.push(uri);
    }
    let site_mb = site_bytes.values().sum::<u64>() as f64 / MB / n as f64;

    eprintln!("nightly: one backup alone…");
    let t = world.run_success("backup", &uris[0], json!({})).await;
    let (single_secs,): (f64,) = sqlx::query_as(
        "SELECT extract(epoch FROM finished_at - created_at)::float8 FROM tasks WHERE id = $1",
    )
    .bind(t.id)
    .fetch_one(pool)
    .await?;
    let single_mb = site_bytes[&uris[0]] as f64 / MB;

    // One slot, a few seconds from now; the next is a minute later, after the window.
    let slot = Utc::now() + chrono::Duration::seconds(5);
    let window = cfg.backup_window_secs.min(50);
    {
        let mut conn = pool.acquire().await?;
        stored::insert(
            &mut conn,
            &ScheduleValues {
                name: "nightly".into(),
                kind: "backup".into(),
                scope: "all".into(),
                expression: format!("{} * * * * *", slot.format("%S")),
                time_zone: "UTC".into(),
                job: json!({"kind": "backup"}),
                window_secs: window as i32,
                spread_secs: 0,
                cap_per_web_server: cfg.backup_cap,
                cap_per_db_server: 0,
                alert_after_failures: 3,
                enabled: true,
            },
        )
        .await?;
    }
    let store = Store::connect(&world.database_url, 4).await?;
    let (relay, outbox) = Relay::new(store.clone(), berth_broker::Broker::new(&world.amqp_url));
    let stop = CancellationToken::new();
    let relay_task = tokio::spawn(relay.run(stop.clone()));
    let sched_cfg = SchedulerConfig {
        database_url: world.database_url.clone(),
        amqp_url: world.amqp_url.clone(),
        tick: Duration::from_secs(1),
        max_queued_tasks: 0,
        secret_key: SecretKey::from_hex(&world.secret_hex)?,
        run_history: chrono::Duration::days(7),
        limits: Default::default(),
    };
    eprintln!(
        "nightly: {n} sites, cap {}, window {window} s…",
        cfg.backup_cap
    );
    let cpu0 = CpuSample::now();
    let closes = slot.with_nanosecond(0).unwrap_or(slot)
        + chrono::Duration::seconds(window.into())
        + chrono::Duration::seconds(2);
    let mut recorded = 0;
    let mut interval = tokio::time::interval(Duration::from_secs(1));
    while recorded < n && Utc::now() < closes {
        interval.tick().await;
        let r = berth_scheduler::tick(&store, &outbox, &sched_cfg, Utc::now()).await?;
        recorded += r.fired + r.missed;
    }
    // The backups fired last finish after the loop.
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let (open,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM tasks WHERE requested_by = 'schedule:nightly'
             AND status IN ('queued', 'processing')",
        )
        .fetch_one(pool)
        .await?;
        if open == 0 {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "{open} backups unfinished after 600 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let cpu = CpuSample::now().since(&cpu0);
    stop.cancel();
    let _ = relay_task.await;

    let tasks: Vec<TaskSpan> = sqlx::query_as(
        "SELECT target, status, created_at, started_at, finished_at FROM tasks
         WHERE requested_by = 'schedule:nightly' ORDER BY created_at",
    )
    .fetch_all(pool)
    .await?;
    let runs: Vec<(String, DateTime<Utc>, DateTime<Utc>)> = sqlx::query_as(
        "SELECT status, slot, recorded_at FROM schedule_runs WHERE schedule = 'nightly'",
    )
    .fetch_all(pool)
    .await?;
    let fired = runs.iter().filter(|r| r.0 == "fired").count() as i64;
    let missed = runs.iter().filter(|r| r.0 == "missed").count() as i64;
    let outside_window = runs
        .iter()
        .filter(|r| {
            r.0 == "fired" && (r.2 < r.1 || r.2 > r.1 + chrono::Duration::seconds(window.into()))
        })
        .count() as i64;
    let not_success = tasks.iter().filter(|t| t.1 != "success").count() as i64;
    let queued: Vec<_> = tasks.iter().map(|t| (t.2, t.4)).collect();
    let running: Vec<_> = tasks.iter().map(|t| (t.3, t.4)).collect();
    let first = tasks.iter().map(|t| t.2).min();
    let last = tasks.iter().map(|t| t.4).max();
    let first_to_last = match (first, last) {
        (Some(a), Some(b)) => (b - a).as_seconds_f64(),
        _ => 0.0,
    };
    let last_start_secs = runs
        .iter()
        .filter(|r| r.0 == "fired")
        .map(|r| (r.2 - r.1).as_seconds_f64())
        .fold(0.0, f64::max);
    let total_mb = tasks
        .iter()
        .filter_map(|t| site_bytes.get(&t.0))
        .sum::<u64>() as f64
        / MB;
    Ok(NightlyReport {
        sites: n,
        cap: cfg.backup_cap,
        window,
        site_mb,
        single_secs,
        single_mb,
        fired,
        missed,
        outside_window,
        not_success,
        max_queued_or_running: max_overlap(&queued),
        max_running: max_overlap(&running),
        first_to_last,
        total_mb,
        last_start_secs,
        cpu,
    })
}

impl std::fmt::Display for NightlyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let single = self.single_mb / self.single_secs;
        let overall = self.total_mb / self.first_to_last.max(1e-9);
        writeln!(
            f,
            "\n== nightly backups: {} sites of {:.1} MB, cap {} per web server, window {} s ==",
            self.sites, self.site_mb, self.cap, self.window
        )?;
        writeln!(
            f,
            "one backup alone (task queued → finished): {:.2} s, {single:.1} MB/s",
            self.single_secs
        )?;
        writeln!(
            f,
            "scheduled: fired {} / missed {}; fired outside the window {}; not success {}; \
             last start {:.1} s after the slot",
            self.fired, self.missed, self.outside_window, self.not_success, self.last_start_secs
        )?;
        writeln!(
            f,
            "at once: at most {} queued or running, {} running (cap {})",
            self.max_queued_or_running, self.max_running, self.cap
        )?;
        writeln!(
            f,
            "{:.0} MB in {:.1} s (first queued → last finished): {overall:.1} MB/s, {:.2}× the single backup",
            self.total_mb,
            self.first_to_last,
            overall / single
        )?;
        writeln!(
            f,
            "CPU s: bench process {:.1}, PostgreSQL {:.1}, other {:.1}; machine busy {:.0} %, iowait {:.0} %",
            self.cpu.own,
            self.cpu.postgres,
            self.cpu.other,
            self.cpu.machine_pct,
            self.cpu.iowait_pct
        )
    }
}
