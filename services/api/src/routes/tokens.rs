//! `/api/v1/tokens`: make, list and revoke tokens. A token hands on only scopes it holds;
//! a client-bound token makes tokens bound to its own client only. The value is shown once.

use crate::AppState;
use crate::error::{ApiError, ApiJson, ApiPath};
use crate::guard::Caller;
use crate::scopes::Scopes;
use axum::Extension;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_contracts::{ApiToken, CreatedToken, TokenRequest};
use berth_store::clients::{self, Visibility};
use berth_store::tokens::{self, TokenRow};
use chrono::Utc;
use uuid::Uuid;

fn view(row: TokenRow) -> ApiToken {
    ApiToken {
        id: row.id,
        name: row.name,
        scopes: row.scope.split_whitespace().map(str::to_string).collect(),
        client: row.client,
        created_at: row.created_at,
        expires_at: row.expires_at,
        last_used_at: row.last_used_at,
        created_by: row.created_by,
    }
}

/// Whose tokens the caller sees: all (admin), else itself and those it made.
fn owner(caller: &Caller) -> Option<Uuid> {
    (!caller.scopes.is_admin()).then_some(caller.token_id)
}

pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<TokenRequest>,
) -> Result<Response, ApiError> {
    let name = body.name.trim();
    if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
        return Err(ApiError::Unprocessable(
            "name must be 1 to 100 printable characters".into(),
        ));
    }
    let scopes = Scopes::parse(body.scopes.iter().map(String::as_str)).map_err(|e| {
        if e.0.is_empty() {
            ApiError::Unprocessable("give at least one scope (e.g. `sites:read`)".into())
        } else {
            ApiError::Unprocessable(e.to_string())
        }
    })?;
    if !caller.scopes.covers(&scopes) {
        return Err(ApiError::Forbidden(format!(
            "a token may hand on only scopes it holds: this one holds `{}`, not all of `{}`",
            caller.scopes.to_stored(),
            scopes.to_stored()
        )));
    }
    if let Some(at) = body.expires_at
        && at <= Utc::now()
    {
        return Err(ApiError::Unprocessable(
            "expires_at is in the past: give a time to come (RFC 3339), or none".into(),
        ));
    }
    let mut tx = state.store.pool.begin().await?;
    // A bound caller makes tokens for its own client; another client's name is unknown to it.
    let client = match (&caller.client, &body.client) {
        (Some(mine), None) => Some(mine.id),
        (mine, Some(name)) => {
            let seen = mine
                .as_ref()
                .map_or(Visibility::All, |c| Visibility::Client(c.id));
            let row = clients::get(&mut tx, name, seen).await?.ok_or_else(|| {
                if mine.is_some() {
                    ApiError::NotFound(format!("client `{name}` not found"))
                } else {
                    ApiError::Unprocessable(format!(
                        "client `{name}` does not exist (see GET /api/v1/clients)"
                    ))
                }
            })?;
            Some(row.id)
        }
        (None, None) => None,
    };
    if client.is_some()
        && let Some(s) = scopes.iter().find(|s| !s.for_clients())
    {
        return Err(ApiError::Unprocessable(format!(
            "a token bound to a client cannot hold `{s}`: it may hold sites, backups, tasks, \
             schedules, webhooks and tokens (read or write), platforms:read and clients:read"
        )));
    }
    let (token, row) = tokens::insert(
        &mut tx,
        tokens::NewToken {
            name,
            scope: &scopes.to_stored(),
            client_id: client,
            expires_at: body.expires_at,
            created_by: Some(caller.token_id),
        },
    )
    .await?;
    tx.commit().await?;
    let location = format!("/api/v1/tokens/{}", row.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        axum::Json(CreatedToken {
            info: view(row),
            token,
        }),
    )
        .into_response())
}

pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<axum::Json<Vec<ApiToken>>, ApiError> {
    Ok(axum::Json(
        state
            .store
            .list_tokens(owner(&caller))
            .await?
            .into_iter()
            .map(view)
            .collect(),
    ))
}

/// Revokes a token (204): it authenticates no more. Others' tokens are 404 to a non-admin.
pub async fn revoke(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let not_found = || ApiError::NotFound(format!("token `{id}` not found"));
    let uuid = Uuid::parse_str(&id).map_err(|_| not_found())?;
    let mut tx = state.store.pool.begin().await?;
    match tokens::get(&mut tx, uuid, owner(&caller)).await? {
        Some(t) if t.revoked_at.is_none() => tokens::revoke(&mut tx, uuid).await?,
        _ => return Err(not_found()),
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
