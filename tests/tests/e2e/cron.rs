//! Site cron as a task, against the real servers: `drush cron` and cron over HTTP through
//! the site's own vhost (nginx and php-fpm) with the site's cron key, each seen in the
//! site's own database (the fixture's `berth_fixture_cron_runs` counter and Drupal's
//! `cron_last`); a wrong key refused by the site; a failing cron failing its task with a
//! log saying why, shown as the site's last cron; the key in no API answer, task log, step
//! or outbox message; a disabled site's cron and a second cron refused.

use berth_contracts::TaskStatus;
use berth_secrets::SecretKey;
use berth_tests::fixtures::PLATFORM;
use berth_tests::{World, WorldOptions, failed_at, log_of, mysql};
use serde_json::{Value, json};
use std::time::Duration;

/// A value of the site's Drupal state (8+) or variables (7), PHP-serialised, if set.
async fn stored(db: &str, d7: bool, name: &str) -> Option<String> {
    let sql = if d7 {
        format!("SELECT value FROM `{db}`.variable WHERE name = ?")
    } else {
        format!("SELECT value FROM `{db}`.key_value WHERE collection = 'state' AND name = ?")
    };
    sqlx::query_scalar::<_, Vec<u8>>(sqlx::AssertSqlSafe(sql))
        .bind(name)
        .fetch_optional(&mut mysql().await)
        .await
        .unwrap()
        .map(|v| String::from_utf8(v).unwrap())
}

/// How many times cron ran on the site, by the fixture's counter (`i:<n>;`).
async fn cron_runs(db: &str, d7: bool) -> i64 {
    stored(db, d7, "berth_fixture_cron_runs")
        .await
        .map_or(0, |v| {
            v.trim_start_matches("i:")
                .trim_end_matches(';')
                .parse()
                .unwrap()
        })
}

/// Drupal's `cron_last` on the site, seconds since the epoch.
async fn cron_last(db: &str, d7: bool) -> Option<i64> {
    let name = if d7 { "cron_last" } else { "system.cron_last" };
    stored(db, d7, name).await.map(|v| {
        v.trim_start_matches("i:")
            .trim_end_matches(';')
            .parse()
            .unwrap()
    })
}

/// The cron key the site holds (`s:<len>:"<key>";`).
async fn site_key(db: &str, d7: bool) -> String {
    let name = if d7 { "cron_key" } else { "system.cron_key" };
    let v = stored(db, d7, name)
        .await
        .expect("the site holds a cron key");
    v.split('"').nth(1).unwrap().to_string()
}

/// berth's key for the site, opened from PostgreSQL with the world's cluster key.
async fn berth_key(w: &World, uri: &str) -> String {
    let (sealed,): (Option<String>,) =
        sqlx::query_as("SELECT cron_key_sealed FROM sites WHERE uri = $1")
            .bind(uri)
            .fetch_one(&w.store.pool)
            .await
            .unwrap();
    SecretKey::from_hex(&w.secret_hex)
        .unwrap()
        .open(&sealed.expect("the site has a cron key"))
        .unwrap()
}

fn db_of(site: &Value) -> String {
    site["db_name"].as_str().unwrap().to_string()
}

/// A platform of the fixture `fixture` whose sites run cron over HTTP, verified.
async fn http_platform(w: &World, name: &str, fixture: &str) {
    let root = w.copy_fixture(fixture, name).unwrap();
    let (status, v) = w
        .post_json(
            "/api/v1/platforms",
            &json!({"name": name, "root": root.display().to_string(), "cron_method": "http"}),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["cron_method"], "http", "{v}");
    let t = w.finish(&v["task"]).await;
    assert_eq!(t.status, TaskStatus::Success, "{}", log_of(&t));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn drush_cron_runs_in_the_sites_database_and_is_shown_on_the_site() {
    let w = World::with_platform(WorldOptions::web(false)).await;
    let uri = w.site_uri("cron");
    let site = w.installed_on_platform(&uri).await;
    let db = db_of(&site);
    assert_eq!(
        w.get_json(&format!("/api/v1/platforms/{PLATFORM}")).await["cron_method"],
        "drush"
    );
    // The install gave the site berth's key, where Drupal 8+ keeps it.
    let key = berth_key(&w, &uri).await;
    assert_eq!(site_key(&db, false).await, key);
    assert_eq!(key.len(), 32);
    assert_eq!(cron_runs(&db, false).await, 0);
    assert!(site.get("last_cron").is_none(), "{site}");

    let before = chrono::Utc::now().timestamp();
    let t = w.run_success("cron", &uri, json!({})).await;
    assert_eq!(cron_runs(&db, false).await, 1);
    assert!(cron_last(&db, false).await.unwrap() >= before);
    assert!(log_of(&t).contains("drush cron ran"), "{}", log_of(&t));
    let site = w.get_json(&format!("/api/v1/sites/{uri}")).await;
    let last = &site["last_cron"];
    assert_eq!(last["result"], "success", "{site}");
    assert_eq!(last["task"], t.id.to_string());
    assert!(last["duration_ms"].as_i64().unwrap() >= 0);
    assert!(last["started_at"].is_string());
    // What one cron run keeps in PostgreSQL (decision 0016 quotes it).
    let (rows, bytes): (i64, i64) = sqlx::query_as(
        "SELECT count(*), COALESCE(sum(b), 0)::bigint FROM (
           SELECT pg_column_size(t.*) AS b FROM tasks t WHERE id = $1
           UNION ALL SELECT pg_column_size(s.*) FROM steps s WHERE task_id = $1
           UNION ALL SELECT pg_column_size(l.*) FROM task_log l WHERE task_id = $1
           UNION ALL SELECT pg_column_size(o.*) FROM outbox o WHERE task_id = $1) x",
    )
    .bind(t.id)
    .fetch_one(&w.store.pool)
    .await
    .unwrap();
    eprintln!("one drush cron run: {rows} rows, {bytes} bytes of row data");

    // The CLI: `berth sites cron` runs it again, `berth sites show` tells the last run.
    w.berth_ok(&["sites", "cron", &uri, "--follow"]).await;
    assert_eq!(cron_runs(&db, false).await, 2);
    let shown = w.berth_ok(&["sites", "show", &uri]).await;
    assert!(
        shown.contains("last cron") && shown.contains("success"),
        "{shown}"
    );

    // A second cron while one waits is refused like any second task.
    w.stop_workers();
    let first = w.create_task("cron", &uri, json!({})).await.unwrap();
    let (status, v) = w
        .post_json("/api/v1/tasks", &json!({"type": "cron", "target": uri}))
        .await;
    assert_eq!(status, 409, "{v}");
    assert!(
        v["detail"].as_str().unwrap().contains(&format!(
            "cron task queued or running already: {}",
            first.id
        )),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http_cron_goes_through_the_sites_vhost_with_its_key_and_the_key_stays_secret() {
    let w = World::with_server(WorldOptions::web(false)).await;
    http_platform(&w, "platform_web10", "drupal10").await;
    // The other from the CLI.
    let root7 = w.copy_fixture("drupal7", "platform_web7").unwrap();
    let root7 = root7.display().to_string();
    let args = [
        "platforms",
        "create",
        "--name",
        "platform_web7",
        "--root",
        &root7,
    ];
    w.berth_ok(&[&args[..], &["--cron-method", "http", "--follow"]].concat())
        .await;
    let shown = w.berth_ok(&["platforms", "show", "platform_web7"]).await;
    assert!(
        shown.contains("cron method") && shown.contains("http"),
        "{shown}"
    );
    let uri10 = w.site_uri("http10");
    let uri7 = w.site_uri("http7");
    let db10 = db_of(
        &w.installed(json!({"uri": uri10, "platform": "platform_web10"}))
            .await,
    );
    let db7 = db_of(
        &w.installed(json!({"uri": uri7, "platform": "platform_web7"}))
            .await,
    );
    let key10 = berth_key(&w, &uri10).await;
    let key7 = berth_key(&w, &uri7).await;
    assert_eq!(site_key(&db10, false).await, key10);
    assert_eq!(site_key(&db7, true).await, key7);
    assert_ne!(key10, key7, "every site has its own key");

    // A wrong or missing key, or another site's, is refused by the site and runs nothing.
    for (uri, path) in [
        (&uri10, "/cron/0123456789abcdef0123456789abcdef".to_string()),
        (&uri10, format!("/cron/{key7}")),
        (&uri7, "/cron.php".to_string()),
        (&uri7, format!("/cron.php?cron_key={key10}")),
    ] {
        let (status, _, _) = w.http_get(uri, &path).unwrap();
        assert_eq!(status, 403, "{uri}{path}");
    }
    assert_eq!(cron_runs(&db10, false).await, 0);
    assert_eq!(cron_runs(&db7, true).await, 0);

    // What nginx logs from here on is berth's (above: the test's probes, keys and all).
    let logged_before = w.web.as_ref().unwrap().access_log().len();
    let mut tasks = Vec::new();
    for (uri, db, d7, answer) in [
        (&uri10, &db10, false, "answered 204"),
        (&uri7, &db7, true, "answered 200"),
    ] {
        let before = chrono::Utc::now().timestamp();
        let t = w.run_success("cron", uri, json!({})).await;
        assert!(log_of(&t).contains(answer), "{}", log_of(&t));
        assert_eq!(cron_runs(db, d7).await, 1, "{uri}");
        assert!(cron_last(db, d7).await.unwrap() >= before);
        tasks.push(t.id);
    }

    // The keys appear in no API answer, task (steps, logs), nor anything PostgreSQL holds
    // as text: task logs, steps, outbox messages, sites (the key is sealed there).
    let mut answers = vec![
        w.get_json(&format!("/api/v1/sites/{uri10}")).await,
        w.get_json(&format!("/api/v1/sites/{uri7}")).await,
        w.get_json("/api/v1/sites").await,
        w.get_json("/api/v1/platforms/platform_web10").await,
    ];
    for id in &tasks {
        answers.push(w.get_json(&format!("/api/v1/tasks/{id}")).await);
        answers.push(w.get_json(&format!("/api/v1/tasks/{id}/log")).await);
    }
    answers.push(w.get_json("/api/v1/tasks?limit=100").await);
    let text: Vec<String> = sqlx::query_scalar(
        "SELECT message FROM task_log UNION ALL SELECT s::text FROM steps s
         UNION ALL SELECT o::text FROM outbox o UNION ALL SELECT t::text FROM tasks t
         UNION ALL SELECT s::text FROM sites s",
    )
    .fetch_all(&w.store.pool)
    .await
    .unwrap();
    let all = format!("{answers:?}\n{}", text.join("\n"));
    assert!(all.contains("site-cron-key") && all.contains("answered 204"));
    for key in [&key10, &key7] {
        assert!(!all.contains(key.as_str()), "the cron key leaked");
    }
    // Nor in nginx's access log, which logs berth's cron requests (the key travels in a
    // header, never in the URL nginx logs).
    let access = w.web.as_ref().unwrap().access_log()[logged_before..].to_string();
    for (uri, line) in [
        (&uri10, "204 \"GET /.berth-cron/8 HTTP/1.1\""),
        (&uri7, "200 \"GET /.berth-cron/7 HTTP/1.1\""),
    ] {
        assert!(
            access.contains(&format!("{uri} {line}")),
            "nginx did not log berth's cron request of {uri}: {access}"
        );
    }
    for key in [&key10, &key7] {
        assert!(
            !access.contains(key.as_str()),
            "the cron key is in nginx's access log: {access}"
        );
    }

    // A cron that fails in the site's PHP is a 500: the task fails saying so.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO `{db7}`.variable (name, value) VALUES ('berth_fixture_cron_fail', 'i:1;')"
    )))
    .execute(&mut mysql().await)
    .await
    .unwrap();
    let t = w.run("cron", &uri7, json!({})).await;
    failed_at(&t, "site-cron", "answered 500 Internal Server Error");
    assert!(!log_of(&t).contains(key7.as_str()));
    // nginx's error log names the request of each entry (here, the fixture's 204 with a
    // body): berth's, without the key.
    let errors = w.web.as_ref().unwrap().error_log();
    for key in [&key10, &key7] {
        assert!(
            !errors.contains(key.as_str()),
            "the cron key is in nginx's error log: {errors}"
        );
    }
    assert_eq!(cron_runs(&db7, true).await, 1);
    let site = w.get_json(&format!("/api/v1/sites/{uri7}")).await;
    assert_eq!(site["last_cron"]["result"], "failed", "{site}");

    // A vhost written before berth's cron location (as after an upgrade): cron still runs,
    // by Drupal's URL, and the task is a warning that says to verify the site; a verify
    // rewrites the vhost and the next cron is clean.
    let vhost = w
        .dir
        .join("config/server_master/nginx/vhost.d")
        .join(format!("{uri10}.conf"));
    let text = std::fs::read_to_string(&vhost).unwrap();
    let (from, to) = (
        text.find("    # berth's cron over HTTP").unwrap(),
        text.find("    # Regular expressions").unwrap(),
    );
    std::fs::write(&vhost, format!("{}{}", &text[..from], &text[to..])).unwrap();
    reload_nginx(&w, &uri10).await;
    let t = w.run("cron", &uri10, json!({})).await;
    assert_eq!(t.status, TaskStatus::Warning, "{}", log_of(&t));
    assert!(
        log_of(&t).contains("predates berth's cron location")
            && log_of(&t).contains("verify the site"),
        "{}",
        log_of(&t)
    );
    assert!(!log_of(&t).contains(key10.as_str()));
    assert_eq!(cron_runs(&db10, false).await, 2);
    w.run_success("verify", &uri10, json!({})).await;
    let t = w.run_success("cron", &uri10, json!({})).await;
    assert!(!log_of(&t).contains("predates"), "{}", log_of(&t));
    assert_eq!(cron_runs(&db10, false).await, 3);
}

/// Reloads the test's nginx and waits until `uri`'s vhost answers without berth's cron
/// location (a reload replaces the workers in the background).
async fn reload_nginx(w: &World, uri: &str) {
    let conf = w.nginx_conf.display().to_string();
    let out = std::process::Command::new("nginx")
        .args(["-c", &conf, "-s", "reload"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, _, headers) = w.http_get(uri, "/.berth-cron/8").unwrap();
        if !headers.iter().any(|(name, _)| name == "x-berth-cron") {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "nginx did not reload");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
