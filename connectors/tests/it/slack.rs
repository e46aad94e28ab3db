use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use warden_connectors::slack::SlackWebhook;
use warden_connectors::{Error, Secret};

use crate::support::{closed_port, serve, TestResult};

type Received = Arc<Mutex<Vec<(Option<String>, serde_json::Value)>>>;

async fn hook(
    Path(token): Path<String>,
    headers: HeaderMap,
    State(received): State<Received>,
    body: Bytes,
) -> Response {
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).map(str::to_string);
    let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    if let Ok(mut r) = received.lock() {
        r.push((content_type, json));
    }
    match token.as_str() {
        "ok-SECRET" => (StatusCode::OK, "ok").into_response(),
        "limited-SECRET" => (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "7")], "rate_limited").into_response(),
        "invalid-SECRET" => {
            let long = format!("invalid_payload {}", "x".repeat(2000));
            (StatusCode::BAD_REQUEST, long).into_response()
        }
        "gone-SECRET" => (StatusCode::NOT_FOUND, "no_service").into_response(),
        "down-SECRET" => (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response(),
        "slow-SECRET" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            (StatusCode::OK, "ok").into_response()
        }
        _ => (StatusCode::FORBIDDEN, "invalid_token").into_response(),
    }
}

async fn start() -> (String, Received) {
    let received = Received::default();
    let router = Router::new().route("/services/T0/{token}", post(hook)).with_state(received.clone());
    let addr = serve(router).await;
    (format!("http://{addr}/services/T0"), received)
}

fn webhook(base: &str, token: &str, timeout: Duration) -> SlackWebhook {
    SlackWebhook::new(Secret::new(format!("{base}/{token}")), timeout).expect("valid webhook")
}

fn assert_no_secret(err: &Error) {
    assert!(!err.to_string().contains("SECRET"), "{err}");
    assert!(!format!("{err:?}").contains("SECRET"), "{err:?}");
}

#[tokio::test]
async fn posts_json_payload() -> TestResult {
    let (base, received) = start().await;
    let payload = serde_json::json!({"text": "CPU high on web-1", "blocks": []});
    webhook(&base, "ok-SECRET", Duration::from_secs(5)).post(&payload).await?;
    let got = received.lock().map_err(|_| "poisoned")?.clone();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0.as_deref(), Some("application/json"));
    assert_eq!(got[0].1, payload);
    Ok(())
}

#[tokio::test]
async fn rate_limit_carries_retry_after() {
    let (base, _) = start().await;
    let err = webhook(&base, "limited-SECRET", Duration::from_secs(5))
        .post(&serde_json::json!({"text": "x"}))
        .await
        .expect_err("429");
    assert!(matches!(err, Error::RateLimited { retry_after: Some(d) } if d == Duration::from_secs(7)), "{err:?}");
    assert!(err.is_retryable());
    assert_no_secret(&err);
}

#[tokio::test]
async fn client_errors_are_rejections_with_truncated_body() {
    let (base, _) = start().await;
    let err = webhook(&base, "invalid-SECRET", Duration::from_secs(5))
        .post(&serde_json::json!({"text": "x"}))
        .await
        .expect_err("400");
    match &err {
        Error::Rejected { status, body } => {
            assert_eq!(*status, 400);
            assert!(body.starts_with("invalid_payload"));
            assert!(body.chars().count() <= 513, "{}", body.len());
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert!(!err.is_retryable());
    assert_no_secret(&err);

    let err = webhook(&base, "gone-SECRET", Duration::from_secs(5))
        .post(&serde_json::json!({"text": "x"}))
        .await
        .expect_err("404");
    assert!(matches!(err, Error::Rejected { status: 404, .. }), "{err:?}");
}

#[tokio::test]
async fn server_errors_and_transport_failures_are_retryable() {
    let (base, _) = start().await;
    let err = webhook(&base, "down-SECRET", Duration::from_secs(5))
        .post(&serde_json::json!({"text": "x"}))
        .await
        .expect_err("500");
    assert!(matches!(err, Error::Http { status: Some(500), .. }), "{err:?}");
    assert!(err.is_retryable());
    assert_no_secret(&err);

    let err = webhook(&base, "slow-SECRET", Duration::from_millis(300))
        .post(&serde_json::json!({"text": "x"}))
        .await
        .expect_err("timeout");
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert!(err.is_retryable());
    assert_no_secret(&err);

    let refused = format!("http://127.0.0.1:{}/services/T0", closed_port());
    let err = webhook(&refused, "ok-SECRET", Duration::from_secs(5))
        .post(&serde_json::json!({"text": "x"}))
        .await
        .expect_err("refused");
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert!(err.is_retryable());
    assert!(err.to_string().contains("127.0.0.1"), "{err}");
    assert_no_secret(&err);
}
