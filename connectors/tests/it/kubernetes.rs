use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use k8s_openapi::api::autoscaling::v1::{Scale, ScaleSpec, ScaleStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use warden_connectors::kubernetes::{KubeClient, KubeConnect};
use warden_connectors::Error;

use crate::support::{closed_port, serve, TestResult};

#[derive(Debug, Clone)]
struct PatchSeen {
    dry_run: Option<String>,
    content_type: Option<String>,
    body: serde_json::Value,
}

#[derive(Default, Clone)]
struct Cluster {
    replicas: Arc<Mutex<HashMap<(String, String), i32>>>,
    patches: Arc<Mutex<Vec<PatchSeen>>>,
    auth_headers: Arc<Mutex<Vec<Option<String>>>>,
    resource_version: Arc<Mutex<u64>>,
}

fn status(code: u16, reason: &str, message: String) -> Response {
    let body = serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    });
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, Json(body)).into_response()
}

fn scale(ns: &str, name: &str, replicas: i32, rv: u64) -> Scale {
    Scale {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(ns.to_string()),
            resource_version: Some(rv.to_string()),
            ..ObjectMeta::default()
        },
        spec: Some(ScaleSpec { replicas: Some(replicas) }),
        status: Some(ScaleStatus { replicas: 2, selector: Some(format!("app={name}")) }),
    }
}

fn failure_for(ns: &str, name: &str) -> Option<Response> {
    match name {
        "broken" => Some(status(500, "InternalError", "Internal error occurred: etcdserver: request timed out".into())),
        "web" | "conflict" => None,
        _ => Some(status(404, "NotFound", format!("deployments.apps \"{name}\" not found in namespace {ns}"))),
    }
}

async fn get_scale(
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
    State(cluster): State<Cluster>,
) -> Response {
    if let Ok(mut seen) = cluster.auth_headers.lock() {
        seen.push(headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string));
    }
    if let Some(resp) = failure_for(&ns, &name) {
        return resp;
    }
    let replicas = cluster.replicas.lock().ok().and_then(|r| r.get(&(ns.clone(), name.clone())).copied()).unwrap_or(3);
    let rv = cluster.resource_version.lock().map(|v| *v).unwrap_or(0);
    Json(scale(&ns, &name, replicas, rv)).into_response()
}

async fn patch_scale(
    Path((ns, name)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    State(cluster): State<Cluster>,
    body: Bytes,
) -> Response {
    let body: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return status(400, "BadRequest", format!("invalid patch: {e}")),
    };
    let seen = PatchSeen {
        dry_run: query.get("dryRun").cloned(),
        content_type: headers.get("content-type").and_then(|v| v.to_str().ok()).map(str::to_string),
        body: body.clone(),
    };
    if let Ok(mut patches) = cluster.patches.lock() {
        patches.push(seen.clone());
    }
    if let Some(resp) = failure_for(&ns, &name) {
        return resp;
    }
    if name == "conflict" {
        return status(
            409,
            "Conflict",
            "Operation cannot be fulfilled on deployments.apps \"conflict\": the object has been modified".into(),
        );
    }
    let Some(replicas) =
        body.pointer("/spec/replicas").and_then(serde_json::Value::as_i64).and_then(|r| i32::try_from(r).ok())
    else {
        return status(422, "Invalid", "spec.replicas missing".into());
    };
    let mut rv = cluster.resource_version.lock().map(|v| *v).unwrap_or(0);
    if seen.dry_run.is_none() {
        if let Ok(mut map) = cluster.replicas.lock() {
            map.insert((ns.clone(), name.clone()), replicas);
        }
        if let Ok(mut v) = cluster.resource_version.lock() {
            *v += 1;
            rv = *v;
        }
    }
    Json(scale(&ns, &name, replicas, rv)).into_response()
}

async fn start() -> (String, Cluster) {
    let cluster = Cluster::default();
    if let Ok(mut rv) = cluster.resource_version.lock() {
        *rv = 100;
    }
    let router = Router::new()
        .route("/apis/apps/v1/namespaces/{ns}/deployments/{name}/scale", get(get_scale).patch(patch_scale))
        .with_state(cluster.clone());
    let addr = serve(router).await;
    (format!("http://{addr}"), cluster)
}

fn client_for(base: &str) -> Result<KubeClient, Box<dyn std::error::Error + Send + Sync>> {
    let config = kube::Config::new(base.parse()?);
    Ok(KubeClient::from_client(kube::Client::try_from(config)?))
}

#[tokio::test]
async fn get_scale_reads_spec_and_status() -> TestResult {
    let (base, _) = start().await;
    let kube = client_for(&base)?;
    let state = kube.get_deployment_scale("prod", "web").await?;
    assert_eq!(state.namespace, "prod");
    assert_eq!(state.name, "web");
    assert_eq!(state.spec_replicas, 3);
    assert_eq!(state.status_replicas, 2);
    assert_eq!(state.resource_version.as_deref(), Some("100"));
    Ok(())
}

#[tokio::test]
async fn set_replicas_patches_and_is_idempotent() -> TestResult {
    let (base, cluster) = start().await;
    let kube = client_for(&base)?;
    let outcome = kube.set_deployment_replicas("prod", "web", 5, false).await?;
    assert_eq!(outcome.replicas, 5);
    assert!(!outcome.dry_run);
    assert_eq!(outcome.response["spec"]["replicas"], 5);
    assert_eq!(outcome.response["metadata"]["name"], "web");
    assert_eq!(kube.get_deployment_scale("prod", "web").await?.spec_replicas, 5);

    let again = kube.set_deployment_replicas("prod", "web", 5, false).await?;
    assert_eq!(again.replicas, 5);

    let patches = cluster.patches.lock().map_err(|_| "poisoned")?.clone();
    assert_eq!(patches.len(), 2);
    let first = &patches[0];
    assert_eq!(first.dry_run, None);
    assert_eq!(first.content_type.as_deref(), Some("application/merge-patch+json"));
    assert_eq!(first.body, serde_json::json!({"spec": {"replicas": 5}}));
    Ok(())
}

#[tokio::test]
async fn dry_run_sends_dry_run_all_and_persists_nothing() -> TestResult {
    let (base, cluster) = start().await;
    let kube = client_for(&base)?;
    let outcome = kube.set_deployment_replicas("prod", "web", 7, true).await?;
    assert!(outcome.dry_run);
    assert_eq!(outcome.replicas, 7);
    assert_eq!(kube.get_deployment_scale("prod", "web").await?.spec_replicas, 3);
    let patches = cluster.patches.lock().map_err(|_| "poisoned")?.clone();
    assert_eq!(patches[0].dry_run.as_deref(), Some("All"));
    Ok(())
}

#[tokio::test]
async fn api_failures_keep_status_and_message() -> TestResult {
    let (base, _) = start().await;
    let kube = client_for(&base)?;

    let err = kube.get_deployment_scale("prod", "missing").await.expect_err("404");
    assert!(err.is_not_found(), "{err:?}");
    assert!(!err.is_conflict());
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("\"missing\" not found"), "{err}");

    let err = kube.set_deployment_replicas("prod", "conflict", 2, false).await.expect_err("409");
    assert!(err.is_conflict(), "{err:?}");
    assert!(!err.is_retryable());

    let err = kube.get_deployment_scale("prod", "broken").await.expect_err("500");
    match &err {
        Error::Kube { status, reason, message } => {
            assert_eq!(*status, 500);
            assert_eq!(reason, "InternalError");
            assert!(message.contains("etcdserver"), "{message}");
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert!(err.is_retryable());
    Ok(())
}

#[tokio::test]
async fn invalid_arguments_are_rejected_locally() -> TestResult {
    let (base, cluster) = start().await;
    let kube = client_for(&base)?;
    let err = kube.set_deployment_replicas("prod", "web", -1, false).await.expect_err("negative");
    assert!(matches!(err, Error::InvalidInput(_)));
    let err = kube.get_deployment_scale("prod", "a/b").await.expect_err("slash");
    assert!(matches!(err, Error::InvalidInput(_)));
    assert!(cluster.patches.lock().map_err(|_| "poisoned")?.is_empty());
    Ok(())
}

#[tokio::test]
async fn unreachable_api_server_is_retryable() -> TestResult {
    let kube = client_for(&format!("http://127.0.0.1:{}", closed_port()))?;
    let err = kube.get_deployment_scale("prod", "web").await.expect_err("refused");
    assert!(matches!(err, Error::Connect { .. } | Error::Timeout { .. }), "{err:?}");
    assert!(err.is_retryable());
    Ok(())
}

fn kubeconfig_yaml(base: &str, dead: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: {base}
- name: dead
  cluster:
    server: {dead}
contexts:
- name: warden-test
  context:
    cluster: test
    user: tester
    namespace: prod
- name: wrong
  context:
    cluster: dead
    user: tester
current-context: wrong
users:
- name: tester
  user:
    token: kubeconfig-token
"#
    )
}

#[tokio::test]
async fn kubeconfig_with_named_context() -> TestResult {
    let (base, cluster) = start().await;
    let dead = format!("http://127.0.0.1:{}", closed_port());
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("kubeconfig.yaml");
    std::fs::write(&path, kubeconfig_yaml(&base, &dead))?;

    let kube =
        KubeClient::connect(&KubeConnect::Kubeconfig { path: Some(path.clone()), context: Some("warden-test".into()) })
            .await?;
    let state = kube.get_deployment_scale("prod", "web").await?;
    assert_eq!(state.spec_replicas, 3);
    let auth = cluster.auth_headers.lock().map_err(|_| "poisoned")?.clone();
    assert_eq!(auth, vec![Some("Bearer kubeconfig-token".to_string())]);

    let err = KubeClient::connect(&KubeConnect::Kubeconfig {
        path: Some(path.clone()),
        context: Some("no-such-context".into()),
    })
    .await
    .expect_err("unknown context");
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    assert!(err.to_string().contains("no-such-context"), "{err}");
    assert!(!err.to_string().contains("kubeconfig-token"));

    let err =
        KubeClient::connect(&KubeConnect::Kubeconfig { path: Some(dir.path().join("absent.yaml")), context: None })
            .await
            .expect_err("missing file");
    assert!(err.to_string().contains("absent.yaml"), "{err}");
    Ok(())
}
