//! The usual set of servers around one warden under test.
//!
//! [`Stack::start`] creates a temporary directory, backfills
//! `app_latency_seconds` for `shop/checkout` into a fresh Prometheus (one hour
//! of baseline before `t0`, fifteen minutes after, and an optional fault),
//! starts the Kubernetes API test server with `shop/checkout` at 2 replicas,
//! writes its kubeconfig, starts a Slack receiver and picks warden's port.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, Result};
use serde_json::Value;
use tempfile::TempDir;

use crate::config::{latency_series, latency_watch, unix_now, WardenConfig, API_TOKEN, WATCH};
use crate::kube_api::{write_kubeconfig, KubeApi};
use crate::procs::{free_port, Prometheus, Warden};
use crate::slack::SlackReceiver;

/// Servers for one test. Field order is drop order: the directory goes last.
pub struct Stack {
    /// Unix time (seconds) the data is relative to.
    pub t0: i64,
    pub prometheus: Prometheus,
    pub kube: KubeApi,
    pub slack: SlackReceiver,
    pub kubeconfig: PathBuf,
    /// Port warden's HTTP server is configured on.
    pub port: u16,
    pub dir: TempDir,
}

impl Stack {
    /// Starts everything; `fault` is `(start, end)` in seconds relative to `t0` (now).
    pub async fn start(fault: Option<(i64, i64)>) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("warden-e2e-").tempdir()?;
        let t0 = unix_now();
        let series = latency_series(t0 - 3600, t0 + 900, fault.map(|(a, b)| (t0 + a, t0 + b)));
        let prometheus = Prometheus::start(dir.path(), &[series]).await?;
        let kube = KubeApi::start().await?;
        kube.add_deployment("shop", "checkout", 2);
        let kubeconfig = write_kubeconfig(dir.path(), &kube.url())?;
        let slack = SlackReceiver::start().await?;
        Ok(Self { t0, prometheus, kube, slack, kubeconfig, port: free_port()?, dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Seconds since `t0`.
    pub fn elapsed(&self) -> i64 {
        unix_now() - self.t0
    }

    /// Path of the JSON-lines notification file [`Stack::config`] configures.
    pub fn notify_file(&self) -> PathBuf {
        self.path().join("notifications.jsonl")
    }

    /// A configuration with Slack, the notification file and the latency watch.
    pub fn config(&self) -> WardenConfig {
        let mut config = WardenConfig::new(self.path(), &self.prometheus.url(), &self.kubeconfig, self.port);
        config.slack_webhook_url = Some(self.slack.webhook_url());
        config.notify_file = Some(self.notify_file());
        config.watches = vec![latency_watch(0)];
        config
    }

    /// Starts `warden run` with `config`.
    pub async fn start_warden(&self, config: &WardenConfig) -> Result<Warden> {
        let envs = config.envs();
        let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Warden::start(self.path(), &config.to_yaml()?, &envs, self.port, API_TOKEN).await
    }

    /// The lines of the notification file, parsed.
    pub fn notifications(&self) -> Result<Vec<Value>> {
        let text = match std::fs::read_to_string(self.notify_file()) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).map_err(|e| anyhow!("bad notification line {l:?}: {e}")))
            .collect()
    }
}

/// The incident of watch [`WATCH`] in `incidents` (the first listed), if any.
pub fn watch_incident(incidents: &[Value]) -> Option<Value> {
    incidents.iter().find(|i| i.get("watch").and_then(Value::as_str) == Some(WATCH)).cloned()
}

/// Parses an RFC 3339 field of `value` into unix seconds.
pub fn unix_field(value: &Value, field: &str) -> Result<i64> {
    let text = value.get(field).and_then(Value::as_str).ok_or_else(|| anyhow!("{field} is not a string in {value}"))?;
    Ok(chrono::DateTime::parse_from_rfc3339(text)
        .map_err(|e| anyhow!("{field}={text:?} is not RFC 3339: {e}"))?
        .timestamp())
}

/// Sleeps for `d`.
pub async fn sleep(d: Duration) {
    tokio::time::sleep(d).await
}
