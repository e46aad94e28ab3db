//! `warden run`: wires connectors, store and engine, runs them, and shuts down cleanly.
//!
//! One root cancellation token, cancelled by SIGINT/SIGTERM. On cancel: the scheduler starts
//! no new evaluation (an evaluation in flight completes within the connectors' own
//! timeouts); playbook runs, which run in tasks of their own off the evaluation loop (see
//! [`crate::act::tasks`]), start no new run and get [`SHUTDOWN_DEADLINE`] to finish the
//! step in flight (a run cut off resumes from its stored plan on the next start); the outbox
//! gets a last delivery round and the HTTP server drains, each bounded by the same deadline.
//! Anything undelivered stays in the outbox for the next start.
//!
//! With `leader_election.enabled` the elector runs beside them (see
//! [`crate::leadership`]): only the leader turns evaluations into incidents, advances runs,
//! fires cron triggers, analyses and delivers; every replica evaluates (warm detectors) and
//! serves the read API. The elector stops last, after everything that acts, and releases
//! the lease so that another replica takes over at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use chrono::{DateTime, Utc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use warden_playbooks::Cluster;

use crate::act::responder::{analysis_queue, AnalysisRequest};
use crate::act::tasks::ActionTasks;
use crate::analysis::{ClusterEvidence, Summarizer};
use crate::api::server::{router, AppState};
use crate::app::assemble::{self, Mode, Parts};
use crate::config::Config;
use crate::ingest::log_watch::LogSource;
use crate::leadership::Leadership;
use crate::metrics::Metrics;
use crate::notify::{Outbox, Policy};
use crate::pipeline::Pipeline;
use crate::store::Store;
use crate::timeline::Timeline;

/// How long shutdown waits for in-flight work and a last outbox round.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(10);

/// Run the daemon until `shutdown` is cancelled.
pub async fn run(cfg: Config, shutdown: CancellationToken) -> Result<()> {
    warden_connectors::install_crypto_provider();
    let cfg = Arc::new(cfg);
    let api_token =
        cfg.server.api_token.as_ref().map(|t| t.resolve().map_err(|e| anyhow!("server.api_token: {e}"))).transpose()?;
    let viewer_token = cfg
        .server
        .viewer_token
        .as_ref()
        .map(|t| t.resolve().map_err(|e| anyhow!("server.viewer_token: {e}")))
        .transpose()?;
    if api_token.is_none() && viewer_token.is_none() {
        tracing::warn!("server.api_token is not set: /api/* answers 403");
    }
    let source = assemble::metric_source(&cfg)?;
    let kube = assemble::build_kube(&cfg).await?;
    // The elector has its own token: it is cancelled (and the lease released) only after
    // every task that acts has stopped.
    let election_token = CancellationToken::new();
    let (leadership, election) = assemble::leadership(&cfg, kube.as_deref(), election_token.clone())?;
    let channels = assemble::build_channels(&cfg)?;
    let store = Arc::new(assemble::open_store(&cfg.store)?);
    if cfg.leader_election.enabled && store.backend() == "sqlite" {
        tracing::warn!(
            "leader_election is on with a SQLite store: each replica keeps its own runs and outbox,              so a new leader does not resume the old one's (use `store.postgres`)"
        );
    }
    let metrics = Arc::new(Metrics::new());
    let timeline = Timeline::default();
    // The model loads once, before the first evaluation (seconds for a small GGUF).
    let summarizer = Arc::new(Summarizer::from_config(cfg.analysis.model.as_ref()));
    let (analysis_tx, analysis_rx) = analysis_queue();
    let action_tasks = ActionTasks::new(shutdown.clone());
    let engine = Arc::new(
        assemble::pipeline(
            Parts {
                config: cfg.clone(),
                store: store.clone(),
                source,
                cluster: kube.clone().map(|k| k as Arc<dyn Cluster>),
                evidence: kube.map(|k| k as Arc<dyn ClusterEvidence>),
                logs: assemble::build_loki(&cfg)?.map(|l| Arc::new(l) as Arc<dyn LogSource>),
                metrics: metrics.clone(),
                channels: channels.names(),
                timeline: timeline.clone(),
                summarizer,
            },
            Mode::Queued { analysis: analysis_tx, actions: action_tasks.clone() },
        )
        .with_leadership(leadership.clone(), assemble::kube_request_timeout(&cfg)),
    );
    leadership.export(&metrics);
    let role_task = {
        let (leadership, metrics, token) = (leadership.clone(), metrics.clone(), shutdown.clone());
        let wake = engine.outbox_wake.clone();
        tokio::spawn(async move { watch_role(leadership, metrics, wake, token).await })
    };
    let analysis_task = engine.analyzer().cloned().map(|a| {
        let (token, leadership, late) = (shutdown.clone(), leadership.clone(), engine.late.clone());
        tokio::spawn(async move { run_analyses(a, analysis_rx, late, leadership, token).await })
    });
    let slack = channels.slack_app.clone();
    let outbox = Outbox::new(store.clone(), channels, Policy::from_config(&cfg.notify), metrics, timeline)
        .with_leadership(leadership.clone(), &cfg.notify);

    let ready = Arc::new(AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind(cfg.server.listen)
        .await
        .with_context(|| format!("server.listen: binding {}", cfg.server.listen))?;
    tracing::info!(listen = %cfg.server.listen, watches = cfg.watches.len(), "warden started");
    let state = AppState {
        pipeline: engine.clone(),
        api_token: api_token.map(Arc::from),
        viewer_token: viewer_token.map(Arc::from),
        ready: ready.clone(),
        slack,
    };
    // With followers, Slack presses they received wait in the store for the leader.
    let inbox_task =
        (state.slack.is_some() && matches!(leadership, crate::leadership::Leadership::Lease(_))).then(|| {
            let (state, token) = (state.clone(), shutdown.clone());
            tokio::spawn(async move { run_slack_inbox(state, token).await })
        });
    let app = router(state);
    let server_token = shutdown.clone();
    let limits = cfg.server.limits.clone();
    let server = tokio::spawn(async move {
        crate::api::http_serve::serve(listener, app, limits, server_token).await;
        Ok::<(), std::io::Error>(())
    });

    // Runs a crash interrupted are resumed by the first tick: each step's stored plan is
    // idempotent, so a step in flight is sent again without acting twice.
    let runs_task = engine.remediation().cloned().map(|rem| {
        let token = shutdown.clone();
        let (engine, tasks) = (engine.clone(), action_tasks.clone());
        tokio::spawn(async move { run_playbooks(engine, rem, tasks, token).await })
    });

    let wake = engine.outbox_wake.clone();
    let outbox_token = shutdown.clone();
    let outbox_task = tokio::spawn(async move { run_outbox(outbox, wake, outbox_token).await });

    ready.store(true, Ordering::Relaxed);
    run_scheduler(engine.clone(), shutdown.clone()).await;

    if let Some(t) = analysis_task {
        if tokio::time::timeout(SHUTDOWN_DEADLINE, t).await.is_err() {
            tracing::warn!("an incident analysis did not finish within the shutdown deadline");
        }
    }
    if let Some(t) = runs_task {
        if tokio::time::timeout(SHUTDOWN_DEADLINE, t).await.is_err() {
            tracing::warn!("the playbook ticker did not stop within the shutdown deadline");
        }
    }
    action_tasks.tracker.close();
    if tokio::time::timeout(SHUTDOWN_DEADLINE, action_tasks.tracker.wait()).await.is_err() {
        tracing::warn!("playbook runs did not stop within the shutdown deadline; they resume on the next start");
    }
    // Evaluations have stopped; let the outbox finish its last round.
    if let Some(t) = inbox_task {
        if tokio::time::timeout(SHUTDOWN_DEADLINE, t).await.is_err() {
            tracing::warn!("the Slack inbox did not stop within the shutdown deadline; its presses stay kept");
        }
    }
    match tokio::time::timeout(SHUTDOWN_DEADLINE, outbox_task).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "outbox task"),
        Err(_) => {
            tracing::warn!("outbox did not finish within the shutdown deadline; undelivered messages stay queued")
        }
    }
    match tokio::time::timeout(SHUTDOWN_DEADLINE, server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::error!(error = %e, "http server"),
        Ok(Err(e)) => tracing::error!(error = %e, "http server task"),
        Err(_) => tracing::warn!("http server did not drain within the shutdown deadline"),
    }
    // Nothing acts any more: give the lease up so that another replica leads at once.
    election_token.cancel();
    if let Some(task) = election {
        match tokio::time::timeout(SHUTDOWN_DEADLINE, task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "releasing the leader lease; it expires on its own"),
            Ok(Err(e)) => tracing::error!(error = %e, "leader election task"),
            Err(_) => tracing::warn!("releasing the leader lease did not finish; it expires on its own"),
        }
    }
    role_task.abort();
    tracing::info!("warden stopped");
    Ok(())
}

/// Evaluate each watch on its interval until cancelled. Due watches run concurrently; a
/// watch that overran its interval skips the missed ticks instead of bunching them.
pub async fn run_scheduler(engine: Arc<Pipeline>, shutdown: CancellationToken) {
    // Metric watches first, then log watches, each with its own interval.
    let mut jobs: Vec<(bool, usize, Duration)> =
        engine.config.watches.iter().enumerate().map(|(i, w)| (false, i, w.interval.get())).collect();
    jobs.extend(engine.config.log_watches.iter().enumerate().map(|(i, w)| (true, i, w.interval.get())));
    if jobs.is_empty() {
        shutdown.cancelled().await;
        return;
    }
    let start = Instant::now();
    let mut next: Vec<Instant> = vec![start; jobs.len()];
    loop {
        let Some(earliest) = next.iter().min().copied() else { return };
        tokio::select! {
            _ = tokio::time::sleep_until(earliest) => {}
            _ = shutdown.cancelled() => return,
        }
        let now = Instant::now();
        let due: Vec<usize> = (0..next.len()).filter(|i| next[*i] <= now).collect();
        let wall = Utc::now();
        let engine = &engine;
        futures::future::join_all(due.iter().filter_map(|j| jobs.get(*j)).map(|&(logs, i, _)| async move {
            if logs {
                engine.evaluate_log_watch(i, wall).await
            } else {
                engine.evaluate_watch(i, wall).await
            }
        }))
        .await;
        let after = Instant::now();
        for j in due {
            let Some(&(_, _, interval)) = jobs.get(j) else { continue };
            next[j] += interval;
            if next[j] <= after {
                next[j] = after + interval;
            }
        }
    }
}

/// Keep `warden_leader` and `warden_leader_transitions` current, log role changes, and
/// wake the outbox when this replica becomes the leader (what the last one left is sent
/// at once).
async fn watch_role(
    leadership: Leadership,
    metrics: Arc<Metrics>,
    outbox_wake: Arc<tokio::sync::Notify>,
    shutdown: CancellationToken,
) {
    let mut changes = match &leadership {
        Leadership::AlwaysLeader => return,
        Leadership::Lease(h) => h.subscribe(),
    };
    let mut was = leadership.is_leader();
    loop {
        leadership.export(&metrics);
        let now = leadership.is_leader();
        if now != was {
            let view = leadership.view();
            tracing::info!(role = view.role, leader = ?view.leader, transitions = view.transitions, "role changed");
            if now {
                outbox_wake.notify_one();
            }
            was = now;
        }
        // Woken by the elector; the clock alone can end leadership, so look every second.
        tokio::select! {
            r = changes.changed() => if r.is_err() { leadership.export(&metrics); return },
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Analyse opened incidents one at a time, in the order they opened, and analyse again
/// those whose runs have ended since (late evidence). Only the leader analyses (an analysis
/// stores events and notifications); a follower drops what reaches it.
pub async fn run_analyses(
    analyzer: Arc<crate::analysis::Analyzer>,
    mut queue: tokio::sync::mpsc::Receiver<AnalysisRequest>,
    late: Arc<crate::analysis::LateEvidence>,
    leadership: Leadership,
    shutdown: CancellationToken,
) {
    loop {
        let next = tokio::select! {
            n = queue.recv() => n,
            _ = late.noted() => {
                if leadership.is_leader() {
                    analyzer.reanalyse_late(&late, Utc::now()).await;
                } else {
                    late.take();
                }
                continue;
            }
            _ = shutdown.cancelled() => return,
        };
        let Some((id, _opened)) = next else { return };
        if !leadership.is_leader() {
            tracing::info!(incident = id, "not analysed: this replica no longer leads");
            continue;
        }
        // Evidence is read as of now: the first action's outcome and events that arrived
        // since the incident opened are part of it.
        if let Err(e) = analyzer.analyze(id, Utc::now()).await {
            tracing::error!(incident = id, error = %e, "analysing the incident");
        }
    }
}

/// Advance playbook runs on the wall clock and fire cron triggers, once a second, while
/// this replica leads. Each due
/// run is advanced in a task of its own (one per run at a time), so a run waiting on a slow
/// cluster delays neither the other runs nor the clock; runs another task or process holds
/// (their claim) are not due here.
pub async fn run_playbooks(
    engine: Arc<Pipeline>,
    rem: Arc<crate::act::remediation::Remediation>,
    tasks: ActionTasks,
    shutdown: CancellationToken,
) {
    let mut last = Utc::now();
    let mut leading = false;
    loop {
        let now = Utc::now();
        if !engine.leadership.is_leader() {
            // Runs and schedules are the leader's; a cron fire while following is the
            // leader's too.
            leading = false;
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.cancelled() => return,
            }
            continue;
        }
        if !leading {
            // Taking over (or starting): the cron window starts where the last leader's
            // ended, so a fire that fell in the gap is not lost.
            leading = true;
            last = cron_resume_point(&engine.store, now);
        }
        match rem.runs.due_runs(now) {
            Ok(ids) => {
                for id in ids {
                    let rem = rem.clone();
                    tasks.spawn(format!("run:{id}"), false, async move {
                        if let Err(e) = rem.runs.advance(id, now).await {
                            tracing::error!(run = id, error = %e, "advancing a run");
                        }
                    });
                }
            }
            Err(e) => tracing::error!(error = %e, "listing due playbook runs"),
        }
        // The window moves on only when its cron task starts (one at a time). The mark is
        // stored before the fires: a crash between the two loses a fire rather than
        // repeating it (at most once, as an action should be).
        let cron = rem.clone();
        let store = engine.store.clone();
        if tasks.spawn("cron".into(), false, async move {
            if let Err(e) = store.set_schedule_mark(CRON_MARK, now) {
                tracing::warn!(error = %e, "storing how far cron triggers were checked");
            }
            cron.on_clock(last, now).await;
        }) {
            last = now;
        }
        engine.refresh_audit_gauge();
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// The schedule mark of cron triggers in the store.
const CRON_MARK: &str = "cron";

/// How far back a new leader (or a restarted replica) fires cron schedules it missed:
/// a fire older than this is skipped (logged), as with a Kubernetes CronJob's
/// `startingDeadlineSeconds`.
pub const CRON_CATCH_UP: Duration = Duration::from_secs(600);

/// Where the cron window of a replica that starts to lead begins: where the store says the
/// last leader checked, at most [`CRON_CATCH_UP`] ago; now, for a new store.
fn cron_resume_point(store: &Store, now: DateTime<Utc>) -> DateTime<Utc> {
    let oldest = now - chrono::Duration::from_std(CRON_CATCH_UP).unwrap_or(chrono::Duration::minutes(10));
    match store.schedule_mark(CRON_MARK) {
        Ok(Some(mark)) if mark > now => now,
        Ok(Some(mark)) if mark < oldest => {
            tracing::info!(
                checked_until = %mark,
                "cron triggers were last checked more than {}s ago: fires before {oldest} are skipped",
                CRON_CATCH_UP.as_secs()
            );
            oldest
        }
        Ok(Some(mark)) => mark,
        Ok(None) => now,
        Err(e) => {
            tracing::warn!(error = %e, "reading how far cron triggers were checked: starting from now");
            now
        }
    }
}

/// Deliver the outbox until cancelled: a pass whenever something is due, when the engine
/// queued a message (`wake`), and at least every 5 s (messages retried from the CLI).
/// How often the leader looks for Slack presses a follower kept.
const SLACK_INBOX_POLL: Duration = Duration::from_millis(250);

/// The leader handles the Slack presses followers kept ([`crate::api::slack`]); a follower
/// only waits.
async fn run_slack_inbox(state: AppState, shutdown: CancellationToken) {
    loop {
        crate::api::slack::handle_kept_presses(&state).await;
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(SLACK_INBOX_POLL) => {}
        }
    }
}

async fn run_outbox(outbox: Outbox, wake: Arc<tokio::sync::Notify>, shutdown: CancellationToken) {
    loop {
        let pass = outbox.deliver_due(Utc::now()).await;
        let wait = match pass.next_due {
            Some(t) => (t - Utc::now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .clamp(Duration::from_millis(50), Duration::from_secs(5)),
            None => Duration::from_secs(5),
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = wake.notified() => {}
            _ = shutdown.cancelled() => break,
        }
    }
    // One last round for what the final evaluations queued.
    outbox.deliver_due(Utc::now()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cron_window_resumes_where_the_last_leader_stopped() {
        let store = Store::open_in_memory().expect("store");
        let now = DateTime::parse_from_rfc3339("2026-12-01T12:00:00Z").expect("time").with_timezone(&Utc);
        let ago = |s: i64| now - chrono::Duration::seconds(s);
        // A new store: nothing was missed.
        assert_eq!(cron_resume_point(&store, now), now);
        // A failover gap: the window starts where the old leader stopped checking.
        store.set_schedule_mark(CRON_MARK, ago(20)).expect("mark");
        assert_eq!(cron_resume_point(&store, now), ago(20));
        // Down for two hours: only the last ten minutes are caught up.
        store.set_schedule_mark(CRON_MARK, ago(7200)).expect("mark");
        assert_eq!(cron_resume_point(&store, now), ago(600));
        // A mark from a clock ahead of this one: nothing is fired twice.
        store.set_schedule_mark(CRON_MARK, now + chrono::Duration::seconds(5)).expect("mark");
        assert_eq!(cron_resume_point(&store, now), now);
    }
}
