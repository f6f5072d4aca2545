//! Which events an endpoint receives. A filter is one of:
//!
//! - `*`: every event;
//! - an event type: `task.finished`, `site.installed`, `site.deleted`, `backup.made`,
//!   `schedule.alert`;
//! - a family: `site.*`, `task.*`, …: every type that begins with it;
//! - `task.finished:<task type>[:<status>]`, either part `*`, the status one of `success`,
//!   `warning`, `error`, `cancelled`, or `failed` (error or cancelled):
//!   `task.finished:install:failed`, `task.finished:*:success`.
//!
//! An endpoint receives an event when any of its filters matches it.

/// What a filter looks at in an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventFacts<'a> {
    /// The event type: `task.finished`, …
    pub kind: &'a str,
    /// A finished task's type and status.
    pub task: Option<(&'a str, &'a str)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    All,
    Kind(String),
    /// A family prefix, with its dot: `site.`.
    Family(String),
    TaskFinished {
        task_type: Option<String>,
        status: Option<Status>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Is(&'static str),
    Failed,
}

const STATUSES: [&str; 4] = ["success", "warning", "error", "cancelled"];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("unknown event type `{0}`; known: {known}", known = .1.join(", "))]
    UnknownKind(String, Vec<String>),
    #[error(
        "`{0}`: a task filter is task.finished:<task type or *>[:<success|warning|error|cancelled|failed|*>]"
    )]
    TaskForm(String),
    #[error("unknown task type `{0}` in an event filter")]
    UnknownTaskType(String),
}

impl Filter {
    /// Parses one filter; `kinds` are the event types there are, `task_types` the task types.
    pub fn parse(text: &str, kinds: &[&str], task_types: &[&str]) -> Result<Self, FilterError> {
        let text = text.trim();
        let unknown = || {
            FilterError::UnknownKind(
                text.to_owned(),
                kinds.iter().map(|k| k.to_string()).collect(),
            )
        };
        if text == "*" {
            return Ok(Self::All);
        }
        if let Some(rest) = text.strip_prefix("task.finished:") {
            let mut parts = rest.split(':');
            let task_type = match parts.next() {
                Some("*") => None,
                Some(t) if task_types.contains(&t) => Some(t.to_owned()),
                Some(t) if !t.is_empty() => return Err(FilterError::UnknownTaskType(t.to_owned())),
                _ => return Err(FilterError::TaskForm(text.to_owned())),
            };
            let status = match parts.next() {
                None | Some("*") => None,
                Some("failed") => Some(Status::Failed),
                Some(s) => match STATUSES.iter().find(|k| **k == s) {
                    Some(k) => Some(Status::Is(k)),
                    None => return Err(FilterError::TaskForm(text.to_owned())),
                },
            };
            if parts.next().is_some() {
                return Err(FilterError::TaskForm(text.to_owned()));
            }
            return Ok(Self::TaskFinished { task_type, status });
        }
        if let Some(family) = text.strip_suffix(".*") {
            let prefix = format!("{family}.");
            if !family.is_empty() && kinds.iter().any(|k| k.starts_with(&prefix)) {
                return Ok(Self::Family(prefix));
            }
            return Err(unknown());
        }
        if kinds.contains(&text) {
            Ok(Self::Kind(text.to_owned()))
        } else {
            Err(unknown())
        }
    }

    pub fn matches(&self, event: &EventFacts<'_>) -> bool {
        match self {
            Self::All => true,
            Self::Kind(k) => k == event.kind,
            Self::Family(prefix) => event.kind.starts_with(prefix.as_str()),
            Self::TaskFinished { task_type, status } => {
                let Some((ty, st)) = event.task.filter(|_| event.kind == "task.finished") else {
                    return false;
                };
                task_type.as_deref().is_none_or(|t| t == ty)
                    && match status {
                        None => true,
                        Some(Status::Is(s)) => *s == st,
                        Some(Status::Failed) => st == "error" || st == "cancelled",
                    }
            }
        }
    }

    /// Whether any of `filters` (as stored: their text) matches; a filter that no longer
    /// parses matches nothing.
    pub fn any_matches(
        filters: &[String],
        event: &EventFacts<'_>,
        kinds: &[&str],
        task_types: &[&str],
    ) -> bool {
        filters
            .iter()
            .any(|f| Self::parse(f, kinds, task_types).is_ok_and(|f| f.matches(event)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KINDS: [&str; 5] = [
        "task.finished",
        "site.installed",
        "site.deleted",
        "backup.made",
        "schedule.alert",
    ];
    const TYPES: [&str; 3] = ["install", "verify", "backup"];

    fn parse(s: &str) -> Result<Filter, FilterError> {
        Filter::parse(s, &KINDS, &TYPES)
    }

    fn task(ty: &'static str, st: &'static str) -> EventFacts<'static> {
        EventFacts {
            kind: "task.finished",
            task: Some((ty, st)),
        }
    }

    fn kind(k: &'static str) -> EventFacts<'static> {
        EventFacts {
            kind: k,
            task: None,
        }
    }

    #[test]
    fn each_form_matches_what_it_says() {
        let all = parse("*").unwrap();
        assert!(all.matches(&kind("site.deleted")) && all.matches(&task("verify", "success")));
        let exact = parse("task.finished").unwrap();
        assert!(exact.matches(&task("install", "error")));
        assert!(!exact.matches(&kind("site.installed")));
        let family = parse("site.*").unwrap();
        assert!(family.matches(&kind("site.installed")) && family.matches(&kind("site.deleted")));
        assert!(!family.matches(&kind("schedule.alert")));
        let failed_installs = parse("task.finished:install:failed").unwrap();
        assert!(failed_installs.matches(&task("install", "error")));
        assert!(failed_installs.matches(&task("install", "cancelled")));
        assert!(!failed_installs.matches(&task("install", "success")));
        assert!(!failed_installs.matches(&task("verify", "error")));
        let any_success = parse("task.finished:*:success").unwrap();
        assert!(any_success.matches(&task("verify", "success")));
        assert!(!any_success.matches(&task("verify", "warning")));
        let verifies = parse("task.finished:verify").unwrap();
        assert!(verifies.matches(&task("verify", "warning")));
    }

    #[test]
    fn bad_filters_say_what_to_fix() {
        let e = parse("task.done").unwrap_err().to_string();
        assert!(
            e.contains("unknown event type `task.done`") && e.contains("backup.made"),
            "{e}"
        );
        assert!(matches!(parse("nope.*"), Err(FilterError::UnknownKind(..))));
        assert!(matches!(parse(".*"), Err(FilterError::UnknownKind(..))));
        assert_eq!(
            parse("task.finished:frobnicate"),
            Err(FilterError::UnknownTaskType("frobnicate".into()))
        );
        assert!(matches!(
            parse("task.finished:install:broken"),
            Err(FilterError::TaskForm(_))
        ));
        assert!(matches!(
            parse("task.finished:install:error:x"),
            Err(FilterError::TaskForm(_))
        ));
        assert!(matches!(
            parse("task.finished:"),
            Err(FilterError::TaskForm(_))
        ));
    }

    #[test]
    fn any_of_the_stored_filters_matches() {
        let stored = vec![
            "site.installed".to_string(),
            "task.finished:backup".to_string(),
        ];
        assert!(Filter::any_matches(
            &stored,
            &task("backup", "success"),
            &KINDS,
            &TYPES
        ));
        assert!(!Filter::any_matches(
            &stored,
            &task("verify", "success"),
            &KINDS,
            &TYPES
        ));
        assert!(!Filter::any_matches(
            &[],
            &kind("site.installed"),
            &KINDS,
            &TYPES
        ));
    }
}
