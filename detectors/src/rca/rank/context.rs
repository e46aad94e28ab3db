//! The facts the ranking weighs, gathered once per input: anomalies, signals and changes per
//! subject, resolved topology, evictions attributed to their node, and each subject's profile.

use super::*;

/// One anomaly as the ranking weighs it.
#[derive(Debug, Clone)]
pub(super) struct Anom {
    pub(super) id: String,
    pub(super) onset: i64,
    pub(super) metric: String,
    /// Raw z as reported.
    pub(super) raw_z: f64,
    /// z after the direction, class, transience and time factors.
    pub(super) z: f64,
    /// Deviates in the metric's fault direction on a metric that says something about the
    /// subject itself (not traffic).
    pub(super) fault: bool,
    pub(super) rising: bool,
    /// A declared condition (readiness, availability): its true start is earlier.
    pub(super) declared: bool,
    /// A forecast watch's limit and crossing (then `raw_z` is the detector's score scaled).
    pub(super) forecast: Option<Forecast>,
}

/// A Kubernetes event or log signal as the ranking weighs it.
#[derive(Debug, Clone)]
pub(super) struct Signal {
    pub(super) id: String,
    pub(super) time: i64,
    /// In `[0, 1]`: how strongly it points at the subject.
    pub(super) weight: f64,
    pub(super) label: String,
}

#[derive(Debug, Clone)]
pub(super) struct ChangeItem {
    pub(super) id: String,
    pub(super) time: i64,
    pub(super) kind: ChangeKind,
    pub(super) label: String,
}

#[derive(Debug, Clone, Default)]
pub(super) struct Facts {
    pub(super) anomalies: Vec<Anom>,
    pub(super) events: Vec<Signal>,
    pub(super) logs: Vec<Signal>,
    pub(super) changes: Vec<ChangeItem>,
    /// Ids of topology items about this subject.
    pub(super) topology: Vec<String>,
    /// Has evidence that makes it a candidate by itself (anything but topology and actions).
    pub(super) signal: bool,
}

/// Derived per-subject values.
#[derive(Debug, Clone, Default)]
pub(super) struct Profile {
    pub(super) strength: f64,
    /// Confidence that it has a fault-direction anomaly (see `Sanitized::confidence`).
    pub(super) fault_strength: f64,
    /// Strongest anomaly, by effective z.
    pub(super) top: Option<usize>,
    /// Earliest qualifying anomaly (index into `anomalies`), or the earliest event/log time.
    pub(super) onset: Option<i64>,
    pub(super) onset_anomaly: Option<usize>,
    /// The onset is a declared condition (a node's readiness, a node event), which lags.
    pub(super) onset_declared: bool,
    pub(super) events: f64,
    pub(super) logs: f64,
    /// Fault-direction anomaly strong enough to take part in the topology rules.
    pub(super) anomalous: bool,
}

pub(super) struct Context<'a> {
    pub(super) input: &'a RcaInput,
    pub(super) p: &'a Sanitized,
    pub(super) facts: BTreeMap<Subject, Facts>,
    pub(super) profiles: BTreeMap<Subject, Profile>,
    /// Workload -> workloads it depends on (resolved).
    pub(super) deps: BTreeMap<Subject, BTreeSet<Subject>>,
    /// Workload -> workloads that depend on it (the reverse of `deps`).
    pub(super) rdeps: BTreeMap<Subject, BTreeSet<Subject>>,
    /// Workload -> nodes it runs on.
    pub(super) placement: BTreeMap<Subject, BTreeSet<Subject>>,
    /// Node -> workloads that run on it.
    pub(super) residents_of: BTreeMap<Subject, Vec<Subject>>,
    /// What the symptom depends on, transitively, with hop counts.
    pub(super) symptom_downstream: BTreeMap<Subject, u32>,
    /// Node -> support from evictions of pods that ran on it: (evidence id, weight, label).
    pub(super) node_support: BTreeMap<Subject, Vec<Signal>>,
    pub(super) has_topology: bool,
    pub(super) has_changes: bool,
    pub(super) has_events: bool,
    pub(super) has_logs: bool,
}

pub(super) fn event_weight(reason: &str) -> (f64, bool) {
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

pub(super) fn count_factor(count: u64) -> f64 {
    unit(0.6 + 0.2 * (count.max(1) - 1).min(2) as f64)
}

pub(super) fn noisy_or(weights: impl Iterator<Item = f64>) -> f64 {
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

pub(super) fn node_of_object(object: &str) -> Option<&str> {
    let (kind, name) = object.split_once('/')?;
    (kind.eq_ignore_ascii_case("node") && !name.is_empty()).then_some(name)
}

impl<'a> Context<'a> {
    pub(super) fn build(input: &'a RcaInput, p: &'a Sanitized) -> Self {
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

    pub(super) fn collect(&mut self) {
        let p = self.p;
        let start = self.input.start;
        for e in &self.input.evidence {
            match &e.payload {
                Payload::Anomaly { metric, observed, expected, score, until, forecast, .. } => {
                    if !score.is_finite() || *score < 0.0 {
                        continue;
                    }
                    let class = p.kinds.get(metric).copied().unwrap_or_else(|| MetricClass::of(metric));
                    // A forecast heads for its limit; otherwise the point is above or below
                    // what was expected.
                    let rising = match (forecast, expected) {
                        (Some(f), _) if f.limit.is_finite() && observed.is_finite() => f.limit >= *observed,
                        (_, Some(x)) if x.is_finite() && observed.is_finite() => observed >= x,
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
                        forecast: *forecast,
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

    pub(super) fn resolve_topology(&mut self) {
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
    pub(super) fn attribute_evictions(&mut self) {
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

    pub(super) fn profile(&mut self) {
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
}
