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

use super::evidence::{Candidate, CauseKind, ChangeKind, Evidence, Forecast, Payload, Ranking, Subject, SubjectKind};

mod score;
use score::*;

mod context;
use context::*;

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

#[cfg(test)]
mod tests;
