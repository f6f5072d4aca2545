//! The account of effects, read from the real servers after the run: every site serves as
//! its status says, and every database, user, vhost, site directory, DNS record, backup
//! and step result exists exactly as often as berth's records say.

use crate::workload::{Account, Expect};
use crate::{Env, say};
use anyhow::{Context, Result};
use berth_test_servers::named::Named;
use berth_test_servers::web::Web;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

#[derive(Debug, Default)]
pub struct Checks {
    pub doubled: Vec<String>,
    pub left_behind: Vec<String>,
    pub not_serving: Vec<String>,
    pub wrong_state: Vec<String>,
    pub sites_checked: usize,
    pub dead_letters: i64,
    /// Tasks that ended in error, by type, failing step and reason.
    pub errors: Vec<(String, i64)>,
}

pub async fn run(e: &Env, a: &Account, web: &Web, named: &Named) -> Result<Checks> {
    say("checking every effect against the servers");
    let mut out = Checks::default();
    let pg = sqlx::PgPool::connect(&e.pg_url)
        .await
        .context("connect to the run's PostgreSQL")?;
    let sites: Vec<(String, String, String, String, String)> =
        sqlx::query_as("SELECT uri, status, db_name, db_user, platform FROM sites ORDER BY uri")
            .fetch_all(&pg)
            .await?;
    out.sites_checked = sites.len();
    let live = |status: &str| matches!(status, "enabled" | "disabled");

    // What berth says against what each task's outcome promised.
    let by_uri: BTreeMap<&str, &(String, String, String, String, String)> =
        sites.iter().map(|s| (s.0.as_str(), s)).collect();
    for m in &a.sites {
        let want = match m.expect {
            Expect::Enabled => "enabled",
            Expect::Disabled => "disabled",
            Expect::Deleted => "deleted",
            Expect::Failed => "failed",
            Expect::Installing | Expect::Unknown => continue,
        };
        match by_uri.get(m.uri.as_str()) {
            None => out
                .wrong_state
                .push(format!("{}: no site row (expected {want})", m.uri)),
            Some(s) if s.1 != want => out
                .wrong_state
                .push(format!("{}: status {} (expected {want})", m.uri, s.1)),
            Some(s) if live(&s.1) && s.4 != m.platform => out
                .wrong_state
                .push(format!("{}: on {} (expected {})", m.uri, s.4, m.platform)),
            Some(_) => {}
        }
    }

    // Serving: enabled answers its page from its own database, disabled the 503 page.
    for (uri, status, db, _, _) in &sites {
        let r = web.get(uri, "/");
        match (status.as_str(), r) {
            ("enabled", Ok((200, body, _))) if body.contains(&format!("database {db} ")) => {}
            ("enabled", r) => out
                .not_serving
                .push(format!("{uri} (enabled): {}", brief(r))),
            ("disabled", Ok((503, body, _))) if body.contains("Site disabled") => {}
            ("disabled", r) => out
                .not_serving
                .push(format!("{uri} (disabled): {}", brief(r))),
            (_, Ok((200, body, _))) => out.left_behind.push(format!(
                "{uri} ({status}) still serves: {}",
                first_line(&body)
            )),
            _ => {}
        }
    }

    // MariaDB: one database and one user per live site, nothing else.
    let my = sqlx::MySqlPool::connect(&format!("mysql://root@127.0.0.1:{}", e.my_port))
        .await
        .context("connect to the run's MariaDB")?;
    let dbs: Vec<(String,)> = sqlx::query_as(
        "SELECT CAST(schema_name AS CHAR) FROM information_schema.schemata WHERE schema_name \
         NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys', 'test')",
    )
    .fetch_all(&my)
    .await?;
    let users: Vec<(String, String)> = sqlx::query_as(
        "SELECT CAST(user AS CHAR), CAST(host AS CHAR) FROM mysql.user \
         WHERE user NOT IN ('root', 'mariadb.sys', 'mysql', '', 'PUBLIC')",
    )
    .fetch_all(&my)
    .await?;
    let live_dbs: BTreeSet<&str> = sites
        .iter()
        .filter(|s| live(&s.1))
        .map(|s| s.2.as_str())
        .collect();
    let live_users: BTreeSet<&str> = sites
        .iter()
        .filter(|s| live(&s.1))
        .map(|s| s.3.as_str())
        .collect();
    let have_dbs: BTreeSet<&str> = dbs.iter().map(|d| d.0.as_str()).collect();
    for d in &have_dbs {
        if !live_dbs.contains(d) {
            out.left_behind.push(format!("database {d}"));
        }
    }
    for d in &live_dbs {
        if !have_dbs.contains(d) {
            out.wrong_state
                .push(format!("database {d} of a live site is missing"));
        }
    }
    let mut hosts_per_user: BTreeMap<&str, usize> = BTreeMap::new();
    for (u, h) in &users {
        if !live_users.contains(u.as_str()) {
            out.left_behind.push(format!("database user {u}@{h}"));
        }
        *hosts_per_user.entry(u.as_str()).or_default() += 1;
    }
    for u in &live_users {
        if !hosts_per_user.contains_key(u) {
            out.wrong_state
                .push(format!("database user {u} of a live site is missing"));
        }
    }

    // nginx: one vhost per live site.
    let vhost_dir = e
        .dir
        .join("config")
        .join(crate::SERVER)
        .join("nginx")
        .join("vhost.d");
    let live_uris: BTreeSet<&str> = sites
        .iter()
        .filter(|s| live(&s.1))
        .map(|s| s.0.as_str())
        .collect();
    let vhosts = names_in(&vhost_dir);
    for f in &vhosts {
        match f.strip_suffix(".conf") {
            Some(u) if live_uris.contains(u) => {}
            _ => out.left_behind.push(format!("vhost file {f}")),
        }
    }
    for u in &live_uris {
        if !vhosts.contains(&format!("{u}.conf")) {
            out.wrong_state.push(format!("vhost of {u} is missing"));
        }
    }

    // Site directories: each live site's under its platform, nothing else.
    for (platform, root) in &e.platforms {
        let here: BTreeSet<&str> = sites
            .iter()
            .filter(|s| live(&s.1) && s.4 == *platform)
            .map(|s| s.0.as_str())
            .collect();
        let dir = root.join("sites");
        let present = names_in(&dir);
        for n in &present {
            if n == "default" || !dir.join(n).is_dir() {
                continue;
            }
            if !here.contains(n.as_str()) {
                out.left_behind
                    .push(format!("directory {platform}/sites/{n}"));
            }
        }
        for u in &here {
            if !present.contains(*u) {
                out.wrong_state
                    .push(format!("directory of {u} missing on {platform}"));
            }
        }
    }

    // DNS: one A record per live site, none for the others.
    for (uri, status, ..) in &sites {
        let answers = named.dig(uri, "A").unwrap_or_default();
        match (live(status), answers.len()) {
            (true, 1) | (false, 0) => {}
            (_, n) if n > 1 => out
                .doubled
                .push(format!("{n} A records for {uri}: {answers:?}")),
            (true, _) => out.wrong_state.push(format!("no A record for {uri}")),
            (false, _) => out
                .left_behind
                .push(format!("A record for {uri} ({status})")),
        }
    }

    // Backups: each file has one row, each row's file exists, one backup per task.
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT id::text, path FROM backups WHERE deleted_at IS NULL")
            .fetch_all(&pg)
            .await?;
    let paths: BTreeSet<String> = rows.iter().map(|r| r.1.clone()).collect();
    for (id, path) in &rows {
        if !Path::new(path).is_file() {
            out.wrong_state
                .push(format!("backup {id}: file {path} missing"));
        }
    }
    for f in files_under(&e.dir.join("backups")) {
        if !paths.contains(&f) {
            out.left_behind
                .push(format!("backup file {f} without a row"));
        }
    }
    let per_task: Vec<(String, i64)> = sqlx::query_as(
        "SELECT task_id::text, count(*) FROM backups GROUP BY task_id HAVING count(*) > 1",
    )
    .fetch_all(&pg)
    .await?;
    for (t, n) in per_task {
        out.doubled.push(format!("task {t} made {n} backups"));
    }

    // Step results: each recorded once (a result or a take-back logged twice means twice).
    let dup: Vec<(String, i64)> = sqlx::query_as(
        "SELECT step_id::text, count(*) FROM task_log \
         WHERE step_id IS NOT NULL AND (message ~ ': (success|warning) on attempt ' \
                                        OR message ~ ': taken back$') \
         GROUP BY step_id, (message ~ 'taken back') HAVING count(*) > 1",
    )
    .fetch_all(&pg)
    .await?;
    for (s, n) in dup {
        out.doubled
            .push(format!("step {s}: result recorded {n} times"));
    }
    // Steps left running or compensating in a finished task.
    let dangling: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT t.id::text, s.action, s.status FROM steps s JOIN tasks t ON t.id = s.task_id \
         WHERE t.status IN ('success', 'warning', 'error', 'cancelled') \
           AND s.status IN ('running', 'compensating')",
    )
    .fetch_all(&pg)
    .await?;
    for (t, action, status) in dangling {
        out.wrong_state
            .push(format!("task {t} ended with step {action} {status}"));
    }
    let (dl,): (i64,) = sqlx::query_as("SELECT count(*) FROM dead_letters")
        .fetch_one(&pg)
        .await?;
    out.dead_letters = dl;
    out.errors = sqlx::query_as(
        "SELECT t.type || ' ' || t.target_kind || ': ' || coalesce(s.action, '-') || ': ' || \
                left(regexp_replace(coalesce(s.error, ''), '[0-9a-f]{8}-[0-9a-f-]{27}|s[0-9]+\\.chaos\\.test|[0-9]+', '#', 'g'), 140), \
                count(*) \
         FROM tasks t LEFT JOIN LATERAL (SELECT action, error FROM steps \
              WHERE task_id = t.id AND status = 'error' ORDER BY position LIMIT 1) s ON true \
         WHERE t.status = 'error' GROUP BY 1 ORDER BY 2 DESC",
    )
    .fetch_all(&pg)
    .await?;
    Ok(out)
}

fn brief(r: Result<berth_test_servers::web::Response>) -> String {
    match r {
        Ok((status, body, _)) => format!("{status} {}", first_line(&body)),
        Err(e) => format!("{e:#}"),
    }
}

fn first_line(s: &str) -> String {
    s.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .chars()
        .take(120)
        .collect()
}

fn names_in(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p.display().to_string());
            }
        }
    }
    out
}
