//! Migrate (an upgrade) on the real servers: refused when the package comparison has errors,
//! planned without doing anything, done with updatedb, and taken back whole on a failure.

use berth_contracts::TaskStatus;
use berth_tests::TASK_WAIT as WAIT;
use berth_tests::{World, WorldOptions, mysql_url};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_site_is_upgraded_onto_a_newer_platform_and_a_failed_migrate_changes_nothing() {
    let w = World::with_server(WorldOptions::web(false)).await;
    let a = w.copy_fixture("drupal10", "platform_a").unwrap();
    let newer = w.copy_fixture("drupal10", "platform_newer").unwrap();
    berth_tests::add_node_update(&newer, 10102, "");
    let older = w.copy_fixture("drupal10", "platform_older").unwrap();
    let install = older.join("core/modules/node/node.install");
    let text = std::fs::read_to_string(&install)
        .unwrap()
        .replace("function node_update_10101() {\n}\n", "");
    std::fs::write(&install, text).unwrap();
    let broken = w.copy_fixture("drupal10", "platform_broken").unwrap();
    berth_tests::add_node_update(&broken, 10102, "");
    berth_tests::add_node_update(
        &broken,
        10103,
        "  throw new Exception('update 10103 breaks');\n",
    );
    for (name, root) in [
        ("platform_a", &a),
        ("platform_newer", &newer),
        ("platform_older", &older),
        ("platform_broken", &broken),
    ] {
        w.create_platform(name, root).await.unwrap();
    }

    let uri = format!("mg.{}.test", w.id);
    let site = w
        .installed(json!({"uri": uri, "platform": "platform_a"}))
        .await;
    let old_db = site["db_name"].as_str().unwrap().to_string();
    let packages = w.get_json(&format!("/api/v1/sites/{uri}/packages")).await;
    assert_eq!(berth_tests::node_schema(&packages), 10101);

    // Refused: the older platform would take node's schema back.
    let plan = w
        .get_json(&format!(
            "/api/v1/sites/{uri}/migrate-plan?platform=platform_older"
        ))
        .await;
    assert_eq!(plan["allowed"], false, "{plan}");
    assert_eq!(plan["comparison"]["errors"], 1);
    let r = w
        .post(
            "/api/v1/tasks",
            &json!({"type": "migrate", "target": uri, "args": {"platform": "platform_older"}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let p: Value = r.json().await.unwrap();
    assert!(p["detail"].as_str().unwrap().contains("node"), "{p}");

    // The plan of the upgrade, without doing anything.
    let before = berth_tests::row_counts(&w.store).await.unwrap();
    let plan = w
        .get_json(&format!(
            "/api/v1/sites/{uri}/migrate-plan?platform=platform_newer"
        ))
        .await;
    assert_eq!(plan["allowed"], true, "{plan}");
    assert_eq!(plan["comparison"]["upgrades"], 1, "{plan}");
    assert_eq!(plan["steps"][0]["action"], "site-maintenance");
    assert_eq!(plan["steps"][1]["action"], "site-backup");
    assert!(plan["expected_downtime_ms"].as_i64().unwrap() >= 2000);
    assert_eq!(berth_tests::row_counts(&w.store).await.unwrap(), before);

    // The upgrade.
    let t = w
        .run("migrate", &uri, json!({"platform": "platform_newer"}))
        .await;
    assert_eq!(t.status, TaskStatus::Success, "{t:#?}");
    let site = w.get_json(&format!("/api/v1/sites/{uri}")).await;
    assert_eq!(site["platform"], "platform_newer");
    let (status, body) = w.page(&uri);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&format!("<h1>{uri}</h1>")), "{body}");
    assert!(newer.join("sites").join(&uri).join("settings.php").exists());
    assert!(
        !a.join("sites").join(&uri).exists(),
        "the old copy is removed"
    );
    assert!(
        !berth_tests::mysql_db_exists(&old_db).await,
        "the old database is dropped"
    );
    let packages = w.get_json(&format!("/api/v1/sites/{uri}/packages")).await;
    assert_eq!(berth_tests::node_schema(&packages), 10102, "updatedb ran");
    let backups = w.get_json(&format!("/api/v1/sites/{uri}/backups")).await;
    assert_eq!(backups[0]["description"], "Generated before being migrated");

    // A migrate whose updatedb fails leaves the site where it was, serving, out of maintenance.
    let db = site["db_name"].as_str().unwrap().to_string();
    let t = w
        .run("migrate", &uri, json!({"platform": "platform_broken"}))
        .await;
    assert_eq!(t.status, TaskStatus::Error, "{t:#?}");
    let log = berth_tests::log_of(&t);
    assert!(log.contains("update 10103 breaks"), "{log}");
    let site = w.get_json(&format!("/api/v1/sites/{uri}")).await;
    assert_eq!(site["platform"], "platform_newer");
    assert_eq!(site["db_name"], db.as_str());
    assert!(berth_tests::mysql_db_exists(&db).await);
    let next = t.args["next_db"]["name"].as_str().unwrap();
    assert!(!berth_tests::mysql_db_exists(next).await);
    let (status, body) = w.page(&uri);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&format!("<h1>{uri}</h1>")), "{body}");
    assert!(!broken.join("sites").join(&uri).exists());
    assert!(
        !broken
            .join("sites")
            .join(format!("{uri}.berth-new"))
            .exists()
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn migrating_a_platform_moves_each_site_that_can_move_and_says_why_others_stay() {
    let w = World::with_server(WorldOptions::web(false)).await;
    let a = w.copy_fixture("drupal10", "platform_a").unwrap();
    let newer = w.copy_fixture("drupal10", "platform_newer").unwrap();
    berth_tests::add_node_update(&newer, 10102, "");
    w.create_platform("platform_a", &a).await.unwrap();
    w.create_platform("platform_newer", &newer).await.unwrap();
    let mut uris = Vec::new();
    for i in 0..3 {
        let uri = format!("p{i}.{}.test", w.id);
        w.installed(json!({"uri": uri, "platform": "platform_a"}))
            .await;
        uris.push(uri);
    }
    // The third site's database is ahead of the newer platform: it must stay.
    let ahead = w.get_json(&format!("/api/v1/sites/{}", uris[2])).await;
    let db = ahead["db_name"].as_str().unwrap();
    let mut my = <sqlx::MySqlConnection as sqlx::Connection>::connect(&mysql_url())
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE `{db}`.key_value SET value = 'i:10200;' WHERE collection = 'system.schema' AND name = 'node'"
    )))
    .execute(&mut my)
    .await
    .unwrap();
    let t = w.create_task("verify", &uris[2], json!({})).await.unwrap();
    assert_eq!(
        w.wait_finished(t.id, WAIT).await.unwrap().status,
        TaskStatus::Success
    );

    let r = w
        .post(
            "/api/v1/platforms/platform_a/migrate",
            &json!({"to": "platform_newer"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let summary: Value = r.json().await.unwrap();
    assert_eq!(summary["queued"].as_array().unwrap().len(), 2, "{summary}");
    let skipped = summary["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 1, "{summary}");
    assert_eq!(skipped[0]["site"], uris[2].as_str());
    assert!(
        skipped[0]["reason"].as_str().unwrap().contains("node"),
        "{summary}"
    );
    for q in summary["queued"].as_array().unwrap() {
        let t = w.finish(&q["task"]).await;
        assert_eq!(t.status, TaskStatus::Success, "{t:#?}");
        let uri = q["site"].as_str().unwrap();
        assert_eq!(
            w.get_json(&format!("/api/v1/sites/{uri}")).await["platform"],
            "platform_newer"
        );
        assert_eq!(w.http_get(uri, "/").unwrap().0, 200);
    }
    assert_eq!(
        w.get_json(&format!("/api/v1/sites/{}", uris[2])).await["platform"],
        "platform_a"
    );
    assert_eq!(w.http_get(&uris[2], "/").unwrap().0, 200);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_site_renamed_answers_under_its_new_name_only() {
    let w = World::with_platform(WorldOptions::web(true)).await;
    let old = format!("old.{}.test", w.id);
    let new = format!("new.{}.test", w.id);
    let alias = format!("www.{}.test", w.id);
    w.installed(json!({"uri": old, "platform": "platform_d10", "aliases": [alias]}))
        .await;

    let plan = w
        .get_json(&format!("/api/v1/sites/{old}/migrate-plan?uri={new}"))
        .await;
    assert_eq!(plan["allowed"], true, "{plan}");
    assert_eq!(plan["to"]["uri"], new.as_str());
    let t = w
        .create_task("migrate", &old, json!({"uri": new}))
        .await
        .unwrap();
    // The new name is held while the rename runs.
    let r = w
        .post(
            "/api/v1/sites",
            &json!({"uri": new, "platform": "platform_d10"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let t = w.wait_finished(t.id, WAIT).await.unwrap();
    assert_eq!(t.status, TaskStatus::Success, "{t:#?}");

    let site = w.get_json(&format!("/api/v1/sites/{new}")).await;
    assert_eq!(site["status"], "enabled", "{site}");
    assert_eq!(site["aliases"], json!([alias]));
    let r = w.get(&format!("/api/v1/sites/{old}")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let (status, body) = w.page(&new);
    assert_eq!(status, 200, "{body}");
    assert_eq!(w.http_get(&alias, "/").unwrap().0, 200, "the alias follows");
    assert_eq!(
        w.http_get(&old, "/").unwrap().0,
        404,
        "the old name is gone"
    );
    let root = w.dir.join("platforms/platform_d10/sites");
    assert!(root.join(&new).join("settings.php").exists());
    assert!(!root.join(&old).exists());
    let named = w.named.as_ref().unwrap();
    assert_eq!(named.dig(&new, "A").unwrap(), ["127.0.0.1"]);
    assert!(named.dig(&old, "A").unwrap().is_empty());
    let backups = w.get_json(&format!("/api/v1/sites/{new}/backups")).await;
    assert_eq!(backups.as_array().unwrap().len(), 1, "{backups}");
    let t = w.create_task("verify", &new, json!({})).await.unwrap();
    assert_eq!(
        w.wait_finished(t.id, WAIT).await.unwrap().status,
        TaskStatus::Success,
        "the renamed site verifies"
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_site_moves_its_database_to_another_db_server() {
    // Workers serve both servers (a step for a server waits for its workers).
    let name = "server_db2exampletest";
    let w = World::start_with(WorldOptions {
        web: true,
        servers: vec!["server_master".into(), name.into()],
        ..Default::default()
    })
    .await
    .unwrap();
    w.server_verified("server_master", "localhost", "null")
        .await;
    // A second db server (here the same MariaDB under another name and port entry).
    let r = w
        .post(
            "/api/v1/servers",
            &json!({"name": "server_db2", "host": "db2.example.test",
                    "services": {"db": berth_tests::mysql_admin().db_service()}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422, "a server name must follow its host");
    let host = "db2.example.test";
    let r = w
        .post(
            "/api/v1/servers",
            &json!({"name": name, "host": host,
                    "services": {"db": berth_tests::mysql_admin().db_service()}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    w.add_platform("platform_d10", "drupal10").await.unwrap();
    let uri = format!("db.{}.test", w.id);
    let site = w.installed_on_platform(&uri).await;
    let old_db = site["db_name"].as_str().unwrap().to_string();
    w.run_success("migrate", &uri, json!({"db_server": name}))
        .await;
    let site = w.get_json(&format!("/api/v1/sites/{uri}")).await;
    assert_eq!(site["db_server"], name);
    assert_eq!(site["platform"], "platform_d10");
    let new_db = site["db_name"].as_str().unwrap();
    assert_ne!(new_db, old_db);
    assert!(berth_tests::mysql_db_exists(new_db).await);
    assert!(!berth_tests::mysql_db_exists(&old_db).await);
    let (status, body) = w.page(&uri);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(new_db), "{body}");
    w.stop().await;
}
