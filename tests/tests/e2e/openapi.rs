//! The OpenAPI document matches the routes: every documented operation is served, every
//! method it does not document on its paths is refused, and every route in the router's
//! source is documented.

use berth_tests::{World, WorldOptions};
use serde_json::{Value, json};
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
    let src = include_str!("../../../services/api/src/lib.rs");
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
    let doc: Value =
        serde_json::from_str(include_str!("../../../services/api/openapi.json")).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(routed(), documented(&doc));
}

/// Path parameters filled with real resources of the world, by parameter and path.
struct Resources {
    server: String,
    platform: String,
    /// A second platform: compare's `{other}`, and where migrate-plan looks at moving to.
    other: String,
    site: String,
    task: String,
    dead_letter: String,
    schedule: String,
    backup_target: String,
    client: String,
    /// A token to revoke (not the world's admin token).
    token: String,
    webhook: String,
    webhook_delivery: String,
}

impl Resources {
    fn fill(&self, path: &str) -> String {
        let id = if path.starts_with("/api/v1/dead-letters/") {
            &self.dead_letter
        } else if path.starts_with("/api/v1/tokens/") {
            &self.token
        } else if path.starts_with("/api/v1/webhooks/") {
            &self.webhook
        } else if path.starts_with("/api/v1/webhook-deliveries/") {
            &self.webhook_delivery
        } else {
            &self.task
        };
        let name = if path.starts_with("/api/v1/servers/") {
            &self.server
        } else if path.starts_with("/api/v1/schedules/") {
            &self.schedule
        } else if path.starts_with("/api/v1/backup-targets/") {
            &self.backup_target
        } else if path.starts_with("/api/v1/clients/") {
            &self.client
        } else {
            &self.platform
        };
        let filled = path
            .replace("{name}", name)
            .replace("{other}", &self.other)
            .replace("{uri}", &self.site)
            .replace("{id}", id);
        if path.ends_with("/migrate-plan") {
            // A plan needs somewhere else to go.
            format!("{filled}?platform={}", self.other)
        } else {
            filled
        }
    }
}

/// Checks an answer against the operation's documented responses: its status is one of
/// them, its content type the documented one, and a JSON body matches the schema (with
/// `$ref`s resolved against the document's components).
fn check_answer(doc: &Value, path: &str, method: &str, status: u16, ctype: &str, body: &str) {
    let op = &doc["paths"][path][method];
    let what = format!("{} {path}", method.to_uppercase());
    let Some(response) = op["responses"].get(status.to_string()) else {
        panic!(
            "{what}: status {status} is not documented ({:?}): {body}",
            op["responses"]
                .as_object()
                .unwrap()
                .keys()
                .collect::<Vec<_>>()
        );
    };
    let Some(content) = response.get("content").and_then(Value::as_object) else {
        assert!(
            body.is_empty(),
            "{what}: {status} documents no body: {body}"
        );
        return;
    };
    let media = ctype.split(';').next().unwrap_or_default().trim();
    let Some(documented) = content.get(media) else {
        panic!(
            "{what}: {status} answered {media}, documented {:?}",
            content.keys().collect::<Vec<_>>()
        );
    };
    let Some(schema) = documented.get("schema") else {
        return;
    };
    let value: Value = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("{what}: {status} body is not JSON ({e}): {body}"));
    let mut root = json!({"allOf": [schema]});
    root["components"] = doc["components"].clone();
    let validator = jsonschema::draft202012::new(&root)
        .unwrap_or_else(|e| panic!("{what}: the documented schema does not compile: {e}"));
    let errors: Vec<String> = validator
        .iter_errors(&value)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what}: {status} body does not match its schema:\n{}\n{body}",
        errors.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_served_document_answers_for_every_path() {
    let w = World::start_with(WorldOptions {
        web: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let doc: Value = w
        .http
        .get(w.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // Real resources for every path parameter: a server, a platform, a site with a backup,
    // a failed task and its dead letter.
    w.server_verified("server_master", "localhost", "null")
        .await;
    w.add_platform("platform_d10", "drupal10").await.unwrap();
    w.add_platform("platform_d10b", "drupal10").await.unwrap();
    let uri = format!("oa.{}.test", w.id);
    w.installed_on_platform(&uri).await;
    w.run_success("backup", &uri, json!({})).await;
    let failed = w.dead_letter().await;
    let dead = w.get_json("/api/v1/dead-letters").await;
    // A prune schedule for the site: the retention preview's default policy.
    let (status, s) = w
        .post_json(
            "/api/v1/schedules",
            &json!({"name": "tidy", "scope": format!("site:{uri}"), "expression": "0 3 * * *",
                    "job": {"kind": "prune", "retention": {"regular": {"keep_last": 3}}}}),
        )
        .await;
    assert_eq!(status, 201, "{s}");
    let (status, target) = w
        .post_json(
            "/api/v1/backup-targets",
            &json!({"name": "offsite", "endpoint": "http://127.0.0.1:9", "bucket": "b-oa",
                "access_key_id": "k", "secret_access_key": "s"}),
        )
        .await;
    assert_eq!(status, 201, "{target}");
    let (status, token) = w
        .post_json(
            "/api/v1/tokens",
            &json!({"name": "oa-reader", "scopes": ["sites:read"]}),
        )
        .await;
    assert_eq!(status, 201, "{token}");
    let (status, hook) = w
        .post_json(
            "/api/v1/webhooks",
            &json!({"url": "http://127.0.0.1:9/in", "events": ["task.finished"]}),
        )
        .await;
    assert_eq!(status, 201, "{hook}");
    let webhook: uuid::Uuid = hook["id"].as_str().unwrap().parse().unwrap();
    // A delivery to redeliver (no notices service runs here to make one).
    let delivery = {
        let mut conn = w.store.pool.acquire().await.unwrap();
        berth_store::webhooks::insert_deliveries(
            &mut conn,
            berth_store::webhooks::NewDeliveries {
                event_id: uuid::Uuid::now_v7(),
                event_type: "task.finished",
                body: "{}",
                traceparent: "",
                endpoints: &[webhook],
            },
        )
        .await
        .unwrap()[0]
    };
    let res = Resources {
        client: "default".into(),
        token: token["id"].as_str().unwrap().to_string(),
        webhook: webhook.to_string(),
        webhook_delivery: delivery.to_string(),
        server: "server_master".into(),
        platform: "platform_d10".into(),
        other: "platform_d10b".into(),
        site: uri.clone(),
        task: failed.id.to_string(),
        dead_letter: dead["items"][0]["id"].as_str().unwrap().to_string(),
        schedule: "tidy".into(),
        backup_target: "offsite".into(),
    };
    // Reads first, then changes, deletions last (so that every read finds its resource).
    let mut ops: Vec<(String, String)> = documented(&doc).into_iter().collect();
    let rank = |m: &str| match m {
        "get" => 0,
        "delete" => 2,
        _ => 1,
    };
    ops.sort_by_key(|(path, m)| (rank(m), path.clone()));
    let mut answered_2xx = 0;
    for (path, method) in &ops {
        let url = w.url(&res.fill(path));
        let mut req = w
            .http
            .request(method.to_uppercase().parse().unwrap(), &url)
            .bearer_auth(&w.token);
        if method != "get" && method != "delete" {
            req = req.header("content-type", "application/json").body("{}");
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let ctype = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let text = r.text().await.unwrap();
        if method == "get" {
            // Every read of a real resource succeeds.
            assert!(
                (200..300).contains(&status),
                "GET {path} ({url}): {status} {text}"
            );
        }
        if (200..300).contains(&status) {
            answered_2xx += 1;
        }
        check_answer(&doc, path, method, status, &ctype, &text);
        // Methods not documented on this path are refused with problem+json.
        for other in METHODS {
            if doc["paths"][path].get(other).is_none() {
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
    assert!(
        answered_2xx > ops.len() / 2,
        "{answered_2xx} of {}",
        ops.len()
    );
    w.stop().await;
}
