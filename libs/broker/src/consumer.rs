//! The consume loop: concurrent handlers, manual acks, reconnects, graceful shutdown.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{self, BoxStream, SelectAll};
use futures_util::{FutureExt, StreamExt};
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{Acker, Channel};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::backoff::reconnect_delay;
use crate::connection::Broker;
use crate::error::{BrokerError, short};
use crate::headers::MessageHeaders;
use crate::topology::Topology;

/// Wait before a message a handler asked to retry goes back to its queue, so a failing
/// handler does not spin on it.
pub const DEFAULT_REQUEUE_DELAY: Duration = Duration::from_secs(1);

/// A session that lasted this long resets the reconnect backoff: losing it again is a new
/// incident, not the same outage.
const STABLE_SESSION: Duration = Duration::from_secs(30);

/// A message as handlers see it.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub body: Vec<u8>,
    pub exchange: String,
    pub routing_key: String,
    /// Set by RabbitMQ when the message was delivered before and not acked.
    pub redelivered: bool,
    /// Earlier deliveries of this message that were not acked (quorum queues' header
    /// `x-delivery-count`; absent on a first delivery).
    pub delivery_count: Option<u32>,
    pub message_id: Option<String>,
    pub headers: MessageHeaders,
    /// All headers as received, including ones berth does not type (`x-death`, …).
    pub raw_headers: FieldTable,
}

impl From<&lapin::message::Delivery> for Delivery {
    fn from(d: &lapin::message::Delivery) -> Self {
        let props = &d.properties;
        Self {
            body: d.data.clone(),
            exchange: d.exchange.to_string(),
            routing_key: d.routing_key.to_string(),
            redelivered: d.redelivered,
            delivery_count: props
                .headers()
                .as_ref()
                .and_then(|h| h.inner().get(crate::headers::DELIVERY_COUNT))
                .and_then(crate::headers::as_i64)
                .and_then(|n| u32::try_from(n).ok()),
            message_id: props.message_id().as_ref().map(ShortString::to_string),
            headers: MessageHeaders::from_table(props.headers().as_ref()),
            raw_headers: props.headers().clone().unwrap_or_default(),
        }
    }
}

/// What a handler wants done with a message it could not take.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Put it back in its queue (after a short delay) to be tried again.
    #[error("retry: {0}")]
    Retry(String),
    /// Drop it (or dead-letter it, where the queue has a dead-letter exchange).
    #[error("reject: {0}")]
    Reject(String),
}

/// What [`consume_with`] consumes, and what it declares first on every (re)connection.
#[derive(Debug, Clone)]
pub struct ConsumeOptions {
    pub queues: Vec<String>,
    /// Handlers running at once; also the prefetch of each queue's consumer.
    pub prefetch: u16,
    pub topology: Topology,
    pub requeue_delay: Duration,
}

impl ConsumeOptions {
    pub fn new(queues: Vec<String>, prefetch: u16, topology: Topology) -> Self {
        Self {
            queues,
            prefetch,
            topology,
            requeue_delay: DEFAULT_REQUEUE_DELAY,
        }
    }
}

/// Consumes one of the core queues (`state.tasks`, `state.events`, `state.dead`) until
/// `shutdown` fires; see [`consume_with`].
pub async fn consume<F, Fut>(
    broker: &Broker,
    queue: &str,
    prefetch: u16,
    shutdown: CancellationToken,
    handler: F,
) -> Result<(), BrokerError>
where
    F: Fn(Delivery) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    let opts = ConsumeOptions::new(vec![queue.to_owned()], prefetch, Topology::core());
    consume_with(broker, opts, shutdown, handler).await
}

/// Runs `handler` on every message of `opts.queues` until `shutdown` fires.
///
/// Up to `opts.prefetch` handlers run at once, each in its own task. `Ok` acks the
/// message, [`HandlerError::Retry`] puts it back after `opts.requeue_delay`,
/// [`HandlerError::Reject`] nacks it without requeue; a panicking handler counts as
/// `Retry`. Nothing is acked before its handler is done, so a crash redelivers.
///
/// A lost connection or cancelled consumer is logged and consumption resumes on a new
/// channel (declaring `opts.topology` again) after a backoff. On shutdown the consumers are
/// cancelled, handlers in flight finish and ack, and the function returns `Ok`. It returns
/// an error only when the setup itself is refused (e.g. a queue declared with other
/// arguments, or a missing queue), which retrying would not fix.
pub async fn consume_with<F, Fut>(
    broker: &Broker,
    opts: ConsumeOptions,
    shutdown: CancellationToken,
    handler: F,
) -> Result<(), BrokerError>
where
    F: Fn(Delivery) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    if opts.prefetch == 0 || opts.queues.is_empty() {
        return Err(BrokerError::Config(
            "consume needs at least one queue and a prefetch of at least 1".into(),
        ));
    }
    let queues = opts
        .queues
        .iter()
        .map(|q| short(q))
        .collect::<Result<Vec<_>, _>>()?;
    let ctx = Arc::new(HandlerCtx {
        handler,
        requeue_delay: opts.requeue_delay,
        shutdown: shutdown.clone(),
    });
    let permits = Arc::new(Semaphore::new(opts.prefetch.into()));
    let mut tasks = JoinSet::new();
    let mut losses = 0;
    let mut last_channel = None;

    let result = loop {
        let mut session = match open_session(broker, &opts, &queues, &shutdown).await {
            Ok(s) => s,
            Err(BrokerError::Cancelled) => break Ok(()),
            Err(err) => break Err(err),
        };
        tracing::info!(queues = ?opts.queues, prefetch = opts.prefetch, "consuming");
        let started = Instant::now();
        let ended = run_session(
            &session.channel,
            &mut session.stream,
            &ctx,
            &permits,
            &mut tasks,
            &shutdown,
        )
        .await;
        match ended {
            SessionEnd::Shutdown => {
                for tag in &session.tags {
                    if let Err(err) = session
                        .channel
                        .basic_cancel(tag.clone(), BasicCancelOptions::default())
                        .await
                    {
                        tracing::debug!(%err, "cancelling a consumer at shutdown");
                    }
                }
                last_channel = Some(session.channel);
                break Ok(());
            }
            SessionEnd::Lost(why) => {
                // Handlers still running keep the old channel; their acks fail if it is
                // dead, and RabbitMQ redelivers those messages.
                if started.elapsed() >= STABLE_SESSION {
                    losses = 0;
                }
                let delay = reconnect_delay(losses);
                losses += 1;
                tracing::warn!(queues = ?opts.queues, %why, ?delay, "consumer lost; resuming");
                tokio::select! {
                    _ = shutdown.cancelled() => break Ok(()),
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    };

    while let Some(joined) = tasks.try_join_next() {
        log_join(joined);
    }
    let in_flight = tasks.len();
    if in_flight > 0 {
        tracing::info!(in_flight, "waiting for handlers in flight");
    }
    while let Some(joined) = tasks.join_next().await {
        log_join(joined);
    }
    if let Some(channel) = last_channel
        && channel.status().connected()
    {
        // Closing requeues whatever was prefetched but never handed to a handler.
        let _ = channel.close(200, "OK".into()).await;
    }
    result
}

struct HandlerCtx<F> {
    handler: F,
    requeue_delay: Duration,
    shutdown: CancellationToken,
}

struct Session {
    channel: Channel,
    tags: Vec<ShortString>,
    stream: Deliveries,
}

/// All consumers of a session merged. Each ends with a `None` item, so that one consumer
/// cancelled by the broker (its queue deleted) ends the session instead of silently
/// leaving the others running alone.
type Deliveries = SelectAll<BoxStream<'static, Option<lapin::Result<lapin::message::Delivery>>>>;

enum SessionEnd {
    Shutdown,
    Lost(String),
}

/// A channel with the topology declared, prefetch set and a consumer on every queue.
async fn open_session(
    broker: &Broker,
    opts: &ConsumeOptions,
    queues: &[ShortString],
    shutdown: &CancellationToken,
) -> Result<Session, BrokerError> {
    let mut attempt = 0;
    loop {
        let channel = broker.channel_with_retry(shutdown).await?;
        match setup(&channel, opts, queues, broker.limits()).await {
            Ok((tags, stream)) => {
                return Ok(Session {
                    channel,
                    tags,
                    stream,
                });
            }
            Err(BrokerError::Amqp(err)) if err.is_amqp_soft_error() => {
                // The broker refused the declaration or the consume itself.
                tracing::error!(queues = ?opts.queues, %err, "cannot consume");
                return Err(err.into());
            }
            Err(err) => {
                let delay = reconnect_delay(attempt);
                attempt += 1;
                tracing::warn!(queues = ?opts.queues, %err, ?delay, "consumer setup failed; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return Err(BrokerError::Cancelled),
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

async fn setup(
    channel: &Channel,
    opts: &ConsumeOptions,
    queues: &[ShortString],
    limits: &crate::topology::Limits,
) -> Result<(Vec<ShortString>, Deliveries), BrokerError> {
    opts.topology.declare(channel, limits).await?;
    // Per consumer (quorum queues do not support channel-wide prefetch); the semaphore in
    // the loop bounds the handlers running across all queues to `prefetch`.
    channel
        .basic_qos(opts.prefetch, BasicQosOptions { global: false })
        .await?;
    let mut tags = Vec::with_capacity(queues.len());
    let mut consumers = Vec::with_capacity(queues.len());
    for queue in queues {
        let consumer = channel
            .basic_consume(
                queue.clone(),
                ShortString::default(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        tags.push(consumer.tag());
        consumers.push(
            consumer
                .map(Some)
                .chain(stream::once(async { None }))
                .boxed(),
        );
    }
    Ok((tags, stream::select_all(consumers)))
}

async fn run_session<F, Fut>(
    channel: &Channel,
    stream: &mut Deliveries,
    ctx: &Arc<HandlerCtx<F>>,
    permits: &Arc<Semaphore>,
    tasks: &mut JoinSet<()>,
    shutdown: &CancellationToken,
) -> SessionEnd
where
    F: Fn(Delivery) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    loop {
        while let Some(joined) = tasks.try_join_next() {
            log_join(joined);
        }
        // Take capacity first: deliveries beyond it stay with the broker (prefetch) rather
        // than waiting here.
        let permit = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return SessionEnd::Shutdown,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => return SessionEnd::Shutdown,
            },
        };
        let next = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return SessionEnd::Shutdown,
            next = stream.next() => next,
        };
        let delivery = match next {
            Some(Some(Ok(d))) => d,
            Some(Some(Err(err))) => return SessionEnd::Lost(err.to_string()),
            Some(None) | None => return SessionEnd::Lost("consumer cancelled".into()),
        };
        let ctx = Arc::clone(ctx);
        // Kept by the task: the channel must stay open until the message is acked.
        let channel = channel.clone();
        tasks.spawn(async move {
            handle_one(&*ctx, delivery).await;
            drop(channel);
            drop(permit);
        });
    }
}

async fn handle_one<F, Fut>(ctx: &HandlerCtx<F>, delivery: lapin::message::Delivery)
where
    F: Fn(Delivery) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    let acker = delivery.acker.clone();
    let data = Delivery::from(&delivery);
    let (queue_key, message_id) = (data.routing_key.clone(), data.message_id.clone());
    // Inside an async block so that a panic while building the future is caught too.
    let outcome = AssertUnwindSafe(async { (ctx.handler)(data).await })
        .catch_unwind()
        .await;
    match outcome {
        Ok(Ok(())) => settle(&acker, Settle::Ack).await,
        Ok(Err(HandlerError::Retry(why))) => {
            tracing::warn!(routing_key = %queue_key, ?message_id, %why, "handler asked to retry; requeueing");
            pause(ctx).await;
            settle(&acker, Settle::Requeue).await;
        }
        Ok(Err(HandlerError::Reject(why))) => {
            tracing::error!(routing_key = %queue_key, ?message_id, %why, "handler rejected the message");
            settle(&acker, Settle::Reject).await;
        }
        Err(_) => {
            tracing::error!(routing_key = %queue_key, ?message_id, "handler panicked; requeueing");
            pause(ctx).await;
            settle(&acker, Settle::Requeue).await;
        }
    }
}

/// The requeue delay, cut short by shutdown so that stopping is not held up by it.
async fn pause<F>(ctx: &HandlerCtx<F>) {
    tokio::select! {
        _ = ctx.shutdown.cancelled() => {}
        _ = tokio::time::sleep(ctx.requeue_delay) => {}
    }
}

enum Settle {
    Ack,
    Requeue,
    Reject,
}

async fn settle(acker: &Acker, how: Settle) {
    let done = match how {
        Settle::Ack => acker.ack(BasicAckOptions::default()).await,
        Settle::Requeue => {
            acker
                .nack(BasicNackOptions {
                    requeue: true,
                    multiple: false,
                })
                .await
        }
        Settle::Reject => {
            acker
                .nack(BasicNackOptions {
                    requeue: false,
                    multiple: false,
                })
                .await
        }
    };
    match done {
        Ok(true) => {}
        // The channel is gone: RabbitMQ has already put the message back.
        Ok(false) => {
            tracing::warn!("channel closed before the message was settled; it will be redelivered")
        }
        Err(err) => tracing::warn!(%err, "settling the message failed; it will be redelivered"),
    }
}

fn log_join(joined: Result<(), tokio::task::JoinError>) {
    if let Err(err) = joined {
        tracing::error!(%err, "a handler task failed");
    }
}
