//! Unit tests of recordings: onsets from sustained deviation, a separate normal recording as
//! the baseline, the call graph, the quiet-symptom rule and the "nothing found" verdict.

use super::*;

/// Deterministic noise in [-0.05, 0.05].
fn noise(i: usize, k: usize) -> f64 {
    (((i * 7919 + k * 104_729) % 1000) as f64 / 1000.0 - 0.5) / 10.0
}

/// `n` minute points from t = 0 of `1 + noise + f(i)`.
fn series(service: &str, metric: &str, k: usize, n: usize, f: impl Fn(usize) -> f64) -> Series {
    Series {
        service: service.into(),
        metric: metric.into(),
        points: (0..n).map(|i| (60 * i as i64, 1.0 + noise(i, k) + f(i))).collect(),
    }
}

fn input<'a>(s: &'a [Series]) -> RecordingInput<'a> {
    RecordingInput { series: s, start: 60 * 40, ..Default::default() }
}

#[test]
fn glob_patterns() {
    assert!(glob_match("latency-*", "Latency-p90"));
    assert!(glob_match("*Rate(%)", "PodSuccessRate(%)"));
    assert!(glob_match("*", ""));
    assert!(!glob_match("cpu*", "mem"));
    assert!(glob_match("a*b*c", "aXXbYc"));
    assert!(!glob_match("a*b*c", "aXXbY"));
}

#[test]
fn an_early_blip_that_went_back_gives_no_onset() {
    // `blip` jumps 3 minutes before the start and is back one minute later, then moves
    // with the incident; `cause` moves at the start and stays up.
    let s = vec![
        series("blip", "latency", 1, 50, |i| if i == 37 || i >= 41 { 2.0 } else { 0.0 }),
        series("cause", "cpu", 2, 50, |i| if i >= 40 { 3.0 } else { 0.0 }),
    ];
    let r = rank_recording(&input(&s), &RecordingParams::default());
    assert!(r.found, "{r:?}");
    let onset =
        |name: &str| r.services.iter().find(|x| x.service == name).and_then(|x| x.findings.first()).map(|f| f.onset);
    assert_eq!(onset("cause"), Some(60 * 40));
    assert_eq!(onset("blip"), Some(60 * 41), "the blip at minute 37 is not the onset");
}

#[test]
fn a_separate_normal_recording_is_the_baseline() {
    // The incident file holds the incident only; the normal recording is from another day.
    let normal = vec![series("db", "cpu", 3, 100, |_| 0.0)];
    let normal: Vec<Series> = normal
        .into_iter()
        .map(|mut s| {
            s.points.iter_mut().for_each(|p| p.0 -= 86_400);
            s
        })
        .collect();
    let incident: Vec<Series> = vec![series("db", "cpu", 3, 50, |_| 0.0)]
        .into_iter()
        .map(|mut s| {
            s.points.retain(|p| p.0 >= 60 * 40);
            s.points.iter_mut().for_each(|p| p.1 += 2.0);
            s
        })
        .collect();
    let mut inp = input(&incident);
    let r0 = rank_recording(&inp, &RecordingParams::default());
    assert!(!r0.found && r0.services.is_empty(), "no baseline without the normal recording: {r0:?}");
    assert!(r0.warnings.iter().any(|w| w.contains("normal points")), "{:?}", r0.warnings);
    inp.normal = Some(&normal);
    let r = rank_recording(&inp, &RecordingParams::default());
    assert!(r.found, "{r:?}");
    assert_eq!(r.services[0].service, "db");
    assert!(r.services[0].z > 10.0);
}

#[test]
fn the_graph_rules_out_services_off_the_symptom_path() {
    // `batch` deviates most but nothing the symptom calls reaches it; `db` is called by the
    // symptom through `api`.
    let s = vec![
        series("web", "latency", 1, 50, |i| if i >= 40 { 1.0 } else { 0.0 }),
        series("api", "latency", 2, 50, |i| if i >= 40 { 1.0 } else { 0.0 }),
        series("db", "cpu", 3, 50, |i| if i >= 40 { 2.0 } else { 0.0 }),
        series("batch", "cpu", 4, 50, |i| if i >= 40 { 30.0 } else { 0.0 }),
    ];
    let mut g = CallGraph::default();
    g.add("web", "api");
    g.add("api", "db");
    g.add("cron", "batch");
    let without = rank_recording(&input(&s), &RecordingParams::default());
    assert_eq!(without.services[0].service, "batch");
    let mut inp = input(&s);
    inp.graph = Some(&g);
    inp.symptom = Some("web".into());
    let r = rank_recording(&inp, &RecordingParams::default());
    assert_eq!(r.services[0].service, "db", "{:#?}", r.services);
    let batch = r.services.iter().find(|x| x.service == "batch");
    assert_eq!(batch.and_then(|b| b.on_symptom_path), Some(false));
}

#[test]
fn nothing_found_without_a_fault_or_when_the_symptom_is_normal() {
    let quiet = vec![series("a", "cpu", 1, 50, |_| 0.0), series("b", "latency", 2, 50, |_| 0.0)];
    let r = rank_recording(&input(&quiet), &RecordingParams::default());
    assert!(!r.found && r.services.is_empty(), "{r:?}");
    assert!(r.not_found_reason.is_some());
    // A service moved, but the symptom did not: nothing explains the symptom.
    let s =
        vec![series("a", "cpu", 1, 50, |i| if i >= 40 { 5.0 } else { 0.0 }), series("web", "latency", 2, 50, |_| 0.0)];
    let mut inp = input(&s);
    inp.symptom = Some("web".into());
    let p = RecordingParams { symptom_z: 3.0, ..RecordingParams::default() };
    let r = rank_recording(&inp, &p);
    assert!(!r.found, "{r:?}");
    assert!(r.not_found_reason.as_deref().is_some_and(|w| w.contains("symptom")), "{r:?}");
}

#[test]
fn a_series_that_often_jumps_in_normal_data_is_not_abnormal_when_it_jumps_again() {
    // `p99` sits on one value and jumps on every fifth point (a quantised tail latency);
    // it jumps again at the start. `db` steps up at the start and stays up.
    let flaky = |i: usize| {
        if i.is_multiple_of(5) || i == 41 {
            1.5 + 0.01 * (i % 7) as f64
        } else {
            1.0 + 0.0001 * (i % 3) as f64
        }
    };
    let s = vec![
        Series {
            service: "web".into(),
            metric: "p99".into(),
            points: (0..50).map(|i| (60 * i as i64, flaky(i))).collect(),
        },
        series("db", "cpu", 2, 50, |i| if i >= 40 { 2.0 } else { 0.0 }),
    ];
    let r = rank_recording(&input(&s), &RecordingParams::default());
    assert_eq!(r.services.first().map(|x| x.service.as_str()), Some("db"), "{:#?}", r.services);
    let web = r.services.iter().find(|x| x.service == "web").map(|x| x.z).unwrap_or(0.0);
    assert!(web < 5.0, "the jump is within the series' own tail: z {web}");
    // Without the tail floor the jump reads as a huge deviation.
    let p = RecordingParams { tail_quantile: 0.0, ..RecordingParams::default() };
    let r = rank_recording(&input(&s), &p);
    let web = r.services.iter().find(|x| x.service == "web").map(|x| x.z).unwrap_or(0.0);
    assert!(web > 20.0, "z {web}");
}

#[test]
fn a_quiet_symptom_needs_an_overwhelming_or_a_tracking_deviation() {
    let quiet_symptom = series("web", "latency", 1, 50, |_| 0.0);
    let with =
        |step: f64| vec![quiet_symptom.clone(), series("a", "cpu", 2, 50, move |i| if i >= 40 { step } else { 0.0 })];
    let p = RecordingParams::default();
    let run = |s: &[Series], p: &RecordingParams| {
        let mut inp = input(s);
        inp.symptom = Some("web".into());
        rank_recording(&inp, p)
    };
    // A clear but moderate deviation elsewhere does not explain a symptom that did not move.
    let moderate = with(0.5);
    let r = run(&moderate, &p);
    let z = r.services.iter().find(|x| x.service == "a").map(|x| x.z).unwrap_or(0.0);
    assert!(z >= p.found_z && z < p.quiet_found_z, "z {z}");
    assert!(!r.found, "{r:?}");
    // Without the rule it would have been an answer.
    assert!(run(&moderate, &RecordingParams { quiet_found_z: 0.0, ..p.clone() }).found);
    // An overwhelming one is credible on its own.
    assert!(run(&with(5.0), &p).found);
    // So is a moderate one that moves with the symptom's own (sub-threshold) deviation.
    let tracking = vec![
        series("web", "latency", 1, 50, |i| if i >= 40 { 0.06 } else { 0.0 }),
        series("a", "cpu", 2, 50, |i| if i >= 40 { 0.5 } else { 0.0 }),
    ];
    let r = run(&tracking, &RecordingParams { quiet_corr: 0.4, ..p.clone() });
    let f = r.services.iter().find(|x| x.service == "a").and_then(|x| x.findings.first().cloned());
    assert!(f.as_ref().and_then(|f| f.symptom_corr).is_some_and(|c| c >= 0.4), "{f:?}");
    assert!(r.found, "{r:?}");
}

#[test]
fn explicit_kinds_win_and_guesses_are_reported() {
    // Falling success rate is the fault direction of availability.
    let s = vec![series("a", "PodSuccessRate(%)", 1, 50, |i| if i >= 40 { -0.8 } else { 0.0 })];
    let r = rank_recording(&input(&s), &RecordingParams::default());
    assert_eq!(r.services.first().map(|x| x.findings[0].kind), Some(MetricClass::Availability));
    assert!(r.warnings.iter().any(|w| w.contains("PodSuccessRate(%)") && w.contains("guessed")), "{:?}", r.warnings);
    let kinds = MetricKinds { patterns: vec![("*Rate(%)".into(), MetricClass::Latency)] };
    let mut inp = input(&s);
    inp.kinds = Some(&kinds);
    let r = rank_recording(&inp, &RecordingParams::default());
    assert!(r.services.is_empty(), "a falling latency is not a fault: {r:?}");
    assert!(!r.warnings.iter().any(|w| w.contains("guessed")));
    assert_eq!(MetricClass::of("PodWorkload(Ops)"), MetricClass::Traffic);
    assert_eq!(MetricClass::of("PodSuccessRate(%)"), MetricClass::Availability);
}
