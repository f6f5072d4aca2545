//! The client side: a storefront's and an operator's mixed tasks, sent with an
//! Idempotency-Key and resent when the answer is lost, each followed until it ends; and a
//! model of what each site must be once its tasks have ended.

use crate::procs::{Disrupted, Disruptor};
use crate::{Args, Env, SERVER, say};
use anyhow::{Context, Result, bail};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a request is resent while berth (or what it stands on) is down.
const RESEND_FOR: Duration = Duration::from_secs(300);

pub struct Client {
    http: reqwest::Client,
    api: String,
    token: String,
    pub resends: AtomicUsize,
}

pub enum Sent {
    Accepted(Value),
    Refused(u16, String),
}

impl Client {
    pub fn new(e: &Env) -> Result<Client> {
        Ok(Client {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
            api: e.api.clone(),
            token: e.token.clone(),
            resends: AtomicUsize::new(0),
        })
    }

    pub async fn wait_ready(&self, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(r) = self.http.get(format!("{}/readyz", self.api)).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the API at {} is not ready after {within:?}", self.api);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// POSTs `body` with one Idempotency-Key, resending it after a dropped connection or a
    /// 5xx until berth answers 2xx (accepted) or 4xx (refused).
    pub async fn send(&self, path: &str, body: &Value) -> Result<Sent> {
        let key = uuid::Uuid::new_v4().to_string();
        let deadline = Instant::now() + RESEND_FOR;
        let mut first = true;
        loop {
            if !first {
                self.resends.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            first = false;
            let r = self
                .http
                .post(format!("{}{path}", self.api))
                .bearer_auth(&self.token)
                .header("Idempotency-Key", &key)
                .json(body)
                .send()
                .await;
            let r = match r {
                Ok(r) => r,
                Err(_) if Instant::now() < deadline => continue,
                Err(e) => bail!("POST {path}: no answer for {RESEND_FOR:?}: {e}"),
            };
            let status = r.status().as_u16();
            // A 4xx with Retry-After (the key's first request is still being answered) is
            // worth resending; a 409 with a task's Location says the lost answer's task.
            let retry_after = r.headers().contains_key("retry-after");
            let task = r
                .headers()
                .get("location")
                .and_then(|l| l.to_str().ok())
                .and_then(|l| l.strip_prefix("/api/v1/tasks/"))
                .map(String::from);
            let text = r.text().await.unwrap_or_default();
            match status {
                200..=299 => return Ok(Sent::Accepted(serde_json::from_str(&text)?)),
                409 if task.is_some() => {
                    return Ok(Sent::Accepted(json!({ "id": task })));
                }
                400..=499 if retry_after && Instant::now() < deadline => continue,
                400..=499 if status != 408 && status != 429 => {
                    return Ok(Sent::Refused(status, text));
                }
                _ if Instant::now() < deadline => continue,
                _ => bail!("POST {path}: {status} for {RESEND_FOR:?}: {text}"),
            }
        }
    }

    /// GET, retried while berth is unreachable or answers 5xx.
    pub async fn get(&self, path: &str) -> Result<(u16, Value)> {
        let deadline = Instant::now() + RESEND_FOR;
        loop {
            let r = self
                .http
                .get(format!("{}{path}", self.api))
                .bearer_auth(&self.token)
                .send()
                .await;
            if let Ok(r) = r {
                let status = r.status().as_u16();
                if status < 500 {
                    let v = r.json().await.unwrap_or(Value::Null);
                    return Ok((status, v));
                }
            }
            if Instant::now() > deadline {
                bail!("GET {path}: berth unreachable for {RESEND_FOR:?}");
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    pub async fn wait_task(&self, id: &str, within: Duration) -> Result<String> {
        let deadline = Instant::now() + within;
        loop {
            let (_, t) = self.get(&format!("/api/v1/tasks/{id}")).await?;
            let status = t["status"].as_str().unwrap_or_default().to_string();
            if finished(&status) {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("task {id} still {status} after {within:?}: {t}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn finished(status: &str) -> bool {
    matches!(status, "success" | "warning" | "error" | "cancelled")
}

/// Registers the server (nginx, the private MariaDB, named) and two platforms on copies of
/// the Drupal 10 fixture; returns the platforms.
pub async fn setup(c: &Client, e: &Env) -> Result<Vec<(String, std::path::PathBuf)>> {
    let body = json!({
        "name": SERVER, "host": "localhost",
        "services": {
            "http": {"type": "nginx", "port": e.web_port},
            "db": {"type": "mariadb", "host": "127.0.0.1", "port": e.my_port,
                   "admin_user": "root", "admin_password": ""},
            "dns": {"type": "bind", "port": e.dns_port}
        }
    });
    let Sent::Accepted(v) = c.send("/api/v1/servers", &body).await? else {
        bail!("server refused");
    };
    let verify = v["verify_task"].as_str().context("verify_task")?;
    let s = c.wait_task(verify, Duration::from_secs(120)).await?;
    anyhow::ensure!(s == "success", "server verify ended {s}");
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/platforms/drupal10")
        .canonicalize()?;
    let mut out = Vec::new();
    for name in ["platform_a", "platform_b"] {
        let root = e.dir.join("platforms").join(name);
        std::fs::create_dir_all(root.parent().unwrap())?;
        let st = std::process::Command::new("cp")
            .arg("-a")
            .arg(&fixture)
            .arg(&root)
            .status()?;
        anyhow::ensure!(st.success(), "cp -a {}", fixture.display());
        let Sent::Accepted(v) = c
            .send(
                "/api/v1/platforms",
                &json!({"name": name, "root": root.display().to_string()}),
            )
            .await?
        else {
            bail!("platform {name} refused");
        };
        let s = c
            .wait_task(
                v["task"].as_str().context("task")?,
                Duration::from_secs(120),
            )
            .await?;
        anyhow::ensure!(s == "success", "platform {name} verify ended {s}");
        out.push((name.to_string(), root));
    }
    say("server_master, platform_a and platform_b ready");
    Ok(out)
}

/// What a site must be once its tasks have ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    Installing,
    Enabled,
    Disabled,
    Deleted,
    Failed,
    /// A delete that failed after its point of no return: whatever berth says.
    Unknown,
}

#[derive(Debug, Clone)]
pub struct SiteM {
    pub uri: String,
    pub platform: String,
    pub expect: Expect,
    busy: bool,
    backups: usize,
}

#[derive(Default)]
pub struct Model {
    pub sites: BTreeMap<String, SiteM>,
    next: usize,
    server_busy: bool,
    platform_busy: BTreeMap<String, bool>,
}

#[derive(Debug, Clone)]
enum Op {
    Install {
        uri: String,
        platform: String,
    },
    OnSite {
        task: &'static str,
        uri: String,
    },
    Restore {
        uri: String,
    },
    BackupDelete {
        uri: String,
    },
    Migrate {
        uri: String,
        to: String,
    },
    Clone {
        uri: String,
        new: String,
        platform: String,
    },
    ServerVerify,
    PlatformVerify {
        name: String,
    },
}

impl Op {
    fn kind(&self) -> &'static str {
        match self {
            Op::Install { .. } => "install",
            Op::OnSite { task, .. } => task,
            Op::Restore { .. } => "restore",
            Op::BackupDelete { .. } => "backup-delete",
            Op::Migrate { .. } => "migrate",
            Op::Clone { .. } => "clone",
            Op::ServerVerify => "server verify",
            Op::PlatformVerify { .. } => "platform verify",
        }
    }
}

/// The account of the workload.
#[derive(Debug, Default)]
pub struct Account {
    pub accepted: usize,
    pub accepted_by_type: BTreeMap<String, usize>,
    pub refused: usize,
    pub refusals: Vec<String>,
    pub resends: usize,
    pub finished: BTreeMap<String, usize>,
    pub kills: usize,
    pub kills_by_service: BTreeMap<String, usize>,
    pub server_restarts: BTreeMap<String, usize>,
    pub unexpected_exits: usize,
    pub lost: Vec<String>,
    pub stuck: Vec<String>,
    pub sites: Vec<SiteM>,
    pub task_ids: Vec<String>,
}

struct Shared {
    model: Mutex<Model>,
    account: Mutex<Account>,
    /// Tasks accepted so far (the disruptions are due at shares of it).
    accepted: Arc<AtomicUsize>,
    /// Tasks accepted and not yet seen finished, by id.
    open: Mutex<BTreeMap<String, String>>,
    last_finish: Mutex<Instant>,
}

/// Runs the workload and the disruptions; returns the account and the servers (which stop
/// when dropped).
pub async fn run(
    c: &Arc<Client>,
    e: &Env,
    args: &Args,
    disruptor: Disruptor,
) -> Result<(Account, Vec<berth_test_servers::daemons::Daemon>)> {
    let mut rng = StdRng::seed_from_u64(args.seed);
    let platforms: Vec<String> = e.platforms.iter().map(|(n, _)| n.clone()).collect();
    let shared = Arc::new(Shared {
        model: Mutex::new(Model {
            platform_busy: platforms.iter().map(|p| (p.clone(), false)).collect(),
            ..Default::default()
        }),
        account: Mutex::new(Account::default()),
        accepted: Arc::new(AtomicUsize::new(0)),
        open: Mutex::new(BTreeMap::new()),
        last_finish: Mutex::new(Instant::now()),
    });
    let abort = Arc::new(AtomicBool::new(false));
    let disruptions = disruptor.spawn(Arc::clone(&shared.accepted), args.tasks, Arc::clone(&abort));
    let slots = Arc::new(tokio::sync::Semaphore::new(args.in_flight));
    let sending = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut last_progress_say = 0;
    say(&format!(
        "workload: {} tasks, {} in flight",
        args.tasks, args.in_flight
    ));
    loop {
        let accepted = shared.accepted.load(Ordering::SeqCst);
        if accepted >= args.tasks || abort.load(Ordering::SeqCst) {
            break;
        }
        if accepted >= last_progress_say + args.tasks.div_ceil(10) {
            last_progress_say = accepted;
            say(&format!(
                "{accepted}/{} accepted after {} s",
                args.tasks,
                started.elapsed().as_secs()
            ));
        }
        let permit = Arc::clone(&slots).acquire_owned().await?;
        if shared.accepted.load(Ordering::SeqCst) + sending.load(Ordering::SeqCst) >= args.tasks {
            drop(permit);
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let op = {
            let mut m = shared.model.lock().unwrap();
            choose(&mut m, &mut rng, &platforms, args.max_sites)
        };
        let Some(op) = op else {
            drop(permit);
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        sending.fetch_add(1, Ordering::SeqCst);
        let (c, shared, sending) = (Arc::clone(c), Arc::clone(&shared), Arc::clone(&sending));
        tokio::spawn(async move {
            let _permit = permit;
            let r = issue(&c, &shared, &op).await;
            sending.fetch_sub(1, Ordering::SeqCst);
            match r {
                Ok(Some(id)) => {
                    let status = follow(&c, &id).await;
                    finish(&shared, &op, &id, &status);
                }
                Ok(None) => release(&shared, &op, None),
                Err(err) => {
                    say(&format!("{}: {err:#}", op.kind()));
                    release(&shared, &op, None);
                }
            }
        });
    }
    say(&format!(
        "all {} tasks accepted after {} s; waiting for them to end",
        shared.accepted.load(Ordering::SeqCst),
        started.elapsed().as_secs()
    ));
    let (done, servers): (Disrupted, _) =
        tokio::task::spawn_blocking(move || disruptions.join().expect("disruptor thread")).await?;
    let recovered = done.last_recovery.unwrap_or_else(Instant::now);
    say(&format!(
        "disruptions over: {} kills, restarts {:?}",
        done.kills, done.server_restarts
    ));
    // Wait for the rest: stuck means no task finished for stuck_after_s, counted from the
    // last recovery at the earliest.
    let stuck_after = Duration::from_secs(args.stuck_after_s);
    loop {
        let open = shared.open.lock().unwrap().len();
        if open == 0 && sending.load(Ordering::SeqCst) == 0 {
            break;
        }
        let quiet_since = (*shared.last_finish.lock().unwrap()).max(recovered);
        if quiet_since.elapsed() > stuck_after {
            say(&format!(
                "{open} task(s) still open {} s after the last one ended",
                stuck_after.as_secs()
            ));
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let open: Vec<(String, String)> = shared
        .open
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut account = std::mem::take(&mut *shared.account.lock().unwrap());
    if !open.is_empty() {
        let pool = sqlx::PgPool::connect(&e.pg_url).await;
        for (id, kind) in open {
            let row: Option<(String,)> = match &pool {
                Ok(p) => sqlx::query_as("SELECT status FROM tasks WHERE id = $1::uuid")
                    .bind(&id)
                    .fetch_optional(p)
                    .await
                    .ok()
                    .flatten(),
                Err(_) => None,
            };
            match row {
                None => account.lost.push(format!("{kind} task {id}")),
                Some((s,)) => account.stuck.push(format!("{kind} task {id} ({s})")),
            }
        }
    }
    account.resends = c.resends.load(Ordering::Relaxed);
    account.kills = done.kills;
    account.kills_by_service = done.kills_by_service;
    account.server_restarts = done.server_restarts;
    account.sites = shared
        .model
        .lock()
        .unwrap()
        .sites
        .values()
        .cloned()
        .collect();
    Ok((account, servers))
}

/// Picks an operation on idle targets, weighted; marks its targets busy.
fn choose(m: &mut Model, rng: &mut StdRng, platforms: &[String], max: usize) -> Option<Op> {
    let live = m
        .sites
        .values()
        .filter(|s| {
            matches!(
                s.expect,
                Expect::Installing | Expect::Enabled | Expect::Disabled | Expect::Unknown
            )
        })
        .count();
    let idle = |e: Expect| -> Vec<String> {
        m.sites
            .values()
            .filter(|s| !s.busy && s.expect == e)
            .map(|s| s.uri.clone())
            .collect()
    };
    let enabled = idle(Expect::Enabled);
    let disabled = idle(Expect::Disabled);
    let with_backups: Vec<String> = m
        .sites
        .values()
        .filter(|s| !s.busy && s.expect == Expect::Enabled && s.backups > 0)
        .map(|s| s.uri.clone())
        .collect();
    let mut menu: Vec<(u32, &str)> = Vec::new();
    if live < max {
        menu.push((if live < 4 { 20 } else { 3 }, "install"));
        if !enabled.is_empty() {
            menu.push((1, "clone"));
        }
    }
    if !enabled.is_empty() {
        menu.extend([
            (4, "verify"),
            (2, "disable"),
            (2, "login-reset"),
            (3, "backup"),
            (1, "migrate"),
        ]);
    }
    if !with_backups.is_empty() {
        menu.extend([(1, "restore"), (1, "backup-delete")]);
    }
    if !disabled.is_empty() {
        menu.push((3, "enable"));
        if live > 4 {
            menu.push((1, "delete"));
        }
    }
    if !m.server_busy {
        menu.push((1, "server verify"));
    }
    if m.platform_busy.values().any(|b| !b) {
        menu.push((1, "platform verify"));
    }
    let total: u32 = menu.iter().map(|(w, _)| w).sum();
    if total == 0 {
        return None;
    }
    let mut x = rng.random_range(0..total);
    let mut pick = menu[0].1;
    for (w, k) in &menu {
        if x < *w {
            pick = k;
            break;
        }
        x -= w;
    }
    let any = |rng: &mut StdRng, v: &[String]| v[rng.random_range(0..v.len())].clone();
    let op = match pick {
        "install" | "clone" => {
            m.next += 1;
            let new = format!("s{}.chaos.test", m.next);
            let platform = any(rng, platforms);
            if pick == "install" {
                Op::Install { uri: new, platform }
            } else {
                Op::Clone {
                    uri: any(rng, &enabled),
                    new,
                    platform,
                }
            }
        }
        "verify" | "disable" | "login-reset" | "backup" => Op::OnSite {
            task: match pick {
                "verify" => "verify",
                "disable" => "disable",
                "login-reset" => "login-reset",
                _ => "backup",
            },
            uri: any(rng, &enabled),
        },
        "migrate" => {
            let uri = any(rng, &enabled);
            let from = m.sites[&uri].platform.clone();
            let to = platforms
                .iter()
                .find(|p| **p != from)
                .cloned()
                .unwrap_or(from);
            Op::Migrate { uri, to }
        }
        "restore" => Op::Restore {
            uri: any(rng, &with_backups),
        },
        "backup-delete" => Op::BackupDelete {
            uri: any(rng, &with_backups),
        },
        "enable" => Op::OnSite {
            task: "enable",
            uri: any(rng, &disabled),
        },
        "delete" => Op::OnSite {
            task: "delete",
            uri: any(rng, &disabled),
        },
        "server verify" => Op::ServerVerify,
        _ => {
            let free: Vec<String> = m
                .platform_busy
                .iter()
                .filter(|(_, b)| !**b)
                .map(|(p, _)| p.clone())
                .collect();
            Op::PlatformVerify {
                name: any(rng, &free),
            }
        }
    };
    // Mark the targets busy (a new site enters the model as installing).
    match &op {
        Op::Install { uri, platform } => {
            m.sites.insert(
                uri.clone(),
                SiteM {
                    uri: uri.clone(),
                    platform: platform.clone(),
                    expect: Expect::Installing,
                    busy: true,
                    backups: 0,
                },
            );
        }
        Op::Clone { uri, new, platform } => {
            m.sites.get_mut(uri).unwrap().busy = true;
            m.sites.insert(
                new.clone(),
                SiteM {
                    uri: new.clone(),
                    platform: platform.clone(),
                    expect: Expect::Installing,
                    busy: true,
                    backups: 0,
                },
            );
        }
        Op::OnSite { uri, .. }
        | Op::Restore { uri }
        | Op::BackupDelete { uri }
        | Op::Migrate { uri, .. } => m.sites.get_mut(uri).unwrap().busy = true,
        Op::ServerVerify => m.server_busy = true,
        Op::PlatformVerify { name } => {
            m.platform_busy.insert(name.clone(), true);
        }
    }
    Some(op)
}

/// Sends the operation; `Some(task id)` when berth accepted it.
async fn issue(c: &Client, shared: &Shared, op: &Op) -> Result<Option<String>> {
    let task = |t: &str, target: &str, args: Value| {
        (
            "/api/v1/tasks".to_string(),
            json!({"type": t, "target": target, "args": args}),
        )
    };
    let (path, body) = match op {
        Op::Install { uri, platform } => (
            "/api/v1/sites".to_string(),
            json!({"uri": uri, "platform": platform}),
        ),
        Op::OnSite { task: t, uri } => task(t, uri, json!({})),
        Op::Restore { uri } | Op::BackupDelete { uri } => {
            let (_, list) = c.get(&format!("/api/v1/sites/{uri}/backups")).await?;
            let ids: Vec<String> = list
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter(|b| b["deleted_at"].is_null())
                        .filter_map(|b| b["id"].as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            // The newest for a restore (the list is newest first), the oldest to delete.
            let id = match op {
                Op::Restore { .. } => ids.first(),
                _ => ids.last(),
            };
            let Some(id) = id else {
                return Ok(None);
            };
            let t = if matches!(op, Op::Restore { .. }) {
                "restore"
            } else {
                "backup-delete"
            };
            task(t, uri, json!({"backup": id}))
        }
        Op::Migrate { uri, to } => task("migrate", uri, json!({"platform": to})),
        Op::Clone { uri, new, platform } => {
            task("clone", uri, json!({"uri": new, "platform": platform}))
        }
        Op::ServerVerify => task("verify", SERVER, json!({})),
        Op::PlatformVerify { name } => task("verify", name, json!({})),
    };
    match c.send(&path, &body).await? {
        Sent::Accepted(v) => {
            let id = v["task"]
                .as_str()
                .or_else(|| v["id"].as_str())
                .context("no task id in the answer")?
                .to_string();
            shared
                .open
                .lock()
                .unwrap()
                .insert(id.clone(), op.kind().into());
            let mut a = shared.account.lock().unwrap();
            a.accepted += 1;
            *a.accepted_by_type.entry(op.kind().into()).or_default() += 1;
            a.task_ids.push(id.clone());
            shared.accepted.fetch_add(1, Ordering::SeqCst);
            Ok(Some(id))
        }
        Sent::Refused(status, text) => {
            let mut a = shared.account.lock().unwrap();
            a.refused += 1;
            if a.refusals.len() < 20 {
                a.refusals.push(format!("{} {status}: {text}", op.kind()));
            }
            Ok(None)
        }
    }
}

/// Follows a task until it ends (no deadline: the run's end decides what is stuck).
async fn follow(c: &Client, id: &str) -> String {
    loop {
        if let Ok((200, t)) = c.get(&format!("/api/v1/tasks/{id}")).await {
            let s = t["status"].as_str().unwrap_or_default();
            if finished(s) {
                return s.to_string();
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn finish(shared: &Shared, op: &Op, id: &str, status: &str) {
    shared.open.lock().unwrap().remove(id);
    *shared.last_finish.lock().unwrap() = Instant::now();
    *shared
        .account
        .lock()
        .unwrap()
        .finished
        .entry(status.into())
        .or_default() += 1;
    release(shared, op, Some(status));
}

/// Applies an ended task's effect to the model (`None`: never accepted) and frees its
/// targets.
fn release(shared: &Shared, op: &Op, status: Option<&str>) {
    let ok = matches!(status, Some("success" | "warning"));
    let mut m = shared.model.lock().unwrap();
    match op {
        Op::Install { uri, .. } => match status {
            None => {
                m.sites.remove(uri);
            }
            Some(_) => {
                let s = m.sites.get_mut(uri).unwrap();
                s.expect = if ok { Expect::Enabled } else { Expect::Failed };
                s.busy = false;
            }
        },
        Op::Clone { uri, new, .. } => {
            m.sites.get_mut(uri).unwrap().busy = false;
            match status {
                None => {
                    m.sites.remove(new);
                }
                Some(_) => {
                    let s = m.sites.get_mut(new).unwrap();
                    s.expect = if ok { Expect::Enabled } else { Expect::Failed };
                    s.busy = false;
                }
            }
        }
        Op::OnSite { task, uri } => {
            let s = m.sites.get_mut(uri).unwrap();
            s.busy = false;
            match (*task, ok) {
                ("disable", true) => s.expect = Expect::Disabled,
                ("enable", true) => s.expect = Expect::Enabled,
                ("delete", true) => s.expect = Expect::Deleted,
                ("delete", false) if status.is_some() => s.expect = Expect::Unknown,
                ("backup", true) => s.backups += 1,
                _ => {}
            }
        }
        Op::Restore { uri } => {
            let s = m.sites.get_mut(uri).unwrap();
            s.busy = false;
            if ok {
                s.backups += 1; // the backup taken before restoring
            }
        }
        Op::BackupDelete { uri } => {
            let s = m.sites.get_mut(uri).unwrap();
            s.busy = false;
            if ok {
                s.backups = s.backups.saturating_sub(1);
            }
        }
        Op::Migrate { uri, to } => {
            let s = m.sites.get_mut(uri).unwrap();
            s.busy = false;
            if ok {
                s.platform = to.clone();
            }
        }
        Op::ServerVerify => m.server_busy = false,
        Op::PlatformVerify { name } => {
            m.platform_busy.insert(name.clone(), false);
        }
    }
}
