//! Migrating a site to another platform, db server and/or uri on the same web server.

use super::backup::backup_step;
use super::deploy::{deploy_steps, finish_steps, maintenance_step};
use super::{Plan, PlannedStep};
use crate::facts::{PlatformFacts, ServerFacts, SiteFacts};
use crate::sites::{check_status, restore_dir, status};
use berth_contracts::TaskType;
use berth_contracts::steps::{BackupSource, CleanupSpec, DnsStep, SiteDbSecret};
use berth_contracts::task::MigrateTask;

/// A migrate, in the steps of a restore: maintenance, a backup, the target database, the
/// backup unpacked into the target platform and imported, the swap, `updatedb` (the
/// upgrade), the vhost pointing at the new codebase and database, the package map; then
/// the old database dropped and the old copy removed, once everything else has succeeded.
/// A failure before puts it all back.
pub fn plan_migrate(
    s: &SiteFacts,
    to_platform: &PlatformFacts,
    to_db: &ServerFacts,
    a: &MigrateTask,
) -> Result<Plan, String> {
    check_status(TaskType::Migrate, &s.uri, &s.status)?;
    if to_platform.web_server.name != s.platform.web_server.name {
        return Err(format!(
            "platform `{}` is on another web server ({}); moving between web servers is not built yet",
            to_platform.name, to_platform.web_server.name
        ));
    }
    let web = s.web();
    let disabled = s.status == status::DISABLED;
    let mut spec = s.spec(disabled);
    spec.stash = true;
    let new_uri = Some(a.to.uri.as_str()).filter(|u| *u != s.uri);
    let target = SiteFacts {
        uri: new_uri.unwrap_or(&s.uri).to_string(),
        platform: to_platform.clone(),
        db_server: to_db.clone(),
        db_name: a.next_db.name.clone(),
        db_user: a.next_db.user.clone(),
        ..s.clone()
    };
    let mut next = target.spec(disabled);
    next.stash = true;
    let new_dir = restore_dir(&to_platform.root, &target.uri);
    let (deploy, swap) = deploy_steps(
        web,
        &to_db.name,
        &next,
        BackupSource::File(a.backup.file.clone()),
        &new_dir,
        new_uri.map(|_| s.uri.as_str()),
        SiteDbSecret::Next,
    );
    let cleanup = CleanupSpec {
        swap,
        old_root: (to_platform.root != s.platform.root || new_uri.is_some())
            .then(|| s.platform.root.clone()),
        old_uri: new_uri.map(|_| s.uri.clone()),
    };
    let mut steps = vec![
        maintenance_step(web, &spec),
        backup_step(s, &a.backup, false),
    ];
    steps.extend(deploy);
    if new_uri.is_some() && s.dns_managed() {
        // The old name's records go first (its aliases' CNAMEs are the site's), then the
        // new name's come; both are undone on a failure.
        steps.push(
            PlannedStep::dns(web, DnsStep::SiteRecordsRemove(spec.clone()))
                .undo(DnsStep::SiteRecords(spec.clone())),
        );
        steps.push(
            PlannedStep::dns(web, DnsStep::SiteRecords(next.clone()))
                .undo(DnsStep::SiteRecordsRemove(next.clone())),
        );
    }
    steps.extend(finish_steps(s, &spec, &next, cleanup));
    Ok(Plan { steps })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::fixtures::site;
    use berth_contracts::Work;
    use berth_contracts::steps::{BackupOrder, BackupStep, Compression, HttpStep};
    use berth_contracts::task::{DbNames, MigrateTo};

    fn task(uri: &str) -> MigrateTask {
        MigrateTask {
            to: MigrateTo {
                platform: "platform_d10b".into(),
                db_server: "server_master".into(),
                uri: uri.into(),
            },
            backup: BackupOrder {
                file: "f1".into(),
                compression: Compression::Zstd,
                description: "before migrate".into(),
            },
            next_db: DbNames {
                name: "wwwexamplecom_eeeeee".into(),
                user: "wwwexamplecom_eeeeee".into(),
            },
        }
    }

    #[test]
    fn a_migrate_deploys_into_the_target_and_removes_the_old_copy_last() {
        let s = site("enabled", "null");
        let mut to = s.platform.clone();
        to.name = "platform_d10b".into();
        to.root = "/var/aegir/platforms/d10b".into();
        let p = plan_migrate(&s, &to, &s.db_server, &task("www.example.com")).unwrap();
        let Work::Backup(BackupStep::BackupExtract(x)) = &p.steps[3].work else {
            panic!("{:?}", p.steps[3].work)
        };
        assert_eq!(x.source, BackupSource::File("f1".into()));
        assert_eq!(
            x.target_dir,
            "/var/aegir/platforms/d10b/sites/www.example.com.berth-new"
        );
        assert_eq!(
            p.steps[6].work.site().unwrap().root,
            "/var/aegir/platforms/d10b"
        );
        assert_eq!(
            p.steps[8].work.site().unwrap().db.name,
            "wwwexamplecom_abc123"
        );
        let Work::Http(HttpStep::SiteCleanup(c)) = &p.steps[9].work else {
            panic!()
        };
        assert_eq!(c.old_root.as_deref(), Some("/var/aegir/platforms/d10"));
        assert_eq!(c.old_uri, None);
        let mut elsewhere = to.clone();
        elsewhere.web_server.name = "server_web2".into();
        assert!(plan_migrate(&s, &elsewhere, &s.db_server, &task("www.example.com")).is_err());
    }

    #[test]
    fn a_migrate_to_a_new_uri_moves_the_records_and_takes_them_back_on_failure() {
        let s = site("enabled", "bind");
        let p = plan_migrate(&s, &s.platform, &s.db_server, &task("new.example.com")).unwrap();
        let dns: Vec<_> = p
            .steps
            .iter()
            .filter(|st| matches!(st.work, Work::Dns(_)))
            .map(|st| (st.action(), st.work.site().unwrap().uri.as_str()))
            .collect();
        assert_eq!(
            dns,
            [
                ("site-records-remove", "www.example.com"),
                ("site-records", "new.example.com")
            ]
        );
        let Work::Http(HttpStep::SiteCleanup(c)) = &p.steps.last().unwrap().work else {
            panic!()
        };
        assert_eq!(c.old_uri.as_deref(), Some("www.example.com"));
        assert_eq!(c.swap.renamed_from.as_deref(), Some("www.example.com"));
    }
}
