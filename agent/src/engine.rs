//! The engine: evaluations become incidents, incidents trigger guarded actions and
//! notifications.
//!
//! Both `warden run` and `warden demo` drive this same engine; they differ only in where
//! time, metrics and the cluster come from. Rules that keep it safe:
//! - "no data" never opens, updates, resolves or acts on an incident;
//! - one open incident per fingerprint (watch + identity labels), enforced by the store;
//! - an incident resolves only after `resolve_after` evaluations in a row with data and
//!   without anomaly;
//! - every action is a playbook run (guards, approvals, verify and revert, audit trail), see
//!   [`crate::remediation`].

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use warden_connectors::alertmanager::WebhookPayload;
use warden_detectors::Detection;
use warden_playbooks::Cluster;

use crate::action_tasks::ActionTasks;
use crate::analysis::{AnalysisSettings, Analyzer, ClusterEvidence, RecentAnomalies, Summarizer};
use crate::config::{Config, LogWatchConfig, Severity, WatchConfig};
use crate::evaluate::{evaluate, fingerprint, Evaluation, SeriesVerdict, Verdict};
use crate::log_watch::{evaluate_logs, LogFinding, LogSource, LogStates, LogWatchState};
use crate::metrics::{ActionLabels, Metrics, WatchLabel, WatchOutcome};
use crate::notify::{render, NotifyEvent};
use crate::remediation::{action_history, Remediation, RunNotices};
use crate::source::MetricSource;
use crate::store::{Incident, IncidentSignal, Store, StoreError, TargetRef};
use crate::timeline::{Timeline, TimelineEvent};

/// A watch's state as shown by the API.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WatchStatus {
    pub name: String,
    /// `pending` (not evaluated yet), `ok`, `warming_up`, `anomalous` or `no_data`.
    pub state: String,
    pub last_evaluation: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub no_data_count: u64,
    pub series: usize,
}

pub struct Engine {
    pub config: Arc<Config>,
    pub store: Arc<Store>,
    pub source: Arc<dyn MetricSource>,
    pub cluster: Option<Arc<dyn Cluster>>,
    pub metrics: Arc<Metrics>,
    pub channels: Vec<&'static str>,
    pub timeline: Timeline,
    /// Woken when new notifications are queued.
    pub outbox_wake: Arc<tokio::sync::Notify>,
    statuses: RwLock<BTreeMap<String, WatchStatus>>,
    /// Streaming detectors kept between evaluations, one cache per watch.
    detectors: Vec<crate::evaluate::DetectorCache>,
    /// Where log watches read from; `None` when no `loki` section is configured.
    log_source: Option<Arc<dyn LogSource>>,
    log_states: LogStates,
    /// Playbook runs; `None` only when the playbook catalog does not load.
    pub remediation: Option<Arc<Remediation>>,
    /// Deviation streaks of every watch, for root-cause analysis.
    pub recent: Arc<RecentAnomalies>,
    /// Root-cause analysis of opened incidents; `None` when `analysis.enabled` is false.
    pub analyzer: Option<Arc<Analyzer>>,
    analysis: AnalysisMode,
    /// Where runs started by evaluations run: `None` awaits them inline (the demo and
    /// tests, on simulated time); the daemon's tasks keep them off the evaluation loop.
    actions: Option<ActionTasks>,
}

/// How opened incidents are analysed.
#[derive(Clone, Default)]
enum AnalysisMode {
    /// Not at all (analysis disabled or not set up).
    #[default]
    Off,
    /// Awaited where the incident opens (the demo and tests, on simulated time).
    Inline,
    /// Handed to a background task (the daemon), so a slow model never delays evaluations.
    Queued(tokio::sync::mpsc::UnboundedSender<(i64, DateTime<Utc>)>),
}

impl Engine {
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
                    state: "pending".into(),
                    last_evaluation: None,
                    last_error: None,
                    no_data_count: 0,
                    series: 0,
                };
                (name.clone(), s)
            })
            .collect();
        let detectors = config.watches.iter().map(|_| crate::evaluate::DetectorCache::default()).collect();
        let log_states = LogStates::new(&config.log_watches);
        let outbox_wake = Arc::new(tokio::sync::Notify::new());
        let notices = Arc::new(RunNotices {
            store: store.clone(),
            channels: channels.clone(),
            outbox_wake: outbox_wake.clone(),
            timeline: timeline.clone(),
        });
        let remediation =
            match Remediation::new(config.clone(), store.clone(), Some(source.clone()), cluster.clone(), notices) {
                Ok(r) => Some(Arc::new(r)),
                Err(e) => {
                    tracing::error!(error = %e, "playbooks do not load: no playbook will run");
                    None
                }
            };
        let engine = Self {
            remediation,
            detectors,
            log_source: None,
            log_states,
            config,
            store,
            source,
            cluster,
            metrics,
            channels,
            timeline,
            outbox_wake,
            statuses: RwLock::new(statuses),
            recent: Arc::new(RecentAnomalies::default()),
            analyzer: None,
            analysis: AnalysisMode::Off,
            actions: None,
        };
        engine.refresh_open_gauge();
        engine
    }

    /// Analyse incidents when they open: evidence from the engine's deviation streaks, the
    /// store and `cluster`; summaries from `summarizer`. With `queue`, analyses are sent to
    /// it (the daemon's worker calls [`Analyzer::analyze`]); without, they run inline.
    pub fn with_analysis(
        mut self,
        cluster: Option<Arc<dyn ClusterEvidence>>,
        summarizer: Arc<Summarizer>,
        queue: Option<tokio::sync::mpsc::UnboundedSender<(i64, DateTime<Utc>)>>,
    ) -> Self {
        if !self.config.analysis.enabled {
            return self;
        }
        self.analyzer = Some(Arc::new(Analyzer {
            store: self.store.clone(),
            recent: self.recent.clone(),
            cluster,
            metrics: self.config.prometheus.is_some().then(|| self.source.clone()),
            summarizer,
            settings: AnalysisSettings {
                lookback_secs: self.config.analysis.lookback.0.as_secs() as i64,
                graph_file: self.config.analysis.graph.clone(),
            },
            channels: self.channels.clone(),
            timeline: self.timeline.clone(),
            outbox_wake: self.outbox_wake.clone(),
        }));
        self.analysis = match queue {
            Some(tx) => AnalysisMode::Queued(tx),
            None => AnalysisMode::Inline,
        };
        self
    }

    /// Analyse an incident that just opened (see [`AnalysisMode`]).
    async fn analyse_opened(&self, incident_id: i64, now: DateTime<Utc>) {
        match (&self.analysis, &self.analyzer) {
            (AnalysisMode::Inline, Some(a)) => {
                if let Err(e) = a.analyze(incident_id, now).await {
                    tracing::error!(incident = incident_id, error = %e, "analysing the incident");
                }
            }
            (AnalysisMode::Queued(tx), _) => self.queue_analysis(incident_id, now, tx),
            _ => {}
        }
    }

    fn queue_analysis(
        &self,
        incident_id: i64,
        now: DateTime<Utc>,
        tx: &tokio::sync::mpsc::UnboundedSender<(i64, DateTime<Utc>)>,
    ) {
        if tx.send((incident_id, now)).is_err() {
            tracing::warn!(incident = incident_id, "the analysis worker has stopped: incident not analysed");
        }
    }

    /// Read log watches from `source`.
    /// Start the runs of evaluations in `tasks` instead of awaiting them inside the
    /// evaluation (see [`crate::action_tasks`]).
    pub fn with_action_tasks(mut self, tasks: ActionTasks) -> Self {
        self.actions = Some(tasks);
        self
    }

    pub fn with_logs(mut self, source: Arc<dyn LogSource>) -> Self {
        self.log_source = Some(source);
        self
    }

    /// One evaluation of log watch `idx`: read the new lines, mine them, and open, update or
    /// resolve the incidents of its signals (see [`crate::log_watch`]).
    pub async fn evaluate_log_watch(&self, idx: usize, now: DateTime<Utc>) {
        let Some(w) = self.config.log_watches.get(idx) else { return };
        let Some(source) = self.log_source.clone() else {
            return self.record_log_no_data(w, now, "no `loki` section configured");
        };
        let Some(cell) = self.log_states.states.get(&w.name).cloned() else { return };
        let mut guard = cell.lock().await;
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
        let mut opened = Vec::new();
        for f in &evaluation.findings {
            match self.on_log_finding(w, f, now) {
                Ok(Some(id)) => opened.push(id),
                Ok(None) => {}
                Err(e) => problems.push(format!("store: {e}")),
            }
        }
        for id in opened {
            self.analyse_opened(id, now).await;
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
        let anomalous = !evaluation.findings.is_empty();
        let outcome = if anomalous { "anomalous" } else { "ok" };
        self.metrics.evaluations.get_or_create(&WatchOutcome { watch: w.name.clone(), outcome: outcome.into() }).inc();
        let partial = (!problems.is_empty()).then(|| problems.join("; "));
        let templates = state.miner.len();
        self.set_status(&w.name, |s| {
            s.state = outcome.into();
            s.last_evaluation = Some(now);
            s.last_error = partial;
            s.series = templates;
        });
        self.refresh_open_gauge();
    }

    fn record_log_no_data(&self, w: &LogWatchConfig, now: DateTime<Utc>, reason: &str) {
        tracing::warn!(watch = %w.name, reason, "no data");
        self.metrics
            .evaluations
            .get_or_create(&WatchOutcome { watch: w.name.clone(), outcome: "no_data".into() })
            .inc();
        self.set_status(&w.name, |s| {
            s.state = "no_data".into();
            s.last_evaluation = Some(now);
            s.last_error = Some(reason.to_string());
            s.no_data_count += 1;
        });
        self.timeline.emit(TimelineEvent::NoData { at: now, watch: w.name.clone(), reason: reason.to_string() });
    }

    /// Returns the id of the incident the finding opened, if it opened one.
    fn on_log_finding(
        &self,
        w: &LogWatchConfig,
        f: &LogFinding,
        now: DateTime<Utc>,
    ) -> Result<Option<i64>, StoreError> {
        let mut opened = None;
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
        let detail = crate::log_watch::evidence_detail(f, &w.query);
        match self.store.open_incident_by_fingerprint(&f.fingerprint)? {
            Some(open) => {
                self.store.update_incident(open.id, &sig, now)?;
                self.store.add_event(open.id, now, "signal_again", &detail, &[])?;
                self.timeline.emit(TimelineEvent::IncidentUpdated {
                    at: now,
                    incident_id: open.id,
                    value: Some(e.count as f64),
                });
            }
            None => {
                let channels = self.channels.clone();
                let incident = self
                    .store
                    .open_incident(&sig, now, &detail, |i| render(NotifyEvent::Opened, i, None, &[], &channels))?;
                tracing::warn!(incident = incident.id, watch = %w.name, title = %incident.title, "incident opened");
                self.timeline.emit(TimelineEvent::IncidentOpened {
                    at: now,
                    incident_id: incident.id,
                    title: incident.title.clone(),
                });
                self.outbox_wake.notify_one();
                opened = Some(incident.id);
            }
        }
        Ok(opened)
    }

    /// Count a quiet evaluation for every open incident of the watch whose signal did not
    /// hold this time; resolve those quiet for `resolve_after` evaluations.
    fn quiet_log_incidents(
        &self,
        w: &LogWatchConfig,
        active: &std::collections::BTreeSet<String>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        for open in self.store.open_incidents()?.into_iter().filter(|i| i.watch == w.name) {
            if active.contains(&open.fingerprint) {
                continue;
            }
            let quiet = self.store.record_quiet(open.id)?;
            if quiet < w.resolve_after {
                continue;
            }
            let channels = self.channels.clone();
            let detail = json!({"quiet_evaluations": quiet});
            if let Some(resolved) = self
                .store
                .resolve_incident(open.id, now, &detail, |i| render(NotifyEvent::Resolved, i, None, &[], &channels))?
            {
                tracing::info!(incident = resolved.id, watch = %w.name, "incident resolved");
                self.timeline.emit(TimelineEvent::IncidentResolved {
                    at: now,
                    incident_id: resolved.id,
                    title: resolved.title,
                });
                self.outbox_wake.notify_one();
            }
        }
        Ok(())
    }

    pub fn watch_statuses(&self) -> Vec<WatchStatus> {
        self.statuses.read().map(|s| s.values().cloned().collect()).unwrap_or_default()
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
        let open_since: BTreeMap<String, DateTime<Utc>> = if w.detector.kind != crate::joint_eval::KIND {
            BTreeMap::new()
        } else {
            match self.store.open_incidents() {
                Ok(open) => {
                    open.into_iter().filter(|i| i.watch == w.name).map(|i| (i.fingerprint, i.opened_at)).collect()
                }
                Err(e) => {
                    self.record_no_data(w, now, &format!("store: {e}"), 0);
                    return;
                }
            }
        };
        let (evaluation, detector_time) = match self.detectors.get(idx) {
            Some(cache) => evaluate(self.source.as_ref(), w, now, &open_since, cache).await,
            None => {
                evaluate(self.source.as_ref(), w, now, &open_since, &crate::evaluate::DetectorCache::default()).await
            }
        };
        let label = WatchLabel { watch: w.name.clone() };
        self.metrics.detector_seconds.get_or_create(&label).observe(detector_time.as_secs_f64());

        let verdicts = match evaluation {
            Evaluation::NoData(reason) => {
                self.record_no_data(w, now, &reason, 0);
                return;
            }
            Evaluation::QueryFailed { reason, retryable } => {
                let class = if retryable { "retryable" } else { "permanent" };
                tracing::warn!(watch = %w.name, %reason, retryable, "the watch's query failed");
                self.metrics
                    .query_failures
                    .get_or_create(&WatchOutcome { watch: w.name.clone(), outcome: class.into() })
                    .inc();
                self.record_no_data(w, now, &reason, 0);
                return;
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
                Verdict::Deviating(_) => any_data = true,
                Verdict::Normal(_) => any_data = true,
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
            self.record_no_data(w, now, &reasons.join("; "), verdicts.len());
            return;
        }
        let state = if anomalous {
            "anomalous"
        } else if warming {
            "warming_up"
        } else {
            "ok"
        };
        self.metrics.evaluations.get_or_create(&WatchOutcome { watch: w.name.clone(), outcome: state.into() }).inc();
        let partial = (!reasons.is_empty()).then(|| reasons.join("; "));
        self.set_status(&w.name, |s| {
            s.state = state.into();
            s.last_evaluation = Some(now);
            s.last_error = partial;
            s.series = verdicts.len();
        });
        self.refresh_open_gauge();
    }

    fn record_no_data(&self, w: &WatchConfig, now: DateTime<Utc>, reason: &str, series: usize) {
        tracing::warn!(watch = %w.name, %reason, "no data: nothing is opened, resolved or acted on");
        self.metrics
            .evaluations
            .get_or_create(&WatchOutcome { watch: w.name.clone(), outcome: "no_data".into() })
            .inc();
        self.metrics.no_data.get_or_create(&WatchLabel { watch: w.name.clone() }).inc();
        self.set_status(&w.name, |s| {
            s.state = "no_data".into();
            s.last_evaluation = Some(now);
            s.last_error = Some(reason.to_string());
            s.no_data_count += 1;
            s.series = series;
        });
        self.timeline.emit(TimelineEvent::NoData { at: now, watch: w.name.clone(), reason: reason.to_string() });
    }

    async fn apply(&self, w: &WatchConfig, sv: &SeriesVerdict, now: DateTime<Utc>) -> Result<(), StoreError> {
        let target = resolve_target(w, &sv.identity);
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
        match &sv.verdict {
            Verdict::NoData(_) | Verdict::WarmingUp(_) | Verdict::Deviating(_) => Ok(()),
            Verdict::Anomalous(d) => self.on_anomaly(w, sv, d, target, now).await,
            Verdict::Normal(_) => self.on_quiet(w, sv, now),
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

    async fn on_anomaly(
        &self,
        w: &WatchConfig,
        sv: &SeriesVerdict,
        d: &Detection,
        target: Option<TargetRef>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let sig = Self::signal(w, sv, d, target);
        let incident = match self.store.open_incident_by_fingerprint(&sv.fingerprint)? {
            Some(open) => {
                let quiet_before = self.store.update_incident(open.id, &sig, now)?;
                if quiet_before > 0 {
                    self.store.add_event(
                        open.id,
                        now,
                        "anomalous_again",
                        &json!({"value": d.value, "after_quiet_evaluations": quiet_before}),
                        &[],
                    )?;
                }
                self.timeline.emit(TimelineEvent::IncidentUpdated {
                    at: now,
                    incident_id: open.id,
                    value: Some(d.value),
                });
                // Act again only once the previous attempt's cooldown has passed.
                let cooldown = self.remediation.as_ref().map(|r| r.watch_cooldown(w)).unwrap_or_default();
                let last = self.store.last_run_for_incident(open.id)?;
                let due = last.is_none_or(|t| (now - t).to_std().unwrap_or_default() >= cooldown);
                if !due {
                    return Ok(());
                }
                return self.act(w, &open, now, false).await;
            }
            None => {
                let detail = json!({"detection": d, "labels": sv.labels});
                let channels = self.channels.clone();
                let incident = self
                    .store
                    .open_incident(&sig, now, &detail, |i| render(NotifyEvent::Opened, i, None, &[], &channels))?;
                tracing::warn!(incident = incident.id, watch = %w.name, value = d.value, expected = ?d.expected, "incident opened");
                self.timeline.emit(TimelineEvent::IncidentOpened {
                    at: now,
                    incident_id: incident.id,
                    title: incident.title.clone(),
                });
                self.outbox_wake.notify_one();
                incident
            }
        };
        self.act(w, &incident, now, true).await?;
        self.analyse_opened(incident.id, now).await;
        Ok(())
    }

    fn on_quiet(&self, w: &WatchConfig, sv: &SeriesVerdict, now: DateTime<Utc>) -> Result<(), StoreError> {
        let Some(open) = self.store.open_incident_by_fingerprint(&sv.fingerprint)? else { return Ok(()) };
        let quiet = self.store.record_quiet(open.id)?;
        if quiet < w.resolve_after {
            return Ok(());
        }
        let actions = self.action_history(open.id);
        let channels = self.channels.clone();
        let detail = json!({"quiet_evaluations": quiet});
        if let Some(resolved) = self
            .store
            .resolve_incident(open.id, now, &detail, |i| render(NotifyEvent::Resolved, i, None, &actions, &channels))?
        {
            tracing::info!(incident = resolved.id, watch = %w.name, "incident resolved");
            self.timeline.emit(TimelineEvent::IncidentResolved {
                at: now,
                incident_id: resolved.id,
                title: resolved.title,
            });
            self.outbox_wake.notify_one();
        }
        Ok(())
    }

    /// What runs changed on an incident, in words, oldest first.
    fn action_history(&self, incident_id: i64) -> Vec<String> {
        action_history(&self.store, incident_id)
    }

    /// Start the watch's playbook (and playbooks whose incident triggers match) for an
    /// incident. The run records itself, its guards' decisions and its outcome; notices
    /// become incident events and notifications (see [`crate::remediation::RunNotices`]).
    async fn act(
        &self,
        w: &WatchConfig,
        incident: &Incident,
        now: DateTime<Utc>,
        opened: bool,
    ) -> Result<(), StoreError> {
        let Some(rem) = self.remediation.clone() else { return Ok(()) };
        let metrics = self.metrics.clone();
        let iid = incident.id;
        let (w, incident) = (w.clone(), incident.clone());
        let work = async move {
            let mut runs = Vec::new();
            if let Some(run) = rem.on_incident(&w, &incident, now).await {
                runs.push(run);
            }
            // Playbooks bound by their own incident triggers run once, when the incident opens.
            if opened {
                runs.extend(rem.on_incident_triggers(&w, &incident, now).await);
            }
            for run in runs {
                let outcome = run.status.as_str().to_string();
                metrics.actions.get_or_create(&ActionLabels { kind: run.playbook.clone(), outcome }).inc();
            }
        };
        match &self.actions {
            // One task per incident at a time: an incident whose runs are still starting
            // (a slow cluster) is not acted on again meanwhile.
            Some(tasks) => {
                if !tasks.spawn(format!("incident:{iid}"), true, work) {
                    tracing::debug!("the incident's previous runs are still starting");
                }
            }
            None => work.await,
        }
        Ok(())
    }

    /// Apply an Alertmanager webhook: firing alerts open or update incidents, resolved ones
    /// resolve them. Returns how many alerts were applied.
    pub fn handle_alerts(&self, payload: &WebhookPayload, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let channels = self.channels.clone();
        let mut applied = 0;
        for a in &payload.alerts {
            let name = a.labels.get("alertname").cloned().unwrap_or_else(|| "unnamed".into());
            let watch = format!("alertmanager/{name}");
            let fp = fingerprint(&watch, &a.labels);
            let severity = match a.labels.get("severity").map(String::as_str) {
                Some("critical") | Some("page") => Severity::Critical,
                Some("info") | Some("none") => Severity::Info,
                _ => Severity::Warning,
            };
            let target = match (a.labels.get("namespace"), a.labels.get("deployment")) {
                (Some(ns), Some(dep)) => Some(TargetRef { namespace: ns.clone(), deployment: dep.clone() }),
                _ => None,
            };
            let title = a.annotations.get("summary").cloned().unwrap_or_else(|| format!("{name} firing"));
            match a.status.as_str() {
                "firing" => {
                    let sig = IncidentSignal {
                        fingerprint: fp.clone(),
                        watch,
                        source: "alertmanager".into(),
                        severity: severity.as_str().into(),
                        title,
                        labels: a.labels.clone(),
                        target,
                        observed: None,
                        expected: None,
                        lower: None,
                        upper: None,
                        score: None,
                        detector: None,
                    };
                    match self.store.open_incident_by_fingerprint(&fp)? {
                        Some(open) => {
                            self.store.update_incident(open.id, &sig, now)?;
                        }
                        None => {
                            let detail = json!({"alert": a, "group_key": payload.group_key});
                            let i = self.store.open_incident(&sig, now, &detail, |i| {
                                render(NotifyEvent::Opened, i, None, &[], &channels)
                            })?;
                            tracing::warn!(incident = i.id, alert = %name, "incident opened from Alertmanager");
                            if let AnalysisMode::Queued(tx) = &self.analysis {
                                self.queue_analysis(i.id, now, tx);
                            }
                            self.timeline.emit(TimelineEvent::IncidentOpened {
                                at: now,
                                incident_id: i.id,
                                title: i.title,
                            });
                        }
                    }
                }
                "resolved" => {
                    if let Some(open) = self.store.open_incident_by_fingerprint(&fp)? {
                        let detail = json!({"alert": a});
                        if let Some(i) = self.store.resolve_incident(open.id, now, &detail, |i| {
                            render(NotifyEvent::Resolved, i, None, &[], &channels)
                        })? {
                            self.timeline.emit(TimelineEvent::IncidentResolved {
                                at: now,
                                incident_id: i.id,
                                title: i.title,
                            });
                        }
                    }
                }
                other => {
                    tracing::warn!(status = other, alert = %name, "alert with unknown status ignored");
                    continue;
                }
            }
            applied += 1;
        }
        self.outbox_wake.notify_one();
        self.refresh_open_gauge();
        Ok(applied)
    }
}

/// Fill the target template from identity labels.
pub fn resolve_target(w: &WatchConfig, identity: &BTreeMap<String, String>) -> Option<TargetRef> {
    let t = w.target.as_ref()?;
    let fill = |tpl: &str| -> Option<String> {
        let mut out = tpl.to_string();
        for (k, v) in identity {
            out = out.replace(&format!("{{{k}}}"), v);
        }
        (!out.contains('{') && !out.is_empty()).then_some(out)
    };
    Some(TargetRef { namespace: fill(&t.namespace)?, deployment: fill(&t.deployment)? })
}

fn describe(target: &Option<TargetRef>, identity: &BTreeMap<String, String>) -> String {
    match target {
        Some(t) => format!("{}/{}", t.namespace, t.deployment),
        None if identity.is_empty() => "(all)".into(),
        None => identity.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_str;
    use std::sync::Mutex;
    use std::time::Duration;
    use warden_connectors::prometheus::{RangeResult, Sample, Series};
    use warden_playbooks::cluster::DeploymentInfo;
    use warden_playbooks::{ClusterError, ReplicaState, SetReplicasOutcome, WorkloadRef};

    /// Serves a series whose value at time t comes from a closure; `None` means an error.
    struct Scripted {
        value: Box<dyn Fn(i64) -> f64 + Send + Sync>,
        down: Mutex<bool>,
    }

    #[async_trait::async_trait]
    impl MetricSource for Scripted {
        async fn query_range(
            &self,
            _q: &str,
            start: DateTime<Utc>,
            end: DateTime<Utc>,
            step: Duration,
        ) -> warden_connectors::Result<RangeResult> {
            if *self.down.lock().map_err(|e| warden_connectors::Error::InvalidInput(e.to_string()))? {
                return Err(warden_connectors::Error::Connect {
                    url: "http://127.0.0.1:9/api/v1/query_range".into(),
                    message: "connection refused".into(),
                });
            }
            let mut points = Vec::new();
            let mut t = start.timestamp();
            while t <= end.timestamp() {
                points.push(Sample { timestamp_ms: t * 1000, value: (self.value)(t) });
                t += step.as_secs() as i64;
            }
            let labels = BTreeMap::from([
                ("namespace".to_string(), "shop".to_string()),
                ("deployment".to_string(), "checkout".to_string()),
            ]);
            Ok(RangeResult { series: vec![Series { labels, points }], warnings: vec![] })
        }
    }

    #[derive(Default)]
    struct FakeCluster {
        patches: Mutex<Vec<i32>>,
    }

    #[async_trait::async_trait]
    impl Cluster for FakeCluster {
        async fn get_replicas(&self, _t: &WorkloadRef) -> Result<ReplicaState, ClusterError> {
            let n = self.patches.lock().map(|p| p.last().copied().unwrap_or(2)).unwrap_or(2);
            Ok(ReplicaState { desired: n, current: n })
        }
        async fn set_replicas(
            &self,
            _t: &WorkloadRef,
            replicas: i32,
            dry_run: bool,
        ) -> Result<SetReplicasOutcome, ClusterError> {
            if let Ok(mut p) = self.patches.lock() {
                p.push(replicas);
            }
            Ok(SetReplicasOutcome { replicas, dry_run, response: json!({}) })
        }
        async fn deployment_info(&self, _t: &WorkloadRef) -> Result<DeploymentInfo, ClusterError> {
            Ok(DeploymentInfo { labels: BTreeMap::new(), revision: Some(1), replicas: 2 })
        }
    }

    const T0: i64 = 1_700_000_000;
    const FAULT: (i64, i64) = (T0 + 600, T0 + 900);

    fn engine(source: Arc<Scripted>, cluster: Arc<FakeCluster>) -> Engine {
        let cfg = parse_str(
            "prometheus: {url: 'http://127.0.0.1:9'}\nkubernetes: {}\nactions: {cooldown: 1h}\nnotify: {file: {path: n.jsonl}}\nwatches:\n  - name: lat\n    query: up\n    interval: 10s\n    step: 10s\n    lookback: 30m\n    identity: [namespace, deployment]\n    target: {namespace: '{namespace}', deployment: '{deployment}'}\n    resolve_after: 3\n    detector: {kind: robust_baseline, window: 60, min_consecutive: 2, direction: up}\n    action: {scale: {step: 1, max_replicas: 5}}\n",
            std::path::Path::new("t.yaml"),
        )
        .expect("valid config");
        Engine::new(
            Arc::new(cfg),
            Arc::new(Store::open_in_memory().expect("store")),
            source,
            Some(cluster as Arc<dyn Cluster>),
            Arc::new(Metrics::new()),
            vec!["slack", "email"],
            Timeline::default(),
        )
    }

    fn baseline_with_fault() -> Arc<Scripted> {
        Arc::new(Scripted {
            value: Box::new(|t| if (FAULT.0..FAULT.1).contains(&t) { 5.0 } else { 1.0 + ((t / 10) % 5) as f64 * 0.01 }),
            down: Mutex::new(false),
        })
    }

    fn at(t: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(t, 0).expect("time")
    }

    #[tokio::test]
    async fn fault_opens_acts_once_and_resolves_with_notifications() {
        let cluster = Arc::new(FakeCluster::default());
        let e = engine(baseline_with_fault(), cluster.clone());
        let mut t = T0;
        let mut opened_at = None;
        while t < FAULT.1 + 120 {
            e.evaluate_watch(0, at(t)).await;
            if opened_at.is_none() && !e.store.open_incidents().expect("q").is_empty() {
                opened_at = Some(t);
            }
            t += 10;
        }
        // Opened on the second deviating point (min_consecutive = 2); one PATCH (cooldown 1h).
        assert_eq!(opened_at, Some(FAULT.0 + 10));
        assert_eq!(*cluster.patches.lock().expect("lock"), vec![3]);
        let incidents = e.store.list_incidents(None, 10).expect("list");
        assert_eq!(incidents.len(), 1);
        assert_eq!(incidents[0].status, "resolved");
        // Resolved on the third quiet evaluation after the fault.
        assert_eq!(incidents[0].resolved_at, Some(at(FAULT.1 + 20)));
        let events: Vec<String> =
            e.store.incident_events(incidents[0].id).expect("events").into_iter().map(|ev| ev.kind).collect();
        assert_eq!(events, ["opened", "run_succeeded", "resolved"]);
        // opened, action and resolved, for each of the two channels.
        let due = e.store.pending_notifications().expect("count");
        assert_eq!(due, 6);
        assert_eq!(e.watch_statuses()[0].state, "ok");
    }

    #[tokio::test]
    async fn no_data_never_opens_resolves_or_acts() {
        let cluster = Arc::new(FakeCluster::default());
        let source = baseline_with_fault();
        let e = engine(source.clone(), cluster.clone());
        // Prometheus is down for the whole fault: nothing happens.
        *source.down.lock().expect("lock") = true;
        for t in (FAULT.0..FAULT.1).step_by(10) {
            e.evaluate_watch(0, at(t)).await;
        }
        assert!(e.store.list_incidents(None, 10).expect("list").is_empty());
        assert!(cluster.patches.lock().expect("lock").is_empty());
        let st = &e.watch_statuses()[0];
        assert_eq!(st.state, "no_data");
        assert_eq!(st.no_data_count, 30);
        assert!(st.last_error.as_deref().unwrap_or("").contains("connection refused"));
        let metrics = e.metrics.encode().expect("encode");
        assert!(metrics.contains("warden_watch_no_data_total{watch=\"lat\"} 30"));
        // A refused connection is a retryable failure, and counted as one.
        assert!(metrics.contains("warden_query_failures_total{watch=\"lat\",outcome=\"retryable\"} 30"), "{metrics}");

        // Data during the fault: the incident opens. Then Prometheus goes down after the
        // fault: the incident must stay open, however long the outage.
        *source.down.lock().expect("lock") = false;
        e.evaluate_watch(0, at(FAULT.1 - 20)).await;
        e.evaluate_watch(0, at(FAULT.1 - 10)).await;
        assert_eq!(e.store.open_incidents().expect("open").len(), 1);
        *source.down.lock().expect("lock") = true;
        for t in (FAULT.1..FAULT.1 + 600).step_by(10) {
            e.evaluate_watch(0, at(t)).await;
        }
        assert_eq!(e.store.open_incidents().expect("open").len(), 1);
        assert_eq!(cluster.patches.lock().expect("lock").len(), 1);
    }

    #[tokio::test]
    async fn a_single_dip_does_not_resolve() {
        // The fault has one normal-looking point in the middle of it.
        let source = Arc::new(Scripted {
            value: Box::new(|t| {
                if t == FAULT.0 + 100 {
                    1.0
                } else if (FAULT.0..FAULT.1).contains(&t) {
                    5.0
                } else {
                    1.0 + ((t / 10) % 5) as f64 * 0.01
                }
            }),
            down: Mutex::new(false),
        });
        let e = engine(source, Arc::new(FakeCluster::default()));
        for t in (T0..FAULT.1).step_by(10) {
            e.evaluate_watch(0, at(t)).await;
        }
        let incidents = e.store.list_incidents(None, 10).expect("list");
        assert_eq!(incidents.len(), 1, "{incidents:?}");
        assert_eq!(incidents[0].status, "open");
    }

    #[tokio::test]
    async fn alerts_open_and_resolve_incidents() {
        let e = engine(baseline_with_fault(), Arc::new(FakeCluster::default()));
        let mut payload: WebhookPayload = serde_json::from_value(json!({
            "version": "4", "groupKey": "{}:{}", "status": "firing", "receiver": "warden",
            "alerts": [{"status": "firing", "labels": {"alertname": "HighErrors", "namespace": "shop", "deployment": "checkout", "severity": "critical"},
                        "annotations": {"summary": "5xx above 5 %"}, "startsAt": "2026-11-22T10:00:00Z"}]
        }))
        .expect("payload");
        assert_eq!(e.handle_alerts(&payload, at(T0)).expect("apply"), 1);
        assert_eq!(e.handle_alerts(&payload, at(T0 + 60)).expect("apply"), 1);
        let open = e.store.open_incidents().expect("open");
        assert_eq!(open.len(), 1, "repeated alerts update the same incident");
        assert_eq!(
            (open[0].source.as_str(), open[0].watch.as_str(), open[0].severity.as_str()),
            ("alertmanager", "alertmanager/HighErrors", "critical")
        );
        assert_eq!(open[0].title, "5xx above 5 %");
        payload.alerts[0].status = "resolved".into();
        e.handle_alerts(&payload, at(T0 + 120)).expect("apply");
        assert!(e.store.open_incidents().expect("open").is_empty());
    }
}
