//! The backup worker: site tarballs, as Aegir makes them (the site directory with an
//! uncloaked settings.php, plus `database.sql`), stored in the backups directory of the
//! web server the site runs on.
//!
//! Actions:
//! - `site-backup`: the site description (`uri`, `root`, `db {host, port, name, user}`)
//!   plus `backup {file, compression, description}`; the site's database password sealed
//!   in `secrets.site_db`. Output `{file, path, size, sha256, compression}`.
//! - `backup-delete`: `{path}`, a file directly inside the backups directory.
//! - `backup-extract`: `{path, target_dir, db}` plus `secrets.site_db` (the target user's
//!   password): unpacks into a new directory and imports the dump.
//! - `backup-extract-remove`: `{target_dir}`, the compensation of `backup-extract`.
//!
//! The work is done by plain async functions ([`backup_site`], [`extract_backup`],
//! [`delete_backup`]) that the step handler wraps.

mod archive;
mod mysql;

pub use archive::{
    BackupArgs, BackupOutput, Compression, EXTRACT_MARKER, ExtractArgs, ExtractOutput, backup_site,
    delete_backup, extract_backup, strip_definers, uncloak_settings,
};
pub use mysql::DbTarget;

use berth_broker::worker::{StepContext, StepError, StepHandler, StepOk, WorkerConfig, run_worker};
use berth_contracts::StepCommand;
use berth_secrets::SecretKey;
use std::path::PathBuf;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// The backup worker's configuration.
#[derive(Debug, Clone)]
pub struct BackupConfig {
    pub worker: WorkerConfig,
    /// Opens the sealed site database passwords that come with the steps.
    pub secret_key: SecretKey,
    /// Where the tarballs go (made 0700 if absent), e.g. `/var/berth/backups`.
    pub backups_dir: PathBuf,
    /// The dump program: `mariadb-dump` (or `mysqldump`).
    pub dump_bin: String,
    /// The client program that imports dumps: `mariadb` (or `mysql`).
    pub client_bin: String,
}

impl BackupConfig {
    /// The archiver with this configuration's directory and programs, default tuning.
    pub fn archiver(&self) -> Archiver {
        Archiver::new(
            self.backups_dir.clone(),
            self.dump_bin.clone(),
            self.client_bin.clone(),
        )
    }
}

/// What the archive functions need: where tarballs go, the programs, the compressors'
/// settings.
#[derive(Debug, Clone)]
pub struct Archiver {
    pub backups_dir: PathBuf,
    pub dump_bin: String,
    pub client_bin: String,
    /// zstd level (3).
    pub zstd_level: i32,
    /// zstd worker threads; 0: one per core (the default).
    pub zstd_threads: u32,
    /// gzip level (6, as gzip's own default).
    pub gzip_level: u32,
}

impl Archiver {
    pub fn new(
        backups_dir: impl Into<PathBuf>,
        dump_bin: impl Into<String>,
        client_bin: impl Into<String>,
    ) -> Self {
        Self {
            backups_dir: backups_dir.into(),
            dump_bin: dump_bin.into(),
            client_bin: client_bin.into(),
            zstd_level: 3,
            zstd_threads: 0,
            gzip_level: 6,
        }
    }
}

/// Why an archive function failed: the step error it becomes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackupError {
    #[error("{0}")]
    Permanent(String),
    #[error("{0}")]
    Transient(String),
}

impl BackupError {
    pub fn permanent(m: impl std::fmt::Display) -> Self {
        Self::Permanent(m.to_string())
    }
    pub fn transient(m: impl std::fmt::Display) -> Self {
        Self::Transient(m.to_string())
    }
    pub fn bad(m: impl std::fmt::Display) -> Self {
        Self::Permanent(format!("bad step arguments: {m}"))
    }
    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::Permanent(_))
    }
}

impl From<BackupError> for StepError {
    fn from(e: BackupError) -> Self {
        match e {
            BackupError::Permanent(m) => StepError::Permanent(m),
            BackupError::Transient(m) => StepError::Transient(m),
        }
    }
}

pub struct BackupWorker {
    secret_key: SecretKey,
    archiver: Archiver,
}

impl BackupWorker {
    pub fn new(cfg: &BackupConfig) -> Self {
        Self {
            secret_key: cfg.secret_key.clone(),
            archiver: cfg.archiver(),
        }
    }

    fn site_password(key: &SecretKey, cmd: &StepCommand) -> Result<String, StepError> {
        key.open_site_password(&cmd.secrets)
            .map_err(|e| StepError::permanent(format!("the site's password: {e}")))
    }
}

/// `backup-extract` of a backup made earlier in the same task knows only its file name
/// (`file`): the path is the tarball of that name in this worker's backups directory.
/// For a delete's backup (`files_may_be_gone`): the site directory is gone, so an earlier
/// run of the delete removed it after taking its backup; there is nothing left to pack.
fn files_gone(args: &serde_json::Value) -> Option<String> {
    if args
        .get("files_may_be_gone")
        .and_then(serde_json::Value::as_bool)
        != Some(true)
    {
        return None;
    }
    let dir = archive::BackupArgs::parse(args).ok()?.site_dir();
    (!dir.exists()).then(|| {
        format!(
            "{} is gone (an earlier run of this delete removed it after its backup): \
             no backup taken",
            dir.display()
        )
    })
}

fn with_backup_path(
    a: &Archiver,
    args: &serde_json::Value,
) -> Result<serde_json::Value, StepError> {
    if args.get("path").is_some() {
        return Ok(args.clone());
    }
    let file = args
        .get("file")
        .and_then(|v| v.as_str())
        .filter(|f| !f.is_empty() && !f.contains('/') && !f.starts_with('.'))
        .ok_or_else(|| {
            StepError::permanent("backup-extract needs a `path` or a plain `file` name")
        })?;
    let found = ["tar.zst", "tar.gz"]
        .iter()
        .map(|ext| a.backups_dir.join(format!("{file}.{ext}")))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            StepError::permanent(format!("no backup {file} in {}", a.backups_dir.display()))
        })?;
    let mut out = args.clone();
    out["path"] = serde_json::json!(found.display().to_string());
    Ok(out)
}

/// Runs `work` with a log whose lines go to the task log at once (`ctx.progress`).
async fn with_progress<T, Fut>(
    ctx: &StepContext,
    work: impl FnOnce(Box<dyn Fn(String) + Send + Sync>) -> Fut,
) -> T
where
    Fut: std::future::Future<Output = T>,
{
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let log: Box<dyn Fn(String) + Send + Sync> = Box::new(move |line| {
        let _ = tx.send(line);
    });
    let forward = async {
        while let Some(line) = rx.recv().await {
            ctx.progress(line).await;
        }
    };
    let (out, ()) = tokio::join!(work(log), forward);
    out
}

impl StepHandler for BackupWorker {
    async fn handle(&self, cmd: &StepCommand, ctx: &StepContext) -> Result<StepOk, StepError> {
        match cmd.action.as_str() {
            "site-backup" => {
                if let Some(skipped) = files_gone(&cmd.args) {
                    ctx.warn(skipped.clone());
                    return Ok(
                        StepOk::new(serde_json::json!({ "skipped": skipped })).with_warning()
                    );
                }
                let (key, a) = (&self.secret_key, &self.archiver);
                let pw = Self::site_password(key, cmd)?;
                let out = with_progress(ctx, |log| async move {
                    backup_site(a, &cmd.args, &pw, &*log).await
                })
                .await?;
                Ok(StepOk::new(serde_json::to_value(out).unwrap_or_default()))
            }
            "backup-extract" => {
                let (key, a) = (&self.secret_key, &self.archiver);
                let pw = Self::site_password(key, cmd)?;
                let args = with_backup_path(a, &cmd.args)?;
                let out = with_progress(ctx, |log| async move {
                    extract_backup(a, &args, &pw, &*log).await
                })
                .await;
                match out {
                    Ok(out) => Ok(StepOk::new(serde_json::to_value(out).unwrap_or_default())),
                    Err(e) => {
                        // A failed step is not taken back by its compensation: what it
                        // unpacked goes now (a retry starts over anyway).
                        if let Some(dir) = cmd.args.get("target_dir").and_then(|v| v.as_str()) {
                            let dir = std::path::Path::new(dir);
                            if dir.join(EXTRACT_MARKER).exists()
                                && std::fs::remove_dir_all(dir).is_ok()
                            {
                                ctx.info(format!("removed the half-unpacked {}", dir.display()));
                            }
                        }
                        Err(e.into())
                    }
                }
            }
            "backup-extract-remove" => {
                // The compensation of `backup-extract`: the directory it unpacked into goes,
                // if it is one (it holds the unpack's marker). Its imported database is
                // dropped by the compensation of the step that created it.
                let dir = cmd
                    .args
                    .get("target_dir")
                    .and_then(|v| v.as_str())
                    .map(std::path::PathBuf::from)
                    .filter(|p| {
                        p.is_absolute()
                            && p.components()
                                .all(|c| !matches!(c, std::path::Component::ParentDir))
                    })
                    .ok_or_else(|| StepError::permanent("backup-extract-remove: bad target_dir"))?;
                if !dir.exists() {
                    ctx.info(format!("{} is already gone", dir.display()));
                } else if dir.join(EXTRACT_MARKER).exists() {
                    std::fs::remove_dir_all(&dir).map_err(|e| {
                        StepError::transient(format!("remove {}: {e}", dir.display()))
                    })?;
                    ctx.info(format!("removed {}", dir.display()));
                } else {
                    return Err(StepError::permanent(format!(
                        "{} was not unpacked by berth: left in place",
                        dir.display()
                    )));
                }
                Ok(StepOk::default())
            }
            "backup-delete" => {
                let a = &self.archiver;
                let out = delete_backup(a, &cmd.args, &|line| ctx.info(line))?;
                Ok(StepOk::new(out))
            }
            other => Err(StepError::Permanent(format!(
                "the backup worker has no action `{other}`"
            ))),
        }
    }
}

/// The backup worker with its configuration.
pub async fn run_with(
    cfg: BackupConfig,
    shutdown: CancellationToken,
) -> Result<(), berth_broker::BrokerError> {
    let worker = cfg.worker.clone();
    run_worker(worker, Arc::new(BackupWorker::new(&cfg)), shutdown).await
}
