//! No secret leaks: while sites are installed, backed up, restored and cloned by worker
//! processes, the database passwords (a db server's admin password and each site's) never
//! appear in any process's arguments (sampled all along), in the workers' logs, in task logs
//! or in API answers; backups are 0600 and settings.php is readable by the web server's
//! group only.

use berth_contracts::TaskStatus;
use berth_tests::{World, WorldOptions, mysql_url};
use serde_json::{Value, json};
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(120);

/// Samples every process's arguments every few milliseconds until stopped.
fn sample_ps(
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<String>>>,
) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let mut samples = 0;
        while !stop.load(Ordering::Relaxed) {
            if let Ok(out) = std::process::Command::new("ps")
                .args(["-eo", "args"])
                .output()
            {
                let text = String::from_utf8_lossy(&out.stdout).to_string();
                let mut seen = seen.lock().unwrap();
                for line in text.lines() {
                    if !seen.iter().any(|s| s == line) {
                        seen.push(line.to_string());
                    }
                }
                samples += 1;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        samples
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn database_passwords_never_leak_into_argv_logs_task_logs_or_answers() {
    let mut w = World::start_with(WorldOptions {
        web: true,
        workers: false,
        ..Default::default()
    })
    .await
    .unwrap();
    // The workers that handle passwords run as processes, with their logs in files.
    let servers = w.opts.servers.clone();
    w.start_workers_except(&servers, &["http", "db", "backup"]);
    let mut children = Vec::new();
    let mut logs = Vec::new();
    for service in ["http", "db", "backup"] {
        let (child, log) = w.spawn_berth(service, &[("RUST_LOG", "debug")]);
        children.push(child);
        logs.push(log);
    }

    // A db server with a real admin password: a MariaDB user made for this test.
    let admin = format!("berth_admin_{}", w.id);
    let admin_password = format!("Adm1n-{}-s3cret", w.id);
    let mut my = <sqlx::MySqlConnection as sqlx::Connection>::connect(&mysql_url())
        .await
        .unwrap();
    for sql in [
        format!("CREATE USER '{admin}'@'localhost' IDENTIFIED BY '{admin_password}'"),
        format!("CREATE USER '{admin}'@'127.0.0.1' IDENTIFIED BY '{admin_password}'"),
        format!("GRANT ALL PRIVILEGES ON *.* TO '{admin}'@'localhost' WITH GRANT OPTION"),
        format!("GRANT ALL PRIVILEGES ON *.* TO '{admin}'@'127.0.0.1' WITH GRANT OPTION"),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut my)
            .await
            .unwrap();
    }
    let port = w.web.as_ref().unwrap().port;
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sampler = sample_ps(stop.clone(), seen.clone());

    let r = w
        .post(
            "/api/v1/servers",
            &json!({"name": "server_master", "host": "localhost", "services": {
                "http": {"type": "nginx", "port": port},
                "db": {"type": "mariadb", "host": "127.0.0.1", "port": 3306,
                       "admin_user": admin, "admin_password": admin_password},
                "dns": {"type": "null"}}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let server: Value = r.json().await.unwrap();
    let t = w
        .wait_finished(
            server["verify_task"].as_str().unwrap().parse().unwrap(),
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(t.status, TaskStatus::Success, "{t:#?}");
    w.add_platform("platform_d10", "drupal10").await.unwrap();
    let uri = format!("sec.{}.test", w.id);
    let (_, t) = w
        .install_site(json!({"uri": uri, "platform": "platform_d10"}))
        .await
        .unwrap();
    assert_eq!(t.status, TaskStatus::Success, "{t:#?}");
    let mut tasks = vec![t.id];
    for (task_type, args) in [
        ("backup", json!({})),
        ("login-reset", json!({})),
        ("clone", json!({"uri": format!("sec2.{}.test", w.id)})),
    ] {
        let t = w.create_task(task_type, &uri, args).await.unwrap();
        let t = w.wait_finished(t.id, WAIT).await.unwrap();
        assert_eq!(t.status, TaskStatus::Success, "{task_type}: {t:#?}");
        tasks.push(t.id);
    }
    let backups = w.get_json(&format!("/api/v1/sites/{uri}/backups")).await;
    let t = w
        .create_task("restore", &uri, json!({"backup": backups[0]["id"]}))
        .await
        .unwrap();
    let t = w.wait_finished(t.id, WAIT).await.unwrap();
    assert_eq!(t.status, TaskStatus::Success, "{t:#?}");
    tasks.push(t.id);
    stop.store(true, Ordering::Relaxed);
    let samples = sampler.join().unwrap();
    assert!(samples > 20, "ps sampled {samples} times");
    // The sampling saw the commands that run with the passwords (drush's environment; the
    // dumps' option files are checked with a slowed dump in services/backup's tests).
    {
        let seen = seen.lock().unwrap();
        assert!(
            seen.iter().any(|l| l.contains("vendor/bin/drush")),
            "no drush run was sampled"
        );
    }

    // The secrets: the admin password, and every site's database password (read from the
    // vhosts, the one place they are kept in the clear).
    let mut secrets = vec![admin_password.clone()];
    let vhosts = w.dir.join("config/server_master/nginx/vhost.d");
    for e in std::fs::read_dir(&vhosts).unwrap().flatten() {
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        if let Some(p) = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("fastcgi_param db_passwd "))
        {
            secrets.push(p.trim_end_matches(';').to_string());
        }
        assert_eq!(
            e.metadata().unwrap().mode() & 0o777,
            0o600,
            "{} holds credentials",
            e.path().display()
        );
    }
    assert!(secrets.len() >= 3, "admin + two sites: {}", secrets.len());

    // Where they must never be.
    let mut places: Vec<(String, String)> = Vec::new();
    places.push(("process arguments".into(), seen.lock().unwrap().join("\n")));
    for log in &logs {
        places.push((
            format!("worker log {}", log.display()),
            std::fs::read_to_string(log).unwrap_or_default(),
        ));
    }
    for id in &tasks {
        places.push((
            format!("task {id}"),
            w.get_json(&format!("/api/v1/tasks/{id}")).await.to_string(),
        ));
    }
    for path in [
        "/api/v1/servers".to_string(),
        "/api/v1/sites".to_string(),
        format!("/api/v1/sites/{uri}"),
        format!("/api/v1/sites/{uri}/backups"),
        "/api/v1/tasks?limit=500".to_string(),
        "/api/v1/dead-letters".to_string(),
    ] {
        places.push((path.clone(), w.get_json(&path).await.to_string()));
    }
    for (place, text) in &places {
        assert!(
            !text.is_empty() || place.starts_with("worker log"),
            "{place} is empty"
        );
        for secret in &secrets {
            assert!(
                !text.contains(secret.as_str()),
                "a password ({}…) is in {place}",
                &secret[..4]
            );
        }
    }

    // Files: backups private, settings.php for the site's own group only (its PHP runs as
    // the site's own user).
    for b in backups.as_array().unwrap() {
        let m = std::fs::metadata(b["path"].as_str().unwrap()).unwrap();
        assert_eq!(m.mode() & 0o777, 0o600);
    }
    let settings = w
        .dir
        .join("platforms/platform_d10/sites")
        .join(&uri)
        .join("settings.php");
    let m = std::fs::metadata(&settings).unwrap();
    assert_eq!(m.mode() & 0o777, 0o640);
    let (unix_uid,): (i32,) = sqlx::query_as("SELECT unix_uid FROM sites WHERE uri = $1")
        .bind(&uri)
        .fetch_one(&w.store.pool)
        .await
        .unwrap();
    assert_eq!((m.uid(), m.gid()), (0, unix_uid as u32));

    for mut c in children {
        let _ = c.kill();
        let _ = c.wait();
    }
    w.stop().await;
    for host in ["localhost", "127.0.0.1"] {
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP USER IF EXISTS '{admin}'@'{host}'"
        )))
        .execute(&mut my)
        .await;
    }
}
