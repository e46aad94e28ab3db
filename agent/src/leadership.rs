//! Who may act: the one leadership abstraction the daemon's stages ask.
//!
//! With one replica ([`Leadership::AlwaysLeader`], `leader_election.enabled: false`) this
//! process always leads and nothing is fenced. With leader election
//! ([`Leadership::Lease`]) only the holder of the `coordination.k8s.io/v1` Lease acts:
//! it evaluates watches into incidents, starts and advances playbook runs, fires cron
//! triggers, analyses incidents and delivers the outbox; the followers serve the read API
//! and keep their detector caches warm. Before every cluster write and every outgoing
//! message the leader also passes the **fence** ([`Leadership::fence`]): the lease must
//! stay valid for at least the operation's timeout, or the operation is not started (see
//! `warden_connectors::leader` for the clock rules).

use std::time::Duration;

use serde::Serialize;
use warden_connectors::leader::LeaderHandle;
use warden_connectors::Error as ConnectorError;
use warden_playbooks::audit::AuditFence;
use warden_playbooks::engine::{FenceGrant, FenceRefused};

pub use crate::config::operation_budget;
use crate::metrics::Metrics;

/// Whether this process may act (see the module docs).
#[derive(Debug, Clone)]
pub enum Leadership {
    /// One replica, no Lease: always the leader, nothing fenced.
    AlwaysLeader,
    /// Leader election on a Lease.
    Lease(LeaderHandle),
}

/// This replica's role as shown by `/readyz` and the logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoleView {
    /// `leader` or `follower`.
    pub role: &'static str,
    /// This replica's identity (`None` without leader election).
    pub identity: Option<String>,
    /// Who holds the lease as last seen (`None`: nobody, or no leader election).
    pub leader: Option<String>,
    /// `spec.leaseTransitions` as last seen.
    pub transitions: i32,
}

impl Leadership {
    /// Whether this replica leads now (by the clock now, see `LeaderHandle::is_leader`).
    pub fn is_leader(&self) -> bool {
        match self {
            Self::AlwaysLeader => true,
            Self::Lease(h) => h.is_leader(),
        }
    }

    /// The fencing check before an operation that takes up to `needed`: a grant (with the
    /// lease holder and transition count for the audit entry, and the validity left, after
    /// which the operation must be abandoned), or why not: [`FenceRefused::NotLeader`]
    /// (stop; the work stays stored for the leader) or [`FenceRefused::TooShort`] (try
    /// again after the next renew).
    pub fn fence(&self, needed: Duration) -> Result<FenceGrant, FenceRefused> {
        let Self::Lease(h) = self else { return Ok(FenceGrant::default()) };
        match h.ensure_valid_for(needed) {
            Ok(f) => Ok(FenceGrant {
                record: Some(AuditFence { lease: f.lease, holder: f.holder, transitions: i64::from(f.transitions) }),
                valid_for: Some(Duration::from_millis(f.valid_for_ms)),
            }),
            Err(e @ ConnectorError::LeaseTooShort { .. }) => Err(FenceRefused::TooShort(e.to_string())),
            Err(e) => Err(FenceRefused::NotLeader(e.to_string())),
        }
    }

    /// This replica's role and who leads.
    pub fn view(&self) -> RoleView {
        match self {
            Self::AlwaysLeader => RoleView { role: "leader", identity: None, leader: None, transitions: 0 },
            Self::Lease(h) => RoleView {
                role: if h.is_leader() { "leader" } else { "follower" },
                identity: Some(h.identity().to_string()),
                leader: h.holder(),
                transitions: h.transitions(),
            },
        }
    }

    /// Set `warden_leader` and `warden_leader_transitions`.
    pub fn export(&self, metrics: &Metrics) {
        let view = self.view();
        metrics.leader.set(i64::from(view.role == "leader"));
        metrics.leader_transitions.set(i64::from(view.transitions));
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! An in-memory Lease and a hand-driven clock, for tests of the stages that ask for
    //! leadership.

    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use async_trait::async_trait;
    use k8s_openapi::api::coordination::v1::Lease;
    use warden_connectors::leader::{Clock, LeaderElector, LeaseBackend, LeaseConfig};
    use warden_connectors::{Error, Result};

    use super::Leadership;

    #[derive(Debug)]
    pub struct FakeClock(Mutex<Instant>);

    impl FakeClock {
        pub fn advance(&self, by: Duration) {
            let mut now = self.0.lock().unwrap_or_else(|e| e.into_inner());
            *now += by;
        }
    }

    impl Clock for FakeClock {
        fn now(&self) -> Instant {
            *self.0.lock().unwrap_or_else(|e| e.into_inner())
        }
    }

    /// One Lease shared by every replica of a test, with resourceVersions like the API
    /// server's (a stale write is a 409).
    #[derive(Default)]
    pub struct MemLeases(Mutex<(Option<Lease>, u64)>);

    impl MemLeases {
        fn store(state: &mut (Option<Lease>, u64), mut lease: Lease) -> Lease {
            state.1 += 1;
            lease.metadata.resource_version = Some(state.1.to_string());
            state.0 = Some(lease.clone());
            lease
        }
    }

    fn conflict() -> Error {
        Error::Kube { status: 409, reason: "Conflict".into(), message: "the object has been modified".into() }
    }

    #[async_trait]
    impl LeaseBackend for MemLeases {
        async fn get(&self) -> Result<Option<Lease>> {
            Ok(self.0.lock().unwrap_or_else(|e| e.into_inner()).0.clone())
        }

        async fn create(&self, lease: &Lease) -> Result<Lease> {
            let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
            if s.0.is_some() {
                return Err(conflict());
            }
            Ok(Self::store(&mut s, lease.clone()))
        }

        async fn replace(&self, lease: &Lease) -> Result<Lease> {
            let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
            let current = s.0.as_ref().and_then(|l| l.metadata.resource_version.clone());
            if current.is_none() || current != lease.metadata.resource_version {
                return Err(conflict());
            }
            Ok(Self::store(&mut s, lease.clone()))
        }
    }

    /// Replicas electing on one in-memory Lease with one hand-driven clock (lease 15 s,
    /// renew deadline 10 s, retry 2 s, margin 1 s).
    pub struct Election {
        pub leases: Arc<MemLeases>,
        pub clock: Arc<FakeClock>,
    }

    impl Election {
        pub fn new() -> Self {
            Self { leases: Arc::new(MemLeases::default()), clock: Arc::new(FakeClock(Mutex::new(Instant::now()))) }
        }

        pub fn elector(&self, identity: &str) -> LeaderElector {
            let config = LeaseConfig::new("warden", "warden", identity);
            LeaderElector::with_backend(self.leases.clone(), config, self.clock.clone()).expect("a valid lease config")
        }

        /// A replica that took the lease (`step` once on a free lease) and its leadership.
        pub async fn leader(&self, identity: &str) -> (LeaderElector, Leadership) {
            let mut e = self.elector(identity);
            e.step().await.expect("the first step takes the free lease");
            let l = Leadership::Lease(e.handle());
            assert!(l.is_leader(), "{identity} leads");
            (e, l)
        }

        /// A replica that saw another hold the lease.
        pub async fn follower(&self, identity: &str) -> (LeaderElector, Leadership) {
            let mut e = self.elector(identity);
            e.step().await.expect("a step");
            let l = Leadership::Lease(e.handle());
            assert!(!l.is_leader(), "{identity} follows");
            (e, l)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::Election;
    use super::*;
    use warden_connectors::leader::LeaseConfig;

    #[tokio::test]
    async fn the_fence_grants_the_leader_refuses_a_follower_and_a_lease_too_short() {
        let world = Election::new();
        let (_a, leader) = world.leader("warden-0").await;
        let (_b, follower) = world.follower("warden-1").await;

        let grant = leader.fence(Duration::from_secs(10)).expect("the leader passes");
        let record = grant.record.expect("the grant names the holder");
        assert_eq!((record.holder.as_str(), record.transitions), ("warden-0", 0));
        assert_eq!(record.lease, "lease warden/warden");
        assert_eq!(grant.valid_for, Some(Duration::from_secs(14)));

        assert!(
            matches!(follower.fence(Duration::from_secs(1)), Err(FenceRefused::NotLeader(m)) if m.contains("warden-0"))
        );
        let view = follower.view();
        assert_eq!((view.role, view.leader.as_deref()), ("follower", Some("warden-0")));

        // 5 s after the last renew, 9 s are left: a 10 s operation waits for the next renew.
        world.clock.advance(Duration::from_secs(5));
        assert!(matches!(leader.fence(Duration::from_secs(10)), Err(FenceRefused::TooShort(_))));
        assert!(leader.fence(Duration::from_secs(8)).is_ok());
        // Past the renew deadline without a renew, it no longer leads.
        world.clock.advance(Duration::from_secs(6));
        assert!(!leader.is_leader());
        assert!(matches!(leader.fence(Duration::from_millis(1)), Err(FenceRefused::NotLeader(_))));

        assert!(Leadership::AlwaysLeader.fence(Duration::from_secs(3600)).is_ok_and(|g| g.record.is_none()));
        assert_eq!(operation_budget(&LeaseConfig::new("warden", "warden", "x")), Duration::from_secs(10));
    }
}
