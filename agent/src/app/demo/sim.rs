//! The demo's simulated world: the recorded load, a cluster whose pods take time to
//! start, and a Prometheus that computes every metric the demo's watches query from them.

use super::*;

/// Recorded request rate, one value per 30 s from the scenario's beginning.
pub(super) struct Load {
    pub(super) origin: DateTime<Utc>,
    pub(super) rps: Vec<f64>,
}

impl Load {
    pub(super) fn parse(text: &str, origin: DateTime<Utc>) -> Result<Self> {
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

    pub(super) fn at(&self, t: DateTime<Utc>) -> Option<f64> {
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
    pub(super) fn new(target: WorkloadRef, origin: DateTime<Utc>) -> Self {
        Self {
            model_env: Mutex::new(BTreeMap::from([("MODEL_VERSION".to_string(), "v3.0".to_string())])),
            jobs: Mutex::new(BTreeMap::new()),
            now: Mutex::new(origin),
            history: Mutex::new(vec![(origin, START_REPLICAS)]),
            target,
        }
    }

    pub(super) fn set_now(&self, t: DateTime<Utc>) {
        if let Ok(mut n) = self.now.lock() {
            *n = t;
        }
    }

    pub(super) fn desired_at(&self, t: DateTime<Utc>) -> i32 {
        let h = self.history.lock().map(|h| h.clone()).unwrap_or_default();
        h.iter().rev().find(|(at, _)| *at <= t).map(|(_, r)| *r).unwrap_or(START_REPLICAS)
    }

    /// Ready pods: scaling up takes effect after start-up, scaling down at once.
    pub(super) fn ready_at(&self, t: DateTime<Utc>) -> i32 {
        self.desired_at(t).min(self.desired_at(t - ChronoDuration::seconds(POD_STARTUP)))
    }
}

/// Nodes of the simulated cluster; checkout's pods are spread over them in order.
pub(super) const NODES: [&str; 3] = ["worker-1", "worker-2", "worker-3"];

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
pub(super) struct SimPrometheus {
    pub(super) load: Load,
    pub(super) cluster: Arc<SimCluster>,
    pub(super) demo_start: DateTime<Utc>,
}

/// Names of checkout's pods, in the order the Deployment scales them up.
pub(super) const PODS: [&str; 6] = [
    "checkout-6f7c9d-b7xkq",
    "checkout-6f7c9d-m2d9p",
    "checkout-6f7c9d-r4tzw",
    "checkout-6f7c9d-h8vns",
    "checkout-6f7c9d-c3lfy",
    "checkout-6f7c9d-w9qjd",
];
/// Scenario faults, in minutes after the demo's start.
pub(super) const SLOW_POD: (i64, i64) = (60, 80); // checkout-6f7c9d-m2d9p on a noisy node
pub(super) const DISK_FILL_FROM: i64 = 45; // debug logging left on in orders-db
pub(super) const CPU_RUNAWAY: (i64, i64) = (95, 115); // payments spins on a retry loop
pub(super) const DRIFT_FROM: i64 = 100; // a broken feature pipeline shifts fraud scores
/// Fraud-score histogram: bucket bounds and the share of scores per bucket, before and
/// after the pipeline breaks.
pub(super) const SCORE_LE: [&str; 6] = ["0.1", "0.25", "0.5", "0.75", "0.9", "+Inf"];
pub(super) const SCORE_SHARE: [f64; 6] = [0.55, 0.20, 0.12, 0.07, 0.04, 0.02];
pub(super) const SCORE_SHARE_DRIFTED: [f64; 6] = [0.30, 0.20, 0.17, 0.15, 0.10, 0.08];
pub(super) const SCORES_PER_SECOND: f64 = 20.0;

/// Deterministic noise in [-0.5, 0.5) for a time and a stream.
pub(super) fn jitter(t: DateTime<Utc>, stream: u64) -> f64 {
    let h = (t.timestamp() as u64 ^ stream.wrapping_mul(0xA24B_AED4_963E_E407))
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .rotate_left(17);
    (h % 10_000) as f64 / 10_000.0 - 0.5
}

impl SimPrometheus {
    pub(super) fn minutes(&self, t: DateTime<Utc>) -> i64 {
        (t - self.demo_start).num_minutes()
    }

    pub(super) fn latency(&self, t: DateTime<Utc>) -> Option<f64> {
        let rps = self.load.at(t)?;
        let ready = self.cluster.ready_at(t).max(1) as f64;
        let util = (rps / (ready * REPLICA_CAPACITY)).min(0.95);
        Some((0.080 + 0.040 * util / (1.0 - util)) * (1.0 + jitter(t, 0) * 0.06))
    }

    pub(super) fn pod_latency(&self, t: DateTime<Utc>, pod: usize) -> Option<f64> {
        let slow = pod == 1 && (SLOW_POD.0..SLOW_POD.1).contains(&self.minutes(t));
        Some(self.latency(t)? * (1.0 + jitter(t, 10 + pod as u64) * 0.10) * if slow { 2.5 } else { 1.0 })
    }

    pub(super) fn disk_used(&self, t: DateTime<Utc>) -> f64 {
        let hours = (t - self.demo_start).num_seconds() as f64 / 3600.0;
        let fill_hours = (hours - DISK_FILL_FROM as f64 / 60.0).max(0.0);
        0.62 + 0.002 * hours + 0.20 * fill_hours + jitter(t, 2) * 0.002
    }

    /// Payments traffic: an hourly wave, so the reference covers quiet and busy times.
    pub(super) fn payments_rps(&self, t: DateTime<Utc>) -> f64 {
        let phase = (t.timestamp() % 3600) as f64 / 3600.0 * std::f64::consts::TAU;
        (80.0 + 40.0 * phase.sin()) * (1.0 + jitter(t, 3) * 0.04)
    }

    pub(super) fn payments_cpu(&self, t: DateTime<Utc>) -> f64 {
        let runaway = (CPU_RUNAWAY.0..CPU_RUNAWAY.1).contains(&self.minutes(t));
        0.3 + 0.01 * self.payments_rps(t) + jitter(t, 4) * 0.04 + if runaway { 0.6 } else { 0.0 }
    }

    pub(super) fn payments_memory(&self, t: DateTime<Utc>) -> f64 {
        (900.0 + 2.0 * self.payments_rps(t)) * 1e6 * (1.0 + jitter(t, 5) * 0.01)
    }

    /// Cumulative count of fraud scores in buckets up to `b`, since the scenario's origin.
    pub(super) fn score_count(&self, t: DateTime<Utc>, b: usize) -> f64 {
        let shift = self.demo_start + ChronoDuration::minutes(DRIFT_FROM);
        let origin = self.load.origin;
        let before = (t.min(shift) - origin).num_seconds().max(0) as f64;
        let after = (t - shift).num_seconds().max(0) as f64;
        let share = |s: &[f64; 6]| s.iter().take(b + 1).sum::<f64>();
        (SCORES_PER_SECOND * (before * share(&SCORE_SHARE) + after * share(&SCORE_SHARE_DRIFTED))).round()
    }

    /// The series a query asks for, keyed by the metric name in it.
    pub(super) fn series(&self, query: &str, times: &[DateTime<Utc>]) -> Vec<Series> {
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
