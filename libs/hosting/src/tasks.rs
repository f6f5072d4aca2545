//! Task requests: which task types run on which targets, and the arguments a client may
//! give each, checked before anything is queued.

pub use berth_contracts::TaskType;
pub use berth_contracts::steps::FailSpec;
pub use berth_contracts::task::NoopArgs;
pub use berth_contracts::task::UnknownTaskType;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskError {
    #[error(
        "unknown task type `{0}`; known types: verify, noop, install, disable, enable, login-reset, backup, delete, restore, migrate, clone, backup-delete, cron"
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

impl From<UnknownTaskType> for TaskError {
    fn from(e: UnknownTaskType) -> Self {
        Self::UnknownType(e.0)
    }
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
    /// Backup targets the backup is copied to once made.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
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
        | TaskType::BackupDelete
        | TaskType::Prune
        | TaskType::Cron
        | TaskType::Drill
        | TaskType::Suspend
        | TaskType::Unsuspend
        | TaskType::Usage => target_kind == K::Site,
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
        | TaskType::Cron
        | TaskType::Suspend
        | TaskType::Unsuspend
        | TaskType::Usage
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
        TaskType::Drill => {
            let a: berth_contracts::task::DrillTask = serde_json::from_value(args.clone())
                .map_err(|e| {
                    bad(format!(
                        "{e}; drill takes {{}} (the newest backup) or {{\"backup\": \"<backup id>\"}}"
                    ))
                })?;
            Ok(serde_json::to_value(a).expect("serialisable"))
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
        TaskType::Prune => {
            let spec: berth_contracts::schedule::RetentionSpec =
                serde_json::from_value(args.clone()).map_err(|e| {
                    bad(format!(
                        "{e}; prune takes a retention policy, e.g. {{\"regular\": {{\"keep_last\": 7, \"keep_daily\": 14}}}}"
                    ))
                })?;
            crate::retention::policy(&spec).map_err(|e| bad(e.0))?;
            Ok(serde_json::to_value(spec).expect("serialisable"))
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
            for (i, t) in a.targets.iter().enumerate() {
                crate::offsite::check_target_name(t).map_err(|e| bad(e.to_string()))?;
                if a.targets[..i].contains(t) {
                    return Err(bad(format!("target `{t}` is named twice")));
                }
            }
            if a.targets.len() > 8 {
                return Err(bad("at most 8 targets".into()));
            }
            let mut v = json!({"description": description, "compression": compression});
            if !a.targets.is_empty() {
                v["targets"] = json!(a.targets);
            }
            Ok(v)
        }
        TaskType::Noop => {
            let a: NoopArgs =
                serde_json::from_value(args.clone()).map_err(|e| bad(e.to_string()))?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use berth_contracts::TargetKind;

    #[test]
    fn a_noop_takes_1_to_20_steps_and_fails_at_one_of_them() {
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
        assert!(
            validate(
                TaskType::Noop,
                TargetKind::Server,
                &json!({"steps": 3, "fail_step": 2, "service": "dns"}),
                true
            )
            .is_ok()
        );
    }

    #[test]
    fn task_types_parse_and_unknown_ones_are_named() {
        assert_eq!(TaskType::parse("verify").unwrap(), TaskType::Verify);
        let err = TaskError::from(TaskType::parse("explode").unwrap_err());
        assert!(err.to_string().contains("explode"), "{err}");
        assert!(err.to_string().contains("backup-delete"), "{err}");
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
        assert!(validate(TaskType::Cron, TargetKind::Site, &json!({}), false).is_ok());
        assert!(
            validate(
                TaskType::Cron,
                TargetKind::Site,
                &json!({"key": "x"}),
                false
            )
            .is_err()
        );
        assert!(matches!(
            validate(TaskType::Cron, TargetKind::Platform, &json!({}), false),
            Err(TaskError::WrongTarget { .. })
        ));
    }
}
