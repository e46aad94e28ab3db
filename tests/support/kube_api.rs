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
//!   resourceVersion; `metadata.generation` follows `spec` changes.
//! * `POST` of an existing name answers 409 `AlreadyExists` (in a dry run too).
//! * `DELETE` reads `DeleteOptions` from the body (`preconditions.uid` /
//!   `resourceVersion` → 409 `Conflict` when they differ, `dryRun: ["All"]`).
//!   Pods answer the deleted Pod, other resources a `Success` `Status`.
//! * `?dryRun=All` on every write validates and answers the would-be object and
//!   persists nothing; any other `dryRun` value is 400 `BadRequest`.
//! * Errors are `meta/v1 Status` objects with the real `code`, `reason`
//!   (`NotFound`, `AlreadyExists`, `Conflict`, `Invalid`, `BadRequest`,
//!   `MethodNotAllowed`, `UnsupportedMediaType`, `InternalError`) and `details`.
//!   Undecodable bodies are 400, patch results that do not decode or validate 422.
//!
//! The deployment controller is emulated synchronously after every persisted
//! Deployment write, so a write's answer already shows its outcome: the
//! ReplicaSet whose template (ignoring `pod-template-hash`) equals the
//! Deployment's gets the highest revision plus one when it is not the newest
//! (what a rollback does; the old number goes into
//! `deployment.kubernetes.io/revision-history`), otherwise a new ReplicaSet is
//! created with the next revision, controller owner reference and
//! `pod-template-hash` label. That ReplicaSet gets all replicas (the rollout is
//! instant) and its revision becomes the Deployment's
//! `deployment.kubernetes.io/revision` annotation.
//!
//! Jobs get the real defaults, selector and labels when created and start active;
//! each later `GET` of a Job counts towards the outcome set with
//! [`KubeApi::set_job_outcome`] (default: succeed on the second `GET`), after which
//! its status carries `Complete` or `Failed` conditions and counts.
//!
//! Failures can be injected with [`KubeApi::fail_next`], missing RBAC rules
//! emulated with [`KubeApi::forbid`] (403 `Forbidden` for a path prefix, checked
//! before anything else), and every request is recorded ([`KubeApi::requests`]) for
//! assertions.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, ReplicaSet};
use k8s_openapi::api::autoscaling::v1::{Scale, ScaleSpec, ScaleStatus};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, Event, Node, Pod, PodSpec, PodTemplateSpec, Secret, Service,
};
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
}

impl Resource {
    /// Every resource the server knows.
    pub const ALL: [Resource; 10] = [
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
        }
    }

    fn api_version(self) -> &'static str {
        match self.group() {
            "" => "v1",
            "apps" => "apps/v1",
            "autoscaling" => "autoscaling/v2",
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
                let mut secret: Secret =
                    serde_json::from_value(value).map_err(|e| e.to_string())?;
                if let Some(strings) = secret.string_data.take() {
                    let data = secret.data.get_or_insert_with(BTreeMap::new);
                    for (k, v) in strings {
                        data.insert(k, ByteString(v.into_bytes()));
                    }
                }
                serde_json::to_value(&secret).map_err(|e| e.to_string())
            }
            Resource::HorizontalPodAutoscaler => roundtrip::<HorizontalPodAutoscaler>(value),
        }
    }
}

fn roundtrip<T: DeserializeOwned + serde::Serialize>(
    value: Value,
) -> std::result::Result<Value, String> {
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
        url::form_urlencoded::parse(self.query.as_deref().unwrap_or("").as_bytes())
            .into_owned()
            .collect()
    }

    /// The first value of query parameter `key`.
    pub fn query_param(&self, key: &str) -> Option<String> {
        self.query_params()
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// Whether the request asked for a server-side dry run: `dryRun=All` in the
    /// query, or (for a DELETE) `"dryRun": ["All"]` in its `DeleteOptions` body.
    pub fn is_dry_run(&self) -> bool {
        self.query_params()
            .iter()
            .any(|(k, v)| k == "dryRun" && v == "All")
            || (self.method == "DELETE"
                && self
                    .json()
                    .is_some_and(|b| b.get("dryRun") == Some(&json!(["All"]))))
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
                .filter(|op| {
                    matches!(
                        op.get("op").and_then(Value::as_str),
                        Some("add" | "replace")
                    )
                })
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

    fn typed<T: DeserializeOwned>(
        &self,
        resource: Resource,
        namespace: &str,
        name: &str,
    ) -> Option<T> {
        self.get(resource, namespace, name)
            .and_then(|v| serde_json::from_value(v.clone()).ok())
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
            return Err(bad_request(format!(
                "{} body is not an object",
                resource.kind()
            )));
        }
        let metadata = candidate
            .as_object_mut()
            .map(|o| o.entry("metadata").or_insert_with(|| json!({})));
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
            if candidate.get("spec") != current.get("spec") {
                let generation = current
                    .pointer("/metadata/generation")
                    .and_then(Value::as_i64)
                    .unwrap_or(1);
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
                    candidate["status"] = json!({"active": 1, "ready": 0, "startTime": now(),
                                                 "uncountedTerminatedPods": {}});
                    let plan = self.job_plan_for(name);
                    self.job_plans
                        .insert((namespace.to_string(), name.to_string()), plan);
                }
                Resource::Pod => {
                    candidate["status"] = json!({"phase": "Running", "startTime": now()});
                }
                _ => {}
            }
        }
        if resource == Resource::Deployment {
            self.sync_deployment(namespace, &mut candidate);
        }
        self.objects
            .insert(key(resource, namespace, name), candidate.clone());
        Ok(candidate)
    }

    /// The deployment controller, run synchronously on `deployment` before it is
    /// stored: finds or creates the ReplicaSet of its template, renumbers it when
    /// it is reused, moves all replicas to it, and sets the revision annotation
    /// and the status.
    fn sync_deployment(&mut self, namespace: &str, deployment: &mut Value) {
        let name = deployment
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let uid = deployment
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let template = deployment
            .pointer("/spec/template")
            .cloned()
            .unwrap_or_else(|| json!({}));
        let replicas = deployment
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let wanted = without_hash(&template);
        let owned: Vec<(String, Value)> = self
            .objects
            .iter()
            .filter(|((r, ns, _), rs)| {
                *r == Resource::ReplicaSet && ns == namespace && controller_uid(rs) == Some(&uid)
            })
            .map(|((_, _, n), rs)| (n.clone(), rs.clone()))
            .collect();
        let max_revision = owned
            .iter()
            .filter_map(|(_, rs)| revision_of(rs))
            .max()
            .unwrap_or(0);
        let matching = owned.iter().find(|(_, rs)| {
            rs.pointer("/spec/template").map(without_hash).as_ref() == Some(&wanted)
        });
        let (current_rs, revision) = match matching {
            Some((rs_name, rs)) => {
                let old = revision_of(rs).unwrap_or(0);
                if old < max_revision {
                    let mut rs = rs.clone();
                    let history = rs
                        .pointer(&format!(
                            "/metadata/annotations/{}",
                            escape(REVISION_HISTORY)
                        ))
                        .and_then(Value::as_str)
                        .filter(|h| !h.is_empty())
                        .map(|h| format!("{h},{old}"))
                        .unwrap_or_else(|| old.to_string());
                    set_annotation(&mut rs, REVISION, &(max_revision + 1).to_string());
                    set_annotation(&mut rs, REVISION_HISTORY, &history);
                    rs["metadata"]["resourceVersion"] = json!(self.bump_resource_version());
                    self.objects
                        .insert(key(Resource::ReplicaSet, namespace, rs_name), rs);
                    (rs_name.clone(), max_revision + 1)
                } else {
                    (rs_name.clone(), old)
                }
            }
            None => {
                let revision = max_revision + 1;
                let hash = pod_template_hash(&wanted);
                let mut rs_name = format!("{name}-{hash}");
                while self
                    .get(Resource::ReplicaSet, namespace, &rs_name)
                    .is_some()
                {
                    rs_name.push('x');
                }
                let mut rs_template = wanted.clone();
                rs_template["metadata"]["labels"][HASH_LABEL] = json!(hash);
                let mut selector = deployment
                    .pointer("/spec/selector")
                    .cloned()
                    .unwrap_or_else(|| json!({}));
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
                            "deployment.kubernetes.io/desired-replicas": replicas.to_string(),
                            "deployment.kubernetes.io/max-replicas": (replicas + 1).to_string(),
                        },
                        "ownerReferences": [{
                            "apiVersion": "apps/v1", "kind": "Deployment", "name": name,
                            "uid": uid, "controller": true, "blockOwnerDeletion": true,
                        }],
                    },
                    "spec": {"replicas": 0, "selector": selector, "template": rs_template},
                });
                let rs = Resource::ReplicaSet.normalize(rs.clone()).unwrap_or(rs);
                self.objects
                    .insert(key(Resource::ReplicaSet, namespace, &rs_name), rs);
                (rs_name, revision)
            }
        };
        // Instant rollout: the current ReplicaSet runs every replica.
        let names: Vec<String> = owned
            .iter()
            .map(|(n, _)| n.clone())
            .chain(std::iter::once(current_rs.clone()))
            .collect();
        for rs_name in names {
            let count = if rs_name == current_rs { replicas } else { 0 };
            let k = key(Resource::ReplicaSet, namespace, &rs_name);
            let Some(mut rs) = self.objects.get(&k).cloned() else {
                continue;
            };
            let before = rs.clone();
            rs["spec"]["replicas"] = json!(count);
            rs["status"] = json!({
                "replicas": count, "fullyLabeledReplicas": count, "readyReplicas": count,
                "availableReplicas": count,
                "observedGeneration": rs.pointer("/metadata/generation").cloned().unwrap_or(json!(1)),
            });
            if rs != before {
                rs["metadata"]["resourceVersion"] = json!(self.bump_resource_version());
                self.objects.insert(k, rs);
            }
        }
        set_annotation(deployment, REVISION, &revision.to_string());
        deployment["status"] = json!({
            "observedGeneration": deployment.pointer("/metadata/generation").cloned().unwrap_or(json!(1)),
            "replicas": replicas, "updatedReplicas": replicas, "readyReplicas": replicas,
            "availableReplicas": replicas,
        });
    }

    /// The plan for a new Job: the rule with the longest matching name prefix.
    fn job_plan_for(&self, name: &str) -> JobPlan {
        let rule = self
            .job_rules
            .iter()
            .filter(|r| name.starts_with(&r.prefix))
            .max_by_key(|r| r.prefix.len());
        match rule {
            Some(rule) => JobPlan {
                outcome: rule.outcome.clone(),
                remaining_gets: rule.after_gets,
                finished: false,
            },
            None => JobPlan {
                outcome: JobOutcome::Succeed,
                remaining_gets: 1,
                finished: false,
            },
        }
    }

    /// Counts one GET of Job `namespace/name` and finishes it when its plan says so.
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
        let outcome = plan.outcome.clone();
        let k = key(Resource::Job, namespace, name);
        let Some(mut job) = self.objects.get(&k).cloned() else {
            return;
        };
        let start = job
            .pointer("/status/startTime")
            .cloned()
            .unwrap_or_else(|| json!(now()));
        let t = now();
        let condition = |kind: &str, reason: &str, message: &str| {
            json!({"type": kind, "status": "True", "reason": reason, "message": message,
                   "lastProbeTime": t, "lastTransitionTime": t})
        };
        job["status"] = match outcome {
            JobOutcome::Succeed => {
                let completions = job
                    .pointer("/spec/completions")
                    .and_then(Value::as_i64)
                    .unwrap_or(1);
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
                let backoff_limit = job
                    .pointer("/spec/backoffLimit")
                    .and_then(Value::as_i64)
                    .unwrap_or(6);
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
        spec.insert(
            "selector".into(),
            json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}),
        );
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
    if let Some(labels) = template
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
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
    hash.to_string()
        .bytes()
        .map(|b| char::from(ALPHABET[usize::from(b) % ALPHABET.len()]))
        .collect()
}

/// A field error of an `Invalid` answer.
struct Cause {
    field: String,
    message: String,
    reason: &'static str,
}

fn required(field: impl Into<String>) -> Cause {
    Cause {
        field: field.into(),
        message: "Required value".to_string(),
        reason: "FieldValueRequired",
    }
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
                        message: format!(
                            "Invalid value: {replicas}: must be greater than or equal to 0"
                        ),
                        reason: "FieldValueInvalid",
                    });
                }
            }
            let match_labels = spec
                .pointer("/selector/matchLabels")
                .and_then(Value::as_object);
            let expressions = spec
                .pointer("/selector/matchExpressions")
                .and_then(Value::as_array);
            if match_labels.is_none_or(Map::is_empty) && expressions.is_none_or(Vec::is_empty) {
                causes.push(Cause {
                    field: "spec.selector".into(),
                    message: "Invalid value: {}: empty selector is invalid for deployment".into(),
                    reason: "FieldValueInvalid",
                });
            }
            let labels = spec.pointer("/template/metadata/labels");
            if let Some(match_labels) = match_labels {
                let matches = match_labels
                    .iter()
                    .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v));
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
            validate_pod_spec(
                spec.pointer("/template/spec"),
                "spec.template.spec",
                &mut causes,
            );
        }
        Resource::Pod => validate_pod_spec(spec, "spec", &mut causes),
        Resource::Job => {
            let pod_spec = spec.and_then(|s| s.pointer("/template/spec"));
            validate_pod_spec(pod_spec, "spec.template.spec", &mut causes);
            let policy = pod_spec
                .and_then(|s| s.get("restartPolicy"))
                .and_then(Value::as_str);
            if !matches!(policy, Some("Never" | "OnFailure")) {
                causes.push(Cause {
                    field: "spec.template.spec.restartPolicy".into(),
                    message: match policy {
                        None => "Required value: valid values: \"OnFailure\", \"Never\"".into(),
                        Some(p) => format!(
                            "Unsupported value: {p:?}: supported values: \"OnFailure\", \"Never\""
                        ),
                    },
                    reason: if policy.is_none() {
                        "FieldValueRequired"
                    } else {
                        "FieldValueNotSupported"
                    },
                });
            }
        }
        Resource::Node
        | Resource::Event
        | Resource::Service
        | Resource::ConfigMap
        | Resource::Secret
        | Resource::HorizontalPodAutoscaler => {}
    }
    causes
}

fn validate_pod_spec(spec: Option<&Value>, at: &str, causes: &mut Vec<Cause>) {
    let containers = spec
        .and_then(|s| s.get("containers"))
        .and_then(Value::as_array);
    let Some(containers) = containers.filter(|c| !c.is_empty()) else {
        causes.push(required(format!("{at}.containers")));
        return;
    };
    for (i, container) in containers.iter().enumerate() {
        for field in ["name", "image"] {
            let present = container
                .get(field)
                .and_then(Value::as_str)
                .is_some_and(|v| !v.trim().is_empty());
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
}

impl Drop for KubeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl KubeApi {
    /// Starts the server on a free loopback port. Must be called inside a Tokio runtime.
    pub async fn start() -> Result<Self> {
        let inner: Shared = Arc::new(Mutex::new(Inner {
            next_resource_version: 1000,
            ..Inner::default()
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the kube API test server")?;
        let addr = listener.local_addr()?;
        let state = inner.clone();
        let app = Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let state = state.clone();
                async move { handle(&state, method, uri, headers, body) }
            },
        );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, inner, task })
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
        let object = resource
            .normalize(object)
            .unwrap_or_else(|e| panic!("invalid {} {name}: {e}", resource.kind()));
        match inner.commit(resource, namespace, name, None, object, false) {
            Ok(stored) => stored,
            Err(response) => panic!(
                "invalid {} {name}: HTTP {}",
                resource.kind(),
                response.status()
            ),
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
                selector: LabelSelector {
                    match_labels: Some(labels.clone()),
                    ..LabelSelector::default()
                },
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(labels),
                        ..ObjectMeta::default()
                    }),
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
        let Some(old) = inner
            .objects
            .remove(&key(Resource::Deployment, namespace, name))
        else {
            return;
        };
        let uid = old
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .map(str::to_string);
        inner.objects.retain(|(r, ns, _), v| {
            !(*r == Resource::ReplicaSet && ns == namespace && controller_uid(v) == uid.as_deref())
        });
    }

    /// Simulates a rollout: sets the image of the first container of deployment
    /// `namespace/name` (a new template) and returns the new revision.
    pub fn add_deployment_revision(&self, namespace: &str, name: &str, image: &str) -> i64 {
        let mut inner = self.lock();
        let current = inner
            .get(Resource::Deployment, namespace, name)
            .cloned()
            .unwrap_or_else(|| panic!("no deployment {namespace}/{name}"));
        let mut candidate = current.clone();
        candidate["spec"]["template"]["spec"]["containers"][0]["image"] = json!(image);
        let stored = inner
            .commit(
                Resource::Deployment,
                namespace,
                name,
                Some(&current),
                candidate,
                false,
            )
            .unwrap_or_else(|r| {
                panic!("rollout of {namespace}/{name} failed: HTTP {}", r.status())
            });
        revision_of(&stored).unwrap_or_else(|| panic!("{namespace}/{name} has no revision"))
    }

    /// A copy of the stored deployment.
    pub fn deployment(&self, namespace: &str, name: &str) -> Option<Deployment> {
        self.lock().typed(Resource::Deployment, namespace, name)
    }

    /// `spec.replicas` of the stored deployment.
    pub fn replicas(&self, namespace: &str, name: &str) -> Option<i32> {
        self.deployment(namespace, name)
            .and_then(|d| d.spec)
            .and_then(|s| s.replicas)
    }

    /// The `deployment.kubernetes.io/revision` of the stored deployment.
    pub fn deployment_revision(&self, namespace: &str, name: &str) -> Option<i64> {
        self.object(Resource::Deployment, namespace, name)
            .as_ref()
            .and_then(revision_of)
    }

    /// The image of the first container of the deployment's pod template.
    pub fn deployment_image(&self, namespace: &str, name: &str) -> Option<String> {
        self.object(Resource::Deployment, namespace, name)?
            .pointer("/spec/template/spec/containers/0/image")?
            .as_str()
            .map(str::to_string)
    }

    /// Annotation `key` of the deployment's pod template.
    pub fn pod_template_annotation(
        &self,
        namespace: &str,
        name: &str,
        key: &str,
    ) -> Option<String> {
        self.object(Resource::Deployment, namespace, name)?
            .pointer(&format!(
                "/spec/template/metadata/annotations/{}",
                escape(key)
            ))?
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
            .filter(|((r, ns, _), rs)| {
                *r == Resource::ReplicaSet && ns == namespace && controller_uid(rs) == Some(uid)
            })
            .map(|(_, rs)| {
                (
                    revision_of(rs).unwrap_or(0),
                    rs.pointer("/spec/template/spec/containers/0/image")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    rs.pointer("/spec/replicas")
                        .and_then(Value::as_i64)
                        .unwrap_or(0),
                )
            })
            .collect();
        out.sort();
        out
    }

    /// Adds (or replaces, with a new UID) a running pod `namespace/name` with
    /// `labels`, scheduled on `node`; returns its UID.
    pub fn add_pod(
        &self,
        namespace: &str,
        name: &str,
        labels: &[(&str, &str)],
        node: Option<&str>,
    ) -> String {
        self.lock()
            .objects
            .remove(&key(Resource::Pod, namespace, name));
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
        stored
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
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
        Some(
            node.pointer("/spec/unschedulable")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        )
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
        inner.job_rules.push(JobRule {
            prefix: prefix.to_string(),
            outcome,
            after_gets,
        });
        let names: Vec<(String, String)> = inner
            .job_plans
            .iter()
            .filter(|(_, plan)| !plan.finished)
            .map(|(k, _)| k.clone())
            .collect();
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
    pub fn edit_object(
        &self,
        resource: Resource,
        namespace: &str,
        name: &str,
        edit: impl FnOnce(&mut Value),
    ) -> Value {
        let mut inner = self.lock();
        let k = key(resource, namespace, name);
        let mut object = inner
            .objects
            .get(&k)
            .cloned()
            .unwrap_or_else(|| panic!("no {} {namespace}/{name}", resource.kind()));
        edit(&mut object);
        let mut object = resource
            .normalize(object)
            .unwrap_or_else(|e| panic!("edited {} {name} is invalid: {e}", resource.kind()));
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
        self.lock().injection = Some(Injection {
            remaining: n,
            failure,
            patch_only,
        });
    }

    /// All requests received so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().requests.clone()
    }

    /// Write requests (POST, PUT, PATCH, DELETE) on exactly `path`, oldest first.
    pub fn writes_to(&self, path: &str) -> Vec<RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.is_write() && r.path == path)
            .collect()
    }

    /// PATCH requests on the scale subresource of `namespace/name`.
    pub fn scale_patches(&self, namespace: &str, name: &str) -> Vec<RecordedRequest> {
        let path = scale_path(namespace, name);
        self.requests()
            .into_iter()
            .filter(|r| r.method == "PATCH" && r.path == path)
            .collect()
    }

    /// PATCH and PUT requests on the scale subresource of `namespace/name`
    /// (every request that can change the replica count).
    pub fn scale_writes(&self, namespace: &str, name: &str) -> Vec<RecordedRequest> {
        let path = scale_path(namespace, name);
        self.requests()
            .into_iter()
            .filter(|r| (r.method == "PATCH" || r.method == "PUT") && r.path == path)
            .collect()
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
                    r.query
                        .as_ref()
                        .map(|q| format!("?{q}"))
                        .unwrap_or_default(),
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

fn status_response(
    code: u16,
    reason: &str,
    message: String,
    details: Option<StatusDetails>,
) -> Response {
    let status = Status {
        code: Some(i32::from(code)),
        details,
        message: Some(message),
        metadata: ListMeta::default(),
        reason: Some(reason.to_string()),
        status: Some("Failure".to_string()),
    };
    json_response(
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &status,
    )
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
        format!(
            "Operation cannot be fulfilled on {} \"{name}\": {why}",
            resource.qualified()
        ),
        Some(resource.status_details(name)),
    )
}

const STALE: &str =
    "the object has been modified; please apply your changes to the latest version and try again";

fn bad_request(message: String) -> Response {
    status_response(400, "BadRequest", message, None)
}

fn invalid(resource: Resource, name: &str, causes: Vec<Cause>) -> Response {
    let summary = causes
        .iter()
        .map(|c| format!("{}: {}", c.field, c.message))
        .collect::<Vec<_>>()
        .join(", ");
    let mut details = resource.status_details(name);
    details.kind = Some(resource.kind().to_string());
    details.causes = Some(
        causes
            .into_iter()
            .map(|c| StatusCause {
                field: Some(c.field),
                message: Some(c.message),
                reason: Some(c.reason.to_string()),
            })
            .collect(),
    );
    status_response(
        422,
        "Invalid",
        format!(
            "{} \"{name}\" is invalid: {summary}",
            resource.qualified_kind()
        ),
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
    let spec_replicas = deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    let status_replicas = deployment
        .status
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(spec_replicas);
    let selector = deployment
        .spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.as_ref())
        .map(|labels| {
            labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        });
    Scale {
        metadata: ObjectMeta {
            name: deployment.metadata.name.clone(),
            namespace: deployment.metadata.namespace.clone(),
            uid: deployment.metadata.uid.clone(),
            resource_version: deployment.metadata.resource_version.clone(),
            ..ObjectMeta::default()
        },
        spec: Some(ScaleSpec {
            replicas: Some(spec_replicas),
        }),
        status: Some(ScaleStatus {
            replicas: status_replicas,
            selector,
        }),
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
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets" => Some("name"),
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
                        return Err(format!(
                            "map in list {field} does not contain declared merge key {merge_key:?}"
                        ));
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
        Value::Array(items) => token
            .parse::<usize>()
            .ok()
            .and_then(move |i| items.get_mut(i)),
        _ => None,
    }
}

/// A small RFC 6902 JSON patch: `add`, `replace`, `remove` and `test`, on object
/// members and list indices (`-` appends).
fn json_patch(target: &mut Value, ops: &Value) -> std::result::Result<(), String> {
    let ops = ops
        .as_array()
        .ok_or("a JSON patch must be an array of operations")?;
    for op in ops {
        let kind = op
            .get("op")
            .and_then(Value::as_str)
            .ok_or("operation without \"op\"")?;
        let path = op
            .get("path")
            .and_then(Value::as_str)
            .ok_or("operation without \"path\"")?;
        let tokens: Vec<String> = path
            .split('/')
            .skip(1)
            .map(|t| t.replace("~1", "/").replace("~0", "~"))
            .collect();
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
                    node =
                        child_mut(node, t).ok_or_else(|| format!("path {path} does not exist"))?;
                }
                let value = || {
                    op.get("value")
                        .cloned()
                        .ok_or_else(|| "operation without \"value\"".to_string())
                };
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
                            last.parse::<usize>()
                                .map_err(|_| format!("invalid list index in {path}"))?
                        };
                        let bound = if kind == "add" {
                            items.len() + 1
                        } else {
                            items.len()
                        };
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
fn parse_field_selector(
    selector: &str,
) -> std::result::Result<Vec<(String, String, bool)>, String> {
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

fn handle(state: &Shared, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut inner = state.lock().unwrap_or_else(|e| e.into_inner());
    let response = route(
        &mut inner,
        &method,
        &uri,
        (content_type.as_deref(), accept.as_deref()),
        &body,
    );
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
    Resource::ALL
        .into_iter()
        .find(|r| r.group() == group && r.version() == version && r.plural() == plural)
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
        [name] if !name.is_empty() => {
            Some((resource, namespace.to_string(), Some(name.to_string())))
        }
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
    accept.is_some_and(|accept| {
        accept
            .split(',')
            .any(|range| range.split(';').skip(1).any(|p| p.trim() == wanted))
    })
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
        ["apis", "apps", "v1", "namespaces", ns, "deployments", name, sub] => (
            Some(Resource::Deployment),
            ns.to_string(),
            Some(name.to_string()),
            Some(sub.to_string()),
        ),
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
            format!(
                "forbidden: User \"{USER}\" cannot {verb} path \"/{}\"",
                segments.join("/")
            ),
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
    if inner
        .forbidden
        .iter()
        .any(|prefix| uri.path().starts_with(prefix.as_str()))
    {
        return forbidden(method, &segments);
    }
    let is_write = matches!(
        *method,
        Method::PATCH | Method::PUT | Method::POST | Method::DELETE
    );
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
                Failure::Internal => status_response(
                    500,
                    "InternalError",
                    "Internal error occurred: injected failure".to_string(),
                    None,
                ),
            };
        }
    }

    let query: HashMap<String, String> =
        url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let dry_run = match query.get("dryRun").map(String::as_str) {
        None => false,
        Some("All") => true,
        Some(other) => return invalid_dry_run(other),
    };
    let media_type = content_type
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();

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
        other if all_namespaces_collection(other).is_some() => {
            match (all_namespaces_collection(other), method) {
                (Some(resource), &Method::GET) => list(
                    inner,
                    resource,
                    None,
                    &query,
                    accepts_as(accept, "PartialObjectMetadataList"),
                ),
                _ => method_not_allowed(method),
            }
        }
        other => match parse_path(other) {
            Some((resource, namespace, None)) => match *method {
                Method::GET => list(
                    inner,
                    resource,
                    Some(&namespace),
                    &query,
                    accepts_as(accept, "PartialObjectMetadataList"),
                ),
                Method::POST => create(inner, resource, &namespace, &media_type, body, dry_run),
                _ => method_not_allowed(method),
            },
            Some((resource, namespace, Some(name))) => match *method {
                Method::GET => {
                    if resource == Resource::Job {
                        inner.advance_job(&namespace, &name);
                    }
                    match inner.get(resource, &namespace, &name) {
                        Some(object) if accepts_as(accept, "PartialObjectMetadata") => {
                            json_response(StatusCode::OK, &partial_metadata(object))
                        }
                        Some(object) => json_response(StatusCode::OK, object),
                        None => not_found(resource, &name),
                    }
                }
                Method::PUT => replace(
                    inner,
                    resource,
                    &namespace,
                    &name,
                    &media_type,
                    body,
                    dry_run,
                ),
                Method::PATCH => patch(
                    inner,
                    resource,
                    &namespace,
                    &name,
                    &media_type,
                    body,
                    dry_run,
                ),
                Method::DELETE => delete(inner, resource, &namespace, &name, body, dry_run),
                _ => method_not_allowed(method),
            },
            None => status_response(
                404,
                "NotFound",
                "the server could not find the requested resource".to_string(),
                None,
            ),
        },
    }
}

fn invalid_dry_run(value: &str) -> Response {
    bad_request(format!(
        "Invalid dry run value: {value:?}, the only supported value is \"All\""
    ))
}

fn method_not_allowed(method: &Method) -> Response {
    status_response(
        405,
        "MethodNotAllowed",
        format!("method {method} is not allowed"),
        None,
    )
}

/// The continue token of a list page that ended with object `namespace/name`:
/// opaque to clients (hex), decoded by [`decode_continue`].
fn encode_continue(namespace: &str, name: &str) -> String {
    format!("v1:{namespace}/{name}")
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn decode_continue(token: &str) -> Option<(String, String)> {
    if !token.len().is_multiple_of(2) || !token.is_ascii() {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&token[i..i + 2], 16).ok())
        .collect();
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
        .filter(|((_, ns, name), _)| {
            after
                .as_ref()
                .is_none_or(|(a_ns, a_name)| (ns, name) > (a_ns, a_name))
        })
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
    let items: Vec<Value> = page
        .iter()
        .map(|(_, _, v)| {
            if metadata_only {
                partial_metadata(v)
            } else {
                (*v).clone()
            }
        })
        .collect();
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
fn decode_body(
    resource: Resource,
    media_type: &str,
    body: &[u8],
) -> std::result::Result<Value, Response> {
    if media_type != "application/json" {
        return Err(unsupported_media_type(media_type));
    }
    let cannot = |e: String| {
        bad_request(format!(
            "{} in version \"v1\" cannot be handled as a {}: {e}",
            resource.kind(),
            resource.kind()
        ))
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
    if let Some(ns) = object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
    {
        if resource.namespaced() && ns != namespace {
            return bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
                    .to_string(),
            );
        }
    }
    let name = match object.pointer("/metadata/name").and_then(Value::as_str) {
        Some(name) if !name.is_empty() => name.to_string(),
        _ => match object
            .pointer("/metadata/generateName")
            .and_then(Value::as_str)
        {
            Some(prefix) if !prefix.is_empty() => {
                let suffix: String = pod_template_hash(&json!(inner.next_uid))
                    .chars()
                    .take(5)
                    .collect();
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
    let wanted_rv = object
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str);
    if wanted_rv.is_some_and(|rv| {
        Some(rv)
            != current
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
    }) {
        return conflict(resource, name, STALE);
    }
    match inner.commit(resource, namespace, name, Some(&current), object, dry_run) {
        Ok(stored) => json_response(StatusCode::OK, &stored),
        Err(response) => response,
    }
}

/// Applies a PATCH body of `media_type` to `target`: the error is the response.
#[allow(clippy::result_large_err)]
fn apply_patch(
    target: &mut Value,
    media_type: &str,
    body: &[u8],
) -> std::result::Result<(), Response> {
    let parsed: Value = serde_json::from_slice(body)
        .map_err(|e| bad_request(format!("error decoding patch: {e}")))?;
    let unprocessable = |e: String| status_response(422, "Invalid", e, None);
    match media_type {
        "application/merge-patch+json" | "application/apply-patch+yaml" => {
            if !parsed.is_object() {
                return Err(bad_request(
                    "a merge patch must be a JSON object".to_string(),
                ));
            }
            merge_patch(target, &parsed);
        }
        "application/strategic-merge-patch+json" => {
            if !parsed.is_object() {
                return Err(bad_request(
                    "a strategic merge patch must be a JSON object".to_string(),
                ));
            }
            strategic_merge(target, &parsed).map_err(unprocessable)?;
        }
        "application/json-patch+json" => {
            json_patch(target, &parsed)
                .map_err(|e| unprocessable(format!("invalid JSON patch: {e}")))?;
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

fn delete(
    inner: &mut Inner,
    resource: Resource,
    namespace: &str,
    name: &str,
    body: &[u8],
    dry_run: bool,
) -> Response {
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
        Some(other) => return invalid_dry_run(&other.to_string()),
    };
    let Some(current) = inner.get(resource, namespace, name).cloned() else {
        return not_found(resource, name);
    };
    for (field, what) in [("uid", "UID"), ("resourceVersion", "ResourceVersion")] {
        let Some(wanted) = options
            .pointer(&format!("/preconditions/{field}"))
            .and_then(Value::as_str)
        else {
            continue;
        };
        let actual = current
            .pointer(&format!("/metadata/{field}"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        if wanted != actual {
            return conflict(
                resource,
                name,
                &format!(
                    "Precondition failed: {what} in precondition: {wanted}, {what} in object meta: {actual}"
                ),
            );
        }
    }
    let mut answer = current.clone();
    if !dry_run {
        inner.objects.remove(&key(resource, namespace, name));
        match resource {
            Resource::Job => {
                inner
                    .job_plans
                    .remove(&(namespace.to_string(), name.to_string()));
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
    if resource == Resource::Pod {
        answer["metadata"]["deletionTimestamp"] = json!(now());
        answer["metadata"]["deletionGracePeriodSeconds"] = json!(30);
        return json_response(StatusCode::OK, &answer);
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
        if let Some(rv) = parsed
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
        {
            if Some(rv) != current.metadata.resource_version.as_deref() {
                return conflict(Resource::Deployment, name, STALE);
            }
        }
        updated = parsed;
    } else if let Err(response) = apply_patch(&mut updated, media_type, body) {
        return response;
    }
    let replicas = match updated.pointer("/spec/replicas") {
        None | Some(Value::Null) => {
            i64::from(current.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0))
        }
        Some(v) => match v.as_i64() {
            Some(n) => n,
            None => return invalid_scale(name, format!("Invalid value: {v}: must be an integer")),
        },
    };
    if replicas < 0 {
        return invalid_scale(
            name,
            format!("Invalid value: {replicas}: must be greater than or equal to 0"),
        );
    }
    if replicas > i64::from(i32::MAX) {
        return invalid_scale(name, format!("Invalid value: {replicas}: too large"));
    }
    let mut candidate = stored.clone();
    candidate["spec"]["replicas"] = json!(replicas);
    let answer = match inner.commit(
        Resource::Deployment,
        namespace,
        name,
        Some(&stored),
        candidate,
        dry_run,
    ) {
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
        format!("the body of the request was in an unknown format - accepted media types include: \
                 application/json-patch+json, application/merge-patch+json, \
                 application/apply-patch+yaml, application/strategic-merge-patch+json (got {media_type:?})"),
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
