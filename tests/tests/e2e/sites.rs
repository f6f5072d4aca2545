//! Platforms and sites on the real servers: MariaDB, nginx with php-fpm, BIND. A site is
//! installed on a fixture platform and then requested over HTTP and asked for over DNS.

use berth_contracts::TaskStatus;
use berth_tests::TASK_WAIT as WAIT;
use berth_tests::{World, WorldOptions, row_counts};
use serde_json::{Value, json};
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_site_serves_its_own_database_over_http_and_answers_dns() {
    let w = World::with_server(WorldOptions::web(true)).await;
    let platform = w.add_platform("platform_d10", "drupal10").await.unwrap();
    assert_eq!(platform["status"], "verified", "{platform}");
    assert_eq!(platform["drupal_major"], 10);

    // The package registry of the platform, from its verify.
    let packages = w.get_json("/api/v1/platforms/platform_d10/packages").await;
    let find = |name: &str| {
        packages
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .cloned()
    };
    assert_eq!(find("drupal").unwrap()["type"], "core");
    let standard = find("standard").expect("profile standard");
    assert_eq!(standard["type"], "profile");
    assert!(
        standard["languages"]
            .as_array()
            .unwrap()
            .contains(&json!("de"))
    );
    assert!(find("node").unwrap()["schema_version"].as_i64().unwrap() > 8000);
    assert!(find("berth_hidden").is_none(), "hidden modules are skipped");

    let uri = format!("www.{}.test", w.id);
    let alias = format!("shop.{}.test", w.id);
    let (site, task) = w
        .install_site(json!({
            "uri": uri, "platform": "platform_d10", "profile": "standard", "language": "de",
            "aliases": [alias], "client_email": "owner@example.com"
        }))
        .await
        .unwrap();
    assert_eq!(task.status, TaskStatus::Success, "{task:#?}");
    let actions: Vec<_> = task
        .steps
        .as_ref()
        .unwrap()
        .iter()
        .map(|s| s.action.as_str())
        .collect();
    assert_eq!(
        actions,
        [
            "site-db-create",
            "site-files",
            "site-install",
            "site-cron-key",
            "site-vhost",
            "site-records",
            "site-packages"
        ]
    );
    let db_name = site["db_name"].as_str().unwrap().to_string();

    // Over HTTP, by name and by alias: a page built from the site's own database.
    let (status, body) = w.page(&uri);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&format!("<h1>{uri}</h1>")), "{body}");
    assert!(
        body.contains(&format!("Served from database {db_name}")),
        "{body}"
    );
    let (status, body) = w.page(&alias);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&format!("<h1>{uri}</h1>")), "{body}");

    // /files/… is the site's files directory.
    let files = w
        .dir
        .join("platforms/platform_d10/sites")
        .join(&uri)
        .join("files");
    std::fs::write(files.join("hello.txt"), "hello from files\n").unwrap();
    let (status, body, _) = w.http_get(&uri, "/files/hello.txt").unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, "hello from files\n");
    let (status, _, _) = w
        .http_get(&uri, &format!("/sites/{uri}/settings.php"))
        .unwrap();
    assert_ne!(status, 200, "settings.php is never served");

    // The password lives in the vhost only: not in settings.php, not in the API.
    let vhost = std::fs::read_to_string(
        w.dir
            .join("config/server_master/nginx/vhost.d")
            .join(format!("{uri}.conf")),
    )
    .unwrap();
    let password = vhost
        .lines()
        .find_map(|l| l.trim().strip_prefix("fastcgi_param db_passwd "))
        .unwrap()
        .trim_end_matches(';')
        .to_string();
    assert_eq!(password.len(), 32);
    let root = w.dir.join("platforms/platform_d10");
    let settings_path = root.join("sites").join(&uri).join("settings.php");
    let settings = std::fs::read_to_string(&settings_path).unwrap();
    assert!(
        !settings.contains(&password),
        "settings.php holds the password"
    );
    assert!(settings.contains("$_SERVER['db_passwd']"));
    let meta = std::fs::metadata(&settings_path).unwrap();
    assert_eq!(
        meta.mode() & 0o777,
        0o640,
        "settings.php readable by its group only"
    );
    let shown = w.get_json(&format!("/api/v1/sites/{uri}")).await;
    let task_json = w.get_json(&format!("/api/v1/tasks/{}", task.id)).await;
    for answer in [&shown, &task_json] {
        assert!(
            !answer.to_string().contains(&password),
            "API answer leaks the password"
        );
    }
    assert_eq!(shown["status"], "enabled");
    let link = shown["login_link"]
        .as_str()
        .expect("a login link after install");
    assert!(
        link.starts_with(&format!("http://{uri}/user/reset/1/")),
        "{link}"
    );

    // DNS: the site's A record and the alias's CNAME, from the real named.
    let named = w.named.as_ref().unwrap();
    assert_eq!(named.dig(&uri, "A").unwrap(), ["127.0.0.1"]);
    assert_eq!(named.dig(&alias, "CNAME").unwrap(), [format!("{uri}.")]);

    // The site's package registry: its enabled modules with their installed schema.
    let site_packages = w.get_json(&format!("/api/v1/sites/{uri}/packages")).await;
    let node = site_packages
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "node")
        .expect("node enabled on the site");
    assert!(node["schema_version"].as_i64().unwrap() > 8000, "{node}");

    // A verify goes through again and keeps serving.
    w.run_success("verify", &uri, json!({})).await;
    assert_eq!(w.http_get(&uri, "/").unwrap().0, 200);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn aliases_redirect_disable_enable_and_a_login_link_works_once() {
    let w = World::with_server(WorldOptions::web(false)).await;
    w.add_platform("platform_d7", "drupal7").await.unwrap();
    let uri = format!("{}.example.test", w.id);
    let alias = format!("old-{}.example.test", w.id);
    let (_, task) = w
        .install_site(json!({
            "uri": uri, "platform": "platform_d7", "aliases": [alias], "redirection": true
        }))
        .await
        .unwrap();
    assert_eq!(task.status, TaskStatus::Success, "{task:#?}");
    let (status, body) = w.page(&uri);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("on Drupal 7"), "{body}");
    // With redirection, the alias answers with a 301 to the main domain.
    let (status, _, headers) = w.http_get(&alias, "/node/1?x=1").unwrap();
    assert_eq!(status, 301);
    let location = headers
        .iter()
        .find(|(k, _)| k == "location")
        .map(|(_, v)| v.clone())
        .unwrap();
    assert_eq!(location, format!("http://{uri}/node/1?x=1"));

    // Redirection off: the alias serves the site itself.
    let r = w
        .http
        .patch(w.url(&format!("/api/v1/sites/{uri}")))
        .bearer_auth(&w.token)
        .json(&json!({"redirection": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let changed: Value = r.json().await.unwrap();
    let t = w
        .wait_finished(changed["task"].as_str().unwrap().parse().unwrap(), WAIT)
        .await
        .unwrap();
    assert_eq!(t.status, TaskStatus::Success, "{t:#?}");
    let (status, body) = w.page(&alias);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&format!("<h1>{uri}</h1>")));

    // Disable: the "site disabled" page; enable: the site again.
    w.run_success("disable", &uri, json!({})).await;
    // As Aegir does, a disable takes a backup first (weighed by retention as any other).
    let backups = w.get_json(&format!("/api/v1/sites/{uri}/backups")).await;
    assert_eq!(
        backups[0]["description"], "Generated before being disabled",
        "{backups}"
    );
    let (status, body) = w.page(&uri);
    assert_eq!(status, 503);
    assert!(body.contains("Site disabled"), "{body}");
    assert_eq!(
        w.get_json(&format!("/api/v1/sites/{uri}")).await["status"],
        "disabled"
    );
    // A disabled site cannot be disabled again, nor reset.
    let r = w
        .post(
            "/api/v1/tasks",
            &json!({"type": "login-reset", "target": uri}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    w.run_success("enable", &uri, json!({})).await;
    assert_eq!(w.http_get(&uri, "/").unwrap().0, 200);

    // Login reset: a one-time link that works once.
    w.run_success("login-reset", &uri, json!({})).await;
    let site = w.get_json(&format!("/api/v1/sites/{uri}")).await;
    let link = site["login_link"].as_str().unwrap();
    let path = link.strip_prefix(&format!("http://{uri}")).unwrap();
    let (status, body, _) = w.http_get(&uri, path).unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Logged in"), "{body}");
    let (status, _, _) = w.http_get(&uri, path).unwrap();
    assert_eq!(status, 403, "a one-time link works once");
    let site = w.get_json(&format!("/api/v1/sites/{uri}")).await;
    assert!(
        site.get("login_link").is_none(),
        "a used link is no longer shown: {site}"
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_installer_leaves_nothing_behind() {
    let w = World::with_server(WorldOptions::web(true)).await;
    w.add_platform("platform_d10", "drupal10").await.unwrap();
    let uri = format!("broken.{}.test", w.id);
    let alias = format!("alias.{}.test", w.id);
    let (site, task) = w
        .install_site(json!({
            "uri": uri, "platform": "platform_d10", "profile": "broken", "aliases": [alias]
        }))
        .await
        .unwrap();
    assert_eq!(task.status, TaskStatus::Error, "{task:#?}");
    let log = berth_tests::log_of(&task);
    assert!(log.contains("drush site:install failed"), "{log}");
    assert!(log.contains("taking back"), "{log}");
    let db = site["db_name"].as_str().unwrap();
    let user = site["db_user"].as_str().unwrap();
    assert!(
        !berth_tests::mysql_db_exists(db).await,
        "database {db} left behind"
    );
    assert!(
        !berth_tests::mysql_user_exists(user).await,
        "user {user} left behind"
    );
    let root = w.dir.join("platforms/platform_d10");
    assert!(
        !root.join("sites").join(&uri).exists(),
        "site directory left"
    );
    assert!(!root.join("sites").join(&alias).exists(), "alias link left");
    assert!(
        !w.dir
            .join("config/server_master/nginx/vhost.d")
            .join(format!("{uri}.conf"))
            .exists()
    );
    let named = w.named.as_ref().unwrap();
    assert!(named.dig(&uri, "A").unwrap().is_empty());
    assert_eq!(
        w.get_json(&format!("/api/v1/sites/{uri}")).await["status"],
        "failed"
    );
    let (status, _) = w.page(&uri);
    assert_eq!(status, 404, "nothing serves the failed site");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_site_and_platform_input_gets_problem_json_and_creates_nothing() {
    let w = World::with_server(WorldOptions::web(false)).await;
    w.add_platform("platform_d10", "drupal10").await.unwrap();
    w.add_platform("platform_locked", "drupal10").await.unwrap();
    let r = w
        .post("/api/v1/platforms/platform_locked/lock", &json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // One site exists, to be duplicated.
    let first = format!("one.{}.test", w.id);
    let r = w
        .post(
            "/api/v1/sites",
            &json!({"uri": first, "platform": "platform_d10"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.unwrap();
    let t = w
        .wait_finished(created["task"].as_str().unwrap().parse().unwrap(), WAIT)
        .await
        .unwrap();
    assert_eq!(t.status, TaskStatus::Success, "{t:#?}");

    let long_label = format!("{}.test", "a".repeat(64));
    let cases: Vec<(Value, u16, &str)> = vec![
        (
            json!({"uri": "a..b.test", "platform": "platform_d10"}),
            422,
            "empty label",
        ),
        (
            json!({"uri": "a/b.test", "platform": "platform_d10"}),
            422,
            "lower-case",
        ),
        (
            json!({"uri": "../etc", "platform": "platform_d10"}),
            422,
            "empty label",
        ),
        (
            json!({"uri": "127.0.0.1", "platform": "platform_d10"}),
            422,
            "IP address",
        ),
        (
            json!({"uri": "localhost", "platform": "platform_d10"}),
            422,
            "single label",
        ),
        (
            json!({"uri": ".lead.test", "platform": "platform_d10"}),
            422,
            "empty label",
        ),
        (
            json!({"uri": long_label, "platform": "platform_d10"}),
            422,
            "63",
        ),
        (
            json!({"uri": first.to_uppercase(), "platform": "platform_d10"}),
            409,
            "is the uri of site",
        ),
        (
            json!({"uri": "x.test", "platform": "platform_nope"}),
            422,
            "does not exist",
        ),
        (
            json!({"uri": "x.test", "platform": "platform_locked"}),
            409,
            "locked",
        ),
        (
            json!({"uri": "x.test", "platform": "platform_d10", "profile": "nope"}),
            422,
            "no profile",
        ),
        (
            json!({"uri": "x.test", "platform": "platform_d10", "language": "xx"}),
            422,
            "not offered",
        ),
        (
            json!({"uri": "x.test", "platform": "platform_d10", "aliases": ["x.test"]}),
            422,
            "own uri",
        ),
        (
            json!({"uri": "x.test", "platform": "platform_d10", "aliases": [first]}),
            409,
            "is the uri of site",
        ),
        (
            json!({"uri": "x.test", "platform": "platform_d10", "db_server": "server_none"}),
            422,
            "does not exist",
        ),
        (
            json!({"uri": "x.test", "platform": "platform_d10", "bogus": 1}),
            422,
            "bogus",
        ),
    ];
    for (body, code, says) in cases {
        let before = row_counts(&w.store).await.unwrap();
        let r = w.post("/api/v1/sites", &body).send().await.unwrap();
        assert_eq!(r.status().as_u16(), code, "{body}");
        assert_eq!(
            r.headers()["content-type"],
            "application/problem+json",
            "{body}"
        );
        let p: Value = r.json().await.unwrap();
        assert!(p["detail"].as_str().unwrap().contains(says), "{body}: {p}");
        assert_eq!(row_counts(&w.store).await.unwrap(), before, "{body}");
    }
    // Platforms: bad names and roots, a duplicate, a delete refused while it has sites.
    for (body, code) in [
        (json!({"name": "d10", "root": "/srv/x"}), 422),
        (json!({"name": "platform_x", "root": "relative/path"}), 422),
        (json!({"name": "platform_x", "root": "/srv/../etc"}), 422),
        (json!({"name": "platform_d10", "root": "/srv/other"}), 409),
        (
            json!({"name": "platform_x", "root": "/srv/x", "web_server": "server_none"}),
            422,
        ),
    ] {
        let before = row_counts(&w.store).await.unwrap();
        let r = w.post("/api/v1/platforms", &body).send().await.unwrap();
        assert_eq!(r.status().as_u16(), code, "{body}");
        assert_eq!(row_counts(&w.store).await.unwrap(), before, "{body}");
    }
    let r = w
        .http
        .delete(w.url("/api/v1/platforms/platform_d10"))
        .bearer_auth(&w.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let r = w
        .http
        .delete(w.url("/api/v1/platforms/platform_locked"))
        .bearer_auth(&w.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_installs_in_a_burst_share_reloads() {
    let w = World::with_platform(WorldOptions {
        http_concurrency: Some(64),
        ..WorldOptions::web(false)
    })
    .await;
    let n = 50;
    let mut tasks = Vec::new();
    for i in 0..n {
        let r = w
            .post(
                "/api/v1/sites",
                &json!({"uri": format!("s{i}.{}.test", w.id), "platform": "platform_d10"}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let v: Value = r.json().await.unwrap();
        tasks.push(v["task"].as_str().unwrap().parse::<uuid::Uuid>().unwrap());
    }
    let mut reloads = std::collections::BTreeSet::new();
    // Per reload: installs naming it, changes it says it carried.
    let mut carried = std::collections::BTreeMap::<u64, (u64, u64)>::new();
    for (i, id) in tasks.iter().enumerate() {
        let t = w
            .wait_finished(*id, Duration::from_secs(300))
            .await
            .unwrap();
        assert_eq!(t.status, TaskStatus::Success, "{t:#?}");
        let log = berth_tests::log_of(&t);
        // "reload #<n> carried <k> change(s)"
        let said = log
            .split("reload #")
            .nth(1)
            .expect("the vhost step says which reload carried it");
        let words: Vec<&str> = said.split_whitespace().collect();
        let reload: u64 = words[0].parse().unwrap();
        assert_eq!(words[1], "carried", "{said}");
        let k: u64 = words[2].parse().unwrap();
        let entry = carried.entry(reload).or_insert((0u64, k));
        assert_eq!(entry.1, k, "reload #{reload} said two sizes");
        entry.0 += 1;
        reloads.insert(reload);
        let (status, body, _) = w.http_get(&format!("s{i}.{}.test", w.id), "/").unwrap();
        assert_eq!(status, 200, "{body}");
    }
    // How few reloads a burst needs depends on the machine's speed (`berth-bench sites`
    // and `berth-bench reloads` measure it); what holds everywhere: each reload says how many
    // changes it carried, and the installs naming it are among them; and fifty changes that
    // come together do not each get a reload of their own.
    println!("{n} installs shared {} nginx reloads", reloads.len());
    for (reload, (named, carried)) in &carried {
        assert!(
            named <= carried,
            "reload #{reload} carried {carried} change(s) but {named} installs name it"
        );
    }
    assert!(
        carried.values().any(|(named, _)| *named > 1),
        "no reload was shared: {carried:?}"
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_platform_verify_fixes_permissions_and_finds_sites_to_import() {
    use std::os::unix::fs::PermissionsExt;
    let w = World::with_server(WorldOptions::default()).await;
    let root = w.copy_fixture("drupal7", "platform_d7").unwrap();
    let legacy = root.join("sites/legacy.example.com");
    std::fs::create_dir_all(legacy.join("files")).unwrap();
    std::fs::write(legacy.join("settings.php"), "<?php\n").unwrap();
    let mode = |p: &std::path::Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
    };
    mode(&legacy.join("files"), 0o777);
    mode(&legacy.join("settings.php"), 0o666);
    mode(&root.join("sites/all"), 0o700);
    let r = w
        .post(
            "/api/v1/platforms",
            &json!({"name": "platform_d7", "root": root.display().to_string()}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["status"], "queued");
    let t = w
        .wait_finished(p["task"].as_str().unwrap().parse().unwrap(), WAIT)
        .await
        .unwrap();
    assert_eq!(t.status, TaskStatus::Success, "{t:#?}");
    let log = berth_tests::log_of(&t);
    assert!(log.contains("Drupal 7.98"), "{log}");
    let p = w.get_json("/api/v1/platforms/platform_d7").await;
    assert_eq!(p["status"], "verified");
    assert_eq!(p["core_version"], "7.98");
    assert_eq!(p["found_sites"], json!(["legacy.example.com"]));
    let m = |path: &std::path::Path| std::fs::metadata(path).unwrap().mode() & 0o7777;
    assert_eq!(m(&root.join("sites/all")), 0o2775, "{log}");
    assert_eq!(m(&legacy.join("files")), 0o2770, "{log}");
    assert_eq!(m(&legacy.join("settings.php")), 0o640, "{log}");
    let views = w.get_json("/api/v1/platforms/platform_d7/packages").await;
    let views = views
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "views")
        .cloned()
        .unwrap();
    assert_eq!(views["version"], "7.x-3.29");
    assert_eq!(views["schema_version"], 7302);

    // A platform whose codebase is missing fails its verify and says why.
    let r = w
        .post(
            "/api/v1/platforms",
            &json!({"name": "platform_gone", "root": "/nonexistent/berth/platform"}),
        )
        .send()
        .await
        .unwrap();
    let p: Value = r.json().await.unwrap();
    let t = w
        .wait_finished(p["task"].as_str().unwrap().parse().unwrap(), WAIT)
        .await
        .unwrap();
    assert_eq!(t.status, TaskStatus::Error);
    assert!(
        berth_tests::log_of(&t).contains("is not a directory"),
        "{}",
        berth_tests::log_of(&t)
    );
    assert_eq!(
        w.get_json("/api/v1/platforms/platform_gone").await["status"],
        "failed"
    );
    // Lock, unlock, delete. A locked platform takes no new site; unlocked, it does again.
    let site = json!({"uri": format!("lk.{}.test", w.id), "platform": "platform_d7"});
    let locked: Value = w
        .post("/api/v1/platforms/platform_d7/lock", &json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(locked["locked"], true);
    assert_eq!(
        w.get_json("/api/v1/platforms/platform_d7").await["locked"],
        true
    );
    let before = berth_tests::row_counts(&w.store).await.unwrap();
    let r = w.post("/api/v1/sites", &site).send().await.unwrap();
    assert_eq!(r.status(), 409);
    let p: Value = r.json().await.unwrap();
    assert!(p["detail"].as_str().unwrap().contains("locked"), "{p}");
    assert_eq!(berth_tests::row_counts(&w.store).await.unwrap(), before);
    let unlocked: Value = w
        .post("/api/v1/platforms/platform_d7/unlock", &json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(unlocked["locked"], false);
    assert_eq!(
        w.get_json("/api/v1/platforms/platform_d7").await["locked"],
        false
    );
    let r = w.post("/api/v1/sites", &site).send().await.unwrap();
    assert_eq!(r.status(), 201, "an unlocked platform takes sites again");
    let v: Value = r.json().await.unwrap();
    w.wait_finished(v["task"].as_str().unwrap().parse().unwrap(), WAIT)
        .await
        .unwrap();
    let r = w
        .http
        .delete(w.url("/api/v1/platforms/platform_gone"))
        .bearer_auth(&w.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = w
        .get("/api/v1/platforms/platform_gone")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(
        root.join("index.php").exists(),
        "a codebase is never removed"
    );
    w.stop().await;
}
