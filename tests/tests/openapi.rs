//! The OpenAPI document matches the routes: every documented operation is served, every
//! method it does not document on its paths is refused, and every route in the router's
//! source is documented.

use berth_tests::World;
use serde_json::Value;
use std::collections::BTreeSet;

const METHODS: [&str; 5] = ["get", "post", "patch", "put", "delete"];

fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for m in METHODS {
            if item.get(m).is_some() {
                out.insert((path.clone(), m.to_string()));
            }
        }
    }
    out
}

/// Routes as the router declares them in services/api/src/lib.rs.
fn routed() -> BTreeSet<(String, String)> {
    let src = include_str!("../../services/api/src/lib.rs");
    let body = &src[src.find("pub fn router").unwrap()..];
    let body = &body[..body.find("\n}\n").unwrap()];
    let mut out = BTreeSet::new();
    let mut prefix = "/api/v1";
    for chunk in body.split(".route(").skip(1) {
        // Routes after `.nest("/api/v1", v1)` are at the root.
        let path = chunk.split('"').nth(1).unwrap().to_string();
        let handlers = chunk.split(".route(").next().unwrap();
        let end = handlers.find("\n        .layer").unwrap_or(handlers.len());
        let handlers = &handlers[..end];
        for m in METHODS {
            if handlers.contains(&format!("{m}(")) {
                out.insert((format!("{prefix}{path}"), m.to_string()));
            }
        }
        if chunk.contains(".nest(\"/api/v1\"") {
            prefix = "";
        }
    }
    out
}

#[test]
fn every_route_is_documented_and_every_documented_operation_is_routed() {
    let doc: Value = serde_json::from_str(include_str!("../../services/api/openapi.json")).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(routed(), documented(&doc));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_document_answers_for_every_path() {
    let w = World::start().await.unwrap();
    let doc: Value = w
        .http
        .get(w.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for (path, method) in documented(&doc) {
        let url = w.url(
            &path
                .replace("{name}", "server_nowhere")
                .replace("{id}", "00000000-0000-0000-0000-000000000000"),
        );
        let req = w
            .http
            .request(method.to_uppercase().parse().unwrap(), &url)
            .bearer_auth(&w.token)
            .header("content-type", "application/json")
            .body("{}");
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        assert!(
            status != 405 && !text.contains("no such route"),
            "{method} {path}: {status} {text}"
        );
        assert!(status < 500, "{method} {path}: {status} {text}");
        // Methods not documented on this path are refused with problem+json.
        for other in METHODS {
            if doc["paths"][&path].get(other).is_none() {
                let r = w
                    .http
                    .request(other.to_uppercase().parse().unwrap(), &url)
                    .bearer_auth(&w.token)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(
                    r.status(),
                    405,
                    "{other} {path} is not documented but answered"
                );
            }
        }
    }
    w.stop().await;
}
