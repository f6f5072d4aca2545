//! The `/api/v1` routes, one module per resource. A route parses and answers; what it
//! queues, it queues through [`crate::intake`].

pub mod audit;
pub mod backup_targets;
pub mod clients;
pub mod dead;
pub mod ops;
pub mod platforms;
pub mod retention;
pub mod schedules;
pub mod servers;
pub mod sites;
pub mod tasks;
pub mod tokens;
pub mod webhooks;

use crate::error::ApiError;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_contracts::Task;

/// 202 with the task and its Location.
pub fn accepted(task: Task) -> Response {
    let location = format!("/api/v1/tasks/{}", task.id);
    (
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        axum::Json(task),
    )
        .into_response()
}

/// The longest page a list returns.
pub const MAX_PAGE: i64 = 500;

/// A page's `limit` (default 50) and `offset` (default 0), checked.
pub fn page_bounds(limit: Option<i64>, offset: Option<i64>) -> Result<(i64, i64), ApiError> {
    let limit = limit.unwrap_or(50);
    let offset = offset.unwrap_or(0);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "limit must be 1 to {MAX_PAGE}"
        )));
    }
    if offset < 0 {
        return Err(ApiError::BadRequest("offset must be 0 or more".into()));
    }
    Ok((limit, offset))
}
