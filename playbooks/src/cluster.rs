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

/// How a cluster request failed, as the error policy (see [`crate::policy`]) needs it.
///
/// The classes follow kube-rs's: what a retry can fix (transient, conflict), what it cannot
/// (not found, forbidden, invalid), and a write whose outcome is unknown: it was sent and
/// may have been applied, so it is resolved by reading the object back and never counted
/// as "nothing changed".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClusterErrorKind {
    NotFound,
    /// A concurrent writer (409, a stale resourceVersion): re-read and retry.
    Conflict,
    Forbidden,
    /// Refused before anything changed and worth retrying: 429, 503, a connection that was
    /// never made, and any failure of a read.
    Transient,
    /// The request is wrong (400, 422, ...): retrying the same request will not help.
    Invalid,
    /// A write was sent and no reliable answer came back (500 and other 5xx after sending,
    /// a timeout, a connection lost mid-exchange): it may have been applied.
    UnknownOutcome,
    Other,
}

impl ClusterErrorKind {
    /// Retrying (after re-reading the object) may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(self, ClusterErrorKind::Transient | ClusterErrorKind::Conflict)
    }

    /// The request may have changed the cluster.
    pub fn may_have_applied(self) -> bool {
        self == ClusterErrorKind::UnknownOutcome
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ClusterErrorKind::NotFound => "not_found",
            ClusterErrorKind::Conflict => "conflict",
            ClusterErrorKind::Forbidden => "forbidden",
            ClusterErrorKind::Transient => "transient",
            ClusterErrorKind::Invalid => "invalid",
            ClusterErrorKind::UnknownOutcome => "unknown_outcome",
            ClusterErrorKind::Other => "other",
        }
    }
}

/// Whether a request reads or writes: the same failure means "try again" for a read and
/// "may have applied" for a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    Read,
    Write,
}

/// What is known about a failed request, independent of the client library.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestFailure {
    /// The server answered with this HTTP status.
    Status(u16),
    /// No answer within the time limit.
    Timeout,
    /// The connection was never made (refused, DNS, TLS handshake): nothing was sent.
    NotConnected,
    /// The connection broke after the request started (reset, closed mid-answer).
    ConnectionLost,
    /// Anything else (a body that does not decode, a client-side error).
    Other,
}

/// Classify a failed request (see [`ClusterErrorKind`]). 503 and 429 mean the server did not
/// process the request; 500, 502, 504 and the other 5xx, timeouts and lost connections do
/// not say, so for a write they are an unknown outcome.
pub fn classify(failure: RequestFailure, request: RequestKind) -> ClusterErrorKind {
    let write = request == RequestKind::Write;
    match failure {
        RequestFailure::Status(404 | 410) => ClusterErrorKind::NotFound,
        RequestFailure::Status(409) => ClusterErrorKind::Conflict,
        RequestFailure::Status(401 | 403) => ClusterErrorKind::Forbidden,
        RequestFailure::Status(429 | 503) => ClusterErrorKind::Transient,
        RequestFailure::Status(408)
        | RequestFailure::Status(500..=599)
        | RequestFailure::Timeout
        | RequestFailure::ConnectionLost => {
            if write {
                ClusterErrorKind::UnknownOutcome
            } else {
                ClusterErrorKind::Transient
            }
        }
        RequestFailure::Status(400..=499) => ClusterErrorKind::Invalid,
        RequestFailure::Status(_) | RequestFailure::Other => ClusterErrorKind::Other,
        RequestFailure::NotConnected => ClusterErrorKind::Transient,
    }
}

/// A failed cluster request.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cluster request failed ({}): {message}", kind.as_str())]
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
    async fn plan_rollback(
        &self,
        target: &WorkloadRef,
        to_revision: Option<i64>,
    ) -> Result<RollbackPlan, ClusterError> {
        let from_revision = self.deployment_info(target).await?.revision.ok_or_else(|| {
            ClusterError::new(ClusterErrorKind::Other, format!("{target} has no revision annotation"))
        })?;
        let to_revision = match to_revision {
            Some(r) => r,
            None => self.previous_revision(target).await?.ok_or_else(|| {
                ClusterError::new(
                    ClusterErrorKind::Other,
                    format!("{target} has no revision before {from_revision} to roll back to"),
                )
            })?,
        };
        Ok(RollbackPlan { from_revision, to_revision })
    }
    /// Set the pod template's `kubectl.kubernetes.io/restartedAt` annotation to `restarted_at`.
    async fn restart(
        &self,
        target: &WorkloadRef,
        restarted_at: &str,
        dry_run: bool,
    ) -> Result<serde_json::Value, ClusterError> {
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
    async fn delete_pod(
        &self,
        namespace: &str,
        name: &str,
        uid: Option<&str>,
        dry_run: bool,
    ) -> Result<DeleteResult, ClusterError> {
        let _ = (namespace, name, uid, dry_run);
        Err(unsupported("deleting pods"))
    }
    async fn node_unschedulable(&self, node: &str) -> Result<bool, ClusterError> {
        let _ = node;
        Err(unsupported("reading nodes"))
    }
    async fn set_node_unschedulable(
        &self,
        node: &str,
        unschedulable: bool,
        dry_run: bool,
    ) -> Result<serde_json::Value, ClusterError> {
        let _ = (node, unschedulable, dry_run);
        Err(unsupported("cordoning nodes"))
    }
    /// Create a `batch/v1` Job given as JSON (name included).
    async fn create_job(
        &self,
        namespace: &str,
        job: &serde_json::Value,
        dry_run: bool,
    ) -> Result<JobCreated, ClusterError> {
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
    async fn patch_deployment(
        &self,
        target: &WorkloadRef,
        patch: &serde_json::Value,
        dry_run: bool,
    ) -> Result<serde_json::Value, ClusterError> {
        let _ = (target, patch, dry_run);
        Err(unsupported("patching deployments"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ClusterErrorKind::*;
    use RequestFailure::*;
    use RequestKind::*;

    #[test]
    fn failures_are_classified_for_reads_and_writes() {
        let table = [
            (Status(404), NotFound, NotFound),
            (Status(409), Conflict, Conflict),
            (Status(403), Forbidden, Forbidden),
            (Status(401), Forbidden, Forbidden),
            (Status(422), Invalid, Invalid),
            (Status(400), Invalid, Invalid),
            (Status(429), Transient, Transient),
            (Status(503), Transient, Transient),
            (Status(500), Transient, UnknownOutcome),
            (Status(502), Transient, UnknownOutcome),
            (Status(504), Transient, UnknownOutcome),
            (Timeout, Transient, UnknownOutcome),
            (ConnectionLost, Transient, UnknownOutcome),
            (NotConnected, Transient, Transient),
            (RequestFailure::Other, ClusterErrorKind::Other, ClusterErrorKind::Other),
        ];
        for (failure, read, write) in table {
            assert_eq!(classify(failure, Read), read, "{failure:?} on a read");
            assert_eq!(classify(failure, Write), write, "{failure:?} on a write");
        }
    }

    #[test]
    fn only_transient_and_conflict_retry_and_only_unknown_may_have_applied() {
        for k in [NotFound, Conflict, Forbidden, Transient, Invalid, UnknownOutcome, ClusterErrorKind::Other] {
            assert_eq!(k.is_retryable(), matches!(k, Transient | Conflict), "{k:?}");
            assert_eq!(k.may_have_applied(), k == UnknownOutcome, "{k:?}");
        }
        assert_eq!(ClusterError::new(UnknownOutcome, "x").to_string(), "cluster request failed (unknown_outcome): x");
    }
}
