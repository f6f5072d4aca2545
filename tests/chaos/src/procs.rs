//! berth's processes, kept running as a service manager would, and the disruptions: SIGKILL
//! of a random process, crash and restart of a server.

use anyhow::Result;
use berth_test_servers::daemons::Daemon;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The processes, by name: `<service>` or `<service>#<n>` for a second one of a service (two
/// schedulers run side by side, as any number may).
pub const SERVICES: [&str; 8] = [
    "api",
    "state",
    "http",
    "db",
    "dns",
    "backup",
    "scheduler#1",
    "scheduler#2",
];

/// The service a process name runs.
fn service_of(name: &str) -> &str {
    name.split('#').next().unwrap_or(name)
}

struct Proc {
    service: &'static str,
    child: Option<Child>,
    restart_at: Option<Instant>,
}

/// `berth serve <service>` for each service, each in its own process group (killed whole,
/// as systemd's control-group mode does), restarted when it exits.
pub struct Procs {
    bin: PathBuf,
    dir: PathBuf,
    env: Vec<(String, String)>,
    procs: Mutex<Vec<Proc>>,
    stop: AtomicBool,
    pub unexpected_exits: AtomicUsize,
}

impl Procs {
    pub fn start(bin: &Path, dir: &Path, env: Vec<(String, String)>) -> Result<Procs> {
        let p = Procs {
            bin: bin.to_owned(),
            dir: dir.join("logs"),
            env,
            procs: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            unexpected_exits: AtomicUsize::new(0),
        };
        std::fs::create_dir_all(&p.dir)?;
        {
            let mut procs = p.procs.lock().unwrap();
            for service in SERVICES {
                let child = p.spawn(service)?;
                procs.push(Proc {
                    service,
                    child: Some(child),
                    restart_at: None,
                });
            }
        }
        Ok(p)
    }

    fn spawn(&self, service: &str) -> Result<Child> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{}.log", service.replace('#', "-"))))?;
        Ok(Command::new(&self.bin)
            .args(["serve", service_of(service)])
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?)
    }

    /// Restarts what exited: a killed process when its restart time comes, anything else
    /// (an exit berth chose, e.g. at start while its database was down) after a second.
    pub fn supervise(self: &Arc<Self>) -> std::thread::JoinHandle<()> {
        let me = Arc::clone(self);
        std::thread::spawn(move || {
            while !me.stop.load(Ordering::SeqCst) {
                {
                    let mut procs = me.procs.lock().unwrap();
                    for p in procs.iter_mut() {
                        if let Some(c) = p.child.as_mut()
                            && let Ok(Some(status)) = c.try_wait()
                        {
                            // A killed process is reaped by `kill`: this exit was berth's own.
                            p.child = None;
                            me.unexpected_exits.fetch_add(1, Ordering::SeqCst);
                            crate::say(&format!(
                                "berth serve {} exited by itself ({status}); restarting",
                                p.service
                            ));
                            p.restart_at = Some(Instant::now() + Duration::from_secs(1));
                        }
                        if p.child.is_none()
                            && p.restart_at.is_some_and(|t| Instant::now() >= t)
                            && let Ok(c) = me.spawn(p.service)
                        {
                            p.child = Some(c);
                            p.restart_at = None;
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    }

    /// SIGKILL of the service's process group; it is started again after `down_for`.
    pub fn kill(&self, service: &str, down_for: Duration) -> bool {
        let mut procs = self.procs.lock().unwrap();
        let Some(p) = procs.iter_mut().find(|p| p.service == service) else {
            return false;
        };
        let Some(c) = p.child.as_mut() else {
            return false;
        };
        let pgid = Pid::from_raw(c.id() as i32);
        let _ = killpg(pgid, Signal::SIGKILL);
        let _ = c.wait();
        p.child = None;
        p.restart_at = Some(Instant::now() + down_for);
        true
    }

    /// Whether every service runs.
    pub fn all_running(&self) -> bool {
        self.procs.lock().unwrap().iter().all(|p| p.child.is_some())
    }

    pub fn stop_all(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let mut procs = self.procs.lock().unwrap();
        for p in procs.iter_mut() {
            if let Some(c) = p.child.as_mut() {
                let _ = killpg(Pid::from_raw(c.id() as i32), Signal::SIGTERM);
            }
        }
        for p in procs.iter_mut() {
            if let Some(mut c) = p.child.take() {
                let deadline = Instant::now() + Duration::from_secs(15);
                while matches!(c.try_wait(), Ok(None)) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(50));
                }
                let _ = killpg(Pid::from_raw(c.id() as i32), Signal::SIGKILL);
                let _ = c.wait();
            }
        }
    }
}

/// Stops berth's processes when dropped, so that an early error leaves none running.
pub struct StopOnDrop(pub Arc<Procs>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop_all();
    }
}

/// What the disruptions did.
#[derive(Debug, Default, Clone)]
pub struct Disrupted {
    pub kills: usize,
    pub kills_by_service: BTreeMap<String, usize>,
    pub server_restarts: BTreeMap<String, usize>,
    /// When the last disruption ended (everything back up).
    pub last_recovery: Option<Instant>,
}

enum Event {
    Kill,
    Restart(usize),
}

/// Kills and server restarts, each due when the workload has sent a given share of its
/// tasks: kills at evenly spread points (plus a random delay so they land mid-step), each
/// server's crash once per round.
pub struct Disruptor {
    procs: Arc<Procs>,
    servers: Vec<Daemon>,
    rng: StdRng,
    kills: usize,
    rounds: usize,
}

impl Disruptor {
    pub fn new(
        procs: Arc<Procs>,
        servers: Vec<Daemon>,
        seed: u64,
        kills: usize,
        rounds: usize,
    ) -> Self {
        Disruptor {
            procs,
            servers,
            rng: StdRng::seed_from_u64(seed ^ 0x5eed),
            kills,
            rounds,
        }
    }

    /// Runs on its own thread until every disruption is done (`progress` reaches each
    /// point) or `abort` is set; returns what it did and keeps the servers (stopped on drop).
    pub fn spawn(
        mut self,
        progress: Arc<AtomicUsize>,
        total: usize,
        abort: Arc<AtomicBool>,
    ) -> std::thread::JoinHandle<(Disrupted, Vec<Daemon>)> {
        std::thread::spawn(move || {
            let mut events: Vec<(usize, Event)> = Vec::new();
            for i in 1..=self.kills {
                events.push((i * total / (self.kills + 1), Event::Kill));
            }
            let n = self.servers.len();
            for r in 0..self.rounds {
                for s in 0..n {
                    // Offset from the kills' points so a crash and a kill rarely coincide.
                    let at = ((r * n + s) * 2 + 1) * total / (2 * self.rounds * n + 1);
                    events.push((at, Event::Restart(s)));
                }
            }
            events.sort_by_key(|(at, _)| *at);
            let mut done = Disrupted::default();
            for (at, ev) in events {
                while progress.load(Ordering::SeqCst) < at {
                    if abort.load(Ordering::SeqCst) {
                        return (done, self.servers);
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                match ev {
                    Event::Kill => {
                        std::thread::sleep(Duration::from_millis(self.rng.random_range(0..800)));
                        let service = pick_service(&mut self.rng);
                        let down = Duration::from_millis(self.rng.random_range(200..1500));
                        if self.procs.kill(service, down) {
                            done.kills += 1;
                            *done.kills_by_service.entry(service.into()).or_default() += 1;
                        }
                        std::thread::sleep(down);
                    }
                    Event::Restart(s) => {
                        let down = Duration::from_millis(self.rng.random_range(1000..3000));
                        let name = self.servers[s].kind.name();
                        crate::say(&format!(
                            "crashing {name} (SIGKILL), back in {} ms",
                            down.as_millis()
                        ));
                        if let Err(e) = self.servers[s].crash_and_restart(down) {
                            crate::say(&format!("{name} did not come back: {e:#}"));
                            abort.store(true, Ordering::SeqCst);
                            return (done, self.servers);
                        }
                        *done.server_restarts.entry(name.into()).or_default() += 1;
                    }
                }
                done.last_recovery = Some(Instant::now());
            }
            // Everything back: wait until every berth process runs again.
            while !self.procs.all_running() {
                std::thread::sleep(Duration::from_millis(50));
            }
            done.last_recovery = Some(Instant::now());
            (done, self.servers)
        })
    }
}

/// Weighted by how much each service does (and how much a kill of it can hurt).
fn pick_service(rng: &mut StdRng) -> &'static str {
    const WEIGHTS: [(&str, u32); 8] = [
        ("api", 2),
        ("state", 3),
        ("http", 4),
        ("db", 2),
        ("dns", 2),
        ("backup", 2),
        ("scheduler#1", 1),
        ("scheduler#2", 1),
    ];
    let total: u32 = WEIGHTS.iter().map(|(_, w)| w).sum();
    let mut x = rng.random_range(0..total);
    for (s, w) in WEIGHTS {
        if x < w {
            return s;
        }
        x -= w;
    }
    "state"
}
