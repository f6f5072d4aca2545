//! A failure injected into restore, migrate and clone, through the real path each time:
//! the installer's `updatedb` fails (an update that throws), the import fails (the database
//! client the backup worker is configured with fails), `nginx -t` fails (the php-fpm address
//! the http worker writes into vhosts does not resolve, which only the final vhost uses), or
//! the http worker is killed mid-step (SIGKILL during a slow update). The first three must
//! leave the site serving its old content, out of maintenance, with nothing left beside it
//! and a task that says what failed; a killed worker is replaced and the task completes.

use berth_contracts::{Task, TaskStatus};
use berth_tests::case::{Case, Setup};
use berth_tests::{TASK_WAIT as WAIT, World, failed_at, log_of, mysql_db_exists};
use serde_json::{Value, json};
use std::path::Path;

#[derive(Clone, Copy, PartialEq, Debug)]
enum Inject {
    Updatedb,
    Import,
    NginxTest,
    KillWorker,
}

/// A site on platform_a (and a second platform, platform_b, for migrates), its name
/// changed in its database to "The present" after a first backup.
async fn start() -> (Case, String) {
    let c = Case::start(Setup {
        second_platform: true,
        ..Setup::INSTALLED
    })
    .await;
    let backup = c.backup().await;
    c.rename("The present").await;
    (c, backup)
}

/// The injection that must be in place before the task runs.
fn prepare(c: &mut Case, inject: Inject, platform: &Path) {
    match inject {
        Inject::Updatedb => {
            berth_tests::add_node_update(platform, 10102, "  throw new Exception('injected');\n")
        }
        Inject::KillWorker => berth_tests::add_node_update(platform, 10102, "  sleep(3);\n"),
        // Only vhosts that pass PHP on name the php-fpm address: the maintenance page
        // passes `nginx -t`, the site's new vhost does not.
        Inject::NginxTest => c.break_vhosts(),
        // The client that imports dumps fails: the backup still dumps with mariadb-dump.
        Inject::Import => c.respawn("backup", &[("BERTH_MYSQL_CLIENT_BIN", "false")]),
    }
}

/// Runs the task; a killed worker is replaced while `site-updatedb` runs.
async fn run(c: &mut Case, inject: Inject, task: &str, args: Value) -> Task {
    let t = c.w.create_task(task, &c.uri, args).await.unwrap();
    if inject == Inject::KillWorker {
        c.w.wait_task(t.id, WAIT, "drush updatedb running", |t| {
            log_of(t).contains("drush updatedb")
        })
        .await
        .unwrap();
        c.kill("http");
        assert_eq!(
            c.w.task(t.id).await.unwrap().status,
            TaskStatus::Processing,
            "the task must not end with its worker"
        );
        c.spawn("http", &[]);
    }
    c.w.wait_finished(t.id, WAIT).await.unwrap()
}

/// The site serves "The present", out of maintenance, and nothing of the task is left
/// beside it on either platform.
fn serves_as_before(c: &Case, t: &Task) {
    let (status, body) = c.page(&c.uri);
    assert_eq!(status, 200, "{body}\n{}", log_of(t));
    assert!(body.contains("<h1>The present</h1>"), "{body}");
    c.nothing_half_done();
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
    let (mut c, backup) = start().await;
    let db = c.db().await;
    let a = c.root.clone();
    prepare(&mut c, inject, &a);
    let t = run(&mut c, inject, "restore", json!({"backup": backup})).await;
    if inject == Inject::KillWorker {
        assert_eq!(t.status, TaskStatus::Success, "{}", log_of(&t));
        let (status, body) = c.page(&c.uri);
        assert_eq!(status, 200);
        assert!(body.contains(&format!("<h1>{}</h1>", c.uri)), "{body}");
    } else {
        let (action, says) = expected_failure(inject);
        failed_at(&t, action, says);
        serves_as_before(&c, &t);
        assert_eq!(c.site(&c.uri).await["db_name"], db.as_str());
        assert!(!mysql_db_exists(t.args["next_db"]["name"].as_str().unwrap()).await);
    }
    c.stop().await;
}

async fn migrate(inject: Inject) {
    let (mut c, _) = start().await;
    let db = c.db().await;
    let b = c.root_b.clone().unwrap();
    prepare(&mut c, inject, &b);
    // platform_b's new update is found by a verify, before the migrate is planned.
    verified_again(&c.w, "platform_b").await;
    let t = run(&mut c, inject, "migrate", json!({"platform": "platform_b"})).await;
    if inject == Inject::KillWorker {
        assert_eq!(t.status, TaskStatus::Success, "{}", log_of(&t));
        assert_eq!(c.site(&c.uri).await["platform"], "platform_b");
        assert!(c.page(&c.uri).1.contains("<h1>The present</h1>"));
    } else {
        let (action, says) = expected_failure(inject);
        failed_at(&t, action, says);
        serves_as_before(&c, &t);
        let site = c.site(&c.uri).await;
        assert_eq!(site["platform"], "platform_a");
        assert_eq!(site["db_name"], db.as_str());
        assert!(!b.join("sites").join(&c.uri).exists());
        assert!(!mysql_db_exists(t.args["next_db"]["name"].as_str().unwrap()).await);
    }
    c.stop().await;
}

async fn verified_again(w: &World, platform: &str) {
    w.run_success("verify", platform, json!({})).await;
}

async fn clone(inject: Inject) {
    let (mut c, _) = start().await;
    let a = c.root.clone();
    prepare(&mut c, inject, &a);
    verified_again(&c.w, "platform_a").await;
    let copy = format!("copy.{}.test", c.w.id);
    let t = run(&mut c, inject, "clone", json!({"uri": copy})).await;
    if inject == Inject::KillWorker {
        assert_eq!(t.status, TaskStatus::Success, "{}", log_of(&t));
        assert_eq!(c.site(&copy).await["status"], "enabled");
        assert!(c.page(&copy).1.contains("<h1>The present</h1>"));
    } else {
        let (action, says) = expected_failure(inject);
        failed_at(&t, action, says);
        serves_as_before(&c, &t);
        let failed = c.site(&copy).await;
        assert_eq!(failed["status"], "failed");
        assert!(!mysql_db_exists(failed["db_name"].as_str().unwrap()).await);
        assert!(!a.join("sites").join(&copy).exists());
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
