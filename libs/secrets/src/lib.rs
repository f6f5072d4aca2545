//! Sealing of secrets that travel through the state database and the broker.
//!
//! A db server's admin password is sealed by the API when it is saved, stored sealed in
//! PostgreSQL, copied sealed into the step commands that need it, and opened only by the
//! worker that uses it. Anything that logs, stores or shows a command (the outbox, the
//! dead letters, the API) therefore only ever holds ciphertext. The key is the cluster key
//! (`BERTH_SECRET_KEY`, 32 bytes as 64 hex digits) shared by the API and the workers.

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use rand::RngCore;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(
        "the secret key must be 64 hex digits (32 bytes); generate one with `berth secret-key`"
    )]
    BadKey,
    #[error("sealed value is not valid base64 or too short")]
    Malformed,
    #[error("sealed value does not open with this key (another cluster's key, or tampered)")]
    WrongKey,
    #[error("the site's database password was not sent with the step")]
    Missing,
    #[error("the site's password is not in berth's form (hex digits)")]
    NotAPassword,
}

const NONCE_LEN: usize = 24;

/// The cluster key. `Debug` does not print it.
#[derive(Clone)]
pub struct SecretKey(Key);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(…)")
    }
}

impl SecretKey {
    pub fn from_hex(hex_key: &str) -> Result<Self, SecretError> {
        let bytes = hex::decode(hex_key.trim()).map_err(|_| SecretError::BadKey)?;
        if bytes.len() != 32 {
            return Err(SecretError::BadKey);
        }
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| SecretError::BadKey)?;
        Ok(Self(Key::from(bytes)))
    }

    /// A fresh random password for a site's database user: 32 hex digits (128 bits), safe
    /// to quote in SQL and in web server configuration.
    pub fn new_password() -> String {
        let mut p = [0u8; 16];
        rand::rng().fill_bytes(&mut p);
        hex::encode(p)
    }

    /// Opens the site database password a step carries sealed (`secrets.site_db`). Only
    /// hex digits (what [`Self::new_password`] makes) are accepted: the password is quoted
    /// into SQL and web server configuration.
    pub fn open_site_password(&self, sealed: Option<&str>) -> Result<String, SecretError> {
        let pw = self.open(sealed.ok_or(SecretError::Missing)?)?;
        if pw.is_empty() || !pw.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(SecretError::NotAPassword);
        }
        Ok(pw)
    }

    /// A password derived from the cluster key for `context` (HMAC-SHA-256, 32 hex digits):
    /// every process holding the key makes the same one, so a drill's throwaway database
    /// needs no password sealed and stored by whoever queued it. `context` must be unique to
    /// what it protects (a drill's task id).
    pub fn derived_password(&self, context: &str) -> String {
        use hmac::{KeyInit as _, Mac};
        let mut mac = <hmac::Hmac<sha2::Sha256>>::new_from_slice(&self.0[..])
            .expect("HMAC takes a key of any length");
        mac.update(b"berth derived site password\0");
        mac.update(context.as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..16])
    }

    /// The site database password of a step: the sealed one it carries, or, when the step
    /// says so (`derived_for`: its task id), the one derived for it.
    pub fn site_password(
        &self,
        sealed: Option<&str>,
        derived_for: Option<&str>,
    ) -> Result<String, SecretError> {
        match derived_for {
            Some(context) => Ok(self.derived_password(&format!("drill-db:{context}"))),
            None => self.open_site_password(sealed),
        }
    }

    /// A fresh random key, as 64 hex digits.
    pub fn generate_hex() -> String {
        let mut k = [0u8; 32];
        rand::rng().fill_bytes(&mut k);
        hex::encode(k)
    }

    pub fn seal(&self, plaintext: &str) -> String {
        let cipher = XChaCha20Poly1305::new(&self.0);
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let ct = cipher
            .encrypt(&XNonce::from(nonce), plaintext.as_bytes())
            .expect("encryption of an in-memory buffer cannot fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        STANDARD_NO_PAD.encode(out)
    }

    pub fn open(&self, sealed: &str) -> Result<String, SecretError> {
        let raw = STANDARD_NO_PAD
            .decode(sealed)
            .map_err(|_| SecretError::Malformed)?;
        if raw.len() <= NONCE_LEN {
            return Err(SecretError::Malformed);
        }
        let (nonce, ct) = raw.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| SecretError::Malformed)?;
        let pt = XChaCha20Poly1305::new(&self.0)
            .decrypt(&XNonce::from(nonce), ct)
            .map_err(|_| SecretError::WrongKey)?;
        String::from_utf8(pt).map_err(|_| SecretError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_passwords_are_per_key_and_context_and_look_like_site_passwords() {
        let k1 = SecretKey::from_hex(&SecretKey::generate_hex()).unwrap();
        let k2 = SecretKey::from_hex(&SecretKey::generate_hex()).unwrap();
        let a = k1.site_password(None, Some("t1")).unwrap();
        assert_eq!(a, k1.site_password(None, Some("t1")).unwrap());
        assert_ne!(a, k1.site_password(None, Some("t2")).unwrap());
        assert_ne!(a, k2.site_password(None, Some("t1")).unwrap());
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        // Without the flag, the sealed one is needed.
        assert!(matches!(
            k1.site_password(None, None),
            Err(SecretError::Missing)
        ));
    }

    #[test]
    fn seal_then_open_gives_the_secret_back_and_hides_it() {
        let key = SecretKey::from_hex(&SecretKey::generate_hex()).unwrap();
        assert!(matches!(
            key.open_site_password(None),
            Err(SecretError::Missing)
        ));
        assert!(matches!(
            key.open_site_password(Some(&key.seal("not hex"))),
            Err(SecretError::NotAPassword)
        ));
        let pw = SecretKey::new_password();
        assert_eq!(key.open_site_password(Some(&key.seal(&pw))).unwrap(), pw);
        let sealed = key.seal("hunter2");
        assert!(!sealed.contains("hunter2"));
        assert_ne!(sealed, key.seal("hunter2"), "nonces must differ");
        assert_eq!(key.open(&sealed).unwrap(), "hunter2");
    }

    #[test]
    fn another_key_or_a_tampered_value_is_refused() {
        let a = SecretKey::from_hex(&SecretKey::generate_hex()).unwrap();
        let b = SecretKey::from_hex(&SecretKey::generate_hex()).unwrap();
        let sealed = a.seal("x");
        assert!(matches!(b.open(&sealed), Err(SecretError::WrongKey)));
        assert!(matches!(a.open("AAAA"), Err(SecretError::Malformed)));
        assert!(matches!(
            SecretKey::from_hex("abcd"),
            Err(SecretError::BadKey)
        ));
    }

    #[test]
    fn debug_does_not_print_the_key() {
        let hex_key = SecretKey::generate_hex();
        let key = SecretKey::from_hex(&hex_key).unwrap();
        assert!(!format!("{key:?}").contains(&hex_key[..8]));
    }
}
