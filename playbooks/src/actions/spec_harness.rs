//! The action spec (`docs/specs/action.md`) as a test: every registered action is planned
//! from its [`Action::EXAMPLE`] and applied against an in-memory cluster, and must keep the
//! contract: it loads and checks clean, its plan round-trips through the stored form, a
//! dry run changes nothing, applying the same plan twice changes nothing more, a mutating
//! action's read-back never denies an applied plan, an inverse restores the state and is
//! undone by its own inverse, and no action writes the run store.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use serde_json::{json, Value};
use warden_connectors::prometheus::{MetricSource, RangeResult, Sample, Series};

use super::*;
use crate::audit::AuditEvent;
use crate::claim::{ClaimDecision, RunClaim};
use crate::cluster::{
    ClusterErrorKind, DeleteResult, DeploymentInfo, JobCreated, JobPhase, JobStatus, PodInfo, ReplicaState,
    RollbackResult, SetReplicasOutcome,
};
use crate::engine::{HistoryQuery, HttpCall, HttpReply, Notice, RunStoreError, StoreResult, WebhookError};
use crate::guards::{GuardSettings, History};
use crate::run::{RunStatus, TriggerInfo};
use crate::spec::Autonomy;
use crate::template::Vars;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One namespace `shop` with the Deployment `checkout` (2 replicas, revision 3, one
/// container `app` with a 256Mi memory limit), the pod `pod-a`, the node `node-1` and Jobs.
struct World {
    replicas: i32,
    revision: i64,
    deployment: Value,
    pods: BTreeMap<String, String>,
    nodes: BTreeMap<String, bool>,
    jobs: BTreeMap<String, Value>,
    /// Changes that took effect.
    changes: u32,
}

impl Default for World {
    fn default() -> Self {
        Self {
            replicas: 2,
            revision: 3,
            deployment: json!({"spec": {"replicas": 2, "template": {"metadata": {"annotations": {}}, "spec": {"containers": [
                {"name": "app", "resources": {"limits": {"memory": "256Mi"}}}
            ]}}}}),
            pods: BTreeMap::from([("pod-a".to_string(), "uid-a".to_string())]),
            nodes: BTreeMap::from([("node-1".to_string(), false)]),
            jobs: BTreeMap::new(),
            changes: 0,
        }
    }
}

#[derive(Default)]
struct SpecCluster(Mutex<World>);

impl SpecCluster {
    fn changes(&self) -> u32 {
        lock(&self.0).changes
    }
}

/// A strategic merge as far as the examples need it: maps merged, `null` removes, lists of
/// named items merged by name (`$patch: delete` removes one), other values replaced.
fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (Value::Array(t), Value::Array(p)) if p.iter().all(|i| i.get("name").is_some()) => {
            for item in p {
                let pos = t.iter().position(|c| c.get("name") == item.get("name"));
                match (pos, item.get("$patch").and_then(Value::as_str)) {
                    (Some(i), Some("delete")) => {
                        t.remove(i);
                    }
                    (None, Some("delete")) => {}
                    (Some(i), _) => merge(&mut t[i], item),
                    (None, _) => t.push(item.clone()),
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

#[async_trait]
impl Cluster for SpecCluster {
    async fn get_replicas(&self, _t: &WorkloadRef) -> Result<ReplicaState, ClusterError> {
        let w = lock(&self.0);
        Ok(ReplicaState { desired: w.replicas, current: w.replicas })
    }
    async fn set_replicas(
        &self,
        _t: &WorkloadRef,
        replicas: i32,
        dry_run: bool,
    ) -> Result<SetReplicasOutcome, ClusterError> {
        let mut w = lock(&self.0);
        if !dry_run && w.replicas != replicas {
            w.replicas = replicas;
            w.changes += 1;
        }
        Ok(SetReplicasOutcome { replicas, dry_run, response: json!({}) })
    }
    async fn deployment_info(&self, _t: &WorkloadRef) -> Result<DeploymentInfo, ClusterError> {
        let w = lock(&self.0);
        Ok(DeploymentInfo { labels: BTreeMap::new(), revision: Some(w.revision), replicas: w.replicas })
    }
    async fn previous_revision(&self, _t: &WorkloadRef) -> Result<Option<i64>, ClusterError> {
        let w = lock(&self.0);
        Ok((w.revision > 1).then_some(w.revision - 1))
    }
    async fn rollback(&self, _t: &WorkloadRef, to: Option<i64>, dry_run: bool) -> Result<RollbackResult, ClusterError> {
        let mut w = lock(&self.0);
        let from = w.revision;
        let to = to.unwrap_or(from - 1);
        let changed = from != to;
        if changed && !dry_run {
            w.revision = to;
            w.changes += 1;
        }
        Ok(RollbackResult { from_revision: from, to_revision: to, changed, response: json!({}) })
    }
    async fn restart(&self, _t: &WorkloadRef, restarted_at: &str, dry_run: bool) -> Result<Value, ClusterError> {
        let patch = json!({"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": restarted_at}}}}});
        self.patch_deployment(_t, &patch, dry_run).await
    }
    async fn list_pods(&self, _ns: &str, _sel: &str) -> Result<Vec<PodInfo>, ClusterError> {
        let w = lock(&self.0);
        Ok(w.pods
            .iter()
            .map(|(n, u)| PodInfo { name: n.clone(), uid: u.clone(), labels: BTreeMap::new(), node: None })
            .collect())
    }
    async fn get_pod(&self, _ns: &str, name: &str) -> Result<Option<PodInfo>, ClusterError> {
        let w = lock(&self.0);
        Ok(w.pods.get(name).map(|u| PodInfo { name: name.into(), uid: u.clone(), labels: BTreeMap::new(), node: None }))
    }
    async fn delete_pod(
        &self,
        _ns: &str,
        name: &str,
        uid: Option<&str>,
        dry_run: bool,
    ) -> Result<DeleteResult, ClusterError> {
        let mut w = lock(&self.0);
        let present = w.pods.get(name).is_some_and(|u| uid.is_none_or(|want| want == u));
        if present && !dry_run {
            w.pods.remove(name);
            w.changes += 1;
        }
        Ok(DeleteResult { already_gone: !present, terminating: None, response: json!({}) })
    }
    async fn node_unschedulable(&self, node: &str) -> Result<bool, ClusterError> {
        Ok(lock(&self.0).nodes.get(node).copied().unwrap_or(false))
    }
    async fn set_node_unschedulable(
        &self,
        node: &str,
        unschedulable: bool,
        dry_run: bool,
    ) -> Result<Value, ClusterError> {
        let mut w = lock(&self.0);
        if !dry_run && w.nodes.get(node).copied().unwrap_or(false) != unschedulable {
            w.nodes.insert(node.into(), unschedulable);
            w.changes += 1;
        }
        Ok(json!({}))
    }
    async fn create_job(&self, _ns: &str, job: &Value, dry_run: bool) -> Result<JobCreated, ClusterError> {
        let mut w = lock(&self.0);
        let name = job.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
        let created = !w.jobs.contains_key(&name);
        if created && !dry_run {
            w.jobs.insert(name, job.clone());
            w.changes += 1;
        }
        Ok(JobCreated { created, response: json!({}) })
    }
    async fn job_status(&self, _ns: &str, name: &str) -> Result<JobStatus, ClusterError> {
        match lock(&self.0).jobs.get(name) {
            Some(_) => Ok(JobStatus { phase: JobPhase::Succeeded, status: json!({"succeeded": 1}) }),
            None => Err(ClusterError::new(ClusterErrorKind::NotFound, format!("job {name}"))),
        }
    }
    async fn read_deployment(&self, _t: &WorkloadRef) -> Result<Value, ClusterError> {
        Ok(lock(&self.0).deployment.clone())
    }
    async fn patch_deployment(&self, _t: &WorkloadRef, patch: &Value, dry_run: bool) -> Result<Value, ClusterError> {
        let mut w = lock(&self.0);
        let mut next = w.deployment.clone();
        merge(&mut next, patch);
        if !dry_run && next != w.deployment {
            w.deployment = next.clone();
            w.changes += 1;
        }
        Ok(next)
    }
}

/// Counts every write; an action must make none (the engine writes the run).
#[derive(Default)]
struct CountingStore(AtomicUsize);

impl RunStore for CountingStore {
    fn insert_run(&self, _r: &Run, _a: &[AuditEvent], _o: &str) -> StoreResult<RunClaim> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Err(RunStoreError::message("actions never write runs"))
    }
    fn save_run(&self, _r: &Run, _a: &[AuditEvent], _c: &RunClaim) -> StoreResult<()> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Err(RunStoreError::message("actions never write runs"))
    }
    fn get_run(&self, _id: i64) -> StoreResult<Option<Run>> {
        Ok(None)
    }
    fn claim_run(&self, id: i64, _o: &str, _ttl: Duration) -> StoreResult<ClaimDecision> {
        Err(RunStoreError::NoRun(id))
    }
    fn renew_claim(&self, _c: &RunClaim, _ttl: Duration) -> StoreResult<()> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn release_claim(&self, _c: &RunClaim) -> StoreResult<()> {
        Ok(())
    }
    fn due_runs(&self, _now: DateTime<Utc>) -> StoreResult<Vec<i64>> {
        Ok(Vec::new())
    }
    fn history(&self, _q: &HistoryQuery) -> StoreResult<History> {
        Ok(History::default())
    }
    fn installation_id(&self) -> StoreResult<Option<String>> {
        Ok(Some("0f3a9c7e-spec".into()))
    }
}

struct Quiet;
impl Notices for Quiet {
    fn notice(&self, _run: &Run, _kind: Notice, _text: &str) {}
}

struct Hook;
#[async_trait]
impl Webhook for Hook {
    async fn call(&self, _call: &HttpCall) -> Result<HttpReply, WebhookError> {
        Ok(HttpReply { status: 200, body: String::new() })
    }
}

struct Flat;
#[async_trait]
impl MetricSource for Flat {
    async fn query_range(
        &self,
        _q: &str,
        start: DateTime<Utc>,
        _end: DateTime<Utc>,
        _s: Duration,
    ) -> warden_connectors::Result<RangeResult> {
        let points = vec![Sample { timestamp_ms: start.timestamp_millis(), value: 1.0 }];
        Ok(RangeResult { series: vec![Series { labels: BTreeMap::new(), points }], warnings: Vec::new() })
    }
}

fn sample_run(dry_run: bool) -> Run {
    let now = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).single().unwrap_or_default();
    let mut vars = Vars::default();
    vars.set("run.id", "1".to_string());
    vars.set("target.namespace", "shop".to_string());
    vars.set("target.name", "checkout".to_string());
    Run {
        id: 1,
        playbook: "spec".into(),
        spec: crate::spec::Playbook {
            name: "spec".into(),
            description: String::new(),
            target: TargetKind::Deployment,
            params: BTreeMap::new(),
            triggers: Vec::new(),
            guards: crate::spec::Guards::default(),
            steps: Vec::new(),
            revert: None,
        },
        params: BTreeMap::new(),
        target: Some(Target::deployment("shop", "checkout")),
        trigger: TriggerInfo {
            kind: "manual".into(),
            actor: "user/spec".into(),
            incident_id: None,
            detail: Value::Null,
        },
        vars,
        guards: GuardSettings { autonomy: Autonomy::Auto, ..GuardSettings::default() },
        dry_run,
        status: RunStatus::Running,
        reason: None,
        refusal: None,
        approval: None,
        steps: Vec::new(),
        revert_steps: Vec::new(),
        acted: false,
        created_at: now,
        updated_at: now,
        wake_at: None,
    }
}

struct Rig {
    cluster: SpecCluster,
    store: CountingStore,
    run: Run,
}

impl Rig {
    fn new(dry_run: bool) -> Self {
        Self { cluster: SpecCluster::default(), store: CountingStore::default(), run: sample_run(dry_run) }
    }

    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            run: &self.run,
            cluster: Some(&self.cluster),
            metrics: Some(&Flat),
            webhook: Some(&Hook),
            notices: &Quiet,
            store: &self.store,
            now: self.run.created_at,
            phase: Phase::Main,
            index: 0,
            key: "run-1-step-1",
        }
    }
}

/// Check one action against the spec; the problems found, empty when it complies.
pub(crate) async fn check_action<A: Action>(field: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if A::KEY != field {
        problems.push(format!("registered as `{field}` but its KEY is `{}`", A::KEY));
    }
    let yaml = format!("name: spec\nsteps:\n  - {}: {}\n", A::KEY, A::EXAMPLE);
    if let Err(e) = crate::load::parse_playbook(&yaml, Path::new("spec.yaml")) {
        problems.push(format!("its EXAMPLE does not load: {e}"));
    }
    let step: A = match serde_yaml::from_str(A::EXAMPLE) {
        Ok(s) => s,
        Err(e) => return vec![format!("its EXAMPLE does not parse: {e}")],
    };

    // A dry run changes nothing.
    let dry = Rig::new(true);
    if let Ok(Planned::Request(plan)) = step.plan(&dry.ctx()).await {
        if let Err(e) = A::apply(&plan, &dry.ctx()).await {
            problems.push(format!("a dry run fails: {e:?}"));
        }
        if dry.cluster.changes() != 0 {
            problems.push("a dry run changed the cluster".into());
        }
    }

    let rig = Rig::new(false);
    let cx = rig.ctx();
    let plan = match step.plan(&cx).await {
        Ok(Planned::Request(p)) => p,
        other => return [problems, vec![format!("its EXAMPLE does not plan to a request: {other:?}")]].concat(),
    };
    if rig.cluster.changes() != 0 {
        problems.push("planning changed the cluster (plans are reads only)".into());
    }
    // The stored form round-trips.
    let stored = encode(&plan);
    match decode::<A::Plan>(A::KEY, &stored) {
        Ok(back) if back == plan && encode(&back) == stored => {}
        other => problems.push(format!("the plan does not round-trip through {stored}: {other:?}")),
    }
    if A::describe(&plan).trim().is_empty() {
        problems.push("describe() is empty".into());
    }
    // Idempotent: the same plan a second time changes nothing more.
    if let Err(e) = A::apply(&plan, &cx).await {
        problems.push(format!("applying its plan fails: {e:?}"));
    }
    let once = rig.cluster.changes();
    if let Err(e) = A::apply(&plan, &cx).await {
        problems.push(format!("applying its plan a second time fails: {e:?}"));
    }
    if rig.cluster.changes() != once {
        problems.push("applying the same plan twice changed the cluster twice (not idempotent)".into());
    }
    if !A::MUTATING && once != 0 {
        problems.push("it is not MUTATING but changed the cluster".into());
    }
    if A::MUTATING && once == 0 && A::interrupted(&plan).is_none() {
        problems.push("it is MUTATING but its example changed nothing".into());
    }
    // Read-back never denies an applied plan (that would send it again).
    let read = A::read_back(&plan, &rig.cluster).await;
    if matches!(read, Ok(Some(false)) | Err(_)) {
        problems.push(format!("reading back an applied plan answers {read:?}"));
    }
    if !A::MUTATING && matches!(read, Ok(Some(_))) {
        problems.push("a step that changes nothing has nothing to read back".into());
    }
    // The inverse restores the state and is undone by its own inverse.
    if let Some(inverse) = A::inverse(&plan) {
        if A::inverse(&inverse).as_ref() != Some(&plan) {
            problems.push("the inverse of the inverse is not the plan".into());
        }
        if let Err(e) = A::apply(&inverse, &cx).await {
            problems.push(format!("applying the inverse fails: {e:?}"));
        }
        if let Ok(Some(true)) = A::read_back(&plan, &rig.cluster).await {
            problems.push("after the inverse, the plan still reads back as applied".into());
        }
    } else if A::MUTATING && A::describe(&plan).is_empty() {
        problems.push("describe() is empty".into());
    }
    if rig.store.0.load(Ordering::SeqCst) + dry.store.0.load(Ordering::SeqCst) != 0 {
        problems.push("it wrote to the run store (only the engine writes runs, under the claim)".into());
    }
    problems
}

#[tokio::test]
async fn every_registered_action_keeps_the_action_spec() {
    let results = check_every_action().await;
    assert_eq!(results.len(), ALL_ACTIONS.len());
    let failing: Vec<String> =
        results.iter().filter(|(_, p)| !p.is_empty()).map(|(k, p)| format!("{k}: {}", p.join("; "))).collect();
    assert!(failing.is_empty(), "actions that break the spec:\n{}", failing.join("\n"));
}

#[test]
fn keys_are_unique_and_match_the_step_fields() {
    let mut seen = std::collections::BTreeSet::new();
    for k in ALL_ACTIONS {
        assert_eq!(k.key(), k.field(), "{k:?}");
        assert!(seen.insert(k.key()), "{} twice", k.key());
        assert_eq!(ActionKind::from_key(k.key()), Some(*k));
    }
    assert_eq!(ACTION_KEYS.len(), ALL_ACTIONS.len());
    assert_eq!(ActionKind::from_key("drain"), None);
    for key in ["scale", "rollback", "restart", "delete_pod", "cordon", "run_job", "patch", "http"] {
        assert!(is_mutating(key), "{key}");
    }
    for key in ["wait", "verify", "notify", "drain"] {
        assert!(!is_mutating(key), "{key}");
    }
    assert_eq!(audit_kind("verify"), AuditKind::Verify);
    assert_eq!(audit_kind("scale"), AuditKind::Response);
}

/// An action that breaks the spec: every apply adds a replica, so sending its plan again
/// after a crash would scale twice.
#[derive(Debug, serde::Deserialize)]
struct Bump {}

#[async_trait]
impl Action for Bump {
    const KEY: &'static str = "bump";
    const MUTATING: bool = true;
    type Plan = i64;
    const EXAMPLE: &'static str = "{}";

    fn check(&self, _c: &mut Checker<'_>, _at: &str) {}

    async fn plan(&self, _cx: &Ctx<'_>) -> Result<Planned<i64>, StepError> {
        Ok(Planned::Request(1))
    }

    async fn apply(by: &i64, cx: &Ctx<'_>) -> Result<Sent, StepError> {
        let t = cx.deployment_target()?;
        let now = cx.cluster()?.get_replicas(&t).await?.desired;
        let to = now + i32::try_from(*by).unwrap_or(0);
        cx.cluster()?.set_replicas(&t, to, cx.dry_run()).await?;
        Ok(Sent::Done(json!({})))
    }

    fn describe(by: &i64) -> String {
        format!("add {by} replica(s)")
    }
}

#[tokio::test]
async fn the_harness_finds_an_action_that_is_not_idempotent() {
    let problems = check_action::<Bump>("bump").await;
    assert!(problems.iter().any(|p| p.contains("not idempotent")), "{problems:?}");
    // Not registered, so its example does not load as a step either.
    assert!(problems.iter().any(|p| p.contains("does not load")), "{problems:?}");
}

/// Plans as the engine stored them before plans were typed (one per action, in the JSON
/// the old engine wrote): each loads as its typed plan, is described as before, and is
/// stored back unchanged.
#[test]
fn plans_stored_before_plans_were_typed_still_load() {
    let stored = [
        (
            "scale",
            json!({"namespace": "shop", "name": "checkout", "from": 2, "to": 3}),
            "scale shop/checkout from 2 to 3 replicas",
        ),
        (
            "rollback",
            json!({"namespace": "shop", "name": "checkout", "from_revision": 5, "to_revision": 4}),
            "roll shop/checkout back from revision 5 to 4",
        ),
        (
            "restart",
            json!({"namespace": "shop", "name": "checkout", "restarted_at": "2026-03-01T12:00:00Z"}),
            "restart shop/checkout",
        ),
        (
            "delete_pod",
            json!({"namespace": "shop", "pods": [{"name": "pod-a", "uid": "u-1"}, {"name": "pod-b", "uid": "u-2"}]}),
            "delete pod(s) pod-a, pod-b in shop",
        ),
        ("cordon", json!({"node": "node-1", "unschedulable": true, "previous": false}), "cordon node node-1"),
        ("cordon", json!({"node": "node-1", "unschedulable": false, "previous": true}), "uncordon node node-1"),
        (
            "run_job",
            json!({"namespace": "ml", "name": "retrain-1a2b3c4d-7-1", "job": {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "retrain-1a2b3c4d-7-1"}},
                   "deadline": "2026-03-01T12:30:00Z", "poll_secs": 10.0}),
            "run Job ml/retrain-1a2b3c4d-7-1 and wait for it",
        ),
        (
            "patch",
            json!({"namespace": "shop", "name": "checkout", "patch": {"spec": {"replicas": 1}}, "inverse": {"spec": {"replicas": 2}}}),
            "patch shop/checkout with {\"spec\":{\"replicas\":1}}",
        ),
        (
            "http",
            json!({"call": {"method": "POST", "url": "http://127.0.0.1:9/hook", "headers": {"X-Team": "shop"}, "body": {"a": 1}, "timeout_secs": 10.0}, "expect_status": [200, 202]}),
            "POST http://127.0.0.1:9/hook",
        ),
        (
            "http",
            json!({"call": {"method": "GET", "url": "http://127.0.0.1:9/", "headers": {}, "body": null, "timeout_secs": 2.5}, "expect_status": null}),
            "GET http://127.0.0.1:9/",
        ),
        ("wait", json!({"until": "2026-03-01T12:05:00Z"}), "wait"),
        (
            "verify",
            json!({"query": "up == bool 1", "start": "2026-03-01T12:00:00Z", "end": "2026-03-01T12:05:00Z", "step_secs": 30.0}),
            "verify `up == bool 1`",
        ),
        ("notify", json!({"message": "scaled"}), "notify"),
    ];
    for (action, json, words) in stored {
        let plan = Plan::decode(action, &json).unwrap_or_else(|e| panic!("{action}: {e}"));
        assert_eq!(plan.kind().key(), action);
        assert_eq!(plan.to_json(), json, "{action} is stored back unchanged");
        assert_eq!(plan.describe(), words);
        assert_eq!(describe_plan(action, &json), words);
    }
    // The inverse of a stored plan is the one the old engine computed.
    let cordoned =
        Plan::decode("cordon", &json!({"node": "node-1", "unschedulable": true, "previous": false})).expect("cordon");
    assert_eq!(
        cordoned.inverse().map(|p| p.to_json()),
        Some(json!({"node": "node-1", "unschedulable": false, "previous": true}))
    );
    let already =
        Plan::decode("cordon", &json!({"node": "node-1", "unschedulable": true, "previous": true})).expect("cordon");
    assert_eq!(already.inverse(), None, "a node that was cordoned already is not uncordoned");
    let patched =
        Plan::decode("patch", &json!({"namespace": "s", "name": "c", "patch": {"a": 1}, "inverse": {"a": null}}))
            .expect("patch");
    assert_eq!(
        patched.inverse().map(|p| p.to_json()),
        Some(json!({"namespace": "s", "name": "c", "patch": {"a": null}, "inverse": {"a": 1}}))
    );
    // An unknown action and a plan that lost a field are errors, never a silent default.
    assert!(Plan::decode("drain", &json!({})).is_err());
    let e =
        Plan::decode("scale", &json!({"namespace": "shop", "name": "checkout", "from": 2})).expect_err("incomplete");
    assert!(e.to_string().contains("stored scale plan"), "{e}");
    assert_eq!(describe_plan("drain", &json!({})), "drain");
}

/// `docs/api.yaml` lists the action keys in two enums (a run's `kind`, a step's `action`):
/// both are exactly the registered keys, in order (the first also `null`).
#[test]
fn the_api_description_lists_every_action() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/api.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let lists: Vec<Vec<&str>> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("enum: [")?.split_once(']').map(|(list, _)| list))
        .filter(|list| list.starts_with("scale,"))
        .map(|list| list.split(',').map(str::trim).filter(|k| *k != "null").collect())
        .collect();
    assert_eq!(lists.len(), 2, "the run's kind and the step's action in {}", path.display());
    for list in lists {
        assert_eq!(list, ACTION_KEYS, "docs/api.yaml lists other actions than the registry");
    }
}
