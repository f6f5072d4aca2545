//! The Standard Webhooks signature scheme.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{KeyInit as _, Mac as _};
use rand::RngCore as _;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

pub const HEADER_ID: &str = "webhook-id";
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
pub const HEADER_SIGNATURE: &str = "webhook-signature";
const PREFIX: &str = "whsec_";
/// How far a message's timestamp may be from the receiver's clock (the spec's 5 minutes).
pub const DEFAULT_TOLERANCE: std::time::Duration = std::time::Duration::from_secs(300);

/// An endpoint's signing key. Its text form is `whsec_<base64 of the key bytes>`; `Debug`
/// never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("a webhook secret is `whsec_` followed by base64")]
    Form,
    #[error("a webhook secret holds 24 to 64 bytes")]
    Length,
}

impl Secret {
    /// A fresh random secret of 32 bytes.
    pub fn generate() -> Self {
        let mut k = vec![0u8; 32];
        rand::rng().fill_bytes(&mut k);
        Self(k)
    }

    pub fn parse(text: &str) -> Result<Self, SecretError> {
        let b64 = text.strip_prefix(PREFIX).ok_or(SecretError::Form)?;
        let key = B64.decode(b64).map_err(|_| SecretError::Form)?;
        if !(24..=64).contains(&key.len()) {
            return Err(SecretError::Length);
        }
        Ok(Self(key))
    }

    /// `whsec_<base64>`: what the endpoint's owner is shown once, and what is sealed.
    pub fn expose(&self) -> String {
        format!("{PREFIX}{}", B64.encode(&self.0))
    }

    fn mac(&self, id: &str, timestamp: i64, body: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }
}

/// `v1,<base64 signature>` of one message under one secret.
pub fn sign(secret: &Secret, id: &str, timestamp: i64, body: &[u8]) -> String {
    let tag = secret.mac(id, timestamp, body).finalize().into_bytes();
    format!("v1,{}", B64.encode(tag))
}

/// The `webhook-signature` value under every given secret (the current one first, then the
/// previous one while a rotation's grace lasts), space-separated as the spec says.
pub fn signature_header(secrets: &[&Secret], id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|s| sign(s, id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the webhook timestamp is not a number of seconds")]
    Timestamp,
    #[error("the webhook timestamp is too far from now")]
    Stale,
    #[error("no signature matches")]
    NoMatch,
}

/// Checks a received message: its timestamp within `tolerance` of `now` (Unix seconds) and
/// at least one `v1` signature of the header made with `secret` (compared in constant time).
pub fn verify(
    secret: &Secret,
    id: &str,
    timestamp: &str,
    signatures: &str,
    body: &[u8],
    now: i64,
    tolerance: std::time::Duration,
) -> Result<(), VerifyError> {
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| VerifyError::Timestamp)?;
    if ts.abs_diff(now) > tolerance.as_secs() {
        return Err(VerifyError::Stale);
    }
    let matched = signatures.split_whitespace().any(|one| {
        let Some(("v1", sig)) = one.split_once(',') else {
            return false;
        };
        let Ok(sig) = B64.decode(sig) else {
            return false;
        };
        secret.mac(id, ts, body).verify_slice(&sig).is_ok()
    });
    if matched {
        Ok(())
    } else {
        Err(VerifyError::NoMatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The published test vector of the Standard Webhooks specification (and svix).
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: i64 = 1614265330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    // The brief that asked for this quoted `…/tMIK…`; the spec, svix and every SDK publish
    // `…/tmIK…` (lower-case m), which is what HMAC-SHA256 gives.
    const EXPECTED: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn the_spec_test_vector_signs_as_published() {
        let s = Secret::parse(SECRET).unwrap();
        assert_eq!(sign(&s, ID, TS, BODY), EXPECTED);
        assert_eq!(s.expose(), SECRET);
    }

    #[test]
    fn the_spec_test_vector_verifies_and_a_change_does_not() {
        let s = Secret::parse(SECRET).unwrap();
        let t = DEFAULT_TOLERANCE;
        assert_eq!(
            verify(&s, ID, "1614265330", EXPECTED, BODY, TS + 10, t),
            Ok(())
        );
        assert_eq!(
            verify(
                &s,
                ID,
                "1614265330",
                EXPECTED,
                br#"{"test": 2432232315}"#,
                TS,
                t
            ),
            Err(VerifyError::NoMatch)
        );
        assert_eq!(
            verify(&s, "msg_other", "1614265330", EXPECTED, BODY, TS, t),
            Err(VerifyError::NoMatch)
        );
        assert_eq!(
            verify(&s, ID, "1614265330", EXPECTED, BODY, TS + 301, t),
            Err(VerifyError::Stale)
        );
        assert_eq!(
            verify(&s, ID, "soon", EXPECTED, BODY, TS, t),
            Err(VerifyError::Timestamp)
        );
        assert_eq!(
            verify(&s, ID, "1614265330", "v2,abc v1,!!!", BODY, TS, t),
            Err(VerifyError::NoMatch)
        );
    }

    #[test]
    fn during_a_rotation_both_secrets_verify_the_one_header() {
        let old = Secret::generate();
        let new = Secret::generate();
        assert_ne!(old, new);
        let header = signature_header(&[&new, &old], ID, TS, BODY);
        assert_eq!(header.split(' ').count(), 2);
        for s in [&old, &new] {
            assert_eq!(
                verify(s, ID, "1614265330", &header, BODY, TS, DEFAULT_TOLERANCE),
                Ok(())
            );
        }
        let stranger = Secret::generate();
        assert_eq!(
            verify(
                &stranger,
                ID,
                "1614265330",
                &header,
                BODY,
                TS,
                DEFAULT_TOLERANCE
            ),
            Err(VerifyError::NoMatch)
        );
    }

    #[test]
    fn secrets_parse_only_in_their_form_and_never_print() {
        assert_eq!(
            Secret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            Err(SecretError::Form)
        );
        assert_eq!(Secret::parse("whsec_!!"), Err(SecretError::Form));
        assert_eq!(Secret::parse("whsec_YWJj"), Err(SecretError::Length));
        let s = Secret::generate();
        assert_eq!(Secret::parse(&s.expose()).unwrap(), s);
        assert!(!format!("{s:?}").contains(&s.expose()[6..]));
    }
}
