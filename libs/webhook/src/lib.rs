//! Signed webhooks, as pure decisions (decision 0021):
//!
//! - [`sign`] / [`verify`]: the Standard Webhooks signature (`webhook-id`,
//!   `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`),
//!   secrets written `whsec_<base64>`, several signatures while a secret rotates.
//! - [`RetrySchedule`] and [`decide`]: when to try again after an attempt, or stop.
//! - [`Filter`]: which events an endpoint receives.
//! - [`check_url`] / [`check_addr`]: endpoints may not point at loopback or private
//!   addresses unless configuration allows it.

mod filter;
mod guard;
mod retry;
mod signature;

pub use filter::{EventFacts, Filter, FilterError};
pub use guard::{GuardError, check_addr, check_url, forbidden};
pub use retry::{
    DEFAULT_MAX_RETRY_AFTER, Next, Outcome, RetrySchedule, SPEC_TIERS, decide, parse_retry_after,
};
pub use signature::{
    DEFAULT_TOLERANCE, HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP, Secret, SecretError,
    VerifyError, sign, signature_header, verify,
};
