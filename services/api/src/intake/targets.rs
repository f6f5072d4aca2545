//! What a task runs on: the target a request names, resolved to its kind; and where a
//! migrate or clone would take a site, checked (used by the intake and by the migrate-plan
//! preview alike).

use crate::AppState;
use crate::error::ApiError;
use berth_contracts::{Site, TargetKind};
use berth_hosting::compare::{Comparison, Verdict};
use berth_hosting::sites::status as site_status;
use berth_hosting::{HostName, PlatformName, ServerName, SiteName};
use berth_store::{platforms, servers, sites};

/// A site's uri, normalised (lower case, no trailing dot, punycode); an IP address, a
/// single label or a name longer than nginx and a vhost file name hold is refused.
pub(crate) fn parse_uri(uri: &str) -> Result<SiteName, ApiError> {
    SiteName::parse(uri).map_err(|e| ApiError::Unprocessable(format!("uri: {e}")))
}

/// Refuses names under the drill domain: drill sites are named there, so a site or alias
/// that took one could be served in a drill's place (or block one).
pub fn refuse_drill_names<'a>(
    state: &AppState,
    names: impl IntoIterator<Item = &'a str>,
) -> Result<(), ApiError> {
    for n in names {
        if berth_hosting::drills::under_drill_domain(n, &state.drill_domain) {
            return Err(ApiError::Unprocessable(format!(
                "`{n}` is under `{}`, the domain kept for restore drills' throwaway sites \
                 (BERTH_DRILL_DOMAIN): no site or alias may have a name there",
                state.drill_domain
            )));
        }
    }
    Ok(())
}

/// A target as a client typed it: without `@`, and a site's name as stored (`WWW.Example.com.`,
/// an IDN); server and platform names hold a `_`, which no host name does, and stay as given.
pub fn normalise(target: &str) -> String {
    let target = target.strip_prefix('@').unwrap_or(target);
    HostName::normalise(target)
        .map(|h| h.to_string())
        .unwrap_or_else(|_| target.to_string())
}

/// Which kind of context a name is, by Aegir's naming rules, and whether it exists for the
/// caller: to a client-bound caller, servers, platforms and other clients' sites are as
/// missing (the same answer as a name nobody has, so it learns nothing).
pub async fn resolve(
    state: &AppState,
    target: &str,
    caller: &crate::guard::Caller,
) -> Result<TargetKind, ApiError> {
    let target = target.strip_prefix('@').unwrap_or(target);
    if caller.client.is_some() && (target.starts_with("server_") || target.starts_with("platform_"))
    {
        return Err(ApiError::Unprocessable(format!(
            "target site `{target}` does not exist"
        )));
    }
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
        return match state.store.get_platform(name.as_str()).await? {
            Some(p) if p.status != "deleted" => Ok(TargetKind::Platform),
            _ => Err(ApiError::Unprocessable(format!(
                "target platform `{name}` does not exist"
            ))),
        };
    }
    HostName::parse(target).map_err(|e| ApiError::Unprocessable(format!("target: {e}")))?;
    let mut conn = state.store.pool.acquire().await?;
    match sites::get_visible_site(&mut conn, target, caller.visibility()).await? {
        Some(s) if s.status != site_status::DELETED => Ok(TargetKind::Site),
        _ => Err(ApiError::Unprocessable(format!(
            "target site `{target}` does not exist"
        ))),
    }
}

/// Where a migrate would take a site, checked: the target platform exists, is verified,
/// unlocked and on the same web server; the db server has a managed db service; and the
/// package comparison of the site with the target platform.
pub struct DeployTarget {
    pub platform: String,
    pub db_server: String,
    pub comparison: Comparison,
}

impl DeployTarget {
    /// A migrate is refused when the comparison has errors: each is named.
    pub fn refuse_migrate_errors(&self, uri: &str) -> Result<(), ApiError> {
        if self.comparison.ok() {
            return Ok(());
        }
        let errors: Vec<String> = self
            .comparison
            .rows
            .iter()
            .filter(|r| r.verdict == Verdict::Error)
            .map(|r| format!("{}: {}", r.name, r.reason))
            .collect();
        Err(ApiError::Conflict(format!(
            "site `{uri}` cannot move to {}: {}",
            self.platform,
            errors.join("; ")
        )))
    }

    /// A clone is refused when the comparison has errors.
    pub fn refuse_clone_errors(&self, uri: &str) -> Result<(), ApiError> {
        if self.comparison.ok() {
            return Ok(());
        }
        Err(ApiError::Conflict(format!(
            "site `{uri}` cannot be cloned onto {}: the package comparison has errors",
            self.platform
        )))
    }
}

/// Where a migrate of `site` would go (what is not given is where the site is), checked;
/// a new uri must be free.
pub async fn migrate_target(
    state: &AppState,
    site: &Site,
    platform: Option<&str>,
    db_server: Option<&str>,
    new_uri: Option<&str>,
) -> Result<DeployTarget, ApiError> {
    let new_uri = new_uri.map(parse_uri).transpose()?;
    let renamed = new_uri.as_ref().is_some_and(|u| u.as_str() != site.uri);
    if let Some(u) = new_uri.filter(|_| renamed) {
        // An early answer; the migrate reserves the name when it is queued.
        let mut conn = state.store.pool.acquire().await?;
        let taken = sites::names_taken(&mut conn, &[u.to_string()], None).await?;
        if !taken.is_empty() {
            return Err(ApiError::Conflict(format!(
                "`{u}` is a site or an alias already (remove it from the aliases first, if it is this site's)"
            )));
        }
    }
    deploy_target(state, site, platform, db_server, renamed).await
}

/// As [`migrate_target`]; `copy`: a clone (or a rename), which may stay where the site is.
pub async fn deploy_target(
    state: &AppState,
    site: &Site,
    platform: Option<&str>,
    db_server: Option<&str>,
    copy: bool,
) -> Result<DeployTarget, ApiError> {
    let mut conn = state.store.pool.acquire().await?;
    let platform = match platform {
        Some(p) => PlatformName::parse(p)
            .map_err(|e| ApiError::Unprocessable(format!("platform: {e}")))?
            .to_string(),
        None => site.platform.clone(),
    };
    let db_server = match db_server {
        Some(d) => ServerName::parse(d)
            .map_err(|e| ApiError::Unprocessable(format!("db_server: {e}")))?
            .to_string(),
        None => site.db_server.clone(),
    };
    if !copy && platform == site.platform && db_server == site.db_server {
        return Err(ApiError::Unprocessable(format!(
            "site `{}` is on {platform} with its database on {db_server} already",
            site.uri
        )));
    }
    let target = match platforms::get_platform(&mut conn, &platform).await? {
        Some(p) if p.status != "deleted" => p,
        _ => {
            return Err(ApiError::Unprocessable(format!(
                "platform `{platform}` does not exist"
            )));
        }
    };
    if target.status != "verified" {
        return Err(ApiError::Conflict(format!(
            "platform `{platform}` is {}: verify it first, so berth knows its packages",
            target.status
        )));
    }
    if target.locked && (copy || platform != site.platform) {
        return Err(ApiError::Conflict(format!(
            "platform `{platform}` is locked: it takes no new sites"
        )));
    }
    let current = platforms::get_platform(&mut conn, &site.platform)
        .await?
        .ok_or_else(|| ApiError::Internal("the site's platform vanished".into()))?;
    if current.web_server != target.web_server {
        return Err(ApiError::Unprocessable(format!(
            "platform `{platform}` is on {} and the site on {}: moving between web servers is not built yet",
            target.web_server, current.web_server
        )));
    }
    holds_site_databases(&mut conn, &db_server).await?;
    drop(conn);
    let installed = state.store.site_packages(&site.uri).await?;
    let offered = state.store.platform_packages(&platform).await?;
    let comparison =
        berth_hosting::compare::compare(&installed, &offered, Some(site.profile.as_str()));
    Ok(DeployTarget {
        platform,
        db_server,
        comparison,
    })
}

/// Refuses a db server that does not exist or has no db service berth drives.
pub async fn holds_site_databases(
    conn: &mut sqlx::PgConnection,
    db_server: &str,
) -> Result<(), ApiError> {
    let db = servers::get_server(conn, db_server).await?.ok_or_else(|| {
        ApiError::Unprocessable(format!("db server `{db_server}` does not exist"))
    })?;
    if db
        .server
        .services
        .db
        .as_ref()
        .is_none_or(|d| d.service_type == "null")
    {
        return Err(ApiError::Unprocessable(format!(
            "server `{db_server}` has no db service to hold the site's database"
        )));
    }
    Ok(())
}
