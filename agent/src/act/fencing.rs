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
