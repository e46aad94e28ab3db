//! Reading a config file and collecting every error, each with its YAML path and line.

use std::fmt;
use std::path::{Path, PathBuf};

use serde_yaml::Value;

use super::yaml_index::YamlIndex;
use super::{validate, Config};

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    /// YAML path such as `watches[0].interval`; empty for the document itself.
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
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

/// Every problem found, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "error: {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Read and check a config file.
pub fn load_file(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.to_path_buf(),
            line: None,
            path: String::new(),
            message: format!("cannot read the file: {e}"),
        }])
    })?;
    parse_str(&text, path)
}

/// Parse and check config text; `file` only names it in errors.
pub fn parse_str(text: &str, file: &Path) -> Result<Config, ConfigErrors> {
    let mk = |line: Option<usize>, path: String, message: String| ConfigError { file: file.to_path_buf(), line, path, message };

    let mut value: Value = match serde_yaml::from_str(text) {
        Ok(Value::Null) => Value::Mapping(Default::default()),
        Ok(v) => v,
        Err(e) => {
            let line = e.location().map(|l| l.line());
            return Err(ConfigErrors(vec![mk(line, String::new(), format!("invalid YAML: {e}"))]));
        }
    };
    let index = YamlIndex::build(text);
    let mut found: Vec<(String, String)> = Vec::new();

    // serde stops at the first error; remove what it rejected and try again, so one run
    // reports every structural error. Bounded: each round removes one node.
    let mut parsed = None;
    for _ in 0..64 {
        match serde_path_to_error::deserialize::<_, Config>(value.clone()) {
            Ok(cfg) => {
                parsed = Some(cfg);
                break;
            }
            Err(err) => {
                let at = normalise(&err.path().to_string());
                let message = err.inner().to_string();
                let message = strip_location(&message);
                if let Some(field) = backticked(&message, "unknown field `") {
                    let p = join(&at, &field);
                    found.push((p, message.clone()));
                    if !remove_key(&mut value, &at, &field) {
                        break;
                    }
                } else if let Some(field) = backticked(&message, "missing field `") {
                    let p = join(&at, &field);
                    if !found.iter().any(|(q, _)| q == &p) {
                        found.push((p, message));
                    }
                    break;
                } else {
                    if found.iter().any(|(q, _)| q == &at) {
                        break;
                    }
                    found.push((at.clone(), message));
                    if at.is_empty() || !remove_path(&mut value, &at) {
                        break;
                    }
                }
            }
        }
    }

    if let Some(cfg) = &parsed {
        found.extend(validate::validate(cfg));
    }
    if found.is_empty() {
        if let Some(cfg) = parsed {
            return Ok(cfg);
        }
    }
    let mut errors: Vec<ConfigError> =
        found.into_iter().map(|(path, message)| mk(index.line(&path), path, message)).collect();
    errors.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
    errors.dedup();
    Err(ConfigErrors(errors))
}

fn normalise(path: &str) -> String {
    if path == "." {
        String::new()
    } else {
        path.to_string()
    }
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// serde_yaml appends "at line X column Y" positions of the in-memory value, which are
/// meaningless here; lines come from the index instead.
fn strip_location(msg: &str) -> String {
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

fn backticked(msg: &str, prefix: &str) -> Option<String> {
    let rest = msg.strip_prefix(prefix)?;
    let end = rest.find('`')?;
    Some(rest[..end].to_string())
}

enum Seg {
    Key(String),
    Index(usize),
}

fn segments(path: &str) -> Option<Vec<Seg>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (key, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            out.push(Seg::Key(key.to_string()));
        }
        while let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            out.push(Seg::Index(r[..end].parse().ok()?));
            rest = &r[end + 1..];
        }
    }
    Some(out)
}

fn node_mut<'a>(root: &'a mut Value, segs: &[Seg]) -> Option<&'a mut Value> {
    let mut cur = root;
    for s in segs {
        cur = match (s, cur) {
            (Seg::Key(k), Value::Mapping(m)) => m.get_mut(Value::String(k.clone()))?,
            (Seg::Index(i), Value::Sequence(v)) => v.get_mut(*i)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn remove_key(root: &mut Value, parent: &str, key: &str) -> bool {
    let Some(segs) = segments(parent) else { return false };
    match node_mut(root, &segs) {
        Some(Value::Mapping(m)) => m.remove(Value::String(key.to_string())).is_some(),
        _ => false,
    }
}

fn remove_path(root: &mut Value, path: &str) -> bool {
    let Some(mut segs) = segments(path) else { return false };
    let Some(last) = segs.pop() else { return false };
    match (last, node_mut(root, &segs)) {
        (Seg::Key(k), Some(Value::Mapping(m))) => m.remove(Value::String(k)).is_some(),
        // Removing an item would shift its siblings' paths; replace it instead.
        (Seg::Index(i), Some(Value::Sequence(v))) if i < v.len() => {
            v[i] = Value::Null;
            true
        }
        _ => false,
    }
}
