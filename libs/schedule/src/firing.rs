//! One site in one slot: when its run is due, and what the scheduler does about it now.
//!
//! Runs are spread over the schedule's `spread` (10,000 hourly crons do not all start at
//! :00): a site's offset in the slot is a stable hash of the schedule and the site, the same
//! in every scheduler process — but a site whose previous run failed goes first. A run may
//! start until `window` after its slot; later it is missed (a backup window, or a scheduler's
//! starting deadline after it was down).

use chrono::{DateTime, Duration, Utc};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How long after its slot a run may still start.
    pub window: Duration,
    /// Runs are spread over this much of the window (at most the window).
    pub spread: Duration,
}

impl Timing {
    /// When `site`'s run of slot `slot` is due.
    pub fn due(
        &self,
        slot: DateTime<Utc>,
        schedule: &str,
        site: &str,
        retry_first: bool,
    ) -> DateTime<Utc> {
        if retry_first {
            return slot;
        }
        slot + offset(schedule, site, self.spread.min(self.window))
    }

    /// The last instant a run of `slot` may start.
    pub fn closes(&self, slot: DateTime<Utc>) -> DateTime<Utc> {
        slot + self.window
    }
}

/// A stable offset in `[0, spread)` for a site in a schedule (FNV-1a: the same in every
/// process and every build, unlike std's hasher).
pub fn offset(schedule: &str, site: &str, spread: Duration) -> Duration {
    let ms = spread.num_milliseconds();
    if ms <= 0 {
        return Duration::zero();
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in schedule.bytes().chain([0]).chain(site.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    Duration::milliseconds((h % ms as u64) as i64)
}

/// What is known of a site's previous run of the same schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    /// None yet, or it ended well.
    Clear,
    /// Its task is queued or running.
    Unfinished,
    /// It ended failed (or was cancelled): the next one goes first.
    Failed,
}

/// What the scheduler does, now, for a site in a slot that has no run recorded yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firing {
    /// Its due time has not come.
    NotYet,
    /// Queue its task now.
    Fire,
    /// The previous run is still going: record this one skipped (the concurrency policy).
    Skip,
    /// The server's cap is reached: try again on the next tick, while the window is open.
    Wait,
    /// The window closed before it could start: record it missed (and alert).
    Missed,
}

pub fn decide(
    now: DateTime<Utc>,
    due: DateTime<Utc>,
    closes: DateTime<Utc>,
    previous: RunState,
    at_cap: bool,
) -> Firing {
    if now > closes {
        Firing::Missed
    } else if now < due {
        Firing::NotYet
    } else if previous == RunState::Unfinished {
        Firing::Skip
    } else if at_cap {
        Firing::Wait
    } else {
        Firing::Fire
    }
}

/// Whether the newest runs (newest first, `true` = failed) end in `threshold` failures in a
/// row: the schedule's "failing" alert.
pub fn failing_streak(newest_first: &[bool], threshold: u32) -> bool {
    threshold > 0
        && newest_first.len() >= threshold as usize
        && newest_first
            .iter()
            .take(threshold as usize)
            .all(|&failed| failed)
}

/// Whether a site's newest good backup (if any) is older than its schedule allows: once
/// `last_slot`'s window has closed, a backup made at or after that slot must exist.
pub fn overdue(
    newest_good: Option<DateTime<Utc>>,
    last_slot: Option<DateTime<Utc>>,
    timing: &Timing,
    now: DateTime<Utc>,
) -> bool {
    let Some(slot) = last_slot else { return false };
    // The last slot whose window has closed must have produced a backup by now.
    let closed = if timing.closes(slot) <= now {
        Some(slot)
    } else {
        None
    };
    match (closed, newest_good) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some(slot), Some(made)) => made < slot,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_780_000_000 + s, 0).unwrap()
    }

    #[test]
    fn offsets_spread_sites_over_the_spread_and_are_stable() {
        let spread = Duration::seconds(3600);
        let offsets: Vec<i64> = (0..1000)
            .map(|i| offset("s1", &format!("site{i}.example"), spread).num_seconds())
            .collect();
        assert!(offsets.iter().all(|&o| (0..3600).contains(&o)));
        // Spread, not bunched: every quarter of the hour has a fair share of the sites.
        for q in 0..4 {
            let n = offsets.iter().filter(|&&o| o / 900 == q).count();
            assert!((200..300).contains(&n), "quarter {q}: {n}");
        }
        assert_eq!(
            offset("s1", "a.example", spread),
            offset("s1", "a.example", spread)
        );
        assert_ne!(
            offset("s1", "a.example", spread),
            offset("s2", "a.example", spread)
        );
        assert_eq!(
            offset("s1", "a.example", Duration::zero()),
            Duration::zero()
        );
    }

    #[test]
    fn a_failed_site_goes_first_and_the_spread_stays_in_the_window() {
        let timing = Timing {
            window: Duration::seconds(10),
            spread: Duration::seconds(60),
        };
        assert_eq!(timing.due(t(0), "s", "x.example", true), t(0));
        for i in 0..100 {
            let due = timing.due(t(0), "s", &format!("{i}.example"), false);
            assert!(due >= t(0) && due < t(10));
        }
        assert_eq!(timing.closes(t(0)), t(10));
    }

    #[test]
    fn decisions() {
        use Firing::*;
        let (due, closes) = (t(5), t(10));
        assert_eq!(decide(t(4), due, closes, RunState::Clear, false), NotYet);
        assert_eq!(decide(t(5), due, closes, RunState::Clear, false), Fire);
        assert_eq!(decide(t(5), due, closes, RunState::Failed, false), Fire);
        assert_eq!(decide(t(6), due, closes, RunState::Unfinished, false), Skip);
        assert_eq!(decide(t(6), due, closes, RunState::Clear, true), Wait);
        assert_eq!(decide(t(10), due, closes, RunState::Clear, true), Wait);
        assert_eq!(decide(t(11), due, closes, RunState::Clear, false), Missed);
        assert_eq!(
            decide(t(11), due, closes, RunState::Unfinished, false),
            Missed
        );
    }

    #[test]
    fn failing_streaks() {
        assert!(failing_streak(&[true, true, true, false], 3));
        assert!(!failing_streak(&[true, false, true, true], 3));
        assert!(!failing_streak(&[true, true], 3));
        assert!(!failing_streak(&[true, true, true], 0));
    }

    #[test]
    fn overdue_backups() {
        let timing = Timing {
            window: Duration::seconds(100),
            spread: Duration::seconds(50),
        };
        // The slot's window is still open: not overdue yet.
        assert!(!overdue(None, Some(t(0)), &timing, t(50)));
        // Closed, and nothing made since the slot: overdue.
        assert!(overdue(None, Some(t(0)), &timing, t(101)));
        assert!(overdue(Some(t(-10)), Some(t(0)), &timing, t(101)));
        assert!(!overdue(Some(t(30)), Some(t(0)), &timing, t(101)));
        // No slot yet (a new schedule): never overdue.
        assert!(!overdue(None, None, &timing, t(101)));
    }
}
