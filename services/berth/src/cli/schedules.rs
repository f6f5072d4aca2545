//! `berth schedules …`: schedules, their runs and alerts; and the retention rules that
//! `sites retention` and `sites prune` share with prune schedules.

use super::args::{RetentionRules, ScheduleTiming, SchedulesCommand};
use super::client::{CliError, Client, decode, segment, usage};
use super::render::{kv, opt_time, print_json, short, table, time};
use berth_contracts::schedule::{
    RetentionPreview, RetentionSpec, RulesSpec, Schedule, ScheduleAlert, ScheduleRun,
};
use serde_json::{Value, json};
use std::process::ExitCode;

/// The rules as the preview's query.
pub(crate) fn retention_query(r: &RetentionRules) -> Vec<(&'static str, String)> {
    let mut q = Vec::new();
    let mut put = |k: &'static str, v: Option<u32>| {
        if let Some(v) = v {
            q.push((k, v.to_string()));
        }
    };
    put("keep_last", r.keep_last);
    put("keep_hourly", r.keep_hourly);
    put("keep_daily", r.keep_daily);
    put("keep_weekly", r.keep_weekly);
    put("keep_monthly", r.keep_monthly);
    put("keep_yearly", r.keep_yearly);
    put("before_change_keep_last", r.before_change_keep_last);
    if let Some(w) = &r.keep_within {
        q.push(("keep_within", w.clone()));
    }
    q
}

/// The rules as a policy (a task's or a prune schedule's); at least one is needed.
pub(crate) fn retention_spec(r: &RetentionRules) -> Result<RetentionSpec, CliError> {
    let spec = RetentionSpec {
        regular: RulesSpec {
            keep_last: r.keep_last.unwrap_or(0),
            keep_hourly: r.keep_hourly.unwrap_or(0),
            keep_daily: r.keep_daily.unwrap_or(0),
            keep_weekly: r.keep_weekly.unwrap_or(0),
            keep_monthly: r.keep_monthly.unwrap_or(0),
            keep_yearly: r.keep_yearly.unwrap_or(0),
            keep_within: r.keep_within.clone(),
        },
        before_change: RulesSpec {
            keep_last: r.before_change_keep_last.unwrap_or(0),
            ..Default::default()
        },
    };
    if spec.regular.is_empty() {
        return Err(usage(
            "give at least one rule, e.g. --keep-last 7 --keep-daily 14 (restic's forget rules)",
        ));
    }
    Ok(spec)
}

/// A preview as a table: each backup, kept or going, and why.
pub(crate) fn retention_table(p: &RetentionPreview) -> String {
    let mut out = verdict_table(&p.backups);
    for t in &p.targets {
        out.push_str(&format!(
            "\ncopies on target {} (its own retention):\n{}",
            t.target,
            verdict_table(&t.copies)
        ));
    }
    out
}

fn verdict_table(verdicts: &[berth_contracts::schedule::RetentionVerdict]) -> String {
    let rows: Vec<Vec<String>> = verdicts
        .iter()
        .map(|b| {
            vec![
                b.id.to_string(),
                time(&b.created_at),
                if b.keep { "keep" } else { "remove" }.into(),
                b.reasons.join(", "),
                short(&b.description, 40),
            ]
        })
        .collect();
    table(&["ID", "CREATED", "VERDICT", "WHY", "DESCRIPTION"], &rows)
}

fn timing_json(t: &ScheduleTiming, body: &mut serde_json::Map<String, Value>) {
    let mut put = |k: &str, v: Option<u32>| {
        if let Some(v) = v {
            body.insert(k.into(), json!(v));
        }
    };
    put("window_secs", t.window_secs);
    put("spread_secs", t.spread_secs);
    put("cap_per_web_server", t.cap_per_web_server);
    put("cap_per_db_server", t.cap_per_db_server);
    put("alert_after_failures", t.alert_after_failures);
}

fn details(s: &Schedule) -> String {
    kv(&[
        ("name", s.name.clone()),
        ("job", serde_json::to_string(&s.job).unwrap_or_default()),
        ("scope", s.scope.clone()),
        ("cron", format!("{} ({})", s.expression, s.time_zone)),
        ("enabled", s.enabled.to_string()),
        ("next slot", opt_time(&s.next_slot)),
        (
            "window",
            format!("{} s, spread over {} s", s.window_secs, s.spread_secs),
        ),
        (
            "caps",
            format!(
                "{} per web server, {} per db server (0: none)",
                s.cap_per_web_server, s.cap_per_db_server
            ),
        ),
        (
            "alerts",
            format!(
                "{} open; raised after {} failures in a row",
                s.open_alerts, s.alert_after_failures
            ),
        ),
    ])
}

pub(crate) async fn schedules(
    client: &Client,
    json: bool,
    c: SchedulesCommand,
) -> Result<ExitCode, CliError> {
    let one = |name: &str| format!("/schedules/{}", segment(name));
    let v = match c {
        SchedulesCommand::List => {
            let v = client.get("/schedules", &[]).await?;
            if !json {
                let list: Vec<Schedule> = decode("schedules", v)?;
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|s| {
                        vec![
                            s.name.clone(),
                            s.kind.as_str().into(),
                            s.scope.clone(),
                            s.expression.clone(),
                            if s.enabled { "yes" } else { "no" }.into(),
                            opt_time(&s.next_slot),
                            s.open_alerts.to_string(),
                        ]
                    })
                    .collect();
                let headers = ["NAME", "JOB", "SCOPE", "CRON", "ENABLED", "NEXT", "ALERTS"];
                print!("{}", table(&headers, &rows));
                return Ok(ExitCode::SUCCESS);
            }
            v
        }
        SchedulesCommand::Show { name } => client.get(&one(&name), &[]).await?,
        SchedulesCommand::Create {
            name,
            scope,
            expression,
            time_zone,
            job,
            targets,
            rules,
            timing,
            disabled,
        } => {
            let job = match job.as_str() {
                "cron" => json!({"kind": "cron"}),
                "backup" => json!({"kind": "backup", "targets": targets}),
                "prune" => json!({"kind": "prune", "retention": retention_spec(&rules)?}),
                "usage" => json!({"kind": "usage"}),
                other => {
                    return Err(usage(format!(
                        "--job {other}: give cron, backup, prune or usage"
                    )));
                }
            };
            let mut body = serde_json::Map::new();
            body.insert("name".into(), json!(name));
            body.insert("scope".into(), json!(scope));
            body.insert("expression".into(), json!(expression));
            body.insert("time_zone".into(), json!(time_zone));
            body.insert("job".into(), job);
            body.insert("enabled".into(), json!(!disabled));
            timing_json(&timing, &mut body);
            client.post("/schedules", &Value::Object(body)).await?
        }
        SchedulesCommand::Change {
            name,
            expression,
            time_zone,
            timing,
            enable,
            disable,
        } => {
            let mut body = serde_json::Map::new();
            if let Some(e) = expression {
                body.insert("expression".into(), json!(e));
            }
            if let Some(tz) = time_zone {
                body.insert("time_zone".into(), json!(tz));
            }
            if enable || disable {
                body.insert("enabled".into(), json!(enable));
            }
            timing_json(&timing, &mut body);
            client.patch(&one(&name), &Value::Object(body)).await?
        }
        SchedulesCommand::Delete { name } => {
            client.delete(&one(&name)).await?;
            eprintln!("schedule {name} deleted");
            return Ok(ExitCode::SUCCESS);
        }
        SchedulesCommand::Runs {
            name,
            site,
            status,
            limit,
        } => {
            let mut q = vec![("limit", limit.to_string())];
            if let Some(s) = site {
                q.push(("site", s));
            }
            if let Some(s) = status {
                q.push(("status", s));
            }
            let v = client.get(&format!("{}/runs", one(&name)), &q).await?;
            if !json {
                let runs: Vec<ScheduleRun> = decode("runs", v)?;
                let rows: Vec<Vec<String>> = runs
                    .iter()
                    .map(|r| {
                        vec![
                            time(&r.slot),
                            r.site.clone(),
                            r.status.clone(),
                            r.task_id.map(|t| t.to_string()).unwrap_or_default(),
                            r.task_status.clone().unwrap_or_default(),
                        ]
                    })
                    .collect();
                let headers = ["SLOT", "SITE", "RUN", "TASK", "TASK STATUS"];
                print!("{}", table(&headers, &rows));
                return Ok(ExitCode::SUCCESS);
            }
            v
        }
        SchedulesCommand::Alerts {
            schedule,
            site,
            all,
        } => {
            let mut q = vec![("all", all.to_string())];
            if let Some(s) = schedule {
                q.push(("schedule", s));
            }
            if let Some(s) = site {
                q.push(("site", s));
            }
            let v = client.get("/schedule-alerts", &q).await?;
            if !json {
                let alerts: Vec<ScheduleAlert> = decode("alerts", v)?;
                let rows: Vec<Vec<String>> = alerts
                    .iter()
                    .map(|a| {
                        vec![
                            time(&a.raised_at),
                            a.schedule.clone(),
                            a.site.clone().unwrap_or_default(),
                            a.kind.clone(),
                            opt_time(&a.cleared_at),
                            short(&a.message, 70),
                        ]
                    })
                    .collect();
                let headers = ["RAISED", "SCHEDULE", "SITE", "KIND", "CLEARED", "MESSAGE"];
                print!("{}", table(&headers, &rows));
                return Ok(ExitCode::SUCCESS);
            }
            v
        }
    };
    if json {
        print_json(&v);
    } else {
        print!("{}", details(&decode("schedule", v)?));
    }
    Ok(ExitCode::SUCCESS)
}
