//! The Kubernetes remediation actions of `warden_connectors::kube_actions`
//! against the Kubernetes API test server, connected through a kubeconfig like
//! the agent does: what each action changes on the server, that a dry run sends
//! `dryRun=All` and persists nothing, that repeating an action changes nothing,
//! and that 404/409/422 answers surface as the right errors. The last tests check
//! the test server's own API semantics (patch flavours, preconditions, Status
//! objects) with raw HTTP.

use anyhow::{ensure, Result};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{json, Value};
use std::time::Duration;

use warden_connectors::kube_actions::{
    deployment_revision, job_phase, replicaset_revision, ActionWaits, JobPhase, POD_TEMPLATE_HASH_LABEL,
    RESTARTED_AT_ANNOTATION,
};
use warden_connectors::kubernetes::{KubeClient, KubeConnect};
use warden_connectors::Error;
use warden_tests::http_client;
use warden_tests::kube_api::{self, Controller, Failure, JobOutcome, KubeApi, Resource};

const NS: &str = "shop";

/// A server and a client connected to it through a kubeconfig file.
struct Fixture {
    server: KubeApi,
    client: KubeClient,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Result<Fixture> {
    let dir = tempfile::tempdir()?;
    let server = KubeApi::start().await?;
    let path = kube_api::write_kubeconfig(dir.path(), &server.url())?;
    let client = KubeClient::connect(&KubeConnect::Kubeconfig {
        path: Some(path),
        context: Some(kube_api::KUBECONFIG_CONTEXT.to_string()),
    })
    .await?;
    Ok(Fixture { server, client, _dir: dir })
}

fn deployment_path(name: &str) -> String {
    Resource::Deployment.path(NS, name)
}

fn revision_annotation(object: &Value) -> Option<&str> {
    object["metadata"]["annotations"]["deployment.kubernetes.io/revision"].as_str()
}

fn image_of(object: &Value) -> Option<&str> {
    object["spec"]["template"]["spec"]["containers"][0]["image"].as_str()
}

fn job(name: &str, restart_policy: Option<&str>) -> Job {
    Job {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some([("warden.io/action".to_string(), "flush-cache".to_string())].into()),
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(1),
            template: PodTemplateSpec {
                metadata: None,
                spec: Some(PodSpec {
                    restart_policy: restart_policy.map(str::to_string),
                    containers: vec![Container {
                        name: "flush".to_string(),
                        image: Some("registry.example.test/tools:1.0.0".to_string()),
                        command: Some(vec!["flush-cache".to_string()]),
                        ..Container::default()
                    }],
                    ..PodSpec::default()
                }),
            },
            ..JobSpec::default()
        }),
        status: None,
    }
}

fn expect_kube_error<T: std::fmt::Debug>(result: Result<T, Error>, code: u16, reason: &str) -> Result<String> {
    match result {
        Err(Error::Kube { status, reason: r, message }) if status == code && r == reason => Ok(message),
        other => anyhow::bail!("expected Kubernetes error {code} {reason}, got {other:?}"),
    }
}

#[tokio::test]
async fn deployment_and_its_replicasets_are_read_by_revision() -> Result<()> {
    let f = fixture().await?;
    f.server.add_deployment(NS, "web", 3);
    assert_eq!(f.server.add_deployment_revision(NS, "web", "registry.example.test/web:2.0.0"), 2);
    assert_eq!(f.server.add_deployment_revision(NS, "web", "registry.example.test/web:3.0.0"), 3);
    f.server.add_deployment(NS, "web-canary", 1);
    // A ReplicaSet that matches the selector but is not owned by the Deployment.
    let orphan = json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "web-orphan", "labels": {"app": "web"},
                     "annotations": {"deployment.kubernetes.io/revision": "9"}},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "x:1"}]}}},
    });
    let response = http_client()
        .post(format!("{}{}", f.server.url(), Resource::ReplicaSet.path(NS, "")))
        .json(&orphan)
        .send()
        .await?;
    assert_eq!(response.status().as_u16(), 201);

    let deployment = f.client.get_deployment(NS, "web").await?;
    assert_eq!(deployment_revision(&deployment), Some(3));
    let uid = deployment.metadata.uid.clone().unwrap_or_default();

    let replica_sets = f.client.list_replicasets_of(NS, "web").await?;
    let revisions: Vec<Option<i64>> = replica_sets.iter().map(replicaset_revision).collect();
    assert_eq!(revisions, vec![Some(1), Some(2), Some(3)]);
    for rs in &replica_sets {
        let owner = &rs.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("Deployment", uid.as_str(), Some(true))
        );
        let labels = rs.metadata.labels.as_ref().unwrap();
        assert!(labels.contains_key(POD_TEMPLATE_HASH_LABEL), "{labels:?}");
    }
    let replicas: Vec<Option<i32>> = replica_sets.iter().map(|rs| rs.spec.as_ref().and_then(|s| s.replicas)).collect();
    assert_eq!(replicas, vec![Some(0), Some(0), Some(3)]);

    // The list went to the server with the Deployment's selector.
    let list = f.server.requests().into_iter().rfind(|r| r.path == Resource::ReplicaSet.path(NS, "")).unwrap();
    assert_eq!(list.query_param("labelSelector").as_deref(), Some("app=web"));

    let missing = f.client.get_deployment(NS, "nope").await.unwrap_err();
    assert!(missing.is_not_found(), "{missing}");
    let missing = f.client.list_replicasets_of(NS, "nope").await.unwrap_err();
    assert!(missing.is_not_found(), "{missing}");
    Ok(())
}

#[tokio::test]
async fn rollback_to_previous_revision_then_forward_to_the_original() -> Result<()> {
    let f = fixture().await?;
    f.server.add_deployment(NS, "web", 2);
    f.server.add_deployment_revision(NS, "web", "registry.example.test/web:2.0.0");
    f.server.add_deployment_revision(NS, "web", "registry.example.test/web:3.0.0");
    let path = deployment_path("web");

    // Dry run: the server answers the would-be Deployment, nothing changes.
    let dry = f.client.rollback_deployment(NS, "web", None, true).await?;
    assert_eq!((dry.from_revision, dry.to_revision, dry.changed, dry.dry_run), (3, 2, true, true));
    assert_eq!(image_of(&dry.response), Some("registry.example.test/web:2.0.0"));
    assert_eq!(f.server.deployment_image(NS, "web").as_deref(), Some("registry.example.test/web:3.0.0"));
    assert_eq!(f.server.deployment_revision(NS, "web"), Some(3));
    let writes = f.server.writes_to(&path);
    assert_eq!(writes.len(), 1, "{}", f.server.request_log());
    assert!(writes[0].is_dry_run());
    assert_eq!(writes[0].content_type.as_deref(), Some("application/merge-patch+json"));

    // Rollback: the template of revision 2, with the read resourceVersion as precondition.
    let rv = f.server.deployment(NS, "web").unwrap().metadata.resource_version.unwrap();
    let back = f.client.rollback_deployment(NS, "web", None, false).await?;
    assert_eq!((back.from_revision, back.to_revision, back.changed, back.dry_run), (3, 2, true, false));
    assert_eq!(f.server.deployment_image(NS, "web").as_deref(), Some("registry.example.test/web:2.0.0"));
    let writes = f.server.writes_to(&path);
    assert_eq!(writes.len(), 2);
    assert!(!writes[1].is_dry_run());
    assert_eq!(writes[1].json().unwrap()["metadata"]["resourceVersion"], json!(rv));
    // The answer is the Deployment as written: the controller has not renumbered yet.
    assert_eq!(revision_annotation(&back.response), Some("3"));
    assert_eq!(back.conflicts_retried, 0);
    // Then it reuses revision 2's ReplicaSet as revision 4; no new ReplicaSet. Without
    // ready pods the rollout stops at the surge: one new pod, the two old ones kept.
    f.server.run_controllers();
    assert_eq!(f.server.deployment_revision(NS, "web"), Some(4));
    assert_eq!(
        f.server.replicaset_revisions(NS, "web"),
        vec![
            (1, "registry.example.test/web:1.0.0".to_string(), 0),
            (3, "registry.example.test/web:3.0.0".to_string(), 2),
            (4, "registry.example.test/web:2.0.0".to_string(), 1),
        ]
    );
    f.server.mark_pods_ready(NS, "web");
    assert_eq!(
        f.server.replicaset_revisions(NS, "web"),
        vec![
            (1, "registry.example.test/web:1.0.0".to_string(), 0),
            (3, "registry.example.test/web:3.0.0".to_string(), 0),
            (4, "registry.example.test/web:2.0.0".to_string(), 2),
        ]
    );
    let labels = f.server.deployment(NS, "web").unwrap().spec.unwrap().template.metadata.unwrap().labels.unwrap();
    assert!(!labels.contains_key(POD_TEMPLATE_HASH_LABEL), "{labels:?}");
    assert_eq!(back.replica_set, dry.replica_set);

    // Retrying with the resolved revision is a no-op, although revision 2 was renumbered.
    let again = f.client.rollback_deployment(NS, "web", Some(back.to_revision), false).await?;
    assert!(!again.changed);
    assert_eq!((again.from_revision, again.to_revision), (4, 2));
    assert_eq!(f.server.writes_to(&path).len(), 2, "{}", f.server.request_log());

    // Roll forward: revision 3 kept its number, so it is the rollback's from_revision.
    let forward = f.client.rollback_deployment(NS, "web", Some(back.from_revision), false).await?;
    assert_eq!((forward.from_revision, forward.to_revision, forward.changed), (4, 3, true));
    assert_eq!(f.server.deployment_image(NS, "web").as_deref(), Some("registry.example.test/web:3.0.0"));
    f.server.run_controllers();
    assert_eq!(f.server.deployment_revision(NS, "web"), Some(5));
    let forward_again = f.client.rollback_deployment(NS, "web", Some(3), false).await?;
    assert!(!forward_again.changed);
    assert_eq!(f.server.writes_to(&path).len(), 3);
    assert_eq!(f.server.replicaset_revisions(NS, "web").len(), 3);
    Ok(())
}

#[tokio::test]
async fn rollback_refuses_unknown_revisions_and_surfaces_conflicts() -> Result<()> {
    let f = fixture().await?;
    f.server.add_deployment(NS, "web", 2);
    let path = deployment_path("web");

    // Only one revision: nothing to roll back to.
    let err = f.client.rollback_deployment(NS, "web", None, false).await.unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err}");
    assert!(err.to_string().contains("no revision older than 1"), "{err}");

    f.server.add_deployment_revision(NS, "web", "registry.example.test/web:2.0.0");
    let err = f.client.rollback_deployment(NS, "web", Some(7), false).await.unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err}");
    assert!(err.to_string().contains("no revision 7 (known revisions: 1, 2)"), "{err}");
    let err = f.client.rollback_deployment(NS, "web", Some(0), false).await.unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err}");
    assert!(f.server.writes_to(&path).is_empty(), "{}", f.server.request_log());

    let err = f.client.rollback_deployment(NS, "nope", None, false).await.unwrap_err();
    assert!(err.is_not_found(), "{err}");

    // Conflicts beyond the retry budget (five retries by default) answer 409 and
    // change nothing: six attempts, each after reading the Deployment again.
    let gets_before = f.server.requests().iter().filter(|r| r.method == "GET" && r.path == path).count();
    f.server.fail_next(6, Failure::Conflict, true);
    let err = f.client.rollback_deployment(NS, "web", None, false).await.unwrap_err();
    assert!(err.is_conflict(), "{err}");
    assert!(!err.is_retryable());
    assert_eq!(f.server.writes_to(&path).len(), 6, "{}", f.server.request_log());
    let gets = f.server.requests().iter().filter(|r| r.method == "GET" && r.path == path).count();
    assert!(gets - gets_before >= 6, "{}", f.server.request_log());
    assert_eq!(f.server.deployment_image(NS, "web").as_deref(), Some("registry.example.test/web:2.0.0"));

    // A paused Deployment is not rolled back.
    let paused = f.client.patch_deployment(NS, "web", &json!({"spec": {"paused": true}}), false).await?;
    assert!(paused.changed);
    let err = f.client.rollback_deployment(NS, "web", None, false).await.unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)) && err.to_string().contains("paused"), "{err}");
    assert_eq!(f.server.deployment_revision(NS, "web"), Some(2));
    Ok(())
}

#[tokio::test]
async fn stale_resource_version_in_a_patch_answers_conflict() -> Result<()> {
    let f = fixture().await?;
    f.server.add_deployment(NS, "web", 2);
    let stale = f.server.deployment(NS, "web").unwrap().metadata.resource_version.unwrap();
    f.server.add_deployment_revision(NS, "web", "registry.example.test/web:2.0.0");
    let response = http_client()
        .patch(format!("{}{}", f.server.url(), deployment_path("web")))
        .header("content-type", "application/merge-patch+json")
        .body(
            json!({"metadata": {"resourceVersion": stale},
                     "spec": {"template": {"spec": {"containers": [{"name": "web", "image": "x:9"}]}}}})
            .to_string(),
        )
        .send()
        .await?;
    assert_eq!(response.status().as_u16(), 409);
    let status: Value = response.json().await?;
    assert_eq!(status["reason"], "Conflict");
    assert_eq!(status["details"], json!({"name": "web", "group": "apps", "kind": "deployments"}));
    assert!(status["message"].as_str().unwrap().contains("the object has been modified"));
    assert_eq!(f.server.deployment_image(NS, "web").as_deref(), Some("registry.example.test/web:2.0.0"));
    Ok(())
}

#[tokio::test]
async fn restart_sets_the_restarted_at_annotation_once() -> Result<()> {
    let f = fixture().await?;
    f.server.add_deployment(NS, "web", 2);
    let path = deployment_path("web");
    let at = "2025-06-01T10:00:00Z";

    let dry = f.client.restart_deployment(NS, "web", at, true).await?;
    assert!(dry.changed && dry.dry_run);
    assert_eq!(dry.response["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT_ANNOTATION], at);
    assert_eq!(f.server.pod_template_annotation(NS, "web", RESTARTED_AT_ANNOTATION), None);
    assert_eq!(f.server.deployment_revision(NS, "web"), Some(1));
    let writes = f.server.writes_to(&path);
    assert_eq!(writes.len(), 1);
    assert!(writes[0].is_dry_run());
    assert_eq!(writes[0].content_type.as_deref(), Some("application/strategic-merge-patch+json"));

    let done = f.client.restart_deployment(NS, "web", at, false).await?;
    assert!(done.changed && !done.dry_run);
    assert_eq!(f.server.pod_template_annotation(NS, "web", RESTARTED_AT_ANNOTATION).as_deref(), Some(at));
    // A new template: the answer still shows revision 1, then the controller rolls out
    // revision 2.
    assert_eq!(revision_annotation(&done.response), Some("1"));
    f.server.run_controllers();
    assert_eq!(f.server.deployment_revision(NS, "web"), Some(2));

    let again = f.client.restart_deployment(NS, "web", at, false).await?;
    assert!(!again.changed);
    assert_eq!(f.server.writes_to(&path).len(), 2, "{}", f.server.request_log());
    assert_eq!(f.server.deployment_revision(NS, "web"), Some(2));

    let later = f.client.restart_deployment(NS, "web", "2025-06-02T10:00:00Z", false).await?;
    assert!(later.changed);
    f.server.run_controllers();
    assert_eq!(f.server.deployment_revision(NS, "web"), Some(3));

    let err = f.client.restart_deployment(NS, "web", " ", false).await.unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err}");
    let err = f.client.restart_deployment(NS, "nope", at, false).await.unwrap_err();
    assert!(err.is_not_found(), "{err}");

    // Injected server errors surface as retryable errors and change nothing.
    f.server.fail_next(1, Failure::Internal, true);
    let err = f.client.restart_deployment(NS, "web", "2025-06-03T10:00:00Z", false).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(matches!(err, Error::Kube { status: 500, .. }), "{err}");
    f.server.run_controllers();
    assert_eq!(f.server.deployment_revision(NS, "web"), Some(3));
    Ok(())
}

#[tokio::test]
async fn patch_deployment_merges_containers_by_name() -> Result<()> {
    let f = fixture().await?;
    f.server.add_deployment(NS, "web", 2);
    let path = deployment_path("web");
    let patch = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "web", "resources": {"limits": {"memory": "512Mi"}}}
    ]}}}});

    let dry = f.client.patch_deployment(NS, "web", &patch, true).await?;
    assert!(dry.changed && dry.dry_run);
    assert_eq!(dry.response["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"], "512Mi");
    let stored = f.server.object(Resource::Deployment, NS, "web").unwrap();
    assert_eq!(stored["spec"]["template"]["spec"]["containers"][0].get("resources"), None);
    assert!(f.server.writes_to(&path)[0].is_dry_run());

    let done = f.client.patch_deployment(NS, "web", &patch, false).await?;
    assert!(done.changed);
    let stored = f.server.object(Resource::Deployment, NS, "web").unwrap();
    let containers = stored["spec"]["template"]["spec"]["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    assert_eq!(containers[0]["image"], "registry.example.test/web:1.0.0");
    assert_eq!(containers[0]["resources"]["limits"]["memory"], "512Mi");

    let again = f.client.patch_deployment(NS, "web", &patch, false).await?;
    assert!(!again.changed);
    assert_eq!(again.response["metadata"]["resourceVersion"], stored["metadata"]["resourceVersion"]);

    // A patch the server's validation rejects: 422 Invalid, nothing stored.
    let bad = json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": ""}]}}}});
    let message = expect_kube_error(f.client.patch_deployment(NS, "web", &bad, false).await, 422, "Invalid")?;
    assert!(message.contains("spec.template.spec.containers[0].image: Required value"), "{message}");
    let bad = json!({"spec": {"template": {"metadata": {"labels": {"app": "other"}}}}});
    let message = expect_kube_error(f.client.patch_deployment(NS, "web", &bad, true).await, 422, "Invalid")?;
    assert!(message.contains("`selector` does not match template `labels`"), "{message}");
    assert_eq!(f.server.deployment_image(NS, "web").as_deref(), Some("registry.example.test/web:1.0.0"));

    let writes_before = f.server.writes_to(&path).len();
    let err = f.client.patch_deployment(NS, "web", &json!(["not", "an", "object"]), false).await.unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err}");
    assert_eq!(f.server.writes_to(&path).len(), writes_before);
    Ok(())
}

#[tokio::test]
async fn pods_are_listed_and_deleted_with_a_uid_precondition() -> Result<()> {
    let f = fixture().await?;
    // A kubelet that stops deleted pods quickly (see the next test for one that does not).
    f.server.set_kubelet(Some(Duration::from_millis(50)));
    let uid1 = f.server.add_pod(NS, "web-1", &[("app", "web")], Some("node-a"));
    f.server.add_pod(NS, "web-2", &[("app", "web")], Some("node-b"));
    f.server.add_pod(NS, "db-1", &[("app", "db")], Some("node-a"));
    f.server.add_pod("other", "web-9", &[("app", "web")], None);

    let names = |pods: Vec<k8s_openapi::api::core::v1::Pod>| -> Vec<String> {
        pods.into_iter().filter_map(|p| p.metadata.name).collect()
    };
    assert_eq!(names(f.client.list_pods(NS, Some("app=web")).await?), ["web-1", "web-2"]);
    assert_eq!(names(f.client.list_pods(NS, None).await?), ["db-1", "web-1", "web-2"]);
    assert_eq!(names(f.client.list_pods(NS, Some("app in (db, cache)")).await?), ["db-1"]);
    assert_eq!(names(f.client.list_pods(NS, Some("app!=web")).await?), ["db-1"]);
    let err = f.client.list_pods(NS, Some("app in (web")).await.unwrap_err();
    assert!(matches!(err, Error::Kube { status: 400, .. }), "{err}");

    let pod = f.client.get_pod(NS, "web-1").await?;
    assert_eq!(pod.metadata.uid.as_deref(), Some(uid1.as_str()));
    assert_eq!(pod.spec.unwrap().node_name.as_deref(), Some("node-a"));
    assert!(f.client.get_pod(NS, "web-7").await.unwrap_err().is_not_found());

    // Dry run: DeleteOptions carry dryRun and the precondition; the pod stays.
    let dry = f.client.delete_pod(NS, "web-1", Some(&uid1), true).await?;
    assert!(!dry.already_gone && dry.dry_run);
    assert_eq!(dry.response["kind"], "Pod");
    assert!(f.server.pod_exists(NS, "web-1"));
    let writes = f.server.writes_to(&Resource::Pod.path(NS, "web-1"));
    assert_eq!(writes.len(), 1);
    assert_eq!(writes[0].method, "DELETE");
    assert!(writes[0].is_dry_run());
    assert_eq!(writes[0].json().unwrap()["preconditions"]["uid"], json!(uid1));

    let deleted = f.client.delete_pod(NS, "web-1", Some(&uid1), false).await?;
    assert!(!deleted.already_gone && !deleted.dry_run);
    assert_eq!(deleted.terminating, None, "the pod went: not terminating");
    assert_eq!(deleted.response["metadata"]["uid"], json!(uid1));
    assert!(deleted.response["metadata"]["deletionTimestamp"].is_string());
    assert!(!f.server.pod_exists(NS, "web-1"));

    // Idempotent: a second deletion finds it gone.
    let again = f.client.delete_pod(NS, "web-1", Some(&uid1), false).await?;
    assert!(again.already_gone);
    assert_eq!(again.response["code"], 404);

    // The controller replaced web-2 under the same name: the old UID must not delete it.
    let old = f.client.get_pod(NS, "web-2").await?.metadata.uid.unwrap();
    let new = f.server.add_pod(NS, "web-2", &[("app", "web")], Some("node-c"));
    assert_ne!(old, new);
    let err = f.client.delete_pod(NS, "web-2", Some(&old), false).await.unwrap_err();
    assert!(err.is_conflict(), "{err}");
    assert!(err.to_string().contains("Precondition failed: UID in precondition"), "{err}");
    assert!(f.server.pod_exists(NS, "web-2"));
    // Without a precondition it is deleted.
    f.client.delete_pod(NS, "web-2", None, false).await?;
    assert!(!f.server.pod_exists(NS, "web-2"));

    // Injected conflicts surface as conflicts.
    f.server.fail_next(1, Failure::Conflict, true);
    let err = f.client.delete_pod(NS, "db-1", None, false).await.unwrap_err();
    assert!(err.is_conflict(), "{err}");
    assert!(f.server.pod_exists(NS, "db-1"));
    let err = f.client.delete_pod(NS, "db-1", Some(""), false).await.unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err}");
    Ok(())
}

/// A client whose waits for the cluster are short, for tests that reach them.
fn impatient(client: &KubeClient) -> KubeClient {
    client.clone().with_action_waits(ActionWaits {
        pod_gone: Duration::from_secs(1),
        controller: Duration::from_millis(500),
        ..ActionWaits::default()
    })
}

// Finding: `delete_pod` reported "deleted" while a pod bound to a node was still
// Terminating on the real server.
#[tokio::test]
async fn delete_pod_reports_a_bound_pod_that_stays_terminating() -> Result<()> {
    let f = fixture().await?;
    let client = impatient(&f.client);
    let uid = f.server.add_pod(NS, "web-1", &[("app", "web")], Some("node-a"));

    // No kubelet confirms: the pod stays, with its deletion timestamp and grace period.
    let out = client.delete_pod(NS, "web-1", Some(&uid), false).await?;
    assert!(!out.already_gone);
    let terminating = out.terminating.clone().expect("reported as terminating");
    assert_eq!(terminating.grace_period_seconds, Some(30));
    assert!(terminating.deletion_timestamp.is_some(), "{terminating:?}");
    assert!(f.server.pod_terminating(NS, "web-1"));
    // It was read again while waiting, with the uid it had.
    let reads =
        f.server.requests().iter().filter(|r| r.method == "GET" && r.path == Resource::Pod.path(NS, "web-1")).count();
    assert!(reads >= 2, "{}", f.server.request_log());

    // Deleting it again (a resumed step) is accepted and still reports it terminating.
    let again = client.delete_pod(NS, "web-1", Some(&uid), false).await?;
    assert_eq!(again.terminating, out.terminating);

    // Once the node confirms, a repeat finds it gone.
    assert!(f.server.finish_pod_termination(NS, "web-1"));
    let gone = client.delete_pod(NS, "web-1", Some(&uid), false).await?;
    assert!(gone.already_gone && gone.terminating.is_none());

    // A replacement with the same name and another uid counts as gone for the old one.
    let old = f.server.add_pod(NS, "web-2", &[("app", "web")], Some("node-a"));
    let deleting = tokio::spawn({
        let client = client.clone();
        let old = old.clone();
        async move { client.delete_pod(NS, "web-2", Some(&old), false).await }
    });
    // While it waits, the kubelet finishes and the controller makes a new pod web-2.
    for _ in 0..500 {
        if f.server.pod_terminating(NS, "web-2") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(f.server.finish_pod_termination(NS, "web-2"));
    let new = f.server.add_pod(NS, "web-2", &[("app", "web")], Some("node-b"));
    assert_ne!(old, new);
    let out = deleting.await??;
    assert_eq!(out.terminating, None);
    assert!(f.server.pod_exists(NS, "web-2"), "the replacement was not touched");

    // An unbound pod, and a kubelet that stops pods in time, leave nothing terminating.
    f.server.add_pod(NS, "pending", &[], None);
    let out = client.delete_pod(NS, "pending", None, false).await?;
    assert_eq!(out.terminating, None);
    assert!(!f.server.pod_exists(NS, "pending"));
    f.server.set_kubelet(Some(Duration::from_millis(100)));
    f.server.add_pod(NS, "web-3", &[], Some("node-a"));
    let out = client.delete_pod(NS, "web-3", None, false).await?;
    assert_eq!(out.terminating, None);
    assert!(!f.server.pod_exists(NS, "web-3"));
    Ok(())
}

// Finding: one resourceVersion-bound attempt, so a concurrent writer's 409 failed the run.
#[tokio::test]
async fn rollback_retries_after_a_concurrent_writers_conflict() -> Result<()> {
    let f = fixture().await?;
    f.server.add_deployment(NS, "web", 2);
    f.server.add_deployment_revision(NS, "web", "registry.example.test/web:2.0.0");
    let path = deployment_path("web");
    // Another client changes an annotation right after each of the next two GETs of
    // the Deployment: the rollback's resourceVersion-bound patch conflicts twice.
    f.server.write_after_get(Resource::Deployment, NS, "web", 2, |d| {
        let n = d["metadata"]["annotations"]["team.example/touched"]
            .as_str()
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0);
        d["metadata"]["annotations"]["team.example/touched"] = json!((n + 1).to_string());
    });
    let out = f.client.rollback_deployment(NS, "web", None, false).await?;
    assert_eq!(f.server.writes_after_get(), 2);
    assert_eq!(out.conflicts_retried, 2, "{}", f.server.request_log());
    assert_eq!((out.from_revision, out.to_revision, out.changed), (2, 1, true));
    let patches: Vec<u16> = f.server.writes_to(&path).iter().map(|r| r.status).collect();
    assert_eq!(patches, vec![409, 409, 200], "{}", f.server.request_log());
    // The other writer's change is kept, and the template is revision 1's.
    let stored = f.server.object(Resource::Deployment, NS, "web").unwrap();
    assert_eq!(stored["metadata"]["annotations"]["team.example/touched"], "2");
    assert_eq!(f.server.deployment_image(NS, "web").as_deref(), Some("registry.example.test/web:1.0.0"));

    // A writer that rolls the template to a third image in between is not overwritten.
    f.server.run_controllers();
    f.server.mark_pods_ready(NS, "web");
    f.server.write_after_get(Resource::Deployment, NS, "web", 1, |d| {
        d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("registry.example.test/web:9.0.0");
    });
    let err = f.client.rollback_deployment(NS, "web", Some(2), false).await.unwrap_err();
    assert!(
        matches!(err, Error::Precondition { .. })
            && err.to_string().contains("another writer changed the pod template"),
        "{err}"
    );
    assert!(!err.is_retryable() && !err.is_conflict());
    assert_eq!(f.server.deployment_image(NS, "web").as_deref(), Some("registry.example.test/web:9.0.0"));

    // A writer that rolled back to the same target meanwhile: nothing left to send.
    f.server.run_controllers();
    f.server.mark_pods_ready(NS, "web");
    let target_image = "registry.example.test/web:2.0.0";
    f.server.write_after_get(Resource::Deployment, NS, "web", 1, move |d| {
        d["spec"]["template"]["spec"]["containers"][0]["image"] = json!(target_image);
    });
    let writes = f.server.writes_to(&path).len();
    let out = f.client.rollback_deployment(NS, "web", Some(2), false).await?;
    assert!(!out.changed && out.conflicts_retried == 1, "{out:?}");
    assert_eq!(f.server.writes_to(&path).len(), writes + 1);
    assert_eq!(f.server.deployment_image(NS, "web").as_deref(), Some(target_image));
    Ok(())
}

// Finding: the revision annotation lags the ReplicaSet renumbering, and a rollback
// planned from it found "no revision before 2".
#[tokio::test]
async fn rollback_resolves_revisions_from_replicasets_while_the_annotation_lags() -> Result<()> {
    let f = fixture().await?;
    let client = impatient(&f.client);
    f.server.add_deployment(NS, "web", 2);
    f.server.add_deployment_revision(NS, "web", "registry.example.test/web:2.0.0");
    // The deployment controller renumbers ReplicaSets but has not yet written the
    // Deployment (its revision annotation and observedGeneration).
    f.server.hold(Controller::DeploymentStatus);
    let back = client.rollback_deployment(NS, "web", None, false).await?;
    assert_eq!((back.from_revision, back.to_revision), (2, 1));
    f.server.run_controllers();
    assert_eq!(f.server.deployment_revision(NS, "web"), Some(2), "annotation lags");
    let revisions: Vec<i64> = f.server.replicaset_revisions(NS, "web").iter().map(|r| r.0).collect();
    assert_eq!(revisions, vec![2, 3], "revision 1 was renumbered to 3");

    // Planned now: from revision 3 (the template's ReplicaSet), back to 2. The
    // annotation (2) would have found no revision before 2.
    let plan = client.plan_rollback(NS, "web", None).await?;
    assert_eq!((plan.from_revision, plan.to_revision, plan.unchanged), (3, 2, false));
    assert_eq!(client.current_revision(NS, "web").await?, Some(3));
    // Revision 1 is still found under its old number, and is in place.
    let plan = client.plan_rollback(NS, "web", Some(1)).await?;
    assert!(plan.unchanged, "{plan:?}");
    let forward = client.rollback_deployment(NS, "web", Some(2), false).await?;
    assert_eq!((forward.from_revision, forward.to_revision, forward.changed), (3, 2, true));
    f.server.run_controllers();

    // While the controller has not created the ReplicaSet of a new template, a plan
    // waits for it and then gives up with a retryable error, changing nothing.
    f.server.hold(Controller::DeploymentReplicaSets);
    f.client
        .patch_deployment(
            NS,
            "web",
            &json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "registry.example.test/web:4.0.0"}]}}}}),
            false,
        )
        .await?;
    let err = client.plan_rollback(NS, "web", None).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(err.to_string().contains("has not yet recorded a revision"), "{err}");
    // Released meanwhile, the controller catches up and the same call goes through.
    f.server.release(Controller::DeploymentReplicaSets);
    f.server.release(Controller::DeploymentStatus);
    let plan = client.plan_rollback(NS, "web", None).await?;
    assert_eq!((plan.from_revision, plan.to_revision), (5, 4), "{plan:?}");
    Ok(())
}

// Finding: `create_job` adopted any existing Job of the name.
#[tokio::test]
async fn a_job_of_the_same_name_is_adopted_only_with_the_same_owner_labels() -> Result<()> {
    let f = fixture().await?;
    f.server.set_job_outcome(JobOutcome::StayActive, 0);
    let owned = |run: &str, installation: &str| {
        let mut j = job("retrain-abcd1234-16-1", Some("Never"));
        j.metadata.labels = Some(
            [
                ("app.kubernetes.io/managed-by", "warden"),
                ("warden.io/run", run),
                ("warden.io/step", "run-16-step-1"),
                ("warden.io/installation", installation),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        );
        j
    };
    // A Job made by hand under that name, without Warden's labels: refused, left alone.
    let mut by_hand = job("retrain-abcd1234-16-1", Some("Never"));
    by_hand.metadata.labels = Some([("team".to_string(), "ml".to_string())].into());
    let foreign = f.client.create_job(NS, &by_hand, false).await?;
    assert!(foreign.created);
    let mine = owned("16", "abcd1234ffff");
    for dry_run in [true, false] {
        let err = f.client.create_job(NS, &mine, dry_run).await.unwrap_err();
        assert!(matches!(err, Error::Precondition { .. }), "{err}");
        assert!(!err.is_retryable() && !err.is_conflict());
        let text = err.to_string();
        assert!(text.contains("not adopted") && text.contains("warden.io/run is missing"), "{text}");
    }
    let stored = f.server.job(NS, "retrain-abcd1234-16-1").unwrap();
    assert_eq!(stored.metadata.labels, by_hand.metadata.labels, "the foreign Job was changed");

    // Another store's run 16 (another installation id): refused, naming the label.
    let mut other = owned("16", "0000ffff0000");
    other.metadata.name = Some("retrain-abcd1234-16-2".into());
    f.client.create_job(NS, &other, false).await?;
    let mut mine2 = owned("16", "abcd1234ffff");
    mine2.metadata.name = Some("retrain-abcd1234-16-2".into());
    let err = f.client.create_job(NS, &mine2, false).await.unwrap_err();
    assert!(err.to_string().contains("warden.io/installation is \"0000ffff0000\""), "{err}");

    // Its own Job, with every label (and more added by someone else): adopted.
    let mut mine3 = owned("16", "abcd1234ffff");
    mine3.metadata.name = Some("retrain-abcd1234-16-3".into());
    let first = f.client.create_job(NS, &mine3, false).await?;
    assert!(first.created);
    f.server.edit_object(Resource::Job, NS, "retrain-abcd1234-16-3", |j| {
        j["metadata"]["labels"]["policy.example/checked"] = json!("yes");
    });
    let again = f.client.create_job(NS, &mine3, false).await?;
    assert!(!again.created);
    assert_eq!(again.job.metadata.uid, first.job.metadata.uid);

    // A Job without labels cannot be created idempotently at all.
    let mut bare = job("retrain-x", Some("Never"));
    bare.metadata.labels = None;
    let err = f.client.create_job(NS, &bare, false).await.unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err}");
    Ok(())
}

#[tokio::test]
async fn nodes_are_cordoned_and_uncordoned_idempotently() -> Result<()> {
    let f = fixture().await?;
    f.server.add_node("node-a");
    let path = Resource::Node.path("", "node-a");

    let node = f.client.get_node("node-a").await?;
    assert_eq!(node.metadata.name.as_deref(), Some("node-a"));
    assert_eq!(f.server.node_unschedulable("node-a"), Some(false));

    let dry = f.client.set_node_unschedulable("node-a", true, true).await?;
    assert!(dry.changed && dry.dry_run);
    assert_eq!(dry.response["spec"]["unschedulable"], true);
    assert_eq!(f.server.node_unschedulable("node-a"), Some(false));
    let writes = f.server.writes_to(&path);
    assert_eq!(writes.len(), 1);
    assert!(writes[0].is_dry_run());
    assert_eq!(writes[0].json(), Some(json!({"spec": {"unschedulable": true}})));

    let cordon = f.client.set_node_unschedulable("node-a", true, false).await?;
    assert!(cordon.changed);
    assert_eq!(f.server.node_unschedulable("node-a"), Some(true));
    let again = f.client.set_node_unschedulable("node-a", true, false).await?;
    assert!(!again.changed);
    assert_eq!(f.server.writes_to(&path).len(), 2);

    let uncordon = f.client.set_node_unschedulable("node-a", false, false).await?;
    assert!(uncordon.changed);
    assert_eq!(f.server.node_unschedulable("node-a"), Some(false));
    let again = f.client.set_node_unschedulable("node-a", false, false).await?;
    assert!(!again.changed);
    assert_eq!(f.server.writes_to(&path).len(), 3);

    assert!(f.client.get_node("node-z").await.unwrap_err().is_not_found());
    assert!(f.client.set_node_unschedulable("node-z", true, false).await.unwrap_err().is_not_found());
    let err = f.client.get_node("a/b").await.unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err}");
    Ok(())
}

#[tokio::test]
async fn job_is_created_once_then_runs_and_succeeds() -> Result<()> {
    let f = fixture().await?;
    let name = "warden-flush-7f3a";
    let collection = Resource::Job.path(NS, "");
    // The reads made by the creation calls below must not finish the Job yet.
    f.server.set_job_outcome(JobOutcome::StayActive, 0);

    let dry = f.client.create_job(NS, &job(name, Some("Never")), true).await?;
    assert!(dry.created && dry.dry_run);
    assert_eq!(dry.response["metadata"]["name"], name);
    assert!(f.server.jobs(NS).is_empty());
    let writes = f.server.writes_to(&collection);
    assert_eq!(writes.len(), 1);
    assert!(writes[0].is_dry_run());
    assert_eq!(writes[0].method, "POST");

    let created = f.client.create_job(NS, &job(name, Some("Never")), false).await?;
    assert!(created.created && !created.dry_run);
    let uid = created.job.metadata.uid.clone().unwrap();
    assert_eq!(job_phase(&created.job), JobPhase::Running);
    // The answer has no status yet: the job controller writes it a little later.
    assert_eq!(created.job.status.as_ref().and_then(|s| s.active), None);
    f.server.run_controllers();
    let started = f.server.job(NS, name).unwrap().status.unwrap();
    assert_eq!((started.active, started.start_time.is_some()), (Some(1), true));
    assert_eq!(f.server.jobs(NS).len(), 1);

    // The same idempotency key again: the existing Job, not a second one.
    let again = f.client.create_job(NS, &job(name, Some("Never")), false).await?;
    assert!(!again.created);
    assert_eq!(again.job.metadata.uid.as_deref(), Some(uid.as_str()));
    assert_eq!(f.server.jobs(NS).len(), 1);
    // A dry run of an existing name also answers with the existing Job.
    let dry_again = f.client.create_job(NS, &job(name, Some("Never")), true).await?;
    assert!(!dry_again.created && dry_again.dry_run);

    // Active for two more reads; at the third the pod ends, and the job controller
    // records it after that read.
    f.server.set_job_outcome(JobOutcome::Succeed, 2);
    for _ in 0..3 {
        assert_eq!(job_phase(&f.client.get_job(NS, name).await?), JobPhase::Running);
    }
    f.server.run_controllers();
    let done = f.client.get_job(NS, name).await?;
    assert_eq!(job_phase(&done), JobPhase::Succeeded);
    let status = done.status.unwrap();
    assert_eq!(status.succeeded, Some(1));
    assert!(status.completion_time.is_some());
    assert_eq!(job_phase(&f.client.get_job(NS, name).await?), JobPhase::Succeeded);

    assert!(f.client.get_job(NS, "warden-none").await.unwrap_err().is_not_found());
    Ok(())
}

#[tokio::test]
async fn job_fails_with_the_reason_of_its_failed_condition() -> Result<()> {
    let f = fixture().await?;
    f.server.set_job_outcome(JobOutcome::Succeed, 0);
    f.server.set_job_outcome_for(
        "warden-migrate-",
        JobOutcome::Fail {
            reason: "DeadlineExceeded".to_string(),
            message: "Job was active longer than specified deadline".to_string(),
        },
        1,
    );
    f.client.create_job(NS, &job("warden-migrate-1", Some("OnFailure")), false).await?;
    f.client.create_job(NS, &job("warden-flush-1", Some("Never")), false).await?;

    assert_eq!(job_phase(&f.client.get_job(NS, "warden-flush-1").await?), JobPhase::Running);
    for _ in 0..2 {
        assert_eq!(job_phase(&f.client.get_job(NS, "warden-migrate-1").await?), JobPhase::Running);
    }
    f.server.run_controllers();
    assert_eq!(job_phase(&f.client.get_job(NS, "warden-flush-1").await?), JobPhase::Succeeded);
    let failed = f.client.get_job(NS, "warden-migrate-1").await?;
    assert_eq!(
        job_phase(&failed),
        JobPhase::Failed {
            reason: "DeadlineExceeded".to_string(),
            message: "Job was active longer than specified deadline".to_string(),
        }
    );
    assert_eq!(failed.status.unwrap().failed, Some(2));

    f.server.set_job_outcome(JobOutcome::fail(), 0);
    f.client.create_job(NS, &job("warden-flush-2", Some("Never")), false).await?;
    f.client.get_job(NS, "warden-flush-2").await?;
    f.server.run_controllers();
    let phase = job_phase(&f.client.get_job(NS, "warden-flush-2").await?);
    assert!(matches!(&phase, JobPhase::Failed { reason, .. } if reason == "BackoffLimitExceeded"), "{phase:?}");
    Ok(())
}

#[tokio::test]
async fn invalid_jobs_are_rejected() -> Result<()> {
    let f = fixture().await?;
    // The server validates: a Job's pods must not restart Always (or unset).
    for dry_run in [true, false] {
        let message =
            expect_kube_error(f.client.create_job(NS, &job("warden-bad", None), dry_run).await, 422, "Invalid")?;
        assert!(message.contains("spec.template.spec.restartPolicy: Required value"), "{message}");
    }
    let message =
        expect_kube_error(f.client.create_job(NS, &job("warden-bad", Some("Always")), false).await, 422, "Invalid")?;
    assert!(message.contains("Unsupported value: \"Always\""), "{message}");
    assert!(f.server.jobs(NS).is_empty());

    // Checked before any request: a name is required, and the namespace must agree.
    let requests = f.server.requests().len();
    let mut unnamed = job("x", Some("Never"));
    unnamed.metadata.name = None;
    unnamed.metadata.generate_name = Some("warden-".to_string());
    let err = f.client.create_job(NS, &unnamed, false).await.unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err}");
    let mut elsewhere = job("warden-ok", Some("Never"));
    elsewhere.metadata.namespace = Some("kube-system".to_string());
    let err = f.client.create_job(NS, &elsewhere, false).await.unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err}");
    assert_eq!(f.server.requests().len(), requests);

    // Other conflicts than AlreadyExists stay errors.
    f.server.fail_next(1, Failure::Conflict, true);
    let err = f.client.create_job(NS, &job("warden-ok", Some("Never")), false).await.unwrap_err();
    assert!(err.is_conflict(), "{err}");
    assert!(f.server.jobs(NS).is_empty());

    // A body that does not decode as a Job: 400 BadRequest Status.
    let response = http_client()
        .post(format!("{}{}", f.server.url(), Resource::Job.path(NS, "")))
        .json(&json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"}, "spec": "nope"}))
        .send()
        .await?;
    assert_eq!(response.status().as_u16(), 400);
    let status: Value = response.json().await?;
    assert_eq!(
        (status["kind"].as_str(), status["reason"].as_str(), status["code"].as_i64()),
        (Some("Status"), Some("BadRequest"), Some(400))
    );
    assert!(f.server.jobs(NS).is_empty());
    Ok(())
}

#[tokio::test]
async fn server_answers_status_objects_for_errors() -> Result<()> {
    let f = fixture().await?;
    f.server.add_deployment(NS, "web", 1);
    f.server.add_pod(NS, "web-1", &[("app", "web")], None);
    let client = http_client();
    let url = |path: &str| format!("{}{path}", f.server.url());

    let response = client.get(url(&Resource::Pod.path(NS, "gone"))).send().await?;
    assert_eq!(response.status().as_u16(), 404);
    let body: Value = response.json().await?;
    assert_eq!(
        body,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": "pods \"gone\" not found", "reason": "NotFound",
               "details": {"name": "gone", "kind": "pods"}, "code": 404})
    );

    // AlreadyExists on create, with details.
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-1"},
                     "spec": {"containers": [{"name": "c", "image": "i:1"}]}});
    let response = client.post(url(&Resource::Pod.path(NS, ""))).json(&pod).send().await?;
    assert_eq!(response.status().as_u16(), 409);
    let body: Value = response.json().await?;
    assert_eq!(body["reason"], "AlreadyExists");
    assert_eq!(body["message"], "pods \"web-1\" already exists");
    assert_eq!(body["details"], json!({"name": "web-1", "kind": "pods"}));

    // A dryRun value other than All: 422 Invalid on the PatchOptions (as the real server
    // answers), nothing changes.
    let response = client
        .patch(format!("{}?dryRun=true", url(&deployment_path("web"))))
        .header("content-type", "application/merge-patch+json")
        .body(r#"{"spec":{"replicas":5}}"#)
        .send()
        .await?;
    assert_eq!(response.status().as_u16(), 422);
    let body: Value = response.json().await?;
    assert_eq!(body["reason"], "Invalid");
    assert_eq!(body["details"]["kind"], "PatchOptions");
    assert_eq!(body["details"]["causes"][0]["field"], "dryRun");
    assert!(body["message"].as_str().is_some_and(|m| m.contains("Unsupported value: []string{\"true\"}")), "{body}");
    assert_eq!(f.server.replicas(NS, "web"), Some(1));

    // Invalid results of a patch: 422 with causes.
    let response = client
        .patch(url(&deployment_path("web")))
        .header("content-type", "application/merge-patch+json")
        .body(r#"{"spec":{"replicas":-2}}"#)
        .send()
        .await?;
    assert_eq!(response.status().as_u16(), 422);
    let body: Value = response.json().await?;
    assert_eq!(body["reason"], "Invalid");
    assert_eq!(body["details"]["causes"][0]["field"], "spec.replicas");

    // Unsupported method on a collection.
    let response = client.delete(url(&Resource::Pod.path(NS, ""))).send().await?;
    assert_eq!(response.status().as_u16(), 405);
    let body: Value = response.json().await?;
    assert_eq!(body["reason"], "MethodNotAllowed");

    // Injected 500 on any request.
    f.server.fail_next(1, Failure::Internal, false);
    let response = client.get(url(&Resource::Pod.path(NS, "web-1"))).send().await?;
    assert_eq!(response.status().as_u16(), 500);
    let body: Value = response.json().await?;
    assert_eq!(body["reason"], "InternalError");
    ensure!(f.server.pod_exists(NS, "web-1"));
    Ok(())
}

#[tokio::test]
async fn server_applies_json_and_strategic_patches_and_dry_run_deletes() -> Result<()> {
    let f = fixture().await?;
    f.server.add_deployment(NS, "web", 1);
    let client = http_client();
    let url = |path: &str| format!("{}{path}", f.server.url());

    // JSON patch on a list index: a new template, so a new revision.
    let response = client
        .patch(url(&deployment_path("web")))
        .header("content-type", "application/json-patch+json")
        .body(r#"[{"op":"test","path":"/spec/template/spec/containers/0/name","value":"web"},
                  {"op":"replace","path":"/spec/template/spec/containers/0/image","value":"web:2"},
                  {"op":"add","path":"/spec/template/spec/containers/0/env","value":[{"name":"A","value":"1"},{"name":"B","value":"2"}]}]"#)
        .send()
        .await?;
    assert_eq!(response.status().as_u16(), 200, "{}", f.server.request_log());
    assert_eq!(f.server.deployment_image(NS, "web").as_deref(), Some("web:2"));
    f.server.run_controllers();
    assert_eq!(f.server.deployment_revision(NS, "web"), Some(2));
    let generation = f.server.deployment(NS, "web").unwrap().metadata.generation;
    assert_eq!(generation, Some(2));

    // Strategic merge: env merges by name, `$patch: delete` removes one entry,
    // a container added by name is appended.
    let response = client
        .patch(url(&deployment_path("web")))
        .header("content-type", "application/strategic-merge-patch+json")
        .body(
            json!({"spec": {"template": {"spec": {"containers": [
                {"name": "web", "env": [{"name": "B", "value": "3"}, {"name": "A", "$patch": "delete"}]},
                {"name": "sidecar", "image": "proxy:1"}
            ]}}}})
            .to_string(),
        )
        .send()
        .await?;
    assert_eq!(response.status().as_u16(), 200, "{}", f.server.request_log());
    f.server.run_controllers();
    let stored = f.server.object(Resource::Deployment, NS, "web").unwrap();
    let containers = &stored["spec"]["template"]["spec"]["containers"];
    assert_eq!(containers[0]["image"], "web:2");
    assert_eq!(containers[0]["env"], json!([{"name": "B", "value": "3"}]));
    assert_eq!(containers[1], json!({"name": "sidecar", "image": "proxy:1"}));

    // A merge patch replaces the list whole.
    let response = client
        .patch(url(&deployment_path("web")))
        .header("content-type", "application/merge-patch+json")
        .body(json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "web:3"}]}}}}).to_string())
        .send()
        .await?;
    assert_eq!(response.status().as_u16(), 200);
    let stored = f.server.object(Resource::Deployment, NS, "web").unwrap();
    assert_eq!(stored["spec"]["template"]["spec"]["containers"], json!([{"name": "web", "image": "web:3"}]));
    f.server.run_controllers();
    assert_eq!(f.server.deployment_revision(NS, "web"), Some(4));

    // Dry-run DELETE in the query string keeps the object; a real one removes it.
    let uid = f.server.add_pod(NS, "p", &[], None);
    let response = client.delete(format!("{}?dryRun=All", url(&Resource::Pod.path(NS, "p")))).send().await?;
    assert_eq!(response.status().as_u16(), 200);
    assert!(f.server.pod_exists(NS, "p"));
    let response =
        client.delete(url(&Resource::Pod.path(NS, "p"))).json(&json!({"preconditions": {"uid": uid}})).send().await?;
    assert_eq!(response.status().as_u16(), 200);
    assert!(!f.server.pod_exists(NS, "p"));
    Ok(())
}
