//! Task types, their arguments, and the plan of steps each one runs.
//!
//! A plan is data: an ordered list of steps, each sent to one worker (`<service>.<server>`),
//! each with the action that takes it back if a later step fails. Building a plan is pure:
//! the state service hands in what it knows of the target and gets the steps back.

use berth_contracts::ErrorKind;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The services a worker can provide; also the first half of a work routing key.
pub const SERVICES: [&str; 4] = ["http", "db", "dns", "backup"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskType {
    /// Check a server's services work (Aegir's `provision-verify` on a server).
    Verify,
    /// Diagnostic: a step that does nothing (or fails or sleeps, with diagnostics on).
    Noop,
    /// Install a site (Aegir's `provision-install`).
    Install,
    /// Send a site's requests to the "site disabled" page.
    Disable,
    /// Serve a disabled site again.
    Enable,
    /// A new one-time login link for the site's admin (Aegir's "Reset password").
    LoginReset,
    /// A tarball of the site's directory and database.
    Backup,
    /// Remove a site: backup first, then its vhost, records, files, database and user.
    Delete,
    /// Put a site back as a chosen backup has it; any failure leaves it as it was.
    Restore,
    /// Move a site to another platform and/or db server (an upgrade, with `updatedb`);
    /// any failure leaves it serving where it was.
    Migrate,
    /// Copy a site to a new uri, with its own database and user.
    Clone,
    /// Remove one of a site's backups.
    BackupDelete,
}

impl TaskType {
    pub const ALL: [TaskType; 12] = [
        Self::Verify,
        Self::Noop,
        Self::Install,
        Self::Disable,
        Self::Enable,
        Self::LoginReset,
        Self::Backup,
        Self::Delete,
        Self::Restore,
        Self::Migrate,
        Self::Clone,
        Self::BackupDelete,
    ];

    pub fn parse(s: &str) -> Result<Self, TaskError> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| TaskError::UnknownType(s.to_string()))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Verify => "verify",
            Self::Noop => "noop",
            Self::Install => "install",
            Self::Disable => "disable",
            Self::Enable => "enable",
            Self::LoginReset => "login-reset",
            Self::Backup => "backup",
            Self::Delete => "delete",
            Self::Restore => "restore",
            Self::Migrate => "migrate",
            Self::Clone => "clone",
            Self::BackupDelete => "backup-delete",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskError {
    #[error(
        "unknown task type `{0}`; known types: verify, noop, install, disable, enable, login-reset, backup, delete, restore, migrate, clone, backup-delete"
    )]
    UnknownType(String),
    #[error("task type `{task_type}` does not run on a {target_kind}")]
    WrongTarget {
        task_type: &'static str,
        target_kind: &'static str,
    },
    #[error("invalid arguments for `{task_type}`: {detail}")]
    BadArgs {
        task_type: &'static str,
        detail: String,
    },
    #[error(
        "`fail` and `sleep_ms` are diagnostics: enable them with BERTH_DIAGNOSTICS=true (off by default)"
    )]
    DiagnosticsDisabled,
}

/// How a noop step should misbehave (only with diagnostics on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailSpec {
    /// The first `times` attempts fail.
    pub times: u32,
    pub kind: ErrorKind,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoopArgs {
    /// Which worker runs the step: http (default), db, dns or backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail: Option<FailSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sleep_ms: Option<u64>,
    /// Number of steps (default 1), each taken back by a noop compensation when a later
    /// one fails: exercises the dispatcher's compensation path for real.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<u32>,
    /// Which step `fail` applies to (default: the last).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_step: Option<u32>,
}

/// Where a migrate moves a site (what is not given stays).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrateArgs {
    /// A new uri: the site is renamed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_server: Option<String>,
}

/// A clone's new site: its uri, where it goes (default: where the site is), new aliases.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloneArgs {
    pub uri: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_server: Option<String>,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub redirection: bool,
}

/// A backup's options.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupArgs {
    /// Shown with the backup (default "Generated on request").
    #[serde(default)]
    pub description: Option<String>,
    /// `zstd` (default) or `gzip` (for tools that know no zstd).
    #[serde(default)]
    pub compression: Option<String>,
}

/// The longest a diagnostic noop may sleep.
pub const MAX_SLEEP_MS: u64 = 3_600_000;
/// The most steps a diagnostic noop may have.
pub const MAX_NOOP_STEPS: u32 = 20;

/// Checks a task request's type, target kind and arguments; returns the normalised
/// arguments to store with the task.
pub fn validate(
    task_type: TaskType,
    target_kind: berth_contracts::TargetKind,
    args: &Value,
    diagnostics: bool,
) -> Result<Value, TaskError> {
    use berth_contracts::TargetKind as K;
    let runs_on = match task_type {
        TaskType::Verify => matches!(target_kind, K::Server | K::Platform | K::Site),
        TaskType::Noop => target_kind == K::Server,
        TaskType::Install
        | TaskType::Disable
        | TaskType::Enable
        | TaskType::LoginReset
        | TaskType::Backup
        | TaskType::Delete
        | TaskType::Restore
        | TaskType::Migrate
        | TaskType::Clone
        | TaskType::BackupDelete => target_kind == K::Site,
    };
    if !runs_on {
        return Err(TaskError::WrongTarget {
            task_type: task_type.as_str(),
            target_kind: target_kind.as_str(),
        });
    }
    let bad = |detail: String| TaskError::BadArgs {
        task_type: task_type.as_str(),
        detail,
    };
    match task_type {
        TaskType::Verify
        | TaskType::Install
        | TaskType::Disable
        | TaskType::Enable
        | TaskType::LoginReset
        | TaskType::Delete => match args.as_object() {
            Some(o) if o.is_empty() => Ok(json!({})),
            _ => Err(bad(format!("{} takes no arguments", task_type.as_str()))),
        },
        TaskType::Clone => {
            let mut a: CloneArgs =
                serde_json::from_value(args.clone()).map_err(|e| bad(e.to_string()))?;
            // Stored normalised (lower case, no trailing dot, punycode), as a new site's.
            a.uri = crate::SiteName::parse(&a.uri)
                .map_err(|e| bad(format!("uri: {e}")))?
                .to_string();
            for alias in &mut a.aliases {
                *alias = crate::SiteName::parse(alias)
                    .map_err(|e| bad(format!("alias: {e}")))?
                    .to_string();
            }
            Ok(serde_json::to_value(a).expect("serialisable"))
        }
        TaskType::Restore | TaskType::BackupDelete => {
            let id = args
                .as_object()
                .filter(|o| o.len() == 1)
                .and_then(|o| o.get("backup"))
                .and_then(Value::as_str)
                .and_then(|b| uuid::Uuid::parse_str(b).ok())
                .ok_or_else(|| {
                    bad(format!(
                        "{} takes {{\"backup\": \"<backup id>\"}} (see GET /api/v1/sites/{{uri}}/backups)",
                        task_type.as_str()
                    ))
                })?;
            Ok(json!({"backup": id.to_string()}))
        }
        TaskType::Migrate => {
            let mut a: MigrateArgs =
                serde_json::from_value(args.clone()).map_err(|e| bad(e.to_string()))?;
            if a.platform.is_none() && a.db_server.is_none() && a.uri.is_none() {
                return Err(bad(
                    "migrate needs a target: {\"platform\": \"platform_…\"}, {\"db_server\": \"server_…\"} and/or a new {\"uri\": …}".into(),
                ));
            }
            if let Some(u) = &mut a.uri {
                *u = crate::SiteName::parse(u)
                    .map_err(|e| bad(format!("uri: {e}")))?
                    .to_string();
            }
            Ok(serde_json::to_value(a).expect("serialisable"))
        }
        TaskType::Backup => {
            let a: BackupArgs =
                serde_json::from_value(args.clone()).map_err(|e| bad(e.to_string()))?;
            let description = a
                .description
                .unwrap_or_else(|| "Generated on request".into());
            if description.is_empty()
                || description.len() > 255
                || description.chars().any(char::is_control)
            {
                return Err(bad(
                    "description must be 1 to 255 printable characters".into()
                ));
            }
            let compression = a.compression.unwrap_or_else(|| "zstd".into());
            if !["zstd", "gzip"].contains(&compression.as_str()) {
                return Err(bad(format!(
                    "compression `{compression}` is not zstd or gzip"
                )));
            }
            Ok(json!({"description": description, "compression": compression}))
        }
        TaskType::Noop => {
            let a: NoopArgs =
                serde_json::from_value(args.clone()).map_err(|e| bad(e.to_string()))?;
            if let Some(s) = &a.service
                && !SERVICES.contains(&s.as_str())
            {
                return Err(bad(format!(
                    "service `{s}` is not one of http, db, dns, backup"
                )));
            }
            if (a.fail.is_some() || a.sleep_ms.is_some()) && !diagnostics {
                return Err(TaskError::DiagnosticsDisabled);
            }
            if a.sleep_ms.is_some_and(|ms| ms > MAX_SLEEP_MS) {
                return Err(bad(format!("sleep_ms is at most {MAX_SLEEP_MS}")));
            }
            let steps = a.steps.unwrap_or(1);
            if !(1..=MAX_NOOP_STEPS).contains(&steps) {
                return Err(bad(format!("steps must be 1 to {MAX_NOOP_STEPS}")));
            }
            if a.fail_step.is_some_and(|f| f == 0 || f > steps) {
                return Err(bad(format!("fail_step must be 1 to steps ({steps})")));
            }
            Ok(serde_json::to_value(a).expect("noop args serialise"))
        }
    }
}

/// What the planner knows of a server: its name and the types of its services.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerFacts {
    pub name: String,
    pub http: Option<HttpFacts>,
    pub db: Option<DbFacts>,
    pub dns: Option<DnsFacts>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpFacts {
    pub service_type: String,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbFacts {
    pub service_type: String,
    pub host: String,
    pub port: u16,
    pub admin_user: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsFacts {
    pub service_type: String,
    pub port: u16,
}

/// A secret the state service must attach (sealed) to a step command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretNeed {
    /// The db server's admin password.
    DbAdmin,
    /// The site's own database password (with the admin password where both are needed).
    SiteDb,
    /// Both: creating the site's user takes the admin's and the site's passwords.
    DbAdminAndSiteDb,
    /// The password of the database a restore or migrate moves the site to (given to the
    /// worker as the site's password: it acts on that database).
    SiteDbNext,
    /// The admin's and the next database's passwords.
    DbAdminAndSiteDbNext,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlannedStep {
    pub service: &'static str,
    pub server: String,
    pub action: String,
    pub args: Value,
    /// Action that takes this step's effect back when a later step fails.
    pub compensation: Option<String>,
    pub secret: Option<SecretNeed>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub steps: Vec<PlannedStep>,
}

fn managed(service_type: &str) -> bool {
    service_type != "null"
}

/// The steps of a task on a server.
pub fn plan_server_task(task_type: TaskType, args: &Value, server: &ServerFacts) -> Plan {
    match task_type {
        TaskType::Install
        | TaskType::Disable
        | TaskType::Enable
        | TaskType::LoginReset
        | TaskType::Backup
        | TaskType::Delete
        | TaskType::Restore
        | TaskType::Migrate
        | TaskType::Clone
        | TaskType::BackupDelete => Plan { steps: Vec::new() },
        TaskType::Verify => {
            let mut steps = Vec::new();
            // Database first: it is the service whose failure says most about credentials.
            if let Some(db) = server.db.as_ref().filter(|d| managed(&d.service_type)) {
                steps.push(PlannedStep {
                    service: "db",
                    server: server.name.clone(),
                    action: "verify".into(),
                    args: json!({
                        "type": db.service_type, "host": db.host, "port": db.port,
                        "admin_user": db.admin_user,
                    }),
                    compensation: None,
                    secret: Some(SecretNeed::DbAdmin),
                });
            }
            if let Some(http) = server.http.as_ref().filter(|h| managed(&h.service_type)) {
                steps.push(PlannedStep {
                    service: "http",
                    server: server.name.clone(),
                    action: "verify".into(),
                    args: json!({"type": http.service_type, "port": http.port}),
                    compensation: None,
                    secret: None,
                });
            }
            if let Some(dns) = server.dns.as_ref().filter(|d| managed(&d.service_type)) {
                steps.push(PlannedStep {
                    service: "dns",
                    server: server.name.clone(),
                    action: "verify".into(),
                    args: json!({"type": dns.service_type, "port": dns.port}),
                    compensation: None,
                    secret: None,
                });
            }
            Plan { steps }
        }
        TaskType::Noop => {
            let service = match args.get("service").and_then(Value::as_str) {
                Some("db") => "db",
                Some("dns") => "dns",
                Some("backup") => "backup",
                _ => "http",
            };
            let a: NoopArgs = serde_json::from_value(args.clone()).unwrap_or_default();
            let n = a.steps.unwrap_or(1).max(1);
            let fail_step = a.fail_step.unwrap_or(n);
            let steps = (1..=n)
                .map(|i| {
                    // Each step carries only what it does: the failure goes to one step, so
                    // that the compensations of the others succeed.
                    let mut step_args = json!({"service": service});
                    if let Some(ms) = a.sleep_ms {
                        step_args["sleep_ms"] = json!(ms);
                    }
                    if i == fail_step
                        && let Some(f) = a.fail
                    {
                        step_args["fail"] = serde_json::to_value(f).expect("serialisable");
                    }
                    PlannedStep {
                        service,
                        server: server.name.clone(),
                        action: "noop".into(),
                        args: step_args,
                        compensation: Some("noop".into()),
                        secret: None,
                    }
                })
                .collect();
            Plan { steps }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_contracts::TargetKind;

    fn master(http: &str, db: &str, dns: &str) -> ServerFacts {
        ServerFacts {
            name: "server_master".into(),
            http: Some(HttpFacts {
                service_type: http.into(),
                port: 80,
            }),
            db: Some(DbFacts {
                service_type: db.into(),
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

    #[test]
    fn verify_runs_one_step_per_managed_service_db_first() {
        let plan = plan_server_task(
            TaskType::Verify,
            &json!({}),
            &master("nginx", "mariadb", "bind"),
        );
        let services: Vec<_> = plan.steps.iter().map(|s| s.service).collect();
        assert_eq!(services, ["db", "http", "dns"]);
        assert!(plan.steps.iter().all(|s| s.action == "verify"));
        assert_eq!(plan.steps[0].secret, Some(SecretNeed::DbAdmin));
        assert_eq!(plan.steps[0].args["admin_user"], "root");
    }

    #[test]
    fn null_services_are_not_verified() {
        let plan = plan_server_task(
            TaskType::Verify,
            &json!({}),
            &master("nginx", "null", "null"),
        );
        assert_eq!(plan.steps.len(), 1);
        assert_eq!(plan.steps[0].service, "http");
        let none = plan_server_task(TaskType::Verify, &json!({}), &ServerFacts::default());
        assert!(none.steps.is_empty());
    }

    #[test]
    fn noop_goes_to_the_service_asked_for() {
        let s = master("nginx", "mariadb", "bind");
        assert_eq!(
            plan_server_task(TaskType::Noop, &json!({}), &s).steps[0].service,
            "http"
        );
        let p = plan_server_task(TaskType::Noop, &json!({"service": "db"}), &s);
        assert_eq!(p.steps[0].service, "db");
        assert_eq!(p.steps[0].action, "noop");
    }

    #[test]
    fn a_multi_step_noop_fails_only_at_its_fail_step_and_every_step_can_be_taken_back() {
        let s = master("nginx", "mariadb", "bind");
        let args = json!({"steps": 3, "fail_step": 2, "fail": {"times": 1, "kind": "permanent"}});
        let p = plan_server_task(TaskType::Noop, &args, &s);
        assert_eq!(p.steps.len(), 3);
        let failing: Vec<bool> = p
            .steps
            .iter()
            .map(|s| s.args.get("fail").is_some())
            .collect();
        assert_eq!(failing, [false, true, false]);
        assert!(
            p.steps
                .iter()
                .all(|s| s.compensation.as_deref() == Some("noop"))
        );
        assert!(
            validate(
                TaskType::Noop,
                TargetKind::Server,
                &json!({"steps": 0}),
                true
            )
            .is_err()
        );
        assert!(
            validate(
                TaskType::Noop,
                TargetKind::Server,
                &json!({"steps": 2, "fail_step": 3}),
                true
            )
            .is_err()
        );
    }

    #[test]
    fn task_types_parse_and_unknown_ones_are_named() {
        assert_eq!(TaskType::parse("verify").unwrap(), TaskType::Verify);
        let err = TaskType::parse("explode").unwrap_err();
        assert!(err.to_string().contains("explode"));
    }

    #[test]
    fn diagnostics_are_refused_unless_enabled() {
        let args = json!({"fail": {"times": 2, "kind": "transient"}});
        assert_eq!(
            validate(TaskType::Noop, TargetKind::Server, &args, false),
            Err(TaskError::DiagnosticsDisabled)
        );
        let ok = validate(TaskType::Noop, TargetKind::Server, &args, true).unwrap();
        assert_eq!(ok["fail"]["times"], 2);
        assert!(validate(TaskType::Noop, TargetKind::Server, &json!({}), false).is_ok());
    }

    #[test]
    fn bad_arguments_are_refused_with_a_reason() {
        for args in [
            json!({"service": "ftp"}),
            json!({"sleep_ms": MAX_SLEEP_MS + 1}),
            json!({"fail": {"times": 1, "kind": "sometimes"}}),
            json!({"bogus": true}),
            json!([1, 2]),
        ] {
            assert!(
                matches!(
                    validate(TaskType::Noop, TargetKind::Server, &args, true),
                    Err(TaskError::BadArgs { .. })
                ),
                "{args}"
            );
        }
        assert!(validate(TaskType::Verify, TargetKind::Server, &json!({"x": 1}), true).is_err());
        assert!(matches!(
            validate(TaskType::Noop, TargetKind::Site, &json!({}), true),
            Err(TaskError::WrongTarget { .. })
        ));
        assert!(matches!(
            validate(TaskType::Install, TargetKind::Server, &json!({}), true),
            Err(TaskError::WrongTarget { .. })
        ));
        assert!(validate(TaskType::Verify, TargetKind::Site, &json!({}), true).is_ok());
    }
}
