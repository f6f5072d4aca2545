//! The backup worker's actions against the real MariaDB (`BERTH_TEST_MYSQL_URL`, default
//! mysql://berth_test:berth-test-password@127.0.0.1:3306, the account ops/test.sh makes):
//! site tarballs made, checked, unpacked and imported.

use berth_backup::{
    Archiver, BackupError, EXTRACT_MARKER, backup_site, delete_backup, extract_backup,
};
use berth_contracts::Installer;
use berth_contracts::steps::{
    BackupDeleteSpec, BackupOrder, BackupSource, Compression, ExtractDb, ExtractSpec,
    HttpServiceSpec, SiteBackupSpec, SiteDbSpec, SiteSpec,
};
use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::mysql::MySqlConnection;
use sqlx::{Connection, Row};
use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

const URI: &str = "shop.example.com";

fn mysql_url() -> String {
    // The tests' own account, which ops/test.sh makes.
    std::env::var("BERTH_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://berth_test:berth-test-password@127.0.0.1:3306".into())
}

async fn admin() -> MySqlConnection {
    MySqlConnection::connect(&mysql_url())
        .await
        .expect("MariaDB at BERTH_TEST_MYSQL_URL")
}

async fn exec(c: &mut MySqlConnection, sql: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&mut *c)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

fn rand_hex(n: usize) -> String {
    (0..n)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

/// A site database and its user with a password; dropped with [`TestDb::drop_all`].
struct TestDb {
    name: String,
    password: String,
}

impl TestDb {
    async fn create(admin: &mut MySqlConnection) -> Self {
        let name = format!("bk_{}", rand_hex(6));
        let password = rand_hex(16);
        exec(
            admin,
            &format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4"),
        )
        .await;
        for host in ["%", "localhost", "127.0.0.1"] {
            exec(
                admin,
                &format!("CREATE USER '{name}'@'{host}' IDENTIFIED BY '{password}'"),
            )
            .await;
            exec(
                admin,
                &format!("GRANT ALL PRIVILEGES ON `{name}`.* TO '{name}'@'{host}'"),
            )
            .await;
        }
        Self { name, password }
    }

    fn target(&self) -> ExtractDb {
        ExtractDb {
            host: "127.0.0.1".into(),
            port: port(),
            name: self.name.clone(),
            user: self.name.clone(),
        }
    }

    async fn drop_all(&self, admin: &mut MySqlConnection) {
        for host in ["%", "localhost", "127.0.0.1"] {
            exec(
                admin,
                &format!("DROP USER IF EXISTS '{}'@'{host}'", self.name),
            )
            .await;
        }
        exec(admin, &format!("DROP DATABASE IF EXISTS `{}`", self.name)).await;
    }
}

fn port() -> u16 {
    let url = mysql_url();
    url.rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').split('/').next()?.parse().ok())
        .unwrap_or(3306)
}

/// Unicode and binary rows, a trigger and a procedure; about `blob_kb` KB of blobs.
async fn fill(admin: &mut MySqlConnection, db: &str, password: &str, blob_kb: usize) {
    exec(
        admin,
        &format!(
            "CREATE TABLE `{db}`.node (id INT PRIMARY KEY, title VARCHAR(255), body MEDIUMTEXT) \
             CHARACTER SET utf8mb4;
             CREATE TABLE `{db}`.cache (cid INT PRIMARY KEY, data LONGBLOB);
             CREATE TABLE `{db}`.node_log (id INT AUTO_INCREMENT PRIMARY KEY, nid INT);
"
        ),
    )
    .await;
    // Routines are the site's own, made by its user (the definer may show them).
    let mut own = MySqlConnection::connect_with(
        &sqlx::mysql::MySqlConnectOptions::new()
            .host("127.0.0.1")
            .port(port())
            .username(db)
            .password(password)
            .database(db),
    )
    .await
    .unwrap();
    exec(
        &mut own,
        "CREATE PROCEDURE node_count() SELECT COUNT(*) FROM node;
         CREATE TRIGGER node_ai AFTER INSERT ON node FOR EACH ROW \
           INSERT INTO node_log (nid) VALUES (NEW.id);",
    )
    .await;
    own.close().await.unwrap();
    for i in 0..50 {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO `{db}`.node VALUES (?, ?, ?)"
        )))
        .bind(i)
        .bind(format!(
            "Ünïcödé titel {i} — 日本語 🚀 'quoted' \"double\" \\ back"
        ))
        .bind("Lorem ipsum dolor sit amet, ✓ çà et là. ".repeat(200 + i as usize))
        .execute(&mut *admin)
        .await
        .unwrap();
    }
    let rows = (blob_kb / 64).max(4);
    for i in 0..rows {
        let mut data: Vec<u8> = (0..=255u8).collect();
        data.extend((0..64 * 1024 - 256).map(|_| rand::random::<u8>()));
        data.extend_from_slice(b"\0\\'\"\n\r\x1a");
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO `{db}`.cache VALUES (?, ?)"
        )))
        .bind(i as i32)
        .bind(data)
        .execute(&mut *admin)
        .await
        .unwrap();
    }
}

/// Every row of the test tables, for comparison.
async fn rows(admin: &mut MySqlConnection, db: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for (t, key) in [("node", "id"), ("cache", "cid"), ("node_log", "id")] {
        let rs = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT CAST({key} AS CHAR) AS k, CAST(CONCAT_WS(0x1f, {}) AS BINARY) AS v \
             FROM `{db}`.{t} ORDER BY {key}",
            match t {
                "node" => "id, title, body",
                "cache" => "cid, data",
                _ => "id, nid",
            }
        )))
        .fetch_all(&mut *admin)
        .await
        .unwrap();
        for r in rs {
            out.push((format!("{t}/{}", r.get::<String, _>("k")), r.get("v")));
        }
    }
    out
}

/// A settings.php with cloaked credentials, as the http worker writes it (the parts the
/// backup reads: `$_SERVER['db_…'] ?? '…'` expressions, and a hash salt it keeps).
fn settings_php(uri: &str, hash_salt: &str) -> String {
    format!(
        "<?php\n\
         // Written by berth for {uri}: a verify rewrites it.\n\
         $databases['default']['default'] = array(\n\
         \x20 'driver' => $_SERVER['db_type'] ?? 'mysql',\n\
         \x20 'database' => $_SERVER['db_name'] ?? '',\n\
         \x20 'username' => $_SERVER['db_user'] ?? '',\n\
         \x20 'password' => $_SERVER['db_passwd'] ?? '',\n\
         \x20 'host' => $_SERVER['db_host'] ?? '',\n\
         \x20 'port' => $_SERVER['db_port'] ?? '',\n\
         \x20 'prefix' => '',\n\
         );\n\
         $settings['hash_salt'] = '{hash_salt}';\n\
         $settings['file_public_path'] = 'sites/{uri}/files';\n"
    )
}

/// A platform root with a site directory: nested files (a few MB, text and binary), a
/// symlink, the marker and a cloaked settings.php as the http worker writes it.
fn make_site(root: &Path) -> PathBuf {
    let site = root.join("sites").join(URI);
    for d in ["files/styles/thumb", "files/inline-images", "private/tmp"] {
        std::fs::create_dir_all(site.join(d)).unwrap();
    }
    std::fs::write(site.join(".berth-site"), format!("{URI}\n")).unwrap();
    std::fs::write(site.join("settings.php"), settings_php(URI, "salt-123")).unwrap();
    std::fs::set_permissions(
        site.join("settings.php"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    for i in 0..20 {
        std::fs::write(
            site.join(format!("files/styles/thumb/page-{i}.html")),
            format!("<p>page {i} — ünïcode</p>\n").repeat(500 + i * 100),
        )
        .unwrap();
    }
    for i in 0..3 {
        let data: Vec<u8> = (0..1_000_000 + i * 7)
            .map(|_| rand::random::<u8>())
            .collect();
        std::fs::write(
            site.join(format!("files/inline-images/photo-{i}.jpg")),
            data,
        )
        .unwrap();
    }
    std::fs::write(site.join("private/tmp/secret.txt"), "private data\n").unwrap();
    std::fs::write(site.join("files/empty.txt"), "").unwrap();
    std::os::unix::fs::symlink("styles/thumb", site.join("files/thumbs")).unwrap();
    site
}

fn backup_args(root: &Path, db: &TestDb, file: &str, compression: &str) -> SiteBackupSpec {
    SiteBackupSpec {
        site: SiteSpec {
            uri: URI.into(),
            aliases: vec![],
            redirection: false,
            profile: "standard".into(),
            language: "en".into(),
            client_email: None,
            platform: "platform".into(),
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
                service_type: "mysql".into(),
                host: "127.0.0.1".into(),
                port: port(),
                admin_user: "root".into(),
                name: db.name.clone(),
                user: db.name.clone(),
                grant_hosts: vec!["%".into()],
            },
            web_host: "localhost".into(),
            stash: false,
        },
        backup: BackupOrder {
            file: file.into(),
            compression: Compression::parse(compression).expect("zstd or gzip"),
            description: "test".into(),
        },
        files_may_be_gone: false,
    }
}

fn extract_args(path: impl Into<PathBuf>, target: &Path, db: ExtractDb) -> ExtractSpec {
    ExtractSpec {
        source: BackupSource::Path(path.into().display().to_string()),
        target_dir: target.display().to_string(),
        db,
    }
}

fn quiet(_: String) {}

/// Relative path → contents (files) or link target (symlinks), under `dir`.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn go(base: &Path, d: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(base).unwrap().display().to_string();
            let ft = e.file_type().unwrap();
            if ft.is_symlink() {
                let t = std::fs::read_link(&p).unwrap();
                out.insert(format!("{rel} ->"), t.display().to_string().into_bytes());
            } else if ft.is_dir() {
                out.insert(format!("{rel}/"), Vec::new());
                go(base, &p, out);
            } else {
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    go(dir, dir, &mut out);
    out
}

/// The tarball's entries: path → contents.
fn tar_entries(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let f = std::fs::File::open(path).unwrap();
    let r: Box<dyn Read> = if path.extension().unwrap() == "zst" {
        Box::new(zstd::stream::read::Decoder::new(f).unwrap())
    } else {
        Box::new(flate2::read::GzDecoder::new(f))
    };
    let mut a = tar::Archive::new(r);
    let mut out = BTreeMap::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let p = e.path().unwrap().display().to_string();
        let mut v = Vec::new();
        e.read_to_end(&mut v).unwrap();
        out.insert(p, v);
    }
    out
}

fn sha256_of(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

#[tokio::test]
async fn backup_zstd_and_gzip_then_extract_reproduces_files_and_rows() {
    let mut admin = admin().await;
    let db = TestDb::create(&mut admin).await;
    fill(&mut admin, &db.name, &db.password, 1024).await;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("platform");
    let site = make_site(&root);
    let backups = tmp.path().join("backups");
    let a = Archiver::new(&backups, "mariadb-dump", "mariadb");
    let lines = std::sync::Mutex::new(Vec::new());
    let log = |l: String| lines.lock().unwrap().push(l);

    let mut outputs = Vec::new();
    for compression in ["zstd", "gzip"] {
        let file = format!("{URI}-20250101T000000Z-{compression}");
        let out = backup_site(
            &a,
            &backup_args(&root, &db, &file, compression),
            &db.password,
            &log,
        )
        .await
        .unwrap();
        let path = PathBuf::from(&out.path);
        assert_eq!(path.parent().unwrap(), backups);
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{compression}");
        assert_eq!(meta.len(), out.size);
        assert_eq!(sha256_of(&path), out.sha256);
        assert_eq!(out.compression.as_str(), compression);
        assert!(out.file.ends_with(if compression == "zstd" {
            ".tar.zst"
        } else {
            ".tar.gz"
        }));
        // Only the tarball is left in the backups directory.
        let left: Vec<_> = std::fs::read_dir(&backups)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(left.is_empty(), "temp files left: {left:?}");

        let entries = tar_entries(&path);
        let originals = tree(&site);
        for (rel, contents) in &originals {
            if rel == "settings.php" {
                continue;
            }
            if let Some(dir) = rel.strip_suffix('/') {
                assert!(
                    entries.contains_key(dir) || entries.contains_key(rel),
                    "{rel}"
                );
            } else if let Some(link) = rel.strip_suffix(" ->") {
                assert!(entries.contains_key(link), "{link}");
            } else {
                assert_eq!(entries.get(rel.as_str()), Some(contents), "{rel}");
            }
        }
        let sql = String::from_utf8_lossy(&entries["database.sql"]).to_string();
        assert!(
            sql.contains("CREATE TABLE `cache`"),
            "dump holds the tables"
        );
        assert!(sql.contains("node_ai"), "dump holds the trigger");
        assert!(sql.contains("node_count"), "dump holds the procedure");
        let settings = String::from_utf8(entries["settings.php"].clone()).unwrap();
        assert!(!settings.contains("$_SERVER['db_"), "{settings}");
        assert!(settings.contains(&format!("'password' => '{}'", db.password)));
        assert!(settings.contains(&format!("'database' => '{}'", db.name)));
        assert!(settings.contains(&format!("'username' => '{}'", db.name)));
        assert!(settings.contains("'host' => '127.0.0.1'"));
        assert!(settings.contains("$settings['hash_salt'] = 'salt-123';"));
        outputs.push(out);
    }
    let lines = lines.into_inner().unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("MB/s") && l.contains("sha256")),
        "{lines:?}"
    );
    assert!(
        lines.iter().all(|l| !l.contains(&db.password)),
        "the log never shows it"
    );

    // Restore both into fresh databases and directories.
    let want_rows = rows(&mut admin, &db.name).await;
    for out in &outputs {
        let target_db = TestDb::create(&mut admin).await;
        let target = tmp
            .path()
            .join(format!("restored-{}", out.compression.as_str()));
        let got = extract_backup(
            &a,
            &extract_args(&out.path, &target, target_db.target()),
            &target_db.password,
            &quiet,
        )
        .await
        .unwrap();
        assert_eq!(got.database, target_db.name);
        assert!(got.sql_bytes > 1_000_000);
        assert_eq!(
            std::fs::metadata(&target).unwrap().permissions().mode() & 0o777,
            0o755
        );
        let mut restored = tree(&target);
        let marker = restored.remove(EXTRACT_MARKER).expect("marker");
        assert!(marker.starts_with(b"done "));
        assert!(
            !restored.contains_key("settings.php"),
            "plain settings.php left out"
        );
        assert!(!restored.contains_key("database.sql"));
        let mut originals = tree(&site);
        originals.remove("settings.php");
        assert_eq!(restored, originals, "files byte for byte");
        assert_eq!(
            std::fs::metadata(target.join("private/tmp/secret.txt"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            std::fs::metadata(site.join("private/tmp/secret.txt"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        );
        assert_eq!(rows(&mut admin, &target_db.name).await, want_rows, "rows");
        // A redelivered extract reports the finished work.
        let again = extract_backup(
            &a,
            &extract_args(&out.path, &target, target_db.target()),
            &target_db.password,
            &quiet,
        )
        .await
        .unwrap();
        assert_eq!(again, got);
        target_db.drop_all(&mut admin).await;
    }
    db.drop_all(&mut admin).await;
}

#[tokio::test]
async fn the_password_never_shows_in_ps_while_the_dump_runs() {
    let mut admin = admin().await;
    let db = TestDb::create(&mut admin).await;
    fill(&mut admin, &db.name, &db.password, 4096).await;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("platform");
    make_site(&root);
    // The dump program, slowed so that the samples surely see it with its arguments.
    let slow = tmp.path().join("slow-dump");
    std::fs::write(&slow, "#!/bin/sh\nsleep 0.5\nexec mariadb-dump \"$@\"\n").unwrap();
    std::fs::set_permissions(&slow, std::fs::Permissions::from_mode(0o755)).unwrap();
    let a = Archiver::new(
        tmp.path().join("backups"),
        slow.display().to_string(),
        "mariadb",
    );

    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let out = std::process::Command::new("ps")
                    .args(["-eo", "args"])
                    .output()
                    .unwrap();
                seen.push(String::from_utf8_lossy(&out.stdout).to_string());
            }
            seen
        })
    };
    let out = backup_site(
        &a,
        &backup_args(&root, &db, &format!("{URI}-20250101T000000Z"), "zstd"),
        &db.password,
        &quiet,
    )
    .await
    .unwrap();
    stop.store(true, Ordering::Relaxed);
    let samples = sampler.join().unwrap();
    let dump_lines: Vec<&str> = samples
        .iter()
        .flat_map(|s| s.lines())
        .filter(|l| l.contains("--defaults-extra-file="))
        .collect();
    assert!(
        !dump_lines.is_empty(),
        "{} samples never saw the dump",
        samples.len()
    );
    assert!(
        dump_lines.iter().any(|l| l.contains("mariadb-dump")),
        "the real dump was sampled too: {dump_lines:?}"
    );
    for s in &samples {
        assert!(!s.contains(&db.password), "the password shows in ps");
    }
    // The option file's directory is gone.
    let cnf = dump_lines[0]
        .split_whitespace()
        .find_map(|w| w.strip_prefix("--defaults-extra-file="))
        .unwrap();
    assert!(!Path::new(cnf).exists(), "{cnf} removed");
    assert!(!Path::new(cnf).parent().unwrap().exists());
    assert!(out.size > 4_000_000);
    db.drop_all(&mut admin).await;
}

#[tokio::test]
async fn a_redelivered_backup_writes_nothing_twice() {
    let mut admin = admin().await;
    let db = TestDb::create(&mut admin).await;
    fill(&mut admin, &db.name, &db.password, 256).await;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("platform");
    make_site(&root);
    let a = Archiver::new(tmp.path().join("backups"), "mariadb-dump", "mariadb");
    let args = backup_args(&root, &db, &format!("{URI}-20250101T000000Z"), "zstd");
    let first = backup_site(&a, &args, &db.password, &quiet).await.unwrap();
    let m1 = std::fs::metadata(&first.path).unwrap();
    // The database changes in between: a second dump would make another file.
    exec(
        &mut admin,
        &format!("INSERT INTO `{}`.node VALUES (999, 'x', 'y')", db.name),
    )
    .await;
    // The first attempt died after putting its file in place, before removing its private
    // directory (the dump and the password's option file).
    let leftover = tmp
        .path()
        .join("backups")
        .join(format!(".{URI}-20250101T000000Z.berth-tmp"));
    std::fs::create_dir_all(&leftover).unwrap();
    std::fs::write(leftover.join("my.cnf"), "[client]\npassword=x\n").unwrap();
    let lines = std::sync::Mutex::new(Vec::new());
    let second = backup_site(&a, &args, &db.password, &|l| lines.lock().unwrap().push(l))
        .await
        .unwrap();
    let m2 = std::fs::metadata(&second.path).unwrap();
    assert_eq!(first, second);
    assert_eq!(
        (m1.ino(), m1.mtime_nsec(), m1.mtime()),
        (m2.ino(), m2.mtime_nsec(), m2.mtime())
    );
    let lines = lines.into_inner().unwrap();
    assert!(
        lines.iter().any(|l| l.contains("earlier attempt")),
        "{lines:?}"
    );
    assert!(!lines.iter().any(|l| l.contains("dumping")), "{lines:?}");
    assert!(
        !leftover.exists(),
        "the dead attempt's private directory stays"
    );
    db.drop_all(&mut admin).await;
}

#[tokio::test]
async fn unreachable_mariadb_is_transient_and_bad_args_permanent() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("platform");
    let db = TestDb {
        name: "bk_nowhere".into(),
        password: "abc".into(),
    };
    make_site(&root);
    let a = Archiver::new(tmp.path().join("backups"), "mariadb-dump", "mariadb");
    let mut args = backup_args(&root, &db, "x-20250101T000000Z", "zstd");
    args.site.db.port = 1;
    let e = backup_site(&a, &args, "abc", &quiet).await.unwrap_err();
    assert!(matches!(e, BackupError::Transient(_)), "{e:?}");
    assert!(
        !tmp.path()
            .join("backups/x-20250101T000000Z.tar.zst")
            .exists()
    );
    // Wrong password: access denied is permanent.
    let mut admin = admin().await;
    let real = TestDb::create(&mut admin).await;
    let args = backup_args(&root, &real, "y-20250101T000000Z", "zstd");
    let e = backup_site(&a, &args, "wrong", &quiet).await.unwrap_err();
    assert!(matches!(e, BackupError::Permanent(_)), "{e:?}");
    real.drop_all(&mut admin).await;
    for file in ["../etc/passwd", ".hidden"] {
        let args = backup_args(&root, &db, file, "zstd");
        let e = backup_site(&a, &args, "abc", &quiet).await.unwrap_err();
        assert!(e.is_permanent(), "{file}: {e:?}");
    }
    // An unknown compression does not make a step at all.
    let mut v =
        serde_json::to_value(backup_args(&root, &db, "z-20250101T000000Z", "zstd")).unwrap();
    v["backup"]["compression"] = json!("xz");
    assert!(serde_json::from_value::<SiteBackupSpec>(v).is_err());
    for bad in [
        |a: &mut SiteBackupSpec| a.site.db.name = "x`; DROP".into(),
        |a: &mut SiteBackupSpec| a.site.db.user = "x'@'%".into(),
        |a: &mut SiteBackupSpec| a.site.db.host = "evil host;".into(),
        |a: &mut SiteBackupSpec| a.site.db.port = 0,
        |a: &mut SiteBackupSpec| a.site.uri = "../etc".into(),
        |a: &mut SiteBackupSpec| a.site.root = "relative/root".into(),
        |a: &mut SiteBackupSpec| a.site.root = "/var/aegir/../etc".into(),
    ] {
        let mut args = backup_args(&root, &db, "z-20250101T000000Z", "zstd");
        bad(&mut args);
        let e = backup_site(&a, &args, "abc", &quiet).await.unwrap_err();
        assert!(e.is_permanent(), "{args:?}: {e:?}");
    }
}

#[test]
fn backup_delete_refuses_anything_but_a_file_in_the_backups_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let backups = tmp.path().join("backups");
    std::fs::create_dir_all(backups.join("sub")).unwrap();
    std::fs::write(backups.join("sub/inner.tar.zst"), "x").unwrap();
    std::fs::write(tmp.path().join("outside.tar.zst"), "x").unwrap();
    std::fs::write(backups.join("site.tar.zst"), "x").unwrap();
    std::os::unix::fs::symlink(
        tmp.path().join("outside.tar.zst"),
        backups.join("link.tar.zst"),
    )
    .unwrap();
    let a = Archiver::new(&backups, "mariadb-dump", "mariadb");
    let b = backups.display().to_string();
    for bad in [
        tmp.path().join("outside.tar.zst").display().to_string(),
        format!("{b}/../outside.tar.zst"),
        format!("{b}/sub/inner.tar.zst"),
        format!("{b}/sub"),
        format!("{b}/link.tar.zst"),
        "/etc/passwd".to_string(),
        "relative.tar.zst".to_string(),
        b.clone(),
    ] {
        let e = delete_backup(&a, &BackupDeleteSpec { path: bad.clone() }, &quiet).unwrap_err();
        assert!(e.is_permanent(), "{bad}: {e:?}");
    }
    assert!(tmp.path().join("outside.tar.zst").exists());
    assert!(backups.join("sub/inner.tar.zst").exists());
    let site = BackupDeleteSpec {
        path: format!("{b}/site.tar.zst"),
    };
    let out = delete_backup(&a, &site, &quiet).unwrap();
    assert!(out.deleted);
    assert_eq!(out.path, site.path);
    assert!(!backups.join("site.tar.zst").exists());
    let out = delete_backup(&a, &site, &quiet).unwrap();
    assert!(!out.deleted, "absent is success");
}

#[test]
fn a_backup_named_by_its_file_is_found_in_the_backups_dir_only() {
    let tmp = tempfile::tempdir().unwrap();
    let backups = tmp.path().join("backups");
    std::fs::create_dir_all(&backups).unwrap();
    std::fs::write(backups.join("site-20250101T000000Z.tar.gz"), "x").unwrap();
    std::fs::write(tmp.path().join("outside.tar.zst"), "x").unwrap();
    let a = Archiver::new(&backups, "mariadb-dump", "mariadb");
    assert_eq!(
        berth_backup::backup_file(&a, "site-20250101T000000Z").unwrap(),
        backups.join("site-20250101T000000Z.tar.gz")
    );
    for bad in ["", "../outside", ".hidden", "sub/site", "missing"] {
        let e = berth_backup::backup_file(&a, bad).unwrap_err();
        assert!(e.is_permanent(), "{bad}: {e:?}");
    }
    // A source path must be absolute and plain, as must the target directory.
    let db = ExtractDb {
        host: "127.0.0.1".into(),
        port: port(),
        name: "bk_never".into(),
        user: "bk_never".into(),
    };
    let good = backups.join("site-20250101T000000Z.tar.gz");
    for (source, target) in [
        (
            BackupSource::Path("relative.tar.gz".into()),
            "/tmp/x".to_string(),
        ),
        (
            BackupSource::Path(format!("{}/../outside.tar.zst", backups.display())),
            "/tmp/x".into(),
        ),
        (BackupSource::File("../outside".into()), "/tmp/x".into()),
        (
            BackupSource::Path(good.display().to_string()),
            "/tmp/../etc".into(),
        ),
        (
            BackupSource::Path(good.display().to_string()),
            "site".into(),
        ),
    ] {
        let spec = ExtractSpec {
            source,
            target_dir: target,
            db: db.clone(),
        };
        let e = berth_backup::ExtractArgs::parse(&a, &spec).unwrap_err();
        assert!(e.is_permanent(), "{spec:?}: {e:?}");
    }
}

/// A gzip tarball with one entry whose raw name (or link target) is written as given,
/// bypassing the tar crate's own checks.
fn evil_tarball(path: &Path, name: &str, kind: tar::EntryType, link: Option<&str>) {
    let f = std::fs::File::create(path).unwrap();
    let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
        f,
        flate2::Compression::fast(),
    ));
    let mut ok = tar::Header::new_gnu();
    ok.set_path("files/fine.txt").unwrap();
    ok.set_size(3);
    ok.set_mode(0o644);
    ok.set_cksum();
    b.append(&ok, &b"ok\n"[..]).unwrap();
    let mut h = tar::Header::new_old();
    {
        let old = h.as_old_mut();
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(l) = link {
            old.linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
    }
    h.set_entry_type(kind);
    h.set_mode(0o644);
    let body: &[u8] = if kind.is_file() { b"evil\n" } else { b"" };
    h.set_size(body.len() as u64);
    h.set_cksum();
    b.append(&h, body).unwrap();
    b.into_inner().unwrap().finish().unwrap();
}

#[tokio::test]
async fn backup_extract_refuses_entries_that_escape() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Archiver::new(tmp.path().join("backups"), "mariadb-dump", "mariadb");
    let db = ExtractDb {
        host: "127.0.0.1".into(),
        port: port(),
        name: "bk_never".into(),
        user: "bk_never".into(),
    };
    let cases = [
        ("../evil", tar::EntryType::Regular, None),
        ("files/../../evil", tar::EntryType::Regular, None),
        ("/tmp/berth-evil-abs", tar::EntryType::Regular, None),
        ("files/link", tar::EntryType::Symlink, Some("/etc")),
        ("files/link", tar::EntryType::Symlink, Some("../../evil")),
        ("files/hard", tar::EntryType::Link, Some("../evil")),
    ];
    for (i, (name, kind, link)) in cases.into_iter().enumerate() {
        let tarball = tmp.path().join(format!("evil-{i}.tar.gz"));
        evil_tarball(&tarball, name, kind, link);
        let target = tmp.path().join(format!("out-{i}/site"));
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        let e = extract_backup(
            &a,
            &extract_args(&tarball, &target, db.clone()),
            "pw",
            &quiet,
        )
        .await
        .unwrap_err();
        assert!(e.is_permanent(), "{name}: {e:?}");
        assert!(e.to_string().contains("refused"), "{name}: {e}");
        assert!(!tmp.path().join(format!("out-{i}/evil")).exists(), "{name}");
        assert!(!tmp.path().join("evil").exists(), "{name}");
    }
    assert!(!Path::new("/tmp/berth-evil-abs").exists());
    // Not a tarball at all.
    let junk = tmp.path().join("junk.tar.zst");
    std::fs::write(&junk, [0x28, 0xb5, 0x2f, 0xfd, 1, 2, 3, 4, 5]).unwrap();
    let e = extract_backup(
        &a,
        &extract_args(&junk, &tmp.path().join("junk-out"), db.clone()),
        "pw",
        &quiet,
    )
    .await
    .unwrap_err();
    assert!(e.is_permanent(), "{e:?}");
    // A directory that berth did not unpack is never touched.
    let existing = tmp.path().join("existing");
    std::fs::create_dir(&existing).unwrap();
    std::fs::write(existing.join("keep.txt"), "keep").unwrap();
    let e = extract_backup(
        &a,
        &extract_args(&junk, &existing, db.clone()),
        "pw",
        &quiet,
    )
    .await
    .unwrap_err();
    assert!(
        e.is_permanent() && e.to_string().contains("refused"),
        "{e:?}"
    );
    assert!(existing.join("keep.txt").exists());
}

#[tokio::test]
async fn backup_extract_starts_over_after_an_unfinished_attempt() {
    let mut admin = admin().await;
    let db = TestDb::create(&mut admin).await;
    fill(&mut admin, &db.name, &db.password, 128).await;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("platform");
    let site = make_site(&root);
    let a = Archiver::new(tmp.path().join("backups"), "mariadb-dump", "mariadb");
    let out = backup_site(
        &a,
        &backup_args(&root, &db, &format!("{URI}-20250101T000000Z"), "zstd"),
        &db.password,
        &quiet,
    )
    .await
    .unwrap();
    let target_db = TestDb::create(&mut admin).await;
    let target = tmp.path().join("restored");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join(EXTRACT_MARKER), "unpacking earlier\n").unwrap();
    std::fs::write(target.join("half-written.bin"), "junk").unwrap();
    extract_backup(
        &a,
        &extract_args(&out.path, &target, target_db.target()),
        &target_db.password,
        &quiet,
    )
    .await
    .unwrap();
    assert!(!target.join("half-written.bin").exists());
    let mut restored = tree(&target);
    restored.remove(EXTRACT_MARKER);
    let mut originals = tree(&site);
    originals.remove("settings.php");
    assert_eq!(restored, originals);
    assert_eq!(
        rows(&mut admin, &target_db.name).await,
        rows(&mut admin, &db.name).await
    );
    target_db.drop_all(&mut admin).await;
    db.drop_all(&mut admin).await;
}

#[test]
fn definer_clauses_are_dropped_for_the_importing_user() {
    let cases = [
        (
            "/*!50003 CREATE*/ /*!50017 DEFINER=`bk_1`@`%`*/ /*!50003 TRIGGER node_ai AFTER INSERT ON node FOR EACH ROW INSERT INTO node_log (nid) VALUES (NEW.id) */;;\n",
            "/*!50003 CREATE*/ /*!50017 */ /*!50003 TRIGGER node_ai AFTER INSERT ON node FOR EACH ROW INSERT INTO node_log (nid) VALUES (NEW.id) */;;\n",
        ),
        (
            "CREATE DEFINER=`bk_1`@`127.0.0.1` PROCEDURE `node_count`()\n",
            "CREATE PROCEDURE `node_count`()\n",
        ),
        (
            "/*!50013 DEFINER=`we``ird`@`localhost` SQL SECURITY DEFINER */\n",
            "/*!50013 SQL SECURITY DEFINER */\n",
        ),
        (
            "CREATE DEFINER=CURRENT_USER FUNCTION f()\n",
            "CREATE FUNCTION f()\n",
        ),
    ];
    for (i, o) in cases {
        assert_eq!(
            String::from_utf8(berth_backup::strip_definers(i.as_bytes())).unwrap(),
            o
        );
    }
}
