//! The command line: clap definitions, and the client of the REST API behind `servers`,
//! `tasks` and `dead-letters`.
//!
//! Output is a table or a few `key  value` lines for people, or the API's JSON as it came
//! with `--json`. API errors (problem+json) print `error: <title>: <detail>` and exit 1.
//! The token is sent only in the `Authorization` header and never printed.

use crate::serve::Service;
use berth_api::routes::tasks::LogPage;
use berth_contracts::{DeadLetter, LogEntry, Page, Problem, Server, Step, Task, TaskStatus};
use clap::{Args, Parser, Subcommand};
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;
use uuid::Uuid;

pub const DEFAULT_API_URL: &str = "http://127.0.0.1:8080";

/// How often `tasks log --follow` asks for new log entries.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(300);
/// How long `--follow` keeps trying while the API does not answer (restarting, say).
const FOLLOW_PATIENCE: Duration = Duration::from_secs(30);

#[derive(Debug, Parser)]
#[command(
    name = "berth",
    version,
    about = "berth: Aegir-like hosting on RabbitMQ and PostgreSQL",
    long_about = "berth: Aegir-like hosting on RabbitMQ and PostgreSQL.\n\n\
        `berth serve <service>|all` runs the services; the other commands talk to the API \
        (BERTH_API_URL, BERTH_TOKEN).",
    after_help = after_help(),
)]
pub struct Cli {
    #[command(flatten)]
    pub api: ApiArgs,
    #[command(subcommand)]
    pub command: Command,
}

fn after_help() -> String {
    format!(
        "Aegir command forms (drush replaced by berth):\n{}",
        crate::aegir::forms_help()
    )
}

/// Where the API is and how to talk to it.
#[derive(Debug, Clone, Args)]
pub struct ApiArgs {
    /// Base URL of the berth API.
    #[arg(
        long,
        global = true,
        env = "BERTH_API_URL",
        hide_env_values = true,
        default_value = DEFAULT_API_URL
    )]
    pub api_url: String,
    /// API token (prefer the environment variable: arguments are visible to other users).
    #[arg(long, global = true, env = "BERTH_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print the API's JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a service (or all of them in one process) until SIGTERM or SIGINT.
    Serve {
        #[arg(value_enum)]
        service: Service,
    },
    /// API tokens (made directly in the database: run where BERTH_DATABASE_URL reaches it).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Print a new cluster secret key (64 hex digits) for BERTH_SECRET_KEY.
    SecretKey,
    /// Servers and their services (Aegir's server contexts).
    #[command(subcommand)]
    Servers(ServersCommand),
    /// Platforms: codebases on a web server (Aegir's platform contexts).
    #[command(subcommand)]
    Platforms(PlatformsCommand),
    /// Sites: domains installed on a platform (Aegir's site contexts).
    #[command(subcommand)]
    Sites(SitesCommand),
    /// Aegir's `provision-save`: create or delete a context of any type.
    #[command(subcommand, hide = true)]
    Contexts(Box<ContextsCommand>),
    /// Tasks: list, show, follow, create, cancel, retry.
    #[command(subcommand)]
    Tasks(TasksCommand),
    /// Steps that failed for good: list, show, replay, discard.
    #[command(subcommand, name = "dead-letters")]
    DeadLetters(DeadLettersCommand),
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an admin API token and print it (only it) on stdout.
    Create {
        #[arg(long)]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ServersCommand {
    /// List servers.
    List,
    /// Show one server.
    Show { name: String },
    /// Create a server and queue its verify task. The db admin password is read from
    /// BERTH_DB_ADMIN_PASSWORD, never from an argument.
    Create(CreateServer),
    /// Delete a server.
    Delete { name: String },
}

#[derive(Debug, Args)]
pub struct CreateServer {
    /// Fully qualified host name; the context name is `server_<host without dots>`.
    #[arg(long)]
    pub host: String,
    /// Context name, if not derived from the host (e.g. `server_master`).
    #[arg(long)]
    pub name: Option<String>,
    /// Web server type.
    #[arg(long, value_parser = ["nginx", "apache", "null"])]
    pub http: Option<String>,
    /// Web server port [default: 80].
    #[arg(long, requires = "http")]
    pub http_port: Option<u16>,
    /// Database server type.
    #[arg(long, value_parser = ["mariadb", "mysql", "null"])]
    pub db: Option<String>,
    /// Database host [default: 127.0.0.1].
    #[arg(long, requires = "db")]
    pub db_host: Option<String>,
    /// Database port [default: 3306].
    #[arg(long, requires = "db")]
    pub db_port: Option<u16>,
    /// Database admin user [default: root].
    #[arg(long, requires = "db")]
    pub db_user: Option<String>,
    /// DNS server type.
    #[arg(long, value_parser = ["bind", "null"])]
    pub dns: Option<String>,
    /// DNS port [default: 53].
    #[arg(long, requires = "dns")]
    pub dns_port: Option<u16>,
}

#[derive(Debug, Subcommand)]
pub enum PlatformsCommand {
    /// List platforms.
    List,
    /// Show one platform.
    Show { name: String },
    /// Create a platform and queue its verify (package scan); --follow waits for it.
    Create {
        /// Context name: platform_<name>.
        #[arg(long)]
        name: String,
        /// Absolute path of the codebase on the web server.
        #[arg(long)]
        root: String,
        /// Server publishing it [default: server_master].
        #[arg(long)]
        web_server: Option<String>,
        /// The drush program, relative to the root or absolute [default: vendor/bin/drush].
        #[arg(long)]
        drush: Option<String>,
        #[arg(long, short)]
        follow: bool,
    },
    /// The packages the last verify found.
    Packages { name: String },
    /// Take no new sites.
    Lock { name: String },
    /// Take new sites again.
    Unlock { name: String },
    /// Forget a platform without sites (its codebase stays on disk).
    Delete { name: String },
}

#[derive(Debug, Args)]
pub struct CreateSite {
    /// The domain name.
    #[arg(long)]
    pub uri: String,
    /// Context name of the platform.
    #[arg(long)]
    pub platform: String,
    /// Server holding the database [default: server_master].
    #[arg(long)]
    pub db_server: Option<String>,
    /// Install profile [default: standard].
    #[arg(long)]
    pub profile: Option<String>,
    /// Language code [default: en].
    #[arg(long)]
    pub language: Option<String>,
    #[arg(long)]
    pub client: Option<String>,
    #[arg(long)]
    pub client_email: Option<String>,
    /// An alias (repeat for more).
    #[arg(long = "alias")]
    pub aliases: Vec<String>,
    /// Aliases answer with a 301 to the main domain.
    #[arg(long)]
    pub redirection: bool,
    /// Follow the install task to its end.
    #[arg(long, short)]
    pub follow: bool,
}

#[derive(Debug, Subcommand)]
pub enum SitesCommand {
    /// List sites.
    List {
        #[arg(long)]
        platform: Option<String>,
        #[arg(long)]
        status: Option<String>,
    },
    /// Show one site (with its one-time login link while it is fresh).
    Show { uri: String },
    /// Create a site: queues its install.
    Create(CreateSite),
    /// Install a site: follows the install already queued, or queues one.
    Install {
        uri: String,
        #[arg(long, short)]
        follow: bool,
    },
    /// The packages enabled on the site.
    Packages { uri: String },
    /// The site's backups, newest first.
    Backups { uri: String },
    /// Forget a site whose install failed.
    Delete { uri: String },
}

/// Aegir's `provision-save @ctx --context_type=… --property=value`, options as Aegir spells them.
#[derive(Debug, Subcommand)]
pub enum ContextsCommand {
    Save(SaveContext),
}

#[derive(Debug, Args)]
pub struct SaveContext {
    pub context: String,
    #[arg(long = "context_type", value_parser = ["server", "platform", "site"])]
    pub context_type: Option<String>,
    #[arg(long)]
    pub delete: bool,
    #[arg(long)]
    pub uri: Option<String>,
    #[arg(long)]
    pub platform: Option<String>,
    #[arg(long = "db_server")]
    pub db_server: Option<String>,
    #[arg(long)]
    pub profile: Option<String>,
    #[arg(long)]
    pub language: Option<String>,
    #[arg(long)]
    pub client: Option<String>,
    #[arg(long = "client_email")]
    pub client_email: Option<String>,
    /// Comma-separated aliases.
    #[arg(long)]
    pub aliases: Option<String>,
    /// `--redirection` or `--redirection=false`.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub redirection: Option<bool>,
    #[arg(long)]
    pub root: Option<String>,
    #[arg(long = "web_server")]
    pub web_server: Option<String>,
    /// Servers: the host name.
    #[arg(long = "remote_host")]
    pub remote_host: Option<String>,
    #[arg(long = "http_service_type", value_parser = ["nginx", "apache", "null"])]
    pub http_service_type: Option<String>,
    #[arg(long = "http_port")]
    pub http_port: Option<u16>,
    #[arg(long = "db_service_type", value_parser = ["mariadb", "mysql", "null"])]
    pub db_service_type: Option<String>,
    #[arg(long = "db_host")]
    pub db_host: Option<String>,
    #[arg(long = "db_port")]
    pub db_port: Option<u16>,
    #[arg(long = "db_user")]
    pub db_user: Option<String>,
    #[arg(long = "dns_service_type", value_parser = ["bind", "null"])]
    pub dns_service_type: Option<String>,
    #[arg(long = "dns_port")]
    pub dns_port: Option<u16>,
}

#[derive(Debug, Subcommand)]
pub enum TasksCommand {
    /// List tasks, newest first.
    List {
        /// queued, processing, success, warning, error or cancelled.
        #[arg(long)]
        status: Option<String>,
        /// Task type, e.g. verify.
        #[arg(long = "type")]
        task_type: Option<String>,
        /// Context name, e.g. server_master.
        #[arg(long)]
        target: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
        #[arg(long, default_value_t = 0)]
        offset: i64,
    },
    /// Show a task: its steps with attempts, errors and retry history, and its log.
    Show { id: String },
    /// Print a task's log; with --follow, until the task is finished (exit 0 on success or
    /// warning, 1 otherwise).
    Log {
        id: String,
        #[arg(long, short)]
        follow: bool,
    },
    /// Queue a task, e.g. `berth tasks create verify server_master`.
    Create {
        /// Task type: verify, noop.
        #[arg(value_name = "TYPE")]
        task_type: String,
        /// Context name: server_…, platform_… or a site's uri.
        target: String,
        /// Arguments as a JSON object.
        #[arg(long)]
        args: Option<String>,
        /// Follow the task's log until it is finished (exit 0 on success or warning).
        #[arg(long, short)]
        follow: bool,
    },
    /// Cancel a task. A queued one is cancelled at once. A running one is stopped: its
    /// worker is told to stop the step it runs (given up at once if no worker consumes its
    /// queue), the steps it did are taken back newest first, and it ends `cancelled`
    /// (follow it with `berth tasks log ID --follow`). A finished task cannot be cancelled.
    Cancel { id: String },
    /// Queue a failed or cancelled task again, as a new task.
    Retry {
        id: String,
        #[arg(long, short)]
        follow: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum DeadLettersCommand {
    /// List dead letters, newest first.
    List {
        #[arg(long, default_value_t = 50)]
        limit: i64,
        #[arg(long, default_value_t = 0)]
        offset: i64,
    },
    /// Show a dead letter: its error, attempt history and step command.
    Show { id: String },
    /// Put the dead letter's task back in the queue from its failed step.
    Replay {
        id: String,
        /// Follow the task's log until it is finished (exit 0 on success or warning).
        #[arg(long, short)]
        follow: bool,
    },
    /// Discard a dead letter.
    Discard { id: String },
}

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The API answered with a problem.
    #[error("{title}: {detail}{hint}")]
    Problem {
        title: String,
        detail: String,
        /// A line of advice, starting with a newline; may be empty.
        hint: String,
    },
    #[error(
        "the berth API is not reachable at {url} (connection refused or no such host).\n\
         Start it with `berth serve all` (or `sudo ops/run.sh` for the whole system), or point \
         BERTH_API_URL / --api-url at a running API."
    )]
    Unreachable { url: String },
    #[error("the berth API at {url} did not answer in time")]
    Timeout { url: String },
    #[error("talking to the berth API at {url}: {error}")]
    Http { url: String, error: String },
    #[error("unexpected answer from the berth API ({what}): {error}")]
    BadAnswer { what: String, error: String },
    #[error("{0}")]
    Usage(String),
}

pub(crate) fn usage(msg: impl Into<String>) -> CliError {
    CliError::Usage(msg.into())
}

/// The problem+json answer as an error, with advice where there is an obvious fix.
fn problem_error(status: u16, body: &[u8]) -> CliError {
    let (title, detail) = match serde_json::from_slice::<Problem>(body) {
        Ok(p) => (p.title, p.detail.unwrap_or_default()),
        Err(_) => (
            format!("HTTP {status}"),
            String::from_utf8_lossy(body).chars().take(300).collect(),
        ),
    };
    let hint = match status {
        401 => "\nhint: set BERTH_TOKEN to a valid token; make one with `berth token create --name NAME` \
                where BERTH_DATABASE_URL reaches the API's database"
            .to_string(),
        _ => String::new(),
    };
    CliError::Problem {
        title,
        detail,
        hint,
    }
}

// ---------------------------------------------------------------------------------------
// The API client
// ---------------------------------------------------------------------------------------

pub struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
}

/// Percent-encodes one path segment (a server name, say) so that it stays one segment.
pub(crate) fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    if out == "." || out == ".." {
        out = out.replace('.', "%2E");
    }
    out
}

fn task_id(id: &str) -> Result<Uuid, CliError> {
    Uuid::parse_str(id.trim()).map_err(|_| usage(format!("`{id}` is not a task id (a UUID)")))
}

fn dead_letter_id(id: &str) -> Result<Uuid, CliError> {
    Uuid::parse_str(id.trim())
        .map_err(|_| usage(format!("`{id}` is not a dead letter id (a UUID)")))
}

impl Client {
    pub fn new(api: &ApiArgs) -> Result<Self, CliError> {
        let token = api.token.clone().filter(|t| !t.trim().is_empty()).ok_or_else(|| {
            usage(
                "BERTH_TOKEN is not set: set it (or pass --token) to an API token; make one with \
                 `berth token create --name NAME`",
            )
        })?;
        let base = api.api_url.trim().trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(usage(format!(
                "BERTH_API_URL / --api-url `{base}` must begin with http:// or https://, e.g. {DEFAULT_API_URL}"
            )));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("berth-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CliError::Http {
                url: base.clone(),
                error: e.to_string(),
            })?;
        Ok(Self { base, token, http })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.base)
    }

    /// Sends a request; the JSON answer, or `None` for 204.
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Option<Value>, CliError> {
        let url = self.url(path);
        let mut req = self
            .http
            .request(method, &url)
            .bearer_auth(&self.token)
            .header(reqwest::header::ACCEPT, "application/json");
        if !query.is_empty() {
            req = req.query(query);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let res = req.send().await.map_err(|e| self.transport_error(e))?;
        let status = res.status();
        let bytes = res.bytes().await.map_err(|e| self.transport_error(e))?;
        if !status.is_success() {
            return Err(problem_error(status.as_u16(), &bytes));
        }
        if status == reqwest::StatusCode::NO_CONTENT || bytes.is_empty() {
            return Ok(None);
        }
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| CliError::BadAnswer {
                what: path.to_string(),
                error: e.to_string(),
            })
    }

    fn transport_error(&self, e: reqwest::Error) -> CliError {
        if e.is_connect() {
            CliError::Unreachable {
                url: self.base.clone(),
            }
        } else if e.is_timeout() {
            CliError::Timeout {
                url: self.base.clone(),
            }
        } else {
            CliError::Http {
                url: self.base.clone(),
                // Without the URL reqwest adds: ours is already in the message.
                error: e.without_url().to_string(),
            }
        }
    }

    pub(crate) async fn get(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Value, CliError> {
        self.send(reqwest::Method::GET, path, query, None)
            .await?
            .ok_or_else(|| CliError::BadAnswer {
                what: path.to_string(),
                error: "empty body".into(),
            })
    }

    pub(crate) async fn post(&self, path: &str, body: &Value) -> Result<Value, CliError> {
        self.send(reqwest::Method::POST, path, &[], Some(body))
            .await?
            .ok_or_else(|| CliError::BadAnswer {
                what: path.to_string(),
                error: "empty body".into(),
            })
    }

    pub(crate) async fn patch(&self, path: &str, body: &Value) -> Result<Value, CliError> {
        self.send(reqwest::Method::PATCH, path, &[], Some(body))
            .await?
            .ok_or_else(|| CliError::BadAnswer {
                what: path.to_string(),
                error: "empty body".into(),
            })
    }

    /// Whether a resource exists (`GET` answers, rather than 404).
    pub(crate) async fn exists(&self, path: &str) -> Result<bool, CliError> {
        match self.get(path, &[]).await {
            Ok(_) => Ok(true),
            Err(CliError::Problem { title, .. }) if title == "Not found" => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub(crate) async fn delete(&self, path: &str) -> Result<(), CliError> {
        self.send(reqwest::Method::DELETE, path, &[], None).await?;
        Ok(())
    }
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(what: &str, v: Value) -> Result<T, CliError> {
    serde_json::from_value(v).map_err(|e| CliError::BadAnswer {
        what: what.to_string(),
        error: e.to_string(),
    })
}

pub(crate) fn print_json(v: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    );
}

// ---------------------------------------------------------------------------------------
// Formatting
// ---------------------------------------------------------------------------------------

pub(crate) fn time(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

pub(crate) fn opt_time(t: &Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.as_ref().map(time).unwrap_or_else(|| "-".into())
}

/// Columns padded to their widest cell, separated by two spaces; the last column is not
/// padded.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i == last {
                s.push_str(c);
            } else {
                let pad = widths[i] - c.chars().count();
                s.push_str(c);
                s.push_str(&" ".repeat(pad + 2));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// One line, at most `max` characters.
fn short(s: &str, max: usize) -> String {
    let one_line = s.replace(['\n', '\r'], " ");
    if one_line.chars().count() <= max {
        one_line
    } else {
        let cut: String = one_line.chars().take(max.saturating_sub(1)).collect();
        cut + "…"
    }
}

fn log_line(e: &LogEntry) -> String {
    format!("{} [{}] {}", time(&e.at), e.level.as_str(), e.message)
}

fn services_cells(s: &Server) -> [String; 3] {
    let http = s
        .services
        .http
        .as_ref()
        .map(|h| format!("{}:{}", h.service_type, h.port))
        .unwrap_or_else(|| "-".into());
    let db = s
        .services
        .db
        .as_ref()
        .map(|d| {
            if d.service_type == "null" {
                "null".into()
            } else {
                format!("{} {}@{}:{}", d.service_type, d.admin_user, d.host, d.port)
            }
        })
        .unwrap_or_else(|| "-".into());
    let dns = s
        .services
        .dns
        .as_ref()
        .map(|d| format!("{}:{}", d.service_type, d.port))
        .unwrap_or_else(|| "-".into());
    [http, db, dns]
}

fn server_details(s: &Server) -> String {
    let [http, db, dns] = services_cells(s);
    let mut rows = vec![
        ("Name", s.name.clone()),
        ("Host", s.host.clone()),
        ("http", http),
        ("db", db),
        ("dns", dns),
        ("Created", time(&s.created_at)),
        ("Updated", time(&s.updated_at)),
    ];
    if let Some(t) = s.verify_task {
        rows.push(("Verify task", t.to_string()));
    }
    kv(&rows)
}

pub(crate) fn kv(rows: &[(&str, String)]) -> String {
    let w = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    rows.iter().map(|(k, v)| format!("{k:w$}  {v}\n")).collect()
}

fn step_lines(out: &mut String, s: &Step) {
    let _ = writeln!(
        out,
        "  {}. {}.{} {}  {}  attempts {}{}",
        s.position,
        s.service,
        s.server,
        s.action,
        s.status.as_str(),
        s.attempts,
        match (&s.started_at, &s.finished_at) {
            (Some(a), Some(b)) => format!("  {} → {}", time(a), time(b)),
            (Some(a), None) => format!("  started {}", time(a)),
            _ => String::new(),
        }
    );
    if let Some(c) = &s.compensation {
        let _ = writeln!(out, "     compensation: {c}");
    }
    if let Some(e) = &s.error {
        let _ = writeln!(out, "     error: {e}");
    }
    for h in &s.history {
        let kind = match h.kind {
            berth_contracts::ErrorKind::Transient => "transient",
            berth_contracts::ErrorKind::Permanent => "permanent",
        };
        let _ = writeln!(
            out,
            "     attempt {} at {} by {} ({kind}): {}{}",
            h.attempt,
            time(&h.at),
            h.worker,
            h.error,
            match h.retry_in_ms {
                Some(ms) => format!("; retry in {ms} ms"),
                None => "; no retry".into(),
            }
        );
    }
}

fn task_details(t: &Task) -> String {
    let mut rows = vec![
        ("Task", t.id.to_string()),
        ("Type", t.task_type.clone()),
        (
            "Target",
            format!("{} ({})", t.target, t.target_kind.as_str()),
        ),
        ("Status", t.status.as_str().to_string()),
        ("Requested by", t.requested_by.clone()),
        ("Trace", t.trace_id.clone()),
    ];
    if let Some(r) = t.retry_of {
        rows.push(("Retry of", r.to_string()));
    }
    rows.push(("Created", time(&t.created_at)));
    rows.push(("Started", opt_time(&t.started_at)));
    rows.push(("Finished", opt_time(&t.finished_at)));
    if t.args.as_object().is_none_or(|o| !o.is_empty()) {
        rows.push(("Args", t.args.to_string()));
    }
    let mut out = kv(&rows);
    if let Some(steps) = &t.steps {
        out.push_str("\nSteps:\n");
        if steps.is_empty() {
            out.push_str("  (none yet)\n");
        }
        for s in steps {
            step_lines(&mut out, s);
        }
    }
    if let Some(log) = &t.log {
        out.push_str("\nLog:\n");
        if log.is_empty() {
            out.push_str("  (empty)\n");
        }
        for e in log {
            let _ = writeln!(out, "  {}", log_line(e));
        }
    }
    out
}

fn tasks_table(page: &Page<Task>) -> String {
    let rows: Vec<Vec<String>> = page
        .items
        .iter()
        .map(|t| {
            vec![
                t.id.to_string(),
                t.task_type.clone(),
                t.target.clone(),
                t.status.as_str().to_string(),
                time(&t.created_at),
            ]
        })
        .collect();
    table(&["ID", "TYPE", "TARGET", "STATUS", "CREATED"], &rows)
}

fn dead_letter_details(d: &DeadLetter) -> String {
    let mut out = kv(&[
        ("Dead letter", d.id.to_string()),
        ("Task", d.task_id.to_string()),
        ("Step", d.step_id.to_string()),
        ("Routing key", d.routing_key.clone()),
        ("Error", d.error.clone()),
        ("Created", time(&d.created_at)),
        ("Replayed", opt_time(&d.replayed_at)),
    ]);
    out.push_str("\nAttempts:\n");
    if d.history.is_empty() {
        out.push_str("  (none recorded)\n");
    }
    for h in &d.history {
        let _ = writeln!(
            out,
            "  attempt {} at {} by {}: {}{}",
            h.attempt,
            time(&h.at),
            h.worker,
            h.error,
            h.retry_in_ms
                .map(|ms| format!("; retry in {ms} ms"))
                .unwrap_or_default()
        );
    }
    out.push_str("\nCommand:\n");
    let payload = serde_json::to_string_pretty(&d.payload).unwrap_or_default();
    for l in payload.lines() {
        let _ = writeln!(out, "  {l}");
    }
    out
}

// ---------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------

/// Exit status of a followed task: 0 on success or warning, 1 otherwise.
pub fn exit_for(status: TaskStatus) -> ExitCode {
    match status {
        TaskStatus::Success | TaskStatus::Warning => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}

/// Runs an API command (everything but `serve`, `token` and `secret-key`).
pub async fn run(api: &ApiArgs, command: Command) -> Result<ExitCode, CliError> {
    let client = Client::new(api)?;
    let json = api.json;
    match command {
        Command::Servers(c) => servers(&client, json, c).await,
        Command::Tasks(c) => tasks(&client, json, c).await,
        Command::Platforms(c) => crate::contexts::platforms(&client, json, c).await,
        Command::Sites(c) => crate::contexts::sites(&client, json, c).await,
        Command::Contexts(c) => {
            let ContextsCommand::Save(c) = *c;
            crate::contexts::save(&client, json, c).await
        }
        Command::DeadLetters(c) => dead_letters(&client, json, c).await,
        Command::Serve { .. } | Command::Token(_) | Command::SecretKey => {
            unreachable!("handled in main")
        }
    }
}

/// The body of `POST /servers`. Built by hand: the contracts' `DbService` never
/// serialises the admin password (it is write-only), but it must be sent.
fn new_server_body(c: &CreateServer, db_password: Option<String>) -> Value {
    let mut services = serde_json::Map::new();
    if let Some(ty) = &c.http {
        services.insert(
            "http".into(),
            json!({"type": ty, "port": c.http_port.unwrap_or(80)}),
        );
    }
    if let Some(ty) = &c.db {
        let mut db = json!({
            "type": ty,
            "host": c.db_host.clone().unwrap_or_else(|| "127.0.0.1".into()),
            "port": c.db_port.unwrap_or(3306),
            "admin_user": c.db_user.clone().unwrap_or_else(|| "root".into()),
        });
        if let Some(p) = db_password {
            db["admin_password"] = Value::String(p);
        }
        services.insert("db".into(), db);
    }
    if let Some(ty) = &c.dns {
        services.insert(
            "dns".into(),
            json!({"type": ty, "port": c.dns_port.unwrap_or(53)}),
        );
    }
    let mut body = json!({"host": c.host, "services": services});
    if let Some(n) = &c.name {
        body["name"] = Value::String(n.strip_prefix('@').unwrap_or(n).to_string());
    }
    body
}

pub(crate) async fn servers(
    client: &Client,
    json: bool,
    c: ServersCommand,
) -> Result<ExitCode, CliError> {
    match c {
        ServersCommand::List => {
            let v = client.get("/servers", &[]).await?;
            if json {
                print_json(&v);
            } else {
                let list: Vec<Server> = decode("servers", v)?;
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|s| {
                        let [http, db, dns] = services_cells(s);
                        vec![s.name.clone(), s.host.clone(), http, db, dns]
                    })
                    .collect();
                print!("{}", table(&["NAME", "HOST", "HTTP", "DB", "DNS"], &rows));
            }
        }
        ServersCommand::Show { name } => {
            let name = name.strip_prefix('@').unwrap_or(&name);
            let v = client
                .get(&format!("/servers/{}", segment(name)), &[])
                .await?;
            if json {
                print_json(&v);
            } else {
                print!("{}", server_details(&decode("server", v)?));
            }
        }
        ServersCommand::Create(c) => {
            if c.db.as_deref().is_some_and(|t| t != "null")
                && std::env::var_os("BERTH_DB_ADMIN_PASSWORD").is_none()
            {
                eprintln!(
                    "note: BERTH_DB_ADMIN_PASSWORD is not set: the db server is saved without an admin password"
                );
            }
            let password = std::env::var("BERTH_DB_ADMIN_PASSWORD").ok();
            let v = client
                .post("/servers", &new_server_body(&c, password))
                .await?;
            if json {
                print_json(&v);
            } else {
                let s: Server = decode("server", v)?;
                print!("{}", server_details(&s));
                if let Some(t) = s.verify_task {
                    eprintln!(
                        "verify task {t} queued; follow it with `berth tasks log {t} --follow`"
                    );
                }
            }
        }
        ServersCommand::Delete { name } => {
            let name = name.strip_prefix('@').unwrap_or(&name);
            client
                .delete(&format!("/servers/{}", segment(name)))
                .await?;
            if json {
                print_json(&json!({"deleted": name}));
            } else {
                println!("deleted server {name}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn tasks(client: &Client, json: bool, c: TasksCommand) -> Result<ExitCode, CliError> {
    match c {
        TasksCommand::List {
            status,
            task_type,
            target,
            limit,
            offset,
        } => {
            let mut q = vec![("limit", limit.to_string()), ("offset", offset.to_string())];
            if let Some(s) = status {
                q.push(("status", s));
            }
            if let Some(t) = task_type {
                q.push(("type", t));
            }
            if let Some(t) = target {
                q.push(("target", t));
            }
            let v = client.get("/tasks", &q).await?;
            if json {
                print_json(&v);
            } else {
                let page: Page<Task> = decode("tasks", v)?;
                print!("{}", tasks_table(&page));
                let shown = page.items.len() as i64;
                if page.total > page.offset + shown {
                    eprintln!(
                        "({shown} of {} shown; more with --offset {})",
                        page.total,
                        page.offset + shown
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        TasksCommand::Show { id } => {
            let id = task_id(&id)?;
            let v = client.get(&format!("/tasks/{id}"), &[]).await?;
            if json {
                print_json(&v);
            } else {
                print!("{}", task_details(&decode("task", v)?));
            }
            Ok(ExitCode::SUCCESS)
        }
        TasksCommand::Log { id, follow: false } => {
            let id = task_id(&id)?;
            let v = client
                .get(&format!("/tasks/{id}/log"), &[("after", "0".into())])
                .await?;
            if json {
                print_json(&v);
            } else {
                let page: LogPage = decode("task log", v)?;
                for e in &page.entries {
                    println!("{}", log_line(e));
                }
                eprintln!("task {id} is {}", page.status.as_str());
            }
            Ok(ExitCode::SUCCESS)
        }
        TasksCommand::Log { id, follow: true } => {
            let id = task_id(&id)?;
            let status = follow_log(client, id, json).await?;
            Ok(exit_for(status))
        }
        TasksCommand::Create {
            task_type,
            target,
            args,
            follow,
        } => {
            let args: Value = match args {
                None => json!({}),
                Some(a) => serde_json::from_str(&a)
                    .map_err(|e| usage(format!("--args is not valid JSON: {e}")))?,
            };
            if !args.is_object() {
                return Err(usage(
                    "--args must be a JSON object, e.g. --args '{\"service\":\"db\"}'",
                ));
            }
            let v = client
                .post(
                    "/tasks",
                    &json!({"type": task_type, "target": target, "args": args}),
                )
                .await?;
            queued(client, json, v, follow, "queued").await
        }
        TasksCommand::Cancel { id } => {
            let id = task_id(&id)?;
            let v = client
                .post(&format!("/tasks/{id}/cancel"), &json!({}))
                .await?;
            if json {
                print_json(&v);
            } else {
                let t: Task = decode("task", v)?;
                if t.cancel_requested_at.is_some() && !t.status.is_finished() {
                    println!(
                        "task {} is being cancelled: its running step is stopped and the steps \
                         it did are taken back (follow: berth tasks log {} --follow)",
                        t.id, t.id
                    );
                } else {
                    println!("task {} is {}", t.id, t.status.as_str());
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        TasksCommand::Retry { id, follow } => {
            let id = task_id(&id)?;
            let v = client
                .post(&format!("/tasks/{id}/retry"), &json!({}))
                .await?;
            queued(client, json, v, follow, &format!("queued (retry of {id})")).await
        }
    }
}

/// Reports a task the API accepted; follows it when asked.
pub(crate) async fn queued(
    client: &Client,
    json: bool,
    v: Value,
    follow: bool,
    what: &str,
) -> Result<ExitCode, CliError> {
    let task: Task = decode("task", v.clone())?;
    if !follow {
        if json {
            print_json(&v);
        } else {
            // Only the id on stdout, for scripts: `id=$(berth tasks create …)`.
            println!("{}", task.id);
            eprintln!(
                "task {} {what}: {} on {}",
                task.id, task.task_type, task.target
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    if json {
        println!("{}", serde_json::to_string(&v).unwrap_or_default());
    } else {
        eprintln!(
            "task {} {what}: {} on {}",
            task.id, task.task_type, task.target
        );
    }
    let status = follow_log(client, task.id, json).await?;
    Ok(exit_for(status))
}

/// Prints a task's log as it grows, until the task is finished; its final status.
/// With `json`, one log entry per line (and a final `{"status": …}` line).
pub(crate) async fn follow_log(
    client: &Client,
    id: Uuid,
    json: bool,
) -> Result<TaskStatus, CliError> {
    let path = format!("/tasks/{id}/log");
    let mut after: i64 = 0;
    let mut failing_since: Option<std::time::Instant> = None;
    // After the status is seen finished, one more read catches entries written with it.
    let mut last_round = false;
    loop {
        let page = match client.get(&path, &[("after", after.to_string())]).await {
            Ok(v) => {
                if failing_since.take().is_some() {
                    eprintln!("(the API answers again)");
                }
                decode::<LogPage>("task log", v)?
            }
            Err(e @ (CliError::Unreachable { .. } | CliError::Timeout { .. })) => {
                let since = *failing_since.get_or_insert_with(|| {
                    eprintln!("(the API does not answer; retrying for {FOLLOW_PATIENCE:?})");
                    std::time::Instant::now()
                });
                if since.elapsed() > FOLLOW_PATIENCE {
                    return Err(e);
                }
                tokio::time::sleep(FOLLOW_INTERVAL).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        for e in &page.entries {
            after = after.max(e.seq);
            if json {
                println!("{}", serde_json::to_string(e).unwrap_or_default());
            } else {
                println!("{}", log_line(e));
            }
        }
        if page.status.is_finished() {
            if last_round {
                let link = login_link_after(client, id, page.status).await;
                if json {
                    let mut end = json!({"task": id, "status": page.status});
                    if let Some(l) = &link {
                        end["login_link"] = l.as_str().into();
                    }
                    println!("{end}");
                } else {
                    eprintln!("task {id} finished: {}", page.status.as_str());
                    if let Some(l) = &link {
                        println!("one-time login link (valid 24 h, until used): {l}");
                    }
                }
                return Ok(page.status);
            }
            last_round = true;
            continue;
        }
        tokio::time::sleep(FOLLOW_INTERVAL).await;
    }
}

/// The one-time login link a finished install or login-reset made, to print at the end
/// of following it; `None` for other tasks, a failure, or a link the API does not give.
async fn login_link_after(client: &Client, id: Uuid, status: TaskStatus) -> Option<String> {
    if !matches!(status, TaskStatus::Success | TaskStatus::Warning) {
        return None;
    }
    let task: Task = decode("task", client.get(&format!("/tasks/{id}"), &[]).await.ok()?).ok()?;
    if !matches!(task.task_type.as_str(), "install" | "login-reset") {
        return None;
    }
    let site = client
        .get(&format!("/sites/{}", segment(&task.target)), &[])
        .await
        .ok()?;
    site["login_link"].as_str().map(str::to_owned)
}

async fn dead_letters(
    client: &Client,
    json: bool,
    c: DeadLettersCommand,
) -> Result<ExitCode, CliError> {
    match c {
        DeadLettersCommand::List { limit, offset } => {
            let v = client
                .get(
                    "/dead-letters",
                    &[("limit", limit.to_string()), ("offset", offset.to_string())],
                )
                .await?;
            if json {
                print_json(&v);
            } else {
                let page: Page<DeadLetter> = decode("dead letters", v)?;
                let rows: Vec<Vec<String>> = page
                    .items
                    .iter()
                    .map(|d| {
                        vec![
                            d.id.to_string(),
                            d.task_id.to_string(),
                            d.routing_key.clone(),
                            d.history.len().to_string(),
                            time(&d.created_at),
                            if d.replayed_at.is_some() { "yes" } else { "no" }.into(),
                            short(&d.error, 60),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    table(
                        &[
                            "ID",
                            "TASK",
                            "ROUTING KEY",
                            "ATTEMPTS",
                            "CREATED",
                            "REPLAYED",
                            "ERROR"
                        ],
                        &rows
                    )
                );
                let shown = page.items.len() as i64;
                if page.total > page.offset + shown {
                    eprintln!(
                        "({shown} of {} shown; more with --offset {})",
                        page.total,
                        page.offset + shown
                    );
                }
            }
        }
        DeadLettersCommand::Show { id } => {
            let id = dead_letter_id(&id)?;
            let v = client.get(&format!("/dead-letters/{id}"), &[]).await?;
            if json {
                print_json(&v);
            } else {
                print!("{}", dead_letter_details(&decode("dead letter", v)?));
            }
        }
        DeadLettersCommand::Replay { id, follow } => {
            let id = dead_letter_id(&id)?;
            let v = client
                .post(&format!("/dead-letters/{id}/replay"), &json!({}))
                .await?;
            if follow {
                return queued(
                    client,
                    json,
                    v,
                    true,
                    &format!("queued again (dead letter {id})"),
                )
                .await;
            }
            if json {
                print_json(&v);
            } else {
                let t: Task = decode("task", v)?;
                println!(
                    "dead letter {id} replayed: task {} is {}; follow it with `berth tasks log {} --follow`",
                    t.id,
                    t.status.as_str(),
                    t.id
                );
            }
        }
        DeadLettersCommand::Discard { id } => {
            let id = dead_letter_id(&id)?;
            client.delete(&format!("/dead-letters/{id}")).await?;
            if json {
                print_json(&json!({"discarded": id}));
            } else {
                println!("dead letter {id} discarded");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_parses() {
        Cli::command_for_tests().debug_assert();
        let cli = Cli::try_parse_from([
            "berth", "--json", "tasks", "list", "--status", "error", "--type", "verify", "--limit",
            "5",
        ])
        .unwrap();
        assert!(cli.api.json);
        assert!(matches!(
            cli.command,
            Command::Tasks(TasksCommand::List { limit: 5, .. })
        ));
        let cli = Cli::try_parse_from([
            "berth",
            "tasks",
            "create",
            "verify",
            "server_master",
            "--follow",
            "--api-url",
            "http://h:1",
        ])
        .unwrap();
        assert_eq!(cli.api.api_url, "http://h:1");
        assert!(matches!(
            cli.command,
            Command::Tasks(TasksCommand::Create { follow: true, .. })
        ));
        assert!(Cli::try_parse_from(["berth", "serve", "everything"]).is_err());
        assert!(
            Cli::try_parse_from([
                "berth",
                "servers",
                "create",
                "--host",
                "h",
                "--db-port",
                "1"
            ])
            .is_err(),
            "--db-port needs --db"
        );
    }

    #[test]
    fn every_aegir_rewrite_parses_as_a_berth_command() {
        for s in [
            "berth @server_master provision-verify",
            "berth --json @hostmaster hosting-task @server_master verify --debug",
        ] {
            let argv: Vec<String> = s.split_whitespace().map(String::from).collect();
            let out = crate::aegir::rewrite(&argv).unwrap().unwrap();
            let cli = Cli::try_parse_from(out).unwrap();
            assert!(matches!(
                cli.command,
                Command::Tasks(TasksCommand::Create { follow: true, .. })
            ));
        }
    }

    #[test]
    fn the_db_password_is_sent_but_only_from_the_environment() {
        let cli = Cli::try_parse_from([
            "berth",
            "servers",
            "create",
            "--host",
            "db1.example.com",
            "--http",
            "nginx",
            "--db",
            "mariadb",
            "--db-host",
            "10.0.0.2",
            "--dns",
            "bind",
        ])
        .unwrap();
        let Command::Servers(ServersCommand::Create(c)) = cli.command else {
            panic!()
        };
        let body = new_server_body(&c, Some("s3cret".into()));
        assert_eq!(body["host"], "db1.example.com");
        assert_eq!(
            body["services"]["http"],
            json!({"type": "nginx", "port": 80})
        );
        assert_eq!(body["services"]["db"]["host"], "10.0.0.2");
        assert_eq!(body["services"]["db"]["port"], 3306);
        assert_eq!(body["services"]["db"]["admin_user"], "root");
        assert_eq!(body["services"]["db"]["admin_password"], "s3cret");
        assert_eq!(body["services"]["dns"], json!({"type": "bind", "port": 53}));
        assert!(body.get("name").is_none());
        let body = new_server_body(&c, None);
        assert!(body["services"]["db"].get("admin_password").is_none());
        // And the API accepts the shape.
        let _: berth_contracts::NewServer = serde_json::from_value(body).unwrap();
    }

    #[test]
    fn problems_print_title_and_detail() {
        let body = br#"{"type":"https://berth.dev/problems/not-found","title":"Not found","status":404,"detail":"task 1 not found"}"#;
        assert_eq!(
            problem_error(404, body).to_string(),
            "Not found: task 1 not found"
        );
        let e = problem_error(401, br#"{"type":"x","title":"Authentication required","status":401,"detail":"missing or invalid bearer token"}"#).to_string();
        assert!(
            e.starts_with("Authentication required: missing or invalid bearer token"),
            "{e}"
        );
        assert!(e.contains("berth token create"), "{e}");
        assert_eq!(
            problem_error(502, b"bad gateway").to_string(),
            "HTTP 502: bad gateway"
        );
    }

    #[test]
    fn tables_line_up() {
        let t = table(
            &["ID", "STATUS"],
            &[
                vec!["a".into(), "success".into()],
                vec!["bbbb".into(), "x".into()],
            ],
        );
        assert_eq!(t, "ID    STATUS\na     success\nbbbb  x\n");
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(segment("server_master"), "server_master");
        assert_eq!(segment("../tasks"), "..%2Ftasks");
        assert_eq!(segment(".."), "%2E%2E");
        assert_eq!(segment("a b?"), "a%20b%3F");
    }

    #[test]
    fn followed_tasks_exit_zero_only_on_success_or_warning() {
        assert_eq!(exit_for(TaskStatus::Success), ExitCode::SUCCESS);
        assert_eq!(exit_for(TaskStatus::Warning), ExitCode::SUCCESS);
        assert_eq!(exit_for(TaskStatus::Error), ExitCode::FAILURE);
        assert_eq!(exit_for(TaskStatus::Cancelled), ExitCode::FAILURE);
    }

    impl Cli {
        fn command_for_tests() -> clap::Command {
            <Self as clap::CommandFactory>::command()
        }
    }
}
