//! A restore drill: a backup restored into a throwaway site beside the site, checked over
//! HTTP, then removed. Composed of the deploy steps restore and clone use and the removal
//! steps of a delete.

use super::deploy::deploy_steps;
use super::{Plan, PlannedStep};
use crate::drills::DrillFacts;
use crate::facts::SiteFacts;
use crate::offsite::CopyFacts;
use crate::sites::{check_status, restore_dir};
use berth_contracts::steps::{
    BackupSource, CleanupSpec, DbStep, DrillCheckSpec, HttpStep, SiteDbSecret, SiteSpec,
};
use berth_contracts::{SecretNeeds, TaskType};

/// The drill site: the site's spec on the same platform, web server and db server, under
/// the drill's name, database and unix user, with no aliases (nothing of the site's
/// names) and no DNS records (no records step is planned).
pub fn drill_spec(s: &SiteFacts, d: &DrillFacts) -> SiteSpec {
    let mut spec = s.spec(false);
    spec.uri = d.uri.clone();
    spec.aliases.clear();
    spec.redirection = false;
    spec.client_email = None;
    spec.suspended = false;
    spec.db.name = d.db.name.clone();
    spec.db.user = d.db.user.clone();
    spec.unix_uid = d.unix_uid;
    spec
}

/// The deploy of a restore into the drill site (its database, the backup unpacked and
/// imported, the swap, `updatedb`, the vhost and pool), each step taken back by the
/// dispatcher if a later one fails — the check included, so a failed drill leaves nothing;
/// then the check, and after it the removal of everything the deploy made.
/// `copies`: the backup's live copies; when it has one, its file is fetched back first if
/// it was pruned (kept only off-site).
pub fn plan_drill(s: &SiteFacts, d: &DrillFacts, copies: &[CopyFacts]) -> Result<Plan, String> {
    check_status(TaskType::Drill, &s.uri, &s.status)?;
    let web = s.web();
    if d.backup.server != web {
        return Err(format!(
            "backup {} is on server `{}`, not on the site's web server `{web}`",
            d.backup.id, d.backup.server
        ));
    }
    let mut spec = drill_spec(s, d);
    // The vhost step keeps "there was none", so that its compensation removes the vhost
    // and the pool (as for a clone's new site).
    spec.stash = true;
    let new_dir = restore_dir(&s.platform.root, &spec.uri);
    let (mut steps, swap) = deploy_steps(
        web,
        &s.db_server.name,
        &spec,
        BackupSource::Path(d.backup.path.clone()),
        &new_dir,
        Some(&s.uri),
        SiteDbSecret::Drill,
    );
    if let Some(c) = copies.first() {
        steps.insert(0, super::restore::fetch_step(web, c, &d.backup.path));
    }
    steps.push(PlannedStep::http(
        web,
        HttpStep::SiteDrillCheck(Box::new(DrillCheckSpec {
            drill: spec.clone(),
            original: s.spec_as_is(),
            backup: d.backup.id,
        })),
    ));
    let mut gone = spec;
    gone.stash = false;
    steps.extend([
        // Drops what the vhost step kept, so no file passes to the pool when it goes.
        PlannedStep::http(
            web,
            HttpStep::SiteCleanup(CleanupSpec {
                swap,
                old_root: None,
                old_uri: None,
            }),
        ),
        PlannedStep::http(web, HttpStep::SiteVhostRemove(gone.clone())),
        PlannedStep::http(web, HttpStep::SiteFilesRemove(gone.clone())),
        PlannedStep::db(&s.db_server.name, DbStep::SiteDbDrop(gone)).secrets(SecretNeeds::DB_ADMIN),
    ]);
    Ok(Plan { steps })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drills::{DEFAULT_DRILL_DOMAIN, DrillBackup, drill_facts};
    use crate::facts::fixtures::site;
    use crate::plans::test_support::{actions, undos};
    use berth_contracts::Work;
    use berth_contracts::steps::{BackupStep, SiteDbSecret};

    fn drill() -> DrillFacts {
        drill_facts(
            "0193a0b2-7c4d-7e5f-8a9b-0c1d2e3f4a5b".parse().unwrap(),
            DEFAULT_DRILL_DOMAIN,
            200_777,
            DrillBackup {
                id: uuid::Uuid::nil(),
                path: "/var/lib/berth/backups/www.example.com-x.tar.zst".into(),
                server: "server_master".into(),
            },
        )
    }

    #[test]
    fn a_drill_deploys_checks_and_removes_its_own_site_only() {
        let s = site("enabled", "bind");
        let p = plan_drill(&s, &drill(), &[]).unwrap();
        assert_eq!(
            actions(&p),
            [
                "site-db-create",
                "backup-extract",
                "site-swap",
                "site-updatedb",
                "site-vhost",
                "site-drill-check",
                "site-cleanup",
                "site-vhost-remove",
                "site-files-remove",
                "site-db-drop",
            ]
        );
        // Everything made before the check is taken back if the check (or anything) fails.
        assert_eq!(
            undos(&p)[..6],
            [
                Some("site-db-drop"),
                Some("backup-extract-remove"),
                Some("site-swap-back"),
                None,
                Some("site-vhost-restore"),
                None,
            ]
        );
        // No DNS, and every site step acts on the drill site, never on the site itself:
        // its name, database and uid are the drill's, with none of the site's aliases.
        for st in &p.steps {
            assert_ne!(st.service(), berth_contracts::Service::Dns);
            for w in std::iter::once(&st.work).chain(st.undo.as_ref()) {
                if let Some(x) = w.site() {
                    assert_eq!(x.uri, "drill-0c1d2e3f4a5b.drill.berth.invalid");
                    assert_eq!(x.db.name, "drill_0c1d2e3f4a5b");
                    assert_eq!(x.unix_uid, 200_777);
                    assert!(x.aliases.is_empty());
                }
            }
        }
        let Work::Backup(BackupStep::BackupExtract(x)) = &p.steps[1].work else {
            panic!()
        };
        assert_eq!(
            x.target_dir,
            "/var/aegir/platforms/d10/sites/drill-0c1d2e3f4a5b.drill.berth.invalid.berth-new"
        );
        assert_eq!(x.db.name, "drill_0c1d2e3f4a5b");
        // The check compares with the site as it is.
        let Work::Http(HttpStep::SiteDrillCheck(c)) = &p.steps[5].work else {
            panic!()
        };
        assert_eq!(c.original.uri, "www.example.com");
        // The drill database's password is derived, never the site's own or a task secret.
        for st in &p.steps {
            assert_ne!(st.secrets.site_db, Some(SiteDbSecret::Current));
            assert_ne!(st.secrets.site_db, Some(SiteDbSecret::Next));
        }
        assert_eq!(p.steps[0].secrets, SecretNeeds::DB_ADMIN_AND_SITE_DB_DRILL);
        // Removal does not stash (nothing would take the stash away).
        let Work::Http(HttpStep::SiteVhostRemove(g)) = &p.steps[7].work else {
            panic!()
        };
        assert!(!g.stash);
    }

    #[test]
    fn a_drill_needs_an_enabled_site_and_its_backup_on_the_web_server() {
        assert!(plan_drill(&site("disabled", "null"), &drill(), &[]).is_err());
        let mut d = drill();
        d.backup.server = "server_other".into();
        let e = plan_drill(&site("enabled", "null"), &d, &[]).unwrap_err();
        assert!(e.contains("server_other"), "{e}");
    }

    #[test]
    fn a_drill_of_a_backup_with_a_copy_fetches_its_file_back_first_if_it_was_pruned() {
        let d = drill();
        let copy = CopyFacts {
            backup: d.backup.id,
            server: "server_master".into(),
            target: crate::offsite::TargetFacts {
                name: "vault".into(),
                endpoint: "http://127.0.0.1:9000".into(),
                bucket: "b".into(),
                prefix: "p".into(),
                region: "us-east-1".into(),
                access_key_id: "k".into(),
            },
            key: "p/www.example.com/x.tar.zst".into(),
            sha256: "ab".repeat(32),
        };
        let p = plan_drill(&site("enabled", "bind"), &d, &[copy]).unwrap();
        assert_eq!(actions(&p)[..2], ["backup-fetch", "site-db-create"]);
        let Work::Backup(BackupStep::Fetch(f)) = &p.steps[0].work else {
            panic!()
        };
        assert_eq!(f.path, d.backup.path);
        assert_eq!(p.steps[0].secrets, SecretNeeds::BACKUP_TARGET);
        // The fetch has nothing to take back: what it fetched is the backup's own file.
        assert_eq!(undos(&p)[0], None);
    }
}
