//! Real servers for tests: nginx, php-fpm and BIND's named, each started as a child
//! process on free loopback ports with its configuration under a test's own directory,
//! and stopped when dropped; and private PostgreSQL, MariaDB and RabbitMQ servers that a
//! harness may crash and restart ([`daemons`]); moto_server (S3) and aiosmtpd (SMTP).

pub mod daemons;
pub mod moto;
pub mod named;
pub mod smtp;
pub mod web;

use std::ops::RangeInclusive;
use std::sync::Mutex;

/// A program the tests run: the path in the environment variable `var`, else `installed`
/// (where `ops/setup.sh` puts it) when it is there, else `on_path`, found on the PATH.
pub(crate) fn program(var: &str, installed: &str, on_path: &str) -> std::path::PathBuf {
    if let Some(p) = std::env::var_os(var) {
        return p.into();
    }
    let installed = std::path::Path::new(installed);
    if installed.exists() {
        return installed.into();
    }
    on_path.into()
}

/// Stops a server started in its own process group: SIGTERM to the group, up to 5 s to
/// end, then SIGKILL (a Python server's children go with it).
pub(crate) fn stop_group(child: &mut std::process::Child) {
    use nix::sys::signal::{Signal, killpg};
    use nix::unistd::Pid;
    let group = Pid::from_raw(child.id() as i32);
    let _ = killpg(group, Signal::SIGTERM);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while matches!(child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = killpg(group, Signal::SIGKILL);
    let _ = child.wait();
}

/// Where a port's reservation lives: `<dir>/<port>`, locked by the process that holds it.
fn reservations_dir() -> std::path::PathBuf {
    std::env::temp_dir().join("berth-test-ports")
}

/// Reservation files, kept open (and so locked) until the process ends.
static HELD: Mutex<Vec<std::fs::File>> = Mutex::new(Vec::new());

/// The ports [`free_port`] hands out: below the kernel's ephemeral range (32768–60999 by
/// default: an outgoing connection is never given one of these) and apart from
/// [`daemons::MARIADB_PORTS`].
pub const HARNESS_PORTS: RangeInclusive<u16> = 20000..=29999;

/// A loopback port for a server a test starts, reserved for this process until it ends. A
/// port merely free at the time of a call could be taken by another test (of this process
/// or another) before the server binds it: every test process reserves the ports it hands
/// out with an exclusive lock on a file per port, so no two are given the same one.
pub fn free_port() -> u16 {
    reserve_port(HARNESS_PORTS).unwrap_or_else(|| {
        // Every harness port is held: fall back to one the kernel picks (racy, as before).
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free loopback port")
    })
}

/// The kernel's ephemeral port range (`ip_local_port_range`).
fn ephemeral_ports() -> RangeInclusive<u16> {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|p| p.parse::<u16>().ok());
            Some(it.next()??..=it.next()??)
        })
        .unwrap_or(32768..=60999)
}

/// Reserves a port of `range` that no other test process holds and that is free on
/// 127.0.0.1 now (no server left over from an earlier run on it), starting from a place that
/// differs between processes; `None` when there is none.
pub fn reserve_port(range: RangeInclusive<u16>) -> Option<u16> {
    let dir = reservations_dir();
    if std::fs::create_dir_all(&dir).is_ok() {
        use std::os::unix::fs::PermissionsExt;
        // Test processes of other users reserve here too.
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777));
    }
    let ephemeral = ephemeral_ports();
    let (first, n) = (*range.start(), range.len() as u32);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let start = (std::process::id().wrapping_mul(7919) ^ nanos) % n;
    let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
    for i in 0..n {
        let port = first + ((start + i) % n) as u16;
        if ephemeral.contains(&port) {
            continue;
        }
        let Ok(file) = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(port.to_string()))
        else {
            continue;
        };
        // Another reservation of this port, in this process or another, holds the lock.
        if file.try_lock().is_err() {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        held.push(file);
        return Some(port);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_handed_out_at_once_are_all_different_and_outside_the_ephemeral_range() {
        let threads: Vec<_> = (0..8)
            .map(|_| std::thread::spawn(|| (0..50).map(|_| free_port()).collect::<Vec<_>>()))
            .collect();
        let mut all: Vec<u16> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        let n = all.len();
        assert!(all.iter().all(|p| HARNESS_PORTS.contains(p)), "{all:?}");
        assert!(all.iter().all(|p| !ephemeral_ports().contains(p)));
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n, "a port was handed out twice");
    }

    #[test]
    fn a_port_reserved_by_another_process_is_not_handed_out() {
        // `flock` (what `try_lock` takes) excludes other open files of the same file,
        // whichever process opened them: a second open here stands for another process.
        let port = free_port();
        let other = std::fs::OpenOptions::new()
            .write(true)
            .open(reservations_dir().join(port.to_string()))
            .unwrap();
        assert!(other.try_lock().is_err(), "port {port} is not held");
        let again = reserve_port(port..=port);
        assert_eq!(again, None, "port {port} was handed out twice");
    }
}
