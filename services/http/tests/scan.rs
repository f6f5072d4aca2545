//! The platform walk on the fixture codebases (tests/fixtures/platforms) and on odd trees.

use berth_contracts::{Package, PackageType};
use berth_http::scan::{MAX_FILE_BYTES, ScanIoError, scan_platform, sites_in};
use berth_package_scan::ScanError;
use std::fs;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/platforms")
        .join(name)
}

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir =
            std::env::temp_dir().join(format!("berth-scan-{tag}-{}-{nanos}", std::process::id()));
        fs::create_dir_all(&dir).expect("scratch dir");
        Self(dir)
    }

    fn write(&self, rel: &str, text: &str) {
        let p = self.0.join(rel);
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(p, text).expect("write");
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// (type, name, version, schema, path) of a package.
type Summary<'a> = (PackageType, &'a str, Option<&'a str>, Option<i64>, &'a str);

fn summary(packages: &[Package]) -> Vec<Summary<'_>> {
    packages
        .iter()
        .map(|p| {
            (
                p.package_type,
                p.name.as_str(),
                p.version.as_deref(),
                p.schema_version,
                p.path.as_str(),
            )
        })
        .collect()
}

fn package<'a>(packages: &'a [Package], name: &str) -> &'a Package {
    packages
        .iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("no {name}"))
}

#[tokio::test]
async fn scans_the_drupal7_fixture() {
    use PackageType::*;
    let scan = scan_platform(&fixture("drupal7")).await.expect("scan");
    assert_eq!(scan.drupal_major, 7);
    assert_eq!(scan.core_version, "7.98");
    assert_eq!(
        summary(&scan.packages),
        [
            (Core, "drupal", Some("7.98"), None, ""),
            (Profile, "broken", Some("7.98"), None, "profiles/broken"),
            (Profile, "minimal", Some("7.98"), None, "profiles/minimal"),
            (Profile, "standard", Some("7.98"), None, "profiles/standard"),
            (Module, "block", Some("7.98"), Some(7009), "modules/block"),
            (
                Module,
                "ctools",
                Some("7.x-1.21"),
                Some(7003),
                "sites/all/modules/ctools"
            ),
            (Module, "filter", Some("7.98"), Some(7010), "modules/filter"),
            (Module, "node", Some("7.98"), Some(7015), "modules/node"),
            (Module, "path", Some("7.98"), None, "modules/path"),
            (Module, "system", Some("7.98"), Some(7085), "modules/system"),
            (Module, "user", Some("7.98"), Some(7019), "modules/user"),
            (
                Module,
                "views",
                Some("7.x-3.29"),
                Some(7302),
                "sites/all/modules/views"
            ),
            (Theme, "bartik", Some("7.98"), None, "themes/bartik"),
        ]
    );
    let standard = package(&scan.packages, "standard");
    assert_eq!(standard.languages, ["en", "de", "fr"]);
    assert_eq!(standard.title.as_deref(), Some("Standard"));
    assert_eq!(package(&scan.packages, "minimal").languages, ["en"]);
    assert_eq!(
        package(&scan.packages, "views").title.as_deref(),
        Some("Views")
    );
    assert!(scan.warnings.is_empty(), "{:?}", scan.warnings);
}

#[tokio::test]
async fn scans_the_drupal10_fixture() {
    // Drupal 8 and later record a package without update functions at schema 8000
    // (CORE_MINIMUM_SCHEMA_VERSION), not none.
    use PackageType::*;
    let scan = scan_platform(&fixture("drupal10")).await.expect("scan");
    assert_eq!(scan.drupal_major, 10);
    assert_eq!(scan.core_version, "10.3.1");
    assert_eq!(
        summary(&scan.packages),
        [
            (Core, "drupal", Some("10.3.1"), None, ""),
            (
                Profile,
                "berth_custom",
                None,
                Some(10001),
                "profiles/berth_custom"
            ),
            (Profile, "broken", None, Some(8000), "profiles/broken"),
            (
                Profile,
                "minimal",
                Some("10.3.1"),
                Some(8000),
                "core/profiles/minimal"
            ),
            (
                Profile,
                "standard",
                Some("10.3.1"),
                Some(8000),
                "core/profiles/standard"
            ),
            (
                Module,
                "block",
                Some("10.3.1"),
                Some(10100),
                "core/modules/block"
            ),
            (
                Module,
                "filter",
                Some("10.3.1"),
                Some(8000),
                "core/modules/filter"
            ),
            (
                Module,
                "node",
                Some("10.3.1"),
                Some(10101),
                "core/modules/node"
            ),
            (
                Module,
                "path",
                Some("10.3.1"),
                Some(8000),
                "core/modules/path"
            ),
            (
                Module,
                "path_alias",
                Some("10.3.1"),
                Some(8000),
                "core/modules/path_alias"
            ),
            (
                Module,
                "pathauto",
                Some("8.x-1.12"),
                Some(8108),
                "modules/contrib/pathauto"
            ),
            (
                Module,
                "system",
                Some("10.3.1"),
                Some(10201),
                "core/modules/system"
            ),
            (
                Module,
                "token",
                Some("8.x-1.14"),
                Some(8002),
                "modules/contrib/token"
            ),
            (
                Module,
                "user",
                Some("10.3.1"),
                Some(10000),
                "core/modules/user"
            ),
            (
                Theme,
                "olivero",
                Some("10.3.1"),
                None,
                "core/themes/olivero"
            ),
        ]
    );
    assert_eq!(
        package(&scan.packages, "standard").languages,
        ["en", "de", "fr"]
    );
    let custom = package(&scan.packages, "berth_custom");
    assert_eq!(custom.old_short_name.as_deref(), Some("berth_legacy"));
    assert_eq!(custom.languages, ["en"]);
    assert!(scan.warnings.is_empty(), "{:?}", scan.warnings);
}

#[tokio::test]
async fn the_walk_skips_what_it_must() {
    let s = Scratch::new("skips");
    s.write(
        "includes/bootstrap.inc",
        "<?php define('VERSION', '7.100');",
    );
    s.write(
        "sites/all/modules/real/real.info",
        "name = Real\nversion = 7.x-1.0\n",
    );
    for skipped in [
        ".git/modules/a/a.info",
        "modules/.hg/b/b.info",
        "sites/all/modules/x/node_modules/c/c.info",
        "sites/all/modules/x/vendor/d/d.info",
        "sites/all/modules/x/tests/e/e.info",
        "sites/default/files/f/modules/f.info",
        "sites/example.com/modules/g/g.info",
        "sites/example.com/private/h.info",
    ] {
        s.write(skipped, "name = Skipped\n");
    }
    // A symbolic link to a directory (elsewhere) and to a file: neither is followed.
    let elsewhere = Scratch::new("elsewhere");
    elsewhere.write("linked/linked.info", "name = Linked\n");
    std::os::unix::fs::symlink(
        elsewhere.0.join("linked"),
        s.0.join("sites/all/modules/linked"),
    )
    .expect("symlink");
    std::os::unix::fs::symlink(
        elsewhere.0.join("linked/linked.info"),
        s.0.join("sites/all/modules/real/other.info"),
    )
    .expect("symlink");
    // A loop.
    std::os::unix::fs::symlink(&s.0, s.0.join("themes")).expect("symlink");
    // Too big to read.
    let mut big = String::from("name = Big\n");
    big.push_str(&"; padding\n".repeat((MAX_FILE_BYTES as usize / 10) + 1));
    s.write("sites/all/modules/big/big.info", &big);
    // Not UTF-8: read anyway, lossily.
    let p = s.0.join("sites/all/modules/latin/latin.info");
    fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    fs::write(&p, b"name = Caf\xe9\nversion = 7.x-2.0\n").expect("write");

    let scan = scan_platform(&s.0).await.expect("scan");
    assert_eq!(scan.drupal_major, 7);
    assert_eq!(scan.core_version, "7.100");
    let names: Vec<&str> = scan.packages.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["drupal", "latin", "real"]);
    assert_eq!(
        package(&scan.packages, "latin").title.as_deref(),
        Some("Caf\u{fffd}")
    );
    assert!(
        scan.warnings
            .iter()
            .any(|w| w.contains("sites/all/modules/big/big.info") && w.contains("larger than")),
        "{:?}",
        scan.warnings
    );
}

#[tokio::test]
async fn errors_name_the_platform_and_the_problem() {
    let s = Scratch::new("notdrupal");
    s.write("index.php", "<?php");
    let err = scan_platform(&s.0).await.unwrap_err();
    assert!(
        matches!(
            err,
            ScanIoError::Scan {
                source: ScanError::NotDrupal,
                ..
            }
        ),
        "{err}"
    );
    let msg = err.to_string();
    assert!(msg.contains(&s.0.display().to_string()), "{msg}");
    assert!(
        msg.contains("no includes/bootstrap.inc or core/lib/Drupal.php"),
        "{msg}"
    );

    let missing = s.0.join("nowhere");
    let err = scan_platform(&missing).await.unwrap_err();
    assert!(matches!(err, ScanIoError::Root { .. }), "{err}");
    assert!(err.to_string().contains("nowhere"), "{err}");

    let err = scan_platform(&s.0.join("index.php")).await.unwrap_err();
    assert!(matches!(err, ScanIoError::NotADirectory { .. }), "{err}");
}

#[test]
fn sites_in_lists_site_directories_with_settings() {
    // The fixtures hold no site.
    assert!(sites_in(&fixture("drupal7")).is_empty());
    assert!(sites_in(&fixture("drupal10")).is_empty());

    let s = Scratch::new("sites");
    s.write("sites/default/settings.php", "<?php");
    s.write("sites/all/settings.php", "<?php");
    s.write("sites/b.example.com/settings.php", "<?php");
    s.write("sites/a.example.com/settings.php", "<?php");
    s.write("sites/nosettings.example.com/files/x", "");
    s.write("sites/.hidden/settings.php", "<?php");
    s.write("sites/sites.php", "<?php");
    fs::create_dir_all(s.0.join("sites/dir.example.com/settings.php")).expect("mkdir");
    std::os::unix::fs::symlink("a.example.com", s.0.join("sites/alias.example.com"))
        .expect("symlink");
    assert_eq!(sites_in(&s.0), ["a.example.com", "b.example.com"]);
    assert!(sites_in(&s.0.join("nowhere")).is_empty());
}
