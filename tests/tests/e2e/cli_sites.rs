//! The seeds' Aegir command forms, with `drush` replaced by `berth`, against a running
//! system with a real nginx, php-fpm, MariaDB and BIND.

use berth_tests::{World, WorldOptions, mysql_admin, output_text};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_seeds_forms_create_install_verify_and_delete_contexts() {
    let w = World::start_with(WorldOptions {
        web: true,
        dns: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let named_port = w.named.as_ref().unwrap().port.to_string();
    let web_port = w.web.as_ref().unwrap().port.to_string();
    // drush provision-save @server_… --context_type=server --remote_host=… (seed 002)
    let t = w
        .berth_ok(&[
            "provision-save",
            "@server_master",
            "--context_type=server",
            "--remote_host=localhost",
            "--http_service_type=nginx",
            &format!("--http_port={web_port}"),
            "--db_service_type=mariadb",
            &format!("--db_host={}", mysql_admin().host),
            &format!("--db_port={}", mysql_admin().port),
            &format!("--db_user={}", mysql_admin().user),
            "--dns_service_type=bind",
            &format!("--dns_port={named_port}"),
        ])
        .await;
    assert!(t.contains("server_master"), "{t}");
    let t = w.berth_ok(&["@server_master", "provision-verify"]).await;
    assert!(t.contains("finished: success"), "{t}");

    let root = w.copy_fixture("drupal10", "platform_x").unwrap();
    let root = root.display().to_string();
    w.berth_ok(&[
        "provision-save",
        "@platform_x",
        "--context_type=platform",
        &format!("--root={root}"),
    ])
    .await;
    let t = w.berth_ok(&["@platform_x", "provision-verify"]).await;
    assert!(t.contains("Drupal 10.3.1"), "{t}");

    let uri = format!("cli.{}.test", w.id);
    let t = w
        .berth_ok(&[
            "provision-save",
            &format!("@{uri}"),
            "--context_type=site",
            &format!("--uri={uri}"),
            "--platform=@platform_x",
            "--db_server=@server_master",
            "--profile=standard",
            "--client_email=client@example.com",
        ])
        .await;
    assert!(t.contains("installing"), "{t}");
    let t = w
        .berth_ok(&[&format!("@{uri}"), "provision-install", "--debug"])
        .await;
    assert!(t.contains("installed with profile standard"), "{t}");
    assert!(t.contains("finished: success"), "{t}");
    let (status, body) = w.page(&uri);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&format!("<h1>{uri}</h1>")), "{body}");
    assert_eq!(
        w.named.as_ref().unwrap().dig(&uri, "A").unwrap(),
        ["127.0.0.1"]
    );

    let t = w.berth_ok(&[&format!("@{uri}"), "provision-verify"]).await;
    assert!(t.contains("finished: success"), "{t}");
    let t = w
        .berth_ok(&["@hostmaster", "hosting-task", &format!("@{uri}"), "verify"])
        .await;
    assert!(t.contains("finished: success"), "{t}");

    // provision-save on an existing site changes only what is given: a new alias.
    let alias = format!("www.cli.{}.test", w.id);
    w.berth_ok(&[
        "provision-save",
        &format!("@{uri}"),
        &format!("--aliases={alias}"),
    ])
    .await;
    let show = w.berth_ok(&["--json", "sites", "show", &uri]).await;
    assert!(show.contains(&alias), "{show}");
    let t = w.berth_ok(&[&format!("@{uri}"), "provision-verify"]).await;
    assert!(t.contains("finished: success"), "{t}");
    assert_eq!(w.http_get(&alias, "/").unwrap().0, 200);

    let t = w.berth_ok(&[&format!("@{uri}"), "provision-disable"]).await;
    assert!(t.contains("finished: success"), "{t}");
    assert_eq!(w.http_get(&uri, "/").unwrap().0, 503);
    w.berth_ok(&[&format!("@{uri}"), "provision-enable"]).await;
    assert_eq!(w.http_get(&uri, "/").unwrap().0, 200);
    let t = w
        .berth_ok(&[&format!("@{uri}"), "provision-login-reset"])
        .await;
    assert!(t.contains("one-time login link made"), "{t}");
    let t = w.berth_ok(&["sites", "show", &uri]).await;
    assert!(t.contains("/user/reset/1/"), "{t}");
    let t = w.berth_ok(&["platforms", "packages", "platform_x"]).await;
    assert!(t.contains("token") && t.contains("8.x-1.14"), "{t}");

    // Backups, clones, migrates in Aegir's words.
    let t = w.berth_ok(&[&format!("@{uri}"), "provision-backup"]).await;
    assert!(t.contains("finished: success"), "{t}");
    let t = w.berth_ok(&["sites", "backups", &uri]).await;
    assert!(t.contains("Generated on request"), "{t}");
    let copy = format!("copy.cli.{}.test", w.id);
    let t = w
        .berth_ok(&[
            &format!("@{uri}"),
            "provision-clone",
            &format!("@{copy}"),
            "@platform_x",
        ])
        .await;
    assert!(t.contains("finished: success"), "{t}");
    assert_eq!(w.http_get(&copy, "/").unwrap().0, 200);
    let out = w
        .berth(&[&format!("@{uri}"), "provision-migrate", "@platform_x"])
        .await;
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("already"),
        "{}",
        output_text(&out)
    );

    // --delete of an installed site is refused with the reason; of a platform with a site too.
    let out = w
        .berth(&["provision-save", &format!("@{uri}"), "--delete"])
        .await;
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("only a site whose install failed"),
        "{}",
        output_text(&out)
    );
    let out = w
        .berth(&["provision-save", "@platform_x", "--delete"])
        .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        output_text(&out).contains("still has sites"),
        "{}",
        output_text(&out)
    );
    // An unused platform goes.
    let other = w.copy_fixture("drupal7", "platform_y").unwrap();
    w.berth_ok(&[
        "provision-save",
        "@platform_y",
        "--context_type=platform",
        &format!("--root={}", other.display()),
    ])
    .await;
    // (its verify, queued by the save, must end first: a context with a task running stays)
    w.berth_ok(&["@platform_y", "provision-verify"]).await;
    w.berth_ok(&["provision-save", "@platform_y", "--delete"])
        .await;
    let t = w.berth_ok(&["platforms", "list"]).await;
    assert!(!t.contains("platform_y"), "{t}");
    w.stop().await;
}
