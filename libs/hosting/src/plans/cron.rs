//! A site's cron: by drush or over HTTP, as its platform says; a site whose database does
//! not hold its cron key yet (installed before berth made keys, or its database changed
//! since) is given it first.

use super::{Plan, PlannedStep};
use crate::facts::SiteFacts;
use berth_contracts::steps::{CronSpec, HttpStep};
use berth_contracts::{CronMethod, SecretNeeds};

/// The steps of a cron task (the site's status was checked by the caller).
pub fn plan_cron(s: &SiteFacts) -> Plan {
    let web = s.web();
    let spec = s.spec(false);
    let method = s.platform.cron_method;
    let mut steps = Vec::new();
    if !s.cron_key_given {
        steps.push(key_step(web, s));
    }
    let secrets = match method {
        // drush reaches the database as the site does; the key is not needed.
        CronMethod::Drush => SecretNeeds::SITE_DB,
        // Only the key: the request goes through the site's own vhost.
        CronMethod::Http => SecretNeeds::NONE.and_cron_key(),
    };
    steps.push(
        PlannedStep::http(web, HttpStep::SiteCron(CronSpec { site: spec, method }))
            .secrets(secrets),
    );
    Plan { steps }
}

/// Gives the site its cron key (drush, with the site's database password).
pub(super) fn key_step(web: &str, s: &SiteFacts) -> PlannedStep {
    PlannedStep::http(web, HttpStep::SiteCronKey(s.spec(false)))
        .secrets(SecretNeeds::SITE_DB.and_cron_key())
}

#[cfg(test)]
mod tests {
    use super::super::plan_site_task;
    use super::super::test_support::actions;
    use crate::facts::fixtures::site;
    use berth_contracts::steps::{CronSpec, HttpStep};
    use berth_contracts::{CronMethod, SecretNeeds, TaskArgs, TaskType, Work};

    #[test]
    fn cron_runs_by_the_platforms_method_with_only_the_secret_it_needs() {
        let mut s = site("enabled", "null");
        let p = plan_site_task(TaskType::Cron, &s, &TaskArgs::None).unwrap();
        assert_eq!(actions(&p), ["site-cron"]);
        assert_eq!(p.steps[0].secrets, SecretNeeds::SITE_DB);
        assert!(matches!(
            &p.steps[0].work,
            Work::Http(HttpStep::SiteCron(CronSpec {
                method: CronMethod::Drush,
                ..
            }))
        ));
        s.platform.cron_method = CronMethod::Http;
        let p = plan_site_task(TaskType::Cron, &s, &TaskArgs::None).unwrap();
        assert_eq!(p.steps[0].secrets, SecretNeeds::NONE.and_cron_key());
        assert_eq!(p.steps[0].secrets.site_db, None);
    }

    #[test]
    fn a_site_without_its_key_is_given_it_first() {
        let mut s = site("enabled", "null");
        s.cron_key_given = false;
        s.platform.cron_method = CronMethod::Http;
        let p = plan_site_task(TaskType::Cron, &s, &TaskArgs::None).unwrap();
        assert_eq!(actions(&p), ["site-cron-key", "site-cron"]);
        assert_eq!(p.steps[0].secrets, SecretNeeds::SITE_DB.and_cron_key());
    }

    #[test]
    fn a_disabled_sites_cron_is_not_run() {
        for status in ["disabled", "installing", "failed", "deleted"] {
            let err =
                plan_site_task(TaskType::Cron, &site(status, "null"), &TaskArgs::None).unwrap_err();
            assert!(err.contains("cron needs it enabled"), "{err}");
        }
    }
}
