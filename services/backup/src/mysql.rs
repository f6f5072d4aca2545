//! The MariaDB client programs, run with the password in a 0600 option file inside a 0700
//! directory (never in argv or the environment), and what their failures mean.

use crate::BackupError;
use berth_contracts::steps::{ExtractDb, SiteDbSpec};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Where a site's database lives, checked (the names reach argv).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbTarget {
    pub host: String,
    pub port: u16,
    pub name: String,
    pub user: String,
}

fn machine_name(v: &str) -> bool {
    (1..=64).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

impl DbTarget {
    /// The site's database of a site step.
    pub fn of_site(db: &SiteDbSpec) -> Result<Self, BackupError> {
        Self::check(&db.host, db.port, &db.name, &db.user)
    }

    /// The database a backup is imported into.
    pub fn of_extract(db: &ExtractDb) -> Result<Self, BackupError> {
        Self::check(&db.host, db.port, &db.name, &db.user)
    }

    /// Checked again here: the spec came off the wire, and the names reach argv and the
    /// option file.
    pub fn check(host: &str, port: u16, name: &str, user: &str) -> Result<Self, BackupError> {
        if host.parse::<std::net::IpAddr>().is_err() {
            berth_hosting::HostName::parse(host)
                .map_err(|e| BackupError::bad(format!("db host: {e}")))?;
        }
        for (k, v) in [("db name", name), ("db user", user)] {
            if !machine_name(v) {
                return Err(BackupError::bad(format!("{k} `{v}`")));
            }
        }
        if port == 0 {
            return Err(BackupError::bad(format!("db port {port}")));
        }
        Ok(Self {
            host: host.to_owned(),
            port,
            name: name.to_owned(),
            user: user.to_owned(),
        })
    }
}

/// A private directory (0700) holding the option file (0600) and, for a backup, the dump;
/// removed when dropped.
pub struct PrivateDir {
    pub path: PathBuf,
}

impl PrivateDir {
    /// Makes `path` afresh (whatever an earlier attempt left there is removed first).
    pub fn create(path: PathBuf) -> std::io::Result<Self> {
        if path.symlink_metadata().is_ok() {
            std::fs::remove_dir_all(&path)?;
        }
        std::fs::DirBuilder::new().mode(0o700).create(&path)?;
        Ok(Self { path })
    }

    /// Writes `my.cnf` with the connection settings and the password; returns its path.
    pub fn option_file(&self, db: &DbTarget, password: &str) -> Result<PathBuf, BackupError> {
        if password.contains(['\n', '\r', '\0']) {
            return Err(BackupError::bad("the database password holds a line break"));
        }
        let quoted = password.replace('\\', "\\\\").replace('"', "\\\"");
        let mut text = format!(
            "[client]\nhost={}\nport={}\nuser={}\n",
            db.host, db.port, db.user
        );
        if !password.is_empty() {
            text.push_str(&format!("password=\"{quoted}\"\n"));
        }
        let path = self.path.join("my.cnf");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| BackupError::transient(format!("write the option file: {e}")))?;
        f.write_all(text.as_bytes())
            .map_err(|e| BackupError::transient(format!("write the option file: {e}")))?;
        Ok(path)
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// `--defaults-extra-file=…`: must come first on the command line.
pub fn defaults_arg(option_file: &Path) -> String {
    format!("--defaults-extra-file={}", option_file.display())
}

/// MariaDB errors no retry fixes: access denied, unknown database, syntax.
const PERMANENT: [&str; 7] = ["1044", "1045", "1049", "1064", "1142", "1227", "1698"];

/// A client program's failure, from its exit status and stderr: refused credentials and
/// missing databases are permanent, anything else (unreachable server, lost connection,
/// lock waits) transient. The password the program was given is masked in the message.
pub fn classify(
    what: &str,
    status: std::process::ExitStatus,
    stderr: &str,
    password: &str,
) -> BackupError {
    let tail: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = tail[tail.len().saturating_sub(3)..].join(" | ");
    let msg = berth_command::mask(&format!("{what} failed ({status}): {tail}"), &[password]);
    let permanent = PERMANENT.iter().any(|code| {
        stderr.contains(&format!("error: {code}"))
            || stderr.contains(&format!("ERROR {code}"))
            || stderr.contains(&format!("Error: {code}"))
            || stderr.contains(&format!("error {code}"))
    }) || stderr.contains("insufficient privileges")
        || stderr.contains("Access denied");
    if permanent {
        BackupError::Permanent(msg)
    } else {
        BackupError::Transient(msg)
    }
}
