//! Watches and their state: ok, anomalous, no data, warming up, pending (the same states as
//! `GET /api/v1/watches`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use serde_json::json;

use crate::api::console::render::{base, cut, page, when};
use crate::api::console::session::Session;
use crate::api::console::Console;

pub async fn list(State(console): State<Console>, Extension(session): Extension<Session>) -> Response {
    let mut statuses = console.app.pipeline.watch_statuses();
    statuses.sort_by(|a, b| a.name.cmp(&b.name));
    let rows: Vec<_> = statuses
        .iter()
        .map(|w| {
            json!({
                "name": w.name,
                "state": w.state.as_str(),
                "last": w.last_evaluation.map(when),
                "series": w.series,
                "no_data_since": w.no_data_since.map(when),
                "no_data_count": w.no_data_count,
                "error": w.last_error.as_deref().map(|e| cut(e, 300)),
            })
        })
        .collect();
    let mut ctx = base(Some(&session), "watches");
    ctx.insert("watches".into(), json!(rows));
    page(StatusCode::OK, "watches.html", ctx)
}
