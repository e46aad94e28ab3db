//! Incidents: the list (open / resolved, paged) and one incident with its timeline, ranked
//! causes, evidence and summary; operators acknowledge and resolve.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::console::render::{base, compact, cut, message, page, when};
use crate::api::console::session::Session;
use crate::api::console::{failed, notice, parse_id, Console, Fields};
use crate::cli::incidents::{age, describe, target_of};
use crate::store::Incident;

/// Incidents on one page of the list.
pub const PAGE: u32 = 50;

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    page: Option<String>,
}

fn row(i: &Incident, now: chrono::DateTime<Utc>) -> Value {
    json!({
        "id": i.id,
        "status": i.status,
        "severity": i.severity,
        "title": cut(&i.title, 140),
        "watch": i.watch,
        "target": target_of(i),
        "opened": when(i.opened_at),
        "age": match i.resolved_at {
            Some(r) => format!("was open {}", age(i.opened_at, r)),
            None => age(i.opened_at, now),
        },
    })
}

pub async fn list(
    State(console): State<Console>,
    Extension(session): Extension<Session>,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = q.map(|Query(q)| q).unwrap_or(ListQuery { status: None, page: None });
    let status = match q.status.as_deref().filter(|s| !s.is_empty()) {
        None | Some("all") => None,
        Some(s @ ("open" | "resolved")) => Some(s),
        Some(other) => {
            return message(
                StatusCode::BAD_REQUEST,
                Some(&session),
                "Check the filter",
                &format!("status must be open, resolved or all, not `{}`", cut(other, 40)),
            )
        }
    };
    let page_no = match q.page.as_deref().map(str::parse::<u32>) {
        None => 1,
        Some(Ok(n)) if (1..=1_000_000).contains(&n) => n,
        Some(_) => return message(StatusCode::BAD_REQUEST, Some(&session), "Check the page", "page must be 1 or more"),
    };
    let store = &console.app.pipeline.store;
    let mut incidents = match store.list_incidents_page(status, (page_no - 1) * PAGE, PAGE + 1) {
        Ok(v) => v,
        Err(e) => return failed(&session, StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let more = incidents.len() > PAGE as usize;
    incidents.truncate(PAGE as usize);
    let now = Utc::now();
    let mut ctx = base(Some(&session), "incidents");
    ctx.insert("incidents".into(), incidents.iter().map(|i| row(i, now)).collect());
    ctx.insert("status".into(), json!(status.unwrap_or("all")));
    ctx.insert("page".into(), json!(page_no));
    ctx.insert("prev".into(), json!((page_no > 1).then(|| page_no - 1)));
    ctx.insert("next".into(), json!(more.then_some(page_no + 1)));
    page(StatusCode::OK, "incidents.html", ctx)
}

#[derive(Debug, Deserialize)]
pub struct ShowQuery {
    ok: Option<String>,
}

pub async fn show(
    State(console): State<Console>,
    Extension(session): Extension<Session>,
    Path(raw): Path<String>,
    q: Result<Query<ShowQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let id = match parse_id(&raw, "an incident", &session) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let ok = q.ok().and_then(|Query(q)| q.ok);
    render_incident(&console, &session, id, StatusCode::OK, notice(ok.as_deref()), None)
}

/// The incident page, with a notice or an error (the form's comment kept).
fn render_incident(
    console: &Console,
    session: &Session,
    id: i64,
    status: StatusCode,
    notice: Option<&str>,
    error: Option<(&str, &str)>,
) -> Response {
    let store = &console.app.pipeline.store;
    let incident = match store.get_incident(id) {
        Ok(Some(i)) => i,
        Ok(None) => return failed(session, StatusCode::NOT_FOUND, &format!("no incident {id}")),
        Err(e) => return failed(session, StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let (events, analysis, runs) =
        match (store.incident_events(id), store.get_analysis(id), store.list_runs(None, Some(id), 50)) {
            (Ok(e), Ok(a), Ok(r)) => (e, a, r),
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                return failed(session, StatusCode::INTERNAL_SERVER_ERROR, &e.to_string())
            }
        };
    let acknowledged = events.iter().rev().find(|e| e.kind == "acknowledged").map(|e| {
        json!({"at": when(e.at), "by": compact(&e.detail["by"], 80), "comment": compact(&e.detail["comment"], 500)})
    });
    let events: Vec<Value> =
        events.iter().map(|e| json!({"at": when(e.at), "kind": e.kind, "detail": compact(&e.detail, 400)})).collect();
    let analysis = analysis.map(|a| {
        let causes: Vec<Value> = a
            .ranking
            .candidates
            .iter()
            .take(5)
            .enumerate()
            .map(|(n, c)| {
                json!({
                    "rank": n + 1,
                    "subject": c.subject.display(),
                    "cause": serde_json::to_value(c.cause).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default(),
                    "score": format!("{:.2}", c.score),
                    "evidence": c.evidence.join(", "),
                    "reasons": c.reasons,
                })
            })
            .collect();
        let author = match a.summary.author() {
            warden_models::summary::Author::Model => "model",
            warden_models::summary::Author::Template => "template",
        };
        json!({
            "summary": a.summary.text,
            "author": author,
            "provenance": a.summary.provenance(),
            "found": a.found,
            "revision": a.revision,
            "revised_because": a.revised_because,
            "causes": causes,
            "evidence": a.evidence.iter().map(describe).collect::<Vec<_>>(),
            "gaps": a.gaps,
            "at": when(a.created_at),
        })
    });
    let runs: Vec<Value> = runs
        .iter()
        .map(
            |r| json!({"id": r.id, "playbook": r.playbook, "status": r.status.as_str(), "created": when(r.created_at)}),
        )
        .collect();
    let labels: Vec<Value> = incident.labels.iter().map(|(k, v)| json!({"k": k, "v": cut(v, 200)})).collect();
    let mut ctx = base(Some(session), "incidents");
    ctx.insert(
        "incident".into(),
        json!({
            "id": incident.id,
            "title": incident.title,
            "status": incident.status,
            "severity": incident.severity,
            "watch": incident.watch,
            "source": incident.source,
            "target": target_of(&incident),
            "detector": incident.detector,
            "observed": incident.observed.map(warden_models::format_value),
            "expected": incident.expected.map(warden_models::format_value),
            "opened": when(incident.opened_at),
            "resolved": incident.resolved_at.map(when),
            "open": incident.status == "open",
            "fingerprint": incident.fingerprint,
        }),
    );
    ctx.insert("labels".into(), Value::Array(labels));
    ctx.insert("acknowledged".into(), json!(acknowledged));
    ctx.insert("events".into(), Value::Array(events));
    ctx.insert("analysis".into(), json!(analysis));
    ctx.insert("runs".into(), Value::Array(runs));
    ctx.insert("notice".into(), json!(notice));
    ctx.insert("error".into(), json!(error.map(|e| e.0)));
    ctx.insert("comment".into(), json!(error.map(|e| e.1).unwrap_or("")));
    page(status, "incident.html", ctx)
}

async fn by_hand(console: Console, session: Session, raw: String, fields: Fields, resolve: bool) -> Response {
    let id = match parse_id(&raw, "an incident", &session) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let comment = fields.get("comment");
    if comment.is_some_and(|c| c.chars().count() > 2000) {
        return render_incident(
            &console,
            &session,
            id,
            StatusCode::BAD_REQUEST,
            None,
            Some(("The comment is too long (at most 2000 characters).", comment.unwrap_or(""))),
        );
    }
    match crate::api::incidents::by_hand(&console.app, id, &session.actor(), comment, resolve) {
        Ok(_) => {
            let ok = if resolve { "resolved" } else { "acknowledged" };
            Redirect::to(&format!("/ui/incidents/{id}?ok={ok}")).into_response()
        }
        Err((StatusCode::NOT_FOUND, why)) => failed(&session, StatusCode::NOT_FOUND, &why),
        Err((status, why)) => {
            render_incident(&console, &session, id, status, None, Some((&why, comment.unwrap_or(""))))
        }
    }
}

pub async fn acknowledge(
    State(console): State<Console>,
    Extension(session): Extension<Session>,
    Extension(fields): Extension<Fields>,
    Path(raw): Path<String>,
) -> Response {
    by_hand(console, session, raw, fields, false).await
}

pub async fn resolve(
    State(console): State<Console>,
    Extension(session): Extension<Session>,
    Extension(fields): Extension<Fields>,
    Path(raw): Path<String>,
) -> Response {
    by_hand(console, session, raw, fields, true).await
}
