//! The reload coalescer against a real nginx (and php-fpm) on loopback ports.

use berth_http::reload::{
    FpmConfig, ReloadConfig, ReloadError, ReloadReport, Reloader, VhostChange,
};
use berth_test_servers::web::{Web, write_nginx_conf, write_php_fpm_conf};
use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

const NGINX: &str = "/usr/sbin/nginx";

struct Setup {
    dir: PathBuf,
    vhosts: PathBuf,
    conf: PathBuf,
    web: Option<Web>,
    reloader: Reloader,
    hold: Hold,
}

/// The reloader's nginx is a wrapper whose `-s reload` says so (creates `held`) and then
/// waits while `hold` exists: a test sees a reload in progress and ends it when it wants,
/// instead of guessing from the clock.
struct Hold {
    hold: PathBuf,
    held: PathBuf,
}

impl Hold {
    fn wrapper(dir: &Path) -> (PathBuf, Hold) {
        let hold = Hold {
            hold: dir.join("reload.hold"),
            held: dir.join("reload.held"),
        };
        let script = dir.join("nginx-held");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nfor a in \"$@\"; do\n  if [ \"$a\" = reload ]; then\n    touch '{held}'\n    while [ -e '{hold}' ]; do sleep 0.01; done\n  fi\ndone\nexec {NGINX} \"$@\"\n",
                held = hold.held.display(),
                hold = hold.hold.display(),
            ),
        )
        .expect("wrapper written");
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        (script, hold)
    }

    /// The next reload will wait for [`Self::release`].
    fn arm(&self) {
        let _ = std::fs::remove_file(&self.held);
        std::fs::write(&self.hold, "").unwrap();
    }

    /// Waits until a reload is being held (fails after 30 s).
    async fn wait_held(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.held.exists() {
            assert!(
                Instant::now() < deadline,
                "no reload started within 30 s ({} missing)",
                self.held.display()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn release(&self) {
        let _ = std::fs::remove_file(&self.hold);
    }
}

type Applying = Pin<Box<dyn Future<Output = Result<ReloadReport, ReloadError>> + Send>>;

/// Polls every future once: each `apply` queues its change on its first poll, so after
/// this every change is in the reloader's queue.
async fn queue_all<F: Future + Unpin>(futures: &mut [F]) {
    std::future::poll_fn(|cx| {
        for f in futures.iter_mut() {
            assert!(
                Pin::new(f).poll(cx).is_pending(),
                "a change was answered while a reload was held"
            );
        }
        Poll::Ready(())
    })
    .await
}

impl Setup {
    fn new(name: &str) -> Setup {
        Self::start(name, false)
    }

    /// With php-fpm including `<dir>/pool.d/*.conf`, driven by the reloader.
    fn with_pools(name: &str) -> Setup {
        Self::start(name, true)
    }

    fn start(name: &str, pools: bool) -> Setup {
        let dir = std::env::temp_dir().join(format!("berth-reload-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let vhosts = dir.join("vhost.d");
        let conf = write_nginx_conf(&dir, std::slice::from_ref(&vhosts)).expect("nginx.conf");
        if pools {
            write_php_fpm_conf(&dir, &[dir.join("pool.d")]).expect("php-fpm.conf");
        }
        let web = Web::start(&dir, &conf).expect("nginx and php-fpm start");
        let (held_nginx, hold) = Hold::wrapper(&dir);
        let mut rc = ReloadConfig::new(held_nginx.display().to_string(), &conf);
        if pools {
            rc.php_fpm = Some(FpmConfig {
                bin: "php-fpm8.2".into(),
                conf: web.php_fpm_conf.clone(),
            });
        }
        let reloader = Reloader::new(rc);
        Setup {
            dir,
            vhosts,
            conf,
            web: Some(web),
            reloader,
            hold,
        }
    }

    fn web(&self) -> &Web {
        self.web.as_ref().unwrap()
    }

    fn file(&self, name: &str) -> PathBuf {
        self.vhosts.join(format!("{name}.conf"))
    }

    fn vhost(&self, name: &str, body: &str) -> String {
        format!(
            "server {{\n    listen 127.0.0.1:{};\n    server_name {name}.test;\n    location / {{ return 200 \"{body}\"; }}\n}}\n",
            self.web().port
        )
    }

    fn get(&self, host: &str) -> (u16, String) {
        let (status, body, _) = self.web().get(host, "/").expect("GET");
        (status, body)
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        self.hold.release();
        drop(self.web.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Changes that come while a reload is under way share the next one. How many reloads a
/// burst needs when the changes come as fast as the machine sends them depends on its speed:
/// `berth-bench reloads` measures that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_changes_queued_during_a_reload_share_the_next_one() {
    let s = Setup::new("thirty");
    s.hold.arm();
    let r = s.reloader.clone();
    let first = VhostChange::write(s.file("first"), s.vhost("first", "first"));
    let first = tokio::spawn(async move { r.apply(first).await });
    s.hold.wait_held().await;
    let mut changes: Vec<_> = (0..30)
        .map(|n| {
            let r = s.reloader.clone();
            let change = VhostChange::write(
                s.file(&format!("site{n}")),
                s.vhost(&format!("site{n}"), &format!("site{n}")),
            );
            Box::pin(async move { r.apply(change).await })
        })
        .collect();
    queue_all(&mut changes).await;
    s.hold.release();
    let first = first.await.unwrap().expect("first change applied");
    assert_eq!((first.reload, first.batch), (1, 1));
    let mut reports = Vec::new();
    for c in changes {
        reports.push(c.await.expect("change applied"));
    }
    assert!(
        reports.iter().all(|r| (r.reload, r.batch) == (2, 30)),
        "the thirty changes share the second reload: {reports:?}"
    );
    assert_eq!(s.reloader.reloads(), 2);
    for n in 0..30 {
        let (status, body) = s.get(&format!("site{n}.test"));
        assert_eq!(
            (status, body.as_str()),
            (200, format!("site{n}").as_str()),
            "site{n}.test"
        );
    }
    let (status, _) = s.get("nosuchsite.test");
    assert_eq!(status, 404, "unknown hosts get the default server");

    // A reloader without a window carries a lone change at once.
    let mut cfg = ReloadConfig::new(NGINX, &s.conf);
    cfg.window = Duration::ZERO;
    let quick = Reloader::new(cfg);
    let r = quick
        .apply(VhostChange::write(
            s.file("site0"),
            s.vhost("site0", "site0 again"),
        ))
        .await
        .expect("replaced");
    assert_eq!((r.reload, r.batch), (1, 1));
    assert_eq!(s.get("site0.test"), (200, "site0 again".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_breaking_change_of_a_batch_fails() {
    let s = Setup::new("broken");
    let original = s.vhost("kept", "kept original");
    // The first vhost's reload is held while the batch queues behind it: the five good
    // changes and the two broken ones are one batch.
    s.hold.arm();
    let r = s.reloader.clone();
    let first = VhostChange::write(s.file("kept"), original.clone());
    let first = tokio::spawn(async move { r.apply(first).await });
    s.hold.wait_held().await;
    let mut goods: Vec<_> = (0..5)
        .map(|n| {
            let r = s.reloader.clone();
            let change = VhostChange::write(
                s.file(&format!("good{n}")),
                s.vhost(&format!("good{n}"), &format!("good{n}")),
            );
            Box::pin(async move { r.apply(change).await })
        })
        .collect();
    // A new vhost with an unknown directive, and a replacement of a served one that breaks it.
    let bad_new = VhostChange::write(
        s.file("bad"),
        format!(
            "server {{\n    listen 127.0.0.1:{};\n    server_name bad.test;\n    frobnicate on;\n}}\n",
            s.web().port
        ),
    );
    let bad_replace = VhostChange::write(
        s.file("kept"),
        format!(
            "server {{\n    listen 127.0.0.1:{};\n    server_name kept.test;\n    location / {{ return 200 \"kept broken\" }}\n}}\n",
            s.web().port
        ),
    );
    let (r1, r2) = (s.reloader.clone(), s.reloader.clone());
    let mut bads: [Applying; 2] = [
        Box::pin(async move { r1.apply(bad_new).await }),
        Box::pin(async move { r2.apply(bad_replace).await }),
    ];
    queue_all(&mut goods).await;
    queue_all(&mut bads).await;
    s.hold.release();
    let first = first.await.unwrap().expect("first vhost");
    assert_eq!((first.reload, first.batch), (1, 1));
    let [bad_new, bad_replace] = bads;

    let mut good = Vec::new();
    for t in goods {
        good.push(t.await.expect("good change applied"));
    }
    match bad_new.await {
        Err(ReloadError::Broken(msg)) => {
            eprintln!("broken new vhost: {msg}");
            assert!(
                msg.contains("unknown directive") && msg.contains("frobnicate"),
                "{msg}"
            );
        }
        other => panic!("the broken vhost got {other:?}"),
    }
    match bad_replace.await {
        Err(ReloadError::Broken(msg)) => {
            eprintln!("broken replacement: {msg}");
            assert!(msg.contains("kept.conf"), "{msg}");
        }
        other => panic!("the broken replacement got {other:?}"),
    }
    assert!(!s.file("bad").exists(), "the broken new vhost is gone");
    assert_eq!(
        std::fs::read_to_string(s.file("kept")).unwrap(),
        original,
        "restored"
    );
    let reload = good[0].reload;
    assert!(
        good.iter().all(|r| r.reload == reload && r.batch == 5),
        "{good:?}"
    );
    assert_eq!(
        s.reloader.reloads(),
        2,
        "one reload for the first vhost, one for the batch"
    );
    for n in 0..5 {
        assert_eq!(s.get(&format!("good{n}.test")), (200, format!("good{n}")));
    }
    assert_eq!(s.get("kept.test"), (200, "kept original".to_string()));
    assert_eq!(s.get("bad.test").0, 404);
    // nginx -t passes again: nothing broken was left behind.
    let out = std::process::Command::new(NGINX)
        .args(["-t", "-q", "-c"])
        .arg(&s.conf)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vhost_is_replaced_then_removed() {
    let s = Setup::new("replace");
    let file = s.file("swap");
    let r = s
        .reloader
        .apply(VhostChange::write(&file, s.vhost("swap", "one")))
        .await
        .expect("written");
    assert_eq!((r.reload, r.batch), (1, 1));
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(s.get("swap.test"), (200, "one".to_string()));

    s.reloader
        .apply(VhostChange::write(&file, s.vhost("swap", "two")))
        .await
        .expect("replaced");
    assert_eq!(s.get("swap.test"), (200, "two".to_string()));

    s.reloader
        .apply(VhostChange::remove(&file))
        .await
        .expect("removed");
    assert!(!file.exists());
    let (status, body) = s.get("swap.test");
    assert_eq!(status, 404, "{body}");
    assert_ne!(body, "two");

    // Removing what is not there is fine.
    s.reloader
        .apply(VhostChange::remove(s.file("never")))
        .await
        .expect("removing a missing file");
    assert_eq!(s.reloader.reloads(), 4);
    let leftovers: Vec<_> = std::fs::read_dir(&s.vhosts)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(leftovers.is_empty(), "no temp files left: {leftovers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn php_gets_fastcgi_params_through_php_fpm() {
    let s = Setup::new("php");
    let root = s.dir.join("www");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
    let index = root.join("index.php");
    std::fs::write(&index, "<?php echo 'db_name=' . $_SERVER['db_name'];\n").unwrap();
    std::fs::set_permissions(&index, std::fs::Permissions::from_mode(0o644)).unwrap();
    let vhost = format!(
        r#"server {{
    listen 127.0.0.1:{port};
    server_name php.test;
    root {root};
    index index.php;
    location ~ \.php$ {{
        include /etc/nginx/fastcgi_params;
        fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
        fastcgi_param db_name somevalue;
        fastcgi_pass {fpm};
    }}
}}
"#,
        port = s.web().port,
        root = root.display(),
        fpm = s.web().php_fpm,
    );
    s.reloader
        .apply(VhostChange::write(s.file("php"), vhost))
        .await
        .expect("php vhost");
    let (status, body, headers) = s.web().get("php.test", "/index.php").expect("GET");
    assert_eq!(
        (status, body.as_str()),
        (200, "db_name=somevalue"),
        "headers {headers:?}\nnginx: {}\nphp-fpm: {}",
        s.web().nginx_log(),
        s.web().php_fpm_log()
    );
    let (status, body, _) = s.web().get("php.test", "/").expect("GET /");
    assert_eq!(
        (status, body.as_str()),
        (200, "db_name=somevalue"),
        "index.php as the index"
    );
}

/// A site's pool and its vhost land in one change: php-fpm is tested and reloaded before
/// nginx, and the vhost's first request runs in the new pool, as the pool's user. A pool
/// php-fpm rejects fails its own change only (taken back, with php-fpm's message), in the
/// same batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_lands_with_its_vhost_and_a_broken_pool_fails_alone() {
    let s = Setup::with_pools("pools");
    let root = s.dir.join("www");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
    let index = root.join("index.php");
    std::fs::write(&index, "<?php echo 'uid=' . posix_getuid();\n").unwrap();
    std::fs::set_permissions(&index, std::fs::Permissions::from_mode(0o644)).unwrap();
    let data_root = s.dir.join("data");
    std::fs::create_dir_all(data_root.join("run/php")).unwrap();
    let change = |name: &str, uid: u32, broken: bool| {
        let socket = berth_http::pool::socket_path(&data_root, uid);
        let mut pool = berth_http::pool::render_pool(&data_root, uid);
        if broken {
            pool.push_str("pm = sometimes\n");
        }
        let vhost = format!(
            "server {{\n    listen 127.0.0.1:{port};\n    server_name {name}.test;\n    root {root};\n    location ~ \\.php$ {{\n        include /etc/nginx/fastcgi_params;\n        fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;\n        fastcgi_pass unix:{socket};\n    }}\n}}\n",
            port = s.web().port,
            root = root.display(),
            socket = socket.display(),
        );
        VhostChange {
            files: vec![
                (s.dir.join(format!("pool.d/site-{uid}.conf")), Some(pool)),
                (s.file(name), Some(vhost)),
            ],
            php_fpm: Some(vec![socket]),
        }
    };
    let (good, bad) = tokio::join!(
        s.reloader.apply(change("good", 200_101, false)),
        s.reloader.apply(change("bad", 200_102, true)),
    );
    good.expect("the good pool and vhost land");
    match bad {
        Err(ReloadError::Broken(m)) => assert!(m.contains("php-fpm rejects"), "{m}"),
        other => panic!("the broken pool must fail alone: {other:?}"),
    }
    assert!(
        !s.dir.join("pool.d/site-200102.conf").exists(),
        "taken back"
    );
    assert!(!s.file("bad").exists(), "taken back");
    let (status, body, _) = s.web().get("good.test", "/index.php").expect("GET");
    assert_eq!(
        (status, body.as_str()),
        (200, "uid=200101"),
        "nginx: {}\nphp-fpm: {}",
        s.web().nginx_log(),
        s.web().php_fpm_log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_arriving_during_a_reload_joins_the_next_batch() {
    let s = Setup::new("next");
    s.hold.arm();
    let r = s.reloader.clone();
    let first = VhostChange::write(s.file("early"), s.vhost("early", "early"));
    let early = tokio::spawn(async move { r.apply(first).await });
    // The first batch's reload is under way (held) when the late change comes.
    s.hold.wait_held().await;
    let r = s.reloader.clone();
    let second = VhostChange::write(s.file("late"), s.vhost("late", "late"));
    let mut late: [Applying; 1] = [Box::pin(async move { r.apply(second).await })];
    queue_all(&mut late).await;
    s.hold.release();
    let early = early.await.unwrap().expect("early change");
    let [late] = late;
    let late = late.await.expect("late change");
    assert_eq!((early.reload, early.batch), (1, 1));
    assert_eq!((late.reload, late.batch), (2, 1));
    assert_eq!(s.reloader.reloads(), 2);
    assert_eq!(s.get("early.test"), (200, "early".to_string()));
    assert_eq!(s.get("late.test"), (200, "late".to_string()));
}

/// No nginx runs on this configuration: `nginx -t` passes, `-s reload` cannot.
#[tokio::test]
async fn a_failed_reload_takes_the_batch_back() {
    let dir = std::env::temp_dir().join(format!("berth-reload-nonginx-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let vhosts = dir.join("vhost.d");
    let conf = write_nginx_conf(&dir, std::slice::from_ref(&vhosts)).unwrap();
    let reloader = Reloader::new(ReloadConfig::new(NGINX, &conf));
    let file = vhosts.join("a.conf");
    let vhost = "server { listen 127.0.0.1:9; server_name a.test; }\n";
    match reloader.apply(VhostChange::write(&file, vhost)).await {
        Err(ReloadError::Reload(msg)) => assert!(msg.contains("nginx.pid"), "{msg}"),
        other => panic!("expected a reload error, got {other:?}"),
    }
    assert!(!file.exists(), "taken back");
    assert_eq!(reloader.reloads(), 0);
    let _ = std::fs::remove_dir_all(&dir);
}

/// When nginx rejects its configuration without the batch, every change says so (and no
/// change is blamed by trying each alone).
#[tokio::test]
async fn a_broken_base_configuration_fails_every_change() {
    let dir = std::env::temp_dir().join(format!("berth-reload-base-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let vhosts = dir.join("vhost.d");
    let conf = write_nginx_conf(&dir, std::slice::from_ref(&vhosts)).unwrap();
    std::fs::write(vhosts.join("0-broken.conf"), "server { frobnicate on; }\n").unwrap();
    let reloader = Reloader::new(ReloadConfig::new(NGINX, &conf));
    let mut tasks = Vec::new();
    for n in 0..3 {
        let r = reloader.clone();
        let change = VhostChange::write(
            vhosts.join(format!("s{n}.conf")),
            format!("server {{ listen 127.0.0.1:9; server_name s{n}.test; }}\n"),
        );
        tasks.push(tokio::spawn(async move { r.apply(change).await }));
    }
    for (n, t) in tasks.into_iter().enumerate() {
        match t.await.unwrap() {
            Err(ReloadError::Broken(msg)) => {
                assert!(
                    msg.contains("even without") && msg.contains("0-broken.conf"),
                    "{msg}"
                )
            }
            other => panic!("expected broken, got {other:?}"),
        }
        assert!(!vhosts.join(format!("s{n}.conf")).exists());
    }
    let _ = std::fs::remove_dir_all(&dir);
}
