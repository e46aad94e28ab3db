//! The evidence an incident analysis works from, and the ranking it produces.
//!
//! These types are the contract between the three layers of root-cause analysis: the agent
//! *collects* evidence (anomalies, log signals, Kubernetes events, changes, topology, actions),
//! this crate *ranks* candidate causes from it, and the models crate *writes* a summary that
//! may only state what the cited evidence says. Every item has a stable id (`E1`, `E2`, ...)
//! so a sentence of the summary can be checked against exactly the items it cites.

use serde::{Deserialize, Serialize};

/// What an evidence item is about: a workload, a node, a service or a change object.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Subject {
    pub kind: SubjectKind,
    /// Namespace of namespaced subjects; `None` for nodes and for subjects known only by name
    /// (the services of an offline CSV).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
}

/// The kind of a [`Subject`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectKind {
    /// A Deployment, StatefulSet or DaemonSet (or a service of an offline recording).
    Workload,
    /// A cluster node.
    Node,
}

impl Subject {
    pub fn workload(namespace: Option<&str>, name: &str) -> Self {
        Self { kind: SubjectKind::Workload, namespace: namespace.map(str::to_string), name: name.to_string() }
    }

    pub fn node(name: &str) -> Self {
        Self { kind: SubjectKind::Node, namespace: None, name: name.to_string() }
    }

    /// `namespace/name` for namespaced workloads, `name` for the others, `node/name` for nodes.
    pub fn display(&self) -> String {
        match (self.kind, &self.namespace) {
            (SubjectKind::Node, _) => format!("node/{}", self.name),
            (SubjectKind::Workload, Some(ns)) => format!("{ns}/{}", self.name),
            (SubjectKind::Workload, None) => self.name.clone(),
        }
    }
}

impl std::fmt::Display for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display())
    }
}

/// One piece of evidence: what was seen, when, about what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// Stable id within one analysis: `E1`, `E2`, ... in the order collected.
    pub id: String,
    /// Unix seconds: when it was seen (for an anomaly, its onset).
    pub time: i64,
    pub subject: Subject,
    pub payload: Payload,
}

/// A forecast's limit and when the point forecast reaches it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Forecast {
    pub limit: f64,
    /// Unix seconds; `None`: not within the forecast's horizon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crossing: Option<i64>,
}

/// What an evidence item says. Text fields that come from the cluster or from logs
/// (`message`, `samples`, `template`) are untrusted: they are quoted as data, never obeyed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Payload {
    /// A metric that left its expected range.
    Anomaly {
        /// The watch (or CSV column) that saw it.
        watch: String,
        /// Metric name, e.g. `cpu`, `latency-p95`, `errors`.
        metric: String,
        observed: f64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expected: Option<f64>,
        /// Strength of the deviation in robust standard deviations (always >= 0).
        score: f64,
        /// When the series went back to normal, if it did.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        until: Option<i64>,
        /// A forecast watch (capacity): its limit and when the forecast reaches it. Then
        /// `expected` is the forecast at the horizon's end and is not shown.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        forecast: Option<Forecast>,
    },
    /// A log signal: a new template, a template whose rate jumped, an error burst.
    LogSignal {
        /// `new_template`, `rate` or `error_burst`.
        signal: String,
        template: String,
        count: u64,
        /// A few raw lines, truncated.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        samples: Vec<String>,
    },
    /// A Kubernetes event (OOMKilled, CrashLoopBackOff, FailedScheduling, Evicted, BackOff,
    /// Unhealthy, NodeNotReady, ...).
    KubeEvent {
        reason: String,
        message: String,
        count: u32,
        /// The involved object, `Kind/name`.
        object: String,
    },
    /// A change to the subject: a rollout, a ConfigMap or Secret change, a scale, an HPA event.
    Change {
        change: ChangeKind,
        /// What changed, e.g. the container image; for ConfigMaps and Secrets only the name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<String>,
        description: String,
    },
    /// Where the subject runs and what it serves: the topology facts the ranking used.
    Topology {
        /// The node(s) the subject's pods run on.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        nodes: Vec<String>,
        /// Pods, `name` only.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pods: Vec<String>,
        /// Services whose selector matches the subject's pods.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        services: Vec<String>,
        /// Workloads this subject calls or depends on, when known.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        depends_on: Vec<String>,
    },
    /// An action Warden took (a playbook run step).
    Action { run_id: i64, playbook: String, step: String, status: String },
}

/// The kind of a [`Payload::Change`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Rollout,
    Config,
    Secret,
    Scale,
    Autoscaler,
}

/// A candidate cause with its score and the evidence that supports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub subject: Subject,
    /// What kind of cause: the workload itself, its node, or a change to it.
    pub cause: CauseKind,
    /// In `[0, 1]`; higher is more probable. Comparable within one ranking only.
    pub score: f64,
    /// Ids of the evidence items that support this candidate, most telling first.
    pub evidence: Vec<String>,
    /// Short machine-made reasons ("moved first", "rollout 3m before the first anomaly").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
}

/// The kind of a [`Candidate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CauseKind {
    Workload,
    Node,
    Change,
}

/// Ranked candidates, most probable first.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Ranking {
    pub candidates: Vec<Candidate>,
}
