//! Measured disk usage (decision 0022): a verify and a `usage` task record the disk a site's
//! files and database take, and the measure grows with what the site writes; a link a site
//! planted to another site's directory or to `/` is not followed; a client at its disk
//! quota is refused a new site with nothing written; a `usage` schedule made with the CLI
//! fires and measures.

use berth_contracts::TaskStatus;
use berth_tests::{World, WorldOptions, log_of, row_counts};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::{Duration, Instant};

async fn site(w: &World, uri: &str) -> Value {
    w.get_json(&format!("/api/v1/sites/{uri}")).await
}

/// The site's own directory, `<platform root>/sites/<uri>`.
async fn site_dir(w: &World, uri: &str) -> PathBuf {
    let s = site(w, uri).await;
    let p = w
        .get_json(&format!(
            "/api/v1/platforms/{}",
            s["platform"].as_str().unwrap()
        ))
        .await;
    PathBuf::from(p["root"].as_str().unwrap())
        .join("sites")
        .join(uri)
}

fn bytes(v: &Value, field: &str) -> i64 {
    v[field]
        .as_i64()
        .unwrap_or_else(|| panic!("{field} not measured: {v}"))
}

/// `len` bytes that no file system stores sparsely or compresses much.
fn write_file(path: &std::path::Path, len: usize) {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let data: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(path, data).unwrap();
}

/// `rows` rows of 1000 bytes each into a new table of the site's database, as the site
/// would write them; returns the payload's bytes.
async fn write_rows(db: &str, rows: usize) -> i64 {
    let mut conn = berth_tests::mysql().await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE `{db}`.usage_probe (id INT PRIMARY KEY AUTO_INCREMENT, body VARCHAR(1000))
         ENGINE=InnoDB"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
    for chunk in 0..rows / 100 {
        let values: Vec<String> = (0..100)
            .map(|i| format!("(LEFT(REPEAT(SHA2('{chunk}-{i}', 256), 16), 1000))"))
            .collect();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "INSERT INTO `{db}`.usage_probe (body) VALUES {}",
            values.join(",")
        )))
        .execute(&mut conn)
        .await
        .unwrap();
    }
    (rows * 1000) as i64
}

/// Runs `usage` tasks until the site's recorded database bytes reach `at_least` (InnoDB's
/// figures in information_schema follow its statistics, which it refreshes in the
/// background shortly after a table changed); the site as shown then.
async fn usage_until_db_reaches(w: &World, uri: &str, at_least: i64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let t = w.run_success("usage", uri, json!({})).await;
        let s = site(w, uri).await;
        if bytes(&s, "disk_db_bytes") >= at_least {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "the database part never reached {at_least}: {s}\n{}",
            log_of(&t)
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verify_and_usage_record_the_disk_a_site_takes_and_it_grows_with_what_the_site_writes() {
    let w = World::with_platform(WorldOptions::web(false)).await;
    let uri = w.site_uri("measured");
    w.installed_on_platform(&uri).await;
    let s = site(&w, &uri).await;
    assert!(s["disk_bytes"].is_null(), "not measured yet: {s}");
    let client = format!("/api/v1/clients/{}", s["client"].as_str().unwrap());
    assert_eq!(w.get_json(&client).await["usage"]["sites_unmeasured"], 1);

    // A verify measures both parts, the files on the web server and the database on the
    // db server.
    let t = w.run_success("verify", &uri, json!({})).await;
    let log = log_of(&t);
    assert!(
        log.contains("site-usage") && log.contains("site-db-usage"),
        "{log}"
    );
    let first = site(&w, &uri).await;
    let (files0, db0) = (
        bytes(&first, "disk_files_bytes"),
        bytes(&first, "disk_db_bytes"),
    );
    assert!(files0 > 0 && db0 > 0, "{first}");
    assert_eq!(bytes(&first, "disk_bytes"), files0 + db0, "{first}");
    assert_eq!(first["disk_partial"], false, "{first}");
    assert!(first["disk_measured_at"].is_string(), "{first}");
    let usage = w.get_json(&client).await["usage"].clone();
    assert_eq!(usage["sites_unmeasured"], 0, "{usage}");
    assert_eq!(usage["disk_bytes"], first["disk_bytes"], "{usage}");

    // The site writes 3 MB of files and 2 MB of rows.
    let dir = site_dir(&w, &uri).await;
    const FILES: usize = 3 * 1024 * 1024;
    write_file(&dir.join("files/upload.bin"), FILES);
    let payload = write_rows(first["db_name"].as_str().unwrap(), 2000).await;

    // A verify sees the files at once.
    w.run_success("verify", &uri, json!({})).await;
    let verified = site(&w, &uri).await;
    let grown = bytes(&verified, "disk_files_bytes") - files0;
    assert!(
        grown >= FILES as i64,
        "files grew {grown} < {FILES}: {verified}"
    );

    // A usage task measures without the rest of a verify, and the database part grows by
    // at least the rows' bytes.
    let t = w.run_success("usage", &uri, json!({})).await;
    let actions: Vec<&str> = t
        .steps
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|s| s.action.as_str())
        .collect();
    assert_eq!(actions, ["site-usage", "site-db-usage"], "{}", log_of(&t));
    let measured = usage_until_db_reaches(&w, &uri, db0 + payload).await;
    assert!(
        bytes(&measured, "disk_files_bytes") - files0 >= FILES as i64,
        "{measured}"
    );
    assert_eq!(
        bytes(&measured, "disk_bytes"),
        bytes(&measured, "disk_files_bytes") + bytes(&measured, "disk_db_bytes")
    );
    assert!(bytes(&measured, "disk_bytes") >= files0 + db0 + FILES as i64 + payload);
    let usage = w.get_json(&client).await["usage"].clone();
    assert_eq!(usage["disk_bytes"], measured["disk_bytes"], "{usage}");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn links_a_site_planted_are_not_followed() {
    let w = World::with_platform(WorldOptions::web(false)).await;
    let (a, b) = (w.site_uri("planter"), w.site_uri("victim"));
    w.installed_on_platform(&a).await;
    w.installed_on_platform(&b).await;
    // The other site holds 8 MB.
    let b_dir = site_dir(&w, &b).await;
    write_file(&b_dir.join("files/secret.bin"), 8 * 1024 * 1024);
    w.run_success("usage", &a, json!({})).await;
    let before = bytes(&site(&w, &a).await, "disk_files_bytes");

    let a_files = site_dir(&w, &a).await.join("files");
    std::os::unix::fs::symlink(&b_dir, a_files.join("neighbour")).unwrap();
    std::os::unix::fs::symlink("/", a_files.join("root")).unwrap();
    std::os::unix::fs::symlink(b_dir.join("files/secret.bin"), a_files.join("secret.bin")).unwrap();
    let t = w.run_success("usage", &a, json!({})).await;
    let after = site(&w, &a).await;
    let grown = bytes(&after, "disk_files_bytes") - before;
    // Three links' own blocks (none, or one each): nothing of their targets.
    assert!(
        grown < 64 * 1024,
        "the links' targets were counted: +{grown}\n{}",
        log_of(&t)
    );
    assert_eq!(after["disk_partial"], false, "{after}");
    // The other site's own measure has its 8 MB.
    w.run_success("usage", &b, json!({})).await;
    assert!(bytes(&site(&w, &b).await, "disk_files_bytes") >= 8 * 1024 * 1024);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_at_its_disk_quota_is_refused_a_new_site_writing_nothing() {
    let w = World::with_platform(WorldOptions::web(false)).await;
    let (s, c) = w
        .post_json("/api/v1/clients", &json!({"name": "diskful"}))
        .await;
    assert_eq!(s, 201, "{c}");
    let uri = w.site_uri("full");
    w.installed(json!({"uri": uri, "platform": "platform_d10", "client": "diskful"}))
        .await;
    w.run_success("usage", &uri, json!({})).await;
    let used = bytes(&site(&w, &uri).await, "disk_bytes");
    let client = w.get_json("/api/v1/clients/diskful").await;
    assert_eq!(client["usage"]["disk_bytes"], used, "{client}");

    // The limit is exactly what is used: full.
    let patch = |limit: i64| {
        w.http
            .patch(format!("{}/api/v1/clients/diskful", w.api))
            .bearer_auth(&w.token)
            .json(&json!({"max_disk_bytes": limit}))
            .send()
    };
    assert_eq!(patch(used).await.unwrap().status(), 200);
    let before = row_counts(&w.store).await.unwrap();
    let over = w.site_uri("one-more");
    let (s, p) = w
        .post_json(
            "/api/v1/sites",
            &json!({"uri": over, "platform": "platform_d10", "client": "diskful"}),
        )
        .await;
    berth_tests::assert_quota_exceeded(s, &p, "max_disk_bytes", used, used);
    assert_eq!(
        before,
        row_counts(&w.store).await.unwrap(),
        "a refused site wrote something"
    );
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM sites WHERE uri = $1")
        .bind(&over)
        .fetch_one(&w.store.pool)
        .await
        .unwrap();
    assert_eq!(n, 0);

    // One byte of room: the same request is accepted.
    assert_eq!(patch(used + 1).await.unwrap().status(), 200);
    let (s, p) = w
        .post_json(
            "/api/v1/sites",
            &json!({"uri": over, "platform": "platform_d10", "client": "diskful"}),
        )
        .await;
    assert_eq!(s, 201, "{p}");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_usage_schedule_made_with_the_cli_measures_every_site() {
    let w = World::with_platform(WorldOptions::web(false)).await;
    let uri = w.site_uri("nightly");
    w.installed_on_platform(&uri).await;
    assert!(site(&w, &uri).await["disk_bytes"].is_null());
    w.berth_ok(&[
        "schedules",
        "create",
        "usage-often",
        "--scope",
        "all",
        "--cron",
        "*/3 * * * * *",
        "--job",
        "usage",
        "--window",
        "3",
        "--spread",
        "1",
    ])
    .await;
    let (mut scheduler, _) = w.spawn_berth("scheduler", &[("BERTH_SCHEDULER_TICK_MS", "100")]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let task = loop {
        let done: Option<(uuid::Uuid,)> = sqlx::query_as(
            "SELECT id FROM tasks WHERE requested_by = 'schedule:usage-often'
             AND type = 'usage' AND target = $1 AND status = 'success' LIMIT 1",
        )
        .bind(&uri)
        .fetch_optional(&w.store.pool)
        .await
        .unwrap();
        if let Some((id,)) = done {
            break id;
        }
        assert!(
            Instant::now() < deadline,
            "no scheduled usage task succeeded"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    scheduler.kill().unwrap();
    let _ = scheduler.wait();
    let t = w.task(task).await.unwrap();
    assert_eq!(t.status, TaskStatus::Success, "{}", log_of(&t));
    let s = site(&w, &uri).await;
    assert!(
        bytes(&s, "disk_files_bytes") > 0 && bytes(&s, "disk_db_bytes") > 0,
        "{s}"
    );
    let shown = w.get_json("/api/v1/schedules/usage-often").await;
    assert_eq!(shown["job"]["kind"], "usage", "{shown}");
    w.stop().await;
}
