//! Actions as typed components: one file per action, one registration line each.
//!
//! Every action a step can take (`scale:`, `rollback:`, ...) is a type implementing
//! [`Action`]: its YAML form (checked at load time), how it turns into a typed, serialisable
//! plan (reads only), how that plan is applied, looked at again, read back when an answer was
//! lost, undone and put into words. The engine knows no action by name: it runs the
//! contract below for whichever action a step declares.
//!
//! The contract every action keeps (written out in `docs/specs/action.md` and checked for
//! every registered action by the harness in `spec_harness.rs`):
//!
//! * **idempotent**: applying a stored plan a second time changes nothing more (the plan
//!   names absolute states: replicas, a revision, a pod uid, a Job name);
//! * **fenced**: an action never writes the run; the engine stores the plan under the run's
//!   claim before [`Action::apply`] is called and the answer after it;
//! * **classified failures**: a failed cluster request is returned as
//!   [`StepError::Cluster`] and the error policy ([`crate::policy`]) decides once, for every
//!   action, whether it is retried (transient, conflict), resolved by reading back (unknown
//!   outcome) or fails at once; an action that must not be retried (a webhook) answers
//!   [`StepError::Unknown`] (may have applied) or [`StepError::Failed`] (did not act) itself;
//! * **read-back**: a mutating action whose effect can be observed answers
//!   [`Action::read_back`], so an unknown outcome is resolved instead of guessed;
//! * **inverse**: a mutating action that can be undone answers [`Action::inverse`], a plan
//!   of the same action that restores the state before it.
//!
//! Stored runs keep each plan as JSON (`StepState::plan`); a plan type's JSON is exactly the
//! shape the engine has always stored, so runs written before plans were typed load and
//! resume unchanged.

use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use warden_connectors::prometheus::MetricSource;

use crate::audit::AuditKind;
use crate::cluster::{Cluster, ClusterError, WorkloadRef};
use crate::engine::{Notices, RunStore, Webhook};
use crate::guards::Refusal;
use crate::load::Checker;
use crate::run::{Phase, Run, Target};
use crate::spec::{Arg, TargetKind};
use crate::template::render;

#[macro_use]
mod registry;
#[cfg(test)]
mod spec_harness;

register_actions! {
    scale => Scale(ScaleStep),
    rollback => Rollback(RollbackStep),
    restart => Restart(RestartStep),
    delete_pod => DeletePod(DeletePodStep),
    cordon => Cordon(CordonStep),
    run_job => RunJob(RunJobStep),
    patch => Patch(PatchStep),
    http => Http(HttpStep),
    wait => Wait(WaitStep),
    verify => Verify(VerifyStep),
    notify => Notify(NotifyStep),
}

/// Why a step did not complete. The classification is the action's half of the error
/// policy ([`crate::policy`]); the engine's half is the same for every action.
#[derive(Debug)]
pub enum StepError {
    /// A guard refused; nothing was sent.
    Refused(Refusal),
    /// Failed without acting.
    Failed(String),
    /// A request was sent and may have been applied; its outcome could not be resolved.
    Unknown(String),
    /// A cluster request failed: retried, read back or failed by the policy according to
    /// its [`crate::cluster::ClusterErrorKind`], then settled by [`StepError::settled`].
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
    pub fn settled(self) -> Self {
        match self {
            StepError::Cluster(e) if e.kind.may_have_applied() => {
                StepError::Unknown(format!("outcome unknown, the request may have been applied: {}", e.message))
            }
            StepError::Cluster(e) => StepError::Failed(e.message),
            other => other,
        }
    }

    /// The message, whatever the class.
    pub fn message(&self) -> String {
        match self {
            StepError::Refused(r) => r.to_string(),
            StepError::Failed(m) | StepError::Unknown(m) => m.clone(),
            StepError::Cluster(c) => c.message.clone(),
        }
    }
}

/// What planning a step decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Planned<P> {
    /// The concrete request, stored before it is sent.
    Request(P),
    /// Nothing to do (a dry-run wait, a pod that is already gone), with the reason.
    Skip(String),
}

impl<P> Planned<P> {
    fn map<Q>(self, f: impl FnOnce(P) -> Q) -> Planned<Q> {
        match self {
            Planned::Request(p) => Planned::Request(f(p)),
            Planned::Skip(r) => Planned::Skip(r),
        }
    }
}

/// What applying or polling a step gave.
#[derive(Debug, Clone, PartialEq)]
pub enum Sent {
    /// Done, with the step's result.
    Done(Value),
    /// Look again at this time (a wait, a verification window, a Job in progress).
    Wait(DateTime<Utc>, Value),
}

/// Everything an action may use while planning, applying, polling and reading back. The
/// run is read-only: actions never write it (the engine does, under the run's claim).
pub struct Ctx<'a> {
    pub run: &'a Run,
    pub cluster: Option<&'a dyn Cluster>,
    pub metrics: Option<&'a dyn MetricSource>,
    pub webhook: Option<&'a dyn Webhook>,
    pub notices: &'a dyn Notices,
    pub store: &'a dyn RunStore,
    /// The engine's clock.
    pub now: DateTime<Utc>,
    pub phase: Phase,
    /// The step's index in its phase's list.
    pub index: usize,
    /// The step's idempotency key (`run-<id>-step-<n>`).
    pub key: &'a str,
}

impl Ctx<'_> {
    pub fn dry_run(&self) -> bool {
        self.run.dry_run
    }

    /// The suffix of a summary of a dry-run write.
    pub fn dry_note(&self) -> &'static str {
        if self.run.dry_run {
            " (dry-run, not persisted)"
        } else {
            ""
        }
    }

    pub fn cluster(&self) -> Result<&dyn Cluster, StepError> {
        self.cluster.ok_or_else(|| StepError::Failed("no Kubernetes cluster is configured".into()))
    }

    /// Render a template with the run's variables.
    pub fn render(&self, text: &str) -> Result<String, StepError> {
        render(text, &self.run.vars).map_err(|e| StepError::Failed(e.to_string()))
    }

    /// Render a YAML tree's strings with the run's variables.
    pub fn render_tree(&self, tree: &serde_yaml::Value) -> Result<Value, StepError> {
        crate::template::render_tree(tree, &self.run.vars).map_err(|e| StepError::Failed(e.to_string()))
    }

    /// Render an argument and parse it as a whole number.
    pub fn render_int(&self, arg: &Arg, what: &str) -> Result<i64, StepError> {
        let text = self.render(arg.as_str())?;
        text.trim()
            .parse::<i64>()
            .map_err(|_| StepError::Failed(format!("{what} {text:?} (from {:?}) is not a whole number", arg.as_str())))
    }

    /// The run's target as a Deployment.
    pub fn deployment_target(&self) -> Result<WorkloadRef, StepError> {
        match &self.run.target {
            Some(t) if t.kind == TargetKind::Deployment => Ok(workload(t)),
            _ => Err(StepError::Failed("this action needs a deployment target".into())),
        }
    }
}

pub(crate) fn workload(t: &Target) -> WorkloadRef {
    WorkloadRef::new(t.namespace.clone(), t.name.clone())
}

/// One action: the YAML step type (`ScaleStep` for `scale:`) implements it. See the module
/// documentation for the contract; `docs/specs/action.md` for the reasons.
#[async_trait]
pub trait Action: DeserializeOwned + fmt::Debug + Send + Sync + 'static {
    /// The YAML key (`scale`), also the action's name in runs and the audit trail.
    const KEY: &'static str;
    /// Whether the action changes something outside Warden: it then needs a plan stored
    /// before it is sent, counts as acted (cooldowns, rate caps) and is reverted.
    const MUTATING: bool;
    /// The audit kind of the step's answer.
    const AUDIT: AuditKind = AuditKind::Response;
    /// The concrete request. Its JSON is what runs store; it must stay readable by later
    /// versions (add fields with defaults, never rename).
    type Plan: Serialize + DeserializeOwned + Clone + PartialEq + fmt::Debug + Send + Sync;
    /// A valid step of this action (the YAML under its key), for the documentation and the
    /// spec harness, which plans and applies it against an in-memory cluster.
    const EXAMPLE: &'static str;

    /// Load-time checks (no cluster): arguments, templates, the target the action needs.
    /// `at` is the action's YAML path (`steps[1].scale`).
    fn check(&self, c: &mut Checker<'_>, at: &str);

    /// Turn the step into its plan, reading what it needs (reads only, never a write).
    async fn plan(&self, cx: &Ctx<'_>) -> Result<Planned<Self::Plan>, StepError>;

    /// Send the plan: the first time, again after a retry, and again after a crash. Must be
    /// idempotent; a failed cluster request is returned as [`StepError::Cluster`].
    async fn apply(plan: &Self::Plan, cx: &Ctx<'_>) -> Result<Sent, StepError>;

    /// Look again at a step that answered [`Sent::Wait`].
    async fn poll(plan: &Self::Plan, cx: &Ctx<'_>) -> Result<Sent, StepError> {
        let _ = (plan, cx);
        Err(StepError::Failed(format!("a {} step does not wait", Self::KEY)))
    }

    /// Whether the cluster is in the state the plan asks for: `Some(true)` applied,
    /// `Some(false)` not (yet), `None` when the action cannot be read back.
    async fn read_back(plan: &Self::Plan, cluster: &dyn Cluster) -> Result<Option<bool>, ClusterError> {
        let _ = (plan, cluster);
        Ok(None)
    }

    /// The step's outcome when the answer was lost but reading back showed the plan applied.
    fn applied_after_all(plan: &Self::Plan, now: DateTime<Utc>) -> Sent {
        let _ = now;
        Sent::Done(applied_after_all_result(&Self::describe(plan)))
    }

    /// The plan that undoes `plan`, when the action can be undone.
    fn inverse(plan: &Self::Plan) -> Option<Self::Plan> {
        let _ = plan;
        None
    }

    /// The namespace the plan acts in (a revert step is refused in a denied namespace).
    fn namespace(plan: &Self::Plan) -> Option<&str> {
        let _ = plan;
        None
    }

    /// A step found `running` after a restart is sent again (its plan is idempotent), unless
    /// this says why it must not be: then its outcome is unknown.
    fn interrupted(plan: &Self::Plan) -> Option<&'static str> {
        let _ = plan;
        None
    }

    /// The plan in words: what would be sent.
    fn describe(plan: &Self::Plan) -> String;
}

/// The result of a step whose answer was lost but whose effect reading back confirmed.
pub fn applied_after_all_result(description: &str) -> Value {
    let summary = format!("{description} (the answer was lost; reading the object back showed it applied)");
    json!({"outcome": "unknown_resolved_applied", "summary": summary})
}

/// A stored plan that does not decode as its action's plan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the stored {action} plan does not parse: {message}")]
pub struct PlanDecodeError {
    pub action: String,
    pub message: String,
}

fn decode<P: DeserializeOwned>(action: &str, v: &Value) -> Result<P, PlanDecodeError> {
    serde_json::from_value(v.clone())
        .map_err(|e| PlanDecodeError { action: action.to_string(), message: e.to_string() })
}

fn encode<P: Serialize>(p: &P) -> Value {
    // Plans are plain data (strings, numbers, maps): serialising them cannot fail.
    serde_json::to_value(p).unwrap_or(Value::Null)
}

/// Whether the action named `key` changes something outside Warden.
pub fn is_mutating(key: &str) -> bool {
    ActionKind::from_key(key).is_some_and(ActionKind::is_mutating)
}

/// One step's stored plan in words: what would be sent (the key itself when the plan does
/// not decode).
pub fn describe_plan(key: &str, plan: &Value) -> String {
    match Plan::decode(key, plan) {
        Ok(p) => p.describe(),
        Err(_) => key.to_string(),
    }
}

impl Plan {
    /// The plan's own request timeout (an `http` step's); `None`: the cluster client's.
    pub fn request_timeout(&self) -> Option<std::time::Duration> {
        match self {
            Plan::Http(p) => Some(
                std::time::Duration::try_from_secs_f64(p.call.timeout_secs.clamp(0.1, 86_400.0))
                    .unwrap_or(std::time::Duration::from_secs(10)),
            ),
            _ => None,
        }
    }
}

/// The audit kind of the answer of a step of action `key`.
pub fn audit_kind(key: &str) -> AuditKind {
    ActionKind::from_key(key).map(ActionKind::audit_kind).unwrap_or(AuditKind::Response)
}

/// Deserialize helper for plan fields that default to `true`.
pub(crate) fn yes() -> bool {
    true
}
