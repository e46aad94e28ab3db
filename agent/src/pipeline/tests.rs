//! The pipeline end to end on a scripted source and a fake cluster, on simulated time.

use super::*;
use crate::config::parse_str;
use std::sync::Mutex;
use std::time::Duration;
use warden_connectors::prometheus::{RangeResult, Sample, Series};
use warden_playbooks::cluster::DeploymentInfo;
use warden_playbooks::{ClusterError, ReplicaState, SetReplicasOutcome, WorkloadRef};

/// Serves a series whose value at time t comes from a closure; `None` means an error.
struct Scripted {
    value: Box<dyn Fn(i64) -> f64 + Send + Sync>,
    down: Mutex<bool>,
}

#[async_trait::async_trait]
impl MetricSource for Scripted {
    async fn query_range(
        &self,
        _q: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        step: Duration,
    ) -> warden_connectors::Result<RangeResult> {
        if *self.down.lock().map_err(|e| warden_connectors::Error::InvalidInput(e.to_string()))? {
            return Err(warden_connectors::Error::Connect {
                url: "http://127.0.0.1:9/api/v1/query_range".into(),
                message: "connection refused".into(),
            });
        }
        let mut points = Vec::new();
        let mut t = start.timestamp();
        while t <= end.timestamp() {
            points.push(Sample { timestamp_ms: t * 1000, value: (self.value)(t) });
            t += step.as_secs() as i64;
        }
        let labels = BTreeMap::from([
            ("namespace".to_string(), "shop".to_string()),
            ("deployment".to_string(), "checkout".to_string()),
        ]);
        Ok(RangeResult { series: vec![Series { labels, points }], warnings: vec![] })
    }
}

#[derive(Default)]
struct FakeCluster {
    patches: Mutex<Vec<i32>>,
}

#[async_trait::async_trait]
impl Cluster for FakeCluster {
    async fn get_replicas(&self, _t: &WorkloadRef) -> Result<ReplicaState, ClusterError> {
        let n = self.patches.lock().map(|p| p.last().copied().unwrap_or(2)).unwrap_or(2);
        Ok(ReplicaState { desired: n, current: n })
    }
    async fn set_replicas(
        &self,
        _t: &WorkloadRef,
        replicas: i32,
        dry_run: bool,
    ) -> Result<SetReplicasOutcome, ClusterError> {
        if let Ok(mut p) = self.patches.lock() {
            p.push(replicas);
        }
        Ok(SetReplicasOutcome { replicas, dry_run, response: json!({}) })
    }
    async fn deployment_info(&self, _t: &WorkloadRef) -> Result<DeploymentInfo, ClusterError> {
        Ok(DeploymentInfo { labels: BTreeMap::new(), revision: Some(1), replicas: 2 })
    }
}

const T0: i64 = 1_700_000_000;
const FAULT: (i64, i64) = (T0 + 600, T0 + 900);

fn engine(source: Arc<Scripted>, cluster: Arc<FakeCluster>) -> Pipeline {
    let cfg = parse_str(
        "prometheus: {url: 'http://127.0.0.1:9'}\nkubernetes: {}\nactions: {cooldown: 1h}\nnotify: {file: {path: n.jsonl}}\nwatches:\n  - name: lat\n    query: up\n    interval: 10s\n    step: 10s\n    lookback: 30m\n    identity: [namespace, deployment]\n    target: {namespace: '{namespace}', deployment: '{deployment}'}\n    resolve_after: 3\n    detector: {kind: robust_baseline, window: 60, min_consecutive: 2, direction: up}\n    action: {scale: {step: 1, max_replicas: 5}}\n",
        std::path::Path::new("t.yaml"),
    )
    .expect("valid config");
    Pipeline::new(
        Arc::new(cfg),
        Arc::new(Store::open_in_memory().expect("store")),
        source,
        Some(cluster as Arc<dyn Cluster>),
        Arc::new(Metrics::new()),
        vec!["slack", "email"],
        Timeline::default(),
    )
}

fn baseline_with_fault() -> Arc<Scripted> {
    Arc::new(Scripted {
        value: Box::new(|t| if (FAULT.0..FAULT.1).contains(&t) { 5.0 } else { 1.0 + ((t / 10) % 5) as f64 * 0.01 }),
        down: Mutex::new(false),
    })
}

fn at(t: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(t, 0).expect("time")
}

#[tokio::test]
async fn fault_opens_acts_once_and_resolves_with_notifications() {
    let cluster = Arc::new(FakeCluster::default());
    let e = engine(baseline_with_fault(), cluster.clone());
    let mut t = T0;
    let mut opened_at = None;
    while t < FAULT.1 + 120 {
        e.evaluate_watch(0, at(t)).await;
        if opened_at.is_none() && !e.store.open_incidents().expect("q").is_empty() {
            opened_at = Some(t);
        }
        t += 10;
    }
    // Opened on the second deviating point (min_consecutive = 2); one PATCH (cooldown 1h).
    assert_eq!(opened_at, Some(FAULT.0 + 10));
    assert_eq!(*cluster.patches.lock().expect("lock"), vec![3]);
    let incidents = e.store.list_incidents(None, 10).expect("list");
    assert_eq!(incidents.len(), 1);
    assert_eq!(incidents[0].status, "resolved");
    // Resolved on the third quiet evaluation after the fault.
    assert_eq!(incidents[0].resolved_at, Some(at(FAULT.1 + 20)));
    let events: Vec<String> =
        e.store.incident_events(incidents[0].id).expect("events").into_iter().map(|ev| ev.kind).collect();
    assert_eq!(events, ["opened", "run_succeeded", "resolved"]);
    // opened, action and resolved, for each of the two channels.
    let due = e.store.pending_notifications().expect("count");
    assert_eq!(due, 6);
    assert_eq!(e.watch_statuses()[0].state, WatchState::Ok);
}

#[tokio::test]
async fn no_data_never_opens_resolves_or_acts() {
    let cluster = Arc::new(FakeCluster::default());
    let source = baseline_with_fault();
    let e = engine(source.clone(), cluster.clone());
    // Prometheus is down for the whole fault: nothing happens.
    *source.down.lock().expect("lock") = true;
    for t in (FAULT.0..FAULT.1).step_by(10) {
        e.evaluate_watch(0, at(t)).await;
    }
    assert!(e.store.list_incidents(None, 10).expect("list").is_empty());
    assert!(cluster.patches.lock().expect("lock").is_empty());
    let st = &e.watch_statuses()[0];
    assert_eq!(st.state, WatchState::NoData);
    assert!(e.blind().is_some_and(|r| r.contains("1 watch(es)")), "{:?}", e.blind());
    assert_eq!(st.no_data_count, 30);
    assert_eq!(st.no_data_since, Some(at(FAULT.0)), "the outage is dated from its first blind evaluation");
    // 30 blind evaluations 10 s apart with one reason: one warning, the rest at debug.
    assert_eq!(st.no_data_warned, Some(at(FAULT.0)));
    assert!(st.last_error.as_deref().unwrap_or("").contains("connection refused"));
    let metrics = e.metrics.encode().expect("encode");
    assert!(metrics.contains("warden_watch_no_data_total{watch=\"lat\"} 30"));
    // A refused connection is a retryable failure, and counted as one.
    assert!(metrics.contains("warden_query_failures_total{watch=\"lat\",outcome=\"retryable\"} 30"), "{metrics}");

    // Data during the fault: the incident opens. Then Prometheus goes down after the
    // fault: the incident must stay open, however long the outage.
    *source.down.lock().expect("lock") = false;
    e.evaluate_watch(0, at(FAULT.1 - 20)).await;
    e.evaluate_watch(0, at(FAULT.1 - 10)).await;
    assert_eq!(e.blind(), None, "data again");
    assert_eq!(e.store.open_incidents().expect("open").len(), 1);
    *source.down.lock().expect("lock") = true;
    for t in (FAULT.1..FAULT.1 + 600).step_by(10) {
        e.evaluate_watch(0, at(t)).await;
    }
    assert_eq!(e.store.open_incidents().expect("open").len(), 1);
    assert_eq!(cluster.patches.lock().expect("lock").len(), 1);
}

#[tokio::test]
async fn a_single_dip_does_not_resolve() {
    // The fault has one normal-looking point in the middle of it.
    let source = Arc::new(Scripted {
        value: Box::new(|t| {
            if t == FAULT.0 + 100 {
                1.0
            } else if (FAULT.0..FAULT.1).contains(&t) {
                5.0
            } else {
                1.0 + ((t / 10) % 5) as f64 * 0.01
            }
        }),
        down: Mutex::new(false),
    });
    let e = engine(source, Arc::new(FakeCluster::default()));
    for t in (T0..FAULT.1).step_by(10) {
        e.evaluate_watch(0, at(t)).await;
    }
    let incidents = e.store.list_incidents(None, 10).expect("list");
    assert_eq!(incidents.len(), 1, "{incidents:?}");
    assert_eq!(incidents[0].status, "open");
}

#[tokio::test]
async fn alerts_open_and_resolve_incidents() {
    let e = engine(baseline_with_fault(), Arc::new(FakeCluster::default()));
    let mut payload: WebhookPayload = serde_json::from_value(json!({
        "version": "4", "groupKey": "{}:{}", "status": "firing", "receiver": "warden",
        "alerts": [{"status": "firing", "labels": {"alertname": "HighErrors", "namespace": "shop", "deployment": "checkout", "severity": "critical"},
                    "annotations": {"summary": "5xx above 5 %"}, "startsAt": "2026-11-22T10:00:00Z"}]
    }))
    .expect("payload");
    assert_eq!(e.handle_alerts(&payload, at(T0)).await.expect("apply").accepted, 1);
    assert_eq!(e.handle_alerts(&payload, at(T0 + 60)).await.expect("apply").accepted, 1);
    let open = e.store.open_incidents().expect("open");
    assert_eq!(open.len(), 1, "repeated alerts update the same incident");
    assert_eq!(
        (open[0].source.as_str(), open[0].watch.as_str(), open[0].severity.as_str()),
        ("alertmanager", "alertmanager/HighErrors", "critical")
    );
    assert_eq!(open[0].title, "5xx above 5 %");
    payload.alerts[0].status = "resolved".into();
    e.handle_alerts(&payload, at(T0 + 120)).await.expect("apply");
    assert!(e.store.open_incidents().expect("open").is_empty());
}

#[test]
fn no_data_warnings_are_rate_limited_per_watch() {
    let t0 = at(0);
    let mut st = WatchStatus {
        name: "lat".into(),
        state: WatchState::Ok,
        last_evaluation: None,
        last_error: None,
        no_data_count: 0,
        series: 1,
        no_data_since: None,
        no_data_warned: None,
    };
    assert!(super::no_data_warns(&st, t0, "connection refused"), "the first blind evaluation warns");
    st.state = WatchState::NoData;
    st.last_error = Some("connection refused".into());
    st.no_data_warned = Some(t0);
    let minute = chrono::TimeDelta::minutes(1);
    assert!(!super::no_data_warns(&st, t0 + minute, "connection refused"), "same reason a minute later: debug");
    assert!(!super::no_data_warns(&st, t0 + super::NO_DATA_WARN_EVERY - minute, "connection refused"));
    assert!(super::no_data_warns(&st, t0 + super::NO_DATA_WARN_EVERY, "connection refused"), "repeated every period");
    assert!(super::no_data_warns(&st, t0 + minute, "empty result"), "a new reason warns at once");
}

#[tokio::test]
async fn a_follower_keeps_its_detectors_warm_and_acts_only_once_it_leads() {
    use crate::leadership::testing::Election;
    let election = Election::new();
    let (mut a, _leader) = election.leader("warden-0").await;
    let (mut b, follower) = election.follower("warden-1").await;
    let cluster = Arc::new(FakeCluster::default());
    let e = engine(baseline_with_fault(), cluster.clone()).with_leadership(follower, Duration::from_secs(10));
    let mut t = T0;
    while t < FAULT.0 + 30 {
        e.evaluate_watch(0, at(t)).await;
        t += 10;
    }
    // The follower saw the fault but opened, notified and changed nothing.
    assert_eq!(e.watch_statuses()[0].state, WatchState::Anomalous);
    assert!(e.store.list_incidents(None, 10).expect("list").is_empty());
    assert_eq!(e.store.pending_notifications().expect("count"), 0);
    assert!(cluster.patches.lock().expect("lock").is_empty());
    assert!(e.store.list_runs(None, None, 10).expect("runs").is_empty());

    // The leader leaves; the follower takes over and acts on its very next evaluation: its
    // detector is already warm.
    a.release().await.expect("release");
    b.step().await.expect("take over");
    assert!(e.leadership.is_leader());
    e.evaluate_watch(0, at(t)).await;
    let incidents = e.store.open_incidents().expect("open");
    assert_eq!(incidents.len(), 1);
    assert_eq!(*cluster.patches.lock().expect("lock"), vec![3]);
}

#[tokio::test]
async fn a_leader_whose_lease_is_too_short_leaves_the_step_unapplied_then_fences_it() {
    use crate::leadership::testing::Election;
    let election = Election::new();
    let (mut a, leader) = election.leader("warden-0").await;
    let cluster = Arc::new(FakeCluster::default());
    // A cluster write may take 10 s; 5 s after the last renew only 9 s of lease are left.
    let e = engine(baseline_with_fault(), cluster.clone()).with_leadership(leader, Duration::from_secs(10));
    election.clock.advance(Duration::from_secs(5));
    let mut t = T0;
    while t < FAULT.0 + 30 {
        e.evaluate_watch(0, at(t)).await;
        t += 10;
    }
    // The incident opened and its run started, but the scale step was not sent, not
    // failed and not recorded as a request: it waits in the store.
    assert_eq!(e.store.open_incidents().expect("open").len(), 1);
    assert!(cluster.patches.lock().expect("lock").is_empty());
    let runs = e.store.list_runs(None, None, 10).expect("runs");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status, warden_playbooks::run::RunStatus::Running);
    assert_eq!(runs[0].steps[0].status, warden_playbooks::run::StepStatus::Pending);
    assert!(e
        .store
        .audit_entries()
        .expect("audit")
        .iter()
        .all(|x| x.kind != warden_playbooks::audit::AuditKind::Request));

    // After a renew the run ticker sends it, fenced: the request entry names the holder
    // and the term, and the chain still verifies.
    a.step().await.expect("renew");
    let rem = e.remediation().expect("playbooks load").clone();
    rem.runs.tick(at(t)).await.expect("tick");
    assert_eq!(*cluster.patches.lock().expect("lock"), vec![3]);
    let entries = e.store.audit_entries().expect("audit");
    let request = entries.iter().find(|x| x.kind == warden_playbooks::audit::AuditKind::Request).expect("request");
    let fence = request.fence.as_ref().expect("fenced");
    assert_eq!(
        (fence.holder.as_str(), fence.transitions, fence.lease.as_str()),
        ("warden-0", 0, "lease warden/warden")
    );
    let head = e.store.audit_head().expect("head");
    assert!(warden_playbooks::audit::verify_with_head(&entries, head.as_ref()).is_ok());
}
