use super::*;

#[test]
fn scenario_files_parse() {
    let origin = start_time();
    let load = Load::parse(LOAD_CSV, origin).expect("load csv");
    assert_eq!(load.rps.len(), ((HISTORY_SECS + DEMO_SECS) / 30 + 1) as usize);
    config::parse_str(SCENARIO_YAML, Path::new("demo.yaml")).expect("demo config is valid");
}

#[tokio::test]
async fn pods_become_ready_after_startup() {
    let t0 = start_time();
    let c = SimCluster::new(WorkloadRef::new("shop", "checkout"), t0);
    c.set_now(t0 + ChronoDuration::seconds(100));
    c.set_replicas(&WorkloadRef::new("shop", "checkout"), 5, false).await.expect("scale");
    assert_eq!(c.ready_at(t0 + ChronoDuration::seconds(120)), 3);
    assert_eq!(c.ready_at(t0 + ChronoDuration::seconds(160)), 5);
    c.set_replicas(&WorkloadRef::new("shop", "checkout"), 9, true).await.expect("dry run");
    assert_eq!(c.desired_at(t0 + ChronoDuration::seconds(300)), 5);
    assert!(c.get_replicas(&WorkloadRef::new("shop", "other")).await.is_err());
}

#[tokio::test]
async fn demo_opens_acts_and_resolves() {
    let dir = tempfile::tempdir().expect("tempdir");
    run(dir.path(), false, None, false, Serve::default()).await.expect("demo runs");
    let store = Store::open(&dir.path().join("warden.db")).expect("store");
    let incidents = store.list_incidents(None, 20).expect("incidents");
    let by_watch = |w: &str| incidents.iter().filter(|i| i.watch == w).collect::<Vec<_>>();

    // The latency incident: opened, acted on, resolved.
    let latency = by_watch("checkout-p95-latency");
    assert_eq!(latency.len(), 1, "{incidents:?}");
    assert_eq!(latency[0].status, "resolved");
    let runs = store.list_runs(None, None, 50).expect("runs");
    let mut scaled: Vec<_> = crate::act::remediation::actions_view(&runs)
        .into_iter()
        .filter(|a| a["kind"] == "scale" && a["status"] == "succeeded")
        .map(|a| (a["from_replicas"].as_i64(), a["to_replicas"].as_i64()))
        .collect();
    scaled.reverse();
    assert_eq!(scaled.first(), Some(&(Some(3), Some(4))));
    // The built-in playbooks ran: scale-up with its verification, and the retraining on
    // drift after the (simulated) approval: Job, quality check, promotion, serving check.
    use warden_playbooks::run::{RunStatus, StepStatus};
    let scale_up = runs.iter().find(|r| r.playbook == "scale-up-on-saturation").expect("a scale-up run");
    assert_eq!(scale_up.status, RunStatus::Succeeded, "{scale_up:?}");
    assert!(scale_up.steps.iter().all(|st| st.status == StepStatus::Done), "{scale_up:?}");
    let retrain = runs.iter().find(|r| r.playbook == "retrain-on-drift").expect("a retraining run");
    assert_eq!(retrain.status, RunStatus::Succeeded, "{retrain:?}");
    assert_eq!(retrain.approval.as_ref().and_then(|a| a.decided_by.as_deref()), Some("user/oncall"));
    let actions: Vec<&str> = retrain.steps.iter().map(|st| st.action.as_str()).collect();
    assert_eq!(actions, ["run_job", "verify", "patch", "verify"]);
    let entries = store.audit_entries().expect("audit");
    assert!(warden_playbooks::audit::verify(&entries).is_ok());

    // Each of the other faults is found once, on the right series, and nothing else is:
    // not the pods that started during the scale-up, not the payments CPU during
    // ordinary peaks.
    let pods = by_watch("checkout-pod-latency");
    assert_eq!(pods.len(), 1, "{pods:?}");
    assert_eq!(pods[0].labels.get("pod").map(String::as_str), Some(PODS[1]));
    assert_eq!(pods[0].status, "resolved");
    let at = |m: i64| start_time() + ChronoDuration::minutes(m);
    assert!(pods[0].opened_at >= at(SLOW_POD.0) && pods[0].opened_at <= at(SLOW_POD.0 + 5), "{:?}", pods[0].opened_at);

    let disk = by_watch("orders-db-volume-full");
    assert_eq!(disk.len(), 1, "{disk:?}");
    assert!(
        disk[0].opened_at >= at(DISK_FILL_FROM) && disk[0].opened_at <= at(DISK_FILL_FROM + 20),
        "{:?}",
        disk[0].opened_at
    );

    let cpu = by_watch("payments-cpu-vs-traffic");
    assert_eq!(cpu.len(), 1, "{cpu:?}");
    assert!(
        cpu[0].opened_at >= at(CPU_RUNAWAY.0) && cpu[0].opened_at <= at(CPU_RUNAWAY.0 + 2),
        "{:?}",
        cpu[0].opened_at
    );
    let resolved = cpu[0].resolved_at.expect("the CPU incident resolves after the loop stops");
    assert!(resolved >= at(CPU_RUNAWAY.1), "resolved at {resolved} while the fault was still on");

    let drift = by_watch("fraud-model-score-drift");
    assert_eq!(drift.len(), 1, "{drift:?}");
    assert!(
        drift[0].opened_at >= at(DRIFT_FROM) && drift[0].opened_at <= at(DRIFT_FROM + 15),
        "{:?}",
        drift[0].opened_at
    );
    assert_eq!(incidents.len(), 5, "{incidents:?}");

    let lines = std::fs::read_to_string(dir.path().join("notifications.jsonl")).expect("notifications");
    let events: Vec<String> = lines
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("json line")["event"].as_str().unwrap_or("").to_string()
        })
        .collect();
    assert_eq!(events.first().map(String::as_str), Some("opened"));
    assert!(events.iter().any(|e| e == "action"));
    assert_eq!(events.iter().filter(|e| *e == "opened").count(), 5);

    // Every incident was analysed: a ranked cause and a summary that passes grounding,
    // sent as an `analysis` notification.
    // Five first analyses, and a revision of each incident whose run ended afterwards.
    assert!(events.iter().filter(|e| *e == "analysis").count() > 5, "{events:?}");
    let top = |i: &crate::store::Incident| {
        let a = store.get_analysis(i.id).expect("read").unwrap_or_else(|| panic!("incident {} not analysed", i.id));
        let report = warden_models::grounding::check(&a.summary.text, &a.evidence);
        assert!(report.passed, "{report:?}");
        let c = a.ranking.candidates.first().cloned().unwrap_or_else(|| panic!("nothing ranked for {}", i.id));
        (c.subject.display(), c.cause)
    };
    // The scale-up ended after the latency incident was analysed: its analysis was redone
    // with the run as evidence, and says so.
    let revised = store.get_analysis(latency[0].id).expect("read").expect("analysis");
    assert!(revised.revision >= 1, "{revised:?}");
    let why = revised.revised_because.as_deref().unwrap_or("");
    assert!(why.contains("scale-up-on-saturation") && why.contains("succeeded"), "{why}");
    assert!(revised.summary.text.contains("scale-up-on-saturation"), "{}", revised.summary.text);
    use warden_detectors::rca::CauseKind;
    assert_eq!(top(latency[0]), ("shop/checkout".to_string(), CauseKind::Workload));
    assert_eq!(top(cpu[0]), ("shop/payments".to_string(), CauseKind::Workload));
    assert_eq!(top(pods[0]), ("shop/checkout".to_string(), CauseKind::Workload));
    // The drift follows the feature pipeline's ConfigMap change by ten minutes.
    assert_eq!(top(drift[0]), ("ml/fraud-scorer".to_string(), CauseKind::Change));
    let a = store.get_analysis(drift[0].id).expect("read").expect("analysis");
    assert!(
        a.evidence.iter().any(|e| matches!(&e.payload, Payload::Change { change: ChangeKind::Config, .. })),
        "{a:?}"
    );
}
