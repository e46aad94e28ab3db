//! The playbook engine's fence ([`warden_playbooks::engine::Fencing`]) on the daemon's
//! [`Leadership`]: the engine checks it before every request a step sends (cluster writes
//! and `http` calls) and records the lease holder and transition count in the request's
//! audit entry. With one replica ([`Leadership::AlwaysLeader`]) every check passes and
//! entries carry no lease.

use std::time::Duration;

use warden_playbooks::engine::{FenceGrant, FenceRefused, Fencing};

use crate::leadership::Leadership;

/// [`Leadership`] as the engine's fence.
#[derive(Debug, Clone)]
pub struct LeaderFencing {
    pub leadership: Leadership,
    /// The Kubernetes client's request timeout: what a cluster write asks the lease for.
    pub cluster_write_timeout: Duration,
}

impl Fencing for LeaderFencing {
    fn cluster_write_timeout(&self) -> Duration {
        self.cluster_write_timeout
    }

    fn check(&self, needed: Duration) -> Result<FenceGrant, FenceRefused> {
        self.leadership.fence(needed)
    }
}

/// The fence of a command-line process (`warden playbook run`, `warden approve`) when the
/// configuration elects a leader: the command never holds the lease, so every request is
/// refused with "not the leader". The command still records the run (or the decision) in
/// the shared store, its steps stay pending, and the leader's ticker sends them, fenced by
/// the lease; the command then follows the run from the store.
#[derive(Debug, Clone, Copy, Default)]
pub struct HandToLeader;

impl Fencing for HandToLeader {
    fn cluster_write_timeout(&self) -> Duration {
        Duration::from_secs(30)
    }

    fn check(&self, _needed: Duration) -> Result<FenceGrant, FenceRefused> {
        Err(FenceRefused::NotLeader("a command does not hold the lease; the leader sends this run's requests".into()))
    }
}
