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

impl KubeClient {
    /// Reads a Deployment.
    pub async fn get_deployment(&self, namespace: &str, name: &str) -> Result<Deployment> {
        check_name("namespace", namespace)?;
        check_name("deployment name", name)?;
        let api: Api<Deployment> = Api::namespaced(self.kube_client(), namespace);
        self.call_api(&format!("deployment {namespace}/{name}"), api.get(name)).await
    }

    /// The ReplicaSets of Deployment `namespace/name`: those in its namespace that
    /// match its selector and whose controller owner reference carries its UID
    /// (what `kubectl rollout history` looks at), sorted by revision (ReplicaSets
    /// without one first), then name.
    pub async fn list_replicasets_of(&self, namespace: &str, deployment: &str) -> Result<Vec<ReplicaSet>> {
        let deployment = self.get_deployment(namespace, deployment).await?;
        self.replicasets_owned_by(namespace, &deployment).await
    }

    /// The ReplicaSets in `namespace` matching the Deployment's selector whose controller
    /// owner reference is the Deployment's UID, by revision.
    pub(crate) async fn replicasets_owned_by(
        &self,
        namespace: &str,
        deployment: &Deployment,
    ) -> Result<Vec<ReplicaSet>> {
        let name = deployment.metadata.name.as_deref().unwrap_or_default();
        let what = format!("replicasets of deployment {namespace}/{name}");
        let uid = deployment.metadata.uid.as_deref().ok_or_else(|| Error::Decode {
            url: self.describe_object(&what),
            message: "the deployment has no metadata.uid".to_string(),
        })?;
        let selector = match deployment.spec.as_ref() {
            Some(spec) => selector_string(&spec.selector)?,
            None => None,
        };
        let params = ListParams { label_selector: selector, ..ListParams::default() };
        let api: Api<ReplicaSet> = Api::namespaced(self.kube_client(), namespace);
        let list = self.call_api(&what, api.list(&params)).await?;
        let mut owned: Vec<ReplicaSet> = list
            .items
            .into_iter()
            .filter(|rs| {
                rs.metadata
                    .owner_references
                    .as_ref()
                    .is_some_and(|refs| refs.iter().any(|r| r.controller == Some(true) && r.uid == uid))
            })
            .collect();
        owned.sort_by(|a, b| {
            (replicaset_revision(a), &a.metadata.name).cmp(&(replicaset_revision(b), &b.metadata.name))
        });
        Ok(owned)
    }

    /// What a rollback of Deployment `namespace/name` to `to_revision` (or, for `None`,
    /// to the newest other revision) would do, without changing anything. The revisions
    /// are resolved from the Deployment's ReplicaSets, like `kubectl rollout undo`: the
    /// current revision is that of the ReplicaSet whose pod template the Deployment has,
    /// not the Deployment's revision annotation, which the deployment controller updates
    /// only after it renumbered a reused ReplicaSet. When the controller has not yet
    /// caught up with the Deployment's last template change (no ReplicaSet with the
    /// current template yet, or not yet renumbered to the newest revision), this waits for
    /// it up to [`ActionWaits::controller`]; with still no ReplicaSet for the template it
    /// then fails with a retryable [`Error::Timeout`].
    pub async fn plan_rollback(&self, namespace: &str, name: &str, to_revision: Option<i64>) -> Result<RollbackPlan> {
        check_revision(namespace, name, to_revision)?;
        let (deployment, replica_sets) = self.read_for_rollback(namespace, name).await?;
        let what = self.describe_object(&format!("deployment {namespace}/{name}"));
        let resolved = resolve_rollback(&what, namespace, name, &deployment, &replica_sets, to_revision)?;
        Ok(resolved.plan)
    }

    /// The rollout revision of Deployment `namespace/name` resolved from its ReplicaSets
    /// (the revision of the one with the Deployment's pod template), waiting for the
    /// deployment controller like [`KubeClient::plan_rollback`]; the revision annotation
    /// when no ReplicaSet has the template (a paused Deployment); `None` without either.
    pub async fn current_revision(&self, namespace: &str, name: &str) -> Result<Option<i64>> {
        let (deployment, replica_sets) = self.read_for_rollback(namespace, name).await?;
        let current = without_hash_label(deployment.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default());
        Ok(current_replica_set(&current, &replica_sets)
            .and_then(replicaset_revision)
            .or_else(|| deployment_revision(&deployment)))
    }

    /// Rolls Deployment `namespace/name` back to an earlier revision, as
    /// `kubectl rollout undo [--to-revision]` does: the pod template of the
    /// ReplicaSet of that revision (without its `pod-template-hash` label) replaces
    /// the Deployment's `spec.template`, and the deployment controller then rolls
    /// the pods and makes that ReplicaSet the newest revision.
    ///
    /// Revisions are resolved from the ReplicaSets as in [`KubeClient::plan_rollback`].
    /// `to_revision: None` picks the newest revision other than the current one. That
    /// choice depends on the current state (like repeated `rollout undo`, calling
    /// it twice toggles), so a retry must pass the outcome's
    /// `Some(to_revision)`: a revision is also found after the controller renumbered
    /// its ReplicaSet (through the `revision-history` annotation), and when the
    /// Deployment already has the target template nothing is written
    /// (`changed: false`). Rolling *forward* again, the revert of a rollback, is a
    /// rollback to the outcome's `from_revision`.
    ///
    /// The patch is a JSON merge patch carrying the `metadata.resourceVersion` that
    /// was read, so a concurrent change of the Deployment answers 409 Conflict. A
    /// conflict is retried up to [`ActionWaits::conflict_retries`] times after a
    /// jittered, growing pause, each time reading the Deployment and its ReplicaSets
    /// again: when another writer changed only other fields (replicas, annotations, the
    /// controller's status), the rollback goes through; when the Deployment meanwhile
    /// got the target template, nothing is sent (`changed: false`); when another writer
    /// changed the pod template to a third one, the rollback stops with
    /// [`Error::Precondition`] rather than overwrite it. Unknown revisions, a paused
    /// Deployment and a Deployment without an older revision are
    /// [`Error::InvalidInput`].
    pub async fn rollback_deployment(
        &self,
        namespace: &str,
        name: &str,
        to_revision: Option<i64>,
        dry_run: bool,
    ) -> Result<RollbackOutcome> {
        check_revision(namespace, name, to_revision)?;
        let object = format!("deployment {namespace}/{name}");
        let what = self.describe_object(&object);
        let api: Api<Deployment> = Api::namespaced(self.kube_client(), namespace);
        let params = PatchParams { dry_run, ..PatchParams::default() };
        let retries = self.action_waits().conflict_retries;
        let mut to_revision = to_revision;
        let mut first: Option<(Value, i64)> = None;
        let mut conflicts = 0u32;
        loop {
            let (deployment, replica_sets) = self.read_for_rollback(namespace, name).await?;
            let resolved = resolve_rollback(&what, namespace, name, &deployment, &replica_sets, to_revision)?;
            let plan = &resolved.plan;
            // Later attempts go to the same revision, from the template first seen.
            to_revision = Some(plan.to_revision);
            let from_revision = match &first {
                None => {
                    first = Some((resolved.current.clone(), plan.from_revision));
                    plan.from_revision
                }
                Some((template, from)) => {
                    if *template != resolved.current && !plan.unchanged {
                        return Err(Error::Precondition {
                            object,
                            message: format!(
                                "another writer changed the pod template (now revision {}) while it \
                                 was being rolled back from revision {from} to revision {}, after \
                                 {conflicts} conflict(s); nothing was sent",
                                plan.from_revision, plan.to_revision
                            ),
                        });
                    }
                    *from
                }
            };
            if plan.unchanged {
                tracing::info!(
                    namespace,
                    name,
                    to_revision = plan.to_revision,
                    "deployment already has the template of the target revision"
                );
                return Ok(RollbackOutcome {
                    from_revision,
                    to_revision: plan.to_revision,
                    replica_set: plan.replica_set.clone(),
                    changed: false,
                    dry_run,
                    conflicts_retried: conflicts,
                    response: self.encode(&object, &deployment)?,
                });
            }
            let mut patch = json!({ "spec": { "template": merge_patch_diff(&resolved.current, &resolved.wanted) } });
            if let Some(rv) = &deployment.metadata.resource_version {
                patch["metadata"] = json!({ "resourceVersion": rv });
            }
            tracing::info!(
                namespace,
                name,
                from_revision,
                to_revision = plan.to_revision,
                replica_set = plan.replica_set,
                dry_run,
                attempt = conflicts + 1,
                "rolling deployment back"
            );
            match self.call_api(&object, api.patch(name, &params, &Patch::Merge(&patch))).await {
                Ok(answer) => {
                    return Ok(RollbackOutcome {
                        from_revision,
                        to_revision: plan.to_revision,
                        replica_set: plan.replica_set.clone(),
                        changed: true,
                        dry_run,
                        conflicts_retried: conflicts,
                        response: self.encode(&object, &answer)?,
                    })
                }
                Err(e) if e.is_conflict() && conflicts < retries => {
                    conflicts += 1;
                    let pause = conflict_backoff(conflicts);
                    tracing::info!(
                        namespace,
                        name,
                        conflicts,
                        pause_ms = pause.as_millis() as u64,
                        "the deployment changed under the rollback; reading it again"
                    );
                    tokio::time::sleep(pause).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads Deployment `namespace/name` and its ReplicaSets once the deployment
    /// controller has caught up with its last template change (see
    /// [`KubeClient::plan_rollback`]),
    /// or as they are when [`ActionWaits::controller`] has passed. A paused Deployment
    /// is [`Error::InvalidInput`] at once (its controller does not roll it).
    async fn read_for_rollback(&self, namespace: &str, name: &str) -> Result<(Deployment, Vec<ReplicaSet>)> {
        let deadline = Instant::now() + self.action_waits().controller;
        let mut pause = Duration::from_millis(50);
        loop {
            let deployment = self.get_deployment(namespace, name).await?;
            let spec = deployment.spec.as_ref().ok_or_else(|| Error::Decode {
                url: self.describe_object(&format!("deployment {namespace}/{name}")),
                message: "the deployment has no spec".to_string(),
            })?;
            if spec.paused == Some(true) {
                return Err(Error::InvalidInput(format!(
                    "deployment {namespace}/{name} is paused; resume it before rolling it back"
                )));
            }
            let replica_sets = self.replicasets_owned_by(namespace, &deployment).await?;
            let current = without_hash_label(spec.template.clone());
            // Caught up: the template has a ReplicaSet, and it is the newest revision (a
            // reused one is renumbered first). Not `observedGeneration`: annotation writes
            // by anyone bump a Deployment's generation, so it can lag for long.
            let newest = replica_sets.iter().filter_map(replicaset_revision).max();
            let recorded = current_replica_set(&current, &replica_sets)
                .and_then(replicaset_revision)
                .is_some_and(|r| Some(r) == newest);
            let now = Instant::now();
            if recorded || now >= deadline {
                return Ok((deployment, replica_sets));
            }
            tracing::debug!(namespace, name, "waiting for the deployment controller");
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }

    /// Restarts the pods of Deployment `namespace/name` like `kubectl rollout
    /// restart`: sets the pod-template annotation [`RESTARTED_AT_ANNOTATION`] to
    /// `restarted_at` (strategic merge patch), which makes the controller roll all
    /// pods. The caller passes one fixed value per run (e.g. the action's start
    /// time), so repeating the call finds the annotation in place and writes
    /// nothing (`changed: false`).
    pub async fn restart_deployment(
        &self,
        namespace: &str,
        name: &str,
        restarted_at: &str,
        dry_run: bool,
    ) -> Result<WriteOutcome> {
        if restarted_at.trim().is_empty() {
            return Err(Error::InvalidInput(format!("restartedAt value for deployment {namespace}/{name} is empty")));
        }
        let deployment = self.get_deployment(namespace, name).await?;
        let what = format!("deployment {namespace}/{name}");
        let current = deployment
            .spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.annotations.as_ref())
            .and_then(|a| a.get(RESTARTED_AT_ANNOTATION));
        if current.map(String::as_str) == Some(restarted_at) {
            return Ok(WriteOutcome { changed: false, dry_run, response: self.encode(&what, &deployment)? });
        }
        let patch = json!({ "spec": { "template": { "metadata": { "annotations": {
            RESTARTED_AT_ANNOTATION: restarted_at
        } } } } });
        tracing::info!(namespace, name, restarted_at, dry_run, "restarting deployment");
        let api: Api<Deployment> = Api::namespaced(self.kube_client(), namespace);
        let params = PatchParams { dry_run, ..PatchParams::default() };
        let answer = self.call_api(&what, api.patch(name, &params, &Patch::Strategic(&patch))).await?;
        Ok(WriteOutcome { changed: true, dry_run, response: self.encode(&what, &answer)? })
    }

    /// Patches Deployment `namespace/name` with a strategic merge patch (lists such
    /// as `containers` and `env` merge by name, so `{"spec":{"template":{"spec":
    /// {"containers":[{"name":"app","resources":...}]}}}}` touches one container).
    /// `patch` must be a JSON object; which fields it may touch is the caller's
    /// allow-list. `changed` compares the Deployment's `spec`, labels and
    /// annotations before and after (the deployment controller's own annotations, such
    /// as `deployment.kubernetes.io/revision`, which it rewrites concurrently, are left
    /// out); patching values already in place is a no-op.
    pub async fn patch_deployment(
        &self,
        namespace: &str,
        name: &str,
        patch: &Value,
        dry_run: bool,
    ) -> Result<WriteOutcome> {
        if !patch.is_object() {
            return Err(Error::InvalidInput(format!("patch for deployment {namespace}/{name} must be a JSON object")));
        }
        let before = self.get_deployment(namespace, name).await?;
        let what = format!("deployment {namespace}/{name}");
        tracing::info!(namespace, name, dry_run, "patching deployment");
        let api: Api<Deployment> = Api::namespaced(self.kube_client(), namespace);
        let params = PatchParams { dry_run, ..PatchParams::default() };
        let answer = self.call_api(&what, api.patch(name, &params, &Patch::Strategic(patch))).await?;
        let changed = before.spec != answer.spec
            || before.metadata.labels != answer.metadata.labels
            || user_annotations(&before) != user_annotations(&answer);
        Ok(WriteOutcome { changed, dry_run, response: self.encode(&what, &answer)? })
    }

    /// Lists the Pods of a namespace, optionally filtered by a label selector in
    /// the API's syntax (`app=web,tier!=cache`).
    pub async fn list_pods(&self, namespace: &str, label_selector: Option<&str>) -> Result<Vec<Pod>> {
        check_name("namespace", namespace)?;
        let api: Api<Pod> = Api::namespaced(self.kube_client(), namespace);
        let params = ListParams { label_selector: label_selector.map(str::to_string), ..ListParams::default() };
        let list = self.call_api(&format!("pods in {namespace}"), api.list(&params)).await?;
        Ok(list.items)
    }

    /// Reads a Pod.
    pub async fn get_pod(&self, namespace: &str, name: &str) -> Result<Pod> {
        check_name("namespace", namespace)?;
        check_name("pod name", name)?;
        let api: Api<Pod> = Api::namespaced(self.kube_client(), namespace);
        self.call_api(&format!("pod {namespace}/{name}"), api.get(name)).await
    }

    /// Deletes Pod `namespace/name` (its controller replaces it). With `uid` the
    /// deletion carries a UID precondition, so a replacement Pod that took the same
    /// name is never deleted: the server answers 409, surfaced as a conflict
    /// ([`Error::is_conflict`]). A Pod that is already gone (404) is success with
    /// `already_gone: true`. The default grace period applies.
    ///
    /// A Pod bound to a node is not gone when the API server accepts the deletion: it
    /// gets a `deletionTimestamp` and stays `Terminating` until its kubelet confirms
    /// that the containers stopped (never, on an unreachable node). So after a real
    /// deletion this reads the Pod until it is gone, or replaced by a Pod with another
    /// UID, for up to [`ActionWaits::pod_gone`]; when it is still there then, the
    /// outcome says so in `terminating`, with its deletion timestamp and grace period.
    /// Deleting a terminating Pod again is accepted and changes nothing.
    pub async fn delete_pod(
        &self,
        namespace: &str,
        name: &str,
        uid: Option<&str>,
        dry_run: bool,
    ) -> Result<DeleteOutcome> {
        check_name("namespace", namespace)?;
        check_name("pod name", name)?;
        if uid.is_some_and(|u| u.trim().is_empty()) {
            return Err(Error::InvalidInput(format!("UID precondition for pod {namespace}/{name} is empty")));
        }
        let what = format!("pod {namespace}/{name}");
        let params = DeleteParams {
            dry_run,
            preconditions: uid.map(|uid| Preconditions { uid: Some(uid.to_string()), resource_version: None }),
            ..DeleteParams::default()
        };
        tracing::info!(namespace, name, uid, dry_run, "deleting pod");
        let api: Api<Pod> = Api::namespaced(self.kube_client(), namespace);
        match self.call_api(&what, api.delete(name, &params)).await {
            Ok(answer) => {
                // A `Status` answer (not a Pod) means the object was deleted at once.
                let terminating = match answer.as_ref().left() {
                    Some(pod) if !dry_run => {
                        let uid = uid.or(pod.metadata.uid.as_deref());
                        self.wait_pod_gone(namespace, name, uid, terminating_of(pod)).await
                    }
                    _ => None,
                };
                let response = answer.either(serde_json::to_value, serde_json::to_value);
                Ok(DeleteOutcome {
                    already_gone: false,
                    terminating,
                    dry_run,
                    response: response.map_err(|e| self.encode_error(&what, e))?,
                })
            }
            Err(Error::Kube { status, reason, message }) if status == 404 => Ok(DeleteOutcome {
                already_gone: true,
                terminating: None,
                dry_run,
                response: json!({
                    "kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "code": status, "reason": reason, "message": message,
                }),
            }),
            Err(e) => Err(e),
        }
    }

    /// Reads Pod `namespace/name` until it is gone or has another UID than `uid`, for
    /// up to [`ActionWaits::pod_gone`]: `None` when it went, else how it still stands
    /// (`last` until a read says more). An error that retrying will not cure (such as
    /// 403 on `get`) ends the wait early: the Pod is then reported as terminating,
    /// because nothing showed that it is gone.
    async fn wait_pod_gone(
        &self,
        namespace: &str,
        name: &str,
        uid: Option<&str>,
        mut last: PodTerminating,
    ) -> Option<PodTerminating> {
        let deadline = Instant::now() + self.action_waits().pod_gone;
        let mut pause = Duration::from_millis(100);
        loop {
            match self.get_pod(namespace, name).await {
                Err(e) if e.is_not_found() => return None,
                Ok(pod) if uid.is_some() && pod.metadata.uid.as_deref() != uid => {
                    tracing::info!(namespace, name, "pod was replaced by one with another uid");
                    return None;
                }
                Ok(pod) => last = terminating_of(&pod),
                Err(e) if !e.is_retryable() => {
                    tracing::warn!(namespace, name, error = %e, "cannot tell whether the deleted pod is gone");
                    return Some(last);
                }
                Err(e) => {
                    tracing::debug!(namespace, name, error = %e, "reading the deleted pod failed; trying again");
                }
            }
            let now = Instant::now();
            if now >= deadline {
                tracing::info!(
                    namespace,
                    name,
                    deletion_timestamp = last.deletion_timestamp.as_deref(),
                    "pod is still terminating"
                );
                return Some(last);
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }

    /// Reads a Node.
    pub async fn get_node(&self, name: &str) -> Result<Node> {
        check_name("node name", name)?;
        let api: Api<Node> = Api::all(self.kube_client());
        self.call_api(&format!("node {name}"), api.get(name)).await
    }

    /// Cordons (`unschedulable: true`) or uncordons (`false`) a Node with a merge
    /// patch of `spec.unschedulable`, like `kubectl cordon` / `uncordon`. A Node
    /// already in that state is left alone (`changed: false`).
    pub async fn set_node_unschedulable(&self, name: &str, unschedulable: bool, dry_run: bool) -> Result<WriteOutcome> {
        let node = self.get_node(name).await?;
        let what = format!("node {name}");
        let current = node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false);
        if current == unschedulable {
            return Ok(WriteOutcome { changed: false, dry_run, response: self.encode(&what, &node)? });
        }
        tracing::info!(name, unschedulable, dry_run, "changing node schedulability");
        let api: Api<Node> = Api::all(self.kube_client());
        let params = PatchParams { dry_run, ..PatchParams::default() };
        let patch = json!({ "spec": { "unschedulable": unschedulable } });
        let answer = self.call_api(&what, api.patch(name, &params, &Patch::Merge(&patch))).await?;
        Ok(WriteOutcome { changed: true, dry_run, response: self.encode(&what, &answer)? })
    }

    /// Creates `job` in `namespace`. The Job must have a `metadata.name`: callers
    /// derive it from an idempotency key, so that a retried or resumed action finds the
    /// Job it created (409 `AlreadyExists`) rather than creating a second one. The Job
    /// must also carry labels that say whose it is (Warden's: the installation, the run
    /// and the step); an existing Job of that name is adopted (`created: false`) only
    /// when it carries every one of those labels with the same value. Any other Job of
    /// that name (made by hand, by another Warden installation or store, by another run)
    /// is never adopted: the call fails with [`Error::Precondition`] naming the labels
    /// that differ, and the Job is left alone. Other conflicts stay errors. The API
    /// server validates the Job, so an invalid one is a 422 `Invalid` error, in a dry
    /// run too.
    pub async fn create_job(&self, namespace: &str, job: &Job, dry_run: bool) -> Result<JobCreateOutcome> {
        check_name("namespace", namespace)?;
        let name = job.metadata.name.as_deref().unwrap_or_default();
        if name.is_empty() {
            return Err(Error::InvalidInput(format!(
                "a job created in {namespace} needs metadata.name (generateName is not idempotent)"
            )));
        }
        check_name("job name", name)?;
        if let Some(other) = job.metadata.namespace.as_deref() {
            if other != namespace {
                return Err(Error::InvalidInput(format!(
                    "job {name} names namespace {other:?} but is created in {namespace:?}"
                )));
            }
        }
        if job.metadata.labels.as_ref().is_none_or(|l| l.is_empty()) {
            return Err(Error::InvalidInput(format!(
                "job {namespace}/{name} needs labels that identify its creator (such as \
                 warden.io/run), so that a Job of the same name made by someone else is not \
                 taken for it"
            )));
        }
        let what = format!("job {namespace}/{name}");
        tracing::info!(namespace, name, dry_run, "creating job");
        let api: Api<Job> = Api::namespaced(self.kube_client(), namespace);
        let params = PostParams { dry_run, field_manager: None };
        let (created, job) = match self.call_api(&what, api.create(&params, job)).await {
            Ok(created) => (true, created),
            Err(Error::Kube { status: 409, reason, .. }) if reason == "AlreadyExists" => {
                let existing = self.get_job(namespace, name).await?;
                let differences = job_owner_differences(job, &existing);
                if !differences.is_empty() {
                    tracing::warn!(namespace, name, ?differences, "a job of this name exists and is not ours");
                    return Err(Error::Precondition {
                        object: what,
                        message: format!(
                            "a Job of this name already exists and was not created by this action \
                             ({}); it is not adopted and is left as it is",
                            differences.join("; ")
                        ),
                    });
                }
                tracing::info!(namespace, name, "job already exists (created earlier by this action)");
                (false, existing)
            }
            Err(e) => return Err(e),
        };
        Ok(JobCreateOutcome { created, dry_run, response: self.encode(&what, &job)?, job })
    }

    /// Reads a Job; [`job_phase`] says whether it finished.
    pub async fn get_job(&self, namespace: &str, name: &str) -> Result<Job> {
        check_name("namespace", namespace)?;
        check_name("job name", name)?;
        let api: Api<Job> = Api::namespaced(self.kube_client(), namespace);
        self.call_api(&format!("job {namespace}/{name}"), api.get(name)).await
    }

    fn encode<T: Serialize>(&self, what: &str, value: &T) -> Result<Value> {
        serde_json::to_value(value).map_err(|e| self.encode_error(what, e))
    }

    fn encode_error(&self, what: &str, e: serde_json::Error) -> Error {
        Error::Decode { url: self.describe_object(what), message: format!("cannot re-encode the object: {e}") }
    }
}

/// A pod template as the Deployment would carry it: without the ReplicaSet's
/// `pod-template-hash` label (and without an emptied label map).
fn without_hash_label(mut template: PodTemplateSpec) -> PodTemplateSpec {
    if let Some(metadata) = template.metadata.as_mut() {
        if let Some(labels) = metadata.labels.as_mut() {
            labels.remove(POD_TEMPLATE_HASH_LABEL);
            if labels.is_empty() {
                metadata.labels = None;
            }
        }
    }
    template
}

/// The RFC 7386 merge patch that turns `from` into `to`: changed and new keys are
/// set, keys missing from `to` are set to `null`, and anything that is not an
/// object on both sides (lists included) is replaced whole.
fn merge_patch_diff(from: &Value, to: &Value) -> Value {
    match (from, to) {
        (Value::Object(old), Value::Object(new)) => {
            let mut patch = serde_json::Map::new();
            for (key, old_value) in old {
                match new.get(key) {
                    None => {
                        patch.insert(key.clone(), Value::Null);
                    }
                    Some(new_value) if new_value != old_value => {
                        patch.insert(key.clone(), merge_patch_diff(old_value, new_value));
                    }
                    Some(_) => {}
                }
            }
            for (key, new_value) in new {
                if !old.contains_key(key) {
                    patch.insert(key.clone(), new_value.clone());
                }
            }
            Value::Object(patch)
        }
        _ => to.clone(),
    }
}

/// A rollback resolved from a Deployment and its ReplicaSets.
struct Resolution {
    plan: RollbackPlan,
    /// The Deployment's pod template without the hash label, as JSON.
    current: Value,
    /// The target ReplicaSet's pod template without the hash label, as JSON.
    wanted: Value,
}

/// Rejects a non-positive revision before anything is read.
fn check_revision(namespace: &str, name: &str, to_revision: Option<i64>) -> Result<()> {
    match to_revision {
        Some(revision) if revision <= 0 => Err(Error::InvalidInput(format!(
            "revision to roll deployment {namespace}/{name} back to must be positive, got {revision}"
        ))),
        _ => Ok(()),
    }
}

/// Why `existing` is not the Job `requested` describes: each label of the requested Job
/// that the existing one lacks or carries with another value. Empty when it is the same
/// Job (extra labels on the existing Job, added by admission or by hand, do not count).
pub fn job_owner_differences(requested: &Job, existing: &Job) -> Vec<String> {
    let theirs = existing.metadata.labels.as_ref();
    requested
        .metadata
        .labels
        .iter()
        .flatten()
        .filter_map(|(key, want)| match theirs.and_then(|l| l.get(key)) {
            Some(have) if have == want => None,
            Some(have) => Some(format!("label {key} is {have:?}, not {want:?}")),
            None => Some(format!("label {key} is missing (expected {want:?})")),
        })
        .collect()
}

/// How a Pod stands in its deletion, from its metadata.
fn terminating_of(pod: &Pod) -> PodTerminating {
    PodTerminating {
        deletion_timestamp: pod
            .metadata
            .deletion_timestamp
            .as_ref()
            .and_then(|t| serde_json::to_value(t).ok())
            .and_then(|v| v.as_str().map(str::to_string)),
        grace_period_seconds: pod.metadata.deletion_grace_period_seconds,
    }
}

/// The template of a ReplicaSet as the Deployment would carry it.
fn replicaset_template(replica_set: &ReplicaSet) -> Option<PodTemplateSpec> {
    replica_set.spec.as_ref().and_then(|s| s.template.clone()).map(without_hash_label)
}

/// The ReplicaSet whose pod template is `template` (newest revision first, should the
/// controller ever have left two).
fn current_replica_set<'a>(template: &PodTemplateSpec, replica_sets: &'a [ReplicaSet]) -> Option<&'a ReplicaSet> {
    replica_sets
        .iter()
        .filter(|rs| replicaset_template(rs).as_ref() == Some(template))
        .max_by_key(|rs| replicaset_revision(rs))
}

/// Resolves a rollback of `deployment` (`describe` names it for errors) from its
/// `replica_sets`: the current revision is the revision of the ReplicaSet with the
/// Deployment's template; the target is the ReplicaSet of `to_revision` (also found under
/// an older number in its `revision-history`), or for `None` the newest ReplicaSet with
/// another template.
fn resolve_rollback(
    describe: &str,
    namespace: &str,
    name: &str,
    deployment: &Deployment,
    replica_sets: &[ReplicaSet],
    to_revision: Option<i64>,
) -> Result<Resolution> {
    let encode = |template: &PodTemplateSpec| {
        serde_json::to_value(template).map_err(|e| Error::Decode {
            url: describe.to_string(),
            message: format!("cannot re-encode the pod template: {e}"),
        })
    };
    let template = deployment.spec.as_ref().map(|s| without_hash_label(s.template.clone())).ok_or_else(|| {
        Error::Decode { url: describe.to_string(), message: "the deployment has no spec".to_string() }
    })?;
    let known: Vec<i64> = replica_sets.iter().filter_map(replicaset_revision).collect();
    let from_revision =
        current_replica_set(&template, replica_sets).and_then(replicaset_revision).ok_or_else(|| Error::Timeout {
            url: format!(
                "{describe}: the deployment controller has not yet recorded a revision for the \
                 current pod template (known revisions: {})",
                list_revisions(&known)
            ),
            after: None,
        })?;
    let target = match to_revision {
        Some(revision) => replica_sets
            .iter()
            .find(|rs| replicaset_revision(rs) == Some(revision))
            .or_else(|| {
                replica_sets
                    .iter()
                    .filter(|rs| revision_history(rs).contains(&revision))
                    .max_by_key(|rs| replicaset_revision(rs))
            })
            .ok_or_else(|| {
                Error::InvalidInput(format!(
                    "deployment {namespace}/{name} has no revision {revision} (known revisions: {})",
                    list_revisions(&known)
                ))
            })?,
        None => replica_sets
            .iter()
            .filter(|rs| replicaset_revision(rs).is_some())
            .filter(|rs| replicaset_template(rs).as_ref() != Some(&template))
            .max_by_key(|rs| replicaset_revision(rs))
            .ok_or_else(|| {
                Error::InvalidInput(format!(
                    "deployment {namespace}/{name} has no revision older than {from_revision} \
                     to roll back to (known revisions: {})",
                    list_revisions(&known)
                ))
            })?,
    };
    let to_revision = to_revision.or_else(|| replicaset_revision(target)).unwrap_or(from_revision);
    let replica_set = target.metadata.name.clone().unwrap_or_default();
    let wanted = replicaset_template(target).ok_or_else(|| {
        Error::InvalidInput(format!(
            "replica set {namespace}/{replica_set} of revision {to_revision} has no pod template"
        ))
    })?;
    let current = encode(&template)?;
    let wanted = encode(&wanted)?;
    Ok(Resolution {
        plan: RollbackPlan { from_revision, to_revision, replica_set, unchanged: current == wanted },
        current,
        wanted,
    })
}

/// The pause before attempt `attempt + 1` after a conflict: 50 ms doubling up to 1 s,
/// jittered to between half and all of it, so that writers that collided do not collide
/// again in step.
fn conflict_backoff(attempt: u32) -> Duration {
    let base =
        Duration::from_millis(50).saturating_mul(1u32 << attempt.saturating_sub(1).min(5)).min(Duration::from_secs(1));
    let half = base / 2;
    half + half.mul_f64(rand::random::<f64>())
}

/// A label selector in the API's query syntax; `None` for an empty selector.
pub(crate) fn selector_string(selector: &LabelSelector) -> Result<Option<String>> {
    let mut terms: Vec<String> = selector.match_labels.iter().flatten().map(|(k, v)| format!("{k}={v}")).collect();
    for expr in selector.match_expressions.iter().flatten() {
        let values = expr.values.as_deref().unwrap_or_default().join(",");
        terms.push(match expr.operator.as_str() {
            "In" => format!("{} in ({values})", expr.key),
            "NotIn" => format!("{} notin ({values})", expr.key),
            "Exists" => expr.key.clone(),
            "DoesNotExist" => format!("!{}", expr.key),
            other => {
                return Err(Error::InvalidInput(format!(
                    "unsupported label selector operator {other:?} for key {:?}",
                    expr.key
                )))
            }
        });
    }
    Ok((!terms.is_empty()).then(|| terms.join(",")))
}

fn list_revisions(revisions: &[i64]) -> String {
    if revisions.is_empty() {
        return "none".to_string();
    }
    let mut sorted = revisions.to_vec();
    sorted.sort_unstable();
    sorted.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")
}

/// A Deployment's annotations without those its controller writes
/// (`deployment.kubernetes.io/...`): they change on their own, concurrently with
/// any patch, and say nothing about whether the patch changed anything.
fn user_annotations(d: &Deployment) -> std::collections::BTreeMap<&str, &str> {
    d.metadata
        .annotations
        .iter()
        .flatten()
        .filter(|(k, _)| !k.starts_with("deployment.kubernetes.io/"))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::{JobCondition, JobSpec, JobStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn job(status: JobStatus) -> Job {
        Job {
            spec: Some(JobSpec { backoff_limit: Some(2), ..JobSpec::default() }),
            status: Some(status),
            ..Job::default()
        }
    }

    fn condition(kind: &str, status: &str, reason: Option<&str>) -> JobCondition {
        JobCondition {
            type_: kind.to_string(),
            status: status.to_string(),
            reason: reason.map(str::to_string),
            message: reason.map(|r| format!("because {r}")),
            ..JobCondition::default()
        }
    }

    #[test]
    fn job_phase_follows_conditions_then_counts() {
        assert_eq!(job_phase(&Job::default()), JobPhase::Running);
        let active = job(JobStatus { active: Some(1), failed: Some(2), ..JobStatus::default() });
        assert_eq!(job_phase(&active), JobPhase::Running);
        let complete = job(JobStatus {
            conditions: Some(vec![condition("Complete", "True", None)]),
            succeeded: Some(1),
            ..JobStatus::default()
        });
        assert_eq!(job_phase(&complete), JobPhase::Succeeded);
        let not_yet =
            job(JobStatus { conditions: Some(vec![condition("Complete", "False", None)]), ..JobStatus::default() });
        assert_eq!(job_phase(&not_yet), JobPhase::Running);
        let failed = job(JobStatus {
            conditions: Some(vec![
                condition("FailureTarget", "True", Some("DeadlineExceeded")),
                condition("Failed", "True", Some("DeadlineExceeded")),
            ]),
            ..JobStatus::default()
        });
        assert_eq!(
            job_phase(&failed),
            JobPhase::Failed { reason: "DeadlineExceeded".into(), message: "because DeadlineExceeded".into() }
        );
        let by_count = job(JobStatus { failed: Some(3), ..JobStatus::default() });
        assert!(matches!(job_phase(&by_count), JobPhase::Failed { reason, .. } if reason == "BackoffLimitExceeded"));
        let succeeded_by_count = job(JobStatus { succeeded: Some(1), ..JobStatus::default() });
        assert_eq!(job_phase(&succeeded_by_count), JobPhase::Succeeded);
    }

    #[test]
    fn merge_patch_diff_replaces_exactly() {
        let from = json!({"metadata": {"labels": {"app": "web", "x": "1"}},
                          "spec": {"containers": [{"name": "web", "image": "a"}], "dnsPolicy": "Default"}});
        let to = json!({"metadata": {"labels": {"app": "web"}, "annotations": {"k": "v"}},
                        "spec": {"containers": [{"name": "web", "image": "b"}]}});
        let patch = merge_patch_diff(&from, &to);
        assert_eq!(
            patch,
            json!({"metadata": {"labels": {"x": null}, "annotations": {"k": "v"}},
                   "spec": {"containers": [{"name": "web", "image": "b"}], "dnsPolicy": null}})
        );
    }

    #[test]
    fn selectors_render_in_query_syntax() {
        let selector = LabelSelector {
            match_labels: Some([("app".to_string(), "web".to_string())].into()),
            match_expressions: Some(vec![
                LabelSelectorRequirement {
                    key: "tier".into(),
                    operator: "In".into(),
                    values: Some(vec!["a".into(), "b".into()]),
                },
                LabelSelectorRequirement { key: "canary".into(), operator: "DoesNotExist".into(), values: None },
            ]),
        };
        assert_eq!(selector_string(&selector).ok().flatten().as_deref(), Some("app=web,tier in (a,b),!canary"));
        assert_eq!(selector_string(&LabelSelector::default()).ok().flatten(), None);
        let bad = LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "k".into(),
                operator: "Near".into(),
                values: None,
            }]),
            ..LabelSelector::default()
        };
        assert!(selector_string(&bad).is_err());
    }

    fn replica_set(name: &str, revision: i64, history: Option<&str>, image: &str) -> ReplicaSet {
        let mut annotations =
            std::collections::BTreeMap::from([(REVISION_ANNOTATION.to_string(), revision.to_string())]);
        if let Some(h) = history {
            annotations.insert(REVISION_HISTORY_ANNOTATION.to_string(), h.to_string());
        }
        let value = json!({
            "metadata": {"name": name, "annotations": annotations},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web", POD_TEMPLATE_HASH_LABEL: name}},
                                  "spec": {"containers": [{"name": "web", "image": image}]}}},
        });
        serde_json::from_value(value).unwrap()
    }

    fn deployment(annotation: i64, image: &str) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "annotations": {REVISION_ANNOTATION: annotation.to_string()}},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "web", "image": image}]}}},
        }))
        .unwrap()
    }

    fn plan(d: &Deployment, sets: &[ReplicaSet], to: Option<i64>) -> Result<RollbackPlan> {
        resolve_rollback("api (deployment shop/web)", "shop", "web", d, sets, to).map(|r| r.plan)
    }

    #[test]
    fn rollback_revisions_come_from_the_replica_sets_not_the_annotation() {
        // A rollback from v2 (revision 2) to v1: the controller renumbered v1's ReplicaSet
        // to 3 but has not yet updated the Deployment's annotation, which still says 2.
        let sets = [replica_set("web-a", 3, Some("1"), "web:1"), replica_set("web-b", 2, None, "web:2")];
        let lagging = deployment(2, "web:1");
        let p = plan(&lagging, &sets, None).unwrap();
        assert_eq!((p.from_revision, p.to_revision, p.replica_set.as_str(), p.unchanged), (3, 2, "web-b", false));
        // The same target by its old number, through revision-history: already in place.
        let p = plan(&lagging, &sets, Some(1)).unwrap();
        assert_eq!((p.from_revision, p.to_revision, p.replica_set.as_str(), p.unchanged), (3, 1, "web-a", true));
        let p = plan(&lagging, &sets, Some(3)).unwrap();
        assert!(p.unchanged);
        let err = plan(&lagging, &sets, Some(7)).unwrap_err();
        assert!(err.to_string().contains("no revision 7 (known revisions: 2, 3)"), "{err}");
        // Only one revision: nothing to go back to.
        let err = plan(&deployment(1, "web:1"), &[replica_set("web-a", 1, None, "web:1")], None).unwrap_err();
        assert!(matches!(err, Error::InvalidInput(_)) && err.to_string().contains("no revision older than 1"), "{err}");
        // No ReplicaSet with the current template yet: the controller is behind (retryable).
        let err = plan(&deployment(2, "web:9"), &sets, None).unwrap_err();
        assert!(err.is_retryable(), "{err}");
    }

    #[test]
    fn a_job_is_ours_only_with_every_requested_label() {
        let with = |labels: &[(&str, &str)]| Job {
            metadata: ObjectMeta {
                labels: Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
                ..ObjectMeta::default()
            },
            ..Job::default()
        };
        let ours = with(&[("warden.io/run", "16"), ("warden.io/installation", "abc")]);
        assert!(job_owner_differences(
            &ours,
            &with(&[("warden.io/run", "16"), ("warden.io/installation", "abc"), ("extra", "x")])
        )
        .is_empty());
        let other_store =
            job_owner_differences(&ours, &with(&[("warden.io/run", "16"), ("warden.io/installation", "def")]));
        assert_eq!(other_store, vec!["label warden.io/installation is \"def\", not \"abc\"".to_string()]);
        let by_hand = job_owner_differences(&ours, &Job::default());
        assert_eq!(by_hand.len(), 2, "{by_hand:?}");
    }

    #[test]
    fn conflict_backoff_grows_with_jitter_and_a_cap() {
        for attempt in 1..=10 {
            let base = Duration::from_millis(50 * (1u64 << (attempt - 1).min(5))).min(Duration::from_secs(1));
            let pause = conflict_backoff(attempt);
            assert!(pause >= base / 2 && pause <= base, "attempt {attempt}: {pause:?} vs {base:?}");
        }
    }

    #[test]
    fn hash_label_is_dropped() {
        let template = PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(
                    [("app".to_string(), "web".to_string()), (POD_TEMPLATE_HASH_LABEL.to_string(), "abc".to_string())]
                        .into(),
                ),
                ..ObjectMeta::default()
            }),
            spec: None,
        };
        let labels = without_hash_label(template).metadata.and_then(|m| m.labels);
        assert_eq!(labels, Some([("app".to_string(), "web".to_string())].into()));
    }
}
