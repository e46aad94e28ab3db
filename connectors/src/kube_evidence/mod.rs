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

impl KubeClient {
    /// Core/v1 Events at or after `since` (unix seconds) in `namespace`, or in all
    /// namespaces for `None`, oldest first; at most [`MAX_EVENTS`] (the newest), listed
    /// [`EVENT_PAGE_SIZE`] per request. See [`KubeEventInfo::time`] for which timestamp
    /// counts. Needs `list` on `events` (cluster-wide for `None`).
    pub async fn events(&self, namespace: Option<&str>, since: i64) -> Result<EventList> {
        self.events_where(namespace, since, &|_| true).await
    }

    async fn events_where(
        &self,
        namespace: Option<&str>,
        since: i64,
        keep: &(dyn Fn(&KubeEventInfo) -> bool + Sync),
    ) -> Result<EventList> {
        let (api, what): (Api<Event>, String) = match namespace {
            Some(ns) => {
                check_name("namespace", ns)?;
                (Api::namespaced(self.kube_client(), ns), format!("events in namespace {ns}"))
            }
            None => (Api::all(self.kube_client()), "events".to_string()),
        };
        let mut params = ListParams { limit: Some(EVENT_PAGE_SIZE), ..ListParams::default() };
        let mut kept: Vec<KubeEventInfo> = Vec::new();
        let mut truncated = false;
        let mut pages = 0;
        loop {
            let page = match self.call_api(&what, api.list(&params)).await {
                Ok(page) => page,
                // 410 Gone: the continue token expired (the server compacted its
                // history). Start again would repeat everything read so far; what was
                // read is still true, so report it as incomplete instead.
                Err(Error::Kube { status: 410, .. }) if pages > 0 => {
                    truncated = true;
                    break;
                }
                Err(e) => return Err(e),
            };
            pages += 1;
            kept.extend(page.items.iter().filter_map(event_info).filter(|e| e.time >= since && keep(e)));
            // Bound memory on busy clusters: keep only the newest MAX_EVENTS so far.
            if kept.len() > 2 * MAX_EVENTS {
                keep_newest(&mut kept);
                truncated = true;
            }
            match page.metadata.continue_.filter(|token| !token.is_empty()) {
                Some(_) if pages >= MAX_EVENT_PAGES => {
                    truncated = true;
                    break;
                }
                Some(token) => params.continue_token = Some(token),
                None => break,
            }
        }
        if kept.len() > MAX_EVENTS {
            truncated = true;
        }
        keep_newest(&mut kept);
        kept.sort_by_key(|e| e.time);
        Ok(EventList { events: kept, truncated, pages })
    }

    /// The rollouts of Deployment `namespace/deployment` since `since` (unix seconds),
    /// from its ReplicaSets; see [`rollout_changes`]. Needs `get` on `deployments` and
    /// `list` on `replicasets`.
    pub async fn rollouts(&self, namespace: &str, deployment: &str, since: i64) -> Result<Vec<RolloutChange>> {
        let object = self.get_deployment(namespace, deployment).await?;
        let replica_sets = self.replicasets_owned_by(namespace, &object).await?;
        Ok(rollout_changes(&replica_sets, since))
    }

    /// Metadata of each referenced ConfigMap and Secret (see [`KubeClient::config_change`]).
    pub async fn config_changes(&self, namespace: &str, refs: &[ConfigRef], since: i64) -> Result<Vec<ConfigChange>> {
        let mut out = Vec::with_capacity(refs.len());
        for config in refs {
            out.push(self.config_change(namespace, config, since).await?);
        }
        Ok(out)
    }

    /// Metadata of one ConfigMap or Secret, read with a metadata-only GET so that no
    /// data is transferred (see the module documentation). A missing object is
    /// `exists: false`, not an error. Needs `get` on `configmaps` or `secrets`.
    pub async fn config_change(&self, namespace: &str, config: &ConfigRef, since: i64) -> Result<ConfigChange> {
        check_name("namespace", namespace)?;
        check_name("config name", &config.name)?;
        let what = format!("{} {namespace}/{} (metadata)", config.kind.resource(), config.name);
        let read = match config.kind {
            ConfigKind::ConfigMap => {
                let api: Api<ConfigMap> = Api::namespaced(self.kube_client(), namespace);
                self.call_api(&what, api.get_metadata(&config.name)).await.map(|partial| partial.metadata)
            }
            ConfigKind::Secret => {
                // PartialObjectMeta has no data fields: whatever the server sends beyond
                // metadata is discarded by the decoder.
                let api: Api<Secret> = Api::namespaced(self.kube_client(), namespace);
                self.call_api(&what, api.get_metadata(&config.name)).await.map(|partial| partial.metadata)
            }
        };
        let metadata = match read {
            Ok(metadata) => metadata,
            Err(e) if e.is_not_found() => {
                return Ok(ConfigChange {
                    kind: config.kind,
                    name: config.name.clone(),
                    exists: false,
                    created: None,
                    last_change: None,
                    last_change_source: None,
                    last_manager: None,
                    resource_version: None,
                    changed_since: false,
                })
            }
            Err(e) => return Err(e),
        };
        let created = metadata.creation_timestamp.as_ref().map(secs);
        let newest = newest_write(&metadata);
        let (last_change, last_change_source, last_manager) = match newest {
            Some((time, manager)) => (Some(time), Some(TimeSource::ManagedFields), manager),
            None => (created, created.map(|_| TimeSource::CreationTimestamp), None),
        };
        Ok(ConfigChange {
            kind: config.kind,
            name: config.name.clone(),
            exists: true,
            created,
            last_change,
            last_change_source,
            last_manager,
            resource_version: metadata.resource_version,
            changed_since: last_change.is_some_and(|t| t >= since),
        })
    }

    /// Replica counts of Deployment `namespace/deployment` and the autoscalers
    /// (autoscaling/v2) that target it. Needs `get` on `deployments` and `list` on
    /// `horizontalpodautoscalers`.
    pub async fn scale_evidence(&self, namespace: &str, deployment: &str, since: i64) -> Result<ScaleEvidence> {
        let object = self.get_deployment(namespace, deployment).await?;
        let hpas = self.hpas_targeting(namespace, deployment, since).await?;
        Ok(scale_of(&object, hpas))
    }

    async fn hpas_targeting(&self, namespace: &str, deployment: &str, since: i64) -> Result<Vec<HpaInfo>> {
        let api: Api<HorizontalPodAutoscaler> = Api::namespaced(self.kube_client(), namespace);
        let list = self
            .call_api(&format!("horizontalpodautoscalers in namespace {namespace}"), api.list(&ListParams::default()))
            .await?;
        let mut out: Vec<HpaInfo> = list
            .items
            .iter()
            .filter(|hpa| {
                hpa.spec.as_ref().is_some_and(|spec| {
                    let target = &spec.scale_target_ref;
                    target.kind == "Deployment"
                        && target.name == deployment
                        && target.api_version.as_deref().is_none_or(|v| v.starts_with("apps/"))
                })
            })
            .map(|hpa| hpa_info(hpa, since))
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Where Deployment `namespace/deployment` runs: its ReplicaSets, its pods (listed
    /// with its selector, kept when a ReplicaSet of it owns them), their nodes, and the
    /// Services whose selector matches its pod template. Needs `get` on `deployments`
    /// and `nodes`, `list` on `replicasets`, `pods` and `services`.
    pub async fn topology(&self, namespace: &str, deployment: &str) -> Result<Topology> {
        let object = self.get_deployment(namespace, deployment).await?;
        let replica_sets = self.replicasets_owned_by(namespace, &object).await?;
        self.topology_of(namespace, &object, Some(&replica_sets), &mut Gaps::strict()).await
    }

    async fn topology_of(
        &self,
        namespace: &str,
        deployment: &Deployment,
        replica_sets: Option<&[ReplicaSet]>,
        gaps: &mut Gaps,
    ) -> Result<Topology> {
        let name = deployment.metadata.name.clone().unwrap_or_default();
        let selector = match deployment.spec.as_ref() {
            Some(spec) => crate::kube_actions::selector_string(&spec.selector)?,
            None => None,
        };
        let mut topology = Topology {
            namespace: namespace.to_string(),
            deployment: name.clone(),
            selector: selector.clone(),
            replica_sets: replica_sets.unwrap_or_default().iter().map(replicaset_info).collect(),
            pods: Vec::new(),
            nodes: Vec::new(),
            services: Vec::new(),
        };

        // Without a selector the list would return every pod of the namespace.
        if selector.is_some() {
            let api: Api<Pod> = Api::namespaced(self.kube_client(), namespace);
            let params = ListParams { label_selector: selector, ..ListParams::default() };
            let listed = self.call_api(&format!("pods of deployment {namespace}/{name}"), api.list(&params)).await;
            if let Some(list) = gaps.absorb("pods", listed)? {
                // Pod -> ReplicaSet -> Deployment: only pods a ReplicaSet of this
                // Deployment controls. When the ReplicaSets could not be read, the
                // selector alone decides.
                let owners: Option<BTreeMap<&str, &str>> = replica_sets.map(|sets| {
                    sets.iter()
                        .filter_map(|rs| Some((rs.metadata.uid.as_deref()?, rs.metadata.name.as_deref()?)))
                        .collect()
                });
                topology.pods = list
                    .items
                    .iter()
                    .filter(|pod| match &owners {
                        Some(owners) => controller_of(&pod.metadata).is_some_and(|(uid, _)| owners.contains_key(uid)),
                        None => true,
                    })
                    .map(pod_info)
                    .collect();
                topology.pods.sort_by(|a, b| a.name.cmp(&b.name));
            }
        }

        let node_names: BTreeSet<String> = topology.pods.iter().filter_map(|p| p.node.clone()).collect();
        for node in node_names {
            let read = match self.get_node(&node).await {
                Ok(object) => Ok(node_info(&node, Some(&object))),
                Err(e) if e.is_not_found() => Ok(node_info(&node, None)),
                Err(e) => Err(e),
            };
            match gaps.absorb("nodes", read)? {
                Some(info) => topology.nodes.push(info),
                // Forbidden: every other node would be refused too.
                None => break,
            }
        }

        let template_labels = deployment
            .spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        let api: Api<Service> = Api::namespaced(self.kube_client(), namespace);
        let listed =
            self.call_api(&format!("services in namespace {namespace}"), api.list(&ListParams::default())).await;
        if let Some(list) = gaps.absorb("services", listed)? {
            topology.services = list
                .items
                .iter()
                .filter(|svc| {
                    svc.spec.as_ref().and_then(|s| s.selector.as_ref()).is_some_and(|sel| {
                        !sel.is_empty() && sel.iter().all(|(k, v)| template_labels.get(k) == Some(v))
                    })
                })
                .filter_map(|svc| svc.metadata.name.clone())
                .collect();
            topology.services.sort();
        }
        Ok(topology)
    }
}

/// Reduces one Event; `None` when it carries no usable time at all.
pub fn event_info(event: &Event) -> Option<KubeEventInfo> {
    let series = event.series.as_ref();
    let time = event
        .last_timestamp
        .as_ref()
        .map(secs)
        .or_else(|| series.and_then(|s| s.last_observed_time.as_ref()).map(|t| t.0.as_second()))
        .or_else(|| event.event_time.as_ref().map(|t| t.0.as_second()))
        .or_else(|| event.first_timestamp.as_ref().map(secs))
        .or_else(|| event.metadata.creation_timestamp.as_ref().map(secs))?;
    let count = event.count.or_else(|| series.and_then(|s| s.count)).unwrap_or(1);
    let involved = &event.involved_object;
    Some(KubeEventInfo {
        time,
        reason: event.reason.clone().unwrap_or_default(),
        message: truncate_chars(event.message.as_deref().unwrap_or_default(), MAX_MESSAGE_CHARS),
        count: u32::try_from(count).unwrap_or(0).max(1),
        type_: event.type_.clone().unwrap_or_default(),
        involved_kind: involved.kind.clone().unwrap_or_default(),
        involved_name: involved.name.clone().unwrap_or_default(),
        involved_namespace: involved.namespace.clone().filter(|ns| !ns.is_empty()),
    })
}

/// The rollouts recorded by a Deployment's ReplicaSets whose time is at or after
/// `since`, oldest first, each compared with the revision before it.
///
/// Every ReplicaSet holds one pod template and its current revision number
/// (`deployment.kubernetes.io/revision`); a rollback re-activates an old ReplicaSet, gives
/// it the next number and moves its old numbers to
/// `deployment.kubernetes.io/revision-history`. So revision `n` went from the template of
/// whichever ReplicaSet holds (or held) the largest number below `n` to this one.
///
/// Listed: each ReplicaSet's current revision and, for a reused ReplicaSet, also its
/// first revision. A new revision is dated by its ReplicaSet's creation (exact). A
/// rollback is not recorded anywhere with a time, so it is marked approximate and dated
/// by the ReplicaSet's newest non-status `managedFields` write (the controller's update
/// of the revision annotation, or a later one), or, without `managedFields`, by the
/// earliest moment it can have happened: the creation of the revision it replaced.
/// Intermediate history numbers (a template rolled back to twice) have no recorded
/// time and are not listed. A revision whose predecessor is no longer retained
/// (`revisionHistoryLimit`) has empty `from_images` and a note.
pub fn rollout_changes(replica_sets: &[ReplicaSet], since: i64) -> Vec<RolloutChange> {
    // Every revision number, current or historical, with the ReplicaSet behind it.
    let mut by_revision: BTreeMap<i64, &ReplicaSet> = BTreeMap::new();
    for rs in replica_sets {
        if let Some(revision) = replicaset_revision(rs) {
            by_revision.insert(revision, rs);
        }
        for revision in revision_history(rs) {
            by_revision.entry(revision).or_insert(rs);
        }
    }
    let created = |rs: &ReplicaSet| rs.metadata.creation_timestamp.as_ref().map(secs);
    let mut out = Vec::new();
    for rs in replica_sets {
        let Some(current) = replicaset_revision(rs) else {
            continue;
        };
        let first = revision_history(rs).into_iter().min().filter(|first| *first < current);
        let mut revisions = Vec::new();
        if let Some(first) = first {
            revisions.push((first, false));
        }
        revisions.push((current, first.is_some()));
        for (revision, rollback) in revisions {
            let previous = by_revision.range(..revision).next_back();
            let mut notes: Vec<String> = Vec::new();
            let dated = if rollback {
                let earliest = [created(rs), previous.and_then(|(_, p)| created(p))].into_iter().flatten().max();
                match newest_write(&rs.metadata) {
                    Some((time, _)) => {
                        notes
                            .push("rollback to an older ReplicaSet; dated by its last write (approximate)".to_string());
                        Some((earliest.map_or(time, |e| time.max(e)), TimeSource::ManagedFields))
                    }
                    None => {
                        notes.push(
                            "rollback to an older ReplicaSet; its time is not recorded, shown is the \
                             earliest it can have happened (the replaced revision's creation)"
                                .to_string(),
                        );
                        earliest.map(|t| (t, TimeSource::CreationTimestamp))
                    }
                }
            } else {
                created(rs).map(|t| (t, TimeSource::CreationTimestamp))
            };
            let Some((time, time_source)) = dated else {
                continue;
            };
            if time < since {
                continue;
            }
            let to_images = template_images(rs);
            let (previous_revision, from_images) = match previous {
                Some((number, prev)) => (Some(*number), template_images(prev)),
                None => (None, Vec::new()),
            };
            let image_changes = diff_images(&from_images, &to_images);
            match previous {
                None if revision > 1 => notes.push(format!(
                    "revision {} is no longer retained (revisionHistoryLimit); the images before \
                     this revision are unknown",
                    revision - 1
                )),
                Some(_) if image_changes.is_empty() => notes.push(
                    "the pod template changed without an image change (env, resources, config \
                     references, annotations...)"
                        .to_string(),
                ),
                _ => {}
            }
            out.push(RolloutChange {
                time,
                time_source,
                time_approximate: rollback,
                revision,
                replica_set: rs.metadata.name.clone().unwrap_or_default(),
                rollback,
                previous_revision,
                from_images,
                to_images,
                image_changes,
                note: (!notes.is_empty()).then(|| notes.join("; ")),
            });
        }
    }
    out.sort_by_key(|c| (c.time, c.revision));
    out
}

/// The ConfigMaps and Secrets the Deployment's pod template references: container and
/// init container `env[].valueFrom` (`configMapKeyRef`, `secretKeyRef`) and `envFrom`,
/// `volumes` (`configMap`, `secret`, `projected` sources) and `imagePullSecrets`. Sorted
/// by kind and name; each lists how it is used.
pub fn referenced_config(deployment: &Deployment) -> Vec<ConfigRef> {
    let mut found: BTreeMap<(ConfigKind, String), BTreeSet<String>> = BTreeMap::new();
    let mut add = |kind: ConfigKind, name: &str, use_: String| {
        if !name.is_empty() {
            found.entry((kind, name.to_string())).or_default().insert(use_);
        }
    };
    let Some(spec) = deployment.spec.as_ref().and_then(|s| s.template.spec.as_ref()) else {
        return Vec::new();
    };
    let PodSpec { containers, init_containers, volumes, image_pull_secrets, .. } = spec;
    for container in containers.iter().chain(init_containers.iter().flatten()) {
        for env in container.env.iter().flatten() {
            let Some(source) = env.value_from.as_ref() else {
                continue;
            };
            let use_ = format!("env {}/{}", container.name, env.name);
            if let Some(r) = &source.config_map_key_ref {
                add(ConfigKind::ConfigMap, &r.name, use_.clone());
            }
            if let Some(r) = &source.secret_key_ref {
                add(ConfigKind::Secret, &r.name, use_);
            }
        }
        for from in container.env_from.iter().flatten() {
            let use_ = format!("envFrom {}", container.name);
            if let Some(r) = &from.config_map_ref {
                add(ConfigKind::ConfigMap, &r.name, use_.clone());
            }
            if let Some(r) = &from.secret_ref {
                add(ConfigKind::Secret, &r.name, use_);
            }
        }
    }
    for volume in volumes.iter().flatten() {
        let use_ = format!("volume {}", volume.name);
        if let Some(cm) = &volume.config_map {
            add(ConfigKind::ConfigMap, &cm.name, use_.clone());
        }
        if let Some(name) = volume.secret.as_ref().and_then(|s| s.secret_name.as_deref()) {
            add(ConfigKind::Secret, name, use_.clone());
        }
        let sources = volume.projected.as_ref().and_then(|p| p.sources.as_ref());
        for source in sources.into_iter().flatten() {
            if let Some(cm) = &source.config_map {
                add(ConfigKind::ConfigMap, &cm.name, use_.clone());
            }
            if let Some(secret) = &source.secret {
                add(ConfigKind::Secret, &secret.name, use_.clone());
            }
        }
    }
    for pull in image_pull_secrets.iter().flatten() {
        add(ConfigKind::Secret, &pull.name, "imagePullSecrets".to_string());
    }
    found
        .into_iter()
        .map(|((kind, name), uses)| ConfigRef { kind, name, used_by: uses.into_iter().collect() })
        .collect()
}

/// Collects 403s as gaps (in [`collect`]) or passes them on (single-part reads).
struct Gaps {
    tolerate_forbidden: bool,
    list: Vec<String>,
}

impl Gaps {
    fn tolerant() -> Self {
        Self { tolerate_forbidden: true, list: Vec::new() }
    }

    fn strict() -> Self {
        Self { tolerate_forbidden: false, list: Vec::new() }
    }

    /// `Ok(Some)` for a value, `Ok(None)` for a tolerated 403 (recorded as
    /// `"<part>: forbidden"`), `Err` for everything else.
    fn absorb<T>(&mut self, part: &str, result: Result<T>) -> Result<Option<T>> {
        match result {
            Ok(value) => Ok(Some(value)),
            Err(e) if self.tolerate_forbidden && is_forbidden(&e) => {
                let gap = format!("{part}: forbidden");
                if !self.list.contains(&gap) {
                    tracing::info!(%e, part, "kubernetes evidence incomplete: forbidden");
                    self.list.push(gap);
                }
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn into_list(self) -> Vec<String> {
        self.list
    }
}

fn is_forbidden(error: &Error) -> bool {
    matches!(error, Error::Kube { status: 403, .. })
        || matches!(error, Error::Kube { reason, .. } if reason == "Forbidden")
}

/// Which events concern the workload, by involved object.
struct Related {
    deployment: String,
    replica_sets: BTreeSet<String>,
    pods: BTreeSet<String>,
    hpas: BTreeSet<String>,
    services: BTreeSet<String>,
    configmaps: BTreeSet<String>,
    secrets: BTreeSet<String>,
    /// `<deployment>-`: the name prefix of its ReplicaSets and pods, used when the
    /// ReplicaSets are unknown.
    fallback_prefix: Option<String>,
}

impl Related {
    fn by_name(deployment: &str) -> Self {
        Self {
            deployment: deployment.to_string(),
            replica_sets: BTreeSet::new(),
            pods: BTreeSet::new(),
            hpas: BTreeSet::new(),
            services: BTreeSet::new(),
            configmaps: BTreeSet::new(),
            secrets: BTreeSet::new(),
            fallback_prefix: Some(format!("{deployment}-")),
        }
    }

    fn of(
        deployment: &str,
        replica_sets: Option<&[ReplicaSet]>,
        topology: &Topology,
        hpas: &[HpaInfo],
        config: &[ConfigRef],
    ) -> Self {
        let names = |kind: ConfigKind| config.iter().filter(|c| c.kind == kind).map(|c| c.name.clone()).collect();
        Self {
            deployment: deployment.to_string(),
            replica_sets: replica_sets.unwrap_or_default().iter().filter_map(|rs| rs.metadata.name.clone()).collect(),
            pods: topology.pods.iter().map(|p| p.name.clone()).collect(),
            hpas: hpas.iter().map(|h| h.name.clone()).collect(),
            services: topology.services.iter().cloned().collect(),
            configmaps: names(ConfigKind::ConfigMap),
            secrets: names(ConfigKind::Secret),
            fallback_prefix: replica_sets.is_none().then(|| format!("{deployment}-")),
        }
    }

    fn matches(&self, event: &KubeEventInfo) -> bool {
        let name = event.involved_name.as_str();
        let by_prefix = self.fallback_prefix.as_deref().is_some_and(|p| name.starts_with(p));
        match event.involved_kind.as_str() {
            "Deployment" => name == self.deployment,
            "ReplicaSet" => self.replica_sets.contains(name) || by_prefix,
            // Pods that are gone (replaced after an OOM kill) still carry their
            // ReplicaSet's name as prefix.
            "Pod" => {
                self.pods.contains(name)
                    || self
                        .replica_sets
                        .iter()
                        .any(|rs| name.strip_prefix(rs.as_str()).is_some_and(|r| r.starts_with('-')))
                    || by_prefix
            }
            "HorizontalPodAutoscaler" => self.hpas.contains(name),
            "Service" | "Endpoints" => self.services.contains(name),
            "ConfigMap" => self.configmaps.contains(name),
            "Secret" => self.secrets.contains(name),
            _ => false,
        }
    }
}

fn secs(time: &Time) -> i64 {
    time.0.as_second()
}

/// Sorts newest first and keeps at most [`MAX_EVENTS`].
fn keep_newest(events: &mut Vec<KubeEventInfo>) {
    events.sort_by_key(|e| std::cmp::Reverse(e.time));
    events.truncate(MAX_EVENTS);
}

fn truncate_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// The newest `managedFields` time (status subresource writes excluded) and its manager.
fn newest_write(metadata: &ObjectMeta) -> Option<(i64, Option<String>)> {
    metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|entry| entry.subresource.as_deref().is_none_or(str::is_empty))
        .filter_map(|entry| Some((secs(entry.time.as_ref()?), entry.manager.clone())))
        .max_by_key(|(time, _)| *time)
}

fn revision_history(rs: &ReplicaSet) -> Vec<i64> {
    rs.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REVISION_HISTORY_ANNOTATION))
        .map(|h| h.split(',').filter_map(|r| r.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// `(uid, kind)` of the controller owner reference.
fn controller_of(metadata: &ObjectMeta) -> Option<(&str, &str)> {
    metadata
        .owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
        .map(|r| (r.uid.as_str(), r.kind.as_str()))
}

fn template_images(rs: &ReplicaSet) -> Vec<ContainerImage> {
    let Some(spec) = rs.spec.as_ref().and_then(|s| s.template.as_ref()).and_then(|t| t.spec.as_ref()) else {
        return Vec::new();
    };
    spec.init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
        .map(|c| ContainerImage { container: c.name.clone(), image: c.image.clone().unwrap_or_default() })
        .collect()
}

fn diff_images(from: &[ContainerImage], to: &[ContainerImage]) -> Vec<ImageChange> {
    let old: BTreeMap<&str, &str> = from.iter().map(|c| (c.container.as_str(), c.image.as_str())).collect();
    let new: BTreeMap<&str, &str> = to.iter().map(|c| (c.container.as_str(), c.image.as_str())).collect();
    if from.is_empty() {
        // The first known revision: nothing to compare with.
        return Vec::new();
    }
    let names: BTreeSet<&str> = old.keys().chain(new.keys()).copied().collect();
    names
        .into_iter()
        .filter(|name| old.get(name) != new.get(name))
        .map(|name| ImageChange {
            container: name.to_string(),
            from: old.get(name).map(|s| s.to_string()),
            to: new.get(name).map(|s| s.to_string()),
        })
        .collect()
}

fn replicaset_info(rs: &ReplicaSet) -> ReplicaSetInfo {
    ReplicaSetInfo {
        name: rs.metadata.name.clone().unwrap_or_default(),
        revision: replicaset_revision(rs),
        replicas: rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
        ready_replicas: rs.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0),
        images: template_images(rs),
        created: rs.metadata.creation_timestamp.as_ref().map(secs),
    }
}

fn pod_info(pod: &Pod) -> PodInfo {
    let status = pod.status.as_ref();
    let statuses: Vec<&ContainerStatus> = status
        .map(|s| s.init_container_statuses.iter().flatten().chain(s.container_statuses.iter().flatten()).collect())
        .unwrap_or_default();
    let restarts = statuses.iter().map(|c| c.restart_count).fold(0i32, i32::saturating_add);
    // The most recent termination, current state or last state, of any container.
    let last_termination = statuses
        .iter()
        .flat_map(|c| {
            [
                c.state.as_ref().and_then(|s| s.terminated.as_ref()),
                c.last_state.as_ref().and_then(|s| s.terminated.as_ref()),
            ]
        })
        .flatten()
        .max_by_key(|t| t.finished_at.as_ref().map(secs));
    let waiting_reason = statuses.iter().filter_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone()).next();
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conds| conds.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let replica_set = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true) && r.kind == "ReplicaSet")
        .map(|r| r.name.clone());
    PodInfo {
        name: pod.metadata.name.clone().unwrap_or_default(),
        node: pod.spec.as_ref().and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty()),
        phase: status.and_then(|s| s.phase.clone()),
        ready,
        restarts,
        last_termination_reason: last_termination.and_then(|t| t.reason.clone()),
        last_termination_exit_code: last_termination.map(|t| t.exit_code),
        waiting_reason,
        replica_set,
    }
}

fn node_info(name: &str, node: Option<&Node>) -> NodeInfo {
    let Some(node) = node else {
        return NodeInfo {
            name: name.to_string(),
            found: false,
            ready: false,
            not_ready_reason: Some("node not found".to_string()),
            conditions: Vec::new(),
            unschedulable: false,
        };
    };
    let conditions = node.status.as_ref().and_then(|s| s.conditions.as_deref()).unwrap_or_default();
    let ready_condition = conditions.iter().find(|c| c.type_ == "Ready");
    let ready = ready_condition.is_some_and(|c| c.status == "True");
    let not_ready_reason = (!ready).then(|| match ready_condition {
        Some(c) => match &c.reason {
            Some(reason) => format!("{} ({reason})", c.status),
            None => c.status.clone(),
        },
        None => "no Ready condition".to_string(),
    });
    NodeInfo {
        name: name.to_string(),
        found: true,
        ready,
        not_ready_reason,
        conditions: conditions
            .iter()
            .filter(|c| c.type_ != "Ready" && c.status == "True")
            .map(|c| c.type_.clone())
            .collect(),
        unschedulable: node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false),
    }
}

fn hpa_info(hpa: &HorizontalPodAutoscaler, since: i64) -> HpaInfo {
    let spec = hpa.spec.as_ref();
    let status = hpa.status.as_ref();
    let max_replicas = spec.map_or(0, |s| s.max_replicas);
    let current_replicas = status.and_then(|s| s.current_replicas);
    let desired_replicas = status.map(|s| s.desired_replicas);
    let last_scale_time = status.and_then(|s| s.last_scale_time.as_ref()).map(secs);
    HpaInfo {
        name: hpa.metadata.name.clone().unwrap_or_default(),
        min_replicas: spec.and_then(|s| s.min_replicas),
        max_replicas,
        current_replicas,
        desired_replicas,
        last_scale_time,
        scaled_since: last_scale_time.is_some_and(|t| t >= since),
        at_max: max_replicas > 0
            && (desired_replicas.is_some_and(|d| d >= max_replicas)
                || current_replicas.is_some_and(|c| c >= max_replicas)),
        conditions: status
            .and_then(|s| s.conditions.as_deref())
            .unwrap_or_default()
            .iter()
            .map(|c| ConditionInfo {
                type_: c.type_.clone(),
                status: c.status.clone(),
                reason: c.reason.clone(),
                message: c.message.as_deref().map(|m| truncate_chars(m, MAX_MESSAGE_CHARS)),
            })
            .collect(),
    }
}

fn scale_of(deployment: &Deployment, hpas: Vec<HpaInfo>) -> ScaleEvidence {
    let status = deployment.status.as_ref();
    let count = |f: fn(&k8s_openapi::api::apps::v1::DeploymentStatus) -> Option<i32>| status.and_then(f).unwrap_or(0);
    ScaleEvidence {
        spec_replicas: deployment.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
        status_replicas: count(|s| s.replicas),
        ready_replicas: count(|s| s.ready_replicas),
        available_replicas: count(|s| s.available_replicas),
        updated_replicas: count(|s| s.updated_replicas),
        unavailable_replicas: count(|s| s.unavailable_replicas),
        hpas,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentSpec, ReplicaSetSpec};
    use k8s_openapi::api::core::v1::{
        ConfigMapEnvSource, ConfigMapKeySelector, ConfigMapProjection, ConfigMapVolumeSource, Container, EnvFromSource,
        EnvVar, EnvVarSource, LocalObjectReference, PodTemplateSpec, ProjectedVolumeSource, SecretKeySelector,
        SecretVolumeSource, Volume, VolumeProjection,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;

    fn at(seconds: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(seconds).unwrap_or_default())
    }

    fn replica_set(name: &str, revision: i64, history: &str, image: &str, created: i64) -> ReplicaSet {
        let mut annotations =
            BTreeMap::from([(crate::kube_actions::REVISION_ANNOTATION.to_string(), revision.to_string())]);
        if !history.is_empty() {
            annotations.insert(REVISION_HISTORY_ANNOTATION.to_string(), history.to_string());
        }
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                annotations: Some(annotations),
                creation_timestamp: Some(at(created)),
                ..ObjectMeta::default()
            },
            spec: Some(ReplicaSetSpec {
                template: Some(PodTemplateSpec {
                    metadata: None,
                    spec: Some(PodSpec {
                        containers: vec![Container {
                            name: "web".to_string(),
                            image: Some(image.to_string()),
                            ..Container::default()
                        }],
                        ..PodSpec::default()
                    }),
                }),
                ..ReplicaSetSpec::default()
            }),
            status: None,
        }
    }

    #[test]
    fn rollback_is_compared_with_the_revision_it_replaced_and_dated_approximately() {
        let mut a = replica_set("web-a", 4, "1", "web:1", 100);
        a.metadata.managed_fields = Some(vec![
            ManagedFieldsEntry {
                manager: Some("kube-controller-manager".into()),
                time: Some(at(400)),
                ..ManagedFieldsEntry::default()
            },
            ManagedFieldsEntry {
                manager: Some("kube-controller-manager".into()),
                subresource: Some("status".into()),
                time: Some(at(450)),
                ..ManagedFieldsEntry::default()
            },
        ]);
        let b = replica_set("web-b", 2, "", "web:2", 200);
        let c = replica_set("web-c", 3, "", "web:3", 300);
        let changes = rollout_changes(&[a, b, c], 0);
        let summary: Vec<(i64, i64, bool, bool, Option<i64>)> =
            changes.iter().map(|c| (c.revision, c.time, c.rollback, c.time_approximate, c.previous_revision)).collect();
        assert_eq!(
            summary,
            vec![
                (1, 100, false, false, None),
                (2, 200, false, false, Some(1)),
                (3, 300, false, false, Some(2)),
                (4, 400, true, true, Some(3)),
            ]
        );
        let rollback = &changes[3];
        assert_eq!(rollback.time_source, TimeSource::ManagedFields);
        assert_eq!(
            rollback.image_changes,
            vec![ImageChange { container: "web".into(), from: Some("web:3".into()), to: Some("web:1".into()) }]
        );
        // `since` drops what happened before it.
        let recent = rollout_changes(
            &[replica_set("web-b", 2, "", "web:2", 200), replica_set("web-c", 3, "", "web:3", 300)],
            250,
        );
        assert_eq!(recent.len(), 1);
        assert_eq!(recent[0].from_images[0].image, "web:2");
        // Revision 1 is gone: revision 2 cannot be compared.
        let orphan = rollout_changes(&[replica_set("web-b", 2, "", "web:2", 200)], 0);
        assert!(orphan[0].from_images.is_empty());
        assert!(orphan[0].note.as_deref().is_some_and(|n| n.contains("no longer retained")));
    }

    #[test]
    fn config_references_come_from_env_env_from_volumes_and_pull_secrets() {
        let container = Container {
            name: "web".into(),
            env: Some(vec![
                EnvVar {
                    name: "DB_URL".into(),
                    value_from: Some(EnvVarSource {
                        secret_key_ref: Some(SecretKeySelector {
                            name: "db".into(),
                            key: "url".into(),
                            optional: None,
                        }),
                        ..EnvVarSource::default()
                    }),
                    value: None,
                },
                EnvVar {
                    name: "MODE".into(),
                    value_from: Some(EnvVarSource {
                        config_map_key_ref: Some(ConfigMapKeySelector {
                            name: "settings".into(),
                            key: "mode".into(),
                            optional: None,
                        }),
                        ..EnvVarSource::default()
                    }),
                    value: None,
                },
                EnvVar { name: "PLAIN".into(), value: Some("x".into()), value_from: None },
            ]),
            env_from: Some(vec![EnvFromSource {
                config_map_ref: Some(ConfigMapEnvSource { name: "settings".into(), optional: None }),
                ..EnvFromSource::default()
            }]),
            ..Container::default()
        };
        let deployment = Deployment {
            spec: Some(DeploymentSpec {
                template: PodTemplateSpec {
                    metadata: None,
                    spec: Some(PodSpec {
                        containers: vec![container],
                        volumes: Some(vec![
                            Volume {
                                name: "cfg".into(),
                                config_map: Some(ConfigMapVolumeSource {
                                    name: "files".into(),
                                    ..ConfigMapVolumeSource::default()
                                }),
                                ..Volume::default()
                            },
                            Volume {
                                name: "tls".into(),
                                secret: Some(SecretVolumeSource {
                                    secret_name: Some("tls".into()),
                                    ..SecretVolumeSource::default()
                                }),
                                ..Volume::default()
                            },
                            Volume {
                                name: "all".into(),
                                projected: Some(ProjectedVolumeSource {
                                    sources: Some(vec![VolumeProjection {
                                        config_map: Some(ConfigMapProjection {
                                            name: "files".into(),
                                            ..ConfigMapProjection::default()
                                        }),
                                        ..VolumeProjection::default()
                                    }]),
                                    ..ProjectedVolumeSource::default()
                                }),
                                ..Volume::default()
                            },
                        ]),
                        image_pull_secrets: Some(vec![LocalObjectReference { name: "registry".into() }]),
                        ..PodSpec::default()
                    }),
                },
                ..DeploymentSpec::default()
            }),
            ..Deployment::default()
        };
        let refs = referenced_config(&deployment);
        let shown: Vec<(ConfigKind, &str, Vec<&str>)> =
            refs.iter().map(|r| (r.kind, r.name.as_str(), r.used_by.iter().map(String::as_str).collect())).collect();
        assert_eq!(
            shown,
            vec![
                (ConfigKind::ConfigMap, "files", vec!["volume all", "volume cfg"]),
                (ConfigKind::ConfigMap, "settings", vec!["env web/MODE", "envFrom web"]),
                (ConfigKind::Secret, "db", vec!["env web/DB_URL"]),
                (ConfigKind::Secret, "registry", vec!["imagePullSecrets"]),
                (ConfigKind::Secret, "tls", vec!["volume tls"]),
            ]
        );
        assert!(referenced_config(&Deployment::default()).is_empty());
    }

    #[test]
    fn messages_are_cut_on_character_boundaries() {
        assert_eq!(truncate_chars("short", 10), "short");
        assert_eq!(truncate_chars("ééééé", 3), "ééé…");
        assert_eq!(truncate_chars("", 3), "");
    }

    #[test]
    fn event_time_falls_back_through_the_timestamps() {
        let mut event = Event { first_timestamp: Some(at(10)), count: Some(-3), ..Event::default() };
        let info = event_info(&event);
        assert_eq!(info.as_ref().map(|i| (i.time, i.count)), Some((10, 1)));
        event.last_timestamp = Some(at(20));
        assert_eq!(event_info(&event).map(|i| i.time), Some(20));
        assert!(event_info(&Event::default()).is_none());
    }
}
