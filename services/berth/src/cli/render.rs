//! How the command line shows things to people: tables, `key  value` lines, times, log
//! lines and the details of servers, platforms, sites, tasks and dead letters. No I/O but
//! `print_json`.

use berth_contracts::{DeadLetter, LogEntry, Package, Page, Platform, Server, Site, Step, Task};
use serde_json::Value;
use std::fmt::Write as _;

pub(crate) fn print_json(v: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    );
}

pub(crate) fn time(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

pub(crate) fn opt_time(t: &Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.as_ref().map(time).unwrap_or_else(|| "-".into())
}

/// Columns padded to their widest cell, separated by two spaces; the last column is not
/// padded.
pub(crate) fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i == last {
                s.push_str(c);
            } else {
                let pad = widths[i] - c.chars().count();
                s.push_str(c);
                s.push_str(&" ".repeat(pad + 2));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// One line, at most `max` characters.
pub(crate) fn short(s: &str, max: usize) -> String {
    let one_line = s.replace(['\n', '\r'], " ");
    if one_line.chars().count() <= max {
        one_line
    } else {
        let cut: String = one_line.chars().take(max.saturating_sub(1)).collect();
        cut + "…"
    }
}

pub(crate) fn log_line(e: &LogEntry) -> String {
    format!("{} [{}] {}", time(&e.at), e.level.as_str(), e.message)
}

pub(crate) fn services_cells(s: &Server) -> [String; 3] {
    let http = s
        .services
        .http
        .as_ref()
        .map(|h| format!("{}:{}", h.service_type, h.port))
        .unwrap_or_else(|| "-".into());
    let db = s
        .services
        .db
        .as_ref()
        .map(|d| {
            if d.service_type == "null" {
                "null".into()
            } else {
                format!("{} {}@{}:{}", d.service_type, d.admin_user, d.host, d.port)
            }
        })
        .unwrap_or_else(|| "-".into());
    let dns = s
        .services
        .dns
        .as_ref()
        .map(|d| format!("{}:{}", d.service_type, d.port))
        .unwrap_or_else(|| "-".into());
    [http, db, dns]
}

pub(crate) fn server_details(s: &Server) -> String {
    let [http, db, dns] = services_cells(s);
    let mut rows = vec![
        ("Name", s.name.clone()),
        ("Host", s.host.clone()),
        ("http", http),
        ("db", db),
        ("dns", dns),
        ("Created", time(&s.created_at)),
        ("Updated", time(&s.updated_at)),
    ];
    if let Some(t) = s.verify_task {
        rows.push(("Verify task", t.to_string()));
    }
    kv(&rows)
}

pub(crate) fn kv(rows: &[(&str, String)]) -> String {
    let w = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    rows.iter().map(|(k, v)| format!("{k:w$}  {v}\n")).collect()
}

fn step_lines(out: &mut String, s: &Step) {
    let _ = writeln!(
        out,
        "  {}. {}.{} {}  {}  attempts {}{}",
        s.position,
        s.service,
        s.server,
        s.action,
        s.status.as_str(),
        s.attempts,
        match (&s.started_at, &s.finished_at) {
            (Some(a), Some(b)) => format!("  {} → {}", time(a), time(b)),
            (Some(a), None) => format!("  started {}", time(a)),
            _ => String::new(),
        }
    );
    if let Some(c) = &s.compensation {
        let _ = writeln!(out, "     compensation: {c}");
    }
    if let Some(e) = &s.error {
        let _ = writeln!(out, "     error: {e}");
    }
    for h in &s.history {
        let kind = match h.kind {
            berth_contracts::ErrorKind::Transient => "transient",
            berth_contracts::ErrorKind::Permanent => "permanent",
        };
        let _ = writeln!(
            out,
            "     attempt {} at {} by {} ({kind}): {}{}",
            h.attempt,
            time(&h.at),
            h.worker,
            h.error,
            match h.retry_in_ms {
                Some(ms) => format!("; retry in {ms} ms"),
                None => "; no retry".into(),
            }
        );
    }
}

pub(crate) fn task_details(t: &Task) -> String {
    let mut rows = vec![
        ("Task", t.id.to_string()),
        ("Type", t.task_type.clone()),
        (
            "Target",
            format!("{} ({})", t.target, t.target_kind.as_str()),
        ),
        ("Status", t.status.as_str().to_string()),
        ("Requested by", t.requested_by.clone()),
        ("Trace", t.trace_id.clone()),
    ];
    if let Some(r) = t.retry_of {
        rows.push(("Retry of", r.to_string()));
    }
    rows.push(("Created", time(&t.created_at)));
    rows.push(("Started", opt_time(&t.started_at)));
    rows.push(("Finished", opt_time(&t.finished_at)));
    if t.args.as_object().is_none_or(|o| !o.is_empty()) {
        rows.push(("Args", t.args.to_string()));
    }
    let mut out = kv(&rows);
    if let Some(steps) = &t.steps {
        out.push_str("\nSteps:\n");
        if steps.is_empty() {
            out.push_str("  (none yet)\n");
        }
        for s in steps {
            step_lines(&mut out, s);
        }
    }
    if let Some(log) = &t.log {
        out.push_str("\nLog:\n");
        if log.is_empty() {
            out.push_str("  (empty)\n");
        }
        for e in log {
            let _ = writeln!(out, "  {}", log_line(e));
        }
    }
    out
}

pub(crate) fn tasks_table(page: &Page<Task>) -> String {
    let rows: Vec<Vec<String>> = page
        .items
        .iter()
        .map(|t| {
            vec![
                t.id.to_string(),
                t.task_type.clone(),
                t.target.clone(),
                t.status.as_str().to_string(),
                time(&t.created_at),
            ]
        })
        .collect();
    table(&["ID", "TYPE", "TARGET", "STATUS", "CREATED"], &rows)
}

pub(crate) fn dead_letter_details(d: &DeadLetter) -> String {
    let mut out = kv(&[
        ("Dead letter", d.id.to_string()),
        ("Task", d.task_id.to_string()),
        ("Step", d.step_id.to_string()),
        ("Routing key", d.routing_key.clone()),
        ("Error", d.error.clone()),
        ("Created", time(&d.created_at)),
        ("Replayed", opt_time(&d.replayed_at)),
    ]);
    out.push_str("\nAttempts:\n");
    if d.history.is_empty() {
        out.push_str("  (none recorded)\n");
    }
    for h in &d.history {
        let _ = writeln!(
            out,
            "  attempt {} at {} by {}: {}{}",
            h.attempt,
            time(&h.at),
            h.worker,
            h.error,
            h.retry_in_ms
                .map(|ms| format!("; retry in {ms} ms"))
                .unwrap_or_default()
        );
    }
    out.push_str("\nCommand:\n");
    let payload = serde_json::to_string_pretty(&d.payload).unwrap_or_default();
    for l in payload.lines() {
        let _ = writeln!(out, "  {l}");
    }
    out
}

pub(crate) fn platform_details(p: &Platform) -> String {
    kv(&[
        ("name", p.name.clone()),
        ("root", p.root.clone()),
        ("web server", p.web_server.clone()),
        ("cron method", p.cron_method.as_str().into()),
        ("status", p.status.clone()),
        ("locked", p.locked.to_string()),
        (
            "drupal",
            p.core_version.clone().unwrap_or_else(|| "-".into()),
        ),
        ("sites", p.sites.to_string()),
        ("to import", p.found_sites.join(", ")),
        ("verified", opt_time(&p.verified_at)),
    ])
}

pub(crate) fn site_details(s: &Site) -> String {
    let mut rows = vec![
        ("uri", s.uri.clone()),
        ("status", s.status.clone()),
        ("platform", s.platform.clone()),
        ("db server", s.db_server.clone()),
        ("database", s.db_name.clone()),
        ("profile", format!("{} ({})", s.profile, s.language)),
        ("aliases", s.aliases.join(", ")),
        (
            "redirection",
            if s.redirection { "on" } else { "off" }.into(),
        ),
        ("client", s.client.clone().unwrap_or_default()),
        ("client e-mail", s.client_email.clone().unwrap_or_default()),
        ("created", time(&s.created_at)),
    ];
    if let Some(link) = &s.login_link {
        rows.push(("login link", link.clone()));
    }
    if let Some(c) = &s.last_cron {
        rows.push((
            "last cron",
            format!(
                "{} at {}, {:.1} s (task {})",
                c.result,
                time(&c.started_at),
                c.duration_ms as f64 / 1000.0,
                c.task
            ),
        ));
    }
    kv(&rows)
}

pub(crate) fn packages_table(list: &[Package]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|p| {
            vec![
                p.name.clone(),
                p.package_type.as_str().into(),
                p.version.clone().unwrap_or_default(),
                p.schema_version.map(|v| v.to_string()).unwrap_or_default(),
            ]
        })
        .collect();
    table(&["NAME", "TYPE", "VERSION", "SCHEMA"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_line_up() {
        let t = table(
            &["ID", "STATUS"],
            &[
                vec!["a".into(), "success".into()],
                vec!["bbbb".into(), "x".into()],
            ],
        );
        assert_eq!(t, "ID    STATUS\na     success\nbbbb  x\n");
    }
}
