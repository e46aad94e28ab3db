//! API handlers for playbooks, runs, approvals and the audit trail.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;
use warden_playbooks::engine::StartRequest;
use warden_playbooks::run::{RunStatus, Target, TriggerInfo};
use warden_playbooks::spec::TargetKind;
use warden_playbooks::template::Vars;

use crate::api::AppState;

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}

macro_rules! remediation {
    ($st:expr) => {
        match $st.pipeline.remediation().cloned() {
            Some(r) => r,
            None => return error(StatusCode::SERVICE_UNAVAILABLE, "playbooks did not load; see the daemon's log"),
        }
    };
}

pub async fn list_playbooks(State(st): State<AppState>) -> Response {
    let rem = remediation!(st);
    let list: Vec<_> = rem
        .catalog
        .iter()
        .map(|e| &e.playbook)
        .map(|pb| {
            json!({
                "name": pb.name, "description": pb.description, "target": pb.target,
                "triggers": pb.triggers, "params": pb.params,
                "autonomy": rem.runs.defaults.overlay(&pb.guards).autonomy.as_str(),
            })
        })
        .collect();
    Json(json!({"playbooks": list})).into_response()
}

pub async fn get_playbook(State(st): State<AppState>, Path(name): Path<String>) -> Response {
    let rem = remediation!(st);
    match rem.catalog.get(&name) {
        Some(pb) => Json(json!({"playbook": pb, "guards": rem.runs.defaults.overlay(&pb.guards)})).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("no playbook {name:?}")),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartBody {
    #[serde(default)]
    params: BTreeMap<String, warden_playbooks::spec::Arg>,
    /// `namespace/deployment` or a node name.
    target: Option<String>,
    #[serde(default)]
    dry_run: bool,
}

pub async fn start_run(State(st): State<AppState>, Path(name): Path<String>, body: axum::body::Bytes) -> Response {
    let rem = remediation!(st);
    let body: StartBody = if body.is_empty() {
        StartBody { params: BTreeMap::new(), target: None, dry_run: false }
    } else {
        let de = &mut serde_json::Deserializer::from_slice(&body);
        match serde_path_to_error::deserialize(de) {
            Ok(b) => b,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid body at `{}`: {}", e.path(), e.inner())),
        }
    };
    let Some(pb) = rem.catalog.get(&name).cloned() else {
        return error(StatusCode::NOT_FOUND, format!("no playbook {name:?}"));
    };
    let target = match (&body.target, pb.target) {
        (Some(t), kind) if kind != TargetKind::None => match Target::parse(kind, t) {
            Ok(t) => Some(t),
            Err(e) => return error(StatusCode::BAD_REQUEST, e),
        },
        (Some(_), _) => return error(StatusCode::BAD_REQUEST, format!("playbook {name} takes no target")),
        (None, _) => None,
    };
    let req = StartRequest {
        playbook: pb,
        params: body.params.iter().map(|(k, v)| (k.clone(), v.to_string())).collect(),
        target,
        trigger: TriggerInfo {
            kind: "manual".into(),
            actor: "api/operator".into(),
            incident_id: None,
            detail: json!({}),
        },
        vars: Vars::new(),
        has_data: None,
        dry_run: body.dry_run,
        now: Utc::now(),
    };
    match rem.runs.start(req).await {
        Ok(run) => (StatusCode::CREATED, Json(json!({"run": run}))).into_response(),
        Err(
            e @ (warden_playbooks::Error::Param { .. }
            | warden_playbooks::Error::Invalid(_)
            | warden_playbooks::Error::TimeOutOfRange { .. }),
        ) => error(StatusCode::BAD_REQUEST, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunsQuery {
    status: Option<String>,
    incident: Option<i64>,
    limit: Option<u32>,
}

pub async fn list_runs(
    State(st): State<AppState>,
    q: Result<Query<RunsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = q else {
        return error(StatusCode::BAD_REQUEST, "query parameters: status=<run status>, incident=ID, limit=N");
    };
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => match RunStatus::parse(s) {
            Some(s) => Some(s),
            None => return error(StatusCode::BAD_REQUEST, format!("unknown run status `{s}`")),
        },
    };
    match st.pipeline.store.list_runs(status, q.incident, q.limit.unwrap_or(100)) {
        Ok(runs) => Json(json!({"runs": runs})).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

pub async fn get_run(State(st): State<AppState>, Path(id): Path<i64>) -> Response {
    match (st.pipeline.store.get_run(id), st.pipeline.store.audit_for_run(id)) {
        (Ok(Some(run)), Ok(audit)) => Json(json!({"run": run, "audit": audit})).into_response(),
        (Ok(None), _) => error(StatusCode::NOT_FOUND, format!("no run {id}")),
        (Err(e), _) | (_, Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    pub comment: Option<String>,
    /// Who decides (recorded); defaults to `api/operator`.
    pub by: Option<String>,
}

async fn decide(st: AppState, id: i64, approve: bool, body: axum::body::Bytes) -> Response {
    let body: DecisionBody = if body.is_empty() {
        DecisionBody::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(b) => b,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid body: {e}")),
        }
    };
    let who = match body.by {
        Some(b) => format!("api/{b}"),
        None => "api/operator".into(),
    };
    match decide_as(&st, id, &who, approve, body.comment).await {
        Ok(run) => Json(json!({"run": run})).into_response(),
        Err((status, message)) => error(status, message),
    }
}

/// Approve or deny run `id` as `who`: the one call behind the API's and the console's
/// decisions (`Engine::decide`, audited with `who`); the error is the answer's status and
/// its message.
pub(crate) async fn decide_as(
    st: &AppState,
    id: i64,
    who: &str,
    approve: bool,
    comment: Option<String>,
) -> Result<warden_playbooks::run::Run, (StatusCode, String)> {
    let Some(rem) = st.pipeline.remediation().cloned() else {
        return Err((StatusCode::SERVICE_UNAVAILABLE, "playbooks did not load; see the daemon's log".into()));
    };
    match rem.runs.decide(id, who, approve, comment, Utc::now()).await {
        Ok(run) => Ok(run),
        Err(warden_playbooks::Error::Invalid(m)) if m.starts_with("no run") => Err((StatusCode::NOT_FOUND, m)),
        Err(warden_playbooks::Error::Invalid(m)) => Err((StatusCode::CONFLICT, m)),
        Err(e) => Err((StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

pub async fn approve_run(State(st): State<AppState>, Path(id): Path<i64>, body: axum::body::Bytes) -> Response {
    decide(st, id, true, body).await
}

pub async fn deny_run(State(st): State<AppState>, Path(id): Path<i64>, body: axum::body::Bytes) -> Response {
    decide(st, id, false, body).await
}

pub async fn verify_audit(State(st): State<AppState>) -> Response {
    let head = match st.pipeline.store.audit_head() {
        Ok(h) => h,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    match st.pipeline.store.audit_entries() {
        Ok(entries) => match warden_playbooks::audit::verify_with_head(&entries, head.as_ref()) {
            Ok(s) => Json(json!({"intact": true, "entries": s.entries, "head": s.head})).into_response(),
            Err(b) => Json(json!({"intact": false, "broken_at": b.seq, "reason": b.reason})).into_response(),
        },
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    run: Option<i64>,
    kind: Option<warden_playbooks::audit::AuditKind>,
    last: Option<u32>,
}

/// `GET /api/v1/audit`: the latest entries (default 50), oldest first; `run` and `kind`
/// filter (`kind=incident` and `kind=silence` are people's hands on incidents and silences).
pub async fn list_audit(
    State(st): State<AppState>,
    q: Result<axum::extract::Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(axum::extract::Query(q)) = q else {
        return error(
            StatusCode::BAD_REQUEST,
            "query parameters: run=ID, kind=trigger|guard|approval|request|response|verify|revert|state|incident|silence, last=N",
        );
    };
    match st.pipeline.store.audit_query(q.run, q.kind, Some(q.last.unwrap_or(50))) {
        Ok(entries) => Json(json!({ "entries": entries })).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
