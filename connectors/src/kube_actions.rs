//! The Kubernetes remediation actions of Warden's playbooks, beyond scaling.
//!
//! Playbooks roll a Deployment back (and forward again when the rollback is
//! reverted), restart it, delete a stuck Pod, cordon or uncordon a Node, run a
//! one-off Job, or patch a few allow-listed Deployment fields. Every action here
//! follows the same three rules, because the agent retries actions after crashes
//! and timeouts and an operator may run the same playbook twice:
//!
//! * **Dry run.** Each write takes `dry_run`; it is passed to the API server as
//!   `dryRun=All`, so admission, validation and conflicts are checked by the server
//!   itself while nothing is persisted. A dry run answers the would-be object.
//! * **Idempotence.** Repeating an action after it succeeded changes nothing and is
//!   not an error: a rollback whose target template is already in place, a restart
//!   with the same `restartedAt` value, a cordon of a cordoned Node, a Pod that is
//!   already gone, a Job whose (idempotency-key) name already exists. Outcomes say
//!   whether anything changed (`changed`, `already_gone`, `created`).
//! * **No blind overwrites.** A rollback patches with the Deployment's
//!   `metadata.resourceVersion`, and a Pod deletion can carry a UID precondition, so
//!   a concurrent change answers 409 (see [`Error::is_conflict`]) instead of being
//!   clobbered or hitting a replacement Pod of the same name.
//!
//! Writes return the API server's answer as JSON (`response`) for the audit trail.
//! Which fields a playbook may patch is the caller's policy, not this module's.
//! Reads and writes go through [`KubeClient`], with its per-call timeout and its
//! error mapping into [`Error`].

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

/// What [`KubeClient::rollback_deployment`] did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RollbackOutcome {
    /// The Deployment's revision before the call.
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
    /// The Deployment returned by the API server (or as read, when unchanged).
    pub response: Value,
}

/// What [`KubeClient::delete_pod`] did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeleteOutcome {
    /// The Pod did not exist (any more): the API server answered 404. Not an error.
    pub already_gone: bool,
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
    metadata
        .annotations
        .as_ref()?
        .get(REVISION_ANNOTATION)?
        .trim()
        .parse()
        .ok()
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
    let conditions = status
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    let holding = |kind: &str| {
        conditions
            .iter()
            .find(|c| c.type_ == kind && c.status == "True")
    };
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
        self.call_api(&format!("deployment {namespace}/{name}"), api.get(name))
            .await
    }

    /// The ReplicaSets of Deployment `namespace/name`: those in its namespace that
    /// match its selector and whose controller owner reference carries its UID
    /// (what `kubectl rollout history` looks at), sorted by revision (ReplicaSets
    /// without one first), then name.
    pub async fn list_replicasets_of(
        &self,
        namespace: &str,
        deployment: &str,
    ) -> Result<Vec<ReplicaSet>> {
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
        let uid = deployment
            .metadata
            .uid
            .as_deref()
            .ok_or_else(|| Error::Decode {
                url: self.describe_object(&what),
                message: "the deployment has no metadata.uid".to_string(),
            })?;
        let selector = match deployment.spec.as_ref() {
            Some(spec) => selector_string(&spec.selector)?,
            None => None,
        };
        let params = ListParams {
            label_selector: selector,
            ..ListParams::default()
        };
        let api: Api<ReplicaSet> = Api::namespaced(self.kube_client(), namespace);
        let list = self.call_api(&what, api.list(&params)).await?;
        let mut owned: Vec<ReplicaSet> = list
            .items
            .into_iter()
            .filter(|rs| {
                rs.metadata.owner_references.as_ref().is_some_and(|refs| {
                    refs.iter()
                        .any(|r| r.controller == Some(true) && r.uid == uid)
                })
            })
            .collect();
        owned.sort_by(|a, b| {
            (replicaset_revision(a), &a.metadata.name)
                .cmp(&(replicaset_revision(b), &b.metadata.name))
        });
        Ok(owned)
    }

    /// Rolls Deployment `namespace/name` back to an earlier revision, as
    /// `kubectl rollout undo [--to-revision]` does: the pod template of the
    /// ReplicaSet of that revision (without its `pod-template-hash` label) replaces
    /// the Deployment's `spec.template`, and the deployment controller then rolls
    /// the pods and makes that ReplicaSet the newest revision.
    ///
    /// `to_revision: None` picks the highest revision below the current one. That
    /// choice depends on the current state (like repeated `rollout undo`, calling
    /// it twice toggles), so a retry must pass the outcome's
    /// `Some(to_revision)`: a revision is also found after the controller renumbered
    /// its ReplicaSet (through the `revision-history` annotation), and when the
    /// Deployment already has the target template nothing is written
    /// (`changed: false`). Rolling *forward* again, the revert of a rollback, is a
    /// rollback to the outcome's `from_revision`.
    ///
    /// The patch is a JSON merge patch carrying the `metadata.resourceVersion` that
    /// was read, so a concurrent change of the Deployment answers 409 Conflict.
    /// Unknown revisions, a paused Deployment and a Deployment without an older
    /// revision are [`Error::InvalidInput`].
    pub async fn rollback_deployment(
        &self,
        namespace: &str,
        name: &str,
        to_revision: Option<i64>,
        dry_run: bool,
    ) -> Result<RollbackOutcome> {
        if let Some(revision) = to_revision {
            if revision <= 0 {
                return Err(Error::InvalidInput(format!(
                    "revision to roll deployment {namespace}/{name} back to must be positive, got {revision}"
                )));
            }
        }
        let deployment = self.get_deployment(namespace, name).await?;
        let what = format!("deployment {namespace}/{name}");
        let spec = deployment.spec.as_ref().ok_or_else(|| Error::Decode {
            url: self.describe_object(&what),
            message: "the deployment has no spec".to_string(),
        })?;
        if spec.paused == Some(true) {
            return Err(Error::InvalidInput(format!(
                "deployment {namespace}/{name} is paused; resume it before rolling it back"
            )));
        }
        let replica_sets = self.replicasets_owned_by(namespace, &deployment).await?;
        let known: Vec<i64> = replica_sets
            .iter()
            .filter_map(replicaset_revision)
            .collect();
        let from_revision = deployment_revision(&deployment)
            .or_else(|| known.iter().copied().max())
            .ok_or_else(|| {
                Error::InvalidInput(format!(
                    "deployment {namespace}/{name} has no rollout revisions"
                ))
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
                .filter(|rs| replicaset_revision(rs).is_some_and(|r| r < from_revision))
                .max_by_key(|rs| replicaset_revision(rs))
                .ok_or_else(|| {
                    Error::InvalidInput(format!(
                        "deployment {namespace}/{name} has no revision older than {from_revision} \
                         to roll back to (known revisions: {})",
                        list_revisions(&known)
                    ))
                })?,
        };
        let to_revision = to_revision
            .or_else(|| replicaset_revision(target))
            .unwrap_or(from_revision);
        let replica_set = target.metadata.name.clone().unwrap_or_default();
        let target_template = target
            .spec
            .as_ref()
            .and_then(|s| s.template.clone())
            .ok_or_else(|| {
                Error::InvalidInput(format!(
                    "replica set {namespace}/{replica_set} of revision {to_revision} has no pod template"
                ))
            })?;
        let current = self.encode(&what, &spec.template)?;
        let wanted = self.encode(&what, &without_hash_label(target_template))?;
        if self.encode(&what, &without_hash_label(spec.template.clone()))? == wanted {
            tracing::info!(
                namespace,
                name,
                to_revision,
                "deployment already has the template of the target revision"
            );
            return Ok(RollbackOutcome {
                from_revision,
                to_revision,
                replica_set,
                changed: false,
                dry_run,
                response: self.encode(&what, &deployment)?,
            });
        }
        let mut patch = json!({ "spec": { "template": merge_patch_diff(&current, &wanted) } });
        if let Some(rv) = &deployment.metadata.resource_version {
            patch["metadata"] = json!({ "resourceVersion": rv });
        }
        tracing::info!(
            namespace,
            name,
            from_revision,
            to_revision,
            replica_set,
            dry_run,
            "rolling deployment back"
        );
        let api: Api<Deployment> = Api::namespaced(self.kube_client(), namespace);
        let params = PatchParams {
            dry_run,
            ..PatchParams::default()
        };
        let answer = self
            .call_api(&what, api.patch(name, &params, &Patch::Merge(&patch)))
            .await?;
        Ok(RollbackOutcome {
            from_revision,
            to_revision,
            replica_set,
            changed: true,
            dry_run,
            response: self.encode(&what, &answer)?,
        })
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
            return Err(Error::InvalidInput(format!(
                "restartedAt value for deployment {namespace}/{name} is empty"
            )));
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
            return Ok(WriteOutcome {
                changed: false,
                dry_run,
                response: self.encode(&what, &deployment)?,
            });
        }
        let patch = json!({ "spec": { "template": { "metadata": { "annotations": {
            RESTARTED_AT_ANNOTATION: restarted_at
        } } } } });
        tracing::info!(
            namespace,
            name,
            restarted_at,
            dry_run,
            "restarting deployment"
        );
        let api: Api<Deployment> = Api::namespaced(self.kube_client(), namespace);
        let params = PatchParams {
            dry_run,
            ..PatchParams::default()
        };
        let answer = self
            .call_api(&what, api.patch(name, &params, &Patch::Strategic(&patch)))
            .await?;
        Ok(WriteOutcome {
            changed: true,
            dry_run,
            response: self.encode(&what, &answer)?,
        })
    }

    /// Patches Deployment `namespace/name` with a strategic merge patch (lists such
    /// as `containers` and `env` merge by name, so `{"spec":{"template":{"spec":
    /// {"containers":[{"name":"app","resources":...}]}}}}` touches one container).
    /// `patch` must be a JSON object; which fields it may touch is the caller's
    /// allow-list. `changed` compares the Deployment's `spec`, labels and
    /// annotations before and after; patching values already in place is a no-op.
    pub async fn patch_deployment(
        &self,
        namespace: &str,
        name: &str,
        patch: &Value,
        dry_run: bool,
    ) -> Result<WriteOutcome> {
        if !patch.is_object() {
            return Err(Error::InvalidInput(format!(
                "patch for deployment {namespace}/{name} must be a JSON object"
            )));
        }
        let before = self.get_deployment(namespace, name).await?;
        let what = format!("deployment {namespace}/{name}");
        tracing::info!(namespace, name, dry_run, "patching deployment");
        let api: Api<Deployment> = Api::namespaced(self.kube_client(), namespace);
        let params = PatchParams {
            dry_run,
            ..PatchParams::default()
        };
        let answer = self
            .call_api(&what, api.patch(name, &params, &Patch::Strategic(patch)))
            .await?;
        let changed = before.spec != answer.spec
            || before.metadata.labels != answer.metadata.labels
            || before.metadata.annotations != answer.metadata.annotations;
        Ok(WriteOutcome {
            changed,
            dry_run,
            response: self.encode(&what, &answer)?,
        })
    }

    /// Lists the Pods of a namespace, optionally filtered by a label selector in
    /// the API's syntax (`app=web,tier!=cache`).
    pub async fn list_pods(
        &self,
        namespace: &str,
        label_selector: Option<&str>,
    ) -> Result<Vec<Pod>> {
        check_name("namespace", namespace)?;
        let api: Api<Pod> = Api::namespaced(self.kube_client(), namespace);
        let params = ListParams {
            label_selector: label_selector.map(str::to_string),
            ..ListParams::default()
        };
        let list = self
            .call_api(&format!("pods in {namespace}"), api.list(&params))
            .await?;
        Ok(list.items)
    }

    /// Reads a Pod.
    pub async fn get_pod(&self, namespace: &str, name: &str) -> Result<Pod> {
        check_name("namespace", namespace)?;
        check_name("pod name", name)?;
        let api: Api<Pod> = Api::namespaced(self.kube_client(), namespace);
        self.call_api(&format!("pod {namespace}/{name}"), api.get(name))
            .await
    }

    /// Deletes Pod `namespace/name` (its controller replaces it). With `uid` the
    /// deletion carries a UID precondition, so a replacement Pod that took the same
    /// name is never deleted: the server answers 409, surfaced as a conflict
    /// ([`Error::is_conflict`]). A Pod that is already gone (404) is success with
    /// `already_gone: true`. The default grace period applies.
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
            return Err(Error::InvalidInput(format!(
                "UID precondition for pod {namespace}/{name} is empty"
            )));
        }
        let what = format!("pod {namespace}/{name}");
        let params = DeleteParams {
            dry_run,
            preconditions: uid.map(|uid| Preconditions {
                uid: Some(uid.to_string()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        tracing::info!(namespace, name, uid, dry_run, "deleting pod");
        let api: Api<Pod> = Api::namespaced(self.kube_client(), namespace);
        match self.call_api(&what, api.delete(name, &params)).await {
            Ok(answer) => {
                let response = answer.either(serde_json::to_value, serde_json::to_value);
                Ok(DeleteOutcome {
                    already_gone: false,
                    dry_run,
                    response: response.map_err(|e| self.encode_error(&what, e))?,
                })
            }
            Err(Error::Kube {
                status,
                reason,
                message,
            }) if status == 404 => Ok(DeleteOutcome {
                already_gone: true,
                dry_run,
                response: json!({
                    "kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "code": status, "reason": reason, "message": message,
                }),
            }),
            Err(e) => Err(e),
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
    pub async fn set_node_unschedulable(
        &self,
        name: &str,
        unschedulable: bool,
        dry_run: bool,
    ) -> Result<WriteOutcome> {
        let node = self.get_node(name).await?;
        let what = format!("node {name}");
        let current = node
            .spec
            .as_ref()
            .and_then(|s| s.unschedulable)
            .unwrap_or(false);
        if current == unschedulable {
            return Ok(WriteOutcome {
                changed: false,
                dry_run,
                response: self.encode(&what, &node)?,
            });
        }
        tracing::info!(name, unschedulable, dry_run, "changing node schedulability");
        let api: Api<Node> = Api::all(self.kube_client());
        let params = PatchParams {
            dry_run,
            ..PatchParams::default()
        };
        let patch = json!({ "spec": { "unschedulable": unschedulable } });
        let answer = self
            .call_api(&what, api.patch(name, &params, &Patch::Merge(&patch)))
            .await?;
        Ok(WriteOutcome {
            changed: true,
            dry_run,
            response: self.encode(&what, &answer)?,
        })
    }

    /// Creates `job` in `namespace`. The Job must have a `metadata.name`: callers
    /// derive it from an idempotency key, and when a Job of that name already
    /// exists (409 `AlreadyExists`) it is read and returned with `created: false`
    /// rather than failing; whether it is the same Job is the caller's check (e.g.
    /// a label). Other conflicts stay errors. The API server validates the Job, so
    /// an invalid one is a 422 `Invalid` error, in a dry run too.
    pub async fn create_job(
        &self,
        namespace: &str,
        job: &Job,
        dry_run: bool,
    ) -> Result<JobCreateOutcome> {
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
        let what = format!("job {namespace}/{name}");
        tracing::info!(namespace, name, dry_run, "creating job");
        let api: Api<Job> = Api::namespaced(self.kube_client(), namespace);
        let params = PostParams {
            dry_run,
            field_manager: None,
        };
        let (created, job) = match self.call_api(&what, api.create(&params, job)).await {
            Ok(created) => (true, created),
            Err(Error::Kube {
                status: 409,
                reason,
                ..
            }) if reason == "AlreadyExists" => {
                tracing::info!(namespace, name, "job already exists");
                (false, self.get_job(namespace, name).await?)
            }
            Err(e) => return Err(e),
        };
        Ok(JobCreateOutcome {
            created,
            dry_run,
            response: self.encode(&what, &job)?,
            job,
        })
    }

    /// Reads a Job; [`job_phase`] says whether it finished.
    pub async fn get_job(&self, namespace: &str, name: &str) -> Result<Job> {
        check_name("namespace", namespace)?;
        check_name("job name", name)?;
        let api: Api<Job> = Api::namespaced(self.kube_client(), namespace);
        self.call_api(&format!("job {namespace}/{name}"), api.get(name))
            .await
    }

    fn encode<T: Serialize>(&self, what: &str, value: &T) -> Result<Value> {
        serde_json::to_value(value).map_err(|e| self.encode_error(what, e))
    }

    fn encode_error(&self, what: &str, e: serde_json::Error) -> Error {
        Error::Decode {
            url: self.describe_object(what),
            message: format!("cannot re-encode the object: {e}"),
        }
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

/// A label selector in the API's query syntax; `None` for an empty selector.
pub(crate) fn selector_string(selector: &LabelSelector) -> Result<Option<String>> {
    let mut terms: Vec<String> = selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
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
    sorted
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::{JobCondition, JobSpec, JobStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn job(status: JobStatus) -> Job {
        Job {
            spec: Some(JobSpec {
                backoff_limit: Some(2),
                ..JobSpec::default()
            }),
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
        let active = job(JobStatus {
            active: Some(1),
            failed: Some(2),
            ..JobStatus::default()
        });
        assert_eq!(job_phase(&active), JobPhase::Running);
        let complete = job(JobStatus {
            conditions: Some(vec![condition("Complete", "True", None)]),
            succeeded: Some(1),
            ..JobStatus::default()
        });
        assert_eq!(job_phase(&complete), JobPhase::Succeeded);
        let not_yet = job(JobStatus {
            conditions: Some(vec![condition("Complete", "False", None)]),
            ..JobStatus::default()
        });
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
            JobPhase::Failed {
                reason: "DeadlineExceeded".into(),
                message: "because DeadlineExceeded".into()
            }
        );
        let by_count = job(JobStatus {
            failed: Some(3),
            ..JobStatus::default()
        });
        assert!(
            matches!(job_phase(&by_count), JobPhase::Failed { reason, .. } if reason == "BackoffLimitExceeded")
        );
        let succeeded_by_count = job(JobStatus {
            succeeded: Some(1),
            ..JobStatus::default()
        });
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
                LabelSelectorRequirement {
                    key: "canary".into(),
                    operator: "DoesNotExist".into(),
                    values: None,
                },
            ]),
        };
        assert_eq!(
            selector_string(&selector).ok().flatten().as_deref(),
            Some("app=web,tier in (a,b),!canary")
        );
        assert_eq!(
            selector_string(&LabelSelector::default()).ok().flatten(),
            None
        );
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

    #[test]
    fn hash_label_is_dropped() {
        let template = PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(
                    [
                        ("app".to_string(), "web".to_string()),
                        (POD_TEMPLATE_HASH_LABEL.to_string(), "abc".to_string()),
                    ]
                    .into(),
                ),
                ..ObjectMeta::default()
            }),
            spec: None,
        };
        let labels = without_hash_label(template).metadata.and_then(|m| m.labels);
        assert_eq!(
            labels,
            Some([("app".to_string(), "web".to_string())].into())
        );
    }
}
