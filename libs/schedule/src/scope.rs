//! Whom a schedule covers: every site, a platform's, a client's, or one site; a site follows
//! the most specific schedule of a kind that covers it (site, then client, then platform,
//! then everything), so a default is overridden per site — and a disabled site schedule turns
//! that kind off for the site.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    All,
    Platform(String),
    Client(String),
    Site(String),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{0}` is not a scope: `all`, `platform:<name>`, `client:<name>` or `site:<uri>`")]
pub struct ScopeError(pub String);

impl Scope {
    pub fn parse(s: &str) -> Result<Self, ScopeError> {
        let bad = || ScopeError(s.to_string());
        if s == "all" {
            return Ok(Self::All);
        }
        let (kind, name) = s.split_once(':').ok_or_else(bad)?;
        let name = name.trim().trim_start_matches('@').to_lowercase();
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(bad());
        }
        match kind {
            "platform" => Ok(Self::Platform(name)),
            "client" => Ok(Self::Client(name)),
            "site" => Ok(Self::Site(name.trim_end_matches('.').to_string())),
            _ => Err(bad()),
        }
    }

    /// How specific: a site's own schedule wins over its client's, its client's over its
    /// platform's, its platform's over the global default.
    pub fn rank(&self) -> u8 {
        match self {
            Self::All => 0,
            Self::Platform(_) => 1,
            Self::Client(_) => 2,
            Self::Site(_) => 3,
        }
    }

    pub fn covers(&self, site: &SiteHome<'_>) -> bool {
        match self {
            Self::All => true,
            Self::Platform(p) => p == site.platform,
            Self::Client(c) => site.client == Some(c.as_str()),
            Self::Site(u) => u == site.uri,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::All => f.write_str("all"),
            Self::Platform(p) => write!(f, "platform:{p}"),
            Self::Client(c) => write!(f, "client:{c}"),
            Self::Site(s) => write!(f, "site:{s}"),
        }
    }
}

/// What scoping needs to know of a site.
#[derive(Debug, Clone, Copy)]
pub struct SiteHome<'a> {
    pub uri: &'a str,
    pub platform: &'a str,
    pub client: Option<&'a str>,
}

/// What scoping needs to know of a schedule (all of one kind).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopedSchedule<Id> {
    pub id: Id,
    pub scope: Scope,
    pub enabled: bool,
}

/// Schedules given as (scope, enabled), by their position; those whose scope no longer
/// parses are left out.
pub fn scoped<'a>(
    schedules: impl IntoIterator<Item = (&'a str, bool)>,
) -> Vec<ScopedSchedule<usize>> {
    schedules
        .into_iter()
        .enumerate()
        .filter_map(|(id, (scope, enabled))| {
            Some(ScopedSchedule {
                id,
                scope: Scope::parse(scope).ok()?,
                enabled,
            })
        })
        .collect()
}

/// The schedule `site` follows among `schedules` (all of one kind): the most specific that
/// covers it, unless that one is disabled.
pub fn effective<'a, Id>(
    schedules: &'a [ScopedSchedule<Id>],
    site: &SiteHome<'_>,
) -> Option<&'a ScopedSchedule<Id>> {
    schedules
        .iter()
        .filter(|s| s.scope.covers(site))
        .max_by_key(|s| s.scope.rank())
        .filter(|s| s.enabled)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(id: u32, scope: &str, enabled: bool) -> ScopedSchedule<u32> {
        ScopedSchedule {
            id,
            scope: Scope::parse(scope).unwrap(),
            enabled,
        }
    }

    #[test]
    fn scopes_parse_and_print_back() {
        for text in ["all", "platform:d10", "client:acme", "site:www.example.com"] {
            assert_eq!(Scope::parse(text).unwrap().to_string(), text);
        }
        assert_eq!(
            Scope::parse("site:@WWW.Example.com.").unwrap(),
            Scope::Site("www.example.com".into())
        );
        for bad in ["", "everything", "site:", "server:x", "platform:a b"] {
            assert!(Scope::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_most_specific_schedule_wins_and_a_disabled_override_turns_it_off() {
        let schedules = vec![
            s(1, "all", true),
            s(2, "platform:d10", true),
            s(3, "client:acme", true),
            s(4, "site:off.example", false),
        ];
        let home = |uri, platform, client| SiteHome {
            uri,
            platform,
            client,
        };
        let id = |site| effective(&schedules, &site).map(|s| s.id);
        assert_eq!(id(home("a.example", "d7", None)), Some(1));
        assert_eq!(id(home("b.example", "d10", None)), Some(2));
        assert_eq!(id(home("c.example", "d10", Some("acme"))), Some(3));
        assert_eq!(id(home("off.example", "d10", Some("acme"))), None);
        assert_eq!(
            effective(&schedules[1..2], &home("a.example", "d7", None)),
            None
        );
    }
}
