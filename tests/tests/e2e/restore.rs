//! Restore on the real servers: the old data is served again, a backup of the site as it
//! was is taken first, and a failure at any step leaves the site serving as before, out of
//! maintenance, with a task that says what failed.

use berth_contracts::TaskStatus;
use berth_tests::TASK_WAIT as WAIT;
use berth_tests::{World, WorldOptions, log_of};
use serde_json::{Value, json};

struct Site {
    w: World,
    uri: String,
    root: std::path::PathBuf,
}

async fn site() -> Site {
    let w = World::with_platform(WorldOptions::web(false)).await;
    let uri = w.site_uri("rs");
    w.installed_on_platform(&uri).await;
    let root = w.dir.join("platforms/platform_d10");
    Site { w, uri, root }
}

impl Site {
    async fn task(&self, task_type: &str, args: Value) -> berth_contracts::Task {
        let t = self
            .w
            .create_task(task_type, &self.uri, args)
            .await
            .unwrap();
        self.w.wait_finished(t.id, WAIT).await.unwrap()
    }

    async fn site(&self) -> Value {
        self.w
            .get_json(&format!("/api/v1/sites/{}", self.uri))
            .await
    }

    /// Renames the site in its own database, as its admin would.
    async fn rename(&self, name: &str) {
        let db = self.site().await["db_name"].as_str().unwrap().to_string();
        berth_tests::set_d10_site_name(&db, name).await;
        assert!(
            self.page().contains(&format!("<h1>{name}</h1>")),
            "{}",
            self.page()
        );
    }

    fn page(&self) -> String {
        let (status, body) = self.w.page(&self.uri);
        assert_eq!(status, 200, "{body}");
        body
    }

    async fn backup(&self) -> String {
        let t = self.task("backup", json!({})).await;
        assert_eq!(t.status, TaskStatus::Success, "{t:#?}");
        let list = self
            .w
            .get_json(&format!("/api/v1/sites/{}/backups", self.uri))
            .await;
        list[0]["id"].as_str().unwrap().to_string()
    }

    /// Nothing of a restore is left beside the site.
    fn no_leftovers(&self) {
        let sites = self.root.join("sites");
        for suffix in ["berth-new", "berth-old"] {
            let p = sites.join(format!("{}.{suffix}", self.uri));
            assert!(!p.exists(), "{} left behind", p.display());
        }
        let vhosts = self.w.dir.join("config/server_master/nginx/vhost.d");
        for e in std::fs::read_dir(vhosts).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            assert!(!name.contains(".stash-"), "{name} left behind");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_older_backup_is_served_again_after_a_backup_of_the_present() {
    let s = site().await;
    assert!(s.page().contains(&format!("<h1>{}</h1>", s.uri)));
    let before = s.site().await;
    let old_db = before["db_name"].as_str().unwrap().to_string();
    let backup = s.backup().await;

    s.rename("Changed since the backup").await;
    let files = s.root.join("sites").join(&s.uri).join("files");
    std::fs::write(files.join("new.txt"), "made after the backup").unwrap();

    let t = s.task("restore", json!({"backup": backup})).await;
    assert_eq!(t.status, TaskStatus::Success, "{t:#?}");
    let body = s.page();
    assert!(body.contains(&format!("<h1>{}</h1>", s.uri)), "{body}");
    assert!(!files.join("new.txt").exists(), "files are the backup's");
    let after = s.site().await;
    assert_eq!(after["status"], "enabled");
    let new_db = after["db_name"].as_str().unwrap();
    assert_ne!(new_db, old_db, "the site moved to a new database");
    assert!(
        !berth_tests::mysql_db_exists(&old_db).await,
        "the old database is dropped"
    );
    // A backup of the site as it was before the restore exists.
    let list =
        s.w.get_json(&format!("/api/v1/sites/{}/backups", s.uri))
            .await;
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|b| b["description"] == "Generated before being restored to a previous version"),
        "{list}"
    );
    s.no_leftovers();
    // The site keeps working: verify and a new login link.
    assert_eq!(
        s.task("verify", json!({})).await.status,
        TaskStatus::Success
    );
    assert_eq!(
        s.task("login-reset", json!({})).await.status,
        TaskStatus::Success
    );
    s.w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_updatedb_or_import_leaves_the_site_serving_as_before() {
    let s = site().await;
    let backup = s.backup().await;
    s.rename("The present").await;
    let db = s.site().await["db_name"].as_str().unwrap().to_string();

    // updatedb fails: a module on the platform has an update that throws.
    let install = s.root.join("core/modules/node/node.install");
    let original = std::fs::read_to_string(&install).unwrap();
    std::fs::write(
        &install,
        format!(
            "{original}\nfunction node_update_10102() {{\n  throw new Exception('injected failure');\n}}\n"
        ),
    )
    .unwrap();
    let t = s.task("restore", json!({"backup": backup})).await;
    assert_eq!(t.status, TaskStatus::Error, "{t:#?}");
    let log = log_of(&t);
    assert!(
        log.contains("node_update_10102 failed: injected failure"),
        "{log}"
    );
    assert!(log.contains("taken back"), "{log}");
    assert!(s.page().contains("<h1>The present</h1>"), "{}", s.page());
    let now = s.site().await;
    assert_eq!(now["status"], "enabled");
    assert_eq!(now["db_name"], db.as_str(), "the site keeps its database");
    assert!(berth_tests::mysql_db_exists(&db).await);
    let next_db = t.args["next_db"]["name"].as_str().unwrap();
    assert!(
        !berth_tests::mysql_db_exists(next_db).await,
        "the restore's database is dropped"
    );
    s.no_leftovers();
    std::fs::write(&install, original).unwrap();

    // The import fails: the backup file is damaged.
    let list =
        s.w.get_json(&format!("/api/v1/sites/{}/backups", s.uri))
            .await;
    let b = list
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["id"] == backup.as_str())
        .unwrap()
        .clone();
    let path = b["path"].as_str().unwrap();
    let mut bytes = std::fs::read(path).unwrap();
    let half = bytes.len() / 2;
    bytes.truncate(half);
    std::fs::write(path, bytes).unwrap();
    let t = s.task("restore", json!({"backup": backup})).await;
    assert_eq!(t.status, TaskStatus::Error, "{t:#?}");
    let failed: Vec<_> = t
        .steps
        .as_ref()
        .unwrap()
        .iter()
        .filter(|st| st.status == berth_contracts::StepStatus::Error)
        .map(|st| st.action.clone())
        .collect();
    assert_eq!(failed, ["backup-extract"], "{}", log_of(&t));
    assert!(s.page().contains("<h1>The present</h1>"));
    assert_eq!(s.site().await["db_name"], db.as_str());
    s.no_leftovers();

    // Another site's real backup is refused for this site before anything runs, by
    // restore and by backup-delete alike; the other site keeps its backup.
    let other = format!("rs2.{}.test", s.w.id);
    let (_, t) =
        s.w.install_site(json!({"uri": other, "platform": "platform_d10"}))
            .await
            .unwrap();
    assert_eq!(t.status, TaskStatus::Success, "{t:#?}");
    let t = s.w.create_task("backup", &other, json!({})).await.unwrap();
    let t = s.w.wait_finished(t.id, WAIT).await.unwrap();
    assert_eq!(t.status, TaskStatus::Success, "{t:#?}");
    let theirs =
        s.w.get_json(&format!("/api/v1/sites/{other}/backups"))
            .await;
    let theirs = theirs[0].clone();
    let their_id = theirs["id"].as_str().unwrap().to_string();
    let before = berth_tests::row_counts(&s.w.store).await.unwrap();
    for task_type in ["restore", "backup-delete"] {
        let r =
            s.w.post(
                "/api/v1/tasks",
                &json!({"type": task_type, "target": s.uri, "args": {"backup": their_id}}),
            )
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body = r.text().await.unwrap();
        assert_eq!(status, 422, "{task_type} of {other}'s backup: {body}");
        assert!(body.contains(&their_id), "{task_type}: {body}");
    }
    assert_eq!(
        berth_tests::row_counts(&s.w.store).await.unwrap(),
        before,
        "a refused task wrote something"
    );
    let still =
        s.w.get_json(&format!("/api/v1/sites/{other}/backups"))
            .await;
    assert_eq!(still[0]["id"], their_id.as_str(), "{still}");
    assert!(
        std::path::Path::new(theirs["path"].as_str().unwrap()).exists(),
        "the other site's backup file is kept"
    );
    s.w.stop().await;
}
