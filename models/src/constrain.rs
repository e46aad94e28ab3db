//! Grounded by construction: constrained decoding for summaries.
//!
//! Checking a small model's free text afterwards ([`crate::grounding`]) rejected nearly all of
//! it: models invent numbers, drop citations, or name things the evidence does not contain.
//! Here the decoder cannot write such a sentence in the first place:
//!
//! * **Citations are chosen by the code.** [`plan`] picks, from the ranking, what each sentence
//!   is about and which evidence ids it cites: what broke (the symptom's anomaly), the most
//!   probable cause (the top candidate's other evidence) and what Warden did (an action item).
//!   The model writes the sentence body; when it ends the sentence, the code appends the
//!   citation (` [E2, E5].`) and feeds it to the model, which then starts the next sentence.
//! * **Words are masked.** Inside a sentence, a token is allowed only when the text it adds
//!   keeps every word a prefix of an allowed word ([`WordTrie`]): a fixed vocabulary of
//!   function and operations words ([`VOCABULARY`]) plus the literal fields (names, versions,
//!   numbers, times) of the evidence lines of the items the sentence cites. So no name, number
//!   or time from anywhere else can be produced, and no directive or prompt word either.
//!   Vocabulary words that the grounding check would read as a fact of this incident (a
//!   subject happens to be called `cart`) are removed unless the cited items contain them.
//! * **Token texts** are computed from the vocabulary once per model ([`TokenTexts`]), for
//!   SentencePiece vocabularies (`▁` for a space, `<0xNN>` byte tokens: Llama 2, Gemma) and
//!   byte-level BPE ones (`Ġ` for a space, GPT-2's byte alphabet: SmolLM2, Llama 3, Qwen).
//!   Only ASCII text is allowed; special tokens never are, except the end-of-turn tokens,
//!   which end the summary at a sentence boundary.
//!
//! The grounding check stays the final gate (a sentence can still be, say, an imperative
//! literal) and the deterministic template the fallback. Nothing here depends on the model's
//! size or family: a 135M model and a 3B one get the same guarantees.

use std::collections::HashSet;
use std::rc::Rc;

use warden_detectors::rca::{Evidence, Payload};

use crate::grounding::{Checker, IMPERATIVES};
use crate::prompt::{evidence_line, SummaryInput};

/// One sentence to write: the ids it cites and the words it may use.
#[derive(Debug, Clone)]
pub struct SentencePlan {
    /// What the sentence is about, for the prompt hint (`what broke`, ...).
    pub role: &'static str,
    /// Evidence ids appended as its citation.
    pub citations: Vec<String>,
    /// The words it may use.
    pub trie: WordTrie,
    /// Whether a sentence may start with the word (imperatives may not).
    pub forbidden_first: HashSet<String>,
    /// The literal words of the cited items: a sentence must state one of them before it may
    /// end (a sentence without a fact says nothing).
    pub facts: HashSet<String>,
}

/// The sentences of a constrained summary, in order.
#[derive(Debug, Clone)]
pub struct Plan {
    pub sentences: Vec<SentencePlan>,
    /// Words a sentence needs before it may end.
    pub min_words: usize,
    /// Words after which a sentence must end.
    pub max_words: usize,
}

impl Plan {
    /// The citation text appended after sentence `i`: ` [E2, E5].`
    pub fn citation(&self, i: usize) -> String {
        self.sentences.get(i).map_or_else(String::new, |s| format!(" [{}].", s.citations.join(", ")))
    }
}

/// Function words and operations words every sentence may use. Imperatives, advice words and
/// names are not here (see the module docs).
pub const VOCABULARY: &[&str] = &[
    "a",
    "an",
    "the",
    "and",
    "or",
    "of",
    "on",
    "in",
    "at",
    "to",
    "from",
    "by",
    "for",
    "with",
    "as",
    "after",
    "before",
    "then",
    "than",
    "while",
    "when",
    "which",
    "that",
    "this",
    "these",
    "was",
    "were",
    "is",
    "are",
    "has",
    "had",
    "have",
    "been",
    "be",
    "being",
    "its",
    "their",
    "it",
    "they",
    "not",
    "no",
    "but",
    "also",
    "into",
    "over",
    "up",
    "down",
    "out",
    "more",
    "most",
    "less",
    "first",
    "next",
    "same",
    "both",
    "each",
    "all",
    "about",
    "around",
    "later",
    "earlier",
    "shortly",
    "soon",
    "within",
    "until",
    "since",
    "between",
    "during",
    "above",
    "below",
    "one",
    "two",
    "only",
    "still",
    "again",
    "there",
    "so",
    "per",
    "its",
    "same",
    "other",
    "new",
    "old",
    "latency",
    "errors",
    "error",
    "rate",
    "requests",
    "request",
    "responses",
    "response",
    "memory",
    "cpu",
    "disk",
    "network",
    "restarts",
    "container",
    "containers",
    "pod",
    "pods",
    "node",
    "nodes",
    "service",
    "services",
    "workload",
    "deployment",
    "rollout",
    "version",
    "image",
    "release",
    "change",
    "changed",
    "config",
    "configuration",
    "secret",
    "anomaly",
    "anomalies",
    "spike",
    "spiked",
    "rose",
    "increased",
    "decreased",
    "dropped",
    "fell",
    "jumped",
    "grew",
    "exceeded",
    "reached",
    "limit",
    "limits",
    "killed",
    "crashed",
    "crashing",
    "failed",
    "failing",
    "failure",
    "failures",
    "timed",
    "timeouts",
    "timeout",
    "slow",
    "slower",
    "high",
    "higher",
    "low",
    "lower",
    "normal",
    "expected",
    "observed",
    "value",
    "values",
    "level",
    "started",
    "began",
    "followed",
    "preceded",
    "probable",
    "probably",
    "likely",
    "cause",
    "caused",
    "causing",
    "because",
    "due",
    "root",
    "symptom",
    "evidence",
    "shows",
    "showed",
    "recorded",
    "reported",
    "seen",
    "logged",
    "log",
    "logs",
    "event",
    "events",
    "message",
    "messages",
    "warning",
    "warnings",
    "pattern",
    "template",
    "count",
    "times",
    "replicas",
    "replica",
    "scaled",
    "restarted",
    "ran",
    "playbook",
    "step",
    "action",
    "status",
    "done",
    "incident",
    "metric",
    "metrics",
    "degraded",
    "unavailable",
    "outage",
    "traffic",
    "load",
    "throughput",
    "saturation",
    "queue",
    "connections",
    "upstream",
    "downstream",
    "dependency",
    "calls",
    "call",
    "period",
    "minutes",
    "seconds",
    "shortly",
    "updated",
    "rolled",
    "new",
    "changes",
    "made",
    "happened",
    "occurred",
    "detected",
    "affected",
    "affecting",
    "impact",
    "degradation",
    "increase",
    "decrease",
    "drop",
    "rise",
    "resulting",
    "led",
    "leading",
    "pressure",
    "ready",
    "running",
    "usage",
    "utilization",
    "killed",
    "oom",
    "out-of-memory",
    "ms",
    "percent",
];

/// Literal words of one evidence item: the tokens of its evidence line (not its id) and their
/// parts (`registry.example/shop/checkout:1.5.0` gives `checkout` and `1.5.0` too), times also
/// without seconds and zone (`10:02:30Z`, `10:02:30`, `10:02`). Only ASCII words are kept (the
/// decoder writes ASCII only).
pub fn literals(e: &Evidence) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |w: &str| {
        let w = w.trim_matches(|c: char| !c.is_ascii_alphanumeric());
        if !w.is_empty() && w.is_ascii() && !out.iter().any(|x| x == w) {
            out.push(w.to_string());
        }
    };
    let line = evidence_line(e);
    let mut previous = "";
    for (i, raw) in line.split_whitespace().enumerate() {
        let after_z = std::mem::replace(&mut previous, raw) == "(z";
        if i == 0 {
            continue; // the id
        }
        // The z-score is a statistic for the ranking, not a fact for the prose: a small model
        // given it writes it as the observed value ("observed 81.5 seconds").
        if after_z || raw == "(z" {
            continue;
        }
        let tok = raw.trim_matches(|c: char| matches!(c, '(' | ')' | ',' | ';'));
        add(tok);
        if let Some(t) = tok.strip_suffix('Z') {
            if t.len() == 8 && t.as_bytes().get(2) == Some(&b':') {
                add(t);
                add(&t[..5]);
            }
        }
        // A time is one fact: its parts (`30Z`) are not.
        if !tok.starts_with(|c: char| c.is_ascii_digit()) || !tok.contains(':') {
            for part in tok.split(['/', ':', '=', '@', ',']) {
                add(part);
            }
        }
    }
    if let Payload::Action { .. } = e.payload {
        add("Warden");
    }
    out
}

/// Build the sentence plan for `input`, or `None` when there is nothing to write about (no
/// ranking, no evidence). See the module docs.
pub fn plan(input: &SummaryInput<'_>) -> Option<Plan> {
    let ev = input.evidence;
    let top = input.ranking.candidates.first()?;
    let find = |id: &str| ev.iter().find(|e| e.id == id);
    let top_items: Vec<&Evidence> = top.evidence.iter().filter_map(|id| find(id)).collect();
    if top_items.is_empty() {
        return None;
    }
    let is_anomaly = |e: &&Evidence| matches!(e.payload, Payload::Anomaly { .. });
    let is_action = |e: &&Evidence| matches!(e.payload, Payload::Action { .. });
    let mut groups: Vec<(&'static str, Vec<&Evidence>)> = Vec::new();
    let broke: Option<&Evidence> = top_items
        .iter()
        .copied()
        .filter(is_anomaly)
        .find(|e| input.symptom == Some(&e.subject))
        .or_else(|| top_items.iter().copied().find(is_anomaly))
        .or_else(|| ev.iter().filter(is_anomaly).find(|e| input.symptom == Some(&e.subject)));
    if let Some(e) = broke {
        groups.push(("what broke", vec![e]));
    }
    let cause: Vec<&Evidence> = top_items
        .iter()
        .copied()
        .filter(|e| !is_anomaly(e) && !is_action(e) && !matches!(e.payload, Payload::Topology { .. }))
        .take(2)
        .collect();
    if !cause.is_empty() {
        groups.push(("the most probable cause", cause));
    } else if !top_items.iter().any(|e| broke.is_some_and(|b| b.id == e.id)) {
        groups.push(("the most probable cause", top_items.iter().copied().take(2).collect()));
    }
    if let Some(a) = ev.iter().find(is_action) {
        groups.push(("what Warden did", vec![a]));
    }

    let checker = Checker::new(ev);
    let mut sentences = Vec::new();
    for (role, items) in groups {
        let mut lits: Vec<String> = Vec::new();
        for e in &items {
            for w in literals(e) {
                if !lits.contains(&w) {
                    lits.push(w);
                }
            }
        }
        let mut words: Vec<String> = Vec::new();
        for w in VOCABULARY {
            // A vocabulary word that reads as a fact of this incident may be said only when
            // the cited items contain it.
            let lower = w.to_ascii_lowercase();
            if checker.states_fact(w) && !lits.iter().any(|l| l.eq_ignore_ascii_case(w)) {
                continue;
            }
            words.push(lower);
        }
        words.extend(lits.iter().cloned());
        let mut all: Vec<String> = Vec::with_capacity(words.len() * 2);
        for w in &words {
            all.push(w.clone());
            all.push(capitalize(w));
            all.push(w.to_ascii_lowercase());
        }
        sentences.push(SentencePlan {
            role,
            citations: items.iter().map(|e| e.id.clone()).collect(),
            trie: WordTrie::new(all.iter().map(String::as_str)),
            forbidden_first: IMPERATIVES.iter().map(|w| w.to_string()).collect(),
            facts: lits.iter().filter(|l| !VOCABULARY.contains(&l.to_ascii_lowercase().as_str())).cloned().collect(),
        });
    }
    if sentences.is_empty() {
        return None;
    }
    Some(Plan { sentences, min_words: 4, max_words: 28 })
}

fn capitalize(w: &str) -> String {
    let mut c = w.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// The word trie.

/// A byte trie of allowed words. A decoding state is a node; a token is walked through it.
#[derive(Debug, Clone, Default)]
pub struct WordTrie {
    nodes: Vec<TrieNode>,
}

#[derive(Debug, Clone, Default)]
struct TrieNode {
    children: Vec<(u8, u32)>,
    terminal: bool,
}

impl WordTrie {
    pub fn new<'a>(words: impl IntoIterator<Item = &'a str>) -> Self {
        let mut t = Self { nodes: vec![TrieNode::default()] };
        for w in words {
            if !w.is_empty() && w.bytes().all(is_word_byte) {
                t.insert(w);
            }
        }
        t
    }

    fn insert(&mut self, w: &str) {
        let mut n = 0usize;
        for b in w.bytes() {
            n = match self.child(n, b) {
                Some(c) => c,
                None => {
                    let id = self.nodes.len();
                    self.nodes.push(TrieNode::default());
                    self.nodes[n].children.push((b, id as u32));
                    id
                }
            };
        }
        self.nodes[n].terminal = true;
    }

    fn child(&self, n: usize, b: u8) -> Option<usize> {
        self.nodes.get(n)?.children.iter().find(|(c, _)| *c == b).map(|(_, i)| *i as usize)
    }

    fn terminal(&self, n: usize) -> bool {
        self.nodes.get(n).is_some_and(|x| x.terminal)
    }

    fn children(&self, n: usize) -> &[(u8, u32)] {
        self.nodes.get(n).map_or(&[], |x| x.children.as_slice())
    }

    /// Whether `w` is an allowed word.
    pub fn contains(&self, w: &str) -> bool {
        let mut n = 0;
        for b in w.bytes() {
            match self.child(n, b) {
                Some(c) => n = c,
                None => return false,
            }
        }
        self.terminal(n)
    }
}

/// Bytes that are part of a word (names, versions, numbers and times included).
fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/' | b':' | b'%' | b'@' | b'+' | b'\'')
}

// ---------------------------------------------------------------------------------------------
// Sentence decoding state.

/// Where a sentence stands: the trie node of the word being written, the words so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentenceState {
    node: usize,
    /// Bytes of the current word (for the first-word rule).
    word: String,
    words: usize,
    /// Words written that are facts of the cited items.
    facts: usize,
    /// The last byte written (no double spaces or commas).
    last: u8,
    /// The words written, lowercased, and the words that would now make the sentence loop
    /// (the grounding check's rule 5: three words twice, a number three times), kept as it is
    /// written. Shared between the copies the mask makes of a state.
    said: Rc<Vec<String>>,
    forbidden: Rc<Vec<String>>,
}

/// What a token does to a sentence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The sentence goes on.
    Continue,
    /// The token ends the sentence (`.`, ` [`); its text is not kept.
    End,
}

impl Default for SentenceState {
    fn default() -> Self {
        Self::new()
    }
}

impl SentenceState {
    pub fn new() -> Self {
        Self {
            node: 0,
            word: String::new(),
            words: 0,
            facts: 0,
            last: 0,
            said: Rc::new(Vec::new()),
            forbidden: Rc::new(Vec::new()),
        }
    }

    /// Words written so far (the word being written not counted).
    pub fn words(&self) -> usize {
        self.words
    }

    /// Whether `word` would make the sentence loop (see [`crate::grounding`], rule 5).
    fn repeats(&self, word: &str) -> bool {
        self.forbidden.iter().any(|f| f.eq_ignore_ascii_case(word))
    }

    /// Records a closed word and what may not follow it.
    fn remember(&mut self, word: &str) {
        let said = Rc::make_mut(&mut self.said);
        said.push(word.to_ascii_lowercase());
        let mut forbidden: Vec<String> = Vec::new();
        if let [.., a, b] = said.as_slice() {
            for t in said.windows(3) {
                if &t[0] == a && &t[1] == b {
                    forbidden.push(t[2].clone());
                }
            }
        }
        for w in said.iter().filter(|w| w.bytes().any(|c| c.is_ascii_digit())) {
            if said.iter().filter(|x| *x == w).count() >= 2 && !forbidden.contains(w) {
                forbidden.push(w.clone());
            }
        }
        self.forbidden = Rc::new(forbidden);
    }

    /// Whether the sentence may end here.
    pub fn can_end(&self, s: &SentencePlan, plan: &Plan) -> bool {
        let complete = self.word.is_empty() || (s.trie.terminal(self.node) && !self.repeats(&self.word));
        let words = self.words + usize::from(!self.word.is_empty());
        let facts = self.facts + usize::from(!self.word.is_empty() && s.facts.contains(&self.word));
        complete
            && self.last != b','
            && words >= plan.min_words
            && (facts > 0 || s.facts.is_empty())
            && (words > 1 || !self.first_word_forbidden(s))
    }

    /// Lookahead that keeps every allowed state able to end: the word being written must
    /// still be able to become a word the sentence may use — one that does not make it loop
    /// ([`Self::repeats`]) and, once the sentence has used all its words but one and still
    /// names no fact of its evidence, a fact. Without it a model can walk into a sentence
    /// that can neither go on nor end, and the whole sentence is lost.
    fn word_can_still_end(&self, s: &SentencePlan, plan: &Plan) -> bool {
        let needs_fact = self.words >= plan.max_words && self.facts == 0 && !s.facts.is_empty();
        if needs_fact && !s.facts.iter().any(|f| f.starts_with(self.word.as_str())) {
            return false;
        }
        let prefix = self.word.as_bytes();
        if !self
            .forbidden
            .iter()
            .any(|f| f.len() >= prefix.len() && f.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix))
        {
            return true;
        }
        // Depth-first through the words this prefix can become, until one will do; the
        // words a sentence may not repeat are few, so this usually stops at the first.
        let mut stack = vec![(self.node, self.word.clone())];
        let mut visited = 0;
        while let Some((node, word)) = stack.pop() {
            if s.trie.terminal(node) && !self.repeats(&word) && (!needs_fact || s.facts.contains(&word)) {
                return true;
            }
            visited += 1;
            if visited > 4096 {
                return true;
            }
            for (b, child) in s.trie.children(node) {
                let mut w = word.clone();
                w.push(*b as char);
                stack.push((*child as usize, w));
            }
        }
        false
    }

    fn first_word_forbidden(&self, s: &SentencePlan) -> bool {
        self.words == 0 && s.forbidden_first.contains(&self.word.to_ascii_lowercase())
    }

    /// Ends the current word; false when it is not an allowed word.
    fn close_word(&mut self, s: &SentencePlan, plan: &Plan) -> bool {
        if self.word.is_empty() {
            return true;
        }
        if !s.trie.terminal(self.node) || self.first_word_forbidden(s) || self.repeats(&self.word) {
            return false;
        }
        let word = std::mem::take(&mut self.word);
        self.remember(&word);
        self.word = word;
        self.words += 1;
        if s.facts.contains(&self.word) {
            self.facts += 1;
        }
        self.word.clear();
        self.node = 0;
        self.words <= plan.max_words
    }

    /// A cheap test on a token's first two bytes that rejects most of a vocabulary without
    /// simulating it (true: certainly not allowed).
    fn quick_reject(&self, bytes: &[u8], s: &SentencePlan) -> bool {
        let trie = &s.trie;
        let starts_word = |node: usize, b: Option<&u8>| match b {
            Some(&b) if is_word_byte(b) => trie.child(node, b).is_none(),
            _ => false,
        };
        match bytes.first() {
            Some(&b) if is_word_byte(b) && b != b'.' => match trie.child(self.node, b) {
                None => true,
                Some(n) => self.last == b',' || starts_word(n, bytes.get(1)),
            },
            Some(b' ') => {
                self.last == b' '
                    || (!self.word.is_empty() && !trie.terminal(self.node))
                    || starts_word(0, bytes.get(1))
            }
            _ => false,
        }
    }

    /// Applies `text` (one token's text). `None`: the token is not allowed.
    pub fn advance(&self, text: &str, s: &SentencePlan, plan: &Plan) -> Option<(SentenceState, Step)> {
        let mut st = self.clone();
        let bytes = text.as_bytes();
        for (i, &b) in bytes.iter().enumerate() {
            let rest_blank = bytes[i + 1..].iter().all(|c| *c == b' ' || *c == b'\n');
            match b {
                b'.' if rest_blank && st.can_end(s, plan) => return Some((st, Step::End)),
                b'[' if st.can_end(s, plan) => {
                    return Some((st, Step::End));
                }
                b' ' | b',' => {
                    if st.last == b' ' || (b == b',' && (st.last == b',' || (st.word.is_empty() && st.words == 0))) {
                        return None;
                    }
                    if !st.close_word(s, plan) {
                        return None;
                    }
                }
                b if is_word_byte(b) => {
                    if st.last == b',' {
                        return None; // `a,b` would read as one word
                    }
                    st.node = s.trie.child(st.node, b)?;
                    st.word.push(b as char);
                    if !st.word_can_still_end(s, plan) {
                        return None;
                    }
                }
                _ => return None,
            }
            st.last = b;
        }
        Some((st, Step::Continue))
    }
}

// ---------------------------------------------------------------------------------------------
// Token texts.

/// How a vocabulary writes text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenStyle {
    /// SentencePiece: `▁` is a space, `<0xNN>` a byte.
    SentencePiece,
    /// Byte-level BPE: GPT-2's byte-to-character alphabet (`Ġ` is a space).
    ByteLevel,
}

/// The text each token adds, for the tokens the mask may allow (ASCII, not special).
#[derive(Debug, Clone)]
pub struct TokenTexts {
    texts: Vec<Option<String>>,
    pub style: TokenStyle,
}

impl TokenTexts {
    /// From the vocabulary pieces by id; `special` ids get no text. The style is recognised
    /// from the pieces (which space marker is more common).
    pub fn new(pieces: &[String], special: &HashSet<u32>) -> Self {
        let spm = pieces.iter().filter(|p| p.starts_with('\u{2581}')).count();
        let bl = pieces.iter().filter(|p| p.starts_with('Ġ')).count();
        let style = if spm > bl { TokenStyle::SentencePiece } else { TokenStyle::ByteLevel };
        let inverse = byte_level_inverse();
        let texts = pieces
            .iter()
            .enumerate()
            .map(|(id, p)| {
                if u32::try_from(id).is_ok_and(|id| special.contains(&id)) {
                    return None;
                }
                let t = match style {
                    TokenStyle::SentencePiece => sentencepiece_text(p),
                    TokenStyle::ByteLevel => byte_level_text(p, &inverse),
                }?;
                (!t.is_empty() && t.is_ascii()).then_some(t)
            })
            .collect();
        Self { texts, style }
    }

    pub fn len(&self) -> usize {
        self.texts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }

    /// The text of token `id`, when it may ever be allowed.
    pub fn get(&self, id: usize) -> Option<&str> {
        self.texts.get(id).and_then(|t| t.as_deref())
    }

    /// Token ids allowed in `state`, and whether each ends the sentence.
    pub fn allowed(&self, state: &SentenceState, s: &SentencePlan, plan: &Plan) -> Vec<(u32, Step)> {
        let mut out = Vec::new();
        for (id, t) in self.texts.iter().enumerate() {
            let Some(t) = t else { continue };
            if state.quick_reject(t.as_bytes(), s) {
                continue;
            }
            if let Some((_, step)) = state.advance(t, s, plan) {
                if let Ok(id) = u32::try_from(id) {
                    out.push((id, step));
                }
            }
        }
        out
    }
}

fn sentencepiece_text(p: &str) -> Option<String> {
    if let Some(hex) = p.strip_prefix("<0x").and_then(|r| r.strip_suffix('>')) {
        let b = u8::from_str_radix(hex, 16).ok()?;
        return b.is_ascii().then(|| (b as char).to_string());
    }
    Some(p.replace('\u{2581}', " "))
}

/// GPT-2's character-to-byte table.
fn byte_level_inverse() -> std::collections::HashMap<char, u8> {
    let mut bs: Vec<u32> = (33..=126).chain(161..=172).chain(174..=255).collect();
    let mut cs = bs.clone();
    let mut n = 0;
    for b in 0..=255u32 {
        if !bs.contains(&b) {
            bs.push(b);
            cs.push(256 + n);
            n += 1;
        }
    }
    bs.into_iter().zip(cs).filter_map(|(b, c)| Some((char::from_u32(c)?, u8::try_from(b).ok()?))).collect()
}

fn byte_level_text(p: &str, inverse: &std::collections::HashMap<char, u8>) -> Option<String> {
    let bytes: Option<Vec<u8>> = p.chars().map(|c| inverse.get(&c).copied()).collect();
    String::from_utf8(bytes?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grounding;
    use crate::prompt::tests::{checkout, incident, input};

    fn toy_plan(words: &[&str]) -> (Plan, SentencePlan) {
        let s = SentencePlan {
            role: "test",
            citations: vec!["E1".into()],
            trie: WordTrie::new(words.iter().copied()),
            forbidden_first: ["scale".to_string(), "Scale".to_string()].into_iter().collect(),
            facts: HashSet::new(),
        };
        (Plan { sentences: vec![s.clone()], min_words: 2, max_words: 5 }, s)
    }

    fn walk(pieces: &[&str], texts: &TokenTexts, plan: &Plan, s: &SentencePlan) -> Option<Step> {
        let mut st = SentenceState::new();
        let mut last = Step::Continue;
        for p in pieces {
            let id = texts.texts.iter().position(|t| t.as_deref() == Some(*p)).unwrap_or(usize::MAX);
            let t = texts.get(id)?;
            let (next, step) = st.advance(t, s, plan)?;
            st = next;
            last = step;
        }
        Some(last)
    }

    #[test]
    fn trie_admits_whole_words_only() {
        let t = WordTrie::new(["latency", "rose", "to", "2.1", "10:02", "shop/checkout", "bad word"]);
        assert!(t.contains("latency") && t.contains("2.1") && t.contains("shop/checkout") && t.contains("10:02"));
        assert!(!t.contains("late") && !t.contains("2") && !t.contains("bad word"));
    }

    #[test]
    fn sentencepiece_and_byte_level_vocabularies() {
        let words = ["Latency", "latency", "rose", "to", "2.1", "at", "10:02"];
        let (plan, s) = toy_plan(&words);
        // SentencePiece: ▁ is a space, <0x2E> is `.`.
        let spm: Vec<String> = [
            "<s>",
            "\u{2581}Lat",
            "ency",
            "\u{2581}rose",
            "\u{2581}to",
            "\u{2581}2",
            ".",
            "1",
            "\u{2581}at",
            "\u{2581}10",
            ":",
            "02",
            "<0x2E>",
            "\u{2581}fell",
            "\u{2581}late",
            "\u{2581}\u{2581}",
            "é",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let special: HashSet<u32> = [0].into_iter().collect();
        let tt = TokenTexts::new(&spm, &special);
        assert_eq!(tt.style, TokenStyle::SentencePiece);
        assert_eq!(tt.get(0), None);
        assert_eq!(tt.get(12), Some("."));
        assert_eq!(tt.get(16), None, "non-ASCII never allowed");
        assert_eq!(
            walk(&[" Lat", "ency", " rose", " to", " 2", ".", "1", " at", " 10", ":", "02", "."], &tt, &plan, &s),
            Some(Step::End)
        );
        assert_eq!(walk(&[" Lat", "ency", " fell"], &tt, &plan, &s), None, "unknown word");
        assert_eq!(walk(&[" Lat", "ency", " rose", " late"], &tt, &plan, &s), Some(Step::Continue), "a prefix");
        assert_eq!(walk(&[" Lat", "ency", " rose", " late", "."], &tt, &plan, &s), None, "but no whole word");
        assert_eq!(walk(&[" Lat", "ency", " rose", " to", " 2", " at"], &tt, &plan, &s), None, "`2` alone is no word");
        assert_eq!(walk(&[" Lat", "ency", "."], &tt, &plan, &s), None, "too short to end");

        // Byte-level BPE: Ġ is a space, Ċ a newline.
        let bl: Vec<String> = [
            "<|im_end|>",
            "ĠLat",
            "ency",
            "Ġrose",
            "Ġto",
            "Ġ2",
            ".",
            "1",
            "Ġat",
            "Ġ10",
            ":",
            "02",
            "Ġ[",
            "Ċ",
            "Ġfell",
            "ĠĠ",
            "Ã©",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let tt = TokenTexts::new(&bl, &special);
        assert_eq!(tt.style, TokenStyle::ByteLevel);
        assert_eq!(tt.get(16), None, "é decodes to non-ASCII");
        assert_eq!(tt.get(13), Some("\n"));
        assert_eq!(walk(&[" Lat", "ency", " rose", " to", " 2", ".", "1", " ["], &tt, &plan, &s), Some(Step::End));
        assert_eq!(walk(&[" Lat", "ency", " rose", "  "], &tt, &plan, &s), None, "double space");
        assert_eq!(walk(&[" Lat", "ency", " rose", "\n"], &tt, &plan, &s), None, "no line breaks");
        // The allowed set at the start: only tokens that begin an allowed word.
        let allowed: Vec<u32> = tt.allowed(&SentenceState::new(), &s, &plan).into_iter().map(|(id, _)| id).collect();
        assert_eq!(allowed, vec![1, 3, 4, 5, 7, 8, 9], "`1` starts `10:02`");
    }

    #[test]
    fn imperative_first_words_and_max_words() {
        let (plan, s) = toy_plan(&["Scale", "checkout", "up", "now", "the", "pods", "x"]);
        let tt = TokenTexts::new(
            &["ĠScale", "Ġcheckout", "Ġup", "Ġthe", "Ġpods", ".", "Ġx"]
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
            &HashSet::new(),
        );
        assert_eq!(walk(&[" Scale", " checkout"], &tt, &plan, &s), None);
        assert_eq!(walk(&[" the", " pods", " up", "."], &tt, &plan, &s), Some(Step::End));
        assert_eq!(walk(&[" x", " x", " x", " x", " x", " x", " x"], &tt, &plan, &s), None, "max 5 words");
    }

    #[test]
    fn plan_cites_the_ranking_and_allows_only_cited_facts() {
        let (r, e) = incident();
        let sym = checkout();
        let inp = input(&r, &e, &sym);
        let p = plan(&inp).expect("plan");
        let cites: Vec<Vec<String>> = p.sentences.iter().map(|s| s.citations.clone()).collect();
        assert_eq!(cites, vec![vec!["E3".to_string()], vec!["E2".into(), "E5".into()], vec!["E7".into()]]);
        let s0 = &p.sentences[0].trie;
        assert!(
            s0.contains("checkout-latency") && s0.contains("2.1") && s0.contains("10:02") && s0.contains("latency")
        );
        assert!(!s0.contains("1.5.0") && !s0.contains("node-3") && !s0.contains("Warden"));
        assert!(!s0.contains("14.2"), "the z-score is not a word a sentence may use");
        let s1 = &p.sentences[1].trie;
        assert!(s1.contains("1.5.0") && s1.contains("OOMKilled") && s1.contains("Pod/checkout-7d9f-abc"));
        assert!(p.sentences[2].trie.contains("Warden") && p.sentences[2].trie.contains("scale-up"));
        // `cart` is a subject of this incident: no sentence that cites only checkout items may say it.
        assert!(p.sentences.iter().all(|s| !s.trie.contains("cart")));
        // Any sentence built from a plan's words and citation passes grounding.
        let text = format!(
            "Latency of shop/checkout rose to 2.1 at 10:02{} A rollout to 1.5.0 and OOMKilled followed{} \
             Warden ran playbook scale-up{}",
            p.citation(0),
            p.citation(1),
            p.citation(2)
        );
        for w in ["Latency", "of", "shop/checkout", "rose", "to", "2.1", "at", "10:02"] {
            assert!(s0.contains(w), "{w}");
        }
        let report = grounding::check(&text, &e);
        assert!(report.passed, "{report:?}");
    }

    /// Whatever a model picks among the allowed tokens, a sentence never reaches a state
    /// that can neither go on nor end: random walks over a byte-level vocabulary (the
    /// hardest case: one character per token) always end every planned sentence, and the
    /// text passes the grounding check.
    #[test]
    fn no_choice_of_allowed_tokens_walks_into_a_dead_end() {
        let (r, e) = incident();
        let sym = checkout();
        let inp = input(&r, &e, &sym);
        let p = plan(&inp).expect("plan");
        let pieces: Vec<String> =
            (0x21u8..0x7f).map(|b| (b as char).to_string()).chain(["Ġ".to_string(), "Ġa".to_string()]).collect();
        let tt = TokenTexts::new(&pieces, &HashSet::new());
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |n: usize| {
            rng = rng.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            usize::try_from(rng >> 33).unwrap_or(0) % n
        };
        for walk in 0..200 {
            let mut text = String::new();
            for (i, sp) in p.sentences.iter().enumerate() {
                let mut st = SentenceState::new();
                let mut body = String::new();
                loop {
                    let allowed = tt.allowed(&st, sp, &p);
                    assert!(!allowed.is_empty(), "walk {walk}, sentence {i}: dead end after {body:?}");
                    // Prefer going on, so the walks reach the word limit.
                    let cont: Vec<_> = allowed.iter().filter(|(_, s)| *s == Step::Continue).collect();
                    let (id, step) = if !cont.is_empty() && next(10) != 0 {
                        *cont[next(cont.len())]
                    } else {
                        allowed[next(allowed.len())]
                    };
                    if step == Step::End {
                        break;
                    }
                    let t = tt.get(id as usize).expect("allowed tokens have text");
                    st = st.advance(t, sp, &p).expect("allowed tokens advance").0;
                    body.push_str(t);
                }
                text.push_str(body.trim());
                text.push_str(&p.citation(i));
                text.push(' ');
            }
            let report = grounding::check(text.trim(), &e);
            assert!(report.passed, "walk {walk}: {:?}\n{text}", report.failure_reason());
        }
    }
}
