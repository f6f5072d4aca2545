//! Package comparison (seed 000, "Upgrades, warnings, errors?"): may a site move from its
//! platform to another? For each package enabled on the site, the target platform either
//! lacks it (a warning: Drupal will disable it), has an older schema (an error: a site's
//! schema cannot go back), has a newer version or schema (an upgrade: `updatedb` runs), or
//! the same. The site's install profile must exist on the target, by name or by its
//! `old_short_name`.
//!
//! Versions order as Drupal's release names do: `dev < unstable < alpha < beta < rc <
//! release`, after the numbers (`7.x-3.29`, `8.x-1.14`, `10.3.1`, `3.0-beta2`, `3.x-dev`).

use berth_contracts::{Package, PackageType};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;

/// A release's stability, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stability {
    Dev,
    Unstable,
    Alpha,
    Beta,
    Rc,
    Release,
}

/// A parsed version: its numbers (a branch's `x` counts as 0), stability and the stability's
/// number (`beta2` → 2).
#[derive(Debug, Clone)]
pub struct Version {
    numbers: Vec<u64>,
    stability: Stability,
    stability_number: u64,
}

impl Version {
    /// Parses any version string; what cannot be read counts as 0, so it never fails.
    pub fn parse(v: &str) -> Self {
        let v = v.trim().to_ascii_lowercase();
        // Contrib versions carry the core they are for: `7.x-3.29`, `8.x-1.14`.
        let v = match v.split_once(".x-") {
            Some((core, rest)) if core.chars().all(|c| c.is_ascii_digit()) => rest.to_string(),
            _ => v,
        };
        let (nums, suffix) = match v.find(|c: char| c == '-' || c.is_ascii_alphabetic()) {
            Some(i) if !v[..i].ends_with('.') || i == 0 => (&v[..i], &v[i..]),
            Some(i) => (&v[..i - 1], &v[i..]),
            None => (v.as_str(), ""),
        };
        let mut numbers: Vec<u64> = nums
            .split('.')
            .filter(|p| !p.is_empty())
            .map(|p| p.parse().unwrap_or(0))
            .collect();
        // `3.x-dev`: the branch's x.
        let mut suffix = suffix.trim_start_matches('-');
        if let Some(rest) = suffix.strip_prefix('x') {
            numbers.push(0);
            suffix = rest.trim_start_matches(['-', '.']);
        }
        let word: String = suffix
            .chars()
            .take_while(|c| c.is_ascii_alphabetic())
            .collect();
        let stability = match word.as_str() {
            "" => Stability::Release,
            "dev" => Stability::Dev,
            "unstable" => Stability::Unstable,
            "alpha" => Stability::Alpha,
            "beta" => Stability::Beta,
            "rc" => Stability::Rc,
            _ => Stability::Dev,
        };
        let stability_number = suffix[word.len()..]
            .trim_start_matches(['.', '-'])
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect::<String>()
            .parse()
            .unwrap_or(0);
        Self {
            numbers,
            stability,
            stability_number,
        }
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        let n = self.numbers.len().max(other.numbers.len());
        let at = |v: &Vec<u64>, i: usize| v.get(i).copied().unwrap_or(0);
        for i in 0..n {
            match at(&self.numbers, i).cmp(&at(&other.numbers, i)) {
                Ordering::Equal => {}
                o => return o,
            }
        }
        (self.stability, self.stability_number).cmp(&(other.stability, other.stability_number))
    }
}

impl PartialEq for Version {
    /// `1.14` and `1.14.0` are the same release.
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// What moving a package to the target means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Same version and schema.
    Same,
    /// A newer version or schema: `updatedb` runs.
    Upgrade,
    /// Absent on the target (Drupal will disable it), or an older version with the same schema.
    Warning,
    /// The target's schema is older than the site's: the move is refused.
    Error,
}

/// One row of a comparison.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row {
    pub name: String,
    #[serde(rename = "type")]
    pub package_type: PackageType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_schema: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_schema: Option<i64>,
    pub verdict: Verdict,
    pub reason: String,
}

/// A comparison: every row, and counts by verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Comparison {
    pub rows: Vec<Row>,
    pub errors: usize,
    pub warnings: usize,
    pub upgrades: usize,
}

impl Comparison {
    pub fn ok(&self) -> bool {
        self.errors == 0
    }
}

fn verdict(cur: &Package, target: Option<&Package>) -> (Verdict, String) {
    let Some(t) = target else {
        return (
            Verdict::Warning,
            "not on the target platform: it will be disabled".into(),
        );
    };
    if let (Some(s), Some(ts)) = (cur.schema_version, t.schema_version)
        && ts < s
    {
        return (
            Verdict::Error,
            format!("the target's schema {ts} is older than the installed {s}"),
        );
    }
    let schema_up = matches!((cur.schema_version, t.schema_version), (Some(s), Some(ts)) if ts > s)
        || (cur.schema_version.is_none() && t.schema_version.is_some());
    let version_cmp = match (&cur.version, &t.version) {
        (Some(a), Some(b)) => Version::parse(b).cmp(&Version::parse(a)),
        _ => Ordering::Equal,
    };
    match (schema_up, version_cmp) {
        (true, _) => (
            Verdict::Upgrade,
            "a newer schema: updatedb will run its updates".into(),
        ),
        (false, Ordering::Greater) => (Verdict::Upgrade, "a newer version".into()),
        (false, Ordering::Less) => (
            Verdict::Warning,
            "an older version with the same schema".into(),
        ),
        (false, Ordering::Equal) => (Verdict::Same, "unchanged".into()),
    }
}

/// Compares what is installed (a site's enabled packages, or a platform's packages) with a
/// target platform's packages. `profile`: the site's install profile, which the target must
/// offer (by name or `old_short_name`).
pub fn compare(current: &[Package], target: &[Package], profile: Option<&str>) -> Comparison {
    let mut rows = Vec::new();
    for cur in current {
        if cur.package_type == PackageType::Profile || cur.enabled == Some(false) {
            continue;
        }
        let t = target
            .iter()
            .find(|t| t.name == cur.name && t.package_type == cur.package_type);
        let (verdict, reason) = verdict(cur, t);
        rows.push(Row {
            name: cur.name.clone(),
            package_type: cur.package_type,
            current_version: cur.version.clone(),
            current_schema: cur.schema_version,
            target_version: t.and_then(|t| t.version.clone()),
            target_schema: t.and_then(|t| t.schema_version),
            verdict,
            reason,
        });
    }
    if let Some(p) = profile {
        let found = target.iter().find(|t| {
            t.package_type == PackageType::Profile
                && (t.name == p || t.old_short_name.as_deref() == Some(p))
        });
        let (verdict, reason) = match found {
            Some(t) if t.name == p => (Verdict::Same, "the profile is on the target".into()),
            Some(t) => (
                Verdict::Same,
                format!(
                    "the profile is on the target as `{}` (its old name)",
                    t.name
                ),
            ),
            None => (
                Verdict::Error,
                format!("the target platform has no install profile `{p}`"),
            ),
        };
        rows.push(Row {
            name: p.to_string(),
            package_type: PackageType::Profile,
            current_version: None,
            current_schema: None,
            target_version: found.and_then(|t| t.version.clone()),
            target_schema: None,
            verdict,
            reason,
        });
    }
    rows.sort_by(|a, b| {
        (b.verdict, a.package_type, &a.name).cmp(&(a.verdict, b.package_type, &b.name))
    });
    let count = |v: Verdict| rows.iter().filter(|r| r.verdict == v).count();
    Comparison {
        errors: count(Verdict::Error),
        warnings: count(Verdict::Warning),
        upgrades: count(Verdict::Upgrade),
        rows,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(name: &str, version: Option<&str>, schema: Option<i64>) -> Package {
        Package {
            name: name.into(),
            package_type: PackageType::Module,
            title: None,
            version: version.map(Into::into),
            schema_version: schema,
            path: String::new(),
            languages: Vec::new(),
            old_short_name: None,
            enabled: None,
        }
    }

    fn profile(name: &str, old: Option<&str>) -> Package {
        Package {
            package_type: PackageType::Profile,
            old_short_name: old.map(Into::into),
            ..pkg(name, None, None)
        }
    }

    #[test]
    fn versions_order_dev_unstable_alpha_beta_rc_release() {
        let order = [
            "7.x-3.x-dev",
            "7.x-3.0-unstable1",
            "7.x-3.0-alpha1",
            "7.x-3.0-alpha2",
            "7.x-3.0-beta1",
            "7.x-3.0-rc1",
            "7.x-3.0",
            "7.x-3.1",
            "7.x-3.29",
            "7.x-4.0-dev",
        ];
        for w in order.windows(2) {
            assert!(
                Version::parse(w[0]) < Version::parse(w[1]),
                "{} < {}",
                w[0],
                w[1]
            );
        }
        assert!(Version::parse("10.3.1") > Version::parse("10.3.0"));
        assert!(Version::parse("10.3.0-rc1") < Version::parse("10.3.0"));
        assert_eq!(Version::parse("8.x-1.14"), Version::parse("1.14.0"));
        assert!(Version::parse("9.5.11") < Version::parse("10.0.0"));
        // Anything parses.
        for junk in ["", "x", "-", "..", "7.x-", "beta", "1..2", "Ä"] {
            let _ = Version::parse(junk);
        }
    }

    #[test]
    fn the_seeds_four_platforms() {
        // Site: module X at schema 6003 (from seed 000's example).
        let site = [pkg("x", Some("6.x-1.0"), Some(6003))];
        let a = compare(&site, &[pkg("x", Some("6.x-1.0"), Some(6002))], None);
        assert_eq!(a.rows[0].verdict, Verdict::Error);
        assert!(!a.ok());
        let b = compare(&site, &[], None);
        assert_eq!(b.rows[0].verdict, Verdict::Warning);
        assert!(b.ok());
        let c = compare(&site, &[pkg("x", Some("6.x-1.0"), Some(6003))], None);
        assert_eq!(c.rows[0].verdict, Verdict::Same);
        let d = compare(&site, &[pkg("x", Some("6.x-1.1"), Some(6004))], None);
        assert_eq!(d.rows[0].verdict, Verdict::Upgrade);
        assert_eq!(d.upgrades, 1);
    }

    #[test]
    fn versions_without_schema_and_older_versions() {
        let site = [pkg("views", Some("7.x-3.20"), None)];
        let newer = compare(&site, &[pkg("views", Some("7.x-3.29"), None)], None);
        assert_eq!(newer.rows[0].verdict, Verdict::Upgrade);
        let older = compare(&site, &[pkg("views", Some("7.x-3.0-beta1"), None)], None);
        assert_eq!(older.rows[0].verdict, Verdict::Warning);
    }

    #[test]
    fn the_profile_must_exist_on_the_target_or_under_its_old_name() {
        let none = compare(&[], &[profile("minimal", None)], Some("standard"));
        assert_eq!(none.errors, 1);
        assert!(none.rows[0].reason.contains("standard"));
        let renamed = compare(
            &[],
            &[profile("berth_custom", Some("berth_legacy"))],
            Some("berth_legacy"),
        );
        assert!(renamed.ok());
        assert!(renamed.rows[0].reason.contains("berth_custom"));
    }

    #[test]
    fn errors_sort_first() {
        let site = [
            pkg("a", Some("1.0"), Some(10)),
            pkg("b", Some("1.0"), Some(10)),
            pkg("c", Some("1.0"), Some(10)),
        ];
        let target = [
            pkg("b", Some("1.0"), Some(9)),
            pkg("c", Some("1.1"), Some(10)),
        ];
        let cmp = compare(&site, &target, None);
        let order: Vec<_> = cmp.rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(order, ["b", "a", "c"]);
        assert_eq!((cmp.errors, cmp.warnings, cmp.upgrades), (1, 1, 1));
    }
}
