//! Loading and checking playbook files, and the catalog of playbooks a daemon serves.
//!
//! A playbook acts on production, so a mistake in one must be found when it is loaded, not
//! halfway through a run at 3 a.m. Loading therefore checks everything that can be checked
//! without a cluster: the shape (serde, with `deny_unknown_fields`), names, that every step
//! has exactly one action, that every template names variables a run provides, that every
//! literal argument parses as its type, that actions fit the playbook's target, that triggers
//! and guards make sense, and that every field a `patch` sets is allowed. Every problem of
//! every file is reported at once, each as `file:line: yaml.path: message`.
//!
//! This module parses; `check` holds the semantic checks (each action checks its own
//! arguments, [`crate::actions::Action::check`]), [`patch_paths`] the paths a patch sets and
//! the allow-list patterns, `catalog` the playbooks a daemon serves.
//!
//! Sequences and maps whose items are independent (`steps`, `revert`, `triggers`, `params`)
//! are deserialized item by item, so a broken step does not hide the errors of the others.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde_yaml::Value;

use crate::spec::{ParamSpec, Playbook, Step, Trigger};
use crate::yaml_index::YamlIndex;
use crate::yaml_load::{deserialize_collect, parse_value, renumber};

/// Field paths `patch` may change when neither the playbook nor the global settings set
/// `patch_allow` (the same list the run-time guard uses).
pub use crate::guards::DEFAULT_PATCH_ALLOW;

/// One problem in a playbook file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    pub file: PathBuf,
    pub line: Option<usize>,
    /// YAML path such as `steps[1].scale.by`; empty for the file itself.
    pub path: String,
    pub message: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found, in file and line order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadErrors(pub Vec<LoadError>);

impl fmt::Display for LoadErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for LoadErrors {}

impl From<LoadErrors> for crate::Error {
    fn from(e: LoadErrors) -> Self {
        crate::Error::Load(e)
    }
}

fn file_error(file: &Path, message: String) -> LoadError {
    LoadError { file: file.to_path_buf(), line: None, path: String::new(), message }
}

mod catalog;
mod check;
mod patch_paths;
#[cfg(test)]
mod tests;

pub use catalog::*;
pub use check::*;
pub use patch_paths::*;

// ---------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------

/// Read and check one playbook file.
pub fn load_file(path: &Path) -> Result<Playbook, LoadErrors> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| LoadErrors(vec![file_error(path, format!("cannot read the file: {e}"))]))?;
    parse_playbook(&text, path)
}

/// Take the items of a top-level sequence out of `value` (leaving an empty one), when it is
/// a sequence; anything else is left for serde to report.
fn take_seq(value: &mut Value, key: &str) -> Option<Vec<Value>> {
    let m = value.as_mapping_mut()?;
    match m.get_mut(Value::String(key.into())) {
        Some(Value::Sequence(items)) => Some(std::mem::take(items)),
        _ => None,
    }
}

/// Deserialize the items of a sequence one by one; returns the parsed items, their original
/// indices, and which original indices had errors.
fn collect_items<T: serde::de::DeserializeOwned>(
    items: Vec<Value>,
    seq: &str,
    found: &mut Vec<(String, String)>,
) -> (Vec<T>, Vec<usize>, BTreeSet<usize>) {
    let mut out = Vec::new();
    let mut index = Vec::new();
    let mut broken = BTreeSet::new();
    for (i, item) in items.into_iter().enumerate() {
        let before = found.len();
        let at = format!("{seq}[{i}]");
        if item.is_null() && found.iter().any(|(p, _)| p == &at || p.starts_with(&format!("{at}."))) {
            // Already reported (and replaced by null) before deserializing.
            broken.insert(i);
            continue;
        }
        if let Some(v) = deserialize_collect::<T>(item, &at, found) {
            out.push(v);
            index.push(i);
        }
        if found.len() > before {
            broken.insert(i);
        }
    }
    (out, index, broken)
}

/// A trigger as written: `- manual` or a mapping with one key naming the kind
/// (`- cron: {...}`). The YAML deserializer (`yaml_serde`, imported as `serde_yaml`) reads externally tagged enums only from YAML tags
/// (`!cron`), so the singleton-map form is converted explicitly.
#[derive(serde::Deserialize)]
struct TriggerItem(#[serde(with = "serde_yaml::with::singleton_map")] Trigger);

const TRIGGER_KINDS: &[&str] = &["incident", "alert", "cron", "manual"];

/// Report a trigger whose kind is unknown or ambiguous (replacing it by null, which serde
/// then rejects without a second message).
fn check_trigger_kind(item: Value, i: usize, found: &mut Vec<(String, String)>) -> Value {
    let kinds = TRIGGER_KINDS.join(", ");
    let problem = match &item {
        Value::String(s) if !TRIGGER_KINDS.contains(&s.as_str()) => {
            Some((format!("triggers[{i}]"), format!("unknown trigger `{s}`; one of {kinds}")))
        }
        Value::Mapping(m) if m.len() != 1 => Some((
            format!("triggers[{i}]"),
            format!("a trigger has exactly one key, its kind ({kinds}); found {}", m.len()),
        )),
        Value::Mapping(m) => match m.keys().next() {
            Some(Value::String(k)) if TRIGGER_KINDS.contains(&k.as_str()) => None,
            Some(Value::String(k)) => {
                Some((format!("triggers[{i}].{k}"), format!("unknown trigger `{k}`; one of {kinds}")))
            }
            _ => Some((format!("triggers[{i}]"), format!("a trigger's key is its kind: one of {kinds}"))),
        },
        Value::String(_) => None,
        _ => Some((
            format!("triggers[{i}]"),
            format!("a trigger is `manual` or a mapping `<kind>: {{...}}` with kind one of {kinds}"),
        )),
    };
    match problem {
        Some(p) => {
            found.push(p);
            Value::Null
        }
        None => item,
    }
}

/// Parse and check playbook text; `file` only names it in errors.
pub fn parse_playbook(text: &str, file: &Path) -> Result<Playbook, LoadErrors> {
    let mk = |line: Option<usize>, path: String, message: String| LoadError {
        file: file.to_path_buf(),
        line,
        path,
        message,
    };
    let mut value = match parse_value(text) {
        Ok(v) => v,
        Err(e) => return Err(LoadErrors(vec![mk(e.line(), String::new(), e.to_string())])),
    };
    let index = YamlIndex::build(text);
    let mut found: Vec<(String, String)> = Vec::new();

    let steps = take_seq(&mut value, "steps");
    let revert = take_seq(&mut value, "revert");
    let triggers = take_seq(&mut value, "triggers");
    let params = match value.as_mapping_mut().and_then(|m| m.get_mut(Value::String("params".into()))) {
        Some(Value::Mapping(m)) => Some(std::mem::take(m)),
        _ => None,
    };

    let base: Option<Playbook> = deserialize_collect(value, "", &mut found);

    let (steps, step_index, step_broken) = collect_items::<Step>(steps.unwrap_or_default(), "steps", &mut found);
    let revert = revert.map(|items| collect_items::<Step>(items, "revert", &mut found));
    let triggers = triggers
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, t)| check_trigger_kind(t, i, &mut found))
        .collect();
    let (triggers, trigger_index, _) = collect_items::<TriggerItem>(triggers, "triggers", &mut found);
    let triggers: Vec<Trigger> = triggers.into_iter().map(|t| t.0).collect();
    let mut specs = BTreeMap::new();
    for (k, v) in params.unwrap_or_default() {
        match k {
            Value::String(name) => {
                if let Some(spec) = deserialize_collect::<ParamSpec>(v, &format!("params.{name}"), &mut found) {
                    specs.insert(name, spec);
                }
            }
            other => found.push(("params".into(), format!("parameter names must be text, found {other:?}"))),
        }
    }

    let parsed = base.map(|mut p| {
        p.steps = steps;
        p.triggers = triggers;
        p.params = specs;
        if let Some((items, _, _)) = &revert {
            p.revert = Some(items.clone());
        }
        p
    });
    if let Some(p) = &parsed {
        let (revert_index, revert_broken) = match &revert {
            Some((_, i, b)) => (i.clone(), b.clone()),
            None => (Vec::new(), BTreeSet::new()),
        };
        for (path, message) in validate(p) {
            let path = renumber(&path, "steps", &step_index);
            let path = renumber(&path, "revert", &revert_index);
            let path = renumber(&path, "triggers", &trigger_index);
            // A step whose action key was a typo already has its error from serde.
            if message.starts_with(NO_ACTION) {
                let broken = |seq: &str, set: &BTreeSet<usize>| set.iter().any(|i| path == format!("{seq}[{i}]"));
                if broken("steps", &step_broken) || broken("revert", &revert_broken) {
                    continue;
                }
            }
            found.push((path, message));
        }
    }
    if found.is_empty() {
        if let Some(p) = parsed {
            return Ok(p);
        }
    }
    let mut errors: Vec<LoadError> =
        found.into_iter().map(|(path, message)| mk(index.line(&path), path, message)).collect();
    errors.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
    errors.dedup();
    Err(LoadErrors(errors))
}

/// Load every `*.yaml` / `*.yml` file of `dir` (not recursive), in file-name order. Every
/// error of every file is reported, as is a playbook name used by two files.
pub fn load_dir(dir: &Path) -> Result<Vec<(PathBuf, Playbook)>, LoadErrors> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| LoadErrors(vec![file_error(dir, format!("cannot read the playbook directory: {e}"))]))?;
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for entry in entries {
        match entry {
            Ok(e) => {
                let path = e.path();
                let is_yaml = matches!(path.extension().and_then(|x| x.to_str()), Some("yaml" | "yml"));
                if is_yaml && path.is_file() {
                    files.push(path);
                }
            }
            Err(e) => errors.push(file_error(dir, format!("cannot list the playbook directory: {e}"))),
        }
    }
    files.sort();
    let mut out: Vec<(PathBuf, Playbook)> = Vec::new();
    for path in files {
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                errors.push(file_error(&path, format!("cannot read the file: {e}")));
                continue;
            }
        };
        match parse_playbook(&text, &path) {
            Ok(p) => {
                if let Some((first, _)) = out.iter().find(|(_, q)| q.name == p.name) {
                    errors.push(LoadError {
                        file: path.clone(),
                        line: YamlIndex::build(&text).line("name"),
                        path: "name".into(),
                        message: format!(
                            "playbook `{}` is also defined in {}; names must be unique",
                            p.name,
                            first.display()
                        ),
                    });
                } else {
                    out.push((path, p));
                }
            }
            Err(LoadErrors(mut e)) => errors.append(&mut e),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(LoadErrors(errors))
    }
}
