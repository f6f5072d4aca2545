//! Private PostgreSQL, MariaDB and RabbitMQ servers, each with its own data directory and
//! loopback port, that a harness may crash (SIGKILL of the whole process group) and start
//! again on the same data: the chaos run restarts them under load without touching the
//! machine's own servers.

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Which server a [`Daemon`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Postgres,
    Mariadb,
    Rabbitmq,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Postgres => "postgresql",
            Kind::Mariadb => "mariadb",
            Kind::Rabbitmq => "rabbitmq",
        }
    }
}

/// The ports a harness's MariaDB listens on. Sites' PHP and drush run under site uids that
/// the site firewall (`ops/lib.sh`, `ensure_site_firewall`) lets reach only the MariaDB
/// ports on loopback; `ops/test.sh` adds this range to them.
pub const MARIADB_PORTS: std::ops::RangeInclusive<u16> = 13306..=13399;

/// A loopback port in `range` reserved for this process (see [`crate::reserve_port`]), or
/// any harness port when the range is full.
fn free_port_in(range: std::ops::RangeInclusive<u16>) -> u16 {
    crate::reserve_port(range).unwrap_or_else(crate::free_port)
}

/// A server process in its own process group, on `127.0.0.1:port`.
pub struct Daemon {
    pub kind: Kind,
    pub port: u16,
    pub dir: PathBuf,
    child: Option<Child>,
    /// Times the server was started (1 after [`Daemon::start`]).
    pub starts: u32,
}

impl Daemon {
    /// Initialises a data directory under `dir` and starts the server.
    pub fn start(kind: Kind, dir: &Path) -> Result<Daemon> {
        fs::create_dir_all(dir)?;
        let dir = fs::canonicalize(dir)?;
        let mut d = Daemon {
            kind,
            port: match kind {
                Kind::Mariadb => free_port_in(MARIADB_PORTS),
                _ => crate::free_port(),
            },
            dir,
            child: None,
            starts: 0,
        };
        d.init()?;
        d.launch()?;
        Ok(d)
    }

    /// A URL clients use: `postgres://postgres@127.0.0.1:P/postgres`,
    /// `mysql://root@127.0.0.1:P`, `amqp://guest:guest@127.0.0.1:P/%2f`.
    pub fn url(&self) -> String {
        match self.kind {
            Kind::Postgres => format!("postgres://postgres@127.0.0.1:{}/postgres", self.port),
            Kind::Mariadb => format!("mysql://root@127.0.0.1:{}", self.port),
            Kind::Rabbitmq => format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port),
        }
    }

    /// SIGKILL of the server and all its processes (a crash, no clean shutdown), then a
    /// start on the same data and port; returns once it accepts connections again.
    pub fn crash_and_restart(&mut self, down_for: Duration) -> Result<()> {
        self.kill();
        std::thread::sleep(down_for);
        self.launch()
    }

    /// Kills the server's process group and waits until every process of it is gone.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let pgid = Pid::from_raw(c.id() as i32);
            let _ = killpg(pgid, Signal::SIGKILL);
            let _ = c.wait();
            let deadline = Instant::now() + Duration::from_secs(20);
            // Children of the group (backends, beam) may outlive the leader by a moment.
            while killpg(pgid, None).is_ok() && Instant::now() < deadline {
                let _ = killpg(pgid, Signal::SIGKILL);
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join(format!("{}.log", self.kind.name()))
    }

    fn init(&mut self) -> Result<()> {
        let dir = &self.dir;
        match self.kind {
            Kind::Postgres => {
                let bin = postgres_bin_dir()?;
                chown_to(dir, "postgres")?;
                run(as_user(
                    "postgres",
                    Command::new(bin.join("initdb")).args([
                        "-D",
                        &dir.join("data").display().to_string(),
                        "-U",
                        "postgres",
                        "--auth=trust",
                        "-N",
                    ]),
                ))
                .context("initdb")?;
            }
            Kind::Mariadb => {
                run(Command::new("mariadb-install-db").args([
                    "--no-defaults",
                    &format!("--datadir={}", dir.join("data").display()),
                    "--user=root",
                    "--auth-root-authentication-method=normal",
                    "--skip-test-db",
                ]))
                .context("mariadb-install-db")?;
            }
            Kind::Rabbitmq => {
                fs::write(
                    dir.join("rabbitmq.conf"),
                    format!(
                        "listeners.tcp.1 = 127.0.0.1:{}\nloopback_users = none\n",
                        self.port
                    ),
                )?;
                fs::write(dir.join("enabled_plugins"), "[].\n")?;
                chown_to(dir, "rabbitmq")?;
                for f in ["rabbitmq.conf", "enabled_plugins"] {
                    chown_to(&dir.join(f), "rabbitmq")?;
                }
            }
        }
        Ok(())
    }

    fn launch(&mut self) -> Result<()> {
        let dir = self.dir.clone();
        let d = dir.display();
        let port = self.port.to_string();
        let mut cmd = match self.kind {
            Kind::Postgres => {
                let bin = postgres_bin_dir()?;
                let mut c = Command::new(bin.join("postgres"));
                c.args([
                    "-D",
                    &format!("{d}/data"),
                    "-p",
                    &port,
                    "-k",
                    &d.to_string(),
                ])
                .args(["-c", "listen_addresses=127.0.0.1"])
                .args(["-c", "max_connections=300"]);
                as_user("postgres", &mut c);
                c
            }
            Kind::Mariadb => {
                let mut c = Command::new("mariadbd");
                c.args([
                    "--no-defaults",
                    &format!("--datadir={d}/data"),
                    &format!("--port={port}"),
                    &format!("--socket={d}/mysqld.sock"),
                    "--bind-address=127.0.0.1",
                    "--user=root",
                    &format!("--pid-file={d}/mysqld.pid"),
                    "--skip-log-bin",
                    "--max-connections=500",
                ]);
                c
            }
            Kind::Rabbitmq => {
                let name = format!(
                    "berth{}@localhost",
                    dir.file_name()
                        .map(|n| n.to_string_lossy())
                        .unwrap_or_default()
                )
                .replace(['-', '.'], "");
                let mut c = Command::new("/usr/lib/rabbitmq/bin/rabbitmq-server");
                c.env("HOME", "/var/lib/rabbitmq")
                    .env("RABBITMQ_NODENAME", name)
                    .env("RABBITMQ_NODE_PORT", &port)
                    .env("RABBITMQ_DIST_PORT", crate::free_port().to_string())
                    .env("RABBITMQ_MNESIA_BASE", format!("{d}/mnesia"))
                    .env("RABBITMQ_LOG_BASE", format!("{d}/log"))
                    .env("RABBITMQ_CONFIG_FILE", format!("{d}/rabbitmq.conf"))
                    .env(
                        "RABBITMQ_ENABLED_PLUGINS_FILE",
                        format!("{d}/enabled_plugins"),
                    )
                    .env("RABBITMQ_PID_FILE", format!("{d}/rabbitmq.pid"))
                    .current_dir(&dir);
                as_user("rabbitmq", &mut c);
                c
            }
        };
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let child = cmd
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.kind.name()))?;
        self.child = Some(child);
        self.starts += 1;
        self.wait_ready()
    }

    /// Waits until the port accepts connections (RabbitMQ opens it only once it is ready).
    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        loop {
            if let Some(c) = self.child.as_mut()
                && let Some(status) = c.try_wait()?
            {
                bail!(
                    "{} exited ({status}) while starting; see {}",
                    self.kind.name(),
                    self.log_path().display()
                );
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} does not answer on {addr}; see {}",
                    self.kind.name(),
                    self.log_path().display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

fn postgres_bin_dir() -> Result<PathBuf> {
    let mut versions: Vec<PathBuf> = fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL is not installed (/usr/lib/postgresql is missing)")?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("postgres").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .context("no PostgreSQL server binaries under /usr/lib/postgresql")
}

/// PostgreSQL refuses to run as root and RabbitMQ's cookie belongs to its user: when run
/// as root, the server runs as its own system user.
fn as_user<'a>(user: &str, cmd: &'a mut Command) -> &'a mut Command {
    if nix::unistd::geteuid().is_root()
        && let Ok(Some(u)) = nix::unistd::User::from_name(user)
    {
        cmd.uid(u.uid.as_raw()).gid(u.gid.as_raw());
    }
    cmd
}

fn chown_to(path: &Path, user: &str) -> Result<()> {
    if nix::unistd::geteuid().is_root()
        && let Some(u) = nix::unistd::User::from_name(user)?
    {
        nix::unistd::chown(path, Some(u.uid), Some(u.gid))
            .with_context(|| format!("chown {} to {user}", path.display()))?;
    }
    Ok(())
}

fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd.stdin(Stdio::null()).output()?;
    if !out.status.success() {
        bail!(
            "{:?} failed ({}): {}{}",
            cmd.get_program(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}
