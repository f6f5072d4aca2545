//! `/api/v1/webhooks` and `/api/v1/webhook-deliveries`: signed webhook endpoints, their
//! deliveries and redelivery (decision 0021). A secret is shown once, when it is made (on
//! create and on rotate); it is sealed at rest and never answered again.

use super::page_bounds;
use crate::AppState;
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery};
use crate::guard::Caller;
use axum::Extension;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_contracts::webhook::{
    CreatedWebhook, NewWebhook, RotatedSecret, Webhook, WebhookChange, WebhookDelivery, WebhookWake,
};
use berth_contracts::{NoticeEvent, TaskType, exchanges};
use berth_store::outbox::{self, OutboxMessage};
use berth_store::webhooks::{self as stored, NewEndpoint};
use berth_webhook::{Filter, Secret};
use serde::Deserialize;
use uuid::Uuid;

const MAX_FILTERS: usize = 50;
const MAX_URL: usize = 2048;
const MAX_DESCRIPTION: usize = 500;

fn not_found(id: Uuid) -> ApiError {
    ApiError::NotFound(format!("webhook `{id}` not found"))
}

/// 404 unless the endpoint exists and the caller may see it (a client's token: its own).
async fn visible(conn: &mut sqlx::PgConnection, caller: &Caller, id: Uuid) -> Result<(), ApiError> {
    match stored::get_endpoint(conn, id, caller.visibility()).await? {
        Some(_) => Ok(()),
        None => Err(not_found(id)),
    }
}

/// The client an endpoint is bound to: a client's token binds it to its own (naming another
/// is as if it did not exist); an operator's may name any existing client, or none.
async fn bound_client(
    conn: &mut sqlx::PgConnection,
    caller: &Caller,
    asked: Option<Uuid>,
) -> Result<Option<Uuid>, ApiError> {
    let unknown = |c: Uuid| ApiError::Unprocessable(format!("client: `{c}` does not exist"));
    match (caller.visibility().client(), asked) {
        (Some(own), None) => Ok(Some(own)),
        (Some(own), Some(c)) if c == own => Ok(Some(own)),
        (Some(_), Some(c)) => Err(unknown(c)),
        (None, None) => Ok(None),
        (None, Some(c)) => match berth_store::clients::get_by_id(conn, c).await? {
            Some(_) => Ok(Some(c)),
            None => Err(unknown(c)),
        },
    }
}

/// Checks the event filters: at least one, each known.
fn check_events(events: &[String]) -> Result<(), ApiError> {
    if events.is_empty() || events.len() > MAX_FILTERS {
        return Err(ApiError::Unprocessable(format!(
            "events: give 1 to {MAX_FILTERS} filters, e.g. [\"task.finished\"], [\"site.*\"] or \
             [\"task.finished:install:failed\"]"
        )));
    }
    let types: Vec<&str> = TaskType::ALL.iter().map(|t| t.as_str()).collect();
    for e in events {
        Filter::parse(e, &NoticeEvent::KINDS, &types)
            .map_err(|err| ApiError::Unprocessable(format!("events: {err}")))?;
    }
    Ok(())
}

/// Checks the URL's form and, unless private targets are allowed, every address its host
/// resolves to (the notices service checks again at each delivery).
async fn check_url(state: &AppState, url: &str) -> Result<(), ApiError> {
    if url.len() > MAX_URL || url.chars().any(char::is_control) {
        return Err(ApiError::Unprocessable(format!(
            "url: at most {MAX_URL} characters, none of them control characters"
        )));
    }
    let (_, host, port) =
        berth_webhook::check_url(url).map_err(|e| ApiError::Unprocessable(format!("url: {e}")))?;
    if state.webhooks_allow_private {
        return Ok(());
    }
    let addrs = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| ApiError::Unprocessable(format!("url: cannot resolve `{host}`: {e}")))?;
    for a in addrs {
        berth_webhook::check_addr(&host, a.ip(), false)
            .map_err(|e| ApiError::Unprocessable(format!("url: {e}")))?;
    }
    Ok(())
}

pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<NewWebhook>,
) -> Result<Response, ApiError> {
    check_events(&body.events)?;
    if body.description.len() > MAX_DESCRIPTION || body.description.contains('\0') {
        return Err(ApiError::Unprocessable(format!(
            "description: at most {MAX_DESCRIPTION} bytes, no NUL"
        )));
    }
    check_url(&state, &body.url).await?;
    let secret = Secret::generate();
    let sealed = state.secret_key.seal(&secret.expose());
    let mut conn = state.store.pool.acquire().await?;
    let client_id = bound_client(&mut conn, &caller, body.client).await?;
    let row = stored::insert_endpoint(
        &mut conn,
        NewEndpoint {
            id: Uuid::now_v7(),
            url: &body.url,
            events: &body.events,
            client_id,
            description: &body.description,
            secret_sealed: &sealed,
        },
    )
    .await?;
    let location = format!("/api/v1/webhooks/{}", row.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        axum::Json(CreatedWebhook {
            webhook: row.into_contract(),
            secret: secret.expose(),
        }),
    )
        .into_response())
}

pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<axum::Json<Vec<Webhook>>, ApiError> {
    let mut conn = state.store.pool.acquire().await?;
    let rows = stored::list_endpoints(&mut conn, caller.visibility()).await?;
    Ok(axum::Json(
        rows.into_iter().map(|r| r.into_contract()).collect(),
    ))
}

pub async fn show(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<axum::Json<Webhook>, ApiError> {
    let mut conn = state.store.pool.acquire().await?;
    stored::get_endpoint(&mut conn, id, caller.visibility())
        .await?
        .map(|r| axum::Json(r.into_contract()))
        .ok_or_else(|| not_found(id))
}

pub async fn change(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<WebhookChange>,
) -> Result<axum::Json<Webhook>, ApiError> {
    visible(&mut *state.store.pool.acquire().await?, &caller, id).await?;
    if let Some(events) = &body.events {
        check_events(events)?;
    }
    if let Some(url) = &body.url {
        check_url(&state, url).await?;
    }
    let mut conn = state.store.pool.acquire().await?;
    stored::update_endpoint(
        &mut conn,
        id,
        body.url.as_deref(),
        body.events.as_deref(),
        body.enabled,
    )
    .await?
    .map(|r| axum::Json(r.into_contract()))
    .ok_or_else(|| not_found(id))
}

/// Deletes the endpoint and its delivery log; pending deliveries are dropped.
pub async fn remove(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    let mut conn = state.store.pool.acquire().await?;
    visible(&mut conn, &caller, id).await?;
    if stored::delete_endpoint(&mut conn, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found(id))
    }
}

/// A new secret, shown once; the previous one signs too until the grace ends.
pub async fn rotate_secret(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<axum::Json<RotatedSecret>, ApiError> {
    visible(&mut *state.store.pool.acquire().await?, &caller, id).await?;
    let secret = Secret::generate();
    let sealed = state.secret_key.seal(&secret.expose());
    let until = chrono::Utc::now()
        + chrono::Duration::from_std(state.webhooks_rotation_grace).unwrap_or_default();
    let mut conn = state.store.pool.acquire().await?;
    stored::rotate_secret(&mut conn, id, &sealed, until)
        .await?
        .ok_or_else(|| not_found(id))?;
    Ok(axum::Json(RotatedSecret {
        id,
        secret: secret.expose(),
        previous_secret_until: until,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    limit: Option<i64>,
    offset: Option<i64>,
}

/// The endpoint's deliveries, newest first, each with its attempts.
pub async fn deliveries(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<axum::Json<Vec<WebhookDelivery>>, ApiError> {
    let (limit, offset) = page_bounds(q.limit, q.offset)?;
    let mut conn = state.store.pool.acquire().await?;
    visible(&mut conn, &caller, id).await?;
    Ok(axum::Json(
        stored::deliveries_of(&mut conn, id, limit, offset).await?,
    ))
}

/// Delivers the event again to the same endpoint, as a new delivery (same body, same
/// `webhook-id`) with a fresh retry schedule: 202 with it.
pub async fn redeliver(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Response, ApiError> {
    let gone = || ApiError::NotFound(format!("webhook delivery `{id}` not found"));
    let mut tx = state.store.pool.begin().await?;
    let endpoint = stored::endpoint_of_delivery(&mut tx, id)
        .await?
        .ok_or_else(gone)?;
    visible(&mut tx, &caller, endpoint)
        .await
        .map_err(|_| gone())?;
    let Some(new) = stored::redeliver(&mut tx, id).await? else {
        return Err(gone());
    };
    let wake = WebhookWake {
        delivery_id: new,
        after_attempts: 0,
    };
    let row = outbox::enqueue(
        &mut tx,
        OutboxMessage {
            exchange: exchanges::WEBHOOKS,
            routing_key: exchanges::WEBHOOK_KEY,
            message_id: format!("{new}:0"),
            payload: serde_json::to_value(&wake).expect("serialisable"),
            traceparent: "",
            attempt: 1,
            task_id: None,
        },
    )
    .await?;
    let delivery = stored::get_delivery(&mut tx, new)
        .await?
        .ok_or_else(|| ApiError::Internal("the new delivery vanished".into()))?;
    tx.commit().await?;
    state.outbox.publish(vec![row]);
    Ok((StatusCode::ACCEPTED, axum::Json(delivery)).into_response())
}
