//! `berth-bench`: benchmarks of berth against the real RabbitMQ and PostgreSQL.
//!
//! `berth-bench pipeline` runs no-op tasks through the whole path (REST API → outbox →
//! RabbitMQ → state service → worker → state service) in a test world, at a fixed offered
//! load and flat out, and compares the flat-out rate with what the broker alone does (the
//! raw ceiling: confirmed publishes and acked consumes on a quorum queue).

mod machine;
mod pipeline;
mod raw;
mod stats;

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
        }
    })
}
