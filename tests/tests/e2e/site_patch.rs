//! Changing a site with PATCH, listing sites by platform, status and client, and forgetting
//! a site whose install failed, on the real servers.

use berth_contracts::TaskStatus;
use berth_tests::TASK_WAIT as WAIT;
use berth_tests::{World, WorldOptions, row_counts};
use serde_json::{Value, json};

async fn patch(w: &World, uri: &str, body: Value) -> (u16, Value) {
    let r = w
        .http
        .patch(w.url(&format!("/api/v1/sites/{uri}")))
        .bearer_auth(&w.token)
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

fn vhost(w: &World, uri: &str) -> String {
    std::fs::read_to_string(
        w.dir
            .join("config/server_master/nginx/vhost.d")
            .join(format!("{uri}.conf")),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_patch_removes_an_alias_everywhere_refuses_a_taken_one_and_changes_client_and_email() {
    let w = World::with_server(WorldOptions::web(true)).await;
    w.add_platform("platform_d10", "drupal10").await.unwrap();
    let id = &w.id;
    let uri = format!("www.{id}.test");
    let (shop, old) = (format!("shop.{id}.test"), format!("old.{id}.test"));
    w.installed(
        json!({"uri": uri, "platform": "platform_d10", "aliases": [shop, old],
               "client": "acme", "client_email": "owner@example.com"}),
    )
    .await;
    let other = format!("other.{id}.test");
    w.installed(json!({"uri": other, "platform": "platform_d10"}))
        .await;
    let sites_dir = w.dir.join("platforms/platform_d10/sites");
    let to_uri = vec![format!("{uri}.")];
    // Before: both aliases are linked, served and resolved.
    for alias in [&shop, &old] {
        assert_eq!(
            std::fs::read_link(sites_dir.join(alias)).unwrap(),
            std::path::Path::new(&uri)
        );
        let (status, body) = w.page(alias);
        assert_eq!(status, 200, "{alias}: {body}");
        assert!(body.contains(&format!("<h1>{uri}</h1>")), "{alias}: {body}");
        w.dig_until(alias, "CNAME", &to_uri);
    }
    assert!(vhost(&w, &uri).contains(&format!("server_name {uri} {shop} {old};")));

    // Removing `old`: the PATCH answers the site as it will be, and its verify applies it.
    let (status, changed) = patch(&w, &uri, json!({"aliases": [shop]})).await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["aliases"], json!([shop]), "{changed}");
    let v = w
        .wait_finished(changed["task"].as_str().unwrap().parse().unwrap(), WAIT)
        .await
        .unwrap();
    assert_eq!(v.status, TaskStatus::Success, "{v:#?}");
    assert!(
        sites_dir.join(&old).symlink_metadata().is_err(),
        "the link sites/{old} stays"
    );
    assert!(sites_dir.join(&shop).symlink_metadata().is_ok());
    let conf = vhost(&w, &uri);
    assert!(
        conf.contains(&format!("server_name {uri} {shop};")),
        "{conf}"
    );
    let (_, body) = w.page(&old);
    assert!(
        !body.contains(&format!("<h1>{uri}</h1>")),
        "the removed alias still serves the site: {body}"
    );
    let (status, body) = w.page(&shop);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&format!("<h1>{uri}</h1>")), "{body}");
    w.dig_until(&old, "CNAME", &[]);
    w.dig_until(&shop, "CNAME", &to_uri);

    // An alias another site holds: 409 naming that site, nothing written anywhere.
    let before = row_counts(&w.store).await.unwrap();
    let other_before = w.get_json(&format!("/api/v1/sites/{other}")).await;
    let other_vhost = vhost(&w, &other);
    let (status, p) = patch(&w, &other, json!({"aliases": [shop], "client": "thief"})).await;
    assert_eq!(status, 409, "{p}");
    assert!(p["detail"].as_str().unwrap().contains(&uri), "{p}");
    assert_eq!(row_counts(&w.store).await.unwrap(), before);
    assert_eq!(
        w.get_json(&format!("/api/v1/sites/{other}")).await,
        other_before,
        "the refused change was written"
    );
    assert_eq!(
        w.get_json(&format!("/api/v1/sites/{uri}")).await["aliases"],
        json!([shop])
    );
    assert_eq!(vhost(&w, &other), other_vhost);
    // A site's uri is taken too.
    let (status, p) = patch(&w, &other, json!({"aliases": [uri]})).await;
    assert_eq!(status, 409, "{p}");
    // The alias the first site gave up is free: the other site takes it, and it leads
    // there (link, server name, record).
    let (status, changed) = patch(&w, &other, json!({"aliases": [old]})).await;
    assert_eq!(status, 200, "{changed}");
    let v = w
        .wait_finished(changed["task"].as_str().unwrap().parse().unwrap(), WAIT)
        .await
        .unwrap();
    assert_eq!(v.status, TaskStatus::Success, "{v:#?}");
    assert_eq!(
        std::fs::read_link(sites_dir.join(&old)).unwrap(),
        std::path::Path::new(&other)
    );
    assert!(vhost(&w, &other).contains(&format!("server_name {other} {old};")));
    let (status, body) = w.page(&old);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&format!("<h1>{other}</h1>")), "{body}");
    w.dig_until(&old, "CNAME", &[format!("{other}.")]);

    // Client and e-mail: changed, listed under the new client, the rest as it was.
    let (status, changed) = patch(
        &w,
        &uri,
        json!({"client": "globex", "client_email": "new@example.com"}),
    )
    .await;
    assert_eq!(status, 200, "{changed}");
    let v = w
        .wait_finished(changed["task"].as_str().unwrap().parse().unwrap(), WAIT)
        .await
        .unwrap();
    assert_eq!(v.status, TaskStatus::Success, "{v:#?}");
    let site = w.get_json(&format!("/api/v1/sites/{uri}")).await;
    assert_eq!(site["client"], "globex", "{site}");
    assert_eq!(site["client_email"], "new@example.com", "{site}");
    assert_eq!(site["aliases"], json!([shop]), "{site}");
    assert_eq!(site["status"], "enabled", "{site}");
    let listed = w.get_json("/api/v1/sites?client=globex").await;
    let uris: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["uri"].as_str().unwrap())
        .collect();
    assert_eq!(uris, [uri.as_str()], "{listed}");
    assert_eq!(w.get_json("/api/v1/sites?client=acme").await, json!([]));
    // A bad e-mail: 400, nothing changed.
    let (status, p) = patch(&w, &uri, json!({"client_email": "not an address"})).await;
    assert!((400..500).contains(&status), "{status} {p}");
    assert_eq!(
        w.get_json(&format!("/api/v1/sites/{uri}")).await["client_email"],
        "new@example.com"
    );
    w.stop().await;
}

fn uris(list: &Value) -> Vec<String> {
    let mut out: Vec<String> = list
        .as_array()
        .unwrap_or_else(|| panic!("a list: {list}"))
        .iter()
        .map(|s| s["uri"].as_str().unwrap().to_string())
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sites_are_listed_by_platform_status_and_client_in_pages_and_a_failed_one_is_forgotten() {
    let w = World::with_server(WorldOptions::web(false)).await;
    w.add_platform("platform_a", "drupal10").await.unwrap();
    w.add_platform("platform_b", "drupal10").await.unwrap();
    let id = &w.id;
    let a1 = format!("a1.{id}.test");
    let a2 = format!("a2.{id}.test");
    let b1 = format!("b1.{id}.test");
    w.installed(json!({"uri": a1, "platform": "platform_a", "client": "acme"}))
        .await;
    w.installed(json!({"uri": a2, "platform": "platform_a", "client": "globex"}))
        .await;
    w.installed(json!({"uri": b1, "platform": "platform_b", "client": "acme"}))
        .await;
    w.run_success("disable", &a2, json!({})).await;
    // An install that fails (the profile throws): the site is `failed`.
    let failed = format!("f.{id}.test");
    let (_, t) = w
        .install_site(
            json!({"uri": failed, "platform": "platform_b", "profile": "broken",
                             "client": "acme"}),
        )
        .await
        .unwrap();
    assert_eq!(t.status, TaskStatus::Error, "{t:#?}");
    let failed_install = t.id;

    let list = |q: &'static str| {
        let w = &w;
        async move { uris(&w.get_json(&format!("/api/v1/sites{q}")).await) }
    };
    let mut all = vec![a1.clone(), a2.clone(), b1.clone(), failed.clone()];
    all.sort();
    assert_eq!(list("").await, all);
    assert_eq!(list("?platform=platform_a").await, [a1.clone(), a2.clone()]);
    assert_eq!(list("?platform=@platform_b").await, {
        let mut v = vec![b1.clone(), failed.clone()];
        v.sort();
        v
    });
    assert_eq!(list("?status=disabled").await, vec![a2.clone()]);
    assert_eq!(list("?status=failed").await, vec![failed.clone()]);
    assert_eq!(list("?status=enabled").await, {
        let mut v = vec![a1.clone(), b1.clone()];
        v.sort();
        v
    });
    assert_eq!(list("?client=globex").await, vec![a2.clone()]);
    assert_eq!(
        list("?client=acme&platform=platform_b&status=enabled").await,
        vec![b1.clone()]
    );
    assert_eq!(list("?client=nobody").await, Vec::<String>::new());
    assert_eq!(list("?platform=platform_none").await, Vec::<String>::new());
    let r = w.get("/api/v1/sites?status=sleeping").send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    // Pages, by uri, with the total on every page; without limit and offset, all.
    let page = |q: &'static str| {
        let w = &w;
        async move {
            let r = w.get(&format!("/api/v1/sites{q}")).send().await.unwrap();
            assert_eq!(r.status(), 200, "{q}");
            let total: usize = r.headers()["x-total-count"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            (uris(&r.json().await.unwrap()), total)
        }
    };
    assert_eq!(page("").await, (all.clone(), 4));
    assert_eq!(page("?limit=2").await, (all[..2].to_vec(), 4));
    assert_eq!(page("?limit=2&offset=2").await, (all[2..].to_vec(), 4));
    assert_eq!(page("?offset=3").await, (all[3..].to_vec(), 4));
    assert_eq!(page("?offset=9").await, (vec![], 4));
    assert_eq!(
        page("?client=acme&limit=1&offset=1").await.1,
        3,
        "the total counts what the filters match"
    );
    // The CLI's list, a page of acme's sites.
    let out = w
        .berth_ok(&["sites", "list", "--client", "acme", "--limit", "2"])
        .await;
    let listed: Vec<&str> = out
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let mut acme = [a1.as_str(), b1.as_str(), failed.as_str()];
    acme.sort();
    assert_eq!(listed, acme[..2], "{out}");
    let out = w.berth(&["sites", "list", "--limit", "0"]).await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("limit must be 1 to 500"),
        "{out:?}"
    );
    for bad in ["?limit=0", "?limit=501", "?offset=-1", "?limit=x"] {
        let r = w.get(&format!("/api/v1/sites{bad}")).send().await.unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        assert_eq!(
            r.headers()["content-type"].to_str().unwrap(),
            "application/problem+json"
        );
    }

    // DELETE of an installed site is refused (the delete task removes those).
    let before = row_counts(&w.store).await.unwrap();
    let r = w
        .http
        .delete(w.url(&format!("/api/v1/sites/{a1}")))
        .bearer_auth(&w.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    assert_eq!(row_counts(&w.store).await.unwrap(), before);
    assert_eq!(
        w.get_json(&format!("/api/v1/sites/{a1}")).await["status"],
        "enabled"
    );
    // DELETE of the failed site forgets it: no longer failed, its name free again.
    let r = w
        .http
        .delete(w.url(&format!("/api/v1/sites/{failed}")))
        .bearer_auth(&w.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204, "{}", r.text().await.unwrap());
    assert_eq!(list("?status=failed").await, Vec::<String>::new());
    assert!(
        !list("?status=enabled").await.contains(&failed),
        "the forgotten site is not enabled"
    );
    // Its failed install is not retried: the site it was for is forgotten.
    let retry = |w: &World| {
        w.post(&format!("/api/v1/tasks/{failed_install}/retry"), &json!({}))
            .send()
    };
    let r = retry(&w).await.unwrap();
    assert_eq!(r.status(), 409, "{}", r.text().await.unwrap());
    let site = w
        .installed(json!({"uri": failed, "platform": "platform_b"}))
        .await;
    assert_eq!(site["uri"], failed.as_str());
    assert_eq!(
        w.get_json(&format!("/api/v1/sites/{failed}")).await["status"],
        "enabled"
    );
    // Nor once a new site has that name: it was another site's install.
    let before = row_counts(&w.store).await.unwrap();
    let r = retry(&w).await.unwrap();
    assert_eq!(r.status(), 409, "{}", r.text().await.unwrap());
    assert_eq!(row_counts(&w.store).await.unwrap(), before);
    w.stop().await;
}
