//! Masking: turn one raw log message into a sequence of tokens in which the variable parts
//! (numbers, ids, addresses, paths, times) are replaced by the wildcard `<*>`.
//!
//! A template miner groups lines by their constant words. Whatever it cannot recognise as
//! variable up front it has to discover by comparing lines, and every mistake there splits one
//! event into many templates or merges two events into one. Masking the values that are
//! obviously variable before mining is the cheapest way to get templates right, so it is done
//! here, with one generic rule set and **no rules for a particular system**: a new kind of log
//! gets the same treatment as the ones the rules were checked on.
//!
//! The masker is a hand-written scanner, not a list of regular expressions: one table lookup
//! per byte at most, and token boundaries are found eight bytes at a time. A token without a
//! digit, `.`, `/`, `\` or `@` (most of them: plain words) is copied without further analysis.
//!
//! # Rules
//!
//! The line is cut to [`MaskParams::max_line_bytes`] (at a character boundary) and split on
//! ASCII whitespace and control characters. Each token is then handled on its own:
//!
//! 1. **Wrappers** — leading `( [ { " ' `` ` `` and trailing `) ] } " ' `` ` `` , ; . : ! ?` are
//!    kept as they are and the rules below look at what is between them (the *core*).
//! 2. **`key=value`** — a core `key=value` whose key is an identifier keeps `key=` and masks
//!    the value with rules 3 and 4, so `uid=0` becomes `uid=<*>` while `force=false` stays.
//! 3. **Whole values** — these become one `<*>`:
//!    * URLs (`scheme://…`): `scheme://<*>`;
//!    * file paths: `/a/b…` (two or more `/`), `./…`, `../…`, `~/…`, `C:\…`, or anything with two
//!      or more `\`;
//!    * e-mail addresses `local@host.tld`;
//!    * IPv6 addresses and times of day: hex digits and `.` with two or more `:` (`fe80::1`,
//!      `12:30:05.123`);
//!    * hexadecimal ids in groups, like UUIDs: hex digits and `-`, at least 16 hex digits;
//!    * host names: dotted labels ending in a common generic top-level domain (`com`, `net`,
//!      `org`, `edu`, `io`, …) or in a two-letter country code after `com`/`net`/`org`/`edu`/
//!      `gov`/`co`/`ac`, or containing a digit; an optional `:port` gives `<*>:<*>`. Java class
//!      and package names (`org.apache.Foo`, `mapred.job.id`) do not match and stay constant.
//! 4. **Segments** — otherwise the core is cut into runs of letters and digits (any non-ASCII
//!    character counts as a letter) separated by punctuation, and a run is variable when it
//!    * starts with a digit (`42`, `3.5GB`, `0x1f`, `9f4ef63`, `2nd`),
//!    * is at least 6 hexadecimal characters including a digit (`a489c868f0c3`, `de9231d`),
//!    * is letters followed by two or more digits (`storage234`, `R02`), or
//!    * is otherwise at least half digits.
//!
//!    A dotted name with a `/` in it (an Android component, `com.example.app/.MainActivity`)
//!    is one variable run. Letters followed by a single digit (`ssh2`, `alt0`, `md5`) and
//!    words stay constant: in real logs they are far more often part of the message than a
//!    value. A variable run becomes `<*>`; a `-` or `+` sign directly in front of it (not
//!    after a letter) is part of it; variable runs joined only by `.`, `-` or `_` become a
//!    single `<*>`, so a float, an IPv4 address or a date is one `<*>`, while `10.0.0.1:80`
//!    gives `<*>:<*>`, `blk_-42` gives `blk_<*>` and `node-12` gives `node-<*>`.
//!
//! Then across tokens:
//!
//! 5. **Units** — a token that is entirely variable followed by a unit (`ms`, `sec`, `seconds`,
//!    `KB`, `MB`, `GB`, `bytes`, …) becomes one variable token: `2048 MB` and `5 sec` are one
//!    value, as `2048MB` and `5s` already are.
//! 6. **Runs of values** — consecutive tokens that are entirely variable become one `<*>`. The
//!    number of values in a list (`Fan speeds ( 3552 3534 3375 )`) or of parts in a value
//!    written with spaces (`1190 bytes (1.16 KB)`) then no longer changes the token count,
//!    which the miner uses to tell events apart.
//!
//! 7. **Textual dates** — a weekday or month word (`Mon`, `Tuesday`, `Jul`, `SEP`, `January`;
//!    capitalised or upper case, abbreviated to three letters or written out) is a value when
//!    it is part of a date: when it, or the run of such words it is in, touches a value token
//!    (`Sun Jul 17 23:21:54 2005`, `17 Jul`, `Jan 5,`). With rule 6 a whole date written with
//!    words is one `<*>`, like a numeric one. A lone `May` or `Sun` in a sentence stays a word.
//!
//! A line with more than [`MaskParams::max_tokens`] tokens keeps its first `max_tokens - 1`
//! tokens and ends with one `<*>` standing for the rest, so the size of a template is bounded
//! whatever the input.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

mod classify;
use classify::*;

/// The wildcard that stands for a variable part in a template.
pub const WILDCARD: &str = "<*>";

/// Largest accepted [`MaskParams::max_line_bytes`].
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// Largest accepted [`MaskParams::max_tokens`].
pub const MAX_TOKENS: usize = 4096;

/// Units that make one value with the variable token before them (rule 5).
fn is_unit(s: &str) -> bool {
    matches!(
        s,
        "B" | "KB"
            | "kB"
            | "MB"
            | "GB"
            | "TB"
            | "PB"
            | "KiB"
            | "MiB"
            | "GiB"
            | "TiB"
            | "byte"
            | "bytes"
            | "ns"
            | "us"
            | "µs"
            | "ms"
            | "s"
            | "sec"
            | "secs"
            | "second"
            | "seconds"
            | "min"
            | "mins"
            | "minute"
            | "minutes"
            | "hour"
            | "hours"
    )
}

/// Generic top-level domains that make a dotted name a host name (rule 3).
fn is_generic_tld(s: &str) -> bool {
    matches!(
        s,
        "com"
            | "net"
            | "org"
            | "edu"
            | "gov"
            | "mil"
            | "int"
            | "io"
            | "info"
            | "biz"
            | "local"
            | "internal"
            | "lan"
            | "arpa"
            | "cloud"
            | "dev"
    )
}

/// Second-level labels in front of a two-letter country code (`edu.hk`, `com.cn`, `co.uk`).
fn is_second_level(s: &str) -> bool {
    matches!(s, "com" | "net" | "org" | "edu" | "gov" | "co" | "ac" | "or" | "ne" | "go")
}

/// Limits applied to every line before masking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MaskParams {
    /// Longest line looked at, in bytes; the rest is ignored (default 4096).
    pub max_line_bytes: usize,
    /// Most tokens kept per line; the last one stands for the rest (default 128).
    pub max_tokens: usize,
}

impl Default for MaskParams {
    fn default() -> Self {
        Self { max_line_bytes: 4096, max_tokens: 128 }
    }
}

impl MaskParams {
    /// Check the limits: `max_line_bytes` in 16 ..= [`MAX_LINE_BYTES`], `max_tokens` in
    /// 2 ..= [`MAX_TOKENS`].
    pub fn validate(&self) -> Result<()> {
        if !(16..=MAX_LINE_BYTES).contains(&self.max_line_bytes) {
            return Err(Error::InvalidParam {
                name: "max_line_bytes",
                message: format!("must be between 16 and {MAX_LINE_BYTES}, got {}", self.max_line_bytes),
            });
        }
        if !(2..=MAX_TOKENS).contains(&self.max_tokens) {
            return Err(Error::InvalidParam {
                name: "max_tokens",
                message: format!("must be between 2 and {MAX_TOKENS}, got {}", self.max_tokens),
            });
        }
        Ok(())
    }
}

/// What a masked token is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    /// No variable part (`error`, `[preauth]`, `uid=`).
    Constant,
    /// Constant and variable parts (`blk_<*>`, `uid=<*>`).
    Mixed,
    /// Only variable parts and punctuation (`<*>`, `<*>:<*>`, `(<*>)`).
    Variable,
}

/// A masked line: its tokens, their kinds, and whether a limit was applied. Reused between
/// lines by [`mask_into`] to avoid allocating per line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MaskedLine {
    /// The masked tokens, separated by one space.
    text: String,
    /// Byte range of every token in `text`, with its kind.
    spans: Vec<(u32, u32, TokenKind)>,
    /// The line was cut at `max_line_bytes` or had more than `max_tokens` tokens.
    truncated: bool,
    /// The last token is a run of values collapsed into one `<*>` (rule 6).
    last_collapsed: bool,
}

impl MaskedLine {
    /// An empty line.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether the line has no token (it was empty or only whitespace).
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Token `i`, if there is one.
    pub fn token(&self, i: usize) -> Option<&str> {
        self.spans.get(i).and_then(|&(a, b, _)| self.text.get(a as usize..b as usize))
    }

    /// Kind of token `i`, if there is one.
    pub fn kind(&self, i: usize) -> Option<TokenKind> {
        self.spans.get(i).map(|s| s.2)
    }

    /// The tokens in order.
    pub fn tokens(&self) -> impl Iterator<Item = &str> + '_ {
        self.spans.iter().map(|&(a, b, _)| self.text.get(a as usize..b as usize).unwrap_or(""))
    }

    /// The masked line: tokens joined by one space.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether a limit cut the line.
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    fn clear(&mut self) {
        self.text.clear();
        self.spans.clear();
        self.truncated = false;
        self.last_collapsed = false;
    }

    fn last_kind(&self) -> Option<TokenKind> {
        self.spans.last().map(|s| s.2)
    }

    /// Replace the last token by a plain wildcard (rule 6).
    fn collapse_last(&mut self) {
        if let Some(last) = self.spans.last_mut() {
            self.text.truncate(last.0 as usize);
            self.text.push_str(WILDCARD);
            *last = (last.0, offset(self.text.len()), TokenKind::Variable);
        }
    }

    /// Start a token: a separating space if needed; returns its start offset.
    #[inline]
    fn begin(&mut self) -> usize {
        if !self.text.is_empty() {
            self.text.push(' ');
        }
        self.text.len()
    }

    /// Finish the token that started at `start`: run the cross-token rules.
    #[inline]
    fn finish(&mut self, start: usize, kind: TokenKind) {
        if kind == TokenKind::Variable && self.last_kind() == Some(TokenKind::Variable) {
            // Rule 6: a run of values is one value.
            self.text.truncate(start.saturating_sub(1));
            self.collapse_last();
            self.last_collapsed = true;
            return;
        }
        self.last_collapsed = false;
        self.spans.push((offset(start), offset(self.text.len()), kind));
    }
}

/// A byte offset in a masked line (at most 3 × [`MAX_LINE_BYTES`] + [`MAX_TOKENS`]).
fn offset(x: usize) -> u32 {
    u32::try_from(x).unwrap_or(u32::MAX)
}

/// Mask `line` with the default limits.
pub fn mask(line: &str) -> MaskedLine {
    let mut out = MaskedLine::new();
    mask_into(line, &MaskParams::default(), &mut out);
    out
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub fn truncate_str(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or("")
}

// Character classes of the scanner: one table lookup per byte.
const C_DIGIT: u16 = 1;
const C_ALPHA: u16 = 1 << 1;
/// A byte of a non-ASCII character: counted as a letter.
const C_HIGH: u16 = 1 << 2;
const C_HEX: u16 = 1 << 3;
const C_DOT: u16 = 1 << 4;
const C_SLASH: u16 = 1 << 5;
const C_BACKSLASH: u16 = 1 << 6;
const C_AT: u16 = 1 << 7;
const C_EQUALS: u16 = 1 << 8;
const C_COLON: u16 = 1 << 9;
const C_SPACE: u16 = 1 << 10;
const C_DASH: u16 = 1 << 11;
/// `_` and `$`, which join the parts of names.
const C_NAME_PUNCT: u16 = 1 << 12;
const C_LEAD: u16 = 1 << 13;
const C_TRAIL: u16 = 1 << 14;
const C_WORD: u16 = C_DIGIT | C_ALPHA | C_HIGH;
/// Classes that send a token to the full analysis; a token with none of them is a word.
const C_VALUE: u16 = C_DIGIT | C_DOT | C_SLASH | C_BACKSLASH | C_AT;

const fn class_table() -> [u16; 256] {
    let mut t = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        let mut c = 0;
        if b.is_ascii_digit() {
            c |= C_DIGIT | C_HEX;
        }
        if b.is_ascii_alphabetic() {
            c |= C_ALPHA;
        }
        if b.is_ascii_hexdigit() {
            c |= C_HEX;
        }
        if b >= 0x80 {
            c |= C_HIGH;
        }
        c |= match b {
            b'.' => C_DOT | C_TRAIL,
            b'/' => C_SLASH,
            b'\\' => C_BACKSLASH,
            b'@' => C_AT,
            b'=' => C_EQUALS,
            b':' => C_COLON | C_TRAIL,
            0..=0x20 => C_SPACE,
            b'-' => C_DASH,
            b'_' | b'$' => C_NAME_PUNCT,
            b'(' | b'[' | b'{' => C_LEAD,
            b'"' | b'\'' | b'`' => C_LEAD | C_TRAIL,
            b')' | b']' | b'}' | b',' | b';' | b'!' | b'?' => C_TRAIL,
            _ => 0,
        };
        t[i] = c;
        i += 1;
    }
    t
}

fn class(b: u8) -> u16 {
    CLASS[b as usize]
}

static CLASS: [u16; 256] = class_table();

/// Mask `line` into `out` (cleared first). Tokens are separated by ASCII whitespace. Never
/// panics, whatever the bytes.
pub fn mask_into(line: &str, params: &MaskParams, out: &mut MaskedLine) {
    out.clear();
    let cut = truncate_str(line, params.max_line_bytes);
    out.truncated = cut.len() < line.len();
    // Enough for most lines at once, rather than growing step by step.
    out.text.reserve(cut.len() + 16);
    out.spans.reserve(16);
    let max_tokens = params.max_tokens.max(2);
    let b = cut.as_bytes();
    // Consecutive plain words separated by one space are copied with one copy: their spans
    // are recorded as they come, the bytes when the run ends.
    let mut run = WordRun::default();
    // Whether a weekday or month word was seen (rule 7 then runs on the whole line).
    let mut dates = false;
    let mut i = 0;
    loop {
        while i < b.len() && class(b[i]) & C_SPACE != 0 {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let start = i;
        let (end, maybe_value) = scan_token(b, i);
        i = end;
        if out.spans.len() + 1 >= max_tokens && b[i..].iter().any(|&c| class(c) & C_SPACE == 0) {
            // This token and the rest become one wildcard.
            run.flush(cut, out);
            out.truncated = true;
            let at = out.begin();
            out.text.push_str(WILDCARD);
            out.finish(at, TokenKind::Variable);
            break;
        }
        // Token boundaries are ASCII whitespace, hence character boundaries.
        let Some(token) = cut.get(start..end) else { continue };
        if !maybe_value && !dates && may_be_date_word(token.as_bytes()) {
            dates = is_date_word(split_wrappers(token).1);
        }
        if !maybe_value && out.last_kind() != Some(TokenKind::Variable) && token != WILDCARD {
            run.push(cut, start, end, out);
            continue;
        }
        run.flush(cut, out);
        if !maybe_value {
            push_token(token, 0, out);
            continue;
        }
        push_token(token, b[start..end].iter().fold(0, |f, &c| f | class(c)), out);
    }
    run.flush(cut, out);
    if dates {
        mask_dates(out);
    }
}

/// Cheap test run on every word: could it be a weekday or month word, with its wrappers?
#[inline]
fn may_be_date_word(t: &[u8]) -> bool {
    let first = |c: u8| matches!(c, b'J' | b'F' | b'M' | b'A' | b'S' | b'O' | b'N' | b'D' | b'T' | b'W');
    (3..=12).contains(&t.len()) && (first(t[0]) || (class(t[0]) & C_LEAD != 0 && first(t[1])))
}

/// Weekday and month names, in full; their first three letters are the abbreviation.
const DATE_WORDS: [&str; 19] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// A weekday or month word (rule 7): a full name or its three-letter abbreviation, capitalised
/// (`Jul`, `Monday`) or upper case (`JUL`).
fn is_date_word(core: &str) -> bool {
    let b = core.as_bytes();
    if !(3..=9).contains(&b.len()) || !b[0].is_ascii_uppercase() {
        return false;
    }
    let rest = &b[1..];
    if !(rest.iter().all(u8::is_ascii_lowercase) || rest.iter().all(u8::is_ascii_uppercase)) {
        return false;
    }
    DATE_WORDS.iter().any(|w| {
        let w = w.as_bytes();
        if b.len() == 3 {
            w[..3].eq_ignore_ascii_case(b)
        } else {
            w.eq_ignore_ascii_case(b)
        }
    })
}

/// Rule 7 on a masked line that has a weekday or month word: mask the runs of such words that
/// touch a value, then apply rule 6 again.
fn mask_dates(out: &mut MaskedLine) {
    let tokens: Vec<(String, TokenKind)> =
        (0..out.len()).filter_map(|i| Some((out.token(i)?.to_string(), out.kind(i)?))).collect();
    let date: Vec<bool> =
        tokens.iter().map(|(t, k)| *k == TokenKind::Constant && is_date_word(split_wrappers(t).1)).collect();
    let variable = |i: usize| tokens.get(i).is_some_and(|(_, k)| *k == TokenKind::Variable);
    let mut mark = vec![false; tokens.len()];
    let mut i = 0;
    while i < tokens.len() {
        if !date[i] {
            i += 1;
            continue;
        }
        let start = i;
        while i < tokens.len() && date[i] {
            i += 1;
        }
        if (start > 0 && variable(start - 1)) || variable(i) {
            mark[start..i].iter_mut().for_each(|m| *m = true);
        }
    }
    if !mark.contains(&true) {
        return;
    }
    let truncated = out.truncated;
    out.clear();
    out.truncated = truncated;
    for ((token, kind), marked) in tokens.iter().zip(mark) {
        let at = out.begin();
        if marked {
            let (prefix, _, suffix) = split_wrappers(token);
            out.text.push_str(prefix);
            out.text.push_str(WILDCARD);
            out.text.push_str(suffix);
            out.finish(at, TokenKind::Variable);
        } else {
            out.text.push_str(token);
            out.finish(at, *kind);
        }
    }
}

#[cfg(test)]
mod tests;
