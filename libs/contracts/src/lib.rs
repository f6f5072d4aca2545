//! Every message that crosses a process boundary in berth, and every REST body.
//!
//! Nothing here does I/O or holds logic beyond (de)serialisation: the API, the state
//! service, the workers and the CLI all speak these types, so a change here is a change
//! of the wire format and is versioned by [`MESSAGE_VERSION`].

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

pub mod schedule;
pub mod steps;
pub mod task;
pub mod webhook;

pub use steps::{SealedSecrets, SecretNeeds, Service, StepOutput, Work};
pub use task::{TaskArgs, TaskType};

/// Version of the AMQP message bodies below; carried in the `x-berth-version` header.
/// Version 2 made steps typed ([`Work`], [`StepOutput`], [`SealedSecrets`]); a consumer
/// dead-letters a message of another version with an error that says what to do
/// (decision 0015).
pub const MESSAGE_VERSION: u32 = 2;

/// Exchange and routing-key names: part of the wire format, shared by publishers
/// (the outbox relay, the workers) and the topology declared by `berth-broker`.
pub mod exchanges {
    /// Direct; key [`TASK_KEY`] → queue `state.tasks`.
    pub const TASKS: &str = "berth.tasks";
    pub const TASK_KEY: &str = "task";
    /// Direct; key `<service>.<server>` → queue `work.<service>.<server>`.
    pub const WORK: &str = "berth.work";
    /// Direct; key [`STEP_KEY`] → queue `state.events`.
    pub const EVENTS: &str = "berth.events";
    pub const STEP_KEY: &str = "step";
    /// Fanout → queue `state.dead`.
    pub const DEAD: &str = "berth.dead";
    /// Fanout → one exclusive queue per worker process: [`super::StepStop`] orders.
    pub const CONTROL: &str = "berth.control";
    /// Topic; key: the notice's type (`schedule.alert`, …) → queue `notices.outbound`, where
    /// outbound deliveries (webhooks) take them: [`super::Notice`]s.
    pub const NOTICES: &str = "berth.notices";
    /// Direct; key [`WEBHOOK_KEY`] → queue `webhooks.deliveries`: [`super::webhook::WebhookWake`]s
    /// (and, dead-lettered back from the `berth.webhooks.wait.<d>ms` queues, retries).
    pub const WEBHOOKS: &str = "berth.webhooks";
    pub const WEBHOOK_KEY: &str = "delivery";
}

/// Something that happened, told to the outside world (webhooks deliver these).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    pub id: Uuid,
    pub at: DateTime<Utc>,
    #[serde(flatten)]
    pub event: NoticeEvent,
}

/// The events webhooks deliver, one variant per type (the routing key on
/// [`exchanges::NOTICES`], the `type` of the delivered body). `client`: the client of the
/// site the event is about (its id, as text), which decides the endpoints bound to a
/// client that receive it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum NoticeEvent {
    /// A task ended (success, warning, error or cancelled).
    #[serde(rename = "task.finished")]
    TaskFinished {
        task_id: Uuid,
        task_type: TaskType,
        target: String,
        target_kind: TargetKind,
        status: TaskStatus,
        /// The W3C trace id of the task: the `traceparent` of the delivery carries it too.
        trace_id: String,
        client: Option<String>,
    },
    /// A site's install task succeeded: it serves. It is also the welcome notice (issue 14,
    /// item 6): the client's e-mail and the admin's one-time login link, as the site's own
    /// answer shows them, so that a storefront can greet its customer.
    #[serde(rename = "site.installed")]
    SiteInstalled {
        site: String,
        platform: String,
        task_id: Uuid,
        client: Option<String>,
        client_email: Option<String>,
        login_link: Option<String>,
    },
    /// A site's delete task succeeded: its files, database and records are gone.
    #[serde(rename = "site.deleted")]
    SiteDeleted {
        site: String,
        task_id: Uuid,
        client: Option<String>,
    },
    /// A backup of a site was made (by a backup task, or before a delete, migrate, restore).
    #[serde(rename = "backup.made")]
    BackupMade {
        site: String,
        backup_id: Uuid,
        size: i64,
        task_id: Uuid,
        client: Option<String>,
    },
    /// A schedule's alert was raised: a missed run, failures in a row, an overdue backup, a
    /// failed restore drill.
    #[serde(rename = "schedule.alert")]
    ScheduleAlert {
        schedule: String,
        site: Option<String>,
        kind: String,
        message: String,
        #[serde(default)]
        client: Option<String>,
    },
}

impl NoticeEvent {
    /// Every type there is, as [`Self::kind`] names them.
    pub const KINDS: [&'static str; 5] = [
        "task.finished",
        "site.installed",
        "site.deleted",
        "backup.made",
        "schedule.alert",
    ];

    /// Its type: the routing key on [`exchanges::NOTICES`].
    pub fn kind(&self) -> &'static str {
        match self {
            Self::TaskFinished { .. } => "task.finished",
            Self::SiteInstalled { .. } => "site.installed",
            Self::SiteDeleted { .. } => "site.deleted",
            Self::BackupMade { .. } => "backup.made",
            Self::ScheduleAlert { .. } => "schedule.alert",
        }
    }

    /// The client of the site it is about, if it is about one that has a client.
    pub fn client(&self) -> Option<&str> {
        match self {
            Self::TaskFinished { client, .. }
            | Self::SiteInstalled { client, .. }
            | Self::SiteDeleted { client, .. }
            | Self::BackupMade { client, .. }
            | Self::ScheduleAlert { client, .. } => client.as_deref(),
        }
    }

    /// A finished task's type and status (what task filters look at).
    pub fn task_facts(&self) -> Option<(&'static str, &'static str)> {
        match self {
            Self::TaskFinished {
                task_type, status, ..
            } => Some((task_type.as_str(), status.as_str())),
            _ => None,
        }
    }
}

/// Where a task ends up, following Aegir's task states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Queued,
    Processing,
    Success,
    Warning,
    Error,
    Cancelled,
}

impl TaskStatus {
    pub const ALL: [TaskStatus; 6] = [
        Self::Queued,
        Self::Processing,
        Self::Success,
        Self::Warning,
        Self::Error,
        Self::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Processing => "processing",
            Self::Success => "success",
            Self::Warning => "warning",
            Self::Error => "error",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// A finished task never changes status again (except through retry, which makes a new task).
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            Self::Success | Self::Warning | Self::Error | Self::Cancelled
        )
    }
}

/// Status of one step of a task's plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Planned, not yet sent to a worker.
    Pending,
    /// Sent to a worker (through the outbox); may be retrying.
    Running,
    Success,
    Warning,
    Error,
    /// Its compensation is running after a later step failed.
    Compensating,
    /// Its compensation ran: its effect was taken back.
    Compensated,
}

impl StepStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Success => "success",
            Self::Warning => "warning",
            Self::Error => "error",
            Self::Compensating => "compensating",
            Self::Compensated => "compensated",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Pending,
            Self::Running,
            Self::Success,
            Self::Warning,
            Self::Error,
            Self::Compensating,
            Self::Compensated,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
    }
}

/// What kind of context a task runs on (Aegir's context types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    Server,
    Platform,
    Site,
}

impl TargetKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Server => "server",
            Self::Platform => "platform",
            Self::Site => "site",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "server" => Some(Self::Server),
            "platform" => Some(Self::Platform),
            "site" => Some(Self::Site),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------------
// REST bodies
// ---------------------------------------------------------------------------------------

/// `POST /api/v1/tasks`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTask {
    /// Task type, e.g. `verify` or `noop`.
    #[serde(rename = "type")]
    pub task_type: String,
    /// Context name of the target: `server_master`, `platform_x`, `example.com`.
    pub target: String,
    #[serde(default = "empty_object")]
    pub args: Value,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Task {
    pub id: Uuid,
    #[serde(rename = "type")]
    pub task_type: String,
    pub target: String,
    pub target_kind: TargetKind,
    pub args: Value,
    pub status: TaskStatus,
    pub trace_id: String,
    pub requested_by: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub retry_of: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub finished_at: Option<DateTime<Utc>>,
    /// When a cancel of the task while it ran was asked for: it is being cancelled (its
    /// running step stopped, its done steps taken back) and ends `cancelled`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub cancel_requested_at: Option<DateTime<Utc>>,
    /// Present on `GET /api/v1/tasks/{id}`, absent in lists.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub steps: Option<Vec<Step>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub log: Option<Vec<LogEntry>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Step {
    pub id: Uuid,
    pub position: i32,
    pub service: String,
    pub server: String,
    pub action: String,
    pub status: StepStatus,
    pub attempts: i32,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub compensation: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub finished_at: Option<DateTime<Utc>>,
    /// Every failed attempt: when, what, and how long the worker waited before the next.
    pub history: Vec<AttemptRecord>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptRecord {
    pub attempt: u32,
    pub at: DateTime<Utc>,
    pub error: String,
    pub kind: ErrorKind,
    /// Backoff before the next attempt; absent when the attempt was the last.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub retry_in_ms: Option<u64>,
    pub worker: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Worth another try later: a server restarting, a lock, a timeout.
    Transient,
    /// Will fail again: bad input, a refused grant, a broken config.
    Permanent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    Info,
    Warning,
    Error,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Error => "error",
        }
    }

    pub fn parse(s: &str) -> Self {
        match s {
            "warning" => Self::Warning,
            "error" => Self::Error,
            _ => Self::Info,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogEntry {
    /// Monotonic per task; `log --follow` asks for entries after the last one it saw.
    #[serde(default)]
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub level: LogLevel,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub step_id: Option<Uuid>,
    pub message: String,
}

/// A page of a list.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
}

/// A server and its services (Aegir's server context).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Server {
    /// Context name: `server_<host without dots>`, or `server_master`.
    pub name: String,
    pub host: String,
    pub services: Services,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The verify task queued by the last save, when the answer is to a save.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub verify_task: Option<Uuid>,
}

/// Services of a server as clients send them; the db admin password is write-only.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Services {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpService>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db: Option<DbService>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsService>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HttpService {
    /// `nginx`, `apache` or `null`.
    #[serde(rename = "type")]
    pub service_type: String,
    #[serde(default = "default_http_port")]
    pub port: u16,
}

fn default_http_port() -> u16 {
    80
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DbService {
    /// `mariadb`, `mysql` or `null`.
    #[serde(rename = "type")]
    pub service_type: String,
    #[serde(default = "default_db_host")]
    pub host: String,
    #[serde(default = "default_db_port")]
    pub port: u16,
    #[serde(default = "default_db_user")]
    pub admin_user: String,
    /// Write-only: accepted on create and change, never returned.
    #[serde(default, skip_serializing)]
    pub admin_password: Option<String>,
}

fn default_db_host() -> String {
    "127.0.0.1".into()
}
fn default_db_port() -> u16 {
    3306
}
fn default_db_user() -> String {
    "root".into()
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DnsService {
    /// `bind` or `null`.
    #[serde(rename = "type")]
    pub service_type: String,
    #[serde(default = "default_dns_port")]
    pub port: u16,
}

fn default_dns_port() -> u16 {
    53
}

/// `POST /api/v1/servers`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewServer {
    /// Fully qualified host name; the context name is derived from it.
    pub host: String,
    /// Optional explicit context name; must be `server_master` or match the host.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub services: Services,
}

/// `PATCH /api/v1/servers/{name}`: only what is given changes (as `provision-save` does).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerChange {
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub services: Option<Services>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeadLetter {
    pub id: Uuid,
    pub task_id: Uuid,
    pub step_id: Uuid,
    pub routing_key: String,
    pub error: String,
    pub history: Vec<AttemptRecord>,
    /// The step command as it was sent, with sealed secrets removed.
    pub payload: Value,
    pub created_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub replayed_at: Option<DateTime<Utc>>,
}

/// RFC 9457 problem details.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub problem_type: String,
    pub title: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub instance: Option<String>,
}

/// `berth token create` answer, and the API token body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewToken {
    pub name: String,
    pub token: String,
}

/// A backup of a site: a tarball of its directory with its database dump inside and its
/// settings uncloaked, so that it deploys on a plain server.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Backup {
    pub id: Uuid,
    pub site: String,
    /// The server whose backup worker made it and holds the file.
    pub server: String,
    /// `<uri>-<UTC time>`.
    pub file: String,
    pub path: String,
    pub size: i64,
    pub sha256: String,
    /// `zstd` or `gzip`.
    pub compression: String,
    pub description: String,
    pub task_id: Uuid,
    pub created_at: DateTime<Utc>,
    /// When a restore drill last restored it into a throwaway site that served the site's
    /// content ("verified by drill at …"); absent: never verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_at: Option<DateTime<Utc>>,
    /// The drill task that verified it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_by_task: Option<Uuid>,
    /// Whether its file is still on the server; `false`: pruned there, kept by a target's
    /// own retention (a restore or drill fetches it back from a copy).
    #[serde(default = "yes")]
    pub on_disk: bool,
    /// Its live copies on off-site targets.
    #[serde(default)]
    pub copies: Vec<BackupCopy>,
}

fn yes() -> bool {
    true
}

/// A backup's copy on an off-site target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupCopy {
    pub backup: Uuid,
    pub target: String,
    /// `<prefix>/<site>/<file>` in the target's bucket.
    pub object_key: String,
    pub size: i64,
    /// Read back from the store after the upload; equal to the backup's.
    pub sha256: String,
    pub uploaded_at: DateTime<Utc>,
}

/// `POST /api/v1/backup-targets`: an S3-compatible store backups are copied to.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewBackupTarget {
    pub name: String,
    /// `s3` (any S3-compatible store), the only kind.
    #[serde(default = "default_target_kind")]
    pub kind: String,
    /// The store's URL, `https://…` (or `http://` on loopback only).
    pub endpoint: String,
    pub bucket: String,
    /// Keys are `<prefix>/<site>/<file>`; empty for none.
    #[serde(default)]
    pub prefix: String,
    #[serde(default = "default_region")]
    pub region: String,
    pub access_key_id: String,
    /// Write-only: sealed at rest, never returned.
    #[serde(skip_serializing)]
    pub secret_access_key: String,
    /// The target's own retention: absent, a copy goes when its backup's local file is
    /// pruned; present, prune tasks weigh the site's copies on this target by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<schedule::RetentionSpec>,
}

/// `PATCH /api/v1/backup-targets/{name}`: its retention (`null`: copies follow their
/// backups again).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupTargetChange {
    /// Required, `null` included: an empty body changes nothing by accident.
    #[serde(deserialize_with = "required_option")]
    pub retention: Option<schedule::RetentionSpec>,
}

/// A field that must be given, `null` meaning none (serde makes a plain `Option` optional).
fn required_option<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d)
}

fn default_target_kind() -> String {
    "s3".into()
}
fn default_region() -> String {
    "us-east-1".into()
}

/// Leaves the secret out of debug output (logs, traces).
impl std::fmt::Debug for NewBackupTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewBackupTarget")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("retention", &self.retention)
            .finish_non_exhaustive()
    }
}

/// A backup target as the API shows it (its secret never).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupTarget {
    pub name: String,
    pub kind: String,
    pub endpoint: String,
    pub bucket: String,
    pub prefix: String,
    pub region: String,
    pub access_key_id: String,
    /// Its own retention, if it has one (see [`NewBackupTarget::retention`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<schedule::RetentionSpec>,
    /// Live copies of backups on it.
    pub copies: i64,
    pub created_at: DateTime<Utc>,
}

/// How a platform installs and upgrades its sites.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Installer {
    /// `drush`: `site:install`, `updatedb`, `cache:rebuild`, `user:login`, `pm:list`.
    #[serde(rename = "type")]
    pub installer_type: String,
    /// The drush program, relative to the platform root or absolute
    /// (default `vendor/bin/drush`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bin: Option<String>,
}

impl Default for Installer {
    fn default() -> Self {
        Self {
            installer_type: "drush".into(),
            bin: None,
        }
    }
}

/// How a platform's sites run their cron.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CronMethod {
    /// `drush cron`, as the site's unix user.
    #[default]
    Drush,
    /// A request to the site's own vhost with its cron key (`/cron.php?cron_key=…` on
    /// Drupal 7, `/cron/<key>` on Drupal 8+), answered 2xx.
    Http,
}

impl CronMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Drush => "drush",
            Self::Http => "http",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Drush, Self::Http]
            .into_iter()
            .find(|m| m.as_str() == s)
    }
}

/// A site's last cron run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastCron {
    /// The cron task.
    pub task: Uuid,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i64,
    /// `success` or `failed`.
    pub result: String,
}

/// `POST /api/v1/platforms`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewPlatform {
    /// Context name: `platform_<name>`.
    pub name: String,
    /// Absolute path of the codebase on the web server.
    pub root: String,
    /// Server whose http service publishes the platform (default `server_master`).
    #[serde(default)]
    pub web_server: Option<String>,
    #[serde(default)]
    pub installer: Option<Installer>,
    /// How its sites run cron: `drush` (default) or `http`.
    #[serde(default)]
    pub cron_method: Option<CronMethod>,
}

/// A platform (Aegir's platform context): a codebase on a web server.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Platform {
    pub name: String,
    pub root: String,
    pub web_server: String,
    pub installer: Installer,
    pub cron_method: CronMethod,
    /// `queued` (never verified), `verified`, `failed` (last verify failed), `deleted`.
    pub status: String,
    /// A locked platform takes no new sites.
    pub locked: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drupal_major: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub core_version: Option<String>,
    /// Sites found in `<root>/sites/` by the last verify that berth does not host: to import.
    #[serde(default)]
    pub found_sites: Vec<String>,
    /// Sites hosted on it (not deleted).
    #[serde(default)]
    pub sites: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The task the request queued (verify on create, delete on delete).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub task: Option<Uuid>,
}

/// `POST /api/v1/sites`: Aegir's site form.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSite {
    /// The domain name; also the site's context name.
    pub uri: String,
    /// Context name of the platform (`platform_x`).
    pub platform: String,
    /// Server holding the site's database (default `server_master`).
    #[serde(default)]
    pub db_server: Option<String>,
    #[serde(default)]
    pub client: Option<String>,
    /// Where the one-time login link is meant to go.
    #[serde(default)]
    pub client_email: Option<String>,
    /// Install profile (default `standard`); must exist on the platform.
    #[serde(default)]
    pub profile: Option<String>,
    /// Language code (default `en`); must be offered by the profile.
    #[serde(default)]
    pub language: Option<String>,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Aliases answer with a 301 to the main domain instead of serving the site.
    #[serde(default)]
    pub redirection: bool,
}

/// `PATCH /api/v1/sites/{uri}`: only what is given changes; a verify applies it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteChange {
    #[serde(default)]
    pub client: Option<String>,
    #[serde(default)]
    pub client_email: Option<String>,
    #[serde(default)]
    pub aliases: Option<Vec<String>>,
    #[serde(default)]
    pub redirection: Option<bool>,
    /// A guarded site refuses disable and delete until unguarded.
    #[serde(default)]
    pub guarded: Option<bool>,
}

/// A site (Aegir's site context). The database password is never part of it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Site {
    pub uri: String,
    pub platform: String,
    pub db_server: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_email: Option<String>,
    pub profile: String,
    pub language: String,
    pub aliases: Vec<String>,
    pub redirection: bool,
    /// Refuses disable and delete until unguarded (`PATCH {"guarded": false}`).
    #[serde(default)]
    pub guarded: bool,
    /// `installing`, `enabled`, `disabled`, `failed` (install failed, nothing left), `deleted`.
    pub status: String,
    /// It serves the "site suspended" page (its client is suspended), whatever its status.
    #[serde(default)]
    pub suspended: bool,
    pub db_name: String,
    pub db_user: String,
    /// A one-time login link from the install or the last login reset, until it is used
    /// or 24 hours old.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_link: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_link_expires_at: Option<DateTime<Utc>>,
    /// The site's last cron run, once one ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_cron: Option<LastCron>,
    /// Disk the site takes, bytes: its files and its database as last measured (by a
    /// verify or a usage task); absent until measured. What `max_disk_bytes` counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_bytes: Option<i64>,
    /// Its directory's share (allocated blocks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_files_bytes: Option<i64>,
    /// Its database's share (data and indexes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_db_bytes: Option<i64>,
    /// The last walk of its directory stopped at a limit: `disk_files_bytes` is a lower bound.
    #[serde(default)]
    pub disk_partial: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_measured_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The task the request queued.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub task: Option<Uuid>,
}

/// What a package is, in Drupal's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PackageType {
    Core,
    Profile,
    Module,
    Theme,
}

impl PackageType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Core => "core",
            Self::Profile => "profile",
            Self::Module => "module",
            Self::Theme => "theme",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Core, Self::Profile, Self::Module, Self::Theme]
            .into_iter()
            .find(|t| t.as_str() == s)
    }
}

/// A package found on a platform (by its scan) or on a site (enabled there).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    /// Machine name: `views`, `node`, `standard`, `drupal` for core.
    pub name: String,
    #[serde(rename = "type")]
    pub package_type: PackageType,
    /// Human name from the info file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// `7.x-3.29`, `10.3.1`, `8.x-1.14`; absent for a checkout without a version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Platform: the highest `<name>_update_N` in its `.install` file (absent without one).
    /// Site: the schema version installed in the site's database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<i64>,
    /// Directory relative to the platform root, e.g. `sites/all/modules/views`.
    #[serde(default)]
    pub path: String,
    /// Profiles: the languages a site can be installed in (always `en`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub languages: Vec<String>,
    /// Profiles: the name the profile had before (`old_short_name` in its info file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_short_name: Option<String>,
    /// Site packages: whether it is enabled on the site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// `GET /tasks/{id}/log?after=N`: the task's status and its log entries after `seq` N.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogPage {
    pub status: TaskStatus,
    pub entries: Vec<LogEntry>,
}

// ---------------------------------------------------------------------------------------
// AMQP messages
// ---------------------------------------------------------------------------------------

/// `berth.tasks`: a task was accepted (or put back in the queue) and wants the dispatcher.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskQueued {
    pub task_id: Uuid,
    /// The task's target, so the dispatcher can take the target's lock first without a
    /// read (absent in messages from before it was added).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// Whether a step command asks for the step's effect or for taking it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepPhase {
    Run,
    Compensate,
}

/// `berth.work` → `work.<service>.<server>`: one step for a worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepCommand {
    pub task_id: Uuid,
    pub step_id: Uuid,
    pub task_type: String,
    pub target: String,
    pub server: String,
    pub phase: StepPhase,
    /// What to do; for compensations, the compensation's step.
    pub work: Work,
    /// Sealed with the cluster key; never logged, removed from dead letters.
    #[serde(default, skip_serializing_if = "SealedSecrets::is_empty")]
    pub secrets: SealedSecrets,
}

impl StepCommand {
    pub fn service(&self) -> Service {
        self.work.service()
    }

    pub fn action(&self) -> &'static str {
        self.work.action()
    }

    /// `<service>.<server>`: the routing key on `berth.work`.
    pub fn routing_key(&self) -> String {
        format!("{}.{}", self.service(), self.server)
    }

    /// What a worker derives the site's database password from when it does not come sealed
    /// (a drill's throwaway database): the task id.
    pub fn site_db_derivation(&self) -> Option<String> {
        self.secrets
            .site_db_derived
            .then(|| self.task_id.to_string())
    }
}

/// `berth.events` → `state.events`: what a worker reports about a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepEvent {
    pub task_id: Uuid,
    /// The task's target (echoed from the command), for the dispatcher's lock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    pub step_id: Uuid,
    pub phase: StepPhase,
    pub attempt: u32,
    pub worker: String,
    pub at: DateTime<Utc>,
    /// When the worker began this attempt.
    pub started_at: DateTime<Utc>,
    #[serde(default)]
    pub log: Vec<WorkerLog>,
    pub outcome: StepOutcome,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StepOutcome {
    /// Log lines of a step still running.
    Progress,
    Succeeded {
        #[serde(default)]
        output: StepOutput,
        #[serde(default)]
        warning: bool,
    },
    /// A transient failure; the command is parked in a retry queue.
    Retrying { error: String, retry_in_ms: u64 },
    /// The step was stopped (or not started) because its task is being cancelled
    /// ([`StepStop`]); `started` says whether it had begun to run.
    Stopped { started: bool },
}

/// Body of a message on [`exchanges::CONTROL`]: stop this step if it is running, and do not
/// start it if it comes later. Every worker process hears it; the one with the step answers
/// [`StepOutcome::Stopped`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepStop {
    pub task_id: Uuid,
    pub step_id: Uuid,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerLog {
    pub at: DateTime<Utc>,
    pub level: LogLevel,
    pub message: String,
}

/// Body of a message on `berth.dead`: the command that could not be done, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetterMessage {
    pub command: StepCommand,
    pub routing_key: String,
    pub error: String,
    pub history: Vec<AttemptRecord>,
    #[serde(default)]
    pub log: Vec<WorkerLog>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notice_is_typed_with_its_type_beside_its_data() {
        let id = Uuid::nil();
        let notice = Notice {
            id,
            at: DateTime::parse_from_rfc3339("2026-12-05T10:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
            event: NoticeEvent::TaskFinished {
                task_id: id,
                task_type: TaskType::LoginReset,
                target: "a.example".into(),
                target_kind: TargetKind::Site,
                status: TaskStatus::Error,
                trace_id: "0af7651916cd43dd8448eb211c80319c".into(),
                client: Some("acme".into()),
            },
        };
        let json = serde_json::to_value(&notice).unwrap();
        assert_eq!(json["type"], "task.finished");
        assert_eq!(json["data"]["task_type"], "login-reset");
        assert_eq!(json["data"]["status"], "error");
        assert_eq!(json["data"]["client"], "acme");
        assert_eq!(serde_json::from_value::<Notice>(json).unwrap(), notice);
        assert_eq!(notice.event.kind(), "task.finished");
        assert_eq!(notice.event.task_facts(), Some(("login-reset", "error")));
        assert_eq!(notice.event.client(), Some("acme"));
        // A schedule alert written before events carried a client still reads.
        let old = serde_json::json!({"id": id, "at": "2026-12-05T10:00:00Z",
            "type": "schedule.alert", "data": {"schedule": "s", "site": null,
            "kind": "missed", "message": "m"}});
        let read: Notice = serde_json::from_value(old).unwrap();
        assert_eq!(read.event.kind(), "schedule.alert");
        assert_eq!(read.event.client(), None);
        for kind in NoticeEvent::KINDS {
            assert!(kind.contains('.'), "{kind}");
        }
    }

    #[test]
    fn statuses_round_trip_through_their_names() {
        for s in TaskStatus::ALL {
            assert_eq!(TaskStatus::parse(s.as_str()), Some(s));
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
        }
        assert_eq!(TaskStatus::parse("done"), None);
    }

    #[test]
    fn db_admin_password_is_accepted_but_never_serialised() {
        let db: DbService = serde_json::from_str(
            r#"{"type":"mariadb","host":"db.example.com","admin_password":"s3cret"}"#,
        )
        .unwrap();
        assert_eq!(db.admin_password.as_deref(), Some("s3cret"));
        let out = serde_json::to_string(&db).unwrap();
        assert!(!out.contains("s3cret"), "{out}");
        assert!(out.contains("\"port\":3306"));
    }

    #[test]
    fn step_outcome_is_tagged() {
        let o = StepOutcome::Retrying {
            error: "x".into(),
            retry_in_ms: 5,
        };
        let v = serde_json::to_value(&o).unwrap();
        assert_eq!(v["kind"], "retrying");
        assert_eq!(serde_json::from_value::<StepOutcome>(v).unwrap(), o);
    }

    #[test]
    fn new_task_rejects_unknown_fields() {
        let err = serde_json::from_str::<NewTask>(r#"{"type":"noop","target":"x","bogus":1}"#)
            .unwrap_err();
        assert!(err.to_string().contains("bogus"));
    }
}

/// `POST /api/v1/clients`: a tenant. With `storefront` and `external_ref`, a retry of the
/// same order finds the same client (200 instead of 201).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewClient {
    pub name: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub storefront: Option<String>,
    #[serde(default)]
    pub external_ref: Option<String>,
    #[serde(default)]
    pub quotas: Quotas,
}

/// A client's quotas (Aegir's hosting_quota); absent: no limit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quotas {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_sites: Option<i32>,
    /// Site files and databases, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_disk_bytes: Option<i64>,
    /// Backups kept, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_backup_bytes: Option<i64>,
}

/// `PATCH /api/v1/clients/{name}`: only what is given changes; a quota given as `null` is
/// lifted.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientChange {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default, with = "double_option")]
    pub max_sites: Option<Option<i32>>,
    #[serde(default, with = "double_option")]
    pub max_disk_bytes: Option<Option<i64>>,
    #[serde(default, with = "double_option")]
    pub max_backup_bytes: Option<Option<i64>>,
}

/// `Option<Option<T>>` in JSON: absent is `None`, `null` is `Some(None)`.
mod double_option {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<T: Serialize, S: Serializer>(
        v: &Option<Option<T>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            None => s.serialize_none(),
            Some(inner) => inner.serialize(s),
        }
    }

    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(d).map(Some)
    }
}

/// What a client uses: sites counted live, disk and backup bytes as recorded.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClientUsage {
    pub sites: i64,
    pub disk_bytes: i64,
    /// Sites whose disk use was never measured (not in `disk_bytes`).
    pub sites_unmeasured: i64,
    pub backup_bytes: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Client {
    pub id: Uuid,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storefront: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_ref: Option<String>,
    /// `active`, `suspended` or `cancelled`.
    pub status: String,
    /// Cancelled: when its sites are deleted (each with a backup first); until then
    /// `unsuspend` takes the cancellation back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_sites_after: Option<DateTime<Utc>>,
    pub quotas: Quotas,
    pub usage: ClientUsage,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// `POST /api/v1/clients/{name}/cancel`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientCancel {
    /// How long its sites stay (suspended) before they are deleted, each with a backup
    /// first; default 14 days, 0: at the scheduler's next look.
    #[serde(default)]
    pub grace_seconds: Option<u32>,
}

/// The answer to suspending, unsuspending or cancelling a client: the client as it is now
/// and the tasks queued on its sites (a suspend or unsuspend each).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientStanding {
    pub client: Client,
    pub tasks: Vec<Uuid>,
}

/// `POST /api/v1/tokens`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    pub name: String,
    /// `admin`, or `<family>:read` / `<family>:write`; at most those the caller holds.
    pub scopes: Vec<String>,
    /// Bound to this client: it sees and acts on that client's sites only.
    #[serde(default)]
    pub client: Option<String>,
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
}

/// A token as listed: never its value (shown once, in [`CreatedToken`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiToken {
    pub id: Uuid,
    pub name: String,
    pub scopes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<Uuid>,
}

/// The answer to `POST /api/v1/tokens`: the token's value, this once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreatedToken {
    #[serde(flatten)]
    pub info: ApiToken,
    pub token: String,
}
