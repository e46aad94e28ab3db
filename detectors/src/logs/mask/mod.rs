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

/// A run of plain words not yet copied to the output (see [`mask_into`]).
#[derive(Default)]
struct WordRun {
    active: bool,
    /// Its bytes in the line.
    src_start: usize,
    src_end: usize,
    /// Where its first byte goes in the output.
    out_start: usize,
}

impl WordRun {
    /// Add the word `line[start..end]`, a constant token.
    #[inline]
    fn push(&mut self, line: &str, start: usize, end: usize, out: &mut MaskedLine) {
        if !(self.active && start == self.src_end + 1 && line.as_bytes().get(self.src_end) == Some(&b' ')) {
            self.flush(line, out);
            let at = out.begin();
            *self = WordRun { active: true, src_start: start, src_end: start, out_start: at };
        }
        let at = self.out_start + (start - self.src_start);
        out.spans.push((offset(at), offset(at + (end - start)), TokenKind::Constant));
        out.last_collapsed = false;
        self.src_end = end;
    }

    /// Copy the run's bytes.
    #[inline]
    fn flush(&mut self, line: &str, out: &mut MaskedLine) {
        if self.active {
            out.text.push_str(line.get(self.src_start..self.src_end).unwrap_or(""));
            self.active = false;
        }
    }
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// High bit set in every byte of `x` that is below `n` (`n <= 128`); exact for the lowest such
/// byte, and for whether there is one at all.
#[inline]
fn bytes_below(x: u64, n: u8) -> u64 {
    x.wrapping_sub(LO * u64::from(n)) & !x & HI
}

/// High bit set in every byte of `x` that is in `m+1 ..= n-1` (`n <= 128`); exact per byte.
#[inline]
fn bytes_between(x: u64, m: u8, n: u8) -> u64 {
    let low7 = x & (LO * 127);
    (LO * (127 + u64::from(n))).wrapping_sub(low7) & !x & low7.wrapping_add(LO * (127 - u64::from(m))) & HI
}

/// High bit set in some byte of `x` if a byte equals `v`; exact for whether there is one.
#[inline]
fn bytes_equal(x: u64, v: u8) -> u64 {
    bytes_below(x ^ (LO * u64::from(v)), 1)
}

/// The end of the token starting at `start` (the first byte `<= 0x20`, or the end), and
/// whether it may be a value: whether it has a digit, `.`, `/`, `\` or `@` (a token without
/// them is a word, rule 4 leaves it alone). Eight bytes at a time.
fn scan_token(b: &[u8], start: usize) -> (usize, bool) {
    let mut i = start;
    let mut value = false;
    while let Some(chunk) = b.get(i..i + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word);
        let space = bytes_below(x, 0x21);
        // '.' '/' and the digits are 0x2e ..= 0x39.
        let v = bytes_between(x, 0x2d, 0x3a) | bytes_equal(x, b'@') | bytes_equal(x, b'\\');
        if space != 0 {
            let n = space.trailing_zeros() / 8;
            let keep = (1u64 << (8 * n)).wrapping_sub(1);
            value |= v & keep != 0;
            return (i + n as usize, value);
        }
        value |= v != 0;
        i += 8;
    }
    while i < b.len() {
        let c = class(b[i]);
        if c & C_SPACE != 0 {
            break;
        }
        value |= c & C_VALUE != 0;
        i += 1;
    }
    (i, value)
}

fn push_token(token: &str, flags: u16, out: &mut MaskedLine) {
    if flags & C_VALUE == 0 {
        // A word: copied, unless it is the unit of the value before it.
        if out.last_kind() == Some(TokenKind::Variable) {
            let (prefix, core, suffix) = split_wrappers(token);
            if prefix.is_empty() && is_unit(core) {
                fold_unit(suffix, out);
                return;
            }
        }
        let kind = if token == WILDCARD { TokenKind::Variable } else { TokenKind::Constant };
        let start = out.begin();
        out.text.push_str(token);
        out.finish(start, kind);
        return;
    }
    let start = out.begin();
    let kind = write_value_token(token, flags, &mut out.text);
    out.finish(start, kind);
}

/// Rules 1–4 on a token that may hold a value: write its masked form, return its kind.
fn write_value_token(token: &str, flags: u16, out: &mut String) -> TokenKind {
    let (prefix, core, suffix) = if flags & (C_LEAD | C_TRAIL) == 0 { ("", token, "") } else { split_wrappers(token) };
    out.push_str(prefix);
    if core.is_empty() {
        // Nothing but punctuation: constant.
        out.push_str(suffix);
        return TokenKind::Constant;
    }
    let kind = mask_core(core, flags, out);
    out.push_str(suffix);
    kind
}

/// Rule 5: append the unit's trailing punctuation to the previous (variable) token.
fn fold_unit(suffix: &str, out: &mut MaskedLine) {
    if out.last_collapsed {
        return;
    }
    if let Some(last) = out.spans.last_mut() {
        out.text.push_str(suffix);
        last.1 = offset(out.text.len());
    }
}

/// Split a token into leading wrappers, core and trailing wrappers (rule 1).
fn split_wrappers(token: &str) -> (&str, &str, &str) {
    let bytes = token.as_bytes();
    let mut a = 0;
    while a < bytes.len() && class(bytes[a]) & C_LEAD != 0 {
        a += 1;
    }
    let mut b = bytes.len();
    while b > a && class(bytes[b - 1]) & C_TRAIL != 0 {
        b -= 1;
    }
    // All cut points are at ASCII bytes, hence at character boundaries.
    match (token.get(..a), token.get(a..b), token.get(b..)) {
        (Some(p), Some(c), Some(s)) => (p, c, s),
        _ => ("", token, ""),
    }
}

/// Mask a non-empty core (rules 2–4) into `out`; returns its kind.
fn mask_core(core: &str, flags: u16, out: &mut String) -> TokenKind {
    // Rule 2: key=value.
    if let Some(eq) = if flags & C_EQUALS != 0 { core.find('=') } else { None } {
        let (key, value) = (&core[..eq], &core[eq + 1..]);
        if is_identifier(key) {
            out.push_str(key);
            out.push('=');
            if value.is_empty() {
                return TokenKind::Constant;
            }
            let kind = mask_value(value, flags, out);
            return match kind {
                TokenKind::Constant => TokenKind::Constant,
                _ => TokenKind::Mixed,
            };
        }
    }
    mask_value(core, flags, out)
}

/// Rules 3 and 4 on a value. `flags` are the character classes of the token the value is
/// part of; they only spare the checks that cannot apply.
fn mask_value(value: &str, flags: u16, out: &mut String) -> TokenKind {
    // The commonest value, a number (`200`, `-3`, `0.25`, `10.0.0.1`, `2017-05-16`): one `<*>`,
    // as rule 4 would give, without its analysis.
    if flags & (C_ALPHA | C_HIGH | C_SLASH | C_BACKSLASH | C_AT | C_EQUALS | C_COLON) == 0 && is_plain_number(value) {
        out.push_str(WILDCARD);
        return TokenKind::Variable;
    }
    if flags & (C_COLON | C_SLASH) == (C_COLON | C_SLASH) {
        if let Some(i) = value.find("://") {
            let scheme = &value[..i];
            if !scheme.is_empty()
                && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
            {
                out.push_str(scheme);
                out.push_str("://");
                out.push_str(WILDCARD);
                return TokenKind::Mixed;
            }
        }
    }
    if (flags & (C_SLASH | C_BACKSLASH) != 0 && is_path(value)) || (flags & C_AT != 0 && is_email(value)) {
        out.push_str(WILDCARD);
        return TokenKind::Variable;
    }
    if flags & C_COLON != 0 && is_colon_value(value) {
        out.push_str(WILDCARD);
        return TokenKind::Variable;
    }
    if flags & (C_DOT | C_ALPHA) == (C_DOT | C_ALPHA) {
        if let Some(port) = host_port(value) {
            out.push_str(WILDCARD);
            if port {
                out.push(':');
                out.push_str(WILDCARD);
            }
            return TokenKind::Variable;
        }
    }
    mask_segments(value, flags, out)
}

/// Digits, `.` and `-` only, starting with a digit or `-digit` and ending with a digit.
fn is_plain_number(s: &str) -> bool {
    let b = s.as_bytes();
    let starts = match b {
        [d, ..] if d.is_ascii_digit() => true,
        [b'-', d, ..] => d.is_ascii_digit(),
        _ => false,
    };
    starts
        && b.last().is_some_and(u8::is_ascii_digit)
        && b.iter().all(|&c| c.is_ascii_digit() || c == b'.' || c == b'-')
}

/// An IPv6 address or a time of day: hex digits, `.` and at least two `:`, with a decimal
/// digit (`fe80::1`, `12:30:05.123`, `::ffff:10.0.0.1`).
fn is_colon_value(s: &str) -> bool {
    let b = s.as_bytes();
    b.iter().filter(|&&c| c == b':').count() >= 2
        && b.iter().any(u8::is_ascii_digit)
        && b.iter().all(|&c| c.is_ascii_hexdigit() || c == b':' || c == b'.')
}

fn is_identifier(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

fn is_path(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 3 {
        return false;
    }
    if b[0] == b'/' {
        // A second '/' after at least one other character: `/a/b`, not `/10.0.0.1:80`.
        return b[1] != b'/' && b[2..].contains(&b'/');
    }
    if s.starts_with("./") || s.starts_with("../") || s.starts_with("~/") {
        return true;
    }
    if b[0].is_ascii_alphabetic() && b[1] == b':' && b[2] == b'\\' {
        return true;
    }
    b.iter().filter(|&&c| c == b'\\').count() >= 2
}

fn is_email(s: &str) -> bool {
    let Some(at) = s.find('@') else { return false };
    let (local, domain) = (&s[..at], &s[at + 1..]);
    !local.is_empty()
        && local.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'+' | b'-'))
        && domain.contains('.')
        && is_host(domain)
}

/// `Some(has_port)` when `s` is a host name, optionally with `:port` (rule 3).
fn host_port(s: &str) -> Option<bool> {
    let b = s.as_bytes();
    // An optional `:port` at the end.
    let digits = b.iter().rev().take_while(|c| c.is_ascii_digit()).count();
    let (host, port) = if digits > 0 && digits < b.len() && b[b.len() - digits - 1] == b':' {
        (&s[..s.len() - digits - 1], true)
    } else {
        (s, false)
    };
    // Cheap rejection first: the last label must be a lower-case top-level domain.
    let tld = host.rsplit('.').next().unwrap_or("");
    if !(tld.len() == 2 || is_generic_tld(tld)) {
        return None;
    }
    is_host(host).then_some(port)
}

fn is_host(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() > 253 {
        return false;
    }
    // One pass: every label non-empty and made of letters, digits and `-`; remember the
    // last two labels and whether there is a digit.
    let (mut labels, mut start, mut digit) = (0usize, 0usize, false);
    let (mut second, mut last) = ((0, 0), (0, 0));
    for i in 0..=b.len() {
        let c = b.get(i).copied().unwrap_or(b'.');
        if c == b'.' {
            if i == start {
                return false;
            }
            labels += 1;
            second = last;
            last = (start, i);
            start = i + 1;
        } else if c.is_ascii_digit() {
            digit = true;
        } else if !(c.is_ascii_alphabetic() || c == b'-') {
            return false;
        }
    }
    let (Some(last), Some(second)) = (s.get(last.0..last.1), s.get(second.0..second.1)) else { return false };
    if labels < 2 || !last.bytes().all(|c| c.is_ascii_lowercase()) {
        return false;
    }
    if is_generic_tld(last) {
        return true;
    }
    labels >= 3 && last.len() == 2 && (is_second_level(second) || digit)
}

/// A component name: a dotted name with a `/` in it, such as an Android component
/// (`com.example.app/.MainActivity`) — a value wherever it appears.
fn is_component_name(span: &[u8]) -> bool {
    span.contains(&b'/') && span.iter().filter(|&&c| c == b'.').count() >= 2 && span.iter().any(u8::is_ascii_alphabetic)
}

/// Rule 4 on the run of letters and digits starting at `start`: its end and whether it is a
/// value.
fn scan_run(b: &[u8], start: usize) -> (usize, bool) {
    // Most runs are words: find the end and whether there is a digit at all.
    let mut i = start;
    let mut any = 0u16;
    while i < b.len() {
        let c = class(b[i]);
        if c & C_WORD == 0 {
            break;
        }
        any |= c;
        i += 1;
    }
    if any & C_DIGIT == 0 {
        return (i, false);
    }
    let run = &b[start..i];
    let len = run.len();
    let digits = run.iter().filter(|c| c.is_ascii_digit()).count();
    let first_digit = run.iter().position(u8::is_ascii_digit).unwrap_or(len);
    let variable = if first_digit == 0 || (len >= 6 && run.iter().all(u8::is_ascii_hexdigit)) {
        true
    } else if run[first_digit..].iter().all(u8::is_ascii_digit) {
        len - first_digit >= 2
    } else {
        digits * 2 >= len
    };
    (i, variable)
}

/// Rule 4: is this run of letters and digits a value?
#[cfg(test)]
fn run_is_variable(run: &str) -> bool {
    scan_run(run.as_bytes(), 0).1
}

/// A hexadecimal id written in groups (`d96a117b-0193-4549-bdcc-63b917273d1d`): only hex
/// digits and `-`, at least 16 hex digits, a decimal digit and a `-`. Its all-letter groups
/// (`bdcc`) would otherwise stay constant.
fn is_grouped_hex(value: &[u8]) -> bool {
    let (mut hex, mut digit, mut dash) = (0usize, false, false);
    for &c in value {
        let k = class(c);
        if k & C_HEX != 0 {
            hex += 1;
            digit |= k & C_DIGIT != 0;
        } else if c == b'-' {
            dash = true;
        } else {
            return false;
        }
    }
    hex >= 16 && digit && dash
}

/// Rule 4: mask the variable runs of `value` into `out`.
fn mask_segments(value: &str, flags: u16, out: &mut String) -> TokenKind {
    let b = value.as_bytes();
    if flags & C_DASH != 0 && b.len() >= 17 && is_grouped_hex(b) {
        out.push_str(WILDCARD);
        return TokenKind::Variable;
    }
    let components = flags & (C_SLASH | C_DOT) == (C_SLASH | C_DOT);
    let (mut constant, mut variable) = (0usize, 0usize);
    // Output length right after the last wildcard written, to join `<*>.<*>` into `<*>`.
    let mut after_wildcard: Option<usize> = None;
    let mut i = 0;
    let mut copied = 0; // bytes of `value` already copied to `out`
    let mut plain_until = 0; // end of the last dotted span found not to be a component name
    while i < b.len() {
        let start = i;
        let c = class(b[i]);
        let mut is_var = false;
        if components && i >= plain_until && c & (C_WORD | C_DOT | C_SLASH | C_DASH | C_NAME_PUNCT) != 0 {
            let mut end = i;
            while end < b.len() && class(b[end]) & (C_WORD | C_DOT | C_SLASH | C_DASH | C_NAME_PUNCT) != 0 {
                end += 1;
            }
            if is_component_name(&b[i..end]) {
                i = end;
                is_var = true;
            } else {
                plain_until = end;
            }
        }
        if !is_var {
            if c & C_WORD == 0 {
                i += 1;
                continue;
            }
            let (end, var) = scan_run(b, i);
            i = end;
            if !var {
                constant += 1;
                continue;
            }
        }
        variable += 1;
        // The punctuation between the previous wildcard (or copied text) and this run.
        let mut sep_start = copied;
        let sep = &b[copied..start];
        let joined = after_wildcard == Some(out.len())
            && !sep.is_empty()
            && sep.iter().all(|&c| matches!(c, b'.' | b'-' | b'_'));
        if joined {
            // `<*>.<*>` is one value: drop the joiner and this wildcard.
            copied = i;
            continue;
        }
        // A sign directly in front of a number, not after a letter: `-42`, `_-42`.
        if start > sep_start && matches!(b[start - 1], b'-' | b'+') && (start == 1 || class(b[start - 2]) & C_WORD == 0)
        {
            out.push_str(value.get(sep_start..start - 1).unwrap_or(""));
            sep_start = start;
        }
        out.push_str(value.get(sep_start..start).unwrap_or(""));
        out.push_str(WILDCARD);
        after_wildcard = Some(out.len());
        copied = i;
    }
    if variable == 0 {
        out.push_str(value);
        return TokenKind::Constant;
    }
    out.push_str(value.get(copied..).unwrap_or(""));
    if constant == 0 {
        TokenKind::Variable
    } else {
        TokenKind::Mixed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn m(line: &str) -> String {
        mask(line).as_str().to_string()
    }

    #[track_caller]
    fn check(cases: &[(&str, &str)]) {
        for (line, want) in cases {
            assert_eq!(m(line), *want, "masking {line:?}");
        }
    }

    #[test]
    fn numbers_with_signs_decimals_and_units() {
        check(&[
            ("status: 200 len: 1893 time: 0.2477829", "status: <*> len: <*> time: <*>"),
            ("offset -42 delta +7 x=-3.5", "offset <*> delta <*> x=<*>"),
            ("took 12ms, then 3.5GB used, 1e-5 rate, 100% done", "took <*>, then <*> used, <*> rate, <*>% done"),
            ("Took 19.05 seconds to spawn", "Took <*> to spawn"),
            ("memory 2048 MB, disk 20 GB", "memory <*>, disk <*>"),
            ("1190 bytes (1.16 KB) sent, 0 bytes received", "<*> sent, <*> received"),
            ("Temperature (41C) exceeds", "Temperature (<*>) exceeds"),
            ("lifetime <1 sec", "lifetime <<*>"),
            ("Fan speeds ( 3552 3534 3375 4245 )", "Fan speeds ( <*> )"),
            ("Fan speeds ( 3552 3534 **** 3515 )", "Fan speeds ( <*> **** <*> )"),
        ]);
    }

    #[test]
    fn hex_ids_and_uuids() {
        check(&[
            ("flags=0x1 mask=fffffff0 at 0x7fed806eb5d", "flags=<*> mask=<*> at <*>"),
            ("file a489c868f0c37da93b76227c91bb03908ac0e742 ok", "file <*> ok"),
            ("[instance: d96a117b-0193-4549-bdcc-63b917273d1d] Claim successful", "[instance: <*>] Claim successful"),
            ("Token{9f4ef63 token=de9231d}", "Token{<*> token=<*>}"),
            ("QuorumPeer$QuorumServer@506a5ec8", "QuorumPeer$QuorumServer@<*>"),
            // Words made of hex letters stay words.
            ("added a facade deadbeef", "added a facade deadbeef"),
        ]);
    }

    #[test]
    fn addresses_and_ports() {
        check(&[
            ("from 10.250.19.102:54106 to 10.0.0.1", "from <*>:<*> to <*>"),
            ("src: /10.250.19.102:54106 dest: /10.1.1.1:50010", "src: /<*>:<*> dest: /<*>:<*>"),
            ("peer fe80::1ff:fe23:4567:890a up", "peer <*> up"),
            ("proxy.cse.cuhk.edu.hk:5070 open through proxy www.google.com:443", "<*>:<*> open through proxy <*>:<*>"),
            ("rhost=5.36.59.76.dynamic-dsl-ip.omantel.net.om user=root", "rhost=<*> user=root"),
            ("mail bob.smith@example.org now", "mail <*> now"),
            (
                "Connecting to driver: spark://CoarseGrainedScheduler@10.10.34.11:48069",
                "Connecting to driver: spark://<*>",
            ),
        ]);
    }

    #[test]
    fn paths_and_times() {
        check(&[
            ("Active base files: /var/lib/nova/instances/_base/a489c868", "Active base files: <*>"),
            ("Loaded C:\\Windows\\winsxs\\cbscore.dll ok", "Loaded <*> ok"),
            ("opened ./conf/app.yaml and ~/x/y", "opened <*> and <*>"),
            ("at 2017-05-16 00:00:00.008 and 12:30:05", "at <*> and <*>"),
            ("stamp 2005-06-03-15.42.50.675872 done", "stamp <*> done"),
            ("cmp=com.tencent.mm/.plugin.base.stub.WXEntryActivity (has extras)", "cmp=<*> (has extras)"),
        ]);
    }

    #[test]
    fn words_with_digits_and_identifiers() {
        check(&[
            ("via interface alt0 port 22 ssh2", "via interface alt0 port <*> ssh2"),
            ("domain storage234 on node-12 and R02-M1-N0", "domain <*> on node-<*> and <*>-M1-N0"),
            ("block blk_-6952295868487656571 done", "block blk_<*> done"),
            ("Created MRAppMaster for appattempt_1445144423722_0020_000001", "Created MRAppMaster for appattempt_<*>"),
            // Java class and package names stay constant.
            (
                "Registering org.apache.hadoop.mapreduce.v2.app.MRAppMaster",
                "Registering org.apache.hadoop.mapreduce.v2.app.MRAppMaster",
            ),
            ("mapred.job.id is deprecated", "mapred.job.id is deprecated"),
            ("uid=0 euid=0 tty=ssh ruser= force=false", "uid=<*> euid=<*> tty=ssh ruser= force=false"),
        ]);
    }

    #[test]
    fn textual_dates_are_one_value() {
        check(&[
            ("connection from 10.1.1.1 () at Sun Jul 17 23:21:54 2005", "connection from <*> () at <*>"),
            ("connection from 10.1.1.2 (host1) at Mon Jun 20 03:40:59 2005", "connection from <*> (host1) at <*>"),
            ("backup done on Tuesday 3 MARCH 2015, next run Wed", "backup done on <*> next run Wed"),
            ("[Thu Jun 09 06:07:04 2005] [notice] started", "<*> [notice] started"),
            ("Jan  5, 04:02 cron ran", "<*> cron ran"),
            // Words that only look like dates, or date words with no number beside them, stay.
            ("May I help? Sun shines in March", "May I help? Sun shines in March"),
            ("Monkey Marching Sunday-best Jul", "Monkey Marching Sunday-best Jul"),
        ]);
    }

    #[test]
    fn whitespace_is_normalised() {
        check(&[("  a \t b\r\n", "a b"), ("", ""), ("   ", ""), ("x\u{0}y z", "x y z")]);
        assert!(mask("  ").is_empty());
    }

    #[test]
    fn kinds_of_tokens() {
        let line = mask("uid=0 error 42 blk_1 <*>");
        let kinds: Vec<_> = (0..line.len()).filter_map(|i| line.kind(i)).collect();
        assert_eq!(
            kinds,
            [TokenKind::Mixed, TokenKind::Constant, TokenKind::Variable, TokenKind::Mixed, TokenKind::Variable]
        );
        assert_eq!(line.tokens().collect::<Vec<_>>(), ["uid=<*>", "error", "<*>", "blk_<*>", "<*>"]);
        assert_eq!(line.token(1), Some("error"));
        assert_eq!(line.token(9), None);
    }

    #[test]
    fn run_rules() {
        for run in ["42", "3rd", "0x1f", "a489c8", "storage234", "R02", "a1b2"] {
            assert!(run_is_variable(run), "{run} should be a value");
        }
        for run in ["ssh2", "alt0", "md5", "error", "facade", "ffffffff", "log4j", "v2beta"] {
            assert!(!run_is_variable(run), "{run} should stay a word");
        }
    }

    #[test]
    fn token_limit_keeps_a_final_wildcard() {
        let line: String = (0..300).map(|i| format!("w{} ", ["a", "b", "c"][i % 3])).collect();
        let params = MaskParams { max_line_bytes: 4096, max_tokens: 10 };
        let mut out = MaskedLine::new();
        mask_into(&line, &params, &mut out);
        assert_eq!(out.len(), 10);
        assert!(out.truncated());
        assert_eq!(out.token(9), Some(WILDCARD));
        // Exactly at the limit: nothing is cut.
        mask_into("a b c d e f g h i j", &params, &mut out);
        assert_eq!((out.len(), out.truncated()), (10, false));
    }

    #[test]
    fn line_limit_cuts_at_a_character_boundary() {
        let params = MaskParams { max_line_bytes: 16, max_tokens: 128 };
        let mut out = MaskedLine::new();
        mask_into("ééééééééé tail", &params, &mut out);
        assert!(out.truncated());
        assert_eq!(out.as_str(), "éééééééé");
        assert_eq!(truncate_str("aé", 2), "a");
        assert_eq!(truncate_str("abc", 10), "abc");
    }

    #[test]
    fn params_are_validated_and_unknown_fields_rejected() {
        assert!(MaskParams::default().validate().is_ok());
        let bad = MaskParams { max_tokens: 1, ..MaskParams::default() };
        assert!(bad.validate().is_err_and(|e| e.to_string().contains("max_tokens")));
        let bad = MaskParams { max_line_bytes: 0, ..MaskParams::default() };
        assert!(bad.validate().is_err_and(|e| e.to_string().contains("max_line_bytes")));
        let err = serde_json::from_str::<MaskParams>(r#"{"max_tokns": 3}"#).map_err(|e| e.to_string());
        assert!(err.is_err_and(|e| e.contains("unknown field")));
    }

    /// The eight-bytes-at-a-time scan agrees with a byte-by-byte one.
    #[test]
    fn word_scan_matches_bytewise_scan() {
        let mut rng = crate::harness::XorShift64::new(11);
        let alphabet = b"ab.Z/9@\\ \t\x01\xc3\xa9-:=_";
        for _ in 0..2000 {
            let len = (rng.next_u64() % 40) as usize;
            let bytes: Vec<u8> =
                (0..len).map(|_| alphabet[(rng.next_u64() % alphabet.len() as u64) as usize]).collect();
            for start in 0..bytes.len() {
                let mut end = start;
                let mut value = false;
                while end < bytes.len() && bytes[end] > 0x20 {
                    value |= bytes[end].is_ascii_digit() || matches!(bytes[end], b'.' | b'/' | b'\\' | b'@');
                    end += 1;
                }
                assert_eq!(scan_token(&bytes, start), (end, value), "{bytes:?} from {start}");
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any bytes: no panic, bounded output, single spaces, no whitespace inside tokens.
        #[test]
        fn arbitrary_input_is_safe(bytes in prop::collection::vec(any::<u8>(), 0..600), max_tokens in 2usize..40) {
            let line = String::from_utf8_lossy(&bytes);
            let params = MaskParams { max_line_bytes: 256, max_tokens };
            let mut out = MaskedLine::new();
            mask_into(&line, &params, &mut out);
            prop_assert!(out.len() <= max_tokens);
            prop_assert!(out.as_str().len() <= 3 * 256 + max_tokens);
            prop_assert!(!out.as_str().contains("  "));
            prop_assert_eq!(out.tokens().count(), out.len());
            for t in out.tokens() {
                prop_assert!(!t.is_empty() && !t.bytes().any(|b| b <= 0x20));
            }
            // Masking is idempotent on its own output's token count.
            let again = mask(out.as_str());
            prop_assert!(again.len() <= out.len());
        }

        #[test]
        fn arbitrary_text_is_safe(line in "\\PC{0,200}") {
            let out = mask(&line);
            prop_assert!(out.len() <= MaskParams::default().max_tokens);
        }
    }
}
