//! No secret leaks: while sites are installed, backed up, restored and cloned by worker
//! processes (and one install fails, leaving a dead letter), the database passwords (a db
//! server's admin password and each site's, every one berth sealed) never appear in any
//! process's arguments (sampled all along), in the workers' logs, in the in-process API's and
//! state service's logs, in task logs, in API answers, in any text, json or bytea column of
//! any PostgreSQL table, or in any message that went through the broker; backups are 0600 and
//! settings.php is readable by the web server's group only.

use base64::Engine;
use berth_contracts::TaskStatus;
use berth_secrets::SecretKey;
use berth_tests::TASK_WAIT as WAIT;
use berth_tests::{World, WorldOptions, mysql_url, rabbit_management};
use serde_json::{Value, json};
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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

/// The worker processes, killed when the test ends, also by a failed assertion (a worker
/// left running holds its vhost's connections).
struct Children(Vec<std::process::Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Everything the test process's tracing says (the in-process API, state service and dns
/// worker), at debug level as the worker processes run.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() -> Captured {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("debug"))
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .try_init()
        .expect("the test's own log subscriber is the process's first");
    captured
}

/// A queue bound to every exchange berth publishes to, so that every message that goes
/// through the broker during the test is kept for the scan.
async fn spy_on_the_broker(w: &World, queue: &str) {
    let mgmt = rabbit_management();
    let vhost = &w.vhost;
    w.http
        .put(format!("{mgmt}/api/queues/{vhost}/{queue}"))
        .json(&json!({"durable": false, "auto_delete": false}))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    let mut bindings = vec![
        ("berth.tasks", "task".to_string()),
        ("berth.events", "step".to_string()),
        ("berth.dead", String::new()),
        ("berth.control", String::new()),
    ];
    for server in &w.opts.servers {
        for service in ["http", "db", "dns", "backup"] {
            bindings.push(("berth.work", format!("{service}.{server}")));
        }
    }
    for (exchange, key) in bindings {
        w.http
            .post(format!(
                "{mgmt}/api/bindings/{vhost}/e/{exchange}/q/{queue}"
            ))
            .json(&json!({"routing_key": key}))
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap_or_else(|e| panic!("bind {queue} to {exchange}: {e}"));
    }
}

/// Every message in every queue of the world's vhost (peeked and requeued), bodies decoded,
/// with their properties and headers.
async fn broker_messages(w: &World) -> Vec<(String, String)> {
    let mgmt = rabbit_management();
    let vhost = &w.vhost;
    let queues: Vec<Value> = w
        .http
        .get(format!("{mgmt}/api/queues/{vhost}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut out = Vec::new();
    for q in queues {
        let name = q["name"].as_str().unwrap().to_string();
        if q["exclusive"] == true {
            // A worker's own control queue, which only its connection may read; what goes
            // into it (berth.control) is kept by the spy queue too.
            continue;
        }
        let answer: Value = w
            .http
            .post(format!("{mgmt}/api/queues/{vhost}/{name}/get"))
            .json(&json!({"count": 100000, "ackmode": "ack_requeue_true", "encoding": "base64"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let messages = answer
            .as_array()
            .unwrap_or_else(|| panic!("peek {name}: {answer}"))
            .clone();
        for m in messages {
            let body = base64::engine::general_purpose::STANDARD
                .decode(m["payload"].as_str().unwrap_or_default())
                .unwrap();
            out.push((
                name.clone(),
                format!("{}\n{}", String::from_utf8_lossy(&body), m["properties"]),
            ));
        }
    }
    out
}

/// Every value of every text, varchar, json, jsonb and bytea column of every table of the
/// world's database, as (table.column, text).
async fn database_text(w: &World) -> Vec<(String, String)> {
    let columns: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text, data_type::text
           FROM information_schema.columns
          WHERE table_schema = 'public'
            AND data_type IN ('text', 'character varying', 'character', 'json', 'jsonb',
                              'bytea', 'ARRAY')",
    )
    .fetch_all(&w.store.pool)
    .await
    .unwrap();
    assert!(columns.len() > 20, "{columns:?}");
    let mut out = Vec::new();
    for (table, column, data_type) in columns {
        let values: Vec<String> = if data_type == "bytea" {
            let rows: Vec<(Option<Vec<u8>>,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT \"{column}\" FROM \"{table}\""
            )))
            .fetch_all(&w.store.pool)
            .await
            .unwrap();
            rows.into_iter()
                .filter_map(|(b,)| b.map(|b| String::from_utf8_lossy(&b).to_string()))
                .collect()
        } else {
            let rows: Vec<(Option<String>,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT \"{column}\"::text FROM \"{table}\""
            )))
            .fetch_all(&w.store.pool)
            .await
            .unwrap();
            rows.into_iter().filter_map(|(v,)| v).collect()
        };
        out.push((format!("{table}.{column}"), values.join("\n")));
    }
    out
}

/// Every password berth keeps sealed in PostgreSQL, opened with the world's key: db server
/// admin passwords, site database passwords, and the secrets tasks carry.
async fn sealed_passwords(w: &World) -> Vec<String> {
    let key = SecretKey::from_hex(&w.secret_hex).unwrap();
    let mut sealed: Vec<(String,)> = sqlx::query_as(
        "SELECT admin_password_sealed FROM server_services WHERE admin_password_sealed IS NOT NULL
         UNION ALL SELECT db_password_sealed FROM sites
         UNION ALL SELECT sealed FROM task_secrets",
    )
    .fetch_all(&w.store.pool)
    .await
    .unwrap();
    sealed.sort();
    sealed.dedup();
    let mut out: Vec<String> = sealed
        .iter()
        .map(|(s,)| key.open(s).expect("sealed with the world's key"))
        .filter(|p| !p.is_empty())
        .collect();
    out.sort();
    out.dedup();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn database_passwords_never_leak_into_argv_logs_task_logs_or_answers() {
    // A db server with a real admin password: a MariaDB user made for this test (before the
    // log capture starts: the statement that makes it carries the password).
    let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
    let admin = format!("berth_admin_{id}");
    let admin_password = format!("Adm1n-{id}-s3cret");
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
    let in_process_log = capture_logs();
    let mut w = World::start_with(WorldOptions {
        web: true,
        workers: false,
        ..Default::default()
    })
    .await
    .unwrap();
    let spy = "test.spy";
    spy_on_the_broker(&w, spy).await;
    // The workers that handle passwords run as processes, with their logs in files.
    let servers = w.opts.servers.clone();
    w.start_workers_except(&servers, &["http", "db", "backup"]);
    let mut children = Children(Vec::new());
    let mut logs = Vec::new();
    for service in ["http", "db", "backup"] {
        let (child, log) = w.spawn_berth(service, &[("RUST_LOG", "debug")]);
        children.0.push(child);
        logs.push(log);
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
    // Passwords are collected as they are sealed: a restore replaces the site's, a failed
    // install's site goes.
    let mut sealed = sealed_passwords(&w).await;
    let mut tasks = vec![t.id];
    for (task_type, args) in [
        ("backup", json!({})),
        ("login-reset", json!({})),
        ("clone", json!({"uri": format!("sec2.{}.test", w.id)})),
    ] {
        let t = w.run_success(task_type, &uri, args).await;
        tasks.push(t.id);
        sealed.extend(sealed_passwords(&w).await);
    }
    let backups = w.get_json(&format!("/api/v1/sites/{uri}/backups")).await;
    let t = w
        .run("restore", &uri, json!({"backup": backups[0]["id"]}))
        .await;
    assert_eq!(t.status, TaskStatus::Success, "{t:#?}");
    tasks.push(t.id);
    sealed.extend(sealed_passwords(&w).await);
    // An install that fails in drush (which gets the new site's password): its step is
    // dead-lettered with what it carried, so the dead letters scanned below are not empty.
    let r = w
        .post(
            "/api/v1/sites",
            &json!({"uri": format!("sec3.{}.test", w.id), "platform": "platform_d10",
                    "profile": "broken"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    sealed.extend(sealed_passwords(&w).await);
    let broken: Value = r.json().await.unwrap();
    let t = w
        .wait_finished(broken["task"].as_str().unwrap().parse().unwrap(), WAIT)
        .await
        .unwrap();
    assert_eq!(t.status, TaskStatus::Error, "{t:#?}");
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
    let mut secrets: Vec<String> = vec![admin_password.clone()];
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
    // Every password berth sealed (the failed install's and the restore's new database's
    // too) is looked for; those of the vhosts are among them.
    sealed.extend(sealed_passwords(&w).await);
    sealed.sort();
    sealed.dedup();
    for p in &secrets {
        assert!(
            sealed.contains(p),
            "a password in the clear was never sealed"
        );
    }
    for p in sealed {
        if !secrets.contains(&p) {
            secrets.push(p);
        }
    }
    assert!(
        secrets.len() >= 5,
        "admin, three sites, the restore's new database: {}",
        secrets.len()
    );

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
    let dead = w.get_json("/api/v1/dead-letters").await;
    assert!(
        dead["total"].as_u64().unwrap() >= 1,
        "the failed install left a dead letter: {dead}"
    );
    let log = String::from_utf8_lossy(&in_process_log.0.lock().unwrap()).to_string();
    assert!(
        log.contains("task finished") && log.contains("berth_api"),
        "the in-process API and state service logs are captured: {} bytes",
        log.len()
    );
    places.push(("in-process API and state log".into(), log));
    let rows = database_text(&w).await;
    // The audit log holds a row per mutating request of this test (never a body): scanned
    // like every other table.
    for table in [
        "outbox",
        "steps",
        "tasks",
        "dead_letters",
        "task_log",
        "audit_log",
    ] {
        assert!(
            rows.iter()
                .any(|(c, v)| c.starts_with(&format!("{table}.")) && !v.is_empty()),
            "no rows of {table} scanned"
        );
    }
    places.extend(
        rows.into_iter()
            .map(|(column, text)| (format!("PostgreSQL {column}"), text)),
    );
    let messages = broker_messages(&w).await;
    let spied = messages.iter().filter(|(q, _)| q == spy).count();
    assert!(spied > 50, "the spy queue kept {spied} messages");
    assert!(
        messages
            .iter()
            .any(|(q, m)| q == spy && m.contains("\"secrets\":{\"db_admin\"")),
        "step commands with sealed secrets went through the broker"
    );
    places.extend(
        messages
            .into_iter()
            .map(|(queue, body)| (format!("a message in queue {queue}"), body)),
    );
    // Every place a password is found is named, not only the first.
    let mut leaks = Vec::new();
    for (place, text) in &places {
        assert!(
            !text.is_empty() || place.starts_with("worker log") || place.starts_with("PostgreSQL"),
            "{place} is empty"
        );
        for secret in &secrets {
            if text.contains(secret.as_str()) {
                leaks.push(format!("a password ({}…) is in {place}", &secret[..4]));
            }
        }
    }
    assert!(leaks.is_empty(), "{}", leaks.join("\n"));

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

    drop(children);
    w.stop().await;
    for host in ["localhost", "127.0.0.1"] {
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP USER IF EXISTS '{admin}'@'{host}'"
        )))
        .execute(&mut my)
        .await;
    }
}
