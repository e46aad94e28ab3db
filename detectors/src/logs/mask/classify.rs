//! Byte-level scanning and classification of tokens: word runs found eight bytes at a time,
//! and the rules that decide whether a token (a number, an id, an address, a path, a host, a
//! date word) is a value to mask, and how.

use super::*;

/// A run of plain words not yet copied to the output (see [`mask_into`]).
#[derive(Default)]
pub(super) struct WordRun {
    pub(super) active: bool,
    /// Its bytes in the line.
    pub(super) src_start: usize,
    pub(super) src_end: usize,
    /// Where its first byte goes in the output.
    pub(super) out_start: usize,
}

impl WordRun {
    /// Add the word `line[start..end]`, a constant token.
    #[inline]
    pub(super) fn push(&mut self, line: &str, start: usize, end: usize, out: &mut MaskedLine) {
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
    pub(super) fn flush(&mut self, line: &str, out: &mut MaskedLine) {
        if self.active {
            out.text.push_str(line.get(self.src_start..self.src_end).unwrap_or(""));
            self.active = false;
        }
    }
}

pub(super) const LO: u64 = 0x0101_0101_0101_0101;
pub(super) const HI: u64 = 0x8080_8080_8080_8080;

/// High bit set in every byte of `x` that is below `n` (`n <= 128`); exact for the lowest such
/// byte, and for whether there is one at all.
#[inline]
pub(super) fn bytes_below(x: u64, n: u8) -> u64 {
    x.wrapping_sub(LO * u64::from(n)) & !x & HI
}

/// High bit set in every byte of `x` that is in `m+1 ..= n-1` (`n <= 128`); exact per byte.
#[inline]
pub(super) fn bytes_between(x: u64, m: u8, n: u8) -> u64 {
    let low7 = x & (LO * 127);
    (LO * (127 + u64::from(n))).wrapping_sub(low7) & !x & low7.wrapping_add(LO * (127 - u64::from(m))) & HI
}

/// High bit set in some byte of `x` if a byte equals `v`; exact for whether there is one.
#[inline]
pub(super) fn bytes_equal(x: u64, v: u8) -> u64 {
    bytes_below(x ^ (LO * u64::from(v)), 1)
}

/// The end of the token starting at `start` (the first byte `<= 0x20`, or the end), and
/// whether it may be a value: whether it has a digit, `.`, `/`, `\` or `@` (a token without
/// them is a word, rule 4 leaves it alone). Eight bytes at a time.
pub(super) fn scan_token(b: &[u8], start: usize) -> (usize, bool) {
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

pub(super) fn push_token(token: &str, flags: u16, out: &mut MaskedLine) {
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
pub(super) fn write_value_token(token: &str, flags: u16, out: &mut String) -> TokenKind {
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
pub(super) fn fold_unit(suffix: &str, out: &mut MaskedLine) {
    if out.last_collapsed {
        return;
    }
    if let Some(last) = out.spans.last_mut() {
        out.text.push_str(suffix);
        last.1 = offset(out.text.len());
    }
}

/// Split a token into leading wrappers, core and trailing wrappers (rule 1).
pub(super) fn split_wrappers(token: &str) -> (&str, &str, &str) {
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
pub(super) fn mask_core(core: &str, flags: u16, out: &mut String) -> TokenKind {
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
pub(super) fn mask_value(value: &str, flags: u16, out: &mut String) -> TokenKind {
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
pub(super) fn is_plain_number(s: &str) -> bool {
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
pub(super) fn is_colon_value(s: &str) -> bool {
    let b = s.as_bytes();
    b.iter().filter(|&&c| c == b':').count() >= 2
        && b.iter().any(u8::is_ascii_digit)
        && b.iter().all(|&c| c.is_ascii_hexdigit() || c == b':' || c == b'.')
}

pub(super) fn is_identifier(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

pub(super) fn is_path(s: &str) -> bool {
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

pub(super) fn is_email(s: &str) -> bool {
    let Some(at) = s.find('@') else { return false };
    let (local, domain) = (&s[..at], &s[at + 1..]);
    !local.is_empty()
        && local.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'+' | b'-'))
        && domain.contains('.')
        && is_host(domain)
}

/// `Some(has_port)` when `s` is a host name, optionally with `:port` (rule 3).
pub(super) fn host_port(s: &str) -> Option<bool> {
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

pub(super) fn is_host(s: &str) -> bool {
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
pub(super) fn is_component_name(span: &[u8]) -> bool {
    span.contains(&b'/') && span.iter().filter(|&&c| c == b'.').count() >= 2 && span.iter().any(u8::is_ascii_alphabetic)
}

/// Rule 4 on the run of letters and digits starting at `start`: its end and whether it is a
/// value.
pub(super) fn scan_run(b: &[u8], start: usize) -> (usize, bool) {
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
pub(super) fn run_is_variable(run: &str) -> bool {
    scan_run(run.as_bytes(), 0).1
}

/// A hexadecimal id written in groups (`d96a117b-0193-4549-bdcc-63b917273d1d`): only hex
/// digits and `-`, at least 16 hex digits, a decimal digit and a `-`. Its all-letter groups
/// (`bdcc`) would otherwise stay constant.
pub(super) fn is_grouped_hex(value: &[u8]) -> bool {
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
pub(super) fn mask_segments(value: &str, flags: u16, out: &mut String) -> TokenKind {
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
