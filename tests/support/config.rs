//! Warden configuration files and backfill data for the end-to-end tests.
//!
//! [`WardenConfig`] renders the YAML of `warden run -c`, following the
//! configuration contract (secrets come from the environment variables in
//! [`WardenConfig::envs`]). [`latency_series`] builds the
//! `app_latency_seconds` series with a deterministic baseline and a fault.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::{json, Value};

use crate::procs::PromSeries;

/// A playbook that waits for a person's approval, started by a firing `NeedsApproval`
/// alert, then posts `approved work for NeedsApproval ran` (the approval tests' run).
pub const ASK_FIRST_PLAYBOOK: &str = "\
name: ask-first
description: Posts a message once a person approves.
target: none
triggers:
  - alert: {labels: {alertname: NeedsApproval}}
guards: {autonomy: recommend}
steps:
  - name: say
    notify: {message: 'approved work for {{ alert.name }} ran'}
";

/// The API token every test configures.
pub const API_TOKEN: &str = "warden-e2e-api-token";
/// Name of the watch the tests configure.
pub const WATCH: &str = "checkout-latency";
/// Metric backfilled by [`latency_series`].
pub const METRIC: &str = "app_latency_seconds";

/// Inputs of a warden configuration.
#[derive(Clone, Debug)]
pub struct WardenConfig {
    pub prometheus_url: String,
    pub kubeconfig: PathBuf,
    pub sqlite: PathBuf,
    pub listen_port: u16,
    /// Slack webhook URL (passed through `SLACK_WEBHOOK_URL`).
    pub slack_webhook_url: Option<String>,
    /// SMTP port on 127.0.0.1 (plain, no TLS).
    pub email_port: Option<u16>,
    /// JSON-lines notification file.
    pub notify_file: Option<PathBuf>,
    pub dry_run: bool,
    pub watches: Vec<Value>,
    /// The `analysis` section, when the test sets one.
    pub analysis: Option<Value>,
}

impl WardenConfig {
    /// A configuration with everything under `dir` and no notification channel.
    pub fn new(dir: &Path, prometheus_url: &str, kubeconfig: &Path, listen_port: u16) -> Self {
        Self {
            prometheus_url: prometheus_url.to_string(),
            kubeconfig: kubeconfig.to_path_buf(),
            sqlite: dir.join("warden.db"),
            listen_port,
            slack_webhook_url: None,
            email_port: None,
            notify_file: None,
            dry_run: false,
            watches: Vec::new(),
            analysis: None,
        }
    }

    /// The configuration as a JSON value (same shape as the YAML).
    pub fn to_value(&self) -> Value {
        let mut notify = serde_json::Map::new();
        if self.slack_webhook_url.is_some() {
            notify.insert("slack".into(), json!({ "webhook_url": { "env": "SLACK_WEBHOOK_URL" } }));
        }
        if let Some(port) = self.email_port {
            notify.insert(
                "email".into(),
                json!({
                    "host": "127.0.0.1",
                    "port": port,
                    "tls": "none",
                    "from": "Warden <warden@example.test>",
                    "to": ["oncall@example.test"],
                }),
            );
        }
        if let Some(path) = &self.notify_file {
            notify.insert("file".into(), json!({ "path": path.display().to_string() }));
        }
        notify.insert("retry".into(), json!({ "initial_backoff": "500ms", "max_backoff": "2s" }));
        let mut config = json!({
            "prometheus": { "url": self.prometheus_url, "timeout": "5s" },
            "kubernetes": {
                "kubeconfig": self.kubeconfig.display().to_string(),
                "context": crate::kube_api::KUBECONFIG_CONTEXT,
            },
            "store": { "sqlite": self.sqlite.display().to_string() },
            "server": {
                "listen": format!("127.0.0.1:{}", self.listen_port),
                "api_token": { "env": "WARDEN_API_TOKEN" },
            },
            "notify": notify,
            "actions": {
                "dry_run": self.dry_run,
                "cooldown": "10m",
                "scale": { "min_replicas": 1, "max_replicas": 10, "step": 1 },
            },
            "watches": self.watches,
        });
        if let (Some(a), Some(map)) = (&self.analysis, config.as_object_mut()) {
            map.insert("analysis".into(), a.clone());
        }
        config
    }

    /// The configuration as YAML.
    pub fn to_yaml(&self) -> Result<String> {
        to_yaml(&self.to_value())
    }

    /// The environment variables holding the secrets the YAML refers to.
    pub fn envs(&self) -> Vec<(&'static str, String)> {
        let mut envs = vec![("WARDEN_API_TOKEN", API_TOKEN.to_string())];
        if let Some(url) = &self.slack_webhook_url {
            envs.push(("SLACK_WEBHOOK_URL", url.clone()));
        }
        envs
    }
}

/// Renders a JSON value as YAML.
pub fn to_yaml(value: &Value) -> Result<String> {
    serde_yaml::to_string(value).context("rendering YAML")
}

/// The watch of the contract: `app_latency_seconds{namespace="shop"}` every
/// 2 s at step 5 s over 10 min, robust baseline (window 60, threshold 4,
/// 2 consecutive points, 20 points of history, upwards), resolving after 3
/// clean evaluations, scaling the target up by one within [2, 8].
pub fn latency_watch(offset_s: u64) -> Value {
    json!({
        "name": WATCH,
        "query": format!("{METRIC}{{namespace=\"shop\"}}"),
        "interval": "2s",
        "step": "5s",
        "lookback": "10m",
        "offset": format!("{offset_s}s"),
        "identity": ["namespace", "deployment"],
        "target": { "namespace": "{namespace}", "deployment": "{deployment}" },
        "severity": "warning",
        "resolve_after": 3,
        "detector": {
            "kind": "robust_baseline",
            "window": 60,
            "threshold": 4.0,
            "min_consecutive": 2,
            "min_history": 20,
            "direction": "up",
        },
        "action": {
            "scale": { "step": 1, "min_replicas": 2, "max_replicas": 8 },
            "cooldown": "10m",
        },
    })
}

/// Baseline latency: 0.100 s plus a deterministic noise of at most ±5 ms,
/// written with three decimals so that values are exact in text.
pub fn baseline_value(t: i64) -> f64 {
    let noise = (t.rem_euclid(11) * 7).rem_euclid(11) - 5;
    (100 + noise) as f64 / 1000.0
}

/// Value during the fault.
pub const FAULT_VALUE: f64 = 0.5;

/// `app_latency_seconds{namespace="shop",deployment="checkout"}` sampled
/// every 5 s from `from` to `to` (unix seconds, inclusive), at
/// [`FAULT_VALUE`] for `fault_from <= t < fault_to` and at the baseline
/// otherwise.
pub fn latency_series(from: i64, to: i64, fault: Option<(i64, i64)>) -> PromSeries {
    let mut series = PromSeries::new(METRIC, &[("namespace", "shop"), ("deployment", "checkout")]);
    let mut t = from - from.rem_euclid(5);
    while t <= to {
        let faulty = fault.is_some_and(|(a, b)| a <= t && t < b);
        series.samples.push((t, if faulty { FAULT_VALUE } else { baseline_value(t) }));
        t += 5;
    }
    series
}

/// Current unix time in seconds.
pub fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}
