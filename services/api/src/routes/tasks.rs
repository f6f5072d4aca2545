//! `/api/v1/tasks`: accept, list, show, follow, cancel and retry tasks.

use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery};
use crate::guard::Caller;
use crate::{AppState, queue_task_tx};
use axum::Extension;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_contracts::{NewTask, Page, TargetKind, Task, TaskStatus};
use berth_hosting::sites::{check_status, status as site_status};
use berth_hosting::tasks::{self, TaskType};
use berth_hosting::{HostName, PlatformName, ServerName};
use berth_store::tasks::TaskFilter;
use serde::Deserialize;
use uuid::Uuid;

/// Which kind of context a name is, by Aegir's naming rules, and whether it exists.
async fn resolve_target(state: &AppState, target: &str) -> Result<TargetKind, ApiError> {
    let target = target.strip_prefix('@').unwrap_or(target);
    if target.starts_with("server_") {
        let name = ServerName::parse(target).map_err(|e| ApiError::Unprocessable(e.to_string()))?;
        if !state.store.server_exists(name.as_str()).await? {
            return Err(ApiError::Unprocessable(format!(
                "target server `{name}` does not exist"
            )));
        }
        return Ok(TargetKind::Server);
    }
    if target.starts_with("platform_") {
        let name =
            PlatformName::parse(target).map_err(|e| ApiError::Unprocessable(e.to_string()))?;
        match state.store.get_platform(name.as_str()).await? {
            Some(p) if p.status != "deleted" => return Ok(TargetKind::Platform),
            _ => {
                return Err(ApiError::Unprocessable(format!(
                    "target platform `{name}` does not exist"
                )));
            }
        }
    }
    HostName::parse(target).map_err(|e| ApiError::Unprocessable(format!("target: {e}")))?;
    match state.store.get_site(target).await? {
        Some(s) if s.status != site_status::DELETED => Ok(TargetKind::Site),
        _ => Err(ApiError::Unprocessable(format!(
            "target site `{target}` does not exist"
        ))),
    }
}

/// A restore's arguments: the backup to restore (it must be the site's and still exist),
/// the backup taken first, and the new database the site moves to; and the new database's
/// password, sealed, kept with the task.
async fn restore_args(
    state: &AppState,
    tx: &mut sqlx::PgConnection,
    uri: &str,
    args: &serde_json::Value,
) -> Result<(serde_json::Value, String), ApiError> {
    let id: Uuid = args["backup"]
        .as_str()
        .and_then(|b| b.parse().ok())
        .ok_or_else(|| ApiError::Unprocessable("restore needs a backup id".into()))?;
    let backup = berth_store::sites::backup(tx, uri, id)
        .await?
        .ok_or_else(|| {
            ApiError::Unprocessable(format!(
                "site `{uri}` has no backup {id} (see GET /api/v1/sites/{uri}/backups)"
            ))
        })?;
    let password = berth_secrets::SecretKey::new_password();
    let (db_name, db_user) = berth_hosting::sites::db_names(uri, &password[..6]);
    let sealed = state
        .secret_key
        .seal(&berth_secrets::SecretKey::new_password());
    Ok((
        serde_json::json!({
            "restore_from": {"id": backup.id, "path": backup.path, "file": backup.file},
            "backup": backup_of(
                uri,
                &"zstd".into(),
                "Generated before being restored to a previous version",
            ),
            "next_db": {"name": db_name, "user": db_user},
        }),
        sealed,
    ))
}

/// A clone's arguments, checked (the new uri and aliases free, the target platform and db
/// server usable, no package errors), with the new site saved (installing) in the same
/// transaction as the task; and the new site's database password, sealed.
async fn clone_args(
    state: &AppState,
    tx: &mut sqlx::PgConnection,
    site: &berth_contracts::Site,
    args: &serde_json::Value,
) -> Result<(serde_json::Value, String), ApiError> {
    let a: berth_hosting::tasks::CloneArgs =
        serde_json::from_value(args.clone()).map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    if a.uri == site.uri || a.aliases.contains(&a.uri) {
        return Err(ApiError::Unprocessable(
            "a clone needs a uri of its own, and aliases other than it".into(),
        ));
    }
    // The new site's uri and aliases are reserved when it is saved below: a name another
    // site holds is a 409 naming that site (a clone takes new aliases only).
    let target = crate::routes::sites::deploy_target(
        state,
        site,
        a.platform.as_deref(),
        a.db_server.as_deref(),
        true,
    )
    .await?;
    if !target.comparison.ok() {
        return Err(ApiError::Conflict(format!(
            "site `{}` cannot be cloned onto {}: the package comparison has errors",
            site.uri, target.platform
        )));
    }
    let unique = berth_secrets::SecretKey::new_password();
    let (db_name, db_user) = berth_hosting::sites::db_names(&a.uri, &unique[..6]);
    let sealed = state
        .secret_key
        .seal(&berth_secrets::SecretKey::new_password());
    berth_store::sites::insert_site(
        tx,
        berth_store::sites::NewSiteRow {
            uri: &a.uri,
            platform: &target.platform,
            db_server: &target.db_server,
            client: site.client.as_deref(),
            client_email: site.client_email.as_deref(),
            profile: &site.profile,
            language: &site.language,
            redirection: a.redirection,
            db_name: &db_name,
            db_user: &db_user,
            db_password_sealed: &sealed,
            aliases: &a.aliases,
        },
    )
    .await?;
    let backup = backup_of(
        &site.uri,
        &"zstd".into(),
        &format!("Generated for cloning to {}", a.uri),
    );
    Ok((
        serde_json::json!({
            "new_site": a.uri,
            "to": {"platform": target.platform, "db_server": target.db_server},
            "backup": backup,
        }),
        sealed,
    ))
}

/// A migrate's arguments, checked (the target, and a package comparison without errors),
/// and the new database's password, sealed.
pub(crate) async fn migrate_args(
    state: &AppState,
    site: &berth_contracts::Site,
    args: &serde_json::Value,
) -> Result<(serde_json::Value, String), ApiError> {
    let new_uri = args["uri"].as_str().filter(|u| *u != site.uri);
    let target = crate::routes::sites::migrate_target(
        state,
        site,
        args["platform"].as_str(),
        args["db_server"].as_str(),
        new_uri,
    )
    .await?;
    if !target.comparison.ok() {
        let errors: Vec<String> = target
            .comparison
            .rows
            .iter()
            .filter(|r| r.verdict == berth_hosting::compare::Verdict::Error)
            .map(|r| format!("{}: {}", r.name, r.reason))
            .collect();
        return Err(ApiError::Conflict(format!(
            "site `{}` cannot move to {}: {}",
            site.uri,
            target.platform,
            errors.join("; ")
        )));
    }
    let unique = berth_secrets::SecretKey::new_password();
    let (db_name, db_user) = berth_hosting::sites::db_names(&site.uri, &unique[..6]);
    let sealed = state
        .secret_key
        .seal(&berth_secrets::SecretKey::new_password());
    Ok((
        serde_json::json!({
            "to": {"platform": target.platform, "db_server": target.db_server,
                   "uri": new_uri.unwrap_or(&site.uri)},
            "backup": backup_of(&site.uri, &"zstd".into(), "Generated before being migrated"),
            "next_db": {"name": db_name, "user": db_user},
        }),
        sealed,
    ))
}

/// The backup a task makes: its file is named here, when the task is accepted, so that
/// the plan stays pure and a redelivered step writes the same file.
fn backup_of(uri: &str, compression: &serde_json::Value, description: &str) -> serde_json::Value {
    let file = berth_hosting::sites::backup_file_name(
        uri,
        chrono::Utc::now(),
        &berth_secrets::SecretKey::new_password()[..4],
    );
    serde_json::json!({"file": file, "compression": compression, "description": description})
}

/// Backup and delete tasks carry the backup they make.
fn with_backup_file(task_type: TaskType, uri: &str, args: serde_json::Value) -> serde_json::Value {
    match task_type {
        TaskType::Backup => serde_json::json!({"backup": backup_of(
            uri,
            &args["compression"],
            args["description"].as_str().unwrap_or_default(),
        )}),
        TaskType::Delete => serde_json::json!({"backup": backup_of(
            uri,
            &"zstd".into(),
            "Generated before being deleted",
        )}),
        _ => args,
    }
}

/// Refuses, before anything is queued, a site task the site's status does not allow.
pub async fn check_site_task(
    state: &AppState,
    task_type: TaskType,
    uri: &str,
) -> Result<(), ApiError> {
    let site = state
        .store
        .get_site(uri)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("site `{uri}` not found")))?;
    check_status(task_type, uri, &site.status).map_err(ApiError::Conflict)?;
    if task_type == TaskType::Delete
        && site.status != site_status::DISABLED
        && !state.delete_enabled_sites
    {
        return Err(ApiError::Conflict(format!(
            "site `{uri}` is {}: disable it first (a site must be disabled before it is deleted; \
             BERTH_DELETE_ENABLED_SITES=true lifts this)",
            site.status
        )));
    }
    // A verify may queue behind another (it is re-runnable); two installs, disables… may not.
    if task_type != TaskType::Verify
        && let Some(id) = state.store.unfinished_task(uri, task_type.as_str()).await?
    {
        return Err(ApiError::Conflict(format!(
            "site `{uri}` has a {} task queued or running already: {id}",
            task_type.as_str()
        )));
    }
    Ok(())
}

pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<NewTask>,
) -> Result<Response, ApiError> {
    let task_type =
        TaskType::parse(&body.task_type).map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    let target = body
        .target
        .strip_prefix('@')
        .unwrap_or(&body.target)
        .to_string();
    // A site's name as typed (`WWW.Example.com.`, an IDN) is the site's stored name; server and
    // platform names hold a `_`, which no host name does, and stay as given.
    let target = HostName::normalise(&target)
        .map(|h| h.to_string())
        .unwrap_or(target);
    let kind = resolve_target(&state, &target).await?;
    let mut args = tasks::validate(task_type, kind, &body.args, state.diagnostics)
        .map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    if kind == TargetKind::Site {
        check_site_task(&state, task_type, &target).await?;
        args = with_backup_file(task_type, &target, args);
    }
    let mut tx = state.store.pool.begin().await?;
    if kind == TargetKind::Site && task_type == TaskType::Install {
        // A failed site is installed again from the start.
        berth_store::sites::set_status(&mut tx, &target, site_status::INSTALLING).await?;
    }
    let mut next_password = None;
    if task_type == TaskType::Clone {
        let site = berth_store::sites::get_site(&mut tx, &target)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("site `{target}` not found")))?
            .into_contract();
        let (clone, sealed) = clone_args(&state, &mut tx, &site, &args).await?;
        args = clone;
        next_password = Some(sealed);
    } else if task_type == TaskType::BackupDelete {
        let id: Uuid = args["backup"]
            .as_str()
            .and_then(|b| b.parse().ok())
            .ok_or_else(|| ApiError::Unprocessable("backup-delete needs a backup id".into()))?;
        let b = berth_store::sites::backup(&mut tx, &target, id)
            .await?
            .ok_or_else(|| {
                ApiError::Unprocessable(format!("site `{target}` has no backup {id}"))
            })?;
        args = serde_json::json!({"backup": {"id": b.id, "path": b.path, "server": b.server}});
    } else if task_type == TaskType::Migrate {
        let site = berth_store::sites::get_site(&mut tx, &target)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("site `{target}` not found")))?
            .into_contract();
        let (migrate, sealed) = migrate_args(&state, &site, &args).await?;
        args = migrate;
        next_password = Some(sealed);
    } else if task_type == TaskType::Restore {
        let (restore_args, sealed) = restore_args(&state, &mut tx, &target, &args).await?;
        args = restore_args;
        next_password = Some(sealed);
    }
    let (task, message) = queue_task_tx(
        &mut tx,
        &caller,
        task_type.as_str(),
        &target,
        kind,
        &args,
        None,
    )
    .await?;
    if let Some(sealed) = next_password {
        berth_store::tasks::insert_task_secret(&mut tx, task.id, "site_db_next", &sealed).await?;
    }
    if task_type == TaskType::Migrate
        && let Some(new_uri) = args["to"]["uri"].as_str().filter(|u| *u != target)
    {
        // The new uri is the site's from now on: no other site may take it meanwhile.
        berth_store::site_names::reserve(
            &mut tx,
            &target,
            &[new_uri.to_string()],
            berth_store::site_names::NameKind::Rename,
            Some(task.id),
        )
        .await?;
    }
    tx.commit().await?;
    state.outbox.publish(vec![message]);
    Ok(accepted(task))
}

pub fn accepted(task: Task) -> Response {
    let location = format!("/api/v1/tasks/{}", task.id);
    (
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        axum::Json(task),
    )
        .into_response()
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

pub const MAX_PAGE: i64 = 500;

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

pub async fn list(
    State(state): State<AppState>,
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
        .list_tasks(&TaskFilter {
            status,
            task_type: q.task_type,
            target: q.target.map(|t| t.trim_start_matches('@').to_string()),
            limit,
            offset,
        })
        .await?;
    Ok(axum::Json(page))
}

fn parse_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|_| ApiError::NotFound(format!("task `{id}` not found")))
}

pub async fn show(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<axum::Json<Task>, ApiError> {
    let id = parse_id(&id)?;
    let task = state
        .store
        .get_task(id)
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
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<LogQuery>,
) -> Result<axum::Json<LogPage>, ApiError> {
    let id = parse_id(&id)?;
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
    let id = parse_id(&id)?;
    let (task, message) = state.store.cancel_task(id, &caller.name).await?;
    Ok(match message {
        None => axum::Json(task).into_response(),
        Some(m) => {
            state.outbox.publish(vec![m]);
            accepted(task)
        }
    })
}

/// Why a task of a site cannot be retried: the site is gone (deleted, or forgotten), or the
/// uri is another site's now (deleted and created again since the task).
async fn site_gone(state: &AppState, old: &Task) -> Result<Option<String>, ApiError> {
    let uri = &old.target;
    let again = format!(
        "queue a new task for the site if it exists again, or create it again (POST \
         /api/v1/sites, `berth sites create --uri {uri} …`)"
    );
    Ok(match state.store.get_site(uri).await? {
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

/// Retries a failed (or cancelled) task as a new task with the same type, target and
/// arguments; the new task names the old one in `retry_of`.
pub async fn retry(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let old = state
        .store
        .get_task(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("task {id} not found")))?;
    if !matches!(old.status, TaskStatus::Error | TaskStatus::Cancelled) {
        return Err(ApiError::Conflict(format!(
            "task {id} is {}: only a failed or cancelled task can be retried",
            old.status.as_str()
        )));
    }
    if old.target_kind == TargetKind::Site
        && let Some(why) = site_gone(&state, &old).await?
    {
        return Err(ApiError::Conflict(why));
    }
    let mut tx = state.store.pool.begin().await?;
    let (task, message) = queue_task_tx(
        &mut tx,
        &caller,
        &old.task_type,
        &old.target,
        old.target_kind,
        &old.args,
        Some(old.id),
    )
    .await?;
    if old.task_type == TaskType::Migrate.as_str()
        && let Some(new_uri) = old.args["to"]["uri"].as_str().filter(|u| *u != old.target)
    {
        // As the first migrate did: its new uri is held while it runs.
        berth_store::site_names::reserve(
            &mut tx,
            &old.target,
            &[new_uri.to_string()],
            berth_store::site_names::NameKind::Rename,
            Some(task.id),
        )
        .await?;
    }
    // The retry needs the secrets the task came with (a restore's new database password).
    sqlx::query(
        "INSERT INTO task_secrets (task_id, name, sealed)
         SELECT $1, name, sealed FROM task_secrets WHERE task_id = $2",
    )
    .bind(task.id)
    .bind(old.id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    state.outbox.publish(vec![message]);
    Ok(accepted(task))
}
