//! The election state machine and the task that drives it.
//!
//! One [`LeaderElector::step`] is one round: a leader renews; anyone else reads the
//! Lease and takes it when it is free, released, its own, or unchanged for a lease
//! duration. Steps never sleep, so tests drive them with a hand-set clock; the task
//! ([`LeaderElector::run`]) sleeps between them and releases the Lease on shutdown.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{lease_seconds, Clock, KubeLeases, LeaderHandle, LeaderStatus, LeaseBackend, LeaseConfig, SystemClock};
use crate::kubernetes::KubeClient;
use crate::{Error, Result};

/// The part of a Lease record whose change shows that its holder is alive.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RecordKey {
    holder: Option<String>,
    renew_time: Option<MicroTime>,
    acquire_time: Option<MicroTime>,
    transitions: Option<i32>,
    duration: Option<i32>,
}

impl RecordKey {
    fn of(spec: &LeaseSpec) -> Self {
        Self {
            holder: spec.holder_identity.clone(),
            renew_time: spec.renew_time.clone(),
            acquire_time: spec.acquire_time.clone(),
            transitions: spec.lease_transitions,
            duration: spec.lease_duration_seconds,
        }
    }
}

/// Runs the election for one replica. Build it, take a [`LeaderHandle`], then
/// [`spawn`](LeaderElector::spawn) or [`run`](LeaderElector::run) it.
pub struct LeaderElector {
    backend: Arc<dyn LeaseBackend>,
    config: Arc<LeaseConfig>,
    clock: Arc<dyn Clock>,
    status: watch::Sender<LeaderStatus>,
    /// The Lease as last read or written (its resourceVersion is the next write's
    /// precondition).
    lease: Option<Lease>,
    /// The record last seen and when it was first seen so (local clock).
    observed: Option<(RecordKey, Instant)>,
    leading: bool,
    renewed_at: Option<Instant>,
}

impl std::fmt::Debug for LeaderElector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderElector")
            .field("config", &self.config)
            .field("leading", &self.leading)
            .field("renewed_at", &self.renewed_at)
            .finish_non_exhaustive()
    }
}

impl LeaderElector {
    /// An election on the API server `client` talks to, with the system clock. Fails
    /// with [`Error::InvalidInput`] when `config` does not validate.
    pub fn new(client: &KubeClient, config: LeaseConfig) -> Result<Self> {
        let backend = Arc::new(KubeLeases::new(client, &config));
        Self::with_backend(backend, config, Arc::new(SystemClock))
    }

    /// An election on any [`LeaseBackend`] with any clock (tests).
    pub fn with_backend(backend: Arc<dyn LeaseBackend>, config: LeaseConfig, clock: Arc<dyn Clock>) -> Result<Self> {
        config.validate()?;
        let (status, _) = watch::channel(LeaderStatus::default());
        Ok(Self {
            backend,
            config: Arc::new(config),
            clock,
            status,
            lease: None,
            observed: None,
            leading: false,
            renewed_at: None,
        })
    }

    /// A handle on this election's state; valid after the elector stops (it then never
    /// leads).
    pub fn handle(&self) -> LeaderHandle {
        LeaderHandle { status: self.status.subscribe(), clock: self.clock.clone(), config: self.config.clone() }
    }

    /// Starts [`run`](LeaderElector::run) on the Tokio runtime.
    pub fn spawn(self, shutdown: CancellationToken) -> (LeaderHandle, JoinHandle<Result<()>>) {
        let handle = self.handle();
        (handle, tokio::spawn(self.run(shutdown)))
    }

    /// Acquires and renews until `shutdown` is cancelled, then releases the lease (when
    /// held) so that another replica takes over at once. Failed steps are logged and
    /// retried; the result is the release's.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<()> {
        let lease = self.config.describe();
        while !shutdown.is_cancelled() {
            if let Err(e) = self.step().await {
                tracing::warn!(%lease, error = %e, retryable = e.is_retryable(), "leader election step failed");
            }
            let wait = self.next_wait();
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(wait) => {}
            }
        }
        self.release().await
    }

    /// How long to sleep before the next step: the retry period, cut short at the renew
    /// deadline while leading (so the step-down is published on time), with up to 20 %
    /// jitter while following (so that followers do not poll in lockstep).
    fn next_wait(&self) -> Duration {
        let period = self.config.retry_period;
        match (self.leading, self.renewed_at) {
            (true, Some(at)) => {
                let deadline = at + self.config.renew_deadline;
                period.min(deadline.saturating_duration_since(self.clock.now()))
            }
            _ => period + period.mul_f64(rand::random::<f64>() * 0.2),
        }
    }

    /// One round of the election. Errors are those of the Lease calls; the state stays
    /// consistent whatever they are.
    pub async fn step(&mut self) -> Result<()> {
        if self.leading {
            let deadline = self.renew_deadline();
            if self.clock.now() < deadline {
                return self.renew(deadline).await;
            }
            self.step_down("the renew deadline passed without a successful renew");
        }
        self.try_acquire().await
    }

    fn renew_deadline(&self) -> Instant {
        let at = self.renewed_at.unwrap_or_else(|| self.clock.now());
        at + self.config.renew_deadline
    }

    async fn renew(&mut self, deadline: Instant) -> Result<()> {
        let Some(current) = self.lease.clone() else {
            self.step_down("no Lease record to renew");
            return Ok(());
        };
        let started = self.clock.now();
        let record = self.record(current, true);
        let left = deadline.saturating_duration_since(started);
        match tokio::time::timeout(left, self.backend.replace(&record)).await {
            Ok(Ok(written)) => {
                self.took(written, started);
                Ok(())
            }
            Ok(Err(e)) if e.is_conflict() || e.is_not_found() => {
                self.step_down("another writer changed the Lease");
                self.lease = None;
                Err(e)
            }
            Ok(Err(e)) => {
                // Keep trying until the deadline; the handle stops answering as leader then.
                if self.clock.now() >= deadline {
                    self.step_down("renew failed until the renew deadline");
                }
                Err(e)
            }
            Err(_) => {
                self.step_down("the renew did not answer before the renew deadline");
                Ok(())
            }
        }
    }

    async fn try_acquire(&mut self) -> Result<()> {
        let now = self.clock.now();
        let Some(current) = self.backend.get().await? else {
            return self.create().await;
        };
        let spec = current.spec.clone().unwrap_or_default();
        let key = RecordKey::of(&spec);
        let seen_at = match &self.observed {
            Some((seen, at)) if *seen == key => *at,
            _ => now,
        };
        self.observed = Some((key, seen_at));
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let transitions = spec.lease_transitions.unwrap_or(0);
        let free = match &holder {
            None => true,
            Some(h) if *h == self.config.identity => true,
            Some(_) => {
                let record_duration = spec
                    .lease_duration_seconds
                    .and_then(|s| u64::try_from(s).ok())
                    .map_or(Duration::ZERO, Duration::from_secs);
                let duration = record_duration.max(self.config.lease_duration);
                self.clock.now() >= seen_at + duration
            }
        };
        self.lease = Some(current.clone());
        if !free {
            self.publish(LeaderStatus { leading: false, holder, transitions, renewed_at: None });
            return Ok(());
        }
        let started = self.clock.now();
        let record = self.record(current, false);
        match self.backend.replace(&record).await {
            Ok(written) => {
                self.took(written, started);
                Ok(())
            }
            Err(e) if e.is_conflict() => {
                // Another replica wrote first: it leads, or the next round tells.
                self.lease = None;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    async fn create(&mut self) -> Result<()> {
        let now = k8s_openapi::jiff::Timestamp::now();
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.config.name.clone()),
                namespace: Some(self.config.namespace.clone()),
                labels: Some([("app.kubernetes.io/managed-by".to_string(), "warden".to_string())].into()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.config.identity.clone()),
                lease_duration_seconds: Some(self.lease_seconds()),
                acquire_time: Some(MicroTime(now)),
                renew_time: Some(MicroTime(now)),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        let started = self.clock.now();
        match self.backend.create(&lease).await {
            Ok(written) => {
                self.took(written, started);
                Ok(())
            }
            Err(e) if e.is_conflict() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `current` with this replica as holder: renewed, or acquired (a new acquire time
    /// and one more transition when the holder changes).
    fn record(&self, mut current: Lease, renew: bool) -> Lease {
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let mut spec = current.spec.take().unwrap_or_default();
        let ours = spec.holder_identity.as_deref() == Some(self.config.identity.as_str());
        if !renew && !ours {
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
            spec.acquire_time = Some(now.clone());
        }
        if spec.acquire_time.is_none() {
            spec.acquire_time = Some(now.clone());
        }
        spec.holder_identity = Some(self.config.identity.clone());
        spec.lease_duration_seconds = Some(self.lease_seconds());
        spec.renew_time = Some(now);
        current.spec = Some(spec);
        current
    }

    fn lease_seconds(&self) -> i32 {
        // `validate` checked that it fits.
        i32::try_from(lease_seconds(self.config.lease_duration)).unwrap_or(i32::MAX)
    }

    /// Records a successful write that names this replica as holder, sent at `started`.
    fn took(&mut self, written: Lease, started: Instant) {
        let spec = written.spec.clone().unwrap_or_default();
        let transitions = spec.lease_transitions.unwrap_or(0);
        if !self.leading {
            tracing::info!(lease = %self.config.describe(), identity = %self.config.identity, transitions, "became the leader");
        }
        self.observed = Some((RecordKey::of(&spec), started));
        self.lease = Some(written);
        self.leading = true;
        self.renewed_at = Some(started);
        self.publish(LeaderStatus {
            leading: true,
            holder: Some(self.config.identity.clone()),
            transitions,
            renewed_at: Some(started),
        });
    }

    fn step_down(&mut self, why: &str) {
        if self.leading {
            tracing::warn!(lease = %self.config.describe(), identity = %self.config.identity, reason = why, "stepped down as leader");
        }
        self.leading = false;
        self.renewed_at = None;
        self.status.send_modify(|s| {
            s.leading = false;
            s.renewed_at = None;
        });
    }

    fn publish(&self, status: LeaderStatus) {
        self.status.send_if_modified(|s| {
            let changed = *s != status;
            *s = status;
            changed
        });
    }

    /// Gives the lease up: stops leading first (the handle refuses fences from here on),
    /// then clears the holder so that the next replica takes over on its next step.
    /// Nothing to do when not leading; a 409 means another replica took over already.
    pub async fn release(&mut self) -> Result<()> {
        if !self.leading {
            return Ok(());
        }
        self.step_down("released on shutdown");
        let Some(mut lease) = self.lease.take() else {
            return Ok(());
        };
        let mut spec = lease.spec.take().unwrap_or_default();
        spec.holder_identity = None;
        spec.acquire_time = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(k8s_openapi::jiff::Timestamp::now()));
        let transitions = spec.lease_transitions.unwrap_or(0);
        lease.spec = Some(spec);
        let limit = self.config.renew_deadline;
        match tokio::time::timeout(limit, self.backend.replace(&lease)).await {
            Ok(Ok(written)) => {
                tracing::info!(lease = %self.config.describe(), identity = %self.config.identity, "released the lease");
                self.lease = Some(written);
                self.publish(LeaderStatus { leading: false, holder: None, transitions, renewed_at: None });
                Ok(())
            }
            Ok(Err(e)) if e.is_conflict() || e.is_not_found() => Ok(()),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::Timeout { url: self.config.describe(), after: Some(limit) }),
        }
    }
}
