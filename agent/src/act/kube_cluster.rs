//! The Kubernetes connector seen through the playbooks' [`Cluster`] seam: every action of
//! `warden_connectors::kube_actions`, with errors classified for the engine.

use async_trait::async_trait;
use std::collections::BTreeMap;
use warden_connectors::kubernetes::KubeClient;

use warden_connectors::kube_actions::{self, deployment_revision};
use warden_playbooks::cluster::{classify as classify_failure, RequestFailure, RequestKind};
use warden_playbooks::cluster::{
    DeleteResult, DeploymentInfo, JobCreated, JobPhase, JobStatus, PodInfo, PodTerminating, RollbackPlan,
    RollbackResult,
};
use warden_playbooks::{Cluster, ClusterError, ClusterErrorKind, ReplicaState, SetReplicasOutcome, WorkloadRef};

pub struct KubeCluster {
    pub client: KubeClient,
}

/// Classify a connector error for the error policy (`warden_playbooks::policy`): the same
/// failure is "retry" for a read and "unknown outcome" for a write that was sent.
fn classify(e: &warden_connectors::Error, request: RequestKind) -> ClusterErrorKind {
    use warden_connectors::Error as E;
    let failure = match e {
        E::Kube { status, reason, .. } => match reason.as_str() {
            "NotFound" => RequestFailure::Status(404),
            "Conflict" => RequestFailure::Status(409),
            _ => RequestFailure::Status(*status),
        },
        E::Http { status: Some(s), .. } => RequestFailure::Status(*s),
        E::Http { status: None, .. } => RequestFailure::ConnectionLost,
        E::RateLimited { .. } => RequestFailure::Status(429),
        E::Timeout { .. } => RequestFailure::Timeout,
        E::Connect { message, .. } => {
            // hyper reports both "never connected" and "connection lost mid-exchange" as
            // connection errors; only the first proves nothing was sent.
            let m = message.to_ascii_lowercase();
            let never_sent = ["refused", "dns", "resolve", "tcp connect", "handshake", "no route", "unreachable"]
                .iter()
                .any(|w| m.contains(w));
            if never_sent {
                RequestFailure::NotConnected
            } else {
                RequestFailure::ConnectionLost
            }
        }
        // The server answered a write with a success whose body does not decode: it applied.
        E::Decode { .. } if request == RequestKind::Write => RequestFailure::ConnectionLost,
        E::InvalidInput(_) => RequestFailure::Status(400),
        _ => RequestFailure::Other,
    };
    classify_failure(failure, request)
}

#[async_trait]
impl Cluster for KubeCluster {
    async fn get_replicas(&self, t: &WorkloadRef) -> Result<ReplicaState, ClusterError> {
        self.client
            .get_deployment_scale(&t.namespace, &t.name)
            .await
            .map(|s| ReplicaState { desired: s.spec_replicas, current: s.status_replicas })
            .map_err(err)
    }

    async fn set_replicas(
        &self,
        t: &WorkloadRef,
        replicas: i32,
        dry_run: bool,
    ) -> Result<SetReplicasOutcome, ClusterError> {
        self.client
            .set_deployment_replicas(&t.namespace, &t.name, replicas, dry_run)
            .await
            .map(|o| SetReplicasOutcome { replicas: o.replicas, dry_run: o.dry_run, response: o.response })
            .map_err(write_err)
    }

    async fn deployment_info(&self, t: &WorkloadRef) -> Result<DeploymentInfo, ClusterError> {
        let d = self.client.get_deployment(&t.namespace, &t.name).await.map_err(err)?;
        let labels: BTreeMap<String, String> = d.metadata.labels.clone().unwrap_or_default().into_iter().collect();
        let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        Ok(DeploymentInfo { labels, revision: deployment_revision(&d), replicas })
    }

    async fn rollback(
        &self,
        t: &WorkloadRef,
        to_revision: Option<i64>,
        dry_run: bool,
    ) -> Result<RollbackResult, ClusterError> {
        let o =
            self.client.rollback_deployment(&t.namespace, &t.name, to_revision, dry_run).await.map_err(write_err)?;
        Ok(RollbackResult {
            from_revision: o.from_revision,
            to_revision: o.to_revision,
            changed: o.changed,
            response: o.response,
        })
    }

    async fn previous_revision(&self, t: &WorkloadRef) -> Result<Option<i64>, ClusterError> {
        match self.client.plan_rollback(&t.namespace, &t.name, None).await {
            Ok(p) => Ok(Some(p.to_revision)),
            Err(warden_connectors::Error::InvalidInput(_)) => Ok(None),
            Err(e) => Err(err(e)),
        }
    }

    /// Both revisions from the ReplicaSets (`kube_actions::plan_rollback`), not from the
    /// Deployment's revision annotation, which lags the controller's renumbering.
    async fn plan_rollback(&self, t: &WorkloadRef, to_revision: Option<i64>) -> Result<RollbackPlan, ClusterError> {
        let p = self.client.plan_rollback(&t.namespace, &t.name, to_revision).await.map_err(err)?;
        Ok(RollbackPlan { from_revision: p.from_revision, to_revision: p.to_revision })
    }

    async fn restart(
        &self,
        t: &WorkloadRef,
        restarted_at: &str,
        dry_run: bool,
    ) -> Result<serde_json::Value, ClusterError> {
        self.client
            .restart_deployment(&t.namespace, &t.name, restarted_at, dry_run)
            .await
            .map(|o| o.response)
            .map_err(write_err)
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

    async fn delete_pod(
        &self,
        namespace: &str,
        name: &str,
        uid: Option<&str>,
        dry_run: bool,
    ) -> Result<DeleteResult, ClusterError> {
        let o = self.client.delete_pod(namespace, name, uid, dry_run).await.map_err(write_err)?;
        let terminating = o.terminating.map(|t| PodTerminating {
            deletion_timestamp: t.deletion_timestamp,
            grace_period_seconds: t.grace_period_seconds,
        });
        Ok(DeleteResult { already_gone: o.already_gone, terminating, response: o.response })
    }

    async fn node_unschedulable(&self, node: &str) -> Result<bool, ClusterError> {
        let n = self.client.get_node(node).await.map_err(err)?;
        Ok(n.spec.and_then(|s| s.unschedulable).unwrap_or(false))
    }

    async fn set_node_unschedulable(
        &self,
        node: &str,
        unschedulable: bool,
        dry_run: bool,
    ) -> Result<serde_json::Value, ClusterError> {
        self.client.set_node_unschedulable(node, unschedulable, dry_run).await.map(|o| o.response).map_err(write_err)
    }

    async fn create_job(
        &self,
        namespace: &str,
        job: &serde_json::Value,
        dry_run: bool,
    ) -> Result<JobCreated, ClusterError> {
        let job: k8s_openapi::api::batch::v1::Job = serde_json::from_value(job.clone()).map_err(|e| {
            ClusterError::new(ClusterErrorKind::Other, format!("the Job does not parse as batch/v1 Job: {e}"))
        })?;
        let o = self.client.create_job(namespace, &job, dry_run).await.map_err(write_err)?;
        Ok(JobCreated { created: o.created, response: o.response })
    }

    async fn job_status(&self, namespace: &str, name: &str) -> Result<JobStatus, ClusterError> {
        let job = self.client.get_job(namespace, name).await.map_err(err)?;
        let phase = match kube_actions::job_phase(&job) {
            kube_actions::JobPhase::Running => JobPhase::Running,
            kube_actions::JobPhase::Succeeded => JobPhase::Succeeded,
            kube_actions::JobPhase::Failed { reason, message } => {
                JobPhase::Failed { reason: format!("{reason}: {message}") }
            }
        };
        let status = serde_json::to_value(&job.status).unwrap_or(serde_json::Value::Null);
        Ok(JobStatus { phase, status })
    }

    async fn read_deployment(&self, t: &WorkloadRef) -> Result<serde_json::Value, ClusterError> {
        let d = self.client.get_deployment(&t.namespace, &t.name).await.map_err(err)?;
        serde_json::to_value(&d).map_err(|e| ClusterError::new(ClusterErrorKind::Other, e.to_string()))
    }

    async fn patch_deployment(
        &self,
        t: &WorkloadRef,
        patch: &serde_json::Value,
        dry_run: bool,
    ) -> Result<serde_json::Value, ClusterError> {
        self.client.patch_deployment(&t.namespace, &t.name, patch, dry_run).await.map(|o| o.response).map_err(write_err)
    }
}

fn write_err(e: warden_connectors::Error) -> ClusterError {
    ClusterError::new(classify(&e, RequestKind::Write), e.to_string())
}

fn err(e: warden_connectors::Error) -> ClusterError {
    ClusterError::new(classify(&e, RequestKind::Read), e.to_string())
}

fn pod_info(p: &k8s_openapi::api::core::v1::Pod) -> PodInfo {
    PodInfo {
        name: p.metadata.name.clone().unwrap_or_default(),
        uid: p.metadata.uid.clone().unwrap_or_default(),
        labels: p.metadata.labels.clone().unwrap_or_default().into_iter().collect(),
        node: p.spec.as_ref().and_then(|s| s.node_name.clone()),
    }
}

/// Root-cause evidence of one Deployment read from the cluster
/// (`warden_connectors::kube_evidence::collect`), as analysis facts: Kubernetes events,
/// rollouts with their image changes, ConfigMap/Secret changes (by name only), autoscaler
/// scale-ups, the topology, and the node conditions of the nodes its pods run on.
#[async_trait]
impl crate::analysis::ClusterEvidence for KubeCluster {
    async fn workload_facts(
        &self,
        namespace: &str,
        deployment: &str,
        since: i64,
    ) -> Result<crate::analysis::ClusterFacts, String> {
        let w = warden_connectors::kube_evidence::collect(&self.client, namespace, deployment, since)
            .await
            .map_err(|e| e.to_string())?;
        Ok(workload_facts(&w))
    }
}

/// The facts of one workload's cluster evidence.
pub fn workload_facts(w: &warden_connectors::kube_evidence::WorkloadEvidence) -> crate::analysis::ClusterFacts {
    use crate::analysis::Fact;
    use warden_detectors::rca::{ChangeKind, Payload, Subject};
    let subject = Subject::workload(Some(&w.namespace), &w.deployment);
    let mut facts = Vec::new();
    let mut gaps = w.gaps.clone();
    if !w.found {
        gaps.extend(w.notes.iter().cloned());
    }
    if w.events_truncated {
        gaps.push("events: truncated to the newest".into());
    }
    for e in &w.events {
        // Warnings, plus the Normal events that mark changes (scaling, killing, pulling).
        let telling = e.type_ == "Warning"
            || matches!(e.reason.as_str(), "ScalingReplicaSet" | "SuccessfulRescale" | "Killing" | "Pulled");
        if !telling {
            continue;
        }
        let about_node = e.involved_kind == "Node";
        facts.push(Fact {
            time: e.time,
            subject: if about_node { Subject::node(&e.involved_name) } else { subject.clone() },
            payload: Payload::KubeEvent {
                reason: e.reason.clone(),
                message: e.message.clone(),
                count: e.count,
                object: format!("{}/{}", e.involved_kind, e.involved_name),
            },
        });
    }
    for r in &w.rollouts {
        // A first revision (the Deployment created in the window) changed nothing running.
        if r.from_images.is_empty() && !r.rollback {
            continue;
        }
        let images = |list: &[warden_connectors::kube_evidence::ContainerImage]| {
            let v: Vec<String> = list.iter().map(|c| c.image.clone()).collect();
            (!v.is_empty()).then(|| v.join(","))
        };
        let verb = if r.rollback { "rolled back to" } else { "rolled out" };
        let mut description = format!(
            "Deployment {}/{} {verb} revision {} (ReplicaSet {})",
            w.namespace, w.deployment, r.revision, r.replica_set
        );
        if r.time_approximate {
            description.push_str("; time approximate");
        }
        facts.push(Fact {
            time: r.time,
            subject: subject.clone(),
            payload: Payload::Change {
                change: ChangeKind::Rollout,
                from: images(&r.from_images),
                to: images(&r.to_images),
                description,
            },
        });
    }
    for c in w.config.iter().filter(|c| c.changed_since) {
        let Some(t) = c.last_change else { continue };
        let (change, kind) = match c.kind {
            warden_connectors::kube_evidence::ConfigKind::ConfigMap => (ChangeKind::Config, "ConfigMap"),
            warden_connectors::kube_evidence::ConfigKind::Secret => (ChangeKind::Secret, "Secret"),
        };
        let by = c.last_manager.as_deref().map(|m| format!(" by {m}")).unwrap_or_default();
        facts.push(Fact {
            time: t,
            subject: subject.clone(),
            payload: Payload::Change {
                change,
                from: None,
                to: None,
                description: format!("{kind} {}/{} (used by {}) changed{by}", w.namespace, c.name, w.deployment),
            },
        });
    }
    if let Some(scale) = &w.scale {
        for h in scale.hpas.iter().filter(|h| h.scaled_since) {
            let Some(t) = h.last_scale_time else { continue };
            let at_max = if h.at_max { " (at its maximum)" } else { "" };
            facts.push(Fact {
                time: t,
                subject: subject.clone(),
                payload: Payload::Change {
                    change: ChangeKind::Autoscaler,
                    from: h.current_replicas.map(|r| r.to_string()),
                    to: h.desired_replicas.map(|r| r.to_string()),
                    description: format!("HorizontalPodAutoscaler {} scaled the Deployment{at_max}", h.name),
                },
            });
        }
    }
    if let Some(t) = &w.topology {
        let nodes: Vec<String> = t.nodes.iter().map(|n| n.name.clone()).collect();
        facts.push(Fact {
            time: w.since,
            subject: subject.clone(),
            payload: Payload::Topology {
                nodes,
                pods: t.pods.iter().map(|p| p.name.clone()).collect(),
                services: t.services.clone(),
                depends_on: Vec::new(),
            },
        });
        for p in &t.pods {
            if let Some(reason) = p.last_termination_reason.as_deref().filter(|r| *r != "Completed") {
                facts.push(Fact {
                    time: w.collected_at,
                    subject: subject.clone(),
                    payload: Payload::KubeEvent {
                        reason: reason.to_string(),
                        message: format!(
                            "container last terminated: {reason} (exit code {}), {} restart(s)",
                            p.last_termination_exit_code.map(|c| c.to_string()).unwrap_or_else(|| "-".into()),
                            p.restarts
                        ),
                        count: p.restarts.max(1) as u32,
                        object: format!("Pod/{}", p.name),
                    },
                });
            }
            if let Some(reason) = p.waiting_reason.as_deref().filter(|r| {
                matches!(*r, "CrashLoopBackOff" | "ImagePullBackOff" | "ErrImagePull" | "CreateContainerConfigError")
            }) {
                facts.push(Fact {
                    time: w.collected_at,
                    subject: subject.clone(),
                    payload: Payload::KubeEvent {
                        reason: reason.to_string(),
                        message: format!("container waiting: {reason}"),
                        count: 1,
                        object: format!("Pod/{}", p.name),
                    },
                });
            }
        }
        for n in t.nodes.iter().filter(|n| n.found && (!n.ready || !n.conditions.is_empty() || n.unschedulable)) {
            let mut what = Vec::new();
            if !n.ready {
                what.push(format!("NotReady ({})", n.not_ready_reason.as_deref().unwrap_or("no reason given")));
            }
            what.extend(n.conditions.iter().cloned());
            if n.unschedulable {
                what.push("cordoned".into());
            }
            facts.push(Fact {
                time: w.collected_at,
                subject: Subject::node(&n.name),
                payload: Payload::KubeEvent {
                    reason: if n.ready { "NodeCondition".into() } else { "NodeNotReady".into() },
                    message: what.join(", "),
                    count: 1,
                    object: format!("Node/{}", n.name),
                },
            });
        }
    }
    crate::analysis::ClusterFacts { facts, gaps }
}
