//! One AMQP connection per process, re-established when it is lost.

use std::sync::Arc;
use std::time::Duration;

use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::uri::AMQPUri;
use lapin::{Channel, Connection, ConnectionProperties};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::backoff::reconnect_delay;
use crate::error::{BrokerError, short};
use crate::publisher::Publisher;
use crate::topology::{Limits, Topology};

/// How long one TCP + AMQP handshake may take before it counts as a failed attempt.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A handle on the broker: cheap to clone, shared by publishers and consumers.
///
/// It holds one connection and hands out channels on it. When the connection is found
/// dead (by [`Broker::channel`]), a new one is made; channels of the old one are dead and
/// their users open new ones through this handle.
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
    /// How long steps may wait for a worker, as this handle's user configured it.
    limits: Limits,
}

struct Inner {
    /// Parsed once; a malformed URL given to [`Broker::new`] fails every use.
    uri: Result<AMQPUri, String>,
    /// `host:port/vhost`: what logs say; the URL itself holds a password.
    endpoint: String,
    conn: Mutex<Option<Connection>>,
}

/// Depth of a queue as a passive declare reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueStats {
    /// Messages ready for delivery (not counting those delivered and not yet acked).
    pub messages: u32,
    pub consumers: u32,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("endpoint", &self.inner.endpoint)
            .finish()
    }
}

impl Broker {
    /// A broker handle that connects on first use: for processes that must start (and
    /// answer) while the broker is down. A malformed URL is reported by every use.
    pub fn new(url: &str) -> Self {
        let uri: Result<AMQPUri, String> = url.parse();
        let endpoint = match &uri {
            Ok(u) => format!("{}:{}/{}", u.authority.host, u.authority.port, u.vhost),
            Err(_) => "<invalid AMQP URL>".to_owned(),
        };
        Self {
            inner: Arc::new(Inner {
                uri,
                endpoint,
                conn: Mutex::new(None),
            }),
            limits: Limits::default(),
        }
    }

    /// The same connection, with these limits for what it declares and publishes.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Connects to `url`, retrying with capped backoff until it works or `shutdown` fires
    /// (then [`BrokerError::Cancelled`]). Only a malformed URL fails at once.
    pub async fn connect(url: &str, shutdown: &CancellationToken) -> Result<Self, BrokerError> {
        let broker = Self::new(url);
        broker.uri()?;
        let mut attempt = 0;
        loop {
            match broker.connection().await {
                Ok(()) => return Ok(broker),
                Err(err) => {
                    let delay = reconnect_delay(attempt);
                    tracing::warn!(endpoint = %broker.inner.endpoint, %err, ?delay,
                        "cannot connect to the broker; retrying");
                    attempt += 1;
                    tokio::select! {
                        _ = shutdown.cancelled() => return Err(BrokerError::Cancelled),
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    /// `host:port/vhost` of the broker, without credentials.
    pub fn endpoint(&self) -> &str {
        &self.inner.endpoint
    }

    fn uri(&self) -> Result<&AMQPUri, BrokerError> {
        self.inner
            .uri
            .as_ref()
            .map_err(|e| BrokerError::InvalidUrl(e.clone()))
    }

    /// Makes sure there is a live connection (one attempt).
    async fn connection(&self) -> Result<(), BrokerError> {
        let mut slot = self.inner.conn.lock().await;
        self.live(&mut slot).await.map(|_| ())
    }

    /// A new channel. If there is no live connection, makes one attempt to establish it.
    pub async fn channel(&self) -> Result<Channel, BrokerError> {
        let mut slot = self.inner.conn.lock().await;
        let conn = self.live(&mut slot).await?;
        Ok(conn.create_channel().await?)
    }

    /// The connection in `slot`, replaced by a new one if it is missing or dead. Callers
    /// hold the lock, so one task reconnects while the others wait for its connection.
    async fn live<'a>(
        &self,
        slot: &'a mut Option<Connection>,
    ) -> Result<&'a Connection, BrokerError> {
        let uri = self.uri()?;
        let conn = match slot.take() {
            Some(conn) if conn.status().connected() => conn,
            previous => {
                if let Some(old) = previous {
                    tracing::warn!(endpoint = %self.inner.endpoint, state = ?old.status(),
                        "broker connection lost; reconnecting");
                }
                let conn = open(uri).await?;
                tracing::info!(endpoint = %self.inner.endpoint, "connected to the broker");
                conn
            }
        };
        Ok(slot.insert(conn))
    }

    /// A new channel, retrying [`Broker::channel`] with capped backoff until it works or
    /// `shutdown` fires (then [`BrokerError::Cancelled`]).
    pub async fn channel_with_retry(
        &self,
        shutdown: &CancellationToken,
    ) -> Result<Channel, BrokerError> {
        let mut attempt = 0;
        loop {
            if shutdown.is_cancelled() {
                return Err(BrokerError::Cancelled);
            }
            match self.channel().await {
                Ok(channel) => return Ok(channel),
                Err(err @ BrokerError::InvalidUrl(_)) => return Err(err),
                Err(err) => {
                    let delay = reconnect_delay(attempt);
                    tracing::warn!(endpoint = %self.inner.endpoint, %err, ?delay, "no broker channel; retrying");
                    attempt += 1;
                    tokio::select! {
                        _ = shutdown.cancelled() => return Err(BrokerError::Cancelled),
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    /// A [`Publisher`] whose confirm channel is already open, so that an unreachable broker
    /// shows up here rather than at the first publish.
    pub async fn publisher(&self) -> Result<Publisher, BrokerError> {
        let publisher = Publisher::new(self.clone());
        publisher.ready().await?;
        Ok(publisher)
    }

    /// Declares `topology` (idempotent) on a throwaway channel.
    pub async fn declare(&self, topology: &Topology) -> Result<(), BrokerError> {
        let channel = self.channel().await?;
        let declared = topology.declare(&channel, &self.limits).await;
        if channel.status().connected() {
            let _ = channel.close(200, "OK".into()).await;
        }
        declared
    }

    /// Ready messages and consumers of `queue`, from a passive declare on a throwaway
    /// channel (a missing queue closes the channel it is asked on).
    pub async fn queue_stats(&self, queue: &str) -> Result<QueueStats, BrokerError> {
        let name = short(queue)?;
        let channel = self.channel().await?;
        let declared = channel
            .queue_declare(
                name,
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await;
        if channel.status().connected() {
            let _ = channel.close(200, "OK".into()).await;
        }
        let q = declared?;
        Ok(QueueStats {
            messages: q.message_count(),
            consumers: q.consumer_count(),
        })
    }

    /// Deletes `queue` with the messages in it; a queue that does not exist is no error.
    /// Returns the messages it held.
    pub async fn delete_queue(&self, queue: &str) -> Result<u32, BrokerError> {
        let name = short(queue)?;
        let channel = self.channel().await?;
        let deleted = channel
            .queue_delete(name, QueueDeleteOptions::default())
            .await;
        if channel.status().connected() {
            let _ = channel.close(200, "OK".into()).await;
        }
        Ok(deleted?)
    }

    /// Ready messages and consumers of `work.<service>.<server>`, declaring it (as every
    /// worker and publisher does) if it does not exist yet: a server no worker has served
    /// yet has empty queues, not missing ones (a passive declare of a missing queue closes
    /// its channel, which lapin logs as an error).
    pub async fn work_queue_stats(
        &self,
        service: &str,
        server: &str,
    ) -> Result<QueueStats, BrokerError> {
        let channel = self.channel().await?;
        let declared =
            crate::topology::declare_work_queue_counted(&channel, service, server, &self.limits)
                .await;
        if channel.status().connected() {
            let _ = channel.close(200, "OK".into()).await;
        }
        Ok(declared?.1)
    }

    /// Messages ready in `queue` (see [`Broker::queue_stats`]).
    pub async fn queue_depth(&self, queue: &str) -> Result<u32, BrokerError> {
        Ok(self.queue_stats(queue).await?.messages)
    }

    /// Closes the connection; unacked deliveries on it go back to their queues. A later
    /// use connects again.
    pub async fn close(&self) {
        let conn = self.inner.conn.lock().await.take();
        if let Some(conn) = conn
            && conn.status().connected()
            && let Err(err) = conn.close(200, "bye".into()).await
        {
            tracing::debug!(%err, "closing the broker connection");
        }
    }
}

async fn open(uri: &AMQPUri) -> Result<Connection, BrokerError> {
    let props = ConnectionProperties::default().with_connection_name(connection_name().into());
    tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect_uri(uri.clone(), props))
        .await
        .map_err(|_| BrokerError::ConnectTimeout(CONNECT_TIMEOUT))?
        .map_err(BrokerError::from)
}

/// Shown in the management UI: which process holds the connection.
fn connection_name() -> String {
    let exe = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "berth".into());
    format!("{exe}#{}", std::process::id())
}
