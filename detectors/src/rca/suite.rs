//! A recorded scenario suite for root-cause ranking, and its scoring.
//!
//! A ranking is only as good as the incidents it was checked on, and "the output looks
//! plausible" is not a check. The suite in `tests/rca/scenarios` holds recorded incidents
//! (generated, seeded, by `tests/rca/generate.py`) with a known root cause: a `metrics.csv` in
//! the `<service>_<metric>` layout of public RCA benchmarks and a `scenario.yaml` that
//! deserialises to [`ScenarioSpec`]. The spec also lists what a live system would have known
//! beyond the metrics (topology, rollouts, Kubernetes events), as [`EventSpec`]s that convert
//! to [`Evidence`].
//!
//! Each scenario is ranked in two [`Mode`]s: **metrics only** (what `warden rca --metrics`
//! sees) and **with evidence** (metrics plus the scenario's events and symptom, as the live
//! agent has them). [`score`] turns the ranked service lists into the usual RCA accuracy
//! figures: AC@1, AC@3, AC@5 and Avg@5 (the mean of AC@1..AC@5, as RCAEval reports), overall
//! and per fault type. Reading the files is the caller's job: this module stays pure.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::evidence::{ChangeKind, Evidence, Payload, Subject};
use super::series::{rank_table_with, SeriesParams, TableInput, TableRanking};

/// The kind of fault a scenario injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultType {
    Cpu,
    Memory,
    Latency,
    Error,
    Rollout,
    Node,
}

impl FaultType {
    /// All fault types, in reporting order.
    pub const ALL: [FaultType; 6] =
        [FaultType::Cpu, FaultType::Memory, FaultType::Latency, FaultType::Error, FaultType::Rollout, FaultType::Node];

    /// The name used in `scenario.yaml`.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultType::Cpu => "cpu",
            FaultType::Memory => "memory",
            FaultType::Latency => "latency",
            FaultType::Error => "error",
            FaultType::Rollout => "rollout",
            FaultType::Node => "node",
        }
    }
}

impl std::fmt::Display for FaultType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `scenario.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioSpec {
    /// Unix seconds: the recorded (approximate) start of the fault.
    pub start: i64,
    pub fault: FaultType,
    /// The service or node at fault, as it appears in the column names.
    pub root_cause: String,
    /// Where the incident was noticed.
    pub symptom: String,
    /// What happens in the scenario, for people.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// What a live system would know beyond the metrics.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<EventSpec>,
}

/// One extra piece of evidence of a scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventSpec {
    /// Where a service runs and what it calls.
    Topology {
        service: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        depends_on: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        nodes: Vec<String>,
    },
    /// A change to a service.
    Change {
        service: String,
        time: i64,
        change: ChangeKind,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<String>,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        description: String,
    },
    /// A Kubernetes event about a service (`service`) or a node (`node`): exactly one of them.
    KubeEvent {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        service: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        node: Option<String>,
        time: i64,
        reason: String,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        message: String,
        #[serde(default = "one_u32")]
        count: u32,
        /// The involved object, `Kind/name`; defaults to `Node/<node>` or `Pod/<service>`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        object: Option<String>,
    },
    /// A log signal at a service.
    LogSignal {
        service: String,
        time: i64,
        signal: String,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        template: String,
        #[serde(default = "one_u64")]
        count: u64,
    },
}

fn one_u32() -> u32 {
    1
}

fn one_u64() -> u64 {
    1
}

impl ScenarioSpec {
    /// Names the spec knows as nodes (from events about nodes and topology placements).
    pub fn nodes(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for e in &self.events {
            match e {
                EventSpec::Topology { nodes, .. } => out.extend(nodes.iter().cloned()),
                EventSpec::KubeEvent { node: Some(n), .. } => {
                    out.insert(n.clone());
                }
                _ => {}
            }
        }
        out
    }

    /// The subject a name stands for: a node if the spec knows it as one (or it is named
    /// `node-*`), else a workload without namespace, as in the metrics table.
    pub fn subject(&self, name: &str) -> Subject {
        if self.nodes().contains(name) || name == "node" || name.starts_with("node-") {
            Subject::node(name)
        } else {
            Subject::workload(None, name)
        }
    }

    /// The events as evidence, with ids `E1`, `E2`, ... in file order.
    pub fn evidence(&self) -> Result<Vec<Evidence>, String> {
        let mut out = Vec::with_capacity(self.events.len());
        for (i, e) in self.events.iter().enumerate() {
            let id = format!("E{}", i + 1);
            let ev = match e {
                EventSpec::Topology { service, depends_on, nodes } => Evidence {
                    id,
                    time: self.start,
                    subject: self.subject(service),
                    payload: Payload::Topology {
                        nodes: nodes.clone(),
                        pods: Vec::new(),
                        services: Vec::new(),
                        depends_on: depends_on.clone(),
                    },
                },
                EventSpec::Change { service, time, change, from, to, description } => Evidence {
                    id,
                    time: *time,
                    subject: self.subject(service),
                    payload: Payload::Change {
                        change: *change,
                        from: from.clone(),
                        to: to.clone(),
                        description: description.clone(),
                    },
                },
                EventSpec::KubeEvent { service, node, time, reason, message, count, object } => {
                    let (subject, default_object) = match (service, node) {
                        (Some(s), None) => (Subject::workload(None, s), format!("Pod/{s}")),
                        (None, Some(n)) => (Subject::node(n), format!("Node/{n}")),
                        _ => {
                            return Err(format!(
                                "event {} ({reason}): exactly one of `service` and `node` is needed",
                                i + 1
                            ))
                        }
                    };
                    Evidence {
                        id,
                        time: *time,
                        subject,
                        payload: Payload::KubeEvent {
                            reason: reason.clone(),
                            message: message.clone(),
                            count: *count,
                            object: object.clone().unwrap_or(default_object),
                        },
                    }
                }
                EventSpec::LogSignal { service, time, signal, template, count } => Evidence {
                    id,
                    time: *time,
                    subject: self.subject(service),
                    payload: Payload::LogSignal {
                        signal: signal.clone(),
                        template: template.clone(),
                        count: *count,
                        samples: Vec::new(),
                    },
                },
            };
            out.push(ev);
        }
        Ok(out)
    }
}

/// How much a ranking of a scenario gets to see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The metrics table and the start only (`warden rca --metrics`).
    MetricsOnly,
    /// The metrics plus the scenario's symptom and events (the live agent's view).
    WithEvidence,
}

impl Mode {
    /// Both modes, in reporting order.
    pub const ALL: [Mode; 2] = [Mode::MetricsOnly, Mode::WithEvidence];

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::MetricsOnly => "metrics-only",
            Mode::WithEvidence => "with-evidence",
        }
    }
}

/// Rank one scenario in one mode.
pub fn rank_scenario(
    spec: &ScenarioSpec,
    times: &[i64],
    columns: &[(String, Vec<f64>)],
    mode: Mode,
    params: &SeriesParams,
) -> Result<TableRanking, String> {
    let input = match mode {
        Mode::MetricsOnly => TableInput { times, columns, start: spec.start, symptom: None, evidence: Vec::new() },
        Mode::WithEvidence => TableInput {
            times,
            columns,
            start: spec.start,
            symptom: Some(spec.subject(&spec.symptom)),
            evidence: spec.evidence()?,
        },
    };
    Ok(rank_table_with(&input, params))
}

/// The ranked services of one scenario, against its known root cause.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub scenario: String,
    pub fault: FaultType,
    pub root_cause: String,
    /// Service (and node) names, most probable first.
    pub ranked: Vec<String>,
}

impl Outcome {
    /// 1-based position of the root cause in the ranking, if it is there.
    pub fn rank(&self) -> Option<usize> {
        self.ranked.iter().position(|s| *s == self.root_cause).map(|i| i + 1)
    }
}

/// Accuracy figures over a set of scenarios, each in `[0, 1]`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Accuracy {
    pub scenarios: usize,
    /// Share of scenarios whose root cause is ranked first (AC@1).
    pub top1: f64,
    /// ... within the first three (AC@3).
    pub top3: f64,
    /// ... within the first five (AC@5).
    pub top5: f64,
    /// Mean of AC@1..AC@5.
    pub avg5: f64,
}

impl Accuracy {
    fn of<'a>(outcomes: impl Iterator<Item = &'a Outcome>) -> Self {
        let ranks: Vec<Option<usize>> = outcomes.map(Outcome::rank).collect();
        let n = ranks.len();
        if n == 0 {
            return Accuracy::default();
        }
        let at = |k: usize| ranks.iter().filter(|r| r.is_some_and(|r| r <= k)).count() as f64 / n as f64;
        Accuracy { scenarios: n, top1: at(1), top3: at(3), top5: at(5), avg5: (1..=5).map(at).sum::<f64>() / 5.0 }
    }
}

/// Accuracy of one fault type.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FaultAccuracy {
    pub fault: FaultType,
    #[serde(flatten)]
    pub accuracy: Accuracy,
}

/// One scenario's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioResult {
    pub scenario: String,
    pub fault: FaultType,
    pub root_cause: String,
    /// 1-based rank of the root cause; `None` when it was not ranked at all.
    pub rank: Option<usize>,
    /// The first three ranked names.
    pub top: Vec<String>,
}

/// The score of a suite in one mode.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SuiteScore {
    pub overall: Accuracy,
    /// Fault types present, in [`FaultType::ALL`] order.
    pub per_fault: Vec<FaultAccuracy>,
    /// Per scenario, in input order.
    pub scenarios: Vec<ScenarioResult>,
}

/// Both modes.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SuiteReport {
    pub metrics_only: SuiteScore,
    pub with_evidence: SuiteScore,
}

/// Score ranked outcomes.
pub fn score(outcomes: &[Outcome]) -> SuiteScore {
    let mut by_fault: BTreeMap<FaultType, Vec<&Outcome>> = BTreeMap::new();
    for o in outcomes {
        by_fault.entry(o.fault).or_default().push(o);
    }
    let per_fault = FaultType::ALL
        .iter()
        .filter_map(|f| by_fault.get(f).map(|v| FaultAccuracy { fault: *f, accuracy: Accuracy::of(v.iter().copied()) }))
        .collect();
    let scenarios = outcomes
        .iter()
        .map(|o| ScenarioResult {
            scenario: o.scenario.clone(),
            fault: o.fault,
            root_cause: o.root_cause.clone(),
            rank: o.rank(),
            top: o.ranked.iter().take(3).cloned().collect(),
        })
        .collect();
    SuiteScore { overall: Accuracy::of(outcomes.iter()), per_fault, scenarios }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rca::SubjectKind;

    fn outcome(name: &str, fault: FaultType, root: &str, ranked: &[&str]) -> Outcome {
        Outcome {
            scenario: name.into(),
            fault,
            root_cause: root.into(),
            ranked: ranked.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn accuracy_at_k() {
        let o = vec![
            outcome("a", FaultType::Cpu, "x", &["x", "y"]),
            outcome("b", FaultType::Cpu, "x", &["y", "z", "x"]),
            outcome("c", FaultType::Node, "n", &["y"]),
            outcome("d", FaultType::Node, "n", &["a", "b", "c", "d", "n"]),
        ];
        let s = score(&o);
        assert_eq!(s.overall.scenarios, 4);
        assert!((s.overall.top1 - 0.25).abs() < 1e-12);
        assert!((s.overall.top3 - 0.5).abs() < 1e-12);
        assert!((s.overall.top5 - 0.75).abs() < 1e-12);
        assert_eq!(s.per_fault.len(), 2);
        assert_eq!(s.per_fault[0].fault, FaultType::Cpu);
        assert!((s.per_fault[0].accuracy.top3 - 1.0).abs() < 1e-12);
        assert_eq!(s.scenarios[2].rank, None);
        assert_eq!(score(&[]).overall, Accuracy::default());
    }

    #[test]
    fn events_convert_to_evidence() {
        let spec = ScenarioSpec {
            start: 100,
            fault: FaultType::Node,
            root_cause: "node-b".into(),
            symptom: "front-end".into(),
            description: String::new(),
            events: vec![
                EventSpec::Topology {
                    service: "orders".into(),
                    depends_on: vec!["payment".into()],
                    nodes: vec!["node-b".into()],
                },
                EventSpec::KubeEvent {
                    service: None,
                    node: Some("node-b".into()),
                    time: 130,
                    reason: "NodeNotReady".into(),
                    message: String::new(),
                    count: 1,
                    object: None,
                },
                EventSpec::KubeEvent {
                    service: Some("x".into()),
                    node: Some("y".into()),
                    time: 1,
                    reason: "r".into(),
                    message: String::new(),
                    count: 1,
                    object: None,
                },
            ],
        };
        assert!(spec.evidence().is_err());
        let mut ok = spec.clone();
        ok.events.pop();
        let ev = ok.evidence().unwrap_or_default();
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[1].subject, Subject::node("node-b"));
        assert_eq!(ev[1].id, "E2");
        assert!(matches!(&ev[1].payload, Payload::KubeEvent { object, .. } if object == "Node/node-b"));
        assert_eq!(ok.subject("node-b").kind, SubjectKind::Node);
    }
}
