//! `/api/v1/dead-letters`: steps that failed for good; replay or discard them.

use crate::AppState;
use crate::error::{ApiError, ApiPath, ApiQuery};
use crate::guard::Caller;
use crate::routes::{accepted, page_bounds};
use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use berth_contracts::{DeadLetter, Page};
use serde::Deserialize;
use uuid::Uuid;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    limit: Option<i64>,
    offset: Option<i64>,
}

pub async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<axum::Json<Page<DeadLetter>>, ApiError> {
    let (limit, offset) = page_bounds(q.limit, q.offset)?;
    let (items, total) = state.store.list_dead_letters(limit, offset).await?;
    Ok(axum::Json(Page {
        items,
        total,
        limit,
        offset,
    }))
}

fn parse_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|_| ApiError::NotFound(format!("dead letter `{id}` not found")))
}

pub async fn show(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<axum::Json<DeadLetter>, ApiError> {
    let id = parse_id(&id)?;
    Ok(axum::Json(
        state
            .store
            .get_dead_letter(id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("dead letter {id} not found")))?,
    ))
}

/// Puts the task back in the queue from its failed step (from the start when its earlier
/// steps were taken back); the dispatcher sends the step again.
pub async fn replay(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let (task, message) = state.store.replay_dead_letter(id, &caller.name).await?;
    state.outbox.publish(vec![message]);
    Ok(accepted(task))
}

pub async fn discard(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id)?;
    if state.store.discard_dead_letter(id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("dead letter {id} not found")))
    }
}
