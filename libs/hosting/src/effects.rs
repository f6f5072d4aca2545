//! What finished steps and tasks change in the state, as data: the dispatcher applies
//! these in the transaction that records the step or ends the task.

use crate::sites::status as site_status;
use berth_contracts::steps::{
    BackupMade, BackupStep, CopyMade, FilesUsage, HttpStep, PlatformScan,
};
use berth_contracts::task::DbNames;
use berth_contracts::{Package, StepOutput, TargetKind, TaskArgs, TaskType, Work};

#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// A platform's scan: its Drupal, packages and the sites found in `sites/`.
    RecordScan {
        platform: String,
        scan: PlatformScan,
    },
    /// A backup made by the step (the backup's id is the step's).
    RecordBackup {
        site: String,
        server: String,
        made: BackupMade,
        description: String,
    },
    RecordPackages {
        site: String,
        packages: Vec<Package>,
    },
    SetLoginLink {
        site: String,
        link: String,
    },
    MarkBackupDeleted {
        server: String,
        path: String,
    },
    /// An off-site copy of the backup held at `path` on `server` (the copy's id is the
    /// step's); recorded only when its sha256 is the backup's.
    RecordCopy {
        server: String,
        copy: CopyMade,
    },
    MarkCopyDeleted {
        target: String,
        key: String,
    },
    /// The backup's file, pruned from `server`, was fetched back from a copy: it is on disk
    /// again, and local retention weighs it again.
    /// The site serves (or no longer serves) its "suspended" page.
    SetSuspended {
        site: String,
        suspended: bool,
    },
    MarkBackupOnDisk {
        server: String,
        path: String,
    },
    PlatformStatus {
        platform: String,
        status: &'static str,
    },
    SiteStatus {
        site: String,
        status: &'static str,
    },
    /// A deleted site's aliases are free for other sites.
    ClearAliases {
        site: String,
    },
    /// The site uses the database the task made (its password is the task's secret).
    MoveDatabase {
        site: String,
        db: DbNames,
    },
    SetHome {
        site: String,
        platform: String,
        db_server: String,
    },
    /// A drill restored the backup and the copy served the site's content (the task that
    /// did it is the one applying this).
    BackupVerified {
        backup: uuid::Uuid,
    },
    /// The site's database holds its cron key now.
    CronKeyGiven {
        site: String,
    },
    /// The site's last cron: the finished cron task (its times are the task's).
    RecordCron {
        site: String,
        ok: bool,
    },
    /// The disk the site's directory takes (a walk that stopped at a limit: a lower bound).
    RecordFilesUsage {
        site: String,
        usage: FilesUsage,
    },
    /// The size of the site's database.
    RecordDbUsage {
        site: String,
        bytes: i64,
    },
    /// The site's name changes; a login link made for the old name leads nowhere.
    Rename {
        from: String,
        to: String,
    },
}

/// The task a step belongs to, as the effects need it.
#[derive(Debug, Clone, Copy)]
pub struct TaskRef<'a> {
    pub task_type: TaskType,
    pub target: &'a str,
}

/// What a step that succeeded changes, from what it reported.
pub fn of_step(task: TaskRef<'_>, server: &str, work: &Work, output: &StepOutput) -> Vec<Effect> {
    // The site a site step acted on: the task's (a renamed site keeps its row's old name
    // until the task ends), or a clone's new site.
    let site = || match (task.task_type, work.site()) {
        (TaskType::Clone, Some(s)) => s.uri.clone(),
        _ => task.target.to_string(),
    };
    if let Work::Http(HttpStep::SiteCronKey(_)) = work {
        return vec![Effect::CronKeyGiven { site: site() }];
    }
    match output {
        StepOutput::PlatformScanned(scan) => vec![Effect::RecordScan {
            platform: task.target.to_string(),
            scan: scan.clone(),
        }],
        StepOutput::BackupMade(made) => {
            let description = match work {
                Work::Backup(BackupStep::SiteBackup(b)) => b.backup.description.clone(),
                _ => String::new(),
            };
            vec![Effect::RecordBackup {
                site: task.target.to_string(),
                server: server.to_string(),
                made: made.clone(),
                description,
            }]
        }
        StepOutput::SitePackages {
            packages,
            login_link,
        } => {
            let site = site();
            let mut effects = vec![Effect::RecordPackages {
                site: site.clone(),
                packages: packages.clone(),
            }];
            if let Some(link) = login_link {
                effects.push(Effect::SetLoginLink {
                    site,
                    link: link.clone(),
                });
            }
            effects
        }
        StepOutput::LoginLink { login_link } => vec![Effect::SetLoginLink {
            site: site(),
            link: login_link.clone(),
        }],
        StepOutput::DrillPassed { backup, .. } => vec![Effect::BackupVerified { backup: *backup }],
        StepOutput::FilesMeasured(usage) => vec![Effect::RecordFilesUsage {
            site: site(),
            usage: *usage,
        }],
        StepOutput::DbMeasured { bytes: Some(bytes) } => vec![Effect::RecordDbUsage {
            site: site(),
            bytes: *bytes,
        }],
        // Not known (the server was slow): the last measure stands.
        StepOutput::DbMeasured { bytes: None } => Vec::new(),
        StepOutput::BackupDeleted { path } => vec![Effect::MarkBackupDeleted {
            server: server.to_string(),
            path: path.clone(),
        }],
        StepOutput::CopyMade(copy) => vec![Effect::RecordCopy {
            server: server.to_string(),
            copy: copy.clone(),
        }],
        StepOutput::CopyDeleted { target, key } => vec![Effect::MarkCopyDeleted {
            target: target.clone(),
            key: key.clone(),
        }],
        StepOutput::CopyFetched {
            path,
            fetched: true,
        } => vec![Effect::MarkBackupOnDisk {
            server: server.to_string(),
            path: path.clone(),
        }],
        // A delete run again after its files went made no backup: nothing to record.
        // A file found still there is the backup's own, where it was recorded.
        StepOutput::BackupSkipped { .. }
        | StepOutput::CopyFetched { fetched: false, .. }
        | StepOutput::Done
        | StepOutput::Noop { .. }
        | StepOutput::Reloaded { .. }
        | StepOutput::BackupExtracted { .. }
        | StepOutput::Records { .. } => Vec::new(),
    }
}

/// A task that ended, as its end's effects need it.
#[derive(Debug, Clone, Copy)]
pub struct Ended<'a> {
    pub kind: TargetKind,
    pub task_type: TaskType,
    pub target: &'a str,
    pub args: &'a TaskArgs,
    /// It succeeded (with or without warnings).
    pub ok: bool,
    /// The target site's status now, when the target is a site that exists.
    pub site_status: Option<&'a str>,
}

/// What a finished task changes in the state of its platform or site, and a line for the
/// task's log.
pub fn of_finish(t: Ended<'_>) -> (Vec<Effect>, Option<String>) {
    let target = t.target.to_string();
    match (t.kind, t.task_type, t.args) {
        (TargetKind::Platform, TaskType::Verify, _) => {
            let status = if t.ok { "verified" } else { "failed" };
            (
                vec![Effect::PlatformStatus {
                    platform: target,
                    status,
                }],
                Some(format!("platform {}: {status}", t.target)),
            )
        }
        (TargetKind::Site, TaskType::Clone, TaskArgs::Clone(c)) => {
            // A clone ends its new site's install: enabled, or failed (nothing left of it).
            let status = if t.ok {
                site_status::ENABLED
            } else {
                site_status::FAILED
            };
            (
                vec![Effect::SiteStatus {
                    site: c.new_site.clone(),
                    status,
                }],
                Some(format!("site {} (the clone): {status}", c.new_site)),
            )
        }
        (TargetKind::Site, _, _) if t.site_status.is_some() => site_end(t),
        _ => (Vec::new(), None),
    }
}

fn site_end(t: Ended<'_>) -> (Vec<Effect>, Option<String>) {
    let site = t.target.to_string();
    let status = |status: &'static str| {
        (
            vec![Effect::SiteStatus {
                site: site.clone(),
                status,
            }],
            Some(format!("site {site}: {status}")),
        )
    };
    match (t.task_type, t.ok, t.args) {
        (TaskType::Install, true, _) => status(site_status::ENABLED),
        // Only an install that ran fails the site: one refused at planning (the site was
        // already installed, say) leaves it as it was.
        (TaskType::Install, false, _) if t.site_status == Some(site_status::INSTALLING) => {
            status(site_status::FAILED)
        }
        (TaskType::Cron, ok, _) => (
            vec![Effect::RecordCron {
                site: site.clone(),
                ok,
            }],
            Some(format!(
                "site {site}: cron {}",
                if ok { "succeeded" } else { "failed" }
            )),
        ),
        (TaskType::Disable, true, _) => status(site_status::DISABLED),
        (TaskType::Enable, true, _) => status(site_status::ENABLED),
        (TaskType::Suspend | TaskType::Unsuspend, true, _) => {
            let suspended = t.task_type == TaskType::Suspend;
            (
                vec![Effect::SetSuspended {
                    site: site.clone(),
                    suspended,
                }],
                Some(format!(
                    "site {site} {}",
                    if suspended {
                        "suspended: it serves the \"site suspended\" page"
                    } else {
                        "unsuspended: it serves as it did before"
                    }
                )),
            )
        }
        (TaskType::Delete, true, _) => {
            let (mut effects, note) = status(site_status::DELETED);
            // The row and its history stay; its aliases are free for other sites.
            effects.insert(0, Effect::ClearAliases { site: site.clone() });
            (effects, note)
        }
        (TaskType::Migrate, true, TaskArgs::Migrate(m)) => {
            let mut effects = vec![
                Effect::MoveDatabase {
                    site: site.clone(),
                    db: m.next_db.clone(),
                },
                Effect::SetHome {
                    site: site.clone(),
                    platform: m.to.platform.clone(),
                    db_server: m.to.db_server.clone(),
                },
            ];
            let renamed = m.to.uri != site;
            if renamed {
                effects.push(Effect::Rename {
                    from: site.clone(),
                    to: m.to.uri.clone(),
                });
            }
            let note = format!(
                "site {site}: now {}on {} with database {} on {}",
                if renamed {
                    format!("{}, ", m.to.uri)
                } else {
                    String::new()
                },
                m.to.platform,
                m.next_db.name,
                m.to.db_server,
            );
            (effects, Some(note))
        }
        (TaskType::Restore, true, TaskArgs::Restore(r)) => (
            vec![Effect::MoveDatabase {
                site: site.clone(),
                db: r.next_db.clone(),
            }],
            Some(format!(
                "site {site}: restored; it now uses database {}",
                r.next_db.name
            )),
        ),
        _ => (Vec::new(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::fixtures::site;
    use berth_contracts::steps::{
        BackupOrder, Compression, HttpStep, PackagesSpec, SiteBackupSpec,
    };
    use berth_contracts::task::{MigrateTask, MigrateTo};

    fn order() -> BackupOrder {
        BackupOrder {
            file: "f".into(),
            compression: Compression::Zstd,
            description: "Generated on request".into(),
        }
    }

    #[test]
    fn a_backup_step_records_its_backup_with_the_tasks_description() {
        let work = Work::Backup(BackupStep::SiteBackup(Box::new(SiteBackupSpec {
            site: site("enabled", "null").spec(false),
            backup: order(),
            files_may_be_gone: false,
        })));
        let made = BackupMade {
            file: "f".into(),
            path: "/b/f.tar.zst".into(),
            size: 10,
            sha256: "00".into(),
            compression: Compression::Zstd,
        };
        let task = TaskRef {
            task_type: TaskType::Backup,
            target: "www.example.com",
        };
        let e = of_step(
            task,
            "server_master",
            &work,
            &StepOutput::BackupMade(made.clone()),
        );
        assert_eq!(
            e,
            [Effect::RecordBackup {
                site: "www.example.com".into(),
                server: "server_master".into(),
                made,
                description: "Generated on request".into(),
            }]
        );
        let skipped = StepOutput::BackupSkipped {
            reason: "gone".into(),
        };
        assert!(of_step(task, "server_master", &work, &skipped).is_empty());
    }

    #[test]
    fn an_upload_records_its_copy_and_a_copy_delete_marks_it() {
        use berth_contracts::steps::{BackupSource, TargetSpec, UploadSpec};
        let target = TargetSpec {
            name: "offsite".into(),
            endpoint: "http://127.0.0.1:9000".into(),
            bucket: "b".into(),
            region: "us-east-1".into(),
            access_key_id: "k".into(),
        };
        let work = Work::Backup(BackupStep::Upload(UploadSpec {
            target,
            source: BackupSource::File("f".into()),
            key: "p/www.example.com/f.tar.zst".into(),
            sha256: None,
        }));
        let task = TaskRef {
            task_type: TaskType::Backup,
            target: "www.example.com",
        };
        let copy = CopyMade {
            target: "offsite".into(),
            key: "p/www.example.com/f.tar.zst".into(),
            path: "/b/f.tar.zst".into(),
            size: 10,
            sha256: "00".into(),
        };
        assert_eq!(
            of_step(
                task,
                "server_web",
                &work,
                &StepOutput::CopyMade(copy.clone())
            ),
            [Effect::RecordCopy {
                server: "server_web".into(),
                copy
            }]
        );
        let deleted = StepOutput::CopyDeleted {
            target: "offsite".into(),
            key: "k".into(),
        };
        assert_eq!(
            of_step(task, "server_web", &work, &deleted),
            [Effect::MarkCopyDeleted {
                target: "offsite".into(),
                key: "k".into()
            }]
        );
        // A file fetched back is on disk again; one found there changes nothing.
        let fetched = |fetched| StepOutput::CopyFetched {
            path: "/b/f.tar.zst".into(),
            fetched,
        };
        assert_eq!(
            of_step(task, "server_web", &work, &fetched(true)),
            [Effect::MarkBackupOnDisk {
                server: "server_web".into(),
                path: "/b/f.tar.zst".into()
            }]
        );
        assert_eq!(of_step(task, "server_web", &work, &fetched(false)), []);
    }

    #[test]
    fn packages_and_links_go_to_the_site_the_step_acted_on() {
        let mut copy = site("installing", "null");
        copy.uri = "copy.example.com".into();
        let work = Work::Http(HttpStep::SitePackages(PackagesSpec {
            site: copy.spec(false),
            login: true,
        }));
        let out = StepOutput::SitePackages {
            packages: vec![],
            login_link: Some("http://copy.example.com/user/reset/1/2/h/login".into()),
        };
        let clone = TaskRef {
            task_type: TaskType::Clone,
            target: "www.example.com",
        };
        let e = of_step(clone, "server_master", &work, &out);
        assert!(
            e.iter()
                .all(|e| matches!(e, Effect::RecordPackages { site, .. } | Effect::SetLoginLink { site, .. } if site == "copy.example.com"))
        );
        assert_eq!(e.len(), 2);
        // A migrate to a new uri: the row keeps its old name until the task ends.
        let migrate = TaskRef {
            task_type: TaskType::Migrate,
            target: "www.example.com",
        };
        let e = of_step(migrate, "server_master", &work, &out);
        assert!(matches!(&e[0], Effect::RecordPackages { site, .. } if site == "www.example.com"));
    }

    #[test]
    fn measures_are_recorded_on_the_site_and_an_unknown_db_size_records_nothing() {
        let s = site("enabled", "null");
        let task = TaskRef {
            task_type: TaskType::Usage,
            target: "www.example.com",
        };
        let files = Work::Http(HttpStep::SiteUsage(s.spec_as_is()));
        let usage = berth_contracts::steps::FilesUsage {
            bytes: 8192,
            entries: 2,
            complete: false,
        };
        assert_eq!(
            of_step(task, "w", &files, &StepOutput::FilesMeasured(usage)),
            [Effect::RecordFilesUsage {
                site: "www.example.com".into(),
                usage
            }]
        );
        let db = Work::Db(berth_contracts::steps::DbStep::SiteDbUsage(s.spec_as_is()));
        assert_eq!(
            of_step(
                task,
                "d",
                &db,
                &StepOutput::DbMeasured { bytes: Some(49152) }
            ),
            [Effect::RecordDbUsage {
                site: "www.example.com".into(),
                bytes: 49152
            }]
        );
        assert_eq!(
            of_step(task, "d", &db, &StepOutput::DbMeasured { bytes: None }),
            []
        );
    }

    fn ended<'a>(t: TaskType, args: &'a TaskArgs, ok: bool, status: &'a str) -> Ended<'a> {
        Ended {
            kind: TargetKind::Site,
            task_type: t,
            target: "www.example.com",
            args,
            ok,
            site_status: Some(status),
        }
    }

    #[test]
    fn a_site_task_sets_the_sites_status_by_type_and_result() {
        let none = TaskArgs::None;
        let to = |e: (Vec<Effect>, Option<String>)| {
            e.0.iter().find_map(|e| match e {
                Effect::SiteStatus { status, .. } => Some(*status),
                _ => None,
            })
        };
        assert_eq!(
            to(of_finish(ended(
                TaskType::Install,
                &none,
                true,
                "installing"
            ))),
            Some("enabled")
        );
        assert_eq!(
            to(of_finish(ended(
                TaskType::Install,
                &none,
                false,
                "installing"
            ))),
            Some("failed")
        );
        // An install refused at planning leaves an installed site as it was.
        assert_eq!(
            to(of_finish(ended(TaskType::Install, &none, false, "enabled"))),
            None
        );
        assert_eq!(
            to(of_finish(ended(TaskType::Disable, &none, true, "enabled"))),
            Some("disabled")
        );
        assert_eq!(
            to(of_finish(ended(TaskType::Disable, &none, false, "enabled"))),
            None
        );
        assert_eq!(
            to(of_finish(ended(TaskType::Enable, &none, true, "disabled"))),
            Some("enabled")
        );
        let (e, _) = of_finish(ended(TaskType::Delete, &none, true, "disabled"));
        assert!(matches!(e[0], Effect::ClearAliases { .. }));
        assert_eq!(to((e, None)), Some("deleted"));
        assert_eq!(
            to(of_finish(ended(TaskType::Verify, &none, true, "enabled"))),
            None
        );
    }

    #[test]
    fn a_cron_records_its_result_and_a_key_step_marks_the_key_given() {
        let none = TaskArgs::None;
        for ok in [true, false] {
            let (e, note) = of_finish(ended(TaskType::Cron, &none, ok, "enabled"));
            assert_eq!(
                e,
                [Effect::RecordCron {
                    site: "www.example.com".into(),
                    ok
                }]
            );
            assert!(
                note.unwrap()
                    .contains(if ok { "succeeded" } else { "failed" })
            );
        }
        let work = Work::Http(HttpStep::SiteCronKey(site("enabled", "null").spec(false)));
        let task = TaskRef {
            task_type: TaskType::Cron,
            target: "www.example.com",
        };
        assert_eq!(
            of_step(task, "server_master", &work, &StepOutput::Done),
            [Effect::CronKeyGiven {
                site: "www.example.com".into()
            }]
        );
    }

    #[test]
    fn a_migrate_moves_the_site_and_renames_it_when_asked() {
        let args = TaskArgs::Migrate(MigrateTask {
            to: MigrateTo {
                platform: "platform_b".into(),
                db_server: "server_master".into(),
                uri: "new.example.com".into(),
            },
            backup: order(),
            next_db: berth_contracts::task::DbNames {
                name: "n".into(),
                user: "n".into(),
            },
        });
        let (e, note) = of_finish(ended(TaskType::Migrate, &args, true, "enabled"));
        assert!(matches!(&e[0], Effect::MoveDatabase { db, .. } if db.name == "n"));
        assert!(matches!(&e[1], Effect::SetHome { platform, .. } if platform == "platform_b"));
        assert!(matches!(&e[2], Effect::Rename { to, .. } if to == "new.example.com"));
        assert_eq!(
            note.unwrap(),
            "site www.example.com: now new.example.com, on platform_b with database n on server_master"
        );
        // A failed migrate changes nothing: the site serves where it was.
        assert!(
            of_finish(ended(TaskType::Migrate, &args, false, "enabled"))
                .0
                .is_empty()
        );
    }

    #[test]
    fn a_platform_verify_marks_the_platform() {
        let none = TaskArgs::None;
        let t = Ended {
            kind: TargetKind::Platform,
            task_type: TaskType::Verify,
            target: "platform_x",
            args: &none,
            ok: false,
            site_status: None,
        };
        assert_eq!(
            of_finish(t).0,
            [Effect::PlatformStatus {
                platform: "platform_x".into(),
                status: "failed"
            }]
        );
    }
}
