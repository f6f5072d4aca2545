//! Suspending a site (what a client's suspension does to each of its sites): it serves the
//! "site suspended" page, distinct from disabled, keeps that page through a verify, runs
//! no cron, and comes back as it was — enabled, or disabled.

use berth_contracts::TaskStatus;
use berth_tests::{World, WorldOptions, log_of};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_suspended_site_serves_the_suspended_page_and_comes_back_as_it_was() {
    let w = World::with_platform(WorldOptions::web(false)).await;
    let uri = w.site_uri("susp");
    w.installed_on_platform(&uri).await;
    let serving = |w: &World| {
        let (status, body) = w.page(&uri);
        assert_eq!(status, 200, "{body}");
        assert!(body.contains(&format!("<h1>{uri}</h1>")), "{body}");
    };
    serving(&w);

    let t = w.run("suspend", &uri, json!({})).await;
    assert_eq!(t.status, TaskStatus::Success, "{}", log_of(&t));
    let suspended = |w: &World| {
        let (status, body) = w.page(&uri);
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("Site suspended"), "{body}");
        assert!(!body.contains("Site disabled"), "{body}");
    };
    suspended(&w);
    let site = w.get_json(&format!("/api/v1/sites/{uri}")).await;
    assert_eq!(site["suspended"], true, "{site}");
    assert_eq!(
        site["status"], "enabled",
        "suspension is not a status: {site}"
    );
    // A verify rewrites the vhost: the site stays suspended; its cron does not run.
    let t = w.run("verify", &uri, json!({})).await;
    assert_eq!(t.status, TaskStatus::Success, "{}", log_of(&t));
    suspended(&w);
    let t = w.run("cron", &uri, json!({})).await;
    assert_eq!(t.status, TaskStatus::Error, "{}", log_of(&t));
    assert!(log_of(&t).contains("is suspended"), "{}", log_of(&t));

    let t = w.run("unsuspend", &uri, json!({})).await;
    assert_eq!(t.status, TaskStatus::Success, "{}", log_of(&t));
    serving(&w);
    assert_eq!(
        w.get_json(&format!("/api/v1/sites/{uri}")).await["suspended"],
        false
    );

    // A disabled site suspended and unsuspended is disabled again, not enabled.
    let t = w.run("disable", &uri, json!({})).await;
    assert_eq!(t.status, TaskStatus::Success, "{}", log_of(&t));
    let t = w.run("suspend", &uri, json!({})).await;
    assert_eq!(t.status, TaskStatus::Success, "{}", log_of(&t));
    suspended(&w);
    let t = w.run("unsuspend", &uri, json!({})).await;
    assert_eq!(t.status, TaskStatus::Success, "{}", log_of(&t));
    let (status, body) = w.page(&uri);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("Site disabled"), "{body}");
    w.stop().await;
}
