//! Settings of a berth process, from the environment and an optional TOML file.
//!
//! Every setting has one environment variable (`BERTH_DATABASE_URL`, …) and one key in the
//! file named by `BERTH_CONFIG`: the variable's name lower-cased without `BERTH_`
//! (`database_url = "…"`). The environment wins over the file; an empty variable counts as
//! unset. Every setting but the secret key has a default. A bad value is an error that names
//! the variable, where the value came from, and how to fix it; secret values and URLs (which
//! may hold passwords) are never repeated in errors.

use berth_secrets::SecretKey;
use berth_telemetry::{LogFormat, TelemetryConfig};
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Names the variable that points at the configuration file.
pub const CONFIG_VAR: &str = "BERTH_CONFIG";

/// One setting: its environment variable, its file key, its default.
struct Key {
    var: &'static str,
    default: Option<&'static str>,
    /// Its value may be a secret or hold one: never repeat it.
    secret: bool,
}

const fn key(var: &'static str, default: &'static str) -> Key {
    Key {
        var,
        default: Some(default),
        secret: false,
    }
}

const DATABASE_URL: Key = Key {
    var: "BERTH_DATABASE_URL",
    default: Some("postgres://postgres@127.0.0.1:5432/berth"),
    secret: true,
};
const AMQP_URL: Key = Key {
    var: "BERTH_AMQP_URL",
    default: Some("amqp://guest:guest@127.0.0.1:5672/%2f"),
    secret: true,
};
const LISTEN: Key = key("BERTH_LISTEN", "127.0.0.1:8080");
const DATA_ROOT: Key = key("BERTH_DATA_ROOT", "/var/lib/berth");
const SERVERS: Key = key("BERTH_SERVERS", "server_master");
const SECRET_KEY: Key = Key {
    var: "BERTH_SECRET_KEY",
    default: None,
    secret: true,
};
const SECRET_KEY_FILE: Key = Key {
    var: "BERTH_SECRET_KEY_FILE",
    default: None,
    secret: false,
};
const DIAGNOSTICS: Key = key("BERTH_DIAGNOSTICS", "false");
const CONCURRENCY: Key = key("BERTH_CONCURRENCY", "8");
const RETRY_DELAYS_MS: Key = key("BERTH_RETRY_DELAYS_MS", "1000,5000,30000,300000");
const NGINX_BIN: Key = key("BERTH_NGINX_BIN", "nginx");
const NGINX_CONF: Key = key("BERTH_NGINX_CONF", "/etc/nginx/nginx.conf");
const NAMED_CHECKCONF_BIN: Key = key("BERTH_NAMED_CHECKCONF_BIN", "named-checkconf");
const NAMED_CONF: Key = key("BERTH_NAMED_CONF", "/etc/bind/named.conf");
const NAMED_CHECKZONE_BIN: Key = key("BERTH_NAMED_CHECKZONE_BIN", "named-checkzone");
const RNDC_BIN: Key = key("BERTH_RNDC_BIN", "rndc");
const RNDC_CONF: Key = key("BERTH_RNDC_CONF", "");
const NGINX_FASTCGI_PARAMS: Key = key("BERTH_NGINX_FASTCGI_PARAMS", "/etc/nginx/fastcgi_params");
const PHP_FPM_BIN: Key = key("BERTH_PHP_FPM_BIN", "php-fpm8.2");
const PHP_FPM_CONF: Key = key("BERTH_PHP_FPM_CONF", "/etc/php/8.2/fpm/php-fpm.conf");
const HTTP_LISTEN_ADDRESS: Key = key("BERTH_HTTP_LISTEN_ADDRESS", "");
const RELOAD_WINDOW_MS: Key = key("BERTH_RELOAD_WINDOW_MS", "200");
const RELOAD_MAX_WAIT_MS: Key = key("BERTH_RELOAD_MAX_WAIT_MS", "10000");
const STEP_TIMEOUT_S: Key = key("BERTH_STEP_TIMEOUT_S", "1500");
const STEP_QUEUE_TTL_S: Key = key("BERTH_STEP_QUEUE_TTL_S", "21600");
const NO_WORKER_GRACE_S: Key = key("BERTH_NO_WORKER_GRACE_S", "30");
const MAX_QUEUED_TASKS: Key = key("BERTH_MAX_QUEUED_TASKS", "10000");
const SCHEDULER_TICK_MS: Key = key("BERTH_SCHEDULER_TICK_MS", "1000");
const SCHEDULE_RUN_HISTORY_DAYS: Key = key("BERTH_SCHEDULE_RUN_HISTORY_DAYS", "7");
const INSTALLER_SLOTS: Key = key("BERTH_INSTALLER_SLOTS", "0");
const HTTP_CONCURRENCY: Key = key("BERTH_HTTP_CONCURRENCY", "200");
const DELETE_ENABLED_SITES: Key = key("BERTH_DELETE_ENABLED_SITES", "false");
const BACKUPS_DIR: Key = key("BERTH_BACKUPS_DIR", "");
/// Restore drills name their throwaway sites under it (`.invalid`: no one can own it).
const DRILL_DOMAIN: Key = key("BERTH_DRILL_DOMAIN", "drill.berth.invalid");
const DUMP_BIN: Key = key("BERTH_DUMP_BIN", "mariadb-dump");
const MYSQL_CLIENT_BIN: Key = key("BERTH_MYSQL_CLIENT_BIN", "mariadb");
const MAX_BODY_BYTES: Key = key("BERTH_MAX_BODY_BYTES", "65536");
const LOG_FORMAT: Key = key("BERTH_LOG_FORMAT", "text");
const WEBHOOKS_ALLOW_PRIVATE: Key = key("BERTH_WEBHOOKS_ALLOW_PRIVATE", "false");
/// The delays before the 2nd, 3rd, … attempts: the Standard Webhooks schedule.
const WEBHOOKS_RETRY_MS: Key = key(
    "BERTH_WEBHOOKS_RETRY_MS",
    "5000,300000,1800000,7200000,18000000,36000000,36000000",
);
const WEBHOOKS_MAX_RETRY_AFTER_S: Key = key("BERTH_WEBHOOKS_MAX_RETRY_AFTER_S", "3600");
const WEBHOOKS_TIMEOUT_MS: Key = key("BERTH_WEBHOOKS_TIMEOUT_MS", "10000");
const WEBHOOKS_CONCURRENCY: Key = key("BERTH_WEBHOOKS_CONCURRENCY", "32");
const WEBHOOKS_SWEEP_S: Key = key("BERTH_WEBHOOKS_SWEEP_S", "30");
const WEBHOOKS_ROTATION_GRACE_S: Key = key("BERTH_WEBHOOKS_ROTATION_GRACE_S", "86400");
/// How long the delivery log keeps a finished delivery: 30 days.
const WEBHOOKS_LOG_KEEP_S: Key = key("BERTH_WEBHOOKS_LOG_KEEP_S", "2592000");
/// The SMTP relay of the welcome mail (it may hold a password: shown masked); unset: no mail.
const SMTP_URL: Key = Key {
    var: "BERTH_SMTP_URL",
    default: None,
    secret: true,
};
const MAIL_FROM: Key = key("BERTH_MAIL_FROM", "berth <berth@localhost>");
const OTLP_ENDPOINT: Key = Key {
    var: "OTEL_EXPORTER_OTLP_ENDPOINT",
    default: None,
    secret: false,
};
const WORKER_NAME: Key = Key {
    var: "BERTH_WORKER_NAME",
    default: None,
    secret: false,
};

/// Every key the configuration file may hold.
const ALL_KEYS: [&Key; 50] = [
    &SMTP_URL,
    &MAIL_FROM,
    &WEBHOOKS_ALLOW_PRIVATE,
    &WEBHOOKS_RETRY_MS,
    &WEBHOOKS_MAX_RETRY_AFTER_S,
    &WEBHOOKS_TIMEOUT_MS,
    &WEBHOOKS_CONCURRENCY,
    &WEBHOOKS_SWEEP_S,
    &WEBHOOKS_ROTATION_GRACE_S,
    &WEBHOOKS_LOG_KEEP_S,
    &DATABASE_URL,
    &AMQP_URL,
    &LISTEN,
    &DATA_ROOT,
    &SERVERS,
    &SECRET_KEY,
    &SECRET_KEY_FILE,
    &DIAGNOSTICS,
    &CONCURRENCY,
    &RETRY_DELAYS_MS,
    &NGINX_BIN,
    &NGINX_CONF,
    &NAMED_CHECKCONF_BIN,
    &NAMED_CONF,
    &NAMED_CHECKZONE_BIN,
    &RNDC_BIN,
    &RNDC_CONF,
    &NGINX_FASTCGI_PARAMS,
    &PHP_FPM_BIN,
    &PHP_FPM_CONF,
    &HTTP_LISTEN_ADDRESS,
    &RELOAD_WINDOW_MS,
    &RELOAD_MAX_WAIT_MS,
    &STEP_TIMEOUT_S,
    &STEP_QUEUE_TTL_S,
    &NO_WORKER_GRACE_S,
    &MAX_QUEUED_TASKS,
    &SCHEDULER_TICK_MS,
    &SCHEDULE_RUN_HISTORY_DAYS,
    &INSTALLER_SLOTS,
    &HTTP_CONCURRENCY,
    &DELETE_ENABLED_SITES,
    &DRILL_DOMAIN,
    &BACKUPS_DIR,
    &DUMP_BIN,
    &MYSQL_CLIENT_BIN,
    &MAX_BODY_BYTES,
    &LOG_FORMAT,
    &OTLP_ENDPOINT,
    &WORKER_NAME,
];

impl Key {
    /// `database_url` for `BERTH_DATABASE_URL`; `otel_exporter_otlp_endpoint` for the OTel one.
    fn file_key(&self) -> String {
        self.var
            .strip_prefix("BERTH_")
            .unwrap_or(self.var)
            .to_ascii_lowercase()
    }
}

/// Where a value came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Env,
    File(PathBuf),
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Env => f.write_str("from the environment"),
            Origin::File(p) => write!(f, "from {}", p.display()),
            Origin::Default => f.write_str("the default"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A bad value: which variable, where it came from, what is wrong and how to fix it.
    #[error("invalid {var}{shown} ({origin}): {problem}; {fix}")]
    Invalid {
        var: &'static str,
        /// `=value`, or empty for secrets and URLs.
        shown: String,
        origin: Origin,
        problem: String,
        fix: String,
    },
    #[error("{var} is required {why}; {fix}")]
    Missing {
        var: &'static str,
        why: String,
        fix: String,
    },
    #[error("cannot read the configuration file {path} (named by {CONFIG_VAR}): {error}")]
    FileRead { path: PathBuf, error: String },
    #[error(
        "the configuration file {path} (named by {CONFIG_VAR}) is not valid TOML: {error}; \
         write one `key = \"value\"` per line, e.g. database_url = \"postgres://…\""
    )]
    FileSyntax { path: PathBuf, error: String },
    #[error(
        "unknown key `{key}` in {path}; known keys: {known} (the BERTH_* variable names, \
         lower case, without BERTH_)"
    )]
    UnknownKey {
        key: String,
        path: PathBuf,
        known: String,
    },
}

/// Everything a berth process may need. `Debug` does not print the secret key.
#[derive(Debug, Clone)]
pub struct Settings {
    pub database_url: String,
    pub amqp_url: String,
    pub listen: SocketAddr,
    pub data_root: PathBuf,
    /// Servers the workers of this process serve (`work.<service>.<server>` queues).
    pub servers: Vec<String>,
    secret_key: Option<SecretKey>,
    pub diagnostics: bool,
    pub concurrency: u16,
    pub retry_delays_ms: Vec<u64>,
    pub nginx_bin: String,
    pub nginx_conf: PathBuf,
    pub named_checkconf_bin: String,
    pub named_conf: PathBuf,
    pub named_checkzone_bin: String,
    pub rndc_bin: String,
    /// Empty: rndc's own default configuration.
    pub rndc_conf: Option<PathBuf>,
    /// The php-fpm that runs the sites' pools, and its main configuration (which includes
    /// `<data_root>/config/<server>/php-fpm/pool.d/*.conf`; its `pid` names the master).
    pub php_fpm_bin: String,
    pub php_fpm_conf: PathBuf,
    /// nginx's FastCGI parameters file, included by the vhosts that pass PHP.
    pub nginx_fastcgi_params: PathBuf,
    /// The address vhosts listen on (with the http service's port); empty: all addresses.
    pub http_listen_address: String,
    /// A batch of vhost changes closes once none has come for this long…
    pub reload_window_ms: u64,
    /// …or this long after its first change.
    pub reload_max_wait_ms: u64,
    /// A worker ends a step still running after this many seconds (below the broker's
    /// consumer timeout, 1800 s by default in RabbitMQ).
    pub step_timeout_s: u64,
    /// A step no worker has taken from its queue after this many seconds is dead-lettered
    /// and its task fails; the same value in every process of a deployment.
    pub step_queue_ttl_s: u64,
    /// A step sent to a work queue nobody consumes fails after this many seconds unless a
    /// worker comes (0: it waits for `step_queue_ttl_s`).
    pub no_worker_grace_s: u64,
    /// The API refuses new tasks (503, Retry-After) while this many wait to start; 0: no
    /// limit.
    pub max_queued_tasks: u64,
    /// The scheduler looks at its schedules this often (the lateness of a run is about this).
    pub scheduler_tick_ms: u64,
    /// Runs of a schedule older than this many days are forgotten (the newest few of each
    /// site stay).
    pub schedule_run_history_days: u64,
    /// drush runs at once in an http worker; 0: the number of CPUs.
    pub installer_slots: usize,
    /// Steps an http worker holds at once: most wait for a reload, costing nothing, so
    /// this is far above BERTH_CONCURRENCY; drush runs are capped by the installer slots.
    pub http_concurrency: u16,
    /// Delete may run on an enabled site (default: it must be disabled first).
    pub delete_enabled_sites: bool,
    /// Restore drills' throwaway sites are named under it; no site or alias may be.
    pub drill_domain: String,
    /// Where backups go; empty in the configuration: `<data_root>/backups`.
    pub backups_dir: PathBuf,
    /// The database dump program (`mariadb-dump` or `mysqldump`).
    pub dump_bin: String,
    /// The database client that imports dumps (`mariadb` or `mysql`).
    pub mysql_client_bin: String,
    pub max_body_bytes: usize,
    /// Webhook endpoints may resolve to loopback and private addresses.
    pub webhooks_allow_private: bool,
    /// The delays before a webhook delivery's 2nd, 3rd, … attempts (the first is at once).
    pub webhooks_retry_ms: Vec<u64>,
    /// The longest `Retry-After` a webhook delivery honours.
    pub webhooks_max_retry_after_s: u64,
    /// How long one webhook attempt may take.
    pub webhooks_timeout_ms: u64,
    /// Webhook attempts in flight at once in a notices process.
    pub webhooks_concurrency: u16,
    /// How often the notices service looks for deliveries whose wake-up was lost.
    pub webhooks_sweep_s: u64,
    /// How long the previous secret still signs after a rotation.
    pub webhooks_rotation_grace_s: u64,
    /// How long a finished webhook delivery and its attempts stay in the delivery log.
    pub webhooks_log_keep_s: u64,
    pub log_format: LogFormat,
    pub otlp_endpoint: Option<String>,
    /// The welcome mail's relay (`smtp://…` or `smtps://…`), if any.
    pub smtp_url: Option<String>,
    /// The welcome mail's sender.
    pub mail_from: String,
    /// `BERTH_WORKER_NAME` when set; see [`Settings::worker_name`].
    pub worker_name: Option<String>,
    /// The configuration file read, if any.
    pub file: Option<PathBuf>,
}

/// A raw value with its origin.
struct Raw {
    value: String,
    origin: Origin,
}

/// The layered sources: environment over file over defaults.
struct Sources<'a> {
    env: &'a HashMap<String, String>,
    file: Option<(PathBuf, HashMap<String, String>)>,
}

impl Sources<'_> {
    fn env(&self, k: &Key) -> Option<Raw> {
        self.env
            .get(k.var)
            .filter(|v| !v.trim().is_empty())
            .map(|v| Raw {
                value: v.clone(),
                origin: Origin::Env,
            })
    }

    fn file(&self, k: &Key) -> Option<Raw> {
        let (path, table) = self.file.as_ref()?;
        table
            .get(&k.file_key())
            .filter(|v| !v.trim().is_empty())
            .map(|v| Raw {
                value: v.clone(),
                origin: Origin::File(path.clone()),
            })
    }

    fn get(&self, k: &Key) -> Option<Raw> {
        self.env(k).or_else(|| self.file(k)).or_else(|| {
            k.default.map(|d| Raw {
                value: d.to_string(),
                origin: Origin::Default,
            })
        })
    }

    /// The value of a key that has a default.
    fn value(&self, k: &Key) -> Raw {
        self.get(k)
            .expect("a key with a default always has a value")
    }

    /// Parses a key's value, turning a failure into an error naming the variable.
    fn parse<T>(
        &self,
        k: &Key,
        fix: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        let raw = self.value(k);
        parse(raw.value.trim()).map_err(|problem| invalid(k, &raw, problem, fix))
    }
}

fn invalid(k: &Key, raw: &Raw, problem: String, fix: &str) -> ConfigError {
    ConfigError::Invalid {
        var: k.var,
        shown: if k.secret {
            String::new()
        } else {
            format!("={:?}", raw.value)
        },
        origin: raw.origin.clone(),
        problem,
        fix: fix.to_string(),
    }
}

/// Flattens a TOML value to the string an environment variable would hold: arrays become
/// comma lists, numbers and booleans their usual text.
fn flatten(key: &str, v: &toml::Value, path: &Path) -> Result<String, ConfigError> {
    let bad = |what: &str| ConfigError::FileSyntax {
        path: path.to_path_buf(),
        error: format!("`{key}` is {what}; give a string, a number, a boolean or a list"),
    };
    Ok(match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Array(items) => items
            .iter()
            .map(|i| match i {
                toml::Value::Array(_) | toml::Value::Table(_) => Err(bad("a nested list or table")),
                other => flatten(key, other, path),
            })
            .collect::<Result<Vec<_>, _>>()?
            .join(","),
        toml::Value::Float(_) => return Err(bad("a floating-point number")),
        toml::Value::Datetime(_) => return Err(bad("a date")),
        toml::Value::Table(_) => return Err(bad("a table")),
    })
}

/// Parses the configuration file's text into flat key → value pairs, refusing unknown keys.
pub fn parse_file(path: &Path, text: &str) -> Result<HashMap<String, String>, ConfigError> {
    let table: toml::Table =
        text.parse()
            .map_err(|e: toml::de::Error| ConfigError::FileSyntax {
                path: path.to_path_buf(),
                error: e.message().to_string(),
            })?;
    let known: Vec<String> = ALL_KEYS.iter().map(|k| k.file_key()).collect();
    let mut out = HashMap::new();
    for (k, v) in &table {
        if !known.contains(k) {
            return Err(ConfigError::UnknownKey {
                key: k.clone(),
                path: path.to_path_buf(),
                known: known.join(", "),
            });
        }
        out.insert(k.clone(), flatten(k, v, path)?);
    }
    Ok(out)
}

fn parse_bool(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err("not a boolean".into()),
    }
}

fn parse_url(s: &str, schemes: &[&str]) -> Result<String, String> {
    let scheme_ok = schemes
        .iter()
        .any(|sc| s.len() > sc.len() + 3 && s.starts_with(&format!("{sc}://")));
    if scheme_ok {
        Ok(s.to_string())
    } else {
        Err(format!(
            "must be a URL beginning with {}",
            schemes
                .iter()
                .map(|s| format!("{s}://"))
                .collect::<Vec<_>>()
                .join(" or ")
        ))
    }
}

fn parse_servers(s: &str) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let name = part.strip_prefix('@').unwrap_or(part);
        let name = berth_hosting::ServerName::parse(name).map_err(|e| format!("`{part}`: {e}"))?;
        let name = name.as_str().to_string();
        if !out.contains(&name) {
            out.push(name);
        }
    }
    if out.is_empty() {
        return Err("names no server".into());
    }
    Ok(out)
}

fn parse_delays(s: &str) -> Result<Vec<u64>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| match p.parse::<u64>() {
            Ok(0) => Err("a delay of 0 ms".to_string()),
            Ok(n) => Ok(n),
            Err(_) => Err(format!("`{p}` is not a whole number of milliseconds")),
        })
        .collect()
}

impl Settings {
    /// Reads the process environment and the file it names in `BERTH_CONFIG`, if any.
    pub fn load() -> Result<Self, ConfigError> {
        let env: HashMap<String, String> = std::env::vars().collect();
        let file = match env.get(CONFIG_VAR).filter(|p| !p.trim().is_empty()) {
            None => None,
            Some(p) => {
                let path = PathBuf::from(p.trim());
                let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::FileRead {
                    path: path.clone(),
                    error: e.to_string(),
                })?;
                Some((path, text))
            }
        };
        Self::from_sources(&env, file.as_ref().map(|(p, t)| (p.as_path(), t.as_str())))
    }

    /// Settings from an environment and, optionally, a file's path and text.
    pub fn from_sources(
        env: &HashMap<String, String>,
        file: Option<(&Path, &str)>,
    ) -> Result<Self, ConfigError> {
        let file = match file {
            None => None,
            Some((path, text)) => Some((path.to_path_buf(), parse_file(path, text)?)),
        };
        let src = Sources { env, file };

        let database_url = src.parse(
            &DATABASE_URL,
            "e.g. BERTH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/berth",
            |s| parse_url(s, &["postgres", "postgresql"]),
        )?;
        let amqp_url = src.parse(
            &AMQP_URL,
            "e.g. BERTH_AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f",
            |s| parse_url(s, &["amqp", "amqps"]),
        )?;
        let listen = src.parse(
            &LISTEN,
            "give an IP address and port, e.g. BERTH_LISTEN=127.0.0.1:8080 or 0.0.0.0:8080",
            |s| {
                s.parse::<SocketAddr>()
                    .map_err(|_| "not an IP address and port".into())
            },
        )?;
        let data_root = src.parse(
            &DATA_ROOT,
            "give an absolute directory, e.g. BERTH_DATA_ROOT=/var/lib/berth",
            |s| {
                let p = PathBuf::from(s);
                if p.is_absolute() {
                    Ok(p)
                } else {
                    Err("not an absolute path".into())
                }
            },
        )?;
        let servers = src.parse(
            &SERVERS,
            "give a comma list of server context names, e.g. BERTH_SERVERS=server_master,server_webexamplecom",
            parse_servers,
        )?;
        let diagnostics = src.parse(
            &DIAGNOSTICS,
            "use BERTH_DIAGNOSTICS=true or BERTH_DIAGNOSTICS=false",
            parse_bool,
        )?;
        let concurrency = src.parse(
            &CONCURRENCY,
            "give a whole number from 1 to 1000, e.g. BERTH_CONCURRENCY=8",
            |s| match s.parse::<u16>() {
                Ok(n) if (1..=1000).contains(&n) => Ok(n),
                _ => Err("not a whole number from 1 to 1000".into()),
            },
        )?;
        let retry_delays_ms = src.parse(
            &RETRY_DELAYS_MS,
            "give a comma list of delays in milliseconds, each at least 1, e.g. \
             BERTH_RETRY_DELAYS_MS=1000,5000,30000,300000",
            parse_delays,
        )?;
        let non_empty = |s: &str| {
            if s.is_empty() {
                Err("empty".to_string())
            } else {
                Ok(s.to_string())
            }
        };
        let nginx_bin = src.parse(
            &NGINX_BIN,
            "give the nginx program, e.g. BERTH_NGINX_BIN=/usr/sbin/nginx",
            non_empty,
        )?;
        let nginx_conf = PathBuf::from(src.parse(
            &NGINX_CONF,
            "e.g. BERTH_NGINX_CONF=/etc/nginx/nginx.conf",
            non_empty,
        )?);
        let named_checkconf_bin = src.parse(
            &NAMED_CHECKCONF_BIN,
            "give the named-checkconf program, e.g. BERTH_NAMED_CHECKCONF_BIN=/usr/bin/named-checkconf",
            non_empty,
        )?;
        let named_conf = PathBuf::from(src.parse(
            &NAMED_CONF,
            "e.g. BERTH_NAMED_CONF=/etc/bind/named.conf",
            non_empty,
        )?);
        let named_checkzone_bin = src.parse(
            &NAMED_CHECKZONE_BIN,
            "give the named-checkzone program, e.g. BERTH_NAMED_CHECKZONE_BIN=/usr/bin/named-checkzone",
            non_empty,
        )?;
        let rndc_bin = src.parse(
            &RNDC_BIN,
            "give the rndc program, e.g. BERTH_RNDC_BIN=/usr/sbin/rndc",
            non_empty,
        )?;
        let rndc_conf = src.parse(
            &RNDC_CONF,
            "e.g. BERTH_RNDC_CONF=/etc/bind/rndc.conf",
            |s| Ok(s.to_string()),
        )?;
        let rndc_conf = (!rndc_conf.is_empty()).then(|| PathBuf::from(rndc_conf));
        let nginx_fastcgi_params = PathBuf::from(src.parse(
            &NGINX_FASTCGI_PARAMS,
            "give nginx's FastCGI parameters file, e.g. BERTH_NGINX_FASTCGI_PARAMS=/etc/nginx/fastcgi_params",
            non_empty,
        )?);
        let php_fpm_bin = src.parse(
            &PHP_FPM_BIN,
            "give the php-fpm program, e.g. BERTH_PHP_FPM_BIN=/usr/sbin/php-fpm8.2",
            non_empty,
        )?;
        let php_fpm_conf = PathBuf::from(src.parse(
            &PHP_FPM_CONF,
            "give php-fpm's main configuration (it must include berth's pool directory), e.g. BERTH_PHP_FPM_CONF=/etc/php/8.2/fpm/php-fpm.conf",
            non_empty,
        )?);
        let http_listen_address = src.parse(
            &HTTP_LISTEN_ADDRESS,
            "give an IP address, e.g. BERTH_HTTP_LISTEN_ADDRESS=127.0.0.1, or leave it empty for all",
            |s| {
                if s.is_empty() || s.parse::<std::net::IpAddr>().is_ok() {
                    Ok(s.to_string())
                } else {
                    Err("not an IP address".into())
                }
            },
        )?;
        let reload_window_ms = src.parse(
            &RELOAD_WINDOW_MS,
            "give milliseconds from 0 to 60000, e.g. BERTH_RELOAD_WINDOW_MS=200",
            |s| match s.parse::<u64>() {
                Ok(n) if n <= 60_000 => Ok(n),
                _ => Err("not a whole number from 0 to 60000".into()),
            },
        )?;
        let reload_max_wait_ms = src.parse(
            &RELOAD_MAX_WAIT_MS,
            "give milliseconds from 0 to 600000, e.g. BERTH_RELOAD_MAX_WAIT_MS=10000",
            |s| match s.parse::<u64>() {
                Ok(n) if n <= 600_000 => Ok(n),
                _ => Err("not a whole number from 0 to 600000".into()),
            },
        )?;
        let step_timeout_s = src.parse(
            &STEP_TIMEOUT_S,
            "give seconds from 1 to 86400, below the broker's consumer timeout, e.g. \
             BERTH_STEP_TIMEOUT_S=1500",
            |s| match s.parse::<u64>() {
                Ok(n) if (1..=86_400).contains(&n) => Ok(n),
                _ => Err("not a whole number from 1 to 86400".into()),
            },
        )?;
        let step_queue_ttl_s = src.parse(
            &STEP_QUEUE_TTL_S,
            "give seconds from 1 to 604800, the same in every berth process, e.g. \
             BERTH_STEP_QUEUE_TTL_S=21600",
            |s| match s.parse::<u64>() {
                Ok(n) if (1..=604_800).contains(&n) => Ok(n),
                _ => Err("not a whole number from 1 to 604800".into()),
            },
        )?;
        let no_worker_grace_s = src.parse(
            &NO_WORKER_GRACE_S,
            "give seconds from 0 (off) to 86400, e.g. BERTH_NO_WORKER_GRACE_S=30",
            |s| match s.parse::<u64>() {
                Ok(n) if n <= 86_400 => Ok(n),
                _ => Err("not a whole number from 0 to 86400".into()),
            },
        )?;
        let max_queued_tasks = src.parse(
            &MAX_QUEUED_TASKS,
            "give a whole number, 0 for no limit, e.g. BERTH_MAX_QUEUED_TASKS=10000",
            |s| {
                s.parse::<u64>()
                    .map_err(|_| "not a whole number".to_string())
            },
        )?;
        let scheduler_tick_ms = src.parse(
            &SCHEDULER_TICK_MS,
            "give milliseconds from 100 to 60000, e.g. BERTH_SCHEDULER_TICK_MS=1000",
            |s| match s.parse::<u64>() {
                Ok(n) if (100..=60_000).contains(&n) => Ok(n),
                _ => Err("not a whole number from 100 to 60000".into()),
            },
        )?;
        let schedule_run_history_days = src.parse(
            &SCHEDULE_RUN_HISTORY_DAYS,
            "give days from 1 to 3650, e.g. BERTH_SCHEDULE_RUN_HISTORY_DAYS=7",
            |s| match s.parse::<u64>() {
                Ok(n) if (1..=3650).contains(&n) => Ok(n),
                _ => Err("not a whole number from 1 to 3650".into()),
            },
        )?;
        let installer_slots = src.parse(
            &INSTALLER_SLOTS,
            "give a number from 0 (one per CPU) to 256, e.g. BERTH_INSTALLER_SLOTS=4",
            |s| match s.parse::<usize>() {
                Ok(0) => Ok(std::thread::available_parallelism().map_or(2, |n| n.get())),
                Ok(n) if n <= 256 => Ok(n),
                _ => Err("not a whole number from 0 to 256".into()),
            },
        )?;
        let http_concurrency = src.parse(
            &HTTP_CONCURRENCY,
            "give a whole number from 1 to 1000, e.g. BERTH_HTTP_CONCURRENCY=200",
            |s| match s.parse::<u16>() {
                Ok(n) if (1..=1000).contains(&n) => Ok(n),
                _ => Err("not a whole number from 1 to 1000".into()),
            },
        )?;
        let delete_enabled_sites = src.parse(
            &DELETE_ENABLED_SITES,
            "use BERTH_DELETE_ENABLED_SITES=true or false",
            parse_bool,
        )?;
        let drill_domain = src.parse(
            &DRILL_DOMAIN,
            "give a domain name no customer will use, e.g. BERTH_DRILL_DOMAIN=drill.berth.invalid",
            |s| {
                berth_hosting::HostName::parse(s)
                    .map(|h| h.to_string())
                    .map_err(|e| e.to_string())
            },
        )?;
        let backups_dir = src.parse(
            &BACKUPS_DIR,
            "give an absolute path, e.g. BERTH_BACKUPS_DIR=/var/lib/berth/backups, or leave it empty",
            |s| {
                if s.is_empty() || s.starts_with('/') {
                    Ok(s.to_string())
                } else {
                    Err("not an absolute path".into())
                }
            },
        )?;
        let backups_dir = if backups_dir.is_empty() {
            data_root.join("backups")
        } else {
            PathBuf::from(backups_dir)
        };
        let dump_bin = src.parse(
            &DUMP_BIN,
            "give the dump program, e.g. BERTH_DUMP_BIN=mariadb-dump",
            non_empty,
        )?;
        let mysql_client_bin = src.parse(
            &MYSQL_CLIENT_BIN,
            "give the client program, e.g. BERTH_MYSQL_CLIENT_BIN=mariadb",
            non_empty,
        )?;
        let max_body_bytes = src.parse(
            &MAX_BODY_BYTES,
            "give a size in bytes from 1024 to 1073741824, e.g. BERTH_MAX_BODY_BYTES=65536",
            |s| match s.parse::<usize>() {
                Ok(n) if (1024..=1 << 30).contains(&n) => Ok(n),
                _ => Err("not a whole number of bytes from 1024 to 1073741824".into()),
            },
        )?;
        let log_format = src.parse(
            &LOG_FORMAT,
            "use BERTH_LOG_FORMAT=text or BERTH_LOG_FORMAT=json",
            |s| {
                s.parse::<LogFormat>()
                    .map_err(|_| "not `text` or `json`".into())
            },
        )?;
        let otlp_endpoint = match src.get(&OTLP_ENDPOINT) {
            None => None,
            Some(raw) => Some(
                parse_url(raw.value.trim(), &["http", "https"]).map_err(|p| {
                    invalid(
                        &OTLP_ENDPOINT,
                        &raw,
                        p,
                        "give the OTLP/HTTP base URL, e.g. OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318, or unset it",
                    )
                })?,
            ),
        };
        let smtp_url = match src.get(&SMTP_URL) {
            None => None,
            Some(raw) => Some(parse_url(raw.value.trim(), &["smtp", "smtps"]).map_err(|p| {
                invalid(
                    &SMTP_URL,
                    &raw,
                    p,
                    "give the relay, e.g. BERTH_SMTP_URL=smtp://127.0.0.1:25 or smtps://user:password@mail.example.com, or unset it",
                )
            })?),
        };
        let mail_from = src.value(&MAIL_FROM).value.trim().to_string();
        let worker_name = match src.get(&WORKER_NAME) {
            None => None,
            Some(raw) => {
                let v = raw.value.trim();
                if v.len() > 200 || v.chars().any(|c| c.is_control()) {
                    return Err(invalid(
                        &WORKER_NAME,
                        &raw,
                        "longer than 200 characters or has control characters".into(),
                        "unset it for the default `<service>@<hostname>#<pid>`",
                    ));
                }
                Some(v.to_string())
            }
        };
        let webhooks_allow_private = src.parse(
            &WEBHOOKS_ALLOW_PRIVATE,
            "use BERTH_WEBHOOKS_ALLOW_PRIVATE=true or false",
            parse_bool,
        )?;
        let webhooks_retry_ms = src.parse(
            &WEBHOOKS_RETRY_MS,
            "give a comma list of delays in milliseconds before each retry, e.g. \
             BERTH_WEBHOOKS_RETRY_MS=5000,300000,1800000",
            parse_delays,
        )?;
        let whole = |min: u64, max: u64| {
            move |s: &str| match s.parse::<u64>() {
                Ok(n) if (min..=max).contains(&n) => Ok(n),
                _ => Err(format!("not a whole number from {min} to {max}")),
            }
        };
        let webhooks_max_retry_after_s = src.parse(
            &WEBHOOKS_MAX_RETRY_AFTER_S,
            "give seconds from 1 to 86400, e.g. BERTH_WEBHOOKS_MAX_RETRY_AFTER_S=3600",
            whole(1, 86_400),
        )?;
        let webhooks_timeout_ms = src.parse(
            &WEBHOOKS_TIMEOUT_MS,
            "give milliseconds from 100 to 120000, e.g. BERTH_WEBHOOKS_TIMEOUT_MS=10000",
            whole(100, 120_000),
        )?;
        let webhooks_concurrency = src.parse(
            &WEBHOOKS_CONCURRENCY,
            "give a whole number from 1 to 1000, e.g. BERTH_WEBHOOKS_CONCURRENCY=32",
            |s| whole(1, 1000)(s).map(|n| n as u16),
        )?;
        let webhooks_sweep_s = src.parse(
            &WEBHOOKS_SWEEP_S,
            "give seconds from 1 to 3600, e.g. BERTH_WEBHOOKS_SWEEP_S=30",
            whole(1, 3600),
        )?;
        let webhooks_rotation_grace_s = src.parse(
            &WEBHOOKS_ROTATION_GRACE_S,
            "give seconds from 0 to 2592000, e.g. BERTH_WEBHOOKS_ROTATION_GRACE_S=86400",
            whole(0, 2_592_000),
        )?;
        let webhooks_log_keep_s = src.parse(
            &WEBHOOKS_LOG_KEEP_S,
            "give seconds from 1 to 315360000 (ten years), e.g. BERTH_WEBHOOKS_LOG_KEEP_S=2592000",
            whole(1, 315_360_000),
        )?;
        let secret_key = secret_key(&src)?;

        Ok(Self {
            webhooks_allow_private,
            webhooks_retry_ms,
            webhooks_max_retry_after_s,
            webhooks_timeout_ms,
            webhooks_concurrency,
            webhooks_sweep_s,
            webhooks_rotation_grace_s,
            webhooks_log_keep_s,
            database_url,
            amqp_url,
            listen,
            data_root,
            servers,
            secret_key,
            diagnostics,
            concurrency,
            retry_delays_ms,
            nginx_bin,
            nginx_conf,
            named_checkconf_bin,
            named_conf,
            named_checkzone_bin,
            rndc_bin,
            rndc_conf,
            php_fpm_bin,
            php_fpm_conf,
            nginx_fastcgi_params,
            http_listen_address,
            reload_window_ms,
            reload_max_wait_ms,
            step_timeout_s,
            step_queue_ttl_s,
            no_worker_grace_s,
            max_queued_tasks,
            scheduler_tick_ms,
            schedule_run_history_days,
            installer_slots,
            http_concurrency,
            delete_enabled_sites,
            drill_domain,
            backups_dir,
            dump_bin,
            mysql_client_bin,
            max_body_bytes,
            log_format,
            otlp_endpoint,
            smtp_url,
            mail_from,
            worker_name,
            file: src.file.map(|(p, _)| p),
        })
    }

    /// The cluster key, or an error saying that `what` needs it and how to make one.
    pub fn secret_key(&self, what: &str) -> Result<SecretKey, ConfigError> {
        self.secret_key.clone().ok_or_else(|| ConfigError::Missing {
            var: SECRET_KEY.var,
            why: format!("for {what}"),
            fix: "generate one with `berth secret-key` and set BERTH_SECRET_KEY=<64 hex digits> \
                  (or secret_key = \"…\" in the file named by BERTH_CONFIG, or \
                  BERTH_SECRET_KEY_FILE=<path of a file holding it>); every api, scheduler, notices, http, db and backup \
                  process of a cluster needs the same key"
                .into(),
        })
    }

    #[cfg(test)]
    pub fn has_secret_key(&self) -> bool {
        self.secret_key.is_some()
    }

    /// The worker name for `service`: `BERTH_WORKER_NAME` as given when this process runs one
    /// service (`shared` false), `<service>@<BERTH_WORKER_NAME>` when it runs several;
    /// otherwise the default `<service>@<hostname>#<pid>`.
    pub fn worker_name(&self, service: &str, shared: bool) -> String {
        match &self.worker_name {
            Some(n) if shared => format!("{service}@{n}"),
            Some(n) => n.clone(),
            None => berth_broker::worker::default_worker_name(service),
        }
    }

    pub fn telemetry(&self) -> TelemetryConfig {
        TelemetryConfig {
            log_format: self.log_format,
            otlp_endpoint: self.otlp_endpoint.clone(),
        }
    }
}

/// `BERTH_SECRET_KEY`, or the file named by `BERTH_SECRET_KEY_FILE`. The environment wins
/// over the configuration file; in one source, giving both is an error.
fn secret_key(src: &Sources<'_>) -> Result<Option<SecretKey>, ConfigError> {
    let from = |key: Option<Raw>, file: Option<Raw>| -> Result<Option<SecretKey>, ConfigError> {
        match (key, file) {
            (Some(k), Some(_)) => Err(invalid(
                &SECRET_KEY,
                &k,
                "BERTH_SECRET_KEY and BERTH_SECRET_KEY_FILE are both set".into(),
                "set only one of them",
            )),
            (Some(k), None) => SecretKey::from_hex(&k.value).map(Some).map_err(|_| {
                invalid(
                    &SECRET_KEY,
                    &k,
                    "not 64 hex digits (32 bytes)".into(),
                    "generate one with `berth secret-key`",
                )
            }),
            (None, Some(f)) => {
                let path = PathBuf::from(f.value.trim());
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    invalid(
                        &SECRET_KEY_FILE,
                        &f,
                        format!("cannot read it: {e}"),
                        "name a readable file holding the key (made with `berth secret-key`)",
                    )
                })?;
                SecretKey::from_hex(&text).map(Some).map_err(|_| {
                    invalid(
                        &SECRET_KEY_FILE,
                        &f,
                        "the file does not hold 64 hex digits (32 bytes)".into(),
                        "write a key made with `berth secret-key` into it",
                    )
                })
            }
            (None, None) => Ok(None),
        }
    };
    let env = from(src.env(&SECRET_KEY), src.env(&SECRET_KEY_FILE))?;
    if env.is_some() {
        return Ok(env);
    }
    from(src.file(&SECRET_KEY), src.file(&SECRET_KEY_FILE))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn file(text: &str) -> Option<(&Path, &str)> {
        Some((Path::new("/etc/berth/berth.toml"), text))
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let s = Settings::from_sources(&env(&[]), None).unwrap();
        assert_eq!(s.database_url, "postgres://postgres@127.0.0.1:5432/berth");
        assert_eq!(s.amqp_url, "amqp://guest:guest@127.0.0.1:5672/%2f");
        assert_eq!(s.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(s.data_root, PathBuf::from("/var/lib/berth"));
        assert_eq!(s.servers, vec!["server_master"]);
        assert!(!s.has_secret_key());
        assert!(!s.diagnostics);
        assert_eq!(s.concurrency, 8);
        assert_eq!(s.retry_delays_ms, vec![1000, 5000, 30000, 300000]);
        assert_eq!(s.nginx_bin, "nginx");
        assert_eq!(s.nginx_conf, PathBuf::from("/etc/nginx/nginx.conf"));
        assert_eq!(s.named_checkconf_bin, "named-checkconf");
        assert_eq!(s.named_conf, PathBuf::from("/etc/bind/named.conf"));
        assert_eq!(s.max_body_bytes, 65536);
        assert_eq!(s.log_format, LogFormat::Text);
        assert_eq!(s.otlp_endpoint, None);
        assert_eq!(s.worker_name, None);
        assert_eq!(s.file, None);
    }

    #[test]
    fn the_environment_wins_over_the_file_and_the_file_over_defaults() {
        let text = r#"
            # as ops/run.sh writes it
            database_url = "postgres://postgres@db.example.com:5432/berth"
            listen = "0.0.0.0:9000"
            servers = "server_master"
            concurrency = 3
            diagnostics = true
            retry_delays_ms = [10, 20]
            secret_key = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
            otel_exporter_otlp_endpoint = "http://127.0.0.1:4318"
        "#;
        let e = env(&[
            ("BERTH_LISTEN", "127.0.0.1:7000"),
            (
                "BERTH_SERVERS",
                "server_master, @server_webexamplecom,server_master",
            ),
            ("BERTH_LOG_FORMAT", "json"),
            ("BERTH_CONCURRENCY", ""),
        ]);
        let s = Settings::from_sources(&e, file(text)).unwrap();
        assert_eq!(s.listen, "127.0.0.1:7000".parse().unwrap(), "env wins");
        assert_eq!(
            s.database_url,
            "postgres://postgres@db.example.com:5432/berth"
        );
        assert_eq!(s.servers, vec!["server_master", "server_webexamplecom"]);
        assert_eq!(s.concurrency, 3, "an empty variable counts as unset");
        assert!(s.diagnostics);
        assert_eq!(s.retry_delays_ms, vec![10, 20]);
        assert_eq!(s.log_format, LogFormat::Json);
        assert_eq!(s.otlp_endpoint.as_deref(), Some("http://127.0.0.1:4318"));
        assert!(s.secret_key("test").is_ok());
        assert_eq!(s.file, Some(PathBuf::from("/etc/berth/berth.toml")));
    }

    #[test]
    fn a_bad_value_names_the_variable_its_origin_and_the_fix() {
        let err = Settings::from_sources(&env(&[("BERTH_CONCURRENCY", "lots")]), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("BERTH_CONCURRENCY=\"lots\""), "{err}");
        assert!(err.contains("from the environment"), "{err}");
        assert!(err.contains("BERTH_CONCURRENCY=8"), "{err}");

        let err = Settings::from_sources(&env(&[]), file("listen = \"localhost\""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("BERTH_LISTEN"), "{err}");
        assert!(err.contains("/etc/berth/berth.toml"), "{err}");

        for (var, value) in [
            ("BERTH_DIAGNOSTICS", "maybe"),
            ("BERTH_RETRY_DELAYS_MS", "1000,0"),
            ("BERTH_RETRY_DELAYS_MS", "1s"),
            ("BERTH_SERVERS", "Server Master"),
            ("BERTH_MAX_BODY_BYTES", "-1"),
            ("BERTH_LOG_FORMAT", "xml"),
            ("BERTH_DATA_ROOT", "relative/dir"),
            ("BERTH_AMQP_URL", "http://x"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "localhost:4318"),
        ] {
            let err = Settings::from_sources(&env(&[(var, value)]), None)
                .expect_err(var)
                .to_string();
            assert!(err.contains(var), "{var}: {err}");
        }
    }

    #[test]
    fn secrets_and_urls_are_not_repeated_in_errors() {
        let err = Settings::from_sources(&env(&[("BERTH_SECRET_KEY", "hunter2hunter2")]), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("BERTH_SECRET_KEY"), "{err}");
        assert!(err.contains("berth secret-key"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");

        let err = Settings::from_sources(
            &env(&[("BERTH_DATABASE_URL", "mysql://root:pw@db/berth")]),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("BERTH_DATABASE_URL"), "{err}");
        assert!(!err.contains(":pw@"), "{err}");
    }

    #[test]
    fn the_secret_key_is_required_only_when_asked_for() {
        let s = Settings::from_sources(&env(&[]), None).unwrap();
        let err = s.secret_key("`berth serve api`").unwrap_err().to_string();
        assert!(
            err.contains("BERTH_SECRET_KEY is required for `berth serve api`"),
            "{err}"
        );
        assert!(err.contains("berth secret-key"), "{err}");

        let s = Settings::from_sources(&env(&[("BERTH_SECRET_KEY", KEY_A)]), None).unwrap();
        assert!(s.secret_key("x").is_ok());
        assert!(
            !format!("{s:?}").contains(KEY_A),
            "Debug must not print the key"
        );
    }

    #[test]
    fn the_secret_key_can_come_from_a_file() {
        let dir = std::env::temp_dir().join(format!("berth-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("key");
        std::fs::write(&path, format!("{KEY_A}\n")).unwrap();
        let p = path.to_str().unwrap();

        let s = Settings::from_sources(&env(&[("BERTH_SECRET_KEY_FILE", p)]), None).unwrap();
        assert!(s.has_secret_key());

        // Both in the same source is ambiguous.
        let err = Settings::from_sources(
            &env(&[("BERTH_SECRET_KEY_FILE", p), ("BERTH_SECRET_KEY", KEY_A)]),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("set only one"), "{err}");

        // The environment's file wins over the configuration file's key.
        let s = Settings::from_sources(
            &env(&[("BERTH_SECRET_KEY_FILE", p)]),
            file("secret_key = \"not a key\""),
        )
        .unwrap();
        assert!(s.has_secret_key());

        let missing = dir.join("missing");
        let err = Settings::from_sources(
            &env(&[("BERTH_SECRET_KEY_FILE", missing.to_str().unwrap())]),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("BERTH_SECRET_KEY_FILE"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_file_must_be_toml_with_known_keys() {
        let err = Settings::from_sources(&env(&[]), file("databse_url = \"x\""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown key `databse_url`"), "{err}");
        assert!(err.contains("database_url"), "{err}");

        let err = Settings::from_sources(&env(&[]), file("database_url = "))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not valid TOML"), "{err}");

        let err = Settings::from_sources(&env(&[]), file("[api]\nlisten = \"x\""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown key `api`"), "{err}");
    }

    #[test]
    fn worker_names() {
        let s = Settings::from_sources(&env(&[]), None).unwrap();
        let n = s.worker_name("http", false);
        assert!(n.starts_with("http@"), "{n}");
        assert!(n.ends_with(&format!("#{}", std::process::id())), "{n}");

        let s = Settings::from_sources(&env(&[("BERTH_WORKER_NAME", "web1")]), None).unwrap();
        assert_eq!(s.worker_name("http", false), "web1");
        assert_eq!(s.worker_name("db", true), "db@web1");
    }
}
