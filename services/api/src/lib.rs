//! The REST API (`/api/v1`) and the outbox relay that publishes what it accepts.
//!
//! Every request but the operations endpoints carries a bearer token; every POST may carry
//! an `Idempotency-Key`; every error is problem+json. Accepting a task writes the task and
//! its outbox row in one transaction ([`intake`], which every route that queues a task
//! calls): what is answered 202 is never lost.

pub mod error;
pub mod guard;
pub mod intake;
mod login_link;
pub mod routes;
pub mod scopes;
pub mod visible;

use axum::Router;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use berth_broker::Broker;
use berth_outbox::{Outbox, Relay};
use berth_secrets::SecretKey;
use berth_store::Store;
use error::ApiError;
use std::net::SocketAddr;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub listen: SocketAddr,
    pub database_url: String,
    pub amqp_url: String,
    pub secret_key: SecretKey,
    pub diagnostics: bool,
    pub max_body_bytes: usize,
    /// Delete may run on an enabled site (Aegir's "Require site to be disabled before
    /// deletion", unchecked).
    pub delete_enabled_sites: bool,
    /// Tasks waiting to start (`queued`) beyond which new tasks are refused with a 503 and
    /// Retry-After, so that a backlog stays bounded in PostgreSQL and the broker; 0: no limit.
    pub max_queued_tasks: u64,
    /// berth's data root (BERTH_DATA_ROOT, the same on every host): no platform root may be
    /// it or inside it, but for `<data root>/platforms/`.
    pub data_root: std::path::PathBuf,
    /// How long steps may wait for a worker (the queues it declares, the steps it publishes).
    pub limits: berth_broker::topology::Limits,
    /// Drill sites are named under it; no site or alias may be (`BERTH_DRILL_DOMAIN`).
    pub drill_domain: String,
    /// Webhook URLs may resolve to loopback and private addresses
    /// (`BERTH_WEBHOOKS_ALLOW_PRIVATE`).
    pub webhooks_allow_private: bool,
    /// How long a rotated webhook secret still signs (`BERTH_WEBHOOKS_ROTATION_GRACE_S`).
    pub webhooks_rotation_grace: std::time::Duration,
}

tokio::task_local! {
    /// The (token, Idempotency-Key) claim of the request being answered, if it has one.
    pub(crate) static IDEMPOTENCY_CLAIM: (Uuid, String);
}

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub broker: Broker,
    /// Publishes, right after commit, the outbox rows a request wrote.
    pub outbox: Outbox,
    pub secret_key: SecretKey,
    pub diagnostics: bool,
    pub max_body_bytes: usize,
    pub delete_enabled_sites: bool,
    /// [`ApiConfig::max_queued_tasks`]: past it, the intake refuses new tasks (503).
    pub max_queued_tasks: u64,
    pub data_root: std::path::PathBuf,
    pub drill_domain: String,
    pub webhooks_allow_private: bool,
    pub webhooks_rotation_grace: std::time::Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiServiceError {
    #[error("cannot bind {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    #[error(transparent)]
    Store(#[from] berth_store::StoreError),
    #[error(transparent)]
    Broker(#[from] berth_broker::BrokerError),
    #[error("server: {0}")]
    Serve(std::io::Error),
}

/// The routes, with authentication on `/api/v1` (but not on the OpenAPI document).
pub fn router(state: AppState) -> Router {
    use routes::{
        audit, backup_targets, clients, dead, ops, platforms, retention, schedules, servers, sites,
        tasks, tokens, webhooks,
    };
    let v1 = Router::new()
        .route("/servers", post(servers::create).get(servers::list))
        .route(
            "/servers/{name}",
            get(servers::show)
                .patch(servers::change)
                .delete(servers::delete),
        )
        .route("/platforms", post(platforms::create).get(platforms::list))
        .route(
            "/platforms/{name}",
            get(platforms::show).delete(platforms::delete),
        )
        .route("/platforms/{name}/packages", get(platforms::packages))
        .route("/platforms/{name}/compare/{other}", get(platforms::compare))
        .route("/platforms/{name}/migrate", post(platforms::migrate))
        .route("/platforms/{name}/lock", post(platforms::lock))
        .route("/platforms/{name}/unlock", post(platforms::unlock))
        .route("/sites", post(sites::create).get(sites::list))
        .route(
            "/sites/{uri}",
            get(sites::show).patch(sites::change).delete(sites::delete),
        )
        .route("/sites/{uri}/packages", get(sites::packages))
        .route("/sites/{uri}/backups", get(sites::backups))
        .route("/sites/{uri}/retention", get(retention::preview))
        .route("/sites/{uri}/migrate-plan", get(sites::migrate_plan))
        .route(
            "/backup-targets",
            post(backup_targets::create).get(backup_targets::list),
        )
        .route(
            "/backup-targets/{name}",
            get(backup_targets::show)
                .patch(backup_targets::change)
                .delete(backup_targets::remove),
        )
        .route("/tasks", post(tasks::create).get(tasks::list))
        .route("/tasks/{id}", get(tasks::show))
        .route("/tasks/{id}/log", get(tasks::log))
        .route("/tasks/{id}/cancel", post(tasks::cancel))
        .route("/tasks/{id}/retry", post(tasks::retry))
        .route("/schedules", post(schedules::create).get(schedules::list))
        .route(
            "/schedules/{name}",
            get(schedules::show)
                .patch(schedules::change)
                .delete(schedules::delete),
        )
        .route("/schedules/{name}/runs", get(schedules::runs))
        .route("/schedule-alerts", get(schedules::alerts))
        .route("/webhooks", post(webhooks::create).get(webhooks::list))
        .route(
            "/webhooks/{id}",
            get(webhooks::show)
                .patch(webhooks::change)
                .delete(webhooks::remove),
        )
        .route(
            "/webhooks/{id}/rotate-secret",
            post(webhooks::rotate_secret),
        )
        .route("/webhooks/{id}/deliveries", get(webhooks::deliveries))
        .route(
            "/webhook-deliveries/{id}/redeliver",
            post(webhooks::redeliver),
        )
        .route("/dead-letters", get(dead::list))
        .route("/dead-letters/{id}", get(dead::show).delete(dead::discard))
        .route("/dead-letters/{id}/replay", post(dead::replay))
        .route("/clients", post(clients::create).get(clients::list))
        .route("/clients/{name}", get(clients::show).patch(clients::change))
        .route("/clients/{name}/suspend", post(clients::suspend))
        .route("/clients/{name}/unsuspend", post(clients::unsuspend))
        .route("/clients/{name}/cancel", post(clients::cancel))
        .route("/tokens", post(tokens::create).get(tokens::list))
        .route("/tokens/{id}", axum::routing::delete(tokens::revoke))
        .route("/audit", get(audit::list))
        // Outermost first: who is asking; the audit entry (written after the answer, so it
        // records refusals too); may they; the body and Idempotency-Key; the handler.
        .layer(from_fn_with_state(
            state.clone(),
            guard::body_and_idempotency,
        ))
        .layer(axum::middleware::from_fn(guard::authorize))
        .layer(from_fn_with_state(state.clone(), guard::audit))
        .layer(from_fn_with_state(state.clone(), guard::authenticate))
        .route("/openapi.json", get(ops::openapi));
    Router::new()
        .nest("/api/v1", v1)
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state)
}

/// Serves the API on `listener`, and publishes its outbox rows, until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    cfg: ApiConfig,
    shutdown: CancellationToken,
) -> Result<(), ApiServiceError> {
    let store = Store::connect(&cfg.database_url, 16).await?;
    let broker = Broker::new(&cfg.amqp_url).with_limits(cfg.limits);
    let (relay, outbox) = Relay::new(store.clone(), broker.clone());
    let relay_task = tokio::spawn(relay.run(shutdown.clone()));
    let state = AppState {
        store,
        broker,
        outbox,
        secret_key: cfg.secret_key.clone(),
        diagnostics: cfg.diagnostics,
        max_body_bytes: cfg.max_body_bytes,
        delete_enabled_sites: cfg.delete_enabled_sites,
        max_queued_tasks: cfg.max_queued_tasks,
        data_root: cfg.data_root.clone(),
        drill_domain: cfg.drill_domain.clone(),
        webhooks_allow_private: cfg.webhooks_allow_private,
        webhooks_rotation_grace: cfg.webhooks_rotation_grace,
    };
    tracing::info!(addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "API listening");
    let s = shutdown.clone();
    let served = axum::serve(listener, router(state))
        .with_graceful_shutdown(async move { s.cancelled().await })
        .await
        .map_err(ApiServiceError::Serve);
    shutdown.cancel();
    let _ = relay_task.await;
    served
}

pub async fn run(cfg: ApiConfig, shutdown: CancellationToken) -> Result<(), ApiServiceError> {
    let listener = TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| ApiServiceError::Bind(cfg.listen, e))?;
    serve(listener, cfg, shutdown).await
}
