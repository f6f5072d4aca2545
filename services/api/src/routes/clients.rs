//! `/api/v1/clients`: tenants. A site belongs to one; a client-bound token sees its own.
//! Suspending and cancelling are built on the `status` kept here.

use crate::AppState;
use crate::error::{ApiError, ApiJson, ApiPath};
use crate::guard::Caller;
use axum::Extension;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_contracts::{
    Client, ClientCancel, ClientChange, ClientStanding, ClientUsage, NewClient, Quotas,
};
use berth_hosting::tasks::TaskType;
use berth_store::clients::{self, ClientRow, Standing, Usage};

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
        delete_sites_after: row.cancel_after,
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

/// How long a cancelled client's sites stay (suspended) before they are deleted, unless the
/// request says otherwise.
pub const DEFAULT_CANCEL_GRACE_SECS: u32 = 14 * 24 * 3600;

/// Suspends a client: each of its sites serves the "site suspended" page (a `suspend` task
/// each, queued in the same transaction as the status); nothing else of them changes.
pub async fn suspend(
    state: State<AppState>,
    caller: Extension<Caller>,
    name: ApiPath<String>,
) -> Result<Response, ApiError> {
    set_standing(state, caller, name, Standing::Suspended).await
}

/// Takes a suspension or a cancellation (within its grace) back: the sites serve as they
/// did before (an `unsuspend` task each).
pub async fn unsuspend(
    state: State<AppState>,
    caller: Extension<Caller>,
    name: ApiPath<String>,
) -> Result<Response, ApiError> {
    set_standing(state, caller, name, Standing::Active).await
}

/// Cancels a client: its sites are suspended now and deleted after the grace, each with a
/// backup first (the scheduler queues the deletes; the backups stay).
pub async fn cancel(
    state: State<AppState>,
    caller: Extension<Caller>,
    name: ApiPath<String>,
    ApiJson(body): ApiJson<ClientCancel>,
) -> Result<Response, ApiError> {
    let grace = body.grace_seconds.unwrap_or(DEFAULT_CANCEL_GRACE_SECS);
    let delete_after = chrono::Utc::now() + chrono::Duration::seconds(grace.into());
    set_standing(state, caller, name, Standing::Cancelled { delete_after }).await
}

/// The task a change of standing queues on each serving site, or the refusal when the
/// client already stands so (`current`: its status now).
fn standing_task(current: &str, to: Standing) -> Result<TaskType, &'static str> {
    match (current, to) {
        ("active", Standing::Active) => Err("is active already"),
        ("suspended", Standing::Suspended) => Err("is suspended already"),
        ("cancelled", Standing::Suspended) => {
            Err("is cancelled (its sites are suspended already); unsuspend takes that back")
        }
        ("cancelled", Standing::Cancelled { .. }) => Err("is cancelled already"),
        (_, Standing::Active) => Ok(TaskType::Unsuspend),
        (_, Standing::Suspended | Standing::Cancelled { .. }) => Ok(TaskType::Suspend),
    }
}

async fn set_standing(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(name): ApiPath<String>,
    to: Standing,
) -> Result<Response, ApiError> {
    let mut tx = state.store.pool.begin().await?;
    let row = clients::get(&mut tx, &name, caller.visibility())
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("client `{name}` not found")))?;
    let row = clients::lock(&mut tx, row.id).await?;
    if row.sites_deleted_at.is_some() {
        return Err(ApiError::Conflict(format!(
            "client `{name}` was cancelled and its sites are being deleted: nothing to change"
        )));
    }
    let task_type = standing_task(&row.status, to)
        .map_err(|why| ApiError::Conflict(format!("client `{name}` {why}")))?;
    let sites = clients::serving_sites(&mut tx, row.id).await?;
    if let Standing::Cancelled { .. } = to {
        let guarded: Vec<&str> = sites
            .iter()
            .filter(|(_, g)| *g)
            .map(|(u, _)| u.as_str())
            .collect();
        if !guarded.is_empty() {
            return Err(ApiError::Conflict(format!(
                "client `{name}` has guarded sites ({}): a cancellation would delete them; \
                 unguard them first (PATCH /api/v1/sites/{{uri}} {{\"guarded\": false}})",
                guarded.join(", ")
            )));
        }
    }
    clients::set_standing(&mut tx, row.id, to).await?;
    let uris: Vec<String> = sites.into_iter().map(|(u, _)| u).collect();
    let queued = crate::intake::queue_on_sites(&state, &mut tx, &caller, task_type, &uris).await?;
    let row = clients::get_by_id(&mut tx, row.id)
        .await?
        .ok_or_else(|| ApiError::Internal("client vanished".into()))?;
    let usage = clients::usage(&mut tx, row.id).await?;
    tx.commit().await?;
    let (tasks, rows): (Vec<_>, Vec<_>) = queued.into_iter().unzip();
    state.outbox.publish(rows);
    tracing::info!(client = %row.name, status = %row.status, tasks = tasks.len(), "client standing changed");
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(ClientStanding {
            client: view(row, usage),
            tasks: tasks.into_iter().map(|t| t.id).collect(),
        }),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_standing_change_queues_suspends_or_unsuspends_and_refuses_a_repeat() {
        let cancel = Standing::Cancelled {
            delete_after: chrono::Utc::now(),
        };
        assert_eq!(
            standing_task("active", Standing::Suspended),
            Ok(TaskType::Suspend)
        );
        assert_eq!(standing_task("active", cancel), Ok(TaskType::Suspend));
        assert_eq!(standing_task("suspended", cancel), Ok(TaskType::Suspend));
        assert_eq!(
            standing_task("suspended", Standing::Active),
            Ok(TaskType::Unsuspend)
        );
        assert_eq!(
            standing_task("cancelled", Standing::Active),
            Ok(TaskType::Unsuspend)
        );
        assert!(standing_task("active", Standing::Active).is_err());
        assert!(standing_task("suspended", Standing::Suspended).is_err());
        assert!(standing_task("cancelled", Standing::Suspended).is_err());
        assert!(standing_task("cancelled", cancel).is_err());
    }
}
