//! Where the machine's CPU went: on a small box shared by PostgreSQL, RabbitMQ, the
//! benchmark (client, API, state service and workers in one process) and other people's
//! builds, the figures mean little without it.

use std::time::Instant;

/// Jiffies per second; USER_HZ is 100 on every Linux we run on.
const HZ: f64 = 100.0;

/// A reading of the CPU counters.
#[derive(Debug, Clone, Copy)]
pub struct CpuSample {
    at: Instant,
    /// Jiffies of all cores (`/proc/stat`): busy (steal included), total, and of those
    /// waiting for I/O and stolen by the hypervisor.
    busy: u64,
    total: u64,
    iowait: u64,
    steal: u64,
    /// Microseconds in which some task waited for a CPU, or for I/O (`/proc/pressure`).
    cpu_stall_us: u64,
    io_stall_us: u64,
    /// utime + stime of this process, of PostgreSQL's processes and of RabbitMQ's.
    own: u64,
    postgres: u64,
    rabbitmq: u64,
}

/// CPU used between two samples, in CPU seconds.
#[derive(Debug, Clone, Copy)]
pub struct CpuUse {
    /// Busy share of all cores, 0–100 %.
    pub machine_pct: f64,
    /// Shares of all cores' time waiting for I/O and stolen by the hypervisor.
    pub iowait_pct: f64,
    pub steal_pct: f64,
    /// Share of the wall time in which some task stalled for a CPU, or for I/O.
    pub cpu_pressure_pct: f64,
    pub io_pressure_pct: f64,
    pub own: f64,
    pub postgres: f64,
    pub rabbitmq: f64,
    /// Everything else that ran: other people's builds, the kernel's own threads.
    pub other: f64,
}

impl CpuSample {
    pub fn now() -> Self {
        let j = machine_jiffies().unwrap_or_default();
        let mut s = Self {
            at: Instant::now(),
            busy: j.busy,
            total: j.total,
            iowait: j.iowait,
            steal: j.steal,
            cpu_stall_us: stall_us("cpu").unwrap_or(0),
            io_stall_us: stall_us("io").unwrap_or(0),
            own: 0,
            postgres: 0,
            rabbitmq: 0,
        };
        let me = std::process::id().to_string();
        let Ok(procs) = std::fs::read_dir("/proc") else {
            return s;
        };
        for entry in procs.flatten() {
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .filter(|p| p.bytes().all(|b| b.is_ascii_digit()))
            else {
                continue;
            };
            let Some((comm, jiffies)) = process_jiffies(pid) else {
                continue;
            };
            if pid == me {
                s.own = jiffies;
            } else if comm == "postgres" {
                s.postgres += jiffies;
            } else if comm == "beam.smp" || comm == "erl_child_setup" || comm == "epmd" {
                s.rabbitmq += jiffies;
            }
        }
        s
    }

    pub fn since(&self, earlier: &CpuSample) -> CpuUse {
        let secs = |now: u64, then: u64| now.saturating_sub(then) as f64 / HZ;
        let total = self.total.saturating_sub(earlier.total);
        let share = |now: u64, then: u64| {
            if total == 0 {
                0.0
            } else {
                100.0 * now.saturating_sub(then) as f64 / total as f64
            }
        };
        let wall_us = self.at.duration_since(earlier.at).as_micros().max(1) as f64;
        let stalled = |now: u64, then: u64| 100.0 * now.saturating_sub(then) as f64 / wall_us;
        let busy = secs(self.busy, earlier.busy);
        let own = secs(self.own, earlier.own);
        let postgres = secs(self.postgres, earlier.postgres);
        let rabbitmq = secs(self.rabbitmq, earlier.rabbitmq);
        CpuUse {
            machine_pct: share(self.busy, earlier.busy),
            iowait_pct: share(self.iowait, earlier.iowait),
            steal_pct: share(self.steal, earlier.steal),
            cpu_pressure_pct: stalled(self.cpu_stall_us, earlier.cpu_stall_us),
            io_pressure_pct: stalled(self.io_stall_us, earlier.io_stall_us),
            own,
            postgres,
            rabbitmq,
            other: (busy - own - postgres - rabbitmq).max(0.0),
        }
    }
}

impl std::fmt::Display for CpuUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "machine {:.0}% busy (stolen {:.0}%, and {:.0}% I/O wait besides); stalled for CPU \
             {:.0}% and for I/O {:.0}% of the time; CPU s: bench process {:.1}, PostgreSQL {:.1}, \
             RabbitMQ {:.1}, other {:.1}",
            self.machine_pct,
            self.steal_pct,
            self.iowait_pct,
            self.cpu_pressure_pct,
            self.io_pressure_pct,
            self.own,
            self.postgres,
            self.rabbitmq,
            self.other
        )
    }
}

/// `/proc/loadavg`'s first three fields.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(0, usize::from)
}

#[derive(Debug, Default)]
struct Jiffies {
    busy: u64,
    total: u64,
    iowait: u64,
    steal: u64,
}

fn machine_jiffies() -> Option<Jiffies> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let field = |i: usize| v.get(i).copied().unwrap_or(0);
    let total: u64 = v.iter().take(8).sum();
    Some(Jiffies {
        busy: total - field(3) - field(4),
        total,
        iowait: field(4),
        steal: field(7),
    })
}

/// `some … total=` of `/proc/pressure/<what>`.
fn stall_us(what: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/pressure/{what}")).ok()?;
    let some = text.lines().find(|l| l.starts_with("some "))?;
    some.split_whitespace()
        .find_map(|kv| kv.strip_prefix("total="))?
        .parse()
        .ok()
}

/// A process's command name and utime + stime.
fn process_jiffies(pid: &str) -> Option<(String, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces; the fields after it are fixed.
    let (open, close) = (stat.find('(')?, stat.rfind(')')?);
    let comm = stat[open + 1..close].to_owned();
    let f: Vec<&str> = stat[close + 2..].split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12th and 13th after the name.
    let jiffies = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some((comm, jiffies))
}
