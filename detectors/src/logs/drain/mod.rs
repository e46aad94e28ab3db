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

mod state;

mod matching;

mod cluster;
use cluster::*;

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
}

#[cfg(test)]
mod tests;
