//! Issue 10's small defects, each against the running system: the bearer scheme in any
//! case; the CLI's followed install and login reset end with the one-time login link; the
//! client e-mail is shown; Aegir's `hosting-task … --force` is accepted and a refused form
//! says what to type instead; `tasks cancel --help` says what a cancel does; retrying a task
//! of a deleted site is refused at once with a 409 saying why, writing nothing.

use berth_contracts::TaskStatus;
use berth_tests::TASK_WAIT as WAIT;
use berth_tests::{World, WorldOptions, output_text, row_counts};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_bearer_scheme_is_case_insensitive() {
    let w = World::start().await.unwrap();
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let r = w
            .http
            .get(w.url("/api/v1/servers"))
            .header("Authorization", format!("{scheme} {}", w.token))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{scheme}");
    }
    let r = w
        .http
        .get(w.url("/api/v1/servers"))
        .header("Authorization", format!("Basic {}", w.token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cli_shows_login_links_and_client_email_and_takes_aegir_force() {
    let w = World::with_platform(WorldOptions::web(false)).await;
    let uri = format!("www.{}.test", w.id);

    // A followed install ends with the login link.
    let out = w
        .berth_ok(&[
            "sites",
            "create",
            "--uri",
            &uri,
            "--platform",
            "platform_d10",
            "--profile",
            "standard",
            "--client-email",
            "owner@example.com",
            "--follow",
        ])
        .await;
    let link_line = |out: &str| {
        out.lines()
            .find(|l| l.starts_with("one-time login link"))
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no login link printed:\n{out}"))
    };
    let first = link_line(&out);
    assert!(
        first.contains(&format!("http://{uri}/user/reset/1/")),
        "{first}"
    );
    // The client e-mail, in the API answer and in `sites show`.
    let site = w.get_json(&format!("/api/v1/sites/{uri}")).await;
    assert_eq!(site["client_email"], "owner@example.com", "{site}");
    let shown = w.berth_ok(&["sites", "show", &uri]).await;
    assert!(
        shown
            .lines()
            .any(|l| l.contains("client e-mail") && l.contains("owner@example.com")),
        "{shown}"
    );
    // A followed login reset ends with the new link; the Aegir form does too.
    let out = w
        .berth_ok(&[&format!("@{uri}"), "provision-login-reset"])
        .await;
    let second = link_line(&out);
    assert_ne!(first, second, "a new link");
    // hosting-task with --force: accepted (and ignored).
    let out = w
        .berth_ok(&[
            "@hostmaster",
            "hosting-task",
            &format!("@{uri}"),
            "verify",
            "--force",
        ])
        .await;
    assert!(out.contains("finished: success"), "{out}");
    // An unsupported form says what to type in berth instead.
    let out = w.berth(&[&format!("@{uri}"), "provision-import"]).await;
    assert!(!out.status.success());
    assert!(
        output_text(&out).contains(&format!(
            "Instead, in berth: `berth provision-save @{uri} --context_type=site"
        )),
        "{}",
        output_text(&out)
    );
    // The help of tasks cancel says a running task is stopped and taken back.
    let help = w.berth_ok(&["tasks", "cancel", "--help"]).await;
    assert!(
        help.contains("A running one is stopped") && help.contains("taken back"),
        "{help}"
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retrying_a_task_of_a_deleted_site_is_refused_at_once() {
    let w = World::start_with(WorldOptions {
        web: true,
        delete_enabled_sites: true,
        ..Default::default()
    })
    .await
    .unwrap();
    w.server_verified("server_master", "localhost", "null")
        .await;
    w.add_platform("platform_d10", "drupal10").await.unwrap();
    let uri = format!("www.{}.test", w.id);
    let r = w
        .post(
            "/api/v1/sites",
            &json!({"uri": uri, "platform": "platform_d10", "profile": "standard"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let created: Value = r.json().await.unwrap();
    let install = w.finish(&created["task"]).await;
    assert_eq!(install.status, TaskStatus::Success, "{install:#?}");
    // A verify cancelled at once (queued or running, it ends cancelled): a task to retry.
    let verify = w.create_task("verify", &uri, json!({})).await.unwrap();
    let r = w
        .post(&format!("/api/v1/tasks/{}/cancel", verify.id), &json!({}))
        .send()
        .await
        .unwrap();
    assert!(
        [200, 202].contains(&r.status().as_u16()),
        "{}",
        r.text().await.unwrap()
    );
    let cancelled = w.wait_finished(verify.id, WAIT).await.unwrap();
    assert_eq!(cancelled.status, TaskStatus::Cancelled, "{cancelled:#?}");
    w.run_success("delete", &uri, json!({})).await;

    let before = row_counts(&w.store).await.unwrap();
    let r = w
        .post(&format!("/api/v1/tasks/{}/retry", verify.id), &json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 409);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let p: Value = r.json().await.unwrap();
    let detail = p["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!("site `{uri}` was deleted")) && detail.contains("create it again"),
        "{p}"
    );
    assert_eq!(row_counts(&w.store).await.unwrap(), before);
    w.stop().await;
}
