//! `warden demo`: the daemon's engine on a shipped scenario, with no cluster and no network.
//!
//! The scenario (`agent/demo/`) is a recorded request rate of `shop/checkout` with a load
//! surge. A simulated Prometheus turns it into p95 latency through a queueing model that
//! depends on how many replicas are *ready* at each moment, and a simulated cluster applies
//! scale actions with a pod start-up delay. So Warden's action really is what brings latency
//! back, and the incident resolves only because of it. Time is simulated: two hours of
//! evaluations take seconds. A short Prometheus outage shows "no data" handling.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use async_trait::async_trait;
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use warden_connectors::prometheus::{RangeResult, Sample, Series};
use warden_detectors::rca::{ChangeKind, Payload, Subject};
use warden_playbooks::cluster::{DeploymentInfo, JobCreated, JobPhase, JobStatus};
use warden_playbooks::{Cluster, ClusterError, ClusterErrorKind, ReplicaState, SetReplicasOutcome, WorkloadRef};

use crate::analysis::{ClusterEvidence, ClusterFacts, Fact, Summarizer};
use crate::app::assemble::{self, Mode, Parts};
use crate::config;
use crate::ingest::source::MetricSource;
use crate::metrics::Metrics;
use crate::notify::{Channels, Outbox};
use crate::store::Store;
use crate::timeline::{Timeline, TimelineEvent};

const SCENARIO_YAML: &str = include_str!("../../demo/demo.yaml");
const LOAD_CSV: &str = include_str!("../../demo/checkout-load.csv");
/// Seconds of scenario data before the demo's first evaluation (the detector's history).
const HISTORY_SECS: i64 = 7200;
const DEMO_SECS: i64 = 7200;
const START_REPLICAS: i32 = 3;
/// The fraud model's server, which the retraining playbook promotes a new model on.
const MODEL_SERVER: (&str, &str) = ("ml", "fraud-scorer");
/// Requests per second one replica serves at full utilisation.
const REPLICA_CAPACITY: f64 = 60.0;
/// Time a new pod needs to become ready.
const POD_STARTUP: i64 = 60;
/// Simulated Prometheus outage, in seconds after the demo's start.
const OUTAGE: (i64, i64) = (75 * 60, 76 * 60);

fn start_time() -> DateTime<Utc> {
    DateTime::from_timestamp(1_772_442_000, 0).unwrap_or(DateTime::UNIX_EPOCH) // 2026-03-02 09:00 UTC
}

/// Recorded request rate, one value per 30 s from the scenario's beginning.
struct Load {
    origin: DateTime<Utc>,
    rps: Vec<f64>,
}

impl Load {
    fn parse(text: &str, origin: DateTime<Utc>) -> Result<Self> {
        let mut rps = Vec::new();
        for (i, line) in text.lines().enumerate().skip(1) {
            let (offset, value) = line
                .split_once(',')
                .ok_or_else(|| anyhow!("demo/checkout-load.csv:{}: expected two columns", i + 1))?;
            let offset: i64 =
                offset.trim().parse().with_context(|| format!("demo/checkout-load.csv:{}: offset", i + 1))?;
            let value: f64 =
                value.trim().parse().with_context(|| format!("demo/checkout-load.csv:{}: value", i + 1))?;
            if offset != rps.len() as i64 * 30 {
                return Err(anyhow!("demo/checkout-load.csv:{}: offsets must step by 30 s", i + 1));
            }
            rps.push(value);
        }
        Ok(Self { origin, rps })
    }

    fn at(&self, t: DateTime<Utc>) -> Option<f64> {
        let secs = (t - self.origin).num_seconds();
        if secs < 0 {
            return None;
        }
        self.rps.get((secs / 30) as usize).copied()
    }
}

/// A Deployment whose pods take [`POD_STARTUP`] seconds to become ready.
pub struct SimCluster {
    /// The model server `ml/fraud-scorer`: its container's environment.
    model_env: Mutex<BTreeMap<String, String>>,
    /// Jobs by name, with how often their status was read; a Job succeeds on its third read.
    jobs: Mutex<BTreeMap<String, u32>>,
    now: Mutex<DateTime<Utc>>,
    /// (time, desired replicas) changes, oldest first.
    history: Mutex<Vec<(DateTime<Utc>, i32)>>,
    target: WorkloadRef,
}

impl SimCluster {
    fn new(target: WorkloadRef, origin: DateTime<Utc>) -> Self {
        Self {
            model_env: Mutex::new(BTreeMap::from([("MODEL_VERSION".to_string(), "v3.0".to_string())])),
            jobs: Mutex::new(BTreeMap::new()),
            now: Mutex::new(origin),
            history: Mutex::new(vec![(origin, START_REPLICAS)]),
            target,
        }
    }

    fn set_now(&self, t: DateTime<Utc>) {
        if let Ok(mut n) = self.now.lock() {
            *n = t;
        }
    }

    fn desired_at(&self, t: DateTime<Utc>) -> i32 {
        let h = self.history.lock().map(|h| h.clone()).unwrap_or_default();
        h.iter().rev().find(|(at, _)| *at <= t).map(|(_, r)| *r).unwrap_or(START_REPLICAS)
    }

    /// Ready pods: scaling up takes effect after start-up, scaling down at once.
    fn ready_at(&self, t: DateTime<Utc>) -> i32 {
        self.desired_at(t).min(self.desired_at(t - ChronoDuration::seconds(POD_STARTUP)))
    }
}

/// Nodes of the simulated cluster; checkout's pods are spread over them in order.
const NODES: [&str; 3] = ["worker-1", "worker-2", "worker-3"];

/// What the simulated cluster tells the root-cause analysis: the topology of the workload,
/// the scaling events the Deployment controller records for Warden's scale-ups, and the
/// ConfigMap change behind the fraud model's drift (the feature pipeline's settings, edited
/// two minutes before the scores shift).
#[async_trait]
impl ClusterEvidence for SimCluster {
    async fn workload_facts(&self, namespace: &str, deployment: &str, since: i64) -> Result<ClusterFacts, String> {
        let now = self.now.lock().map(|n| *n).unwrap_or_else(|_| Utc::now());
        let subject = Subject::workload(Some(namespace), deployment);
        let mut facts = Vec::new();
        if (namespace, deployment) == (self.target.namespace.as_str(), self.target.name.as_str()) {
            let replicas = self.desired_at(now).max(0) as usize;
            let pods: Vec<String> = PODS.iter().take(replicas).map(|p| p.to_string()).collect();
            let nodes: Vec<String> = NODES.iter().take(replicas.min(NODES.len())).map(|n| n.to_string()).collect();
            facts.push(Fact {
                time: since,
                subject: subject.clone(),
                payload: Payload::Topology {
                    nodes,
                    pods,
                    services: vec![deployment.to_string()],
                    depends_on: vec!["payments".into()],
                },
            });
            let history = self.history.lock().map(|h| h.clone()).unwrap_or_default();
            for pair in history.windows(2) {
                let ((_, from), (at, to)) = (pair[0], pair[1]);
                if at.timestamp() < since || at > now || from == to {
                    continue;
                }
                let verb = if to > from { "up" } else { "down" };
                facts.push(Fact {
                    time: at.timestamp(),
                    subject: subject.clone(),
                    payload: Payload::KubeEvent {
                        reason: "ScalingReplicaSet".into(),
                        message: format!("Scaled {verb} replica set checkout-6f7c9d from {from} to {to}"),
                        count: 1,
                        object: format!("Deployment/{deployment}"),
                    },
                });
            }
        } else if (namespace, deployment) == MODEL_SERVER {
            let demo_start = self.history.lock().ok().and_then(|h| h.first().map(|(t, _)| *t)).unwrap_or(now)
                + ChronoDuration::seconds(HISTORY_SECS);
            let changed = demo_start + ChronoDuration::minutes(DRIFT_FROM - 2);
            facts.push(Fact {
                time: since,
                subject: subject.clone(),
                payload: Payload::Topology {
                    nodes: vec![NODES[1].into()],
                    pods: vec!["fraud-scorer-5c8b7-kq2vd".into()],
                    services: vec![deployment.to_string()],
                    depends_on: vec![],
                },
            });
            if changed.timestamp() >= since && changed <= now {
                facts.push(Fact {
                    time: changed.timestamp(),
                    subject,
                    payload: Payload::Change {
                        change: ChangeKind::Config,
                        from: None,
                        to: None,
                        description: "ConfigMap ml/feature-pipeline (mounted by fraud-scorer) changed".into(),
                    },
                });
            }
        } else {
            return Ok(ClusterFacts { facts, gaps: vec![format!("{namespace}/{deployment} is not simulated")] });
        }
        Ok(ClusterFacts { facts, gaps: Vec::new() })
    }
}

#[async_trait]
impl Cluster for SimCluster {
    async fn get_replicas(&self, t: &WorkloadRef) -> Result<ReplicaState, ClusterError> {
        if t != &self.target {
            return Err(ClusterError::new(
                ClusterErrorKind::NotFound,
                format!("deployments.apps \"{}\" not found", t.name),
            ));
        }
        let now = self.now.lock().map(|n| *n).unwrap_or_else(|_| Utc::now());
        Ok(ReplicaState { desired: self.desired_at(now), current: self.ready_at(now) })
    }

    async fn set_replicas(
        &self,
        t: &WorkloadRef,
        replicas: i32,
        dry_run: bool,
    ) -> Result<SetReplicasOutcome, ClusterError> {
        if t != &self.target {
            return Err(ClusterError::new(
                ClusterErrorKind::NotFound,
                format!("deployments.apps \"{}\" not found", t.name),
            ));
        }
        if replicas < 0 {
            return Err(ClusterError::new(ClusterErrorKind::Other, "spec.replicas: must be non-negative"));
        }
        let now = self.now.lock().map(|n| *n).unwrap_or_else(|_| Utc::now());
        if !dry_run {
            if let Ok(mut h) = self.history.lock() {
                h.push((now, replicas));
            }
        }
        Ok(SetReplicasOutcome {
            replicas,
            dry_run,
            response: serde_json::json!({"kind": "Scale", "apiVersion": "autoscaling/v1", "spec": {"replicas": replicas}}),
        })
    }

    async fn deployment_info(&self, t: &WorkloadRef) -> Result<DeploymentInfo, ClusterError> {
        if t.namespace == MODEL_SERVER.0 && t.name == MODEL_SERVER.1 {
            return Ok(DeploymentInfo {
                labels: BTreeMap::from([("app".to_string(), t.name.clone())]),
                revision: Some(1),
                replicas: 2,
            });
        }
        let state = self.get_replicas(t).await?;
        let labels = BTreeMap::from([("app".to_string(), t.name.clone())]);
        Ok(DeploymentInfo { labels, revision: Some(1), replicas: state.desired })
    }

    async fn create_job(
        &self,
        namespace: &str,
        job: &serde_json::Value,
        dry_run: bool,
    ) -> Result<JobCreated, ClusterError> {
        let name = job["metadata"]["name"].as_str().unwrap_or_default().to_string();
        if name.is_empty() || namespace != MODEL_SERVER.0 {
            return Err(ClusterError::new(
                ClusterErrorKind::Other,
                format!("jobs are simulated in namespace {} only", MODEL_SERVER.0),
            ));
        }
        let created = match self.jobs.lock() {
            Ok(mut jobs) if !dry_run => jobs.insert(name, 0).is_none(),
            _ => true,
        };
        Ok(JobCreated { created, response: job.clone() })
    }

    async fn job_status(&self, _namespace: &str, name: &str) -> Result<JobStatus, ClusterError> {
        let reads = match self.jobs.lock() {
            Ok(mut jobs) => match jobs.get_mut(name) {
                Some(n) => {
                    *n += 1;
                    *n
                }
                None => {
                    return Err(ClusterError::new(
                        ClusterErrorKind::NotFound,
                        format!("jobs.batch \"{name}\" not found"),
                    ))
                }
            },
            Err(_) => return Err(ClusterError::new(ClusterErrorKind::Other, "lock")),
        };
        if reads >= 3 {
            Ok(JobStatus { phase: JobPhase::Succeeded, status: serde_json::json!({"succeeded": 1}) })
        } else {
            Ok(JobStatus { phase: JobPhase::Running, status: serde_json::json!({"active": 1}) })
        }
    }

    async fn read_deployment(&self, t: &WorkloadRef) -> Result<serde_json::Value, ClusterError> {
        if t.namespace != MODEL_SERVER.0 || t.name != MODEL_SERVER.1 {
            return Err(ClusterError::new(
                ClusterErrorKind::NotFound,
                format!("deployments.apps \"{}\" not found", t.name),
            ));
        }
        let env: Vec<serde_json::Value> = self
            .model_env
            .lock()
            .map(|e| e.iter().map(|(k, v)| serde_json::json!({"name": k, "value": v})).collect())
            .unwrap_or_default();
        Ok(serde_json::json!({"spec": {"template": {"spec": {"containers": [{"name": "fraud-v3", "env": env}]}}}}))
    }

    async fn patch_deployment(
        &self,
        t: &WorkloadRef,
        patch: &serde_json::Value,
        dry_run: bool,
    ) -> Result<serde_json::Value, ClusterError> {
        self.read_deployment(t).await?;
        let containers = patch["spec"]["template"]["spec"]["containers"].as_array().cloned().unwrap_or_default();
        if !dry_run {
            if let Ok(mut env) = self.model_env.lock() {
                for c in containers {
                    for e in c["env"].as_array().cloned().unwrap_or_default() {
                        if let (Some(k), Some(v)) = (e["name"].as_str(), e["value"].as_str()) {
                            env.insert(k.to_string(), v.to_string());
                        }
                    }
                }
            }
        }
        self.read_deployment(t).await
    }
}

/// Prometheus, simulated: every metric the demo's watches query, computed from the recorded
/// load, the simulated cluster and the scenario's faults.
struct SimPrometheus {
    load: Load,
    cluster: Arc<SimCluster>,
    demo_start: DateTime<Utc>,
}

/// Names of checkout's pods, in the order the Deployment scales them up.
const PODS: [&str; 6] = [
    "checkout-6f7c9d-b7xkq",
    "checkout-6f7c9d-m2d9p",
    "checkout-6f7c9d-r4tzw",
    "checkout-6f7c9d-h8vns",
    "checkout-6f7c9d-c3lfy",
    "checkout-6f7c9d-w9qjd",
];
/// Scenario faults, in minutes after the demo's start.
const SLOW_POD: (i64, i64) = (60, 80); // checkout-6f7c9d-m2d9p on a noisy node
const DISK_FILL_FROM: i64 = 45; // debug logging left on in orders-db
const CPU_RUNAWAY: (i64, i64) = (95, 115); // payments spins on a retry loop
const DRIFT_FROM: i64 = 100; // a broken feature pipeline shifts fraud scores
/// Fraud-score histogram: bucket bounds and the share of scores per bucket, before and
/// after the pipeline breaks.
const SCORE_LE: [&str; 6] = ["0.1", "0.25", "0.5", "0.75", "0.9", "+Inf"];
const SCORE_SHARE: [f64; 6] = [0.55, 0.20, 0.12, 0.07, 0.04, 0.02];
const SCORE_SHARE_DRIFTED: [f64; 6] = [0.30, 0.20, 0.17, 0.15, 0.10, 0.08];
const SCORES_PER_SECOND: f64 = 20.0;

/// Deterministic noise in [-0.5, 0.5) for a time and a stream.
fn jitter(t: DateTime<Utc>, stream: u64) -> f64 {
    let h = (t.timestamp() as u64 ^ stream.wrapping_mul(0xA24B_AED4_963E_E407))
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .rotate_left(17);
    (h % 10_000) as f64 / 10_000.0 - 0.5
}

impl SimPrometheus {
    fn minutes(&self, t: DateTime<Utc>) -> i64 {
        (t - self.demo_start).num_minutes()
    }

    fn latency(&self, t: DateTime<Utc>) -> Option<f64> {
        let rps = self.load.at(t)?;
        let ready = self.cluster.ready_at(t).max(1) as f64;
        let util = (rps / (ready * REPLICA_CAPACITY)).min(0.95);
        Some((0.080 + 0.040 * util / (1.0 - util)) * (1.0 + jitter(t, 0) * 0.06))
    }

    fn pod_latency(&self, t: DateTime<Utc>, pod: usize) -> Option<f64> {
        let slow = pod == 1 && (SLOW_POD.0..SLOW_POD.1).contains(&self.minutes(t));
        Some(self.latency(t)? * (1.0 + jitter(t, 10 + pod as u64) * 0.10) * if slow { 2.5 } else { 1.0 })
    }

    fn disk_used(&self, t: DateTime<Utc>) -> f64 {
        let hours = (t - self.demo_start).num_seconds() as f64 / 3600.0;
        let fill_hours = (hours - DISK_FILL_FROM as f64 / 60.0).max(0.0);
        0.62 + 0.002 * hours + 0.20 * fill_hours + jitter(t, 2) * 0.002
    }

    /// Payments traffic: an hourly wave, so the reference covers quiet and busy times.
    fn payments_rps(&self, t: DateTime<Utc>) -> f64 {
        let phase = (t.timestamp() % 3600) as f64 / 3600.0 * std::f64::consts::TAU;
        (80.0 + 40.0 * phase.sin()) * (1.0 + jitter(t, 3) * 0.04)
    }

    fn payments_cpu(&self, t: DateTime<Utc>) -> f64 {
        let runaway = (CPU_RUNAWAY.0..CPU_RUNAWAY.1).contains(&self.minutes(t));
        0.3 + 0.01 * self.payments_rps(t) + jitter(t, 4) * 0.04 + if runaway { 0.6 } else { 0.0 }
    }

    fn payments_memory(&self, t: DateTime<Utc>) -> f64 {
        (900.0 + 2.0 * self.payments_rps(t)) * 1e6 * (1.0 + jitter(t, 5) * 0.01)
    }

    /// Cumulative count of fraud scores in buckets up to `b`, since the scenario's origin.
    fn score_count(&self, t: DateTime<Utc>, b: usize) -> f64 {
        let shift = self.demo_start + ChronoDuration::minutes(DRIFT_FROM);
        let origin = self.load.origin;
        let before = (t.min(shift) - origin).num_seconds().max(0) as f64;
        let after = (t - shift).num_seconds().max(0) as f64;
        let share = |s: &[f64; 6]| s.iter().take(b + 1).sum::<f64>();
        (SCORES_PER_SECOND * (before * share(&SCORE_SHARE) + after * share(&SCORE_SHARE_DRIFTED))).round()
    }

    /// The series a query asks for, keyed by the metric name in it.
    fn series(&self, query: &str, times: &[DateTime<Utc>]) -> Vec<Series> {
        let labels = |pairs: &[(&str, &str)]| {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>()
        };
        let one = |labels: BTreeMap<String, String>, f: &dyn Fn(DateTime<Utc>) -> Option<f64>| Series {
            labels,
            points: times
                .iter()
                .filter_map(|t| f(*t).map(|v| Sample { timestamp_ms: t.timestamp_millis(), value: v }))
                .collect(),
        };
        let checkout = [("namespace", "shop"), ("deployment", "checkout")];
        let payments = [("namespace", "shop"), ("deployment", "payments")];
        if query.contains("fraud_model_candidate_auc") {
            return vec![one(labels(&[("model", "fraud-v3")]), &|_| Some(0.93))];
        }
        if query.contains("fraud_model_errors_total") {
            // A verification condition: no serving errors, so it holds.
            return vec![one(labels(&[("model", "fraud-v3")]), &|_| Some(1.0))];
        }
        if let Some(threshold) = query.split("< bool").nth(1).and_then(|x| x.trim().parse::<f64>().ok()) {
            // `<latency> < bool X`: 1 while p95 is under X.
            return vec![one(labels(&checkout), &|t| self.latency(t).map(|v| if v < threshold { 1.0 } else { 0.0 }))];
        }
        if query.contains("fraud_model_score_bucket") {
            return SCORE_LE
                .iter()
                .enumerate()
                .map(|(b, le)| one(labels(&[("model", "fraud-v3"), ("le", le)]), &|t| Some(self.score_count(t, b))))
                .collect();
        }
        if query.contains("kubelet_volume_stats") {
            return vec![one(labels(&[("namespace", "shop"), ("persistentvolumeclaim", "orders-db-data")]), &|t| {
                Some(self.disk_used(t))
            })];
        }
        if query.contains("container_cpu_usage_seconds_total") {
            return vec![one(labels(&payments), &|t| Some(self.payments_cpu(t)))];
        }
        if query.contains("container_memory_working_set_bytes") {
            return vec![one(labels(&payments), &|t| Some(self.payments_memory(t)))];
        }
        if query.contains("http_requests_total") {
            return vec![one(labels(&payments), &|t| Some(self.payments_rps(t)))];
        }
        if query.contains("pod, le") {
            return PODS
                .iter()
                .enumerate()
                .map(|(i, pod)| {
                    let mut l = labels(&checkout);
                    l.insert("pod".into(), pod.to_string());
                    one(l, &|t| (self.cluster.ready_at(t) > i as i32).then(|| self.pod_latency(t, i)).flatten())
                })
                .filter(|s| !s.points.is_empty())
                .collect();
        }
        vec![one(labels(&checkout), &|t| self.latency(t))]
    }
}

#[async_trait]
impl MetricSource for SimPrometheus {
    async fn query_range(
        &self,
        q: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        step: Duration,
    ) -> warden_connectors::Result<RangeResult> {
        let since = (end - self.demo_start).num_seconds();
        if (OUTAGE.0..OUTAGE.1).contains(&since) {
            let url = "http://prometheus.demo.invalid:9090/api/v1/query_range".to_string();
            return Err(warden_connectors::Error::Connect {
                url,
                message: "connection refused (simulated outage)".into(),
            });
        }
        let step = ChronoDuration::from_std(step).map_err(|e| warden_connectors::Error::InvalidInput(e.to_string()))?;
        let mut times = Vec::new();
        let mut t = start;
        while t <= end {
            times.push(t);
            t += step;
        }
        Ok(RangeResult { series: self.series(q, &times), warnings: vec![] })
    }
}

/// Split text into lines of at most `width` characters, at spaces.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut cur = String::new();
    for word in text.split_whitespace() {
        if !cur.is_empty() && cur.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(word);
    }
    if !cur.is_empty() {
        lines.push(cur);
    }
    lines
}

fn hhmm(t: DateTime<Utc>) -> String {
    t.format("%H:%M:%S").to_string()
}

fn fmt(v: Option<f64>) -> String {
    v.map(|x| format!("{:.0} ms", x * 1000.0)).unwrap_or_else(|| "-".into())
}

struct Printer<W: Write> {
    out: W,
    /// Print every evaluation, not only changes and one every ten minutes.
    all: bool,
    last_ok_print: Option<DateTime<Utc>>,
    /// The watch whose every change is printed with its latency and replicas.
    main_watch: String,
    /// Last printed state per (watch, target) of the other watches.
    states: BTreeMap<(String, String), String>,
    /// Last printed "no data" reason per watch, so an outage prints once per watch.
    no_data: BTreeMap<String, String>,
}

impl<W: Write> Printer<W> {
    fn line(&mut self, at: DateTime<Utc>, what: &str, text: &str) -> std::io::Result<()> {
        writeln!(self.out, "{}  {:<10} {}", hhmm(at), what, text)
    }

    fn event(&mut self, ev: TimelineEvent, replicas: i32) -> std::io::Result<()> {
        match ev {
            TimelineEvent::Evaluated { at, watch, target, value, expected, state, note } => {
                self.no_data.remove(&watch);
                if watch != self.main_watch {
                    // The other watches: only when a series turns anomalous and when it
                    // stops being so (every evaluation with --all-evaluations).
                    let key = (watch.clone(), target.clone());
                    let was = self.states.insert(key, state.clone());
                    let turned = (state == "anomalous") != (was.as_deref() == Some("anomalous"));
                    if self.all || turned {
                        let why = note.map(|n| format!("\n{:>22}{n}", "")).unwrap_or_default();
                        self.line(at, "evaluate", &format!("{watch} {target}: {state}{why}"))?;
                    }
                    return Ok(());
                }
                let interesting = state != "normal" || self.all;
                let periodic = self.last_ok_print.is_none_or(|t| at - t >= ChronoDuration::minutes(10));
                if interesting || periodic {
                    self.last_ok_print = Some(at);
                    let text = format!(
                        "{target} p95 {} (expected {}), {replicas} replicas: {state}",
                        fmt(Some(value)),
                        fmt(expected)
                    );
                    self.line(at, "evaluate", &text)?;
                }
                Ok(())
            }
            TimelineEvent::NoData { at, watch, reason } => {
                if self.no_data.get(&watch) == Some(&reason) {
                    return Ok(());
                }
                self.no_data.insert(watch.clone(), reason.clone());
                self.line(at, "no data", &format!("{watch}: {reason}; nothing opened, resolved or acted on"))
            }
            TimelineEvent::IncidentOpened { at, incident_id, title } => {
                self.line(at, "INCIDENT", &format!("#{incident_id} opened: {title}"))
            }
            TimelineEvent::IncidentUpdated { .. } => Ok(()),
            TimelineEvent::Run { at, text, status, .. } => {
                let what = match status.as_str() {
                    "succeeded" => "ACTION",
                    "awaiting_approval" => "APPROVAL",
                    "reverting" | "reverted" | "revert_failed" => "REVERT",
                    "failed" => "FAILED",
                    _ => "run",
                };
                self.line(at, what, &text)
            }
            TimelineEvent::Analysed { at, incident_id, top, summary } => {
                self.line(at, "CAUSE", &format!("#{incident_id}: probable cause {top}"))?;
                for chunk in wrap(&summary, 92) {
                    writeln!(self.out, "{:>22}{chunk}", "")?;
                }
                Ok(())
            }
            TimelineEvent::IncidentResolved { at, incident_id, title } => {
                self.line(at, "RESOLVED", &format!("#{incident_id}: {title}"))
            }
            TimelineEvent::NotificationDelivered { at, channel, subject, .. } => {
                self.line(at, "notify", &format!("{channel}: {subject}"))
            }
            TimelineEvent::NotificationFailed { at, channel, error, .. } => {
                self.line(at, "notify", &format!("{channel} failed, will retry: {error}"))
            }
            TimelineEvent::NotificationDeadLettered { at, channel, reason, .. } => {
                self.line(at, "notify", &format!("{channel} dead-lettered: {reason}"))
            }
        }
    }
}

/// Run the demo, writing the store and notifications under `out_dir`. With `model` (a GGUF
/// file), incident summaries are written by that local model; without, by the template.
pub async fn run(out_dir: &Path, all_evaluations: bool, model: Option<&Path>) -> Result<()> {
    let wall = std::time::Instant::now();
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let mut cfg = config::parse_str(SCENARIO_YAML, Path::new("agent/demo/demo.yaml")).map_err(|e| anyhow!("{e}"))?;
    let db = out_dir.join("warden.db");
    for suffix in ["", "-wal", "-shm"] {
        let p = PathBuf::from(format!("{}{suffix}", db.display()));
        if p.exists() {
            std::fs::remove_file(&p).with_context(|| format!("removing the previous demo's {}", p.display()))?;
        }
    }
    let notifications = out_dir.join("notifications.jsonl");
    if notifications.exists() {
        std::fs::remove_file(&notifications).with_context(|| format!("removing {}", notifications.display()))?;
    }
    cfg.store.sqlite = db.clone();
    if let Some(f) = cfg.notify.file.as_mut() {
        f.path = notifications.clone();
    }

    let demo_start = start_time();
    let origin = demo_start - ChronoDuration::seconds(HISTORY_SECS);
    let target = WorkloadRef::new("shop", "checkout");
    let cluster = Arc::new(SimCluster::new(target.clone(), origin));
    let source = Arc::new(SimPrometheus { load: Load::parse(LOAD_CSV, origin)?, cluster: cluster.clone(), demo_start });

    let cfg = Arc::new(cfg);
    let store = Arc::new(Store::open(&db)?);
    let metrics = Arc::new(Metrics::new());
    let channels = Channels { file: Some(notifications.clone()), ..Default::default() };
    let (timeline, mut rx) = Timeline::channel();
    let summarizer = match model {
        Some(path) => {
            let section = config::ModelSection {
                path: path.to_path_buf(),
                tokenizer: None,
                chat_template: None,
                device: "cpu".into(),
                max_tokens: 160,
                time_budget: config::HumanDuration(Duration::from_secs(120)),
                sha256: None,
            };
            Summarizer::from_config(Some(&section))
        }
        None => Summarizer::template_only("no model given (warden demo --model FILE.gguf)"),
    };
    // Analyses and runs are awaited inline, on the simulated clock.
    let engine = assemble::pipeline(
        Parts {
            config: cfg.clone(),
            store: store.clone(),
            source,
            cluster: Some(cluster.clone() as Arc<dyn Cluster>),
            evidence: Some(cluster.clone() as Arc<dyn ClusterEvidence>),
            logs: None,
            metrics: metrics.clone(),
            channels: channels.names(),
            timeline: timeline.clone(),
            summarizer: Arc::new(summarizer),
        },
        Mode::Inline,
    );
    let outbox =
        Outbox::new(store.clone(), channels, crate::notify::Policy::from_config(&cfg.notify), metrics, timeline);

    let stdout = std::io::stdout();
    let w = &cfg.watches[0];
    let mut p = Printer {
        out: stdout.lock(),
        all: all_evaluations,
        last_ok_print: None,
        main_watch: w.name.clone(),
        states: BTreeMap::new(),
        no_data: BTreeMap::new(),
    };
    writeln!(
        p.out,
        "warden demo: {} watches; `{}` on shop/checkout ({} replicas, max {}) may scale it",
        cfg.watches.len(),
        w.name,
        START_REPLICAS,
        w.action
            .as_ref()
            .and_then(|a| a.scale.as_ref())
            .and_then(|s| s.max_replicas)
            .unwrap_or(cfg.actions.scale.max_replicas)
    )?;
    for w in &cfg.watches {
        writeln!(p.out, "  {:<26} {:<18} every {}", w.name, w.detector.kind, w.interval)?;
    }
    writeln!(p.out, "scenario (simulated time):")?;
    writeln!(p.out, "  09:20  a load surge on checkout pushes p95 latency up")?;
    writeln!(p.out, "  09:45  debug logging left on starts filling the orders-db volume")?;
    writeln!(p.out, "  10:00  one checkout pod lands on a noisy node and slows down (until 10:20)")?;
    writeln!(p.out, "  10:15  Prometheus is unreachable for a minute")?;
    writeln!(p.out, "  10:35  payments spins in a retry loop: CPU up, traffic unchanged (until 10:55)")?;
    writeln!(p.out, "  10:40  a broken feature pipeline shifts the fraud model's scores\n")?;

    let tick = ChronoDuration::seconds(30);
    let mut t = demo_start;
    let end = demo_start + ChronoDuration::seconds(DEMO_SECS);
    // After the scenario's data ends, the clock runs on (runs only) until playbooks finish.
    let drain_until = end + ChronoDuration::minutes(30);
    while t <= drain_until {
        cluster.set_now(t);
        let replicas = cluster.desired_at(t);
        if let Some(rem) = engine.remediation() {
            if let Err(e) = rem.runs.tick(t).await {
                writeln!(p.out, "runs: {e}")?;
            }
            // The on-call engineer approves a waiting run two minutes after it asked.
            for run in store.list_runs(Some(warden_playbooks::run::RunStatus::AwaitingApproval), None, 10)? {
                if t - run.created_at >= ChronoDuration::minutes(2) {
                    writeln!(
                        p.out,
                        "{}  {:<10} run {} approved by user/oncall (`warden approve {}`)",
                        hhmm(t),
                        "approve",
                        run.id,
                        run.id
                    )?;
                    if let Err(e) = rem.runs.decide(run.id, "user/oncall", true, Some("demo".into()), t).await {
                        writeln!(p.out, "runs: {e}")?;
                    }
                }
            }
        }
        if t > end {
            let active = store.list_runs(None, None, 50)?.iter().any(|r| !r.status.is_terminal());
            // What the finishing runs notify is delivered too.
            outbox.deliver_due(t).await;
            while let Ok(ev) = rx.try_recv() {
                p.event(ev, replicas)?;
            }
            if !active {
                break;
            }
            t += tick;
            continue;
        }
        let elapsed = (t - demo_start).to_std().unwrap_or_default();
        for (i, w) in cfg.watches.iter().enumerate() {
            let every = w.interval.get().as_millis().max(1);
            if elapsed.as_millis().is_multiple_of(every) {
                engine.evaluate_watch(i, t).await;
            }
        }
        outbox.deliver_due(t).await;
        while let Ok(ev) = rx.try_recv() {
            p.event(ev, replicas)?;
        }
        t += tick;
    }

    let incidents = store.list_incidents(None, 100)?;
    let runs = store.list_runs(None, None, 100)?;
    writeln!(p.out)?;
    writeln!(
        p.out,
        "summary: {} incident(s) ({} resolved, {} open), {} action(s), {} notification(s) in {}",
        incidents.len(),
        incidents.iter().filter(|i| i.status == "resolved").count(),
        incidents.iter().filter(|i| i.status != "resolved").count(),
        crate::act::remediation::actions_view(&runs).iter().filter(|a| a["status"] == "succeeded").count(),
        std::fs::read_to_string(&notifications).map(|s| s.lines().count()).unwrap_or(0),
        notifications.display()
    )?;
    writeln!(
        p.out,
        "store: {} (try: warden incidents list --db {} and warden incidents show ID --db {})",
        db.display(),
        db.display(),
        db.display()
    )?;
    writeln!(
        p.out,
        "simulated {} of operation in {:.1} s",
        humantime::format_duration(Duration::from_secs(DEMO_SECS as u64)),
        wall.elapsed().as_secs_f64()
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenario_files_parse() {
        let origin = start_time();
        let load = Load::parse(LOAD_CSV, origin).expect("load csv");
        assert_eq!(load.rps.len(), ((HISTORY_SECS + DEMO_SECS) / 30 + 1) as usize);
        config::parse_str(SCENARIO_YAML, Path::new("demo.yaml")).expect("demo config is valid");
    }

    #[tokio::test]
    async fn pods_become_ready_after_startup() {
        let t0 = start_time();
        let c = SimCluster::new(WorkloadRef::new("shop", "checkout"), t0);
        c.set_now(t0 + ChronoDuration::seconds(100));
        c.set_replicas(&WorkloadRef::new("shop", "checkout"), 5, false).await.expect("scale");
        assert_eq!(c.ready_at(t0 + ChronoDuration::seconds(120)), 3);
        assert_eq!(c.ready_at(t0 + ChronoDuration::seconds(160)), 5);
        c.set_replicas(&WorkloadRef::new("shop", "checkout"), 9, true).await.expect("dry run");
        assert_eq!(c.desired_at(t0 + ChronoDuration::seconds(300)), 5);
        assert!(c.get_replicas(&WorkloadRef::new("shop", "other")).await.is_err());
    }

    #[tokio::test]
    async fn demo_opens_acts_and_resolves() {
        let dir = tempfile::tempdir().expect("tempdir");
        run(dir.path(), false, None).await.expect("demo runs");
        let store = Store::open(&dir.path().join("warden.db")).expect("store");
        let incidents = store.list_incidents(None, 20).expect("incidents");
        let by_watch = |w: &str| incidents.iter().filter(|i| i.watch == w).collect::<Vec<_>>();

        // The latency incident: opened, acted on, resolved.
        let latency = by_watch("checkout-p95-latency");
        assert_eq!(latency.len(), 1, "{incidents:?}");
        assert_eq!(latency[0].status, "resolved");
        let runs = store.list_runs(None, None, 50).expect("runs");
        let mut scaled: Vec<_> = crate::act::remediation::actions_view(&runs)
            .into_iter()
            .filter(|a| a["kind"] == "scale" && a["status"] == "succeeded")
            .map(|a| (a["from_replicas"].as_i64(), a["to_replicas"].as_i64()))
            .collect();
        scaled.reverse();
        assert_eq!(scaled.first(), Some(&(Some(3), Some(4))));
        // The built-in playbooks ran: scale-up with its verification, and the retraining on
        // drift after the (simulated) approval: Job, quality check, promotion, serving check.
        use warden_playbooks::run::{RunStatus, StepStatus};
        let scale_up = runs.iter().find(|r| r.playbook == "scale-up-on-saturation").expect("a scale-up run");
        assert_eq!(scale_up.status, RunStatus::Succeeded, "{scale_up:?}");
        assert!(scale_up.steps.iter().all(|st| st.status == StepStatus::Done), "{scale_up:?}");
        let retrain = runs.iter().find(|r| r.playbook == "retrain-on-drift").expect("a retraining run");
        assert_eq!(retrain.status, RunStatus::Succeeded, "{retrain:?}");
        assert_eq!(retrain.approval.as_ref().and_then(|a| a.decided_by.as_deref()), Some("user/oncall"));
        let actions: Vec<&str> = retrain.steps.iter().map(|st| st.action.as_str()).collect();
        assert_eq!(actions, ["run_job", "verify", "patch", "verify"]);
        let entries = store.audit_entries().expect("audit");
        assert!(warden_playbooks::audit::verify(&entries).is_ok());

        // Each of the other faults is found once, on the right series, and nothing else is:
        // not the pods that started during the scale-up, not the payments CPU during
        // ordinary peaks.
        let pods = by_watch("checkout-pod-latency");
        assert_eq!(pods.len(), 1, "{pods:?}");
        assert_eq!(pods[0].labels.get("pod").map(String::as_str), Some(PODS[1]));
        assert_eq!(pods[0].status, "resolved");
        let at = |m: i64| start_time() + ChronoDuration::minutes(m);
        assert!(
            pods[0].opened_at >= at(SLOW_POD.0) && pods[0].opened_at <= at(SLOW_POD.0 + 5),
            "{:?}",
            pods[0].opened_at
        );

        let disk = by_watch("orders-db-volume-full");
        assert_eq!(disk.len(), 1, "{disk:?}");
        assert!(
            disk[0].opened_at >= at(DISK_FILL_FROM) && disk[0].opened_at <= at(DISK_FILL_FROM + 20),
            "{:?}",
            disk[0].opened_at
        );

        let cpu = by_watch("payments-cpu-vs-traffic");
        assert_eq!(cpu.len(), 1, "{cpu:?}");
        assert!(
            cpu[0].opened_at >= at(CPU_RUNAWAY.0) && cpu[0].opened_at <= at(CPU_RUNAWAY.0 + 2),
            "{:?}",
            cpu[0].opened_at
        );
        let resolved = cpu[0].resolved_at.expect("the CPU incident resolves after the loop stops");
        assert!(resolved >= at(CPU_RUNAWAY.1), "resolved at {resolved} while the fault was still on");

        let drift = by_watch("fraud-model-score-drift");
        assert_eq!(drift.len(), 1, "{drift:?}");
        assert!(
            drift[0].opened_at >= at(DRIFT_FROM) && drift[0].opened_at <= at(DRIFT_FROM + 15),
            "{:?}",
            drift[0].opened_at
        );
        assert_eq!(incidents.len(), 5, "{incidents:?}");

        let lines = std::fs::read_to_string(dir.path().join("notifications.jsonl")).expect("notifications");
        let events: Vec<String> = lines
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).expect("json line")["event"]
                    .as_str()
                    .unwrap_or("")
                    .to_string()
            })
            .collect();
        assert_eq!(events.first().map(String::as_str), Some("opened"));
        assert!(events.iter().any(|e| e == "action"));
        assert_eq!(events.iter().filter(|e| *e == "opened").count(), 5);

        // Every incident was analysed: a ranked cause and a summary that passes grounding,
        // sent as an `analysis` notification.
        assert_eq!(events.iter().filter(|e| *e == "analysis").count(), 5);
        let top = |i: &crate::store::Incident| {
            let a = store.get_analysis(i.id).expect("read").unwrap_or_else(|| panic!("incident {} not analysed", i.id));
            let report = warden_models::grounding::check(&a.summary.text, &a.evidence);
            assert!(report.passed, "{report:?}");
            let c = a.ranking.candidates.first().cloned().unwrap_or_else(|| panic!("nothing ranked for {}", i.id));
            (c.subject.display(), c.cause)
        };
        use warden_detectors::rca::CauseKind;
        assert_eq!(top(latency[0]), ("shop/checkout".to_string(), CauseKind::Workload));
        assert_eq!(top(cpu[0]), ("shop/payments".to_string(), CauseKind::Workload));
        assert_eq!(top(pods[0]), ("shop/checkout".to_string(), CauseKind::Workload));
        // The drift follows the feature pipeline's ConfigMap change by ten minutes.
        assert_eq!(top(drift[0]), ("ml/fraud-scorer".to_string(), CauseKind::Change));
        let a = store.get_analysis(drift[0].id).expect("read").expect("analysis");
        assert!(
            a.evidence.iter().any(|e| matches!(&e.payload, Payload::Change { change: ChangeKind::Config, .. })),
            "{a:?}"
        );
    }
}
