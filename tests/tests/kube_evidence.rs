//! The read-only Kubernetes evidence of `warden_connectors::kube_evidence` against the
//! Kubernetes API test server, connected through a kubeconfig like the agent does:
//! events filtered by time and namespace and read in pages, rollouts with their image
//! diffs (rollbacks included), the ConfigMaps and Secrets a pod template references
//! (read as metadata only: no Secret value may appear in the output), autoscalers,
//! topology (pods, their nodes' conditions, matching Services), and how `collect`
//! handles a missing Deployment, forbidden parts and other failures. Every test also
//! checks that nothing was written.

use anyhow::{ensure, Context, Result};
use k8s_openapi::api::apps::v1::ReplicaSet;
use serde_json::{json, Value};
use warden_connectors::kube_actions::replicaset_revision;
use warden_connectors::kube_evidence::{
    self, ConfigKind, ImageChange, TimeSource, EVENT_PAGE_SIZE, MAX_EVENTS, MAX_MESSAGE_CHARS,
};
use warden_connectors::kubernetes::{KubeClient, KubeConnect};
use warden_connectors::Error;
use warden_tests::http_client;
use warden_tests::kube_api::{self, Failure, KubeApi, Resource};

const NS: &str = "shop";

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

impl Fixture {
    /// Evidence reads must never change anything.
    fn assert_read_only(&self) {
        let writes: Vec<String> = self
            .server
            .requests()
            .iter()
            .filter(|r| r.is_write())
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
        assert!(writes.is_empty(), "evidence collection wrote: {writes:?}");
    }

    /// The ReplicaSet of `deployment` at `revision`.
    fn replica_set(&self, deployment: &str, revision: i64) -> Result<ReplicaSet> {
        self.server
            .replicasets(NS)
            .into_iter()
            .find(|rs| {
                replicaset_revision(rs) == Some(revision)
                    && rs.metadata.owner_references.as_ref().is_some_and(|o| o.iter().any(|r| r.name == deployment))
            })
            .with_context(|| format!("no replicaset of {deployment} at revision {revision}"))
    }

    /// Adds pod `name` controlled by `rs` (its template's labels) on `node`.
    fn add_owned_pod(&self, name: &str, rs: &ReplicaSet, node: &str) {
        let labels = rs
            .spec
            .as_ref()
            .and_then(|s| s.template.as_ref())
            .and_then(|t| t.metadata.as_ref())
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        self.server.add_object(
            Resource::Pod,
            NS,
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {
                    "name": name, "namespace": NS, "labels": labels,
                    "ownerReferences": [{
                        "apiVersion": "apps/v1", "kind": "ReplicaSet",
                        "name": rs.metadata.name, "uid": rs.metadata.uid,
                        "controller": true, "blockOwnerDeletion": true,
                    }],
                },
                "spec": {"nodeName": node,
                         "containers": [{"name": "web", "image": "registry.example.test/web:1.0.0"}]},
            }),
        );
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn rfc3339(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0).unwrap_or_default().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Which timestamp fields an event carries.
enum When {
    Last(i64),
    EventTime(i64),
    First(i64),
}

/// A core/v1 Event about `kind/name` in `namespace`.
fn event(namespace: &str, id: &str, involved: (&str, &str), reason: &str, when: When) -> Value {
    let mut event = json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": id, "namespace": namespace},
        "involvedObject": {"kind": involved.0, "name": involved.1, "namespace": namespace},
        "reason": reason,
        "message": format!("{reason} for {}", involved.1),
        "type": if reason == "Scheduled" { "Normal" } else { "Warning" },
        "count": 2,
        "source": {"component": "kubelet"},
    });
    match when {
        When::Last(t) => {
            event["firstTimestamp"] = json!(rfc3339(t - 60));
            event["lastTimestamp"] = json!(rfc3339(t));
        }
        When::EventTime(t) => {
            event["eventTime"] = json!(format!("{}.000000Z", rfc3339(t).trim_end_matches('Z')));
            event["reportingComponent"] = json!("kubelet");
            event["reportingInstance"] = json!("node-a");
            event["action"] = json!("Killing");
        }
        When::First(t) => event["firstTimestamp"] = json!(rfc3339(t)),
    }
    event
}

fn add_event(f: &Fixture, namespace: &str, id: &str, involved: (&str, &str), reason: &str, when: When) {
    f.server.add_object(Resource::Event, namespace, event(namespace, id, involved, reason, when));
}

#[tokio::test]
async fn events_are_filtered_by_time_and_namespace_and_sorted() -> Result<()> {
    let f = fixture().await?;
    let t = now();
    add_event(&f, NS, "old", ("Pod", "web-1"), "BackOff", When::Last(t - 7200));
    add_event(&f, NS, "oom", ("Pod", "web-1"), "OOMKilling", When::Last(t - 300));
    add_event(&f, NS, "kill", ("Pod", "web-2"), "Killing", When::EventTime(t - 100));
    add_event(&f, NS, "sched", ("Pod", "web-3"), "Scheduled", When::First(t - 200));
    add_event(&f, "other", "elsewhere", ("Pod", "db-1"), "Unhealthy", When::Last(t - 50));
    let mut long = event(NS, "long", ("Deployment", "web"), "ProgressDeadlineExceeded", When::Last(t - 10));
    long["message"] = json!("é".repeat(MAX_MESSAGE_CHARS + 100));
    f.server.add_object(Resource::Event, NS, long);

    let list = f.client.events(Some(NS), t - 600).await?;
    let seen: Vec<(&str, i64)> = list.events.iter().map(|e| (e.reason.as_str(), e.time)).collect();
    assert_eq!(
        seen,
        vec![
            ("OOMKilling", t - 300),
            ("Scheduled", t - 200),
            ("Killing", t - 100),
            ("ProgressDeadlineExceeded", t - 10),
        ],
        "only events of {NS} at or after `since`, oldest first, each dated by its best timestamp"
    );
    assert!(!list.truncated);
    assert_eq!(list.pages, 1);
    let oom = &list.events[0];
    assert_eq!(
        (oom.type_.as_str(), oom.count, oom.involved_kind.as_str(), oom.involved_name.as_str()),
        ("Warning", 2, "Pod", "web-1")
    );
    assert_eq!(oom.involved_namespace.as_deref(), Some(NS));
    assert_eq!(oom.message, "OOMKilling for web-1");
    assert_eq!(list.events[1].type_, "Normal");
    let cut = &list.events[3].message;
    assert_eq!(cut.chars().count(), MAX_MESSAGE_CHARS + 1);
    assert!(cut.ends_with('…'));
    // The serialised form names the type field as Kubernetes does.
    let encoded = serde_json::to_value(oom)?;
    assert_eq!(encoded["type"], "Warning");

    // All namespaces: the cluster-wide list.
    let all = f.client.events(None, t - 600).await?;
    let namespaces: Vec<Option<&str>> = all.events.iter().map(|e| e.involved_namespace.as_deref()).collect();
    assert_eq!(all.events.len(), 5);
    assert!(namespaces.contains(&Some("other")));
    let paths: Vec<String> = f.server.requests().iter().map(|r| r.path.clone()).collect();
    assert!(paths.contains(&"/api/v1/events".to_string()), "{paths:?}");
    assert!(paths.contains(&format!("/api/v1/namespaces/{NS}/events")));
    f.assert_read_only();
    Ok(())
}

#[tokio::test]
async fn events_are_read_in_pages_and_capped_to_the_newest() -> Result<()> {
    let f = fixture().await?;
    let t = now();
    let total = 600usize;
    for i in 0..total {
        // Event i happened at t - 10_000 + i: the higher i, the newer.
        let at = t - 10_000 + i as i64;
        add_event(&f, NS, &format!("ev-{i:04}"), ("Pod", "web-1"), "BackOff", When::Last(at));
    }
    // An old one that `since` removes wherever it is in the pages.
    add_event(&f, NS, "ev-old", ("Pod", "web-1"), "BackOff", When::Last(t - 50_000));

    let list = f.client.events(Some(NS), t - 20_000).await?;
    let page_size = EVENT_PAGE_SIZE as usize;
    assert_eq!(list.pages, (total + 1).div_ceil(page_size));
    assert!(list.pages > 1);
    assert!(list.truncated, "600 matching events, at most {MAX_EVENTS} returned");
    assert_eq!(list.events.len(), MAX_EVENTS);
    let first = list.events.first().map(|e| e.time);
    let last = list.events.last().map(|e| e.time);
    assert_eq!(first, Some(t - 10_000 + (total - MAX_EVENTS) as i64), "the newest are kept");
    assert_eq!(last, Some(t - 10_000 + total as i64 - 1));
    assert!(list.events.windows(2).all(|w| w[0].time <= w[1].time));

    let lists: Vec<_> = f
        .server
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path == format!("/api/v1/namespaces/{NS}/events"))
        .collect();
    assert_eq!(lists.len(), list.pages);
    assert!(lists.iter().all(|r| r.query_param("limit") == Some(EVENT_PAGE_SIZE.to_string())));
    assert_eq!(lists[0].query_param("continue"), None);
    assert!(lists[1..].iter().all(|r| r.query_param("continue").is_some()));

    // Fewer than the cap: two pages, complete.
    let recent = f.client.events(Some(NS), t - 10_000 + 300).await?;
    assert_eq!(recent.events.len(), total - 300);
    assert!(!recent.truncated);
    f.assert_read_only();
    Ok(())
}

#[tokio::test]
async fn rollouts_report_image_changes_between_revisions_and_rollbacks() -> Result<()> {
    let f = fixture().await?;
    f.server.add_deployment(NS, "web", 2);
    assert_eq!(f.server.add_deployment_revision(NS, "web", "registry.example.test/web:2.0.0"), 2);
    let t = now();
    // Revision 1 went out long ago, revision 2 a minute ago.
    for (revision, at) in [(1, t - 86_400), (2, t - 60)] {
        let name = f.replica_set("web", revision)?.metadata.name.unwrap_or_default();
        f.server.edit_object(Resource::ReplicaSet, NS, &name, |rs| {
            rs["metadata"]["creationTimestamp"] = json!(rfc3339(at));
        });
    }

    let all = f.client.rollouts(NS, "web", 0).await?;
    assert_eq!(all.len(), 2);
    assert_eq!((all[0].revision, all[0].previous_revision), (1, None));
    assert!(all[0].image_changes.is_empty() && all[0].from_images.is_empty());
    let rollout = &all[1];
    assert_eq!(rollout.revision, 2);
    assert_eq!(rollout.time, t - 60);
    assert_eq!(rollout.time_source, TimeSource::CreationTimestamp);
    assert!(!rollout.time_approximate && !rollout.rollback);
    assert_eq!(rollout.previous_revision, Some(1));
    assert_eq!(rollout.replica_set, f.replica_set("web", 2)?.metadata.name.unwrap_or_default());
    assert_eq!(
        rollout.image_changes,
        vec![ImageChange {
            container: "web".into(),
            from: Some("registry.example.test/web:1.0.0".into()),
            to: Some("registry.example.test/web:2.0.0".into()),
        }]
    );
    assert_eq!(rollout.from_images[0].image, "registry.example.test/web:1.0.0");
    assert_eq!(rollout.to_images[0].image, "registry.example.test/web:2.0.0");

    // `since` keeps only the recent rollout.
    let recent = f.client.rollouts(NS, "web", t - 3600).await?;
    assert_eq!(recent.iter().map(|r| r.revision).collect::<Vec<_>>(), vec![2]);
    f.assert_read_only();

    // A rollback re-activates revision 1's ReplicaSet as revision 3 (once the
    // deployment controller acted on it).
    f.client.rollback_deployment(NS, "web", Some(1), false).await?;
    f.server.run_controllers();
    let after = f.client.rollouts(NS, "web", t - 3600).await?;
    let back = after.iter().find(|r| r.revision == 3).context("the rollback is listed")?;
    assert!(back.rollback && back.time_approximate, "{back:?}");
    assert_eq!(back.previous_revision, Some(2));
    assert_eq!(
        back.image_changes,
        vec![ImageChange {
            container: "web".into(),
            from: Some("registry.example.test/web:2.0.0".into()),
            to: Some("registry.example.test/web:1.0.0".into()),
        }]
    );
    // Without managedFields the rollback is dated by the earliest it can have
    // happened: when the revision it replaced was created.
    assert_eq!((back.time, back.time_source), (t - 60, TimeSource::CreationTimestamp));
    assert!(back.note.as_deref().is_some_and(|n| n.contains("earliest")), "{:?}", back.note);
    // The first revision of that ReplicaSet is still listed, dated by its creation.
    let first = f.client.rollouts(NS, "web", 0).await?;
    assert_eq!(
        first.iter().map(|r| (r.revision, r.rollback)).collect::<Vec<_>>(),
        vec![(1, false), (2, false), (3, true)]
    );
    // With the controller's managedFields write, that write dates it.
    f.server.edit_object(Resource::ReplicaSet, NS, &back.replica_set, |rs| {
        rs["metadata"]["managedFields"] = json!([
            {"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "apps/v1",
             "time": rfc3339(t - 5), "fieldsType": "FieldsV1", "fieldsV1": {}},
            {"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "apps/v1",
             "time": rfc3339(t - 1), "subresource": "status", "fieldsType": "FieldsV1", "fieldsV1": {}},
        ]);
    });
    let dated = f.client.rollouts(NS, "web", t - 30).await?;
    assert_eq!(dated.len(), 1);
    assert_eq!(
        (dated[0].revision, dated[0].time, dated[0].time_source),
        (3, t - 5, TimeSource::ManagedFields),
        "status writes do not count"
    );
    Ok(())
}

/// A Deployment whose template reads config through env, envFrom and volumes.
fn configured_deployment() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "api", "namespace": NS, "labels": {"app": "api"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "api"}},
            "template": {
                "metadata": {"labels": {"app": "api"}},
                "spec": {
                    "containers": [{
                        "name": "api", "image": "registry.example.test/api:1.0.0",
                        "env": [
                            {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db-credentials", "key": "password"}}},
                            {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "app-settings", "key": "mode"}}},
                            {"name": "PLAIN", "value": "literal"},
                        ],
                        "envFrom": [{"configMapRef": {"name": "app-env"}}],
                    }],
                    "volumes": [
                        {"name": "certs", "secret": {"secretName": "tls-cert"}},
                        {"name": "files", "configMap": {"name": "app-files", "optional": true}},
                    ],
                },
            },
        },
    })
}

#[tokio::test]
async fn config_references_are_read_as_metadata_and_secret_values_never_appear() -> Result<()> {
    let f = fixture().await?;
    const PASSWORD: &str = "s3cr3t-hunter2-value";
    const KEY: &str = "-----BEGIN PRIVATE KEY-----MIIEvQ";
    f.server.add_object(Resource::Deployment, NS, configured_deployment());
    f.server.add_secret(NS, "db-credentials", &[("password", PASSWORD)]);
    f.server.add_secret(NS, "tls-cert", &[("tls.key", KEY)]);
    f.server.add_config_map(NS, "app-settings", &[("mode", "blue-green-mode-value")]);
    f.server.add_config_map(NS, "app-env", &[("LOG_LEVEL", "debug")]);
    // app-files does not exist (optional volume).
    let t = now();
    f.server.edit_object(Resource::Secret, NS, "db-credentials", |secret| {
        secret["metadata"]["creationTimestamp"] = json!(rfc3339(t - 86_400));
        secret["metadata"]["managedFields"] = json!([
            {"manager": "kubectl-client-side-apply", "operation": "Update", "apiVersion": "v1",
             "time": rfc3339(t - 7200), "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {}}},
            {"manager": "helm", "operation": "Update", "apiVersion": "v1",
             "time": rfc3339(t - 30), "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:password": {}}}},
        ]);
    });
    f.server.edit_object(Resource::ConfigMap, NS, "app-settings", |cm| {
        cm["metadata"]["creationTimestamp"] = json!(rfc3339(t - 3600));
    });

    let evidence = kube_evidence::collect(&f.client, NS, "api", t - 600).await?;
    let refs: Vec<(ConfigKind, &str, Vec<&str>)> = evidence
        .config_refs
        .iter()
        .map(|r| (r.kind, r.name.as_str(), r.used_by.iter().map(String::as_str).collect()))
        .collect();
    assert_eq!(
        refs,
        vec![
            (ConfigKind::ConfigMap, "app-env", vec!["envFrom api"]),
            (ConfigKind::ConfigMap, "app-files", vec!["volume files"]),
            (ConfigKind::ConfigMap, "app-settings", vec!["env api/MODE"]),
            (ConfigKind::Secret, "db-credentials", vec!["env api/DB_PASSWORD"]),
            (ConfigKind::Secret, "tls-cert", vec!["volume certs"]),
        ]
    );
    let find = |name: &str| evidence.config.iter().find(|c| c.name == name);
    let db = find("db-credentials").context("db-credentials read")?;
    assert!(db.exists);
    assert_eq!(db.created, Some(t - 86_400));
    assert_eq!(db.last_change, Some(t - 30), "the newest managedFields time");
    assert_eq!(db.last_change_source, Some(TimeSource::ManagedFields));
    assert_eq!(db.last_manager.as_deref(), Some("helm"));
    assert!(db.changed_since);
    assert!(db.resource_version.is_some());
    let settings = find("app-settings").context("app-settings read")?;
    assert_eq!(settings.last_change, Some(t - 3600), "no managedFields: creation time");
    assert_eq!(settings.last_change_source, Some(TimeSource::CreationTimestamp));
    assert!(!settings.changed_since);
    let files = find("app-files").context("app-files reported")?;
    assert!(!files.exists && files.last_change.is_none());

    // No Secret (or ConfigMap) value anywhere in the output, plain or base64.
    let encoded = serde_json::to_string(&evidence)?;
    for value in [PASSWORD, KEY, "blue-green-mode-value"] {
        assert!(!encoded.contains(value), "{value} leaked into the evidence");
        let b64 = serde_json::to_string(&k8s_openapi::ByteString(value.as_bytes().to_vec()))?;
        assert!(!encoded.contains(b64.trim_matches('"')), "base64 of {value} leaked");
    }
    assert!(!format!("{evidence:?}").contains(PASSWORD));
    // And they were never even sent: every Secret read asked for metadata only.
    let secret_reads: Vec<_> = f
        .server
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("/secrets/") || r.path.contains("/configmaps/"))
        .collect();
    assert_eq!(secret_reads.len(), 5);
    for r in &secret_reads {
        assert_eq!(r.method, "GET");
        assert!(
            r.accept.as_deref().is_some_and(|a| a.contains("as=PartialObjectMetadata")),
            "{} was not a metadata-only read: {:?}",
            r.path,
            r.accept
        );
    }
    f.assert_read_only();
    Ok(())
}

#[tokio::test]
async fn metadata_only_reads_of_the_test_server_carry_no_data() -> Result<()> {
    let f = fixture().await?;
    f.server.add_secret(NS, "db", &[("password", "hunter2")]);
    let http = http_client();
    let url = format!("{}{}", f.server.url(), Resource::Secret.path(NS, "db"));
    let full: Value = http.get(&url).send().await?.json().await?;
    ensure!(full["data"]["password"] == json!("aHVudGVyMg=="), "stringData stored as base64 data: {full}");
    ensure!(full.get("stringData").is_none());
    let partial: Value = http
        .get(&url)
        .header("Accept", "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1")
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(partial["kind"], "PartialObjectMetadata");
    assert_eq!(partial["metadata"]["name"], "db");
    assert!(partial.get("data").is_none() && !partial.to_string().contains("aHVudGVyMg"));
    Ok(())
}

#[tokio::test]
async fn scale_evidence_reports_the_hpa_that_targets_the_deployment() -> Result<()> {
    let f = fixture().await?;
    f.server.add_deployment(NS, "web", 5);
    f.server.add_deployment(NS, "worker", 1);
    f.server.add_hpa(NS, "web", "web", 2, 5);
    f.server.add_hpa(NS, "worker", "worker", 1, 3);
    let t = now();
    f.server.set_status(
        Resource::HorizontalPodAutoscaler,
        NS,
        "web",
        json!({
            "currentReplicas": 5, "desiredReplicas": 5, "lastScaleTime": rfc3339(t - 120),
            "conditions": [
                {"type": "AbleToScale", "status": "True", "reason": "ReadyForNewScale"},
                {"type": "ScalingLimited", "status": "True", "reason": "TooManyReplicas",
                 "message": "the desired replica count is more than the maximum replica count"},
            ],
        }),
    );

    let scale = f.client.scale_evidence(NS, "web", t - 600).await?;
    assert_eq!(scale.spec_replicas, 5);
    assert_eq!((scale.status_replicas, scale.ready_replicas), (5, 5));
    assert_eq!(scale.hpas.len(), 1, "only the autoscaler of web: {:?}", scale.hpas);
    let hpa = &scale.hpas[0];
    assert_eq!(hpa.name, "web");
    assert_eq!((hpa.min_replicas, hpa.max_replicas), (Some(2), 5));
    assert_eq!((hpa.current_replicas, hpa.desired_replicas), (Some(5), Some(5)));
    assert_eq!(hpa.last_scale_time, Some(t - 120));
    assert!(hpa.scaled_since && hpa.at_max);
    let limited = hpa.conditions.iter().find(|c| c.type_ == "ScalingLimited").context("ScalingLimited condition")?;
    assert_eq!((limited.status.as_str(), limited.reason.as_deref()), ("True", Some("TooManyReplicas")));

    // Outside the window the scale is not recent.
    let later = f.client.scale_evidence(NS, "web", t - 60).await?;
    assert!(!later.hpas[0].scaled_since);
    let requests = f.server.requests();
    assert!(requests
        .iter()
        .any(|r| r.path == format!("/apis/autoscaling/v2/namespaces/{NS}/horizontalpodautoscalers")));
    f.assert_read_only();
    Ok(())
}

/// web (two pods on node-a and node-b, one OOMKilled), a non-owned pod matching its
/// selector, and a canary deployment on node-c; node-b NotReady with MemoryPressure.
fn topology_cluster(f: &Fixture) -> Result<ReplicaSet> {
    f.server.add_deployment(NS, "web", 2);
    f.server.add_deployment(NS, "web-canary", 1);
    let rs = f.replica_set("web", 1)?;
    let rs_name = rs.metadata.name.clone().unwrap_or_default();
    f.add_owned_pod(&format!("{rs_name}-aaaaa"), &rs, "node-a");
    f.add_owned_pod(&format!("{rs_name}-bbbbb"), &rs, "node-b");
    f.server.add_pod(NS, "web-debug", &[("app", "web")], Some("node-c"));
    let canary = f.replica_set("web-canary", 1)?;
    f.add_owned_pod("web-canary-ccccc", &canary, "node-c");
    for node in ["node-a", "node-b", "node-c"] {
        f.server.add_node(node);
    }
    f.server.set_node_conditions("node-a", &[("Ready", "True"), ("MemoryPressure", "False")]);
    f.server.set_node_conditions(
        "node-b",
        &[("Ready", "False"), ("MemoryPressure", "True"), ("DiskPressure", "False"), ("PIDPressure", "False")],
    );
    f.server.edit_object(Resource::Node, "", "node-b", |node| {
        node["spec"]["unschedulable"] = json!(true);
    });
    let t = rfc3339(now() - 90);
    f.server.set_status(
        Resource::Pod,
        NS,
        &format!("{rs_name}-aaaaa"),
        json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}],
               "containerStatuses": [{"name": "web", "image": "registry.example.test/web:1.0.0", "imageID": "",
                                      "ready": true, "restartCount": 0, "state": {"running": {"startedAt": t}}}]}),
    );
    f.server.set_status(
        Resource::Pod,
        NS,
        &format!("{rs_name}-bbbbb"),
        json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}],
               "containerStatuses": [{"name": "web", "image": "registry.example.test/web:1.0.0", "imageID": "",
                                      "ready": false, "restartCount": 3,
                                      "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                                      "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137,
                                                                   "startedAt": t, "finishedAt": t}}}]}),
    );
    f.server.add_service(NS, "web", &[("app", "web")]);
    f.server.add_service(NS, "web-frontend", &[("app", "web"), ("tier", "frontend")]);
    f.server.add_service(NS, "canary", &[("app", "web-canary")]);
    f.server.add_service(NS, "external-db", &[]);
    Ok(rs)
}

#[tokio::test]
async fn topology_links_pods_nodes_and_services() -> Result<()> {
    let f = fixture().await?;
    let rs = topology_cluster(&f)?;
    let rs_name = rs.metadata.name.clone().unwrap_or_default();

    let topology = f.client.topology(NS, "web").await?;
    assert_eq!(topology.deployment, "web");
    assert_eq!(topology.selector.as_deref(), Some("app=web"));
    assert_eq!(topology.replica_sets.len(), 1);
    assert_eq!(topology.replica_sets[0].name, rs_name);
    assert_eq!(topology.replica_sets[0].revision, Some(1));

    let pods: Vec<(&str, Option<&str>)> = topology.pods.iter().map(|p| (p.name.as_str(), p.node.as_deref())).collect();
    let (a, b) = (format!("{rs_name}-aaaaa"), format!("{rs_name}-bbbbb"));
    assert_eq!(
        pods,
        vec![(a.as_str(), Some("node-a")), (b.as_str(), Some("node-b"))],
        "owned pods only: not web-debug (no owner), not the canary's"
    );
    let healthy = &topology.pods[0];
    assert!(healthy.ready);
    assert_eq!((healthy.restarts, healthy.last_termination_reason.as_deref()), (0, None));
    let oom = &topology.pods[1];
    assert!(!oom.ready);
    assert_eq!(oom.restarts, 3);
    assert_eq!(oom.last_termination_reason.as_deref(), Some("OOMKilled"));
    assert_eq!(oom.last_termination_exit_code, Some(137));
    assert_eq!(oom.waiting_reason.as_deref(), Some("CrashLoopBackOff"));
    assert_eq!(oom.replica_set.as_deref(), Some(rs_name.as_str()));
    assert_eq!(oom.phase.as_deref(), Some("Running"));

    let nodes: Vec<&str> = topology.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(nodes, vec!["node-a", "node-b"]);
    let node_a = &topology.nodes[0];
    assert!(node_a.found && node_a.ready && node_a.conditions.is_empty() && !node_a.unschedulable);
    let node_b = &topology.nodes[1];
    assert!(node_b.found && !node_b.ready);
    assert_eq!(node_b.not_ready_reason.as_deref(), Some("False (KubeletNotReady)"));
    assert_eq!(node_b.conditions, vec!["MemoryPressure".to_string()]);
    assert!(node_b.unschedulable);

    assert_eq!(topology.services, vec!["web".to_string()], "selector subset of the template labels");
    f.assert_read_only();
    Ok(())
}

#[tokio::test]
async fn collect_gathers_every_part_and_only_related_events() -> Result<()> {
    let f = fixture().await?;
    let rs = topology_cluster(&f)?;
    let rs_name = rs.metadata.name.clone().unwrap_or_default();
    f.server.add_hpa(NS, "web", "web", 2, 4);
    let t = now();
    let related = [
        ("Deployment", "web".to_string(), "ScalingReplicaSet"),
        ("ReplicaSet", rs_name.clone(), "SuccessfulCreate"),
        ("Pod", format!("{rs_name}-bbbbb"), "BackOff"),
        // A pod that is gone (replaced) still belongs to the ReplicaSet.
        ("Pod", format!("{rs_name}-zzzzz"), "OOMKilling"),
        ("HorizontalPodAutoscaler", "web".to_string(), "SuccessfulRescale"),
        ("Service", "web".to_string(), "UpdatedLoadBalancer"),
    ];
    for (i, (kind, name, reason)) in related.iter().enumerate() {
        add_event(&f, NS, &format!("rel-{i}"), (kind, name), reason, When::Last(t - 100 + i as i64));
    }
    let unrelated = [
        ("Pod", "web-canary-ccccc", "BackOff"),
        ("Deployment", "web-canary", "ScalingReplicaSet"),
        ("Pod", "web-debug", "Pulled"),
        ("Service", "canary", "UpdatedLoadBalancer"),
    ];
    for (i, (kind, name, reason)) in unrelated.iter().enumerate() {
        add_event(&f, NS, &format!("unrel-{i}"), (kind, name), reason, When::Last(t - 50));
    }

    let evidence = kube_evidence::collect(&f.client, NS, "web", t - 600).await?;
    assert!(evidence.found);
    assert!(evidence.gaps.is_empty(), "{:?}", evidence.gaps);
    assert!(evidence.notes.is_empty(), "{:?}", evidence.notes);
    let reasons: Vec<&str> = evidence.events.iter().map(|e| e.reason.as_str()).collect();
    assert_eq!(
        reasons,
        related.iter().map(|(_, _, r)| *r).collect::<Vec<_>>(),
        "only events about web, its ReplicaSets, pods, autoscaler and services"
    );
    assert_eq!(evidence.rollouts.len(), 1);
    assert_eq!(evidence.rollouts[0].revision, 1);
    let scale = evidence.scale.as_ref().context("scale part")?;
    assert_eq!(scale.spec_replicas, 2);
    assert_eq!(scale.hpas.iter().map(|h| h.name.as_str()).collect::<Vec<_>>(), vec!["web"]);
    let topology = evidence.topology.as_ref().context("topology part")?;
    assert_eq!(topology.pods.len(), 2);
    assert_eq!(topology.nodes.len(), 2);
    assert!(evidence.config_refs.is_empty() && evidence.config.is_empty());
    // The output is one serialisable document.
    let value = serde_json::to_value(&evidence)?;
    assert_eq!(value["topology"]["nodes"][1]["conditions"], json!(["MemoryPressure"]));
    f.assert_read_only();
    Ok(())
}

#[tokio::test]
async fn forbidden_parts_become_gaps_and_the_rest_is_still_collected() -> Result<()> {
    let f = fixture().await?;
    topology_cluster(&f)?;
    f.server.add_object(Resource::Deployment, NS, configured_deployment());
    f.server.add_config_map(NS, "app-settings", &[("mode", "x")]);
    f.server.add_secret(NS, "db-credentials", &[("password", "p")]);
    let t = now();
    add_event(&f, NS, "e1", ("Pod", "web-1"), "BackOff", When::Last(t - 10));
    f.server.forbid(&format!("/api/v1/namespaces/{NS}/events"));
    f.server.forbid(&format!("/api/v1/namespaces/{NS}/secrets"));
    f.server.forbid("/api/v1/nodes");

    // The single-part read does not hide the 403.
    match f.client.events(Some(NS), t - 600).await {
        Err(Error::Kube { status: 403, reason, message }) => {
            assert_eq!(reason, "Forbidden");
            assert!(message.contains("cannot list resource \"events\""), "{message}");
        }
        other => anyhow::bail!("expected 403 Forbidden, got {other:?}"),
    }

    let web = kube_evidence::collect(&f.client, NS, "web", t - 600).await?;
    assert_eq!(web.gaps, vec!["nodes: forbidden".to_string(), "events: forbidden".to_string()]);
    assert!(web.found && web.events.is_empty());
    let topology = web.topology.as_ref().context("topology still collected")?;
    assert_eq!(topology.pods.len(), 2, "pods are listed although nodes are forbidden");
    assert!(topology.nodes.is_empty());
    assert_eq!(topology.services, vec!["web".to_string()]);
    assert_eq!(web.rollouts.len(), 1);
    assert!(web.scale.is_some());

    let api = kube_evidence::collect(&f.client, NS, "api", t - 600).await?;
    assert!(api.gaps.contains(&"secrets: forbidden".to_string()), "{:?}", api.gaps);
    assert!(api.gaps.contains(&"events: forbidden".to_string()));
    let read: Vec<(&str, bool)> = api.config.iter().map(|c| (c.name.as_str(), c.exists)).collect();
    assert_eq!(
        read,
        vec![("app-env", false), ("app-files", false), ("app-settings", true)],
        "ConfigMaps are still read; forbidden Secrets are left out"
    );

    // Without the Deployment itself, events are matched by name.
    f.server.allow_all();
    f.server.forbid(&format!("/apis/apps/v1/namespaces/{NS}/deployments"));
    add_event(&f, NS, "e2", ("Deployment", "api"), "ScalingReplicaSet", When::Last(t - 5));
    let blind = kube_evidence::collect(&f.client, NS, "web", t - 600).await?;
    assert!(!blind.found);
    assert_eq!(blind.gaps, vec!["deployments: forbidden".to_string()]);
    assert_eq!(blind.events.iter().map(|e| e.involved_name.as_str()).collect::<Vec<_>>(), vec!["web-1"]);
    assert!(blind.topology.is_none() && blind.rollouts.is_empty());
    f.assert_read_only();
    Ok(())
}

#[tokio::test]
async fn a_missing_deployment_is_empty_evidence_with_a_note() -> Result<()> {
    let f = fixture().await?;
    add_event(&f, NS, "e1", ("Pod", "gone-1"), "BackOff", When::Last(now() - 10));
    let evidence = kube_evidence::collect(&f.client, NS, "gone", 0).await?;
    assert!(!evidence.found);
    assert_eq!(evidence.notes.len(), 1);
    assert!(evidence.notes[0].contains("not found"), "{:?}", evidence.notes);
    assert!(evidence.events.is_empty() && evidence.rollouts.is_empty() && evidence.config.is_empty());
    assert!(evidence.scale.is_none() && evidence.topology.is_none() && evidence.gaps.is_empty());
    assert_eq!(f.server.requests().len(), 1, "{}", f.server.request_log());
    // The single-part reads say 404.
    let err = f.client.topology(NS, "gone").await.err().context("topology of a missing deployment")?;
    assert!(err.is_not_found(), "{err}");
    f.assert_read_only();
    Ok(())
}

#[tokio::test]
async fn other_failures_fail_the_collection_with_the_connector_error() -> Result<()> {
    let f = fixture().await?;
    f.server.add_deployment(NS, "web", 1);
    f.server.fail_next(1, Failure::Internal, false);
    match kube_evidence::collect(&f.client, NS, "web", 0).await {
        Err(e @ Error::Kube { status: 500, .. }) => assert!(e.is_retryable()),
        other => anyhow::bail!("expected a 500 error, got {other:?}"),
    }
    match kube_evidence::collect(&f.client, NS, "a/b", 0).await {
        Err(Error::InvalidInput(_)) => {}
        other => anyhow::bail!("expected invalid input, got {other:?}"),
    }
    // Recovered: the next collection works.
    assert!(kube_evidence::collect(&f.client, NS, "web", 0).await?.found);
    f.assert_read_only();
    Ok(())
}
