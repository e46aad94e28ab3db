//! Server-rendered HTML: the templates (Jinja, with `minijinja`) compiled into the binary,
//! every value HTML-escaped (templates are named `*.html`, which turns auto-escaping on), and
//! the page every answer is built with.

use std::sync::OnceLock;

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use minijinja::Environment;
use serde_json::{json, Map, Value};

use crate::api::console::session::Session;

const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("templates/base.html")),
    ("login.html", include_str!("templates/login.html")),
    ("message.html", include_str!("templates/message.html")),
    ("incidents.html", include_str!("templates/incidents.html")),
    ("incident.html", include_str!("templates/incident.html")),
    ("runs.html", include_str!("templates/runs.html")),
    ("run.html", include_str!("templates/run.html")),
    ("approvals.html", include_str!("templates/approvals.html")),
    ("watches.html", include_str!("templates/watches.html")),
    ("silences.html", include_str!("templates/silences.html")),
];

fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        for (name, source) in TEMPLATES {
            if let Err(e) = env.add_template(name, source) {
                // A broken template is a build mistake the unit tests catch; the page that
                // uses it answers 500.
                tracing::error!(template = name, error = %e, "console template");
            }
        }
        env
    })
}

/// What every page of a logged-in session shows: who, the role, the CSRF token for its
/// forms and which tab is open.
pub fn base(session: Option<&Session>, nav: &str) -> Map<String, Value> {
    let mut ctx = Map::new();
    ctx.insert("nav".into(), json!(nav));
    if let Some(s) = session {
        ctx.insert(
            "me".into(),
            json!({
                "name": s.name,
                "role": if s.operator() { "operator" } else { "viewer" },
                "operator": s.operator(),
            }),
        );
        ctx.insert("csrf".into(), json!(s.csrf));
    }
    ctx
}

/// Render template `name` with `ctx`.
pub fn page(status: StatusCode, name: &str, ctx: Map<String, Value>) -> Response {
    match env().get_template(name).and_then(|t| t.render(Value::Object(ctx))) {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(template = name, error = %e, "rendering a console page");
            (StatusCode::INTERNAL_SERVER_ERROR, "the page could not be rendered; see the daemon's log").into_response()
        }
    }
}

/// A page that says one thing: an error (`status` ≥ 400) or a notice, with a link back.
pub fn message(status: StatusCode, session: Option<&Session>, title: &str, text: &str) -> Response {
    let mut ctx = base(session, "");
    ctx.insert("title".into(), json!(title));
    ctx.insert("text".into(), json!(text));
    ctx.insert("failure".into(), json!(status.as_u16() >= 400));
    page(status, "message.html", ctx)
}

/// `s` cut to `max` characters, with `…` when it was longer.
pub fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        s.chars().take(max).chain(std::iter::once('…')).collect()
    }
}

/// A JSON value for people: compact, cut to `max` characters.
pub fn compact(v: &Value, max: usize) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => cut(s, max),
        other => cut(&other.to_string(), max),
    }
}

/// `2026-03-02 09:20:00 UTC`.
pub fn when(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_compiles_and_values_are_escaped() {
        for (name, _) in TEMPLATES {
            assert!(env().get_template(name).is_ok(), "{name}");
        }
        let r = message(StatusCode::BAD_REQUEST, None, "<b>t</b>", "<script>alert(1)</script>");
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let mut ctx = base(None, "");
        ctx.insert("title".into(), json!("x"));
        ctx.insert("text".into(), json!("<script>alert(\"1\")</script> & 'q'"));
        ctx.insert("failure".into(), json!(true));
        let html = env().get_template("message.html").and_then(|t| t.render(Value::Object(ctx))).expect("renders");
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(&quot;1&quot;)&lt;&#x2f;script&gt; &amp; &#x27;q&#x27;"), "{html}");
        assert_eq!(cut("abcdef", 3), "abc…");
        assert_eq!(compact(&json!({"a": 1}), 100), r#"{"a":1}"#);
    }
}
