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
//! Sequences and maps whose items are independent (`steps`, `revert`, `triggers`, `params`)
//! are deserialized item by item, so a broken step does not hide the errors of the others.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde_yaml::Value;

use crate::params::{check_spec_fields, check_value};
use crate::schedule::{parse_timezone, CronSchedule};
use crate::spec::{Arg, Guards, ParamSpec, ParamType, Playbook, Step, StepAction, TargetKind, Trigger, ACTION_KEYS};
use crate::template::{self, check_names};
use crate::yaml_index::YamlIndex;
use crate::yaml_load::{deserialize_collect, join, parse_value, renumber};

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
/// (`- cron: {...}`). serde_yaml 0.9 reads externally tagged enums only from YAML tags
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
        Value::Mapping(m) if m.len() != 1 => {
            Some((format!("triggers[{i}]"), format!("a trigger has exactly one key, its kind ({kinds}); found {}", m.len())))
        }
        Value::Mapping(m) => match m.keys().next() {
            Some(Value::String(k)) if TRIGGER_KINDS.contains(&k.as_str()) => None,
            Some(Value::String(k)) => Some((format!("triggers[{i}].{k}"), format!("unknown trigger `{k}`; one of {kinds}"))),
            _ => Some((format!("triggers[{i}]"), format!("a trigger's key is its kind: one of {kinds}"))),
        },
        Value::String(_) => None,
        _ => Some((format!("triggers[{i}]"), format!("a trigger is `manual` or a mapping `<kind>: {{...}}` with kind one of {kinds}"))),
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
    let mk = |line: Option<usize>, path: String, message: String| LoadError { file: file.to_path_buf(), line, path, message };
    let mut value = match parse_value(text) {
        Ok(v) => v,
        Err((line, message)) => return Err(LoadErrors(vec![mk(line, String::new(), message)])),
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
    let triggers = triggers.unwrap_or_default().into_iter().enumerate().map(|(i, t)| check_trigger_kind(t, i, &mut found)).collect();
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
                let broken = |seq: &str, set: &BTreeSet<usize>| {
                    set.iter().any(|i| path == format!("{seq}[{i}]"))
                };
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
    let mut errors: Vec<LoadError> = found.into_iter().map(|(path, message)| mk(index.line(&path), path, message)).collect();
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
                        message: format!("playbook `{}` is also defined in {}; names must be unique", p.name, first.display()),
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

// ---------------------------------------------------------------------------------------
// Catalog
// ---------------------------------------------------------------------------------------

/// Where a playbook of the catalog comes from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "path")]
pub enum Source {
    /// Shipped with Warden ([`crate::builtin`]).
    Builtin,
    /// A file of the playbook directory (replacing a built-in of the same name, if any).
    File(PathBuf),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Builtin => f.write_str("built-in"),
            Source::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// One playbook of the catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogEntry {
    pub playbook: Playbook,
    pub source: Source,
}

/// The playbooks a daemon serves, by name: the built-ins, replaced or extended by the files
/// of the playbook directory.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Catalog {
    entries: BTreeMap<String, CatalogEntry>,
}

impl Catalog {
    /// The built-ins plus the playbooks of `dir` (when given). A file defining a built-in's
    /// name replaces the built-in; all errors of all files are reported together.
    pub fn load(dir: Option<&Path>) -> Result<Catalog, LoadErrors> {
        let mut catalog = Self::builtin()?;
        if let Some(dir) = dir {
            for (path, playbook) in load_dir(dir)? {
                catalog.insert(playbook, Source::File(path));
            }
        }
        Ok(catalog)
    }

    /// Only the built-in playbooks.
    pub fn builtin() -> Result<Catalog, LoadErrors> {
        let mut catalog = Catalog::default();
        let mut errors = Vec::new();
        for (file, text) in crate::builtin::builtins() {
            match parse_playbook(text, &Path::new("builtin").join(file)) {
                Ok(p) => catalog.insert(p, Source::Builtin),
                Err(LoadErrors(mut e)) => errors.append(&mut e),
            }
        }
        if errors.is_empty() {
            Ok(catalog)
        } else {
            Err(LoadErrors(errors))
        }
    }

    /// Add or replace a playbook (checked by the caller).
    pub fn insert(&mut self, playbook: Playbook, source: Source) {
        self.entries.insert(playbook.name.clone(), CatalogEntry { playbook, source });
    }

    pub fn get(&self, name: &str) -> Option<&Playbook> {
        self.entries.get(name).map(|e| &e.playbook)
    }

    pub fn entry(&self, name: &str) -> Option<&CatalogEntry> {
        self.entries.get(name)
    }

    pub fn source(&self, name: &str) -> Option<&Source> {
        self.entries.get(name).map(|e| &e.source)
    }

    /// Every playbook, by name.
    pub fn iter(&self) -> impl Iterator<Item = &CatalogEntry> {
        self.entries.values()
    }

    pub fn names(&self) -> Vec<&str> {
        self.entries.keys().map(String::as_str).collect()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

// ---------------------------------------------------------------------------------------
// Patch paths
// ---------------------------------------------------------------------------------------

/// One segment of a patch path or pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PSeg {
    Key(String),
    /// `*` in a pattern.
    Any,
    /// `[]`: an item of a list.
    Items,
}

/// A key as a path segment: quoted (`"prometheus.io/scrape"`) when it contains characters
/// of the path syntax, so that a dotted annotation key stays one segment.
fn key_segment(k: &str) -> String {
    let plain = !k.is_empty() && k != "*" && !k.contains(['.', '[', ']', '"', '\\']);
    if plain {
        k.to_string()
    } else {
        format!("\"{}\"", k.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

fn push_key(path: &str, k: &str) -> String {
    join(path, &key_segment(k))
}

/// Split a path or pattern into segments.
fn parse_path(s: &str) -> Result<Vec<PSeg>, String> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    if chars.is_empty() {
        return Err("empty path".into());
    }
    loop {
        // One key (quoted or bare), then any number of `[]`.
        if chars.get(i) == Some(&'"') {
            let mut key = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err("unterminated quoted key".into()),
                    Some('\\') => {
                        let Some(c) = chars.get(i + 1) else { return Err("unterminated quoted key".into()) };
                        key.push(*c);
                        i += 2;
                    }
                    Some('"') => {
                        i += 1;
                        break;
                    }
                    Some(c) => {
                        key.push(*c);
                        i += 1;
                    }
                }
            }
            out.push(PSeg::Key(key));
        } else {
            let start = i;
            while let Some(c) = chars.get(i) {
                if matches!(c, '.' | '[' | ']' | '"') {
                    break;
                }
                i += 1;
            }
            let key: String = chars[start..i].iter().collect();
            if key.is_empty() {
                return Err(format!("empty segment at character {}", start + 1));
            }
            out.push(if key == "*" { PSeg::Any } else { PSeg::Key(key) });
        }
        while chars.get(i) == Some(&'[') {
            if chars.get(i + 1) != Some(&']') {
                return Err("`[` must be followed by `]` (list items are written `name[]`)".into());
            }
            out.push(PSeg::Items);
            i += 2;
        }
        match chars.get(i) {
            None => return Ok(out),
            Some('.') if i + 1 < chars.len() => i += 1,
            Some('.') => return Err("ends with `.`".into()),
            Some(c) => return Err(format!("unexpected `{c}` at character {}", i + 1)),
        }
    }
}

/// Check an allow-list pattern (`spec.template.spec.containers[].env[].value`, `*` for one
/// segment, keys with dots quoted: `annotations."prometheus.io/scrape"`).
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    let segs = parse_path(pattern)?;
    if segs.first() == Some(&PSeg::Items) {
        return Err("cannot start with `[]`".into());
    }
    Ok(())
}

fn seg_matches(pattern: &PSeg, path: &PSeg) -> bool {
    match (pattern, path) {
        (PSeg::Any, PSeg::Key(_)) => true,
        (PSeg::Key(a), PSeg::Key(b)) => a == b,
        (PSeg::Items, PSeg::Items) => true,
        _ => false,
    }
}

fn prefix_matches(pattern: &[PSeg], path: &[PSeg]) -> bool {
    pattern.len() >= path.len() && pattern.iter().zip(path).all(|(a, b)| seg_matches(a, b))
}

/// Whether a patch path (as [`patch_paths`] writes it) matches one of the patterns. `*`
/// matches one key, `[]` a list item; the merge key `name` of a list item is allowed
/// wherever a pattern reaches inside that item (it only says which item is patched).
pub fn path_allowed<S: AsRef<str>>(path: &str, patterns: &[S]) -> bool {
    let Ok(segs) = parse_path(path) else { return false };
    let parsed: Vec<Vec<PSeg>> = patterns.iter().filter_map(|p| parse_path(p.as_ref()).ok()).collect();
    if parsed.iter().any(|p| p.len() == segs.len() && prefix_matches(p, &segs)) {
        return true;
    }
    if let [item @ .., PSeg::Key(k)] = segs.as_slice() {
        if k == "name" && item.last() == Some(&PSeg::Items) {
            return parsed.iter().any(|p| p.len() > item.len() && prefix_matches(p, item));
        }
    }
    false
}

/// The leaf paths a strategic-merge patch sets, sorted: keys joined by `.`, list items as
/// `[]` (`spec.template.spec.containers[].env[].value`), keys containing `.` quoted. An
/// empty mapping or list is a leaf itself (it replaces or clears what is there).
pub fn patch_paths(patch: &serde_json::Value) -> Vec<String> {
    fn walk(v: &serde_json::Value, path: String, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) if !m.is_empty() => {
                for (k, child) in m {
                    walk(child, push_key(&path, k), out);
                }
            }
            serde_json::Value::Array(items) => {
                let p = format!("{path}[]");
                for item in items {
                    walk(item, p.clone(), out);
                }
                if items.is_empty() {
                    out.push(p);
                }
            }
            _ => out.push(path),
        }
    }
    let mut out = Vec::new();
    walk(patch, String::new(), &mut out);
    out.sort();
    out.dedup();
    out
}

/// Leaves of a YAML patch as `(YAML path with indices, patch path)`, for load-time errors
/// with a line. Tags are reported as errors.
pub(crate) fn yaml_leaves(v: &Value, yaml_path: String, patch_path: String, out: &mut Vec<(String, String)>, errs: &mut Vec<(String, String)>) {
    match v {
        Value::Mapping(m) if !m.is_empty() => {
            for (k, child) in m {
                let key = match k {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => {
                        errs.push((yaml_path.clone(), "mapping keys must be text".into()));
                        continue;
                    }
                };
                yaml_leaves(child, join(&yaml_path, &key), push_key(&patch_path, &key), out, errs);
            }
        }
        Value::Sequence(items) => {
            let p = format!("{patch_path}[]");
            if items.is_empty() {
                out.push((yaml_path.clone(), p.clone()));
            }
            for (i, item) in items.iter().enumerate() {
                yaml_leaves(item, format!("{yaml_path}[{i}]"), p.clone(), out, errs);
            }
        }
        Value::Tagged(t) => errs.push((yaml_path, format!("YAML tags (`{}`) are not supported", t.tag))),
        _ => out.push((yaml_path, patch_path)),
    }
}

// ---------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------

const NO_ACTION: &str = "a step needs exactly one action";

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
pub fn check_http_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("`{url}` must start with http:// or https://"))?;
    if url.chars().any(char::is_whitespace) {
        return Err(format!("`{url}` contains whitespace"));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(format!("`{url}` carries credentials; send them in a header instead"));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        match v6.split_once(']') {
            Some((h, p)) => (h, p.strip_prefix(':')),
            None => return Err(format!("`{url}`: unterminated IPv6 address")),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(format!("`{url}` has no host"));
    }
    if !host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | ':')) {
        return Err(format!("`{url}`: invalid host `{host}`"));
    }
    if let Some(p) = port {
        if p.parse::<u16>().map_or(true, |n| n == 0) {
            return Err(format!("`{url}`: invalid port `{p}`"));
        }
    }
    Ok(())
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

/// Which template namespaces a place may use besides the always-present `run.*` and `now`.
#[derive(Debug, Clone, Copy)]
struct Scope {
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
                    (TargetKind::Node, "target.namespace") => Some("`target.namespace`: a node target has no namespace".into()),
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
        let Some(name) = text.trim().strip_prefix("{{").and_then(|r| r.strip_suffix("}}")).map(str::trim) else { return };
        let Some(p) = name.strip_prefix("params.") else { return };
        if let Some(spec) = self.p.params.get(p) {
            if spec.kind != want {
                self.err(path, format!("parameter `{p}` is {}, this argument needs {}", type_name(spec.kind), type_name(want)));
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
                    self.err(path, e);
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
                    self.err(&at, format!("a step has exactly one action; found {}: split it into steps", keys.join(", ")));
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
                format!("`{key}` acts on a Deployment: the playbook needs `target: deployment` (it has `target: {}`)", self.p.target),
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
                    self.err(path, e);
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
                            self.err(format!("{at}.severity[{k}]"), format!("`{s}` is not a severity: warning or critical"));
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
                                self.err(format!("{at}.timezone"), e);
                                false
                            }
                        },
                        None => true,
                    };
                    if tz_ok {
                        if let Err(e) = CronSchedule::parse(&c.schedule, c.timezone.as_deref()) {
                            self.err(format!("{at}.schedule"), e);
                        }
                    }
                    match (self.p.target, &c.target) {
                        (TargetKind::None, Some(_)) => self.err(format!("{at}.target"), "the playbook has `target: none`"),
                        (TargetKind::Deployment, None) => self.err(&at, "needs `target: namespace/deployment`"),
                        (TargetKind::Node, None) => self.err(&at, "needs `target:` (a node name)"),
                        (TargetKind::Deployment, Some(t)) => {
                            let ok = t.split_once('/').is_some_and(|(ns, name)| is_dns_label(ns) && is_dns_subdomain(name));
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
                let msg = if n == 0 { "must be at least 1".to_string() } else { format!("{n} is outside 1..={MAX_GUARD_ATTEMPTS}") };
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
                        self.err(format!("guards.blast_radius.namespaces_allow[{i}]"), format!("`{ns}` is also in namespaces_deny"));
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
        c.err("name", format!("`{}` must be a DNS-1123 label: lower-case letters, digits and `-`, at most 63 characters", p.name));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<LoadError> {
        parse_playbook(text, Path::new("p.yaml")).expect_err("must be invalid").0
    }

    /// `(line, path)` of every error, with the message containing `needle` for `path`.
    fn has(errs: &[LoadError], line: usize, path: &str, needle: &str) {
        assert!(
            errs.iter().any(|e| e.line == Some(line) && e.path == path && e.message.contains(needle) && e.file == Path::new("p.yaml")),
            "no error at line {line} path {path} containing {needle:?} in:\n{}",
            LoadErrors(errs.to_vec())
        );
    }

    const VALID: &str = "\
name: scale-api
description: Scale the API.
target: deployment
params:
  step: {type: int, default: 2, min: 1, max: 5}
  query: {type: string, default: 'up == 1'}
triggers:
  - incident: {watch: api-latency, severity: [critical], params: {step: '3'}}
  - alert: {labels: {alertname: HighLatency}}
  - cron: {schedule: '0 0 3 * * *', timezone: Europe/Berlin, target: shop/api}
guards:
  autonomy: auto
  cooldown: 10m
  rate: {global: {max: 3, per: 1h}}
  blast_radius: {max_replica_change_percent: 50, max_pods_deleted: 2}
steps:
  - name: up
    scale: {by: '{{ params.step }}', max: 10}
  - patch:
      patch:
        spec:
          template:
            metadata:
              annotations: {warden.io/reason: '{{ incident.title }}', \"prometheus.io/scrape\": 'true'}
            spec:
              containers:
                - name: api
                  resources: {limits: {memory: 1Gi}}
                  env: [{name: MODE, value: safe}]
  - delete_pod: {selector: 'app=api', max: 2}
  - run_job:
      name_prefix: warm
      spec: {backoffLimit: 0, template: {spec: {restartPolicy: Never, containers: [{name: w, image: 'busybox', args: ['{{ run.id }}']}]}}}
      timeout: 10m
  - http: {url: 'https://hooks.example.com/x', method: post, headers: {X-Run: '{{ run.id }}'}, body: {text: '{{ target.name }}'}, expect_status: [200, 202]}
  - wait: {for: 1m}
  - verify: {query: '{{ params.query }}', for: 5m, step: 30s}
  - notify: {message: 'scaled {{ target.namespace }}/{{ target.name }} at {{ now }}'}
revert:
  - scale: {to: 2}
";

    #[test]
    fn a_valid_playbook_loads() {
        let p = parse_playbook(VALID, Path::new("p.yaml")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.name, "scale-api");
        assert_eq!(p.steps.len(), 8);
        assert_eq!(p.triggers.len(), 3);
        assert_eq!(p.revert.as_ref().map(Vec::len), Some(1));
        assert_eq!(p.params["step"].kind, ParamType::Int);
    }

    #[test]
    fn syntax_errors_have_a_line_and_no_path() {
        let e = errors("name: x\nsteps: [\n");
        assert_eq!(e.len(), 1);
        assert!(e[0].line.is_some() && e[0].path.is_empty() && e[0].message.starts_with("invalid YAML"), "{e:?}");
        assert!(e[0].to_string().starts_with("p.yaml:"), "{}", e[0]);
    }

    #[test]
    fn unknown_keys_and_bad_values_come_from_serde_with_paths() {
        let text = "name: x\ncolour: red\nguards: {cooldown: 5 parsecs}\nsteps:\n  - scale: {by: 1, maximum: 3}\n  - wait: {for: 30}\n  - scael: {by: 1}\ntriggers:\n  - webhook: {}\nparams:\n  a: {type: integer}\n";
        let e = errors(text);
        has(&e, 2, "colour", "unknown field `colour`");
        has(&e, 3, "guards.cooldown", "invalid duration");
        has(&e, 5, "steps[0].scale.maximum", "unknown field `maximum`");
        has(&e, 6, "steps[1].wait.for", "unit is required");
        has(&e, 7, "steps[2].scael", "unknown field `scael`");
        has(&e, 9, "triggers[0].webhook", "unknown trigger `webhook`; one of incident, alert, cron, manual");
        assert_eq!(e.iter().filter(|x| x.path.starts_with("triggers")).count(), 1, "{e:?}");
        has(&e, 11, "params.a.type", "unknown variant `integer`");
        // The typo'd action is not reported a second time as "no action".
        assert!(!e.iter().any(|x| x.path == "steps[2]"), "{e:?}");
        // In line order.
        let lines: Vec<usize> = e.iter().filter_map(|x| x.line).collect();
        assert!(lines.windows(2).all(|w| w[0] <= w[1]), "{lines:?}");
    }

    #[test]
    fn missing_fields() {
        let e = errors("description: no name\nsteps:\n  - verify: {query: up}\n");
        let name = e.iter().find(|x| x.path == "name" && x.message.contains("missing field `name`"));
        assert!(name.is_some_and(|x| x.line.is_none() && x.to_string().starts_with("p.yaml: name: ")), "{e:?}");
        has(&e, 3, "steps[0].verify.for", "missing field `for`");
        let e = errors("name: x\n");
        assert!(e.iter().any(|x| x.path == "steps" && x.message.contains("missing field")), "{e:?}");
    }

    #[test]
    fn names_actions_and_step_names() {
        let text = "name: Scale_API\nsteps:\n  - name: a\n    wait: {for: 1s}\n  - name: a\n    restart: {}\n  - {}\n  - scale: {by: 1}\n    restart: {}\n  - name: 6-wait\n    wait: {for: 1s}\n  - wait: {for: 1s}\n";
        let e = errors(text);
        has(&e, 1, "name", "DNS-1123");
        has(&e, 5, "steps[1].name", "already used by steps[0]");
        has(&e, 7, "steps[2]", "exactly one action; allowed: scale, rollback");
        has(&e, 8, "steps[3]", "found scale, restart");
        has(&e, 12, "steps[5]", "`6-wait` is already used by steps[4]");
        assert!(!e.iter().any(|x| x.path == "steps[4].name"), "{e:?}");
        let e = errors("name: x\nsteps: []\n");
        has(&e, 2, "steps", "at least one step");
    }

    #[test]
    fn templates_are_checked_where_they_are() {
        let text = "name: x\nparams:\n  step: {type: int, default: 1}\n  q: {type: string, default: up}\nsteps:\n  - scale: {by: '{{ params.stepp }}'}\n  - scale: {to: '{{ params.q }}'}\n  - notify: {message: 'hi {{ targt.name }}'}\n  - http:\n      url: 'https://x/{{ run.id'\n      headers: {X-A: '{{ alert.labels.team }}', X-B: '{{ run.nope }}'}\n      body: {a: ['{{ incident.labels.pod }}', '{{ param.x }}']}\n  - run_job:\n      name_prefix: j\n      spec: {template: {spec: {containers: [{name: c, image: '{{ params.image }}'}]}}}\n      timeout: 1m\n";
        let e = errors(text);
        has(&e, 6, "steps[0].scale.by", "unknown parameter `stepp`; declared: q, step");
        has(&e, 7, "steps[1].scale.to", "parameter `q` is string");
        has(&e, 8, "steps[2].notify.message", "unknown variable `targt.name`");
        has(&e, 10, "steps[3].http.url", "without a closing");
        has(&e, 11, "steps[3].http.headers.X-B", "known in `run`: run.id, run.playbook, run.trigger");
        has(&e, 12, "steps[3].http.body.a[1]", "unknown variable `param.x`");
        has(&e, 15, "steps[4].run_job.spec.template.spec.containers[0].image", "unknown parameter `image`");
        assert_eq!(e.len(), 7, "{e:?}");
    }

    #[test]
    fn literal_arguments_parse_as_their_type() {
        let text = "name: x\nsteps:\n  - scale: {to: three, by: 1, min: 5, max: 2}\n  - scale: {}\n  - scale: {by: 0}\n  - rollback: {to_revision: 0}\n  - delete_pod: {name: web-1, selector: app=web, max: 0}\n  - delete_pod: {}\n  - http: {url: 'ftp://x', method: FETCH, expect_status: [200, 600]}\n  - http: {url: 'https://user:pw@x'}\n  - wait: {for: 0s}\n  - verify: {query: up, for: 1m, step: 2m}\n  - run_job: {name_prefix: Bad_Prefix, spec: [a], timeout: 1m}\n  - run_job: {name_prefix: j, spec: {backoffLimit: 0}, timeout: 1m, poll: 2m}\n";
        let e = errors(text);
        has(&e, 3, "steps[0].scale", "exclude each other");
        has(&e, 3, "steps[0].scale.to", "`three` is not a whole number");
        has(&e, 3, "steps[0].scale.max", "2 is below min 5");
        has(&e, 4, "steps[1].scale", "needs `to`");
        has(&e, 5, "steps[2].scale.by", "must not be 0");
        has(&e, 6, "steps[3].rollback.to_revision", "at least 1");
        has(&e, 7, "steps[4].delete_pod", "`name` and `selector` exclude each other");
        has(&e, 7, "steps[4].delete_pod.max", "at least 1");
        has(&e, 8, "steps[5].delete_pod", "needs `name`");
        has(&e, 9, "steps[6].http.url", "http:// or https://");
        has(&e, 9, "steps[6].http.method", "GET, POST, PUT, PATCH, DELETE");
        has(&e, 9, "steps[6].http.expect_status[1]", "600");
        has(&e, 10, "steps[7].http.url", "credentials");
        has(&e, 11, "steps[8].wait.for", "greater than 0");
        has(&e, 12, "steps[9].verify.step", "longer than the window");
        has(&e, 13, "steps[10].run_job.name_prefix", "DNS-1123");
        has(&e, 13, "steps[10].run_job.spec", "must be a mapping");
        has(&e, 14, "steps[11].run_job.spec", "needs `template`");
        has(&e, 14, "steps[11].run_job.poll", "longer than `timeout`");
    }

    #[test]
    fn counts_and_windows_are_bounded() {
        let text = "name: x\nguards:\n  max_attempts: 4294967295\n  rate: {global: {max: 4294967295, per: 1h}}\n  blast_radius: {max_pods_deleted: 4294967295}\nsteps:\n  - scale: {by: -9223372036854775808}\n  - scale: {to: 9223372036854775807}\n  - verify: {query: up, for: 366d}\n  - verify: {query: up, for: 3d, step: 1s}\n  - wait: {for: 1000000000d}\n";
        let e = errors(text);
        has(&e, 3, "guards.max_attempts", "outside 1..=1000");
        has(&e, 4, "guards.rate.global.max", "outside 1..=1000000");
        has(&e, 5, "guards.blast_radius.max_pods_deleted", "outside 0..=1000000");
        has(&e, 7, "steps[0].scale.by", "outside -1000000..=1000000");
        has(&e, 8, "steps[1].scale.to", "outside -1000000..=1000000");
        has(&e, 9, "steps[2].verify.for", "at most 11000");
        has(&e, 10, "steps[3].verify.for", "at most 11000");
        has(&e, 11, "steps[4].wait.for", "366d");
        parse_playbook("name: x\nsteps:\n  - scale: {by: 1000000}\n  - verify: {query: up, for: 3d, step: 30s}\n  - wait: {for: 366d}\n", Path::new("p.yaml"))
            .expect("at the bounds");
    }

    #[test]
    fn actions_must_fit_the_target() {
        let text = "name: x\ntarget: none\nsteps:\n  - scale: {to: 1}\n  - cordon: {}\n  - run_job: {name_prefix: j, spec: {template: {}}, timeout: 1m}\n  - notify: {message: '{{ target.name }}'}\n  - restart: {}\n";
        let e = errors(text);
        has(&e, 4, "steps[0].scale", "needs `target: deployment` (it has `target: none`)");
        has(&e, 5, "steps[1].cordon", "needs `node:`");
        has(&e, 6, "steps[2].run_job", "needs `namespace:`");
        has(&e, 7, "steps[3].notify.message", "`target: none`");
        has(&e, 8, "steps[4].restart", "needs `target: deployment`");
        let node = "name: drain\ntarget: node\ntriggers:\n  - cron: {schedule: '0 0 * * * *', target: worker-1}\nsteps:\n  - cordon: {}\n  - notify: {message: 'cordoned {{ target.name }}'}\n";
        assert!(parse_playbook(node, Path::new("n.yaml")).is_ok());
    }

    #[test]
    fn triggers_are_checked() {
        let text = "name: x\nparams:\n  q: {type: string}\n  n: {type: int, default: 1, max: 3}\ntriggers:\n  - cron: {schedule: '0 3 * * *'}\n  - cron: {schedule: '0 0 3 * * *', timezone: Mars/Olympus, target: shop/api, params: {q: up}}\n  - cron: {schedule: '0 0 3 * * *', target: shop, params: {q: '{{ incident.id }}', n: 5}}\n  - incident: {severity: [critical, page], params: {q: '{{ incident.labels.query }}', m: 1}}\n  - manual\n  - alert: {labels: {}, params: {q: '{{ params.n }}'}}\nsteps: [{wait: {for: 1s}}]\n";
        let e = errors(text);
        has(&e, 6, "triggers[0].cron.schedule", "did you mean `0 0 3 * * *`");
        has(&e, 6, "triggers[0].cron", "needs `target: namespace/deployment`");
        has(&e, 6, "triggers[0].cron.params", "required parameter `q`");
        has(&e, 7, "triggers[1].cron.timezone", "Europe/Berlin");
        has(&e, 8, "triggers[2].cron.target", "`shop` is not `namespace/deployment`");
        has(&e, 8, "triggers[2].cron.params.q", "only set for runs started by an incident");
        has(&e, 8, "triggers[2].cron.params.n", "above the maximum 3");
        has(&e, 9, "triggers[3].incident.severity[1]", "`page` is not a severity");
        has(&e, 9, "triggers[3].incident.params.m", "unknown parameter; declared: n, q");
        has(&e, 10, "triggers[4]", "`manual` declares");
        has(&e, 11, "triggers[5].alert.labels", "at least one label");
        has(&e, 11, "triggers[5].alert.params.q", "cannot refer to other parameters");
        let none = "name: x\ntarget: none\ntriggers:\n  - cron: {schedule: '@daily', target: a/b}\nsteps: [{notify: {message: hi}}]\n";
        has(&parse_playbook(none, Path::new("p.yaml")).unwrap_err().0, 4, "triggers[0].cron.target", "`target: none`");
    }

    #[test]
    fn params_and_guards_are_checked() {
        let text = "name: x\nparams:\n  n: {type: int, default: 9, min: 1, max: 5}\n  '9lives': {type: string, default: a}\n  d: {type: duration, min: 5 parsecs}\nguards:\n  max_attempts: 0\n  approval_ttl: 0s\n  rate: {global: {max: 0, per: 1h}, per_namespace: {max: 1, per: 0s}}\n  blast_radius:\n    max_replica_change_percent: 0\n    namespaces_allow: [shop, Bad]\n    namespaces_deny: [shop]\n    patch_allow: ['spec..x', 'a[0]', 'ok.*']\nsteps: [{wait: {for: 1s}}]\n";
        let e = errors(text);
        has(&e, 3, "params.n.default", "9 is above the maximum 5");
        has(&e, 4, "params.9lives", "must start with a letter");
        has(&e, 5, "params.d.min", "invalid duration");
        has(&e, 7, "guards.max_attempts", "at least 1");
        has(&e, 8, "guards.approval_ttl", "greater than 0");
        has(&e, 9, "guards.rate.global.max", "at least 1");
        has(&e, 9, "guards.rate.per_namespace.per", "greater than 0");
        has(&e, 11, "guards.blast_radius.max_replica_change_percent", "1..=1000");
        has(&e, 12, "guards.blast_radius.namespaces_allow[1]", "`Bad`");
        has(&e, 12, "guards.blast_radius.namespaces_allow[0]", "also in namespaces_deny");
        has(&e, 14, "guards.blast_radius.patch_allow[0]", "empty segment");
        has(&e, 14, "guards.blast_radius.patch_allow[1]", "`[` must be followed by `]`");
        assert!(!e.iter().any(|x| x.path == "guards.blast_radius.patch_allow[2]"), "{e:?}");
    }

    #[test]
    fn patches_must_stay_inside_the_allow_list() {
        let text = "name: x\nsteps:\n  - patch:\n      patch:\n        spec:\n          replicas: 3\n          template:\n            spec:\n              containers:\n                - name: api\n                  image: evil\n                  env: [{name: A, value: b}]\n              hostNetwork: true\n  - patch: {patch: {metadata: {labels: !x {a: b}}}}\n  - patch: {patch: []}\n";
        let e = errors(text);
        has(&e, 6, "steps[0].patch.patch.spec.replicas", "`spec.replicas`, which the default patch_allow does not allow");
        has(&e, 11, "steps[0].patch.patch.spec.template.spec.containers[0].image", "containers[].image");
        has(&e, 13, "steps[0].patch.patch.spec.template.spec.hostNetwork", "hostNetwork");
        has(&e, 14, "steps[1].patch.patch.metadata.labels", "tags");
        has(&e, 15, "steps[2].patch.patch", "non-empty mapping");
        assert!(!e.iter().any(|x| x.path.ends_with("env[0].value") || x.path.ends_with("containers[0].name")), "{e:?}");
        // A playbook's own allow-list replaces the default.
        let own = "name: x\nguards: {blast_radius: {patch_allow: ['spec.replicas']}}\nsteps:\n  - patch: {patch: {spec: {replicas: 2, paused: true}}}\n";
        let e = errors(own);
        has(&e, 4, "steps[0].patch.patch.spec.paused", "guards.blast_radius.patch_allow does not allow");
        assert_eq!(e.len(), 1, "{e:?}");
    }

    #[test]
    fn patch_paths_and_patterns() {
        let patch = serde_json::json!({"spec": {"template": {
            "metadata": {"annotations": {"prometheus.io/scrape": "true", "a": "b"}},
            "spec": {"containers": [{"name": "api", "env": [{"name": "A", "value": "1"}], "args": []}]}}}});
        assert_eq!(
            patch_paths(&patch),
            [
                "spec.template.metadata.annotations.\"prometheus.io/scrape\"",
                "spec.template.metadata.annotations.a",
                "spec.template.spec.containers[].args[]",
                "spec.template.spec.containers[].env[].name",
                "spec.template.spec.containers[].env[].value",
                "spec.template.spec.containers[].name",
            ]
        );
        let allowed: Vec<bool> = patch_paths(&patch).iter().map(|p| path_allowed(p, DEFAULT_PATCH_ALLOW)).collect();
        assert_eq!(allowed, [true, true, false, true, true, true]);
        assert!(path_allowed("a.\"b.c\"", &["a.\"b.c\"".to_string()]));
        assert!(!path_allowed("spec.template.spec.containers[].image", DEFAULT_PATCH_ALLOW));
        assert!(!path_allowed("spec.template.spec.volumes[].name", DEFAULT_PATCH_ALLOW));
        assert!(!path_allowed("spec.template.metadata.annotations", DEFAULT_PATCH_ALLOW));
        assert!(!path_allowed("spec.template.metadata.annotations.a.b", DEFAULT_PATCH_ALLOW));
        for p in DEFAULT_PATCH_ALLOW {
            assert!(check_pattern(p).is_ok(), "{p}");
        }
        for bad in ["", "a.", ".a", "a[1]", "[]", "a.\"b", "a]"] {
            assert!(check_pattern(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn urls() {
        for ok in ["https://hooks.example.com/x?y=1", "http://10.0.0.1:8080/", "http://[::1]:9000/a", "https://a"] {
            assert!(check_http_url(ok).is_ok(), "{ok}");
        }
        for bad in ["ftp://x", "https://", "https://a b", "https://u@x", "http://x:0/", "http://x:99999", "https://a/b c"] {
            assert!(check_http_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_directory_loads_sorted_with_every_error_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).expect("write");
        write("b.yaml", "name: b\nsteps: [{wait: {for: 1s}}]\n");
        write("a.yml", "name: a\nsteps: [{wait: {for: 1s}}]\n");
        write("notes.txt", "not a playbook");
        let got = load_dir(dir.path()).expect("valid");
        let names: Vec<&str> = got.iter().map(|(_, p)| p.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);

        write("c.yaml", "name: c\nsteps: [{wait: {for: 0s}}]\n");
        write("d.yaml", "name: d\nbogus: 1\nsteps: [{wait: {for: 1s}}]\n");
        write("e.yaml", "# same name as b\nname: b\nsteps: [{wait: {for: 1s}}]\n");
        let e = load_dir(dir.path()).expect_err("invalid").0;
        let got: Vec<(String, Option<usize>, &str)> =
            e.iter().map(|x| (x.file.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default(), x.line, x.path.as_str())).collect();
        assert_eq!(
            got,
            [
                ("c.yaml".to_string(), Some(2), "steps[0].wait.for"),
                ("d.yaml".to_string(), Some(2), "bogus"),
                ("e.yaml".to_string(), Some(2), "name"),
            ]
        );
        assert!(e[2].message.contains("b.yaml"), "{}", e[2].message);
        let shown = LoadErrors(e).to_string();
        assert!(shown.contains("c.yaml:2: steps[0].wait.for: must be greater than 0"), "{shown}");
        let missing = load_dir(&dir.path().join("nope")).expect_err("missing").0;
        assert!(missing[0].line.is_none() && missing[0].to_string().contains("nope: cannot read"), "{}", missing[0]);
    }

    #[test]
    fn the_documented_examples_load() {
        let doc = include_str!("../../docs/playbooks.md");
        let mut checked = 0;
        for block in doc.split("```yaml\n").skip(1) {
            let yaml = block.split("```").next().unwrap_or_default();
            if yaml.lines().any(|l| l.starts_with("name: ")) {
                if let Err(e) = parse_playbook(yaml, Path::new("docs/playbooks.md")) {
                    panic!("{e}\n---\n{yaml}");
                }
                checked += 1;
            }
        }
        assert!(checked >= 5, "{checked}");
    }

    #[test]
    fn the_catalog_holds_builtins_and_files_replace_them() {
        let builtin = Catalog::load(None).unwrap_or_else(|e| panic!("{e}"));
        assert!(builtin.names().contains(&"scale-up-on-saturation"), "{:?}", builtin.names());
        assert_eq!(builtin.source("scale-up-on-saturation"), Some(&Source::Builtin));

        let dir = tempfile::tempdir().expect("tempdir");
        let own = dir.path().join("mine.yaml");
        std::fs::write(&own, "name: scale-up-on-saturation\ndescription: ours\nsteps: [{wait: {for: 1s}}]\n").expect("write");
        std::fs::write(dir.path().join("extra.yaml"), "name: extra\nsteps: [{wait: {for: 1s}}]\n").expect("write");
        let c = Catalog::load(Some(dir.path())).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.source("scale-up-on-saturation"), Some(&Source::File(own)));
        assert_eq!(c.get("scale-up-on-saturation").map(|p| p.description.as_str()), Some("ours"));
        assert!(c.get("extra").is_some());
        assert_eq!(c.len(), builtin.len() + 1);
        assert_eq!(c.iter().count(), c.names().len());
        assert!(c.get("nope").is_none());
    }
}
