//! How the demo prints its timeline: one line per event, wrapped, with the replica count.

use super::*;

/// Split text into lines of at most `width` characters, at spaces.
pub(super) fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut cur = String::new();
    for word in text.split_whitespace() {
        if !cur.is_empty() && cur.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(word);
    }
    if !cur.is_empty() {
        lines.push(cur);
    }
    lines
}

pub(super) fn hhmm(t: DateTime<Utc>) -> String {
    t.format("%H:%M:%S").to_string()
}

pub(super) fn fmt(v: Option<f64>) -> String {
    v.map(|x| format!("{:.0} ms", x * 1000.0)).unwrap_or_else(|| "-".into())
}

pub(super) struct Printer<W: Write> {
    pub(super) out: W,
    /// Print every evaluation, not only changes and one every ten minutes.
    pub(super) all: bool,
    /// JSON Lines: every timeline event as one object tagged by `kind` (the filters of the
    /// text timeline do not apply), plus the demo's own `start`, `approved`, `error` and
    /// `summary` objects.
    pub(super) json: bool,
    pub(super) last_ok_print: Option<DateTime<Utc>>,
    /// The watch whose every change is printed with its latency and replicas.
    pub(super) main_watch: String,
    /// Last printed state per (watch, target) of the other watches.
    pub(super) states: BTreeMap<(String, String), String>,
    /// Last printed "no data" reason per watch, so an outage prints once per watch.
    pub(super) no_data: BTreeMap<String, String>,
}

impl<W: Write> Printer<W> {
    pub(super) fn line(&mut self, at: DateTime<Utc>, what: &str, text: &str) -> std::io::Result<()> {
        writeln!(self.out, "{}  {:<10} {}", hhmm(at), what, text)
    }

    pub(super) fn json_line(&mut self, value: &impl serde::Serialize) -> std::io::Result<()> {
        serde_json::to_writer(&mut self.out, value)?;
        writeln!(self.out)
    }

    /// The simulated on-call engineer approved run `run`.
    pub(super) fn approved(&mut self, at: DateTime<Utc>, run: i64, by: &str) -> std::io::Result<()> {
        if self.json {
            return self.json_line(&serde_json::json!({"kind": "approved", "at": at, "run_id": run, "by": by}));
        }
        self.line(at, "approve", &format!("run {run} approved by {by} (`warden approve {run}`)"))
    }

    pub(super) fn error(&mut self, at: DateTime<Utc>, error: &str) -> std::io::Result<()> {
        if self.json {
            return self.json_line(&serde_json::json!({"kind": "error", "at": at, "error": error}));
        }
        writeln!(self.out, "{error}")
    }

    pub(super) fn event(&mut self, ev: TimelineEvent, replicas: i32) -> std::io::Result<()> {
        if self.json {
            let mut v = serde_json::to_value(&ev)?;
            if let Some(o) = v.as_object_mut() {
                o.insert("replicas".into(), replicas.into());
            }
            return self.json_line(&v);
        }
        match ev {
            TimelineEvent::Evaluated { at, watch, target, value, expected, state, note } => {
                self.no_data.remove(&watch);
                if watch != self.main_watch {
                    // The other watches: only when a series turns anomalous and when it
                    // stops being so (every evaluation with --all-evaluations).
                    let key = (watch.clone(), target.clone());
                    let was = self.states.insert(key, state.clone());
                    let turned = (state == "anomalous") != (was.as_deref() == Some("anomalous"));
                    if self.all || turned {
                        let why = note.map(|n| format!("\n{:>22}{n}", "")).unwrap_or_default();
                        self.line(at, "evaluate", &format!("{watch} {target}: {state}{why}"))?;
                    }
                    return Ok(());
                }
                let interesting = state != "normal" || self.all;
                let periodic = self.last_ok_print.is_none_or(|t| at - t >= ChronoDuration::minutes(10));
                if interesting || periodic {
                    self.last_ok_print = Some(at);
                    let text = format!(
                        "{target} p95 {} (expected {}), {replicas} replicas: {state}",
                        fmt(Some(value)),
                        fmt(expected)
                    );
                    self.line(at, "evaluate", &text)?;
                }
                Ok(())
            }
            TimelineEvent::NoData { at, watch, reason } => {
                if self.no_data.get(&watch) == Some(&reason) {
                    return Ok(());
                }
                self.no_data.insert(watch.clone(), reason.clone());
                self.line(at, "no data", &format!("{watch}: {reason}; nothing opened, resolved or acted on"))
            }
            TimelineEvent::IncidentOpened { at, incident_id, title } => {
                self.line(at, "INCIDENT", &format!("#{incident_id} opened: {title}"))
            }
            TimelineEvent::IncidentUpdated { .. } => Ok(()),
            TimelineEvent::Run { at, text, status, .. } => {
                let what = match status.as_str() {
                    "succeeded" => "ACTION",
                    "awaiting_approval" => "APPROVAL",
                    "reverting" | "reverted" | "revert_failed" => "REVERT",
                    "failed" => "FAILED",
                    _ => "run",
                };
                self.line(at, what, &text)
            }
            TimelineEvent::Analysed { at, incident_id, top, summary, written_by, revision, revised_because } => {
                let revised = match (revision, revised_because) {
                    (0, _) => String::new(),
                    (_, Some(why)) => format!(" (revised after {why})"),
                    (n, None) => format!(" (revision {n})"),
                };
                self.line(at, "CAUSE", &format!("#{incident_id}: probable cause {top}{revised}"))?;
                for chunk in wrap(&summary, 92) {
                    writeln!(self.out, "{:>22}{chunk}", "")?;
                }
                for chunk in wrap(&format!("({written_by})"), 92) {
                    writeln!(self.out, "{:>22}{chunk}", "")?;
                }
                Ok(())
            }
            TimelineEvent::IncidentResolved { at, incident_id, title } => {
                self.line(at, "RESOLVED", &format!("#{incident_id}: {title}"))
            }
            TimelineEvent::NotificationDelivered { at, channel, subject, .. } => {
                self.line(at, "notify", &format!("{channel}: {subject}"))
            }
            TimelineEvent::NotificationFailed { at, channel, error, .. } => {
                self.line(at, "notify", &format!("{channel} failed, will retry: {error}"))
            }
            TimelineEvent::NotificationDeadLettered { at, channel, reason, .. } => {
                self.line(at, "notify", &format!("{channel} dead-lettered: {reason}"))
            }
        }
    }
}
