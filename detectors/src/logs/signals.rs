//! Log signals: detectors that run on the mined template stream.
//!
//! A template miner turns a log into a stream of template ids; three questions about that
//! stream catch most incidents that logs reveal before metrics do:
//!
//! * **Is this a message we have never seen?** A new template after the log has settled
//!   (an unfamiliar error, a code path that never ran) is a [`SignalKind::NewTemplate`].
//!   Every log produces many new templates at first, so this signal waits for a warm-up of
//!   `warmup_lines` lines *and* `warmup_ms` milliseconds since the first line (set either to 0
//!   to use only the other).
//! * **Is a known message unusually frequent or rare?** Lines are counted per template in
//!   time buckets of `bucket_ms`. When a bucket closes, each tracked template's count is fed to
//!   its own [`RobustBaseline`] (the crate's median/MAD detector, through
//!   [`Detector::update`]), so "frequent" is judged against that template's own history: a
//!   retry message at 500 per minute is normal if it always is. An anomalous count that is at
//!   least `min_rate_count` (or a drop from a baseline at least that high) is a
//!   [`SignalKind::RateChange`]. Buckets without lines count as 0, so a message that stops
//!   (a heartbeat) is seen too.
//! * **Are there more error-level lines than usual?** Lines with an error level (see
//!   [`error_level`]) are counted per bucket, whatever their template, and judged the same way
//!   against their own baseline: an [`SignalKind::ErrorBurst`] when anomalous and at least
//!   `min_error_count`.
//!
//! Every signal carries [`Evidence`]: the template id and text (for an error burst, the most
//! frequent error template of the bucket), up to `max_samples` sample lines cut at
//! `sample_max_bytes`, the count in the window and the baseline it was compared with.
//!
//! # Determinism and time
//!
//! The output depends only on the lines, their timestamps and their order. Buckets are
//! aligned to multiples of `bucket_ms` since the Unix epoch. A bucket closes when a line of a
//! later bucket arrives or when [`LogSignals::flush`] is called with a later time (the agent
//! calls it on a timer, so that a log that went silent is still judged). A line whose
//! timestamp is before the open bucket is counted in the open bucket. After a gap, at most
//! `window` empty buckets are fed per template: more would not change a baseline of `window`
//! points. Templates are judged in id order, so signals of one bucket come in a fixed order.
//!
//! # Memory
//!
//! At most `max_tracked_templates` templates are tracked for rates (the least recently seen
//! is dropped to make room, and tracked again from scratch if it comes back). Each costs a
//! baseline of `16 × window` bytes (about 1 KB with the default window of 60) plus up to
//! `max_samples` samples of the open bucket; with the defaults (1 000 templates, 3 samples of
//! 256 bytes) that is at most about 1.8 MB. The state is not persisted: after a restart the
//! baselines warm up again.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::detector::{Detection, Detector, Deviation, Direction};
use crate::error::{Error, Result};
use crate::robust::{RobustBaseline, RobustBaselineParams};

use super::drain::{Change, MatchResult, TemplateId};
use super::mask::truncate_str;

/// Parameters of [`LogSignals`]. Missing fields take their defaults when deserialised;
/// unknown fields are rejected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SignalParams {
    /// Lines seen before new templates are signalled (default 1000).
    pub warmup_lines: u64,
    /// Milliseconds since the first line before new templates are signalled (default one hour).
    pub warmup_ms: i64,
    /// Length of a counting bucket in milliseconds (default one minute).
    pub bucket_ms: i64,
    /// Baseline of every template's count per bucket (default: window 60, min_history 10,
    /// threshold 5, min_consecutive 1, both directions, relative floor 0.1, absolute floor 1).
    pub rate: RobustBaselineParams,
    /// Smallest count (or, for a drop, baseline) that makes a rate signal (default 10).
    pub min_rate_count: u64,
    /// Baseline of the error-level line count per bucket (default as `rate`, upwards only).
    pub errors: RobustBaselineParams,
    /// Smallest error-level count that makes an error burst (default 5).
    pub min_error_count: u64,
    /// Most templates tracked for rates (default 1000).
    pub max_tracked_templates: usize,
    /// Sample lines kept per evidence (default 3).
    pub max_samples: usize,
    /// Longest sample line kept, in bytes (default 256).
    pub sample_max_bytes: usize,
}

fn count_baseline(direction: Direction) -> RobustBaselineParams {
    RobustBaselineParams {
        window: 60,
        threshold: 5.0,
        min_consecutive: 1,
        min_history: 10,
        direction,
        min_relative_scale: 0.1,
        min_absolute_scale: 1.0,
        ..RobustBaselineParams::default()
    }
}

impl Default for SignalParams {
    fn default() -> Self {
        Self {
            warmup_lines: 1000,
            warmup_ms: 3_600_000,
            bucket_ms: 60_000,
            rate: count_baseline(Direction::Both),
            min_rate_count: 10,
            errors: count_baseline(Direction::Up),
            min_error_count: 5,
            max_tracked_templates: 1000,
            max_samples: 3,
            sample_max_bytes: 256,
        }
    }
}

fn invalid(name: &'static str, message: String) -> Error {
    Error::InvalidParam { name, message }
}

impl SignalParams {
    /// Check every parameter: `warmup_ms >= 0`, `bucket_ms` in 1 ..= one day,
    /// `max_tracked_templates` in 1 ..= 100 000, `max_samples <= 100`, `sample_max_bytes` in
    /// 16 ..= 65 536, and both baselines as [`RobustBaselineParams::validate`] checks them.
    pub fn validate(&self) -> Result<()> {
        if self.warmup_ms < 0 {
            return Err(invalid("warmup_ms", format!("must be at least 0, got {}", self.warmup_ms)));
        }
        if !(1..=86_400_000).contains(&self.bucket_ms) {
            return Err(invalid("bucket_ms", format!("must be between 1 and 86400000, got {}", self.bucket_ms)));
        }
        if !(1..=100_000).contains(&self.max_tracked_templates) {
            return Err(invalid(
                "max_tracked_templates",
                format!("must be between 1 and 100000, got {}", self.max_tracked_templates),
            ));
        }
        if self.max_samples > 100 {
            return Err(invalid("max_samples", format!("must be at most 100, got {}", self.max_samples)));
        }
        if !(16..=65_536).contains(&self.sample_max_bytes) {
            return Err(invalid(
                "sample_max_bytes",
                format!("must be between 16 and 65536, got {}", self.sample_max_bytes),
            ));
        }
        self.rate.validate()?;
        self.errors.validate()
    }
}

/// What a signal reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SignalKind {
    /// A template never seen before, after the warm-up.
    NewTemplate,
    /// A template's count in a bucket left its own baseline.
    RateChange,
    /// More error-level lines in a bucket than their baseline allows.
    ErrorBurst,
}

/// The facts behind a signal, for incidents and notifications.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evidence {
    /// The template concerned (for an error burst: the most frequent error template of the
    /// bucket).
    pub template_id: Option<TemplateId>,
    /// Its text.
    pub template: Option<String>,
    /// Up to `max_samples` lines, each cut at `sample_max_bytes`.
    pub samples: Vec<String>,
    /// Lines counted in the window (1 for a new template).
    pub count: u64,
    /// The baseline the count was compared with (the median count per bucket), if any.
    pub baseline: Option<f64>,
    /// Start of the window, in Unix milliseconds (the line's time for a new template).
    pub window_start_ms: i64,
    /// End of the window (exclusive).
    pub window_end_ms: i64,
}

/// One signal.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Signal {
    /// What happened.
    pub kind: SignalKind,
    /// When: the line's time for a new template, the bucket's end otherwise.
    pub timestamp_ms: i64,
    /// Score in `[0, 1]`, 0.5 at the threshold (1 for a new template).
    pub score: f64,
    /// Above or below the baseline ([`Deviation::Above`] for a new template).
    pub deviation: Deviation,
    /// The facts.
    pub evidence: Evidence,
}

/// Rate tracking of one template.
#[derive(Debug, Clone)]
struct Track {
    template: Arc<str>,
    detector: RobustBaseline,
    /// Lines in the open bucket.
    count: u64,
    samples: Vec<String>,
    /// Sequence number of its latest line, for eviction.
    last_line: u64,
}

/// The error-level lines of the open bucket.
#[derive(Debug, Clone)]
struct Errors {
    detector: RobustBaseline,
    count: u64,
    by_template: BTreeMap<TemplateId, (u64, Arc<str>)>,
    samples: Vec<String>,
}

/// The log detectors of one stream. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct LogSignals {
    params: SignalParams,
    lines: u64,
    first_ms: Option<i64>,
    /// Start of the open bucket.
    bucket: Option<i64>,
    tracks: BTreeMap<TemplateId, Track>,
    errors: Errors,
}

fn push_sample(samples: &mut Vec<String>, line: &str, max: usize, bytes: usize) {
    if samples.len() < max {
        let s = truncate_str(line.trim_end_matches(['\r', '\n']), bytes);
        if !samples.iter().any(|x| x == s) {
            samples.push(s.to_string());
        }
    }
}

impl LogSignals {
    /// Build the detectors; fails if `params` do not pass [`SignalParams::validate`].
    pub fn new(params: SignalParams) -> Result<Self> {
        params.validate()?;
        let errors = Errors {
            detector: RobustBaseline::new(params.errors.clone())?,
            count: 0,
            by_template: BTreeMap::new(),
            samples: Vec::new(),
        };
        Ok(Self { params, lines: 0, first_ms: None, bucket: None, tracks: BTreeMap::new(), errors })
    }

    /// The parameters.
    pub fn params(&self) -> &SignalParams {
        &self.params
    }

    /// Number of templates tracked for rates.
    pub fn tracked_templates(&self) -> usize {
        self.tracks.len()
    }

    /// Whether the new-template warm-up is over.
    pub fn warmed_up(&self, now_ms: i64) -> bool {
        self.lines >= self.params.warmup_lines
            && self.first_ms.is_some_and(|f| now_ms.saturating_sub(f) >= self.params.warmup_ms)
    }

    fn bucket_of(&self, t: i64) -> i64 {
        t.div_euclid(self.params.bucket_ms).saturating_mul(self.params.bucket_ms)
    }

    /// Take one mined line: `result` is what [`Miner::add`](super::Miner::add) returned for
    /// `line`, `timestamp_ms` its time. Returns the signals it triggers: those of buckets it
    /// closes, then a new-template signal for the line itself.
    pub fn observe(&mut self, timestamp_ms: i64, line: &str, result: &MatchResult) -> Vec<Signal> {
        let mut signals = self.flush(timestamp_ms);
        if self.bucket.is_none() {
            self.bucket = Some(self.bucket_of(timestamp_ms));
        }
        self.first_ms.get_or_insert(timestamp_ms);
        self.lines = self.lines.saturating_add(1);
        let p = &self.params;
        let (max_samples, sample_bytes) = (p.max_samples, p.sample_max_bytes);
        for gone in &result.evicted {
            self.tracks.remove(gone);
        }
        // Merged templates continue as the survivor (its baseline is kept).
        for merged in &result.merged {
            if let Some(old) = self.tracks.remove(merged) {
                if let Some(t) = self.tracks.get_mut(&result.template_id) {
                    t.count = t.count.saturating_add(old.count);
                } else {
                    self.tracks.insert(result.template_id, old);
                }
            }
        }
        if !self.tracks.contains_key(&result.template_id) {
            self.make_room();
            if let Ok(detector) = RobustBaseline::new(self.params.rate.clone()) {
                self.tracks.insert(
                    result.template_id,
                    Track {
                        template: Arc::clone(&result.template),
                        detector,
                        count: 0,
                        samples: Vec::new(),
                        last_line: 0,
                    },
                );
            }
        }
        if let Some(t) = self.tracks.get_mut(&result.template_id) {
            t.count = t.count.saturating_add(1);
            t.last_line = self.lines;
            if t.template != result.template {
                t.template = Arc::clone(&result.template);
            }
            push_sample(&mut t.samples, line, max_samples, sample_bytes);
        }
        if error_level(line).is_some() {
            let e = &mut self.errors;
            e.count = e.count.saturating_add(1);
            let entry = e.by_template.entry(result.template_id).or_insert((0, Arc::clone(&result.template)));
            entry.0 = entry.0.saturating_add(1);
            entry.1 = Arc::clone(&result.template);
            push_sample(&mut e.samples, line, max_samples, sample_bytes);
        }
        if result.change == Change::New && self.warmed_up(timestamp_ms) {
            let mut samples = Vec::new();
            push_sample(&mut samples, line, max_samples.max(1), sample_bytes);
            signals.push(Signal {
                kind: SignalKind::NewTemplate,
                timestamp_ms,
                score: 1.0,
                deviation: Deviation::Above,
                evidence: Evidence {
                    template_id: Some(result.template_id),
                    template: Some(result.template.to_string()),
                    samples,
                    count: 1,
                    baseline: None,
                    window_start_ms: timestamp_ms,
                    window_end_ms: timestamp_ms.saturating_add(1),
                },
            });
        }
        signals
    }

    /// Drop the least recently seen tracked template if the table is full.
    fn make_room(&mut self) {
        while self.tracks.len() >= self.params.max_tracked_templates {
            let oldest = self.tracks.iter().min_by_key(|(id, t)| (t.last_line, **id)).map(|(id, _)| *id);
            match oldest {
                Some(id) => {
                    self.tracks.remove(&id);
                }
                None => break,
            }
        }
    }

    /// Close every bucket that ends at or before `now_ms` and return their signals. Call it
    /// periodically so that silence is judged; lines call it themselves.
    pub fn flush(&mut self, now_ms: i64) -> Vec<Signal> {
        let mut signals = Vec::new();
        let Some(open) = self.bucket else { return signals };
        let step = self.params.bucket_ms;
        let target = self.bucket_of(now_ms);
        if target <= open {
            return signals;
        }
        // The open bucket, then at most `window` empty ones.
        let empty = ((target - open) / step).saturating_sub(1);
        let window = i64::try_from(self.params.rate.window.max(self.params.errors.window)).unwrap_or(i64::MAX);
        self.close_bucket(open, &mut signals);
        for k in 1..=empty.min(window) {
            self.close_bucket(open.saturating_add(k.saturating_mul(step)), &mut signals);
        }
        self.bucket = Some(target);
        signals
    }

    /// Judge the counts of the bucket starting at `start` and reset them.
    fn close_bucket(&mut self, start: i64, signals: &mut Vec<Signal>) {
        let end = start.saturating_add(self.params.bucket_ms);
        let min_rate = self.params.min_rate_count as f64;
        for (&id, t) in &mut self.tracks {
            let d = t.detector.update(start, t.count as f64);
            let level = (t.count as f64).max(d.expected.unwrap_or(0.0));
            if d.is_anomaly() && level >= min_rate {
                signals.push(rate_signal(
                    SignalKind::RateChange,
                    &d,
                    end,
                    Some(id),
                    Some(&t.template),
                    &t.samples,
                    t.count,
                    start,
                ));
            }
            t.count = 0;
            t.samples.clear();
        }
        let e = &mut self.errors;
        let d = e.detector.update(start, e.count as f64);
        if d.is_anomaly() && e.count >= self.params.min_error_count {
            // The most frequent error template of the bucket (the lowest id on a tie).
            let top = e.by_template.iter().max_by_key(|(id, (n, _))| (*n, std::cmp::Reverse(**id)));
            let (id, text) = match top {
                Some((id, (_, text))) => (Some(*id), Some(text)),
                None => (None, None),
            };
            signals.push(rate_signal(SignalKind::ErrorBurst, &d, end, id, text, &e.samples, e.count, start));
        }
        e.count = 0;
        e.by_template.clear();
        e.samples.clear();
    }
}

#[allow(clippy::too_many_arguments)]
fn rate_signal(
    kind: SignalKind,
    d: &Detection,
    end: i64,
    id: Option<TemplateId>,
    template: Option<&Arc<str>>,
    samples: &[String],
    count: u64,
    start: i64,
) -> Signal {
    Signal {
        kind,
        timestamp_ms: end,
        score: d.score,
        deviation: d.deviation,
        evidence: Evidence {
            template_id: id,
            template: template.map(|t| t.to_string()),
            samples: samples.to_vec(),
            count,
            baseline: d.expected,
            window_start_ms: start,
            window_end_ms: end,
        },
    }
}

/// The error level of a line, if it has one: `"fatal"`, `"critical"`, `"error"`, `"panic"` or
/// `"exception"`.
///
/// A level is a token (without surrounding brackets, quotes and punctuation) that is one of
/// `ERROR ERR FATAL CRITICAL CRIT SEVERE EMERG EMERGENCY ALERT PANIC` in upper case, or any case
/// when the token was bracketed (`[error]`, `<crit>`) or ended with `:` (`error:`), or the value
/// of a `level=`/`severity=`/`lvl=`/`loglevel=` pair; `panic:` in any case; or a token that
/// names an exception type (`NullPointerException`, `java.io.IOException:`, `ValueError:`,
/// `OutOfMemoryError`) or is `Traceback`. A bare lower-case word (`parity error corrected`)
/// is prose, not a level. Only the first 64 tokens are looked at.
pub fn error_level(line: &str) -> Option<&'static str> {
    for raw in line.split_ascii_whitespace().take(64) {
        let bracketed = raw.starts_with(['[', '<', '(', '{']);
        let colon = raw.ends_with(':') || raw.ends_with("]:");
        let core = raw.trim_matches(|c: char| "[](){}<>:,;\"'|".contains(c));
        if core.is_empty() {
            continue;
        }
        let (key, value) = match core.split_once('=') {
            Some((k, v)) => (Some(k), v.trim_matches(|c: char| "\"'".contains(c))),
            None => (None, core),
        };
        let keyed = key.is_some_and(|k| {
            let k = k.to_ascii_lowercase();
            matches!(k.as_str(), "level" | "severity" | "lvl" | "loglevel" | "log_level")
        });
        if key.is_some() && !keyed {
            continue;
        }
        if let Some(level) = level_word(value) {
            let upper = value.bytes().all(|b| !b.is_ascii_lowercase());
            if upper || bracketed || colon || keyed {
                return Some(level);
            }
        }
        if key.is_none() && (is_exception_name(value) || value == "Traceback") {
            return Some("exception");
        }
    }
    None
}

fn level_word(w: &str) -> Option<&'static str> {
    let lower = w.to_ascii_lowercase();
    Some(match lower.as_str() {
        "error" | "err" => "error",
        "fatal" | "emerg" | "emergency" | "alert" => "fatal",
        "critical" | "crit" | "severe" => "critical",
        "panic" => "panic",
        _ => return None,
    })
}

/// `FooException`, `a.b.FooError` (the last dotted part starts upper case and ends with
/// `Exception` or `Error`, and has something before that suffix unless it is `Exception`).
fn is_exception_name(w: &str) -> bool {
    let last = w.rsplit(['.', '$']).next().unwrap_or(w);
    let starts_upper = last.chars().next().is_some_and(|c| c.is_ascii_uppercase());
    let ident = last.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    starts_upper && ident && (last.ends_with("Exception") || (last.len() > "Error".len() && last.ends_with("Error")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::{Miner, MinerParams};

    /// A miner and the signals, fed together.
    struct Stream {
        miner: Miner,
        signals: LogSignals,
    }

    impl Stream {
        fn new(params: SignalParams) -> Self {
            Stream {
                miner: Miner::new(MinerParams::default()).expect("valid"),
                signals: LogSignals::new(params).expect("valid"),
            }
        }

        fn line(&mut self, t: i64, line: &str) -> Vec<Signal> {
            let r = self.miner.add(line);
            self.signals.observe(t, line, &r)
        }
    }

    /// One-second buckets; new templates are not signalled (an endless warm-up).
    fn params() -> SignalParams {
        SignalParams { warmup_lines: u64::MAX, warmup_ms: 0, bucket_ms: 1000, ..SignalParams::default() }
    }

    fn kinds(signals: &[Signal]) -> Vec<SignalKind> {
        signals.iter().map(|s| s.kind).collect()
    }

    #[test]
    fn new_templates_are_signalled_after_the_line_warm_up() {
        let mut s = Stream::new(SignalParams { warmup_lines: 3, ..params() });
        assert!(s.line(0, "service started on port 80").is_empty());
        assert!(s.line(1, "connection from 10.0.0.1").is_empty());
        assert!(s.line(2, "connection from 10.0.0.2").is_empty());
        let got = s.line(3, "disk quota exceeded for user 7");
        assert_eq!(kinds(&got), [SignalKind::NewTemplate]);
        let e = &got[0].evidence;
        assert_eq!(e.template_id, Some(3));
        assert_eq!(e.template.as_deref(), Some("disk quota exceeded for user <*>"));
        assert_eq!(e.samples, ["disk quota exceeded for user 7"]);
        assert_eq!((e.count, e.baseline, got[0].timestamp_ms), (1, None, 3));
        // A known template is not new.
        assert!(s.line(4, "connection from 10.0.0.3").is_empty());
    }

    #[test]
    fn new_templates_wait_for_the_time_warm_up_too() {
        let mut s = Stream::new(SignalParams { warmup_lines: 0, warmup_ms: 10_000, ..params() });
        assert!(s.line(1_000, "a b c").is_empty());
        assert!(s.line(5_000, "d e f").is_empty());
        assert!(!s.signals.warmed_up(10_999));
        assert!(s.signals.warmed_up(11_000));
        let got: Vec<_> = s.line(11_000, "g h i").into_iter().filter(|x| x.kind == SignalKind::NewTemplate).collect();
        assert_eq!(got.len(), 1);
    }

    #[test]
    fn a_template_rate_above_its_own_baseline_is_signalled() {
        let mut s = Stream::new(params());
        let mut all = Vec::new();
        for b in 0..30 {
            for k in 0..10 {
                all.extend(s.line(b * 1000 + k * 10, &format!("GET /api/items/{k} 200")));
            }
            // A noisy neighbour at its own steady 500 per bucket is not an anomaly.
            for k in 0..50 {
                all.extend(s.line(b * 1000 + 500 + k, "retrying in 5 ms"));
            }
        }
        assert!(all.is_empty(), "steady state: {all:?}");
        for k in 0..100 {
            all.extend(s.line(30_000 + k, &format!("GET /api/items/{k} 200")));
        }
        for k in 0..50 {
            all.extend(s.line(30_500 + k, "retrying in 5 ms"));
        }
        all.extend(s.signals.flush(31_000));
        assert_eq!(kinds(&all), [SignalKind::RateChange]);
        let sig = &all[0];
        assert_eq!((sig.timestamp_ms, sig.deviation), (31_000, Deviation::Above));
        assert!(sig.score > 0.5);
        let e = &sig.evidence;
        assert_eq!((e.template_id, e.count, e.baseline), (Some(1), 100, Some(10.0)));
        assert_eq!(e.template.as_deref(), Some("GET <*>"));
        assert_eq!((e.window_start_ms, e.window_end_ms), (30_000, 31_000));
        assert_eq!(e.samples.len(), 3);
    }

    #[test]
    fn a_template_that_stops_is_signalled_when_time_moves_on() {
        let mut s = Stream::new(params());
        for b in 0..30 {
            for k in 0..20 {
                assert!(s.line(b * 1000 + k, "heartbeat from worker ok").is_empty());
            }
        }
        // Silence: the agent flushes on a timer.
        let got = s.signals.flush(32_500);
        // Buckets 30 and 31 are empty; 32 is still open.
        assert_eq!(kinds(&got), [SignalKind::RateChange, SignalKind::RateChange]);
        for (sig, start) in got.iter().zip([30_000, 31_000]) {
            assert_eq!(sig.deviation, Deviation::Below);
            assert_eq!((sig.evidence.count, sig.evidence.baseline), (0, Some(20.0)));
            assert_eq!(sig.evidence.window_start_ms, start);
            assert_eq!(sig.evidence.template.as_deref(), Some("heartbeat from worker ok"));
        }
        // The same bucket is not judged twice.
        assert!(s.signals.flush(32_500).is_empty());
    }

    #[test]
    fn an_error_burst_names_the_top_error_template() {
        let mut s = Stream::new(SignalParams { min_error_count: 5, ..params() });
        let mut all = Vec::new();
        for b in 0..20 {
            all.extend(s.line(b * 1000, "request served in 12 ms"));
            if b % 4 == 0 {
                all.extend(s.line(b * 1000 + 1, "ERROR cache miss storm on shard 3"));
            }
        }
        assert!(all.is_empty(), "{all:?}");
        for k in 0..12 {
            all.extend(s.line(20_000 + k, &format!("[error] upstream 10.0.0.{k} timed out")));
        }
        all.extend(s.line(20_100, "Exception in thread main java.lang.NullPointerException"));
        all.extend(s.signals.flush(21_000));
        let bursts: Vec<_> = all.iter().filter(|x| x.kind == SignalKind::ErrorBurst).collect();
        assert_eq!(bursts.len(), 1, "{all:?}");
        let e = &bursts[0].evidence;
        assert_eq!(e.count, 13);
        assert_eq!(e.template.as_deref(), Some("[error] upstream <*> timed out"));
        assert_eq!(e.baseline, Some(0.0));
        assert_eq!(e.samples.len(), 3);
        assert!(e.samples.iter().all(|l| l.starts_with("[error] upstream")));
    }

    #[test]
    fn error_levels_are_recognised_generically() {
        for (line, want) in [
            ("2024-01-01 ERROR db: connection refused", Some("error")),
            ("[error] [client 1.2.3.4] Directory index forbidden", Some("error")),
            ("<crit> kernel: disk failure", Some("critical")),
            ("level=error msg=\"boom\"", Some("error")),
            ("severity=\"FATAL\" shutting down", Some("fatal")),
            ("SEVERE: Servlet.service() threw exception", Some("critical")),
            ("panic: runtime error: index out of range", Some("panic")),
            ("Error: cannot open file", Some("error")),
            ("Caused by: java.io.IOException: Broken pipe", Some("exception")),
            ("ValueError: invalid literal", Some("exception")),
            ("Traceback (most recent call last):", Some("exception")),
            ("instruction cache parity error corrected", None),
            ("errors=0 warnings=2", None),
            ("level=info msg=\"error budget ok\"", None),
            ("ErrorHandler registered", None),
            ("", None),
        ] {
            assert_eq!(error_level(line), want, "{line}");
        }
    }

    #[test]
    fn merged_and_evicted_templates_keep_tracking_consistent() {
        let mut s = Stream::new(SignalParams { max_tracked_templates: 3, ..params() });
        for (i, user) in ["root", "admin", "guest", "oracle", "test"].iter().enumerate() {
            s.line(i as i64, &format!("Failed password for {user} from 1.2.3.4 port 22 ssh2"));
        }
        // Four variants merged into one template.
        assert_eq!(s.signals.tracked_templates(), 1);
        for i in 0..10 {
            s.line(100 + i, &format!("unrelated message number{i} kind{}", ["a", "b", "c", "d"][i as usize % 4]));
        }
        assert!(s.signals.tracked_templates() <= 3);
    }

    #[test]
    fn signals_are_deterministic() {
        let run = || {
            let mut s = Stream::new(SignalParams { warmup_lines: 10, ..params() });
            let mut out = Vec::new();
            for i in 0..3000i64 {
                let line = match i % 7 {
                    0 => format!("ERROR job {} failed", i % 13),
                    1 | 2 => format!("job {} done in {} ms", i % 11, i % 97),
                    3 => format!("user u{} logged in", i % 5),
                    _ => format!("tick {}", i),
                };
                let t = i * 37 + if i > 2000 { 5000 } else { 0 };
                out.extend(s.line(t, &line));
            }
            out.extend(s.signals.flush(i64::MAX));
            out
        };
        assert_eq!(run(), run());
    }

    #[test]
    fn params_are_validated() {
        assert!(SignalParams::default().validate().is_ok());
        for (p, name) in [
            (SignalParams { bucket_ms: 0, ..SignalParams::default() }, "bucket_ms"),
            (SignalParams { warmup_ms: -1, ..SignalParams::default() }, "warmup_ms"),
            (SignalParams { max_tracked_templates: 0, ..SignalParams::default() }, "max_tracked_templates"),
            (SignalParams { sample_max_bytes: 0, ..SignalParams::default() }, "sample_max_bytes"),
            (
                SignalParams {
                    rate: RobustBaselineParams { window: 1, ..RobustBaselineParams::default() },
                    ..SignalParams::default()
                },
                "window",
            ),
        ] {
            let err = LogSignals::new(p).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(err.contains(name), "{err}");
        }
        let err = serde_json::from_str::<SignalParams>(r#"{"bucket": 5}"#).map_err(|e| e.to_string());
        assert!(err.is_err_and(|e| e.contains("unknown field `bucket`")));
    }
}
