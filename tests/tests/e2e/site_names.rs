//! Site names and platform roots checked at the edge, on the real servers: a uri and its
//! aliases are reserved in one transaction (two concurrent requests for one name never both
//! win), a deleted or forgotten site's uri can be used again with its history kept, names
//! are normalised (case, trailing dot, IDN) and IPs and single labels refused, and platform
//! roots are kept out of system directories and other platforms (decision 0011).

use berth_contracts::TaskStatus;
use berth_tests::TASK_WAIT as WAIT;
use berth_tests::{World, WorldOptions, row_counts};
use serde_json::{Value, json};

async fn post(w: &World, path: &str, body: &Value) -> (u16, Value) {
    let r = w.post(path, body).send().await.unwrap();
    let status = r.status().as_u16();
    if status >= 400 {
        assert_eq!(
            r.headers()["content-type"],
            "application/problem+json",
            "{body}"
        );
    }
    (status, r.json().await.unwrap())
}

async fn delete(w: &World, path: &str) -> u16 {
    w.http
        .delete(w.url(path))
        .bearer_auth(&w.token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_uri_and_the_same_name_as_an_alias_asked_at_once_never_both_win() {
    let w = World::with_platform(WorldOptions::default()).await;
    let mut wins = (0, 0);
    for round in 0..20 {
        let a = format!("a{round}.{}.test", w.id);
        let b = format!("b{round}.{}.test", w.id);
        let site_a = json!({"uri": a, "platform": "platform_d10"});
        let site_b = json!({"uri": b, "platform": "platform_d10", "aliases": [a]});
        let (ra, rb) = tokio::join!(
            post(&w, "/api/v1/sites", &site_a),
            post(&w, "/api/v1/sites", &site_b)
        );
        match (ra.0, rb.0) {
            (201, 409) => {
                wins.0 += 1;
                let says = rb.1["detail"].as_str().unwrap();
                assert!(
                    says.contains(&format!("`{a}` is the uri of site `{a}`")),
                    "{says}"
                );
            }
            (409, 201) => {
                wins.1 += 1;
                let says = ra.1["detail"].as_str().unwrap();
                assert!(
                    says.contains(&format!("`{a}` is an alias of site `{b}`")),
                    "{says}"
                );
            }
            other => panic!("round {round}: {other:?}: {ra:?} {rb:?}"),
        }
        // What the database holds agrees: the name is one site's, once.
        let (holders,): (i64,) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM sites WHERE uri = $1)
                  + (SELECT count(*) FROM site_aliases WHERE alias = $1)",
        )
        .bind(&a)
        .fetch_one(&w.store.pool)
        .await
        .unwrap();
        assert_eq!(holders, 1, "round {round}");
    }
    eprintln!(
        "20 rounds: the uri won {} times, the alias {}",
        wins.0, wins.1
    );
    // Two sites, each with the other's uri as an alias: one wins, the other gets a 409 (a
    // deadlock between the two reservations would be a 500).
    for round in 0..10 {
        let c = format!("c{round}.{}.test", w.id);
        let d = format!("d{round}.{}.test", w.id);
        let site_c = json!({"uri": c, "platform": "platform_d10", "aliases": [d]});
        let site_d = json!({"uri": d, "platform": "platform_d10", "aliases": [c]});
        let (rc, rd) = tokio::join!(
            post(&w, "/api/v1/sites", &site_c),
            post(&w, "/api/v1/sites", &site_d)
        );
        let mut codes = [rc.0, rd.0];
        codes.sort();
        assert_eq!(codes, [201, 409], "round {round}: {rc:?} {rd:?}");
    }
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deleted_or_forgotten_sites_uri_installs_again_and_its_history_stays() {
    let w = World::with_platform(WorldOptions::web(false)).await;
    let uri = format!("www.{}.test", w.id);
    let (first, install) = w
        .install_site(json!({"uri": uri, "platform": "platform_d10"}))
        .await
        .unwrap();
    assert_eq!(install.status, TaskStatus::Success, "{install:#?}");

    // While it exists, its uri is refused, saying which site holds it and what to do.
    let (code, p) = post(
        &w,
        "/api/v1/sites",
        &json!({"uri": uri, "platform": "platform_d10"}),
    )
    .await;
    assert_eq!(code, 409, "{p}");
    let says = p["detail"].as_str().unwrap();
    assert!(
        says.contains(&format!(
            "`{uri}` is the uri of site `{uri}`, which is enabled"
        )) && says.contains("delete it first"),
        "{says}"
    );

    assert_eq!(
        w.run("disable", &uri, json!({})).await.status,
        TaskStatus::Success
    );
    w.run_success("delete", &uri, json!({})).await;
    assert_eq!(
        w.get_json(&format!("/api/v1/sites/{uri}")).await["status"],
        "deleted"
    );

    // The uri installs again, as a new site that serves.
    let (again, task) = w
        .install_site(json!({"uri": uri, "platform": "platform_d10"}))
        .await
        .unwrap();
    assert_eq!(task.status, TaskStatus::Success, "{task:#?}");
    assert_ne!(task.id, install.id);
    let live = w.get_json(&format!("/api/v1/sites/{uri}")).await;
    assert_eq!(live["status"], "enabled", "{live}");
    assert_eq!(live["db_name"], again["db_name"]);
    let (status, _) = w.page(&uri);
    assert_eq!(status, 200);
    // A task names the site as typed; it runs on the stored name.
    let verify = w
        .create_task("verify", &format!("@{}.", uri.to_uppercase()), json!({}))
        .await
        .unwrap();
    assert_eq!(verify.target, uri);
    let verify = w.wait_finished(verify.id, WAIT).await.unwrap();
    assert_eq!(verify.status, TaskStatus::Success, "{verify:#?}");
    let plan = w
        .get_json(&format!(
            "/api/v1/sites/{uri}/migrate-plan?uri=NEW.{}.Test.",
            w.id
        ))
        .await;
    assert_eq!(plan["to"]["uri"], format!("new.{}.test", w.id), "{plan}");

    // The old site's tasks are listed with the new one's, and its row is kept.
    let tasks = w.get_json(&format!("/api/v1/tasks?target={uri}")).await;
    let types: Vec<&str> = tasks["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["type"].as_str().unwrap())
        .collect();
    for t in ["install", "disable", "delete"] {
        assert!(types.contains(&t), "{types:?}");
    }
    assert_eq!(types.iter().filter(|t| **t == "install").count(), 2);
    assert_eq!(types.iter().filter(|t| **t == "verify").count(), 1);
    let gone = w.get_json("/api/v1/sites?status=deleted").await;
    let gone = gone.as_array().unwrap();
    assert_eq!(gone.len(), 1, "{gone:?}");
    assert!(
        gone[0]["uri"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{uri}~")),
        "{gone:?}"
    );
    assert_eq!(gone[0]["db_name"], first["db_name"]);

    // A failed install's site: refused while it is there (saying how to forget it), then
    // forgotten, then installed again.
    let broken = format!("broken.{}.test", w.id);
    let (_, t) = w
        .install_site(json!({"uri": broken, "platform": "platform_d10", "profile": "broken"}))
        .await
        .unwrap();
    assert_eq!(t.status, TaskStatus::Error);
    let failed_install = t.id;
    let (code, p) = post(
        &w,
        "/api/v1/sites",
        &json!({"uri": "other.example.org", "platform": "platform_d10", "aliases": [broken]}),
    )
    .await;
    assert_eq!(code, 409, "{p}");
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("DELETE /api/v1/sites/{broken} forgets it")),
        "{p}"
    );
    assert_eq!(delete(&w, &format!("/api/v1/sites/{broken}")).await, 204);
    w.installed_on_platform(&broken).await;
    // The forgotten site's failed install is not retried on the new site of its uri.
    let (code, p) = post(
        &w,
        &format!("/api/v1/tasks/{failed_install}/retry"),
        &json!({}),
    )
    .await;
    assert_eq!(code, 409, "{p}");
    assert!(p["detail"].as_str().unwrap().contains("deleted"), "{p}");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn names_are_normalised_and_ips_and_single_labels_refused_and_roots_checked() {
    let w = World::with_platform(WorldOptions::default()).await;
    let id = &w.id;
    for (given, stored) in [
        (
            format!("WWW.{}.Example.COM.", id.to_uppercase()),
            format!("www.{id}.example.com"),
        ),
        (
            format!("bücher.{id}.test"),
            format!("xn--bcher-kva.{id}.test"),
        ),
    ] {
        let (code, site) = post(
            &w,
            "/api/v1/sites",
            &json!({"uri": given, "platform": "platform_d10", "aliases": [format!("Alias.{given}")]}),
        )
        .await;
        assert_eq!(code, 201, "{given}: {site}");
        w.finish(&site["task"]).await;
        assert_eq!(site["uri"], stored.as_str());
        assert_eq!(site["aliases"], json!([format!("alias.{stored}")]));
        // Found again by the name as given, and the same name in another form is taken.
        let found = w.get_json(&format!("/api/v1/sites/{given}")).await;
        assert_eq!(found["uri"], stored.as_str(), "{found}");
        let (code, p) = post(
            &w,
            "/api/v1/sites",
            &json!({"uri": stored.to_uppercase(), "platform": "platform_d10"}),
        )
        .await;
        assert_eq!(code, 409, "{p}");
    }

    let long = format!("{}.{id}.test", vec!["x".repeat(50); 4].join("."));
    let cases: Vec<(Value, &str)> = vec![
        (json!({"uri": "192.0.2.10"}), "is an IP address"),
        (json!({"uri": "[2001:db8::1]"}), "is an IP address"),
        (json!({"uri": "10.1"}), "is an IP address"),
        (json!({"uri": "intranet"}), "single label"),
        (json!({"uri": "LOCALHOST."}), "single label"),
        (json!({"uri": long}), "at most 200"),
        (
            json!({"uri": format!("ok.{id}.test"), "aliases": ["198.51.100.7"]}),
            "is an IP address",
        ),
        (
            json!({"uri": format!("ok.{id}.test"), "aliases": ["shop"]}),
            "single label",
        ),
    ];
    for (mut body, says) in cases {
        body["platform"] = json!("platform_d10");
        let before = row_counts(&w.store).await.unwrap();
        let (code, p) = post(&w, "/api/v1/sites", &body).await;
        assert_eq!(code, 422, "{body}: {p}");
        assert!(p["detail"].as_str().unwrap().contains(says), "{body}: {p}");
        assert_eq!(row_counts(&w.store).await.unwrap(), before, "{body}");
    }

    // Platform roots: nothing is written for a system directory, berth's data root, a root
    // inside or around another platform's, or a symlink to one.
    let d10 = w.dir.join("platforms/platform_d10");
    let link = w.dir.join("platforms/link");
    std::os::unix::fs::symlink(&d10, &link).unwrap();
    let through = w.dir.join("platforms/via");
    std::os::unix::fs::symlink(w.dir.join("platforms"), &through).unwrap();
    let roots = [
        ("/".to_string(), "below /"),
        ("/etc".to_string(), "system tree `/etc`"),
        ("/usr/lib/drupal".to_string(), "system tree `/usr`"),
        ("/proc/1".to_string(), "system tree `/proc`"),
        ("/tmp".to_string(), "system directory"),
        (w.dir.display().to_string(), "data root"),
        (w.dir.join("config").display().to_string(), "data root"),
        (
            d10.join("sites/default").display().to_string(),
            "inside the root",
        ),
        (w.dir.join("platforms").display().to_string(), "data root"),
        (link.display().to_string(), "is a symlink"),
        (
            through.join("platform_d10/core").display().to_string(),
            "inside the root",
        ),
    ];
    for (root, says) in roots {
        let body = json!({"name": "platform_x", "root": root});
        let before = row_counts(&w.store).await.unwrap();
        let (code, p) = post(&w, "/api/v1/platforms", &body).await;
        assert_eq!(code, 422, "{root}: {p}");
        assert!(p["detail"].as_str().unwrap().contains(says), "{root}: {p}");
        assert_eq!(row_counts(&w.store).await.unwrap(), before, "{root}");
    }
    assert!(!std::path::Path::new("/etc/sites").exists());
    w.stop().await;
}
