//! The responder: acts on incident changes.
//!
//! An incident that opens gets its playbooks started (the watch's playbook and playbooks
//! whose `incident` triggers match) and a root-cause analysis; an incident that is still
//! anomalous gets its playbook again once the previous attempt's cooldown has passed; a
//! firing alert starts the playbooks whose `alert` triggers match. Runs are audited,
//! guarded and verified by the playbook engine ([`crate::act::remediation`]); the responder
//! only decides *when* to ask. The model never decides anything here: analyses produce text.
//!
//! Two ways to run, chosen by whoever builds the pipeline: inline (the demo and tests, on
//! simulated time: runs and analyses are awaited where the change happens) or queued (the
//! daemon: runs go to [`ActionTasks`], analyses to a bounded queue worked by
//! `app::daemon::run_analyses`, so a slow cluster or model never delays evaluations).

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

use crate::act::remediation::Remediation;
use crate::act::tasks::ActionTasks;
use crate::analysis::Analyzer;
use crate::config::WatchConfig;
use crate::incident::tracker::Change;
use crate::metrics::{ActionLabels, Metrics, QueueLabel};
use crate::store::{Incident, Store, StoreError};

/// How many opened incidents may wait for analysis. Overflow policy: an incident that finds
/// the queue full is not analysed (logged, counted in `warden_queue_dropped_total{queue=
/// "analysis"}`); it is still recorded, notified and acted on. A burst that large means the
/// model cannot keep up, and analysing the oldest first would only make every summary late.
pub const ANALYSIS_QUEUE: usize = 256;

/// An incident to analyse and when it opened.
pub type AnalysisRequest = (i64, DateTime<Utc>);

/// The sending half of the analysis queue and its receiver, for the daemon's worker.
pub fn analysis_queue() -> (mpsc::Sender<AnalysisRequest>, mpsc::Receiver<AnalysisRequest>) {
    mpsc::channel(ANALYSIS_QUEUE)
}

/// How opened incidents are analysed.
#[derive(Clone, Default)]
enum AnalysisMode {
    /// Not at all (analysis disabled or not set up).
    #[default]
    Off,
    /// Awaited where the incident opens (the demo and tests, on simulated time).
    Inline(Arc<Analyzer>),
    /// Handed to the daemon's worker through the bounded queue.
    Queued(mpsc::Sender<AnalysisRequest>),
}

/// Acts on incident changes (see the module docs).
pub struct Responder {
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    /// Playbook runs; `None` only when the playbook catalog does not load.
    pub remediation: Option<Arc<Remediation>>,
    /// Root-cause analysis; `None` when `analysis.enabled` is false.
    pub analyzer: Option<Arc<Analyzer>>,
    analysis: AnalysisMode,
    /// Where runs started by changes run: `None` awaits them inline.
    actions: Option<ActionTasks>,
}

impl Responder {
    pub fn new(store: Arc<Store>, metrics: Arc<Metrics>, remediation: Option<Arc<Remediation>>) -> Self {
        Self { store, metrics, remediation, analyzer: None, analysis: AnalysisMode::Off, actions: None }
    }

    /// Analyse opened incidents with `analyzer`: through `queue` when given, inline otherwise.
    pub fn set_analysis(&mut self, analyzer: Arc<Analyzer>, queue: Option<mpsc::Sender<AnalysisRequest>>) {
        self.analysis = match queue {
            Some(tx) => AnalysisMode::Queued(tx),
            None => AnalysisMode::Inline(analyzer.clone()),
        };
        self.analyzer = Some(analyzer);
    }

    /// Start runs in `tasks` instead of awaiting them (see [`crate::act::tasks`]).
    pub fn set_action_tasks(&mut self, tasks: ActionTasks) {
        self.actions = Some(tasks);
    }

    /// The daemon's run tasks; `None` when runs are awaited inline.
    pub fn action_tasks(&self) -> Option<&ActionTasks> {
        self.actions.as_ref()
    }

    /// A metric watch's incident changed: act on an opening, or again on an update once the
    /// cooldown since the last run has passed; analyse an opening.
    pub async fn on_watch_change(
        &self,
        w: &WatchConfig,
        change: &Change,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        match change {
            Change::Opened(incident) => {
                self.act(w, incident, now, true).await;
                self.analyse(incident.id, now).await;
            }
            Change::Updated { incident, .. } => {
                let cooldown = self.remediation.as_ref().map(|r| r.watch_cooldown(w)).unwrap_or_default();
                let last = self.store.last_run_for_incident(incident.id)?;
                let due = last.is_none_or(|t| (now - t).to_std().unwrap_or_default() >= cooldown);
                if due {
                    self.act(w, incident, now, false).await;
                }
            }
        }
        Ok(())
    }

    /// A log watch's or an alert's incident changed: analyse an opening. (Log watches start
    /// no playbooks; alerts start theirs through [`Self::on_alert`].)
    pub async fn on_change(&self, change: &Change, now: DateTime<Utc>) {
        if let Change::Opened(incident) = change {
            self.analyse(incident.id, now).await;
        }
    }

    /// Start the playbooks whose `alert` triggers match a firing alert; their runs belong to
    /// the alert's incident. Returns the ids of the runs started.
    pub async fn on_alert(
        &self,
        labels: &BTreeMap<String, String>,
        incident_id: Option<i64>,
        now: DateTime<Utc>,
    ) -> Vec<i64> {
        let Some(rem) = &self.remediation else { return Vec::new() };
        if let Some(id) = incident_id {
            match self.store.get_incident(id) {
                Ok(Some(incident)) if self.held_by_silence(&incident, now) => return Vec::new(),
                Ok(_) => {}
                Err(e) => tracing::error!(incident = id, error = %e, "reading the alert's incident"),
            }
        }
        rem.on_alert(labels, incident_id, now).await.into_iter().map(|r| r.id).collect()
    }

    /// Whether a silence holds back actions on `incident` now (recorded in its history).
    fn held_by_silence(&self, incident: &Incident, now: DateTime<Utc>) -> bool {
        match crate::incident::silence::check(&self.store, incident, now) {
            Some(silence) => {
                tracing::info!(incident = incident.id, silence, "no playbook started: the incident is silenced");
                true
            }
            None => false,
        }
    }

    async fn analyse(&self, incident_id: i64, now: DateTime<Utc>) {
        match &self.analysis {
            AnalysisMode::Off => {}
            AnalysisMode::Inline(a) => {
                if let Err(e) = a.analyze(incident_id, now).await {
                    tracing::error!(incident = incident_id, error = %e, "analysing the incident");
                }
            }
            AnalysisMode::Queued(tx) => match tx.try_send((incident_id, now)) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::warn!(
                        incident = incident_id,
                        capacity = ANALYSIS_QUEUE,
                        "the analysis queue is full: incident not analysed"
                    );
                    self.metrics.queue_dropped.get_or_create(&QueueLabel { queue: "analysis".into() }).inc();
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    tracing::warn!(incident = incident_id, "the analysis worker has stopped: incident not analysed");
                }
            },
        }
    }

    /// Start the watch's playbook (and, on an opening, playbooks whose incident triggers
    /// match). The run records itself, its guards' decisions and its outcome.
    async fn act(&self, w: &WatchConfig, incident: &Incident, now: DateTime<Utc>, opened: bool) {
        let Some(rem) = self.remediation.clone() else { return };
        if self.held_by_silence(incident, now) {
            return;
        }
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
                    tracing::debug!(incident = iid, "the incident's previous runs are still starting");
                }
            }
            None => work.await,
        }
    }
}
