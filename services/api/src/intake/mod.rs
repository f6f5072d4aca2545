//! Task intake: the one place a task is accepted. It resolves the target, checks that the
//! target's status allows the task, builds the task's typed arguments (naming its backup
//! file and new database, sealing the new database's password, saving a clone's new site,
//! reserving a migrate's new uri), and writes the task, its outbox row and its secret in
//! one transaction; the outbox row is published after commit. Every route that queues a
//! task comes here (and so will the dashboard and the scheduler); none does it itself.

pub mod args;
mod platform;
mod retry;
pub mod targets;

pub use platform::{PlatformMigrate, migrate_platform};
pub use retry::requeue;

use crate::error::ApiError;
use crate::guard::Caller;
use crate::{AppState, IDEMPOTENCY_CLAIM};
use args::{Fresh, Requested};
use berth_contracts::task::{CloneTo, DrillTask, MigrateTo, TaskArgs};
use berth_contracts::{Site, TargetKind, Task};
use berth_hosting::sites::status as site_status;
use berth_hosting::tasks::{MigrateArgs, TaskType};
use berth_secrets::SecretKey;
use berth_store::Store;
use berth_store::clients::{self, Quota};
use berth_store::outbox::OutboxRow;
use berth_store::site_names::{self, NameKind};
use berth_store::sites::{self, NewSiteRow};
use berth_store::tasks::{self as stored, NewTaskRow};
use serde_json::Value;
use uuid::Uuid;

/// A request for a task: its type, its target as the client named it, and the client's
/// arguments (checked here).
#[derive(Debug, Clone)]
pub struct Intake {
    pub task_type: TaskType,
    pub target: String,
    pub args: Value,
}

/// The name of the task secret holding the new database password a task moves the site to.
const NEXT_DB_SECRET: &str = "site_db_next";

/// Accepts a task: checked, queued with its outbox row in one transaction, published.
pub async fn queue(state: &AppState, caller: &Caller, req: Intake) -> Result<Task, ApiError> {
    let task_type = req.task_type;
    let target = targets::normalise(&req.target);
    let kind = targets::resolve(state, &target, caller).await?;
    let validated = berth_hosting::tasks::validate(task_type, kind, &req.args, state.diagnostics)
        .map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    let requested = Requested::read(task_type, &validated)?;
    let (site, client_id) = match kind {
        TargetKind::Site => {
            let (site, client_id) = site_for(state, task_type, &target).await?;
            (Some(site), Some(client_id))
        }
        _ => (None, None),
    };
    let fresh = Fresh::new();
    let mut tx = state.store.pool.begin().await?;
    let mut next_password = None;
    let mut rename = None;
    let args = match (requested, &site) {
        (Requested::None, _) => {
            if task_type == TaskType::Install && kind == TargetKind::Site {
                // A failed site is installed again from the start.
                sites::set_status(&mut tx, &target, site_status::INSTALLING).await?;
            }
            TaskArgs::None
        }
        (Requested::Noop(a), _) => TaskArgs::Noop(a),
        (_, None) => {
            return Err(ApiError::Internal(format!(
                "{} on a {}: not a site",
                task_type.as_str(),
                kind.as_str()
            )));
        }
        (
            Requested::Backup {
                description,
                compression,
                targets,
            },
            Some(_),
        ) => {
            if let Some(c) = client_id {
                refuse_past_quota(&mut tx, c, Quota::BackupBytes).await?;
            }
            let unknown = berth_store::offsite::unknown_targets(&mut tx, &targets).await?;
            if let Some(t) = unknown.first() {
                return Err(ApiError::Unprocessable(format!(
                    "backup target `{t}` does not exist (see GET /api/v1/backup-targets)"
                )));
            }
            args::backup(&target, compression, &description, targets, &fresh)
        }
        (Requested::Delete, Some(_)) => args::delete(&target, &fresh),
        (Requested::Disable, Some(_)) => args::disable(&target, &fresh),
        (Requested::Prune(retention), Some(_)) => {
            let decided = berth_store::retention::decide_prune(&mut tx, &target, &retention)
                .await?
                .map_err(|e| ApiError::Unprocessable(e.0))?;
            TaskArgs::Prune(decided.task)
        }
        (Requested::Restore { backup }, Some(_)) => {
            let from = sites::backup(&mut tx, &target, backup)
                .await?
                .ok_or_else(|| {
                    ApiError::Unprocessable(format!(
                        "site `{target}` has no backup {backup} (see GET /api/v1/sites/{target}/backups)"
                    ))
                })?;
            next_password = Some(new_sealed_password(state));
            args::restore(&target, &from, &fresh)
        }
        (Requested::Drill { backup }, Some(_)) => {
            // The backup is fixed now: the task says which one it drilled.
            let b = match backup {
                Some(id) => sites::backup(&mut tx, &target, id).await?.ok_or_else(|| {
                    ApiError::Unprocessable(format!(
                        "site `{target}` has no backup {id} (see GET /api/v1/sites/{target}/backups)"
                    ))
                })?,
                None => sites::newest_backup(&mut tx, &target).await?.ok_or_else(|| {
                    ApiError::Conflict(format!(
                        "site `{target}` has no backup to drill: back it up first \
                         (POST /api/v1/tasks {{\"type\": \"backup\", \"target\": \"{target}\"}})"
                    ))
                })?,
            };
            TaskArgs::Drill(DrillTask { backup: Some(b.id) })
        }
        (Requested::BackupDelete { backup }, Some(_)) => {
            let b = sites::backup(&mut tx, &target, backup)
                .await?
                .ok_or_else(|| {
                    ApiError::Unprocessable(format!("site `{target}` has no backup {backup}"))
                })?;
            args::backup_delete(&b)
        }
        (Requested::Migrate(m), Some(site)) => {
            let (args, sealed) = migrate(state, site, &m, &fresh).await?;
            if let TaskArgs::Migrate(a) = &args
                && a.to.uri != target
            {
                rename = Some(a.to.uri.clone());
            }
            next_password = Some(sealed);
            args
        }
        (Requested::Clone(c), Some(site)) => {
            args::check_clone_names(&site.uri, &c)?;
            targets::refuse_drill_names(
                state,
                std::iter::once(c.uri.as_str()).chain(c.aliases.iter().map(String::as_str)),
            )?;
            // The new site's uri and aliases are reserved when it is saved below: a name
            // another site holds is a 409 naming that site (a clone takes new aliases only).
            let to = targets::deploy_target(
                state,
                site,
                c.platform.as_deref(),
                c.db_server.as_deref(),
                true,
            )
            .await?;
            to.refuse_clone_errors(&site.uri)?;
            let db = fresh.db(&c.uri);
            let sealed = new_sealed_password(state);
            // The clone is the source's client's new site: its quota counts it.
            let owner = client_id.ok_or_else(|| ApiError::Internal("clone of no site".into()))?;
            refuse_past_quota(&mut tx, owner, Quota::Sites).await?;
            sites::insert_site(
                &mut tx,
                NewSiteRow {
                    uri: &c.uri,
                    platform: &to.platform,
                    db_server: &to.db_server,
                    client_id: owner,
                    client_email: site.client_email.as_deref(),
                    profile: &site.profile,
                    language: &site.language,
                    redirection: c.redirection,
                    db_name: &db.name,
                    db_user: &db.user,
                    db_password_sealed: &sealed,
                    aliases: &c.aliases,
                },
            )
            .await?;
            next_password = Some(sealed);
            args::clone(
                &site.uri,
                &c.uri,
                CloneTo {
                    platform: to.platform,
                    db_server: to.db_server,
                },
                &fresh,
            )
        }
    };
    let (task, message) = queue_row(
        state, &mut tx, caller, task_type, &target, kind, &args, None,
    )
    .await?;
    if let Some(sealed) = next_password {
        stored::insert_task_secret(&mut tx, task.id, NEXT_DB_SECRET, &sealed).await?;
    }
    if let Some(new_uri) = rename {
        // The new uri is the site's from now on: no other site may take it meanwhile.
        site_names::reserve(
            &mut tx,
            &target,
            &[new_uri],
            NameKind::Rename,
            Some(task.id),
        )
        .await?;
    }
    tx.commit().await?;
    state.outbox.publish(vec![message]);
    Ok(task)
}

/// The site a task is asked for (and its client), when its status allows the task, it is
/// not guarded against it, and no task of the same type is queued or running for it (but a
/// verify).
async fn site_for(
    state: &AppState,
    task_type: TaskType,
    uri: &str,
) -> Result<(Site, Uuid), ApiError> {
    let site = state
        .store
        .get_site(uri)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("site `{uri}` not found")))?;
    match task_type {
        TaskType::Disable => crate::routes::sites::refuse_guarded(uri, site.guarded, "disabled")?,
        TaskType::Delete => crate::routes::sites::refuse_guarded(uri, site.guarded, "deleted")?,
        _ => {}
    }
    args::check_site(task_type, uri, &site.status, state.delete_enabled_sites)?;
    let unfinished = if task_type == TaskType::Verify {
        None
    } else {
        state.store.unfinished_task(uri, task_type.as_str()).await?
    };
    args::refuse_second(task_type, uri, unfinished)?;
    let client_id = site.client_id;
    Ok((site.into_contract(), client_id))
}

/// Refuses (409 `quota-exceeded`, naming the quota, its limit and the usage) what would
/// take client `id` past a quota, and a new site of a client that is not active. Locks the client's row until the caller's transaction
/// ends, so the check and the insert it allows are one step against concurrent requests.
pub async fn refuse_past_quota(
    tx: &mut sqlx::PgConnection,
    id: Uuid,
    adding: Quota,
) -> Result<(), ApiError> {
    let client = clients::lock(tx, id).await?;
    // A suspended or cancelled client gets no new site (nor one moved or cloned to it).
    if adding == Quota::Sites && client.status != "active" {
        return Err(ApiError::Conflict(format!(
            "client `{}` is {}: no new site until it is unsuspended \
             (POST /api/v1/clients/{}/unsuspend)",
            client.name, client.status, client.name
        )));
    }
    let usage = clients::usage(tx, id).await?;
    match clients::weigh(&client, &usage, adding) {
        Some(over) => Err(ApiError::QuotaExceeded(over)),
        None => Ok(()),
    }
}

fn new_sealed_password(state: &AppState) -> String {
    state.secret_key.seal(&SecretKey::new_password())
}

/// A migrate's arguments, checked (the target, and a package comparison without errors),
/// and the new database's password, sealed.
async fn migrate(
    state: &AppState,
    site: &Site,
    m: &MigrateArgs,
    fresh: &Fresh,
) -> Result<(TaskArgs, String), ApiError> {
    let new_uri = m.uri.as_deref().filter(|u| *u != site.uri);
    targets::refuse_drill_names(state, new_uri)?;
    let to = targets::migrate_target(
        state,
        site,
        m.platform.as_deref(),
        m.db_server.as_deref(),
        new_uri,
    )
    .await?;
    to.refuse_migrate_errors(&site.uri)?;
    let args = args::migrate(
        &site.uri,
        MigrateTo {
            platform: to.platform,
            db_server: to.db_server,
            uri: new_uri.unwrap_or(&site.uri).to_string(),
        },
        fresh,
    );
    Ok((args, new_sealed_password(state)))
}

/// A context saved in the caller's transaction, and the task that applies it: a new site's
/// install, a new or changed platform's or server's verify, a changed site's verify.
pub struct Saved<'a> {
    pub task_type: TaskType,
    pub target: &'a str,
    pub kind: TargetKind,
}

/// Queues the task of a context the caller saved (and checked) in `tx`: the task and its
/// outbox row are written in that transaction; the caller publishes the row after commit.
pub async fn queue_saved(
    state: &AppState,
    tx: &mut sqlx::PgConnection,
    caller: &Caller,
    saved: Saved<'_>,
) -> Result<(Task, OutboxRow), ApiError> {
    if !matches!(saved.task_type, TaskType::Verify | TaskType::Install) {
        return Err(ApiError::Internal(format!(
            "{} is not queued with a saved context",
            saved.task_type.as_str()
        )));
    }
    queue_row(
        state,
        tx,
        caller,
        saved.task_type,
        saved.target,
        saved.kind,
        &TaskArgs::None,
        None,
    )
    .await
}

/// Queues `task_type` (one without arguments: a client's suspend or unsuspend) on each of
/// `sites` in the caller's transaction; the caller publishes the rows after commit. Each
/// waits behind its site's running task, as every task on one target does.
pub async fn queue_on_sites(
    state: &AppState,
    tx: &mut sqlx::PgConnection,
    caller: &Caller,
    task_type: TaskType,
    sites: &[String],
) -> Result<Vec<(Task, OutboxRow)>, ApiError> {
    if !matches!(task_type, TaskType::Suspend | TaskType::Unsuspend) {
        return Err(ApiError::Internal(format!(
            "{} is not queued for a client's sites",
            task_type.as_str()
        )));
    }
    let mut out = Vec::with_capacity(sites.len());
    for uri in sites {
        out.push(
            queue_row(
                state,
                tx,
                caller,
                task_type,
                uri,
                TargetKind::Site,
                &TaskArgs::None,
                None,
            )
            .await?,
        );
    }
    Ok(out)
}

/// Writes the task row and its outbox message in the caller's transaction, after the
/// back-pressure check; notes the request's Idempotency-Key with the task.
#[allow(clippy::too_many_arguments)]
async fn queue_row(
    state: &AppState,
    tx: &mut sqlx::PgConnection,
    caller: &Caller,
    task_type: TaskType,
    target: &str,
    kind: TargetKind,
    args: &TaskArgs,
    retry_of: Option<Uuid>,
) -> Result<(Task, OutboxRow), ApiError> {
    refuse_when_backlogged(tx, state.max_queued_tasks).await?;
    // A site's cron key is made here, where the cluster key is (the state service has
    // none): at its install, or at the next verify or cron of a site made before keys.
    if kind == TargetKind::Site
        && matches!(
            task_type,
            TaskType::Install | TaskType::Verify | TaskType::Cron
        )
    {
        berth_store::cron::ensure_cron_key(tx, target, &new_sealed_password(state)).await?;
    }
    let id = Uuid::now_v7();
    let task_type = task_type.as_str();
    let span = tracing::info_span!("task.accept", task_id = %id, task_type, target);
    let traceparent = berth_telemetry::traceparent_or_fresh(&span);
    let trace_id = berth_telemetry::trace_id_of(&traceparent).unwrap_or_default();
    span.in_scope(|| tracing::info!("task accepted"));
    let (row, message) = stored::queue_task(
        tx,
        NewTaskRow {
            id,
            task_type,
            target,
            target_kind: kind,
            args: &args.to_stored(),
            trace_id: &trace_id,
            traceparent: &traceparent,
            requested_by: &caller.name,
            retry_of,
        },
    )
    .await?;
    // In the task's transaction: a resend after a crash finds the task, never makes another.
    if let Ok((token_id, key)) = IDEMPOTENCY_CLAIM.try_with(|c| c.clone()) {
        Store::note_idempotent_task(tx, token_id, &key, id).await?;
    }
    crate::guard::note_queued_task(id);
    Ok((row.into_contract(), message))
}

/// Back-pressure: past the limit of queued tasks (`limit`, [`AppState::max_queued_tasks`];
/// 0: none) a client is told to come back later instead of growing a backlog that the state
/// service, PostgreSQL and RabbitMQ must carry (see docs/reliability.md, "Limits").
async fn refuse_when_backlogged(tx: &mut sqlx::PgConnection, limit: u64) -> Result<(), ApiError> {
    if limit == 0 {
        return Ok(());
    }
    let queued = stored::queued_count(tx, limit)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    backlog_verdict(queued, limit)
}

/// The back-pressure decision: refused (503) once `queued` reaches `limit`.
fn backlog_verdict(queued: u64, limit: u64) -> Result<(), ApiError> {
    if limit > 0 && queued >= limit {
        tracing::warn!(queued, limit, "task refused: too many tasks queued");
        return Err(ApiError::Unavailable(format!(
            "{queued} tasks are waiting to start (the limit is {limit}, BERTH_MAX_QUEUED_TASKS): \
             try again later"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backlog_refuses_at_its_limit_and_not_without_one() {
        backlog_verdict(2, 3).unwrap();
        backlog_verdict(1_000_000, 0).unwrap();
        let e = backlog_verdict(3, 3).unwrap_err();
        assert!(
            matches!(&e, ApiError::Unavailable(m) if m.contains("BERTH_MAX_QUEUED_TASKS")),
            "{e:?}"
        );
    }

    #[test]
    fn targets_are_named_as_stored() {
        assert_eq!(targets::normalise("@WWW.Example.com."), "www.example.com");
        assert_eq!(targets::normalise("@server_master"), "server_master");
        assert_eq!(targets::normalise("platform_d10"), "platform_d10");
    }
}
