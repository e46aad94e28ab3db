//! Typed parameter values: what `--param k=v`, triggers and defaults become before a run.
//!
//! Values arrive as text (the command line, a trigger's YAML, the API) and are checked once,
//! when a run is created, against the playbook's [`ParamSpec`]: the type, the inclusive
//! `min`/`max` bounds and the `allowed` list. A run therefore never starts with a value its
//! playbook did not admit, and the checked values are what the run stores and renders.
//!
//! Durations are kept as [`ParamValue::String`] holding the canonical humantime text
//! (`7d` becomes `7days`, `90s` becomes `1m 30s`): the value renders into templates as that
//! text, round-trips through the run store unchanged (the enum is untagged, so a separate
//! duration variant would come back as a string anyway), and [`ParamValue::as_duration`]
//! parses it back.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::duration::HumanDuration;
use crate::spec::{Arg, ParamSpec, ParamType, Playbook};
use crate::template::Vars;
use crate::{Error, Result, ValueKind};

/// A parameter value, checked against its [`crate::spec::ParamSpec`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum ParamValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    /// Text, and durations as their canonical humantime text.
    String(String),
}

impl ParamValue {
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            ParamValue::Int(i) => Some(*i),
            _ => None,
        }
    }
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            ParamValue::Float(f) => Some(*f),
            ParamValue::Int(i) => Some(*i as f64),
            _ => None,
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            ParamValue::Bool(b) => Some(*b),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            ParamValue::String(s) => Some(s),
            _ => None,
        }
    }
    /// A duration parameter's value.
    pub fn as_duration(&self) -> Option<Duration> {
        self.as_str().and_then(|s| s.parse::<HumanDuration>().ok()).map(HumanDuration::get)
    }
}

impl fmt::Display for ParamValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamValue::Bool(b) => write!(f, "{b}"),
            ParamValue::Int(i) => write!(f, "{i}"),
            ParamValue::Float(x) => write!(f, "{x}"),
            ParamValue::String(s) => f.write_str(s),
        }
    }
}

/// A parsed value with its ordering key, for bounds and `allowed`.
#[derive(Debug, Clone, PartialEq)]
enum Typed {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    Duration(Duration),
}

impl Typed {
    fn into_value(self) -> ParamValue {
        match self {
            Typed::Bool(b) => ParamValue::Bool(b),
            Typed::Int(i) => ParamValue::Int(i),
            Typed::Float(f) => ParamValue::Float(f),
            Typed::Text(s) => ParamValue::String(s),
            Typed::Duration(d) => ParamValue::String(HumanDuration(d).to_string()),
        }
    }

    fn less_than(&self, other: &Typed) -> bool {
        match (self, other) {
            (Typed::Int(a), Typed::Int(b)) => a < b,
            (Typed::Float(a), Typed::Float(b)) => a < b,
            (Typed::Duration(a), Typed::Duration(b)) => a < b,
            _ => false,
        }
    }
}

impl fmt::Display for Typed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Typed::Duration(d) => write!(f, "{}", HumanDuration(*d)),
            other => write!(f, "{}", other.clone().into_value()),
        }
    }
}

fn type_name(t: ParamType) -> &'static str {
    match t {
        ParamType::Int => "int",
        ParamType::Float => "float",
        ParamType::String => "string",
        ParamType::Bool => "bool",
        ParamType::Duration => "duration",
    }
}

/// Parse text as `kind`.
fn parse_typed(kind: ParamType, text: &str) -> Result<Typed> {
    let t = text.trim();
    let bad = |message: String| Error::value(ValueKind::Param, message);
    match kind {
        ParamType::Int => t.parse::<i64>().map(Typed::Int).map_err(|_| bad(format!("`{text}` is not an integer"))),
        ParamType::Float => match t.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(Typed::Float(f)),
            _ => Err(bad(format!("`{text}` is not a finite number"))),
        },
        ParamType::Bool => match t {
            "true" => Ok(Typed::Bool(true)),
            "false" => Ok(Typed::Bool(false)),
            _ => Err(bad(format!("`{text}` is not true or false"))),
        },
        ParamType::String => Ok(Typed::Text(text.to_string())),
        ParamType::Duration => t.parse::<HumanDuration>().map(|d| Typed::Duration(d.get())),
    }
}

fn bounded(kind: ParamType) -> bool {
    matches!(kind, ParamType::Int | ParamType::Float | ParamType::Duration)
}

/// Parse and check one value against its spec (bounds, `allowed`). The spec's own fields are
/// assumed valid (see [`check_spec`]); ones that do not parse are ignored here.
pub fn check_value(spec: &ParamSpec, text: &str) -> Result<ParamValue> {
    let bad = |message: String| Error::value(ValueKind::Param, message);
    let v = parse_typed(spec.kind, text)?;
    if bounded(spec.kind) {
        if let Some(min) = spec.min.as_ref().and_then(|m| parse_typed(spec.kind, m.as_str()).ok()) {
            if v.less_than(&min) {
                return Err(bad(format!("{v} is below the minimum {min}")));
            }
        }
        if let Some(max) = spec.max.as_ref().and_then(|m| parse_typed(spec.kind, m.as_str()).ok()) {
            if max.less_than(&v) {
                return Err(bad(format!("{v} is above the maximum {max}")));
            }
        }
    }
    if let Some(allowed) = &spec.allowed {
        let parsed: Vec<Typed> = allowed.iter().filter_map(|a| parse_typed(spec.kind, a.as_str()).ok()).collect();
        if !parsed.contains(&v) {
            let list: Vec<String> = parsed.iter().map(|a| a.to_string()).collect();
            return Err(bad(format!("{v} is not one of the allowed values: {}", list.join(", "))));
        }
    }
    Ok(v.into_value())
}

/// Check given values (`--param k=v`, trigger params) and fill in defaults. The first
/// problem, in parameter-name order, is the error: an unknown name (with the declared
/// ones), a missing required parameter, or a value of the wrong type or out of bounds.
pub fn resolve_params(playbook: &Playbook, given: &BTreeMap<String, String>) -> Result<BTreeMap<String, ParamValue>> {
    for name in given.keys() {
        if !playbook.params.contains_key(name) {
            let declared: Vec<&str> = playbook.params.keys().map(String::as_str).collect();
            let message = if declared.is_empty() {
                format!("unknown parameter: playbook `{}` declares none", playbook.name)
            } else {
                format!("unknown parameter of playbook `{}`; declared: {}", playbook.name, declared.join(", "))
            };
            return Err(Error::Param { name: name.clone(), message });
        }
    }
    let mut out = BTreeMap::new();
    for (name, spec) in &playbook.params {
        let (text, origin) = match (given.get(name), &spec.default) {
            (Some(v), _) => (v.as_str(), ""),
            (None, Some(d)) => (d.as_str(), " (the default)"),
            (None, None) => {
                return Err(Error::Param {
                    name: name.clone(),
                    message: format!("required: give it with `--param {name}=<{}>`", type_name(spec.kind)),
                })
            }
        };
        let value = check_value(spec, text)
            .map_err(|m| Error::Param { name: name.clone(), message: format!("{m}{origin}") })?;
        out.insert(name.clone(), value);
    }
    Ok(out)
}

/// Load-time check of one parameter declaration: `default`, `min`, `max` and `allowed` parse
/// as the type, bounds only on `int`/`float`/`duration`, `min <= max`, and the default within
/// bounds and allowed. Each finding is `(field, message)` with the field relative to the
/// parameter (`default`, `min`, `allowed[1]`, or empty for the declaration).
pub fn check_spec_fields(spec: &ParamSpec) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let kind = type_name(spec.kind);
    let mut parse_field = |field: String, arg: &Arg| match parse_typed(spec.kind, arg.as_str()) {
        Ok(v) => Some(v),
        Err(e) => {
            out.push((field, format!("{e} (the parameter's type is {kind})")));
            None
        }
    };
    let default = spec.default.as_ref().and_then(|d| parse_field("default".into(), d));
    let min = spec.min.as_ref().and_then(|m| parse_field("min".into(), m));
    let max = spec.max.as_ref().and_then(|m| parse_field("max".into(), m));
    let mut allowed_ok = true;
    if let Some(allowed) = &spec.allowed {
        for (i, a) in allowed.iter().enumerate() {
            allowed_ok &= parse_field(format!("allowed[{i}]"), a).is_some();
        }
    }
    if !bounded(spec.kind) {
        for (field, present) in [("min", spec.min.is_some()), ("max", spec.max.is_some())] {
            if present {
                out.push((field.into(), format!("bounds apply to int, float and duration parameters, not {kind}")));
            }
        }
    }
    if let Some(allowed) = &spec.allowed {
        if allowed.is_empty() {
            out.push(("allowed".into(), "must list at least one value (or be left out)".into()));
        }
    }
    if let (Some(lo), Some(hi)) = (&min, &max) {
        if hi.less_than(lo) {
            out.push(("max".into(), format!("{hi} is below min {lo}")));
        }
    }
    if let (Some(_), Some(text)) = (&default, &spec.default) {
        // Only when the bounds themselves parsed: otherwise their own error says it all.
        let bounds_ok = min.is_some() == spec.min.is_some() && max.is_some() == spec.max.is_some();
        if bounds_ok && allowed_ok {
            if let Err(e) = check_value(spec, text.as_str()) {
                out.push(("default".into(), e.to_string()));
            }
        }
    }
    out
}

/// [`check_spec_fields`] as messages naming the field (`min: ...`).
pub fn check_spec(spec: &ParamSpec) -> Vec<String> {
    check_spec_fields(spec)
        .into_iter()
        .map(|(field, msg)| if field.is_empty() { msg } else { format!("{field}: {msg}") })
        .collect()
}

/// Expose resolved parameters as `params.<name>` template variables.
pub fn to_vars(params: &BTreeMap<String, ParamValue>, vars: &mut Vars) {
    for (name, value) in params {
        vars.set(format!("params.{name}"), value.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn playbook(params: &str) -> Playbook {
        serde_yaml::from_str(&format!("name: p\nparams:\n{params}\nsteps: [{{wait: {{for: 1s}}}}]\n"))
            .expect("playbook")
    }

    fn given(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn param_err(e: Error) -> (String, String) {
        match e {
            Error::Param { name, message } => (name, message),
            other => panic!("expected a param error, got {other:?}"),
        }
    }

    const SPECS: &str = "  step: {type: int, default: 1, min: 1, max: 10}\n  ratio: {type: float, default: 0.5, max: 1}\n  window: {type: duration, default: 7d, min: 1h}\n  query: {type: string}\n  mode: {type: string, default: fast, allowed: [fast, safe]}\n  dry: {type: bool, default: false}\n";

    #[test]
    fn defaults_fill_in_and_values_parse_by_type() {
        let p = playbook(SPECS);
        let r = resolve_params(&p, &given(&[("query", "up"), ("step", "3"), ("dry", "true")])).expect("valid");
        assert_eq!(r["step"], ParamValue::Int(3));
        assert_eq!(r["ratio"], ParamValue::Float(0.5));
        assert_eq!(r["window"], ParamValue::String("7days".into()));
        assert_eq!(r["window"].as_duration(), Some(Duration::from_secs(7 * 86400)));
        assert_eq!(r["mode"], ParamValue::String("fast".into()));
        assert_eq!(r["dry"], ParamValue::Bool(true));
        let mut v = Vars::new();
        to_vars(&r, &mut v);
        assert_eq!(v.get("params.window"), Some("7days"));
        assert_eq!(v.get("params.step"), Some("3"));
        assert_eq!(v.get("params.query"), Some("up"));
        let r = resolve_params(&p, &given(&[("query", "up"), ("window", "90m")])).expect("valid");
        assert_eq!(r["window"].to_string(), "1h 30m");
    }

    #[test]
    fn unknown_missing_wrong_type_and_out_of_bounds() {
        let p = playbook(SPECS);
        let (n, m) = param_err(resolve_params(&p, &given(&[("query", "up"), ("stpe", "2")])).unwrap_err());
        assert_eq!(n, "stpe");
        assert!(m.contains("declared: dry, mode, query, ratio, step, window"), "{m}");
        let (n, m) = param_err(resolve_params(&p, &given(&[])).unwrap_err());
        assert_eq!(n, "query");
        assert!(m.contains("required"), "{m}");
        for (k, v, needle) in [
            ("step", "two", "not an integer"),
            ("step", "0", "below the minimum 1"),
            ("step", "11", "above the maximum 10"),
            ("ratio", "1.5", "above the maximum 1"),
            ("ratio", "NaN", "finite"),
            ("window", "30m", "below the minimum 1h"),
            ("window", "5 parsecs", "invalid duration"),
            ("mode", "yolo", "allowed values: fast, safe"),
            ("dry", "yes", "true or false"),
        ] {
            let (n, m) = param_err(resolve_params(&p, &given(&[("query", "up"), (k, v)])).unwrap_err());
            assert_eq!(n, k);
            assert!(m.contains(needle), "{k}={v}: {m}");
        }
        let (_, m) =
            param_err(resolve_params(&playbook("  a: {type: int, default: 20, max: 10}"), &given(&[])).unwrap_err());
        assert!(m.contains("(the default)"), "{m}");
    }

    #[test]
    fn spec_checks() {
        let p = playbook(SPECS);
        for spec in p.params.values() {
            assert!(check_spec(spec).is_empty(), "{spec:?}: {:?}", check_spec(spec));
        }
        let bad = playbook(
            "  a: {type: int, default: x, min: 5, max: 1}\n  b: {type: string, min: a}\n  c: {type: duration, default: 1m, min: 5m}\n  d: {type: int, allowed: [1, two]}\n  e: {type: int, default: 3, allowed: [1, 2]}\n  f: {type: bool, allowed: []}\n",
        );
        let got = |n: &str| check_spec(&bad.params[n]);
        assert_eq!(got("a"), ["default: `x` is not an integer (the parameter's type is int)", "max: 1 is below min 5"]);
        assert_eq!(got("b"), ["min: bounds apply to int, float and duration parameters, not string"]);
        assert_eq!(got("c"), ["default: 1m is below the minimum 5m"]);
        assert_eq!(got("d"), ["allowed[1]: `two` is not an integer (the parameter's type is int)"]);
        assert_eq!(got("e"), ["default: 3 is not one of the allowed values: 1, 2"]);
        assert_eq!(got("f"), ["allowed: must list at least one value (or be left out)"]);
    }

    #[test]
    fn display_and_serde_round_trip() {
        for v in [ParamValue::Int(3), ParamValue::Float(0.5), ParamValue::Bool(true), ParamValue::String("5m".into())] {
            let j = serde_json::to_string(&v).expect("json");
            assert_eq!(serde_json::from_str::<ParamValue>(&j).ok(), Some(v.clone()), "{j}");
        }
        assert_eq!(ParamValue::Float(2.0).to_string(), "2");
    }
}
