//! Log-parsing accuracy as the Loghub benchmarks compute it: grouping accuracy (GA), pairwise
//! F1, PGA / RGA / FGA and parsing accuracy (PA).
//!
//! A template miner's accuracy can only be compared with published parsers if it is scored
//! the way they were: GA is the "accuracy" of the Loghub paper (Zhu et al., ICSE-SEIP 2019)
//! and of logpai/logparser's `evaluator.py`; FGA and PA are from Loghub-2.0 (Jiang et al.,
//! ISSTA 2024). This module holds those definitions as pure functions on per-line labels;
//! reading the data set is the agent's job (`warden bench loghub`).
//!
//! # Definitions
//!
//! Every line *j* has a ground-truth event *g(j)* (with its template text) and a parsed event
//! *p(j)* (with its template text). Lines whose ground-truth event is empty are removed first,
//! from both sides.
//!
//! * A parsed group `P = { j : p(j) = e }` is **correct** when all its lines have the same
//!   ground-truth event *g* and `|P|` equals the number of lines of *g*: the parsed group is
//!   exactly the ground-truth group. A parsed group that merges two true groups, or holds only
//!   part of one, counts for nothing.
//! * **GA** = lines in correct groups / lines.
//! * **PGA** = correct groups / parsed groups; **RGA** = correct groups / ground-truth groups;
//!   **FGA** = `2 · PGA · RGA / (PGA + RGA)`, 0 when both are 0.
//! * **Pairwise F1** (logparser's `F1_measure`): `real = Σ_g C(n_g, 2)`,
//!   `parsed = Σ_p C(n_p, 2)`, `accurate = Σ_p Σ_g C(n_{p∩g}, 2)`; precision
//!   `accurate / parsed`, recall `accurate / real` (each 1 when its denominator is 0: no pair
//!   claimed, none wrong), F1 their harmonic mean (0 when both are 0).
//! * **PA** = lines whose parsed template text equals the ground-truth template text exactly
//!   (no normalisation of spaces or wildcards) / lines.
//!
//! Groups are keyed by whatever identifies an event: logparser uses the `EventId` column on
//! both sides (Drain's ids are a hash of the template text, so clusters printing the same
//! template are one group); Loghub-2.0 uses the template texts. Pass the keys you mean.

use std::collections::HashMap;
use std::hash::Hash;

use crate::error::{Error, Result};

/// Group-level scores of one data set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroupingScores {
    /// Lines scored (after removing those without a ground-truth event).
    pub lines: usize,
    /// Distinct ground-truth events.
    pub truth_groups: usize,
    /// Distinct parsed events.
    pub parsed_groups: usize,
    /// Parsed groups that are exactly a ground-truth group.
    pub correct_groups: usize,
    /// Lines in correct groups.
    pub correct_lines: usize,
    /// Grouping accuracy.
    pub ga: f64,
    /// Correct groups / parsed groups.
    pub pga: f64,
    /// Correct groups / ground-truth groups.
    pub rga: f64,
    /// Harmonic mean of PGA and RGA.
    pub fga: f64,
    /// Pairwise precision.
    pub precision: f64,
    /// Pairwise recall.
    pub recall: f64,
    /// Pairwise F1.
    pub f1: f64,
}

/// All scores of one data set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoghubScores {
    /// GA, FGA and pairwise F1.
    pub grouping: GroupingScores,
    /// Parsing accuracy.
    pub pa: f64,
}

fn pairs(n: usize) -> f64 {
    let n = n as f64;
    n * (n - 1.0) / 2.0
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        1.0
    }
}

fn harmonic(a: f64, b: f64) -> f64 {
    if a + b > 0.0 {
        2.0 * a * b / (a + b)
    } else {
        0.0
    }
}

fn check_lengths(what: &str, a: usize, b: usize) -> Result<()> {
    if a == b {
        Ok(())
    } else {
        Err(Error::InvalidInput {
            what: what.to_string(),
            message: format!("{a} ground-truth lines but {b} parsed lines"),
        })
    }
}

/// Group-level scores of `parsed` against `truth` (one entry per line, in the same order).
/// Lines whose truth is `None` (no ground-truth event) are removed first. Fails if the lengths
/// differ or no line is left.
pub fn grouping<T: Hash + Eq, P: Hash + Eq>(truth: &[Option<T>], parsed: &[P]) -> Result<GroupingScores> {
    check_lengths("grouping labels", truth.len(), parsed.len())?;
    let mut truth_size: HashMap<&T, usize> = HashMap::new();
    // Per parsed group: its size, the truth of its first line, whether all lines share it.
    let mut groups: HashMap<&P, (usize, &T, bool)> = HashMap::new();
    let mut cells: HashMap<(&P, &T), usize> = HashMap::new();
    let mut lines = 0usize;
    for (t, p) in truth.iter().zip(parsed) {
        let Some(t) = t else { continue };
        lines += 1;
        *truth_size.entry(t).or_default() += 1;
        let g = groups.entry(p).or_insert((0, t, true));
        g.0 += 1;
        g.2 &= g.1 == t;
        *cells.entry((p, t)).or_default() += 1;
    }
    if lines == 0 {
        return Err(Error::InvalidInput {
            what: "grouping labels".into(),
            message: "no line has a ground-truth event".into(),
        });
    }
    let (mut correct_groups, mut correct_lines) = (0usize, 0usize);
    for (size, t, pure) in groups.values() {
        if *pure && truth_size.get(t) == Some(size) {
            correct_groups += 1;
            correct_lines += size;
        }
    }
    let (truth_groups, parsed_groups) = (truth_size.len(), groups.len());
    let pga = correct_groups as f64 / parsed_groups as f64;
    let rga = correct_groups as f64 / truth_groups as f64;
    let real: f64 = truth_size.values().map(|&n| pairs(n)).sum();
    let claimed: f64 = groups.values().map(|g| pairs(g.0)).sum();
    let accurate: f64 = cells.values().map(|&n| pairs(n)).sum();
    let (precision, recall) = (ratio(accurate, claimed), ratio(accurate, real));
    Ok(GroupingScores {
        lines,
        truth_groups,
        parsed_groups,
        correct_groups,
        correct_lines,
        ga: correct_lines as f64 / lines as f64,
        pga,
        rga,
        fga: harmonic(pga, rga),
        precision,
        recall,
        f1: harmonic(precision, recall),
    })
}

/// Parsing accuracy: the share of lines whose parsed template equals the ground truth's
/// exactly. Lines whose truth is `None` are removed first. Fails if the lengths differ or no
/// line is left.
pub fn parsing_accuracy<T: AsRef<str>, P: AsRef<str>>(truth: &[Option<T>], parsed: &[P]) -> Result<f64> {
    check_lengths("templates", truth.len(), parsed.len())?;
    let (mut lines, mut equal) = (0usize, 0usize);
    for (t, p) in truth.iter().zip(parsed) {
        let Some(t) = t else { continue };
        lines += 1;
        equal += usize::from(t.as_ref() == p.as_ref());
    }
    if lines == 0 {
        return Err(Error::InvalidInput {
            what: "templates".into(),
            message: "no line has a ground-truth event".into(),
        });
    }
    Ok(equal as f64 / lines as f64)
}

/// One line's labels for [`evaluate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Labels<'a> {
    /// Ground-truth event id (`E5`); empty when the line has none.
    pub truth_id: &'a str,
    /// Ground-truth template text.
    pub truth_template: &'a str,
    /// Parsed event key (a template id, or the template text).
    pub parsed_id: &'a str,
    /// Parsed template text.
    pub parsed_template: &'a str,
}

/// GA, FGA, F1 (groups by `truth_id` and `parsed_id`) and PA (texts) of one data set. Lines
/// with an empty (or blank) `truth_id` are removed first.
pub fn evaluate(lines: &[Labels<'_>]) -> Result<LoghubScores> {
    let truth: Vec<Option<&str>> = lines.iter().map(|l| Some(l.truth_id).filter(|t| !t.trim().is_empty())).collect();
    let parsed: Vec<&str> = lines.iter().map(|l| l.parsed_id).collect();
    let grouping = grouping(&truth, &parsed)?;
    let truth_templates: Vec<Option<&str>> =
        lines.iter().zip(&truth).map(|(l, t)| t.map(|_| l.truth_template)).collect();
    let parsed_templates: Vec<&str> = lines.iter().map(|l| l.parsed_template).collect();
    let pa = parsing_accuracy(&truth_templates, &parsed_templates)?;
    Ok(LoghubScores { grouping, pa })
}

/// Plain mean of GA, PA and FGA over data sets (the benchmarks' "average"); `None` if empty.
pub fn average(scores: &[LoghubScores]) -> Option<(f64, f64, f64)> {
    if scores.is_empty() {
        return None;
    }
    let n = scores.len() as f64;
    let sum =
        scores.iter().fold((0.0, 0.0, 0.0), |(ga, pa, fga), s| (ga + s.grouping.ga, pa + s.pa, fga + s.grouping.fga));
    Some((sum.0 / n, sum.1 / n, sum.2 / n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    fn some(v: &[&'static str]) -> Vec<Option<&'static str>> {
        v.iter().map(|s| Some(*s)).collect()
    }

    #[test]
    fn a_group_merging_two_events_scores_nothing() {
        // Truth A A B B C; parsed 1 1 2 2 2: group 1 is exactly A, group 2 merges B and C.
        let s = grouping(&some(&["A", "A", "B", "B", "C"]), &[1, 1, 2, 2, 2]).expect("scores");
        assert_eq!((s.lines, s.truth_groups, s.parsed_groups, s.correct_groups, s.correct_lines), (5, 3, 2, 1, 2));
        assert!(close(s.ga, 0.4));
        assert!(close(s.pga, 0.5) && close(s.rga, 1.0 / 3.0));
        assert!(close(s.fga, 2.0 * 0.5 * (1.0 / 3.0) / (0.5 + 1.0 / 3.0)));
        // real pairs 1 + 1 = 2, parsed pairs 1 + 3 = 4, accurate 1 + 1 = 2.
        assert!(close(s.precision, 0.5) && close(s.recall, 1.0));
        assert!(close(s.f1, 2.0 / 3.0));
    }

    #[test]
    fn a_split_event_scores_nothing_either() {
        // Truth A A A B; parsed 1 1 2 3: A is split in two, B is exact.
        let s = grouping(&some(&["A", "A", "A", "B"]), &["x", "x", "y", "z"]).expect("scores");
        assert_eq!((s.correct_groups, s.correct_lines), (1, 1));
        assert!(close(s.ga, 0.25));
        assert!(close(s.pga, 1.0 / 3.0) && close(s.rga, 0.5));
        // real 3, parsed 1, accurate 1.
        assert!(close(s.precision, 1.0) && close(s.recall, 1.0 / 3.0));
    }

    #[test]
    fn perfect_and_worst_parses() {
        let truth = some(&["A", "B", "A", "C"]);
        let s = grouping(&truth, &[7, 8, 7, 9]).expect("scores");
        assert!(close(s.ga, 1.0) && close(s.fga, 1.0) && close(s.f1, 1.0));
        // Everything in one group: nothing correct.
        let s = grouping(&truth, &[0, 0, 0, 0]).expect("scores");
        assert!(close(s.ga, 0.0) && close(s.fga, 0.0));
        // Singletons: only the singleton events are correct; no pair claimed.
        let s = grouping(&truth, &[1, 2, 3, 4]).expect("scores");
        assert_eq!(s.correct_lines, 2);
        assert!(close(s.precision, 1.0) && close(s.recall, 0.0) && close(s.f1, 0.0));
    }

    #[test]
    fn lines_without_truth_are_removed_from_both_sides() {
        let truth = vec![Some("A"), None, Some("A"), None];
        // The parsed labels of removed lines do not matter, even if they join a group.
        let s = grouping(&truth, &[1, 1, 1, 2]).expect("scores");
        assert_eq!((s.lines, s.parsed_groups, s.correct_lines), (2, 1, 2));
        assert!(close(s.ga, 1.0));
        let pa = parsing_accuracy(&[Some("a <*>"), None, Some("a <*>")], &["a <*>", "zzz", "a  <*>"]).expect("pa");
        assert!(close(pa, 0.5), "exact text only: double spaces differ");
        assert!(grouping::<&str, i32>(&[None, None], &[1, 2]).is_err());
    }

    #[test]
    fn lengths_must_agree() {
        let err = grouping(&some(&["A"]), &[1, 2]).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("1 ground-truth lines but 2 parsed lines"), "{err}");
        assert!(parsing_accuracy(&some(&["A"]), &["a", "b"]).is_err());
    }

    #[test]
    fn evaluate_combines_groups_and_texts() {
        let l = |truth_id, truth_template, parsed_id, parsed_template| Labels {
            truth_id,
            truth_template,
            parsed_id,
            parsed_template,
        };
        let lines = [
            l("E1", "open <*>", "t1", "open <*>"),
            l("E1", "open <*>", "t1", "open <*>"),
            l("E2", "close <*> now", "t2", "close <*> <*>"),
            l(" ", "", "t2", "close <*> <*>"),
        ];
        let s = evaluate(&lines).expect("scores");
        assert_eq!(s.grouping.lines, 3);
        assert!(close(s.grouping.ga, 1.0));
        assert!(close(s.pa, 2.0 / 3.0));
        let avg = average(&[s, LoghubScores { pa: 0.0, ..s }]).expect("two");
        assert!(close(avg.0, 1.0) && close(avg.1, 1.0 / 3.0) && close(avg.2, 1.0));
        assert_eq!(average(&[]), None);
    }
}
