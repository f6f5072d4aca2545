//! `/api/v1/schedules`: what berth runs on its own (cron, backups, pruning), their runs and
//! alerts. The scheduler service fires them; here they are checked, saved and shown.

use crate::AppState;
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery};
use crate::guard::Caller;
use crate::routes::page_bounds;
use axum::Extension;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_contracts::schedule::{
    Job, Kind, NewSchedule, Schedule, ScheduleAlert, ScheduleChange, ScheduleRun,
};
use berth_schedule::{Expression, Scope};
use berth_store::schedules::{self as stored, RunFilter, ScheduleRow, ScheduleValues};
use berth_store::sites;
use chrono::Utc;
use serde::Deserialize;

/// The longest window a run may start in.
const MAX_WINDOW_SECS: u32 = 7 * 24 * 3600;
/// The default window is the expression's period, at most this.
const DEFAULT_MAX_WINDOW_SECS: u32 = 24 * 3600;
/// Caps above this are refused as mistakes.
const MAX_CAP: u32 = 1000;

fn check_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(ApiError::Unprocessable(format!(
            "schedule name `{name}`: use 1 to 63 lower case letters, digits, `-` and `_`, \
             starting with a letter or digit (e.g. `nightly-backups`)"
        )))
    }
}

fn unprocessable(e: impl std::fmt::Display) -> ApiError {
    ApiError::Unprocessable(e.to_string())
}

/// The scope, parsed, naming a platform or site that exists (for a client-bound caller:
/// one of its client's sites, the only scope it may give).
async fn check_scope(state: &AppState, caller: &Caller, scope: &str) -> Result<Scope, ApiError> {
    let parsed = Scope::parse(scope).map_err(unprocessable)?;
    if caller.client.is_some() {
        let Scope::Site(s) = &parsed else {
            return Err(ApiError::Unprocessable(format!(
                "scope `{scope}`: a token bound to a client makes schedules for its own sites \
                 only (`site:<uri>`)"
            )));
        };
        let mut conn = state.store.pool.acquire().await?;
        if sites::get_visible_site(&mut conn, s, caller.visibility())
            .await?
            .is_none()
        {
            return Err(ApiError::Unprocessable(format!(
                "scope `{scope}`: site `{s}` not found"
            )));
        }
        return Ok(parsed);
    }
    match &parsed {
        Scope::Platform(p) if state.store.get_platform(p).await?.is_none() => Err(
            ApiError::Unprocessable(format!("scope `{scope}`: platform `{p}` not found")),
        ),
        Scope::Site(s) if state.store.get_site(s).await?.is_none() => Err(ApiError::Unprocessable(
            format!("scope `{scope}`: site `{s}` not found"),
        )),
        _ => Ok(parsed),
    }
}

/// The job's options, and the backup targets it names exist.
async fn check_job(state: &AppState, job: &Job) -> Result<(), ApiError> {
    berth_schedule::check_job(job).map_err(unprocessable)?;
    if let Job::Backup { targets } = job
        && !targets.is_empty()
    {
        let mut conn = state.store.pool.acquire().await?;
        let unknown = berth_store::offsite::unknown_targets(&mut conn, targets).await?;
        if !unknown.is_empty() {
            return Err(ApiError::Unprocessable(format!(
                "backup target(s) {} not found (see GET /api/v1/backup-targets)",
                unknown.join(", ")
            )));
        }
    }
    Ok(())
}

/// The window and spread, given or defaulted, checked against each other.
fn timing(
    expr: &Expression,
    kind: Kind,
    window: Option<u32>,
    spread: Option<u32>,
) -> Result<(u32, u32), ApiError> {
    let period = expr.period_after(Utc::now()).num_seconds().max(1);
    let window = window.unwrap_or(period.min(DEFAULT_MAX_WINDOW_SECS.into()) as u32);
    if !(1..=MAX_WINDOW_SECS).contains(&window) {
        return Err(ApiError::Unprocessable(format!(
            "window_secs must be 1 to {MAX_WINDOW_SECS} (a week)"
        )));
    }
    // Not all of the window: runs due at its very end would be missed by a late tick
    // (berth-bench schedules saw ~1 % of a slot missed with the spread 1 s short of it).
    let spread = spread.unwrap_or(match kind {
        Kind::Cron => window / 10 * 9,
        _ => window / 2,
    });
    if spread > window {
        return Err(ApiError::Unprocessable(format!(
            "spread_secs ({spread}) must not be more than window_secs ({window}): a run spread past its window would be missed"
        )));
    }
    Ok((window, spread))
}

fn check_caps(web: u32, db: u32) -> Result<(), ApiError> {
    if web > MAX_CAP || db > MAX_CAP {
        return Err(ApiError::Unprocessable(format!(
            "caps must be 0 (none) to {MAX_CAP}"
        )));
    }
    Ok(())
}

fn job_value(job: &Job) -> serde_json::Value {
    serde_json::to_value(job).expect("serialisable")
}

fn int(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// The schedule as answered: its job read back, its next slot, its open alerts.
fn view(row: ScheduleRow, open_alerts: i64) -> Result<Schedule, ApiError> {
    let ScheduleRow {
        values: v,
        closed_through,
        created_at,
        updated_at,
    } = row;
    let job: Job = serde_json::from_value(v.job.clone())
        .map_err(|e| ApiError::Internal(format!("schedule `{}`: stored job: {e}", v.name)))?;
    let next_slot = if v.enabled {
        Expression::parse(&v.expression, &v.time_zone)
            .ok()
            .and_then(|e| e.next_after(Utc::now()))
    } else {
        None
    };
    Ok(Schedule {
        kind: job.kind(),
        name: v.name,
        scope: v.scope,
        expression: v.expression,
        time_zone: v.time_zone,
        job,
        window_secs: v.window_secs as u32,
        spread_secs: v.spread_secs as u32,
        cap_per_web_server: v.cap_per_web_server as u32,
        cap_per_db_server: v.cap_per_db_server as u32,
        alert_after_failures: v.alert_after_failures as u32,
        enabled: v.enabled,
        next_slot,
        closed_through,
        open_alerts,
        created_at,
        updated_at,
    })
}

async fn found(state: &AppState, caller: &Caller, name: &str) -> Result<ScheduleRow, ApiError> {
    state
        .store
        .visible_schedule(name, caller.visibility())
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("schedule `{name}` not found")))
}

async fn open_alerts(state: &AppState, name: &str) -> Result<i64, ApiError> {
    Ok(state
        .store
        .open_alert_counts()
        .await?
        .get(name)
        .copied()
        .unwrap_or(0))
}

pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<NewSchedule>,
) -> Result<Response, ApiError> {
    check_name(&body.name)?;
    let scope = check_scope(&state, &caller, &body.scope).await?;
    let expr = Expression::parse(&body.expression, &body.time_zone).map_err(unprocessable)?;
    check_job(&state, &body.job).await?;
    let kind = body.job.kind();
    let (window, spread) = timing(&expr, kind, body.window_secs, body.spread_secs)?;
    check_caps(body.cap_per_web_server, body.cap_per_db_server)?;
    let values = ScheduleValues {
        name: body.name.clone(),
        kind: kind.as_str().into(),
        scope: scope.to_string(),
        expression: expr.as_str().into(),
        time_zone: body.time_zone.clone(),
        job: job_value(&body.job),
        window_secs: int(window),
        spread_secs: int(spread),
        cap_per_web_server: int(body.cap_per_web_server),
        cap_per_db_server: int(body.cap_per_db_server),
        alert_after_failures: int(body.alert_after_failures),
        enabled: body.enabled,
    };
    let mut conn = state.store.pool.acquire().await?;
    let row = stored::insert(&mut conn, &values).await?;
    let location = format!("/api/v1/schedules/{}", row.values.name);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        axum::Json(view(row, 0)?),
    )
        .into_response())
}

pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<axum::Json<Vec<Schedule>>, ApiError> {
    let alerts = state.store.open_alert_counts().await?;
    let rows = state.store.visible_schedules(caller.visibility()).await?;
    let out = rows
        .into_iter()
        .map(|r| {
            let open = alerts.get(&r.values.name).copied().unwrap_or(0);
            view(r, open)
        })
        .collect::<Result<_, _>>()?;
    Ok(axum::Json(out))
}

pub async fn show(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(name): ApiPath<String>,
) -> Result<axum::Json<Schedule>, ApiError> {
    let row = found(&state, &caller, &name).await?;
    let open = open_alerts(&state, &name).await?;
    Ok(axum::Json(view(row, open)?))
}

pub async fn change(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<ScheduleChange>,
) -> Result<axum::Json<Schedule>, ApiError> {
    let was = found(&state, &caller, &name).await?.values;
    let old: Job = serde_json::from_value(was.job.clone())
        .map_err(|e| ApiError::Internal(format!("schedule `{name}`: stored job: {e}")))?;
    let job = body.job.unwrap_or(old);
    if job.kind().as_str() != was.kind {
        return Err(ApiError::Unprocessable(format!(
            "schedule `{name}` runs {}: its job cannot become {} (make another schedule)",
            was.kind,
            job.kind().as_str()
        )));
    }
    check_job(&state, &job).await?;
    let expression = body.expression.unwrap_or_else(|| was.expression.clone());
    let time_zone = body.time_zone.unwrap_or_else(|| was.time_zone.clone());
    let expr = Expression::parse(&expression, &time_zone).map_err(unprocessable)?;
    let (window, spread) = timing(
        &expr,
        job.kind(),
        Some(body.window_secs.unwrap_or(was.window_secs as u32)),
        Some(body.spread_secs.unwrap_or(was.spread_secs as u32)),
    )?;
    let web = body
        .cap_per_web_server
        .unwrap_or(was.cap_per_web_server as u32);
    let db = body
        .cap_per_db_server
        .unwrap_or(was.cap_per_db_server as u32);
    check_caps(web, db)?;
    // What the body does not change stays as it was (name, kind and scope always do).
    let values = ScheduleValues {
        expression: expr.as_str().into(),
        time_zone,
        job: job_value(&job),
        window_secs: int(window),
        spread_secs: int(spread),
        cap_per_web_server: int(web),
        cap_per_db_server: int(db),
        alert_after_failures: int(body
            .alert_after_failures
            .unwrap_or(was.alert_after_failures as u32)),
        enabled: body.enabled.unwrap_or(was.enabled),
        ..was
    };
    let mut conn = state.store.pool.acquire().await?;
    let row = stored::update(&mut conn, &values).await?;
    let open = open_alerts(&state, &name).await?;
    Ok(axum::Json(view(row, open)?))
}

pub async fn delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    found(&state, &caller, &name).await?;
    if state.store.delete_schedule(&name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("schedule `{name}` not found")))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunsQuery {
    pub site: Option<String>,
    pub status: Option<String>,
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

pub async fn runs(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<RunsQuery>,
) -> Result<axum::Json<Vec<ScheduleRun>>, ApiError> {
    found(&state, &caller, &name).await?;
    if let Some(s) = &q.status
        && !["fired", "skipped", "missed"].contains(&s.as_str())
    {
        return Err(ApiError::BadRequest(format!(
            "status `{s}`: use fired, skipped or missed"
        )));
    }
    let (limit, offset) = page_bounds(q.limit, q.offset)?;
    let rows = state
        .store
        .schedule_runs(
            &RunFilter {
                schedule: Some(name),
                site: q.site,
                status: q.status,
                limit,
                offset,
            },
            caller.visibility(),
        )
        .await?;
    Ok(axum::Json(
        rows.into_iter().map(|r| r.into_contract()).collect(),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsQuery {
    pub schedule: Option<String>,
    pub site: Option<String>,
    /// Cleared alerts too.
    #[serde(default)]
    pub all: bool,
}

pub async fn alerts(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(q): ApiQuery<AlertsQuery>,
) -> Result<axum::Json<Vec<ScheduleAlert>>, ApiError> {
    let rows = state
        .store
        .schedule_alerts(
            q.schedule.as_deref(),
            q.site.as_deref(),
            q.all,
            caller.visibility(),
        )
        .await?;
    Ok(axum::Json(
        rows.into_iter().map(|r| r.into_contract()).collect(),
    ))
}
