//! `/api/v1/tasks`: accept, list, show, follow, cancel and retry tasks.

use super::{accepted, page_bounds};
use crate::AppState;
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery};
use crate::guard::Caller;
use crate::intake::{self, Intake};
use axum::Extension;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use berth_contracts::{NewTask, Page, Task, TaskStatus};
use berth_hosting::tasks::TaskType;
use berth_store::tasks::{Cancelled, TaskFilter};
use serde::Deserialize;
use uuid::Uuid;

/// Accepts a task (202, its Location): the intake checks, queues and publishes it.
pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<NewTask>,
) -> Result<Response, ApiError> {
    let task_type =
        TaskType::parse(&body.task_type).map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    let task = intake::queue(
        &state,
        &caller,
        Intake {
            task_type,
            target: body.target,
            args: body.args,
        },
    )
    .await?;
    Ok(accepted(task))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    status: Option<String>,
    #[serde(rename = "type")]
    task_type: Option<String>,
    target: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<axum::Json<Page<Task>>, ApiError> {
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(TaskStatus::parse(s).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "status `{s}` is not one of queued, processing, success, warning, error, cancelled"
            ))
        })?),
    };
    let (limit, offset) = page_bounds(q.limit, q.offset)?;
    let page = state
        .store
        .list_tasks(
            &TaskFilter {
                status,
                task_type: q.task_type,
                target: q.target.map(|t| t.trim_start_matches('@').to_string()),
                limit,
                offset,
            },
            caller.visibility(),
        )
        .await?;
    Ok(axum::Json(page))
}

fn parse_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|_| ApiError::NotFound(format!("task `{id}` not found")))
}

/// The task's id, if the caller may see the task (a client's token: its sites' tasks).
async fn visible_id(state: &AppState, caller: &Caller, id: &str) -> Result<Uuid, ApiError> {
    let id = parse_id(id)?;
    if !state.store.task_visible(id, caller.visibility()).await? {
        return Err(ApiError::NotFound(format!("task {id} not found")));
    }
    Ok(id)
}

pub async fn show(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
) -> Result<axum::Json<Task>, ApiError> {
    let id = parse_id(&id)?;
    let task = state
        .store
        .get_visible_task(id, caller.visibility())
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("task {id} not found")))?;
    Ok(axum::Json(task))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogQuery {
    after: Option<i64>,
}

pub use berth_contracts::LogPage;

pub async fn log(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<LogQuery>,
) -> Result<axum::Json<LogPage>, ApiError> {
    let id = visible_id(&state, &caller, &id).await?;
    let (status, entries) = state
        .store
        .task_log(id, q.after.unwrap_or(0))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("task {id} not found")))?;
    Ok(axum::Json(LogPage { status, entries }))
}

/// Cancels a queued task at once (200); marks a processing one for cancelling and tells the
/// state service (202): it ends `cancelled` once its running step has stopped and its done
/// steps are taken back.
pub async fn cancel(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let id = visible_id(&state, &caller, &id).await?;
    let (task, done) = state.store.cancel_task(id, &caller.name).await?;
    Ok(match done {
        Cancelled::Now(notice) => {
            state.outbox.publish(notice.into_iter().collect());
            axum::Json(task).into_response()
        }
        Cancelled::Requested(m) => {
            state.outbox.publish(vec![m]);
            accepted(task)
        }
    })
}

/// Retries a failed (or cancelled) task as a new task with the same type, target and
/// arguments; the new task names the old one in `retry_of`.
pub async fn retry(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let task = intake::requeue(&state, &caller, id).await?;
    Ok(accepted(task))
}
