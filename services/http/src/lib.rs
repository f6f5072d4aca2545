//! The http worker: web server configuration on one or more servers. For now it verifies
//! a server's web service: its configuration directories exist (made if missing, as Aegir's
//! verify fixes what it can) and the web server accepts its configuration (`nginx -t`).

pub mod reload;

use berth_broker::worker::{StepContext, StepError, StepHandler, StepOk, WorkerConfig, run_worker};
use berth_contracts::StepCommand;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub worker: WorkerConfig,
    /// Root of berth's files: `<data_root>/config/<server>/nginx/vhost.d` holds the vhosts.
    pub data_root: PathBuf,
    pub nginx_bin: String,
    pub nginx_conf: PathBuf,
}

pub struct HttpWorker {
    cfg: HttpConfig,
}

/// How long a web server's config test may take before the step is retried.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

impl HttpWorker {
    pub fn new(cfg: HttpConfig) -> Self {
        Self { cfg }
    }

    pub fn vhost_dir(data_root: &Path, server: &str) -> PathBuf {
        data_root
            .join("config")
            .join(server)
            .join("nginx")
            .join("vhost.d")
    }

    async fn verify(&self, cmd: &StepCommand, ctx: &StepContext) -> Result<StepOk, StepError> {
        let ty = cmd
            .args
            .get("type")
            .and_then(|v| v.as_str())
            .unwrap_or("nginx");
        let dir = Self::vhost_dir(&self.cfg.data_root, &cmd.server);
        ensure_dir(&dir, ctx).await?;
        match ty {
            "nginx" => {
                let out = run_checked(
                    ctx,
                    &self.cfg.nginx_bin,
                    &[
                        "-t",
                        "-q",
                        "-e",
                        "stderr",
                        "-c",
                        &self.cfg.nginx_conf.to_string_lossy(),
                    ],
                )
                .await?;
                ctx.info(format!(
                    "nginx accepts its configuration {}{}",
                    self.cfg.nginx_conf.display(),
                    if out.is_empty() {
                        String::new()
                    } else {
                        format!(": {out}")
                    }
                ));
            }
            "apache" => {
                run_checked(ctx, "apache2ctl", &["-t"]).await?;
                ctx.info("apache accepts its configuration");
            }
            other => {
                return Err(StepError::Permanent(format!(
                    "http service type `{other}` has nothing to verify"
                )));
            }
        }
        Ok(StepOk::default())
    }
}

/// Makes a configuration directory if missing, and checks it is a writable directory.
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

/// Runs a command (never with secrets in its arguments); a non-zero exit is a permanent
/// failure carrying its output, a missing program too, a time-out a transient one.
pub async fn run_checked(
    ctx: &StepContext,
    program: &str,
    args: &[&str],
) -> Result<String, StepError> {
    ctx.info(format!("running {program} {}", args.join(" ")));
    let child = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = match tokio::time::timeout(COMMAND_TIMEOUT, child).await {
        Err(_) => {
            return Err(StepError::Transient(format!(
                "{program} did not finish in {} s",
                COMMAND_TIMEOUT.as_secs()
            )));
        }
        Ok(Err(e)) => return Err(StepError::Permanent(format!("cannot run {program}: {e}"))),
        Ok(Ok(out)) => out,
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
    .trim()
    .to_string();
    if out.status.success() {
        Ok(text)
    } else {
        Err(StepError::Permanent(format!(
            "{program} failed ({}): {text}",
            out.status
        )))
    }
}

impl StepHandler for HttpWorker {
    async fn handle(&self, cmd: &StepCommand, ctx: &StepContext) -> Result<StepOk, StepError> {
        match cmd.action.as_str() {
            "verify" => self.verify(cmd, ctx).await,
            other => Err(StepError::Permanent(format!(
                "the http worker has no action `{other}`"
            ))),
        }
    }
}

pub async fn run(
    cfg: HttpConfig,
    shutdown: CancellationToken,
) -> Result<(), berth_broker::BrokerError> {
    let worker = cfg.worker.clone();
    run_worker(worker, Arc::new(HttpWorker::new(cfg)), shutdown).await
}
