//! `berth-bench pools`: what a php-fpm pool per site costs. A real php-fpm master (as root,
//! as in production) with N site pools written by the http worker's own template
//! (`berth_http::pool::render_pool`, `pm = ondemand`), against the same master with one
//! pool measured in the same run:
//!
//! - idle: resident memory of the master and its children, and the master's CPU over a
//!   quiet spell (ondemand: no child until a request comes);
//! - a pool change: one more pool written, `php-fpm -t`, SIGUSR2, until its socket accepts
//!   (what a site install's vhost step waits for), median of several;
//! - `php-fpm -t` alone.

use crate::stats::ms;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Config {
    pub pools: usize,
    pub changes: usize,
    pub idle: Duration,
}

struct Fpm {
    child: Child,
    conf: PathBuf,
    data_root: PathBuf,
    pool_dir: PathBuf,
}

impl Drop for Fpm {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGQUIT,
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const FIRST_UID: u32 = 200_000;

fn write_pool(data_root: &Path, pool_dir: &Path, uid: u32) -> Result<()> {
    std::fs::create_dir_all(berth_http::pool::tmp_dir(data_root, uid))?;
    std::fs::write(
        pool_dir.join(format!("site-{uid}.conf")),
        berth_http::pool::render_pool(data_root, uid),
    )?;
    Ok(())
}

fn accepts(socket: &Path) -> bool {
    std::os::unix::net::UnixStream::connect(socket).is_ok()
}

/// Starts php-fpm with `pools` site pools and waits until every socket is there.
fn start(dir: &Path, pools: usize) -> Result<Fpm> {
    let _ = std::fs::remove_dir_all(dir);
    let data_root = dir.join("data");
    let pool_dir = berth_http::pool::pool_dir(&data_root, "server_master");
    std::fs::create_dir_all(&pool_dir)?;
    std::fs::create_dir_all(data_root.join("run/php"))?;
    for i in 0..pools {
        write_pool(&data_root, &pool_dir, FIRST_UID + i as u32)?;
    }
    let conf = berth_test_servers::web::write_php_fpm_conf(dir, std::slice::from_ref(&pool_dir))?;
    let log = std::fs::File::create(dir.join("php-fpm.out"))?;
    let child = Command::new("/usr/sbin/php-fpm8.2")
        .args(["-R", "-F", "-y"])
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting php-fpm8.2")?;
    let fpm = Fpm {
        child,
        conf,
        data_root,
        pool_dir,
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    for i in 0..pools {
        let socket = berth_http::pool::socket_path(&fpm.data_root, FIRST_UID + i as u32);
        while !socket.exists() {
            if Instant::now() > deadline {
                bail!("php-fpm did not open {} in 120 s", socket.display());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(fpm)
}

/// Resident memory (kB) of a process and its children.
fn rss_kb(master: u32) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
            continue;
        };
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
        };
        if pid == master || field("PPid:") == Some(master as u64) {
            total += field("VmRSS:").unwrap_or(0);
        }
    }
    total
}

/// The children of a process.
fn children(master: u32) -> usize {
    std::fs::read_to_string(format!("/proc/{master}/task/{master}/children"))
        .map(|s| s.split_whitespace().count())
        .unwrap_or(0)
}

/// CPU time (user + system, in clock ticks) a process has used.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after "(comm)": state is 3rd, utime 14th, stime 15th.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    n(11) + n(12)
}

struct Idle {
    rss_kb: u64,
    children: usize,
    cpu_ms: f64,
}

fn idle(fpm: &Fpm, spell: Duration) -> Idle {
    let pid = fpm.child.id();
    // Let the start settle before the quiet spell is measured.
    std::thread::sleep(Duration::from_secs(2));
    let before = cpu_ticks(pid);
    std::thread::sleep(spell);
    let ticks = cpu_ticks(pid) - before;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { nix::libc::sysconf(nix::libc::_SC_CLK_TCK) } as f64;
    Idle {
        rss_kb: rss_kb(pid),
        children: children(pid),
        cpu_ms: ticks as f64 * 1000.0 / hz,
    }
}

/// One pool added: written, tested, php-fpm reloaded, until its socket accepts.
fn change(fpm: &Fpm, uid: u32) -> Result<(f64, f64)> {
    let t0 = Instant::now();
    write_pool(&fpm.data_root, &fpm.pool_dir, uid)?;
    let tested = Instant::now();
    let ok = Command::new("/usr/sbin/php-fpm8.2")
        .arg("-t")
        .arg("-y")
        .arg(&fpm.conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?
        .success();
    if !ok {
        bail!("php-fpm -t failed");
    }
    let test_ms = tested.elapsed().as_secs_f64() * 1000.0;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(fpm.child.id() as i32),
        nix::sys::signal::Signal::SIGUSR2,
    )?;
    let socket = berth_http::pool::socket_path(&fpm.data_root, uid);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !accepts(&socket) {
        if Instant::now() > deadline {
            bail!("the new pool did not accept within 60 s");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok((t0.elapsed().as_secs_f64() * 1000.0, test_ms))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

pub fn run(cfg: Config) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("berth-bench-pools-{}", std::process::id()));
    println!(
        "php-fpm pools, one per site (pm = ondemand; the 2 children are the static www pool); {} cores, load {}",
        crate::machine::cores(),
        crate::machine::loadavg()
    );
    let mut rows = Vec::new();
    for pools in [1, cfg.pools] {
        let fpm = start(&dir.join(pools.to_string()), pools)?;
        let i = idle(&fpm, cfg.idle);
        let mut change_ms = Vec::new();
        let mut test_ms = Vec::new();
        for k in 0..cfg.changes {
            let (c, t) = change(&fpm, FIRST_UID + 500_000 + k as u32)?;
            change_ms.push(c);
            test_ms.push(t);
        }
        rows.push((pools, i, median(change_ms), median(test_ms)));
    }
    println!(
        "{:>6}  {:>10}  {:>8}  {:>16}  {:>14}  {:>13}",
        "pools", "idle RSS", "children", "master CPU idle", "pool change ms", "php-fpm -t ms"
    );
    for (pools, i, c, t) in &rows {
        println!(
            "{:>6}  {:>7} MB  {:>8}  {:>9.1} ms/{}s  {:>14}  {:>13}",
            pools,
            i.rss_kb / 1024,
            i.children,
            i.cpu_ms,
            cfg.idle.as_secs(),
            ms(*c),
            ms(*t)
        );
    }
    let (base, big) = (&rows[0], &rows[1]);
    println!(
        "ratios {} pools / 1 pool: idle RSS ×{:.1}, pool change ×{:.1}, php-fpm -t ×{:.1}; per pool: {:.1} kB",
        big.0,
        big.1.rss_kb as f64 / base.1.rss_kb.max(1) as f64,
        big.2 / base.2.max(0.001),
        big.3 / base.3.max(0.001),
        (big.1.rss_kb as f64 - base.1.rss_kb as f64) / (big.0 - 1).max(1) as f64
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
