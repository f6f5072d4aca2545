//! Backups: one made (a tarball of the site's directory with its database dump) and one
//! removed.

use super::{Plan, PlannedStep};
use crate::facts::SiteFacts;
use crate::offsite::{CopyFacts, TargetFacts, object_key};
use berth_contracts::SecretNeeds;
use berth_contracts::steps::{
    BackupDeleteSpec, BackupOrder, BackupSource, BackupStep, DeleteCopySpec, SiteBackupSpec,
    UploadSpec,
};
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

/// The backup, then its upload to each of the task's targets (`targets`, resolved from
/// the task's names by the state service, in the task's order).
pub fn plan_backup(s: &SiteFacts, a: &BackupTask, targets: &[TargetFacts]) -> Result<Plan, String> {
    let mut steps = vec![backup_step(s, &a.backup, false)];
    let file = format!("{}.{}", a.backup.file, a.backup.compression.extension());
    for t in targets {
        let key = object_key(&t.prefix, &s.uri, &file).map_err(|e| e.to_string())?;
        steps.push(
            PlannedStep::backup(
                s.web(),
                BackupStep::Upload(UploadSpec {
                    target: t.spec(),
                    source: BackupSource::File(a.backup.file.clone()),
                    key,
                    sha256: None,
                }),
            )
            .secrets(SecretNeeds::BACKUP_TARGET),
        );
    }
    Ok(Plan { steps })
}

/// One off-site copy removed, on the server of the backup it copies (any backup worker
/// could: the store is reached over the network).
pub fn delete_copy_step(server: &str, c: &CopyFacts) -> PlannedStep {
    PlannedStep::backup(
        server,
        BackupStep::DeleteCopy(DeleteCopySpec {
            target: c.target.spec(),
            key: c.key.clone(),
        }),
    )
    .secrets(SecretNeeds::BACKUP_TARGET)
}

/// The off-site copies go first, then the file on the server that holds it: a copy that
/// cannot be removed fails the task with the backup still recorded, to be retried.
pub fn plan_backup_delete(a: &BackupDeleteTask, copies: &[CopyFacts]) -> Plan {
    Plan {
        steps: delete_steps(&a.backup, copies),
    }
}

/// Each backup the policy forgets goes, its off-site copies first, (nothing to forget: no
/// step). `copies`: the live copies of the backups removed.
pub fn plan_prune(a: &PruneTask, copies: &[CopyFacts]) -> Plan {
    let Some(chosen) = &a.copies else {
        // Accepted before targets had a retention: every copy of a removed backup goes.
        return Plan {
            steps: a
                .remove
                .iter()
                .flat_map(|b| delete_steps(b, copies))
                .collect(),
        };
    };
    // The copies chosen (a copy deleted since is no longer among `copies`: nothing to do),
    // then the files.
    let mut steps: Vec<PlannedStep> = copies
        .iter()
        .filter(|c| {
            chosen
                .iter()
                .any(|r| r.backup == c.backup && r.target == c.target.name)
        })
        .map(|c| delete_copy_step(&c.server, c))
        .collect();
    steps.extend(a.remove.iter().map(file_delete_step));
    Plan { steps }
}

/// A backup's copies (those of `copies` that are its own), then its file.
fn delete_steps(b: &BackupRef, copies: &[CopyFacts]) -> Vec<PlannedStep> {
    let mut steps: Vec<PlannedStep> = copies
        .iter()
        .filter(|c| c.backup == b.id)
        .map(|c| delete_copy_step(&b.server, c))
        .collect();
    steps.push(file_delete_step(b));
    steps
}

fn file_delete_step(b: &BackupRef) -> PlannedStep {
    PlannedStep::backup(
        &b.server,
        BackupStep::BackupDelete(BackupDeleteSpec {
            path: b.path.clone(),
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::super::test_support::actions;
    use super::*;
    use crate::facts::fixtures::site;
    use berth_contracts::Work;
    use berth_contracts::steps::Compression;
    use berth_contracts::task::BackupRef;

    fn target(name: &str, prefix: &str) -> TargetFacts {
        TargetFacts {
            name: name.into(),
            endpoint: "http://127.0.0.1:9000".into(),
            bucket: "b".into(),
            prefix: prefix.into(),
            region: "us-east-1".into(),
            access_key_id: "k".into(),
        }
    }

    #[test]
    fn a_backup_with_targets_uploads_to_each_under_the_sites_prefix() {
        let s = site("enabled", "null");
        let a = BackupTask {
            backup: BackupOrder {
                file: "www.example.com-20261204T101010Z-ab12".into(),
                compression: Compression::Zstd,
                description: "x".into(),
            },
            targets: vec!["one".into(), "two".into()],
        };
        let p = plan_backup(&s, &a, &[target("one", "prod"), target("two", "")]).unwrap();
        assert_eq!(
            actions(&p),
            ["site-backup", "backup-upload", "backup-upload"]
        );
        let keys: Vec<_> = p.steps[1..]
            .iter()
            .map(|st| {
                let Work::Backup(BackupStep::Upload(u)) = &st.work else {
                    panic!()
                };
                assert_eq!(u.source, BackupSource::File(a.backup.file.clone()));
                assert_eq!(st.secrets, SecretNeeds::BACKUP_TARGET);
                assert_eq!(st.work.backup_target(), Some(&u.target));
                (u.target.name.clone(), u.key.clone())
            })
            .collect();
        assert_eq!(
            keys,
            [
                (
                    "one".to_string(),
                    "prod/www.example.com/www.example.com-20261204T101010Z-ab12.tar.zst"
                        .to_string()
                ),
                (
                    "two".to_string(),
                    "www.example.com/www.example.com-20261204T101010Z-ab12.tar.zst".to_string()
                )
            ]
        );
        // No targets: the backup alone, as before targets existed.
        let p = plan_backup(
            &s,
            &BackupTask {
                targets: vec![],
                ..a
            },
            &[],
        )
        .unwrap();
        assert_eq!(actions(&p), ["site-backup"]);
    }

    #[test]
    fn a_backup_delete_removes_the_copies_before_the_file() {
        let a = BackupDeleteTask {
            backup: BackupRef {
                id: uuid::Uuid::nil(),
                path: "/var/berth/backups/x.tar.zst".into(),
                server: "server_web".into(),
            },
        };
        let c = CopyFacts {
            backup: uuid::Uuid::nil(),
            server: "server_web".into(),
            target: target("one", "p"),
            key: "p/a.test/x.tar.zst".into(),
            sha256: "00".repeat(32),
        };
        let p = plan_backup_delete(&a, std::slice::from_ref(&c));
        assert_eq!(actions(&p), ["backup-copy-delete", "backup-delete"]);
        assert_eq!(p.steps[0].server, "server_web");
        assert_eq!(p.steps[0].secrets, SecretNeeds::BACKUP_TARGET);
        assert_eq!(actions(&plan_backup_delete(&a, &[])), ["backup-delete"]);
        // A prune removes each backup's own copies, then its file; another's stay.
        let other = BackupRef {
            id: uuid::Uuid::from_u128(7),
            path: "/var/berth/backups/y.tar.zst".into(),
            server: "server_web".into(),
        };
        let mut prune = PruneTask {
            retention: Default::default(),
            remove: vec![other.clone(), a.backup.clone()],
            copies: None,
        };
        let p = plan_prune(&prune, std::slice::from_ref(&c));
        assert_eq!(
            actions(&p),
            ["backup-delete", "backup-copy-delete", "backup-delete"]
        );
        let Work::Backup(BackupStep::BackupDelete(d)) = &p.steps[2].work else {
            panic!()
        };
        assert_eq!(d.path, "/var/berth/backups/x.tar.zst");

        // Chosen copies (a target's own retention): only those go, a removed backup's copy
        // on a target that keeps it stays, and a kept backup's forgotten copy goes.
        let kept_elsewhere = CopyFacts {
            target: target("vault", "v"),
            key: "v/a.test/x.tar.zst".into(),
            ..c.clone()
        };
        let of_other = CopyFacts {
            backup: other.id,
            key: "v/a.test/y.tar.zst".into(),
            target: target("vault", "v"),
            ..c.clone()
        };
        let kept_backup = uuid::Uuid::from_u128(9);
        let forgotten = CopyFacts {
            backup: kept_backup,
            server: "server_other".into(),
            target: target("vault", "v"),
            key: "v/a.test/z.tar.zst".into(),
            ..c.clone()
        };
        let chosen = |backup, target: &str| berth_contracts::task::CopyRef {
            backup,
            target: target.into(),
        };
        prune.copies = Some(vec![
            chosen(a.backup.id, "one"),
            chosen(kept_backup, "vault"),
        ]);
        let p = plan_prune(&prune, &[c.clone(), kept_elsewhere, of_other, forgotten]);
        assert_eq!(
            actions(&p),
            [
                "backup-copy-delete",
                "backup-copy-delete",
                "backup-delete",
                "backup-delete"
            ]
        );
        let keys: Vec<_> = p.steps[..2]
            .iter()
            .map(|s| match &s.work {
                Work::Backup(BackupStep::DeleteCopy(d)) => (s.server.as_str(), d.key.as_str()),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            keys,
            [
                ("server_web", "p/a.test/x.tar.zst"),
                ("server_other", "v/a.test/z.tar.zst")
            ]
        );
    }
}
