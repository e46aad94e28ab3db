//! Event-level scoring of anomaly flags on labelled series: delay-k segment F1, false-alarm
//! events, and an oracle best-F1 diagnostic.
//!
//! Operators judge a detector by whether it pages early for each incident and how often it
//! pages for nothing. Point-wise F1 rewards flagging every point of a long incident, and
//! point-adjust F1 rewards flagging one point anywhere in it, however late; the delay-k segment
//! F1 used for ops KPIs sits between the two and is what this module computes:
//!
//! * a labelled segment (a maximal run of anomalous points) counts as detected, as a whole,
//!   only if one of its first `k + 1` points is flagged; otherwise all its points are missed;
//! * flagged points outside segments are false positives, one by one;
//! * counts are summed over all series (one precision, recall and F1 over the concatenation).
//!
//! A *false-alarm event* is a run of consecutive flagged points outside any segment. Points
//! marked as not scored (a warm-up part given as history, the lead-in of a NAB window before
//! its label) count neither way and break runs.
//!
//! The best F1 over all thresholds of the scores is an oracle (it looks at the labels) and is
//! only reported as a diagnostic of how well the score separates, never as a result.

/// One series after detection, on a regular grid.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SeriesOutcome {
    /// Series name.
    pub name: String,
    /// Flag per point.
    pub flags: Vec<bool>,
    /// Anomaly score per point (for the oracle diagnostic); higher is more anomalous.
    pub scores: Vec<f64>,
    /// Label per point.
    pub labels: Vec<bool>,
    /// Whether the point is scored at all.
    pub scored: Vec<bool>,
    /// Seconds between grid points.
    pub interval_s: f64,
}

/// Counts summed over series.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Points of detected segments.
    pub tp: u64,
    /// Flagged points outside segments.
    pub fp: u64,
    /// Points of missed segments.
    pub fn_: u64,
    /// Labelled segments.
    pub segments: u64,
    /// Segments detected within the delay.
    pub detected: u64,
    /// False-alarm events (runs of flagged points outside segments).
    pub events: u64,
    /// Scored points outside segments.
    pub normal_points: u64,
}

impl Counts {
    /// Add `other` to these counts.
    pub fn add(&mut self, other: &Counts) {
        self.tp += other.tp;
        self.fp += other.fp;
        self.fn_ += other.fn_;
        self.segments += other.segments;
        self.detected += other.detected;
        self.events += other.events;
        self.normal_points += other.normal_points;
    }

    /// Precision (1 when nothing is flagged).
    pub fn precision(&self) -> f64 {
        let d = self.tp + self.fp;
        if d == 0 {
            1.0
        } else {
            self.tp as f64 / d as f64
        }
    }

    /// Recall (1 when there is nothing to find).
    pub fn recall(&self) -> f64 {
        let d = self.tp + self.fn_;
        if d == 0 {
            1.0
        } else {
            self.tp as f64 / d as f64
        }
    }

    /// F1 of precision and recall (0 when both are 0).
    pub fn f1(&self) -> f64 {
        let d = 2 * self.tp + self.fp + self.fn_;
        if d == 0 {
            0.0
        } else {
            2.0 * self.tp as f64 / d as f64
        }
    }
}

/// Maximal runs `[start, end)` of scored, labelled points.
pub fn segments(labels: &[bool], scored: &[bool]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for i in 0..=labels.len() {
        let on = labels.get(i).copied().unwrap_or(false) && scored.get(i).copied().unwrap_or(false);
        match (on, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    out
}

/// Delay-`k` counts of one series.
pub fn delay_counts(o: &SeriesOutcome, k: usize) -> Counts {
    let mut c = Counts::default();
    let n = o.labels.len().min(o.flags.len()).min(o.scored.len());
    for (s, e) in segments(&o.labels[..n], &o.scored[..n]) {
        c.segments += 1;
        let len = (e - s) as u64;
        let lim = (s + k + 1).min(e);
        if o.flags[s..lim].iter().any(|&f| f) {
            c.detected += 1;
            c.tp += len;
        } else {
            c.fn_ += len;
        }
    }
    let mut in_event = false;
    for i in 0..n {
        let outside = o.scored[i] && !o.labels[i];
        if outside {
            c.normal_points += 1;
        }
        let fp = outside && o.flags[i];
        if fp {
            c.fp += 1;
            if !in_event {
                c.events += 1;
            }
        }
        in_event = fp;
    }
    c
}

/// False-alarm events per series-week of anomaly-free time.
pub fn events_per_week(events: u64, normal_seconds: f64) -> f64 {
    if normal_seconds <= 0.0 {
        0.0
    } else {
        events as f64 / (normal_seconds / 604_800.0)
    }
}

/// The best delay-`k` F1 over all thresholds `score >= θ` (an oracle: it reads the labels),
/// and the threshold that reaches it.
pub fn oracle_best_f1(outcomes: &[SeriesOutcome], k: usize) -> (f64, f64) {
    // (score, is_segment, weight): a segment is detected iff θ <= the best score in its first
    // k+1 points, and then brings all its points; an outside point costs one FP iff θ <= score.
    let mut items: Vec<(f64, bool, u64)> = Vec::new();
    let mut total_seg = 0u64;
    for o in outcomes {
        let n = o.labels.len().min(o.scores.len()).min(o.scored.len());
        for (s, e) in segments(&o.labels[..n], &o.scored[..n]) {
            let lim = (s + k + 1).min(e);
            let best = o.scores[s..lim].iter().copied().fold(f64::NEG_INFINITY, f64::max);
            total_seg += (e - s) as u64;
            items.push((best, true, (e - s) as u64));
        }
        for i in 0..n {
            if o.scored[i] && !o.labels[i] {
                items.push((o.scores[i], false, 1));
            }
        }
    }
    items.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
    let (mut tp, mut fp) = (0u64, 0u64);
    let (mut best, mut best_t) = (0.0, f64::INFINITY);
    let mut i = 0;
    while i < items.len() {
        let t = items[i].0;
        while i < items.len() && items[i].0 == t {
            if items[i].1 {
                tp += items[i].2;
            } else {
                fp += items[i].2;
            }
            i += 1;
        }
        let f = 2.0 * tp as f64 / (2 * tp + fp + (total_seg - tp)).max(1) as f64;
        if f > best {
            best = f;
            best_t = t;
        }
    }
    (best, best_t)
}

/// Place rows with timestamps `ts_ms` on a regular grid at their minimum positive interval:
/// the grid position of every row, the grid length and the interval. `None` when the grid
/// would be more than `max_blowup` times longer than the rows (jittery timestamps), or there
/// are fewer than two distinct increasing timestamps.
pub fn regular_grid(ts_ms: &[i64], max_blowup: usize) -> Option<(Vec<usize>, usize, i64)> {
    let interval = ts_ms.windows(2).map(|w| w[1] - w[0]).filter(|&d| d > 0).min()?;
    let t0 = *ts_ms.first()?;
    let mut pos = Vec::with_capacity(ts_ms.len());
    let mut last = 0usize;
    for &t in ts_ms {
        let p = usize::try_from((t - t0) / interval).ok()?.max(last);
        pos.push(p);
        last = p;
    }
    let len = last + 1;
    (len <= ts_ms.len().saturating_mul(max_blowup)).then_some((pos, len, interval))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(flags: &[u8], labels: &[u8]) -> SeriesOutcome {
        SeriesOutcome {
            name: "s".into(),
            flags: flags.iter().map(|&f| f == 1).collect(),
            scores: flags.iter().map(|&f| f64::from(f)).collect(),
            labels: labels.iter().map(|&f| f == 1).collect(),
            scored: vec![true; labels.len()],
            interval_s: 60.0,
        }
    }

    #[test]
    fn a_segment_counts_whole_only_when_flagged_within_the_delay() {
        //                 segment of 5 at 2..7, flagged at its 3rd point; FP run at 9..11.
        let o = outcome(&[0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 1, 0], &[0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0]);
        let c = delay_counts(&o, 2);
        assert_eq!((c.tp, c.fp, c.fn_, c.events, c.detected, c.segments), (5, 2, 0, 1, 1, 1));
        let c = delay_counts(&o, 1);
        assert_eq!((c.tp, c.fp, c.fn_), (0, 2, 5));
        assert!((delay_counts(&o, 2).f1() - 10.0 / 12.0).abs() < 1e-12);
        let (best, _) = oracle_best_f1(&[o], 2);
        assert!((best - 10.0 / 12.0).abs() < 1e-12, "{best}");
    }

    #[test]
    fn unscored_points_count_neither_way() {
        let mut o = outcome(&[1, 1, 0, 1], &[0, 0, 0, 1]);
        o.scored[0] = false;
        let c = delay_counts(&o, 7);
        assert_eq!((c.tp, c.fp, c.events, c.normal_points), (1, 1, 1, 2));
    }

    #[test]
    fn grid_puts_gaps_in() {
        let (pos, len, iv) = regular_grid(&[0, 60, 180, 240], 4).unwrap_or_default();
        assert_eq!((pos, len, iv), (vec![0, 1, 3, 4], 5, 60));
        assert!(regular_grid(&[0, 1, 1000], 4).is_none());
    }
}
