//! `berth serve <service>|all`: builds each service's configuration from the settings and
//! runs it until SIGTERM or SIGINT cancels the shutdown token. `all` runs every service in
//! this process, each in its own task; when one fails the others are cancelled and the
//! process exits non-zero. A second signal exits at once.

use crate::config::{ConfigError, Settings};
use anyhow::Context as _;
use berth_broker::worker::WorkerConfig;
use clap::ValueEnum;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum)]
pub enum Service {
    /// The REST API and its outbox relay.
    Api,
    /// The task state machine (dispatcher) and its outbox relay.
    State,
    /// The http worker (web server configuration).
    Http,
    /// The db worker (site databases and users).
    Db,
    /// The dns worker (zones and records).
    Dns,
    /// The backup worker (tarballs).
    Backup,
    /// The scheduler (cron, scheduled backups, retention, drills) and its outbox relay.
    Scheduler,
    /// Outbound notices: signed webhook deliveries, with their retries.
    Notices,
    /// All of the above in one process.
    All,
}

impl Service {
    pub const EACH: [Service; 8] = [
        Self::Api,
        Self::State,
        Self::Http,
        Self::Db,
        Self::Dns,
        Self::Backup,
        Self::Scheduler,
        Self::Notices,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::State => "state",
            Self::Http => "http",
            Self::Db => "db",
            Self::Dns => "dns",
            Self::Backup => "backup",
            Self::Scheduler => "scheduler",
            Self::Notices => "notices",
            Self::All => "all",
        }
    }

    /// The services this runs: itself, or every one for `all`.
    pub fn units(self) -> Vec<Service> {
        match self {
            Self::All => Self::EACH.to_vec(),
            one => vec![one],
        }
    }

    /// Name given to telemetry: `berth-api`, …, `berth-all`.
    pub fn telemetry_name(self) -> String {
        format!("berth-{}", self.as_str())
    }

    /// The api and the scheduler seal passwords and keys for the tasks they queue; the http,
    /// db and backup workers open them; notices opens the webhook secrets.
    fn needs_secret_key(self) -> bool {
        matches!(
            self,
            Self::Api
                | Self::Http
                | Self::Db
                | Self::Backup
                | Self::Scheduler
                | Self::Notices
                | Self::All
        )
    }
}

impl std::fmt::Display for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

type Running = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// A worker's configuration for `service` from the settings.
fn worker_config(s: &Settings, service: &str, shared: bool) -> WorkerConfig {
    let mut w = WorkerConfig::new(s.amqp_url.clone(), service, s.servers.clone());
    w.concurrency = s.concurrency;
    w.retry_delays_ms = s.retry_delays_ms.clone();
    w.worker_name = s.worker_name(service, shared);
    w.diagnostics = s.diagnostics;
    w.step_timeout = std::time::Duration::from_secs(s.step_timeout_s);
    w.limits = limits(s);
    w
}

/// How long steps may wait for a worker, from the settings.
fn limits(s: &Settings) -> berth_broker::topology::Limits {
    berth_broker::topology::Limits::from_secs(s.step_queue_ttl_s, s.no_worker_grace_s)
}

/// The future that runs one service; checks its configuration first.
fn start(
    unit: Service,
    s: &Settings,
    shared: bool,
    shutdown: CancellationToken,
) -> anyhow::Result<Running> {
    let name = unit.as_str();
    Ok(match unit {
        Service::Api => {
            let cfg = berth_api::ApiConfig {
                listen: s.listen,
                database_url: s.database_url.clone(),
                amqp_url: s.amqp_url.clone(),
                secret_key: s.secret_key("`berth serve api` (it seals db passwords)")?,
                diagnostics: s.diagnostics,
                max_body_bytes: s.max_body_bytes,
                delete_enabled_sites: s.delete_enabled_sites,
                max_queued_tasks: s.max_queued_tasks,
                data_root: s.data_root.clone(),
                limits: limits(s),
                drill_domain: s.drill_domain.clone(),
                webhooks_allow_private: s.webhooks_allow_private,
                webhooks_rotation_grace: std::time::Duration::from_secs(
                    s.webhooks_rotation_grace_s,
                ),
            };
            Box::pin(async move { Ok(berth_api::run(cfg, shutdown).await?) })
        }
        Service::State => {
            let cfg = berth_state::StateConfig {
                database_url: s.database_url.clone(),
                amqp_url: s.amqp_url.clone(),
                concurrency: s.concurrency,
                limits: limits(s),
                drill_domain: s.drill_domain.clone(),
            };
            Box::pin(async move { Ok(berth_state::run(cfg, shutdown).await?) })
        }
        Service::Http => {
            let mut worker = worker_config(s, name, shared);
            worker.concurrency = s.http_concurrency;
            let cfg = berth_http::HttpConfig {
                worker,
                data_root: s.data_root.clone(),
                nginx_bin: s.nginx_bin.clone(),
                nginx_conf: s.nginx_conf.clone(),
                secret_key: Some(
                    s.secret_key("`berth serve http` (it opens sites' sealed db passwords)")?,
                ),
                php_fpm_bin: s.php_fpm_bin.clone(),
                php_fpm_conf: s.php_fpm_conf.clone(),
                fastcgi_params: s.nginx_fastcgi_params.clone(),
                listen_address: s.http_listen_address.clone(),
                reload_window: std::time::Duration::from_millis(s.reload_window_ms),
                reload_max_wait: std::time::Duration::from_millis(s.reload_max_wait_ms),
                installer_slots: s.installer_slots,
            };
            Box::pin(async move { Ok(berth_http::run(cfg, shutdown).await?) })
        }
        Service::Db => {
            let cfg = berth_db::DbConfig {
                worker: worker_config(s, name, shared),
                secret_key: s.secret_key("`berth serve db` (it opens sealed db passwords)")?,
            };
            Box::pin(async move { Ok(berth_db::run(cfg, shutdown).await?) })
        }
        Service::Dns => {
            let cfg = berth_dns::DnsConfig {
                worker: worker_config(s, name, shared),
                data_root: s.data_root.clone(),
                checkconf_bin: s.named_checkconf_bin.clone(),
                named_conf: s.named_conf.clone(),
                checkzone_bin: s.named_checkzone_bin.clone(),
                rndc_bin: s.rndc_bin.clone(),
                rndc_conf: s.rndc_conf.clone(),
            };
            Box::pin(async move { Ok(berth_dns::run(cfg, shutdown).await?) })
        }
        Service::Backup => {
            let cfg = berth_backup::BackupConfig {
                worker: worker_config(s, name, shared),
                secret_key: s
                    .secret_key("`berth serve backup` (it opens sites' sealed db passwords)")?,
                backups_dir: s.backups_dir.clone(),
                dump_bin: s.dump_bin.clone(),
                client_bin: s.mysql_client_bin.clone(),
            };
            Box::pin(async move { Ok(berth_backup::run_with(cfg, shutdown).await?) })
        }
        Service::Scheduler => {
            let cfg = berth_scheduler::SchedulerConfig {
                database_url: s.database_url.clone(),
                amqp_url: s.amqp_url.clone(),
                tick: std::time::Duration::from_millis(s.scheduler_tick_ms),
                max_queued_tasks: s.max_queued_tasks,
                secret_key: s.secret_key(
                    "`berth serve scheduler` (it seals the keys of the tasks it queues)",
                )?,
                run_history: chrono::Duration::days(s.schedule_run_history_days as i64),
                limits: limits(s),
            };
            Box::pin(async move { Ok(berth_scheduler::run(cfg, shutdown).await?) })
        }
        Service::Notices => {
            let mut tiers = vec![std::time::Duration::ZERO];
            tiers.extend(
                s.webhooks_retry_ms
                    .iter()
                    .map(|ms| std::time::Duration::from_millis(*ms)),
            );
            let cfg = berth_notices::NoticesConfig {
                database_url: s.database_url.clone(),
                amqp_url: s.amqp_url.clone(),
                secret_key: s.secret_key("`berth serve notices` (it opens webhook secrets)")?,
                concurrency: s.webhooks_concurrency,
                retry: berth_webhook::RetrySchedule {
                    tiers,
                    max_retry_after: std::time::Duration::from_secs(s.webhooks_max_retry_after_s),
                },
                timeout: std::time::Duration::from_millis(s.webhooks_timeout_ms),
                allow_private: s.webhooks_allow_private,
                sweep_every: std::time::Duration::from_secs(s.webhooks_sweep_s),
                log_keep: std::time::Duration::from_secs(s.webhooks_log_keep_s),
                mail: berth_notices::mail::MailConfig {
                    relay: s.smtp_url.clone(),
                    from: s.mail_from.clone(),
                },
            };
            Box::pin(async move { Ok(berth_notices::run(cfg, shutdown).await?) })
        }
        Service::All => unreachable!("`all` is split into its services"),
    })
}

/// Cancels `shutdown` on the first SIGTERM or SIGINT; exits at once on the second.
fn watch_signals(shutdown: CancellationToken) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(
            signal = name,
            "shutting down: finishing the work in hand (signal again to exit now)"
        );
        shutdown.cancel();
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::warn!(signal = name, "second signal: exiting without waiting");
        std::process::exit(130);
    });
    Ok(())
}

/// What the settings must hold for `service` beyond what they always hold; checked
/// before anything starts, so that `all` does not half start.
pub fn check(service: Service, settings: &Settings) -> Result<(), ConfigError> {
    if service.needs_secret_key() {
        settings.secret_key(&format!("`berth serve {service}`"))?;
    }
    Ok(())
}

/// Runs `service` until a signal, or until one of its parts fails.
pub async fn run(service: Service, settings: Settings) -> anyhow::Result<()> {
    check(service, &settings)?;
    let shutdown = CancellationToken::new();
    watch_signals(shutdown.clone())?;

    let units = service.units();
    let shared = units.len() > 1;
    tracing::info!(
        service = %service,
        listen = %settings.listen,
        servers = %settings.servers.join(","),
        config = %settings.file.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "(environment only)".into()),
        version = env!("CARGO_PKG_VERSION"),
        "berth starting"
    );

    let mut set = JoinSet::new();
    let mut names = HashMap::new();
    for unit in units {
        let fut = start(unit, &settings, shared, shutdown.clone())?;
        let handle = set.spawn(fut);
        names.insert(handle.id(), unit);
    }

    let mut failures: Vec<String> = Vec::new();
    while let Some(joined) = set.join_next_with_id().await {
        let (unit, outcome) = match joined {
            Ok((id, res)) => (names[&id], res),
            Err(e) => (
                names[&e.id()],
                Err(anyhow::anyhow!(if e.is_panic() {
                    "panicked"
                } else {
                    "was aborted"
                })),
            ),
        };
        match outcome {
            Ok(()) if shutdown.is_cancelled() => {
                tracing::info!(service = %unit, "stopped");
            }
            Ok(()) => {
                tracing::error!(service = %unit, "stopped on its own; stopping the others");
                failures.push(format!("{unit} stopped on its own"));
                shutdown.cancel();
            }
            Err(e) => {
                tracing::error!(service = %unit, error = format!("{e:#}"), "failed; stopping the others");
                failures.push(format!("{unit}: {e:#}"));
                shutdown.cancel();
            }
        }
    }
    if failures.is_empty() {
        tracing::info!("berth stopped");
        Ok(())
    } else {
        anyhow::bail!("{}", failures.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap as Map;

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        let env: Map<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_sources(&env, None).unwrap()
    }

    #[test]
    fn worker_configs_come_from_the_settings() {
        let s = settings(&[
            ("BERTH_SERVERS", "server_master,server_webexamplecom"),
            ("BERTH_CONCURRENCY", "3"),
            ("BERTH_RETRY_DELAYS_MS", "10,20"),
            ("BERTH_DIAGNOSTICS", "true"),
            ("BERTH_WORKER_NAME", "w1"),
        ]);
        let w = worker_config(&s, "http", true);
        assert_eq!(w.service, "http");
        assert_eq!(w.servers, vec!["server_master", "server_webexamplecom"]);
        assert_eq!(w.concurrency, 3);
        assert_eq!(w.retry_delays_ms, vec![10, 20]);
        assert_eq!(w.worker_name, "http@w1");
        assert!(w.diagnostics);
        assert_eq!(w.amqp_url, s.amqp_url);
    }

    #[test]
    fn all_is_every_service_and_names_its_telemetry() {
        assert_eq!(Service::All.units().len(), 8);
        assert_eq!(Service::Db.units(), vec![Service::Db]);
        assert_eq!(Service::Api.telemetry_name(), "berth-api");
        assert_eq!(Service::All.telemetry_name(), "berth-all");
    }

    #[tokio::test]
    async fn the_services_that_seal_or_open_passwords_refuse_to_start_without_the_secret_key() {
        for svc in [
            Service::Api,
            Service::Http,
            Service::Db,
            Service::Backup,
            Service::Scheduler,
            Service::Notices,
            Service::All,
        ] {
            // Checked before telemetry and the runtime start, as `berth serve` does.
            let err = check(svc, &settings(&[])).unwrap_err().to_string();
            assert!(err.contains("BERTH_SECRET_KEY is required"), "{svc}: {err}");
            let err = run(svc, settings(&[])).await.unwrap_err().to_string();
            assert!(
                err.contains("every api, scheduler, notices, http, db and backup process"),
                "{svc}: {err}"
            );
            assert!(
                err.contains(&format!("`berth serve {svc}`")),
                "{svc}: {err}"
            );
        }
    }

    #[test]
    fn state_and_dns_start_without_the_secret_key() {
        for svc in [Service::State, Service::Dns] {
            assert!(check(svc, &settings(&[])).is_ok(), "{svc}");
        }
    }
}
