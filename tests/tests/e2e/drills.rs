//! Restore drills on the real servers: a good backup restored into a throwaway site under
//! the drill domain serves the site's name and is marked verified; a backup whose dump is
//! another site's fails the drill with a log saying what did not match; and after both,
//! nothing of the drill site is left (database, user, vhost, pool, directories), the site
//! list never shows it and the site itself is served as before.

use berth_contracts::TaskStatus;
use berth_tests::TASK_WAIT as WAIT;
use berth_tests::{World, WorldOptions, log_of};
use serde_json::json;
use std::collections::BTreeSet;
use std::path::Path;

fn names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// What a drill could leave behind, as a user would list it.
#[derive(Debug, PartialEq)]
struct Leftovers {
    vhosts: BTreeSet<String>,
    pools: BTreeSet<String>,
    site_dirs: BTreeSet<String>,
    site_tmp: BTreeSet<String>,
}

fn leftovers(w: &World) -> Leftovers {
    let cfg = w.dir.join("config/server_master");
    Leftovers {
        vhosts: names(&cfg.join("nginx/vhost.d")),
        pools: names(&cfg.join("php-fpm/pool.d")),
        site_dirs: names(&w.dir.join("platforms/platform_d10/sites")),
        site_tmp: names(&w.dir.join("site-tmp")),
    }
}

/// The drill's database (and user) name, from its task id (`drill_<last 12 hex>`).
fn drill_db(task: uuid::Uuid) -> String {
    let s = task.simple().to_string();
    format!("drill_{}", &s[s.len() - 12..])
}

async fn nothing_of_the_drill_remains(w: &World, before: &Leftovers, task: uuid::Uuid) {
    let after = leftovers(w);
    assert_eq!(&after, before, "the drill left files behind");
    let db = drill_db(task);
    assert_eq!(
        berth_tests::mysql_dbs_like(&db).await,
        0,
        "{db} left behind"
    );
    assert!(!berth_tests::mysql_user_exists(&db).await, "{db} user left");
    let sites = w.get_json("/api/v1/sites").await.to_string();
    assert!(!sites.contains("drill"), "a drill site is listed: {sites}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_good_backup_passes_its_drill_and_a_foreign_dump_fails_and_nothing_remains() {
    let w = World::with_platform(WorldOptions::web(false)).await;
    let uri = w.site_uri("dr");
    w.installed_on_platform(&uri).await;
    let site = w.get_json(&format!("/api/v1/sites/{uri}")).await;
    let db = site["db_name"].as_str().unwrap().to_string();
    berth_tests::set_d10_site_name(&db, "Drilled Shop").await;

    // No backup yet: nothing to drill, said at once.
    let (status, body) = w
        .post_json("/api/v1/tasks", &json!({"type": "drill", "target": uri}))
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("no backup"),
        "{body}"
    );

    w.run_success("backup", &uri, json!({})).await;
    let backups = w.get_json(&format!("/api/v1/sites/{uri}/backups")).await;
    let good = backups[0]["id"].as_str().unwrap().to_string();
    assert!(backups[0].get("verified_at").is_none(), "{backups}");

    // A good drill, through the CLI, of the newest backup.
    let before = leftovers(&w);
    let out = w.berth_ok(&["sites", "drill", &uri]).await;
    let id: uuid::Uuid = out
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{out}"));
    let t = w.wait_finished(id, WAIT).await.unwrap();
    let log = log_of(&t);
    assert_eq!(t.status, TaskStatus::Success, "{log}");
    assert!(
        log.contains("serves the site's own front page (\"Drilled Shop\")"),
        "{log}"
    );
    assert!(log.contains(".drill.berth.invalid"), "{log}");
    let backups = w.get_json(&format!("/api/v1/sites/{uri}/backups")).await;
    assert_eq!(backups[0]["id"], good);
    assert!(backups[0]["verified_at"].is_string(), "{backups}");
    assert_eq!(backups[0]["verified_by_task"], id.to_string());
    let table = w.berth_ok(&["sites", "backups", &uri]).await;
    assert!(table.contains("verified by drill at"), "{table}");
    nothing_of_the_drill_remains(&w, &before, id).await;
    // The drill never answered for the site: it serves itself as before.
    let (status, page) = w.page(&uri);
    assert_eq!(status, 200);
    assert!(
        page.contains("<h1>Drilled Shop</h1>") && page.contains(&db),
        "{page}"
    );
    // No site may take a name under the drill domain.
    let (status, body) = w
        .post_json(
            "/api/v1/sites",
            &json!({"uri": "mine.drill.berth.invalid", "platform": "platform_d10"}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("restore drills"));

    // A backup whose dump is another site's: restored, but the copy serves another name.
    w.run_success("backup", &uri, json!({"compression": "gzip"}))
        .await;
    let backups = w.get_json(&format!("/api/v1/sites/{uri}/backups")).await;
    let bad = backups[0]["id"].as_str().unwrap().to_string();
    let path = backups[0]["path"].as_str().unwrap().to_string();
    let work = w.dir.join("corrupt");
    std::fs::create_dir_all(&work).unwrap();
    let tar = |args: &[&str]| {
        let st = std::process::Command::new("tar")
            .args(args)
            .current_dir(&work)
            .status()
            .unwrap();
        assert!(st.success(), "tar {args:?}");
    };
    tar(&["-xzf", &path]);
    let dump = work.join("database.sql");
    let text = std::fs::read_to_string(&dump).unwrap();
    // Same length, so the serialised PHP string stays valid: another site's name.
    let swapped = text.replace("Drilled Shop", "Other Place!");
    assert_ne!(text, swapped, "the dump holds the site's name");
    std::fs::write(&dump, swapped).unwrap();
    let entries: Vec<String> = names(&work).into_iter().collect();
    let mut args = vec!["-czf".to_string(), path.clone()];
    args.extend(entries);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    tar(&args);

    let before = leftovers(&w);
    let t = w
        .create_task("drill", &uri, json!({"backup": bad}))
        .await
        .unwrap();
    let t = w.wait_finished(t.id, WAIT).await.unwrap();
    let log = log_of(&t);
    assert_eq!(t.status, TaskStatus::Error, "{log}");
    assert!(
        log.contains("the restored copy serves \"Other Place!\", the site serves \"Drilled Shop\""),
        "{log}"
    );
    assert!(log.contains("taken back"), "{log}");
    let backups = w.get_json(&format!("/api/v1/sites/{uri}/backups")).await;
    let b = backups
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["id"] == bad)
        .unwrap();
    assert!(b.get("verified_at").is_none(), "{b}");
    nothing_of_the_drill_remains(&w, &before, t.id).await;
    let (status, page) = w.page(&uri);
    assert_eq!(status, 200);
    assert!(page.contains("<h1>Drilled Shop</h1>"), "{page}");
    // No secret in the logs: the drill database's password is derived, never shown.
    assert!(!log.contains(&w.vhost_password(&uri)));
}
