//! `warden incidents list` (a table: what, where, since when) and `warden incidents show ID`
//! (one incident with its ranking, evidence and summary).

use std::io::Write;

use anyhow::{anyhow, Result};
use chrono::{DateTime, Utc};
use warden_detectors::rca::{Evidence, Payload};
use warden_models::format_value;

use crate::store::{Incident, Store};

/// Where an incident is: its Deployment, else the workload its labels name, else its
/// identity labels (`model=fraud`, a node, a group), else `-`.
pub fn target_of(i: &Incident) -> String {
    if let Some(t) = &i.target {
        return format!("{}/{}", t.namespace, t.deployment);
    }
    let label = |k: &str| i.labels.get(k).filter(|v| !v.is_empty());
    for workload in ["deployment", "statefulset", "daemonset", "job", "persistentvolumeclaim", "pod", "service", "node"]
    {
        if let Some(w) = label(workload) {
            return match label("namespace") {
                Some(ns) => format!("{ns}/{w}"),
                None => w.clone(),
            };
        }
    }
    let labels: Vec<String> = i
        .labels
        .iter()
        .filter(|(k, v)| k.as_str() != "__name__" && !v.is_empty())
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if labels.is_empty() {
        "-".into()
    } else {
        cut(&labels.join(","), 40)
    }
}

/// `45s`, `12m`, `3h 5m`, `2d 4h`: the two largest units.
pub fn age(from: DateTime<Utc>, to: DateTime<Utc>) -> String {
    let s = (to - from).num_seconds().max(0);
    let (d, h, m) = (s / 86_400, s % 86_400 / 3_600, s % 3_600 / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

/// The incidents as a table (`now` for their age; a resolved one shows how long it was open).
pub fn list_table(incidents: &[Incident], now: DateTime<Utc>, out: &mut dyn Write) -> Result<()> {
    if incidents.is_empty() {
        writeln!(out, "no incidents")?;
        return Ok(());
    }
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::NOTHING);
    table.set_header(["ID", "STATUS", "SEVERITY", "OPENED", "AGE", "WATCH", "TARGET", "TITLE"]);
    for i in incidents {
        let age = match i.resolved_at {
            Some(r) => format!("{} (was open {})", age(i.opened_at, now), age(i.opened_at, r)),
            None => age(i.opened_at, now),
        };
        table.add_row([
            i.id.to_string(),
            i.status.clone(),
            i.severity.clone(),
            i.opened_at.format("%Y-%m-%d %H:%M UTC").to_string(),
            age,
            i.watch.clone(),
            target_of(i),
            cut(&i.title, 100),
        ]);
    }
    writeln!(out, "{table}")?;
    Ok(())
}

fn hms(t: i64) -> String {
    DateTime::from_timestamp(t, 0)
        .map(|d| d.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| t.to_string())
}

/// One evidence item in one line (untrusted text quoted and cut).
pub fn describe(e: &Evidence) -> String {
    let what = match &e.payload {
        Payload::Anomaly { watch, observed, forecast: Some(f), until, .. } => {
            let when =
                f.crossing.map(|t| format!("reached {}", hms(t))).unwrap_or_else(|| "not within the horizon".into());
            let end = until.map(|u| format!(", no longer forecast {}", hms(u))).unwrap_or_default();
            format!(
                "forecast on {watch}: observed {}, limit {} {when}{end}",
                format_value(*observed),
                format_value(f.limit)
            )
        }
        Payload::Anomaly { watch, observed, expected, score, until, .. } => {
            let exp = expected.map(|x| format!(", expected {}", format_value(x))).unwrap_or_default();
            let end = until.map(|u| format!(", normal again {}", hms(u))).unwrap_or_default();
            format!("anomaly on {watch}: observed {}{exp} ({score:.1} robust sd){end}", format_value(*observed))
        }
        Payload::LogSignal { signal, template, count, .. } => {
            format!("log {signal}: {count} × {:?}", cut(template, 120))
        }
        Payload::KubeEvent { reason, message, count, object } => {
            format!("event {reason} ×{count} on {object}: {:?}", cut(message, 120))
        }
        Payload::Change { change, from, to, description } => {
            let kind =
                serde_json::to_value(change).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
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
        Payload::Action { run_id, playbook, step, status } => {
            format!("action: run {run_id} {playbook}/{step}: {}", cut(status, 120))
        }
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
    // The same target as `incidents list` shows (a group's or a volume's from its labels).
    let target = target_of(&incident);
    writeln!(
        out,
        "  status {} · severity {} · watch {} · target {}",
        incident.status, incident.severity, incident.watch, target
    )?;
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
    let source =
        serde_json::to_value(a.summary.source).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
    match (&a.summary.model, &a.summary.fallback_reason) {
        (_, Some(r)) => writeln!(out, "  ({source}: {r})")?,
        (Some(m), None) => {
            writeln!(out, "  ({source}: {m}; every sentence cites evidence and passed the grounding check)")?
        }
        (None, None) => writeln!(out, "  ({source})")?,
    }
    writeln!(out, "\nProbable causes:")?;
    if a.ranking.candidates.is_empty() {
        writeln!(out, "  none ranked from the evidence collected")?;
    }
    for (n, c) in a.ranking.candidates.iter().enumerate().take(5) {
        let kind = serde_json::to_value(c.cause).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        writeln!(
            out,
            "  {}. {:<30} {:<8} {:.2}  [{}]",
            n + 1,
            c.subject.display(),
            kind,
            c.score,
            c.evidence.join(", ")
        )?;
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

/// `warden incidents ack|resolve ID`: through the same [`Tracker`] as the API. `channels`
/// are the configured notification channels (empty without a configuration: then the
/// resolution queues no notifications, and says so). Refusals (no such incident, already
/// resolved or acknowledged) are errors naming the incident.
pub fn by_hand(
    store: std::sync::Arc<Store>,
    channels: crate::notify::Routes,
    id: i64,
    who: &str,
    comment: Option<&str>,
    resolve: bool,
    out: &mut impl Write,
) -> Result<()> {
    use crate::incident::tracker::{HandOutcome, Tracker};
    let quiet = channels.is_empty();
    let tracker = Tracker {
        store,
        channels,
        timeline: crate::timeline::Timeline::default(),
        outbox_wake: std::sync::Arc::new(tokio::sync::Notify::new()),
    };
    let now = Utc::now();
    let outcome = if resolve {
        tracker.resolve_by_hand(id, who, comment, now)?
    } else {
        tracker.acknowledge(id, who, comment, now)?
    };
    match outcome {
        HandOutcome::Done(i) if resolve => {
            writeln!(out, "incident {id} resolved by {who}: {}", i.title)?;
            if quiet {
                writeln!(out, "no notifications queued (give --config to notify its channels)")?;
            }
            Ok(())
        }
        HandOutcome::Done(i) => Ok(writeln!(out, "incident {id} acknowledged by {who}: {}", i.title)?),
        HandOutcome::Unchanged(i) if i.status != "open" => Err(anyhow!("incident {id} is already {}", i.status)),
        HandOutcome::Unchanged(_) => Err(anyhow!("incident {id} was already acknowledged")),
        HandOutcome::NotFound => Err(anyhow!("no incident {id}")),
    }
}

#[cfg(test)]
mod list_tests {
    use super::*;
    use std::collections::BTreeMap;

    fn incident(id: i64, labels: &[(&str, &str)], target: Option<(&str, &str)>) -> Incident {
        let at = DateTime::parse_from_rfc3339("2026-01-01T10:00:00Z").expect("time").with_timezone(&Utc);
        Incident {
            id,
            fingerprint: format!("f{id}"),
            watch: "w".into(),
            source: "watch".into(),
            status: "open".into(),
            severity: "warning".into(),
            title: "a title".into(),
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
            target: target.map(|(n, d)| crate::store::TargetRef { namespace: n.into(), deployment: d.into() }),
            observed: None,
            expected: None,
            lower: None,
            upper: None,
            score: None,
            detector: None,
            opened_at: at,
            updated_at: at,
            resolved_at: None,
            quiet_evaluations: 0,
        }
    }

    #[test]
    fn every_kind_of_incident_names_where_it_is_and_its_age() {
        let group = incident(1, &[("namespace", "shop"), ("deployment", "checkout"), ("pod", "checkout-1")], None);
        let capacity = incident(2, &[("namespace", "data"), ("persistentvolumeclaim", "pg-0")], None);
        let model = incident(3, &[("model", "fraud")], None);
        let deployment = incident(4, &[], Some(("shop", "api")));
        let nothing = incident(5, &[], None);
        assert_eq!(target_of(&group), "shop/checkout");
        assert_eq!(target_of(&capacity), "data/pg-0");
        assert_eq!(target_of(&model), "model=fraud");
        assert_eq!(target_of(&deployment), "shop/api");
        assert_eq!(target_of(&nothing), "-");

        let now = group.opened_at + chrono::Duration::minutes(185);
        let mut out = Vec::new();
        list_table(&[group, model], now, &mut out).expect("table");
        let text = String::from_utf8(out).expect("utf8");
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        assert!(lines[0].starts_with("ID") && lines[0].contains("AGE") && lines[0].contains("TARGET"), "{text}");
        assert!(lines[1].contains("3h 5m") && lines[1].contains("shop/checkout"), "{text}");
        assert!(lines[2].contains("model=fraud"), "{text}");
        assert_eq!(age(now, now), "0s");
        assert_eq!(age(now - chrono::Duration::days(2) - chrono::Duration::hours(4), now), "2d 4h");
    }
}
