//! `Idempotency-Key`: the first answer to a (token, key) is kept and given again to a
//! retry with the same body; another body under the same key is refused.

use crate::{Result, Store};
use uuid::Uuid;

#[derive(Debug)]
pub enum Claim {
    /// First time: go ahead, then `save` the answer.
    Proceed,
    /// Seen before with this body: the stored answer.
    Replay {
        status: u16,
        response: serde_json::Value,
        location: Option<String>,
    },
    /// Seen before with another body.
    Mismatch,
    /// The first request with this key is still being answered.
    InFlight,
}

/// (request hash, status, response, location) of a key's first answer.
type StoredAnswer = (
    String,
    Option<i32>,
    Option<serde_json::Value>,
    Option<String>,
);

impl Store {
    pub async fn claim_idempotency_key(
        &self,
        token_id: Uuid,
        key: &str,
        request_hash: &str,
    ) -> Result<Claim> {
        let inserted = sqlx::query(
            "INSERT INTO idempotency_keys (token_id, key, request_hash) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
        )
        .bind(token_id)
        .bind(key)
        .bind(request_hash)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if inserted == 1 {
            return Ok(Claim::Proceed);
        }
        let row: Option<StoredAnswer> = sqlx::query_as(
            "SELECT request_hash, status, response, location FROM idempotency_keys
                 WHERE token_id = $1 AND key = $2",
        )
        .bind(token_id)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            // Released between our insert and select: treat as in flight; the client retries.
            None => Claim::InFlight,
            Some((hash, _, _, _)) if hash != request_hash => Claim::Mismatch,
            Some((_, Some(status), Some(response), location)) => Claim::Replay {
                status: status as u16,
                response,
                location,
            },
            Some(_) => Claim::InFlight,
        })
    }

    pub async fn save_idempotent_response(
        &self,
        token_id: Uuid,
        key: &str,
        status: u16,
        response: &serde_json::Value,
        location: Option<&str>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE idempotency_keys SET status = $3, response = $4, location = $5
             WHERE token_id = $1 AND key = $2",
        )
        .bind(token_id)
        .bind(key)
        .bind(status as i32)
        .bind(response)
        .bind(location)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Forgets a key whose request failed, so that nothing of a refused request is kept.
    pub async fn release_idempotency_key(&self, token_id: Uuid, key: &str) -> Result<()> {
        sqlx::query(
            "DELETE FROM idempotency_keys WHERE token_id = $1 AND key = $2 AND status IS NULL",
        )
        .bind(token_id)
        .bind(key)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
