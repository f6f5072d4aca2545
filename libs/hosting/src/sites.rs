//! Platforms and sites: what the planner knows of them, the plans of their tasks, and the
//! names berth derives for a site (database, user, hosts its user may connect from).
//!
//! Every site step gets the same `site` description in its arguments, built here from the
//! facts the state service read, so that workers never read state themselves.

use crate::tasks::{Plan, PlannedStep, SecretNeed, ServerFacts, TaskType};
use serde_json::{Value, json};

/// Site statuses, as stored.
pub mod status {
    pub const INSTALLING: &str = "installing";
    pub const ENABLED: &str = "enabled";
    pub const DISABLED: &str = "disabled";
    pub const FAILED: &str = "failed";
    pub const DELETED: &str = "deleted";
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlatformFacts {
    pub name: String,
    pub root: String,
    /// The web server publishing the platform.
    pub web_server: ServerFacts,
    /// Its host name (where site users' database grants point).
    pub web_host: String,
    /// `{"type": "drush", "bin": ...}`.
    pub installer: Value,
    pub drupal_major: Option<i32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SiteFacts {
    pub uri: String,
    pub aliases: Vec<String>,
    pub redirection: bool,
    pub profile: String,
    pub language: String,
    pub client_email: Option<String>,
    pub status: String,
    pub db_name: String,
    pub db_user: String,
    /// The unix user (and group of the same number) the site's PHP and installer run as.
    pub unix_uid: u32,
    pub platform: PlatformFacts,
    pub db_server: ServerFacts,
}

/// Drupal's one-time login links: `…/user/reset/<uid>/<timestamp>/<hash>/login`. A link is
/// spent once its user has logged in at or after its timestamp (Drupal's own rule: the
/// hash covers the last login time).
pub mod login {
    /// The link's timestamp.
    pub fn timestamp(link: &str) -> Option<i64> {
        let rest = link.split("/user/reset/").nth(1)?;
        let mut parts = rest.split('/');
        let _uid = parts.next()?;
        parts.next()?.parse().ok()
    }

    /// The query giving the admin's last login time on a site of this Drupal version.
    pub fn last_login_sql(drupal_major: Option<i32>) -> &'static str {
        if drupal_major.is_some_and(|m| m <= 7) {
            "SELECT CAST(COALESCE(login, 0) AS SIGNED) FROM users WHERE uid = 1"
        } else {
            "SELECT CAST(COALESCE(login, 0) AS SIGNED) FROM users_field_data WHERE uid = 1"
        }
    }

    /// Whether a link with this timestamp is spent, given the admin's last login.
    pub fn spent(link_ts: i64, last_login: i64) -> bool {
        last_login >= link_ts
    }
}

fn managed(t: &str) -> bool {
    t != "null"
}

/// The database and user names of a new site: the uri's letters and digits (Aegir's
/// habit), cut to fit MySQL's limits, with a random suffix so that re-installing a uri
/// never meets the leftovers of an earlier one. `suffix` is 6 lower-case hex digits.
pub fn db_names(uri: &str, suffix: &str) -> (String, String) {
    let base: String = uri
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(25)
        .collect();
    let name = format!("{base}_{suffix}");
    // MySQL user names are at most 32 characters; the database gets the same name.
    (name.clone(), name)
}

/// Hosts the site's database user may connect from: the addresses the web server's PHP
/// really connects from. When the db server's host is a loopback address, PHP can only
/// reach it from this machine, over loopback, so the grants are both spellings of the
/// local host whatever the web server calls itself (MariaDB skips name resolution and
/// sees 127.0.0.1, never the host name `ops/run.sh` registers). Likewise when the web
/// server is the local machine. Otherwise, the web server's host.
pub fn grant_hosts(web_host: &str, db_host: &str) -> Vec<String> {
    let local = |h: &str| {
        let h = h.trim_end_matches('.').to_ascii_lowercase();
        h == "localhost"
            || h.ends_with(".localhost")
            || h.trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    };
    if local(db_host) || local(web_host) {
        vec!["localhost".into(), "127.0.0.1".into()]
    } else {
        vec![web_host.to_string()]
    }
}

impl SiteFacts {
    /// The description every site step carries.
    pub fn step_args(&self, disabled: bool) -> Value {
        let db = self.db_server.db.as_ref();
        let http = self.platform.web_server.http.as_ref();
        json!({
            "uri": self.uri,
            "aliases": self.aliases,
            "redirection": self.redirection,
            "profile": self.profile,
            "language": self.language,
            "client_email": self.client_email,
            "platform": self.platform.name,
            "root": self.platform.root,
            "drupal_major": self.platform.drupal_major,
            "installer": self.platform.installer,
            "disabled": disabled,
            "unix_uid": self.unix_uid,
            "http": {
                "type": http.map(|h| h.service_type.as_str()).unwrap_or("null"),
                "port": http.map(|h| h.port).unwrap_or(80),
            },
            "db": {
                "type": db.map(|d| d.service_type.as_str()).unwrap_or("null"),
                "host": db.map(|d| d.host.as_str()).unwrap_or("127.0.0.1"),
                "port": db.map(|d| d.port).unwrap_or(3306),
                "admin_user": db.map(|d| d.admin_user.as_str()).unwrap_or("root"),
                "name": self.db_name,
                "user": self.db_user,
                "grant_hosts": grant_hosts(
                    &self.platform.web_host,
                    db.map(|d| d.host.as_str()).unwrap_or("127.0.0.1"),
                ),
            },
            "web_host": self.platform.web_host,
        })
    }

    fn dns_managed(&self) -> bool {
        self.platform
            .web_server
            .dns
            .as_ref()
            .is_some_and(|d| d.service_type == "bind")
    }
}

/// The statuses a site must be in for a task type to run on it.
pub fn statuses_for(task_type: TaskType) -> &'static [&'static str] {
    match task_type {
        TaskType::Install => &[status::INSTALLING, status::FAILED],
        TaskType::Verify => &[status::ENABLED, status::DISABLED],
        TaskType::Disable | TaskType::LoginReset => &[status::ENABLED],
        TaskType::Enable => &[status::DISABLED],
        TaskType::Backup => &[status::ENABLED, status::DISABLED],
        // The API refuses an enabled site unless deleting enabled sites is allowed.
        TaskType::Delete => &[status::DISABLED, status::ENABLED],
        TaskType::Restore | TaskType::Migrate | TaskType::Clone | TaskType::BackupDelete => {
            &[status::ENABLED, status::DISABLED]
        }
        TaskType::Noop => &[],
    }
}

/// `Err` says why a task type cannot run on a site in this status.
pub fn check_status(task_type: TaskType, uri: &str, current: &str) -> Result<(), String> {
    let allowed = statuses_for(task_type);
    if allowed.contains(&current) {
        Ok(())
    } else if allowed.is_empty() {
        Err(format!("{} does not run on sites", task_type.as_str()))
    } else {
        Err(format!(
            "site `{uri}` is {current}: {} needs it {}",
            task_type.as_str(),
            allowed.join(" or ")
        ))
    }
}

fn step(
    service: &'static str,
    server: &str,
    action: &str,
    args: &Value,
    compensation: Option<&str>,
    secret: Option<SecretNeed>,
) -> PlannedStep {
    PlannedStep {
        service,
        server: server.to_string(),
        action: action.into(),
        args: args.clone(),
        compensation: compensation.map(Into::into),
        secret,
    }
}

/// The steps of a task on a platform; `Err` says why it cannot run.
pub fn plan_platform_task(task_type: TaskType, p: &PlatformFacts) -> Result<Plan, String> {
    match task_type {
        TaskType::Verify => {
            if !p
                .web_server
                .http
                .as_ref()
                .is_some_and(|h| managed(&h.service_type))
            {
                return Err(format!(
                    "web server `{}` has no managed http service",
                    p.web_server.name
                ));
            }
            let args = json!({"platform": p.name, "root": p.root, "installer": p.installer});
            Ok(Plan {
                steps: vec![step(
                    "http",
                    &p.web_server.name,
                    "platform-verify",
                    &args,
                    None,
                    None,
                )],
            })
        }
        other => Err(format!(
            "task type `{}` does not run on a platform",
            other.as_str()
        )),
    }
}

/// The backup step of a backup, delete, restore…: its file name and options come with the
/// task (the API names the file when it accepts the task).
fn backup_step(s: &SiteFacts, web: &str, task_args: &Value) -> Result<PlannedStep, String> {
    let backup = task_args
        .get("backup")
        .filter(|b| b.get("file").and_then(Value::as_str).is_some())
        .ok_or("the task carries no backup file name")?;
    let mut args = s.step_args(s.status == status::DISABLED);
    args["backup"] = backup.clone();
    Ok(step(
        "backup",
        web,
        "site-backup",
        &args,
        None,
        Some(SecretNeed::SiteDb),
    ))
}

/// The directory a restore unpacks the backup into, beside the live site.
pub fn restore_dir(root: &str, uri: &str) -> String {
    format!("{root}/sites/{uri}.berth-new")
}

/// A restore, in steps that each can be taken back until the old database is dropped,
/// the last step that can fail: maintenance page, a backup of the site as it is, a new
/// database, the chosen backup unpacked beside the site and imported, the swap, updatedb,
/// the vhost with the new credentials, the package map, then the old database dropped and
/// the old directory removed. A failure anywhere before the drop puts everything back.
/// The deploy steps restore, migrate and clone share, each taken back on a later failure:
/// the new database, the backup unpacked beside the target and imported into it, the swap,
/// `updatedb` (with the file paths on a new uri), the new vhost.
fn deploy_steps(
    web: &str,
    db_server: &str,
    next_args: &Value,
    source: (&str, &Value),
    new_dir: &str,
    renamed_from: Option<&str>,
) -> (Vec<PlannedStep>, Value) {
    let (key, value) = source;
    let mut extract = json!({
        "target_dir": new_dir,
        "db": {
            "host": next_args["db"]["host"], "port": next_args["db"]["port"],
            "name": next_args["db"]["name"], "user": next_args["db"]["user"],
        },
    });
    extract[key] = value.clone();
    let mut swap = next_args.clone();
    swap["new_dir"] = json!(new_dir);
    if let Some(from) = renamed_from {
        swap["renamed_from"] = json!(from);
    }
    let steps = vec![
        step(
            "db",
            db_server,
            "site-db-create",
            next_args,
            Some("site-db-drop"),
            Some(SecretNeed::DbAdminAndSiteDbNext),
        ),
        step(
            "backup",
            web,
            "backup-extract",
            &extract,
            Some("backup-extract-remove"),
            Some(SecretNeed::SiteDbNext),
        ),
        step(
            "http",
            web,
            "site-swap",
            &swap,
            Some("site-swap-back"),
            None,
        ),
        step(
            "http",
            web,
            "site-updatedb",
            &swap,
            None,
            Some(SecretNeed::SiteDbNext),
        ),
        step(
            "http",
            web,
            "site-vhost",
            next_args,
            Some("site-vhost-restore"),
            Some(SecretNeed::SiteDbNext),
        ),
    ];
    (steps, swap)
}

/// The steps after the deploy: the package map, the old database dropped (the point of
/// no return) and a cleanup that never fails.
fn finish_steps(
    web: &str,
    s: &SiteFacts,
    old_args: &Value,
    next_args: &Value,
    cleanup: &Value,
) -> Vec<PlannedStep> {
    vec![
        step(
            "http",
            web,
            "site-packages",
            next_args,
            None,
            Some(SecretNeed::SiteDbNext),
        ),
        step(
            "db",
            &s.db_server.name,
            "site-db-drop",
            old_args,
            None,
            Some(SecretNeed::DbAdmin),
        ),
        step("http", web, "site-cleanup", cleanup, None, None),
    ]
}

/// A new site's last steps: its records (when berth manages its DNS; taken back by their
/// removal), then its package map with a first login link.
fn records_then_packages(
    dns_managed: bool,
    web: &str,
    args: &Value,
    packages_need: SecretNeed,
) -> Vec<PlannedStep> {
    let mut steps = Vec::new();
    if dns_managed {
        steps.push(step(
            "dns",
            web,
            "site-records",
            args,
            Some("site-records-remove"),
            None,
        ));
    }
    let mut last = args.clone();
    last["login"] = json!(true);
    steps.push(step(
        "http",
        web,
        "site-packages",
        &last,
        None,
        Some(packages_need),
    ));
    steps
}

/// The maintenance page, kept for its compensation to put the site's vhost back.
fn maintenance_step(web: &str, args: &Value) -> PlannedStep {
    step(
        "http",
        web,
        "site-maintenance",
        args,
        Some("site-vhost-restore"),
        None,
    )
}

fn restore_steps(s: &SiteFacts, task_args: &Value) -> Result<Vec<PlannedStep>, String> {
    let web = s.platform.web_server.name.as_str();
    let from = task_args
        .get("restore_from")
        .and_then(|r| r.get("path"))
        .and_then(Value::as_str)
        .ok_or("the task carries no backup to restore")?;
    let next = task_args
        .get("next_db")
        .filter(|n| n.get("name").is_some() && n.get("user").is_some())
        .ok_or("the task carries no database to restore into")?;
    let disabled = s.status == status::DISABLED;
    let mut args = s.step_args(disabled);
    args["stash"] = json!(true);
    let mut next_args = args.clone();
    next_args["db"]["name"] = next["name"].clone();
    next_args["db"]["user"] = next["user"].clone();
    let new_dir = restore_dir(&s.platform.root, &s.uri);
    let (deploy, swap) = deploy_steps(
        web,
        &s.db_server.name,
        &next_args,
        ("path", &json!(from)),
        &new_dir,
        None,
    );
    let mut steps = vec![
        maintenance_step(web, &args),
        backup_step(s, web, task_args)?,
    ];
    steps.extend(deploy);
    steps.extend(finish_steps(web, s, &args, &next_args, &swap));
    Ok(steps)
}

/// A migrate to another platform and/or db server on the same web server, in the steps of a
/// restore: maintenance, a backup, the target database, the backup unpacked into the target
/// platform and imported, the swap, `updatedb` (the upgrade), the vhost pointing at the new
/// codebase and database, the package map; then the old database dropped and the old copy
/// removed, once everything else has succeeded. A failure before puts it all back.
pub fn plan_migrate(
    s: &SiteFacts,
    to_platform: &PlatformFacts,
    to_db: &ServerFacts,
    task_args: &Value,
) -> Result<Plan, String> {
    check_status(TaskType::Migrate, &s.uri, &s.status)?;
    if to_platform.web_server.name != s.platform.web_server.name {
        return Err(format!(
            "platform `{}` is on another web server ({}); moving between web servers is not built yet",
            to_platform.name, to_platform.web_server.name
        ));
    }
    let next = task_args
        .get("next_db")
        .filter(|n| n.get("name").is_some() && n.get("user").is_some())
        .ok_or("the task carries no database to migrate into")?;
    let file = task_args
        .get("backup")
        .and_then(|b| b.get("file"))
        .and_then(Value::as_str)
        .ok_or("the task carries no backup file name")?;
    let web = s.platform.web_server.name.as_str();
    let disabled = s.status == status::DISABLED;
    let mut args = s.step_args(disabled);
    args["stash"] = json!(true);
    let new_uri = task_args
        .get("to")
        .and_then(|t| t.get("uri"))
        .and_then(Value::as_str)
        .filter(|u| *u != s.uri);
    let target = SiteFacts {
        uri: new_uri.unwrap_or(&s.uri).to_string(),
        platform: to_platform.clone(),
        db_server: to_db.clone(),
        db_name: next["name"].as_str().unwrap_or_default().to_string(),
        db_user: next["user"].as_str().unwrap_or_default().to_string(),
        ..s.clone()
    };
    let mut next_args = target.step_args(disabled);
    next_args["stash"] = json!(true);
    let new_dir = restore_dir(&to_platform.root, &target.uri);
    let (deploy, swap) = deploy_steps(
        web,
        &to_db.name,
        &next_args,
        ("file", &json!(file)),
        &new_dir,
        new_uri.map(|_| s.uri.as_str()),
    );
    let mut cleanup = swap.clone();
    if to_platform.root != s.platform.root || new_uri.is_some() {
        cleanup["old_root"] = json!(s.platform.root);
    }
    if new_uri.is_some() {
        cleanup["old_uri"] = json!(s.uri);
    }
    let mut steps = vec![
        maintenance_step(web, &args),
        backup_step(s, web, task_args)?,
    ];
    steps.extend(deploy);
    if new_uri.is_some() && s.dns_managed() {
        // The old name's records go first (its aliases' CNAMEs are the site's), then the
        // new name's come; both are undone on a failure.
        steps.push(step(
            "dns",
            web,
            "site-records-remove",
            &args,
            Some("site-records"),
            None,
        ));
        steps.push(step(
            "dns",
            web,
            "site-records",
            &next_args,
            Some("site-records-remove"),
            None,
        ));
    }
    steps.extend(finish_steps(web, s, &args, &next_args, &cleanup));
    Ok(Plan { steps })
}

/// A clone: a backup of the site, deployed as the new site `n` (its own database and user,
/// on its platform and db server), verified. The site itself is only read. A failure takes
/// back everything made for the new site, which is then marked failed.
pub fn plan_clone(s: &SiteFacts, n: &SiteFacts, task_args: &Value) -> Result<Plan, String> {
    check_status(TaskType::Clone, &s.uri, &s.status)?;
    if n.platform.web_server.name != s.platform.web_server.name {
        return Err(format!(
            "platform `{}` is on another web server ({}); cloning between web servers is not built yet",
            n.platform.name, n.platform.web_server.name
        ));
    }
    let file = task_args
        .get("backup")
        .and_then(|b| b.get("file"))
        .and_then(Value::as_str)
        .ok_or("the task carries no backup file name")?;
    let web = s.platform.web_server.name.as_str();
    let mut args = n.step_args(false);
    args["stash"] = json!(true);
    let new_dir = restore_dir(&n.platform.root, &n.uri);
    let (deploy, swap) = deploy_steps(
        web,
        &n.db_server.name,
        &args,
        ("file", &json!(file)),
        &new_dir,
        Some(&s.uri),
    );
    let mut steps = vec![backup_step(s, web, task_args)?];
    steps.extend(deploy);
    steps.extend(records_then_packages(
        n.dns_managed(),
        web,
        &args,
        SecretNeed::SiteDbNext,
    ));
    // The site cloned from is verified too: it was only read, and should say so.
    steps.push(step(
        "http",
        web,
        "site-packages",
        &s.step_args(s.status == status::DISABLED),
        None,
        Some(SecretNeed::SiteDb),
    ));
    steps.push(step("http", web, "site-cleanup", &swap, None, None));
    Ok(Plan { steps })
}

/// A backup's file name: `<uri>-<UTC time>`, as Aegir names them, and a few random hex
/// digits (`unique`): two backups in one second must not share a file.
pub fn backup_file_name(uri: &str, at: chrono::DateTime<chrono::Utc>, unique: &str) -> String {
    format!("{uri}-{}-{unique}", at.format("%Y%m%dT%H%M%SZ"))
}

/// The steps of a task on a site; `Err` says why it cannot run now.
pub fn plan_site_task(task_type: TaskType, s: &SiteFacts) -> Result<Plan, String> {
    plan_site_task_with(task_type, s, &Value::Null)
}

/// As [`plan_site_task`], with the task's arguments (backups carry their file name).
pub fn plan_site_task_with(
    task_type: TaskType,
    s: &SiteFacts,
    task_args: &Value,
) -> Result<Plan, String> {
    let web = s.platform.web_server.name.as_str();
    let http_ok = s
        .platform
        .web_server
        .http
        .as_ref()
        .is_some_and(|h| managed(&h.service_type));
    if !http_ok {
        return Err(format!("web server `{web}` has no managed http service"));
    }
    let need_status = |_: &[&str]| check_status(task_type, &s.uri, &s.status);
    let disabled_now = s.status == status::DISABLED;
    let mut steps = Vec::new();
    match task_type {
        TaskType::Install => {
            need_status(&[status::INSTALLING, status::FAILED])?;
            let db = s
                .db_server
                .db
                .as_ref()
                .filter(|d| managed(&d.service_type))
                .ok_or_else(|| {
                    format!("db server `{}` has no managed db service", s.db_server.name)
                })?;
            let _ = db;
            let args = s.step_args(false);
            steps.push(step(
                "db",
                &s.db_server.name,
                "site-db-create",
                &args,
                Some("site-db-drop"),
                Some(SecretNeed::DbAdminAndSiteDb),
            ));
            steps.push(step(
                "http",
                web,
                "site-files",
                &args,
                Some("site-files-remove"),
                None,
            ));
            steps.push(step(
                "http",
                web,
                "site-install",
                &args,
                None,
                Some(SecretNeed::SiteDb),
            ));
            steps.push(step(
                "http",
                web,
                "site-vhost",
                &args,
                Some("site-vhost-remove"),
                Some(SecretNeed::SiteDb),
            ));
            steps.extend(records_then_packages(
                s.dns_managed(),
                web,
                &args,
                SecretNeed::SiteDb,
            ));
        }
        TaskType::Verify => {
            need_status(&[status::ENABLED, status::DISABLED])?;
            let args = s.step_args(disabled_now);
            if s.db_server
                .db
                .as_ref()
                .is_some_and(|d| managed(&d.service_type))
            {
                // The user's grants as they must be: its own database only.
                steps.push(step(
                    "db",
                    &s.db_server.name,
                    "site-db-grant",
                    &args,
                    None,
                    Some(SecretNeed::DbAdmin),
                ));
            }
            steps.push(step("http", web, "site-files", &args, None, None));
            steps.push(step(
                "http",
                web,
                "site-vhost",
                &args,
                None,
                Some(SecretNeed::SiteDb),
            ));
            if s.dns_managed() {
                steps.push(step("dns", web, "site-records", &args, None, None));
            }
            steps.push(step(
                "http",
                web,
                "site-packages",
                &args,
                None,
                Some(SecretNeed::SiteDb),
            ));
        }
        TaskType::Disable | TaskType::Enable => {
            let disable = task_type == TaskType::Disable;
            need_status(&[if disable {
                status::ENABLED
            } else {
                status::DISABLED
            }])?;
            steps.push(step(
                "http",
                web,
                "site-vhost",
                &s.step_args(disable),
                None,
                Some(SecretNeed::SiteDb),
            ));
        }
        TaskType::LoginReset => {
            need_status(&[status::ENABLED])?;
            steps.push(step(
                "http",
                web,
                "site-login",
                &s.step_args(false),
                None,
                Some(SecretNeed::SiteDb),
            ));
        }
        TaskType::Backup => {
            need_status(&[])?;
            steps.push(backup_step(s, web, task_args)?);
        }
        TaskType::Delete => {
            need_status(&[])?;
            // Backup first: if it fails, nothing is removed. Then the site stops being
            // served and its records go, before its files and database. Every removal
            // takes an absent thing as done, so a failed delete can be run again.
            // A re-run of a delete that failed after removing the files finds nothing to
            // back up: the first run's backup is the site's last one.
            let mut backup = backup_step(s, web, task_args)?;
            backup.args["files_may_be_gone"] = true.into();
            steps.push(backup);
            let args = s.step_args(disabled_now);
            steps.push(step("http", web, "site-vhost-remove", &args, None, None));
            if s.dns_managed() {
                steps.push(step("dns", web, "site-records-remove", &args, None, None));
            }
            steps.push(step("http", web, "site-files-remove", &args, None, None));
            steps.push(step(
                "db",
                &s.db_server.name,
                "site-db-drop",
                &args,
                None,
                Some(SecretNeed::DbAdmin),
            ));
        }
        TaskType::Restore => {
            need_status(&[])?;
            steps = restore_steps(s, task_args)?;
        }
        TaskType::Migrate | TaskType::Clone => {
            return Err(format!(
                "a {} is planned with its target",
                task_type.as_str()
            ));
        }
        TaskType::BackupDelete => {
            need_status(&[])?;
            let path = task_args
                .get("backup")
                .and_then(|b| b.get("path"))
                .and_then(Value::as_str)
                .ok_or("the task carries no backup to delete")?;
            let server = task_args
                .get("backup")
                .and_then(|b| b.get("server"))
                .and_then(Value::as_str)
                .unwrap_or(web);
            steps.push(step(
                "backup",
                server,
                "backup-delete",
                &json!({"path": path}),
                None,
                None,
            ));
        }
        TaskType::Noop => return Err("noop runs on servers only".into()),
    }
    Ok(Plan { steps })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::{DbFacts, DnsFacts, HttpFacts};

    fn server(dns: &str) -> ServerFacts {
        ServerFacts {
            name: "server_master".into(),
            http: Some(HttpFacts {
                service_type: "nginx".into(),
                port: 8080,
            }),
            db: Some(DbFacts {
                service_type: "mariadb".into(),
                host: "127.0.0.1".into(),
                port: 3306,
                admin_user: "root".into(),
            }),
            dns: Some(DnsFacts {
                service_type: dns.into(),
                port: 53,
            }),
        }
    }

    fn site(status: &str, dns: &str) -> SiteFacts {
        SiteFacts {
            uri: "www.example.com".into(),
            aliases: vec!["example.com".into()],
            redirection: false,
            profile: "standard".into(),
            language: "en".into(),
            client_email: None,
            status: status.into(),
            db_name: "wwwexamplecom_abc123".into(),
            db_user: "wwwexamplecom_abc123".into(),
            unix_uid: 200_000,
            platform: PlatformFacts {
                name: "platform_d10".into(),
                root: "/var/aegir/platforms/d10".into(),
                web_server: server(dns),
                web_host: "localhost".into(),
                installer: json!({"type": "drush"}),
                drupal_major: Some(10),
            },
            db_server: server(dns),
        }
    }

    fn actions(p: &Plan) -> Vec<&str> {
        p.steps.iter().map(|s| s.action.as_str()).collect()
    }

    #[test]
    fn install_creates_in_order_and_can_take_each_effect_back() {
        let p = plan_site_task(TaskType::Install, &site("installing", "bind")).unwrap();
        assert_eq!(
            actions(&p),
            [
                "site-db-create",
                "site-files",
                "site-install",
                "site-vhost",
                "site-records",
                "site-packages"
            ]
        );
        let comps: Vec<_> = p.steps.iter().map(|s| s.compensation.as_deref()).collect();
        assert_eq!(
            comps,
            [
                Some("site-db-drop"),
                Some("site-files-remove"),
                None,
                Some("site-vhost-remove"),
                Some("site-records-remove"),
                None
            ]
        );
        assert_eq!(p.steps[0].service, "db");
        assert_eq!(p.steps[0].secret, Some(SecretNeed::DbAdminAndSiteDb));
        assert_eq!(
            p.steps[0].args["db"]["grant_hosts"],
            json!(["localhost", "127.0.0.1"])
        );
        assert!(p.steps[5].args["login"].as_bool().unwrap());
        // No bind on the web server: no records step.
        let p = plan_site_task(TaskType::Install, &site("installing", "null")).unwrap();
        assert!(!actions(&p).contains(&"site-records"));
    }

    #[test]
    fn tasks_need_the_site_in_the_right_state() {
        assert!(plan_site_task(TaskType::Install, &site("enabled", "null")).is_err());
        assert!(plan_site_task(TaskType::Enable, &site("enabled", "null")).is_err());
        let p = plan_site_task(TaskType::Disable, &site("enabled", "null")).unwrap();
        assert_eq!(actions(&p), ["site-vhost"]);
        assert!(p.steps[0].args["disabled"].as_bool().unwrap());
        let p = plan_site_task(TaskType::Enable, &site("disabled", "null")).unwrap();
        assert!(!p.steps[0].args["disabled"].as_bool().unwrap());
        // Verify keeps a disabled site disabled.
        let p = plan_site_task(TaskType::Verify, &site("disabled", "bind")).unwrap();
        assert_eq!(
            actions(&p),
            [
                "site-db-grant",
                "site-files",
                "site-vhost",
                "site-records",
                "site-packages"
            ]
        );
        assert!(p.steps[2].args["disabled"].as_bool().unwrap());
        let err = plan_site_task(TaskType::LoginReset, &site("disabled", "null")).unwrap_err();
        assert!(err.contains("disabled"), "{err}");
    }

    #[test]
    fn delete_backs_up_first_and_removes_everything_after() {
        let args = json!({"backup": {"file": "www.example.com-20261122T120000Z",
                                     "compression": "zstd", "description": "before delete"}});
        let p = plan_site_task_with(TaskType::Delete, &site("disabled", "bind"), &args).unwrap();
        assert_eq!(
            actions(&p),
            [
                "site-backup",
                "site-vhost-remove",
                "site-records-remove",
                "site-files-remove",
                "site-db-drop"
            ]
        );
        assert_eq!(p.steps[0].service, "backup");
        assert_eq!(
            p.steps[0].args["backup"]["file"],
            "www.example.com-20261122T120000Z"
        );
        assert!(p.steps.iter().all(|s| s.compensation.is_none()));
        assert!(plan_site_task(TaskType::Delete, &site("disabled", "bind")).is_err());
        let b = plan_site_task_with(TaskType::Backup, &site("enabled", "null"), &args).unwrap();
        assert_eq!(actions(&b), ["site-backup"]);
        assert_eq!(
            backup_file_name(
                "a.test",
                chrono::DateTime::from_timestamp(1_795_000_000, 0).unwrap(),
                "1a2b"
            ),
            "a.test-20261118T110640Z-1a2b"
        );
    }

    #[test]
    fn a_restore_can_be_taken_back_until_the_old_database_goes() {
        let args = json!({
            "backup": {"file": "f", "compression": "zstd", "description": "before restore"},
            "restore_from": {"id": "x", "path": "/var/lib/berth/backups/old.tar.zst"},
            "next_db": {"name": "wwwexamplecom_ffffff", "user": "wwwexamplecom_ffffff"},
        });
        let p = plan_site_task_with(TaskType::Restore, &site("enabled", "null"), &args).unwrap();
        assert_eq!(
            actions(&p),
            [
                "site-maintenance",
                "site-backup",
                "site-db-create",
                "backup-extract",
                "site-swap",
                "site-updatedb",
                "site-vhost",
                "site-packages",
                "site-db-drop",
                "site-cleanup"
            ]
        );
        // The new database for the create, the old one for the drop.
        assert_eq!(p.steps[2].args["db"]["name"], "wwwexamplecom_ffffff");
        assert_eq!(p.steps[8].args["db"]["name"], "wwwexamplecom_abc123");
        assert_eq!(
            p.steps[3].args["target_dir"],
            "/var/aegir/platforms/d10/sites/www.example.com.berth-new"
        );
        // Everything that changes something before the drop can be taken back.
        for s in &p.steps[..8] {
            if !matches!(
                s.action.as_str(),
                "site-backup" | "site-updatedb" | "site-packages"
            ) {
                assert!(s.compensation.is_some(), "{}", s.action);
            }
        }
        assert!(p.steps[8..].iter().all(|s| s.compensation.is_none()));
        assert!(plan_site_task(TaskType::Restore, &site("enabled", "null")).is_err());
    }

    #[test]
    fn a_migrate_deploys_into_the_target_and_removes_the_old_copy_last() {
        let s = site("enabled", "null");
        let mut to = s.platform.clone();
        to.name = "platform_d10b".into();
        to.root = "/var/aegir/platforms/d10b".into();
        let args = json!({
            "backup": {"file": "f1", "compression": "zstd", "description": "before migrate"},
            "next_db": {"name": "wwwexamplecom_eeeeee", "user": "wwwexamplecom_eeeeee"},
        });
        let p = plan_migrate(&s, &to, &s.db_server, &args).unwrap();
        assert_eq!(p.steps[3].action, "backup-extract");
        assert_eq!(p.steps[3].args["file"], "f1");
        assert_eq!(
            p.steps[3].args["target_dir"],
            "/var/aegir/platforms/d10b/sites/www.example.com.berth-new"
        );
        assert_eq!(p.steps[6].args["root"], "/var/aegir/platforms/d10b");
        assert_eq!(p.steps[8].args["db"]["name"], "wwwexamplecom_abc123");
        assert_eq!(p.steps[9].args["old_root"], "/var/aegir/platforms/d10");
        let mut elsewhere = to.clone();
        elsewhere.web_server.name = "server_web2".into();
        assert!(plan_migrate(&s, &elsewhere, &s.db_server, &args).is_err());
    }

    #[test]
    fn login_links_are_spent_by_a_later_login() {
        let link = "http://a.test/user/reset/1/1763800000/abcDEF_-1/login";
        assert_eq!(login::timestamp(link), Some(1_763_800_000));
        assert_eq!(login::timestamp("http://a.test/"), None);
        assert!(login::spent(1_763_800_000, 1_763_800_005));
        assert!(!login::spent(1_763_800_000, 0));
        assert!(login::last_login_sql(Some(7)).contains("FROM users "));
        assert!(login::last_login_sql(Some(10)).contains("users_field_data"));
    }

    #[test]
    fn database_names_fit_mysql_and_hosts_follow_the_web_server() {
        let (db, user) = db_names(&format!("{}.example.com", "a".repeat(60)), "abc123");
        assert!(user.len() <= 32, "{user}");
        assert_eq!(db, user);
        assert!(db.ends_with("_abc123"));
        assert_eq!(
            grant_hosts("web1.example.com", "db.example.com"),
            ["web1.example.com"]
        );
        assert_eq!(
            grant_hosts("localhost", "127.0.0.1"),
            ["localhost", "127.0.0.1"]
        );
        // The db server on loopback: PHP connects from loopback whatever the web
        // server's name (ops/run.sh registers `hostname -f`, MariaDB sees 127.0.0.1).
        for db_host in ["127.0.0.1", "localhost", "::1", "127.0.1.1", "[::1]"] {
            assert_eq!(
                grant_hosts("vm", db_host),
                ["localhost", "127.0.0.1"],
                "{db_host}"
            );
            assert_eq!(
                grant_hosts("web1.example.com", db_host),
                ["localhost", "127.0.0.1"],
                "{db_host}"
            );
        }
        assert_eq!(grant_hosts("vm", "10.0.0.5"), ["vm"]);
    }
}
