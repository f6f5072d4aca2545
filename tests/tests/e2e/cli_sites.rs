//! The seeds' Aegir command forms, with `drush` replaced by `berth`, against a running
//! system with a real nginx, php-fpm, MariaDB and BIND.

use berth_tests::{World, WorldOptions, berth_bin, mysql_admin};
use std::process::Output;

async fn berth(w: &World, args: &[&str]) -> Output {
    // The db admin password travels as the CLI takes it: in the environment, never argv.
    tokio::process::Command::new(berth_bin())
        .args(args)
        .envs(w.process_env())
        .env("BERTH_DB_ADMIN_PASSWORD", mysql_admin().password)
        .output()
        .await
        .expect("run berth")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

async fn ok(w: &World, args: &[&str]) -> String {
    let out = berth(w, args).await;
    let t = text(&out);
    assert!(out.status.success(), "berth {}: {t}", args.join(" "));
    t
}

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
    let t = ok(
        &w,
        &[
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
        ],
    )
    .await;
    assert!(t.contains("server_master"), "{t}");
    let t = ok(&w, &["@server_master", "provision-verify"]).await;
    assert!(t.contains("finished: success"), "{t}");

    let root = w.copy_fixture("drupal10", "platform_x").unwrap();
    let root = root.display().to_string();
    ok(
        &w,
        &[
            "provision-save",
            "@platform_x",
            "--context_type=platform",
            &format!("--root={root}"),
        ],
    )
    .await;
    let t = ok(&w, &["@platform_x", "provision-verify"]).await;
    assert!(t.contains("Drupal 10.3.1"), "{t}");

    let uri = format!("cli.{}.test", w.id);
    let t = ok(
        &w,
        &[
            "provision-save",
            &format!("@{uri}"),
            "--context_type=site",
            &format!("--uri={uri}"),
            "--platform=@platform_x",
            "--db_server=@server_master",
            "--profile=standard",
            "--client_email=client@example.com",
        ],
    )
    .await;
    assert!(t.contains("installing"), "{t}");
    let t = ok(&w, &[&format!("@{uri}"), "provision-install", "--debug"]).await;
    assert!(t.contains("installed with profile standard"), "{t}");
    assert!(t.contains("finished: success"), "{t}");
    let (status, body, _) = w.http_get(&uri, "/").unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&format!("<h1>{uri}</h1>")), "{body}");
    assert_eq!(
        w.named.as_ref().unwrap().dig(&uri, "A").unwrap(),
        ["127.0.0.1"]
    );

    let t = ok(&w, &[&format!("@{uri}"), "provision-verify"]).await;
    assert!(t.contains("finished: success"), "{t}");
    let t = ok(
        &w,
        &["@hostmaster", "hosting-task", &format!("@{uri}"), "verify"],
    )
    .await;
    assert!(t.contains("finished: success"), "{t}");

    // provision-save on an existing site changes only what is given: a new alias.
    let alias = format!("www.cli.{}.test", w.id);
    ok(
        &w,
        &[
            "provision-save",
            &format!("@{uri}"),
            &format!("--aliases={alias}"),
        ],
    )
    .await;
    let show = ok(&w, &["--json", "sites", "show", &uri]).await;
    assert!(show.contains(&alias), "{show}");
    let t = ok(&w, &[&format!("@{uri}"), "provision-verify"]).await;
    assert!(t.contains("finished: success"), "{t}");
    assert_eq!(w.http_get(&alias, "/").unwrap().0, 200);

    let t = ok(&w, &[&format!("@{uri}"), "provision-disable"]).await;
    assert!(t.contains("finished: success"), "{t}");
    assert_eq!(w.http_get(&uri, "/").unwrap().0, 503);
    ok(&w, &[&format!("@{uri}"), "provision-enable"]).await;
    assert_eq!(w.http_get(&uri, "/").unwrap().0, 200);
    let t = ok(&w, &[&format!("@{uri}"), "provision-login-reset"]).await;
    assert!(t.contains("one-time login link made"), "{t}");
    let t = ok(&w, &["sites", "show", &uri]).await;
    assert!(t.contains("/user/reset/1/"), "{t}");
    let t = ok(&w, &["platforms", "packages", "platform_x"]).await;
    assert!(t.contains("token") && t.contains("8.x-1.14"), "{t}");

    // Backups, clones, migrates in Aegir's words.
    let t = ok(&w, &[&format!("@{uri}"), "provision-backup"]).await;
    assert!(t.contains("finished: success"), "{t}");
    let t = ok(&w, &["sites", "backups", &uri]).await;
    assert!(t.contains("Generated on request"), "{t}");
    let copy = format!("copy.cli.{}.test", w.id);
    let t = ok(
        &w,
        &[
            &format!("@{uri}"),
            "provision-clone",
            &format!("@{copy}"),
            "@platform_x",
        ],
    )
    .await;
    assert!(t.contains("finished: success"), "{t}");
    assert_eq!(w.http_get(&copy, "/").unwrap().0, 200);
    let out = berth(
        &w,
        &[&format!("@{uri}"), "provision-migrate", "@platform_x"],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("already"), "{}", text(&out));

    // --delete of an installed site is refused with the reason; of a platform with a site too.
    let out = berth(&w, &["provision-save", &format!("@{uri}"), "--delete"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("only a site whose install failed"),
        "{}",
        text(&out)
    );
    let out = berth(&w, &["provision-save", "@platform_x", "--delete"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("still has sites"), "{}", text(&out));
    // An unused platform goes.
    let other = w.copy_fixture("drupal7", "platform_y").unwrap();
    ok(
        &w,
        &[
            "provision-save",
            "@platform_y",
            "--context_type=platform",
            &format!("--root={}", other.display()),
        ],
    )
    .await;
    // (its verify, queued by the save, must end first: a context with a task running stays)
    ok(&w, &["@platform_y", "provision-verify"]).await;
    ok(&w, &["provision-save", "@platform_y", "--delete"]).await;
    let t = ok(&w, &["platforms", "list"]).await;
    assert!(!t.contains("platform_y"), "{t}");
    w.stop().await;
}
