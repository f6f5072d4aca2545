//! Stop orders: the state service publishes a [`StepStop`] on `berth.control` when a task is
//! cancelled while its step runs; every worker process hears it on a queue of its own
//! (exclusive, deleted with its connection) and stops the step if it runs it, or remembers
//! it so as not to start it if it comes later.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use berth_contracts::{StepStop, exchanges};
use futures_util::StreamExt;
use lapin::ExchangeKind;
use lapin::options::{
    BasicConsumeOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{FieldTable, ShortString};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::backoff::reconnect_delay;
use crate::connection::Broker;
use crate::error::BrokerError;

/// A stop order is remembered this long for a step not yet delivered here.
const REMEMBER: Duration = Duration::from_secs(3600);

/// The steps this worker runs, and the stop orders it heard.
#[derive(Default)]
pub(super) struct Stops {
    running: Mutex<HashMap<Uuid, CancellationToken>>,
    ordered: Mutex<HashMap<Uuid, Instant>>,
}

impl Stops {
    /// Registers a step about to run; `None` when it was ordered to stop already (do not
    /// start it). The token fires on a stop order; [`Self::finished`] forgets the step.
    pub(super) fn start(&self, step: Uuid) -> Option<CancellationToken> {
        if self.lock_ordered().contains_key(&step) {
            return None;
        }
        let token = CancellationToken::new();
        self.lock_running().insert(step, token.clone());
        Some(token)
    }

    pub(super) fn finished(&self, step: Uuid) {
        self.lock_running().remove(&step);
    }

    /// A stop order: stops the step if it runs here; remembers it either way.
    pub(super) fn order(&self, step: Uuid) {
        let now = Instant::now();
        {
            let mut ordered = self.lock_ordered();
            ordered.retain(|_, at| now.duration_since(*at) < REMEMBER);
            ordered.insert(step, now);
        }
        if let Some(token) = self.lock_running().get(&step) {
            tracing::warn!(step_id = %step, "stop ordered: the task is being cancelled");
            token.cancel();
        }
    }

    fn lock_running(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, CancellationToken>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_ordered(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Instant>> {
        self.ordered.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Hears stop orders until `shutdown`, listening again after a lost connection.
pub(super) async fn listen(
    broker: Broker,
    stops: std::sync::Arc<Stops>,
    shutdown: CancellationToken,
) {
    let mut losses = 0;
    loop {
        match session(&broker, &stops, &shutdown).await {
            Ok(()) | Err(BrokerError::Cancelled) => return,
            Err(err) => {
                let delay = reconnect_delay(losses);
                losses += 1;
                tracing::warn!(%err, ?delay, "stop orders not heard; listening again");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

async fn session(
    broker: &Broker,
    stops: &Stops,
    shutdown: &CancellationToken,
) -> Result<(), BrokerError> {
    let channel = broker.channel_with_retry(shutdown).await?;
    channel
        .exchange_declare(
            exchanges::CONTROL.into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    let queue = channel
        .queue_declare(
            ShortString::default(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    let name = queue.name().clone();
    channel
        .queue_bind(
            name.clone(),
            exchanges::CONTROL.into(),
            ShortString::default(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut consumer = channel
        .basic_consume(
            name,
            ShortString::default(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => {
                let _ = channel.close(200, "OK".into()).await;
                return Ok(());
            }
            next = consumer.next() => next,
        };
        match next {
            Some(Ok(delivery)) => match serde_json::from_slice::<StepStop>(&delivery.data) {
                Ok(stop) => stops.order(stop.step_id),
                Err(err) => tracing::warn!(%err, "undecodable stop order dropped"),
            },
            Some(Err(err)) => return Err(err.into()),
            None => return Err(BrokerError::Config("the stop order consumer ended".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stop_order_stops_a_running_step_and_a_later_one_before_it_starts() {
        let stops = Stops::default();
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let token = stops.start(a).expect("not ordered to stop");
        assert!(!token.is_cancelled());
        stops.order(a);
        assert!(token.is_cancelled());
        stops.finished(a);
        stops.order(b);
        assert!(stops.start(b).is_none(), "ordered to stop before it came");
        let c = Uuid::now_v7();
        assert!(stops.start(c).is_some_and(|t| !t.is_cancelled()));
    }
}
