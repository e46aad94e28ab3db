//! Runs (the list and one run: steps, plans, audit entries) and approvals (the runs waiting
//! for a person, with Approve / Deny and a comment).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use serde::Deserialize;
use serde_json::{json, Value};
use warden_playbooks::run::{Run, RunStatus, StepState};

use crate::api::console::render::{base, compact, cut, message, page, when};
use crate::api::console::session::Session;
use crate::api::console::{failed, notice, parse_id, Console, Fields};

/// The most runs a list shows.
const LIST: u32 = 100;
/// The longest comment accepted.
const MAX_COMMENT: usize = 2000;

fn target(r: &Run) -> String {
    r.target.as_ref().map(ToString::to_string).unwrap_or_else(|| "-".into())
}

fn row(r: &Run) -> Value {
    json!({
        "id": r.id,
        "playbook": r.playbook,
        "status": r.status.as_str(),
        "target": target(r),
        "trigger": format!("{} by {}", r.trigger.kind, r.trigger.actor),
        "incident": r.incident_id(),
        "created": when(r.created_at),
        "updated": when(r.updated_at),
        "dry_run": r.dry_run,
        "reason": r.reason.as_deref().map(|s| cut(s, 200)),
        "approval": r.approval.as_ref().map(|a| json!({
            "requested": when(a.requested_at),
            "expires": when(a.expires_at),
        })),
    })
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    /// The next page: runs older than this run id.
    before: Option<String>,
}

pub async fn list(
    State(console): State<Console>,
    Extension(session): Extension<Session>,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = q.map(|Query(q)| q).unwrap_or(ListQuery { status: None, before: None });
    let before = match q.before.as_deref().filter(|b| !b.is_empty()).map(str::parse::<i64>) {
        None => None,
        Some(Ok(b)) if b > 0 => Some(b),
        Some(_) => {
            return message(StatusCode::BAD_REQUEST, Some(&session), "Check the page", "before must be a run id")
        }
    };
    let raw = q.status.filter(|s| !s.is_empty() && s != "all");
    let status = match raw.as_deref().map(|s| (s, RunStatus::parse(s))) {
        None => None,
        Some((_, Some(s))) => Some(s),
        Some((s, None)) => {
            return message(
                StatusCode::BAD_REQUEST,
                Some(&session),
                "Check the filter",
                &format!("unknown run status `{}`", cut(s, 40)),
            )
        }
    };
    let mut runs = match console.app.pipeline.store.list_runs_before(status, None, before, LIST + 1) {
        Ok(r) => r,
        Err(e) => return failed(&session, StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let more = runs.len() > LIST as usize;
    runs.truncate(LIST as usize);
    let mut ctx = base(Some(&session), "runs");
    ctx.insert("runs".into(), runs.iter().map(row).collect());
    ctx.insert("older".into(), json!(more.then(|| runs.last().map(|r| r.id)).flatten()));
    ctx.insert("paged".into(), json!(before.is_some()));
    ctx.insert("status".into(), json!(status.map(|s| s.as_str()).unwrap_or("all")));
    ctx.insert(
        "statuses".into(),
        json!([
            "observed",
            "refused",
            "awaiting_approval",
            "denied",
            "expired",
            "running",
            "succeeded",
            "failed",
            "reverting",
            "reverted",
            "revert_failed"
        ]),
    );
    page(StatusCode::OK, "runs.html", ctx)
}

fn step(s: &StepState) -> Value {
    json!({
        "index": s.index,
        "name": s.name,
        "action": s.action,
        "status": compact(&serde_json::to_value(s.status).unwrap_or(Value::Null), 40),
        "phase": compact(&serde_json::to_value(s.phase).unwrap_or(Value::Null), 40),
        "sends": s.sends,
        "plan": s.plan.as_ref().map(|p| cut(&serde_json::to_string_pretty(p).unwrap_or_default(), 4000)),
        "result": s.result.as_ref().map(|p| compact(p, 1000)),
        "error": s.error.as_deref().map(|e| cut(e, 1000)),
        "refusal": s.refusal.as_ref().map(|r| compact(&serde_json::to_value(r).unwrap_or(Value::Null), 500)),
    })
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
    let id = match parse_id(&raw, "a run", &session) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let ok = q.ok().and_then(|Query(q)| q.ok);
    render_run(&console, &session, id, StatusCode::OK, notice(ok.as_deref()), None)
}

fn render_run(
    console: &Console,
    session: &Session,
    id: i64,
    status: StatusCode,
    notice: Option<&str>,
    error: Option<(&str, &str)>,
) -> Response {
    let store = &console.app.pipeline.store;
    let (run, audit) = match (store.get_run(id), store.audit_for_run(id)) {
        (Ok(Some(r)), Ok(a)) => (r, a),
        (Ok(None), _) => return failed(session, StatusCode::NOT_FOUND, &format!("no run {id}")),
        (Err(e), _) | (_, Err(e)) => return failed(session, StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let audit: Vec<Value> = audit
        .iter()
        .map(|a| {
            json!({
                "seq": a.seq,
                "at": when(a.at),
                "kind": compact(&serde_json::to_value(a.kind).unwrap_or(Value::Null), 40),
                "actor": a.actor,
                "detail": compact(&a.detail, 600),
            })
        })
        .collect();
    let mut ctx = base(Some(session), "runs");
    let mut r = row(&run);
    r["awaiting"] = json!(run.status == RunStatus::AwaitingApproval);
    r["refusal"] = json!(run.refusal.as_ref().map(|x| compact(&serde_json::to_value(x).unwrap_or(Value::Null), 500)));
    r["params"] =
        json!(run.params.iter().map(|(k, v)| format!("{k}={}", cut(&v.to_string(), 200))).collect::<Vec<_>>());
    r["decision"] = json!(run.approval.as_ref().and_then(|a| a.decided_by.as_ref().map(|by| json!({
        "by": by,
        "at": a.decided_at.map(when),
        "approved": a.approved,
        "comment": a.comment,
    }))));
    ctx.insert("run".into(), r);
    ctx.insert("steps".into(), run.steps.iter().map(step).collect());
    ctx.insert("revert_steps".into(), run.revert_steps.iter().map(step).collect());
    ctx.insert("audit".into(), Value::Array(audit));
    ctx.insert("notice".into(), json!(notice));
    ctx.insert("error".into(), json!(error.map(|e| e.0)));
    ctx.insert("comment".into(), json!(error.map(|e| e.1).unwrap_or("")));
    page(status, "run.html", ctx)
}

pub async fn approvals(State(console): State<Console>, Extension(session): Extension<Session>) -> Response {
    let runs = match console.app.pipeline.store.list_runs(Some(RunStatus::AwaitingApproval), None, LIST) {
        Ok(r) => r,
        Err(e) => return failed(&session, StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let mut ctx = base(Some(&session), "approvals");
    ctx.insert("runs".into(), runs.iter().map(row).collect());
    page(StatusCode::OK, "approvals.html", ctx)
}

async fn decide(console: Console, session: Session, raw: String, fields: Fields, approve: bool) -> Response {
    let id = match parse_id(&raw, "a run", &session) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let comment = fields.get("comment").unwrap_or("");
    let bad = if comment.is_empty() {
        Some("A decision needs a comment: say why (it is kept in the audit trail).")
    } else if comment.chars().count() > MAX_COMMENT {
        Some("The comment is too long (at most 2000 characters).")
    } else {
        None
    };
    if let Some(why) = bad {
        return render_run(&console, &session, id, StatusCode::BAD_REQUEST, None, Some((why, comment)));
    }
    match crate::api::runs::decide_as(&console.app, id, &session.actor(), approve, Some(comment.to_string())).await {
        Ok(_) => {
            let ok = if approve { "approved" } else { "denied" };
            Redirect::to(&format!("/ui/runs/{id}?ok={ok}")).into_response()
        }
        Err((StatusCode::NOT_FOUND, why)) => failed(&session, StatusCode::NOT_FOUND, &why),
        Err((status, why)) => render_run(&console, &session, id, status, None, Some((&why, comment))),
    }
}

pub async fn approve(
    State(console): State<Console>,
    Extension(session): Extension<Session>,
    Extension(fields): Extension<Fields>,
    Path(raw): Path<String>,
) -> Response {
    decide(console, session, raw, fields, true).await
}

pub async fn deny(
    State(console): State<Console>,
    Extension(session): Extension<Session>,
    Extension(fields): Extension<Fields>,
    Path(raw): Path<String>,
) -> Response {
    decide(console, session, raw, fields, false).await
}
