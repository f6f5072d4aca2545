//! The plans of tasks: what each task type does, as an ordered list of typed steps, one
//! module per task family. A plan is data built from the facts the state service read;
//! building one does no I/O.
//!
//! Every step names the worker queue (`<service>.<server>`) it goes to, the step that
//! takes its effect back if a later step fails, and the secrets the state service must
//! attach to it.

mod backup;
mod clone;
mod cron;
mod delete;
mod deploy;
mod drill;
mod migrate;
mod platform;
mod restore;
mod server;
mod site;

pub use backup::{delete_copy_step, plan_backup, plan_backup_delete, plan_prune};
pub use clone::plan_clone;
pub use cron::plan_cron;
pub use delete::plan_delete;
pub use drill::{drill_spec, plan_drill};
pub use migrate::plan_migrate;
pub use platform::plan_platform_task;
pub use restore::plan_restore;
pub use server::plan_server_task;

use crate::facts::SiteFacts;
use crate::offsite::OffsiteFacts;
use crate::sites::check_status;
use berth_contracts::steps::{BackupStep, DbStep, DnsStep, HttpStep};
use berth_contracts::{SecretNeeds, Service, TaskArgs, TaskType, Work};

#[derive(Debug, Clone, PartialEq)]
pub struct PlannedStep {
    /// The server whose worker runs it.
    pub server: String,
    pub work: Work,
    /// What takes this step's effect back when a later step fails.
    pub undo: Option<Work>,
    pub secrets: SecretNeeds,
}

impl PlannedStep {
    fn new(server: &str, work: Work) -> Self {
        Self {
            server: server.to_string(),
            work,
            undo: None,
            secrets: SecretNeeds::NONE,
        }
    }

    fn http(server: &str, step: HttpStep) -> Self {
        Self::new(server, Work::Http(step))
    }

    fn db(server: &str, step: DbStep) -> Self {
        Self::new(server, Work::Db(step))
    }

    fn dns(server: &str, step: DnsStep) -> Self {
        Self::new(server, Work::Dns(step))
    }

    fn backup(server: &str, step: BackupStep) -> Self {
        Self::new(server, Work::Backup(step))
    }

    fn undo(mut self, work: impl Into<Work>) -> Self {
        self.undo = Some(work.into());
        self
    }

    fn secrets(mut self, needs: SecretNeeds) -> Self {
        self.secrets = needs;
        self
    }

    pub fn service(&self) -> Service {
        self.work.service()
    }

    pub fn action(&self) -> &'static str {
        self.work.action()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub steps: Vec<PlannedStep>,
}

/// The steps of a task on a site, for the task types planned from the site alone
/// (migrate and clone are planned with their target: [`plan_migrate`], [`plan_clone`]);
/// `Err` says why it cannot run now.
pub fn plan_site_task(task_type: TaskType, s: &SiteFacts, args: &TaskArgs) -> Result<Plan, String> {
    plan_site_task_offsite(task_type, s, args, &OffsiteFacts::default())
}

/// [`plan_site_task`] with what the task needs of off-site targets: a backup's targets,
/// the copies of the backup a restore or backup-delete acts on.
pub fn plan_site_task_offsite(
    task_type: TaskType,
    s: &SiteFacts,
    args: &TaskArgs,
    offsite: &OffsiteFacts,
) -> Result<Plan, String> {
    if s.platform.web_server.managed_http().is_none() {
        return Err(format!(
            "web server `{}` has no managed http service",
            s.web()
        ));
    }
    check_status(task_type, &s.uri, &s.status)?;
    let wrong = || {
        Err(format!(
            "the {} task carries arguments of another task type",
            task_type.as_str()
        ))
    };
    match (task_type, args) {
        (TaskType::Disable, TaskArgs::Disable(a)) => {
            let mut plan = site::plan(task_type, s)?;
            plan.steps
                .insert(0, backup::backup_step(s, &a.backup, false));
            Ok(plan)
        }
        (
            TaskType::Install
            | TaskType::Verify
            | TaskType::Disable
            | TaskType::Enable
            | TaskType::LoginReset
            | TaskType::Suspend
            | TaskType::Unsuspend
            | TaskType::Usage,
            _,
        ) => site::plan(task_type, s),
        (TaskType::Cron, _) if s.suspended => Err(format!(
            "site `{}` is suspended: its cron does not run until it is unsuspended",
            s.uri
        )),
        (TaskType::Cron, _) => Ok(plan_cron(s)),
        (TaskType::Backup, TaskArgs::Backup(a)) => plan_backup(s, a, &offsite.targets),
        (TaskType::Delete, TaskArgs::Delete(a)) => Ok(plan_delete(s, a)),
        (TaskType::Restore, TaskArgs::Restore(a)) => Ok(plan_restore(s, a, &offsite.copies)),
        (TaskType::BackupDelete, TaskArgs::BackupDelete(a)) => {
            Ok(plan_backup_delete(a, &offsite.copies))
        }
        (TaskType::Prune, TaskArgs::Prune(a)) => Ok(plan_prune(a, &offsite.copies)),
        (TaskType::Migrate | TaskType::Clone | TaskType::Drill, _) => Err(format!(
            "a {} is planned with its target",
            task_type.as_str()
        )),
        (TaskType::Noop, _) => Err("noop runs on servers only".into()),
        (
            TaskType::Backup
            | TaskType::Delete
            | TaskType::Restore
            | TaskType::BackupDelete
            | TaskType::Prune,
            _,
        ) => wrong(),
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::Plan;

    pub fn actions(p: &Plan) -> Vec<&'static str> {
        p.steps.iter().map(|s| s.action()).collect()
    }

    pub fn undos(p: &Plan) -> Vec<Option<&'static str>> {
        p.steps
            .iter()
            .map(|s| s.undo.as_ref().map(|u| u.action()))
            .collect()
    }
}
