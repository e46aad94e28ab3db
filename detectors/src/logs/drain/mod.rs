//! Streaming template mining: a Drain-family miner with stable ids, bounded memory and a
//! state that survives restarts.
//!
//! Log lines are mostly the same few hundred messages with different values filled in. To
//! count, compare and alert on *kinds* of lines (a template never seen before, a template
//! suddenly ten times as frequent) every line has to be mapped, online and in one pass, to the
//! template it was printed from. Drain (He et al., ICWS 2017) does that with a shallow parse
//! tree and a token-by-token similarity; it is the best-scoring of the classic parsers on the
//! Loghub benchmark and the one most used in practice. This module is Drain with the changes a
//! long-running daemon needs: ids that do not change when the process restarts, a hard bound
//! on memory, and one generic setting for every kind of log.
//!
//! # Algorithm, per line
//!
//! 1. **Mask** the line ([`mask`](super::mask)): variable parts become `<*>`, and the line is
//!    cut at `max_line_bytes` bytes and `max_tokens` tokens.
//! 2. **Exact match**: if the masked line equals the text of a template, that is the match.
//!    Most lines of a well-masked log take this path, which costs one hash lookup.
//! 3. **Tree search**: the first level of the tree is the token count; the next `depth` levels
//!    are the first `depth` tokens. A token with a digit, or without a letter outside `<*>`
//!    (a value), is keyed as `<*>`. Search follows the token's own child, else the `<*>` child;
//!    a node has at most `max_children` children, after which new tokens share the `<*>` child.
//! 4. **Similarity**: in the leaf, every template of the same length is compared position by
//!    position: `sim = (positions where the template's token has a constant part and equals
//!    the line's) / tokens`. The best template wins (ties: more `<*>`, then the older id) if
//!    `sim >= sim_threshold`; otherwise the line starts a new template.
//! 5. **Variants** (the change from Drain): if the best template has *constant words* that the
//!    line does not have (`VM Started` against `VM Paused`), the line only joins it when these
//!    positions have already shown `min_variants` distinct combinations of words, counting the
//!    template, the line and the templates of the same leaf that differ from the template only
//!    at these positions or in values. Otherwise the line starts a template of its own. When
//!    the count is reached, all of them are merged into one template with `<*>` there.
//!    Drain generalises at the first difference, so one rare message (`... client SPP`)
//!    swallows a frequent one (`... client WindowsUpdateAgent`) and turns both into
//!    `... client <*>`; a fixed higher threshold instead splits every message whose variable
//!    is a word (`Failed password for root` / `for admin`). Counting variants tells the two
//!    apart with one setting: a word that is a value soon shows many variants, a word that is
//!    part of the message a few. Before that, a value that is a word gives up to
//!    `min_variants - 1` templates, which are then merged.
//! 6. **Update**: positions where the template and the line differ become `<*>`. Whenever a
//!    template's text becomes equal to another template's text, the two are merged into the
//!    older id. Merged ids are reported in [`MatchResult::merged`]: lines reported under them
//!    belong to the surviving id from then on.
//!
//! 7. **Optional fields** (the other change): a line that would start a new template is first
//!    lined up with the templates of 1 to 3 tokens more or fewer in the leaf of its first
//!    tokens ([`gap`](super::gap)). It joins one when the two differ by one *field* — value
//!    tokens, or one bracketed group like `(host1)` or `()` — that sits next to a value or at
//!    the end, with every constant word of the template in place and at least two of them
//!    (and `sim_threshold` of the shorter length). A longer line joins as it is: the `<*>`
//!    next to the field stands for it too. A shorter line makes the template drop the field;
//!    it moves to the shorter length, keeping its id, and the templates of the old shape that
//!    line up with it are merged into it. So `connection from 10.0.0.1 (host1) at …`,
//!    `… () at …` and `… 10.0.0.2 (h.example.com) at …` (where masking makes
//!    `10.0.0.2 (<*>)` one value) are one event. Plain words are never a field:
//!    `Failed password for invalid user <*>` stays apart from `Failed password for <*>`.
//!    Textual dates (`Sun Jul 17 …`) are masked as one value ([`mask`](super::mask), rule 7),
//!    so their words never count as constant words either.
//!
//! Lines shorter than `depth` tokens are keyed on all their tokens; unlike the reference
//! implementation they are matched like any other line.
//!
//! # Stable ids
//!
//! Ids are sequence numbers (1, 2, 3, …) given when a template is created, so they depend only
//! on the lines seen and their order, never on hash-map iteration order. [`Miner::state`]
//! exports everything that decides future matches — parameters, templates with their tree path,
//! counters — and [`Miner::from_state`] rebuilds an identical miner: the same next lines get the
//! same ids and the same templates as they would have without the restart. The state is plain
//! serde data ([`MinerState::to_json`], [`MinerState::from_json`]).
//!
//! # Memory bound
//!
//! At most `max_templates` templates are kept. Creating one more evicts the templates matched
//! least recently, `max(1, max_templates / 64)` at a time (so that a stream of only new lines
//! costs amortised `O(log n)` per line rather than a scan per line); evicted ids are reported
//! in [`MatchResult::evicted`] and never reused. A template holds its text (the masked line:
//! at most `3 × max_line_bytes` bytes, since a one-character value becomes the
//! three-character `<*>`), 9 bytes per token, its tree path (`depth` keys), up to
//! `max_samples` sample lines of at most `sample_max_bytes` bytes, and about 450 bytes of
//! counters, map entries and tree nodes. With the defaults (4096-byte lines, 128 tokens, 3
//! samples of 256 bytes) that is at most about 15 KB per template and about 1 KB for a
//! typical 100-byte line, so the default 5 000 templates take about 5 MB typically and at most
//! about 75 MB. Besides the templates the miner keeps a cache that only saves time: the masked
//! form of up to 1 024 recent lines of at most 256 bytes (masking is a pure function of the
//! line, so it never changes a result; logs repeat whole lines often). It is allocated on
//! first use and holds at most about 1.5 MB, a few hundred KB for typical lines.

use std::hash::BuildHasher;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

use super::gap::{self, has_constant, Gap, MAX_GAP};
use super::hash::{FastMap, FastState};
use super::mask::{self, MaskParams, MaskedLine, TokenKind, WILDCARD};

/// A template's id: 1 for the first template created, then 2, 3, …; never reused.
pub type TemplateId = u64;

/// Version of [`MinerState`]'s format.
pub const STATE_VERSION: u32 = 1;

/// Largest accepted `max_templates`.
pub const MAX_TEMPLATES: usize = 1_000_000;

/// Largest accepted `depth`.
pub const MAX_DEPTH: usize = 16;

/// Parameters of a [`Miner`]. Missing fields take their defaults when deserialised; unknown
/// fields are rejected. The defaults are the one setting used for every system in the Loghub
/// benchmark (see `docs/logs.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MinerParams {
    /// Minimum similarity for a line to join a template, in `(0, 1]` (default 0.5).
    pub sim_threshold: f64,
    /// Number of leading tokens that key the parse tree (default 2).
    pub depth: usize,
    /// Distinct combinations of words needed at the same positions before those words become
    /// `<*>`; 2 generalises at the first difference, as Drain does (default 4).
    pub min_variants: usize,
    /// Most children of a tree node before new tokens share the `<*>` child (default 100).
    pub max_children: usize,
    /// Most templates kept; the least recently matched are evicted (default 5000).
    pub max_templates: usize,
    /// Longest line looked at, in bytes (default 4096).
    pub max_line_bytes: usize,
    /// Most tokens per line; the last stands for the rest (default 128).
    pub max_tokens: usize,
    /// Sample lines kept per template (default 3).
    pub max_samples: usize,
    /// Longest sample line kept, in bytes (default 256).
    pub sample_max_bytes: usize,
}

impl Default for MinerParams {
    fn default() -> Self {
        let mask = MaskParams::default();
        Self {
            sim_threshold: 0.5,
            depth: 2,
            min_variants: 4,
            max_children: 100,
            max_templates: 5000,
            max_line_bytes: mask.max_line_bytes,
            max_tokens: mask.max_tokens,
            max_samples: 3,
            sample_max_bytes: 256,
        }
    }
}

fn invalid(name: &'static str, message: String) -> Error {
    Error::InvalidParam { name, message }
}

impl MinerParams {
    /// Check every parameter against its allowed range:
    ///
    /// * `sim_threshold`: finite, in `(0, 1]`
    /// * `depth`: 1 ..= [`MAX_DEPTH`]
    /// * `min_variants`: 2 ..= 1000
    /// * `max_children`: 2 ..= 100 000
    /// * `max_templates`: 1 ..= [`MAX_TEMPLATES`]
    /// * `max_line_bytes`, `max_tokens`: see [`MaskParams::validate`]
    /// * `max_samples`: 0 ..= 100; `sample_max_bytes`: 16 ..= 65 536
    pub fn validate(&self) -> Result<()> {
        if !(self.sim_threshold.is_finite() && self.sim_threshold > 0.0 && self.sim_threshold <= 1.0) {
            return Err(invalid(
                "sim_threshold",
                format!("must be greater than 0 and at most 1, got {}", self.sim_threshold),
            ));
        }
        if !(1..=MAX_DEPTH).contains(&self.depth) {
            return Err(invalid("depth", format!("must be between 1 and {MAX_DEPTH}, got {}", self.depth)));
        }
        if !(2..=1000).contains(&self.min_variants) {
            return Err(invalid("min_variants", format!("must be between 2 and 1000, got {}", self.min_variants)));
        }
        if !(2..=100_000).contains(&self.max_children) {
            return Err(invalid("max_children", format!("must be between 2 and 100000, got {}", self.max_children)));
        }
        if !(1..=MAX_TEMPLATES).contains(&self.max_templates) {
            return Err(invalid(
                "max_templates",
                format!("must be between 1 and {MAX_TEMPLATES}, got {}", self.max_templates),
            ));
        }
        self.mask_params().validate()?;
        if self.max_samples > 100 {
            return Err(invalid("max_samples", format!("must be at most 100, got {}", self.max_samples)));
        }
        if !(16..=65_536).contains(&self.sample_max_bytes) {
            return Err(invalid(
                "sample_max_bytes",
                format!("must be between 16 and 65536, got {}", self.sample_max_bytes),
            ));
        }
        Ok(())
    }

    /// The masking limits.
    pub fn mask_params(&self) -> MaskParams {
        MaskParams { max_line_bytes: self.max_line_bytes, max_tokens: self.max_tokens }
    }
}

/// What a line did to the template it matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// A new template was created for the line.
    New,
    /// The line joined a template and made it more general (some tokens became `<*>`).
    Updated,
    /// The line matched a template unchanged.
    Existing,
}

/// The outcome of [`Miner::add`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MatchResult {
    /// The line's template.
    pub template_id: TemplateId,
    /// The template's text after this line, tokens joined by one space (shared with the
    /// miner: cloning it does not copy the text).
    #[serde(serialize_with = "serialize_text")]
    pub template: Arc<str>,
    /// What the line did to the template.
    pub change: Change,
    /// Lines matched by the template so far, this one included.
    pub count: u64,
    /// Templates merged into this one (their texts became equal, or enough variants of a
    /// word were seen to make it a value); lines reported with those ids belong to
    /// `template_id` from now on.
    pub merged: Vec<TemplateId>,
    /// Templates evicted to stay within `max_templates`.
    pub evicted: Vec<TemplateId>,
    /// The line was cut at `max_line_bytes` or `max_tokens`.
    pub truncated: bool,
}

fn serialize_text<S: serde::Serializer>(text: &Arc<str>, serializer: S) -> std::result::Result<S::Ok, S::Error> {
    serializer.serialize_str(text)
}

/// A template as seen through [`Miner::templates`] and [`Miner::get`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TemplateInfo<'a> {
    /// Its id.
    pub id: TemplateId,
    /// Its text.
    pub template: &'a str,
    /// Lines matched.
    pub count: u64,
    /// Sequence number (1-based count of lines added) of its first line.
    pub first_seen: u64,
    /// Sequence number of its latest line.
    pub last_seen: u64,
    /// The first distinct lines it matched, each cut at `sample_max_bytes`.
    pub samples: &'a [String],
}

/// One template in a [`MinerState`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateState {
    /// Its id.
    pub id: TemplateId,
    /// Its text (tokens joined by one space).
    pub template: String,
    /// The tree keys it was inserted under (its first tokens when it was created).
    pub path: Vec<String>,
    /// Lines matched.
    pub count: u64,
    /// Sequence number of its first line.
    pub first_seen: u64,
    /// Sequence number of its latest line.
    pub last_seen: u64,
    /// Sample lines.
    pub samples: Vec<String>,
}

/// Everything a [`Miner`] needs to continue exactly where it stopped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MinerState {
    /// Format version ([`STATE_VERSION`]).
    pub version: u32,
    /// The parameters.
    pub params: MinerParams,
    /// Lines added so far.
    pub lines: u64,
    /// The id the next new template gets.
    pub next_id: TemplateId,
    /// The templates, by id.
    pub templates: Vec<TemplateState>,
}

impl MinerState {
    /// The state as JSON.
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string(self)
            .map_err(|e| Error::InvalidInput { what: "miner state".into(), message: e.to_string() })
    }

    /// Read a state written by [`MinerState::to_json`].
    pub fn from_json(text: &str) -> Result<Self> {
        serde_json::from_str(text)
            .map_err(|e| Error::InvalidInput { what: "miner state".into(), message: e.to_string() })
    }
}

/// A template in the miner.
#[derive(Debug, Clone)]
struct Cluster {
    id: TemplateId,
    /// Tokens joined by one space; shared with the exact-match index.
    text: Arc<str>,
    /// Byte range of every token in `text`.
    spans: Vec<(u32, u32)>,
    /// Number of `<*>` tokens.
    wildcards: usize,
    /// Whether each token has a constant part (a letter outside `<*>`); only those count in
    /// the similarity.
    constant: Vec<bool>,
    /// Tree keys it was inserted under.
    path: Vec<Box<str>>,
    count: u64,
    first_seen: u64,
    last_seen: u64,
    samples: Vec<String>,
}

impl Cluster {
    fn token(&self, i: usize) -> &str {
        self.spans.get(i).and_then(|&(a, b)| self.text.get(a as usize..b as usize)).unwrap_or("")
    }

    fn len(&self) -> usize {
        self.spans.len()
    }

    fn is_constant(&self, i: usize) -> bool {
        self.constant.get(i).copied().unwrap_or(false)
    }

    /// A template with `tokens` as its text, inserted under `path`, with no line yet.
    fn build(id: TemplateId, tokens: &[&str], path: Vec<Box<str>>) -> Self {
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

    fn set_text(&mut self, tokens: &[&str]) {
        let (text, spans) = join(tokens);
        self.wildcards = tokens.iter().filter(|t| **t == WILDCARD).count();
        self.constant = tokens.iter().map(|t| has_constant(t)).collect();
        self.text = Arc::from(text);
        self.spans = spans;
    }

    fn add_sample(&mut self, line: &str, max_samples: usize, max_bytes: usize) {
        if self.samples.len() >= max_samples {
            return;
        }
        let sample = mask::truncate_str(line.trim_end_matches(['\r', '\n']), max_bytes);
        if !self.samples.iter().any(|s| s == sample) {
            self.samples.push(sample.to_string());
        }
    }

    fn info(&self) -> TemplateInfo<'_> {
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
fn join(tokens: &[&str]) -> (String, Vec<(u32, u32)>) {
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
enum Generalized {
    /// The template already matched.
    Unchanged,
    /// Some tokens became `<*>`.
    Changed,
    /// Some tokens became `<*>` and the text is now the text of the template in this slot.
    Collides(usize),
}

/// A node of the parse tree. Leaves (at the end of a path) hold template slots.
#[derive(Debug, Clone, Default)]
struct Node {
    children: FastMap<Box<str>, Node>,
    clusters: Vec<usize>,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.children.is_empty() && self.clusters.is_empty()
    }

    /// Remove `slot` from the leaf at `path`; prune nodes left empty. Returns whether this node
    /// is now empty.
    fn remove(&mut self, path: &[Box<str>], slot: usize) -> bool {
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
fn tree_key(token: &str, kind: Option<TokenKind>) -> &str {
    if kind == Some(TokenKind::Variable) || token.bytes().any(|b| b.is_ascii_digit()) || !has_constant(token) {
        WILDCARD
    } else {
        token
    }
}

/// The streaming template miner. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct Miner {
    params: MinerParams,
    mask: MaskParams,
    /// Template slots; `None` for free slots.
    slots: Vec<Option<Cluster>>,
    free: Vec<usize>,
    /// Slot of every live id.
    by_id: FastMap<TemplateId, usize>,
    /// Slot of every template text (exact-match index).
    by_text: FastMap<Arc<str>, usize>,
    /// Root of the tree: one subtree per token count.
    roots: FastMap<usize, Node>,
    lines: u64,
    next_id: TemplateId,
    live: usize,
    /// Buffer for lines too long for the cache.
    masked: MaskedLine,
    /// Recently masked lines, direct-mapped by a hash of the line (allocated on first use).
    cache: Vec<CacheEntry>,
    cache_state: FastState,
}

/// Lines of at most this many bytes go through the masked-line cache.
const CACHE_LINE_BYTES: usize = 256;

/// Entries of the masked-line cache (a power of two).
const CACHE_ENTRIES: usize = 1024;

/// A line and its masked form. Masking is a pure function of the line, so the cache never
/// changes a result; it spares masking a line that was seen recently (logs repeat).
#[derive(Debug, Clone, Default)]
struct CacheEntry {
    line: String,
    masked: MaskedLine,
    used: bool,
}

impl Miner {
    /// Build an empty miner; fails if `params` do not pass [`MinerParams::validate`].
    pub fn new(params: MinerParams) -> Result<Self> {
        params.validate()?;
        let mask = params.mask_params();
        Ok(Self {
            params,
            mask,
            slots: Vec::new(),
            free: Vec::new(),
            by_id: FastMap::default(),
            by_text: FastMap::default(),
            roots: FastMap::default(),
            lines: 0,
            next_id: 1,
            live: 0,
            masked: MaskedLine::new(),
            cache: Vec::new(),
            cache_state: FastState::default(),
        })
    }

    /// The parameters.
    pub fn params(&self) -> &MinerParams {
        &self.params
    }

    /// Lines added so far.
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// Number of templates kept.
    pub fn len(&self) -> usize {
        self.live
    }

    /// Whether no template is kept.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// A template by id, if it is kept.
    pub fn get(&self, id: TemplateId) -> Option<TemplateInfo<'_>> {
        self.by_id.get(&id).and_then(|&s| self.slot(s)).map(Cluster::info)
    }

    /// The templates, by increasing id.
    pub fn templates(&self) -> impl Iterator<Item = TemplateInfo<'_>> + '_ {
        let mut all: Vec<&Cluster> = self.slots.iter().flatten().collect();
        all.sort_unstable_by_key(|c| c.id);
        all.into_iter().map(Cluster::info)
    }

    fn slot(&self, s: usize) -> Option<&Cluster> {
        self.slots.get(s).and_then(Option::as_ref)
    }

    fn slot_mut(&mut self, s: usize) -> Option<&mut Cluster> {
        self.slots.get_mut(s).and_then(Option::as_mut)
    }

    /// Mine one line (one log message, without its header fields ideally). Never panics,
    /// whatever the bytes.
    pub fn add(&mut self, line: &str) -> MatchResult {
        self.lines = self.lines.saturating_add(1);
        if line.len() <= CACHE_LINE_BYTES {
            if self.cache.is_empty() {
                self.cache.resize_with(CACHE_ENTRIES, CacheEntry::default);
            }
            let slot = (self.cache_state.hash_one(line) as usize) & (CACHE_ENTRIES - 1);
            if let Some(entry) = self.cache.get_mut(slot) {
                let mut entry = std::mem::take(entry);
                if !(entry.used && entry.line == line) {
                    mask::mask_into(line, &self.mask, &mut entry.masked);
                    entry.line.clear();
                    entry.line.push_str(line);
                    entry.used = true;
                }
                let result = self.add_masked(line, &entry.masked);
                if let Some(back) = self.cache.get_mut(slot) {
                    *back = entry;
                }
                return result;
            }
        }
        let mut masked = std::mem::take(&mut self.masked);
        mask::mask_into(line, &self.mask, &mut masked);
        let result = self.add_masked(line, &masked);
        self.masked = masked;
        result
    }

    fn add_masked(&mut self, line: &str, masked: &MaskedLine) -> MatchResult {
        let truncated = masked.truncated();
        // Exact match.
        if let Some(&s) = self.by_text.get(masked.as_str()) {
            return self.record(s, line, Change::Existing, Vec::new(), truncated);
        }
        // The tokens, on the stack for the usual short line.
        let mut stack = [""; 48];
        let heap: Vec<&str>;
        let tokens: &[&str] = if masked.len() <= stack.len() {
            for (slot, t) in stack.iter_mut().zip(masked.tokens()) {
                *slot = t;
            }
            &stack[..masked.len()]
        } else {
            heap = masked.tokens().collect();
            &heap
        };
        let Some(s) = self.search(masked, tokens) else {
            if let Some((s, gap)) = self.gap_search(tokens) {
                return self.join_gap(line, s, gap, tokens, truncated);
            }
            return self.create(line, masked, tokens, truncated);
        };
        let Some(c) = self.slot(s) else {
            return self.create(line, masked, tokens, truncated);
        };
        // Constant words of the template that the line does not have.
        let differing: Vec<usize> = (0..c.len()).filter(|&i| c.is_constant(i) && c.token(i) != tokens[i]).collect();
        let mut merged = Vec::new();
        let mut target = s;
        if !differing.is_empty() && self.params.min_variants > 2 {
            let siblings = self.siblings(s, &differing, tokens);
            if siblings.len() + 2 < self.params.min_variants {
                // Not yet evidence that these words are values: a template of its own, in the
                // same leaf, where later variants will find it. Unless the line is a template
                // of another length with an optional field.
                let path = c.path.clone();
                if let Some((s, gap)) = self.gap_search(tokens) {
                    return self.join_gap(line, s, gap, tokens, truncated);
                }
                return self.create_at(line, path, tokens, truncated);
            }
            for sibling in siblings {
                if self.slot(target).is_some() && self.slot(sibling).is_some() {
                    target = self.merge(target, sibling, &mut merged);
                }
            }
        }
        let change = match self.generalize(target, tokens) {
            Generalized::Unchanged => Change::Existing,
            Generalized::Changed => Change::Updated,
            Generalized::Collides(other) => {
                target = self.merge(target, other, &mut merged);
                Change::Updated
            }
        };
        let change = if merged.is_empty() { change } else { Change::Updated };
        self.record(target, line, change, merged, truncated)
    }

    /// Count the line in template `s` and report it.
    fn record(
        &mut self,
        s: usize,
        line: &str,
        change: Change,
        merged: Vec<TemplateId>,
        truncated: bool,
    ) -> MatchResult {
        let seq = self.lines;
        let (max_samples, sample_bytes) = (self.params.max_samples, self.params.sample_max_bytes);
        match self.slot_mut(s) {
            Some(c) => {
                c.count = c.count.saturating_add(1);
                c.last_seen = seq;
                c.add_sample(line, max_samples, sample_bytes);
                MatchResult {
                    template_id: c.id,
                    template: Arc::clone(&c.text),
                    change,
                    count: c.count,
                    merged,
                    evicted: Vec::new(),
                    truncated,
                }
            }
            // Unreachable: callers pass live slots.
            None => MatchResult {
                template_id: 0,
                template: Arc::from(""),
                change,
                count: 0,
                merged,
                evicted: Vec::new(),
                truncated,
            },
        }
    }

    /// The most similar template for the line in its leaf, if similar enough.
    fn search(&self, masked: &MaskedLine, tokens: &[&str]) -> Option<usize> {
        let node = self.leaf(masked, tokens)?;
        let n = tokens.len().max(1) as f64;
        let mut best: Option<(usize, usize, usize, TemplateId)> = None; // (slot, same, wildcards, id)
        for &s in &node.clusters {
            let Some(c) = self.slot(s) else { continue };
            if c.len() != tokens.len() {
                continue;
            }
            let same = (0..c.len()).filter(|&i| c.is_constant(i) && c.token(i) == tokens[i]).count();
            let better = match best {
                None => true,
                Some((_, bs, bw, bid)) => {
                    (same, c.wildcards, std::cmp::Reverse(c.id)) > (bs, bw, std::cmp::Reverse(bid))
                }
            };
            if better {
                best = Some((s, same, c.wildcards, c.id));
            }
        }
        let (s, same, _, _) = best?;
        let sim = if tokens.is_empty() { 1.0 } else { same as f64 / n };
        (sim >= self.params.sim_threshold).then_some(s)
    }

    /// The leaf a line is searched in.
    fn leaf(&self, masked: &MaskedLine, tokens: &[&str]) -> Option<&Node> {
        let mut node = self.roots.get(&tokens.len())?;
        for (i, token) in tokens.iter().take(self.params.depth).enumerate() {
            let key = tree_key(token, masked.kind(i));
            node = node.children.get(key).or_else(|| node.children.get(WILDCARD))?;
        }
        Some(node)
    }

    /// The leaf that templates of `len` tokens starting like `tokens` are in.
    fn leaf_for(&self, tokens: &[&str], len: usize) -> Option<&Node> {
        let mut node = self.roots.get(&len)?;
        for token in tokens.iter().take(self.params.depth.min(len)) {
            let key = tree_key(token, None);
            node = node.children.get(key).or_else(|| node.children.get(WILDCARD))?;
        }
        Some(node)
    }

    /// A template with 1 ..= [`MAX_GAP`] tokens more or fewer that the line matches with an
    /// optional field left out ([`gap`]): the fewest tokens apart first, then the most equal
    /// constant words, then the oldest.
    fn gap_search(&self, tokens: &[&str]) -> Option<(usize, Gap)> {
        let n = tokens.len();
        let mut template: Vec<&str> = Vec::new();
        for d in 1..=MAX_GAP {
            let mut best: Option<(usize, Gap, TemplateId)> = None;
            for len in [n.checked_sub(d), Some(n + d)].into_iter().flatten() {
                let Some(node) = self.leaf_for(tokens, len) else {
                    continue;
                };
                for &s in &node.clusters {
                    let Some(c) = self.slot(s) else { continue };
                    if c.len() != len {
                        continue;
                    }
                    template.clear();
                    template.extend((0..c.len()).map(|i| c.token(i)));
                    let Some(g) = gap::align(&template, tokens, false) else {
                        continue;
                    };
                    if g.same < 2 || (g.same as f64) < self.params.sim_threshold * n.min(len) as f64 {
                        continue;
                    }
                    if best.is_none_or(|(_, b, id)| (g.same, std::cmp::Reverse(c.id)) > (b.same, std::cmp::Reverse(id)))
                    {
                        best = Some((s, g, c.id));
                    }
                }
            }
            if let Some((s, g, _)) = best {
                return Some((s, g));
            }
        }
        None
    }

    /// The line joins template `s` of another length through `gap`. A longer line leaves the
    /// template's length as it is (a `<*>` next to the gap stands for the field too); a shorter
    /// line makes the template drop the field, and the templates of the old shape that line up
    /// with the new one the same way are merged into it.
    fn join_gap(&mut self, line: &str, s: usize, g: Gap, tokens: &[&str], truncated: bool) -> MatchResult {
        let Some(c) = self.slot(s) else {
            return self.create_unkeyed(line, tokens, truncated);
        };
        let mut merged = Vec::new();
        let mut target = s;
        let mut change = Change::Updated;
        if c.len() < tokens.len() {
            let aligned: Vec<&str> = tokens[..g.start].iter().chain(&tokens[g.start + g.len..]).copied().collect();
            match self.generalize(target, &aligned) {
                Generalized::Collides(other) => target = self.merge(target, other, &mut merged),
                Generalized::Unchanged => change = Change::Existing,
                Generalized::Changed => {}
            }
        } else {
            let (old_len, old_path) = (c.len(), c.path.clone());
            let short: Vec<String> = (0..c.len())
                .filter(|i| !(g.start..g.start + g.len).contains(i))
                .map(|i| c.token(i).to_string())
                .collect();
            target = self.reshape(s, &short, &mut merged);
            if let Generalized::Collides(other) = self.generalize(target, tokens) {
                target = self.merge(target, other, &mut merged);
            }
            target = self.absorb_old_shape(target, old_len, &old_path, &mut merged);
        }
        let change = if merged.is_empty() { change } else { Change::Updated };
        self.record(target, line, change, merged, truncated)
    }

    /// A new template for tokens whose masking kinds are not at hand.
    fn create_unkeyed(&mut self, line: &str, tokens: &[&str], truncated: bool) -> MatchResult {
        let path = self.new_path_with(tokens, |_| None);
        self.create_at(line, path, tokens, truncated)
    }

    /// Give template `s` the text `tokens` (another length): it moves to its new place in the
    /// tree, keeping its id; if another template has that text, the two are merged. Returns
    /// the template's slot.
    fn reshape(&mut self, s: usize, tokens: &[String], merged: &mut Vec<TemplateId>) -> usize {
        let Some(mut c) = self.take(s) else { return s };
        let refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
        c.set_text(&refs);
        c.path = self.new_path_with(&refs, |_| None);
        let other = self.by_text.get(&c.text).copied();
        let slot = self.insert(c);
        match other {
            Some(o) if o != slot => self.merge(slot, o, merged),
            _ => slot,
        }
    }

    /// Merge into `target` the templates of the leaf at `len`, `path` that line up with it
    /// through an optional field (the shapes `target` had before it dropped the field).
    fn absorb_old_shape(
        &mut self,
        mut target: usize,
        len: usize,
        path: &[Box<str>],
        merged: &mut Vec<TemplateId>,
    ) -> usize {
        let Some(mut node) = self.roots.get(&len) else {
            return target;
        };
        for key in path {
            match node.children.get(key) {
                Some(n) => node = n,
                None => return target,
            }
        }
        let mut candidates: Vec<(TemplateId, usize)> =
            node.clusters.iter().filter_map(|&o| self.slot(o).map(|c| (c.id, o))).collect();
        candidates.sort_unstable();
        for (_, o) in candidates {
            let (Some(t), Some(c)) = (self.slot(target), self.slot(o)) else {
                continue;
            };
            if c.len() != len {
                continue;
            }
            let short: Vec<&str> = (0..t.len()).map(|i| t.token(i)).collect();
            let long: Vec<&str> = (0..c.len()).map(|i| c.token(i)).collect();
            let Some(g) = gap::align(&long, &short, true) else {
                continue;
            };
            if g.same < 2 || (g.same as f64) < self.params.sim_threshold * short.len() as f64 {
                continue;
            }
            target = self.merge(target, o, merged);
        }
        target
    }

    /// Templates in the leaf of `s` that differ from it only in the constant words at
    /// `differing` and in values: with those words made `<*>` they and the line would be one
    /// template. One per distinct combination of those words, the line's own excluded.
    fn siblings(&self, s: usize, differing: &[usize], tokens: &[&str]) -> Vec<usize> {
        let Some(t) = self.slot(s) else { return Vec::new() };
        let Some(root) = self.roots.get(&t.len()) else { return Vec::new() };
        let mut node = root;
        for key in &t.path {
            match node.children.get(key) {
                Some(n) => node = n,
                None => return Vec::new(),
            }
        }
        let words = |c: &Cluster| -> Vec<String> { differing.iter().map(|&i| c.token(i).to_string()).collect() };
        let mut seen = vec![words(t), differing.iter().map(|&i| tokens[i].to_string()).collect()];
        let mut candidates: Vec<(TemplateId, usize)> =
            node.clusters.iter().filter_map(|&o| self.slot(o).map(|c| (c.id, o))).filter(|&(_, o)| o != s).collect();
        candidates.sort_unstable();
        let mut out = Vec::new();
        for (_, o) in candidates {
            let Some(c) = self.slot(o) else { continue };
            if c.len() != t.len() {
                continue;
            }
            let compatible = (0..t.len())
                .all(|i| differing.contains(&i) || c.token(i) == t.token(i) || !c.is_constant(i) || !t.is_constant(i));
            if !compatible {
                continue;
            }
            let w = words(c);
            if !seen.contains(&w) {
                seen.push(w);
                out.push(o);
            }
        }
        out
    }

    /// Make template `s` match `tokens`: positions that differ become `<*>`.
    fn generalize(&mut self, s: usize, tokens: &[&str]) -> Generalized {
        let Some(c) = self.slot_mut(s) else { return Generalized::Unchanged };
        if c.len() != tokens.len() || (0..c.len()).all(|i| c.token(i) == WILDCARD || c.token(i) == tokens[i]) {
            return Generalized::Unchanged;
        }
        let old_text = Arc::clone(&c.text);
        let new_tokens: Vec<String> = (0..c.len())
            .map(|i| {
                let t = c.token(i);
                if t == tokens[i] {
                    t.to_string()
                } else {
                    WILDCARD.to_string()
                }
            })
            .collect();
        let refs: Vec<&str> = new_tokens.iter().map(String::as_str).collect();
        c.set_text(&refs);
        let new_text = Arc::clone(&c.text);
        if self.by_text.get(&old_text) == Some(&s) {
            self.by_text.remove(&old_text);
        }
        match self.by_text.get(&new_text) {
            Some(&other) if other != s => Generalized::Collides(other),
            _ => {
                self.by_text.insert(new_text, s);
                Generalized::Changed
            }
        }
    }

    /// Merge templates `a` and `b` into the one with the older id, made general enough for
    /// both; returns the survivor's slot. Merged ids are appended to `merged`.
    fn merge(&mut self, a: usize, b: usize, merged: &mut Vec<TemplateId>) -> usize {
        let (Some(ca), Some(cb)) = (self.slot(a), self.slot(b)) else { return a };
        if a == b {
            return a;
        }
        let (keep, gone) = if cb.id < ca.id { (b, a) } else { (a, b) };
        let Some(g) = self.take(gone) else { return keep };
        merged.push(g.id);
        let max_samples = self.params.max_samples;
        if let Some(k) = self.slot_mut(keep) {
            k.count = k.count.saturating_add(g.count);
            k.first_seen = k.first_seen.min(g.first_seen);
            k.last_seen = k.last_seen.max(g.last_seen);
            for sample in &g.samples {
                if k.samples.len() < max_samples && !k.samples.contains(sample) {
                    k.samples.push(sample.clone());
                }
            }
        }
        let g_tokens: Vec<&str> = (0..g.len()).map(|i| g.token(i)).collect();
        match self.generalize(keep, &g_tokens) {
            Generalized::Collides(other) => self.merge(keep, other, merged),
            Generalized::Changed | Generalized::Unchanged => {
                if let Some(text) = self.slot(keep).map(|k| Arc::clone(&k.text)) {
                    self.by_text.entry(text).or_insert(keep);
                }
                keep
            }
        }
    }

    /// Remove the template in slot `s` from every index and return it.
    fn take(&mut self, s: usize) -> Option<Cluster> {
        let c = self.slots.get_mut(s)?.take()?;
        self.by_id.remove(&c.id);
        if self.by_text.get(&c.text) == Some(&s) {
            self.by_text.remove(&c.text);
        }
        if let Some(root) = self.roots.get_mut(&c.len()) {
            if root.remove(&c.path, s) {
                self.roots.remove(&c.len());
            }
        }
        self.free.push(s);
        self.live = self.live.saturating_sub(1);
        Some(c)
    }

    /// Insert a cluster in a free slot and in every index, at its recorded path.
    fn insert(&mut self, c: Cluster) -> usize {
        let len = c.len();
        let path = c.path.clone();
        let id = c.id;
        let text = Arc::clone(&c.text);
        let s = match self.free.pop() {
            Some(s) => {
                if let Some(slot) = self.slots.get_mut(s) {
                    *slot = Some(c);
                }
                s
            }
            None => {
                self.slots.push(Some(c));
                self.slots.len() - 1
            }
        };
        let mut node = self.roots.entry(len).or_default();
        for key in path {
            node = node.children.entry(key).or_default();
        }
        node.clusters.push(s);
        self.by_id.insert(id, s);
        self.by_text.insert(text, s);
        self.live += 1;
        s
    }

    /// The tree path for a new template: its first `depth` tokens' keys, with the `<*>` child
    /// taking new keys once a node is full.
    fn new_path(&self, masked: &MaskedLine, tokens: &[&str]) -> Vec<Box<str>> {
        self.new_path_with(tokens, |i| masked.kind(i))
    }

    /// [`Miner::new_path`] with the tokens' kinds given by `kind`.
    fn new_path_with(&self, tokens: &[&str], kind: impl Fn(usize) -> Option<TokenKind>) -> Vec<Box<str>> {
        let mut path = Vec::with_capacity(self.params.depth.min(tokens.len()));
        let mut node = self.roots.get(&tokens.len());
        for (i, token) in tokens.iter().take(self.params.depth).enumerate() {
            let mut key = tree_key(token, kind(i));
            if let Some(n) = node {
                if !n.children.contains_key(key) && key != WILDCARD {
                    let has_wildcard = n.children.contains_key(WILDCARD);
                    let room = n.children.len() + usize::from(!has_wildcard) < self.params.max_children;
                    if !room {
                        key = WILDCARD;
                    }
                }
                node = n.children.get(key);
            }
            path.push(Box::from(key));
        }
        path
    }

    fn create(&mut self, line: &str, masked: &MaskedLine, tokens: &[&str], truncated: bool) -> MatchResult {
        let path = self.new_path(masked, tokens);
        self.create_at(line, path, tokens, truncated)
    }

    /// A new template for the line, inserted under `path`.
    fn create_at(&mut self, line: &str, path: Vec<Box<str>>, tokens: &[&str], truncated: bool) -> MatchResult {
        let seq = self.lines;
        let id = self.next_id;
        self.next_id = self.next_id.saturating_add(1);
        let mut c = Cluster::build(id, tokens, path);
        c.count = 1;
        c.first_seen = seq;
        c.last_seen = seq;
        c.add_sample(line, self.params.max_samples, self.params.sample_max_bytes);
        let template = Arc::clone(&c.text);
        self.insert(c);
        let evicted = if self.live > self.params.max_templates { self.evict(id) } else { Vec::new() };
        MatchResult { template_id: id, template, change: Change::New, count: 1, merged: Vec::new(), evicted, truncated }
    }

    /// Evict the least recently matched templates (never `keep`), a batch at a time.
    fn evict(&mut self, keep: TemplateId) -> Vec<TemplateId> {
        let batch = (self.params.max_templates / 64).max(1).max(self.live.saturating_sub(self.params.max_templates));
        let mut candidates: Vec<(u64, TemplateId, usize)> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(s, c)| c.as_ref().filter(|c| c.id != keep).map(|c| (c.last_seen, c.id, s)))
            .collect();
        let batch = batch.min(candidates.len());
        if batch == 0 {
            return Vec::new();
        }
        if batch < candidates.len() {
            candidates.select_nth_unstable(batch - 1);
        }
        candidates.truncate(batch);
        candidates.sort_unstable();
        let mut evicted = Vec::with_capacity(batch);
        for (_, id, s) in candidates {
            if self.take(s).is_some() {
                evicted.push(id);
            }
        }
        evicted
    }

    /// Everything needed to continue later with [`Miner::from_state`].
    pub fn state(&self) -> MinerState {
        let templates = self
            .templates()
            .filter_map(|t| {
                let c = self.by_id.get(&t.id).and_then(|&s| self.slot(s))?;
                Some(TemplateState {
                    id: c.id,
                    template: c.text.to_string(),
                    path: c.path.iter().map(|k| k.to_string()).collect(),
                    count: c.count,
                    first_seen: c.first_seen,
                    last_seen: c.last_seen,
                    samples: c.samples.clone(),
                })
            })
            .collect();
        MinerState {
            version: STATE_VERSION,
            params: self.params.clone(),
            lines: self.lines,
            next_id: self.next_id,
            templates,
        }
    }

    /// Rebuild a miner from a state written by [`Miner::state`]. With the parameters it was
    /// saved with, the miner continues exactly as the saved one would have. The parameters may
    /// also be changed in the state before restoring: templates then keep their ids; with
    /// another `depth` they are keyed by their own first tokens, and beyond a smaller
    /// `max_templates` the least recently matched are dropped. A version, parameters, ids,
    /// texts or counters that no miner could have written are an [`Error::InvalidInput`]
    /// naming the template.
    pub fn from_state(state: MinerState) -> Result<Self> {
        let bad = |what: String, message: String| Error::InvalidInput { what, message };
        if state.version != STATE_VERSION {
            return Err(bad(
                "miner state".into(),
                format!("version {} is not supported (expected {STATE_VERSION})", state.version),
            ));
        }
        let mut miner = Miner::new(state.params)?;
        miner.lines = state.lines;
        miner.next_id = state.next_id;
        for t in state.templates {
            let what = format!("template {} of the miner state", t.id);
            if t.id == 0 || t.id >= state.next_id {
                return Err(bad(
                    what,
                    format!("id must be between 1 and next_id - 1 ({})", state.next_id.saturating_sub(1)),
                ));
            }
            if miner.by_id.contains_key(&t.id) {
                return Err(bad(what, "duplicate id".into()));
            }
            let tokens: Vec<&str> = if t.template.is_empty() { Vec::new() } else { t.template.split(' ').collect() };
            if tokens.iter().any(|tok| tok.is_empty() || tok.bytes().any(|b| b <= 0x20)) {
                return Err(bad(what, "the template has empty tokens or extra whitespace".into()));
            }
            let depth = miner.params.depth.min(tokens.len());
            let path: Vec<Box<str>> = if t.path.len() == depth {
                t.path.into_iter().map(String::into_boxed_str).collect()
            } else {
                // Saved with another `depth`: key the template by its own first tokens.
                tokens.iter().take(depth).map(|tok| Box::from(tree_key(tok, None))).collect()
            };
            if miner.by_text.contains_key(t.template.as_str()) {
                return Err(bad(what, "another template has the same text".into()));
            }
            if t.count == 0 || t.first_seen > t.last_seen || t.last_seen > state.lines {
                return Err(bad(what, "count must be at least 1 and first_seen <= last_seen <= lines".into()));
            }
            let mut c = Cluster::build(t.id, &tokens, path);
            c.count = t.count;
            c.first_seen = t.first_seen;
            c.last_seen = t.last_seen;
            c.samples = t.samples.into_iter().take(miner.params.max_samples).collect();
            miner.insert(c);
        }
        if miner.live > miner.params.max_templates {
            // Saved with a larger `max_templates`.
            miner.evict(0);
        }
        Ok(miner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn miner() -> Miner {
        Miner::new(MinerParams::default()).expect("default params are valid")
    }

    fn ids(m: &mut Miner, lines: &[&str]) -> Vec<TemplateId> {
        lines.iter().map(|l| m.add(l).template_id).collect()
    }

    #[test]
    fn values_share_a_template_and_ids_count_up() {
        let mut m = miner();
        let a = m.add("Received block blk_123 of size 67108864 from /10.251.42.84");
        assert_eq!((a.template_id, a.change, a.count), (1, Change::New, 1));
        assert_eq!(&*a.template, "Received block blk_<*> of size <*> from /<*>");
        let b = m.add("Received block blk_-99 of size 12 from /10.0.0.1");
        assert_eq!((b.template_id, b.change, b.count), (1, Change::Existing, 2));
        let c = m.add("Deleting block blk_5 file /mnt/hadoop/dfs/data/current/blk_5");
        assert_eq!((c.template_id, c.change), (2, Change::New));
        assert_eq!(m.len(), 2);
        let t = m.get(1).expect("template 1");
        assert_eq!((t.count, t.first_seen, t.last_seen), (2, 1, 2));
        assert_eq!(t.samples.len(), 2);
        assert!(m.get(3).is_none());
    }

    #[test]
    fn a_word_becomes_a_value_after_enough_variants() {
        let mut m = miner();
        let first = m.add("Failed password for root from 1.2.3.4 port 22 ssh2");
        let second = m.add("Failed password for admin from 1.2.3.5 port 23 ssh2");
        let third = m.add("Failed password for guest from 1.2.3.6 port 24 ssh2");
        // Three variants: still three templates.
        assert_eq!([first.change, second.change, third.change], [Change::New; 3]);
        assert_eq!((first.template_id, second.template_id, third.template_id), (1, 2, 3));
        let fourth = m.add("Failed password for oracle from 1.2.3.7 port 25 ssh2");
        assert_eq!(fourth.template_id, 1, "merged into the oldest id");
        assert_eq!(fourth.change, Change::Updated);
        assert_eq!(fourth.merged, vec![2, 3]);
        assert_eq!(fourth.count, 4);
        assert_eq!(&*fourth.template, "Failed password for <*> from <*> port <*> ssh2");
        assert_eq!(m.len(), 1);
        // From now on any user matches.
        let fifth = m.add("Failed password for test from 9.9.9.9 port 1 ssh2");
        assert_eq!((fifth.template_id, fifth.change), (1, Change::Existing));
    }

    #[test]
    fn message_words_with_few_variants_stay_apart() {
        let mut m = miner();
        let lines = [
            "[instance: 96abccce-8d1f-4e07-b6d1-4b2ab87e23b4] VM Started (Lifecycle Event)",
            "[instance: 96abccce-8d1f-4e07-b6d1-4b2ab87e23b4] VM Paused (Lifecycle Event)",
            "[instance: b9000564-fe1a-409b-b8cc-1e88b294cd1d] VM Resumed (Lifecycle Event)",
            "[instance: b9000564-fe1a-409b-b8cc-1e88b294cd1d] VM Started (Lifecycle Event)",
        ];
        assert_eq!(ids(&mut m, &lines), [1, 2, 3, 1]);
        // Drain's behaviour: the first difference generalises.
        let mut drain = Miner::new(MinerParams { min_variants: 2, ..MinerParams::default() }).expect("valid");
        assert_eq!(ids(&mut drain, &lines), [1, 1, 1, 1]);
        assert_eq!(drain.get(1).map(|t| t.template), Some("[instance: <*>] VM <*> (Lifecycle Event)"));
    }

    /// An optional parenthesised field, empty in some lines and holding a host name in others,
    /// with textual dates: one event, whatever order the shapes come in.
    #[test]
    fn an_optional_field_and_textual_dates_do_not_split_an_event() {
        let lines = [
            "connection from 24.54.76.216 (24-54-76-216.bflony.adelphia.net) at Sat Jun 18 02:08:10 2005",
            "connection from 222.33.90.199 () at Sun Jul 17 23:21:54 2005",
            "connection from 82.68.222.194 (host194) at Mon Jun 20 03:40:59 2005",
            "connection from 211.72.2.106 () at Tue Jun 21 10:12:40 2005",
            "connection from 82.68.222.195 (gateway) at Wed Jun 22 04:30:04 2005",
            "connection from 24.54.76.217 (h217.example.org) at Thu Jun 23 05:01:00 2005",
            "connection from 10.1.1.1 at Fri Aug 5 11:00:00 2005",
        ];
        let orders: [&[usize]; 3] = [&[0, 1, 2, 3, 4, 5, 6], &[1, 2, 4, 0, 3, 5, 6], &[2, 4, 1, 3, 0, 6, 5]];
        for order in orders {
            let mut m = miner();
            for &i in order {
                m.add(lines[i]);
            }
            let all: Vec<_> = m.templates().map(|t| (t.template.to_string(), t.count)).collect();
            assert_eq!(all.len(), 1, "order {order:?}: {all:?}");
            assert_eq!(all[0].1, 7);
            assert!(all[0].0.starts_with("connection from <*>") && all[0].0.ends_with("at <*>"), "{all:?}");
            // Later lines of every shape match it.
            for l in lines {
                let r = m.add(l);
                assert_eq!((r.template_id, r.merged.len()), (m.templates().next().map_or(0, |t| t.id), 0), "{l}");
            }
        }
    }

    /// A state written before the optional-field and date rules (same format, version 1)
    /// loads, and its templates take the new shapes of their lines.
    #[test]
    fn states_saved_before_the_optional_field_rule_load() {
        let json = r#"{"version":1,"params":{"sim_threshold":0.5,"depth":2,"min_variants":4,"max_children":100,"max_templates":5000,"max_line_bytes":4096,"max_tokens":128,"max_samples":3,"sample_max_bytes":256},"lines":2,"next_id":2,"templates":[{"id":1,"template":"connection from <*> (host1) at Sun Jul <*>","path":["connection","from"],"count":2,"first_seen":1,"last_seen":2,"samples":[]}]}"#;
        let mut m = Miner::from_state(MinerState::from_json(json).expect("parses")).expect("an old state loads");
        assert_eq!(m.get(1).map(|t| t.count), Some(2));
        let r = m.add("connection from 10.0.0.9 (host1) at Sun Jul 17 23:21:54 2005");
        assert_eq!(r.template_id, 2, "the dated shape is new: {r:?}");
        let r = m.add("connection from 10.0.0.9 at Mon Jun 20 03:40:59 2005");
        assert_eq!(r.template_id, 2);
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn a_trailing_field_present_in_some_lines_only() {
        let mut m = miner();
        let a = m.add("Session closed for uid 1001");
        let b = m.add("Session closed for uid 1002 [pid 4321]");
        let c = m.add("Session closed for uid 1003 (pid 77)");
        assert_eq!(b.template_id, a.template_id);
        assert_eq!(c.template_id, a.template_id);
        // Words that are part of the message are not a field.
        let mut m = miner();
        let x = m.add("Failed password for root from 1.2.3.4 port 22 ssh2");
        let y = m.add("Failed password for invalid user admin from 1.2.3.5 port 23 ssh2");
        assert_ne!(x.template_id, y.template_id);
    }

    #[test]
    fn low_similarity_makes_a_new_template() {
        let mut m = Miner::new(MinerParams { min_variants: 2, ..MinerParams::default() }).expect("valid");
        assert_eq!(ids(&mut m, &["a b c d", "a x y z", "a b c e"]), [1, 2, 1]);
        assert_eq!(m.get(1).map(|t| t.template), Some("a b c <*>"));
        // With the default, `e` is a variant of `d` until enough variants are seen.
        let mut m = miner();
        assert_eq!(ids(&mut m, &["a b c d", "a x y z", "a b c e"]), [1, 2, 3]);
    }

    #[test]
    fn merging_keeps_the_older_id_and_follows_collisions() {
        let template = |id: TemplateId, text: &str| TemplateState {
            id,
            template: text.into(),
            path: text.split(' ').take(2).map(str::to_string).collect(),
            count: 1,
            first_seen: id,
            last_seen: id,
            samples: Vec::new(),
        };
        let state = MinerState {
            version: STATE_VERSION,
            params: MinerParams::default(),
            lines: 4,
            next_id: 5,
            templates: vec![
                template(1, "x a z w"),
                template(2, "x y b w"),
                template(3, "x <*> <*> w"),
                template(4, "alpha beta"),
            ],
        };
        let mut m = Miner::from_state(state).expect("valid state");
        let slot = |m: &Miner, id: TemplateId| m.by_id.get(&id).copied().expect("live");
        let mut merged = Vec::new();
        // 2 into 1 gives "x <*> <*> w", which is 3's text, so 3 is merged too.
        let s = m.merge(slot(&m, 2), slot(&m, 1), &mut merged);
        assert_eq!(m.slot(s).map(|c| c.id), Some(1));
        assert_eq!(merged, vec![2, 3]);
        assert_eq!(m.get(1).map(|t| (t.template, t.count, t.last_seen)), Some(("x <*> <*> w", 3, 3)));
        assert_eq!(m.len(), 2);
        // Every index agrees with the slots.
        assert_eq!((m.by_text.len(), m.by_id.len()), (2, 2));
        let restored = Miner::from_state(m.state()).expect("restores");
        assert_eq!(restored.state(), m.state());
    }

    #[test]
    fn short_and_empty_lines() {
        let mut m = miner();
        assert_eq!(ids(&mut m, &["", "   ", "running", "running", "normal", "x"]), [1, 1, 2, 2, 3, 4]);
        assert_eq!(m.get(1).map(|t| t.template), Some(""));
    }

    #[test]
    fn state_round_trip_gives_the_same_future() {
        let mut rng = crate::harness::XorShift64::new(5);
        let words = ["alpha", "beta", "gamma", "delta", "error", "ok", "user", "disk", "node", "start", "stop"];
        let mut lines = Vec::new();
        for i in 0..3000 {
            let n = 2 + (rng.next_u64() % 7) as usize;
            let mut l: Vec<String> =
                (0..n).map(|_| words[(rng.next_u64() % words.len() as u64) as usize].to_string()).collect();
            if i % 3 == 0 {
                l.push(format!("{}", rng.next_u64() % 1000));
            }
            lines.push(l.join(" "));
        }
        let params = MinerParams { max_templates: 200, ..MinerParams::default() };
        let mut a = Miner::new(params.clone()).expect("valid");
        for l in &lines[..1500] {
            a.add(l);
        }
        let json = a.state().to_json().expect("serialises");
        let mut b = Miner::from_state(MinerState::from_json(&json).expect("parses")).expect("restores");
        assert_eq!(a.state(), b.state());
        for l in &lines[1500..] {
            assert_eq!(a.add(l), b.add(l), "line {l}");
        }
        assert_eq!(a.state(), b.state());
        // A miner that never stopped gives the same ids too (ids do not depend on hashing).
        let mut c = Miner::new(params).expect("valid");
        let ids_c: Vec<_> = lines.iter().map(|l| c.add(l).template_id).collect();
        let mut d = Miner::from_state(MinerState::from_json(&json).expect("parses")).expect("restores");
        let mut e = Miner::new(MinerParams { max_templates: 200, ..MinerParams::default() }).expect("valid");
        let ids_e: Vec<_> = lines[..1500]
            .iter()
            .map(|l| e.add(l).template_id)
            .chain(lines[1500..].iter().map(|l| d.add(l).template_id))
            .collect();
        assert_eq!(ids_c, ids_e);
    }

    #[test]
    fn memory_is_bounded_by_max_templates() {
        let params = MinerParams { max_templates: 64, ..MinerParams::default() };
        let mut m = Miner::new(params).expect("valid");
        let mut evicted = Vec::new();
        let mut seen_ids = std::collections::BTreeSet::new();
        for i in 0..5000u64 {
            // Every line but the frequent one shares no word with any other: a new template.
            let line = if i % 10 == 0 {
                "heartbeat ok".to_string()
            } else {
                format!("{} {} {}", word(3 * i), word(3 * i + 1), word(3 * i + 2))
            };
            let r = m.add(&line);
            assert!(m.len() <= 64, "{} templates", m.len());
            evicted.extend(r.evicted.iter().copied());
            if r.change == Change::New {
                assert!(seen_ids.insert(r.template_id), "id {} reused", r.template_id);
            }
        }
        assert!(!evicted.is_empty());
        // The frequent template survives every eviction.
        assert!(m.templates().any(|t| t.template.starts_with("heartbeat ok")));
        for id in &evicted {
            assert!(m.get(*id).is_none());
        }
    }

    /// A distinct word for every number (letters only, so that it is not masked).
    fn word(mut i: u64) -> String {
        let mut s = String::new();
        loop {
            s.push(char::from(b'a' + (i % 26) as u8));
            i /= 26;
            if i == 0 {
                return s;
            }
        }
    }

    #[test]
    fn samples_are_few_distinct_and_cut() {
        let params = MinerParams { max_samples: 2, sample_max_bytes: 16, ..MinerParams::default() };
        let mut m = Miner::new(params).expect("valid");
        for l in ["job 1 done", "job 1 done", "job 2 done", "job 3 done with a long tail that is cut"] {
            m.add(l);
        }
        let t = m.get(1).expect("template");
        assert_eq!(t.samples, ["job 1 done", "job 2 done"]);
        let mut m = Miner::new(MinerParams { sample_max_bytes: 16, ..MinerParams::default() }).expect("valid");
        m.add("a very long line that goes past sixteen bytes");
        assert_eq!(m.get(1).map(|t| t.samples.to_vec()), Some(vec!["a very long line".to_string()]));
    }

    #[test]
    fn params_are_validated() {
        assert!(MinerParams::default().validate().is_ok());
        for (p, name) in [
            (MinerParams { sim_threshold: 0.0, ..MinerParams::default() }, "sim_threshold"),
            (MinerParams { sim_threshold: f64::NAN, ..MinerParams::default() }, "sim_threshold"),
            (MinerParams { depth: 0, ..MinerParams::default() }, "depth"),
            (MinerParams { min_variants: 1, ..MinerParams::default() }, "min_variants"),
            (MinerParams { max_children: 1, ..MinerParams::default() }, "max_children"),
            (MinerParams { max_templates: 0, ..MinerParams::default() }, "max_templates"),
            (MinerParams { max_tokens: 1, ..MinerParams::default() }, "max_tokens"),
            (MinerParams { sample_max_bytes: 1, ..MinerParams::default() }, "sample_max_bytes"),
        ] {
            let err = Miner::new(p).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(err.contains(name), "{err}");
        }
        let partial: MinerParams = serde_json::from_str(r#"{"max_templates": 10}"#).expect("parses");
        assert_eq!(partial, MinerParams { max_templates: 10, ..MinerParams::default() });
        let err = serde_json::from_str::<MinerParams>(r#"{"max_template": 10}"#).map_err(|e| e.to_string());
        assert!(err.is_err_and(|e| e.contains("unknown field `max_template`")));
    }

    #[test]
    fn bad_states_are_rejected_with_the_template_named() {
        let mut m = miner();
        m.add("disk full on sda");
        m.add("disk ok on sdb");
        let good = m.state();
        let check = |f: &dyn Fn(&mut MinerState), want: &str| {
            let mut s = good.clone();
            f(&mut s);
            let err = Miner::from_state(s).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(err.contains(want), "{err} should mention {want}");
        };
        check(&|s| s.version = 99, "version 99");
        check(&|s| s.templates[1].id = s.templates[0].id, "duplicate id");
        check(&|s| s.templates[0].id = 1000, "template 1000");
        check(&|s| s.templates[0].template = "a  b".into(), "empty tokens");
        check(&|s| s.templates[1].template = s.templates[0].template.clone(), "same text");
        check(&|s| s.templates[0].count = 0, "count");
        check(&|s| s.params.depth = 0, "depth");
        assert!(MinerState::from_json("{").is_err());
        assert!(Miner::from_state(good).is_ok());
    }

    #[test]
    fn states_can_be_restored_with_new_settings() {
        let mut m = miner();
        for l in ["disk full on sda", "disk ok on sdb", "user 1 logged in", "user 2 logged in", "fan 3 failed"] {
            m.add(l);
        }
        let mut state = m.state();
        state.params.depth = 3;
        state.params.max_templates = 2;
        let mut r = Miner::from_state(state).expect("restores with new settings");
        assert_eq!(r.len(), 2);
        // The most recently matched survive, with their ids.
        assert_eq!(r.templates().map(|t| t.id).collect::<Vec<_>>(), [3, 4]);
        assert_eq!(r.add("user 7 logged in").template_id, 3);
        assert_eq!(r.add("fan 9 failed").template_id, 4);
    }

    #[test]
    fn results_serialise() {
        let mut m = miner();
        let r = m.add("hello 42");
        let v = serde_json::to_value(&r).expect("serialises");
        assert_eq!(v["template"], "hello <*>");
        assert_eq!(v["change"], "new");
        assert_eq!(v["template_id"], 1);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Arbitrary lines never panic, stay within the bounds, and restore identically.
        #[test]
        fn arbitrary_lines(lines in prop::collection::vec(prop_oneof![
            prop::collection::vec(any::<u8>(), 0..200).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
            "[a-c0-9 .:=/_-]{0,60}",
            "(GET|PUT|error|ok|user) [a-z]{1,3} [0-9]{1,4} (done|failed)",
        ], 0..120), max_templates in 1usize..20, min_variants in 2usize..6) {
            let params = MinerParams { max_templates, min_variants, max_tokens: 12, max_line_bytes: 64, ..MinerParams::default() };
            let mut m = Miner::new(params).expect("valid");
            let half = lines.len() / 2;
            for l in &lines[..half] {
                let r = m.add(l);
                prop_assert!(m.len() <= max_templates);
                prop_assert!(m.get(r.template_id).is_some());
                prop_assert!(r.template.split(' ').count() <= 12);
            }
            let mut restored = Miner::from_state(m.state()).expect("restores");
            for l in &lines[half..] {
                prop_assert_eq!(m.add(l), restored.add(l));
                prop_assert!(m.len() <= max_templates);
            }
            prop_assert_eq!(m.templates().count(), m.len());
        }
    }
}
