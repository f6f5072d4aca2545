//! Deleting a site: a backup first, then everything of it, in the order that keeps the
//! world consistent if it stops halfway.

use super::backup::backup_step;
use super::{Plan, PlannedStep};
use crate::facts::SiteFacts;
use berth_contracts::SecretNeeds;
use berth_contracts::steps::{DbStep, DnsStep, HttpStep};
use berth_contracts::task::BackupTask;

/// Backup first: if it fails, nothing is removed. Then the site stops being served and its
/// records go, before its files and database. Every removal takes an absent thing as done,
/// so a failed delete can be run again; a re-run after the files went finds nothing to
/// back up (the first run's backup is the site's last one), which is only a warning.
pub fn plan_delete(s: &SiteFacts, a: &BackupTask) -> Plan {
    let web = s.web();
    let spec = s.spec_as_is();
    let mut steps = vec![
        backup_step(s, &a.backup, true),
        PlannedStep::http(web, HttpStep::SiteVhostRemove(spec.clone())),
    ];
    if s.dns_managed() {
        steps.push(PlannedStep::dns(
            web,
            DnsStep::SiteRecordsRemove(spec.clone()),
        ));
    }
    steps.push(PlannedStep::http(
        web,
        HttpStep::SiteFilesRemove(spec.clone()),
    ));
    steps.push(
        PlannedStep::db(&s.db_server.name, DbStep::SiteDbDrop(spec)).secrets(SecretNeeds::DB_ADMIN),
    );
    Plan { steps }
}

#[cfg(test)]
mod tests {
    use super::super::plan_site_task;
    use super::super::test_support::actions;
    use crate::facts::fixtures::site;
    use berth_contracts::steps::{BackupOrder, BackupStep, Compression};
    use berth_contracts::task::BackupTask;
    use berth_contracts::{Service, TaskArgs, TaskType, Work};

    fn order() -> BackupTask {
        BackupTask {
            backup: BackupOrder {
                file: "www.example.com-20261122T120000Z".into(),
                compression: Compression::Zstd,
                description: "before delete".into(),
            },
            targets: vec![],
        }
    }

    #[test]
    fn delete_backs_up_first_and_removes_everything_after() {
        let p = plan_site_task(
            TaskType::Delete,
            &site("disabled", "bind"),
            &TaskArgs::Delete(order()),
        )
        .unwrap();
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
        assert_eq!(p.steps[0].service(), Service::Backup);
        let Work::Backup(BackupStep::SiteBackup(b)) = &p.steps[0].work else {
            panic!()
        };
        assert_eq!(b.backup.file, "www.example.com-20261122T120000Z");
        assert!(b.files_may_be_gone);
        assert!(p.steps.iter().all(|s| s.undo.is_none()));
        // Arguments of another type are refused, not guessed at.
        assert!(
            plan_site_task(TaskType::Delete, &site("disabled", "bind"), &TaskArgs::None).is_err()
        );
        let b = plan_site_task(
            TaskType::Backup,
            &site("enabled", "null"),
            &TaskArgs::Backup(order()),
        )
        .unwrap();
        assert_eq!(actions(&b), ["site-backup"]);
    }
}
