//! The storefront's story, end to end on the real servers: an order makes a client (a retry
//! of the order finds the same one), a site is installed for it, the storefront's webhook
//! hears it (signature checked by the test's own HMAC), the customer gets the welcome mail
//! through a real SMTP server and its login link works, the customer stops paying and is
//! suspended (its sites answer "suspended"), pays again (they serve as before), and cancels
//! (its sites are deleted by the scheduler after the grace, each with a backup that stays).

use crate::receiver::{Receiver, signed_by};
use berth_contracts::TaskStatus;
use berth_test_servers::smtp::Smtp;
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
    let (receiver, base) = Receiver::start().await;
    let smtp = Smtp::start(&w.dir.join("smtp")).expect("aiosmtpd (ops/setup.sh installs it)");
    let mut env = crate::webhooks::NOTICES_ENV.to_vec();
    let relay = smtp.url();
    env.push(("BERTH_SMTP_URL", &relay));
    env.push(("BERTH_MAIL_FROM", "Hosting <hosting@shop.example>"));
    let _notices = w.spawn_berth("notices", &env);
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
    // The storefront hears its client's new sites.
    let (status, hook) = post(
        &w,
        "/api/v1/webhooks",
        json!({"url": format!("{base}/shop"), "events": ["site.installed"],
               "client": first["id"]}),
    )
    .await;
    assert_eq!(status, 201, "{hook}");
    let secret = hook["secret"].as_str().unwrap().to_string();

    let uris = [w.site_uri("one"), w.site_uri("two")];
    for uri in &uris {
        w.installed(json!({"uri": uri, "platform": berth_tests::PLATFORM, "client": "shop-1001"}))
            .await;
        let (status, body) = page(&w, uri);
        assert_eq!(status, 200, "{body}");
    }
    // The webhook: signed (checked with the test's own HMAC), about the client's new sites.
    let got = receiver.wait_for("shop", 2, Duration::from_secs(60)).await;
    for g in &got {
        assert!(signed_by(&secret, g), "a bad signature: {g:?}");
        let b: Value = serde_json::from_str(&g.body).unwrap();
        assert_eq!(b["type"], "site.installed", "{b}");
        assert_eq!(b["data"]["client"], first["id"], "{b}");
    }
    // The welcome mail, through the SMTP server, with a login link that logs in once.
    let uri = &uris[0];
    let mail = smtp
        .wait_for(Duration::from_secs(60), |m| {
            m.contains(&format!("Subject: Your site {uri} is ready"))
        })
        .unwrap_or_else(|| panic!("no welcome mail for {uri}: {:?}", smtp.messages()));
    // As a reader shows it: quoted-printable soft breaks undone.
    let text = mail
        .replace("=\r\n", "")
        .replace("=\n", "")
        .replace("=3D", "=");
    assert!(text.contains("To: buyer@example.com"), "{text}");
    assert!(
        text.contains("From: Hosting <hosting@shop.example>"),
        "{text}"
    );
    let link = text
        .lines()
        .find(|l| l.starts_with(&format!("http://{uri}/user/reset/")))
        .unwrap_or_else(|| panic!("no login link in {text}"))
        .trim()
        .to_string();
    let path = link.strip_prefix(&format!("http://{uri}")).unwrap();
    let (status, body, _) = w.http_get(uri, path).unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Logged in"), "{body}");
    let (status, _, _) = w.http_get(uri, path).unwrap();
    assert_eq!(status, 403, "the link works once");
    let second = &uris[1];
    smtp.wait_for(Duration::from_secs(60), |m| {
        m.contains(&format!("Subject: Your site {second} is ready"))
    })
    .expect("the second site's welcome");
    assert_eq!(smtp.messages().len(), 2, "one welcome per site");

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
