//! Maps YAML paths (`watches[0].detector.window`) to line numbers.
//!
//! serde works on values without positions, so errors found after parsing (unknown keys
//! found by serde on a `Value`, semantic checks) would otherwise lose their line. This index is
//! built once from the parser's marked events and answers "which line is this path on".

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// Line numbers (1-based) of every key and value path in one YAML document.
#[derive(Debug, Default)]
pub struct YamlIndex {
    lines: HashMap<String, usize>,
}

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, index: usize },
}

struct Builder {
    stack: Vec<Frame>,
    lines: HashMap<String, usize>,
}

fn child(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

impl Builder {
    /// The path a new value node gets, or `None` when the node is a mapping key.
    fn value_path(&mut self, line: usize, scalar_key: Option<&str>) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Map { path, key }) => match key.take() {
                None => {
                    // This node is a key.
                    let k = scalar_key.unwrap_or("?").to_string();
                    let p = child(path, &k);
                    self.lines.entry(p).or_insert(line);
                    *key = Some(k);
                    None
                }
                Some(k) => Some(child(path, &k)),
            },
            Some(Frame::Seq { path, index }) => {
                let p = format!("{path}[{index}]");
                *index += 1;
                Some(p)
            }
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let line = mark.line();
        match ev {
            Event::Scalar(ref v, ..) => {
                if let Some(p) = self.value_path(line, Some(v)) {
                    self.lines.entry(p).or_insert(line);
                }
            }
            Event::Alias(_) => {
                if let Some(p) = self.value_path(line, None) {
                    self.lines.entry(p).or_insert(line);
                }
            }
            Event::MappingStart(..) => {
                let p = self.value_path(line, None).unwrap_or_default();
                self.lines.entry(p.clone()).or_insert(line);
                self.stack.push(Frame::Map { path: p, key: None });
            }
            Event::SequenceStart(..) => {
                let p = self.value_path(line, None).unwrap_or_default();
                self.lines.entry(p.clone()).or_insert(line);
                self.stack.push(Frame::Seq { path: p, index: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

impl YamlIndex {
    /// Build the index; a document the parser rejects yields an empty index (the syntax
    /// error itself is reported by the deserializer, with its own position).
    pub fn build(text: &str) -> Self {
        let mut b = Builder { stack: Vec::new(), lines: HashMap::new() };
        let mut parser = Parser::new_from_str(text);
        if parser.load(&mut b, false).is_err() {
            return Self::default();
        }
        Self { lines: b.lines }
    }

    /// The line of `path`, or of its nearest ancestor present in the document.
    pub fn line(&self, path: &str) -> Option<usize> {
        let mut p = path.to_string();
        loop {
            if let Some(l) = self.lines.get(&p) {
                return Some(*l);
            }
            let cut = p.rfind(['.', '['])?;
            p.truncate(cut);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nested_keys_and_items() {
        let doc = "a: 1\nwatches:\n  - name: x\n    detector:\n      window: 5\n  - name: y\n    query: up\n";
        let idx = YamlIndex::build(doc);
        assert_eq!(idx.line("a"), Some(1));
        assert_eq!(idx.line("watches"), Some(2));
        assert_eq!(idx.line("watches[0].name"), Some(3));
        assert_eq!(idx.line("watches[0].detector.window"), Some(5));
        assert_eq!(idx.line("watches[1].query"), Some(7));
        // Unknown paths fall back to the nearest ancestor.
        assert_eq!(idx.line("watches[1].missing.deeper"), Some(6));
    }

    #[test]
    fn flow_style_and_bad_yaml() {
        let idx = YamlIndex::build("t: { namespace: a, deployment: b }\nl: [x, y]\n");
        assert_eq!(idx.line("t.deployment"), Some(1));
        assert_eq!(idx.line("l[1]"), Some(2));
        assert_eq!(YamlIndex::build("a: [\n").line("a"), None);
    }
}
