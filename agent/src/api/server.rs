//! The HTTP API: health, metrics, incidents, watches, playbooks, runs, approvals, the audit
//! trail and the Alertmanager webhook. `docs/api.yaml` is its OpenAPI description.
//!
//! `/healthz`, `/readyz` and `/metrics` are open (probes and scrapers carry no token).
//! `POST /api/v1/slack/interactions` is authenticated by Slack's request signature
//! ([`crate::api::slack`]). Everything else under `/api/` needs
//! `Authorization: Bearer <token>`, with two roles: the
//! `server.viewer_token` reads; the `server.api_token` (operator) also starts runs, approves
//! and denies, and posts alerts. Without any token the API answers 403, so it is never open
//! by accident.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;
use warden_connectors::alertmanager::WebhookPayload;

pub use crate::api::AppState;

pub fn router(state: AppState) -> Router {
    let read = Router::new()
        .route("/incidents", get(list_incidents))
        .route("/incidents/{id}", get(get_incident))
        .route("/watches", get(list_watches))
        .route("/actions", get(list_actions))
        .route("/playbooks", get(crate::api::runs::list_playbooks))
        .route("/playbooks/{name}", get(crate::api::runs::get_playbook))
        .route("/runs", get(crate::api::runs::list_runs))
        .route("/runs/{id}", get(crate::api::runs::get_run))
        .route("/audit", get(crate::api::runs::list_audit))
        .route("/audit/verify", get(crate::api::runs::verify_audit))
        .route("/outbox", get(crate::api::outbox::list))
        .route("/outbox/dead", get(crate::api::outbox::dead))
        .route("/silences", get(crate::api::silences::list))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_viewer));
    let write = Router::new()
        .route("/alerts", post(post_alerts))
        .route("/incidents/{id}/resolve", post(crate::api::incidents::resolve))
        .route("/incidents/{id}/ack", post(crate::api::incidents::acknowledge))
        .route("/playbooks/{name}/runs", post(crate::api::runs::start_run))
        .route("/runs/{id}/approve", post(crate::api::runs::approve_run))
        .route("/runs/{id}/deny", post(crate::api::runs::deny_run))
        .route("/outbox/{id}/retry", post(crate::api::outbox::retry))
        .route("/outbox/{id}/discard", post(crate::api::outbox::discard))
        .route("/outbox/dead/retry", post(crate::api::outbox::retry_all))
        .route("/silences", post(crate::api::silences::create))
        .route("/silences/{id}/expire", post(crate::api::silences::expire))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_leader))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_operator));
    // Slack cannot send a bearer token: this route checks Slack's request signature. A
    // decision is a write: the leader takes it; a follower keeps the checked press in the
    // store for the leader (Slack does not send it again after an error).
    let signed = Router::new().route("/slack/interactions", post(crate::api::slack::interactions));
    let api = read.merge(write).merge(signed);
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .nest("/api/v1", api)
        .with_state(state.clone())
        .merge(crate::api::console::router(state))
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}

/// Constant-time comparison, so the token cannot be guessed byte by byte from timings. Both
/// sides are hashed first: the comparison then always covers 32 bytes, and a length mismatch
/// returns no earlier than a match.
fn same(a: &[u8], b: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    use subtle::ConstantTimeEq;
    bool::from(Sha256::digest(a).ct_eq(&Sha256::digest(b)))
}

/// The credentials of an `Authorization: Bearer <token>` header; the scheme is
/// case-insensitive (RFC 9110, section 11.1).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim()).filter(|t| !t.is_empty())
}

/// The role a request's bearer token carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Viewer,
    Operator,
}

/// The role `token` carries (`server.api_token`: operator, `server.viewer_token`: viewer),
/// compared in constant time: the API's bearer check and the console's login share it.
pub(crate) fn role_for_token(st: &AppState, token: &str) -> Option<Role> {
    let is = |t: &Option<Arc<str>>| t.as_deref().is_some_and(|e| same(token.as_bytes(), e.as_bytes()));
    if is(&st.api_token) {
        Some(Role::Operator)
    } else if is(&st.viewer_token) {
        Some(Role::Viewer)
    } else {
        None
    }
}

// The refusal is a ready response, built once per refused request: boxing it buys nothing.
#[allow(clippy::result_large_err)]
fn role_of(st: &AppState, req: &Request) -> Result<Role, Response> {
    if st.api_token.is_none() && st.viewer_token.is_none() {
        return Err(error(StatusCode::FORBIDDEN, "the API is disabled: set server.api_token"));
    }
    let given = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(bearer);
    if let Some(role) = given.and_then(|g| role_for_token(st, g)) {
        Ok(role)
    } else {
        let mut r = error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
        r.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        Err(r)
    }
}

async fn require_viewer(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    match role_of(&st, &req) {
        Ok(role) => {
            req.extensions_mut().insert(role);
            next.run(req).await
        }
        Err(r) => r,
    }
}

async fn require_operator(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    match role_of(&st, &req) {
        Ok(Role::Operator) => {
            req.extensions_mut().insert(Role::Operator);
            next.run(req).await
        }
        Ok(Role::Viewer) => {
            error(StatusCode::FORBIDDEN, "this needs the operator role (server.api_token); the viewer token only reads")
        }
        Err(r) => r,
    }
}

/// Writes (alerts, runs, approvals, outbox changes) are the leader's: a follower answers
/// 503 with `Retry-After` and names the leader, so a client retries (Alertmanager does)
/// and reaches the leader through the Service.
async fn require_leader(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let Some(message) = follower_refusal(&st) else {
        return next.run(req).await;
    };
    let view = st.pipeline.leadership.view();
    let mut r =
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"error": message, "role": view.role, "leader": view.leader})))
            .into_response();
    r.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("2"));
    r
}

/// `None` on the leader; on a follower, why it refuses a write (naming the leader). The API's
/// write routes and the console's forms both ask it.
pub(crate) fn follower_refusal(st: &AppState) -> Option<String> {
    if st.pipeline.leadership.is_leader() {
        return None;
    }
    let view = st.pipeline.leadership.view();
    let leader = view.leader.unwrap_or_else(|| "nobody (an election is under way)".into());
    Some(format!("this replica is a follower; the leader is {leader}"))
}

async fn readyz(State(st): State<AppState>) -> Response {
    if !st.ready.load(Ordering::Relaxed) {
        return error(StatusCode::SERVICE_UNAVAILABLE, "starting");
    }
    let view = st.pipeline.leadership.view();
    if view.role == "follower" {
        // A follower serves the read API; whether the leader sees data is the leader's
        // readiness.
        return match st.pipeline.store.pending_notifications() {
            Ok(_) => Json(json!({
                "status": "ready",
                "role": "follower",
                "identity": view.identity,
                "leader": view.leader,
                "transitions": view.transitions,
            }))
            .into_response(),
            Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, format!("store: {e}")),
        };
    }
    if let Some(reason) = st.pipeline.blind() {
        return error(StatusCode::SERVICE_UNAVAILABLE, format!("every watch has no data: {reason}"));
    }
    match st.pipeline.store.pending_notifications() {
        Ok(_) => "ready".into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, format!("store: {e}")),
    }
}

async fn metrics(State(st): State<AppState>) -> Response {
    st.pipeline.metrics.refresh_from_store(&st.pipeline.store, chrono::Utc::now());
    st.pipeline.leadership.export(&st.pipeline.metrics);
    match st.pipeline.metrics.encode() {
        Ok(body) => ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body)
            .into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IncidentQuery {
    status: Option<String>,
    limit: Option<u32>,
}

async fn list_incidents(
    State(st): State<AppState>,
    q: Result<Query<IncidentQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = q else {
        return error(StatusCode::BAD_REQUEST, "query parameters: status=open|resolved, limit=N");
    };
    if let Some(s) = q.status.as_deref() {
        if s != "open" && s != "resolved" {
            return error(StatusCode::BAD_REQUEST, format!("status must be `open` or `resolved`, not `{s}`"));
        }
    }
    match st.pipeline.store.list_incidents(q.status.as_deref(), q.limit.unwrap_or(500)) {
        Ok(incidents) => Json(json!({ "incidents": incidents })).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn get_incident(State(st): State<AppState>, Path(id): Path<i64>) -> Response {
    let store = &st.pipeline.store;
    match (store.get_incident(id), store.incident_events(id), store.get_analysis(id)) {
        (Ok(Some(incident)), Ok(events), Ok(analysis)) => {
            Json(json!({"incident": incident, "events": events, "analysis": analysis})).into_response()
        }
        (Ok(None), _, _) => error(StatusCode::NOT_FOUND, format!("no incident {id}")),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn list_watches(State(st): State<AppState>) -> Response {
    Json(json!({ "watches": st.pipeline.watch_statuses() })).into_response()
}

async fn list_actions(State(st): State<AppState>) -> Response {
    match st.pipeline.store.list_runs(None, None, 500) {
        Ok(runs) => Json(json!({ "actions": crate::act::remediation::actions_view(&runs) })).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn post_alerts(State(st): State<AppState>, body: axum::body::Bytes) -> Response {
    let de = &mut serde_json::Deserializer::from_slice(&body);
    let payload: WebhookPayload = match serde_path_to_error::deserialize(de) {
        Ok(p) => p,
        Err(e) => {
            let at = e.path().to_string();
            return error(
                StatusCode::BAD_REQUEST,
                format!("invalid Alertmanager webhook payload at `{at}`: {}", e.inner()),
            );
        }
    };
    if let Err(e) = payload.validate() {
        return error(StatusCode::BAD_REQUEST, e.to_string());
    }
    match st.pipeline.handle_alerts(&payload, Utc::now()).await {
        Ok(outcome) => Json(json!({ "accepted": outcome.accepted, "runs": outcome.runs })).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::Pipeline;
    use axum::body::Body;
    use axum::http::Request as HttpRequest;
    use std::sync::atomic::AtomicBool;
    use tower::ServiceExt;

    use crate::app::assemble::NoSource;

    /// A pipeline with an empty configuration (no watches, the built-in playbooks).
    fn empty_engine() -> Pipeline {
        engine_with("")
    }

    /// A pipeline with this configuration and no metric source.
    fn engine_with(yaml: &str) -> Pipeline {
        let cfg = crate::config::parse_str(yaml, std::path::Path::new("t.yaml")).expect("config");
        Pipeline::new(
            Arc::new(cfg),
            Arc::new(crate::store::Store::open_in_memory().expect("store")),
            Arc::new(NoSource),
            None,
            Arc::new(crate::metrics::Metrics::new()),
            vec![],
            crate::timeline::Timeline::default(),
        )
    }

    fn app_with_viewer(operator: &str, viewer: &str) -> Router {
        serve(empty_engine(), Some(operator), Some(viewer))
    }

    /// The router over `engine` with these tokens, ready, without Slack.
    fn serve(engine: Pipeline, operator: Option<&str>, viewer: Option<&str>) -> Router {
        router(AppState {
            pipeline: Arc::new(engine),
            api_token: operator.map(Arc::from),
            viewer_token: viewer.map(Arc::from),
            ready: Arc::new(AtomicBool::new(true)),
            slack: None,
        })
    }

    #[tokio::test]
    async fn an_operator_acknowledges_and_resolves_an_incident_by_hand() {
        let app = app_with_viewer("op", "view");
        let firing = r#"{"version":"4","groupKey":"g","status":"firing","receiver":"w","alerts":[{"status":"firing","labels":{"alertname":"DiskFull"},"annotations":{},"startsAt":"2026-11-22T10:00:00Z"}]}"#;
        assert_eq!(call(&app, "POST", "/api/v1/alerts", Some("op"), firing).await.0, StatusCode::OK);
        let ack = r#"{"by":"alice","comment":"looking"}"#;
        assert_eq!(call(&app, "POST", "/api/v1/incidents/1/ack", Some("view"), ack).await.0, StatusCode::FORBIDDEN);
        assert_eq!(call(&app, "POST", "/api/v1/incidents/9/ack", Some("op"), ack).await.0, StatusCode::NOT_FOUND);
        let (st, body) = call(&app, "POST", "/api/v1/incidents/1/ack", Some("op"), r#"{"who":"x"}"#).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "unknown fields are refused: {body}");
        let (st, body) = call(&app, "POST", "/api/v1/incidents/1/ack", Some("op"), ack).await;
        assert_eq!(st, StatusCode::OK, "{body}");
        let (st, body) = call(&app, "POST", "/api/v1/incidents/1/ack", Some("op"), ack).await;
        assert_eq!(st, StatusCode::CONFLICT, "acknowledged once: {body}");
        assert!(body.contains("already acknowledged"), "{body}");
        let (st, body) =
            call(&app, "POST", "/api/v1/incidents/1/resolve", Some("op"), r#"{"comment":"fixed the disk"}"#).await;
        assert_eq!(st, StatusCode::OK, "{body}");
        assert!(body.contains(r#""status":"resolved""#), "{body}");
        let (st, body) = call(&app, "POST", "/api/v1/incidents/1/resolve", Some("op"), "").await;
        assert_eq!(st, StatusCode::CONFLICT, "{body}");
        assert!(body.contains("already resolved"), "{body}");
        // Both are in the incident's history, with who and why.
        let (_, body) = call(&app, "GET", "/api/v1/incidents/1", Some("view"), "").await;
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        let events = v["events"].as_array().expect("events");
        let of = |kind: &str| events.iter().find(|e| e["kind"] == kind).map(|e| e["detail"].clone());
        let acked = of("acknowledged").expect("acknowledged event");
        assert_eq!((acked["by"].as_str(), acked["comment"].as_str()), (Some("api/alice"), Some("looking")));
        let resolved = of("resolved").expect("resolved event");
        assert_eq!(resolved["by_hand"], true, "{resolved}");
        assert_eq!(
            (resolved["by"].as_str(), resolved["comment"].as_str()),
            (Some("api/operator"), Some("fixed the disk"))
        );
        // And in the hash-chained audit trail, as people's hands (the refused second tries
        // are not), the chain intact.
        let (st, body) = call(&app, "GET", "/api/v1/audit?kind=incident", Some("view"), "").await;
        assert_eq!(st, StatusCode::OK, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        let hands: Vec<(String, String, String)> = v["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .map(|e| {
                let s = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
                (s(&e["actor"]), s(&e["detail"]["action"]), s(&e["detail"]["comment"]))
            })
            .collect();
        assert_eq!(
            hands,
            [
                ("api/alice".into(), "acknowledged".into(), "looking".into()),
                ("api/operator".into(), "resolved".into(), "fixed the disk".into())
            ]
        );
        let (_, body) = call(&app, "GET", "/api/v1/audit/verify", Some("view"), "").await;
        assert!(body.contains(r#""intact":true"#), "{body}");
        let (st, body) = call(&app, "GET", "/api/v1/audit?kind=ack", Some("view"), "").await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
        assert!(body.contains("kind=trigger|"), "the error names the kinds: {body}");
        let (_, body) = call(&app, "GET", "/api/v1/audit?last=1", Some("view"), "").await;
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(v["entries"].as_array().map(Vec::len), Some(1), "{body}");
        assert_eq!(v["entries"][0]["detail"]["action"], "resolved", "the latest: {body}");
    }

    #[tokio::test]
    async fn silences_are_made_listed_and_ended_and_a_silenced_incident_says_so() {
        let app = app_with_viewer("op", "view");
        let good = r#"{"matchers":["alertname=DiskFull"],"duration":"2h","comment":"disk swap","by":"alice"}"#;
        assert_eq!(call(&app, "POST", "/api/v1/silences", Some("view"), good).await.0, StatusCode::FORBIDDEN);
        for (bad, says) in [
            (r#"{"matchers":["alertname"],"duration":"2h","comment":"x"}"#, "expected `name=value`"),
            (r#"{"matchers":["a=~.*"],"duration":"2h","comment":"x"}"#, "silence everything"),
            (r#"{"matchers":["a=b"],"duration":"soon","comment":"x"}"#, "duration"),
            (r#"{"matchers":["a=b"],"comment":"x"}"#, "an end or a duration"),
            (r#"{"matchers":["a=b"],"duration":"2h"}"#, "missing field `comment`"),
            (r#"{"matchers":["a=b"],"duration":"2h","comment":"x","who":"y"}"#, "unknown field `who`"),
            (r#"{"matchers":["a=b"],"ends_at":"2020-01-01T00:00:00Z","comment":"x"}"#, "before it starts"),
        ] {
            let (st, body) = call(&app, "POST", "/api/v1/silences", Some("op"), bad).await;
            assert_eq!(st, StatusCode::BAD_REQUEST, "{bad}: {body}");
            assert!(body.contains(says), "{bad}: {body}");
        }
        let (st, body) = call(&app, "POST", "/api/v1/silences", Some("op"), good).await;
        assert_eq!(st, StatusCode::CREATED, "{body}");
        let made: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(
            (made["state"].as_str(), made["silence"]["created_by"].as_str()),
            (Some("active"), Some("api/alice"))
        );
        let id = made["silence"]["id"].as_i64().expect("id");

        // An incident that opens under it is recorded, and says it is silenced.
        let firing = r#"{"version":"4","groupKey":"g","status":"firing","receiver":"w","alerts":[{"status":"firing","labels":{"alertname":"DiskFull"},"annotations":{},"startsAt":"2026-11-22T10:00:00Z"}]}"#;
        assert_eq!(call(&app, "POST", "/api/v1/alerts", Some("op"), firing).await.0, StatusCode::OK);
        let (_, body) = call(&app, "GET", "/api/v1/incidents/1", Some("view"), "").await;
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        let silenced = v["events"].as_array().expect("events").iter().find(|e| e["kind"] == "silenced").cloned();
        assert_eq!(silenced.map(|e| e["detail"]["silence"].clone()), Some(serde_json::json!(id)), "{body}");

        let (st, body) = call(&app, "GET", "/api/v1/silences", Some("view"), "").await;
        assert_eq!(st, StatusCode::OK);
        assert!(body.contains("alertname=\\\"DiskFull\\\""), "{body}");
        let path = format!("/api/v1/silences/{id}/expire");
        assert_eq!(call(&app, "POST", &path, Some("op"), r#"{"by":"bob"}"#).await.0, StatusCode::OK);
        let (st, body) = call(&app, "POST", &path, Some("op"), "").await;
        assert_eq!(st, StatusCode::CONFLICT, "{body}");
        assert_eq!(call(&app, "POST", "/api/v1/silences/99/expire", Some("op"), "").await.0, StatusCode::NOT_FOUND);
        let (_, body) = call(&app, "GET", "/api/v1/silences", Some("view"), "").await;
        assert_eq!(body, r#"{"silences":[]}"#, "ended silences are not listed by default");
        let (_, body) = call(&app, "GET", "/api/v1/silences?all=true", Some("view"), "").await;
        assert!(body.contains(r#""expired_by":"api/bob""#) && body.contains(r#""state":"expired""#), "{body}");
    }

    #[tokio::test]
    async fn a_silenced_alert_starts_no_playbook() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("page.yaml"),
            "name: page\ntarget: none\ntriggers:\n  - alert: {labels: {team: storage}}\nguards: {autonomy: auto}\nsteps:\n  - notify: {message: paging}\n",
        )
        .expect("playbook");
        let engine = engine_with(&format!("playbooks: {{ dir: '{}' }}\n", dir.path().display()));
        let app = serve(engine, Some("op"), Some("view"));
        let silence = r#"{"matchers":["alertname=DiskFull"],"duration":"1h","comment":"disk swap"}"#;
        assert_eq!(call(&app, "POST", "/api/v1/silences", Some("op"), silence).await.0, StatusCode::CREATED);
        let alert = |name: &str| {
            format!(
                r#"{{"version":"4","groupKey":"g","status":"firing","receiver":"w","alerts":[{{"status":"firing","labels":{{"alertname":"{name}","team":"storage"}},"annotations":{{}},"startsAt":"2026-11-22T10:00:00Z"}}]}}"#
            )
        };
        assert_eq!(call(&app, "POST", "/api/v1/alerts", Some("op"), &alert("DiskFull")).await.0, StatusCode::OK);
        let (_, body) = call(&app, "GET", "/api/v1/runs", Some("view"), "").await;
        assert_eq!(body, r#"{"runs":[]}"#, "the silenced alert started a run");
        assert_eq!(call(&app, "POST", "/api/v1/alerts", Some("op"), &alert("DiskSlow")).await.0, StatusCode::OK);
        let (_, body) = call(&app, "GET", "/api/v1/runs", Some("view"), "").await;
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(v["runs"].as_array().map(Vec::len), Some(1), "{body}");
        assert_eq!(v["runs"][0]["playbook"], "page");
    }

    #[tokio::test]
    async fn viewers_read_operators_act() {
        let app = app_with_viewer("op", "view");
        // Both roles read.
        for token in ["op", "view"] {
            let (st, body) = call(&app, "GET", "/api/v1/playbooks", Some(token), "").await;
            assert_eq!(st, StatusCode::OK, "{body}");
            assert!(body.contains("scale-up-on-saturation") && body.contains("retrain-on-drift"), "{body}");
            assert_eq!(call(&app, "GET", "/api/v1/runs", Some(token), "").await.0, StatusCode::OK);
            assert_eq!(call(&app, "GET", "/api/v1/audit/verify", Some(token), "").await.0, StatusCode::OK);
        }
        // Only the operator starts runs and decides approvals.
        let start = r#"{"target":"shop/checkout","params":{"verify_query":"up"}}"#;
        let (st, body) = call(&app, "POST", "/api/v1/playbooks/scale-up-on-saturation/runs", Some("view"), start).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
        assert!(body.contains("operator"), "{body}");
        assert_eq!(call(&app, "POST", "/api/v1/runs/1/approve", Some("view"), "").await.0, StatusCode::FORBIDDEN);
        // The operator's requests are checked: unknown playbook, bad parameter, bad target.
        assert_eq!(call(&app, "POST", "/api/v1/playbooks/nope/runs", Some("op"), start).await.0, StatusCode::NOT_FOUND);
        let (st, body) = call(
            &app,
            "POST",
            "/api/v1/playbooks/scale-up-on-saturation/runs",
            Some("op"),
            r#"{"target":"shop/checkout","params":{"step":"99","verify_query":"up"}}"#,
        )
        .await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
        assert!(body.contains("step"), "{body}");
        assert_eq!(
            call(&app, "POST", "/api/v1/playbooks/scale-up-on-saturation/runs", Some("op"), r#"{"target":"checkout"}"#)
                .await
                .0,
            StatusCode::BAD_REQUEST
        );
        // No cluster here: the run is stored as failed, with the reason.
        let (st, body) = call(&app, "POST", "/api/v1/playbooks/scale-up-on-saturation/runs", Some("op"), start).await;
        assert_eq!(st, StatusCode::CREATED, "{body}");
        assert!(body.contains("no Kubernetes cluster is configured"), "{body}");
        let (st, body) = call(&app, "POST", "/api/v1/runs/1/approve", Some("op"), "").await;
        assert_eq!(st, StatusCode::CONFLICT, "{body}");
        assert_eq!(call(&app, "GET", "/api/v1/runs/1", Some("view"), "").await.0, StatusCode::OK);
        assert_eq!(call(&app, "GET", "/api/v1/runs/99", Some("view"), "").await.0, StatusCode::NOT_FOUND);
    }

    fn app(token: Option<&str>) -> Router {
        serve(empty_engine(), token, None)
    }

    async fn call(app: &Router, method: &str, uri: &str, token: Option<&str>, body: &str) -> (StatusCode, String) {
        let mut req = HttpRequest::builder().method(method).uri(uri).header("content-type", "application/json");
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let resp =
            app.clone().oneshot(req.body(Body::from(body.to_string())).expect("request")).await.expect("response");
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.expect("body");
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[tokio::test]
    async fn health_and_metrics_are_open_api_needs_the_token() {
        let app = app(Some("s3cret"));
        assert_eq!(call(&app, "GET", "/healthz", None, "").await.0, StatusCode::OK);
        assert_eq!(call(&app, "GET", "/readyz", None, "").await.0, StatusCode::OK);
        let (st, body) = call(&app, "GET", "/metrics", None, "").await;
        assert_eq!(st, StatusCode::OK);
        assert!(body.contains("warden_open_incidents"), "{body}");
        assert_eq!(call(&app, "GET", "/api/v1/incidents", None, "").await.0, StatusCode::UNAUTHORIZED);
        assert_eq!(call(&app, "GET", "/api/v1/incidents", Some("wrong"), "").await.0, StatusCode::UNAUTHORIZED);
        let (st, body) = call(&app, "GET", "/api/v1/incidents", Some("s3cret"), "").await;
        assert_eq!((st, body.as_str()), (StatusCode::OK, r#"{"incidents":[]}"#));
        assert_eq!(
            call(&app, "GET", "/api/v1/incidents?status=maybe", Some("s3cret"), "").await.0,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(call(&app, "GET", "/api/v1/incidents/7", Some("s3cret"), "").await.0, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn alert_triggered_runs_belong_to_the_alerts_incident() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("page.yaml"),
            "name: page\ntarget: none\ntriggers:\n  - alert: {labels: {alertname: A}}\nguards: {autonomy: auto}\nsteps:\n  - notify: {message: '{{ alert.name }} fired'}\n",
        )
        .expect("write");
        let cfg = crate::config::parse_str(
            &format!("playbooks: {{dir: '{}'}}\n", dir.path().display()),
            std::path::Path::new("t.yaml"),
        )
        .expect("config");
        let engine = Pipeline::new(
            Arc::new(cfg),
            Arc::new(crate::store::Store::open_in_memory().expect("store")),
            Arc::new(NoSource),
            None,
            Arc::new(crate::metrics::Metrics::new()),
            vec!["file"],
            crate::timeline::Timeline::default(),
        );
        let app = serve(engine, Some("t"), None);
        let ok = r#"{"version":"4","groupKey":"g","status":"firing","receiver":"w","alerts":[{"status":"firing","labels":{"alertname":"A"},"annotations":{},"startsAt":"2026-11-22T10:00:00Z"}]}"#;
        let (st, body) = call(&app, "POST", "/api/v1/alerts", Some("t"), ok).await;
        assert_eq!((st, body.as_str()), (StatusCode::OK, r#"{"accepted":1,"runs":[1]}"#));
        let (_, body) = call(&app, "GET", "/api/v1/runs/1", Some("t"), "").await;
        let run: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(run["run"]["status"], "succeeded", "{body}");
        assert_eq!(run["run"]["trigger"]["incident_id"], 1, "{body}");
        // The notify step's message is an event of the incident, with its notification.
        let (_, body) = call(&app, "GET", "/api/v1/incidents/1", Some("t"), "").await;
        assert!(body.contains("A fired"), "{body}");
    }

    #[tokio::test]
    async fn a_follower_is_ready_names_the_leader_and_refuses_writes() {
        use crate::leadership::testing::Election;
        let cfg = crate::config::parse_str(
            "prometheus: { url: 'http://127.0.0.1:9' }\nwatches:\n  - name: a\n    query: up\n",
            std::path::Path::new("t.yaml"),
        )
        .expect("config");
        let election = Election::new();
        let (_a, leader) = election.leader("warden-0").await;
        let (_b, follower) = election.follower("warden-1").await;
        let app_of = |leadership: crate::leadership::Leadership| {
            let cfg = Arc::new(cfg.clone());
            async move { follower_app(cfg, leadership).await }
        };
        async fn follower_app(cfg: Arc<crate::config::Config>, leadership: crate::leadership::Leadership) -> Router {
            let engine = Pipeline::new(
                cfg,
                Arc::new(crate::store::Store::open_in_memory().expect("store")),
                Arc::new(NoSource),
                None,
                Arc::new(crate::metrics::Metrics::new()),
                vec![],
                crate::timeline::Timeline::default(),
            )
            .with_leadership(leadership, std::time::Duration::from_secs(10));
            // Prometheus is unreachable: every watch has no data.
            engine.evaluate_watch(0, Utc::now()).await;
            serve(engine, Some("op"), None)
        }
        // The leader is blind: not ready, as without leader election.
        let app = app_of(leader).await;
        let (st, body) = call(&app, "GET", "/readyz", None, "").await;
        assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(body.contains("no data"), "{body}");

        // A follower serves reads and says who leads; writes go to the leader.
        let app = app_of(follower).await;
        let (st, body) = call(&app, "GET", "/readyz", None, "").await;
        assert_eq!(st, StatusCode::OK, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!((v["role"].as_str(), v["leader"].as_str()), (Some("follower"), Some("warden-0")), "{body}");
        assert_eq!(v["identity"], "warden-1");
        assert_eq!(call(&app, "GET", "/api/v1/runs", Some("op"), "").await.0, StatusCode::OK);
        let alert = r#"{"version":"4","groupKey":"g","status":"firing","receiver":"w","alerts":[{"status":"firing","labels":{"alertname":"A"},"annotations":{},"startsAt":"2026-11-22T10:00:00Z"}]}"#;
        let (st, body) = call(&app, "POST", "/api/v1/alerts", Some("op"), alert).await;
        assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(body.contains("follower") && body.contains("warden-0"), "{body}");
        let (_, body) = call(&app, "GET", "/api/v1/incidents", Some("op"), "").await;
        assert_eq!(body, r#"{"incidents":[]}"#, "a follower's alert opens nothing");
        let (_, metrics) = call(&app, "GET", "/metrics", None, "").await;
        assert!(metrics.contains("warden_leader 0") && metrics.contains("warden_leader_transitions 0"), "{metrics}");
    }

    #[tokio::test]
    async fn the_bearer_scheme_is_case_insensitive() {
        let app = app(Some("s3cret"));
        for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
            let req = HttpRequest::builder()
                .uri("/api/v1/incidents")
                .header("authorization", format!("{scheme} s3cret"))
                .body(Body::empty())
                .expect("request");
            let resp = app.clone().oneshot(req).await.expect("response");
            assert_eq!(resp.status(), StatusCode::OK, "{scheme}");
        }
        for value in ["Basic s3cret", "Bearers3cret", "bearer", "bearer s3cre", "bearer s3cret0"] {
            let req = HttpRequest::builder()
                .uri("/api/v1/incidents")
                .header("authorization", value)
                .body(Body::empty())
                .expect("request");
            let resp = app.clone().oneshot(req).await.expect("response");
            assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{value}");
        }
        assert!(same(b"abc", b"abc") && !same(b"abc", b"abcd") && !same(b"", b"a"));
    }

    #[tokio::test]
    async fn api_is_closed_without_a_configured_token() {
        let app = app(None);
        assert_eq!(call(&app, "GET", "/api/v1/watches", Some("anything"), "").await.0, StatusCode::FORBIDDEN);
    }

    #[tokio::test]
    async fn alert_payloads_are_validated() {
        let app = app(Some("t"));
        let (st, body) = call(&app, "POST", "/api/v1/alerts", Some("t"), r#"{"version":"4","groupKey":"g","status":"firing","receiver":"w","alerts":[{"status":"firing","labels":{"alertname":"A"},"startsAt":"not a time"}]}"#).await;
        assert_eq!(st, StatusCode::BAD_REQUEST);
        assert!(body.contains("alerts[0].startsAt"), "{body}");
        let (st, body) = call(
            &app,
            "POST",
            "/api/v1/alerts",
            Some("t"),
            r#"{"version":"3","groupKey":"g","status":"firing","receiver":"w","alerts":[]}"#,
        )
        .await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
        let (st, _) = call(&app, "POST", "/api/v1/alerts", Some("t"), "{not json").await;
        assert_eq!(st, StatusCode::BAD_REQUEST);
        let ok = r#"{"version":"4","groupKey":"g","status":"firing","receiver":"w","alerts":[{"status":"firing","labels":{"alertname":"A"},"annotations":{},"startsAt":"2026-11-22T10:00:00Z"}]}"#;
        let (st, body) = call(&app, "POST", "/api/v1/alerts", Some("t"), ok).await;
        assert_eq!((st, body.as_str()), (StatusCode::OK, r#"{"accepted":1,"runs":[]}"#));
        let (_, body) = call(&app, "GET", "/api/v1/incidents?status=open", Some("t"), "").await;
        assert!(body.contains(r#""source":"alertmanager""#), "{body}");
    }
}
