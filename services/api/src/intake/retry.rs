//! A retry: a failed (or cancelled) task queued again as it was.

use super::queue_row;
use crate::AppState;
use crate::error::ApiError;
use crate::guard::Caller;
use berth_contracts::task::TaskArgs;
use berth_contracts::{TargetKind, Task, TaskStatus};
use berth_hosting::sites::status as site_status;
use berth_hosting::tasks::TaskType;
use berth_store::Store;
use berth_store::site_names::{self, NameKind};
use berth_store::tasks as stored;
use uuid::Uuid;

/// Retries a failed (or cancelled) task as a new task with the same type, target, arguments
/// and secrets; the new task names the old one in `retry_of`.
pub async fn requeue(state: &AppState, caller: &Caller, id: Uuid) -> Result<Task, ApiError> {
    let old = state
        .store
        .get_visible_task(id, caller.visibility())
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("task {id} not found")))?;
    if !matches!(old.status, TaskStatus::Error | TaskStatus::Cancelled) {
        return Err(ApiError::Conflict(format!(
            "task {id} is {}: only a failed or cancelled task can be retried",
            old.status.as_str()
        )));
    }
    if old.target_kind == TargetKind::Site
        && let Some(why) = site_gone(&state.store, &old).await?
    {
        return Err(ApiError::Conflict(why));
    }
    let task_type = TaskType::parse(&old.task_type)
        .map_err(|e| ApiError::Conflict(format!("task {id} cannot be retried: {e}")))?;
    let args = TaskArgs::from_stored(task_type, &old.args).map_err(|e| {
        ApiError::Conflict(format!(
            "task {id} cannot be retried: its arguments do not read ({e}); queue a new task"
        ))
    })?;
    let mut tx = state.store.pool.begin().await?;
    let (task, message) = queue_row(
        state,
        &mut tx,
        caller,
        task_type,
        &old.target,
        old.target_kind,
        &args,
        Some(old.id),
    )
    .await?;
    if let TaskArgs::Migrate(m) = &args
        && m.to.uri != old.target
    {
        // As the first migrate did: its new uri is held while it runs.
        site_names::reserve(
            &mut tx,
            &old.target,
            std::slice::from_ref(&m.to.uri),
            NameKind::Rename,
            Some(task.id),
        )
        .await?;
    }
    // The retry needs the secrets the task came with (a restore's new database password).
    stored::copy_task_secrets(&mut tx, task.id, old.id).await?;
    tx.commit().await?;
    state.outbox.publish(vec![message]);
    Ok(task)
}

/// Why a task of a site cannot be retried: the site is gone (deleted, or forgotten), or the
/// uri is another site's now (deleted and created again since the task).
async fn site_gone(store: &Store, old: &Task) -> Result<Option<String>, ApiError> {
    let uri = &old.target;
    let again = format!(
        "queue a new task for the site if it exists again, or create it again (POST \
         /api/v1/sites, `berth sites create --uri {uri} …`)"
    );
    Ok(match store.get_site(uri).await? {
        None => Some(format!(
            "task {} cannot be retried: site `{uri}` no longer exists; {again}",
            old.id
        )),
        Some(site) if site.status == site_status::DELETED => Some(format!(
            "task {} cannot be retried: site `{uri}` was deleted (its row and history stay); \
             {again}",
            old.id
        )),
        Some(site) if site.created_at > old.created_at => Some(format!(
            "task {} cannot be retried: it was for an earlier site `{uri}`, deleted since; the \
             site of that name now is another; queue a new task for it instead",
            old.id
        )),
        Some(_) => None,
    })
}
