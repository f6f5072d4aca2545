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
use berth_contracts::steps::{DnsServiceSpec, DnsStep, Work};
use berth_contracts::{StepCommand, StepOutput};
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

    async fn verify(
        &self,
        spec: &DnsServiceSpec,
        cmd: &StepCommand,
        ctx: &StepContext,
    ) -> Result<StepOk, StepError> {
        let ty = &spec.service_type;
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
        let Work::Dns(step) = &cmd.work else {
            return Err(StepError::permanent(format!(
                "this is the dns worker; the step is for the {} worker",
                cmd.service()
            )));
        };
        let log = |line: String| ctx.info(line);
        let done = |zones| StepOk::new(StepOutput::Records { zones });
        match step {
            DnsStep::Verify(spec) => self.verify(spec, cmd, ctx).await,
            DnsStep::SiteRecords(site) => {
                let names = records::SiteNames::of_site(site);
                records::site_records(&self.cfg, &cmd.server, &names, &log)
                    .await
                    .map(done)
            }
            DnsStep::SiteRecordsRemove(site) => {
                let names = records::SiteNames::of_site(site);
                records::site_records_remove(&self.cfg, &cmd.server, &names, &log)
                    .await
                    .map(done)
            }
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
