//! Signed webhooks end to end: a real `berth serve notices` process delivers the events of
//! real tasks to a real HTTP receiver in the test, which checks the Standard Webhooks
//! signature with its own HMAC (not berth's), fails on purpose, answers 410 or 503 with a
//! Retry-After; the API refuses private targets when they are not allowed and never shows a
//! secret again.

use crate::receiver::{Receiver, signed_by};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use berth_tests::{World, WorldOptions};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// The notices process of these tests: receivers on loopback, short retry tiers.
pub(crate) const NOTICES_ENV: &[(&str, &str)] = &[
    ("BERTH_WEBHOOKS_ALLOW_PRIVATE", "true"),
    ("BERTH_WEBHOOKS_RETRY_MS", "300,300,300"),
    ("BERTH_WEBHOOKS_TIMEOUT_MS", "5000"),
    ("BERTH_WEBHOOKS_SWEEP_S", "5"),
];

async fn create_hook(w: &World, url: &str, events: &[&str]) -> Value {
    let (status, v) = w
        .post_json("/api/v1/webhooks", &json!({"url": url, "events": events}))
        .await;
    assert_eq!(status, 201, "{v}");
    v
}

async fn deliveries(w: &World, hook: &Value) -> Vec<Value> {
    let v = w
        .get_json(&format!(
            "/api/v1/webhooks/{}/deliveries",
            hook["id"].as_str().unwrap()
        ))
        .await;
    v.as_array().unwrap().clone()
}

/// Waits until the endpoint's newest delivery is no longer pending.
async fn settled(w: &World, hook: &Value) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list = deliveries(w, hook).await;
        if let Some(d) = list.first()
            && d["status"] != "pending"
        {
            return d.clone();
        }
        assert!(Instant::now() < deadline, "still pending: {list:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn statuses(d: &Value) -> Vec<i64> {
    d["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status_code"].as_i64().unwrap_or(-1))
        .collect()
}

#[tokio::test]
async fn a_finished_task_is_delivered_signed_and_rotation_signs_with_both_secrets() {
    let w = World::start().await.unwrap();
    let (rx, base) = Receiver::start().await;
    let (_notices, notices_log) = w.spawn_berth("notices", NOTICES_ENV);
    let hook = create_hook(&w, &format!("{base}/ok"), &["task.finished:verify"]).await;
    let secret = hook["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"), "{hook}");
    let id = hook["id"].as_str().unwrap();

    // The secret is shown once: never in a GET.
    for path in [
        "/api/v1/webhooks".to_string(),
        format!("/api/v1/webhooks/{id}"),
    ] {
        let r = w.get(&path).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let text = r.text().await.unwrap();
        assert!(
            !text.contains(&secret[6..]),
            "{path} shows the secret: {text}"
        );
        assert!(!text.contains("\"secret\""), "{path}: {text}");
    }

    let s = w
        .server_verified("server_master", "localhost", "null")
        .await;
    let task = w.finish(&s["verify_task"]).await;
    let got = rx.wait_for("ok", 1, Duration::from_secs(30)).await;
    let first = &got[0];
    assert!(
        signed_by(&secret, first),
        "the signature does not verify: {first:?}"
    );
    let body: Value = serde_json::from_str(&first.body).unwrap();
    assert_eq!(body["type"], "task.finished");
    assert_eq!(body["data"]["task_id"], task.id.to_string());
    assert_eq!(body["data"]["task_type"], "verify");
    assert_eq!(body["data"]["target"], "server_master");
    assert_eq!(body["data"]["status"], "success");
    assert_eq!(body["data"]["trace_id"], task.trace_id);
    assert_eq!(
        first.headers["webhook-id"].to_str().unwrap(),
        body["id"].as_str().unwrap()
    );
    let ts: i64 = first.headers["webhook-timestamp"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((chrono::Utc::now().timestamp() - ts).abs() < 60);
    let traceparent = first.headers["traceparent"].to_str().unwrap();
    assert!(
        traceparent.contains(&task.trace_id),
        "{traceparent} does not carry {}",
        task.trace_id
    );
    // A tampered body does not verify with the same check.
    let mut tampered = first.clone();
    tampered.body = tampered.body.replace("success", "error");
    assert!(!signed_by(&secret, &tampered));

    let d = settled(&w, &hook).await;
    assert_eq!(d["status"], "delivered", "{d}");
    assert_eq!(statuses(&d), vec![200]);
    assert!(d["attempts"][0]["latency_ms"].as_i64().unwrap() >= 0);

    // Rotation: the new secret is shown once; during the grace both sign each delivery.
    let (status, rotated) = w
        .post_json(&format!("/api/v1/webhooks/{id}/rotate-secret"), &json!({}))
        .await;
    assert_eq!(status, 200, "{rotated}");
    let new_secret = rotated["secret"].as_str().unwrap().to_string();
    assert_ne!(new_secret, secret);
    let shown = w.get_json(&format!("/api/v1/webhooks/{id}")).await;
    assert!(!shown.to_string().contains(&new_secret[6..]));
    assert!(shown["previous_secret_until"].is_string(), "{shown}");
    let again = w.run("verify", "server_master", json!({})).await;
    let got = rx.wait_for("ok", 2, Duration::from_secs(30)).await;
    let second = &got[1];
    let body: Value = serde_json::from_str(&second.body).unwrap();
    assert_eq!(body["data"]["task_id"], again.id.to_string());
    assert_eq!(
        second.headers["webhook-signature"]
            .to_str()
            .unwrap()
            .split(' ')
            .count(),
        2
    );
    assert!(
        signed_by(&new_secret, second),
        "the new secret does not verify"
    );
    assert!(
        signed_by(&secret, second),
        "the old secret does not verify during the grace"
    );
    let stranger = format!("whsec_{}", B64.encode([7u8; 32]));
    assert!(!signed_by(&stranger, second));

    // Neither secret is stored in the clear, logged, or sent through the broker.
    for s in [&secret, &new_secret] {
        let key = &s[6..];
        let (n,): (i64,) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM webhook_endpoints e WHERE e::text LIKE '%' || $1 || '%')
                  + (SELECT count(*) FROM webhook_deliveries d WHERE d::text LIKE '%' || $1 || '%')
                  + (SELECT count(*) FROM webhook_attempts a WHERE a::text LIKE '%' || $1 || '%')
                  + (SELECT count(*) FROM outbox o WHERE o::text LIKE '%' || $1 || '%')",
        )
        .bind(key)
        .fetch_one(&w.store.pool)
        .await
        .unwrap();
        assert_eq!(n, 0, "a secret in the clear in PostgreSQL");
        let log = std::fs::read_to_string(&notices_log).unwrap();
        assert!(log.contains("webhook attempt"), "the notices log: {log}");
        assert!(!log.contains(key), "a secret in the notices log");
    }
    w.stop().await;
}

#[tokio::test]
async fn failures_are_retried_410_disables_and_retry_after_is_honoured() {
    let w = World::start().await.unwrap();
    let (rx, base) = Receiver::start().await;
    rx.script("flaky", &[500, 500]);
    rx.script("gone", &[410]);
    rx.script("busy", &[503]);
    let _notices = w.spawn_berth("notices", NOTICES_ENV);
    let flaky = create_hook(&w, &format!("{base}/flaky"), &["task.finished"]).await;
    let gone = create_hook(&w, &format!("{base}/gone"), &["task.*"]).await;
    let busy = create_hook(&w, &format!("{base}/busy"), &["*"]).await;
    let never = create_hook(&w, &format!("{base}/never"), &["site.*"]).await;

    w.server_verified("server_master", "localhost", "null")
        .await;

    // Two 500s, then the third attempt (a 300 ms tier after each) is delivered.
    let got = rx.wait_for("flaky", 3, Duration::from_secs(30)).await;
    let d = settled(&w, &flaky).await;
    assert_eq!(d["status"], "delivered", "{d}");
    assert_eq!(statuses(&d), vec![500, 500, 200], "{d}");
    assert_eq!(d["attempts"][0]["error"], "HTTP 500");
    let ids: Vec<&str> = got
        .iter()
        .map(|g| g.headers["webhook-id"].to_str().unwrap())
        .collect();
    assert!(ids.iter().all(|i| *i == ids[0]), "one webhook-id: {ids:?}");

    // 410: one attempt, the endpoint disabled with the reason.
    let d = settled(&w, &gone).await;
    assert_eq!(d["status"], "failed", "{d}");
    assert_eq!(statuses(&d), vec![410]);
    let shown = w
        .get_json(&format!(
            "/api/v1/webhooks/{}",
            gone["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(shown["enabled"], false, "{shown}");
    assert!(
        shown["disabled_reason"].as_str().unwrap().contains("410"),
        "{shown}"
    );

    // 503 with Retry-After: 2: the next attempt waits 2 s, not the 300 ms tier.
    let got = rx.wait_for("busy", 2, Duration::from_secs(30)).await;
    let gap = got[1].at - got[0].at;
    assert!(
        gap >= Duration::from_millis(1900) && gap < Duration::from_secs(6),
        "gap after Retry-After: 2 was {gap:?}"
    );
    let d = settled(&w, &busy).await;
    assert_eq!(statuses(&d), vec![503, 200], "{d}");

    // A filter that does not match gets nothing.
    assert!(rx.got("never").is_empty());
    assert!(deliveries(&w, &never).await.is_empty());

    // Redelivery: a new delivery of the same event (same webhook-id), delivered.
    let first = deliveries(&w, &flaky).await[0].clone();
    let (status, re) = w
        .post_json(
            &format!(
                "/api/v1/webhook-deliveries/{}/redeliver",
                first["id"].as_str().unwrap()
            ),
            &json!({}),
        )
        .await;
    assert_eq!(status, 202, "{re}");
    assert_eq!(re["redelivery_of"], first["id"]);
    let got = rx.wait_for("flaky", 4, Duration::from_secs(30)).await;
    assert_eq!(got[3].headers["webhook-id"].to_str().unwrap(), ids[0]);

    // The disabled endpoint hears nothing more.
    w.run("verify", "server_master", json!({})).await;
    rx.wait_for("flaky", 5, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.got("gone").len(), 1);
    w.stop().await;
}

#[tokio::test]
async fn a_notices_process_killed_during_an_attempt_loses_no_delivery() {
    let w = World::start().await.unwrap();
    let (rx, base) = Receiver::start().await;
    rx.script("slow", &[0]);
    let env = &[
        ("BERTH_WEBHOOKS_ALLOW_PRIVATE", "true"),
        ("BERTH_WEBHOOKS_RETRY_MS", "300,300,300"),
        ("BERTH_WEBHOOKS_TIMEOUT_MS", "2000"),
        ("BERTH_WEBHOOKS_SWEEP_S", "2"),
    ];
    let (mut first, _) = w.spawn_berth("notices", env);
    let hook = create_hook(&w, &format!("{base}/slow"), &["task.finished"]).await;
    let s = w
        .create_bare_server("server_master", "localhost")
        .await
        .unwrap();
    w.finish(&s["verify_task"]).await;
    // The receiver holds the first attempt; the process dies in it (SIGKILL): no answer,
    // no record, its wake-up not acked and its lease held.
    rx.wait_for("slow", 1, Duration::from_secs(30)).await;
    first.kill().unwrap();
    first.wait().unwrap();
    let pending = deliveries(&w, &hook).await;
    assert_eq!(pending[0]["status"], "pending", "{pending:?}");
    assert_eq!(statuses(&pending[0]), Vec::<i64>::new());
    // Another process takes over: once the lease has run out, its sweep wakes the delivery.
    let started = Instant::now();
    let _second = w.spawn_berth("notices", env);
    let got = rx.wait_for("slow", 2, Duration::from_secs(60)).await;
    assert_eq!(
        got[0].headers["webhook-id"], got[1].headers["webhook-id"],
        "the same delivery, attempted again"
    );
    let d = settled(&w, &hook).await;
    assert_eq!(d["status"], "delivered", "{d}");
    assert_eq!(
        statuses(&d),
        vec![200],
        "the killed attempt left no record: {d}"
    );
    eprintln!("delivered {:?} after the takeover", started.elapsed());
    w.stop().await;
}

#[tokio::test]
async fn private_targets_and_bad_filters_are_refused_with_nothing_written() {
    let w = World::start_with(WorldOptions {
        workers: false,
        webhooks_allow_private: false,
        ..WorldOptions::default()
    })
    .await
    .unwrap();
    for (url, says) in [
        ("http://127.0.0.1:9/in", "loopback"),
        ("http://localhost:9/in", "loopback"),
        ("http://10.1.2.3/in", "private"),
        ("http://192.168.0.10/in", "private"),
        ("http://169.254.169.254/latest", "link-local"),
        ("http://[::1]/in", "loopback"),
        ("http://[fd00::1]/in", "unique-local"),
        ("ftp://example.com/in", "http:// or https://"),
        ("https://example.com/in\u{0}", "control characters"),
    ] {
        let (status, v) = w
            .post_json(
                "/api/v1/webhooks",
                &json!({"url": url, "events": ["task.finished"]}),
            )
            .await;
        assert_eq!(status, 422, "{url}: {v}");
        let detail = v["detail"].as_str().unwrap();
        assert!(detail.contains(says), "{url}: {detail}");
    }
    for events in [
        json!([]),
        json!(["task.done"]),
        json!(["task.finished:frob"]),
    ] {
        let (status, v) = w
            .post_json(
                "/api/v1/webhooks",
                &json!({"url": "https://hooks.example.com/in", "events": events}),
            )
            .await;
        assert_eq!(status, 422, "{events}: {v}");
        assert!(v["detail"].as_str().unwrap().starts_with("events"), "{v}");
    }
    assert_eq!(w.get_json("/api/v1/webhooks").await, json!([]));
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM webhook_endpoints")
        .fetch_one(&w.store.pool)
        .await
        .unwrap();
    assert_eq!(n, 0);
    w.stop().await;
}

#[tokio::test]
async fn site_events_reach_their_clients_endpoints_only() {
    let w = World::with_platform(WorldOptions {
        web: true,
        delete_enabled_sites: true,
        ..WorldOptions::default()
    })
    .await;
    let (rx, base) = Receiver::start().await;
    let _notices = w.spawn_berth("notices", NOTICES_ENV);
    // Two clients; endpoints are bound by id, the site names its client by name.
    let mut ids = Vec::new();
    for name in ["mine-co", "other-co"] {
        let (status, c) = w
            .post_json("/api/v1/clients", &json!({ "name": name }))
            .await;
        assert_eq!(status, 201, "{c}");
        ids.push(c["id"].as_str().unwrap().to_string());
    }
    let (client, other) = (ids[0].clone(), ids[1].clone());
    // An endpoint bound to a client that does not exist is refused.
    let (status, v) = w
        .post_json(
            "/api/v1/webhooks",
            &json!({"url": format!("{base}/x"), "events": ["*"],
                    "client": uuid::Uuid::now_v7().to_string()}),
        )
        .await;
    assert_eq!(status, 422, "{v}");
    let hook = |path: &str, client: Option<&str>, events: Value| {
        let mut body = json!({"url": format!("{base}/{path}"), "events": events});
        if let Some(c) = client {
            body["client"] = json!(c);
        }
        body
    };
    let mut made = Vec::new();
    for body in [
        hook("mine", Some(&client), json!(["site.*", "backup.made"])),
        hook("theirs", Some(&other), json!(["*"])),
        hook("all", None, json!(["site.installed"])),
    ] {
        let (status, v) = w.post_json("/api/v1/webhooks", &body).await;
        assert_eq!(status, 201, "{v}");
        made.push(v["id"].as_str().unwrap().to_string());
    }
    // The other client's own token sees its endpoint only; another's is as if it did not
    // exist, and it cannot bind one to another client.
    let (status, t) = w
        .post_json(
            "/api/v1/tokens",
            &json!({"name": "other-hooks", "scopes": ["webhooks:write"], "client": "other-co"}),
        )
        .await;
    assert_eq!(status, 201, "{t}");
    let theirs_token = t["token"].as_str().unwrap().to_string();
    let as_other = |method: reqwest::Method, path: String| {
        w.http
            .request(method, w.url(&path))
            .bearer_auth(&theirs_token)
    };
    let list: Value = as_other(reqwest::Method::GET, "/api/v1/webhooks".into())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let seen: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_str().unwrap())
        .collect();
    assert_eq!(seen, [made[1].as_str()], "{list}");
    for path in [
        format!("/api/v1/webhooks/{}", made[0]),
        format!("/api/v1/webhooks/{}/deliveries", made[2]),
    ] {
        let r = as_other(reqwest::Method::GET, path.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 404, "{path}");
    }
    let r = as_other(
        reqwest::Method::DELETE,
        format!("/api/v1/webhooks/{}", made[0]),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let r = as_other(reqwest::Method::POST, "/api/v1/webhooks".into())
        .json(&hook("x", Some(&client), json!(["*"])))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 422, "bound to another client");
    let uri = w.site_uri("hooked");
    w.installed(
        json!({"uri": uri, "platform": berth_tests::fixtures::PLATFORM,
        "client": "mine-co", "client_email": "owner@example.com"}),
    )
    .await;
    let backup = w.run_success("backup", &uri, json!({})).await;
    let backups = w.get_json(&format!("/api/v1/sites/{uri}/backups")).await;
    w.run_success("delete", &uri, json!({})).await;

    // mine: installed, the backup, the delete's own backup, deleted.
    let got = rx.wait_for("mine", 4, Duration::from_secs(60)).await;
    let bodies: Vec<Value> = got
        .iter()
        .map(|g| serde_json::from_str(&g.body).unwrap())
        .collect();
    // Delivered concurrently: in the order of their events unless they are close.
    let mut kinds: Vec<&str> = bodies.iter().map(|b| b["type"].as_str().unwrap()).collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "backup.made",
            "backup.made",
            "site.deleted",
            "site.installed"
        ],
        "{bodies:#?}"
    );
    let of = |kind: &str| {
        bodies
            .iter()
            .filter(|b| b["type"] == kind)
            .map(|b| b["data"].clone())
            .collect::<Vec<_>>()
    };
    let installed = &of("site.installed")[0];
    assert_eq!(installed["site"], uri);
    assert_eq!(installed["client"], client);
    assert_eq!(installed["client_email"], "owner@example.com");
    assert!(
        installed["login_link"]
            .as_str()
            .is_some_and(|l| l.contains("/user/reset/")),
        "the welcome's login link: {installed}"
    );
    let made = of("backup.made")
        .into_iter()
        .find(|m| m["task_id"] == backup.id.to_string())
        .expect("the backup task's backup.made");
    let listed = backups
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["id"] == made["backup_id"])
        .unwrap_or_else(|| panic!("{made} not in {backups}"));
    assert_eq!(listed["size"], made["size"]);
    assert!(made["size"].as_i64().unwrap() > 0);
    assert_eq!(of("site.deleted")[0]["site"], uri);

    // all (no client): the install only; theirs (another client): nothing of this site.
    let got = rx.wait_for("all", 1, Duration::from_secs(30)).await;
    let b: Value = serde_json::from_str(&got[0].body).unwrap();
    assert_eq!(b["type"], "site.installed");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(rx.got("all").len(), 1);
    assert!(
        rx.got("theirs").is_empty(),
        "another client's endpoint heard this site"
    );
    w.stop().await;
}

#[tokio::test]
async fn the_cli_manages_endpoints_and_shows_a_secret_only_when_made() {
    let w = World::start_with(WorldOptions {
        workers: false,
        ..WorldOptions::default()
    })
    .await
    .unwrap();
    let made = w
        .berth_ok(&[
            "webhooks",
            "create",
            "--url",
            "http://127.0.0.1:9/cli",
            "--event",
            "site.*",
            "--event",
            "task.finished:install:failed",
        ])
        .await;
    let secret = made
        .lines()
        .find_map(|l| l.strip_prefix("secret"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| panic!("no secret line: {made}"));
    assert!(secret.starts_with("whsec_"), "{made}");
    let id = made
        .lines()
        .find_map(|l| l.strip_prefix("id"))
        .map(|s| s.trim().to_string())
        .unwrap();
    let list = w.berth_ok(&["webhooks", "list"]).await;
    assert!(
        list.contains(&id) && list.contains("http://127.0.0.1:9/cli"),
        "{list}"
    );
    let shown = w.berth_ok(&["webhooks", "show", &id]).await;
    assert!(shown.contains("task.finished:install:failed"), "{shown}");
    assert!(!shown.contains(&secret[6..]) && !list.contains(&secret[6..]));
    let off = w.berth_ok(&["webhooks", "update", &id, "--disable"]).await;
    assert!(off.contains("disabled through the API"), "{off}");
    let rotated = w.berth_ok(&["webhooks", "rotate-secret", &id]).await;
    assert!(
        rotated.contains("whsec_") && !rotated.contains(&secret[6..]),
        "{rotated}"
    );
    let bad = w
        .berth(&[
            "webhooks",
            "create",
            "--url",
            "http://127.0.0.1:9/x",
            "--event",
            "nope",
        ])
        .await;
    assert!(!bad.status.success());
    assert!(
        berth_tests::fixtures::output_text(&bad).contains("unknown event type `nope`"),
        "{}",
        berth_tests::fixtures::output_text(&bad)
    );
    w.berth_ok(&["webhooks", "delete", &id]).await;
    assert_eq!(w.get_json("/api/v1/webhooks").await, json!([]));
    w.stop().await;
}

#[tokio::test]
async fn a_queued_task_cancelled_through_the_api_is_told_as_finished() {
    let w = World::start().await.unwrap();
    let (rx, base) = Receiver::start().await;
    let _notices = w.spawn_berth("notices", NOTICES_ENV);
    create_hook(
        &w,
        &format!("{base}/cancelled"),
        &["task.finished:*:cancelled"],
    )
    .await;
    let s = w
        .create_bare_server("server_master", "localhost")
        .await
        .unwrap();
    w.finish(&s["verify_task"]).await;
    // One task at a time per target: the second waits, queued, behind the sleeping first.
    let first = w
        .create_task("noop", "server_master", json!({"sleep_ms": 4_000}))
        .await
        .unwrap();
    let second = w
        .create_task("noop", "server_master", json!({}))
        .await
        .unwrap();
    let r = w
        .post(&format!("/api/v1/tasks/{}/cancel", second.id), &json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        200,
        "cancelled while queued: {}",
        r.text().await.unwrap()
    );
    let got = rx.wait_for("cancelled", 1, Duration::from_secs(30)).await;
    let body: Value = serde_json::from_str(&got[0].body).unwrap();
    assert_eq!(body["data"]["task_id"], second.id.to_string());
    assert_eq!(body["data"]["status"], "cancelled");
    assert_eq!(body["data"]["task_type"], "noop");
    assert_eq!(body["data"]["trace_id"], second.trace_id);
    w.wait_finished(first.id, Duration::from_secs(60))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        rx.got("cancelled").len(),
        1,
        "the noop that succeeded is not a cancel"
    );
    w.stop().await;
}

#[tokio::test]
async fn the_delivery_log_forgets_finished_deliveries_after_its_keep_and_keeps_pending_ones() {
    let w = World::start().await.unwrap();
    let (rx, base) = Receiver::start().await;
    rx.script("down", &[500]);
    // A log kept 3 s, swept every second; a failed attempt waits a minute for its retry.
    let _notices = w.spawn_berth(
        "notices",
        &[
            ("BERTH_WEBHOOKS_ALLOW_PRIVATE", "true"),
            ("BERTH_WEBHOOKS_RETRY_MS", "60000"),
            ("BERTH_WEBHOOKS_TIMEOUT_MS", "5000"),
            ("BERTH_WEBHOOKS_SWEEP_S", "1"),
            ("BERTH_WEBHOOKS_LOG_KEEP_S", "3"),
        ],
    );
    let ok = create_hook(&w, &format!("{base}/ok"), &["task.finished"]).await;
    let down = create_hook(&w, &format!("{base}/down"), &["task.finished"]).await;
    w.server_verified("server_master", "localhost", "null")
        .await;

    // Delivered, and logged with its attempt.
    let d = settled(&w, &ok).await;
    assert_eq!(d["status"], "delivered", "{d}");
    assert_eq!(statuses(&d), vec![200], "{d}");
    let delivered = d["id"].as_str().unwrap().to_string();
    rx.wait_for("down", 1, Duration::from_secs(30)).await;

    // Past the keep, the sweep forgets it; the delivery waiting for its retry stays.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !deliveries(&w, &ok).await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the finished delivery is still logged after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let waiting = deliveries(&w, &down).await;
    assert_eq!(waiting.len(), 1, "{waiting:?}");
    assert_eq!(waiting[0]["status"], "pending", "{waiting:?}");
    assert_eq!(statuses(&waiting[0]), vec![500], "{waiting:?}");

    // A forgotten delivery cannot be redelivered: the API says it is not there.
    let r = w
        .post(
            &format!("/api/v1/webhook-deliveries/{delivered}/redeliver"),
            &json!({}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
}
