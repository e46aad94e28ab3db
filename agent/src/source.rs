//! Where metric series come from: Prometheus in production, a simulation in the demo.
//!
//! The evaluation code only sees this trait, so `warden demo` runs the very same evaluation,
//! incident and action code as `warden run`.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use warden_connectors::prometheus::{PrometheusClient, RangeResult};

/// A source of range queries in PromQL.
#[async_trait]
pub trait MetricSource: Send + Sync {
    async fn query_range(
        &self,
        query: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        step: Duration,
    ) -> Result<RangeResult, String>;
}

#[async_trait]
impl MetricSource for PrometheusClient {
    async fn query_range(
        &self,
        query: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        step: Duration,
    ) -> Result<RangeResult, String> {
        PrometheusClient::query_range(self, query, start, end, step).await.map_err(|e| e.to_string())
    }
}
