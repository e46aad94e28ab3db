//! One run of a playbook as a persisted state machine.
//!
//! A run is stored whole after every transition, and the transition into `running` for a
//! step stores the step's concrete request (its *plan*: absolute replicas, the revision to
//! roll back to, the pod uid, the Job name) before the request is sent. A process that dies
//! after that point resumes by sending the same plan again; every plan is idempotent, so a
//! step is never applied twice and never lost. One task at a time advances a run (its
//! claim, see [`crate::claim`]), so no plan is made or sent twice by two tasks.
//!
//! ```text
//!  observed            (autonomy observe: the plan is recorded, nothing is sent)
//!  refused             (a run guard refused; nothing is sent)
//!  awaiting_approval ─┬─> running ──┬─> succeeded
//!                     ├─> denied    └─> failed ── (an action was applied) ──> reverting ─┬─> reverted
//!                     └─> expired                                                        └─> revert_failed
//! ```

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::guards::{GuardSettings, Refusal};
use crate::params::ParamValue;
use crate::spec::{Playbook, TargetKind};
use crate::template::Vars;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Observed,
    Refused,
    AwaitingApproval,
    Denied,
    Expired,
    Running,
    Succeeded,
    Failed,
    Reverting,
    Reverted,
    RevertFailed,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Observed => "observed",
            RunStatus::Refused => "refused",
            RunStatus::AwaitingApproval => "awaiting_approval",
            RunStatus::Denied => "denied",
            RunStatus::Expired => "expired",
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Reverting => "reverting",
            RunStatus::Reverted => "reverted",
            RunStatus::RevertFailed => "revert_failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        ALL_STATUSES.iter().copied().find(|st| st.as_str() == s)
    }

    /// Nothing more will happen to the run.
    pub fn is_terminal(self) -> bool {
        !matches!(self, RunStatus::AwaitingApproval | RunStatus::Running | RunStatus::Reverting)
    }

    /// The engine advances runs in these states (on its clock, and after a restart).
    pub fn is_advancing(self) -> bool {
        matches!(self, RunStatus::Running | RunStatus::Reverting)
    }
}

pub const ALL_STATUSES: &[RunStatus] = &[
    RunStatus::Observed,
    RunStatus::Refused,
    RunStatus::AwaitingApproval,
    RunStatus::Denied,
    RunStatus::Expired,
    RunStatus::Running,
    RunStatus::Succeeded,
    RunStatus::Failed,
    RunStatus::Reverting,
    RunStatus::Reverted,
    RunStatus::RevertFailed,
];

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Pending,
    /// The plan is stored and the request may have been sent.
    Running,
    /// Sent; waiting on the clock (wait, verify window, Job completion).
    Waiting,
    Done,
    Failed,
    Skipped,
}

impl StepStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Pending => "pending",
            StepStatus::Running => "running",
            StepStatus::Waiting => "waiting",
            StepStatus::Done => "done",
            StepStatus::Failed => "failed",
            StepStatus::Skipped => "skipped",
        }
    }
}

/// Which list a step belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Main,
    Revert,
}

/// The state of one step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepState {
    pub index: usize,
    pub name: String,
    /// The action key (`scale`, `verify`, ...).
    pub action: String,
    pub phase: Phase,
    pub status: StepStatus,
    /// `run-<id>-step-<n>` (or `-revert-<n>`): names Jobs, labels restarts, heads webhook
    /// calls, so repeating the step after a crash is recognised as the same request.
    pub idempotency_key: String,
    /// The concrete request, stored before it is sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<Refusal>,
    /// How many times the request was sent (more than one only after a crash or retry).
    #[serde(default)]
    pub sends: u32,
    /// The step failed with an unknown outcome: its request may have been applied, so it
    /// counts as acted and is reverted like an applied step.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub may_have_applied: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wake_at: Option<DateTime<Utc>>,
}

/// What a run acts on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub kind: TargetKind,
    /// Empty for nodes.
    pub namespace: String,
    pub name: String,
}

impl Target {
    pub fn deployment(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self { kind: TargetKind::Deployment, namespace: namespace.into(), name: name.into() }
    }

    pub fn node(name: impl Into<String>) -> Self {
        Self { kind: TargetKind::Node, namespace: String::new(), name: name.into() }
    }

    /// Parse `ns/name` (deployments) or `name` (nodes).
    pub fn parse(kind: TargetKind, text: &str) -> Result<Self, String> {
        match kind {
            TargetKind::Deployment => match text.split_once('/') {
                Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
                    Ok(Self::deployment(ns, name))
                }
                _ => Err(format!("target {text:?} must be namespace/deployment")),
            },
            TargetKind::Node if !text.is_empty() && !text.contains('/') => Ok(Self::node(text)),
            TargetKind::Node => Err(format!("target {text:?} must be a node name")),
            TargetKind::None => Err("this playbook takes no target".into()),
        }
    }

    /// The key two runs must not share while active.
    pub fn lock_key(&self) -> String {
        format!("{}:{}", self.kind, self)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            f.write_str(&self.name)
        } else {
            write!(f, "{}/{}", self.namespace, self.name)
        }
    }
}

/// What started a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TriggerInfo {
    /// `manual`, `incident`, `alert`, `cron`.
    pub kind: String,
    /// Who: `user/alice`, `watch/checkout-latency`, `cron/nightly`.
    pub actor: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident_id: Option<i64>,
    #[serde(default)]
    pub detail: serde_json::Value,
}

/// A decision on an approval request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    pub requested_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// One run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub id: i64,
    pub playbook: String,
    /// The playbook as it was when the run started: later edits do not change a run.
    pub spec: Playbook,
    pub params: BTreeMap<String, ParamValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
    pub trigger: TriggerInfo,
    /// Template variables fixed when the run started.
    pub vars: Vars,
    pub guards: GuardSettings,
    pub dry_run: bool,
    pub status: RunStatus,
    /// Why the run is in its state, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<Refusal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,
    pub steps: Vec<StepState>,
    #[serde(default)]
    pub revert_steps: Vec<StepState>,
    /// A step changed something outside Warden (not dry-run), or may have (an unknown
    /// outcome): counts for cooldown and rates.
    #[serde(default)]
    pub acted: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// When the engine should look at the run next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wake_at: Option<DateTime<Utc>>,
}

impl Run {
    /// The incident the run belongs to, if any.
    pub fn incident_id(&self) -> Option<i64> {
        self.trigger.incident_id
    }

    /// `playbook → target`, for messages.
    pub fn title(&self) -> String {
        match &self.target {
            Some(t) => format!("{} on {t}", self.playbook),
            None => self.playbook.clone(),
        }
    }

    /// A one-line account of what the run did so far, for notifications.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        for s in self.steps.iter().chain(&self.revert_steps) {
            if let Some(text) = s.result.as_ref().and_then(|r| r.get("summary")).and_then(|v| v.as_str()) {
                parts.push(text.to_string());
            }
        }
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_and_classify() {
        for s in ALL_STATUSES {
            assert_eq!(RunStatus::parse(s.as_str()), Some(*s));
        }
        assert!(RunStatus::Reverted.is_terminal());
        assert!(!RunStatus::AwaitingApproval.is_terminal());
        assert!(RunStatus::Reverting.is_advancing());
    }

    #[test]
    fn targets_parse() {
        assert_eq!(Target::parse(TargetKind::Deployment, "shop/checkout"), Ok(Target::deployment("shop", "checkout")));
        assert!(Target::parse(TargetKind::Deployment, "checkout").is_err());
        assert_eq!(Target::parse(TargetKind::Node, "node-1").map(|t| t.to_string()), Ok("node-1".into()));
        assert_eq!(Target::deployment("a", "b").lock_key(), "deployment:a/b");
    }
}
