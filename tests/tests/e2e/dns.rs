//! DNS follows a site's names (issue 10): an alias a PATCH removes stops resolving once the
//! verify it queues has run, and a deleted site's name stops resolving, the zone berth made
//! for it going with it. Asked of the real named the world runs.

use berth_contracts::TaskStatus;
use berth_tests::{World, WorldOptions};
use serde_json::json;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(120);

/// Asks named until `name` `rtype` answers `want` (rndc loads are asynchronous).
fn dig_until(w: &World, name: &str, rtype: &str, want: &[String]) {
    let named = w.named.as_ref().expect("a world with dns");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = named.dig(name, rtype).unwrap();
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "dig {name} {rtype}: {got:?}, expected {want:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn run(w: &World, task_type: &str, target: &str) {
    let t = w.create_task(task_type, target, json!({})).await.unwrap();
    let t = w.wait_finished(t.id, WAIT).await.unwrap();
    assert!(
        matches!(t.status, TaskStatus::Success | TaskStatus::Warning),
        "{task_type} of {target}: {t:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_removed_alias_and_a_deleted_site_stop_resolving_and_empty_zones_go() {
    let w = World::start_with(WorldOptions {
        web: true,
        dns: true,
        ..Default::default()
    })
    .await
    .unwrap();
    w.server_verified("server_master", "localhost", "bind")
        .await;
    w.add_platform("platform_d10", "drupal10").await.unwrap();

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
    dig_until(&w, &uri, "A", &["127.0.0.1".to_string()]);
    dig_until(&w, &shop, "CNAME", &to_uri);
    dig_until(&w, &other, "CNAME", &to_uri);

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
    dig_until(&w, &other, "CNAME", &[]);
    dig_until(&w, &other_zone, "SOA", &[]);
    dig_until(&w, &shop, "CNAME", &to_uri);

    // Delete (disabled first): the site's names go, and with them its zone.
    run(&w, "disable", &uri).await;
    run(&w, "delete", &uri).await;
    dig_until(&w, &uri, "A", &[]);
    dig_until(&w, &shop, "CNAME", &[]);
    dig_until(&w, &format!("{id}.test"), "SOA", &[]);
    w.stop().await;
}
