//! What every watch saw recently, kept so an incident's analysis can ask "what moved first".
//!
//! An incident opens only after `min_consecutive` anomalous points, and only on its own watch;
//! the root cause is often another series that started deviating earlier. So the engine
//! records every deviating or anomalous verdict of every watch here (in memory, bounded by
//! age and count): the onset of the current streak, the strongest deviation, and when the
//! series went back to normal. The analysis reads a time window of it.

use std::collections::BTreeMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use warden_detectors::rca::{Forecast, Subject};
use warden_detectors::{Detection, DetectionState};

/// How long ended streaks are kept.
const RETENTION_SECS: i64 = 3 * 3600;
/// At most this many streaks are kept (the oldest ended ones go first).
const MAX_ENTRIES: usize = 5000;

/// One streak of deviation of one series.
#[derive(Debug, Clone, PartialEq)]
pub struct Streak {
    pub watch: String,
    pub subject: Subject,
    /// Unix seconds of the first deviating point.
    pub onset: i64,
    /// Unix seconds of the last deviating point.
    pub last: i64,
    /// The value at the strongest point, and what was expected there.
    pub observed: f64,
    pub expected: Option<f64>,
    /// Strongest deviation, in robust standard deviations (or the detector's score scaled).
    pub strength: f64,
    /// When the series was judged normal again.
    pub ended: Option<i64>,
    /// A forecast watch's limit and when its latest forecast reaches it.
    pub forecast: Option<Forecast>,
}

/// The crossing a detection reports, in the evidence's units (Unix seconds).
fn forecast_of(d: &Detection) -> Option<Forecast> {
    d.explanation.crossing.map(|c| Forecast { limit: c.limit, crossing: c.at_ms.map(|ms| ms.div_euclid(1000)) })
}

/// Streaks by series fingerprint.
#[derive(Default)]
pub struct RecentAnomalies {
    streaks: Mutex<BTreeMap<String, Vec<Streak>>>,
}

/// Strength of a detection in robust standard deviations: the detector's z-score when it
/// gives one; otherwise its value against its threshold, scaled so the threshold reads as
/// [`AT_THRESHOLD`]; otherwise its score (0.5 = threshold). A point the detector judged
/// anomalous is at least at threshold strength, whatever the detector's own units.
pub fn strength(d: &Detection) -> f64 {
    let e = &d.explanation;
    let s = match (e.z_score, e.threshold) {
        (Some(z), _) if z.is_finite() => z.abs(),
        (None, Some(th)) if th.is_finite() && th > 0.0 && d.value.is_finite() => AT_THRESHOLD * d.value.abs() / th,
        _ if d.score.is_finite() => d.score.clamp(0.0, 1.0) * 2.0 * AT_THRESHOLD,
        _ => 0.0,
    };
    if d.state == DetectionState::Anomalous {
        s.max(AT_THRESHOLD)
    } else {
        s
    }
}

/// The strength a detection at its detector's threshold is given.
pub const AT_THRESHOLD: f64 = 5.0;

impl RecentAnomalies {
    /// Record a deviating or anomalous point. `step_secs` lets the onset go back over the
    /// points already counted as consecutive.
    pub fn deviating(&self, fingerprint: &str, watch: &str, subject: Subject, d: &Detection, step_secs: i64) {
        let t = d.timestamp_ms.div_euclid(1000);
        let back = i64::from(d.explanation.consecutive.saturating_sub(1)) * step_secs.max(0);
        let s = strength(d);
        let Ok(mut all) = self.streaks.lock() else { return };
        let list = all.entry(fingerprint.to_string()).or_default();
        match list.last_mut() {
            Some(cur) if cur.ended.is_none() => {
                cur.last = cur.last.max(t);
                // The latest forecast is the one to tell: the crossing moves as data comes.
                if let Some(f) = forecast_of(d) {
                    cur.forecast = Some(f);
                }
                if s > cur.strength {
                    cur.strength = s;
                    cur.observed = d.value;
                    cur.expected = d.expected;
                }
            }
            _ => list.push(Streak {
                watch: watch.to_string(),
                subject,
                onset: t - back,
                last: t,
                observed: d.value,
                expected: d.expected,
                strength: s,
                ended: None,
                forecast: forecast_of(d),
            }),
        }
        Self::prune(&mut all, t);
    }

    /// The series was judged normal at `at`: its open streak ends.
    pub fn normal(&self, fingerprint: &str, at: DateTime<Utc>) {
        let Ok(mut all) = self.streaks.lock() else { return };
        if let Some(cur) = all.get_mut(fingerprint).and_then(|l| l.last_mut()) {
            if cur.ended.is_none() {
                cur.ended = Some(at.timestamp());
            }
        }
    }

    /// Streaks that overlap `[from, to]`, oldest onset first.
    pub fn between(&self, from: i64, to: i64) -> Vec<Streak> {
        let Ok(all) = self.streaks.lock() else { return Vec::new() };
        let mut out: Vec<Streak> =
            all.values().flatten().filter(|s| s.onset <= to && s.ended.unwrap_or(i64::MAX) >= from).cloned().collect();
        out.sort_by(|a, b| a.onset.cmp(&b.onset).then_with(|| a.watch.cmp(&b.watch)));
        out
    }

    fn prune(all: &mut BTreeMap<String, Vec<Streak>>, now: i64) {
        for list in all.values_mut() {
            list.retain(|s| s.ended.is_none_or(|e| now - e < RETENTION_SECS));
        }
        all.retain(|_, l| !l.is_empty());
        let total: usize = all.values().map(Vec::len).sum();
        if total > MAX_ENTRIES {
            let mut ended: Vec<(i64, String)> =
                all.iter().flat_map(|(k, l)| l.iter().filter_map(|s| s.ended.map(|e| (e, k.clone())))).collect();
            ended.sort();
            for (_, key) in ended.into_iter().take(total - MAX_ENTRIES) {
                if let Some(l) = all.get_mut(&key) {
                    if let Some(i) = l.iter().position(|s| s.ended.is_some()) {
                        l.remove(i);
                    }
                }
            }
            all.retain(|_, l| !l.is_empty());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_detectors::{Deviation, Explanation};

    fn det(t: i64, v: f64, z: f64, consecutive: u32) -> Detection {
        Detection {
            timestamp_ms: t * 1000,
            value: v,
            score: 0.9,
            expected: Some(1.0),
            lower: None,
            upper: None,
            deviation: Deviation::Above,
            state: DetectionState::Anomalous,
            explanation: Explanation { z_score: Some(z), consecutive, ..Default::default() },
        }
    }

    #[test]
    fn a_streak_keeps_its_onset_and_strongest_point_and_ends() {
        let r = RecentAnomalies::default();
        let s = Subject::workload(Some("shop"), "checkout");
        r.deviating("fp", "lat", s.clone(), &det(1000, 5.0, 8.0, 1), 30);
        r.deviating("fp", "lat", s.clone(), &det(1030, 9.0, 12.0, 2), 30);
        r.deviating("fp", "lat", s.clone(), &det(1060, 7.0, 10.0, 3), 30);
        r.normal("fp", DateTime::from_timestamp(1090, 0).unwrap_or_default());
        let got = r.between(900, 1100);
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].onset, got[0].last, got[0].ended), (1000, 1060, Some(1090)));
        assert_eq!((got[0].observed, got[0].strength), (9.0, 12.0));
        assert!(r.between(1100, 1200).is_empty(), "ended before the window");
        // A new streak after the end is a new entry whose onset goes back over its
        // consecutive points.
        r.deviating("fp", "lat", s, &det(1200, 6.0, 7.0, 3), 30);
        assert_eq!(r.between(1100, 1300)[0].onset, 1140);
    }
}
