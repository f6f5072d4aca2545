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
    /// The first request created this task, but its answer was never saved (the API died
    /// in between): the task stands; the answer is lost.
    AnswerLost { task_id: Uuid },
}

/// A claim whose request has not answered after this long is taken to be dead (requests
/// answer in milliseconds): a resend may take it over, unless that request created a task.
pub const CLAIM_LEASE_SECS: i64 = 30;

/// (request hash, status, response, location, task id, claim is stale) of a key.
type StoredAnswer = (
    String,
    Option<i32>,
    Option<serde_json::Value>,
    Option<String>,
    Option<Uuid>,
    bool,
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
            "SELECT request_hash, status, response, location, task_id,
                    created_at < now() - make_interval(secs => $3)
                 FROM idempotency_keys WHERE token_id = $1 AND key = $2",
        )
        .bind(token_id)
        .bind(key)
        .bind(CLAIM_LEASE_SECS as f64)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            // Released between our insert and select: treat as in flight; the client retries.
            None => Claim::InFlight,
            Some((hash, ..)) if hash != request_hash => Claim::Mismatch,
            Some((_, Some(status), Some(response), location, _, _)) => Claim::Replay {
                status: status as u16,
                response,
                location,
            },
            // Its request created a task and has not answered for the whole lease.
            Some((.., Some(task_id), true)) => Claim::AnswerLost { task_id },
            Some((.., None, true)) => {
                // Its request died before creating anything: one resend takes the claim over.
                let taken = sqlx::query(
                    "UPDATE idempotency_keys SET created_at = now()
                     WHERE token_id = $1 AND key = $2 AND status IS NULL AND task_id IS NULL
                       AND created_at < now() - make_interval(secs => $3)",
                )
                .bind(token_id)
                .bind(key)
                .bind(CLAIM_LEASE_SECS as f64)
                .execute(&self.pool)
                .await?
                .rows_affected();
                if taken == 1 {
                    Claim::Proceed
                } else {
                    Claim::InFlight
                }
            }
            Some(_) => Claim::InFlight,
        })
    }

    /// Records, in the request's transaction, the task a claimed request created (the
    /// first one, for a request that creates several).
    pub async fn note_idempotent_task(
        conn: &mut sqlx::PgConnection,
        token_id: Uuid,
        key: &str,
        task_id: Uuid,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE idempotency_keys SET task_id = $3
             WHERE token_id = $1 AND key = $2 AND task_id IS NULL",
        )
        .bind(token_id)
        .bind(key)
        .bind(task_id)
        .execute(conn)
        .await?;
        Ok(())
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
