//! Coalesced nginx reloads.
//!
//! Sites' vhost files change often (installs, verifies, disables), and each change needs
//! `nginx -t` and a reload. A [`Reloader`] (one per nginx) gathers the changes that land
//! within a short window into one batch: the batch is written whole, `nginx -t` runs once,
//! and on success nginx reloads once and every caller gets `Ok`. When nginx rejects the
//! batch, all its changes are taken back and each is tried on its own, so that only the
//! breaking change gets [`ReloadError::Broken`] (its files back as they were) and the
//! others still share one reload.
//!
//! After `nginx -s reload` the reloader waits until nginx really serves the new
//! configuration: nginx reloads asynchronously (the master reads the configuration, starts
//! new workers, and only then tells the old ones to shut down gracefully), so it watches
//! the master's children in /proc until new worker processes exist and every old worker is
//! gone or titled "shutting down" (an old worker sets that title before it closes its
//! listening sockets, and accepts nothing after). When [`Reloader::apply`] returns `Ok`, a
//! new request gets the new vhost.
//!
//! A change may also write or remove sites' php-fpm pools ([`VhostChange::php_fpm`]): the
//! batch then passes `php-fpm -t` too, php-fpm reloads (before nginx, so that a new vhost
//! finds its pool listening) and the reloader waits until every new pool accepts
//! connections. php-fpm's reloads are coalesced with nginx's: one per batch.
//!
//! Vhost files carry database passwords in `fastcgi_param`: errors keep nginx's own output
//! and file names, never file contents, and no secret is ever put in a command's arguments.

use std::fmt;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// How long nginx may take to turn its workers over after `-s reload`.
const TURNOVER_TIMEOUT: Duration = Duration::from_secs(5);
/// A batch of this many changes or more waits this many windows of quiet before closing.
const BURST_STRETCH: usize = 5;
/// How often /proc is looked at while waiting for the turnover.
const TURNOVER_POLL: Duration = Duration::from_millis(10);

#[derive(Debug, Clone)]
pub struct ReloadConfig {
    pub nginx_bin: String,
    pub nginx_conf: PathBuf,
    /// A batch is closed once no change has come for this long (default 200 ms) — a lone
    /// change waits this long — or, for a batch of n changes, n times this long (up to 5):
    /// a burst is gathered whole.
    pub window: Duration,
    /// …or this long after its first change, however busy (default 10 s).
    pub max_wait: Duration,
    /// The php-fpm that runs the pools changes may touch; `None`: changes touch no pool.
    pub php_fpm: Option<FpmConfig>,
}

/// A php-fpm master: its program and main configuration, whose `pid` line names the
/// master's pid file (reloaded with SIGUSR2).
#[derive(Debug, Clone)]
pub struct FpmConfig {
    pub bin: String,
    pub conf: PathBuf,
}

impl ReloadConfig {
    pub fn new(nginx_bin: impl Into<String>, nginx_conf: impl Into<PathBuf>) -> Self {
        Self {
            nginx_bin: nginx_bin.into(),
            nginx_conf: nginx_conf.into(),
            window: Duration::from_millis(200),
            max_wait: Duration::from_secs(10),
            php_fpm: None,
        }
    }
}

impl Default for ReloadConfig {
    fn default() -> Self {
        Self::new("nginx", "/etc/nginx/nginx.conf")
    }
}

/// Files to write whole (`Some(contents)`: temp file + rename, mode 0600) or remove
/// (`None`; removing a missing file is fine), applied and taken back together.
#[derive(Clone, Default)]
pub struct VhostChange {
    pub files: Vec<(PathBuf, Option<String>)>,
    /// Some of the files are php-fpm pools: php-fpm is tested and reloaded too, and the
    /// change is done once each of these sockets (the pools it adds) accepts.
    pub php_fpm: Option<Vec<PathBuf>>,
}

impl VhostChange {
    /// A change writing one file.
    pub fn write(path: impl Into<PathBuf>, contents: impl Into<String>) -> Self {
        Self {
            files: vec![(path.into(), Some(contents.into()))],
            php_fpm: None,
        }
    }

    /// A change removing one file.
    pub fn remove(path: impl Into<PathBuf>) -> Self {
        Self {
            files: vec![(path.into(), None)],
            php_fpm: None,
        }
    }
}

/// Names the files only: their contents may hold secrets.
impl fmt::Debug for VhostChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut l = f.debug_list();
        for (path, contents) in &self.files {
            match contents {
                Some(c) => l.entry(&format_args!(
                    "write {} ({} bytes)",
                    path.display(),
                    c.len()
                )),
                None => l.entry(&format_args!("remove {}", path.display())),
            };
        }
        l.finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReloadReport {
    /// Which reload carried the change (1 for the first of this reloader).
    pub reload: u64,
    /// How many changes that reload carried.
    pub batch: usize,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ReloadError {
    /// nginx (or php-fpm) rejects its configuration with this change; its files are back
    /// as they were. Says which, with `nginx -t`'s (or `php-fpm -t`'s) output.
    #[error("{0}")]
    Broken(String),
    /// nginx could not be tested or reloaded (not running, did not turn over in time...);
    /// the change's files are back as they were.
    #[error("nginx did not reload: {0}")]
    Reload(String),
    /// A file could not be written or removed; the change's files are back as they were.
    #[error("{0}")]
    Io(String),
}

type Answer = Result<ReloadReport, ReloadError>;

struct Pending {
    change: VhostChange,
    since: Instant,
    tx: oneshot::Sender<Answer>,
}

impl Pending {
    /// Answers the change's step; what nginx or php-fpm said is masked of the passwords the
    /// change's own files carry (a test's output may quote a line of the vhost).
    fn answer(self, a: Answer) {
        let secrets = change_secrets(&self.change);
        let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
        let hide = |s: String| berth_command::mask(&s, &secrets);
        let a = a.map_err(|e| match e {
            ReloadError::Broken(s) => ReloadError::Broken(hide(s)),
            ReloadError::Reload(s) => ReloadError::Reload(hide(s)),
            ReloadError::Io(s) => ReloadError::Io(hide(s)),
        });
        let _ = self.tx.send(a);
    }
}

/// The site database passwords a change's vhosts hand to PHP (`fastcgi_param db_passwd`).
fn change_secrets(change: &VhostChange) -> Vec<String> {
    change
        .files
        .iter()
        .filter_map(|(_, text)| text.as_deref())
        .flat_map(str::lines)
        .filter_map(|l| {
            l.trim()
                .strip_prefix("fastcgi_param db_passwd ")
                .map(|v| v.trim_end_matches(';').trim().to_string())
        })
        .filter(|v| !v.is_empty())
        .collect()
}

#[derive(Default)]
struct State {
    queue: Vec<Pending>,
    /// A batch task is running: it takes the queue when its window closes.
    running: bool,
}

struct Inner {
    cfg: ReloadConfig,
    state: Mutex<State>,
    reloads: AtomicU64,
}

/// Applies vhost changes to one nginx with coalesced `nginx -t` and reloads. Clones share
/// the same batches; use one per nginx.
#[derive(Clone)]
pub struct Reloader {
    inner: Arc<Inner>,
}

impl Reloader {
    pub fn new(cfg: ReloadConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                cfg,
                state: Mutex::new(State::default()),
                reloads: AtomicU64::new(0),
            }),
        }
    }

    /// Applies the change together with the others that land within the window: one
    /// `nginx -t`, one reload. Returns once nginx serves the new configuration. The change
    /// is carried through even if this future is dropped.
    pub async fn apply(&self, change: VhostChange) -> Result<ReloadReport, ReloadError> {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut st = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
            st.queue.push(Pending {
                change,
                since: Instant::now(),
                tx,
            });
            !std::mem::replace(&mut st.running, true)
        };
        if start {
            tokio::spawn(self.inner.clone().run());
        }
        rx.await
            .unwrap_or_else(|_| Err(ReloadError::Reload("the reloader stopped".into())))
    }

    /// Reloads done so far.
    pub fn reloads(&self) -> u64 {
        self.inner.reloads.load(Ordering::SeqCst)
    }
}

/// Marks the batch task stopped however it ends; a panic fails the queued changes rather
/// than leaving them waiting for a task that is gone.
struct RunningGuard(Arc<Inner>);

impl Drop for RunningGuard {
    fn drop(&mut self) {
        // A normal end clears `running` itself, under the lock, before returning: doing
        // it here too could race with the task a later `apply` started.
        if std::thread::panicking() {
            let mut st = self.0.state.lock().unwrap_or_else(|e| e.into_inner());
            st.running = false;
            st.queue.clear();
        }
    }
}

struct Applied {
    pending: Pending,
    backup: Backup,
}

/// Previous state of each file a change touched, in the order touched: contents and mode,
/// or absence.
type Backup = Vec<(PathBuf, Option<(Vec<u8>, u32)>)>;

enum TestError {
    /// nginx or php-fpm ran and rejected the configuration (which, and its output).
    Rejected(String),
    /// nginx could not be run.
    Run(String),
}

impl Inner {
    async fn run(self: Arc<Self>) {
        let _guard = RunningGuard(self.clone());
        loop {
            // A batch closes when no change has come for a while (the burst is over), or
            // `max_wait` after its first change (a steady stream still gets reloads). The
            // while is `window` for a lone change, and grows with the batch up to
            // BURST_STRETCH windows: a burst's changes come unevenly (they wait for CPU),
            // and a short pause should not split it.
            let deadline = {
                let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
                let n = st.queue.len().min(BURST_STRETCH) as u32;
                match (st.queue.first(), st.queue.last()) {
                    (Some(first), Some(last)) => {
                        (last.since + self.cfg.window * n).min(first.since + self.cfg.max_wait)
                    }
                    _ => {
                        // Cleared under the lock: an `apply` after this starts a new task.
                        st.running = false;
                        return;
                    }
                }
            };
            if Instant::now() < deadline {
                tokio::time::sleep_until(deadline.into()).await;
                continue;
            }
            let batch = {
                let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
                std::mem::take(&mut st.queue)
            };
            self.process(batch).await;
        }
    }

    async fn process(&self, batch: Vec<Pending>) {
        let mut applied = Vec::with_capacity(batch.len());
        for p in batch {
            match apply_files(p.change.files.clone()).await {
                Ok(backup) => applied.push(Applied { pending: p, backup }),
                Err(e) => p.answer(Err(ReloadError::Io(e))),
            }
        }
        if applied.is_empty() {
            return;
        }
        let fpm = applied.iter().any(|a| a.pending.change.php_fpm.is_some());
        match self.test(fpm).await {
            Ok(()) => self.reload_and_answer(applied).await,
            Err(TestError::Run(e)) => {
                rollback_all(&mut applied).await;
                for a in applied {
                    a.pending.answer(Err(ReloadError::Reload(e.clone())));
                }
            }
            Err(TestError::Rejected(out)) => {
                rollback_all(&mut applied).await;
                if applied.len() == 1 {
                    for a in applied {
                        a.pending.answer(Err(ReloadError::Broken(out.clone())));
                    }
                    return;
                }
                // Is it the batch, or the configuration without it?
                match self.test(fpm).await {
                    Ok(()) => {}
                    Err(TestError::Rejected(base)) => {
                        for a in applied {
                            a.pending.answer(Err(ReloadError::Broken(format!(
                                "{base} (even without this change)"
                            ))));
                        }
                        return;
                    }
                    Err(TestError::Run(e)) => {
                        for a in applied {
                            a.pending.answer(Err(ReloadError::Reload(e.clone())));
                        }
                        return;
                    }
                }
                tracing::warn!(
                    changes = applied.len(),
                    "nginx rejects a batch of vhost changes; trying each on its own"
                );
                let mut kept = Vec::with_capacity(applied.len());
                for a in applied {
                    let p = a.pending;
                    let mut one = match apply_files(p.change.files.clone()).await {
                        Ok(backup) => Applied { pending: p, backup },
                        Err(e) => {
                            p.answer(Err(ReloadError::Io(e)));
                            continue;
                        }
                    };
                    match self.test(one.pending.change.php_fpm.is_some()).await {
                        Ok(()) => kept.push(one),
                        Err(err) => {
                            rollback(&mut one).await;
                            let err = match err {
                                TestError::Rejected(out) => {
                                    tracing::warn!(
                                        files = ?one.pending.change,
                                        "nginx rejects a vhost change; taken back"
                                    );
                                    ReloadError::Broken(out)
                                }
                                TestError::Run(e) => ReloadError::Reload(e),
                            };
                            one.pending.answer(Err(err));
                        }
                    }
                }
                if !kept.is_empty() {
                    self.reload_and_answer(kept).await;
                }
            }
        }
    }

    async fn reload_and_answer(&self, mut applied: Vec<Applied>) {
        let sockets: Option<Vec<PathBuf>> = applied
            .iter()
            .filter_map(|a| a.pending.change.php_fpm.clone())
            .reduce(|mut all, more| {
                all.extend(more);
                all
            });
        let reloaded = match sockets {
            Some(sockets) => match self.reload_fpm(&sockets).await {
                Ok(()) => self.reload().await,
                Err(e) => Err(e),
            },
            None => self.reload().await,
        };
        match reloaded {
            Ok(()) => {
                let n = self.reloads.fetch_add(1, Ordering::SeqCst) + 1;
                let m = applied.len();
                tracing::info!(reload = n, changes = m, "nginx reloaded");
                for a in applied {
                    a.pending.answer(Ok(ReloadReport {
                        reload: n,
                        batch: m,
                    }));
                }
            }
            Err(e) => {
                tracing::error!(changes = applied.len(), error = %e, "nginx did not reload; changes taken back");
                rollback_all(&mut applied).await;
                for a in applied {
                    a.pending.answer(Err(ReloadError::Reload(e.clone())));
                }
            }
        }
    }

    fn conf(&self) -> String {
        self.cfg.nginx_conf.to_string_lossy().into_owned()
    }

    /// `nginx -t` on the whole configuration, and `php-fpm -t` when pools changed.
    async fn test(&self, fpm: bool) -> Result<(), TestError> {
        let conf = self.conf();
        match run(
            &self.cfg.nginx_bin,
            &["-t", "-q", "-e", "stderr", "-c", &conf],
        )
        .await
        {
            Ok((true, _)) => {}
            Ok((false, out)) => {
                return Err(TestError::Rejected(format!(
                    "nginx rejects the configuration with this change: {}",
                    tidy(&out)
                )));
            }
            Err(e) => return Err(TestError::Run(e)),
        }
        let Some(f) = self.cfg.php_fpm.as_ref().filter(|_| fpm) else {
            return Ok(());
        };
        let conf = f.conf.to_string_lossy();
        match run(&f.bin, &["-t", "-y", &conf]).await {
            Ok((true, _)) => Ok(()),
            Ok((false, out)) => Err(TestError::Rejected(format!(
                "php-fpm rejects the configuration with this change: {}",
                tidy_fpm(&out)
            ))),
            Err(e) => Err(TestError::Run(e)),
        }
    }

    /// Reloads php-fpm (SIGUSR2 to its master: it re-reads its configuration and keeps
    /// its listening sockets), then waits until every socket of a new pool accepts.
    async fn reload_fpm(&self, sockets: &[PathBuf]) -> Result<(), String> {
        let Some(f) = &self.cfg.php_fpm else {
            return Err("pools changed but this worker knows no php-fpm".into());
        };
        let text = tokio::fs::read_to_string(&f.conf).await.map_err(|e| {
            format!(
                "cannot read php-fpm's configuration {}: {e}",
                f.conf.display()
            )
        })?;
        let pid_file = fpm_pid_directive(&text).ok_or_else(|| {
            format!(
                "php-fpm's configuration {} names no absolute `pid` file: berth cannot reload it",
                f.conf.display()
            )
        })?;
        let master = read_pid(&pid_file)
            .filter(|m| Path::new(&format!("/proc/{m}")).exists())
            .ok_or_else(|| {
                format!(
                    "php-fpm is not running (no live pid in {}): start it with `{} -y {}`",
                    pid_file.display(),
                    f.bin,
                    f.conf.display()
                )
            })?;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(master as i32),
            nix::sys::signal::Signal::SIGUSR2,
        )
        .map_err(|e| format!("cannot signal php-fpm's master (pid {master}): {e}"))?;
        let deadline = Instant::now() + TURNOVER_TIMEOUT;
        for socket in sockets {
            loop {
                let ready = {
                    let socket = socket.clone();
                    tokio::task::spawn_blocking(move || {
                        std::os::unix::net::UnixStream::connect(socket).is_ok()
                    })
                    .await
                    .unwrap_or(false)
                };
                if ready {
                    break;
                }
                if Instant::now() >= deadline {
                    return Err(format!(
                        "php-fpm did not open {} within {} s of its reload (see its error log)",
                        socket.display(),
                        TURNOVER_TIMEOUT.as_secs()
                    ));
                }
                tokio::time::sleep(TURNOVER_POLL).await;
            }
        }
        Ok(())
    }

    /// `nginx -s reload`, then waits until nginx has turned its workers over.
    async fn reload(&self) -> Result<(), String> {
        let conf = self.conf();
        let pid_file = self.pid_file().await;
        let master = pid_file.as_deref().and_then(read_pid);
        let old = master.map(workers).unwrap_or_default();
        match run(
            &self.cfg.nginx_bin,
            &["-e", "stderr", "-c", &conf, "-s", "reload"],
        )
        .await?
        {
            (true, _) => {}
            (false, out) => return Err(format!("nginx -s reload failed: {out}")),
        }
        let Some(master) = master.filter(|m| Path::new(&format!("/proc/{m}")).exists()) else {
            // Signalled, but its master is not to be seen here (another pid namespace?).
            tracing::warn!(
                pid_file = ?pid_file,
                "cannot watch nginx's master; giving its reload a moment"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
            return Ok(());
        };
        let deadline = Instant::now() + TURNOVER_TIMEOUT;
        loop {
            if !Path::new(&format!("/proc/{master}")).exists() {
                return Err(format!(
                    "nginx's master (pid {master}) exited while reloading"
                ));
            }
            let now = workers(master);
            let started = now
                .iter()
                .any(|w| !w.shutting_down && !old.iter().any(|o| o.pid == w.pid));
            let old_serving = old
                .iter()
                .filter(|o| !o.shutting_down)
                .any(|o| now.iter().any(|w| w.pid == o.pid && !w.shutting_down));
            if started && !old_serving {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "nginx did not start workers with the new configuration within {} s \
                     (see its error log: a reload can fail where `nginx -t` passes, e.g. \
                     an address already in use)",
                    TURNOVER_TIMEOUT.as_secs()
                ));
            }
            tokio::time::sleep(TURNOVER_POLL).await;
        }
    }

    /// The pid file: the `pid` directive of the main configuration, else nginx's built-in
    /// default (`nginx -V`'s `--pid-path`).
    async fn pid_file(&self) -> Option<PathBuf> {
        let text = tokio::fs::read_to_string(&self.cfg.nginx_conf).await.ok();
        let named = text.as_deref().and_then(pid_directive);
        let built = run(&self.cfg.nginx_bin, &["-V"]).await.ok().map(|(_, o)| o);
        let configure_arg = |name: &str| {
            built.as_deref().and_then(|o| {
                o.split_whitespace()
                    .find_map(|a| a.strip_prefix(name))
                    .map(PathBuf::from)
            })
        };
        let path = named.or_else(|| configure_arg("--pid-path="))?;
        if path.is_absolute() {
            Some(path)
        } else {
            let prefix = configure_arg("--prefix=").unwrap_or_else(|| {
                self.cfg
                    .nginx_conf
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_default()
            });
            Some(prefix.join(path))
        }
    }
}

/// nginx's log lines without their time and pid: `2026/01/02 03:04:05 [emerg] 12#12: x`
/// becomes `[emerg] x`.
fn tidy(out: &str) -> String {
    out.lines()
        .map(|l| {
            let Some((stamp, rest)) = l.split_once(" [") else {
                return l.to_string();
            };
            let is_stamp = stamp.len() == 19
                && stamp
                    .chars()
                    .all(|c| c.is_ascii_digit() || matches!(c, '/' | ':' | ' '));
            let Some((level, msg)) = rest.split_once("] ").filter(|_| is_stamp) else {
                return l.to_string();
            };
            let msg = msg
                .split_once(": ")
                .filter(|(ids, _)| ids.chars().all(|c| c.is_ascii_digit() || c == '#'))
                .map_or(msg, |(_, m)| m);
            format!("[{level}] {msg}")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The `pid = /path` line of php-fpm's main configuration (only an absolute path: a
/// relative one depends on php-fpm's build prefix).
fn fpm_pid_directive(text: &str) -> Option<PathBuf> {
    text.lines().find_map(|l| {
        let (k, v) = l.trim().split_once('=')?;
        let v = v.trim().trim_matches('"');
        (k.trim() == "pid" && v.starts_with('/')).then(|| PathBuf::from(v))
    })
}

/// php-fpm's `-t` output without its timestamps.
fn tidy_fpm(out: &str) -> String {
    out.lines()
        .map(|l| match l.strip_prefix('[') {
            Some(rest) => rest.split_once("] ").map(|(_, m)| m).unwrap_or(l),
            None => l,
        })
        .filter(|l| !l.trim().is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// The value of a `pid` directive in nginx's main configuration text.
fn pid_directive(text: &str) -> Option<PathBuf> {
    text.lines().find_map(|l| {
        let l = l.split('#').next()?.trim();
        let rest = l.strip_prefix("pid")?;
        if !rest.starts_with(char::is_whitespace) {
            return None;
        }
        let v = rest.trim().trim_end_matches(';').trim().trim_matches('"');
        (!v.is_empty()).then(|| PathBuf::from(v))
    })
}

fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

struct Worker {
    pid: u32,
    shutting_down: bool,
}

/// The master's worker processes, from /proc: children whose title is "worker process"
/// (cache manager and loader left out).
fn workers(master: u32) -> Vec<Worker> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid != Some(master) {
            continue;
        }
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let title = String::from_utf8_lossy(&cmdline);
        if title.contains("worker process") {
            out.push(Worker {
                pid,
                shutting_down: title.contains("shutting down"),
            });
        }
    }
    out
}

/// Runs a command (never with secrets in its arguments): whether it succeeded, and its
/// output; `Err` when it cannot be run or times out.
async fn run(program: &str, args: &[&str]) -> Result<(bool, String), String> {
    berth_command::output(program, args)
        .await
        .map(|ran| (ran.success, ran.text))
        .map_err(|e| e.to_string())
}

/// Writes or removes a change's files, keeping what was there; on an error, what was done
/// is taken back and the error names the file (never its contents).
async fn apply_files(files: Vec<(PathBuf, Option<String>)>) -> Result<Backup, String> {
    tokio::task::spawn_blocking(move || {
        let mut backup: Backup = Vec::with_capacity(files.len());
        for (path, contents) in files {
            let step = (|| -> Result<(), String> {
                let before = match std::fs::read(&path) {
                    Ok(bytes) => {
                        let mode = std::fs::metadata(&path)
                            .map(|m| m.permissions().mode() & 0o7777)
                            .unwrap_or(0o600);
                        Some((bytes, mode))
                    }
                    Err(e) if e.kind() == ErrorKind::NotFound => None,
                    Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
                };
                match &contents {
                    Some(c) => write_atomic(&path, c.as_bytes(), 0o600)
                        .map_err(|e| format!("cannot write {}: {e}", path.display()))?,
                    None => remove(&path)
                        .map_err(|e| format!("cannot remove {}: {e}", path.display()))?,
                }
                backup.push((path.clone(), before));
                Ok(())
            })();
            if let Err(e) = step {
                restore(&mut backup);
                return Err(e);
            }
        }
        Ok(backup)
    })
    .await
    .unwrap_or_else(|e| Err(format!("writing vhost files failed: {e}")))
}

async fn rollback(a: &mut Applied) {
    let mut backup = std::mem::take(&mut a.backup);
    let _ = tokio::task::spawn_blocking(move || restore(&mut backup)).await;
}

/// Takes back a batch, last change first (a file may be touched by several changes).
async fn rollback_all(applied: &mut [Applied]) {
    let mut backups: Vec<Backup> = applied
        .iter_mut()
        .map(|a| std::mem::take(&mut a.backup))
        .collect();
    let _ = tokio::task::spawn_blocking(move || {
        for b in backups.iter_mut().rev() {
            restore(b);
        }
    })
    .await;
}

/// Puts files back as they were, last touched first.
fn restore(backup: &mut Backup) {
    while let Some((path, before)) = backup.pop() {
        let r = match &before {
            Some((bytes, mode)) => write_atomic(&path, bytes, *mode),
            None => remove(&path),
        };
        if let Err(e) = r {
            tracing::error!(file = %path.display(), error = %e, "cannot take a vhost file back");
        }
    }
}

fn remove(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

static TEMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// Writes a file whole: a temp file beside it (a name nginx's `*.conf` includes never
/// match), synced, then renamed over it.
fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{name}.berth-{}-{}.tmp",
        std::process::id(),
        TEMP_SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    remove_dead_temps(dir, &name);
    let r = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

/// Removes the temp files of `name` that a process no longer running left beside it (a
/// worker killed between writing one and renaming it over the file).
fn remove_dead_temps(dir: &Path, name: &str) {
    let prefix = format!(".{name}.berth-");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let file = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = file
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix(".tmp"))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_nginx_says_about_a_change_is_masked_of_its_passwords() {
        let change = VhostChange {
            files: vec![(
                PathBuf::from("/v/a.test.conf"),
                Some("server {\n    fastcgi_param db_passwd 0a1b2c3d;\n}\n".into()),
            )],
            php_fpm: None,
        };
        assert_eq!(change_secrets(&change), ["0a1b2c3d"]);
        let (tx, rx) = oneshot::channel();
        let p = Pending {
            change,
            since: Instant::now(),
            tx,
        };
        p.answer(Err(ReloadError::Broken(
            "invalid parameter \"0a1b2c3d\" in /v/a.test.conf:2".into(),
        )));
        let said = rx.blocking_recv().unwrap().unwrap_err().to_string();
        assert_eq!(said, "invalid parameter \"********\" in /v/a.test.conf:2");
    }

    #[test]
    fn a_temp_file_a_dead_process_left_goes_with_the_next_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.test.conf");
        // pid 0 is never a process of ours; our own and another file's stay.
        let dead = dir.path().join(".a.test.conf.berth-0-7.tmp");
        let ours = dir
            .path()
            .join(format!(".a.test.conf.berth-{}-999.tmp", std::process::id()));
        let other = dir.path().join(".b.test.conf.berth-0-1.tmp");
        for p in [&dead, &ours, &other] {
            std::fs::write(p, "x").unwrap();
        }
        write_atomic(&path, b"server {}", 0o600).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "server {}");
        assert!(!dead.exists());
        assert!(ours.exists() && other.exists());
    }

    #[test]
    fn pid_directive_is_found() {
        let conf = "user www-data;\n# pid /nope;\npid /run/x/nginx.pid;\nevents {}\n";
        assert_eq!(pid_directive(conf), Some(PathBuf::from("/run/x/nginx.pid")));
        assert_eq!(pid_directive("pidfoo bar;\n"), None);
    }

    #[test]
    fn nginx_output_is_tidied() {
        let out = "2026/11/22 17:41:53 [emerg] 4554#4554: unknown directive \"frob\" in /v/bad.conf:4\n\
                   nginx: configuration file /n.conf test failed";
        assert_eq!(
            tidy(out),
            "[emerg] unknown directive \"frob\" in /v/bad.conf:4\n\
             nginx: configuration file /n.conf test failed"
        );
    }

    #[test]
    fn debug_names_files_not_contents() {
        let c = VhostChange {
            files: vec![
                (
                    "/a.conf".into(),
                    Some("fastcgi_param db_passwd s3cret;".into()),
                ),
                ("/b.conf".into(), None),
            ],
            php_fpm: None,
        };
        let d = format!("{c:?}");
        assert!(d.contains("/a.conf") && d.contains("/b.conf"), "{d}");
        assert!(!d.contains("s3cret"), "{d}");
    }
}
