//! Webhook endpoints and deliveries: the REST bodies of `/api/v1/webhooks` and
//! `/api/v1/webhook-deliveries`, and the wake-up message of a delivery (decision 0021).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// `POST /api/v1/webhooks`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewWebhook {
    /// `https://…` (or `http://…`); refused when it resolves to a loopback or private
    /// address, unless configuration allows them.
    pub url: String,
    /// Event filters: `*`, a type (`task.finished`), a family (`site.*`), or
    /// `task.finished:<task type|*>[:<status|failed|*>]`.
    pub events: Vec<String>,
    /// Bound to a client: receives only events about that client's sites.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<Uuid>,
    #[serde(default)]
    pub description: String,
}

/// `PATCH /api/v1/webhooks/{id}`: what is given changes. Enabling clears the reason it
/// was disabled.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookChange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// An endpoint, as answered: never its secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Webhook {
    pub id: Uuid,
    pub url: String,
    pub events: Vec<String>,
    pub client: Option<Uuid>,
    pub description: String,
    pub enabled: bool,
    /// Why it was disabled (a 410 from the receiver, or by hand).
    pub disabled_reason: Option<String>,
    /// Until then, deliveries are signed with the previous secret too.
    pub previous_secret_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The answer to a create: the endpoint and its `whsec_` secret, shown this once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreatedWebhook {
    #[serde(flatten)]
    pub webhook: Webhook,
    pub secret: String,
}

/// The answer to `POST /api/v1/webhooks/{id}/rotate-secret`: the new secret, shown this
/// once; the previous one still signs until `previous_secret_until`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RotatedSecret {
    pub id: Uuid,
    pub secret: String,
    pub previous_secret_until: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Waiting for its next attempt.
    Pending,
    Delivered,
    /// Given up: its last tier failed, the endpoint answered 410, or its URL is refused.
    Failed,
    /// Not attempted: the endpoint was disabled or deleted before it.
    Skipped,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Delivered, Self::Failed, Self::Skipped]
            .into_iter()
            .find(|d| d.as_str() == s)
    }
}

/// One delivery of one event to one endpoint, with its attempts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookDelivery {
    pub id: Uuid,
    pub webhook_id: Uuid,
    /// The event's id: the `webhook-id` header (the same on a redelivery).
    pub event_id: Uuid,
    pub event_type: String,
    pub status: DeliveryStatus,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub redelivery_of: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub attempts: Vec<WebhookAttempt>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookAttempt {
    pub number: i32,
    pub at: DateTime<Utc>,
    /// The receiver's HTTP status; none when it did not answer.
    pub status_code: Option<i32>,
    pub latency_ms: i64,
    /// Why it failed, when it did (never a secret).
    pub error: Option<String>,
}

/// On `berth.webhooks` → `webhooks.deliveries`: try delivery `delivery_id` now, if it
/// has still made `after_attempts` attempts (a stale or duplicate wake-up does nothing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookWake {
    pub delivery_id: Uuid,
    pub after_attempts: i32,
}
