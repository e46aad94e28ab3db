//! The error policy of cluster requests: which failures are retried, how long, and how
//! often.
//!
//! Every failed cluster request is classified ([`crate::cluster::classify`]):
//!
//! * **transient** and **conflict**: retried with exponential backoff and full jitter
//!   (backon's [`ExponentialBuilder`]), the object re-read before each new attempt (a
//!   write that a previous attempt applied after all is then not sent again), until
//!   [`RetryPolicy::attempts`] or [`RetryPolicy::deadline`] is reached;
//! * **unknown outcome** (a write was sent, no reliable answer came back): resolved by
//!   reading the object back and comparing it with the intended state. Applied: the step
//!   is done. Not (yet) applied: the idempotent write is sent again within the same budget.
//!   Still unresolved at the end: the step fails as *may have applied*, which counts as
//!   acted (cooldowns, rate caps, blast radius) and is reverted like an applied step;
//! * **not found, forbidden, invalid**: fail at once, without acting.
//!
//! The policy is applied once, by the engine, for every action: an action only classifies
//! (see [`crate::actions::StepError`] and `docs/specs/action.md`). An action whose request
//! must not be repeated answers its own failures instead: an `http` step's webhook is never
//! retried, and a call whose outcome is unknown (no answer, or a 5xx) is recorded as such
//! and counts as acted.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

/// Bounds of the retries of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: usize,
    /// The delay before the second attempt (doubled for each further one, plus jitter).
    pub first_delay: Duration,
    /// No delay between attempts exceeds this (before jitter).
    pub max_delay: Duration,
    /// The sum of the delays never exceeds this.
    pub deadline: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 6,
            first_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(4),
            deadline: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The delays before the 2nd, 3rd, ... attempt: at most `attempts - 1` of them, their
    /// sum within the deadline.
    pub fn delays(&self) -> impl Iterator<Item = Duration> {
        ExponentialBuilder::default()
            .with_min_delay(self.first_delay)
            .with_max_delay(self.max_delay)
            .with_factor(2.0)
            .with_max_times(self.attempts.saturating_sub(1))
            .with_total_delay(Some(self.deadline))
            .with_jitter()
            .build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_are_bounded_by_attempts_and_deadline_and_jittered() {
        let p = RetryPolicy::default();
        let d: Vec<Duration> = p.delays().collect();
        assert!(!d.is_empty() && d.len() < p.attempts, "{d:?}");
        assert!(d.iter().sum::<Duration>() <= p.deadline, "{d:?}");
        assert!(d[0] >= p.first_delay && d[0] < p.first_delay * 2, "{d:?}");
        // Jitter: two schedules almost never agree on every delay.
        let runs: Vec<Vec<Duration>> = (0..5).map(|_| p.delays().collect()).collect();
        assert!(runs.iter().any(|r| r != &runs[0]), "{runs:?}");

        let tight = RetryPolicy { deadline: Duration::from_millis(600), ..p };
        assert!(tight.delays().sum::<Duration>() <= Duration::from_millis(600));
        let once = RetryPolicy { attempts: 1, ..p };
        assert_eq!(once.delays().count(), 0);
    }
}
