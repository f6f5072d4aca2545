//! BIND (named) with rndc on loopback ports.
//!
//! [`Named::start`] writes a `named.conf` under the test's directory that serves, for each
//! server context name, the zones listed in `<dir>/config/<server>/bind/zones.conf` (the
//! file berth's dns worker writes), with a control channel keyed by a secret made for
//! this instance, and an `rndc.conf` to reach it; starts `named -g` as a child and waits
//! until `rndc status` answers. Dropping it stops named.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::free_port;

pub struct Named {
    /// DNS on 127.0.0.1 (UDP and TCP).
    pub port: u16,
    /// rndc's control channel on 127.0.0.1.
    pub rndc_port: u16,
    pub named_conf: PathBuf,
    pub rndc_conf: PathBuf,
    /// named's own output (`-g`: everything it logs).
    pub log: PathBuf,
    child: Child,
}

impl Named {
    /// Starts named for `servers` (context names such as `server_master`) with everything
    /// under `dir`: `named.conf`, `rndc.conf`, `named.log`, and an empty
    /// `config/<server>/bind/zones.conf` for each server that has none yet.
    pub fn start(dir: &Path, servers: &[String]) -> Result<Named> {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let dir = dir
            .canonicalize()
            .with_context(|| format!("cannot resolve {}", dir.display()))?;
        let port = free_port();
        let mut rndc_port = free_port();
        while rndc_port == port {
            rndc_port = free_port();
        }
        let secret = random_secret()?;
        let key = format!(
            "key \"berth-test\" {{\n    algorithm hmac-sha256;\n    secret \"{secret}\";\n}};\n"
        );

        let mut includes = String::new();
        for server in servers {
            let bind = dir.join("config").join(server).join("bind");
            fs::create_dir_all(bind.join("zones"))
                .with_context(|| format!("cannot create {}", bind.display()))?;
            let zones_conf = bind.join("zones.conf");
            if !zones_conf.exists() {
                fs::write(&zones_conf, "")
                    .with_context(|| format!("cannot write {}", zones_conf.display()))?;
            }
            includes.push_str(&format!("include \"{}\";\n", zones_conf.display()));
        }
        let d = dir.display();
        let named_conf = dir.join("named.conf");
        let conf = format!(
            "{key}\
             options {{\n\
             \x20   directory \"{d}\";\n\
             \x20   pid-file \"{d}/named.pid\";\n\
             \x20   session-keyfile \"{d}/session.key\";\n\
             \x20   managed-keys-directory \"{d}\";\n\
             \x20   listen-on port {port} {{ 127.0.0.1; }};\n\
             \x20   listen-on-v6 {{ none; }};\n\
             \x20   recursion no;\n\
             \x20   dnssec-validation no;\n\
             \x20   notify no;\n\
             }};\n\
             controls {{\n\
             \x20   inet 127.0.0.1 port {rndc_port} allow {{ 127.0.0.1; }} keys {{ \"berth-test\"; }};\n\
             }};\n\
             {includes}"
        );
        fs::write(&named_conf, conf)
            .with_context(|| format!("cannot write {}", named_conf.display()))?;
        let rndc_conf = dir.join("rndc.conf");
        fs::write(
            &rndc_conf,
            format!(
                "{key}options {{\n    default-server 127.0.0.1;\n    default-port {rndc_port};\n    default-key \"berth-test\";\n}};\n"
            ),
        )
        .with_context(|| format!("cannot write {}", rndc_conf.display()))?;

        let log = dir.join("named.log");
        let out =
            fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let err = out.try_clone()?;
        let child = Command::new("named")
            .arg("-c")
            .arg(&named_conf)
            .args(["-u", "root", "-g"])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .context("cannot start named")?;
        let mut named = Named {
            port,
            rndc_port,
            named_conf,
            rndc_conf,
            log,
            child,
        };
        named.wait_ready()?;
        Ok(named)
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "named exited ({status}) before answering:\n{}",
                    fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            if self.rndc(&["status"]).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "named did not answer rndc status in 20 s:\n{}",
                    fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs `rndc -c <rndc_conf> <args>`; its output, or an error with it.
    pub fn rndc(&self, args: &[&str]) -> Result<String> {
        let out = Command::new("rndc")
            .arg("-c")
            .arg(&self.rndc_conf)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .context("cannot run rndc")?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if !out.status.success() {
            bail!("rndc {} failed ({}): {text}", args.join(" "), out.status);
        }
        Ok(text)
    }

    /// `dig @127.0.0.1 -p <port> +short <name> <rtype>`: the answer's lines (none for no
    /// answer).
    pub fn dig(&self, name: &str, rtype: &str) -> Result<Vec<String>> {
        let out = Command::new("dig")
            .arg("@127.0.0.1")
            .args(["-p", &self.port.to_string()])
            .args(["+short", "+time=2", "+tries=2", name, rtype])
            .stdin(Stdio::null())
            .output()
            .context("cannot run dig")?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if !out.status.success() {
            bail!(
                "dig {name} {rtype} failed ({}): {text}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with(';'))
            .map(str::to_owned)
            .collect())
    }
}

impl Drop for Named {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// 32 random bytes from the kernel, base64: an HMAC-SHA256 key for rndc.
fn random_secret() -> Result<String> {
    let mut bytes = [0u8; 32];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("cannot read /dev/urandom")?;
    Ok(base64(&bytes))
}

fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::base64;

    #[test]
    fn base64_matches_the_rfc_vectors() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }
}

#[cfg(test)]
mod live {
    use super::Named;

    #[test]
    fn named_starts_answers_and_stops() {
        let dir = std::env::temp_dir().join(format!("berth-named-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let servers = vec!["server_master".to_string()];
        let named = Named::start(&dir, &servers).expect("named starts");
        assert!(named.rndc(&["status"]).unwrap().contains("server is up"));
        assert!(dir.join("config/server_master/bind/zones.conf").exists());
        assert!(named.dig("www.example.com", "A").unwrap().is_empty());
        drop(named);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
