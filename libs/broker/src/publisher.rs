//! Confirmed publishing.

use std::sync::Arc;
use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Confirmation, PublisherConfirm};
use serde::Serialize;
use tokio::sync::Mutex;

use crate::connection::{Broker, QueueStats};
use crate::error::{BrokerError, short};
use crate::headers::MessageHeaders;
use crate::topology::Topology;

/// How long a publish may wait for the broker's confirm by default.
pub const DEFAULT_CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);

/// Publishes persistent JSON messages and waits for the broker to confirm each one.
///
/// Clone it freely: clones share one confirm-mode channel. Publishes from many tasks are
/// in flight together on it: the channel is locked only while a message is handed to
/// lapin (which numbers it for confirms, so numbering and sending must not interleave),
/// not while its confirm is awaited.
#[derive(Clone)]
pub struct Publisher {
    broker: Broker,
    slot: Arc<Mutex<Slot>>,
    confirm_timeout: Duration,
}

#[derive(Default)]
struct Slot {
    /// Bumped for each channel opened, so a publish that saw channel N failing does not
    /// throw away channel N+1 another publish already opened.
    generation: u64,
    channel: Option<Channel>,
}

/// One message to publish.
struct Outgoing<'a> {
    exchange: &'a str,
    routing_key: &'a str,
    message_id: &'a str,
    body: &'a [u8],
    headers: &'a MessageHeaders,
    expiration: Option<Duration>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("broker", &self.broker)
            .field("confirm_timeout", &self.confirm_timeout)
            .finish()
    }
}

impl Publisher {
    /// A publisher on `broker`; its channel is opened on first use.
    pub fn new(broker: Broker) -> Self {
        Self {
            broker,
            slot: Arc::new(Mutex::new(Slot::default())),
            confirm_timeout: DEFAULT_CONFIRM_TIMEOUT,
        }
    }

    pub fn with_confirm_timeout(mut self, timeout: Duration) -> Self {
        self.confirm_timeout = timeout;
        self
    }

    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// Publishes `body` (JSON) persistently with `mandatory` set and waits for the
    /// confirm. Fails on a nack, on an unroutable message, or when no confirm comes within
    /// the timeout; a broken channel or connection is re-established once before failing.
    pub async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        message_id: &str,
        body: &[u8],
        headers: MessageHeaders,
    ) -> Result<(), BrokerError> {
        self.publish_message(Outgoing {
            exchange,
            routing_key,
            message_id,
            body,
            headers: &headers,
            expiration: None,
        })
        .await
    }

    /// As [`Publisher::publish`], with a per-message TTL (`expiration`): used to park a
    /// message in a retry tier for a jittered time.
    pub async fn publish_expiring(
        &self,
        exchange: &str,
        routing_key: &str,
        message_id: &str,
        body: &[u8],
        headers: MessageHeaders,
        expiration: Duration,
    ) -> Result<(), BrokerError> {
        self.publish_message(Outgoing {
            exchange,
            routing_key,
            message_id,
            body,
            headers: &headers,
            expiration: Some(expiration),
        })
        .await
    }

    /// Serialises `value` to JSON and [`publish`](Publisher::publish)es it.
    pub async fn publish_json<T: Serialize + ?Sized>(
        &self,
        exchange: &str,
        routing_key: &str,
        message_id: &str,
        value: &T,
        headers: MessageHeaders,
    ) -> Result<(), BrokerError> {
        let body = serde_json::to_vec(value)?;
        self.publish(exchange, routing_key, message_id, &body, headers)
            .await
    }

    /// Ready messages in `queue` (passive declare).
    pub async fn queue_depth(&self, queue: &str) -> Result<u32, BrokerError> {
        self.broker.queue_depth(queue).await
    }

    /// Ready messages and consumers of `queue` (passive declare).
    pub async fn queue_stats(&self, queue: &str) -> Result<QueueStats, BrokerError> {
        self.broker.queue_stats(queue).await
    }

    async fn publish_message(&self, msg: Outgoing<'_>) -> Result<(), BrokerError> {
        match self.publish_once(&msg).await {
            // Any AMQP error: a channel closed by the broker fails every confirm pending on
            // it, including those of innocent publishes that will pass on a new channel.
            Err(err @ (BrokerError::Amqp(_) | BrokerError::ConnectTimeout(_))) => {
                tracing::warn!(exchange = msg.exchange, routing_key = msg.routing_key, %err,
                    "publish failed on a broken channel; retrying on a new one");
                self.publish_once(&msg).await
            }
            other => other,
        }
    }

    async fn publish_once(&self, msg: &Outgoing<'_>) -> Result<(), BrokerError> {
        let timeout = self.confirm_timeout;
        let confirmation = tokio::time::timeout(timeout, async {
            let (generation, confirm) = self.send(msg).await?;
            confirm.await.map_err(|err| (generation, err.into()))
        })
        .await
        .map_err(|_| BrokerError::ConfirmTimeout(timeout))?;

        let confirmation = match confirmation {
            Ok(c) => c,
            Err((generation, err)) => {
                self.forget_channel(generation).await;
                return Err(err);
            }
        };
        match confirmation {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(returned)) => Err(BrokerError::Unroutable {
                exchange: msg.exchange.to_owned(),
                routing_key: msg.routing_key.to_owned(),
                reply: format!("{} {}", returned.reply_code, returned.reply_text),
            }),
            Confirmation::Nack(_) => Err(BrokerError::Nacked {
                exchange: msg.exchange.to_owned(),
                routing_key: msg.routing_key.to_owned(),
            }),
            // Only without confirm_select, which the channel always has.
            Confirmation::NotRequested => Ok(()),
        }
    }

    /// Hands the message to lapin under the channel lock; returns the pending confirm.
    async fn send(
        &self,
        msg: &Outgoing<'_>,
    ) -> Result<(u64, PublisherConfirm), (u64, BrokerError)> {
        let mut props = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(2)
            .with_message_id(short(msg.message_id).map_err(|e| (0, e))?)
            .with_headers(msg.headers.to_table());
        if let Some(ttl) = msg.expiration {
            props = props.with_expiration(ttl.as_millis().to_string().into());
        }
        let exchange = short(msg.exchange).map_err(|e| (0, e))?;
        let routing_key = short(msg.routing_key).map_err(|e| (0, e))?;

        let mut slot = self.slot.lock().await;
        let channel = match &slot.channel {
            Some(c) if c.status().connected() => c.clone(),
            _ => {
                slot.channel = None;
                let c = self.open_channel().await.map_err(|e| (0, e))?;
                slot.generation += 1;
                slot.channel = Some(c.clone());
                c
            }
        };
        let generation = slot.generation;
        let sent = channel
            .basic_publish(
                exchange,
                routing_key,
                BasicPublishOptions {
                    mandatory: true,
                    immediate: false,
                },
                msg.body,
                props,
            )
            .await;
        drop(slot);
        match sent {
            Ok(confirm) => Ok((generation, confirm)),
            Err(err) => {
                self.forget_channel(generation).await;
                Err((generation, err.into()))
            }
        }
    }

    /// Opens the confirm channel now if there is none: checks that the broker is reachable.
    pub async fn ready(&self) -> Result<(), BrokerError> {
        let mut slot = self.slot.lock().await;
        if !slot
            .channel
            .as_ref()
            .is_some_and(|c| c.status().connected())
        {
            slot.channel = Some(self.open_channel().await?);
            slot.generation += 1;
        }
        Ok(())
    }

    /// Declares `work.<service>.<server>` (and its exchanges), so that a step published
    /// before any worker of that server started is queued rather than unroutable.
    pub async fn declare_work_queue(&self, service: &str, server: &str) -> Result<(), BrokerError> {
        self.broker
            .declare(&Topology::default().with_work_queue(service, server))
            .await
    }

    async fn open_channel(&self) -> Result<Channel, BrokerError> {
        let channel = self.broker.channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(channel)
    }

    /// Drops channel `generation` if it is still the current one and no longer usable.
    async fn forget_channel(&self, generation: u64) {
        let mut slot = self.slot.lock().await;
        if slot.generation == generation
            && slot
                .channel
                .as_ref()
                .is_some_and(|c| !c.status().connected())
        {
            slot.channel = None;
        }
    }
}
