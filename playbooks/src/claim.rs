//! One owner per run: claims with fencing tokens.
//!
//! Several tasks may want to advance the same run: the task that started it, the
//! once-a-second ticker, an approval arriving over the API, a second process sharing the
//! store. Two of them advancing one run at once send its steps twice (and, planning from
//! different reads, different plans). So a task advances a run only while it holds the
//! run's *claim*: an owner, a fencing token and an expiry stored on the run row.
//!
//! * Taking a claim succeeds when the run is unclaimed, its claim expired, or was released;
//!   every grant increments the run's token, so a later owner always holds a larger token.
//! * Every write of the run's state carries the claim; the store refuses a write whose
//!   owner and token are not the stored ones ([`check_fence`]), so an owner that lost its
//!   claim (paused past the expiry, partitioned) can no longer record anything, and it
//!   stops before sending the next request.
//! * The holder renews the claim while it works ([`CLAIM_TTL`], renewed every
//!   [`CLAIM_RENEW_EVERY`]) and releases it when it stops; a claim of a process that died
//!   expires after [`CLAIM_TTL`], and another task resumes the run from its stored plan.
//!
//! Expiry is measured on the wall clock of the store, never on the engine's (possibly
//! simulated) clock: a claim is about which task is alive, not about the run's schedule.
//! The same token is what a leader election fences its writes on.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// How long a claim lasts without renewal.
pub const CLAIM_TTL: Duration = Duration::from_secs(15);
/// How often the holder renews its claim while it works.
pub const CLAIM_RENEW_EVERY: Duration = Duration::from_secs(5);

/// A fencing token: grows by one every time a run is claimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FencingToken(pub u64);

impl fmt::Display for FencingToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A granted claim on one run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunClaim {
    pub run_id: i64,
    pub owner: String,
    pub token: FencingToken,
    pub expires_at: DateTime<Utc>,
}

/// The claim columns of a run row as stored.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClaimState {
    /// `None` when unclaimed or released.
    pub owner: Option<String>,
    /// The last token granted (0: never claimed).
    pub token: u64,
    pub expires_at: Option<DateTime<Utc>>,
}

impl ClaimState {
    /// Someone other than `owner` holds an unexpired claim.
    pub fn held_by_other(&self, owner: &str, now: DateTime<Utc>) -> bool {
        match (&self.owner, self.expires_at) {
            (Some(o), Some(exp)) => o != owner && exp > now,
            _ => false,
        }
    }
}

/// What a claim request got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimDecision {
    Granted(RunClaim),
    /// Another owner holds the run until `expires_at`.
    Held {
        owner: String,
        expires_at: DateTime<Utc>,
    },
}

/// Decide a claim request on a run whose stored claim is `current`, at wall-clock `now`.
pub fn decide_claim(
    run_id: i64,
    current: &ClaimState,
    owner: &str,
    now: DateTime<Utc>,
    ttl: Duration,
) -> ClaimDecision {
    if current.held_by_other(owner, now) {
        return ClaimDecision::Held {
            owner: current.owner.clone().unwrap_or_default(),
            expires_at: current.expires_at.unwrap_or(now),
        };
    }
    let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::seconds(30));
    ClaimDecision::Granted(RunClaim {
        run_id,
        owner: owner.to_string(),
        token: FencingToken(current.token.saturating_add(1)),
        expires_at: now.checked_add_signed(ttl).unwrap_or(now),
    })
}

/// A write (or renewal) with a claim that is no longer the run's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("run {run_id}: claim {token} of {owner} is stale (the run is now {current})")]
pub struct Fenced {
    pub run_id: i64,
    pub owner: String,
    pub token: FencingToken,
    /// Who holds the run now, in words.
    pub current: String,
}

/// Whether a write under `claim` may be stored on a run whose stored claim is `current`:
/// the owner and the token must be the stored ones. An expired claim nobody else took is
/// still valid (no one else has acted on the run since).
pub fn check_fence(current: &ClaimState, claim: &RunClaim) -> Result<(), Fenced> {
    if current.owner.as_deref() == Some(claim.owner.as_str()) && current.token == claim.token.0 {
        return Ok(());
    }
    let now_held = match &current.owner {
        Some(o) => format!("claimed by {o} with token {}", current.token),
        None => format!("unclaimed after token {}", current.token),
    };
    Err(Fenced { run_id: claim.run_id, owner: claim.owner.clone(), token: claim.token, current: now_held })
}

/// A fresh owner name for one task: this process (its id and start time) and a counter.
pub fn new_owner() -> String {
    static INSTANCE: OnceLock<String> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let instance = INSTANCE.get_or_init(|| {
        let nanos = Utc::now().timestamp_nanos_opt().unwrap_or_default();
        format!("{}-{:x}", std::process::id(), nanos)
    });
    format!("{instance}/{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap_or_default()
    }

    fn granted(d: ClaimDecision) -> RunClaim {
        match d {
            ClaimDecision::Granted(c) => c,
            other => panic!("not granted: {other:?}"),
        }
    }

    fn stored(c: &RunClaim) -> ClaimState {
        ClaimState { owner: Some(c.owner.clone()), token: c.token.0, expires_at: Some(c.expires_at) }
    }

    #[test]
    fn an_unclaimed_run_is_granted_with_the_next_token() {
        let c = granted(decide_claim(7, &ClaimState::default(), "a", t(0), CLAIM_TTL));
        assert_eq!(c.token, FencingToken(1));
        assert_eq!(c.expires_at, t(15));
        assert_eq!(c.run_id, 7);
    }

    #[test]
    fn a_held_claim_refuses_others_until_it_expires() {
        let a = granted(decide_claim(1, &ClaimState::default(), "a", t(0), CLAIM_TTL));
        let row = stored(&a);
        assert_eq!(
            decide_claim(1, &row, "b", t(10), CLAIM_TTL),
            ClaimDecision::Held { owner: "a".into(), expires_at: t(15) }
        );
        // After the expiry another owner gets it, with a larger token.
        let b = granted(decide_claim(1, &row, "b", t(16), CLAIM_TTL));
        assert_eq!(b.token, FencingToken(2));
        // The holder itself may claim again (a renewal): the token still moves on.
        assert_eq!(granted(decide_claim(1, &row, "a", t(10), CLAIM_TTL)).token, FencingToken(2));
    }

    #[test]
    fn a_released_claim_is_free_and_tokens_never_repeat() {
        let a = granted(decide_claim(1, &ClaimState::default(), "a", t(0), CLAIM_TTL));
        let released = ClaimState { owner: None, token: a.token.0, expires_at: None };
        let b = granted(decide_claim(1, &released, "b", t(1), CLAIM_TTL));
        assert!(b.token > a.token);
    }

    #[test]
    fn writes_with_a_stale_token_are_fenced() {
        let a = granted(decide_claim(1, &ClaimState::default(), "a", t(0), CLAIM_TTL));
        assert_eq!(check_fence(&stored(&a), &a), Ok(()));
        // a paused past its expiry; b took the run.
        let b = granted(decide_claim(1, &stored(&a), "b", t(40), CLAIM_TTL));
        let err = check_fence(&stored(&b), &a).unwrap_err();
        assert_eq!(err.token, FencingToken(1));
        assert!(err.to_string().contains("claimed by b with token 2"), "{err}");
        assert_eq!(check_fence(&stored(&b), &b), Ok(()));
        // Released, then written with the old claim: fenced too.
        let released = ClaimState { owner: None, token: b.token.0, expires_at: None };
        assert!(check_fence(&released, &b).is_err());
    }

    #[test]
    fn an_expired_claim_nobody_took_still_writes() {
        let a = granted(decide_claim(1, &ClaimState::default(), "a", t(0), CLAIM_TTL));
        // Expired at t(15) but the row still names a with its token.
        assert_eq!(check_fence(&stored(&a), &a), Ok(()));
        assert!(!stored(&a).held_by_other("b", t(16)));
        assert!(stored(&a).held_by_other("b", t(14)));
    }

    #[test]
    fn owners_are_unique() {
        assert_ne!(new_owner(), new_owner());
    }
}
