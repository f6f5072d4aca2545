//! `berth-bench backup`: a site backup and restore with berth's backup worker functions
//! (`backup_site`, `extract_backup`, called directly) against what an admin would type:
//! `mysqldump db > dump.sql && tar czf x.tgz …` and `tar xzf … && mysql db < dump.sql`,
//! on the same generated site (files of several kinds, a database of text and blobs) in
//! the same run, alternating, median of the repetitions.

use crate::machine::{self, CpuSample, CpuUse};
use anyhow::{Result, bail};
use berth_backup::Archiver;
use berth_contracts::Installer;
use berth_contracts::steps::{
    BackupOrder, BackupSource, Compression, ExtractDb, ExtractSpec, HttpServiceSpec,
    SiteBackupSpec, SiteDbSpec, SiteSpec,
};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

const MB: f64 = 1_048_576.0;
const URI: &str = "bench.example.com";

pub struct Config {
    pub dir: PathBuf,
    pub files_mb: u64,
    pub db_mb: u64,
    pub reps: usize,
    /// zstd levels to measure berth with (the first one is the headline).
    pub levels: Vec<i32>,
    /// zstd worker threads to measure berth with (0: one per core).
    pub threads: Vec<u32>,
    /// Also measure berth writing gzip (same format as the baseline).
    pub gzip: bool,
    pub keep: bool,
}

/// A deterministic generator (xorshift64*): the same site every run.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.next().to_le_bytes());
        }
        v.truncate(n);
        v
    }
}

/// Text in the shape of a site's content: words from a vocabulary of a few thousand,
/// with markup; gzip -6 makes about a third of it.
pub(crate) struct Words {
    vocab: Vec<String>,
}

impl Words {
    pub(crate) fn new(rng: &mut Rng) -> Self {
        let letters = b"etaoinshrdlucmfwypvbgkqjxz";
        let vocab = (0..4000)
            .map(|_| {
                let len = 2 + rng.below(9) as usize;
                (0..len)
                    .map(|_| {
                        // Skewed towards the common letters.
                        let i = (rng.below(26) * rng.below(26) / 25) as usize;
                        letters[i] as char
                    })
                    .collect()
            })
            .collect();
        Self { vocab }
    }

    fn text(&self, rng: &mut Rng, bytes: usize, markup: bool) -> String {
        let mut s = String::with_capacity(bytes + 64);
        let mut n = 0;
        while s.len() < bytes {
            if markup && n % 40 == 0 {
                s.push_str(match rng.below(4) {
                    0 => "</p>\n<p class=\"field-item even\">",
                    1 => "\n<div class=\"views-row\"><a href=\"/node/",
                    2 => "\">\n<span property=\"dc:title\">",
                    _ => "</span></div>\n",
                });
            }
            // Zipf-like: a few words are most of the text.
            let r = rng.below(4000);
            let i = (r * r / 4000) as usize;
            s.push_str(&self.vocab[i]);
            s.push(if n % 17 == 16 { '\n' } else { ' ' });
            n += 1;
        }
        s.truncate(bytes);
        s
    }
}

/// The site directory: ~30 % random bytes (photos, PDFs: already compressed), the rest
/// text (HTML, CSS, JS caches, a few big logs/exports), many small files and some large.
pub(crate) fn make_site(
    site: &Path,
    total_mb: u64,
    rng: &mut Rng,
    words: &Words,
) -> Result<(u64, u64)> {
    let total = total_mb << 20;
    let (mut bytes, mut files) = (0u64, 0u64);
    let put = |rel: String, data: &[u8], bytes: &mut u64, files: &mut u64| -> Result<()> {
        let p = site.join(rel);
        std::fs::create_dir_all(p.parent().unwrap())?;
        std::fs::write(&p, data)?;
        *bytes += data.len() as u64;
        *files += 1;
        Ok(())
    };
    // Photos: 30 % in 100 KB – 4 MB files.
    let mut photos = 0u64;
    let mut i = 0;
    while photos < total * 30 / 100 {
        let n = (100 << 10) + rng.below(4 << 20) as usize;
        let mut data = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00".to_vec();
        data.extend(rng.bytes(n));
        put(
            format!("files/{}/{:02}/IMG_{i:05}.jpg", 2019 + i % 6, i % 12 + 1),
            &data,
            &mut bytes,
            &mut files,
        )?;
        photos += data.len() as u64;
        i += 1;
    }
    // Big text: exports and logs, 5 × 4 % (8 MB each for 200 MB).
    for k in 0..5 {
        let t = words.text(rng, (total / 25) as usize, false);
        put(
            format!("private/exports/export-{k}.csv"),
            t.as_bytes(),
            &mut bytes,
            &mut files,
        )?;
    }
    // Aggregated CSS/JS and page caches: many small files to the end.
    let mut j = 0;
    while bytes < total {
        let n = (1 << 10) + rng.below(40 << 10) as usize;
        let (dir, ext) = match j % 3 {
            0 => ("files/css", "css"),
            1 => ("files/js", "js"),
            _ => ("files/html-cache", "html"),
        };
        let t = words.text(rng, n, true);
        put(
            format!("{dir}/{:03}/f{j:06}.{ext}", j / 200),
            t.as_bytes(),
            &mut bytes,
            &mut files,
        )?;
        j += 1;
    }
    std::fs::write(site.join(".berth-site"), format!("{URI}\n"))?;
    Ok((bytes, files))
}

fn settings_php() -> String {
    format!(
        "<?php\n$databases['default']['default'] = array(\n  'driver' => $_SERVER['db_type'] ?? 'mysql',\n  \
         'database' => $_SERVER['db_name'] ?? '',\n  'username' => $_SERVER['db_user'] ?? '',\n  \
         'password' => $_SERVER['db_passwd'] ?? '',\n  'host' => $_SERVER['db_host'] ?? '',\n  \
         'port' => $_SERVER['db_port'] ?? '',\n  'prefix' => '',\n);\n\
         $settings['hash_salt'] = 'bench';\n$settings['file_public_path'] = 'sites/{URI}/files';\n"
    )
}

fn sql(stmt: &str) -> Result<()> {
    let out = Command::new("mariadb")
        .args(["-uroot", "-e", stmt])
        .output()?;
    if !out.status.success() {
        bail!("{stmt}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

fn create_db(name: &str, password: &str) -> Result<()> {
    sql(&format!(
        "CREATE DATABASE `{name}` CHARACTER SET utf8mb4; \
         CREATE USER '{name}'@'127.0.0.1' IDENTIFIED BY '{password}'; \
         CREATE USER '{name}'@'localhost' IDENTIFIED BY '{password}'; \
         GRANT ALL ON `{name}`.* TO '{name}'@'127.0.0.1'; \
         GRANT ALL ON `{name}`.* TO '{name}'@'localhost';"
    ))
}

fn drop_db(name: &str) {
    let _ = sql(&format!(
        "DROP USER IF EXISTS '{name}'@'127.0.0.1'; DROP USER IF EXISTS '{name}'@'localhost'; \
         DROP DATABASE IF EXISTS `{name}`;"
    ));
}

fn sql_str(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// A Drupal-shaped database of about `mb` MB: node bodies (text), cache entries (blobs,
/// half compressible) and watchdog lines.
fn fill_db(name: &str, mb: u64, rng: &mut Rng, words: &Words) -> Result<()> {
    let mut child = Command::new("mariadb")
        .args(["-uroot", name])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut w = std::io::BufWriter::new(child.stdin.take().unwrap());
    writeln!(
        w,
        "CREATE TABLE node__body (entity_id INT PRIMARY KEY, title VARCHAR(255), body_value LONGTEXT, body_format VARCHAR(32)) ENGINE=InnoDB;
CREATE TABLE cache_render (cid VARCHAR(255) PRIMARY KEY, data LONGBLOB, expire INT, created DECIMAL(14,3), serialized SMALLINT) ENGINE=InnoDB;
CREATE TABLE watchdog (wid INT PRIMARY KEY, type VARCHAR(64), message LONGTEXT, variables LONGBLOB, timestamp INT) ENGINE=InnoDB;"
    )?;
    let total = mb << 20;
    let mut written = 0u64;
    let (mut nid, mut cid, mut wid) = (0u64, 0u64, 0u64);
    while written < total {
        // Each batch about 1 MB: 45 % bodies, 40 % cache, 15 % watchdog.
        let mut stmt = String::from("INSERT INTO node__body VALUES ");
        for k in 0..10 {
            let body = words.text(rng, 40 << 10, true);
            written += body.len() as u64;
            nid += 1;
            if k > 0 {
                stmt.push(',');
            }
            stmt.push_str(&format!(
                "({nid},{},{},'full_html')",
                sql_str(&words.text(rng, 60, false)),
                sql_str(&body)
            ));
        }
        writeln!(w, "{stmt};")?;
        let mut stmt = String::from("INSERT INTO cache_render VALUES ");
        for k in 0..8 {
            let mut data = words.text(rng, 24 << 10, true).into_bytes();
            data.extend(rng.bytes(24 << 10));
            written += data.len() as u64;
            cid += 1;
            if k > 0 {
                stmt.push(',');
            }
            stmt.push_str(&format!(
                "('entity_view:node:{cid}:full',X'{}',-1,1700000000.123,1)",
                hex(&data)
            ));
        }
        writeln!(w, "{stmt};")?;
        let mut stmt = String::from("INSERT INTO watchdog VALUES ");
        for k in 0..40 {
            let msg = words.text(rng, 3 << 10, false);
            written += msg.len() as u64 + 512;
            wid += 1;
            if k > 0 {
                stmt.push(',');
            }
            stmt.push_str(&format!(
                "({wid},'php',{},X'{}',{})",
                sql_str(&msg),
                hex(&rng.bytes(512)),
                1_700_000_000 + wid
            ));
        }
        writeln!(w, "{stmt};")?;
    }
    drop(w);
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("filling {name}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

fn hex(b: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = Vec::with_capacity(b.len() * 2);
    for x in b {
        s.push(H[(x >> 4) as usize]);
        s.push(H[(x & 15) as usize]);
    }
    String::from_utf8(s).unwrap()
}

fn sh(script: &str) -> Result<()> {
    let out = Command::new("sh").args(["-c", script]).output()?;
    if !out.status.success() {
        bail!("{script}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

pub(crate) fn du(dir: &Path) -> u64 {
    fn go(p: &Path) -> u64 {
        let Ok(m) = std::fs::symlink_metadata(p) else {
            return 0;
        };
        if m.is_dir() {
            std::fs::read_dir(p)
                .map(|r| r.flatten().map(|e| go(&e.path())).sum())
                .unwrap_or(0)
        } else {
            m.len()
        }
    }
    go(dir)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// One measured way of doing a backup or restore.
struct Row {
    name: String,
    secs: Vec<f64>,
    out_bytes: u64,
    cpu: Option<CpuUse>,
}

impl Row {
    fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            secs: Vec::new(),
            out_bytes: 0,
            cpu: None,
        }
    }
    fn time<T>(&mut self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let cpu = CpuSample::now();
        let t = Instant::now();
        let r = f()?;
        self.secs.push(t.elapsed().as_secs_f64());
        self.cpu = Some(CpuSample::now().since(&cpu));
        Ok(r)
    }
}

pub async fn run(c: Config) -> Result<()> {
    let load_before = machine::loadavg();
    let started = Instant::now();
    if c.dir.exists() {
        std::fs::remove_dir_all(&c.dir)?;
    }
    let root = c.dir.join("platform");
    let site = root.join("sites").join(URI);
    let backups = c.dir.join("backups");
    let admin_dir = c.dir.join("admin");
    std::fs::create_dir_all(&site)?;
    std::fs::create_dir_all(&admin_dir)?;
    std::fs::write(site.join("settings.php"), settings_php())?;

    eprintln!(
        "generating the site: {} MB of files, {} MB database…",
        c.files_mb, c.db_mb
    );
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let words = Words::new(&mut rng);
    let (file_bytes, files) = make_site(&site, c.files_mb, &mut rng, &words)?;
    let tag: String = format!("{:x}", std::process::id());
    let db = format!("bench_bk_{tag}");
    let password = berth_backup_password();
    drop_db(&db);
    create_db(&db, &password)?;
    let result = measure(
        &c, &site, &root, &backups, &admin_dir, &db, &password, &tag, file_bytes, files, &mut rng,
        &words,
    )
    .await;
    drop_db(&db);
    if !c.keep {
        let _ = std::fs::remove_dir_all(&c.dir);
    }
    let report = result?;
    println!("# berth-bench backup\n");
    println!(
        "machine: {} cores, load average {} before, {} after; run took {:.0} s\n",
        machine::cores(),
        load_before,
        machine::loadavg(),
        started.elapsed().as_secs_f64()
    );
    println!("{report}");
    Ok(())
}

fn berth_backup_password() -> String {
    let mut r = Rng(std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(7)
        | 1);
    hex(&r.bytes(16))
}

#[allow(clippy::too_many_arguments)]
async fn measure(
    c: &Config,
    site: &Path,
    root: &Path,
    backups: &Path,
    admin_dir: &Path,
    db: &str,
    password: &str,
    tag: &str,
    file_bytes: u64,
    files: u64,
    rng: &mut Rng,
    words: &Words,
) -> Result<String> {
    eprintln!("filling {db}…");
    fill_db(db, c.db_mb, rng, words)?;
    let dump = admin_dir.join("dump.sql");
    let tgz = admin_dir.join("site.tgz");
    let quiet = |_: String| {};
    let spec = bench_site(root, db);

    // The variants of berth measured: (label, level, threads, compression).
    let mut variants: Vec<(String, i32, u32, &str)> = Vec::new();
    for &l in &c.levels {
        for &t in &c.threads {
            let th = if t == 0 {
                format!("{} threads", machine::cores())
            } else {
                format!("{t} thread{}", if t == 1 { "" } else { "s" })
            };
            variants.push((format!("berth site-backup, zstd -{l}, {th}"), l, t, "zstd"));
        }
    }
    if c.gzip {
        variants.push(("berth site-backup, gzip -6".into(), 3, 0, "gzip"));
    }

    let mut base = Row::new("`mysqldump db > dump.sql && tar czf`");
    let mut berth: Vec<Row> = variants.iter().map(|v| Row::new(v.0.clone())).collect();
    let mut base_restore = Row::new("`tar xzf && mysql db < dump.sql`");
    let mut berth_restore = Row::new("berth backup-extract (zstd -3 tarball)");
    let mut dump_bytes = 0;
    let mut headline_tarball = PathBuf::new();

    for rep in 0..c.reps {
        eprintln!("repetition {}/{}", rep + 1, c.reps);
        // Baseline backup, as an admin would.
        let _ = std::fs::remove_file(&dump);
        let _ = std::fs::remove_file(&tgz);
        base.time(|| {
            sh(&format!(
                "mysqldump -uroot --single-transaction --routines --triggers {db} > {d} && \
                 tar czf {t} -C {s} . -C {a} dump.sql",
                d = dump.display(),
                t = tgz.display(),
                s = site.display(),
                a = admin_dir.display()
            ))
        })?;
        dump_bytes = std::fs::metadata(&dump)?.len();
        base.out_bytes = std::fs::metadata(&tgz)?.len();

        // Berth, each variant.
        for (k, (_, level, threads, comp)) in variants.iter().enumerate() {
            let mut a = Archiver::new(backups, "mariadb-dump", "mariadb");
            a.zstd_level = *level;
            a.zstd_threads = *threads;
            let file = format!("{URI}-r{rep}-v{k}");
            let args = SiteBackupSpec {
                site: spec.clone(),
                backup: BackupOrder {
                    file,
                    compression: Compression::parse(comp).expect("zstd or gzip"),
                    description: "bench".into(),
                },
                files_may_be_gone: false,
            };
            let cpu = CpuSample::now();
            let t = Instant::now();
            let out = berth_backup::backup_site(&a, &args, password, &quiet)
                .await
                .map_err(|e| anyhow::anyhow!("backup_site: {e}"))?;
            berth[k].secs.push(t.elapsed().as_secs_f64());
            berth[k].cpu = Some(CpuSample::now().since(&cpu));
            berth[k].out_bytes = out.size;
            if k == 0 {
                headline_tarball = PathBuf::from(&out.path);
            } else {
                std::fs::remove_file(&out.path)?;
            }
        }

        // Restores, alternating which goes first (ext4 inode allocation after the
        // deletions of the previous repetition weighs on whichever runs first).
        let base_first = rep % 2 == 0;
        for turn in 0..2 {
            if (turn == 0) == base_first {
                // Baseline restore: unpack, then import into a new database.
                let out_dir = c.dir.join(format!("restore-base-{rep}"));
                let rdb = format!("bench_rb_{tag}_{rep}");
                drop_db(&rdb);
                create_db(&rdb, password)?;
                std::fs::create_dir_all(&out_dir)?;
                base_restore.time(|| {
                    sh(&format!(
                        "tar xzf {t} -C {o} && mysql -uroot {rdb} < {o}/dump.sql",
                        t = tgz.display(),
                        o = out_dir.display()
                    ))
                })?;
                base_restore.out_bytes = du(&out_dir);
                drop_db(&rdb);
                std::fs::remove_dir_all(&out_dir)?;
            } else {
                let target = c.dir.join(format!("restore-berth-{rep}"));
                let rdb = format!("bench_rt_{tag}_{rep}");
                drop_db(&rdb);
                create_db(&rdb, password)?;
                let args = ExtractSpec {
                    source: BackupSource::Path(headline_tarball.display().to_string()),
                    target_dir: target.display().to_string(),
                    db: ExtractDb {
                        host: "127.0.0.1".into(),
                        port: 3306,
                        name: rdb.clone(),
                        user: rdb.clone(),
                    },
                };
                let cpu = CpuSample::now();
                let t = Instant::now();
                berth_backup::extract_backup(
                    &Archiver::new(backups, "mariadb-dump", "mariadb"),
                    &args,
                    password,
                    &quiet,
                )
                .await
                .map_err(|e| anyhow::anyhow!("extract_backup: {e}"))?;
                berth_restore.secs.push(t.elapsed().as_secs_f64());
                berth_restore.cpu = Some(CpuSample::now().since(&cpu));
                berth_restore.out_bytes = du(&target);
                drop_db(&rdb);
                std::fs::remove_dir_all(&target)?;
            }
        }
        let _ = std::fs::remove_file(&headline_tarball);
    }

    let input = (file_bytes + dump_bytes) as f64 / MB;
    let mut r = String::new();
    use std::fmt::Write as _;
    writeln!(
        r,
        "site: {files} files, {:.0} MB (30 % random bytes as photos, the rest text in many \
         small and a few large files); database {:.0} MB as dumped (text and blobs); input \
         {input:.0} MB; {} repetitions, median\n",
        file_bytes as f64 / MB,
        dump_bytes as f64 / MB,
        c.reps
    )?;
    writeln!(r, "## Backup\n")?;
    writeln!(
        r,
        "| how | median s | MB/s (input) | output MB | ratio vs baseline | CPU (last run) |"
    )?;
    writeln!(r, "|---|---:|---:|---:|---:|---|")?;
    let b = median(base.secs.clone());
    for row in std::iter::once(&base).chain(berth.iter()) {
        let m = median(row.secs.clone());
        writeln!(
            r,
            "| {} | {m:.2} | {:.0} | {:.1} | {:.1}× | {} |",
            row.name,
            input / m,
            row.out_bytes as f64 / MB,
            b / m,
            row.cpu.map(|c| format!("{c}")).unwrap_or_default()
        )?;
    }
    writeln!(r, "\n## Restore\n")?;
    writeln!(
        r,
        "| how | median s | MB/s (input) | ratio vs baseline | CPU (last run) |"
    )?;
    writeln!(r, "|---|---:|---:|---:|---|")?;
    let b = median(base_restore.secs.clone());
    for row in [&base_restore, &berth_restore] {
        let m = median(row.secs.clone());
        writeln!(
            r,
            "| {} | {m:.2} | {:.0} | {:.1}× | {} |",
            row.name,
            input / m,
            b / m,
            row.cpu.map(|c| format!("{c}")).unwrap_or_default()
        )?;
    }
    writeln!(
        r,
        "\nall runs (s): baseline backup {:?}; {}; baseline restore {:?}; berth restore {:?}",
        base.secs
            .iter()
            .map(|s| (s * 100.0).round() / 100.0)
            .collect::<Vec<_>>(),
        berth
            .iter()
            .map(|row| format!(
                "{} {:?}",
                row.name,
                row.secs
                    .iter()
                    .map(|s| (s * 100.0).round() / 100.0)
                    .collect::<Vec<_>>()
            ))
            .collect::<Vec<_>>()
            .join("; "),
        base_restore
            .secs
            .iter()
            .map(|s| (s * 100.0).round() / 100.0)
            .collect::<Vec<_>>(),
        berth_restore
            .secs
            .iter()
            .map(|s| (s * 100.0).round() / 100.0)
            .collect::<Vec<_>>(),
    )?;
    Ok(r)
}

/// The site the benchmark backs up, as a backup step describes it.
fn bench_site(root: &Path, db: &str) -> SiteSpec {
    SiteSpec {
        uri: URI.into(),
        aliases: vec![],
        redirection: false,
        profile: "standard".into(),
        language: "en".into(),
        client_email: None,
        platform: "platform_bench".into(),
        root: root.display().to_string(),
        drupal_major: Some(10),
        installer: Installer::default(),
        disabled: false,
        suspended: false,
        unix_uid: 200_000,
        http: HttpServiceSpec {
            service_type: "nginx".into(),
            port: 80,
        },
        db: SiteDbSpec {
            service_type: "mariadb".into(),
            host: "127.0.0.1".into(),
            port: 3306,
            admin_user: "root".into(),
            name: db.into(),
            user: db.into(),
            grant_hosts: vec!["localhost".into()],
        },
        web_host: "localhost".into(),
        stash: false,
    }
}
