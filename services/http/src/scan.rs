//! The walk of a platform's codebase for its package scan: what `berth_package_scan`
//! asks for, read from disk, and the sites already in the platform.
//!
//! Only the directories the scan can use are walked (`packages::descend`: core, `modules/`,
//! `themes/`, `profiles/`, `sites/all/`), never `.git`, `vendor`, `node_modules`, `tests`,
//! a site's own directory (`sites/<site>/`, with its `files/` and `private/`), nor anything
//! through a symbolic link (a link could lead out of the platform, or round in a circle).
//! Files over [`MAX_FILE_BYTES`] are skipped with a warning.

use berth_package_scan::{self as packages, PlatformScan, ScanError, Want};
use std::fs;
use std::path::{Path, PathBuf};

/// The largest file read: info and `.install` files are a few KB.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// Files and directories looked at before a scan gives up: a Drupal 10 codebase has about
/// 20,000 under the scanned directories.
pub const MAX_ENTRIES: usize = 500_000;
/// How deep the walk goes below the root.
pub const MAX_DEPTH: usize = 24;

#[derive(Debug, thiserror::Error)]
pub enum ScanIoError {
    #[error("platform root {path}: {source}")]
    Root {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("platform root {path} is not a directory")]
    NotADirectory { path: PathBuf },
    #[error("platform {path} has over {max} files and directories where modules live; not scanned")]
    TooBig { path: PathBuf, max: usize },
    #[error("platform {path}: {source}")]
    Scan {
        path: PathBuf,
        #[source]
        source: ScanError,
    },
    #[error("the scan of platform {path} stopped: {why}")]
    Aborted { path: PathBuf, why: String },
}

/// Scans the Drupal codebase at `root` (in a blocking thread): core's version, and its
/// profiles, modules and themes with their versions and schema versions.
pub async fn scan_platform(root: &Path) -> Result<PlatformScan, ScanIoError> {
    let owned = root.to_path_buf();
    tokio::task::spawn_blocking(move || scan_platform_blocking(&owned))
        .await
        .map_err(|e| ScanIoError::Aborted {
            path: root.to_path_buf(),
            why: e.to_string(),
        })?
}

/// [`scan_platform`] on the calling thread.
pub fn scan_platform_blocking(root: &Path) -> Result<PlatformScan, ScanIoError> {
    // The root itself may be a symbolic link (a release directory, say); nothing below it.
    let meta = fs::metadata(root).map_err(|source| ScanIoError::Root {
        path: root.to_path_buf(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(ScanIoError::NotADirectory {
            path: root.to_path_buf(),
        });
    }
    let mut walk = Walk {
        files: Vec::new(),
        warnings: Vec::new(),
        entries: 0,
    };
    let top = fs::read_dir(root).map_err(|source| ScanIoError::Root {
        path: root.to_path_buf(),
        source,
    })?;
    walk.dir(root, top, "", 0)?;
    let mut scan = packages::scan(&walk.files).map_err(|source| ScanIoError::Scan {
        path: root.to_path_buf(),
        source,
    })?;
    walk.warnings.append(&mut scan.warnings);
    scan.warnings = walk.warnings;
    Ok(scan)
}

struct Walk {
    files: Vec<(String, String)>,
    warnings: Vec<String>,
    entries: usize,
}

impl Walk {
    fn dir(
        &mut self,
        root: &Path,
        read: fs::ReadDir,
        rel: &str,
        depth: usize,
    ) -> Result<(), ScanIoError> {
        let mut entries: Vec<fs::DirEntry> = Vec::new();
        for entry in read {
            match entry {
                Ok(e) => entries.push(e),
                Err(e) => self.warnings.push(format!("{}: {e}", shown(rel))),
            }
        }
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            self.entries += 1;
            if self.entries > MAX_ENTRIES {
                return Err(ScanIoError::TooBig {
                    path: root.to_path_buf(),
                    max: MAX_ENTRIES,
                });
            }
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                self.warnings.push(format!(
                    "{}: a name that is not UTF-8 ({:?}); skipped",
                    shown(rel),
                    entry.file_name()
                ));
                continue;
            };
            let path = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            // The entry's own type: a symbolic link is a link, wherever it points.
            let Ok(ty) = entry.file_type() else {
                continue;
            };
            if ty.is_symlink() {
                continue;
            }
            if ty.is_dir() {
                if !packages::descend(&path) {
                    continue;
                }
                if depth + 1 > MAX_DEPTH {
                    self.warnings.push(format!(
                        "{path}: deeper than {MAX_DEPTH} directories; skipped"
                    ));
                    continue;
                }
                match fs::read_dir(entry.path()) {
                    Ok(read) => self.dir(root, read, &path, depth + 1)?,
                    Err(e) => self.warnings.push(format!("{path}: {e}")),
                }
            } else if ty.is_file() {
                match packages::wanted(&path) {
                    Want::No => {}
                    Want::NameOnly => self.files.push((path, String::new())),
                    Want::Contents => {
                        if let Some(text) = self.read(&entry.path(), &path) {
                            self.files.push((path, text));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn read(&mut self, full: &Path, rel: &str) -> Option<String> {
        use std::io::Read;
        let file = match fs::File::open(full) {
            Ok(f) => f,
            Err(e) => {
                self.warnings.push(format!("{rel}: {e}"));
                return None;
            }
        };
        // Read one byte past the cap to tell a file at the cap from a larger one, whatever
        // its size says (it may be growing).
        let mut bytes = Vec::new();
        if let Err(e) = file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes) {
            self.warnings.push(format!("{rel}: {e}"));
            return None;
        }
        if bytes.len() as u64 > MAX_FILE_BYTES {
            self.warnings.push(format!(
                "{rel}: larger than {} KiB; skipped",
                MAX_FILE_BYTES / 1024
            ));
            return None;
        }
        Some(match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        })
    }
}

fn shown(rel: &str) -> &str {
    if rel.is_empty() { "." } else { rel }
}

/// The sites already in a platform, to import: the names of the directories in
/// `<root>/sites/` that hold a `settings.php`, sorted — not `default` or `all`, nor
/// symbolic links (aliases), nor hidden ones. The names are as found; check them (as host
/// names) before use. Reads a directory or two: cheap enough to call from async code.
pub fn sites_in(root: &Path) -> Vec<String> {
    let Ok(read) = fs::read_dir(root.join("sites")) else {
        return Vec::new();
    };
    let mut out: Vec<String> = read
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_owned();
            let skip = name == "default" || name == "all" || name.starts_with('.');
            (!skip && e.path().join("settings.php").is_file()).then_some(name)
        })
        .collect();
    out.sort();
    out
}
