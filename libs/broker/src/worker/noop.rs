//! The `noop` diagnostic step, answered by every worker without its service's handler.

use std::time::Duration;

use berth_contracts::steps::NoopSpec;
use berth_contracts::{ErrorKind, StepOutput};

use super::{StepContext, StepError, StepOk};

/// Longest sleep honoured, as `berth-hosting` validates it.
const MAX_SLEEP_MS: u64 = 3_600_000;

pub(super) async fn run(args: &NoopSpec, ctx: &StepContext) -> Result<StepOk, StepError> {
    let mut warning = false;
    if !ctx.diagnostics() {
        if args.sleep_ms.is_some() || args.fail.is_some() {
            ctx.warn("diagnostics are off on this worker: ignoring sleep_ms and fail");
            warning = true;
        }
    } else {
        // A compensation takes nothing back: it does not sleep, so that a test sees the
        // taking back of a stopped or failed plan at once.
        if let Some(ms) = args.sleep_ms
            && ctx.phase() == berth_contracts::StepPhase::Run
        {
            let ms = ms.min(MAX_SLEEP_MS);
            ctx.progress(format!("sleeping {ms} ms")).await;
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        if let Some(fail) = args.fail
            && ctx.attempt() <= fail.times
        {
            let kind = match fail.kind {
                ErrorKind::Transient => "transient",
                ErrorKind::Permanent => "permanent",
            };
            let msg = format!(
                "injected {kind} failure (attempt {} of {})",
                ctx.attempt(),
                fail.times
            );
            return Err(match fail.kind {
                ErrorKind::Transient => StepError::Transient(msg),
                ErrorKind::Permanent => StepError::Permanent(msg),
            });
        }
    }
    ctx.info("noop done");
    Ok(StepOk {
        output: StepOutput::Noop {
            worker: ctx.worker().to_string(),
        },
        warning,
    })
}
