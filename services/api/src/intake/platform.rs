//! A platform's migrate: every site of it moved to another platform, a task per site.

use super::args::Fresh;
use super::{NEXT_DB_SECRET, migrate, queue_row};
use crate::AppState;
use crate::error::ApiError;
use crate::guard::Caller;
use berth_contracts::TargetKind;
use berth_hosting::sites::status as site_status;
use berth_hosting::tasks::{MigrateArgs, TaskType};
use berth_store::sites;
use berth_store::tasks as stored;
use serde_json::Value;

/// What a platform's migrate queued: a task per site, and the sites left with the reason.
pub struct PlatformMigrate {
    pub queued: Vec<Value>,
    pub skipped: Vec<Value>,
}

/// Migrates every site of platform `from` to `to`: one migrate task per site whose status
/// allows it and whose package comparison has no errors, all in one transaction.
pub async fn migrate_platform(
    state: &AppState,
    caller: &Caller,
    from: &str,
    to: &str,
) -> Result<PlatformMigrate, ApiError> {
    let sites = state
        .store
        .list_sites(
            &sites::SiteFilter {
                platform: Some(from.to_string()),
                ..Default::default()
            },
            berth_store::clients::Visibility::All,
            None,
        )
        .await?;
    let mut queued = Vec::new();
    let mut skipped = Vec::new();
    let mut messages = Vec::new();
    let asked = MigrateArgs {
        platform: Some(to.to_string()),
        ..Default::default()
    };
    let mut tx = state.store.pool.begin().await?;
    for site in sites {
        if ![site_status::ENABLED, site_status::DISABLED].contains(&site.status.as_str()) {
            if site.status != site_status::DELETED {
                skipped.push(serde_json::json!({"site": site.uri,
                    "reason": format!("it is {}", site.status)}));
            }
            continue;
        }
        let migrate_type = TaskType::Migrate.as_str();
        if let Some(id) = state.store.unfinished_task(&site.uri, migrate_type).await? {
            skipped.push(serde_json::json!({"site": site.uri,
                "reason": format!("a migrate is queued or running already ({id})")}));
            continue;
        }
        match migrate(state, &site, &asked, &Fresh::new()).await {
            Ok((args, sealed)) => {
                let (task, message) = queue_row(
                    state,
                    &mut tx,
                    caller,
                    TaskType::Migrate,
                    &site.uri,
                    TargetKind::Site,
                    &args,
                    None,
                )
                .await?;
                stored::insert_task_secret(&mut tx, task.id, NEXT_DB_SECRET, &sealed).await?;
                messages.push(message);
                queued.push(serde_json::json!({"site": site.uri, "task": task.id}));
            }
            Err(e) => skipped.push(serde_json::json!({"site": site.uri, "reason": e.to_string()})),
        }
    }
    tx.commit().await?;
    state.outbox.publish(messages);
    Ok(PlatformMigrate { queued, skipped })
}
