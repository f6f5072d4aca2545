//! Task types and the arguments a queued task carries, by type: what the API's intake
//! stores with the task and the planner reads back. The JSON shape of each is the one
//! stored since message version 1, so tasks queued before an upgrade still read.

use crate::steps::{BackupOrder, FailSpec, Service};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
    /// Remove the backups a retention policy forgets (as decided when it was accepted).
    Prune,
    /// Run the site's cron, by its platform's cron method (drush or HTTP).
    Cron,
    /// Restore a backup into a throwaway site, check it serves the site's content, remove it.
    Drill,
    /// Serve the "site suspended" page (its client is suspended or cancelled).
    Suspend,
    /// Serve a suspended site as it was before (enabled, or its disabled page).
    Unsuspend,
    /// Measure the disk the site's files and database take (cheap; verify does it too).
    Usage,
}

impl TaskType {
    pub const ALL: [TaskType; 18] = [
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
        Self::Prune,
        Self::Cron,
        Self::Drill,
        Self::Suspend,
        Self::Unsuspend,
        Self::Usage,
    ];

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
            Self::Prune => "prune",
            Self::Cron => "cron",
            Self::Drill => "drill",
            Self::Suspend => "suspend",
            Self::Unsuspend => "unsuspend",
            Self::Usage => "usage",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// As [`Self::from_name`], with an error that lists the known types.
    pub fn parse(s: &str) -> Result<Self, UnknownTaskType> {
        Self::from_name(s).ok_or_else(|| UnknownTaskType(s.to_string()))
    }
}

/// A task type no build of berth knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownTaskType(pub String);

impl std::fmt::Display for UnknownTaskType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let known: Vec<&str> = TaskType::ALL.iter().map(|t| t.as_str()).collect();
        write!(
            f,
            "unknown task type `{}`; known types: {}",
            self.0,
            known.join(", ")
        )
    }
}

impl std::error::Error for UnknownTaskType {}

/// As its name (`install`, `login-reset`, …): how events carry it.
impl Serialize for TaskType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for TaskType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Self::parse(&name).map_err(serde::de::Error::custom)
    }
}

/// A diagnostic noop's arguments, as asked for and stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoopArgs {
    /// Which worker runs the step: http (default), db, dns or backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<Service>,
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

/// A site database's names (its password is a task secret, never here).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbNames {
    pub name: String,
    pub user: String,
}

/// A backup, `backup` or `delete`: the file the task writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupTask {
    pub backup: BackupOrder,
    /// Off-site targets the backup is copied to once made (none before targets existed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
}

/// The backup a restore puts back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreFrom {
    pub id: Uuid,
    pub path: String,
    pub file: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreTask {
    pub restore_from: RestoreFrom,
    /// The site as it is, backed up first.
    pub backup: BackupOrder,
    /// The new database the site moves to.
    pub next_db: DbNames,
}

/// Where a migrate moves a site, resolved at intake (what was not asked for is where the
/// site is).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrateTo {
    pub platform: String,
    pub db_server: String,
    pub uri: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MigrateTask {
    pub to: MigrateTo,
    pub backup: BackupOrder,
    pub next_db: DbNames,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloneTo {
    pub platform: String,
    pub db_server: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CloneTask {
    /// The new site's uri (saved, `installing`, with the task).
    pub new_site: String,
    pub to: CloneTo,
    pub backup: BackupOrder,
}

/// The backup a `backup-delete` removes, and the server holding its file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupRef {
    pub id: Uuid,
    pub path: String,
    pub server: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupDeleteTask {
    pub backup: BackupRef,
}

/// A pruning: the policy, and the backups it forgets, decided when the task was accepted
/// (the preview's answer for the same policy).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PruneTask {
    pub retention: crate::schedule::RetentionSpec,
    /// Backups whose local file goes.
    pub remove: Vec<BackupRef>,
    /// Off-site copies that go: those of removed backups on targets without a retention of
    /// their own, and those a target's own retention forgets. Absent (a task accepted
    /// before targets had a retention): every copy of a removed backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copies: Option<Vec<CopyRef>>,
}

/// One backup's copy on one target.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CopyRef {
    pub backup: Uuid,
    pub target: String,
}

/// A restore drill: which backup. Everything else (the drill site's name, database,
/// unix user) is made by the state service when it plans the task, and the drill
/// database's password by the workers from the cluster key and the task id, so a task row
/// with `{}` is a whole drill (what the scheduler writes).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrillTask {
    /// Absent: the site's newest backup still on disk when the task starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<Uuid>,
}

/// The arguments a task carries, by its type.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskArgs {
    /// verify, install, disable, enable, login-reset, cron.
    None,
    Noop(NoopArgs),
    Backup(BackupTask),
    /// A disable takes a backup first, as Aegir does (older disables carry none: `None`).
    Disable(BackupTask),
    Delete(BackupTask),
    Restore(RestoreTask),
    Migrate(MigrateTask),
    Clone(CloneTask),
    BackupDelete(BackupDeleteTask),
    Prune(PruneTask),
    Drill(DrillTask),
}

impl TaskArgs {
    /// Reads a task's stored arguments; `Err` says what does not fit its type.
    pub fn from_stored(task_type: TaskType, v: &Value) -> Result<Self, serde_json::Error> {
        fn read<T: serde::de::DeserializeOwned>(v: &Value) -> Result<T, serde_json::Error> {
            T::deserialize(v)
        }
        Ok(match task_type {
            TaskType::Disable if v.as_object().is_none_or(|o| o.is_empty()) => Self::None,
            TaskType::Disable => Self::Disable(read(v)?),
            TaskType::Verify
            | TaskType::Install
            | TaskType::Enable
            | TaskType::LoginReset
            | TaskType::Cron
            | TaskType::Suspend
            | TaskType::Unsuspend
            | TaskType::Usage => Self::None,
            TaskType::Noop if v.is_null() => Self::Noop(NoopArgs::default()),
            TaskType::Noop => Self::Noop(read(v)?),
            TaskType::Backup => Self::Backup(read(v)?),
            TaskType::Delete => Self::Delete(read(v)?),
            TaskType::Restore => Self::Restore(read(v)?),
            TaskType::Migrate => Self::Migrate(read(v)?),
            TaskType::Clone => Self::Clone(read(v)?),
            TaskType::BackupDelete => Self::BackupDelete(read(v)?),
            TaskType::Prune => Self::Prune(read(v)?),
            TaskType::Drill if v.is_null() => Self::Drill(DrillTask::default()),
            TaskType::Drill => Self::Drill(read(v)?),
        })
    }

    /// As stored with the task (and shown in its `args`).
    pub fn to_stored(&self) -> Value {
        let v = match self {
            Self::None => Ok(Value::Object(Default::default())),
            Self::Noop(a) => serde_json::to_value(a),
            Self::Backup(a) | Self::Disable(a) | Self::Delete(a) => serde_json::to_value(a),
            Self::Restore(a) => serde_json::to_value(a),
            Self::Migrate(a) => serde_json::to_value(a),
            Self::Clone(a) => serde_json::to_value(a),
            Self::BackupDelete(a) => serde_json::to_value(a),
            Self::Prune(a) => serde_json::to_value(a),
            Self::Drill(a) => serde_json::to_value(a),
        };
        v.expect("task arguments serialise")
    }

    /// The backup the task makes first, if it makes one.
    pub fn backup_order(&self) -> Option<&BackupOrder> {
        match self {
            Self::Backup(a) | Self::Disable(a) | Self::Delete(a) => Some(&a.backup),
            Self::Restore(a) => Some(&a.backup),
            Self::Migrate(a) => Some(&a.backup),
            Self::Clone(a) => Some(&a.backup),
            Self::None
            | Self::Noop(_)
            | Self::BackupDelete(_)
            | Self::Prune(_)
            | Self::Drill(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::Compression;

    #[test]
    fn stored_arguments_of_version_1_still_read() {
        let v = serde_json::json!({
            "to": {"platform": "platform_b", "db_server": "server_master", "uri": "a.test"},
            "backup": {"file": "a.test-x", "compression": "zstd",
                       "description": "Generated before being migrated"},
            "next_db": {"name": "atest_abc123", "user": "atest_abc123"},
        });
        let a = TaskArgs::from_stored(TaskType::Migrate, &v).unwrap();
        let TaskArgs::Migrate(m) = &a else { panic!() };
        assert_eq!(m.backup.compression, Compression::Zstd);
        assert_eq!(a.to_stored(), v);
        assert!(TaskArgs::from_stored(TaskType::Restore, &v).is_err());
        assert_eq!(
            TaskArgs::from_stored(TaskType::Verify, &serde_json::json!({})).unwrap(),
            TaskArgs::None
        );
    }

    #[test]
    fn task_types_round_trip_through_their_names() {
        for t in TaskType::ALL {
            assert_eq!(TaskType::from_name(t.as_str()), Some(t));
        }
        assert_eq!(TaskType::from_name("explode"), None);
    }

    #[test]
    fn a_drill_reads_with_or_without_its_backup() {
        let id = Uuid::now_v7();
        for (v, want) in [
            (serde_json::json!({}), None),
            (Value::Null, None),
            (serde_json::json!({"backup": id.to_string()}), Some(id)),
        ] {
            let a = TaskArgs::from_stored(TaskType::Drill, &v).unwrap();
            assert_eq!(a, TaskArgs::Drill(DrillTask { backup: want }));
        }
        assert!(TaskArgs::from_stored(TaskType::Drill, &serde_json::json!({"x": 1})).is_err());
    }
}
