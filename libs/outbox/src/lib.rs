//! Publishing the outbox: the rows that transactions wrote to `outbox` go to RabbitMQ with
//! publisher confirms, and are marked sent.
//!
//! Two paths, one promise. The fast path: right after its commit, a process hands the rows
//! it wrote to its [`Outbox`], which publishes them at once and marks them sent — no relay
//! transaction and no wake-up on the way of every task. The sweep: every second, each
//! process's [`Relay`] takes rows older than [`SWEEP_MIN_AGE_MS`] that are still unsent
//! (their process died before publishing, or the broker was unreachable) `FOR UPDATE SKIP
//! LOCKED` and publishes them. While the broker is unreachable both back off and the rows
//! wait: an accepted task is delayed, never lost. A row can be published twice (a crash
//! between the confirm and the mark, or a sweep racing a slow fast path); every consumer is
//! idempotent for that.

use berth_broker::{Broker, BrokerError, MessageHeaders, Publisher};
use berth_contracts::exchanges;
use berth_store::Store;
use berth_store::outbox::{self, OutboxRow};
use futures_util::future::join_all;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

/// Rows published per sweep transaction, and at most per fast-path batch.
const BATCH: usize = 256;
/// A row this old and still unsent is the sweep's: its writer did not publish it.
pub const SWEEP_MIN_AGE_MS: i64 = 2_000;
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// Sent rows are kept this long for inspection, then deleted by the sweep.
const KEEP_SENT_SECS: i64 = 3600;
/// Sweeps between two prunes of sent rows.
const PRUNE_EVERY_SWEEPS: u32 = 60;
/// Fast-path batches in flight at once: confirms are awaited concurrently.
const IN_FLIGHT: usize = 16;
/// Confirmed rows are marked sent together, at most this long after their confirm: one
/// UPDATE for many rows instead of a commit per row under load.
const MARK_EVERY: Duration = Duration::from_millis(5);
/// How long a work queue's consumer count is trusted before it is asked again.
const CONSUMERS_FRESH: Duration = Duration::from_secs(2);

/// What this process knows of the work queues it publishes to.
#[derive(Default)]
struct WorkQueues {
    /// Declared by this process, so that a step is never published to a queue that does
    /// not exist yet (it would be unroutable).
    declared: HashSet<String>,
    /// Consumers of a queue (by routing key), and when the broker said so.
    consumers: HashMap<String, (std::time::Instant, u32)>,
}

impl WorkQueues {
    /// After a broker error: declare again, ask again.
    fn forget(&mut self) {
        self.declared.clear();
        self.consumers.clear();
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Store(#[from] berth_store::StoreError),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("broker: {0}")]
    Broker(#[from] BrokerError),
}

/// Hands committed outbox rows to this process's publisher.
#[derive(Clone)]
pub struct Outbox(mpsc::UnboundedSender<Vec<OutboxRow>>);

impl Outbox {
    /// Publishes rows whose transaction has committed. Never blocks; a row that cannot be
    /// published now is left to the sweep.
    pub fn publish(&self, rows: Vec<OutboxRow>) {
        #[cfg(debug_assertions)]
        fault::before_publish(rows.len());
        if !rows.is_empty() {
            let _ = self.0.send(rows);
        }
    }
}

/// Fault injection for the recovery tests, compiled into debug builds only:
/// `BERTH_FAULT=abort-before-publish:N` makes the process abort (SIGABRT, no unwinding, no
/// graceful shutdown: as a crash or a SIGKILL would end it) the Nth time it hands committed
/// rows to its [`Outbox`], after their transaction committed and before any is published:
/// exactly the window the sweep exists for. `tests/tests/e2e/recovery.rs` uses it on the API
/// (a task accepted, never published) and on the state service (a step result recorded,
/// its next step never published).
#[cfg(debug_assertions)]
mod fault {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};

    pub const VAR: &str = "BERTH_FAULT";
    const ABORT_BEFORE_PUBLISH: &str = "abort-before-publish:";

    pub(super) fn before_publish(rows: usize) {
        static AT: OnceLock<Option<u64>> = OnceLock::new();
        static SEEN: AtomicU64 = AtomicU64::new(0);
        let at = AT.get_or_init(|| {
            std::env::var(VAR)
                .ok()?
                .strip_prefix(ABORT_BEFORE_PUBLISH)?
                .parse()
                .ok()
        });
        if rows == 0 {
            return;
        }
        if let Some(at) = *at
            && SEEN.fetch_add(1, Ordering::SeqCst) + 1 == at
        {
            eprintln!(
                "{VAR}: aborting after a commit, before publishing its {rows} outbox row(s) (hand-over {at})"
            );
            std::process::abort();
        }
    }
}

pub struct Relay {
    store: Store,
    broker: Broker,
    rows: mpsc::UnboundedReceiver<Vec<OutboxRow>>,
    publisher: Arc<Mutex<Option<Publisher>>>,
    /// Work queues declared by this process, so that a step is never published to a
    /// `work.<service>.<server>` queue that does not exist yet (it would be unroutable).
    declared: Arc<Mutex<WorkQueues>>,
}

/// Marks confirmed rows sent, in batches, until the senders are gone.
async fn mark_loop(store: Store, mut ids: mpsc::UnboundedReceiver<Vec<i64>>) {
    while let Some(first) = ids.recv().await {
        tokio::time::sleep(MARK_EVERY).await;
        let mut batch = first;
        while let Ok(more) = ids.try_recv() {
            batch.extend(more);
        }
        // A row left unmarked is published again by the sweep: harmless, consumers are
        // idempotent; so a failure here is only logged.
        if let Err(e) = outbox::mark_sent(&store.pool, &batch).await {
            tracing::warn!(error = %e, rows = batch.len(), "could not mark outbox rows sent");
        }
    }
}

impl Relay {
    pub fn new(store: Store, broker: Broker) -> (Self, Outbox) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Self {
                store,
                broker,
                rows: rx,
                publisher: Arc::new(Mutex::new(None)),
                declared: Arc::new(Mutex::new(WorkQueues::default())),
            },
            Outbox(tx),
        )
    }

    /// Runs the fast path and the sweep until `shutdown`; what is left unsent stays in the
    /// table for the next sweep.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let sweep = tokio::spawn(sweep_loop(
            self.store.clone(),
            self.broker.clone(),
            self.publisher.clone(),
            self.declared.clone(),
            shutdown.clone(),
        ));
        let slots = Arc::new(Semaphore::new(IN_FLIGHT));
        let (marks, marks_rx) = mpsc::unbounded_channel();
        let marker = tokio::spawn(mark_loop(self.store.clone(), marks_rx));
        loop {
            let first = tokio::select! {
                r = self.rows.recv() => match r { Some(r) => r, None => break },
                _ = shutdown.cancelled() => break,
            };
            let mut batch = first;
            while batch.len() < BATCH {
                match self.rows.try_recv() {
                    Ok(more) => batch.extend(more),
                    Err(_) => break,
                }
            }
            let Ok(slot) = slots.clone().acquire_owned().await else {
                break;
            };
            let (broker, publisher, declared, marks) = (
                self.broker.clone(),
                self.publisher.clone(),
                self.declared.clone(),
                marks.clone(),
            );
            tokio::spawn(async move {
                let _slot = slot;
                let n = batch.len();
                if let Err(e) = fast_path(&broker, &publisher, &declared, &marks, batch).await {
                    tracing::warn!(error = %e, rows = n,
                        "outbox rows not published now; the sweep will retry them");
                }
            });
        }
        // Let the batches in flight finish, then the marker flush what they confirmed.
        let _ = slots.acquire_many(IN_FLIGHT as u32).await;
        drop(marks);
        let _ = marker.await;
        let _ = sweep.await;
    }
}

async fn current_publisher(
    broker: &Broker,
    slot: &Mutex<Option<Publisher>>,
) -> Result<Publisher, BrokerError> {
    let mut p = slot.lock().await;
    if let Some(p) = p.as_ref() {
        return Ok(p.clone());
    }
    let fresh = broker.publisher().await?;
    *p = Some(fresh.clone());
    Ok(fresh)
}

/// Publishes rows just committed, and hands the confirmed ones to the marker.
async fn fast_path(
    broker: &Broker,
    publisher: &Mutex<Option<Publisher>>,
    declared: &Mutex<WorkQueues>,
    marks: &mpsc::UnboundedSender<Vec<i64>>,
    rows: Vec<OutboxRow>,
) -> Result<(), RelayError> {
    let p = current_publisher(broker, publisher).await?;
    match publish_rows(&p, declared, &rows).await {
        Ok(ids) => {
            let _ = marks.send(ids);
            Ok(())
        }
        Err((ids, e)) => {
            let _ = marks.send(ids);
            publisher.lock().await.take();
            declared.lock().await.forget();
            Err(e.into())
        }
    }
}

/// Publishes `rows` concurrently; the ids confirmed, and the first error if any.
async fn publish_rows(
    p: &Publisher,
    declared: &Mutex<WorkQueues>,
    rows: &[OutboxRow],
) -> Result<Vec<i64>, (Vec<i64>, BrokerError)> {
    let mut expiring = HashMap::new();
    let grace = p.broker().limits().no_worker_grace;
    for r in rows.iter().filter(|r| r.exchange == exchanges::WORK) {
        if let Err(e) = ensure_work_queue(p, declared, &r.routing_key).await {
            return Err((Vec::new(), e));
        }
        if grace.is_some() && !expiring.contains_key(&r.routing_key) {
            let consumers = work_queue_consumers(p, declared, &r.routing_key).await;
            let expiration = berth_broker::topology::step_expiration(consumers, grace);
            if expiration.is_some() {
                tracing::warn!(routing_key = %r.routing_key, grace_ms = grace.map(|g| g.as_millis() as u64),
                    "no worker consumes this work queue; its step fails unless one comes in time");
            }
            expiring.insert(r.routing_key.clone(), expiration);
        }
    }
    let results = join_all(
        rows.iter()
            .map(|r| publish_row(p, r, expiring.get(&r.routing_key).copied().flatten())),
    )
    .await;
    let mut ids = Vec::with_capacity(rows.len());
    let mut first_err = None;
    for (r, res) in rows.iter().zip(results) {
        match res {
            Ok(()) => ids.push(r.id),
            // A stop order no worker process hears: no worker runs the step.
            Err(BrokerError::Unroutable { .. }) if r.exchange == exchanges::CONTROL => {
                ids.push(r.id)
            }
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    match first_err {
        None => Ok(ids),
        Some(e) => Err((ids, e)),
    }
}

async fn ensure_work_queue(
    p: &Publisher,
    declared: &Mutex<WorkQueues>,
    routing_key: &str,
) -> Result<(), BrokerError> {
    if declared.lock().await.declared.contains(routing_key) {
        return Ok(());
    }
    let Some((service, server)) = routing_key.split_once('.') else {
        return Ok(());
    };
    p.declare_work_queue(service, server).await?;
    declared
        .lock()
        .await
        .declared
        .insert(routing_key.to_string());
    Ok(())
}

/// Consumers of the work queue of `routing_key`, asked at most every [`CONSUMERS_FRESH`];
/// `None` when the broker does not say (the step is then published without expiration).
async fn work_queue_consumers(
    p: &Publisher,
    queues: &Mutex<WorkQueues>,
    routing_key: &str,
) -> Option<u32> {
    if let Some((at, n)) = queues.lock().await.consumers.get(routing_key)
        && at.elapsed() < CONSUMERS_FRESH
    {
        return Some(*n);
    }
    let (service, server) = routing_key.split_once('.')?;
    let queue = berth_broker::topology::work_queue(service, server);
    match p.queue_stats(&queue).await {
        Ok(stats) => {
            queues.lock().await.consumers.insert(
                routing_key.to_string(),
                (std::time::Instant::now(), stats.consumers),
            );
            Some(stats.consumers)
        }
        Err(e) => {
            tracing::debug!(%queue, error = %e, "consumers of a work queue not known");
            None
        }
    }
}

/// Publishes one row; a step for a work queue without consumer with `expiration` (see
/// [`berth_broker::topology::step_expiration`]).
async fn publish_row(
    p: &Publisher,
    r: &OutboxRow,
    expiration: Option<Duration>,
) -> Result<(), BrokerError> {
    let body = serde_json::to_vec(&r.payload).expect("json value serialises");
    let headers = MessageHeaders {
        traceparent: Some(r.traceparent.clone()).filter(|t| !t.is_empty()),
        attempt: r.attempt.max(1) as u32,
        task_id: r.task_id.map(|id| id.to_string()),
        ..Default::default()
    };
    match expiration {
        Some(e) => {
            p.publish_expiring(
                &r.exchange,
                &r.routing_key,
                &r.message_id,
                &body,
                headers,
                e,
            )
            .await
        }
        None => {
            p.publish(&r.exchange, &r.routing_key, &r.message_id, &body, headers)
                .await
        }
    }
}

/// Every second, publishes the rows nobody published: written by a process that died, or
/// while the broker was unreachable.
async fn sweep_loop(
    store: Store,
    broker: Broker,
    publisher: Arc<Mutex<Option<Publisher>>>,
    declared: Arc<Mutex<WorkQueues>>,
    shutdown: CancellationToken,
) {
    let mut backoff = SWEEP_EVERY;
    let mut sweeps = 0u32;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.cancelled() => return,
        }
        sweeps = sweeps.wrapping_add(1);
        if sweeps.is_multiple_of(PRUNE_EVERY_SWEEPS) {
            match store.pool.acquire().await {
                Ok(mut conn) => match outbox::prune(&mut conn, KEEP_SENT_SECS).await {
                    Ok(n) if n > 0 => tracing::debug!(rows = n, "pruned sent outbox rows"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "could not prune the outbox"),
                },
                Err(e) => tracing::warn!(error = %e, "could not prune the outbox"),
            }
        }
        match sweep(&store, &broker, &publisher, &declared).await {
            Ok(n) => {
                if n > 0 {
                    tracing::info!(rows = n, "outbox sweep published rows left unsent");
                }
                backoff = SWEEP_EVERY;
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64,
                    "outbox sweep failed; rows wait in the outbox");
                if matches!(e, RelayError::Broker(_)) {
                    publisher.lock().await.take();
                    declared.lock().await.forget();
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn sweep(
    store: &Store,
    broker: &Broker,
    publisher: &Mutex<Option<Publisher>>,
    declared: &Mutex<WorkQueues>,
) -> Result<usize, RelayError> {
    let mut total = 0;
    loop {
        let mut tx = store.pool.begin().await?;
        let rows = outbox::lock_unsent(&mut tx, BATCH as i64, SWEEP_MIN_AGE_MS).await?;
        if rows.is_empty() {
            return Ok(total);
        }
        let p = current_publisher(broker, publisher).await?;
        let (ids, err) = match publish_rows(&p, declared, &rows).await {
            Ok(ids) => (ids, None),
            Err((ids, e)) => (ids, Some(e)),
        };
        outbox::mark_sent(&mut *tx, &ids).await?;
        tx.commit().await?;
        total += ids.len();
        if let Some(e) = err {
            return Err(e.into());
        }
        if rows.len() < BATCH {
            return Ok(total);
        }
    }
}
