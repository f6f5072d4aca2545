//! Server tasks: verify (one step per managed service, database first) and the diagnostic
//! noop.

use super::{Plan, PlannedStep};
use crate::facts::ServerFacts;
use berth_contracts::steps::{DbStep, DnsStep, HttpStep, NoopSpec};
use berth_contracts::{SecretNeeds, Service, TaskArgs, TaskType, Work};

/// The steps of a task on a server; `Err` says why it cannot run.
pub fn plan_server_task(
    task_type: TaskType,
    args: &TaskArgs,
    server: &ServerFacts,
) -> Result<Plan, String> {
    match (task_type, args) {
        (TaskType::Verify, _) => {
            let name = server.name.as_str();
            let mut steps = Vec::new();
            // Database first: it is the service whose failure says most about credentials.
            if let Some(db) = server.managed_db() {
                steps
                    .push(PlannedStep::db(name, DbStep::Verify(db)).secrets(SecretNeeds::DB_ADMIN));
            }
            if let Some(http) = server.managed_http() {
                steps.push(PlannedStep::http(name, HttpStep::Verify(http)));
            }
            if let Some(dns) = server.managed_dns() {
                steps.push(PlannedStep::dns(name, DnsStep::Verify(dns)));
            }
            Ok(Plan { steps })
        }
        (TaskType::Noop, TaskArgs::Noop(a)) => {
            let service = a.service.unwrap_or(Service::Http);
            let n = a.steps.unwrap_or(1).max(1);
            let fail_step = a.fail_step.unwrap_or(n);
            let steps = (1..=n)
                .map(|i| {
                    // Each step carries only what it does: the failure goes to one step, so
                    // that the compensations of the others succeed.
                    let spec = NoopSpec {
                        service,
                        sleep_ms: a.sleep_ms,
                        fail: a.fail.filter(|_| i == fail_step),
                    };
                    let undo = NoopSpec {
                        fail: None,
                        ..spec.clone()
                    };
                    PlannedStep::new(&server.name, Work::Noop(spec)).undo(Work::Noop(undo))
                })
                .collect();
            Ok(Plan { steps })
        }
        (other, _) => Err(format!(
            "task type `{}` does not run on a server",
            other.as_str()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::fixtures::server;
    use berth_contracts::ErrorKind;
    use berth_contracts::steps::FailSpec;
    use berth_contracts::task::NoopArgs;

    /// The fixture server with these service types.
    fn master(http: &str, db: &str, dns: &str) -> ServerFacts {
        let mut s = server(dns);
        if let Some(h) = s.http.as_mut() {
            h.service_type = http.into();
        }
        if let Some(d) = s.db.as_mut() {
            d.service_type = db.into();
        }
        s
    }

    #[test]
    fn verify_runs_one_step_per_managed_service_db_first() {
        let plan = plan_server_task(
            TaskType::Verify,
            &TaskArgs::None,
            &master("nginx", "mariadb", "bind"),
        )
        .unwrap();
        let services: Vec<_> = plan.steps.iter().map(|s| s.service()).collect();
        assert_eq!(services, [Service::Db, Service::Http, Service::Dns]);
        assert!(plan.steps.iter().all(|s| s.action() == "verify"));
        assert_eq!(plan.steps[0].secrets, SecretNeeds::DB_ADMIN);
        let Work::Db(DbStep::Verify(db)) = &plan.steps[0].work else {
            panic!("{:?}", plan.steps[0].work)
        };
        assert_eq!(db.admin_user, "root");
    }

    #[test]
    fn null_services_are_not_verified() {
        let plan = plan_server_task(
            TaskType::Verify,
            &TaskArgs::None,
            &master("nginx", "null", "null"),
        )
        .unwrap();
        assert_eq!(plan.steps.len(), 1);
        assert_eq!(plan.steps[0].service(), Service::Http);
        let none =
            plan_server_task(TaskType::Verify, &TaskArgs::None, &ServerFacts::default()).unwrap();
        assert!(none.steps.is_empty());
        assert!(plan_server_task(TaskType::Install, &TaskArgs::None, &none_server()).is_err());
    }

    fn none_server() -> ServerFacts {
        ServerFacts::default()
    }

    #[test]
    fn noop_goes_to_the_service_asked_for() {
        let s = master("nginx", "mariadb", "bind");
        let p = plan_server_task(TaskType::Noop, &TaskArgs::Noop(NoopArgs::default()), &s);
        assert_eq!(p.unwrap().steps[0].service(), Service::Http);
        let a = NoopArgs {
            service: Some(Service::Db),
            ..Default::default()
        };
        let p = plan_server_task(TaskType::Noop, &TaskArgs::Noop(a), &s).unwrap();
        assert_eq!(p.steps[0].service(), Service::Db);
        assert_eq!(p.steps[0].action(), "noop");
    }

    #[test]
    fn a_multi_step_noop_fails_only_at_its_fail_step_and_every_step_can_be_taken_back() {
        let s = master("nginx", "mariadb", "bind");
        let a = NoopArgs {
            steps: Some(3),
            fail_step: Some(2),
            fail: Some(FailSpec {
                times: 1,
                kind: ErrorKind::Permanent,
            }),
            ..Default::default()
        };
        let p = plan_server_task(TaskType::Noop, &TaskArgs::Noop(a), &s).unwrap();
        let failing: Vec<bool> = p
            .steps
            .iter()
            .map(|s| matches!(&s.work, Work::Noop(n) if n.fail.is_some()))
            .collect();
        assert_eq!(failing, [false, true, false]);
        // Taking back never fails: the undo carries no injected failure.
        assert!(
            p.steps
                .iter()
                .all(|s| matches!(&s.undo, Some(Work::Noop(n)) if n.fail.is_none()))
        );
    }
}
