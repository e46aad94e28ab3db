//! Read-only Kubernetes evidence around an incident, for root-cause analysis.
//!
//! When an incident opens, the question is "what changed or broke around this workload
//! just before it started?". The cluster answers most of it itself: Events (OOMKilled,
//! BackOff, FailedScheduling, Unhealthy), the Deployment's rollout history (its
//! ReplicaSets), the ConfigMaps and Secrets its pods read, its autoscaler, and where its
//! pods run (nodes under pressure, services that route to them). This module reads those
//! and turns them into plain, serialisable structs with times as unix seconds, so the
//! ranking and summary layers never see `k8s-openapi` types. [`collect`] gathers all of
//! it for one Deployment; the `KubeClient` methods here read one part each.
//!
//! Design choices, and why:
//!
//! * **Read-only.** Only `get` and `list` requests; the RBAC this needs is listed in
//!   [`collect`]'s documentation. Nothing here writes, so it is safe to run for every
//!   incident, also in a dry-run deployment of Warden.
//! * **Partial evidence beats no evidence.** RBAC may allow less than everything (many
//!   operators will not grant `secrets` or cluster-wide `nodes`). In [`collect`], a part
//!   the API server refuses with 403 becomes a line in [`WorkloadEvidence::gaps`]
//!   (`"events: forbidden"`) and the other parts are still collected; any other error
//!   (unreachable API server, timeouts, 5xx) fails the collection with the usual
//!   [`Error`], whose [`Error::is_retryable`] tells the caller whether to try again. The
//!   single-part methods never hide errors: a 403 is an error there.
//! * **Secrets stay secret.** ConfigMaps and Secrets are read with metadata-only GETs
//!   (`Accept: application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1`, kube's
//!   [`Api::get_metadata`]): the API server sends no `data`. Should a server ignore that
//!   and send the whole object, the answer is still decoded into `PartialObjectMeta`, which
//!   has no field for `data`/`stringData`, so the values are dropped while decoding and
//!   never stored, logged or returned. Only names and change times leave this module.
//! * **Bounded output.** Events are listed in pages ([`EVENT_PAGE_SIZE`] per request,
//!   `limit`/`continue`), at most [`MAX_EVENT_PAGES`] pages, and only the newest
//!   [`MAX_EVENTS`] matching ones are kept (`truncated` says when some were dropped);
//!   event messages are cut to [`MAX_MESSAGE_CHARS`]. Event text is cluster-controlled and
//!   untrusted: it is data to quote, never instructions.
//! * **Honest times.** Kubernetes keeps no change log, so change times are derived:
//!   a rollout's time is its ReplicaSet's `creationTimestamp` (exact for a new revision);
//!   a rollback reuses an old ReplicaSet, whose creation time says nothing about the
//!   rollback, so its time is the newest `managedFields` write and marked approximate. A
//!   ConfigMap's or Secret's `last_change` is its newest `managedFields` time (the last
//!   write by any field manager, possibly metadata only), else its `creationTimestamp`;
//!   [`TimeSource`] always says which.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, ContainerStatus, Event, Node, Pod, PodSpec, Secret, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::ListParams;
use kube::Api;
use serde::Serialize;

use crate::kube_actions::{replicaset_revision, REVISION_HISTORY_ANNOTATION};
use crate::kubernetes::{check_name, KubeClient};
use crate::{Error, Result};

mod extract;
pub use extract::*;

mod read;

/// Events requested per list call (`limit`).
pub const EVENT_PAGE_SIZE: u32 = 250;
/// Most list calls one event read makes; a namespace with more events than
/// `EVENT_PAGE_SIZE * MAX_EVENT_PAGES` is read partially and reported `truncated`.
pub const MAX_EVENT_PAGES: usize = 40;
/// Most events returned: the newest ones are kept.
pub const MAX_EVENTS: usize = 500;
/// Event messages longer than this many characters are cut (and end with `…`).
pub const MAX_MESSAGE_CHARS: usize = 512;

/// One Kubernetes Event (core/v1), reduced to what an analysis needs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KubeEventInfo {
    /// Unix seconds of the last occurrence: `lastTimestamp`, else `series.lastObservedTime`,
    /// `eventTime`, `firstTimestamp`, and last `metadata.creationTimestamp`.
    pub time: i64,
    pub reason: String,
    /// The event's message, at most [`MAX_MESSAGE_CHARS`] characters. Untrusted text.
    pub message: String,
    /// How often it happened (`count`, else `series.count`, else 1).
    pub count: u32,
    /// `Normal` or `Warning` (empty when the event carries none).
    #[serde(rename = "type")]
    pub type_: String,
    pub involved_kind: String,
    pub involved_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub involved_namespace: Option<String>,
}

/// The result of an event read.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventList {
    /// Matching events, oldest first.
    pub events: Vec<KubeEventInfo>,
    /// Some matching events were left out: more than [`MAX_EVENTS`] matched (the oldest
    /// were dropped), or the listing stopped early ([`MAX_EVENT_PAGES`], or the
    /// server expired the continue token).
    pub truncated: bool,
    /// How many list calls were made.
    pub pages: usize,
}

/// Where a derived change time comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeSource {
    /// `metadata.creationTimestamp`.
    CreationTimestamp,
    /// The newest `metadata.managedFields[].time` (status writes excluded).
    ManagedFields,
}

/// The image of one container of a pod template.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct ContainerImage {
    pub container: String,
    pub image: String,
}

/// How one container's image differs between two revisions. `from: None` is a container
/// that was added, `to: None` one that was removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageChange {
    pub container: String,
    pub from: Option<String>,
    pub to: Option<String>,
}

/// One rollout revision of a Deployment, compared with the revision before it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RolloutChange {
    /// Unix seconds the revision went out (see `time_source`, `time_approximate`).
    pub time: i64,
    pub time_source: TimeSource,
    /// `true` when `time` is only an estimate: a rollback (the ReplicaSet was reused,
    /// so its creation time is that of the original revision) dated by its newest write.
    pub time_approximate: bool,
    pub revision: i64,
    /// The ReplicaSet that holds this revision's pod template.
    pub replica_set: String,
    /// This revision re-activated an older ReplicaSet (a rollback, `kubectl rollout undo`).
    pub rollback: bool,
    /// The revision before this one, when its ReplicaSet is still retained.
    pub previous_revision: Option<i64>,
    /// Images of the previous revision (empty when there is none or it is not retained).
    pub from_images: Vec<ContainerImage>,
    pub to_images: Vec<ContainerImage>,
    /// Containers whose image differs between the two revisions.
    pub image_changes: Vec<ImageChange>,
    /// Anything the reader should know about this entry (e.g. why `from_images` is empty).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// ConfigMap or Secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum ConfigKind {
    ConfigMap,
    Secret,
}

impl ConfigKind {
    /// The plural resource name (`configmaps`, `secrets`), as RBAC names it.
    pub fn resource(self) -> &'static str {
        match self {
            ConfigKind::ConfigMap => "configmaps",
            ConfigKind::Secret => "secrets",
        }
    }
}

/// A ConfigMap or Secret a pod template reads.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct ConfigRef {
    pub kind: ConfigKind,
    pub name: String,
    /// How the template uses it, e.g. `env web/DB_URL`, `envFrom web`, `volume cfg`,
    /// `imagePullSecrets`; sorted, without duplicates.
    pub used_by: Vec<String>,
}

/// Metadata of one referenced ConfigMap or Secret (never its data).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConfigChange {
    pub kind: ConfigKind,
    pub name: String,
    /// `false` when the object does not exist (404): pods that need it cannot start.
    pub exists: bool,
    /// Unix seconds of `creationTimestamp`.
    pub created: Option<i64>,
    /// Unix seconds of the last write: the newest `managedFields` time when there is
    /// one, else `created`. A write may have touched only metadata.
    pub last_change: Option<i64>,
    pub last_change_source: Option<TimeSource>,
    /// The field manager of the newest `managedFields` entry (e.g. `kubectl-client-side-apply`).
    pub last_manager: Option<String>,
    pub resource_version: Option<String>,
    /// `last_change` is at or after the `since` of the request.
    pub changed_since: bool,
}

/// One HorizontalPodAutoscaler (autoscaling/v2) that targets the Deployment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HpaInfo {
    pub name: String,
    pub min_replicas: Option<i32>,
    pub max_replicas: i32,
    pub current_replicas: Option<i32>,
    pub desired_replicas: Option<i32>,
    /// Unix seconds of `status.lastScaleTime`.
    pub last_scale_time: Option<i64>,
    /// `last_scale_time` is at or after the `since` of the request.
    pub scaled_since: bool,
    /// The autoscaler wants (or runs) `max_replicas`: it cannot add capacity.
    pub at_max: bool,
    /// Status conditions (`AbleToScale`, `ScalingActive`, `ScalingLimited`).
    pub conditions: Vec<ConditionInfo>,
}

/// A status condition, as `type=status (reason: message)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConditionInfo {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Replica counts of the Deployment and the autoscalers that drive it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScaleEvidence {
    /// `spec.replicas` (absent means the default, 1).
    pub spec_replicas: i32,
    pub status_replicas: i32,
    pub ready_replicas: i32,
    pub available_replicas: i32,
    pub updated_replicas: i32,
    pub unavailable_replicas: i32,
    /// Autoscalers whose `scaleTargetRef` is this Deployment (normally zero or one).
    pub hpas: Vec<HpaInfo>,
}

/// A ReplicaSet of the Deployment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplicaSetInfo {
    pub name: String,
    pub revision: Option<i64>,
    pub replicas: i32,
    pub ready_replicas: i32,
    pub images: Vec<ContainerImage>,
    pub created: Option<i64>,
}

/// A pod of the Deployment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PodInfo {
    pub name: String,
    pub node: Option<String>,
    pub phase: Option<String>,
    /// The `Ready` condition is `True`.
    pub ready: bool,
    /// Sum of the containers' `restartCount`.
    pub restarts: i32,
    /// Reason of the most recent container termination (current or last state), e.g.
    /// `OOMKilled`, `Error`, `Completed`.
    pub last_termination_reason: Option<String>,
    pub last_termination_exit_code: Option<i32>,
    /// Why a container is waiting, e.g. `CrashLoopBackOff`, `ImagePullBackOff`.
    pub waiting_reason: Option<String>,
    /// The owning ReplicaSet.
    pub replica_set: Option<String>,
}

/// A node one of the pods runs on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeInfo {
    pub name: String,
    /// `false` when the node object does not exist (any more).
    pub found: bool,
    /// The `Ready` condition is `True`.
    pub ready: bool,
    /// When not ready: the `Ready` condition's status and reason, e.g.
    /// `False (KubeletNotReady)` or `Unknown (NodeStatusUnknown)`.
    pub not_ready_reason: Option<String>,
    /// Problem conditions that hold: every condition other than `Ready` whose status is
    /// `True` (`MemoryPressure`, `DiskPressure`, `PIDPressure`, `NetworkUnavailable`, and
    /// node-problem-detector ones such as `KernelDeadlock`).
    pub conditions: Vec<String>,
    /// `spec.unschedulable` (cordoned).
    pub unschedulable: bool,
}

/// Where the Deployment runs and what routes to it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Topology {
    pub namespace: String,
    pub deployment: String,
    /// The Deployment's selector in query syntax.
    pub selector: Option<String>,
    /// Its ReplicaSets, by revision.
    pub replica_sets: Vec<ReplicaSetInfo>,
    /// Its pods (matching the selector and owned by one of its ReplicaSets), by name.
    pub pods: Vec<PodInfo>,
    /// The nodes its pods are scheduled on, by name.
    pub nodes: Vec<NodeInfo>,
    /// Services in the namespace whose selector matches the pod template's labels.
    pub services: Vec<String>,
}

/// Everything [`collect`] found about one Deployment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkloadEvidence {
    pub namespace: String,
    pub deployment: String,
    /// The `since` of the request (unix seconds).
    pub since: i64,
    /// When the collection ran (unix seconds).
    pub collected_at: i64,
    /// The Deployment was read (`false`: not found, or not readable, see `gaps`).
    pub found: bool,
    /// Events since `since` about the Deployment, its ReplicaSets and pods, its
    /// autoscalers, services and referenced ConfigMaps and Secrets; oldest first.
    pub events: Vec<KubeEventInfo>,
    pub events_truncated: bool,
    /// Rollouts since `since`.
    pub rollouts: Vec<RolloutChange>,
    /// The ConfigMaps and Secrets the pod template references.
    pub config_refs: Vec<ConfigRef>,
    /// Their metadata (for those that could be read).
    pub config: Vec<ConfigChange>,
    pub scale: Option<ScaleEvidence>,
    pub topology: Option<Topology>,
    /// What the reader should know (e.g. "deployment shop/web not found").
    pub notes: Vec<String>,
    /// Parts the API server refused, as `"<resource>: forbidden"`; the rest is complete.
    pub gaps: Vec<String>,
}

impl WorkloadEvidence {
    fn empty(namespace: &str, deployment: &str, since: i64) -> Self {
        Self {
            namespace: namespace.to_string(),
            deployment: deployment.to_string(),
            since,
            collected_at: chrono::Utc::now().timestamp(),
            found: false,
            events: Vec::new(),
            events_truncated: false,
            rollouts: Vec::new(),
            config_refs: Vec::new(),
            config: Vec::new(),
            scale: None,
            topology: None,
            notes: Vec::new(),
            gaps: Vec::new(),
        }
    }
}

/// Gathers the evidence about Deployment `namespace/deployment` since `since` (unix
/// seconds): its events, rollouts, referenced ConfigMaps and Secrets, replica counts and
/// autoscalers, and topology. Read-only.
///
/// A Deployment that does not exist is not an error: the answer has `found: false`,
/// empty parts and a note. A part the API server refuses (403) is listed in `gaps` and
/// the rest is still collected; when the Deployment itself is forbidden, only events
/// are collected, matched by name (`<deployment>-` prefixes for ReplicaSets and Pods).
/// Other errors (invalid names, connection failures, timeouts, 5xx) are returned.
///
/// RBAC needed for everything (each rule that is missing only becomes a gap):
///
/// | API group     | resource                   | verbs  | used for |
/// |---------------|----------------------------|--------|----------|
/// | `apps`        | `deployments`              | `get`  | the workload |
/// | `apps`        | `replicasets`              | `list` | rollouts, topology |
/// | `""`          | `pods`                     | `list` | topology |
/// | `""`          | `nodes` (cluster-scoped)   | `get`  | node conditions |
/// | `""`          | `services`                 | `list` | topology |
/// | `""`          | `events`                   | `list` | events |
/// | `""`          | `configmaps`               | `get`  | config changes (metadata only) |
/// | `""`          | `secrets`                  | `get`  | config changes (metadata only) |
/// | `autoscaling` | `horizontalpodautoscalers` | `list` | scale evidence |
///
/// RBAC cannot grant "metadata only": `get` on `secrets` also allows reading their data,
/// even though this code never asks for it. Leave that rule out if that is unacceptable;
/// Secret changes then show up as the gap `secrets: forbidden`.
pub async fn collect(client: &KubeClient, namespace: &str, deployment: &str, since: i64) -> Result<WorkloadEvidence> {
    check_name("namespace", namespace)?;
    check_name("deployment name", deployment)?;
    let mut evidence = WorkloadEvidence::empty(namespace, deployment, since);
    let mut gaps = Gaps::tolerant();

    let found = match client.get_deployment(namespace, deployment).await {
        Ok(found) => Some(found),
        Err(e) if e.is_not_found() => {
            evidence.notes.push(format!("deployment {namespace}/{deployment} not found; nothing collected"));
            return Ok(evidence);
        }
        Err(e) => gaps.absorb("deployments", Err(e))?,
    };
    let Some(object) = found else {
        // Forbidden: without the Deployment nothing else can be tied to it except by name.
        let related = Related::by_name(deployment);
        if let Some(list) =
            gaps.absorb("events", client.events_where(Some(namespace), since, &|e| related.matches(e)).await)?
        {
            evidence.events = list.events;
            evidence.events_truncated = list.truncated;
        }
        evidence
            .notes
            .push(format!("deployment {namespace}/{deployment} could not be read; events matched by name only"));
        evidence.gaps = gaps.into_list();
        return Ok(evidence);
    };
    evidence.found = true;

    let replica_sets = gaps.absorb("replicasets", client.replicasets_owned_by(namespace, &object).await)?;
    if let Some(replica_sets) = &replica_sets {
        evidence.rollouts = rollout_changes(replica_sets, since);
    }

    evidence.config_refs = referenced_config(&object);
    for config in &evidence.config_refs {
        let read = client.config_change(namespace, config, since).await;
        if let Some(change) = gaps.absorb(config.kind.resource(), read)? {
            evidence.config.push(change);
        }
    }

    let hpas = gaps.absorb("horizontalpodautoscalers", client.hpas_targeting(namespace, deployment, since).await)?;
    evidence.scale = Some(scale_of(&object, hpas.clone().unwrap_or_default()));

    let topology = client.topology_of(namespace, &object, replica_sets.as_deref(), &mut gaps).await?;

    let related = Related::of(
        deployment,
        replica_sets.as_deref(),
        &topology,
        hpas.as_deref().unwrap_or_default(),
        &evidence.config_refs,
    );
    if let Some(list) =
        gaps.absorb("events", client.events_where(Some(namespace), since, &|e| related.matches(e)).await)?
    {
        evidence.events = list.events;
        evidence.events_truncated = list.truncated;
    }
    evidence.topology = Some(topology);
    evidence.gaps = gaps.into_list();
    Ok(evidence)
}

#[cfg(test)]
mod tests;
