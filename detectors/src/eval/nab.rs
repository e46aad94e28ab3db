//! NAB v1.1 scoring (Numenta Anomaly Benchmark), exactly as the reference scorer computes it.
//!
//! Claims like "this detector scores 70 on NAB" are only comparable with the published
//! scoreboard if the score is computed the way NAB computes it, including its less obvious
//! rules: the probationary period, the scaled sigmoid that rewards the *earliest* detection in a
//! window, a separate weight for every false-positive row, one threshold per profile shared by
//! the whole corpus (chosen by an exhaustive sorted sweep in v1.1) and the normalization against
//! the null and perfect detectors. This module holds those rules as pure functions on in-memory
//! data, so they can be unit-tested on hand-computed examples and checked against NAB's
//! published results; reading the corpus is the agent's job (`warden bench nab`).
//!
//! # The rules, per file of `n` rows
//!
//! * Probation: `P = min(floor(0.15 n), 750)`; rows `i < P` are never detections and never
//!   false negatives ([`probation`]).
//! * Scaled sigmoid `S(p) = -1` if `p > 3`, else `2 / (1 + e^(5p)) - 1`; `maxTP = S(-1)`
//!   ([`scaled_sigmoid`], [`MAX_TP`]).
//! * Every row gets a weight ([`row_weights`]): inside window `k` (`[L, R]`, width `w`) it is
//!   `S(-(R - i + 1) / w) * A_TP / maxTP`; before any window it is `-A_FP`; after window `k'`
//!   (the latest one that has ended) it is `S((i - R') / (w' - 1)) * A_FP`.
//! * A detection is a row `i >= P` whose anomaly score is `>= θ`. A file scores the sum of the
//!   weights of its detections outside windows, plus, per window, the weight of its earliest
//!   detection or `-A_FN` if it has none ([`score_file`]).
//! * The corpus score is the sum over files at one threshold ([`score_corpus`]); the v1.1
//!   optimizer sweeps every distinct anomaly score, highest first, and keeps the best, the
//!   highest threshold on a tie ([`optimize_threshold`]).
//! * `NAB = 100 (S - S_null) / (S_perfect - S_null)` with `S_perfect = A_TP · windows` and
//!   `S_null = -A_FN · windows` ([`normalize`]).

use std::collections::BTreeMap;

use crate::error::{Error, Result};

/// `S(-1) = 2σ(5) - 1`: the weight of a detection on the first row of a window before it is
/// scaled to `A_TP`.
pub const MAX_TP: f64 = 0.986_614_298_151_430_5;

/// Threshold of the "no detection" candidate in the sweep (above every valid score).
pub const NO_DETECTION_THRESHOLD: f64 = 1.1;

/// Fraction of a file that is probationary.
const PROBATION_PERCENT: f64 = 0.15;

/// The weights of one scoring profile (NAB's `config/profiles.json` cost matrix; the
/// true-negative weight is not used by the scorer and is not kept).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CostMatrix {
    /// Weight of a true positive (`A_TP`).
    pub tp_weight: f64,
    /// Weight of a false-positive row (`A_FP`).
    pub fp_weight: f64,
    /// Weight of a missed window (`A_FN`).
    pub fn_weight: f64,
}

impl CostMatrix {
    /// Check that every weight is finite and not negative.
    pub fn validate(&self) -> Result<()> {
        for (name, value) in
            [("tp_weight", self.tp_weight), ("fp_weight", self.fp_weight), ("fn_weight", self.fn_weight)]
        {
            if !(value.is_finite() && value >= 0.0) {
                return Err(Error::InvalidParam {
                    name,
                    message: format!("must be finite and at least 0, got {value}"),
                });
            }
        }
        Ok(())
    }
}

/// The three NAB scoring profiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Profile {
    /// `standard`: A_TP 1, A_FP 0.11, A_FN 1.
    Standard,
    /// `reward_low_FP_rate`: A_TP 1, A_FP 0.22, A_FN 1.
    RewardLowFp,
    /// `reward_low_FN_rate`: A_TP 1, A_FP 0.11, A_FN 2.
    RewardLowFn,
}

impl Profile {
    /// All profiles, in NAB's reporting order.
    pub const ALL: [Profile; 3] = [Profile::Standard, Profile::RewardLowFp, Profile::RewardLowFn];

    /// The name NAB uses in its configuration and result files.
    pub fn nab_name(self) -> &'static str {
        match self {
            Profile::Standard => "standard",
            Profile::RewardLowFp => "reward_low_FP_rate",
            Profile::RewardLowFn => "reward_low_FN_rate",
        }
    }

    /// Short snake-case key, used in Warden's JSON output.
    pub fn key(self) -> &'static str {
        match self {
            Profile::Standard => "standard",
            Profile::RewardLowFp => "reward_low_fp",
            Profile::RewardLowFn => "reward_low_fn",
        }
    }

    /// The profile whose [`nab_name`](Self::nab_name) or [`key`](Self::key) is `name`.
    pub fn from_name(name: &str) -> Option<Profile> {
        Profile::ALL.into_iter().find(|p| p.nab_name() == name || p.key() == name)
    }

    /// The weights NAB v1.1 ships for this profile.
    pub fn costs(self) -> CostMatrix {
        match self {
            Profile::Standard => CostMatrix { tp_weight: 1.0, fp_weight: 0.11, fn_weight: 1.0 },
            Profile::RewardLowFp => CostMatrix { tp_weight: 1.0, fp_weight: 0.22, fn_weight: 1.0 },
            Profile::RewardLowFn => CostMatrix { tp_weight: 1.0, fp_weight: 0.11, fn_weight: 2.0 },
        }
    }
}

/// An inclusive range of row indices labelled anomalous.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// First row of the window.
    pub start: usize,
    /// Last row of the window (inclusive).
    pub end: usize,
}

impl Window {
    /// Number of rows in the window.
    pub fn width(&self) -> usize {
        self.end - self.start + 1
    }
}

/// One data file with the detector's anomaly score for every row and its labelled windows.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredFile {
    name: String,
    scores: Vec<f64>,
    windows: Vec<Window>,
}

impl ScoredFile {
    /// A file named `name` (NAB's relative path, `category/file.csv`; the part before the
    /// first `/` is the category).
    ///
    /// Fails if a score is not a finite number in `[0, 1]` (NAB rejects such scores) or if the
    /// windows are not sorted, overlap, are empty or reach past the last row.
    pub fn new(name: impl Into<String>, scores: Vec<f64>, windows: Vec<Window>) -> Result<Self> {
        let name = name.into();
        if let Some((i, s)) = scores.iter().enumerate().find(|(_, s)| !(s.is_finite() && (0.0..=1.0).contains(*s))) {
            return Err(Error::InvalidInput {
                what: format!("anomaly scores of {name}"),
                message: format!("row {i}: score {s} is not a number in [0, 1]"),
            });
        }
        let mut previous_end: Option<usize> = None;
        for (k, w) in windows.iter().enumerate() {
            let problem = if w.start > w.end {
                Some(format!("starts at row {} after its end {}", w.start, w.end))
            } else if w.end >= scores.len() {
                Some(format!("ends at row {} but the file has {} rows", w.end, scores.len()))
            } else if previous_end.is_some_and(|e| w.start <= e) {
                Some(format!("starts at row {}, not after the previous window", w.start))
            } else {
                None
            };
            if let Some(message) = problem {
                return Err(Error::InvalidInput {
                    what: format!("windows of {name}"),
                    message: format!("window {k}: {message}"),
                });
            }
            previous_end = Some(w.end);
        }
        Ok(Self { name, scores, windows })
    }

    /// NAB's relative path of the file.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The category: the part of the name before the first `/` (the whole name if none).
    pub fn category(&self) -> &str {
        self.name.split('/').next().unwrap_or(&self.name)
    }

    /// Anomaly score of every row.
    pub fn scores(&self) -> &[f64] {
        &self.scores
    }

    /// The labelled windows, sorted.
    pub fn windows(&self) -> &[Window] {
        &self.windows
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.scores.len()
    }

    /// Whether the file has no rows.
    pub fn is_empty(&self) -> bool {
        self.scores.is_empty()
    }
}

/// NAB's canonical form of a timestamp: a fractional part made of zeros only is dropped, so
/// that the label `2014-07-01 00:00:00.000000` matches the row `2014-07-01 00:00:00`.
fn canonical_timestamp(s: &str) -> &str {
    let s = s.trim();
    match s.rsplit_once('.') {
        Some((head, frac)) if !frac.is_empty() && frac.bytes().all(|b| b == b'0') => head,
        _ => s,
    }
}

/// Windows as row ranges: each `(start, end)` timestamp pair is located by exact timestamp
/// equality with a row (a zero fractional second part, as in NAB's labels, is ignored).
///
/// `what` names the file in errors. Fails if an end matches no row or if a window ends
/// before it starts.
pub fn locate_windows<T: AsRef<str>>(
    what: &str,
    timestamps: &[T],
    windows: &[(String, String)],
) -> Result<Vec<Window>> {
    let mut index: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, t) in timestamps.iter().enumerate() {
        index.entry(canonical_timestamp(t.as_ref())).or_insert(i);
    }
    let find = |t: &str| -> Result<usize> {
        index.get(canonical_timestamp(t)).copied().ok_or_else(|| Error::InvalidInput {
            what: format!("windows of {what}"),
            message: format!("timestamp `{t}` matches no row"),
        })
    };
    windows
        .iter()
        .map(|(start, end)| {
            let (start_row, end_row) = (find(start)?, find(end)?);
            if start_row > end_row {
                return Err(Error::InvalidInput {
                    what: format!("windows of {what}"),
                    message: format!("window `{start}` .. `{end}` ends before it starts"),
                });
            }
            Ok(Window { start: start_row, end: end_row })
        })
        .collect()
}

/// Length of the probationary period of a file of `n` rows: `min(floor(0.15 n), 750)`.
/// Rows with index `< probation(n)` are not scored.
pub fn probation(n: usize) -> usize {
    let by_length = (PROBATION_PERCENT * n as f64).floor();
    let cap = PROBATION_PERCENT * 5000.0;
    // Both values are small non-negative integers (at most 750), so the cast is exact.
    by_length.min(cap) as usize
}

/// The scaled sigmoid: `-1` for `p > 3`, else `2 / (1 + e^(5p)) - 1`.
pub fn scaled_sigmoid(p: f64) -> f64 {
    if p > 3.0 {
        -1.0
    } else {
        2.0 / (1.0 + (5.0 * p).exp()) - 1.0
    }
}

/// The weight `s_i` of every row of a file of `n` rows (see the [module docs](self)); rows
/// of the probationary period get a weight too, but it is never used.
///
/// `windows` must be sorted, non-overlapping and inside `0..n` (as [`ScoredFile::new`]
/// checks).
pub fn row_weights(n: usize, windows: &[Window], costs: &CostMatrix) -> Vec<f64> {
    let mut weights = Vec::with_capacity(n);
    let mut next = windows.iter().peekable();
    let mut current: Option<Window> = None;
    let mut previous: Option<Window> = None;
    for i in 0..n {
        if current.is_none() {
            if let Some(w) = next.next_if(|w| w.start == i) {
                current = Some(*w);
            }
        }
        let weight = match (current, previous) {
            (Some(w), _) => {
                let position = -((w.end - i + 1) as f64) / w.width() as f64;
                scaled_sigmoid(position) * costs.tp_weight / MAX_TP
            }
            (None, None) => -costs.fp_weight,
            (None, Some(w)) => {
                let position = if w.width() > 1 { (i - w.end) as f64 / (w.width() - 1) as f64 } else { f64::INFINITY };
                scaled_sigmoid(position) * costs.fp_weight
            }
        };
        weights.push(weight);
        if let Some(w) = current.filter(|w| w.end == i) {
            previous = Some(w);
            current = None;
        }
    }
    weights
}

/// The score of one file at one threshold, with the counts behind it.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FileScore {
    /// Raw (unnormalized) NAB score.
    pub score: f64,
    /// Windows with at least one detection.
    pub detected_windows: usize,
    /// Windows without a detection.
    pub missed_windows: usize,
    /// Detections outside every window.
    pub false_positives: usize,
    /// Number of windows.
    pub windows: usize,
}

/// Score `file` at `threshold` with `costs` (see the [module docs](self)).
pub fn score_file(file: &ScoredFile, costs: &CostMatrix, threshold: f64) -> FileScore {
    let weights = row_weights(file.len(), &file.windows, costs);
    score_with_weights(file, &weights, costs, threshold)
}

fn score_with_weights(file: &ScoredFile, weights: &[f64], costs: &CostMatrix, threshold: f64) -> FileScore {
    let p = probation(file.len());
    let mut result = FileScore { windows: file.windows.len(), ..FileScore::default() };
    let mut in_window = vec![false; file.len()];
    for w in &file.windows {
        // The earliest detection is the best one: S is decreasing in the position.
        let first = (w.start.max(p)..=w.end).find(|&i| file.scores[i] >= threshold);
        match first.and_then(|i| weights.get(i)) {
            Some(weight) => {
                result.score += weight;
                result.detected_windows += 1;
            }
            None => {
                result.score -= costs.fn_weight;
                result.missed_windows += 1;
            }
        }
        for flag in in_window.iter_mut().take(w.end + 1).skip(w.start) {
            *flag = true;
        }
    }
    for i in p..file.len() {
        if !in_window[i] && file.scores[i] >= threshold {
            result.score += weights[i];
            result.false_positives += 1;
        }
    }
    result
}

/// Raw corpus score at one threshold: the sum of [`score_file`] over `files`.
pub fn score_corpus(files: &[ScoredFile], costs: &CostMatrix, threshold: f64) -> f64 {
    files.iter().map(|f| score_file(f, costs, threshold).score).sum()
}

/// Number of windows in the corpus.
pub fn window_count(files: &[ScoredFile]) -> usize {
    files.iter().map(|f| f.windows.len()).sum()
}

/// `100 (raw - S_null) / (S_perfect - S_null)` with `S_perfect = A_TP · windows` and
/// `S_null = -A_FN · windows`. `None` without windows or with zero weights, where the
/// normalization is undefined.
pub fn normalize(raw: f64, costs: &CostMatrix, windows: usize) -> Option<f64> {
    let w = windows as f64;
    let null = -costs.fn_weight * w;
    let perfect = costs.tp_weight * w;
    let span = perfect - null;
    (span > 0.0).then(|| 100.0 * (raw - null) / span)
}

/// The best threshold of a corpus and its raw score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Optimum {
    /// The threshold (a detection is a score `>=` it); [`NO_DETECTION_THRESHOLD`] when no
    /// detection at all scores best.
    pub threshold: f64,
    /// Raw corpus score at the threshold.
    pub score: f64,
}

/// Running sum with Neumaier compensation, so that the sweep's totals do not drift over the
/// hundreds of thousands of additions of a corpus.
#[derive(Debug, Clone, Copy, Default)]
struct Sum {
    sum: f64,
    compensation: f64,
}

impl Sum {
    fn add(&mut self, x: f64) {
        let t = self.sum + x;
        if self.sum.abs() >= x.abs() {
            self.compensation += (self.sum - t) + x;
        } else {
            self.compensation += (x - t) + self.sum;
        }
        self.sum = t;
    }

    fn value(&self) -> f64 {
        self.sum + self.compensation
    }
}

/// The v1.1 threshold optimizer: an exact sweep over every candidate threshold.
///
/// The non-probationary rows of all files are sorted by anomaly score, highest first, and
/// added one group of equal scores at a time; the corpus score is recorded before the first
/// group (threshold [`NO_DETECTION_THRESHOLD`], no detection) and after each group (threshold:
/// the group's score). The best score wins; on a tie the highest threshold. Cost:
/// `O(rows · log(rows))`.
pub fn optimize_threshold(files: &[ScoredFile], costs: &CostMatrix) -> Optimum {
    struct Row {
        score: f64,
        weight: f64,
        /// Index of the row's window in the corpus, if it is inside one.
        window: Option<usize>,
    }
    let mut rows = Vec::new();
    let mut window_base = 0;
    for file in files {
        let weights = row_weights(file.len(), &file.windows, costs);
        let mut window_of = vec![None; file.len()];
        for (k, w) in file.windows.iter().enumerate() {
            for slot in window_of.iter_mut().take(w.end + 1).skip(w.start) {
                *slot = Some(window_base + k);
            }
        }
        window_base += file.windows.len();
        let p = probation(file.len());
        for i in p..file.len() {
            rows.push(Row { score: file.scores[i], weight: weights[i], window: window_of[i] });
        }
    }
    // Stable sort, highest score first; scores are finite (checked by `ScoredFile::new`).
    rows.sort_by(|a, b| b.score.total_cmp(&a.score));

    let mut best_in_window: Vec<Option<f64>> = vec![None; window_base];
    let mut total = Sum::default();
    total.add(-costs.fn_weight * window_base as f64);
    let mut best = Optimum { threshold: NO_DETECTION_THRESHOLD, score: total.value() };
    let mut k = 0;
    while k < rows.len() {
        let threshold = rows[k].score;
        while k < rows.len() && rows[k].score == threshold {
            let row = &rows[k];
            match row.window.and_then(|w| best_in_window.get_mut(w)) {
                None => total.add(row.weight),
                Some(slot) => match slot {
                    None => {
                        total.add(row.weight + costs.fn_weight);
                        *slot = Some(row.weight);
                    }
                    Some(previous) if row.weight > *previous => {
                        total.add(row.weight - *previous);
                        *previous = row.weight;
                    }
                    Some(_) => {}
                },
            }
            k += 1;
        }
        let score = total.value();
        if score > best.score {
            best = Optimum { threshold, score };
        }
    }
    best
}

/// Scores of one category of the corpus at one threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct CategoryScore {
    /// The category (e.g. `realKnownCause`).
    pub category: String,
    /// Number of files.
    pub files: usize,
    /// Raw score, summed over the category's files.
    pub raw: f64,
    /// The raw score normalized against the category's own null and perfect scores; `None`
    /// for a category without windows.
    pub normalized: Option<f64>,
    /// Number of windows.
    pub windows: usize,
    /// Windows with at least one detection.
    pub detected_windows: usize,
    /// Detections outside every window.
    pub false_positives: usize,
}

/// Per-category breakdown of a corpus at one threshold, sorted by category name.
pub fn category_breakdown(files: &[ScoredFile], costs: &CostMatrix, threshold: f64) -> Vec<CategoryScore> {
    let mut by_category: BTreeMap<&str, CategoryScore> = BTreeMap::new();
    for file in files {
        let s = score_file(file, costs, threshold);
        let entry = by_category.entry(file.category()).or_insert_with(|| CategoryScore {
            category: file.category().to_string(),
            files: 0,
            raw: 0.0,
            normalized: None,
            windows: 0,
            detected_windows: 0,
            false_positives: 0,
        });
        entry.files += 1;
        entry.raw += s.score;
        entry.windows += s.windows;
        entry.detected_windows += s.detected_windows;
        entry.false_positives += s.false_positives;
    }
    by_category
        .into_values()
        .map(|mut c| {
            c.normalized = normalize(c.raw, costs, c.windows);
            c
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STD: CostMatrix = CostMatrix { tp_weight: 1.0, fp_weight: 0.11, fn_weight: 1.0 };

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    fn sigmoid(x: f64) -> f64 {
        1.0 / (1.0 + (-x).exp())
    }

    #[test]
    fn probation_matches_nab() {
        assert_eq!(probation(4032), 604);
        assert_eq!(probation(22695), 750);
        assert_eq!(probation(5000), 750);
        assert_eq!(probation(20), 3);
        assert_eq!(probation(10), 1);
        assert_eq!(probation(6), 0);
        assert_eq!(probation(0), 0);
    }

    #[test]
    fn sigmoid_constants() {
        assert!(close(MAX_TP, 2.0 * sigmoid(5.0) - 1.0));
        assert!(close(scaled_sigmoid(-1.0), MAX_TP));
        assert!(close(scaled_sigmoid(0.0), 0.0));
        assert_eq!(scaled_sigmoid(3.000_001), -1.0);
        assert!(close(scaled_sigmoid(3.0), 2.0 * sigmoid(-15.0) - 1.0));
        assert!(close(scaled_sigmoid(0.5), 2.0 * sigmoid(-2.5) - 1.0));
    }

    #[test]
    fn profiles_by_name() {
        assert_eq!(Profile::from_name("reward_low_FP_rate"), Some(Profile::RewardLowFp));
        assert_eq!(Profile::from_name("reward_low_fn"), Some(Profile::RewardLowFn));
        assert_eq!(Profile::from_name("other"), None);
        assert_eq!(Profile::Standard.costs(), STD);
        assert!(Profile::RewardLowFn.costs().validate().is_ok());
        let bad = CostMatrix { fp_weight: f64::NAN, ..STD };
        assert!(bad.validate().is_err());
    }

    /// 10 rows, one window [4, 6] (width 3): hand-computed weights.
    #[test]
    fn row_weights_by_hand() {
        let w = row_weights(10, &[Window { start: 4, end: 6 }], &STD);
        for weight in &w[..4] {
            assert!(close(*weight, -0.11));
        }
        // Inside: positions -3/3, -2/3, -1/3.
        assert!(close(w[4], 1.0));
        assert!(close(w[5], scaled_sigmoid(-2.0 / 3.0) / MAX_TP));
        assert!(close(w[6], scaled_sigmoid(-1.0 / 3.0) / MAX_TP));
        assert!(w[6] > 0.0 && w[6] < w[5] && w[5] < w[4]);
        // After: positions (i - 6) / 2 = 0.5, 1, 1.5.
        assert!(close(w[7], scaled_sigmoid(0.5) * 0.11));
        assert!(close(w[8], scaled_sigmoid(1.0) * 0.11));
        assert!(close(w[9], scaled_sigmoid(1.5) * 0.11));
        assert!(w[7] > w[8] && w[8] > w[9] && w[9] > -0.11);
    }

    #[test]
    fn row_weights_far_after_window_and_between_windows() {
        let windows = [Window { start: 2, end: 3 }, Window { start: 12, end: 13 }];
        let w = row_weights(20, &windows, &STD);
        // Width 2: position i - 3; beyond 3 the weight is -A_FP.
        assert!(close(w[6], scaled_sigmoid(3.0) * 0.11));
        assert!(close(w[7], -0.11));
        assert!(close(w[11], -0.11));
        assert!(close(w[12], 1.0));
        assert!(close(w[14], scaled_sigmoid(1.0) * 0.11));
    }

    fn file(scores: Vec<f64>, windows: Vec<Window>) -> ScoredFile {
        ScoredFile::new("cat/file.csv", scores, windows).expect("valid file")
    }

    /// 20 rows (probation 3), window [10, 14] (width 5).
    #[test]
    fn score_file_by_hand() {
        let mut scores = vec![0.0; 20];
        scores[1] = 0.9; // probationary: ignored
        scores[5] = 0.6; // false positive before the window: -0.11
        scores[12] = 0.7; // third row of the window: S(-3/5)/maxTP
        scores[13] = 0.95; // later in the window: adds nothing
        scores[16] = 0.8; // two rows after the window: S(2/4) * 0.11
        let f = file(scores, vec![Window { start: 10, end: 14 }]);
        let expected_tp = scaled_sigmoid(-3.0 / 5.0) / MAX_TP;
        let expected_fp_after = scaled_sigmoid(0.5) * 0.11;

        let s = score_file(&f, &STD, 0.5);
        assert!(close(s.score, -0.11 + expected_tp + expected_fp_after), "{s:?}");
        assert_eq!((s.detected_windows, s.missed_windows, s.false_positives), (1, 0, 2));

        // θ = 0.75: row 13 is the earliest detection, row 16 the only false positive.
        let s = score_file(&f, &STD, 0.75);
        let tp13 = scaled_sigmoid(-2.0 / 5.0) / MAX_TP;
        assert!(close(s.score, tp13 + expected_fp_after), "{s:?}");

        // θ = 0.96: nothing detected, the window is missed.
        let s = score_file(&f, &STD, 0.96);
        assert!(close(s.score, -1.0));
        assert_eq!((s.detected_windows, s.missed_windows, s.false_positives), (0, 1, 0));

        // Low-FN profile: a miss costs 2.
        let s = score_file(&f, &Profile::RewardLowFn.costs(), 0.96);
        assert!(close(s.score, -2.0));
    }

    #[test]
    fn threshold_is_inclusive() {
        let mut scores = vec![0.0; 20];
        scores[10] = 0.5;
        let f = file(scores, vec![Window { start: 10, end: 14 }]);
        assert!(close(score_file(&f, &STD, 0.5).score, 1.0));
        assert!(close(score_file(&f, &STD, 0.500_000_1).score, -1.0));
    }

    #[test]
    fn optimizer_matches_brute_force_and_prefers_high_thresholds() {
        let mut a = vec![0.0; 20];
        a[5] = 0.6;
        a[11] = 0.7;
        a[16] = 0.8;
        a[18] = 0.3;
        let mut b = vec![0.1; 30];
        b[8] = 0.8;
        b[20] = 0.6;
        b[25] = 0.9;
        let files = vec![
            file(a, vec![Window { start: 10, end: 14 }]),
            ScoredFile::new("other/b.csv", b, vec![Window { start: 19, end: 24 }]).expect("valid"),
        ];
        for costs in Profile::ALL.map(Profile::costs) {
            let opt = optimize_threshold(&files, &costs);
            let mut candidates: Vec<f64> =
                files.iter().flat_map(|f| f.scores()[probation(f.len())..].to_vec()).collect();
            candidates.push(NO_DETECTION_THRESHOLD);
            candidates.sort_by(|x, y| y.total_cmp(x));
            candidates.dedup();
            let mut brute = Optimum { threshold: f64::NAN, score: f64::NEG_INFINITY };
            for &t in &candidates {
                let s = score_corpus(&files, &costs, t);
                if s > brute.score + 1e-12 {
                    brute = Optimum { threshold: t, score: s };
                }
            }
            assert_eq!(opt.threshold, brute.threshold, "{costs:?}");
            assert!(close(opt.score, brute.score), "{opt:?} vs {brute:?}");
        }
    }

    #[test]
    fn optimizer_without_useful_detection_keeps_no_detection() {
        // 60 rows (probation 9), window [50, 54]: detecting everything costs 41 false
        // positives before the window, more than the missed window.
        let mut scores = vec![0.0; 60];
        scores[20] = 0.9; // only a false positive
        let f = file(scores, vec![Window { start: 50, end: 54 }]);
        let opt = optimize_threshold(&[f], &STD);
        assert_eq!(opt.threshold, NO_DETECTION_THRESHOLD);
        assert!(close(opt.score, -1.0));
    }

    #[test]
    fn optimizer_tie_takes_highest_threshold() {
        // Rows 12 and 13 are in the same window after row 11: lowering the threshold from
        // 0.9 to 0.8 and 0.7 changes nothing, so 0.9 must win.
        let mut scores = vec![0.0; 20];
        scores[11] = 0.9;
        scores[12] = 0.8;
        scores[13] = 0.7;
        let f = file(scores, vec![Window { start: 10, end: 14 }]);
        let opt = optimize_threshold(&[f], &STD);
        assert_eq!(opt.threshold, 0.9);
    }

    #[test]
    fn normalization() {
        assert_eq!(normalize(-116.0, &STD, 116), Some(0.0));
        assert_eq!(normalize(116.0, &STD, 116), Some(100.0));
        let s = normalize(46.634_450_197_1, &STD, 116).unwrap_or(f64::NAN);
        assert!((s - 70.101).abs() < 1e-3, "{s}");
        let fn_costs = Profile::RewardLowFn.costs();
        assert_eq!(normalize(-232.0, &fn_costs, 116), Some(0.0));
        assert!(close(normalize(0.0, &fn_costs, 116).unwrap_or(f64::NAN), 100.0 * 232.0 / 348.0));
        assert_eq!(normalize(3.0, &STD, 0), None);
    }

    #[test]
    fn categories_are_grouped_and_normalized() {
        let mut a = vec![0.0; 20];
        a[10] = 1.0;
        let f1 = ScoredFile::new("x/a.csv", a, vec![Window { start: 10, end: 14 }]).expect("ok");
        let mut b = vec![0.0; 20];
        b[5] = 1.0;
        let f2 = ScoredFile::new("y/b.csv", b, Vec::new()).expect("ok");
        let c = category_breakdown(&[f2, f1], &STD, 0.5);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].category, "x");
        assert_eq!(c[0].normalized, Some(100.0));
        assert_eq!((c[0].detected_windows, c[0].windows), (1, 1));
        assert_eq!(c[1].category, "y");
        assert!(close(c[1].raw, -0.11));
        assert_eq!(c[1].normalized, None);
        assert_eq!(c[1].false_positives, 1);
    }

    #[test]
    fn invalid_files_are_rejected() {
        let e = ScoredFile::new("f", vec![0.0, 1.5], Vec::new());
        assert!(matches!(e, Err(Error::InvalidInput { .. })));
        let e = ScoredFile::new("f", vec![0.0, f64::NAN], Vec::new());
        assert!(e.is_err());
        let e = ScoredFile::new("f", vec![0.0; 5], vec![Window { start: 3, end: 5 }]);
        assert!(e.is_err_and(|e| e.to_string().contains("5 rows")));
        let overlapping = vec![Window { start: 1, end: 3 }, Window { start: 3, end: 4 }];
        assert!(ScoredFile::new("f", vec![0.0; 5], overlapping).is_err());
        assert!(ScoredFile::new("f", vec![0.0; 5], vec![Window { start: 3, end: 2 }]).is_err());
    }

    #[test]
    fn windows_are_located_by_timestamp() {
        let ts = ["2014-01-01 00:00:00", "2014-01-01 00:05:00", "2014-01-01 00:10:00"];
        let w = locate_windows(
            "f.csv",
            &ts,
            &[("2014-01-01 00:05:00.000000".to_string(), "2014-01-01 00:10:00.000000".to_string())],
        )
        .expect("located");
        assert_eq!(w, vec![Window { start: 1, end: 2 }]);
        let e = locate_windows("f.csv", &ts, &[("2014-01-01 00:06:00".to_string(), "2014-01-01 00:10:00".to_string())]);
        assert!(e.is_err_and(|e| e.to_string().contains("f.csv") && e.to_string().contains("00:06:00")));
        assert_eq!(canonical_timestamp("2014-01-01 00:05:00.000001"), "2014-01-01 00:05:00.000001");
    }
}
