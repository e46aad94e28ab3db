//! Where metric series come from: Prometheus in production, a simulation in the demo.
//!
//! The evaluation code only sees [`MetricSource`] (the one PromQL seam, owned by
//! `warden_connectors`), so `warden demo` runs the very same evaluation, incident and action
//! code as `warden run`. This module adds what a watch makes of an answer: every way of
//! getting nothing usable is "no data", and a failed query keeps its typed error, so a
//! source that cannot answer now (retryable) is told apart from a query that never will.

use std::time::Duration;

use chrono::{DateTime, Utc};
pub use warden_connectors::prometheus::MetricSource;
use warden_connectors::prometheus::Series;

/// Why a query gave nothing to judge.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The source failed to answer.
    #[error("query failed: {0}")]
    Query(#[source] warden_connectors::Error),
    /// Prometheus answered only in part; judging part of the series could hide an anomaly.
    #[error("partial response from Prometheus: {}", .0.join("; "))]
    Partial(Vec<String>),
    /// The query matched no series.
    #[error("the query returned no series")]
    NoSeries,
}

impl FetchError {
    /// Whether the query itself failed (as opposed to answering with nothing usable).
    pub fn is_failure(&self) -> bool {
        matches!(self, FetchError::Query(_))
    }

    /// Whether asking again may help: a source that could not answer now (connection,
    /// timeout, HTTP 5xx) or a partial answer; not a rejected query, an undecodable answer
    /// or a query that matches nothing.
    pub fn is_retryable(&self) -> bool {
        match self {
            FetchError::Query(e) => e.is_retryable(),
            FetchError::Partial(_) => true,
            FetchError::NoSeries => false,
        }
    }
}

/// Run one range query and keep its series only when the answer is complete and not empty.
pub async fn fetch(
    source: &dyn MetricSource,
    query: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    step: Duration,
) -> Result<Vec<Series>, FetchError> {
    let result = source.query_range(query, start, end, step).await.map_err(FetchError::Query)?;
    if !result.warnings.is_empty() {
        return Err(FetchError::Partial(result.warnings));
    }
    if result.series.is_empty() {
        return Err(FetchError::NoSeries);
    }
    Ok(result.series)
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_connectors::prometheus::{RangeResult, Sample};

    /// Answers each query from a script: the query text picks the answer.
    struct Scripted;

    #[async_trait::async_trait]
    impl MetricSource for Scripted {
        async fn query_range(
            &self,
            query: &str,
            _s: DateTime<Utc>,
            _e: DateTime<Utc>,
            _st: Duration,
        ) -> warden_connectors::Result<RangeResult> {
            let url = "http://127.0.0.1:9/api/v1/query_range".to_string();
            match query {
                "refused" => Err(warden_connectors::Error::Connect { url, message: "connection refused".into() }),
                "bad" => Err(warden_connectors::Error::Prometheus {
                    error_type: "bad_data".into(),
                    message: "parse error".into(),
                }),
                "partial" => Ok(RangeResult { series: vec![], warnings: vec!["store down".into()] }),
                "none" => Ok(RangeResult::default()),
                _ => Ok(RangeResult {
                    series: vec![Series {
                        labels: Default::default(),
                        points: vec![Sample { timestamp_ms: 0, value: 1.0 }],
                    }],
                    warnings: vec![],
                }),
            }
        }
    }

    async fn ask(query: &str) -> Result<Vec<Series>, FetchError> {
        let now = Utc::now();
        fetch(&Scripted, query, now, now, Duration::from_secs(15)).await
    }

    #[tokio::test]
    async fn failures_keep_their_class_and_no_data_stays_no_data() {
        assert_eq!(ask("up").await.map(|s| s.len()).ok(), Some(1));
        let refused = ask("refused").await.expect_err("refused");
        assert!(refused.is_failure() && refused.is_retryable(), "{refused}");
        assert!(refused.to_string().starts_with("query failed: could not connect to"), "{refused}");
        assert!(std::error::Error::source(&refused).is_some());
        let bad = ask("bad").await.expect_err("bad query");
        assert!(bad.is_failure() && !bad.is_retryable(), "{bad}");
        let partial = ask("partial").await.expect_err("partial");
        assert!(!partial.is_failure());
        assert_eq!(partial.to_string(), "partial response from Prometheus: store down");
        let none = ask("none").await.expect_err("no series");
        assert!(!none.is_failure() && !none.is_retryable());
        assert_eq!(none.to_string(), "the query returned no series");
    }
}
