//! The scale decision: how many replicas, or which guard refuses.
//!
//! A pure function of the policy, the cluster's current state, the time of the last action on
//! the same target and whether the triggering signal has data. Keeping it pure makes every
//! refusal explainable and testable without a cluster.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::{Error, Result};

/// Bounds and pacing of scale actions on one target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScalePolicy {
    pub min_replicas: i32,
    pub max_replicas: i32,
    /// Replicas added per action (negative scales down).
    pub step: i32,
    /// Minimum time between two actions on the same target.
    pub cooldown: Duration,
    /// Send with Kubernetes server-side dry-run: validated, never persisted.
    pub dry_run: bool,
}

impl ScalePolicy {
    pub fn validate(&self) -> Result<()> {
        if self.min_replicas < 0 {
            return Err(Error::InvalidPolicy(format!("min_replicas {} is negative", self.min_replicas)));
        }
        if self.min_replicas > self.max_replicas {
            return Err(Error::InvalidPolicy(format!(
                "min_replicas {} is greater than max_replicas {}",
                self.min_replicas, self.max_replicas
            )));
        }
        if self.step == 0 {
            return Err(Error::InvalidPolicy("step must not be 0".into()));
        }
        Ok(())
    }
}

/// The guard that refused an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Guard {
    /// The signal had no data: never a reason to act.
    NoData,
    /// The target was acted on too recently.
    Cooldown,
    /// The target is already at the bound the step would cross.
    Bounds,
    /// The policy itself is invalid.
    Policy,
}

/// Why an action was not taken.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Refusal {
    pub guard: Guard,
    pub reason: String,
}

/// The outcome of planning.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum ScaleDecision {
    Scale { from: i32, to: i32 },
    Refuse(Refusal),
}

/// Decide a scale action. `current` is the desired replica count the cluster reports now.
pub fn plan_scale(
    policy: &ScalePolicy,
    current: i32,
    last_action_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    has_data: bool,
) -> ScaleDecision {
    if !has_data {
        return refuse(Guard::NoData, "the triggering signal has no data".into());
    }
    if let Err(e) = policy.validate() {
        return refuse(Guard::Policy, e.to_string());
    }
    if let Some(last) = last_action_at {
        let elapsed = now.signed_duration_since(last).to_std().unwrap_or(Duration::ZERO);
        if elapsed < policy.cooldown {
            let left = policy.cooldown - elapsed;
            return refuse(
                Guard::Cooldown,
                format!(
                    "last action on this target {}s ago; cooldown is {}s ({}s left)",
                    elapsed.as_secs(),
                    policy.cooldown.as_secs(),
                    left.as_secs()
                ),
            );
        }
    }
    let to = current.saturating_add(policy.step).clamp(policy.min_replicas, policy.max_replicas);
    if to == current {
        let bound = if policy.step > 0 { "max_replicas" } else { "min_replicas" };
        return refuse(
            Guard::Bounds,
            format!("already at {current} replicas; {bound} allows no further step"),
        );
    }
    ScaleDecision::Scale { from: current, to }
}

fn refuse(guard: Guard, reason: String) -> ScaleDecision {
    ScaleDecision::Refuse(Refusal { guard, reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> ScalePolicy {
        ScalePolicy { min_replicas: 2, max_replicas: 5, step: 1, cooldown: Duration::from_secs(600), dry_run: false }
    }

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).expect("valid test time")
    }

    #[test]
    fn scales_one_step_up() {
        assert_eq!(plan_scale(&policy(), 2, None, t(0), true), ScaleDecision::Scale { from: 2, to: 3 });
    }

    #[test]
    fn clamps_into_bounds() {
        let p = ScalePolicy { step: 10, ..policy() };
        assert_eq!(plan_scale(&p, 3, None, t(0), true), ScaleDecision::Scale { from: 3, to: 5 });
        // Below the minimum, a step lands at least on the minimum.
        assert_eq!(plan_scale(&policy(), 0, None, t(0), true), ScaleDecision::Scale { from: 0, to: 2 });
    }

    #[test]
    fn refuses_at_max() {
        match plan_scale(&policy(), 5, None, t(0), true) {
            ScaleDecision::Refuse(r) => {
                assert_eq!(r.guard, Guard::Bounds);
                assert!(r.reason.contains("max_replicas"), "{}", r.reason);
            }
            other => panic!("expected refusal, got {other:?}"),
        }
    }

    #[test]
    fn refuses_without_data_even_outside_cooldown() {
        match plan_scale(&policy(), 2, None, t(0), false) {
            ScaleDecision::Refuse(r) => assert_eq!(r.guard, Guard::NoData),
            other => panic!("expected refusal, got {other:?}"),
        }
    }

    #[test]
    fn cooldown_counts_from_last_action() {
        match plan_scale(&policy(), 2, Some(t(0)), t(599), true) {
            ScaleDecision::Refuse(r) => {
                assert_eq!(r.guard, Guard::Cooldown);
                assert!(r.reason.contains("1s left"), "{}", r.reason);
            }
            other => panic!("expected refusal, got {other:?}"),
        }
        assert_eq!(plan_scale(&policy(), 2, Some(t(0)), t(600), true), ScaleDecision::Scale { from: 2, to: 3 });
    }

    #[test]
    fn invalid_policy_is_refused_not_applied() {
        let p = ScalePolicy { min_replicas: 6, ..policy() };
        match plan_scale(&p, 2, None, t(0), true) {
            ScaleDecision::Refuse(r) => assert_eq!(r.guard, Guard::Policy),
            other => panic!("expected refusal, got {other:?}"),
        }
    }
}
