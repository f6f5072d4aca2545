//! Platform tasks: verify scans the codebase (packages, sites found) and fixes its
//! permissions.

use super::{Plan, PlannedStep};
use crate::facts::PlatformFacts;
use berth_contracts::TaskType;
use berth_contracts::steps::HttpStep;

/// The steps of a task on a platform; `Err` says why it cannot run.
pub fn plan_platform_task(task_type: TaskType, p: &PlatformFacts) -> Result<Plan, String> {
    match task_type {
        TaskType::Verify => {
            if p.web_server.managed_http().is_none() {
                return Err(format!(
                    "web server `{}` has no managed http service",
                    p.web_server.name
                ));
            }
            Ok(Plan {
                steps: vec![PlannedStep::http(
                    &p.web_server.name,
                    HttpStep::PlatformVerify(p.spec()),
                )],
            })
        }
        other => Err(format!(
            "task type `{}` does not run on a platform",
            other.as_str()
        )),
    }
}
