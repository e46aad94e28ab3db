//! Deserializing YAML so that every error is reported at once, each with its YAML path.
//!
//! serde stops at the first error. An operator fixing a file one error per run is slow, so
//! [`deserialize_collect`] records the error, removes the node serde rejected and tries
//! again; lines are then looked up by path in a [`crate::yaml_index::YamlIndex`]. The agent's
//! `warden.yaml` loader and the playbook loader ([`crate::load`]) share these helpers, which is
//! why they live here (the playbooks crate is the lower one of the two).

use serde_yaml::Value;

use crate::error::Error;

/// How deep a configuration or playbook file may nest (mappings, sequences, flow brackets).
/// The deepest real file (a Job spec inside a playbook step) is about 15 levels.
pub const MAX_DEPTH: usize = 64;

/// The first line where `text` nests deeper than `max`, by a cheap scan of the raw text:
/// flow brackets outside quotes and comments, plus block levels (indentation steps and
/// compact `- - x` entries). The YAML parser takes quadratic time on deep flow nesting (a
/// 100,000-deep `[[[...]]]` takes most of a minute), so depth is checked before it runs.
/// The scan may over-count (brackets inside block scalars), which only matters for text
/// nested near the limit.
pub fn too_deep(text: &str, max: usize) -> Option<usize> {
    let mut flow = 0usize;
    let mut indents: Vec<usize> = Vec::new();
    let mut quote: Option<char> = None;
    for (i, line) in text.lines().enumerate() {
        let content = line.trim_start_matches(' ');
        let mut block = indents.len();
        if flow == 0 && quote.is_none() && !content.is_empty() && !content.starts_with('#') {
            let indent = line.len() - content.len();
            while indents.last().is_some_and(|&t| t >= indent) {
                indents.pop();
            }
            indents.push(indent);
            let mut rest = content;
            let mut dashes = 0;
            while let Some(r) = rest.strip_prefix("- ") {
                dashes += 1;
                rest = r.trim_start_matches(' ');
            }
            block = indents.len() + dashes;
        }
        if block + flow > max {
            return Some(i + 1);
        }
        let mut prev = ' ';
        let mut escaped = false;
        for c in line.chars() {
            match quote {
                Some('"') => {
                    if escaped {
                        escaped = false;
                    } else if c == '\\' {
                        escaped = true;
                    } else if c == '"' {
                        quote = None;
                    }
                }
                Some(_) => {
                    if c == '\'' {
                        quote = None;
                    }
                }
                None => match c {
                    '#' if prev == ' ' || prev == '\t' => break,
                    '"' | '\'' if matches!(prev, ' ' | '\t' | '[' | '{' | ',' | ':') => quote = Some(c),
                    '[' | '{' => {
                        flow += 1;
                        if block + flow > max {
                            return Some(i + 1);
                        }
                    }
                    ']' | '}' => flow = flow.saturating_sub(1),
                    _ => {}
                },
            }
            prev = c;
        }
    }
    None
}

/// Parse YAML text into a [`Value`] (an empty document is an empty mapping). The error is
/// [`Error::Yaml`], with the line the parser stopped at; its message starts with `invalid YAML`.
pub fn parse_value(text: &str) -> Result<Value, Error> {
    if let Some(line) = too_deep(text, MAX_DEPTH) {
        return Err(Error::Yaml {
            line: Some(line),
            message: format!("nested deeper than {MAX_DEPTH} levels"),
            source: None,
        });
    }
    match serde_yaml::from_str(text) {
        Ok(Value::Null) => Ok(Value::Mapping(Default::default())),
        Ok(v) => Ok(v),
        Err(e) => Err(Error::Yaml { line: e.location().map(|l| l.line()), message: e.to_string(), source: Some(e) }),
    }
}

impl Error {
    /// The line of the file an error points at, when it has one (see [`Error::Yaml`]).
    pub fn line(&self) -> Option<usize> {
        match self {
            Error::Yaml { line, .. } => *line,
            _ => None,
        }
    }
}

/// Deserialize `value`, recording every error as `(path, message)` (paths under `prefix`).
/// serde stops at the first error, so what it rejected is removed and it tries again;
/// bounded, since each round removes one node. `None` when the value cannot be repaired
/// (a missing field, or an error at the root).
pub fn deserialize_collect<T: serde::de::DeserializeOwned>(
    mut value: Value,
    prefix: &str,
    found: &mut Vec<(String, String)>,
) -> Option<T> {
    for _ in 0..64 {
        let err = match serde_path_to_error::deserialize::<_, T>(value.clone()) {
            Ok(v) => return Some(v),
            Err(err) => err,
        };
        let at = normalise(&err.path().to_string());
        let message = strip_location(&err.inner().to_string());
        if let Some(field) = backticked(&message, "unknown field `") {
            // The path may or may not already end with the unknown key.
            let parent = match at.strip_suffix(field.as_str()) {
                Some(p) if p.is_empty() || p.ends_with('.') => p.trim_end_matches('.').to_string(),
                _ => at.clone(),
            };
            let p = join(prefix, &join(&parent, &field));
            if found.iter().any(|(q, _)| q == &p) {
                return None;
            }
            found.push((p, message));
            if !remove_key(&mut value, &parent, &field) {
                return None;
            }
        } else if let Some(field) = backticked(&message, "missing field `") {
            let p = join(prefix, &join(&at, &field));
            if !found.iter().any(|(q, _)| q == &p || q.starts_with(&format!("{p}."))) {
                found.push((p, message));
            }
            return None;
        } else {
            let p = join(prefix, &at);
            if found.iter().any(|(q, _)| q == &p) {
                return None;
            }
            found.push((p, message));
            if at.is_empty() || !remove_path(&mut value, &at) {
                return None;
            }
        }
    }
    None
}

/// Items of a sequence are often deserialized one by one (so a broken item does not hide
/// the errors of the others); the ones that parsed are renumbered `0..`. This maps
/// `<seq>[j]...` of that subset back to the file's `<seq>[i]...` (`original_index[j] == i`).
pub fn renumber(path: &str, seq: &str, original_index: &[usize]) -> String {
    let Some(rest) = path.strip_prefix(seq).and_then(|r| r.strip_prefix('[')) else { return path.to_string() };
    let Some(end) = rest.find(']') else { return path.to_string() };
    match rest[..end].parse::<usize>().ok().and_then(|j| original_index.get(j)) {
        Some(i) => format!("{seq}[{i}]{}", &rest[end + 1..]),
        None => path.to_string(),
    }
}

/// serde_path_to_error writes the root as `.`; here the root is the empty path.
pub fn normalise(path: &str) -> String {
    if path == "." {
        String::new()
    } else {
        path.to_string()
    }
}

/// `parent.key`, `key` at the root, `parent` for an empty key.
pub fn join(parent: &str, key: &str) -> String {
    if key.is_empty() {
        parent.to_string()
    } else if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// The YAML deserializer appends "at line X column Y" positions of the in-memory value, which are
/// meaningless here; lines come from the index instead.
pub fn strip_location(msg: &str) -> String {
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// The text between `prefix` (which ends with a backtick) and the next backtick.
pub fn backticked(msg: &str, prefix: &str) -> Option<String> {
    let rest = msg.strip_prefix(prefix)?;
    let end = rest.find('`')?;
    Some(rest[..end].to_string())
}

/// One step of a YAML path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// Split `a.b[2].c` into its steps; `None` for a malformed index.
pub fn segments(path: &str) -> Option<Vec<Seg>> {
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

/// The node at `segs`, if present.
pub fn node_mut<'a>(root: &'a mut Value, segs: &[Seg]) -> Option<&'a mut Value> {
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

/// Remove `key` from the mapping at `parent`; false when there is none.
pub fn remove_key(root: &mut Value, parent: &str, key: &str) -> bool {
    let Some(segs) = segments(parent) else { return false };
    match node_mut(root, &segs) {
        // `shift_remove` keeps the document order, so the next round meets the next error
        // where the file has it.
        Some(Value::Mapping(m)) => m.shift_remove(Value::String(key.to_string())).is_some(),
        _ => false,
    }
}

/// Remove the node at `path` (a sequence item is replaced by null, so that its siblings keep
/// their paths); false when there is none.
pub fn remove_path(root: &mut Value, path: &str) -> bool {
    let Some(mut segs) = segments(path) else { return false };
    let Some(last) = segs.pop() else { return false };
    match (last, node_mut(root, &segs)) {
        (Seg::Key(k), Some(Value::Mapping(m))) => m.shift_remove(Value::String(k)).is_some(),
        // Removing an item would shift its siblings' paths; replace it instead.
        (Seg::Index(i), Some(Value::Sequence(v))) if i < v.len() => {
            v[i] = Value::Null;
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct T {
        a: u32,
        #[serde(default)]
        b: Option<u32>,
        #[serde(default)]
        c: Vec<u32>,
    }

    #[test]
    fn collects_every_repairable_error() {
        let v = parse_value("a: 1\nb: x\nzz: 2\nc: [1, y]\n").expect("yaml");
        let mut found = Vec::new();
        let t: Option<T> = deserialize_collect(v, "p", &mut found);
        assert!(t.is_none(), "c[1] is replaced by null, which is still not a u32");
        let paths: Vec<&str> = found.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, ["p.b", "p.zz", "p.c[1]"]);
    }

    #[test]
    fn deep_nesting_is_refused_before_parsing() {
        let deep = format!("a: {}1{}\n", "[".repeat(100_000), "]".repeat(100_000));
        let e = parse_value(&deep).expect_err("too deep");
        assert_eq!(e.line(), Some(1));
        assert!(e.to_string().contains("nested deeper than 64 levels"), "{e}");
        let dashes = format!("a:\n  {}x\n", "- ".repeat(100_000));
        assert_eq!(parse_value(&dashes).expect_err("too deep").line(), Some(2));
        let mut block = String::new();
        for i in 0..80 {
            block.push_str(&format!("{}k{i}:\n", " ".repeat(i)));
        }
        assert!(parse_value(&block).is_err());
        // Brackets in quotes and comments do not count; real files pass.
        let ok = format!(
            "q: '{}'\nr: \"{}\" # {}\ns: {}1{}\n",
            "[".repeat(100),
            "{".repeat(100),
            "[".repeat(100),
            "[".repeat(20),
            "]".repeat(20)
        );
        parse_value(&ok).expect("shallow");
        parse_value("a:\n  b:\n    - c: [1, {d: 2}]\n    - - x\n      - y\n").expect("shallow");
    }

    #[test]
    fn missing_fields_and_renumbering() {
        let mut found = Vec::new();
        let t: Option<T> = deserialize_collect(parse_value("b: 1\n").expect("yaml"), "", &mut found);
        assert!(t.is_none());
        assert_eq!(found[0].0, "a");
        assert_eq!(renumber("steps[1].scale", "steps", &[0, 3]), "steps[3].scale");
        assert_eq!(renumber("revert[1]", "steps", &[0, 3]), "revert[1]");
        assert_eq!(parse_value("").expect("empty"), Value::Mapping(Default::default()));
        let e = parse_value("a: [\n").expect_err("bad");
        assert!(matches!(e, Error::Yaml { line: Some(_), source: Some(_), .. }), "{e:?}");
        assert!(e.to_string().starts_with("invalid YAML"), "{e}");
    }
}
