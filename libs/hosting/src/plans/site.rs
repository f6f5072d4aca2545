//! A site's life on its platform: install, verify, disable, enable and login reset.

use super::cron::key_step;
use super::deploy::records_then_packages;
use super::{Plan, PlannedStep};
use crate::facts::SiteFacts;
use berth_contracts::steps::{DbStep, DnsStep, HttpStep, PackagesSpec};
use berth_contracts::{SecretNeeds, TaskType};

/// The plan of one of this family's tasks (the site's status was checked by the caller).
pub(super) fn plan(task_type: TaskType, s: &SiteFacts) -> Result<Plan, String> {
    let web = s.web();
    let db_server = s.db_server.name.as_str();
    let steps = match task_type {
        TaskType::Install => {
            if s.db_server.managed_db().is_none() {
                return Err(format!("db server `{db_server}` has no managed db service"));
            }
            let spec = s.spec(false);
            let mut steps = vec![
                PlannedStep::db(db_server, DbStep::SiteDbCreate(spec.clone()))
                    .undo(DbStep::SiteDbDrop(spec.clone()))
                    .secrets(SecretNeeds::DB_ADMIN_AND_SITE_DB),
                PlannedStep::http(web, HttpStep::SiteFiles(spec.clone()))
                    .undo(HttpStep::SiteFilesRemove(spec.clone())),
                PlannedStep::http(web, HttpStep::SiteInstall(spec.clone()))
                    .secrets(SecretNeeds::SITE_DB),
                key_step(web, s),
                PlannedStep::http(web, HttpStep::SiteVhost(spec.clone()))
                    .undo(HttpStep::SiteVhostRemove(spec.clone()))
                    .secrets(SecretNeeds::SITE_DB),
            ];
            steps.extend(records_then_packages(
                s.dns_managed(),
                web,
                &spec,
                SecretNeeds::SITE_DB,
            ));
            steps
        }
        TaskType::Verify => {
            let spec = s.spec_as_is();
            let mut steps = Vec::new();
            if s.db_server.managed_db().is_some() {
                // The user's grants as they must be: its own database only.
                steps.push(
                    PlannedStep::db(db_server, DbStep::SiteDbGrant(spec.clone()))
                        .secrets(SecretNeeds::DB_ADMIN),
                );
            }
            steps.push(PlannedStep::http(web, HttpStep::SiteFiles(spec.clone())));
            steps.push(
                PlannedStep::http(web, HttpStep::SiteVhost(spec.clone()))
                    .secrets(SecretNeeds::SITE_DB),
            );
            if s.dns_managed() {
                steps.push(PlannedStep::dns(web, DnsStep::SiteRecords(spec.clone())));
            }
            // The cron key again: a site installed before berth made keys gets one.
            steps.push(key_step(web, s));
            steps.push(
                PlannedStep::http(
                    web,
                    HttpStep::SitePackages(PackagesSpec {
                        site: spec,
                        login: false,
                    }),
                )
                .secrets(SecretNeeds::SITE_DB),
            );
            // Last: a measure is of the site as verify left it.
            steps.extend(usage_steps(s));
            steps
        }
        TaskType::Usage => usage_steps(s),
        TaskType::Disable | TaskType::Enable => {
            let spec = s.spec(task_type == TaskType::Disable);
            vec![PlannedStep::http(web, HttpStep::SiteVhost(spec)).secrets(SecretNeeds::SITE_DB)]
        }
        // The vhost as the site's status has it, with or without the suspended page: an
        // unsuspended site comes back as it was (enabled, or its disabled page).
        TaskType::Suspend | TaskType::Unsuspend => {
            let mut spec = s.spec_as_is();
            spec.suspended = task_type == TaskType::Suspend;
            vec![PlannedStep::http(web, HttpStep::SiteVhost(spec)).secrets(SecretNeeds::SITE_DB)]
        }
        TaskType::LoginReset => vec![
            PlannedStep::http(web, HttpStep::SiteLogin(s.spec(false)))
                .secrets(SecretNeeds::SITE_DB),
        ],
        other => return Err(format!("{} is not planned here", other.as_str())),
    };
    Ok(Plan { steps })
}

/// The two measures: the site's directory on its web server, its database on its db
/// server (when berth manages that server's database service).
fn usage_steps(s: &SiteFacts) -> Vec<PlannedStep> {
    let spec = s.spec_as_is();
    let mut steps = vec![PlannedStep::http(
        s.web(),
        HttpStep::SiteUsage(spec.clone()),
    )];
    if s.db_server.managed_db().is_some() {
        steps.push(
            PlannedStep::db(&s.db_server.name, DbStep::SiteDbUsage(spec))
                .secrets(SecretNeeds::DB_ADMIN),
        );
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::super::plan_site_task;
    use super::super::test_support::{actions, undos};
    use crate::facts::fixtures::site;
    use berth_contracts::steps::{HttpStep, PackagesSpec};
    use berth_contracts::{SecretNeeds, Service, TaskArgs, TaskType, Work};

    fn plan(t: TaskType, status: &str, dns: &str) -> Result<super::Plan, String> {
        plan_site_task(t, &site(status, dns), &TaskArgs::None)
    }

    #[test]
    fn install_creates_in_order_and_can_take_each_effect_back() {
        let p = plan(TaskType::Install, "installing", "bind").unwrap();
        assert_eq!(
            actions(&p),
            [
                "site-db-create",
                "site-files",
                "site-install",
                "site-cron-key",
                "site-vhost",
                "site-records",
                "site-packages"
            ]
        );
        assert_eq!(
            undos(&p),
            [
                Some("site-db-drop"),
                Some("site-files-remove"),
                None,
                None,
                Some("site-vhost-remove"),
                Some("site-records-remove"),
                None
            ]
        );
        assert_eq!(p.steps[0].service(), Service::Db);
        assert_eq!(p.steps[0].secrets, SecretNeeds::DB_ADMIN_AND_SITE_DB);
        let spec = p.steps[0].work.site().unwrap();
        assert_eq!(spec.db.grant_hosts, ["localhost", "127.0.0.1"]);
        assert!(matches!(
            &p.steps[6].work,
            Work::Http(HttpStep::SitePackages(PackagesSpec { login: true, .. }))
        ));
        // No bind on the web server: no records step.
        let p = plan(TaskType::Install, "installing", "null").unwrap();
        assert!(!actions(&p).contains(&"site-records"));
    }

    #[test]
    fn a_disable_backs_the_site_up_first() {
        let fresh = crate::fresh::Fresh::new();
        let args = TaskArgs::Disable(berth_contracts::task::BackupTask {
            backup: fresh.backup(
                "a.test",
                berth_contracts::steps::Compression::Zstd,
                "Generated before being disabled",
            ),
            targets: Vec::new(),
        });
        let p = plan_site_task(TaskType::Disable, &site("enabled", "null"), &args).unwrap();
        assert_eq!(actions(&p), ["site-backup", "site-vhost"]);
        assert!(p.steps[1].work.site().unwrap().disabled);
    }

    #[test]
    fn tasks_need_the_site_in_the_right_state() {
        assert!(plan(TaskType::Install, "enabled", "null").is_err());
        assert!(plan(TaskType::Enable, "enabled", "null").is_err());
        let p = plan(TaskType::Disable, "enabled", "null").unwrap();
        assert_eq!(actions(&p), ["site-vhost"]);
        assert!(p.steps[0].work.site().unwrap().disabled);
        let p = plan(TaskType::Enable, "disabled", "null").unwrap();
        assert!(!p.steps[0].work.site().unwrap().disabled);
        // Verify keeps a disabled site disabled.
        let p = plan(TaskType::Verify, "disabled", "bind").unwrap();
        assert_eq!(
            actions(&p),
            [
                "site-db-grant",
                "site-files",
                "site-vhost",
                "site-records",
                "site-cron-key",
                "site-packages",
                "site-usage",
                "site-db-usage"
            ]
        );
        assert!(p.steps[2].work.site().unwrap().disabled);
        // A usage task measures only, and on a disabled site too.
        let p = plan(TaskType::Usage, "disabled", "bind").unwrap();
        assert_eq!(actions(&p), ["site-usage", "site-db-usage"]);
        assert_eq!(p.steps[0].service(), Service::Http);
        assert_eq!(
            (p.steps[1].service(), p.steps[1].secrets),
            (Service::Db, SecretNeeds::DB_ADMIN)
        );
        assert!(plan(TaskType::Usage, "installing", "null").is_err());
        let err = plan(TaskType::LoginReset, "disabled", "null").unwrap_err();
        assert!(err.contains("disabled"), "{err}");
    }
}
