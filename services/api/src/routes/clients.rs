//! `/api/v1/clients`: tenants. A site belongs to one; a client-bound token sees its own.
//! Suspending and cancelling are built on the `status` kept here.

use crate::AppState;
use crate::error::{ApiError, ApiJson, ApiPath};
use crate::guard::Caller;
use axum::Extension;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_contracts::{Client, ClientChange, ClientUsage, NewClient, Quotas};
use berth_store::clients::{self, ClientRow, Usage};

/// A client name: lower case letters, digits, `.`, `_`, `-` (it appears in URLs and in
/// schedule scopes `client:<name>`).
pub fn check_name(name: &str) -> Result<(), ApiError> {
    let ok = (1..=63).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::Unprocessable(format!(
            "client name `{name}`: use 1 to 63 lower case letters, digits, `.`, `_` and `-`, \
             starting with a letter or digit (e.g. `acme`)"
        )))
    }
}

fn check_ref(field: &str, v: &Option<String>) -> Result<(), ApiError> {
    if let Some(v) = v
        && (v.is_empty() || v.len() > 200 || v.chars().any(char::is_control))
    {
        return Err(ApiError::Unprocessable(format!(
            "{field} must be 1 to 200 printable characters"
        )));
    }
    Ok(())
}

fn check_quota<T: Into<i64> + Copy>(field: &str, v: Option<T>) -> Result<(), ApiError> {
    if v.is_some_and(|v| v.into() < 0) {
        return Err(ApiError::Unprocessable(format!(
            "{field} must be 0 or more (absent: no limit)"
        )));
    }
    Ok(())
}

fn check_quotas(q: &Quotas) -> Result<(), ApiError> {
    check_quota("max_sites", q.max_sites)?;
    check_quota("max_disk_bytes", q.max_disk_bytes)?;
    check_quota("max_backup_bytes", q.max_backup_bytes)
}

pub fn view(row: ClientRow, usage: Usage) -> Client {
    Client {
        id: row.id,
        name: row.name,
        email: row.email,
        storefront: row.storefront,
        external_ref: row.external_ref,
        status: row.status,
        quotas: Quotas {
            max_sites: row.max_sites,
            max_disk_bytes: row.max_disk_bytes,
            max_backup_bytes: row.max_backup_bytes,
        },
        usage: ClientUsage {
            sites: usage.sites,
            disk_bytes: usage.disk_bytes,
            sites_unmeasured: usage.sites_unmeasured,
            backup_bytes: usage.backup_bytes,
        },
        created_at: row.created_at,
        updated_at: row.updated_at,
    }
}

/// Creates a client (201); the same (storefront, external_ref) again answers the client
/// made the first time (200), whatever else the retry says.
pub async fn create(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<NewClient>,
) -> Result<Response, ApiError> {
    check_name(&body.name)?;
    crate::routes::sites::check_email_field("email", &body.email)?;
    check_ref("storefront", &body.storefront)?;
    check_ref("external_ref", &body.external_ref)?;
    if body.storefront.is_some() != body.external_ref.is_some() {
        return Err(ApiError::Unprocessable(
            "give storefront and external_ref together (the reference is unique per storefront), or neither".into(),
        ));
    }
    check_quotas(&body.quotas)?;
    let mut tx = state.store.pool.begin().await?;
    let (row, created) = clients::create(
        &mut tx,
        clients::NewClient {
            name: &body.name,
            email: body.email.as_deref(),
            storefront: body.storefront.as_deref(),
            external_ref: body.external_ref.as_deref(),
            max_sites: body.quotas.max_sites,
            max_disk_bytes: body.quotas.max_disk_bytes,
            max_backup_bytes: body.quotas.max_backup_bytes,
        },
    )
    .await?;
    let usage = clients::usage(&mut tx, row.id).await?;
    tx.commit().await?;
    let location = format!("/api/v1/clients/{}", row.name);
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        [(header::LOCATION, location)],
        axum::Json(view(row, usage)),
    )
        .into_response())
}

pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<axum::Json<Vec<Client>>, ApiError> {
    Ok(axum::Json(
        state
            .store
            .list_clients(caller.visibility())
            .await?
            .into_iter()
            .map(|(r, u)| view(r, u))
            .collect(),
    ))
}

pub async fn show(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(name): ApiPath<String>,
) -> Result<axum::Json<Client>, ApiError> {
    let mut conn = state.store.pool.acquire().await?;
    let row = clients::get(&mut conn, &name, caller.visibility())
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("client `{name}` not found")))?;
    let usage = clients::usage(&mut conn, row.id).await?;
    Ok(axum::Json(view(row, usage)))
}

/// Changes a client's name, e-mail or quotas.
pub async fn change(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<ClientChange>,
) -> Result<axum::Json<Client>, ApiError> {
    if let Some(n) = &body.name {
        check_name(n)?;
    }
    crate::routes::sites::check_email_field("email", &body.email)?;
    check_quota("max_sites", body.max_sites.flatten())?;
    check_quota("max_disk_bytes", body.max_disk_bytes.flatten())?;
    check_quota("max_backup_bytes", body.max_backup_bytes.flatten())?;
    let mut tx = state.store.pool.begin().await?;
    let row = clients::get(&mut tx, &name, caller.visibility())
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("client `{name}` not found")))?;
    clients::lock(&mut tx, row.id).await?;
    clients::change(
        &mut tx,
        row.id,
        &clients::ClientChange {
            name: body.name.as_deref(),
            email: body.email.as_deref(),
            max_sites: body.max_sites,
            max_disk_bytes: body.max_disk_bytes,
            max_backup_bytes: body.max_backup_bytes,
        },
    )
    .await?;
    let row = clients::get_by_id(&mut tx, row.id)
        .await?
        .ok_or_else(|| ApiError::Internal("changed client vanished".into()))?;
    let usage = clients::usage(&mut tx, row.id).await?;
    tx.commit().await?;
    Ok(axum::Json(view(row, usage)))
}
