//! Cloning a site to a new uri, with its own database and user.

use super::backup::backup_step;
use super::deploy::{deploy_steps, records_then_packages};
use super::{Plan, PlannedStep};
use crate::facts::SiteFacts;
use crate::sites::{check_status, restore_dir};
use berth_contracts::steps::{BackupSource, CleanupSpec, HttpStep, PackagesSpec, SiteDbSecret};
use berth_contracts::task::CloneTask;
use berth_contracts::{SecretNeeds, TaskType};

/// A clone: a backup of the site, deployed as the new site `n` (its own database and user,
/// on its platform and db server), verified. The site itself is only read. A failure takes
/// back everything made for the new site, which is then marked failed.
pub fn plan_clone(s: &SiteFacts, n: &SiteFacts, a: &CloneTask) -> Result<Plan, String> {
    check_status(TaskType::Clone, &s.uri, &s.status)?;
    if n.platform.web_server.name != s.platform.web_server.name {
        return Err(format!(
            "platform `{}` is on another web server ({}); cloning between web servers is not built yet",
            n.platform.name, n.platform.web_server.name
        ));
    }
    let web = s.web();
    let mut spec = n.spec(false);
    spec.stash = true;
    let new_dir = restore_dir(&n.platform.root, &n.uri);
    let (deploy, swap) = deploy_steps(
        web,
        &n.db_server.name,
        &spec,
        BackupSource::File(a.backup.file.clone()),
        &new_dir,
        Some(&s.uri),
        SiteDbSecret::Next,
    );
    let mut steps = vec![backup_step(s, &a.backup, false)];
    steps.extend(deploy);
    steps.extend(records_then_packages(
        n.dns_managed(),
        web,
        &spec,
        SecretNeeds::SITE_DB_NEXT,
    ));
    // The site cloned from is verified too: it was only read, and should say so.
    steps.push(
        PlannedStep::http(
            web,
            HttpStep::SitePackages(PackagesSpec {
                site: s.spec_as_is(),
                login: false,
            }),
        )
        .secrets(SecretNeeds::SITE_DB),
    );
    steps.push(PlannedStep::http(
        web,
        HttpStep::SiteCleanup(CleanupSpec {
            swap,
            old_root: None,
            old_uri: None,
        }),
    ));
    Ok(Plan { steps })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::fixtures::site;
    use berth_contracts::steps::{BackupOrder, Compression};
    use berth_contracts::task::CloneTo;

    #[test]
    fn a_clone_deploys_the_new_site_and_only_reads_the_old_one() {
        let s = site("enabled", "bind");
        let mut n = site("installing", "bind");
        n.uri = "copy.example.com".into();
        n.db_name = "copyexamplecom_aaaaaa".into();
        n.db_user = n.db_name.clone();
        let a = CloneTask {
            new_site: n.uri.clone(),
            to: CloneTo {
                platform: n.platform.name.clone(),
                db_server: n.db_server.name.clone(),
            },
            backup: BackupOrder {
                file: "f".into(),
                compression: Compression::Zstd,
                description: "Generated for cloning".into(),
            },
        };
        let p = plan_clone(&s, &n, &a).unwrap();
        let on: Vec<(&str, &str)> = p
            .steps
            .iter()
            .map(|st| (st.action(), st.work.site().map_or("-", |x| x.uri.as_str())))
            .collect();
        assert_eq!(
            on,
            [
                ("site-backup", "www.example.com"),
                ("site-db-create", "copy.example.com"),
                ("backup-extract", "-"),
                ("site-swap", "copy.example.com"),
                ("site-updatedb", "copy.example.com"),
                ("site-vhost", "copy.example.com"),
                ("site-records", "copy.example.com"),
                ("site-packages", "copy.example.com"),
                ("site-packages", "www.example.com"),
                ("site-cleanup", "copy.example.com"),
            ]
        );
        // Nothing the clone does to the old site needs taking back: it is only read.
        for st in &p.steps {
            if st.work.site().is_some_and(|x| x.uri == s.uri) {
                assert!(st.undo.is_none(), "{}", st.action());
            }
        }
    }
}
