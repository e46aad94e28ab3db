//! `warden check-config`: the shipped examples are valid, the configuration
//! the end-to-end tests generate is valid, and an invalid file reports every
//! error with its line and YAML path.

use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use warden_tests::config::{latency_watch, WardenConfig};
use warden_tests::kube_api::write_kubeconfig;
use warden_tests::procs::{warden_cli, workspace_root, CliOutput};

const SECRET_ENVS: &[(&str, &str)] = &[
    ("WARDEN_API_TOKEN", "check-config-token"),
    ("SLACK_WEBHOOK_URL", "http://127.0.0.1:9/services/T000/B000/XXX"),
    ("PROM_TOKEN", "check-config-prom-token"),
];

async fn check_config(path: &Path) -> Result<CliOutput> {
    let path = path.to_str().context("non-UTF-8 path")?;
    warden_cli(&["check-config", path], SECRET_ENVS).await
}

fn example_files() -> Result<Vec<PathBuf>> {
    let dir = workspace_root().join("examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    Ok(files)
}

#[tokio::test]
async fn every_example_config_is_valid() -> Result<()> {
    let files = example_files()?;
    ensure!(!files.is_empty(), "no examples/*.yaml to check in {}", workspace_root().join("examples").display());
    let mut failures = Vec::new();
    for file in &files {
        let out = check_config(file).await?;
        if out.status.code() != Some(0) {
            failures.push(format!("{}: {}\n{}", file.display(), out.status, out.stderr));
        }
    }
    ensure!(failures.is_empty(), "invalid examples:\n{}", failures.join("\n"));
    Ok(())
}

#[tokio::test]
async fn the_generated_test_config_is_valid() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let kubeconfig = write_kubeconfig(dir.path(), "http://127.0.0.1:6443")?;
    let mut config = WardenConfig::new(dir.path(), "http://127.0.0.1:9090", &kubeconfig, 18080);
    config.slack_webhook_url = Some("http://127.0.0.1:9/services/T000/B000/XXX".to_string());
    config.email_port = Some(2525);
    config.notify_file = Some(dir.path().join("notifications.jsonl"));
    config.watches = vec![latency_watch(0), {
        let mut w = latency_watch(300);
        w["name"] = "checkout-latency-replay".into();
        w
    }];
    let path = dir.path().join("warden.yaml");
    std::fs::write(&path, config.to_yaml()?)?;
    let out = check_config(&path).await?;
    assert_eq!(
        out.status.code(),
        Some(0),
        "the configuration the e2e tests use is refused:\n{}\n{}",
        std::fs::read_to_string(&path)?,
        out.stderr
    );
    Ok(())
}

/// 1-based number of the first line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).expect("needle in text") + 1
}

#[tokio::test]
async fn an_invalid_config_reports_every_error_with_line_and_path() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let kubeconfig = write_kubeconfig(dir.path(), "http://127.0.0.1:6443")?;
    let text = format!(
        r#"prometheus:
  url: http://127.0.0.1:9090
  timeout: 5s
kubernetes:
  kubeconfig: {kubeconfig}
  context: warden-test
store:
  sqlite: {db}
server:
  listen: 127.0.0.1:18080
  api_token: {{ env: WARDEN_API_TOKEN }}
notify:
  file: {{ path: {notifications} }}
actions:
  dry_run: false
  cooldown: 10m
  scale: {{ min_replicas: 1, max_replicas: 10, step: 1 }}
watches:
  - name: checkout-latency
    query: 'rate(app_latency_seconds{{namespace="shop"}}[5m]'
    interval: 2 parsecs
    step: 5s
    lookback: 10m
    identity: [namespace, deployment]
    target: {{ namespace: "{{namespace}}", deployment: "{{deployment}}" }}
    severity: warning
    resolve_after: 3
    treshold: 4
    detector: {{ kind: robust_baseline, window: 60, threshold: 4.0, min_consecutive: 2, min_history: 20, direction: up }}
"#,
        kubeconfig = kubeconfig.display(),
        db = dir.path().join("warden.db").display(),
        notifications = dir.path().join("notifications.jsonl").display(),
    );
    let path = dir.path().join("invalid.yaml");
    std::fs::write(&path, &text)?;
    let out = check_config(&path).await?;
    assert_eq!(out.status.code(), Some(1), "want exit code 1; stderr:\n{}", out.stderr);

    let file_name = path.file_name().unwrap().to_str().unwrap();
    let errors: Vec<&str> = out.stderr.lines().filter(|l| l.starts_with("error: ")).collect();
    let expect = |what: &str, line: usize, path_ok: &dyn Fn(&str) -> bool| -> Result<()> {
        let found = errors.iter().any(|e| {
            e.contains(file_name) && e.contains(&format!(":{line}: ")) && e.split(": ").nth(2).is_some_and(path_ok)
        });
        ensure!(found, "no `error: FILE:{line}: PATH: message` line for {what} in stderr:\n{}", out.stderr);
        Ok(())
    };
    expect("the bad duration", line_of(&text, "interval: 2 parsecs"), &|p| p == "watches[0].interval")?;
    expect("the bad PromQL", line_of(&text, "query: 'rate("), &|p| p == "watches[0].query")?;
    expect("the unknown key", line_of(&text, "treshold: 4"), &|p| p == "watches[0].treshold")?;
    ensure!(errors.iter().any(|e| e.contains("treshold")), "the unknown key is not named:\n{}", out.stderr);
    Ok(())
}
