//! PostgreSQL access for berth's state: servers, platforms, sites and their packages, tasks, steps, logs, the outbox, dead
//! letters, API tokens and idempotency keys.
//!
//! Functions that must compose into one transaction take `&mut PgConnection`; the API and
//! the state service open the transactions. Migrations are embedded and applied at start.

pub mod audit;
pub mod clients;
pub mod cron;
pub mod dead;
pub mod idempotency;
pub mod metrics;
pub mod notices;
pub mod offsite;
pub mod outbox;
pub mod platforms;
pub mod retention;
pub mod schedules;
pub mod servers;
pub mod site_names;
pub mod sites;
pub mod tasks;
pub mod tokens;
pub mod webhooks;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};
use std::str::FromStr;
use std::time::Duration;

pub use sqlx::PgConnection;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

#[derive(Clone, Debug)]
pub struct Store {
    pub pool: PgPool,
}

impl Store {
    /// Connects and applies the migrations (idempotent; concurrent starts are serialised by
    /// sqlx's migration lock).
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self> {
        let opts = PgConnectOptions::from_str(url)?
            .log_statements(tracing::log::LevelFilter::Trace)
            .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(1));
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(Self { pool })
    }

    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

/// Is this error a unique-constraint violation (SQLSTATE 23505)?
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some("23505"))
}

/// A unique-constraint violation becomes a [`StoreError::Conflict`] saying `why`.
pub(crate) fn conflict_on_unique(e: sqlx::Error, why: impl FnOnce() -> String) -> StoreError {
    if is_unique_violation(&e) {
        StoreError::Conflict(why())
    } else {
        e.into()
    }
}
