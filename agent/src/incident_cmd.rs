//! `warden incidents show ID`: one incident with its ranking, evidence and summary.

use std::io::Write;

use anyhow::{anyhow, Result};
use chrono::DateTime;
use warden_detectors::rca::{Evidence, Payload};
use warden_models::format_value;

use crate::store::Store;

fn hms(t: i64) -> String {
    DateTime::from_timestamp(t, 0).map(|d| d.format("%Y-%m-%d %H:%M:%S UTC").to_string()).unwrap_or_else(|| t.to_string())
}

/// One evidence item in one line (untrusted text quoted and cut).
pub fn describe(e: &Evidence) -> String {
    let what = match &e.payload {
        Payload::Anomaly { watch, observed, expected, score, until, .. } => {
            let exp = expected.map(|x| format!(", expected {}", format_value(x))).unwrap_or_default();
            let end = until.map(|u| format!(", normal again {}", hms(u))).unwrap_or_default();
            format!("anomaly on {watch}: observed {}{exp} ({score:.1} robust sd){end}", format_value(*observed))
        }
        Payload::LogSignal { signal, template, count, .. } => format!("log {signal}: {count} × {:?}", cut(template, 120)),
        Payload::KubeEvent { reason, message, count, object } => format!("event {reason} ×{count} on {object}: {:?}", cut(message, 120)),
        Payload::Change { change, from, to, description } => {
            let kind = serde_json::to_value(change).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
            match (from, to) {
                (Some(f), Some(t)) => format!("{kind}: {f} → {t} ({})", cut(description, 120)),
                _ => format!("{kind}: {}", cut(description, 120)),
            }
        }
        Payload::Topology { nodes, pods, services, depends_on } => {
            let mut parts = Vec::new();
            if !nodes.is_empty() {
                parts.push(format!("nodes {}", nodes.join(",")));
            }
            if !pods.is_empty() {
                parts.push(format!("{} pod(s)", pods.len()));
            }
            if !services.is_empty() {
                parts.push(format!("services {}", services.join(",")));
            }
            if !depends_on.is_empty() {
                parts.push(format!("calls {}", depends_on.join(",")));
            }
            format!("topology: {}", parts.join("; "))
        }
        Payload::Action { run_id, playbook, step, status } => format!("action: run {run_id} {playbook}/{step}: {}", cut(status, 120)),
    };
    format!("{:<4} {}  {:<28} {what}", e.id, hms(e.time), e.subject.display())
}

fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        s.chars().take(max).chain(std::iter::once('…')).collect()
    }
}

/// Print incident `id` from `store`.
pub fn show(store: &Store, id: i64, json: bool, out: &mut dyn Write) -> Result<()> {
    let incident = store.get_incident(id)?.ok_or_else(|| anyhow!("no incident {id}"))?;
    let events = store.incident_events(id)?;
    let analysis = store.get_analysis(id)?;
    if json {
        let v = serde_json::json!({"incident": incident, "events": events, "analysis": analysis});
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(());
    }
    writeln!(out, "Incident #{}: {}", incident.id, incident.title)?;
    let target = incident.target.as_ref().map(|t| format!("{}/{}", t.namespace, t.deployment)).unwrap_or_else(|| "-".into());
    writeln!(out, "  status {} · severity {} · watch {} · target {}", incident.status, incident.severity, incident.watch, target)?;
    writeln!(
        out,
        "  opened {}{}",
        incident.opened_at.format("%Y-%m-%d %H:%M:%S UTC"),
        incident.resolved_at.map(|t| format!(" · resolved {}", t.format("%Y-%m-%d %H:%M:%S UTC"))).unwrap_or_default()
    )?;
    let Some(a) = analysis else {
        writeln!(out, "\nNot analysed (analysis disabled, or the incident opened before it was set up).")?;
        return Ok(());
    };
    writeln!(out, "\nSummary:")?;
    writeln!(out, "  {}", a.summary.text)?;
    let source = serde_json::to_value(a.summary.source).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
    match (&a.summary.model, &a.summary.fallback_reason) {
        (_, Some(r)) => writeln!(out, "  ({source}: {r})")?,
        (Some(m), None) => writeln!(out, "  ({source}: {m}; every sentence cites evidence and passed the grounding check)")?,
        (None, None) => writeln!(out, "  ({source})")?,
    }
    writeln!(out, "\nProbable causes:")?;
    if a.ranking.candidates.is_empty() {
        writeln!(out, "  none ranked from the evidence collected")?;
    }
    for (n, c) in a.ranking.candidates.iter().enumerate().take(5) {
        let kind = serde_json::to_value(c.cause).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        writeln!(out, "  {}. {:<30} {:<8} {:.2}  [{}]", n + 1, c.subject.display(), kind, c.score, c.evidence.join(", "))?;
        for r in &c.reasons {
            writeln!(out, "       - {r}")?;
        }
    }
    writeln!(out, "\nEvidence:")?;
    for e in &a.evidence {
        writeln!(out, "  {}", describe(e))?;
    }
    if !a.gaps.is_empty() {
        writeln!(out, "\nNot available:")?;
        for g in &a.gaps {
            writeln!(out, "  {g}")?;
        }
    }
    writeln!(out, "\nEvents:")?;
    for e in &events {
        writeln!(out, "  {}  {}", e.at.format("%Y-%m-%d %H:%M:%S UTC"), e.kind)?;
    }
    Ok(())
}
