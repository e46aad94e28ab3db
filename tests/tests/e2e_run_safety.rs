//! Run safety against the local Kubernetes API server: one owner per run (no step sent
//! twice, no second plan), the error policy of cluster writes (a transient 503 is retried,
//! an answer lost after the write applied is resolved by reading back and counts for the
//! guards, a write that may have applied is reverted), runs off the evaluation loop (a hung
//! PATCH does not stall the watches), and the audit head (truncation is detected).
//!
//! The engine runs in-process on the wall clock against the test API server over HTTP, with
//! the SQLite store, so the API server's latency and faults reach it as they would in
//! production. Time limits are generous timeouts, not speed assertions.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use warden_agent::act::kube_cluster::KubeCluster;
use warden_agent::act::remediation::HttpWebhook;
use warden_agent::store::Store;
use warden_connectors::kube_actions::ActionWaits;
use warden_connectors::kubernetes::{KubeClient, KubeConnect};
use warden_playbooks::engine::{Engine, Notice, Notices, StartRequest};
use warden_playbooks::guards::{GuardName, GuardSettings};
use warden_playbooks::load::parse_playbook;
use warden_playbooks::policy::RetryPolicy;
use warden_playbooks::run::{Run, RunStatus, StepStatus, Target, TriggerInfo};
use warden_playbooks::spec::{Autonomy, Playbook};
use warden_playbooks::template::Vars;
use warden_playbooks::{Cluster, ClusterError, ClusterErrorKind, ReplicaState, SetReplicasOutcome, WorkloadRef};
use warden_tests::kube_api::{self, AfterApply, Failure, KubeApi};

struct Quiet;

impl Notices for Quiet {
    fn notice(&self, _run: &Run, _kind: Notice, _text: &str) {}
}

async fn client_for(api: &KubeApi, dir: &Path, timeout: Duration) -> Result<KubeClient> {
    let kubeconfig = kube_api::write_kubeconfig(dir, &api.url())?;
    Ok(KubeClient::connect(&KubeConnect::Kubeconfig {
        path: Some(kubeconfig),
        context: Some(kube_api::KUBECONFIG_CONTEXT.to_string()),
    })
    .await?
    .with_request_timeout(timeout)
    .with_action_waits(ActionWaits {
        pod_gone: Duration::from_secs(1),
        controller: Duration::from_millis(500),
        ..ActionWaits::default()
    }))
}

fn engine_on(store: &Arc<Store>, cluster: Arc<dyn Cluster>, defaults: GuardSettings) -> Result<Engine> {
    Ok(Engine {
        cluster: Some(cluster),
        metrics: None,
        webhook: Some(Arc::new(HttpWebhook::new().map_err(anyhow::Error::msg)?)),
        notices: Arc::new(Quiet),
        store: store.clone(),
        defaults,
        retry: RetryPolicy { first_delay: Duration::from_millis(100), ..RetryPolicy::default() },
        fencing: None,
    })
}

fn no_guards() -> GuardSettings {
    GuardSettings { autonomy: Autonomy::Auto, cooldown: Duration::ZERO, ..GuardSettings::default() }
}

fn playbook(yaml: &str) -> Playbook {
    match parse_playbook(yaml, Path::new("test.yaml")) {
        Ok(p) => p,
        Err(e) => panic!("test playbook does not load:\n{e}"),
    }
}

fn request(pb: Playbook, target: Target) -> StartRequest {
    StartRequest {
        playbook: pb,
        params: BTreeMap::new(),
        target: Some(target),
        trigger: TriggerInfo { kind: "manual".into(), actor: "user/test".into(), incident_id: None, detail: json!({}) },
        vars: Vars::new(),
        has_data: None,
        dry_run: false,
        now: Utc::now(),
    }
}

/// A webhook receiver counting calls per `Idempotency-Key`.
struct Hooks {
    url: String,
    calls: Arc<Mutex<BTreeMap<String, usize>>>,
}

async fn hooks() -> Result<Hooks> {
    hooks_answering(200).await
}

async fn hooks_answering(status: u16) -> Result<Hooks> {
    let status = axum::http::StatusCode::from_u16(status)?;
    let calls: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
    let seen = calls.clone();
    let app = axum::Router::new().fallback(move |headers: axum::http::HeaderMap| {
        let seen = seen.clone();
        async move {
            let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or("none").to_string();
            if let Ok(mut m) = seen.lock() {
                *m.entry(key).or_insert(0) += 1;
            }
            (status, "ok")
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(Hooks { url, calls })
}

/// Finding 1: with a slow API server (0.5 s GETs, 2 s PATCHes), runs started concurrently
/// while the once-a-second ticker advances due runs each send their scale step once, with
/// the plan that is stored, and call their webhook once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_api_runs_send_each_step_once_with_the_stored_plan() -> Result<()> {
    const RUNS: usize = 50;
    let api = KubeApi::start().await?;
    for i in 0..RUNS {
        api.add_deployment("shop", &format!("web-{i}"), 2);
    }
    api.set_latency("GET", Some(Duration::from_millis(500)));
    api.set_latency("PATCH", Some(Duration::from_secs(2)));
    let hooks = hooks().await?;
    let dir = tempfile::tempdir()?;
    let cluster = Arc::new(KubeCluster { client: client_for(&api, dir.path(), Duration::from_secs(30)).await? });
    let store = Arc::new(Store::open(&dir.path().join("warden.db"))?);
    let engine = Arc::new(engine_on(&store, cluster, no_guards())?);
    let pb =
        playbook(&format!("name: grow\nsteps:\n  - scale: {{by: 1, max: 10}}\n  - http: {{url: '{}'}}\n", hooks.url));

    // The daemon's ticker: every due run, once a second (here: more often).
    let stop = tokio_util::sync::CancellationToken::new();
    let ticker = {
        let (engine, stop) = (engine.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                let _ = engine.tick(Utc::now()).await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let starts = (0..RUNS).map(|i| {
        let (engine, pb) = (engine.clone(), pb.clone());
        tokio::spawn(async move { engine.start(request(pb, Target::deployment("shop", format!("web-{i}")))).await })
    });
    for s in futures::future::join_all(starts).await {
        s??;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let runs = loop {
        let runs = store.list_runs(None, None, 1000)?;
        if runs.len() == RUNS && runs.iter().all(|r| r.status.is_terminal()) {
            break runs;
        }
        ensure!(
            Instant::now() < deadline,
            "runs did not finish: {:?}",
            runs.iter().map(|r| (r.id, r.status)).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    stop.cancel();
    ticker.await?;

    let mut sent_twice = Vec::new();
    for r in &runs {
        let t = r.target.as_ref().context("target")?;
        let writes: Vec<_> = api.scale_writes(&t.namespace, &t.name).into_iter().filter(|w| !w.is_dry_run()).collect();
        if writes.len() != 1 {
            sent_twice.push((r.id, writes.len()));
            continue;
        }
        // The plan that was sent is the plan that is stored.
        let stored_to = r.steps[0].plan.as_ref().and_then(|p| p["to"].as_i64());
        assert_eq!(
            writes[0].requested_replicas(),
            stored_to,
            "run {}: sent {:?}, stored plan {:?}",
            r.id,
            writes[0].requested_replicas(),
            r.steps[0].plan
        );
        assert_eq!(r.status, RunStatus::Succeeded, "run {}: {:?}", r.id, r.reason);
        assert_eq!(r.steps[0].sends, 1, "run {}", r.id);
        assert_eq!(api.replicas(&t.namespace, &t.name), Some(3), "{t}");
    }
    eprintln!("runs: {}, runs whose scale step was sent more than once: {}", runs.len(), sent_twice.len());
    assert!(sent_twice.is_empty(), "runs (id, scale writes) sent more than once: {sent_twice:?}");
    let calls = hooks.calls.lock().map_err(|e| anyhow::anyhow!("{e}"))?.clone();
    assert_eq!(calls.len(), RUNS, "webhook calls by key: {calls:?}");
    assert!(calls.values().all(|n| *n == 1), "a webhook was called more than once: {calls:?}");
    // No request entry of the audit is marked resumed: nothing crashed.
    let resumed = store.audit_entries()?.iter().filter(|e| e.detail.get("resumed") == Some(&json!(true))).count();
    assert_eq!(resumed, 0);
    Ok(())
}

/// Finding 2: the API server applies a scale PATCH and then answers 500. The outcome is
/// resolved by reading the Deployment back: the step is done, the run acted, and the
/// cooldown counts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_then_500_is_read_back_and_counts_for_the_cooldown() -> Result<()> {
    let api = KubeApi::start().await?;
    api.add_deployment("shop", "checkout", 21);
    let dir = tempfile::tempdir()?;
    let cluster = Arc::new(KubeCluster { client: client_for(&api, dir.path(), Duration::from_secs(30)).await? });
    let store = Arc::new(Store::open(&dir.path().join("warden.db"))?);
    let engine = engine_on(&store, cluster, GuardSettings { cooldown: Duration::from_secs(3600), ..no_guards() })?;
    let pb = playbook("name: grow\nsteps:\n  - scale: {by: 1, max: 40}\n");

    api.fail_after_apply(1, AfterApply::Answer500);
    let run = engine.start(request(pb.clone(), Target::deployment("shop", "checkout"))).await?;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.reason);
    assert!(run.acted, "a write that applied counts as acted");
    assert_eq!(run.steps[0].result.as_ref().map(|r| r["outcome"].clone()), Some(json!("unknown_resolved_applied")));
    let writes = api.scale_writes("shop", "checkout");
    // One write: the read back showed it applied, so it was not sent again.
    assert_eq!(writes.len(), 1, "{}", api.request_log());
    assert_eq!(api.replicas("shop", "checkout"), Some(22));
    let audit = store.audit_for_run(run.id)?;
    ensure!(
        audit.iter().any(|e| e.detail["attempts"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x["class"] == "unknown_outcome" && x["resolved"] == "applied"))),
        "the unknown outcome and its resolution are in the audit: {audit:#?}"
    );

    // The cooldown counts the run: a second run on the target is refused.
    for _ in 0..3 {
        api.fail_after_apply(1, AfterApply::Answer500);
        let again = engine.start(request(pb.clone(), Target::deployment("shop", "checkout"))).await?;
        assert_eq!(again.status, RunStatus::Refused, "{:?}", again.reason);
        assert_eq!(again.refusal.as_ref().map(|r| r.guard), Some(GuardName::Cooldown));
    }
    assert_eq!(api.replicas("shop", "checkout"), Some(22), "four runs went past the cooldown");
    Ok(())
}

/// Finding 2: the API server applies a PATCH and never answers in time (the client times
/// out). Read back: applied, acted, and the rate cap counts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_then_timeout_is_read_back_and_counts_for_the_rate_cap() -> Result<()> {
    let api = KubeApi::start().await?;
    api.add_deployment("shop", "checkout", 2);
    api.add_deployment("shop", "cart", 2);
    let dir = tempfile::tempdir()?;
    // A short request timeout, so the hung answer times out within the test.
    let cluster = Arc::new(KubeCluster { client: client_for(&api, dir.path(), Duration::from_secs(2)).await? });
    let store = Arc::new(Store::open(&dir.path().join("warden.db"))?);
    let engine = engine_on(&store, cluster, no_guards())?;
    let pb = playbook("name: grow\nguards: {rate: {global: {max: 1, per: 1h}}}\nsteps:\n  - scale: {by: 1, max: 10}\n");

    api.fail_after_apply(1, AfterApply::Hang(Duration::from_secs(10)));
    let run = engine.start(request(pb.clone(), Target::deployment("shop", "checkout"))).await?;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.reason);
    assert!(run.acted);
    assert_eq!(api.replicas("shop", "checkout"), Some(3));
    assert_eq!(api.scale_writes("shop", "checkout").len(), 1, "{}", api.request_log());

    // The global rate cap (1 per hour) counts it: a run on another target is refused.
    let other = engine.start(request(pb, Target::deployment("shop", "cart"))).await?;
    assert_eq!(other.status, RunStatus::Refused, "{:?}", other.reason);
    assert_eq!(other.refusal.as_ref().map(|r| r.guard), Some(GuardName::RateGlobal));
    assert_eq!(api.replicas("shop", "cart"), Some(2));
    Ok(())
}

/// Finding 2: a single 503 before anything is applied is retried; the run succeeds and
/// nothing is reverted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_503_before_acting_is_retried() -> Result<()> {
    let api = KubeApi::start().await?;
    api.add_deployment("shop", "checkout", 2);
    let dir = tempfile::tempdir()?;
    let cluster = Arc::new(KubeCluster { client: client_for(&api, dir.path(), Duration::from_secs(30)).await? });
    let store = Arc::new(Store::open(&dir.path().join("warden.db"))?);
    let engine = engine_on(&store, cluster, no_guards())?;
    // The first write (the restart's PATCH) meets one 503; the scale follows.
    let pb = playbook("name: two\nsteps:\n  - restart: {}\n  - scale: {by: 1, max: 10}\n");
    api.fail_next(1, Failure::Unavailable, true);
    let run = engine.start(request(pb, Target::deployment("shop", "checkout"))).await?;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}\n{}", run.reason, api.request_log());
    assert!(run.revert_steps.is_empty(), "nothing is reverted");
    let restarts: Vec<u16> = api
        .requests()
        .iter()
        .filter(|q| q.method == "PATCH" && q.path.ends_with("/deployments/checkout"))
        .map(|q| q.status)
        .collect();
    assert_eq!(restarts, vec![503, 200], "{}", api.request_log());
    assert_eq!(run.steps[0].status, StepStatus::Done);
    assert_eq!(api.scale_writes("shop", "checkout").len(), 1);
    assert_eq!(api.replicas("shop", "checkout"), Some(3));
    Ok(())
}

/// A cluster whose scale answers are lost after the write applied, and whose reads fail
/// right after: the outcome cannot be resolved.
struct LosesAnswers {
    inner: Arc<KubeCluster>,
    lose: AtomicUsize,
    blind: AtomicUsize,
}

#[async_trait]
impl Cluster for LosesAnswers {
    async fn get_replicas(&self, t: &WorkloadRef) -> Result<ReplicaState, ClusterError> {
        if self.blind.load(Ordering::SeqCst) > 0 {
            self.blind.fetch_sub(1, Ordering::SeqCst);
            return Err(ClusterError::new(ClusterErrorKind::Transient, "injected: read failed"));
        }
        self.inner.get_replicas(t).await
    }
    async fn set_replicas(
        &self,
        t: &WorkloadRef,
        replicas: i32,
        dry_run: bool,
    ) -> Result<SetReplicasOutcome, ClusterError> {
        let out = self.inner.set_replicas(t, replicas, dry_run).await?;
        if self.lose.load(Ordering::SeqCst) > 0 {
            self.lose.fetch_sub(1, Ordering::SeqCst);
            self.blind.store(100, Ordering::SeqCst);
            return Err(ClusterError::new(
                ClusterErrorKind::UnknownOutcome,
                "injected: connection reset after sending",
            ));
        }
        Ok(out)
    }
    async fn deployment_info(
        &self,
        t: &WorkloadRef,
    ) -> Result<warden_playbooks::cluster::DeploymentInfo, ClusterError> {
        self.inner.deployment_info(t).await
    }
}

/// Finding 2: a write that may have applied (its outcome could not be resolved) counts as
/// acted and is reverted like an applied one; the cooldown counts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_may_have_applied_is_reverted_and_counted() -> Result<()> {
    let api = KubeApi::start().await?;
    api.add_deployment("shop", "checkout", 2);
    let dir = tempfile::tempdir()?;
    let kube = Arc::new(KubeCluster { client: client_for(&api, dir.path(), Duration::from_secs(30)).await? });
    let cluster = Arc::new(LosesAnswers { inner: kube, lose: AtomicUsize::new(1), blind: AtomicUsize::new(0) });
    let store = Arc::new(Store::open(&dir.path().join("warden.db"))?);
    let mut engine =
        engine_on(&store, cluster.clone(), GuardSettings { cooldown: Duration::from_secs(3600), ..no_guards() })?;
    engine.retry = RetryPolicy { attempts: 1, ..RetryPolicy::default() };
    let pb = playbook("name: grow\nsteps:\n  - scale: {by: 1, max: 10}\n");
    let run = engine.start(request(pb.clone(), Target::deployment("shop", "checkout"))).await?;
    assert_eq!(run.status, RunStatus::Reverted, "{:?}", run.reason);
    assert!(run.acted, "may have applied counts as acted");
    assert_eq!(run.steps[0].status, StepStatus::Failed);
    assert!(run.steps[0].may_have_applied);
    assert_eq!(run.revert_steps.len(), 1);
    assert_eq!(run.revert_steps[0].status, StepStatus::Done);
    assert_eq!(api.replicas("shop", "checkout"), Some(2), "the revert restored 2 replicas");
    cluster.blind.store(0, Ordering::SeqCst);
    let again = engine.start(request(pb, Target::deployment("shop", "checkout"))).await?;
    assert_eq!(again.refusal.as_ref().map(|r| r.guard), Some(GuardName::Cooldown), "{:?}", again.reason);
    Ok(())
}

/// The `http` step: a webhook answered 500 may have acted. It is called once (never
/// retried), recorded as an unknown outcome, counts as acted and the earlier scale is
/// reverted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_answering_500_is_called_once_and_counts_as_acted() -> Result<()> {
    let api = KubeApi::start().await?;
    api.add_deployment("shop", "checkout", 2);
    let hooks = hooks_answering(500).await?;
    let dir = tempfile::tempdir()?;
    let cluster = Arc::new(KubeCluster { client: client_for(&api, dir.path(), Duration::from_secs(30)).await? });
    let store = Arc::new(Store::open(&dir.path().join("warden.db"))?);
    let engine = engine_on(&store, cluster, no_guards())?;
    let pb = playbook(&format!("name: hook\nsteps:\n  - http: {{url: '{}'}}\n", hooks.url));
    let run = engine.start(request(pb, Target::deployment("shop", "checkout"))).await?;
    assert!(run.acted, "a webhook whose outcome is unknown counts as acted: {:?}", run.reason);
    assert!(run.steps[0].may_have_applied);
    assert!(
        run.reason.as_deref().is_some_and(|r| r.contains("500") && r.contains("not sent again")),
        "{:?}",
        run.reason
    );
    let calls = hooks.calls.lock().map_err(|e| anyhow::anyhow!("{e}"))?.clone();
    assert_eq!(calls.values().sum::<usize>(), 1, "{calls:?}");
    Ok(())
}

/// A step that fails without acting triggers no revert (a conflict on every attempt: retried,
/// then given up).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_that_failed_without_acting_is_not_reverted() -> Result<()> {
    let api = KubeApi::start().await?;
    api.add_deployment("shop", "checkout", 2);
    let dir = tempfile::tempdir()?;
    let cluster = Arc::new(KubeCluster { client: client_for(&api, dir.path(), Duration::from_secs(30)).await? });
    let store = Arc::new(Store::open(&dir.path().join("warden.db"))?);
    let engine = engine_on(&store, cluster, no_guards())?;
    api.fail_next(1000, Failure::Conflict, true);
    let run = engine
        .start(request(
            playbook("name: grow\nsteps:\n  - scale: {by: 1, max: 10}\n"),
            Target::deployment("shop", "checkout"),
        ))
        .await?;
    assert_eq!(run.status, RunStatus::Failed, "{:?}", run.reason);
    assert!(!run.acted);
    assert!(run.revert_steps.is_empty());
    let writes = api.scale_writes("shop", "checkout");
    assert!(
        writes.len() > 1 && writes.iter().all(|w| w.status == 409),
        "conflicts are retried, then given up: {}",
        api.request_log()
    );
    Ok(())
}

/// Finding 9: deleting the last audit entry (truncation) is detected by `warden audit verify`
/// through the audit head written beside the chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_truncation_is_detected() -> Result<()> {
    let api = KubeApi::start().await?;
    api.add_deployment("shop", "checkout", 2);
    let dir = tempfile::tempdir()?;
    let cluster = Arc::new(KubeCluster { client: client_for(&api, dir.path(), Duration::from_secs(30)).await? });
    let db = dir.path().join("warden.db");
    let store = Arc::new(Store::open(&db)?);
    let engine = engine_on(&store, cluster, no_guards())?;
    let run = engine
        .start(request(
            playbook("name: grow\nsteps:\n  - scale: {by: 1, max: 10}\n"),
            Target::deployment("shop", "checkout"),
        ))
        .await?;
    assert_eq!(run.status, RunStatus::Succeeded);
    let entries = store.audit_entries()?.len() as i64;
    assert_eq!(store.audit_head()?.map(|h| h.count), Some(entries));

    let bin = warden_tests::procs::warden_binary()?;
    let verify = |json: bool| -> Result<(bool, String)> {
        let mut cmd = std::process::Command::new(&bin);
        cmd.args(["audit", "verify", "--db"]).arg(&db);
        if json {
            cmd.arg("--json");
        }
        let out = cmd.output()?;
        Ok((
            out.status.success(),
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        ))
    };
    let (ok, text) = verify(false)?;
    assert!(ok, "{text}");
    drop(engine);
    drop(store);

    let conn = rusqlite::Connection::open(&db)?;
    assert_eq!(conn.execute("DELETE FROM audit WHERE seq = (SELECT MAX(seq) FROM audit)", [])?, 1);
    drop(conn);
    let (ok, text) = verify(false)?;
    assert!(!ok, "a truncated trail passed: {text}");
    assert!(text.contains("truncated") && text.contains(&format!("entry {entries}")), "{text}");
    let (ok, text) = verify(true)?;
    assert!(!ok);
    let v: Value = serde_json::from_str(&text).with_context(|| text.clone())?;
    assert_eq!(v["intact"], false);
    assert_eq!(v["entries"], entries - 1);
    assert_eq!(v["head"]["count"], entries);
    assert_eq!(v["broken_at"], entries);
    Ok(())
}

/// Finding 3 (daemon wiring): a watch whose action meets a PATCH that hangs for 30 s keeps
/// its interval: evaluations go on while the run waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_patch_delays_no_watch_evaluation() -> Result<()> {
    use warden_agent::act::tasks::ActionTasks;
    use warden_agent::ingest::source::MetricSource;
    use warden_agent::metrics::Metrics;
    use warden_agent::timeline::Timeline;
    use warden_connectors::prometheus::{RangeResult, Sample, Series};

    /// A metric source that is anomalous from the start and records when it is queried.
    struct Anomalous {
        queried: Mutex<Vec<Instant>>,
        fault_from: i64,
    }

    #[async_trait]
    impl MetricSource for Anomalous {
        async fn query_range(
            &self,
            _q: &str,
            start: DateTime<Utc>,
            end: DateTime<Utc>,
            step: Duration,
        ) -> warden_connectors::Result<RangeResult> {
            self.queried
                .lock()
                .map_err(|e| warden_connectors::Error::InvalidInput(e.to_string()))?
                .push(Instant::now());
            let mut points = Vec::new();
            let mut t = start.timestamp();
            while t <= end.timestamp() {
                let v = if t >= self.fault_from { 50.0 } else { 1.0 + ((t / 10) % 5) as f64 * 0.01 };
                points.push(Sample { timestamp_ms: t * 1000, value: v });
                t += step.as_secs().max(1) as i64;
            }
            let labels = BTreeMap::from([
                ("namespace".to_string(), "shop".to_string()),
                ("deployment".to_string(), "checkout".to_string()),
            ]);
            Ok(RangeResult { series: vec![Series { labels, points }], warnings: vec![] })
        }
    }

    let api = KubeApi::start().await?;
    api.add_deployment("shop", "checkout", 2);
    api.set_latency("PATCH", Some(Duration::from_secs(30)));
    let dir = tempfile::tempdir()?;
    let cluster = Arc::new(KubeCluster { client: client_for(&api, dir.path(), Duration::from_secs(40)).await? });
    let cfg = warden_agent::config::parse_str(
        &format!(
            "prometheus: {{url: 'http://127.0.0.1:9'}}\nkubernetes: {{}}\nstore: {{sqlite: '{}'}}\nactions: {{cooldown: 1h}}\nwatches:\n  - name: lat\n    query: up\n    interval: 1s\n    step: 10s\n    lookback: 30m\n    identity: [namespace, deployment]\n    target: {{namespace: '{{namespace}}', deployment: '{{deployment}}'}}\n    detector: {{kind: robust_baseline, window: 60, min_consecutive: 2, direction: up}}\n    action: {{scale: {{step: 1, max_replicas: 5}}}}\n",
            dir.path().join("warden.db").display()
        ),
        Path::new("w.yaml"),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let source = Arc::new(Anomalous { queried: Mutex::new(Vec::new()), fault_from: Utc::now().timestamp() - 120 });
    let store = Arc::new(Store::open(&dir.path().join("warden.db"))?);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let engine = Arc::new(
        warden_agent::pipeline::Pipeline::new(
            Arc::new(cfg),
            store,
            source.clone() as Arc<dyn MetricSource>,
            Some(cluster as Arc<dyn Cluster>),
            Arc::new(Metrics::new()),
            vec![],
            Timeline::default(),
        )
        .with_action_tasks(ActionTasks::new(shutdown.clone())),
    );
    let scheduler = tokio::spawn(warden_agent::app::daemon::run_scheduler(engine.clone(), shutdown.clone()));

    // Wait until the scale PATCH is at the API server (where it hangs for 30 s).
    let deadline = Instant::now() + Duration::from_secs(30);
    let patched_at = loop {
        if api.requests().iter().any(|q| q.method == "PATCH") || api_has_pending_patch(&engine) {
            break Instant::now();
        }
        ensure!(Instant::now() < deadline, "the watch never acted: {}", api.request_log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    tokio::time::sleep(Duration::from_secs(6)).await;
    shutdown.cancel();
    scheduler.await?;
    let times: Vec<Instant> = source
        .queried
        .lock()
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .iter()
        .copied()
        .filter(|t| *t >= patched_at)
        .collect();
    // One evaluation a second: at least 3 in the 6 s the PATCH hung, none more than one
    // interval late (2 s apart, with a second of slack for a loaded machine).
    assert!(times.len() >= 3, "{} evaluations while the PATCH hung", times.len());
    let worst = times.windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default();
    eprintln!("evaluations while the PATCH hung: {}, longest gap between two: {worst:?}", times.len());
    assert!(worst <= Duration::from_secs(3), "an evaluation waited {worst:?} for the hung PATCH");
    Ok(())
}

/// Whether the run started by the watch has its scale step in flight (the PATCH sent).
fn api_has_pending_patch(engine: &warden_agent::pipeline::Pipeline) -> bool {
    engine
        .store
        .list_runs(None, None, 10)
        .is_ok_and(|runs| runs.iter().any(|r| r.steps.first().is_some_and(|s| s.status == StepStatus::Running)))
}
