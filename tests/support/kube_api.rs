//! A local Kubernetes API test server.
//!
//! [`KubeApi::start`] serves the part of the real API server that Warden's
//! remediation actions use, over plain HTTP on `127.0.0.1:0`, with the real
//! `k8s-openapi` types on the wire. Objects live in one in-memory store keyed by
//! (resource, namespace, name) as JSON; every body that creates or replaces an
//! object, and every patch result, is decoded into its real `k8s-openapi` type
//! (so a body the real server could not decode is rejected), re-encoded, and
//! checked by a few of the real server's validation rules.
//!
//! Endpoints:
//!
//! * `GET  /version`
//! * `apps/v1` Deployments, `/apis/apps/v1/namespaces/{ns}/deployments[/{name}]`:
//!   list, get, create (`POST`), replace (`PUT`), `PATCH`, `DELETE`
//! * `GET  .../deployments/{name}/scale` → `autoscaling/v1 Scale`; `PATCH` and
//!   `PUT .../scale` → updated `Scale`
//! * `apps/v1` ReplicaSets, `/apis/apps/v1/namespaces/{ns}/replicasets[/{name}]`
//!   (written by the emulated deployment controller; the same verbs)
//! * `core/v1` Pods, `/api/v1/namespaces/{ns}/pods[/{name}]`
//! * `core/v1` Nodes, `/api/v1/nodes[/{name}]`
//! * `batch/v1` Jobs, `/apis/batch/v1/namespaces/{ns}/jobs[/{name}]`
//! * `core/v1` Events, Services, ConfigMaps and Secrets,
//!   `/api/v1/namespaces/{ns}/{events,services,configmaps,secrets}[/{name}]`
//! * `autoscaling/v2` HorizontalPodAutoscalers,
//!   `/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers[/{name}]`
//! * `coordination.k8s.io/v1` Leases (leader election),
//!   `/apis/coordination.k8s.io/v1/namespaces/{ns}/leases[/{name}]`
//! * every namespaced resource across all namespaces: `GET /api/v1/events`,
//!   `GET /apis/apps/v1/deployments`, ... (list only)
//!
//! Semantics, as on the real server:
//!
//! * Lists honour `labelSelector` (`k=v`, `k==v`, `k!=v`, `k`, `!k`,
//!   `k in (a,b)`, `k notin (a,b)`) and simple `fieldSelector`s (`spec.nodeName=n`).
//! * Lists are ordered by namespace and name and paginate with `limit` and `continue`:
//!   a page that is not the last carries `metadata.continue` (opaque) and
//!   `remainingItemCount`; an undecodable token is 400 `BadRequest`.
//! * `Accept: application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1` on a GET
//!   (`as=PartialObjectMetadataList` on a list) answers metadata only
//!   (`meta.k8s.io/v1 PartialObjectMetadata`), without `spec`, `status` or `data`.
//! * Secrets: `stringData` is folded into (base64) `data` on every write.
//! * `managedFields` are stored as written; the server does not track field
//!   managers (tests set them with [`KubeApi::edit_object`]).
//! * `PATCH` takes `application/merge-patch+json` (RFC 7386),
//!   `application/strategic-merge-patch+json` (merge patch where the lists
//!   `containers`, `initContainers`, `env`, `volumes`, `imagePullSecrets` merge by
//!   `name`, `volumeMounts` by `mountPath`, `ports` by `containerPort`, with the
//!   `$patch: delete|replace` directives), `application/json-patch+json` (RFC 6902
//!   `add`, `replace`, `remove`, `test`, on objects and list indices) and
//!   `application/apply-patch+yaml` (a JSON body, applied as a merge patch).
//! * `metadata.resourceVersion` in a `PUT` body or in a patch result must be the
//!   stored one, else 409 `Conflict`. Writes that change nothing keep the
//!   resourceVersion; `metadata.generation` follows `spec` changes (and, for
//!   Deployments, annotation changes).
//! * `POST` of an existing name answers 409 `AlreadyExists` (in a dry run too).
//! * `DELETE` reads `DeleteOptions` from the body (`preconditions.uid` /
//!   `resourceVersion` → 409 `Conflict` when they differ, `dryRun: ["All"]`,
//!   `gracePeriodSeconds`). Pods answer the Pod, other resources a `Success` `Status`.
//! * `?dryRun=All` on every write validates and answers the would-be object and
//!   persists nothing; any other `dryRun` value is 422 `Invalid` (on the request's
//!   `PatchOptions`, `CreateOptions`, ...), as on the real server.
//! * Errors are `meta/v1 Status` objects with the real `code`, `reason`
//!   (`NotFound`, `AlreadyExists`, `Conflict`, `Invalid`, `BadRequest`,
//!   `MethodNotAllowed`, `UnsupportedMediaType`, `InternalError`) and `details`.
//!   Undecodable bodies are 400, patch results that do not decode or validate 422.
//!
//! # Asynchronous controllers, like the real server
//!
//! The answer to a write shows the object as written; the emulated controllers act
//! on it a little later, in a background task, each piece of work when it is due:
//!
//! * **Deployment controller**, [`KubeApi::set_controller_delay`] (default
//!   [`DEFAULT_CONTROLLER_DELAY`]) after a persisted Deployment write, in two passes.
//!   First the ReplicaSets: the one whose template (ignoring `pod-template-hash`)
//!   equals the Deployment's gets the highest revision plus one when it is not the
//!   newest (what a rollback does; the old number goes into
//!   `deployment.kubernetes.io/revision-history`), otherwise a new ReplicaSet is
//!   created with the next revision, controller owner reference and
//!   `pod-template-hash` label; then the ReplicaSets are scaled as a rolling update
//!   (`maxSurge` / `maxUnavailable`, 25% by default). Then, [`KubeApi::set_status_lag`]
//!   later ([`DEFAULT_STATUS_LAG`]), the Deployment: its
//!   `deployment.kubernetes.io/revision` annotation and its `status`
//!   (`observedGeneration`, replica counts, `Available` / `Progressing` conditions),
//!   a write that changes its resourceVersion. So the reply to a rollback still
//!   carries the old revision and `observedGeneration`, and for a while a renumbered
//!   ReplicaSet is ahead of the Deployment's annotation.
//! * **No kubelet**: pods of a rollout a client started are not ready, so the rollout
//!   stays half done (the new ReplicaSet at the surge, the old ones at the
//!   availability floor) unless the test calls [`KubeApi::mark_pods_ready`] or
//!   [`KubeApi::set_pods_ready`]. A deleted Pod bound to a node stays `Terminating`
//!   (`deletionTimestamp` = deletion + grace period, `deletionGracePeriodSeconds`)
//!   until the test calls [`KubeApi::finish_pod_termination`], or a kubelet emulated
//!   with [`KubeApi::set_kubelet`] stops it; unbound Pods and `gracePeriodSeconds: 0`
//!   go at once. A replacement Pod of the same name gets another UID.
//! * **Job controller**: a created Job has no status in the reply; the controller
//!   writes `startTime` and `active: 1` after the controller delay. Each later `GET`
//!   of the Job counts towards the outcome set with [`KubeApi::set_job_outcome`]
//!   (default: succeed on the second `GET`); when the count is reached the controller
//!   writes the `Complete` or `Failed` conditions and counts, again after the delay
//!   (that `GET` still sees the Job running).
//!
//! Tests control the timing with [`KubeApi::run_controllers`] (run all queued work
//! now, deterministically), [`KubeApi::hold`] / [`KubeApi::release`] (keep one
//! controller's work queued, e.g. the Deployment status pass to reproduce a lagging
//! revision annotation) and the delays above. The handle's own set-up methods
//! (`add_deployment`, `add_deployment_revision`, `add_object`, ...) describe a
//! cluster that has settled: they run the controllers for their object at once, with
//! ready pods.
//!
//! # Faults
//!
//! Failures can be injected with [`KubeApi::fail_next`]; a concurrent writer with
//! [`KubeApi::write_after_get`] (another client's write lands right after a GET is
//! answered, so the client's next write with the resourceVersion it read gets a real
//! 409 `Conflict`); missing RBAC rules are emulated with [`KubeApi::forbid`] (403
//! `Forbidden` for a path prefix, checked before anything else). Every request is
//! recorded ([`KubeApi::requests`]) for assertions. [`KubeApi::set_latency`] delays the
//! answers to one verb (GET, PATCH, ...), as a loaded API server does;
//! [`KubeApi::fail_after_apply`] applies the next writes and then answers 500, or hangs
//! before answering, as an API server whose etcd write succeeded but whose answer was lost
//! does (the client cannot tell whether the write applied). [`Failure::Unavailable`] is a
//! 503 answered *before* anything is applied.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, ReplicaSet};
use k8s_openapi::api::autoscaling::v1::{Scale, ScaleSpec, ScaleStatus};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Event, Node, Pod, PodSpec, PodTemplateSpec, Secret, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, ListMeta, ObjectMeta, Status, StatusCause, StatusDetails,
};
use k8s_openapi::ByteString;
use serde::de::DeserializeOwned;
use serde_json::{json, Map, Value};

/// Bearer token written into the kubeconfig by [`write_kubeconfig`].
pub const KUBECONFIG_TOKEN: &str = "warden-test-dummy-token";
/// Name of the context (and cluster and user) in the kubeconfig.
pub const KUBECONFIG_CONTEXT: &str = "warden-test";

const REVISION: &str = "deployment.kubernetes.io/revision";
const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
const HASH_LABEL: &str = "pod-template-hash";

/// Which failure [`KubeApi::fail_next`] injects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// 409 `Conflict` (as for a stale resourceVersion).
    Conflict,
    /// 500 `InternalError`.
    Internal,
    /// 503 `ServiceUnavailable` (nothing applied; worth retrying).
    Unavailable,
}

/// What [`KubeApi::fail_after_apply`] does after applying a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterApply {
    /// Answer 500 `InternalError` (the write is persisted).
    Answer500,
    /// Wait this long before answering (the client's timeout usually ends the exchange).
    Hang(Duration),
}

/// How created Jobs end, see [`KubeApi::set_job_outcome`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobOutcome {
    /// `Complete` (and `SuccessCriteriaMet`) conditions, `succeeded` = completions.
    Succeed,
    /// `Failed` (and `FailureTarget`) conditions with this reason and message,
    /// `failed` = backoffLimit + 1.
    Fail { reason: String, message: String },
    /// Never finishes.
    StayActive,
}

impl JobOutcome {
    /// Failure with reason `BackoffLimitExceeded`, as the job controller reports it.
    pub fn fail() -> Self {
        JobOutcome::Fail {
            reason: "BackoffLimitExceeded".to_string(),
            message: "Job has reached the specified backoff limit".to_string(),
        }
    }
}

/// The kinds of object the server stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Resource {
    Deployment,
    ReplicaSet,
    Pod,
    Node,
    Job,
    /// core/v1 Event.
    Event,
    Service,
    ConfigMap,
    /// Secrets: `stringData` is folded into `data` on every write, as on the real server.
    Secret,
    /// autoscaling/v2 HorizontalPodAutoscaler.
    HorizontalPodAutoscaler,
    /// coordination.k8s.io/v1 Lease.
    Lease,
}

impl Resource {
    /// Every resource the server knows.
    pub const ALL: [Resource; 11] = [
        Resource::Deployment,
        Resource::ReplicaSet,
        Resource::Pod,
        Resource::Node,
        Resource::Job,
        Resource::Event,
        Resource::Service,
        Resource::ConfigMap,
        Resource::Secret,
        Resource::HorizontalPodAutoscaler,
        Resource::Lease,
    ];

    /// The plural resource name (`deployments`).
    pub fn plural(self) -> &'static str {
        match self {
            Resource::Deployment => "deployments",
            Resource::ReplicaSet => "replicasets",
            Resource::Pod => "pods",
            Resource::Node => "nodes",
            Resource::Job => "jobs",
            Resource::Event => "events",
            Resource::Service => "services",
            Resource::ConfigMap => "configmaps",
            Resource::Secret => "secrets",
            Resource::HorizontalPodAutoscaler => "horizontalpodautoscalers",
            Resource::Lease => "leases",
        }
    }

    /// The API group (`""` for core).
    pub fn group(self) -> &'static str {
        match self {
            Resource::Deployment | Resource::ReplicaSet => "apps",
            Resource::Pod
            | Resource::Node
            | Resource::Event
            | Resource::Service
            | Resource::ConfigMap
            | Resource::Secret => "",
            Resource::Job => "batch",
            Resource::HorizontalPodAutoscaler => "autoscaling",
            Resource::Lease => "coordination.k8s.io",
        }
    }

    /// The API version served (`v1`, `v2` for HorizontalPodAutoscalers).
    pub fn version(self) -> &'static str {
        match self {
            Resource::HorizontalPodAutoscaler => "v2",
            _ => "v1",
        }
    }

    fn kind(self) -> &'static str {
        match self {
            Resource::Deployment => "Deployment",
            Resource::ReplicaSet => "ReplicaSet",
            Resource::Pod => "Pod",
            Resource::Node => "Node",
            Resource::Job => "Job",
            Resource::Event => "Event",
            Resource::Service => "Service",
            Resource::ConfigMap => "ConfigMap",
            Resource::Secret => "Secret",
            Resource::HorizontalPodAutoscaler => "HorizontalPodAutoscaler",
            Resource::Lease => "Lease",
        }
    }

    fn api_version(self) -> &'static str {
        match self.group() {
            "" => "v1",
            "apps" => "apps/v1",
            "autoscaling" => "autoscaling/v2",
            "coordination.k8s.io" => "coordination.k8s.io/v1",
            _ => "batch/v1",
        }
    }

    fn namespaced(self) -> bool {
        self != Resource::Node
    }

    /// `deployments.apps`, `pods`: how the API server names the resource in messages.
    fn qualified(self) -> String {
        match self.group() {
            "" => self.plural().to_string(),
            group => format!("{}.{group}", self.plural()),
        }
    }

    /// `Deployment.apps`, `Pod`: how validation messages name the kind.
    fn qualified_kind(self) -> String {
        match self.group() {
            "" => self.kind().to_string(),
            group => format!("{}.{group}", self.kind()),
        }
    }

    /// Request path of object `name` (of the collection when `name` is empty);
    /// `namespace` is ignored for Nodes.
    pub fn path(self, namespace: &str, name: &str) -> String {
        let prefix = match self.group() {
            "" => format!("/api/{}", self.version()),
            group => format!("/apis/{group}/{}", self.version()),
        };
        let collection = if self.namespaced() {
            format!("{prefix}/namespaces/{namespace}/{}", self.plural())
        } else {
            format!("{prefix}/{}", self.plural())
        };
        if name.is_empty() {
            collection
        } else {
            format!("{collection}/{name}")
        }
    }

    fn status_details(self, name: &str) -> StatusDetails {
        StatusDetails {
            name: (!name.is_empty()).then(|| name.to_string()),
            group: (!self.group().is_empty()).then(|| self.group().to_string()),
            kind: Some(self.plural().to_string()),
            ..StatusDetails::default()
        }
    }

    /// Decodes `value` as this resource's `k8s-openapi` type and re-encodes it.
    fn normalize(self, value: Value) -> std::result::Result<Value, String> {
        match self {
            Resource::Deployment => roundtrip::<Deployment>(value),
            Resource::ReplicaSet => roundtrip::<ReplicaSet>(value),
            Resource::Pod => roundtrip::<Pod>(value),
            Resource::Node => roundtrip::<Node>(value),
            Resource::Job => roundtrip::<Job>(value),
            Resource::Event => roundtrip::<Event>(value),
            Resource::Service => roundtrip::<Service>(value),
            Resource::ConfigMap => roundtrip::<ConfigMap>(value),
            Resource::Secret => {
                // The API server folds `stringData` into `data` and never stores it.
                let mut secret: Secret = serde_json::from_value(value).map_err(|e| e.to_string())?;
                if let Some(strings) = secret.string_data.take() {
                    let data = secret.data.get_or_insert_with(BTreeMap::new);
                    for (k, v) in strings {
                        data.insert(k, ByteString(v.into_bytes()));
                    }
                }
                serde_json::to_value(&secret).map_err(|e| e.to_string())
            }
            Resource::HorizontalPodAutoscaler => roundtrip::<HorizontalPodAutoscaler>(value),
            Resource::Lease => roundtrip::<Lease>(value),
        }
    }
}

fn roundtrip<T: DeserializeOwned + serde::Serialize>(value: Value) -> std::result::Result<Value, String> {
    let typed: T = serde_json::from_value(value).map_err(|e| e.to_string())?;
    serde_json::to_value(&typed).map_err(|e| e.to_string())
}

/// One request the server received.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// Raw query string, without `?`.
    pub query: Option<String>,
    pub content_type: Option<String>,
    /// The `Accept` header (metadata-only reads ask for `as=PartialObjectMetadata`).
    pub accept: Option<String>,
    pub authorization: Option<String>,
    pub body: String,
    /// Status code the server answered.
    pub status: u16,
}

impl RecordedRequest {
    /// Decoded query parameters.
    pub fn query_params(&self) -> Vec<(String, String)> {
        url::form_urlencoded::parse(self.query.as_deref().unwrap_or("").as_bytes()).into_owned().collect()
    }

    /// The first value of query parameter `key`.
    pub fn query_param(&self, key: &str) -> Option<String> {
        self.query_params().into_iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Whether the request asked for a server-side dry run: `dryRun=All` in the
    /// query, or (for a DELETE) `"dryRun": ["All"]` in its `DeleteOptions` body.
    pub fn is_dry_run(&self) -> bool {
        self.query_params().iter().any(|(k, v)| k == "dryRun" && v == "All")
            || (self.method == "DELETE" && self.json().is_some_and(|b| b.get("dryRun") == Some(&json!(["All"]))))
    }

    /// The body parsed as JSON, if it is JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_str(&self.body).ok()
    }

    /// `spec.replicas` requested by this PATCH/PUT body (merge patch, whole
    /// object, or a JSON patch operation on `/spec/replicas`).
    pub fn requested_replicas(&self) -> Option<i64> {
        let body = self.json()?;
        if let Some(ops) = body.as_array() {
            return ops
                .iter()
                .rev()
                .filter(|op| matches!(op.get("op").and_then(Value::as_str), Some("add" | "replace")))
                .find(|op| op.get("path").and_then(Value::as_str) == Some("/spec/replicas"))
                .and_then(|op| op.get("value"))
                .and_then(Value::as_i64);
        }
        body.pointer("/spec/replicas").and_then(Value::as_i64)
    }

    /// Whether this request can change state (POST, PUT, PATCH or DELETE).
    pub fn is_write(&self) -> bool {
        matches!(self.method.as_str(), "POST" | "PUT" | "PATCH" | "DELETE")
    }
}

#[derive(Debug)]
struct Injection {
    remaining: usize,
    failure: Failure,
    patch_only: bool,
}

#[derive(Clone, Debug)]
struct JobRule {
    prefix: String,
    outcome: JobOutcome,
    after_gets: usize,
}

#[derive(Clone, Debug)]
struct JobPlan {
    outcome: JobOutcome,
    remaining_gets: usize,
    finished: bool,
}

type Key = (Resource, String, String);

/// The emulated controllers, for [`KubeApi::hold`] and [`KubeApi::release`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Controller {
    /// The deployment controller's first pass after a Deployment changed: it finds,
    /// creates or renumbers the ReplicaSet of the pod template and scales the ReplicaSets.
    DeploymentReplicaSets,
    /// The deployment controller's second pass: it writes the Deployment's revision
    /// annotation and `status` (`observedGeneration`, replica counts, conditions).
    DeploymentStatus,
    /// The job controller: a created Job's start, and its end.
    Job,
    /// The kubelet's confirmation that a terminating Pod stopped ([`KubeApi::set_kubelet`]).
    Kubelet,
}

/// One pending action of an emulated controller.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Work {
    DeploymentReplicaSets { namespace: String, name: String },
    DeploymentStatus { namespace: String, name: String },
    JobStarted { namespace: String, name: String },
    JobFinished { namespace: String, name: String },
    PodGone { namespace: String, name: String, uid: String },
}

impl Work {
    fn controller(&self) -> Controller {
        match self {
            Work::DeploymentReplicaSets { .. } => Controller::DeploymentReplicaSets,
            Work::DeploymentStatus { .. } => Controller::DeploymentStatus,
            Work::JobStarted { .. } | Work::JobFinished { .. } => Controller::Job,
            Work::PodGone { .. } => Controller::Kubelet,
        }
    }

    /// The object the work is about.
    fn object(&self) -> Key {
        match self {
            Work::DeploymentReplicaSets { namespace, name } | Work::DeploymentStatus { namespace, name } => {
                key(Resource::Deployment, namespace, name)
            }
            Work::JobStarted { namespace, name } | Work::JobFinished { namespace, name } => {
                key(Resource::Job, namespace, name)
            }
            Work::PodGone { namespace, name, .. } => key(Resource::Pod, namespace, name),
        }
    }
}

/// A write by another client applied right after a GET ([`KubeApi::write_after_get`]).
struct Interleaved {
    object: Key,
    remaining: usize,
    edit: Box<dyn Fn(&mut Value) + Send>,
}

/// How the emulated controllers and kubelet behave (see the module doc).
struct Behaviour {
    controller_delay: Duration,
    status_lag: Duration,
    pods_ready: bool,
    kubelet: Option<Duration>,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            controller_delay: DEFAULT_CONTROLLER_DELAY,
            status_lag: DEFAULT_STATUS_LAG,
            pods_ready: false,
            kubelet: None,
        }
    }
}

/// Default of [`KubeApi::set_controller_delay`].
pub const DEFAULT_CONTROLLER_DELAY: Duration = Duration::from_millis(20);
/// Default of [`KubeApi::set_status_lag`].
pub const DEFAULT_STATUS_LAG: Duration = Duration::from_millis(20);

#[derive(Default)]
struct Inner {
    objects: BTreeMap<Key, Value>,
    requests: Vec<RecordedRequest>,
    injection: Option<Injection>,
    next_resource_version: u64,
    next_uid: u64,
    job_rules: Vec<JobRule>,
    job_plans: HashMap<(String, String), JobPlan>,
    /// Path prefixes answered with 403 Forbidden ([`KubeApi::forbid`]).
    forbidden: Vec<String>,
    behaviour: Behaviour,
    /// The controllers' pending work, each with the time it is due.
    work: Vec<(Instant, Work)>,
    /// Controllers whose work waits ([`KubeApi::hold`]).
    held: BTreeSet<Controller>,
    /// Wakes the controller task when work is added.
    wake: Arc<Notify>,
    interleaved: Vec<Interleaved>,
    /// How many [`Interleaved`] writes were applied.
    interleaved_writes: usize,
    /// Delay before answering, per HTTP method ([`KubeApi::set_latency`]).
    latency: HashMap<String, Duration>,
    /// Writes still to be failed after they are applied ([`KubeApi::fail_after_apply`]).
    after_apply: Option<(usize, AfterApply)>,
}

fn key(resource: Resource, namespace: &str, name: &str) -> Key {
    let namespace = if resource.namespaced() { namespace } else { "" };
    (resource, namespace.to_string(), name.to_string())
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl Inner {
    fn bump_resource_version(&mut self) -> String {
        self.next_resource_version += 1;
        self.next_resource_version.to_string()
    }

    fn new_uid(&mut self) -> String {
        self.next_uid += 1;
        format!("00000000-0000-4000-8000-{:012}", self.next_uid)
    }

    fn get(&self, resource: Resource, namespace: &str, name: &str) -> Option<&Value> {
        self.objects.get(&key(resource, namespace, name))
    }

    fn typed<T: DeserializeOwned>(&self, resource: Resource, namespace: &str, name: &str) -> Option<T> {
        self.get(resource, namespace, name).and_then(|v| serde_json::from_value(v.clone()).ok())
    }

    fn all_typed<T: DeserializeOwned>(&self, resource: Resource, namespace: &str) -> Vec<T> {
        self.objects
            .iter()
            .filter(|((r, ns, _), _)| *r == resource && ns == namespace)
            .filter_map(|(_, v)| serde_json::from_value(v.clone()).ok())
            .collect()
    }

    /// Stores `candidate` (already decoded by [`Resource::normalize`]) as object
    /// `name`, replacing `current` when given: server-managed metadata is filled
    /// in, the object is validated, and unless `dry_run` it is persisted with a new
    /// resourceVersion and the controllers run. Returns the answered object; the
    /// error is the HTTP answer itself.
    #[allow(clippy::result_large_err)]
    fn commit(
        &mut self,
        resource: Resource,
        namespace: &str,
        name: &str,
        current: Option<&Value>,
        mut candidate: Value,
        dry_run: bool,
    ) -> std::result::Result<Value, Response> {
        let namespace = if resource.namespaced() { namespace } else { "" };
        if !candidate.is_object() {
            return Err(bad_request(format!("{} body is not an object", resource.kind())));
        }
        let metadata = candidate.as_object_mut().map(|o| o.entry("metadata").or_insert_with(|| json!({})));
        let Some(Value::Object(metadata)) = metadata else {
            return Err(bad_request("metadata is not an object".to_string()));
        };
        metadata.insert("name".into(), json!(name));
        if resource.namespaced() {
            metadata.insert("namespace".into(), json!(namespace));
        } else {
            metadata.remove("namespace");
        }
        match current {
            Some(current) => {
                for field in ["uid", "creationTimestamp", "generation", "resourceVersion"] {
                    match current.pointer(&format!("/metadata/{field}")) {
                        Some(v) => metadata.insert(field.into(), v.clone()),
                        None => metadata.remove(field),
                    };
                }
                // The main resource's writes cannot change the status.
                match current.get("status") {
                    Some(status) => candidate["status"] = status.clone(),
                    None => {
                        if let Some(o) = candidate.as_object_mut() {
                            o.remove("status");
                        }
                    }
                }
            }
            None => {
                let uid = self.new_uid();
                metadata.insert("uid".into(), json!(uid));
                metadata.insert("creationTimestamp".into(), json!(now()));
                metadata.insert("generation".into(), json!(1));
                metadata.remove("resourceVersion");
                if let Some(o) = candidate.as_object_mut() {
                    o.remove("status");
                }
                if resource == Resource::Job {
                    default_job(&mut candidate, &uid, name);
                }
            }
        }
        let causes = validate(resource, &candidate);
        if !causes.is_empty() {
            return Err(invalid(resource, name, causes));
        }
        if let Some(current) = current {
            // Deployments also count annotation changes (they are copied to ReplicaSets).
            let annotations_changed = resource == Resource::Deployment
                && candidate.pointer("/metadata/annotations") != current.pointer("/metadata/annotations");
            if candidate.get("spec") != current.get("spec") || annotations_changed {
                let generation = current.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(1);
                candidate["metadata"]["generation"] = json!(generation + 1);
            }
            if &candidate == current {
                return Ok(candidate);
            }
        }
        if dry_run {
            return Ok(candidate);
        }
        candidate["metadata"]["resourceVersion"] = json!(self.bump_resource_version());
        if current.is_none() {
            match resource {
                Resource::Job => {
                    let plan = self.job_plan_for(name);
                    self.job_plans.insert((namespace.to_string(), name.to_string()), plan);
                    self.schedule(Work::JobStarted { namespace: namespace.to_string(), name: name.to_string() });
                }
                Resource::Pod => {
                    candidate["status"] = json!({"phase": "Running", "startTime": now()});
                }
                _ => {}
            }
        }
        if resource == Resource::Deployment {
            self.schedule(Work::DeploymentReplicaSets { namespace: namespace.to_string(), name: name.to_string() });
        }
        self.objects.insert(key(resource, namespace, name), candidate.clone());
        Ok(candidate)
    }

    /// Applies the next [`KubeApi::write_after_get`] edit of object `namespace/name`, if
    /// one is left, as a persisted write by another client.
    fn write_after_get(&mut self, resource: Resource, namespace: &str, name: &str) {
        let k = key(resource, namespace, name);
        let Some(i) = self.interleaved.iter().position(|w| w.object == k && w.remaining > 0) else {
            return;
        };
        self.interleaved[i].remaining -= 1;
        let Some(current) = self.objects.get(&k).cloned() else {
            return;
        };
        let mut edited = current.clone();
        (self.interleaved[i].edit)(&mut edited);
        self.interleaved.retain(|w| w.remaining > 0);
        let Ok(edited) = resource.normalize(edited) else {
            return;
        };
        if let Ok(stored) = self.commit(resource, namespace, name, Some(&current), edited, false) {
            if stored.pointer("/metadata/resourceVersion") != current.pointer("/metadata/resourceVersion") {
                self.interleaved_writes += 1;
            }
        }
    }

    /// Queues `work` for its controller: due after the status lag for the Deployment
    /// status pass, after the controller delay otherwise. Work already queued is not
    /// queued twice.
    fn schedule(&mut self, work: Work) {
        let delay = match work {
            Work::DeploymentStatus { .. } => self.behaviour.status_lag,
            _ => self.behaviour.controller_delay,
        };
        self.schedule_at(Instant::now() + delay, work);
    }

    fn schedule_at(&mut self, due: Instant, work: Work) {
        if self.work.iter().any(|(_, w)| *w == work) {
            return;
        }
        self.work.push((due, work));
        self.wake.notify_one();
    }

    /// When the next work that is not held is due.
    fn next_due(&self) -> Option<Instant> {
        self.work.iter().filter(|(_, w)| !self.held.contains(&w.controller())).map(|(due, _)| *due).min()
    }

    /// Runs the work that is due at `until` (all of it for `None`), oldest first,
    /// including work that it queues and that is due by then; held controllers wait.
    fn run_work(&mut self, until: Option<Instant>) {
        loop {
            let next = self
                .work
                .iter()
                .enumerate()
                .filter(|(_, (due, w))| !self.held.contains(&w.controller()) && until.is_none_or(|t| *due <= t))
                .min_by_key(|(_, (due, _))| *due)
                .map(|(i, _)| i);
            let Some(i) = next else {
                return;
            };
            let (_, work) = self.work.remove(i);
            let ready = self.behaviour.pods_ready;
            self.perform(work, ready);
        }
    }

    /// Runs at once every queued work item about object `object` (and what it queues),
    /// with pods becoming ready: for test set-up, where the cluster is described as
    /// already settled.
    fn settle_object(&mut self, object: &Key) {
        while let Some(i) = self.work.iter().position(|(_, w)| w.object() == *object) {
            let (_, work) = self.work.remove(i);
            self.perform(work, true);
        }
    }

    fn perform(&mut self, work: Work, ready: bool) {
        match work {
            Work::DeploymentReplicaSets { namespace, name } => {
                if self.rollout_replica_sets(&namespace, &name, ready) {
                    self.schedule(Work::DeploymentStatus { namespace, name });
                }
            }
            Work::DeploymentStatus { namespace, name } => {
                self.record_deployment_status(&namespace, &name);
            }
            Work::JobStarted { namespace, name } => self.start_job(&namespace, &name),
            Work::JobFinished { namespace, name } => self.finish_job(&namespace, &name),
            Work::PodGone { namespace, name, uid } => {
                let k = key(Resource::Pod, &namespace, &name);
                let same = self.objects.get(&k).and_then(|p| p.pointer("/metadata/uid")).and_then(Value::as_str)
                    == Some(uid.as_str());
                if same {
                    self.objects.remove(&k);
                }
            }
        }
    }

    /// The deployment controller's first pass over stored Deployment `namespace/name`:
    /// finds or creates the ReplicaSet of its pod template (renumbering a reused one to
    /// the highest revision plus one, the old number going into
    /// `deployment.kubernetes.io/revision-history`), then scales the ReplicaSets as a
    /// rolling update with the Deployment's `maxSurge` / `maxUnavailable` (25% / 25%
    /// by default). New pods become ready only when `ready`; without ready pods the
    /// rollout stops half way, as on a real cluster. Answers whether the Deployment
    /// exists.
    fn rollout_replica_sets(&mut self, namespace: &str, name: &str, ready: bool) -> bool {
        let Some(deployment) = self.get(Resource::Deployment, namespace, name).cloned() else {
            return false;
        };
        if deployment.pointer("/spec/paused").and_then(Value::as_bool) == Some(true) {
            return true;
        }
        let uid = deployment.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default().to_string();
        let template = deployment.pointer("/spec/template").cloned().unwrap_or_else(|| json!({}));
        let desired = deployment.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1);
        let wanted = without_hash(&template);
        let owned = self.owned_replica_sets(namespace, &uid);
        let max_revision = owned.iter().filter_map(|(_, rs)| revision_of(rs)).max().unwrap_or(0);
        let matching =
            owned.iter().find(|(_, rs)| rs.pointer("/spec/template").map(without_hash).as_ref() == Some(&wanted));
        let current_rs = match matching {
            Some((rs_name, rs)) => {
                let old = revision_of(rs).unwrap_or(0);
                if old < max_revision {
                    let mut rs = rs.clone();
                    let history = rs
                        .pointer(&format!("/metadata/annotations/{}", escape(REVISION_HISTORY)))
                        .and_then(Value::as_str)
                        .filter(|h| !h.is_empty())
                        .map(|h| format!("{h},{old}"))
                        .unwrap_or_else(|| old.to_string());
                    set_annotation(&mut rs, REVISION, &(max_revision + 1).to_string());
                    set_annotation(&mut rs, REVISION_HISTORY, &history);
                    rs["metadata"]["resourceVersion"] = json!(self.bump_resource_version());
                    self.objects.insert(key(Resource::ReplicaSet, namespace, rs_name), rs);
                }
                rs_name.clone()
            }
            None => {
                let revision = max_revision + 1;
                let hash = pod_template_hash(&wanted);
                let mut rs_name = format!("{name}-{hash}");
                while self.get(Resource::ReplicaSet, namespace, &rs_name).is_some() {
                    rs_name.push('x');
                }
                let mut rs_template = wanted.clone();
                rs_template["metadata"]["labels"][HASH_LABEL] = json!(hash);
                let mut selector = deployment.pointer("/spec/selector").cloned().unwrap_or_else(|| json!({}));
                selector["matchLabels"][HASH_LABEL] = json!(hash);
                let rs = json!({
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "metadata": {
                        "name": rs_name,
                        "namespace": namespace,
                        "uid": self.new_uid(),
                        "resourceVersion": self.bump_resource_version(),
                        "generation": 1,
                        "creationTimestamp": now(),
                        "labels": rs_template["metadata"]["labels"].clone(),
                        "annotations": {
                            REVISION: revision.to_string(),
                            "deployment.kubernetes.io/desired-replicas": desired.to_string(),
                            "deployment.kubernetes.io/max-replicas": (desired + 1).to_string(),
                        },
                        "ownerReferences": [{
                            "apiVersion": "apps/v1", "kind": "Deployment", "name": name,
                            "uid": uid, "controller": true, "blockOwnerDeletion": true,
                        }],
                    },
                    "spec": {"replicas": 0, "selector": selector, "template": rs_template},
                });
                let rs = Resource::ReplicaSet.normalize(rs.clone()).unwrap_or(rs);
                self.objects.insert(key(Resource::ReplicaSet, namespace, &rs_name), rs);
                rs_name
            }
        };
        // Scale: the current ReplicaSet up, the others (oldest revision first) down.
        let mut sets: Vec<(String, Value)> = self.owned_replica_sets(namespace, &uid).into_iter().collect();
        sets.sort_by_key(|(n, rs)| (*n == current_rs, revision_of(rs)));
        let mut counts: Vec<PodCounts> = sets
            .iter()
            .map(|(_, rs)| PodCounts {
                replicas: rs.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0),
                available: rs.pointer("/status/availableReplicas").and_then(Value::as_i64).unwrap_or(0),
            })
            .collect();
        let (max_surge, max_unavailable) = rolling_limits(&deployment, desired);
        rolling_update(&mut counts, desired, max_surge, max_unavailable, ready);
        for ((rs_name, mut rs), count) in sets.into_iter().zip(counts) {
            let before = rs.clone();
            rs["spec"]["replicas"] = json!(count.replicas);
            let mut status = json!({
                "replicas": count.replicas,
                "fullyLabeledReplicas": count.replicas,
                "observedGeneration": rs.pointer("/metadata/generation").cloned().unwrap_or(json!(1)),
            });
            if count.available > 0 {
                status["readyReplicas"] = json!(count.available);
                status["availableReplicas"] = json!(count.available);
            }
            rs["status"] = status;
            if rs != before {
                rs["metadata"]["resourceVersion"] = json!(self.bump_resource_version());
                self.objects.insert(key(Resource::ReplicaSet, namespace, &rs_name), rs);
            }
        }
        true
    }

    /// The ReplicaSets in `namespace` whose controller is the Deployment with `uid`.
    fn owned_replica_sets(&self, namespace: &str, uid: &str) -> Vec<(String, Value)> {
        self.objects
            .iter()
            .filter(|((r, ns, _), rs)| *r == Resource::ReplicaSet && ns == namespace && controller_uid(rs) == Some(uid))
            .map(|((_, _, n), rs)| (n.clone(), rs.clone()))
            .collect()
    }

    /// The deployment controller's second pass over Deployment `namespace/name`: its
    /// revision annotation becomes the revision of the ReplicaSet of its template and
    /// its `status` sums up the ReplicaSets. Nothing when no ReplicaSet has the template
    /// yet (the first pass is still due).
    fn record_deployment_status(&mut self, namespace: &str, name: &str) {
        let k = key(Resource::Deployment, namespace, name);
        let Some(mut deployment) = self.objects.get(&k).cloned() else {
            return;
        };
        let uid = deployment.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default().to_string();
        let wanted = without_hash(&deployment.pointer("/spec/template").cloned().unwrap_or_else(|| json!({})));
        let sets = self.owned_replica_sets(namespace, &uid);
        let Some((current_name, current)) =
            sets.iter().find(|(_, rs)| rs.pointer("/spec/template").map(without_hash).as_ref() == Some(&wanted))
        else {
            return;
        };
        let desired = deployment.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1);
        let count = |rs: &Value, field: &str| rs.pointer(field).and_then(Value::as_i64).unwrap_or(0);
        let replicas: i64 = sets.iter().map(|(_, rs)| count(rs, "/spec/replicas")).sum();
        let available: i64 = sets.iter().map(|(_, rs)| count(rs, "/status/availableReplicas")).sum();
        let updated = count(current, "/spec/replicas");
        let updated_available = count(current, "/status/availableReplicas");
        let (_, max_unavailable) = rolling_limits(&deployment, desired);
        let complete = updated == desired && updated_available == desired && replicas == desired;
        let t = now();
        let condition = |kind: &str, status: bool, reason: &str, message: String| {
            json!({"type": kind, "status": if status { "True" } else { "False" },
                   "reason": reason, "message": message,
                   "lastUpdateTime": t, "lastTransitionTime": t})
        };
        let available_ok = available >= desired - max_unavailable;
        let mut status = json!({
            "observedGeneration": deployment.pointer("/metadata/generation").cloned().unwrap_or(json!(1)),
            "conditions": [
                condition("Available", available_ok,
                          if available_ok { "MinimumReplicasAvailable" } else { "MinimumReplicasUnavailable" },
                          if available_ok { "Deployment has minimum availability.".into() }
                          else { "Deployment does not have minimum availability.".into() }),
                condition("Progressing", true,
                          if complete { "NewReplicaSetAvailable" } else { "ReplicaSetUpdated" },
                          if complete { format!("ReplicaSet \"{current_name}\" has successfully progressed.") }
                          else { format!("ReplicaSet \"{current_name}\" is progressing.") }),
            ],
        });
        // Zero counts are left out, as the real server's JSON does.
        for (field, value) in [
            ("replicas", replicas),
            ("updatedReplicas", updated),
            ("readyReplicas", available),
            ("availableReplicas", available),
            ("unavailableReplicas", (replicas.max(desired) - available).max(0)),
        ] {
            if value > 0 {
                status[field] = json!(value);
            }
        }
        if let Some(revision) = revision_of(current) {
            set_annotation(&mut deployment, REVISION, &revision.to_string());
        }
        // The conditions' times change on every pass: compare without them.
        let strip = |d: &Value| {
            let mut d = d.clone();
            if let Some(s) = d.get_mut("status").and_then(Value::as_object_mut) {
                s.remove("conditions");
            }
            d
        };
        let before = self.objects.get(&k).map(strip);
        deployment["status"] = status;
        if before.as_ref() == Some(&strip(&deployment)) {
            return;
        }
        deployment["metadata"]["resourceVersion"] = json!(self.bump_resource_version());
        let deployment = Resource::Deployment.normalize(deployment.clone()).unwrap_or(deployment);
        self.objects.insert(k, deployment);
    }

    /// The job controller records that Job `namespace/name` started its pod.
    fn start_job(&mut self, namespace: &str, name: &str) {
        let k = key(Resource::Job, namespace, name);
        let Some(mut job) = self.objects.get(&k).cloned() else {
            return;
        };
        if job.pointer("/status/startTime").is_some() {
            return;
        }
        job["status"] = json!({"startTime": now(), "active": 1, "ready": 0, "terminating": 0,
                               "uncountedTerminatedPods": {}});
        job["metadata"]["resourceVersion"] = json!(self.bump_resource_version());
        self.objects.insert(k, job);
    }

    /// The plan for a new Job: the rule with the longest matching name prefix.
    fn job_plan_for(&self, name: &str) -> JobPlan {
        let rule = self.job_rules.iter().filter(|r| name.starts_with(&r.prefix)).max_by_key(|r| r.prefix.len());
        match rule {
            Some(rule) => JobPlan { outcome: rule.outcome.clone(), remaining_gets: rule.after_gets, finished: false },
            None => JobPlan { outcome: JobOutcome::Succeed, remaining_gets: 1, finished: false },
        }
    }

    /// Counts one GET of Job `namespace/name`; when its plan's count is reached, the
    /// job controller is told to record its end (after the controller delay: this GET
    /// still sees it running).
    fn advance_job(&mut self, namespace: &str, name: &str) {
        let plan_key = (namespace.to_string(), name.to_string());
        let Some(plan) = self.job_plans.get_mut(&plan_key) else {
            return;
        };
        if plan.finished || plan.outcome == JobOutcome::StayActive {
            return;
        }
        if plan.remaining_gets > 0 {
            plan.remaining_gets -= 1;
            return;
        }
        plan.finished = true;
        self.schedule(Work::JobFinished { namespace: namespace.to_string(), name: name.to_string() });
    }

    /// The job controller records the end of Job `namespace/name`, as its plan says.
    fn finish_job(&mut self, namespace: &str, name: &str) {
        let plan_key = (namespace.to_string(), name.to_string());
        let Some(outcome) = self.job_plans.get(&plan_key).map(|p| p.outcome.clone()) else {
            return;
        };
        let k = key(Resource::Job, namespace, name);
        let Some(mut job) = self.objects.get(&k).cloned() else {
            return;
        };
        let start = job.pointer("/status/startTime").cloned().unwrap_or_else(|| json!(now()));
        let t = now();
        let condition = |kind: &str, reason: &str, message: &str| {
            json!({"type": kind, "status": "True", "reason": reason, "message": message,
                   "lastProbeTime": t, "lastTransitionTime": t})
        };
        job["status"] = match outcome {
            JobOutcome::Succeed => {
                let completions = job.pointer("/spec/completions").and_then(Value::as_i64).unwrap_or(1);
                let message = "Reached expected number of succeeded pods";
                json!({
                    "startTime": start, "completionTime": t, "succeeded": completions, "ready": 0,
                    "uncountedTerminatedPods": {},
                    "conditions": [
                        condition("SuccessCriteriaMet", "CompletionsReached", message),
                        condition("Complete", "CompletionsReached", message),
                    ],
                })
            }
            JobOutcome::Fail { reason, message } => {
                let backoff_limit = job.pointer("/spec/backoffLimit").and_then(Value::as_i64).unwrap_or(6);
                json!({
                    "startTime": start, "failed": backoff_limit + 1, "ready": 0,
                    "uncountedTerminatedPods": {},
                    "conditions": [
                        condition("FailureTarget", &reason, &message),
                        condition("Failed", &reason, &message),
                    ],
                })
            }
            JobOutcome::StayActive => return,
        };
        job["metadata"]["resourceVersion"] = json!(self.bump_resource_version());
        self.objects.insert(k, job);
    }
}

/// The Job defaults and labels the real API server adds on creation.
fn default_job(job: &mut Value, uid: &str, name: &str) {
    let Some(spec) = job.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    for (field, value) in [("backoffLimit", 6), ("completions", 1), ("parallelism", 1)] {
        spec.entry(field).or_insert(json!(value));
    }
    spec.entry("completionMode").or_insert(json!("NonIndexed"));
    spec.entry("suspend").or_insert(json!(false));
    let manual = spec.get("manualSelector").and_then(Value::as_bool) == Some(true);
    if !manual {
        spec.insert("selector".into(), json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}));
        if let Some(template) = spec.get_mut("template") {
            let labels = [
                ("batch.kubernetes.io/controller-uid", uid),
                ("batch.kubernetes.io/job-name", name),
                ("controller-uid", uid),
                ("job-name", name),
            ];
            for (k, v) in labels {
                template["metadata"]["labels"][k] = json!(v);
            }
        }
    }
}

/// `a/b` → `a~1b`, for JSON pointers.
fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// Pods of one ReplicaSet, for the rolling update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PodCounts {
    replicas: i64,
    available: i64,
}

/// `maxSurge` and `maxUnavailable` of a Deployment's rolling update for `desired`
/// replicas (25% each by default; a percentage rounds up for the surge and down for
/// unavailability; both zero means one may be unavailable), as the real controller
/// computes them.
fn rolling_limits(deployment: &Value, desired: i64) -> (i64, i64) {
    let value = |field: &str, round_up: bool| {
        let v = deployment.pointer(&format!("/spec/strategy/rollingUpdate/{field}"));
        match v {
            Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
            Some(Value::String(p)) => {
                let percent: i64 = p.trim_end_matches('%').parse().unwrap_or(25);
                let scaled = desired * percent;
                if round_up {
                    (scaled + 99) / 100
                } else {
                    scaled / 100
                }
            }
            _ => {
                if round_up {
                    (desired * 25 + 99) / 100
                } else {
                    desired * 25 / 100
                }
            }
        }
    };
    let surge = value("maxSurge", true);
    let unavailable = value("maxUnavailable", false);
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

/// The rolling update of the deployment controller (`reconcileNewReplicaSet` and
/// `reconcileOldReplicaSets`) run to a fixed point. `sets` ends with the current
/// ReplicaSet; the others come oldest first. New pods are available only when `ready`
/// (then every pod is); so without ready pods the current ReplicaSet stops at the surge
/// and the old ones at the availability floor.
fn rolling_update(sets: &mut [PodCounts], desired: i64, max_surge: i64, max_unavailable: i64, ready: bool) {
    let Some((new, old)) = sets.split_last_mut() else {
        return;
    };
    for _ in 0..(4 * desired + 8) {
        let before = (*new, old.to_vec());
        if ready {
            new.available = new.replicas;
            for rs in old.iter_mut() {
                rs.available = rs.replicas;
            }
        }
        if old.iter().all(|rs| rs.replicas == 0) {
            // Not a rollout: plain scaling of the current ReplicaSet.
            new.replicas = desired;
        } else {
            let total: i64 = new.replicas + old.iter().map(|rs| rs.replicas).sum::<i64>();
            let max_total = desired + max_surge;
            if new.replicas > desired {
                new.replicas = desired;
            } else if total < max_total {
                new.replicas += (max_total - total).min(desired - new.replicas).max(0);
            }
            let all: i64 = new.replicas + old.iter().map(|rs| rs.replicas).sum::<i64>();
            let min_available = desired - max_unavailable;
            let new_unavailable = new.replicas - new.available;
            let mut budget = all - min_available - new_unavailable;
            if budget > 0 {
                // Unhealthy old pods go first, then available ones down to the floor.
                for rs in old.iter_mut() {
                    let take = budget.min(rs.replicas - rs.available).max(0);
                    rs.replicas -= take;
                    budget -= take;
                }
                let available: i64 = new.available + old.iter().map(|rs| rs.available).sum::<i64>();
                let mut down = (available - min_available).max(0);
                for rs in old.iter_mut() {
                    let take = down.min(rs.replicas).max(0);
                    rs.replicas -= take;
                    rs.available = rs.available.min(rs.replicas);
                    down -= take;
                }
            }
        }
        new.available = new.available.min(new.replicas);
        if (*new, old.to_vec()) == before {
            return;
        }
    }
}

fn set_annotation(object: &mut Value, key: &str, value: &str) {
    object["metadata"]["annotations"][key] = json!(value);
}

fn revision_of(object: &Value) -> Option<i64> {
    object
        .pointer(&format!("/metadata/annotations/{}", escape(REVISION)))
        .and_then(Value::as_str)
        .and_then(|r| r.parse().ok())
}

fn controller_uid(object: &Value) -> Option<&str> {
    object
        .pointer("/metadata/ownerReferences")?
        .as_array()?
        .iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))?
        .get("uid")?
        .as_str()
}

/// A pod template without the `pod-template-hash` label (and without an empty label map).
fn without_hash(template: &Value) -> Value {
    let mut template = template.clone();
    if let Some(labels) = template.pointer_mut("/metadata/labels").and_then(Value::as_object_mut) {
        labels.remove(HASH_LABEL);
        if labels.is_empty() {
            if let Some(metadata) = template.get_mut("metadata").and_then(Value::as_object_mut) {
                metadata.remove("labels");
            }
        }
    }
    template
}

/// FNV-1a of the template, encoded like the controller's `pod-template-hash`.
fn pod_template_hash(template: &Value) -> String {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in template.to_string().bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    hash.to_string().bytes().map(|b| char::from(ALPHABET[usize::from(b) % ALPHABET.len()])).collect()
}

/// A field error of an `Invalid` answer.
struct Cause {
    field: String,
    message: String,
    reason: &'static str,
}

fn required(field: impl Into<String>) -> Cause {
    Cause { field: field.into(), message: "Required value".to_string(), reason: "FieldValueRequired" }
}

/// A few of the real server's validation rules.
fn validate(resource: Resource, object: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let spec = object.get("spec");
    match resource {
        Resource::Deployment | Resource::ReplicaSet => {
            let Some(spec) = spec else {
                causes.push(required("spec"));
                return causes;
            };
            if let Some(replicas) = spec.get("replicas").and_then(Value::as_i64) {
                if replicas < 0 {
                    causes.push(Cause {
                        field: "spec.replicas".into(),
                        message: format!("Invalid value: {replicas}: must be greater than or equal to 0"),
                        reason: "FieldValueInvalid",
                    });
                }
            }
            let match_labels = spec.pointer("/selector/matchLabels").and_then(Value::as_object);
            let expressions = spec.pointer("/selector/matchExpressions").and_then(Value::as_array);
            if match_labels.is_none_or(Map::is_empty) && expressions.is_none_or(Vec::is_empty) {
                causes.push(Cause {
                    field: "spec.selector".into(),
                    message: "Invalid value: {}: empty selector is invalid for deployment".into(),
                    reason: "FieldValueInvalid",
                });
            }
            let labels = spec.pointer("/template/metadata/labels");
            if let Some(match_labels) = match_labels {
                let matches = match_labels.iter().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v));
                if !matches {
                    causes.push(Cause {
                        field: "spec.template.metadata.labels".into(),
                        message: format!(
                            "Invalid value: {}: `selector` does not match template `labels`",
                            labels.cloned().unwrap_or(Value::Null)
                        ),
                        reason: "FieldValueInvalid",
                    });
                }
            }
            validate_pod_spec(spec.pointer("/template/spec"), "spec.template.spec", &mut causes);
        }
        Resource::Pod => validate_pod_spec(spec, "spec", &mut causes),
        Resource::Job => {
            let pod_spec = spec.and_then(|s| s.pointer("/template/spec"));
            validate_pod_spec(pod_spec, "spec.template.spec", &mut causes);
            let policy = pod_spec.and_then(|s| s.get("restartPolicy")).and_then(Value::as_str);
            if !matches!(policy, Some("Never" | "OnFailure")) {
                causes.push(Cause {
                    field: "spec.template.spec.restartPolicy".into(),
                    message: match policy {
                        None => "Required value: valid values: \"OnFailure\", \"Never\"".into(),
                        Some(p) => format!("Unsupported value: {p:?}: supported values: \"OnFailure\", \"Never\""),
                    },
                    reason: if policy.is_none() { "FieldValueRequired" } else { "FieldValueNotSupported" },
                });
            }
        }
        Resource::Node
        | Resource::Event
        | Resource::Service
        | Resource::ConfigMap
        | Resource::Secret
        | Resource::HorizontalPodAutoscaler
        | Resource::Lease => {}
    }
    causes
}

fn validate_pod_spec(spec: Option<&Value>, at: &str, causes: &mut Vec<Cause>) {
    let containers = spec.and_then(|s| s.get("containers")).and_then(Value::as_array);
    let Some(containers) = containers.filter(|c| !c.is_empty()) else {
        causes.push(required(format!("{at}.containers")));
        return;
    };
    for (i, container) in containers.iter().enumerate() {
        for field in ["name", "image"] {
            let present = container.get(field).and_then(Value::as_str).is_some_and(|v| !v.trim().is_empty());
            if !present {
                causes.push(required(format!("{at}.containers[{i}].{field}")));
            }
        }
    }
}

type Shared = Arc<Mutex<Inner>>;

/// Handle of a running test API server; the server stops when it is dropped.
pub struct KubeApi {
    addr: SocketAddr,
    inner: Shared,
    task: tokio::task::JoinHandle<()>,
    controllers: tokio::task::JoinHandle<()>,
}

impl Drop for KubeApi {
    fn drop(&mut self) {
        self.task.abort();
        self.controllers.abort();
    }
}

/// The emulated controllers: runs each piece of work when it is due.
async fn run_controllers(state: Weak<Mutex<Inner>>, wake: Arc<Notify>) {
    loop {
        let next = {
            let Some(state) = state.upgrade() else {
                return;
            };
            let mut inner = state.lock().unwrap_or_else(|e| e.into_inner());
            inner.run_work(Some(Instant::now()));
            inner.next_due()
        };
        match next {
            Some(due) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(due) => {}
                    _ = wake.notified() => {}
                }
            }
            None => wake.notified().await,
        }
    }
}

impl KubeApi {
    /// Starts the server on a free loopback port. Must be called inside a Tokio runtime.
    pub async fn start() -> Result<Self> {
        let wake = Arc::new(Notify::new());
        let inner: Shared =
            Arc::new(Mutex::new(Inner { next_resource_version: 1000, wake: wake.clone(), ..Inner::default() }));
        let controllers = tokio::spawn(run_controllers(Arc::downgrade(&inner), wake));
        let listener =
            tokio::net::TcpListener::bind("127.0.0.1:0").await.context("binding the kube API test server")?;
        let addr = listener.local_addr()?;
        let state = inner.clone();
        let app = Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let state = state.clone();
            async move { handle_slow(&state, method, uri, headers, body).await }
        });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, inner, task, controllers })
    }

    /// Base URL, e.g. `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores `object` through the same path as a client's create, panicking when
    /// it is invalid (a bug in the test).
    fn create(&self, resource: Resource, namespace: &str, name: &str, object: Value) -> Value {
        let mut inner = self.lock();
        let object = resource.normalize(object).unwrap_or_else(|e| panic!("invalid {} {name}: {e}", resource.kind()));
        match inner.commit(resource, namespace, name, None, object, false) {
            Ok(_) => {
                let k = key(resource, namespace, name);
                inner.settle_object(&k);
                inner.objects.get(&k).cloned().unwrap_or(Value::Null)
            }
            Err(response) => panic!("invalid {} {name}: HTTP {}", resource.kind(), response.status()),
        }
    }

    /// Adds (or replaces) a deployment `namespace/name` with `replicas` replicas,
    /// label and selector `app={name}`, one container `{name}` with image
    /// `registry.example.test/{name}:1.0.0`, and its revision-1 ReplicaSet.
    pub fn add_deployment(&self, namespace: &str, name: &str, replicas: i32) {
        self.remove_deployment(namespace, name);
        let labels: BTreeMap<String, String> = [("app".to_string(), name.to_string())].into();
        let deployment = Deployment {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some(namespace.to_string()),
                labels: Some(labels.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                selector: LabelSelector { match_labels: Some(labels.clone()), ..LabelSelector::default() },
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta { labels: Some(labels), ..ObjectMeta::default() }),
                    spec: Some(PodSpec {
                        containers: vec![Container {
                            name: name.to_string(),
                            image: Some(format!("registry.example.test/{name}:1.0.0")),
                            ..Container::default()
                        }],
                        ..PodSpec::default()
                    }),
                },
                ..DeploymentSpec::default()
            }),
            status: None,
        };
        let value = serde_json::to_value(&deployment).unwrap_or_else(|e| panic!("{e}"));
        self.create(Resource::Deployment, namespace, name, value);
    }

    fn remove_deployment(&self, namespace: &str, name: &str) {
        let mut inner = self.lock();
        let Some(old) = inner.objects.remove(&key(Resource::Deployment, namespace, name)) else {
            return;
        };
        let uid = old.pointer("/metadata/uid").and_then(Value::as_str).map(str::to_string);
        inner.objects.retain(|(r, ns, _), v| {
            !(*r == Resource::ReplicaSet && ns == namespace && controller_uid(v) == uid.as_deref())
        });
        let k = key(Resource::Deployment, namespace, name);
        inner.work.retain(|(_, w)| w.object() != k);
    }

    /// Simulates a finished rollout: sets the image of the first container of deployment
    /// `namespace/name` (a new template), lets the deployment controller finish with
    /// ready pods (work queued for it before runs first), and returns the new revision.
    pub fn add_deployment_revision(&self, namespace: &str, name: &str, image: &str) -> i64 {
        let mut inner = self.lock();
        inner.settle_object(&key(Resource::Deployment, namespace, name));
        let current = inner
            .get(Resource::Deployment, namespace, name)
            .cloned()
            .unwrap_or_else(|| panic!("no deployment {namespace}/{name}"));
        let mut candidate = current.clone();
        candidate["spec"]["template"]["spec"]["containers"][0]["image"] = json!(image);
        inner
            .commit(Resource::Deployment, namespace, name, Some(&current), candidate, false)
            .unwrap_or_else(|r| panic!("rollout of {namespace}/{name} failed: HTTP {}", r.status()));
        let k = key(Resource::Deployment, namespace, name);
        inner.settle_object(&k);
        inner.objects.get(&k).and_then(revision_of).unwrap_or_else(|| panic!("{namespace}/{name} has no revision"))
    }

    /// A copy of the stored deployment.
    pub fn deployment(&self, namespace: &str, name: &str) -> Option<Deployment> {
        self.lock().typed(Resource::Deployment, namespace, name)
    }

    /// `spec.replicas` of the stored deployment.
    pub fn replicas(&self, namespace: &str, name: &str) -> Option<i32> {
        self.deployment(namespace, name).and_then(|d| d.spec).and_then(|s| s.replicas)
    }

    /// The `deployment.kubernetes.io/revision` of the stored deployment.
    pub fn deployment_revision(&self, namespace: &str, name: &str) -> Option<i64> {
        self.object(Resource::Deployment, namespace, name).as_ref().and_then(revision_of)
    }

    /// The image of the first container of the deployment's pod template.
    pub fn deployment_image(&self, namespace: &str, name: &str) -> Option<String> {
        self.object(Resource::Deployment, namespace, name)?
            .pointer("/spec/template/spec/containers/0/image")?
            .as_str()
            .map(str::to_string)
    }

    /// Annotation `key` of the deployment's pod template.
    pub fn pod_template_annotation(&self, namespace: &str, name: &str, key: &str) -> Option<String> {
        self.object(Resource::Deployment, namespace, name)?
            .pointer(&format!("/spec/template/metadata/annotations/{}", escape(key)))?
            .as_str()
            .map(str::to_string)
    }

    /// The ReplicaSets in `namespace`.
    pub fn replicasets(&self, namespace: &str) -> Vec<ReplicaSet> {
        self.lock().all_typed(Resource::ReplicaSet, namespace)
    }

    /// `(revision, image of the first container, replicas)` of the ReplicaSets
    /// controlled by deployment `namespace/name`, by revision.
    pub fn replicaset_revisions(&self, namespace: &str, name: &str) -> Vec<(i64, String, i64)> {
        let inner = self.lock();
        let Some(uid) = inner
            .get(Resource::Deployment, namespace, name)
            .and_then(|d| d.pointer("/metadata/uid"))
            .and_then(Value::as_str)
        else {
            return Vec::new();
        };
        let mut out: Vec<(i64, String, i64)> = inner
            .objects
            .iter()
            .filter(|((r, ns, _), rs)| *r == Resource::ReplicaSet && ns == namespace && controller_uid(rs) == Some(uid))
            .map(|(_, rs)| {
                (
                    revision_of(rs).unwrap_or(0),
                    rs.pointer("/spec/template/spec/containers/0/image")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    rs.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0),
                )
            })
            .collect();
        out.sort();
        out
    }

    /// Adds (or replaces, with a new UID) a running pod `namespace/name` with
    /// `labels`, scheduled on `node`; returns its UID.
    pub fn add_pod(&self, namespace: &str, name: &str, labels: &[(&str, &str)], node: Option<&str>) -> String {
        self.lock().objects.remove(&key(Resource::Pod, namespace, name));
        let labels: BTreeMap<&str, &str> = labels.iter().copied().collect();
        let mut pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {"containers": [{"name": "main", "image": "registry.example.test/app:1.0.0"}]},
        });
        if let Some(node) = node {
            pod["spec"]["nodeName"] = json!(node);
        }
        let stored = self.create(Resource::Pod, namespace, name, pod);
        stored.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default().to_string()
    }

    /// A copy of the stored pod.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<Pod> {
        self.lock().typed(Resource::Pod, namespace, name)
    }

    pub fn pod_exists(&self, namespace: &str, name: &str) -> bool {
        self.object(Resource::Pod, namespace, name).is_some()
    }

    /// Adds (or replaces) a schedulable node `name`.
    pub fn add_node(&self, name: &str) {
        self.lock().objects.remove(&key(Resource::Node, "", name));
        let node = json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "spec": {},
        });
        self.create(Resource::Node, "", name, node);
    }

    /// A copy of the stored node.
    pub fn node(&self, name: &str) -> Option<Node> {
        self.lock().typed(Resource::Node, "", name)
    }

    /// `spec.unschedulable` of node `name` (absent counts as `false`); `None`
    /// when there is no such node.
    pub fn node_unschedulable(&self, name: &str) -> Option<bool> {
        let node = self.object(Resource::Node, "", name)?;
        Some(node.pointer("/spec/unschedulable").and_then(Value::as_bool).unwrap_or(false))
    }

    /// How every Job ends from now on: active for `after_gets` GETs of it, then
    /// finished with `outcome`. Applies to Jobs created later and to Jobs still
    /// running (their count starts again). Without a call, Jobs succeed after one
    /// GET. A prefix rule ([`KubeApi::set_job_outcome_for`]) wins over this one.
    pub fn set_job_outcome(&self, outcome: JobOutcome, after_gets: usize) {
        self.set_job_outcome_for("", outcome, after_gets);
    }

    /// Like [`KubeApi::set_job_outcome`], for Jobs whose name starts with
    /// `prefix` (the longest matching prefix wins).
    pub fn set_job_outcome_for(&self, prefix: &str, outcome: JobOutcome, after_gets: usize) {
        let mut inner = self.lock();
        inner.job_rules.retain(|r| r.prefix != prefix);
        inner.job_rules.push(JobRule { prefix: prefix.to_string(), outcome, after_gets });
        let names: Vec<(String, String)> =
            inner.job_plans.iter().filter(|(_, plan)| !plan.finished).map(|(k, _)| k.clone()).collect();
        for (namespace, name) in names {
            let plan = inner.job_plan_for(&name);
            inner.job_plans.insert((namespace, name), plan);
        }
    }

    /// The Jobs in `namespace`, by name.
    pub fn jobs(&self, namespace: &str) -> Vec<Job> {
        self.lock().all_typed(Resource::Job, namespace)
    }

    /// A copy of the stored Job (reading it here does not count as a GET).
    pub fn job(&self, namespace: &str, name: &str) -> Option<Job> {
        self.lock().typed(Resource::Job, namespace, name)
    }

    /// The stored object as JSON (`namespace` is ignored for Nodes).
    pub fn object(&self, resource: Resource, namespace: &str, name: &str) -> Option<Value> {
        self.lock().get(resource, namespace, name).cloned()
    }

    /// Stores `object` (its `metadata.name` names it) as a client's create would:
    /// decoded as the resource's type, server-managed metadata filled in
    /// (`creationTimestamp` is now, `status` is dropped), controllers run. Returns the
    /// stored object. Panics when it is invalid (a bug in the test). Use
    /// [`KubeApi::edit_object`] to set server-managed fields afterwards.
    pub fn add_object(&self, resource: Resource, namespace: &str, object: Value) -> Value {
        let name = object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("{} without metadata.name", resource.kind()))
            .to_string();
        self.create(resource, namespace, &name, object)
    }

    /// Changes stored object `namespace/name` in place with `edit`, bypassing the API
    /// (and the controllers): for what only the server or other controllers write,
    /// such as `status`, `creationTimestamp` or `managedFields`. The result is decoded
    /// as the resource's type and gets a new resourceVersion. Panics when the object
    /// does not exist or the result does not decode.
    pub fn edit_object(&self, resource: Resource, namespace: &str, name: &str, edit: impl FnOnce(&mut Value)) -> Value {
        let mut inner = self.lock();
        let k = key(resource, namespace, name);
        let mut object =
            inner.objects.get(&k).cloned().unwrap_or_else(|| panic!("no {} {namespace}/{name}", resource.kind()));
        edit(&mut object);
        let mut object =
            resource.normalize(object).unwrap_or_else(|e| panic!("edited {} {name} is invalid: {e}", resource.kind()));
        object["metadata"]["resourceVersion"] = json!(inner.bump_resource_version());
        inner.objects.insert(k, object.clone());
        object
    }

    /// Replaces the `status` of stored object `namespace/name` (see [`KubeApi::edit_object`]).
    pub fn set_status(&self, resource: Resource, namespace: &str, name: &str, status: Value) {
        self.edit_object(resource, namespace, name, |object| {
            object["status"] = status;
        });
    }

    /// Adds a ClusterIP Service `namespace/name` with `selector` (none when empty).
    pub fn add_service(&self, namespace: &str, name: &str, selector: &[(&str, &str)]) {
        let mut service = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]},
        });
        if !selector.is_empty() {
            let selector: BTreeMap<&str, &str> = selector.iter().copied().collect();
            service["spec"]["selector"] = json!(selector);
        }
        self.add_object(Resource::Service, namespace, service);
    }

    /// Adds a ConfigMap `namespace/name` with `data`.
    pub fn add_config_map(&self, namespace: &str, name: &str, data: &[(&str, &str)]) {
        let data: BTreeMap<&str, &str> = data.iter().copied().collect();
        self.add_object(
            Resource::ConfigMap,
            namespace,
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": name, "namespace": namespace}, "data": data}),
        );
    }

    /// Adds an Opaque Secret `namespace/name` whose `data` holds `values` (sent as
    /// `stringData`, stored base64-encoded in `data`).
    pub fn add_secret(&self, namespace: &str, name: &str, values: &[(&str, &str)]) {
        let values: BTreeMap<&str, &str> = values.iter().copied().collect();
        self.add_object(
            Resource::Secret,
            namespace,
            json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                   "metadata": {"name": name, "namespace": namespace}, "stringData": values}),
        );
    }

    /// Adds an autoscaling/v2 HorizontalPodAutoscaler `namespace/name` targeting
    /// Deployment `deployment` with `min..=max` replicas and a CPU target of 80%.
    pub fn add_hpa(&self, namespace: &str, name: &str, deployment: &str, min: i32, max: i32) {
        self.add_object(
            Resource::HorizontalPodAutoscaler,
            namespace,
            json!({
                "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {
                    "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment},
                    "minReplicas": min, "maxReplicas": max,
                    "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                                 "target": {"type": "Utilization", "averageUtilization": 80}}}],
                },
            }),
        );
    }

    /// Sets the status conditions of node `name` as the kubelet reports them:
    /// `(type, status)` pairs such as `("Ready", "False")`, `("MemoryPressure", "True")`.
    pub fn set_node_conditions(&self, name: &str, conditions: &[(&str, &str)]) {
        let t = now();
        let conditions: Vec<Value> = conditions
            .iter()
            .map(|(kind, status)| {
                let reason = match (*kind, *status) {
                    ("Ready", "True") => "KubeletReady",
                    ("Ready", "Unknown") => "NodeStatusUnknown",
                    ("Ready", _) => "KubeletNotReady",
                    (_, "True") => "KubeletHasPressure",
                    _ => "KubeletHasNoPressure",
                };
                json!({"type": kind, "status": status, "reason": reason, "message": "",
                       "lastHeartbeatTime": t, "lastTransitionTime": t})
            })
            .collect();
        self.set_status(Resource::Node, "", name, json!({"conditions": conditions}));
    }

    /// Answers every request whose path starts with `path_prefix` with 403
    /// `Forbidden`, like a missing RBAC rule (e.g. `/api/v1/namespaces/shop/events`).
    pub fn forbid(&self, path_prefix: &str) {
        self.lock().forbidden.push(path_prefix.to_string());
    }

    /// Removes every [`KubeApi::forbid`] rule.
    pub fn allow_all(&self) {
        self.lock().forbidden.clear();
    }

    /// Makes the next `n` requests (only write requests, POST, PUT, PATCH and
    /// DELETE, when `patch_only`) fail with `failure`, answered as a `Status`
    /// object. Replaces any earlier injection.
    pub fn fail_next(&self, n: usize, failure: Failure, patch_only: bool) {
        self.lock().injection = Some(Injection { remaining: n, failure, patch_only });
    }

    /// Delays every answer to `method` (`"GET"`, `"PATCH"`, ...) by `delay` (`None`:
    /// no delay), before the request is handled.
    pub fn set_latency(&self, method: &str, delay: Option<Duration>) {
        let mut inner = self.lock();
        match delay {
            Some(d) => inner.latency.insert(method.to_ascii_uppercase(), d),
            None => inner.latency.remove(&method.to_ascii_uppercase()),
        };
    }

    /// Applies each of the next `n` successful (non-dry-run) writes and then, instead of
    /// its answer, does `fault`: answer 500, or hang first. Replaces an earlier injection.
    /// The recorded request keeps the status of the apply (the write did succeed).
    pub fn fail_after_apply(&self, n: usize, fault: AfterApply) {
        self.lock().after_apply = Some((n, fault));
    }

    /// How long the emulated controllers take to react to a persisted write: the
    /// deployment controller's ReplicaSet pass, the job controller's start and end of a
    /// Job (default [`DEFAULT_CONTROLLER_DELAY`]). Applies to work queued from now on.
    pub fn set_controller_delay(&self, delay: Duration) {
        self.lock().behaviour.controller_delay = delay;
    }

    /// How long after its ReplicaSet pass the deployment controller writes the
    /// Deployment's revision annotation and status (default [`DEFAULT_STATUS_LAG`]):
    /// in between, a reused ReplicaSet already has its new revision number while the
    /// Deployment still shows the old one.
    pub fn set_status_lag(&self, lag: Duration) {
        self.lock().behaviour.status_lag = lag;
    }

    /// Whether pods created by rollouts that clients start become ready at once, so that
    /// rollouts complete (default `false`: with no kubelet, the new ReplicaSet stops at
    /// the surge and the old ones keep their pods, as on a real cluster without ready
    /// pods). Rollouts made by this handle's own methods (`add_deployment`,
    /// `add_deployment_revision`) always complete.
    pub fn set_pods_ready(&self, ready: bool) {
        self.lock().behaviour.pods_ready = ready;
    }

    /// Makes the pods of Deployment `namespace/name` ready now and lets the deployment
    /// controller finish its rollout at once (queued work for it included).
    pub fn mark_pods_ready(&self, namespace: &str, name: &str) {
        let mut inner = self.lock();
        inner.settle_object(&key(Resource::Deployment, namespace, name));
        if inner.rollout_replica_sets(namespace, name, true) {
            inner.record_deployment_status(namespace, name);
        }
    }

    /// How a deleted pod that is bound to a node (`spec.nodeName`) goes away. `None`
    /// (the default): no kubelet confirms, so it stays `Terminating` (with
    /// `deletionTimestamp` = deletion + grace period, and
    /// `deletionGracePeriodSeconds`) until [`KubeApi::finish_pod_termination`]. `Some(d)`:
    /// a kubelet stops it `d` after the deletion (at most its grace period). Unbound pods
    /// and deletions with `gracePeriodSeconds: 0` are removed at once either way.
    pub fn set_kubelet(&self, stop_after: Option<Duration>) {
        self.lock().behaviour.kubelet = stop_after;
    }

    /// Removes pod `namespace/name` if it is terminating, as its kubelet would once the
    /// containers stopped; answers whether it did.
    pub fn finish_pod_termination(&self, namespace: &str, name: &str) -> bool {
        let mut inner = self.lock();
        let k = key(Resource::Pod, namespace, name);
        let terminating = inner.objects.get(&k).is_some_and(|p| p.pointer("/metadata/deletionTimestamp").is_some());
        if terminating {
            inner.objects.remove(&k);
            inner.work.retain(|(_, w)| w.object() != k);
        }
        terminating
    }

    /// Whether pod `namespace/name` exists and has a `deletionTimestamp`.
    pub fn pod_terminating(&self, namespace: &str, name: &str) -> bool {
        self.object(Resource::Pod, namespace, name).is_some_and(|p| p.pointer("/metadata/deletionTimestamp").is_some())
    }

    /// Holds `controller`: its work stays queued until [`KubeApi::release`] (and
    /// [`KubeApi::run_controllers`] skips it).
    pub fn hold(&self, controller: Controller) {
        self.lock().held.insert(controller);
    }

    /// Lets a held controller work again; work that fell due meanwhile runs now.
    pub fn release(&self, controller: Controller) {
        let mut inner = self.lock();
        inner.held.remove(&controller);
        inner.wake.notify_one();
    }

    /// Runs every queued controller action now, as if its delay had passed (held
    /// controllers excepted), and what those actions queue in turn: the deterministic
    /// way for a test to see the state the controllers will reach.
    pub fn run_controllers(&self) {
        self.lock().run_work(None);
    }

    /// How many controller actions are queued (held ones included).
    pub fn pending_controller_work(&self) -> usize {
        self.lock().work.len()
    }

    /// Another client's write between a client's GET and its next request: each of the
    /// next `times` GETs of object `namespace/name` is answered first, then `edit` is
    /// applied to the stored object as a persisted write (new resourceVersion, the
    /// controllers react). A write the client then sends with the resourceVersion it read
    /// gets a real 409 `Conflict`. Edits that change nothing are not applied.
    pub fn write_after_get(
        &self,
        resource: Resource,
        namespace: &str,
        name: &str,
        times: usize,
        edit: impl Fn(&mut Value) + Send + 'static,
    ) {
        self.lock().interleaved.push(Interleaved {
            object: key(resource, namespace, name),
            remaining: times,
            edit: Box::new(edit),
        });
    }

    /// How many [`KubeApi::write_after_get`] writes were applied so far.
    pub fn writes_after_get(&self) -> usize {
        self.lock().interleaved_writes
    }

    /// All requests received so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().requests.clone()
    }

    /// Write requests (POST, PUT, PATCH, DELETE) on exactly `path`, oldest first.
    pub fn writes_to(&self, path: &str) -> Vec<RecordedRequest> {
        self.requests().into_iter().filter(|r| r.is_write() && r.path == path).collect()
    }

    /// PATCH requests on the scale subresource of `namespace/name`.
    pub fn scale_patches(&self, namespace: &str, name: &str) -> Vec<RecordedRequest> {
        let path = scale_path(namespace, name);
        self.requests().into_iter().filter(|r| r.method == "PATCH" && r.path == path).collect()
    }

    /// PATCH and PUT requests on the scale subresource of `namespace/name`
    /// (every request that can change the replica count).
    pub fn scale_writes(&self, namespace: &str, name: &str) -> Vec<RecordedRequest> {
        let path = scale_path(namespace, name);
        self.requests().into_iter().filter(|r| (r.method == "PATCH" || r.method == "PUT") && r.path == path).collect()
    }

    /// A one-line-per-request summary, for assertion messages.
    pub fn request_log(&self) -> String {
        self.requests()
            .iter()
            .map(|r| {
                format!(
                    "{} {}{} [{}] -> {} {}",
                    r.method,
                    r.path,
                    r.query.as_ref().map(|q| format!("?{q}")).unwrap_or_default(),
                    r.content_type.as_deref().unwrap_or("-"),
                    r.status,
                    r.body
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Path of the scale subresource of deployment `namespace/name`.
pub fn scale_path(namespace: &str, name: &str) -> String {
    format!("/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale")
}

/// Writes a kubeconfig for a server at `server_url` into `dir` and returns its
/// path. Cluster, context and user are all named [`KUBECONFIG_CONTEXT`]; the
/// user authenticates with the bearer token [`KUBECONFIG_TOKEN`].
pub fn write_kubeconfig(dir: &Path, server_url: &str) -> Result<PathBuf> {
    let path = dir.join("kubeconfig");
    let text = format!(
        "apiVersion: v1\n\
         kind: Config\n\
         clusters:\n\
         - name: {ctx}\n\
         \x20 cluster:\n\
         \x20   server: {server_url}\n\
         contexts:\n\
         - name: {ctx}\n\
         \x20 context:\n\
         \x20   cluster: {ctx}\n\
         \x20   user: {ctx}\n\
         \x20   namespace: default\n\
         current-context: {ctx}\n\
         users:\n\
         - name: {ctx}\n\
         \x20 user:\n\
         \x20   token: {token}\n",
        ctx = KUBECONFIG_CONTEXT,
        token = KUBECONFIG_TOKEN,
    );
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

fn status_response(code: u16, reason: &str, message: String, details: Option<StatusDetails>) -> Response {
    let status = Status {
        code: Some(i32::from(code)),
        details,
        message: Some(message),
        metadata: ListMeta::default(),
        reason: Some(reason.to_string()),
        status: Some("Failure".to_string()),
    };
    json_response(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), &status)
}

fn not_found(resource: Resource, name: &str) -> Response {
    status_response(
        404,
        "NotFound",
        format!("{} \"{name}\" not found", resource.qualified()),
        Some(resource.status_details(name)),
    )
}

fn conflict(resource: Resource, name: &str, why: &str) -> Response {
    status_response(
        409,
        "Conflict",
        format!("Operation cannot be fulfilled on {} \"{name}\": {why}", resource.qualified()),
        Some(resource.status_details(name)),
    )
}

const STALE: &str = "the object has been modified; please apply your changes to the latest version and try again";

fn bad_request(message: String) -> Response {
    status_response(400, "BadRequest", message, None)
}

fn invalid(resource: Resource, name: &str, causes: Vec<Cause>) -> Response {
    let summary = causes.iter().map(|c| format!("{}: {}", c.field, c.message)).collect::<Vec<_>>().join(", ");
    let mut details = resource.status_details(name);
    details.kind = Some(resource.kind().to_string());
    details.causes = Some(
        causes
            .into_iter()
            .map(|c| StatusCause { field: Some(c.field), message: Some(c.message), reason: Some(c.reason.to_string()) })
            .collect(),
    );
    status_response(
        422,
        "Invalid",
        format!("{} \"{name}\" is invalid: {summary}", resource.qualified_kind()),
        Some(details),
    )
}

fn json_response<T: serde::Serialize>(code: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (code, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

fn scale_of(deployment: &Deployment) -> Scale {
    let spec_replicas = deployment.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let status_replicas = deployment.status.as_ref().and_then(|s| s.replicas).unwrap_or(spec_replicas);
    let selector = deployment
        .spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.as_ref())
        .map(|labels| labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","));
    Scale {
        metadata: ObjectMeta {
            name: deployment.metadata.name.clone(),
            namespace: deployment.metadata.namespace.clone(),
            uid: deployment.metadata.uid.clone(),
            resource_version: deployment.metadata.resource_version.clone(),
            ..ObjectMeta::default()
        },
        spec: Some(ScaleSpec { replicas: Some(spec_replicas) }),
        status: Some(ScaleStatus { replicas: status_replicas, selector }),
    }
}

/// RFC 7386 JSON merge patch.
fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(fields) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            if let Value::Object(map) = target {
                for (key, value) in fields {
                    if value.is_null() {
                        map.remove(key);
                    } else {
                        merge_patch(map.entry(key.clone()).or_insert(Value::Null), value);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// The merge key of the lists strategic merge patches merge element-wise.
fn merge_key(field: &str) -> Option<&'static str> {
    match field {
        "containers" | "initContainers" | "ephemeralContainers" | "env" | "volumes" | "imagePullSecrets" => {
            Some("name")
        }
        "volumeMounts" => Some("mountPath"),
        "ports" => Some("containerPort"),
        _ => None,
    }
}

fn directive(value: &Value) -> Option<&str> {
    value.get("$patch").and_then(Value::as_str)
}

/// Removes `$`-directives (`$patch`, `$setElementOrder/...`, `$retainKeys`) and nulls.
fn strip_directives(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, v)| !k.starts_with('$') && !v.is_null())
                .map(|(k, v)| (k.clone(), strip_directives(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

/// A strategic merge patch: a merge patch in which the lists of [`merge_key`]
/// merge element-wise by their key (`$patch: delete` removes an element), and
/// `$patch: replace` / `delete` on a map replaces / removes it. Other
/// directives are ignored.
fn strategic_merge(target: &mut Value, patch: &Value) -> std::result::Result<(), String> {
    let Value::Object(fields) = patch else {
        *target = patch.clone();
        return Ok(());
    };
    match directive(patch) {
        Some("replace") => {
            *target = strip_directives(patch);
            return Ok(());
        }
        Some("delete") | None => {}
        Some(other) => return Err(format!("unknown patch directive {other:?}")),
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(map) = target else {
        return Ok(());
    };
    for (field, value) in fields {
        if field.starts_with('$') {
            continue;
        }
        if value.is_null() || directive(value) == Some("delete") {
            map.remove(field);
            continue;
        }
        match (merge_key(field), value) {
            (Some(merge_key), Value::Array(items)) => {
                let list = map.entry(field.clone()).or_insert_with(|| json!([]));
                if !list.is_array() {
                    *list = json!([]);
                }
                let Value::Array(list) = list else {
                    continue;
                };
                for item in items {
                    let Some(id) = item.get(merge_key) else {
                        return Err(format!("map in list {field} does not contain declared merge key {merge_key:?}"));
                    };
                    let position = list.iter().position(|e| e.get(merge_key) == Some(id));
                    match (position, directive(item)) {
                        (Some(i), Some("delete")) => {
                            list.remove(i);
                        }
                        (None, Some("delete")) => {}
                        (Some(i), _) => strategic_merge(&mut list[i], item)?,
                        (None, _) => list.push(strip_directives(item)),
                    }
                }
            }
            _ => strategic_merge(map.entry(field.clone()).or_insert(Value::Null), value)?,
        }
    }
    Ok(())
}

fn child_mut<'a>(node: &'a mut Value, token: &str) -> Option<&'a mut Value> {
    match node {
        Value::Object(map) => map.get_mut(token),
        Value::Array(items) => token.parse::<usize>().ok().and_then(move |i| items.get_mut(i)),
        _ => None,
    }
}

/// A small RFC 6902 JSON patch: `add`, `replace`, `remove` and `test`, on object
/// members and list indices (`-` appends).
fn json_patch(target: &mut Value, ops: &Value) -> std::result::Result<(), String> {
    let ops = ops.as_array().ok_or("a JSON patch must be an array of operations")?;
    for op in ops {
        let kind = op.get("op").and_then(Value::as_str).ok_or("operation without \"op\"")?;
        let path = op.get("path").and_then(Value::as_str).ok_or("operation without \"path\"")?;
        let tokens: Vec<String> = path.split('/').skip(1).map(|t| t.replace("~1", "/").replace("~0", "~")).collect();
        let (last, parents) = tokens.split_last().ok_or("empty path")?;
        match kind {
            "test" => {
                let current = target.pointer(path);
                if current != op.get("value") {
                    return Err(format!("test operation on {path} failed"));
                }
            }
            "add" | "replace" | "remove" => {
                let mut node = &mut *target;
                for t in parents {
                    node = child_mut(node, t).ok_or_else(|| format!("path {path} does not exist"))?;
                }
                let value = || op.get("value").cloned().ok_or_else(|| "operation without \"value\"".to_string());
                match node {
                    Value::Object(map) => match kind {
                        "remove" | "replace" if !map.contains_key(last.as_str()) => {
                            return Err(format!("{kind} on missing path {path}"))
                        }
                        "remove" => {
                            map.remove(last.as_str());
                        }
                        _ => {
                            map.insert(last.clone(), value()?);
                        }
                    },
                    Value::Array(items) => {
                        let index = if kind == "add" && last == "-" {
                            items.len()
                        } else {
                            last.parse::<usize>().map_err(|_| format!("invalid list index in {path}"))?
                        };
                        let bound = if kind == "add" { items.len() + 1 } else { items.len() };
                        if index >= bound {
                            return Err(format!("list index out of range in {path}"));
                        }
                        match kind {
                            "add" => items.insert(index, value()?),
                            "replace" => items[index] = value()?,
                            _ => {
                                items.remove(index);
                            }
                        }
                    }
                    _ => return Err(format!("path {path} is not inside an object or list")),
                }
            }
            other => return Err(format!("unsupported JSON patch operation {other:?}")),
        }
    }
    Ok(())
}

/// One requirement of a label selector.
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

impl Requirement {
    fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        match self {
            Requirement::Equals(k, v) => get(k) == Some(v.as_str()),
            Requirement::NotEquals(k, v) => get(k) != Some(v.as_str()),
            Requirement::In(k, vs) => get(k).is_some_and(|v| vs.iter().any(|x| x == v)),
            Requirement::NotIn(k, vs) => !get(k).is_some_and(|v| vs.iter().any(|x| x == v)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::NotExists(k) => get(k).is_none(),
        }
    }
}

/// Parses a label selector in the API's query syntax.
fn parse_label_selector(selector: &str) -> std::result::Result<Vec<Requirement>, String> {
    let mut terms = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in selector.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                terms.push(&selector[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&selector[start..]);
    let bad = |term: &str| format!("unable to parse requirement: {term:?}");
    let mut requirements = Vec::new();
    for term in terms.into_iter().map(str::trim).filter(|t| !t.is_empty()) {
        let requirement = if let Some((head, rest)) = term.split_once('(') {
            let values: Vec<String> = rest
                .strip_suffix(')')
                .ok_or_else(|| bad(term))?
                .split(',')
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .collect();
            let mut words = head.split_whitespace();
            let (Some(k), Some(op), None) = (words.next(), words.next(), words.next()) else {
                return Err(bad(term));
            };
            match op {
                "in" => Requirement::In(k.to_string(), values),
                "notin" => Requirement::NotIn(k.to_string(), values),
                _ => return Err(bad(term)),
            }
        } else if let Some(k) = term.strip_prefix('!') {
            Requirement::NotExists(k.trim().to_string())
        } else if let Some((k, v)) = term.split_once("!=") {
            Requirement::NotEquals(k.trim().to_string(), v.trim().to_string())
        } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
            Requirement::Equals(k.trim().to_string(), v.trim().to_string())
        } else if term.contains(char::is_whitespace) {
            return Err(bad(term));
        } else {
            Requirement::Exists(term.to_string())
        };
        let key = match &requirement {
            Requirement::Equals(k, _)
            | Requirement::NotEquals(k, _)
            | Requirement::In(k, _)
            | Requirement::NotIn(k, _)
            | Requirement::Exists(k)
            | Requirement::NotExists(k) => k,
        };
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(bad(term));
        }
        requirements.push(requirement);
    }
    Ok(requirements)
}

/// Parses a field selector of `path=value`, `path==value` and `path!=value` terms
/// into `(JSON pointer, value, negated)`.
fn parse_field_selector(selector: &str) -> std::result::Result<Vec<(String, String, bool)>, String> {
    selector
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|term| {
            let (field, value, negated) = if let Some((f, v)) = term.split_once("!=") {
                (f, v, true)
            } else if let Some((f, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (f, v, false)
            } else {
                return Err(format!("invalid field selector: {term:?}"));
            };
            let pointer = format!("/{}", field.trim().replace('.', "/"));
            Ok((pointer, value.trim().to_string(), negated))
        })
        .collect()
}

/// [`handle`] behind the configured latency and after-apply faults.
async fn handle_slow(state: &Shared, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let delay = {
        let inner = state.lock().unwrap_or_else(|e| e.into_inner());
        inner.latency.get(method.as_str()).copied()
    };
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    let is_write = matches!(method, Method::PATCH | Method::PUT | Method::POST | Method::DELETE);
    let dry_run = uri.query().is_some_and(|q| q.contains("dryRun="));
    let response = handle(state, method, uri, headers, body);
    if !is_write || dry_run || !response.status().is_success() {
        return response;
    }
    let fault = {
        let mut inner = state.lock().unwrap_or_else(|e| e.into_inner());
        match inner.after_apply.as_mut() {
            Some((n, fault)) if *n > 0 => {
                *n -= 1;
                let f = *fault;
                if *n == 0 {
                    inner.after_apply = None;
                }
                Some(f)
            }
            _ => None,
        }
    };
    match fault {
        None => response,
        Some(AfterApply::Answer500) => status_response(
            500,
            "InternalError",
            "Internal error occurred: the write was persisted but the answer failed (injected)".to_string(),
            None,
        ),
        Some(AfterApply::Hang(d)) => {
            tokio::time::sleep(d).await;
            response
        }
    }
}

fn handle(state: &Shared, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string);
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_string);
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).map(str::to_string);
    let mut inner = state.lock().unwrap_or_else(|e| e.into_inner());
    let response = route(&mut inner, &method, &uri, (content_type.as_deref(), accept.as_deref()), &body);
    inner.requests.push(RecordedRequest {
        method: method.to_string(),
        path: uri.path().to_string(),
        query: uri.query().map(str::to_string),
        content_type,
        accept,
        authorization,
        body: String::from_utf8_lossy(&body).into_owned(),
        status: response.status().as_u16(),
    });
    response
}

/// `(group, version, rest)` of an `/api/{version}/...` or `/apis/{group}/{version}/...` path.
fn api_prefix<'a, 'b>(segments: &'b [&'a str]) -> Option<(&'a str, &'a str, &'b [&'a str])> {
    match segments {
        ["api", version, rest @ ..] => Some(("", version, rest)),
        ["apis", group, version, rest @ ..] => Some((group, version, rest)),
        _ => None,
    }
}

fn find_resource(group: &str, version: &str, plural: &str) -> Option<Resource> {
    Resource::ALL.into_iter().find(|r| r.group() == group && r.version() == version && r.plural() == plural)
}

/// `(resource, namespace, name)` of an object or collection path (namespace `""` for
/// cluster-scoped resources).
fn parse_path(segments: &[&str]) -> Option<(Resource, String, Option<String>)> {
    let (group, version, rest) = api_prefix(segments)?;
    let (namespace, plural, rest): (&str, &str, &[&str]) = match rest {
        ["namespaces", ns, plural, rest @ ..] => (ns, plural, rest),
        [plural, rest @ ..] => ("", plural, rest),
        [] => return None,
    };
    let resource = find_resource(group, version, plural)?;
    if resource.namespaced() == namespace.is_empty() {
        return None;
    }
    match rest {
        [] => Some((resource, namespace.to_string(), None)),
        [name] if !name.is_empty() => Some((resource, namespace.to_string(), Some(name.to_string()))),
        _ => None,
    }
}

/// The namespaced resource of an all-namespaces collection path (`/api/v1/events`).
fn all_namespaces_collection(segments: &[&str]) -> Option<Resource> {
    let (group, version, rest) = api_prefix(segments)?;
    let [plural] = rest else {
        return None;
    };
    find_resource(group, version, plural).filter(|r| r.namespaced())
}

/// Whether an `Accept` header asks for `as={kind}` (`PartialObjectMetadata` or
/// `PartialObjectMetadataList`) in one of its media ranges.
fn accepts_as(accept: Option<&str>, kind: &str) -> bool {
    let wanted = format!("as={kind}");
    accept.is_some_and(|accept| accept.split(',').any(|range| range.split(';').skip(1).any(|p| p.trim() == wanted)))
}

/// An object reduced to its metadata, as `meta.k8s.io/v1 PartialObjectMetadata`.
fn partial_metadata(object: &Value) -> Value {
    json!({
        "apiVersion": "meta.k8s.io/v1",
        "kind": "PartialObjectMetadata",
        "metadata": object.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

/// The 403 answer for a request the test's RBAC ([`KubeApi::forbid`]) refuses, worded
/// like the real authorizer's.
fn forbidden(method: &Method, segments: &[&str]) -> Response {
    const USER: &str = "system:serviceaccount:warden:warden";
    let (resource, namespace, name, subresource) = match segments {
        ["apis", "apps", "v1", "namespaces", ns, "deployments", name, sub] => {
            (Some(Resource::Deployment), ns.to_string(), Some(name.to_string()), Some(sub.to_string()))
        }
        other => match parse_path(other) {
            Some((resource, namespace, name)) => (Some(resource), namespace, name, None),
            None => (all_namespaces_collection(other), String::new(), None, None),
        },
    };
    let verb = match (method.as_str(), &name) {
        ("GET", None) => "list",
        ("GET", Some(_)) => "get",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", _) => "delete",
        (other, _) => other,
    };
    let Some(resource) = resource else {
        return status_response(
            403,
            "Forbidden",
            format!("forbidden: User \"{USER}\" cannot {verb} path \"/{}\"", segments.join("/")),
            None,
        );
    };
    let plural = match &subresource {
        Some(sub) => format!("{}/{sub}", resource.plural()),
        None => resource.plural().to_string(),
    };
    let object = match &name {
        Some(name) => format!("{} \"{name}\"", resource.qualified()),
        None => resource.qualified(),
    };
    let scope = if !resource.namespaced() || namespace.is_empty() {
        " at the cluster scope".to_string()
    } else {
        format!(" in the namespace \"{namespace}\"")
    };
    status_response(
        403,
        "Forbidden",
        format!(
            "{object} is forbidden: User \"{USER}\" cannot {verb} resource \"{plural}\" in API group \"{}\"{scope}",
            resource.group()
        ),
        Some(resource.status_details(name.as_deref().unwrap_or_default())),
    )
}

fn route(
    inner: &mut Inner,
    method: &Method,
    uri: &Uri,
    (content_type, accept): (Option<&str>, Option<&str>),
    body: &[u8],
) -> Response {
    let segments: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    if inner.forbidden.iter().any(|prefix| uri.path().starts_with(prefix.as_str())) {
        return forbidden(method, &segments);
    }
    let is_write = matches!(*method, Method::PATCH | Method::PUT | Method::POST | Method::DELETE);
    if let Some(injection) = inner.injection.as_mut() {
        if injection.remaining > 0 && (!injection.patch_only || is_write) {
            injection.remaining -= 1;
            let failure = injection.failure;
            if injection.remaining == 0 {
                inner.injection = None;
            }
            let (resource, name) = match segments.as_slice() {
                ["apis", "apps", "v1", "namespaces", _, "deployments", name, "scale"] => {
                    (Resource::Deployment, name.to_string())
                }
                other => match parse_path(other) {
                    Some((resource, _, name)) => (resource, name.unwrap_or_default()),
                    None => (Resource::Deployment, String::new()),
                },
            };
            return match failure {
                Failure::Conflict => conflict(resource, &name, STALE),
                Failure::Internal => {
                    status_response(500, "InternalError", "Internal error occurred: injected failure".to_string(), None)
                }
                Failure::Unavailable => status_response(
                    503,
                    "ServiceUnavailable",
                    "the server is currently unable to handle the request".to_string(),
                    None,
                ),
            };
        }
    }

    let query: HashMap<String, String> =
        url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()).into_owned().collect();
    let dry_run = match query.get("dryRun").map(String::as_str) {
        None => false,
        Some("All") => true,
        Some(other) => return invalid_dry_run(method, other),
    };
    let media_type = content_type.unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase();

    match segments.as_slice() {
        ["version"] if *method == Method::GET => json_response(
            StatusCode::OK,
            &json!({
                "major": "1", "minor": "33", "gitVersion": "v1.33.0",
                "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
                "buildDate": "2025-04-23T00:00:00Z", "goVersion": "go1.24.2",
                "compiler": "gc", "platform": "linux/amd64"
            }),
        ),
        ["apis", "apps", "v1", "namespaces", ns, "deployments", name, "scale"] => {
            scale(inner, method, ns, name, &media_type, body, dry_run)
        }
        other if all_namespaces_collection(other).is_some() => match (all_namespaces_collection(other), method) {
            (Some(resource), &Method::GET) => {
                list(inner, resource, None, &query, accepts_as(accept, "PartialObjectMetadataList"))
            }
            _ => method_not_allowed(method),
        },
        other => match parse_path(other) {
            Some((resource, namespace, None)) => match *method {
                Method::GET => {
                    list(inner, resource, Some(&namespace), &query, accepts_as(accept, "PartialObjectMetadataList"))
                }
                Method::POST => create(inner, resource, &namespace, &media_type, body, dry_run),
                _ => method_not_allowed(method),
            },
            Some((resource, namespace, Some(name))) => match *method {
                Method::GET => {
                    if resource == Resource::Job {
                        inner.advance_job(&namespace, &name);
                    }
                    let response = match inner.get(resource, &namespace, &name) {
                        Some(object) if accepts_as(accept, "PartialObjectMetadata") => {
                            json_response(StatusCode::OK, &partial_metadata(object))
                        }
                        Some(object) => json_response(StatusCode::OK, object),
                        None => not_found(resource, &name),
                    };
                    inner.write_after_get(resource, &namespace, &name);
                    response
                }
                Method::PUT => replace(inner, resource, &namespace, &name, &media_type, body, dry_run),
                Method::PATCH => patch(inner, resource, &namespace, &name, &media_type, body, dry_run),
                Method::DELETE => delete(inner, resource, &namespace, &name, body, dry_run),
                _ => method_not_allowed(method),
            },
            None => {
                status_response(404, "NotFound", "the server could not find the requested resource".to_string(), None)
            }
        },
    }
}

/// The real server's answer to a `dryRun` value other than `All`: 422 `Invalid`
/// on the request's options.
fn invalid_dry_run(method: &Method, value: &str) -> Response {
    let options = match *method {
        Method::POST => "CreateOptions",
        Method::PUT => "UpdateOptions",
        Method::DELETE => "DeleteOptions",
        _ => "PatchOptions",
    };
    let message = format!("Unsupported value: []string{{{value:?}}}: supported values: \"All\"");
    status_response(
        422,
        "Invalid",
        format!("{options}.meta.k8s.io \"\" is invalid: dryRun: {message}"),
        Some(StatusDetails {
            group: Some("meta.k8s.io".to_string()),
            kind: Some(options.to_string()),
            causes: Some(vec![StatusCause {
                field: Some("dryRun".to_string()),
                message: Some(message),
                reason: Some("FieldValueNotSupported".to_string()),
            }]),
            ..StatusDetails::default()
        }),
    )
}

fn method_not_allowed(method: &Method) -> Response {
    status_response(405, "MethodNotAllowed", format!("method {method} is not allowed"), None)
}

/// The continue token of a list page that ended with object `namespace/name`:
/// opaque to clients (hex), decoded by [`decode_continue`].
fn encode_continue(namespace: &str, name: &str) -> String {
    format!("v1:{namespace}/{name}").bytes().map(|b| format!("{b:02x}")).collect()
}

fn decode_continue(token: &str) -> Option<(String, String)> {
    if !token.len().is_multiple_of(2) || !token.is_ascii() {
        return None;
    }
    let bytes: Option<Vec<u8>> =
        (0..token.len()).step_by(2).map(|i| u8::from_str_radix(&token[i..i + 2], 16).ok()).collect();
    let text = String::from_utf8(bytes?).ok()?;
    let (namespace, name) = text.strip_prefix("v1:")?.split_once('/')?;
    Some((namespace.to_string(), name.to_string()))
}

/// A list answer: the objects of `resource` in `namespace` (all namespaces for
/// `None`) that match the selectors, by namespace and name, paginated with `limit`
/// and `continue`, as metadata only when `metadata_only`.
fn list(
    inner: &Inner,
    resource: Resource,
    namespace: Option<&str>,
    query: &HashMap<String, String>,
    metadata_only: bool,
) -> Response {
    let labels = match parse_label_selector(query.get("labelSelector").map_or("", String::as_str)) {
        Ok(requirements) => requirements,
        Err(e) => return bad_request(e),
    };
    let fields = match parse_field_selector(query.get("fieldSelector").map_or("", String::as_str)) {
        Ok(fields) => fields,
        Err(e) => return bad_request(e),
    };
    let limit = match query.get("limit").map(|l| l.parse::<usize>()) {
        None | Some(Ok(0)) => None,
        Some(Ok(limit)) => Some(limit),
        Some(Err(_)) => return bad_request("invalid limit".to_string()),
    };
    let after = match query.get("continue").filter(|c| !c.is_empty()) {
        None => None,
        Some(token) => match decode_continue(token) {
            Some(after) => Some(after),
            None => {
                return bad_request(format!("continue key is not valid: {token:?}"));
            }
        },
    };
    let namespace = namespace.map(|ns| if resource.namespaced() { ns } else { "" });
    let items: Vec<(&String, &String, &Value)> = inner
        .objects
        .iter()
        .filter(|((r, ns, _), _)| *r == resource && namespace.is_none_or(|n| ns == n))
        .filter(|((_, ns, name), _)| after.as_ref().is_none_or(|(a_ns, a_name)| (ns, name) > (a_ns, a_name)))
        .map(|((_, ns, name), v)| (ns, name, v))
        .filter(|(_, _, v)| {
            let object_labels = v.pointer("/metadata/labels").and_then(Value::as_object);
            labels.iter().all(|r| r.matches(object_labels))
        })
        .filter(|(_, _, v)| {
            fields.iter().all(|(pointer, value, negated)| {
                let actual = v.pointer(pointer).and_then(Value::as_str).unwrap_or("");
                (actual == value) != *negated
            })
        })
        .collect();
    let mut metadata = json!({"resourceVersion": inner.next_resource_version.to_string()});
    let page = match limit {
        Some(limit) if items.len() > limit => {
            let (ns, name, _) = items[limit - 1];
            metadata["continue"] = json!(encode_continue(ns, name));
            metadata["remainingItemCount"] = json!(items.len() - limit);
            &items[..limit]
        }
        _ => &items[..],
    };
    let items: Vec<Value> =
        page.iter().map(|(_, _, v)| if metadata_only { partial_metadata(v) } else { (*v).clone() }).collect();
    let (api_version, kind) = if metadata_only {
        ("meta.k8s.io/v1", "PartialObjectMetadataList".to_string())
    } else {
        (resource.api_version(), format!("{}List", resource.kind()))
    };
    json_response(
        StatusCode::OK,
        &json!({
            "apiVersion": api_version,
            "kind": kind,
            "metadata": metadata,
            "items": items,
        }),
    )
}

/// Decodes a create or replace body as the resource's type: 415 unless JSON, 400
/// when it does not decode.
#[allow(clippy::result_large_err)]
fn decode_body(resource: Resource, media_type: &str, body: &[u8]) -> std::result::Result<Value, Response> {
    if media_type != "application/json" {
        return Err(unsupported_media_type(media_type));
    }
    let cannot = |e: String| {
        bad_request(format!("{} in version \"v1\" cannot be handled as a {}: {e}", resource.kind(), resource.kind()))
    };
    let parsed: Value = serde_json::from_slice(body).map_err(|e| cannot(e.to_string()))?;
    resource.normalize(parsed).map_err(cannot)
}

fn create(
    inner: &mut Inner,
    resource: Resource,
    namespace: &str,
    media_type: &str,
    body: &[u8],
    dry_run: bool,
) -> Response {
    let object = match decode_body(resource, media_type, body) {
        Ok(object) => object,
        Err(response) => return response,
    };
    if let Some(ns) = object.pointer("/metadata/namespace").and_then(Value::as_str) {
        if resource.namespaced() && ns != namespace {
            return bad_request(
                "the namespace of the provided object does not match the namespace sent on the request".to_string(),
            );
        }
    }
    let name = match object.pointer("/metadata/name").and_then(Value::as_str) {
        Some(name) if !name.is_empty() => name.to_string(),
        _ => match object.pointer("/metadata/generateName").and_then(Value::as_str) {
            Some(prefix) if !prefix.is_empty() => {
                let suffix: String = pod_template_hash(&json!(inner.next_uid)).chars().take(5).collect();
                format!("{prefix}{suffix}")
            }
            _ => {
                return invalid(
                    resource,
                    "",
                    vec![Cause {
                        field: "metadata.name".into(),
                        message: "Required value: name or generateName is required".into(),
                        reason: "FieldValueRequired",
                    }],
                )
            }
        },
    };
    if inner.get(resource, namespace, &name).is_some() {
        return status_response(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", resource.qualified()),
            Some(resource.status_details(&name)),
        );
    }
    match inner.commit(resource, namespace, &name, None, object, dry_run) {
        Ok(created) => json_response(StatusCode::CREATED, &created),
        Err(response) => response,
    }
}

fn replace(
    inner: &mut Inner,
    resource: Resource,
    namespace: &str,
    name: &str,
    media_type: &str,
    body: &[u8],
    dry_run: bool,
) -> Response {
    let Some(current) = inner.get(resource, namespace, name).cloned() else {
        return not_found(resource, name);
    };
    let object = match decode_body(resource, media_type, body) {
        Ok(object) => object,
        Err(response) => return response,
    };
    if let Some(body_name) = object.pointer("/metadata/name").and_then(Value::as_str) {
        if body_name != name {
            return bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            ));
        }
    }
    let wanted_rv = object.pointer("/metadata/resourceVersion").and_then(Value::as_str);
    if wanted_rv.is_some_and(|rv| Some(rv) != current.pointer("/metadata/resourceVersion").and_then(Value::as_str)) {
        return conflict(resource, name, STALE);
    }
    match inner.commit(resource, namespace, name, Some(&current), object, dry_run) {
        Ok(stored) => json_response(StatusCode::OK, &stored),
        Err(response) => response,
    }
}

/// Applies a PATCH body of `media_type` to `target`: the error is the response.
#[allow(clippy::result_large_err)]
fn apply_patch(target: &mut Value, media_type: &str, body: &[u8]) -> std::result::Result<(), Response> {
    let parsed: Value = serde_json::from_slice(body).map_err(|e| bad_request(format!("error decoding patch: {e}")))?;
    let unprocessable = |e: String| status_response(422, "Invalid", e, None);
    match media_type {
        "application/merge-patch+json" | "application/apply-patch+yaml" => {
            if !parsed.is_object() {
                return Err(bad_request("a merge patch must be a JSON object".to_string()));
            }
            merge_patch(target, &parsed);
        }
        "application/strategic-merge-patch+json" => {
            if !parsed.is_object() {
                return Err(bad_request("a strategic merge patch must be a JSON object".to_string()));
            }
            strategic_merge(target, &parsed).map_err(unprocessable)?;
        }
        "application/json-patch+json" => {
            json_patch(target, &parsed).map_err(|e| unprocessable(format!("invalid JSON patch: {e}")))?;
        }
        other => return Err(unsupported_media_type(other)),
    }
    Ok(())
}

fn patch(
    inner: &mut Inner,
    resource: Resource,
    namespace: &str,
    name: &str,
    media_type: &str,
    body: &[u8],
    dry_run: bool,
) -> Response {
    let Some(current) = inner.get(resource, namespace, name).cloned() else {
        return not_found(resource, name);
    };
    let mut patched = current.clone();
    if let Err(response) = apply_patch(&mut patched, media_type, body) {
        return response;
    }
    // A resourceVersion in the patch is a precondition; removing it is not.
    if let Some(rv) = patched.pointer("/metadata/resourceVersion") {
        if Some(rv) != current.pointer("/metadata/resourceVersion") {
            return conflict(resource, name, STALE);
        }
    }
    let patched = match resource.normalize(patched) {
        Ok(v) => v,
        Err(e) => {
            return status_response(
                422,
                "Invalid",
                format!("{} \"{name}\" is invalid: {e}", resource.qualified_kind()),
                Some(resource.status_details(name)),
            )
        }
    };
    match inner.commit(resource, namespace, name, Some(&current), patched, dry_run) {
        Ok(stored) => json_response(StatusCode::OK, &stored),
        Err(response) => response,
    }
}

fn delete(inner: &mut Inner, resource: Resource, namespace: &str, name: &str, body: &[u8], dry_run: bool) -> Response {
    let options: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => return bad_request(format!("error decoding DeleteOptions: {e}")),
        }
    };
    let dry_run = match options.get("dryRun") {
        None | Some(Value::Null) => dry_run,
        Some(v) if *v == json!(["All"]) => true,
        Some(v) if *v == json!([]) => dry_run,
        Some(other) => {
            let value = match other {
                Value::Array(items) => items
                    .iter()
                    .map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()))
                    .collect::<Vec<_>>()
                    .join(","),
                other => other.to_string(),
            };
            return invalid_dry_run(&Method::DELETE, &value);
        }
    };
    let Some(current) = inner.get(resource, namespace, name).cloned() else {
        return not_found(resource, name);
    };
    for (field, what) in [("uid", "UID"), ("resourceVersion", "ResourceVersion")] {
        let Some(wanted) = options.pointer(&format!("/preconditions/{field}")).and_then(Value::as_str) else {
            continue;
        };
        let actual = current.pointer(&format!("/metadata/{field}")).and_then(Value::as_str).unwrap_or_default();
        if wanted != actual {
            return conflict(
                resource,
                name,
                &format!("Precondition failed: {what} in precondition: {wanted}, {what} in object meta: {actual}"),
            );
        }
    }
    if resource == Resource::Pod {
        return delete_pod(inner, namespace, name, &current, &options, dry_run);
    }
    if !dry_run {
        let k = key(resource, namespace, name);
        inner.objects.remove(&k);
        inner.work.retain(|(_, w)| w.object() != k);
        match resource {
            Resource::Job => {
                inner.job_plans.remove(&(namespace.to_string(), name.to_string()));
            }
            Resource::Deployment => {
                let uid = current.pointer("/metadata/uid").and_then(Value::as_str);
                inner.objects.retain(|(r, ns, _), v| {
                    !(*r == Resource::ReplicaSet && ns == namespace && controller_uid(v) == uid)
                });
            }
            _ => {}
        }
    }
    json_response(
        StatusCode::OK,
        &json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
            "details": {
                "name": name, "group": resource.group(), "kind": resource.plural(),
                "uid": current.pointer("/metadata/uid").cloned().unwrap_or(Value::Null),
            },
        }),
    )
}

/// Deletes a Pod as the real API server does: a Pod bound to a node with a grace
/// period gets `deletionTimestamp` (deletion time + grace) and
/// `deletionGracePeriodSeconds` and stays, `Terminating`, until its kubelet confirms
/// ([`KubeApi::set_kubelet`], [`KubeApi::finish_pod_termination`]); an unbound Pod, or a
/// deletion with `gracePeriodSeconds: 0`, is removed at once. Deleting a terminating
/// Pod again answers it unchanged. The answer is the Pod.
fn delete_pod(
    inner: &mut Inner,
    namespace: &str,
    name: &str,
    current: &Value,
    options: &Value,
    dry_run: bool,
) -> Response {
    if current.pointer("/metadata/deletionTimestamp").is_some() {
        return json_response(StatusCode::OK, current);
    }
    let grace = options
        .get("gracePeriodSeconds")
        .and_then(Value::as_i64)
        .or_else(|| current.pointer("/spec/terminationGracePeriodSeconds").and_then(Value::as_i64))
        .unwrap_or(30)
        .max(0);
    let bound = current.pointer("/spec/nodeName").and_then(Value::as_str).is_some_and(|n| !n.is_empty());
    let k = key(Resource::Pod, namespace, name);
    let at = |secs: i64| {
        (chrono::Utc::now() + chrono::Duration::seconds(secs)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    let mut answer = current.clone();
    if bound && grace > 0 {
        answer["metadata"]["deletionTimestamp"] = json!(at(grace));
        answer["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
        if !dry_run {
            answer["metadata"]["resourceVersion"] = json!(inner.bump_resource_version());
            inner.objects.insert(k, answer.clone());
            if let Some(stop_after) = inner.behaviour.kubelet {
                let grace = Duration::from_secs(u64::try_from(grace).unwrap_or(0));
                let uid = current.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default().to_string();
                inner.schedule_at(
                    Instant::now() + stop_after.min(grace),
                    Work::PodGone { namespace: namespace.to_string(), name: name.to_string(), uid },
                );
            }
        }
    } else {
        answer["metadata"]["deletionTimestamp"] = json!(at(0));
        answer["metadata"]["deletionGracePeriodSeconds"] = json!(0);
        if !dry_run {
            inner.objects.remove(&k);
        }
    }
    json_response(StatusCode::OK, &answer)
}

fn scale(
    inner: &mut Inner,
    method: &Method,
    namespace: &str,
    name: &str,
    media_type: &str,
    body: &[u8],
    dry_run: bool,
) -> Response {
    let Some(stored) = inner.get(Resource::Deployment, namespace, name).cloned() else {
        return not_found(Resource::Deployment, name);
    };
    let deployment: Deployment = match serde_json::from_value(stored.clone()) {
        Ok(d) => d,
        Err(e) => return status_response(500, "InternalError", e.to_string(), None),
    };
    let current = scale_of(&deployment);
    if *method == Method::GET {
        return json_response(StatusCode::OK, &current);
    }
    if *method != Method::PATCH && *method != Method::PUT {
        return method_not_allowed(method);
    }
    let mut updated = match serde_json::to_value(&current) {
        Ok(v) => v,
        Err(e) => return status_response(500, "InternalError", e.to_string(), None),
    };
    if *method == Method::PUT {
        if media_type != "application/json" {
            return unsupported_media_type(media_type);
        }
        let parsed: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => return bad_request(format!("error decoding body: {e}")),
        };
        if let Some(rv) = parsed.pointer("/metadata/resourceVersion").and_then(Value::as_str) {
            if Some(rv) != current.metadata.resource_version.as_deref() {
                return conflict(Resource::Deployment, name, STALE);
            }
        }
        updated = parsed;
    } else if let Err(response) = apply_patch(&mut updated, media_type, body) {
        return response;
    }
    let replicas = match updated.pointer("/spec/replicas") {
        None | Some(Value::Null) => i64::from(current.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)),
        Some(v) => match v.as_i64() {
            Some(n) => n,
            None => return invalid_scale(name, format!("Invalid value: {v}: must be an integer")),
        },
    };
    if replicas < 0 {
        return invalid_scale(name, format!("Invalid value: {replicas}: must be greater than or equal to 0"));
    }
    if replicas > i64::from(i32::MAX) {
        return invalid_scale(name, format!("Invalid value: {replicas}: too large"));
    }
    let mut candidate = stored.clone();
    candidate["spec"]["replicas"] = json!(replicas);
    let answer = match inner.commit(Resource::Deployment, namespace, name, Some(&stored), candidate, dry_run) {
        Ok(answer) => answer,
        Err(response) => return response,
    };
    match serde_json::from_value::<Deployment>(answer) {
        Ok(d) => json_response(StatusCode::OK, &scale_of(&d)),
        Err(e) => status_response(500, "InternalError", e.to_string(), None),
    }
}

fn unsupported_media_type(media_type: &str) -> Response {
    status_response(
        415,
        "UnsupportedMediaType",
        format!(
            "the body of the request was in an unknown format - accepted media types include: \
                 application/json-patch+json, application/merge-patch+json, \
                 application/apply-patch+yaml, application/strategic-merge-patch+json (got {media_type:?})"
        ),
        None,
    )
}

fn invalid_scale(name: &str, message: String) -> Response {
    status_response(
        422,
        "Invalid",
        format!("Scale.autoscaling \"{name}\" is invalid: spec.replicas: {message}"),
        Some(StatusDetails {
            name: Some(name.to_string()),
            group: Some("autoscaling".to_string()),
            kind: Some("Scale".to_string()),
            causes: Some(vec![StatusCause {
                field: Some("spec.replicas".to_string()),
                message: Some(message),
                reason: Some("FieldValueInvalid".to_string()),
            }]),
            ..StatusDetails::default()
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(pairs: &[(i64, i64)]) -> Vec<PodCounts> {
        pairs.iter().map(|&(replicas, available)| PodCounts { replicas, available }).collect()
    }

    #[test]
    fn rollouts_stop_half_way_without_ready_pods_like_the_real_controller() {
        // 2 replicas, 25% surge (1) and unavailability (0): one new pod, the old two stay.
        let mut sets = counts(&[(2, 2), (0, 0)]);
        rolling_update(&mut sets, 2, 1, 0, false);
        assert_eq!(sets, counts(&[(2, 2), (1, 0)]));
        // 4 replicas (surge 1, unavailable 1): one old pod goes, two new (unready) ones
        // come, and the availability floor (3) stops it there.
        let mut sets = counts(&[(4, 4), (0, 0)]);
        rolling_update(&mut sets, 4, 1, 1, false);
        assert_eq!(sets, counts(&[(3, 3), (2, 0)]));
        // With ready pods the rollout completes.
        rolling_update(&mut sets, 4, 1, 1, true);
        assert_eq!(sets, counts(&[(0, 0), (4, 4)]));
        // Plain scaling of the current ReplicaSet.
        let mut sets = counts(&[(0, 0), (2, 2)]);
        rolling_update(&mut sets, 5, 2, 1, false);
        assert_eq!(sets, counts(&[(0, 0), (5, 2)]));
    }

    #[test]
    fn rolling_limits_round_like_the_controller() {
        let d = |strategy: Value| json!({"spec": {"strategy": {"rollingUpdate": strategy}}});
        assert_eq!(rolling_limits(&json!({}), 2), (1, 0));
        assert_eq!(rolling_limits(&json!({}), 10), (3, 2));
        assert_eq!(rolling_limits(&d(json!({"maxSurge": 0, "maxUnavailable": 0})), 3), (0, 1));
        assert_eq!(rolling_limits(&d(json!({"maxSurge": "50%", "maxUnavailable": 1})), 3), (2, 1));
    }
}
