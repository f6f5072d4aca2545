//! Clients and scoped tokens on the real servers: a client-bound token tried on every
//! operation of the served OpenAPI document against another client's resources reaches
//! none of them (404, a refusal, or a list without them); a read-only token is refused every
//! mutating operation (403) and writes nothing; quotas refuse a site past them with a 409
//! that writes nothing, also for two concurrent creates; a storefront's retried "create
//! client" makes one client; a guarded site refuses disable and delete; a PATCH with an
//! Idempotency-Key answers the same twice and changes once; the audit log records the
//! mutating calls without a secret.

use crate::receiver::Receiver;
use crate::webhooks::NOTICES_ENV;
use berth_contracts::TaskStatus;
use berth_tests::TASK_WAIT as WAIT;
use berth_tests::{World, WorldOptions, row_counts};
use serde_json::{Value, json};

const METHODS: [&str; 4] = ["get", "post", "patch", "delete"];

/// One request with `token`: (status, headers' `idempotent-replayed`, body text).
async fn call(
    w: &World,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
    key: Option<&str>,
) -> (u16, bool, String) {
    let mut req = w
        .http
        .request(method.to_uppercase().parse().unwrap(), w.url(path))
        .bearer_auth(token);
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    if let Some(k) = key {
        req = req.header("Idempotency-Key", k);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let replayed = r.headers().contains_key("idempotent-replayed");
    (status, replayed, r.text().await.unwrap())
}

async fn call_json(w: &World, token: &str, method: &str, path: &str, body: Value) -> (u16, Value) {
    let (s, _, t) = call(w, token, method, path, Some(&body), None).await;
    (s, serde_json::from_str(&t).unwrap_or(Value::Null))
}

async fn get_json(w: &World, token: &str, path: &str) -> (u16, Value) {
    let (s, _, t) = call(w, token, "get", path, None, None).await;
    (s, serde_json::from_str(&t).unwrap_or(Value::Null))
}

/// A token made by the admin through the API: (value, id).
async fn token(w: &World, name: &str, scopes: &[&str], client: Option<&str>) -> (String, String) {
    let mut body = json!({"name": name, "scopes": scopes});
    if let Some(c) = client {
        body["client"] = c.into();
    }
    let (s, v) = call_json(w, &w.token, "post", "/api/v1/tokens", body).await;
    assert_eq!(s, 201, "token {name}: {v}");
    (
        v["token"].as_str().unwrap().to_string(),
        v["id"].as_str().unwrap().to_string(),
    )
}

async fn client(w: &World, body: Value) -> (u16, Value) {
    call_json(w, &w.token, "post", "/api/v1/clients", body).await
}

const CLIENT_SCOPES: [&str; 8] = [
    "sites:write",
    "backups:write",
    "tasks:write",
    "schedules:write",
    "platforms:read",
    "clients:read",
    "webhooks:write",
    "tokens:write",
];

/// A documented path with its named parameters filled: the site `uri`, the client `client`,
/// beta's schedule, the world's server, platform and backup target (`{id}` is the caller's).
fn fill(path: &str, uri: &str, client: &str) -> String {
    let name = if path.starts_with("/api/v1/schedules") {
        "beta-nightly"
    } else if path.starts_with("/api/v1/clients") {
        client
    } else if path.starts_with("/api/v1/servers") {
        "server_master"
    } else if path.starts_with("/api/v1/backup-targets") {
        "offsite"
    } else {
        "platform_d10"
    };
    path.replace("{uri}", uri)
        .replace("{other}", "platform_d10")
        .replace("{name}", name)
}

fn task_id(v: &Value) -> uuid::Uuid {
    v["task"]
        .as_str()
        .or(v["id"].as_str())
        .unwrap_or_else(|| panic!("no task in {v}"))
        .parse()
        .unwrap()
}

/// The documented operations: (method, path).
async fn operations(w: &World) -> Vec<(String, String)> {
    let doc = w.get_json("/api/v1/openapi.json").await;
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        if !path.starts_with("/api/v1/") || path == "/api/v1/openapi.json" {
            continue;
        }
        for m in METHODS {
            if item.get(m).is_some() {
                out.push((m.to_string(), path.clone()));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_token_reaches_nothing_of_another_client_and_a_read_only_token_changes_nothing() {
    let w = World::with_platform(WorldOptions::web(false)).await;
    for name in ["alpha", "beta"] {
        let (s, v) = client(
            &w,
            json!({"name": name, "email": format!("{name}@example.com")}),
        )
        .await;
        assert_eq!(s, 201, "{v}");
    }
    let (ta, _) = token(&w, "alpha-shop", &CLIENT_SCOPES, Some("alpha")).await;
    let (tb, tb_id) = token(&w, "beta-shop", &CLIENT_SCOPES, Some("beta")).await;

    // Each client installs its own site with its own token (no `client` given: its own).
    let mut installs = Vec::new();
    for (tok, label) in [(&ta, "alpha"), (&tb, "beta")] {
        let uri = w.site_uri(label);
        let (s, v) = call_json(
            &w,
            tok,
            "post",
            "/api/v1/sites",
            json!({"uri": uri, "platform": "platform_d10"}),
        )
        .await;
        assert_eq!(s, 201, "{v}");
        assert_eq!(v["client"], label, "{v}");
        installs.push(task_id(&v));
    }
    for id in &installs {
        let t = w.wait_finished(*id, WAIT).await.unwrap();
        assert_eq!(t.status, TaskStatus::Success, "{t:#?}");
    }
    let (a_uri, b_uri) = (w.site_uri("alpha"), w.site_uri("beta"));
    // B's resources: a webhook endpoint bound to it, a backup (and its task) whose event
    // the endpoint receives (a delivery), a schedule on its site.
    let (rx, base) = Receiver::start().await;
    let _notices = w.spawn_berth("notices", NOTICES_ENV);
    let beta_id = w.get_json("/api/v1/clients/beta").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let b_hook_url = format!("{base}/beta-hook");
    let (s, v) = call_json(
        &w,
        &tb,
        "post",
        "/api/v1/webhooks",
        json!({"url": b_hook_url, "events": ["backup.made"], "client": beta_id}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let b_hook = v["id"].as_str().unwrap().to_string();
    let (s, v) = call_json(
        &w,
        &tb,
        "post",
        "/api/v1/tasks",
        json!({"type": "backup", "target": b_uri}),
    )
    .await;
    assert_eq!(s, 202, "{v}");
    let b_backup_task = task_id(&v);
    let t = w.wait_finished(b_backup_task, WAIT).await.unwrap();
    assert_eq!(t.status, TaskStatus::Success, "{t:#?}");
    let (_, backups) = get_json(&w, &tb, &format!("/api/v1/sites/{b_uri}/backups")).await;
    let b_backup = backups[0]["id"].as_str().unwrap().to_string();
    rx.wait_for("beta-hook", 1, WAIT).await;
    let (_, delivered) = get_json(&w, &tb, &format!("/api/v1/webhooks/{b_hook}/deliveries")).await;
    let b_delivery = delivered[0]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no delivery in {delivered}"))
        .to_string();
    let (s, v) = call_json(
        &w,
        &tb,
        "post",
        "/api/v1/schedules",
        json!({"name": "beta-nightly", "scope": format!("site:{b_uri}"),
               "expression": "0 3 * * *", "job": {"kind": "backup"}}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    // A client token cannot make a schedule over more than its own sites.
    let (s, v) = call_json(
        &w,
        &ta,
        "post",
        "/api/v1/schedules",
        json!({"name": "alpha-all", "scope": "all", "expression": "0 3 * * *",
               "job": {"kind": "backup"}}),
    )
    .await;
    assert_eq!(s, 422, "{v}");

    // What marks B's things in an answer.
    let b_marks: Vec<String> = vec![
        b_uri.clone(),
        installs[1].to_string(),
        b_backup_task.to_string(),
        b_backup.clone(),
        "beta-nightly".into(),
        tb_id.clone(),
        "beta@example.com".into(),
        b_hook.clone(),
        b_hook_url.clone(),
        b_delivery.clone(),
    ];
    let b_tasks_before: (i64,) = sqlx::query_as("SELECT count(*) FROM tasks WHERE target = $1")
        .bind(&b_uri)
        .fetch_one(&w.store.pool)
        .await
        .unwrap();

    // The `{id}` of B's thing a path names.
    let b_id = |path: &str| {
        if path.starts_with("/api/v1/tokens") {
            tb_id.clone()
        } else if path.starts_with("/api/v1/webhooks") {
            b_hook.clone()
        } else if path.starts_with("/api/v1/webhook-deliveries") {
            b_delivery.clone()
        } else {
            b_backup_task.to_string()
        }
    };
    let ops = operations(&w).await;
    let (mut probes, mut reached) = (0, Vec::new());
    for (method, path) in &ops {
        let url = fill(path, &b_uri, "beta").replace("{id}", &b_id(path));
        // Bodies that name B's things where a body can.
        let body = match (method.as_str(), path.as_str()) {
            ("post", "/api/v1/tasks") => json!({"type": "disable", "target": b_uri}),
            ("post", "/api/v1/sites") => {
                json!({"uri": w.site_uri("stolen"), "platform": "platform_d10", "client": "beta"})
            }
            ("patch", "/api/v1/sites/{uri}") => json!({"guarded": true}),
            ("post", "/api/v1/schedules") => json!({"name": "alpha-steal",
                "scope": format!("site:{b_uri}"), "expression": "0 3 * * *",
                "job": {"kind": "backup"}}),
            ("patch", "/api/v1/schedules/{name}") => json!({"enabled": false}),
            ("post", "/api/v1/tokens") => {
                json!({"name": "steal", "scopes": ["sites:read"], "client": "beta"})
            }
            ("patch", "/api/v1/clients/{name}") => json!({"email": "thief@example.com"}),
            ("post", "/api/v1/clients") => json!({"name": "gamma"}),
            ("post", "/api/v1/webhooks") => {
                json!({"url": format!("{base}/stolen"), "events": ["*"], "client": beta_id})
            }
            ("patch", "/api/v1/webhooks/{id}") => json!({"enabled": false}),
            _ => json!({}),
        };
        let mut candidates = vec![url.clone()];
        if method == "get" && path == "/api/v1/tasks" {
            candidates.push(format!("/api/v1/tasks?target={b_uri}"));
        }
        if method == "get" && path == "/api/v1/sites" {
            candidates.push("/api/v1/sites?client=beta".into());
        }
        for u in candidates {
            probes += 1;
            let body = (method != "get").then_some(&body);
            let (status, _, text) = call(&w, &ta, method, &u, body, None).await;
            // A refusal may echo what was asked (`site `…` not found`); an answer that
            // succeeded must hold nothing of B's, and no write may succeed.
            let ok = (200..300).contains(&status);
            let shows_b = b_marks.iter().any(|m| text.contains(m.as_str()));
            if ok && (shows_b || method != "get") {
                reached.push(format!("{method} {u} -> {status}: {text}"));
            }
            assert!(
                status == 404 || status == 403 || status == 422 || (200..300).contains(&status),
                "{method} {u} -> {status}: {text}"
            );
        }
    }
    // The same reads with B's own token do reach B's things: the probes name real ones.
    let mut own = 0;
    for (method, path) in ops.iter().filter(|(m, _)| m == "get") {
        let url = path
            .replace("{uri}", &b_uri)
            .replace("{name}", "beta-nightly")
            .replace("{id}", &b_id(path));
        if !(path.starts_with("/api/v1/sites")
            || path.starts_with("/api/v1/tasks")
            || path.starts_with("/api/v1/schedules")
            || path.starts_with("/api/v1/webhooks"))
        {
            continue;
        }
        let (status, _, text) = call(&w, &tb, method, &url, None, None).await;
        if status == 200 && b_marks.iter().any(|m| text.contains(m.as_str())) {
            own += 1;
        }
    }
    assert!(own >= 11, "B's own token reached only {own} of its things");
    println!(
        "{probes} probes from client alpha's token at client beta's resources; {} reached (beta's own token: {own} reads reach)",
        reached.len()
    );
    assert!(probes >= 40, "only {probes} probes");
    assert!(reached.is_empty(), "reached:\n{}", reached.join("\n"));
    // Nothing of B's changed: no task queued on its site, not guarded, the schedule on.
    let b_tasks_after: (i64,) = sqlx::query_as("SELECT count(*) FROM tasks WHERE target = $1")
        .bind(&b_uri)
        .fetch_one(&w.store.pool)
        .await
        .unwrap();
    assert_eq!(b_tasks_before, b_tasks_after);
    let b_site = w.get_json(&format!("/api/v1/sites/{b_uri}")).await;
    assert_eq!(b_site["guarded"], false, "{b_site}");
    assert_eq!(b_site["client"], "beta", "{b_site}");
    assert_eq!(
        w.get_json("/api/v1/schedules/beta-nightly").await["enabled"],
        true
    );
    let b_client = w.get_json("/api/v1/clients/beta").await;
    assert_eq!(b_client["email"], "beta@example.com", "{b_client}");
    let hook = w.get_json(&format!("/api/v1/webhooks/{b_hook}")).await;
    assert_eq!(hook["enabled"], true, "{hook}");
    let hooks = w.get_json("/api/v1/webhooks").await;
    assert_eq!(hooks.as_array().unwrap().len(), 1, "{hooks}");
    let (_, delivered) = get_json(&w, &tb, &format!("/api/v1/webhooks/{b_hook}/deliveries")).await;
    assert_eq!(delivered.as_array().unwrap().len(), 1, "{delivered}");
    assert!(
        w.get_json("/api/v1/sites")
            .await
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["uri"] != w.site_uri("stolen"))
    );

    // A's own lists show A's things only; the admin sees both.
    let (_, sites) = get_json(&w, &ta, "/api/v1/sites").await;
    let uris: Vec<&str> = sites
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["uri"].as_str().unwrap())
        .collect();
    assert_eq!(uris, vec![a_uri.as_str()]);
    let (_, tasks) = get_json(&w, &ta, "/api/v1/tasks").await;
    assert_eq!(tasks["total"], 1, "{tasks}");
    assert_eq!(tasks["items"][0]["id"], installs[0].to_string());
    let (_, clients) = get_json(&w, &ta, "/api/v1/clients").await;
    assert_eq!(clients.as_array().unwrap().len(), 1, "{clients}");
    let all = w.get_json("/api/v1/sites").await;
    assert_eq!(all.as_array().unwrap().len(), 2, "{all}");

    // A read-only token: 403 on every mutating operation of the document, nothing written.
    let reads: Vec<String> = [
        "servers",
        "platforms",
        "sites",
        "backups",
        "tasks",
        "clients",
        "webhooks",
        "dead-letters",
        "schedules",
        "audit",
        "tokens",
    ]
    .iter()
    .map(|f| format!("{f}:read"))
    .collect();
    let reads: Vec<&str> = reads.iter().map(String::as_str).collect();
    let (ro, _) = token(&w, "read-only", &reads, None).await;
    let before = row_counts(&w.store).await.unwrap();
    let mut refused = 0;
    for (method, path) in ops.iter().filter(|(m, _)| m != "get") {
        let url = fill(path, &a_uri, "alpha").replace("{id}", &installs[0].to_string());
        let (status, _, text) = call(&w, &ro, method, &url, Some(&json!({})), None).await;
        assert_eq!(status, 403, "{method} {url} with a read-only token: {text}");
        refused += 1;
    }
    println!("a read-only token: {refused} mutating operations, all 403");
    assert!(refused >= 20, "only {refused} mutating operations");
    assert_eq!(
        before,
        row_counts(&w.store).await.unwrap(),
        "a read-only token wrote"
    );
    // It reads.
    let (s, _) = get_json(&w, &ro, "/api/v1/sites").await;
    assert_eq!(s, 200);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quotas_refuse_a_site_past_them_writing_nothing_and_a_storefront_retry_finds_its_client() {
    let w = World::with_platform(WorldOptions::web(false)).await;
    let order = json!({"name": "shop-42", "email": "buyer@example.com",
                       "storefront": "shop.example", "external_ref": "order-42",
                       "quotas": {"max_sites": 1}});
    let (s1, c1) = client(&w, order.clone()).await;
    assert_eq!(s1, 201, "{c1}");
    let (s2, c2) = client(&w, order).await;
    assert_eq!(s2, 200, "the retried order answers the client made: {c2}");
    assert_eq!(c1["id"], c2["id"]);
    let (n,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM clients WHERE external_ref = 'order-42'")
            .fetch_one(&w.store.pool)
            .await
            .unwrap();
    assert_eq!(n, 1);

    let first = w.site_uri("first");
    let site = w
        .installed(json!({"uri": first, "platform": "platform_d10", "client": "shop-42"}))
        .await;
    assert_eq!(site["client"], "shop-42", "{site}");
    let over = w.site_uri("over");
    let before = row_counts(&w.store).await.unwrap();
    let (s, p) = call_json(
        &w,
        &w.token,
        "post",
        "/api/v1/sites",
        json!({"uri": over, "platform": "platform_d10", "client": "shop-42"}),
    )
    .await;
    berth_tests::assert_quota_exceeded(s, &p, "max_sites", 1, 1);
    assert_eq!(
        before,
        row_counts(&w.store).await.unwrap(),
        "a refused site wrote something"
    );
    let (rows,): (i64,) = sqlx::query_as("SELECT count(*) FROM sites WHERE uri = $1")
        .bind(&over)
        .fetch_one(&w.store.pool)
        .await
        .unwrap();
    let (tasks,): (i64,) = sqlx::query_as("SELECT count(*) FROM tasks WHERE target = $1")
        .bind(&over)
        .fetch_one(&w.store.pool)
        .await
        .unwrap();
    assert_eq!((rows, tasks), (0, 0));
    let shown = w.get_json("/api/v1/clients/shop-42").await;
    assert_eq!(shown["usage"]["sites"], 1, "{shown}");
    assert_eq!(shown["quotas"]["max_sites"], 1, "{shown}");

    // Room for one more, asked twice at once: the client's row lock lets one through.
    let (s, v) = call_json(
        &w,
        &w.token,
        "patch",
        "/api/v1/clients/shop-42",
        json!({"max_sites": 2}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let bodies: Vec<Value> = (0..2)
        .map(|i| {
            json!({"uri": w.site_uri(&format!("race{i}")), "platform": "platform_d10",
                        "client": "shop-42"})
        })
        .collect();
    let (r0, r1) = tokio::join!(
        call_json(&w, &w.token, "post", "/api/v1/sites", bodies[0].clone()),
        call_json(&w, &w.token, "post", "/api/v1/sites", bodies[1].clone())
    );
    let mut statuses = vec![r0.0, r1.0];
    statuses.sort();
    assert_eq!(statuses, vec![201, 409], "{r0:?} {r1:?}");
    let shown = w.get_json("/api/v1/clients/shop-42").await;
    assert_eq!(shown["usage"]["sites"], 2, "{shown}");
    // Lifted, it takes more.
    let (s, _) = call_json(
        &w,
        &w.token,
        "patch",
        "/api/v1/clients/shop-42",
        json!({"max_sites": null}),
    )
    .await;
    assert_eq!(s, 200);
    let (s, v) = call_json(
        &w,
        &w.token,
        "post",
        "/api/v1/sites",
        json!({"uri": over, "platform": "platform_d10", "client": "shop-42"}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_guarded_site_refuses_disable_and_delete_a_patch_replays_and_the_audit_log_records_it() {
    let w = World::with_platform(WorldOptions::web(false)).await;
    let uri = w.site_uri("guarded");
    w.installed_on_platform(&uri).await;
    let path = format!("/api/v1/sites/{uri}");
    let guard = json!({"guarded": true});
    let (s1, r1, t1) = call(&w, &w.token, "patch", &path, Some(&guard), Some("guard-1")).await;
    assert_eq!(s1, 200, "{t1}");
    assert!(!r1);
    let (s2, r2, t2) = call(&w, &w.token, "patch", &path, Some(&guard), Some("guard-1")).await;
    assert_eq!((s2, r2), (200, true), "{t2}");
    let (v1, v2): (Value, Value) = (
        serde_json::from_str(&t1).unwrap(),
        serde_json::from_str(&t2).unwrap(),
    );
    assert_eq!(v1, v2, "the replay answers the first answer");
    assert_eq!(v1["guarded"], true);
    // Changed once: the site's updated_at is the first answer's.
    let now = w.get_json(&path).await;
    assert_eq!(now["updated_at"], v1["updated_at"], "{now}");
    // Another body under the same key is refused.
    let (s, _, _) = call(
        &w,
        &w.token,
        "patch",
        &path,
        Some(&json!({"guarded": false})),
        Some("guard-1"),
    )
    .await;
    assert_eq!(s, 422);

    for ty in ["disable", "delete"] {
        let (s, p) = call_json(
            &w,
            &w.token,
            "post",
            "/api/v1/tasks",
            json!({"type": ty, "target": uri}),
        )
        .await;
        assert_eq!(s, 409, "{ty}: {p}");
        assert!(
            p["detail"]
                .as_str()
                .unwrap()
                .contains("guarded; unguard it first"),
            "{p}"
        );
    }
    let (s, _, text) = call(&w, &w.token, "delete", &path, None, None).await;
    assert_eq!(s, 409, "{text}");
    assert!(text.contains("guarded"), "{text}");
    // A DELETE with an Idempotency-Key replays too (here: the refusal is not kept, so the
    // same key can be used again once unguarded).
    let (s, v) = call_json(&w, &w.token, "patch", &path, json!({"guarded": false})).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = call_json(
        &w,
        &w.token,
        "post",
        "/api/v1/tasks",
        json!({"type": "disable", "target": uri}),
    )
    .await;
    assert_eq!(s, 202, "{v}");
    let disable_task = v["id"].as_str().unwrap().to_string();
    w.wait_finished(disable_task.parse().unwrap(), WAIT)
        .await
        .unwrap();

    // The audit log: each mutating call, with its key, status and task; never a secret.
    let (s, audit) = get_json(
        &w,
        &w.token,
        &format!("/api/v1/audit?path=/api/v1/sites/{uri}&limit=500"),
    )
    .await;
    assert_eq!(s, 200, "{audit}");
    let items = audit["items"].as_array().unwrap();
    let patches: Vec<&Value> = items.iter().filter(|e| e["method"] == "PATCH").collect();
    assert_eq!(patches.len(), 4, "{audit}");
    assert!(
        patches
            .iter()
            .any(|e| e["idempotency_key"] == "guard-1" && e["status"] == 200)
    );
    assert!(patches.iter().any(|e| e["status"] == 422));
    assert!(
        items
            .iter()
            .any(|e| e["method"] == "DELETE" && e["status"] == 409)
    );
    let (_, tasks_audit) =
        get_json(&w, &w.token, "/api/v1/audit?path=/api/v1/tasks&limit=500").await;
    let t_items = tasks_audit["items"].as_array().unwrap();
    assert!(
        t_items
            .iter()
            .any(|e| e["task_id"] == disable_task.as_str() && e["status"] == 202),
        "{tasks_audit}"
    );
    assert_eq!(
        t_items.iter().filter(|e| e["status"] == 409).count(),
        2,
        "{tasks_audit}"
    );
    assert!(
        t_items
            .iter()
            .all(|e| e["token_name"].is_string() && e["resource"] == "tasks")
    );
    // The site's creation too (the install the fixture asked for).
    let (_, created) = get_json(&w, &w.token, "/api/v1/audit?path=/api/v1/sites&status=201").await;
    assert!(created["total"].as_i64().unwrap() >= 1, "{created}");
    // Never a secret: not the token, not the site's database password, not a body.
    let rows: Vec<(String,)> = sqlx::query_as("SELECT row_to_json(a)::text FROM audit_log a")
        .fetch_all(&w.store.pool)
        .await
        .unwrap();
    let sealed: (String,) = sqlx::query_as("SELECT db_password_sealed FROM sites WHERE uri = $1")
        .bind(&uri)
        .fetch_one(&w.store.pool)
        .await
        .unwrap();
    let password = berth_secrets::SecretKey::from_hex(&w.secret_hex)
        .unwrap()
        .open(&sealed.0)
        .unwrap();
    for (row,) in &rows {
        assert!(!row.contains(&w.token), "{row}");
        assert!(!row.contains(password.as_str()), "{row}");
        assert!(
            !row.contains("\"guarded\""),
            "a body in the audit log: {row}"
        );
    }
    // Non-admin tokens without `audit:read` do not read it.
    let (ro, _) = token(&w, "sites-reader", &["sites:read"], None).await;
    let (s, _) = get_json(&w, &ro, "/api/v1/audit").await;
    assert_eq!(s, 403);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tokens_hand_on_only_their_scopes_expire_and_are_revoked() {
    let w = World::start().await.unwrap();
    let (s, v) = client(&w, json!({"name": "acme"})).await;
    assert_eq!(s, 201, "{v}");
    let (reader, reader_id) = token(&w, "reader", &["sites:read", "tokens:write"], None).await;
    // More than it holds: 403; a subset: 201.
    let (s, p) = call_json(
        &w,
        &reader,
        "post",
        "/api/v1/tokens",
        json!({"name": "escalate", "scopes": ["sites:write"]}),
    )
    .await;
    assert_eq!(s, 403, "{p}");
    let (s, v) = call_json(
        &w,
        &reader,
        "post",
        "/api/v1/tokens",
        json!({"name": "narrow", "scopes": ["sites:read"]}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let narrow = v["token"].as_str().unwrap().to_string();
    let narrow_id = v["id"].as_str().unwrap().to_string();
    // Bad scopes: 422 naming what to fix; a client token cannot hold servers.
    let (s, p) = call_json(
        &w,
        &w.token,
        "post",
        "/api/v1/tokens",
        json!({"name": "bad", "scopes": ["sites:delete"]}),
    )
    .await;
    assert_eq!(s, 422, "{p}");
    let (s, p) = call_json(
        &w,
        &w.token,
        "post",
        "/api/v1/tokens",
        json!({"name": "bad2", "scopes": ["servers:read"], "client": "acme"}),
    )
    .await;
    assert_eq!(s, 422, "{p}");
    // A client-bound token makes tokens for its own client only.
    let (bound, _) = token(
        &w,
        "acme-shop",
        &["sites:read", "tokens:write"],
        Some("acme"),
    )
    .await;
    let (s, v) = call_json(
        &w,
        &bound,
        "post",
        "/api/v1/tokens",
        json!({"name": "acme-child", "scopes": ["sites:read"]}),
    )
    .await;
    assert_eq!((s, v["client"].as_str()), (201, Some("acme")), "{v}");
    let (s, _) = call_json(
        &w,
        &bound,
        "post",
        "/api/v1/tokens",
        json!({"name": "elsewhere", "scopes": ["sites:read"], "client": "default"}),
    )
    .await;
    assert_eq!(s, 404);
    // A token lists itself and what it made, not the admin's.
    let (_, list) = get_json(&w, &reader, "/api/v1/tokens").await;
    let mut names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, vec!["narrow", "reader"], "{list}");
    assert!(
        !list.to_string().contains(&narrow),
        "a listed token shows its value"
    );
    // Revoked: 401 from then on; another's token: 404.
    let (s, _, _) = call(
        &w,
        &reader,
        "delete",
        &format!("/api/v1/tokens/{narrow_id}"),
        None,
        None,
    )
    .await;
    assert_eq!(s, 204);
    let (s, _) = get_json(&w, &narrow, "/api/v1/sites").await;
    assert_eq!(s, 401);
    let (admin_list_status, admin_list) = get_json(&w, &w.token, "/api/v1/tokens").await;
    assert_eq!(admin_list_status, 200);
    let admin_id = admin_list
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["scopes"] == json!(["admin"]))
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, _, _) = call(
        &w,
        &reader,
        "delete",
        &format!("/api/v1/tokens/{admin_id}"),
        None,
        None,
    )
    .await;
    assert_eq!(s, 404);
    // Expired: 401.
    let soon = (chrono::Utc::now() + chrono::Duration::seconds(2)).to_rfc3339();
    let (s, v) = call_json(
        &w,
        &w.token,
        "post",
        "/api/v1/tokens",
        json!({"name": "brief", "scopes": ["sites:read"], "expires_at": soon}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let brief = v["token"].as_str().unwrap().to_string();
    assert_eq!(get_json(&w, &brief, "/api/v1/sites").await.0, 200);
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert_eq!(get_json(&w, &brief, "/api/v1/sites").await.0, 401);
    // The reader's use is recorded.
    let (_, list) = get_json(&w, &w.token, "/api/v1/tokens").await;
    let r = list
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == reader_id.as_str())
        .unwrap();
    assert!(r["last_used_at"].is_string(), "{r}");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cli_makes_clients_and_a_client_token_printed_once() {
    let w = World::start().await.unwrap();
    let out = w
        .berth(&[
            "clients",
            "create",
            "acme",
            "--email",
            "owner@acme.example",
            "--max-sites",
            "3",
        ])
        .await;
    let t = berth_tests::output_text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("0 of 3"), "{t}");
    let out = w
        .berth(&[
            "tokens",
            "create",
            "--name",
            "acme-shop",
            "--client",
            "acme",
            "--scope",
            "sites:write",
            "--scope",
            "tasks:read",
        ])
        .await;
    assert!(out.status.success(), "{}", berth_tests::output_text(&out));
    // stdout is the token alone: usable as is.
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(
        token.starts_with("berth_") && !token.contains(' '),
        "{token}"
    );
    let (s, sites) = get_json(&w, &token, "/api/v1/sites").await;
    assert_eq!((s, sites), (200, json!([])));
    let out = w.berth(&["tokens", "list"]).await;
    let t = berth_tests::output_text(&out);
    assert!(
        out.status.success() && t.contains("acme-shop") && t.contains("acme"),
        "{t}"
    );
    assert!(!t.contains(&token), "the list shows a token's value: {t}");
    let out = w
        .berth(&["clients", "change", "acme", "--max-sites", "none"])
        .await;
    let t = berth_tests::output_text(&out);
    assert!(out.status.success() && t.contains("0 of -"), "{t}");
    w.stop().await;
}
