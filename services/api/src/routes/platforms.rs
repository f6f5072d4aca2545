//! `/api/v1/platforms`: Aegir's platform contexts. Creating a platform queues its verify,
//! which scans its packages; a locked platform takes no new sites.

use crate::AppState;
use crate::error::{ApiError, ApiJson, ApiPath};
use crate::guard::Caller;
use crate::intake::{self, Saved};
use axum::Extension;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_contracts::{Installer, NewPlatform, Package, Platform, TargetKind};
use berth_hosting::names::{RootNeighbours, check_platform_root};
use berth_hosting::tasks::TaskType;
use berth_hosting::{PlatformName, SERVER_MASTER, ServerName, parse_root};
use berth_store::platforms;

fn parse_name(name: &str) -> Result<PlatformName, ApiError> {
    PlatformName::parse(name).map_err(|e| ApiError::NotFound(e.to_string()))
}

/// A drush path relative to the root (no `..`) or absolute.
fn check_installer(i: &Installer) -> Result<(), ApiError> {
    if i.installer_type != "drush" {
        return Err(ApiError::Unprocessable(format!(
            "installer type `{}` is not known; berth drives `drush`",
            i.installer_type
        )));
    }
    if let Some(bin) = &i.bin {
        let ok = if bin.starts_with('/') {
            parse_root(bin).is_ok()
        } else {
            parse_root(&format!("/{bin}")).is_ok()
        };
        if !ok {
            return Err(ApiError::Unprocessable(format!(
                "installer bin `{bin}` must be a clean path (absolute, or relative to the root without `..`)"
            )));
        }
    }
    Ok(())
}

/// The root's rules again on what it is on this host, where it exists here (the web server
/// may be another host: its verify checks the codebase itself): a symlink is refused, and
/// a path through a symlinked directory is checked as the directory it leads to.
fn check_root_here(root: &str, n: &RootNeighbours) -> Result<(), ApiError> {
    let Ok(meta) = std::fs::symlink_metadata(root) else {
        return Ok(());
    };
    let real = |p: &str| {
        std::fs::canonicalize(p)
            .ok()
            .and_then(|r| r.to_str().map(str::to_string))
    };
    if meta.file_type().is_symlink() {
        return Err(ApiError::Unprocessable(format!(
            "platform root `{root}` is a symlink (to `{}`): give the codebase's own directory",
            real(root).unwrap_or_else(|| "nowhere".into())
        )));
    }
    let resolved = RootNeighbours {
        data_root: n
            .data_root
            .as_deref()
            .map(|d| real(d).unwrap_or_else(|| d.into())),
        platforms: n
            .platforms
            .iter()
            .map(|(name, r)| (name.clone(), real(r).unwrap_or_else(|| r.clone())))
            .collect(),
    };
    let real_root = real(root).unwrap_or_else(|| root.into());
    check_platform_root(&real_root, &resolved).map_err(|e| {
        ApiError::Unprocessable(if real_root == root {
            e.to_string()
        } else {
            format!("{e} (`{root}` leads to `{real_root}` on this host)")
        })
    })
}

pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<NewPlatform>,
) -> Result<Response, ApiError> {
    let name =
        PlatformName::parse(&body.name).map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    let root = parse_root(&body.root).map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    let web_server = ServerName::parse(body.web_server.as_deref().unwrap_or(SERVER_MASTER))
        .map_err(|e| ApiError::Unprocessable(format!("web_server: {e}")))?;
    let server = state
        .store
        .get_server(web_server.as_str())
        .await?
        .ok_or_else(|| {
            ApiError::Unprocessable(format!("web server `{web_server}` does not exist"))
        })?;
    if server
        .server
        .services
        .http
        .as_ref()
        .is_none_or(|h| h.service_type == "null")
    {
        return Err(ApiError::Unprocessable(format!(
            "server `{web_server}` has no http service to publish a platform"
        )));
    }
    let installer = body.installer.unwrap_or_default();
    check_installer(&installer)?;
    let mut tx = state.store.pool.begin().await?;
    let neighbours = RootNeighbours {
        data_root: state.data_root.to_str().map(str::to_string),
        platforms: platforms::roots_on(&mut tx, web_server.as_str()).await?,
    };
    check_platform_root(&root, &neighbours).map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    check_root_here(&root, &neighbours)?;
    platforms::insert_platform(
        &mut tx,
        name.as_str(),
        &root,
        web_server.as_str(),
        &installer,
        body.cron_method.unwrap_or_default(),
    )
    .await?;
    let (task, message) = intake::queue_saved(
        &state,
        &mut tx,
        &caller,
        Saved {
            task_type: TaskType::Verify,
            target: name.as_str(),
            kind: TargetKind::Platform,
        },
    )
    .await?;
    let mut platform = platforms::get_platform(&mut tx, name.as_str())
        .await?
        .ok_or_else(|| ApiError::Internal("saved platform vanished".into()))?
        .into_contract();
    tx.commit().await?;
    state.outbox.publish(vec![message]);
    platform.task = Some(task.id);
    let location = format!("/api/v1/platforms/{}", platform.name);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        axum::Json(platform),
    )
        .into_response())
}

pub async fn list(State(state): State<AppState>) -> Result<axum::Json<Vec<Platform>>, ApiError> {
    Ok(axum::Json(state.store.list_platforms().await?))
}

async fn existing(state: &AppState, name: &str) -> Result<Platform, ApiError> {
    let name = parse_name(name)?;
    match state.store.get_platform(name.as_str()).await? {
        Some(p) if p.status != "deleted" => Ok(p),
        _ => Err(ApiError::NotFound(format!("platform `{name}` not found"))),
    }
}

pub async fn show(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<axum::Json<Platform>, ApiError> {
    Ok(axum::Json(existing(&state, &name).await?))
}

/// The package registry of the platform's last verify.
pub async fn packages(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<axum::Json<Vec<Package>>, ApiError> {
    let p = existing(&state, &name).await?;
    Ok(axum::Json(state.store.platform_packages(&p.name).await?))
}

pub async fn lock(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<axum::Json<Platform>, ApiError> {
    let p = existing(&state, &name).await?;
    Ok(axum::Json(
        state.store.set_platform_locked(&p.name, true).await?,
    ))
}

pub async fn unlock(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<axum::Json<Platform>, ApiError> {
    let p = existing(&state, &name).await?;
    Ok(axum::Json(
        state.store.set_platform_locked(&p.name, false).await?,
    ))
}

/// Seed 000's package comparison of two platforms: what moving a site from `name` to
/// `other` would mean for each package of `name` (error, warning, upgrade or same).
pub async fn compare(
    State(state): State<AppState>,
    ApiPath((name, other)): ApiPath<(String, String)>,
) -> Result<axum::Json<berth_hosting::compare::Comparison>, ApiError> {
    let from = existing(&state, &name).await?;
    let to = existing(&state, &other).await?;
    for p in [&from, &to] {
        if p.status != "verified" {
            return Err(ApiError::Conflict(format!(
                "platform `{}` is {}: verify it first, so berth knows its packages",
                p.name, p.status
            )));
        }
    }
    let current = state.store.platform_packages(&from.name).await?;
    let target = state.store.platform_packages(&to.name).await?;
    Ok(axum::Json(berth_hosting::compare::compare(
        &current, &target, None,
    )))
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigratePlatform {
    /// The platform every site moves to.
    pub to: String,
}

/// Migrates every site of a platform to another: one migrate task per site whose package
/// comparison has no errors; the others are listed with the reason they stay.
pub async fn migrate(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<MigratePlatform>,
) -> Result<Response, ApiError> {
    let from = existing(&state, &name).await?;
    let to = existing(&state, &body.to).await?;
    if from.name == to.name {
        return Err(ApiError::Unprocessable(format!(
            "the sites of `{}` are on it already",
            from.name
        )));
    }
    let done = intake::migrate_platform(&state, &caller, &from.name, &to.name).await?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(serde_json::json!({
            "from": from.name, "to": to.name, "queued": done.queued, "skipped": done.skipped,
        })),
    )
        .into_response())
}

/// Forgets the platform (refused while it has sites); its codebase is left on disk.
pub async fn delete(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let name = parse_name(&name)?;
    state.store.delete_platform(name.as_str()).await?;
    Ok(StatusCode::NO_CONTENT)
}
