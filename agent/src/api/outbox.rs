//! API handlers for the outbox: what waits, what was dead-lettered and why, and the
//! operator's retry and discard of dead letters.
//!
//! Reads are for the viewer role; retry and discard need the operator role (the routes
//! are registered in [`crate::api::server::router`]). A retried message is due at once and the
//! outbox worker is woken.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;

use crate::api::AppState;
use crate::store::outbox::DeadLetterChange;

/// The states a message can be in.
pub const STATES: &[&str] = &["pending", "delivered", "digested", "dead", "discarded"];

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxQuery {
    state: Option<String>,
    channel: Option<String>,
    limit: Option<u32>,
}

/// The 400 answer for an unknown state, if it is one.
fn bad_state(state: &str) -> Option<Response> {
    (!STATES.contains(&state))
        .then(|| error(StatusCode::BAD_REQUEST, format!("state must be one of {}, not `{state}`", STATES.join(", "))))
}

/// `GET /api/v1/outbox`: counts per channel and the messages (default: pending, oldest first).
pub async fn list(State(st): State<AppState>, q: Result<Query<OutboxQuery>, QueryRejection>) -> Response {
    let Ok(Query(q)) = q else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("query parameters: state={}, channel=NAME, limit=N", STATES.join("|")),
        );
    };
    let state = q.state.as_deref().unwrap_or("pending");
    if let Some(r) = bad_state(state) {
        return r;
    }
    let store = &st.pipeline.store;
    match (store.outbox_stats(), store.list_outbox(Some(state), q.channel.as_deref(), q.limit.unwrap_or(500))) {
        (Ok(stats), Ok(messages)) => {
            let now = Utc::now();
            let channels: Vec<_> = stats
                .iter()
                .map(|s| {
                    json!({
                        "channel": s.channel, "pending": s.pending, "dead": s.dead,
                        "oldest_pending_seconds": s.oldest_pending.map(|t| (now - t).num_milliseconds().max(0) as f64 / 1000.0),
                    })
                })
                .collect();
            Json(json!({"channels": channels, "messages": messages})).into_response()
        }
        (Err(e), _) | (_, Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadQuery {
    channel: Option<String>,
    limit: Option<u32>,
}

/// `GET /api/v1/outbox/dead`: dead letters with their reasons, newest first.
pub async fn dead(State(st): State<AppState>, q: Result<Query<DeadQuery>, QueryRejection>) -> Response {
    let Ok(Query(q)) = q else {
        return error(StatusCode::BAD_REQUEST, "query parameters: channel=NAME, limit=N");
    };
    match st.pipeline.store.list_outbox(Some("dead"), q.channel.as_deref(), q.limit.unwrap_or(500)) {
        Ok(dead) => Json(json!({"dead_letters": dead})).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

fn change_response(id: i64, change: Result<DeadLetterChange, crate::store::StoreError>, what: &str) -> Response {
    match change {
        Ok(DeadLetterChange::Done(m)) => Json(json!({"message": m})).into_response(),
        Ok(DeadLetterChange::NotFound) => error(StatusCode::NOT_FOUND, format!("no outbox message {id}")),
        Ok(DeadLetterChange::NotDead(state)) => error(
            StatusCode::CONFLICT,
            format!("outbox message {id} is {state}, not dead: only dead letters can be {what}"),
        ),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `POST /api/v1/outbox/{id}/retry`: a dead letter is queued again, due now.
pub async fn retry(State(st): State<AppState>, Path(id): Path<i64>) -> Response {
    let change = st.pipeline.store.retry_dead(id, Utc::now());
    if matches!(change, Ok(DeadLetterChange::Done(_))) {
        tracing::info!(id, "dead letter retried through the API");
        st.pipeline.outbox_wake.notify_one();
    }
    change_response(id, change, "retried")
}

/// `POST /api/v1/outbox/{id}/discard`: a dead letter is dropped (kept as `discarded`).
pub async fn discard(State(st): State<AppState>, Path(id): Path<i64>) -> Response {
    let change = st.pipeline.store.discard_dead(id);
    if matches!(change, Ok(DeadLetterChange::Done(_))) {
        tracing::info!(id, "dead letter discarded through the API");
    }
    change_response(id, change, "discarded")
}

/// `POST /api/v1/outbox/dead/retry[?channel=NAME]`: every dead letter (of a channel) is
/// queued again, e.g. after a revoked webhook was replaced.
pub async fn retry_all(State(st): State<AppState>, q: Result<Query<DeadQuery>, QueryRejection>) -> Response {
    let Ok(Query(q)) = q else {
        return error(StatusCode::BAD_REQUEST, "query parameters: channel=NAME");
    };
    match st.pipeline.store.retry_all_dead(q.channel.as_deref(), Utc::now()) {
        Ok(n) => {
            tracing::info!(retried = n, channel = ?q.channel, "dead letters retried through the API");
            st.pipeline.outbox_wake.notify_one();
            Json(json!({"retried": n})).into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
