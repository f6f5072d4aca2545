//! The http worker: web server configuration on one or more servers. It verifies a
//! server's web service (its configuration directories exist, made if missing as Aegir's
//! verify fixes what it can, and `nginx -t` accepts the configuration), verifies platforms
//! (permissions, package scan), and installs and serves sites: site directory and cloaked
//! settings, the installer, vhosts through coalesced reloads, login links, package maps.

pub mod pool;
pub mod reload;
pub mod scan;
pub mod site;
pub mod vhost;

use berth_broker::worker::{StepContext, StepError, StepHandler, StepOk, WorkerConfig, run_worker};
use berth_command::{ensure_dir, run_checked};
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
        key.open_site_password(&cmd.secrets)
            .map_err(|e| StepError::permanent(format!("the site's password: {e}")))
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
        Ok(StepOk::new(serde_json::json!({
            "reload": report.reload, "batch": report.batch
        })))
    }

    async fn site_step(&self, cmd: &StepCommand, ctx: &StepContext) -> Result<StepOk, StepError> {
        let a = site::SiteArgs::parse(&cmd.args, &self.cfg.data_root)?;
        // Steps that run drush take an installer slot; the others (files, vhosts) do not.
        let _slot = match cmd.action.as_str() {
            "site-install" | "site-packages" | "site-login" | "site-updatedb" => Some(
                self.installer_slots
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| StepError::transient("the worker is stopping"))?,
            ),
            _ => None,
        };
        match cmd.action.as_str() {
            "site-files" => {
                let installing = cmd.task_type == "install";
                let a2 = a.clone();
                let log =
                    tokio::task::spawn_blocking(move || site::write_site_files(&a2, installing))
                        .await
                        .map_err(|e| StepError::permanent(format!("site files: {e}")))??;
                log.into_iter().for_each(|l| ctx.info(l));
                Ok(StepOk::default())
            }
            "site-files-remove" => {
                let a2 = a.clone();
                let log = tokio::task::spawn_blocking(move || site::remove_site_files(&a2))
                    .await
                    .map_err(|e| StepError::permanent(format!("site files: {e}")))??;
                log.into_iter().for_each(|l| ctx.info(l));
                Ok(StepOk::default())
            }
            "site-install" => {
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
                site::drush(&a, &pw, &args, ctx).await?;
                ctx.info(format!(
                    "{} installed with profile {} ({})",
                    a.uri, a.profile, a.language
                ));
                Ok(StepOk::default())
            }
            "site-vhost" | "site-vhost-remove" | "site-maintenance" => {
                let path = site::vhost_path(&self.cfg, &cmd.server, &a.uri);
                let maintenance = cmd.action == "site-maintenance";
                if maintenance || cmd.args.get("stash").and_then(|v| v.as_bool()) == Some(true) {
                    site::stash_vhost(&path, cmd.step_id)?;
                }
                let removing = cmd.action == "site-vhost-remove";
                let change = if removing {
                    site::removal_change(&self.cfg, &cmd.server, &a, path.clone())
                } else if maintenance {
                    // The maintenance page needs no credentials, nor PHP.
                    let text = site::render_site_vhost(&self.cfg, &a, "", true);
                    site::vhost_change(path.clone(), Some(text))
                } else {
                    let pw = self.site_password(cmd)?;
                    let a2 = a.clone();
                    let log = tokio::task::spawn_blocking(move || site::prepare_site(&a2))
                        .await
                        .map_err(|e| StepError::permanent(format!("site owners: {e}")))??;
                    log.into_iter().for_each(|l| ctx.info(l));
                    let text = site::render_site_vhost(&self.cfg, &a, &pw, false);
                    site::serving_change(&self.cfg, &cmd.server, &a, path.clone(), text)?
                };
                let what = match (removing, a.disabled, maintenance) {
                    (true, _, _) => "removed",
                    (_, _, true) => "written (maintenance page)",
                    (_, true, _) => "written (site disabled)",
                    _ => "written",
                };
                let pool = site::pool_effect(&change, removing);
                let out = self
                    .reload(path.clone(), change, &format!("{what}{pool}"), ctx)
                    .await;
                if removing && !pool.is_empty() && out.is_ok() {
                    site::remove_site_tmp(&a, ctx);
                }
                if out.is_err() {
                    // The reloader put the vhost back; a failed step is not taken back, so
                    // what it kept for its compensation goes now.
                    site::drop_stash(&path, cmd.step_id);
                }
                out
            }
            "site-vhost-restore" => {
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
                                site::removal_change(&self.cfg, &cmd.server, &a, path.clone()),
                            ),
                        };
                        let pool = site::pool_effect(&change, true);
                        let out = self
                            .reload(path.clone(), change, &format!("{what}{pool}"), ctx)
                            .await?;
                        if !pool.is_empty() {
                            site::remove_site_tmp(&a, ctx);
                        }
                        site::drop_stash(&path, cmd.step_id);
                        Ok(out)
                    }
                }
            }
            "site-swap" | "site-swap-back" => {
                let a2 = a.clone();
                let args = cmd.args.clone();
                let swap = cmd.action == "site-swap";
                let log = tokio::task::spawn_blocking(move || {
                    if swap {
                        site::swap_site_dir(&a2, &args)
                    } else {
                        site::swap_back_site_dir(&a2, &args)
                    }
                })
                .await
                .map_err(|e| StepError::permanent(format!("swap: {e}")))??;
                log.into_iter().for_each(|l| ctx.info(l));
                Ok(StepOk::default())
            }
            "site-updatedb" => {
                let pw = self.site_password(cmd)?;
                site::drush(&a, &pw, &["updatedb", "-y"], ctx).await?;
                if let Some(from) = cmd.args.get("renamed_from").and_then(|v| v.as_str()) {
                    site::fix_file_paths(&a, &pw, from, ctx).await?;
                }
                site::drush(&a, &pw, &["cache:rebuild"], ctx).await?;
                ctx.info(format!("{}: database updated, caches rebuilt", a.uri));
                Ok(StepOk::default())
            }
            "site-cleanup" => {
                let path = site::vhost_path(&self.cfg, &cmd.server, &a.uri);
                for l in site::cleanup_after_restore(&a, &cmd.args) {
                    ctx.info(l);
                }
                let mut n = site::drop_all_stashes(&path);
                // A renamed site's old vhost goes too; a failure here is only reported:
                // the task is done.
                if let Some(old) = cmd.args.get("old_uri").and_then(|v| v.as_str())
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
            "site-packages" => {
                let pw = self.site_password(cmd)?;
                let packages = site::site_packages(&a, &pw, ctx).await?;
                ctx.info(format!(
                    "{} package(s) enabled on {}",
                    packages.len(),
                    a.uri
                ));
                let mut out = serde_json::json!({"packages": packages});
                if cmd.args.get("login").and_then(|v| v.as_bool()) == Some(true) {
                    out["login_link"] = site::login_link(&a, &pw, ctx).await?.into();
                    ctx.info("one-time login link made");
                }
                Ok(StepOk::new(out))
            }
            "site-login" => {
                let pw = self.site_password(cmd)?;
                let link = site::login_link(&a, &pw, ctx).await?;
                ctx.info("one-time login link made");
                Ok(StepOk::new(serde_json::json!({"login_link": link})))
            }
            other => Err(StepError::permanent(format!(
                "the http worker has no action `{other}`"
            ))),
        }
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

impl StepHandler for HttpWorker {
    async fn handle(&self, cmd: &StepCommand, ctx: &StepContext) -> Result<StepOk, StepError> {
        match cmd.action.as_str() {
            "verify" => self.verify(cmd, ctx).await,
            "platform-verify" => site::verify_platform(cmd, ctx).await,
            a if a.starts_with("site-") => self.site_step(cmd, ctx).await,
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
