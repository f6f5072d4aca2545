//! Every operation the served OpenAPI document protects with the bearer scheme refuses a
//! request without a token, with an unknown token, with a malformed Authorization header
//! and with a token of a scope other than `admin`: 401 problem+json with a
//! `WWW-Authenticate: Bearer` challenge, nothing written and nothing of the resource in the
//! answer. The operations come from the served document, so a new route is covered as soon
//! as it is documented (and `openapi.rs` makes sure every route is). Path parameters name
//! real resources, bodies are ones the admin token would get accepted, so a route that let
//! a request through would answer with data or write something.
//!
//! A token whose stored scope is not a scope berth knows (`client` here) authenticates as
//! nothing: 401 like an unknown token. What each real scope may do is in `tenancy.rs`.

use berth_contracts::TaskStatus;
use berth_tests::{World, WorldOptions, row_counts};
use serde_json::{Value, json};

const METHODS: [&str; 5] = ["get", "post", "patch", "put", "delete"];

/// A body the admin token would get accepted on this operation (or `{}`).
fn body_for(method: &str, path: &str, site: &str) -> Value {
    match (method, path) {
        ("post", "/api/v1/servers") => json!({"name": "server_intruder", "host": "intruder.test"}),
        ("patch", "/api/v1/servers/{name}") => {
            json!({"services": {"http": {"type": "nginx", "port": 8081}}})
        }
        ("post", "/api/v1/tasks") => json!({"type": "verify", "target": "server_master"}),
        ("post", "/api/v1/platforms") => json!({"name": "platform_intruder", "root": "/nowhere/x"}),
        ("post", "/api/v1/sites") => {
            json!({"uri": format!("intruder.{site}"), "platform": "platform_d10"})
        }
        ("patch", "/api/v1/sites/{uri}") => json!({"client_email": "intruder@example.com"}),
        ("post", "/api/v1/platforms/{name}/migrate") => json!({"to": "platform_d10"}),
        _ => json!({}),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_protected_operation_refuses_a_missing_wrong_or_foreign_token() {
    let w = World::with_platform(WorldOptions::web(false)).await;
    let uri = format!("auth.{}.test", w.id);
    let (site, install) = w
        .install_site(json!({"uri": uri, "platform": "platform_d10"}))
        .await
        .unwrap();
    assert_eq!(install.status, TaskStatus::Success, "{install:#?}");
    // A dead letter, for the dead-letter routes.
    w.dead_letter().await;
    let dead = w.get_json("/api/v1/dead-letters").await;
    let dead_id = dead["items"]
        .as_array()
        .and_then(|a| a.first())
        .and_then(|d| d["id"].as_str())
        .unwrap_or_else(|| panic!("a dead letter: {dead}"))
        .to_string();

    // The one-time login link is there for the admin token: what must never leak.
    let shown = w.get_json(&format!("/api/v1/sites/{uri}")).await;
    let link = shown["login_link"]
        .as_str()
        .unwrap_or_else(|| panic!("the installed site has a login link: {shown}"))
        .to_string();
    assert!(!link.is_empty());
    let db_name = site["db_name"].as_str().unwrap().to_string();

    let doc: Value = w
        .http
        .get(w.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let global = doc["security"].clone();
    assert_eq!(global, json!([{"bearer": []}]), "the document's default");

    let other_scope = w.store.create_token("other-scope", "client").await.unwrap();
    let unknown = format!("berth_{}", "0".repeat(64));
    // (what the request carries, its Authorization header)
    let callers: Vec<(&str, Option<String>)> = vec![
        ("no token", None),
        ("an unknown token", Some(format!("Bearer {unknown}"))),
        (
            "the admin token under another scheme",
            Some(format!("Basic {}", w.token)),
        ),
        ("an empty bearer", Some("Bearer ".into())),
        (
            "a token of another scope",
            Some(format!("Bearer {other_scope}")),
        ),
    ];

    let before = row_counts(&w.store).await.unwrap();
    let mut protected = 0;
    let mut open = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS {
            let Some(op) = item.get(method) else { continue };
            let security = op.get("security").unwrap_or(&global);
            let url = w.url(
                &path
                    .replace("{uri}", &uri)
                    .replace("{other}", "platform_d10")
                    .replace(
                        "{name}",
                        if path.starts_with("/api/v1/servers") {
                            "server_master"
                        } else {
                            "platform_d10"
                        },
                    )
                    .replace(
                        "{id}",
                        &if path.starts_with("/api/v1/dead-letters") {
                            dead_id.clone()
                        } else {
                            install.id.to_string()
                        },
                    ),
            );
            assert!(
                !url.contains('{'),
                "{method} {path}: a parameter left unfilled"
            );
            if security.as_array().is_some_and(|a| a.is_empty()) {
                // Documented as open: it answers without a token.
                let r = w
                    .http
                    .request(method.to_uppercase().parse().unwrap(), &url)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200, "{method} {path} is documented as open");
                open.push(format!("{method} {path}"));
                continue;
            }
            assert_eq!(security, &global, "{method} {path}: an unknown security");
            protected += 1;
            let body = body_for(method, path, &uri);
            if method == "get" {
                // HEAD is answered wherever GET is: refused the same way.
                for (who, auth) in &callers {
                    let mut req = w.http.head(&url);
                    if let Some(a) = auth {
                        req = req.header("authorization", a);
                    }
                    let r = req.send().await.unwrap();
                    assert_eq!(r.status(), 401, "HEAD {path} with {who}");
                }
            }
            for (who, auth) in &callers {
                let mut req = w
                    .http
                    .request(method.to_uppercase().parse().unwrap(), &url)
                    .header("content-type", "application/json")
                    .header("Idempotency-Key", format!("auth-{protected}"))
                    .body(body.to_string());
                if let Some(a) = auth {
                    req = req.header("authorization", a);
                }
                let r = req.send().await.unwrap();
                let status = r.status().as_u16();
                let challenge = r
                    .headers()
                    .get("www-authenticate")
                    .map(|v| v.to_str().unwrap().to_string());
                let ctype = r
                    .headers()
                    .get("content-type")
                    .map(|v| v.to_str().unwrap().to_string());
                let text = r.text().await.unwrap();
                assert_eq!(status, 401, "{method} {path} with {who}: {text}");
                assert_eq!(
                    ctype.as_deref(),
                    Some("application/problem+json"),
                    "{method} {path} with {who}"
                );
                assert!(
                    challenge
                        .as_deref()
                        .is_some_and(|c| c.starts_with("Bearer")),
                    "{method} {path} with {who}: no Bearer challenge ({challenge:?})"
                );
                let p: Value = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("{method} {path} with {who}: {e}: {text}"));
                assert_eq!(p["status"], 401, "{method} {path} with {who}: {p}");
                for secret in [link.as_str(), db_name.as_str(), &w.token, uri.as_str()] {
                    assert!(
                        !text.contains(secret),
                        "{method} {path} with {who} answered `{secret}`: {text}"
                    );
                }
            }
        }
    }
    assert!(
        protected >= 30,
        "only {protected} protected operations found"
    );
    assert_eq!(
        open.len(),
        4,
        "open operations: {open:?} (healthz, readyz, metrics, openapi.json)"
    );
    assert_eq!(
        row_counts(&w.store).await.unwrap(),
        before,
        "a refused request wrote something"
    );
    // Nothing was changed behind the refusals: the site, its link, the platform lock,
    // the server's port, the dead letter.
    let after = w.get_json(&format!("/api/v1/sites/{uri}")).await;
    assert_eq!(after["login_link"], link.as_str(), "{after}");
    assert_eq!(after["status"], "enabled", "{after}");
    assert_eq!(after["client_email"], shown["client_email"], "{after}");
    let platform = w.get_json("/api/v1/platforms/platform_d10").await;
    assert_eq!(platform["locked"], false, "{platform}");
    let server = w.get_json("/api/v1/servers/server_master").await;
    assert_ne!(server["services"]["http"]["port"], 8081, "{server}");
    let dl = w.get_json(&format!("/api/v1/dead-letters/{dead_id}")).await;
    assert_eq!(dl["id"], dead_id.as_str(), "{dl}");
    assert!(
        dl["replayed_at"].is_null() && dl["discarded_at"].is_null(),
        "{dl}"
    );
    w.stop().await;
}
