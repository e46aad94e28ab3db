//! The seam between action logic and the cluster API.
//!
//! Keeping the cluster behind a small trait lets the same executor run against the real
//! Kubernetes API, a local test server, or the demo's in-process simulation.

use std::fmt;

use async_trait::async_trait;
use serde::Serialize;

/// A Deployment, by namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
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

/// The operations actions need from a cluster. Implementations must be idempotent:
/// setting the replica count a workload already has is a successful no-op.
#[async_trait]
pub trait Cluster: Send + Sync {
    async fn get_replicas(&self, target: &WorkloadRef) -> Result<ReplicaState, ClusterError>;
    async fn set_replicas(
        &self,
        target: &WorkloadRef,
        replicas: i32,
        dry_run: bool,
    ) -> Result<SetReplicasOutcome, ClusterError>;
}
