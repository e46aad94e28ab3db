//! The seam between action logic and the cluster API.
//!
//! Keeping the cluster behind a small trait lets the same executor run against the real
//! Kubernetes API, a local test server, or the demo's in-process simulation.

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// A Deployment, by namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WorkloadRef {
    pub namespace: String,
    pub name: String,
}

impl WorkloadRef {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self { namespace: namespace.into(), name: name.into() }
    }
}

impl fmt::Display for WorkloadRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Replica counts as the cluster reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ReplicaState {
    /// Desired replicas (`spec.replicas` of the scale subresource).
    pub desired: i32,
    /// Observed replicas (`status.replicas`).
    pub current: i32,
}

/// What the cluster answered to a replica change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SetReplicasOutcome {
    pub replicas: i32,
    pub dry_run: bool,
    /// The API server's response body, kept for the audit trail.
    pub response: serde_json::Value,
}

/// How a cluster request failed, coarse enough for policy decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClusterErrorKind {
    NotFound,
    Conflict,
    Forbidden,
    /// Worth retrying later: timeouts, 5xx, 429, connection failures.
    Transient,
    Other,
}

/// A failed cluster request.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cluster request failed ({kind:?}): {message}")]
pub struct ClusterError {
    pub kind: ClusterErrorKind,
    pub message: String,
}

impl ClusterError {
    pub fn new(kind: ClusterErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into() }
    }
}

/// A Deployment's facts the guards and the automatic revert need.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeploymentInfo {
    pub labels: BTreeMap<String, String>,
    /// `deployment.kubernetes.io/revision`.
    pub revision: Option<i64>,
    pub replicas: i32,
}

/// What a rollback did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RollbackResult {
    pub from_revision: i64,
    pub to_revision: i64,
    /// False when the Deployment already ran the target revision's template.
    pub changed: bool,
    pub response: serde_json::Value,
}

/// A pod, as the actions need it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PodInfo {
    pub name: String,
    pub uid: String,
    pub labels: BTreeMap<String, String>,
    pub node: Option<String>,
}

/// A deleted pod that still exists: the deletion was accepted, but its node has not yet
/// confirmed that the containers stopped (or cannot: an unreachable node).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PodTerminating {
    /// When the grace period ends (`metadata.deletionTimestamp`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deletion_timestamp: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grace_period_seconds: Option<i64>,
}

/// What a pod deletion did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeleteResult {
    /// The pod did not exist any more (deleted earlier, e.g. before a crash).
    pub already_gone: bool,
    /// The pod was still there, terminating, when the cluster stopped waiting for it to go;
    /// `None` when it is gone (or replaced by a pod with another uid).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub terminating: Option<PodTerminating>,
    pub response: serde_json::Value,
}

/// The revisions a rollback goes from and to, resolved without changing anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RollbackPlan {
    pub from_revision: i64,
    pub to_revision: i64,
}

/// What a Job creation did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobCreated {
    /// False when a Job of that name already existed (created before a crash).
    pub created: bool,
    pub response: serde_json::Value,
}

/// Where a Job is.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum JobPhase {
    Running,
    Succeeded,
    Failed { reason: String },
}

/// A Job's phase and its status object (kept as the step's result).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobStatus {
    pub phase: JobPhase,
    pub status: serde_json::Value,
}

fn unsupported(what: &str) -> ClusterError {
    ClusterError::new(ClusterErrorKind::Other, format!("this cluster does not support {what}"))
}

/// The operations actions need from a cluster. Implementations must be idempotent: setting
/// the replica count a workload already has, rolling back to the revision it runs, cordoning
/// a cordoned node, deleting a deleted pod and creating an existing Job all succeed without a
/// second change. Writes take `dry_run` (Kubernetes server-side dry-run: validated, never
/// persisted). Operations a cluster does not implement answer an error, never a silent no-op.
#[async_trait]
pub trait Cluster: Send + Sync {
    async fn get_replicas(&self, target: &WorkloadRef) -> Result<ReplicaState, ClusterError>;
    async fn set_replicas(
        &self,
        target: &WorkloadRef,
        replicas: i32,
        dry_run: bool,
    ) -> Result<SetReplicasOutcome, ClusterError>;

    async fn deployment_info(&self, target: &WorkloadRef) -> Result<DeploymentInfo, ClusterError> {
        let _ = target;
        Err(unsupported("reading deployments"))
    }
    /// Roll back to `to_revision`, or to the highest revision below the current one.
    async fn rollback(
        &self,
        target: &WorkloadRef,
        to_revision: Option<i64>,
        dry_run: bool,
    ) -> Result<RollbackResult, ClusterError> {
        let _ = (target, to_revision, dry_run);
        Err(unsupported("rollback"))
    }
    /// The revision a rollback without `to_revision` would go to, without changing anything.
    async fn previous_revision(&self, target: &WorkloadRef) -> Result<Option<i64>, ClusterError> {
        let _ = target;
        Err(unsupported("rollback"))
    }
    /// The revisions a rollback to `to_revision` (or, for `None`, to the previous revision)
    /// would go from and to, without changing anything. The default reads
    /// [`DeploymentInfo::revision`] and [`Cluster::previous_revision`]; a cluster whose
    /// revision annotation can lag its history (Kubernetes) resolves both from the history.
    async fn plan_rollback(&self, target: &WorkloadRef, to_revision: Option<i64>) -> Result<RollbackPlan, ClusterError> {
        let from_revision = self
            .deployment_info(target)
            .await?
            .revision
            .ok_or_else(|| ClusterError::new(ClusterErrorKind::Other, format!("{target} has no revision annotation")))?;
        let to_revision = match to_revision {
            Some(r) => r,
            None => self.previous_revision(target).await?.ok_or_else(|| {
                ClusterError::new(ClusterErrorKind::Other, format!("{target} has no revision before {from_revision} to roll back to"))
            })?,
        };
        Ok(RollbackPlan { from_revision, to_revision })
    }
    /// Set the pod template's `kubectl.kubernetes.io/restartedAt` annotation to `restarted_at`.
    async fn restart(&self, target: &WorkloadRef, restarted_at: &str, dry_run: bool) -> Result<serde_json::Value, ClusterError> {
        let _ = (target, restarted_at, dry_run);
        Err(unsupported("restart"))
    }
    async fn list_pods(&self, namespace: &str, selector: &str) -> Result<Vec<PodInfo>, ClusterError> {
        let _ = (namespace, selector);
        Err(unsupported("listing pods"))
    }
    async fn get_pod(&self, namespace: &str, name: &str) -> Result<Option<PodInfo>, ClusterError> {
        let _ = (namespace, name);
        Err(unsupported("reading pods"))
    }
    /// Delete a pod, only if its uid is still `uid` (a replacement with the same name is kept).
    async fn delete_pod(&self, namespace: &str, name: &str, uid: Option<&str>, dry_run: bool) -> Result<DeleteResult, ClusterError> {
        let _ = (namespace, name, uid, dry_run);
        Err(unsupported("deleting pods"))
    }
    async fn node_unschedulable(&self, node: &str) -> Result<bool, ClusterError> {
        let _ = node;
        Err(unsupported("reading nodes"))
    }
    async fn set_node_unschedulable(&self, node: &str, unschedulable: bool, dry_run: bool) -> Result<serde_json::Value, ClusterError> {
        let _ = (node, unschedulable, dry_run);
        Err(unsupported("cordoning nodes"))
    }
    /// Create a `batch/v1` Job given as JSON (name included).
    async fn create_job(&self, namespace: &str, job: &serde_json::Value, dry_run: bool) -> Result<JobCreated, ClusterError> {
        let _ = (namespace, job, dry_run);
        Err(unsupported("creating jobs"))
    }
    async fn job_status(&self, namespace: &str, name: &str) -> Result<JobStatus, ClusterError> {
        let _ = (namespace, name);
        Err(unsupported("reading jobs"))
    }
    /// The Deployment as JSON (to compute a patch's inverse).
    async fn read_deployment(&self, target: &WorkloadRef) -> Result<serde_json::Value, ClusterError> {
        let _ = target;
        Err(unsupported("reading deployments"))
    }
    /// A strategic-merge patch of the Deployment.
    async fn patch_deployment(&self, target: &WorkloadRef, patch: &serde_json::Value, dry_run: bool) -> Result<serde_json::Value, ClusterError> {
        let _ = (target, patch, dry_run);
        Err(unsupported("patching deployments"))
    }
}
