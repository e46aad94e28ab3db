//! Playbooks in the agent: what starts runs, and where their outcome goes.
//!
//! The playbooks crate decides and runs; this module connects it to the rest of Warden:
//! incidents of watches with an `action`, firing Alertmanager alerts and cron schedules start
//! runs; the run store is the SQLite store; `verify` reads the same metric source as the
//! watches; what runs do becomes incident events and Slack/e-mail notifications.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use warden_playbooks::engine::{
    Engine as RunEngine, HttpCall, HttpReply, Notice, Notices, StartRequest, Webhook, WebhookError,
};
use warden_playbooks::guards::GuardSettings;
use warden_playbooks::load::Catalog;
use warden_playbooks::run::{Run, RunStatus, StepStatus, Target, TriggerInfo};
use warden_playbooks::schedule::CronSchedule;
use warden_playbooks::spec::{Arg, Autonomy, Guards, Playbook, ScaleStep, Step, TargetKind, Trigger};
use warden_playbooks::template::Vars;
use warden_playbooks::Cluster;

use crate::config::{Config, WatchConfig};
use crate::incident::identity::{alert_name, alert_target, alert_watch, run_target};
use crate::ingest::source::MetricSource;
use crate::notify::render::render_approval_request;
use crate::notify::{render, NotifyEvent};
use crate::store::{Incident, Store};
use crate::timeline::{Timeline, TimelineEvent};

/// `http` steps through `warden_connectors::webhook` (no shell, no redirects to other hosts).
pub struct HttpWebhook {
    client: warden_connectors::webhook::WebhookClient,
}

impl HttpWebhook {
    pub fn new() -> Result<Self, String> {
        Ok(Self { client: warden_connectors::webhook::WebhookClient::new().map_err(|e| e.to_string())? })
    }
}

#[async_trait]
impl Webhook for HttpWebhook {
    async fn call(&self, call: &HttpCall) -> Result<HttpReply, WebhookError> {
        // A stored plan's number: kept within what a request may take (NaN: the default).
        let timeout =
            Duration::try_from_secs_f64(call.timeout_secs.clamp(0.1, 86_400.0)).unwrap_or(Duration::from_secs(10));
        match self.client.call(&call.method, &call.url, &call.headers, call.body.as_ref(), timeout).await {
            Ok(reply) => Ok(HttpReply { status: reply.status, body: reply.body }),
            Err(e) => {
                // Only a request that was never sent proves the receiver got nothing.
                let message = format!("{} {}: {e}", call.method, call.url);
                let err = if warden_connectors::webhook::may_have_been_sent(&e) {
                    WebhookError::sent(message)
                } else {
                    WebhookError::not_sent(message)
                };
                Err(err.with_source(e))
            }
        }
    }
}

/// Run notices become incident events and notifications (for runs of an incident), timeline
/// events and log lines (for all).
pub struct RunNotices {
    pub store: Arc<Store>,
    pub channels: crate::notify::Routes,
    pub outbox_wake: Arc<tokio::sync::Notify>,
    pub timeline: Timeline,
    /// Where a run that ends marks its incident's analysis out of date.
    pub late: Arc<crate::analysis::LateEvidence>,
}

impl Notices for RunNotices {
    fn notice(&self, run: &Run, kind: Notice, text: &str) {
        let at = run.updated_at;
        tracing::info!(run = run.id, playbook = %run.playbook, status = %run.status, "{text}");
        self.timeline.emit(TimelineEvent::Run {
            at,
            run_id: run.id,
            incident_id: run.incident_id(),
            status: run.status.to_string(),
            text: text.to_string(),
        });
        let Some(iid) = run.incident_id() else {
            self.notice_without_incident(run, kind, text);
            return;
        };
        // What a run did (or failed to do) is evidence the incident's analysis should tell.
        if kind == Notice::Finished
            && matches!(
                run.status,
                RunStatus::Succeeded | RunStatus::Failed | RunStatus::Reverted | RunStatus::RevertFailed
            )
        {
            self.late.note(iid, format!("run {} ({}) {}", run.id, run.playbook, run.status), at);
        }
        let incident = match self.store.get_incident(iid) {
            Ok(Some(i)) => i,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(incident = iid, error = %e, "reading the incident of a run");
                return;
            }
        };
        let (event_kind, notify_text) = match kind {
            Notice::ApprovalRequested => ("run_awaiting_approval", Some(text.to_string())),
            Notice::Message => ("run_message", Some(text.to_string())),
            Notice::Reverting => ("run_reverting", Some(text.to_string())),
            Notice::Finished => match run.status {
                RunStatus::Succeeded if !run.summary().is_empty() => ("run_succeeded", Some(run.summary())),
                RunStatus::Succeeded => ("run_succeeded", None),
                RunStatus::Refused => ("run_refused", None),
                RunStatus::Observed => ("run_observed", None),
                s => (status_event(s), Some(text.to_string())),
            },
        };
        let history = self.store.action_history(iid);
        let notes = match (&notify_text, kind, &run.approval) {
            // The Slack app's copy of an approval request carries Approve / Deny buttons.
            (Some(t), Notice::ApprovalRequested, Some(a)) => {
                let at = a.requested_at.timestamp_millis();
                render_approval_request(&incident, run.id, at, t, &history, &self.channels.for_incident(&incident))
            }
            (Some(t), _, _) => {
                render(NotifyEvent::Action, &incident, Some(t), &history, &self.channels.for_incident(&incident))
            }
            (None, _, _) => Vec::new(),
        };
        let detail = json!({"run_id": run.id, "playbook": run.playbook, "status": run.status, "text": text, "refusal": run.refusal});
        if let Err(e) = self.store.add_event(iid, at, event_kind, &detail, &notes) {
            tracing::error!(incident = iid, error = %e, "recording a run event");
        }
        if !notes.is_empty() {
            self.outbox_wake.notify_one();
        }
    }
}

impl RunNotices {
    /// A run of no incident (by hand, by a schedule): its `notify` messages, approval
    /// requests and an ending that is not plain success reach every channel but the paging
    /// ones; a success is only logged (it said what it did through its `notify` steps).
    fn notice_without_incident(&self, run: &Run, kind: Notice, text: &str) {
        let worth_telling = match kind {
            Notice::Message | Notice::ApprovalRequested | Notice::Reverting => true,
            Notice::Finished => !matches!(run.status, RunStatus::Succeeded | RunStatus::Observed | RunStatus::Refused),
        };
        if !worth_telling {
            return;
        }
        let notes = crate::notify::render::render_run_notice(
            run.id,
            &run.playbook,
            run.status.as_str(),
            text,
            self.channels.all(),
        );
        if notes.is_empty() {
            return;
        }
        match self.store.enqueue(&notes, run.updated_at) {
            Ok(()) => self.outbox_wake.notify_one(),
            Err(e) => tracing::error!(run = run.id, error = %e, "queueing a run's notification"),
        }
    }
}

fn status_event(s: RunStatus) -> &'static str {
    match s {
        RunStatus::Failed => "run_failed",
        RunStatus::Reverted => "run_reverted",
        RunStatus::RevertFailed => "run_revert_failed",
        RunStatus::Denied => "run_denied",
        RunStatus::Expired => "run_expired",
        _ => "run_finished",
    }
}

/// The actions of runs, one row per step that acts (or was refused), in the shape of
/// `GET /api/v1/actions`.
pub fn actions_view(runs: &[Run]) -> Vec<Value> {
    let mut out = Vec::new();
    for r in runs {
        let target = r.target.as_ref();
        let mut listed = false;
        for s in r.steps.iter().chain(&r.revert_steps) {
            if !warden_playbooks::actions::is_mutating(&s.action) {
                continue;
            }
            let status = match (s.status, &s.refusal) {
                (StepStatus::Done, _) => "succeeded",
                (StepStatus::Failed, Some(_)) => "refused",
                (StepStatus::Failed, None) => "failed",
                (StepStatus::Running | StepStatus::Waiting, _) => "pending",
                _ => continue,
            };
            listed = true;
            let plan = s.plan.clone().unwrap_or(Value::Null);
            out.push(json!({
                "run_id": r.id, "step": s.name, "phase": s.phase, "kind": s.action, "playbook": r.playbook,
                "incident_id": r.incident_id(),
                "namespace": target.map(|t| t.namespace.clone()), "deployment": target.map(|t| t.name.clone()),
                "from_replicas": plan.get("from"), "to_replicas": plan.get("to"),
                "dry_run": r.dry_run, "status": status,
                "reason": s.refusal.as_ref().map(|x| x.to_string()).or_else(|| s.error.clone()).or_else(|| r.trigger.detail.get("reason").and_then(Value::as_str).map(str::to_string)),
                "guard": s.refusal.as_ref().map(|x| x.guard),
                "summary": s.result.as_ref().and_then(|x| x.get("summary")).cloned(),
                "created_at": s.started_at.unwrap_or(r.created_at), "finished_at": s.finished_at,
            }));
        }
        if !listed && r.status == RunStatus::Refused {
            if let Some(refusal) = &r.refusal {
                out.push(json!({
                    "run_id": r.id, "kind": r.steps.first().map(|s| s.action.clone()), "playbook": r.playbook,
                    "incident_id": r.incident_id(),
                    "namespace": target.map(|t| t.namespace.clone()), "deployment": target.map(|t| t.name.clone()),
                    "from_replicas": null, "to_replicas": null, "dry_run": r.dry_run, "status": "refused",
                    "reason": refusal.to_string(), "guard": refusal.guard, "created_at": r.created_at,
                }));
            }
        }
    }
    out
}

/// The agent's playbook runner: the run engine, the catalog and the triggers.
pub struct Remediation {
    pub runs: RunEngine,
    pub catalog: Catalog,
    pub config: Arc<Config>,
}

impl Remediation {
    pub fn new(
        config: Arc<Config>,
        store: Arc<Store>,
        source: Option<Arc<dyn MetricSource>>,
        cluster: Option<Arc<dyn Cluster>>,
        notices: Arc<dyn Notices>,
    ) -> Result<Self, String> {
        let catalog = Catalog::load(config.playbooks.dir.as_deref()).map_err(|e| e.to_string())?;
        let webhook: Option<Arc<dyn Webhook>> = match HttpWebhook::new() {
            Ok(w) => Some(Arc::new(w)),
            Err(e) => {
                tracing::warn!(error = %e, "http steps are unavailable");
                None
            }
        };
        let runs = RunEngine {
            cluster,
            metrics: source,
            webhook,
            notices,
            store,
            defaults: GuardSettings::default().overlay(&config.playbooks.guards),
            retry: warden_playbooks::policy::RetryPolicy::default(),
            fencing: None,
        };
        Ok(Self { runs, catalog, config })
    }

    /// The playbook and parameters a watch's `action` runs: a named playbook, or the
    /// one-step scale playbook its `scale` shorthand stands for.
    pub fn watch_playbook(&self, w: &WatchConfig) -> Option<(Playbook, BTreeMap<String, String>)> {
        let a = w.action.as_ref()?;
        if let Some(name) = &a.playbook {
            let mut pb = self.catalog.get(name)?.clone();
            if let Some(c) = a.cooldown {
                pb.guards.cooldown = Some(c);
            }
            if let Some(d) = a.dry_run {
                pb.guards.dry_run = Some(d);
            }
            let params = a.params.iter().map(|(k, v)| (k.clone(), v.to_string())).collect();
            return Some((pb, params));
        }
        let d = &self.config.actions;
        let s = a.scale.clone().unwrap_or_default();
        let step = s.step.unwrap_or(d.scale.step);
        let scale = ScaleStep {
            to: None,
            by: Some(Arg(step.to_string())),
            min: Some(Arg(s.min_replicas.unwrap_or(d.scale.min_replicas).to_string())),
            max: Some(Arg(s.max_replicas.unwrap_or(d.scale.max_replicas).to_string())),
        };
        let pb = Playbook {
            name: "scale".into(),
            description: format!("the scale action of watch {}", w.name),
            target: TargetKind::Deployment,
            params: BTreeMap::new(),
            triggers: Vec::new(),
            guards: Guards {
                // Configuring an action on a watch is the operator's consent to act.
                autonomy: Some(Autonomy::Auto),
                dry_run: Some(a.dry_run.unwrap_or(d.dry_run)),
                cooldown: Some(a.cooldown.unwrap_or(d.cooldown)),
                // The replica bounds limit repeated steps; attempts are not capped further.
                max_attempts: Some(1000),
                ..Guards::default()
            },
            steps: vec![Step { name: Some("scale".into()), scale: Some(scale), ..Step::default() }],
            revert: None,
        };
        Some((pb, BTreeMap::new()))
    }

    /// The cooldown between runs for one incident of a watch.
    pub fn watch_cooldown(&self, w: &WatchConfig) -> Duration {
        match self.watch_playbook(w) {
            Some((pb, _)) => self.runs.defaults.overlay(&pb.guards).cooldown,
            None => Duration::ZERO,
        }
    }

    /// Start the watch's playbook for an incident.
    pub async fn on_incident(&self, w: &WatchConfig, incident: &Incident, now: DateTime<Utc>) -> Option<Run> {
        let (pb, params) = self.watch_playbook(w)?;
        let target = incident.target.as_ref().map(run_target);
        let reason = format!(
            "{} observed {} (expected {})",
            w.name,
            incident.observed.map(warden_models::format_value).unwrap_or_else(|| "-".into()),
            incident.expected.map(warden_models::format_value).unwrap_or_else(|| "-".into())
        );
        let req = StartRequest {
            playbook: pb,
            params,
            target,
            trigger: TriggerInfo {
                kind: "incident".into(),
                actor: format!("watch/{}", w.name),
                incident_id: Some(incident.id),
                detail: json!({"reason": reason, "watch": w.name}),
            },
            vars: incident_vars(incident),
            // Only anomalous evaluations with data reach here; the guard is kept regardless.
            has_data: Some(incident.observed.is_some_and(f64::is_finite)),
            dry_run: false,
            now,
        };
        self.start_logged(req).await
    }

    /// Start playbooks whose triggers match an incident opened by a watch (playbook files
    /// with `incident` triggers).
    pub async fn on_incident_triggers(&self, w: &WatchConfig, incident: &Incident, now: DateTime<Utc>) -> Vec<Run> {
        let mut out = Vec::new();
        for pb in self.catalog.iter().map(|e| &e.playbook) {
            for t in &pb.triggers {
                let Trigger::Incident(m) = t else { continue };
                if m.watch.as_ref().is_some_and(|x| x != &w.name)
                    || m.detector.as_ref().is_some_and(|d| Some(d) != incident.detector.as_ref())
                    || (!m.severity.is_empty() && !m.severity.contains(&incident.severity))
                    || m.labels.iter().any(|(k, v)| incident.labels.get(k) != Some(v))
                {
                    continue;
                }
                let target = incident.target.as_ref().map(run_target);
                let vars = incident_vars(incident);
                let Some(params) = render_params(&pb.name, &m.params, &vars) else { continue };
                let req = StartRequest {
                    playbook: pb.clone(),
                    params,
                    target: if pb.target == TargetKind::Deployment { target } else { None },
                    trigger: TriggerInfo {
                        kind: "incident".into(),
                        actor: format!("watch/{}", w.name),
                        incident_id: Some(incident.id),
                        detail: json!({"watch": w.name}),
                    },
                    vars,
                    has_data: Some(incident.observed.is_some_and(f64::is_finite)),
                    dry_run: false,
                    now,
                };
                if let Some(r) = self.start_logged(req).await {
                    out.push(r);
                }
            }
        }
        out
    }

    /// Start playbooks whose `alert` triggers match a firing alert.
    pub async fn on_alert(
        &self,
        labels: &BTreeMap<String, String>,
        incident_id: Option<i64>,
        now: DateTime<Utc>,
    ) -> Vec<Run> {
        let mut out = Vec::new();
        for pb in self.catalog.iter().map(|e| &e.playbook) {
            for t in &pb.triggers {
                let Trigger::Alert(m) = t else { continue };
                if m.labels.iter().any(|(k, v)| labels.get(k) != Some(v)) {
                    continue;
                }
                let target = match pb.target {
                    TargetKind::Deployment => match alert_target(labels) {
                        Some(t) => Some(run_target(&t)),
                        None => {
                            tracing::warn!(playbook = %pb.name, "alert matched but carries no namespace/deployment labels");
                            continue;
                        }
                    },
                    TargetKind::Node => match labels.get("node") {
                        Some(n) => Some(Target::node(n.clone())),
                        None => continue,
                    },
                    TargetKind::None => None,
                };
                let mut vars = Vars::new();
                vars.set("alert.name", alert_name(labels).to_string());
                for (k, v) in labels {
                    vars.set(format!("alert.labels.{k}"), v.clone());
                }
                let Some(params) = render_params(&pb.name, &m.params, &vars) else { continue };
                let req = StartRequest {
                    playbook: pb.clone(),
                    params,
                    target,
                    trigger: TriggerInfo {
                        kind: "alert".into(),
                        actor: alert_watch(labels),
                        incident_id,
                        detail: json!({"labels": labels}),
                    },
                    vars,
                    has_data: None,
                    dry_run: false,
                    now,
                };
                if let Some(r) = self.start_logged(req).await {
                    out.push(r);
                }
            }
        }
        out
    }

    /// Start the playbooks whose cron schedule fired in `(last, now]` (a missed stretch
    /// fires once).
    pub async fn on_clock(&self, last: DateTime<Utc>, now: DateTime<Utc>) -> Vec<Run> {
        let mut out = Vec::new();
        for pb in self.catalog.iter().map(|e| &e.playbook) {
            for t in &pb.triggers {
                let Trigger::Cron(c) = t else { continue };
                let schedule = match CronSchedule::parse(&c.schedule, c.timezone.as_deref()) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!(playbook = %pb.name, error = %e, "cron trigger");
                        continue;
                    }
                };
                let Some(fired) = schedule.due(last, now) else { continue };
                let target = match (&c.target, pb.target) {
                    (Some(t), kind) if kind != TargetKind::None => match Target::parse(kind, t) {
                        Ok(t) => Some(t),
                        Err(e) => {
                            tracing::error!(playbook = %pb.name, error = %e, "cron trigger target");
                            continue;
                        }
                    },
                    _ => None,
                };
                let req = StartRequest {
                    playbook: pb.clone(),
                    params: c.params.iter().map(|(k, v)| (k.clone(), v.to_string())).collect(),
                    target,
                    trigger: TriggerInfo {
                        kind: "cron".into(),
                        actor: format!("cron/{}", pb.name),
                        incident_id: None,
                        detail: json!({"schedule": c.schedule, "timezone": c.timezone, "fired_at": fired}),
                    },
                    vars: Vars::new(),
                    has_data: None,
                    dry_run: false,
                    now,
                };
                if let Some(r) = self.start_logged(req).await {
                    out.push(r);
                }
            }
        }
        out
    }

    async fn start_logged(&self, req: StartRequest) -> Option<Run> {
        let name = req.playbook.name.clone();
        match self.runs.start(req).await {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::error!(playbook = %name, error = %e, "the playbook did not start");
                None
            }
        }
    }
}

/// Trigger parameters rendered with the trigger's variables (`{{ incident.labels.pod }}`).
fn render_params(playbook: &str, params: &BTreeMap<String, Arg>, vars: &Vars) -> Option<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for (k, v) in params {
        match warden_playbooks::template::render(v.as_str(), vars) {
            Ok(text) => {
                out.insert(k.clone(), text);
            }
            Err(e) => {
                tracing::error!(playbook, param = %k, error = %e, "trigger parameter");
                return None;
            }
        }
    }
    Some(out)
}

fn incident_vars(i: &Incident) -> Vars {
    let mut v = Vars::new();
    v.set("incident.id", i.id.to_string());
    v.set("incident.watch", i.watch.clone());
    v.set("incident.title", i.title.clone());
    v.set("incident.severity", i.severity.clone());
    v.set("incident.detector", i.detector.clone().unwrap_or_default());
    v.set("incident.observed", i.observed.map(warden_models::format_value).unwrap_or_default());
    v.set("incident.expected", i.expected.map(warden_models::format_value).unwrap_or_default());
    for (k, val) in &i.labels {
        v.set(format!("incident.labels.{k}"), val.clone());
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_of_no_incident_tells_the_channels_what_it_says_and_how_it_failed() {
        let store = Arc::new(Store::open_in_memory().expect("store"));
        let notices = RunNotices {
            store: store.clone(),
            channels: crate::notify::Routes::to_all(vec!["file", "pagerduty"]),
            outbox_wake: Arc::new(tokio::sync::Notify::new()),
            timeline: Timeline::default(),
            late: Arc::default(),
        };
        let mut run = crate::store::runs::tests::run();
        run.id = 4;
        notices.notice(&run, Notice::Message, "nightly retraining started");
        run.status = RunStatus::Succeeded;
        notices.notice(&run, Notice::Finished, "run 4 succeeded");
        run.status = RunStatus::Failed;
        notices.notice(&run, Notice::Finished, "run 4 failed: the Job failed");
        let file = store.pending_messages("file").expect("file");
        let subjects: Vec<&str> = file.iter().map(|m| m.subject.as_str()).collect();
        assert_eq!(
            subjects,
            [
                "[warden] RUN 4 (p) running: nightly retraining started",
                "[warden] RUN 4 (p) failed: run 4 failed: the Job failed"
            ]
        );
        assert!(file.iter().all(|m| m.incident_id.is_none()));
        assert!(store.pending_messages("pagerduty").expect("pd").is_empty(), "paging receivers are about incidents");
    }
}
