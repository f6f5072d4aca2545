//! Seed 000's package comparison between platforms, on fixture pairs whose codebases differ
//! the ways that matter: a newer schema, a missing module, an older schema.

use berth_tests::World;
use serde_json::Value;

fn row<'a>(cmp: &'a Value, name: &str) -> &'a Value {
    cmp["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no row {name}: {cmp}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn platforms_compare_by_schema_version_and_presence() {
    let w = World::start().await.unwrap();
    w.server_verified("server_master", "localhost", "null")
        .await;
    let a = w.copy_fixture("drupal10", "platform_a").unwrap();
    let b = w.copy_fixture("drupal10", "platform_b").unwrap();
    let same = w.copy_fixture("drupal10", "platform_same").unwrap();
    // b: token gains an update (an upgrade), pathauto is gone (a warning), node loses its
    // newest update (an error: a site's schema cannot go back).
    let token = b.join("modules/contrib/token/token.install");
    let mut t = std::fs::read_to_string(&token).unwrap();
    t.push_str("\nfunction token_update_8003() {\n}\n");
    std::fs::write(&token, t).unwrap();
    std::fs::remove_dir_all(b.join("modules/contrib/pathauto")).unwrap();
    let node = b.join("core/modules/node/node.install");
    let n = std::fs::read_to_string(&node)
        .unwrap()
        .replace("function node_update_10101() {\n}\n", "");
    std::fs::write(&node, n).unwrap();
    w.create_platform("platform_a", &a).await.unwrap();
    w.create_platform("platform_b", &b).await.unwrap();
    w.create_platform("platform_same", &same).await.unwrap();

    let cmp = w
        .get_json("/api/v1/platforms/platform_a/compare/platform_b")
        .await;
    assert_eq!(row(&cmp, "node")["verdict"], "error", "{cmp}");
    assert_eq!(row(&cmp, "node")["current_schema"], 10101);
    assert_eq!(row(&cmp, "node")["target_schema"], 10100);
    assert_eq!(row(&cmp, "pathauto")["verdict"], "warning");
    assert_eq!(row(&cmp, "token")["verdict"], "upgrade");
    assert_eq!(row(&cmp, "system")["verdict"], "same");
    assert_eq!(cmp["errors"], 1);
    assert_eq!(cmp["warnings"], 1);
    // Errors come first, for the eye.
    assert_eq!(cmp["rows"][0]["verdict"], "error");

    // The other way round, node is an upgrade and token an error.
    let back = w
        .get_json("/api/v1/platforms/platform_b/compare/platform_a")
        .await;
    assert_eq!(row(&back, "node")["verdict"], "upgrade");
    assert_eq!(row(&back, "token")["verdict"], "error");

    let clean = w
        .get_json("/api/v1/platforms/platform_a/compare/platform_same")
        .await;
    assert_eq!(clean["errors"], 0);
    assert_eq!(clean["warnings"], 0);
    assert_eq!(clean["upgrades"], 0);

    let r = w
        .get("/api/v1/platforms/platform_a/compare/platform_nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    w.stop().await;
}
