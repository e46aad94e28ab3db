//! One place that builds Warden from its configuration: the connectors (Prometheus, Loki,
//! Kubernetes, notification channels) and the [`Pipeline`] wired to them.
//!
//! The daemon, the demo and the CLI all build through here, so a connection is configured
//! the same way everywhere (its secrets resolved, its TLS and timeouts applied, its errors
//! named by their configuration path), and the pipeline's stages are wired the same way in
//! each; only the [`Mode`] (inline on simulated time, or queued in the daemon) differs.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use chrono::Utc;
use warden_connectors::kubernetes::{KubeClient, KubeConnect};
use warden_connectors::leader::LeaderElector;
use warden_connectors::loki::{LokiClient, LokiConfig};
use warden_connectors::prometheus::{PrometheusClient, PrometheusConfig};
use warden_connectors::{HttpAuth, Secret, TlsOptions};
use warden_playbooks::Cluster;

use crate::act::kube_cluster::KubeCluster;
use crate::act::responder::AnalysisRequest;
use crate::act::tasks::ActionTasks;
use crate::analysis::{ClusterEvidence, Summarizer};
use crate::config::{AuthSection, Config, SecretRef, StoreSection};
use crate::ingest::log_watch::{LogSource, LokiLogs};
use crate::ingest::source::MetricSource;
use crate::leadership::Leadership;
use crate::metrics::Metrics;
use crate::notify::Channels;
use crate::pipeline::Pipeline;
use crate::store::Store;
use crate::timeline::Timeline;

/// What a pipeline is built from.
pub struct Parts {
    pub config: Arc<Config>,
    pub store: Arc<Store>,
    pub source: Arc<dyn MetricSource>,
    /// The cluster playbooks act on; `None` without a `kubernetes` section.
    pub cluster: Option<Arc<dyn Cluster>>,
    /// Where analyses read cluster facts (events, rollouts); `None` without a cluster.
    pub evidence: Option<Arc<dyn ClusterEvidence>>,
    /// Where log watches read; `None` without a `loki` section.
    pub logs: Option<Arc<dyn LogSource>>,
    pub metrics: Arc<Metrics>,
    /// Notification channels incidents queue notifications for.
    pub channels: Vec<&'static str>,
    pub timeline: Timeline,
    pub summarizer: Arc<Summarizer>,
}

/// How the responder runs.
pub enum Mode {
    /// Runs and analyses are awaited where an incident changes (the demo and tests, on
    /// simulated time).
    Inline,
    /// The daemon: runs in `actions`' tasks, analyses through the bounded `analysis` queue.
    Queued { analysis: tokio::sync::mpsc::Sender<AnalysisRequest>, actions: ActionTasks },
}

/// The pipeline for `parts`.
pub fn pipeline(parts: Parts, mode: Mode) -> Pipeline {
    let mut p = Pipeline::new(
        parts.config,
        parts.store,
        parts.source,
        parts.cluster,
        parts.metrics,
        parts.channels,
        parts.timeline,
    );
    if let Some(logs) = parts.logs {
        p = p.with_logs(logs);
    }
    match mode {
        Mode::Inline => p.with_analysis(parts.evidence, parts.summarizer, None),
        Mode::Queued { analysis, actions } => {
            p.with_analysis(parts.evidence, parts.summarizer, Some(analysis)).with_action_tasks(actions)
        }
    }
}

/// Prometheus when configured; otherwise a source whose every query fails ("no data").
pub fn metric_source(cfg: &Config) -> Result<Arc<dyn MetricSource>> {
    Ok(match build_prometheus(cfg)? {
        Some(p) => Arc::new(p),
        None => Arc::new(NoSource),
    })
}

fn secret(path: &str, s: &SecretRef) -> Result<Secret> {
    s.resolve().map(Secret::new).map_err(|e| anyhow!("{path}: {e}"))
}

/// Opens (creating and migrating if needed) the store the `store` section names.
pub fn open_store(section: &StoreSection) -> Result<Store> {
    match &section.postgres {
        Some(pg) => {
            let url = secret("store.postgres.url_from", &pg.url_from)?;
            // The URL holds the password: errors name the key, never the URL.
            Store::open_postgres(url.expose()).context("store.postgres: opening the PostgreSQL store")
        }
        None => {
            let path = section.sqlite_path();
            Store::open(&path).with_context(|| format!("store.sqlite: opening {}", path.display()))
        }
    }
}

/// Opens a store the daemon made (the CLI's reads and hand edits): a SQLite file must exist.
pub fn open_existing_store(section: &StoreSection) -> Result<Store> {
    if section.postgres.is_none() {
        let path = section.sqlite_path();
        if !path.exists() {
            return Err(anyhow!("no store at {} (has `warden run` or `warden demo` been started?)", path.display()));
        }
    }
    open_store(section)
}

/// Build the outbox channels (every receiver of the `notify` section).
pub fn build_channels(cfg: &Config) -> Result<Channels> {
    crate::notify::channels::build_channels(cfg)
}

/// The resolved credentials of an HTTP server section (`prometheus`, `loki`).
fn http_auth(section: &str, auth: Option<&AuthSection>) -> Result<Option<HttpAuth>> {
    let Some(a) = auth else { return Ok(None) };
    Ok(match (&a.bearer, &a.basic) {
        (Some(b), _) => Some(HttpAuth::Bearer(secret(&format!("{section}.auth.bearer"), b)?)),
        (None, Some(b)) => Some(HttpAuth::Basic {
            username: b.username.clone(),
            password: secret(&format!("{section}.auth.basic.password"), &b.password)?,
        }),
        (None, None) => None,
    })
}

pub fn build_prometheus(cfg: &Config) -> Result<Option<PrometheusClient>> {
    let Some(p) = &cfg.prometheus else { return Ok(None) };
    let auth = http_auth("prometheus", p.auth.as_ref())?;
    let url = p.url.parse().with_context(|| format!("prometheus.url: `{}`", p.url))?;
    let client = PrometheusClient::new(PrometheusConfig {
        url,
        auth,
        timeout: p.timeout.get(),
        tls: TlsOptions { ca_file: p.tls.ca_file.clone(), insecure_skip_verify: p.tls.insecure_skip_verify },
    })
    .context("prometheus")?;
    Ok(Some(client))
}

pub fn build_loki(cfg: &Config) -> Result<Option<LokiLogs>> {
    let Some(l) = &cfg.loki else { return Ok(None) };
    let auth = http_auth("loki", l.auth.as_ref())?;
    let url = l.url.parse().with_context(|| format!("loki.url: `{}`", l.url))?;
    let mut lc = LokiConfig::new(url);
    lc.auth = auth;
    lc.tenant = l.tenant.clone();
    lc.timeout = l.timeout.get();
    lc.tls = TlsOptions { ca_file: l.tls.ca_file.clone(), insecure_skip_verify: l.tls.insecure_skip_verify };
    lc.max_entries = l.max_entries;
    let client = LokiClient::new(lc).context("loki")?;
    Ok(Some(LokiLogs { client, page_limit: l.page_limit }))
}

pub async fn build_cluster(cfg: &Config) -> Result<Option<Arc<dyn Cluster>>> {
    Ok(build_kube(cfg).await?.map(|k| k as Arc<dyn Cluster>))
}

/// The Kubernetes connection as the playbooks' cluster and the analysis's evidence source.
pub async fn build_kube(cfg: &Config) -> Result<Option<Arc<KubeCluster>>> {
    let Some(k) = &cfg.kubernetes else { return Ok(None) };
    let how = if k.in_cluster {
        KubeConnect::InCluster
    } else {
        KubeConnect::Kubeconfig { path: k.kubeconfig.clone(), context: k.context.clone() }
    };
    let mut client = KubeClient::connect(&how).await.context("kubernetes")?;
    client = client.with_request_timeout(kube_request_timeout(cfg));
    Ok(Some(Arc::new(KubeCluster { client })))
}

/// The Kubernetes client's request timeout: the connector's default, cut under leader
/// election to what the fence admits ([`crate::config::operation_budget`]), so that every
/// cluster write fits in the lease.
pub fn kube_request_timeout(cfg: &Config) -> Duration {
    let default = warden_connectors::kubernetes::DEFAULT_REQUEST_TIMEOUT;
    if !cfg.leader_election.enabled {
        return default;
    }
    // The Lease configuration was checked at load; on an error the default stays.
    match cfg.leader_election.lease_config(&crate::config::PodEnv::current()) {
        Ok(lease) => default.min(crate::config::operation_budget(&lease)),
        Err(_) => default,
    }
}

/// The daemon's [`Leadership`]: always the leader without `leader_election.enabled`;
/// otherwise an elector on the Lease through `kube`, spawned on `shutdown` (cancel it only
/// after everything that acts has stopped: it releases the lease then).
pub fn leadership(
    cfg: &Config,
    kube: Option<&KubeCluster>,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<(Leadership, Option<tokio::task::JoinHandle<warden_connectors::Result<()>>>)> {
    if !cfg.leader_election.enabled {
        return Ok((Leadership::AlwaysLeader, None));
    }
    let Some(kube) = kube else {
        return Err(anyhow!(
            "leader_election.enabled: needs a `kubernetes` section (the Lease lives on the API server)"
        ));
    };
    let lease = cfg
        .leader_election
        .lease_config(&crate::config::PodEnv::current())
        .map_err(|(path, msg)| anyhow!("{path}: {msg}"))?;
    tracing::info!(lease = %lease.describe(), identity = %lease.identity, "leader election on");
    let elector = LeaderElector::new(&kube.client, lease).context("leader_election")?;
    let (handle, task) = elector.spawn(shutdown);
    Ok((Leadership::Lease(handle), Some(task)))
}

/// A source for configs without a `prometheus` section (no watches): every query fails.
pub struct NoSource;

#[async_trait::async_trait]
impl MetricSource for NoSource {
    async fn query_range(
        &self,
        _q: &str,
        _s: chrono::DateTime<Utc>,
        _e: chrono::DateTime<Utc>,
        _st: Duration,
    ) -> warden_connectors::Result<warden_connectors::prometheus::RangeResult> {
        Err(warden_connectors::Error::Config("no `prometheus` section configured".into()))
    }
}
