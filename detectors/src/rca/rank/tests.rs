//! Unit tests of the ranking: what moved first wins, victims and causes on the call graph,
//! rollouts and node events as candidates, and arbitrary evidence that never panics.

use super::*;
use proptest::prelude::*;

fn anomaly(id: &str, t: i64, s: Subject, metric: &str, z: f64) -> Evidence {
    Evidence {
        id: id.into(),
        time: t,
        subject: s,
        payload: Payload::Anomaly {
            forecast: None,
            watch: metric.into(),
            metric: metric.into(),
            observed: 10.0,
            expected: Some(1.0),
            score: z,
            until: None,
        },
    }
}

fn topo(id: &str, s: Subject, deps: &[&str], nodes: &[&str]) -> Evidence {
    Evidence {
        id: id.into(),
        time: 0,
        subject: s,
        payload: Payload::Topology {
            nodes: nodes.iter().map(|n| n.to_string()).collect(),
            pods: vec![],
            services: vec![],
            depends_on: deps.iter().map(|n| n.to_string()).collect(),
        },
    }
}

fn w(n: &str) -> Subject {
    Subject::workload(Some("shop"), n)
}

#[test]
fn empty_evidence_gives_an_empty_ranking() {
    let r = rank(&RcaInput::default(), &RankParams::default());
    assert!(r.candidates.is_empty());
}

#[test]
fn metric_classes() {
    assert_eq!(MetricClass::of("cpu"), MetricClass::Resource);
    assert_eq!(MetricClass::of("mem"), MetricClass::Resource);
    assert_eq!(MetricClass::of("latency-90"), MetricClass::Latency);
    assert_eq!(MetricClass::of("lat_90"), MetricClass::Latency);
    assert_eq!(MetricClass::of("errors"), MetricClass::Errors);
    assert_eq!(MetricClass::of("ready"), MetricClass::Availability);
    assert_eq!(MetricClass::of("rps"), MetricClass::Traffic);
    assert_eq!(MetricClass::of("restarts"), MetricClass::Restarts);
    assert_eq!(MetricClass::of("weird"), MetricClass::Unknown);
    assert_eq!(MetricClass::of("container_cpu_usage_seconds_total"), MetricClass::Resource);
    assert_eq!(MetricClass::of("http_request_duration_seconds"), MetricClass::Latency);
    assert_eq!(MetricClass::of("http_requests_total"), MetricClass::Traffic);
    assert_eq!(MetricClass::of("response_time"), MetricClass::Latency);
}

#[test]
fn the_earlier_mover_wins_among_equal_anomalies() {
    let input = RcaInput {
        start: 1000,
        symptom: None,
        evidence: vec![anomaly("E1", 1030, w("front"), "latency", 20.0), anomaly("E2", 1000, w("db"), "latency", 20.0)],
    };
    let r = rank(&input, &RankParams::default());
    assert_eq!(r.candidates[0].subject, w("db"));
    assert!(r.candidates[0].reasons[0].starts_with("moved first"), "{:?}", r.candidates[0].reasons);
}

#[test]
fn a_caller_with_an_anomalous_dependency_is_a_victim() {
    let input = RcaInput {
        start: 1000,
        symptom: Some(w("front")),
        evidence: vec![
            anomaly("E1", 1000, w("front"), "latency", 40.0),
            anomaly("E2", 1000, w("pay"), "latency", 12.0),
            topo("E3", w("front"), &["pay"], &["n1"]),
            topo("E4", w("pay"), &[], &["n2"]),
        ],
    };
    let r = rank(&input, &RankParams::default());
    assert_eq!(r.candidates[0].subject, w("pay"), "{r:#?}");
}

#[test]
fn rollouts_shortly_before_become_candidates() {
    let input = RcaInput {
        start: 1000,
        symptom: None,
        evidence: vec![
            anomaly("E1", 1000, w("api"), "errors", 15.0),
            anomaly("E2", 1000, w("web"), "errors", 15.0),
            Evidence {
                id: "E3".into(),
                time: 760,
                subject: w("api"),
                payload: Payload::Change {
                    change: ChangeKind::Rollout,
                    from: Some("api:v1.4.2".into()),
                    to: Some("api:v1.5.0".into()),
                    description: String::new(),
                },
            },
            Evidence {
                id: "E4".into(),
                time: 990,
                subject: w("web"),
                payload: Payload::Action {
                    run_id: 1,
                    playbook: "restart".into(),
                    step: "s".into(),
                    status: "ok".into(),
                },
            },
        ],
    };
    let r = rank(&input, &RankParams::default());
    assert_eq!(r.candidates[0].cause, CauseKind::Change, "{r:#?}");
    assert_eq!(r.candidates[0].subject, w("api"));
    assert!(
        r.candidates[0].reasons[0].contains("api:v1.4.2 → v1.5.0 4m before the first anomaly"),
        "{:?}",
        r.candidates[0].reasons
    );
    assert!(r.candidates.iter().all(|c| !c.evidence.contains(&"E4".to_string())));
}

#[test]
fn node_events_and_broad_anomalies_point_to_the_node() {
    let mut ev = vec![Evidence {
        id: "E1".into(),
        time: 1040,
        subject: Subject::node("n2"),
        payload: Payload::KubeEvent {
            reason: "NodeNotReady".into(),
            message: "x".into(),
            count: 1,
            object: "Node/n2".into(),
        },
    }];
    for (i, n) in ["a", "b", "c"].iter().enumerate() {
        ev.push(anomaly(&format!("A{i}"), 1000, w(n), "errors", 20.0));
        ev.push(topo(&format!("T{i}"), w(n), &[], &["n2"]));
    }
    ev.push(topo("T9", w("d"), &[], &["n1"]));
    let r = rank(&RcaInput { start: 1000, symptom: None, evidence: ev }, &RankParams::default());
    assert_eq!(r.candidates[0].subject, Subject::node("n2"), "{r:#?}");
    assert_eq!(r.candidates[0].cause, CauseKind::Node);
}

fn arb_subject() -> impl Strategy<Value = Subject> {
    prop_oneof![
        (0usize..6).prop_map(|i| w(["a", "b", "c", "d", "e", "f"][i])),
        (0usize..2).prop_map(|i| Subject::node(["n1", "n2"][i])),
        (0usize..2).prop_map(|i| Subject::workload(None, ["a", "x"][i])),
    ]
}

fn arb_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => -5.0f64..200.0,
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
        1 => Just(0.0),
    ]
}

fn arb_payload() -> impl Strategy<Value = Payload> {
    prop_oneof![
        4 => ("[a-z-]{0,12}", arb_f64(), proptest::option::of(arb_f64()), arb_f64(), proptest::option::of(-100i64..5000))
            .prop_map(|(metric, observed, expected, score, until)| Payload::Anomaly { forecast: None,
                watch: metric.clone(), metric, observed, expected, score, until
            }),
        1 => ("(OOMKilled|Evicted|NodeNotReady|Unhealthy|X)", 0u32..5, "(Node/n1|Pod/a|)")
            .prop_map(|(reason, count, object)| Payload::KubeEvent { reason, message: "m n1".into(), count, object }),
        1 => (0usize..5).prop_map(|k| Payload::Change {
            change: [ChangeKind::Rollout, ChangeKind::Config, ChangeKind::Secret, ChangeKind::Scale, ChangeKind::Autoscaler][k],
            from: Some("a:v1".into()), to: Some("a:v2".into()), description: String::new(),
        }),
        1 => (proptest::collection::vec("(a|b|c|x|)", 0..3), proptest::collection::vec("(n1|n2)", 0..2))
            .prop_map(|(depends_on, nodes)| Payload::Topology { nodes, pods: vec![], services: vec![], depends_on }),
        1 => ("(error_burst|new_template|rate)", 0u64..1000)
            .prop_map(|(signal, count)| Payload::LogSignal { signal, template: "t".into(), count, samples: vec![] }),
        1 => Just(Payload::Action { run_id: 1, playbook: "p".into(), step: "s".into(), status: "ok".into() }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Any evidence: no panic, scores in [0, 1], sorted, cited ids exist, deterministic,
    /// actions never cited.
    #[test]
    fn arbitrary_evidence(items in proptest::collection::vec((arb_subject(), -3000i64..6000, arb_payload()), 0..40),
                          symptom in proptest::option::of(arb_subject())) {
        let evidence: Vec<Evidence> = items.into_iter().enumerate()
            .map(|(i, (subject, time, payload))| Evidence { id: format!("E{}", i + 1), time, subject, payload })
            .collect();
        let actions: BTreeSet<&str> = evidence.iter()
            .filter(|e| matches!(e.payload, Payload::Action { .. })).map(|e| e.id.as_str()).collect();
        let ids: BTreeSet<&str> = evidence.iter().map(|e| e.id.as_str()).collect();
        let input = RcaInput { start: 1000, symptom, evidence: evidence.clone() };
        let r = rank(&input, &RankParams::default());
        prop_assert_eq!(&r, &rank(&input, &RankParams::default()));
        for c in &r.candidates {
            prop_assert!(c.score.is_finite() && (0.0..=1.0).contains(&c.score), "{:?}", c);
            for id in &c.evidence {
                prop_assert!(ids.contains(id.as_str()));
                prop_assert!(!actions.contains(id.as_str()));
            }
        }
        for pair in r.candidates.windows(2) {
            prop_assert!(pair[0].score >= pair[1].score);
        }
    }
}

#[test]
fn nan_and_weird_values_do_not_panic() {
    let mut params = RankParams { half_z: f64::NAN, w_strength: f64::INFINITY, ..RankParams::default() };
    params.lag_secs = i64::MAX;
    let input = RcaInput {
        start: i64::MIN,
        symptom: Some(w("x")),
        evidence: vec![
            anomaly("E1", i64::MAX, w("x"), "cpu", f64::NAN),
            anomaly("E2", i64::MIN, w("y"), "cpu", f64::INFINITY),
            anomaly("E3", 0, w("z"), "", -1.0),
        ],
    };
    let r = rank(&input, &params);
    for c in &r.candidates {
        assert!((0.0..=1.0).contains(&c.score), "{c:?}");
    }
    assert!(r.candidates.iter().all(|c| c.subject != w("x")));
}

#[test]
fn a_filling_volume_heads_for_its_limit_and_says_when() {
    // The forecast's end (above the current value) is not a "below normal" deviation.
    let mut e = anomaly("E1", 0, w("orders-db-data"), "volume-full", 9.0);
    if let Payload::Anomaly { observed, expected, forecast, .. } = &mut e.payload {
        *observed = 0.65;
        *expected = Some(1.9);
        *forecast = Some(Forecast { limit: 0.9, crossing: Some(4440) });
    }
    let r = rank(&RcaInput { start: 0, symptom: Some(w("orders-db-data")), evidence: vec![e] }, &RankParams::default());
    let top = r.candidates.first().expect("ranked");
    assert!(top.reasons.iter().any(|x| x == "volume-full forecast to reach 0.9 at 01:14:00"), "{:?}", top.reasons);
    assert!(top.reasons.iter().all(|x| !x.contains("σ")), "{:?}", top.reasons);
}
