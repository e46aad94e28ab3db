//! Log watches: read a LogQL query from Loki on an interval, mine the lines into templates,
//! and turn the log signals into incidents, like metric anomalies.
//!
//! Each evaluation reads the lines after the last one read (the first reads `start_lookback`
//! back) up to `now - offset`, with complete, de-duplicated paging
//! (`warden_connectors::loki`). Every line goes through one template miner per watch
//! (`warden_detectors::logs::Miner`) and then through the signal detectors of its service
//! (`LogSignals`, one per value of the `identity` labels): a template never seen before
//! (after warm-up), a template's rate far from its own baseline, a burst of error-level
//! lines. A signal opens or updates an incident keyed by watch, identity, signal kind and
//! (except for error bursts) template; its evidence (template, sample lines, counts) is the
//! incident's first event.
//!
//! The miner's state and the resume point are saved in the store after each evaluation, so
//! template ids stay the same across restarts and no line is read twice or skipped. The
//! signals' baselines are not saved: after a restart they warm up again, except that a
//! restored miner that had already seen `warmup_lines` lines does not hold back new-template
//! signals a second time.
//!
//! A failed read (Loki down, 400 bad query, 429, truncated body) is "no data": nothing opens,
//! resolves or moves the resume point. An incident resolves after `resolve_after`
//! evaluations that read successfully without its signal (for a new-template incident:
//! without another line of that template).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use serde_json::json;
use warden_connectors::loki::{Direction, LogEntry, LokiClient};
use warden_detectors::logs::{LogSignals, Miner, MinerState, Signal, SignalKind, TemplateId};

use crate::config::{LogSignalKind, LogWatchConfig};
use crate::incident::identity::fingerprint;

/// What one read returned.
#[derive(Debug, Clone, Default)]
pub struct LogRead {
    /// Entries in time order.
    pub entries: Vec<LogEntry>,
    /// `false` when the read stopped at the entry cap; the next read continues after the
    /// last entry returned.
    pub complete: bool,
}

/// Where log lines come from (Loki in production, scripted sources in tests).
#[async_trait]
pub trait LogSource: Send + Sync {
    /// Entries with `start <= t < end`, oldest first.
    async fn read(&self, query: &str, start: DateTime<Utc>, end: DateTime<Utc>) -> Result<LogRead, String>;
}

/// Loki as a [`LogSource`].
pub struct LokiLogs {
    pub client: LokiClient,
    pub page_limit: u32,
}

#[async_trait]
impl LogSource for LokiLogs {
    async fn read(&self, query: &str, start: DateTime<Utc>, end: DateTime<Utc>) -> Result<LogRead, String> {
        let r = self
            .client
            .query_range(query, start, end, Direction::Forward, self.page_limit)
            .await
            .map_err(|e| e.to_string())?;
        let complete = r.is_complete();
        Ok(LogRead { entries: r.entries, complete })
    }
}

/// The in-memory state of one log watch.
pub struct LogWatchState {
    pub miner: Miner,
    signals: BTreeMap<BTreeMap<String, String>, LogSignals>,
    /// Timestamp (ns) of the last entry read; the next read starts after it.
    pub resume_ns: Option<i64>,
    /// The restored miner had passed the new-template warm-up before the restart.
    restored_warm: bool,
}

impl LogWatchState {
    /// A fresh state, or the saved one (`miner_state` JSON and resume point).
    pub fn new(w: &LogWatchConfig, saved: Option<(String, Option<i64>)>) -> Result<Self, String> {
        let params = w.miner_params().map_err(|e| format!("miner: {e}"))?;
        let warmup = w.signal_params().map_err(|e| format!("signals: {e}"))?.warmup_lines;
        match saved {
            Some((json, resume_ns)) => {
                let state = MinerState::from_json(&json).map_err(|e| format!("saved miner state: {e}"))?;
                let mut miner = Miner::from_state(state).map_err(|e| format!("saved miner state: {e}"))?;
                // Settings changed since the state was saved: keep the templates, use the new settings.
                if miner.params() != &params {
                    let mut state = miner.state();
                    state.params = params;
                    miner =
                        Miner::from_state(state).map_err(|e| format!("saved miner state with new settings: {e}"))?;
                }
                let restored_warm = miner.lines() >= warmup;
                Ok(Self { miner, signals: BTreeMap::new(), resume_ns, restored_warm })
            }
            None => Ok(Self {
                miner: Miner::new(params).map_err(|e| format!("miner: {e}"))?,
                signals: BTreeMap::new(),
                resume_ns: None,
                restored_warm: false,
            }),
        }
    }

    fn signals_for(&mut self, w: &LogWatchConfig, key: &BTreeMap<String, String>) -> Result<&mut LogSignals, String> {
        if !self.signals.contains_key(key) {
            let mut params = w.signal_params().map_err(|e| format!("signals: {e}"))?;
            if self.restored_warm {
                params.warmup_lines = 0;
                params.warmup_ms = 0;
            }
            let s = LogSignals::new(params).map_err(|e| format!("signals: {e}"))?;
            self.signals.insert(key.clone(), s);
        }
        self.signals.get_mut(key).ok_or_else(|| "signal state".to_string())
    }
}

/// A signal of one service, ready to become an incident.
#[derive(Debug, Clone)]
pub struct LogFinding {
    pub identity: BTreeMap<String, String>,
    pub signal: Signal,
    pub fingerprint: String,
    pub title: String,
}

/// The outcome of one log evaluation.
#[derive(Debug, Clone, Default)]
pub struct LogEvaluation {
    pub lines: usize,
    pub findings: Vec<LogFinding>,
    /// Fingerprints whose condition still holds this evaluation (a new template seen again).
    pub still_active: BTreeSet<String>,
    pub complete: bool,
}

fn kind_of(k: SignalKind) -> LogSignalKind {
    match k {
        SignalKind::NewTemplate => LogSignalKind::NewTemplate,
        SignalKind::RateChange => LogSignalKind::RateChange,
        SignalKind::ErrorBurst => LogSignalKind::ErrorBurst,
    }
}

fn kind_name(k: SignalKind) -> &'static str {
    match k {
        SignalKind::NewTemplate => "new_template",
        SignalKind::RateChange => "rate_change",
        SignalKind::ErrorBurst => "error_burst",
    }
}

/// The incident key of a signal: watch, identity, signal kind and, except for error bursts
/// (whose top template varies), the template.
pub fn finding_fingerprint(
    watch: &str,
    identity: &BTreeMap<String, String>,
    kind: SignalKind,
    template: Option<TemplateId>,
) -> String {
    let mut key = identity.clone();
    key.insert("__signal".into(), kind_name(kind).into());
    if kind != SignalKind::ErrorBurst {
        if let Some(t) = template {
            key.insert("__template".into(), format!("{t:016x}"));
        }
    }
    fingerprint(watch, &key)
}

fn short(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(max).collect::<String>())
    }
}

fn title(w: &LogWatchConfig, identity: &BTreeMap<String, String>, s: &Signal) -> String {
    let on = if identity.is_empty() {
        String::new()
    } else {
        format!(" on {}", identity.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","))
    };
    let template = s.evidence.template.as_deref().map(|t| short(t, 100)).unwrap_or_default();
    let baseline = s.evidence.baseline.map(|b| format!("{b:.0}")).unwrap_or_else(|| "-".into());
    match s.kind {
        SignalKind::NewTemplate => format!("{}: new log pattern{on}: `{template}`", w.name),
        SignalKind::RateChange => format!(
            "{}: `{template}` {} its usual rate{on} ({} lines vs about {baseline} per bucket)",
            w.name,
            if matches!(s.deviation, warden_detectors::Deviation::Below) { "below" } else { "above" },
            s.evidence.count
        ),
        SignalKind::ErrorBurst => format!(
            "{}: burst of error lines{on} ({} vs about {baseline} per bucket; most: `{template}`)",
            w.name, s.evidence.count
        ),
    }
}

/// Read, mine and detect for one log watch. `Err` is "no data" with its reason; the state
/// is only advanced when the read succeeded.
pub async fn evaluate_logs(
    source: &dyn LogSource,
    w: &LogWatchConfig,
    state: &mut LogWatchState,
    now: DateTime<Utc>,
) -> Result<LogEvaluation, String> {
    let end = now - ChronoDuration::from_std(w.offset.get()).unwrap_or_default();
    let start = match state.resume_ns {
        Some(ns) => DateTime::from_timestamp_nanos(ns.saturating_add(1)),
        None => end - ChronoDuration::from_std(w.start_lookback.get()).unwrap_or_default(),
    };
    if start >= end {
        return Ok(LogEvaluation { complete: true, ..LogEvaluation::default() });
    }
    let read = source.read(&w.query, start, end).await.map_err(|e| format!("reading logs: {e}"))?;
    let mut out = LogEvaluation { lines: read.entries.len(), complete: read.complete, ..LogEvaluation::default() };
    let open_on: BTreeSet<LogSignalKind> = w.open_on.iter().copied().collect();
    let mut raw: Vec<(BTreeMap<String, String>, Signal)> = Vec::new();
    for e in &read.entries {
        let identity: BTreeMap<String, String> =
            w.identity.iter().map(|l| (l.clone(), e.labels.get(l).cloned().unwrap_or_default())).collect();
        let result = state.miner.add(&e.line);
        // A template seen again keeps its new-template incident open.
        out.still_active.insert(finding_fingerprint(
            &w.name,
            &identity,
            SignalKind::NewTemplate,
            Some(result.template_id),
        ));
        let ms = e.timestamp_ns.div_euclid(1_000_000);
        let signals = state.signals_for(w, &identity)?.observe(ms, &e.line, &result);
        raw.extend(signals.into_iter().map(|s| (identity.clone(), s)));
        state.resume_ns = Some(e.timestamp_ns);
    }
    // Close the buckets that ended before `end` (a service that went quiet is judged too),
    // but only when everything up to `end` was read.
    if read.complete {
        let end_ms = end.timestamp_millis();
        for (identity, signals) in state.signals.iter_mut() {
            raw.extend(signals.flush(end_ms).into_iter().map(|s| (identity.clone(), s)));
        }
        // Nothing more before `end`: the next read starts there.
        let end_ns = end.timestamp_nanos_opt().unwrap_or(i64::MAX).saturating_sub(1);
        state.resume_ns = Some(state.resume_ns.map_or(end_ns, |r| r.max(end_ns)));
    }
    for (identity, signal) in raw {
        if !open_on.contains(&kind_of(signal.kind)) {
            continue;
        }
        let fp = finding_fingerprint(&w.name, &identity, signal.kind, signal.evidence.template_id);
        out.still_active.insert(fp.clone());
        let title = title(w, &identity, &signal);
        out.findings.push(LogFinding { identity, signal, fingerprint: fp, title });
    }
    Ok(out)
}

/// The JSON detail of a finding: what the incident's first event shows.
pub fn evidence_detail(f: &LogFinding, query: &str) -> serde_json::Value {
    json!({
        "signal": kind_name(f.signal.kind),
        "identity": f.identity,
        "query": query,
        "score": f.signal.score,
        "evidence": {
            "template_id": f.signal.evidence.template_id.map(|t| format!("{t:016x}")),
            "template": f.signal.evidence.template,
            "samples": f.signal.evidence.samples,
            "count": f.signal.evidence.count,
            "baseline": f.signal.evidence.baseline,
            "window_start": DateTime::from_timestamp_millis(f.signal.evidence.window_start_ms).map(|t| t.to_rfc3339()),
            "window_end": DateTime::from_timestamp_millis(f.signal.evidence.window_end_ms).map(|t| t.to_rfc3339()),
        },
    })
}

/// The per-watch states of an engine, created on first use.
#[derive(Default)]
pub struct LogStates {
    pub states: BTreeMap<String, Arc<tokio::sync::Mutex<Option<LogWatchState>>>>,
}

impl LogStates {
    pub fn new(watches: &[LogWatchConfig]) -> Self {
        Self { states: watches.iter().map(|w| (w.name.clone(), Arc::new(tokio::sync::Mutex::new(None)))).collect() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Serves scripted entries; `fail` makes the next read fail.
    pub struct Scripted {
        pub entries: Mutex<Vec<LogEntry>>,
        pub fail: Mutex<bool>,
    }

    #[async_trait]
    impl LogSource for Scripted {
        async fn read(&self, _q: &str, start: DateTime<Utc>, end: DateTime<Utc>) -> Result<LogRead, String> {
            if *self.fail.lock().map_err(|e| e.to_string())? {
                return Err("503 Service Unavailable".into());
            }
            let (s, e) = (start.timestamp_nanos_opt().unwrap_or(0), end.timestamp_nanos_opt().unwrap_or(0));
            let entries = self
                .entries
                .lock()
                .map_err(|e| e.to_string())?
                .iter()
                .filter(|x| x.timestamp_ns >= s && x.timestamp_ns < e)
                .cloned()
                .collect();
            Ok(LogRead { entries, complete: true })
        }
    }

    fn entry(t: DateTime<Utc>, app: &str, line: &str) -> LogEntry {
        LogEntry {
            timestamp_ns: t.timestamp_nanos_opt().unwrap_or(0),
            labels: Arc::new(BTreeMap::from([("app".to_string(), app.to_string())])),
            line: line.to_string(),
        }
    }

    fn watch() -> LogWatchConfig {
        let cfg = crate::config::parse_str(
            "loki: {url: 'http://127.0.0.1:9'}\nlog_watches:\n  - name: logs\n    query: '{app=~\".+\"}'\n    identity: [app]\n    start_lookback: 1h\n    offset: 0s\n    signals: {warmup_lines: 50, warmup_ms: 0}\n",
            std::path::Path::new("t.yaml"),
        )
        .expect("valid config");
        cfg.log_watches[0].clone()
    }

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).expect("time")
    }

    #[tokio::test]
    async fn a_new_error_pattern_after_warmup_is_a_finding_with_evidence() {
        let mut entries = Vec::new();
        for i in 0..200 {
            let t = t0() + ChronoDuration::seconds(i);
            entries.push(entry(t, "checkout", &format!("GET /api/cart/{i} 200 in {} ms", 10 + i % 7)));
        }
        let src = Scripted { entries: Mutex::new(entries), fail: Mutex::new(false) };
        let w = watch();
        let mut state = LogWatchState::new(&w, None).expect("state");
        let first = evaluate_logs(&src, &w, &mut state, t0() + ChronoDuration::seconds(200)).await.expect("reads");
        assert_eq!(first.lines, 200);
        assert!(first.findings.iter().all(|f| f.signal.kind != SignalKind::NewTemplate), "{:?}", first.findings);

        // A new error pattern arrives.
        let at = t0() + ChronoDuration::seconds(230);
        src.entries.lock().expect("lock").push(entry(
            at,
            "checkout",
            "ERROR payment 4711 declined: card 0x1f2e expired",
        ));
        let second = evaluate_logs(&src, &w, &mut state, t0() + ChronoDuration::seconds(240)).await.expect("reads");
        assert_eq!(second.lines, 1, "only the lines after the resume point are read");
        let new: Vec<_> = second.findings.iter().filter(|f| f.signal.kind == SignalKind::NewTemplate).collect();
        assert_eq!(new.len(), 1, "{:?}", second.findings);
        let detail = evidence_detail(new[0], &w.query);
        assert_eq!(detail["evidence"]["samples"][0], "ERROR payment 4711 declined: card 0x1f2e expired");
        let template = detail["evidence"]["template"].as_str().unwrap_or_default().to_string();
        assert!(template.contains("declined") && template.contains("<*>"), "{template}");
        assert!(new[0].title.contains("new log pattern on app=checkout"), "{}", new[0].title);

        // A failed read is no data and does not move the resume point.
        *src.fail.lock().expect("lock") = true;
        let resume = state.resume_ns;
        assert!(evaluate_logs(&src, &w, &mut state, t0() + ChronoDuration::seconds(300)).await.is_err());
        assert_eq!(state.resume_ns, resume);
    }

    #[tokio::test]
    async fn restored_state_keeps_template_ids_and_warmup() {
        let w = watch();
        let mut state = LogWatchState::new(&w, None).expect("state");
        let lines: Vec<LogEntry> = (0..100)
            .map(|i| entry(t0() + ChronoDuration::seconds(i), "a", &format!("worker {i} done in {i} ms")))
            .collect();
        let src = Scripted { entries: Mutex::new(lines), fail: Mutex::new(false) };
        evaluate_logs(&src, &w, &mut state, t0() + ChronoDuration::seconds(100)).await.expect("reads");
        let id = state.miner.add("worker 5 done in 7 ms").template_id;
        let saved = (state.miner.state().to_json().expect("json"), state.resume_ns);
        let mut restored = LogWatchState::new(&w, Some(saved)).expect("restored");
        assert_eq!(restored.miner.add("worker 9 done in 1 ms").template_id, id);
        // Warm-up is not repeated: the first new pattern after the restart is a finding.
        src.entries.lock().expect("lock").push(entry(
            t0() + ChronoDuration::seconds(110),
            "a",
            "FATAL disk /var/lib/x full",
        ));
        let e = evaluate_logs(&src, &w, &mut restored, t0() + ChronoDuration::seconds(120)).await.expect("reads");
        assert_eq!(e.lines, 1);
        assert!(e.findings.iter().any(|f| f.signal.kind == SignalKind::NewTemplate), "{:?}", e.findings);
    }
}
