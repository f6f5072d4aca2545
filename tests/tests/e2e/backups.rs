//! Backups and deletes of sites on the real servers: the tarball holds the site's files, its
//! database dump and uncloaked settings; delete backs up first and leaves nothing but history.

use berth_contracts::TaskStatus;
use berth_tests::{World, WorldOptions};
use serde_json::{Value, json};
use std::os::unix::fs::MetadataExt;

async fn count(sql: &'static str, name: &str) -> i64 {
    let (n,): (i64,) = sqlx::query_as(sql)
        .bind(name)
        .fetch_one(&mut berth_tests::mysql().await)
        .await
        .unwrap();
    n
}

fn sha256_hex(path: &std::path::Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_holds_files_database_and_plain_settings_and_restores_onto_a_fresh_database() {
    let w = World::with_platform(WorldOptions::web(false)).await;
    let uri = format!("bk.{}.test", w.id);
    let site = w.installed_on_platform(&uri).await;
    let site_dir = w.dir.join("platforms/platform_d10/sites").join(&uri);
    std::fs::write(site_dir.join("files/cat.txt"), "a cute cat\n").unwrap();
    let password = w.vhost_password(&uri);

    for (compression, flag) in [("gzip", "-z"), ("zstd", "--zstd")] {
        let t = w
            .run(
                "backup",
                &uri,
                json!({"compression": compression, "description": format!("{compression} test")}),
            )
            .await;
        assert_eq!(t.status, TaskStatus::Success, "{t:#?}");
        let log = berth_tests::log_of(&t);
        assert!(!log.contains(&password), "the task log holds the password");
        let backups = w.get_json(&format!("/api/v1/sites/{uri}/backups")).await;
        let b = backups
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["compression"] == compression)
            .unwrap_or_else(|| panic!("no {compression} backup: {backups}"))
            .clone();
        assert_eq!(b["description"], format!("{compression} test"));
        assert!(b["file"].as_str().unwrap().starts_with(&format!("{uri}-")));
        assert!(!backups.to_string().contains(&password));
        let path = std::path::PathBuf::from(b["path"].as_str().unwrap());
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600, "backups are private");
        assert_eq!(meta.len() as i64, b["size"].as_i64().unwrap());
        assert_eq!(sha256_hex(&path), b["sha256"].as_str().unwrap());

        // Unpacked with the plain tools: files, plain settings, the database dump.
        let out = w.dir.join(format!("unpacked-{compression}"));
        std::fs::create_dir_all(&out).unwrap();
        let st = std::process::Command::new("tar")
            .args([flag, "-xf"])
            .arg(&path)
            .arg("-C")
            .arg(&out)
            .status()
            .unwrap();
        assert!(st.success());
        assert_eq!(
            std::fs::read_to_string(out.join("files/cat.txt")).unwrap(),
            "a cute cat\n"
        );
        let settings = std::fs::read_to_string(out.join("settings.php")).unwrap();
        assert!(
            settings.contains(&password),
            "settings in a backup are uncloaked"
        );
        assert!(!settings.contains("$_SERVER['db_passwd']"));
        let dump = std::fs::read_to_string(out.join("database.sql")).unwrap();
        assert!(
            dump.contains("system.site"),
            "the dump holds the site's config"
        );

        // The dump restored onto a fresh database gives the site's data back.
        let fresh = format!("restore_{}_{compression}", w.id);
        let mut my = berth_tests::mysql().await;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE `{fresh}`")))
            .execute(&mut my)
            .await
            .unwrap();
        let admin = berth_tests::mysql_admin();
        let port = admin.port.to_string();
        let st = std::process::Command::new("mariadb")
            .args(["-h", &admin.host, "-P", &port, "-u", &admin.user, &fresh])
            .env("MYSQL_PWD", &admin.password)
            .stdin(std::fs::File::open(out.join("database.sql")).unwrap())
            .status()
            .unwrap();
        assert!(st.success());
        let (data,): (Vec<u8>,) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT data FROM `{fresh}`.config WHERE name = 'system.site'"
        )))
        .fetch_one(&mut my)
        .await
        .unwrap();
        assert!(String::from_utf8_lossy(&data).contains(&uri));
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE `{fresh}`")))
            .execute(&mut my)
            .await
            .unwrap();
    }
    assert_eq!(site["status"], "installing");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delete_needs_a_disabled_site_backs_up_first_and_keeps_only_history() {
    let w = World::with_platform(WorldOptions::web(true)).await;
    let uri = format!("del.{}.test", w.id);
    let alias = format!("alias.del.{}.test", w.id);
    let site = w
        .installed(json!({"uri": uri, "platform": "platform_d10", "aliases": [alias]}))
        .await;
    let db = site["db_name"].as_str().unwrap().to_string();
    let user = site["db_user"].as_str().unwrap().to_string();

    // Refused while enabled, with the reason and the way out.
    let r = w
        .post("/api/v1/tasks", &json!({"type": "delete", "target": uri}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let p: Value = r.json().await.unwrap();
    assert!(
        p["detail"].as_str().unwrap().contains("disable it first"),
        "{p}"
    );

    assert_eq!(
        w.run("disable", &uri, json!({})).await.status,
        TaskStatus::Success
    );
    let t = w.run_success("delete", &uri, json!({})).await;
    let actions: Vec<_> = t
        .steps
        .as_ref()
        .unwrap()
        .iter()
        .map(|s| s.action.as_str())
        .collect();
    assert_eq!(actions[0], "site-backup", "backup first: {actions:?}");

    // Gone: database, user, files, vhost, records; the site answers nothing.
    assert_eq!(
        count(
            "SELECT count(*) FROM information_schema.schemata WHERE schema_name = ?",
            &db
        )
        .await,
        0
    );
    assert_eq!(
        count("SELECT count(*) FROM mysql.user WHERE user = ?", &user).await,
        0
    );
    let root = w.dir.join("platforms/platform_d10");
    assert!(!root.join("sites").join(&uri).exists());
    assert!(
        !w.dir
            .join("config/server_master/nginx/vhost.d")
            .join(format!("{uri}.conf"))
            .exists()
    );
    assert!(w.named.as_ref().unwrap().dig(&uri, "A").unwrap().is_empty());
    assert_eq!(w.http_get(&uri, "/").unwrap().0, 404);

    // Kept: the row (status deleted), the task history, the backup made before.
    let site = w.get_json(&format!("/api/v1/sites/{uri}")).await;
    assert_eq!(site["status"], "deleted");
    assert_eq!(site["aliases"], json!([]), "aliases are free again");
    let tasks = w
        .get_json(&format!("/api/v1/tasks?target={uri}&limit=50"))
        .await;
    let types: Vec<&str> = tasks["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["type"].as_str().unwrap())
        .collect();
    for ty in ["install", "disable", "delete"] {
        assert!(types.contains(&ty), "{types:?}");
    }
    let backups = w.get_json(&format!("/api/v1/sites/{uri}/backups")).await;
    assert_eq!(
        backups[0]["description"], "Generated before being deleted",
        "{backups}"
    );
    assert!(std::path::Path::new(backups[0]["path"].as_str().unwrap()).exists());
    // Nothing more runs on a deleted site.
    let r = w
        .post("/api/v1/tasks", &json!({"type": "verify", "target": uri}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_the_setting_an_enabled_site_can_be_deleted() {
    let w = World::with_platform(WorldOptions {
        delete_enabled_sites: true,
        ..WorldOptions::web(false)
    })
    .await;
    let uri = format!("now.{}.test", w.id);
    w.installed_on_platform(&uri).await;
    w.run_success("delete", &uri, json!({})).await;
    assert_eq!(
        w.get_json(&format!("/api/v1/sites/{uri}")).await["status"],
        "deleted"
    );
    w.stop().await;
}
