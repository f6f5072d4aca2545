//! `GET /api/v1/audit`: who asked for what (every mutating request), newest first.

use super::page_bounds;
use crate::AppState;
use crate::error::{ApiError, ApiQuery};
use axum::extract::State;
use berth_contracts::Page;
use berth_store::audit::{AuditEntry, AuditFilter};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    since: Option<String>,
    token: Option<String>,
    client: Option<String>,
    path: Option<String>,
    status: Option<i32>,
    limit: Option<i64>,
    offset: Option<i64>,
}

pub async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<axum::Json<Page<AuditEntry>>, ApiError> {
    let since = match &q.since {
        None => None,
        Some(s) => Some(
            DateTime::parse_from_rfc3339(s)
                .map_err(|_| {
                    ApiError::BadRequest(format!(
                        "since `{s}` is not an RFC 3339 time (e.g. 2026-12-05T10:00:00Z)"
                    ))
                })?
                .with_timezone(&Utc),
        ),
    };
    let token = match &q.token {
        None => None,
        Some(t) => Some(
            Uuid::parse_str(t)
                .map_err(|_| ApiError::BadRequest(format!("token `{t}` is not a token id")))?,
        ),
    };
    if q.status.is_some_and(|s| !(100..=599).contains(&s)) {
        return Err(ApiError::BadRequest("status must be 100 to 599".into()));
    }
    let (limit, offset) = page_bounds(q.limit, q.offset)?;
    Ok(axum::Json(
        state
            .store
            .list_audit(&AuditFilter {
                since,
                token,
                client: q.client,
                path_prefix: q.path,
                status: q.status,
                limit,
                offset,
            })
            .await?,
    ))
}
