//! A real SMTP server for tests: Python's `aiosmtpd` (PyPI, pinned in
//! `tests/smtp/requirements.txt`, installed by `ops/setup.sh` into `/opt/berth/smtp`) on a
//! free loopback port, keeping every message it accepts in a Maildir the test reads.
//! Stopped when dropped.

use anyhow::{Context, Result, bail};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The venv's Python: `BERTH_TEST_SMTP_PYTHON`, else `/opt/berth/smtp/bin/python` (where
/// `ops/setup.sh` installs aiosmtpd), else `python3` on the PATH.
pub fn smtp_python() -> PathBuf {
    crate::program(
        "BERTH_TEST_SMTP_PYTHON",
        "/opt/berth/smtp/bin/python",
        "python3",
    )
}

pub struct Smtp {
    pub port: u16,
    maildir: PathBuf,
    log: PathBuf,
    child: Child,
}

impl Smtp {
    pub fn start(dir: &Path) -> Result<Smtp> {
        std::fs::create_dir_all(dir)?;
        let port = crate::free_port();
        let maildir = dir.join("maildir");
        let log = dir.join("smtp.log");
        let out = std::fs::File::create(&log)?;
        let child = Command::new(smtp_python())
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .process_group(0)
            .spawn()
            .with_context(|| {
                format!(
                    "starting aiosmtpd with {} (install it with ops/setup.sh)",
                    smtp_python().display()
                )
            })?;
        let mut s = Smtp {
            port,
            maildir,
            log,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(st) = s.child.try_wait()? {
                bail!("aiosmtpd exited ({st}): {}", s.log());
            }
            if Instant::now() > deadline {
                bail!("aiosmtpd did not listen in 30 s: {}", s.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(s)
    }

    /// `smtp://127.0.0.1:<port>`: what berth's relay setting names.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Every message received so far, as stored (headers, a blank line, the body).
    pub fn messages(&self) -> Vec<String> {
        let mut out = Vec::new();
        for sub in ["new", "cur"] {
            let Ok(entries) = std::fs::read_dir(self.maildir.join(sub)) else {
                continue;
            };
            let mut files: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
            files.sort();
            out.extend(files.iter().filter_map(|f| std::fs::read_to_string(f).ok()));
        }
        out
    }

    /// Waits up to `within` for a message `matches` accepts.
    pub fn wait_for(&self, within: Duration, matches: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(m) = self.messages().into_iter().find(|m| matches(m)) {
                return Some(m);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        crate::stop_group(&mut self.child);
    }
}
