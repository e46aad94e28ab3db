//! Client for Prometheus' HTTP range-query API.
//!
//! Detectors work on time series; this module fetches them with
//! `GET /api/v1/query_range` and turns Prometheus' JSON (string-encoded sample
//! values, `NaN`/`±Inf`, partial-response warnings, `status: "error"` bodies) into
//! plain [`Series`] values or a precise [`Error`].
//!
//! [`MetricSource`] is the one seam for PromQL range queries: the watches, `verify` steps and
//! the demo's simulation all query through it, and a failure keeps its typed [`Error`], so
//! a caller can tell a source that cannot answer now from a query that never will.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use url::Url;

use crate::http::{self, display_url};
use crate::{Error, HttpAuth, Result, TlsOptions};

/// Largest response body accepted from Prometheus.
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;
/// How much of an unexpected response body is quoted in an error message.
const BODY_SNIPPET_CHARS: usize = 512;

/// Where and how to reach Prometheus.
#[derive(Debug, Clone)]
pub struct PrometheusConfig {
    /// Base URL, e.g. `http://prometheus:9090` or `https://host/prometheus`.
    pub url: Url,
    pub auth: Option<HttpAuth>,
    /// Limit for a whole request, connection and body included.
    pub timeout: Duration,
    pub tls: TlsOptions,
}

/// A cheap-to-clone Prometheus API client.
#[derive(Clone)]
pub struct PrometheusClient {
    http: reqwest::Client,
    endpoint: Url,
    shown_endpoint: String,
    auth: Option<HttpAuth>,
    timeout: Duration,
}

impl fmt::Debug for PrometheusClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrometheusClient")
            .field("endpoint", &self.shown_endpoint)
            .field("auth", &self.auth)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// The result of a range query.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RangeResult {
    pub series: Vec<Series>,
    /// Non-empty when Prometheus returned a partial response.
    pub warnings: Vec<String>,
}

/// One time series of a matrix result.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: BTreeMap<String, String>,
    pub points: Vec<Sample>,
}

/// One sample of a series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// The value; may be NaN or infinite.
    pub value: f64,
}

/// A source of PromQL range queries: Prometheus in production, a simulation in the demo.
///
/// Failures are typed: [`Error::is_retryable`] is true when the source cannot answer now
/// (connection refused, timeout, HTTP 5xx or 429, Prometheus `timeout`/`unavailable`) and
/// false when the same query will not succeed later (HTTP 4xx, Prometheus `bad_data`, an
/// undecodable answer, an invalid argument, no source configured). A query that matches
/// nothing is not a failure: it is `Ok` with no series.
#[async_trait]
pub trait MetricSource: Send + Sync {
    /// Run `query` over `[start, end]` with resolution `step`.
    async fn query_range(
        &self,
        query: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        step: Duration,
    ) -> Result<RangeResult>;
}

#[async_trait]
impl MetricSource for PrometheusClient {
    async fn query_range(
        &self,
        query: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        step: Duration,
    ) -> Result<RangeResult> {
        PrometheusClient::query_range(self, query, start, end, step).await
    }
}

impl PrometheusClient {
    /// Builds a client. Fails on a URL that cannot be a base URL, invalid
    /// credentials, an unreadable CA file or a zero timeout.
    pub fn new(cfg: PrometheusConfig) -> Result<Self> {
        if !matches!(cfg.url.scheme(), "http" | "https") {
            return Err(Error::Config(format!("Prometheus URL {} must use http or https", display_url(&cfg.url))));
        }
        let mut endpoint = cfg.url.clone();
        endpoint.set_query(None);
        endpoint.set_fragment(None);
        endpoint
            .path_segments_mut()
            .map_err(|()| {
                Error::Config(format!("Prometheus URL {} cannot be used as a base URL", display_url(&cfg.url)))
            })?
            .pop_if_empty()
            .extend(["api", "v1", "query_range"]);
        http::validate_auth(cfg.auth.as_ref())?;
        let client = http::build_client(cfg.timeout, &cfg.tls)?;
        Ok(Self {
            http: client,
            shown_endpoint: display_url(&endpoint),
            endpoint,
            auth: cfg.auth,
            timeout: cfg.timeout,
        })
    }

    /// Runs `query` over `[start, end]` with resolution `step`.
    ///
    /// Sends `GET {url}/api/v1/query_range?query=&start=&end=&step=` with `start` and
    /// `end` as Unix seconds (millisecond precision) and `step` in seconds.
    pub async fn query_range(
        &self,
        query: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        step: Duration,
    ) -> Result<RangeResult> {
        if query.trim().is_empty() {
            return Err(Error::InvalidInput("PromQL query is empty".into()));
        }
        if step.is_zero() {
            return Err(Error::InvalidInput("query step must be greater than zero".into()));
        }
        if end < start {
            return Err(Error::InvalidInput(format!("query range end {end} is before start {start}")));
        }
        let params = [
            ("query", query.to_string()),
            ("start", unix_seconds(start)),
            ("end", unix_seconds(end)),
            ("step", format_step(step)),
        ];
        let target = self.shown_endpoint.as_str();
        let req =
            self.http.get(self.endpoint.clone()).query(&params).header(reqwest::header::ACCEPT, "application/json");
        let req = http::apply_auth(req, self.auth.as_ref());
        tracing::debug!(endpoint = target, query, "Prometheus range query");
        let resp = req.send().await.map_err(|e| http::map_reqwest_error(e, target, self.timeout))?;
        let status = resp.status();
        let body = http::read_body(resp, MAX_BODY_BYTES, target, self.timeout).await?;
        parse_range_response(status.as_u16(), &body, target)
    }
}

/// Unix seconds with millisecond fractions, e.g. `1700000000.500`.
fn unix_seconds(t: DateTime<Utc>) -> String {
    let ms = t.timestamp_millis();
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

/// A step in seconds, e.g. `15` or `0.5`.
fn format_step(step: Duration) -> String {
    if step.subsec_nanos() == 0 {
        step.as_secs().to_string()
    } else {
        format!("{}", step.as_secs_f64())
    }
}

#[derive(Deserialize)]
struct ApiResponse {
    status: String,
    #[serde(default)]
    data: Option<RangeData>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    warnings: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RangeData {
    result_type: String,
    #[serde(default)]
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct MatrixSeries {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    #[serde(default)]
    values: Vec<(f64, String)>,
}

/// Turns a response (status code and body) into a [`RangeResult`] or an error.
fn parse_range_response(status: u16, body: &[u8], target: &str) -> Result<RangeResult> {
    let success = (200..300).contains(&status);
    let parsed: ApiResponse = match decode(body) {
        Ok(parsed) => parsed,
        Err(message) if success => return Err(Error::Decode { url: target.to_string(), message }),
        Err(_) => {
            return Err(Error::Http { url: target.to_string(), status: Some(status), message: body_snippet(body) })
        }
    };
    if parsed.status == "error" {
        return Err(Error::Prometheus {
            error_type: parsed.error_type.unwrap_or_else(|| "unknown".into()),
            message: parsed.error.unwrap_or_else(|| format!("no error message (HTTP {status})")),
        });
    }
    if !success {
        return Err(Error::Http { url: target.to_string(), status: Some(status), message: body_snippet(body) });
    }
    if parsed.status != "success" {
        return Err(Error::Decode {
            url: target.to_string(),
            message: format!("unexpected response status {:?}", parsed.status),
        });
    }
    let data = parsed.data.ok_or_else(|| Error::Decode {
        url: target.to_string(),
        message: "successful response has no \"data\" field".into(),
    })?;
    if data.result_type != "matrix" {
        return Err(Error::Decode {
            url: target.to_string(),
            message: format!("expected resultType \"matrix\" from a range query, got {:?}", data.result_type),
        });
    }
    let raw: Vec<MatrixSeries> = serde_path_to_error::deserialize(data.result).map_err(|e| Error::Decode {
        url: target.to_string(),
        message: format!("invalid matrix at data.result{}: {}", path_suffix(&e.path().to_string()), e.inner()),
    })?;
    let mut series = Vec::with_capacity(raw.len());
    for (i, s) in raw.into_iter().enumerate() {
        let mut points = Vec::with_capacity(s.values.len());
        for (j, (ts, value)) in s.values.into_iter().enumerate() {
            let bad = |what: String| Error::Decode {
                url: target.to_string(),
                message: format!("data.result[{i}].values[{j}]: {what}"),
            };
            if !ts.is_finite() {
                return Err(bad(format!("invalid timestamp {ts}")));
            }
            let value =
                parse_sample_value(&value).ok_or_else(|| bad(format!("sample value {value:?} is not a number")))?;
            points.push(Sample { timestamp_ms: (ts * 1000.0).round() as i64, value });
        }
        series.push(Series { labels: s.metric, points });
    }
    Ok(RangeResult { series, warnings: parsed.warnings })
}

fn decode(body: &[u8]) -> std::result::Result<ApiResponse, String> {
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de).map_err(crate::http::describe_json_error)
}

fn path_suffix(path: &str) -> &str {
    if path == "." {
        ""
    } else {
        path
    }
}

fn body_snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        "empty response body".into()
    } else {
        http::truncate_chars(text, BODY_SNIPPET_CHARS)
    }
}

/// Parses a Prometheus sample value: a float, `NaN`, `+Inf`, `-Inf` or `Inf`.
fn parse_sample_value(text: &str) -> Option<f64> {
    match text {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        other => other.parse::<f64>().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const T: &str = "http://prom/api/v1/query_range";

    #[test]
    fn formats_times_and_steps() {
        let t = Utc.timestamp_millis_opt(1_700_000_000_500).single().expect("valid timestamp");
        assert_eq!(unix_seconds(t), "1700000000.500");
        let before_epoch = Utc.timestamp_millis_opt(-1_500).single().expect("valid");
        assert_eq!(unix_seconds(before_epoch), "-2.500");
        assert_eq!(format_step(Duration::from_secs(15)), "15");
        assert_eq!(format_step(Duration::from_millis(500)), "0.5");
        assert_eq!(format_step(Duration::from_millis(1500)), "1.5");
    }

    #[test]
    fn parses_special_values() {
        assert!(parse_sample_value("NaN").is_some_and(f64::is_nan));
        assert_eq!(parse_sample_value("+Inf"), Some(f64::INFINITY));
        assert_eq!(parse_sample_value("-Inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_sample_value("1.5e3"), Some(1500.0));
        assert_eq!(parse_sample_value("abc"), None);
    }

    #[test]
    fn parses_matrix() {
        let body = br#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"__name__":"up","job":"api"},"values":[[1700000000.5,"1.23"],[1700000015,"NaN"]]},
            {"metric":{},"values":[[1700000000,"+Inf"]]}]},"warnings":["partial"]}"#;
        let r = parse_range_response(200, body, T).expect("valid response");
        assert_eq!(r.series.len(), 2);
        assert_eq!(r.series[0].labels.get("job").map(String::as_str), Some("api"));
        assert_eq!(r.series[0].points[0], Sample { timestamp_ms: 1_700_000_000_500, value: 1.23 });
        assert!(r.series[0].points[1].value.is_nan());
        assert_eq!(r.series[1].points[0].value, f64::INFINITY);
        assert_eq!(r.warnings, vec!["partial".to_string()]);
    }

    #[test]
    fn rejects_non_matrix() {
        let body = br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        let err = parse_range_response(200, body, T).expect_err("vector is not a matrix");
        assert!(matches!(err, Error::Decode { .. }));
        assert!(err.to_string().contains("vector"), "{err}");
    }

    #[test]
    fn maps_error_body() {
        let body = br#"{"status":"error","errorType":"bad_data","error":"parse error at char 4"}"#;
        let err = parse_range_response(400, body, T).expect_err("error status");
        match err {
            Error::Prometheus { error_type, message } => {
                assert_eq!(error_type, "bad_data");
                assert_eq!(message, "parse error at char 4");
            }
            other => panic!("unexpected error {other:?}"),
        }
    }

    #[test]
    fn non_json_error_status_is_http_error() {
        let err = parse_range_response(502, b"<html>bad gateway</html>", T).expect_err("502");
        match &err {
            Error::Http { status, message, .. } => {
                assert_eq!(*status, Some(502));
                assert!(message.contains("bad gateway"));
            }
            other => panic!("unexpected error {other:?}"),
        }
        assert!(err.is_retryable());
    }

    #[test]
    fn truncated_json_is_decode_error() {
        let err = parse_range_response(200, br#"{"status":"success","data":{"resu"#, T).expect_err("truncated");
        match &err {
            Error::Decode { url, message } => {
                assert_eq!(url, T);
                assert!(message.contains("truncated JSON"), "{message}");
            }
            other => panic!("unexpected error {other:?}"),
        }
    }

    #[test]
    fn bad_sample_names_its_position() {
        let body = br#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{},"values":[[1,"1"],[2,"x"]]}]}}"#;
        let err = parse_range_response(200, body, T).expect_err("bad value");
        assert!(err.to_string().contains("values[1]"), "{err}");
    }

    #[test]
    fn builds_endpoint_under_a_path_prefix() {
        let cfg = PrometheusConfig {
            url: Url::parse("http://user:pw@host:9090/prom/?x=1").expect("static URL"),
            auth: None,
            timeout: Duration::from_secs(1),
            tls: TlsOptions::default(),
        };
        let client = PrometheusClient::new(cfg).expect("valid config");
        assert_eq!(client.endpoint.path(), "/prom/api/v1/query_range");
        assert_eq!(client.shown_endpoint, "http://host:9090/prom/api/v1/query_range");
        assert!(!format!("{client:?}").contains("pw"));
    }
}
