//! The outbox relay: publishes the rows that transactions wrote to `outbox`, with publisher
//! confirms, and marks them sent.
//!
//! Rows are taken `FOR UPDATE SKIP LOCKED`, so relays in several processes (the API and the
//! state service each run one) never publish the same row twice in normal operation; a
//! crash between the broker's confirm and the commit can publish a row again, which every
//! consumer tolerates (results are recorded once per step). The relay wakes on a
//! PostgreSQL `NOTIFY` from the enqueueing transaction, on an in-process [`Waker`], and
//! every `poll` as a fallback; while the broker is unreachable it backs off and the rows
//! wait: an accepted task is delayed, never lost.

use berth_broker::{Broker, MessageHeaders, Publisher};
use berth_contracts::exchanges;
use berth_store::Store;
use berth_store::outbox::{self, NOTIFY_CHANNEL, OutboxRow};
use futures_util::future::join_all;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, Notify};
use tokio_util::sync::CancellationToken;

/// Rows published per transaction.
const BATCH: i64 = 256;

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Store(#[from] berth_store::StoreError),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("broker: {0}")]
    Broker(#[from] berth_broker::BrokerError),
}

/// Wakes the relay of this process right after a commit that wrote outbox rows.
#[derive(Clone, Default)]
pub struct Waker(Arc<Notify>);

impl Waker {
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

pub struct Relay {
    store: Store,
    broker: Broker,
    waker: Waker,
    poll: Duration,
    /// Work queues declared by this relay, so that a step is never published to a
    /// `work.<service>.<server>` queue that does not exist yet (it would be unroutable).
    declared: Mutex<HashSet<String>>,
}

impl Relay {
    pub fn new(store: Store, broker: Broker, waker: Waker) -> Self {
        Self {
            store,
            broker,
            waker,
            poll: Duration::from_millis(500),
            declared: Mutex::new(HashSet::new()),
        }
    }

    /// Runs until `shutdown`; what is left unsent stays in the table for the next relay.
    pub async fn run(self, shutdown: CancellationToken) {
        let listener = tokio::spawn(listen(
            self.store.clone(),
            self.waker.clone(),
            shutdown.clone(),
        ));
        let mut publisher: Option<Publisher> = None;
        let mut backoff = Duration::from_millis(100);
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            if publisher.is_none() {
                match self.broker.publisher().await {
                    Ok(p) => publisher = Some(p),
                    Err(e) => {
                        tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64,
                            "outbox relay cannot reach the broker; rows wait in the outbox");
                        sleep_or_cancel(backoff, &shutdown).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        continue;
                    }
                }
            }
            let p = publisher.as_ref().expect("set above");
            match self.drain(p).await {
                Ok(_) => {
                    backoff = Duration::from_millis(100);
                    tokio::select! {
                        _ = self.waker.0.notified() => {}
                        _ = tokio::time::sleep(self.poll) => {}
                        _ = shutdown.cancelled() => break,
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64,
                        "outbox relay failed; will retry");
                    if matches!(e, RelayError::Broker(_)) {
                        publisher = None;
                        self.declared.lock().await.clear();
                    }
                    sleep_or_cancel(backoff, &shutdown).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        listener.abort();
    }

    /// Publishes batches until the table has nothing unsent.
    async fn drain(&self, p: &Publisher) -> Result<usize, RelayError> {
        let mut total = 0;
        loop {
            let n = self.publish_batch(p).await?;
            total += n;
            if n < BATCH as usize {
                return Ok(total);
            }
        }
    }

    async fn publish_batch(&self, p: &Publisher) -> Result<usize, RelayError> {
        let mut tx = self.store.pool.begin().await?;
        let rows = outbox::lock_unsent(&mut tx, BATCH).await?;
        if rows.is_empty() {
            return Ok(0);
        }
        for r in rows.iter().filter(|r| r.exchange == exchanges::WORK) {
            self.ensure_work_queue(p, &r.routing_key).await?;
        }
        let results = join_all(rows.iter().map(|r| publish_row(p, r))).await;
        let sent: Vec<i64> = rows
            .iter()
            .zip(&results)
            .filter(|(_, res)| res.is_ok())
            .map(|(r, _)| r.id)
            .collect();
        outbox::mark_sent(&mut tx, &sent).await?;
        tx.commit().await?;
        if let Some(Err(e)) = results.into_iter().find(|r| r.is_err()) {
            return Err(e.into());
        }
        Ok(sent.len())
    }

    async fn ensure_work_queue(&self, p: &Publisher, routing_key: &str) -> Result<(), RelayError> {
        let mut declared = self.declared.lock().await;
        if declared.contains(routing_key) {
            return Ok(());
        }
        let Some((service, server)) = routing_key.split_once('.') else {
            return Ok(());
        };
        p.declare_work_queue(service, server).await?;
        declared.insert(routing_key.to_string());
        Ok(())
    }
}

async fn publish_row(p: &Publisher, r: &OutboxRow) -> Result<(), berth_broker::BrokerError> {
    let body = serde_json::to_vec(&r.payload).expect("json value serialises");
    p.publish(
        &r.exchange,
        &r.routing_key,
        &r.message_id,
        &body,
        MessageHeaders {
            traceparent: Some(r.traceparent.clone()).filter(|t| !t.is_empty()),
            attempt: r.attempt.max(1) as u32,
            task_id: r.task_id.map(|id| id.to_string()),
            ..Default::default()
        },
    )
    .await
}

/// Turns PostgreSQL notifications from other processes into wake-ups.
async fn listen(store: Store, waker: Waker, shutdown: CancellationToken) {
    loop {
        let attempt = async {
            let mut l = sqlx::postgres::PgListener::connect_with(&store.pool).await?;
            l.listen(NOTIFY_CHANNEL).await?;
            loop {
                l.recv().await?;
                waker.wake();
            }
            #[allow(unreachable_code)]
            Ok::<(), sqlx::Error>(())
        };
        tokio::select! {
            r = attempt => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "outbox listener lost; reconnecting");
                }
            }
            _ = shutdown.cancelled() => return,
        }
        sleep_or_cancel(Duration::from_secs(1), &shutdown).await;
    }
}

async fn sleep_or_cancel(d: Duration, shutdown: &CancellationToken) {
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = shutdown.cancelled() => {}
    }
}
