//! The engine: starts runs behind their guards and advances them step by step.
//!
//! The engine is driven by a clock it is given (`now` on every call), not by sleeping: a
//! `wait`, a verification window or a Job in progress puts the step in `waiting` with a
//! `wake_at`, and [`Engine::tick`] picks the run up again when that time has come. The daemon
//! ticks on the wall clock; the demo and the tests tick on a simulated one.
//!
//! Order of writes, for crash safety: a step's concrete request (its plan) is stored, with an
//! audit entry, before the request is sent; the answer is stored after. A run found in
//! `running` with a step in `running` after a restart is resumed by sending the stored plan
//! again, which every action makes idempotent (see [`crate::run`]).
//!
//! One task at a time advances a run: it holds the run's claim ([`crate::claim`]) and every
//! write of the run's state carries it, so a task that lost the claim can record nothing and
//! stops before its next request. Failed cluster requests follow [`crate::policy`]: retried
//! when a retry can help, resolved by reading back when the outcome is unknown, and counted
//! as acted when they may have applied.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::audit::{AuditEvent, AuditKind};
use crate::claim::{new_owner, ClaimDecision, Fenced, RunClaim, CLAIM_RENEW_EVERY, CLAIM_TTL};
use crate::cluster::{Cluster, ClusterError, ClusterErrorKind, JobPhase, WorkloadRef};
use crate::policy::RetryPolicy;
use crate::guards::{self, GuardName, GuardSettings, History, Refusal};
use crate::params::resolve_params;
use crate::run::{Approval, Phase, Run, RunStatus, StepState, StepStatus, Target, TriggerInfo};
use crate::spec::{Autonomy, Playbook, Step, StepAction, TargetKind};
use crate::template::{render, render_tree, Vars};
use crate::{Error, Result};

/// One series of a range query.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: BTreeMap<String, String>,
    pub points: Vec<(DateTime<Utc>, f64)>,
}

/// PromQL range queries for `verify`.
#[async_trait]
pub trait MetricsQuery: Send + Sync {
    async fn query_range(
        &self,
        query: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        step: Duration,
    ) -> std::result::Result<Vec<Series>, String>;
}

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

/// A failed webhook call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookError {
    /// The request may have reached the receiver (a timeout or a connection lost after
    /// sending): its outcome is unknown. `false` when it was never sent (no connection).
    pub sent: bool,
    pub message: String,
}

#[async_trait]
pub trait Webhook: Send + Sync {
    async fn call(&self, call: &HttpCall) -> std::result::Result<HttpReply, WebhookError>;
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
#[derive(Debug, Clone, PartialEq)]
pub enum StoreFailure {
    /// Another active run holds the target.
    TargetBusy { run_id: i64 },
    /// The write's claim is no longer the run's (see [`crate::claim`]); nothing was stored.
    Fenced(Fenced),
    Other(String),
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

/// Durable storage of runs and the audit trail. Each call is one transaction: the run and
/// its audit entries are stored together or not at all.
///
/// The store also keeps each run's claim ([`crate::claim`]): who advances it, with which
/// fencing token, until when (on the store's wall clock).
pub trait RunStore: Send + Sync {
    /// Insert a run (its `id` is assigned), claimed by `owner` for [`CLAIM_TTL`]. An active
    /// run claims its target's lock; when another active run holds it, nothing is stored
    /// and `TargetBusy` is returned.
    fn insert_run(&self, run: &Run, audit: &[AuditEvent], owner: &str) -> std::result::Result<RunClaim, StoreFailure>;
    /// Store the run's new state under `claim` and renew the claim; a terminal run releases
    /// its target. A claim that is no longer the run's stores nothing: `Fenced`.
    fn save_run(&self, run: &Run, audit: &[AuditEvent], claim: &RunClaim) -> std::result::Result<(), StoreFailure>;
    fn get_run(&self, id: i64) -> std::result::Result<Option<Run>, String>;
    /// Take the run's claim for `owner` (see [`crate::claim::decide_claim`]).
    fn claim_run(&self, id: i64, owner: &str, ttl: Duration) -> std::result::Result<ClaimDecision, String>;
    /// Extend `claim` by `ttl` from now; `Fenced` when it is no longer the run's.
    fn renew_claim(&self, claim: &RunClaim, ttl: Duration) -> std::result::Result<(), StoreFailure>;
    /// Give the claim up (nothing happens when it is no longer the run's).
    fn release_claim(&self, claim: &RunClaim) -> std::result::Result<(), String>;
    /// Runs to look at now: running or reverting and due (`wake_at` unset or passed), and
    /// approval requests that expired; runs another task holds a claim on are left out.
    fn due_runs(&self, now: DateTime<Utc>) -> std::result::Result<Vec<i64>, String>;
    fn history(&self, q: &HistoryQuery) -> std::result::Result<History, String>;
    /// A stable id of this store, i.e. of this Warden installation, or `None` when the store
    /// has none. `run_job` puts it into the Job's name and labels, so that a Job another
    /// installation (or a store started afresh) created for a run of the same number is
    /// never taken for this run's.
    fn installation_id(&self) -> std::result::Result<Option<String>, String> {
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

/// The engine. Cheap to share; every collaborator is behind a trait.
#[derive(Clone)]
pub struct Engine {
    pub cluster: Option<Arc<dyn Cluster>>,
    pub metrics: Option<Arc<dyn MetricsQuery>>,
    pub webhook: Option<Arc<dyn Webhook>>,
    pub notices: Arc<dyn Notices>,
    pub store: Arc<dyn RunStore>,
    /// Global guard defaults (`playbooks.guards` in `warden.yaml`).
    pub defaults: GuardSettings,
    /// Retries of failed cluster requests (see [`crate::policy`]).
    pub retry: RetryPolicy,
}

/// A claim held while a task works on a run; released when dropped, also when the task's
/// future is dropped mid-request (a cancelled task), so that another task can resume.
struct ClaimGuard {
    store: Arc<dyn RunStore>,
    claim: RunClaim,
}

impl Drop for ClaimGuard {
    fn drop(&mut self) {
        if let Err(e) = self.store.release_claim(&self.claim) {
            tracing::warn!(run = self.claim.run_id, error = %e, "releasing a run's claim");
        }
    }
}

/// Why a step did not complete.
enum StepError {
    Refused(Refusal),
    /// Failed without acting.
    Failed(String),
    /// A request was sent and may have been applied; its outcome could not be resolved.
    Unknown(String),
    /// A cluster request failed (classified by [`StepError::settled`] once the policy has
    /// run its course).
    Cluster(ClusterError),
}

impl From<ClusterError> for StepError {
    fn from(e: ClusterError) -> Self {
        StepError::Cluster(e)
    }
}

impl StepError {
    /// The final form: a cluster error whose write may have applied is `Unknown`, any
    /// other is `Failed`.
    fn settled(self) -> Self {
        match self {
            StepError::Cluster(e) if e.kind.may_have_applied() => {
                StepError::Unknown(format!("outcome unknown, the request may have been applied: {}", e.message))
            }
            StepError::Cluster(e) => StepError::Failed(e.message),
            other => other,
        }
    }
}

/// What planning a step decided.
enum Planned {
    Request(Value),
    Skip(String),
}

/// What sending or polling a step gave.
enum Sent {
    Done(Value),
    Wait(DateTime<Utc>, Value),
}

const DEFAULT_VERIFY_STEP: Duration = Duration::from_secs(30);
const DEFAULT_JOB_POLL: Duration = Duration::from_secs(10);

fn store_err(e: String) -> Error {
    Error::Store(e)
}

fn save_err(f: StoreFailure) -> Error {
    match f {
        StoreFailure::Fenced(f) => Error::Fenced(f),
        StoreFailure::TargetBusy { run_id } => Error::Store(format!("target held by run {run_id}")),
        StoreFailure::Other(e) => Error::Store(e),
    }
}

fn audit(run: &Run, at: DateTime<Utc>, kind: AuditKind, actor: &str, detail: Value) -> AuditEvent {
    AuditEvent { at, run_id: (run.id > 0).then_some(run.id), kind, actor: actor.to_string(), detail }
}

impl Engine {
    /// Start a run: check parameters and target, apply the run guards and the autonomy
    /// level, store it, and (when it may act now) advance it as far as the clock allows.
    /// Errors are for requests that cannot become a run at all (unknown parameter, missing
    /// target); a guard's refusal is a stored run with status `refused`.
    pub async fn start(&self, req: StartRequest) -> Result<Run> {
        let pb = &req.playbook;
        let params = resolve_params(pb, &req.params)?;
        match (pb.target, &req.target) {
            (TargetKind::None, Some(t)) => {
                return Err(Error::Invalid(format!("playbook {} takes no target, got {t}", pb.name)))
            }
            (TargetKind::None, None) => {}
            (kind, None) => {
                return Err(Error::Invalid(format!("playbook {} needs a {kind} target (--target)", pb.name)))
            }
            (kind, Some(t)) if t.kind != kind => {
                return Err(Error::Invalid(format!("playbook {} acts on a {kind}, not a {}", pb.name, t.kind)))
            }
            _ => {}
        }
        let settings = self.defaults.overlay(&pb.guards);
        let dry_run = settings.dry_run || req.dry_run;
        let mut vars = req.vars.clone();
        if let Some(t) = &req.target {
            vars.set("target.namespace", t.namespace.clone());
            vars.set("target.name", t.name.clone());
            vars.set("target.kind", t.kind.to_string());
        }
        for (k, v) in &params {
            vars.set(format!("params.{k}"), v.to_string());
        }
        vars.set("run.playbook", pb.name.clone());
        vars.set("run.trigger", req.trigger.kind.clone());
        vars.set("now", req.now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));

        let steps = pb.steps.iter().enumerate().map(|(i, s)| new_step(i, s, Phase::Main)).collect();
        let mut run = Run {
            id: 0,
            playbook: pb.name.clone(),
            spec: pb.clone(),
            params,
            target: req.target.clone(),
            trigger: req.trigger.clone(),
            vars,
            guards: settings.clone(),
            dry_run,
            status: RunStatus::Running,
            reason: None,
            refusal: None,
            approval: None,
            steps,
            revert_steps: Vec::new(),
            acted: false,
            created_at: req.now,
            updated_at: req.now,
            wake_at: None,
        };
        let actor = req.trigger.actor.clone();
        let mut events = vec![audit(
            &run,
            req.now,
            AuditKind::Trigger,
            &actor,
            json!({"playbook": pb.name, "trigger": req.trigger, "target": req.target, "params": run.params, "dry_run": dry_run}),
        )];

        // Run guards.
        let refusal = match self.run_guards(&run, req.has_data, req.now).await {
            Ok(()) => None,
            Err(StepError::Refused(r)) => Some(r),
            Err(e) => {
                let message = match e.settled() {
                    StepError::Failed(m) | StepError::Unknown(m) => m,
                    StepError::Refused(r) => r.to_string(),
                    StepError::Cluster(c) => c.message,
                };
                run.status = RunStatus::Failed;
                run.reason = Some(format!("cannot check the guards: {message}"));
                events.push(audit(&run, req.now, AuditKind::State, "warden", json!({"status": "failed", "reason": run.reason})));
                let claim = self.store.insert_run(&run, &events, &new_owner()).map_err(failure)?;
                let _held = self.hold(claim.clone());
                run.id = claim.run_id;
                self.notices.notice(&run, Notice::Finished, &finished_text(&run));
                return Ok(run);
            }
        };
        if let Some(r) = refusal {
            return self.store_refused(run, events, r, req.now).await;
        }
        events.push(audit(&run, req.now, AuditKind::Guard, "warden", json!({"allowed": true, "autonomy": settings.autonomy.as_str()})));

        match settings.autonomy {
            Autonomy::Observe => {
                run.status = RunStatus::Observed;
                run.reason = Some("autonomy is observe: the plan is recorded, nothing is sent".into());
                let claim = self.store.insert_run(&run, &events, &new_owner()).map_err(failure)?;
                let _held = self.hold(claim.clone());
                let claim = &claim;
                run.id = claim.run_id;
                self.set_keys(&mut run);
                self.preview(&mut run, req.now).await;
                self.save(&run, &[], claim)?;
                self.notices.notice(&run, Notice::Finished, &finished_text(&run));
                Ok(run)
            }
            Autonomy::Recommend if !dry_run => {
                let expires_at = crate::time::after(req.now, settings.approval_ttl)
                    .ok_or_else(|| Error::TimeOutOfRange { what: "the approval expiry (guards.approval_ttl)".into() })?;
                run.status = RunStatus::AwaitingApproval;
                run.approval = Some(Approval {
                    requested_at: req.now,
                    expires_at,
                    decided_by: None,
                    decided_at: None,
                    approved: None,
                    comment: None,
                });
                run.wake_at = Some(expires_at);
                events.push(audit(&run, req.now, AuditKind::Approval, "warden", json!({"requested": true, "expires_at": expires_at})));
                let claim = match self.store.insert_run(&run, &events, &new_owner()) {
                    Ok(c) => c,
                    Err(StoreFailure::TargetBusy { run_id }) => return self.store_busy(run, run_id, req.now).await,
                    Err(f) => return Err(failure(f)),
                };
                let _held = self.hold(claim.clone());
                let claim = &claim;
                run.id = claim.run_id;
                self.set_keys(&mut run);
                self.preview(&mut run, req.now).await;
                self.save(&run, &[], claim)?;
                let text = format!(
                    "run {} of {} waits for approval until {}: `warden approve {}` (or `warden approve {} --deny`). Plan: {}",
                    run.id,
                    run.title(),
                    expires_at.format("%Y-%m-%d %H:%M UTC"),
                    run.id,
                    run.id,
                    plan_text(&run)
                );
                self.notices.notice(&run, Notice::ApprovalRequested, &text);
                Ok(run)
            }
            _ => {
                // The run is inserted claimed: the ticker, which sees it as due at once,
                // leaves it to this task.
                let claim = match self.store.insert_run(&run, &events, &new_owner()) {
                    Ok(c) => c,
                    Err(StoreFailure::TargetBusy { run_id }) => return self.store_busy(run, run_id, req.now).await,
                    Err(f) => return Err(failure(f)),
                };
                let held = self.hold(claim);
                run.id = held.claim.run_id;
                self.set_keys(&mut run);
                self.save(&run, &[], &held.claim)?;
                self.drive(held, req.now).await
            }
        }
    }

    /// Approve or deny a run that waits for approval. An expired request is not approved:
    /// the run becomes `expired`.
    pub async fn decide(&self, id: i64, approver: &str, approve: bool, comment: Option<String>, now: DateTime<Utc>) -> Result<Run> {
        let held = match self.store.claim_run(id, &new_owner(), CLAIM_TTL).map_err(store_err)? {
            ClaimDecision::Granted(c) => self.hold(c),
            ClaimDecision::Held { .. } => {
                return Err(Error::Invalid(format!("run {id} is being advanced by another task; try again in a moment")))
            }
        };
        let claim = &held.claim;
        let mut run = self.load(id)?;
        if run.status != RunStatus::AwaitingApproval {
            return Err(Error::Invalid(format!("run {id} is {}, not awaiting approval", run.status)));
        }
        let expires_at = run.approval.as_ref().map(|a| a.expires_at).unwrap_or(now);
        if now >= expires_at {
            self.expire(&mut run, now, claim)?;
            return Err(Error::Invalid(format!(
                "the approval request of run {id} expired at {}; start a new run",
                expires_at.format("%Y-%m-%d %H:%M:%S UTC")
            )));
        }
        if let Some(a) = run.approval.as_mut() {
            a.decided_by = Some(approver.to_string());
            a.decided_at = Some(now);
            a.approved = Some(approve);
            a.comment = comment.clone();
        }
        let detail = json!({"approved": approve, "by": approver, "comment": comment});
        run.updated_at = now;
        if approve {
            run.status = RunStatus::Running;
            run.wake_at = None;
            run.reason = Some(format!("approved by {approver}"));
            self.save(&run, &[audit(&run, now, AuditKind::Approval, approver, detail)], claim)?;
            self.drive(held, now).await
        } else {
            run.status = RunStatus::Denied;
            run.wake_at = None;
            run.refusal = Some(Refusal::new(GuardName::Denied, format!("denied by {approver}")));
            run.reason = Some(format!("denied by {approver}"));
            self.save(&run, &[audit(&run, now, AuditKind::Approval, approver, detail)], claim)?;
            self.notices.notice(&run, Notice::Finished, &finished_text(&run));
            Ok(run)
        }
    }

    /// Advance every run that is due at `now` (and expire approval requests), one after
    /// the other. Returns the runs looked at. Runs another task holds are left to it.
    pub async fn tick(&self, now: DateTime<Utc>) -> Result<Vec<Run>> {
        let mut out = Vec::new();
        for id in self.due_runs(now)? {
            match self.advance(id, now).await {
                Ok(r) => out.push(r),
                Err(e) => tracing::error!(run = id, error = %e, "advancing a run"),
            }
        }
        Ok(out)
    }

    /// The runs due at `now` that no other task holds (for callers that advance each run
    /// in a task of its own).
    pub fn due_runs(&self, now: DateTime<Utc>) -> Result<Vec<i64>> {
        self.store.due_runs(now).map_err(store_err)
    }

    /// Advance one run as far as the clock allows, when no other task holds it. A run
    /// another task holds is returned as stored, unchanged.
    pub async fn advance(&self, id: i64, now: DateTime<Utc>) -> Result<Run> {
        match self.store.claim_run(id, &new_owner(), CLAIM_TTL).map_err(store_err)? {
            ClaimDecision::Granted(c) => {
                let held = self.hold(c);
                self.drive(held, now).await
            }
            ClaimDecision::Held { owner, .. } => {
                tracing::debug!(run = id, owner = %owner, "the run is advanced by another task");
                self.load(id)
            }
        }
    }

    fn hold(&self, claim: RunClaim) -> ClaimGuard {
        ClaimGuard { store: self.store.clone(), claim }
    }

    /// Advance a run whose claim is held, renewing the claim while the work lasts. When a
    /// renewal finds the claim taken (this task stalled past its expiry), the work stops
    /// at once: another task advances the run now.
    async fn drive(&self, held: ClaimGuard, now: DateTime<Utc>) -> Result<Run> {
        let claim = &held.claim;
        let work = self.advance_held(claim, now);
        tokio::pin!(work);
        let mut renew = tokio::time::interval_at(tokio::time::Instant::now() + CLAIM_RENEW_EVERY, CLAIM_RENEW_EVERY);
        loop {
            tokio::select! {
                r = &mut work => return r,
                _ = renew.tick() => match self.store.renew_claim(claim, CLAIM_TTL) {
                    Ok(()) => {}
                    Err(StoreFailure::Fenced(f)) => {
                        tracing::warn!(run = claim.run_id, error = %f, "lost the run's claim: stopping");
                        return Err(Error::Fenced(f));
                    }
                    Err(e) => tracing::warn!(run = claim.run_id, error = ?e, "renewing the run's claim"),
                },
            }
        }
    }

    async fn advance_held(&self, claim: &RunClaim, now: DateTime<Utc>) -> Result<Run> {
        let mut run = self.load(claim.run_id)?;
        loop {
            match run.status {
                RunStatus::AwaitingApproval => {
                    if run.approval.as_ref().is_some_and(|a| now >= a.expires_at) {
                        self.expire(&mut run, now, claim)?;
                    }
                    return Ok(run);
                }
                RunStatus::Running | RunStatus::Reverting => {
                    let phase = if run.status == RunStatus::Running { Phase::Main } else { Phase::Revert };
                    if !self.step_once(&mut run, phase, now, claim).await? {
                        return Ok(run);
                    }
                }
                _ => return Ok(run),
            }
        }
    }

    /// Store the run's state under the claim (refused when the claim is stale).
    fn save(&self, run: &Run, events: &[AuditEvent], claim: &RunClaim) -> Result<()> {
        self.store.save_run(run, events, claim).map_err(save_err)
    }

    fn load(&self, id: i64) -> Result<Run> {
        self.store.get_run(id).map_err(store_err)?.ok_or_else(|| Error::Invalid(format!("no run {id}")))
    }

    fn expire(&self, run: &mut Run, now: DateTime<Utc>, claim: &RunClaim) -> Result<()> {
        run.status = RunStatus::Expired;
        run.wake_at = None;
        run.updated_at = now;
        let r = Refusal::new(GuardName::ApprovalExpired, "nobody approved before the request expired");
        run.reason = Some(r.reason.clone());
        run.refusal = Some(r);
        self.save(run, &[audit(run, now, AuditKind::Approval, "warden", json!({"expired": true}))], claim)?;
        self.notices.notice(run, Notice::Finished, &finished_text(run));
        Ok(())
    }

    fn set_keys(&self, run: &mut Run) {
        let id = run.id;
        for s in run.steps.iter_mut() {
            s.idempotency_key = format!("run-{id}-step-{}", s.index + 1);
        }
        for s in run.revert_steps.iter_mut() {
            s.idempotency_key = format!("run-{id}-revert-{}", s.index + 1);
        }
        run.vars.set("run.id", id.to_string());
    }

    async fn store_refused(&self, mut run: Run, mut events: Vec<AuditEvent>, r: Refusal, now: DateTime<Utc>) -> Result<Run> {
        run.status = RunStatus::Refused;
        run.reason = Some(r.to_string());
        events.push(audit(&run, now, AuditKind::Guard, "warden", json!({"allowed": false, "guard": r.guard, "reason": r.reason})));
        run.refusal = Some(r);
        for s in run.steps.iter_mut() {
            s.status = StepStatus::Skipped;
        }
        let claim = self.store.insert_run(&run, &events, &new_owner()).map_err(failure)?;
        let held = self.hold(claim);
        run.id = held.claim.run_id;
        self.set_keys(&mut run);
        self.save(&run, &[], &held.claim)?;
        self.notices.notice(&run, Notice::Finished, &finished_text(&run));
        Ok(run)
    }

    async fn store_busy(&self, run: Run, holder: i64, now: DateTime<Utc>) -> Result<Run> {
        let target = run.target.as_ref().map(|t| t.to_string()).unwrap_or_default();
        let r = Refusal::new(GuardName::TargetBusy, format!("run {holder} is active on {target}"));
        let events = vec![audit(&run, now, AuditKind::Trigger, &run.trigger.actor.clone(), json!({"playbook": run.playbook}))];
        self.store_refused(run, events, r, now).await
    }

    /// The run guards: namespace, protection (from the target's labels), cooldown, attempts,
    /// rates, no data.
    async fn run_guards(&self, run: &Run, has_data: Option<bool>, now: DateTime<Utc>) -> std::result::Result<(), StepError> {
        let s = &run.guards;
        if has_data == Some(false) {
            return Err(StepError::Refused(Refusal::new(GuardName::NoData, "the triggering signal has no data")));
        }
        let mut labels = BTreeMap::new();
        let mut namespace = None;
        if let Some(t) = &run.target {
            if t.kind == TargetKind::Deployment {
                namespace = Some(t.namespace.clone());
                guards::check_namespace(s, &t.namespace).map_err(StepError::Refused)?;
                let cluster = self.cluster()?;
                labels = cluster.deployment_info(&workload(t)).await?.labels;
            }
        }
        let rate_since = |cap: Option<crate::spec::RateCap>| {
            // Out of range: every run since the epoch counts (the cap errs on the side of refusing).
            cap.map(|c| crate::time::before(now, c.per.get()).unwrap_or(DateTime::<Utc>::UNIX_EPOCH))
        };
        let q = HistoryQuery {
            playbook: run.playbook.clone(),
            target_key: run.target.as_ref().map(Target::lock_key),
            namespace: namespace.clone(),
            incident_id: run.incident_id(),
            global_since: rate_since(s.rate_global),
            namespace_since: rate_since(s.rate_namespace),
        };
        let history = self.store.history(&q).map_err(StepError::Failed)?;
        guards::check_run(s, namespace.as_deref(), &labels, has_data, &history, now).map_err(StepError::Refused)
    }

    fn cluster(&self) -> std::result::Result<&dyn Cluster, StepError> {
        self.cluster.as_deref().ok_or_else(|| StepError::Failed("no Kubernetes cluster is configured".into()))
    }

    /// For observe and approval: plan every step that can be planned now (reads only).
    async fn preview(&self, run: &mut Run, now: DateTime<Utc>) {
        for i in 0..run.steps.len() {
            let step = run.spec.steps.get(i).cloned().unwrap_or_default();
            let planned = self.plan(run, &step, Phase::Main, i, now).await.map_err(StepError::settled);
            let st = &mut run.steps[i];
            match planned {
                Ok(Planned::Request(p)) => st.plan = Some(p),
                Ok(Planned::Skip(r)) => st.result = Some(json!({"summary": r})),
                Err(StepError::Refused(r)) => st.refusal = Some(r),
                Err(StepError::Failed(e) | StepError::Unknown(e)) => st.error = Some(e),
                Err(StepError::Cluster(c)) => st.error = Some(c.message),
            }
            if run.status == RunStatus::Observed {
                st.status = StepStatus::Skipped;
            }
        }
        if run.status == RunStatus::AwaitingApproval {
            // The plan is re-made when the run is approved: the cluster may change meanwhile.
            for st in run.steps.iter_mut() {
                if let Some(p) = st.plan.take() {
                    st.result = Some(json!({"preview": p}));
                }
            }
        }
    }

    /// Take one step of `phase` forward. Returns whether to continue right away.
    async fn step_once(&self, run: &mut Run, phase: Phase, now: DateTime<Utc>, claim: &RunClaim) -> Result<bool> {
        let list = match phase {
            Phase::Main => &run.steps,
            Phase::Revert => &run.revert_steps,
        };
        let Some(i) = list.iter().position(|s| !matches!(s.status, StepStatus::Done | StepStatus::Skipped)) else {
            return self.finish_phase(run, phase, now, claim).map(|_| false);
        };
        let state = list[i].clone();
        let step_spec = match phase {
            Phase::Main => run.spec.steps.get(i).cloned(),
            Phase::Revert => run.spec.revert.as_ref().and_then(|r| r.get(i).cloned()),
        };
        // Failed attempts and how unknown outcomes were resolved, for the audit.
        let mut attempts: Vec<Value> = Vec::new();
        let outcome: std::result::Result<Sent, StepError> = match state.status {
            StepStatus::Pending => {
                let planned = match (&state.plan, &step_spec) {
                    // Automatic revert steps carry their plan from the start.
                    (Some(p), _) => Ok(Planned::Request(p.clone())),
                    (None, Some(spec)) => self.plan_retrying(run, spec, phase, i, now, &mut attempts).await,
                    (None, None) => Err(StepError::Failed("the step has neither a plan nor a definition".into())),
                };
                match planned {
                    Ok(Planned::Skip(reason)) => {
                        let st = step_mut(run, phase, i);
                        st.status = StepStatus::Skipped;
                        st.result = Some(json!({"summary": reason}));
                        st.finished_at = Some(now);
                        let ev = audit(run, now, AuditKind::State, "warden", json!({"step": state.name, "skipped": reason}));
                        run.updated_at = now;
                        self.save(run, &[ev], claim)?;
                        return Ok(true);
                    }
                    Ok(Planned::Request(plan)) => {
                        if phase == Phase::Revert {
                            if let Err(r) = self.revert_guard(run, &plan) {
                                self.fail_step(run, phase, i, StepError::Refused(r), now, claim)?;
                                return Ok(true);
                            }
                        }
                        {
                            let st = step_mut(run, phase, i);
                            st.status = StepStatus::Running;
                            st.plan = Some(plan.clone());
                            st.started_at = Some(now);
                            st.sends += 1;
                        }
                        run.updated_at = now;
                        let ev = audit(
                            run,
                            now,
                            AuditKind::Request,
                            "warden",
                            json!({"step": state.name, "action": state.action, "phase": phase, "idempotency_key": state.idempotency_key, "plan": plan, "dry_run": run.dry_run}),
                        );
                        // The plan is stored (under the claim) before it is sent, and what is
                        // sent is exactly the stored plan.
                        self.save(run, &[ev], claim)?;
                        self.send_retrying(run, &state.action, &plan, &state.idempotency_key, now, &mut attempts).await
                    }
                    Err(e) => Err(e),
                }
            }
            StepStatus::Running => {
                // Resumed: the task that sent it stopped (a crash, a cancelled task, a lost
                // claim). The request may or may not have reached the cluster; the stored
                // plan is idempotent, so it is sent again, never re-planned.
                let plan = state.plan.clone().unwrap_or(Value::Null);
                step_mut(run, phase, i).sends += 1;
                let ev = audit(
                    run,
                    now,
                    AuditKind::Request,
                    "warden",
                    json!({"step": state.name, "action": state.action, "idempotency_key": state.idempotency_key, "plan": plan, "resumed": true}),
                );
                self.save(run, &[ev], claim)?;
                if state.action == "http" && !run.dry_run {
                    // A webhook call is not idempotent for every receiver: it is not sent a
                    // second time; the step's outcome is unknown.
                    Err(StepError::Unknown("the webhook call was interrupted; its outcome is unknown and it is not sent again".into()))
                } else {
                    self.send_retrying(run, &state.action, &plan, &state.idempotency_key, now, &mut attempts).await
                }
            }
            StepStatus::Waiting => {
                if let Some(w) = state.wake_at {
                    if w > now {
                        run.wake_at = Some(w);
                        run.updated_at = now;
                        self.save(run, &[], claim)?;
                        return Ok(false);
                    }
                }
                let plan = state.plan.clone().unwrap_or(Value::Null);
                let mut delays = self.retry.delays();
                loop {
                    match self.poll(run, &state.action, &plan, now).await {
                        Err(StepError::Cluster(e)) if e.kind.is_retryable() => match delays.next() {
                            Some(d) => {
                                attempts.push(json!({"class": e.kind.as_str(), "error": e.message, "retry_in_ms": d.as_millis()}));
                                tokio::time::sleep(d).await;
                            }
                            None => break Err(StepError::Cluster(e)),
                        },
                        other => break other,
                    }
                }
            }
            StepStatus::Failed => {
                // A failed step whose run was not moved on (should not happen): move it on now.
                return self.after_failure(run, phase, now, claim).map(|_| true);
            }
            StepStatus::Done | StepStatus::Skipped => return Ok(true),
        };
        let mut detail_extra = serde_json::Map::new();
        if !attempts.is_empty() {
            detail_extra.insert("attempts".into(), Value::Array(attempts.clone()));
        }
        match outcome {
            Ok(Sent::Done(result)) => {
                let mutating = is_mutating(&state.action);
                {
                    let st = step_mut(run, phase, i);
                    st.status = StepStatus::Done;
                    st.result = Some(result.clone());
                    st.finished_at = Some(now);
                    st.wake_at = None;
                }
                if mutating && !run.dry_run && phase == Phase::Main {
                    run.acted = true;
                }
                run.wake_at = None;
                run.updated_at = now;
                let kind = if state.action == "verify" { AuditKind::Verify } else { AuditKind::Response };
                let mut detail = json!({"step": state.name, "ok": true, "result": result});
                extend(&mut detail, &detail_extra);
                let ev = audit(run, now, kind, "warden", detail);
                self.save(run, &[ev], claim)?;
                Ok(true)
            }
            Ok(Sent::Wait(until, result)) => {
                {
                    let st = step_mut(run, phase, i);
                    st.status = StepStatus::Waiting;
                    st.wake_at = Some(until);
                    st.result = Some(result.clone());
                }
                if is_mutating(&state.action) && !run.dry_run && phase == Phase::Main {
                    run.acted = true;
                }
                run.wake_at = Some(until);
                run.updated_at = now;
                let mut detail = json!({"step": state.name, "waiting_until": until, "result": result});
                extend(&mut detail, &detail_extra);
                let ev = audit(run, now, AuditKind::Response, "warden", detail);
                self.save(run, &[ev], claim)?;
                Ok(true)
            }
            Err(e) => {
                if !attempts.is_empty() {
                    step_mut(run, phase, i).result = Some(json!({"attempts": attempts}));
                }
                self.fail_step(run, phase, i, e.settled(), now, claim)?;
                Ok(true)
            }
        }
    }

    /// Plan a step, retrying the reads it makes when they fail transiently.
    async fn plan_retrying(
        &self,
        run: &Run,
        spec: &Step,
        phase: Phase,
        i: usize,
        now: DateTime<Utc>,
        attempts: &mut Vec<Value>,
    ) -> std::result::Result<Planned, StepError> {
        let mut delays = self.retry.delays();
        loop {
            match self.plan(run, spec, phase, i, now).await {
                Err(StepError::Cluster(e)) if e.kind.is_retryable() => match delays.next() {
                    Some(d) => {
                        attempts.push(json!({"planning": true, "class": e.kind.as_str(), "error": e.message, "retry_in_ms": d.as_millis()}));
                        tokio::time::sleep(d).await;
                    }
                    None => return Err(StepError::Cluster(e)),
                },
                other => return other,
            }
        }
    }

    /// Send a step's plan under the error policy ([`crate::policy`]): transient errors and
    /// conflicts are retried after re-reading the object; an unknown outcome is resolved by
    /// reading the object back. The `http` step is never retried (see [`Engine::send`]).
    async fn send_retrying(
        &self,
        run: &Run,
        action: &str,
        plan: &Value,
        key: &str,
        now: DateTime<Utc>,
        attempts: &mut Vec<Value>,
    ) -> std::result::Result<Sent, StepError> {
        let mut delays = self.retry.delays();
        // Whether an attempt may have been applied (an unknown outcome not resolved as
        // applied): then a final failure is "may have applied", never "nothing changed".
        let mut may_have_applied = false;
        loop {
            let err = match self.send(run, action, plan, key, now).await {
                Ok(sent) => return Ok(sent),
                Err(StepError::Cluster(e)) => e,
                Err(other) => return Err(other),
            };
            let mut entry = json!({"class": err.kind.as_str(), "error": err.message});
            let retry = if err.kind.may_have_applied() && !run.dry_run {
                may_have_applied = true;
                match self.read_back(action, plan).await {
                    Ok(Some(true)) => {
                        entry["resolved"] = json!("applied");
                        attempts.push(entry);
                        return Ok(applied_after_all(action, plan, now));
                    }
                    Ok(Some(false)) => {
                        entry["resolved"] = json!("not applied yet");
                        true
                    }
                    Ok(None) => {
                        entry["resolved"] = json!("cannot be read back");
                        false
                    }
                    Err(e) => {
                        entry["resolved"] = json!(format!("reading back failed: {}", e.message));
                        true
                    }
                }
            } else {
                // In a dry run nothing is persisted, so a lost answer changed nothing.
                err.kind.is_retryable() || err.kind.may_have_applied()
            };
            let delay = if retry { delays.next() } else { None };
            let Some(delay) = delay else {
                entry["final"] = json!(true);
                attempts.push(entry);
                return Err(if may_have_applied {
                    StepError::Cluster(ClusterError::new(ClusterErrorKind::UnknownOutcome, err.message))
                } else {
                    StepError::Cluster(err)
                });
            };
            entry["retry_in_ms"] = json!(delay.as_millis());
            attempts.push(entry);
            tokio::time::sleep(delay).await;
            // Re-read first: an earlier attempt may have been applied after all.
            if !run.dry_run {
                if let Ok(Some(true)) = self.read_back(action, plan).await {
                    attempts.push(json!({"resolved": "applied", "on": "re-reading before the next attempt"}));
                    return Ok(applied_after_all(action, plan, now));
                }
            }
        }
    }

    /// Whether the cluster is in the state `plan` asks for: `Some(true)` applied,
    /// `Some(false)` not (yet), `None` for actions that cannot be read back.
    async fn read_back(&self, action: &str, plan: &Value) -> std::result::Result<Option<bool>, ClusterError> {
        let Some(cluster) = self.cluster.as_deref() else { return Ok(None) };
        let s = |k: &str| plan.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        let t = WorkloadRef::new(s("namespace"), s("name"));
        match action {
            "scale" => {
                let Some(to) = plan.get("to").and_then(Value::as_i64) else { return Ok(None) };
                Ok(Some(i64::from(cluster.get_replicas(&t).await?.desired) == to))
            }
            "cordon" => {
                let want = plan.get("unschedulable").and_then(Value::as_bool).unwrap_or(true);
                Ok(Some(cluster.node_unschedulable(&s("node")).await? == want))
            }
            "restart" => {
                let d = cluster.read_deployment(&t).await?;
                let at = d.pointer("/spec/template/metadata/annotations/kubectl.kubernetes.io~1restartedAt").and_then(Value::as_str);
                Ok(Some(at == Some(s("restarted_at").as_str())))
            }
            "patch" => {
                let d = cluster.read_deployment(&t).await?;
                Ok(Some(contains(&d, plan.get("patch").unwrap_or(&Value::Null))))
            }
            "delete_pod" => {
                let ns = s("namespace");
                for p in plan.get("pods").and_then(Value::as_array).cloned().unwrap_or_default() {
                    let name = p.get("name").and_then(Value::as_str).unwrap_or_default();
                    let uid = p.get("uid").and_then(Value::as_str);
                    if let Some(pod) = cluster.get_pod(&ns, name).await? {
                        if uid.is_none_or(|u| u == pod.uid) {
                            return Ok(Some(false));
                        }
                    }
                }
                Ok(Some(true))
            }
            "run_job" => match cluster.job_status(&s("namespace"), &s("name")).await {
                Ok(_) => Ok(Some(true)),
                Err(e) if e.kind == ClusterErrorKind::NotFound => Ok(Some(false)),
                Err(e) => Err(e),
            },
            _ => Ok(None),
        }
    }

    fn fail_step(&self, run: &mut Run, phase: Phase, i: usize, e: StepError, now: DateTime<Utc>, claim: &RunClaim) -> Result<()> {
        let e = e.settled();
        let attempts = step_mut(run, phase, i).result.as_ref().and_then(|r| r.get("attempts")).cloned();
        let (mut detail, refusal) = match &e {
            StepError::Refused(r) => (json!({"allowed": false, "guard": r.guard, "reason": r.reason}), Some(r.clone())),
            StepError::Failed(m) => (json!({"ok": false, "error": m}), None),
            StepError::Unknown(m) => (json!({"ok": false, "outcome": "unknown", "may_have_applied": true, "error": m}), None),
            StepError::Cluster(c) => (json!({"ok": false, "error": c.message}), None),
        };
        if let Some(a) = attempts {
            detail["attempts"] = a;
        }
        let name;
        let action;
        {
            let st = step_mut(run, phase, i);
            st.status = StepStatus::Failed;
            st.finished_at = Some(now);
            st.wake_at = None;
            match &e {
                StepError::Refused(r) => st.refusal = Some(r.clone()),
                StepError::Failed(m) | StepError::Unknown(m) => st.error = Some(m.clone()),
                StepError::Cluster(c) => st.error = Some(c.message.clone()),
            }
            if matches!(e, StepError::Unknown(_)) {
                st.may_have_applied = true;
            }
            name = st.name.clone();
            action = st.action.clone();
        }
        // A request that may have applied counts as acted: for cooldowns, rate caps and the
        // blast radius, and for the revert.
        if matches!(e, StepError::Unknown(_)) && !run.dry_run && phase == Phase::Main && is_mutating(&action) {
            run.acted = true;
        }
        let kind = match (&e, action.as_str()) {
            (StepError::Refused(_), _) => AuditKind::Guard,
            (_, "verify") => AuditKind::Verify,
            _ => AuditKind::Response,
        };
        detail["step"] = json!(name);
        let ev = audit(run, now, kind, "warden", detail);
        if run.refusal.is_none() && !run.acted {
            run.refusal = refusal;
        }
        run.reason = Some(match &e {
            StepError::Refused(r) => format!("step {name}: {r}"),
            StepError::Failed(m) => format!("step {name} failed: {m}"),
            StepError::Unknown(m) => format!("step {name}: {m}"),
            StepError::Cluster(c) => format!("step {name} failed: {}", c.message),
        });
        run.updated_at = now;
        self.save(run, &[ev], claim)?;
        self.after_failure(run, phase, now, claim)
    }

    /// A failed step: revert what was applied, or end the run.
    fn after_failure(&self, run: &mut Run, phase: Phase, now: DateTime<Utc>, claim: &RunClaim) -> Result<()> {
        run.wake_at = None;
        match phase {
            Phase::Main if run.acted => {
                run.revert_steps = self.revert_steps(run);
                let id = run.id;
                for s in run.revert_steps.iter_mut() {
                    s.idempotency_key = format!("run-{id}-revert-{}", s.index + 1);
                }
                run.status = RunStatus::Reverting;
                let ev = audit(
                    run,
                    now,
                    AuditKind::Revert,
                    "warden",
                    json!({"started": true, "because": run.reason, "steps": run.revert_steps.iter().map(|s| &s.name).collect::<Vec<_>>()}),
                );
                self.save(run, &[ev], claim)?;
                let text = format!("run {} of {}: {}; reverting", run.id, run.title(), run.reason.clone().unwrap_or_default());
                self.notices.notice(run, Notice::Reverting, &text);
            }
            Phase::Main => {
                run.status = if run.refusal.is_some() { RunStatus::Refused } else { RunStatus::Failed };
                let ev = audit(run, now, AuditKind::State, "warden", json!({"status": run.status, "reason": run.reason}));
                self.save(run, &[ev], claim)?;
                self.notices.notice(run, Notice::Finished, &finished_text(run));
            }
            Phase::Revert => {
                run.status = RunStatus::RevertFailed;
                let ev = audit(run, now, AuditKind::Revert, "warden", json!({"finished": false, "reason": run.reason}));
                self.save(run, &[ev], claim)?;
                self.notices.notice(run, Notice::Finished, &finished_text(run));
            }
        }
        Ok(())
    }

    fn finish_phase(&self, run: &mut Run, phase: Phase, now: DateTime<Utc>, claim: &RunClaim) -> Result<()> {
        run.wake_at = None;
        run.updated_at = now;
        let ev = match phase {
            Phase::Main => {
                run.status = RunStatus::Succeeded;
                run.reason = Some("every step done".into());
                audit(run, now, AuditKind::State, "warden", json!({"status": "succeeded"}))
            }
            Phase::Revert => {
                run.status = RunStatus::Reverted;
                audit(run, now, AuditKind::Revert, "warden", json!({"finished": true, "because": run.reason}))
            }
        };
        self.save(run, &[ev], claim)?;
        self.notices.notice(run, Notice::Finished, &finished_text(run));
        Ok(())
    }

    /// The revert steps: the declared ones, or the inverse of every applied action, newest
    /// first. Actions that cannot be undone are listed as skipped, so the operator sees them.
    fn revert_steps(&self, run: &Run) -> Vec<StepState> {
        if let Some(declared) = &run.spec.revert {
            return declared.iter().enumerate().map(|(i, s)| new_step(i, s, Phase::Revert)).collect();
        }
        let mut out = Vec::new();
        for st in run.steps.iter().rev() {
            // Applied steps, and failed ones that may have applied (an unknown outcome).
            let applied = matches!(st.status, StepStatus::Done | StepStatus::Waiting | StepStatus::Running)
                || (st.status == StepStatus::Failed && st.may_have_applied);
            if !applied || !is_mutating(&st.action) {
                continue;
            }
            let index = out.len();
            let mut rs = StepState {
                index,
                name: format!("undo-{}", st.name),
                action: st.action.clone(),
                phase: Phase::Revert,
                status: StepStatus::Pending,
                idempotency_key: String::new(),
                plan: None,
                result: None,
                error: None,
                refusal: None,
                sends: 0,
                may_have_applied: false,
                started_at: None,
                finished_at: None,
                wake_at: None,
            };
            match st.plan.as_ref().and_then(|p| inverse(&st.action, p)) {
                Some(p) => rs.plan = Some(p),
                None => {
                    rs.status = StepStatus::Skipped;
                    rs.result = Some(json!({"summary": format!("{} cannot be undone", st.action)}));
                }
            }
            out.push(rs);
        }
        out
    }

    /// Guards on a revert step: namespace and protection still apply.
    fn revert_guard(&self, run: &Run, plan: &Value) -> std::result::Result<(), Refusal> {
        match plan.get("namespace").and_then(Value::as_str) {
            Some(ns) => guards::check_namespace(&run.guards, ns),
            None => Ok(()),
        }
    }

    fn render(&self, run: &Run, text: &str) -> std::result::Result<String, StepError> {
        render(text, &run.vars).map_err(|e| StepError::Failed(e.to_string()))
    }

    fn render_int(&self, run: &Run, arg: &crate::spec::Arg, what: &str) -> std::result::Result<i64, StepError> {
        let text = self.render(run, arg.as_str())?;
        text.trim()
            .parse::<i64>()
            .map_err(|_| StepError::Failed(format!("{what} {text:?} (from {:?}) is not a whole number", arg.as_str())))
    }

    fn deployment_target(&self, run: &Run) -> std::result::Result<WorkloadRef, StepError> {
        match &run.target {
            Some(t) if t.kind == TargetKind::Deployment => Ok(workload(t)),
            _ => Err(StepError::Failed("this action needs a deployment target".into())),
        }
    }

    /// Turn a step into its concrete request, reading what it needs from the cluster.
    async fn plan(&self, run: &Run, step: &Step, phase: Phase, index: usize, now: DateTime<Utc>) -> std::result::Result<Planned, StepError> {
        let Some(action) = step.action() else {
            return Err(StepError::Failed("the step does not have exactly one action".into()));
        };
        let s = &run.guards;
        match action {
            StepAction::Scale(sc) => {
                let t = self.deployment_target(run)?;
                let current = self.cluster()?.get_replicas(&t).await?.desired;
                let min = match &sc.min {
                    Some(a) => self.render_int(run, a, "scale.min")?,
                    None => 1,
                };
                let max = match &sc.max {
                    Some(a) => self.render_int(run, a, "scale.max")?,
                    None => i64::from(i32::MAX),
                };
                let wanted = match (&sc.to, &sc.by) {
                    (Some(to), _) => self.render_int(run, to, "scale.to")?,
                    (None, Some(by)) => i64::from(current)
                        .checked_add(self.render_int(run, by, "scale.by")?)
                        .ok_or_else(|| StepError::Failed("scale.by is out of range".into()))?,
                    (None, None) => return Err(StepError::Failed("scale needs `to` or `by`".into())),
                };
                if min.max(0) > max {
                    return Err(StepError::Failed(format!("scale.min {min} is greater than scale.max {max}")));
                }
                let to = i32::try_from(wanted.clamp(min.max(0), max)).unwrap_or(i32::MAX);
                if to == current {
                    let bound = if wanted > i64::from(current) { "max" } else { "min" };
                    return Err(StepError::Refused(Refusal::new(
                        GuardName::Bounds,
                        format!("{t} is already at {current} replicas; scale.{bound} allows no further step"),
                    )));
                }
                guards::check_scale(s, current, to).map_err(StepError::Refused)?;
                Ok(Planned::Request(json!({"namespace": t.namespace, "name": t.name, "from": current, "to": to})))
            }
            StepAction::Rollback(rb) => {
                let t = self.deployment_target(run)?;
                let requested = match &rb.to_revision {
                    Some(a) => Some(self.render_int(run, a, "rollback.to_revision")?),
                    None => None,
                };
                // Both revisions come from the cluster's history, not its (lagging) annotation.
                let p = self.cluster()?.plan_rollback(&t, requested).await?;
                Ok(Planned::Request(json!({"namespace": t.namespace, "name": t.name, "from_revision": p.from_revision, "to_revision": p.to_revision})))
            }
            StepAction::Restart(_) => {
                let t = self.deployment_target(run)?;
                Ok(Planned::Request(json!({
                    "namespace": t.namespace, "name": t.name,
                    "restarted_at": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                })))
            }
            StepAction::DeletePod(dp) => {
                let t = self.deployment_target(run)?;
                let cluster = self.cluster()?;
                let pods = match (&dp.name, &dp.selector) {
                    (Some(n), _) => {
                        let name = self.render(run, n.as_str())?;
                        match cluster.get_pod(&t.namespace, &name).await? {
                            Some(p) => vec![p],
                            None => return Ok(Planned::Skip(format!("pod {}/{name} does not exist", t.namespace))),
                        }
                    }
                    (None, Some(sel)) => {
                        let sel = self.render(run, sel.as_str())?;
                        let max = match &dp.max {
                            Some(m) => self.render_int(run, m, "delete_pod.max")?.max(1),
                            None => 1,
                        };
                        let mut pods = cluster.list_pods(&t.namespace, &sel).await?;
                        pods.sort_by(|a, b| a.name.cmp(&b.name));
                        pods.truncate(usize::try_from(max).unwrap_or(1));
                        if pods.is_empty() {
                            return Err(StepError::Failed(format!("no pod in {} matches {sel:?}", t.namespace)));
                        }
                        pods
                    }
                    (None, None) => return Err(StepError::Failed("delete_pod needs `name` or `selector`".into())),
                };
                let already: u32 = run
                    .steps
                    .iter()
                    .filter(|st| st.action == "delete_pod" && st.status == StepStatus::Done && st.index != index)
                    .filter_map(|st| st.plan.as_ref()?.get("pods")?.as_array().map(|a| a.len() as u32))
                    .sum();
                guards::check_pods_deleted(s, already, pods.len() as u32).map_err(StepError::Refused)?;
                let list: Vec<Value> = pods.iter().map(|p| json!({"name": p.name, "uid": p.uid})).collect();
                Ok(Planned::Request(json!({"namespace": t.namespace, "pods": list})))
            }
            StepAction::Cordon(c) => {
                let node = match (&c.node, &run.target) {
                    (Some(n), _) => self.render(run, n.as_str())?,
                    (None, Some(t)) if t.kind == TargetKind::Node => t.name.clone(),
                    _ => return Err(StepError::Failed("cordon needs `node` or a node target".into())),
                };
                let previous = self.cluster()?.node_unschedulable(&node).await?;
                Ok(Planned::Request(json!({"node": node, "unschedulable": true, "previous": previous})))
            }
            StepAction::RunJob(j) => {
                let namespace = match (&j.namespace, &run.target) {
                    (Some(n), _) => self.render(run, n.as_str())?,
                    (None, Some(t)) if t.kind == TargetKind::Deployment => t.namespace.clone(),
                    _ => return Err(StepError::Failed("run_job needs `namespace`".into())),
                };
                guards::check_namespace(s, &namespace).map_err(StepError::Refused)?;
                let (step, step_key) = match phase {
                    Phase::Main => (format!("{}-{}", run.id, index + 1), format!("run-{}-step-{}", run.id, index + 1)),
                    Phase::Revert => (format!("{}-r{}", run.id, index + 1), format!("run-{}-revert-{}", run.id, index + 1)),
                };
                // The installation (store) is part of the name and the labels: a Job another
                // store's run of the same number made is neither found nor adopted.
                let installation = self.store.installation_id().map_err(StepError::Failed)?;
                let suffix = match &installation {
                    Some(id) => format!("{}-{step}", short_installation_id(id)),
                    None => step,
                };
                let name = job_name(&j.name_prefix, &suffix);
                let spec = render_tree(&j.spec, &run.vars).map_err(|e| StepError::Failed(e.to_string()))?;
                let mut labels = serde_json::Map::new();
                for (k, v) in &j.labels {
                    labels.insert(k.clone(), json!(self.render(run, v.as_str())?));
                }
                labels.insert("app.kubernetes.io/managed-by".into(), json!("warden"));
                labels.insert("warden.io/run".into(), json!(run.id.to_string()));
                labels.insert("warden.io/step".into(), json!(step_key));
                if let Some(id) = &installation {
                    labels.insert("warden.io/installation".into(), json!(id));
                }
                let job = json!({
                    "apiVersion": "batch/v1", "kind": "Job",
                    "metadata": {"name": name, "namespace": namespace, "labels": labels},
                    "spec": spec,
                });
                let deadline = crate::time::after(now, j.timeout.get())
                    .ok_or_else(|| StepError::Failed(format!("run_job.timeout {} puts the deadline out of range", j.timeout)))?;
                let poll = j.poll.map(|p| p.get()).unwrap_or(DEFAULT_JOB_POLL);
                Ok(Planned::Request(json!({"namespace": namespace, "name": name, "job": job, "deadline": deadline, "poll_secs": poll.as_secs_f64()})))
            }
            StepAction::Patch(p) => {
                let t = self.deployment_target(run)?;
                let patch = render_tree(&p.patch, &run.vars).map_err(|e| StepError::Failed(e.to_string()))?;
                guards::check_patch(s, &patch).map_err(StepError::Refused)?;
                let current = self.cluster()?.read_deployment(&t).await?;
                let undo = inverse_patch(&patch, &current);
                Ok(Planned::Request(json!({"namespace": t.namespace, "name": t.name, "patch": patch, "inverse": undo})))
            }
            StepAction::Http(h) => {
                let url = self.render(run, h.url.as_str())?;
                let mut headers = BTreeMap::new();
                for (k, v) in &h.headers {
                    headers.insert(k.clone(), self.render(run, v.as_str())?);
                }
                let body = match &h.body {
                    Some(b) => Some(render_tree(b, &run.vars).map_err(|e| StepError::Failed(e.to_string()))?),
                    None => None,
                };
                let call = HttpCall {
                    method: h.method.to_uppercase(),
                    url,
                    headers,
                    body,
                    timeout_secs: h.timeout.map(|t| t.get().as_secs_f64()).unwrap_or(10.0),
                };
                Ok(Planned::Request(json!({"call": call, "expect_status": h.expect_status})))
            }
            StepAction::Wait(w) => {
                if run.dry_run {
                    return Ok(Planned::Skip("dry-run: no wait".into()));
                }
                let until = crate::time::after(now, w.duration.get()).ok_or_else(|| StepError::Failed(format!("wait.for {} is out of range", w.duration)))?;
                Ok(Planned::Request(json!({"until": until})))
            }
            StepAction::Verify(v) => {
                if run.dry_run {
                    return Ok(Planned::Skip("dry-run: nothing was changed, so nothing is verified".into()));
                }
                let query = self.render(run, v.query.as_str())?;
                let end = crate::time::after(now, v.duration.get()).ok_or_else(|| StepError::Failed(format!("verify.for {} is out of range", v.duration)))?;
                let step = v.step.map(|s| s.get()).unwrap_or(DEFAULT_VERIFY_STEP);
                Ok(Planned::Request(json!({"query": query, "start": now, "end": end, "step_secs": step.as_secs_f64()})))
            }
            StepAction::Notify(n) => Ok(Planned::Request(json!({"message": self.render(run, n.message.as_str())?}))),
        }
    }

    /// Send a step's plan (first time or again after a crash).
    async fn send(&self, run: &Run, action: &str, plan: &Value, key: &str, now: DateTime<Utc>) -> std::result::Result<Sent, StepError> {
        let dry = run.dry_run;
        let dry_note = if dry { " (dry-run, not persisted)" } else { "" };
        let str_of = |k: &str| plan.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        let int_of = |k: &str| plan.get(k).and_then(Value::as_i64);
        match action {
            "scale" => {
                let t = WorkloadRef::new(str_of("namespace"), str_of("name"));
                let (Some(from), Some(to)) = (int_of("from"), int_of("to")) else {
                    return Err(StepError::Failed("the stored scale plan is incomplete".into()));
                };
                let to = i32::try_from(to).map_err(|_| StepError::Failed(format!("replicas {to} out of range")))?;
                let out = self.cluster()?.set_replicas(&t, to, dry).await?;
                Ok(Sent::Done(json!({
                    "replicas": out.replicas, "dry_run": out.dry_run, "response": out.response,
                    "summary": format!("scaled {t} from {from} to {to} replicas{dry_note}"),
                })))
            }
            "rollback" => {
                let t = WorkloadRef::new(str_of("namespace"), str_of("name"));
                let to = int_of("to_revision").ok_or_else(|| StepError::Failed("the stored rollback plan has no revision".into()))?;
                let out = self.cluster()?.rollback(&t, Some(to), dry).await?;
                Ok(Sent::Done(json!({
                    "from_revision": out.from_revision, "to_revision": out.to_revision, "changed": out.changed, "response": out.response,
                    "summary": format!("rolled {t} back from revision {} to revision {to}{dry_note}", int_of("from_revision").unwrap_or(out.from_revision)),
                })))
            }
            "restart" => {
                let t = WorkloadRef::new(str_of("namespace"), str_of("name"));
                let response = self.cluster()?.restart(&t, &str_of("restarted_at"), dry).await?;
                Ok(Sent::Done(json!({"response": response, "summary": format!("restarted {t}{dry_note}")})))
            }
            "delete_pod" => {
                let ns = str_of("namespace");
                let mut results = Vec::new();
                let (mut gone, mut terminating) = (Vec::new(), Vec::new());
                for p in plan.get("pods").and_then(Value::as_array).cloned().unwrap_or_default() {
                    let name = p.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
                    let uid = p.get("uid").and_then(Value::as_str).map(str::to_string);
                    let out = self.cluster()?.delete_pod(&ns, &name, uid.as_deref(), dry).await?;
                    let mut entry = json!({"name": name, "already_gone": out.already_gone, "response": out.response});
                    // A pod still terminating is reported as such, never as deleted.
                    match &out.terminating {
                        Some(t) => {
                            entry["terminating"] = json!(t);
                            terminating.push(name);
                        }
                        None => gone.push(name),
                    }
                    results.push(entry);
                }
                let mut summary = Vec::new();
                if !gone.is_empty() {
                    summary.push(format!("deleted pod(s) {} in {ns}", gone.join(", ")));
                }
                if !terminating.is_empty() {
                    summary.push(format!("pod(s) {} in {ns} terminating (deletion accepted, not yet confirmed by the node)", terminating.join(", ")));
                }
                Ok(Sent::Done(json!({"pods": results, "summary": format!("{}{dry_note}", summary.join("; "))})))
            }
            "cordon" => {
                let node = str_of("node");
                let unschedulable = plan.get("unschedulable").and_then(Value::as_bool).unwrap_or(true);
                let response = self.cluster()?.set_node_unschedulable(&node, unschedulable, dry).await?;
                let verb = if unschedulable { "cordoned" } else { "uncordoned" };
                Ok(Sent::Done(json!({"response": response, "summary": format!("{verb} node {node}{dry_note}")})))
            }
            "run_job" => {
                let ns = str_of("namespace");
                let name = str_of("name");
                let job = plan.get("job").cloned().unwrap_or(Value::Null);
                let out = self.cluster()?.create_job(&ns, &job, dry).await?;
                if dry {
                    return Ok(Sent::Done(json!({"created": out.created, "response": out.response, "summary": format!("created job {ns}/{name}{dry_note}")})));
                }
                let poll = plan.get("poll_secs").and_then(Value::as_f64).unwrap_or(10.0);
                let wake = crate::time::after_secs(now, poll).ok_or_else(|| StepError::Failed(format!("job poll interval {poll}s is out of range")))?;
                Ok(Sent::Wait(wake, json!({"created": out.created, "job": format!("{ns}/{name}")})))
            }
            "patch" => {
                let t = WorkloadRef::new(str_of("namespace"), str_of("name"));
                let patch = plan.get("patch").cloned().unwrap_or(Value::Null);
                let response = self.cluster()?.patch_deployment(&t, &patch, dry).await?;
                Ok(Sent::Done(json!({"response": response, "summary": format!("patched {t}{dry_note}")})))
            }
            "http" => {
                let webhook = self.webhook.as_deref().ok_or_else(|| StepError::Failed("no HTTP client is configured".into()))?;
                let mut call: HttpCall = serde_json::from_value(plan.get("call").cloned().unwrap_or(Value::Null))
                    .map_err(|e| StepError::Failed(format!("the stored http plan does not parse: {e}")))?;
                call.headers.insert("Idempotency-Key".into(), key.to_string());
                if dry {
                    return Ok(Sent::Done(json!({"summary": format!("would call {} {} (dry-run)", call.method, call.url)})));
                }
                // Never retried: a receiver may act on a call whose answer was lost.
                let reply = webhook.call(&call).await.map_err(|e| {
                    if e.sent {
                        StepError::Unknown(format!("{} {}: {}; the call may have reached the receiver, so it is not sent again", call.method, call.url, e.message))
                    } else {
                        StepError::Failed(format!("{} {}: {}", call.method, call.url, e.message))
                    }
                })?;
                let expected: Option<Vec<u16>> = plan.get("expect_status").and_then(|v| serde_json::from_value(v.clone()).ok());
                let ok = match &expected {
                    Some(list) => list.contains(&reply.status),
                    None => (200..300).contains(&reply.status),
                };
                let body: String = reply.body.chars().take(2000).collect();
                if !ok && reply.status >= 500 {
                    // A server error says nothing about what the receiver did.
                    return Err(StepError::Unknown(format!("{} {} answered {}: {body}; it may have acted, so it is not sent again", call.method, call.url, reply.status)));
                }
                if !ok {
                    return Err(StepError::Failed(format!("{} {} answered {}: {body}", call.method, call.url, reply.status)));
                }
                Ok(Sent::Done(json!({"status": reply.status, "body": body, "summary": format!("called {} {} ({})", call.method, call.url, reply.status)})))
            }
            "wait" => {
                let until = plan.get("until").and_then(|v| serde_json::from_value::<DateTime<Utc>>(v.clone()).ok()).unwrap_or(now);
                if until <= now {
                    Ok(Sent::Done(json!({})))
                } else {
                    Ok(Sent::Wait(until, json!({})))
                }
            }
            "verify" => {
                let end = plan.get("end").and_then(|v| serde_json::from_value::<DateTime<Utc>>(v.clone()).ok()).unwrap_or(now);
                if end > now {
                    Ok(Sent::Wait(end, json!({"query": plan.get("query")})))
                } else {
                    self.evaluate_verify(plan).await
                }
            }
            "notify" => {
                let message = str_of("message");
                self.notices.notice(run, Notice::Message, &message);
                Ok(Sent::Done(json!({"message": message})))
            }
            other => Err(StepError::Failed(format!("unknown action {other:?}"))),
        }
    }

    /// Look again at a waiting step.
    async fn poll(&self, run: &Run, action: &str, plan: &Value, now: DateTime<Utc>) -> std::result::Result<Sent, StepError> {
        match action {
            "wait" => Ok(Sent::Done(json!({}))),
            "verify" => self.evaluate_verify(plan).await,
            "run_job" => {
                let ns = plan.get("namespace").and_then(Value::as_str).unwrap_or_default();
                let name = plan.get("name").and_then(Value::as_str).unwrap_or_default();
                let status = self.cluster()?.job_status(ns, name).await?;
                match status.phase {
                    JobPhase::Succeeded => Ok(Sent::Done(json!({"job": format!("{ns}/{name}"), "status": status.status, "summary": format!("job {ns}/{name} succeeded")}))),
                    JobPhase::Failed { reason } => Err(StepError::Failed(format!("job {ns}/{name} failed: {reason}"))),
                    JobPhase::Running => {
                        let deadline = plan.get("deadline").and_then(|v| serde_json::from_value::<DateTime<Utc>>(v.clone()).ok()).unwrap_or(now);
                        if now >= deadline {
                            return Err(StepError::Failed(format!("job {ns}/{name} did not finish before its timeout ({deadline})")));
                        }
                        let poll = plan.get("poll_secs").and_then(Value::as_f64).unwrap_or(10.0);
                        let wake = crate::time::after_secs(now, poll).unwrap_or(deadline).min(deadline);
                        Ok(Sent::Wait(wake, json!({"job": format!("{ns}/{name}"), "status": status.status})))
                    }
                }
            }
            other => {
                let _ = run;
                Err(StepError::Failed(format!("a {other} step does not wait")))
            }
        }
    }

    /// The verification: every evaluation step of the window must have a sample, and every
    /// sample must be non-zero. A missing sample is a failure: no data is never "verified".
    async fn evaluate_verify(&self, plan: &Value) -> std::result::Result<Sent, StepError> {
        let metrics = self.metrics.as_deref().ok_or_else(|| StepError::Failed("no metrics source to verify with".into()))?;
        let query = plan.get("query").and_then(Value::as_str).unwrap_or_default();
        let parse = |k: &str| plan.get(k).and_then(|v| serde_json::from_value::<DateTime<Utc>>(v.clone()).ok());
        let (Some(start), Some(end)) = (parse("start"), parse("end")) else {
            return Err(StepError::Failed("the stored verify plan has no window".into()));
        };
        let step = Duration::try_from_secs_f64(plan.get("step_secs").and_then(Value::as_f64).unwrap_or(30.0).max(1.0)).unwrap_or(DEFAULT_VERIFY_STEP);
        let series = metrics.query_range(query, start, end, step).await.map_err(|e| StepError::Failed(format!("verify query failed: {e}")))?;
        let check = judge_window(&series, start, end, step);
        let summary = format!("verified `{query}` over {} evaluation(s)", check.checked);
        if check.no_data.is_empty() && check.false_at.is_empty() {
            Ok(Sent::Done(json!({"checked": check.checked, "summary": summary})))
        } else {
            let mut why = Vec::new();
            if let Some(t) = check.no_data.first() {
                why.push(format!("no data at {} of {} evaluation(s) (first {})", check.no_data.len(), check.checked, t.format("%H:%M:%S")));
            }
            if let Some(t) = check.false_at.first() {
                why.push(format!("false at {} of {} evaluation(s) (first {})", check.false_at.len(), check.checked, t.format("%H:%M:%S")));
            }
            Err(StepError::Failed(format!("verification `{query}` did not hold: {}", why.join("; "))))
        }
    }
}

/// What a verification window showed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WindowCheck {
    pub checked: usize,
    pub no_data: Vec<DateTime<Utc>>,
    pub false_at: Vec<DateTime<Utc>>,
}

/// Judge a window: at each evaluation time `start + k·step` up to `end`, the condition holds
/// when at least one series has a sample there and every sample there is finite and non-zero.
pub fn judge_window(series: &[Series], start: DateTime<Utc>, end: DateTime<Utc>, step: Duration) -> WindowCheck {
    let mut out = WindowCheck::default();
    let step_ms = (step.as_millis() as i64).max(1);
    let mut t = start;
    while t <= end {
        out.checked += 1;
        let at: Vec<f64> = series
            .iter()
            .filter_map(|s| s.points.iter().find(|(pt, _)| (pt.timestamp_millis() - t.timestamp_millis()).abs() < step_ms / 2 + 1).map(|(_, v)| *v))
            .collect();
        if at.is_empty() {
            out.no_data.push(t);
        } else if at.iter().any(|v| !v.is_finite() || *v == 0.0) {
            out.false_at.push(t);
        }
        match t.checked_add_signed(chrono::Duration::milliseconds(step_ms)) {
            Some(next) => t = next,
            None => break,
        }
    }
    out
}

/// The plan that undoes `plan`, for the actions that can be undone.
fn inverse(action: &str, plan: &Value) -> Option<Value> {
    match action {
        "scale" => Some(json!({"namespace": plan.get("namespace")?, "name": plan.get("name")?, "from": plan.get("to")?, "to": plan.get("from")?})),
        "rollback" => Some(json!({
            "namespace": plan.get("namespace")?, "name": plan.get("name")?,
            "from_revision": plan.get("to_revision")?, "to_revision": plan.get("from_revision")?,
        })),
        "cordon" => {
            let previous = plan.get("previous").and_then(Value::as_bool).unwrap_or(false);
            let now = plan.get("unschedulable").and_then(Value::as_bool).unwrap_or(true);
            (previous != now).then(|| json!({"node": plan.get("node"), "unschedulable": previous, "previous": now}))
        }
        "patch" => Some(json!({"namespace": plan.get("namespace")?, "name": plan.get("name")?, "patch": plan.get("inverse")?, "inverse": plan.get("patch")?})),
        _ => None,
    }
}

/// The strategic-merge patch that restores what `patch` changes in `current`: previous
/// values, `null` for fields that were absent, and `$patch: delete` for list items (matched by
/// `name`) that did not exist.
pub fn inverse_patch(patch: &Value, current: &Value) -> Value {
    match (patch, current) {
        (Value::Object(p), cur) => {
            let mut out = serde_json::Map::new();
            for (k, pv) in p {
                let cv = cur.get(k).unwrap_or(&Value::Null);
                if cv.is_null() && !pv.is_object() && !pv.is_array() {
                    out.insert(k.clone(), Value::Null);
                } else {
                    out.insert(k.clone(), inverse_patch(pv, cv));
                }
            }
            Value::Object(out)
        }
        (Value::Array(items), cur) if items.iter().all(|i| i.get("name").is_some()) => {
            let current_items = cur.as_array().cloned().unwrap_or_default();
            let undone = items
                .iter()
                .map(|item| {
                    let name = item.get("name").cloned().unwrap_or(Value::Null);
                    match current_items.iter().find(|c| c.get("name") == Some(&name)) {
                        Some(c) => {
                            let mut inv = inverse_patch(item, c);
                            if let Value::Object(m) = &mut inv {
                                m.insert("name".into(), name);
                            }
                            inv
                        }
                        None => json!({"name": name, "$patch": "delete"}),
                    }
                })
                .collect();
            Value::Array(undone)
        }
        (_, cur) => cur.clone(),
    }
}

/// Add `extra`'s keys to the object `detail`.
fn extend(detail: &mut Value, extra: &serde_json::Map<String, Value>) {
    if let Value::Object(m) = detail {
        for (k, v) in extra {
            m.insert(k.clone(), v.clone());
        }
    }
}

/// The result of a step whose answer was lost but whose effect reading back confirmed.
fn applied_after_all(action: &str, plan: &Value, now: DateTime<Utc>) -> Sent {
    let summary = format!("{} (the answer was lost; reading the object back showed it applied)", describe_plan(action, plan));
    let mut result = json!({"outcome": "unknown_resolved_applied", "summary": summary});
    if action == "run_job" {
        let poll = plan.get("poll_secs").and_then(Value::as_f64).unwrap_or(10.0);
        let wake = now + chrono::Duration::milliseconds((poll * 1000.0) as i64);
        let s = |k: &str| plan.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        result["job"] = json!(format!("{}/{}", s("namespace"), s("name")));
        return Sent::Wait(wake, result);
    }
    Sent::Done(result)
}

/// Whether `current` already has everything `patch` sets (a strategic-merge patch: `null`
/// removes a field, list items are matched by `name`, `$patch` directives are not checked).
fn contains(current: &Value, patch: &Value) -> bool {
    match (patch, current) {
        (Value::Null, cur) => cur.is_null(),
        (Value::Object(p), cur) => p.iter().filter(|(k, _)| !k.starts_with('$')).all(|(k, pv)| contains(cur.get(k).unwrap_or(&Value::Null), pv)),
        (Value::Array(items), Value::Array(cur)) if items.iter().all(|i| i.get("name").is_some()) => items
            .iter()
            .filter(|i| i.get("$patch").is_none())
            .all(|i| cur.iter().any(|c| c.get("name") == i.get("name") && contains(c, i))),
        (p, cur) => p == cur,
    }
}

fn is_mutating(action: &str) -> bool {
    matches!(action, "scale" | "rollback" | "restart" | "delete_pod" | "cordon" | "run_job" | "patch" | "http")
}

fn new_step(i: usize, s: &Step, phase: Phase) -> StepState {
    StepState {
        index: i,
        name: s.display_name(i),
        action: s.action().map(|a| a.key()).unwrap_or("invalid").to_string(),
        phase,
        status: StepStatus::Pending,
        idempotency_key: String::new(),
        plan: None,
        result: None,
        error: None,
        refusal: None,
        sends: 0,
        may_have_applied: false,
        started_at: None,
        finished_at: None,
        wake_at: None,
    }
}

fn step_mut(run: &mut Run, phase: Phase, i: usize) -> &mut StepState {
    match phase {
        Phase::Main => &mut run.steps[i],
        Phase::Revert => &mut run.revert_steps[i],
    }
}

fn workload(t: &Target) -> WorkloadRef {
    WorkloadRef::new(t.namespace.clone(), t.name.clone())
}

fn failure(f: StoreFailure) -> Error {
    save_err(f)
}

/// The part of an installation id that goes into Job names: its first 8 characters that
/// are lower-case letters or digits.
fn short_installation_id(id: &str) -> String {
    id.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_lowercase()).take(8).collect()
}

/// A DNS-1123 Job name: `<prefix>-<suffix>`, lower case, at most 63 characters.
fn job_name(prefix: &str, suffix: &str) -> String {
    let clean: String = prefix
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '-' })
        .collect();
    let room = 63usize.saturating_sub(suffix.len() + 1);
    let head: String = clean.chars().take(room).collect();
    format!("{}-{suffix}", head.trim_matches('-'))
}

/// The planned steps in words (for approval requests).
fn plan_text(run: &Run) -> String {
    run.steps
        .iter()
        .enumerate()
        .map(|(i, s)| match s.result.as_ref().and_then(|r| r.get("preview")) {
            Some(p) => format!("{}. {}", i + 1, describe_plan(&s.action, p)),
            None => format!("{}. {}", i + 1, s.action),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// One step's plan in words: what would be sent.
pub fn describe_plan(action: &str, plan: &Value) -> String {
    let s = |k: &str| plan.get(k).map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())).unwrap_or_default();
    let target = format!("{}/{}", s("namespace"), s("name"));
    match action {
        "scale" => format!("scale {target} from {} to {} replicas", s("from"), s("to")),
        "rollback" => format!("roll {target} back from revision {} to {}", s("from_revision"), s("to_revision")),
        "restart" => format!("restart {target}"),
        "delete_pod" => {
            let names: Vec<String> = plan
                .get("pods")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|p| p.get("name").and_then(Value::as_str).map(str::to_string)).collect())
                .unwrap_or_default();
            format!("delete pod(s) {} in {}", names.join(", "), s("namespace"))
        }
        "cordon" if plan.get("unschedulable") == Some(&Value::Bool(false)) => format!("uncordon node {}", s("node")),
        "cordon" => format!("cordon node {}", s("node")),
        "run_job" => format!("run Job {target} and wait for it"),
        "patch" => format!("patch {target} with {}", plan.get("patch").cloned().unwrap_or(Value::Null)),
        "http" => {
            let call = plan.get("call").cloned().unwrap_or(Value::Null);
            format!("{} {}", call.get("method").and_then(Value::as_str).unwrap_or("POST"), call.get("url").and_then(Value::as_str).unwrap_or(""))
        }
        "wait" => "wait".into(),
        "verify" => format!("verify `{}`", s("query")),
        "notify" => "notify".into(),
        other => other.to_string(),
    }
}

/// One line on how a run ended.
pub fn finished_text(run: &Run) -> String {
    let done = run.summary();
    let mut text = format!("run {} of {}: {}", run.id, run.title(), run.status);
    if !done.is_empty() {
        text.push_str(&format!(" ({done})"));
    }
    if let Some(r) = &run.reason {
        if !matches!(run.status, RunStatus::Succeeded) {
            text.push_str(&format!(": {r}"));
        }
    }
    text
}
