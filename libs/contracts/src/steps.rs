//! What a worker is asked to do and what it answers: one enum of steps per worker service,
//! each variant carrying the typed spec its action needs, and one enum of step outputs.
//!
//! The wire form of a step is `{"service": "http", "step": {"action": "site-vhost",
//! "spec": {...}}}`: the service picks the worker, the action its handler, and the spec is
//! checked by serde when the worker reads the command — a missing or mistyped field fails
//! the step at once (permanent) instead of running it with a default. A worker matches its
//! service's enum exhaustively, so an action it does not handle is a compile error.

use crate::{CronMethod, ErrorKind, Installer, Package};
use serde::{Deserialize, Serialize};

/// The services a worker can provide; also the first half of a work routing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Service {
    Http,
    Db,
    Dns,
    Backup,
}

impl Service {
    pub const ALL: [Service; 4] = [Self::Http, Self::Db, Self::Dns, Self::Backup];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Db => "db",
            Self::Dns => "dns",
            Self::Backup => "backup",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

impl std::fmt::Display for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One step for one worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "service", content = "step", rename_all = "snake_case")]
pub enum Work {
    Http(HttpStep),
    Db(DbStep),
    Dns(DnsStep),
    Backup(BackupStep),
    /// The diagnostic step, answered by the worker framework of any service.
    Noop(NoopSpec),
}

impl Work {
    /// The worker service the step goes to.
    pub fn service(&self) -> Service {
        match self {
            Self::Http(_) => Service::Http,
            Self::Db(_) => Service::Db,
            Self::Dns(_) => Service::Dns,
            Self::Backup(_) => Service::Backup,
            Self::Noop(n) => n.service,
        }
    }

    /// The action's name, as steps show it (`site-vhost`, `verify`, …).
    pub fn action(&self) -> &'static str {
        match self {
            Self::Http(s) => s.action(),
            Self::Db(s) => s.action(),
            Self::Dns(s) => s.action(),
            Self::Backup(s) => s.action(),
            Self::Noop(_) => "noop",
        }
    }

    /// The site the step acts on, when it acts on one.
    pub fn site(&self) -> Option<&SiteSpec> {
        match self {
            Self::Http(s) => s.site(),
            Self::Db(s) => s.site(),
            Self::Dns(s) => s.site(),
            Self::Backup(BackupStep::SiteBackup(b)) => Some(&b.site),
            Self::Backup(_) | Self::Noop(_) => None,
        }
    }

    /// The off-site target the step acts on, whose sealed secret it carries when its
    /// [`SecretNeeds::backup_target`] is set.
    pub fn backup_target(&self) -> Option<&TargetSpec> {
        match self {
            Self::Backup(BackupStep::Upload(u)) => Some(&u.target),
            Self::Backup(BackupStep::Fetch(f)) => Some(&f.target),
            Self::Backup(BackupStep::DeleteCopy(d)) => Some(&d.target),
            _ => None,
        }
    }
}

impl From<HttpStep> for Work {
    fn from(s: HttpStep) -> Self {
        Self::Http(s)
    }
}

impl From<DbStep> for Work {
    fn from(s: DbStep) -> Self {
        Self::Db(s)
    }
}

impl From<DnsStep> for Work {
    fn from(s: DnsStep) -> Self {
        Self::Dns(s)
    }
}

impl From<BackupStep> for Work {
    fn from(s: BackupStep) -> Self {
        Self::Backup(s)
    }
}

/// Steps of the http worker (nginx, php-fpm, the platform's codebase and drush).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", content = "spec", rename_all = "kebab-case")]
pub enum HttpStep {
    /// The web server accepts its configuration.
    Verify(HttpServiceSpec),
    /// Scan a platform's codebase (packages, sites found) and fix its permissions.
    PlatformVerify(PlatformSpec),
    /// The site's directory, settings and owners.
    SiteFiles(SiteSpec),
    SiteFilesRemove(SiteSpec),
    /// `drush site:install`.
    SiteInstall(SiteSpec),
    /// The site's vhost and php-fpm pool (or the disabled page).
    SiteVhost(SiteSpec),
    SiteVhostRemove(SiteSpec),
    /// Puts back the vhost a `site-vhost` or `site-maintenance` kept (`stash`).
    SiteVhostRestore(SiteSpec),
    /// The maintenance page, keeping the vhost for its compensation.
    SiteMaintenance(SiteSpec),
    /// The site's enabled packages, and a first login link when asked.
    SitePackages(PackagesSpec),
    /// A new one-time login link.
    SiteLogin(SiteSpec),
    /// The unpacked copy takes the site's place; the site's directory is kept aside.
    SiteSwap(SwapSpec),
    SiteSwapBack(SwapSpec),
    /// `drush updatedb` (and file paths rewritten for a new uri), caches rebuilt.
    SiteUpdatedb(SwapSpec),
    /// After a restore, migrate or clone: what was kept aside goes.
    SiteCleanup(CleanupSpec),
    /// Gives the site its cron key (the command carries it sealed), where Drupal keeps
    /// it: the variable `cron_key` (7), the state `system.cron_key` (8+).
    SiteCronKey(SiteSpec),
    /// Runs the site's cron by its platform's method.
    SiteCron(CronSpec),
    /// A restore drill's check: the drill site, requested through this web server's nginx,
    /// serves the original site's own content.
    /// Boxed: it holds two site specs.
    SiteDrillCheck(Box<DrillCheckSpec>),
    /// Measures the disk the site's own directory (`<root>/sites/<uri>`) takes, never
    /// following a link and within a time and entry limit.
    SiteUsage(SiteSpec),
}

impl HttpStep {
    pub fn action(&self) -> &'static str {
        match self {
            Self::Verify(_) => "verify",
            Self::PlatformVerify(_) => "platform-verify",
            Self::SiteFiles(_) => "site-files",
            Self::SiteFilesRemove(_) => "site-files-remove",
            Self::SiteInstall(_) => "site-install",
            Self::SiteVhost(_) => "site-vhost",
            Self::SiteVhostRemove(_) => "site-vhost-remove",
            Self::SiteVhostRestore(_) => "site-vhost-restore",
            Self::SiteMaintenance(_) => "site-maintenance",
            Self::SitePackages(_) => "site-packages",
            Self::SiteLogin(_) => "site-login",
            Self::SiteSwap(_) => "site-swap",
            Self::SiteSwapBack(_) => "site-swap-back",
            Self::SiteUpdatedb(_) => "site-updatedb",
            Self::SiteCleanup(_) => "site-cleanup",
            Self::SiteCronKey(_) => "site-cron-key",
            Self::SiteCron(_) => "site-cron",
            Self::SiteDrillCheck(_) => "site-drill-check",
            Self::SiteUsage(_) => "site-usage",
        }
    }

    pub fn site(&self) -> Option<&SiteSpec> {
        match self {
            Self::Verify(_) | Self::PlatformVerify(_) => None,
            Self::SiteFiles(s)
            | Self::SiteFilesRemove(s)
            | Self::SiteInstall(s)
            | Self::SiteVhost(s)
            | Self::SiteVhostRemove(s)
            | Self::SiteVhostRestore(s)
            | Self::SiteMaintenance(s)
            | Self::SiteLogin(s)
            | Self::SiteCronKey(s)
            | Self::SiteUsage(s) => Some(s),
            Self::SitePackages(p) => Some(&p.site),
            Self::SiteCron(c) => Some(&c.site),
            Self::SiteSwap(s) | Self::SiteSwapBack(s) | Self::SiteUpdatedb(s) => Some(&s.site),
            Self::SiteCleanup(c) => Some(&c.swap.site),
            Self::SiteDrillCheck(d) => Some(&d.drill),
        }
    }
}

/// Steps of the db worker (MariaDB/MySQL, as the server's admin).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", content = "spec", rename_all = "kebab-case")]
pub enum DbStep {
    /// The admin can log in and grant.
    Verify(DbServiceSpec),
    /// The site's database and user (`spec.db`), granted from `grant_hosts`.
    SiteDbCreate(SiteSpec),
    SiteDbDrop(SiteSpec),
    /// The user's grants as they must be: its own database only.
    SiteDbGrant(SiteSpec),
    /// The size of the site's database (data and indexes, as the server accounts them).
    SiteDbUsage(SiteSpec),
}

impl DbStep {
    pub fn action(&self) -> &'static str {
        match self {
            Self::Verify(_) => "verify",
            Self::SiteDbCreate(_) => "site-db-create",
            Self::SiteDbDrop(_) => "site-db-drop",
            Self::SiteDbGrant(_) => "site-db-grant",
            Self::SiteDbUsage(_) => "site-db-usage",
        }
    }

    pub fn site(&self) -> Option<&SiteSpec> {
        match self {
            Self::Verify(_) => None,
            Self::SiteDbCreate(s)
            | Self::SiteDbDrop(s)
            | Self::SiteDbGrant(s)
            | Self::SiteDbUsage(s) => Some(s),
        }
    }
}

/// Steps of the dns worker (BIND zone files).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", content = "spec", rename_all = "kebab-case")]
pub enum DnsStep {
    Verify(DnsServiceSpec),
    /// The site's address record and its aliases' CNAMEs (zones made as needed).
    SiteRecords(SiteSpec),
    SiteRecordsRemove(SiteSpec),
}

impl DnsStep {
    pub fn action(&self) -> &'static str {
        match self {
            Self::Verify(_) => "verify",
            Self::SiteRecords(_) => "site-records",
            Self::SiteRecordsRemove(_) => "site-records-remove",
        }
    }

    pub fn site(&self) -> Option<&SiteSpec> {
        match self {
            Self::Verify(_) => None,
            Self::SiteRecords(s) | Self::SiteRecordsRemove(s) => Some(s),
        }
    }
}

/// Steps of the backup worker (tarballs of a site's directory and database).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", content = "spec", rename_all = "kebab-case")]
pub enum BackupStep {
    /// Boxed: a site's spec is several times the size of the other variants.
    SiteBackup(Box<SiteBackupSpec>),
    /// A backup unpacked beside its target and imported into the target's database.
    BackupExtract(ExtractSpec),
    BackupExtractRemove(ExtractSpec),
    BackupDelete(BackupDeleteSpec),
    /// A backup copied to an off-site target, streamed, and read back to check its sha256.
    Upload(UploadSpec),
    /// A backup whose file is gone fetched back from an off-site copy (checked first).
    Fetch(FetchSpec),
    /// One off-site copy removed.
    DeleteCopy(DeleteCopySpec),
}

impl BackupStep {
    pub fn action(&self) -> &'static str {
        match self {
            Self::SiteBackup(_) => "site-backup",
            Self::BackupExtract(_) => "backup-extract",
            Self::BackupExtractRemove(_) => "backup-extract-remove",
            Self::BackupDelete(_) => "backup-delete",
            Self::Upload(_) => "backup-upload",
            Self::Fetch(_) => "backup-fetch",
            Self::DeleteCopy(_) => "backup-copy-delete",
        }
    }
}

/// How a diagnostic noop misbehaves (only with diagnostics on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailSpec {
    /// The first `times` attempts fail.
    pub times: u32,
    pub kind: ErrorKind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoopSpec {
    pub service: Service,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sleep_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail: Option<FailSpec>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpServiceSpec {
    /// `nginx`.
    #[serde(rename = "type")]
    pub service_type: String,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DbServiceSpec {
    #[serde(rename = "type")]
    pub service_type: String,
    pub host: String,
    pub port: u16,
    pub admin_user: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DnsServiceSpec {
    #[serde(rename = "type")]
    pub service_type: String,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlatformSpec {
    pub platform: String,
    pub root: String,
    pub installer: Installer,
}

/// A site as every site step sees it: built by the planner from what the state service
/// knows, so that workers never read state themselves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiteSpec {
    pub uri: String,
    pub aliases: Vec<String>,
    pub redirection: bool,
    pub profile: String,
    pub language: String,
    pub client_email: Option<String>,
    pub platform: String,
    /// The platform's codebase.
    pub root: String,
    pub drupal_major: Option<i32>,
    pub installer: Installer,
    /// The vhost serves the "site disabled" page.
    pub disabled: bool,
    /// The vhost serves the "site suspended" page (its client is suspended), whatever its
    /// status; unsuspended, it serves as its status says again.
    #[serde(default)]
    pub suspended: bool,
    /// The unix user (and group of the same number) the site's PHP and installer run as.
    pub unix_uid: u32,
    pub http: HttpServiceSpec,
    pub db: SiteDbSpec,
    /// The web server's host name: where the site's records point.
    pub web_host: String,
    /// Keep what the step replaces, for its compensation to put back.
    pub stash: bool,
}

/// The site's database, on its db server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiteDbSpec {
    #[serde(rename = "type")]
    pub service_type: String,
    pub host: String,
    pub port: u16,
    pub admin_user: String,
    pub name: String,
    pub user: String,
    /// Hosts the site's user may connect from.
    pub grant_hosts: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PackagesSpec {
    pub site: SiteSpec,
    /// Make a first one-time login link too (after an install or a clone).
    pub login: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CronSpec {
    pub site: SiteSpec,
    pub method: CronMethod,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrillCheckSpec {
    /// The throwaway site the backup was restored into.
    pub drill: SiteSpec,
    /// The site the backup is of: what the drill site must serve the content of.
    pub original: SiteSpec,
    /// The backup drilled (recorded as verified when the check passes).
    pub backup: uuid::Uuid,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SwapSpec {
    pub site: SiteSpec,
    /// Where the backup was unpacked, beside the site's directory.
    pub new_dir: String,
    /// The uri the unpacked copy had (a clone, or a migrate to a new uri).
    pub renamed_from: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CleanupSpec {
    pub swap: SwapSpec,
    /// The codebase the site left (a migrate to another platform, or a new uri).
    pub old_root: Option<String>,
    /// The uri the site left (a migrate to a new uri).
    pub old_uri: Option<String>,
}

/// The file a backup step writes: named when the task is accepted, so that a redelivered
/// step writes the same file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupOrder {
    pub file: String,
    pub compression: Compression,
    pub description: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    Zstd,
    Gzip,
}

impl Compression {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Zstd => "zstd",
            Self::Gzip => "gzip",
        }
    }

    /// The extension of a tarball compressed so.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Zstd => "tar.zst",
            Self::Gzip => "tar.gz",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "zstd" => Some(Self::Zstd),
            "gzip" => Some(Self::Gzip),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiteBackupSpec {
    pub site: SiteSpec,
    pub backup: BackupOrder,
    /// A delete run again after its files went: no files is a warning, not a failure.
    pub files_may_be_gone: bool,
}

/// Which backup an extract unpacks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackupSource {
    /// A backup file by its path (a restore of a chosen backup).
    Path(String),
    /// The backup the task's own backup step wrote, by its file name.
    File(String),
}

/// The database a backup is imported into.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExtractDb {
    pub host: String,
    pub port: u16,
    pub name: String,
    pub user: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExtractSpec {
    pub source: BackupSource,
    /// Unpacked here (beside the target site's directory).
    pub target_dir: String,
    pub db: ExtractDb,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupDeleteSpec {
    pub path: String,
}

/// An S3-compatible store as a step sees it; its secret access key travels sealed in
/// [`SealedSecrets::backup_target`], never here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetSpec {
    pub name: String,
    /// `https://s3.eu-west-1.amazonaws.com`, `http://127.0.0.1:9000`, …
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub access_key_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UploadSpec {
    pub target: TargetSpec,
    /// The backup's file on this worker's server.
    pub source: BackupSource,
    /// `<prefix>/<site>/<file>`.
    pub key: String,
    /// The backup's recorded sha256, when known at planning (a backup made earlier); a
    /// backup made by the same task is checked against the bytes read while uploading,
    /// and the state records the copy only if they equal the backup's recorded sha256.
    pub sha256: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FetchSpec {
    pub target: TargetSpec,
    pub key: String,
    /// Where the backup's file was (and is put back): directly in the backups directory.
    pub path: String,
    /// The backup's recorded sha256: the fetched bytes must have it.
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeleteCopySpec {
    pub target: TargetSpec,
    pub key: String,
}

/// What a finished step reports; the dispatcher records it (packages, backups, links).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StepOutput {
    /// Nothing to record.
    #[default]
    Done,
    /// The diagnostic step, and which worker answered it.
    Noop {
        worker: String,
    },
    /// A vhost change went live with this reload of the web server.
    Reloaded {
        reload: u64,
        batch: u64,
    },
    PlatformScanned(PlatformScan),
    /// The site's packages, and a login link when one was asked for.
    SitePackages {
        packages: Vec<Package>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        login_link: Option<String>,
    },
    LoginLink {
        login_link: String,
    },
    BackupMade(BackupMade),
    /// A delete run again found no files to back up (its first run's backup is the last).
    BackupSkipped {
        reason: String,
    },
    BackupExtracted {
        target_dir: String,
    },
    BackupDeleted {
        path: String,
    },
    /// A backup's off-site copy, its sha256 read back from the store.
    CopyMade(CopyMade),
    /// A backup's file put back from an off-site copy (or found still there).
    CopyFetched {
        path: String,
        fetched: bool,
    },
    CopyDeleted {
        target: String,
        key: String,
    },
    /// Zones changed by a records step.
    Records {
        zones: Vec<ZoneChange>,
    },
    /// A drill site served the original site's content: the backup is good.
    DrillPassed {
        backup: uuid::Uuid,
        /// The site name both served.
        title: String,
    },
    /// The disk the site's directory takes.
    FilesMeasured(FilesUsage),
    /// The size of the site's database; `None`: not known (the server did not answer in
    /// time), nothing recorded.
    DbMeasured {
        bytes: Option<i64>,
    },
}

/// What a walk of a site's directory counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilesUsage {
    /// Bytes of the blocks allocated to what is under the directory (the directory too),
    /// each hard-linked file once.
    pub bytes: i64,
    /// Entries counted.
    pub entries: u64,
    /// The walk saw everything; `false`: it stopped at its time, entry or depth limit
    /// and `bytes` is a lower bound.
    pub complete: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlatformScan {
    pub drupal_major: i32,
    pub core_version: String,
    pub packages: Vec<Package>,
    /// Sites found in `sites/`.
    pub sites: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupMade {
    pub file: String,
    pub path: String,
    pub size: i64,
    pub sha256: String,
    pub compression: Compression,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CopyMade {
    pub target: String,
    pub key: String,
    /// The local file copied (the backup it is a copy of).
    pub path: String,
    pub size: i64,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ZoneChange {
    pub zone: String,
    /// Absent when the zone was removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<u32>,
    pub changes: Vec<String>,
}

/// The secrets the state service attaches, sealed, to a step: stored with the step as
/// text (`db_admin`, `site_db`, `db_admin,site_db_next`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SecretNeeds {
    /// The db server's admin password.
    pub db_admin: bool,
    /// Which database password goes to the worker as the site's.
    pub site_db: Option<SiteDbSecret>,
    /// The site's cron key.
    pub cron_key: bool,
    /// The secret access key of the off-site target the step names ([`Work::backup_target`]).
    pub backup_target: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SiteDbSecret {
    /// The site's own.
    Current,
    /// The database a restore, migrate or clone moves the site to (the task's secret).
    Next,
    /// A drill's throwaway database: not carried, derived by the worker from the cluster
    /// key and the task id ([`SealedSecrets::site_db_derived`]).
    Drill,
}

impl SecretNeeds {
    pub const NONE: Self = Self {
        db_admin: false,
        site_db: None,
        cron_key: false,
        backup_target: false,
    };
    pub const DB_ADMIN: Self = Self {
        db_admin: true,
        site_db: None,
        cron_key: false,
        backup_target: false,
    };
    pub const SITE_DB: Self = Self {
        db_admin: false,
        site_db: Some(SiteDbSecret::Current),
        cron_key: false,
        backup_target: false,
    };
    pub const SITE_DB_NEXT: Self = Self {
        db_admin: false,
        site_db: Some(SiteDbSecret::Next),
        cron_key: false,
        backup_target: false,
    };
    pub const DB_ADMIN_AND_SITE_DB: Self = Self {
        db_admin: true,
        site_db: Some(SiteDbSecret::Current),
        cron_key: false,
        backup_target: false,
    };
    pub const DB_ADMIN_AND_SITE_DB_NEXT: Self = Self {
        db_admin: true,
        site_db: Some(SiteDbSecret::Next),
        cron_key: false,
        backup_target: false,
    };

    pub const BACKUP_TARGET: Self = Self {
        db_admin: false,
        site_db: None,
        cron_key: false,
        backup_target: true,
    };

    pub const SITE_DB_DRILL: Self = Self {
        db_admin: false,
        site_db: Some(SiteDbSecret::Drill),
        cron_key: false,
        backup_target: false,
    };
    pub const DB_ADMIN_AND_SITE_DB_DRILL: Self = Self {
        db_admin: true,
        site_db: Some(SiteDbSecret::Drill),
        cron_key: false,
        backup_target: false,
    };

    pub fn is_none(self) -> bool {
        self == Self::NONE
    }

    /// The same, with the site's cron key too.
    pub const fn and_cron_key(mut self) -> Self {
        self.cron_key = true;
        self
    }

    /// As stored: `None` for no secrets.
    pub fn to_text(self) -> Option<String> {
        let mut parts = Vec::new();
        if self.db_admin {
            parts.push("db_admin");
        }
        match self.site_db {
            Some(SiteDbSecret::Current) => parts.push("site_db"),
            Some(SiteDbSecret::Next) => parts.push("site_db_next"),
            Some(SiteDbSecret::Drill) => parts.push("site_db_drill"),
            None => {}
        }
        if self.cron_key {
            parts.push("cron_key");
        }
        if self.backup_target {
            parts.push("backup_target");
        }
        (!parts.is_empty()).then(|| parts.join(","))
    }

    /// From the stored text; `Err` names a part no build of berth wrote.
    pub fn parse(text: Option<&str>) -> Result<Self, String> {
        let mut needs = Self::NONE;
        for part in text
            .unwrap_or_default()
            .split(',')
            .filter(|p| !p.is_empty())
        {
            match part {
                "db_admin" => needs.db_admin = true,
                "site_db" => needs.site_db = Some(SiteDbSecret::Current),
                "site_db_next" => needs.site_db = Some(SiteDbSecret::Next),
                "site_db_drill" => needs.site_db = Some(SiteDbSecret::Drill),
                "cron_key" => needs.cron_key = true,
                "backup_target" => needs.backup_target = true,
                other => return Err(format!("unknown secret need `{other}`")),
            }
        }
        Ok(needs)
    }
}

/// Secrets a step command carries, each sealed with the cluster key (`berth-secrets`):
/// never logged, removed from dead letters.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SealedSecrets {
    /// The db server's admin password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_admin: Option<String>,
    /// The site's database password (or the next database's, see [`SiteDbSecret`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site_db: Option<String>,
    /// The site's cron key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron_key: Option<String>,
    /// The off-site target's secret access key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_target: Option<String>,
    /// The site's database password is not carried: the worker derives it from the
    /// cluster key and the command's task id (a drill's throwaway database, whose task
    /// may be queued by a process without the cluster key, such as the scheduler).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub site_db_derived: bool,
}

impl SealedSecrets {
    pub fn is_empty(&self) -> bool {
        self.db_admin.is_none()
            && self.site_db.is_none()
            && self.cron_key.is_none()
            && self.backup_target.is_none()
            && !self.site_db_derived
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_is_tagged_by_service_then_action() {
        let w = Work::Backup(BackupStep::BackupDelete(BackupDeleteSpec {
            path: "/b/x.tar.zst".into(),
        }));
        let v = serde_json::to_value(&w).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"service": "backup",
                "step": {"action": "backup-delete", "spec": {"path": "/b/x.tar.zst"}}})
        );
        assert_eq!(serde_json::from_value::<Work>(v).unwrap(), w);
        assert_eq!(w.action(), "backup-delete");
        assert_eq!(w.service(), Service::Backup);
    }

    #[test]
    fn a_spec_missing_a_field_is_refused_not_defaulted() {
        let v = serde_json::json!({"service": "backup",
            "step": {"action": "backup-delete", "spec": {"file": "x"}}});
        let err = serde_json::from_value::<Work>(v).unwrap_err().to_string();
        assert!(err.contains("path"), "{err}");
        let v = serde_json::json!({"service": "dns",
            "step": {"action": "site-explode", "spec": {}}});
        let err = serde_json::from_value::<Work>(v).unwrap_err().to_string();
        assert!(err.contains("site-explode"), "{err}");
    }

    #[test]
    fn secret_needs_round_trip_through_their_stored_text() {
        for n in [
            SecretNeeds::NONE,
            SecretNeeds::DB_ADMIN,
            SecretNeeds::SITE_DB,
            SecretNeeds::SITE_DB_NEXT,
            SecretNeeds::DB_ADMIN_AND_SITE_DB,
            SecretNeeds::DB_ADMIN_AND_SITE_DB_NEXT,
            SecretNeeds::DB_ADMIN_AND_SITE_DB_DRILL,
            SecretNeeds::SITE_DB_DRILL,
            SecretNeeds::SITE_DB.and_cron_key(),
            SecretNeeds::NONE.and_cron_key(),
            SecretNeeds::BACKUP_TARGET,
        ] {
            assert_eq!(SecretNeeds::parse(n.to_text().as_deref()), Ok(n));
        }
        assert_eq!(
            SecretNeeds::DB_ADMIN_AND_SITE_DB_NEXT.to_text().as_deref(),
            Some("db_admin,site_db_next")
        );
        assert!(SecretNeeds::parse(Some("root_password")).is_err());
    }

    #[test]
    fn outputs_are_tagged_and_default_to_done() {
        let o = StepOutput::LoginLink {
            login_link: "http://a.test/user/reset/1/2/x/login".into(),
        };
        let v = serde_json::to_value(&o).unwrap();
        assert_eq!(v["kind"], "login_link");
        assert_eq!(serde_json::from_value::<StepOutput>(v).unwrap(), o);
        assert_eq!(StepOutput::default(), StepOutput::Done);
    }
}
