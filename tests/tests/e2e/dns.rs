//! DNS follows a site's names (issue 10): an alias a PATCH removes stops resolving once the
//! verify it queues has run, and a deleted site's name stops resolving, the zone berth made
//! for it going with it. Asked of the real named the world runs.

use berth_contracts::TaskStatus;
use berth_tests::{World, WorldOptions};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_removed_alias_and_a_deleted_site_stop_resolving_and_empty_zones_go() {
    let w = World::with_platform(WorldOptions::web(true)).await;

    let id = &w.id;
    let uri = format!("www.{id}.test");
    let shop = format!("shop.{id}.test");
    // An alias in a zone of its own, which berth makes for it.
    let other_zone = format!("{id}x.test");
    let other = format!("www.{other_zone}");
    let (_, task) = w
        .install_site(json!({
            "uri": uri, "platform": "platform_d10", "profile": "standard",
            "aliases": [shop, other]
        }))
        .await
        .unwrap();
    assert_eq!(task.status, TaskStatus::Success, "{task:#?}");
    let to_uri = vec![format!("{uri}.")];
    w.dig_until(&uri, "A", &["127.0.0.1".to_string()]);
    w.dig_until(&shop, "CNAME", &to_uri);
    w.dig_until(&other, "CNAME", &to_uri);

    // A PATCH drops both aliases but shop: the verify it queues removes their records.
    let r = w
        .http
        .patch(w.url(&format!("/api/v1/sites/{uri}")))
        .bearer_auth(&w.token)
        .json(&json!({"aliases": [shop]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let changed: serde_json::Value = r.json().await.unwrap();
    let verify = w.finish(&changed["task"]).await;
    assert_eq!(verify.status, TaskStatus::Success, "{verify:#?}");
    w.dig_until(&other, "CNAME", &[]);
    w.dig_until(&other_zone, "SOA", &[]);
    w.dig_until(&shop, "CNAME", &to_uri);

    // Delete (disabled first): the site's names go, and with them its zone.
    w.run_ok("disable", &uri, json!({})).await;
    w.run_ok("delete", &uri, json!({})).await;
    w.dig_until(&uri, "A", &[]);
    w.dig_until(&shop, "CNAME", &[]);
    w.dig_until(&format!("{id}.test"), "SOA", &[]);
    w.stop().await;
}
