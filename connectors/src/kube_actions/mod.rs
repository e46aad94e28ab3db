//! The Kubernetes remediation actions of Warden's playbooks, beyond scaling.
//!
//! Playbooks roll a Deployment back (and forward again when the rollback is
//! reverted), restart it, delete a stuck Pod, cordon or uncordon a Node, run a
//! one-off Job, or patch a few allow-listed Deployment fields. Every action here
//! follows the same rules, because the agent retries actions after crashes
//! and timeouts and an operator may run the same playbook twice, and because the
//! real API server is asynchronous and shared with other writers:
//!
//! * **Dry run.** Each write takes `dry_run`; it is passed to the API server as
//!   `dryRun=All`, so admission, validation and conflicts are checked by the server
//!   itself while nothing is persisted. A dry run answers the would-be object.
//! * **Idempotence.** Repeating an action after it succeeded changes nothing and is
//!   not an error: a rollback whose target template is already in place, a restart
//!   with the same `restartedAt` value, a cordon of a cordoned Node, a Pod that is
//!   already gone, a Job this action already created. Outcomes say whether anything
//!   changed (`changed`, `already_gone`, `created`).
//! * **Only what is ours.** A Job is adopted on a retry only when it carries every
//!   identifying label of the Job the action would create (for Warden: installation,
//!   run and step); a Job of the same name made by anyone else is refused with
//!   [`Error::Precondition`], never taken for ours.
//! * **No blind overwrites.** A rollback patches with the Deployment's
//!   `metadata.resourceVersion`, and a Pod deletion can carry a UID precondition, so
//!   a concurrent change answers 409 (see [`Error::is_conflict`]) instead of being
//!   clobbered or hitting a replacement Pod of the same name. A rollback retries such
//!   a conflict a few times (jittered), reading the Deployment again each time.
//! * **The controllers act later.** The answer to a write shows the object as written,
//!   before the controllers reacted: the revision annotation of a rolled-back
//!   Deployment is renumbered later, a deleted Pod on a node stays `Terminating` until
//!   its kubelet confirms, a Job's status is written by the job controller. So a
//!   rollback resolves revisions from the ReplicaSets (waiting, bounded, for the
//!   deployment controller to catch up), and a Pod deletion waits, bounded, until the
//!   Pod is gone or reports it still terminating. The bounds are [`ActionWaits`].
//!
//! Writes return the API server's answer as JSON (`response`) for the audit trail.
//! Which fields a playbook may patch is the caller's policy, not this module's.
//! Reads and writes go through [`KubeClient`], with its per-call timeout and its
//! error mapping into [`Error`].

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use kube::Api;
use serde::Serialize;
use serde_json::{json, Value};

use crate::kubernetes::{check_name, KubeClient};
use crate::{Error, Result};

mod resolve;
pub use resolve::*;

mod writes;

/// Annotation holding a Deployment's (and its ReplicaSets') rollout revision.
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
/// Annotation of a ReplicaSet listing the revisions it had before it was reused
/// by a rollback (comma-separated), kept by the deployment controller.
pub const REVISION_HISTORY_ANNOTATION: &str = "deployment.kubernetes.io/revision-history";
/// Pod-template annotation `kubectl rollout restart` sets.
pub const RESTARTED_AT_ANNOTATION: &str = "kubectl.kubernetes.io/restartedAt";
/// Label the deployment controller adds to a ReplicaSet's pods and template.
pub const POD_TEMPLATE_HASH_LABEL: &str = "pod-template-hash";

/// How long actions wait for the cluster's controllers, and how often a rollback retries
/// a conflict ([`KubeClient::with_action_waits`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActionWaits {
    /// How long [`KubeClient::delete_pod`] waits for a deleted pod to be gone before it
    /// reports the pod [`terminating`](DeleteOutcome::terminating). Default 10 s.
    pub pod_gone: Duration,
    /// How long a rollback waits for the deployment controller to record the revision of
    /// the Deployment's current pod template. Default 10 s.
    pub controller: Duration,
    /// How many times a rollback reads the Deployment again and re-sends after a 409
    /// Conflict. Default 5.
    pub conflict_retries: u32,
}

impl Default for ActionWaits {
    fn default() -> Self {
        Self { pod_gone: Duration::from_secs(10), controller: Duration::from_secs(10), conflict_retries: 5 }
    }
}

/// What a write did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WriteOutcome {
    /// Whether the object changed (for a dry run: would have changed). `false`
    /// means it already was in the requested state; then nothing was sent and
    /// `response` is the object as read.
    pub changed: bool,
    /// Whether this was a server-side dry run (nothing was persisted).
    pub dry_run: bool,
    /// The object returned by the API server.
    pub response: Value,
}

/// What a rollback would do ([`KubeClient::plan_rollback`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RollbackPlan {
    /// The revision of the ReplicaSet whose pod template the Deployment has.
    pub from_revision: i64,
    /// The revision to go to: the requested one, or the newest other revision.
    pub to_revision: i64,
    /// Name of the ReplicaSet the template would be taken from.
    pub replica_set: String,
    /// The Deployment already has that template: a rollback would send nothing.
    pub unchanged: bool,
}

/// What [`KubeClient::rollback_deployment`] did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RollbackOutcome {
    /// The Deployment's revision before the call (of the ReplicaSet with its template).
    pub from_revision: i64,
    /// The revision whose pod template the Deployment now has (the requested one,
    /// or the one chosen for `None`). Pass it as `Some(..)` when retrying.
    pub to_revision: i64,
    /// Name of the ReplicaSet the template was taken from.
    pub replica_set: String,
    /// `false` when the Deployment already had that template (nothing was sent).
    pub changed: bool,
    /// Whether this was a server-side dry run (nothing was persisted).
    pub dry_run: bool,
    /// How many 409 Conflicts from concurrent writers were retried.
    pub conflicts_retried: u32,
    /// The Deployment returned by the API server (or as read, when unchanged). A write's
    /// answer still shows the old revision annotation: the controller renumbers later.
    pub response: Value,
}

/// A deleted Pod that still exists: its kubelet has not yet confirmed that its
/// containers stopped (or there is no kubelet to confirm it: an unreachable node).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PodTerminating {
    /// `metadata.deletionTimestamp`: when the grace period ends.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deletion_timestamp: Option<String>,
    /// `metadata.deletionGracePeriodSeconds`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grace_period_seconds: Option<i64>,
}

/// What [`KubeClient::delete_pod`] did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeleteOutcome {
    /// The Pod did not exist (any more): the API server answered 404. Not an error.
    pub already_gone: bool,
    /// The deletion was accepted but the Pod was still there (terminating) when the
    /// wait ended; `None` when it is gone (or replaced by a Pod with another UID), and
    /// for a dry run.
    pub terminating: Option<PodTerminating>,
    /// Whether this was a server-side dry run (nothing was deleted).
    pub dry_run: bool,
    /// The API server's answer: the deleted Pod, or the `Status` it sent.
    pub response: Value,
}

/// What [`KubeClient::create_job`] did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobCreateOutcome {
    /// `false` when a Job of that name already existed; `job` is then that Job.
    pub created: bool,
    /// Whether this was a server-side dry run (nothing was created).
    pub dry_run: bool,
    /// The created (or existing) Job as the API server returned it.
    pub job: Job,
    /// The same Job as JSON, for the audit trail.
    pub response: Value,
}

/// Where a Job stands, from its status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum JobPhase {
    /// Not finished yet (pending, running, suspended or retrying).
    Running,
    /// Finished successfully.
    Succeeded,
    /// Finished unsuccessfully; `reason` and `message` come from the Job's
    /// `Failed` condition (for example `BackoffLimitExceeded`, `DeadlineExceeded`).
    Failed { reason: String, message: String },
}

/// The rollout revision of a Deployment (annotation [`REVISION_ANNOTATION`]),
/// `None` when absent or not a number.
pub fn deployment_revision(deployment: &Deployment) -> Option<i64> {
    revision_of(&deployment.metadata)
}

/// The rollout revision of a ReplicaSet (annotation [`REVISION_ANNOTATION`]).
pub fn replicaset_revision(replica_set: &ReplicaSet) -> Option<i64> {
    revision_of(&replica_set.metadata)
}

fn revision_of(metadata: &ObjectMeta) -> Option<i64> {
    metadata.annotations.as_ref()?.get(REVISION_ANNOTATION)?.trim().parse().ok()
}

/// Earlier revisions of a ReplicaSet that a rollback reused ([`REVISION_HISTORY_ANNOTATION`]).
fn revision_history(replica_set: &ReplicaSet) -> Vec<i64> {
    replica_set
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REVISION_HISTORY_ANNOTATION))
        .map(|h| h.split(',').filter_map(|r| r.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// The phase of a Job from `status.conditions` (`Complete` / `SuccessCriteriaMet`,
/// `Failed` / `FailureTarget` with status `True`). When the status carries no
/// terminal condition (an older or partial status), the counts decide:
/// `completionTime` set or `succeeded` reaching `spec.completions` (default 1)
/// means succeeded, more `failed` pods than `spec.backoffLimit` (default 6) means
/// failed with reason `BackoffLimitExceeded`. Anything else is running.
pub fn job_phase(job: &Job) -> JobPhase {
    let status = job.status.as_ref();
    let conditions = status.and_then(|s| s.conditions.as_deref()).unwrap_or_default();
    let holding = |kind: &str| conditions.iter().find(|c| c.type_ == kind && c.status == "True");
    if let Some(c) = holding("Failed").or_else(|| holding("FailureTarget")) {
        return JobPhase::Failed {
            reason: c.reason.clone().unwrap_or_default(),
            message: c.message.clone().unwrap_or_default(),
        };
    }
    if holding("Complete").is_some() || holding("SuccessCriteriaMet").is_some() {
        return JobPhase::Succeeded;
    }
    let spec = job.spec.as_ref();
    let succeeded = status.and_then(|s| s.succeeded).unwrap_or(0);
    let failed = status.and_then(|s| s.failed).unwrap_or(0);
    let completions = spec.and_then(|s| s.completions).unwrap_or(1).max(1);
    if status.is_some_and(|s| s.completion_time.is_some()) || succeeded >= completions {
        return JobPhase::Succeeded;
    }
    let backoff_limit = spec.and_then(|s| s.backoff_limit).unwrap_or(6);
    if failed > backoff_limit {
        return JobPhase::Failed {
            reason: "BackoffLimitExceeded".to_string(),
            message: format!("{failed} pods failed, more than the backoff limit {backoff_limit}"),
        };
    }
    JobPhase::Running
}

#[cfg(test)]
mod tests;
