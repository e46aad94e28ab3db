//! Silences over HTTP: `GET /api/v1/silences` (viewer; `?all=true` for ended ones too),
//! `POST /api/v1/silences` and `POST /api/v1/silences/{id}/expire` (operator, leader), the
//! same as `warden silences`.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;

use crate::api::AppState;
use crate::config::HumanDuration;
use crate::incident::silence::{check_request, SilenceRequest};

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    all: bool,
}

pub async fn list(
    State(st): State<AppState>,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = q else { return error(StatusCode::BAD_REQUEST, "query parameters: all=true|false") };
    let now = Utc::now();
    match st.pipeline.store.list_silences(q.all, now) {
        Ok(silences) => {
            let rows: Vec<_> = silences.iter().map(|s| json!({"silence": s, "state": s.state(now)})).collect();
            Json(json!({"silences": rows})).into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `POST /api/v1/silences`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    matchers: Vec<String>,
    starts_at: Option<DateTime<Utc>>,
    ends_at: Option<DateTime<Utc>>,
    /// `2h`, `30m`, ... (instead of `ends_at`).
    duration: Option<String>,
    comment: String,
    /// Who (recorded as `api/NAME`; default `api/operator`).
    by: Option<String>,
}

pub async fn create(State(st): State<AppState>, body: axum::body::Bytes) -> Response {
    let body: CreateBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid body: {e}")),
    };
    let duration = match body.duration.as_deref().map(str::parse::<HumanDuration>).transpose() {
        Ok(d) => d.map(|d| d.0),
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("duration: {e}")),
    };
    let now = Utc::now();
    let request = SilenceRequest {
        matchers: body.matchers,
        starts_at: body.starts_at,
        ends_at: body.ends_at,
        duration,
        created_by: format!("api/{}", body.by.as_deref().unwrap_or("operator")),
        comment: body.comment,
    };
    match create_checked(&st, request, now) {
        Ok(s) => (StatusCode::CREATED, Json(json!({"silence": s, "state": s.state(now)}))).into_response(),
        Err((status, message)) => error(status, message),
    }
}

/// Check and store a silence: the one call behind the API's and the console's forms; the
/// error is the answer's status and what to fix.
pub(crate) fn create_checked(
    st: &AppState,
    request: SilenceRequest,
    now: DateTime<Utc>,
) -> Result<crate::incident::silence::Silence, (StatusCode, String)> {
    let new = check_request(request, now).map_err(|why| (StatusCode::BAD_REQUEST, why))?;
    match st.pipeline.store.add_silence(&new, now) {
        Ok(s) => {
            tracing::info!(silence = s.id, by = %s.created_by, matchers = ?s.matchers, "silence created");
            Ok(s)
        }
        Err(e) => Err((StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

/// End silence `id` as `by` (the API's and the console's call).
pub(crate) fn expire_as(
    st: &AppState,
    id: i64,
    by: &str,
    now: DateTime<Utc>,
) -> Result<crate::incident::silence::Silence, (StatusCode, String)> {
    match st.pipeline.store.expire_silence(id, by, now) {
        Ok(Some((s, true))) => {
            tracing::info!(silence = id, by = %by, "silence ended");
            Ok(s)
        }
        Ok(Some((_, false))) => Err((StatusCode::CONFLICT, format!("silence {id} has already ended"))),
        Ok(None) => Err((StatusCode::NOT_FOUND, format!("no silence {id}"))),
        Err(e) => Err((StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

/// `POST /api/v1/silences/{id}/expire` with an optional `{"by": NAME}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpireBody {
    by: Option<String>,
}

pub async fn expire(State(st): State<AppState>, Path(id): Path<i64>, body: axum::body::Bytes) -> Response {
    let body: ExpireBody = if body.is_empty() {
        ExpireBody::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(b) => b,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid body: {e}")),
        }
    };
    let by = format!("api/{}", body.by.as_deref().unwrap_or("operator"));
    let now = Utc::now();
    match expire_as(&st, id, &by, now) {
        Ok(s) => Json(json!({"silence": s, "state": s.state(now)})).into_response(),
        Err((status, message)) => error(status, message),
    }
}
