//! The state service: Aegir's dispatcher. It consumes queued tasks, step events and dead
//! letters, records them in PostgreSQL, and sends each task's next step through the outbox.

pub mod dispatch;

use berth_broker::{Broker, Delivery, HandlerError};
use berth_contracts::TaskQueued;
use berth_outbox::{Outbox, Relay};
use berth_store::Store;
use berth_store::outbox::OutboxRow;
pub use dispatch::Dispatcher;
use std::future::Future;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

#[derive(Debug, Clone)]
pub struct StateConfig {
    pub database_url: String,
    pub amqp_url: String,
    /// Messages handled at once per queue.
    pub concurrency: u16,
    /// How long steps may wait for a worker (the queues it declares, the steps it publishes).
    pub limits: berth_broker::topology::Limits,
    /// Drill sites are named under it (`BERTH_DRILL_DOMAIN`).
    pub drill_domain: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StateServiceError {
    #[error(transparent)]
    Store(#[from] berth_store::StoreError),
    #[error(transparent)]
    Broker(#[from] berth_broker::BrokerError),
}

/// Runs the dispatcher and an outbox relay until `shutdown`.
pub async fn run(cfg: StateConfig, shutdown: CancellationToken) -> Result<(), StateServiceError> {
    let store = Store::connect(&cfg.database_url, u32::from(cfg.concurrency) * 3 + 4).await?;
    let broker = Broker::new(&cfg.amqp_url).with_limits(cfg.limits);
    let (relay, outbox) = Relay::new(store.clone(), broker.clone());
    let relay = tokio::spawn(relay.run(shutdown.clone()));
    let d = Dispatcher::new(store)
        .with_broker(broker.clone())
        .with_drill_domain(&cfg.drill_domain);
    let tasks = consume_json(&broker, "state.tasks", &cfg, &shutdown, &outbox, &d, {
        let d = d.clone();
        move |m: TaskQueued| {
            let d = d.clone();
            async move { d.on_task_queued(m).await }
        }
    });
    let events = consume_json(&broker, "state.events", &cfg, &shutdown, &outbox, &d, {
        let d = d.clone();
        move |ev| {
            let d = d.clone();
            async move { d.on_step_event(ev).await }
        }
    });
    let dead = consume_dead(&broker, &cfg, &shutdown, &outbox, d.clone());
    tracing::info!("state service running");
    let (a, b, c) = tokio::join!(tasks, events, dead);
    let _ = relay.await;
    a.and(b).and(c)
}

/// A message about one task.
pub trait ForTask {
    fn task_id(&self) -> uuid::Uuid;
}

impl ForTask for TaskQueued {
    fn task_id(&self) -> uuid::Uuid {
        self.task_id
    }
}

impl ForTask for berth_contracts::StepEvent {
    fn task_id(&self) -> uuid::Uuid {
        self.task_id
    }
}

/// The task of a message another version of berth wrote that this one cannot read (a
/// message still in a queue at an upgrade): its task fails, saying what to do, rather than
/// waiting for an answer that will never come (decision 0015).
fn stale_message(m: &Delivery) -> Option<(uuid::Uuid, String)> {
    let version = m.headers.version;
    if version == berth_contracts::MESSAGE_VERSION {
        return None;
    }
    let body: serde_json::Value = serde_json::from_slice(&m.body).ok()?;
    let task_id = body
        .get("task_id")
        .or_else(|| body.get("command").and_then(|c| c.get("task_id")))
        .and_then(|v| v.as_str())
        .and_then(|v| v.parse().ok())?;
    Some((
        task_id,
        format!(
            "a message about this task from berth message version {version} cannot be read by \
             this berth (version {}); the step it was about may or may not have run: retry \
             the task (POST /api/v1/tasks/{task_id}/retry or `berth tasks retry {task_id}`)",
            berth_contracts::MESSAGE_VERSION
        ),
    ))
}

/// Fails the task of a message this berth cannot read, if another version of berth wrote it.
async fn fail_stale(
    dispatcher: &Dispatcher,
    outbox: &Outbox,
    m: &Delivery,
) -> Option<Result<(), HandlerError>> {
    let (task_id, why) = stale_message(m)?;
    tracing::error!(%task_id, version = m.headers.version, "message of another berth version; its task fails");
    Some(match dispatcher.fail_task(task_id, &why).await {
        Ok(written) => {
            outbox.publish(written);
            Ok(())
        }
        Err(e) => Err(HandlerError::Retry(e.to_string())),
    })
}

/// Deliveries of one message that PostgreSQL refuses (its data, not an outage) before its
/// task is failed instead: such a refusal is the message's own and would loop for ever.
pub const POISON_AFTER: u32 = 20;

/// Consumes `queue`, decoding each body as `T`. A body that does not decode is rejected
/// (it would never decode); a database error is retried by requeueing; one where PostgreSQL
/// refuses the data [`POISON_AFTER`] times fails the message's task, saying why, and the
/// message goes.
async fn consume_json<T, F, Fut>(
    broker: &Broker,
    queue: &'static str,
    cfg: &StateConfig,
    shutdown: &CancellationToken,
    outbox: &Outbox,
    dispatcher: &Dispatcher,
    handle: F,
) -> Result<(), StateServiceError>
where
    T: serde::de::DeserializeOwned + ForTask + Send + 'static,
    F: Fn(T) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = Result<Vec<OutboxRow>, dispatch::DispatchError>> + Send + 'static,
{
    let outbox = outbox.clone();
    let dispatcher = dispatcher.clone();
    berth_broker::consume(
        broker,
        queue,
        cfg.concurrency,
        shutdown.clone(),
        move |m: Delivery| {
            let handle = handle.clone();
            let outbox = outbox.clone();
            let dispatcher = dispatcher.clone();
            async move {
                let msg: T = match serde_json::from_slice(&m.body) {
                    Ok(msg) => msg,
                    Err(e) => {
                        if let Some(done) = fail_stale(&dispatcher, &outbox, &m).await {
                            return done;
                        }
                        tracing::error!(queue, error = %e, "undecodable message rejected");
                        return Err(HandlerError::Reject(e.to_string()));
                    }
                };
                let task_id = msg.task_id();
                let span = tracing::info_span!("dispatch", queue);
                if let Some(tp) = &m.headers.traceparent {
                    berth_telemetry::set_parent_from_traceparent(&span, tp);
                }
                let e = match handle(msg).instrument(span).await {
                    Ok(written) => {
                        outbox.publish(written);
                        return Ok(());
                    }
                    Err(e) => e,
                };
                let deliveries = m.delivery_count.unwrap_or(0) + 1;
                if deliveries < POISON_AFTER || !e.is_refusal() {
                    tracing::warn!(queue, error = %e, deliveries, "dispatch failed; message requeued");
                    return Err(HandlerError::Retry(e.to_string()));
                }
                tracing::error!(queue, %task_id, error = %e, deliveries,
                    "dispatch keeps failing on this message; its task fails");
                let written = dispatcher
                    .fail_task(task_id, &format!(
                        "the state service could not record a message about this task after \
                         {deliveries} tries: {e}"
                    ))
                    .await
                    .map_err(|e2| HandlerError::Retry(e2.to_string()))?;
                outbox.publish(written);
                Ok(())
            }
        },
    )
    .await?;
    Ok(())
}

/// `state.dead` holds our own [`DeadLetterMessage`]s, and also raw step commands that the
/// work queue's delivery limit dead-lettered after a worker crashed on them again and again.
async fn consume_dead(
    broker: &Broker,
    cfg: &StateConfig,
    shutdown: &CancellationToken,
    outbox: &Outbox,
    d: Dispatcher,
) -> Result<(), StateServiceError> {
    let outbox = outbox.clone();
    berth_broker::consume(
        broker,
        "state.dead",
        cfg.concurrency,
        shutdown.clone(),
        move |m: Delivery| {
            let d = d.clone();
            let outbox = outbox.clone();
            async move {
                let Some(msg) = berth_broker::dead::decode_dead_letter(&m) else {
                    if let Some(done) = fail_stale(&d, &outbox, &m).await {
                        return done;
                    }
                    tracing::error!("undecodable dead letter dropped");
                    return Err(HandlerError::Reject("undecodable dead letter".into()));
                };
                let written = d
                    .on_dead_letter(msg)
                    .await
                    .map_err(|e| HandlerError::Retry(e.to_string()))?;
                outbox.publish(written);
                Ok(())
            }
        },
    )
    .await?;
    Ok(())
}
