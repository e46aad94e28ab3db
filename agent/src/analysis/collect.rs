//! Evidence for one incident, gathered from everything Warden knows around its start.
//!
//! Sources, each optional (a missing source is recorded as a gap, never as "healthy"):
//! - the deviation streaks of every watch ([`super::recent`]), so a series that moved before
//!   the incident's own watch fired is seen;
//! - the incident itself (its watch's observed and expected values);
//! - log-watch incidents opened in the window (new or bursting templates, with samples);
//! - the cluster, through [`ClusterEvidence`]: Kubernetes events, rollouts and config changes,
//!   autoscaler activity and topology of the workloads involved;
//! - the playbook runs of the incident (what Warden did).
//!
//! Items are sorted by time and numbered `E1`, `E2`, ...: the ids the ranking, the summary and
//! the grounding check refer to.

use std::collections::BTreeSet;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use warden_detectors::rca::{Evidence, Payload, Subject, SubjectKind};
use warden_playbooks::run::StepStatus;

use super::recent::RecentAnomalies;
use crate::store::{Incident, Store};

/// At most this many items of each source go into one analysis.
const MAX_ANOMALIES: usize = 30;
const MAX_LOG_SIGNALS: usize = 10;
const MAX_CLUSTER_FACTS: usize = 40;
const MAX_ACTIONS: usize = 10;
/// Workloads whose cluster facts are read for one analysis (the symptom first).
const MAX_CLUSTER_SUBJECTS: usize = 5;
/// Log lines are cut to this many characters before they are stored as evidence.
const MAX_SAMPLE_CHARS: usize = 300;
/// A streak of another series whose strongest point stayed within this many robust
/// standard deviations of normal is noise, not evidence: listing a 0.2σ "anomaly" beside a
/// 9σ one only misleads the reader (and the ranking).
pub const MIN_EVIDENCE_STRENGTH: f64 = 1.0;

/// An evidence item before it is numbered.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fact {
    pub time: i64,
    pub subject: Subject,
    pub payload: Payload,
}

/// What the cluster says about one workload.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ClusterFacts {
    pub facts: Vec<Fact>,
    /// Parts that could not be read ("events: forbidden").
    pub gaps: Vec<String>,
}

/// Read-only cluster facts for root-cause analysis (Kubernetes in production, a simulation in
/// the demo).
#[async_trait]
pub trait ClusterEvidence: Send + Sync {
    /// Events, changes and topology of `namespace/deployment` since `since` (Unix seconds).
    async fn workload_facts(&self, namespace: &str, deployment: &str, since: i64) -> Result<ClusterFacts, String>;
}

/// Evidence gathered for one incident.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Collected {
    pub symptom: Option<Subject>,
    pub evidence: Vec<Evidence>,
    pub gaps: Vec<String>,
}

/// The subject a series is about: the watch's target, or else its identity labels.
pub fn subject_of(
    target: Option<(&str, &str)>,
    labels: &std::collections::BTreeMap<String, String>,
    watch: &str,
) -> Subject {
    if let Some((ns, name)) = target {
        return Subject::workload(Some(ns), name);
    }
    let ns = labels.get("namespace").map(String::as_str);
    for key in ["deployment", "statefulset", "daemonset", "app", "service", "job", "container", "persistentvolumeclaim"]
    {
        if let Some(v) = labels.get(key) {
            return Subject::workload(ns, v);
        }
    }
    if let Some(node) = labels.get("node") {
        return Subject::node(node);
    }
    Subject::workload(ns, watch)
}

fn incident_subject(i: &Incident) -> Subject {
    subject_of(i.target.as_ref().map(|t| (t.namespace.as_str(), t.deployment.as_str())), &i.labels, &i.watch)
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max).collect();
        t.push('…');
        t
    }
}

/// Gather the evidence for `incident`, looking back `lookback_secs` before it opened.
pub async fn collect(
    incident: &Incident,
    now: DateTime<Utc>,
    lookback_secs: i64,
    recent: &RecentAnomalies,
    store: &Store,
    cluster: Option<&dyn ClusterEvidence>,
) -> Collected {
    let opened = incident.opened_at.timestamp();
    let from = opened - lookback_secs;
    let to = now.timestamp().max(opened);
    let symptom = incident_subject(incident);
    let mut gaps = Vec::new();
    let mut facts = Vec::new();

    // Deviation streaks of all watches that began in the window (a series anomalous since
    // before the look-back is background, not news) and moved more than noise. The
    // incident's own streak always counts.
    let streaks: Vec<_> = recent
        .between(from, to)
        .into_iter()
        .filter(|s| {
            let own = s.watch == incident.watch && s.subject == symptom;
            own || (s.onset >= from && s.strength >= MIN_EVIDENCE_STRENGTH)
        })
        .collect();
    let own_seen = streaks.iter().any(|s| s.watch == incident.watch && s.subject == symptom);
    for s in streaks.into_iter().take(MAX_ANOMALIES) {
        facts.push(Fact {
            time: s.onset,
            subject: s.subject,
            payload: Payload::Anomaly {
                forecast: s.forecast,
                metric: s.watch.clone(),
                watch: s.watch,
                observed: s.observed,
                expected: s.expected,
                score: s.strength,
                until: s.ended,
            },
        });
    }
    if !own_seen && incident.source != "log_watch" {
        if let Some(observed) = incident.observed.filter(|v| v.is_finite()) {
            facts.push(Fact {
                time: opened,
                subject: symptom.clone(),
                payload: Payload::Anomaly {
                    forecast: None,
                    watch: incident.watch.clone(),
                    metric: incident.watch.clone(),
                    observed,
                    expected: incident.expected,
                    score: incident
                        .score
                        .map(|s| s.clamp(0.0, 1.0) * 2.0 * super::recent::AT_THRESHOLD)
                        .unwrap_or(0.0)
                        .max(super::recent::AT_THRESHOLD),
                    until: None,
                },
            });
        }
    }

    // Log signals: log-watch incidents opened in the window.
    match store.list_incidents(None, 500) {
        Ok(list) => {
            let logs = list
                .into_iter()
                .filter(|i| i.source == "log_watch" && (from..=to).contains(&i.opened_at.timestamp()))
                .take(MAX_LOG_SIGNALS);
            for i in logs {
                let detail = store
                    .incident_events(i.id)
                    .ok()
                    .and_then(|ev| ev.into_iter().find(|e| e.kind == "opened"))
                    .map(|e| e.detail);
                let d = detail.unwrap_or_default();
                let samples = d["evidence"]["samples"]
                    .as_array()
                    .map(|a| {
                        a.iter().filter_map(|s| s.as_str()).take(3).map(|s| truncate(s, MAX_SAMPLE_CHARS)).collect()
                    })
                    .unwrap_or_default();
                facts.push(Fact {
                    time: i.opened_at.timestamp(),
                    subject: incident_subject(&i),
                    payload: Payload::LogSignal {
                        signal: d["signal"].as_str().unwrap_or("log").to_string(),
                        template: truncate(d["evidence"]["template"].as_str().unwrap_or(&i.title), MAX_SAMPLE_CHARS),
                        count: d["evidence"]["count"].as_u64().unwrap_or(0),
                        samples,
                    },
                });
            }
        }
        Err(e) => gaps.push(format!("log signals: {e}")),
    }

    // Cluster facts of the symptom and of the other anomalous workloads.
    match cluster {
        Some(cluster) => {
            let mut subjects: Vec<Subject> = vec![symptom.clone()];
            for f in &facts {
                if f.subject.kind == SubjectKind::Workload
                    && f.subject.namespace.is_some()
                    && !subjects.contains(&f.subject)
                {
                    subjects.push(f.subject.clone());
                }
            }
            let mut cluster_facts = Vec::new();
            for s in subjects.iter().filter(|s| s.kind == SubjectKind::Workload).take(MAX_CLUSTER_SUBJECTS) {
                let Some(ns) = s.namespace.as_deref() else { continue };
                match cluster.workload_facts(ns, &s.name, from).await {
                    Ok(cf) => {
                        cluster_facts.extend(cf.facts);
                        gaps.extend(cf.gaps.into_iter().map(|g| format!("{s}: {g}")));
                    }
                    Err(e) => gaps.push(format!("{s}: cluster: {e}")),
                }
            }
            // Node facts are shared by the workloads on the node: keep each once.
            let mut seen = BTreeSet::new();
            cluster_facts.retain(|f| seen.insert(serde_json::to_string(f).unwrap_or_default()));
            cluster_facts.sort_by_key(|f| f.time);
            let excess = cluster_facts.len().saturating_sub(MAX_CLUSTER_FACTS);
            if excess > 0 {
                // Keep topology (undated context) and the newest facts.
                let (topology, mut dated): (Vec<Fact>, Vec<Fact>) =
                    cluster_facts.into_iter().partition(|f| matches!(f.payload, Payload::Topology { .. }));
                dated.drain(..excess.min(dated.len()));
                cluster_facts = topology.into_iter().chain(dated).collect();
                gaps.push(format!("cluster: {excess} older facts left out"));
            }
            facts.extend(cluster_facts);
        }
        None => gaps.push("cluster: no Kubernetes connection configured".into()),
    }

    // What Warden did.
    match store.list_runs(None, Some(incident.id), 20) {
        Ok(mut runs) => {
            runs.reverse();
            let mut n = 0;
            for r in &runs {
                let subject = match &r.target {
                    Some(t) if !t.namespace.is_empty() => Subject::workload(Some(&t.namespace), &t.name),
                    Some(t) => Subject::node(&t.name),
                    None => symptom.clone(),
                };
                for s in r.steps.iter().chain(&r.revert_steps) {
                    if n >= MAX_ACTIONS
                        || !matches!(s.status, StepStatus::Done | StepStatus::Failed)
                        || s.action == "wait"
                    {
                        continue;
                    }
                    let summary = s.result.as_ref().and_then(|v| v.get("summary")).and_then(|v| v.as_str());
                    let status = match (s.status, summary) {
                        (StepStatus::Done, Some(t)) => t.to_string(),
                        (StepStatus::Done, None) => "done".to_string(),
                        _ => format!("failed: {}", s.error.as_deref().unwrap_or("-")),
                    };
                    facts.push(Fact {
                        time: s.finished_at.or(s.started_at).unwrap_or(r.created_at).timestamp(),
                        subject: subject.clone(),
                        payload: Payload::Action {
                            run_id: r.id,
                            playbook: r.playbook.clone(),
                            step: s.name.clone(),
                            status: truncate(&status, 200),
                        },
                    });
                    n += 1;
                }
            }
        }
        Err(e) => gaps.push(format!("actions: {e}")),
    }

    Collected { symptom: Some(symptom), evidence: number(facts), gaps }
}

/// Sort by time (undated topology first) and number the items `E1`, `E2`, ...
pub fn number(mut facts: Vec<Fact>) -> Vec<Evidence> {
    facts.sort_by(|a, b| {
        let topo = |f: &Fact| !matches!(f.payload, Payload::Topology { .. });
        (topo(a), a.time).cmp(&(topo(b), b.time)).then_with(|| a.subject.cmp(&b.subject))
    });
    facts
        .into_iter()
        .enumerate()
        .map(|(i, f)| Evidence { id: format!("E{}", i + 1), time: f.time, subject: f.subject, payload: f.payload })
        .collect()
}
