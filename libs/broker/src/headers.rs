//! The headers every berth message carries.

use berth_contracts::{AttemptRecord, MESSAGE_VERSION};
use lapin::types::{AMQPValue, FieldTable, LongString};

pub const TRACEPARENT: &str = "traceparent";
pub const ATTEMPT: &str = "x-attempt";
pub const TASK_ID: &str = "x-task-id";
pub const VERSION: &str = "x-berth-version";
/// JSON array of [`AttemptRecord`]: the failed attempts of a step that is being retried.
pub const HISTORY: &str = "x-history";
/// Added by quorum queues on redelivery: deliveries not acked so far.
pub const DELIVERY_COUNT: &str = "x-delivery-count";
/// Added by RabbitMQ when it dead-letters a message.
pub const X_DEATH: &str = "x-death";

/// Typed view of a berth message's headers.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageHeaders {
    /// W3C trace context of the sender's span.
    pub traceparent: Option<String>,
    pub task_id: Option<String>,
    /// 1 on the first delivery of a step; the worker increments it on each retry.
    pub attempt: u32,
    /// [`MESSAGE_VERSION`] of the body.
    pub version: u32,
    pub history: Vec<AttemptRecord>,
}

impl Default for MessageHeaders {
    fn default() -> Self {
        Self {
            traceparent: None,
            task_id: None,
            attempt: 1,
            version: MESSAGE_VERSION,
            history: Vec::new(),
        }
    }
}

impl MessageHeaders {
    /// Headers for a first attempt about `task_id`, carrying the current span's trace
    /// context.
    pub fn for_task(task_id: impl ToString) -> Self {
        Self {
            task_id: Some(task_id.to_string()),
            ..Self::default()
        }
        .with_current_trace()
    }

    /// Sets the traceparent to the current span's (leaves it unset without one).
    pub fn with_current_trace(mut self) -> Self {
        let tp = berth_telemetry::current_traceparent();
        self.traceparent = (!tp.is_empty()).then_some(tp);
        self
    }

    pub fn with_traceparent(mut self, traceparent: impl Into<String>) -> Self {
        let tp = traceparent.into();
        self.traceparent = (!tp.is_empty()).then_some(tp);
        self
    }

    pub fn with_attempt(mut self, attempt: u32) -> Self {
        self.attempt = attempt;
        self
    }

    /// The AMQP table; the version written is always this build's [`MESSAGE_VERSION`].
    pub fn to_table(&self) -> FieldTable {
        let mut t = FieldTable::default();
        if let Some(tp) = &self.traceparent {
            t.insert(TRACEPARENT.into(), text(tp));
        }
        if let Some(id) = &self.task_id {
            t.insert(TASK_ID.into(), text(id));
        }
        t.insert(ATTEMPT.into(), AMQPValue::LongLongInt(self.attempt.into()));
        t.insert(
            VERSION.into(),
            AMQPValue::LongLongInt(MESSAGE_VERSION.into()),
        );
        if !self.history.is_empty() {
            // A Vec of plain structs always serialises.
            if let Ok(json) = serde_json::to_string(&self.history) {
                t.insert(HISTORY.into(), text(&json));
            }
        }
        t
    }

    /// Reads what is there; missing or malformed headers take their defaults (attempt 1).
    pub fn from_table(table: Option<&FieldTable>) -> Self {
        let mut h = Self::default();
        let Some(t) = table else { return h };
        let get = |k: &str| t.inner().get(k);
        h.traceparent = get(TRACEPARENT)
            .and_then(as_string)
            .filter(|s| !s.is_empty());
        h.task_id = get(TASK_ID).and_then(as_string);
        h.attempt = get(ATTEMPT)
            .and_then(as_u32)
            .filter(|&a| a >= 1)
            .unwrap_or(1);
        h.version = get(VERSION).and_then(as_u32).unwrap_or(MESSAGE_VERSION);
        h.history = get(HISTORY)
            .and_then(as_string)
            .and_then(|json| match serde_json::from_str(&json) {
                Ok(history) => Some(history),
                Err(err) => {
                    tracing::warn!(%err, "ignoring a malformed x-history header");
                    None
                }
            })
            .unwrap_or_default();
        h
    }
}

fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

pub(crate) fn as_string(v: &AMQPValue) -> Option<String> {
    match v {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

/// Any integer type: RabbitMQ and other clients do not all keep the width we wrote.
pub(crate) fn as_i64(v: &AMQPValue) -> Option<i64> {
    Some(match *v {
        AMQPValue::ShortShortInt(n) => n.into(),
        AMQPValue::ShortShortUInt(n) => n.into(),
        AMQPValue::ShortInt(n) => n.into(),
        AMQPValue::ShortUInt(n) => n.into(),
        AMQPValue::LongInt(n) => n.into(),
        AMQPValue::LongUInt(n) => n.into(),
        AMQPValue::LongLongInt(n) => n,
        _ => return None,
    })
}

fn as_u32(v: &AMQPValue) -> Option<u32> {
    as_i64(v).and_then(|n| u32::try_from(n).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_contracts::ErrorKind;

    #[test]
    fn headers_round_trip() {
        let h = MessageHeaders {
            traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
            task_id: Some("t1".into()),
            attempt: 3,
            version: MESSAGE_VERSION,
            history: vec![AttemptRecord {
                attempt: 1,
                at: chrono::Utc::now(),
                error: "boom".into(),
                kind: ErrorKind::Transient,
                retry_in_ms: Some(900),
                worker: "http@h#1".into(),
            }],
        };
        let t = h.to_table();
        assert_eq!(t.inner().get(ATTEMPT), Some(&AMQPValue::LongLongInt(3)));
        assert_eq!(MessageHeaders::from_table(Some(&t)), h);
    }

    #[test]
    fn missing_headers_mean_a_first_attempt() {
        let h = MessageHeaders::from_table(None);
        assert_eq!(h.attempt, 1);
        assert!(h.history.is_empty());
        let mut t = FieldTable::default();
        t.insert(ATTEMPT.into(), AMQPValue::LongInt(0));
        t.insert(HISTORY.into(), text("not json"));
        let h = MessageHeaders::from_table(Some(&t));
        assert_eq!(h.attempt, 1);
        assert!(h.history.is_empty());
        assert!(!h.to_table().contains_key(HISTORY));
    }
}
