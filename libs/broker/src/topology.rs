//! Names and declarations of berth's exchanges and queues.
//!
//! ```text
//! berth.tasks  (direct) --task--------------> state.tasks
//! berth.events (direct) --step--------------> state.events
//! berth.dead   (fanout) ---------------------> state.dead
//! berth.work   (direct) --<service>.<server>-> work.<service>.<server>   (DLX berth.dead)
//! berth.control (fanout) -------------------> one exclusive queue per worker process
//! berth.retry.<d>ms (fanout) ----------------> berth.retry.<d>ms  (TTL, DLX berth.work)
//! berth.notices (topic) --<event type>-------> notices.outbound
//! berth.webhooks (direct) --delivery---------> webhooks.deliveries
//! berth.webhooks.wait.<d>ms (fanout) --------> berth.webhooks.wait.<d>ms (TTL, DLX berth.webhooks)
//! berth.webhooks.after.<s>s (fanout) --------> berth.webhooks.after.<s>s (TTL, expires, DLX berth.webhooks)
//! ```
//!
//! Every exchange is durable and every queue a durable quorum queue. Declaring is
//! idempotent as long as the arguments do not change: RabbitMQ refuses (406) a redeclare
//! with different arguments, so they are all fixed here.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, ExchangeKind};

use crate::error::{BrokerError, short};

pub const TASKS_EXCHANGE: &str = "berth.tasks";
pub const TASKS_QUEUE: &str = "state.tasks";
pub const TASKS_ROUTING_KEY: &str = "task";

pub const EVENTS_EXCHANGE: &str = "berth.events";
pub const EVENTS_QUEUE: &str = "state.events";
pub const EVENTS_ROUTING_KEY: &str = "step";

pub const DEAD_EXCHANGE: &str = "berth.dead";
pub const DEAD_QUEUE: &str = "state.dead";

pub const WORK_EXCHANGE: &str = "berth.work";
pub const NOTICES_EXCHANGE: &str = berth_contracts::exchanges::NOTICES;
/// Where notices wait for their outbound delivery; bounded (the oldest go first when full),
/// so that no consumer yet, or a slow one, never grows it without end nor blocks a task.
pub const NOTICES_QUEUE: &str = "notices.outbound";
pub const NOTICES_QUEUE_MAX: i64 = 100_000;
/// Where `site.installed` notices wait for the welcome mail; bounded as the notices queue
/// (with no relay configured nothing consumes it).
pub const MAIL_QUEUE: &str = "notices.mail";
pub const MAIL_ROUTING_KEY: &str = "site.installed";
/// Wake-ups of webhook deliveries (decision 0021): the notices service consumes them.
pub const WEBHOOKS_EXCHANGE: &str = berth_contracts::exchanges::WEBHOOKS;
pub const WEBHOOKS_QUEUE: &str = "webhooks.deliveries";
pub const WEBHOOKS_ROUTING_KEY: &str = berth_contracts::exchanges::WEBHOOK_KEY;
/// Stop orders for steps of tasks being cancelled; each worker process binds a queue of its
/// own (exclusive), so a message nobody hears is unroutable, and that is no error.
pub const CONTROL_EXCHANGE: &str = berth_contracts::exchanges::CONTROL;
/// Deliveries of one message to work queue consumers before RabbitMQ dead-letters it: a
/// backstop against a message that crashes its worker every time (the worker's own retry
/// tiers handle ordinary failures long before this).
pub const WORK_DELIVERY_LIMIT: i64 = 20;

/// How long a step may wait in its work queue for a worker before RabbitMQ dead-letters it
/// (and the state service fails its task, the dead letter ready to replay): 6 hours unless
/// configured otherwise (`BERTH_STEP_QUEUE_TTL_S`). Without it, a step for a server whose
/// worker never runs would wait for ever.
pub const DEFAULT_WORK_QUEUE_TTL: std::time::Duration = std::time::Duration::from_secs(6 * 3600);

/// How long a step published to a work queue that has no consumer waits for a worker to
/// appear (a worker restarting, one just started, workers reconnecting after a broker
/// restart: their backoff is capped at 6 s) before RabbitMQ dead-letters it and its task
/// fails, saying which worker is missing: 30 s unless configured otherwise
/// (`BERTH_NO_WORKER_GRACE_S`).
pub const DEFAULT_NO_WORKER_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// How long steps may wait for a worker: carried by each [`crate::Broker`] handle (from the
/// process's configuration), not by the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The work queues' message TTL. Every process of a deployment must use the same value:
    /// RabbitMQ refuses to declare a queue again with other arguments.
    pub work_queue_ttl: std::time::Duration,
    /// The expiration of a step published to a work queue without consumer; `None` leaves
    /// such a step to the queue's TTL. A per-message expiration: processes may differ.
    pub no_worker_grace: Option<std::time::Duration>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            work_queue_ttl: DEFAULT_WORK_QUEUE_TTL,
            no_worker_grace: Some(DEFAULT_NO_WORKER_GRACE),
        }
    }
}

impl Limits {
    /// From the configured seconds: a grace of zero turns the fast failure off.
    pub fn from_secs(work_queue_ttl_s: u64, no_worker_grace_s: u64) -> Self {
        Self {
            work_queue_ttl: std::time::Duration::from_secs(work_queue_ttl_s.max(1)),
            no_worker_grace: (no_worker_grace_s > 0)
                .then(|| std::time::Duration::from_secs(no_worker_grace_s)),
        }
    }
}

/// The expiration to publish a step with, given its work queue's consumers (`None`: not
/// known, the broker did not say): the grace when nobody consumes the queue, else none (the
/// queue's own TTL bounds the wait).
pub fn step_expiration(
    consumers: Option<u32>,
    grace: Option<std::time::Duration>,
) -> Option<std::time::Duration> {
    match consumers {
        Some(0) => grace,
        _ => None,
    }
}

/// Retry tiers of a worker unless configured otherwise: 1 s, 5 s, 30 s, 5 min.
pub const DEFAULT_RETRY_DELAYS_MS: [u64; 4] = [1_000, 5_000, 30_000, 300_000];

/// `<service>.<server>`: routing key of a step on [`WORK_EXCHANGE`].
pub fn work_routing_key(service: &str, server: &str) -> String {
    format!("{service}.{server}")
}

/// `work.<service>.<server>`: the queue a worker of `service` on `server` consumes.
pub fn work_queue(service: &str, server: &str) -> String {
    format!("work.{service}.{server}")
}

/// `berth.retry.<d>ms`: name of both the exchange and the queue of a retry tier.
pub fn retry_tier(delay_ms: u64) -> String {
    format!("berth.retry.{delay_ms}ms")
}

/// Queue TTL of a retry tier: above the largest jittered per-message expiration (+20%),
/// so the per-message value decides and the queue TTL only bounds it.
pub fn retry_tier_ttl_ms(delay_ms: u64) -> u64 {
    (delay_ms as f64 * 1.25).round() as u64
}

/// What to declare before consuming: the core topology, retry tiers, work queues.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Topology {
    pub core: bool,
    pub retry_delays_ms: Vec<u64>,
    /// `(service, server)` pairs.
    pub work_queues: Vec<(String, String)>,
}

impl Topology {
    /// The exchanges and queues every berth process relies on.
    pub fn core() -> Self {
        Self {
            core: true,
            ..Self::default()
        }
    }

    pub fn with_retry_tiers(mut self, delays_ms: &[u64]) -> Self {
        self.retry_delays_ms.extend_from_slice(delays_ms);
        self
    }

    pub fn with_work_queue(mut self, service: &str, server: &str) -> Self {
        self.work_queues
            .push((service.to_owned(), server.to_owned()));
        self
    }

    /// Declares it all; work queues with `limits`' message TTL.
    pub async fn declare(&self, channel: &Channel, limits: &Limits) -> Result<(), BrokerError> {
        if self.core {
            declare_core(channel).await?;
        }
        declare_retry_tiers(channel, &self.retry_delays_ms).await?;
        for (service, server) in &self.work_queues {
            declare_work_queue(channel, service, server, limits).await?;
        }
        Ok(())
    }
}

/// Declares the task, event, dead-letter and work exchanges and the state service's queues.
pub async fn declare_core(channel: &Channel) -> Result<(), BrokerError> {
    exchange(channel, TASKS_EXCHANGE, ExchangeKind::Direct).await?;
    exchange(channel, EVENTS_EXCHANGE, ExchangeKind::Direct).await?;
    exchange(channel, DEAD_EXCHANGE, ExchangeKind::Fanout).await?;
    exchange(channel, WORK_EXCHANGE, ExchangeKind::Direct).await?;
    exchange(channel, CONTROL_EXCHANGE, ExchangeKind::Fanout).await?;
    exchange(channel, NOTICES_EXCHANGE, ExchangeKind::Topic).await?;
    queue(channel, TASKS_QUEUE, quorum()).await?;
    bind(channel, TASKS_QUEUE, TASKS_EXCHANGE, TASKS_ROUTING_KEY).await?;
    queue(channel, EVENTS_QUEUE, quorum()).await?;
    bind(channel, EVENTS_QUEUE, EVENTS_EXCHANGE, EVENTS_ROUTING_KEY).await?;
    queue(channel, DEAD_QUEUE, quorum()).await?;
    bind(channel, DEAD_QUEUE, DEAD_EXCHANGE, "").await?;
    let mut bounded = quorum();
    bounded.insert(
        "x-max-length".into(),
        AMQPValue::LongLongInt(NOTICES_QUEUE_MAX),
    );
    bounded.insert("x-overflow".into(), text("drop-head"));
    queue(channel, NOTICES_QUEUE, bounded.clone()).await?;
    bind(channel, NOTICES_QUEUE, NOTICES_EXCHANGE, "#").await?;
    queue(channel, MAIL_QUEUE, bounded).await?;
    bind(channel, MAIL_QUEUE, NOTICES_EXCHANGE, MAIL_ROUTING_KEY).await?;
    exchange(channel, WEBHOOKS_EXCHANGE, ExchangeKind::Direct).await?;
    queue(channel, WEBHOOKS_QUEUE, quorum()).await?;
    bind(
        channel,
        WEBHOOKS_QUEUE,
        WEBHOOKS_EXCHANGE,
        WEBHOOKS_ROUTING_KEY,
    )
    .await?;
    Ok(())
}

/// `berth.webhooks.wait.<d>ms`: name of both the exchange and the queue where a webhook
/// delivery's wake-up waits `d` ms before it returns to [`WEBHOOKS_QUEUE`].
pub fn webhook_wait(delay_ms: u64) -> String {
    format!("berth.webhooks.wait.{delay_ms}ms")
}

/// `berth.webhooks.after.<s>s`: where a wake-up waits out a receiver's `Retry-After` of `s`
/// seconds (named apart from the tiers, whose queues never expire: RabbitMQ refuses a
/// queue declared again with other arguments).
pub fn webhook_after(secs: u64) -> String {
    format!("berth.webhooks.after.{secs}s")
}

/// Declares the wait queue `name` ([`webhook_wait`] or [`webhook_after`]) of `delay_ms`:
/// every message in it waits the same time, so the first in is the first out (no message
/// waits behind a longer one). `expires`: a queue made for a `Retry-After` goes away when
/// unused that long (a tier's stays).
pub async fn declare_webhook_wait(
    channel: &Channel,
    name: &str,
    delay_ms: u64,
    expires: Option<std::time::Duration>,
) -> Result<String, BrokerError> {
    let name = name.to_owned();
    exchange(channel, &name, ExchangeKind::Fanout).await?;
    let mut args = quorum();
    args.insert(
        "x-message-ttl".into(),
        AMQPValue::LongLongInt(delay_ms.max(1) as i64),
    );
    args.insert("x-dead-letter-exchange".into(), text(WEBHOOKS_EXCHANGE));
    args.insert("x-dead-letter-strategy".into(), text("at-least-once"));
    args.insert("x-overflow".into(), text("reject-publish"));
    if let Some(expires) = expires {
        args.insert(
            "x-expires".into(),
            AMQPValue::LongLongInt(expires.as_millis().max(1) as i64),
        );
    }
    queue(channel, &name, args).await?;
    bind(channel, &name, &name, "").await?;
    Ok(name)
}

/// Declares `work.<service>.<server>` bound to [`WORK_EXCHANGE`] (which it declares too);
/// returns the queue name.
pub async fn declare_work_queue(
    channel: &Channel,
    service: &str,
    server: &str,
    limits: &Limits,
) -> Result<String, BrokerError> {
    declare_work_queue_counted(channel, service, server, limits)
        .await
        .map(|(name, _)| name)
}

/// As [`declare_work_queue`], with the queue's ready messages and consumers as the declare
/// reports them: a queue no worker made yet is made (empty), not an error.
pub async fn declare_work_queue_counted(
    channel: &Channel,
    service: &str,
    server: &str,
    limits: &Limits,
) -> Result<(String, crate::QueueStats), BrokerError> {
    exchange(channel, WORK_EXCHANGE, ExchangeKind::Direct).await?;
    exchange(channel, DEAD_EXCHANGE, ExchangeKind::Fanout).await?;
    let name = work_queue(service, server);
    let mut args = quorum();
    args.insert(
        "x-delivery-limit".into(),
        AMQPValue::LongLongInt(WORK_DELIVERY_LIMIT),
    );
    args.insert(
        "x-message-ttl".into(),
        AMQPValue::LongLongInt(limits.work_queue_ttl.as_millis().max(1) as i64),
    );
    args.insert("x-dead-letter-exchange".into(), text(DEAD_EXCHANGE));
    let declared = channel
        .queue_declare(short(&name)?, QueueDeclareOptions::durable(), args)
        .await?;
    bind(
        channel,
        &name,
        WORK_EXCHANGE,
        &work_routing_key(service, server),
    )
    .await?;
    let stats = crate::QueueStats {
        messages: declared.message_count(),
        consumers: declared.consumer_count(),
    };
    Ok((name, stats))
}

/// Declares one retry tier per delay: a fanout exchange and a TTL queue of the same name
/// that dead-letters expired messages back to [`WORK_EXCHANGE`]. No dead-letter routing key
/// is set, so a message returns with the routing key it was published to the tier with.
pub async fn declare_retry_tiers(channel: &Channel, delays_ms: &[u64]) -> Result<(), BrokerError> {
    if delays_ms.is_empty() {
        return Ok(());
    }
    exchange(channel, WORK_EXCHANGE, ExchangeKind::Direct).await?;
    for &delay in delays_ms {
        let name = retry_tier(delay);
        exchange(channel, &name, ExchangeKind::Fanout).await?;
        let mut args = quorum();
        args.insert(
            "x-message-ttl".into(),
            AMQPValue::LongLongInt(retry_tier_ttl_ms(delay) as i64),
        );
        args.insert("x-dead-letter-exchange".into(), text(WORK_EXCHANGE));
        // At-least-once dead-lettering (quorum queues only) keeps a message in the tier
        // until berth.work has confirmed it; it requires reject-publish overflow.
        args.insert("x-dead-letter-strategy".into(), text("at-least-once"));
        args.insert("x-overflow".into(), text("reject-publish"));
        queue(channel, &name, args).await?;
        bind(channel, &name, &name, "").await?;
    }
    Ok(())
}

fn quorum() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), text("quorum"));
    args
}

fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

async fn exchange(channel: &Channel, name: &str, kind: ExchangeKind) -> Result<(), BrokerError> {
    channel
        .exchange_declare(
            short(name)?,
            kind,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    Ok(())
}

async fn queue(channel: &Channel, name: &str, args: FieldTable) -> Result<(), BrokerError> {
    channel
        .queue_declare(short(name)?, QueueDeclareOptions::durable(), args)
        .await?;
    Ok(())
}

async fn bind(
    channel: &Channel,
    queue: &str,
    exchange: &str,
    key: &str,
) -> Result<(), BrokerError> {
    channel
        .queue_bind(
            short(queue)?,
            short(exchange)?,
            short(key)?,
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            work_routing_key("http", "server_master"),
            "http.server_master"
        );
        assert_eq!(
            work_queue("http", "server_master"),
            "work.http.server_master"
        );
        assert_eq!(retry_tier(5000), "berth.retry.5000ms");
        assert_eq!(retry_tier_ttl_ms(1000), 1250);
        assert_eq!(retry_tier_ttl_ms(100), 125);
        assert_eq!(retry_tier_ttl_ms(3), 4);
        assert_eq!(webhook_wait(300), "berth.webhooks.wait.300ms");
        assert_eq!(webhook_after(2), "berth.webhooks.after.2s");
    }

    #[test]
    fn only_a_step_for_a_queue_without_consumer_expires_early() {
        let grace = Some(std::time::Duration::from_secs(10));
        assert_eq!(step_expiration(Some(0), grace), grace);
        assert_eq!(step_expiration(Some(1), grace), None);
        assert_eq!(step_expiration(None, grace), None);
        assert_eq!(step_expiration(Some(0), None), None);
    }
}
