//! Site tarballs: made (site directory + uncloaked settings.php + database dump, streamed
//! through zstd or gzip and sha256 into a temp file renamed into place), unpacked with
//! every entry checked, and deleted.

use crate::mysql::{DbTarget, PrivateDir, classify, defaults_arg};
use crate::{Archiver, BackupError};
pub use berth_contracts::steps::Compression;
use berth_contracts::steps::{
    BackupDeleteSpec, BackupMade, BackupSource, ExtractSpec, SiteBackupSpec,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tokio::io::AsyncReadExt;

/// Lines of progress while a tarball is written: one per this many bytes packed.
const PROGRESS_EVERY: u64 = 64 << 20;
/// The marker `backup-extract` keeps in a directory it unpacks into.
pub const EXTRACT_MARKER: &str = ".berth-extract";
const MB: f64 = 1_048_576.0;

/// The extension of a tarball compressed so.
pub fn extension(c: Compression) -> &'static str {
    c.extension()
}

/// The arguments of `site-backup`, checked (they reach paths and argv).
#[derive(Debug, Clone)]
pub struct BackupArgs {
    pub uri: String,
    pub root: PathBuf,
    pub db: DbTarget,
    /// File name without extension: `<uri>-<YYYYMMDDTHHMMSSZ>`.
    pub file: String,
    pub compression: Compression,
    pub description: String,
}

fn file_name_ok(f: &str) -> bool {
    (1..=200).contains(&f.len())
        && !f.starts_with('.')
        && f.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

impl BackupArgs {
    /// The step's spec, checked again: it came off the wire.
    pub fn parse(spec: &SiteBackupSpec) -> Result<Self, BackupError> {
        let site = &spec.site;
        let uri = berth_hosting::HostName::parse(&site.uri)
            .map_err(|e| BackupError::bad(format!("uri: {e}")))?
            .to_string();
        let root = PathBuf::from(
            berth_hosting::parse_root(&site.root)
                .map_err(|e| BackupError::bad(format!("root: {e}")))?,
        );
        let db = DbTarget::of_site(&site.db)?;
        let file = spec.backup.file.clone();
        if !file_name_ok(&file) {
            return Err(BackupError::bad(format!("backup file name `{file}`")));
        }
        Ok(Self {
            uri,
            root,
            db,
            file,
            compression: spec.backup.compression,
            description: spec.backup.description.clone(),
        })
    }

    pub fn site_dir(&self) -> PathBuf {
        self.root.join("sites").join(&self.uri)
    }
}

/// What `site-backup` reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackupOutput {
    /// The tarball's file name, with its extension.
    pub file: String,
    pub path: String,
    pub size: u64,
    pub sha256: String,
    pub compression: Compression,
}

impl BackupOutput {
    /// As the step reports it.
    pub fn into_made(self) -> BackupMade {
        BackupMade {
            file: self.file,
            path: self.path,
            size: i64::try_from(self.size).unwrap_or(i64::MAX),
            sha256: self.sha256,
            compression: self.compression,
        }
    }
}

fn mb(n: u64) -> f64 {
    n as f64 / MB
}

fn io_t(what: impl std::fmt::Display) -> impl FnOnce(io::Error) -> BackupError {
    move |e| BackupError::transient(format!("{what}: {e}"))
}

/// Size and sha256 of a file, read through.
fn hash_file(path: &Path) -> io::Result<(u64, String)> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let r = f.read(&mut buf)?;
        if r == 0 {
            break;
        }
        h.update(&buf[..r]);
        n += r as u64;
    }
    Ok((n, hex::encode(h.finalize())))
}

/// Writes through to the file while hashing and counting what goes by.
struct HashWriter<W> {
    inner: W,
    hasher: Sha256,
    written: Arc<AtomicU64>,
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

enum Encoder<W: Write> {
    Zstd(zstd::stream::write::Encoder<'static, W>),
    Gzip(flate2::write::GzEncoder<W>),
}

impl<W: Write> Encoder<W> {
    fn new(c: Compression, w: W, a: &Archiver) -> io::Result<Self> {
        Ok(match c {
            Compression::Zstd => {
                let mut e = zstd::stream::write::Encoder::new(w, a.zstd_level)?;
                let threads = match a.zstd_threads {
                    0 => std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
                    n => n,
                };
                if threads > 1 {
                    e.multithread(threads)?;
                }
                Self::Zstd(e)
            }
            Compression::Gzip => Self::Gzip(flate2::write::GzEncoder::new(
                w,
                flate2::Compression::new(a.gzip_level),
            )),
        })
    }

    fn finish(self) -> io::Result<W> {
        match self {
            Self::Zstd(e) => e.finish(),
            Self::Gzip(e) => e.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Zstd(e) => e.write(buf),
            Self::Gzip(e) => e.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Zstd(e) => e.flush(),
            Self::Gzip(e) => e.flush(),
        }
    }
}

/// Counts the tar stream and reports every [`PROGRESS_EVERY`] bytes.
struct Progress<W, F: FnMut(u64)> {
    inner: W,
    packed: u64,
    next: u64,
    report: F,
}

impl<W: Write, F: FnMut(u64)> Write for Progress<W, F> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.packed += n as u64;
        if self.packed >= self.next {
            self.next = self.packed + PROGRESS_EVERY;
            (self.report)(self.packed);
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn php_quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// settings.php with the cloaked credentials (`$_SERVER['db_name'] ?? ''` …) replaced by
/// the real values, as Aegir's backup does: the tarball deploys on a plain server.
/// Returns the text and how many expressions were replaced.
pub fn uncloak_settings(text: &str, uri: &str, db: &DbTarget, password: &str) -> (String, usize) {
    const OPEN: &str = "$_SERVER['db_";
    let value = |key: &str| -> Option<String> {
        Some(match key {
            "type" => "mysql".into(),
            "name" => db.name.clone(),
            "user" => db.user.clone(),
            "passwd" => password.into(),
            "host" => db.host.clone(),
            "port" => db.port.to_string(),
            _ => return None,
        })
    };
    let mut out = String::with_capacity(text.len() + 128);
    let mut rest = text;
    let mut replaced = 0;
    while let Some(i) = rest.find(OPEN) {
        out.push_str(&rest[..i]);
        let after = &rest[i + OPEN.len()..];
        let Some(end) = after.find("']") else {
            out.push_str(&rest[i..]);
            rest = "";
            break;
        };
        let key = &after[..end];
        let Some(v) = value(key) else {
            out.push_str(OPEN);
            rest = after;
            continue;
        };
        let mut tail = &after[end + 2..];
        // `?? 'default'`: the fallback goes too.
        let t = tail.trim_start();
        if let Some(t) = t.strip_prefix("??") {
            let t = t.trim_start();
            if let Some(lit) = t.strip_prefix('\'') {
                let mut chars = lit.char_indices();
                let mut close = None;
                while let Some((j, c)) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '\'' => {
                            close = Some(j);
                            break;
                        }
                        _ => {}
                    }
                }
                if let Some(j) = close {
                    tail = &lit[j + 1..];
                }
            }
        }
        out.push_str(&php_quote(&v));
        replaced += 1;
        rest = tail;
    }
    out.push_str(rest);
    let note = format!(
        "// Uncloaked by berth's backup of {uri}: the database credentials are written\n\
         // plainly so that this tarball deploys on any server.\n"
    );
    let out = match out.strip_prefix("<?php\n") {
        Some(body) => format!("<?php\n{note}{body}"),
        None => out,
    };
    (out, replaced)
}

/// The entries of a directory tree, depth first in name order, relative to `base`;
/// symlinks are listed, not followed.
fn walk(base: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        let rel = p.strip_prefix(base).unwrap_or(&p).to_path_buf();
        let ft = e.file_type()?;
        out.push(rel);
        if ft.is_dir() {
            walk(base, &p, out)?;
        }
    }
    Ok(())
}

type Log<'a> = &'a (dyn Fn(String) + Sync);

/// `site-backup`: `<backups_dir>/<file>.tar.zst` (or `.tar.gz`), 0600.
///
/// The site directory's contents go at the top level with settings.php uncloaked, and
/// `database.sql` last. The dump runs at the same time as the files are packed: it goes
/// to a 0600 file in a 0700 directory next to the tarball (tar needs its size first) and
/// is appended when both are done. A redelivered step whose tarball exists writes
/// nothing: it reports the file as it is.
pub async fn backup_site(
    a: &Archiver,
    spec: &SiteBackupSpec,
    password: &str,
    log: Log<'_>,
) -> Result<BackupOutput, BackupError> {
    let args = BackupArgs::parse(spec)?;
    let started = Instant::now();
    let name = format!("{}.{}", args.file, extension(args.compression));
    let dir = a.backups_dir.clone();
    if !dir.is_dir() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io_t(format!("create {}", dir.display())))?;
        log(format!("created {}", dir.display()));
    }
    let path = dir.join(&name);
    let output = |size, sha256| BackupOutput {
        file: name.clone(),
        path: path.display().to_string(),
        size,
        sha256,
        compression: args.compression,
    };
    let work_dir = dir.join(format!(".{}.berth-tmp", args.file));
    if path.exists() {
        let p = path.clone();
        let (size, sha) = tokio::task::spawn_blocking(move || hash_file(&p))
            .await
            .map_err(|e| BackupError::transient(format!("hashing crashed: {e}")))?
            .map_err(io_t(format!("read {}", path.display())))?;
        log(format!(
            "{} was written by an earlier attempt: {:.1} MB, sha256 {sha}",
            path.display(),
            mb(size)
        ));
        // That attempt may have died between putting the file in place and removing its
        // private directory (the dump and the password's option file): it goes now.
        if work_dir.exists() {
            std::fs::remove_dir_all(&work_dir)
                .map_err(io_t(format!("remove {}", work_dir.display())))?;
            log(format!(
                "removed {} left by that attempt",
                work_dir.display()
            ));
        }
        return Ok(output(size, sha));
    }
    let site_dir = args.site_dir();
    if !site_dir.is_dir() {
        return Err(BackupError::permanent(format!(
            "{} is not a directory on this server",
            site_dir.display()
        )));
    }
    let work = PrivateDir::create(work_dir).map_err(io_t("create the private temp directory"))?;
    let option_file = work.option_file(&args.db, password)?;
    let dump_path = work.path.join("database.sql");
    let tmp_out = work.path.join(&name);

    let settings = site_dir.join("settings.php");
    let settings_text = match std::fs::read_to_string(&settings) {
        Ok(t) => {
            let (plain, n) = uncloak_settings(&t, &args.uri, &args.db, password);
            if n == 0 {
                log("settings.php holds no cloaked credentials: packed as it is".into());
            } else {
                log(format!(
                    "settings.php uncloaked in the tarball ({n} values written plainly)"
                ));
            }
            Some(plain)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            log("the site has no settings.php".into());
            None
        }
        Err(e) => return Err(BackupError::permanent(format!("read settings.php: {e}"))),
    };

    // The dump, started first: it runs while the files are packed.
    let dump_file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&dump_path)
        .map_err(io_t("create the dump file"))?;
    let mut child = tokio::process::Command::new(&a.dump_bin)
        .arg(defaults_arg(&option_file))
        .args(["--single-transaction", "--routines", "--triggers"])
        .arg(&args.db.name)
        .stdin(std::process::Stdio::null())
        .stdout(dump_file)
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| BackupError::permanent(format!("cannot run {}: {e}", a.dump_bin)))?;
    log(format!(
        "dumping {} from {}:{} as {} (--single-transaction --routines --triggers)",
        args.db.name, args.db.host, args.db.port, args.db.user
    ));
    let dump_started = Instant::now();
    let dump_bin = a.dump_bin.clone();
    let dump = async move {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut err).await;
        }
        let status = child
            .wait()
            .await
            .map_err(|e| BackupError::transient(format!("waiting for {dump_bin}: {e}")))?;
        if status.success() {
            Ok(dump_started.elapsed())
        } else {
            Err(classify(&dump_bin, status, &err, password))
        }
    };

    let (prog_tx, mut prog_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let (dump_tx, dump_rx) = std::sync::mpsc::channel::<bool>();
    let packer = {
        let (a, args) = (a.clone(), args.clone());
        let (site_dir, tmp_out, dump_path) = (site_dir.clone(), tmp_out.clone(), dump_path.clone());
        tokio::task::spawn_blocking(move || {
            pack(
                &a,
                &args,
                &site_dir,
                settings_text.as_deref(),
                &tmp_out,
                &dump_path,
                dump_rx,
                prog_tx,
            )
        })
    };
    let wait_dump = async move {
        let r = dump.await;
        let _ = dump_tx.send(r.is_ok());
        r
    };
    let drain = async {
        while let Some(line) = prog_rx.recv().await {
            log(line);
        }
    };
    let (dumped, ()) = tokio::join!(wait_dump, drain);
    let packed = packer
        .await
        .map_err(|e| BackupError::transient(format!("packing crashed: {e}")))?;
    let dump_time = dumped?;
    let packed = packed?;
    log(format!(
        "database dumped in {:.1} s ({:.1} MB)",
        dump_time.as_secs_f64(),
        mb(packed.sql_bytes)
    ));
    std::fs::rename(&tmp_out, &path).map_err(io_t(format!("rename to {}", path.display())))?;
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    drop(work);
    let secs = started.elapsed().as_secs_f64();
    log(format!(
        "{} written: {:.1} MB ({} from {:.1} MB: {} files, {:.1} MB database), sha256 {}, \
         {:.1} s, {:.1} MB/s",
        path.display(),
        mb(packed.size),
        args.compression.as_str(),
        mb(packed.input),
        packed.files,
        mb(packed.sql_bytes),
        packed.sha256,
        secs,
        mb(packed.input) / secs.max(1e-9),
    ));
    Ok(output(packed.size, packed.sha256))
}

struct Packed {
    size: u64,
    sha256: String,
    /// Bytes of file contents and dump read.
    input: u64,
    files: u64,
    sql_bytes: u64,
}

#[allow(clippy::too_many_arguments)]
fn pack(
    a: &Archiver,
    args: &BackupArgs,
    site_dir: &Path,
    settings: Option<&str>,
    tmp_out: &Path,
    dump_path: &Path,
    dump_done: std::sync::mpsc::Receiver<bool>,
    progress: tokio::sync::mpsc::UnboundedSender<String>,
) -> Result<Packed, BackupError> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tmp_out)
        .map_err(io_t("create the tarball"))?;
    let written = Arc::new(AtomicU64::new(0));
    let hw = HashWriter {
        inner: BufWriter::with_capacity(1 << 20, file),
        hasher: Sha256::new(),
        written: written.clone(),
    };
    let enc = Encoder::new(args.compression, hw, a).map_err(io_t("start the compressor"))?;
    let w = written.clone();
    let prog = Progress {
        inner: enc,
        packed: 0,
        next: PROGRESS_EVERY,
        report: move |n: u64| {
            let _ = progress.send(format!(
                "{:.0} MB packed, {:.0} MB written",
                mb(n),
                mb(w.load(Ordering::Relaxed))
            ));
        },
    };
    let mut tar = tar::Builder::new(prog);
    tar.follow_symlinks(false);
    let mut entries = Vec::new();
    walk(site_dir, site_dir, &mut entries)
        .map_err(|e| BackupError::permanent(format!("read {}: {e}", site_dir.display())))?;
    let (mut input, mut files) = (0u64, 0u64);
    let werr = |e: io::Error| BackupError::transient(format!("write the tarball: {e}"));
    for rel in &entries {
        let full = site_dir.join(rel);
        let meta = std::fs::symlink_metadata(&full)
            .map_err(|e| BackupError::permanent(format!("read {}: {e}", full.display())))?;
        let ft = meta.file_type();
        if rel == Path::new("settings.php") && ft.is_file() && settings.is_some() {
            let text = settings.unwrap_or_default().as_bytes();
            let mut h = tar::Header::new_gnu();
            h.set_metadata(&meta);
            h.set_size(text.len() as u64);
            tar.append_data(&mut h, rel, text).map_err(werr)?;
            input += text.len() as u64;
            files += 1;
        } else if ft.is_file() || ft.is_dir() || ft.is_symlink() {
            tar.append_path_with_name(&full, rel)
                .map_err(|e| BackupError::transient(format!("pack {}: {e}", full.display())))?;
            if ft.is_file() {
                input += meta.len();
                files += 1;
            }
        }
        // Sockets and fifos have no place in a backup.
    }
    // The files are in: wait for the dump, then add it.
    if !dump_done.recv().unwrap_or(false) {
        return Err(BackupError::transient("the dump did not complete"));
    }
    let sql_bytes = std::fs::metadata(dump_path)
        .map_err(io_t("read the dump"))?
        .len();
    tar.append_path_with_name(dump_path, "database.sql")
        .map_err(werr)?;
    input += sql_bytes;
    let prog = tar.into_inner().map_err(werr)?;
    let hw = prog.inner.finish().map_err(werr)?;
    let hash = hex::encode(hw.hasher.finalize());
    let file = hw.inner.into_inner().map_err(|e| werr(e.into_error()))?;
    file.sync_all().map_err(werr)?;
    Ok(Packed {
        size: written.load(Ordering::Relaxed),
        sha256: hash,
        input,
        files,
        sql_bytes,
    })
}

/// The arguments of `backup-extract`.
#[derive(Debug, Clone)]
pub struct ExtractArgs {
    pub path: PathBuf,
    pub target_dir: PathBuf,
    pub db: DbTarget,
}

fn absolute_normal(what: &str, p: &str) -> Result<PathBuf, BackupError> {
    let path = PathBuf::from(p);
    if !path.is_absolute()
        || path.components().count() < 2
        || path
            .components()
            .any(|c| !matches!(c, Component::RootDir | Component::Normal(_)))
    {
        return Err(BackupError::bad(format!(
            "{what} `{p}` is not an absolute normal path"
        )));
    }
    Ok(path)
}

impl ExtractArgs {
    /// The step's spec, checked again: it came off the wire. A backup named by its file
    /// is looked for in the backups directory.
    pub fn parse(a: &Archiver, spec: &ExtractSpec) -> Result<Self, BackupError> {
        let path = match &spec.source {
            BackupSource::Path(p) => absolute_normal("path", p)?,
            BackupSource::File(f) => backup_file(a, f)?,
        };
        Ok(Self {
            path,
            target_dir: absolute_normal("target_dir", &spec.target_dir)?,
            db: DbTarget::of_extract(&spec.db)?,
        })
    }
}

/// The tarball named `file` (without its extension) in the backups directory: what a
/// `backup-extract` of a backup made earlier in the same task knows of it.
pub fn backup_file(a: &Archiver, file: &str) -> Result<PathBuf, BackupError> {
    if file.is_empty() || file.contains('/') || file.starts_with('.') {
        return Err(BackupError::permanent(
            "backup-extract needs a `path` or a plain `file` name",
        ));
    }
    ["tar.zst", "tar.gz"]
        .iter()
        .map(|ext| a.backups_dir.join(format!("{file}.{ext}")))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            BackupError::permanent(format!("no backup {file} in {}", a.backups_dir.display()))
        })
}

/// What `backup-extract` reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtractOutput {
    pub target_dir: String,
    /// Regular files unpacked (settings.php and database.sql not counted).
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    pub database: String,
    pub sql_bytes: u64,
}

/// Checks a tar entry's path: relative, without `..`; `./` prefixes dropped.
fn entry_path(p: &Path) -> Result<PathBuf, BackupError> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            _ => {
                return Err(BackupError::permanent(format!(
                    "refused: the tarball entry `{}` leaves the target directory",
                    p.display()
                )));
            }
        }
    }
    Ok(out)
}

/// Whether a link target, taken from the directory `from` (relative to the target dir),
/// stays inside.
fn link_inside(from: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut depth: Vec<&std::ffi::OsStr> = from
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect();
    for c in target.components() {
        match c {
            Component::CurDir => {}
            Component::Normal(n) => depth.push(n),
            Component::ParentDir => {
                if depth.pop().is_none() {
                    return false;
                }
            }
            _ => return false,
        }
    }
    true
}

/// `backup-extract`: unpacks a site tarball into `target_dir` (made here, 0755), imports
/// its `database.sql` into the target database with the client program as it streams by,
/// and leaves out the plain-credential settings.php (berth writes a cloaked one on
/// verify). Entries that would land outside the directory are refused. A directory left
/// by an earlier attempt (it holds [`EXTRACT_MARKER`]) is removed and the work redone; one
/// that attempt finished is reported as it is.
pub async fn extract_backup(
    a: &Archiver,
    spec: &ExtractSpec,
    password: &str,
    log: Log<'_>,
) -> Result<ExtractOutput, BackupError> {
    let args = ExtractArgs::parse(a, spec)?;
    let started = Instant::now();
    let meta = std::fs::metadata(&args.path)
        .map_err(|e| BackupError::permanent(format!("cannot read {}: {e}", args.path.display())))?;
    if !meta.is_file() {
        return Err(BackupError::permanent(format!(
            "{} is not a file",
            args.path.display()
        )));
    }
    let target = &args.target_dir;
    let marker = target.join(EXTRACT_MARKER);
    if target.symlink_metadata().is_ok() {
        match std::fs::read_to_string(&marker) {
            Ok(m) if m.starts_with("done ") => {
                if let Ok(out) = serde_json::from_str::<ExtractOutput>(&m[5..]) {
                    log(format!(
                        "{} was unpacked and imported by an earlier attempt",
                        target.display()
                    ));
                    return Ok(out);
                }
                std::fs::remove_dir_all(target).map_err(io_t("remove the earlier attempt"))?;
            }
            Ok(_) => {
                log(format!(
                    "{} holds an unfinished earlier attempt: starting over",
                    target.display()
                ));
                std::fs::remove_dir_all(target).map_err(io_t("remove the earlier attempt"))?;
            }
            Err(_) => {
                return Err(BackupError::permanent(format!(
                    "{} exists and was not made by backup-extract: refused",
                    target.display()
                )));
            }
        }
    }
    let parent = target.parent().unwrap_or(Path::new("/"));
    if !parent.is_dir() {
        return Err(BackupError::permanent(format!(
            "{} is not a directory",
            parent.display()
        )));
    }
    std::fs::DirBuilder::new()
        .mode(0o755)
        .create(target)
        .map_err(io_t(format!("create {}", target.display())))?;
    std::fs::set_permissions(target, std::fs::Permissions::from_mode(0o755))
        .map_err(io_t("chmod the target directory"))?;
    std::fs::write(&marker, format!("unpacking {}\n", args.path.display()))
        .map_err(io_t("write the marker"))?;

    let work = PrivateDir::create(std::env::temp_dir().join(format!(
        "berth-extract-{}-{}",
        std::process::id(),
        rand::random::<u64>()
    )))
    .map_err(io_t("create the private temp directory"))?;
    let option_file = work.option_file(&args.db, password)?;
    let (prog_tx, mut prog_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let job = {
        let (a, args, password) = (a.clone(), args.clone(), password.to_owned());
        tokio::task::spawn_blocking(move || unpack(&a, &args, &option_file, &password, prog_tx))
    };
    while let Some(line) = prog_rx.recv().await {
        log(line);
    }
    let out = job
        .await
        .map_err(|e| BackupError::transient(format!("unpacking crashed: {e}")))??;
    drop(work);
    std::fs::write(
        &marker,
        format!(
            "done {}",
            serde_json::to_string(&out).unwrap_or_else(|_| "{}".into())
        ),
    )
    .map_err(io_t("write the marker"))?;
    let secs = started.elapsed().as_secs_f64();
    log(format!(
        "{} unpacked into {} ({} files, {:.1} MB) and {:.1} MB of SQL imported into {} in \
         {:.1} s, {:.1} MB/s",
        args.path.display(),
        target.display(),
        out.files,
        mb(out.bytes),
        mb(out.sql_bytes),
        args.db.name,
        secs,
        mb(out.bytes + out.sql_bytes) / secs.max(1e-9)
    ));
    Ok(out)
}

/// Opens a tarball by its magic: zstd, gzip or plain tar.
fn open_tarball(path: &Path) -> Result<Box<dyn Read + Send>, BackupError> {
    let mut f = std::fs::File::open(path)
        .map_err(|e| BackupError::permanent(format!("open {}: {e}", path.display())))?;
    let mut magic = [0u8; 4];
    let n = f.read(&mut magic).map_err(io_t("read the tarball"))?;
    let _ = n;
    io::Seek::seek(&mut f, io::SeekFrom::Start(0)).map_err(io_t("read the tarball"))?;
    let f = io::BufReader::with_capacity(1 << 20, f);
    let bad =
        |e: io::Error| BackupError::permanent(format!("{} does not open: {e}", path.display()));
    Ok(match magic {
        [0x28, 0xb5, 0x2f, 0xfd] => Box::new(zstd::stream::read::Decoder::new(f).map_err(bad)?),
        [0x1f, 0x8b, ..] => Box::new(flate2::bufread::MultiGzDecoder::new(f)),
        _ => Box::new(f),
    })
}

fn unpack(
    a: &Archiver,
    args: &ExtractArgs,
    option_file: &Path,
    password: &str,
    progress: tokio::sync::mpsc::UnboundedSender<String>,
) -> Result<ExtractOutput, BackupError> {
    let reader = open_tarball(&args.path)?;
    let mut archive = tar::Archive::new(reader);
    let target = &args.target_dir;
    let opened = |e: io::Error| {
        BackupError::permanent(format!(
            "{} does not open as a tarball: {e}",
            args.path.display()
        ))
    };
    let (mut files, mut bytes, mut sql_bytes) = (0u64, 0u64, None::<u64>);
    let mut next_report = PROGRESS_EVERY;
    for entry in archive.entries().map_err(opened)? {
        let mut entry = entry.map_err(opened)?;
        let raw = entry.path().map_err(opened)?.into_owned();
        let rel = entry_path(&raw)?;
        if rel.as_os_str().is_empty() {
            continue;
        }
        let kind = entry.header().entry_type();
        if rel == Path::new("database.sql") && kind.is_file() {
            let n = import(a, args, option_file, password, &mut entry)?;
            let _ = progress.send(format!(
                "{:.1} MB of SQL imported into {}",
                mb(n),
                args.db.name
            ));
            sql_bytes = Some(n);
            continue;
        }
        if rel == Path::new("settings.php") {
            let _ = progress.send(
                "the tarball's settings.php (plain credentials) left out: a verify writes a \
                 cloaked one"
                    .into(),
            );
            continue;
        }
        if rel == Path::new(EXTRACT_MARKER) {
            continue;
        }
        if kind.is_symlink() || kind.is_hard_link() {
            let link = entry
                .link_name()
                .map_err(opened)?
                .ok_or_else(|| BackupError::permanent("a link entry without a target"))?
                .into_owned();
            let inside = if kind.is_symlink() {
                link_inside(rel.parent().unwrap_or(Path::new("")), &link)
            } else {
                entry_path(&link).is_ok()
            };
            if !inside {
                return Err(BackupError::permanent(format!(
                    "refused: the link `{}` → `{}` points outside the target directory",
                    rel.display(),
                    link.display()
                )));
            }
        } else if !(kind.is_file() || kind.is_dir() || kind == tar::EntryType::Continuous) {
            let _ = progress.send(format!(
                "skipped {} (neither file, directory nor link)",
                rel.display()
            ));
            continue;
        }
        entry.set_preserve_permissions(true);
        entry.set_preserve_mtime(true);
        let size = entry.size();
        let done = entry
            .unpack_in(target)
            .map_err(|e| BackupError::permanent(format!("unpack {}: {e}", rel.display())))?;
        if !done {
            return Err(BackupError::permanent(format!(
                "refused: the tarball entry `{}` leaves the target directory",
                raw.display()
            )));
        }
        if kind.is_file() {
            files += 1;
            bytes += size;
            if bytes >= next_report {
                next_report = bytes + PROGRESS_EVERY;
                let _ = progress.send(format!("{:.0} MB unpacked", mb(bytes)));
            }
        }
    }
    let Some(sql_bytes) = sql_bytes else {
        return Err(BackupError::permanent(format!(
            "{} holds no database.sql",
            args.path.display()
        )));
    };
    Ok(ExtractOutput {
        target_dir: target.display().to_string(),
        files,
        bytes,
        database: args.db.name.clone(),
        sql_bytes,
    })
}

/// Streams `database.sql` into the client program; returns the bytes sent.
fn import(
    a: &Archiver,
    args: &ExtractArgs,
    option_file: &Path,
    password: &str,
    sql: &mut dyn Read,
) -> Result<u64, BackupError> {
    let mut child = std::process::Command::new(&a.client_bin)
        .arg(defaults_arg(option_file))
        .arg(&args.db.name)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| BackupError::permanent(format!("cannot run {}: {e}", a.client_bin)))?;
    let mut stderr = child.stderr.take();
    let errors = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(e) = stderr.as_mut() {
            let _ = e.read_to_string(&mut s);
        }
        s
    });
    let mut stdin = child.stdin.take();
    let copied = match stdin.as_mut() {
        Some(w) => copy_without_definers(sql, w),
        None => Ok(0),
    };
    drop(stdin);
    let status = child
        .wait()
        .map_err(|e| BackupError::transient(format!("waiting for {}: {e}", a.client_bin)))?;
    let err = errors.join().unwrap_or_default();
    if !status.success() {
        return Err(classify(&a.client_bin, status, &err, password));
    }
    copied.map_err(|e| {
        BackupError::transient(format!("feeding database.sql to {}: {e}", a.client_bin))
    })
}

/// Copies a dump, dropping the `DEFINER=` clauses of routines, triggers and views: the
/// dump's definer (the old site user) does not exist for, or may not be named by, the
/// user that imports it; without the clause the importing user is the definer. Rows
/// (`INSERT` lines) pass untouched.
fn copy_without_definers(r: &mut dyn Read, w: &mut dyn Write) -> io::Result<u64> {
    let mut r = io::BufReader::with_capacity(1 << 20, r);
    let mut line = Vec::with_capacity(1 << 20);
    let mut n = 0u64;
    loop {
        line.clear();
        let k = io::BufRead::read_until(&mut r, b'\n', &mut line)?;
        if k == 0 {
            break;
        }
        n += k as u64;
        if !line.starts_with(b"INSERT") && find(&line, b"DEFINER=").is_some() {
            w.write_all(&strip_definers(&line))?;
        } else {
            w.write_all(&line)?;
        }
    }
    w.flush()?;
    Ok(n)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Length of a quoted name (`x`, 'x', "x", doubled quotes escape) or bare word at the
/// start of `s`.
fn quoted_len(s: &[u8]) -> usize {
    match s.first() {
        Some(&q @ (b'`' | b'\'' | b'"')) => {
            let mut i = 1;
            while i < s.len() {
                if s[i] == q {
                    if s.get(i + 1) == Some(&q) {
                        i += 2;
                        continue;
                    }
                    return i + 1;
                }
                if s[i] == b'\\' && q != b'`' {
                    i += 1;
                }
                i += 1;
            }
            s.len()
        }
        _ => s
            .iter()
            .position(|b| {
                !(b.is_ascii_alphanumeric() || matches!(b, b'_' | b'(' | b')' | b'.' | b'%' | b'-'))
            })
            .unwrap_or(s.len()),
    }
}

/// `DEFINER=`user`@`host` ` (or `DEFINER=CURRENT_USER`) removed wherever it appears.
pub fn strip_definers(line: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(line.len());
    let mut rest = line;
    while let Some(i) = find(rest, b"DEFINER=") {
        out.extend_from_slice(&rest[..i]);
        let mut j = i + b"DEFINER=".len();
        j += quoted_len(&rest[j..]);
        if rest.get(j) == Some(&b'@') {
            j += 1;
            j += quoted_len(&rest[j..]);
        }
        if rest.get(j) == Some(&b' ') {
            j += 1;
        }
        rest = &rest[j..];
    }
    out.extend_from_slice(rest);
    out
}

/// What `backup-delete` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deleted {
    pub path: String,
    /// `false`: it was already gone.
    pub deleted: bool,
}

/// `p` if it names a file directly inside the backups directory (not a hidden one).
pub(crate) fn inside_backups_dir(a: &Archiver, p: &str) -> Result<PathBuf, BackupError> {
    let path = absolute_normal("path", p)?;
    let dir = std::fs::canonicalize(&a.backups_dir).map_err(|e| {
        BackupError::permanent(format!(
            "the backups directory {}: {e}",
            a.backups_dir.display()
        ))
    })?;
    let parent = path.parent().map(std::fs::canonicalize);
    let inside = matches!(&parent, Some(Ok(p)) if *p == dir);
    let name_ok = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| !n.starts_with('.'));
    if !inside || !name_ok {
        return Err(BackupError::permanent(format!(
            "refused: {p} is not a backup directly inside {}",
            a.backups_dir.display()
        )));
    }
    Ok(path)
}

/// `backup-delete`: removes a tarball directly inside the backups directory; anything
/// else is refused; an absent one is fine.
pub fn delete_backup(
    a: &Archiver,
    spec: &BackupDeleteSpec,
    log: Log<'_>,
) -> Result<Deleted, BackupError> {
    let p = spec.path.as_str();
    let path = inside_backups_dir(a, p)?;
    match std::fs::symlink_metadata(&path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            log(format!("{p} is already gone"));
            Ok(Deleted {
                path: p.to_owned(),
                deleted: false,
            })
        }
        Err(e) => Err(BackupError::transient(format!("read {p}: {e}"))),
        Ok(m) if !m.file_type().is_file() => Err(BackupError::permanent(format!(
            "refused: {p} is not a regular file"
        ))),
        Ok(m) => {
            std::fs::remove_file(&path).map_err(io_t(format!("remove {p}")))?;
            log(format!("removed {p} ({:.1} MB)", mb(m.len())));
            Ok(Deleted {
                path: p.to_owned(),
                deleted: true,
            })
        }
    }
}
