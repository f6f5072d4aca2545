//! `GET /api/v1/sites/{uri}/retention`: which of a site's backups a retention policy keeps,
//! by which rule, and which it would remove — the same answer a `prune` task with that
//! policy acts on.

use crate::AppState;
use crate::error::{ApiError, ApiQuery};
use crate::visible::VisibleSite;
use axum::extract::State;
use berth_contracts::schedule::{
    Job, Kind, RetentionPreview, RetentionSpec, RetentionVerdict, RulesSpec, TargetRetention,
};
use berth_schedule::{SiteHome, effective, scoped};
use serde::Deserialize;

/// The policy as query parameters: restic's rule names for ordinary backups, and the same
/// with `before_change_` for those made before a restore, migrate or delete. None given:
/// the policy of the prune schedule the site follows.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyQuery {
    keep_last: Option<u32>,
    keep_hourly: Option<u32>,
    keep_daily: Option<u32>,
    keep_weekly: Option<u32>,
    keep_monthly: Option<u32>,
    keep_yearly: Option<u32>,
    keep_within: Option<String>,
    before_change_keep_last: Option<u32>,
    before_change_keep_hourly: Option<u32>,
    before_change_keep_daily: Option<u32>,
    before_change_keep_weekly: Option<u32>,
    before_change_keep_monthly: Option<u32>,
    before_change_keep_yearly: Option<u32>,
    before_change_keep_within: Option<String>,
}

impl PolicyQuery {
    fn spec(self) -> Option<RetentionSpec> {
        let regular = RulesSpec {
            keep_last: self.keep_last.unwrap_or(0),
            keep_hourly: self.keep_hourly.unwrap_or(0),
            keep_daily: self.keep_daily.unwrap_or(0),
            keep_weekly: self.keep_weekly.unwrap_or(0),
            keep_monthly: self.keep_monthly.unwrap_or(0),
            keep_yearly: self.keep_yearly.unwrap_or(0),
            keep_within: self.keep_within,
        };
        let before_change = RulesSpec {
            keep_last: self.before_change_keep_last.unwrap_or(0),
            keep_hourly: self.before_change_keep_hourly.unwrap_or(0),
            keep_daily: self.before_change_keep_daily.unwrap_or(0),
            keep_weekly: self.before_change_keep_weekly.unwrap_or(0),
            keep_monthly: self.before_change_keep_monthly.unwrap_or(0),
            keep_yearly: self.before_change_keep_yearly.unwrap_or(0),
            keep_within: self.before_change_keep_within,
        };
        let spec = RetentionSpec {
            regular,
            before_change,
        };
        (spec != RetentionSpec::default()).then_some(spec)
    }
}

/// The retention of the prune schedule `site` follows, if any.
async fn scheduled_policy(
    state: &AppState,
    site: &berth_store::sites::SiteRow,
) -> Result<Option<RetentionSpec>, ApiError> {
    let prunes: Vec<_> = state
        .store
        .schedules()
        .await?
        .into_iter()
        .filter(|s| s.values.kind == Kind::Prune.as_str())
        .collect();
    let scoped = scoped(
        prunes
            .iter()
            .map(|s| (s.values.scope.as_str(), s.values.enabled)),
    );
    let home = SiteHome {
        uri: &site.uri,
        platform: &site.platform,
        client: site.client.as_deref(),
    };
    Ok(effective(&scoped, &home).and_then(|s| {
        match serde_json::from_value::<Job>(prunes[s.id].values.job.clone()) {
            Ok(Job::Prune { retention }) => Some(retention),
            _ => None,
        }
    }))
}

pub async fn preview(
    State(state): State<AppState>,
    VisibleSite(site): VisibleSite,
    ApiQuery(q): ApiQuery<PolicyQuery>,
) -> Result<axum::Json<RetentionPreview>, ApiError> {
    let uri = site.uri.clone();
    let spec = match q.spec() {
        Some(spec) => spec,
        None => scheduled_policy(&state, &site).await?.ok_or_else(|| {
            ApiError::Unprocessable(format!(
                "site `{uri}` follows no prune schedule: give a policy, e.g. ?keep_last=7&keep_daily=14"
            ))
        })?,
    };
    let mut conn = state.store.pool.acquire().await?;
    let decided = berth_store::retention::decide_prune(&mut conn, &site.uri, &spec)
        .await?
        .map_err(|e| ApiError::Unprocessable(e.0))?;
    Ok(axum::Json(RetentionPreview {
        site: site.uri,
        policy: spec,
        backups: shown(decided.local),
        targets: decided
            .targets
            .into_iter()
            .map(|t| TargetRetention {
                target: t.target,
                policy: t.spec,
                copies: shown(t.verdicts),
            })
            .collect(),
    }))
}

fn shown(verdicts: berth_store::retention::Verdicts) -> Vec<RetentionVerdict> {
    verdicts
        .into_iter()
        .map(|(c, keep)| RetentionVerdict {
            id: c.id,
            file: c.file,
            created_at: c.created_at,
            description: c.description,
            keep: !keep.is_empty(),
            reasons: keep.iter().map(|r| r.as_str().to_string()).collect(),
        })
        .collect()
}
