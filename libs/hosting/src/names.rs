//! Names that come from users: host names and Aegir context names.
//!
//! Each is parsed once at the edge into a type that cannot hold a bad value, so nothing
//! past the API ever sees a name with a `/`, a `..`, upper case or a quote in it.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("`{0}` is empty")]
    Empty(&'static str),
    #[error("`{name}` is too long: at most {max} characters")]
    TooLong { name: String, max: usize },
    #[error("`{name}` has an empty label (two dots in a row, or a leading or trailing dot)")]
    EmptyLabel { name: String },
    #[error("`{name}` has a label over 63 characters")]
    LabelTooLong { name: String },
    #[error(
        "`{name}` may only hold lower-case letters, digits, hyphens and dots (no upper case, `/`, `..` or spaces)"
    )]
    BadCharacter { name: String },
    #[error("`{name}`: a label may not begin or end with a hyphen")]
    EdgeHyphen { name: String },
    #[error(
        "`{name}` is not a server context name: use `server_master` or `server_<host without dots>`"
    )]
    NotServerContext { name: String },
    #[error(
        "`{name}` is not a platform context name: use `platform_` followed by 1 to 55 lower-case letters, digits, `_` or `-`"
    )]
    NotPlatformContext { name: String },
    #[error("platform root `{root}`: {why}")]
    BadRoot { root: String, why: &'static str },
    #[error(
        "host `{host}` gives the server name `{name}`, over 64 characters: use a shorter host, or name the server `server_master`"
    )]
    HostTooLongForServerName { host: String, name: String },
    #[error("server name `{name}` does not match host `{host}`: expected `{expected}`")]
    ServerNameMismatch {
        name: String,
        host: String,
        expected: String,
    },
    #[error("`{name}` is not a valid internationalised domain name")]
    NotIdn { name: String },
    #[error("`{name}` is an IP address: a site's uri and aliases must be domain names")]
    IpAddress { name: String },
    #[error(
        "`{name}` has a single label: a site's uri and aliases must be fully qualified, such as `{name}.example.com`"
    )]
    SingleLabel { name: String },
    #[error(
        "`{name}` is {len} characters: a site's uri and aliases are at most {max} (what nginx's server-name table and a vhost's file name hold)"
    )]
    SiteNameTooLong {
        name: String,
        len: usize,
        max: usize,
    },
    #[error("platform root `{root}` {why}")]
    RootRefused { root: String, why: String },
}

/// The longest site uri or alias. The later steps' limits, all checked here at the edge:
/// the vhost file `<uri>.conf` must fit a 255-byte file name (251), and nginx's
/// server-name hash must hold the name in one bucket of
/// [`NGINX_SERVER_NAMES_HASH_BUCKET_SIZE`] bytes (see [`nginx_bucket_bytes`]).
pub const SITE_NAME_MAX: usize = 200;

/// The `server_names_hash_bucket_size` that berth's nginx configurations set
/// (`ops/nginx/berth.conf`, the tests' nginx): a [`SITE_NAME_MAX`] name fits in one bucket.
pub const NGINX_SERVER_NAMES_HASH_BUCKET_SIZE: usize = 256;

/// The bucket size nginx needs for a server name of `len` bytes (`ngx_hash_init`: the
/// element, `sizeof(void *)` + the name and 2 bytes aligned to a pointer, plus the bucket's
/// terminating pointer), rounded up to the 64-byte cache line as nginx rounds the setting.
pub fn nginx_bucket_bytes(len: usize) -> usize {
    const PTR: usize = 8;
    let element = PTR + (len + 2).div_ceil(PTR) * PTR;
    (element + PTR).div_ceil(64) * 64
}

/// A DNS host name: lower case, labels of 1–63 characters of `[a-z0-9-]`, at most 253 in all.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostName(String);

impl HostName {
    pub fn parse(s: &str) -> Result<Self, NameError> {
        if s.is_empty() {
            return Err(NameError::Empty("host name"));
        }
        if s.len() > 253 {
            return Err(NameError::TooLong {
                name: s.into(),
                max: 253,
            });
        }
        for label in s.split('.') {
            if label.is_empty() {
                return Err(NameError::EmptyLabel { name: s.into() });
            }
            if label.len() > 63 {
                return Err(NameError::LabelTooLong { name: s.into() });
            }
            if !label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                return Err(NameError::BadCharacter { name: s.into() });
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(NameError::EdgeHyphen { name: s.into() });
            }
        }
        Ok(Self(s.to_string()))
    }

    /// A host name as a user may type it: upper case is lowered, one trailing dot (the DNS
    /// root) is dropped and an internationalised name becomes its punycode (`xn--`) form,
    /// which is what is stored, written in vhosts and zones, and compared.
    pub fn normalise(s: &str) -> Result<Self, NameError> {
        let s = s.strip_suffix('.').unwrap_or(s);
        if s.is_ascii() {
            return Self::parse(&s.to_ascii_lowercase());
        }
        let ascii = idna::domain_to_ascii_cow(s.as_bytes(), idna::AsciiDenyList::STD3)
            .map_err(|_| NameError::NotIdn { name: s.into() })?;
        Self::parse(&ascii)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for HostName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A site's uri or alias: a normalised [`HostName`] with a dot in it (single-label names
/// such as `localhost` are not site names), that is not an IP address, and at most
/// [`SITE_NAME_MAX`] long. Server host names stay plain [`HostName`]s: `localhost` is a
/// fine host for a server.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SiteName(HostName);

impl SiteName {
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let bare = s
            .strip_prefix('[')
            .and_then(|b| b.strip_suffix(']'))
            .unwrap_or(s);
        if bare.parse::<std::net::IpAddr>().is_ok() {
            return Err(NameError::IpAddress { name: s.into() });
        }
        let host = HostName::normalise(s)?;
        let name = host.as_str();
        // As browsers do (WHATWG URL "ends in a number"): a name whose last label is a
        // number, decimal or 0x-hex, is read as an IPv4 address (`1.2.3`, `0x7f.1`).
        let last = name.rsplit('.').next().unwrap_or(name);
        let hex = last
            .strip_prefix("0x")
            .is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
        if last.bytes().all(|b| b.is_ascii_digit()) || hex {
            return Err(NameError::IpAddress { name: s.into() });
        }
        if !name.contains('.') {
            return Err(NameError::SingleLabel { name: name.into() });
        }
        if name.len() > SITE_NAME_MAX {
            return Err(NameError::SiteNameTooLong {
                name: name.into(),
                len: name.len(),
                max: SITE_NAME_MAX,
            });
        }
        Ok(Self(host))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    pub fn host(&self) -> &HostName {
        &self.0
    }
}

impl fmt::Display for SiteName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A server's context name: `server_master` (the local server) or `server_<host without dots>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerName(String);

pub const SERVER_MASTER: &str = "server_master";

impl ServerName {
    /// Aegir's naming guideline: `server.example.com` becomes `server_serverexamplecom`.
    pub fn for_host(host: &HostName) -> Self {
        Self(format!("server_{}", host.as_str().replace('.', "")))
    }

    pub fn master() -> Self {
        Self(SERVER_MASTER.into())
    }

    /// Parses a context name as given (with or without Aegir's leading `@`).
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let s = s.strip_prefix('@').unwrap_or(s);
        let Some(rest) = s.strip_prefix("server_") else {
            return Err(NameError::NotServerContext { name: s.into() });
        };
        if rest.is_empty()
            || s.len() > 64
            || !rest
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(NameError::NotServerContext { name: s.into() });
        }
        Ok(Self(s.to_string()))
    }

    /// The name a new server gets: the one asked for, if it is `server_master` or agrees
    /// with the host, else the one derived from the host. A host whose derived name is
    /// over 64 characters (which [`parse`](Self::parse) would refuse, leaving the server
    /// unreachable by name) is refused.
    pub fn for_new_server(host: &HostName, asked: Option<&str>) -> Result<Self, NameError> {
        let derived = Self::for_host(host);
        match asked {
            None if Self::parse(derived.as_str()).is_err() => {
                Err(NameError::HostTooLongForServerName {
                    host: host.to_string(),
                    name: derived.0,
                })
            }
            None => Ok(derived),
            Some(a) => {
                let parsed = Self::parse(a)?;
                if parsed.is_master() || parsed == derived {
                    Ok(parsed)
                } else {
                    Err(NameError::ServerNameMismatch {
                        name: a.into(),
                        host: host.to_string(),
                        expected: derived.0,
                    })
                }
            }
        }
    }

    pub fn is_master(&self) -> bool {
        self.0 == SERVER_MASTER
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ServerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A platform's context name: `platform_<name>` (Aegir's naming guideline).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PlatformName(String);

impl PlatformName {
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let s = s.strip_prefix('@').unwrap_or(s);
        let ok = s.strip_prefix("platform_").is_some_and(|rest| {
            !rest.is_empty()
                && s.len() <= 64
                && rest
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        });
        if ok {
            Ok(Self(s.to_string()))
        } else {
            Err(NameError::NotPlatformContext { name: s.into() })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PlatformName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A platform root: an absolute, normal path (no `.`/`..` parts, no doubled or trailing
/// slash, printable ASCII without quotes or spaces, so it is safe in a vhost) other than `/`.
pub fn parse_root(root: &str) -> Result<String, NameError> {
    let bad = |why| {
        Err(NameError::BadRoot {
            root: root.into(),
            why,
        })
    };
    if !root.starts_with('/') {
        return bad("must be an absolute path");
    }
    if root.len() < 2 || root.len() > 1024 {
        return bad("must be a directory below / and at most 1024 characters");
    }
    if root.ends_with('/') {
        return bad("must not end with `/`");
    }
    if !root
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-' | b'.' | b'+' | b'@'))
    {
        return bad("may only hold letters, digits and `/ _ - . + @`");
    }
    if root[1..]
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return bad("must not have empty, `.` or `..` parts");
    }
    Ok(root.to_string())
}

/// Trees that never hold a codebase: a platform root may be neither one of them nor inside
/// one (a verify writes `sites/` into its root; `/etc/sites` must never be made).
const SYSTEM_TREES: &[&str] = &[
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/sys",
    "/usr",
    "/var/backups",
    "/var/cache",
    "/var/lib/mysql",
    "/var/lib/postgresql",
    "/var/lib/rabbitmq",
    "/var/lock",
    "/var/log",
    "/var/mail",
    "/var/run",
    "/var/spool",
];

/// Inside `/usr`, the trees where packaged or local codebases live (Debian's drupal
/// packages used `/usr/share/drupal7`): a root may be below them, not them.
const USR_CODEBASE_TREES: &[&str] = &["/usr/share", "/usr/local"];

/// Directories that hold other things than one codebase: a platform root may be below
/// them, not one of them.
const SYSTEM_DIRS: &[&str] = &[
    "/", "/home", "/media", "/mnt", "/opt", "/srv", "/tmp", "/var", "/var/lib", "/var/tmp",
    "/var/www",
];

/// Is `path` `dir` or below it? Lexical: both are clean absolute paths ([`parse_root`]).
pub fn path_within(path: &str, dir: &str) -> bool {
    dir == "/"
        || path == dir
        || path
            .strip_prefix(dir)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Where a platform root may not be, besides the system directories: berth's data root
/// and the roots of the other platforms on the same web server.
#[derive(Debug, Clone, Default)]
pub struct RootNeighbours {
    /// berth's data root; codebases may be kept strictly below `<data root>/platforms/`.
    pub data_root: Option<String>,
    /// `(platform, root)` of every other platform (not deleted) on the same web server.
    pub platforms: Vec<(String, String)>,
}

/// The rules a platform root must meet before anything is written, checked on the path's
/// text (the API may run on another host than the web server): not a system directory nor
/// inside a system tree, not berth's data root nor its own directories, and neither inside
/// another platform's root (which holds its sites' directories) nor containing one.
pub fn check_platform_root(root: &str, n: &RootNeighbours) -> Result<(), NameError> {
    let refuse = |why: String| {
        Err(NameError::RootRefused {
            root: root.into(),
            why,
        })
    };
    if SYSTEM_DIRS.contains(&root) || USR_CODEBASE_TREES.contains(&root) {
        return refuse(format!(
            "is a system directory: give the codebase's own directory below it, such as `{}/platforms/drupal-10`",
            root.trim_end_matches('/')
        ));
    }
    let codebase_tree = USR_CODEBASE_TREES.iter().any(|t| path_within(root, t));
    if let Some(tree) = SYSTEM_TREES
        .iter()
        .find(|t| path_within(root, t) && !(**t == "/usr" && codebase_tree))
    {
        return refuse(format!(
            "is in the system tree `{tree}`, which never holds a codebase (below /usr only /usr/share and /usr/local may)"
        ));
    }
    // As configured, perhaps with a trailing slash (`/var/lib/berth/`).
    let data_root = n.data_root.as_deref().map(|d| d.trim_end_matches('/'));
    if let Some(data) = data_root.filter(|d| !d.is_empty()) {
        let kept = format!("{data}/platforms");
        if path_within(data, root) {
            return refuse(format!(
                "is or contains berth's data root `{data}`, where berth writes vhosts, pools, zones and backups"
            ));
        }
        if path_within(root, data) && !(path_within(root, &kept) && root != kept) {
            return refuse(format!(
                "is inside berth's data root `{data}`: only codebases below `{kept}/` may be there"
            ));
        }
    }
    for (name, other) in &n.platforms {
        if root == other {
            return refuse(format!("is the root of platform `{name}` already"));
        }
        if path_within(root, other) {
            return refuse(format!(
                "is inside the root `{other}` of platform `{name}` (its code or its sites' directories)"
            ));
        }
        if path_within(other, root) {
            return refuse(format!("contains the root `{other}` of platform `{name}`"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_follow_dns_rules() {
        assert!(HostName::parse("web.example.com").is_ok());
        assert!(HostName::parse("a-1.b2").is_ok());
        for bad in [
            "",
            "Web.example.com",
            "a..b",
            ".a",
            "a.",
            "a/b",
            "../etc",
            "a b",
            "-a.com",
            "a-.com",
            "a_b.com",
        ] {
            assert!(HostName::parse(bad).is_err(), "{bad:?} should be refused");
        }
        let long_label = format!("{}.com", "a".repeat(64));
        assert!(matches!(
            HostName::parse(&long_label),
            Err(NameError::LabelTooLong { .. })
        ));
        assert!(HostName::parse(&format!("{}.com", "a".repeat(63))).is_ok());
        let too_long = vec!["abcdefghij"; 24].join(".");
        assert!(matches!(
            HostName::parse(&too_long),
            Err(NameError::TooLong { .. })
        ));
    }

    #[test]
    fn platform_names_and_roots_are_checked() {
        assert_eq!(
            PlatformName::parse("@platform_d7").unwrap().as_str(),
            "platform_d7"
        );
        for bad in [
            "platform_",
            "d7",
            "platform_D7",
            "platform_a/b",
            "platform_a.b",
        ] {
            assert!(PlatformName::parse(bad).is_err(), "{bad}");
        }
        assert!(parse_root("/var/aegir/platforms/drupal-7.98").is_ok());
        for bad in [
            "var/x", "/", "/a/../b", "/a//b", "/a/", "/a b", "/a'b", "/a/./b",
        ] {
            assert!(parse_root(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn server_names_follow_aegir_naming() {
        let host = HostName::parse("server.example.com").unwrap();
        assert_eq!(
            ServerName::for_host(&host).as_str(),
            "server_serverexamplecom"
        );
        assert_eq!(
            ServerName::parse("@server_master").unwrap().as_str(),
            "server_master"
        );
        for bad in [
            "master",
            "server_",
            "server_A",
            "server_a.b",
            "server_../x",
            "platform_x",
        ] {
            assert!(ServerName::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn a_new_server_name_must_agree_with_its_host() {
        let host = HostName::parse("db.example.com").unwrap();
        assert_eq!(
            ServerName::for_new_server(&host, None).unwrap().as_str(),
            "server_dbexamplecom"
        );
        assert!(ServerName::for_new_server(&host, Some("server_master")).is_ok());
        assert!(matches!(
            ServerName::for_new_server(&host, Some("server_other")),
            Err(NameError::ServerNameMismatch { .. })
        ));
    }

    #[test]
    fn a_host_too_long_for_a_server_name_is_refused_up_front() {
        // Found by fuzzing (fuzz/corpus/names): `server_` + 58 characters or more is over the 64
        // that `ServerName::parse` allows, so the server could never be named again.
        let host = HostName::parse(&format!("{}.example.com", "a".repeat(48))).unwrap();
        let err = ServerName::for_new_server(&host, None).unwrap_err();
        assert!(matches!(err, NameError::HostTooLongForServerName { .. }));
        assert!(err.to_string().contains("over 64 characters"), "{err}");
        assert!(ServerName::for_new_server(&host, Some("server_master")).is_ok());
        // The longest that works: 57 characters without the dots.
        let host = HostName::parse(&format!("{}.example.com", "a".repeat(47))).unwrap();
        let name = ServerName::for_new_server(&host, None).unwrap();
        assert_eq!(name.as_str().len(), 64);
        assert_eq!(ServerName::parse(name.as_str()), Ok(name));
    }

    #[test]
    fn site_names_are_normalised() {
        let n = |s: &str| SiteName::parse(s).map(|n| n.to_string());
        assert_eq!(n("WWW.Example.COM."), Ok("www.example.com".into()));
        assert_eq!(n("www.example.com"), Ok("www.example.com".into()));
        assert_eq!(n("bücher.example"), Ok("xn--bcher-kva.example".into()));
        assert_eq!(n("BÜCHER.Example."), Ok("xn--bcher-kva.example".into()));
        assert_eq!(n("例え.テスト"), Ok("xn--r8jz45g.xn--zckzah".into()));
        // Only one trailing dot is the DNS root.
        assert!(n("example.com..").is_err());
        // Server hosts are normalised alike, and may be single labels.
        assert_eq!(
            HostName::normalise("LocalHost.").map(|h| h.to_string()),
            Ok("localhost".into())
        );
        // What workers receive is canonical already: parse stays strict.
        assert!(HostName::parse("WWW.example.com").is_err());
    }

    #[test]
    fn ip_addresses_single_labels_and_long_names_are_not_site_names() {
        for ip in [
            "192.0.2.1",
            "192.0.2.1.",
            "1.2.3",
            "0x7f.1",
            "127.1",
            "::1",
            "[::1]",
            "2001:db8::1",
            "[2001:db8::1]",
            "::ffff:192.0.2.1",
        ] {
            assert!(
                matches!(SiteName::parse(ip), Err(NameError::IpAddress { .. })),
                "{ip}: {:?}",
                SiteName::parse(ip)
            );
        }
        for single in ["localhost", "intranet", "LOCALHOST.", "bücher"] {
            let err = SiteName::parse(single).unwrap_err();
            assert!(
                matches!(err, NameError::SingleLabel { .. }),
                "{single}: {err}"
            );
            assert!(err.to_string().contains(".example.com"), "{err}");
        }
        // Digits are fine in a name that does not end in a number.
        assert!(SiteName::parse("1.2.3.example").is_ok());
        assert!(SiteName::parse("123.example.com").is_ok());
        let exact = format!("{}.abcd", vec!["b".repeat(48); 4].join("."));
        assert_eq!(exact.len(), SITE_NAME_MAX);
        assert!(SiteName::parse(&exact).is_ok());
        let over = format!("{}.abcde", vec!["b".repeat(48); 4].join("."));
        assert_eq!(over.len(), SITE_NAME_MAX + 1);
        assert!(matches!(
            SiteName::parse(&over),
            Err(NameError::SiteNameTooLong { len: 201, .. })
        ));
        // A host name DNS allows (253) is still too long for a site.
        let dns_max = format!("{}.{}", vec!["c".repeat(63); 3].join("."), "d".repeat(61));
        assert_eq!(dns_max.len(), 253);
        assert!(HostName::parse(&dns_max).is_ok());
        assert!(SiteName::parse(&dns_max).is_err());
        // An IDN's limit is its punycode's length.
        let label = format!("bücher{}", "a".repeat(40));
        let idn = format!("{}.example", vec![label; 4].join("."));
        assert!(idn.chars().count() < SITE_NAME_MAX);
        let err = SiteName::parse(&idn).unwrap_err();
        assert!(matches!(err, NameError::SiteNameTooLong { .. }), "{err}");
    }

    #[test]
    fn the_longest_site_name_fits_nginx_and_a_vhost_file_name() {
        // nginx refuses to start ("could not build server_names_hash, you should increase
        // server_names_hash_bucket_size") when a name needs a bigger bucket than it has.
        assert!(nginx_bucket_bytes(SITE_NAME_MAX) <= NGINX_SERVER_NAMES_HASH_BUCKET_SIZE);
        assert_eq!(nginx_bucket_bytes(SITE_NAME_MAX), 256);
        // Debian's default bucket (one 64-byte cache line) holds 46 characters; the test
        // nginx's former 128, 110: both too small for a 200-character alias.
        assert_eq!(nginx_bucket_bytes(46), 64);
        assert_eq!(nginx_bucket_bytes(47), 128);
        assert_eq!(nginx_bucket_bytes(111), 192);
        assert!(format!("{}.conf", "a".repeat(SITE_NAME_MAX)).len() <= 255);
        for conf in [
            include_str!("../../../ops/nginx/berth.conf"),
            include_str!("../../../tests/servers/src/web.rs"),
        ] {
            let size: usize = conf
                .lines()
                .find_map(|l| {
                    l.trim()
                        .strip_prefix("server_names_hash_bucket_size ")?
                        .trim_end_matches(';')
                        .parse()
                        .ok()
                })
                .expect("server_names_hash_bucket_size is set");
            assert!(size >= NGINX_SERVER_NAMES_HASH_BUCKET_SIZE, "{size}");
        }
    }

    #[test]
    fn platform_roots_stay_out_of_system_berth_and_other_platforms() {
        let n = RootNeighbours {
            data_root: Some("/var/lib/berth".into()),
            platforms: vec![("platform_a".into(), "/var/aegir/platforms/a".into())],
        };
        let ok = |r: &str| check_platform_root(r, &n);
        for good in [
            "/var/aegir/platforms/b",
            "/var/aegir/platforms/ab",
            "/srv/www/drupal",
            "/home/aegir/platforms/d10",
            "/tmp/x/platforms/d10",
            "/usr/share/drupal7",
            "/usr/local/www/d10",
            "/var/www/d10",
            "/var/lib/berth/platforms/d10",
            "/opt/drupal",
        ] {
            assert_eq!(ok(good), Ok(()), "{good}");
        }
        for (bad, says) in [
            ("/etc", "system tree `/etc`"),
            ("/etc/drupal", "system tree `/etc`"),
            ("/usr", "system tree `/usr`"),
            ("/usr/lib/d10", "system tree `/usr`"),
            ("/usr/share", "system directory"),
            ("/proc/1", "system tree `/proc`"),
            ("/sys", "system tree"),
            ("/dev/shm/x", "system tree `/dev`"),
            ("/boot/x", "system tree"),
            ("/root/d10", "system tree `/root`"),
            ("/run/x", "system tree"),
            ("/var/log/x", "system tree"),
            ("/var/lib/mysql/x", "system tree"),
            ("/home", "system directory"),
            ("/tmp", "system directory"),
            ("/var", "system directory"),
            ("/var/www", "system directory"),
            ("/var/lib/berth", "data root"),
            (
                "/var/lib/berth/config/server_master",
                "inside berth's data root",
            ),
            ("/var/lib/berth/site-tmp/200000", "inside berth's data root"),
            ("/var/lib/berth/platforms", "inside berth's data root"),
            (
                "/var/aegir/platforms/a",
                "is the root of platform `platform_a`",
            ),
            ("/var/aegir/platforms/a/sites/x.com", "inside the root"),
            ("/var/aegir/platforms/a/core", "inside the root"),
            ("/var/aegir/platforms", "contains the root"),
            ("/var/aegir", "contains the root"),
        ] {
            let err = ok(bad).expect_err(bad).to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
        let slash = RootNeighbours {
            data_root: Some("/var/lib/berth/".into()),
            platforms: vec![],
        };
        assert!(check_platform_root("/var/lib/berth/config", &slash).is_err());
        assert!(check_platform_root("/var/lib/berth/platforms/d10", &slash).is_ok());
        // `/` is refused by parse_root already; and by the rules.
        assert!(check_platform_root("/", &RootNeighbours::default()).is_err());
        assert!(path_within("/a/b", "/a") && !path_within("/ab", "/a"));
    }
}
