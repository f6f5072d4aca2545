//! Sites on one platform are hostile to each other. Two sites, `a` (the attacker) and `b`
//! (the victim), are installed on one fixture platform; the attacker plants PHP and files
//! wherever a site can write and then tries, over HTTP through every host name and from its
//! own PHP, to run code with b's credentials, to read b's credentials, settings, files and
//! private files, and to reach b's database or berth's own databases and broker.
//!
//! Every probe is counted; the test prints how many were made and how many got through,
//! which must be none. A probe "gets through" when the answer carries a marker only the
//! forbidden thing holds (b's password, the planted code's output, a secret file's text),
//! so a probe cannot pass by accident of wording.

use berth_tests::{World, WorldOptions};
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::os::unix::fs::{PermissionsExt, chown, symlink};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What the planted PHP prints when it runs: its presence in an answer means it ran.
const RAN: &str = "PLANTED-PHP-RAN";

struct Site {
    uri: String,
    uid: u32,
    dir: PathBuf,
    db_name: String,
    db_user: String,
    password: String,
}

/// The attacker's findings: each probe, and what got through.
#[derive(Default)]
struct Probes {
    made: usize,
    through: Vec<String>,
}

impl Probes {
    fn check(&mut self, what: impl Into<String>, got_through: Option<String>) {
        self.made += 1;
        if let Some(how) = got_through {
            self.through.push(format!("{}: {how}", what.into()));
        }
    }
}

async fn site(w: &World, uri: &str) -> Site {
    let s = w
        .installed(json!({"uri": uri, "platform": "platform_d10", "profile": "standard"}))
        .await;
    let (uid, sealed): (i32, String) =
        sqlx::query_as("SELECT unix_uid, db_password_sealed FROM sites WHERE uri = $1")
            .bind(uri)
            .fetch_one(&w.store.pool)
            .await
            .unwrap();
    let key = berth_secrets::SecretKey::from_hex(&w.secret_hex).unwrap();
    Site {
        uri: uri.to_string(),
        uid: uid as u32,
        dir: w.dir.join("platforms/platform_d10/sites").join(uri),
        db_name: s["db_name"].as_str().unwrap().to_string(),
        db_user: s["db_user"].as_str().unwrap().to_string(),
        password: key.open(&sealed).unwrap(),
    }
}

/// Writes a file as the site's PHP would: owned by the site's user.
fn plant(path: &Path, text: &str, uid: u32) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
    chown(path, Some(uid), Some(uid)).unwrap();
}

/// The planted PHP: prints the marker and the credentials of whichever pool runs it.
fn planted_php() -> String {
    format!("<?php echo '{RAN} ', $_SERVER['db_user'] ?? '', ' ', $_SERVER['db_passwd'] ?? '';\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_site_cannot_reach_another_sites_secrets_code_files_or_berths_services() {
    let w = World::with_server(WorldOptions::web(false)).await;
    let root = w.copy_fixture("drupal10", "platform_d10").unwrap();
    w.create_platform("platform_d10", &root).await.unwrap();
    let a = site(&w, &format!("a.{}.test", w.id)).await;
    let b = site(&w, &format!("b.{}.test", w.id)).await;
    assert_ne!(a.uid, b.uid, "each site has a unix user of its own");

    // Both serve, each from its own database, through its own pool.
    for s in [&a, &b] {
        let (status, body) = w.page(&s.uri);
        assert_eq!(status, 200, "{body}");
        assert!(
            body.contains(&format!("Served from database {}", s.db_name)),
            "{body}"
        );
    }

    // What the victim holds, each with a marker of its own.
    let b_private = "B-PRIVATE-FILE-TEXT";
    let b_public = "B-PUBLIC-FILE-TEXT";
    plant(&b.dir.join("private/secret.txt"), b_private, b.uid);
    plant(&b.dir.join("files/public.txt"), b_public, b.uid);
    let b_settings = std::fs::read_to_string(b.dir.join("settings.php")).unwrap();
    let salt = b_settings
        .lines()
        .find_map(|l| l.strip_prefix("$settings['hash_salt'] = '"))
        .and_then(|r| r.strip_suffix("';"))
        .unwrap()
        .to_string();

    // What the attacker plants wherever it can write: PHP under other names and
    // extensions, a picture that is PHP, and links to the victim's files.
    let php = planted_php();
    for dir in [a.dir.join("files"), a.dir.join("private")] {
        for name in [
            "x.php", "x.PHP", "x.phtml", "x.php5", "x.phar", "x.pht", "x.php7", "x.inc", "x.jpg",
        ] {
            plant(&dir.join(name), &php, a.uid);
        }
        plant(&dir.join("sub/.hidden.php"), &php, a.uid);
    }
    // The victim's PHP, had the victim planted it itself (or been tricked into it).
    plant(&b.dir.join("files/x.php"), &php, b.uid);
    for (name, target) in [
        ("link-settings", b.dir.join("settings.php")),
        ("link-private", b.dir.join("private/secret.txt")),
        ("link-public", b.dir.join("files/public.txt")),
        ("link-b-dir", b.dir.clone()),
    ] {
        let link = a.dir.join("files").join(name);
        symlink(&target, &link).unwrap();
        std::os::unix::fs::lchown(&link, Some(a.uid), Some(a.uid)).unwrap();
    }

    let mut p = Probes::default();
    let secrets = [
        b.password.as_str(),
        b_private,
        salt.as_str(),
        RAN,
        "db_passwd",
        "<?php",
    ];
    let leaked = |body: &str| -> Option<String> {
        secrets
            .iter()
            .find(|s| body.contains(*s))
            .map(|s| format!("the answer holds `{}`", &s[..s.len().min(12)]))
    };

    // Over HTTP: every host name variant of both sites, every path a planted file or a
    // secret could be reached by.
    let (ua, ub) = (a.uri.as_str(), b.uri.as_str());
    let mut paths: Vec<String> = Vec::new();
    for site in [ua, ub] {
        for name in [
            "x.php", "x.PHP", "x.phtml", "x.php5", "x.phar", "x.pht", "x.php7", "x.inc",
        ] {
            paths.push(format!("/sites/{site}/files/{name}"));
            paths.push(format!("/sites/{site}/private/{name}"));
        }
        for tail in [
            "files/x.php/",
            "files/x.php/index.php",
            "files/x.jpg/index.php",
            "files/x.jpg/x.php",
            "files/x%2ephp",
            "files/x.ph%70",
            "files/x.php%00.jpg",
            "files/x.php.",
            "files/x.php%20",
            "files/sub/.hidden.php",
            "files/link-settings",
            "files/link-private",
            "files/link-b-dir/settings.php",
            "files/link-b-dir/private/secret.txt",
            "private/secret.txt",
            "settings.php",
            "settings.php~",
            ".berth-site",
        ] {
            paths.push(format!("/sites/{site}/{tail}"));
        }
        paths.push(format!("/sites/{site}/files/../settings.php"));
        paths.push(format!("/sites/{site}/files/..%2fsettings.php"));
        paths.push(format!("/sites/{site}/files/%2e%2e/settings.php"));
        paths.push(format!("/index.php/../sites/{site}/files/x.php"));
        paths.push(format!("/sites/{}/files/x.php", site.to_uppercase()));
    }
    for path in [
        "/files/x.php",
        "/files/x.php/index.php",
        "/files/link-settings",
        "/files/link-private",
        "/files/../sites/default/default.settings.php",
        "/vendor/bin/drush",
        "/core/lib/Drupal.php",
        "/core/modules/node/node.module",
        "/core/modules/node/node.install",
        "/core/modules/node/node.info.yml",
        "/sites/default/default.settings.php",
        "/composer.json",
        "/.git/config",
        "/index.php/",
    ] {
        paths.push(path.to_string());
    }
    let port = w.web.as_ref().unwrap().port;
    let hosts: Vec<String> = [ua, ub]
        .iter()
        .flat_map(|h| {
            [
                h.to_string(),
                format!("{h}:{port}"),
                format!("{h}."),
                h.to_uppercase(),
            ]
        })
        .collect();
    for host in &hosts {
        for path in &paths {
            let answer = w.http_get(host, path);
            let got = match answer {
                Ok((_, body, _)) => leaked(&body),
                Err(_) => None,
            };
            p.check(format!("GET {path} (Host: {host})"), got);
        }
    }
    // An absolute request line naming the victim while the Host header names the attacker
    // (and the other way round): PHP sees the host nginx chose the server by.
    for (line_host, header_host) in [(ub, ua), (ua, ub)] {
        for path in ["/", "/sites/x/files/x.php", "/files/x.php"] {
            let got = raw_get(port, &format!("http://{line_host}{path}"), header_host)
                .ok()
                .and_then(|body| leaked(&body));
            p.check(
                format!("GET http://{line_host}{path} (Host: {header_host})"),
                got,
            );
        }
    }

    // From the attacker's own PHP, as if its admin could run any code (Drupal 7's PHP
    // filter, a module of its own): a front controller of the platform (the platform's
    // owner put it there; here the test) runs what the site wrote in its private files.
    plant(
        &root.join("xmlrpc.php"),
        "<?php\n$h = preg_replace('/:\\d+$/', '', $_SERVER['HTTP_HOST']);\nrequire __DIR__ . \"/sites/$h/private/probe.php\";\n",
        0,
    );
    let mut probe = String::from("<?php\nheader('Content-Type: application/json');\n$r = [];\n");
    let _ = write!(
        probe,
        r#"$try = function ($name, $f) use (&$r) {{ set_error_handler(fn() => true); try {{ $v = $f(); }} catch (\Throwable $e) {{ $v = false; }} restore_error_handler(); $r[$name] = $v === false || $v === null || $v === '' || $v === [] ? 'blocked' : ('GOT: ' . substr(is_string($v) ? $v : json_encode($v), 0, 200)); }};
$b = '{bdir}';
$try('read b settings.php', fn() => file_get_contents("$b/settings.php"));
$try('read b settings.php (shell)', fn() => shell_exec("cat $b/settings.php 2>/dev/null"));
$try('read b private file', fn() => file_get_contents("$b/private/secret.txt"));
$try('read b private file (shell)', fn() => shell_exec("cat $b/private/secret.txt 2>/dev/null"));
$try('list b private', fn() => scandir("$b/private"));
$try('list b files (shell)', fn() => shell_exec("ls $b/files 2>/dev/null"));
$try('read b settings through a link', fn() => file_get_contents(__DIR__ . '/../files/link-settings'));
$try('write into b files', fn() => file_put_contents("$b/files/planted.php", 'x'));
$try('write into b site dir', fn() => file_put_contents("$b/local.settings.php", '<?php'));
$try('write into own site dir', fn() => file_put_contents(__DIR__ . '/../local.settings.php', '<?php'));
$try('write into the codebase', fn() => file_put_contents(__DIR__ . '/../../../planted.php', 'x'));
$try('read b vhost', fn() => file_get_contents('{vhost}'));
$try('read b vhost (shell)', fn() => shell_exec("cat {vhost} 2>/dev/null"));
$try('read the pools (shell)', fn() => shell_exec("cat {pools}/*.conf 2>/dev/null | grep -v '^;'"));
$try('b password in own environment', fn() => str_contains(json_encode($_SERVER) . json_encode(getenv()), '{bpw}') ? 'yes' : false);
$try('b password in any process environment (shell)', fn() => shell_exec("grep -l '{bpw}' /proc/[0-9]*/environ 2>/dev/null"));
$try('mysql root over tcp', fn() => new PDO('mysql:host=127.0.0.1;port=3306', 'root', ''));
$try('mysql root over the socket', fn() => new PDO('mysql:unix_socket=/run/mysqld/mysqld.sock', 'root', ''));
$try('mysql own user into b database', fn() => new PDO('mysql:host=127.0.0.1;port=3306;dbname={bdb}', $_SERVER['db_user'], $_SERVER['db_passwd']));
$try('mysql b user with own password', fn() => new PDO('mysql:host=127.0.0.1;port=3306', '{buser}', $_SERVER['db_passwd']));
$try('mysql list databases', fn() => (new PDO('mysql:host=127.0.0.1;port=3306', $_SERVER['db_user'], $_SERVER['db_passwd']))->query("SHOW DATABASES LIKE '{bdb}'")->fetchAll());
foreach (['postgresql' => 5432, 'rabbitmq' => 5672, 'rabbitmq management' => 15672, 'redis' => 6379, 'nats' => 4222, 'berth api' => {api_port}] as $what => $port) {{
  $try("connect to $what on 127.0.0.1:$port", fn() => fsockopen('127.0.0.1', $port, $en, $es, 2));
  $try("connect to $what on [::1]:$port", fn() => fsockopen('[::1]', $port, $en, $es, 2));
}}
$try('postgresql over its socket (shell)', fn() => shell_exec("psql -h /var/run/postgresql -U postgres -Atc 'select 1' postgres 2>/dev/null"));
$try('mariadb root over its socket (shell)', fn() => shell_exec("mariadb -uroot -N -e 'select 1' 2>/dev/null"));
$try('berth configuration', fn() => file_get_contents('/etc/berth/berth.toml'));
$try('running as root', fn() => function_exists('posix_getuid') && posix_getuid() === 0 ? 'root' : false);
$try('own uid is not {uid}', fn() => function_exists('posix_getuid') && posix_getuid() !== {uid} ? posix_getuid() : false);
echo json_encode($r);
"#,
        bdir = b.dir.display(),
        vhost = w
            .dir
            .join("config/server_master/nginx/vhost.d")
            .join(format!("{ub}.conf"))
            .display(),
        pools = berth_http::pool::pool_dir(&w.dir, "server_master").display(),
        bpw = b.password,
        bdb = b.db_name,
        buser = b.db_user,
        api_port = w.api.rsplit(':').next().unwrap(),
        uid = a.uid,
    );
    plant(&a.dir.join("private/probe.php"), &probe, a.uid);
    let (status, body, _) = w.http_get(ua, "/xmlrpc.php").unwrap();
    assert_eq!(
        status, 200,
        "the attacker's code must run (as the attacker): {body}"
    );
    let found: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    for (what, verdict) in found.as_object().unwrap() {
        let v = verdict.as_str().unwrap_or_default();
        p.check(
            format!("a's PHP: {what}"),
            (v != "blocked").then(|| v.to_string()),
        );
    }
    // Its own credentials it does have (the probe ran in its own pool).
    let (_, own, _) = w.http_get(ua, "/sites/x/private/x.php").unwrap();
    assert!(!own.contains(RAN), "{own}");

    // drush runs the site's code too: as the site's user, with nothing of berth's
    // environment. The site's local.settings.php (here planted by the test, as the
    // platform's owner) records who includes it.
    let record = w.dir.join(format!("site-tmp/{}/who", a.uid));
    plant(
        &a.dir.join("local.settings.php"),
        &format!(
            "<?php\nif (PHP_SAPI === 'cli') {{ file_put_contents('{}', posix_getuid() . ' ' . (getenv('BERTH_DATABASE_URL') !== false || getenv('BERTH_SECRET_KEY') !== false ? 'berth-env' : 'clean') . \"\\n\", FILE_APPEND); }}\n",
            record.display()
        ),
        0,
    );
    std::fs::set_permissions(
        a.dir.join("local.settings.php"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    chown(a.dir.join("local.settings.php"), Some(0), Some(a.uid)).unwrap();
    w.run_success("login-reset", ua, json!({})).await;
    let who = std::fs::read_to_string(&record).unwrap_or_default();
    assert!(!who.is_empty(), "drush did not include the site's settings");
    for line in who.lines() {
        p.check(
            "drush runs as the site's user with a clean environment",
            (line != format!("{} clean", a.uid)).then(|| line.to_string()),
        );
    }

    println!(
        "isolation: {} probes, {} got through",
        p.made,
        p.through.len()
    );
    assert!(
        p.through.is_empty(),
        "{} of {} probes got through:\n{}",
        p.through.len(),
        p.made,
        p.through.join("\n")
    );
    // The victim still serves.
    let (status, body) = w.page(ub);
    assert_eq!(status, 200, "{body}");
    w.stop().await;
}

/// A GET with an absolute request line (`GET http://host/path`) and another Host header.
fn raw_get(port: u16, url: &str, host: &str) -> anyhow::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {url} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}
