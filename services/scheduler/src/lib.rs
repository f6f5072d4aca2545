//! The scheduler service (`berth serve scheduler`): fires schedules' runs as tasks.
//!
//! Every tick it reads the schedules and the enabled sites, works out which schedule each
//! site follows, and for each open slot of each schedule decides, site by site, with the pure
//! functions of `berth-schedule`: not yet due, fire, skip (the previous run is still going),
//! wait (a server's cap is reached) or missed (the window closed). A firing writes the run's
//! `(schedule, site, slot)` row, the task and its outbox row in one transaction: the unique
//! row is what lets any number of scheduler processes run side by side without firing a slot
//! twice, and a crash between two statements leaves nothing behind. Alerts (missed runs,
//! failures in a row, overdue backups) are rows on the schedule and notices on the broker.
//! It also deletes the sites of cancelled clients once their grace ends.

mod cancellations;
mod fire;

use berth_broker::Broker;
use berth_outbox::{Outbox, Relay};
use berth_store::Store;
use chrono::Utc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub use fire::{TickReport, tick};

#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    pub database_url: String,
    pub amqp_url: String,
    /// How often schedules are looked at (BERTH_SCHEDULER_TICK_MS): the lateness of a run
    /// against its due time is at most about this.
    pub tick: Duration,
    /// Past this many queued tasks (BERTH_MAX_QUEUED_TASKS) runs wait, as the API refuses.
    pub max_queued_tasks: u64,
    /// The cluster key: the scheduler seals what the tasks it queues need, as the API does
    /// (a site's cron key made before keys existed).
    pub secret_key: berth_secrets::SecretKey,
    /// How long the runs of a schedule are kept (beyond the newest few of each site).
    pub run_history: chrono::Duration,
    pub limits: berth_broker::topology::Limits,
}

#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error(transparent)]
    Store(#[from] berth_store::StoreError),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    #[error("a schedule's job: {0}")]
    Job(String),
}

/// The runs of each site and schedule kept whatever their age.
pub const RUNS_KEPT_PER_SITE: i64 = 10;
/// How often old runs are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Runs the scheduler until `shutdown`.
pub async fn run(cfg: SchedulerConfig, shutdown: CancellationToken) -> Result<(), SchedulerError> {
    let store = Store::connect(&cfg.database_url, 4).await?;
    let broker = Broker::new(&cfg.amqp_url).with_limits(cfg.limits);
    let (relay, outbox) = Relay::new(store.clone(), broker);
    let relay_task = tokio::spawn(relay.run(shutdown.clone()));
    tracing::info!(tick_ms = cfg.tick.as_millis() as u64, "scheduler running");
    let mut last_prune = tokio::time::Instant::now();
    loop {
        if let Err(e) = tick(&store, &outbox, &cfg, Utc::now()).await {
            tracing::warn!(error = %e, "scheduler tick failed; trying again on the next one");
        }
        match cancellations::delete_due(&store, Utc::now()).await {
            Ok(rows) => publish(&outbox, rows),
            Err(e) => {
                tracing::warn!(error = %e, "cancelled clients' sites: trying again on the next tick")
            }
        }
        if last_prune.elapsed() >= PRUNE_EVERY {
            last_prune = tokio::time::Instant::now();
            prune(&store, cfg.run_history).await;
        }
        tokio::select! {
            _ = tokio::time::sleep(cfg.tick) => {}
            _ = shutdown.cancelled() => break,
        }
    }
    let _ = relay_task.await;
    Ok(())
}

/// Forgets old runs (keeping each site's newest [`RUNS_KEPT_PER_SITE`]), and old cron tasks
/// (keeping each site's failures and newest [`RUNS_KEPT_PER_SITE`] successes: decision
/// 0016), in batches.
async fn prune(store: &Store, history: chrono::Duration) {
    match store
        .prune_cron_history(RUNS_KEPT_PER_SITE as u32, 5_000)
        .await
    {
        Ok(0) => {}
        Ok(n) => tracing::info!(tasks = n, "old cron tasks pruned"),
        Err(e) => tracing::warn!(error = %e, "could not prune the cron history"),
    }
    let before = Utc::now() - history;
    loop {
        let gone = async {
            let mut conn = store.pool.acquire().await?;
            berth_store::schedules::prune_runs(&mut conn, before, RUNS_KEPT_PER_SITE, 5_000).await
        }
        .await;
        match gone {
            Ok(5_000) => continue,
            Ok(n) => {
                if n > 0 {
                    tracing::info!(runs = n, "old schedule runs pruned");
                }
                break;
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not prune schedule runs");
                break;
            }
        }
    }
}

/// Writes a task on site `uri` and its outbox row in `tx` (the caller's transaction), its
/// trace started by `span`: what a schedule's firing and a cancelled client's delete queue.
async fn queue_site_task(
    tx: &mut sqlx::PgConnection,
    span: &tracing::Span,
    id: uuid::Uuid,
    task_type: berth_hosting::tasks::TaskType,
    uri: &str,
    args: &berth_contracts::task::TaskArgs,
    requested_by: &str,
) -> Result<berth_store::outbox::OutboxRow, SchedulerError> {
    let traceparent = berth_telemetry::traceparent_or_fresh(span);
    let trace_id = berth_telemetry::trace_id_of(&traceparent).unwrap_or_default();
    let (_, message) = berth_store::tasks::queue_task(
        tx,
        berth_store::tasks::NewTaskRow {
            id,
            task_type: task_type.as_str(),
            target: uri,
            target_kind: berth_contracts::TargetKind::Site,
            args: &args.to_stored(),
            trace_id: &trace_id,
            traceparent: &traceparent,
            requested_by,
            retry_of: None,
        },
    )
    .await?;
    Ok(message)
}

/// Publishes after commit (the outbox's fast path; its sweep covers a crash).
fn publish(outbox: &Outbox, rows: Vec<berth_store::outbox::OutboxRow>) {
    if !rows.is_empty() {
        outbox.publish(rows);
    }
}
