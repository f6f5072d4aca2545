//! `berth-bench sites`: site installs end to end, from `POST /api/v1/sites` to the first
//! HTTP 200 that the world's real nginx + php-fpm serve for the site's Host, with 100 and
//! 1,000 other vhosts already present; and a burst of installs posted at once, with the
//! nginx reloads they shared.
//!
//! The floor measured in the same run is what an install cannot avoid: one vhost change
//! made serving by hand (`nginx -t`, `nginx -s reload`, then GETs until the new Host
//! answers) with the same vhosts present, and the site's database, users and grants made
//! over a fresh MariaDB connection with the statements the db worker runs.

use crate::machine::{self, CpuSample, CpuUse};
use crate::stats::{Summary, ms};
use anyhow::{Context, Result, bail, ensure};
use berth_contracts::Task;
use berth_tests::{World, WorldOptions, mysql_url};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use uuid::Uuid;

const PLATFORM: &str = "platform_d10";
const FIXTURE: &str = "drupal10";
const SERVER: &str = "server_master";
/// How often a pending site is asked for over HTTP (and its task looked at).
const POLL: Duration = Duration::from_millis(10);
/// How often the burst looks at its tasks.
const BURST_POLL: Duration = Duration::from_millis(20);

/// The aims.
const AIM_P50_MS: f64 = 1000.0;
const AIM_P50_AT: usize = 1000;
const AIM_CHANGES_PER_RELOAD: f64 = 50.0;

/// Aegir's figure, stated, not measured: its task queue is run by
/// `drush @hostmaster hosting-dispatch` from the aegir user's crontab once a minute
/// (Aegir 3 install docs, docs.aegirproject.org; the optional hosting_queued daemon polls
/// instead), and a site install is a drush bootstrap of the front end plus a provision
/// `provision-install` run: on the order of a minute from the click to a serving site.
const AEGIR_NOTE: &str = "Aegir 3 (NOT measured here; stated from its documentation): \
    tasks are picked up by `drush @hostmaster hosting-dispatch` run from cron every minute \
    (or by the optional hosting_queued daemon), then provision bootstraps drush and installs: \
    a site install takes on the order of a minute (mean wait for the dispatcher alone ≈ 30 s)";

pub struct Config {
    /// Vhosts present before the sequential installs: one measurement per count.
    pub present: Vec<usize>,
    /// Installs one after another per count.
    pub installs: usize,
    /// The http worker's reload window, ms: one world per window.
    pub windows: Vec<u64>,
    /// Concurrency of the sequential worlds (berth's default is 8).
    pub concurrency: u16,
    /// Installs posted at once.
    pub burst: usize,
    /// Vhosts present before the burst.
    pub burst_present: usize,
    /// Concurrency (state service and workers) of the burst world: one burst per value.
    pub burst_concurrency: Vec<u16>,
    pub burst_window: u64,
    /// Repetitions of each floor measurement (the median is used).
    pub floor_reps: usize,
    pub timeout: Duration,
}

pub async fn run(cfg: Config) -> Result<()> {
    ensure!(cfg.installs > 0, "--installs must be at least 1");
    ensure!(!cfg.windows.is_empty(), "at least one --window");
    ensure!(cfg.floor_reps > 0, "--floor-reps must be at least 1");
    let mut present = cfg.present.clone();
    present.sort_unstable();
    present.dedup();
    let load_before = machine::loadavg();
    let started = Instant::now();

    let mut seq = Vec::new();
    for &window in &cfg.windows {
        let opts = WorldOptions {
            web: true,
            dns: false,
            concurrency: cfg.concurrency,
            reload_window_ms: window,
            ..WorldOptions::default()
        };
        let world = start_world(opts).await?;
        let result = sequential(&world, &cfg, &present, window).await;
        world.stop().await;
        seq.extend(result?);
    }

    let mut bursts = Vec::new();
    if cfg.burst > 0 {
        for &c in &cfg.burst_concurrency {
            // The http worker's concurrency only: steps waiting for a reload hold a slot
            // but no CPU (drush runs are capped by the installer slots), while the state
            // service keeps its own (its pool grows with it).
            let opts = WorldOptions {
                web: true,
                dns: false,
                concurrency: cfg.concurrency,
                http_concurrency: Some(c),
                reload_window_ms: cfg.burst_window,
                ..WorldOptions::default()
            };
            // A burst that fails (say, the state service's pool outgrowing PostgreSQL's
            // max_connections at a high concurrency) is reported, and the others still run.
            let result = match start_world(opts).await {
                Ok(world) => {
                    let r = burst(&world, &cfg, c).await;
                    world.stop().await;
                    r
                }
                Err(e) => Err(e),
            };
            if let Err(e) = &result {
                eprintln!("  burst at concurrency {c} failed: {e:#}");
            }
            bursts.push(result.map_err(|e| (c, format!("{e:#}"))));
        }
    }

    let report = Report {
        cfg: &cfg,
        seq,
        bursts,
        load_before,
        load_after: machine::loadavg(),
        secs: started.elapsed().as_secs_f64(),
    };
    println!("{report}");
    Ok(())
}

/// A world with a server (dns `null`) and the fixture platform, verified.
async fn start_world(opts: WorldOptions) -> Result<World> {
    eprintln!(
        "world: concurrency {}, reload window {} ms…",
        opts.concurrency, opts.reload_window_ms
    );
    let world = World::start_with(opts).await.context(
        "start the world (PostgreSQL, RabbitMQ, MariaDB, nginx and php-fpm8.2 must be there: ops/setup.sh)",
    )?;
    match prepare(&world).await {
        Ok(()) => Ok(world),
        Err(e) => {
            world.stop().await;
            Err(e)
        }
    }
}

async fn prepare(world: &World) -> Result<()> {
    let s = world
        .create_server_with_dns(SERVER, "localhost", "null")
        .await?;
    let id: Uuid = s["verify_task"]
        .as_str()
        .context("no verify_task")?
        .parse()?;
    let t = world.wait_finished(id, Duration::from_secs(120)).await?;
    ensure!(
        t.status == berth_contracts::TaskStatus::Success,
        "server verify: {:?}",
        t.status
    );
    world.add_platform(PLATFORM, FIXTURE).await?;
    Ok(())
}

fn vhost_dir(world: &World) -> PathBuf {
    world
        .dir
        .join("config")
        .join(SERVER)
        .join("nginx")
        .join("vhost.d")
}

fn web_addr(world: &World) -> Result<SocketAddr> {
    let port = world.web.as_ref().context("the world runs no web")?.port;
    Ok(SocketAddr::from(([127, 0, 0, 1], port)))
}

fn vhost_count(world: &World) -> usize {
    std::fs::read_dir(vhost_dir(world))
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".conf"))
                .count()
        })
        .unwrap_or(0)
}

/// GET `/` for `host` from the world's nginx (blocking I/O, off the runtime's threads).
async fn get(addr: SocketAddr, host: &str) -> Result<(u16, String)> {
    let host = host.to_string();
    let (status, body, _) =
        tokio::task::spawn_blocking(move || berth_test_servers::web::http_get(addr, &host, "/"))
            .await??;
    Ok((status, body))
}

/// Is `uri` served: a 200 with the site's own page?
async fn serves(addr: SocketAddr, uri: &str) -> Result<bool> {
    let (status, body) = get(addr, uri).await?;
    Ok(status == 200 && body.contains(&format!("<h1>{uri}</h1>")))
}

fn filler_conf(port: u16, name: &str) -> String {
    format!(
        "server {{\n    listen 127.0.0.1:{port};\n    server_name {name};\n    location / {{ return 200 \"x\"; }}\n}}\n"
    )
}

/// Makes `filler-0.bench` … `filler-{n-1}.bench` vhosts present, reloads nginx once, and
/// waits until the last one is served.
async fn fill_to(world: &World, n: usize) -> Result<()> {
    let dir = vhost_dir(world);
    let addr = web_addr(world)?;
    let mut last = None;
    for i in 0..n {
        let name = format!("filler-{i}.bench");
        let path = dir.join(format!("{name}.conf"));
        if !path.exists() {
            std::fs::write(&path, filler_conf(addr.port(), &name))?;
        }
        last = Some(name);
    }
    let Some(last) = last else { return Ok(()) };
    eprintln!("  {n} filler vhosts; reloading nginx…");
    nginx(&world.nginx_conf, &["-s", "reload"]).await?;
    wait_served(addr, &last, Duration::from_secs(30)).await?;
    Ok(())
}

async fn nginx(conf: &Path, args: &[&str]) -> Result<()> {
    let out = tokio::process::Command::new("nginx")
        .arg("-c")
        .arg(conf)
        .args(args)
        .output()
        .await
        .context("running nginx")?;
    if !out.status.success() {
        bail!(
            "nginx {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Waits until `host` gets a 200 (a filler or floor probe vhost).
async fn wait_served(addr: SocketAddr, host: &str, within: Duration) -> Result<()> {
    let start = Instant::now();
    loop {
        if get(addr, host).await?.0 == 200 {
            return Ok(());
        }
        if start.elapsed() > within {
            bail!("{host} not served after {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The floor: medians over `reps` of (a) a new vhost by hand, `nginx -t`, `nginx -s reload`
/// and GETs every 2 ms until it answers, and (b) the site database and users as the db
/// worker makes them, over a fresh connection.
#[derive(Debug, Clone, Copy, Default)]
struct Floor {
    nginx_ms: f64,
    nginx_test_ms: f64,
    db_ms: f64,
}

impl Floor {
    fn total(&self) -> f64 {
        self.nginx_ms + self.db_ms
    }
}

async fn floor(world: &World, reps: usize, tag: &str) -> Result<Floor> {
    let dir = vhost_dir(world);
    let addr = web_addr(world)?;
    let (mut total, mut test, mut db) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..reps {
        let name = format!("floor-{tag}-{i}.bench");
        std::fs::write(
            dir.join(format!("{name}.conf")),
            filler_conf(addr.port(), &name),
        )?;
        let t0 = Instant::now();
        nginx(&world.nginx_conf, &["-t", "-q"]).await?;
        test.push(t0.elapsed().as_secs_f64() * 1e3);
        nginx(&world.nginx_conf, &["-s", "reload"]).await?;
        wait_served(addr, &name, Duration::from_secs(10)).await?;
        total.push(t0.elapsed().as_secs_f64() * 1e3);
        // Let the old workers go before the next round.
        tokio::time::sleep(Duration::from_millis(200)).await;
        db.push(db_floor(&format!("bf_{}_{tag}_{i}", world.id)).await?);
    }
    Ok(Floor {
        nginx_ms: median(total),
        nginx_test_ms: median(test),
        db_ms: median(db),
    })
}

/// CREATE DATABASE, and per web host CREATE USER, ALTER USER, GRANT, as the db worker's
/// `site-db-create` does (hosts `localhost` and `127.0.0.1`); timed from the connect to the
/// close; dropped afterwards, untimed.
async fn db_floor(name: &str) -> Result<f64> {
    use sqlx::Connection;
    let pw = Uuid::new_v4().simple().to_string();
    let hosts = ["localhost", "127.0.0.1"];
    let t0 = Instant::now();
    let mut c = sqlx::MySqlConnection::connect(&mysql_url()).await?;
    let mut stmts = vec![format!(
        "CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"
    )];
    for h in hosts {
        stmts.push(format!(
            "CREATE USER IF NOT EXISTS '{name}'@'{h}' IDENTIFIED BY '{pw}'"
        ));
        stmts.push(format!("ALTER USER '{name}'@'{h}' IDENTIFIED BY '{pw}'"));
        stmts.push(format!(
            "GRANT ALL PRIVILEGES ON `{name}`.* TO '{name}'@'{h}'"
        ));
    }
    for s in &stmts {
        sqlx::raw_sql(sqlx::AssertSqlSafe(s.clone()))
            .execute(&mut c)
            .await?;
    }
    c.close().await?;
    let took = t0.elapsed().as_secs_f64() * 1e3;
    let mut c = sqlx::MySqlConnection::connect(&mysql_url()).await?;
    for h in hosts {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP USER IF EXISTS '{name}'@'{h}'"
        )))
        .execute(&mut c)
        .await?;
    }
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS `{name}`"
    )))
    .execute(&mut c)
    .await?;
    let _ = c.close().await;
    Ok(took)
}

fn median(v: Vec<f64>) -> f64 {
    Summary::of(v).p50
}

/// One install, as the client saw it and as the task log tells it.
struct Install {
    /// POST sent → answered 201.
    accepted_ms: f64,
    /// POST sent → first 200 with the site's page.
    serving_ms: f64,
    /// POST sent → task seen finished (success).
    finished_ms: f64,
    /// Worker-measured duration of each step, by action.
    steps: Vec<(String, f64)>,
    /// The reload that carried its vhost, and how many changes it carried.
    reload: Option<(u64, u64)>,
}

impl Install {
    fn from_task(t: &Task, accepted_ms: f64, serving_ms: f64, finished_ms: f64) -> Result<Self> {
        let actions: HashMap<Uuid, String> = t
            .steps
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(|s| (s.id, s.action.clone()))
            .collect();
        let mut steps = Vec::new();
        let mut reload = None;
        for l in t.log.as_deref().unwrap_or_default() {
            // "step N (http site-install on server_master): success on attempt 1 (X ms, w)"
            if let Some(rest) = l.message.split(": success on attempt ").nth(1)
                && let Some(ms) = rest
                    .split('(')
                    .nth(1)
                    .and_then(|r| r.split(" ms").next())
                    .and_then(|n| n.trim().parse::<f64>().ok())
                && let Some(action) = l.step_id.and_then(|id| actions.get(&id))
            {
                steps.push((action.clone(), ms));
            }
            // "… reload #N carried M change(s)"
            if let Some(rest) = l.message.split("reload #").nth(1) {
                let mut w = rest.split_whitespace();
                let n = w.next().and_then(|n| n.parse().ok());
                let m = w.nth(1).and_then(|m| m.parse().ok());
                if let (Some(n), Some(m)) = (n, m) {
                    reload = Some((n, m));
                }
            }
        }
        Ok(Self {
            accepted_ms,
            serving_ms,
            finished_ms,
            steps,
            reload,
        })
    }
}

async fn post_site(world: &World, uri: &str) -> Result<Uuid> {
    let r = world
        .post("/api/v1/sites", &json!({"uri": uri, "platform": PLATFORM}))
        .send()
        .await?;
    let status = r.status();
    let v: serde_json::Value = r.json().await?;
    if status.as_u16() != 201 {
        bail!("POST /api/v1/sites {uri}: {status} {v}");
    }
    Ok(v["task"].as_str().context("no task")?.parse()?)
}

/// The task's status when it has finished.
async fn finished(world: &World, id: Uuid) -> Result<Option<String>> {
    let (status, done): (String, bool) =
        sqlx::query_as("SELECT status, finished_at IS NOT NULL FROM tasks WHERE id = $1")
            .bind(id)
            .fetch_one(&world.store.pool)
            .await?;
    Ok(done.then_some(status))
}

fn task_log(t: &Task) -> String {
    t.log
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|l| l.message.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

/// One install, polling nginx for the site and the task for its end every 10 ms.
async fn install_one(world: &World, uri: &str, within: Duration) -> Result<Install> {
    let addr = web_addr(world)?;
    let t0 = Instant::now();
    let id = post_site(world, uri).await?;
    let accepted = t0.elapsed();
    let (mut serving, mut done) = (None, None);
    loop {
        if serving.is_none() && serves(addr, uri).await? {
            serving = Some(t0.elapsed());
        }
        if done.is_none()
            && let Some(status) = finished(world, id).await?
        {
            done = Some(t0.elapsed());
            if status != "success" {
                let t = world.task(id).await?;
                bail!("install of {uri} ended {status}:\n{}", task_log(&t));
            }
        }
        if let (Some(s), Some(d)) = (serving, done) {
            let t = world.task(id).await?;
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            return Install::from_task(&t, ms(accepted), ms(s), ms(d));
        }
        if t0.elapsed() > within {
            bail!("install of {uri} not serving and finished after {within:?}");
        }
        tokio::time::sleep(POLL).await;
    }
}

struct SeqPhase {
    window: u64,
    fillers: usize,
    /// Vhost files present when the phase began (fillers, floor probes, earlier sites).
    vhosts: usize,
    floor: Floor,
    installs: Vec<Install>,
    cpu: CpuUse,
}

impl SeqPhase {
    fn serving(&self) -> Summary {
        Summary::of(self.installs.iter().map(|i| i.serving_ms).collect())
    }
    fn finished(&self) -> Summary {
        Summary::of(self.installs.iter().map(|i| i.finished_ms).collect())
    }
    fn accepted(&self) -> Summary {
        Summary::of(self.installs.iter().map(|i| i.accepted_ms).collect())
    }
}

async fn sequential(
    world: &World,
    cfg: &Config,
    present: &[usize],
    window: u64,
) -> Result<Vec<SeqPhase>> {
    // One install untimed: PHP's and MariaDB's caches, the workers' connections.
    eprintln!("  warm-up install…");
    install_one(world, &format!("warm.{}.test", world.id), cfg.timeout).await?;
    let mut phases = Vec::new();
    for &n in present {
        fill_to(world, n).await?;
        let fl = floor(world, cfg.floor_reps, &format!("{n}")).await?;
        let vhosts = vhost_count(world);
        eprintln!(
            "  window {window} ms, {vhosts} vhosts: floor nginx {} ms, db {} ms; {} installs…",
            ms(fl.nginx_ms),
            ms(fl.db_ms),
            cfg.installs
        );
        let cpu_before = CpuSample::now();
        let mut installs = Vec::new();
        for i in 0..cfg.installs {
            let uri = format!("s{i}.w{window}.n{n}.{}.test", world.id);
            installs.push(install_one(world, &uri, cfg.timeout).await?);
        }
        let phase = SeqPhase {
            window,
            fillers: n,
            vhosts,
            floor: fl,
            installs,
            cpu: CpuSample::now().since(&cpu_before),
        };
        eprintln!(
            "    accepted → serving ms p50/p95/p99/max {}",
            phase.serving()
        );
        phases.push(phase);
    }
    Ok(phases)
}

struct Burst {
    concurrency: u16,
    window: u64,
    installs: usize,
    vhosts: usize,
    floor: Floor,
    /// First POST sent → every POST answered.
    posted_ms: f64,
    /// First POST sent → the last site serving.
    serving_ms: f64,
    /// First POST sent → the last task finished.
    finished_ms: f64,
    per_install: Vec<Install>,
    reloads: BTreeSet<u64>,
    cpu: CpuUse,
}

async fn burst(world: &World, cfg: &Config, concurrency: u16) -> Result<Burst> {
    let addr = web_addr(world)?;
    eprintln!("  warm-up install…");
    install_one(world, &format!("warm.{}.test", world.id), cfg.timeout).await?;
    fill_to(world, cfg.burst_present).await?;
    let fl = floor(world, cfg.floor_reps, "burst").await?;
    let vhosts = vhost_count(world);
    eprintln!(
        "  burst of {} installs, {vhosts} vhosts present, concurrency {concurrency}, window {} ms…",
        cfg.burst, cfg.burst_window
    );
    let uris: Vec<String> = (0..cfg.burst)
        .map(|i| format!("b{i}.c{concurrency}.{}.test", world.id))
        .collect();
    let cpu_before = CpuSample::now();
    let t0 = Instant::now();
    let posts = uris.iter().map(|u| async move {
        let id = post_site(world, u).await?;
        Ok::<_, anyhow::Error>((id, t0.elapsed()))
    });
    let posted: Vec<(Uuid, Duration)> = futures_util::future::join_all(posts)
        .await
        .into_iter()
        .collect::<Result<_>>()?;
    let posted_ms = t0.elapsed().as_secs_f64() * 1e3;
    let ids: Vec<Uuid> = posted.iter().map(|p| p.0).collect();
    let index: HashMap<Uuid, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    let mut serving: Vec<Option<Duration>> = vec![None; ids.len()];
    let mut done: Vec<Option<Duration>> = vec![None; ids.len()];
    let mut said = Instant::now();
    loop {
        // Tasks finished, and those whose vhost step has succeeded (worth a GET).
        let rows: Result<Vec<(Uuid, String, bool, bool)>, _> = sqlx::query_as(
            "SELECT t.id, t.status, t.finished_at IS NOT NULL,
                    COALESCE(bool_or(s.action = 'site-vhost' AND s.status = 'success'), false)
             FROM tasks t LEFT JOIN steps s ON s.task_id = t.id
             WHERE t.id = ANY($1) GROUP BY t.id",
        )
        .bind(&ids)
        .fetch_all(&world.store.pool)
        .await;
        // PostgreSQL may be short of connections under the burst: look again later.
        let rows = match rows {
            Ok(r) => r,
            Err(e) if t0.elapsed() < cfg.timeout => {
                eprintln!("    poll failed ({e}); again");
                tokio::time::sleep(BURST_POLL).await;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let now = t0.elapsed();
        for (id, status, fin, vhost_ok) in rows {
            let i = index[&id];
            if fin && done[i].is_none() {
                if status != "success" {
                    let t = world.task(id).await?;
                    bail!(
                        "burst install {} ended {status}:\n{}",
                        uris[i],
                        task_log(&t)
                    );
                }
                done[i] = Some(now);
            }
            if (vhost_ok || fin) && serving[i].is_none() && serves(addr, &uris[i]).await? {
                serving[i] = Some(t0.elapsed());
            }
        }
        let left = done.iter().filter(|d| d.is_none()).count()
            + serving.iter().filter(|s| s.is_none()).count();
        if left == 0 {
            break;
        }
        if t0.elapsed() > cfg.timeout {
            bail!(
                "burst: {left} installs not finished/serving after {:?}",
                cfg.timeout
            );
        }
        if said.elapsed() > Duration::from_secs(5) {
            eprintln!(
                "    {} of {} serving, {} finished",
                serving.iter().flatten().count(),
                ids.len(),
                done.iter().flatten().count()
            );
            said = Instant::now();
        }
        tokio::time::sleep(BURST_POLL).await;
    }
    let cpu = CpuSample::now().since(&cpu_before);
    let mut per_install = Vec::new();
    let mut reloads = BTreeSet::new();
    for (i, (id, accepted)) in posted.iter().enumerate() {
        let t = world.task(*id).await?;
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let inst = Install::from_task(
            &t,
            ms(*accepted),
            ms(serving[i].unwrap_or_default()),
            ms(done[i].unwrap_or_default()),
        )?;
        let (n, _) = inst
            .reload
            .with_context(|| format!("no `reload #N` in the log of {}", uris[i]))?;
        reloads.insert(n);
        per_install.push(inst);
    }
    eprintln!(
        "    {} reloads; last serving after {:.2} s",
        reloads.len(),
        t0.elapsed().as_secs_f64()
    );
    let max = |v: &[Option<Duration>]| {
        v.iter()
            .flatten()
            .max()
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    Ok(Burst {
        concurrency,
        window: cfg.burst_window,
        installs: ids.len(),
        vhosts,
        floor: fl,
        posted_ms,
        serving_ms: max(&serving),
        finished_ms: max(&done),
        per_install,
        reloads,
        cpu,
    })
}

/// Median worker-measured ms per step action, in the order the steps run.
fn step_medians(installs: &[Install]) -> Vec<(String, f64, f64)> {
    let mut by: BTreeMap<String, (usize, Vec<f64>)> = BTreeMap::new();
    for i in installs {
        for (pos, (action, ms)) in i.steps.iter().enumerate() {
            let e = by.entry(action.clone()).or_insert((pos, Vec::new()));
            e.1.push(*ms);
        }
    }
    let mut v: Vec<(usize, String, f64, f64)> = by
        .into_iter()
        .map(|(a, (pos, ms))| {
            let s = Summary::of(ms);
            (pos, a, s.p50, s.p95)
        })
        .collect();
    v.sort_by_key(|x| x.0);
    v.into_iter()
        .map(|(_, a, p50, p95)| (a, p50, p95))
        .collect()
}

/// Median of (accepted → finished) − (sum of the steps' worker times): the pipeline's own
/// share (API, outbox, broker, state service, between the steps).
fn pipeline_share(installs: &[Install]) -> f64 {
    median(
        installs
            .iter()
            .map(|i| i.finished_ms - i.steps.iter().map(|s| s.1).sum::<f64>())
            .collect(),
    )
}

struct Report<'a> {
    cfg: &'a Config,
    seq: Vec<SeqPhase>,
    bursts: Vec<Result<Burst, (u16, String)>>,
    load_before: String,
    load_after: String,
    secs: f64,
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}

impl std::fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = self.cfg;
        writeln!(
            f,
            "\nberth-bench sites: platform {PLATFORM} (fixture {FIXTURE}), server {SERVER} \
             (nginx + php-fpm8.2 + MariaDB, dns null)"
        )?;
        writeln!(
            f,
            "settings: {} sequential installs per (window, vhosts), windows {:?} ms, \
             present vhosts {:?}, concurrency {}; burst {} installs with {} filler vhosts, \
             concurrency {:?}, window {} ms; floor medians of {} runs",
            c.installs,
            c.windows,
            c.present,
            c.concurrency,
            c.burst,
            c.burst_present,
            c.burst_concurrency,
            c.burst_window,
            c.floor_reps
        )?;
        writeln!(
            f,
            "machine: {} cores, load average {} before, {} after; run took {:.0} s\n",
            machine::cores(),
            self.load_before,
            self.load_after,
            self.secs
        )?;

        writeln!(f, "## Sequential installs (one at a time)\n")?;
        writeln!(
            f,
            "| window ms | vhosts present | installs | accepted→serving p50 / p95 / p99 / max ms | accepted→task success p50 / p95 ms | POST answered p50 ms | floor ms (nginx test+reload+serving / db) | p50 ÷ floor |"
        )?;
        writeln!(f, "|---:|---:|---:|---|---|---:|---|---:|")?;
        for p in &self.seq {
            let s = p.serving();
            let d = p.finished();
            writeln!(
                f,
                "| {} | {} ({} fillers) | {} | {} | {} / {} | {} | {} ({} / {}) | {:.1} |",
                p.window,
                p.vhosts,
                p.fillers,
                p.installs.len(),
                s,
                ms(d.p50),
                ms(d.p95),
                ms(p.accepted().p50),
                ms(p.floor.total()),
                ms(p.floor.nginx_ms),
                ms(p.floor.db_ms),
                s.p50 / p.floor.total()
            )?;
        }
        writeln!(f)?;
        for p in &self.seq {
            let steps = step_medians(&p.installs);
            let mut line = String::new();
            for (a, p50, p95) in &steps {
                let _ = write!(line, "{a} {} ({}), ", ms(*p50), ms(*p95));
            }
            let install_ms = steps
                .iter()
                .filter(|s| s.0 == "site-install")
                .map(|s| s.1)
                .sum::<f64>();
            writeln!(
                f,
                "window {} ms, {} vhosts: step p50 (p95) ms: {line}pipeline between steps {}; \
                 `nginx -t` alone {} ms; p50 ÷ (floor + drush site:install p50) = {:.2}; CPU: {}",
                p.window,
                p.vhosts,
                ms(pipeline_share(&p.installs)),
                ms(p.floor.nginx_test_ms),
                p.serving().p50 / (p.floor.total() + install_ms),
                p.cpu
            )?;
        }
        for w in &c.windows {
            if let Some(p) = self
                .seq
                .iter()
                .filter(|p| p.window == *w && p.fillers >= AIM_P50_AT)
                .min_by_key(|p| p.fillers)
            {
                let p50 = p.serving().p50;
                writeln!(
                    f,
                    "\naim p50 ≤ {AIM_P50_MS} ms with {AIM_P50_AT} vhosts, window {w} ms: p50 {} ms ({})",
                    ms(p50),
                    verdict(p50 <= AIM_P50_MS)
                )?;
            }
        }

        if !self.bursts.is_empty() {
            writeln!(f, "\n## Burst (all POSTed at once)\n")?;
            writeln!(
                f,
                "| installs | vhosts present | concurrency | window ms | all POSTs answered s | last serving s | last task success s | reloads | changes per reload | largest batch | per-install accepted→serving p50 / p95 / p99 / max ms |"
            )?;
            writeln!(f, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")?;
            for b in self.bursts.iter().flatten() {
                let largest = b
                    .per_install
                    .iter()
                    .filter_map(|i| i.reload.map(|r| r.1))
                    .max()
                    .unwrap_or(0);
                writeln!(
                    f,
                    "| {} | {} | {} | {} | {:.2} | {:.2} | {:.2} | {} | {:.1} | {} | {} |",
                    b.installs,
                    b.vhosts,
                    b.concurrency,
                    b.window,
                    b.posted_ms / 1e3,
                    b.serving_ms / 1e3,
                    b.finished_ms / 1e3,
                    b.reloads.len(),
                    b.installs as f64 / b.reloads.len().max(1) as f64,
                    largest,
                    Summary::of(b.per_install.iter().map(|i| i.serving_ms).collect())
                )?;
            }
            writeln!(f)?;
            for (c, e) in self.bursts.iter().filter_map(|b| b.as_ref().err()) {
                writeln!(f, "burst at concurrency {c} FAILED: {e}")?;
            }
            for b in self.bursts.iter().flatten() {
                let per = b.installs as f64 / b.reloads.len().max(1) as f64;
                let steps = step_medians(&b.per_install);
                let mut line = String::new();
                for (a, p50, p95) in &steps {
                    let _ = write!(line, "{a} {} ({}), ", ms(*p50), ms(*p95));
                }
                writeln!(
                    f,
                    "concurrency {}: {:.1} changes per reload (aim ≥ {AIM_CHANGES_PER_RELOAD}: {}); \
                     {:.2} installs/s to the last serving; floor here: nginx {} ms, db {} ms; \
                     step p50 (p95) ms: {line}\n  CPU: {}",
                    b.concurrency,
                    per,
                    verdict(per >= AIM_CHANGES_PER_RELOAD),
                    b.installs as f64 / (b.serving_ms / 1e3),
                    ms(b.floor.nginx_ms),
                    ms(b.floor.db_ms),
                    b.cpu
                )?;
            }
        }
        writeln!(f, "\n{AEGIR_NOTE}")
    }
}
