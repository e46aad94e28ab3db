//! Deterministic ranking of candidate causes.
//!
//! # Why it works this way
//!
//! An incident shows up in many places at once: the service that broke, every service that
//! calls it, the node it runs on, the probes that time out. The metric that deviates most is
//! often *not* the cause (a caller's latency can move further, in standard deviations, than the
//! callee that added the delay), so the ranking combines several weak, explainable signals
//! instead of trusting one:
//!
//! * **strength**: the largest robust z of a subject's anomalies, squashed to `[0, 1]`
//!   (saturating, so that between two very strong anomalies the other signals decide). A
//!   deviation against a metric's usual fault direction (falling latency, falling CPU) and
//!   traffic changes count less; latency and errors, which propagate up the call graph, count
//!   a little less than a subject's own resources. This is the signal BARO (Pham et al., 2024)
//!   ranks by alone, and it is strong on public benchmarks.
//! * **precedence**: faults propagate from the cause to its callers with a delay, so the subject
//!   that moved first is more probable. Each other subject is weighted by its own strength, so
//!   a noisy blip does not count as "moving". Node conditions are declared late (the node
//!   controller waits a grace period), so a node's onset is moved back by
//!   [`RankParams::node_grace_secs`] before comparing.
//! * **topology** (when the evidence carries it): the symptom and what it depends on,
//!   transitively, and the nodes they run on, are plausible; the rest much less. A subject whose
//!   own dependency (or node) is anomalous no later than itself is probably a *victim*; a
//!   subject that can explain the anomalies of its callers is probably the *source*.
//! * **changes**: a rollout, ConfigMap or Secret change shortly before the first anomaly (30
//!   minutes by default) boosts its workload, and becomes a candidate of its own.
//! * **Kubernetes events** and **log signals** at the subject (OOMKilled, CrashLoopBackOff,
//!   NodeNotReady, an error burst...). Evictions point at the node the pod ran on.
//!
//! The score is the weighted mean of the signals that the input can provide at all: without
//! topology, for example, the topology weights drop out of every candidate alike, so scores
//! stay comparable within one ranking. Actions Warden took are context, never a cause.
//!
//! Everything is computed with ordered maps and a total order on the output, so the same input
//! gives the same ranking, and every arithmetic result is clamped so that no input (empty,
//! NaN, huge) can panic or produce a score outside `[0, 1]`.

use std::collections::{BTreeMap, BTreeSet};

use super::evidence::{Candidate, CauseKind, ChangeKind, Evidence, Payload, Ranking, Subject, SubjectKind};

/// Everything the ranking looks at.
#[derive(Debug, Clone, Default)]
pub struct RcaInput {
    /// Unix seconds: when the incident started.
    pub start: i64,
    /// The subject where the symptom was seen, when known.
    pub symptom: Option<Subject>,
    pub evidence: Vec<Evidence>,
}

/// Tunables of the ranking. The defaults were chosen on the recorded scenario suite
/// (`tests/rca/scenarios`) and are meant to be left alone; they are public so that the suite can
/// show what each one is worth.
#[derive(Debug, Clone, PartialEq)]
pub struct RankParams {
    /// Anomalies whose effective z is below this are context only: they neither give a subject
    /// an onset nor make it "anomalous" for the topology rules.
    pub min_z: f64,
    /// Effective z at which strength is 0.5.
    pub half_z: f64,
    /// Exponent of the strength curve `z^n / (z^n + half_z^n)`: higher saturates faster.
    pub strength_exponent: f64,
    /// Factor for a deviation against the metric's fault direction (e.g. falling CPU).
    pub off_direction_factor: f64,
    /// Factor for latency anomalies (they propagate up the call graph).
    pub latency_factor: f64,
    /// Factor for error anomalies (they propagate too, partly absorbed by retries).
    pub error_factor: f64,
    /// Factor for traffic anomalies (request rates move with the load, in both directions).
    pub traffic_factor: f64,
    /// Factor for a node's CPU and memory anomalies: they are the sum of its pods' usage and
    /// move whenever one pod does, so they say less about the node itself than its readiness.
    pub node_resource_factor: f64,
    /// An anomaly that was over within this many seconds is transient...
    pub transient_secs: i64,
    /// ...and its strength is multiplied by this.
    pub transient_factor: f64,
    /// Onsets up to this long before the incident start count fully; earlier ones fade out
    /// over the same length again.
    pub lead_secs: i64,
    /// Onsets up to this long after the incident start count fully; later ones fade out over
    /// the same length again.
    pub lag_secs: i64,
    /// Onsets closer than this are simultaneous.
    pub onset_tolerance_secs: i64,
    /// How much earlier a node's declared condition (readiness, a node event) is taken to have
    /// begun than it was reported.
    pub node_grace_secs: i64,
    /// A change this long (or less) before the first anomaly is correlated with it.
    pub change_window_secs: i64,
    /// A change this long (or less) *after* the first anomaly still counts, partly: onsets are
    /// only as precise as the metric resolution.
    pub change_after_secs: i64,
    /// Per-hop decay of topology relations (a dependency of a dependency counts this much).
    pub hop_decay: f64,
    /// Weight of anomaly strength.
    pub w_strength: f64,
    /// Weight of temporal precedence.
    pub w_precedence: f64,
    /// Precedence counts in proportion to `strength^this`: the onset of a weak anomaly is
    /// uncertain, and a blip that moved first says little (0 = precedence counts alone).
    pub precedence_strength_exponent: f64,
    /// Weight of proximity to the symptom (used only when the symptom and topology are known).
    pub w_topology: f64,
    /// Weight of the victim/source rule (used only when topology is known).
    pub w_propagation: f64,
    /// Weight of change correlation (used only when there are changes).
    pub w_change: f64,
    /// Weight of Kubernetes events (used only when there are events).
    pub w_events: f64,
    /// Weight of log signals (used only when there are log signals).
    pub w_logs: f64,
    /// When the symptom and the topology are known, a candidate that is neither the symptom,
    /// nor on its dependency path, nor a node hosting that path has its score multiplied by
    /// this: an unrelated series that happens to be anomalous at the same time (a volume
    /// filling up elsewhere) is context, not the likely cause.
    pub unrelated_factor: f64,
    /// The kind of each metric by name, when the caller knows it (`--metric-kinds`); other
    /// metrics are classified from their names by [`MetricClass::of`].
    pub metric_kinds: BTreeMap<String, MetricClass>,
}

impl Default for RankParams {
    fn default() -> Self {
        Self {
            min_z: 3.0,
            half_z: 20.0,
            strength_exponent: 1.0,
            off_direction_factor: 0.35,
            latency_factor: 0.85,
            error_factor: 0.9,
            traffic_factor: 0.5,
            node_resource_factor: 0.5,
            transient_secs: 120,
            transient_factor: 0.5,
            lead_secs: 1800,
            lag_secs: 1200,
            onset_tolerance_secs: 10,
            node_grace_secs: 90,
            change_window_secs: 1800,
            change_after_secs: 120,
            hop_decay: 0.85,
            w_strength: 0.55,
            w_precedence: 0.45,
            precedence_strength_exponent: 0.5,
            w_topology: 0.2,
            w_propagation: 0.5,
            w_change: 0.35,
            w_events: 0.35,
            w_logs: 0.15,
            unrelated_factor: 0.6,
            metric_kinds: BTreeMap::new(),
        }
    }
}

/// What a metric measures, from its name; decides which direction is the fault direction and
/// how much a deviation says about the subject itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricClass {
    /// CPU, memory, disk, GC, threads...: rising is the fault direction; local to the subject.
    Resource,
    /// Latency or duration: rising is the fault direction; propagates to callers.
    Latency,
    /// Errors, failures, timeouts: rising is the fault direction; propagates to callers.
    Errors,
    /// Restarts, OOM kills, crashes: rising is the fault direction.
    Restarts,
    /// Readiness, availability, success: *falling* is the fault direction.
    Availability,
    /// Request rates: both directions are ordinary load changes as much as faults.
    Traffic,
    /// Anything else: both directions count.
    Unknown,
}

impl MetricClass {
    /// The kind named in a metric-kinds file: `resource`, `saturation` (a resource that fills
    /// up), `latency`, `errors`, `availability`, `traffic`, `restarts`.
    pub fn parse(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "resource" | "saturation" => Some(MetricClass::Resource),
            "latency" => Some(MetricClass::Latency),
            "errors" | "error" => Some(MetricClass::Errors),
            "availability" => Some(MetricClass::Availability),
            "traffic" => Some(MetricClass::Traffic),
            "restarts" => Some(MetricClass::Restarts),
            _ => None,
        }
    }

    /// The name [`parse`](Self::parse) reads.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricClass::Resource => "resource",
            MetricClass::Latency => "latency",
            MetricClass::Errors => "errors",
            MetricClass::Restarts => "restarts",
            MetricClass::Availability => "availability",
            MetricClass::Traffic => "traffic",
            MetricClass::Unknown => "unknown",
        }
    }

    /// Classify a metric name (`cpu`, `latency-90`, `lat_90`, `errors`, `ready`, `rps`...).
    pub fn of(metric: &str) -> Self {
        let lower = metric.to_ascii_lowercase();
        let tokens: Vec<&str> = lower.split(|c: char| !c.is_ascii_alphanumeric()).filter(|t| !t.is_empty()).collect();
        let has = |words: &[&str]| tokens.iter().any(|t| words.contains(t));
        let contains = |parts: &[&str]| parts.iter().any(|p| lower.contains(p));
        if contains(&["error", "fail", "5xx", "exception", "timeout"]) || has(&["err", "errs"]) {
            MetricClass::Errors
        } else if contains(&["restart", "oom", "crash"]) {
            MetricClass::Restarts
        } else if contains(&["latency", "duration", "response"]) || has(&["lat", "rt", "p50", "p90", "p95", "p99"]) {
            MetricClass::Latency
        } else if contains(&["workload"]) || has(&["ops"]) {
            // Before the resource words: `PodWorkload(Ops)` is a request rate, not a load.
            MetricClass::Traffic
        } else if contains(&["success", "availab"])
            || has(&["ready", "up", "available", "availability", "healthy", "alive", "running"])
        {
            MetricClass::Availability
        } else if contains(&["cpu", "mem", "disk", "heap", "thread", "swap", "throttl", "load", "rss", "net", "socket"])
            || has(&["gc", "io", "fd", "fds"])
        {
            MetricClass::Resource
        } else if contains(&["throughput", "request", "traffic"]) || has(&["rps", "qps", "tps", "calls", "req"]) {
            MetricClass::Traffic
        } else if has(&["time", "seconds", "ms"]) {
            MetricClass::Latency
        } else {
            MetricClass::Unknown
        }
    }

    /// `Some(true)` when rising is the fault direction, `Some(false)` when falling is, `None`
    /// when both are.
    pub fn fault_rises(self) -> Option<bool> {
        match self {
            MetricClass::Resource | MetricClass::Latency | MetricClass::Errors | MetricClass::Restarts => Some(true),
            MetricClass::Availability => Some(false),
            MetricClass::Traffic | MetricClass::Unknown => None,
        }
    }
}

/// Rank candidate causes. Empty evidence gives an empty ranking.
pub fn rank(input: &RcaInput, params: &RankParams) -> Ranking {
    let p = Sanitized::of(params);
    let ctx = Context::build(input, &p);
    ctx.ranking()
}

// ---------------------------------------------------------------------------
// Parameters, made safe to compute with
// ---------------------------------------------------------------------------

/// The parameters with every number forced finite and into a usable range, so that no
/// parameter value can make the ranking panic or leave `[0, 1]`.
struct Sanitized {
    min_z: f64,
    half_z: f64,
    exponent: f64,
    off_direction: f64,
    latency: f64,
    error: f64,
    traffic: f64,
    node_resource: f64,
    transient_secs: i64,
    transient: f64,
    lead: i64,
    lag: i64,
    tolerance: i64,
    node_grace: i64,
    change_window: i64,
    change_after: i64,
    hop_decay: f64,
    unrelated: f64,
    precedence_exponent: f64,
    kinds: BTreeMap<String, MetricClass>,
    w: [f64; 7],
}

const W_STRENGTH: usize = 0;
const W_PRECEDENCE: usize = 1;
const W_TOPOLOGY: usize = 2;
const W_PROPAGATION: usize = 3;
const W_CHANGE: usize = 4;
const W_EVENTS: usize = 5;
const W_LOGS: usize = 6;

fn finite_or(v: f64, default: f64) -> f64 {
    if v.is_finite() {
        v
    } else {
        default
    }
}

fn unit(v: f64) -> f64 {
    if v.is_finite() {
        v.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

impl Sanitized {
    fn of(p: &RankParams) -> Self {
        let d = RankParams::default();
        let pos = |v: f64, def: f64| {
            let v = finite_or(v, def);
            if v > 0.0 {
                v
            } else {
                def
            }
        };
        let weight = |v: f64| finite_or(v, 0.0).max(0.0);
        let secs = |v: i64| v.clamp(0, 10 * 365 * 86_400);
        Self {
            min_z: finite_or(p.min_z, d.min_z).max(0.0),
            half_z: pos(p.half_z, d.half_z),
            exponent: pos(p.strength_exponent, d.strength_exponent).min(16.0),
            off_direction: unit(p.off_direction_factor),
            latency: unit(p.latency_factor),
            error: unit(p.error_factor),
            traffic: unit(p.traffic_factor),
            node_resource: unit(p.node_resource_factor),
            transient_secs: secs(p.transient_secs),
            transient: unit(p.transient_factor),
            lead: secs(p.lead_secs).max(1),
            lag: secs(p.lag_secs).max(1),
            tolerance: secs(p.onset_tolerance_secs),
            node_grace: secs(p.node_grace_secs),
            change_window: secs(p.change_window_secs).max(1),
            change_after: secs(p.change_after_secs),
            hop_decay: unit(p.hop_decay),
            unrelated: unit(p.unrelated_factor),
            precedence_exponent: finite_or(p.precedence_strength_exponent, d.precedence_strength_exponent)
                .clamp(0.0, 8.0),
            kinds: p.metric_kinds.clone(),
            w: [
                weight(p.w_strength),
                weight(p.w_precedence),
                weight(p.w_topology),
                weight(p.w_propagation),
                weight(p.w_change),
                weight(p.w_events),
                weight(p.w_logs),
            ],
        }
    }

    /// `z^n / (z^n + half^n)`, in `[0, 1)`.
    fn strength(&self, z: f64) -> f64 {
        if !(z.is_finite() && z > 0.0) {
            return if z == f64::INFINITY { 1.0 } else { 0.0 };
        }
        let r = (self.half_z / z).powf(self.exponent);
        unit(1.0 / (1.0 + r))
    }

    /// How sure an anomaly of effective z is to be real, in `[0, 1)`: 0.5 at 1.5 × `min_z`.
    /// The topology rules use this rather than the strength: whether a dependency is anomalous
    /// at all matters to them, not how far in standard deviations (which says as much about
    /// its noise as about its fault).
    fn confidence(&self, z: f64) -> f64 {
        if !(z.is_finite() && z > 0.0) {
            return if z == f64::INFINITY { 1.0 } else { 0.0 };
        }
        let h = (1.5 * self.min_z).max(f64::MIN_POSITIVE);
        unit(z * z / (z * z + h * h))
    }

    /// How much an onset at `t` belongs to an incident that started at `start`.
    fn time_relevance(&self, t: i64, start: i64) -> f64 {
        let d = t.saturating_sub(start);
        if d < -self.lead {
            let over = (-d - self.lead) as f64 / self.lead as f64;
            unit(1.0 - over)
        } else if d > self.lag {
            let over = (d - self.lag) as f64 / self.lag as f64;
            unit(1.0 - over)
        } else {
            1.0
        }
    }
}

// ---------------------------------------------------------------------------
// Per-subject facts
// ---------------------------------------------------------------------------

/// One anomaly as the ranking weighs it.
#[derive(Debug, Clone)]
struct Anom {
    id: String,
    onset: i64,
    metric: String,
    /// Raw z as reported.
    raw_z: f64,
    /// z after the direction, class, transience and time factors.
    z: f64,
    /// Deviates in the metric's fault direction on a metric that says something about the
    /// subject itself (not traffic).
    fault: bool,
    rising: bool,
    /// A declared condition (readiness, availability): its true start is earlier.
    declared: bool,
}

/// A Kubernetes event or log signal as the ranking weighs it.
#[derive(Debug, Clone)]
struct Signal {
    id: String,
    time: i64,
    /// In `[0, 1]`: how strongly it points at the subject.
    weight: f64,
    label: String,
}

#[derive(Debug, Clone)]
struct ChangeItem {
    id: String,
    time: i64,
    kind: ChangeKind,
    label: String,
}

#[derive(Debug, Clone, Default)]
struct Facts {
    anomalies: Vec<Anom>,
    events: Vec<Signal>,
    logs: Vec<Signal>,
    changes: Vec<ChangeItem>,
    /// Ids of topology items about this subject.
    topology: Vec<String>,
    /// Has evidence that makes it a candidate by itself (anything but topology and actions).
    signal: bool,
}

/// Derived per-subject values.
#[derive(Debug, Clone, Default)]
struct Profile {
    strength: f64,
    /// Confidence that it has a fault-direction anomaly (see `Sanitized::confidence`).
    fault_strength: f64,
    /// Strongest anomaly, by effective z.
    top: Option<usize>,
    /// Earliest qualifying anomaly (index into `anomalies`), or the earliest event/log time.
    onset: Option<i64>,
    onset_anomaly: Option<usize>,
    /// The onset is a declared condition (a node's readiness, a node event), which lags.
    onset_declared: bool,
    events: f64,
    logs: f64,
    /// Fault-direction anomaly strong enough to take part in the topology rules.
    anomalous: bool,
}

struct Context<'a> {
    input: &'a RcaInput,
    p: &'a Sanitized,
    facts: BTreeMap<Subject, Facts>,
    profiles: BTreeMap<Subject, Profile>,
    /// Workload -> workloads it depends on (resolved).
    deps: BTreeMap<Subject, BTreeSet<Subject>>,
    /// Workload -> workloads that depend on it (the reverse of `deps`).
    rdeps: BTreeMap<Subject, BTreeSet<Subject>>,
    /// Workload -> nodes it runs on.
    placement: BTreeMap<Subject, BTreeSet<Subject>>,
    /// Node -> workloads that run on it.
    residents_of: BTreeMap<Subject, Vec<Subject>>,
    /// What the symptom depends on, transitively, with hop counts.
    symptom_downstream: BTreeMap<Subject, u32>,
    /// Node -> support from evictions of pods that ran on it: (evidence id, weight, label).
    node_support: BTreeMap<Subject, Vec<Signal>>,
    has_topology: bool,
    has_changes: bool,
    has_events: bool,
    has_logs: bool,
}

fn event_weight(reason: &str) -> (f64, bool) {
    // (weight for the subject, whether it is a node-level condition)
    let r = reason.to_ascii_lowercase();
    match r.as_str() {
        "oomkilled" | "oomkilling" => (1.0, false),
        "crashloopbackoff" => (0.8, false),
        "imagepullbackoff" | "errimagepull" | "failedcreatepodsandbox" => (0.8, false),
        "backoff" => (0.5, false),
        "failedmount" | "failedattachvolume" => (0.5, false),
        "unhealthy" | "probewarning" | "livenessprobefailed" | "readinessprobefailed" => (0.4, false),
        "failedscheduling" => (0.3, false),
        "evicted" | "preempting" => (0.3, false),
        "killing" => (0.2, false),
        "nodenotready" | "nodeunreachable" | "notready" => (1.0, true),
        "nodehasmemorypressure" | "nodehasdiskpressure" | "nodehaspidpressure" | "nodenetworkunavailable" => {
            (0.7, true)
        }
        "systemoom" | "kernel deadlock" | "kerneldeadlock" | "rebooted" => (0.8, true),
        "evictionthresholdmet" | "nodehasinsufficientmemory" | "nodehasinsufficientdisk" | "freediskspacefailed" => {
            (0.7, true)
        }
        // Recoveries are context, not faults.
        "nodeready" | "nodehassufficientmemory" | "nodehasnodiskpressure" | "nodehassufficientpid" => (0.05, true),
        _ if r.starts_with("node") => (0.5, true),
        _ => (0.2, false),
    }
}

fn count_factor(count: u64) -> f64 {
    unit(0.6 + 0.2 * (count.max(1) - 1).min(2) as f64)
}

fn noisy_or(weights: impl Iterator<Item = f64>) -> f64 {
    let mut keep = 1.0;
    for w in weights {
        keep *= 1.0 - unit(w);
    }
    unit(1.0 - keep)
}

/// `HH:MM:SS` (UTC) of a Unix time.
pub(crate) fn clock(t: i64) -> String {
    let s = t.rem_euclid(86_400);
    format!("{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

/// A short human duration: `45s`, `4m`, `1h05m`.
pub(crate) fn human_secs(secs: i64) -> String {
    let s = secs.unsigned_abs();
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m", (s + 30) / 60)
    } else {
        format!("{}h{:02}m", s / 3600, (s / 60) % 60)
    }
}

fn node_of_object(object: &str) -> Option<&str> {
    let (kind, name) = object.split_once('/')?;
    (kind.eq_ignore_ascii_case("node") && !name.is_empty()).then_some(name)
}

impl<'a> Context<'a> {
    fn build(input: &'a RcaInput, p: &'a Sanitized) -> Self {
        let mut ctx = Context {
            input,
            p,
            facts: BTreeMap::new(),
            profiles: BTreeMap::new(),
            deps: BTreeMap::new(),
            rdeps: BTreeMap::new(),
            placement: BTreeMap::new(),
            residents_of: BTreeMap::new(),
            symptom_downstream: BTreeMap::new(),
            node_support: BTreeMap::new(),
            has_topology: false,
            has_changes: false,
            has_events: false,
            has_logs: false,
        };
        ctx.collect();
        ctx.resolve_topology();
        for (caller, ds) in &ctx.deps {
            for d in ds {
                ctx.rdeps.entry(d.clone()).or_default().insert(caller.clone());
            }
        }
        for (w, ns) in &ctx.placement {
            for n in ns {
                ctx.residents_of.entry(n.clone()).or_default().push(w.clone());
            }
        }
        if let Some(sym) = &input.symptom {
            ctx.symptom_downstream = ctx.downstream(sym);
        }
        ctx.attribute_evictions();
        ctx.profile();
        ctx
    }

    fn collect(&mut self) {
        let p = self.p;
        let start = self.input.start;
        for e in &self.input.evidence {
            match &e.payload {
                Payload::Anomaly { metric, observed, expected, score, until, .. } => {
                    if !score.is_finite() || *score < 0.0 {
                        continue;
                    }
                    let class = p.kinds.get(metric).copied().unwrap_or_else(|| MetricClass::of(metric));
                    let rising = match expected {
                        Some(x) if x.is_finite() && observed.is_finite() => observed >= x,
                        _ => class.fault_rises().unwrap_or(true),
                    };
                    let (dir_factor, in_fault_dir) = match class.fault_rises() {
                        Some(up) if up == rising => (1.0, true),
                        Some(_) => (p.off_direction, false),
                        None => (1.0, true),
                    };
                    let class_factor = match class {
                        MetricClass::Latency => p.latency,
                        MetricClass::Errors => p.error,
                        MetricClass::Traffic => p.traffic,
                        MetricClass::Resource if e.subject.kind == SubjectKind::Node => p.node_resource,
                        _ => 1.0,
                    };
                    let transient = match until {
                        Some(u) if u.saturating_sub(e.time) <= p.transient_secs => p.transient,
                        _ => 1.0,
                    };
                    // An anomaly that was over well before the incident began is unrelated.
                    let ended_before = match until {
                        Some(u) if u.saturating_add(p.lead / 6) < start => 0.3,
                        _ => 1.0,
                    };
                    let z = finite_or(
                        score * dir_factor * class_factor * transient * ended_before * p.time_relevance(e.time, start),
                        0.0,
                    )
                    .max(0.0);
                    let fault = in_fault_dir && class != MetricClass::Traffic;
                    let f = self.facts.entry(e.subject.clone()).or_default();
                    f.signal = true;
                    f.anomalies.push(Anom {
                        id: e.id.clone(),
                        onset: e.time,
                        metric: metric.clone(),
                        raw_z: *score,
                        z,
                        fault,
                        rising,
                        declared: class == MetricClass::Availability,
                    });
                }
                Payload::KubeEvent { reason, count, object, .. } => {
                    self.has_events = true;
                    let (weight, node_level) = event_weight(reason);
                    let rel = 0.3 + 0.7 * p.time_relevance(e.time, start);
                    let w = unit(weight * count_factor(u64::from(*count)) * rel);
                    let label = if *count > 1 { format!("{reason} ×{count}") } else { reason.clone() };
                    // Node-level events point to the node, whatever subject they were filed under.
                    let subject = if node_level && e.subject.kind != SubjectKind::Node {
                        match node_of_object(object) {
                            Some(n) => Subject::node(n),
                            None => e.subject.clone(),
                        }
                    } else {
                        e.subject.clone()
                    };
                    let f = self.facts.entry(subject).or_default();
                    f.signal = true;
                    f.events.push(Signal { id: e.id.clone(), time: e.time, weight: w, label });
                }
                Payload::LogSignal { signal, count, .. } => {
                    self.has_logs = true;
                    let base = match signal.as_str() {
                        "error_burst" => 0.6,
                        "new_template" => 0.5,
                        "rate" => 0.3,
                        _ => 0.2,
                    };
                    let rel = 0.3 + 0.7 * p.time_relevance(e.time, start);
                    let w = unit(base * count_factor(*count) * rel);
                    let label = match signal.as_str() {
                        "error_burst" => format!("error burst ×{count}"),
                        "new_template" => "new log template".to_string(),
                        "rate" => "log rate jump".to_string(),
                        other => format!("log signal {other}"),
                    };
                    let f = self.facts.entry(e.subject.clone()).or_default();
                    f.signal = true;
                    f.logs.push(Signal { id: e.id.clone(), time: e.time, weight: w, label });
                }
                Payload::Change { change, from, to, description } => {
                    let label = match (from, to) {
                        (Some(a), Some(b)) => {
                            format!("{} {a} → {}", change_word(*change), short_target(a, b))
                        }
                        (None, Some(b)) => format!("{} to {b}", change_word(*change)),
                        _ if !description.is_empty() => {
                            format!("{} ({})", change_word(*change), truncate(description, 60))
                        }
                        _ => change_word(*change).to_string(),
                    };
                    let f = self.facts.entry(e.subject.clone()).or_default();
                    f.changes.push(ChangeItem { id: e.id.clone(), time: e.time, kind: *change, label });
                    if is_cause_change(*change) {
                        self.has_changes = true;
                    }
                }
                Payload::Topology { .. } => {
                    self.facts.entry(e.subject.clone()).or_default().topology.push(e.id.clone());
                }
                Payload::Action { .. } => {}
            }
        }
    }

    fn resolve_topology(&mut self) {
        // Name -> workload subjects known anywhere in the evidence.
        let mut by_name: BTreeMap<&str, Vec<&Subject>> = BTreeMap::new();
        for e in &self.input.evidence {
            if e.subject.kind == SubjectKind::Workload {
                by_name.entry(e.subject.name.as_str()).or_default().push(&e.subject);
            }
        }
        for v in by_name.values_mut() {
            v.sort();
            v.dedup();
        }
        for e in &self.input.evidence {
            let Payload::Topology { nodes, depends_on, .. } = &e.payload else {
                continue;
            };
            if e.subject.kind != SubjectKind::Workload {
                continue;
            }
            for n in nodes.iter().filter(|n| !n.is_empty()) {
                self.has_topology = true;
                self.placement.entry(e.subject.clone()).or_default().insert(Subject::node(n));
            }
            for d in depends_on.iter().filter(|d| !d.is_empty()) {
                let target = match by_name.get(d.as_str()) {
                    Some(list) => list
                        .iter()
                        .find(|s| s.namespace == e.subject.namespace)
                        .or_else(|| if list.len() == 1 { list.first() } else { None })
                        .map(|s| (*s).clone())
                        .unwrap_or_else(|| Subject::workload(e.subject.namespace.as_deref(), d)),
                    None => Subject::workload(e.subject.namespace.as_deref(), d),
                };
                if target != e.subject {
                    self.has_topology = true;
                    self.deps.entry(e.subject.clone()).or_default().insert(target);
                }
            }
        }
    }

    /// Evictions are the node's doing: support the node(s) the evicted workload ran on.
    fn attribute_evictions(&mut self) {
        let mut add: Vec<(Subject, Signal)> = Vec::new();
        for e in &self.input.evidence {
            let Payload::KubeEvent { reason, count, message, .. } = &e.payload else {
                continue;
            };
            if !reason.eq_ignore_ascii_case("evicted") || e.subject.kind != SubjectKind::Workload {
                continue;
            }
            let rel = 0.3 + 0.7 * self.p.time_relevance(e.time, self.input.start);
            let w = unit(0.6 * count_factor(u64::from(*count)) * rel);
            let mut nodes: Vec<Subject> =
                self.placement.get(&e.subject).map(|s| s.iter().cloned().collect()).unwrap_or_default();
            if nodes.is_empty() {
                // Fall back on a known node named in the message.
                let known: BTreeSet<&Subject> = self.facts.keys().filter(|s| s.kind == SubjectKind::Node).collect();
                nodes = known.into_iter().filter(|n| message.contains(n.name.as_str())).cloned().collect();
            }
            for n in nodes {
                let label = format!("evicted {} pods", e.subject.name);
                add.push((n, Signal { id: e.id.clone(), time: e.time, weight: w, label }));
            }
        }
        for (n, s) in add {
            self.node_support.entry(n).or_default().push(s);
        }
    }

    fn profile(&mut self) {
        let p = self.p;
        let mut profiles = BTreeMap::new();
        let subjects: BTreeSet<Subject> = self.facts.keys().chain(self.node_support.keys()).cloned().collect();
        for s in subjects {
            let empty = Facts::default();
            let f = self.facts.get(&s).unwrap_or(&empty);
            let mut pr = Profile::default();
            let mut best = 0.0f64;
            let mut best_fault = 0.0f64;
            for (i, a) in f.anomalies.iter().enumerate() {
                if a.z > best || (pr.top.is_none() && a.z > 0.0) {
                    best = a.z;
                    pr.top = Some(i);
                }
                if a.fault {
                    best_fault = best_fault.max(a.z);
                }
                if a.z >= p.min_z && a.z > 0.0 {
                    let earlier = match pr.onset_anomaly {
                        Some(j) => f.anomalies.get(j).is_none_or(|b| (a.onset, &a.id) < (b.onset, &b.id)),
                        None => true,
                    };
                    if earlier {
                        pr.onset_anomaly = Some(i);
                    }
                }
            }
            pr.strength = p.strength(best);
            pr.fault_strength = p.confidence(best_fault);
            pr.anomalous = best_fault >= p.min_z && best_fault > 0.0;
            pr.onset = pr.onset_anomaly.and_then(|i| f.anomalies.get(i)).map(|a| a.onset);
            pr.onset_declared = pr.onset_anomaly.and_then(|i| f.anomalies.get(i)).is_some_and(|a| a.declared);
            let support = self.node_support.get(&s);
            if pr.onset.is_none() {
                pr.onset_declared = true;
                pr.onset = f
                    .events
                    .iter()
                    .chain(f.logs.iter())
                    .chain(support.into_iter().flatten())
                    .filter(|x| x.weight >= 0.3)
                    .map(|x| x.time)
                    .min();
            }
            pr.events = noisy_or(f.events.iter().chain(support.into_iter().flatten()).map(|x| x.weight));
            pr.logs = noisy_or(f.logs.iter().map(|x| x.weight));
            // A node condition (NotReady, pressure) is a fault by itself.
            if s.kind == SubjectKind::Node && pr.events >= 0.5 {
                pr.anomalous = true;
            }
            profiles.insert(s, pr);
        }
        self.profiles = profiles;
    }

    fn profile_of(&self, s: &Subject) -> Option<&Profile> {
        self.profiles.get(s)
    }

    /// The onset used for comparisons: a node's is moved back by the grace period.
    fn effective_onset(&self, s: &Subject) -> Option<i64> {
        let pr = self.profile_of(s)?;
        let o = pr.onset?;
        Some(if s.kind == SubjectKind::Node && pr.onset_declared { o.saturating_sub(self.p.node_grace) } else { o })
    }

    /// Weight of a subject as a "mover" for the others' precedence.
    fn mover_weight(&self, s: &Subject) -> f64 {
        self.profile_of(s).map(|pr| pr.strength.max(0.5 * pr.events).max(0.5 * pr.logs)).unwrap_or(0.0)
    }

    fn precedence(&self, s: &Subject) -> f64 {
        let Some(os) = self.effective_onset(s) else {
            return 0.0;
        };
        let mut num = 0.0;
        let mut den = 0.0;
        for o in self.profiles.keys() {
            if o == s {
                continue;
            }
            let Some(oo) = self.effective_onset(o) else {
                continue;
            };
            let w = self.mover_weight(o);
            if w <= 0.0 {
                continue;
            }
            let cmp = if os < oo.saturating_sub(self.p.tolerance) {
                1.0
            } else if os <= oo.saturating_add(self.p.tolerance) {
                0.5
            } else {
                0.0
            };
            num += w * cmp;
            den += w;
        }
        let relative = if den > 0.0 { num / den } else { 1.0 };
        // Relative to the incident start: moving before (or at) the start is what a cause does;
        // starting to move long after it is what a consequence does.
        let after = os.saturating_sub(self.input.start.saturating_add(60));
        let to_start = if after <= 0 { 1.0 } else { unit(1.0 - after as f64 / self.p.lag as f64) };
        unit(0.8 * relative + 0.2 * to_start)
    }

    /// Workloads `s` depends on, transitively, with the hop count of the shortest path.
    fn downstream(&self, s: &Subject) -> BTreeMap<Subject, u32> {
        reachable(&self.deps, s)
    }

    /// Workloads that depend on `s`, transitively, with hop counts.
    fn upstream(&self, s: &Subject) -> BTreeMap<Subject, u32> {
        reachable(&self.rdeps, s)
    }

    fn residents(&self, node: &Subject) -> Vec<Subject> {
        self.residents_of.get(node).cloned().unwrap_or_default()
    }

    fn is_anomalous(&self, s: &Subject) -> bool {
        self.profile_of(s).is_some_and(|pr| pr.anomalous)
    }

    fn fault_strength(&self, s: &Subject) -> f64 {
        self.profile_of(s)
            .map(|pr| pr.fault_strength.max(if s.kind == SubjectKind::Node { pr.events } else { 0.0 }))
            .unwrap_or(0.0)
    }

    /// Whether `cause` began no later than `effect` (within tolerance): 1, else a small weight.
    fn timing(&self, cause: &Subject, effect: &Subject) -> f64 {
        match (self.effective_onset(cause), self.effective_onset(effect)) {
            (Some(c), Some(e)) if c <= e.saturating_add(self.p.tolerance.max(30)) => 1.0,
            (Some(_), Some(_)) => 0.25,
            _ => 0.5,
        }
    }

    /// Fraction of the node's residents other than `except` that are anomalous.
    fn resident_fraction(&self, node: &Subject, except: Option<&Subject>) -> (usize, usize) {
        let res = self.residents(node);
        let others: Vec<&Subject> = res.iter().filter(|r| Some(*r) != except).collect();
        let bad = others.iter().filter(|r| self.is_anomalous(r)).count();
        (bad, others.len())
    }

    /// Victim/source score in `[0, 1]` and its reasons.
    fn propagation(&self, s: &Subject) -> (f64, Vec<String>, Vec<String>) {
        let mut reasons = Vec::new();
        let mut ids = Vec::new();
        let decay = |hops: u32| self.p.hop_decay.powi(hops.saturating_sub(1).min(64) as i32);
        // Victim: an anomalous dependency (or a broadly anomalous node) that began no later.
        let mut victim = 0.0f64;
        let mut victim_of: Option<Subject> = None;
        if s.kind == SubjectKind::Workload {
            for (d, hops) in self.downstream(s) {
                if !self.is_anomalous(&d) {
                    continue;
                }
                let v = decay(hops) * self.fault_strength(&d) * self.timing(&d, s);
                if v > victim {
                    victim = v;
                    victim_of = Some(d);
                }
            }
            for n in self.placement.get(s).into_iter().flatten() {
                if !self.is_anomalous(n) {
                    continue;
                }
                let (bad, total) = self.resident_fraction(n, Some(s));
                let broad = if total == 0 { 0.0 } else { bad as f64 / total as f64 };
                let v = self.fault_strength(n) * broad * self.timing(n, s);
                if v > victim {
                    victim = v;
                    victim_of = Some(n.clone());
                }
            }
        }
        // Source: the share of all anomaly mass (other subjects) that s can explain.
        let mut explained_set: BTreeMap<Subject, u32> = BTreeMap::new();
        let mut breadth = 1.0;
        if s.kind == SubjectKind::Node {
            let res = self.residents(s);
            let bad = res.iter().filter(|r| self.is_anomalous(r)).count();
            breadth = if res.is_empty() { 0.0 } else { bad as f64 / res.len() as f64 };
            if bad >= 1 {
                reasons.push(format!("{bad} of {} workloads on it anomalous", res.len()));
            }
            for r in res {
                for (u, h) in self.upstream(&r) {
                    let e = explained_set.entry(u).or_insert(h + 1);
                    *e = (*e).min(h + 1);
                }
                explained_set.insert(r, 1);
            }
        } else {
            explained_set = self.upstream(s);
        }
        let mut total = 0.0;
        let mut explained = 0.0;
        let mut n_explained = 0usize;
        for o in self.profiles.keys() {
            if o == s || !self.is_anomalous(o) {
                continue;
            }
            let w = self.fault_strength(o);
            total += w;
            if let Some(h) = explained_set.get(o) {
                explained += w * decay(*h) * self.timing(s, o);
                n_explained += 1;
            }
        }
        let explain = if total > 0.0 { unit(explained / total) * breadth } else { 0.0 };
        if s.kind == SubjectKind::Workload && n_explained > 0 && explain >= 0.3 {
            reasons
                .push(format!("can explain {n_explained} anomalous caller{}", if n_explained == 1 { "" } else { "s" }));
        }
        if let Some(v) = &victim_of {
            if victim >= 0.3 {
                let what = if v.kind == SubjectKind::Node { "runs on anomalous" } else { "depends on anomalous" };
                reasons.push(format!("{what} {v} (likely a victim)"));
            }
        }
        for t in self.facts.get(s).map(|f| f.topology.clone()).unwrap_or_default() {
            ids.push(t);
        }
        (unit(0.5 * (1.0 - unit(victim)) + 0.5 * explain), reasons, ids)
    }

    /// Proximity to the symptom, in `[0, 1]`.
    fn proximity(&self, s: &Subject) -> (f64, Option<String>) {
        let Some(sym) = &self.input.symptom else {
            return (0.5, None);
        };
        if s == sym {
            return (1.0, Some("is the symptom".to_string()));
        }
        let down = &self.symptom_downstream;
        if s.kind == SubjectKind::Node {
            let on_path = self.placement.iter().any(|(w, ns)| ns.contains(s) && (w == sym || down.contains_key(w)));
            return if on_path { (1.0, Some(format!("hosts the path of {sym}"))) } else { (0.2, None) };
        }
        if let Some(h) = down.get(s) {
            let why = if *h == 1 { format!("{sym} depends on it") } else { format!("on {sym}'s dependency path") };
            return (1.0, Some(why));
        }
        if s.namespace.is_some() && s.namespace == sym.namespace {
            return (0.4, None);
        }
        (0.2, None)
    }

    /// Correlation of one change with the anomalies, in `[0, 1]`, and a reason.
    fn change_score(&self, workload: &Subject, c: &ChangeItem, first_onset: Option<i64>) -> (f64, String) {
        let own = self.profile_of(workload).filter(|pr| pr.anomalous).and_then(|pr| pr.onset);
        let (reference, own_factor, what) = match (own, first_onset) {
            (Some(o), _) => (Some(o), 1.0, "the first anomaly"),
            (None, Some(f)) => (Some(f), 0.35, "the first anomaly"),
            (None, None) => (Some(self.input.start), 0.35, "the incident start"),
        };
        let kind_factor = match c.kind {
            ChangeKind::Rollout => 1.0,
            ChangeKind::Config => 0.8,
            ChangeKind::Secret => 0.7,
            ChangeKind::Scale | ChangeKind::Autoscaler => 0.0,
        };
        let Some(r) = reference else {
            return (0.0, String::new());
        };
        let gap = r.saturating_sub(c.time);
        let tf = if gap >= 0 && gap <= self.p.change_window {
            1.0 - 0.5 * gap as f64 / self.p.change_window as f64
        } else if gap < 0 && -gap <= self.p.change_after {
            0.6
        } else {
            0.0
        };
        let reason = if gap >= 0 {
            format!("{} {} before {what}", c.label, human_secs(gap))
        } else {
            format!("{} {} after {what}", c.label, human_secs(gap))
        };
        (unit(tf * kind_factor * own_factor), reason)
    }

    fn first_onset(&self) -> Option<i64> {
        self.profiles.iter().filter(|(_, pr)| pr.anomalous).filter_map(|(s, _)| self.effective_onset(s)).min()
    }

    fn active_weight(&self) -> f64 {
        let w = &self.p.w;
        let mut total = w[W_STRENGTH] + w[W_PRECEDENCE];
        if self.has_topology && self.input.symptom.is_some() {
            total += w[W_TOPOLOGY];
        }
        if self.has_topology {
            total += w[W_PROPAGATION];
        }
        if self.has_changes {
            total += w[W_CHANGE];
        }
        if self.has_events {
            total += w[W_EVENTS];
        }
        if self.has_logs {
            total += w[W_LOGS];
        }
        total
    }

    /// Score a subject (as a workload or node candidate, or as the workload of a change with
    /// change score `change`), with its supporting evidence ranked by contribution.
    fn score_subject(&self, s: &Subject, change: Option<(f64, &ChangeItem, String)>) -> Candidate {
        let w = &self.p.w;
        let empty_facts = Facts::default();
        let f = self.facts.get(s).unwrap_or(&empty_facts);
        let empty_profile = Profile::default();
        let pr = self.profile_of(s).unwrap_or(&empty_profile);
        let mut contrib: Vec<(f64, String)> = Vec::new();
        let mut reasons: Vec<String> = Vec::new();
        let mut sum = 0.0;

        // Strength.
        sum += w[W_STRENGTH] * pr.strength;
        if let Some(a) = pr.top.and_then(|i| f.anomalies.get(i)) {
            if a.z > 0.0 {
                let dir = if a.rising { "above" } else { "below" };
                reasons.push(format!("{} {:.1}σ {dir} normal", a.metric, a.raw_z));
            }
        }
        for a in &f.anomalies {
            contrib.push((w[W_STRENGTH] * self.p.strength(a.z), a.id.clone()));
        }

        // Precedence, as sure as the subject's own movement.
        let confidence = pr.strength.max(0.5 * pr.events).max(0.5 * pr.logs);
        let prec = self.precedence(s) * unit(confidence).powf(self.p.precedence_exponent);
        sum += w[W_PRECEDENCE] * prec;
        if let Some(o) = pr.onset {
            let movers = self.profiles.iter().filter(|(x, _)| *x != s && self.mover_weight(x) >= 0.2).count();
            if self.precedence(s) >= 0.9 && movers > 0 {
                reasons.insert(0, format!("moved first (onset {})", clock(o)));
            } else {
                reasons.push(format!("onset {}", clock(o)));
            }
            if let Some(a) = pr.onset_anomaly.and_then(|i| f.anomalies.get(i)) {
                contrib.push((w[W_PRECEDENCE] * prec, a.id.clone()));
            }
        }

        // Topology.
        let mut unrelated = false;
        if self.has_topology {
            if self.input.symptom.is_some() {
                let (t, why) = self.proximity(s);
                unrelated = t < 1.0;
                sum += w[W_TOPOLOGY] * t;
                if let Some(why) = why {
                    reasons.push(why);
                }
            }
            let (x, why, ids) = self.propagation(s);
            sum += w[W_PROPAGATION] * x;
            reasons.extend(why);
            for id in ids {
                contrib.push((0.01, id));
            }
            if s.kind == SubjectKind::Node {
                for r in self.residents(s) {
                    if self.is_anomalous(&r) {
                        if let Some(rf) = self.facts.get(&r) {
                            for t in &rf.topology {
                                contrib.push((0.02, t.clone()));
                            }
                        }
                    }
                }
            }
        }

        // Changes.
        if self.has_changes {
            let c = match &change {
                Some((score, item, reason)) => {
                    contrib.push((w[W_CHANGE] * score + 1.0, item.id.clone()));
                    reasons.insert(0, reason.clone());
                    *score
                }
                None => {
                    let first = self.first_onset();
                    let mut best = 0.0f64;
                    for c in f.changes.iter().filter(|c| is_cause_change(c.kind)) {
                        let (sc, reason) = self.change_score(s, c, first);
                        if sc > 0.0 {
                            contrib.push((w[W_CHANGE] * sc, c.id.clone()));
                            if sc > best {
                                best = sc;
                                if sc >= 0.3 {
                                    reasons.push(reason);
                                }
                            }
                        }
                    }
                    best
                }
            };
            sum += w[W_CHANGE] * c;
        }

        // Events.
        if self.has_events {
            sum += w[W_EVENTS] * pr.events;
            let mut evs: Vec<&Signal> = f.events.iter().chain(self.node_support.get(s).into_iter().flatten()).collect();
            evs.sort_by(|a, b| b.weight.total_cmp(&a.weight).then_with(|| a.id.cmp(&b.id)));
            for (i, e) in evs.iter().enumerate() {
                contrib.push((w[W_EVENTS] * e.weight, e.id.clone()));
                if i < 3 && e.weight >= 0.2 {
                    reasons.push(e.label.clone());
                }
            }
        }

        // Logs.
        if self.has_logs {
            sum += w[W_LOGS] * pr.logs;
            for l in &f.logs {
                contrib.push((w[W_LOGS] * l.weight, l.id.clone()));
                if l.weight >= 0.2 {
                    reasons.push(l.label.clone());
                }
            }
        }

        let total = self.active_weight();
        let mut score = if total > 0.0 { unit(sum / total) } else { 0.0 };
        if unrelated {
            score *= self.p.unrelated;
            reasons.push("not on the symptom's dependency path".to_string());
        }
        if let Some((c, _, _)) = &change {
            // The change itself: as probable as its workload, a little more when well correlated.
            score = unit(score * (0.9 + 0.15 * unit(*c / 0.9)));
        }

        contrib.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        let mut seen = BTreeSet::new();
        let evidence: Vec<String> =
            contrib.into_iter().filter(|(_, id)| seen.insert(id.clone())).map(|(_, id)| id).collect();
        let mut seen_reasons = BTreeSet::new();
        reasons.retain(|r| seen_reasons.insert(r.clone()));
        reasons.truncate(6);
        let cause = match (&change, s.kind) {
            (Some(_), _) => CauseKind::Change,
            (None, SubjectKind::Node) => CauseKind::Node,
            (None, SubjectKind::Workload) => CauseKind::Workload,
        };
        Candidate { subject: s.clone(), cause, score, evidence, reasons }
    }

    fn ranking(&self) -> Ranking {
        let mut candidates = Vec::new();
        // Workloads and nodes with evidence of their own.
        let mut subjects: BTreeSet<Subject> =
            self.facts.iter().filter(|(_, f)| f.signal).map(|(s, _)| s.clone()).collect();
        subjects.extend(self.node_support.keys().cloned());
        // Nodes without evidence of their own where most workloads are anomalous.
        let nodes: BTreeSet<Subject> = self.placement.values().flatten().cloned().collect();
        for n in nodes {
            let res = self.residents(&n);
            let bad = res.iter().filter(|r| self.is_anomalous(r)).count();
            if bad >= 2 && bad * 2 >= res.len() {
                subjects.insert(n);
            }
        }
        for s in &subjects {
            candidates.push(self.score_subject(s, None));
        }
        // Changes.
        let first = self.first_onset();
        for (s, f) in &self.facts {
            if s.kind != SubjectKind::Workload {
                continue;
            }
            for c in f.changes.iter().filter(|c| is_cause_change(c.kind)) {
                let (sc, reason) = self.change_score(s, c, first);
                candidates.push(self.score_subject(s, Some((sc, c, reason))));
            }
        }
        for c in &mut candidates {
            if !c.score.is_finite() {
                c.score = 0.0;
            }
        }
        candidates.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then_with(|| a.subject.cmp(&b.subject))
                .then_with(|| cause_order(a.cause).cmp(&cause_order(b.cause)))
                .then_with(|| a.evidence.first().cmp(&b.evidence.first()))
        });
        Ranking { candidates }
    }
}

fn cause_order(c: CauseKind) -> u8 {
    match c {
        CauseKind::Change => 0,
        CauseKind::Workload => 1,
        CauseKind::Node => 2,
    }
}

fn is_cause_change(k: ChangeKind) -> bool {
    matches!(k, ChangeKind::Rollout | ChangeKind::Config | ChangeKind::Secret)
}

fn change_word(k: ChangeKind) -> &'static str {
    match k {
        ChangeKind::Rollout => "rollout",
        ChangeKind::Config => "config change",
        ChangeKind::Secret => "secret change",
        ChangeKind::Scale => "scale",
        ChangeKind::Autoscaler => "autoscaler change",
    }
}

/// `b` without the image name it shares with `a`: `api:v1.4.2`, `api:v1.5.0` → `v1.5.0`.
fn short_target<'b>(a: &str, b: &'b str) -> &'b str {
    match (a.rsplit_once(':'), b.rsplit_once(':')) {
        (Some((ia, _)), Some((ib, tag))) if ia == ib && !tag.is_empty() && !ib.is_empty() => tag,
        _ => b,
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// Subjects reachable from `s` along `edges` (breadth first, at most 64 hops), with the hop
/// count of the shortest path.
fn reachable(edges: &BTreeMap<Subject, BTreeSet<Subject>>, s: &Subject) -> BTreeMap<Subject, u32> {
    let mut out: BTreeMap<Subject, u32> = BTreeMap::new();
    let mut frontier = vec![s.clone()];
    let mut hop = 0u32;
    while !frontier.is_empty() && hop < 64 {
        hop += 1;
        let mut next = Vec::new();
        for f in &frontier {
            for d in edges.get(f).into_iter().flatten() {
                if d != s && !out.contains_key(d) {
                    out.insert(d.clone(), hop);
                    next.push(d.clone());
                }
            }
        }
        frontier = next;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn anomaly(id: &str, t: i64, s: Subject, metric: &str, z: f64) -> Evidence {
        Evidence {
            id: id.into(),
            time: t,
            subject: s,
            payload: Payload::Anomaly {
                watch: metric.into(),
                metric: metric.into(),
                observed: 10.0,
                expected: Some(1.0),
                score: z,
                until: None,
            },
        }
    }

    fn topo(id: &str, s: Subject, deps: &[&str], nodes: &[&str]) -> Evidence {
        Evidence {
            id: id.into(),
            time: 0,
            subject: s,
            payload: Payload::Topology {
                nodes: nodes.iter().map(|n| n.to_string()).collect(),
                pods: vec![],
                services: vec![],
                depends_on: deps.iter().map(|n| n.to_string()).collect(),
            },
        }
    }

    fn w(n: &str) -> Subject {
        Subject::workload(Some("shop"), n)
    }

    #[test]
    fn empty_evidence_gives_an_empty_ranking() {
        let r = rank(&RcaInput::default(), &RankParams::default());
        assert!(r.candidates.is_empty());
    }

    #[test]
    fn metric_classes() {
        assert_eq!(MetricClass::of("cpu"), MetricClass::Resource);
        assert_eq!(MetricClass::of("mem"), MetricClass::Resource);
        assert_eq!(MetricClass::of("latency-90"), MetricClass::Latency);
        assert_eq!(MetricClass::of("lat_90"), MetricClass::Latency);
        assert_eq!(MetricClass::of("errors"), MetricClass::Errors);
        assert_eq!(MetricClass::of("ready"), MetricClass::Availability);
        assert_eq!(MetricClass::of("rps"), MetricClass::Traffic);
        assert_eq!(MetricClass::of("restarts"), MetricClass::Restarts);
        assert_eq!(MetricClass::of("weird"), MetricClass::Unknown);
        assert_eq!(MetricClass::of("container_cpu_usage_seconds_total"), MetricClass::Resource);
        assert_eq!(MetricClass::of("http_request_duration_seconds"), MetricClass::Latency);
        assert_eq!(MetricClass::of("http_requests_total"), MetricClass::Traffic);
        assert_eq!(MetricClass::of("response_time"), MetricClass::Latency);
    }

    #[test]
    fn the_earlier_mover_wins_among_equal_anomalies() {
        let input = RcaInput {
            start: 1000,
            symptom: None,
            evidence: vec![
                anomaly("E1", 1030, w("front"), "latency", 20.0),
                anomaly("E2", 1000, w("db"), "latency", 20.0),
            ],
        };
        let r = rank(&input, &RankParams::default());
        assert_eq!(r.candidates[0].subject, w("db"));
        assert!(r.candidates[0].reasons[0].starts_with("moved first"), "{:?}", r.candidates[0].reasons);
    }

    #[test]
    fn a_caller_with_an_anomalous_dependency_is_a_victim() {
        let input = RcaInput {
            start: 1000,
            symptom: Some(w("front")),
            evidence: vec![
                anomaly("E1", 1000, w("front"), "latency", 40.0),
                anomaly("E2", 1000, w("pay"), "latency", 12.0),
                topo("E3", w("front"), &["pay"], &["n1"]),
                topo("E4", w("pay"), &[], &["n2"]),
            ],
        };
        let r = rank(&input, &RankParams::default());
        assert_eq!(r.candidates[0].subject, w("pay"), "{r:#?}");
    }

    #[test]
    fn rollouts_shortly_before_become_candidates() {
        let input = RcaInput {
            start: 1000,
            symptom: None,
            evidence: vec![
                anomaly("E1", 1000, w("api"), "errors", 15.0),
                anomaly("E2", 1000, w("web"), "errors", 15.0),
                Evidence {
                    id: "E3".into(),
                    time: 760,
                    subject: w("api"),
                    payload: Payload::Change {
                        change: ChangeKind::Rollout,
                        from: Some("api:v1.4.2".into()),
                        to: Some("api:v1.5.0".into()),
                        description: String::new(),
                    },
                },
                Evidence {
                    id: "E4".into(),
                    time: 990,
                    subject: w("web"),
                    payload: Payload::Action {
                        run_id: 1,
                        playbook: "restart".into(),
                        step: "s".into(),
                        status: "ok".into(),
                    },
                },
            ],
        };
        let r = rank(&input, &RankParams::default());
        assert_eq!(r.candidates[0].cause, CauseKind::Change, "{r:#?}");
        assert_eq!(r.candidates[0].subject, w("api"));
        assert!(
            r.candidates[0].reasons[0].contains("api:v1.4.2 → v1.5.0 4m before the first anomaly"),
            "{:?}",
            r.candidates[0].reasons
        );
        assert!(r.candidates.iter().all(|c| !c.evidence.contains(&"E4".to_string())));
    }

    #[test]
    fn node_events_and_broad_anomalies_point_to_the_node() {
        let mut ev = vec![Evidence {
            id: "E1".into(),
            time: 1040,
            subject: Subject::node("n2"),
            payload: Payload::KubeEvent {
                reason: "NodeNotReady".into(),
                message: "x".into(),
                count: 1,
                object: "Node/n2".into(),
            },
        }];
        for (i, n) in ["a", "b", "c"].iter().enumerate() {
            ev.push(anomaly(&format!("A{i}"), 1000, w(n), "errors", 20.0));
            ev.push(topo(&format!("T{i}"), w(n), &[], &["n2"]));
        }
        ev.push(topo("T9", w("d"), &[], &["n1"]));
        let r = rank(&RcaInput { start: 1000, symptom: None, evidence: ev }, &RankParams::default());
        assert_eq!(r.candidates[0].subject, Subject::node("n2"), "{r:#?}");
        assert_eq!(r.candidates[0].cause, CauseKind::Node);
    }

    fn arb_subject() -> impl Strategy<Value = Subject> {
        prop_oneof![
            (0usize..6).prop_map(|i| w(["a", "b", "c", "d", "e", "f"][i])),
            (0usize..2).prop_map(|i| Subject::node(["n1", "n2"][i])),
            (0usize..2).prop_map(|i| Subject::workload(None, ["a", "x"][i])),
        ]
    }

    fn arb_f64() -> impl Strategy<Value = f64> {
        prop_oneof![
            4 => -5.0f64..200.0,
            1 => Just(f64::NAN),
            1 => Just(f64::INFINITY),
            1 => Just(f64::NEG_INFINITY),
            1 => Just(0.0),
        ]
    }

    fn arb_payload() -> impl Strategy<Value = Payload> {
        prop_oneof![
            4 => ("[a-z-]{0,12}", arb_f64(), proptest::option::of(arb_f64()), arb_f64(), proptest::option::of(-100i64..5000))
                .prop_map(|(metric, observed, expected, score, until)| Payload::Anomaly {
                    watch: metric.clone(), metric, observed, expected, score, until
                }),
            1 => ("(OOMKilled|Evicted|NodeNotReady|Unhealthy|X)", 0u32..5, "(Node/n1|Pod/a|)")
                .prop_map(|(reason, count, object)| Payload::KubeEvent { reason, message: "m n1".into(), count, object }),
            1 => (0usize..5).prop_map(|k| Payload::Change {
                change: [ChangeKind::Rollout, ChangeKind::Config, ChangeKind::Secret, ChangeKind::Scale, ChangeKind::Autoscaler][k],
                from: Some("a:v1".into()), to: Some("a:v2".into()), description: String::new(),
            }),
            1 => (proptest::collection::vec("(a|b|c|x|)", 0..3), proptest::collection::vec("(n1|n2)", 0..2))
                .prop_map(|(depends_on, nodes)| Payload::Topology { nodes, pods: vec![], services: vec![], depends_on }),
            1 => ("(error_burst|new_template|rate)", 0u64..1000)
                .prop_map(|(signal, count)| Payload::LogSignal { signal, template: "t".into(), count, samples: vec![] }),
            1 => Just(Payload::Action { run_id: 1, playbook: "p".into(), step: "s".into(), status: "ok".into() }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Any evidence: no panic, scores in [0, 1], sorted, cited ids exist, deterministic,
        /// actions never cited.
        #[test]
        fn arbitrary_evidence(items in proptest::collection::vec((arb_subject(), -3000i64..6000, arb_payload()), 0..40),
                              symptom in proptest::option::of(arb_subject())) {
            let evidence: Vec<Evidence> = items.into_iter().enumerate()
                .map(|(i, (subject, time, payload))| Evidence { id: format!("E{}", i + 1), time, subject, payload })
                .collect();
            let actions: BTreeSet<&str> = evidence.iter()
                .filter(|e| matches!(e.payload, Payload::Action { .. })).map(|e| e.id.as_str()).collect();
            let ids: BTreeSet<&str> = evidence.iter().map(|e| e.id.as_str()).collect();
            let input = RcaInput { start: 1000, symptom, evidence: evidence.clone() };
            let r = rank(&input, &RankParams::default());
            prop_assert_eq!(&r, &rank(&input, &RankParams::default()));
            for c in &r.candidates {
                prop_assert!(c.score.is_finite() && (0.0..=1.0).contains(&c.score), "{:?}", c);
                for id in &c.evidence {
                    prop_assert!(ids.contains(id.as_str()));
                    prop_assert!(!actions.contains(id.as_str()));
                }
            }
            for pair in r.candidates.windows(2) {
                prop_assert!(pair[0].score >= pair[1].score);
            }
        }
    }

    #[test]
    fn nan_and_weird_values_do_not_panic() {
        let mut params = RankParams { half_z: f64::NAN, w_strength: f64::INFINITY, ..RankParams::default() };
        params.lag_secs = i64::MAX;
        let input = RcaInput {
            start: i64::MIN,
            symptom: Some(w("x")),
            evidence: vec![
                anomaly("E1", i64::MAX, w("x"), "cpu", f64::NAN),
                anomaly("E2", i64::MIN, w("y"), "cpu", f64::INFINITY),
                anomaly("E3", 0, w("z"), "", -1.0),
            ],
        };
        let r = rank(&input, &params);
        for c in &r.candidates {
            assert!((0.0..=1.0).contains(&c.score), "{c:?}");
        }
        assert!(r.candidates.iter().all(|c| c.subject != w("x")));
    }
}
