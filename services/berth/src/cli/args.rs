//! The command line's clap types: every command and its arguments, and nothing it does.

use super::client::DEFAULT_API_URL;
use crate::serve::Service;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "berth",
    version,
    about = "berth: Aegir-like hosting on RabbitMQ and PostgreSQL",
    long_about = "berth: Aegir-like hosting on RabbitMQ and PostgreSQL.\n\n\
        `berth serve <service>|all` runs the services; the other commands talk to the API \
        (BERTH_API_URL, BERTH_TOKEN)."
)]
pub struct Cli {
    #[command(flatten)]
    pub api: ApiArgs,
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// clap's `Parser::parse_from` (exiting on an error or `--help`), with `after_help` at
    /// the foot of the top-level help: the caller passes the Aegir forms, so that these
    /// types need not know them.
    pub fn parse_with_after_help<I, T>(argv: I, after_help: String) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let mut command = <Self as CommandFactory>::command().after_help(after_help);
        let mut matches = command.clone().get_matches_from(argv);
        <Self as FromArgMatches>::from_arg_matches_mut(&mut matches)
            .unwrap_or_else(|e| e.format(&mut command).exit())
    }
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
    /// Schedules: what berth runs on its own (cron, backups, pruning), their runs and alerts.
    #[command(subcommand)]
    Schedules(SchedulesCommand),
    /// Off-site backup targets (S3-compatible stores) backups are copied to.
    #[command(subcommand, name = "backup-targets")]
    BackupTargets(BackupTargetsCommand),
    /// Clients (tenants): who owns sites, their quotas and usage.
    #[command(subcommand)]
    Clients(ClientsCommand),
    /// Scoped API tokens through the API: create (printed once), list, revoke.
    #[command(subcommand)]
    Tokens(TokensCommand),
    /// Signed webhooks: endpoints, their secrets, deliveries and redelivery.
    #[command(subcommand)]
    Webhooks(WebhooksCommand),
}

#[derive(Debug, Subcommand)]
pub enum ClientsCommand {
    /// Create a client (with --storefront and --external-ref, a retry finds the same one).
    Create(CreateClient),
    /// List clients with their usage.
    List,
    /// Show a client, its quotas and usage.
    Show { name: String },
    /// Change a client's name, e-mail or quotas (`none` lifts a quota).
    Change {
        name: String,
        #[arg(long = "name")]
        new_name: Option<String>,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        max_sites: Option<String>,
        #[arg(long)]
        max_disk_bytes: Option<String>,
        #[arg(long)]
        max_backup_bytes: Option<String>,
    },
    /// Suspend a client: its sites serve the "site suspended" page.
    Suspend { name: String },
    /// Take a suspension or a cancellation back: its sites serve as before.
    Unsuspend { name: String },
    /// Cancel a client: its sites are suspended now and deleted after the grace (each with
    /// a backup first).
    Cancel {
        name: String,
        /// Default 14 days.
        #[arg(long)]
        grace_seconds: Option<u32>,
    },
}

#[derive(Debug, Args)]
pub struct CreateClient {
    pub name: String,
    #[arg(long)]
    pub email: Option<String>,
    #[arg(long, requires = "external_ref")]
    pub storefront: Option<String>,
    #[arg(long, requires = "storefront")]
    pub external_ref: Option<String>,
    #[arg(long)]
    pub max_sites: Option<i32>,
    #[arg(long)]
    pub max_disk_bytes: Option<i64>,
    #[arg(long)]
    pub max_backup_bytes: Option<i64>,
}

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Create a token with scopes this token holds; prints it (only it) on stdout, once.
    Create(CreateToken),
    /// List tokens (an admin token: all; else itself and those it made).
    List,
    /// Revoke a token by id.
    Revoke { id: String },
}

#[derive(Debug, Args)]
pub struct CreateToken {
    #[arg(long)]
    pub name: String,
    /// A scope: `admin`, `<family>:read` or `<family>:write` (repeat for more).
    #[arg(long = "scope", required = true)]
    pub scopes: Vec<String>,
    /// Bind the token to a client: it sees that client's sites only.
    #[arg(long)]
    pub client: Option<String>,
    /// When it stops working (RFC 3339, e.g. 2027-01-01T00:00:00Z).
    #[arg(long)]
    pub expires_at: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// Add an endpoint; prints its `whsec_` secret, which is shown this once.
    Create(CreateWebhook),
    /// List endpoints (never their secret).
    List,
    /// Show one endpoint.
    Show { id: String },
    /// Change an endpoint's URL, events, or enable / disable it.
    Update(UpdateWebhook),
    /// Remove an endpoint and its delivery log.
    Delete { id: String },
    /// A new secret (printed once); the previous one still signs during the grace.
    RotateSecret { id: String },
    /// The endpoint's deliveries, newest first, with their attempts.
    Deliveries {
        id: String,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Deliver a delivery's event again (a new delivery, same webhook-id).
    Redeliver { delivery: String },
}

#[derive(Debug, Args)]
pub struct CreateWebhook {
    #[arg(long)]
    pub url: String,
    /// An event filter, repeated: task.finished, site.*, task.finished:install:failed, *.
    #[arg(long = "event", required = true)]
    pub events: Vec<String>,
    /// Only events about this client's sites (the client's id).
    #[arg(long)]
    pub client: Option<String>,
    #[arg(long, default_value = "")]
    pub description: String,
}

#[derive(Debug, Args)]
pub struct UpdateWebhook {
    pub id: String,
    #[arg(long)]
    pub url: Option<String>,
    /// Replaces the filters (repeat it for several).
    #[arg(long = "event")]
    pub events: Vec<String>,
    #[arg(long, conflicts_with = "disable")]
    pub enable: bool,
    #[arg(long)]
    pub disable: bool,
}

#[derive(Debug, Subcommand)]
pub enum BackupTargetsCommand {
    /// Add an S3-compatible target. Its secret access key is read from
    /// BERTH_TARGET_SECRET_ACCESS_KEY, or else from the first line of stdin, never from an
    /// argument.
    Add(AddBackupTarget),
    /// List targets, with the number of copies on each.
    List,
    /// Show one target (never its secret).
    Show { name: String },
    /// Remove a target; refused while copies of backups are on it.
    Remove { name: String },
    /// Give the target a retention of its own (prune tasks then weigh the site's copies on
    /// it by these rules, and a backup pruned locally stays restorable from its copy), or
    /// drop it with --none (copies go with their backups' files again).
    Retention {
        name: String,
        #[command(flatten)]
        rules: RetentionRules,
        #[arg(long, conflicts_with_all = ["keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly", "keep_within", "before_change_keep_last"])]
        none: bool,
    },
}

#[derive(Debug, Args)]
pub struct AddBackupTarget {
    pub name: String,
    /// The store's URL, e.g. https://s3.eu-west-1.amazonaws.com (http:// on loopback only).
    #[arg(long)]
    pub endpoint: String,
    #[arg(long)]
    pub bucket: String,
    /// Keys are `<prefix>/<site>/<file>`.
    #[arg(long, default_value = "")]
    pub prefix: String,
    #[arg(long, default_value = "us-east-1")]
    pub region: String,
    #[arg(long)]
    pub access_key_id: String,
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

/// The http service types berth builds vhosts for.
const HTTP_TYPES: [&str; 2] = ["nginx", "null"];

/// `--http` and `--http_service_type`: one of [`HTTP_TYPES`]. Aegir's `apache` is refused
/// with what to use instead, since berth writes nginx vhosts only.
#[derive(Clone)]
struct HttpType;

impl clap::builder::TypedValueParser for HttpType {
    type Value = String;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<String, clap::Error> {
        if value == "apache" {
            return Err(cmd.clone().error(
                clap::error::ErrorKind::InvalidValue,
                "http service type `apache` is not supported: berth builds nginx vhosts only; \
                 use `nginx`, or `null` for a server without managed http",
            ));
        }
        clap::builder::PossibleValuesParser::new(HTTP_TYPES).parse_ref(cmd, arg, value)
    }

    fn possible_values(
        &self,
    ) -> Option<Box<dyn Iterator<Item = clap::builder::PossibleValue> + '_>> {
        Some(Box::new(
            HTTP_TYPES.iter().map(clap::builder::PossibleValue::new),
        ))
    }
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
    #[arg(long, value_parser = HttpType)]
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
        /// How its sites run cron [default: drush].
        #[arg(long, value_parser = ["drush", "http"])]
        cron_method: Option<String>,
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
    /// List sites, by uri: all, or a page of them (--limit, --offset).
    List {
        #[arg(long)]
        platform: Option<String>,
        /// installing, enabled, disabled, failed or deleted.
        #[arg(long)]
        status: Option<String>,
        /// The client's name.
        #[arg(long)]
        client: Option<String>,
        /// At most this many sites (1 to 500).
        #[arg(long)]
        limit: Option<i64>,
        /// Skip this many sites first.
        #[arg(long)]
        offset: Option<i64>,
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
    /// Run the site's cron now (by its platform's method: drush or HTTP).
    Cron {
        uri: String,
        #[arg(long, short)]
        follow: bool,
    },
    /// Restore drill: restore a backup (default: the newest) into a throwaway site, check
    /// it serves the site's front page, remove it; the backup is marked verified.
    Drill {
        uri: String,
        /// The backup to drill (see `berth sites backups`).
        #[arg(long)]
        backup: Option<String>,
        #[arg(long, short)]
        follow: bool,
    },
    /// Forget a site whose install failed.
    Delete { uri: String },
    /// Which backups a retention policy keeps (and by which rule) and which a prune would
    /// remove; no rule given: the policy of the site's prune schedule.
    Retention {
        uri: String,
        #[command(flatten)]
        rules: RetentionRules,
    },
    /// Remove the backups a retention policy forgets (what `sites retention` shows).
    Prune {
        uri: String,
        #[command(flatten)]
        rules: RetentionRules,
        #[arg(long, short)]
        follow: bool,
    },
}

/// restic's forget rules (for ordinary backups; those made before a restore, migrate or
/// delete are all kept unless a `--before-change-keep-last` is given).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RetentionRules {
    #[arg(long)]
    pub keep_last: Option<u32>,
    #[arg(long)]
    pub keep_hourly: Option<u32>,
    #[arg(long)]
    pub keep_daily: Option<u32>,
    #[arg(long)]
    pub keep_weekly: Option<u32>,
    #[arg(long)]
    pub keep_monthly: Option<u32>,
    #[arg(long)]
    pub keep_yearly: Option<u32>,
    /// A span such as 7d, 12h or 1y2m.
    #[arg(long)]
    pub keep_within: Option<String>,
    /// Keep this many of the backups made before a restore, migrate or delete.
    #[arg(long)]
    pub before_change_keep_last: Option<u32>,
}

#[derive(Debug, Subcommand)]
pub enum SchedulesCommand {
    /// List the schedules with their next slot and open alerts.
    List,
    /// Show a schedule.
    Show { name: String },
    /// Create a schedule, e.g. `berth schedules create nightly --scope all --cron "0 2 * * *"
    /// --job backup --window 14400 --cap-per-web-server 2`.
    Create {
        name: String,
        /// all, platform:<name>, client:<name> or site:<uri>.
        #[arg(long)]
        scope: String,
        /// Cron expression: 5 fields, or 6 with seconds first.
        #[arg(long = "cron")]
        expression: String,
        /// IANA time zone.
        #[arg(long, default_value = "UTC")]
        time_zone: String,
        /// cron, backup, prune or usage.
        #[arg(long)]
        job: String,
        /// Backup targets a scheduled backup is copied to (repeatable).
        #[arg(long = "target")]
        targets: Vec<String>,
        #[command(flatten)]
        rules: RetentionRules,
        #[command(flatten)]
        timing: ScheduleTiming,
        /// Create it disabled.
        #[arg(long)]
        disabled: bool,
    },
    /// Change a schedule (only what is given).
    Change {
        name: String,
        #[arg(long = "cron")]
        expression: Option<String>,
        #[arg(long)]
        time_zone: Option<String>,
        #[command(flatten)]
        timing: ScheduleTiming,
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        #[arg(long)]
        disable: bool,
    },
    /// Delete a schedule (the tasks it queued stay).
    Delete { name: String },
    /// A schedule's runs, newest slot first.
    Runs {
        name: String,
        #[arg(long)]
        site: Option<String>,
        /// fired, skipped or missed.
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Alerts raised on schedules (open ones unless --all).
    Alerts {
        #[arg(long)]
        schedule: Option<String>,
        #[arg(long)]
        site: Option<String>,
        #[arg(long)]
        all: bool,
    },
}

#[derive(Debug, Clone, Default, clap::Args)]
pub struct ScheduleTiming {
    /// Seconds after its slot a run may still start.
    #[arg(long = "window")]
    pub window_secs: Option<u32>,
    /// Seconds of the window runs are spread over.
    #[arg(long = "spread")]
    pub spread_secs: Option<u32>,
    #[arg(long)]
    pub cap_per_web_server: Option<u32>,
    #[arg(long)]
    pub cap_per_db_server: Option<u32>,
    /// Failed runs in a row that raise an alert (0: never).
    #[arg(long)]
    pub alert_after_failures: Option<u32>,
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
    /// Platforms: refused unless empty (berth does not run drush make).
    #[arg(long)]
    pub makefile: Option<String>,
    /// Servers: the host name.
    #[arg(long = "remote_host")]
    pub remote_host: Option<String>,
    #[arg(long = "http_service_type", value_parser = HttpType)]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_parses() {
        <Cli as CommandFactory>::command().debug_assert();
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
    fn apache_is_refused_with_the_types_to_use_instead() {
        for argv in [
            &[
                "berth", "servers", "create", "--host", "h", "--http", "apache",
            ][..],
            &[
                "berth",
                "contexts",
                "save",
                "server_h",
                "--http_service_type=apache",
            ],
        ] {
            let e = Cli::try_parse_from(argv).unwrap_err().to_string();
            assert!(e.contains("berth builds nginx vhosts only"), "{e}");
            assert!(e.contains("use `nginx`, or `null`"), "{e}");
        }
        let e = Cli::try_parse_from(["berth", "servers", "create", "--host", "h", "--http", "x"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("[possible values: nginx, null]"), "{e}");
        let cli = Cli::try_parse_from([
            "berth", "servers", "create", "--host", "h", "--http", "null",
        ])
        .unwrap();
        let Command::Servers(ServersCommand::Create(c)) = cli.command else {
            panic!()
        };
        assert_eq!(c.http.as_deref(), Some("null"));
    }
}
