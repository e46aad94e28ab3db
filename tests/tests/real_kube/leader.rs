//! Leader election (`warden_connectors::leader`) on a real Lease in namespace `warden`,
//! through the `warden` service account (so `deploy/rbac.yaml`'s Role for Leases is what
//! lets it work): two electors race and exactly one leads; a leader whose renews stall
//! (as in a paused process or a partition) is refused fences at its renew deadline, before
//! the other takes over at the lease duration; a graceful release hands over at once;
//! a foreign write to the Lease makes the leader step down; transitions count up.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use async_trait::async_trait;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Patch, PatchParams};
use kube::Api;
use serde_json::json;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use warden_connectors::kubernetes::KubeClient;
use warden_connectors::leader::{KubeLeases, LeaderElector, LeaderHandle, LeaseBackend, LeaseConfig};
use warden_connectors::{Error, Result as ConnectorResult};
use warden_tests::{wait_until, within};

use crate::{real, Real};

/// Lease 4 s, renew deadline 2 s, retry 250 ms, margin 1 s.
fn quick(name: &str, identity: &str) -> LeaseConfig {
    LeaseConfig {
        lease_duration: Duration::from_secs(4),
        renew_deadline: Duration::from_secs(2),
        retry_period: Duration::from_millis(250),
        safety_margin: Duration::from_secs(1),
        ..LeaseConfig::new("warden", name, identity)
    }
}

/// The Lease as the API server has it: holder and transitions.
async fn stored(r: &Real, name: &str) -> Result<(Option<String>, i32)> {
    let lease = Api::<Lease>::namespaced(r.admin.clone(), "warden").get(name).await?;
    let spec = lease.spec.unwrap_or_default();
    Ok((spec.holder_identity.filter(|h| !h.is_empty()), spec.lease_transitions.unwrap_or(0)))
}

/// Waits until Warden's account may read Leases in `warden` (RBAC caches follow writes
/// within moments).
async fn leases_allowed(r: &Real) -> Result<()> {
    let leases = KubeLeases::new(&r.warden, &quick("rbac-probe", "probe"));
    wait_until(Duration::from_secs(20), "Warden's RBAC on Leases to apply", async || {
        Ok(leases.get().await.ok().map(|_| ()))
    })
    .await
}

struct Running {
    handle: LeaderHandle,
    stop: CancellationToken,
    task: JoinHandle<ConnectorResult<()>>,
}

impl Running {
    async fn stop(self) -> Result<()> {
        self.stop.cancel();
        within(Duration::from_secs(10), "the elector to release and stop", async { Ok(self.task.await??) }).await
    }
}

fn start(backend: Arc<dyn LeaseBackend>, config: LeaseConfig) -> Result<Running> {
    let elector = LeaderElector::with_backend(backend, config, Arc::new(warden_connectors::leader::SystemClock))?;
    let stop = CancellationToken::new();
    let (handle, task) = elector.spawn(stop.clone());
    Ok(Running { handle, stop, task })
}

fn start_kube(client: &KubeClient, config: LeaseConfig) -> Result<Running> {
    start(Arc::new(KubeLeases::new(client, &config)), config)
}

#[tokio::test]
async fn real_two_electors_race_for_one_lease_and_exactly_one_leads() -> Result<()> {
    // Needs the real control plane in ../shared/kube; passes without it (see the output).
    let Some(r) = real("real_two_electors_race_for_one_lease_and_exactly_one_leads").await? else {
        return Ok(());
    };
    leases_allowed(&r).await?;
    // A long lease: a hand-over faster than it can only come from the release.
    let config = |identity: &str| LeaseConfig {
        lease_duration: Duration::from_secs(20),
        renew_deadline: Duration::from_secs(10),
        retry_period: Duration::from_millis(250),
        ..LeaseConfig::new("warden", "race", identity)
    };
    let a = start_kube(&r.warden, config("warden-0"))?;
    let b = start_kube(&r.warden, config("warden-1"))?;
    wait_until(Duration::from_secs(10), "one elector to lead", async || {
        Ok((a.handle.is_leader() || b.handle.is_leader()).then_some(()))
    })
    .await?;
    for _ in 0..20 {
        ensure!(a.handle.is_leader() != b.handle.is_leader(), "not exactly one leader");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (leader, follower) = if a.handle.is_leader() { (a, b) } else { (b, a) };
    let first = leader.handle.identity().to_string();
    assert_eq!(stored(&r, "race").await?, (Some(first.clone()), 0));
    assert_eq!(follower.handle.holder(), Some(first.clone()));
    let fence = leader.handle.ensure_valid_for(Duration::from_secs(5))?;
    assert_eq!((fence.holder.as_str(), fence.transitions), (first.as_str(), 0));
    let refused = follower.handle.ensure_valid_for(Duration::ZERO).unwrap_err();
    assert!(matches!(refused, Error::NotLeader { .. }) && refused.to_string().contains(&first), "{refused}");

    // Graceful release: the follower takes over within a retry period or so, not after
    // the 20 s lease duration.
    let released = Instant::now();
    leader.stop().await?;
    let second = follower.handle.identity().to_string();
    wait_until(Duration::from_secs(10), "the follower to take over", async || {
        Ok(follower.handle.is_leader().then_some(()))
    })
    .await?;
    let took = released.elapsed();
    println!("hand-over after a graceful release: {took:?}");
    ensure!(took < Duration::from_secs(3), "the hand-over took {took:?}");
    assert_eq!(stored(&r, "race").await?, (Some(second.clone()), 1));
    assert_eq!(follower.handle.ensure_valid_for(Duration::from_secs(1))?.transitions, 1);
    follower.stop().await?;
    assert_eq!(stored(&r, "race").await?, (None, 1));
    Ok(())
}

/// The API server behind a switch: while `stalled`, every call hangs (a paused process, or
/// a partition that swallows requests).
struct Stall {
    inner: KubeLeases,
    stalled: Arc<AtomicBool>,
}

impl Stall {
    async fn pass(&self) {
        while self.stalled.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[async_trait]
impl LeaseBackend for Stall {
    async fn get(&self) -> ConnectorResult<Option<Lease>> {
        self.pass().await;
        self.inner.get().await
    }

    async fn create(&self, lease: &Lease) -> ConnectorResult<Lease> {
        self.pass().await;
        self.inner.create(lease).await
    }

    async fn replace(&self, lease: &Lease) -> ConnectorResult<Lease> {
        self.pass().await;
        self.inner.replace(lease).await
    }
}

#[tokio::test]
async fn real_a_stalled_leader_is_fenced_before_the_other_takes_over() -> Result<()> {
    // Needs the real control plane in ../shared/kube; passes without it (see the output).
    let Some(r) = real("real_a_stalled_leader_is_fenced_before_the_other_takes_over").await? else {
        return Ok(());
    };
    leases_allowed(&r).await?;
    let stalled = Arc::new(AtomicBool::new(false));
    let config_a = quick("stall", "warden-0");
    let backend = Stall { inner: KubeLeases::new(&r.warden, &config_a), stalled: stalled.clone() };
    let a = start(Arc::new(backend), config_a)?;
    within(Duration::from_secs(10), "warden-0 to lead", async { Ok(a.handle.wait_until_leader().await?) }).await?;
    let b = start_kube(&r.warden, quick("stall", "warden-1"))?;
    wait_until(Duration::from_secs(10), "warden-1 to see warden-0 lead", async || {
        Ok((b.handle.holder().as_deref() == Some("warden-0")).then_some(()))
    })
    .await?;
    assert_eq!(a.handle.ensure_valid_for(Duration::from_secs(1))?.transitions, 0);

    stalled.store(true, Ordering::SeqCst);
    let stall = Instant::now();
    let (mut refused, mut taken) = (None, None);
    while taken.is_none() && stall.elapsed() < Duration::from_secs(20) {
        let a_fenced = a.handle.ensure_valid_for(Duration::ZERO).is_ok();
        let b_leads = b.handle.is_leader();
        ensure!(!(a_fenced && b_leads), "both act at {:?} after the stall", stall.elapsed());
        if !a_fenced && refused.is_none() {
            refused = Some(stall.elapsed());
        }
        if b_leads {
            taken = Some(stall.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refused = refused.context("warden-0 was never refused")?;
    let taken = taken.context("warden-1 never took over")?;
    println!("stalled leader: fences refused after {refused:?}, the other leads after {taken:?}");
    // Refused at the renew deadline (2 s after its last renew, which was at most one
    // retry period before the stall); taken at the lease duration (4 s) after that renew.
    ensure!(refused <= Duration::from_millis(2200), "refused only after {refused:?}");
    ensure!(taken >= Duration::from_millis(3700), "taken over after {taken:?}, before the lease expired");
    ensure!(!a.handle.status().leading, "warden-0's task did not step down");
    assert_eq!(stored(&r, "stall").await?, (Some("warden-1".to_string()), 1));
    assert_eq!(b.handle.ensure_valid_for(Duration::from_secs(1))?.transitions, 1);

    // The stalled one comes back: it follows and stays refused.
    stalled.store(false, Ordering::SeqCst);
    wait_until(Duration::from_secs(10), "warden-0 to see warden-1 lead", async || {
        Ok((a.handle.holder().as_deref() == Some("warden-1")).then_some(()))
    })
    .await?;
    let err = a.handle.ensure_valid_for(Duration::ZERO).unwrap_err();
    assert!(err.to_string().contains("held by warden-1"), "{err}");
    assert_eq!(a.handle.transitions(), 1);
    a.stop().await?;
    b.stop().await?;
    Ok(())
}

#[tokio::test]
async fn real_a_foreign_write_makes_the_leader_step_down() -> Result<()> {
    // Needs the real control plane in ../shared/kube; passes without it (see the output).
    let Some(r) = real("real_a_foreign_write_makes_the_leader_step_down").await? else {
        return Ok(());
    };
    leases_allowed(&r).await?;
    let a = start_kube(&r.warden, quick("foreign", "warden-0"))?;
    within(Duration::from_secs(10), "warden-0 to lead", async { Ok(a.handle.wait_until_leader().await?) }).await?;
    let mut changes = a.handle.subscribe();
    let seen = tokio::spawn(async move {
        let mut stepped_down = false;
        while changes.changed().await.is_ok() {
            let leading = changes.borrow_and_update().leading;
            stepped_down |= !leading;
            if stepped_down && leading {
                return true;
            }
        }
        false
    });
    // Someone takes the Lease by hand: warden-0's next renew is a 409.
    let patch = json!({"spec": {"holderIdentity": "someone-else"}});
    Api::<Lease>::namespaced(r.admin.clone(), "warden")
        .patch("foreign", &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    wait_until(Duration::from_secs(10), "warden-0 to step down", async || {
        Ok((!a.handle.is_leader() && a.handle.holder().as_deref() == Some("someone-else")).then_some(()))
    })
    .await?;
    // The hand-written holder never renews: after the lease duration warden-0 takes over,
    // as a new term.
    within(Duration::from_secs(15), "warden-0 to lead again", async { Ok(a.handle.wait_until_leader().await?) })
        .await?;
    assert_eq!(stored(&r, "foreign").await?, (Some("warden-0".to_string()), 1));
    a.stop().await?;
    ensure!(seen.await?, "the status never showed the step-down and the new term");
    Ok(())
}
