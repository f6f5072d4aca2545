//! Checks of what a schedule runs, and a retention spec's policy (restic's spans).

use berth_contracts::schedule::{Job, RetentionSpec, RulesSpec};
use berth_hosting::retention::{Policy, Rules};
use chrono::Duration;

/// Checks a job's options beyond their shape.
pub fn check(job: &Job) -> Result<(), JobError> {
    match job {
        Job::Prune { retention } => policy(retention).map(|_| ()),
        Job::Drill { sample: 0 } => Err(JobError("a drill's sample must be 1 or more".into())),
        _ => Ok(()),
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct JobError(pub String);

/// The policy a retention spec writes.
pub fn policy(spec: &RetentionSpec) -> Result<Policy, JobError> {
    let regular = rules(&spec.regular)?;
    if regular.is_empty() {
        return Err(JobError(
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

fn rules(r: &RulesSpec) -> Result<Rules, JobError> {
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
fn span(text: &str) -> Result<Duration, JobError> {
    let bad = || {
        JobError(format!(
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
    use serde_json::json;

    #[test]
    fn jobs_read_their_options_and_refuse_unknown_ones() {
        let job: Job =
            serde_json::from_value(json!({"kind": "backup", "targets": ["s3"]})).unwrap();
        assert_eq!(
            job,
            Job::Backup {
                targets: vec!["s3".into()]
            }
        );
        let job: Job = serde_json::from_value(json!({"kind": "drill"})).unwrap();
        assert_eq!(job, Job::Drill { sample: 1 });
        assert!(serde_json::from_value::<Job>(json!({"kind": "cron", "every": 5})).is_err());
        assert!(serde_json::from_value::<Job>(json!({"kind": "reboot"})).is_err());
        assert!(check(&Job::Drill { sample: 0 }).is_err());
    }

    #[test]
    fn retention_reads_restic_spans_and_refuses_an_empty_policy() {
        let job: Job = serde_json::from_value(json!({"kind": "prune", "retention":
            {"keep_last": 3, "keep_within": "1y2m3d4h", "before_change": {"keep_last": 1}}}))
        .unwrap();
        let Job::Prune { retention } = job else {
            panic!()
        };
        let p = policy(&retention).unwrap();
        assert_eq!(p.regular.last, 3);
        assert_eq!(
            p.regular.within,
            Some(Duration::days(365 + 60 + 3) + Duration::hours(4))
        );
        assert_eq!(p.before_change.last, 1);
        let empty = policy(&RetentionSpec::default()).unwrap_err();
        assert!(empty.0.contains("keep_last"), "{empty}");
        for bad in ["7", "7w", "d", "0d"] {
            let spec = RetentionSpec {
                regular: RulesSpec {
                    keep_within: Some(bad.into()),
                    ..Default::default()
                },
                ..Default::default()
            };
            assert!(policy(&spec).is_err(), "{bad}");
        }
    }
}
