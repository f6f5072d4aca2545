//! Backups: one made (a tarball of the site's directory with its database dump) and one
//! removed.

use super::{Plan, PlannedStep};
use crate::facts::SiteFacts;
use berth_contracts::SecretNeeds;
use berth_contracts::steps::{BackupDeleteSpec, BackupOrder, BackupStep, SiteBackupSpec};
use berth_contracts::task::{BackupDeleteTask, BackupRef, BackupTask, PruneTask};

/// The backup step of a backup, delete, restore, migrate or clone: its file is named by the
/// task (when it was accepted), so that a redelivered step writes the same file.
pub(super) fn backup_step(
    s: &SiteFacts,
    order: &BackupOrder,
    files_may_be_gone: bool,
) -> PlannedStep {
    PlannedStep::backup(
        s.web(),
        BackupStep::SiteBackup(Box::new(SiteBackupSpec {
            site: s.spec_as_is(),
            backup: order.clone(),
            files_may_be_gone,
        })),
    )
    .secrets(SecretNeeds::SITE_DB)
}

pub fn plan_backup(s: &SiteFacts, a: &BackupTask) -> Plan {
    Plan {
        steps: vec![backup_step(s, &a.backup, false)],
    }
}

/// The file goes on the server that holds it.
pub fn plan_backup_delete(a: &BackupDeleteTask) -> Plan {
    Plan {
        steps: vec![delete_step(&a.backup)],
    }
}

/// Each backup the policy forgets goes, one step each (nothing to forget: no step).
pub fn plan_prune(a: &PruneTask) -> Plan {
    Plan {
        steps: a.remove.iter().map(delete_step).collect(),
    }
}

fn delete_step(b: &BackupRef) -> PlannedStep {
    PlannedStep::backup(
        &b.server,
        BackupStep::BackupDelete(BackupDeleteSpec {
            path: b.path.clone(),
        }),
    )
}
