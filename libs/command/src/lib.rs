//! Running the programs a worker drives (nginx -t, php-fpm -t, named-checkzone, rndc…):
//! one runner for every worker, so each gets the same time limit, the same killing of the
//! child when the step is dropped (a cancel or a step timeout), and the same error text.
//! Arguments are never secret: what needs a secret passes it in the environment or a file.

use std::path::Path;
use std::time::Duration;

use berth_broker::worker::{StepContext, StepError};

/// How long a program may run before it is killed and the run counts as transient failure.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// A program that ran to its end: whether it exited 0, and its stdout then stderr, trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ran {
    pub success: bool,
    pub status: String,
    pub text: String,
}

/// A program that could not be run to its end.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("{program} did not finish in {} s", .after.as_secs())]
    TimedOut { program: String, after: Duration },
    #[error("cannot run {program}: {source}")]
    CannotRun {
        program: String,
        source: std::io::Error,
    },
}

/// Runs `program` with `args`, stdin closed, killed when the future is dropped or after
/// [`TIMEOUT`].
pub async fn output(program: &str, args: &[&str]) -> Result<Ran, CommandError> {
    output_within(program, args, TIMEOUT).await
}

/// [`output`] with a time limit of its own.
pub async fn output_within(
    program: &str,
    args: &[&str],
    limit: Duration,
) -> Result<Ran, CommandError> {
    let child = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = match tokio::time::timeout(limit, child).await {
        Err(_) => {
            return Err(CommandError::TimedOut {
                program: program.to_owned(),
                after: limit,
            });
        }
        Ok(Err(source)) => {
            return Err(CommandError::CannotRun {
                program: program.to_owned(),
                source,
            });
        }
        Ok(Ok(out)) => out,
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
    .trim()
    .to_string();
    Ok(Ran {
        success: out.status.success(),
        status: out.status.to_string(),
        text,
    })
}

/// Runs a program for a step: its output on success, else its output in the error,
/// transient if `transient` (worth retrying), else permanent. A time-out is transient, a
/// missing program permanent.
pub async fn run_command(
    program: &str,
    args: &[&str],
    transient: bool,
) -> Result<String, StepError> {
    let ran = output(program, args).await.map_err(|e| match e {
        CommandError::TimedOut { .. } => StepError::Transient(e.to_string()),
        CommandError::CannotRun { .. } => StepError::Permanent(e.to_string()),
    })?;
    if ran.success {
        return Ok(ran.text);
    }
    let msg = format!(
        "{program} {} failed ({}): {}",
        args.join(" "),
        ran.status,
        ran.text
    );
    Err(if transient {
        StepError::Transient(msg)
    } else {
        StepError::Permanent(msg)
    })
}

/// [`run_command`], permanent on failure, with the command line in the step's log.
pub async fn run_checked(
    ctx: &StepContext,
    program: &str,
    args: &[&str],
) -> Result<String, StepError> {
    ctx.info(format!("running {program} {}", args.join(" ")));
    run_command(program, args, false).await
}

/// A directory a worker writes into: made when missing, and proved writable.
pub async fn ensure_dir(dir: &Path, ctx: &StepContext) -> Result<(), StepError> {
    match tokio::fs::metadata(dir).await {
        Ok(m) if m.is_dir() => ctx.info(format!("{} exists", dir.display())),
        Ok(_) => {
            return Err(StepError::Permanent(format!(
                "{} exists but is not a directory",
                dir.display()
            )));
        }
        Err(_) => {
            tokio::fs::create_dir_all(dir).await.map_err(|e| {
                StepError::Permanent(format!("cannot create {}: {e}", dir.display()))
            })?;
            ctx.info(format!("created {}", dir.display()));
        }
    }
    let probe = dir.join(format!(".berth-verify-{}", std::process::id()));
    tokio::fs::write(&probe, b"")
        .await
        .map_err(|e| StepError::Permanent(format!("{} is not writable: {e}", dir.display())))?;
    let _ = tokio::fs::remove_file(&probe).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn output_and_status_of_a_real_program() {
        let ran = output("sh", &["-c", "echo out; echo err >&2; exit 3"])
            .await
            .unwrap();
        assert!(!ran.success);
        assert_eq!(ran.text, "out\nerr");
        let err = run_command("sh", &["-c", "echo nope; exit 1"], true)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StepError::Transient(m) if m.contains("nope")),
            "{err:?}"
        );
        assert_eq!(run_command("true", &[], false).await.unwrap(), "");
    }

    #[tokio::test]
    async fn a_missing_program_is_permanent_and_a_slow_one_is_killed_in_time() {
        let err = run_command("/nonexistent/berth-program", &[], true)
            .await
            .unwrap_err();
        assert!(matches!(err, StepError::Permanent(_)), "{err:?}");
        let started = std::time::Instant::now();
        let err = output_within("sleep", &["30"], Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(matches!(err, CommandError::TimedOut { .. }), "{err}");
        // Killed, not waited for: far less than the program's own 30 s.
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
