//! A local Kubernetes API test server.
//!
//! [`KubeApi::start`] serves a small part of the real API server over plain
//! HTTP on `127.0.0.1:0`, with the real `k8s-openapi` types on the wire:
//!
//! * `GET  /version`
//! * `GET  /apis/apps/v1/namespaces/{ns}/deployments` (list)
//! * `GET  /apis/apps/v1/namespaces/{ns}/deployments/{name}` → `Deployment`
//! * `GET  /apis/apps/v1/namespaces/{ns}/deployments/{name}/scale` → `autoscaling/v1 Scale`
//! * `PATCH .../scale` with `application/merge-patch+json`,
//!   `application/strategic-merge-patch+json`, `application/json-patch+json` or
//!   `application/apply-patch+yaml` (JSON body) → updated `Scale`
//! * `PUT  .../scale` with a whole `Scale` (optimistic concurrency on
//!   `metadata.resourceVersion`, 409 when stale)
//!
//! `?dryRun=All` validates and answers the would-be `Scale` without persisting.
//! Negative replicas answer 422 `Invalid`, unknown deployments 404 `NotFound`,
//! both as `meta/v1 Status` objects like the real server.
//!
//! Failures can be injected with [`KubeApi::fail_next`], and every request is
//! recorded ([`KubeApi::requests`]) for assertions.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStatus};
use k8s_openapi::api::autoscaling::v1::{Scale, ScaleSpec, ScaleStatus};
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, ListMeta, ObjectMeta, Status, StatusCause, StatusDetails,
};
use serde_json::Value;

/// Bearer token written into the kubeconfig by [`write_kubeconfig`].
pub const KUBECONFIG_TOKEN: &str = "warden-test-dummy-token";
/// Name of the context (and cluster and user) in the kubeconfig.
pub const KUBECONFIG_CONTEXT: &str = "warden-test";

/// Which failure [`KubeApi::fail_next`] injects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// 409 `Conflict` (as for a stale resourceVersion).
    Conflict,
    /// 500 `InternalError`.
    Internal,
}

/// One request the server received.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// Raw query string, without `?`.
    pub query: Option<String>,
    pub content_type: Option<String>,
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

    /// Whether the request asked for a server-side dry run (`dryRun=All`).
    pub fn is_dry_run(&self) -> bool {
        self.query_params()
            .iter()
            .any(|(k, v)| k == "dryRun" && v == "All")
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
}

#[derive(Debug)]
struct Injection {
    remaining: usize,
    failure: Failure,
    patch_only: bool,
}

#[derive(Default)]
struct Inner {
    deployments: BTreeMap<(String, String), Deployment>,
    requests: Vec<RecordedRequest>,
    injection: Option<Injection>,
    next_resource_version: u64,
}

impl Inner {
    fn bump_resource_version(&mut self) -> String {
        self.next_resource_version += 1;
        self.next_resource_version.to_string()
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

    /// Adds (or replaces) a deployment `namespace/name` with `replicas` replicas.
    pub fn add_deployment(&self, namespace: &str, name: &str, replicas: i32) {
        let mut inner = self.inner.lock().unwrap();
        let rv = inner.bump_resource_version();
        let labels: BTreeMap<String, String> = [("app".to_string(), name.to_string())].into();
        let deployment = Deployment {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some(namespace.to_string()),
                uid: Some(format!(
                    "00000000-0000-4000-8000-{:012}",
                    inner.deployments.len() + 1
                )),
                resource_version: Some(rv),
                generation: Some(1),
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
            status: Some(DeploymentStatus {
                replicas: Some(replicas),
                ready_replicas: Some(replicas),
                available_replicas: Some(replicas),
                updated_replicas: Some(replicas),
                observed_generation: Some(1),
                ..DeploymentStatus::default()
            }),
        };
        inner
            .deployments
            .insert((namespace.to_string(), name.to_string()), deployment);
    }

    /// A copy of the stored deployment.
    pub fn deployment(&self, namespace: &str, name: &str) -> Option<Deployment> {
        let inner = self.inner.lock().unwrap();
        inner
            .deployments
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }

    /// `spec.replicas` of the stored deployment.
    pub fn replicas(&self, namespace: &str, name: &str) -> Option<i32> {
        self.deployment(namespace, name)
            .and_then(|d| d.spec)
            .and_then(|s| s.replicas)
    }

    /// Makes the next `n` requests (only PATCH/PUT ones when `patch_only`)
    /// fail with `failure`, answered as a `Status` object. Replaces any
    /// earlier injection.
    pub fn fail_next(&self, n: usize, failure: Failure, patch_only: bool) {
        self.inner.lock().unwrap().injection = Some(Injection {
            remaining: n,
            failure,
            patch_only,
        });
    }

    /// All requests received so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.inner.lock().unwrap().requests.clone()
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
    json_response(StatusCode::from_u16(code).unwrap(), &status)
}

fn not_found(name: &str) -> Response {
    status_response(
        404,
        "NotFound",
        format!("deployments.apps \"{name}\" not found"),
        Some(StatusDetails {
            name: Some(name.to_string()),
            group: Some("apps".to_string()),
            kind: Some("deployments".to_string()),
            ..StatusDetails::default()
        }),
    )
}

fn json_response<T: serde::Serialize>(code: StatusCode, value: &T) -> Response {
    let body = serde_json::to_vec(value).expect("serializing a k8s-openapi value");
    (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
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
                *target = Value::Object(Default::default());
            }
            let map = target.as_object_mut().unwrap();
            for (key, value) in fields {
                if value.is_null() {
                    map.remove(key);
                } else {
                    merge_patch(map.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// A small RFC 6902 JSON patch: `add`, `replace`, `remove` and `test` on object paths.
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
                    node = node
                        .get_mut(t.as_str())
                        .ok_or_else(|| format!("path {path} does not exist"))?;
                }
                let map = node
                    .as_object_mut()
                    .ok_or_else(|| format!("path {path} is not inside an object"))?;
                if kind == "remove" {
                    map.remove(last.as_str());
                } else {
                    if kind == "replace" && !map.contains_key(last.as_str()) {
                        return Err(format!("replace on missing path {path}"));
                    }
                    let value = op
                        .get("value")
                        .cloned()
                        .ok_or("operation without \"value\"")?;
                    map.insert(last.clone(), value);
                }
            }
            other => return Err(format!("unsupported JSON patch operation {other:?}")),
        }
    }
    Ok(())
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
    let mut inner = state.lock().unwrap();
    let response = route(&mut inner, &method, &uri, content_type.as_deref(), &body);
    inner.requests.push(RecordedRequest {
        method: method.to_string(),
        path: uri.path().to_string(),
        query: uri.query().map(str::to_string),
        content_type,
        authorization,
        body: String::from_utf8_lossy(&body).into_owned(),
        status: response.status().as_u16(),
    });
    response
}

fn route(
    inner: &mut Inner,
    method: &Method,
    uri: &Uri,
    content_type: Option<&str>,
    body: &[u8],
) -> Response {
    let is_write = *method == Method::PATCH || *method == Method::PUT;
    if let Some(injection) = inner.injection.as_mut() {
        if injection.remaining > 0 && (!injection.patch_only || is_write) {
            injection.remaining -= 1;
            let failure = injection.failure;
            if injection.remaining == 0 {
                inner.injection = None;
            }
            return match failure {
                Failure::Conflict => status_response(
                    409,
                    "Conflict",
                    "Operation cannot be fulfilled on deployments.apps: the object has been modified; \
                     please apply your changes to the latest version and try again"
                        .to_string(),
                    Some(StatusDetails {
                        group: Some("apps".to_string()),
                        kind: Some("deployments".to_string()),
                        ..StatusDetails::default()
                    }),
                ),
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
        Some(other) => {
            return status_response(
                400,
                "BadRequest",
                format!("Invalid dry run value: {other:?}, the only supported value is \"All\""),
                None,
            )
        }
    };

    let segments: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["version"] if *method == Method::GET => json_response(
            StatusCode::OK,
            &serde_json::json!({
                "major": "1", "minor": "33", "gitVersion": "v1.33.0",
                "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
                "buildDate": "2025-04-23T00:00:00Z", "goVersion": "go1.24.2",
                "compiler": "gc", "platform": "linux/amd64"
            }),
        ),
        ["apis", "apps", "v1", "namespaces", ns, "deployments"] if *method == Method::GET => {
            let items: Vec<&Deployment> = inner
                .deployments
                .iter()
                .filter(|((n, _), _)| n == ns)
                .map(|(_, d)| d)
                .collect();
            json_response(
                StatusCode::OK,
                &serde_json::json!({
                    "apiVersion": "apps/v1",
                    "kind": "DeploymentList",
                    "metadata": {"resourceVersion": inner.next_resource_version.to_string()},
                    "items": items,
                }),
            )
        }
        ["apis", "apps", "v1", "namespaces", ns, "deployments", name] if *method == Method::GET => {
            match inner.deployments.get(&(ns.to_string(), name.to_string())) {
                Some(d) => json_response(StatusCode::OK, d),
                None => not_found(name),
            }
        }
        ["apis", "apps", "v1", "namespaces", ns, "deployments", name, "scale"] => {
            let key = (ns.to_string(), name.to_string());
            let Some(deployment) = inner.deployments.get(&key) else {
                return not_found(name);
            };
            let current = scale_of(deployment);
            if *method == Method::GET {
                return json_response(StatusCode::OK, &current);
            }
            if !is_write {
                return status_response(
                    405,
                    "MethodNotAllowed",
                    format!("method {method} is not allowed"),
                    None,
                );
            }
            let media_type = content_type
                .unwrap_or("")
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            let parsed: Value = match serde_json::from_slice(body) {
                Ok(v) => v,
                Err(e) => {
                    return status_response(
                        400,
                        "BadRequest",
                        format!("error decoding body: {e}"),
                        None,
                    )
                }
            };
            let mut updated = serde_json::to_value(&current).unwrap();
            if *method == Method::PUT {
                if media_type != "application/json" {
                    return unsupported_media_type(&media_type);
                }
                if let Some(rv) = parsed
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
                {
                    if Some(rv) != current.metadata.resource_version.as_deref() {
                        return status_response(
                            409,
                            "Conflict",
                            format!(
                                "Operation cannot be fulfilled on deployments.apps \"{name}\": the object has been \
                                 modified; please apply your changes to the latest version and try again"
                            ),
                            None,
                        );
                    }
                }
                updated = parsed;
            } else {
                match media_type.as_str() {
                    "application/merge-patch+json"
                    | "application/strategic-merge-patch+json"
                    | "application/apply-patch+yaml" => merge_patch(&mut updated, &parsed),
                    "application/json-patch+json" => {
                        if let Err(e) = json_patch(&mut updated, &parsed) {
                            return status_response(
                                422,
                                "Invalid",
                                format!("invalid JSON patch: {e}"),
                                None,
                            );
                        }
                    }
                    other => return unsupported_media_type(other),
                }
            }
            let replicas = match updated.pointer("/spec/replicas") {
                None | Some(Value::Null) => {
                    current.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0) as i64
                }
                Some(v) => match v.as_i64() {
                    Some(n) => n,
                    None => {
                        return invalid(
                            name,
                            format!("spec.replicas: Invalid value: {v}: must be an integer"),
                        )
                    }
                },
            };
            if replicas < 0 {
                return invalid(
                    name,
                    format!("spec.replicas: Invalid value: {replicas}: must be greater than or equal to 0"),
                );
            }
            if replicas > i64::from(i32::MAX) {
                return invalid(
                    name,
                    format!("spec.replicas: Invalid value: {replicas}: too large"),
                );
            }
            let replicas = replicas as i32;
            let mut deployment = deployment.clone();
            if !dry_run && Some(replicas) != deployment.spec.as_ref().and_then(|s| s.replicas) {
                let rv = inner.bump_resource_version();
                deployment.metadata.resource_version = Some(rv);
                deployment.metadata.generation =
                    Some(deployment.metadata.generation.unwrap_or(1) + 1);
            }
            if let Some(spec) = deployment.spec.as_mut() {
                spec.replicas = Some(replicas);
            }
            let answer = scale_of(&deployment);
            if !dry_run {
                inner.deployments.insert(key, deployment);
            }
            json_response(StatusCode::OK, &answer)
        }
        _ => status_response(
            404,
            "NotFound",
            "the server could not find the requested resource".to_string(),
            None,
        ),
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

fn invalid(name: &str, message: String) -> Response {
    status_response(
        422,
        "Invalid",
        format!("Scale.autoscaling \"{name}\" is invalid: {message}"),
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
