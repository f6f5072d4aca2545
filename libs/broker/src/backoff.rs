//! Delays: reconnect backoff and the jitter applied to retry tiers.

use std::time::Duration;

use rand::Rng;

/// First reconnect delay; doubles per failed attempt up to [`RECONNECT_MAX`].
const RECONNECT_BASE: Duration = Duration::from_millis(100);
/// Cap of the reconnect delay: a broker back after a restart is found within seconds.
const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// Capped exponential backoff with ±20% jitter for reconnect attempt `n` (0-based), so a
/// fleet of workers losing the broker together does not come back in lockstep.
pub(crate) fn reconnect_delay(n: u32) -> Duration {
    let exp = RECONNECT_BASE.saturating_mul(2u32.saturating_pow(n.min(16)));
    jitter(exp.min(RECONNECT_MAX))
}

/// `d` ± 20%, at least one millisecond.
pub(crate) fn jitter(d: Duration) -> Duration {
    let factor: f64 = rand::rng().random_range(0.8..=1.2);
    Duration::from_millis(((d.as_millis() as f64 * factor).round() as u64).max(1))
}

/// A retry tier delay in ms with ±20% jitter, at least 1 ms.
pub(crate) fn jitter_ms(ms: u64) -> u64 {
    jitter(Duration::from_millis(ms)).as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_twenty_percent() {
        for _ in 0..1000 {
            let j = jitter_ms(1000);
            assert!((800..=1200).contains(&j), "{j}");
        }
        assert_eq!(jitter_ms(0), 1);
    }

    #[test]
    fn reconnect_delay_grows_and_is_capped() {
        assert!(reconnect_delay(0) <= Duration::from_millis(120));
        assert!(reconnect_delay(3) >= Duration::from_millis(640));
        for n in [10, 40, u32::MAX] {
            assert!(reconnect_delay(n) <= Duration::from_secs(6));
        }
    }
}
