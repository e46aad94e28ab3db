//! The GGUF's own chat template, rendered with a Jinja engine.
//!
//! Why render instead of recognise: every instruction-tuned model family ships the exact text
//! it was trained on as a Jinja template (`tokenizer.chat_template`), and families keep adding
//! details (default system prompts, a `<think>` block, a BOS inside the text, the system text
//! folded into the first user turn). Rendering the file's own template means a new family needs
//! no new code; the built-in shapes of [`super::ChatTemplate`] remain the fallback for files
//! without a template and the override an operator can choose.
//!
//! The environment mirrors what Hugging Face's `apply_chat_template` gives templates:
//! `trim_blocks` and `lstrip_blocks`, loop controls (`break`/`continue`), the variables
//! `messages`, `add_generation_prompt`, `bos_token`, `eos_token` and `enable_thinking`
//! (false: a summary wants no reasoning block), the functions
//! `raise_exception(msg)` (a render error carrying the message) and `strftime_now(fmt)` (UTC),
//! the `tojson` filter, and Python's string and dict methods (`strip`, `startswith`, `split`,
//! `items`, ...) through `minijinja-contrib`'s pycompat callback. Undefined variables (`tools`,
//! `date_string`, ...) are falsy and render empty, as in Jinja2.
//!
//! The template text comes from a downloaded file: rendering is sandboxed by the engine (no
//! file or network access), its fuel is capped so a hostile loop cannot hang the loader, and
//! any failure is an error naming the cause, after which the loader uses a built-in shape.

use std::time::{SystemTime, UNIX_EPOCH};

use minijinja::{context, Environment, ErrorKind};
use serde::Serialize;

use crate::prompt::civil_date;
use crate::ChatPrompt;

/// Template name inside the environment.
const NAME: &str = "chat";
/// Upper bound on template instructions per render (a real chat template uses a few thousand).
const FUEL: u64 = 2_000_000;
/// Stands for the user's text when the fixed prefix of a prompt is computed.
const SENTINEL: &str = "\u{1}WARDEN-USER-TEXT\u{1}";

/// One chat message as templates expect it (`message['role']`, `message.content`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

/// A compiled chat template.
pub struct JinjaTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
}

impl std::fmt::Debug for JinjaTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JinjaTemplate").field("bos_token", &self.bos_token).finish_non_exhaustive()
    }
}

impl JinjaTemplate {
    /// Compiles `source`; `Err` is the engine's message (a syntax error, with its line).
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<Self, String> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_fuel(Some(FUEL));
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_template_owned(NAME, source.to_string()).map_err(|e| e.to_string())?;
        Ok(Self { env, bos_token: bos_token.to_string(), eos_token: eos_token.to_string() })
    }

    /// The BOS token's text as the template sees it.
    pub fn bos_token(&self) -> &str {
        &self.bos_token
    }

    /// Renders `messages`; with `add_generation_prompt` the text ends where the assistant's
    /// answer starts.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String, String> {
        let tmpl = self.env.get_template(NAME).map_err(|e| e.to_string())?;
        tmpl.render(context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => &self.bos_token,
            eos_token => &self.eos_token,
            // A summary wants the answer, not a reasoning block (Qwen3's templates read this).
            enable_thinking => false,
        })
        .map_err(|e| match e.kind() {
            ErrorKind::InvalidOperation => e.detail().unwrap_or("invalid operation").to_string(),
            _ => e.to_string(),
        })
    }

    /// Renders a [`ChatPrompt`] up to the start of the assistant's answer (an empty system
    /// text is left out, so the template's default system prompt applies).
    pub fn render_prompt(&self, prompt: &ChatPrompt) -> Result<String, String> {
        self.render(&messages(prompt.system.trim(), prompt.user.trim()), true)
    }

    /// The part of every prompt with this `system` text that comes before the user's text,
    /// or `None` when the template does not place the user's text after a fixed prefix.
    pub fn prefix(&self, system: &str) -> Option<String> {
        let text = self.render(&messages(system.trim(), SENTINEL), true).ok()?;
        let at = text.find(SENTINEL)?;
        Some(text[..at].to_string())
    }
}

fn messages(system: &str, user: &str) -> Vec<Message> {
    let mut m = Vec::with_capacity(2);
    if !system.is_empty() {
        m.push(Message { role: "system".into(), content: system.into() });
    }
    m.push(Message { role: "user".into(), content: user.into() });
    m
}

fn raise_exception(message: String) -> Result<String, minijinja::Error> {
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, format!("the chat template raised: {message}")))
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = ["Thursday", "Friday", "Saturday", "Sunday", "Monday", "Tuesday", "Wednesday"];

fn strftime_now(format: String) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
    strftime(now, &format)
}

/// The `strftime` directives templates use (`%d %b %Y`, `%B`, `%H:%M`, ...), in UTC; unknown
/// directives are kept as written.
pub(crate) fn strftime(t: i64, format: &str) -> String {
    let (y, m, d) = civil_date(t);
    let month = MONTHS[(m as usize).saturating_sub(1) % 12];
    let weekday = DAYS[t.div_euclid(86_400).rem_euclid(7) as usize];
    let secs = t.rem_euclid(86_400);
    let mut out = String::with_capacity(format.len() + 8);
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str(&format!("{d:02}")),
            Some('e') => out.push_str(&format!("{d:>2}")),
            Some('m') => out.push_str(&format!("{m:02}")),
            Some('b') => out.push_str(&month[..3]),
            Some('B') => out.push_str(month),
            Some('Y') => out.push_str(&y.to_string()),
            Some('y') => out.push_str(&format!("{:02}", y.rem_euclid(100))),
            Some('H') => out.push_str(&format!("{:02}", secs / 3600)),
            Some('M') => out.push_str(&format!("{:02}", (secs / 60) % 60)),
            Some('S') => out.push_str(&format!("{:02}", secs % 60)),
            Some('A') => out.push_str(weekday),
            Some('a') => out.push_str(&weekday[..3]),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strftime_formats_utc() {
        // 2026-11-22T10:02:30Z, a Sunday.
        let t = 1_795_341_750;
        assert_eq!(strftime(t, "%d %b %Y"), "22 Nov 2026");
        assert_eq!(strftime(t, "%A %B %e, %H:%M:%S %y %% %Q"), "Sunday November 22, 10:02:30 26 % %Q");
        assert_eq!(strftime(0, "%a %Y-%m-%d"), "Thu 1970-01-01");
    }

    #[test]
    fn raise_exception_is_an_error_with_its_message() {
        let t = JinjaTemplate::new("{{ raise_exception('roles must alternate') }}", "<s>", "</s>").expect("compiles");
        let err = t.render(&[], true).expect_err("raises");
        assert!(err.contains("roles must alternate"), "{err}");
    }

    #[test]
    fn syntax_errors_and_runaway_loops_are_errors() {
        assert!(JinjaTemplate::new("{% for m in messages %}", "", "").is_err());
        let t = JinjaTemplate::new(
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
            "",
            "",
        )
        .expect("compiles");
        assert!(t.render(&[], true).is_err());
    }
}
