//! `berth-bench reloads`: how many nginx reloads a burst of vhost changes needs when the
//! changes come as fast as this machine sends them (the tests only assert what is
//! guaranteed: changes queued during a reload share the next one). A real nginx on a
//! loopback port, the http worker's own reloader with its default window; per round, N
//! changes spawned at once, then the reloads they needed and the time until all were served;
//! and, with the N vhosts present, `nginx -t` alone and one change without a window.

use anyhow::{Context, Result, bail};
use berth_http::reload::{ReloadConfig, Reloader, VhostChange};
use berth_test_servers::web::{Web, write_nginx_conf};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const NGINX: &str = "/usr/sbin/nginx";

pub struct Config {
    /// Changes spawned at once per round.
    pub changes: usize,
    pub rounds: usize,
    pub window: Duration,
}

pub async fn run(cfg: Config) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("berth-bench-reloads-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let result = rounds(&cfg, &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn rounds(cfg: &Config, dir: &std::path::Path) -> Result<()> {
    let vhosts = dir.join("vhost.d");
    let conf = write_nginx_conf(dir, std::slice::from_ref(&vhosts))?;
    let web = Web::start(dir, &conf).context("nginx and php-fpm start")?;
    let file = |round: usize, n: usize| -> PathBuf { vhosts.join(format!("r{round}-s{n}.conf")) };
    let vhost = |name: &str| {
        format!(
            "server {{\n    listen 127.0.0.1:{};\n    server_name {name}.test;\n    location / {{ return 200 \"{name}\"; }}\n}}\n",
            web.port
        )
    };
    println!(
        "| round | changes | window ms | reloads | largest batch | all served ms |\n|---|---|---|---|---|---|"
    );
    for round in 0..cfg.rounds {
        let mut rc = ReloadConfig::new(NGINX, &conf);
        rc.window = cfg.window;
        let reloader = Reloader::new(rc);
        let started = Instant::now();
        let mut tasks = Vec::new();
        for n in 0..cfg.changes {
            let r = reloader.clone();
            let change = VhostChange::write(file(round, n), vhost(&format!("r{round}s{n}")));
            tasks.push(tokio::spawn(async move { r.apply(change).await }));
        }
        let mut largest = 0;
        for t in tasks {
            let report = t.await??;
            largest = largest.max(report.batch);
        }
        let served = started.elapsed();
        for n in 0..cfg.changes {
            let (status, body, _) = web.get(&format!("r{round}s{n}.test"), "/")?;
            if status != 200 {
                bail!("r{round}s{n}.test answered {status}: {body}");
            }
        }
        println!(
            "| {round} | {} | {} | {} | {largest} | {} |",
            cfg.changes,
            cfg.window.as_millis(),
            reloader.reloads(),
            served.as_millis()
        );
    }
    let t = Instant::now();
    let out = std::process::Command::new(NGINX)
        .args(["-t", "-q", "-c"])
        .arg(&conf)
        .output()?;
    let test_time = t.elapsed();
    if !out.status.success() {
        bail!("nginx -t: {}", String::from_utf8_lossy(&out.stderr));
    }
    let mut rc = ReloadConfig::new(NGINX, &conf);
    rc.window = Duration::ZERO;
    let t = Instant::now();
    Reloader::new(rc)
        .apply(VhostChange::write(file(0, 0), vhost("r0s0")))
        .await?;
    println!(
        "\nwith {} vhosts: nginx -t {} ms; one change without a window (nginx -t + reload + new workers) {} ms",
        cfg.changes * cfg.rounds,
        test_time.as_millis(),
        t.elapsed().as_millis()
    );
    Ok(())
}
