//! The backup worker: site tarballs (create, restore, delete, retention). Its actions come
//! with the backup tasks; until then it answers the diagnostic `noop` that every worker
//! answers (handled by the worker framework) and refuses anything else.

use berth_broker::worker::{StepContext, StepError, StepHandler, StepOk, WorkerConfig, run_worker};
use berth_contracts::StepCommand;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

pub struct BackupWorker;

impl StepHandler for BackupWorker {
    async fn handle(&self, cmd: &StepCommand, _ctx: &StepContext) -> Result<StepOk, StepError> {
        Err(StepError::Permanent(format!(
            "the backup worker has no action `{}`",
            cmd.action
        )))
    }
}

pub async fn run(
    cfg: WorkerConfig,
    shutdown: CancellationToken,
) -> Result<(), berth_broker::BrokerError> {
    run_worker(cfg, Arc::new(BackupWorker), shutdown).await
}
