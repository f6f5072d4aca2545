//! `/api/v1/sites`: Aegir's site contexts. Saving a new site queues its install; changing
//! one queues a verify that applies the change.

use crate::AppState;
use crate::error::{ApiError, ApiJson, ApiQuery};
use crate::guard::Caller;
use crate::intake::targets::{self, parse_uri};
use crate::intake::{self, Saved};
use crate::visible::VisibleSite;
use axum::Extension;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_contracts::{NewSite, Package, Site, SiteChange, TargetKind};
use berth_hosting::sites::{db_names, status};
use berth_hosting::tasks::TaskType;
use berth_hosting::{HostName, PlatformName, SERVER_MASTER, ServerName, SiteName};
use berth_secrets::SecretKey;
use berth_store::clients::{self, Quota, Visibility};
use berth_store::sites::{self, NewSiteRow, SiteFilter};
use berth_store::{platforms, servers};
use serde::Deserialize;

/// A guarded site refuses disable and delete (Aegir's guard): 409 saying how to unguard it.
pub fn refuse_guarded(uri: &str, guarded: bool, what: &str) -> Result<(), ApiError> {
    if guarded {
        return Err(ApiError::Conflict(format!(
            "site `{uri}` is guarded; unguard it first (PATCH /api/v1/sites/{uri} \
             {{\"guarded\": false}}) before it can be {what}"
        )));
    }
    Ok(())
}

/// Most aliases one site may have.
const MAX_ALIASES: usize = 50;

/// Aliases: site names (as [`parse_uri`]), none twice, none the site's own uri.
fn parse_aliases(uri: &str, aliases: &[String]) -> Result<Vec<String>, ApiError> {
    if aliases.len() > MAX_ALIASES {
        return Err(ApiError::Unprocessable(format!(
            "a site has at most {MAX_ALIASES} aliases"
        )));
    }
    let mut out: Vec<String> = Vec::new();
    for a in aliases {
        let a = SiteName::parse(a).map_err(|e| ApiError::Unprocessable(format!("alias: {e}")))?;
        if a.as_str() == uri {
            return Err(ApiError::Unprocessable(format!(
                "alias `{a}` is the site's own uri"
            )));
        }
        if out.iter().any(|o| o == a.as_str()) {
            return Err(ApiError::Unprocessable(format!(
                "alias `{a}` is given twice"
            )));
        }
        out.push(a.to_string());
    }
    Ok(out)
}

/// Free text kept short and printable: it reaches logs and tables.
fn check_text(field: &str, v: &Option<String>, max: usize) -> Result<(), ApiError> {
    if let Some(v) = v
        && (v.is_empty() || v.len() > max || v.chars().any(char::is_control))
    {
        return Err(ApiError::Unprocessable(format!(
            "{field} must be 1 to {max} printable characters"
        )));
    }
    Ok(())
}

fn check_email(v: &Option<String>) -> Result<(), ApiError> {
    check_email_field("client_email", v)
}

/// An e-mail address field: printable, `local@domain`.
pub fn check_email_field(field: &str, v: &Option<String>) -> Result<(), ApiError> {
    check_text(field, v, 254)?;
    if let Some(e) = v {
        let ok = e
            .split_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && !d.is_empty() && HostName::parse(d).is_ok())
            && !e.contains(char::is_whitespace);
        if !ok {
            return Err(ApiError::Unprocessable(format!(
                "{field} `{e}` is not an e-mail address"
            )));
        }
    }
    Ok(())
}

/// A language code: `en`, `de`, `pt-br`.
fn check_language(l: &str) -> Result<(), ApiError> {
    let ok = (2..=12).contains(&l.len())
        && l.bytes()
            .all(|b| b.is_ascii_lowercase() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ApiError::Unprocessable(format!(
            "language `{l}` is not a language code like `en` or `pt-br`"
        )))
    }
}

/// A profile name: Drupal machine name.
fn check_profile(p: &str) -> Result<(), ApiError> {
    let ok = (1..=64).contains(&p.len())
        && p.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ApiError::Unprocessable(format!(
            "profile `{p}` is not a machine name (lower-case letters, digits, `_`)"
        )))
    }
}

/// The client a site is made for or moved to: a bound caller's own; else the one named
/// (made if new: the `client` field predates clients), else `default`.
async fn client_of_request(
    conn: &mut sqlx::PgConnection,
    caller: &Caller,
    named: Option<&str>,
) -> Result<uuid::Uuid, ApiError> {
    if let Some(mine) = &caller.client {
        return match named {
            None => Ok(mine.id),
            Some(n) if n == mine.name => Ok(mine.id),
            Some(n) => Err(ApiError::Unprocessable(format!(
                "client `{n}`: this token is bound to client `{}` and makes and moves sites                  for it only (leave `client` out)",
                mine.name
            ))),
        };
    }
    let name = named.unwrap_or(clients::DEFAULT_CLIENT);
    if let Some(c) = clients::get(conn, name, Visibility::All).await? {
        return Ok(c.id);
    }
    crate::routes::clients::check_name(name)?;
    Ok(clients::ensure(conn, name).await?.id)
}

pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<NewSite>,
) -> Result<Response, ApiError> {
    let uri = parse_uri(&body.uri)?;
    let aliases = parse_aliases(uri.as_str(), &body.aliases)?;
    crate::intake::targets::refuse_drill_names(
        &state,
        std::iter::once(uri.as_str()).chain(aliases.iter().map(String::as_str)),
    )?;
    check_text("client", &body.client, 100)?;
    check_email(&body.client_email)?;
    let profile = body.profile.clone().unwrap_or_else(|| "standard".into());
    check_profile(&profile)?;
    let language = body.language.clone().unwrap_or_else(|| "en".into());
    check_language(&language)?;
    let platform_name = PlatformName::parse(&body.platform)
        .map_err(|e| ApiError::Unprocessable(format!("platform: {e}")))?;
    let db_server = ServerName::parse(body.db_server.as_deref().unwrap_or(SERVER_MASTER))
        .map_err(|e| ApiError::Unprocessable(format!("db_server: {e}")))?;

    let mut tx = state.store.pool.begin().await?;
    let platform = match platforms::get_platform(&mut tx, platform_name.as_str()).await? {
        Some(p) if p.status != "deleted" => p,
        _ => {
            return Err(ApiError::Unprocessable(format!(
                "platform `{platform_name}` does not exist"
            )));
        }
    };
    if platform.locked {
        return Err(ApiError::Conflict(format!(
            "platform `{platform_name}` is locked: it takes no new sites (unlock it, or choose another)"
        )));
    }
    if platform.status != "verified" {
        return Err(ApiError::Conflict(format!(
            "platform `{platform_name}` is {}: verify it first, so berth knows its profiles",
            platform.status
        )));
    }
    let Some((profile, languages)) =
        platforms::profile(&mut tx, platform_name.as_str(), &profile).await?
    else {
        let offered: Vec<String> = platforms::packages(&mut tx, platform_name.as_str())
            .await?
            .into_iter()
            .filter(|p| p.package_type == berth_contracts::PackageType::Profile)
            .map(|p| p.name)
            .collect();
        return Err(ApiError::Unprocessable(format!(
            "platform `{platform_name}` has no profile `{profile}`; it has: {}",
            offered.join(", ")
        )));
    };
    if language != "en" && !languages.contains(&language) {
        return Err(ApiError::Unprocessable(format!(
            "profile `{profile}` on `{platform_name}` is not offered in `{language}`; it is in: en{}",
            languages
                .iter()
                .filter(|l| *l != "en")
                .map(|l| format!(", {l}"))
                .collect::<String>()
        )));
    }
    crate::intake::targets::holds_site_databases(&mut tx, db_server.as_str()).await?;
    // The client's row is locked until commit: the quota check and the insert it allows
    // are one step for concurrent creates.
    let client_id = client_of_request(&mut tx, &caller, body.client.as_deref()).await?;
    crate::intake::refuse_past_quota(&mut tx, client_id, Quota::Sites).await?;
    // The uri and aliases are reserved with the row: a name held by another site is a 409
    // saying which site, and this transaction writes nothing.
    let suffix = &SecretKey::new_password()[..6];
    let (db_name, db_user) = db_names(uri.as_str(), suffix);
    let sealed = state.secret_key.seal(&SecretKey::new_password());
    sites::insert_site(
        &mut tx,
        NewSiteRow {
            uri: uri.as_str(),
            platform: platform_name.as_str(),
            db_server: db_server.as_str(),
            client_id,
            client_email: body.client_email.as_deref(),
            profile: &profile,
            language: &language,
            redirection: body.redirection,
            db_name: &db_name,
            db_user: &db_user,
            db_password_sealed: &sealed,
            aliases: &aliases,
        },
    )
    .await?;
    let (task, message) = intake::queue_saved(
        &state,
        &mut tx,
        &caller,
        Saved {
            task_type: TaskType::Install,
            target: uri.as_str(),
            kind: TargetKind::Site,
        },
    )
    .await?;
    let mut site = sites::get_site(&mut tx, uri.as_str())
        .await?
        .ok_or_else(|| ApiError::Internal("saved site vanished".into()))?
        .into_contract();
    tx.commit().await?;
    state.outbox.publish(vec![message]);
    site.task = Some(task.id);
    let location = format!("/api/v1/sites/{}", site.uri);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        axum::Json(site),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    platform: Option<String>,
    status: Option<String>,
    client: Option<String>,
    /// A page: with either, at most `limit` sites (default 50) from `offset`; without,
    /// all of them.
    limit: Option<i64>,
    offset: Option<i64>,
}

/// The response header with the number of sites all pages hold.
const TOTAL_HEADER: &str = "x-total-count";

pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<impl axum::response::IntoResponse, ApiError> {
    if let Some(s) = &q.status {
        let known = [
            status::INSTALLING,
            status::ENABLED,
            status::DISABLED,
            status::FAILED,
            status::DELETED,
        ];
        if !known.contains(&s.as_str()) {
            return Err(ApiError::BadRequest(format!(
                "status `{s}` is not one of {}",
                known.join(", ")
            )));
        }
    }
    let page = if q.limit.is_some() || q.offset.is_some() {
        Some(crate::routes::page_bounds(q.limit, q.offset)?)
    } else {
        None
    };
    let filter = SiteFilter {
        platform: q.platform.map(|p| p.trim_start_matches('@').to_string()),
        status: q.status,
        client: q.client,
    };
    let sites = state
        .store
        .list_sites(&filter, caller.visibility(), page)
        .await?;
    let total = match page {
        Some(_) => {
            state
                .store
                .count_sites(&filter, caller.visibility())
                .await?
        }
        None => sites.len() as i64,
    };
    Ok(([(TOTAL_HEADER, total.to_string())], axum::Json(sites)))
}

pub async fn show(
    State(state): State<AppState>,
    VisibleSite(site): VisibleSite,
) -> Result<axum::Json<Site>, ApiError> {
    let mut site = site.into_contract();
    if site.login_link.is_some() && crate::login_link::spent(&state, &site.uri).await {
        let mut conn = state.store.pool.acquire().await?;
        sites::clear_login_link(&mut conn, &site.uri).await?;
        site.login_link = None;
        site.login_link_expires_at = None;
    }
    Ok(axum::Json(site))
}

pub async fn packages(
    State(state): State<AppState>,
    VisibleSite(site): VisibleSite,
) -> Result<axum::Json<Vec<Package>>, ApiError> {
    Ok(axum::Json(state.store.site_packages(&site.uri).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanQuery {
    platform: Option<String>,
    db_server: Option<String>,
    uri: Option<String>,
}

/// What a migrate would do, without doing anything: the package table, the steps, the
/// backup taken first, and the downtime to expect.
pub async fn migrate_plan(
    State(state): State<AppState>,
    VisibleSite(site): VisibleSite,
    ApiQuery(q): ApiQuery<PlanQuery>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let site = site.into_contract();
    let target = targets::migrate_target(
        &state,
        &site,
        q.platform.as_deref(),
        q.db_server.as_deref(),
        q.uri.as_deref(),
    )
    .await?;
    // The new uri as it will be stored (migrate_target has checked it).
    let to_uri = match q.uri.as_deref() {
        Some(u) => parse_uri(u)?.to_string(),
        None => site.uri.clone(),
    };
    let mut conn = state.store.pool.acquire().await?;
    let facts = sites::facts(&mut conn, &site.uri)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("site `{}` not found", site.uri)))?;
    let to_platform = platforms::facts(&mut conn, &target.platform)
        .await?
        .ok_or_else(|| ApiError::Internal("target platform vanished".into()))?;
    let to_db = servers::get_server(&mut conn, &target.db_server)
        .await?
        .ok_or_else(|| ApiError::Internal("target db server vanished".into()))?
        .facts();
    drop(conn);
    let args = berth_contracts::task::MigrateTask {
        to: berth_contracts::task::MigrateTo {
            platform: target.platform.clone(),
            db_server: target.db_server.clone(),
            uri: to_uri.clone(),
        },
        backup: berth_contracts::steps::BackupOrder {
            file: "(named when the migrate is queued)".into(),
            compression: berth_contracts::steps::Compression::Zstd,
            description: "Generated before being migrated".into(),
        },
        next_db: berth_contracts::task::DbNames {
            name: "(new)".into(),
            user: "(new)".into(),
        },
    };
    let plan = berth_hosting::plans::plan_migrate(&facts, &to_platform, &to_db, &args)
        .map_err(ApiError::Conflict)?;
    let steps: Vec<serde_json::Value> = plan
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            serde_json::json!({
                "position": i + 1, "service": s.service(), "server": s.server,
                "action": s.action(), "taken_back_by": s.undo.as_ref().map(|u| u.action()),
            })
        })
        .collect();
    // The site is in maintenance from the first step until its new vhost: roughly a backup
    // and an unpack of its size (at ~25 MB/s each, measured by berth-bench backup on two
    // cores) plus updatedb and a reload.
    let last = state
        .store
        .site_backups(&site.uri)
        .await?
        .into_iter()
        .next();
    let (downtime_ms, basis) = match &last {
        Some(b) => (
            2_000 + 2 * b.size / 25_000,
            format!("the last backup's size ({} bytes)", b.size),
        ),
        None => (2_000, "no backup yet: at least".to_string()),
    };
    Ok(axum::Json(serde_json::json!({
        "site": site.uri,
        "from": {"platform": site.platform, "db_server": site.db_server},
        "to": {"platform": target.platform, "db_server": target.db_server,
               "uri": to_uri},
        "allowed": target.comparison.ok(),
        "comparison": target.comparison,
        "backup": "a backup of the site is taken first (\"Generated before being migrated\"), after it is put in maintenance",
        "steps": steps,
        "expected_downtime_ms": downtime_ms,
        "expected_downtime_basis": basis,
    })))
}

/// The site's backups, newest first.
pub async fn backups(
    State(state): State<AppState>,
    VisibleSite(site): VisibleSite,
) -> Result<axum::Json<Vec<berth_contracts::Backup>>, ApiError> {
    Ok(axum::Json(state.store.site_backups(&site.uri).await?))
}

/// Changes client, e-mail, aliases or redirection, and queues the verify that applies
/// them to the web server and DNS.
pub async fn change(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    VisibleSite(site): VisibleSite,
    ApiJson(body): ApiJson<SiteChange>,
) -> Result<axum::Json<Site>, ApiError> {
    let site = site.into_contract();
    if ![status::ENABLED, status::DISABLED].contains(&site.status.as_str()) {
        return Err(ApiError::Conflict(format!(
            "site `{}` is {}: only an installed site can be changed",
            site.uri, site.status
        )));
    }
    check_text("client", &body.client, 100)?;
    check_email(&body.client_email)?;
    let aliases = match &body.aliases {
        Some(a) => Some(parse_aliases(&site.uri, a)?),
        None => None,
    };
    if let Some(a) = &aliases {
        crate::intake::targets::refuse_drill_names(&state, a.iter().map(String::as_str))?;
    }
    let mut tx = state.store.pool.begin().await?;
    if let Some(g) = body.guarded {
        sites::set_guarded(&mut tx, &site.uri, g).await?;
    }
    let only_guard = body.client.is_none()
        && body.client_email.is_none()
        && body.aliases.is_none()
        && body.redirection.is_none();
    if body.guarded.is_some() && only_guard {
        // Nothing for the servers to apply: no verify.
        let out = sites::get_site(&mut tx, &site.uri)
            .await?
            .ok_or_else(|| ApiError::Internal("changed site vanished".into()))?
            .into_contract();
        tx.commit().await?;
        return Ok(axum::Json(out));
    }
    if let Some(a) = &aliases {
        // Reserves the new aliases: one another site holds is a 409 naming it.
        sites::set_aliases(&mut tx, &site.uri, a).await?;
    }
    let client_id = match body.client.as_deref() {
        None => None,
        Some(named) => {
            let id = client_of_request(&mut tx, &caller, Some(named)).await?;
            if site.client.as_deref() != Some(named) {
                // Moving a site onto a client counts against its quotas.
                crate::intake::refuse_past_quota(&mut tx, id, Quota::Sites).await?;
            }
            Some(id)
        }
    };
    sites::change_details(
        &mut tx,
        &site.uri,
        client_id,
        body.client_email.as_deref(),
        body.redirection,
    )
    .await?;
    let (task, message) = intake::queue_saved(
        &state,
        &mut tx,
        &caller,
        Saved {
            task_type: TaskType::Verify,
            target: &site.uri,
            kind: TargetKind::Site,
        },
    )
    .await?;
    let mut out = sites::get_site(&mut tx, &site.uri)
        .await?
        .ok_or_else(|| ApiError::Internal("changed site vanished".into()))?
        .into_contract();
    tx.commit().await?;
    state.outbox.publish(vec![message]);
    out.task = Some(task.id);
    Ok(axum::Json(out))
}

/// Forgets a site whose install failed (nothing of it is left on the servers). An
/// installed site is removed by the delete task, which backs it up first.
pub async fn delete(
    State(state): State<AppState>,
    VisibleSite(site): VisibleSite,
) -> Result<StatusCode, ApiError> {
    let site = site.into_contract();
    refuse_guarded(&site.uri, site.guarded, "deleted")?;
    if site.status != status::FAILED {
        return Err(ApiError::Conflict(format!(
            "site `{}` is {}: only a site whose install failed can be forgotten this way; \
             an installed site is removed by the delete task (`berth @{} provision-delete`, \
             after disabling it), which backs it up first",
            site.uri, site.status, site.uri
        )));
    }
    let mut tx = state.store.pool.begin().await?;
    sites::set_status(&mut tx, &site.uri, status::DELETED).await?;
    sites::set_aliases(&mut tx, &site.uri, &[]).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
