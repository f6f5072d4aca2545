//! API tokens: random, shown once, stored as a SHA-256 hash.

use crate::{Result, Store, conflict_on_unique};
use rand::RngCore;
use sha2::{Digest, Sha256};
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct TokenInfo {
    pub id: Uuid,
    pub name: String,
    pub scope: String,
}

pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl Store {
    /// Creates a token and returns it in clear; only its hash is kept.
    pub async fn create_token(&self, name: &str, scope: &str) -> Result<String> {
        let mut raw = [0u8; 32];
        rand::rng().fill_bytes(&mut raw);
        let token = format!("berth_{}", hex::encode(raw));
        sqlx::query("INSERT INTO api_tokens (id, name, token_hash, scope) VALUES ($1, $2, $3, $4)")
            .bind(Uuid::now_v7())
            .bind(name)
            .bind(hash_token(&token))
            .bind(scope)
            .execute(&self.pool)
            .await
            .map_err(|e| {
                conflict_on_unique(e, || format!("a token named `{name}` exists already"))
            })?;
        Ok(token)
    }

    pub async fn authenticate(&self, token: &str) -> Result<Option<TokenInfo>> {
        let row: Option<(Uuid, String, String, bool)> = sqlx::query_as(
            "SELECT id, name, scope,
                    last_used_at IS NULL OR last_used_at < now() - interval '1 minute'
             FROM api_tokens WHERE token_hash = $1",
        )
        .bind(hash_token(token))
        .fetch_optional(&self.pool)
        .await?;
        let Some((id, name, scope, stale)) = row else {
            return Ok(None);
        };
        // `last_used_at` to the minute: a write (and a WAL flush on one hot row) per request
        // would cost more than the information is worth.
        if stale {
            sqlx::query("UPDATE api_tokens SET last_used_at = now() WHERE id = $1")
                .bind(id)
                .execute(&self.pool)
                .await?;
        }
        Ok(Some(TokenInfo { id, name, scope }))
    }
}
