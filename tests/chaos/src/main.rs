//! The chaos run: a mixed workload of every task type while berth's processes are killed
//! with SIGKILL at random moments and its PostgreSQL, MariaDB and RabbitMQ are crashed and
//! restarted; then an account of every task and of every effect on the real servers.
//!
//! ```sh
//! cargo build --workspace --bins
//! target/debug/berth-chaos --tasks 2000 --kills 60 --seed 7
//! ```
//!
//! Everything runs on loopback ports under one temporary directory: private PostgreSQL,
//! MariaDB and RabbitMQ servers (so the machine's own are never restarted), nginx with
//! php-fpm and named, and `berth serve api|state|http|db|dns|backup` and two `berth serve
//! scheduler` (firing a cron schedule for every site through the run), each its own process,
//! restarted by the harness (as systemd would) after it is killed. A client sends tasks
//! with an Idempotency-Key and resends on a dropped connection or a 5xx, as a storefront
//! would. The run exits 1 when anything is lost, stuck, doubled or left behind, or a site
//! does not serve as its status says.

mod checks;
mod procs;
mod schedules;
mod workload;

use anyhow::{Context, Result};
use berth_test_servers::daemons::{Daemon, Kind};
use clap::Parser;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser, Debug, Clone)]
#[command(
    name = "berth-chaos",
    about = "A mixed workload while berth's processes are killed and its servers restarted"
)]
pub struct Args {
    /// Tasks to send (each accepted task is accounted for at the end).
    #[arg(long, default_value_t = 200)]
    pub tasks: usize,
    /// SIGKILLs of berth processes, spread over the workload (default: tasks / 40, at least 5).
    #[arg(long)]
    pub kills: Option<usize>,
    /// Rounds of server restarts; each round crashes and restarts RabbitMQ, PostgreSQL and
    /// MariaDB once, at evenly spread moments.
    #[arg(long, default_value_t = 1)]
    pub server_restarts: usize,
    /// Seed of the workload's and the kills' choices.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Tasks in flight at once.
    #[arg(long, default_value_t = 8)]
    pub in_flight: usize,
    /// Sites alive at most (installs and clones stop above it; deletes make room).
    #[arg(long, default_value_t = 24)]
    pub max_sites: usize,
    /// A task not finished this long after the last recovery, with no task finishing
    /// meanwhile, is stuck.
    #[arg(long, default_value_t = 60)]
    pub stuck_after_s: u64,
    /// Keep the directory, servers' data and logs (the servers are stopped).
    #[arg(long)]
    pub keep: bool,
    /// Write the account as JSON to this file too.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// The berth binary (default: next to this one).
    #[arg(long, env = "BERTH_BIN")]
    pub berth_bin: Option<PathBuf>,
}

pub const SERVER: &str = "server_master";

/// What the run set up: where everything is.
pub struct Env {
    pub dir: PathBuf,
    pub api: String,
    pub token: String,
    pub pg_url: String,
    pub my_port: u16,
    pub web_port: u16,
    pub dns_port: u16,
    pub platforms: Vec<(String, PathBuf)>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let code = rt.block_on(run(args))?;
    std::process::exit(code);
}

async fn run(args: Args) -> Result<i32> {
    let started = Instant::now();
    let kills = args.kills.unwrap_or((args.tasks / 40).max(5));
    let bin = match &args.berth_bin {
        Some(b) => b.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("binary dir")?
            .join("berth"),
    };
    anyhow::ensure!(
        bin.exists(),
        "{} is missing: build it with `cargo build --workspace --bins`",
        bin.display()
    );
    let dir = std::env::temp_dir().join(format!(
        "berth-chaos-{}-{}",
        args.seed,
        &uuid::Uuid::new_v4().simple().to_string()[..6]
    ));
    std::fs::create_dir_all(&dir)?;
    make_traversable(&dir)?;
    say(&format!("directory {}", dir.display()));

    // The servers berth stands on, each private to this run.
    say("starting PostgreSQL, MariaDB and RabbitMQ (private, loopback)");
    let pg = Daemon::start(Kind::Postgres, &dir.join("postgresql"))?;
    let my = Daemon::start(Kind::Mariadb, &dir.join("mariadb"))?;
    let mq = Daemon::start(Kind::Rabbitmq, &dir.join("rabbitmq"))?;
    say(&format!(
        "postgresql :{}  mariadb :{}  rabbitmq :{}",
        pg.port, my.port, mq.port
    ));
    let vhost_dir = dir
        .join("config")
        .join(SERVER)
        .join("nginx")
        .join("vhost.d");
    let nginx_conf = berth_test_servers::web::write_nginx_conf(&dir, &[vhost_dir])?;
    // Each site's php-fpm pool is written by the http worker into the server's pool
    // directory, which the run's php-fpm includes.
    berth_test_servers::web::write_php_fpm_conf(
        &dir.join("web"),
        &[dir
            .join("config")
            .join(SERVER)
            .join("php-fpm")
            .join("pool.d")],
    )?;
    let web = berth_test_servers::web::Web::start(&dir.join("web"), &nginx_conf)?;
    let named = berth_test_servers::named::Named::start(&dir, &[SERVER.to_string()])?;
    say(&format!(
        "nginx :{}  php-fpm {}  named :{}",
        web.port, web.php_fpm, named.port
    ));

    let api_port = berth_test_servers::free_port();
    let pg_url = pg.url();
    let secret = String::from_utf8(
        std::process::Command::new(&bin)
            .arg("secret-key")
            .output()?
            .stdout,
    )?
    .trim()
    .to_string();
    let env: Vec<(String, String)> = vec![
        ("BERTH_DATABASE_URL".into(), pg_url.clone()),
        ("BERTH_AMQP_URL".into(), mq.url()),
        ("BERTH_LISTEN".into(), format!("127.0.0.1:{api_port}")),
        ("BERTH_DATA_ROOT".into(), dir.display().to_string()),
        ("BERTH_SECRET_KEY".into(), secret),
        ("BERTH_SERVERS".into(), SERVER.into()),
        ("BERTH_NGINX_CONF".into(), nginx_conf.display().to_string()),
        (
            "BERTH_NAMED_CONF".into(),
            named.named_conf.display().to_string(),
        ),
        (
            "BERTH_RNDC_CONF".into(),
            named.rndc_conf.display().to_string(),
        ),
        ("BERTH_HTTP_LISTEN_ADDRESS".into(), "127.0.0.1".into()),
        (
            "BERTH_PHP_FPM_CONF".into(),
            web.php_fpm_conf.display().to_string(),
        ),
        (
            "BERTH_BACKUPS_DIR".into(),
            dir.join("backups").display().to_string(),
        ),
        // Short retry tiers: a restarted server is back within seconds, and the run should
        // not wait the production tiers' 5 minutes for the last attempt.
        (
            "BERTH_RETRY_DELAYS_MS".into(),
            "1000,3000,10000,20000".into(),
        ),
        ("BERTH_LOG_FORMAT".into(), "json".into()),
        ("RUST_LOG".into(), "info".into()),
    ];
    let token = {
        let out = std::process::Command::new(&bin)
            .args(["token", "create", "--name", "chaos"])
            .envs(env.iter().map(|(k, v)| (k, v)))
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "berth token create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)?.trim().to_string()
    };

    let procs = Arc::new(procs::Procs::start(&bin, &dir, env)?);
    let supervisor = procs.supervise();
    let _stop = procs::StopOnDrop(Arc::clone(&procs));
    let e = Env {
        api: format!("http://127.0.0.1:{api_port}"),
        token,
        pg_url,
        my_port: my.port,
        web_port: web.port,
        dns_port: named.port,
        platforms: vec![],
        dir: dir.clone(),
    };
    let mut e = e;
    let client = Arc::new(workload::Client::new(&e)?);
    client.wait_ready(Duration::from_secs(60)).await?;
    say("berth is up: api, state, http, db, dns, backup (one process each), two schedulers");
    e.platforms = workload::setup(&client, &e).await?;
    let scheduled = schedules::setup(&client, &e).await?;

    let disruptor = procs::Disruptor::new(
        Arc::clone(&procs),
        vec![pg, my, mq],
        args.seed,
        kills,
        args.server_restarts,
    );
    let (mut account, servers) = workload::run(&client, &e, &args, disruptor).await?;
    let scheduled = schedules::check(&e, scheduled).await?;
    account.unexpected_exits = procs
        .unexpected_exits
        .load(std::sync::atomic::Ordering::SeqCst);
    let checks = checks::run(&e, &account, &web, &named).await?;
    let code = report(&args, &account, &checks, &scheduled, started.elapsed())?;
    procs.stop_all();
    let _ = supervisor.join();
    drop(web);
    drop(named);
    drop(servers);
    if args.keep {
        say(&format!("kept {}", dir.display()));
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(code)
}

fn report(
    args: &Args,
    a: &workload::Account,
    c: &checks::Checks,
    sch: &schedules::Account,
    took: Duration,
) -> Result<i32> {
    let mut by_status: Vec<_> = a.finished.iter().collect();
    by_status.sort();
    let mut by_type: Vec<_> = a.accepted_by_type.iter().collect();
    by_type.sort();
    let failed = a.lost.len()
        + a.stuck.len()
        + c.doubled.len()
        + c.left_behind.len()
        + c.not_serving.len()
        + c.wrong_state.len()
        + sch.lost.len()
        + sch.doubled.len()
        + sch.unfinished.len();
    let summary = serde_json::json!({
        "seed": args.seed,
        "seconds": took.as_secs(),
        "tasks_accepted": a.accepted,
        "accepted_by_type": by_type,
        "refused_4xx": a.refused,
        "refusals": a.refusals,
        "client_resends": a.resends,
        "finished_by_status": by_status,
        "kills": a.kills,
        "kills_by_service": a.kills_by_service,
        "server_restarts": a.server_restarts,
        "unexpected_exits": a.unexpected_exits,
        "lost": a.lost,
        "stuck": a.stuck,
        "doubled": c.doubled,
        "left_behind": c.left_behind,
        "not_serving": c.not_serving,
        "wrong_state": c.wrong_state,
        "sites_checked": c.sites_checked,
        "dead_letters": c.dead_letters,
        "errors": c.errors,
        "schedule": {
            "fired": sch.fired, "skipped": sch.skipped, "missed": sch.missed, "tasks": sch.tasks,
            "lost": sch.lost, "doubled": sch.doubled, "unfinished": sch.unfinished,
        },
    });
    println!("\n==== chaos run (seed {}) ====", args.seed);
    println!("took                 {} s", took.as_secs());
    println!("tasks accepted       {}", a.accepted);
    for (t, n) in &by_type {
        println!("  {t:<18} {n}");
    }
    println!("refused (4xx)        {}", a.refused);
    for r in a.refusals.iter().take(10) {
        println!("  {}", r.chars().take(200).collect::<String>());
    }
    println!("client resends       {}", a.resends);
    println!("finished by status");
    for (s, n) in &by_status {
        println!("  {s:<18} {n}");
    }
    println!("kills (SIGKILL)      {}", a.kills);
    for (s, n) in &a.kills_by_service {
        println!("  {s:<18} {n}");
    }
    println!("server restarts");
    for (s, n) in &a.server_restarts {
        println!("  {s:<18} {n}");
    }
    println!("unexpected exits     {}", a.unexpected_exits);
    println!("dead letters         {}", c.dead_letters);
    println!("errors by task, step and reason");
    for (what, n) in &c.errors {
        println!("  {n:>4}  {what}");
    }
    println!("sites checked        {}", c.sites_checked);
    println!("lost                 {}", a.lost.len());
    println!("stuck                {}", a.stuck.len());
    println!("doubled              {}", c.doubled.len());
    println!("left behind          {}", c.left_behind.len());
    println!("not serving          {}", c.not_serving.len());
    println!("wrong state          {}", c.wrong_state.len());
    println!(
        "schedule runs        {} fired, {} skipped, {} missed; {} tasks",
        sch.fired, sch.skipped, sch.missed, sch.tasks
    );
    println!("  lost               {}", sch.lost.len());
    println!("  doubled            {}", sch.doubled.len());
    println!("  unfinished         {}", sch.unfinished.len());
    for (what, list) in [
        ("lost", &a.lost),
        ("stuck", &a.stuck),
        ("doubled", &c.doubled),
        ("left behind", &c.left_behind),
        ("not serving", &c.not_serving),
        ("wrong state", &c.wrong_state),
        ("schedule lost", &sch.lost),
        ("schedule doubled", &sch.doubled),
        ("schedule unfinished", &sch.unfinished),
    ] {
        for item in list.iter().take(20) {
            println!("  {what}: {item}");
        }
    }
    if let Some(p) = &args.json {
        std::fs::write(p, serde_json::to_string_pretty(&summary)?)?;
    }
    if failed == 0 {
        println!("RESULT: ok — nothing lost, stuck, doubled or left behind");
        Ok(0)
    } else {
        println!("RESULT: FAILED ({failed} findings)");
        Ok(1)
    }
}

pub fn say(msg: &str) {
    eprintln!("[chaos] {msg}");
}

/// nginx's workers (www-data) must traverse the run's directory.
fn make_traversable(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}
