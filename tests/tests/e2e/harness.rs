//! The harness cleans up after a test that fails: a case dropped while its test panics
//! leaves no process, PostgreSQL database, RabbitMQ vhost, directory, MariaDB database or
//! user behind; with `BERTH_TEST_KEEP=1` its data stays for diagnosis (its processes go).

use berth_tests::case::{Case, Setup};
use berth_tests::{mysql_db_exists, mysql_user_exists, pg_admin_url, rabbit_management};
use std::path::PathBuf;

/// What a failed case had made.
struct Made {
    id: String,
    dir: PathBuf,
    vhost: String,
    site_db: String,
    next_db: String,
    admin: String,
    pids: Vec<i32>,
}

/// Runs a case that installs a site, starts a migrate's next database by hand (as a task
/// stopped half-way leaves it), and panics.
async fn a_failing_case() -> Made {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let test = tokio::spawn(async move {
        let c = Case::start(Setup {
            own_admin: true,
            ..Setup::INSTALLED
        })
        .await;
        let site_db = c.db().await;
        let next_db = format!("{}_n", site_db);
        // A restore's next database, as a task that died after its site-db-create leaves it.
        sqlx::query(
            "UPDATE tasks SET args = jsonb_set(args, '{next_db}', \
             jsonb_build_object('name', $1::text, 'user', $1::text))",
        )
        .bind(&next_db)
        .execute(&c.w.store.pool)
        .await
        .unwrap();
        berth_tests::my_exec(&format!(
            "CREATE DATABASE `{next_db}`; CREATE USER '{next_db}'@'localhost' IDENTIFIED BY 'x'"
        ))
        .await;
        let pids = ["http", "dns", "backup"]
            .iter()
            .map(|s| c.pid(s).unwrap())
            .collect();
        tx.send(Made {
            id: c.w.id.clone(),
            dir: c.w.dir.clone(),
            vhost: c.w.vhost.clone(),
            site_db,
            next_db,
            admin: format!("berth_adm_{}", c.w.id),
            pids,
        })
        .ok()
        .unwrap();
        panic!("the test fails here");
    });
    let err = test.await.unwrap_err();
    assert!(err.is_panic());
    rx.await.unwrap()
}

async fn pg_database_exists(name: &str) -> bool {
    let mut pg = <sqlx::PgConnection as sqlx::Connection>::connect(&pg_admin_url())
        .await
        .unwrap();
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM pg_database WHERE datname = $1")
        .bind(name)
        .fetch_one(&mut pg)
        .await
        .unwrap();
    n > 0
}

async fn vhost_exists(vhost: &str) -> bool {
    let r = reqwest::get(format!("{}/api/vhosts/{vhost}", rabbit_management()))
        .await
        .unwrap();
    r.status().is_success()
}

/// Running processes (not zombies) that are one of `pids` or name the world's directory on
/// their command line (its nginx, php-fpm and named).
fn running(m: &Made) -> Vec<String> {
    let dir = m.dir.to_string_lossy().to_string();
    let mut out = vec![];
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        if stat
            .rsplit_once(')')
            .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        {
            continue;
        }
        let cmd = std::fs::read(e.path().join("cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default();
        if m.pids.contains(&pid) || cmd.contains(&dir) {
            out.push(format!("{pid}: {cmd}"));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_test_leaves_nothing_behind() {
    assert!(!berth_tests::keep_failed());
    let m = a_failing_case().await;
    assert_eq!(running(&m), Vec::<String>::new());
    assert!(!pg_database_exists(&format!("berth_test_{}", m.id)).await);
    assert!(!vhost_exists(&m.vhost).await);
    assert!(!m.dir.exists());
    for db in [&m.site_db, &m.next_db] {
        assert!(!mysql_db_exists(db).await, "{db} left");
        assert!(!mysql_user_exists(db).await, "user {db} left");
    }
    assert!(!mysql_user_exists(&m.admin).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_test_keeps_its_world_with_berth_test_keep() {
    // SAFETY: nextest runs each test in a process of its own; nothing else reads it yet.
    unsafe { std::env::set_var("BERTH_TEST_KEEP", "1") };
    let m = a_failing_case().await;
    // Processes go; the data stays.
    assert_eq!(running(&m), Vec::<String>::new());
    let kept = (
        pg_database_exists(&format!("berth_test_{}", m.id)).await,
        vhost_exists(&m.vhost).await,
        m.dir.join("nginx.conf").exists(),
        mysql_db_exists(&m.site_db).await,
        mysql_user_exists(&m.admin).await,
    );
    // Then removed by hand, as the message tells.
    berth_tests::remove_kept_world(&m.id).await;
    berth_tests::my_exec(&format!(
        "DROP DATABASE IF EXISTS `{}`; DROP USER IF EXISTS '{}'@'%'",
        m.next_db, m.admin
    ))
    .await;
    assert_eq!(kept, (true, true, true, true, true));
    assert!(!pg_database_exists(&format!("berth_test_{}", m.id)).await);
    assert!(!mysql_db_exists(&m.site_db).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_world_whose_set_up_fails_half_way_leaves_nothing_behind() {
    // RabbitMQ's management API is not there: the world fails after its PostgreSQL database.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    // SAFETY: nextest runs each test in a process of its own; nothing else reads it yet.
    unsafe {
        std::env::set_var(
            "BERTH_TEST_RABBITMQ_MANAGEMENT",
            format!("http://guest:guest@127.0.0.1:{port}"),
        )
    };
    let err = match berth_tests::World::start().await {
        Ok(_) => panic!("a world without RabbitMQ's management API started"),
        Err(e) => format!("{e:#}"),
    };
    let id = err
        .strip_prefix("starting world ")
        .and_then(|r| r.get(..12))
        .unwrap_or_else(|| panic!("no world id in: {err}"));
    assert!(err.contains("RabbitMQ management API"), "{err}");
    assert!(
        !pg_database_exists(&format!("berth_test_{id}")).await,
        "{err}"
    );
}
