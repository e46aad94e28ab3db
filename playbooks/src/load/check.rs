//! The load-time checks of a parsed playbook: names, templates, literal arguments, each
//! action's own checks ([`crate::actions::Action::check`]), triggers and guards.

use std::collections::{BTreeMap, BTreeSet};

use serde_yaml::Value;

use super::patch_paths::check_pattern;
use super::DEFAULT_PATCH_ALLOW;
use crate::error::{Error, ValueKind};
use crate::params::{check_spec_fields, check_value};
use crate::schedule::{parse_timezone, CronSchedule};
use crate::spec::{Arg, Guards, ParamType, Playbook, Step, StepAction, TargetKind, Trigger, ACTION_KEYS};
use crate::template::{self, check_names};
use crate::yaml_load::join;

pub(super) const NO_ACTION: &str = "a step needs exactly one action";

/// A DNS-1123 label (`[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters).
pub fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
}

/// A DNS-1123 subdomain (dot-separated labels, at most 253 characters): node and pod names.
pub fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// Check a literal webhook URL: `http://` or `https://`, a host, an optional port, no
/// credentials and no whitespace. (The engine checks rendered URLs the same way.)
pub fn check_http_url(url: &str) -> Result<(), Error> {
    let bad = |message: String| Error::value(ValueKind::Url, message);
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| bad(format!("`{url}` must start with http:// or https://")))?;
    if url.chars().any(char::is_whitespace) {
        return Err(bad(format!("`{url}` contains whitespace")));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(bad(format!("`{url}` carries credentials; send them in a header instead")));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        match v6.split_once(']') {
            Some((h, p)) => (h, p.strip_prefix(':')),
            None => return Err(bad(format!("`{url}`: unterminated IPv6 address"))),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(bad(format!("`{url}` has no host")));
    }
    if !host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | ':')) {
        return Err(bad(format!("`{url}`: invalid host `{host}`")));
    }
    if let Some(p) = port {
        if p.parse::<u16>().map_or(true, |n| n == 0) {
            return Err(bad(format!("`{url}`: invalid port `{p}`")));
        }
    }
    Ok(())
}

pub(super) fn type_name(t: ParamType) -> &'static str {
    match t {
        ParamType::Int => "int",
        ParamType::Float => "float",
        ParamType::String => "string",
        ParamType::Bool => "bool",
        ParamType::Duration => "duration",
    }
}

/// Which template namespaces a place may use besides the always-present `run.*` and `now`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Scope {
    target: TargetKind,
    params: bool,
    incident: bool,
    alert: bool,
}

/// The load-time checks of one playbook, collecting every problem as `(YAML path,
/// message)`; each action's [`crate::actions::Action::check`] reports through it.
pub struct Checker<'a> {
    p: &'a Playbook,
    declared: BTreeSet<String>,
    patch_allow: Vec<String>,
    out: Vec<(String, String)>,
}

/// The expected type of a literal argument.
#[derive(Debug, Clone, Copy)]
pub enum Lit {
    /// An integer, at least the bound when given.
    Int(Option<i64>),
    /// Non-empty text.
    Text,
    /// A DNS-1123 label (namespace).
    Label,
    /// A DNS-1123 subdomain (pod, node).
    Subdomain,
    Url,
}

impl Checker<'_> {
    /// The playbook being checked.
    pub fn playbook(&self) -> &Playbook {
        self.p
    }

    /// The field paths `patch` may change in this playbook.
    pub fn patch_allow(&self) -> &[String] {
        &self.patch_allow
    }

    /// Check a step argument's template variables (a no-op for literal text).
    pub fn step_template(&mut self, path: &str, text: &str) {
        self.template(path, text, self.step_scope());
    }

    /// Report a problem at a YAML path.
    pub fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.out.push((path.into(), message.into()));
    }

    fn step_scope(&self) -> Scope {
        Scope { target: self.p.target, params: true, incident: true, alert: true }
    }

    /// Check a template's variables in `scope`; true when the text is a template.
    fn template(&mut self, path: &str, text: &str, scope: Scope) -> bool {
        if !template::is_template(text) {
            return false;
        }
        if let Err(e) = check_names(text, &self.declared) {
            let msg = match e {
                crate::Error::Template { message, .. } => message,
                other => other.to_string(),
            };
            self.err(path, msg);
            return true;
        }
        for name in template::referenced(text).unwrap_or_default() {
            let ns = name.split('.').next().unwrap_or_default();
            let problem = match ns {
                "params" if !scope.params => Some("trigger parameters cannot refer to other parameters".to_string()),
                "incident" if !scope.incident => Some(format!("`{name}` is only set for runs started by an incident")),
                "alert" if !scope.alert => Some(format!("`{name}` is only set for runs started by an alert")),
                "target" => match (scope.target, name.as_str()) {
                    (TargetKind::None, _) => Some(format!("`{name}`: the playbook has `target: none`")),
                    (TargetKind::Node, "target.namespace") => {
                        Some("`target.namespace`: a node target has no namespace".into())
                    }
                    _ => None,
                },
                _ => None,
            };
            if let Some(m) = problem {
                self.err(path, m);
            }
        }
        true
    }

    /// A `{{ params.x }}` that is the whole argument must name a parameter of a fitting type.
    fn param_type(&mut self, path: &str, text: &str, want: ParamType) {
        let Some(name) = text.trim().strip_prefix("{{").and_then(|r| r.strip_suffix("}}")).map(str::trim) else {
            return;
        };
        let Some(p) = name.strip_prefix("params.") else { return };
        if let Some(spec) = self.p.params.get(p) {
            if spec.kind != want {
                self.err(
                    path,
                    format!("parameter `{p}` is {}, this argument needs {}", type_name(spec.kind), type_name(want)),
                );
            }
        }
    }

    /// Check one argument: a template (names checked) or a literal of the expected type.
    /// Returns the literal integer, when it is one.
    pub fn arg(&mut self, path: &str, arg: &Arg, lit: Lit) -> Option<i64> {
        let text = arg.as_str();
        if self.template(path, text, self.step_scope()) {
            if let Lit::Int(_) = lit {
                self.param_type(path, text, ParamType::Int);
            }
            return None;
        }
        match lit {
            Lit::Int(min) => match text.trim().parse::<i64>() {
                Ok(n) => {
                    if let Some(m) = min.filter(|m| n < *m) {
                        self.err(path, format!("must be at least {m}, got {n}"));
                    } else if n.unsigned_abs() > MAX_INT_ARG as u64 {
                        self.err(path, format!("{n} is outside -{MAX_INT_ARG}..={MAX_INT_ARG}"));
                    }
                    return Some(n);
                }
                Err(_) => self.err(path, format!("`{text}` is not a whole number")),
            },
            Lit::Text => {
                if text.trim().is_empty() {
                    self.err(path, "must not be empty");
                }
            }
            Lit::Label => {
                if !is_dns_label(text) {
                    self.err(path, format!("`{text}` is not a valid namespace name (DNS-1123 label)"));
                }
            }
            Lit::Subdomain => {
                if !is_dns_subdomain(text) {
                    self.err(path, format!("`{text}` is not a valid Kubernetes name (DNS-1123 subdomain)"));
                }
            }
            Lit::Url => {
                if let Err(e) = check_http_url(text) {
                    self.err(path, e.to_string());
                }
            }
        }
        None
    }

    /// Check every string (keys included) of a YAML tree as a template; reject tags.
    pub fn tree(&mut self, path: &str, v: &Value) {
        match v {
            Value::String(s) => {
                self.template(path, s, self.step_scope());
            }
            Value::Sequence(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.tree(&format!("{path}[{i}]"), item);
                }
            }
            Value::Mapping(m) => {
                for (k, child) in m {
                    let key = match k {
                        Value::String(s) => {
                            self.template(&join(path, s), s, self.step_scope());
                            s.clone()
                        }
                        Value::Number(n) => n.to_string(),
                        Value::Bool(b) => b.to_string(),
                        _ => {
                            self.err(path, "mapping keys must be text");
                            continue;
                        }
                    };
                    self.tree(&join(path, &key), child);
                }
            }
            Value::Tagged(t) => self.err(path, format!("YAML tags (`{}`) are not supported", t.tag)),
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }

    pub fn positive(&mut self, path: &str, d: std::time::Duration) {
        if d.is_zero() {
            self.err(path, "must be greater than 0");
        }
    }

    fn steps(&mut self, steps: &[Step], seq: &str) {
        let mut names: BTreeMap<String, usize> = BTreeMap::new();
        for (i, step) in steps.iter().enumerate() {
            let at = format!("{seq}[{i}]");
            let actions = step.actions();
            match actions.len() {
                0 => self.err(&at, format!("{NO_ACTION}; allowed: {}", ACTION_KEYS.join(", "))),
                1 => {}
                _ => {
                    let keys: Vec<&str> = actions.iter().map(StepAction::key).collect();
                    self.err(
                        &at,
                        format!("a step has exactly one action; found {}: split it into steps", keys.join(", ")),
                    );
                }
            }
            if let Some(n) = &step.name {
                if n.trim().is_empty() {
                    self.err(format!("{at}.name"), "must not be empty");
                }
            }
            let display = step.display_name(i);
            let name_path = if step.name.is_some() { format!("{at}.name") } else { at.clone() };
            match names.get(&display) {
                Some(j) => self.err(name_path, format!("step name `{display}` is already used by {seq}[{j}]")),
                None => {
                    names.insert(display, i);
                }
            }
            for a in actions {
                a.check(self, &format!("{at}.{}", a.key()));
            }
        }
    }

    pub fn needs_deployment(&mut self, at: &str, key: &str) {
        if self.p.target != TargetKind::Deployment {
            self.err(
                at,
                format!(
                    "`{key}` acts on a Deployment: the playbook needs `target: deployment` (it has `target: {}`)",
                    self.p.target
                ),
            );
        }
    }

    fn trigger_params(&mut self, at: &str, params: &BTreeMap<String, Arg>, scope: Scope) {
        for (name, arg) in params {
            let path = format!("{at}.params.{name}");
            let Some(spec) = self.p.params.get(name) else {
                let declared: Vec<&str> = self.p.params.keys().map(String::as_str).collect();
                let msg = if declared.is_empty() {
                    "unknown parameter: the playbook declares none".to_string()
                } else {
                    format!("unknown parameter; declared: {}", declared.join(", "))
                };
                self.err(path, msg);
                continue;
            };
            if !self.template(&path, arg.as_str(), scope) {
                if let Err(e) = check_value(spec, arg.as_str()) {
                    self.err(path, e.to_string());
                }
            }
        }
        for (name, spec) in &self.p.params {
            if spec.default.is_none() && !params.contains_key(name) {
                self.out.push((format!("{at}.params"), format!("does not set the required parameter `{name}`")));
            }
        }
    }

    fn triggers(&mut self) {
        for (i, t) in self.p.triggers.iter().enumerate() {
            let at = format!("triggers[{i}]");
            match t {
                Trigger::Manual => {
                    if self.p.triggers.len() > 1 {
                        self.err(&at, "`manual` declares that the playbook has no automatic trigger: remove it or the other triggers");
                    }
                }
                Trigger::Incident(it) => {
                    let at = format!("{at}.incident");
                    if it.watch.as_deref().is_some_and(|w| w.trim().is_empty()) {
                        self.err(format!("{at}.watch"), "must not be empty");
                    }
                    for (k, s) in it.severity.iter().enumerate() {
                        if !matches!(s.as_str(), "warning" | "critical") {
                            self.err(
                                format!("{at}.severity[{k}]"),
                                format!("`{s}` is not a severity: warning or critical"),
                            );
                        }
                    }
                    if self.p.target == TargetKind::Node {
                        self.err(&at, "incidents are about deployments and series, not nodes: a node playbook needs a cron or manual trigger");
                    }
                    let scope = Scope { target: self.p.target, params: false, incident: true, alert: false };
                    self.trigger_params(&at, &it.params, scope);
                }
                Trigger::Alert(a) => {
                    let at = format!("{at}.alert");
                    if a.labels.is_empty() {
                        self.err(format!("{at}.labels"), "needs at least one label to match");
                    }
                    let scope = Scope { target: self.p.target, params: false, incident: false, alert: true };
                    self.trigger_params(&at, &a.params, scope);
                }
                Trigger::Cron(c) => {
                    let at = format!("{at}.cron");
                    let tz_ok = match &c.timezone {
                        Some(tz) => match parse_timezone(tz) {
                            Ok(_) => true,
                            Err(e) => {
                                self.err(format!("{at}.timezone"), e.to_string());
                                false
                            }
                        },
                        None => true,
                    };
                    if tz_ok {
                        if let Err(e) = CronSchedule::parse(&c.schedule, c.timezone.as_deref()) {
                            self.err(format!("{at}.schedule"), e.to_string());
                        }
                    }
                    match (self.p.target, &c.target) {
                        (TargetKind::None, Some(_)) => {
                            self.err(format!("{at}.target"), "the playbook has `target: none`")
                        }
                        (TargetKind::Deployment, None) => self.err(&at, "needs `target: namespace/deployment`"),
                        (TargetKind::Node, None) => self.err(&at, "needs `target:` (a node name)"),
                        (TargetKind::Deployment, Some(t)) => {
                            let ok =
                                t.split_once('/').is_some_and(|(ns, name)| is_dns_label(ns) && is_dns_subdomain(name));
                            if !ok {
                                self.err(format!("{at}.target"), format!("`{t}` is not `namespace/deployment`"));
                            }
                        }
                        (TargetKind::Node, Some(t)) => {
                            if !is_dns_subdomain(t) {
                                self.err(format!("{at}.target"), format!("`{t}` is not a node name"));
                            }
                        }
                        (TargetKind::None, None) => {}
                    }
                    let scope = Scope { target: self.p.target, params: false, incident: false, alert: false };
                    self.trigger_params(&at, &c.params, scope);
                }
            }
        }
    }

    fn guards(&mut self, g: &Guards) {
        if let Some(n) = g.max_attempts {
            if !(1..=MAX_GUARD_ATTEMPTS).contains(&n) {
                let msg = if n == 0 {
                    "must be at least 1".to_string()
                } else {
                    format!("{n} is outside 1..={MAX_GUARD_ATTEMPTS}")
                };
                self.err("guards.max_attempts", msg);
            }
        }
        if let Some(t) = g.approval_ttl {
            self.positive("guards.approval_ttl", t.get());
        }
        if let Some(r) = &g.rate {
            for (name, cap) in [("global", &r.global), ("per_namespace", &r.per_namespace)] {
                if let Some(c) = cap {
                    if c.max == 0 {
                        self.err(format!("guards.rate.{name}.max"), "must be at least 1");
                    } else if c.max > MAX_RATE_CAP {
                        self.err(format!("guards.rate.{name}.max"), format!("{} is outside 1..={MAX_RATE_CAP}", c.max));
                    }
                    self.positive(&format!("guards.rate.{name}.per"), c.per.get());
                }
            }
        }
        if let Some(b) = &g.blast_radius {
            if let Some(n) = b.max_pods_deleted.filter(|n| i64::from(*n) > MAX_INT_ARG) {
                self.err("guards.blast_radius.max_pods_deleted", format!("{n} is outside 0..={MAX_INT_ARG}"));
            }
            if let Some(p) = b.max_replica_change_percent {
                if !(1..=1000).contains(&p) {
                    self.err("guards.blast_radius.max_replica_change_percent", format!("{p} is outside 1..=1000"));
                }
            }
            for (name, list) in [("namespaces_allow", &b.namespaces_allow), ("namespaces_deny", &b.namespaces_deny)] {
                for (i, ns) in list.iter().flatten().enumerate() {
                    if !is_dns_label(ns) {
                        self.err(format!("guards.blast_radius.{name}[{i}]"), format!("`{ns}` is not a namespace name"));
                    }
                }
            }
            if let (Some(allow), Some(deny)) = (&b.namespaces_allow, &b.namespaces_deny) {
                for (i, ns) in allow.iter().enumerate() {
                    if deny.contains(ns) {
                        self.err(
                            format!("guards.blast_radius.namespaces_allow[{i}]"),
                            format!("`{ns}` is also in namespaces_deny"),
                        );
                    }
                }
            }
            for k in b.protected_labels.iter().flat_map(|m| m.keys()) {
                if k.trim().is_empty() {
                    self.err("guards.blast_radius.protected_labels", "label names must not be empty");
                }
            }
            for (i, pat) in b.patch_allow.iter().flatten().enumerate() {
                if let Err(e) = check_pattern(pat) {
                    self.err(format!("guards.blast_radius.patch_allow[{i}]"), format!("`{pat}`: {e}"));
                }
            }
        }
    }
}

/// Largest magnitude of a literal whole-number argument (replicas, a change of replicas, a
/// revision, a pod count): far above any real workload, far below where arithmetic overflows.
pub const MAX_INT_ARG: i64 = 1_000_000;
/// Most evaluation points of one `verify` window (Prometheus' limit per range query).
pub const MAX_VERIFY_POINTS: u128 = 11_000;
/// Most runs of a playbook per incident (`guards.max_attempts`).
pub const MAX_GUARD_ATTEMPTS: u32 = 1000;
/// Largest `guards.rate.*.max`.
pub const MAX_RATE_CAP: u32 = 1_000_000;

/// Every semantic problem of a parsed playbook, as `(YAML path, message)`.
pub fn validate(p: &Playbook) -> Vec<(String, String)> {
    let patch_allow: Vec<String> = match p.guards.blast_radius.as_ref().and_then(|b| b.patch_allow.clone()) {
        Some(list) => list,
        None => DEFAULT_PATCH_ALLOW.iter().map(|s| s.to_string()).collect(),
    };
    let mut c = Checker { p, declared: p.params.keys().cloned().collect(), patch_allow, out: Vec::new() };

    if !is_dns_label(&p.name) {
        c.err(
            "name",
            format!("`{}` must be a DNS-1123 label: lower-case letters, digits and `-`, at most 63 characters", p.name),
        );
    }
    for (name, spec) in &p.params {
        let at = format!("params.{name}");
        let ok = name.chars().next().is_some_and(|ch| ch.is_ascii_alphabetic())
            && name.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-');
        if !ok {
            c.err(&at, format!("`{name}` must start with a letter and contain only letters, digits, `_` and `-`"));
        }
        for (field, msg) in check_spec_fields(spec) {
            c.err(join(&at, &field), msg);
        }
    }
    if p.steps.is_empty() {
        c.err("steps", "a playbook needs at least one step");
    }
    c.steps(&p.steps, "steps");
    if let Some(revert) = &p.revert {
        c.steps(revert, "revert");
    }
    c.triggers();
    c.guards(&p.guards);
    c.out
}
