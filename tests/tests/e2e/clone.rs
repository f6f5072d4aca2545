//! Clone and backup-delete on the real servers: a clone is a new site with its own
//! database, user, vhost and records, built from a backup; a failed clone leaves nothing of
//! the new site and the original untouched.

use berth_contracts::TaskStatus;
use berth_tests::{World, WorldOptions};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_clone_is_a_new_site_and_a_failed_one_leaves_nothing() {
    let w = World::with_platform(WorldOptions::web(true)).await;
    let broken = w.copy_fixture("drupal10", "platform_broken").unwrap();
    let install = broken.join("core/modules/node/node.install");
    let mut text = std::fs::read_to_string(&install).unwrap();
    text.push_str("\nfunction node_update_10102() {\n  throw new Exception('clone breaks');\n}\n");
    std::fs::write(&install, text).unwrap();
    let r = w
        .post(
            "/api/v1/platforms",
            &json!({"name": "platform_broken", "root": broken.display().to_string()}),
        )
        .send()
        .await
        .unwrap();
    let p: Value = r.json().await.unwrap();
    w.finish(&p["task"]).await;

    let uri = format!("orig.{}.test", w.id);
    let alias = format!("www.orig.{}.test", w.id);
    let site = w
        .installed(json!({"uri": uri, "platform": "platform_d10", "aliases": [alias]}))
        .await;
    let files = w
        .dir
        .join("platforms/platform_d10/sites")
        .join(&uri)
        .join("files");
    std::fs::write(files.join("shared.txt"), "copied along").unwrap();

    // A clone takes new aliases only, and a uri of its own.
    let copy = format!("copy.{}.test", w.id);
    for (args, code) in [
        (json!({"uri": copy, "aliases": [alias]}), 409),
        (json!({"uri": uri}), 422),
        (json!({"uri": "Bad..uri"}), 422),
    ] {
        let r = w
            .post(
                "/api/v1/tasks",
                &json!({"type": "clone", "target": uri, "args": args}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), code, "{args}");
    }

    let copy_alias = format!("www.copy.{}.test", w.id);
    let t = w
        .run("clone", &uri, json!({"uri": copy, "aliases": [copy_alias]}))
        .await;
    assert_eq!(t.status, TaskStatus::Success, "{t:#?}");
    let cloned = w.get_json(&format!("/api/v1/sites/{copy}")).await;
    assert_eq!(cloned["status"], "enabled", "{cloned}");
    assert_ne!(cloned["db_name"], site["db_name"], "its own database");
    assert!(cloned["login_link"].as_str().is_some(), "{cloned}");
    // The copy serves the original's data under its own name; the original is untouched.
    let (status, body) = w.page(&copy);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&format!("<h1>{uri}</h1>")), "{body}");
    assert!(body.contains(cloned["db_name"].as_str().unwrap()), "{body}");
    assert_eq!(w.http_get(&copy_alias, "/").unwrap().0, 200);
    let (status, body, _) = w.http_get(&copy, "/files/shared.txt").unwrap();
    assert_eq!((status, body.as_str()), (200, "copied along"));
    let (status, body) = w.page(&uri);
    assert_eq!(status, 200);
    assert!(body.contains(site["db_name"].as_str().unwrap()));
    let named = w.named.as_ref().unwrap();
    assert_eq!(named.dig(&copy, "A").unwrap(), ["127.0.0.1"]);
    assert_eq!(
        named.dig(&copy_alias, "CNAME").unwrap(),
        [format!("{copy}.")]
    );

    // A clone that fails (its updatedb throws) leaves nothing of the new site.
    let bad = format!("bad.{}.test", w.id);
    let t = w
        .run(
            "clone",
            &uri,
            json!({"uri": bad, "platform": "platform_broken"}),
        )
        .await;
    assert_eq!(t.status, TaskStatus::Error, "{t:#?}");
    let failed = w.get_json(&format!("/api/v1/sites/{bad}")).await;
    assert_eq!(failed["status"], "failed");
    assert!(!berth_tests::mysql_db_exists(failed["db_name"].as_str().unwrap()).await);
    assert!(!broken.join("sites").join(&bad).exists());
    assert!(
        !broken
            .join("sites")
            .join(format!("{bad}.berth-new"))
            .exists()
    );
    assert!(
        !w.dir
            .join("config/server_master/nginx/vhost.d")
            .join(format!("{bad}.conf"))
            .exists()
    );
    assert!(named.dig(&bad, "A").unwrap().is_empty());
    assert_eq!(
        w.http_get(&uri, "/").unwrap().0,
        200,
        "the original serves on"
    );

    // backup-delete: the file goes, the backup is no longer listed.
    let backups = w.get_json(&format!("/api/v1/sites/{uri}/backups")).await;
    let b = backups[0].clone();
    let path = std::path::PathBuf::from(b["path"].as_str().unwrap());
    assert!(path.exists());
    let t = w
        .run("backup-delete", &uri, json!({"backup": b["id"]}))
        .await;
    assert_eq!(t.status, TaskStatus::Success, "{t:#?}");
    assert!(!path.exists());
    let after = w.get_json(&format!("/api/v1/sites/{uri}/backups")).await;
    assert!(
        after.as_array().unwrap().iter().all(|x| x["id"] != b["id"]),
        "{after}"
    );
    w.stop().await;
}
