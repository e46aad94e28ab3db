//! Warden's self-monitoring (`deploy/kustomize/components/monitoring`, `deploy/grafana`): the
//! PrometheusRule's groups pass `promtool check rules` and the unit tests of
//! `rules.test.yaml` (`promtool test rules`); every metric the alerts and the Grafana
//! dashboard query is one a running `warden run` really exports on `/metrics`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;
use warden_tests::procs::{http_client, require_program, warden_binary, workspace_root, ChildProcess};

fn monitoring_dir() -> PathBuf {
    workspace_root().join("deploy/kustomize/components/monitoring")
}

fn scratch(name: &str) -> Result<PathBuf> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("deploy-{name}-{}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// The rule groups (`spec`) of the PrometheusRule.
fn rule_groups() -> Result<Value> {
    let path = monitoring_dir().join("prometheusrule.yaml");
    let rule: Value =
        serde_yaml::from_str(&std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?)?;
    ensure!(rule["kind"] == "PrometheusRule", "{} is not a PrometheusRule", path.display());
    ensure!(rule["spec"]["groups"].is_array(), "{} has no spec.groups", path.display());
    Ok(rule["spec"].clone())
}

fn rule_exprs() -> Result<Vec<String>> {
    let groups = rule_groups()?;
    let mut exprs = Vec::new();
    for group in groups["groups"].as_array().into_iter().flatten() {
        for rule in group["rules"].as_array().into_iter().flatten() {
            exprs.push(rule["expr"].as_str().context("a rule without expr")?.to_string());
        }
    }
    Ok(exprs)
}

/// Every `expr` anywhere in the dashboard (panel targets, rows' panels).
fn dashboard_exprs(dashboard: &Value, out: &mut Vec<String>) {
    match dashboard {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr", Value::String(e)) => out.push(e.clone()),
                    _ => dashboard_exprs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| dashboard_exprs(v, out)),
        _ => {}
    }
}

fn dashboard() -> Result<Value> {
    let path = workspace_root().join("deploy/grafana/warden-dashboard.json");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

const KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
    "nan",
];

/// The metric names a PromQL expression selects: identifiers outside label matchers, range
/// brackets, grouping clauses and strings that are neither keywords, functions (followed by
/// `(`) nor numbers or durations.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let mut skip_group = false;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => {
                i += 1;
                while i < chars.len() && chars[i] != c {
                    i += usize::from(chars[i] == '\\') + 1;
                }
                i += 1;
            }
            '{' | '[' => {
                let close = if c == '{' { '}' } else { ']' };
                while i < chars.len() && chars[i] != close {
                    i += 1;
                }
                i += 1;
            }
            '(' if skip_group => {
                while i < chars.len() && chars[i] != ')' {
                    i += 1;
                }
                skip_group = false;
                i += 1;
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':') {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let mut j = i;
                while j < chars.len() && chars[j].is_whitespace() {
                    j += 1;
                }
                // A function call, or an aggregation with its clause first (`sum by (x) (...)`).
                let next: String = chars[j..].iter().take_while(|c| c.is_ascii_alphabetic() || **c == '_').collect();
                let call =
                    chars.get(j) == Some(&'(') || ["by", "without"].contains(&next.to_ascii_lowercase().as_str());
                let lower = word.to_ascii_lowercase();
                if ["by", "without", "on", "ignoring", "group_left", "group_right"].contains(&lower.as_str()) {
                    skip_group = true;
                } else if lower == "offset" {
                    // `offset 5m`: the duration is not a name.
                    while j < chars.len() && !chars[j].is_whitespace() && chars[j] != ')' {
                        j += 1;
                    }
                    i = j;
                } else if !call && !KEYWORDS.contains(&lower.as_str()) && !word.starts_with('$') {
                    names.insert(word);
                }
            }
            c if c.is_ascii_digit() || c == '.' => {
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    names
}

/// The series names `/metrics` exposes: from each `# TYPE name kind` line, a counter's
/// `name_total`, a histogram's `_bucket`, `_sum` and `_count`, a gauge's `name`.
fn exported_names(metrics: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in metrics.lines() {
        let mut words = line.split_whitespace();
        if let (Some("#"), Some("TYPE"), Some(name), Some(kind)) =
            (words.next(), words.next(), words.next(), words.next())
        {
            match kind {
                "counter" => {
                    names.insert(format!("{}_total", name.trim_end_matches("_total")));
                }
                "histogram" => {
                    for suffix in ["_bucket", "_sum", "_count"] {
                        names.insert(format!("{name}{suffix}"));
                    }
                }
                _ => {
                    names.insert(name.to_string());
                }
            }
        }
    }
    names
}

#[test]
fn promql_metric_names_are_found() {
    let expr = r#"histogram_quantile(0.95, sum by (watch, le) (rate(warden_detector_seconds_bucket{job="$job", a=~"x|y"}[$__rate_interval]))) / on (pod) group_left(node) up offset 5m > bool 1e3 unless absent(warden_open_incidents{job="warden"}) and other:recorded"#;
    let names = metric_names(expr);
    assert_eq!(
        names,
        BTreeSet::from([
            "warden_detector_seconds_bucket".to_string(),
            "up".to_string(),
            "warden_open_incidents".to_string(),
            "other:recorded".to_string()
        ])
    );
    let scrape = "# HELP warden_evaluations Watch evaluations.\n# TYPE warden_evaluations counter\n# TYPE warden_detector_seconds histogram\n# TYPE warden_open_incidents gauge\nwarden_open_incidents 0\n# EOF\n";
    assert_eq!(
        exported_names(scrape),
        BTreeSet::from(
            [
                "warden_evaluations_total",
                "warden_detector_seconds_bucket",
                "warden_detector_seconds_sum",
                "warden_detector_seconds_count",
                "warden_open_incidents"
            ]
            .map(String::from)
        )
    );
}

#[test]
fn prometheus_rules_pass_promtool_check_and_their_unit_tests() -> Result<()> {
    let promtool = require_program("promtool")?;
    let dir = scratch("rules")?;
    std::fs::write(dir.join("rules.yaml"), serde_yaml::to_string(&rule_groups()?)?)?;
    std::fs::copy(monitoring_dir().join("rules.test.yaml"), dir.join("rules.test.yaml"))?;
    for args in [["check", "rules", "rules.yaml"], ["test", "rules", "rules.test.yaml"]] {
        let out = Command::new(&promtool).args(args).current_dir(&dir).output().context("running promtool")?;
        ensure!(
            out.status.success(),
            "promtool {}: {}\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Every alert is unit-tested at least once.
    let tests = std::fs::read_to_string(dir.join("rules.test.yaml"))?;
    let groups = rule_groups()?;
    for rule in
        groups["groups"].as_array().into_iter().flatten().flat_map(|g| g["rules"].as_array().into_iter().flatten())
    {
        let alert = rule["alert"].as_str().context("a rule that is not an alert")?;
        ensure!(tests.contains(&format!("alertname: {alert}\n")), "{alert} has no test in rules.test.yaml");
    }
    Ok(())
}

/// Where the call whose arguments `s` starts with closes (`)` at depth 0, outside strings).
fn call_end(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match (in_string, c) {
            (true, _) if escaped => escaped = false,
            (true, '\\') => escaped = true,
            (true, '"') => in_string = false,
            (true, _) => {}
            (false, '"') => in_string = true,
            (false, '(') => depth += 1,
            (false, ')') if depth == 0 => return Some(i),
            (false, ')') => depth -= 1,
            _ => {}
        }
    }
    None
}

/// The series names of every metric registered in `agent/src/metrics.rs`: each
/// `registry.register("name", "help", var.clone())` with the kind of `let var = ...`
/// (a `Family::<Labels, Kind>` or a bare `Kind`), named as `/metrics` would expose it.
fn registered_names(source: &str) -> Result<BTreeSet<String>> {
    let mut names = BTreeSet::new();
    for call in source.split("registry.register(").skip(1) {
        let call = &call[..call_end(call).context("an unterminated register call")?];
        let name = call.split('"').nth(1).context("a register call without a name")?;
        let var = call
            .rsplit(',')
            .map(str::trim)
            .find_map(|arg| arg.strip_suffix(".clone()"))
            .with_context(|| format!("register({name}): no `var.clone()` argument"))?;
        let decl =
            source.split(&format!("let {var} = ")).nth(1).with_context(|| format!("no `let {var} = ` for {name}"))?;
        let kind = match decl.strip_prefix("Family::<") {
            Some(rest) => rest.split(", ").nth(1).unwrap_or_default(),
            None => decl,
        };
        let kind: String = kind.chars().take_while(char::is_ascii_alphabetic).collect();
        let kind = match kind.as_str() {
            "Counter" => "counter",
            "Gauge" => "gauge",
            "Histogram" => "histogram",
            other => bail!("{name}: unknown metric kind {other}"),
        };
        names.extend(exported_names(&format!("# TYPE warden_{name} {kind}\n")));
    }
    Ok(names)
}

/// `/metrics` of a `warden run` with a minimal configuration (no watch, no cluster).
async fn scrape_a_running_warden() -> Result<String> {
    let dir = scratch("scrape")?;
    let port = warden_tests::free_port()?;
    let config = dir.join("warden.yaml");
    std::fs::write(
        &config,
        format!("store:\n  sqlite: {}\nserver:\n  listen: 127.0.0.1:{port}\n", dir.join("warden.db").display()),
    )?;
    let mut warden =
        ChildProcess::spawn("warden", &warden_binary()?, ["run", "-c", config.to_str().context("path")?], &[], &dir)?;
    let base = format!("http://127.0.0.1:{port}");
    warden.wait_http_ready(&format!("{base}/readyz"), Duration::from_secs(60)).await?;
    let response = http_client().get(format!("{base}/metrics")).send().await?;
    ensure!(response.status().is_success(), "/metrics answered {}", response.status());
    let body = response.text().await?;
    warden.terminate(Duration::from_secs(10)).await?;
    Ok(body)
}

#[tokio::test]
async fn alerts_and_dashboard_query_only_metrics_warden_exports() -> Result<()> {
    // A live scrape has the families that have series; the source has every family (a
    // family without series is not in the scrape). Each must agree with the other.
    let scraped = exported_names(&scrape_a_running_warden().await?);
    let path = workspace_root().join("agent/src/metrics.rs");
    let registered = registered_names(&std::fs::read_to_string(&path)?)?;
    ensure!(
        scraped.contains("warden_open_incidents") && scraped.is_subset(&registered),
        "the scrape has metrics agent/src/metrics.rs does not register (or parse):\nscraped: {scraped:?}\nregistered: {registered:?}"
    );
    ensure!(registered.len() >= 15, "only {} series names parsed from {}", registered.len(), path.display());
    let exported = registered;

    let mut missing = Vec::new();
    let rules = rule_exprs()?;
    ensure!(!rules.is_empty(), "no rules");
    let dashboard = dashboard()?;
    let mut panels = Vec::new();
    dashboard_exprs(&dashboard["panels"], &mut panels);
    ensure!(panels.len() >= 10, "only {} queries in the dashboard", panels.len());
    let mut templating = Vec::new();
    for var in dashboard["templating"]["list"].as_array().into_iter().flatten() {
        if let Some(q) = var["query"]["query"].as_str() {
            // `label_values(metric, label)`: the metric.
            if let Some(inner) = q.strip_prefix("label_values(").and_then(|q| q.split(',').next()) {
                templating.push(inner.trim().to_string());
            }
        }
    }
    let mut used = BTreeSet::new();
    for (source, exprs) in [("rule", &rules), ("dashboard", &panels), ("dashboard variable", &templating)] {
        for expr in exprs {
            let names = metric_names(expr);
            if names.is_empty() {
                bail!("no metric in the {source} query `{expr}`");
            }
            for name in names {
                if !exported.contains(&name) {
                    missing.push(format!("{source}: {name} in `{expr}`"));
                }
                used.insert(name);
            }
        }
    }
    ensure!(missing.is_empty(), "metrics warden does not export:\n{}\nexported: {exported:?}", missing.join("\n"));
    // The alerts named in the issue each have their metric.
    for name in [
        "warden_evaluations_total",
        "warden_outbox_pending",
        "warden_runs",
        "warden_runs_oldest_awaiting_approval_seconds",
        "warden_audit_verified",
    ] {
        ensure!(used.contains(name), "nothing queries {name}");
    }
    Ok(())
}
