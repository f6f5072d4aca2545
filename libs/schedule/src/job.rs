//! Checks of what a schedule runs beyond its shape.

use berth_contracts::schedule::Job;

/// Checks a job's options beyond their shape.
pub fn check(job: &Job) -> Result<(), JobError> {
    match job {
        Job::Prune { retention } => berth_hosting::retention::policy(retention)
            .map(|_| ())
            .map_err(|e| JobError(e.0)),
        Job::Drill { sample: 0 } => Err(JobError("a drill's sample must be 1 or more".into())),
        _ => Ok(()),
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct JobError(pub String);

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
        assert!(
            serde_json::from_value::<Job>(
                json!({"kind": "prune", "retention": {"regular": {"keep_lst": 3}}})
            )
            .is_err(),
            "a misspelt rule is refused, not ignored"
        );
        assert!(check(&Job::Drill { sample: 0 }).is_err());
        let empty: Job =
            serde_json::from_value(json!({"kind": "prune", "retention": {"regular": {}}})).unwrap();
        assert!(check(&empty).unwrap_err().0.contains("keep_last"));
    }
}
