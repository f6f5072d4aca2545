//! Retrying a task that ended in `error` (not one that was cancelled): a restore whose
//! `drush updatedb` fails ends in error with the site as it was; once the cause is gone,
//! its retry runs the same restore again, which needs the restore's sealed secret (the
//! password of the database it moves the site to) again, and the site then serves the
//! backup from that database.

use berth_contracts::TaskStatus;
use berth_tests::TASK_WAIT as WAIT;
use berth_tests::{World, WorldOptions};
use serde_json::{Value, json};

async fn rename(w: &World, uri: &str, name: &str) {
    let db = w.get_json(&format!("/api/v1/sites/{uri}")).await["db_name"]
        .as_str()
        .unwrap()
        .to_string();
    berth_tests::set_d10_site_name(&db, name).await;
}

fn page(w: &World, uri: &str) -> String {
    let (status, body) = w.page(uri);
    assert_eq!(status, 200, "{body}");
    body
}

async fn retry(w: &World, id: uuid::Uuid) -> (u16, Value) {
    let r = w
        .post(&format!("/api/v1/tasks/{id}/retry"), &json!({}))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_restore_is_retried_with_its_secret_once_its_cause_is_gone() {
    let w = World::with_platform(WorldOptions::web(false)).await;
    let root = w.dir.join("platforms/platform_d10");
    let uri = format!("retry.{}.test", w.id);
    w.installed_on_platform(&uri).await;
    rename(&w, &uri, "The past").await;
    w.run_success("backup", &uri, json!({})).await;
    let backup = w.get_json(&format!("/api/v1/sites/{uri}/backups")).await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    rename(&w, &uri, "The present").await;
    assert!(page(&w, &uri).contains("<h1>The present</h1>"));
    let db_before = w.get_json(&format!("/api/v1/sites/{uri}")).await["db_name"].clone();

    // A restore whose updatedb throws: error, the site as it was.
    let install = root.join("core/modules/node/node.install");
    let pristine = std::fs::read_to_string(&install).unwrap();
    berth_tests::add_node_update(&root, 10102, "  throw new Exception('injected');\n");
    let first = w.run("restore", &uri, json!({"backup": backup})).await;
    assert_eq!(first.status, TaskStatus::Error, "{first:#?}");
    assert!(page(&w, &uri).contains("<h1>The present</h1>"));
    let site = w.get_json(&format!("/api/v1/sites/{uri}")).await;
    assert_eq!(site["db_name"], db_before, "{site}");
    let next_db = first.args["next_db"]["name"].as_str().unwrap().to_string();
    assert!(!berth_tests::mysql_db_exists(&next_db).await);

    // The cause goes; the retry is the same restore, and it completes.
    std::fs::write(&install, pristine).unwrap();
    let (status, body) = retry(&w, first.id).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["retry_of"], first.id.to_string(), "{body}");
    assert_eq!(body["type"], "restore", "{body}");
    assert_eq!(
        body["args"]["restore_from"]["id"],
        backup.as_str(),
        "{body}"
    );
    let again: uuid::Uuid = body["id"].as_str().unwrap().parse().unwrap();
    assert_ne!(again, first.id);
    let again = w.wait_finished(again, WAIT).await.unwrap();
    assert_eq!(again.status, TaskStatus::Success, "{again:#?}");
    // The site serves the backup, from the database the restore moved it to, which its
    // user reaches with the password the first restore was given (sealed, carried over).
    let body = page(&w, &uri);
    assert!(body.contains("<h1>The past</h1>"), "{body}");
    let site = w.get_json(&format!("/api/v1/sites/{uri}")).await;
    assert_eq!(site["status"], "enabled", "{site}");
    assert_eq!(site["db_name"], again.args["next_db"]["name"], "{site}");
    assert_ne!(site["db_name"], db_before, "{site}");
    // The first task stays what it was; a task that succeeded is not retried.
    assert_eq!(w.task(first.id).await.unwrap().status, TaskStatus::Error);
    let (status, body) = retry(&w, again.id).await;
    assert_eq!(status, 409, "{body}");
    w.stop().await;
}
