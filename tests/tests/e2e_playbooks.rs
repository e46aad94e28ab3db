//! The playbook engine against the local Kubernetes API server: every action, the guards,
//! approvals and their expiry, verification failure and revert, a run interrupted mid-step
//! and resumed, cron triggers on a controlled clock, and audit tampering.
//!
//! Time is the engine's clock (`now` on every call), so waits, verification windows, Job
//! polling, approval expiry and cron are driven by the test without sleeping. `verify` reads
//! a scripted metric source: what matters here is the engine's decision on its answer.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use warden_agent::act::kube_cluster::KubeCluster;
use warden_agent::act::remediation::{HttpWebhook, Remediation};
use warden_agent::store::Store;
use warden_connectors::kube_actions::ActionWaits;
use warden_connectors::kubernetes::{KubeClient, KubeConnect};
use warden_connectors::prometheus::{MetricSource, RangeResult, Sample, Series};
use warden_playbooks::engine::{Engine, Notice, Notices, StartRequest};
use warden_playbooks::guards::{GuardName, GuardSettings};
use warden_playbooks::load::parse_playbook;
use warden_playbooks::run::{Run, RunStatus, StepStatus, Target, TriggerInfo};
use warden_playbooks::spec::{Autonomy, Playbook};
use warden_playbooks::template::Vars;
use warden_playbooks::Cluster;
use warden_tests::kube_api::{self, JobOutcome, KubeApi};

/// A metric source whose answer the test sets: one series, a value at every step (or none).
struct Scripted {
    value: Mutex<Option<f64>>,
}

#[async_trait]
impl MetricSource for Scripted {
    async fn query_range(
        &self,
        _q: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        step: Duration,
    ) -> warden_connectors::Result<RangeResult> {
        let value = *self.value.lock().unwrap_or_else(|e| e.into_inner());
        let Some(v) = value else { return Ok(RangeResult::default()) };
        let step_ms = usize::try_from(step.as_millis())
            .ok()
            .filter(|ms| *ms > 0)
            .ok_or_else(|| warden_connectors::Error::InvalidInput(format!("step {step:?}")))?;
        let points = (start.timestamp_millis()..=end.timestamp_millis())
            .step_by(step_ms)
            .map(|timestamp_ms| Sample { timestamp_ms, value: v })
            .collect();
        Ok(RangeResult { series: vec![Series { labels: BTreeMap::new(), points }], warnings: Vec::new() })
    }
}

#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<(i64, String)>>,
}

impl Notices for Recorder {
    fn notice(&self, run: &Run, _kind: Notice, text: &str) {
        if let Ok(mut s) = self.seen.lock() {
            s.push((run.id, text.to_string()));
        }
    }
}

struct Rig {
    api: KubeApi,
    dir: tempfile::TempDir,
    store: Arc<Store>,
    metrics: Arc<Scripted>,
    cluster: Arc<KubeCluster>,
    engine: Engine,
}

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).expect("time")
}

fn at(secs: i64) -> DateTime<Utc> {
    t0() + chrono::Duration::seconds(secs)
}

async fn rig() -> Result<Rig> {
    let api = KubeApi::start().await?;
    api.add_deployment("shop", "checkout", 2);
    let dir = tempfile::tempdir()?;
    let kubeconfig = kube_api::write_kubeconfig(dir.path(), &api.url())?;
    let client = KubeClient::connect(&KubeConnect::Kubeconfig {
        path: Some(kubeconfig),
        context: Some(kube_api::KUBECONFIG_CONTEXT.to_string()),
    })
    .await?
    // Short waits for the cluster: a pod that stays terminating is reported in a second, a
    // deployment controller that lags is waited for half a second.
    .with_action_waits(ActionWaits {
        pod_gone: Duration::from_secs(1),
        controller: Duration::from_millis(500),
        ..ActionWaits::default()
    });
    let cluster = Arc::new(KubeCluster { client });
    let store = Arc::new(Store::open(&dir.path().join("warden.db"))?);
    let metrics = Arc::new(Scripted { value: Mutex::new(Some(1.0)) });
    let engine = engine_on(&store, &cluster, &metrics)?;
    Ok(Rig { api, dir, store, metrics, cluster, engine })
}

fn engine_on(store: &Arc<Store>, cluster: &Arc<KubeCluster>, metrics: &Arc<Scripted>) -> Result<Engine> {
    Ok(Engine {
        cluster: Some(cluster.clone() as Arc<dyn Cluster>),
        metrics: Some(metrics.clone() as Arc<dyn MetricSource>),
        webhook: Some(Arc::new(HttpWebhook::new().map_err(anyhow::Error::msg)?)),
        notices: Arc::new(Recorder::default()),
        store: store.clone(),
        // No cooldown by default here: each test sets the one it is about.
        defaults: GuardSettings { autonomy: Autonomy::Auto, cooldown: Duration::ZERO, ..GuardSettings::default() },
        retry: warden_playbooks::policy::RetryPolicy::default(),
        fencing: None,
    })
}

fn playbook(yaml: &str) -> Playbook {
    match parse_playbook(yaml, Path::new("test.yaml")) {
        Ok(p) => p,
        Err(e) => panic!("test playbook does not load:\n{e}"),
    }
}

fn request(pb: Playbook, target: Option<Target>, now: DateTime<Utc>) -> StartRequest {
    StartRequest {
        playbook: pb,
        params: BTreeMap::new(),
        target,
        trigger: TriggerInfo { kind: "manual".into(), actor: "user/test".into(), incident_id: None, detail: json!({}) },
        vars: Vars::new(),
        has_data: None,
        dry_run: false,
        now,
    }
}

fn checkout() -> Option<Target> {
    Some(Target::deployment("shop", "checkout"))
}

/// Tick the engine every 30 s of engine time until the run ends (or `limit` seconds). The
/// test server's controllers run their queued work before each tick, as 30 s would let them.
async fn drive(r: &Rig, mut run: Run, from: i64, limit: i64) -> Result<Run> {
    let mut s = from;
    while !run.status.is_terminal() && s <= from + limit {
        s += 30;
        r.api.run_controllers();
        run = r.engine.advance(run.id, at(s)).await?;
    }
    Ok(run)
}

fn audit_ok(store: &Store) -> Result<usize> {
    let entries = store.audit_entries()?;
    let summary = warden_playbooks::audit::verify(&entries)
        .map_err(|b| anyhow::anyhow!("chain broken at {}: {}", b.seq, b.reason))?;
    Ok(summary.entries)
}

const SCALE_VERIFY: &str =
    "name: more\nsteps:\n  - scale: {by: 1, max: 5}\n  - verify: {query: 'up', for: 2m, step: 30s}\n";

#[tokio::test]
async fn scale_then_verify_succeeds_with_its_audit_trail() -> Result<()> {
    let r = rig().await?;
    let run = r.engine.start(request(playbook(SCALE_VERIFY), checkout(), at(0))).await?;
    assert_eq!(run.status, RunStatus::Running, "{run:?}");
    assert_eq!(run.steps[1].status, StepStatus::Waiting);
    assert_eq!(r.api.replicas("shop", "checkout"), Some(3));
    let run = drive(&r, run, 0, 600).await?;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.reason);
    assert_eq!(run.steps[0].idempotency_key, format!("run-{}-step-1", run.id));
    assert_eq!(r.api.scale_writes("shop", "checkout").len(), 1);
    let kinds: Vec<String> = r.store.audit_for_run(run.id)?.iter().map(|e| e.kind.as_str().to_string()).collect();
    for k in ["trigger", "guard", "request", "response", "verify", "state"] {
        assert!(kinds.iter().any(|x| x == k), "no {k} entry in {kinds:?}");
    }
    assert!(audit_ok(&r.store)? >= 6);
    Ok(())
}

#[tokio::test]
async fn failed_verification_reverts_the_scale() -> Result<()> {
    let r = rig().await?;
    *r.metrics.value.lock().map_err(|e| anyhow::anyhow!("{e}"))? = Some(0.0);
    let run = r.engine.start(request(playbook(SCALE_VERIFY), checkout(), at(0))).await?;
    assert_eq!(r.api.replicas("shop", "checkout"), Some(3));
    let run = drive(&r, run, 0, 600).await?;
    assert_eq!(run.status, RunStatus::Reverted, "{run:#?}");
    assert!(run.steps[1].error.as_deref().is_some_and(|e| e.contains("did not hold")), "{:?}", run.steps[1]);
    assert_eq!(run.revert_steps.len(), 1);
    assert_eq!(run.revert_steps[0].status, StepStatus::Done);
    assert_eq!(r.api.replicas("shop", "checkout"), Some(2), "the revert did not scale back");
    let kinds: Vec<String> = r.store.audit_for_run(run.id)?.iter().map(|e| e.kind.as_str().to_string()).collect();
    assert!(kinds.iter().filter(|k| *k == "revert").count() >= 2, "{kinds:?}");
    Ok(())
}

#[tokio::test]
async fn no_data_in_the_window_fails_verification() -> Result<()> {
    let r = rig().await?;
    *r.metrics.value.lock().map_err(|e| anyhow::anyhow!("{e}"))? = None;
    let run = r.engine.start(request(playbook(SCALE_VERIFY), checkout(), at(0))).await?;
    let run = drive(&r, run, 0, 600).await?;
    assert_eq!(run.status, RunStatus::Reverted);
    assert!(run.steps[1].error.as_deref().is_some_and(|e| e.contains("no data")), "{:?}", run.steps[1].error);
    Ok(())
}

#[tokio::test]
async fn rollback_then_roll_forward_when_verification_fails() -> Result<()> {
    let r = rig().await?;
    let rev2 = r.api.add_deployment_revision("shop", "checkout", "shop/checkout:v2");
    assert_eq!(r.api.deployment_image("shop", "checkout").as_deref(), Some("shop/checkout:v2"));
    let pb = playbook("name: undo\nsteps:\n  - rollback: {}\n  - verify: {query: 'up', for: 1m}\n");

    // Verification holds: the rollback stays.
    let run = r.engine.start(request(pb.clone(), checkout(), at(0))).await?;
    assert_ne!(r.api.deployment_image("shop", "checkout").as_deref(), Some("shop/checkout:v2"));
    let plan = run.steps[0].plan.clone().unwrap_or(Value::Null);
    assert_eq!(plan["from_revision"], json!(rev2));
    assert_eq!(plan["to_revision"], json!(rev2 - 1));
    let run = drive(&r, run, 0, 300).await?;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.reason);

    // A new rollout, and this time verification fails: rolled forward again.
    let rev = r.api.add_deployment_revision("shop", "checkout", "shop/checkout:v3");
    *r.metrics.value.lock().map_err(|e| anyhow::anyhow!("{e}"))? = Some(0.0);
    let mut pb2 = pb;
    pb2.guards.cooldown = Some("1s".parse().map_err(anyhow::Error::msg)?);
    let run = r.engine.start(request(pb2, checkout(), at(1000))).await?;
    assert_ne!(r.api.deployment_image("shop", "checkout").as_deref(), Some("shop/checkout:v3"));
    let run = drive(&r, run, 1000, 300).await?;
    assert_eq!(run.status, RunStatus::Reverted, "{run:#?}");
    assert_eq!(r.api.deployment_image("shop", "checkout").as_deref(), Some("shop/checkout:v3"), "not rolled forward");
    assert_eq!(run.revert_steps[0].plan.as_ref().map(|p| p["to_revision"].clone()), Some(json!(rev)));
    Ok(())
}

#[tokio::test]
async fn restart_delete_pod_cordon_and_patch() -> Result<()> {
    let r = rig().await?;
    // restart: the annotation carries the planned time; sending it again changes nothing.
    let run = r.engine.start(request(playbook("name: rs\nsteps: [{restart: {}}]\n"), checkout(), at(0))).await?;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.reason);
    let stamped = r.api.pod_template_annotation("shop", "checkout", "kubectl.kubernetes.io/restartedAt");
    assert_eq!(stamped.as_deref(), run.steps[0].plan.as_ref().and_then(|p| p["restarted_at"].as_str()));

    // delete_pod: one pod by selector, with its uid as precondition (a kubelet stops it).
    r.api.set_kubelet(Some(Duration::from_millis(50)));
    r.api.add_pod("shop", "checkout-a", &[("app", "checkout")], Some("node-1"));
    r.api.add_pod("shop", "checkout-b", &[("app", "checkout")], Some("node-1"));
    let pb = playbook("name: dp\nsteps: [{delete_pod: {selector: 'app=checkout'}}]\n");
    let run = r.engine.start(request(pb, checkout(), at(0))).await?;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.reason);
    assert!(!r.api.pod_exists("shop", "checkout-a"));
    let result = run.steps[0].result.clone().unwrap_or(Value::Null);
    assert_eq!(result["summary"], "deleted pod(s) checkout-a in shop", "{result}");
    assert!(r.api.pod_exists("shop", "checkout-b"));
    // Two pods is beyond the default blast radius of one.
    let pb = playbook("name: dp2\nguards: {cooldown: 1s}\nsteps: [{delete_pod: {selector: 'app=checkout', max: 2}}]\n");
    r.api.add_pod("shop", "checkout-c", &[("app", "checkout")], None);
    let run = r.engine.start(request(pb, checkout(), at(100))).await?;
    assert_eq!(run.status, RunStatus::Refused);
    assert_eq!(run.refusal.as_ref().map(|x| x.guard), Some(GuardName::BlastRadius), "{:?}", run.refusal);
    assert!(r.api.pod_exists("shop", "checkout-b") && r.api.pod_exists("shop", "checkout-c"));

    // cordon, then a failed verification uncordons.
    r.api.add_node("node-1");
    *r.metrics.value.lock().map_err(|e| anyhow::anyhow!("{e}"))? = Some(0.0);
    let pb = playbook("name: cn\ntarget: node\nsteps:\n  - cordon: {}\n  - verify: {query: up, for: 1m}\n");
    let run = r.engine.start(request(pb, Some(Target::node("node-1")), at(0))).await?;
    assert_eq!(r.api.node_unschedulable("node-1"), Some(true));
    let run = drive(&r, run, 0, 300).await?;
    assert_eq!(run.status, RunStatus::Reverted, "{:?}", run.reason);
    assert_eq!(r.api.node_unschedulable("node-1"), Some(false));

    // patch: allowed fields apply; a field outside the allow-list is refused.
    *r.metrics.value.lock().map_err(|e| anyhow::anyhow!("{e}"))? = Some(1.0);
    let pb = playbook(
        "name: pt\nguards: {cooldown: 1s}\nsteps:\n  - patch: {patch: {spec: {template: {metadata: {annotations: {warden.io/model: v7}}}}}}\n",
    );
    let run = r.engine.start(request(pb, checkout(), at(2000))).await?;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.reason);
    assert_eq!(r.api.pod_template_annotation("shop", "checkout", "warden.io/model").as_deref(), Some("v7"));
    assert_eq!(
        run.steps[0].plan.as_ref().map(|p| p["inverse"].clone()),
        Some(json!({"spec": {"template": {"metadata": {"annotations": {"warden.io/model": null}}}}}))
    );
    let mut bad =
        playbook("name: pt2\nsteps:\n  - patch: {patch: {spec: {template: {metadata: {annotations: {a: b}}}}}}\n");
    bad.steps[0].patch =
        Some(warden_playbooks::spec::PatchStep { patch: serde_yaml::from_str("{spec: {paused: true}}")? });
    let run = r.engine.start(request(bad, checkout(), at(4000))).await?;
    assert_eq!(run.status, RunStatus::Refused);
    assert_eq!(run.refusal.as_ref().map(|x| x.guard), Some(GuardName::PatchAllow), "{:?}", run.refusal);
    Ok(())
}

#[tokio::test]
async fn run_job_waits_for_success_failure_and_timeout() -> Result<()> {
    let r = rig().await?;
    let yaml = "name: retrain\nparams: {window: {type: duration, default: 7d}}\nsteps:\n  - run_job:\n      name_prefix: retrain\n      timeout: 10m\n      poll: 30s\n      spec:\n        backoffLimit: 0\n        template:\n          spec:\n            restartPolicy: Never\n            containers: [{name: train, image: 'trainer:1', args: ['--window', '{{ params.window }}']}]\n";
    r.api.set_job_outcome(JobOutcome::Succeed, 2);
    let run = r.engine.start(request(playbook(yaml), checkout(), at(0))).await?;
    assert_eq!(run.steps[0].status, StepStatus::Waiting);
    let jobs = r.api.jobs("shop");
    assert_eq!(jobs.len(), 1);
    let name = jobs[0].metadata.name.clone().unwrap_or_default();
    // The store's installation id is part of the name and the labels.
    let installation = r.store.installation_id()?;
    assert_eq!(name, format!("retrain-{}-{}-1", &installation[..8], run.id));
    let labels = jobs[0].metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.get("warden.io/installation"), Some(&installation));
    assert_eq!(labels.get("warden.io/run"), Some(&run.id.to_string()));
    assert_eq!(labels.get("warden.io/step").map(String::as_str), Some(format!("run-{}-step-1", run.id).as_str()));
    let args = serde_json::to_value(&jobs[0].spec)?["template"]["spec"]["containers"][0]["args"].clone();
    // Durations reach templates in their canonical form.
    assert_eq!(args, json!(["--window", "7days"]));
    let run = drive(&r, run, 0, 600).await?;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.reason);
    assert_eq!(r.api.jobs("shop").len(), 1, "a second Job was created");

    r.api.set_job_outcome(
        JobOutcome::Fail { reason: "BackoffLimitExceeded".into(), message: "model did not converge".into() },
        1,
    );
    let mut pb = playbook(yaml);
    pb.guards.cooldown = Some("1s".parse().map_err(anyhow::Error::msg)?);
    let run = r.engine.start(request(pb.clone(), checkout(), at(1000))).await?;
    let run = drive(&r, run, 1000, 600).await?;
    // A Job cannot be undone: the run fails and says why, with the revert step listed as skipped.
    assert!(matches!(run.status, RunStatus::Reverted | RunStatus::Failed), "{:?}", run.status);
    assert!(run.reason.as_deref().is_some_and(|x| x.contains("BackoffLimitExceeded")), "{:?}", run.reason);

    r.api.set_job_outcome(JobOutcome::StayActive, 0);
    let run = r.engine.start(request(pb, checkout(), at(3000))).await?;
    let run = drive(&r, run, 3000, 1200).await?;
    assert!(run.reason.as_deref().is_some_and(|x| x.contains("timeout")), "{:?}", run.reason);
    Ok(())
}

const RETRAIN: &str = "name: retrain\nsteps:\n  - run_job:\n      name_prefix: retrain\n      timeout: 10m\n      poll: 30s\n      spec:\n        backoffLimit: 0\n        template:\n          spec:\n            restartPolicy: Never\n            containers: [{name: train, image: 'trainer:1'}]\n";

// Finding: run_job adopted any existing Job named `<prefix>-<run id>-<n>`: a fresh store's
// run reported "job succeeded" for another store's Job, and a Job made by hand was adopted.
#[tokio::test]
async fn run_job_never_adopts_a_job_it_did_not_create() -> Result<()> {
    let r = rig().await?;
    let mine = r.store.installation_id()?;
    // A Job made by hand under the name this store's run 1 will use: the step fails, the
    // Job is left as it was.
    let taken = format!("retrain-{}-1-1", &mine[..8]);
    r.api.add_object(
        warden_tests::kube_api::Resource::Job,
        "shop",
        json!({"apiVersion": "batch/v1", "kind": "Job",
               "metadata": {"name": taken, "labels": {"team": "ml"}},
               "spec": {"template": {"spec": {"restartPolicy": "Never",
                        "containers": [{"name": "x", "image": "x:1"}]}}}}),
    );
    r.api.set_job_outcome(JobOutcome::Succeed, 0);
    let run = r.engine.start(request(playbook(RETRAIN), checkout(), at(0))).await?;
    assert_eq!(run.id, 1);
    let run = drive(&r, run, 0, 600).await?;
    assert!(matches!(run.status, RunStatus::Failed | RunStatus::Reverted), "{:?}", run.status);
    assert!(
        run.reason.as_deref().is_some_and(|x| x.contains("not adopted") && x.contains("warden.io/run is missing")),
        "{:?}",
        run.reason
    );
    let kept = r.api.job("shop", &taken).and_then(|j| j.metadata.labels).unwrap_or_default();
    assert_eq!(kept.len(), 1, "the foreign Job was changed: {kept:?}");

    // Another store on the same cluster (a reinstall) whose run 1 succeeded; this store's
    // next run and the other store's run 1 each wait for their own Job only.
    let other_store = Arc::new(Store::open(&r.dir.path().join("other.db"))?);
    let theirs = other_store.installation_id()?;
    assert_ne!(theirs, mine);
    let other = engine_on(&other_store, &r.cluster, &r.metrics)?;
    let their_run = other.start(request(playbook(RETRAIN), checkout(), at(2000))).await?;
    assert_eq!(their_run.id, 1);
    let mut s = 2000;
    let mut their_run = their_run;
    while !their_run.status.is_terminal() && s < 3000 {
        s += 30;
        r.api.run_controllers();
        their_run = other.advance(their_run.id, at(s)).await?;
    }
    assert_eq!(their_run.status, RunStatus::Succeeded, "{:?}", their_run.reason);
    // This store's Jobs fail; the other store's succeeded Job must not stand in for them.
    r.api.set_job_outcome_for(&format!("retrain-{}", &mine[..8]), JobOutcome::fail(), 0);
    let mut pb = playbook(RETRAIN);
    pb.guards.cooldown = Some("1s".parse().map_err(anyhow::Error::msg)?);
    let run = r.engine.start(request(pb, checkout(), at(4000))).await?;
    let run = drive(&r, run, 4000, 600).await?;
    assert!(run.reason.as_deref().is_some_and(|x| x.contains("BackoffLimitExceeded")), "{:?}", run.reason);
    let names: Vec<String> = r.api.jobs("shop").into_iter().filter_map(|j| j.metadata.name).collect();
    assert!(names.contains(&format!("retrain-{}-1-1", &theirs[..8])), "{names:?}");
    assert!(names.contains(&format!("retrain-{}-{}-1", &mine[..8], run.id)), "{names:?}");
    Ok(())
}

// Finding: delete_pod reported done while a pod bound to a node was still Terminating.
#[tokio::test]
async fn delete_pod_step_reports_a_pod_that_stays_terminating() -> Result<()> {
    let r = rig().await?;
    // No kubelet confirms the deletion (an unreachable node).
    r.api.add_pod("shop", "checkout-a", &[("app", "checkout")], Some("node-1"));
    let pb = playbook("name: dp\nsteps: [{delete_pod: {name: checkout-a}}]\n");
    let run = r.engine.start(request(pb, checkout(), at(0))).await?;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.reason);
    assert!(r.api.pod_terminating("shop", "checkout-a"));
    let result = run.steps[0].result.clone().unwrap_or(Value::Null);
    let summary = result["summary"].as_str().unwrap_or_default();
    assert!(summary.contains("checkout-a in shop terminating") && !summary.contains("deleted"), "{result}");
    assert_eq!(result["pods"][0]["terminating"]["grace_period_seconds"], 30, "{result}");
    assert!(result["pods"][0]["terminating"]["deletion_timestamp"].is_string(), "{result}");
    Ok(())
}

// Finding: rollback planned from the revision annotation, which lags the ReplicaSet
// renumbering ("no revision before 2").
#[tokio::test]
async fn rollback_plans_from_replicasets_while_the_revision_annotation_lags() -> Result<()> {
    let r = rig().await?;
    r.api.add_deployment_revision("shop", "checkout", "shop/checkout:v2");
    // The controller renumbers ReplicaSets but writes the Deployment late.
    r.api.hold(warden_tests::kube_api::Controller::DeploymentStatus);
    let mut pb = playbook("name: undo\nsteps:\n  - rollback: {}\n");
    pb.guards.cooldown = Some("1s".parse().map_err(anyhow::Error::msg)?);
    let run = r.engine.start(request(pb.clone(), checkout(), at(0))).await?;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.reason);
    r.api.run_controllers();
    assert_eq!(r.api.deployment_revision("shop", "checkout"), Some(2), "the annotation lags");
    // Undo the undo: from revision 3 (revision 1's ReplicaSet, renumbered) back to 2.
    let run = r.engine.start(request(pb, checkout(), at(100))).await?;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.reason);
    let plan = run.steps[0].plan.clone().unwrap_or(Value::Null);
    assert_eq!((plan["from_revision"].as_i64(), plan["to_revision"].as_i64()), (Some(3), Some(2)), "{plan}");
    assert_eq!(r.api.deployment_image("shop", "checkout").as_deref(), Some("shop/checkout:v2"));
    Ok(())
}

#[tokio::test]
async fn http_step_sends_an_idempotency_key_and_checks_the_status() -> Result<()> {
    let r = rig().await?;
    let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let s2 = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let s2 = s2.clone();
            async move {
                let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
                if let Ok(mut s) = s2.lock() {
                    s.push((key, body));
                }
                (axum::http::StatusCode::ACCEPTED, "ok")
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    let yaml = format!(
        "name: hook\nsteps:\n  - http: {{url: 'http://{addr}/hook', body: {{deployment: '{{{{ target.name }}}}'}}}}\n"
    );
    let run = r.engine.start(request(playbook(&yaml), checkout(), at(0))).await?;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.reason);
    let got = seen.lock().map_err(|e| anyhow::anyhow!("{e}"))?.clone();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, format!("run-{}-step-1", run.id));
    assert_eq!(serde_json::from_str::<Value>(&got[0].1)?, json!({"deployment": "checkout"}));

    let yaml = format!("name: hook2\nsteps:\n  - http: {{url: 'http://{addr}/hook', expect_status: [200]}}\n");
    let run = r.engine.start(request(playbook(&yaml), checkout(), at(0))).await?;
    assert_eq!(run.status, RunStatus::Failed);
    assert!(run.reason.as_deref().is_some_and(|x| x.contains("202")), "{:?}", run.reason);
    Ok(())
}

#[tokio::test]
async fn dry_run_sends_dry_run_writes_and_skips_verification() -> Result<()> {
    let r = rig().await?;
    let mut req = request(playbook(SCALE_VERIFY), checkout(), at(0));
    req.dry_run = true;
    let run = r.engine.start(req).await?;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.reason);
    assert_eq!(run.steps[1].status, StepStatus::Skipped);
    let writes = r.api.scale_writes("shop", "checkout");
    assert_eq!(writes.len(), 1);
    assert!(writes[0].is_dry_run());
    assert_eq!(r.api.replicas("shop", "checkout"), Some(2));
    assert!(!run.acted);
    Ok(())
}

#[tokio::test]
async fn guards_refuse_and_say_why() -> Result<()> {
    let r = rig().await?;
    let pb = playbook("name: g\nguards: {cooldown: 10m, max_attempts: 1, rate: {global: {max: 5, per: 1h}}}\nsteps: [{scale: {by: 1}}]\n");
    // No data.
    let mut req = request(pb.clone(), checkout(), at(0));
    req.has_data = Some(false);
    let run = r.engine.start(req).await?;
    assert_eq!(run.refusal.as_ref().map(|x| x.guard), Some(GuardName::NoData));
    // Denied namespace.
    r.api.add_deployment("kube-system", "coredns", 2);
    let run = r.engine.start(request(pb.clone(), Some(Target::deployment("kube-system", "coredns")), at(0))).await?;
    assert_eq!(run.refusal.as_ref().map(|x| x.guard), Some(GuardName::Namespace));
    assert_eq!(r.api.replicas("kube-system", "coredns"), Some(2));
    // Acts once, then cooldown.
    let mut req = request(pb.clone(), checkout(), at(0));
    req.trigger.incident_id = None;
    let run = r.engine.start(req).await?;
    assert_eq!(run.status, RunStatus::Succeeded);
    let run = r.engine.start(request(pb.clone(), checkout(), at(60))).await?;
    assert_eq!(run.status, RunStatus::Refused);
    let refusal = run.refusal.clone().context("refusal")?;
    assert_eq!(refusal.guard, GuardName::Cooldown);
    assert!(refusal.reason.contains("9m"), "{}", refusal.reason);
    // Bounds: at max replicas nothing is sent.
    let at_max = playbook("name: b\nsteps: [{scale: {by: 1, max: 3}}]\n");
    let run = r.engine.start(request(at_max, checkout(), at(5000))).await?;
    assert_eq!(run.refusal.as_ref().map(|x| x.guard), Some(GuardName::Bounds), "{run:?}");
    // Rate cap.
    let mut capped = pb.clone();
    capped.name = "capped".into();
    capped.guards.cooldown = Some("1s".parse().map_err(anyhow::Error::msg)?);
    capped.guards.rate = Some(serde_yaml::from_str("{global: {max: 1, per: 1h}}")?);
    let run = r.engine.start(request(capped, checkout(), at(1000))).await?;
    assert_eq!(run.refusal.as_ref().map(|x| x.guard), Some(GuardName::RateGlobal), "{run:?}");
    // Refusals are visible: stored, listed, audited.
    let refused = r.store.list_runs(Some(RunStatus::Refused), None, 50)?;
    assert!(refused.len() >= 4, "{refused:?}");
    let entry = r.store.audit_for_run(run.id)?;
    assert!(entry.iter().any(|e| e.detail["guard"] == "rate_global"), "{entry:?}");
    Ok(())
}

#[tokio::test]
async fn approvals_expire_and_one_run_per_target() -> Result<()> {
    let r = rig().await?;
    let pb = playbook(
        "name: ask\nguards: {autonomy: recommend, approval_ttl: 10m, cooldown: 1s}\nsteps: [{scale: {by: 1}}]\n",
    );
    let run = r.engine.start(request(pb.clone(), checkout(), at(0))).await?;
    assert_eq!(run.status, RunStatus::AwaitingApproval);
    assert_eq!(r.api.scale_writes("shop", "checkout").len(), 0, "acted before approval");
    // The pending run holds the target.
    let second = r.engine.start(request(pb.clone(), checkout(), at(10))).await?;
    assert_eq!(second.refusal.as_ref().map(|x| x.guard), Some(GuardName::TargetBusy), "{second:?}");
    // Approved in time: it acts, and the approver is recorded.
    let done = r.engine.decide(run.id, "user/alice", true, Some("go".into()), at(60)).await?;
    assert_eq!(done.status, RunStatus::Succeeded, "{:?}", done.reason);
    assert_eq!(done.approval.as_ref().and_then(|a| a.decided_by.clone()).as_deref(), Some("user/alice"));
    assert_eq!(r.api.replicas("shop", "checkout"), Some(3));
    // Too late: expired, nothing sent.
    let late = r.engine.start(request(pb.clone(), checkout(), at(1000))).await?;
    let e = r.engine.decide(late.id, "user/bob", true, None, at(1000 + 601)).await;
    assert!(e.is_err_and(|e| e.to_string().contains("expired")));
    let late = r.store.get_run(late.id)?.context("run")?;
    assert_eq!(late.status, RunStatus::Expired);
    assert_eq!(r.api.replicas("shop", "checkout"), Some(3));
    // Expiry also happens on the clock, without anyone deciding; a denial is recorded.
    let third = r.engine.start(request(pb.clone(), checkout(), at(3000))).await?;
    r.engine.tick(at(3000 + 601)).await?;
    assert_eq!(r.store.get_run(third.id)?.map(|x| x.status), Some(RunStatus::Expired));
    let fourth = r.engine.start(request(pb, checkout(), at(5000))).await?;
    let denied = r.engine.decide(fourth.id, "user/carol", false, None, at(5010)).await?;
    assert_eq!(denied.status, RunStatus::Denied);
    assert_eq!(r.api.replicas("shop", "checkout"), Some(3));
    Ok(())
}

/// A cluster whose scale write reaches the API server and then never answers: the process
/// "dies" with the request sent and its answer unrecorded.
struct DiesAfterScale(Arc<KubeCluster>);

#[async_trait]
impl Cluster for DiesAfterScale {
    async fn get_replicas(
        &self,
        t: &warden_playbooks::WorkloadRef,
    ) -> Result<warden_playbooks::ReplicaState, warden_playbooks::ClusterError> {
        self.0.get_replicas(t).await
    }
    async fn set_replicas(
        &self,
        t: &warden_playbooks::WorkloadRef,
        replicas: i32,
        dry_run: bool,
    ) -> Result<warden_playbooks::SetReplicasOutcome, warden_playbooks::ClusterError> {
        let _ = self.0.set_replicas(t, replicas, dry_run).await?;
        futures::future::pending().await
    }
    async fn deployment_info(
        &self,
        t: &warden_playbooks::WorkloadRef,
    ) -> Result<warden_playbooks::cluster::DeploymentInfo, warden_playbooks::ClusterError> {
        self.0.deployment_info(t).await
    }
}

#[tokio::test]
async fn a_run_killed_mid_step_resumes_without_repeating_a_step() -> Result<()> {
    let r = rig().await?;
    let pb = playbook("name: two\nsteps:\n  - scale: {by: 1}\n  - restart: {}\n");
    let mut dying = engine_on(&r.store, &r.cluster, &r.metrics)?;
    dying.cluster = Some(Arc::new(DiesAfterScale(r.cluster.clone())));
    let killed = tokio::time::timeout(Duration::from_secs(3), dying.start(request(pb, checkout(), at(0)))).await;
    assert!(killed.is_err(), "the run should have been cut off mid-step");
    drop(dying);
    assert_eq!(r.api.replicas("shop", "checkout"), Some(3), "the scale request reached the server");
    let stored = r.store.list_runs(None, None, 1)?.pop().context("the run was lost")?;
    assert_eq!(stored.status, RunStatus::Running);
    assert_eq!(stored.steps[0].status, StepStatus::Running);
    assert_eq!(stored.steps[0].plan.as_ref().map(|p| p["to"].clone()), Some(json!(3)));

    // A fresh engine on the same store (the restarted process) finishes the run.
    let store = Arc::new(Store::open(&r.dir.path().join("warden.db"))?);
    let fresh = engine_on(&store, &r.cluster, &r.metrics)?;
    let advanced = fresh.tick(at(30)).await?;
    assert_eq!(advanced.len(), 1);
    let run = &advanced[0];
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.reason);
    assert_eq!(r.api.replicas("shop", "checkout"), Some(3), "the scale step was applied twice");
    assert_eq!(run.steps[0].sends, 2, "the stored plan is sent again, not re-planned");
    let restarts: Vec<_> = r
        .api
        .requests()
        .into_iter()
        .filter(|q| q.method == "PATCH" && q.path.ends_with("/deployments/checkout"))
        .collect();
    assert_eq!(restarts.len(), 1, "restart sent {} times", restarts.len());
    assert!(audit_ok(&store)? > 0);
    Ok(())
}

#[tokio::test]
async fn cron_triggers_fire_on_the_clock() -> Result<()> {
    let r = rig().await?;
    let pbdir = r.dir.path().join("playbooks");
    std::fs::create_dir_all(&pbdir)?;
    std::fs::write(
        pbdir.join("nightly.yaml"),
        "name: nightly\ntarget: deployment\ntriggers:\n  - cron: {schedule: '0 0 3 * * *', timezone: Europe/Berlin, target: shop/checkout}\nguards: {autonomy: auto, cooldown: 1s}\nsteps: [{restart: {}}]\n",
    )?;
    let cfg_text = format!(
        "kubernetes: {{}}\nstore: {{sqlite: '{}'}}\nplaybooks: {{dir: '{}'}}\n",
        r.dir.path().join("warden.db").display(),
        pbdir.display()
    );
    let cfg = warden_agent::config::parse_str(&cfg_text, Path::new("w.yaml")).map_err(|e| anyhow::anyhow!("{e}"))?;
    let rem = Remediation::new(
        Arc::new(cfg),
        r.store.clone(),
        None,
        Some(r.cluster.clone() as Arc<dyn Cluster>),
        Arc::new(Recorder::default()),
    )
    .map_err(anyhow::Error::msg)?;
    // 03:00 in Berlin in winter is 02:00 UTC.
    let day = DateTime::parse_from_rfc3339("2026-01-15T01:59:00Z")?.with_timezone(&Utc);
    assert!(rem.on_clock(day, day + chrono::Duration::seconds(59)).await.is_empty());
    let fired = rem.on_clock(day + chrono::Duration::seconds(59), day + chrono::Duration::seconds(61)).await;
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].trigger.kind, "cron");
    assert_eq!(fired[0].status, RunStatus::Succeeded, "{:?}", fired[0].reason);
    assert!(rem.on_clock(day + chrono::Duration::seconds(61), day + chrono::Duration::hours(12)).await.is_empty());
    // Two days without a tick: the missed fires collapse into one.
    let later = rem.on_clock(day + chrono::Duration::hours(12), day + chrono::Duration::hours(60)).await;
    assert_eq!(later.len(), 1);
    Ok(())
}

#[tokio::test]
async fn audit_verify_detects_edits_and_deletions() -> Result<()> {
    let r = rig().await?;
    r.engine.start(request(playbook(SCALE_VERIFY), checkout(), at(0))).await?;
    let db = r.dir.path().join("warden.db");
    let bin = warden_tests::procs::warden_binary()?;
    let verify = || -> Result<(bool, String)> {
        let out = std::process::Command::new(&bin).args(["audit", "verify", "--db"]).arg(&db).output()?;
        Ok((
            out.status.success(),
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        ))
    };
    let (ok, text) = verify()?;
    assert!(ok, "{text}");
    assert!(text.contains("intact"), "{text}");

    let conn = rusqlite_free_edit(&db, "UPDATE audit SET detail = '{\"edited\":true}' WHERE seq = 3")?;
    assert_eq!(conn, 1);
    let (ok, text) = verify()?;
    assert!(!ok, "an edited entry passed: {text}");
    assert!(text.contains("entry 3"), "{text}");

    rusqlite_free_edit(&db, "DELETE FROM audit WHERE seq = 3")?;
    let (ok, text) = verify()?;
    assert!(!ok, "a deleted entry passed: {text}");
    assert!(text.contains("entry 3") && text.contains("missing"), "{text}");
    Ok(())
}

/// Edit the store behind Warden's back, as someone with write access to the file could.
fn rusqlite_free_edit(db: &Path, sql: &str) -> Result<usize> {
    let conn = rusqlite::Connection::open(db)?;
    Ok(conn.execute(sql, [])?)
}

/// The real thing: `warden playbook run` is SIGKILLed while its run waits between two
/// actions; `warden run` (the daemon) resumes the run from the store and finishes it, and no
/// step reaches the cluster twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_warden_process_resumes_in_the_daemon() -> Result<()> {
    use warden_tests::procs::{ChildProcess, Warden};
    let r = rig().await?;
    let dir = r.dir.path();
    let pbdir = dir.join("playbooks");
    std::fs::create_dir_all(&pbdir)?;
    std::fs::write(
        pbdir.join("two.yaml"),
        "name: two\nguards: {autonomy: auto}\nsteps:\n  - scale: {by: 1}\n  - wait: {for: 4s}\n  - restart: {}\n",
    )?;
    let db = dir.join("cli.db");
    let port = warden_tests::free_port()?;
    let kubeconfig = kube_api::write_kubeconfig(dir, &r.api.url())?;
    let config = format!(
        "kubernetes: {{kubeconfig: '{}', context: {}}}\nstore: {{sqlite: '{}'}}\nplaybooks: {{dir: '{}'}}\nserver: {{listen: '127.0.0.1:{port}', api_token: {{env: WARDEN_TEST_TOKEN}}}}\n",
        kubeconfig.display(),
        kube_api::KUBECONFIG_CONTEXT,
        db.display(),
        pbdir.display()
    );
    let cfg_path = dir.join("warden.yaml");
    std::fs::write(&cfg_path, &config)?;
    let bin = warden_tests::procs::warden_binary()?;
    let cfg_arg = cfg_path.display().to_string();
    let mut cli = ChildProcess::spawn(
        "playbook-run",
        &bin,
        ["playbook", "run", "two", "-c", cfg_arg.as_str(), "--target", "shop/checkout", "--as", "tester"],
        &[("RUST_LOG", "info")],
        dir,
    )?;
    // Kill it once the scale is applied and the run waits.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let waiting = db.exists()
            && Store::open(&db)?
                .list_runs(None, None, 1)?
                .first()
                .is_some_and(|run| run.steps.get(1).is_some_and(|s| s.status == StepStatus::Waiting));
        if waiting {
            break;
        }
        anyhow::ensure!(std::time::Instant::now() < deadline, "the run never reached its wait step");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cli.kill();
    assert_eq!(r.api.replicas("shop", "checkout"), Some(3));
    let run = Store::open(&db)?.list_runs(None, None, 1)?.pop().context("run")?;
    assert_eq!(run.status, RunStatus::Running);

    // The daemon picks the run up from the store and finishes it.
    let daemon = Warden::start(dir, &config, &[("WARDEN_TEST_TOKEN", "t0ken")], port, "t0ken").await?;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let run = loop {
        let run = Store::open(&db)?.get_run(run.id)?.context("run")?;
        if run.status.is_terminal() {
            break run;
        }
        anyhow::ensure!(std::time::Instant::now() < deadline, "the daemon did not finish the run: {run:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.reason);
    assert_eq!(run.steps[0].sends, 1, "the scale step was sent again");
    assert_eq!(r.api.scale_writes("shop", "checkout").len(), 1);
    assert_eq!(r.api.replicas("shop", "checkout"), Some(3));
    let restarts = r
        .api
        .requests()
        .into_iter()
        .filter(|q| q.method == "PATCH" && q.path.ends_with("/deployments/checkout"))
        .count();
    assert_eq!(restarts, 1);
    assert_eq!(run.trigger.actor, "user/tester");
    daemon.stop_ok().await
}

#[tokio::test]
async fn observe_records_the_plan_and_sends_nothing() -> Result<()> {
    let mut r = rig().await?;
    r.engine.defaults.autonomy = Autonomy::Observe;
    let run = r.engine.start(request(playbook(SCALE_VERIFY), checkout(), at(0))).await?;
    assert_eq!(run.status, RunStatus::Observed);
    assert!(run.steps.iter().all(|s| s.status == StepStatus::Skipped));
    assert_eq!(run.steps[0].plan.as_ref().map(|p| (p["from"].clone(), p["to"].clone())), Some((json!(2), json!(3))));
    assert!(r.api.scale_writes("shop", "checkout").is_empty());
    assert_eq!(r.api.replicas("shop", "checkout"), Some(2));
    Ok(())
}

#[tokio::test]
async fn alert_triggers_notify_steps_and_attempts_per_incident() -> Result<()> {
    let r = rig().await?;
    let pbdir = r.dir.path().join("playbooks");
    std::fs::create_dir_all(&pbdir)?;
    std::fs::write(
        pbdir.join("crashloop.yaml"),
        "name: crashloop\ntriggers:\n  - alert: {labels: {alertname: KubePodCrashLooping}}\nguards: {autonomy: auto, max_attempts: 1, cooldown: 1s}\nsteps:\n  - notify: {message: '{{ alert.labels.deployment }} crash-loops ({{ alert.name }}); restarting'}\n  - restart: {}\n",
    )?;
    let cfg_text = format!("kubernetes: {{}}\nplaybooks: {{dir: '{}'}}\n", pbdir.display());
    let cfg = warden_agent::config::parse_str(&cfg_text, Path::new("w.yaml")).map_err(|e| anyhow::anyhow!("{e}"))?;
    let recorder = Arc::new(Recorder::default());
    let rem = Remediation::new(
        Arc::new(cfg),
        r.store.clone(),
        None,
        Some(r.cluster.clone() as Arc<dyn Cluster>),
        recorder.clone(),
    )
    .map_err(anyhow::Error::msg)?;
    let labels: BTreeMap<String, String> =
        [("alertname", "KubePodCrashLooping"), ("namespace", "shop"), ("deployment", "checkout")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    let other: BTreeMap<String, String> =
        [("alertname", "Watchdog")].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    assert!(rem.on_alert(&other, Some(7), at(0)).await.is_empty());
    let runs = rem.on_alert(&labels, Some(7), at(0)).await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status, RunStatus::Succeeded, "{:?}", runs[0].reason);
    let seen = recorder.seen.lock().map_err(|e| anyhow::anyhow!("{e}"))?.clone();
    assert!(seen.iter().any(|(_, t)| t == "checkout crash-loops (KubePodCrashLooping); restarting"), "{seen:?}");
    // The same incident again: max_attempts 1 refuses.
    let again = rem.on_alert(&labels, Some(7), at(60)).await;
    assert_eq!(again[0].refusal.as_ref().map(|x| x.guard), Some(GuardName::MaxAttempts), "{:?}", again[0]);
    Ok(())
}
