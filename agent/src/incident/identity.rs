//! Identity: the one place that says which incident a signal belongs to and what it is
//! about.
//!
//! A fingerprint is a hash of the watch name and the identity label values, so the same
//! series (or alert, or log template) always maps to the same open incident, across
//! restarts and replicas. A target is the workload an incident is about, filled from the
//! watch's `target` template or an alert's `namespace`/`deployment` labels. Watches,
//! log watches, the Alertmanager endpoint, the API and the responder all call these.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::store::TargetRef;

/// A stable fingerprint of a watch and the identity label values.
pub fn fingerprint(watch: &str, identity: &BTreeMap<String, String>) -> String {
    let mut h = Sha256::new();
    h.update(watch.as_bytes());
    for (k, v) in identity {
        h.update([0u8]);
        h.update(k.as_bytes());
        h.update([0u8]);
        h.update(v.as_bytes());
    }
    hex::encode(&h.finalize()[..12])
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    #[default]
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TargetTemplate {
    pub namespace: String,
    pub deployment: String,
}

/// The workload a watch's incident is about: the watch's `target` template filled from the
/// series' identity labels. `None` when the watch has no template or a placeholder has no
/// label to fill it (an incident without a target is recorded and notified, never acted on).
pub fn watch_target(template: Option<&TargetTemplate>, identity: &BTreeMap<String, String>) -> Option<TargetRef> {
    let t = template?;
    let fill = |tpl: &str| -> Option<String> {
        let mut out = tpl.to_string();
        for (k, v) in identity {
            out = out.replace(&format!("{{{k}}}"), v);
        }
        (!out.contains('{') && !out.is_empty()).then_some(out)
    };
    Some(TargetRef { namespace: fill(&t.namespace)?, deployment: fill(&t.deployment)? })
}

/// How a subject reads in titles and the timeline: `namespace/deployment`, the identity
/// labels, or `(all)` for a watch without identity labels.
pub fn describe(target: &Option<TargetRef>, identity: &BTreeMap<String, String>) -> String {
    match target {
        Some(t) => format!("{}/{}", t.namespace, t.deployment),
        None if identity.is_empty() => "(all)".into(),
        None => identity.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","),
    }
}

/// The playbook engine's target for an incident's workload.
pub fn run_target(t: &TargetRef) -> warden_playbooks::run::Target {
    warden_playbooks::run::Target::deployment(t.namespace.clone(), t.deployment.clone())
}

/// The watch name an Alertmanager alert is recorded under: `alertmanager/<alertname>`.
pub fn alert_watch(labels: &BTreeMap<String, String>) -> String {
    format!("alertmanager/{}", alert_name(labels))
}

/// An alert's `alertname` label (`unnamed` when it has none).
pub fn alert_name(labels: &BTreeMap<String, String>) -> &str {
    labels.get("alertname").map(String::as_str).unwrap_or("unnamed")
}

/// An alert's fingerprint: its watch name and all of its labels (Alertmanager's own notion
/// of an alert's identity).
pub fn alert_fingerprint(labels: &BTreeMap<String, String>) -> String {
    fingerprint(&alert_watch(labels), labels)
}

/// An alert's severity from its `severity` label: `critical`/`page` are critical,
/// `info`/`none` informational, anything else (or none) a warning.
pub fn alert_severity(labels: &BTreeMap<String, String>) -> Severity {
    match labels.get("severity").map(String::as_str) {
        Some("critical") | Some("page") => Severity::Critical,
        Some("info") | Some("none") => Severity::Info,
        _ => Severity::Warning,
    }
}

/// An alert's target from its `namespace` and `deployment` labels.
pub fn alert_target(labels: &BTreeMap<String, String>) -> Option<TargetRef> {
    match (labels.get("namespace"), labels.get("deployment")) {
        (Some(ns), Some(dep)) => Some(TargetRef { namespace: ns.clone(), deployment: dep.clone() }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn fingerprints_separate_watches_and_identities_and_do_not_collide_on_joins() {
        let a = fingerprint("w", &labels(&[("pod", "a")]));
        assert_eq!(a, fingerprint("w", &labels(&[("pod", "a")])), "stable");
        assert_ne!(a, fingerprint("w2", &labels(&[("pod", "a")])));
        assert_ne!(a, fingerprint("w", &labels(&[("pod", "b")])));
        // Separators keep `k=ab` apart from `ka=b`.
        assert_ne!(fingerprint("w", &labels(&[("k", "ab")])), fingerprint("w", &labels(&[("ka", "b")])));
        assert_eq!(a.len(), 24);
    }

    #[test]
    fn alerts_map_to_severity_target_and_the_watch_fingerprint() {
        let l =
            labels(&[("alertname", "HighLatency"), ("severity", "page"), ("namespace", "shop"), ("deployment", "api")]);
        assert_eq!(alert_watch(&l), "alertmanager/HighLatency");
        assert_eq!(alert_severity(&l), Severity::Critical);
        assert_eq!(alert_target(&l), Some(TargetRef { namespace: "shop".into(), deployment: "api".into() }));
        assert_eq!(alert_fingerprint(&l), fingerprint("alertmanager/HighLatency", &l));
        let bare = labels(&[("severity", "none")]);
        assert_eq!(alert_watch(&bare), "alertmanager/unnamed");
        assert_eq!(alert_severity(&bare), Severity::Info);
        assert_eq!(alert_target(&bare), None);
    }

    #[test]
    fn describe_prefers_the_target_then_identity_then_all() {
        let t = Some(TargetRef { namespace: "n".into(), deployment: "d".into() });
        assert_eq!(describe(&t, &labels(&[("pod", "p")])), "n/d");
        assert_eq!(describe(&None, &labels(&[("pod", "p"), ("zone", "z")])), "pod=p,zone=z");
        assert_eq!(describe(&None, &BTreeMap::new()), "(all)");
    }
}
