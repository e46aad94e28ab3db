//! The playbook file format: what an operator writes, as serde types.
//!
//! A playbook is closed (`deny_unknown_fields` everywhere), so a typo is an error with its
//! YAML path rather than a silently ignored guard. Arguments that may be templated
//! (`{{ target.name }}`, `{{ params.step }}`) are kept as text ([`Arg`]) and only become typed
//! values when a run resolves them; [`crate::load`] checks at load time that every template
//! names a known variable and that every literal parses.
//!
//! A step is a mapping with an optional `name` and exactly one action key (`scale:`,
//! `rollback:`, ...). Its type and each action's arguments are defined with the action, in
//! [`crate::actions`], and re-exported here.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::duration::HumanDuration;

/// One playbook file.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Playbook {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// What a run acts on. Most actions need a Deployment; `cordon` acts on a node; a
    /// playbook with `target: none` (e.g. a scheduled retraining Job) needs none.
    #[serde(default)]
    pub target: TargetKind,
    #[serde(default)]
    pub params: BTreeMap<String, ParamSpec>,
    /// Written as `- cron: {...}` (a one-key map), hence the singleton-map form.
    #[serde(default, with = "serde_yaml::with::singleton_map_recursive")]
    pub triggers: Vec<Trigger>,
    /// Overrides of the global guard defaults, field by field.
    #[serde(default)]
    pub guards: Guards,
    pub steps: Vec<Step>,
    /// Steps to run when a verification fails or a step fails after an action was applied.
    /// Absent: the automatic inverse of every applied action, newest first (scale back to
    /// the previous replicas, roll forward after a rollback, uncordon, restore patched fields).
    #[serde(default)]
    pub revert: Option<Vec<Step>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    #[default]
    Deployment,
    Node,
    None,
}

impl fmt::Display for TargetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TargetKind::Deployment => "deployment",
            TargetKind::Node => "node",
            TargetKind::None => "none",
        })
    }
}

/// A typed parameter: `warden playbook run NAME --param k=v` and triggers set it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ParamSpec {
    #[serde(rename = "type")]
    pub kind: ParamType,
    #[serde(default)]
    pub description: String,
    /// Used when no value is given; a parameter without a default is required.
    #[serde(default)]
    pub default: Option<Arg>,
    /// Inclusive bounds for `int`, `float` and `duration`.
    #[serde(default)]
    pub min: Option<Arg>,
    #[serde(default)]
    pub max: Option<Arg>,
    /// The only values accepted, when given.
    #[serde(default)]
    pub allowed: Option<Vec<Arg>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamType {
    Int,
    Float,
    String,
    Bool,
    Duration,
}

/// What starts a run.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Trigger {
    /// An incident opened by a watch.
    Incident(IncidentTrigger),
    /// A firing Alertmanager alert.
    Alert(AlertTrigger),
    /// A cron schedule.
    Cron(CronTrigger),
    /// Only by hand (CLI or API). Every playbook can be run by hand; this trigger says that
    /// nothing else starts it.
    Manual,
}

/// Matches incidents; every given field must match.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentTrigger {
    #[serde(default)]
    pub watch: Option<String>,
    /// Labels the incident's series must carry, with these values.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Any of these severities (`warning`, `critical`); empty matches all.
    #[serde(default)]
    pub severity: Vec<String>,
    /// The detector kind that found it (`robust_baseline`, `capacity`, `drift`, ...).
    #[serde(default)]
    pub detector: Option<String>,
    #[serde(default)]
    pub params: BTreeMap<String, Arg>,
}

/// Matches firing Alertmanager alerts by label.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AlertTrigger {
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub params: BTreeMap<String, Arg>,
}

/// Runs on a schedule (`cron` crate syntax with seconds: `0 0 3 * * *`), in a time zone.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CronTrigger {
    pub schedule: String,
    /// IANA name (`Europe/Berlin`); UTC when absent.
    #[serde(default)]
    pub timezone: Option<String>,
    /// `namespace/name` (or a node name) for playbooks that need a target.
    #[serde(default)]
    pub target: Option<String>,
    #[serde(default)]
    pub params: BTreeMap<String, Arg>,
}

/// How far a playbook may go on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Autonomy {
    /// Record what would be done; change nothing.
    Observe,
    /// Ask a person: the run waits for `warden approve ID` (or the API) until it expires.
    Recommend,
    /// Act, within the guards.
    Auto,
}

impl Autonomy {
    pub fn as_str(self) -> &'static str {
        match self {
            Autonomy::Observe => "observe",
            Autonomy::Recommend => "recommend",
            Autonomy::Auto => "auto",
        }
    }
}

/// Guard settings. Every field is optional here: absent fields take the global defaults
/// (`playbooks.guards` in `warden.yaml`), and those take [`crate::guards::GuardSettings::default`].
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Guards {
    #[serde(default)]
    pub autonomy: Option<Autonomy>,
    /// Send every write with Kubernetes server-side dry-run.
    #[serde(default)]
    pub dry_run: Option<bool>,
    /// Minimum time between two runs that act on the same target.
    #[serde(default)]
    pub cooldown: Option<HumanDuration>,
    /// Most runs of this playbook per incident.
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// How long an approval request stays open.
    #[serde(default)]
    pub approval_ttl: Option<HumanDuration>,
    #[serde(default)]
    pub rate: Option<RateGuards>,
    #[serde(default)]
    pub blast_radius: Option<BlastRadius>,
}

/// Caps on how many runs may act in a sliding window.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateGuards {
    #[serde(default)]
    pub global: Option<RateCap>,
    #[serde(default)]
    pub per_namespace: Option<RateCap>,
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateCap {
    pub max: u32,
    pub per: HumanDuration,
}

/// Limits on how much one run may change.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BlastRadius {
    /// Largest replica change of one scale step, in percent of the current replicas.
    #[serde(default)]
    pub max_replica_change_percent: Option<u32>,
    /// Most pods one run may delete.
    #[serde(default)]
    pub max_pods_deleted: Option<u32>,
    /// Namespaces a run may act in (empty: all but the denied ones).
    #[serde(default)]
    pub namespaces_allow: Option<Vec<String>>,
    #[serde(default)]
    pub namespaces_deny: Option<Vec<String>>,
    /// Workloads carrying any of these labels (with these values) are never acted on.
    #[serde(default)]
    pub protected_labels: Option<BTreeMap<String, String>>,
    /// Field paths `patch` may change (`spec.template.spec.containers[].resources.limits.memory`,
    /// `*` matches one path segment).
    #[serde(default)]
    pub patch_allow: Option<Vec<String>>,
}

pub use crate::actions::{
    CordonStep, DeletePodStep, HttpStep, NotifyStep, PatchStep, RestartStep, RollbackStep, RunJobStep, ScaleStep, Step,
    StepAction, VerifyStep, WaitStep, ACTION_KEYS,
};

impl Step {
    /// The single action, when the step is valid.
    pub fn action(&self) -> Option<StepAction<'_>> {
        match self.actions().as_slice() {
            [one] => Some(*one),
            _ => None,
        }
    }

    /// The name shown in runs and the audit trail: the declared one or `<n>-<action>`.
    pub fn display_name(&self, index: usize) -> String {
        match &self.name {
            Some(n) => n.clone(),
            None => format!("{}-{}", index + 1, self.action().map(|a| a.key()).unwrap_or("step")),
        }
    }
}

/// A scalar argument as written: a literal or a template (`{{ params.step }}`). Numbers and
/// booleans are kept as their text and parsed when the run resolves them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Arg(pub String);

impl Arg {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Arg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for Arg {
    fn from(s: &str) -> Self {
        Arg(s.to_string())
    }
}

impl<'de> Deserialize<'de> for Arg {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bool(bool),
            Int(i64),
            Float(f64),
            Text(String),
        }
        let raw = Raw::deserialize(d)
            .map_err(|_| serde::de::Error::custom("expected a scalar (text, number or true/false)"))?;
        Ok(Arg(match raw {
            Raw::Bool(b) => b.to_string(),
            Raw::Int(i) => i.to_string(),
            Raw::Float(f) => f.to_string(),
            Raw::Text(s) => s,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_keeps_its_action_and_name() {
        let s: Step = serde_yaml::from_str("name: more\nscale: {by: 2, max: '{{ params.max }}'}\n").expect("step");
        assert_eq!(s.display_name(0), "more");
        match s.action() {
            Some(StepAction::Scale(sc)) => {
                assert_eq!(sc.by, Some(Arg("2".into())));
                assert_eq!(sc.max, Some(Arg("{{ params.max }}".into())));
            }
            other => panic!("expected scale, got {other:?}"),
        }
        let unnamed: Step = serde_yaml::from_str("restart: {}\n").expect("step");
        assert_eq!(unnamed.display_name(2), "3-restart");
    }

    #[test]
    fn triggers_and_guards_parse() {
        let p: Playbook = serde_yaml::from_str(
            "name: x\ntriggers:\n  - manual\n  - cron: {schedule: '0 0 3 * * *', timezone: Europe/Berlin}\n  - incident: {watch: w, severity: [critical]}\nguards: {autonomy: recommend, cooldown: 10m, rate: {global: {max: 3, per: 1h}}}\nsteps: [{wait: {for: 1m}}]\n",
        )
        .expect("playbook");
        assert_eq!(p.triggers.len(), 3);
        assert_eq!(p.triggers[0], Trigger::Manual);
        assert_eq!(p.guards.autonomy, Some(Autonomy::Recommend));
        assert_eq!(p.guards.rate.and_then(|r| r.global).map(|g| g.max), Some(3));
    }

    #[test]
    fn unknown_keys_are_errors() {
        let e = serde_yaml::from_str::<Step>("scale: {by: 1, maximum: 3}\n").unwrap_err().to_string();
        assert!(e.contains("maximum"), "{e}");
    }
}
