use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::{TimeZone, Utc};
use warden_connectors::prometheus::{PrometheusClient, PrometheusConfig, Sample};
use warden_connectors::{Error, HttpAuth, Secret, TlsOptions};

use crate::support::{closed_port, serve, TestResult};

/// Query parameters and `Authorization` header of one request.
type Request = (HashMap<String, String>, Option<String>);

#[derive(Default, Clone)]
struct Seen {
    requests: Arc<Mutex<Vec<Request>>>,
}

const MATRIX: &str = r#"{"status":"success","data":{"resultType":"matrix","result":[
  {"metric":{"__name__":"http_requests_total","job":"api","instance":"a:9100"},
   "values":[[1700000000,"1"],[1700000015.5,"2.5"],[1700000030,"NaN"]]},
  {"metric":{"job":"api","instance":"b:9100"},
   "values":[[1700000000,"+Inf"],[1700000015.5,"-Inf"]]},
  {"metric":{"job":"db"},"values":[]}
]}}"#;

async fn handler(
    Path(scenario): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    State(seen): State<Seen>,
) -> Response {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string);
    if let Ok(mut requests) = seen.requests.lock() {
        requests.push((params, auth));
    }
    let json =
        |status: StatusCode, body: &'static str| (status, [("content-type", "application/json")], body).into_response();
    match scenario.as_str() {
        "ok" => json(StatusCode::OK, MATRIX),
        "warnings" => json(
            StatusCode::OK,
            r#"{"status":"success","data":{"resultType":"matrix","result":[]},
                "warnings":["query was partially answered: store unavailable"]}"#,
        ),
        "bad-data" => json(
            StatusCode::BAD_REQUEST,
            r#"{"status":"error","errorType":"bad_data","error":"1:5: parse error: unexpected end of input"}"#,
        ),
        "unavailable" => json(
            StatusCode::SERVICE_UNAVAILABLE,
            r#"{"status":"error","errorType":"unavailable","error":"TSDB not ready"}"#,
        ),
        "gateway" => (StatusCode::SERVICE_UNAVAILABLE, "upstream connect error").into_response(),
        "invalid" => json(StatusCode::OK, "<html>not json</html>"),
        "truncated" => {
            json(StatusCode::OK, r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{}"#)
        }
        "vector" => json(StatusCode::OK, r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#),
        "slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            json(StatusCode::OK, MATRIX)
        }
        _ => (StatusCode::NOT_FOUND, "no such scenario").into_response(),
    }
}

async fn start() -> (String, Seen) {
    let seen = Seen::default();
    let router = Router::new().route("/{scenario}/api/v1/query_range", get(handler)).with_state(seen.clone());
    let addr = serve(router).await;
    (format!("http://{addr}"), seen)
}

fn client(base: &str, scenario: &str, auth: Option<HttpAuth>, timeout: Duration) -> PrometheusClient {
    let cfg = PrometheusConfig {
        url: format!("{base}/{scenario}").parse().expect("test URL"),
        auth,
        timeout,
        tls: TlsOptions::default(),
    };
    PrometheusClient::new(cfg).expect("valid config")
}

fn range() -> (chrono::DateTime<Utc>, chrono::DateTime<Utc>) {
    let start = Utc.timestamp_millis_opt(1_700_000_000_250).single().expect("valid time");
    (start, start + chrono::Duration::minutes(5))
}

async fn run(base: &str, scenario: &str) -> Result<warden_connectors::prometheus::RangeResult, Error> {
    let (start, end) = range();
    client(base, scenario, None, Duration::from_secs(5)).query_range("up", start, end, Duration::from_secs(15)).await
}

#[tokio::test]
async fn success_parses_series_and_sends_parameters() -> TestResult {
    let (base, seen) = start().await;
    let (start, end) = range();
    let token = HttpAuth::Bearer(Secret::new("s3cr3t-token".into()));
    let prom = client(&base, "ok", Some(token), Duration::from_secs(5));
    let query = r#"sum by (job) (rate(http_requests_total{code=~"5.."}[5m]))"#;
    let result = prom.query_range(query, start, end, Duration::from_millis(15_500)).await?;

    assert!(result.warnings.is_empty());
    assert_eq!(result.series.len(), 3);
    let a = &result.series[0];
    assert_eq!(a.labels.get("instance").map(String::as_str), Some("a:9100"));
    assert_eq!(a.labels.get("__name__").map(String::as_str), Some("http_requests_total"));
    assert_eq!(a.points[0], Sample { timestamp_ms: 1_700_000_000_000, value: 1.0 });
    assert_eq!(a.points[1], Sample { timestamp_ms: 1_700_000_015_500, value: 2.5 });
    assert!(a.points[2].value.is_nan());
    let b = &result.series[1];
    assert_eq!(b.points[0].value, f64::INFINITY);
    assert_eq!(b.points[1].value, f64::NEG_INFINITY);
    assert!(result.series[2].points.is_empty());

    let requests = seen.requests.lock().map_err(|_| "poisoned")?.clone();
    assert_eq!(requests.len(), 1);
    let (params, auth) = &requests[0];
    assert_eq!(params.get("query").map(String::as_str), Some(query));
    assert_eq!(params.get("start").map(String::as_str), Some("1700000000.250"));
    assert_eq!(params.get("end").map(String::as_str), Some("1700000300.250"));
    assert_eq!(params.get("step").map(String::as_str), Some("15.5"));
    assert_eq!(auth.as_deref(), Some("Bearer s3cr3t-token"));
    Ok(())
}

#[tokio::test]
async fn basic_auth_is_sent() -> TestResult {
    let (base, seen) = start().await;
    let (start, end) = range();
    let auth = HttpAuth::Basic { username: "warden".into(), password: Secret::new("pw".into()) };
    client(&base, "ok", Some(auth), Duration::from_secs(5))
        .query_range("up", start, end, Duration::from_secs(15))
        .await?;
    let requests = seen.requests.lock().map_err(|_| "poisoned")?.clone();
    // base64("warden:pw")
    assert_eq!(requests[0].1.as_deref(), Some("Basic d2FyZGVuOnB3"));
    Ok(())
}

#[tokio::test]
async fn warnings_mark_partial_response() -> TestResult {
    let (base, _) = start().await;
    let result = run(&base, "warnings").await?;
    assert!(result.series.is_empty());
    assert_eq!(result.warnings, vec!["query was partially answered: store unavailable".to_string()]);
    Ok(())
}

#[tokio::test]
async fn bad_data_error_is_reported() {
    let (base, _) = start().await;
    let err = run(&base, "bad-data").await.expect_err("400 bad_data");
    match &err {
        Error::Prometheus { error_type, message } => {
            assert_eq!(error_type, "bad_data");
            assert!(message.contains("parse error"), "{message}");
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn unavailable_is_retryable() {
    let (base, _) = start().await;
    let err = run(&base, "unavailable").await.expect_err("503");
    assert!(matches!(&err, Error::Prometheus { error_type, .. } if error_type == "unavailable"), "{err:?}");
    assert!(err.is_retryable());

    let err = run(&base, "gateway").await.expect_err("503 without JSON");
    match &err {
        Error::Http { url, status, message } => {
            assert_eq!(*status, Some(503));
            assert!(url.ends_with("/gateway/api/v1/query_range"), "{url}");
            assert!(message.contains("upstream connect error"), "{message}");
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert!(err.is_retryable());
}

#[tokio::test]
async fn invalid_and_truncated_json_are_decode_errors() {
    let (base, _) = start().await;
    for scenario in ["invalid", "truncated", "vector"] {
        let err = run(&base, scenario).await.expect_err("decode error");
        match &err {
            Error::Decode { url, message } => {
                assert!(url.contains(scenario), "{url}");
                assert!(!message.is_empty());
            }
            other => panic!("{scenario}: unexpected error {other:?}"),
        }
        assert!(!err.is_retryable());
    }
    let err = run(&base, "truncated").await.expect_err("truncated");
    assert!(err.to_string().contains("truncated JSON"), "{err}");
}

#[tokio::test]
async fn slow_response_times_out() {
    let (base, _) = start().await;
    let (start, end) = range();
    let began = std::time::Instant::now();
    let err = client(&base, "slow", None, Duration::from_millis(300))
        .query_range("up", start, end, Duration::from_secs(15))
        .await
        .expect_err("timeout");
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert!(err.is_retryable());
    assert!(began.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn connection_refused_names_the_url_without_secrets() {
    let port = closed_port();
    let cfg = PrometheusConfig {
        url: format!("http://admin:hunter2@127.0.0.1:{port}/prom").parse().expect("test URL"),
        auth: Some(HttpAuth::Bearer(Secret::new("tok-abc".into()))),
        timeout: Duration::from_secs(5),
        tls: TlsOptions::default(),
    };
    let prom = PrometheusClient::new(cfg).expect("valid config");
    let (start, end) = range();
    let err = prom.query_range("secret_metric", start, end, Duration::from_secs(15)).await.expect_err("refused");
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert!(err.is_retryable());
    let text = err.to_string();
    assert!(text.contains(&format!("http://127.0.0.1:{port}/prom/api/v1/query_range")), "{text}");
    for secret in ["hunter2", "tok-abc", "secret_metric", "admin"] {
        assert!(!text.contains(secret), "{text}");
        assert!(!format!("{err:?}").contains(secret));
    }
}

#[tokio::test]
async fn invalid_arguments_are_rejected_locally() {
    let (base, seen) = start().await;
    let (start, end) = range();
    let prom = client(&base, "ok", None, Duration::from_secs(5));
    let err = prom.query_range("up", start, end, Duration::ZERO).await.expect_err("zero step");
    assert!(matches!(err, Error::InvalidInput(_)));
    let err = prom.query_range("up", end, start, Duration::from_secs(1)).await.expect_err("end before start");
    assert!(matches!(err, Error::InvalidInput(_)));
    assert!(seen.requests.lock().map_err(|_| ()).is_ok_and(|r| r.is_empty()));
}

#[tokio::test]
async fn the_metric_source_seam_keeps_the_typed_error_and_its_class() -> TestResult {
    use warden_connectors::prometheus::MetricSource;
    let (base, _) = start().await;
    let (start, end) = range();
    let step = Duration::from_secs(15);
    let ask = |scenario: &str| {
        let source: Box<dyn MetricSource> = Box::new(client(&base, scenario, None, Duration::from_secs(5)));
        async move { source.query_range("up", start, end, step).await }
    };
    assert_eq!(ask("ok").await?.series.len(), 3);
    for (scenario, retryable) in [("unavailable", true), ("gateway", true), ("bad-data", false), ("invalid", false)] {
        let err = ask(scenario).await.expect_err(scenario);
        assert_eq!(err.is_retryable(), retryable, "{scenario}: {err}");
    }
    let refused = client(&format!("http://127.0.0.1:{}", closed_port()), "ok", None, Duration::from_secs(5));
    let err = MetricSource::query_range(&refused, "up", start, end, step).await.expect_err("refused");
    assert!(matches!(err, Error::Connect { .. }) && err.is_retryable(), "{err}");
    let err = MetricSource::query_range(&refused, " ", start, end, step).await.expect_err("empty query");
    assert!(matches!(err, Error::InvalidInput(_)) && !err.is_retryable(), "{err}");
    Ok(())
}
