//! The dns worker: BIND zones and records.
//!
//! Actions:
//! - `verify`: the server's zones directory exists (made if missing) and
//!   `named-checkconf` accepts the configuration;
//! - `site-records`: a site's address record and its aliases' CNAMEs (and the records of
//!   names it no longer has gone), see [`records::site_records`];
//! - `site-records-remove`: removes them, and the zones berth made that are left empty,
//!   see [`records::site_records_remove`].

pub mod records;

use berth_broker::worker::{StepContext, StepError, StepHandler, StepOk, WorkerConfig, run_worker};
use berth_command::{ensure_dir, run_checked};
use berth_contracts::StepCommand;
use std::path::PathBuf;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct DnsConfig {
    pub worker: WorkerConfig,
    /// `<data_root>/config/<server>/bind` holds the zones berth writes.
    pub data_root: PathBuf,
    pub checkconf_bin: String,
    pub named_conf: PathBuf,
    /// `named-checkzone`: every zone file is checked before BIND is asked to load it.
    pub checkzone_bin: String,
    /// `rndc`, run as `rndc [-c <rndc_conf>] reload <zone>` (or `reconfig` for a new zone).
    pub rndc_bin: String,
    /// rndc's configuration (server, port, key); `None`: rndc's own default.
    pub rndc_conf: Option<PathBuf>,
}

pub struct DnsWorker {
    cfg: DnsConfig,
}

impl DnsWorker {
    pub fn new(cfg: DnsConfig) -> Self {
        Self { cfg }
    }

    async fn verify(&self, cmd: &StepCommand, ctx: &StepContext) -> Result<StepOk, StepError> {
        let ty = cmd
            .args
            .get("type")
            .and_then(|v| v.as_str())
            .unwrap_or("bind");
        if ty != "bind" {
            return Err(StepError::Permanent(format!(
                "dns service type `{ty}` has nothing to verify"
            )));
        }
        let dir = self
            .cfg
            .data_root
            .join("config")
            .join(&cmd.server)
            .join("bind");
        ensure_dir(&dir, ctx).await?;
        let conf = self.cfg.named_conf.to_string_lossy().to_string();
        run_checked(ctx, &self.cfg.checkconf_bin, &[&conf]).await?;
        ctx.info(format!("named-checkconf accepts {conf}"));
        Ok(StepOk::default())
    }
}

impl StepHandler for DnsWorker {
    async fn handle(&self, cmd: &StepCommand, ctx: &StepContext) -> Result<StepOk, StepError> {
        match cmd.action.as_str() {
            "verify" => self.verify(cmd, ctx).await,
            "site-records" => {
                let log = |line: String| ctx.info(line);
                records::site_records(&self.cfg, &cmd.server, &cmd.args, &log)
                    .await
                    .map(StepOk::new)
            }
            "site-records-remove" => {
                let log = |line: String| ctx.info(line);
                records::site_records_remove(&self.cfg, &cmd.server, &cmd.args, &log)
                    .await
                    .map(StepOk::new)
            }
            other => Err(StepError::Permanent(format!(
                "the dns worker has no action `{other}`"
            ))),
        }
    }
}

pub async fn run(
    cfg: DnsConfig,
    shutdown: CancellationToken,
) -> Result<(), berth_broker::BrokerError> {
    let worker = cfg.worker.clone();
    run_worker(worker, Arc::new(DnsWorker::new(cfg)), shutdown).await
}
