//! Drupal 7 sites end to end on the D7 fixture platform: install, backup and restore, clone,
//! and a migrate to a new uri, which moves the paths the database keeps under
//! `sites/<uri>/` (Drupal 6's `files` table, the `system` rows of the site's own modules)
//! while `file_managed` keeps its `public://` URIs; the site's files are served at the new
//! path.

use berth_contracts::TaskStatus;
use berth_tests::case::{Case, Setup};
use berth_tests::{log_of, mysql};
use serde_json::json;

const FILE: &str = "berth-fixture.txt";

async fn d7(second_platform: bool) -> Case {
    let c = Case::start(Setup {
        second_platform,
        fixture: "drupal7",
        ..Setup::INSTALLED
    })
    .await;
    let (_, body) = c.page(&c.uri);
    assert!(body.contains("on Drupal 7"), "{body}");
    c
}

/// One column of the rows of a query on the site's database `db` (`{db}` in `sql`).
async fn column(db: &str, sql: &str) -> Vec<String> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.replace("{db}", &format!("`{db}`"))))
        .fetch_all(&mut mysql().await)
        .await
        .unwrap()
}

/// The site's uploaded file, over HTTP from its own files directory: `(status, body)`.
fn file(c: &Case, uri: &str) -> (u16, String) {
    let (status, body, _) =
        c.w.http_get(uri, &format!("/sites/{uri}/files/{FILE}"))
            .unwrap();
    (status, body)
}

/// Sets Drupal 7's `site_name` variable: the fixture's page shows it.
async fn set_site_name(db: &str, name: &str) {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE `{db}`.variable SET value = ? WHERE name = 'site_name'"
    )))
    .bind(format!("s:{}:\"{name}\";", name.len()))
    .execute(&mut mysql().await)
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_drupal7_site_is_installed_backed_up_and_restored() {
    let c = d7(false).await;
    let db = c.db().await;
    assert_eq!(file(&c, &c.uri), (200, format!("A file of {}\n", c.uri)));
    let backup = c.backup().await;
    set_site_name(&db, "Changed after the backup").await;
    c.serves_named(&c.uri, "Changed after the backup");
    c.w.run_success("restore", &c.uri, json!({"backup": backup}))
        .await;
    c.serves_its_page(&c.uri);
    assert_eq!(file(&c, &c.uri).0, 200);
    c.nothing_half_done();
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_drupal7_site_is_cloned_with_its_files() {
    let c = d7(false).await;
    let copy = format!("c{}.example.test", c.w.id);
    c.w.run_success("clone", &c.uri, json!({"uri": copy})).await;
    // The copy has the original's data (its name) and its own files directory and paths.
    c.serves_named(&copy, &c.uri);
    assert_eq!(file(&c, &copy), (200, format!("A file of {}\n", c.uri)));
    let copy_db = c.site(&copy).await["db_name"].as_str().unwrap().to_string();
    assert_eq!(
        column(&copy_db, "SELECT filepath FROM {db}.files").await,
        [format!("sites/{copy}/files/{FILE}")]
    );
    // The original is untouched.
    c.serves_its_page(&c.uri);
    assert_eq!(
        column(&c.db().await, "SELECT filepath FROM {db}.files").await,
        [format!("sites/{}/files/{FILE}", c.uri)]
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_drupal7_migrate_to_a_new_uri_moves_the_paths_in_its_database() {
    let c = d7(true).await;
    let old = c.uri.clone();
    // A module in the site's own directory, listed in `system` as Drupal 7 lists every
    // module it finds (not enabled: the migrate's package comparison is not its subject).
    let module = c.root.join("sites").join(&old).join("modules/berth_site");
    std::fs::create_dir_all(&module).unwrap();
    std::fs::write(
        module.join("berth_site.info"),
        "name = Berth site\ncore = 7.x\n",
    )
    .unwrap();
    std::fs::write(module.join("berth_site.module"), "<?php\n").unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO `{}`.system (filename, name, type, status, schema_version) \
         VALUES (?, 'berth_site', 'module', 0, -1)",
        c.db().await
    )))
    .bind(format!("sites/{old}/modules/berth_site/berth_site.module"))
    .execute(&mut mysql().await)
    .await
    .unwrap();

    let new = format!("n{}.example.test", c.w.id);
    let t = c
        .run(
            "migrate",
            &old,
            json!({"uri": new, "platform": "platform_b"}),
        )
        .await;
    assert_eq!(t.status, TaskStatus::Success, "{}", log_of(&t));
    let site = c.site(&new).await;
    assert_eq!(site["platform"], "platform_b", "{site}");
    let db = site["db_name"].as_str().unwrap().to_string();
    assert_eq!(
        column(&db, "SELECT filepath FROM {db}.files").await,
        [format!("sites/{new}/files/{FILE}")]
    );
    assert_eq!(
        column(
            &db,
            "SELECT filename FROM {db}.system WHERE name = 'berth_site'"
        )
        .await,
        [format!("sites/{new}/modules/berth_site/berth_site.module")]
    );
    assert_eq!(
        column(&db, "SELECT uri FROM {db}.file_managed").await,
        [format!("public://{FILE}")]
    );
    // The files moved with the site and are served at the new path; the old name is gone.
    assert_eq!(file(&c, &new), (200, format!("A file of {old}\n")));
    let b = c.root_b.as_ref().unwrap();
    assert!(
        b.join("sites")
            .join(&new)
            .join("modules/berth_site/berth_site.module")
            .exists()
    );
    c.serves_named(&new, &old);
    assert_eq!(c.page(&old).0, 404);
    c.stop().await;
}
