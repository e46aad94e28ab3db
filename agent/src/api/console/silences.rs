//! Silences: the list (active and pending; `?all=1` for ended ones too), the form that
//! creates one (matchers, a duration, a comment) and the button that ends one.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::console::render::{base, cut, page, when};
use crate::api::console::session::Session;
use crate::api::console::{failed, notice, parse_id, Console, Fields};
use crate::config::HumanDuration;
use crate::incident::silence::SilenceRequest;

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    all: Option<String>,
    ok: Option<String>,
}

pub async fn list(
    State(console): State<Console>,
    Extension(session): Extension<Session>,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let (all, ok) = match q {
        Ok(Query(q)) => (q.all.is_some_and(|a| a == "1" || a == "true"), q.ok),
        Err(_) => (false, None),
    };
    render(&console, &session, all, StatusCode::OK, notice(ok.as_deref()), None, &Fields::default())
}

/// The page; after a refused form, its error and the values that were typed.
fn render(
    console: &Console,
    session: &Session,
    all: bool,
    status: StatusCode,
    notice: Option<&str>,
    error: Option<&str>,
    form: &Fields,
) -> Response {
    let now = Utc::now();
    let silences = match console.app.pipeline.store.list_silences(all, now) {
        Ok(s) => s,
        Err(e) => return failed(session, StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let rows: Vec<Value> = silences
        .iter()
        .map(|s| {
            json!({
                "id": s.id,
                "matchers": s.matchers,
                "starts": when(s.starts_at),
                "ends": when(s.ends_at),
                "by": s.created_by,
                "comment": cut(&s.comment, 500),
                "state": s.state(now),
            })
        })
        .collect();
    let mut ctx = base(Some(session), "silences");
    ctx.insert("silences".into(), Value::Array(rows));
    ctx.insert("all".into(), json!(all));
    ctx.insert("notice".into(), json!(notice));
    ctx.insert("error".into(), json!(error));
    ctx.insert(
        "form".into(),
        json!({
            "matchers": form.0.iter().find(|(k, _)| k == "matchers").map(|(_, v)| v.as_str()).unwrap_or(""),
            "duration": form.get("duration").unwrap_or("2h"),
            "comment": form.0.iter().find(|(k, _)| k == "comment").map(|(_, v)| v.as_str()).unwrap_or(""),
        }),
    );
    page(status, "silences.html", ctx)
}

pub async fn create(
    State(console): State<Console>,
    Extension(session): Extension<Session>,
    Extension(fields): Extension<Fields>,
) -> Response {
    let refuse = |why: &str| render(&console, &session, false, StatusCode::BAD_REQUEST, None, Some(why), &fields);
    let matchers: Vec<String> = fields
        .get("matchers")
        .unwrap_or("")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    if matchers.is_empty() {
        return refuse("A silence needs at least one matcher, one per line: namespace=shop, watch=~\"checkout.*\"");
    }
    let duration = match fields.get("duration").map(str::parse::<HumanDuration>) {
        None => return refuse("A silence needs a duration, for example 2h or 30m."),
        Some(Ok(d)) => d.0,
        Some(Err(e)) => return refuse(&format!("duration: {e}")),
    };
    let request = SilenceRequest {
        matchers,
        starts_at: None,
        ends_at: None,
        duration: Some(duration),
        created_by: session.actor(),
        comment: fields.get("comment").unwrap_or("").to_string(),
    };
    match crate::api::silences::create_checked(&console.app, request, Utc::now()) {
        Ok(_) => Redirect::to("/ui/silences?ok=silenced").into_response(),
        Err((StatusCode::BAD_REQUEST, why)) => refuse(&why),
        Err((status, why)) => failed(&session, status, &why),
    }
}

pub async fn expire(
    State(console): State<Console>,
    Extension(session): Extension<Session>,
    Path(raw): Path<String>,
) -> Response {
    let id = match parse_id(&raw, "a silence", &session) {
        Ok(id) => id,
        Err(r) => return r,
    };
    match crate::api::silences::expire_as(&console.app, id, &session.actor(), Utc::now()) {
        Ok(_) => Redirect::to("/ui/silences?ok=expired").into_response(),
        Err((status, why)) => render(&console, &session, false, status, None, Some(&why), &Fields::default()),
    }
}
