//! Retention on the real servers: the preview says which backups a policy keeps and why, a
//! prune task removes exactly the others (rows and files), and a prune schedule does it on
//! its own.

use berth_tests::{World, WorldOptions};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::Duration;

async fn backup_ids(w: &World, uri: &str) -> BTreeSet<String> {
    w.get_json(&format!("/api/v1/sites/{uri}/backups"))
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_string())
        .collect()
}

fn ids_where(preview: &Value, keep: bool) -> BTreeSet<String> {
    preview["backups"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["keep"] == keep)
        .map(|b| b["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_prune_removes_exactly_what_the_preview_said_and_a_prune_schedule_runs_on_its_own() {
    let w = World::with_platform(WorldOptions::web(false)).await;
    let uri = w.site_uri("keep");
    w.installed_on_platform(&uri).await;
    for i in 0..4 {
        w.run_success("backup", &uri, json!({"description": format!("b{i}")}))
            .await;
    }
    let all = w.get_json(&format!("/api/v1/sites/{uri}/backups")).await;
    let paths: Vec<(String, String)> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["id"].as_str().unwrap().into(),
                b["path"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(paths.len(), 4);

    // The preview: the two newest kept (keep-last; the newest also as the newest good one).
    let preview = w
        .get_json(&format!("/api/v1/sites/{uri}/retention?keep_last=2"))
        .await;
    let rows = preview["backups"].as_array().unwrap();
    assert_eq!(rows.len(), 4, "{preview}");
    assert_eq!(rows[0]["description"], "b3");
    assert_eq!(
        rows[0]["reasons"],
        json!(["the newest good backup", "keep-last"])
    );
    assert_eq!(rows[1]["reasons"], json!(["keep-last"]));
    assert_eq!(rows[2]["reasons"], json!([]));
    let kept = ids_where(&preview, true);
    let going = ids_where(&preview, false);
    assert_eq!((kept.len(), going.len()), (2, 2));

    // Bad policies are refused, saying why; nothing is removed by a preview.
    for (query, status) in [("keep_lst=2", 400), ("keep_within=7w", 422), ("", 422)] {
        let r = w
            .get(&format!("/api/v1/sites/{uri}/retention?{query}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{query}");
        let body: Value = r.json().await.unwrap();
        assert!(body["detail"].as_str().is_some(), "{body}");
    }
    let (status, body) = w
        .post_json(
            "/api/v1/tasks",
            &json!({"type": "prune", "target": uri, "args": {"regular": {"keep_lst": 2}}}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(backup_ids(&w, &uri).await.len(), 4);

    // The prune removes exactly what the preview said would go.
    let t = w
        .run_success("prune", &uri, json!({"regular": {"keep_last": 2}}))
        .await;
    let removed: BTreeSet<String> = t.args["remove"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(removed, going);
    assert_eq!(backup_ids(&w, &uri).await, kept);
    for (id, path) in &paths {
        assert_eq!(
            std::path::Path::new(path).exists(),
            kept.contains(id),
            "{path}"
        );
    }

    // A prune schedule for the site: its policy is the preview's default, and it runs.
    let (status, s) = w
        .post_json(
            "/api/v1/schedules",
            &json!({"name": "tidy", "scope": format!("site:{uri}"), "expression": "*/2 * * * * *",
                    "job": {"kind": "prune", "retention": {"regular": {"keep_last": 1}}}}),
        )
        .await;
    assert_eq!(status, 201, "{s}");
    let preview = w.get_json(&format!("/api/v1/sites/{uri}/retention")).await;
    assert_eq!(preview["policy"], json!({"regular": {"keep_last": 1}}));
    assert_eq!(ids_where(&preview, true).len(), 1);
    let (mut scheduler, _) = w.spawn_berth("scheduler", &[("BERTH_SCHEDULER_TICK_MS", "100")]);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while backup_ids(&w, &uri).await.len() > 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the prune schedule never pruned"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    scheduler.kill().unwrap();
    let _ = scheduler.wait();
    assert_eq!(backup_ids(&w, &uri).await, ids_where(&preview, true));
    let tasks = w.get_json("/api/v1/tasks?type=prune").await;
    assert!(
        tasks.to_string().contains("schedule:tidy"),
        "the scheduled prune says who asked for it: {tasks}"
    );
    w.stop().await;
}
