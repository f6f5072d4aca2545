//! nginx and php-fpm on loopback ports, for tests.
//!
//! [`write_nginx_conf`] writes a main `nginx.conf` under a test's directory that includes
//! `*.conf` from given vhost directories and has a catch-all default server (404) on a free
//! loopback port reserved for the vhosts; [`Web::start`] starts php-fpm (a `www-data` pool
//! on a loopback TCP port) and nginx (as a child, `daemon off`) with that configuration,
//! waits until both answer, and stops both when dropped. `nginx -c <conf> -s reload` works
//! on it, since the pid file is named in the configuration.
//!
//! nginx's workers and php-fpm's children run as `www-data`: the directories made here are
//! mode 0755, but a vhost root under a directory www-data cannot traverse will not serve.

use anyhow::{Context, Result, anyhow, bail};
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The marker in a configuration written by [`write_nginx_conf`] naming the vhost port.
const PORT_MARKER: &str = "# berth-test-servers vhost port ";

/// How long nginx or php-fpm may take to answer after starting.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Makes a directory and its missing parents, each made one mode 0755, and sets the
/// directory itself to 0755 so that www-data can traverse it.
fn make_dir_0755(dir: &Path) -> Result<()> {
    let mut missing = Vec::new();
    let mut cur = Some(dir);
    while let Some(d) = cur {
        if d.exists() {
            break;
        }
        missing.push(d.to_path_buf());
        cur = d.parent();
    }
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    missing.push(dir.to_path_buf());
    for d in missing {
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755))
            .with_context(|| format!("chmod 0755 {}", d.display()))?;
    }
    Ok(())
}

/// Writes `dir/nginx.conf`: workers as www-data, one worker, pid, error and access logs and temp paths
/// under `dir`, `include <vhost_dir>/*.conf` for each vhost directory (made if missing),
/// and a default server on a free loopback port answering 404 to unknown hosts; vhosts
/// listen on that port (it is [`Web::port`]). nginx accepts it with no vhosts at all.
pub fn write_nginx_conf(dir: &Path, vhost_dirs: &[PathBuf]) -> Result<PathBuf> {
    make_dir_0755(dir)?;
    let dir = fs::canonicalize(dir)?;
    let tmp = dir.join("nginx-tmp");
    make_dir_0755(&tmp)?;
    let mut includes = String::new();
    for v in vhost_dirs {
        make_dir_0755(v)?;
        let v = fs::canonicalize(v)?;
        includes.push_str(&format!("    include {}/*.conf;\n", v.display()));
    }
    let port = crate::free_port();
    let d = dir.display();
    let t = tmp.display();
    let conf = format!(
        r#"# Written by berth-test-servers for a test.
{PORT_MARKER}{port}
user www-data;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log warn;

events {{
    worker_connections 512;
}}

http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    # Host first: one log for every vhost of the test.
    log_format berth_test '$host $status "$request"';
    access_log {d}/nginx-access.log berth_test;
    sendfile on;
    keepalive_timeout 5;
    server_names_hash_bucket_size 256;
    server_names_hash_max_size 4096;
    client_body_temp_path {t}/client_body;
    proxy_temp_path {t}/proxy;
    fastcgi_temp_path {t}/fastcgi;
    uwsgi_temp_path {t}/uwsgi;
    scgi_temp_path {t}/scgi;

    # Hosts no vhost names get a 404 rather than the first vhost on the port.
    server {{
        listen 127.0.0.1:{port} default_server;
        server_name _;
        return 404 "no vhost for this host\n";
    }}

{includes}}}
"#
    );
    let path = dir.join("nginx.conf");
    fs::write(&path, conf).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Writes `dir/php-fpm.conf` for [`Web::start`]: including `*.conf` from each pool
/// directory (made if missing; berth's http worker writes each site's pool there), with a
/// `www-data` pool on a free loopback port (php-fpm wants one pool at least). Returns its
/// path; php-fpm's pid file is `dir/php-fpm.pid`.
pub fn write_php_fpm_conf(dir: &Path, pool_dirs: &[PathBuf]) -> Result<PathBuf> {
    make_dir_0755(dir)?;
    let dir = fs::canonicalize(dir)?;
    let mut includes = String::new();
    for p in pool_dirs {
        make_dir_0755(p)?;
        let p = fs::canonicalize(p)?;
        includes.push_str(&format!("include={}/*.conf\n", p.display()));
    }
    let fpm_port = crate::free_port();
    let d = dir.display();
    let conf = format!(
        r#"; Written by berth-test-servers for a test.
[global]
pid = {d}/php-fpm.pid
error_log = {d}/php-fpm.log
daemonize = no
{includes}
[www]
user = www-data
group = www-data
listen = 127.0.0.1:{fpm_port}
pm = static
pm.max_children = 2
clear_env = no
catch_workers_output = yes
decorate_workers_output = no
"#
    );
    let path = dir.join("php-fpm.conf");
    fs::write(&path, conf).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// The `listen = 127.0.0.1:PORT` of the `www` pool in a php-fpm configuration.
fn fpm_www_port(conf: &Path) -> Option<u16> {
    let text = fs::read_to_string(conf).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("listen = 127.0.0.1:"))
        .and_then(|p| p.trim().parse().ok())
}

/// The vhost port named in a configuration written by [`write_nginx_conf`].
fn conf_port(nginx_conf: &Path) -> Option<u16> {
    let text = fs::read_to_string(nginx_conf).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(PORT_MARKER))
        .and_then(|p| p.trim().parse().ok())
}

/// The `pid` file named in an nginx main configuration.
pub fn nginx_pid_file(nginx_conf: &Path) -> Option<PathBuf> {
    let text = fs::read_to_string(nginx_conf).ok()?;
    text.lines().find_map(|l| {
        let l = l.trim();
        let rest = l.strip_prefix("pid")?;
        if !rest.starts_with(char::is_whitespace) {
            return None;
        }
        Some(PathBuf::from(rest.trim().trim_end_matches(';').trim()))
    })
}

/// An HTTP answer: status, body, and headers (names lower-cased).
pub type Response = (u16, String, Vec<(String, String)>);

/// A running nginx and php-fpm; both stopped when dropped.
pub struct Web {
    /// A free loopback port reserved for vhosts to listen on (`listen 127.0.0.1:<port>;`).
    pub port: u16,
    /// php-fpm's `www` pool, for `fastcgi_pass`: "127.0.0.1:PORT" (sites get pools of
    /// their own, included from the pool directories given to [`write_php_fpm_conf`]).
    pub php_fpm: String,
    /// php-fpm's main configuration.
    pub php_fpm_conf: PathBuf,
    /// The nginx main configuration it runs.
    pub nginx_conf: PathBuf,
    /// The directory holding php-fpm's configuration, pids and logs.
    pub dir: PathBuf,
    nginx: Option<Child>,
    php: Option<Child>,
}

impl Web {
    /// Starts php-fpm (with `dir/php-fpm.conf`, written by [`write_php_fpm_conf`] with no
    /// pool directory if it is not there) and nginx (`nginx -c <nginx_conf>`), and waits
    /// until both answer.
    pub fn start(dir: &Path, nginx_conf: &Path) -> Result<Web> {
        for (bin, what) in [
            ("/usr/sbin/nginx", "nginx"),
            ("/usr/sbin/php-fpm8.2", "php-fpm8.2"),
        ] {
            if !Path::new(bin).exists() {
                bail!("{what} is not installed ({bin} is missing)");
            }
        }
        make_dir_0755(dir)?;
        let dir = fs::canonicalize(dir)?;
        let nginx_conf = fs::canonicalize(nginx_conf)
            .with_context(|| format!("nginx configuration {}", nginx_conf.display()))?;
        let port = conf_port(&nginx_conf).unwrap_or_else(crate::free_port);
        let mut fpm_conf_path = dir.join("php-fpm.conf");
        if !fpm_conf_path.exists() {
            fpm_conf_path = write_php_fpm_conf(&dir, &[])?;
        }
        let fpm_port = fpm_www_port(&fpm_conf_path)
            .ok_or_else(|| anyhow!("{} has no www pool", fpm_conf_path.display()))?;
        let mut web = Web {
            port,
            php_fpm: format!("127.0.0.1:{fpm_port}"),
            php_fpm_conf: fpm_conf_path.clone(),
            nginx_conf: nginx_conf.clone(),
            dir: dir.clone(),
            nginx: None,
            php: None,
        };

        // php-fpm (as root: each site's pool becomes the site's own user)
        let fpm_log = fs::File::create(dir.join("php-fpm.out"))?;
        let php = Command::new("/usr/sbin/php-fpm8.2")
            .arg("-R")
            .arg("-F")
            .arg("-y")
            .arg(&fpm_conf_path)
            .stdin(Stdio::null())
            .stdout(fpm_log.try_clone()?)
            .stderr(fpm_log)
            .spawn()
            .context("starting php-fpm8.2")?;
        web.php = Some(php);

        // nginx, as a child: `-s reload` finds it through the pid file in its configuration.
        let nginx_out = fs::File::create(dir.join("nginx.out"))?;
        let nginx = Command::new("/usr/sbin/nginx")
            .arg("-c")
            .arg(&nginx_conf)
            .arg("-e")
            .arg(dir.join("nginx-error.log"))
            .arg("-g")
            .arg("daemon off;")
            .stdin(Stdio::null())
            .stdout(nginx_out.try_clone()?)
            .stderr(nginx_out)
            .spawn()
            .context("starting nginx")?;
        web.nginx = Some(nginx);

        web.wait_listening("php-fpm", fpm_port, &dir.join("php-fpm.log"))?;
        web.wait_listening("nginx", port, &dir.join("nginx-error.log"))?;
        Ok(web)
    }

    fn wait_listening(&mut self, what: &str, port: u16, log: &Path) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        loop {
            let child = if what == "nginx" {
                self.nginx.as_mut()
            } else {
                self.php.as_mut()
            };
            if let Some(c) = child
                && let Some(status) = c.try_wait()?
            {
                bail!(
                    "{what} exited ({status}) while starting: {}",
                    tail(log).unwrap_or_default()
                );
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{what} does not answer on {addr} after {} s: {}",
                    START_TIMEOUT.as_secs(),
                    tail(log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// An HTTP/1.1 GET to nginx (127.0.0.1:[`Web::port`]) with the given Host header:
    /// status, body and headers (names lower-cased). Redirects are not followed.
    pub fn get(&self, host: &str, path: &str) -> Result<Response> {
        http_get(SocketAddr::from(([127, 0, 0, 1], self.port)), host, path)
    }

    /// nginx's error log, whole.
    pub fn error_log(&self) -> String {
        fs::read_to_string(self.dir.join("nginx-error.log")).unwrap_or_default()
    }

    /// The last lines of nginx's error log, for test failure messages.
    pub fn nginx_log(&self) -> String {
        tail(&self.dir.join("nginx-error.log")).unwrap_or_default()
    }

    /// nginx's access log, whole: one `<host> <status> "<request line>"` per request, as
    /// a vhost lets nginx log it.
    pub fn access_log(&self) -> String {
        fs::read_to_string(self.dir.join("nginx-access.log")).unwrap_or_default()
    }

    /// The last lines of php-fpm's log, for test failure messages.
    pub fn php_fpm_log(&self) -> String {
        tail(&self.dir.join("php-fpm.log")).unwrap_or_default()
    }
}

impl Drop for Web {
    fn drop(&mut self) {
        // SIGTERM (fast shutdown) to both masters: SIGKILL would leave their workers behind.
        for child in [self.nginx.take(), self.php.take()].into_iter().flatten() {
            stop(child);
        }
    }
}

fn stop(mut child: Child) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn tail(path: &Path) -> Option<String> {
    let text = fs::read_to_string(path).ok()?;
    let lines: Vec<&str> = text.lines().collect();
    Some(lines[lines.len().saturating_sub(20)..].join("\n"))
}

/// An HTTP/1.1 GET with `Connection: close`: status, body (chunked transfer decoded) and
/// headers (names lower-cased).
pub fn http_get(addr: SocketAddr, host: &str, path: &str) -> Result<Response> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("connecting to {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: berth-test-servers\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .with_context(|| format!("reading the answer from {addr}"))?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("no end of headers in the answer from {addr}"))?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let body = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow!("bad status line `{status_line}`"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Ok((status, String::from_utf8_lossy(&body).to_string(), headers))
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| anyhow!("truncated chunked body"))?;
        let size_text = String::from_utf8_lossy(&data[..eol]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .with_context(|| format!("bad chunk size `{size_text}`"))?;
        data = &data[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size {
            bail!("truncated chunk");
        }
        out.extend_from_slice(&data[..size]);
        data = data.get(size + 2..).unwrap_or_default();
    }
}
