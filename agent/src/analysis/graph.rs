//! The call graph an incident's ranking uses, and whether the ranking found anything.
//!
//! The ranking can rule out most anomalous services when it knows who calls whom: a cause must
//! sit on a call path from the symptom, and a caller whose callee is anomalous is probably a
//! victim. The daemon has two sources: the `depends_on` of the cluster's topology facts (from
//! Kubernetes Services and, where the cluster connector reads them, service-mesh request
//! metrics with source and destination labels), and a configured graph file
//! (`analysis.graph`, a CSV with the header `caller,callee`, names of workloads in the
//! symptom's namespace). The graph used is stored with the analysis, with its sources, so a
//! reader can tell a ranking that knew the topology from one that did not.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use warden_detectors::rca::{CallGraph, Evidence, Payload, Ranking, Subject};

use crate::ingest::source::MetricSource;

/// One service mesh's request counter and its caller/callee workload labels.
pub struct MeshMetric {
    /// The source name recorded with the graph (`mesh:istio`).
    pub name: &'static str,
    pub metric: &'static str,
    /// Extra selector, e.g. linkerd's outbound side only.
    pub selector: &'static str,
    pub source: &'static str,
    pub source_namespace: &'static str,
    pub destination: &'static str,
    pub destination_namespace: &'static str,
}

/// The request metrics of Istio and Linkerd, with the labels naming the calling and the
/// called workload.
pub const MESH_METRICS: [MeshMetric; 2] = [
    MeshMetric {
        name: "mesh:istio",
        metric: "istio_requests_total",
        selector: "",
        source: "source_workload",
        source_namespace: "source_workload_namespace",
        destination: "destination_workload",
        destination_namespace: "destination_workload_namespace",
    },
    MeshMetric {
        name: "mesh:linkerd",
        metric: "request_total",
        selector: "direction=\"outbound\"",
        source: "deployment",
        source_namespace: "namespace",
        destination: "dst_deployment",
        destination_namespace: "dst_namespace",
    },
];

/// The call graph seen by the service mesh in `[start, end]`: an edge for every pair of
/// workloads with requests between them (both in `namespace` when one is given), per mesh
/// whose metric has any. A query that fails is returned as a gap; a mesh without the metric
/// gives no edges and no gap.
pub async fn mesh_graphs(
    source: &dyn MetricSource,
    namespace: Option<&str>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> (Vec<(String, CallGraph)>, Vec<String>) {
    let mut graphs = Vec::new();
    let mut gaps = Vec::new();
    let span = (end - start).num_seconds().max(60);
    for m in &MESH_METRICS {
        let query = format!(
            "sum by ({}, {}, {}, {}) (increase({}{{{}}}[{span}s]))",
            m.source, m.source_namespace, m.destination, m.destination_namespace, m.metric, m.selector
        );
        let step = Duration::from_secs(span as u64);
        let result = match source.query_range(&query, start, end, step).await {
            Ok(r) => r,
            Err(e) => {
                gaps.push(format!("{}: {e}", m.name));
                continue;
            }
        };
        let mut g = CallGraph::default();
        for s in &result.series {
            let label = |k: &str| s.labels.get(k).map(String::as_str).unwrap_or("");
            let (caller, callee) = (label(m.source), label(m.destination));
            let in_ns = |k: &str| namespace.is_none_or(|ns| label(k).is_empty() || label(k) == ns);
            let requests = s.points.iter().any(|p| p.value.is_finite() && p.value > 0.0);
            if requests && in_ns(m.source_namespace) && in_ns(m.destination_namespace) && caller != "unknown" {
                g.add(caller, callee);
            }
        }
        if !g.is_empty() {
            graphs.push((m.name.to_string(), g));
        }
    }
    (graphs, gaps)
}

/// The graph an analysis used.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GraphUsed {
    /// Where its edges came from: `cluster`, `file:<path>`.
    pub sources: Vec<String>,
    /// `(caller, callee)` pairs, by workload name.
    pub edges: Vec<(String, String)>,
}

/// Read a `caller,callee` CSV. Errors name the file and line.
pub fn read_graph_file(path: &Path) -> Result<CallGraph, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut g = CallGraph::default();
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    match lines.next() {
        Some((_, h)) if h.trim().eq_ignore_ascii_case("caller,callee") => {}
        _ => return Err(format!("{}:1: expected the header `caller,callee`", path.display())),
    }
    for (i, line) in lines {
        let (a, b) = line
            .split_once(',')
            .map(|(a, b)| (a.trim(), b.trim()))
            .filter(|(a, b)| !a.is_empty() && !b.is_empty() && !b.contains(','))
            .ok_or_else(|| format!("{}:{}: expected `caller,callee`", path.display(), i + 1))?;
        g.add(a, b);
    }
    Ok(g)
}

/// Add the configured and mesh graphs (`(source, graph)`) to the evidence as topology items
/// about workloads in the symptom's namespace (numbered after the existing ids), and report
/// the graph used: those edges and the `depends_on` edges already in the evidence.
pub fn apply(
    configured: &[(String, CallGraph)],
    symptom: Option<&Subject>,
    evidence: &mut Vec<Evidence>,
) -> Option<GraphUsed> {
    let mut used = GraphUsed::default();
    let mut edges: BTreeSet<(String, String)> = BTreeSet::new();
    for e in evidence.iter() {
        if let Payload::Topology { depends_on, .. } = &e.payload {
            for d in depends_on {
                edges.insert((e.subject.name.clone(), d.clone()));
            }
        }
    }
    if !edges.is_empty() {
        used.sources.push("cluster".into());
    }
    for (source, g) in configured.iter().filter(|(_, g)| !g.is_empty()) {
        used.sources.push(source.clone());
        let ns = symptom.and_then(|s| s.namespace.clone());
        let time = evidence.iter().map(|e| e.time).min().unwrap_or(0);
        let first = evidence.len() + 1;
        for (k, (caller, callees)) in g.edges.iter().enumerate() {
            for c in callees {
                edges.insert((caller.clone(), c.clone()));
            }
            evidence.push(Evidence {
                id: format!("E{}", first + k),
                time,
                subject: Subject::workload(ns.as_deref(), caller),
                payload: Payload::Topology {
                    nodes: Vec::new(),
                    pods: Vec::new(),
                    services: Vec::new(),
                    depends_on: callees.iter().cloned().collect(),
                },
            });
        }
    }
    if used.sources.is_empty() {
        return None;
    }
    used.edges = edges.into_iter().collect();
    Some(used)
}

/// Whether the ranking found a credible cause: its top candidate has an anomaly of at least
/// `min_z` robust deviations, or a Kubernetes event, log signal or change behind it.
pub fn found(ranking: &Ranking, evidence: &[Evidence], min_z: f64) -> bool {
    let Some(top) = ranking.candidates.first() else {
        return false;
    };
    top.evidence.iter().filter_map(|id| evidence.iter().find(|e| &e.id == id)).any(|e| match &e.payload {
        Payload::Anomaly { score, .. } => *score >= min_z,
        Payload::KubeEvent { .. } | Payload::LogSignal { .. } | Payload::Change { .. } => true,
        Payload::Topology { .. } | Payload::Action { .. } => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_detectors::rca::{Candidate, CauseKind};

    fn anomaly(id: &str, name: &str, z: f64) -> Evidence {
        Evidence {
            id: id.into(),
            time: 100,
            subject: Subject::workload(Some("shop"), name),
            payload: Payload::Anomaly {
                forecast: None,
                watch: "w".into(),
                metric: "latency".into(),
                observed: 2.0,
                expected: Some(1.0),
                score: z,
                until: None,
            },
        }
    }

    #[test]
    fn the_configured_graph_becomes_topology_in_the_symptom_namespace() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("g.csv");
        std::fs::write(&p, "caller,callee\nfrontend,checkout\ncheckout,payments\n").expect("write");
        let g = read_graph_file(&p).expect("graph");
        let mut ev = vec![anomaly("E1", "checkout", 9.0)];
        let sym = Subject::workload(Some("shop"), "frontend");
        let used = apply(&[("file:g.csv".into(), g)], Some(&sym), &mut ev).expect("graph used");
        assert_eq!(used.sources, ["file:g.csv"]);
        assert_eq!(used.edges.len(), 2);
        let topo: Vec<&Evidence> = ev.iter().filter(|e| matches!(e.payload, Payload::Topology { .. })).collect();
        assert_eq!(topo.len(), 2);
        assert!(topo.iter().all(|e| e.subject.namespace.as_deref() == Some("shop")));
        assert_eq!(ev.last().map(|e| e.id.as_str()), Some("E3"));
        assert!(apply(&[], Some(&sym), &mut vec![anomaly("E1", "checkout", 9.0)]).is_none());
    }

    #[test]
    fn bad_graph_files_name_the_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("g.csv");
        std::fs::write(&p, "caller,callee\nfrontend\n").expect("write");
        let e = read_graph_file(&p).err().unwrap_or_default();
        assert!(e.ends_with("g.csv:2: expected `caller,callee`"), "{e}");
        std::fs::write(&p, "a,b\n").expect("write");
        assert!(read_graph_file(&p).err().unwrap_or_default().contains(":1: expected the header"));
    }

    #[test]
    fn found_needs_a_credible_top_candidate() {
        let ev = vec![anomaly("E1", "checkout", 9.0), anomaly("E2", "cart", 3.5)];
        let cand = |id: &str, name: &str| Candidate {
            subject: Subject::workload(Some("shop"), name),
            cause: CauseKind::Workload,
            score: 0.5,
            evidence: vec![id.into()],
            reasons: Vec::new(),
        };
        assert!(found(&Ranking { candidates: vec![cand("E1", "checkout")] }, &ev, 5.0));
        assert!(!found(&Ranking { candidates: vec![cand("E2", "cart")] }, &ev, 5.0));
        assert!(!found(&Ranking::default(), &ev, 5.0));
    }
}
