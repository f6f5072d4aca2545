//! Webhook endpoints, deliveries and attempts (decision 0021). A delivery row is the truth
//! about a delivery: the broker's wake-ups only say "look at it now".

use crate::{PgConnection, Result};
use berth_contracts::webhook::{DeliveryStatus, Webhook, WebhookAttempt, WebhookDelivery};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EndpointRow {
    pub id: Uuid,
    pub url: String,
    pub events: Vec<String>,
    pub client_id: Option<Uuid>,
    pub description: String,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub previous_secret_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl EndpointRow {
    pub fn into_contract(self) -> Webhook {
        Webhook {
            id: self.id,
            url: self.url,
            events: self.events,
            client: self.client_id,
            description: self.description,
            enabled: self.enabled,
            disabled_reason: self.disabled_reason,
            previous_secret_until: self.previous_secret_until,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

const ENDPOINT: &str = "id, url, events, client_id, description, enabled, disabled_reason,
    previous_secret_until, created_at, updated_at";

pub struct NewEndpoint<'a> {
    pub id: Uuid,
    pub url: &'a str,
    pub events: &'a [String],
    pub client_id: Option<Uuid>,
    pub description: &'a str,
    pub secret_sealed: &'a str,
}

pub async fn insert_endpoint(conn: &mut PgConnection, e: NewEndpoint<'_>) -> Result<EndpointRow> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO webhook_endpoints (id, url, events, client_id, description, secret_sealed)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING {ENDPOINT}"
    )))
    .bind(e.id)
    .bind(e.url)
    .bind(e.events)
    .bind(e.client_id)
    .bind(e.description)
    .bind(e.secret_sealed)
    .fetch_one(conn)
    .await?)
}

/// The endpoints the caller may see: all, or those bound to its client.
pub async fn list_endpoints(
    conn: &mut PgConnection,
    seen: crate::clients::Visibility,
) -> Result<Vec<EndpointRow>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {ENDPOINT} FROM webhook_endpoints
         WHERE ($1::uuid IS NULL OR client_id = $1) ORDER BY created_at, id"
    )))
    .bind(seen.client())
    .fetch_all(conn)
    .await?)
}

/// The endpoint, if the caller may see it (a client's token: only its client's).
pub async fn get_endpoint(
    conn: &mut PgConnection,
    id: Uuid,
    seen: crate::clients::Visibility,
) -> Result<Option<EndpointRow>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {ENDPOINT} FROM webhook_endpoints
         WHERE id = $1 AND ($2::uuid IS NULL OR client_id = $2)"
    )))
    .bind(id)
    .bind(seen.client())
    .fetch_optional(conn)
    .await?)
}

/// The endpoint a delivery went to.
pub async fn endpoint_of_delivery(conn: &mut PgConnection, delivery: Uuid) -> Result<Option<Uuid>> {
    Ok(
        sqlx::query_scalar("SELECT endpoint_id FROM webhook_deliveries WHERE id = $1")
            .bind(delivery)
            .fetch_optional(conn)
            .await?,
    )
}

/// Changes what is given; enabling clears why it was disabled, disabling by hand says so.
pub async fn update_endpoint(
    conn: &mut PgConnection,
    id: Uuid,
    url: Option<&str>,
    events: Option<&[String]>,
    enabled: Option<bool>,
) -> Result<Option<EndpointRow>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE webhook_endpoints SET
           url = COALESCE($2, url),
           events = COALESCE($3, events),
           enabled = COALESCE($4, enabled),
           disabled_reason = CASE WHEN $4 IS NULL THEN disabled_reason
                                  WHEN $4 THEN NULL
                                  WHEN enabled THEN 'disabled through the API'
                                  ELSE disabled_reason END,
           disabled_at = CASE WHEN $4 IS NULL THEN disabled_at WHEN $4 THEN NULL
                              WHEN enabled THEN now() ELSE disabled_at END,
           updated_at = now()
         WHERE id = $1 RETURNING {ENDPOINT}"
    )))
    .bind(id)
    .bind(url)
    .bind(events)
    .bind(enabled)
    .fetch_optional(conn)
    .await?)
}

pub async fn delete_endpoint(conn: &mut PgConnection, id: Uuid) -> Result<bool> {
    let done = sqlx::query("DELETE FROM webhook_endpoints WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// The current secret becomes the previous one (signing too until `until`); `sealed` is
/// the new one.
pub async fn rotate_secret(
    conn: &mut PgConnection,
    id: Uuid,
    sealed: &str,
    until: DateTime<Utc>,
) -> Result<Option<EndpointRow>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE webhook_endpoints SET previous_secret_sealed = secret_sealed,
           previous_secret_until = $3, secret_sealed = $2, updated_at = now()
         WHERE id = $1 RETURNING {ENDPOINT}"
    )))
    .bind(id)
    .bind(sealed)
    .bind(until)
    .fetch_optional(conn)
    .await?)
}

/// What matching an event needs of an enabled endpoint.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Subscriber {
    pub id: Uuid,
    pub events: Vec<String>,
    pub client_id: Option<Uuid>,
}

pub async fn enabled_endpoints(conn: &mut PgConnection) -> Result<Vec<Subscriber>> {
    Ok(
        sqlx::query_as("SELECT id, events, client_id FROM webhook_endpoints WHERE enabled")
            .fetch_all(conn)
            .await?,
    )
}

pub struct NewDeliveries<'a> {
    pub event_id: Uuid,
    pub event_type: &'a str,
    pub body: &'a str,
    pub traceparent: &'a str,
    pub endpoints: &'a [Uuid],
}

/// One delivery per endpoint for the event (none twice: a notice delivered again finds its
/// rows); the ids of the event's deliveries still waiting for their first attempt.
pub async fn insert_deliveries(conn: &mut PgConnection, d: NewDeliveries<'_>) -> Result<Vec<Uuid>> {
    let ids: Vec<Uuid> = d.endpoints.iter().map(|_| Uuid::now_v7()).collect();
    sqlx::query(
        "INSERT INTO webhook_deliveries
           (id, endpoint_id, event_id, event_type, body, traceparent, next_attempt_at)
         SELECT i, e, $3, $4, $5, $6, now() FROM unnest($1::uuid[], $2::uuid[]) AS x(i, e)
         ON CONFLICT (event_id, endpoint_id) WHERE redelivery_of IS NULL DO NOTHING",
    )
    .bind(&ids)
    .bind(d.endpoints)
    .bind(d.event_id)
    .bind(d.event_type)
    .bind(d.body)
    .bind(d.traceparent)
    .execute(&mut *conn)
    .await?;
    Ok(sqlx::query_scalar(
        "SELECT id FROM webhook_deliveries
         WHERE event_id = $1 AND status = 'pending' AND attempts = 0 AND redelivery_of IS NULL",
    )
    .bind(d.event_id)
    .fetch_all(conn)
    .await?)
}

/// A delivery taken for an attempt, with its endpoint.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Claimed {
    pub id: Uuid,
    pub endpoint_id: Uuid,
    pub event_id: Uuid,
    pub body: String,
    pub traceparent: String,
    pub attempts: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub url: String,
    pub enabled: bool,
    pub secret_sealed: String,
    pub previous_secret_sealed: Option<String>,
    pub previous_secret_until: Option<DateTime<Utc>>,
}

/// Takes delivery `id` for `lease` if it is pending, has made `after_attempts` attempts and
/// nobody else holds it; `None` otherwise (a stale or duplicate wake-up).
pub async fn claim(
    conn: &mut PgConnection,
    id: Uuid,
    after_attempts: i32,
    lease: std::time::Duration,
) -> Result<Option<Claimed>> {
    Ok(sqlx::query_as(
        "WITH taken AS (
           UPDATE webhook_deliveries SET lease_until = now() + make_interval(secs => $3)
           WHERE id = $1 AND status = 'pending' AND attempts = $2
             AND (lease_until IS NULL OR lease_until < now())
           RETURNING id, endpoint_id, event_id, body, traceparent, attempts, next_attempt_at)
         SELECT t.*, e.url, e.enabled, e.secret_sealed, e.previous_secret_sealed,
                e.previous_secret_until
         FROM taken t JOIN webhook_endpoints e ON e.id = t.endpoint_id",
    )
    .bind(id)
    .bind(after_attempts)
    .bind(lease.as_secs_f64())
    .fetch_optional(conn)
    .await?)
}

/// Lets a claimed delivery go untouched (it was woken early).
pub async fn release(conn: &mut PgConnection, id: Uuid) -> Result<()> {
    sqlx::query("UPDATE webhook_deliveries SET lease_until = NULL WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Marks a claimed delivery skipped: its endpoint is disabled.
pub async fn skip(conn: &mut PgConnection, id: Uuid) -> Result<()> {
    sqlx::query(
        "UPDATE webhook_deliveries SET status = 'skipped', lease_until = NULL,
           next_attempt_at = NULL, finished_at = now() WHERE id = $1",
    )
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

pub struct AttemptRecord<'a> {
    pub delivery: Uuid,
    pub number: i32,
    pub status_code: Option<i32>,
    pub latency_ms: i64,
    pub error: Option<&'a str>,
    /// What the delivery is now, and when it is tried again (pending only).
    pub status: DeliveryStatus,
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// Logs an attempt and moves its delivery on, in the caller's transaction; false when the
/// attempt was recorded already (a redelivered wake-up raced it).
pub async fn record_attempt(conn: &mut PgConnection, a: AttemptRecord<'_>) -> Result<bool> {
    let moved = sqlx::query(
        "UPDATE webhook_deliveries SET attempts = $2, status = $3, next_attempt_at = $4,
           lease_until = NULL,
           finished_at = CASE WHEN $3 = 'pending' THEN NULL ELSE now() END
         WHERE id = $1 AND attempts = $2 - 1",
    )
    .bind(a.delivery)
    .bind(a.number)
    .bind(a.status.as_str())
    .bind(a.next_attempt_at)
    .execute(&mut *conn)
    .await?;
    if moved.rows_affected() == 0 {
        return Ok(false);
    }
    sqlx::query(
        "INSERT INTO webhook_attempts (delivery_id, number, status_code, latency_ms, error)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(a.delivery)
    .bind(a.number)
    .bind(a.status_code)
    .bind(a.latency_ms)
    .bind(a.error)
    .execute(conn)
    .await?;
    Ok(true)
}

/// Disables an endpoint, saying why (a 410 from its receiver).
pub async fn disable_endpoint(conn: &mut PgConnection, id: Uuid, reason: &str) -> Result<()> {
    sqlx::query(
        "UPDATE webhook_endpoints SET enabled = false, disabled_reason = $2,
           disabled_at = now(), updated_at = now() WHERE id = $1 AND enabled",
    )
    .bind(id)
    .bind(reason)
    .execute(conn)
    .await?;
    Ok(())
}

/// Pending deliveries overdue by more than `grace` that nobody holds: their wake-up was
/// lost (a crash between commit and publish, a broker that lost it).
pub async fn overdue(
    conn: &mut PgConnection,
    grace: std::time::Duration,
    limit: i64,
) -> Result<Vec<(Uuid, i32)>> {
    Ok(sqlx::query_as(
        "SELECT id, attempts FROM webhook_deliveries
         WHERE status = 'pending' AND next_attempt_at < now() - make_interval(secs => $1)
           AND (lease_until IS NULL OR lease_until < now())
         ORDER BY next_attempt_at LIMIT $2",
    )
    .bind(grace.as_secs_f64())
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// Forgets finished deliveries: the oldest `batch` that may go, each with the rest of its
/// event's deliveries to its endpoint (and, by cascade, their attempts); how many went. An
/// event's deliveries to an endpoint go together, and only when every one of them, the
/// redeliveries included, has finished more than `keep` ago: a redelivery never outlives
/// the delivery it names (two of them would then both claim to be the first).
pub async fn prune_finished(
    conn: &mut PgConnection,
    keep: std::time::Duration,
    batch: i64,
) -> Result<u64> {
    let done = sqlx::query(
        "WITH cut AS (SELECT now() - make_interval(secs => $1) AS at),
         done AS (
             SELECT DISTINCT event_id, endpoint_id FROM (
                 SELECT w.event_id, w.endpoint_id FROM webhook_deliveries w, cut
                 WHERE w.status <> 'pending' AND w.finished_at < cut.at
                   AND NOT EXISTS (
                       SELECT 1 FROM webhook_deliveries x
                       WHERE x.event_id = w.event_id AND x.endpoint_id = w.endpoint_id
                         AND (x.status = 'pending' OR x.finished_at >= cut.at))
                 ORDER BY w.finished_at LIMIT $2) oldest
         )
         DELETE FROM webhook_deliveries w USING done d
         WHERE w.event_id = d.event_id AND w.endpoint_id = d.endpoint_id",
    )
    .bind(keep.as_secs_f64())
    .bind(batch.max(1))
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

#[derive(sqlx::FromRow)]
struct DeliveryRow {
    id: Uuid,
    endpoint_id: Uuid,
    event_id: Uuid,
    event_type: String,
    status: String,
    next_attempt_at: Option<DateTime<Utc>>,
    redelivery_of: Option<Uuid>,
    created_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct AttemptRow {
    delivery_id: Uuid,
    number: i32,
    at: DateTime<Utc>,
    status_code: Option<i32>,
    latency_ms: i64,
    error: Option<String>,
}

const DELIVERY: &str = "id, endpoint_id, event_id, event_type, status, next_attempt_at,
    redelivery_of, created_at, finished_at";

async fn with_attempts(
    conn: &mut PgConnection,
    rows: Vec<DeliveryRow>,
) -> Result<Vec<WebhookDelivery>> {
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let attempts: Vec<AttemptRow> = sqlx::query_as(
        "SELECT delivery_id, number, at, status_code, latency_ms, error FROM webhook_attempts
         WHERE delivery_id = ANY($1) ORDER BY delivery_id, number",
    )
    .bind(&ids)
    .fetch_all(conn)
    .await?;
    let mut by: HashMap<Uuid, Vec<WebhookAttempt>> = HashMap::new();
    for a in attempts {
        by.entry(a.delivery_id).or_default().push(WebhookAttempt {
            number: a.number,
            at: a.at,
            status_code: a.status_code,
            latency_ms: a.latency_ms,
            error: a.error,
        });
    }
    Ok(rows
        .into_iter()
        .map(|r| WebhookDelivery {
            attempts: by.remove(&r.id).unwrap_or_default(),
            id: r.id,
            webhook_id: r.endpoint_id,
            event_id: r.event_id,
            event_type: r.event_type,
            status: DeliveryStatus::parse(&r.status).unwrap_or(DeliveryStatus::Failed),
            next_attempt_at: r.next_attempt_at,
            redelivery_of: r.redelivery_of,
            created_at: r.created_at,
            finished_at: r.finished_at,
        })
        .collect())
}

/// An endpoint's deliveries, newest first, with their attempts.
pub async fn deliveries_of(
    conn: &mut PgConnection,
    endpoint: Uuid,
    limit: i64,
    offset: i64,
) -> Result<Vec<WebhookDelivery>> {
    let rows: Vec<DeliveryRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {DELIVERY} FROM webhook_deliveries WHERE endpoint_id = $1
         ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3"
    )))
    .bind(endpoint)
    .bind(limit)
    .bind(offset)
    .fetch_all(&mut *conn)
    .await?;
    with_attempts(conn, rows).await
}

pub async fn get_delivery(conn: &mut PgConnection, id: Uuid) -> Result<Option<WebhookDelivery>> {
    let rows: Vec<DeliveryRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {DELIVERY} FROM webhook_deliveries WHERE id = $1"
    )))
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    Ok(with_attempts(conn, rows).await?.pop())
}

/// A new delivery of the same event (same body, same `webhook-id`) to the same endpoint,
/// due now; `None` when `id` is not a delivery.
pub async fn redeliver(conn: &mut PgConnection, id: Uuid) -> Result<Option<Uuid>> {
    Ok(sqlx::query_scalar(
        "INSERT INTO webhook_deliveries
           (id, endpoint_id, event_id, event_type, body, traceparent, next_attempt_at,
            redelivery_of)
         SELECT $2, endpoint_id, event_id, event_type, body, traceparent, now(), id
         FROM webhook_deliveries WHERE id = $1 RETURNING id",
    )
    .bind(id)
    .bind(Uuid::now_v7())
    .fetch_optional(conn)
    .await?)
}
