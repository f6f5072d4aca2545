//! API tokens: random, shown once, stored as a SHA-256 hash, with their scopes (space
//! separated in `scope`), an optional expiry and an optional client binding.

use crate::{Result, Store, conflict_on_unique};
use chrono::{DateTime, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::PgConnection;
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct TokenInfo {
    pub id: Uuid,
    pub name: String,
    pub scope: String,
    /// The client the token is bound to: (id, name).
    pub client: Option<(Uuid, String)>,
}

/// A token as listed (never its value nor its hash).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TokenRow {
    pub id: Uuid,
    pub name: String,
    pub scope: String,
    pub client: Option<String>,
    pub client_id: Option<Uuid>,
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

const ROW: &str = "SELECT t.id, t.name, t.scope, c.name AS client, t.client_id, t.created_by,
    t.created_at, t.expires_at, t.last_used_at, t.revoked_at
    FROM api_tokens t LEFT JOIN clients c ON c.id = t.client_id";

pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn new_token() -> String {
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    format!("berth_{}", hex::encode(raw))
}

pub struct NewToken<'a> {
    pub name: &'a str,
    pub scope: &'a str,
    pub client_id: Option<Uuid>,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_by: Option<Uuid>,
}

/// Creates a token in the caller's transaction and returns it in clear, with its row; only
/// its hash is kept.
pub async fn insert(conn: &mut PgConnection, t: NewToken<'_>) -> Result<(String, TokenRow)> {
    let token = new_token();
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO api_tokens (id, name, token_hash, scope, client_id, expires_at, created_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id)
    .bind(t.name)
    .bind(hash_token(&token))
    .bind(t.scope)
    .bind(t.client_id)
    .bind(t.expires_at)
    .bind(t.created_by)
    .execute(&mut *conn)
    .await
    .map_err(|e| conflict_on_unique(e, || format!("a token named `{}` exists already", t.name)))?;
    let row = get(conn, id, None)
        .await?
        .ok_or_else(|| crate::StoreError::Corrupt("new token vanished".into()))?;
    Ok((token, row))
}

/// A token, if `owner` (a non-admin caller: itself or what it made) may see it.
pub async fn get(
    conn: &mut PgConnection,
    id: Uuid,
    owner: Option<Uuid>,
) -> Result<Option<TokenRow>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{ROW} WHERE t.id = $1 AND ($2::uuid IS NULL OR t.id = $2 OR t.created_by = $2)"
    )))
    .bind(id)
    .bind(owner)
    .fetch_optional(&mut *conn)
    .await?)
}

/// Revokes a token: it authenticates no more; its row stays for the audit log.
pub async fn revoke(conn: &mut PgConnection, id: Uuid) -> Result<()> {
    sqlx::query("UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

impl Store {
    /// Creates an unbound token and returns it in clear; only its hash is kept.
    pub async fn create_token(&self, name: &str, scope: &str) -> Result<String> {
        let mut conn = self.pool.acquire().await?;
        let (token, _) = insert(
            &mut conn,
            NewToken {
                name,
                scope,
                client_id: None,
                expires_at: None,
                created_by: None,
            },
        )
        .await?;
        Ok(token)
    }

    /// Tokens not revoked, those `owner` may see (all: `None`), newest first.
    pub async fn list_tokens(&self, owner: Option<Uuid>) -> Result<Vec<TokenRow>> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{ROW} WHERE t.revoked_at IS NULL
               AND ($1::uuid IS NULL OR t.id = $1 OR t.created_by = $1)
             ORDER BY t.created_at DESC, t.id DESC"
        )))
        .bind(owner)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The token's identity, if it exists, is not revoked and has not expired.
    pub async fn authenticate(&self, token: &str) -> Result<Option<TokenInfo>> {
        type Row = (Uuid, String, String, Option<Uuid>, Option<String>, bool);
        let row: Option<Row> = sqlx::query_as(
            "SELECT t.id, t.name, t.scope, t.client_id, c.name,
                    t.last_used_at IS NULL OR t.last_used_at < now() - interval '1 minute'
             FROM api_tokens t LEFT JOIN clients c ON c.id = t.client_id
             WHERE t.token_hash = $1 AND t.revoked_at IS NULL
               AND (t.expires_at IS NULL OR t.expires_at > now())",
        )
        .bind(hash_token(token))
        .fetch_optional(&self.pool)
        .await?;
        let Some((id, name, scope, client_id, client_name, stale)) = row else {
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
        Ok(Some(TokenInfo {
            id,
            name,
            scope,
            client: client_id.zip(client_name),
        }))
    }
}
