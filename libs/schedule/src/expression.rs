//! Cron expressions (5 fields, or 6 with seconds first) evaluated in a time zone, with
//! croner and chrono-tz. Slots are instants in UTC: a daily "0 2 * * *" in Europe/Paris is
//! 01:00 UTC in winter and 00:00 UTC in summer, and a slot skipped or doubled by a DST change
//! is croner's answer (it follows Vixie cron).

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ExpressionError {
    #[error(
        "`{expression}` is not a cron expression ({reason}); for example `0 * * * *` (hourly) or `*/10 * * * * *` (every ten seconds, seconds first)"
    )]
    Cron { expression: String, reason: String },
    #[error("`{0}` is not a time zone of the IANA database (for example `UTC` or `Europe/Paris`)")]
    TimeZone(String),
    #[error("`{0}` never fires")]
    Never(String),
}

#[derive(Debug, Clone)]
pub struct Expression {
    cron: Cron,
    tz: Tz,
    text: String,
}

impl Expression {
    pub fn parse(expression: &str, time_zone: &str) -> Result<Self, ExpressionError> {
        let text = expression.trim().to_string();
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .build()
            .parse(&text)
            .map_err(|e| ExpressionError::Cron {
                expression: text.clone(),
                reason: e.to_string(),
            })?;
        let tz: Tz = time_zone
            .parse()
            .map_err(|_| ExpressionError::TimeZone(time_zone.to_string()))?;
        let parsed = Self { cron, tz, text };
        if parsed.next_after(Utc::now()).is_none() {
            return Err(ExpressionError::Never(parsed.text));
        }
        Ok(parsed)
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The first slot strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = t.with_timezone(&self.tz);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }

    /// The last slot at or before `t`.
    pub fn last_at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Whole seconds: croner keeps a sub-second part of its start in what it answers.
        let whole = DateTime::from_timestamp(t.timestamp(), 0)?;
        let local = whole.with_timezone(&self.tz);
        self.cron
            .find_previous_occurrence(&local, true)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }

    /// The slots in `(after, until]`, oldest first, at most the newest `max` of them (a
    /// scheduler down for a year does not keep a year of seconds), and how many older ones
    /// were left out (estimated by the period when they are far too many to walk).
    pub fn slots_between(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
        max: usize,
    ) -> (Vec<DateTime<Utc>>, u64) {
        let mut newest = std::collections::VecDeque::with_capacity(max.min(1024));
        let mut left_out = 0u64;
        let mut cursor = after;
        // Far behind (a scheduler down for a month on a seconds-level schedule): skip to the
        // last stretch and estimate what was skipped by the period, rather than walk it all.
        let period = self.period_after(after);
        let keep = i32::try_from(max.max(1))
            .unwrap_or(i32::MAX)
            .saturating_mul(2);
        if period > Duration::zero() && until - after > period * keep.saturating_mul(2) {
            let skip_to = until - period * keep;
            left_out = ((skip_to - after).num_milliseconds() / period.num_milliseconds()) as u64;
            cursor = skip_to;
        }
        while let Some(slot) = self.next_after(cursor).filter(|s| *s <= until) {
            newest.push_back(slot);
            if newest.len() > max {
                newest.pop_front();
                left_out += 1;
            }
            cursor = slot;
        }
        (newest.into(), left_out)
    }

    /// The time between the slot after `t` and the one after it: the schedule's period
    /// there (an hourly cron's is an hour).
    pub fn period_after(&self, t: DateTime<Utc>) -> Duration {
        match self
            .next_after(t)
            .and_then(|a| Some((a, self.next_after(a)?)))
        {
            Some((a, b)) => b - a,
            None => Duration::days(366),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn five_and_six_fields_and_clear_errors() {
        let hourly = Expression::parse("0 * * * *", "UTC").unwrap();
        assert_eq!(
            hourly.next_after(at("2026-12-04T10:00:00Z")),
            Some(at("2026-12-04T11:00:00Z"))
        );
        let seconds = Expression::parse("*/5 * * * * *", "UTC").unwrap();
        assert_eq!(
            seconds.next_after(at("2026-12-04T10:00:03Z")),
            Some(at("2026-12-04T10:00:05Z"))
        );
        assert_eq!(
            seconds.period_after(at("2026-12-04T10:00:03Z")),
            Duration::seconds(5)
        );
        let e = Expression::parse("every hour", "UTC").unwrap_err();
        assert!(e.to_string().contains("0 * * * *"), "{e}");
        let e = Expression::parse("0 * * * *", "Mars/Olympus").unwrap_err();
        assert_eq!(e, ExpressionError::TimeZone("Mars/Olympus".into()));
    }

    #[test]
    fn slots_are_in_the_time_zone() {
        let nightly = Expression::parse("0 2 * * *", "Europe/Paris").unwrap();
        // 02:00 in Paris is 01:00 UTC in winter and 00:00 UTC in summer.
        assert_eq!(
            nightly.next_after(at("2026-12-04T12:00:00Z")),
            Some(at("2026-12-05T01:00:00Z"))
        );
        assert_eq!(
            nightly.next_after(at("2026-07-04T12:00:00Z")),
            Some(at("2026-07-05T00:00:00Z"))
        );
    }

    #[test]
    fn slots_between_are_bounded_and_count_what_they_leave_out() {
        let every_10s = Expression::parse("*/10 * * * * *", "UTC").unwrap();
        let from = Utc.with_ymd_and_hms(2026, 12, 4, 10, 0, 0).unwrap();
        let (slots, left_out) = every_10s.slots_between(from, from + Duration::seconds(60), 100);
        assert_eq!(slots.len(), 6, "{slots:?}");
        assert_eq!(slots[0], from + Duration::seconds(10));
        assert_eq!(*slots.last().unwrap(), from + Duration::seconds(60));
        assert_eq!(left_out, 0);
        let (slots, left_out) = every_10s.slots_between(from, from + Duration::seconds(60), 2);
        assert_eq!(
            slots,
            vec![from + Duration::seconds(50), from + Duration::seconds(60)]
        );
        assert_eq!(left_out, 4);
        assert_eq!(
            every_10s.last_at_or_before(from + Duration::milliseconds(19_999)),
            Some(from + Duration::seconds(10))
        );
        assert_eq!(every_10s.last_at_or_before(from), Some(from));
        // A month of seconds: the newest few, and about how many went before them.
        let every_s = Expression::parse("* * * * * *", "UTC").unwrap();
        let month = from + Duration::days(30);
        let (slots, left_out) = every_s.slots_between(from, month, 5);
        assert_eq!(slots.len(), 5);
        assert_eq!(*slots.last().unwrap(), month);
        assert!((2_591_990..=2_592_000).contains(&left_out), "{left_out}");
        let (none, _) = every_10s.slots_between(from, from + Duration::seconds(9), 10);
        assert!(none.is_empty());
    }
}
