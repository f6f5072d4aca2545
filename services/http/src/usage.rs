//! Measuring the disk a site's directory takes (`<root>/sites/<uri>`, its `files/` and
//! `private/` with it), for client disk quotas.
//!
//! Sites are hostile: a site's PHP can plant links to another site's directory or to `/`,
//! and can swap a directory for a link while the walk runs. So the walk never resolves a
//! path: it opens each directory relative to its parent's descriptor with `O_NOFOLLOW`
//! (a directory swapped for a link fails to open and is left out), reads each entry's
//! metadata with `fstatat(…, AT_SYMLINK_NOFOLLOW)`, and checks that the directory it opened
//! is the one it looked at. A link counts its own blocks, never its target's; another
//! file system mounted inside is not entered (as `du -x`).
//!
//! What is counted is allocated blocks (`st_blocks` × 512), not apparent sizes: that is
//! what the site takes from the disk, and what it cannot make smaller than it is — a
//! million one-byte files take gigabytes of blocks, while their apparent size is a megabyte.
//! A sparse file counts the blocks it really has. A hard-linked file counts once.
//!
//! The walk is bounded (time, entries, depth): a site with a huge tree gets a lower bound
//! and `complete: false`, never a failed verify.

use berth_contracts::steps::FilesUsage;
use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FileStat, Mode, SFlag, fstat, fstatat};
use std::collections::HashSet;
use std::ffi::CStr;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::time::{Duration, Instant};

/// How far a walk goes before it reports what it counted as a lower bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Well under a step's timeout, and long enough for a few million entries on a
    /// warm cache: a nightly run of every site must not hold a worker for minutes per site.
    pub time: Duration,
    pub entries: u64,
    /// Directories nested deeper than this are not entered (each level holds a descriptor).
    pub depth: usize,
}

pub const LIMITS: Limits = Limits {
    time: Duration::from_secs(30),
    entries: 5_000_000,
    depth: 64,
};

#[derive(Debug, thiserror::Error)]
pub enum MeasureError {
    #[error("the site's directory {0} is missing")]
    Missing(String),
    #[error("{0} is not a directory berth can measure (a link, or not a directory)")]
    NotADirectory(String),
    #[error("open {0}: {1}")]
    Open(String, Errno),
}

/// What an entry is, by its own metadata (never a link's target's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    Directory,
    Symlink,
    /// Regular files, and fifos, sockets, devices: their own blocks only.
    Other,
}

impl EntryKind {
    fn of(st: &FileStat) -> Self {
        match SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) {
            SFlag::S_IFDIR => Self::Directory,
            SFlag::S_IFLNK => Self::Symlink,
            _ => Self::Other,
        }
    }
}

/// What the walk does with one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visit {
    /// Its blocks count; nothing behind it is looked at.
    Count,
    /// Its blocks count and the walk goes into it.
    Descend,
    /// Neither: another file system mounted inside the site's directory.
    Skip,
}

/// A link is counted as itself and never followed; a directory on the site's file system
/// is entered; one of another file system is left alone.
pub fn visit(kind: EntryKind, dev: u64, site_dev: u64) -> Visit {
    match kind {
        _ if dev != site_dev => Visit::Skip,
        EntryKind::Directory => Visit::Descend,
        EntryKind::Symlink | EntryKind::Other => Visit::Count,
    }
}

/// Whether the walk must stop here: its time or its entries are spent.
pub fn spent(limits: &Limits, entries: u64, elapsed: Duration) -> bool {
    entries >= limits.entries || elapsed >= limits.time
}

struct Walk {
    limits: Limits,
    started: Instant,
    site_dev: u64,
    bytes: u64,
    entries: u64,
    complete: bool,
    /// Files with more than one link, counted once.
    linked: HashSet<(u64, u64)>,
}

fn blocks(st: &FileStat) -> u64 {
    u64::try_from(st.st_blocks).unwrap_or(0) * 512
}

impl Walk {
    fn count(&mut self, st: &FileStat, kind: EntryKind) {
        if kind != EntryKind::Directory
            && st.st_nlink > 1
            && !self.linked.insert((st.st_dev, st.st_ino))
        {
            return;
        }
        self.bytes += blocks(st);
    }

    /// Counts what is in `dir` (its own blocks are counted by the caller).
    fn directory(&mut self, dir: Dir, depth: usize) {
        let mut dir = dir;
        // The listing reads through `dir`; lookups go through a second descriptor of the
        // same open directory (a lookup does not move the listing's position).
        let Ok(at) = dir.as_fd().try_clone_to_owned() else {
            self.complete = false;
            return;
        };
        for entry in dir.iter() {
            let Ok(entry) = entry else {
                self.complete = false;
                return;
            };
            let name = entry.file_name();
            if name == c"." || name == c".." {
                continue;
            }
            if spent(&self.limits, self.entries, self.started.elapsed()) {
                self.complete = false;
                return;
            }
            self.entry(at.as_fd(), name, depth);
        }
    }

    fn entry(&mut self, at: BorrowedFd<'_>, name: &CStr, depth: usize) {
        // Gone since the listing (the site is live): nothing to count.
        let Ok(st) = fstatat(at, name, AtFlags::AT_SYMLINK_NOFOLLOW) else {
            return;
        };
        self.entries += 1;
        let kind = EntryKind::of(&st);
        match visit(kind, st.st_dev, self.site_dev) {
            Visit::Skip => {}
            Visit::Count => self.count(&st, kind),
            Visit::Descend => {
                self.count(&st, kind);
                if depth + 1 > self.limits.depth {
                    self.complete = false;
                    return;
                }
                // A directory swapped for a link since the stat fails here (ELOOP or
                // ENOTDIR) and is left out; one swapped for another directory is caught
                // by comparing what was opened with what was looked at.
                let Ok(child) = Dir::openat(
                    at,
                    name,
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                ) else {
                    return;
                };
                match fstat(child.as_fd()) {
                    Ok(opened) if (opened.st_dev, opened.st_ino) == (st.st_dev, st.st_ino) => {
                        self.directory(child, depth + 1)
                    }
                    _ => {}
                }
            }
        }
    }
}

/// Measures `<sites_dir>/<uri>`: `sites_dir` is the platform's (berth's) `sites/`, opened by
/// path; the site's own directory is opened beneath it without following a link.
pub fn measure(sites_dir: &Path, uri: &str, limits: Limits) -> Result<FilesUsage, MeasureError> {
    let shown = || sites_dir.join(uri).display().to_string();
    let sites = Dir::open(
        sites_dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| MeasureError::Open(sites_dir.display().to_string(), e))?;
    let site = match Dir::openat(
        sites.as_fd(),
        uri,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(d) => d,
        Err(Errno::ENOENT) => return Err(MeasureError::Missing(shown())),
        Err(Errno::ELOOP | Errno::ENOTDIR) => return Err(MeasureError::NotADirectory(shown())),
        Err(e) => return Err(MeasureError::Open(shown(), e)),
    };
    let st = fstat(site.as_fd()).map_err(|e| MeasureError::Open(shown(), e))?;
    let mut walk = Walk {
        limits,
        started: Instant::now(),
        site_dev: st.st_dev,
        bytes: blocks(&st),
        entries: 1,
        complete: true,
        linked: HashSet::new(),
    };
    walk.directory(site, 0);
    Ok(FilesUsage {
        bytes: i64::try_from(walk.bytes).unwrap_or(i64::MAX),
        entries: walk.entries,
        complete: walk.complete,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn write(path: &Path, len: usize) {
        // Not zeros: a file system may store zeros sparsely or compressed.
        let data: Vec<u8> = (0..len).map(|i| (i * 7919 % 251) as u8).collect();
        std::fs::write(path, data).unwrap();
    }

    /// `sites/<uri>` in a fresh directory, and the `sites` directory.
    fn site(tmp: &tempfile::TempDir) -> std::path::PathBuf {
        let sites = tmp.path().join("sites");
        std::fs::create_dir_all(sites.join("a.test/files/deep")).unwrap();
        sites
    }

    #[test]
    fn the_decisions_follow_no_link_and_enter_no_other_file_system() {
        assert_eq!(visit(EntryKind::Directory, 1, 1), Visit::Descend);
        assert_eq!(visit(EntryKind::Symlink, 1, 1), Visit::Count);
        assert_eq!(visit(EntryKind::Other, 1, 1), Visit::Count);
        assert_eq!(visit(EntryKind::Directory, 2, 1), Visit::Skip);
        assert_eq!(visit(EntryKind::Other, 2, 1), Visit::Skip);
        let l = Limits {
            time: Duration::from_secs(1),
            entries: 10,
            depth: 2,
        };
        assert!(!spent(&l, 9, Duration::from_millis(999)));
        assert!(spent(&l, 10, Duration::ZERO));
        assert!(spent(&l, 0, Duration::from_secs(1)));
    }

    #[test]
    fn counts_the_blocks_of_what_is_written_at_least_its_bytes() {
        let tmp = tempfile::tempdir().unwrap();
        let sites = site(&tmp);
        let before = measure(&sites, "a.test", LIMITS).unwrap();
        assert!(before.complete);
        write(&sites.join("a.test/files/deep/one.bin"), 300_000);
        write(&sites.join("a.test/files/two.bin"), 100_000);
        let after = measure(&sites, "a.test", LIMITS).unwrap();
        assert!(after.complete);
        assert!(
            after.bytes - before.bytes >= 400_000,
            "{before:?} {after:?}"
        );
        assert_eq!(after.entries, before.entries + 2);
    }

    #[test]
    fn a_planted_link_counts_as_itself_not_its_target() {
        let tmp = tempfile::tempdir().unwrap();
        let sites = site(&tmp);
        std::fs::create_dir_all(sites.join("b.test")).unwrap();
        write(&sites.join("b.test/big.bin"), 2_000_000);
        write(&tmp.path().join("outside.bin"), 2_000_000);
        let before = measure(&sites, "a.test", LIMITS).unwrap();
        symlink(sites.join("b.test"), sites.join("a.test/files/other-site")).unwrap();
        symlink("/", sites.join("a.test/files/root")).unwrap();
        symlink(tmp.path().join("outside.bin"), sites.join("a.test/files/f")).unwrap();
        let after = measure(&sites, "a.test", LIMITS).unwrap();
        assert!(after.complete);
        assert_eq!(after.entries, before.entries + 3);
        // A link's own blocks (none, or one for a long target): far from 2 MB.
        assert!(after.bytes - before.bytes < 100_000, "{before:?} {after:?}");
    }

    #[test]
    fn the_site_directory_itself_must_not_be_a_link() {
        let tmp = tempfile::tempdir().unwrap();
        let sites = site(&tmp);
        symlink(sites.join("a.test"), sites.join("c.test")).unwrap();
        assert!(matches!(
            measure(&sites, "c.test", LIMITS),
            Err(MeasureError::NotADirectory(_))
        ));
        assert!(matches!(
            measure(&sites, "gone.test", LIMITS),
            Err(MeasureError::Missing(_))
        ));
    }

    #[test]
    fn a_hard_linked_file_counts_once() {
        let tmp = tempfile::tempdir().unwrap();
        let sites = site(&tmp);
        write(&sites.join("a.test/files/one.bin"), 500_000);
        let once = measure(&sites, "a.test", LIMITS).unwrap();
        std::fs::hard_link(
            sites.join("a.test/files/one.bin"),
            sites.join("a.test/files/deep/again.bin"),
        )
        .unwrap();
        let twice = measure(&sites, "a.test", LIMITS).unwrap();
        assert_eq!(twice.bytes, once.bytes);
        assert_eq!(twice.entries, once.entries + 1);
    }

    #[test]
    fn a_walk_past_its_limits_reports_a_lower_bound_not_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let sites = site(&tmp);
        for i in 0..20 {
            write(&sites.join(format!("a.test/files/{i}.bin")), 10_000);
        }
        let full = measure(&sites, "a.test", LIMITS).unwrap();
        assert!(full.complete);
        let few = Limits {
            entries: 5,
            ..LIMITS
        };
        let part = measure(&sites, "a.test", few).unwrap();
        assert!(!part.complete);
        assert_eq!(part.entries, 5);
        assert!(part.bytes < full.bytes);
        let shallow = Limits { depth: 1, ..LIMITS };
        let part = measure(&sites, "a.test", shallow).unwrap();
        assert!(!part.complete, "files/deep is deeper than 1");
        let no_time = Limits {
            time: Duration::ZERO,
            ..LIMITS
        };
        let part = measure(&sites, "a.test", no_time).unwrap();
        assert!(!part.complete);
        assert_eq!(part.entries, 1);
    }
}
