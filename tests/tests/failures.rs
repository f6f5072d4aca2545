//! A failure injected into restore, migrate and clone, through the real path each time:
//! the installer's `updatedb` fails (an update that throws), the import fails (the database
//! client the backup worker is configured with fails), `nginx -t` fails (the php-fpm address
//! the http worker writes into vhosts does not resolve, which only the final vhost uses), or
//! the http worker is killed mid-step (SIGKILL during a slow update). The first three must
//! leave the site serving its old content, out of maintenance, with nothing left beside it
//! and a task that says what failed; a killed worker is replaced and the task completes.

use berth_contracts::{StepStatus, TaskStatus};
use berth_tests::{World, WorldOptions, mysql_url};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(120);

#[derive(Clone, Copy, PartialEq, Debug)]
enum Inject {
    Updatedb,
    Import,
    NginxTest,
    KillWorker,
}

struct Case {
    w: World,
    uri: String,
    a: PathBuf,
    b: PathBuf,
    http: Option<Child>,
    others: Vec<Child>,
}

impl Case {
    /// A site on platform_a (and a second platform, platform_b, for migrates), its name
    /// changed in its database to "The present" after a first backup.
    async fn start(inject: Inject) -> (Case, String) {
        let mut w = World::start_with(WorldOptions {
            web: true,
            workers: false,
            ..Default::default()
        })
        .await
        .unwrap();
        let servers = w.opts.servers.clone();
        let mut except = vec!["http"];
        if inject == Inject::Import {
            except.push("backup");
        }
        w.start_workers_except(&servers, &except);
        let mut others = Vec::new();
        if inject == Inject::Import {
            // The client that imports dumps fails: the backup still dumps with mariadb-dump.
            others.push(
                w.spawn_berth("backup", &[("BERTH_MYSQL_CLIENT_BIN", "false")])
                    .0,
            );
        }
        let http = Some(w.spawn_berth("http", &[]).0);
        let s = w
            .create_server_with_dns("server_master", "localhost", "null")
            .await
            .unwrap();
        w.wait_finished(s["verify_task"].as_str().unwrap().parse().unwrap(), WAIT)
            .await
            .unwrap();
        let a = w.copy_fixture("drupal10", "platform_a").unwrap();
        let b = w.copy_fixture("drupal10", "platform_b").unwrap();
        w.create_platform("platform_a", &a).await.unwrap();
        w.create_platform("platform_b", &b).await.unwrap();
        let uri = format!("f.{}.test", w.id);
        let (_, t) = w
            .install_site(json!({"uri": uri, "platform": "platform_a"}))
            .await
            .unwrap();
        assert_eq!(t.status, TaskStatus::Success, "{t:#?}");
        let c = Case {
            w,
            uri,
            a,
            b,
            http,
            others,
        };
        let backup = c.backup().await;
        c.rename("The present").await;
        (c, backup)
    }

    async fn backup(&self) -> String {
        let t = self
            .w
            .create_task("backup", &self.uri, json!({}))
            .await
            .unwrap();
        let t = self.w.wait_finished(t.id, WAIT).await.unwrap();
        assert_eq!(t.status, TaskStatus::Success, "{t:#?}");
        let list = self
            .w
            .get_json(&format!("/api/v1/sites/{}/backups", self.uri))
            .await;
        list[0]["id"].as_str().unwrap().to_string()
    }

    async fn site(&self, uri: &str) -> Value {
        self.w.get_json(&format!("/api/v1/sites/{uri}")).await
    }

    async fn rename(&self, name: &str) {
        let db = self.site(&self.uri).await["db_name"]
            .as_str()
            .unwrap()
            .to_string();
        let mut my = <sqlx::MySqlConnection as sqlx::Connection>::connect(&mysql_url())
            .await
            .unwrap();
        let data = format!(
            "a:3:{{s:4:\"name\";s:{}:\"{name}\";s:4:\"mail\";s:17:\"admin@example.com\";s:16:\"default_langcode\";s:2:\"en\";}}",
            name.len()
        );
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE `{db}`.config SET data = ? WHERE name = 'system.site'"
        )))
        .bind(data)
        .execute(&mut my)
        .await
        .unwrap();
    }

    fn page(&self, uri: &str) -> (u16, String) {
        let (status, body, _) = self.w.http_get(uri, "/").unwrap();
        (status, body)
    }

    /// The injection that must be in place before the task runs.
    fn prepare(&mut self, inject: Inject, platform: &Path) {
        match inject {
            Inject::Updatedb => berth_tests::add_node_update(
                platform,
                10102,
                "  throw new Exception('injected');\n",
            ),
            Inject::KillWorker => berth_tests::add_node_update(platform, 10102, "  sleep(3);\n"),
            Inject::NginxTest => {
                // Only vhosts that pass PHP on name the php-fpm address: the maintenance
                // page passes `nginx -t`, the site's new vhost does not.
                let mut old = self.http.take().unwrap();
                let _ = old.kill();
                let _ = old.wait();
                self.http = Some(
                    self.w
                        .spawn_berth(
                            "http",
                            &[(
                                "BERTH_NGINX_FASTCGI_PARAMS",
                                "/nonexistent/fastcgi_params.invalid",
                            )],
                        )
                        .0,
                );
            }
            Inject::Import => {}
        }
    }

    /// Runs the task; a killed worker is replaced while `site-updatedb` runs.
    async fn run(&mut self, inject: Inject, task: &str, args: Value) -> berth_contracts::Task {
        let t = self.w.create_task(task, &self.uri, args).await.unwrap();
        if inject == Inject::KillWorker {
            self.w
                .wait_task(t.id, WAIT, "drush updatedb running", |t| {
                    t.log
                        .as_ref()
                        .is_some_and(|l| l.iter().any(|e| e.message.contains("drush updatedb")))
                })
                .await
                .unwrap();
            let mut http = self.http.take().unwrap();
            kill(Pid::from_raw(http.id() as i32), Signal::SIGKILL).unwrap();
            http.wait().unwrap();
            assert_eq!(
                self.w.task(t.id).await.unwrap().status,
                TaskStatus::Processing,
                "the task must not end with its worker"
            );
            self.http = Some(self.w.spawn_berth("http", &[]).0);
        }
        self.w.wait_finished(t.id, WAIT).await.unwrap()
    }

    /// The site serves "The present", out of maintenance, and nothing of the task is left
    /// beside it on either platform.
    fn serves_as_before(&self, t: &berth_contracts::Task) {
        let (status, body) = self.page(&self.uri);
        assert_eq!(status, 200, "{body}\n{}", log_of(t));
        assert!(body.contains("<h1>The present</h1>"), "{body}");
        for root in [&self.a, &self.b] {
            if let Ok(entries) = std::fs::read_dir(root.join("sites")) {
                for e in entries.flatten() {
                    let n = e.file_name().to_string_lossy().to_string();
                    assert!(!n.contains(".berth-"), "{n} left in {}", root.display());
                }
            }
        }
        let vhosts = self.w.dir.join("config/server_master/nginx/vhost.d");
        for e in std::fs::read_dir(vhosts).unwrap().flatten() {
            let n = e.file_name().to_string_lossy().to_string();
            assert!(!n.contains(".stash-"), "{n} left behind");
        }
    }

    async fn stop(mut self) {
        for mut c in self.http.take().into_iter().chain(self.others.drain(..)) {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.w.stop().await;
    }
}

fn log_of(t: &berth_contracts::Task) -> String {
    t.log
        .as_ref()
        .unwrap()
        .iter()
        .map(|l| l.message.clone())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The step that failed, and that its log says so.
fn failed_at(t: &berth_contracts::Task, action: &str, says: &str) {
    assert_eq!(t.status, TaskStatus::Error, "{}", log_of(t));
    let failed: Vec<_> = t
        .steps
        .as_ref()
        .unwrap()
        .iter()
        .filter(|s| s.status == StepStatus::Error)
        .map(|s| s.action.as_str())
        .collect();
    assert_eq!(failed, [action], "{}", log_of(t));
    assert!(log_of(t).contains(says), "{}", log_of(t));
}

fn expected_failure(inject: Inject) -> (&'static str, &'static str) {
    match inject {
        Inject::Updatedb => ("site-updatedb", "node_update_10102 failed: injected"),
        Inject::Import => ("backup-extract", "false"),
        Inject::NginxTest => ("site-vhost", "fastcgi_params.invalid"),
        Inject::KillWorker => unreachable!(),
    }
}

async fn restore(inject: Inject) {
    let (mut c, backup) = Case::start(inject).await;
    let db = c.site(&c.uri).await["db_name"]
        .as_str()
        .unwrap()
        .to_string();
    let a = c.a.clone();
    c.prepare(inject, &a);
    let t = c.run(inject, "restore", json!({"backup": backup})).await;
    if inject == Inject::KillWorker {
        assert_eq!(t.status, TaskStatus::Success, "{}", log_of(&t));
        let (status, body) = c.page(&c.uri);
        assert_eq!(status, 200);
        assert!(body.contains(&format!("<h1>{}</h1>", c.uri)), "{body}");
    } else {
        let (action, says) = expected_failure(inject);
        failed_at(&t, action, says);
        c.serves_as_before(&t);
        assert_eq!(c.site(&c.uri).await["db_name"], db.as_str());
        assert!(!berth_tests::mysql_db_exists(t.args["next_db"]["name"].as_str().unwrap()).await);
    }
    c.stop().await;
}

async fn migrate(inject: Inject) {
    let (mut c, _) = Case::start(inject).await;
    let db = c.site(&c.uri).await["db_name"]
        .as_str()
        .unwrap()
        .to_string();
    let b = c.b.clone();
    c.prepare(inject, &b);
    // platform_b's new update is found by a verify, before the migrate is planned.
    verified_again(&c.w, "platform_b").await;
    let t = c
        .run(inject, "migrate", json!({"platform": "platform_b"}))
        .await;
    if inject == Inject::KillWorker {
        assert_eq!(t.status, TaskStatus::Success, "{}", log_of(&t));
        assert_eq!(c.site(&c.uri).await["platform"], "platform_b");
        assert!(c.page(&c.uri).1.contains("<h1>The present</h1>"));
    } else {
        let (action, says) = expected_failure(inject);
        failed_at(&t, action, says);
        c.serves_as_before(&t);
        let site = c.site(&c.uri).await;
        assert_eq!(site["platform"], "platform_a");
        assert_eq!(site["db_name"], db.as_str());
        assert!(!c.b.join("sites").join(&c.uri).exists());
        assert!(!berth_tests::mysql_db_exists(t.args["next_db"]["name"].as_str().unwrap()).await);
    }
    c.stop().await;
}

async fn verified_again(w: &World, platform: &str) {
    let t = w.create_task("verify", platform, json!({})).await.unwrap();
    assert_eq!(
        w.wait_finished(t.id, WAIT).await.unwrap().status,
        TaskStatus::Success
    );
}

async fn clone(inject: Inject) {
    let (mut c, _) = Case::start(inject).await;
    let a = c.a.clone();
    c.prepare(inject, &a);
    verified_again(&c.w, "platform_a").await;
    let copy = format!("copy.{}.test", c.w.id);
    let t = c.run(inject, "clone", json!({"uri": copy})).await;
    if inject == Inject::KillWorker {
        assert_eq!(t.status, TaskStatus::Success, "{}", log_of(&t));
        assert_eq!(c.site(&copy).await["status"], "enabled");
        assert!(c.page(&copy).1.contains("<h1>The present</h1>"));
    } else {
        let (action, says) = expected_failure(inject);
        failed_at(&t, action, says);
        c.serves_as_before(&t);
        let failed = c.site(&copy).await;
        assert_eq!(failed["status"], "failed");
        assert!(!berth_tests::mysql_db_exists(failed["db_name"].as_str().unwrap()).await);
        assert!(!c.a.join("sites").join(&copy).exists());
        assert_eq!(c.page(&copy).0, 404);
    }
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restore_with_a_failing_updatedb() {
    restore(Inject::Updatedb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restore_with_a_failing_import() {
    restore(Inject::Import).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restore_with_a_failing_nginx_test() {
    restore(Inject::NginxTest).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restore_with_a_killed_worker() {
    restore(Inject::KillWorker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn migrate_with_a_failing_updatedb() {
    migrate(Inject::Updatedb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn migrate_with_a_failing_import() {
    migrate(Inject::Import).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn migrate_with_a_failing_nginx_test() {
    migrate(Inject::NginxTest).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn migrate_with_a_killed_worker() {
    migrate(Inject::KillWorker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clone_with_a_failing_updatedb() {
    clone(Inject::Updatedb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clone_with_a_failing_import() {
    clone(Inject::Import).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clone_with_a_failing_nginx_test() {
    clone(Inject::NginxTest).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clone_with_a_killed_worker() {
    clone(Inject::KillWorker).await;
}
