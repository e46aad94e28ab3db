//! `{{ name.path }}` substitution in step arguments, and nothing more.
//!
//! Playbooks act on production clusters, so their arguments must be predictable from the
//! file alone: there are no expressions, conditionals, loops, filters or shell. A template is
//! text with `{{ variable }}` placeholders, each replaced by the variable's text; whitespace
//! inside the braces is allowed. A variable that does not exist is an error (never an empty
//! string), and [`check_names`] lets the loader find such mistakes before any run.
//!
//! Variables are flat dotted names ([`Vars`]); the ones a run provides are listed in
//! [`RUN_VARIABLES`], plus `params.<name>` for every declared parameter and
//! `incident.labels.<label>` / `alert.labels.<label>` for every label.

use std::collections::{BTreeMap, BTreeSet};

use crate::{Error, Result};

/// Template variables by dotted name (`target.name`, `params.step`, `incident.labels.pod`).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Vars(pub BTreeMap<String, String>);

impl Vars {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.0.insert(key.into(), value.into());
    }
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
}

/// Variables every run may provide (besides `params.*` and the label maps).
pub const RUN_VARIABLES: &[&str] = &[
    "target.namespace",
    "target.name",
    "target.kind",
    "incident.id",
    "incident.watch",
    "incident.title",
    "incident.severity",
    "incident.detector",
    "incident.observed",
    "incident.expected",
    "alert.name",
    "run.id",
    "run.playbook",
    "run.trigger",
    "now",
];

/// Prefixes under which any name is accepted at load time (label names are not known
/// before the incident or alert exists).
pub const LABEL_PREFIXES: &[&str] = &["incident.labels.", "alert.labels."];

/// One piece of a parsed template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Piece<'a> {
    Text(&'a str),
    Var(&'a str),
}

fn terr(template: &str, message: impl Into<String>) -> Error {
    Error::Template { template: template.to_string(), message: message.into() }
}

/// Split a template into text and variable names, checking the syntax.
fn parse(template: &str) -> Result<Vec<Piece<'_>>> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        if open > 0 {
            out.push(Piece::Text(&rest[..open]));
        }
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            return Err(terr(template, "`{{` without a closing `}}`"));
        };
        let name = after[..close].trim();
        check_syntax(template, name)?;
        out.push(Piece::Var(name));
        rest = &after[close + 2..];
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest));
    }
    Ok(out)
}

/// A variable name: dotted segments of letters, digits, `_`, `-` and `/` (label names such as
/// `app.kubernetes.io/name` contain dots and slashes).
fn check_syntax(template: &str, name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(terr(template, "empty `{{ }}`: write a variable name such as `{{ target.name }}`"));
    }
    if name.contains("{{") {
        return Err(terr(template, "`{{` inside `{{ ... }}`"));
    }
    if name.contains('|') {
        return Err(terr(
            template,
            format!("`{name}`: filters are not supported, only `{{{{ name.path }}}}` substitution"),
        ));
    }
    let ok_chars = name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'));
    if !ok_chars {
        return Err(terr(
            template,
            format!("`{name}`: expressions are not supported, only `{{{{ name.path }}}}` substitution"),
        ));
    }
    if name.split('.').any(str::is_empty) {
        return Err(terr(template, format!("`{name}`: empty path segment")));
    }
    Ok(())
}

/// The first segment of a dotted name (`params` of `params.step`).
fn namespace(name: &str) -> &str {
    name.split('.').next().unwrap_or(name)
}

/// Render one template; an unknown variable is an error naming it and listing what the
/// variables of its namespace are.
pub fn render(template: &str, vars: &Vars) -> Result<String> {
    let mut out = String::with_capacity(template.len());
    for piece in parse(template)? {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Var(name) => match vars.get(name) {
                Some(v) => out.push_str(v),
                None => return Err(terr(template, unknown_message(name, vars))),
            },
        }
    }
    Ok(out)
}

fn unknown_message(name: &str, vars: &Vars) -> String {
    let ns = namespace(name);
    let prefix = format!("{ns}.");
    let same: Vec<&str> = vars.0.keys().map(String::as_str).filter(|k| *k == ns || k.starts_with(&prefix)).collect();
    if !same.is_empty() {
        return format!("unknown variable `{name}`; available in `{ns}`: {}", same.join(", "));
    }
    let namespaces: BTreeSet<&str> = vars.0.keys().map(|k| namespace(k)).collect();
    if namespaces.is_empty() {
        format!("unknown variable `{name}`; no variables are available here")
    } else {
        format!(
            "unknown variable `{name}`; this run has no `{ns}` variables (available: {})",
            namespaces.into_iter().collect::<Vec<_>>().join(", ")
        )
    }
}

/// Render every string of a YAML tree (map keys included) into JSON; numbers, booleans and
/// nulls are kept as they are. A rendered string stays a string (`replicas: "{{ params.n }}"`
/// gives `"3"`, not `3`). YAML tags are rejected: they have no JSON meaning.
pub fn render_tree(value: &serde_yaml::Value, vars: &Vars) -> Result<serde_json::Value> {
    use serde_json::Value as J;
    use serde_yaml::Value as Y;
    Ok(match value {
        Y::Null => J::Null,
        Y::Bool(b) => J::Bool(*b),
        Y::Number(n) => number(n)?,
        Y::String(s) => J::String(render(s, vars)?),
        Y::Sequence(items) => J::Array(items.iter().map(|i| render_tree(i, vars)).collect::<Result<_>>()?),
        Y::Mapping(m) => {
            let mut out = serde_json::Map::new();
            for (k, v) in m {
                let key = match k {
                    Y::String(s) => render(s, vars)?,
                    Y::Bool(b) => b.to_string(),
                    Y::Number(n) => n.to_string(),
                    other => {
                        return Err(terr(&format!("{other:?}"), "a mapping key must be text, a number or a boolean"))
                    }
                };
                if out.contains_key(&key) {
                    return Err(terr(&key, "two keys render to the same text"));
                }
                out.insert(key, render_tree(v, vars)?);
            }
            J::Object(out)
        }
        Y::Tagged(t) => return Err(terr(&t.tag.to_string(), "YAML tags are not supported")),
    })
}

fn number(n: &serde_yaml::Number) -> Result<serde_json::Value> {
    if let Some(i) = n.as_i64() {
        return Ok(i.into());
    }
    if let Some(u) = n.as_u64() {
        return Ok(u.into());
    }
    n.as_f64()
        .and_then(serde_json::Number::from_f64)
        .map(serde_json::Value::Number)
        .ok_or_else(|| terr(&n.to_string(), "not a finite number"))
}

/// The variables a template references, in order of first appearance.
pub fn referenced(template: &str) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for piece in parse(template)? {
        if let Piece::Var(name) = piece {
            if !out.iter().any(|n| n == name) {
                out.push(name.to_string());
            }
        }
    }
    Ok(out)
}

/// Whether `name` is a variable a run can provide, given the declared parameters.
pub fn is_known(name: &str, declared_params: &BTreeSet<String>) -> bool {
    if RUN_VARIABLES.contains(&name) {
        return true;
    }
    if let Some(p) = name.strip_prefix("params.") {
        return declared_params.contains(p);
    }
    LABEL_PREFIXES.iter().any(|prefix| name.strip_prefix(prefix).is_some_and(|rest| !rest.is_empty()))
}

/// Load-time check: the template parses and every variable it names is one a run provides
/// ([`RUN_VARIABLES`], `params.<declared>`, `incident.labels.*`, `alert.labels.*`).
pub fn check_names(template: &str, declared_params: &BTreeSet<String>) -> Result<()> {
    for name in referenced(template)? {
        if is_known(&name, declared_params) {
            continue;
        }
        let message = if let Some(p) = name.strip_prefix("params.") {
            if declared_params.is_empty() {
                format!("unknown parameter `{p}`: the playbook declares no parameters")
            } else {
                format!(
                    "unknown parameter `{p}`; declared: {}",
                    declared_params.iter().map(String::as_str).collect::<Vec<_>>().join(", ")
                )
            }
        } else {
            let ns = namespace(&name);
            let prefix = format!("{ns}.");
            let mut known: Vec<String> =
                RUN_VARIABLES.iter().filter(|k| **k == ns || k.starts_with(&prefix)).map(|k| k.to_string()).collect();
            known.extend(LABEL_PREFIXES.iter().filter(|p| p.starts_with(&prefix)).map(|p| format!("{p}<label>")));
            if known.is_empty() {
                format!("unknown variable `{name}`; variables start with target., params., incident., alert., run. or are `now`")
            } else {
                format!("unknown variable `{name}`; known in `{ns}`: {}", known.join(", "))
            }
        };
        return Err(terr(template, message));
    }
    Ok(())
}

/// Whether a text contains a template placeholder at all (literals are parsed by type at
/// load time; templates only once a run renders them).
pub fn is_template(text: &str) -> bool {
    text.contains("{{")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        let mut v = Vars::new();
        v.set("target.name", "api");
        v.set("target.namespace", "shop");
        v.set("params.step", "2");
        v.set("incident.labels.app.kubernetes.io/name", "api");
        v
    }

    fn message(e: Error) -> String {
        match e {
            Error::Template { message, .. } => message,
            other => panic!("expected a template error, got {other:?}"),
        }
    }

    #[test]
    fn substitutes_with_and_without_spaces() {
        let v = vars();
        assert_eq!(render("{{target.namespace}}/{{ target.name }}", &v).ok(), Some("shop/api".into()));
        assert_eq!(render("by {{  params.step\t}} now", &v).ok(), Some("by 2 now".into()));
        assert_eq!(render("plain } text }}", &v).ok(), Some("plain } text }}".into()));
        assert_eq!(render("{{ incident.labels.app.kubernetes.io/name }}", &v).ok(), Some("api".into()));
        assert_eq!(render("", &v).ok(), Some(String::new()));
    }

    #[test]
    fn unknown_variables_name_themselves_and_their_namespace() {
        let m = message(render("{{ params.stepp }}", &vars()).unwrap_err());
        assert!(m.contains("params.stepp") && m.contains("params.step"), "{m}");
        let m = message(render("{{ run.id }}", &vars()).unwrap_err());
        assert!(m.contains("run.id") && m.contains("params, target"), "{m}");
    }

    #[test]
    fn syntax_errors() {
        for (t, needle) in [
            ("{{ target.name", "closing"),
            ("{{ }}", "empty"),
            ("{{ params.x | upper }}", "filters"),
            ("{{ a + b }}", "expressions"),
            ("{{ a..b }}", "empty path segment"),
            ("{{ {{ a }} }}", "inside"),
        ] {
            let m = message(referenced(t).unwrap_err());
            assert!(m.contains(needle), "{t}: {m}");
        }
    }

    #[test]
    fn referenced_in_order_without_duplicates() {
        let r = referenced("{{ b }}-{{a}}-{{ b }}").expect("parses");
        assert_eq!(r, ["b", "a"]);
    }

    #[test]
    fn trees_render_keys_and_values_and_keep_scalars() {
        let y: serde_yaml::Value = serde_yaml::from_str(
            "'{{ target.name }}': {n: 3, f: 1.5, b: true, z: null, l: ['x-{{ params.step }}']}\n5: five\n",
        )
        .expect("yaml");
        let j = render_tree(&y, &vars()).expect("renders");
        assert_eq!(j, serde_json::json!({"api": {"n": 3, "f": 1.5, "b": true, "z": null, "l": ["x-2"]}, "5": "five"}));
        let tagged: serde_yaml::Value = serde_yaml::from_str("a: !secret x\n").expect("yaml");
        assert!(message(render_tree(&tagged, &vars()).unwrap_err()).contains("tags"));
        let dup: serde_yaml::Value = serde_yaml::from_str("'{{ target.name }}': 1\napi: 2\n").expect("yaml");
        assert!(message(render_tree(&dup, &vars()).unwrap_err()).contains("same text"));
        let bad: serde_yaml::Value = serde_yaml::from_str("a: '{{ nope }}'\n").expect("yaml");
        assert!(render_tree(&bad, &vars()).is_err());
    }

    #[test]
    fn load_time_name_check() {
        let declared: BTreeSet<String> = ["step".to_string()].into();
        for ok in [
            "{{ params.step }} {{ target.name }} {{ now }}",
            "{{ incident.labels.pod }} {{ alert.labels.app.kubernetes.io/name }} {{ run.id }}",
            "no template at all",
        ] {
            assert!(check_names(ok, &declared).is_ok(), "{ok}");
        }
        let m = message(check_names("{{ params.max }}", &declared).unwrap_err());
        assert!(m.contains("`max`") && m.contains("declared: step"), "{m}");
        let m = message(check_names("{{ target.namespce }}", &declared).unwrap_err());
        assert!(m.contains("target.namespace"), "{m}");
        let m = message(check_names("{{ incident.labels }}", &declared).unwrap_err());
        assert!(m.contains("incident.labels.<label>"), "{m}");
        let m = message(check_names("{{ foo }}", &declared).unwrap_err());
        assert!(m.contains("variables start with"), "{m}");
        assert!(check_names("{{ params.step", &declared).is_err());
    }
}
