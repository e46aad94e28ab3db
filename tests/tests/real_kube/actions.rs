//! The Kubernetes actions of `warden_connectors::kube_actions` against the real server:
//! scaling, patching, restarting and cordoning; a rollback whose revisions come from the
//! ReplicaSets while another client keeps writing the Deployment; `delete_pod` on a pod
//! bound to a node, which stays `Terminating` (there is no kubelet); `create_job` next to
//! a Job of the same name made by someone else, and a Job that finishes when the test
//! marks its pod done.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::json;
use warden_connectors::kube_actions::{job_phase, JobPhase};
use warden_connectors::Error;
use warden_tests::wait_until;

use crate::{ensure_created, real, Real};

fn deployment(name: &str, image: &str, replicas: i32) -> Result<Deployment> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": name, "image": image}]}}},
    }))?)
}

/// Waits until the deployment controller has recorded revision `revision` for `name` (the
/// bound is generous: on a loaded machine the controller manager can take long to start).
async fn wait_revision(r: &Real, name: &str, revision: i64) -> Result<()> {
    let what = format!("deployment {}/{name} at revision {revision}", r.ns);
    wait_until(Duration::from_secs(90), &what, async || {
        let current = r.warden.current_revision(&r.ns, name).await?;
        Ok((current == Some(revision)).then_some(()))
    })
    .await
    .with_context(|| r.plane.log_tail())
}

async fn add_node(r: &Real, name: &str) -> Result<()> {
    let node: Node = serde_json::from_value(json!({"metadata": {"name": name}}))?;
    ensure_created(&Api::<Node>::all(r.admin.clone()), &node).await
}

fn image_of(d: &Deployment) -> Option<String> {
    d.spec.as_ref()?.template.spec.as_ref()?.containers.first()?.image.clone()
}

#[tokio::test]
async fn real_scale_patch_restart_and_cordon() -> Result<()> {
    // Needs the real control plane in ../shared/kube; passes without it (see the output).
    let Some(r) = real("real_scale_patch_restart_and_cordon").await? else {
        return Ok(());
    };
    r.api::<Deployment>().create(&PostParams::default(), &deployment("web", "web:1", 2)?).await?;
    wait_revision(&r, "web", 1).await?;

    let scaled = r.warden.set_deployment_replicas(&r.ns, "web", 3, false).await?;
    assert_eq!(scaled.replicas, 3);
    assert_eq!(r.warden.get_deployment_scale(&r.ns, "web").await?.spec_replicas, 3);

    let patch = json!({"spec": {"template": {"metadata": {"annotations": {"warden.io/model": "v7"}}}}});
    let dry = r.warden.patch_deployment(&r.ns, "web", &patch, true).await?;
    assert!(dry.changed && dry.dry_run);
    let done = r.warden.patch_deployment(&r.ns, "web", &patch, false).await?;
    assert!(done.changed);
    // The answer is the Deployment as written: the controller has not renumbered yet.
    assert_eq!(done.response["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "1");
    let again = r.warden.patch_deployment(&r.ns, "web", &patch, false).await?;
    assert!(!again.changed);
    wait_revision(&r, "web", 2).await?;

    let at = "2026-01-01T00:00:00Z";
    assert!(r.warden.restart_deployment(&r.ns, "web", at, false).await?.changed);
    assert!(!r.warden.restart_deployment(&r.ns, "web", at, false).await?.changed);
    wait_revision(&r, "web", 3).await?;

    let node = format!("{}-node", r.ns);
    add_node(&r, &node).await?;
    assert!(r.warden.set_node_unschedulable(&node, true, false).await?.changed);
    assert!(!r.warden.set_node_unschedulable(&node, true, false).await?.changed);
    let stored = Api::<Node>::all(r.admin.clone()).get(&node).await?;
    assert_eq!(stored.spec.and_then(|s| s.unschedulable), Some(true));
    assert!(r.warden.set_node_unschedulable(&node, false, false).await?.changed);
    Ok(())
}

#[tokio::test]
async fn real_rollback_resolves_revisions_and_survives_a_concurrent_writer() -> Result<()> {
    // Needs the real control plane in ../shared/kube; passes without it (see the output).
    let Some(r) = real("real_rollback_resolves_revisions_and_survives_a_concurrent_writer").await? else {
        return Ok(());
    };
    let deployments = r.api::<Deployment>();
    deployments.create(&PostParams::default(), &deployment("api", "api:1", 2)?).await?;
    wait_revision(&r, "api", 1).await?;
    let to_v2 = json!({"spec": {"template": {"spec": {"containers": [{"name": "api", "image": "api:2"}]}}}});
    deployments.patch("api", &PatchParams::default(), &Patch::Strategic(&to_v2)).await?;
    wait_revision(&r, "api", 2).await?;

    // Another client writes the Deployment every 25 ms (an annotation, with no
    // precondition of its own), so Warden's resourceVersion-bound patches conflict.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writes = Arc::new(AtomicU32::new(0));
    let writer = tokio::spawn({
        let (api, stop, writes) = (deployments.clone(), stop.clone(), writes.clone());
        async move {
            while !stop.load(Ordering::SeqCst) {
                let n = writes.load(Ordering::SeqCst) + 1;
                let patch = json!({"metadata": {"annotations": {"team.example/writes": n.to_string()}}});
                if api.patch("api", &PatchParams::default(), &Patch::Merge(&patch)).await.is_ok() {
                    writes.store(n, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
    });
    // Each rollback goes back to the other image; the ReplicaSet it reuses is renumbered,
    // so rollback k goes from revision k + 1 to revision k (not by the annotation).
    let mut conflicts = 0;
    for k in 1..=4i64 {
        let out = r.warden.rollback_deployment(&r.ns, "api", None, false).await.with_context(|| r.plane.log_tail())?;
        assert_eq!((out.from_revision, out.to_revision, out.changed), (k + 1, k, true), "rollback {k}: {out:?}");
        conflicts += out.conflicts_retried;
        wait_revision(&r, "api", k + 2).await?;
        let image = image_of(&deployments.get("api").await?);
        assert_eq!(image.as_deref(), Some(if k % 2 == 1 { "api:1" } else { "api:2" }));
    }
    stop.store(true, Ordering::SeqCst);
    writer.await?;
    println!(
        "4 rollbacks against {} concurrent writes: {conflicts} conflict(s) retried",
        writes.load(Ordering::SeqCst)
    );
    ensure!(conflicts >= 1, "the concurrent writer never made a rollback conflict");
    // The other writer's last write is kept.
    let stored = deployments.get("api").await?;
    let last = stored.metadata.annotations.unwrap_or_default().get("team.example/writes").cloned();
    assert_eq!(last, Some(writes.load(Ordering::SeqCst).to_string()));

    // Rolling back to the revision in place changes nothing; an unknown one is refused.
    let current = r.warden.current_revision(&r.ns, "api").await?.context("a revision")?;
    let same = r.warden.rollback_deployment(&r.ns, "api", Some(current), false).await?;
    assert!(!same.changed);
    let err = r.warden.rollback_deployment(&r.ns, "api", Some(99), false).await.unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err}");
    Ok(())
}

#[tokio::test]
async fn real_delete_pod_on_a_bound_pod_stays_terminating() -> Result<()> {
    // Needs the real control plane in ../shared/kube; passes without it (see the output).
    let Some(r) = real("real_delete_pod_on_a_bound_pod_stays_terminating").await? else {
        return Ok(());
    };
    let node = format!("{}-node", r.ns);
    add_node(&r, &node).await?;
    let pods = r.api::<Pod>();
    let pod = |name: &str, node: Option<&str>| -> Result<Pod> {
        let mut spec = json!({"containers": [{"name": "c", "image": "app:1"}]});
        if let Some(node) = node {
            spec["nodeName"] = json!(node);
        }
        Ok(serde_json::from_value(json!({"metadata": {"name": name, "labels": {"app": "web"}}, "spec": spec}))?)
    };
    let bound = pods.create(&PostParams::default(), &pod("web-1", Some(&node))?).await?;
    let uid = bound.metadata.uid.clone().context("uid")?;

    // No kubelet: the pod stays Terminating, and the outcome says so.
    let out = r.warden.delete_pod(&r.ns, "web-1", Some(&uid), false).await?;
    assert!(!out.already_gone);
    let terminating = out.terminating.clone().context("reported as terminating")?;
    assert_eq!(terminating.grace_period_seconds, Some(30));
    assert!(terminating.deletion_timestamp.is_some());
    let still = pods.get("web-1").await?;
    assert!(still.metadata.deletion_timestamp.is_some());
    // Again (a resumed step): accepted, still terminating.
    let again = r.warden.delete_pod(&r.ns, "web-1", Some(&uid), false).await?;
    assert_eq!(again.terminating, out.terminating);

    // The node confirms (here: a forced deletion); then the pod is gone.
    pods.delete("web-1", &DeleteParams { grace_period_seconds: Some(0), ..DeleteParams::default() }).await?;
    let gone = r.warden.delete_pod(&r.ns, "web-1", Some(&uid), false).await?;
    assert!(gone.already_gone && gone.terminating.is_none());

    // An unbound pod goes at once.
    pods.create(&PostParams::default(), &pod("web-2", None)?).await?;
    let out = r.warden.delete_pod(&r.ns, "web-2", None, false).await?;
    assert_eq!(out.terminating, None);
    assert!(r.warden.get_pod(&r.ns, "web-2").await.unwrap_err().is_not_found());
    Ok(())
}

fn job(name: &str, labels: &[(&str, &str)]) -> Result<Job> {
    let labels: BTreeMap<&str, &str> = labels.iter().copied().collect();
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {"backoffLimit": 0,
                 "template": {"spec": {"restartPolicy": "Never",
                                       "containers": [{"name": "train", "image": "trainer:1"}]}}},
    }))?)
}

#[tokio::test]
async fn real_run_job_refuses_a_foreign_job_and_follows_its_own() -> Result<()> {
    // Needs the real control plane in ../shared/kube; passes without it (see the output).
    let Some(r) = real("real_run_job_refuses_a_foreign_job_and_follows_its_own").await? else {
        return Ok(());
    };
    let owner = [
        ("app.kubernetes.io/managed-by", "warden"),
        ("warden.io/installation", "0123456789abcdef0123456789abcdef"),
        ("warden.io/run", "16"),
        ("warden.io/step", "run-16-step-1"),
    ];
    // A Job made by hand under the name: refused, left alone.
    let jobs = r.api::<Job>();
    jobs.create(&PostParams::default(), &job("retrain-01234567-16-1", &[("team", "ml")])?).await?;
    let err = r.warden.create_job(&r.ns, &job("retrain-01234567-16-1", &owner)?, false).await.unwrap_err();
    assert!(matches!(err, Error::Precondition { .. }) && err.to_string().contains("not adopted"), "{err}");
    let kept = jobs.get("retrain-01234567-16-1").await?.metadata.labels.unwrap_or_default();
    assert_eq!(kept.get("team").map(String::as_str), Some("ml"));
    assert!(!kept.contains_key("warden.io/run"));

    // Its own Job: created once, adopted on a repeat.
    let name = "retrain-01234567-16-2";
    let first = r.warden.create_job(&r.ns, &job(name, &owner)?, false).await?;
    assert!(first.created);
    let again = r.warden.create_job(&r.ns, &job(name, &owner)?, false).await?;
    assert!(!again.created && again.job.metadata.uid == first.job.metadata.uid);
    assert_eq!(job_phase(&r.warden.get_job(&r.ns, name).await?), JobPhase::Running);

    // No kubelet: the test marks the Job's pod done, and the job controller writes
    // the Job's status.
    let pods = r.api::<Pod>();
    let pod = wait_until(Duration::from_secs(90), "the Job's pod", async || {
        let list = pods.list(&ListParams::default().labels(&format!("job-name={name}"))).await?;
        Ok(list.items.into_iter().next().and_then(|p| p.metadata.name))
    })
    .await
    .with_context(|| r.plane.log_tail())?;
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let status = json!({"status": {"phase": "Succeeded", "containerStatuses": [{
        "name": "train", "image": "trainer:1", "imageID": "", "ready": false, "restartCount": 0,
        "state": {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": now, "finishedAt": now}}}]}});
    pods.patch_status(&pod, &PatchParams::default(), &Patch::Merge(&status)).await?;
    wait_until(Duration::from_secs(90), "the Job to succeed", async || {
        Ok((job_phase(&r.warden.get_job(&r.ns, name).await?) == JobPhase::Succeeded).then_some(()))
    })
    .await
    .with_context(|| r.plane.log_tail())?;
    Ok(())
}
