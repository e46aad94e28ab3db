//! The template tree's parts: a cluster (one template with its counts and samples) and the
//! nodes of the prefix tree that lead to clusters by token count and leading tokens.

use super::*;

/// A template in the miner.
#[derive(Debug, Clone)]
pub(super) struct Cluster {
    pub(super) id: TemplateId,
    /// Tokens joined by one space; shared with the exact-match index.
    pub(super) text: Arc<str>,
    /// Byte range of every token in `text`.
    pub(super) spans: Vec<(u32, u32)>,
    /// Number of `<*>` tokens.
    pub(super) wildcards: usize,
    /// Whether each token has a constant part (a letter outside `<*>`); only those count in
    /// the similarity.
    pub(super) constant: Vec<bool>,
    /// Tree keys it was inserted under.
    pub(super) path: Vec<Box<str>>,
    pub(super) count: u64,
    pub(super) first_seen: u64,
    pub(super) last_seen: u64,
    pub(super) samples: Vec<String>,
}

impl Cluster {
    pub(super) fn token(&self, i: usize) -> &str {
        self.spans.get(i).and_then(|&(a, b)| self.text.get(a as usize..b as usize)).unwrap_or("")
    }

    pub(super) fn len(&self) -> usize {
        self.spans.len()
    }

    pub(super) fn is_constant(&self, i: usize) -> bool {
        self.constant.get(i).copied().unwrap_or(false)
    }

    /// A template with `tokens` as its text, inserted under `path`, with no line yet.
    pub(super) fn build(id: TemplateId, tokens: &[&str], path: Vec<Box<str>>) -> Self {
        let mut c = Cluster {
            id,
            text: Arc::from(""),
            spans: Vec::new(),
            wildcards: 0,
            constant: Vec::new(),
            path,
            count: 0,
            first_seen: 0,
            last_seen: 0,
            samples: Vec::new(),
        };
        c.set_text(tokens);
        c
    }

    pub(super) fn set_text(&mut self, tokens: &[&str]) {
        let (text, spans) = join(tokens);
        self.wildcards = tokens.iter().filter(|t| **t == WILDCARD).count();
        self.constant = tokens.iter().map(|t| has_constant(t)).collect();
        self.text = Arc::from(text);
        self.spans = spans;
    }

    pub(super) fn add_sample(&mut self, line: &str, max_samples: usize, max_bytes: usize) {
        if self.samples.len() >= max_samples {
            return;
        }
        let sample = mask::truncate_str(line.trim_end_matches(['\r', '\n']), max_bytes);
        if !self.samples.iter().any(|s| s == sample) {
            self.samples.push(sample.to_string());
        }
    }

    pub(super) fn info(&self) -> TemplateInfo<'_> {
        TemplateInfo {
            id: self.id,
            template: &self.text,
            count: self.count,
            first_seen: self.first_seen,
            last_seen: self.last_seen,
            samples: &self.samples,
        }
    }
}

/// Join tokens with one space; returns the text and every token's byte range.
pub(super) fn join(tokens: &[&str]) -> (String, Vec<(u32, u32)>) {
    let mut text = String::with_capacity(tokens.iter().map(|t| t.len() + 1).sum());
    let mut spans = Vec::with_capacity(tokens.len());
    for t in tokens {
        if !text.is_empty() || !spans.is_empty() {
            text.push(' ');
        }
        let a = text.len();
        text.push_str(t);
        spans.push((u32::try_from(a).unwrap_or(u32::MAX), u32::try_from(text.len()).unwrap_or(u32::MAX)));
    }
    (text, spans)
}

/// Outcome of [`Miner::generalize`].
pub(super) enum Generalized {
    /// The template already matched.
    Unchanged,
    /// Some tokens became `<*>`.
    Changed,
    /// Some tokens became `<*>` and the text is now the text of the template in this slot.
    Collides(usize),
}

/// A node of the parse tree. Leaves (at the end of a path) hold template slots.
#[derive(Debug, Clone, Default)]
pub(super) struct Node {
    pub(super) children: FastMap<Box<str>, Node>,
    pub(super) clusters: Vec<usize>,
}

impl Node {
    pub(super) fn is_empty(&self) -> bool {
        self.children.is_empty() && self.clusters.is_empty()
    }

    /// Remove `slot` from the leaf at `path`; prune nodes left empty. Returns whether this node
    /// is now empty.
    pub(super) fn remove(&mut self, path: &[Box<str>], slot: usize) -> bool {
        match path.split_first() {
            None => self.clusters.retain(|&s| s != slot),
            Some((key, rest)) => {
                if let Some(child) = self.children.get_mut(key) {
                    if child.remove(rest, slot) {
                        self.children.remove(key);
                    }
                }
            }
        }
        self.is_empty()
    }
}

/// The tree key of a token: itself if it has a constant part and no digit, else `<*>`.
pub(super) fn tree_key(token: &str, kind: Option<TokenKind>) -> &str {
    if kind == Some(TokenKind::Variable) || token.bytes().any(|b| b.is_ascii_digit()) || !has_constant(token) {
        WILDCARD
    } else {
        token
    }
}
