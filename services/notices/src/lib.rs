//! The notices service (`berth serve notices`): tells the outside world what happened.
//!
//! It consumes `notices.outbound` (the events the state service and the scheduler write
//! through their outboxes) and delivers each to the webhook endpoints whose filters match
//! it ([`webhooks`]); and mails each new site's client its welcome ([`mail`]).

pub mod mail;
pub mod webhooks;

use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct NoticesConfig {
    pub database_url: String,
    pub amqp_url: String,
    /// Opens the endpoints' sealed secrets.
    pub secret_key: berth_secrets::SecretKey,
    /// Deliveries attempted at once (BERTH_WEBHOOKS_CONCURRENCY).
    pub concurrency: u16,
    /// The delays before each attempt and the longest `Retry-After` honoured
    /// (BERTH_WEBHOOKS_RETRY_MS, BERTH_WEBHOOKS_MAX_RETRY_AFTER_S).
    pub retry: berth_webhook::RetrySchedule,
    /// How long one attempt may take (BERTH_WEBHOOKS_TIMEOUT_MS).
    pub timeout: Duration,
    /// Endpoints may resolve to loopback and private addresses (BERTH_WEBHOOKS_ALLOW_PRIVATE).
    pub allow_private: bool,
    /// How often lost wake-ups are looked for, and how overdue a delivery must be to count
    /// as lost (BERTH_WEBHOOKS_SWEEP_S).
    pub sweep_every: Duration,
    /// How long a finished delivery stays in the delivery log; the sweep deletes older ones
    /// (BERTH_WEBHOOKS_LOG_KEEP_S).
    pub log_keep: Duration,
    pub mail: mail::MailConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum NoticesError {
    #[error(transparent)]
    Store(#[from] berth_store::StoreError),
    #[error(transparent)]
    Broker(#[from] berth_broker::BrokerError),
    #[error("the webhook HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error(transparent)]
    Mail(#[from] berth_mail::MailError),
}

/// Runs the notices service until `shutdown`.
pub async fn run(cfg: NoticesConfig, shutdown: CancellationToken) -> Result<(), NoticesError> {
    let (db, amqp) = (cfg.database_url.clone(), cfg.amqp_url.clone());
    let mailing = mail::run(&db, &amqp, cfg.mail.clone(), shutdown.clone());
    let (hooks, mails) = tokio::join!(webhooks::run(cfg, shutdown), mailing);
    hooks?;
    mails
}
