//! The Kubernetes connector seen through the playbooks' [`Cluster`] seam: every action of
//! `warden_connectors::kube_actions`, with errors classified for the engine.

use async_trait::async_trait;
use warden_connectors::kubernetes::KubeClient;
use std::collections::BTreeMap;

use warden_connectors::kube_actions::{self, deployment_revision, replicaset_revision};
use warden_playbooks::cluster::{DeleteResult, DeploymentInfo, JobCreated, JobPhase, JobStatus, PodInfo, RollbackResult};
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

    async fn deployment_info(&self, t: &WorkloadRef) -> Result<DeploymentInfo, ClusterError> {
        let d = self.client.get_deployment(&t.namespace, &t.name).await.map_err(err)?;
        let labels: BTreeMap<String, String> = d.metadata.labels.clone().unwrap_or_default().into_iter().collect();
        let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        Ok(DeploymentInfo { labels, revision: deployment_revision(&d), replicas })
    }

    async fn rollback(&self, t: &WorkloadRef, to_revision: Option<i64>, dry_run: bool) -> Result<RollbackResult, ClusterError> {
        let o = self.client.rollback_deployment(&t.namespace, &t.name, to_revision, dry_run).await.map_err(err)?;
        Ok(RollbackResult { from_revision: o.from_revision, to_revision: o.to_revision, changed: o.changed, response: o.response })
    }

    async fn previous_revision(&self, t: &WorkloadRef) -> Result<Option<i64>, ClusterError> {
        let d = self.client.get_deployment(&t.namespace, &t.name).await.map_err(err)?;
        let Some(current) = deployment_revision(&d) else { return Ok(None) };
        let sets = self.client.list_replicasets_of(&t.namespace, &t.name).await.map_err(err)?;
        Ok(sets.iter().filter_map(replicaset_revision).filter(|r| *r < current).max())
    }

    async fn restart(&self, t: &WorkloadRef, restarted_at: &str, dry_run: bool) -> Result<serde_json::Value, ClusterError> {
        self.client.restart_deployment(&t.namespace, &t.name, restarted_at, dry_run).await.map(|o| o.response).map_err(err)
    }

    async fn list_pods(&self, namespace: &str, selector: &str) -> Result<Vec<PodInfo>, ClusterError> {
        let pods = self.client.list_pods(namespace, Some(selector)).await.map_err(err)?;
        Ok(pods.iter().map(pod_info).collect())
    }

    async fn get_pod(&self, namespace: &str, name: &str) -> Result<Option<PodInfo>, ClusterError> {
        match self.client.get_pod(namespace, name).await {
            Ok(p) => Ok(Some(pod_info(&p))),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(err(e)),
        }
    }

    async fn delete_pod(&self, namespace: &str, name: &str, uid: Option<&str>, dry_run: bool) -> Result<DeleteResult, ClusterError> {
        let o = self.client.delete_pod(namespace, name, uid, dry_run).await.map_err(err)?;
        Ok(DeleteResult { already_gone: o.already_gone, response: o.response })
    }

    async fn node_unschedulable(&self, node: &str) -> Result<bool, ClusterError> {
        let n = self.client.get_node(node).await.map_err(err)?;
        Ok(n.spec.and_then(|s| s.unschedulable).unwrap_or(false))
    }

    async fn set_node_unschedulable(&self, node: &str, unschedulable: bool, dry_run: bool) -> Result<serde_json::Value, ClusterError> {
        self.client.set_node_unschedulable(node, unschedulable, dry_run).await.map(|o| o.response).map_err(err)
    }

    async fn create_job(&self, namespace: &str, job: &serde_json::Value, dry_run: bool) -> Result<JobCreated, ClusterError> {
        let job: k8s_openapi::api::batch::v1::Job = serde_json::from_value(job.clone())
            .map_err(|e| ClusterError::new(ClusterErrorKind::Other, format!("the Job does not parse as batch/v1 Job: {e}")))?;
        let o = self.client.create_job(namespace, &job, dry_run).await.map_err(err)?;
        Ok(JobCreated { created: o.created, response: o.response })
    }

    async fn job_status(&self, namespace: &str, name: &str) -> Result<JobStatus, ClusterError> {
        let job = self.client.get_job(namespace, name).await.map_err(err)?;
        let phase = match kube_actions::job_phase(&job) {
            kube_actions::JobPhase::Running => JobPhase::Running,
            kube_actions::JobPhase::Succeeded => JobPhase::Succeeded,
            kube_actions::JobPhase::Failed { reason, message } => JobPhase::Failed { reason: format!("{reason}: {message}") },
        };
        let status = serde_json::to_value(&job.status).unwrap_or(serde_json::Value::Null);
        Ok(JobStatus { phase, status })
    }

    async fn read_deployment(&self, t: &WorkloadRef) -> Result<serde_json::Value, ClusterError> {
        let d = self.client.get_deployment(&t.namespace, &t.name).await.map_err(err)?;
        serde_json::to_value(&d).map_err(|e| ClusterError::new(ClusterErrorKind::Other, e.to_string()))
    }

    async fn patch_deployment(&self, t: &WorkloadRef, patch: &serde_json::Value, dry_run: bool) -> Result<serde_json::Value, ClusterError> {
        self.client.patch_deployment(&t.namespace, &t.name, patch, dry_run).await.map(|o| o.response).map_err(err)
    }
}

fn err(e: warden_connectors::Error) -> ClusterError {
    ClusterError::new(classify(&e), e.to_string())
}

fn pod_info(p: &k8s_openapi::api::core::v1::Pod) -> PodInfo {
    PodInfo {
        name: p.metadata.name.clone().unwrap_or_default(),
        uid: p.metadata.uid.clone().unwrap_or_default(),
        labels: p.metadata.labels.clone().unwrap_or_default().into_iter().collect(),
        node: p.spec.as_ref().and_then(|s| s.node_name.clone()),
    }
}
