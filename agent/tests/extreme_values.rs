//! Extreme values in every duration and count of `warden.yaml` and of a playbook: the
//! checks either refuse them with the key's path and line, or accept them, and nothing
//! panics, neither the checks nor the playbook engine running what they accepted.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use proptest::prelude::*;
use warden_agent::config::parse_str;
use warden_agent::store::Store;
use warden_connectors::prometheus::{MetricSource, RangeResult, Sample, Series};
use warden_connectors::Error as SourceError;
use warden_playbooks::duration::{HumanDuration, MAX_DURATION};
use warden_playbooks::engine::{Engine, Notice, Notices, StartRequest};
use warden_playbooks::run::{Run, RunStatus, TriggerInfo};
use warden_playbooks::spec::{
    Arg, Autonomy, Guards, NotifyStep, Playbook, RateCap, RateGuards, RunJobStep, Step, TargetKind, VerifyStep,
    WaitStep,
};

const PROM: &str = "prometheus: { url: 'http://127.0.0.1:9' }\n";
const LOKI: &str = "loki: { url: 'http://127.0.0.1:9' }\n";
const WATCH: &str = "watches:\n  - name: w\n    query: up\n    detector: { kind: robust_baseline }\n";
const LOG_WATCH: &str = "log_watches:\n  - name: l\n    query: '{app=\"x\"}'\n";
const EMAIL: &str = "notify:\n  email:\n    host: mail\n    from: 'a@example.com'\n    to: ['b@example.com']\n";

/// Every duration key of `warden.yaml`: the file with `{v}` for the value, and the key's path.
fn duration_keys() -> Vec<(String, &'static str)> {
    vec![
        ("prometheus: { url: 'http://127.0.0.1:9', timeout: {v} }\n".into(), "prometheus.timeout"),
        ("loki: { url: 'http://127.0.0.1:9', timeout: {v} }\n".into(), "loki.timeout"),
        ("server: { limits: { header_read_timeout: {v} } }\n".into(), "server.limits.header_read_timeout"),
        ("server: { limits: { body_read_timeout: {v} } }\n".into(), "server.limits.body_read_timeout"),
        ("notify: { slack: { webhook_url: { env: X }, timeout: {v} } }\n".into(), "notify.slack.timeout"),
        (format!("{EMAIL}    timeout: {{v}}\n"), "notify.email.timeout"),
        ("notify: { retry: { initial_backoff: {v} } }\n".into(), "notify.retry.initial_backoff"),
        ("notify: { retry: { max_backoff: {v} } }\n".into(), "notify.retry.max_backoff"),
        ("notify: { retry: { max_age: {v} } }\n".into(), "notify.retry.max_age"),
        ("actions: { cooldown: {v} }\n".into(), "actions.cooldown"),
        ("analysis: { lookback: {v} }\n".into(), "analysis.lookback"),
        ("playbooks: { guards: { cooldown: {v} } }\n".into(), "playbooks.guards.cooldown"),
        ("playbooks: { guards: { approval_ttl: {v} } }\n".into(), "playbooks.guards.approval_ttl"),
        (
            "playbooks: { guards: { rate: { global: { max: 1, per: {v} } } } }\n".into(),
            "playbooks.guards.rate.global.per",
        ),
        (format!("{PROM}{WATCH}    interval: {{v}}\n"), "watches[0].interval"),
        (format!("{PROM}{WATCH}    step: {{v}}\n"), "watches[0].step"),
        (format!("{PROM}{WATCH}    lookback: {{v}}\n"), "watches[0].lookback"),
        (format!("{PROM}{WATCH}    offset: {{v}}\n"), "watches[0].offset"),
        (format!("{LOKI}{LOG_WATCH}    interval: {{v}}\n"), "log_watches[0].interval"),
        (format!("{LOKI}{LOG_WATCH}    start_lookback: {{v}}\n"), "log_watches[0].start_lookback"),
        (format!("{LOKI}{LOG_WATCH}    offset: {{v}}\n"), "log_watches[0].offset"),
    ]
}

/// Every count key of `warden.yaml`.
fn count_keys() -> Vec<(String, &'static str)> {
    vec![
        ("loki: { url: 'http://127.0.0.1:9', page_limit: {v} }\n".into(), "loki.page_limit"),
        ("loki: { url: 'http://127.0.0.1:9', max_entries: {v} }\n".into(), "loki.max_entries"),
        ("server: { limits: { max_connections: {v} } }\n".into(), "server.limits.max_connections"),
        ("server: { limits: { reserved_connections: {v} } }\n".into(), "server.limits.reserved_connections"),
        (format!("{EMAIL}    port: {{v}}\n"), "notify.email.port"),
        ("notify: { retry: { max_attempts: {v} } }\n".into(), "notify.retry.max_attempts"),
        ("notify: { digest: { threshold: {v} } }\n".into(), "notify.digest.threshold"),
        ("notify: { digest: { max_items: {v} } }\n".into(), "notify.digest.max_items"),
        ("actions: { scale: { min_replicas: {v} } }\n".into(), "actions.scale.min_replicas"),
        ("actions: { scale: { max_replicas: {v} } }\n".into(), "actions.scale.max_replicas"),
        ("actions: { scale: { step: {v} } }\n".into(), "actions.scale.step"),
        ("playbooks: { guards: { max_attempts: {v} } }\n".into(), "playbooks.guards.max_attempts"),
        (
            "playbooks: { guards: { rate: { global: { max: {v}, per: 1h } } } }\n".into(),
            "playbooks.guards.rate.global.max",
        ),
        (
            "playbooks: { guards: { blast_radius: { max_replica_change_percent: {v} } } }\n".into(),
            "playbooks.guards.blast_radius.max_replica_change_percent",
        ),
        (
            "playbooks: { guards: { blast_radius: { max_pods_deleted: {v} } } }\n".into(),
            "playbooks.guards.blast_radius.max_pods_deleted",
        ),
        (format!("{PROM}{WATCH}    resolve_after: {{v}}\n"), "watches[0].resolve_after"),
        (format!("{LOKI}{LOG_WATCH}    resolve_after: {{v}}\n"), "log_watches[0].resolve_after"),
    ]
}

fn extreme_duration() -> impl Strategy<Value = String> {
    let fixed = prop::sample::select(vec![
        "0s",
        "1ns",
        "1ms",
        "1s",
        "366d",
        "367d",
        "1y",
        "1000y",
        "1000000000d",
        "10000000000000000000s",
        "18446744073709551615s",
        "18446744073709551616s",
        "99999999999999999999999999999d",
        "-1s",
        "1e308s",
    ])
    .prop_map(String::from);
    let units = prop::sample::select(vec!["ns", "ms", "s", "m", "h", "d", "w", "y"]);
    prop_oneof![fixed, (any::<u64>(), units).prop_map(|(n, u)| format!("{n}{u}"))]
}

fn extreme_count() -> impl Strategy<Value = String> {
    let fixed = prop::sample::select(vec![
        "0".to_string(),
        "1".into(),
        "-1".into(),
        "2".into(),
        i32::MAX.to_string(),
        i32::MIN.to_string(),
        u32::MAX.to_string(),
        i64::MAX.to_string(),
        i64::MIN.to_string(),
        u64::MAX.to_string(),
        "99999999999999999999999".into(),
        "1e30".into(),
    ]);
    prop_oneof![fixed, any::<i64>().prop_map(|n| n.to_string())]
}

fn check(template: &str, path: &str, value: &str) -> Result<(), TestCaseError> {
    let text = template.replace("{v}", value);
    match parse_str(&text, Path::new("x.yaml")) {
        Ok(cfg) => {
            // What was accepted is within the bounds every later computation relies on.
            for d in
                [cfg.notify.retry.max_age, cfg.notify.retry.max_backoff, cfg.actions.cooldown, cfg.analysis.lookback]
            {
                prop_assert!(d.get() <= MAX_DURATION);
            }
        }
        Err(e) => {
            // Refused: an error in the key's section (or a YAML error that names it), with a line.
            let section = path.split(['.', '[']).next().unwrap_or(path);
            prop_assert!(
                e.0.iter().any(|e| (e.path.starts_with(section) || e.message.contains(section)) && e.line.is_some()),
                "{path} = {value}: {e}"
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn every_config_duration_is_checked_without_panic(key in 0usize..64, value in extreme_duration()) {
        let keys = duration_keys();
        let (template, path) = &keys[key % keys.len()];
        check(template, path, &value)?;
    }

    #[test]
    fn every_config_count_is_checked_without_panic(key in 0usize..64, value in extreme_count()) {
        let keys = count_keys();
        let (template, path) = &keys[key % keys.len()];
        check(template, path, &value)?;
    }
}

#[test]
fn reported_extremes_are_refused_with_path_and_line() {
    let cases = [
        (format!("{PROM}{WATCH}    step: 10000000000000000000s\n"), "watches[0].step", 6),
        (format!("{PROM}{WATCH}    interval: 10000000000000000000s\n"), "watches[0].interval", 6),
        ("playbooks: { guards: { approval_ttl: 1000000000d } }\n".to_string(), "playbooks.guards.approval_ttl", 1),
        ("notify: { slack: { webhook_url: { env: X }, timeout: 0s } }\n".to_string(), "notify.slack.timeout", 1),
        (format!("{EMAIL}    timeout: 0s\n"), "notify.email.timeout", 6),
        (format!("{EMAIL}    port: 0\n"), "notify.email.port", 6),
    ];
    for (text, path, line) in cases {
        let e = parse_str(&text, Path::new("x.yaml")).expect_err(path).0;
        assert!(e.iter().any(|e| e.path == path && e.line == Some(line)), "{path}: {e:?}");
    }
}

// ---------------------------------------------------------------------------------------
// The engine, with durations straight in the playbook (past any parser bound).

struct Quiet;
impl Notices for Quiet {
    fn notice(&self, _: &Run, _: Notice, _: &str) {}
}

/// A Prometheus stand-in: a healthy series, or its 11,000-point refusal.
struct Metrics;
#[async_trait::async_trait]
impl MetricSource for Metrics {
    async fn query_range(
        &self,
        _: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        step: Duration,
    ) -> warden_connectors::Result<RangeResult> {
        let span = (end - start).to_std().map_err(|e| SourceError::InvalidInput(e.to_string()))?;
        if span.as_millis() / step.as_millis().max(1) > 11_000 {
            return Err(SourceError::Prometheus {
                error_type: "bad_data".into(),
                message: "exceeded maximum resolution of 11,000 points per timeseries".into(),
            });
        }
        let step_ms = usize::try_from(step.as_millis()).map_err(|e| SourceError::InvalidInput(e.to_string()))?.max(1);
        let points = (start.timestamp_millis()..=end.timestamp_millis())
            .step_by(step_ms)
            .map(|timestamp_ms| Sample { timestamp_ms, value: 1.0 })
            .collect();
        Ok(RangeResult { series: vec![Series { labels: BTreeMap::new(), points }], warnings: Vec::new() })
    }
}

fn engine() -> Engine {
    Engine {
        cluster: None,
        metrics: Some(Arc::new(Metrics)),
        webhook: None,
        notices: Arc::new(Quiet),
        store: Arc::new(Store::open_in_memory().expect("store")),
        defaults: Default::default(),
        retry: Default::default(),
        fencing: None,
    }
}

fn step(f: impl FnOnce(&mut Step)) -> Step {
    let mut s = Step::default();
    f(&mut s);
    s
}

fn playbook(d: [Duration; 6], autonomy: Autonomy) -> Playbook {
    Playbook {
        name: "extreme".into(),
        description: String::new(),
        target: TargetKind::None,
        params: BTreeMap::new(),
        triggers: Vec::new(),
        guards: Guards {
            autonomy: Some(autonomy),
            cooldown: Some(HumanDuration(d[0])),
            approval_ttl: Some(HumanDuration(d[1])),
            rate: Some(RateGuards { global: Some(RateCap { max: 5, per: HumanDuration(d[2]) }), per_namespace: None }),
            ..Guards::default()
        },
        steps: vec![
            step(|s| s.wait = Some(WaitStep { duration: HumanDuration(d[3]) })),
            step(|s| s.verify = Some(VerifyStep { query: Arg::from("up"), duration: HumanDuration(d[4]), step: None })),
            step(|s| {
                s.run_job = Some(RunJobStep {
                    namespace: Some(Arg::from("jobs")),
                    name_prefix: "j".into(),
                    spec: serde_yaml::from_str("{template: {}}").expect("yaml"),
                    labels: BTreeMap::new(),
                    timeout: HumanDuration(d[5]),
                    poll: None,
                })
            }),
            step(|s| s.notify = Some(NotifyStep { message: Arg::from("done") })),
        ],
        revert: None,
    }
}

fn any_duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::from_nanos(1)),
        Just(MAX_DURATION),
        Just(Duration::from_secs(1_000_000_000 * 86_400)),
        Just(Duration::from_secs(10_000_000_000_000_000_000)),
        Just(Duration::MAX),
        (0u64..=400 * 86_400).prop_map(Duration::from_secs),
        any::<u64>().prop_map(Duration::from_secs),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn the_engine_never_panics_on_extreme_durations(d in prop::array::uniform6(any_duration()), recommend in any::<bool>()) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let engine = engine();
        let now = Utc::now();
        let autonomy = if recommend { Autonomy::Recommend } else { Autonomy::Auto };
        let req = StartRequest {
            playbook: playbook(d, autonomy),
            params: BTreeMap::new(),
            target: None,
            trigger: TriggerInfo { kind: "manual".into(), actor: "user/test".into(), incident_id: None, detail: serde_json::Value::Null },
            vars: Default::default(),
            has_data: None,
            dry_run: false,
            now,
        };
        let run = rt.block_on(engine.start(req));
        if let Ok(run) = run {
            // Advance far into the future, step by step: every wait and poll ends.
            let mut last = run.status;
            for days in [1i64, 400, 100_000] {
                let later = now + chrono::Duration::days(days);
                let _ = rt.block_on(engine.tick(later));
                if let Ok(r) = rt.block_on(engine.advance(run.id, later)) {
                    last = r.status;
                }
            }
            prop_assert!(last != RunStatus::Running || d.iter().all(|x| *x <= MAX_DURATION), "stuck running: {d:?}");
        }
    }
}
