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

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for HostName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
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
}
