//! `warden bench anomaly --leave-one-out`: choose a detector setting on some data sets and
//! report it on the one left out.
//!
//! A default chosen on the data it is reported on looks better than it will be on a user's
//! series. Here every candidate setting runs on every data set once; then, for each data set
//! in turn, the setting with the best mean delay-k F1 on the *other* data sets is chosen
//! (ties within [`TIE`] go to fewer false-alarm events per series-week, then to the earlier
//! candidate, so the first candidate, today's default, stays unless another is better), and
//! that setting's figures on the left-out set are the out-of-sample result. The baselines
//! (`sigma`, `spectral_residual` by default) run in the same process on the same series, so the
//! ratios are like for like. The full matrix is printed too, marked in-sample.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use serde_json::{json, Value};
use warden_detectors::eval::anomaly::events_per_week;

use super::anomaly::{load, measure, parse_spec, DetectorResult, DetectorSpec};

/// F1 differences below this count as a tie.
const TIE: f64 = 0.005;

/// The baselines compared when none are named.
pub const DEFAULT_BASELINES: &str = "sigma,spectral_residual";

/// Candidate settings of `auto` tried when none are named: today's default first, then one
/// parameter moved at a time.
pub const DEFAULT_CANDIDATES: &str = "auto;auto:q=0.0001;auto:q=0.01;auto:min_score=5;auto:min_score=3;auto:window=60;auto:sr_weight=0.5;auto:sr_weight=0;auto:level=0.95";

/// One data set's figures for every candidate and baseline.
struct Measured {
    dir: PathBuf,
    layout: &'static str,
    candidates: Vec<DetectorResult>,
    baselines: Vec<DetectorResult>,
}

/// The outcome for one left-out data set.
struct HeldOut {
    /// Index into the candidates.
    chosen: usize,
    /// Mean F1 of the chosen setting on the other data sets (in-sample for the choice).
    others_f1: f64,
}

fn fa_week(r: &DetectorResult) -> f64 {
    events_per_week(r.counts.events, r.normal_seconds)
}

/// Index of the candidate with the best mean F1 over the data sets other than `left_out`.
fn choose(sets: &[Measured], left_out: usize) -> HeldOut {
    let others: Vec<&Measured> = sets.iter().enumerate().filter(|&(j, _)| j != left_out).map(|(_, m)| m).collect();
    let n = others.len().max(1) as f64;
    let mean =
        |c: usize, f: &dyn Fn(&DetectorResult) -> f64| others.iter().map(|m| f(&m.candidates[c])).sum::<f64>() / n;
    let mut best = 0;
    let mut best_f1 = mean(0, &|r| r.counts.f1());
    let mut best_fa = mean(0, &fa_week);
    for c in 1..sets[0].candidates.len() {
        let f1 = mean(c, &|r| r.counts.f1());
        let fa = mean(c, &fa_week);
        if f1 > best_f1 + TIE || (f1 > best_f1 - TIE && fa < best_fa) {
            (best, best_f1, best_fa) = (c, f1, fa);
        }
    }
    HeldOut { chosen: best, others_f1: best_f1 }
}

fn specs(list: &str, sep: char) -> Result<Vec<DetectorSpec>> {
    list.split(sep).filter(|s| !s.trim().is_empty()).map(parse_spec).collect()
}

/// `warden bench anomaly --leave-one-out --data A --data B ...`.
pub fn run(dirs: &[PathBuf], candidates: &str, baselines: &str, delay: usize, json: bool) -> Result<()> {
    if dirs.len() < 2 {
        bail!("--leave-one-out needs at least two --data folders, got {}", dirs.len());
    }
    let candidates = specs(candidates, ';')?;
    if candidates.is_empty() {
        bail!("--candidates names no detector setting");
    }
    let baselines = specs(baselines, ',')?;
    let mut sets = Vec::with_capacity(dirs.len());
    for dir in dirs {
        let ds = load(dir)?;
        let nab_dir = (ds.layout == "nab").then_some(dir.as_path());
        let measure_all = |list: &[DetectorSpec]| -> Result<Vec<DetectorResult>> {
            list.iter().map(|s| measure(&ds, s, delay, nab_dir)).collect()
        };
        sets.push(Measured {
            dir: dir.clone(),
            layout: ds.layout,
            candidates: measure_all(&candidates)?,
            baselines: measure_all(&baselines)?,
        });
    }
    let held: Vec<HeldOut> = (0..sets.len()).map(|i| choose(&sets, i)).collect();
    if json {
        println!("{}", to_json(&sets, &held, delay));
    } else {
        print!("{}", table(&sets, &held, delay));
    }
    Ok(())
}

fn nab(r: &DetectorResult) -> String {
    r.nab_standard.map_or_else(|| "-".to_string(), |v| format!("{v:.1}"))
}

fn name(dir: &Path) -> String {
    dir.file_name().map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into_owned())
}

fn table(sets: &[Measured], held: &[HeldOut], k: usize) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Leave one data set out: setting chosen among {} by mean delay-{k} F1 on the other data sets, reported on the one left out",
        sets[0].candidates.len()
    );
    let _ = writeln!(
        out,
        "{:<10} {:<26} {:>7} {:>9} {:>8} {:>12} | baselines (same run): F1, FA/week",
        "left out", "chosen setting", "F1", "FA/week", "NAB std", "F1 others*"
    );
    for (m, h) in sets.iter().zip(held) {
        let r = &m.candidates[h.chosen];
        let mut line = format!(
            "{:<10} {:<26} {:>7.3} {:>9.2} {:>8} {:>12.3} |",
            name(&m.dir),
            r.spec.label,
            r.counts.f1(),
            fa_week(r),
            nab(r),
            h.others_f1
        );
        for b in &m.baselines {
            let ratio = if b.counts.f1() > 0.0 {
                format!(" ({:+.0} %)", (r.counts.f1() / b.counts.f1() - 1.0) * 100.0)
            } else {
                String::new()
            };
            let _ = write!(line, " {} {:.3}{ratio}, {:.2};", b.spec.label, b.counts.f1(), fa_week(b));
        }
        let _ = writeln!(out, "{}", line.trim_end_matches(';'));
    }
    let _ = writeln!(out, "* mean F1 of the chosen setting on the other data sets (in-sample for the choice)");
    let _ =
        writeln!(out, "\nEvery setting on every data set (IN-SAMPLE, for diagnosis only): F1 / FA per week / NAB std");
    let _ = write!(out, "{:<26}", "setting");
    for m in sets {
        let _ = write!(out, " {:>24}", format!("{} ({})", name(&m.dir), m.layout));
    }
    let _ = writeln!(out);
    for c in 0..sets[0].candidates.len() {
        let _ = write!(out, "{:<26}", sets[0].candidates[c].spec.label);
        for m in sets {
            let r = &m.candidates[c];
            let _ = write!(out, " {:>24}", format!("{:.3} / {:.2} / {}", r.counts.f1(), fa_week(r), nab(r)));
        }
        let _ = writeln!(out);
    }
    out
}

fn result_json(r: &DetectorResult) -> Value {
    json!({
        "detector": r.spec.label,
        "f1": r.counts.f1(),
        "precision": r.counts.precision(),
        "recall": r.counts.recall(),
        "false_alarm_events": r.counts.events,
        "false_alarm_events_per_week": fa_week(r),
        "nab_standard": r.nab_standard,
    })
}

fn to_json(sets: &[Measured], held: &[HeldOut], k: usize) -> Value {
    json!({
        "delay": k,
        "objective": "mean delay-k F1 on the other data sets; ties to fewer false-alarm events per week",
        "left_out": sets.iter().zip(held).map(|(m, h)| json!({
            "data": m.dir.display().to_string(),
            "layout": m.layout,
            "chosen": result_json(&m.candidates[h.chosen]),
            "chosen_mean_f1_on_others_in_sample": h.others_f1,
            "baselines": m.baselines.iter().map(result_json).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "in_sample_matrix": sets.iter().map(|m| json!({
            "data": m.dir.display().to_string(),
            "candidates": m.candidates.iter().map(result_json).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A CSV folder with one series: a flat noisy stretch and one level shift, labelled.
    fn folder(dir: &Path, shift_at: usize, len: usize) {
        std::fs::create_dir_all(dir).expect("dir");
        let mut f = std::fs::File::create(dir.join("s.csv")).expect("file");
        writeln!(f, "timestamp,value,label").expect("write");
        for i in 0..len {
            let base = if (i * 7919) % 13 < 6 { 10.0 } else { 10.5 };
            let (v, l) = if (shift_at..shift_at + 20).contains(&i) { (60.0, 1) } else { (base, 0) };
            writeln!(f, "{},{v},{l}", 1_600_000_000 + i as i64 * 60).expect("write");
        }
    }

    #[test]
    fn each_data_set_is_reported_with_a_setting_chosen_on_the_others() {
        let tmp = tempfile::tempdir().expect("tmp");
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        folder(&a, 900, 1200);
        folder(&b, 1000, 1300);
        let cands = specs("auto;sigma:k=1000", ';').expect("specs");
        let mut sets = Vec::new();
        for d in [&a, &b] {
            let ds = load(d).expect("load");
            sets.push(Measured {
                dir: d.clone(),
                layout: ds.layout,
                candidates: cands.iter().map(|s| measure(&ds, s, 7, None)).collect::<Result<_>>().expect("measure"),
                baselines: Vec::new(),
            });
        }
        // A k of 1000 never flags: auto, which finds the shifts, must be chosen for both.
        for i in 0..2 {
            let h = choose(&sets, i);
            assert_eq!(h.chosen, 0, "left out {i}");
            assert!(h.others_f1 > 0.5, "F1 on the other set {}", h.others_f1);
        }
        let text = table(&sets, &[choose(&sets, 0), choose(&sets, 1)], 7);
        assert!(text.contains("IN-SAMPLE"), "{text}");
    }

    #[test]
    fn one_data_set_is_refused() {
        let err = run(&[PathBuf::from("x")], "auto", "", 7, false).expect_err("refused");
        assert!(err.to_string().contains("at least two"), "{err}");
    }
}
