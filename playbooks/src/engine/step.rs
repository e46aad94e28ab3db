//! One step forward: plan, store, send under the error policy, record the answer; and what
//! follows a failure (the revert) or the last step.
//!
//! The error policy ([`crate::policy`]) is applied here, once, for every action: an action
//! reports a failed cluster request as [`StepError::Cluster`] and this module retries it,
//! reads the object back or fails the step according to the request's class.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::{audit, Engine, FenceGrant, FenceRefused, Notice};
use crate::actions::{self, Ctx, Plan, Planned, Sent, StepError};
use crate::audit::{AuditEvent, AuditKind};
use crate::claim::RunClaim;
use crate::cluster::{ClusterError, ClusterErrorKind};
use crate::guards::{self, Refusal};
use crate::run::{Phase, Run, RunStatus, StepState, StepStatus};
use crate::spec::Step;
use crate::{Error, Result};

/// Where a step is: its phase, its index in that phase's list, and the engine's clock.
#[derive(Debug, Clone, Copy)]
pub(super) struct At {
    pub phase: Phase,
    pub index: usize,
    pub now: DateTime<Utc>,
}

/// Sending or polling a step: its answer, or why it did not complete.
type Outcome = std::result::Result<Sent, StepError>;

impl Engine {
    /// What an action may use for the step at `at` of `run`.
    fn ctx<'a>(&'a self, run: &'a Run, at: At, key: &'a str) -> Ctx<'a> {
        Ctx {
            run,
            cluster: self.cluster.as_deref(),
            metrics: self.metrics.as_deref(),
            webhook: self.webhook.as_deref(),
            notices: self.notices.as_ref(),
            store: self.store.as_ref(),
            now: at.now,
            phase: at.phase,
            index: at.index,
            key,
        }
    }

    /// For observe and approval: plan every step that can be planned now (reads only).
    pub(super) async fn preview(&self, run: &mut Run, now: DateTime<Utc>) {
        for i in 0..run.steps.len() {
            let step = run.spec.steps.get(i).cloned().unwrap_or_default();
            let at = At { phase: Phase::Main, index: i, now };
            let planned = self.plan_step(run, &step, at).await.map_err(StepError::settled);
            let st = &mut run.steps[i];
            match planned {
                Ok(Planned::Request(p)) => st.plan = Some(p.to_json()),
                Ok(Planned::Skip(r)) => st.result = Some(json!({"summary": r})),
                Err(StepError::Refused(r)) => st.refusal = Some(r),
                Err(e) => st.error = Some(e.message()),
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
    pub(super) async fn step_once(
        &self,
        run: &mut Run,
        phase: Phase,
        now: DateTime<Utc>,
        claim: &RunClaim,
    ) -> Result<bool> {
        let list = match phase {
            Phase::Main => &run.steps,
            Phase::Revert => &run.revert_steps,
        };
        let Some(index) = list.iter().position(|s| !matches!(s.status, StepStatus::Done | StepStatus::Skipped)) else {
            return self.finish_phase(run, phase, now, claim).map(|_| false);
        };
        let state = list[index].clone();
        let at = At { phase, index, now };
        // Failed attempts and how unknown outcomes were resolved, for the audit.
        let mut attempts: Vec<Value> = Vec::new();
        let outcome = match state.status {
            StepStatus::Pending => match self.start_step(run, at, &state, claim, &mut attempts).await? {
                Some(outcome) => outcome,
                None => return Ok(true),
            },
            StepStatus::Running => self.resume_step(run, at, &state, claim, &mut attempts).await?,
            StepStatus::Waiting => {
                if let Some(w) = state.wake_at.filter(|w| *w > now) {
                    run.wake_at = Some(w);
                    run.updated_at = now;
                    self.save(run, &[], claim)?;
                    return Ok(false);
                }
                self.poll_step(run, at, &state, &mut attempts).await
            }
            StepStatus::Failed => {
                // A failed step whose run was not moved on (should not happen): move it on now.
                return self.after_failure(run, phase, now, claim).map(|_| true);
            }
            StepStatus::Done | StepStatus::Skipped => return Ok(true),
        };
        self.record(run, at, &state, outcome, attempts, claim)?;
        Ok(true)
    }

    /// A pending step: plan it (or take the plan an automatic revert step carries), store
    /// the plan, then send it. `None` when the step ended without a request (skipped, or a
    /// revert step refused).
    async fn start_step(
        &self,
        run: &mut Run,
        at: At,
        state: &StepState,
        claim: &RunClaim,
        attempts: &mut Vec<Value>,
    ) -> Result<Option<Outcome>> {
        let spec = match at.phase {
            Phase::Main => run.spec.steps.get(at.index).cloned(),
            Phase::Revert => run.spec.revert.as_ref().and_then(|r| r.get(at.index).cloned()),
        };
        let planned = match (&state.plan, &spec) {
            // Automatic revert steps carry their plan from the start.
            (Some(p), _) => decode(&state.action, p).map(Planned::Request),
            (None, Some(spec)) => self.plan_retrying(run, spec, at, attempts).await,
            (None, None) => Err(StepError::Failed("the step has neither a plan nor a definition".into())),
        };
        let plan = match planned {
            Ok(Planned::Request(plan)) => plan,
            Ok(Planned::Skip(reason)) => {
                let st = step_mut(run, at.phase, at.index);
                st.status = StepStatus::Skipped;
                st.result = Some(json!({"summary": reason}));
                st.finished_at = Some(at.now);
                let ev = audit(run, at.now, AuditKind::State, "warden", json!({"step": state.name, "skipped": reason}));
                run.updated_at = at.now;
                self.save(run, &[ev], claim)?;
                return Ok(None);
            }
            Err(e) => return Ok(Some(Err(e))),
        };
        if at.phase == Phase::Revert {
            if let Err(r) = revert_guard(run, &plan) {
                self.fail_step(run, at, StepError::Refused(r), claim)?;
                return Ok(None);
            }
        }
        let stored = plan.to_json();
        {
            let st = step_mut(run, at.phase, at.index);
            st.status = StepStatus::Running;
            st.plan = Some(stored.clone());
            st.started_at = Some(at.now);
            st.sends += 1;
        }
        run.updated_at = at.now;
        let ev = audit(
            run,
            at.now,
            AuditKind::Request,
            "warden",
            json!({"step": state.name, "action": state.action, "phase": at.phase, "idempotency_key": state.idempotency_key, "plan": stored, "dry_run": run.dry_run}),
        );
        // The plan is stored (under the claim, with the request entry) before it is sent,
        // and what is sent is exactly the stored plan.
        let sent = self.send_retrying(run, at, &plan, &state.idempotency_key, attempts, Some(ev), claim).await?;
        Ok(Some(sent))
    }

    /// A step found `running`: the task that sent it stopped (a crash, a cancelled task, a
    /// lost claim). The request may or may not have reached the cluster; the stored plan is
    /// idempotent, so it is sent again, never re-planned (unless its action says it must not
    /// be sent twice: then its outcome is unknown).
    async fn resume_step(
        &self,
        run: &mut Run,
        at: At,
        state: &StepState,
        claim: &RunClaim,
        attempts: &mut Vec<Value>,
    ) -> Result<Outcome> {
        let stored = state.plan.clone().unwrap_or(Value::Null);
        step_mut(run, at.phase, at.index).sends += 1;
        let ev = audit(
            run,
            at.now,
            AuditKind::Request,
            "warden",
            json!({"step": state.name, "action": state.action, "idempotency_key": state.idempotency_key, "plan": stored, "resumed": true}),
        );
        let plan = match decode(&state.action, &stored) {
            Ok(p) => p,
            Err(e) => {
                self.save(run, &[ev], claim)?;
                return Ok(Err(e));
            }
        };
        match plan.interrupted() {
            Some(why) if !run.dry_run => {
                // Nothing is sent: its outcome is settled as unknown.
                self.save(run, &[ev], claim)?;
                Ok(Err(StepError::Unknown(why.to_string())))
            }
            _ => self.send_retrying(run, at, &plan, &state.idempotency_key, attempts, Some(ev), claim).await,
        }
    }

    /// A waiting step whose time has come: look at it again, retrying reads that fail
    /// transiently.
    async fn poll_step(&self, run: &Run, at: At, state: &StepState, attempts: &mut Vec<Value>) -> Outcome {
        let plan = decode(&state.action, state.plan.as_ref().unwrap_or(&Value::Null))?;
        let cx = self.ctx(run, at, &state.idempotency_key);
        let mut delays = self.retry.delays();
        loop {
            match plan.poll(&cx).await {
                Err(StepError::Cluster(e)) if e.kind.is_retryable() => match delays.next() {
                    Some(d) => {
                        attempts
                            .push(json!({"class": e.kind.as_str(), "error": e.message, "retry_in_ms": d.as_millis()}));
                        tokio::time::sleep(d).await;
                    }
                    None => return Err(StepError::Cluster(e)),
                },
                other => return other,
            }
        }
    }

    /// Record a step's answer: done, waiting, or failed (then what a failure leads to).
    fn record(
        &self,
        run: &mut Run,
        at: At,
        state: &StepState,
        outcome: Outcome,
        attempts: Vec<Value>,
        claim: &RunClaim,
    ) -> Result<()> {
        let mutating = actions::is_mutating(&state.action);
        let (result, wake, kind) = match outcome {
            Ok(Sent::Done(result)) => (result, None, actions::audit_kind(&state.action)),
            Ok(Sent::Wait(until, result)) => (result, Some(until), AuditKind::Response),
            Err(e) => {
                if !attempts.is_empty() {
                    step_mut(run, at.phase, at.index).result = Some(json!({"attempts": attempts}));
                }
                return self.fail_step(run, at, e.settled(), claim);
            }
        };
        {
            let st = step_mut(run, at.phase, at.index);
            st.status = if wake.is_some() { StepStatus::Waiting } else { StepStatus::Done };
            st.result = Some(result.clone());
            st.wake_at = wake;
            if wake.is_none() {
                st.finished_at = Some(at.now);
            }
        }
        if mutating && !run.dry_run && at.phase == Phase::Main {
            run.acted = true;
        }
        run.wake_at = wake;
        run.updated_at = at.now;
        let mut detail = match wake {
            None => json!({"step": state.name, "ok": true, "result": result}),
            Some(until) => json!({"step": state.name, "waiting_until": until, "result": result}),
        };
        if !attempts.is_empty() {
            detail["attempts"] = Value::Array(attempts);
        }
        let ev = audit(run, at.now, kind, "warden", detail);
        self.save(run, &[ev], claim)
    }

    /// Turn a step into its plan (its action's [`crate::actions::Action::plan`]).
    async fn plan_step(&self, run: &Run, step: &Step, at: At) -> std::result::Result<Planned<Plan>, StepError> {
        let Some(action) = step.action() else {
            return Err(StepError::Failed("the step does not have exactly one action".into()));
        };
        action.plan(&self.ctx(run, at, "")).await
    }

    /// Plan a step, retrying the reads it makes when they fail transiently.
    async fn plan_retrying(
        &self,
        run: &Run,
        spec: &Step,
        at: At,
        attempts: &mut Vec<Value>,
    ) -> std::result::Result<Planned<Plan>, StepError> {
        let mut delays = self.retry.delays();
        loop {
            match self.plan_step(run, spec, at).await {
                Err(StepError::Cluster(e)) if e.kind.is_retryable() => match delays.next() {
                    Some(d) => {
                        attempts
                            .push(json!({"planning": true, "class": e.kind.as_str(), "error": e.message, "retry_in_ms": d.as_millis()}));
                        tokio::time::sleep(d).await;
                    }
                    None => return Err(StepError::Cluster(e)),
                },
                other => return other,
            }
        }
    }

    /// The fencing rule, in one place: before every request of a step that changes
    /// something outside Warden (a cluster write, an `http` call), the lease must cover the
    /// request's timeout (an `http` step's own, else the cluster client's). Steps that
    /// only read or wait, and engines without [`Fencing`], are not checked.
    fn fence(&self, plan: &Plan) -> std::result::Result<FenceGrant, FenceRefused> {
        let Some(fencing) = self.fencing.as_deref() else { return Ok(FenceGrant::default()) };
        if !plan.kind().is_mutating() {
            return Ok(FenceGrant::default());
        }
        let needed = plan.request_timeout().unwrap_or_else(|| fencing.cluster_write_timeout());
        fencing.check(needed)
    }

    /// Send a step's plan under the error policy ([`crate::policy`]): transient errors and
    /// conflicts are retried after re-reading the object; an unknown outcome is resolved by
    /// reading the object back. An action that must not be retried (the `http` step) answers
    /// its failures as [`StepError::Unknown`] or [`StepError::Failed`], which end at once.
    ///
    /// Every attempt is fenced first ([`Self::fence`]) and abandoned when it outlasts the
    /// lease's validity; a refusal stops the run with [`Error::Lease`], leaving the step as
    /// stored (pending, or running with its plan for the next leader to resume). `request`,
    /// the step's request entry, is stored with the first attempt's fence just before it.
    #[allow(clippy::too_many_arguments)]
    async fn send_retrying(
        &self,
        run: &Run,
        at: At,
        plan: &Plan,
        key: &str,
        attempts: &mut Vec<Value>,
        mut request: Option<AuditEvent>,
        claim: &RunClaim,
    ) -> Result<Outcome> {
        let cx = self.ctx(run, at, key);
        let mut delays = self.retry.delays();
        // Whether an attempt may have been applied (an unknown outcome not resolved as
        // applied): then a final failure is "may have applied", never "nothing changed".
        let mut may_have_applied = false;
        loop {
            let grant = self.fence(plan)?;
            if let Some(mut ev) = request.take() {
                ev.fence = grant.record.clone();
                self.save(run, &[ev], claim)?;
            }
            let applied = match grant.valid_for {
                None => plan.apply(&cx).await,
                Some(limit) => match tokio::time::timeout(limit, plan.apply(&cx)).await {
                    Ok(r) => r,
                    Err(_) => {
                        return Err(Error::Lease(FenceRefused::NotLeader(format!(
                            "the request outlasted the lease's validity ({limit:?}); it is resumed from its stored plan"
                        ))))
                    }
                },
            };
            let err = match applied {
                Ok(sent) => return Ok(Ok(sent)),
                Err(StepError::Cluster(e)) => e,
                Err(other) => return Ok(Err(other)),
            };
            let mut entry = json!({"class": err.kind.as_str(), "error": err.message});
            let retry = if err.kind.may_have_applied() && !run.dry_run {
                may_have_applied = true;
                match self.read_back(plan).await {
                    Ok(Some(true)) => {
                        entry["resolved"] = json!("applied");
                        attempts.push(entry);
                        return Ok(Ok(plan.applied_after_all(at.now)));
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
                return Ok(Err(if may_have_applied {
                    StepError::Cluster(ClusterError::new(ClusterErrorKind::UnknownOutcome, err.message))
                } else {
                    StepError::Cluster(err)
                }));
            };
            entry["retry_in_ms"] = json!(delay.as_millis());
            attempts.push(entry);
            tokio::time::sleep(delay).await;
            // Re-read first: an earlier attempt may have been applied after all.
            if !run.dry_run {
                if let Ok(Some(true)) = self.read_back(plan).await {
                    attempts.push(json!({"resolved": "applied", "on": "re-reading before the next attempt"}));
                    return Ok(Ok(plan.applied_after_all(at.now)));
                }
            }
        }
    }

    /// Whether the cluster is in the state `plan` asks for (see
    /// [`crate::actions::Action::read_back`]); `None` without a cluster.
    async fn read_back(&self, plan: &Plan) -> std::result::Result<Option<bool>, ClusterError> {
        match self.cluster.as_deref() {
            Some(cluster) => plan.read_back(cluster).await,
            None => Ok(None),
        }
    }

    fn fail_step(&self, run: &mut Run, at: At, e: StepError, claim: &RunClaim) -> Result<()> {
        let e = e.settled();
        let now = at.now;
        let attempts = step_mut(run, at.phase, at.index).result.as_ref().and_then(|r| r.get("attempts")).cloned();
        let (mut detail, refusal) = match &e {
            StepError::Refused(r) => (json!({"allowed": false, "guard": r.guard, "reason": r.reason}), Some(r.clone())),
            StepError::Unknown(m) => {
                (json!({"ok": false, "outcome": "unknown", "may_have_applied": true, "error": m}), None)
            }
            other => (json!({"ok": false, "error": other.message()}), None),
        };
        if let Some(a) = attempts {
            detail["attempts"] = a;
        }
        let unknown = matches!(e, StepError::Unknown(_));
        let (name, action) = {
            let st = step_mut(run, at.phase, at.index);
            st.status = StepStatus::Failed;
            st.finished_at = Some(now);
            st.wake_at = None;
            match &e {
                StepError::Refused(r) => st.refusal = Some(r.clone()),
                other => st.error = Some(other.message()),
            }
            if unknown {
                st.may_have_applied = true;
            }
            (st.name.clone(), st.action.clone())
        };
        // A request that may have applied counts as acted: for cooldowns, rate caps and the
        // blast radius, and for the revert.
        if unknown && !run.dry_run && at.phase == Phase::Main && actions::is_mutating(&action) {
            run.acted = true;
        }
        let kind = match &e {
            StepError::Refused(_) => AuditKind::Guard,
            _ => actions::audit_kind(&action),
        };
        detail["step"] = json!(name);
        let ev = audit(run, now, kind, "warden", detail);
        if run.refusal.is_none() && !run.acted {
            run.refusal = refusal;
        }
        run.reason = Some(match &e {
            StepError::Refused(r) => format!("step {name}: {r}"),
            StepError::Unknown(m) => format!("step {name}: {m}"),
            other => format!("step {name} failed: {}", other.message()),
        });
        run.updated_at = now;
        self.save(run, &[ev], claim)?;
        self.after_failure(run, at.phase, now, claim)
    }

    /// A failed step: revert what was applied, or end the run.
    pub(super) fn after_failure(
        &self,
        run: &mut Run,
        phase: Phase,
        now: DateTime<Utc>,
        claim: &RunClaim,
    ) -> Result<()> {
        run.wake_at = None;
        match phase {
            Phase::Main if run.acted => {
                run.revert_steps = revert_steps(run);
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
                let text =
                    format!("run {} of {}: {}; reverting", run.id, run.title(), run.reason.clone().unwrap_or_default());
                self.notices.notice(run, Notice::Reverting, &text);
            }
            Phase::Main => {
                run.status = if run.refusal.is_some() { RunStatus::Refused } else { RunStatus::Failed };
                let ev =
                    audit(run, now, AuditKind::State, "warden", json!({"status": run.status, "reason": run.reason}));
                self.save(run, &[ev], claim)?;
                self.notices.notice(run, Notice::Finished, &super::finished_text(run));
            }
            Phase::Revert => {
                run.status = RunStatus::RevertFailed;
                let ev = audit(run, now, AuditKind::Revert, "warden", json!({"finished": false, "reason": run.reason}));
                self.save(run, &[ev], claim)?;
                self.notices.notice(run, Notice::Finished, &super::finished_text(run));
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
        self.notices.notice(run, Notice::Finished, &super::finished_text(run));
        Ok(())
    }
}

/// A stored plan, typed; a plan that does not decode fails the step without acting.
fn decode(action: &str, stored: &Value) -> std::result::Result<Plan, StepError> {
    Plan::decode(action, stored).map_err(|e| StepError::Failed(e.to_string()))
}

/// The revert steps: the declared ones, or the inverse of every applied action, newest
/// first. Actions that cannot be undone are listed as skipped, so the operator sees them.
fn revert_steps(run: &Run) -> Vec<StepState> {
    if let Some(declared) = &run.spec.revert {
        return declared.iter().enumerate().map(|(i, s)| new_step(i, s, Phase::Revert)).collect();
    }
    let mut out = Vec::new();
    for st in run.steps.iter().rev() {
        // Applied steps, and failed ones that may have applied (an unknown outcome).
        let applied = matches!(st.status, StepStatus::Done | StepStatus::Waiting | StepStatus::Running)
            || (st.status == StepStatus::Failed && st.may_have_applied);
        if !applied || !actions::is_mutating(&st.action) {
            continue;
        }
        let mut rs = blank_step(out.len(), format!("undo-{}", st.name), st.action.clone(), Phase::Revert);
        let inverse = st.plan.as_ref().and_then(|p| Plan::decode(&st.action, p).ok()).and_then(|p| p.inverse());
        match inverse {
            Some(p) => rs.plan = Some(p.to_json()),
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
fn revert_guard(run: &Run, plan: &Plan) -> std::result::Result<(), Refusal> {
    match plan.namespace() {
        Some(ns) => guards::check_namespace(&run.guards, ns),
        None => Ok(()),
    }
}

fn blank_step(index: usize, name: String, action: String, phase: Phase) -> StepState {
    StepState {
        index,
        name,
        action,
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

pub(super) fn new_step(i: usize, s: &Step, phase: Phase) -> StepState {
    blank_step(i, s.display_name(i), s.action().map(|a| a.key()).unwrap_or("invalid").to_string(), phase)
}

fn step_mut(run: &mut Run, phase: Phase, i: usize) -> &mut StepState {
    match phase {
        Phase::Main => &mut run.steps[i],
        Phase::Revert => &mut run.revert_steps[i],
    }
}
