//! The backup worker: site tarballs, as Aegir makes them (the site directory with an
//! uncloaked settings.php, plus `database.sql`), stored in the backups directory of the
//! web server the site runs on.
//!
//! Steps ([`BackupStep`]):
//! - `site-backup`: the site (`uri`, `root`, `db {host, port, name, user}`) plus
//!   `backup {file, compression, description}`; the site's database password sealed in
//!   `secrets.site_db`. Output [`StepOutput::BackupMade`] (or `BackupSkipped` for a
//!   delete's backup whose files are already gone).
//! - `backup-delete`: `{path}`, a file directly inside the backups directory.
//! - `backup-extract`: `{source, target_dir, db}` plus `secrets.site_db` (the target
//!   user's password): unpacks into a new directory and imports the dump.
//! - `backup-extract-remove`: its `target_dir`, the compensation of `backup-extract`.
//! - `backup-upload`, `backup-fetch`, `backup-copy-delete`: off-site copies on an
//!   S3-compatible target ([`offsite`]), its secret access key sealed in
//!   `secrets.backup_target`.
//!
//! The work is done by plain async functions ([`backup_site`], [`extract_backup`],
//! [`delete_backup`]) that the step handler wraps.

mod archive;
mod mysql;
pub mod offsite;

pub use archive::{
    BackupArgs, BackupOutput, Compression, Deleted, EXTRACT_MARKER, ExtractArgs, ExtractOutput,
    backup_file, backup_site, delete_backup, extract_backup, strip_definers, uncloak_settings,
};
pub use mysql::DbTarget;

use berth_broker::worker::{StepContext, StepError, StepHandler, StepOk, WorkerConfig, run_worker};
use berth_contracts::steps::{BackupSource, BackupStep, ExtractSpec, SiteBackupSpec, Work};
use berth_contracts::{StepCommand, StepOutput};
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

    /// The target's secret access key, opened here only, in memory.
    fn target_secret(key: &SecretKey, cmd: &StepCommand) -> Result<String, StepError> {
        let sealed = cmd.secrets.backup_target.as_deref().ok_or_else(|| {
            StepError::permanent("the target's secret access key did not come with the step")
        })?;
        key.open(sealed)
            .map_err(|e| StepError::permanent(format!("the target's secret access key: {e}")))
    }

    fn site_password(key: &SecretKey, cmd: &StepCommand) -> Result<String, StepError> {
        key.site_password(
            cmd.secrets.site_db.as_deref(),
            cmd.site_db_derivation().as_deref(),
        )
        .map_err(|e| StepError::permanent(format!("the site's password: {e}")))
    }
}

/// `backup-extract` of a backup made earlier in the same task knows only its file name
/// (`file`): the path is the tarball of that name in this worker's backups directory.
/// For a delete's backup (`files_may_be_gone`): the site directory is gone, so an earlier
/// run of the delete removed it after taking its backup; there is nothing left to pack.
fn files_gone(spec: &SiteBackupSpec) -> Option<String> {
    if !spec.files_may_be_gone {
        return None;
    }
    let dir = archive::BackupArgs::parse(spec).ok()?.site_dir();
    (!dir.exists()).then(|| {
        format!(
            "{} is gone (an earlier run of this delete removed it after its backup): \
             no backup taken",
            dir.display()
        )
    })
}

fn with_backup_path(a: &Archiver, spec: &ExtractSpec) -> Result<ExtractSpec, StepError> {
    let BackupSource::File(file) = &spec.source else {
        return Ok(spec.clone());
    };
    let found = backup_file(a, file)?;
    Ok(ExtractSpec {
        source: BackupSource::Path(found.display().to_string()),
        ..spec.clone()
    })
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
        let Work::Backup(step) = &cmd.work else {
            return Err(StepError::permanent(format!(
                "this is the backup worker; the step is for the {} worker",
                cmd.service()
            )));
        };
        match step {
            BackupStep::SiteBackup(spec) => {
                if let Some(skipped) = files_gone(spec) {
                    ctx.warn(skipped.clone());
                    return Ok(
                        StepOk::new(StepOutput::BackupSkipped { reason: skipped }).with_warning()
                    );
                }
                let (key, a) = (&self.secret_key, &self.archiver);
                let pw = Self::site_password(key, cmd)?;
                let out =
                    with_progress(
                        ctx,
                        |log| async move { backup_site(a, spec, &pw, &*log).await },
                    )
                    .await?;
                Ok(StepOk::new(StepOutput::BackupMade(out.into_made())))
            }
            BackupStep::BackupExtract(spec) => {
                let (key, a) = (&self.secret_key, &self.archiver);
                let pw = Self::site_password(key, cmd)?;
                let spec = with_backup_path(a, spec)?;
                let out = with_progress(ctx, |log| {
                    let spec = &spec;
                    async move { extract_backup(a, spec, &pw, &*log).await }
                })
                .await;
                match out {
                    Ok(out) => Ok(StepOk::new(StepOutput::BackupExtracted {
                        target_dir: out.target_dir,
                    })),
                    Err(e) => {
                        // A failed step is not taken back by its compensation: what it
                        // unpacked goes now (a retry starts over anyway).
                        let dir = std::path::Path::new(&spec.target_dir);
                        if dir.join(EXTRACT_MARKER).exists() && std::fs::remove_dir_all(dir).is_ok()
                        {
                            ctx.info(format!("removed the half-unpacked {}", dir.display()));
                        }
                        Err(e.into())
                    }
                }
            }
            BackupStep::BackupExtractRemove(spec) => {
                // The compensation of `backup-extract`: the directory it unpacked into goes,
                // if it is one (it holds the unpack's marker). Its imported database is
                // dropped by the compensation of the step that created it.
                let dir = Some(std::path::PathBuf::from(&spec.target_dir))
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
            BackupStep::BackupDelete(spec) => {
                let a = &self.archiver;
                let out = delete_backup(a, spec, &|line| ctx.info(line))?;
                Ok(StepOk::new(StepOutput::BackupDeleted { path: out.path }))
            }
            BackupStep::Upload(spec) => {
                let (key, a) = (&self.secret_key, &self.archiver);
                let secret = Self::target_secret(key, cmd)?;
                let out = with_progress(ctx, |log| {
                    let secret = &secret;
                    async move { offsite::upload(a, spec, secret, &*log).await }
                })
                .await?;
                ctx.info(out.summary());
                Ok(StepOk::new(StepOutput::CopyMade(out.made)))
            }
            BackupStep::Fetch(spec) => {
                let (key, a) = (&self.secret_key, &self.archiver);
                let secret = Self::target_secret(key, cmd)?;
                let fetched = with_progress(ctx, |log| {
                    let secret = &secret;
                    async move { offsite::fetch(a, spec, secret, &*log).await }
                })
                .await?;
                if fetched {
                    ctx.info(format!(
                        "{} fetched back from target `{}`, its sha256 as recorded",
                        spec.path, spec.target.name
                    ));
                }
                Ok(StepOk::new(StepOutput::CopyFetched {
                    path: spec.path.clone(),
                    fetched,
                }))
            }
            BackupStep::DeleteCopy(spec) => {
                let secret = Self::target_secret(&self.secret_key, cmd)?;
                offsite::delete_copy(spec, &secret, &|line| ctx.info(line)).await?;
                Ok(StepOk::new(StepOutput::CopyDeleted {
                    target: spec.target.name.clone(),
                    key: spec.key.clone(),
                }))
            }
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
