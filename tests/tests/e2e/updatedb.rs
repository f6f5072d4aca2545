//! `updatedb` runs the target platform's update functions for real (the fixture drush runs
//! the hook_update_N it finds, in PHP): what an update changes in the site's data lands
//! with the migrate, and an update that dies half-way fails the migrate at `site-updatedb`
//! and is taken back whole (its half-made change goes with the migrate's new database).

use berth_contracts::TaskStatus;
use berth_tests::case::{Case, Setup};
use berth_tests::{add_node_update, failed_at, log_of, mysql_db_exists};
use serde_json::json;

/// Renames the site in its database (config `system.site`) through Drupal's database API,
/// then runs `then`.
fn renaming_update(name: &str, then: &str) -> String {
    format!(
        r#"  $db = \Drupal::database();
  $data = unserialize($db->query("SELECT data FROM {{config}} WHERE name = 'system.site'")->fetchColumn());
  $data['name'] = '{name}';
  $db->query("UPDATE {{config}} SET data = :d WHERE name = 'system.site'", [':d' => serialize($data)]);
{then}
"#
    )
}

/// A site on platform_a named "The present", and platform_b with node_update_10102 `body`,
/// verified again so that the migrate sees the new update.
async fn with_update(body: &str) -> Case {
    let c = Case::start(Setup {
        second_platform: true,
        ..Setup::INSTALLED
    })
    .await;
    c.rename("The present").await;
    add_node_update(c.root_b.as_ref().unwrap(), 10102, body);
    c.w.run_success("verify", "platform_b", json!({})).await;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_update_functions_data_change_lands_with_the_migrate() {
    let c = with_update(&renaming_update(
        "Renamed by node_update_10102",
        "  return 'the site is renamed';",
    ))
    .await;
    let t = c
        .run("migrate", &c.uri, json!({"platform": "platform_b"}))
        .await;
    assert_eq!(t.status, TaskStatus::Success, "{}", log_of(&t));
    assert_eq!(c.site(&c.uri).await["platform"], "platform_b");
    c.serves_named(&c.uri, "Renamed by node_update_10102");
    let packages =
        c.w.get_json(&format!("/api/v1/sites/{}/packages", c.uri))
            .await;
    assert_eq!(
        berth_tests::node_schema(&packages),
        10102,
        "the update's schema is recorded"
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fatal_update_fails_the_migrate_and_is_taken_back() {
    // The update changes the data, then dies of a PHP fatal error.
    let c = with_update(&renaming_update(
        "Half updated",
        "  berth_fixture_no_such_function();",
    ))
    .await;
    let db = c.db().await;
    let t = c
        .run("migrate", &c.uri, json!({"platform": "platform_b"}))
        .await;
    failed_at(
        &t,
        "site-updatedb",
        "node_update_10102 failed: Call to undefined function berth_fixture_no_such_function",
    );
    // The site is where it was, with its database and data, and serves out of maintenance.
    let site = c.site(&c.uri).await;
    assert_eq!(site["platform"], "platform_a");
    assert_eq!(site["db_name"], db.as_str());
    c.serves_named(&c.uri, "The present");
    c.nothing_half_done();
    assert!(
        !c.root_b
            .as_ref()
            .unwrap()
            .join("sites")
            .join(&c.uri)
            .exists()
    );
    let next = t.args["next_db"]["name"].as_str().unwrap();
    assert!(!mysql_db_exists(next).await, "{next} (half updated) left");
    let packages =
        c.w.get_json(&format!("/api/v1/sites/{}/packages", c.uri))
            .await;
    assert_eq!(berth_tests::node_schema(&packages), 10101);
    c.stop().await;
}
