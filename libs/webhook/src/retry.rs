//! The retry schedule and the decision after each attempt.

use std::time::Duration;

/// The Standard Webhooks schedule: the delay before each attempt (immediately, 5 s, 5 min,
/// 30 min, 2 h, 5 h, 10 h, 10 h): eight attempts over about a day.
pub const SPEC_TIERS: [Duration; 8] = [
    Duration::ZERO,
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(10 * 3600),
];

/// The longest `Retry-After` honoured; a longer one is cut to this.
pub const DEFAULT_MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// The delays before each attempt (the first one is the delay of the first attempt, 0
/// normally); the number of tiers is the number of attempts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule {
    pub tiers: Vec<Duration>,
    pub max_retry_after: Duration,
}

impl Default for RetrySchedule {
    fn default() -> Self {
        Self {
            tiers: SPEC_TIERS.to_vec(),
            max_retry_after: DEFAULT_MAX_RETRY_AFTER,
        }
    }
}

impl RetrySchedule {
    /// The delay before attempt `attempt` (1-based) when the previous one failed; `None`
    /// past the last tier.
    pub fn delay_before(&self, attempt: u32) -> Option<Duration> {
        self.tiers.get(attempt.checked_sub(1)? as usize).copied()
    }

    /// The distinct delays of the tiers after the first: the wait queues to declare.
    pub fn waits(&self) -> Vec<Duration> {
        let mut w: Vec<Duration> = self.tiers.iter().skip(1).copied().collect();
        w.sort();
        w.dedup();
        w
    }
}

/// What an attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The endpoint answered with this status (and `Retry-After`, parsed, if it said one).
    Answered {
        status: u16,
        retry_after: Option<Duration>,
    },
    /// No answer: connection refused, timeout, TLS, a refused address.
    NoAnswer,
}

/// What to do next with a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    Delivered,
    /// 410 Gone: the receiver asks never to be called again; the endpoint is disabled.
    DisableEndpoint,
    RetryIn(Duration),
    GiveUp,
}

/// The decision after attempt number `attempt` (1-based) ended in `outcome`: 2xx is
/// delivered; 410 disables the endpoint; 429 and 503 with a `Retry-After` wait that long
/// (at most `max_retry_after`); any other failure waits for the next tier, and past the
/// last tier the delivery is given up.
pub fn decide(outcome: &Outcome, attempt: u32, schedule: &RetrySchedule) -> Next {
    let retry_after = match outcome {
        Outcome::Answered { status, .. } if (200..300).contains(status) => return Next::Delivered,
        Outcome::Answered { status: 410, .. } => return Next::DisableEndpoint,
        Outcome::Answered {
            status: 429 | 503,
            retry_after: Some(after),
        } => Some((*after).min(schedule.max_retry_after)),
        _ => None,
    };
    match schedule.delay_before(attempt + 1) {
        None => Next::GiveUp,
        Some(tier) => Next::RetryIn(retry_after.unwrap_or(tier)),
    }
}

/// A `Retry-After` value: delay-seconds or an HTTP date (RFC 9110), relative to `now`
/// (Unix seconds). A date in the past is no wait; anything else unreadable is `None`.
pub fn parse_retry_after(value: &str, now: i64) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value)
        .ok()?
        .timestamp();
    Some(Duration::from_secs(at.saturating_sub(now).max(0) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(status: u16) -> Outcome {
        Outcome::Answered {
            status,
            retry_after: None,
        }
    }

    #[test]
    fn the_default_schedule_is_the_specs() {
        let s = RetrySchedule::default();
        assert_eq!(s.tiers.len(), 8);
        assert_eq!(s.delay_before(1), Some(Duration::ZERO));
        assert_eq!(s.delay_before(2), Some(Duration::from_secs(5)));
        assert_eq!(s.delay_before(8), Some(Duration::from_secs(36_000)));
        assert_eq!(s.delay_before(9), None);
        assert_eq!(s.delay_before(0), None);
        let total: Duration = s.tiers.iter().sum();
        assert_eq!(
            total,
            Duration::from_secs(5 + 300 + 1800 + 7200 + 18000 + 72000)
        );
        assert_eq!(s.waits().len(), 6, "10 h appears twice, one wait queue");
    }

    #[test]
    fn success_410_and_failures_decide_as_the_spec_says() {
        let s = RetrySchedule::default();
        assert_eq!(decide(&answered(200), 1, &s), Next::Delivered);
        assert_eq!(decide(&answered(204), 8, &s), Next::Delivered);
        assert_eq!(decide(&answered(410), 1, &s), Next::DisableEndpoint);
        assert_eq!(
            decide(&answered(500), 1, &s),
            Next::RetryIn(Duration::from_secs(5))
        );
        assert_eq!(
            decide(&answered(301), 2, &s),
            Next::RetryIn(Duration::from_secs(300))
        );
        assert_eq!(
            decide(&Outcome::NoAnswer, 3, &s),
            Next::RetryIn(Duration::from_secs(1800))
        );
        assert_eq!(decide(&answered(500), 8, &s), Next::GiveUp);
        assert_eq!(decide(&Outcome::NoAnswer, 8, &s), Next::GiveUp);
    }

    #[test]
    fn retry_after_is_honoured_on_429_and_503_only_and_bounded() {
        let s = RetrySchedule::default();
        let after = |status, secs| Outcome::Answered {
            status,
            retry_after: Some(Duration::from_secs(secs)),
        };
        assert_eq!(
            decide(&after(429, 42), 1, &s),
            Next::RetryIn(Duration::from_secs(42))
        );
        assert_eq!(
            decide(&after(503, 2), 3, &s),
            Next::RetryIn(Duration::from_secs(2))
        );
        assert_eq!(
            decide(&after(503, 86_400), 1, &s),
            Next::RetryIn(DEFAULT_MAX_RETRY_AFTER)
        );
        assert_eq!(
            decide(&after(500, 42), 1, &s),
            Next::RetryIn(Duration::from_secs(5))
        );
        assert_eq!(decide(&after(429, 42), 8, &s), Next::GiveUp);
        assert_eq!(
            decide(&answered(429), 1, &s),
            Next::RetryIn(Duration::from_secs(5))
        );
    }

    #[test]
    fn short_tiers_for_tests_give_up_after_their_last() {
        let s = RetrySchedule {
            tiers: vec![Duration::ZERO, Duration::from_millis(100)],
            max_retry_after: Duration::from_secs(10),
        };
        assert_eq!(
            decide(&answered(500), 1, &s),
            Next::RetryIn(Duration::from_millis(100))
        );
        assert_eq!(decide(&answered(500), 2, &s), Next::GiveUp);
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(
            parse_retry_after(" 120 ", 0),
            Some(Duration::from_secs(120))
        );
        let now = chrono::DateTime::parse_from_rfc2822("Wed, 21 Oct 2015 07:28:00 GMT")
            .unwrap()
            .timestamp();
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }
}
