//! Which backups a retention policy keeps, with restic's `forget` semantics: keep the last
//! N; keep the newest backup in each of the last N hours, days, ISO weeks, months and years
//! that have one; keep all made within a span of the newest; the rules are OR-ed and each kept
//! backup says which rules keep it. Never forgotten, whatever the rules: the newest good
//! backup, and a backup a running task uses. Backups made before a restore, migrate or delete
//! are weighed by their own rules.
//!
//! Periods are calendar periods in UTC. Pure: the pruning task applies the answer.

use berth_contracts::schedule::{RetentionSpec, RulesSpec};
use chrono::{DateTime, Datelike, Duration, Timelike, Utc};
use std::collections::BTreeSet;

/// One rule set: each field 0 (or `None`) is off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rules {
    pub last: u32,
    pub hourly: u32,
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
    pub yearly: u32,
    /// Keep every backup made within this span of the newest one.
    pub within: Option<Duration>,
}

impl Rules {
    /// No rule: nothing of this class is forgotten (restic refuses an empty policy; berth
    /// keeps everything rather than guess).
    pub fn is_empty(&self) -> bool {
        self.last == 0
            && self.hourly == 0
            && self.daily == 0
            && self.weekly == 0
            && self.monthly == 0
            && self.yearly == 0
            && self.within.is_none()
    }
}

/// A site's retention: the rules for its ordinary backups (on request, by schedule, before a
/// disable) and for the backups berth makes before a restore, migrate or delete.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    pub regular: Rules,
    pub before_change: Rules,
}

/// What the policy is told of a backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backup<T> {
    pub id: T,
    pub made_at: DateTime<Utc>,
    /// Made by a restore, migrate or delete before it changed the site.
    pub before_change: bool,
    /// Its file is whole (a backup whose check failed is never "the newest good one").
    pub good: bool,
    /// A task that is running or queued uses it (a restore from it, a copy of it).
    pub in_use: bool,
}

/// Why a backup is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    Newest,
    InUse,
    NoRules,
    Last,
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Yearly,
    Within,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Newest => "the newest good backup",
            Self::InUse => "used by a task",
            Self::NoRules => "no rule forgets it",
            Self::Last => "keep-last",
            Self::Hourly => "keep-hourly",
            Self::Daily => "keep-daily",
            Self::Weekly => "keep-weekly",
            Self::Monthly => "keep-monthly",
            Self::Yearly => "keep-yearly",
            Self::Within => "keep-within",
        }
    }
}

/// The verdict on one backup: kept for these reasons, or forgotten (no reason).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict<T> {
    pub id: T,
    pub keep: BTreeSet<Reason>,
}

impl<T> Verdict<T> {
    pub fn kept(&self) -> bool {
        !self.keep.is_empty()
    }
}

/// The calendar period a time falls in, as a comparable key.
type Period = fn(DateTime<Utc>) -> (i32, u32, u32, u32);

/// The verdicts on `backups` (any order), newest first.
pub fn apply<T: Clone>(policy: &Policy, backups: &[Backup<T>]) -> Vec<Verdict<T>> {
    let mut order: Vec<usize> = (0..backups.len()).collect();
    order.sort_by(|&a, &b| backups[b].made_at.cmp(&backups[a].made_at));
    let mut keep: Vec<BTreeSet<Reason>> = vec![BTreeSet::new(); backups.len()];
    if let Some(&newest) = order.iter().find(|&&i| backups[i].good) {
        keep[newest].insert(Reason::Newest);
    }
    for &i in &order {
        if backups[i].in_use {
            keep[i].insert(Reason::InUse);
        }
    }
    for before_change in [false, true] {
        let rules = if before_change {
            &policy.before_change
        } else {
            &policy.regular
        };
        let class: Vec<usize> = order
            .iter()
            .copied()
            .filter(|&i| backups[i].before_change == before_change)
            .collect();
        if rules.is_empty() {
            for &i in &class {
                keep[i].insert(Reason::NoRules);
            }
            continue;
        }
        for &i in class.iter().take(rules.last as usize) {
            keep[i].insert(Reason::Last);
        }
        let periods: [(u32, Reason, Period); 5] = [
            (rules.hourly, Reason::Hourly, |t| {
                (t.year(), t.ordinal(), t.hour(), 0)
            }),
            (rules.daily, Reason::Daily, |t| {
                (t.year(), t.ordinal(), 0, 0)
            }),
            (rules.weekly, Reason::Weekly, |t| {
                let w = t.iso_week();
                (w.year(), w.week(), 0, 0)
            }),
            (rules.monthly, Reason::Monthly, |t| {
                (t.year(), t.month(), 0, 0)
            }),
            (rules.yearly, Reason::Yearly, |t| (t.year(), 0, 0, 0)),
        ];
        for (n, reason, bucket) in periods {
            let mut seen = Vec::new();
            for &i in &class {
                if seen.len() >= n as usize {
                    break;
                }
                // Newest first: the first backup of a period is its newest.
                let b = bucket(backups[i].made_at);
                if !seen.contains(&b) {
                    seen.push(b);
                    keep[i].insert(reason);
                }
            }
        }
        if let (Some(span), Some(&newest)) = (rules.within, class.first()) {
            let since = backups[newest].made_at - span;
            for &i in &class {
                if backups[i].made_at >= since {
                    keep[i].insert(Reason::Within);
                }
            }
        }
    }
    order
        .into_iter()
        .map(|i| Verdict {
            id: backups[i].id.clone(),
            keep: std::mem::take(&mut keep[i]),
        })
        .collect()
}

/// A retention spec that cannot be a policy, and why.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct PolicyError(pub String);

/// The policy a retention spec writes.
pub fn policy(spec: &RetentionSpec) -> Result<Policy, PolicyError> {
    let regular = rules(&spec.regular)?;
    if regular.is_empty() {
        return Err(PolicyError(
                "a retention policy needs at least one keep rule for ordinary backups \
                 (keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly, keep_yearly or keep_within)"
                    .into(),
            ));
    }
    Ok(Policy {
        regular,
        before_change: rules(&spec.before_change)?,
    })
}

fn rules(r: &RulesSpec) -> Result<Rules, PolicyError> {
    Ok(Rules {
        last: r.keep_last,
        hourly: r.keep_hourly,
        daily: r.keep_daily,
        weekly: r.keep_weekly,
        monthly: r.keep_monthly,
        yearly: r.keep_yearly,
        within: r.keep_within.as_deref().map(span).transpose()?,
    })
}

/// restic's duration: numbers with units y, m (30 days), d and h, e.g. `1y2m3d4h`.
fn span(text: &str) -> Result<Duration, PolicyError> {
    let bad = || {
        PolicyError(format!(
            "keep_within `{text}` is not a span such as `7d`, `12h` or `1y2m`"
        ))
    };
    let mut total = Duration::zero();
    let mut digits = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let n: i64 = digits.parse().map_err(|_| bad())?;
        digits.clear();
        total += match c {
            'y' => Duration::days(365 * n),
            'm' => Duration::days(30 * n),
            'd' => Duration::days(n),
            'h' => Duration::hours(n),
            _ => return Err(bad()),
        };
    }
    if !digits.is_empty() || total.is_zero() {
        return Err(bad());
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap()
    }

    fn backup(id: &'static str, made_at: DateTime<Utc>) -> Backup<&'static str> {
        Backup {
            id,
            made_at,
            before_change: false,
            good: true,
            in_use: false,
        }
    }

    fn kept(v: &[Verdict<&'static str>]) -> Vec<&'static str> {
        v.iter().filter(|v| v.kept()).map(|v| v.id).collect()
    }

    fn reasons(v: &[Verdict<&'static str>], id: &str) -> Vec<Reason> {
        v.iter()
            .find(|v| v.id == id)
            .unwrap()
            .keep
            .iter()
            .copied()
            .collect()
    }

    fn policy(regular: Rules) -> Policy {
        Policy {
            regular,
            before_change: Rules::default(),
        }
    }

    /// restic's documentation (060_forget, "Removing snapshots according to a policy"): a
    /// backup every day for 100 years, `--keep-daily 7 --keep-weekly 5 --keep-monthly 12
    /// --keep-yearly 75`, keeps the 7 newest dailies, then the last day of the weeks, months
    /// and years not kept already. Ending on Friday 2026-12-04: 7 days (Nov 28 – Dec 4, which
    /// hold two weeks' ends, Nov 29 and Dec 4), 3 more weeks (Nov 22, 15, 8), 10 more months
    /// (Oct 31 back to Jan 31; Nov 30 is a daily) and 74 more years (Dec 31 of 2025 back to
    /// 1952): 94 kept of 36,524.
    #[test]
    fn restics_documented_hundred_years_of_daily_backups() {
        let end = at(2026, 12, 4, 12);
        let days = 36_524;
        let backups: Vec<Backup<i64>> = (0..days)
            .map(|i| Backup {
                id: i,
                made_at: end - Duration::days(i),
                before_change: false,
                good: true,
                in_use: false,
            })
            .collect();
        let v = apply(
            &policy(Rules {
                daily: 7,
                weekly: 5,
                monthly: 12,
                yearly: 75,
                ..Default::default()
            }),
            &backups,
        );
        let kept: Vec<DateTime<Utc>> = v
            .iter()
            .filter(|v| v.kept())
            .map(|v| end - Duration::days(v.id))
            .collect();
        assert_eq!(kept.len(), 94, "{kept:?}");
        let has = |y, m, d| kept.contains(&at(y, m, d, 12));
        assert!(has(2026, 11, 28) && !has(2026, 11, 27));
        assert!(
            has(2026, 11, 8) && !has(2026, 11, 1),
            "5 weeks: back to Nov 8"
        );
        assert!(has(2026, 1, 31) && !has(2025, 12, 30));
        assert!(has(2025, 12, 31) && has(1952, 12, 31) && !has(1951, 12, 31));
        let day = |y, m, d| (end - at(y, m, d, 12)).num_days();
        let why = |id: i64| v.iter().find(|v| v.id == id).unwrap().keep.clone();
        assert_eq!(
            why(day(2026, 11, 29)),
            [Reason::Daily, Reason::Weekly].into_iter().collect()
        );
        assert_eq!(
            why(day(2026, 11, 30)),
            [Reason::Daily, Reason::Monthly].into_iter().collect()
        );
        assert_eq!(
            why(day(2026, 12, 4)),
            [
                Reason::Newest,
                Reason::Daily,
                Reason::Weekly,
                Reason::Monthly,
                Reason::Yearly
            ]
            .into_iter()
            .collect()
        );
    }

    #[test]
    fn keep_last_keeps_the_newest_n_and_the_answer_is_newest_first() {
        let b = [
            backup("a", at(2026, 1, 1, 0)),
            backup("c", at(2026, 1, 3, 0)),
            backup("b", at(2026, 1, 2, 0)),
        ];
        let v = apply(
            &policy(Rules {
                last: 2,
                ..Default::default()
            }),
            &b,
        );
        let order: Vec<_> = v.iter().map(|v| v.id).collect();
        assert_eq!(order, ["c", "b", "a"]);
        assert_eq!(kept(&v), ["c", "b"]);
        assert_eq!(reasons(&v, "c"), [Reason::Newest, Reason::Last]);
        assert_eq!(reasons(&v, "a"), []);
    }

    #[test]
    fn each_period_keeps_its_newest_backup_for_the_last_n_periods_that_have_one() {
        // Two a day for four days, with a gap (no backup on the 3rd).
        let b = [
            backup("1a", at(2026, 3, 1, 6)),
            backup("1b", at(2026, 3, 1, 18)),
            backup("2a", at(2026, 3, 2, 6)),
            backup("2b", at(2026, 3, 2, 18)),
            backup("4a", at(2026, 3, 4, 6)),
            backup("4b", at(2026, 3, 4, 18)),
        ];
        let v = apply(
            &policy(Rules {
                daily: 3,
                ..Default::default()
            }),
            &b,
        );
        // The last three days that have backups: the 4th, 2nd and 1st (not the 3rd).
        assert_eq!(kept(&v), ["4b", "2b", "1b"]);
        let v = apply(
            &policy(Rules {
                hourly: 2,
                ..Default::default()
            }),
            &b,
        );
        assert_eq!(kept(&v), ["4b", "4a"]);
    }

    #[test]
    fn weeks_months_and_years_are_calendar_periods() {
        let b = [
            // Sunday 2026-01-04 ends ISO week 1; Monday the 5th starts week 2.
            backup("sun", at(2026, 1, 4, 12)),
            backup("mon", at(2026, 1, 5, 12)),
            backup("dec", at(2025, 12, 31, 12)),
            backup("nov", at(2025, 11, 30, 12)),
        ];
        let weekly = apply(
            &policy(Rules {
                weekly: 2,
                ..Default::default()
            }),
            &b,
        );
        assert_eq!(kept(&weekly), ["mon", "sun"]);
        let monthly = apply(
            &policy(Rules {
                monthly: 3,
                ..Default::default()
            }),
            &b,
        );
        assert_eq!(kept(&monthly), ["mon", "dec", "nov"]);
        let yearly = apply(
            &policy(Rules {
                yearly: 5,
                ..Default::default()
            }),
            &b,
        );
        assert_eq!(kept(&yearly), ["mon", "dec"]);
    }

    #[test]
    fn rules_are_or_ed_and_within_counts_from_the_newest_backup() {
        let b = [
            backup("old", at(2025, 6, 1, 0)),
            backup("mid", at(2026, 2, 20, 0)),
            backup("new", at(2026, 3, 1, 0)),
        ];
        let v = apply(
            &policy(Rules {
                last: 1,
                yearly: 2,
                within: Some(Duration::days(10)),
                ..Default::default()
            }),
            &b,
        );
        assert_eq!(kept(&v), ["new", "mid", "old"]);
        assert_eq!(
            reasons(&v, "new"),
            [Reason::Newest, Reason::Last, Reason::Yearly, Reason::Within]
        );
        assert_eq!(reasons(&v, "mid"), [Reason::Within]);
        assert_eq!(reasons(&v, "old"), [Reason::Yearly]);
    }

    #[test]
    fn the_newest_good_backup_and_one_in_use_are_never_forgotten() {
        let mut broken = backup("broken", at(2026, 3, 3, 0));
        broken.good = false;
        let mut used = backup("used", at(2026, 1, 1, 0));
        used.in_use = true;
        let b = [broken, backup("good", at(2026, 3, 2, 0)), used];
        // A rule that keeps only the newest (the broken one).
        let v = apply(
            &policy(Rules {
                last: 1,
                ..Default::default()
            }),
            &b,
        );
        assert_eq!(kept(&v), ["broken", "good", "used"]);
        assert_eq!(reasons(&v, "good"), [Reason::Newest]);
        assert_eq!(reasons(&v, "used"), [Reason::InUse]);
    }

    #[test]
    fn backups_made_before_a_change_have_their_own_rules() {
        let mut before = backup("before-migrate", at(2026, 1, 1, 0));
        before.before_change = true;
        let mut older_before = backup("before-restore", at(2025, 1, 1, 0));
        older_before.before_change = true;
        let b = [
            backup("r1", at(2026, 3, 1, 0)),
            backup("r2", at(2026, 3, 2, 0)),
            before,
            older_before,
        ];
        let p = Policy {
            regular: Rules {
                last: 1,
                ..Default::default()
            },
            before_change: Rules {
                last: 1,
                ..Default::default()
            },
        };
        let v = apply(&p, &b);
        // The regular rule counts regular backups only: it does not use up its one on the
        // newer before-change backup, nor keep it.
        assert_eq!(kept(&v), ["r2", "before-migrate"]);
        // No rules for a class: nothing of it is forgotten.
        let v = apply(
            &policy(Rules {
                last: 1,
                ..Default::default()
            }),
            &b,
        );
        assert_eq!(kept(&v), ["r2", "before-migrate", "before-restore"]);
        assert_eq!(reasons(&v, "before-restore"), [Reason::NoRules]);
    }

    #[test]
    fn specs_read_restic_spans_and_an_empty_policy_is_refused() {
        let spec: RetentionSpec = serde_json::from_value(serde_json::json!(
            {"regular": {"keep_last": 3, "keep_within": "1y2m3d4h"}, "before_change": {"keep_last": 1}}))
        .unwrap();
        let p = super::policy(&spec).unwrap();
        assert_eq!(p.regular.last, 3);
        assert_eq!(
            p.regular.within,
            Some(Duration::days(365 + 60 + 3) + Duration::hours(4))
        );
        assert_eq!(p.before_change.last, 1);
        let empty = super::policy(&RetentionSpec::default()).unwrap_err();
        assert!(empty.0.contains("keep_last"), "{empty}");
        for bad in ["7", "7w", "d", "0d"] {
            let spec = RetentionSpec {
                regular: RulesSpec {
                    keep_within: Some(bad.into()),
                    ..Default::default()
                },
                ..Default::default()
            };
            assert!(super::policy(&spec).is_err(), "{bad}");
        }
    }
}
