//! The http worker: web server configuration on one or more servers. It verifies a
//! server's web service (its configuration directories exist, made if missing as Aegir's
//! verify fixes what it can, and `nginx -t` accepts the configuration), verifies platforms
//! (permissions, package scan), and installs and serves sites: site directory and cloaked
//! settings, the installer, vhosts through coalesced reloads, login links, package maps.

pub mod cron;
pub mod drill;
pub mod pool;
pub mod reload;
pub mod scan;
pub mod site;
pub mod usage;
pub mod vhost;

use berth_broker::worker::{StepContext, StepError, StepHandler, StepOk, WorkerConfig, run_worker};
use berth_command::{ensure_dir, run_checked};
use berth_contracts::steps::{CleanupSpec, HttpServiceSpec, HttpStep, SiteSpec, SwapSpec};
use berth_contracts::{CronMethod, StepCommand, StepOutput, Work};
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
    /// Opens the sites' sealed database passwords (they go into vhosts and drush's
    /// environment); `None`: site steps that need one fail.
    pub secret_key: Option<berth_secrets::SecretKey>,
    /// The php-fpm that runs every site's own pool (`php-fpm -t`, reloads), and its main
    /// configuration, which includes `<data_root>/config/<server>/php-fpm/pool.d/*.conf`.
    pub php_fpm_bin: String,
    pub php_fpm_conf: PathBuf,
    /// nginx's FastCGI parameters file, included by every vhost that passes PHP.
    pub fastcgi_params: PathBuf,
    /// Address vhosts listen on with the http service's port; empty: all addresses.
    pub listen_address: String,
    /// A batch of vhost changes closes once none has come for this long…
    pub reload_window: Duration,
    /// …or this long after its first change.
    pub reload_max_wait: Duration,
    /// Installer (drush) runs at once: they are what loads the CPU, while steps waiting
    /// for a reload cost nothing, so the worker's concurrency can be much higher.
    pub installer_slots: usize,
}

pub struct HttpWorker {
    cfg: HttpConfig,
    reloader: reload::Reloader,
    installer_slots: Arc<tokio::sync::Semaphore>,
}

impl HttpWorker {
    pub fn new(cfg: HttpConfig) -> Self {
        let mut rc = reload::ReloadConfig::new(cfg.nginx_bin.clone(), cfg.nginx_conf.clone());
        rc.window = cfg.reload_window;
        rc.max_wait = cfg.reload_max_wait.max(cfg.reload_window);
        rc.php_fpm = Some(reload::FpmConfig {
            bin: cfg.php_fpm_bin.clone(),
            conf: cfg.php_fpm_conf.clone(),
        });
        Self {
            reloader: reload::Reloader::new(rc),
            installer_slots: Arc::new(tokio::sync::Semaphore::new(cfg.installer_slots.max(1))),
            cfg,
        }
    }

    /// Reloads of nginx done so far by this worker.
    pub fn reloads(&self) -> u64 {
        self.reloader.reloads()
    }

    fn site_password(&self, cmd: &StepCommand) -> Result<String, StepError> {
        let key = self.cfg.secret_key.as_ref().ok_or_else(|| {
            StepError::permanent("this http worker has no secret key to open the site's password")
        })?;
        key.site_password(
            cmd.secrets.site_db.as_deref(),
            cmd.site_db_derivation().as_deref(),
        )
        .map_err(|e| StepError::permanent(format!("the site's password: {e}")))
    }

    /// The site's cron key the step carries sealed: hex digits only (it goes into a URL).
    fn cron_key(&self, cmd: &StepCommand) -> Result<String, StepError> {
        let key = self.cfg.secret_key.as_ref().ok_or_else(|| {
            StepError::permanent("this http worker has no secret key to open the site's cron key")
        })?;
        key.open_site_password(cmd.secrets.cron_key.as_deref())
            .map_err(|e| StepError::permanent(format!("the site's cron key: {e}")))
    }

    /// A site step's arguments, checked (they reach paths and commands).
    fn site_args(&self, spec: &SiteSpec) -> Result<site::SiteArgs, StepError> {
        site::SiteArgs::from_spec(spec, &self.cfg.data_root)
    }

    /// One of the installer slots: steps that run drush hold one while they run; the
    /// others (files, vhosts) do not.
    async fn installer_slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit, StepError> {
        self.installer_slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StepError::transient("the worker is stopping"))
    }

    /// Applies a vhost change (the vhost at `path`, maybe with the site's pool) through the
    /// coalescing reloader; `what` says what became of them, for the log.
    async fn reload(
        &self,
        path: PathBuf,
        change: reload::VhostChange,
        what: &str,
        ctx: &StepContext,
    ) -> Result<StepOk, StepError> {
        let report = self
            .reloader
            .apply(change)
            .await
            .map_err(site::reload_error)?;
        ctx.info(format!(
            "vhost {} {what}; configuration tests passed; reload #{} carried {} change(s)",
            path.display(),
            report.reload,
            report.batch
        ));
        Ok(StepOk::new(StepOutput::Reloaded {
            reload: report.reload,
            batch: report.batch as u64,
        }))
    }

    async fn site_files(
        &self,
        cmd: &StepCommand,
        a: site::SiteArgs,
        ctx: &StepContext,
    ) -> Result<StepOk, StepError> {
        let installing = cmd.task_type == "install";
        blocking("site files", ctx, move || {
            site::write_site_files(&a, installing)
        })
        .await
    }

    async fn site_files_remove(
        &self,
        a: site::SiteArgs,
        ctx: &StepContext,
    ) -> Result<StepOk, StepError> {
        blocking("site files", ctx, move || site::remove_site_files(&a)).await
    }

    async fn site_install(
        &self,
        cmd: &StepCommand,
        a: &site::SiteArgs,
        ctx: &StepContext,
    ) -> Result<StepOk, StepError> {
        let pw = self.site_password(cmd)?;
        let mut args = vec![
            "site:install".to_string(),
            a.profile.clone(),
            format!("--locale={}", a.language),
            format!("--site-name={}", a.uri),
            format!("--sites-subdir={}", a.uri),
        ];
        if let Some(mail) = &a.client_email {
            args.push(format!("--account-mail={mail}"));
        }
        args.push("-y".into());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        site::drush(a, &pw, &args, ctx).await?;
        ctx.info(format!(
            "{} installed with profile {} ({})",
            a.uri, a.profile, a.language
        ));
        Ok(StepOk::default())
    }

    /// `site-vhost`, `site-vhost-remove` and `site-maintenance`: the vhost written,
    /// removed or replaced by the maintenance page, kept first when `stash` (always for
    /// the maintenance page).
    async fn site_vhost(
        &self,
        cmd: &StepCommand,
        a: &site::SiteArgs,
        op: VhostOp,
        stash: bool,
        ctx: &StepContext,
    ) -> Result<StepOk, StepError> {
        let path = site::vhost_path(&self.cfg, &cmd.server, &a.uri);
        let maintenance = op == VhostOp::Maintenance;
        if maintenance || stash {
            site::stash_vhost(&path, cmd.step_id)?;
        }
        let removing = op == VhostOp::Remove;
        let change = match op {
            VhostOp::Remove => site::removal_change(&self.cfg, &cmd.server, a, path.clone()),
            VhostOp::Maintenance => {
                // The maintenance page needs no credentials, nor PHP.
                let text = site::render_site_vhost(&self.cfg, a, "", true);
                site::vhost_change(path.clone(), Some(text))
            }
            VhostOp::Serve => {
                let pw = self.site_password(cmd)?;
                let a2 = a.clone();
                let log = tokio::task::spawn_blocking(move || site::prepare_site(&a2))
                    .await
                    .map_err(|e| StepError::permanent(format!("site owners: {e}")))??;
                log.into_iter().for_each(|l| ctx.info(l));
                let text = site::render_site_vhost(&self.cfg, a, &pw, false);
                site::serving_change(&self.cfg, &cmd.server, a, path.clone(), text)?
            }
        };
        let what = match (removing, a.suspended, a.disabled, maintenance) {
            (true, ..) => "removed",
            (_, true, ..) => "written (site suspended)",
            (.., true) => "written (maintenance page)",
            (_, _, true, _) => "written (site disabled)",
            _ => "written",
        };
        let pool = site::pool_effect(&change, removing);
        let out = self
            .reload(path.clone(), change, &format!("{what}{pool}"), ctx)
            .await;
        if removing && !pool.is_empty() && out.is_ok() {
            site::remove_site_tmp(a, ctx);
        }
        if out.is_err() {
            // The reloader put the vhost back; a failed step is not taken back, so
            // what it kept for its compensation goes now.
            site::drop_stash(&path, cmd.step_id);
        }
        out
    }

    async fn site_vhost_restore(
        &self,
        cmd: &StepCommand,
        a: &site::SiteArgs,
        ctx: &StepContext,
    ) -> Result<StepOk, StepError> {
        let path = site::vhost_path(&self.cfg, &cmd.server, &a.uri);
        match site::stashed_vhost(&path, cmd.step_id) {
            None => {
                ctx.info("no vhost kept by this step: nothing to put back");
                Ok(StepOk::default())
            }
            Some(contents) => {
                let (what, change) = match contents {
                    Some(text) => (
                        "put back as it was",
                        site::vhost_change(path.clone(), Some(text)),
                    ),
                    // There was no vhost, so no pool either (a clone's new site).
                    None => (
                        "removed (there was none)",
                        site::removal_change(&self.cfg, &cmd.server, a, path.clone()),
                    ),
                };
                let pool = site::pool_effect(&change, true);
                let out = self
                    .reload(path.clone(), change, &format!("{what}{pool}"), ctx)
                    .await?;
                if !pool.is_empty() {
                    site::remove_site_tmp(a, ctx);
                }
                site::drop_stash(&path, cmd.step_id);
                Ok(out)
            }
        }
    }

    /// `site-swap` (`back` false) and `site-swap-back`.
    async fn site_swap(
        &self,
        a: site::SiteArgs,
        spec: &SwapSpec,
        back: bool,
        ctx: &StepContext,
    ) -> Result<StepOk, StepError> {
        let spec = spec.clone();
        blocking("swap", ctx, move || {
            if back {
                site::swap_back_site_dir(&a, &spec)
            } else {
                site::swap_site_dir(&a, &spec)
            }
        })
        .await
    }

    async fn site_updatedb(
        &self,
        cmd: &StepCommand,
        a: &site::SiteArgs,
        spec: &SwapSpec,
        ctx: &StepContext,
    ) -> Result<StepOk, StepError> {
        let pw = self.site_password(cmd)?;
        site::drush(a, &pw, &["updatedb", "-y"], ctx).await?;
        if let Some(from) = spec.renamed_from.as_deref() {
            site::fix_file_paths(a, &pw, from, ctx).await?;
        }
        site::drush(a, &pw, &["cache:rebuild"], ctx).await?;
        ctx.info(format!("{}: database updated, caches rebuilt", a.uri));
        Ok(StepOk::default())
    }

    async fn site_cleanup(
        &self,
        cmd: &StepCommand,
        a: &site::SiteArgs,
        spec: &CleanupSpec,
        ctx: &StepContext,
    ) -> Result<StepOk, StepError> {
        let path = site::vhost_path(&self.cfg, &cmd.server, &a.uri);
        for l in site::cleanup_after_restore(a, spec) {
            ctx.info(l);
        }
        let mut n = site::drop_all_stashes(&path);
        // A renamed site's old vhost goes too; a failure here is only reported: the task
        // is done.
        if let Some(old) = spec.old_uri.as_deref()
            && berth_hosting::HostName::parse(old).is_ok()
            && old != a.uri
        {
            let old_path = site::vhost_path(&self.cfg, &cmd.server, old);
            match self
                .reloader
                .apply(site::vhost_change(old_path.clone(), None))
                .await
            {
                Ok(r) => ctx.info(format!(
                    "vhost {} removed; reload #{} carried {} change(s)",
                    old_path.display(),
                    r.reload,
                    r.batch
                )),
                Err(e) => ctx.warn(format!("the old vhost stays: {e}")),
            }
            n += site::drop_all_stashes(&old_path);
        }
        ctx.info(format!("{n} kept vhost(s) dropped"));
        Ok(StepOk::default())
    }

    async fn site_packages(
        &self,
        cmd: &StepCommand,
        a: &site::SiteArgs,
        login: bool,
        ctx: &StepContext,
    ) -> Result<StepOk, StepError> {
        let pw = self.site_password(cmd)?;
        let packages = site::site_packages(a, &pw, ctx).await?;
        ctx.info(format!(
            "{} package(s) enabled on {}",
            packages.len(),
            a.uri
        ));
        let login_link = if login {
            let link = site::login_link(a, &pw, ctx).await?;
            ctx.info("one-time login link made");
            Some(link)
        } else {
            None
        };
        Ok(StepOk::new(StepOutput::SitePackages {
            packages,
            login_link,
        }))
    }

    async fn site_login(
        &self,
        cmd: &StepCommand,
        a: &site::SiteArgs,
        ctx: &StepContext,
    ) -> Result<StepOk, StepError> {
        let pw = self.site_password(cmd)?;
        let login_link = site::login_link(a, &pw, ctx).await?;
        ctx.info("one-time login link made");
        Ok(StepOk::new(StepOutput::LoginLink { login_link }))
    }

    /// The disk the site's directory takes; a walk that stops at its limit reports a
    /// lower bound (a warning), never a failure.
    async fn site_usage(&self, a: site::SiteArgs, ctx: &StepContext) -> Result<StepOk, StepError> {
        let sites = a.root.join("sites");
        let uri = a.uri.clone();
        let usage =
            tokio::task::spawn_blocking(move || usage::measure(&sites, &uri, usage::LIMITS))
                .await
                .map_err(|e| StepError::permanent(format!("site usage: {e}")))?
                .map_err(|e| StepError::permanent(e.to_string()))?;
        let line = format!(
            "site directory sites/{}: {} bytes in {} entries",
            a.uri, usage.bytes, usage.entries
        );
        if usage.complete {
            ctx.info(line);
        } else {
            ctx.warn(format!(
                "{line} counted before the walk's limit (time {} s, {} entries, depth {}): at least that",
                usage::LIMITS.time.as_secs(),
                usage::LIMITS.entries,
                usage::LIMITS.depth
            ));
        }
        Ok(StepOk::new(StepOutput::FilesMeasured(usage)))
    }

    pub fn vhost_dir(data_root: &Path, server: &str) -> PathBuf {
        data_root
            .join("config")
            .join(server)
            .join("nginx")
            .join("vhost.d")
    }

    /// The http service's verify: only nginx vhosts are built, so only nginx is verified.
    async fn verify(
        &self,
        cmd: &StepCommand,
        spec: &HttpServiceSpec,
        ctx: &StepContext,
    ) -> Result<StepOk, StepError> {
        if spec.service_type != "nginx" {
            return Err(StepError::permanent(format!(
                "http service type `{}` is not supported: only nginx is",
                spec.service_type
            )));
        }
        let dir = Self::vhost_dir(&self.cfg.data_root, &cmd.server);
        ensure_dir(&dir, ctx).await?;
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
        Ok(StepOk::default())
    }
}

/// What a vhost step does to the site's vhost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VhostOp {
    /// `site-vhost`: the site served (or its disabled page).
    Serve,
    /// `site-vhost-remove`.
    Remove,
    /// `site-maintenance`.
    Maintenance,
}

/// Runs file work off the async threads; its lines go to the step's log.
async fn blocking(
    what: &str,
    ctx: &StepContext,
    work: impl FnOnce() -> Result<Vec<String>, StepError> + Send + 'static,
) -> Result<StepOk, StepError> {
    let log = tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StepError::permanent(format!("{what}: {e}")))??;
    log.into_iter().for_each(|l| ctx.info(l));
    Ok(StepOk::default())
}

impl StepHandler for HttpWorker {
    async fn handle(&self, cmd: &StepCommand, ctx: &StepContext) -> Result<StepOk, StepError> {
        let Work::Http(step) = &cmd.work else {
            return Err(StepError::permanent(format!(
                "a {} step (`{}`) reached the http worker: wrong worker",
                cmd.service(),
                cmd.action()
            )));
        };
        // Every action is here, and each says whether it runs drush (then it holds an
        // installer slot, taken after its arguments are checked).
        match step {
            HttpStep::Verify(spec) => self.verify(cmd, spec, ctx).await,
            HttpStep::PlatformVerify(spec) => site::verify_platform(spec, ctx).await,
            HttpStep::SiteFiles(s) => self.site_files(cmd, self.site_args(s)?, ctx).await,
            HttpStep::SiteFilesRemove(s) => self.site_files_remove(self.site_args(s)?, ctx).await,
            HttpStep::SiteInstall(s) => {
                let a = self.site_args(s)?;
                let _slot = self.installer_slot().await?;
                self.site_install(cmd, &a, ctx).await
            }
            HttpStep::SiteVhost(s) => {
                let a = self.site_args(s)?;
                self.site_vhost(cmd, &a, VhostOp::Serve, s.stash, ctx).await
            }
            HttpStep::SiteVhostRemove(s) => {
                let a = self.site_args(s)?;
                self.site_vhost(cmd, &a, VhostOp::Remove, s.stash, ctx)
                    .await
            }
            HttpStep::SiteMaintenance(s) => {
                let a = self.site_args(s)?;
                self.site_vhost(cmd, &a, VhostOp::Maintenance, true, ctx)
                    .await
            }
            HttpStep::SiteVhostRestore(s) => {
                let a = self.site_args(s)?;
                self.site_vhost_restore(cmd, &a, ctx).await
            }
            HttpStep::SitePackages(p) => {
                let a = self.site_args(&p.site)?;
                let _slot = self.installer_slot().await?;
                self.site_packages(cmd, &a, p.login, ctx).await
            }
            HttpStep::SiteLogin(s) => {
                let a = self.site_args(s)?;
                let _slot = self.installer_slot().await?;
                self.site_login(cmd, &a, ctx).await
            }
            HttpStep::SiteSwap(sw) => {
                self.site_swap(self.site_args(&sw.site)?, sw, false, ctx)
                    .await
            }
            HttpStep::SiteSwapBack(sw) => {
                self.site_swap(self.site_args(&sw.site)?, sw, true, ctx)
                    .await
            }
            HttpStep::SiteUpdatedb(sw) => {
                let a = self.site_args(&sw.site)?;
                let _slot = self.installer_slot().await?;
                self.site_updatedb(cmd, &a, sw, ctx).await
            }
            HttpStep::SiteCleanup(c) => {
                let a = self.site_args(&c.swap.site)?;
                self.site_cleanup(cmd, &a, c, ctx).await
            }
            HttpStep::SiteCronKey(s) => {
                let a = self.site_args(s)?;
                let (pw, key) = (self.site_password(cmd)?, self.cron_key(cmd)?);
                let _slot = self.installer_slot().await?;
                cron::give_key(&a, &pw, &key, ctx).await?;
                Ok(StepOk::default())
            }
            HttpStep::SiteCron(c) => {
                let a = self.site_args(&c.site)?;
                match c.method {
                    CronMethod::Drush => {
                        let pw = self.site_password(cmd)?;
                        let _slot = self.installer_slot().await?;
                        cron::by_drush(&a, &pw, ctx).await?;
                    }
                    CronMethod::Http => {
                        let key = self.cron_key(cmd)?;
                        // The site's PHP loads the server as drush would: one slot too.
                        let _slot = self.installer_slot().await?;
                        let warned =
                            cron::by_http(&c.site, &self.cfg.listen_address, &key, ctx).await?;
                        return Ok(StepOk {
                            warning: warned,
                            ..StepOk::default()
                        });
                    }
                }
                Ok(StepOk::default())
            }
            HttpStep::SiteDrillCheck(d) => {
                // Both names checked as any site's: they go into a Host header.
                let (drill, original) = (self.site_args(&d.drill)?, self.site_args(&d.original)?);
                if drill.uri == original.uri {
                    return Err(StepError::permanent(
                        "a drill site cannot have the name of the site it checks",
                    ));
                }
                // The sites' PHP answers: one slot, as for an HTTP cron.
                let _slot = self.installer_slot().await?;
                drill::check(d, &self.cfg.listen_address, ctx).await
            }
            HttpStep::SiteUsage(s) => {
                let a = self.site_args(s)?;
                self.site_usage(a, ctx).await
            }
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
