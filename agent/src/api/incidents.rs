//! A person closes the loop on an incident: `POST /api/v1/incidents/{id}/resolve` and
//! `/ack` (operator token, leader only), the same as `warden incidents resolve|ack`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde_json::json;

use crate::api::runs::DecisionBody;
use crate::api::AppState;
use crate::incident::tracker::HandOutcome;

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}

/// The optional `{"by": NAME, "comment": TEXT}` body (the same as an approval's).
fn body_of(body: &[u8]) -> Result<DecisionBody, String> {
    if body.is_empty() {
        return Ok(DecisionBody::default());
    }
    serde_json::from_slice(body).map_err(|e| format!("invalid body: {e}"))
}

async fn hand(st: AppState, id: i64, body: axum::body::Bytes, resolve: bool) -> Response {
    let body = match body_of(&body) {
        Ok(b) => b,
        Err(why) => return error(StatusCode::BAD_REQUEST, why),
    };
    let who = format!("api/{}", body.by.as_deref().unwrap_or("operator"));
    match by_hand(&st, id, &who, body.comment.as_deref(), resolve) {
        Ok(incident) => Json(json!({"incident": incident})).into_response(),
        Err((status, message)) => error(status, message),
    }
}

/// Resolve or acknowledge incident `id` as `who`: the one call behind the API's and the
/// console's buttons (the tracker records the event and queues the notifications); the
/// error is the answer's status and its message.
pub(crate) fn by_hand(
    st: &AppState,
    id: i64,
    who: &str,
    comment: Option<&str>,
    resolve: bool,
) -> Result<crate::store::Incident, (StatusCode, String)> {
    let tracker = &st.pipeline.incidents;
    let outcome = if resolve {
        tracker.resolve_by_hand(id, who, comment, Utc::now())
    } else {
        tracker.acknowledge(id, who, comment, Utc::now())
    };
    match outcome {
        Ok(HandOutcome::Done(incident)) => Ok(incident),
        Ok(HandOutcome::Unchanged(incident)) => {
            let why = if incident.status != "open" {
                format!("incident {id} is already {}", incident.status)
            } else {
                format!("incident {id} was already acknowledged")
            };
            Err((StatusCode::CONFLICT, why))
        }
        Ok(HandOutcome::NotFound) => Err((StatusCode::NOT_FOUND, format!("no incident {id}"))),
        Err(e) => Err((StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

pub async fn resolve(State(st): State<AppState>, Path(id): Path<i64>, body: axum::body::Bytes) -> Response {
    hand(st, id, body, true).await
}

pub async fn acknowledge(State(st): State<AppState>, Path(id): Path<i64>, body: axum::body::Bytes) -> Response {
    hand(st, id, body, false).await
}
