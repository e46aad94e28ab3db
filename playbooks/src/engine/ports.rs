//! The engine's seams: the traits through which it reaches webhooks, people and storage, and
//! their typed errors. The agent implements them on top of the connectors and its SQLite
//! store; the engine's unit tests implement them in memory. Metrics for `verify` come through
//! the one PromQL seam of the workspace, [`warden_connectors::prometheus::MetricSource`], with
//! its typed error (retryable or not), so the engine needs no trait of its own for them.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::audit::{AuditEvent, AuditFence};
use crate::claim::{ClaimDecision, Fenced, RunClaim};
use crate::guards::History;
use crate::run::{Run, Target, TriggerInfo};
use crate::spec::Playbook;
use crate::template::Vars;

/// An outgoing webhook call of an `http` step.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HttpCall {
    pub method: String,
    pub url: String,
    pub headers: BTreeMap<String, String>,
    pub body: Option<Value>,
    pub timeout_secs: f64,
}

/// The answer to an [`HttpCall`].
#[derive(Debug, Clone, PartialEq)]
pub struct HttpReply {
    pub status: u16,
    pub body: String,
}

/// The underlying cause of an error of a seam.
pub type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A failed webhook call.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct WebhookError {
    /// The request may have reached the receiver (a timeout or a connection lost after
    /// sending): its outcome is unknown. `false` when it was never sent (no connection).
    pub sent: bool,
    pub message: String,
    #[source]
    pub source: Option<Source>,
}

impl WebhookError {
    /// A call that never left (no connection, a request that could not be built).
    pub fn not_sent(message: impl Into<String>) -> Self {
        Self { sent: false, message: message.into(), source: None }
    }

    /// A call that may have reached the receiver.
    pub fn sent(message: impl Into<String>) -> Self {
        Self { sent: true, message: message.into(), source: None }
    }

    pub fn with_source(mut self, source: impl Into<Source>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// The receiver may have acted on the call.
    pub fn may_have_applied(&self) -> bool {
        self.sent
    }

    /// Sending the call again is safe (it never left). The engine still sends an `http`
    /// step once (see [`crate::policy`]); this is for callers with their own policy.
    pub fn is_retryable(&self) -> bool {
        !self.sent
    }
}

#[async_trait]
pub trait Webhook: Send + Sync {
    async fn call(&self, call: &HttpCall) -> std::result::Result<HttpReply, WebhookError>;
}

/// Why the fencing check refused a request (see [`Fencing`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FenceRefused {
    /// This process does not lead (or no longer): it stops, and the run waits in the store,
    /// unchanged, for the leader.
    #[error("not the leader: {0}")]
    NotLeader(String),
    /// It leads, but the lease is not valid long enough for the request: nothing is sent
    /// and the run is tried again on a later tick, after the next renew.
    #[error("the lease is too short for the request: {0}")]
    TooShort(String),
}

impl FenceRefused {
    /// Trying again soon may succeed (the lease is renewed every retry period).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::TooShort(_))
    }
}

/// A granted fencing check.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FenceGrant {
    /// What the request's audit entry records (`None` without a lease: one replica).
    pub record: Option<AuditFence>,
    /// How long the lease stays valid from the check; the request is abandoned after it,
    /// so it never outlives the lease. `None`: no limit.
    pub valid_for: Option<Duration>,
}

/// The fencing rule of leader election: before every request a step sends (every cluster
/// write and `http` call), the engine asks whether this process may send a request that
/// takes up to `needed`. Without a [`Fencing`] the engine sends unchecked (the CLI, tests).
pub trait Fencing: Send + Sync {
    /// How long one cluster write may take (the Kubernetes client's request timeout): what
    /// the engine asks for before a cluster write.
    fn cluster_write_timeout(&self) -> Duration;
    /// A grant when the lease covers `needed` from now; the refusal otherwise.
    fn check(&self, needed: Duration) -> std::result::Result<FenceGrant, FenceRefused>;
}

/// What the engine tells people about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// A run waits for a person's approval.
    ApprovalRequested,
    /// A `notify` step's message.
    Message,
    /// A run ended (succeeded, failed, reverted, refused, observed, denied, expired).
    Finished,
    /// A revert started.
    Reverting,
}

/// Where notices go (the agent: incident events, Slack and e-mail).
pub trait Notices: Send + Sync {
    fn notice(&self, run: &Run, kind: Notice, text: &str);
}

/// A run store error.
#[derive(Debug, thiserror::Error)]
pub enum RunStoreError {
    /// Another active run holds the target.
    #[error("target held by run {run_id}")]
    TargetBusy { run_id: i64 },
    /// The write's claim is no longer the run's (see [`crate::claim`]); nothing was stored.
    #[error(transparent)]
    Fenced(#[from] Fenced),
    /// There is no run of this id.
    #[error("no run {0}")]
    NoRun(i64),
    /// The storage failed; `retryable` when trying again later may succeed (a busy or
    /// locked database).
    #[error("{message}")]
    Backend {
        message: String,
        retryable: bool,
        #[source]
        source: Option<Source>,
    },
}

impl RunStoreError {
    /// A storage failure, with its cause.
    pub fn backend(source: impl std::error::Error + Send + Sync + 'static, retryable: bool) -> Self {
        Self::Backend { message: source.to_string(), retryable, source: Some(Box::new(source)) }
    }

    /// A storage failure known only by its message.
    pub fn message(message: impl Into<String>) -> Self {
        Self::Backend { message: message.into(), retryable: false, source: None }
    }

    /// Trying the same call again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Backend { retryable: true, .. })
    }
}

/// What the guards need from earlier runs.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryQuery {
    pub playbook: String,
    pub target_key: Option<String>,
    pub namespace: Option<String>,
    pub incident_id: Option<i64>,
    /// Count runs that acted since these times (rate windows).
    pub global_since: Option<DateTime<Utc>>,
    pub namespace_since: Option<DateTime<Utc>>,
}

/// Result of a run store call.
pub type StoreResult<T> = std::result::Result<T, RunStoreError>;

/// Durable storage of runs and the audit trail. Each call is one transaction: the run and
/// its audit entries are stored together or not at all.
///
/// The store also keeps each run's claim ([`crate::claim`]): who advances it, with which
/// fencing token, until when (on the store's wall clock).
pub trait RunStore: Send + Sync {
    /// Insert a run (its `id` is assigned), claimed by `owner` for
    /// [`crate::claim::CLAIM_TTL`]. An active run claims its target's lock; when another
    /// active run holds it, nothing is stored and `TargetBusy` is returned.
    fn insert_run(&self, run: &Run, audit: &[AuditEvent], owner: &str) -> StoreResult<RunClaim>;
    /// Store the run's new state under `claim` and renew the claim; a terminal run releases
    /// its target. A claim that is no longer the run's stores nothing: `Fenced`.
    fn save_run(&self, run: &Run, audit: &[AuditEvent], claim: &RunClaim) -> StoreResult<()>;
    fn get_run(&self, id: i64) -> StoreResult<Option<Run>>;
    /// Take the run's claim for `owner` (see [`crate::claim::decide_claim`]); `NoRun` when
    /// there is no such run.
    fn claim_run(&self, id: i64, owner: &str, ttl: Duration) -> StoreResult<ClaimDecision>;
    /// Extend `claim` by `ttl` from now; `Fenced` when it is no longer the run's.
    fn renew_claim(&self, claim: &RunClaim, ttl: Duration) -> StoreResult<()>;
    /// Give the claim up (nothing happens when it is no longer the run's).
    fn release_claim(&self, claim: &RunClaim) -> StoreResult<()>;
    /// Runs to look at now: running or reverting and due (`wake_at` unset or passed), and
    /// approval requests that expired; runs another task holds a claim on are left out.
    fn due_runs(&self, now: DateTime<Utc>) -> StoreResult<Vec<i64>>;
    fn history(&self, q: &HistoryQuery) -> StoreResult<History>;
    /// A stable id of this store, i.e. of this Warden installation, or `None` when the store
    /// has none. `run_job` puts it into the Job's name and labels, so that a Job another
    /// installation (or a store started afresh) created for a run of the same number is
    /// never taken for this run's.
    fn installation_id(&self) -> StoreResult<Option<String>> {
        Ok(None)
    }
}

/// Everything needed to start a run.
#[derive(Debug, Clone)]
pub struct StartRequest {
    pub playbook: Playbook,
    /// Parameter values as text (`--param k=v`, trigger params).
    pub params: BTreeMap<String, String>,
    pub target: Option<Target>,
    pub trigger: TriggerInfo,
    /// Variables of the trigger (`incident.*`, `alert.*`).
    pub vars: Vars,
    /// Whether the triggering signal had data; `None` when there is no signal (manual, cron).
    pub has_data: Option<bool>,
    /// Force server-side dry-run whatever the guards say.
    pub dry_run: bool,
    pub now: DateTime<Utc>,
}
