//! The storefront's story, end to end on the real servers: an order makes a client (a retry
//! of the order finds the same one), a site is installed for it, the customer stops paying
//! and is suspended (its sites answer "suspended"), pays again (they serve as before), and
//! cancels (its sites are deleted by the scheduler after the grace, each with a backup that
//! stays).

use berth_contracts::TaskStatus;
use berth_tests::{World, WorldOptions, log_of};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

async fn post(w: &World, path: &str, body: Value) -> (u16, Value) {
    w.post_json(path, &body).await
}

/// Waits for each task of a standing change to succeed.
async fn all_succeed(w: &World, answer: &Value) {
    for id in answer["tasks"].as_array().unwrap() {
        let t = w.finish(id).await;
        assert_eq!(t.status, TaskStatus::Success, "{}", log_of(&t));
    }
}

fn page(w: &World, uri: &str) -> (u16, String) {
    w.page(uri)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_order_makes_a_client_whose_sites_are_suspended_restored_and_deleted_after_cancelling() {
    let w = World::with_platform(WorldOptions::web(false)).await;
    // The order: a client, created twice with the same reference (the storefront retried).
    let order = json!({"name": "shop-1001", "email": "buyer@example.com",
                       "storefront": "shop", "external_ref": "order-1001"});
    let (status, first) = post(&w, "/api/v1/clients", order.clone()).await;
    assert_eq!(status, 201, "{first}");
    let (status, again) = post(&w, "/api/v1/clients", order).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(first["id"], again["id"]);
    let clients = w.get_json("/api/v1/clients").await;
    let named = clients
        .as_array()
        .or_else(|| clients["items"].as_array())
        .unwrap()
        .iter()
        .filter(|c| c["external_ref"] == "order-1001")
        .count();
    assert_eq!(named, 1, "one client for the order: {clients}");

    let uris = [w.site_uri("one"), w.site_uri("two")];
    for uri in &uris {
        w.installed(json!({"uri": uri, "platform": berth_tests::PLATFORM, "client": "shop-1001"}))
            .await;
        let (status, body) = page(&w, uri);
        assert_eq!(status, 200, "{body}");
    }

    // The customer stops paying: suspended, its sites answer "suspended"; no new site.
    let (status, v) = post(&w, "/api/v1/clients/shop-1001/suspend", json!({})).await;
    assert_eq!(status, 202, "{v}");
    assert_eq!(v["client"]["status"], "suspended");
    assert_eq!(v["tasks"].as_array().unwrap().len(), 2, "{v}");
    all_succeed(&w, &v).await;
    for uri in &uris {
        let (status, body) = page(&w, uri);
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("Site suspended"), "{body}");
    }
    let (status, v) = post(&w, "/api/v1/clients/shop-1001/suspend", json!({})).await;
    assert_eq!(status, 409, "suspended twice: {v}");
    let (status, v) = post(
        &w,
        "/api/v1/sites",
        json!({"uri": w.site_uri("three"), "platform": berth_tests::PLATFORM, "client": "shop-1001"}),
    )
    .await;
    assert_eq!(status, 409, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("suspended"), "{v}");

    // It pays again: unsuspended (by the CLI), the sites serve as before.
    let out = w
        .berth_ok(&["--json", "clients", "unsuspend", "shop-1001"])
        .await;
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["client"]["status"], "active", "{v}");
    all_succeed(&w, &v).await;
    for uri in &uris {
        let (status, body) = page(&w, uri);
        assert_eq!(status, 200, "{body}");
        assert!(body.contains(&format!("<h1>{uri}</h1>")), "{body}");
    }

    // It cancels: suspended at once, deleted by the scheduler after the grace, each site
    // with a backup first that stays.
    let (status, v) = post(
        &w,
        "/api/v1/clients/shop-1001/cancel",
        json!({"grace_seconds": 3}),
    )
    .await;
    assert_eq!(status, 202, "{v}");
    assert_eq!(v["client"]["status"], "cancelled");
    assert!(v["client"]["delete_sites_after"].is_string(), "{v}");
    all_succeed(&w, &v).await;
    for uri in &uris {
        assert!(page(&w, uri).1.contains("Site suspended"));
    }
    let (mut scheduler, _) = w.spawn_berth("scheduler", &[("BERTH_SCHEDULER_TICK_MS", "200")]);
    let deadline = Instant::now() + Duration::from_secs(120);
    for uri in &uris {
        loop {
            let site = w.get_json(&format!("/api/v1/sites/{uri}")).await;
            if site["status"] == "deleted" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "not deleted after the grace: {site}"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let (status, _) = page(&w, uri);
        assert_ne!(status, 200, "a deleted site does not serve");
        let backups = w.get_json(&format!("/api/v1/sites/{uri}/backups")).await;
        let kept = backups
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["description"] == "Generated before being deleted")
            .unwrap_or_else(|| panic!("no backup before the delete: {backups}"))
            .clone();
        assert!(
            std::path::Path::new(kept["path"].as_str().unwrap()).exists(),
            "{kept}"
        );
    }
    // Its deletes were queued once, by the scheduler.
    let tasks = w.get_json("/api/v1/tasks?type=delete&limit=50").await;
    let deletes: Vec<&Value> = tasks["items"].as_array().unwrap().iter().collect();
    assert_eq!(deletes.len(), 2, "{tasks}");
    assert!(
        deletes
            .iter()
            .all(|t| t["requested_by"] == "client-cancelled:shop-1001"),
        "{tasks}"
    );
    let _ = scheduler.kill();
    w.stop().await;
}
