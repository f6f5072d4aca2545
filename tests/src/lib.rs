//! Test harness: each test gets its own world — its own PostgreSQL database, its own
//! RabbitMQ vhost, its own nginx and bind configuration under a temporary directory — and
//! runs the real services against the real servers, in-process or as `berth` processes.

pub mod case;
pub mod fixtures;
pub mod proxy;

use anyhow::{Context, Result, bail};
use berth_broker::worker::WorkerConfig;
use berth_contracts::{Task, TaskStatus};
use berth_secrets::SecretKey;
use berth_store::Store;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use fixtures::{PLATFORM, node_schema, output_text};

/// Whether MariaDB has this database.
pub async fn mysql_db_exists(db: &str) -> bool {
    let mut my = <sqlx::MySqlConnection as sqlx::Connection>::connect(&mysql_url())
        .await
        .expect("MariaDB reachable");
    let (n,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM information_schema.schemata WHERE schema_name = ?")
            .bind(db)
            .fetch_one(&mut my)
            .await
            .expect("schemata readable");
    n > 0
}

/// Adds `node_update_<n>` with `body` (PHP) to a fixture platform's D8+ node.install: the
/// fixture drush's `updatedb` runs it (a throwing, slow, fatal or data-changing update).
pub fn add_node_update(root: &Path, n: u32, body: &str) {
    let install = root.join("core/modules/node/node.install");
    let mut text = std::fs::read_to_string(&install).expect("node.install");
    text.push_str(&format!("\nfunction node_update_{n}() {{\n{body}}}\n"));
    std::fs::write(install, text).expect("node.install written");
}

/// The tests' MariaDB account, as `ops/test.sh` makes it (through the unix socket, as OS
/// root): every privilege, a fixed test password. `BERTH_TEST_MYSQL_URL` names another.
pub const DEFAULT_MYSQL_URL: &str = "mysql://berth_test:berth-test-password@127.0.0.1:3306";

pub fn mysql_url() -> String {
    env_or("BERTH_TEST_MYSQL_URL", DEFAULT_MYSQL_URL)
}

/// The MariaDB server and admin account of [`mysql_url`]: what the servers the tests
/// register get as their db service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MysqlAdmin {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
}

impl MysqlAdmin {
    /// A server's `db` service on this MariaDB with this admin account.
    pub fn db_service(&self) -> Value {
        json!({"type": "mariadb", "host": self.host, "port": self.port,
               "admin_user": self.user, "admin_password": self.password})
    }
}

/// [`mysql_url`] taken apart (user and password percent-decoded).
pub fn mysql_admin() -> MysqlAdmin {
    parse_mysql_url(&mysql_url()).unwrap_or_else(|| {
        panic!("BERTH_TEST_MYSQL_URL is not a mysql://user:password@host:port URL")
    })
}

fn parse_mysql_url(url: &str) -> Option<MysqlAdmin> {
    let u = reqwest::Url::parse(url).ok()?;
    if u.scheme() != "mysql" || u.username().is_empty() {
        return None;
    }
    let decode = |s: &str| -> Option<String> {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        String::from_utf8(out).ok()
    };
    Some(MysqlAdmin {
        host: u
            .host_str()?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        port: u.port().unwrap_or(3306),
        user: decode(u.username())?,
        password: decode(u.password().unwrap_or(""))?,
    })
}

pub fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

pub fn pg_admin_url() -> String {
    env_or(
        "BERTH_TEST_DATABASE_URL",
        "postgres://postgres@127.0.0.1:5432/postgres",
    )
}

pub fn amqp_base() -> String {
    env_or("BERTH_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672")
}

pub fn rabbit_management() -> String {
    env_or(
        "BERTH_TEST_RABBITMQ_MANAGEMENT",
        "http://guest:guest@127.0.0.1:15672",
    )
}

/// Options of a world; the defaults suit most tests.
#[derive(Clone)]
pub struct WorldOptions {
    pub retry_delays_ms: Vec<u64>,
    /// Servers the in-process workers serve.
    pub servers: Vec<String>,
    /// Start the in-process workers (http, db, dns, backup).
    pub workers: bool,
    /// Where the API and the state service reach the broker, when not directly (through a
    /// proxy that a test cuts); `{vhost}` is replaced by the world's vhost.
    pub system_amqp_url: Option<String>,
    pub concurrency: u16,
    /// Run a real nginx and php-fpm for the world (sites are served for real).
    pub web: bool,
    /// Run a real named with rndc for the world (site records are served for real).
    pub dns: bool,
    /// The http worker's reload window.
    pub reload_window_ms: u64,
    /// The http worker's concurrency, when not `concurrency` (steps waiting for a reload
    /// hold a slot but no CPU; drush runs are limited by the installer slots).
    pub http_concurrency: Option<u16>,
    /// Delete may run on an enabled site.
    pub delete_enabled_sites: bool,
    /// Run the state service in-process (a test or bench may start it later itself).
    pub state: bool,
    /// The API's BERTH_MAX_QUEUED_TASKS (0: no limit).
    pub max_queued_tasks: u64,
    /// How long steps may wait for a worker (BERTH_STEP_QUEUE_TTL_S, BERTH_NO_WORKER_GRACE_S),
    /// for every service of the world.
    pub limits: berth_broker::topology::Limits,
    /// The API's BERTH_WEBHOOKS_ALLOW_PRIVATE (tests' receivers listen on loopback).
    pub webhooks_allow_private: bool,
}

impl Default for WorldOptions {
    fn default() -> Self {
        Self {
            retry_delays_ms: vec![200, 400],
            servers: vec!["server_master".into()],
            workers: true,
            system_amqp_url: None,
            concurrency: 8,
            web: false,
            dns: false,
            reload_window_ms: 200,
            http_concurrency: None,
            delete_enabled_sites: false,
            state: true,
            max_queued_tasks: 0,
            limits: berth_broker::topology::Limits::default(),
            webhooks_allow_private: true,
        }
    }
}

pub struct World {
    pub id: String,
    pub database_url: String,
    pub amqp_url: String,
    pub vhost: String,
    pub api: String,
    pub token: String,
    pub store: Store,
    pub secret_hex: String,
    pub dir: PathBuf,
    pub nginx_conf: PathBuf,
    pub named_conf: PathBuf,
    /// rndc's configuration for the world's named, when it runs one.
    pub rndc_conf: Option<PathBuf>,
    /// The world's nginx and php-fpm, with `opts.web`.
    pub web: Option<berth_test_servers::web::Web>,
    /// The world's named, with `opts.dns`.
    pub named: Option<berth_test_servers::named::Named>,
    pub opts: WorldOptions,
    pub http: reqwest::Client,
    shutdown: CancellationToken,
    services: Vec<JoinHandle<()>>,
    workers_shutdown: CancellationToken,
    /// Pids of the `berth` processes [`Self::spawn_berth`] started: killed when the world
    /// goes, whoever holds their `Child`.
    spawned: std::sync::Mutex<Vec<u32>>,
    /// Everything is removed already (by [`Self::shutdown`]).
    gone: bool,
}

impl World {
    pub async fn start() -> Result<Self> {
        Self::start_with(WorldOptions::default()).await
    }

    pub async fn start_with(opts: WorldOptions) -> Result<Self> {
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
        Self::start_as(id.clone(), opts)
            .await
            .with_context(|| format!("starting world {id}"))
    }

    async fn start_as(id: String, opts: WorldOptions) -> Result<Self> {
        let db_name = format!("berth_test_{id}");
        let admin = pg_admin_url();
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
            .await
            .context("connect to PostgreSQL (is it running? ops/setup.sh starts it)")?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db_name}")))
            .execute(&mut conn)
            .await?;
        let database_url = replace_db(&admin, &db_name);
        // Until the world is built, a failed set-up removes what it made so far.
        let mut set_up = SetUpGuard(Some(Leftovers {
            database: db_name.clone(),
            database_url: database_url.clone(),
            vhost: format!("berth_test_{id}"),
            dir: std::env::temp_dir().join(format!("berth-test-{id}")),
        }));

        let vhost = format!("berth_test_{id}");
        let http = reqwest::Client::new();
        let mgmt = rabbit_management();
        http.put(format!("{mgmt}/api/vhosts/{vhost}"))
            .send()
            .await
            .context("RabbitMQ management API (rabbitmq-plugins enable rabbitmq_management)")?
            .error_for_status()?;
        http.put(format!("{mgmt}/api/permissions/{vhost}/guest"))
            .json(&json!({"configure": ".*", "write": ".*", "read": ".*"}))
            .send()
            .await?
            .error_for_status()?;
        let amqp_url = format!("{}/{vhost}", amqp_base());
        let system_amqp_url = opts
            .system_amqp_url
            .as_ref()
            .map(|u| u.replace("{vhost}", &vhost))
            .unwrap_or_else(|| amqp_url.clone());

        let dir = std::env::temp_dir().join(format!("berth-test-{id}"));
        std::fs::create_dir_all(&dir)?;
        let (nginx_conf, mut named_conf) = write_server_configs(&dir, &opts.servers)?;
        let web = if opts.web {
            Some(berth_test_servers::web::Web::start(&dir, &nginx_conf)?)
        } else {
            None
        };
        let named = if opts.dns {
            let n = berth_test_servers::named::Named::start(&dir, &opts.servers)?;
            named_conf = n.named_conf.clone();
            Some(n)
        } else {
            None
        };
        let rndc_conf = named.as_ref().map(|n| n.rndc_conf.clone());

        let store = Store::connect(&database_url, 8).await?;
        let token = store.create_token("test-admin", "admin").await?;
        let secret_hex = SecretKey::generate_hex();

        let shutdown = CancellationToken::new();
        let workers_shutdown = shutdown.child_token();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let api_addr: SocketAddr = listener.local_addr()?;
        let key = SecretKey::from_hex(&secret_hex)?;
        let mut services = Vec::new();
        let api_cfg = berth_api::ApiConfig {
            listen: api_addr,
            database_url: database_url.clone(),
            amqp_url: system_amqp_url.clone(),
            secret_key: key.clone(),
            diagnostics: true,
            max_body_bytes: 65536,
            delete_enabled_sites: opts.delete_enabled_sites,
            max_queued_tasks: opts.max_queued_tasks,
            data_root: dir.clone(),
            limits: opts.limits,
            drill_domain: berth_hosting::drills::DEFAULT_DRILL_DOMAIN.into(),
            webhooks_allow_private: opts.webhooks_allow_private,
            webhooks_rotation_grace: std::time::Duration::from_secs(86_400),
        };
        let s = shutdown.clone();
        services.push(tokio::spawn(async move {
            if let Err(e) = berth_api::serve(listener, api_cfg, s).await {
                eprintln!("api stopped: {e}");
            }
        }));
        let state_cfg = berth_state::StateConfig {
            database_url: database_url.clone(),
            amqp_url: system_amqp_url,
            concurrency: opts.concurrency,
            limits: opts.limits,
            drill_domain: berth_hosting::drills::DEFAULT_DRILL_DOMAIN.into(),
        };
        if opts.state {
            let s = shutdown.clone();
            services.push(tokio::spawn(async move {
                if let Err(e) = berth_state::run(state_cfg, s).await {
                    eprintln!("state stopped: {e}");
                }
            }));
        }
        let mut world = Self {
            id,
            database_url,
            amqp_url,
            vhost,
            api: format!("http://{api_addr}"),
            token,
            store,
            secret_hex,
            dir,
            nginx_conf,
            named_conf,
            rndc_conf,
            web,
            named,
            opts: opts.clone(),
            http,
            shutdown,
            services,
            workers_shutdown,
            spawned: Default::default(),
            gone: false,
        };
        set_up.0 = None;
        if opts.workers {
            world.start_workers(&opts.servers);
        }
        world.wait_ready().await?;
        Ok(world)
    }

    pub fn worker_config(&self, service: &str, servers: &[String]) -> WorkerConfig {
        WorkerConfig {
            amqp_url: self.amqp_url.clone(),
            service: service.into(),
            servers: servers.to_vec(),
            concurrency: self.opts.concurrency,
            retry_delays_ms: self.opts.retry_delays_ms.clone(),
            worker_name: format!("{service}@test"),
            diagnostics: true,
            step_timeout: berth_broker::worker::DEFAULT_STEP_TIMEOUT,
            limits: self.opts.limits,
        }
    }

    /// Starts in-process http, db, dns and backup workers for `servers`.
    pub fn start_workers(&mut self, servers: &[String]) {
        self.start_workers_except(servers, &[]);
    }

    /// Starts the in-process workers but those named in `except` (a test runs those as
    /// `berth serve <service>` processes, to kill them).
    pub fn start_workers_except(&mut self, servers: &[String], except: &[&str]) {
        let key = SecretKey::from_hex(&self.secret_hex).expect("valid key");
        let s = self.workers_shutdown.clone();
        let mut http_worker = self.worker_config("http", servers);
        if let Some(c) = self.opts.http_concurrency {
            http_worker.concurrency = c;
        }
        let http = berth_http::HttpConfig {
            worker: http_worker,
            data_root: self.dir.clone(),
            nginx_bin: "nginx".into(),
            nginx_conf: self.nginx_conf.clone(),
            secret_key: Some(key.clone()),
            php_fpm_bin: "php-fpm8.2".into(),
            php_fpm_conf: self.php_fpm_conf(),
            fastcgi_params: "/etc/nginx/fastcgi_params".into(),
            listen_address: "127.0.0.1".into(),
            reload_window: Duration::from_millis(self.opts.reload_window_ms),
            reload_max_wait: Duration::from_secs(10),
            installer_slots: 2,
        };
        if !except.contains(&"http") {
            self.services.push(tokio::spawn({
                let s = s.clone();
                async move {
                    if let Err(e) = berth_http::run(http, s).await {
                        eprintln!("http worker stopped: {e}");
                    }
                }
            }));
        }
        let db = berth_db::DbConfig {
            worker: self.worker_config("db", servers),
            secret_key: key,
        };
        if !except.contains(&"db") {
            self.services.push(tokio::spawn({
                let s = s.clone();
                async move {
                    if let Err(e) = berth_db::run(db, s).await {
                        eprintln!("db worker stopped: {e}");
                    }
                }
            }));
        }
        let dns = berth_dns::DnsConfig {
            worker: self.worker_config("dns", servers),
            data_root: self.dir.clone(),
            checkconf_bin: "named-checkconf".into(),
            named_conf: self.named_conf.clone(),
            checkzone_bin: "named-checkzone".into(),
            rndc_bin: "rndc".into(),
            rndc_conf: self.rndc_conf.clone(),
        };
        if !except.contains(&"dns") {
            self.services.push(tokio::spawn({
                let s = s.clone();
                async move {
                    if let Err(e) = berth_dns::run(dns, s).await {
                        eprintln!("dns worker stopped: {e}");
                    }
                }
            }));
        }
        let backup = berth_backup::BackupConfig {
            worker: self.worker_config("backup", servers),
            secret_key: SecretKey::from_hex(&self.secret_hex).expect("valid key"),
            backups_dir: self.dir.join("backups"),
            dump_bin: "mariadb-dump".into(),
            client_bin: "mariadb".into(),
        };
        if !except.contains(&"backup") {
            self.services.push(tokio::spawn(async move {
                if let Err(e) = berth_backup::run_with(backup, s).await {
                    eprintln!("backup worker stopped: {e}");
                }
            }));
        }
    }

    async fn wait_ready(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = self.http.get(format!("{}/readyz", self.api)).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("API at {} not ready after 30 s", self.api);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.api)
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(self.url(path)).bearer_auth(&self.token)
    }

    /// GET `path` and decode the JSON answer, whatever its status.
    pub async fn get_json(&self, path: &str) -> Value {
        self.get(path)
            .send()
            .await
            .expect("API reachable")
            .json()
            .await
            .expect("JSON answer")
    }

    pub fn post(&self, path: &str, body: &Value) -> reqwest::RequestBuilder {
        self.http
            .post(self.url(path))
            .bearer_auth(&self.token)
            .json(body)
    }

    /// Registers a server with the real local services: nginx, MariaDB (the account of
    /// `BERTH_TEST_MYSQL_URL`, see [`mysql_admin`]) and bind.
    pub async fn create_server(&self, name: &str, host: &str) -> Result<Value> {
        self.create_server_with_dns(name, host, "bind").await
    }

    /// As [`Self::create_server`], with the dns service's type (`bind` or `null`).
    pub async fn create_server_with_dns(&self, name: &str, host: &str, dns: &str) -> Result<Value> {
        let http_port = self.web.as_ref().map(|w| w.port).unwrap_or(80);
        let dns_port = self.named.as_ref().map(|n| n.port).unwrap_or(53);
        let body = json!({
            "name": name, "host": host,
            "services": {
                "http": {"type": "nginx", "port": http_port},
                "db": mysql_admin().db_service(),
                "dns": {"type": dns, "port": dns_port}
            }
        });
        let r = self.post("/api/v1/servers", &body).send().await?;
        let status = r.status();
        let v: Value = r.json().await?;
        if status.as_u16() != 201 {
            bail!("create server {name}: {status} {v}");
        }
        Ok(v)
    }

    /// Creates the platform `name` on a codebase already under the world's directory, and
    /// waits for its verify to succeed.
    pub async fn create_platform(&self, name: &str, root: &Path) -> Result<Value> {
        let r = self
            .post(
                "/api/v1/platforms",
                &json!({"name": name, "root": root.display().to_string()}),
            )
            .send()
            .await?;
        let status = r.status();
        let v: Value = r.json().await?;
        if status.as_u16() != 201 {
            bail!("create platform {name}: {status} {v}");
        }
        let task = v["task"].as_str().unwrap_or_default().parse()?;
        let t = self.wait_finished(task, Duration::from_secs(60)).await?;
        if t.status != TaskStatus::Success {
            bail!("verify of {name} ended {:?}: {t:#?}", t.status);
        }
        Ok(self.get_json(&format!("/api/v1/platforms/{name}")).await)
    }

    /// Copies a fixture platform (`tests/fixtures/platforms/<fixture>`) into the world and
    /// creates the platform `name` on it; waits for its verify and returns the platform.
    pub async fn add_platform(&self, name: &str, fixture: &str) -> Result<Value> {
        let root = self.copy_fixture(fixture, name)?;
        self.create_platform(name, &root).await
    }

    /// A fresh copy of a fixture platform under the world's directory.
    pub fn copy_fixture(&self, fixture: &str, as_name: &str) -> Result<PathBuf> {
        let from = fixtures_dir().join("platforms").join(fixture);
        let to = self.dir.join("platforms").join(as_name);
        copy_tree(&from, &to)?;
        Ok(to)
    }

    /// Creates a site (which queues its install) and waits for the install to end.
    pub async fn install_site(&self, body: Value) -> Result<(Value, Task)> {
        let r = self.post("/api/v1/sites", &body).send().await?;
        let status = r.status();
        let v: Value = r.json().await?;
        if status.as_u16() != 201 {
            bail!("create site: {status} {v}");
        }
        let task = v["task"].as_str().unwrap_or_default().parse()?;
        let t = self.wait_finished(task, Duration::from_secs(120)).await?;
        Ok((v, t))
    }

    /// A request to the world's nginx for `host`.
    pub fn http_get(&self, host: &str, path: &str) -> Result<berth_test_servers::web::Response> {
        self.web
            .as_ref()
            .context("this world runs no web server (WorldOptions::web)")?
            .get(host, path)
    }

    /// A server whose services are all `null`: a target for diagnostic tasks.
    pub async fn create_bare_server(&self, name: &str, host: &str) -> Result<Value> {
        let r = self
            .post("/api/v1/servers", &json!({"name": name, "host": host}))
            .send()
            .await?;
        let status = r.status();
        let v: Value = r.json().await?;
        if status.as_u16() != 201 {
            bail!("create server {name}: {status} {v}");
        }
        Ok(v)
    }

    pub async fn create_task(&self, task_type: &str, target: &str, args: Value) -> Result<Task> {
        let r = self
            .post(
                "/api/v1/tasks",
                &json!({"type": task_type, "target": target, "args": args}),
            )
            .send()
            .await?;
        let status = r.status();
        let text = r.text().await?;
        if status.as_u16() != 202 {
            bail!("create task: {status} {text}");
        }
        Ok(serde_json::from_str(&text)?)
    }

    pub async fn task(&self, id: uuid::Uuid) -> Result<Task> {
        Ok(self
            .get(&format!("/api/v1/tasks/{id}"))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }

    /// Waits until the task has finished, and returns it with its steps and log.
    pub async fn wait_finished(&self, id: uuid::Uuid, within: Duration) -> Result<Task> {
        let deadline = Instant::now() + within;
        loop {
            let t = self.task(id).await?;
            if t.status.is_finished() {
                return Ok(t);
            }
            if Instant::now() > deadline {
                bail!(
                    "task {id} still {:?} after {within:?}: {}",
                    t.status,
                    serde_json::to_string_pretty(&t)?
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `pred` holds for the task.
    pub async fn wait_task(
        &self,
        id: uuid::Uuid,
        within: Duration,
        what: &str,
        pred: impl Fn(&Task) -> bool,
    ) -> Result<Task> {
        let deadline = Instant::now() + within;
        loop {
            let t = self.task(id).await?;
            if pred(&t) {
                return Ok(t);
            }
            if Instant::now() > deadline {
                bail!(
                    "task {id}: {what} not seen after {within:?}: {}",
                    serde_json::to_string_pretty(&t)?
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the in-process workers only (the API and state service go on).
    pub fn stop_workers(&self) {
        self.workers_shutdown.cancel();
    }

    /// Environment for a `berth` process that joins this world.
    pub fn process_env(&self) -> Vec<(String, String)> {
        vec![
            ("BERTH_DATABASE_URL".into(), self.database_url.clone()),
            ("BERTH_AMQP_URL".into(), self.amqp_url.clone()),
            ("BERTH_DATA_ROOT".into(), self.dir.display().to_string()),
            ("BERTH_SECRET_KEY".into(), self.secret_hex.clone()),
            ("BERTH_DIAGNOSTICS".into(), "true".into()),
            ("BERTH_SERVERS".into(), self.opts.servers.join(",")),
            (
                "BERTH_RETRY_DELAYS_MS".into(),
                self.opts
                    .retry_delays_ms
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            (
                "BERTH_NGINX_CONF".into(),
                self.nginx_conf.display().to_string(),
            ),
            (
                "BERTH_NAMED_CONF".into(),
                self.named_conf.display().to_string(),
            ),
            ("BERTH_HTTP_LISTEN_ADDRESS".into(), "127.0.0.1".into()),
            (
                "BERTH_PHP_FPM_CONF".into(),
                self.php_fpm_conf().display().to_string(),
            ),
            (
                "BERTH_RNDC_CONF".into(),
                self.rndc_conf
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            ),
            (
                "BERTH_RELOAD_WINDOW_MS".into(),
                self.opts.reload_window_ms.to_string(),
            ),
            (
                "BERTH_BACKUPS_DIR".into(),
                self.dir.join("backups").display().to_string(),
            ),
            ("BERTH_API_URL".into(), self.api.clone()),
            ("BERTH_TOKEN".into(), self.token.clone()),
            ("RUST_LOG".into(), "info".into()),
        ]
    }

    /// Starts `berth serve <service>` as its own process in this world, its output (JSON
    /// logs) in a file under the world's directory; `env` is added to [`Self::process_env`].
    pub fn spawn_berth(
        &self,
        service: &str,
        env: &[(&str, &str)],
    ) -> (std::process::Child, PathBuf) {
        let bin = berth_bin();
        assert!(
            bin.exists(),
            "{} is missing: build it first with `cargo build --workspace --bins` (ops/test.sh does)",
            bin.display()
        );
        let path = self
            .dir
            .join(format!("{service}-{}.log", uuid::Uuid::new_v4().simple()));
        let log = std::fs::File::create(&path).expect("log file");
        let child = std::process::Command::new(bin)
            .args(["serve", service])
            .envs(self.process_env())
            .env("BERTH_LOG_FORMAT", "json")
            .envs(env.iter().copied())
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("spawn berth");
        self.spawned.lock().unwrap().push(child.id());
        (child, path)
    }

    /// Stops everything and removes the world's database, vhost and files, and the
    /// MariaDB databases and users of its sites. (Dropping a world does the same, also when
    /// its test panics; this waits for the in-process services to stop first.)
    pub async fn stop(mut self) {
        self.tear_down().await;
    }

    /// [`Self::stop`] for a world held by something else (a `Case`).
    pub async fn tear_down(&mut self) {
        if self.gone {
            return;
        }
        self.shutdown.cancel();
        for s in self.services.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(15), s).await;
        }
        self.kill_spawned();
        self.web.take();
        self.named.take();
        self.store.pool.close().await;
        self.leftovers().remove().await;
        self.gone = true;
    }

    /// SIGKILLs the `berth` processes of [`Self::spawn_berth`] still running as children of
    /// this test (a pid is only taken for one of them while it is a child: not yet reaped).
    fn kill_spawned(&self) {
        let me = std::process::id().to_string();
        for pid in self.spawned.lock().unwrap().drain(..) {
            let ours = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    let rest = s.rsplit_once(')')?.1.to_string();
                    rest.split_whitespace().nth(1).map(str::to_string)
                })
                .is_some_and(|ppid| ppid == me);
            if ours {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }

    fn leftovers(&self) -> Leftovers {
        Leftovers {
            database: format!("berth_test_{}", self.id),
            database_url: self.database_url.clone(),
            vhost: self.vhost.clone(),
            dir: self.dir.clone(),
        }
    }
}

/// With `BERTH_TEST_KEEP=1`, a failed test keeps its world for diagnosis.
pub fn keep_failed() -> bool {
    std::env::var("BERTH_TEST_KEEP").is_ok_and(|v| v == "1")
}

/// Runs `fut` to its end on a runtime of its own, in a thread of its own: async clean-up
/// from a `Drop`, which may run on a runtime's thread or while its test unwinds.
pub fn block_on_aside<F>(fut: F) -> F::Output
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
            .block_on(fut)
    })
    .join()
    .expect("clean-up thread")
}

impl Drop for World {
    fn drop(&mut self) {
        if self.gone {
            return;
        }
        // Processes always go; with BERTH_TEST_KEEP=1 a failed test's data stays.
        self.shutdown.cancel();
        for s in &self.services {
            s.abort();
        }
        self.kill_spawned();
        self.web.take();
        self.named.take();
        let left = self.leftovers();
        if std::thread::panicking() && keep_failed() {
            eprintln!(
                "BERTH_TEST_KEEP=1: kept the failed test's world: files {}, PostgreSQL database {}, \
                 RabbitMQ vhost {}, and its sites' MariaDB databases and users; \
                 berth_tests::remove_kept_world(\"{}\") removes them",
                left.dir.display(),
                left.database,
                left.vhost,
                self.id
            );
            return;
        }
        block_on_aside(left.remove());
    }
}

/// Removes what the world `id` kept (`BERTH_TEST_KEEP=1`): the MariaDB databases and
/// users of its tasks, its PostgreSQL database, its RabbitMQ vhost and its directory.
pub async fn remove_kept_world(id: &str) {
    let database = format!("berth_test_{id}");
    Leftovers {
        database_url: replace_db(&pg_admin_url(), &database),
        database,
        vhost: format!("berth_test_{id}"),
        dir: std::env::temp_dir().join(format!("berth-test-{id}")),
    }
    .remove()
    .await
}

/// Removes a world's leftovers when dropped armed: a set-up that fails half-way.
struct SetUpGuard(Option<Leftovers>);

impl Drop for SetUpGuard {
    fn drop(&mut self) {
        if let Some(left) = self.0.take() {
            block_on_aside(left.remove());
        }
    }
}

/// What a world leaves on the shared servers and disk.
struct Leftovers {
    database: String,
    database_url: String,
    vhost: String,
    dir: PathBuf,
}

impl Leftovers {
    /// Removes the MariaDB databases and users the world's tasks made (its sites', and the
    /// next databases of restores, migrates and clones), its PostgreSQL database, its
    /// RabbitMQ vhost and its directory. Best effort: what is already gone is skipped.
    async fn remove(self) {
        let names: Vec<(Option<String>, Option<String>)> =
            match <sqlx::PgConnection as sqlx::Connection>::connect(&self.database_url).await {
                Ok(mut pg) => sqlx::query_as(
                    "SELECT db_name, db_user FROM sites UNION \
                     SELECT args->'next_db'->>'name', args->'next_db'->>'user' FROM tasks \
                     WHERE args ? 'next_db'",
                )
                .fetch_all(&mut pg)
                .await
                .unwrap_or_default(),
                Err(_) => vec![],
            };
        if !names.is_empty()
            && let Ok(mut my) =
                <sqlx::MySqlConnection as sqlx::Connection>::connect(&mysql_url()).await
        {
            for (db, user) in names {
                if let Some(user) = user {
                    let hosts: Vec<(String,)> =
                        sqlx::query_as("SELECT CAST(host AS CHAR) FROM mysql.user WHERE user = ?")
                            .bind(&user)
                            .fetch_all(&mut my)
                            .await
                            .unwrap_or_default();
                    for (host,) in hosts {
                        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                            "DROP USER IF EXISTS '{user}'@'{host}'"
                        )))
                        .execute(&mut my)
                        .await;
                    }
                }
                if let Some(db) = db {
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS `{db}`"
                    )))
                    .execute(&mut my)
                    .await;
                }
            }
        }
        if let Ok(mut conn) =
            <sqlx::PgConnection as sqlx::Connection>::connect(&pg_admin_url()).await
        {
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.database
            )))
            .execute(&mut conn)
            .await;
        }
        let _ = reqwest::Client::new()
            .delete(format!("{}/api/vhosts/{}", rabbit_management(), self.vhost))
            .send()
            .await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `tests/fixtures` of the repository.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// Copies a directory tree, keeping file modes; a symlink is copied as what it points to
/// (the fixtures share one drush through a link out of their tree); directories get 0755
/// so that the web server's user can traverse them.
pub fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(to)?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o755))?;
    for e in std::fs::read_dir(from).with_context(|| format!("read {}", from.display()))? {
        let e = e?;
        let (src, dst) = (e.path(), to.join(e.file_name()));
        let ft = std::fs::metadata(&src)?.file_type();
        if ft.is_dir() {
            copy_tree(&src, &dst)?;
        } else {
            std::fs::copy(&src, &dst)?;
        }
    }
    // The world's directory and its parents up to it must be traversable too.
    Ok(())
}

/// Path to the `berth` binary built by `cargo build --workspace --bins`.
pub fn berth_bin() -> PathBuf {
    if let Ok(p) = std::env::var("BERTH_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test binary path");
    // target/debug/deps/<test> → target/debug/berth
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    dir.join("berth")
}

fn replace_db(url: &str, db: &str) -> String {
    match url.rfind('/') {
        Some(i) if url[..i].contains("://") && url[..i].rfind('/') != Some(i - 1) => {
            format!("{}/{db}", &url[..i])
        }
        _ => format!("{url}/{db}"),
    }
}

impl World {
    /// The world's php-fpm configuration (written whether or not php-fpm runs): it
    /// includes each server's pool directory.
    pub fn php_fpm_conf(&self) -> PathBuf {
        self.dir.join("php-fpm.conf")
    }
}

/// Writes a minimal nginx.conf and named.conf under `dir` that include berth's
/// per-server directories, as `ops/run.sh` does for the system ones.
fn write_server_configs(dir: &Path, servers: &[String]) -> Result<(PathBuf, PathBuf)> {
    let d = dir.display();
    let vhost_dirs: Vec<PathBuf> = servers
        .iter()
        .map(|s| dir.join("config").join(s).join("nginx").join("vhost.d"))
        .collect();
    let nginx_conf = berth_test_servers::web::write_nginx_conf(dir, &vhost_dirs)?;
    let pool_dirs: Vec<PathBuf> = servers
        .iter()
        .map(|s| berth_http::pool::pool_dir(dir, s))
        .collect();
    berth_test_servers::web::write_php_fpm_conf(dir, &pool_dirs)?;
    let named = format!(
        "options {{\n    directory \"{d}\";\n    pid-file \"{d}/named.pid\";\n    listen-on port 53530 {{ 127.0.0.1; }};\n    listen-on-v6 {{ none; }};\n    recursion no;\n}};\n"
    );
    let named_conf = dir.join("named.conf");
    std::fs::write(&named_conf, named)?;
    Ok((nginx_conf, named_conf))
}

/// Counts rows of the tables a refused request must not touch.
pub async fn row_counts(store: &Store) -> Result<Vec<(String, i64)>> {
    let mut out = Vec::new();
    for t in [
        "servers",
        "server_services",
        "tasks",
        "steps",
        "outbox",
        "idempotency_keys",
        "dead_letters",
        "platforms",
        "sites",
        "site_aliases",
        "site_names",
    ] {
        let (n,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {t}")))
            .fetch_one(&store.pool)
            .await?;
        out.push((t.to_string(), n));
    }
    Ok(out)
}

pub fn is_finished(t: &Task) -> bool {
    !matches!(t.status, TaskStatus::Queued | TaskStatus::Processing)
}

/// How long the helpers wait for a task: a bound for a stuck task, not a pace.
pub const TASK_WAIT: Duration = Duration::from_secs(120);

impl World {
    /// A request with the world's admin token.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.url(path))
            .bearer_auth(&self.token)
    }

    /// Waits for the task whose id is `id` (a task id as JSON, e.g. a 201's `task` or
    /// `verify_task`) to finish.
    pub async fn finish(&self, id: &Value) -> Task {
        self.wait_finished(task_id(id), TASK_WAIT).await.unwrap()
    }

    /// POSTs `body` to `path`: the status and the JSON answer.
    pub async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self.post(path, body).send().await.expect("API reachable");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Creates the task and waits for it to finish.
    pub async fn run(&self, task_type: &str, target: &str, args: Value) -> Task {
        let t = self.create_task(task_type, target, args).await.unwrap();
        self.wait_finished(t.id, TASK_WAIT).await.unwrap()
    }

    /// [`Self::create_server_with_dns`], then its verify, which must succeed.
    pub async fn server_verified(&self, name: &str, host: &str, dns: &str) -> Value {
        let s = self.create_server_with_dns(name, host, dns).await.unwrap();
        let t = self.finish(&s["verify_task"]).await;
        assert_eq!(t.status, TaskStatus::Success, "{}", log_of(&t));
        s
    }
}

/// A task id as JSON (a 201's `task`, a server's `verify_task`).
pub fn task_id(id: &Value) -> uuid::Uuid {
    id.as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{id} is not a task id"))
}

/// The task's log, one message a line.
pub fn log_of(t: &Task) -> String {
    t.log
        .as_ref()
        .map(|l| {
            l.iter()
                .map(|l| l.message.clone())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

/// `(status, body)` is the 409 problem of a request past `quota`, naming its limit and the
/// usage.
pub fn assert_quota_exceeded(status: u16, p: &Value, quota: &str, limit: i64, usage: i64) {
    assert_eq!(status, 409, "{p}");
    assert!(
        p["type"].as_str().unwrap_or("").ends_with("quota-exceeded"),
        "{p}"
    );
    assert_eq!(
        (
            p["quota"].as_str(),
            p["limit"].as_i64(),
            p["usage"].as_i64()
        ),
        (Some(quota), Some(limit), Some(usage)),
        "{p}"
    );
    assert!(p["detail"].as_str().unwrap_or("").contains(quota), "{p}");
}

/// The task ended in error, `action` is the one step that failed, and the log says `says`.
pub fn failed_at(t: &Task, action: &str, says: &str) {
    assert_eq!(t.status, TaskStatus::Error, "{}", log_of(t));
    let failed: Vec<_> = t
        .steps
        .as_ref()
        .unwrap()
        .iter()
        .filter(|s| s.status == berth_contracts::StepStatus::Error)
        .map(|s| s.action.as_str())
        .collect();
    assert_eq!(failed, [action], "{}", log_of(t));
    assert!(log_of(t).contains(says), "`{says}` not in\n{}", log_of(t));
}

/// The processes whose parent is `pid` (from /proc).
pub fn children_of(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces, so read after the last ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<i32>().ok());
        if ppid == Some(pid)
            && let Ok(child) = e.file_name().to_string_lossy().parse()
        {
            out.push(child);
        }
    }
    out
}

/// A connection to MariaDB as the tests' account.
pub async fn mysql() -> sqlx::MySqlConnection {
    <sqlx::MySqlConnection as sqlx::Connection>::connect(&mysql_url())
        .await
        .expect("MariaDB reachable")
}

/// Runs SQL statements on MariaDB as the tests' account; panics when they fail.
pub async fn my_exec(sql: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&mut mysql().await)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Whether MariaDB has a user of this name (at any host).
pub async fn mysql_user_exists(user: &str) -> bool {
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM mysql.user WHERE user = ?")
        .bind(user)
        .fetch_one(&mut mysql().await)
        .await
        .unwrap();
    n > 0
}

/// How many MariaDB databases have a name that starts with `prefix`.
pub async fn mysql_dbs_like(prefix: &str) -> i64 {
    let (n,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM information_schema.schemata WHERE schema_name LIKE CONCAT(?, '%')",
    )
    .bind(prefix)
    .fetch_one(&mut mysql().await)
    .await
    .unwrap();
    n
}

/// Renames a Drupal 8+ fixture site in its own database (config `system.site`), as its
/// admin would: the name its front page shows.
pub async fn set_d10_site_name(db: &str, name: &str) {
    let mut my = <sqlx::MySqlConnection as sqlx::Connection>::connect(&mysql_url())
        .await
        .unwrap();
    let data = format!(
        "a:3:{{s:4:\"name\";s:{}:\"{name}\";s:4:\"mail\";s:17:\"admin@example.com\";s:16:\"default_langcode\";s:2:\"en\";}}",
        name.len()
    );
    let n = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE `{db}`.config SET data = ? WHERE name = 'system.site'"
    )))
    .bind(data)
    .execute(&mut my)
    .await
    .unwrap()
    .rows_affected();
    assert_eq!(n, 1, "no system.site in {db}");
}

#[cfg(test)]
mod mysql_url_tests {
    use super::*;

    #[test]
    fn the_admin_account_comes_from_the_url() {
        assert_eq!(
            parse_mysql_url(DEFAULT_MYSQL_URL).unwrap(),
            MysqlAdmin {
                host: "127.0.0.1".into(),
                port: 3306,
                user: "berth_test".into(),
                password: "berth-test-password".into()
            }
        );
        let a = parse_mysql_url("mysql://adm:p%40ss%3Aw@db.example.test:3307/x").unwrap();
        assert_eq!((a.user.as_str(), a.password.as_str()), ("adm", "p@ss:w"));
        assert_eq!((a.host.as_str(), a.port), ("db.example.test", 3307));
        assert_eq!(
            parse_mysql_url("mysql://root@127.0.0.1").unwrap().password,
            ""
        );
        assert!(parse_mysql_url("postgres://u:p@h/d").is_none());
    }
}
