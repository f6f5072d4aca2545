//! berth's use of RabbitMQ: topology, a confirmed publisher, a consume loop with manual
//! acks and reconnects, and the worker framework built on them.
//!
//! - [`topology`]: exchange and queue names, idempotent declarations.
//! - [`Broker`]: the connection, re-established when lost; channels; queue depth.
//! - [`Publisher`]: persistent, mandatory, confirmed publishes, many in flight at once.
//! - [`consume`] / [`consume_with`]: handlers run concurrently, acked when done.
//! - [`worker`]: steps from `work.<service>.<server>`, retries with backoff, dead letters.
//! - [`dead`]: reading `state.dead`.

mod backoff;
mod connection;
mod consumer;
pub mod dead;
mod error;
pub mod headers;
mod publisher;
pub mod topology;
pub mod worker;

pub use connection::{Broker, QueueStats};
pub use consumer::{
    ConsumeOptions, DEFAULT_REQUEUE_DELAY, Delivery, HandlerError, consume, consume_with,
};
pub use error::BrokerError;
pub use headers::MessageHeaders;
/// Re-exported: [`Delivery::raw_headers`] and the [`topology`] functions use its types.
pub use lapin;
pub use publisher::{DEFAULT_CONFIRM_TIMEOUT, Publisher};
/// Re-exported so that callers use the same token type as the broker.
pub use tokio_util::sync::CancellationToken;
