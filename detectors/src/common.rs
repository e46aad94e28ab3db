//! Code shared by the detectors.
//!
//! Every detector follows the same conventions (see the [crate docs](crate)):
//! parameters are range-checked once, when the detector is built, and a
//! rejected one is reported as [`Error::InvalidParam`] naming the parameter
//! and stating its allowed range; a timestamp that is not after the previous
//! one is accepted but noted; the remarks about a point are joined into one
//! note; and intermediate arithmetic is clamped so that every output is
//! finite. Each detector used to carry its own copy of that code. The copies
//! had to stay identical to the letter, because configuration errors and
//! notes are matched on their text by tests, by the agent and by operators,
//! so they live here once instead.
//!
//! The helpers are small and crate-private: they change no public API and no
//! output. Helpers that belong to a type of the detector seam live with the
//! type: [`Deviation::of`](crate::detector::Deviation::of) and
//! [`Detection::unjudged`](crate::detector::Detection::unjudged).

use std::borrow::Borrow;
use std::fmt::Display;

use crate::detector::{Detection, DetectionState, Direction, Explanation};
use crate::error::{Error, Result};

// ---------------------------------------------------------------------------
// Errors and parameter checks
// ---------------------------------------------------------------------------

/// [`Error::InvalidParam`] for parameter `name`.
pub(crate) fn invalid(name: &'static str, message: String) -> Error {
    Error::InvalidParam { name, message }
}

/// [`Error::InvalidInput`] about `what`.
pub(crate) fn invalid_input(what: &str, message: String) -> Error {
    Error::InvalidInput { what: what.to_string(), message }
}

/// `Ok` if `ok`, else [`Error::InvalidParam`] for `name` with `message()`.
fn require(ok: bool, name: &'static str, message: impl FnOnce() -> String) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(invalid(name, message()))
    }
}

/// `value` must be finite and `> 0`.
pub(crate) fn positive(name: &'static str, value: f64) -> Result<()> {
    require(value.is_finite() && value > 0.0, name, || format!("must be finite and greater than 0, got {value}"))
}

/// `value` must be finite and `>= min`.
pub(crate) fn finite_at_least(name: &'static str, value: f64, min: f64) -> Result<()> {
    require(value.is_finite() && value >= min, name, || format!("must be finite and at least {min}, got {value}"))
}

/// `value` must be finite and `>= 0`.
pub(crate) fn non_negative(name: &'static str, value: f64) -> Result<()> {
    finite_at_least(name, value, 0.0)
}

/// The scale floors shared by the baseline detectors, `min_relative_scale`
/// and `min_absolute_scale`, must both be finite and `>= 0`.
pub(crate) fn scale_floors(min_relative_scale: f64, min_absolute_scale: f64) -> Result<()> {
    non_negative("min_relative_scale", min_relative_scale)?;
    non_negative("min_absolute_scale", min_absolute_scale)
}

/// `value` must be `>= min`.
pub(crate) fn at_least<T: PartialOrd + Display>(name: &'static str, value: T, min: T) -> Result<()> {
    require(value >= min, name, || format!("must be at least {min}, got {value}"))
}

/// `value` must be `<= max`.
pub(crate) fn at_most<T: PartialOrd + Display>(name: &'static str, value: T, max: T) -> Result<()> {
    require(value <= max, name, || format!("must be at most {max}, got {value}"))
}

/// `value` must be in `lo ..= hi`.
pub(crate) fn between<T: PartialOrd + Display>(name: &'static str, value: T, lo: T, hi: T) -> Result<()> {
    require(lo <= value && value <= hi, name, || format!("must be between {lo} and {hi}, got {value}"))
}

/// `value` must be in `lo ..= hi`, where `hi` comes from another parameter
/// (or an expression of one), spelled `hi_name` in the message.
pub(crate) fn between_param<T: PartialOrd + Display>(
    name: &'static str,
    value: T,
    lo: T,
    hi_name: &str,
    hi: T,
) -> Result<()> {
    require(lo <= value && value <= hi, name, || format!("must be between {lo} and {hi_name} ({hi}), got {value}"))
}

/// `value` must be in the open interval `(lo, hi)`.
pub(crate) fn strictly_between(name: &'static str, value: f64, lo: f64, hi: f64) -> Result<()> {
    require(value > lo && value < hi, name, || format!("must be strictly between {lo} and {hi}, got {value}"))
}

/// `value` must be in `(0, max]`.
pub(crate) fn positive_at_most(name: &'static str, value: f64, max: f64) -> Result<()> {
    require(value > 0.0 && value <= max, name, || format!("must be greater than 0 and at most {max}, got {value}"))
}

// ---------------------------------------------------------------------------
// Notes
// ---------------------------------------------------------------------------

/// The remarks about a point as one note, `"; "`-separated; `None` when
/// there are none.
pub(crate) fn join_notes<S: Borrow<str>>(notes: &[S]) -> Option<String> {
    if notes.is_empty() {
        None
    } else {
        Some(notes.join("; "))
    }
}

/// Remembers the previous point's timestamp so that a timestamp that is not
/// strictly after it can be noted. Such points are still processed:
/// streaming sources repeat samples.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TimestampOrder {
    last_ms: Option<i64>,
}

impl TimestampOrder {
    /// The note added for a timestamp that is not after the previous one.
    pub(crate) const NOTE: &'static str = "timestamp not after the previous point";

    /// Record `timestamp_ms`, first pushing [`Self::NOTE`] onto `notes` if it
    /// is not after the previous timestamp.
    pub(crate) fn check<'a, S: From<&'a str>>(&mut self, timestamp_ms: i64, notes: &mut Vec<S>) {
        if self.last_ms.is_some_and(|prev| timestamp_ms <= prev) {
            notes.push(S::from(Self::NOTE));
        }
        self.last_ms = Some(timestamp_ms);
    }

    /// Forget the previous timestamp.
    pub(crate) fn reset(&mut self) {
        self.last_ms = None;
    }
}

// ---------------------------------------------------------------------------
// Points without data
// ---------------------------------------------------------------------------

/// The note on a point whose value is not a finite number (NaN, ±∞).
pub(crate) const NOT_FINITE: &str = "value is not a finite number";

/// [`NOT_FINITE`], followed by `; remark` when the detector says what became
/// of the point (`ignored`, or how the history slot was filled).
pub(crate) fn not_finite_note(remark: Option<&str>) -> String {
    match remark {
        Some(r) => format!("{NOT_FINITE}; {r}"),
        None => NOT_FINITE.to_string(),
    }
}

/// The verdict on a point whose value is not a finite number: every detector
/// reports it as [`DetectionState::NoData`], scores it 0 and leaves its
/// history as it was (or fills the slot, and says so in `remark`).
/// `explanation` carries what the detector wants to show about its state
/// (history, current run, threshold); its note becomes the remarks made so
/// far (`notes`) followed by [`not_finite_note`].
pub(crate) fn no_data<S: Borrow<str>>(
    timestamp_ms: i64,
    value: f64,
    notes: &[S],
    remark: Option<&str>,
    explanation: Explanation,
) -> Detection {
    let last = not_finite_note(remark);
    let mut all: Vec<&str> = notes.iter().map(Borrow::borrow).collect();
    all.push(&last);
    Detection::unjudged(
        timestamp_ms,
        value,
        DetectionState::NoData,
        Explanation { note: join_notes(&all), ..explanation },
    )
}

// ---------------------------------------------------------------------------
// Numbers
// ---------------------------------------------------------------------------

/// Map ±∞ to ±f64::MAX; finite values are unchanged (NaN stays NaN).
pub(crate) fn clamp_finite(v: f64) -> f64 {
    v.clamp(f64::MIN, f64::MAX)
}

/// Map ±∞ to ±f64::MAX and NaN to 0; finite values are unchanged.
pub(crate) fn clamp_finite_or_zero(v: f64) -> f64 {
    if v.is_nan() {
        0.0
    } else {
        v.clamp(f64::MIN, f64::MAX)
    }
}

/// The part of the normalised deviation `z` that lies in `direction`: `z`
/// for up, `-z` for down (0 on the other side), `|z|` for both.
pub(crate) fn in_direction(direction: Direction, z: f64) -> f64 {
    match direction {
        Direction::Up => z.max(0.0),
        Direction::Down => (-z).max(0.0),
        Direction::Both => z.abs(),
    }
}

/// `z_dir / (z_dir + threshold)` for `z_dir >= 0`, written so that it stays
/// finite and in `[0, 1]` for any `z_dir` (including +∞ and NaN, which score
/// 0) and any positive threshold. It is 0.5 at the threshold.
pub(crate) fn score(z_dir: f64, threshold: f64) -> f64 {
    if z_dir.is_nan() || z_dir <= 0.0 {
        return 0.0;
    }
    let s = 1.0 / (1.0 + threshold / z_dir);
    if s.is_nan() {
        0.0
    } else {
        s.clamp(0.0, 1.0)
    }
}

/// Median of `values` (no NaN), sorting them in place; computed without
/// overflow. `None` when empty.
pub(crate) fn sort_median(values: &mut [f64]) -> Option<f64> {
    values.sort_unstable_by(f64::total_cmp);
    let n = values.len();
    let hi = *values.get(n / 2)?;
    if n % 2 == 1 {
        return Some(hi);
    }
    let lo = *values.get(n.checked_sub(1)? / 2)?;
    Some(lo / 2.0 + hi / 2.0)
}

/// Median of `values` (no NaN, reordered in place) in linear time, without
/// overflow. `None` when empty.
pub(crate) fn select_median(values: &mut [f64]) -> Option<f64> {
    let n = values.len();
    if n == 0 {
        return None;
    }
    let (below, &mut hi, _) = values.select_nth_unstable_by(n / 2, f64::total_cmp);
    if n % 2 == 1 {
        return Some(hi);
    }
    let lo = below.iter().copied().max_by(f64::total_cmp)?;
    Some(lo / 2.0 + hi / 2.0)
}

/// `ln(e^a + e^b)` without overflow; `-∞` stands for a zero probability.
pub(crate) fn log_add_exp(a: f64, b: f64) -> f64 {
    if a == f64::NEG_INFINITY {
        return b;
    }
    if b == f64::NEG_INFINITY {
        return a;
    }
    let (hi, lo) = if a > b { (a, b) } else { (b, a) };
    hi + (lo - hi).exp().ln_1p()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(r: Result<()>) -> String {
        match r {
            Err(e) => e.to_string(),
            Ok(()) => "ok".into(),
        }
    }

    #[test]
    fn range_checks_keep_their_messages() {
        assert_eq!(
            message(positive("threshold", 0.0)),
            "invalid parameter `threshold`: must be finite and greater than 0, got 0"
        );
        assert!(message(positive("threshold", f64::NAN)).ends_with("got NaN"));
        assert_eq!(message(positive("threshold", 4.0)), "ok");
        assert_eq!(
            message(non_negative("min_absolute_scale", -1.0)),
            "invalid parameter `min_absolute_scale`: must be finite and at least 0, got -1"
        );
        assert!(message(non_negative("x", f64::INFINITY)).ends_with("got inf"));
        assert_eq!(
            message(finite_at_least("expected_run_length", 1.5, 2.0)),
            "invalid parameter `expected_run_length`: must be finite and at least 2, got 1.5"
        );
        assert_eq!(
            message(scale_floors(0.01, -0.5)),
            "invalid parameter `min_absolute_scale`: must be finite and at least 0, got -0.5"
        );
        assert_eq!(
            message(scale_floors(f64::NAN, -0.5)),
            "invalid parameter `min_relative_scale`: must be finite and at least 0, got NaN"
        );
        assert_eq!(
            message(at_least("min_consecutive", 0u32, 1)),
            "invalid parameter `min_consecutive`: must be at least 1, got 0"
        );
        assert_eq!(
            message(at_most("refractory", 100_001usize, 100_000)),
            "invalid parameter `refractory`: must be at most 100000, got 100001"
        );
        assert_eq!(
            message(between("window", 2usize, 3, 100_000)),
            "invalid parameter `window`: must be between 3 and 100000, got 2"
        );
        assert_eq!(
            message(between("snap_tolerance", 0.6, 0.0, 0.5)),
            "invalid parameter `snap_tolerance`: must be between 0 and 0.5, got 0.6"
        );
        assert!(message(between("snap_tolerance", f64::NAN, 0.0, 0.5)).ends_with("got NaN"));
        assert_eq!(
            message(between_param("min_history", 70usize, 3, "window", 60)),
            "invalid parameter `min_history`: must be between 3 and window (60), got 70"
        );
        assert_eq!(
            message(strictly_between("level", 1.0, 0.0, 1.0)),
            "invalid parameter `level`: must be strictly between 0 and 1, got 1"
        );
        assert_eq!(
            message(positive_at_most("epsilon", 0.0, 0.5)),
            "invalid parameter `epsilon`: must be greater than 0 and at most 0.5, got 0"
        );
        assert_eq!(message(positive_at_most("epsilon", 0.5, 0.5)), "ok");
    }

    #[test]
    fn notes_and_timestamps() {
        assert_eq!(join_notes::<&str>(&[]), None);
        assert_eq!(join_notes(&["a", "b"]), Some("a; b".to_string()));
        assert_eq!(join_notes(&["a".to_string()]), Some("a".to_string()));

        let mut order = TimestampOrder::default();
        let mut notes: Vec<String> = Vec::new();
        order.check(10, &mut notes);
        order.check(20, &mut notes);
        assert!(notes.is_empty());
        order.check(20, &mut notes);
        order.check(5, &mut notes);
        assert_eq!(notes, [TimestampOrder::NOTE, TimestampOrder::NOTE]);
        order.reset();
        let mut borrowed: Vec<&str> = Vec::new();
        order.check(0, &mut borrowed);
        assert!(borrowed.is_empty());
    }

    #[test]
    fn no_data_keeps_the_explanation_and_appends_the_note() {
        let d = no_data(
            7,
            f64::NAN,
            &[TimestampOrder::NOTE],
            Some("ignored"),
            Explanation {
                history: 3,
                consecutive: 2,
                threshold: Some(4.0),
                note: Some("replaced".into()),
                ..Explanation::default()
            },
        );
        assert_eq!(d.state, DetectionState::NoData);
        assert_eq!((d.timestamp_ms, d.score, d.expected), (7, 0.0, None));
        assert_eq!((d.explanation.history, d.explanation.consecutive), (3, 2));
        assert_eq!(d.explanation.threshold, Some(4.0));
        assert_eq!(
            d.explanation.note.as_deref(),
            Some("timestamp not after the previous point; value is not a finite number; ignored")
        );
        let d = no_data::<&str>(0, f64::INFINITY, &[], None, Explanation::default());
        assert_eq!(d.explanation.note.as_deref(), Some(NOT_FINITE));
    }

    #[test]
    fn numbers() {
        assert_eq!(clamp_finite(f64::INFINITY), f64::MAX);
        assert!(clamp_finite(f64::NAN).is_nan());
        assert_eq!(clamp_finite_or_zero(f64::NAN), 0.0);
        assert_eq!(clamp_finite_or_zero(f64::NEG_INFINITY), f64::MIN);
        assert_eq!(in_direction(Direction::Up, -2.0), 0.0);
        assert_eq!(in_direction(Direction::Down, -2.0), 2.0);
        assert_eq!(in_direction(Direction::Both, -2.0), 2.0);
        assert_eq!(score(4.0, 4.0), 0.5);
        assert_eq!(score(f64::NAN, 4.0), 0.0);
        assert_eq!(sort_median(&mut []), None);
        assert_eq!(sort_median(&mut [4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(select_median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(select_median(&mut [f64::MAX, f64::MAX]), Some(f64::MAX));
        assert_eq!(log_add_exp(f64::NEG_INFINITY, 1.0), 1.0);
        assert!((log_add_exp(0.0, 0.0) - 2f64.ln()).abs() < 1e-15);
    }
}
