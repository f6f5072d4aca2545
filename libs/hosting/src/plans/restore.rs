//! Restoring a site from one of its backups.

use super::backup::backup_step;
use super::deploy::{deploy_steps, finish_steps, maintenance_step};
use super::{Plan, PlannedStep};
use crate::facts::SiteFacts;
use crate::offsite::CopyFacts;
use crate::sites::restore_dir;
use berth_contracts::SecretNeeds;
use berth_contracts::steps::{BackupSource, CleanupSpec, SiteDbSecret};
use berth_contracts::steps::{BackupStep, FetchSpec};
use berth_contracts::task::RestoreTask;

/// A restore, in steps that each can be taken back until the old database is dropped,
/// the last step that can fail: maintenance page, a backup of the site as it is, (when the
/// chosen backup has off-site copies, its file fetched back from the first if it is gone,)
/// a new database, the chosen backup unpacked beside the site and imported, the swap, updatedb,
/// the vhost with the new credentials, the package map, then the old database dropped and
/// the old directory removed. A failure anywhere before the drop puts everything back.
/// Fetches the backup at `path` back from its copy `c` if the file is gone (the worker
/// leaves a present file alone). Nothing to take back: the file fetched is the backup's own.
pub(super) fn fetch_step(web: &str, c: &CopyFacts, path: &str) -> PlannedStep {
    PlannedStep::backup(
        web,
        BackupStep::Fetch(FetchSpec {
            target: c.target.spec(),
            key: c.key.clone(),
            path: path.to_string(),
            sha256: c.sha256.clone(),
        }),
    )
    .secrets(SecretNeeds::BACKUP_TARGET)
}

pub fn plan_restore(s: &SiteFacts, a: &RestoreTask, copies: &[CopyFacts]) -> Plan {
    let web = s.web();
    let mut spec = s.spec_as_is();
    spec.stash = true;
    let mut next = spec.clone();
    next.db.name = a.next_db.name.clone();
    next.db.user = a.next_db.user.clone();
    let new_dir = restore_dir(&s.platform.root, &s.uri);
    let (deploy, swap) = deploy_steps(
        web,
        &s.db_server.name,
        &next,
        BackupSource::Path(a.restore_from.path.clone()),
        &new_dir,
        None,
        SiteDbSecret::Next,
    );
    let mut steps = vec![
        maintenance_step(web, &spec),
        backup_step(s, &a.backup, false),
    ];
    // Only the worker knows whether the file is still there.
    if let Some(c) = copies.first() {
        steps.push(fetch_step(web, c, &a.restore_from.path));
    }
    steps.extend(deploy);
    let cleanup = CleanupSpec {
        swap,
        old_root: None,
        old_uri: None,
    };
    steps.extend(finish_steps(s, &spec, &next, cleanup));
    Plan { steps }
}

#[cfg(test)]
mod tests {
    use super::super::plan_site_task;
    use super::super::test_support::actions;
    use crate::facts::fixtures::site;
    use berth_contracts::steps::{BackupOrder, BackupStep, Compression};
    use berth_contracts::task::{DbNames, RestoreFrom, RestoreTask};
    use berth_contracts::{TaskArgs, TaskType, Work};

    #[test]
    fn a_restore_can_be_taken_back_until_the_old_database_goes() {
        let args = TaskArgs::Restore(RestoreTask {
            restore_from: RestoreFrom {
                id: uuid::Uuid::nil(),
                path: "/var/lib/berth/backups/old.tar.zst".into(),
                file: "old".into(),
            },
            backup: BackupOrder {
                file: "f".into(),
                compression: Compression::Zstd,
                description: "before restore".into(),
            },
            next_db: DbNames {
                name: "wwwexamplecom_ffffff".into(),
                user: "wwwexamplecom_ffffff".into(),
            },
        });
        let p = plan_site_task(TaskType::Restore, &site("enabled", "null"), &args).unwrap();
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
        assert_eq!(
            p.steps[2].work.site().unwrap().db.name,
            "wwwexamplecom_ffffff"
        );
        assert_eq!(
            p.steps[8].work.site().unwrap().db.name,
            "wwwexamplecom_abc123"
        );
        let Work::Backup(BackupStep::BackupExtract(x)) = &p.steps[3].work else {
            panic!()
        };
        assert_eq!(
            x.target_dir,
            "/var/aegir/platforms/d10/sites/www.example.com.berth-new"
        );
        // Everything that changes something before the drop can be taken back.
        for s in &p.steps[..8] {
            if !matches!(
                s.action(),
                "site-backup" | "site-updatedb" | "site-packages"
            ) {
                assert!(s.undo.is_some(), "{}", s.action());
            }
        }
        assert!(p.steps[8..].iter().all(|s| s.undo.is_none()));
    }

    #[test]
    fn a_restore_of_a_backup_with_copies_fetches_it_before_the_deploy() {
        use crate::offsite::{CopyFacts, OffsiteFacts, TargetFacts};
        let args = TaskArgs::Restore(RestoreTask {
            restore_from: RestoreFrom {
                id: uuid::Uuid::nil(),
                path: "/var/lib/berth/backups/old.tar.zst".into(),
                file: "old".into(),
            },
            backup: BackupOrder {
                file: "f".into(),
                compression: Compression::Zstd,
                description: "before restore".into(),
            },
            next_db: DbNames {
                name: "n".into(),
                user: "n".into(),
            },
        });
        let copy = CopyFacts {
            backup: uuid::Uuid::nil(),
            server: "server_web".into(),
            target: TargetFacts {
                name: "offsite".into(),
                endpoint: "http://127.0.0.1:9000".into(),
                bucket: "b".into(),
                prefix: "p".into(),
                region: "us-east-1".into(),
                access_key_id: "k".into(),
            },
            key: "p/www.example.com/old.tar.zst".into(),
            sha256: "ab".repeat(32),
        };
        let offsite = OffsiteFacts {
            targets: vec![],
            copies: vec![copy],
        };
        let p = super::super::plan_site_task_offsite(
            TaskType::Restore,
            &site("enabled", "null"),
            &args,
            &offsite,
        )
        .unwrap();
        assert_eq!(
            &actions(&p)[..4],
            [
                "site-maintenance",
                "site-backup",
                "backup-fetch",
                "site-db-create"
            ]
        );
        let Work::Backup(BackupStep::Fetch(f)) = &p.steps[2].work else {
            panic!()
        };
        assert_eq!(f.path, "/var/lib/berth/backups/old.tar.zst");
        assert_eq!(f.key, "p/www.example.com/old.tar.zst");
        assert_eq!(f.sha256, "ab".repeat(32));
        assert!(p.steps[2].secrets.backup_target);
    }
}
