//! Reading a config file and collecting every error, each with its YAML path and line.

use std::fmt;
use std::path::Path;

use serde_yaml::Value;

use super::{validate, Config, WatchConfig};
use warden_playbooks::yaml_index::YamlIndex;
use warden_playbooks::yaml_load::{deserialize_collect, parse_value, renumber};

/// One problem in a config file: the same shape (file, line, YAML path, message) as a
/// problem in a playbook file.
pub type ConfigError = warden_playbooks::load::LoadError;

/// Every problem found, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "error: {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Read and check a config file.
pub fn load_file(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.to_path_buf(),
            line: None,
            path: String::new(),
            message: format!("cannot read the file: {e}"),
        }])
    })?;
    parse_str(&text, path)
}

/// Parse and check config text; `file` only names it in errors.
pub fn parse_str(text: &str, file: &Path) -> Result<Config, ConfigErrors> {
    let mk = |line: Option<usize>, path: String, message: String| ConfigError {
        file: file.to_path_buf(),
        line,
        path,
        message,
    };

    let mut value: Value = match parse_value(text) {
        Ok(v) => v,
        Err(e) => return Err(ConfigErrors(vec![mk(e.line(), String::new(), e.to_string())])),
    };
    let index = YamlIndex::build(text);
    let mut found: Vec<(String, String)> = Vec::new();

    // Watches are parsed one by one, so a watch serde cannot repair does not hide the
    // errors of the others or of the rest of the file.
    let watch_items = match &mut value {
        Value::Mapping(m) => match m.get_mut(Value::String("watches".into())) {
            Some(Value::Sequence(items)) => std::mem::take(items),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    };
    let base: Option<Config> = deserialize_collect(value, "", &mut found);
    let mut watches = Vec::new();
    let mut original_index = Vec::new();
    for (i, item) in watch_items.into_iter().enumerate() {
        if let Some(w) = deserialize_collect::<WatchConfig>(item, &format!("watches[{i}]"), &mut found) {
            watches.push(w);
            original_index.push(i);
        }
    }

    let parsed = base.map(|mut cfg| {
        cfg.watches = watches;
        cfg
    });
    if let Some(cfg) = &parsed {
        for (path, message) in validate::validate(cfg) {
            found.push((renumber(&path, "watches", &original_index), message));
        }
    }
    if found.is_empty() {
        if let Some(cfg) = parsed {
            return Ok(cfg);
        }
    }
    let mut errors: Vec<ConfigError> = found
        .into_iter()
        .map(|(path, message)| (secret_path(path), message))
        .map(|(path, message)| mk(index.line(&path), path, message))
        .collect();
    errors.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
    errors.dedup();
    Err(ConfigErrors(errors))
}

/// The keys whose values are secrets.
const SECRET_PATHS: &[&str] = &[
    "server.api_token",
    "server.viewer_token",
    "prometheus.auth.bearer",
    "prometheus.auth.basic.password",
    "loki.auth.bearer",
    "loki.auth.basic.password",
    "notify.slack.webhook_url",
    "notify.slack_app.bot_token",
    "notify.slack_app.signing_secret",
    "notify.email.password",
    "notify.pagerduty.routing_key",
    "notify.opsgenie.api_key",
    "notify.teams.webhook_url",
    "notify.webhook.secret",
];

/// An error below a secret's key is reported at the key: the path of a key written inside a
/// secret reference (`api_token: { s3cret: x }`) would print the secret.
fn secret_path(path: String) -> String {
    for s in SECRET_PATHS {
        if path.strip_prefix(s).is_some_and(|rest| rest.starts_with(['.', '['])) {
            return (*s).to_string();
        }
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<ConfigError> {
        parse_str(text, Path::new("w.yaml")).expect_err("must be invalid").0
    }

    #[test]
    fn reports_unknown_key_bad_promql_and_bad_duration_together() {
        let text = "prometheus:\n  url: http://127.0.0.1:9090\nwatches:\n  - name: a\n    query: 'sum(rate(x[5m])'\n    interval: 5 parsecs\n    colour: red\n    detector: { kind: robust_baseline }\n";
        let e = errors(text);
        let got: Vec<(Option<usize>, &str)> = e.iter().map(|e| (e.line, e.path.as_str())).collect();
        assert_eq!(
            got,
            [(Some(5), "watches[0].query"), (Some(6), "watches[0].interval"), (Some(7), "watches[0].colour")]
        );
        assert!(e[2].to_string().starts_with("w.yaml:7: watches[0].colour: unknown field `colour`"), "{}", e[2]);
    }

    #[test]
    fn a_broken_watch_does_not_hide_the_others() {
        let text = "prometheus: { url: 'http://127.0.0.1:9090' }\nwatches:\n  - name: a\n    query: up\n    detector: { kind: nope }\n  - name: b\n    query: 'up{'\n    detector: { kind: robust_baseline, window: 2 }\n";
        let paths: Vec<String> = errors(text).into_iter().map(|e| e.path).collect();
        assert_eq!(paths, ["watches[0].detector.kind", "watches[1].query", "watches[1].detector.window"]);
    }

    #[test]
    fn syntax_errors_and_secrets() {
        let e = errors("a: [1, 2\n");
        assert!(e[0].message.starts_with("invalid YAML"), "{}", e[0].message);
        // A secret must be a reference; the value is never echoed.
        let e = errors("server:\n  api_token: hunter2\n");
        assert_eq!(e[0].path, "server.api_token");
        let e = errors("server:\n  api_token: { env: A, file: /b }\n");
        assert!(e[0].message.contains("exactly one"), "{}", e[0].message);
        // Nothing of an inline secret appears, wherever it was written.
        for text in [
            "server:\n  api_token: hunter2\n",
            "server:\n  viewer_token: { hunter2: x }\n",
            "prometheus:\n  url: 'http://127.0.0.1:9'\n  auth: { basic: { username: u, password: [hunter2] } }\n",
            "notify:\n  slack: { webhook_url: 'https://hooks/hunter2' }\n",
        ] {
            let all: Vec<String> = errors(text).iter().map(|e| e.to_string()).collect();
            assert!(
                all.iter().all(|e| !e.contains("hunter2")) && all.iter().any(|e| e.contains("{ env: NAME }")),
                "{all:?}"
            );
        }
    }

    #[test]
    fn slack_app_approvers_are_checked() {
        let head =
            "notify:\n  slack_app:\n    bot_token: { env: B }\n    signing_secret: { env: S }\n    channel: C0123\n";
        let cfg =
            parse_str(&format!("{head}    approvers: {{ users: [U0A, W0B], groups: [S0G] }}\n"), Path::new("w.yaml"))
                .expect("valid");
        let a = cfg.notify.slack_app.expect("slack_app").approvers;
        assert_eq!((a.users.len(), a.groups.len()), (2, 1));
        let e =
            errors(&format!("{head}    approvers: {{ users: [U0A, alice, U0A], groups: ['#oncall', S0G, S0G] }}\n"));
        let got: Vec<(&str, &str)> = e.iter().map(|e| (e.path.as_str(), e.message.as_str())).collect();
        assert_eq!(got.len(), 4, "{got:?}");
        assert!(
            got[0].0 == "notify.slack_app.approvers.users[1]" && got[0].1.contains("not a Slack user id"),
            "{got:?}"
        );
        assert!(got[1].0 == "notify.slack_app.approvers.users[2]" && got[1].1.contains("listed twice"), "{got:?}");
        assert!(got[2].0 == "notify.slack_app.approvers.groups[0]" && got[2].1.contains("user group id"), "{got:?}");
        assert!(got[3].0 == "notify.slack_app.approvers.groups[2]" && got[3].1.contains("listed twice"), "{got:?}");
        let e = errors(&format!("{head}    approvers: {{ users: [U0A], roles: [admin] }}\n"));
        assert_eq!(e[0].path, "notify.slack_app.approvers.roles", "{e:?}");
        assert!(e[0].message.contains("unknown field"), "{}", e[0].message);
    }

    #[test]
    fn leader_election_defaults_and_errors_name_their_paths() {
        let cfg = parse_str("", Path::new("e.yaml")).expect("valid");
        let le = &cfg.leader_election;
        assert!(!le.enabled);
        assert_eq!(le.lease_name, "warden");
        assert_eq!(
            (le.lease_duration.get().as_secs(), le.renew_deadline.get().as_secs(), le.retry_period.get().as_secs()),
            (15, 10, 2)
        );
        let env = crate::config::PodEnv { namespace: Some("ops".into()), name: Some("warden-7f9".into()) };
        let lease = le.lease_config(&env).expect("the defaults are valid");
        assert_eq!((lease.namespace.as_str(), lease.identity.as_str()), ("ops", "warden-7f9"));
        // The configured values win over the pod's.
        let cfg = parse_str(
            "kubernetes: {}\nleader_election: { enabled: true, namespace: mon, identity: w-0, lease_name: w }\n",
            Path::new("e.yaml"),
        )
        .expect("valid");
        let lease = cfg.leader_election.lease_config(&env).expect("valid");
        assert_eq!((lease.namespace.as_str(), lease.name.as_str(), lease.identity.as_str()), ("mon", "w", "w-0"));
        // Without a namespace anywhere it is required.
        let missing = cfg.leader_election.clone();
        let missing = crate::config::LeaderElectionSection { namespace: None, ..missing };
        let (path, msg) = missing.lease_config(&crate::config::PodEnv::default()).expect_err("no namespace");
        assert_eq!(path, "leader_election.namespace");
        assert!(msg.contains("POD_NAMESPACE"), "{msg}");

        for (text, path) in [
            (
                "leader_election: { lease_duration: 15s, renew_deadline: 10s, retry_period: 10s }\n",
                "leader_election.retry_period",
            ),
            ("leader_election: { renew_deadline: 14s }\n", "leader_election.renew_deadline"),
            (
                "leader_election: { lease_duration: 5s, renew_deadline: 3s, retry_period: 2s }\n",
                "leader_election.lease_duration",
            ),
            ("leader_election: { lease_name: 'a/b' }\n", "leader_election.lease_name"),
            ("leader_election: { namespace: 'x/y' }\n", "leader_election.namespace"),
            ("leader_election: { lease_duration: soon }\n", "leader_election.lease_duration"),
            ("leader_election: { enable: true }\n", "leader_election.enable"),
        ] {
            let e = errors(text);
            assert_eq!(e.len(), 1, "{text}: {e:?}");
            assert_eq!(e[0].path, path, "{text}: {}", e[0]);
            assert_eq!(e[0].line, Some(1), "{text}");
        }
        // With leader election on, a channel timeout longer than a fenced send may take.
        let e = errors(
            "leader_election: { enabled: true, namespace: ops, identity: w-0 }\nnotify:\n  slack: { webhook_url: { env: HOOK }, timeout: 30s }\n",
        );
        let paths: Vec<&str> = e.iter().map(|e| e.path.as_str()).collect();
        // ... and without a `kubernetes` section there is no API server to hold the Lease.
        assert_eq!(paths, ["leader_election.enabled", "notify.slack.timeout"], "{e:?}");
    }

    #[test]
    fn trusted_proxies_are_addresses_or_ranges() {
        let cfg =
            parse_str("server:\n  trusted_proxies: ['10.0.0.0/8', 'fd00::1']\n", Path::new("e.yaml")).expect("valid");
        assert_eq!(cfg.server.trusted_proxy_nets().len(), 2);
        let e = errors("server:\n  trusted_proxies: ['10.0.0.0/8', 'ingress']\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].path, "server.trusted_proxies[1]");
        assert!(e[0].message.contains("neither an address nor a CIDR range"), "{}", e[0].message);
    }

    #[test]
    fn empty_file_is_a_valid_default() {
        let cfg = parse_str("", Path::new("e.yaml")).expect("valid");
        assert!(cfg.watches.is_empty());
        assert_eq!(cfg.server.listen.to_string(), "127.0.0.1:8080");
    }

    #[test]
    fn semantic_checks_name_their_paths() {
        let text = "prometheus: { url: 'ftp://x' }\nwatches:\n  - name: a\n    query: up\n    step: 1s\n    lookback: 7d\n    identity: [ns, ns, 9x]\n    target: { namespace: '{ns}', deployment: '{dep' }\n    detector: { kind: robust_baseline }\n    action: {}\n  - name: a\n    query: up\n    detector: { kind: robust_baseline }\n";
        let paths: Vec<String> = errors(text).into_iter().map(|e| e.path).collect();
        for p in [
            "prometheus.url",
            "watches[0].lookback",
            "watches[0].identity[1]",
            "watches[0].identity[2]",
            "watches[0].target.deployment",
            "watches[0].action",
            "watches[1].name",
        ] {
            assert!(paths.iter().any(|q| q == p), "{p} missing from {paths:?}");
        }
    }

    #[test]
    fn model_and_multivariate_watches() {
        let ok = "prometheus: { url: 'http://127.0.0.1:9090' }\nwatches:\n  - name: drift\n    query: sum by (model, le) (score_bucket)\n    identity: [model]\n    lookback: 2h\n    detector: { kind: drift, current: 15m, reference: 1h, psi_significant: 0.3 }\n  - name: acc\n    query: accuracy\n    detector: { kind: quality, goal: higher_is_better, baseline: 0.9 }\n  - name: joint\n    queries: { cpu: 'sum(rate(cpu[5m]))', rps: 'sum(rate(req[5m]))' }\n    detector: { kind: multivariate, components: 2 }\n";
        let cfg = parse_str(ok, Path::new("m.yaml")).expect("valid");
        assert_eq!(cfg.watches[2].queries.len(), 2);

        let text = "prometheus: { url: 'http://127.0.0.1:9090' }\nwatches:\n  - name: drift\n    query: score_bucket\n    identity: [le]\n    lookback: 1h\n    detector: { kind: drift, current: 15m, reference: 1h }\n  - name: joint\n    query: up\n    queries: { cpu: 'rate(cpu[5m]', 9x: up }\n    detector: { kind: multivariate }\n  - name: single\n    queries: { a: up, b: up }\n    detector: { kind: robust_baseline }\n  - name: typo\n    query: up\n    detector: { kind: multivariat }\n";
        let e = errors(text);
        let paths: Vec<&str> = e.iter().map(|e| e.path.as_str()).collect();
        for p in [
            "watches[0].detector.reference",
            "watches[0].identity",
            "watches[1].query",
            "watches[1].queries.cpu",
            "watches[1].queries.9x",
            "watches[2].queries",
            "watches[2]",
            "watches[3].detector.kind",
        ] {
            assert!(paths.contains(&p), "{p} missing from {paths:?}");
        }
        let kind =
            e.iter().find(|e| e.path == "watches[3].detector.kind").map(|e| e.message.clone()).unwrap_or_default();
        assert!(kind.contains("multivariate") && kind.contains("group_outlier"), "{kind}");
        assert!(e.iter().all(|e| e.line.is_some()), "{e:?}");
    }

    #[test]
    fn log_watch_errors_name_their_paths() {
        let e = errors("log_watches:\n  - name: l\n    query: '{app=\"x\"}'\n");
        assert_eq!(e[0].path, "log_watches", "{e:?}");

        let text = "loki:\n  url: ftp://x\n  page_limit: 0\n  tls: { ca_file: /ca.pem, insecure_skip_verify: true }\nlog_watches:\n  - name: l\n    query: 'rate({app=\"x\"}[5m])'\n    identity: [9x]\n    open_on: []\n    miner: { sim_threshold: 2 }\n    signals: { warmup_line: 5 }\n  - name: m\n    query: '{app=\"x\"'\n";
        let e = errors(text);
        let paths: Vec<&str> = e.iter().map(|e| e.path.as_str()).collect();
        for p in [
            "loki.url",
            "loki.page_limit",
            "loki.tls",
            "log_watches[0].query",
            "log_watches[0].identity[0]",
            "log_watches[0].open_on",
            "log_watches[0].miner.sim_threshold",
            "log_watches[0].signals.warmup_line",
            "log_watches[1].query",
        ] {
            assert!(paths.contains(&p), "{p} missing from {paths:?}");
        }
        assert!(e.iter().all(|e| e.line.is_some()), "{e:?}");
    }

    #[test]
    fn global_playbook_guards_are_checked() {
        let e = errors("playbooks:\n  guards:\n    max_attempts: 0\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].path, "playbooks.guards.max_attempts");
        assert_eq!(e[0].line, Some(3));
    }

    #[test]
    fn analysis_model_settings_are_checked() {
        let e = errors(
            "analysis:\n  lookback: 0s\n  model:\n    path: /nonexistent/model.gguf\n    chat_template: alpaca\n    device: gpu\n    max_tokens: 0\n    sha256: abc\n",
        );
        let paths: Vec<&str> = e.iter().map(|e| e.path.as_str()).collect();
        for p in [
            "analysis.lookback",
            "analysis.model.path",
            "analysis.model.chat_template",
            "analysis.model.device",
            "analysis.model.max_tokens",
            "analysis.model.sha256",
        ] {
            assert!(paths.contains(&p), "{p} not in {paths:?}");
        }
        assert!(e.iter().any(|e| e.path == "analysis.model.path" && e.line == Some(4)), "{e:?}");
        let e = errors("analysis:\n  model:\n    path: /x.gguf\n    temperature: 1\n");
        assert!(
            e.iter().any(|e| e.path.starts_with("analysis.model") && e.to_string().contains("temperature")),
            "{e:?}"
        );
    }
}
