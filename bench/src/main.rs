//! `berth-bench`: benchmarks of berth against the real RabbitMQ and PostgreSQL.
//!
//! `berth-bench pipeline` runs no-op tasks through the whole path (REST API → outbox →
//! RabbitMQ → state service → worker → state service) in a test world, at a fixed offered
//! load and flat out, and compares the flat-out rate with what the broker alone does (the
//! raw ceiling: confirmed publishes and acked consumes on a quorum queue).
//!
//! `berth-bench backup` backs up and restores a generated site (files and database) with
//! the backup worker's functions, against `mysqldump` + `tar czf` and `tar xzf` + `mysql`
//! in the same run.
//!
//! `berth-bench pools` measures a real php-fpm with a pool per site (1,000 by default):
//! idle memory and master CPU, and the time of a pool change, against one pool.
//!
//! `berth-bench sites` installs sites on the fixture platform through the real nginx,
//! php-fpm and MariaDB, from the POST to the first HTTP 200, with 100 and 1,000 vhosts
//! present, and a burst of installs posted at once; against the floor of a hand-made
//! vhost change and site database measured in the same run.
//!
//! `berth-bench reloads` spawns bursts of vhost changes at the http worker's reloader on a
//! real nginx and reports how many reloads each burst needed (a count that depends on the
//! machine's speed, so the tests do not assert it).
//!
//! `berth-bench schedules` runs the scheduler's tick over 10,000 site rows with a cron
//! schedule compressed 60× (CPU, lateness, rows and bytes) against bare `queue_task` calls,
//! uploads a file to moto_server against writing it to disk, and backs up installed sites
//! by a capped backup schedule against one backup alone.
//!
//! `berth-bench tenancy` lists 10,000 sites over 100 clients with a client-bound token
//! against the admin token (all sites, and one client's by `?client=`).
//! `berth-bench webhooks` offers `task.finished` notices at 100/s (through the outbox, as
//! the state service writes them) to the real notices service and measures notice committed
//! → signed POST received by a loopback receiver, with 1 and with 100 endpoints.

mod backlog;
mod backup;
mod machine;
mod pipeline;
mod pools;
mod raw;
mod reloads;
mod schedules;
mod sites;
mod stats;
mod tenancy;
mod webhooks;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(name = "berth-bench", about = "Benchmarks of berth's task pipeline")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// No-op tasks end to end at a fixed rate and flat out, against the raw broker ceiling.
    Pipeline(PipelineArgs),
    /// Site installs end to end (POST → serving) with vhosts present, and a burst.
    Sites(SitesArgs),
    /// Site backup and restore against `mysqldump` + `tar czf` / `tar xzf` + `mysql`.
    Backup(BackupArgs),
    /// php-fpm with a pool per site (ondemand): idle memory and CPU, and a pool change,
    /// against one pool.
    Pools(PoolsArgs),
    /// A queue of 100,000 messages: tasks accepted while the state service is down, then
    /// drained.
    Backlog(BacklogArgs),
    /// Bursts of vhost changes at the reloader on a real nginx: reloads needed per burst.
    Reloads(ReloadsArgs),
    /// The scheduler firing cron for 10,000 sites (CPU, lateness, rows and bytes) against
    /// bare task writes, and an off-site upload against local disk.
    Schedules(SchedulesArgs),
    /// `GET /api/v1/sites` with a client-bound token against the admin token, 10,000 sites
    /// over 100 clients.
    Tenancy(TenancyArgs),
    /// Task finished → signed webhook received, p50/p99, at a fixed rate, with 1 and 100
    /// endpoints.
    Webhooks(WebhooksArgs),
}

#[derive(Args)]
struct TenancyArgs {
    #[arg(long, default_value_t = 10_000)]
    sites: usize,
    #[arg(long, default_value_t = 100)]
    clients: usize,
    /// Requests timed per case.
    #[arg(long, default_value_t = 200)]
    requests: usize,
}

#[derive(Args)]
struct WebhooksArgs {
    /// Task finishes per second.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Seconds finishes are offered for, per endpoint count.
    #[arg(long, default_value_t = 10)]
    secs: u64,
    /// Endpoint counts, one run each (every endpoint receives every finish).
    #[arg(long, value_delimiter = ',', default_values_t = [1, 100])]
    endpoints: Vec<usize>,
    /// The notices service's BERTH_WEBHOOKS_CONCURRENCY.
    #[arg(long, default_value_t = 32)]
    concurrency: u16,
    /// How long to wait for the last deliveries after the offer ends.
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
}

#[derive(Args)]
struct SchedulesArgs {
    /// Enabled sites (rows only: nothing is installed).
    #[arg(long, default_value_t = 10_000)]
    sites: usize,
    /// Slots of the cron schedule run through.
    #[arg(long, default_value_t = 2)]
    slots: usize,
    /// Seconds between slots (an hour compressed to this); runs spread over all but 1 s.
    #[arg(long, default_value_t = 60)]
    period_secs: u32,
    /// The scheduler's tick, ms (BERTH_SCHEDULER_TICK_MS's default is 1000).
    #[arg(long, default_value_t = 1000)]
    tick_ms: u64,
    /// MB uploaded to moto_server and written to local disk.
    #[arg(long, default_value_t = 200)]
    upload_mb: u64,
    /// Where the upload's file and moto_server's log go (removed at the end).
    #[arg(long, default_value = "/var/tmp/berth-bench-schedules")]
    dir: std::path::PathBuf,
    /// Nightly backups: sites installed for real and backed up by a schedule (0: skip).
    #[arg(long, default_value_t = 8)]
    backup_sites: usize,
    /// MB of generated files added to each of those sites.
    #[arg(long, default_value_t = 20)]
    backup_mb: u64,
    /// The backup schedule's cap_per_web_server.
    #[arg(long, default_value_t = 2)]
    backup_cap: i32,
    /// The backup schedule's window, s (at most 50: one slot a minute).
    #[arg(long, default_value_t = 40)]
    backup_window_secs: u32,
    /// Smoke run: 500 sites, two 10 s slots, 20 MB, 3 backups of 5 MB.
    #[arg(long)]
    quick: bool,
}

#[derive(Args)]
struct ReloadsArgs {
    /// Changes spawned at once per round.
    #[arg(long, default_value_t = 30)]
    changes: usize,
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// The reloader's window, ms (the http worker's default is 200).
    #[arg(long, default_value_t = 200)]
    window: u64,
}

#[derive(Args)]
struct PoolsArgs {
    /// Site pools in the big phase (the baseline has one).
    #[arg(long, default_value_t = 1000)]
    pools: usize,
    /// Pool changes timed per phase (the median is reported).
    #[arg(long, default_value_t = 5)]
    changes: usize,
    /// Seconds of quiet over which the master's idle CPU is measured.
    #[arg(long, default_value_t = 10)]
    idle_secs: u64,
}

#[derive(Args)]
struct BacklogArgs {
    /// No-op tasks accepted while the state service is down.
    #[arg(long, default_value_t = 100_000)]
    tasks: usize,
    /// Servers the tasks are spread over (one task per target runs at a time).
    #[arg(long, default_value_t = 50)]
    targets: usize,
    /// Requests in flight while submitting.
    #[arg(long, default_value_t = 32)]
    in_flight: usize,
    /// Concurrency of the state service and the workers.
    #[arg(long, default_value_t = 16)]
    concurrency: u16,
    /// Give up draining after this many seconds.
    #[arg(long, default_value_t = 3600)]
    timeout_secs: u64,
}

#[derive(Args)]
struct BackupArgs {
    /// Where the site, tarballs and restores go (removed first and at the end).
    #[arg(long, default_value = "/var/tmp/berth-bench-backup")]
    dir: std::path::PathBuf,
    /// MB of site files.
    #[arg(long, default_value_t = 200)]
    files_mb: u64,
    /// MB of database rows.
    #[arg(long, default_value_t = 50)]
    db_mb: u64,
    /// Repetitions of each measurement (the median is reported).
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// zstd levels for berth's backup; repeat for a variant per level (the first is the
    /// headline and the tarball restored).
    #[arg(long, default_values_t = [3])]
    zstd_level: Vec<i32>,
    /// zstd worker threads (0: one per core); repeat for a variant per count.
    #[arg(long, default_values_t = [0])]
    zstd_threads: Vec<u32>,
    /// Also measure berth writing gzip -6 (the baseline's format).
    #[arg(long)]
    gzip: bool,
    /// Smoke run: 20 MB of files, 5 MB of database, one repetition.
    #[arg(long)]
    quick: bool,
    /// Keep the generated site and outputs.
    #[arg(long)]
    keep: bool,
}

#[derive(Args)]
struct SitesArgs {
    /// Sequential installs per (reload window, vhosts present).
    #[arg(long, default_value_t = 20)]
    installs: usize,
    /// Smoke run: 5 sequential installs per phase, a burst of 50.
    #[arg(long, conflicts_with_all = ["installs", "burst"])]
    quick: bool,
    /// Filler vhosts present before the sequential installs; repeat for a phase per count.
    #[arg(long, default_values_t = [100, 1000])]
    present: Vec<usize>,
    /// The http worker's reload window in ms; repeat for a world per window.
    #[arg(long, default_values_t = [200, 20])]
    window: Vec<u64>,
    /// Concurrency of the state service and workers for the sequential installs.
    #[arg(long, default_value_t = 8)]
    concurrency: u16,
    /// Installs posted at once in the burst (0: no burst).
    #[arg(long, default_value_t = 200)]
    burst: usize,
    /// Filler vhosts present before the burst.
    #[arg(long, default_value_t = 1000)]
    burst_present: usize,
    /// Concurrency of the burst world's http worker (drush runs stay capped by its
    /// installer slots); repeat for a burst per value.
    #[arg(long, default_values_t = [64, 200])]
    burst_concurrency: Vec<u16>,
    /// The http worker's reload window in the burst, ms.
    #[arg(long, default_value_t = 200)]
    burst_window: u64,
    /// Runs of each floor measurement (the median is used).
    #[arg(long, default_value_t = 5)]
    floor_reps: usize,
    /// Give up on an install (or the burst) after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
}

#[derive(Args)]
struct PipelineArgs {
    /// Tasks per phase (and messages for the raw ceiling).
    #[arg(long, default_value_t = 2000)]
    tasks: usize,
    /// Smoke run: 200 tasks per phase.
    #[arg(long, conflicts_with = "tasks")]
    quick: bool,
    /// Offered load of the fixed-rate phase, in tasks/s; repeat it for a phase per rate.
    #[arg(long, default_values_t = [200.0])]
    rate: Vec<f64>,
    /// Servers the tasks go to, round-robin; one task at a time runs per server.
    #[arg(long, default_value_t = 32)]
    targets: usize,
    /// POSTs in flight in the flat-out phase.
    #[arg(long, default_value_t = 64)]
    in_flight: usize,
    /// Concurrency of the state service and of each worker (berth's default is 8); also
    /// the raw consumer's prefetch.
    #[arg(long, default_value_t = 8)]
    concurrency: u16,
    /// Publisher confirms in flight for the raw ceiling (the outbox relay's batch is 256).
    #[arg(long, default_value_t = 256)]
    raw_window: usize,
    /// Give up on a phase whose tasks have not all finished after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if std::env::var_os("RUST_LOG").is_none() {
        // SAFETY: no other thread exists yet (the runtime is built below). Berth's services
        // log every task at info; at thousands of tasks/s that would drown the report.
        unsafe { std::env::set_var("RUST_LOG", "warn") };
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        // As in production: spans carry trace ids between services (not exported).
        let _telemetry =
            berth_telemetry::init("berth-bench", &berth_telemetry::TelemetryConfig::default())?;
        match cli.command {
            Command::Webhooks(a) => {
                webhooks::run(webhooks::Config {
                    rate: a.rate,
                    secs: a.secs,
                    endpoints: a.endpoints,
                    concurrency: a.concurrency,
                    timeout: std::time::Duration::from_secs(a.timeout_secs),
                })
                .await
            }
            Command::Pipeline(a) => {
                let cfg = pipeline::Config {
                    tasks: if a.quick { 200 } else { a.tasks },
                    rates: a.rate,
                    targets: a.targets,
                    in_flight: a.in_flight,
                    concurrency: a.concurrency,
                    raw_window: a.raw_window,
                    timeout: std::time::Duration::from_secs(a.timeout_secs),
                };
                pipeline::run(cfg).await
            }
            Command::Pools(a) => {
                let cfg = pools::Config {
                    pools: a.pools.max(2),
                    changes: a.changes.max(1),
                    idle: std::time::Duration::from_secs(a.idle_secs.max(1)),
                };
                tokio::task::spawn_blocking(move || pools::run(cfg)).await?
            }
            Command::Sites(a) => {
                let cfg = sites::Config {
                    present: a.present,
                    installs: if a.quick { 5 } else { a.installs },
                    windows: a.window,
                    concurrency: a.concurrency,
                    burst: if a.quick { 50 } else { a.burst },
                    burst_present: a.burst_present,
                    burst_concurrency: a.burst_concurrency,
                    burst_window: a.burst_window,
                    floor_reps: a.floor_reps,
                    timeout: std::time::Duration::from_secs(a.timeout_secs),
                };
                sites::run(cfg).await
            }
            Command::Reloads(a) => {
                reloads::run(reloads::Config {
                    changes: a.changes.max(1),
                    rounds: a.rounds.max(1),
                    window: std::time::Duration::from_millis(a.window),
                })
                .await
            }
            Command::Backlog(a) => {
                backlog::run(backlog::Config {
                    tasks: a.tasks,
                    targets: a.targets,
                    in_flight: a.in_flight,
                    concurrency: a.concurrency,
                    timeout: std::time::Duration::from_secs(a.timeout_secs),
                })
                .await
            }
            Command::Tenancy(a) => {
                tenancy::run(tenancy::Config {
                    sites: a.sites,
                    clients: a.clients.max(1),
                    requests: a.requests.max(1),
                })
                .await
            }
            Command::Schedules(a) => {
                schedules::run(schedules::Config {
                    sites: if a.quick { 500 } else { a.sites },
                    slots: a.slots,
                    period_secs: if a.quick { 10 } else { a.period_secs },
                    tick_ms: a.tick_ms,
                    upload_mb: if a.quick { 20 } else { a.upload_mb },
                    dir: a.dir,
                    backup_sites: if a.quick { 3 } else { a.backup_sites },
                    backup_mb: if a.quick { 5 } else { a.backup_mb },
                    backup_cap: a.backup_cap,
                    backup_window_secs: a.backup_window_secs,
                })
                .await
            }
            Command::Backup(a) => {
                let cfg = backup::Config {
                    dir: a.dir,
                    files_mb: if a.quick { 20 } else { a.files_mb },
                    db_mb: if a.quick { 5 } else { a.db_mb },
                    reps: if a.quick { 1 } else { a.reps.max(1) },
                    levels: a.zstd_level,
                    threads: a.zstd_threads,
                    gzip: a.gzip,
                    keep: a.keep,
                };
                backup::run(cfg).await
            }
        }
    })
}
