//! The guards: pure decisions on whether a run, or one step of it, may act.
//!
//! Every function here takes what it needs as values (settings, history counts, the planned
//! change) and answers `Ok` or a [`Refusal`] naming the guard and why, so each refusal can be
//! recorded, shown to the operator and tested without a cluster.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::spec::{Autonomy, Guards, RateCap};

/// Field paths `patch` may change unless a playbook or the global settings say otherwise.
pub const DEFAULT_PATCH_ALLOW: &[&str] = &[
    "spec.template.metadata.annotations.*",
    "spec.template.spec.containers[].resources.limits.*",
    "spec.template.spec.containers[].resources.requests.*",
    "spec.template.spec.containers[].env[].value",
];

/// Namespaces no playbook acts in unless the settings say otherwise.
pub const DEFAULT_NAMESPACES_DENY: &[&str] = &["kube-system", "kube-public", "kube-node-lease"];

/// The label that protects a workload from every playbook.
pub const PROTECTED_LABEL: &str = "warden.io/protected";

/// Effective guard settings of one run: the playbook's overrides on the global defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuardSettings {
    pub autonomy: Autonomy,
    pub dry_run: bool,
    #[serde(with = "secs")]
    pub cooldown: Duration,
    pub max_attempts: u32,
    #[serde(with = "secs")]
    pub approval_ttl: Duration,
    pub rate_global: Option<RateCap>,
    pub rate_namespace: Option<RateCap>,
    pub max_replica_change_percent: Option<u32>,
    pub max_pods_deleted: u32,
    pub namespaces_allow: Vec<String>,
    pub namespaces_deny: Vec<String>,
    pub protected_labels: BTreeMap<String, String>,
    pub patch_allow: Vec<String>,
}

mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let v = f64::deserialize(d)?;
        Duration::try_from_secs_f64(v).map_err(serde::de::Error::custom)
    }
}

impl Default for GuardSettings {
    /// Conservative: a person approves, one pod at a time, system namespaces untouched.
    fn default() -> Self {
        Self {
            autonomy: Autonomy::Recommend,
            dry_run: false,
            cooldown: Duration::from_secs(600),
            max_attempts: 3,
            approval_ttl: Duration::from_secs(3600),
            rate_global: Some(RateCap { max: 20, per: crate::duration::HumanDuration(Duration::from_secs(3600)) }),
            rate_namespace: Some(RateCap { max: 5, per: crate::duration::HumanDuration(Duration::from_secs(3600)) }),
            max_replica_change_percent: Some(100),
            max_pods_deleted: 1,
            namespaces_allow: Vec::new(),
            namespaces_deny: DEFAULT_NAMESPACES_DENY.iter().map(|s| s.to_string()).collect(),
            protected_labels: BTreeMap::from([(PROTECTED_LABEL.to_string(), "true".to_string())]),
            patch_allow: DEFAULT_PATCH_ALLOW.iter().map(|s| s.to_string()).collect(),
        }
    }
}

impl GuardSettings {
    /// `layer`'s fields over `self`'s.
    pub fn overlay(&self, layer: &Guards) -> Self {
        let mut s = self.clone();
        if let Some(a) = layer.autonomy {
            s.autonomy = a;
        }
        if let Some(d) = layer.dry_run {
            s.dry_run = d;
        }
        if let Some(c) = layer.cooldown {
            s.cooldown = c.get();
        }
        if let Some(m) = layer.max_attempts {
            s.max_attempts = m;
        }
        if let Some(t) = layer.approval_ttl {
            s.approval_ttl = t.get();
        }
        if let Some(r) = &layer.rate {
            if r.global.is_some() {
                s.rate_global = r.global;
            }
            if r.per_namespace.is_some() {
                s.rate_namespace = r.per_namespace;
            }
        }
        if let Some(b) = &layer.blast_radius {
            if b.max_replica_change_percent.is_some() {
                s.max_replica_change_percent = b.max_replica_change_percent;
            }
            if let Some(m) = b.max_pods_deleted {
                s.max_pods_deleted = m;
            }
            if let Some(a) = &b.namespaces_allow {
                s.namespaces_allow = a.clone();
            }
            if let Some(d) = &b.namespaces_deny {
                s.namespaces_deny = d.clone();
            }
            if let Some(p) = &b.protected_labels {
                s.protected_labels = p.clone();
            }
            if let Some(p) = &b.patch_allow {
                s.patch_allow = p.clone();
            }
        }
        s
    }
}

/// The guard that refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GuardName {
    /// The triggering signal had no data: never a reason to act.
    NoData,
    /// The namespace is denied or not allowed.
    Namespace,
    /// The workload carries a protected label.
    Protected,
    /// The target was acted on too recently.
    Cooldown,
    /// The playbook already ran its maximum number of times for this incident.
    MaxAttempts,
    /// Too many runs acted in the window, across all namespaces.
    RateGlobal,
    /// Too many runs acted in the window, in this namespace.
    RateNamespace,
    /// The change is larger than the blast radius allows.
    BlastRadius,
    /// A patch sets a field outside the allow-list.
    PatchAllow,
    /// Another run is acting on the same target.
    TargetBusy,
    /// The approval request expired before anyone decided.
    ApprovalExpired,
    /// A person denied the approval.
    Denied,
    /// The step has nothing to do within its bounds (e.g. already at max replicas).
    Bounds,
}

impl GuardName {
    pub fn as_str(self) -> &'static str {
        match self {
            GuardName::NoData => "no_data",
            GuardName::Namespace => "namespace",
            GuardName::Protected => "protected",
            GuardName::Cooldown => "cooldown",
            GuardName::MaxAttempts => "max_attempts",
            GuardName::RateGlobal => "rate_global",
            GuardName::RateNamespace => "rate_namespace",
            GuardName::BlastRadius => "blast_radius",
            GuardName::PatchAllow => "patch_allow",
            GuardName::TargetBusy => "target_busy",
            GuardName::ApprovalExpired => "approval_expired",
            GuardName::Denied => "denied",
            GuardName::Bounds => "bounds",
        }
    }
}

impl fmt::Display for GuardName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why something was not done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub guard: GuardName,
    pub reason: String,
}

impl Refusal {
    pub fn new(guard: GuardName, reason: impl Into<String>) -> Self {
        Self { guard, reason: reason.into() }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "refused by {}: {}", self.guard, self.reason)
    }
}

/// What the store knows about earlier runs, as the run guards need it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    /// When a run last acted (not dry-run) on the same target.
    pub last_acted_on_target: Option<DateTime<Utc>>,
    /// Runs of this playbook for the triggering incident so far.
    pub attempts_for_incident: u32,
    /// Runs that acted within the global rate window.
    pub acted_global: u32,
    /// Runs that acted in the target's namespace within the namespace rate window.
    pub acted_namespace: u32,
}

/// The run-level guards, in the order they are checked: no data, namespace, protection,
/// cooldown, attempts, rate caps. `has_data` is `None` for runs without a triggering signal
/// (manual, cron).
pub fn check_run(
    s: &GuardSettings,
    namespace: Option<&str>,
    target_labels: &BTreeMap<String, String>,
    has_data: Option<bool>,
    history: &History,
    now: DateTime<Utc>,
) -> Result<(), Refusal> {
    if has_data == Some(false) {
        return Err(Refusal::new(GuardName::NoData, "the triggering signal has no data"));
    }
    if let Some(ns) = namespace {
        check_namespace(s, ns)?;
    }
    check_protected(s, target_labels)?;
    if let Some(last) = history.last_acted_on_target {
        let elapsed = now.signed_duration_since(last).to_std().unwrap_or(Duration::ZERO);
        if elapsed < s.cooldown {
            return Err(Refusal::new(
                GuardName::Cooldown,
                format!(
                    "a run acted on this target {} ago; cooldown is {} ({} left)",
                    human(elapsed),
                    human(s.cooldown),
                    human(s.cooldown - elapsed)
                ),
            ));
        }
    }
    if history.attempts_for_incident >= s.max_attempts {
        return Err(Refusal::new(
            GuardName::MaxAttempts,
            format!(
                "{} run(s) already for this incident; max_attempts is {}",
                history.attempts_for_incident, s.max_attempts
            ),
        ));
    }
    if let Some(cap) = s.rate_global {
        if history.acted_global >= cap.max {
            return Err(Refusal::new(
                GuardName::RateGlobal,
                format!("{} run(s) acted in the last {}; the global cap is {}", history.acted_global, cap.per, cap.max),
            ));
        }
    }
    if let (Some(cap), Some(ns)) = (s.rate_namespace, namespace) {
        if history.acted_namespace >= cap.max {
            return Err(Refusal::new(
                GuardName::RateNamespace,
                format!(
                    "{} run(s) acted in namespace {ns} in the last {}; the cap is {}",
                    history.acted_namespace, cap.per, cap.max
                ),
            ));
        }
    }
    Ok(())
}

/// Namespace allow and deny lists (deny wins).
pub fn check_namespace(s: &GuardSettings, ns: &str) -> Result<(), Refusal> {
    if s.namespaces_deny.iter().any(|d| d == ns) {
        return Err(Refusal::new(GuardName::Namespace, format!("namespace {ns} is in namespaces_deny")));
    }
    if !s.namespaces_allow.is_empty() && !s.namespaces_allow.iter().any(|a| a == ns) {
        return Err(Refusal::new(
            GuardName::Namespace,
            format!("namespace {ns} is not in namespaces_allow ({})", s.namespaces_allow.join(", ")),
        ));
    }
    Ok(())
}

/// A workload carrying any protected label (with its value) is never acted on.
pub fn check_protected(s: &GuardSettings, labels: &BTreeMap<String, String>) -> Result<(), Refusal> {
    for (k, v) in &s.protected_labels {
        if labels.get(k) == Some(v) {
            return Err(Refusal::new(GuardName::Protected, format!("the workload is labelled {k}={v}")));
        }
    }
    Ok(())
}

/// A replica change within the blast radius: at most `max_replica_change_percent` of the
/// current count (a change from 0 is measured against 1).
pub fn check_scale(s: &GuardSettings, from: i32, to: i32) -> Result<(), Refusal> {
    if from == to {
        return Err(Refusal::new(GuardName::Bounds, format!("already at {from} replicas; the bounds allow no change")));
    }
    if let Some(pct) = s.max_replica_change_percent {
        let base = f64::from(from.max(1));
        let change = f64::from((to - from).abs()) / base * 100.0;
        if change > f64::from(pct) + 1e-9 {
            return Err(Refusal::new(
                GuardName::BlastRadius,
                format!("{from} → {to} replicas is a {change:.0}% change; max_replica_change_percent is {pct}"),
            ));
        }
    }
    Ok(())
}

/// Pods deleted by one run, this step's included.
pub fn check_pods_deleted(s: &GuardSettings, already: u32, now_deleting: u32) -> Result<(), Refusal> {
    let total = already.saturating_add(now_deleting);
    if total > s.max_pods_deleted {
        return Err(Refusal::new(
            GuardName::BlastRadius,
            format!("this would delete {total} pod(s) in one run; max_pods_deleted is {}", s.max_pods_deleted),
        ));
    }
    Ok(())
}

/// Every field a patch sets must match an allow-list pattern (the same check the loader
/// runs on literal patches, see [`crate::load::patch_paths`]).
pub fn check_patch(s: &GuardSettings, patch: &serde_json::Value) -> Result<(), Refusal> {
    let denied: Vec<String> =
        crate::load::patch_paths(patch).into_iter().filter(|p| !crate::load::path_allowed(p, &s.patch_allow)).collect();
    if denied.is_empty() {
        Ok(())
    } else {
        Err(Refusal::new(
            GuardName::PatchAllow,
            format!("the patch sets {} outside patch_allow ({})", denied.join(", "), s.patch_allow.join(", ")),
        ))
    }
}

/// `90s` → `1m 30s`.
pub fn human(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).expect("time")
    }

    fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn no_data_refuses_first() {
        let e =
            check_run(&GuardSettings::default(), Some("shop"), &labels(&[]), Some(false), &History::default(), t(0))
                .unwrap_err();
        assert_eq!(e.guard, GuardName::NoData);
    }

    #[test]
    fn namespaces_and_protection() {
        let s = GuardSettings::default();
        assert_eq!(check_namespace(&s, "kube-system").unwrap_err().guard, GuardName::Namespace);
        let only_shop = GuardSettings { namespaces_allow: vec!["shop".into()], ..s.clone() };
        assert!(check_namespace(&only_shop, "shop").is_ok());
        assert!(check_namespace(&only_shop, "ml").unwrap_err().reason.contains("not in namespaces_allow"));
        let e =
            check_run(&s, Some("shop"), &labels(&[(PROTECTED_LABEL, "true")]), Some(true), &History::default(), t(0))
                .unwrap_err();
        assert_eq!(e.guard, GuardName::Protected);
    }

    #[test]
    fn cooldown_attempts_and_rates() {
        let s = GuardSettings::default();
        let h = History { last_acted_on_target: Some(t(0)), ..Default::default() };
        let e = check_run(&s, Some("shop"), &labels(&[]), None, &h, t(599)).unwrap_err();
        assert_eq!(e.guard, GuardName::Cooldown);
        assert!(e.reason.contains("1s left"), "{}", e.reason);
        assert!(check_run(&s, Some("shop"), &labels(&[]), None, &h, t(600)).is_ok());
        let h = History { attempts_for_incident: 3, ..Default::default() };
        assert_eq!(check_run(&s, None, &labels(&[]), None, &h, t(0)).unwrap_err().guard, GuardName::MaxAttempts);
        let h = History { acted_global: 20, ..Default::default() };
        assert_eq!(check_run(&s, None, &labels(&[]), None, &h, t(0)).unwrap_err().guard, GuardName::RateGlobal);
        let h = History { acted_namespace: 5, ..Default::default() };
        assert_eq!(
            check_run(&s, Some("shop"), &labels(&[]), None, &h, t(0)).unwrap_err().guard,
            GuardName::RateNamespace
        );
    }

    #[test]
    fn blast_radius_of_scale_and_pods() {
        let s = GuardSettings { max_replica_change_percent: Some(50), ..Default::default() };
        assert!(check_scale(&s, 4, 6).is_ok());
        let e = check_scale(&s, 4, 7).unwrap_err();
        assert_eq!(e.guard, GuardName::BlastRadius);
        assert!(e.reason.contains("75%"), "{}", e.reason);
        assert_eq!(check_scale(&s, 4, 4).unwrap_err().guard, GuardName::Bounds);
        assert!(check_pods_deleted(&s, 0, 1).is_ok());
        assert_eq!(check_pods_deleted(&s, 1, 1).unwrap_err().guard, GuardName::BlastRadius);
    }

    #[test]
    fn patch_allow_list() {
        let s = GuardSettings::default();
        let ok = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "resources": {"limits": {"memory": "1Gi"}}}]}}}});
        assert!(check_patch(&s, &ok).is_ok());
        let bad = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "evil:1"}]}}}});
        let e = check_patch(&s, &bad).unwrap_err();
        assert_eq!(e.guard, GuardName::PatchAllow);
        assert!(e.reason.contains("spec.template.spec.containers[].image"), "{}", e.reason);
        let dotted = json!({"spec": {"template": {"metadata": {"annotations": {"warden.io/model": "v7"}}}}});
        assert!(check_patch(&s, &dotted).is_ok());
        assert_eq!(check_patch(&s, &json!({"spec": {"replicas": 3}})).map_err(|r| r.guard), Err(GuardName::PatchAllow));
    }

    #[test]
    fn overlay_takes_only_given_fields() {
        let g: Guards = serde_yaml::from_str("autonomy: auto\nblast_radius: {max_pods_deleted: 3}\n").expect("guards");
        let s = GuardSettings::default().overlay(&g);
        assert_eq!(s.autonomy, Autonomy::Auto);
        assert_eq!(s.max_pods_deleted, 3);
        assert_eq!(s.cooldown, Duration::from_secs(600));
        assert_eq!(s.namespaces_deny.len(), 3);
    }
}
