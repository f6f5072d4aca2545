//! The intake's pure decisions: what a checked request asks for, whether a site's status
//! allows the task, and the typed arguments stored with the task (its backup file named,
//! its new database named), from what the intake looked up.

use crate::error::ApiError;
use berth_contracts::Backup;
use berth_contracts::steps::Compression;
use berth_contracts::task::{
    BackupDeleteTask, BackupRef, BackupTask, CloneTask, CloneTo, MigrateTask, MigrateTo, NoopArgs,
    RestoreFrom, RestoreTask, TaskArgs,
};
pub use berth_hosting::fresh::Fresh;
use berth_hosting::sites::{check_status, status as site_status};
use berth_hosting::tasks::{BackupArgs, CloneArgs, MigrateArgs, TaskType};
use serde_json::Value;
use uuid::Uuid;

/// What a client asked for, by task type, once `berth_hosting::tasks::validate` has
/// checked (and normalised) the request's arguments.
#[derive(Debug, Clone)]
pub enum Requested {
    /// verify, install, disable, enable, login-reset, cron: no arguments.
    None,
    Noop(NoopArgs),
    Backup {
        description: String,
        compression: Compression,
        targets: Vec<String>,
    },
    Delete,
    Disable,
    Restore {
        backup: Uuid,
    },
    BackupDelete {
        backup: Uuid,
    },
    /// A restore drill of the given backup, or of the newest.
    Drill {
        backup: Option<Uuid>,
    },
    Migrate(MigrateArgs),
    Clone(CloneArgs),
    Prune(berth_contracts::schedule::RetentionSpec),
}

impl Requested {
    /// Reads the validated arguments of a `task_type` request.
    pub fn read(task_type: TaskType, validated: &Value) -> Result<Self, ApiError> {
        let bad = |e: String| ApiError::Unprocessable(e);
        let backup_id = || {
            validated["backup"]
                .as_str()
                .and_then(|b| b.parse().ok())
                .ok_or_else(|| bad(format!("{} needs a backup id", task_type.as_str())))
        };
        Ok(match task_type {
            TaskType::Verify
            | TaskType::Install
            | TaskType::Enable
            | TaskType::LoginReset
            | TaskType::Cron
            | TaskType::Suspend
            | TaskType::Unsuspend
            | TaskType::Usage => Self::None,
            TaskType::Delete => Self::Delete,
            TaskType::Disable => Self::Disable,
            TaskType::Prune => Self::Prune(
                serde_json::from_value(validated.clone()).map_err(|e| bad(e.to_string()))?,
            ),
            TaskType::Noop => match TaskArgs::from_stored(task_type, validated) {
                Ok(TaskArgs::Noop(a)) => Self::Noop(a),
                Ok(_) => Self::Noop(NoopArgs::default()),
                Err(e) => return Err(bad(e.to_string())),
            },
            TaskType::Backup => {
                let a: BackupArgs =
                    serde_json::from_value(validated.clone()).map_err(|e| bad(e.to_string()))?;
                let compression = a.compression.as_deref().unwrap_or("zstd");
                Self::Backup {
                    description: a
                        .description
                        .unwrap_or_else(|| "Generated on request".into()),
                    compression: Compression::parse(compression).ok_or_else(|| {
                        bad(format!("compression `{compression}` is not zstd or gzip"))
                    })?,
                    targets: a.targets,
                }
            }
            TaskType::Restore => Self::Restore {
                backup: backup_id()?,
            },
            TaskType::BackupDelete => Self::BackupDelete {
                backup: backup_id()?,
            },
            TaskType::Drill => Self::Drill {
                backup: match validated.get("backup") {
                    None => None,
                    Some(_) => Some(backup_id()?),
                },
            },
            TaskType::Migrate => Self::Migrate(
                serde_json::from_value(validated.clone()).map_err(|e| bad(e.to_string()))?,
            ),
            TaskType::Clone => Self::Clone(
                serde_json::from_value(validated.clone()).map_err(|e| bad(e.to_string()))?,
            ),
        })
    }
}

/// Refuses a task on site `uri` that its status (`current`) does not allow; a delete also
/// needs the site disabled unless `delete_enabled_sites`.
pub fn check_site(
    task_type: TaskType,
    uri: &str,
    current: &str,
    delete_enabled_sites: bool,
) -> Result<(), ApiError> {
    check_status(task_type, uri, current).map_err(ApiError::Conflict)?;
    if task_type == TaskType::Delete && current != site_status::DISABLED && !delete_enabled_sites {
        return Err(ApiError::Conflict(format!(
            "site `{uri}` is {current}: disable it first (a site must be disabled before it is deleted; \
             BERTH_DELETE_ENABLED_SITES=true lifts this)"
        )));
    }
    Ok(())
}

/// A verify may queue behind another (it is re-runnable); two installs, disables… may not.
pub fn refuse_second(
    task_type: TaskType,
    uri: &str,
    unfinished: Option<Uuid>,
) -> Result<(), ApiError> {
    match unfinished {
        Some(id) if task_type != TaskType::Verify => Err(ApiError::Conflict(format!(
            "site `{uri}` has a {} task queued or running already: {id}",
            task_type.as_str()
        ))),
        _ => Ok(()),
    }
}

/// A backup's arguments: the file it writes, the targets it is copied to.
pub fn backup(
    uri: &str,
    compression: Compression,
    description: &str,
    targets: Vec<String>,
    fresh: &Fresh,
) -> TaskArgs {
    TaskArgs::Backup(BackupTask {
        backup: fresh.backup(uri, compression, description),
        targets,
    })
}

/// A disable's arguments: the backup taken first (Aegir's "Generated before being
/// disabled"), weighed by retention as any ordinary backup.
pub fn disable(uri: &str, fresh: &Fresh) -> TaskArgs {
    TaskArgs::Disable(BackupTask {
        backup: fresh.backup(uri, Compression::Zstd, "Generated before being disabled"),
        targets: Vec::new(),
    })
}

/// A delete's arguments: the backup taken first.
pub fn delete(uri: &str, fresh: &Fresh) -> TaskArgs {
    fresh.delete(uri)
}

/// A restore's arguments: the backup put back (the site's, still there), the backup taken
/// first, and the new database the site moves to.
pub fn restore(uri: &str, from: &Backup, fresh: &Fresh) -> TaskArgs {
    TaskArgs::Restore(RestoreTask {
        restore_from: RestoreFrom {
            id: from.id,
            path: from.path.clone(),
            file: from.file.clone(),
        },
        backup: fresh.backup(
            uri,
            Compression::Zstd,
            "Generated before being restored to a previous version",
        ),
        next_db: fresh.db(uri),
    })
}

/// A migrate's arguments: where the site goes (checked), the backup taken first, and the
/// new database.
pub fn migrate(uri: &str, to: MigrateTo, fresh: &Fresh) -> TaskArgs {
    TaskArgs::Migrate(MigrateTask {
        to,
        backup: fresh.backup(uri, Compression::Zstd, "Generated before being migrated"),
        next_db: fresh.db(uri),
    })
}

/// A clone's arguments: the new site, where it goes, and the backup it is made from.
pub fn clone(uri: &str, new_site: &str, to: CloneTo, fresh: &Fresh) -> TaskArgs {
    TaskArgs::Clone(CloneTask {
        new_site: new_site.to_string(),
        to,
        backup: fresh.backup(
            uri,
            Compression::Zstd,
            &format!("Generated for cloning to {new_site}"),
        ),
    })
}

/// A clone needs a uri of its own, and aliases other than it.
pub fn check_clone_names(uri: &str, a: &CloneArgs) -> Result<(), ApiError> {
    if a.uri == uri || a.aliases.contains(&a.uri) {
        return Err(ApiError::Unprocessable(
            "a clone needs a uri of its own, and aliases other than it".into(),
        ));
    }
    Ok(())
}

/// A backup-delete's arguments: the backup and the server holding its file.
pub fn backup_delete(b: &Backup) -> TaskArgs {
    TaskArgs::BackupDelete(BackupDeleteTask {
        backup: BackupRef {
            id: b.id,
            path: b.path.clone(),
            server: b.server.clone(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};
    use serde_json::json;

    fn fresh() -> Fresh {
        Fresh {
            now: DateTime::from_timestamp(1_795_000_000, 0).unwrap(),
            file_unique: "1a2b".into(),
            db_unique: "abc123".into(),
        }
    }

    fn a_backup() -> Backup {
        Backup {
            id: Uuid::nil(),
            site: "a.test".into(),
            server: "server_master".into(),
            file: "a.test-20261118T110640Z-ffff".into(),
            path: "/var/berth/backups/a.test-20261118T110640Z-ffff.tar.zst".into(),
            size: 1,
            sha256: String::new(),
            compression: "zstd".into(),
            description: "x".into(),
            task_id: Uuid::nil(),
            created_at: Utc::now(),
            copies: Vec::new(),
            on_disk: true,
            verified_at: None,
            verified_by_task: None,
        }
    }

    #[test]
    fn a_backup_request_names_its_file_and_keeps_its_options() {
        let validated = json!({"description": "before the upgrade", "compression": "gzip"});
        let Requested::Backup {
            description,
            compression,
            targets,
        } = Requested::read(TaskType::Backup, &validated).unwrap()
        else {
            panic!("not a backup")
        };
        assert!(targets.is_empty());
        let args = backup("a.test", compression, &description, targets, &fresh());
        assert_eq!(
            args.to_stored(),
            json!({"backup": {"file": "a.test-20261118T110640Z-1a2b", "compression": "gzip",
                              "description": "before the upgrade"}})
        );
        assert_eq!(
            TaskArgs::from_stored(TaskType::Backup, &args.to_stored()).unwrap(),
            args
        );
        // Named targets are kept with the task.
        let validated = json!({"description": "x", "compression": "zstd", "targets": ["offsite"]});
        let Ok(Requested::Backup { targets, .. }) = Requested::read(TaskType::Backup, &validated)
        else {
            panic!("not a backup")
        };
        let args = backup("a.test", Compression::Zstd, "x", targets, &fresh());
        assert_eq!(args.to_stored()["targets"], json!(["offsite"]));
    }

    #[test]
    fn a_delete_backs_the_site_up_first() {
        assert!(matches!(
            Requested::read(TaskType::Delete, &json!({})).unwrap(),
            Requested::Delete
        ));
        assert_eq!(
            delete("a.test", &fresh()).to_stored(),
            json!({"backup": {"file": "a.test-20261118T110640Z-1a2b", "compression": "zstd",
                              "description": "Generated before being deleted"}})
        );
    }

    #[test]
    fn an_enabled_site_is_not_deleted_unless_configured() {
        let e = check_site(TaskType::Delete, "a.test", "enabled", false).unwrap_err();
        assert!(
            matches!(&e, ApiError::Conflict(m) if m.contains("disable it first")),
            "{e:?}"
        );
        check_site(TaskType::Delete, "a.test", "enabled", true).unwrap();
        check_site(TaskType::Delete, "a.test", "disabled", false).unwrap();
        assert!(matches!(
            check_site(TaskType::Enable, "a.test", "enabled", false),
            Err(ApiError::Conflict(_))
        ));
    }

    #[test]
    fn only_a_verify_queues_behind_another_of_its_type() {
        let id = Some(Uuid::nil());
        refuse_second(TaskType::Verify, "a.test", id).unwrap();
        refuse_second(TaskType::Backup, "a.test", None).unwrap();
        assert!(matches!(
            refuse_second(TaskType::Backup, "a.test", id),
            Err(ApiError::Conflict(m)) if m.contains("backup task queued or running already")
        ));
    }

    #[test]
    fn a_restore_moves_to_a_new_database_after_a_backup() {
        let req = Requested::read(
            TaskType::Restore,
            &json!({"backup": "00000000-0000-0000-0000-000000000000"}),
        )
        .unwrap();
        assert!(matches!(req, Requested::Restore { backup } if backup == Uuid::nil()));
        let args = restore("a.test", &a_backup(), &fresh());
        let stored = args.to_stored();
        assert_eq!(
            stored["restore_from"]["file"],
            "a.test-20261118T110640Z-ffff"
        );
        assert_eq!(
            stored["next_db"],
            json!({"name": "atest_abc123", "user": "atest_abc123"})
        );
        assert_eq!(
            stored["backup"]["description"],
            "Generated before being restored to a previous version"
        );
        assert_eq!(
            TaskArgs::from_stored(TaskType::Restore, &stored).unwrap(),
            args
        );
    }

    #[test]
    fn a_migrate_and_a_clone_store_where_they_go() {
        let to = MigrateTo {
            platform: "platform_b".into(),
            db_server: "server_master".into(),
            uri: "b.test".into(),
        };
        let m = migrate("a.test", to, &fresh()).to_stored();
        assert_eq!(m["to"]["uri"], "b.test");
        assert_eq!(m["next_db"]["name"], "atest_abc123");
        let c = clone(
            "a.test",
            "c.test",
            CloneTo {
                platform: "platform_b".into(),
                db_server: "server_master".into(),
            },
            &fresh(),
        )
        .to_stored();
        assert_eq!(c["new_site"], "c.test");
        assert_eq!(
            c["backup"]["description"],
            "Generated for cloning to c.test"
        );
        assert!(
            check_clone_names(
                "a.test",
                &CloneArgs {
                    uri: "a.test".into(),
                    ..Default::default()
                }
            )
            .is_err()
        );
        let d = backup_delete(&a_backup()).to_stored();
        assert_eq!(d["backup"]["server"], "server_master");
    }

    #[test]
    fn a_noop_reads_as_asked() {
        let Requested::Noop(a) = Requested::read(TaskType::Noop, &json!({"steps": 2})).unwrap()
        else {
            panic!()
        };
        assert_eq!(a.steps, Some(2));
        assert_eq!(TaskArgs::Noop(a).to_stored(), json!({"steps": 2}));
        assert_eq!(TaskArgs::Noop(NoopArgs::default()).to_stored(), json!({}));
    }
}
