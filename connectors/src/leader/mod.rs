//! Leader election on a `coordination.k8s.io/v1` Lease, with fencing.
//!
//! Two or more Warden replicas share one cluster; only one of them may act on it (write
//! to the API server, send notifications, advance runs), or every action and message
//! would happen twice. The replicas elect that one with a Lease object, the same
//! protocol as client-go's `leaderelection` package: the holder writes its identity and
//! a renew time into the Lease every retry period; the others take the Lease over only
//! when its record has not changed for a whole lease duration (measured on their own
//! monotonic clock from when they saw it change, so clock skew between nodes does not
//! matter) or when the holder released it. Every write carries the `resourceVersion` it
//! read, so two replicas never both win a race: the loser gets a 409.
//!
//! Being elected is not enough to act safely: a leader can be paused (a long GC, a
//! `SIGSTOP`, a node under pressure) or cut off from the API server and keep believing
//! it leads while another replica has taken over. Hence the **fencing rule**: before
//! each cluster write or outgoing message the caller asks
//! [`LeaderHandle::ensure_valid_for`] for the time the operation needs; it answers with a
//! [`Fence`] only when this replica holds the lease, renewed it less than the renew
//! deadline ago, and the lease stays valid for at least that long: by the local
//! monotonic clock from the moment the last successful renew was *sent*, minus a safety
//! margin. The others cannot take over before a full lease duration after they saw that
//! renew, so a fenced operation ends before anyone else may start. The handle answers
//! from the clock at the moment of the call, not from the elector task: a stalled task
//! (or a paused process that just woke up) is refused at once.
//!
//! No existing crate fits: kube-rs has no leader election; `kube-leader-election` is
//! built on an older kube, and `kube-lease-manager` reports a bare `bool` without the
//! renew instant that fencing needs.

mod backend;
mod elector;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;

pub use backend::{KubeLeases, LeaseBackend};
pub use elector::LeaderElector;

use crate::{Error, Result};

/// Where the lease is and how the election is timed. Defaults follow client-go
/// (15 s / 10 s / 2 s) with a 1 s safety margin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseConfig {
    /// Namespace of the Lease (normally the namespace Warden runs in; RBAC grants
    /// Lease access there only).
    pub namespace: String,
    /// Name of the Lease object.
    pub name: String,
    /// This replica's identity written as the holder: its pod name. Must be unique among
    /// the replicas.
    pub identity: String,
    /// How long a lease stays valid after its last renew. The others wait this long
    /// after the record last changed before taking over a lease that was not released.
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before it steps down. Shorter than
    /// `lease_duration - safety_margin`, so that the leader stops acting before the lease
    /// can expire for the others.
    pub renew_deadline: Duration,
    /// How often the leader renews and the others look at the lease.
    pub retry_period: Duration,
    /// Subtracted from every validity the fence computes: room for clock-rate drift
    /// between nodes and for the latency of the operation's last request.
    pub safety_margin: Duration,
}

impl LeaseConfig {
    /// A configuration with the default timings.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>, identity: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
            safety_margin: Duration::from_secs(1),
        }
    }

    /// `lease NAMESPACE/NAME`, for messages and audit entries.
    pub fn describe(&self) -> String {
        format!("lease {}/{}", self.namespace, self.name)
    }

    /// Checks names and timings: non-empty names that make a valid request path, a lease
    /// duration of at least one second, `retry_period < renew_deadline` and
    /// `renew_deadline + safety_margin < lease_duration`.
    pub fn validate(&self) -> Result<()> {
        crate::kubernetes::check_name("lease namespace", &self.namespace)?;
        crate::kubernetes::check_name("lease name", &self.name)?;
        if self.identity.trim().is_empty() {
            return Err(Error::InvalidInput(format!("{}: the identity (pod name) is empty", self.describe())));
        }
        let bad = |message: String| Err(Error::InvalidInput(format!("{}: {message}", self.describe())));
        if self.lease_duration < Duration::from_secs(1) {
            return bad(format!("lease_duration {:?} is shorter than 1s", self.lease_duration));
        }
        if self.retry_period.is_zero() || self.retry_period >= self.renew_deadline {
            return bad(format!(
                "retry_period {:?} must be above zero and shorter than renew_deadline {:?}",
                self.retry_period, self.renew_deadline
            ));
        }
        if self.renew_deadline + self.safety_margin >= self.lease_duration {
            return bad(format!(
                "renew_deadline {:?} plus safety_margin {:?} must be shorter than lease_duration {:?}",
                self.renew_deadline, self.safety_margin, self.lease_duration
            ));
        }
        if i32::try_from(lease_seconds(self.lease_duration)).is_err() {
            return bad(format!("lease_duration {:?} is too long", self.lease_duration));
        }
        Ok(())
    }
}

/// Whole seconds for `leaseDurationSeconds`, rounded up (the others then wait at least as
/// long as this replica assumes).
pub(crate) fn lease_seconds(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

/// A monotonic clock; [`SystemClock`] in production, a hand-driven one in tests.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current instant.
    fn now(&self) -> Instant;
}

/// [`Instant::now`]: `CLOCK_MONOTONIC`, which keeps running while the process is stopped.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// What the elector last decided and saw, published on a watch channel.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LeaderStatus {
    /// Whether the elector considered itself leader at its last step. Use
    /// [`LeaderHandle::is_leader`], which also checks the clock.
    pub leading: bool,
    /// The holder in the Lease as last read or written (`None`: free or released).
    pub holder: Option<String>,
    /// `spec.leaseTransitions` as last read or written.
    pub transitions: i32,
    /// When the last successful renew (or acquisition) was sent, on the local monotonic
    /// clock; set while leading.
    pub renewed_at: Option<Instant>,
}

/// Proof that this replica held the lease, and will hold it for `valid_for`, at the moment
/// of the check. Written into the audit entry of the fenced operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fence {
    /// `lease NAMESPACE/NAME`.
    pub lease: String,
    /// The holder identity (this replica).
    pub holder: String,
    /// `spec.leaseTransitions` of the lease this replica holds: it changes with every
    /// new holder, so two entries with the same value come from one term.
    pub transitions: i32,
    /// How long the lease was still valid at the check, in milliseconds.
    pub valid_for_ms: u64,
    /// The end of that validity on the local monotonic clock.
    #[serde(skip)]
    pub valid_until: Instant,
}

/// A cheap-to-clone view of the election for the rest of the daemon.
#[derive(Debug, Clone)]
pub struct LeaderHandle {
    status: watch::Receiver<LeaderStatus>,
    clock: Arc<dyn Clock>,
    config: Arc<LeaseConfig>,
}

impl LeaderHandle {
    /// This replica's identity.
    pub fn identity(&self) -> &str {
        &self.config.identity
    }

    /// The configuration the election runs with.
    pub fn config(&self) -> &LeaseConfig {
        &self.config
    }

    /// Whether this replica leads now: it holds the lease and renewed it less than the
    /// renew deadline ago (by the clock now, whatever the elector task is doing).
    pub fn is_leader(&self) -> bool {
        let status = self.status.borrow();
        self.leading_since(&status, self.clock.now()).is_some()
    }

    /// The holder named in the lease as last seen (`None`: nobody holds it).
    pub fn holder(&self) -> Option<String> {
        self.status.borrow().holder.clone()
    }

    /// `spec.leaseTransitions` as last seen.
    pub fn transitions(&self) -> i32 {
        self.status.borrow().transitions
    }

    /// The last published status.
    pub fn status(&self) -> LeaderStatus {
        self.status.borrow().clone()
    }

    /// A receiver that wakes on every published change (leading, holder, transitions,
    /// renews). The elector also publishes when it steps down at the renew deadline.
    pub fn subscribe(&self) -> watch::Receiver<LeaderStatus> {
        self.status.clone()
    }

    /// The fencing check: a [`Fence`] when this replica leads and the lease stays valid
    /// for at least `needed` (from the last successful renew, by the local monotonic
    /// clock, less the safety margin). [`Error::NotLeader`] (not retryable) when it does
    /// not lead; [`Error::LeaseTooShort`] (retryable: the next renew extends it) when the
    /// validity left is shorter than `needed`.
    pub fn ensure_valid_for(&self, needed: Duration) -> Result<Fence> {
        let status = self.status.borrow().clone();
        let now = self.clock.now();
        let lease = self.config.describe();
        let Some(renewed_at) = self.leading_since(&status, now) else {
            let reason = match (&status.holder, status.leading) {
                (_, true) => format!(
                    "the last successful renew is older than the renew deadline ({:?})",
                    self.config.renew_deadline
                ),
                (Some(holder), false) if *holder != self.config.identity => format!("held by {holder}"),
                (Some(_), false) => "this replica is not (or no longer) confirmed as the holder".to_string(),
                (None, false) => "nobody holds it".to_string(),
            };
            return Err(Error::NotLeader { lease, reason });
        };
        let lifetime = self.config.lease_duration.saturating_sub(self.config.safety_margin);
        let valid_until = renewed_at.checked_add(lifetime).unwrap_or(now);
        let remaining = valid_until.saturating_duration_since(now);
        if remaining < needed {
            return Err(Error::LeaseTooShort { lease, remaining, needed });
        }
        Ok(Fence {
            lease,
            holder: self.config.identity.clone(),
            transitions: status.transitions,
            valid_for_ms: u64::try_from(remaining.as_millis()).unwrap_or(u64::MAX),
            valid_until,
        })
    }

    /// Waits until this replica leads (or the elector stopped: then an error).
    pub async fn wait_until_leader(&self) -> Result<()> {
        let mut status = self.status.clone();
        loop {
            if self.is_leader() {
                return Ok(());
            }
            if status.changed().await.is_err() {
                return Err(Error::NotLeader {
                    lease: self.config.describe(),
                    reason: "the elector stopped".to_string(),
                });
            }
        }
    }

    /// The renew instant when `status` says leading and the renew deadline has not passed.
    fn leading_since(&self, status: &LeaderStatus, now: Instant) -> Option<Instant> {
        if !status.leading || status.holder.as_deref() != Some(self.config.identity.as_str()) {
            return None;
        }
        let renewed_at = status.renewed_at?;
        let deadline = renewed_at.checked_add(self.config.renew_deadline)?;
        (now < deadline).then_some(renewed_at)
    }
}

#[cfg(test)]
mod tests;
