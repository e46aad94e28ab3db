//! Checked time arithmetic for the engine.
//!
//! Every duration a file can set is bounded ([`crate::duration::MAX_DURATION`]), but a run
//! also reads durations back from its stored plan, and `DateTime + Duration` panics when the
//! result leaves chrono's range. A panic inside the engine leaves a run `running` forever,
//! holding its target, and panics again on every restart; these helpers return `None`
//! instead, and the caller fails the step with a reason.

use chrono::{DateTime, Utc};
use std::time::Duration;

/// `now + d`, or `None` when it is out of range.
pub fn after(now: DateTime<Utc>, d: Duration) -> Option<DateTime<Utc>> {
    chrono::Duration::from_std(d).ok().and_then(|d| now.checked_add_signed(d))
}

/// `now - d`, or `None` when it is out of range.
pub fn before(now: DateTime<Utc>, d: Duration) -> Option<DateTime<Utc>> {
    chrono::Duration::from_std(d).ok().and_then(|d| now.checked_sub_signed(d))
}

/// `now + secs` for a number of seconds read from a stored plan (not finite, negative or
/// out of range: `None`).
pub fn after_secs(now: DateTime<Utc>, secs: f64) -> Option<DateTime<Utc>> {
    if !secs.is_finite() || secs < 0.0 {
        return None;
    }
    Duration::try_from_secs_f64(secs).ok().and_then(|d| after(now, d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_range_is_none_not_a_panic() {
        let now = Utc::now();
        assert!(after(now, Duration::from_secs(1_000_000_000 * 86_400)).is_none());
        assert!(after(now, Duration::MAX).is_none());
        assert!(before(now, Duration::MAX).is_none());
        assert!(after_secs(now, f64::MAX).is_none());
        assert!(after_secs(now, f64::NAN).is_none());
        assert!(after_secs(now, -1.0).is_none());
        assert_eq!(after(now, Duration::from_secs(60)), Some(now + chrono::Duration::seconds(60)));
        assert_eq!(after_secs(now, 1.5), Some(now + chrono::Duration::milliseconds(1500)));
    }
}
