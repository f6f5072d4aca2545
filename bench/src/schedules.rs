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
//! The 1,000 nightly backups in a window (issue 13's second figure) are not measured here:
//! see docs/benchmarks.md.

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
use chrono::{DateTime, Utc};
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
        workers: false,
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
                            db_password_sealed, cron_key_sealed, cron_key_given)
         SELECT 'site' || i || '.bench.example.com', $1, $2, 'standard', 'enabled',
                'site' || i, 'site' || i, $3, $3, true
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
    // Run until the last slot's window has closed (and one more tick closes it).
    let now = Utc::now();
    let first_slot = next_boundary(now, period);
    let end = first_slot
        + chrono::Duration::seconds(i64::from(period) * cfg.slots as i64)
        + chrono::Duration::milliseconds(cfg.tick_ms as i64 + 500);
    let cpu0 = CpuSample::now();
    let t0 = Instant::now();
    let (mut fired, mut skipped, mut missed, mut waiting, mut ticks) = (0, 0, 0, 0, 0);
    let mut tick_ms = Vec::new();
    let mut interval = tokio::time::interval(Duration::from_millis(cfg.tick_ms));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while Utc::now() < end {
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
        let per_slot = self.cpu.own / self.slots.len().max(1) as f64;
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
