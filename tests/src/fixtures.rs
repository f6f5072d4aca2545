//! The set-ups the end-to-end tests share (tests/tests/e2e): a world with a verified server,
//! the fixture platform verified on it, an installed site, and what tests read back (a
//! site's page, its vhost, its records, the `berth` command's output). The failure
//! injection's set-up is [`crate::case::Case`].

use crate::{World, WorldOptions, berth_bin, log_of};
use berth_contracts::{Task, TaskStatus};
use serde_json::{Value, json};
use std::process::Output;
use std::time::{Duration, Instant};

/// The fixture platform most tests install on: `tests/fixtures/platforms/drupal10`, copied
/// into the world as `platform_d10`.
pub const PLATFORM: &str = "platform_d10";

impl WorldOptions {
    /// Sites served for real (nginx and php-fpm), with a real named when `dns`.
    pub fn web(dns: bool) -> Self {
        Self {
            web: true,
            dns,
            ..Default::default()
        }
    }
}

impl World {
    /// A world made with `opts`, and the server `server_master` registered and verified:
    /// its dns service is `bind` when the world runs named (`opts.dns`), else `null`.
    pub async fn with_server(opts: WorldOptions) -> World {
        let dns = if opts.dns { "bind" } else { "null" };
        let w = World::start_with(opts).await.unwrap();
        w.server_verified("server_master", "localhost", dns).await;
        w
    }

    /// A world made with `opts`, and `server_master` registered with no services (all
    /// `null`): a target for diagnostic tasks (its verify is not waited for).
    pub async fn with_bare_server(opts: WorldOptions) -> World {
        let w = World::start_with(opts).await.unwrap();
        w.create_bare_server("server_master", "localhost")
            .await
            .unwrap();
        w
    }

    /// [`Self::with_server`], and the fixture platform [`PLATFORM`] verified on it.
    pub async fn with_platform(opts: WorldOptions) -> World {
        let w = Self::with_server(opts).await;
        w.add_platform(PLATFORM, "drupal10").await.unwrap();
        w
    }

    /// A site name of this world: `<label>.<world id>.test`.
    pub fn site_uri(&self, label: &str) -> String {
        format!("{label}.{}.test", self.id)
    }

    /// Creates a site (`body`: at least its uri and platform) and waits for its install,
    /// which must succeed; returns the site as the API created it.
    pub async fn installed(&self, body: Value) -> Value {
        let (site, t) = self.install_site(body).await.unwrap();
        assert_eq!(t.status, TaskStatus::Success, "{}\n{t:#?}", log_of(&t));
        site
    }

    /// [`Self::installed`]: the site `uri` on [`PLATFORM`].
    pub async fn installed_on_platform(&self, uri: &str) -> Value {
        self.installed(json!({"uri": uri, "platform": PLATFORM}))
            .await
    }

    /// Runs the task (creates it and waits for its end) and requires it to succeed.
    pub async fn run_success(&self, task_type: &str, target: &str, args: Value) -> Task {
        let t = self.run(task_type, target, args).await;
        assert_eq!(
            t.status,
            TaskStatus::Success,
            "{task_type} of {target}: {}\n{t:#?}",
            log_of(&t)
        );
        t
    }

    /// A dead letter: a `noop` task on `server_master` that fails for good, and its end.
    pub async fn dead_letter(&self) -> Task {
        let t = self
            .run(
                "noop",
                "server_master",
                json!({"fail": {"times": 1, "kind": "permanent"}}),
            )
            .await;
        assert_eq!(t.status, TaskStatus::Error, "{t:#?}");
        t
    }

    /// Runs the task and requires it to succeed (a warning counts as success).
    pub async fn run_ok(&self, task_type: &str, target: &str, args: Value) -> Task {
        let t = self.run(task_type, target, args).await;
        assert!(
            matches!(t.status, TaskStatus::Success | TaskStatus::Warning),
            "{task_type} of {target}: {}\n{t:#?}",
            log_of(&t)
        );
        t
    }

    /// The front page of `host` from the world's nginx: status and body.
    pub fn page(&self, host: &str) -> (u16, String) {
        let (status, body, _) = self.http_get(host, "/").unwrap();
        (status, body)
    }

    /// The database password the site's vhost hands to PHP (`fastcgi_param db_passwd`).
    pub fn vhost_password(&self, uri: &str) -> String {
        let vhost = std::fs::read_to_string(
            self.dir
                .join("config/server_master/nginx/vhost.d")
                .join(format!("{uri}.conf")),
        )
        .unwrap();
        vhost
            .lines()
            .find_map(|l| l.trim().strip_prefix("fastcgi_param db_passwd "))
            .unwrap()
            .trim_end_matches(';')
            .to_string()
    }

    /// Asks the world's named for `name`'s `rtype` records until they are `want` (10 s).
    pub fn dig_until(&self, name: &str, rtype: &str, want: &[String]) {
        let named = self.named.as_ref().expect("a world with dns");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = named.dig(name, rtype).unwrap();
            if got == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "dig {name} {rtype}: {got:?}, expected {want:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs the `berth` command with `args` against this world (its environment, and the
    /// db admin password of the servers it registers).
    pub async fn berth(&self, args: &[&str]) -> Output {
        tokio::process::Command::new(berth_bin())
            .args(args)
            .envs(self.process_env())
            .env("BERTH_DB_ADMIN_PASSWORD", crate::mysql_admin().password)
            .output()
            .await
            .expect("run berth")
    }

    /// [`Self::berth`], which must succeed: its output.
    pub async fn berth_ok(&self, args: &[&str]) -> String {
        let out = self.berth(args).await;
        let t = output_text(&out);
        assert!(out.status.success(), "berth {}: {t}", args.join(" "));
        t
    }
}

/// A command's stdout then stderr, as text.
pub fn output_text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The schema version of the module `node` in a site's `packages`.
pub fn node_schema(packages: &Value) -> i64 {
    packages
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "node")
        .unwrap()["schema_version"]
        .as_i64()
        .unwrap()
}
