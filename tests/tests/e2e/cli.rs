//! The `berth` CLI against a running system: the commands a newcomer types.

use berth_tests::{World, berth_bin, output_text};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn aegir_verify_form_follows_the_task_and_tasks_list_shows_it() {
    let w = World::start().await.unwrap();
    w.create_server("server_master", "localhost").await.unwrap();
    let out = w.berth(&["@server_master", "provision-verify"]).await;
    let t = output_text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("nginx accepts its configuration"), "{t}");
    assert!(t.contains("finished: success"), "{t}");

    let out = w.berth(&["tasks", "list", "--type", "verify"]).await;
    let t = output_text(&out);
    assert!(out.status.success(), "{t}");
    assert_eq!(
        t.matches("server_master").count(),
        2,
        "two verify tasks: {t}"
    );

    // The db admin password the server was registered with is not shown (its value, not
    // only its key's name).
    let out = w.berth(&["servers", "show", "server_master"]).await;
    let t = output_text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("server_master") && t.contains("mariadb"), "{t}");
    let password = berth_tests::mysql_admin().password;
    assert!(!password.is_empty());
    assert!(
        !t.contains(&password),
        "the db admin password is shown: {t}"
    );
    assert!(!t.contains("admin_password"), "{t}");

    // A failing task makes the follow exit non-zero.
    let out = w
        .berth(&[
            "tasks",
            "create",
            "noop",
            "server_master",
            "--args",
            r#"{"fail":{"times":1,"kind":"permanent"}}"#,
            "--follow",
        ])
        .await;
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let out = w.berth(&["dead-letters", "list"]).await;
    assert!(
        output_text(&out).contains("injected permanent failure"),
        "{}",
        output_text(&out)
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_say_what_is_wrong_and_what_to_do() {
    let w = World::start().await.unwrap();
    let out = w
        .berth(&["tasks", "create", "explode", "server_master"])
        .await;
    assert_eq!(out.status.code(), Some(1));
    let t = output_text(&out);
    assert!(t.contains("unknown task type `explode`"), "{t}");

    let mut cmd = tokio::process::Command::new(berth_bin());
    cmd.args(["tasks", "list"])
        .envs(w.process_env())
        .env("BERTH_TOKEN", "berth_wrong");
    let out = cmd.output().await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        output_text(&out).contains("token create"),
        "{}",
        output_text(&out)
    );

    let out = w.berth(&["token", "create", "--name", "ci"]).await;
    assert!(out.status.success(), "{}", output_text(&out));
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(token.starts_with("berth_") && !token.contains('\n'));
    assert!(w.store.authenticate(&token).await.unwrap().is_some());
    w.stop().await;
}
