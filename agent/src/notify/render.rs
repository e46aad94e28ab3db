//! Slack Block Kit, email (text + HTML) and file payloads for incident events, for
//! digests (a flood of messages sent as one) and for dead-letter notices; the alerting
//! receivers' payloads (PagerDuty, Opsgenie, Teams, the signed webhook) are in
//! [`receivers`](super::receivers).
//!
//! Payloads are rendered within the receivers' limits where the text is ours (Slack's
//! header is cut to 150 characters, digest lines are chunked into sections); the
//! connectors enforce the limits again on whatever is sent (`fit_block_kit`, the
//! e-mail subject), so a stored payload from an older version is sent valid too.

use serde_json::{json, Value};
use warden_models::{format_value, template_summary, IncidentFacts};

use super::receivers;
use crate::analysis::record::Analysis;
use crate::store::{Incident, NewNotification};

/// What happened to the incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyEvent {
    Opened,
    Action,
    Resolved,
    Analysis,
    /// Someone took the incident on (PagerDuty and Opsgenie acknowledge their alert).
    Acknowledged,
}

impl NotifyEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyEvent::Opened => "opened",
            NotifyEvent::Action => "action",
            NotifyEvent::Resolved => "resolved",
            NotifyEvent::Analysis => "analysis",
            NotifyEvent::Acknowledged => "acknowledged",
        }
    }
    fn word(self) -> &'static str {
        match self {
            NotifyEvent::Opened => "OPENED",
            NotifyEvent::Action => "ACTION",
            NotifyEvent::Resolved => "RESOLVED",
            NotifyEvent::Analysis => "ANALYSIS",
            NotifyEvent::Acknowledged => "ACKNOWLEDGED",
        }
    }
}

/// The Deployment acted on, or else the series' labels (`pod=..,namespace=..`).
fn target(i: &Incident) -> String {
    if let Some(t) = &i.target {
        return format!("{}/{}", t.namespace, t.deployment);
    }
    let labels: Vec<String> =
        i.labels.iter().filter(|(k, _)| k.as_str() != "__name__").map(|(k, v)| format!("{k}={v}")).collect();
    if labels.is_empty() {
        "-".into()
    } else {
        labels.join(",")
    }
}

fn opt(v: Option<f64>) -> String {
    v.map(format_value).unwrap_or_else(|| "-".into())
}

fn expected_text(i: &Incident) -> String {
    match (i.expected, i.lower, i.upper) {
        (Some(e), Some(l), Some(u)) => format!("{} (band {} to {})", format_value(e), format_value(l), format_value(u)),
        (e, _, _) => opt(e),
    }
}

/// The subject line, shared by every channel.
pub fn subject(event: NotifyEvent, i: &Incident) -> String {
    format!("[warden] {} {} {} {}", event.word(), i.severity, i.watch, target(i))
}

/// Render one event for each configured channel (`slack`, `slack_app`, `email`, `file`,
/// `pagerduty`, `opsgenie`, `teams`, `webhook`). `action` describes the action in words
/// when the event is one. A channel with nothing to say about the event (PagerDuty and
/// an action) gets no message.
pub fn render(
    event: NotifyEvent,
    i: &Incident,
    action: Option<&str>,
    actions_so_far: &[String],
    channels: &[&str],
) -> Vec<NewNotification> {
    let subject = subject(event, i);
    let facts = IncidentFacts {
        watch: i.watch.clone(),
        severity: i.severity.clone(),
        target: i.target.as_ref().map(|t| format!("{}/{}", t.namespace, t.deployment)),
        observed: i.observed,
        expected: i.expected,
        lower: i.lower,
        upper: i.upper,
        strength: None,
        detector: i.detector.clone(),
        opened_at: i.opened_at.to_rfc3339(),
        actions: actions_so_far.to_vec(),
    };
    let summary = template_summary(&facts).unwrap_or_else(|e| e.to_string());
    let action_text = action.map(str::to_string).unwrap_or_else(|| match actions_so_far.last() {
        Some(a) => a.clone(),
        None => "none".into(),
    });
    let headline = match event {
        NotifyEvent::Opened => format!("Incident #{} opened: {}", i.id, i.title),
        NotifyEvent::Action => format!("Action on incident #{}: {}", i.id, action_text),
        NotifyEvent::Resolved => format!("Incident #{} resolved: {}", i.id, i.title),
        NotifyEvent::Analysis => format!("Incident #{} analysed: {}", i.id, i.title),
        NotifyEvent::Acknowledged => format!("Incident #{} acknowledged: {}", i.id, i.title),
    };
    let resolved = i.resolved_at.map(|t| t.to_rfc3339());

    channels
        .iter()
        .filter_map(|ch| {
            let payload = match *ch {
                "slack" | "slack_app" => slack(&subject, &headline, i, &action_text, &summary, resolved.as_deref()),
                "email" => email(&subject, &headline, i, &action_text, &summary, resolved.as_deref()),
                "pagerduty" => receivers::pagerduty(event, i, &subject, &summary)?,
                "opsgenie" => receivers::opsgenie(event, i, &subject, &summary, &action_text),
                "teams" => receivers::teams(
                    &subject,
                    &headline,
                    &receivers::teams_facts(i, &action_text, expected_text(i)),
                    std::slice::from_ref(&summary),
                ),
                _ => json!({
                    "event": event.as_str(),
                    "incident_id": i.id,
                    "fingerprint": i.fingerprint,
                    "watch": i.watch,
                    "severity": i.severity,
                    "target": i.target,
                    "subject": subject,
                    "headline": headline,
                    "observed": i.observed,
                    "expected": i.expected,
                    "action": action,
                    "summary": summary,
                    "opened_at": i.opened_at.to_rfc3339(),
                    "resolved_at": resolved,
                }),
            };
            Some(NewNotification { channel: ch.to_string(), event: event.as_str().into(), payload, group: None })
        })
        .collect::<Vec<_>>()
        .with_incident_buttons(i)
}

trait IncidentButtons {
    /// The Slack app's message of an open incident carries Acknowledge, Resolve and
    /// Silence 1h buttons, whichever event it shows (the app edits one message).
    fn with_incident_buttons(self, i: &Incident) -> Self;
}

impl IncidentButtons for Vec<NewNotification> {
    fn with_incident_buttons(mut self, i: &Incident) -> Self {
        if i.status == "open" {
            for n in self.iter_mut().filter(|n| n.channel == "slack_app") {
                if let Some(blocks) = n.payload.get_mut("blocks").and_then(Value::as_array_mut) {
                    blocks.push(warden_connectors::slack_app::incident_buttons(i.id));
                }
            }
        }
        self
    }
}

/// An approval request for run `run_id` of incident `i`, requested at `requested_at_ms`
/// (Unix milliseconds): the `action` event with `text`, and on the Slack app's message
/// Approve / Deny buttons that name both (the other channels name the CLI and API ways in
/// `text`).
pub fn render_approval_request(
    i: &Incident,
    run_id: i64,
    requested_at_ms: i64,
    text: &str,
    actions_so_far: &[String],
    channels: &[&str],
) -> Vec<NewNotification> {
    let mut notes = render(NotifyEvent::Action, i, Some(text), actions_so_far, channels);
    for n in notes.iter_mut().filter(|n| n.channel == "slack_app") {
        if let Some(blocks) = n.payload.get_mut("blocks").and_then(Value::as_array_mut) {
            blocks.push(warden_connectors::slack_app::approval_buttons(run_id, requested_at_ms));
        }
    }
    notes
}

/// The probable causes, one line each (`1. shop/checkout (workload, 0.82) [E2, E5]`).
fn ranking_lines(a: &Analysis, max: usize) -> Vec<String> {
    a.ranking
        .candidates
        .iter()
        .take(max)
        .enumerate()
        .map(|(n, c)| {
            let kind =
                serde_json::to_value(c.cause).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
            format!("{}. {} ({kind}, {:.2}) [{}]", n + 1, c.subject.display(), c.score, c.evidence.join(", "))
        })
        .collect()
}

/// Where the summary came from, in words.
fn summary_origin(a: &Analysis) -> String {
    let source =
        serde_json::to_value(a.summary.source).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
    let origin = match (&a.summary.model, &a.summary.fallback_reason) {
        (Some(m), None) => format!("summary: {source} ({m}), grounded in the cited evidence"),
        (_, Some(r)) => format!("summary: {source} ({r})"),
        (None, None) => format!("summary: {source}"),
    };
    match &a.revised_because {
        Some(why) if a.revision > 0 => format!("{origin}; revision {}, after {why}", a.revision),
        _ => origin,
    }
}

/// Render an incident's root-cause analysis: the summary, the top candidates and where the
/// summary came from. The summary is model text: escaped like any untrusted text.
pub fn render_analysis(i: &Incident, a: &Analysis, channels: &[&str]) -> Vec<NewNotification> {
    let subject = subject(NotifyEvent::Analysis, i);
    let top =
        a.ranking.candidates.first().map(|c| c.subject.display()).unwrap_or_else(|| "no probable cause ranked".into());
    let headline = format!("Incident #{}: probable cause {top}", i.id);
    let causes = ranking_lines(a, 3);
    let origin = summary_origin(a);
    channels
        .iter()
        .filter_map(|ch| {
            let payload = match *ch {
                // PagerDuty keeps the alert as it was triggered.
                "pagerduty" => return None,
                "opsgenie" => json!({
                    "subject": subject,
                    "request": warden_connectors::opsgenie::AlertRequest::Note {
                        alias: i.fingerprint.clone(),
                        note: format!("{headline}\n\n{}\n\nProbable causes:\n{}\n\n{origin}", a.summary.text, causes.join("\n")),
                    },
                }),
                "teams" => receivers::teams(
                    &subject,
                    &headline,
                    &[],
                    &[a.summary.text.clone(), format!("Probable causes:\n\n{}", causes.join("\n\n")), origin.clone()],
                ),
                "slack" | "slack_app" => {
                    let header: String = headline.chars().take(150).collect();
                    json!({
                        "text": subject,
                        "blocks": [
                            {"type": "header", "text": {"type": "plain_text", "text": header}},
                            {"type": "section", "text": {"type": "mrkdwn", "text": esc(&a.summary.text)}},
                            {"type": "section", "text": {"type": "mrkdwn", "text": format!("*Probable causes*\n{}", esc(&causes.join("\n")))}},
                            {"type": "context", "elements": [{"type": "mrkdwn", "text": format!("incident #{} · {} · {}", i.id, esc(&i.title), esc(&origin))}]}
                        ]
                    })
                }
                "email" => {
                    let text = format!("{headline}\n\n{}\n\nProbable causes:\n{}\n\n{origin}\n", a.summary.text, causes.join("\n"));
                    let items: String = causes.iter().map(|c| format!("<li>{}</li>", html_esc(c))).collect();
                    let html = format!(
                        "<h2>{}</h2>\n<p>{}</p>\n<h3>Probable causes</h3>\n<ol>{items}</ol>\n<p><small>{}</small></p>\n",
                        html_esc(&headline),
                        html_esc(&a.summary.text),
                        html_esc(&origin)
                    );
                    json!({"subject": subject, "text": text, "html": html})
                }
                _ => json!({
                    "event": NotifyEvent::Analysis.as_str(),
                    "incident_id": i.id,
                    "watch": i.watch,
                    "subject": subject,
                    "headline": headline,
                    "summary": a.summary.text,
                    "summary_source": a.summary.source,
                    "ranking": a.ranking.candidates.iter().take(3).map(|c| json!({"subject": c.subject.display(), "cause": c.cause, "score": c.score, "evidence": c.evidence})).collect::<Vec<_>>(),
                }),
            };
            Some(NewNotification { channel: ch.to_string(), event: NotifyEvent::Analysis.as_str().into(), payload, group: None })
        })
        .collect::<Vec<_>>()
        .with_incident_buttons(i)
}

/// The messages of one incident (or one message without an incident) in a digest.
#[derive(Debug, Clone, PartialEq)]
pub struct DigestEntry {
    pub incident_id: Option<i64>,
    /// The events of its messages, oldest first (`opened`, `action`, ...).
    pub events: Vec<String>,
    /// The subject of its latest message.
    pub subject: String,
}

impl DigestEntry {
    /// `#42 (opened, action ×3, resolved): <latest subject>`.
    pub fn line(&self) -> String {
        let mut parts: Vec<(String, usize)> = Vec::new();
        for e in &self.events {
            match parts.last_mut() {
                Some((last, n)) if last == e => *n += 1,
                _ => parts.push((e.clone(), 1)),
            }
        }
        let events: Vec<String> = parts.into_iter().map(|(e, n)| if n > 1 { format!("{e} ×{n}") } else { e }).collect();
        let subject: String = self.subject.chars().take(300).collect();
        match self.incident_id {
            Some(id) => format!("#{id} ({}): {subject}", events.join(", ")),
            None => format!("({}): {subject}", events.join(", ")),
        }
    }
}

/// Characters of digest lines per Slack section (the limit is 3,000).
const DIGEST_SECTION_CHARS: usize = 2_800;
/// Sections of digest lines in one Slack message (the limit is 50 blocks).
const DIGEST_MAX_SECTIONS: usize = 45;
/// Digest lines in one Teams card (a message is limited to 28 KB).
const DIGEST_TEAMS_LINES: usize = 60;

/// One message standing for `messages` queued messages of the `entries` (a flood on
/// `channel`): one line per incident, oldest first.
pub fn render_digest(channel: &str, entries: &[DigestEntry], messages: usize) -> Value {
    let incidents = entries.iter().filter(|e| e.incident_id.is_some()).count();
    let heading = format!("{messages} notifications for {incidents} incident(s)");
    let intro = format!(
        "{messages} notifications were waiting for {channel}; they are sent together. Each incident's messages are in order; \
         `warden outbox list --state digested` and `GET /api/v1/incidents/ID` have them in full."
    );
    render_batch(channel, "digest", &format!("[warden] DIGEST {heading}"), &heading, &intro, entries, messages)
}

/// One message for the `messages` queued messages of group `key` (a route's grouping,
/// [`super::routes`]): one line per incident, oldest first.
pub fn render_group(channel: &str, key: &str, entries: &[DigestEntry], messages: usize) -> Value {
    let incidents = entries.iter().filter(|e| e.incident_id.is_some()).count();
    // `notify.routes[0]{namespace="payments"}`: the labels name the group, else the route.
    let (route, labels) = match key.split_once('{') {
        Some((route, rest)) => (route, rest.strip_suffix('}').unwrap_or(rest)),
        None => (key, ""),
    };
    let name = if labels.is_empty() { route } else { labels };
    let heading = format!("{incidents} incident(s): {name}");
    let intro = format!(
        "{messages} notifications of group {name} ({route}), sent together at the end of its window. Each incident's \
         messages are in order; `GET /api/v1/incidents/ID` has them in full."
    );
    render_batch(channel, "group", &format!("[warden] GROUP {heading}"), &heading, &intro, entries, messages)
}

/// A digest or a group message for `channel`: `heading` over one line per entry.
fn render_batch(
    channel: &str,
    event: &str,
    subject: &str,
    heading: &str,
    intro: &str,
    entries: &[DigestEntry],
    messages: usize,
) -> Value {
    let lines: Vec<String> = entries.iter().map(DigestEntry::line).collect();
    match channel {
        "teams" => {
            let shown: Vec<String> = lines.iter().take(DIGEST_TEAMS_LINES).cloned().collect();
            let mut paragraphs = vec![intro.to_string(), shown.join("\n\n")];
            if lines.len() > shown.len() {
                paragraphs.push(format!("… and {} more incident(s)", lines.len() - shown.len()));
            }
            receivers::teams(subject, heading, &[], &paragraphs)
        }
        "slack" | "slack_app" => {
            let header: String = heading.chars().take(150).collect();
            let mut blocks = vec![
                json!({"type": "header", "text": {"type": "plain_text", "text": header}}),
                json!({"type": "context", "elements": [{"type": "mrkdwn", "text": esc(intro)}]}),
            ];
            let mut sections: Vec<String> = Vec::new();
            let mut chunk = String::new();
            let (mut chunk_lines, mut shown) = (0, 0);
            for line in &lines {
                let line = esc(line);
                if !chunk.is_empty() && chunk.chars().count() + line.chars().count() + 1 > DIGEST_SECTION_CHARS {
                    sections.push(std::mem::take(&mut chunk));
                    shown += std::mem::take(&mut chunk_lines);
                    if sections.len() == DIGEST_MAX_SECTIONS {
                        break;
                    }
                }
                if !chunk.is_empty() {
                    chunk.push('\n');
                }
                chunk.push_str(&line);
                chunk_lines += 1;
            }
            if !chunk.is_empty() && sections.len() < DIGEST_MAX_SECTIONS {
                sections.push(chunk);
                shown += chunk_lines;
            }
            blocks.extend(
                sections.into_iter().map(|text| json!({"type": "section", "text": {"type": "mrkdwn", "text": text}})),
            );
            if shown < lines.len() {
                blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": format!("… and {} more incident(s)", lines.len() - shown)}]}));
            }
            json!({"text": subject, "blocks": blocks})
        }
        "email" => {
            let text = format!("{intro}\n\n{}\n", lines.join("\n"));
            let items: String = lines.iter().map(|l| format!("<li>{}</li>\n", html_esc(l))).collect();
            let html = format!("<p>{}</p>\n<ul>\n{items}</ul>\n", html_esc(intro));
            json!({"subject": subject, "text": text, "html": html})
        }
        _ => json!({
            "event": event,
            "subject": subject,
            "messages": messages,
            "entries": entries.iter().map(|e| json!({"incident_id": e.incident_id, "events": e.events, "subject": e.subject})).collect::<Vec<_>>(),
        }),
    }
}

/// A dead letter, as a notice describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub id: i64,
    pub incident_id: Option<i64>,
    pub event: String,
    pub subject: String,
    pub reason: String,
}

/// Dead letters named one by one in a notice; the rest are counted.
const NOTICE_MAX_ITEMS: usize = 5;

/// Tell the `channels` that messages to `source` were dead-lettered, with the reasons.
pub fn render_dead_letter_notice(source: &str, dead: &[DeadLetter], channels: &[&str]) -> Vec<NewNotification> {
    let n = dead.len();
    let subject = format!("[warden] DEAD LETTER {n} message(s) to {source} not delivered");
    let headline = if n == 1 {
        format!("A message to {source} was dead-lettered: {}", dead[0].reason)
    } else {
        format!("{n} messages to {source} were dead-lettered")
    };
    let items: Vec<String> = dead
        .iter()
        .take(NOTICE_MAX_ITEMS)
        .map(|d| {
            let of = d.incident_id.map(|i| format!("incident #{i}, ")).unwrap_or_default();
            let subject: String = d.subject.chars().take(150).collect();
            format!(
                "message {} ({of}{}): {subject} — {}",
                d.id,
                d.event,
                d.reason.chars().take(300).collect::<String>()
            )
        })
        .collect();
    let more = (n > NOTICE_MAX_ITEMS).then(|| format!("… and {} more", n - NOTICE_MAX_ITEMS));
    let hint = "See `warden outbox dead` or GET /api/v1/outbox/dead; `warden outbox retry ID` sends one again.";
    channels
        .iter()
        .filter(|c| **c != source && !receivers::ALERTING.contains(*c))
        .map(|ch| {
            let payload = match *ch {
                "teams" => {
                    let mut paragraphs = vec![items.join("\n\n")];
                    paragraphs.extend(more.clone());
                    paragraphs.push(hint.to_string());
                    receivers::teams(&subject, &headline, &[], &paragraphs)
                }
                "slack" | "slack_app" => {
                    let mut list = items.iter().map(|i| format!("• {}", esc(i))).collect::<Vec<_>>().join("\n");
                    if let Some(m) = &more {
                        list.push_str(&format!("\n{m}"));
                    }
                    json!({
                        "text": subject,
                        "blocks": [
                            {"type": "header", "text": {"type": "plain_text", "text": headline.chars().take(150).collect::<String>()}},
                            {"type": "section", "text": {"type": "mrkdwn", "text": list}},
                            {"type": "context", "elements": [{"type": "mrkdwn", "text": esc(hint)}]}
                        ]
                    })
                }
                "email" => {
                    let mut text = format!("{headline}\n\n{}\n", items.join("\n"));
                    if let Some(m) = &more {
                        text.push_str(&format!("{m}\n"));
                    }
                    text.push_str(&format!("\n{hint}\n"));
                    let lis: String = items.iter().map(|i| format!("<li>{}</li>", html_esc(i))).collect();
                    let html = format!(
                        "<h2>{}</h2>\n<ul>{lis}</ul>\n{}<p>{}</p>\n",
                        html_esc(&headline),
                        more.as_ref().map(|m| format!("<p>{}</p>\n", html_esc(m))).unwrap_or_default(),
                        html_esc(hint)
                    );
                    json!({"subject": subject, "text": text, "html": html})
                }
                _ => json!({
                    "event": "dead_letter",
                    "subject": subject,
                    "channel": source,
                    "dead_letters": dead.iter().map(|d| json!({"id": d.id, "incident_id": d.incident_id, "event": d.event, "reason": d.reason})).collect::<Vec<_>>(),
                }),
            };
            NewNotification { channel: ch.to_string(), event: "dead_letter".into(), payload, group: None }
        })
        .collect()
}

/// A run that belongs to no incident (started by hand or by a schedule) tells the
/// `channels` what it says (a `notify` step, an approval request, how it ended): one
/// message per channel, none to the paging receivers (PagerDuty, Opsgenie), which are
/// about incidents. `text` is the run's own words.
pub fn render_run_notice(
    run_id: i64,
    playbook: &str,
    status: &str,
    text: &str,
    channels: &[&str],
) -> Vec<NewNotification> {
    let subject =
        format!("[warden] RUN {run_id} ({playbook}) {status}: {}", text.chars().take(120).collect::<String>());
    let headline = format!("Run {run_id} of {playbook}: {text}");
    let hint = format!("`warden runs show {run_id}` or GET /api/v1/runs/{run_id}");
    channels
        .iter()
        .filter(|c| !receivers::ALERTING.contains(*c))
        .map(|ch| {
            let payload = match *ch {
                "teams" => receivers::teams(&subject, &headline, &[], std::slice::from_ref(&hint)),
                "slack" | "slack_app" => json!({
                    "text": subject,
                    "blocks": [
                        {"type": "section", "text": {"type": "mrkdwn", "text": esc(&headline)}},
                        {"type": "context", "elements": [{"type": "mrkdwn", "text": esc(&hint)}]}
                    ]
                }),
                "email" => json!({
                    "subject": subject,
                    "text": format!("{headline}\n\n{hint}\n"),
                    "html": format!("<p>{}</p>\n<p>{}</p>\n", html_esc(&headline), html_esc(&hint)),
                }),
                _ => json!({
                    "event": "run",
                    "subject": subject,
                    "run_id": run_id,
                    "playbook": playbook,
                    "status": status,
                    "text": text,
                }),
            };
            NewNotification { channel: ch.to_string(), event: "run".into(), payload, group: None }
        })
        .collect()
}

/// Slack mrkdwn needs `&`, `<` and `>` escaped in untrusted text.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn slack(subject: &str, headline: &str, i: &Incident, action: &str, summary: &str, resolved: Option<&str>) -> Value {
    let mut fields = vec![
        json!({"type": "mrkdwn", "text": format!("*Severity*\n{}", esc(&i.severity))}),
        json!({"type": "mrkdwn", "text": format!("*Watch*\n{}", esc(&i.watch))}),
        json!({"type": "mrkdwn", "text": format!("*Target*\n{}", esc(&target(i)))}),
        json!({"type": "mrkdwn", "text": format!("*Observed*\n{}", opt(i.observed))}),
        json!({"type": "mrkdwn", "text": format!("*Expected*\n{}", expected_text(i))}),
        json!({"type": "mrkdwn", "text": format!("*Action*\n{}", esc(action))}),
    ];
    if let Some(r) = resolved {
        fields.push(json!({"type": "mrkdwn", "text": format!("*Resolved at*\n{r}")}));
    }
    // Block Kit header text is limited to 150 characters.
    let header: String = headline.chars().take(150).collect();
    json!({
        "text": subject,
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": header}},
            {"type": "section", "fields": fields},
            {"type": "section", "text": {"type": "mrkdwn", "text": esc(summary)}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": format!("incident #{} · opened {} · fingerprint {}", i.id, i.opened_at.to_rfc3339(), i.fingerprint)}]}
        ]
    })
}

fn html_esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn email(subject: &str, headline: &str, i: &Incident, action: &str, summary: &str, resolved: Option<&str>) -> Value {
    let rows = [
        ("Severity", i.severity.clone()),
        ("Watch", i.watch.clone()),
        ("Target", target(i)),
        ("Observed", opt(i.observed)),
        ("Expected", expected_text(i)),
        ("Action", action.to_string()),
        ("Opened at", i.opened_at.to_rfc3339()),
        ("Resolved at", resolved.unwrap_or("-").to_string()),
        ("Incident", format!("#{} ({})", i.id, i.fingerprint)),
    ];
    let mut text = format!("{headline}\n\n");
    for (k, v) in &rows {
        text.push_str(&format!("{k:<12} {v}\n"));
    }
    text.push_str(&format!("\n{summary}\n"));
    let mut html = format!("<h2>{}</h2>\n<table>\n", html_esc(headline));
    for (k, v) in &rows {
        html.push_str(&format!("<tr><th align=\"left\">{}</th><td>{}</td></tr>\n", html_esc(k), html_esc(v)));
    }
    html.push_str(&format!("</table>\n<p>{}</p>\n", html_esc(summary)));
    json!({"subject": subject, "text": text, "html": html})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::TargetRef;
    use chrono::DateTime;
    use std::collections::BTreeMap;

    fn incident() -> Incident {
        Incident {
            id: 4,
            fingerprint: "abc".into(),
            watch: "checkout-latency".into(),
            source: "watch".into(),
            status: "open".into(),
            severity: "warning".into(),
            title: "checkout-latency anomalous on shop/checkout".into(),
            labels: BTreeMap::new(),
            target: Some(TargetRef { namespace: "shop".into(), deployment: "checkout".into() }),
            observed: Some(0.5),
            expected: Some(0.1),
            lower: Some(0.08),
            upper: Some(0.12),
            score: Some(0.9),
            detector: Some("robust_baseline".into()),
            opened_at: DateTime::from_timestamp(1_700_000_000, 0).expect("time"),
            updated_at: DateTime::from_timestamp(1_700_000_000, 0).expect("time"),
            resolved_at: None,
            quiet_evaluations: 0,
        }
    }

    #[test]
    fn renders_every_channel_with_the_facts() {
        let out = render(NotifyEvent::Opened, &incident(), None, &[], &["slack", "email", "file"]);
        assert_eq!(out.len(), 3);
        let s = &out[0].payload;
        assert_eq!(s["text"], "[warden] OPENED warning checkout-latency shop/checkout");
        let blocks = s["blocks"].to_string();
        for needle in
            ["*Observed*\\n0.5", "*Expected*\\n0.1 (band 0.08 to 0.12)", "*Target*\\nshop/checkout", "*Action*\\nnone"]
        {
            assert!(blocks.contains(needle), "{needle} not in {blocks}");
        }
        let e = &out[1].payload;
        assert_eq!(e["subject"], s["text"]);
        assert!(e["text"].as_str().unwrap_or("").contains("Observed     0.5"));
        assert!(e["html"].as_str().unwrap_or("").contains("<td>shop/checkout</td>"));
        assert_eq!(out[2].payload["event"], "opened");
        assert_eq!(out[2].payload["incident_id"], 4);
    }

    fn entry(id: i64, events: &[&str]) -> DigestEntry {
        DigestEntry {
            incident_id: Some(id),
            events: events.iter().map(|e| e.to_string()).collect(),
            subject: format!("[warden] RESOLVED warning w <ns/{id}>"),
        }
    }

    #[test]
    fn digest_lines_keep_each_incidents_order() {
        assert_eq!(
            entry(4, &["opened", "action", "action", "resolved"]).line(),
            "#4 (opened, action ×2, resolved): [warden] RESOLVED warning w <ns/4>"
        );
        let entries: Vec<_> = (1..=3).map(|i| entry(i, &["opened"])).collect();
        let e = render_digest("email", &entries, 3);
        assert_eq!(e["subject"], "[warden] DIGEST 3 notifications for 3 incident(s)");
        let text = e["text"].as_str().unwrap_or("");
        assert!(text.find("#1 ").unwrap_or(usize::MAX) < text.find("#3 ").unwrap_or(0), "{text}");
        assert!(e["html"].as_str().unwrap_or("").contains("&lt;ns/2&gt;"));
    }

    #[test]
    fn a_large_slack_digest_stays_within_block_kit() {
        let entries: Vec<_> = (1..=2_000).map(|i| entry(i, &["opened", "action"])).collect();
        let s = render_digest("slack", &entries, 4_000);
        let blocks = s["blocks"].as_array().expect("blocks");
        assert!(blocks.len() <= 50, "{}", blocks.len());
        for b in blocks {
            if b["type"] == "section" {
                assert!(b["text"]["text"].as_str().unwrap_or("").chars().count() <= 3_000);
            }
        }
        let last = blocks.last().map(|b| b.to_string()).unwrap_or_default();
        assert!(last.contains("more incident(s)"), "{last}");
        // What the sections show plus what the last line counts is every incident.
        let shown: usize = blocks
            .iter()
            .filter(|b| b["type"] == "section")
            .map(|b| b["text"]["text"].as_str().unwrap_or("").lines().count())
            .sum();
        let more: usize =
            last.split("and ").nth(1).and_then(|r| r.split(' ').next()).and_then(|n| n.parse().ok()).unwrap_or(0);
        assert_eq!(shown + more, 2_000);
    }

    #[test]
    fn dead_letter_notices_go_to_the_other_channels() {
        let dead: Vec<_> = (1..=7)
            .map(|i| DeadLetter {
                id: i,
                incident_id: Some(3),
                event: "opened".into(),
                subject: "s".into(),
                reason: "500 Line too long".into(),
            })
            .collect();
        let out = render_dead_letter_notice("email", &dead, &["slack", "email", "file"]);
        assert_eq!(out.iter().map(|n| n.channel.as_str()).collect::<Vec<_>>(), ["slack", "file"]);
        assert!(out.iter().all(|n| n.event == "dead_letter"));
        let slack = out[0].payload.to_string();
        assert!(slack.contains("7 messages to email were dead-lettered"), "{slack}");
        assert!(slack.contains("500 Line too long") && slack.contains("and 2 more"), "{slack}");
        let one = render_dead_letter_notice("slack", &dead[..1], &["slack", "email"]);
        assert_eq!(
            one[0].payload["text"].as_str().unwrap_or("").lines().next(),
            Some("A message to slack was dead-lettered: 500 Line too long")
        );
    }

    #[test]
    fn approval_requests_carry_buttons_on_the_slack_app_only() {
        let channels = ["slack", "slack_app", "pagerduty"];
        let out = render_approval_request(&incident(), 7, 1_700_000_000_123, "approval requested", &[], &channels);
        assert_eq!(out.iter().map(|n| n.channel.as_str()).collect::<Vec<_>>(), ["slack", "slack_app"]);
        assert!(!out[0].payload.to_string().contains("warden_approve"));
        let blocks = out[1].payload["blocks"].as_array().expect("blocks");
        assert_eq!(blocks.last().map(|b| b["elements"][0]["value"].clone()), Some(json!("run:7:1700000000123")));
    }

    #[test]
    fn escapes_untrusted_text() {
        let mut i = incident();
        i.watch = "<script>&".into();
        let out = render(NotifyEvent::Action, &i, Some("scaled <b>"), &[], &["slack", "email"]);
        assert!(out[0].payload["blocks"].to_string().contains("&lt;script&gt;&amp;"));
        assert!(out[1].payload["html"].as_str().unwrap_or("").contains("scaled &lt;b&gt;"));
    }
}
