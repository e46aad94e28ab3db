//! The election state machine driven step by step with a hand-set clock and an in-memory
//! Lease store that keeps resourceVersions like the API server (a stale write is a 409)
//! and can fail on demand.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use k8s_openapi::api::coordination::v1::Lease;

use super::*;

#[derive(Debug)]
struct FakeClock(Mutex<Instant>);

impl FakeClock {
    fn new() -> Arc<Self> {
        Arc::new(Self(Mutex::new(Instant::now())))
    }

    fn advance(&self, by: Duration) {
        let mut now = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *now += by;
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Instant {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Default)]
struct Store {
    lease: Option<Lease>,
    version: u64,
    /// Writes of these identities fail with a 503 (a partition between them and the server).
    cut_off: Vec<String>,
    writes: u32,
}

/// One replica's view of the shared store: its identity decides whether it is cut off.
struct FakeBackend {
    store: Arc<Mutex<Store>>,
    identity: String,
}

impl FakeBackend {
    fn check(&self, store: &Store) -> Result<()> {
        if store.cut_off.contains(&self.identity) {
            return Err(Error::Kube { status: 503, reason: "ServiceUnavailable".into(), message: "cut off".into() });
        }
        Ok(())
    }

    fn stored(store: &mut Store, mut lease: Lease) -> Lease {
        store.version += 1;
        store.writes += 1;
        lease.metadata.resource_version = Some(store.version.to_string());
        store.lease = Some(lease.clone());
        lease
    }
}

fn conflict() -> Error {
    Error::Kube { status: 409, reason: "Conflict".into(), message: "the object has been modified".into() }
}

#[async_trait]
impl LeaseBackend for FakeBackend {
    async fn get(&self) -> Result<Option<Lease>> {
        let store = self.store.lock().unwrap_or_else(|e| e.into_inner());
        self.check(&store)?;
        Ok(store.lease.clone())
    }

    async fn create(&self, lease: &Lease) -> Result<Lease> {
        let mut store = self.store.lock().unwrap_or_else(|e| e.into_inner());
        self.check(&store)?;
        if store.lease.is_some() {
            return Err(Error::Kube { status: 409, reason: "AlreadyExists".into(), message: "exists".into() });
        }
        Ok(Self::stored(&mut store, lease.clone()))
    }

    async fn replace(&self, lease: &Lease) -> Result<Lease> {
        let mut store = self.store.lock().unwrap_or_else(|e| e.into_inner());
        self.check(&store)?;
        let current = store.lease.as_ref().and_then(|l| l.metadata.resource_version.clone());
        if current.is_none() || current != lease.metadata.resource_version {
            return Err(conflict());
        }
        Ok(Self::stored(&mut store, lease.clone()))
    }
}

/// Lease 10 s, renew deadline 6 s, retry 1 s, margin 1 s.
fn config(identity: &str) -> LeaseConfig {
    LeaseConfig {
        lease_duration: Duration::from_secs(10),
        renew_deadline: Duration::from_secs(6),
        retry_period: Duration::from_secs(1),
        safety_margin: Duration::from_secs(1),
        ..LeaseConfig::new("warden", "warden", identity)
    }
}

struct World {
    store: Arc<Mutex<Store>>,
    clock: Arc<FakeClock>,
}

impl World {
    fn new() -> Self {
        Self { store: Arc::new(Mutex::new(Store::default())), clock: FakeClock::new() }
    }

    fn elector(&self, identity: &str) -> LeaderElector {
        let backend = Arc::new(FakeBackend { store: self.store.clone(), identity: identity.to_string() });
        LeaderElector::with_backend(backend, config(identity), self.clock.clone()).unwrap()
    }

    fn stored(&self) -> (Option<String>, i32) {
        let store = self.store.lock().unwrap();
        let spec = store.lease.as_ref().and_then(|l| l.spec.clone()).unwrap_or_default();
        (spec.holder_identity, spec.lease_transitions.unwrap_or(0))
    }

    fn cut_off(&self, identity: &str, cut: bool) {
        let mut store = self.store.lock().unwrap();
        store.cut_off.retain(|i| i != identity);
        if cut {
            store.cut_off.push(identity.to_string());
        }
    }

    fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }
}

const SEC: Duration = Duration::from_secs(1);

#[tokio::test]
async fn the_first_elector_creates_the_lease_and_the_second_follows() {
    let w = World::new();
    let (mut a, mut b) = (w.elector("a"), w.elector("b"));
    let (ha, hb) = (a.handle(), b.handle());
    assert!(!ha.is_leader());
    a.step().await.unwrap();
    b.step().await.unwrap();
    assert!(ha.is_leader() && !hb.is_leader());
    assert_eq!(w.stored(), (Some("a".into()), 0));
    assert_eq!(hb.holder().as_deref(), Some("a"));
    assert_eq!((ha.transitions(), hb.transitions()), (0, 0));
    let err = hb.ensure_valid_for(SEC).unwrap_err();
    assert!(matches!(err, Error::NotLeader { .. }) && err.to_string().contains("held by a"), "{err}");
    assert!(!err.is_retryable());
    // Renewing keeps it; the follower never takes over a live lease.
    for _ in 0..30 {
        w.advance(SEC);
        a.step().await.unwrap();
        b.step().await.unwrap();
        assert!(ha.is_leader() && !hb.is_leader());
    }
    assert_eq!(w.stored(), (Some("a".into()), 0));
}

#[tokio::test]
async fn the_fence_answers_for_the_validity_left_after_the_last_renew() {
    let w = World::new();
    let mut a = w.elector("a");
    let ha = a.handle();
    a.step().await.unwrap();
    // Valid for lease duration minus margin (9 s) from the renew.
    let fence = ha.ensure_valid_for(Duration::from_secs(9)).unwrap();
    assert_eq!((fence.holder.as_str(), fence.transitions, fence.valid_for_ms), ("a", 0, 9000));
    assert_eq!(fence.lease, "lease warden/warden");
    let audit = serde_json::to_value(&fence).unwrap();
    assert_eq!(
        audit,
        serde_json::json!({"lease": "lease warden/warden", "holder": "a", "transitions": 0, "valid_for_ms": 9000})
    );
    w.advance(Duration::from_secs(4));
    let err = ha.ensure_valid_for(Duration::from_secs(6)).unwrap_err();
    assert!(matches!(err, Error::LeaseTooShort { remaining, .. } if remaining == Duration::from_secs(5)), "{err}");
    assert!(err.is_retryable());
    assert!(ha.ensure_valid_for(Duration::from_secs(5)).is_ok());
    // A renew extends it again.
    a.step().await.unwrap();
    assert_eq!(ha.ensure_valid_for(SEC).unwrap().valid_for_ms, 9000);
}

#[tokio::test]
async fn a_stalled_leader_is_refused_at_the_renew_deadline_before_the_other_can_take_over() {
    let w = World::new();
    let (mut a, mut b) = (w.elector("a"), w.elector("b"));
    let (ha, hb) = (a.handle(), b.handle());
    a.step().await.unwrap();
    b.step().await.unwrap();
    // `a` stops stepping (paused, or its task is stuck): only the clock moves. The
    // follower keeps looking every second.
    let mut refused_at = None;
    let mut taken_at = None;
    for t in 1..=20u64 {
        w.advance(SEC);
        b.step().await.unwrap();
        if refused_at.is_none() && ha.ensure_valid_for(Duration::ZERO).is_err() {
            refused_at = Some(t);
        }
        if taken_at.is_none() && hb.is_leader() {
            taken_at = Some(t);
        }
        // Never two leaders, and never a fence for `a` while `b` leads.
        assert!(!(hb.is_leader() && (ha.is_leader() || ha.ensure_valid_for(Duration::ZERO).is_ok())), "at {t}s");
    }
    // `a` is refused at its renew deadline (6 s); `b` takes over once the record has not
    // changed for a lease duration (10 s after it saw it).
    assert_eq!((refused_at, taken_at), (Some(6), Some(10)));
    assert_eq!(w.stored(), (Some("b".into()), 1));
    assert_eq!(hb.ensure_valid_for(SEC).unwrap().transitions, 1);
    // `a` wakes up: it steps down (the status says so) and follows `b`.
    assert!(ha.status().leading);
    a.step().await.unwrap();
    assert!(!ha.status().leading && !ha.is_leader());
    assert_eq!((ha.holder().as_deref(), ha.transitions()), (Some("b"), 1));
}

#[tokio::test]
async fn failed_renews_step_down_at_the_deadline_and_the_lease_is_taken_later() {
    let w = World::new();
    let (mut a, mut b) = (w.elector("a"), w.elector("b"));
    let (ha, hb) = (a.handle(), b.handle());
    a.step().await.unwrap();
    b.step().await.unwrap();
    w.cut_off("a", true);
    for t in 1..=12u64 {
        w.advance(SEC);
        let renewed = a.step().await;
        b.step().await.unwrap();
        match t {
            1..=5 => {
                let e = renewed.unwrap_err();
                assert!(e.is_retryable());
                assert!(ha.is_leader() && ha.status().leading, "still leading at {t}s");
            }
            _ => assert!(!ha.is_leader() && !ha.status().leading, "stepped down at {t}s"),
        }
        assert_eq!(hb.is_leader(), t >= 10, "b at {t}s");
    }
    w.cut_off("a", false);
    a.step().await.unwrap();
    assert!(!ha.is_leader());
    assert_eq!(ha.holder().as_deref(), Some("b"));
}

#[tokio::test]
async fn a_conflict_on_renew_steps_down_at_once() {
    let w = World::new();
    let mut a = w.elector("a");
    let ha = a.handle();
    a.step().await.unwrap();
    // Someone else writes the Lease (its holder): the renew's resourceVersion is stale.
    {
        let mut store = w.store.lock().unwrap();
        let mut lease = store.lease.clone().unwrap();
        lease.spec.as_mut().unwrap().holder_identity = Some("intruder".into());
        FakeBackend::stored(&mut store, lease);
    }
    w.advance(SEC);
    let err = a.step().await.unwrap_err();
    assert!(err.is_conflict());
    assert!(!ha.is_leader() && !ha.status().leading);
    a.step().await.unwrap();
    assert_eq!(ha.holder().as_deref(), Some("intruder"));
    assert!(!ha.is_leader());
}

#[tokio::test]
async fn release_hands_over_at_once_and_transitions_count_up() {
    let w = World::new();
    let (mut a, mut b) = (w.elector("a"), w.elector("b"));
    let (ha, hb) = (a.handle(), b.handle());
    a.step().await.unwrap();
    b.step().await.unwrap();
    a.release().await.unwrap();
    assert!(!ha.is_leader());
    assert_eq!(w.stored(), (None, 0));
    // No waiting for expiry: the next step takes it.
    b.step().await.unwrap();
    assert!(hb.is_leader());
    assert_eq!(w.stored(), (Some("b".into()), 1));
    b.release().await.unwrap();
    a.step().await.unwrap();
    assert_eq!(w.stored(), (Some("a".into()), 2));
    assert_eq!(ha.ensure_valid_for(SEC).unwrap().transitions, 2);
    // Releasing when not leading writes nothing.
    let writes = w.store.lock().unwrap().writes;
    b.release().await.unwrap();
    assert_eq!(w.store.lock().unwrap().writes, writes);
}

#[tokio::test]
async fn a_restarted_replica_with_the_same_name_takes_its_lease_back_without_a_transition() {
    let w = World::new();
    let mut a = w.elector("a");
    a.step().await.unwrap();
    drop(a);
    let mut again = w.elector("a");
    again.step().await.unwrap();
    assert!(again.handle().is_leader());
    assert_eq!(w.stored(), (Some("a".into()), 0));
}

#[tokio::test]
async fn run_releases_on_shutdown() {
    let w = World::new();
    let a = w.elector("a");
    let shutdown = tokio_util::sync::CancellationToken::new();
    let (ha, task) = a.spawn(shutdown.clone());
    ha.wait_until_leader().await.unwrap();
    shutdown.cancel();
    task.await.unwrap().unwrap();
    assert!(!ha.is_leader());
    assert_eq!(w.stored(), (None, 0));
    assert!(ha.wait_until_leader().await.is_err());
}

#[test]
fn the_configuration_is_checked() {
    assert!(config("a").validate().is_ok());
    assert!(LeaseConfig::new("warden", "warden", "pod-1").validate().is_ok());
    let cases: [(LeaseConfig, &str); 6] = [
        (LeaseConfig { identity: " ".into(), ..config("a") }, "identity"),
        (LeaseConfig { name: "a/b".into(), ..config("a") }, "lease name"),
        (LeaseConfig { namespace: String::new(), ..config("a") }, "lease namespace"),
        (LeaseConfig { retry_period: Duration::from_secs(6), ..config("a") }, "retry_period"),
        (LeaseConfig { renew_deadline: Duration::from_secs(9), ..config("a") }, "renew_deadline"),
        (LeaseConfig { lease_duration: Duration::from_millis(500), ..config("a") }, "lease_duration"),
    ];
    for (bad, word) in cases {
        let err = bad.validate().unwrap_err();
        assert!(matches!(err, Error::InvalidInput(_)) && err.to_string().contains(word), "{word}: {err}");
    }
    assert_eq!(lease_seconds(Duration::from_millis(2500)), 3);
    assert_eq!(lease_seconds(Duration::from_secs(15)), 15);
}
