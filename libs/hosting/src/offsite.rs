//! Off-site backup targets (S3-compatible stores): their settings checked at intake, and
//! the object keys of backup copies, `<prefix>/<site>/<file>` (decision 0017).

use berth_contracts::NewBackupTarget;
use berth_contracts::steps::TargetSpec;
use std::net::IpAddr;

/// What the planner knows of a backup target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetFacts {
    pub name: String,
    pub endpoint: String,
    pub bucket: String,
    pub prefix: String,
    pub region: String,
    pub access_key_id: String,
}

impl TargetFacts {
    pub fn spec(&self) -> TargetSpec {
        TargetSpec {
            name: self.name.clone(),
            endpoint: self.endpoint.clone(),
            bucket: self.bucket.clone(),
            region: self.region.clone(),
            access_key_id: self.access_key_id.clone(),
        }
    }
}

/// A live copy of a backup, on its target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyFacts {
    /// The backup it is a copy of.
    pub backup: uuid::Uuid,
    /// The server holding that backup's file (whose backup worker acts on the copy).
    pub server: String,
    pub target: TargetFacts,
    pub key: String,
    /// Equal to its backup's (a copy is recorded only so).
    pub sha256: String,
}

/// What a backup, restore, backup-delete or prune needs beyond the site: the targets a
/// backup is copied to, and the live copies of the backups a restore, delete or prune acts
/// on (oldest first).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OffsiteFacts {
    pub targets: Vec<TargetFacts>,
    pub copies: Vec<CopyFacts>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TargetError(String);

fn bad(m: impl Into<String>) -> TargetError {
    TargetError(m.into())
}

/// A target's name: like a context name, so it fits a URL path and a CLI argument.
pub fn check_target_name(name: &str) -> Result<(), TargetError> {
    let ok = (1..=63).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    ok.then_some(()).ok_or_else(|| {
        bad(format!(
            "target name `{name}`: 1 to 63 of a-z, 0-9, `-` and `_`, starting with a letter or digit"
        ))
    })
}

/// One path segment of a key: no separator, no `.`/`..`, nothing a store would rewrite.
fn segment_ok(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.len() <= 255
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// Checks a new target's settings (the secret only for presence and shape: it is never
/// echoed back, not even in an error).
pub fn check_new_target(t: &NewBackupTarget) -> Result<(), TargetError> {
    check_target_name(&t.name)?;
    if t.kind != "s3" {
        return Err(bad(format!(
            "kind `{}`: the only kind is `s3` (any S3-compatible store)",
            t.kind
        )));
    }
    let url =
        url::Url::parse(&t.endpoint).map_err(|e| bad(format!("endpoint `{}`: {e}", t.endpoint)))?;
    let loopback = match url.host() {
        Some(url::Host::Ipv4(a)) => IpAddr::V4(a).is_loopback(),
        Some(url::Host::Ipv6(a)) => IpAddr::V6(a).is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    match url.scheme() {
        "https" => {}
        // The credentials sign every request: plain HTTP only where nobody listens in.
        "http" if loopback => {}
        _ => {
            return Err(bad(format!(
                "endpoint `{}`: an https:// URL (http:// only on loopback)",
                t.endpoint
            )));
        }
    }
    if url.host().is_none()
        || !url.username().is_empty()
        || url.password().is_some()
        || url.query().is_some()
        || url.fragment().is_some()
        || url.path() != "/"
    {
        return Err(bad(format!(
            "endpoint `{}`: scheme, host and port only (credentials go in access_key_id and secret_access_key)",
            t.endpoint
        )));
    }
    // S3's bucket naming rules (lowercase, digits, `.` and `-`, 3 to 63).
    let b = &t.bucket;
    let bucket_ok = (3..=63).contains(&b.len())
        && b.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
        && b.starts_with(|c: char| c.is_ascii_alphanumeric())
        && b.ends_with(|c: char| c.is_ascii_alphanumeric())
        && !b.contains("..");
    if !bucket_ok {
        return Err(bad(format!(
            "bucket `{b}`: 3 to 63 of a-z, 0-9, `.` and `-`, starting and ending with a letter or digit"
        )));
    }
    if !t.prefix.is_empty() && (t.prefix.len() > 512 || !t.prefix.split('/').all(segment_ok)) {
        return Err(bad(format!(
            "prefix `{}`: segments of A-Z, a-z, 0-9, `.`, `-` and `_` separated by single `/`, \
             no `.` or `..` segment, no leading or trailing `/`",
            t.prefix
        )));
    }
    if t.region.is_empty()
        || t.region.len() > 64
        || !t
            .region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(bad(format!("region `{}`: a-z, 0-9 and `-`", t.region)));
    }
    if t.access_key_id.is_empty()
        || t.access_key_id.len() > 128
        || !t.access_key_id.chars().all(|c| c.is_ascii_graphic())
    {
        return Err(bad(
            "access_key_id: 1 to 128 printable characters, no spaces",
        ));
    }
    if t.secret_access_key.is_empty()
        || t.secret_access_key.len() > 256
        || !t.secret_access_key.chars().all(|c| c.is_ascii_graphic())
    {
        return Err(bad(
            "secret_access_key: 1 to 256 printable characters, no spaces",
        ));
    }
    Ok(())
}

/// The key of a backup's copy: `<prefix>/<site>/<file>`. The site and file are one segment
/// each, so one site's copies never land under (or overwrite) another site's.
pub fn object_key(prefix: &str, site: &str, file: &str) -> Result<String, TargetError> {
    if !segment_ok(site) {
        return Err(bad(format!(
            "site `{site}` cannot name an object key segment"
        )));
    }
    if !segment_ok(file) {
        return Err(bad(format!(
            "file `{file}` cannot name an object key segment"
        )));
    }
    if !prefix.is_empty() && !prefix.split('/').all(segment_ok) {
        return Err(bad(format!("prefix `{prefix}` is not a key prefix")));
    }
    Ok(if prefix.is_empty() {
        format!("{site}/{file}")
    } else {
        format!("{prefix}/{site}/{file}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> NewBackupTarget {
        NewBackupTarget {
            name: "offsite".into(),
            kind: "s3".into(),
            endpoint: "https://s3.eu-west-1.amazonaws.com".into(),
            bucket: "berth-backups".into(),
            prefix: "prod/eu".into(),
            region: "eu-west-1".into(),
            access_key_id: "AKIAEXAMPLE".into(),
            secret_access_key: "s3cr3t/key+x".into(),
            retention: None,
        }
    }

    #[test]
    fn keys_are_prefix_site_file() {
        assert_eq!(
            object_key(
                "prod/eu",
                "www.example.com",
                "www.example.com-20261204T101010Z-ab12.tar.zst"
            )
            .unwrap(),
            "prod/eu/www.example.com/www.example.com-20261204T101010Z-ab12.tar.zst"
        );
        assert_eq!(
            object_key("", "a.test", "a.tar.gz").unwrap(),
            "a.test/a.tar.gz"
        );
    }

    #[test]
    fn a_key_cannot_leave_its_sites_prefix() {
        for (site, file) in [
            ("..", "x.tar.zst"),
            ("a.test/../b.test", "x"),
            ("a.test", "../b.test/x.tar.zst"),
            ("a.test", "sub/x"),
            ("a.test", ""),
            ("", "x"),
            ("a.test", "x\u{0}"),
            ("a.test", "%2e%2e"),
        ] {
            assert!(object_key("p", site, file).is_err(), "{site} {file}");
        }
        assert!(object_key("p/../q", "a.test", "x").is_err());
        assert!(object_key("/p", "a.test", "x").is_err());
    }

    #[test]
    fn a_good_target_passes() {
        assert_eq!(check_new_target(&target()), Ok(()));
        let mut t = target();
        t.endpoint = "http://127.0.0.1:9000".into();
        t.prefix = String::new();
        assert_eq!(check_new_target(&t), Ok(()));
    }

    #[test]
    fn bad_targets_say_what_is_wrong_without_the_secret() {
        type Change = fn(&mut NewBackupTarget);
        let cases: [(&str, Change); 10] = [
            ("target name", |t| t.name = "Off Site".into()),
            ("kind", |t| t.kind = "ftp".into()),
            ("http:// only on loopback", |t| {
                t.endpoint = "http://s3.example.com".into()
            }),
            ("scheme, host and port only", |t| {
                t.endpoint = "https://k:s@s3.example.com".into()
            }),
            ("scheme, host and port only", |t| {
                t.endpoint = "https://s3.example.com/bucket".into()
            }),
            ("bucket", |t| t.bucket = "Bad_Bucket".into()),
            ("prefix", |t| t.prefix = "a/../b".into()),
            ("prefix", |t| t.prefix = "a/".into()),
            ("region", |t| t.region = "EU West".into()),
            ("secret_access_key", |t| {
                t.secret_access_key = "has space s3cr3t".into()
            }),
        ];
        for (says, change) in cases {
            let mut t = target();
            change(&mut t);
            let e = check_new_target(&t).unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
            assert!(!e.contains("s3cr3t"), "{e}");
        }
    }
}
