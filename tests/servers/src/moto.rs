//! A real S3-compatible server for tests: `moto_server` (PyPI `moto[server]`, pinned in
//! `tests/moto/requirements.txt`, installed by `ops/setup.sh`) on a free loopback port,
//! with a bucket and an IAM user whose access key it then enforces (signatures are
//! checked: wrong credentials are refused as by a real store). Stopped when dropped.

use anyhow::{Context, Result, anyhow, bail};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The program: `BERTH_TEST_MOTO_SERVER`, else `/opt/berth/moto/bin/moto_server` (where
/// `ops/setup.sh` installs it), else `moto_server` on the PATH.
pub fn moto_bin() -> PathBuf {
    crate::program(
        "BERTH_TEST_MOTO_SERVER",
        "/opt/berth/moto/bin/moto_server",
        "moto_server",
    )
}

pub struct Moto {
    pub port: u16,
    pub bucket: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    child: Child,
    log: PathBuf,
}

impl Moto {
    /// Starts moto_server, makes `bucket` and a user allowed `s3:*` with an access key,
    /// then turns authentication on.
    pub fn start(dir: &Path, bucket: &str) -> Result<Moto> {
        std::fs::create_dir_all(dir)?;
        let port = crate::free_port();
        let log = dir.join("moto.log");
        let out = std::fs::File::create(&log)?;
        let child = Command::new(moto_bin())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .process_group(0)
            .spawn()
            .with_context(|| {
                format!(
                    "starting {} (install it with ops/setup.sh)",
                    moto_bin().display()
                )
            })?;
        let mut m = Moto {
            port,
            bucket: bucket.to_string(),
            access_key_id: String::new(),
            secret_access_key: String::new(),
            child,
            log,
        };
        m.wait_ready()?;
        m.setup()?;
        Ok(m)
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok((200, _)) = self.request("GET", "/moto-api/", &[], b"") {
                return Ok(());
            }
            if let Some(st) = self.child.try_wait()? {
                bail!("moto_server exited ({st}): {}", self.log());
            }
            if Instant::now() > deadline {
                bail!("moto_server did not answer in 60 s: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn iam(&self, params: &[(&str, &str)]) -> Result<String> {
        let mut body = String::from("Version=2010-05-08");
        for (k, v) in params {
            body.push('&');
            body.push_str(k);
            body.push('=');
            body.push_str(&urlencode(v));
        }
        // Unsigned while moto runs without authentication; the scope routes it to IAM.
        let headers = [
            (
                "Authorization",
                "AWS4-HMAC-SHA256 Credential=setup/20260101/us-east-1/iam/aws4_request, \
                 SignedHeaders=host, Signature=0",
            ),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ];
        let (status, answer) = self.request("POST", "/", &headers, body.as_bytes())?;
        if status != 200 {
            bail!("moto IAM {params:?}: {status} {answer}");
        }
        Ok(answer)
    }

    fn setup(&mut self) -> Result<()> {
        self.iam(&[("Action", "CreateUser"), ("UserName", "berth")])?;
        let key = self.iam(&[("Action", "CreateAccessKey"), ("UserName", "berth")])?;
        self.access_key_id = between(&key, "<AccessKeyId>", "</AccessKeyId>")?;
        self.secret_access_key = between(&key, "<SecretAccessKey>", "</SecretAccessKey>")?;
        self.iam(&[
            ("Action", "PutUserPolicy"),
            ("UserName", "berth"),
            ("PolicyName", "s3"),
            (
                "PolicyDocument",
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#,
            ),
        ])?;
        let (status, answer) = self.request("PUT", &format!("/{}", self.bucket), &[], b"")?;
        if status != 200 {
            bail!("moto: create bucket {}: {status} {answer}", self.bucket);
        }
        // From now on every request must be signed with a key moto knows.
        let (status, answer) = self.request("POST", "/moto-api/reset-auth", &[], b"0")?;
        if status != 200 {
            bail!("moto: turning authentication on: {status} {answer}");
        }
        Ok(())
    }

    /// An HTTP/1.1 request with `Connection: close`: status and body.
    fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(u16, String)> {
        let addr = self.addr();
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.port,
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes())?;
        s.write_all(body)?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw)?;
        let text = String::from_utf8_lossy(&raw).to_string();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| anyhow!("bad answer from moto: {text}"))?;
        let body = text.split_once("\r\n\r\n").map(|x| x.1).unwrap_or_default();
        Ok((status, body.to_string()))
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        crate::stop_group(&mut self.child);
    }
}

fn between(text: &str, open: &str, close: &str) -> Result<String> {
    let start = text
        .find(open)
        .ok_or_else(|| anyhow!("no {open} in {text}"))?
        + open.len();
    let end = text[start..]
        .find(close)
        .ok_or_else(|| anyhow!("no {close} in {text}"))?;
    Ok(text[start..start + end].to_string())
}

/// application/x-www-form-urlencoded value.
fn urlencode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
