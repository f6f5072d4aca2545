//! A case of the failure tests (`every_step.rs`, `failures.rs`, `drupal7.rs`): a world whose
//! http, dns and backup workers run as `berth serve` processes (so that a case can restart
//! one with a broken configuration, or kill it), a server, a fixture platform or two and
//! the site `s<id>.example.test`, with what a user checks afterwards. Dropped, it kills
//! its processes and drops the MariaDB account it made; its world removes the rest.

use crate::{
    World, WorldOptions, block_on_aside, children_of, keep_failed, log_of, my_exec,
    mysql_db_exists, mysql_user_exists,
};
use berth_contracts::{Task, TaskStatus};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Child;

/// How a case's world is made.
#[derive(Default, Clone, Copy)]
pub struct Setup {
    /// A real named, and the server's dns service `bind` (`null` without).
    pub dns: bool,
    /// The server's db admin is a MariaDB user of its own (all privileges), whose rights a
    /// case can take away.
    pub own_admin: bool,
    /// Install the site first.
    pub install: bool,
    /// A second platform (`platform_b`) for migrates.
    pub second_platform: bool,
    /// The fixture codebase of the platforms (`drupal10` when empty).
    pub fixture: &'static str,
}

impl Setup {
    /// The most cases' set-up: the site installed (and served), no named, the tests' own
    /// MariaDB account, one drupal10 platform. Other set-ups start from it:
    /// `Setup { dns: true, ..Setup::INSTALLED }`.
    pub const INSTALLED: Setup = Setup {
        dns: false,
        own_admin: false,
        install: true,
        second_platform: false,
        fixture: "",
    };
}

/// Services run as `berth serve` processes in every case.
pub const SPAWNED: [&str; 3] = ["http", "dns", "backup"];

pub struct Case {
    pub w: World,
    pub uri: String,
    /// platform_a's root.
    pub root: PathBuf,
    /// platform_b's root, with `Setup::second_platform`.
    pub root_b: Option<PathBuf>,
    /// Workers run as processes (the rest in-process): service → process.
    procs: Vec<(&'static str, Child)>,
    admin: Option<String>,
}

impl Case {
    pub async fn start(setup: Setup) -> Case {
        let fixture = if setup.fixture.is_empty() {
            "drupal10"
        } else {
            setup.fixture
        };
        let mut w = World::start_with(WorldOptions {
            web: true,
            dns: setup.dns,
            workers: false,
            delete_enabled_sites: true,
            ..Default::default()
        })
        .await
        .unwrap();
        let servers = w.opts.servers.clone();
        w.start_workers_except(&servers, &SPAWNED);
        let procs = SPAWNED
            .iter()
            .map(|s| (*s, w.spawn_berth(s, &[]).0))
            .collect();
        let uri = format!("s{}.example.test", w.id);
        // Held by the case from here on, so that a failed set-up is cleaned up too.
        let mut c = Case {
            w,
            uri,
            root: PathBuf::new(),
            root_b: None,
            procs,
            admin: None,
        };
        let dns = if setup.dns { "bind" } else { "null" };
        if setup.own_admin {
            let name = format!("berth_adm_{}", c.w.id);
            let pass = format!("pw{}", c.w.id);
            my_exec(&format!("CREATE USER '{name}'@'%' IDENTIFIED BY '{pass}'")).await;
            c.admin = Some(name.clone());
            my_exec(&format!(
                "GRANT ALL PRIVILEGES ON *.* TO '{name}'@'%' WITH GRANT OPTION"
            ))
            .await;
            let body = json!({
                "name": "server_master", "host": "localhost",
                "services": {
                    "http": {"type": "nginx", "port": c.w.web.as_ref().unwrap().port},
                    "db": {"type": "mariadb", "host": "127.0.0.1", "port": 3306,
                           "admin_user": name, "admin_password": pass},
                    "dns": {"type": dns, "port": c.w.named.as_ref().map(|n| n.port).unwrap_or(53)}
                }
            });
            let r = c.w.post("/api/v1/servers", &body).send().await.unwrap();
            assert_eq!(r.status().as_u16(), 201);
            let s: Value = r.json().await.unwrap();
            let t = c.w.finish(&s["verify_task"]).await;
            assert_eq!(t.status, TaskStatus::Success, "{}", log_of(&t));
        } else {
            c.w.server_verified("server_master", "localhost", dns).await;
        }
        c.root = c.w.copy_fixture(fixture, "platform_a").unwrap();
        c.w.create_platform("platform_a", &c.root).await.unwrap();
        if setup.second_platform {
            let b = c.w.copy_fixture(fixture, "platform_b").unwrap();
            c.w.create_platform("platform_b", &b).await.unwrap();
            c.root_b = Some(b);
        }
        if setup.install {
            let (_, t) =
                c.w.install_site(json!({"uri": c.uri, "platform": "platform_a"}))
                    .await
                    .unwrap();
            assert_eq!(t.status, TaskStatus::Success, "{}", log_of(&t));
            c.serves_its_page(&c.uri);
        }
        c
    }

    /// Starts the `service` process with `env` (it must not be running).
    pub fn spawn(&mut self, service: &'static str, env: &[(&str, &str)]) {
        assert!(self.pid(service).is_none(), "{service} is running");
        let child = self.w.spawn_berth(service, env).0;
        self.procs.push((service, child));
    }

    /// SIGKILLs the `service` process alone (as `kill -9 <pid>` would) and reaps it.
    pub fn kill(&mut self, service: &'static str) {
        if let Some(i) = self.procs.iter().position(|(s, _)| *s == service) {
            let (_, mut old) = self.procs.remove(i);
            let _ = kill(Pid::from_raw(old.id() as i32), Signal::SIGKILL);
            let _ = old.wait();
        }
    }

    /// Stops the `service` process (SIGKILL) and starts it again with `env`.
    pub fn respawn(&mut self, service: &'static str, env: &[(&str, &str)]) {
        self.kill(service);
        self.spawn(service, env);
    }

    /// The pid of the `service` process.
    pub fn pid(&self, service: &str) -> Option<i32> {
        self.procs
            .iter()
            .find(|(s, _)| *s == service)
            .map(|(_, c)| c.id() as i32)
    }

    /// SIGKILLs the `service` process and what it started (drush, the dump), as a service
    /// manager stopping its control group does. (A drush left running after its worker would
    /// race the redelivered step: an open finding, see docs/failure-table.md.)
    pub fn kill_worker(&mut self, service: &'static str) {
        let i = self.procs.iter().position(|(s, _)| *s == service).unwrap();
        let (_, mut old) = self.procs.remove(i);
        let mut tree = vec![old.id() as i32];
        let mut k = 0;
        while k < tree.len() {
            tree.extend(children_of(tree[k]));
            k += 1;
        }
        for pid in tree {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        old.wait().unwrap();
    }

    pub async fn site(&self, uri: &str) -> Value {
        self.w.get_json(&format!("/api/v1/sites/{uri}")).await
    }

    /// The site's database name.
    pub async fn db(&self) -> String {
        self.site(&self.uri).await["db_name"]
            .as_str()
            .unwrap()
            .to_string()
    }

    pub async fn run(&self, task: &str, target: &str, args: Value) -> Task {
        self.w.run(task, target, args).await
    }

    pub fn page(&self, uri: &str) -> (u16, String) {
        self.w.page(uri)
    }

    pub fn serves_its_page(&self, uri: &str) {
        let (status, body) = self.page(uri);
        assert_eq!(status, 200, "{body}");
        assert!(body.contains(&format!("<h1>{uri}</h1>")), "{body}");
    }

    /// The site serves a page with `name` as its title (see [`Self::rename`]).
    pub fn serves_named(&self, uri: &str, name: &str) {
        let (status, body) = self.page(uri);
        assert_eq!(status, 200, "{body}");
        assert!(body.contains(&format!("<h1>{name}</h1>")), "{body}");
    }

    pub fn vhost_dir(&self) -> PathBuf {
        self.w.dir.join("config/server_master/nginx/vhost.d")
    }

    pub fn vhost(&self, uri: &str) -> PathBuf {
        self.vhost_dir().join(format!("{uri}.conf"))
    }

    /// The zone files' text (empty without named).
    pub fn zones(&self) -> String {
        let dir = self.w.dir.join("config/server_master/bind/zones");
        let mut out = String::new();
        if let Ok(entries) = std::fs::read_dir(dir) {
            // Zone files only: not the last file of a removed zone, kept beside them.
            for e in entries
                .flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "zone"))
            {
                out.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
            }
        }
        out
    }

    /// Makes the site's zone the operator's (out of the dns worker's `zones.made`): it is
    /// kept, even left empty, so removing the site's records edits it and runs
    /// `named-checkzone` instead of removing the zone.
    pub fn zone_made_by_operator(&self) {
        let made = self.w.dir.join("config/server_master/bind/zones.made");
        std::fs::write(made, "").unwrap();
    }

    /// Records for `uri`: in a zone file, or served by named.
    pub fn has_records(&self, uri: &str) -> bool {
        let label = uri.split('.').next().unwrap();
        let served = self
            .w
            .named
            .as_ref()
            .map(|n| !n.dig(uri, "A").unwrap().is_empty())
            .unwrap_or(false);
        served || self.zones().contains(label)
    }

    /// A foreign file in the vhost directory that nginx refuses: every `nginx -t` fails
    /// while it is there (nginx itself keeps serving what it loaded).
    pub fn break_nginx(&self) -> PathBuf {
        let p = self.vhost_dir().join("zz-broken.conf");
        std::fs::write(&p, "server { this is not nginx; }\n").unwrap();
        p
    }

    /// Restarts the http worker with a fastcgi_params path that does not exist: every vhost
    /// that passes PHP on then fails `nginx -t` (a maintenance page does not).
    pub fn break_vhosts(&mut self) {
        self.respawn(
            "http",
            &[(
                "BERTH_NGINX_FASTCGI_PARAMS",
                "/nonexistent/fastcgi_params.invalid",
            )],
        );
    }

    /// Nothing of a task is left beside the site: no unpacked or moved-aside directories,
    /// no kept vhosts.
    pub fn nothing_half_done(&self) {
        for root in std::iter::once(&self.root).chain(self.root_b.as_ref()) {
            for e in std::fs::read_dir(root.join("sites")).unwrap().flatten() {
                let n = e.file_name().to_string_lossy().to_string();
                assert!(!n.contains(".berth-"), "{n} left in {}", root.display());
            }
        }
        for e in std::fs::read_dir(self.vhost_dir()).unwrap().flatten() {
            let n = e.file_name().to_string_lossy().to_string();
            assert!(!n.contains(".stash-"), "{n} left behind");
        }
    }

    /// After a failed task on an installed site: it serves its page as before, is out of
    /// maintenance, nothing is left beside it, and a verify succeeds.
    pub async fn as_before(&self, status: &str) {
        self.serves_its_page(&self.uri);
        self.nothing_half_done();
        assert_eq!(self.site(&self.uri).await["status"], status);
        let t = self.run("verify", &self.uri, json!({})).await;
        assert_eq!(t.status, TaskStatus::Success, "{}", log_of(&t));
        self.serves_its_page(&self.uri);
    }

    /// After a failed install of `uri`: no database, no db user, no site directory, no
    /// vhost, no records, and the site marked failed.
    pub async fn nothing_left_of(&self, uri: &str) {
        let site = self.site(uri).await;
        assert_eq!(site["status"], "failed", "{site}");
        let db = site["db_name"].as_str().unwrap();
        assert!(!mysql_db_exists(db).await, "database {db} left behind");
        assert!(!mysql_user_exists(db).await, "db user {db} left behind");
        assert!(!self.root.join("sites").join(uri).exists(), "site dir left");
        assert!(!self.vhost(uri).exists(), "vhost left");
        assert!(!self.has_records(uri), "records left:\n{}", self.zones());
        assert_eq!(self.page(uri).0, 404);
        self.nothing_half_done();
    }

    pub async fn backups(&self) -> Vec<Value> {
        self.w
            .get_json(&format!("/api/v1/sites/{}/backups", self.uri))
            .await
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Backs the site up; returns the new backup's id.
    pub async fn backup(&self) -> String {
        let t = self.run("backup", &self.uri, json!({})).await;
        assert_eq!(t.status, TaskStatus::Success, "{}", log_of(&t));
        self.backups().await[0]["id"].as_str().unwrap().to_string()
    }

    /// The files in the backups directory (tarballs and anything half-made).
    pub fn backup_files(&self) -> Vec<String> {
        std::fs::read_dir(self.w.dir.join("backups"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Sets the site's name in its (Drupal 8+) database: the fixture's page shows it.
    pub async fn rename(&self, name: &str) {
        let db = self.db().await;
        let data = format!(
            "a:3:{{s:4:\"name\";s:{}:\"{name}\";s:4:\"mail\";s:17:\"admin@example.com\";s:16:\"default_langcode\";s:2:\"en\";}}",
            name.len()
        );
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE `{db}`.config SET data = ? WHERE name = 'system.site'"
        )))
        .bind(data)
        .execute(&mut crate::mysql().await)
        .await
        .unwrap();
    }

    /// Edits the platform's drush: `code` runs before the command `call` (e.g.
    /// `cmd_pm_list(`).
    pub fn drush_inject(root: &Path, call: &str, code: &str) {
        let drush = root.join("vendor/bin/drush");
        let text = std::fs::read_to_string(&drush).unwrap();
        let at = format!("      {call}");
        assert!(text.contains(&at), "{call} not in drush");
        std::fs::write(
            &drush,
            text.replacen(&at, &format!("      {code}\n{at}"), 1),
        )
        .unwrap();
    }

    /// Puts the fixture drush back.
    pub fn drush_restore(root: &Path) {
        let from = crate::fixtures_dir().join("platforms/drupal10/vendor/bin/drush");
        std::fs::copy(from, root.join("vendor/bin/drush")).unwrap();
    }

    fn admin(&self) -> &str {
        self.admin.as_deref().unwrap()
    }

    /// The db admin keeps only CREATE, DROP and SELECT: it can create and drop databases,
    /// but not create or drop users, nor grant (no CREATE USER, no GRANT OPTION, no write
    /// access to the `mysql` tables).
    pub async fn limit_admin(&self) {
        let a = self.admin();
        my_exec(&format!(
            "REVOKE ALL PRIVILEGES, GRANT OPTION FROM '{a}'@'%'"
        ))
        .await;
        my_exec(&format!("GRANT CREATE, DROP, SELECT ON *.* TO '{a}'@'%'")).await;
    }

    pub async fn grant_all(&self) {
        my_exec(&format!(
            "GRANT ALL PRIVILEGES ON *.* TO '{}'@'%' WITH GRANT OPTION",
            self.admin()
        ))
        .await;
    }

    /// Stops the processes, drops the db admin and removes the world (waiting for its
    /// in-process services); dropping the case does the same without waiting.
    pub async fn stop(mut self) {
        self.stop_processes();
        if let Some(a) = self.admin.take() {
            my_exec(&format!("DROP USER IF EXISTS '{a}'@'%'")).await;
        }
        self.w.tear_down().await;
    }

    fn stop_processes(&mut self) {
        for (_, mut c) in self.procs.drain(..) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Case {
    fn drop(&mut self) {
        self.stop_processes();
        if let Some(a) = self.admin.take()
            && !(std::thread::panicking() && keep_failed())
        {
            block_on_aside(async move {
                if let Ok(mut my) =
                    <sqlx::MySqlConnection as sqlx::Connection>::connect(&crate::mysql_url()).await
                {
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                        "DROP USER IF EXISTS '{a}'@'%'"
                    )))
                    .execute(&mut my)
                    .await;
                }
            });
        }
    }
}
