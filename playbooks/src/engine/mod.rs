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
//!
//! The engine knows no action by name: what a step does is its action's
//! ([`crate::actions`]). This module starts and claims runs; `step` advances one step
//! under the error policy; `ports` are the seams to the outside.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use warden_connectors::prometheus::MetricSource;

use crate::actions::StepError;
use crate::audit::{AuditEvent, AuditKind};
use crate::claim::{new_owner, ClaimDecision, RunClaim, CLAIM_RENEW_EVERY, CLAIM_TTL};
use crate::cluster::Cluster;
use crate::guards::{self, GuardName, GuardSettings, Refusal};
use crate::params::resolve_params;
use crate::policy::RetryPolicy;
use crate::run::{Approval, Phase, Run, RunStatus, Target};
use crate::spec::{Autonomy, TargetKind};
use crate::{Error, Result};

mod ports;
mod step;
#[cfg(test)]
mod tests;
mod text;

pub use crate::actions::patch::inverse_patch;
pub use crate::actions::verify::{judge_window, WindowCheck};
pub use ports::{
    FenceGrant, FenceRefused, Fencing, HistoryQuery, HttpCall, HttpReply, Notice, Notices, RunStore, RunStoreError,
    Source, StartRequest, StoreResult, Webhook, WebhookError,
};
pub use text::{describe_plan, finished_text};

use step::new_step;
use text::plan_text;

/// The engine. Cheap to share; every collaborator is behind a trait.
#[derive(Clone)]
pub struct Engine {
    pub cluster: Option<Arc<dyn Cluster>>,
    /// Where `verify` steps query: the watches' PromQL source.
    pub metrics: Option<Arc<dyn MetricSource>>,
    pub webhook: Option<Arc<dyn Webhook>>,
    pub notices: Arc<dyn Notices>,
    pub store: Arc<dyn RunStore>,
    /// Global guard defaults (`playbooks.guards` in `warden.yaml`).
    pub defaults: GuardSettings,
    /// Retries of failed cluster requests (see [`crate::policy`]).
    pub retry: RetryPolicy,
    /// The leader-election fence checked before every request a step sends; `None`: no
    /// check (a single process, the CLI, tests).
    pub fencing: Option<Arc<dyn Fencing>>,
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

fn save_err(f: RunStoreError) -> Error {
    match f {
        RunStoreError::Fenced(f) => Error::Fenced(f),
        other => Error::Store(other),
    }
}

fn audit(run: &Run, at: DateTime<Utc>, kind: AuditKind, actor: &str, detail: Value) -> AuditEvent {
    AuditEvent::new(at, (run.id > 0).then_some(run.id), kind, actor, detail)
}

impl Engine {
    /// Start a run: check parameters and target, apply the run guards and the autonomy
    /// level, store it, and (when it may act now) advance it as far as the clock allows.
    /// Errors are for requests that cannot become a run at all (unknown parameter, missing
    /// target); a guard's refusal is a stored run with status `refused`.
    pub async fn start(&self, req: StartRequest) -> Result<Run> {
        let mut run = self.new_run(&req)?;
        let now = req.now;
        let mut events = vec![audit(
            &run,
            now,
            AuditKind::Trigger,
            &req.trigger.actor,
            json!({"playbook": run.playbook, "trigger": req.trigger, "target": req.target, "params": run.params, "dry_run": run.dry_run}),
        )];
        match self.run_guards(&run, req.has_data, now).await {
            Ok(()) => {}
            Err(StepError::Refused(r)) => return self.store_refused(run, events, r, now).await,
            Err(e) => {
                run.status = RunStatus::Failed;
                run.reason = Some(format!("cannot check the guards: {}", e.settled().message()));
                events.push(audit(
                    &run,
                    now,
                    AuditKind::State,
                    "warden",
                    json!({"status": "failed", "reason": run.reason}),
                ));
                let claim = self.store.insert_run(&run, &events, &new_owner()).map_err(save_err)?;
                let _held = self.hold(claim.clone());
                run.id = claim.run_id;
                self.notices.notice(&run, Notice::Finished, &text::finished_text(&run));
                return Ok(run);
            }
        }
        let autonomy = run.guards.autonomy;
        events.push(audit(
            &run,
            now,
            AuditKind::Guard,
            "warden",
            json!({"allowed": true, "autonomy": autonomy.as_str()}),
        ));
        match autonomy {
            Autonomy::Observe => self.start_observed(run, events, now).await,
            Autonomy::Recommend if !run.dry_run => self.start_for_approval(run, events, now).await,
            _ => self.start_acting(run, events, now).await,
        }
    }

    /// The run a request asks for, before any guard: parameters resolved, the target
    /// checked against the playbook, the template variables fixed.
    fn new_run(&self, req: &StartRequest) -> Result<Run> {
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
        Ok(Run {
            id: 0,
            playbook: pb.name.clone(),
            spec: pb.clone(),
            params,
            target: req.target.clone(),
            trigger: req.trigger.clone(),
            vars,
            guards: settings,
            dry_run,
            status: RunStatus::Running,
            reason: None,
            refusal: None,
            approval: None,
            steps: pb.steps.iter().enumerate().map(|(i, s)| new_step(i, s, Phase::Main)).collect(),
            revert_steps: Vec::new(),
            acted: false,
            created_at: req.now,
            updated_at: req.now,
            wake_at: None,
        })
    }

    /// Autonomy `observe`: the plan is recorded, nothing is sent.
    async fn start_observed(&self, mut run: Run, events: Vec<AuditEvent>, now: DateTime<Utc>) -> Result<Run> {
        run.status = RunStatus::Observed;
        run.reason = Some("autonomy is observe: the plan is recorded, nothing is sent".into());
        let claim = self.store.insert_run(&run, &events, &new_owner()).map_err(save_err)?;
        let _held = self.hold(claim.clone());
        run.id = claim.run_id;
        self.set_keys(&mut run);
        self.preview(&mut run, now).await;
        self.save(&run, &[], &claim)?;
        self.notices.notice(&run, Notice::Finished, &finished_text(&run));
        Ok(run)
    }

    /// Autonomy `recommend`: the run waits for a person's approval until it expires.
    async fn start_for_approval(&self, mut run: Run, mut events: Vec<AuditEvent>, now: DateTime<Utc>) -> Result<Run> {
        let expires_at = crate::time::after(now, run.guards.approval_ttl)
            .ok_or_else(|| Error::TimeOutOfRange { what: "the approval expiry (guards.approval_ttl)".into() })?;
        run.status = RunStatus::AwaitingApproval;
        run.approval = Some(Approval {
            requested_at: now,
            expires_at,
            decided_by: None,
            decided_at: None,
            approved: None,
            comment: None,
        });
        run.wake_at = Some(expires_at);
        events.push(audit(
            &run,
            now,
            AuditKind::Approval,
            "warden",
            json!({"requested": true, "expires_at": expires_at}),
        ));
        let claim = match self.store.insert_run(&run, &events, &new_owner()) {
            Ok(c) => c,
            Err(RunStoreError::TargetBusy { run_id }) => return self.store_busy(run, run_id, now).await,
            Err(f) => return Err(save_err(f)),
        };
        let _held = self.hold(claim.clone());
        run.id = claim.run_id;
        self.set_keys(&mut run);
        self.preview(&mut run, now).await;
        self.save(&run, &[], &claim)?;
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

    /// Autonomy `auto` (or a dry run): act now, as far as the clock allows.
    async fn start_acting(&self, mut run: Run, events: Vec<AuditEvent>, now: DateTime<Utc>) -> Result<Run> {
        // The run is inserted claimed: the ticker, which sees it as due at once, leaves it
        // to this task.
        let claim = match self.store.insert_run(&run, &events, &new_owner()) {
            Ok(c) => c,
            Err(RunStoreError::TargetBusy { run_id }) => return self.store_busy(run, run_id, now).await,
            Err(f) => return Err(save_err(f)),
        };
        let held = self.hold(claim);
        run.id = held.claim.run_id;
        self.set_keys(&mut run);
        self.save(&run, &[], &held.claim)?;
        self.drive(held, now).await
    }

    /// Approve or deny a run that waits for approval. An expired request is not approved:
    /// the run becomes `expired`.
    pub async fn decide(
        &self,
        id: i64,
        approver: &str,
        approve: bool,
        comment: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<Run> {
        let held = match self.store.claim_run(id, &new_owner(), CLAIM_TTL).map_err(Error::Store)? {
            ClaimDecision::Granted(c) => self.hold(c),
            ClaimDecision::Held { .. } => {
                return Err(Error::Invalid(format!(
                    "run {id} is being advanced by another task; try again in a moment"
                )))
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
        run.wake_at = None;
        if approve {
            run.status = RunStatus::Running;
            run.reason = Some(format!("approved by {approver}"));
            self.save(&run, &[audit(&run, now, AuditKind::Approval, approver, detail)], claim)?;
            self.drive(held, now).await
        } else {
            run.status = RunStatus::Denied;
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
        self.store.due_runs(now).map_err(Error::Store)
    }

    /// Advance one run as far as the clock allows, when no other task holds it. A run
    /// another task holds is returned as stored, unchanged.
    pub async fn advance(&self, id: i64, now: DateTime<Utc>) -> Result<Run> {
        match self.store.claim_run(id, &new_owner(), CLAIM_TTL).map_err(Error::Store)? {
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

    /// Advance a run whose claim is held (see [`Self::drive_held`]). A request the fence
    /// refused ([`Fencing`]) stops the run where it is, with nothing sent and nothing
    /// marked failed: the run as stored is returned, and it is taken up again by the
    /// leader's next tick.
    async fn drive(&self, held: ClaimGuard, now: DateTime<Utc>) -> Result<Run> {
        let id = held.claim.run_id;
        match self.drive_held(held, now).await {
            Err(Error::Lease(why)) => {
                if why.is_transient() {
                    tracing::info!(run = id, reason = %why, "a request waits for the next lease renew");
                } else {
                    tracing::info!(run = id, reason = %why, "stopped before a request: the run waits for the leader");
                }
                self.load(id)
            }
            other => other,
        }
    }

    /// Advance a run whose claim is held, renewing the claim while the work lasts. When a
    /// renewal finds the claim taken (this task stalled past its expiry), the work stops
    /// at once: another task advances the run now.
    async fn drive_held(&self, held: ClaimGuard, now: DateTime<Utc>) -> Result<Run> {
        let claim = &held.claim;
        let work = self.advance_held(claim, now);
        tokio::pin!(work);
        let mut renew = tokio::time::interval_at(tokio::time::Instant::now() + CLAIM_RENEW_EVERY, CLAIM_RENEW_EVERY);
        loop {
            tokio::select! {
                r = &mut work => return r,
                _ = renew.tick() => match self.store.renew_claim(claim, CLAIM_TTL) {
                    Ok(()) => {}
                    Err(RunStoreError::Fenced(f)) => {
                        tracing::warn!(run = claim.run_id, error = %f, "lost the run's claim: stopping");
                        return Err(Error::Fenced(f));
                    }
                    Err(e) => tracing::warn!(run = claim.run_id, error = %e, "renewing the run's claim"),
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
        self.store.get_run(id).map_err(Error::Store)?.ok_or_else(|| Error::Invalid(format!("no run {id}")))
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

    async fn store_refused(
        &self,
        mut run: Run,
        mut events: Vec<AuditEvent>,
        r: Refusal,
        now: DateTime<Utc>,
    ) -> Result<Run> {
        run.status = RunStatus::Refused;
        run.reason = Some(r.to_string());
        events.push(audit(
            &run,
            now,
            AuditKind::Guard,
            "warden",
            json!({"allowed": false, "guard": r.guard, "reason": r.reason}),
        ));
        run.refusal = Some(r);
        for s in run.steps.iter_mut() {
            s.status = crate::run::StepStatus::Skipped;
        }
        let claim = self.store.insert_run(&run, &events, &new_owner()).map_err(save_err)?;
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
        let events =
            vec![audit(&run, now, AuditKind::Trigger, &run.trigger.actor.clone(), json!({"playbook": run.playbook}))];
        self.store_refused(run, events, r, now).await
    }

    /// The run guards: namespace, protection (from the target's labels), cooldown, attempts,
    /// rates, no data.
    async fn run_guards(
        &self,
        run: &Run,
        has_data: Option<bool>,
        now: DateTime<Utc>,
    ) -> std::result::Result<(), StepError> {
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
                let cluster = self
                    .cluster
                    .as_deref()
                    .ok_or_else(|| StepError::Failed("no Kubernetes cluster is configured".into()))?;
                labels = cluster.deployment_info(&crate::actions::workload(t)).await?.labels;
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
        let history = self.store.history(&q).map_err(|e| StepError::Failed(e.to_string()))?;
        guards::check_run(s, namespace.as_deref(), &labels, has_data, &history, now).map_err(StepError::Refused)
    }
}
