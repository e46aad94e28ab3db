//! Unit tests of the engine with in-memory fakes: a cluster of Deployments and nodes, a run
//! store with claims and target locks, a metrics source, a webhook and a notice recorder.
//! They pin the engine's contract independently of the agent: the plan is stored before it
//! is sent, failures follow the error policy, resumed steps send the stored plan, a lost
//! claim stores nothing.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use serde_json::{json, Value};
use warden_connectors::prometheus::{MetricSource, RangeResult, Sample, Series};

use super::*;
use crate::audit::AuditEvent;
use crate::claim::{check_fence, decide_claim, ClaimDecision, ClaimState, RunClaim};
use crate::cluster::{ClusterError, ClusterErrorKind, DeploymentInfo, ReplicaState, SetReplicasOutcome, WorkloadRef};
use crate::guards::{GuardSettings, History};
use crate::load::parse_playbook;
use crate::run::{Run, RunStatus, StepStatus, Target, TriggerInfo};
use crate::spec::Autonomy;
use crate::template::Vars;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------------------
// Fakes
// ---------------------------------------------------------------------------------------

#[derive(Default)]
struct StoreState {
    runs: BTreeMap<i64, Run>,
    claims: BTreeMap<i64, ClaimState>,
    locks: BTreeMap<String, i64>,
    audit: Vec<AuditEvent>,
    /// After this many more successful saves, the next save finds the claim taken.
    steal_after: Option<usize>,
}

/// An in-memory run store with claims (wall-clock expiry) and target locks.
#[derive(Default)]
struct MemStore(Mutex<StoreState>);

impl MemStore {
    fn run(&self, id: i64) -> Run {
        lock(&self.0).runs.get(&id).cloned().expect("stored run")
    }

    fn audit_kinds(&self) -> Vec<AuditKind> {
        lock(&self.0).audit.iter().map(|e| e.kind).collect()
    }

    fn put(&self, run: Run) {
        lock(&self.0).runs.insert(run.id, run);
    }
}

impl RunStore for MemStore {
    fn insert_run(&self, run: &Run, audit: &[AuditEvent], owner: &str) -> StoreResult<RunClaim> {
        let mut s = lock(&self.0);
        let key = run.target.as_ref().map(Target::lock_key);
        if let Some(k) = key.as_ref().filter(|_| !run.status.is_terminal()) {
            if let Some(holder) = s.locks.get(k) {
                return Err(RunStoreError::TargetBusy { run_id: *holder });
            }
        }
        let id = s.runs.keys().next_back().copied().unwrap_or(0) + 1;
        let mut stored = run.clone();
        stored.id = id;
        s.runs.insert(id, stored);
        if let Some(k) = key.filter(|_| !run.status.is_terminal()) {
            s.locks.insert(k, id);
        }
        s.audit.extend(audit.iter().cloned());
        let ClaimDecision::Granted(claim) = decide_claim(id, &ClaimState::default(), owner, Utc::now(), CLAIM_TTL)
        else {
            return Err(RunStoreError::message("a new run is always granted"));
        };
        s.claims.insert(
            id,
            ClaimState { owner: Some(owner.into()), token: claim.token.0, expires_at: Some(claim.expires_at) },
        );
        Ok(claim)
    }

    fn save_run(&self, run: &Run, audit: &[AuditEvent], claim: &RunClaim) -> StoreResult<()> {
        let mut s = lock(&self.0);
        match s.steal_after {
            Some(0) => {
                let state = s.claims.entry(run.id).or_default();
                state.owner = Some("another-task".into());
                state.token += 1;
                s.steal_after = None;
            }
            Some(n) => s.steal_after = Some(n - 1),
            None => {}
        }
        check_fence(&s.claims.get(&run.id).cloned().unwrap_or_default(), claim)?;
        if run.status.is_terminal() {
            s.locks.retain(|_, holder| *holder != run.id);
        }
        s.runs.insert(run.id, run.clone());
        s.audit.extend(audit.iter().cloned());
        Ok(())
    }

    fn get_run(&self, id: i64) -> StoreResult<Option<Run>> {
        Ok(lock(&self.0).runs.get(&id).cloned())
    }

    fn claim_run(&self, id: i64, owner: &str, ttl: Duration) -> StoreResult<ClaimDecision> {
        let mut s = lock(&self.0);
        if !s.runs.contains_key(&id) {
            return Err(RunStoreError::NoRun(id));
        }
        let state = s.claims.entry(id).or_default();
        let d = decide_claim(id, state, owner, Utc::now(), ttl);
        if let ClaimDecision::Granted(c) = &d {
            *state = ClaimState { owner: Some(owner.into()), token: c.token.0, expires_at: Some(c.expires_at) };
        }
        Ok(d)
    }

    fn renew_claim(&self, claim: &RunClaim, _ttl: Duration) -> StoreResult<()> {
        let s = lock(&self.0);
        check_fence(&s.claims.get(&claim.run_id).cloned().unwrap_or_default(), claim)?;
        Ok(())
    }

    fn release_claim(&self, claim: &RunClaim) -> StoreResult<()> {
        let mut s = lock(&self.0);
        if let Some(state) = s.claims.get_mut(&claim.run_id) {
            if check_fence(state, claim).is_ok() {
                state.owner = None;
            }
        }
        Ok(())
    }

    fn due_runs(&self, now: DateTime<Utc>) -> StoreResult<Vec<i64>> {
        let s = lock(&self.0);
        Ok(s.runs
            .values()
            .filter(|r| match r.status {
                RunStatus::Running | RunStatus::Reverting => r.wake_at.is_none_or(|w| w <= now),
                RunStatus::AwaitingApproval => r.wake_at.is_some_and(|w| w <= now),
                _ => false,
            })
            .map(|r| r.id)
            .collect())
    }

    fn history(&self, _q: &HistoryQuery) -> StoreResult<History> {
        Ok(History::default())
    }
}

/// A failure the fake cluster answers to the next replica write.
#[derive(Debug, Clone, Copy)]
struct WriteFailure {
    kind: ClusterErrorKind,
    /// The write takes effect although the answer is an error (a lost answer).
    applies: bool,
}

#[derive(Default)]
struct ClusterState {
    replicas: BTreeMap<String, i32>,
    /// Replica writes in order: (`ns/name`, replicas).
    writes: Vec<(String, i32)>,
    failures: VecDeque<WriteFailure>,
    /// Every write of this replica count fails with this kind and changes nothing.
    sticky: Option<(i32, ClusterErrorKind)>,
    /// The stored step states at the moment of each write.
    seen_stored: Vec<Option<(StepStatus, Option<Value>)>>,
}

/// Deployments with replica counts; every write also notes what the store held for the
/// run's first step at that moment.
struct FakeCluster {
    state: Mutex<ClusterState>,
    store: Arc<MemStore>,
}

impl FakeCluster {
    fn new(store: Arc<MemStore>, replicas: &[(&str, i32)]) -> Self {
        let state = ClusterState {
            replicas: replicas.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            ..ClusterState::default()
        };
        Self { state: Mutex::new(state), store }
    }

    fn fail_next(&self, kind: ClusterErrorKind, applies: bool) {
        lock(&self.state).failures.push_back(WriteFailure { kind, applies });
    }

    fn writes(&self) -> Vec<(String, i32)> {
        lock(&self.state).writes.clone()
    }

    fn replicas(&self, key: &str) -> Option<i32> {
        lock(&self.state).replicas.get(key).copied()
    }
}

#[async_trait]
impl Cluster for FakeCluster {
    async fn get_replicas(&self, target: &WorkloadRef) -> std::result::Result<ReplicaState, ClusterError> {
        let desired = self
            .replicas(&target.to_string())
            .ok_or_else(|| ClusterError::new(ClusterErrorKind::NotFound, format!("{target}")))?;
        Ok(ReplicaState { desired, current: desired })
    }

    async fn set_replicas(
        &self,
        target: &WorkloadRef,
        replicas: i32,
        dry_run: bool,
    ) -> std::result::Result<SetReplicasOutcome, ClusterError> {
        let stored = lock(&self.store.0)
            .runs
            .values()
            .next_back()
            .and_then(|r| r.steps.first())
            .map(|s| (s.status, s.plan.clone()));
        let mut s = lock(&self.state);
        s.seen_stored.push(stored);
        let failure = match s.sticky {
            Some((to, kind)) if to == replicas => Some(WriteFailure { kind, applies: false }),
            _ => s.failures.pop_front(),
        };
        if failure.is_none_or(|f| f.applies) && !dry_run {
            s.replicas.insert(target.to_string(), replicas);
            s.writes.push((target.to_string(), replicas));
        }
        match failure {
            Some(f) => Err(ClusterError::new(f.kind, "scripted failure")),
            None => Ok(SetReplicasOutcome { replicas, dry_run, response: json!({"spec": {"replicas": replicas}}) }),
        }
    }

    async fn deployment_info(&self, target: &WorkloadRef) -> std::result::Result<DeploymentInfo, ClusterError> {
        let replicas = self.get_replicas(target).await?.desired;
        Ok(DeploymentInfo { labels: BTreeMap::new(), revision: Some(1), replicas })
    }
}

/// A metric that is constant over every window (absent: no data).
struct ConstMetric(Option<f64>);

#[async_trait]
impl MetricSource for ConstMetric {
    async fn query_range(
        &self,
        _: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        step: Duration,
    ) -> warden_connectors::Result<RangeResult> {
        let Some(v) = self.0 else { return Ok(RangeResult::default()) };
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

/// Counts calls; answers 200.
#[derive(Default)]
struct CountingWebhook(Mutex<Vec<HttpCall>>);

#[async_trait]
impl Webhook for CountingWebhook {
    async fn call(&self, call: &HttpCall) -> std::result::Result<HttpReply, WebhookError> {
        lock(&self.0).push(call.clone());
        Ok(HttpReply { status: 200, body: "ok".into() })
    }
}

#[derive(Default)]
struct Recorder(Mutex<Vec<(Notice, String)>>);

impl Notices for Recorder {
    fn notice(&self, _run: &Run, kind: Notice, text: &str) {
        lock(&self.0).push((kind, text.to_string()));
    }
}

struct World {
    engine: Engine,
    store: Arc<MemStore>,
    cluster: Arc<FakeCluster>,
    webhook: Arc<CountingWebhook>,
    notices: Arc<Recorder>,
}

fn world(metric: Option<f64>) -> World {
    let store = Arc::new(MemStore::default());
    let cluster = Arc::new(FakeCluster::new(store.clone(), &[("shop/checkout", 2)]));
    let webhook = Arc::new(CountingWebhook::default());
    let notices = Arc::new(Recorder::default());
    let defaults = GuardSettings { autonomy: Autonomy::Auto, ..GuardSettings::default() };
    let retry = crate::policy::RetryPolicy {
        attempts: 3,
        first_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(2),
        deadline: Duration::from_millis(20),
    };
    let engine = Engine {
        cluster: Some(cluster.clone()),
        metrics: Some(Arc::new(ConstMetric(metric))),
        webhook: Some(webhook.clone()),
        notices: notices.clone(),
        store: store.clone(),
        defaults,
        retry,
        fencing: None,
    };
    World { engine, store, cluster, webhook, notices }
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).single().expect("a valid time")
}

fn playbook(yaml: &str) -> crate::spec::Playbook {
    parse_playbook(yaml, Path::new("test.yaml")).expect("the test playbook loads")
}

fn request(yaml: &str, now: DateTime<Utc>) -> StartRequest {
    StartRequest {
        playbook: playbook(yaml),
        params: BTreeMap::new(),
        target: Some(Target::deployment("shop", "checkout")),
        trigger: TriggerInfo {
            kind: "manual".into(),
            actor: "user/test".into(),
            incident_id: None,
            detail: Value::Null,
        },
        vars: Vars::default(),
        has_data: None,
        dry_run: false,
        now,
    }
}

const SCALE_AND_VERIFY: &str = "name: more\nsteps:\n  - scale: {to: 3}\n  - verify: {query: up, for: 1m}\n";
const SCALE_ONLY: &str = "name: more\nsteps:\n  - scale: {to: 3}\n";

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn the_plan_is_stored_before_it_is_sent_and_a_verified_run_succeeds() {
    let w = world(Some(1.0));
    let run = w.engine.start(request(SCALE_AND_VERIFY, t0())).await.expect("start");
    // The verify window is open: the run waits on the engine's clock.
    assert_eq!(run.status, RunStatus::Running);
    assert_eq!(run.steps[1].status, StepStatus::Waiting);
    let seen = lock(&w.cluster.state).seen_stored.clone();
    assert_eq!(
        seen,
        vec![Some((StepStatus::Running, Some(json!({"namespace": "shop", "name": "checkout", "from": 2, "to": 3}))))]
    );

    let later = t0() + chrono::Duration::minutes(2);
    let runs = w.engine.tick(later).await.expect("tick");
    assert_eq!(runs.len(), 1);
    let done = w.store.run(run.id);
    assert_eq!(done.status, RunStatus::Succeeded, "{:?}", done.reason);
    assert!(done.acted);
    assert_eq!(w.cluster.writes(), vec![("shop/checkout".to_string(), 3)]);
    let kinds = w.store.audit_kinds();
    assert!(kinds.contains(&AuditKind::Request) && kinds.contains(&AuditKind::Verify), "{kinds:?}");
    assert!(lock(&w.notices.0).iter().any(|(k, text)| *k == Notice::Finished && text.contains("succeeded")));
}

#[tokio::test]
async fn a_failed_verification_reverts_the_scale_with_its_inverse_plan() {
    let w = world(Some(0.0));
    let run = w.engine.start(request(SCALE_AND_VERIFY, t0())).await.expect("start");
    w.engine.tick(t0() + chrono::Duration::minutes(2)).await.expect("tick");
    let done = w.store.run(run.id);
    assert_eq!(done.status, RunStatus::Reverted, "{:?}", done.reason);
    assert_eq!(done.revert_steps.len(), 1);
    assert_eq!(done.revert_steps[0].name, "undo-1-scale");
    assert_eq!(done.revert_steps[0].plan, Some(json!({"namespace": "shop", "name": "checkout", "from": 3, "to": 2})));
    assert_eq!(w.cluster.writes(), vec![("shop/checkout".to_string(), 3), ("shop/checkout".to_string(), 2)]);
    assert!(done.reason.as_deref().is_some_and(|r| r.contains("did not hold")), "{:?}", done.reason);
}

#[tokio::test]
async fn no_data_never_verifies() {
    let w = world(None);
    let run = w.engine.start(request(SCALE_AND_VERIFY, t0())).await.expect("start");
    w.engine.tick(t0() + chrono::Duration::minutes(2)).await.expect("tick");
    let done = w.store.run(run.id);
    assert_eq!(done.status, RunStatus::Reverted);
    assert!(done.steps[1].error.as_deref().is_some_and(|e| e.contains("no data")), "{:?}", done.steps[1].error);
}

#[tokio::test]
async fn a_transient_failure_is_retried_and_recorded() {
    let w = world(Some(1.0));
    w.cluster.fail_next(ClusterErrorKind::Transient, false);
    let run = w.engine.start(request(SCALE_ONLY, t0())).await.expect("start");
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.reason);
    assert_eq!(w.cluster.writes(), vec![("shop/checkout".to_string(), 3)]);
    let audit = lock(&w.store.0).audit.clone();
    let response = audit.iter().find(|e| e.kind == AuditKind::Response).expect("a response entry");
    assert_eq!(response.detail["attempts"][0]["class"], json!("transient"), "{}", response.detail);
}

#[tokio::test]
async fn a_lost_answer_is_resolved_by_reading_back_and_not_sent_twice() {
    let w = world(Some(1.0));
    w.cluster.fail_next(ClusterErrorKind::UnknownOutcome, true);
    let run = w.engine.start(request(SCALE_ONLY, t0())).await.expect("start");
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.reason);
    assert_eq!(w.cluster.writes().len(), 1, "the write was applied once and not sent again");
    let result = run.steps[0].result.clone().unwrap_or_default();
    assert_eq!(result["outcome"], json!("unknown_resolved_applied"), "{result}");
}

#[tokio::test]
async fn an_unresolved_unknown_outcome_counts_as_acted_and_is_reverted() {
    let w = world(Some(1.0));
    // Every attempt to scale to 3 loses its answer and never applies.
    lock(&w.cluster.state).sticky = Some((3, ClusterErrorKind::UnknownOutcome));
    let run = w.engine.start(request(SCALE_ONLY, t0())).await.expect("start");
    assert!(run.steps[0].may_have_applied);
    assert!(run.acted);
    assert_eq!(run.status, RunStatus::Reverted, "{:?}", run.reason);
    assert_eq!(run.revert_steps[0].plan, Some(json!({"namespace": "shop", "name": "checkout", "from": 3, "to": 2})));
}

#[tokio::test]
async fn a_step_that_cannot_act_fails_without_acting_or_reverting() {
    let w = world(Some(1.0));
    w.cluster.fail_next(ClusterErrorKind::Forbidden, false);
    let run = w.engine.start(request(SCALE_ONLY, t0())).await.expect("start");
    assert_eq!(run.status, RunStatus::Failed);
    assert!(!run.acted && run.revert_steps.is_empty());
    assert!(w.cluster.writes().is_empty());
}

#[tokio::test]
async fn observe_records_the_plan_and_sends_nothing() {
    let w = world(Some(1.0));
    let yaml = "name: more\nguards: {autonomy: observe}\nsteps:\n  - scale: {to: 3}\n";
    let run = w.engine.start(request(yaml, t0())).await.expect("start");
    assert_eq!(run.status, RunStatus::Observed);
    assert_eq!(run.steps[0].status, StepStatus::Skipped);
    assert_eq!(run.steps[0].plan, Some(json!({"namespace": "shop", "name": "checkout", "from": 2, "to": 3})));
    assert!(w.cluster.writes().is_empty());
}

#[tokio::test]
async fn an_approval_request_previews_the_plan_in_words() {
    let w = world(Some(1.0));
    let yaml = "name: more\nguards: {autonomy: recommend}\nsteps:\n  - scale: {to: 3}\n";
    let run = w.engine.start(request(yaml, t0())).await.expect("start");
    assert_eq!(run.status, RunStatus::AwaitingApproval);
    let texts = lock(&w.notices.0).clone();
    let (_, text) = texts.iter().find(|(k, _)| *k == Notice::ApprovalRequested).expect("an approval notice");
    assert!(text.contains("1. scale shop/checkout from 2 to 3 replicas"), "{text}");
    let approved = w.engine.decide(run.id, "alice", true, None, t0()).await.expect("approve");
    assert_eq!(approved.status, RunStatus::Succeeded);
    assert_eq!(w.cluster.writes(), vec![("shop/checkout".to_string(), 3)]);
}

#[tokio::test]
async fn a_denied_namespace_refuses_the_run() {
    let w = world(Some(1.0));
    let mut req = request(SCALE_ONLY, t0());
    req.target = Some(Target::deployment("kube-system", "coredns"));
    let run = w.engine.start(req).await.expect("start");
    assert_eq!(run.status, RunStatus::Refused, "{:?}", run.reason);
    assert!(w.cluster.writes().is_empty());
}

#[tokio::test]
async fn a_second_run_on_a_busy_target_is_refused() {
    let w = world(Some(1.0));
    let first = w.engine.start(request(SCALE_AND_VERIFY, t0())).await.expect("start");
    assert_eq!(first.status, RunStatus::Running);
    let second = w.engine.start(request(SCALE_AND_VERIFY, t0())).await.expect("start");
    assert_eq!(second.status, RunStatus::Refused);
    assert!(
        second.reason.as_deref().is_some_and(|r| r.contains(&format!("run {} is active", first.id))),
        "{:?}",
        second.reason
    );
}

#[tokio::test]
async fn a_lost_claim_stores_nothing_more_and_sends_nothing() {
    let w = world(Some(1.0));
    // The insert and the save of the keys succeed; the save of the plan finds the claim taken.
    lock(&w.store.0).steal_after = Some(1);
    let err = w.engine.start(request(SCALE_ONLY, t0())).await.expect_err("fenced");
    assert!(matches!(err, Error::Fenced(_)), "{err}");
    assert!(w.cluster.writes().is_empty());
    let stored = w.store.run(1);
    assert_eq!(stored.steps[0].status, StepStatus::Pending);
}

/// A run as the engine stored it before plans were typed: a scale step in `running` with its
/// plan in that JSON shape, as a crash after storing the plan leaves it.
fn stored_running_run(action: &str, plan: Value, step: crate::spec::Step) -> Run {
    let pb = crate::spec::Playbook {
        name: "legacy".into(),
        description: String::new(),
        target: crate::spec::TargetKind::Deployment,
        params: BTreeMap::new(),
        triggers: Vec::new(),
        guards: crate::spec::Guards::default(),
        steps: vec![step],
        revert: None,
    };
    let mut s = step::new_step(0, &pb.steps[0], Phase::Main);
    s.status = StepStatus::Running;
    s.plan = Some(plan);
    s.sends = 1;
    s.idempotency_key = "run-1-step-1".into();
    assert_eq!(s.action, action);
    Run {
        id: 1,
        playbook: pb.name.clone(),
        spec: pb,
        params: BTreeMap::new(),
        target: Some(Target::deployment("shop", "checkout")),
        trigger: TriggerInfo {
            kind: "manual".into(),
            actor: "user/test".into(),
            incident_id: None,
            detail: Value::Null,
        },
        vars: Vars::default(),
        guards: GuardSettings { autonomy: Autonomy::Auto, ..GuardSettings::default() },
        dry_run: false,
        status: RunStatus::Running,
        reason: None,
        refusal: None,
        approval: None,
        steps: vec![s],
        revert_steps: Vec::new(),
        acted: false,
        created_at: t0(),
        updated_at: t0(),
        wake_at: None,
    }
}

#[tokio::test]
async fn a_run_stored_before_plans_were_typed_resumes_by_sending_its_stored_plan() {
    let w = world(Some(1.0));
    let legacy = json!({"namespace": "shop", "name": "checkout", "from": 2, "to": 4});
    let step = crate::spec::Step {
        scale: Some(crate::spec::ScaleStep { to: Some("9".into()), ..Default::default() }),
        ..Default::default()
    };
    // Through JSON, as the store keeps it.
    let text = serde_json::to_string(&stored_running_run("scale", legacy.clone(), step)).expect("serialise");
    let run: Run = serde_json::from_str(&text).expect("a stored run loads");
    w.store.put(run);
    let resumed = w.engine.advance(1, t0()).await.expect("advance");
    assert_eq!(resumed.status, RunStatus::Succeeded, "{:?}", resumed.reason);
    // The stored plan (4), not a new plan from the step (9).
    assert_eq!(w.cluster.writes(), vec![("shop/checkout".to_string(), 4)]);
    assert_eq!(resumed.steps[0].sends, 2);
    assert_eq!(resumed.steps[0].plan, Some(legacy));
}

#[tokio::test]
async fn an_interrupted_webhook_call_is_not_sent_again() {
    let w = world(Some(1.0));
    let legacy = json!({
        "call": {"method": "POST", "url": "http://127.0.0.1:9/hook", "headers": {}, "body": null, "timeout_secs": 10.0},
        "expect_status": null,
    });
    let step = crate::spec::Step {
        http: Some(crate::spec::HttpStep {
            url: "http://127.0.0.1:9/hook".into(),
            method: "POST".into(),
            headers: BTreeMap::new(),
            body: None,
            expect_status: None,
            timeout: None,
        }),
        ..Default::default()
    };
    w.store.put(stored_running_run("http", legacy, step));
    let resumed = w.engine.advance(1, t0()).await.expect("advance");
    assert!(lock(&w.webhook.0).is_empty(), "the call is not repeated");
    assert!(resumed.steps[0].may_have_applied);
    // It counts as acted; a webhook cannot be undone, so the revert lists it as skipped.
    assert_eq!(resumed.status, RunStatus::Reverted, "{:?}", resumed.reason);
    assert_eq!(resumed.revert_steps[0].status, StepStatus::Skipped);
}

#[tokio::test]
async fn a_webhook_step_sends_its_idempotency_key() {
    let w = world(Some(1.0));
    let yaml = "name: hook\nsteps:\n  - http: {url: 'http://127.0.0.1:9/hook', body: {run: '{{ run.id }}'}}\n";
    let run = w.engine.start(request(yaml, t0())).await.expect("start");
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.reason);
    let calls = lock(&w.webhook.0).clone();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].headers.get("Idempotency-Key").map(String::as_str), Some("run-1-step-1"));
    assert_eq!(calls[0].body, Some(json!({"run": "1"})));
}

#[tokio::test]
async fn an_unknown_run_is_a_typed_store_error() {
    let w = world(Some(1.0));
    let err = w.engine.advance(42, t0()).await.expect_err("no such run");
    assert!(matches!(err, Error::Store(RunStoreError::NoRun(42))), "{err}");
    assert_eq!(err.to_string(), "run store: no run 42");
    assert!(std::error::Error::source(&err).is_some(), "the store error is the source");
}

/// A metrics source that is down.
struct DownMetric;

#[async_trait]
impl MetricSource for DownMetric {
    async fn query_range(
        &self,
        _: &str,
        _: DateTime<Utc>,
        _: DateTime<Utc>,
        _: Duration,
    ) -> warden_connectors::Result<RangeResult> {
        Err(warden_connectors::Error::Connect { url: "http://127.0.0.1:9090".into(), message: "refused".into() })
    }
}

#[tokio::test]
async fn a_verification_that_cannot_query_fails_and_reverts() {
    let mut w = world(Some(1.0));
    w.engine.metrics = Some(Arc::new(DownMetric));
    let run = w.engine.start(request(SCALE_AND_VERIFY, t0())).await.expect("start");
    w.engine.tick(t0() + chrono::Duration::minutes(2)).await.expect("tick");
    let done = w.store.run(run.id);
    assert_eq!(done.status, RunStatus::Reverted, "{:?}", done.reason);
    assert_eq!(
        done.steps[1].error.as_deref(),
        Some("verify query failed: could not connect to http://127.0.0.1:9090: refused")
    );
}

/// A fence that answers from a script: grant with a record, or refuse.
struct ScriptedFence(Mutex<Option<FenceRefused>>);

impl Fencing for ScriptedFence {
    fn cluster_write_timeout(&self) -> Duration {
        Duration::from_secs(5)
    }

    fn check(&self, needed: Duration) -> std::result::Result<FenceGrant, FenceRefused> {
        assert_eq!(needed, Duration::from_secs(5), "a cluster write asks for the client's timeout");
        match lock(&self.0).clone() {
            Some(refused) => Err(refused),
            None => Ok(FenceGrant {
                record: Some(crate::audit::AuditFence {
                    lease: "lease warden/warden".into(),
                    holder: "warden-0".into(),
                    transitions: 2,
                }),
                valid_for: Some(Duration::from_secs(60)),
            }),
        }
    }
}

#[tokio::test]
async fn a_refused_fence_sends_nothing_and_leaves_the_run_for_the_leader() {
    let mut w = world(Some(1.0));
    let fence = Arc::new(ScriptedFence(Mutex::new(Some(FenceRefused::NotLeader("held by warden-1".into())))));
    w.engine.fencing = Some(fence.clone() as Arc<dyn Fencing>);
    // Not the leader: the run is stored, its step stays pending, nothing is sent or failed.
    let run = w.engine.start(request(SCALE_ONLY, t0())).await.expect("a refused fence is not an error");
    assert_eq!(run.status, RunStatus::Running);
    assert_eq!(run.steps[0].status, StepStatus::Pending);
    assert!(w.cluster.writes().is_empty());
    assert!(!w.store.audit_kinds().contains(&AuditKind::Request));

    // The lease is too short for the request: the same, and the next tick tries again.
    *lock(&fence.0) = Some(FenceRefused::TooShort("3s left, 5s needed".into()));
    w.engine.tick(t0()).await.expect("tick");
    assert_eq!(w.store.run(run.id).steps[0].status, StepStatus::Pending);
    assert!(w.cluster.writes().is_empty());

    // The lease covers it: the step is sent, and its request entry names the lease holder.
    *lock(&fence.0) = None;
    w.engine.tick(t0()).await.expect("tick");
    let done = w.store.run(run.id);
    assert_eq!(done.status, RunStatus::Succeeded, "{:?}", done.reason);
    assert_eq!(w.cluster.writes(), vec![("shop/checkout".to_string(), 3)]);
    let audit = lock(&w.store.0).audit.clone();
    let request = audit.iter().find(|e| e.kind == AuditKind::Request).expect("a request entry");
    let f = request.fence.as_ref().expect("the request is fenced");
    assert_eq!((f.holder.as_str(), f.transitions), ("warden-0", 2));
    assert!(audit.iter().filter(|e| e.kind != AuditKind::Request).all(|e| e.fence.is_none()));
}
