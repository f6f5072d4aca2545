//! `/api/v1/backup-targets`: S3-compatible stores backups are copied to (decision 0017).
//! The secret access key is sealed on save and never answered.

use crate::AppState;
use crate::error::{ApiError, ApiJson, ApiPath};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_contracts::{BackupTarget, BackupTargetChange, NewBackupTarget};
use berth_hosting::offsite::{check_new_target, check_target_name};
use berth_store::offsite::{self, TargetRemoval};

pub async fn create(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<NewBackupTarget>,
) -> Result<Response, ApiError> {
    check_new_target(&body).map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    if let Some(r) = &body.retention {
        check_retention(r)?;
    }
    let sealed = state.secret_key.seal(&body.secret_access_key);
    let mut conn = state.store.pool.acquire().await?;
    let target = offsite::insert_target(&mut conn, &body, &sealed).await?;
    let location = format!("/api/v1/backup-targets/{}", target.name);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        axum::Json(target),
    )
        .into_response())
}

pub async fn list(
    State(state): State<AppState>,
) -> Result<axum::Json<Vec<BackupTarget>>, ApiError> {
    Ok(axum::Json(state.store.backup_targets().await?))
}

fn not_found(name: &str) -> ApiError {
    ApiError::NotFound(format!("backup target `{name}` not found"))
}

pub async fn show(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<axum::Json<BackupTarget>, ApiError> {
    check_target_name(&name).map_err(|_| not_found(&name))?;
    state
        .store
        .backup_target(&name)
        .await?
        .map(axum::Json)
        .ok_or_else(|| not_found(&name))
}

/// A target's retention is a policy as a prune schedule's is (at least one keep rule).
fn check_retention(r: &berth_contracts::schedule::RetentionSpec) -> Result<(), ApiError> {
    berth_hosting::retention::policy(r)
        .map(|_| ())
        .map_err(|e| ApiError::Unprocessable(format!("retention: {}", e.0)))
}

/// Sets or drops the target's own retention; the next prune of each site follows it.
pub async fn change(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<BackupTargetChange>,
) -> Result<axum::Json<BackupTarget>, ApiError> {
    check_target_name(&name).map_err(|_| not_found(&name))?;
    if let Some(r) = &body.retention {
        check_retention(r)?;
    }
    let mut conn = state.store.pool.acquire().await?;
    offsite::set_target_retention(&mut conn, &name, body.retention.as_ref())
        .await?
        .map(axum::Json)
        .ok_or_else(|| not_found(&name))
}

/// Refused while live copies are on it: they would be left unreachable by berth.
pub async fn remove(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    check_target_name(&name).map_err(|_| not_found(&name))?;
    let mut tx = state.store.pool.begin().await?;
    match offsite::delete_target(&mut tx, &name).await? {
        TargetRemoval::Removed => {
            tx.commit().await?;
            Ok(StatusCode::NO_CONTENT)
        }
        TargetRemoval::NotFound => Err(not_found(&name)),
        TargetRemoval::InUse(n) => Err(ApiError::Conflict(format!(
            "backup target `{name}` holds {n} copy(ies) of backups: delete those backups \
             (backup-delete removes their copies) before the target"
        ))),
    }
}
