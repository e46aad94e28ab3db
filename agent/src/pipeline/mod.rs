//! The pipeline: one evaluation from a source to the responder.
//!
//! ```text
//! ingest (metric watch, log watch, alert) ─signals─▶ incident::Tracker ─Change─▶ act::Responder
//! ```
//!
//! Both `warden run` and `warden demo` drive this same pipeline (built by
//! [`crate::app::assemble`]); they differ only in where time, metrics and the cluster come
//! from. Rules that keep it safe:
//! - "no data" never opens, updates, resolves or acts on an incident: a source with no data
//!   emits no signal, only a watch status;
//! - one open incident per fingerprint ([`crate::incident::identity`]), enforced by the store;
//! - an incident resolves only after `resolve_after` evaluations in a row with data and
//!   without anomaly;
//! - every action is a playbook run (guards, approvals, verify and revert, audit trail), see
//!   [`crate::act`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use warden_connectors::alertmanager::WebhookPayload;
use warden_detectors::Detection;
use warden_playbooks::Cluster;

use crate::act::remediation::{Remediation, RunNotices};
use crate::act::responder::{AnalysisRequest, Responder};
use crate::act::tasks::ActionTasks;
use crate::analysis::{AnalysisSettings, Analyzer, ClusterEvidence, LateEvidence, RecentAnomalies, Summarizer};
use crate::config::{Config, LogWatchConfig, WatchConfig};
use crate::incident::identity::{describe, watch_target};
use crate::incident::tracker::{Change, Tracker};
use crate::ingest::alerts::{self, AlertSignal};
use crate::ingest::evaluate::{evaluate, DetectorCache, Evaluation, SeriesVerdict, Verdict};
use crate::ingest::log_watch::{evaluate_logs, LogFinding, LogSource, LogStates, LogWatchState};
use crate::ingest::source::MetricSource;
use crate::leadership::Leadership;
use crate::metrics::{Metrics, WatchLabel, WatchOutcome};
use crate::store::{IncidentSignal, Store, StoreError, TargetRef};
use crate::timeline::{Timeline, TimelineEvent};

/// A watch's state.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum WatchState {
    /// Not evaluated yet.
    Pending,
    Ok,
    /// Data, but the detector has not seen enough of it to judge.
    WarmingUp,
    Anomalous,
    /// The last evaluation had no usable data (the reason is `last_error`).
    NoData,
}

impl WatchState {
    pub fn as_str(self) -> &'static str {
        match self {
            WatchState::Pending => "pending",
            WatchState::Ok => "ok",
            WatchState::WarmingUp => "warming_up",
            WatchState::Anomalous => "anomalous",
            WatchState::NoData => "no_data",
        }
    }
}

/// A watch's state as shown by the API.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WatchStatus {
    pub name: String,
    pub state: WatchState,
    pub last_evaluation: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub no_data_count: u64,
    pub series: usize,
    /// When the current stretch without data began (`None` while there is data).
    pub no_data_since: Option<DateTime<Utc>>,
    /// When the current stretch was last logged at `warn` (see [`NO_DATA_WARN_EVERY`]).
    #[serde(skip)]
    pub no_data_warned: Option<DateTime<Utc>>,
}

/// How often a watch that stays without data is logged at `warn` again. A Prometheus outage
/// makes every watch blind at every interval; one line per watch per interval buries the
/// log, so the first evaluation without data warns, a changed reason warns, and otherwise
/// the watch repeats its warning (with how long it has lasted) once per this period; the
/// evaluations between go to `debug`. The metrics count every one.
pub const NO_DATA_WARN_EVERY: chrono::TimeDelta = chrono::TimeDelta::minutes(10);

/// Whether an evaluation without data at `now` for `reason` warns, given the watch's status
/// before it.
fn no_data_warns(before: &WatchStatus, now: DateTime<Utc>, reason: &str) -> bool {
    before.state != WatchState::NoData
        || before.last_error.as_deref() != Some(reason)
        || before.no_data_warned.is_none_or(|at| now - at >= NO_DATA_WARN_EVERY)
}

/// What one Alertmanager webhook did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AlertsOutcome {
    /// Alerts applied (firing or resolved); others are skipped.
    pub accepted: usize,
    /// Runs started by playbooks whose `alert` triggers matched.
    pub runs: Vec<i64>,
}

/// Sources, incidents and the responder, wired for one configuration (see the module docs).
pub struct Pipeline {
    pub config: Arc<Config>,
    pub store: Arc<Store>,
    pub source: Arc<dyn MetricSource>,
    pub cluster: Option<Arc<dyn Cluster>>,
    pub metrics: Arc<Metrics>,
    pub timeline: Timeline,
    /// Woken when new notifications are queued.
    pub outbox_wake: Arc<tokio::sync::Notify>,
    pub incidents: Tracker,
    pub responder: Responder,
    /// Deviation streaks of every watch, for root-cause analysis.
    pub recent: Arc<RecentAnomalies>,
    /// Analysed incidents whose runs have since ended (see [`crate::analysis::late`]).
    pub late: Arc<LateEvidence>,
    /// Whether this replica acts: only the leader turns verdicts into incidents and runs
    /// (followers evaluate to keep their detectors and streaks warm, and stop there).
    pub leadership: Leadership,
    statuses: RwLock<BTreeMap<String, WatchStatus>>,
    /// Streaming detectors kept between evaluations, one cache per watch.
    detectors: Vec<Arc<DetectorCache>>,
    /// Where log watches read from; `None` when no `loki` section is configured.
    log_source: Option<Arc<dyn LogSource>>,
    log_states: LogStates,
}

impl Pipeline {
    pub fn new(
        config: Arc<Config>,
        store: Arc<Store>,
        source: Arc<dyn MetricSource>,
        cluster: Option<Arc<dyn Cluster>>,
        metrics: Arc<Metrics>,
        channels: Vec<&'static str>,
        timeline: Timeline,
    ) -> Self {
        let names = config.watches.iter().map(|w| &w.name).chain(config.log_watches.iter().map(|w| &w.name));
        let statuses = names
            .map(|name| {
                let s = WatchStatus {
                    name: name.clone(),
                    state: WatchState::Pending,
                    last_evaluation: None,
                    last_error: None,
                    no_data_count: 0,
                    series: 0,
                    no_data_since: None,
                    no_data_warned: None,
                };
                (name.clone(), s)
            })
            .collect();
        let detectors = config.watches.iter().map(|_| Arc::new(DetectorCache::default())).collect();
        let log_states = LogStates::new(&config.log_watches);
        let outbox_wake = Arc::new(tokio::sync::Notify::new());
        let late = Arc::new(LateEvidence::default());
        let channels = crate::notify::Routes::new(channels, &config.notify.routes);
        let notices = Arc::new(RunNotices {
            store: store.clone(),
            channels: channels.clone(),
            outbox_wake: outbox_wake.clone(),
            timeline: timeline.clone(),
            late: late.clone(),
        });
        let remediation =
            match Remediation::new(config.clone(), store.clone(), Some(source.clone()), cluster.clone(), notices) {
                Ok(r) => Some(Arc::new(r)),
                Err(e) => {
                    tracing::error!(error = %e, "playbooks do not load: no playbook will run");
                    None
                }
            };
        let incidents =
            Tracker { store: store.clone(), channels, timeline: timeline.clone(), outbox_wake: outbox_wake.clone() };
        let pipeline = Self {
            responder: Responder::new(store.clone(), metrics.clone(), remediation),
            incidents,
            detectors,
            log_source: None,
            log_states,
            config,
            store,
            source,
            cluster,
            metrics,
            timeline,
            outbox_wake,
            statuses: RwLock::new(statuses),
            recent: Arc::new(RecentAnomalies::default()),
            late,
            leadership: Leadership::AlwaysLeader,
        };
        pipeline.refresh_open_gauge();
        pipeline
    }

    /// Playbook runs; `None` only when the playbook catalog does not load.
    pub fn remediation(&self) -> Option<&Arc<Remediation>> {
        self.responder.remediation.as_ref()
    }

    /// Where the daemon runs playbook work off the caller (approvals from Slack too);
    /// `None` when runs are awaited inline (the demo, the CLI, tests).
    pub fn action_tasks(&self) -> Option<&ActionTasks> {
        self.responder.action_tasks()
    }

    /// Root-cause analysis; `None` when `analysis.enabled` is false or not set up.
    pub fn analyzer(&self) -> Option<&Arc<Analyzer>> {
        self.responder.analyzer.as_ref()
    }

    /// Notification channels incidents queue notifications for.
    pub fn channels(&self) -> &[&'static str] {
        self.incidents.channels.all()
    }

    /// Analyse incidents when they open: evidence from the pipeline's deviation streaks, the
    /// store and `cluster`; summaries from `summarizer`. With `queue`, analyses are sent to
    /// it (the daemon's worker calls [`Analyzer::analyze`]); without, they run inline.
    pub fn with_analysis(
        mut self,
        cluster: Option<Arc<dyn ClusterEvidence>>,
        summarizer: Arc<Summarizer>,
        queue: Option<tokio::sync::mpsc::Sender<AnalysisRequest>>,
    ) -> Self {
        if !self.config.analysis.enabled {
            return self;
        }
        let analyzer = Arc::new(Analyzer {
            store: self.store.clone(),
            recent: self.recent.clone(),
            cluster,
            metrics: self.config.prometheus.is_some().then(|| self.source.clone()),
            summarizer,
            settings: AnalysisSettings {
                lookback_secs: self.config.analysis.lookback.0.as_secs() as i64,
                graph_file: self.config.analysis.graph.clone(),
            },
            channels: self.incidents.channels.clone(),
            timeline: self.timeline.clone(),
            outbox_wake: self.outbox_wake.clone(),
        });
        self.responder.set_analysis(analyzer, queue);
        self.late.enable();
        self
    }

    /// Analyse again the analysed incidents whose runs have ended since (the demo and tests
    /// call this on their simulated clock; the daemon's analysis worker does it as runs end).
    pub async fn reanalyse_late(&self, now: DateTime<Utc>) {
        if let Some(a) = self.analyzer() {
            a.reanalyse_late(&self.late, now).await;
        }
    }

    /// Start the runs of evaluations in `tasks` instead of awaiting them inside the
    /// evaluation (see [`crate::act::tasks`]).
    pub fn with_action_tasks(mut self, tasks: ActionTasks) -> Self {
        self.responder.set_action_tasks(tasks);
        self
    }

    /// Act only while `leadership` leads, and fence every request of a playbook run with it
    /// (a cluster write asks the lease for `cluster_write_timeout`, the Kubernetes client's
    /// request timeout).
    pub fn with_leadership(mut self, leadership: Leadership, cluster_write_timeout: std::time::Duration) -> Self {
        if let Some(rem) = &self.responder.remediation {
            let mut runs = rem.runs.clone();
            runs.fencing = Some(Arc::new(crate::act::fencing::LeaderFencing {
                leadership: leadership.clone(),
                cluster_write_timeout,
            }));
            self.responder.remediation =
                Some(Arc::new(Remediation { runs, catalog: rem.catalog.clone(), config: rem.config.clone() }));
        }
        self.leadership = leadership;
        self
    }

    /// Read log watches from `source`.
    pub fn with_logs(mut self, source: Arc<dyn LogSource>) -> Self {
        self.log_source = Some(source);
        self
    }

    /// One evaluation of log watch `idx`: read the new lines, mine them, and open, update or
    /// resolve the incidents of its signals (see [`crate::ingest::log_watch`]).
    pub async fn evaluate_log_watch(&self, idx: usize, now: DateTime<Utc>) {
        let Some(w) = self.config.log_watches.get(idx) else { return };
        let Some(source) = self.log_source.clone() else {
            return self.record_log_no_data(w, now, "no `loki` section configured");
        };
        let Some(cell) = self.log_states.states.get(&w.name).cloned() else { return };
        let mut guard = cell.lock().await;
        if !self.leadership.is_leader() {
            // The leader reads and mines the lines and keeps the resume point; a follower
            // drops what it had, so that it starts from the stored point when it leads.
            *guard = None;
            return;
        }
        if guard.is_none() {
            let saved = match self.store.load_log_state(&w.name) {
                Ok(s) => s,
                Err(e) => return self.record_log_no_data(w, now, &format!("store: {e}")),
            };
            match LogWatchState::new(w, saved) {
                Ok(s) => *guard = Some(s),
                Err(e) => return self.record_log_no_data(w, now, &e),
            }
        }
        let Some(state) = guard.as_mut() else { return };
        let started = std::time::Instant::now();
        let evaluation = match evaluate_logs(source.as_ref(), w, state, now).await {
            Ok(e) => e,
            Err(reason) => return self.record_log_no_data(w, now, &reason),
        };
        let label = WatchLabel { watch: w.name.clone() };
        self.metrics.detector_seconds.get_or_create(&label).observe(started.elapsed().as_secs_f64());
        let mut problems = Vec::new();
        for f in &evaluation.findings {
            match self.on_log_finding(w, f, now) {
                Ok(change) => self.responder.on_change(&change, now).await,
                Err(e) => problems.push(format!("store: {e}")),
            }
        }
        if let Err(e) = self.quiet_log_incidents(w, &evaluation.still_active, now) {
            problems.push(format!("store: {e}"));
        }
        match state.miner.state().to_json() {
            Ok(json) => {
                if let Err(e) = self.store.save_log_state(&w.name, &json, state.resume_ns, now) {
                    problems.push(format!("saving the miner state: {e}"));
                }
            }
            Err(e) => problems.push(format!("saving the miner state: {e}")),
        }
        if !evaluation.complete {
            problems.push(format!("read capped at {} lines; the rest is read next time", evaluation.lines));
        }
        let state = if evaluation.findings.is_empty() { WatchState::Ok } else { WatchState::Anomalous };
        let templates = guard.as_ref().map_or(0, |s| s.miner.len());
        self.record_evaluated(&w.name, state, now, problems, templates);
    }

    fn record_log_no_data(&self, w: &LogWatchConfig, now: DateTime<Utc>, reason: &str) {
        self.record_no_data(&w.name, now, reason, None);
    }

    /// Open or update the incident of a log signal.
    fn on_log_finding(&self, w: &LogWatchConfig, f: &LogFinding, now: DateTime<Utc>) -> Result<Change, StoreError> {
        let e = &f.signal.evidence;
        let sig = IncidentSignal {
            fingerprint: f.fingerprint.clone(),
            watch: w.name.clone(),
            source: "log_watch".into(),
            severity: w.severity.as_str().into(),
            title: f.title.clone(),
            labels: f.identity.clone(),
            target: None,
            observed: Some(e.count as f64),
            expected: e.baseline,
            lower: None,
            upper: None,
            score: Some(f.signal.score),
            detector: Some(format!(
                "logs/{}",
                serde_json::to_value(f.signal.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default()
            )),
        };
        let detail = crate::ingest::log_watch::evidence_detail(f, &w.query);
        let change = self.incidents.signal(&sig, &detail, now)?;
        if let Change::Updated { incident, .. } = &change {
            self.incidents.note(incident.id, now, "signal_again", &detail)?;
        }
        Ok(change)
    }

    /// Count a quiet evaluation for every open incident of the watch whose signal did not
    /// hold this time; resolve those quiet for `resolve_after` evaluations.
    fn quiet_log_incidents(
        &self,
        w: &LogWatchConfig,
        active: &BTreeSet<String>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        for open in self.incidents.open_for_watch(&w.name)? {
            if !active.contains(&open.fingerprint) {
                self.incidents.quiet_incident(&open, w.resolve_after, now)?;
            }
        }
        Ok(())
    }

    pub fn watch_statuses(&self) -> Vec<WatchStatus> {
        self.statuses.read().map(|s| s.values().cloned().collect()).unwrap_or_default()
    }

    /// `Some(reason)` when the pipeline is blind: it has watches, every one of them has been
    /// evaluated, and the last evaluation of each had no data (Prometheus or Loki down, a
    /// wrong URL or credentials). `/readyz` then answers 503, so an operator sees at once
    /// that nothing is being watched instead of a daemon that looks healthy.
    pub fn blind(&self) -> Option<String> {
        let statuses = self.statuses.read().ok()?;
        if statuses.is_empty() || statuses.values().any(|s| s.state != WatchState::NoData) {
            return None;
        }
        let first = statuses.values().find_map(|s| s.last_error.clone()).unwrap_or_default();
        Some(format!("{} watch(es); first: {first}", statuses.len()))
    }

    fn set_status(&self, name: &str, f: impl FnOnce(&mut WatchStatus)) {
        if let Ok(mut s) = self.statuses.write() {
            if let Some(st) = s.get_mut(name) {
                f(st);
            }
        }
    }

    /// Set the audit head gauge from the store.
    pub fn refresh_audit_gauge(&self) {
        if let Ok(Some(head)) = self.store.audit_head() {
            self.metrics.audit_head_entries.set(head.count);
        }
    }

    fn refresh_open_gauge(&self) {
        if let Ok(open) = self.store.open_incidents() {
            self.metrics.open_incidents.set(open.len() as i64);
        }
    }

    /// Evaluate watch `idx` at `now` and apply the result.
    pub async fn evaluate_watch(&self, idx: usize, now: DateTime<Utc>) {
        let Some(w) = self.config.watches.get(idx) else { return };
        // Only multivariate watches keep their reference from before an open incident; the
        // others need no store read here.
        let open_since: BTreeMap<String, DateTime<Utc>> = if w.detector.kind != crate::ingest::joint_eval::KIND {
            BTreeMap::new()
        } else {
            match self.incidents.open_for_watch(&w.name) {
                Ok(open) => open.into_iter().map(|i| (i.fingerprint, i.opened_at)).collect(),
                Err(e) => return self.record_no_data(&w.name, now, &format!("store: {e}"), Some(0)),
            }
        };
        let fresh;
        let cache = match self.detectors.get(idx) {
            Some(cache) => cache,
            None => {
                fresh = Arc::new(DetectorCache::default());
                &fresh
            }
        };
        let (evaluation, detector_time) = evaluate(self.source.as_ref(), w, now, &open_since, cache).await;
        let label = WatchLabel { watch: w.name.clone() };
        self.metrics.detector_seconds.get_or_create(&label).observe(detector_time.as_secs_f64());

        let verdicts = match evaluation {
            Evaluation::NoData(reason) => return self.record_no_data(&w.name, now, &reason, Some(0)),
            Evaluation::QueryFailed { reason, retryable } => {
                let class = if retryable { "retryable" } else { "permanent" };
                tracing::warn!(watch = %w.name, %reason, retryable, "the watch's query failed");
                self.metrics
                    .query_failures
                    .get_or_create(&WatchOutcome { watch: w.name.clone(), outcome: class.into() })
                    .inc();
                return self.record_no_data(&w.name, now, &reason, Some(0));
            }
            Evaluation::Series(v) => v,
        };
        let mut any_data = false;
        let mut anomalous = false;
        let mut warming = false;
        let mut reasons = Vec::new();
        for sv in &verdicts {
            match &sv.verdict {
                Verdict::NoData(r) => reasons.push(r.clone()),
                Verdict::WarmingUp(_) => {
                    any_data = true;
                    warming = true;
                }
                Verdict::Deviating(_) | Verdict::Normal(_) => any_data = true,
                Verdict::Anomalous(_) => {
                    any_data = true;
                    anomalous = true;
                }
            }
            if let Err(e) = self.apply(w, sv, now).await {
                tracing::error!(watch = %w.name, error = %e, "applying an evaluation to the store");
                reasons.push(format!("store: {e}"));
            }
        }
        if !any_data {
            return self.record_no_data(&w.name, now, &reasons.join("; "), Some(verdicts.len()));
        }
        let state = if anomalous {
            WatchState::Anomalous
        } else if warming {
            WatchState::WarmingUp
        } else {
            WatchState::Ok
        };
        self.record_evaluated(&w.name, state, now, reasons, verdicts.len());
    }

    /// A watch evaluation with data: count it, set its status (with `problems` as the
    /// partial error), refresh the open-incident gauge.
    fn record_evaluated(
        &self,
        watch: &str,
        state: WatchState,
        now: DateTime<Utc>,
        problems: Vec<String>,
        series: usize,
    ) {
        self.metrics
            .evaluations
            .get_or_create(&WatchOutcome { watch: watch.to_string(), outcome: state.as_str().into() })
            .inc();
        let partial = (!problems.is_empty()).then(|| problems.join("; "));
        self.set_status(watch, |s| {
            if let Some(since) = s.no_data_since.take() {
                let lasted = humantime::format_duration((now - since).to_std().unwrap_or_default());
                tracing::info!(watch, %lasted, "data is back");
            }
            s.no_data_warned = None;
            s.state = state;
            s.last_evaluation = Some(now);
            s.last_error = partial;
            s.series = series;
        });
        self.refresh_open_gauge();
    }

    /// An evaluation without data: nothing is opened, resolved or acted on. `series` is the
    /// series count to show (`None` keeps the last one: log watches count templates).
    fn record_no_data(&self, watch: &str, now: DateTime<Utc>, reason: &str, series: Option<usize>) {
        // Whether to warn is decided on the status before this evaluation changes it.
        let mut warned = false;
        let mut since = now;
        self.set_status(watch, |s| {
            since = s.no_data_since.unwrap_or(now);
            if no_data_warns(s, now, reason) {
                warned = true;
                s.no_data_warned = Some(now);
            }
            s.state = WatchState::NoData;
            s.last_evaluation = Some(now);
            s.last_error = Some(reason.to_string());
            s.no_data_count += 1;
            s.no_data_since = Some(since);
            if let Some(n) = series {
                s.series = n;
            }
        });
        if warned {
            let lasting = humantime::format_duration((now - since).to_std().unwrap_or_default());
            tracing::warn!(watch, %reason, since = %since.to_rfc3339(), %lasting, "no data: nothing is opened, resolved or acted on");
        } else {
            tracing::debug!(watch, %reason, "still no data");
        }
        self.metrics
            .evaluations
            .get_or_create(&WatchOutcome { watch: watch.to_string(), outcome: WatchState::NoData.as_str().into() })
            .inc();
        self.metrics.no_data.get_or_create(&WatchLabel { watch: watch.to_string() }).inc();
        self.timeline.emit(TimelineEvent::NoData { at: now, watch: watch.to_string(), reason: reason.to_string() });
    }

    async fn apply(&self, w: &WatchConfig, sv: &SeriesVerdict, now: DateTime<Utc>) -> Result<(), StoreError> {
        let target = watch_target(w.target.as_ref(), &sv.identity);
        if let Some(d) = sv.verdict.detection() {
            self.timeline.emit(TimelineEvent::Evaluated {
                at: now,
                watch: w.name.clone(),
                target: describe(&target, &sv.identity),
                value: d.value,
                expected: d.expected,
                state: match &sv.verdict {
                    Verdict::Deviating(d) => format!("deviating ({} in a row)", d.explanation.consecutive),
                    Verdict::WarmingUp(_) => "warming up".into(),
                    Verdict::Anomalous(_) => "anomalous".into(),
                    _ => "normal".into(),
                },
                note: d.explanation.note.clone(),
            });
        }
        match &sv.verdict {
            Verdict::Deviating(d) | Verdict::Anomalous(d) => {
                let subject = crate::analysis::collect::subject_of(
                    target.as_ref().map(|t| (t.namespace.as_str(), t.deployment.as_str())),
                    &sv.identity,
                    &w.name,
                );
                self.recent.deviating(&sv.fingerprint, &w.name, subject, d, w.step.0.as_secs() as i64);
            }
            Verdict::Normal(_) => self.recent.normal(&sv.fingerprint, now),
            Verdict::NoData(_) | Verdict::WarmingUp(_) => {}
        }
        if !self.leadership.is_leader() {
            // A follower keeps its detectors and streaks warm and stops here.
            return Ok(());
        }
        match &sv.verdict {
            Verdict::NoData(_) | Verdict::WarmingUp(_) | Verdict::Deviating(_) => Ok(()),
            Verdict::Anomalous(d) => {
                let sig = Self::signal(w, sv, d, target);
                let detail = json!({"detection": d, "labels": sv.labels});
                let change = self.incidents.signal(&sig, &detail, now)?;
                if let Change::Updated { incident, quiet_before } = &change {
                    if *quiet_before > 0 {
                        self.incidents.note(
                            incident.id,
                            now,
                            "anomalous_again",
                            &json!({"value": d.value, "after_quiet_evaluations": quiet_before}),
                        )?;
                    }
                }
                self.responder.on_watch_change(w, &change, now).await
            }
            Verdict::Normal(_) => self.incidents.quiet(&sv.fingerprint, w.resolve_after, now).map(|_| ()),
        }
    }

    fn signal(w: &WatchConfig, sv: &SeriesVerdict, d: &Detection, target: Option<TargetRef>) -> IncidentSignal {
        IncidentSignal {
            fingerprint: sv.fingerprint.clone(),
            watch: w.name.clone(),
            source: "watch".into(),
            severity: w.severity.as_str().into(),
            title: format!("{} anomalous on {}", w.name, describe(&target, &sv.identity)),
            labels: sv.labels.clone(),
            target,
            observed: Some(d.value),
            expected: d.expected,
            lower: d.lower,
            upper: d.upper,
            score: Some(d.score),
            detector: Some(w.detector.name().into()),
        }
    }

    /// Apply an Alertmanager webhook: firing alerts open or update incidents and start the
    /// playbooks whose `alert` triggers match, resolved ones resolve them.
    pub async fn handle_alerts(
        &self,
        payload: &WebhookPayload,
        now: DateTime<Utc>,
    ) -> Result<AlertsOutcome, StoreError> {
        let mut out = AlertsOutcome::default();
        for signal in alerts::signals(payload) {
            match signal {
                AlertSignal::Firing { alert, signal, detail } => {
                    let change = self.incidents.signal(&signal, &detail, now)?;
                    self.responder.on_change(&change, now).await;
                    let incident_id = Some(change.incident().id);
                    out.runs.extend(self.responder.on_alert(&alert.labels, incident_id, now).await);
                }
                AlertSignal::Resolved { fingerprint, detail, .. } => {
                    self.incidents.resolve_fingerprint(&fingerprint, &detail, now)?;
                }
                AlertSignal::Skipped { alert, status } => {
                    let name = crate::incident::identity::alert_name(&alert.labels);
                    tracing::warn!(status, alert = %name, "alert with unknown status ignored");
                    continue;
                }
            }
            out.accepted += 1;
        }
        self.refresh_open_gauge();
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
