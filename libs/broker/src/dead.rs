//! Reading `state.dead`.
//!
//! Two kinds of message arrive there: a [`DeadLetterMessage`] a worker published after a
//! permanent failure or its last attempt, and a step command RabbitMQ dead-lettered itself
//! (the work queue's delivery limit was reached because workers kept dying on it, or a
//! worker rejected a body it could not decode) with an `x-death` header saying why.

use berth_contracts::{DeadLetterMessage, StepCommand};
use lapin::types::{AMQPValue, FieldTable};

use crate::consumer::Delivery;
use crate::headers::{X_DEATH, as_i64, as_string};

/// Why RabbitMQ dead-lettered a message: the newest `x-death` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Death {
    /// `rejected`, `expired`, `maxlen` or `delivery_limit`.
    pub reason: String,
    pub queue: String,
    pub count: i64,
    /// The per-message expiration (ms) the message was published with, if any: set on a
    /// step published to a work queue that had no consumer.
    pub original_expiration: Option<String>,
}

/// The newest `x-death` entry of `headers`, if RabbitMQ dead-lettered the message.
pub fn death_of(headers: &FieldTable) -> Option<Death> {
    let AMQPValue::FieldArray(deaths) = headers.inner().get(X_DEATH)? else {
        return None;
    };
    let AMQPValue::FieldTable(first) = deaths.as_slice().first()? else {
        return None;
    };
    let get = |k: &str| first.inner().get(k);
    Some(Death {
        reason: get("reason").and_then(as_string).unwrap_or_default(),
        queue: get("queue").and_then(as_string).unwrap_or_default(),
        count: get("count").and_then(as_i64).unwrap_or(1),
        original_expiration: get("original-expiration").and_then(as_string),
    })
}

/// Decodes a `state.dead` message into a [`DeadLetterMessage`], turning a step command
/// dead-lettered by RabbitMQ into one whose error says why. `None` for a body that is
/// neither (e.g. a malformed command): nothing can be recorded against a step for it.
pub fn decode_dead_letter(delivery: &Delivery) -> Option<DeadLetterMessage> {
    if let Ok(msg) = serde_json::from_slice::<DeadLetterMessage>(&delivery.body) {
        return Some(msg);
    }
    let command: StepCommand = serde_json::from_slice(&delivery.body).ok()?;
    let error = match death_of(&delivery.raw_headers) {
        Some(d) if d.reason == "delivery_limit" => format!(
            "dead-lettered by the broker: delivered from `{}` too many times without an answer \
             (did the worker crash on it?)",
            d.queue
        ),
        Some(d)
            if d.reason == "expired"
                && d.queue.starts_with("work.")
                && d.original_expiration.is_some() =>
        {
            missing_worker(&command, &d)
        }
        Some(d) if d.reason == "expired" && d.queue.starts_with("work.") => format!(
            "no worker took the step from `{}` in time (is a `berth serve` running for this \
             service and server?); replay the dead letter once one runs",
            d.queue
        ),
        Some(d) => format!(
            "dead-lettered by the broker from `{}` ({})",
            d.queue, d.reason
        ),
        None => "dead-lettered by the broker".to_owned(),
    };
    Some(DeadLetterMessage {
        routing_key: if delivery.routing_key.is_empty() {
            command.routing_key()
        } else {
            delivery.routing_key.clone()
        },
        command,
        error,
        history: delivery.headers.history.clone(),
        log: Vec::new(),
    })
}

/// Why a step published to a work queue without consumer expired: which worker is missing
/// and how to start it.
fn missing_worker(command: &StepCommand, d: &Death) -> String {
    let waited = d
        .original_expiration
        .as_deref()
        .and_then(|ms| ms.parse::<u64>().ok())
        .map(|ms| format!(" within {} s", ms.div_ceil(1000)))
        .unwrap_or_default();
    format!(
        "no {service} worker is running for {server} (queue {queue} has no consumer, and none \
         came{waited}): start `berth serve {service}` with BERTH_SERVERS including {server}, \
         then retry the task",
        service = command.service(),
        server = command.server,
        queue = d.queue,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headers::MessageHeaders;
    use lapin::types::{FieldArray, LongString};

    fn delivery(body: Vec<u8>, raw_headers: FieldTable) -> Delivery {
        Delivery {
            body,
            exchange: "berth.dead".into(),
            routing_key: "http.server_master".into(),
            redelivered: false,
            delivery_count: None,
            message_id: None,
            headers: MessageHeaders::from_table(Some(&raw_headers)),
            raw_headers,
        }
    }

    fn command() -> StepCommand {
        StepCommand {
            task_id: uuid::Uuid::nil(),
            step_id: uuid::Uuid::nil(),
            task_type: "noop".into(),
            target: "server_master".into(),
            server: "server_master".into(),
            phase: berth_contracts::StepPhase::Run,
            work: berth_contracts::Work::Noop(berth_contracts::steps::NoopSpec {
                service: berth_contracts::Service::Http,
                sleep_ms: None,
                fail: None,
            }),
            secrets: Default::default(),
        }
    }

    #[test]
    fn a_command_dead_lettered_by_the_broker_says_why() {
        let mut death = FieldTable::default();
        death.insert(
            "reason".into(),
            AMQPValue::LongString(LongString::from("delivery_limit")),
        );
        death.insert(
            "queue".into(),
            AMQPValue::LongString(LongString::from("work.http.server_master")),
        );
        death.insert("count".into(), AMQPValue::LongLongInt(1));
        let mut headers = FieldTable::default();
        headers.insert(
            X_DEATH.into(),
            AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::FieldTable(death)])),
        );
        let d = delivery(serde_json::to_vec(&command()).unwrap(), headers);
        let msg = decode_dead_letter(&d).unwrap();
        assert_eq!(msg.command, command());
        assert!(msg.error.contains("too many times"), "{}", msg.error);
        assert_eq!(msg.routing_key, "http.server_master");
    }

    #[test]
    fn a_step_that_expired_for_want_of_a_worker_names_the_worker_to_start() {
        let text = |s: &str| AMQPValue::LongString(LongString::from(s));
        let mut death = FieldTable::default();
        death.insert("reason".into(), text("expired"));
        death.insert("queue".into(), text("work.http.server_master"));
        death.insert("original-expiration".into(), text("10000"));
        let mut headers = FieldTable::default();
        headers.insert(
            X_DEATH.into(),
            AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::FieldTable(death)])),
        );
        let d = delivery(serde_json::to_vec(&command()).unwrap(), headers);
        let msg = decode_dead_letter(&d).unwrap();
        assert_eq!(
            msg.error,
            "no http worker is running for server_master (queue work.http.server_master has \
             no consumer, and none came within 10 s): start `berth serve http` with \
             BERTH_SERVERS including server_master, then retry the task"
        );
    }

    #[test]
    fn a_worker_dead_letter_decodes_as_is() {
        let dead = DeadLetterMessage {
            command: command(),
            routing_key: "http.server_master".into(),
            error: "boom".into(),
            history: vec![],
            log: vec![],
        };
        let d = delivery(serde_json::to_vec(&dead).unwrap(), FieldTable::default());
        assert_eq!(decode_dead_letter(&d), Some(dead));
        assert_eq!(
            decode_dead_letter(&delivery(b"{}".to_vec(), FieldTable::default())),
            None
        );
    }
}
