//! Optional fields: lining up a line with a template that has a different number of tokens.
//!
//! The parse tree keys templates by token count, so a field that is present in some lines
//! and missing in others (`connection from 10.0.0.1 (host1) at …` beside `connection from
//! 10.0.0.2 at …`, where masking turned `10.0.0.2 (<*>)` into one value), or a trailing field
//! that only some lines carry, would split one event into a template per shape. Here a line
//! and a template of another length are the same event when the longer one is the shorter one
//! with **one gap** of at most [`MAX_GAP`] tokens inserted, and:
//!
//! * the gap is a *field*: every token in it is a value (no letter outside `<*>`), or it is
//!   one bracketed group (`(host1)`, `[pid 42]`);
//! * the gap sits next to a value on both sides of the alignment (the value absorbs it: a
//!   `<*>` of a template may stand for several tokens) or at the end of the line;
//! * every constant word of the template is equal to the line's word at its aligned place.
//!
//! Plain words are never a gap, so `Failed password for invalid user <*>` and
//! `Failed password for <*>` stay two events. The rule looks at token shapes only, nothing of
//! a particular system.

/// Most tokens an optional field may have.
pub const MAX_GAP: usize = 3;

/// Where the shorter sequence lines up with the longer one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    /// Index in the longer sequence of the first token of the gap.
    pub start: usize,
    /// Tokens in the gap.
    pub len: usize,
    /// Constant words of the template equal to the line's (outside the gap).
    pub same: usize,
}

/// Whether a token has a constant part: a letter outside its `<*>`s.
pub fn has_constant(token: &str) -> bool {
    let mut rest = token;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix(super::mask::WILDCARD) {
            rest = after;
            continue;
        }
        let mut chars = rest.chars();
        if chars.next().is_some_and(char::is_alphabetic) {
            return true;
        }
        rest = chars.as_str();
    }
    false
}

/// Whether `gap` is an optional field: values only, or one bracketed group.
fn is_field(gap: &[&str]) -> bool {
    if gap.iter().all(|t| !has_constant(t)) {
        return true;
    }
    let (Some(first), Some(last)) = (gap.first(), gap.last()) else {
        return false;
    };
    let close = match first.as_bytes().first() {
        Some(b'(') => b')',
        Some(b'[') => b']',
        Some(b'{') => b'}',
        _ => return false,
    };
    last.as_bytes().last() == Some(&close) && (gap.len() > 1 || first.len() > 1)
}

/// Line up `template` with `line` (token counts differ by 1 ..= [`MAX_GAP`]). A template
/// token matches a line token when it has no constant part or is equal to it; with
/// `symmetric`, a line token without a constant part matches too (two templates compared).
/// The earliest valid gap is returned.
pub fn align(template: &[&str], line: &[&str], symmetric: bool) -> Option<Gap> {
    let template_is_long = template.len() > line.len();
    let (long, short) = if template_is_long { (template, line) } else { (line, template) };
    let d = long.len() - short.len();
    if d == 0 || d > MAX_GAP {
        return None;
    }
    let matches = |li: usize, si: usize| {
        let (t, l) = if template_is_long { (long[li], short[si]) } else { (short[si], long[li]) };
        t == l || !has_constant(t) || (symmetric && !has_constant(l))
    };
    let mut prefix = 0;
    while prefix < short.len() && matches(prefix, prefix) {
        prefix += 1;
    }
    let mut suffix = 0;
    while suffix < short.len() && matches(long.len() - 1 - suffix, short.len() - 1 - suffix) {
        suffix += 1;
    }
    let constant = |ts: &[&str]| ts.iter().filter(|t| has_constant(t)).count();
    let template_constants = constant(template);
    for g in short.len().saturating_sub(suffix)..=prefix.min(short.len()) {
        let gap = &long[g..g + d];
        if !is_field(gap) {
            continue;
        }
        let before = g > 0 && !has_constant(long[g - 1]) && !has_constant(short[g - 1]);
        let after = g < short.len() && !has_constant(long[g + d]) && !has_constant(short[g]);
        if !(before || after || g == short.len()) {
            continue;
        }
        let same = if template_is_long { template_constants - constant(gap) } else { template_constants };
        return Some(Gap { start: g, len: d, same });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Vec<&str> {
        s.split(' ').collect()
    }

    #[test]
    fn a_parenthesised_field_next_to_a_value_is_a_gap() {
        let short = t("connection from <*> at <*>");
        for long in
            ["connection from <*> (host1) at <*>", "connection from <*> () at <*>", "connection from <*> (a b) at <*>"]
        {
            let g = align(&t(long), &short, false);
            assert_eq!(g.map(|g| g.same), Some(3), "{long}");
            // The other way round: the template is the short one.
            assert!(align(&short, &t(long), false).is_some(), "{long}");
        }
    }

    #[test]
    fn a_trailing_field_is_a_gap() {
        assert!(align(&t("session closed for <*>"), &t("session closed for <*> [pid <*>]"), false).is_some());
        assert!(align(&t("job done"), &t("job done <*>"), false).is_some());
    }

    #[test]
    fn words_and_mismatches_are_not_gaps() {
        // Plain words are part of the message.
        assert_eq!(
            align(&t("Failed password for <*> from <*>"), &t("Failed password for invalid user <*> from <*>"), false),
            None
        );
        // A field between two constant words does not sit next to a value.
        assert_eq!(align(&t("disk full on sda"), &t("disk full (x) on sda"), false), None);
        // A constant word of the template must be in the line.
        assert_eq!(align(&t("connection to <*> at <*>"), &t("connection from <*> (h) at <*>"), false), None);
        // Same length, or too long a gap.
        assert_eq!(align(&t("a <*>"), &t("a <*>"), false), None);
        assert_eq!(align(&t("a <*> b"), &t("a <*> (1 2 3 4) b"), false), None);
    }

    #[test]
    fn symmetric_alignment_lets_line_values_match_template_words() {
        let a = t("conn from <*> (hostA) at <*>");
        let b = t("conn <*> <*> at <*>");
        assert_eq!(align(&a, &b, false), None);
        assert!(align(&a, &b, true).is_some());
    }
}
