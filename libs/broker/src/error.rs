use std::time::Duration;

/// What can go wrong talking to the broker.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("invalid AMQP URL: {0}")]
    InvalidUrl(String),
    #[error("AMQP: {0}")]
    Amqp(#[from] lapin::Error),
    #[error("the broker nacked the message published to `{exchange}` with key `{routing_key}`")]
    Nacked {
        exchange: String,
        routing_key: String,
    },
    #[error(
        "the message published to `{exchange}` with key `{routing_key}` is unroutable ({reply})"
    )]
    Unroutable {
        exchange: String,
        routing_key: String,
        reply: String,
    },
    #[error("no publisher confirm within {0:?}")]
    ConfirmTimeout(Duration),
    #[error("connecting to the broker timed out after {0:?}")]
    ConnectTimeout(Duration),
    #[error("cancelled")]
    Cancelled,
    #[error("`{0}` is not a valid AMQP name (at most 255 bytes)")]
    InvalidName(String),
    #[error("cannot encode the message: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// Checks an exchange, queue, routing key or message id against AMQP's short-string limit,
/// since lapin panics on longer ones.
pub(crate) fn short(s: &str) -> Result<lapin::types::ShortString, BrokerError> {
    lapin::types::ShortString::try_new(s).map_err(|_| BrokerError::InvalidName(s.to_owned()))
}
