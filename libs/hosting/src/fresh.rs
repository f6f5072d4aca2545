//! The names a task is given when it is accepted (by the API or the scheduler), so that its
//! plan stays pure and a redelivered step writes the same file.

use berth_contracts::steps::{BackupOrder, Compression};
use berth_contracts::task::DbNames;
use chrono::{DateTime, Utc};

/// Fresh for every task.
#[derive(Debug, Clone)]
pub struct Fresh {
    pub now: DateTime<Utc>,
    /// A few random hex digits in the backup file's name.
    pub file_unique: String,
    /// Random hex digits in a new database's name.
    pub db_unique: String,
}

impl Fresh {
    pub fn new() -> Self {
        Self {
            now: Utc::now(),
            file_unique: random_hex(4),
            db_unique: random_hex(6),
        }
    }

    /// The backup a task of site `uri` makes.
    pub fn backup(&self, uri: &str, compression: Compression, description: &str) -> BackupOrder {
        BackupOrder {
            file: crate::sites::backup_file_name(uri, self.now, &self.file_unique),
            compression,
            description: description.to_string(),
        }
    }

    /// A delete's arguments: the backup it takes first (it stays after the site is gone).
    pub fn delete(&self, uri: &str) -> berth_contracts::task::TaskArgs {
        berth_contracts::task::TaskArgs::Delete(berth_contracts::task::BackupTask {
            backup: self.backup(uri, Compression::Zstd, "Generated before being deleted"),
            targets: Vec::new(),
        })
    }

    /// A new database (and user) for site `uri`.
    pub fn db(&self, uri: &str) -> DbNames {
        let (name, user) = crate::sites::db_names(uri, &self.db_unique);
        DbNames { name, user }
    }
}

impl Default for Fresh {
    fn default() -> Self {
        Self::new()
    }
}

/// `n` random hex digits (from a v4 uuid: 122 random bits).
fn random_hex(n: usize) -> String {
    uuid::Uuid::new_v4().simple().to_string()[..n].to_string()
}
