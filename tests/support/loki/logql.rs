//! A small LogQL subset the server understands: label matchers and line filters, lexed and
//! parsed, so that a malformed query gets a 400 answer as from Loki.

use super::*;

#[derive(Clone, Debug)]
pub(super) enum LabelOp {
    Eq(String),
    Ne(String),
    Re(Regex),
    NotRe(Regex),
}

#[derive(Clone, Debug)]
pub(super) enum LineFilter {
    Contains(String),
    NotContains(String),
    Re(Regex),
    NotRe(Regex),
}

/// A parsed log query: stream selector and line filters.
#[derive(Clone, Debug)]
pub struct LogQuery {
    pub(super) matchers: Vec<(String, LabelOp)>,
    pub(super) filters: Vec<LineFilter>,
}

impl LogQuery {
    /// Whether a stream with `labels` is selected.
    pub fn matches_labels(&self, labels: &Labels) -> bool {
        self.matchers.iter().all(|(name, op)| {
            let value = labels.get(name).map(String::as_str).unwrap_or("");
            match op {
                LabelOp::Eq(v) => value == v,
                LabelOp::Ne(v) => value != v,
                LabelOp::Re(re) => re.is_match(value),
                LabelOp::NotRe(re) => !re.is_match(value),
            }
        })
    }

    /// Whether `entry` is selected and passes every line filter.
    pub fn matches(&self, entry: &LokiEntry) -> bool {
        self.matches_labels(&entry.labels)
            && self.filters.iter().all(|f| match f {
                LineFilter::Contains(s) => entry.line.contains(s.as_str()),
                LineFilter::NotContains(s) => !entry.line.contains(s.as_str()),
                LineFilter::Re(re) => re.is_match(&entry.line),
                LineFilter::NotRe(re) => !re.is_match(&entry.line),
            })
    }
}

pub(super) struct Lexer<'a> {
    pub(super) chars: Vec<char>,
    pub(super) pos: usize,
    pub(super) src: &'a str,
}

impl Lexer<'_> {
    pub(super) fn skip_ws(&mut self) {
        while self.chars.get(self.pos).is_some_and(|c| c.is_whitespace()) {
            self.pos += 1;
        }
    }

    pub(super) fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    pub(super) fn error(&self, unexpected: &str) -> String {
        format!("parse error at line 1, col {}: syntax error: unexpected {unexpected}", self.pos + 1)
    }

    pub(super) fn unexpected_here(&self) -> String {
        match self.peek() {
            None => self.error("$end"),
            Some(c) if c.is_alphabetic() || c == '_' => {
                let word: String =
                    self.chars[self.pos..].iter().take_while(|c| c.is_alphanumeric() || **c == '_').collect();
                self.error(&format!("IDENTIFIER {word:?}"))
            }
            Some(c) => self.error(&format!("{c:?}")),
        }
    }

    pub(super) fn eat(&mut self, s: &str) -> bool {
        let n = s.chars().count();
        let here: String = self.chars.iter().skip(self.pos).take(n).collect();
        if here == s {
            self.pos += n;
            true
        } else {
            false
        }
    }

    pub(super) fn ident(&mut self) -> Option<String> {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            self.pos += 1;
        }
        let word: String = self.chars[start..self.pos].iter().collect();
        let first_ok = word.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
        if first_ok {
            Some(word)
        } else {
            self.pos = start;
            None
        }
    }

    pub(super) fn string(&mut self) -> std::result::Result<String, String> {
        match self.peek() {
            Some('`') => {
                self.pos += 1;
                let start = self.pos;
                while self.peek().is_some_and(|c| c != '`') {
                    self.pos += 1;
                }
                if self.peek().is_none() {
                    return Err(self.error("$end (unterminated raw string)"));
                }
                let s: String = self.chars[start..self.pos].iter().collect();
                self.pos += 1;
                Ok(s)
            }
            Some('"') => {
                self.pos += 1;
                let mut s = String::new();
                loop {
                    match self.peek() {
                        None => return Err(self.error("$end (unterminated string)")),
                        Some('"') => {
                            self.pos += 1;
                            return Ok(s);
                        }
                        Some('\\') => {
                            self.pos += 1;
                            match self.peek() {
                                Some('n') => s.push('\n'),
                                Some('t') => s.push('\t'),
                                Some(c) => s.push(c),
                                None => return Err(self.error("$end")),
                            }
                            self.pos += 1;
                        }
                        Some(c) => {
                            s.push(c);
                            self.pos += 1;
                        }
                    }
                }
            }
            _ => Err(self.unexpected_here()),
        }
    }

    pub(super) fn regex(&self, pattern: &str, anchored: bool) -> std::result::Result<Regex, String> {
        let full = if anchored { format!("^(?:{pattern})$") } else { pattern.to_string() };
        Regex::new(&full).map_err(|e| {
            format!("parse error at line 1, col {}: invalid regex {pattern:?}: {e} in {:?}", self.pos, self.src)
        })
    }
}

/// Parses the LogQL subset the server understands, with Loki-style errors.
pub fn parse_logql(query: &str) -> std::result::Result<LogQuery, String> {
    let mut lx = Lexer { chars: query.chars().collect(), pos: 0, src: query };
    lx.skip_ws();
    if lx.peek().is_none() {
        return Err("parse error : queries require at least one regexp or equality matcher that does not have an empty-compatible value. For instance, app=~\".*\" does not meet this requirement, but app=~\".+\" will".into());
    }
    if !lx.eat("{") {
        return Err(lx.unexpected_here());
    }
    let mut matchers = Vec::new();
    loop {
        lx.skip_ws();
        let Some(name) = lx.ident() else {
            return Err(lx.unexpected_here());
        };
        lx.skip_ws();
        let op = if lx.eat("=~") {
            "=~"
        } else if lx.eat("!~") {
            "!~"
        } else if lx.eat("!=") {
            "!="
        } else if lx.eat("=") {
            "="
        } else {
            return Err(lx.unexpected_here());
        };
        lx.skip_ws();
        let value = lx.string()?;
        let op = match op {
            "=" => LabelOp::Eq(value),
            "!=" => LabelOp::Ne(value),
            "=~" => LabelOp::Re(lx.regex(&value, true)?),
            _ => LabelOp::NotRe(lx.regex(&value, true)?),
        };
        matchers.push((name, op));
        lx.skip_ws();
        if lx.eat(",") {
            continue;
        }
        if lx.eat("}") {
            break;
        }
        return Err(lx.unexpected_here());
    }
    let selects_something = matchers.iter().any(|(_, op)| match op {
        LabelOp::Eq(v) => !v.is_empty(),
        LabelOp::Re(re) => !re.is_match(""),
        _ => false,
    });
    if !selects_something {
        return Err("parse error : queries require at least one regexp or equality matcher that does not have an empty-compatible value. For instance, app=~\".*\" does not meet this requirement, but app=~\".+\" will".into());
    }
    let mut filters = Vec::new();
    loop {
        lx.skip_ws();
        if lx.peek().is_none() {
            break;
        }
        let op = if lx.eat("|=") {
            "|="
        } else if lx.eat("|~") {
            "|~"
        } else if lx.eat("!=") {
            "!="
        } else if lx.eat("!~") {
            "!~"
        } else {
            return Err(lx.unexpected_here());
        };
        lx.skip_ws();
        let value = lx.string()?;
        filters.push(match op {
            "|=" => LineFilter::Contains(value),
            "!=" => LineFilter::NotContains(value),
            "|~" => LineFilter::Re(lx.regex(&value, false)?),
            _ => LineFilter::NotRe(lx.regex(&value, false)?),
        });
    }
    Ok(LogQuery { matchers, filters })
}
