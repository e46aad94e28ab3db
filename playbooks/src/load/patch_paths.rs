//! Patch paths: the field paths a strategic-merge patch sets, and the allow-list patterns
//! (`patch_allow`) they are matched against, at load time and by the run-time guard.

use serde_yaml::Value;

use crate::error::{Error, ValueKind};
use crate::yaml_load::join;

/// One segment of a patch path or pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum PSeg {
    Key(String),
    /// `*` in a pattern.
    Any,
    /// `[]`: an item of a list.
    Items,
}

/// A key as a path segment: quoted (`"prometheus.io/scrape"`) when it contains characters
/// of the path syntax, so that a dotted annotation key stays one segment.
pub(super) fn key_segment(k: &str) -> String {
    let plain = !k.is_empty() && k != "*" && !k.contains(['.', '[', ']', '"', '\\']);
    if plain {
        k.to_string()
    } else {
        format!("\"{}\"", k.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

pub(super) fn push_key(path: &str, k: &str) -> String {
    join(path, &key_segment(k))
}

/// Split a path or pattern into segments.
pub(super) fn parse_path(s: &str) -> Result<Vec<PSeg>, Error> {
    let bad = |message: String| Error::value(ValueKind::PatchPath, message);
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    if chars.is_empty() {
        return Err(bad("empty path".into()));
    }
    loop {
        // One key (quoted or bare), then any number of `[]`.
        if chars.get(i) == Some(&'"') {
            let mut key = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(bad("unterminated quoted key".into())),
                    Some('\\') => {
                        let Some(c) = chars.get(i + 1) else { return Err(bad("unterminated quoted key".into())) };
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
                return Err(bad(format!("empty segment at character {}", start + 1)));
            }
            out.push(if key == "*" { PSeg::Any } else { PSeg::Key(key) });
        }
        while chars.get(i) == Some(&'[') {
            if chars.get(i + 1) != Some(&']') {
                return Err(bad("`[` must be followed by `]` (list items are written `name[]`)".into()));
            }
            out.push(PSeg::Items);
            i += 2;
        }
        match chars.get(i) {
            None => return Ok(out),
            Some('.') if i + 1 < chars.len() => i += 1,
            Some('.') => return Err(bad("ends with `.`".into())),
            Some(c) => return Err(bad(format!("unexpected `{c}` at character {}", i + 1))),
        }
    }
}

/// Check an allow-list pattern (`spec.template.spec.containers[].env[].value`, `*` for one
/// segment, keys with dots quoted: `annotations."prometheus.io/scrape"`).
pub fn check_pattern(pattern: &str) -> Result<(), Error> {
    let segs = parse_path(pattern)?;
    if segs.first() == Some(&PSeg::Items) {
        return Err(Error::value(ValueKind::PatchPath, "cannot start with `[]`"));
    }
    Ok(())
}

pub(super) fn seg_matches(pattern: &PSeg, path: &PSeg) -> bool {
    match (pattern, path) {
        (PSeg::Any, PSeg::Key(_)) => true,
        (PSeg::Key(a), PSeg::Key(b)) => a == b,
        (PSeg::Items, PSeg::Items) => true,
        _ => false,
    }
}

pub(super) fn prefix_matches(pattern: &[PSeg], path: &[PSeg]) -> bool {
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
pub(crate) fn yaml_leaves(
    v: &Value,
    yaml_path: String,
    patch_path: String,
    out: &mut Vec<(String, String)>,
    errs: &mut Vec<(String, String)>,
) {
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
