//! `warden demo`: the daemon's engine on a shipped scenario, with no cluster and no network.
//!
//! The scenario (`agent/demo/`) is a recorded request rate of `shop/checkout` with a load
//! surge. A simulated Prometheus turns it into p95 latency through a queueing model that
//! depends on how many replicas are *ready* at each moment, and a simulated cluster applies
//! scale actions with a pod start-up delay. So Warden's action really is what brings latency
//! back, and the incident resolves only because of it. Time is simulated: two hours of
//! evaluations take seconds. A short Prometheus outage shows "no data" handling.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use async_trait::async_trait;
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use warden_connectors::prometheus::{RangeResult, Sample, Series};
use warden_detectors::rca::{ChangeKind, Payload, Subject};
use warden_playbooks::cluster::{DeploymentInfo, JobCreated, JobPhase, JobStatus};
use warden_playbooks::{Cluster, ClusterError, ClusterErrorKind, ReplicaState, SetReplicasOutcome, WorkloadRef};

use crate::analysis::{ClusterEvidence, ClusterFacts, Fact, Summarizer};
use crate::app::assemble::{self, Mode, Parts};
use crate::config;
use crate::ingest::source::MetricSource;
use crate::metrics::Metrics;
use crate::notify::{Channels, Outbox};
use crate::store::Store;
use crate::timeline::{Timeline, TimelineEvent};

mod printer;
mod sim;

use printer::*;
use sim::*;

const SCENARIO_YAML: &str = include_str!("../../../demo/demo.yaml");
const LOAD_CSV: &str = include_str!("../../../demo/checkout-load.csv");
/// Seconds of scenario data before the demo's first evaluation (the detector's history).
const HISTORY_SECS: i64 = 7200;
const DEMO_SECS: i64 = 7200;
const START_REPLICAS: i32 = 3;
/// The fraud model's server, which the retraining playbook promotes a new model on.
const MODEL_SERVER: (&str, &str) = ("ml", "fraud-scorer");
/// Requests per second one replica serves at full utilisation.
const REPLICA_CAPACITY: f64 = 60.0;
/// Time a new pod needs to become ready.
const POD_STARTUP: i64 = 60;
/// Simulated Prometheus outage, in seconds after the demo's start.
const OUTAGE: (i64, i64) = (75 * 60, 76 * 60);

fn start_time() -> DateTime<Utc> {
    DateTime::from_timestamp(1_772_442_000, 0).unwrap_or(DateTime::UNIX_EPOCH) // 2026-03-02 09:00 UTC
}

/// How the demo ends: at once, or by serving its store in the web console.
#[derive(Debug, Clone, Default)]
pub struct Serve {
    /// `warden demo --serve ADDR`: after the scenario, the console on ADDR until `shutdown`.
    pub addr: Option<std::net::SocketAddr>,
    pub shutdown: tokio_util::sync::CancellationToken,
}

/// Run the demo, writing the store and notifications under `out_dir`. With `model` (a GGUF
/// file), incident summaries are written by that local model; without, by the template.
/// With `json`, stdout is JSON Lines (see [`Printer::json`]) instead of the timeline. With
/// `serve.addr`, the demo's store is then shown in the web console (read-only, with a
/// freshly generated viewer token that is printed) until `serve.shutdown` is cancelled.
pub async fn run(out_dir: &Path, all_evaluations: bool, model: Option<&Path>, json: bool, serve: Serve) -> Result<()> {
    let wall = std::time::Instant::now();
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let mut cfg = config::parse_str(SCENARIO_YAML, Path::new("agent/demo/demo.yaml")).map_err(|e| anyhow!("{e}"))?;
    let db = out_dir.join("warden.db");
    for suffix in ["", "-wal", "-shm"] {
        let p = PathBuf::from(format!("{}{suffix}", db.display()));
        if p.exists() {
            std::fs::remove_file(&p).with_context(|| format!("removing the previous demo's {}", p.display()))?;
        }
    }
    let notifications = out_dir.join("notifications.jsonl");
    if notifications.exists() {
        std::fs::remove_file(&notifications).with_context(|| format!("removing {}", notifications.display()))?;
    }
    cfg.store = config::StoreSection { sqlite: Some(db.clone()), postgres: None };
    if let Some(f) = cfg.notify.file.as_mut() {
        f.path = notifications.clone();
    }

    let demo_start = start_time();
    let origin = demo_start - ChronoDuration::seconds(HISTORY_SECS);
    let target = WorkloadRef::new("shop", "checkout");
    let cluster = Arc::new(SimCluster::new(target.clone(), origin));
    let source = Arc::new(SimPrometheus { load: Load::parse(LOAD_CSV, origin)?, cluster: cluster.clone(), demo_start });

    let cfg = Arc::new(cfg);
    let store = Arc::new(Store::open(&db)?);
    let metrics = Arc::new(Metrics::new());
    let channels = Channels { file: Some(notifications.clone()), ..Default::default() };
    let (timeline, mut rx) = Timeline::channel();
    let summarizer = match model {
        Some(path) => {
            let section = config::ModelSection {
                path: path.to_path_buf(),
                tokenizer: None,
                chat_template: None,
                device: "cpu".into(),
                max_tokens: 160,
                time_budget: config::HumanDuration(Duration::from_secs(120)),
                sha256: None,
            };
            Summarizer::from_config(Some(&section))
        }
        None => Summarizer::template_only("no model given (warden demo --model FILE.gguf)"),
    };
    // Analyses and runs are awaited inline, on the simulated clock.
    let engine = assemble::pipeline(
        Parts {
            config: cfg.clone(),
            store: store.clone(),
            source,
            cluster: Some(cluster.clone() as Arc<dyn Cluster>),
            evidence: Some(cluster.clone() as Arc<dyn ClusterEvidence>),
            logs: None,
            metrics: metrics.clone(),
            channels: channels.names(),
            timeline: timeline.clone(),
            summarizer: Arc::new(summarizer),
        },
        Mode::Inline,
    );
    let outbox =
        Outbox::new(store.clone(), channels, crate::notify::Policy::from_config(&cfg.notify), metrics, timeline);

    let stdout = std::io::stdout();
    let w = &cfg.watches[0];
    let mut p = Printer {
        out: stdout.lock(),
        all: all_evaluations,
        json,
        last_ok_print: None,
        main_watch: w.name.clone(),
        states: BTreeMap::new(),
        no_data: BTreeMap::new(),
    };
    let max_replicas = w
        .action
        .as_ref()
        .and_then(|a| a.scale.as_ref())
        .and_then(|s| s.max_replicas)
        .unwrap_or(cfg.actions.scale.max_replicas);
    if json {
        let watches: Vec<serde_json::Value> = cfg
            .watches
            .iter()
            .map(|w| {
                serde_json::json!({
                    "name": w.name,
                    "detector": w.detector.kind,
                    "interval_seconds": w.interval.get().as_secs_f64(),
                })
            })
            .collect();
        p.json_line(&serde_json::json!({
            "kind": "start",
            "at": demo_start,
            "simulated_seconds": DEMO_SECS,
            "target": "shop/checkout",
            "replicas": START_REPLICAS,
            "max_replicas": max_replicas,
            "watches": watches,
            "summaries_by": if model.is_some() { "model" } else { "template" },
        }))?;
    } else {
        writeln!(
            p.out,
            "warden demo: {} watches; `{}` on shop/checkout ({} replicas, max {}) may scale it",
            cfg.watches.len(),
            w.name,
            START_REPLICAS,
            max_replicas
        )?;
        for w in &cfg.watches {
            writeln!(p.out, "  {:<26} {:<18} every {}", w.name, w.detector.kind, w.interval)?;
        }
        writeln!(p.out, "scenario (simulated time):")?;
        writeln!(p.out, "  09:20  a load surge on checkout pushes p95 latency up")?;
        writeln!(p.out, "  09:45  debug logging left on starts filling the orders-db volume")?;
        writeln!(p.out, "  10:00  one checkout pod lands on a noisy node and slows down (until 10:20)")?;
        writeln!(p.out, "  10:15  Prometheus is unreachable for a minute")?;
        writeln!(p.out, "  10:35  payments spins in a retry loop: CPU up, traffic unchanged (until 10:55)")?;
        writeln!(p.out, "  10:40  a broken feature pipeline shifts the fraud model's scores\n")?;
    }

    let tick = ChronoDuration::seconds(30);
    let mut t = demo_start;
    let end = demo_start + ChronoDuration::seconds(DEMO_SECS);
    // After the scenario's data ends, the clock runs on (runs only) until playbooks finish.
    let drain_until = end + ChronoDuration::minutes(30);
    while t <= drain_until {
        cluster.set_now(t);
        let replicas = cluster.desired_at(t);
        if let Some(rem) = engine.remediation() {
            if let Err(e) = rem.runs.tick(t).await {
                p.error(t, &format!("runs: {e}"))?;
            }
            // The on-call engineer approves a waiting run two minutes after it asked.
            for run in store.list_runs(Some(warden_playbooks::run::RunStatus::AwaitingApproval), None, 10)? {
                if t - run.created_at >= ChronoDuration::minutes(2) {
                    p.approved(t, run.id, "user/oncall")?;
                    if let Err(e) = rem.runs.decide(run.id, "user/oncall", true, Some("demo".into()), t).await {
                        p.error(t, &format!("runs: {e}"))?;
                    }
                }
            }
        }
        // Runs that ended since the last tick make their incidents' analyses out of date.
        engine.reanalyse_late(t).await;
        if t > end {
            let active = store.list_runs(None, None, 50)?.iter().any(|r| !r.status.is_terminal());
            // What the finishing runs notify is delivered too.
            outbox.deliver_due(t).await;
            while let Ok(ev) = rx.try_recv() {
                p.event(ev, replicas)?;
            }
            if !active {
                break;
            }
            t += tick;
            continue;
        }
        let elapsed = (t - demo_start).to_std().unwrap_or_default();
        for (i, w) in cfg.watches.iter().enumerate() {
            let every = w.interval.get().as_millis().max(1);
            if elapsed.as_millis().is_multiple_of(every) {
                engine.evaluate_watch(i, t).await;
            }
        }
        outbox.deliver_due(t).await;
        while let Ok(ev) = rx.try_recv() {
            p.event(ev, replicas)?;
        }
        t += tick;
    }

    let incidents = store.list_incidents(None, 100)?;
    let runs = store.list_runs(None, None, 100)?;
    let resolved = incidents.iter().filter(|i| i.status == "resolved").count();
    let actions = crate::act::remediation::actions_view(&runs).iter().filter(|a| a["status"] == "succeeded").count();
    let sent = std::fs::read_to_string(&notifications).map(|s| s.lines().count()).unwrap_or(0);
    if json {
        p.json_line(&serde_json::json!({
            "kind": "summary",
            "incidents": incidents.len(),
            "resolved": resolved,
            "open": incidents.len() - resolved,
            "actions": actions,
            "notifications": sent,
            "notifications_file": notifications.display().to_string(),
            "store": db.display().to_string(),
            "simulated_seconds": DEMO_SECS,
            "wall_seconds": wall.elapsed().as_secs_f64(),
        }))?;
        return serve_console(engine, &mut p, serve).await;
    }
    writeln!(p.out)?;
    writeln!(
        p.out,
        "summary: {} incident(s) ({} resolved, {} open), {} action(s), {} notification(s) in {}",
        incidents.len(),
        resolved,
        incidents.len() - resolved,
        actions,
        sent,
        notifications.display()
    )?;
    writeln!(
        p.out,
        "store: {} (try: warden incidents list --db {} and warden incidents show ID --db {})",
        db.display(),
        db.display(),
        db.display()
    )?;
    writeln!(
        p.out,
        "simulated {} of operation in {:.1} s",
        humantime::format_duration(Duration::from_secs(DEMO_SECS as u64)),
        wall.elapsed().as_secs_f64()
    )?;
    serve_console(engine, &mut p, serve).await
}

/// `--serve ADDR`: the demo's pipeline (its store, watches and their last states) behind the
/// web console, read-only: only a viewer token exists, generated here and printed, so a
/// newcomer can browse what the demo did.
async fn serve_console<W: Write>(engine: crate::pipeline::Pipeline, p: &mut Printer<W>, serve: Serve) -> Result<()> {
    let Some(addr) = serve.addr else { return Ok(()) };
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("--serve: binding {addr}"))?;
    let bound = listener.local_addr().with_context(|| format!("--serve: the address bound for {addr}"))?;
    let token = crate::api::console::session::random_hex();
    let app = crate::api::server::router(crate::api::AppState {
        pipeline: Arc::new(engine),
        api_token: None,
        viewer_token: Some(Arc::from(token.as_str())),
        ready: Arc::new(std::sync::atomic::AtomicBool::new(true)),
        slack: None,
    });
    let url = format!("http://{bound}/ui/");
    if p.json {
        p.json_line(&serde_json::json!({"kind": "console", "url": url, "viewer_token": token}))?;
    } else {
        writeln!(p.out, "\nconsole: {url}")?;
        writeln!(p.out, "read-only token (paste it at the login): {token}")?;
        writeln!(p.out, "serving the demo's store until Ctrl-C")?;
    }
    p.out.flush()?;
    crate::api::http_serve::serve(listener, app, config::ServerLimits::default(), serve.shutdown).await;
    Ok(())
}

#[cfg(test)]
mod tests;
