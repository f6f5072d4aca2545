//! Token scopes and the one decision every `/api/v1` request passes: may this caller do this
//! method on this route? Pure functions; [`crate::guard::authorize`] applies them.
//!
//! A scope is `admin` (everything, tokens and the audit log included) or `<family>:read` /
//! `<family>:write` (write implies read). A token bound to a client may hold only the
//! families a client acts on; operator routes (servers, dead letters, backup targets, the
//! audit log) answer it 404 as if they did not exist.

use axum::http::Method;
use std::collections::BTreeSet;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    Servers,
    Platforms,
    Sites,
    Backups,
    Tasks,
    Clients,
    Webhooks,
    DeadLetters,
    Schedules,
    Audit,
    Tokens,
}

impl Family {
    pub const ALL: [Family; 11] = [
        Self::Servers,
        Self::Platforms,
        Self::Sites,
        Self::Backups,
        Self::Tasks,
        Self::Clients,
        Self::Webhooks,
        Self::DeadLetters,
        Self::Schedules,
        Self::Audit,
        Self::Tokens,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Servers => "servers",
            Self::Platforms => "platforms",
            Self::Sites => "sites",
            Self::Backups => "backups",
            Self::Tasks => "tasks",
            Self::Clients => "clients",
            Self::Webhooks => "webhooks",
            Self::DeadLetters => "dead-letters",
            Self::Schedules => "schedules",
            Self::Audit => "audit",
            Self::Tokens => "tokens",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Access {
    Read,
    Write,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    Admin,
    On(Family, Access),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a scope: use `admin`, or `<family>:read` or `<family>:write` with a family of \
     servers, platforms, sites, backups, tasks, clients, webhooks, dead-letters, schedules, \
     audit, tokens"
)]
pub struct ScopeError(pub String);

impl Scope {
    pub fn parse(s: &str) -> Result<Self, ScopeError> {
        if s == "admin" {
            return Ok(Self::Admin);
        }
        let bad = || ScopeError(s.to_string());
        let (family, access) = s.split_once(':').ok_or_else(bad)?;
        let family = Family::parse(family).ok_or_else(bad)?;
        let access = match access {
            "read" => Access::Read,
            "write" => Access::Write,
            _ => return Err(bad()),
        };
        Ok(Self::On(family, access))
    }

    /// Whether a token bound to a client may hold this scope.
    pub fn for_clients(&self) -> bool {
        match self {
            Self::Admin => false,
            Self::On(f, a) => match f {
                Family::Sites
                | Family::Backups
                | Family::Tasks
                | Family::Schedules
                | Family::Webhooks
                | Family::Tokens => true,
                Family::Platforms | Family::Clients => *a == Access::Read,
                Family::Servers | Family::DeadLetters | Family::Audit => false,
            },
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Admin => f.write_str("admin"),
            Self::On(family, Access::Read) => write!(f, "{}:read", family.as_str()),
            Self::On(family, Access::Write) => write!(f, "{}:write", family.as_str()),
        }
    }
}

/// A token's scopes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scopes(BTreeSet<Scope>);

impl Scopes {
    /// Scopes as stored (space separated) or given (each one a word). At least one.
    pub fn parse<'a>(words: impl IntoIterator<Item = &'a str>) -> Result<Self, ScopeError> {
        let set = words
            .into_iter()
            .filter(|w| !w.is_empty())
            .map(Scope::parse)
            .collect::<Result<BTreeSet<_>, _>>()?;
        if set.is_empty() {
            return Err(ScopeError(String::new()));
        }
        Ok(Self(set))
    }

    pub fn from_stored(s: &str) -> Result<Self, ScopeError> {
        Self::parse(s.split_whitespace())
    }

    pub fn to_stored(&self) -> String {
        self.iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(" ")
    }

    pub fn iter(&self) -> impl Iterator<Item = &Scope> {
        self.0.iter()
    }

    pub fn is_admin(&self) -> bool {
        self.0.contains(&Scope::Admin)
    }

    /// `admin` allows everything; `write` implies `read`.
    pub fn allows(&self, family: Family, access: Access) -> bool {
        self.is_admin()
            || self.0.contains(&Scope::On(family, Access::Write))
            || (access == Access::Read && self.0.contains(&Scope::On(family, Access::Read)))
    }

    /// Whether every scope of `other` is allowed by these: what a token may hand on.
    pub fn covers(&self, other: &Scopes) -> bool {
        other.iter().all(|s| match s {
            Scope::Admin => self.is_admin(),
            Scope::On(f, a) => self.allows(*f, *a),
        })
    }
}

/// What a route is, for the decision: its family, whether it reads or writes, and whether
/// it is an operator's (no client-bound token may know it exists).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub family: Family,
    pub access: Access,
    pub operator_only: bool,
}

/// Classifies `method` on `path` (as under `/api/v1`, e.g. `/sites/a.example/backups`).
/// `None`: a path berth does not know, refused to all but `admin` (fail closed: a new
/// route nobody classified is not open to every token).
pub fn classify(method: &Method, path: &str) -> Option<Route> {
    let access = if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        Access::Read
    } else {
        Access::Write
    };
    let mut parts = path.trim_start_matches('/').split('/');
    let first = parts.next().unwrap_or("");
    let second = parts.next();
    let third = parts.next();
    let route = |family, operator_only| {
        Some(Route {
            family,
            access,
            operator_only,
        })
    };
    match first {
        "servers" => route(Family::Servers, true),
        "platforms" => route(Family::Platforms, access == Access::Write),
        "sites" => match (second, third) {
            (Some(_), Some("backups" | "retention")) => route(Family::Backups, false),
            _ => route(Family::Sites, false),
        },
        "backup-targets" => route(Family::Backups, true),
        "tasks" => route(Family::Tasks, false),
        "schedules" | "schedule-alerts" => route(Family::Schedules, false),
        "dead-letters" => route(Family::DeadLetters, true),
        // A client's own token never changes its standing (nor learns these exist).
        "clients" => match third {
            Some("suspend" | "unsuspend" | "cancel") => route(Family::Clients, true),
            _ => route(Family::Clients, false),
        },
        "webhooks" | "webhook-deliveries" => route(Family::Webhooks, false),
        "audit" => route(Family::Audit, true),
        "tokens" => route(Family::Tokens, false),
        _ => None,
    }
}

/// The answer to "may this caller do this".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// 403: the token lacks the scope (named).
    Forbidden(String),
    /// 404: not for a client-bound token; answered as if the route did not exist.
    Hidden,
}

pub fn authorize(scopes: &Scopes, bound: bool, route: Option<Route>) -> Verdict {
    let Some(route) = route else {
        return if scopes.is_admin() {
            Verdict::Allow
        } else {
            Verdict::Hidden
        };
    };
    if !scopes.allows(route.family, route.access) {
        let need = Scope::On(route.family, route.access);
        return Verdict::Forbidden(format!(
            "this token's scopes ({}) do not include `{need}`{}",
            scopes.to_stored(),
            if route.access == Access::Read {
                format!(" or `{}:write`", route.family.as_str())
            } else {
                String::new()
            }
        ));
    }
    if bound && route.operator_only {
        return Verdict::Hidden;
    }
    Verdict::Allow
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scopes(s: &str) -> Scopes {
        Scopes::from_stored(s).unwrap()
    }

    #[test]
    fn scopes_parse_and_print_back() {
        let s = scopes("sites:write tasks:read  admin");
        assert_eq!(s.to_stored(), "admin sites:write tasks:read");
        for bad in [
            "",
            "client",
            "sites",
            "sites:delete",
            "site:read",
            "admin:read",
            " ",
        ] {
            assert!(Scopes::from_stored(bad).is_err(), "{bad:?}");
        }
        for f in Family::ALL {
            for a in ["read", "write"] {
                let w = format!("{}:{a}", f.as_str());
                assert_eq!(Scope::parse(&w).unwrap().to_string(), w);
            }
        }
    }

    #[test]
    fn write_implies_read_and_admin_allows_everything() {
        let w = scopes("sites:write");
        assert!(w.allows(Family::Sites, Access::Read));
        assert!(w.allows(Family::Sites, Access::Write));
        assert!(!w.allows(Family::Tasks, Access::Read));
        let r = scopes("sites:read");
        assert!(r.allows(Family::Sites, Access::Read));
        assert!(!r.allows(Family::Sites, Access::Write));
        let a = scopes("admin");
        for f in Family::ALL {
            assert!(a.allows(f, Access::Write));
        }
    }

    #[test]
    fn a_token_hands_on_only_what_it_holds() {
        let mine = scopes("sites:write tasks:read");
        assert!(mine.covers(&scopes("sites:read")));
        assert!(mine.covers(&scopes("sites:write tasks:read")));
        assert!(!mine.covers(&scopes("tasks:write")));
        assert!(!mine.covers(&scopes("admin")));
        assert!(scopes("admin").covers(&scopes("admin servers:write")));
    }

    #[test]
    fn routes_are_classified_by_family_and_method() {
        let c = |m: Method, p: &str| classify(&m, p).unwrap();
        assert_eq!(c(Method::GET, "/sites").family, Family::Sites);
        assert_eq!(
            c(Method::GET, "/sites/a.example/backups").family,
            Family::Backups
        );
        assert_eq!(
            c(Method::GET, "/sites/a.example/retention").family,
            Family::Backups
        );
        assert_eq!(
            c(Method::GET, "/sites/a.example/packages").family,
            Family::Sites
        );
        assert_eq!(c(Method::PATCH, "/sites/a.example").access, Access::Write);
        assert_eq!(c(Method::DELETE, "/tokens/x").access, Access::Write);
        assert_eq!(c(Method::GET, "/schedule-alerts").family, Family::Schedules);
        assert!(c(Method::GET, "/servers").operator_only);
        assert!(c(Method::GET, "/backup-targets/x").operator_only);
        assert!(!c(Method::GET, "/platforms").operator_only);
        assert!(c(Method::POST, "/platforms").operator_only);
        assert_eq!(classify(&Method::GET, "/nothing-here"), None);
    }

    #[test]
    fn read_only_tokens_are_forbidden_every_write() {
        let r = scopes("sites:read tasks:read backups:read schedules:read");
        for (m, p) in [
            (Method::POST, "/sites"),
            (Method::PATCH, "/sites/a.example"),
            (Method::DELETE, "/sites/a.example"),
            (Method::POST, "/tasks"),
            (Method::POST, "/tasks/x/cancel"),
            (Method::DELETE, "/schedules/x"),
        ] {
            assert!(
                matches!(authorize(&r, false, classify(&m, p)), Verdict::Forbidden(_)),
                "{m} {p}"
            );
        }
        assert_eq!(
            authorize(&r, false, classify(&Method::GET, "/sites")),
            Verdict::Allow
        );
    }

    #[test]
    fn client_tokens_do_not_see_operator_routes() {
        let s = scopes("sites:write backups:read");
        assert_eq!(
            authorize(&s, true, classify(&Method::GET, "/backup-targets")),
            Verdict::Hidden
        );
        assert_eq!(
            authorize(&s, false, classify(&Method::GET, "/backup-targets")),
            Verdict::Allow
        );
        assert!(matches!(
            authorize(&s, true, classify(&Method::GET, "/servers")),
            Verdict::Forbidden(_)
        ));
        assert_eq!(authorize(&s, true, None), Verdict::Hidden);
        assert_eq!(authorize(&scopes("admin"), false, None), Verdict::Allow);
    }

    #[test]
    fn client_tokens_hold_only_client_families() {
        for ok in [
            "sites:write",
            "tasks:write",
            "platforms:read",
            "clients:read",
            "webhooks:write",
        ] {
            assert!(Scope::parse(ok).unwrap().for_clients(), "{ok}");
        }
        for no in [
            "admin",
            "servers:read",
            "platforms:write",
            "clients:write",
            "dead-letters:read",
            "audit:read",
        ] {
            assert!(!Scope::parse(no).unwrap().for_clients(), "{no}");
        }
    }
}
