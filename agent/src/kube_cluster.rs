//! The Kubernetes connector seen through the playbooks' [`Cluster`] seam.

use async_trait::async_trait;
use warden_connectors::kubernetes::KubeClient;
use warden_playbooks::{Cluster, ClusterError, ClusterErrorKind, ReplicaState, SetReplicasOutcome, WorkloadRef};

pub struct KubeCluster {
    pub client: KubeClient,
}

fn classify(e: &warden_connectors::Error) -> ClusterErrorKind {
    if e.is_not_found() {
        ClusterErrorKind::NotFound
    } else if e.is_conflict() {
        ClusterErrorKind::Conflict
    } else if matches!(e, warden_connectors::Error::Kube { status: 401 | 403, .. }) {
        ClusterErrorKind::Forbidden
    } else if e.is_retryable() {
        ClusterErrorKind::Transient
    } else {
        ClusterErrorKind::Other
    }
}

#[async_trait]
impl Cluster for KubeCluster {
    async fn get_replicas(&self, t: &WorkloadRef) -> Result<ReplicaState, ClusterError> {
        self.client
            .get_deployment_scale(&t.namespace, &t.name)
            .await
            .map(|s| ReplicaState { desired: s.spec_replicas, current: s.status_replicas })
            .map_err(|e| ClusterError::new(classify(&e), e.to_string()))
    }

    async fn set_replicas(&self, t: &WorkloadRef, replicas: i32, dry_run: bool) -> Result<SetReplicasOutcome, ClusterError> {
        self.client
            .set_deployment_replicas(&t.namespace, &t.name, replicas, dry_run)
            .await
            .map(|o| SetReplicasOutcome { replicas: o.replicas, dry_run: o.dry_run, response: o.response })
            .map_err(|e| ClusterError::new(classify(&e), e.to_string()))
    }
}
