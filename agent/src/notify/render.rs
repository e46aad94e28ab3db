//! Slack Block Kit, email (text + HTML) and file payloads for incident events.

use serde_json::{json, Value};
use warden_models::{format_value, template_summary, IncidentFacts};

use crate::analysis::Analysis;
use crate::store::{Incident, NewNotification};

/// What happened to the incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyEvent {
    Opened,
    Action,
    Resolved,
    Analysis,
}

impl NotifyEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyEvent::Opened => "opened",
            NotifyEvent::Action => "action",
            NotifyEvent::Resolved => "resolved",
            NotifyEvent::Analysis => "analysis",
        }
    }
    fn word(self) -> &'static str {
        match self {
            NotifyEvent::Opened => "OPENED",
            NotifyEvent::Action => "ACTION",
            NotifyEvent::Resolved => "RESOLVED",
            NotifyEvent::Analysis => "ANALYSIS",
        }
    }
}

/// The Deployment acted on, or else the series' labels (`pod=..,namespace=..`).
fn target(i: &Incident) -> String {
    if let Some(t) = &i.target {
        return format!("{}/{}", t.namespace, t.deployment);
    }
    let labels: Vec<String> = i.labels.iter().filter(|(k, _)| k.as_str() != "__name__").map(|(k, v)| format!("{k}={v}")).collect();
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

/// Render one event for each configured channel (`slack`, `email`, `file`).
/// `action` describes the action in words when the event is one.
pub fn render(event: NotifyEvent, i: &Incident, action: Option<&str>, actions_so_far: &[String], channels: &[&str]) -> Vec<NewNotification> {
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
    };
    let resolved = i.resolved_at.map(|t| t.to_rfc3339());

    channels
        .iter()
        .map(|ch| {
            let payload = match *ch {
                "slack" => slack(&subject, &headline, i, &action_text, &summary, resolved.as_deref()),
                "email" => email(&subject, &headline, i, &action_text, &summary, resolved.as_deref()),
                _ => json!({
                    "event": event.as_str(),
                    "incident_id": i.id,
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
            NewNotification { channel: ch.to_string(), event: event.as_str().into(), payload }
        })
        .collect()
}

/// The probable causes, one line each (`1. shop/checkout (workload, 0.82) [E2, E5]`).
fn ranking_lines(a: &Analysis, max: usize) -> Vec<String> {
    a.ranking
        .candidates
        .iter()
        .take(max)
        .enumerate()
        .map(|(n, c)| {
            let kind = serde_json::to_value(c.cause).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
            format!("{}. {} ({kind}, {:.2}) [{}]", n + 1, c.subject.display(), c.score, c.evidence.join(", "))
        })
        .collect()
}

/// Where the summary came from, in words.
fn summary_origin(a: &Analysis) -> String {
    let source = serde_json::to_value(a.summary.source).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
    match (&a.summary.model, &a.summary.fallback_reason) {
        (Some(m), None) => format!("summary: {source} ({m}), grounded in the cited evidence"),
        (_, Some(r)) => format!("summary: {source} ({r})"),
        (None, None) => format!("summary: {source}"),
    }
}

/// Render an incident's root-cause analysis: the summary, the top candidates and where the
/// summary came from. The summary is model text: escaped like any untrusted text.
pub fn render_analysis(i: &Incident, a: &Analysis, channels: &[&str]) -> Vec<NewNotification> {
    let subject = subject(NotifyEvent::Analysis, i);
    let top = a.ranking.candidates.first().map(|c| c.subject.display()).unwrap_or_else(|| "no probable cause ranked".into());
    let headline = format!("Incident #{}: probable cause {top}", i.id);
    let causes = ranking_lines(a, 3);
    let origin = summary_origin(a);
    channels
        .iter()
        .map(|ch| {
            let payload = match *ch {
                "slack" => {
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
            NewNotification { channel: ch.to_string(), event: NotifyEvent::Analysis.as_str().into(), payload }
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
        for needle in ["*Observed*\\n0.5", "*Expected*\\n0.1 (band 0.08 to 0.12)", "*Target*\\nshop/checkout", "*Action*\\nnone"] {
            assert!(blocks.contains(needle), "{needle} not in {blocks}");
        }
        let e = &out[1].payload;
        assert_eq!(e["subject"], s["text"]);
        assert!(e["text"].as_str().unwrap_or("").contains("Observed     0.5"));
        assert!(e["html"].as_str().unwrap_or("").contains("<td>shop/checkout</td>"));
        assert_eq!(out[2].payload["event"], "opened");
        assert_eq!(out[2].payload["incident_id"], 4);
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
