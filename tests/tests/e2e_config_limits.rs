//! `warden check-config` and `warden run` on extreme files: values out of range are refused
//! with their path and line (no panic), what is accepted starts and runs, inline secrets are
//! refused without being repeated, and a deeply nested file is refused quickly.

use std::path::Path;

use anyhow::{ensure, Context, Result};
use serde_json::json;
use warden_tests::procs::{warden_cli, CliOutput, Warden};
use warden_tests::{free_port, http_client};

const TOKEN: &str = "extreme-token";

async fn check_config(path: &Path) -> Result<CliOutput> {
    warden_cli(&["check-config", path.to_str().context("non-UTF-8 path")?], &[("WARDEN_API_TOKEN", TOKEN)]).await
}

fn refused(out: &CliOutput, needles: &[&str]) -> Result<()> {
    let all = format!("{}{}", out.stdout, out.stderr);
    ensure!(out.status.code() == Some(1), "expected exit 1, got {}:\n{all}", out.status);
    ensure!(!all.contains("panicked"), "check-config panicked:\n{all}");
    for n in needles {
        ensure!(all.contains(n), "`{n}` missing from:\n{all}");
    }
    Ok(())
}

#[tokio::test]
async fn check_config_refuses_extreme_values_with_path_and_line() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let pb_dir = dir.path().join("playbooks");
    std::fs::create_dir(&pb_dir)?;
    std::fs::write(
        pb_dir.join("far.yaml"),
        "name: far\ntarget: none\nguards:\n  approval_ttl: 1000000000d\n  rate: { global: { max: 1, per: 1000000000d } }\nsteps:\n  - wait: { for: 1000000000d }\n  - verify: { query: up, for: 1000000000d }\n  - run_job: { namespace: jobs, name_prefix: j, spec: { template: {} }, timeout: 1000000000d }\n",
    )?;
    let path = dir.path().join("warden.yaml");
    std::fs::write(
        &path,
        format!(
            "prometheus: {{ url: 'http://127.0.0.1:9' }}\nplaybooks: {{ dir: '{}' }}\nnotify:\n  slack: {{ webhook_url: {{ env: SLACK_URL }}, timeout: 0s }}\n  email: {{ host: mail, port: 0, from: 'a@example.com', to: ['b@example.com'], timeout: 0s }}\nwatches:\n  - name: w\n    query: up\n    interval: 10000000000000000000s\n    step: 10000000000000000000s\n    detector: {{ kind: robust_baseline }}\n",
            pb_dir.display()
        ),
    )?;
    let out = check_config(&path).await?;
    refused(
        &out,
        &[
            "warden.yaml:4: notify.slack.timeout",
            "warden.yaml:5: notify.email.port",
            "warden.yaml:5: notify.email.timeout",
            "warden.yaml:9: watches[0].interval",
            "warden.yaml:10: watches[0].step",
            "far.yaml:4: guards.approval_ttl",
            "far.yaml:5: guards.rate.global.per",
            "far.yaml:7: steps[0].wait.for",
            "far.yaml:8: steps[1].verify.for",
            "far.yaml:9: steps[2].run_job.timeout",
        ],
    )
}

#[tokio::test]
async fn inline_secrets_are_refused_without_their_value() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("warden.yaml");
    // One file per secret: a section whose secret is refused is not read further.
    let cases = [
        ("prometheus:\n  url: 'http://127.0.0.1:9'\n  auth: { bearer: PROM-BEARER-123 }\n", "warden.yaml:3: prometheus.auth.bearer", "PROM-BEARER-123"),
        ("prometheus:\n  url: 'http://127.0.0.1:9'\n  auth: { basic: { username: u, password: 'BASIC-PASS-000' } }\n", "prometheus.auth.basic.password", "BASIC-PASS-000"),
        ("server:\n  api_token: INLINE-OPTOKEN-abc\n", "warden.yaml:2: server.api_token", "INLINE-OPTOKEN-abc"),
        ("server:\n  viewer_token: [VIEWER-TOKEN-456]\n", "warden.yaml:2: server.viewer_token", "VIEWER-TOKEN-456"),
        ("server:\n  api_token: { VIEWER-TOKEN-KEY: x }\n", "warden.yaml:2: server.api_token", "VIEWER-TOKEN-KEY"),
        ("notify:\n  slack: { webhook_url: 'https://hooks.example.com/SLACK-URL-789' }\n", "warden.yaml:2: notify.slack.webhook_url", "SLACK-URL-789"),
        (
            "notify:\n  email: { host: mail, username: u, password: SMTP-PASS-xyz, from: 'a@example.com', to: ['b@example.com'] }\n",
            "warden.yaml:2: notify.email.password",
            "SMTP-PASS-xyz",
        ),
    ];
    for (text, at, secret) in cases {
        std::fs::write(&path, text)?;
        let out = check_config(&path).await?;
        refused(&out, &[at, "{ env: NAME }", "{ file: PATH }"])?;
        let all = format!("{}{}", out.stdout, out.stderr);
        ensure!(!all.contains(secret), "check-config printed the secret {secret}:\n{all}");
    }
    Ok(())
}

#[tokio::test]
async fn a_deeply_nested_file_is_refused_before_parsing() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("warden.yaml");
    std::fs::write(&path, format!("watches: {}{}\n", "[".repeat(100_000), "]".repeat(100_000)))?;
    // warden_cli gives a command 60 s; unbounded parsing of this file took most of a minute.
    let out = check_config(&path).await?;
    refused(&out, &["warden.yaml:1", "nested deeper than 64 levels"])
}

#[tokio::test]
async fn the_largest_accepted_values_start_and_run() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let pb_dir = dir.path().join("playbooks");
    std::fs::create_dir(&pb_dir)?;
    // The longest durations the checks accept, and the largest counts.
    std::fs::write(
        pb_dir.join("far.yaml"),
        "name: far\ntarget: none\nguards:\n  autonomy: auto\n  cooldown: 366d\n  max_attempts: 1000\n  approval_ttl: 366d\n  rate: { global: { max: 1000000, per: 366d } }\nsteps:\n  - notify: { message: started }\n  - wait: { for: 366d }\n",
    )?;
    let port = free_port()?;
    let config = format!(
        "prometheus: {{ url: 'http://127.0.0.1:9', timeout: 1h }}\nstore: {{ sqlite: '{db}' }}\nplaybooks:\n  dir: '{pbs}'\n  guards: {{ cooldown: 366d, approval_ttl: 366d, max_attempts: 1000, rate: {{ global: {{ max: 1000000, per: 366d }} }} }}\nserver:\n  listen: '127.0.0.1:{port}'\n  api_token: {{ env: WARDEN_API_TOKEN }}\n  limits: {{ header_read_timeout: 5m, body_read_timeout: 10m, max_connections: 100000 }}\nactions: {{ cooldown: 366d, scale: {{ min_replicas: 1000000, max_replicas: 1000000, step: -1000000 }} }}\nnotify:\n  retry: {{ initial_backoff: 1d, max_backoff: 1d, max_attempts: 1000, max_age: 90d }}\n  digest: {{ threshold: 1000000, max_items: 500 }}\nanalysis: {{ lookback: 30d }}\nwatches:\n  - name: w\n    query: up\n    interval: 1d\n    step: 1d\n    lookback: 90d\n    offset: 7d\n    resolve_after: 100000\n    detector: {{ kind: robust_baseline }}\n",
        db = dir.path().join("warden.db").display(),
        pbs = pb_dir.display(),
    );
    let path = dir.path().join("warden.yaml");
    std::fs::write(&path, &config)?;
    let out = check_config(&path).await?;
    ensure!(out.status.code() == Some(0), "check-config refused the largest values: {}{}", out.stdout, out.stderr);

    let warden = Warden::start(dir.path(), &config, &[("WARDEN_API_TOKEN", TOKEN)], port, TOKEN).await?;
    let response = http_client()
        .post(format!("{}/api/v1/playbooks/far/runs", warden.url()))
        .bearer_auth(TOKEN)
        .json(&json!({}))
        .send()
        .await?;
    let status = response.status();
    let body: serde_json::Value = response.json().await?;
    ensure!(status.as_u16() == 201, "{status}: {body}");
    // The run waits for its 366 days; the daemon keeps running and answering.
    ensure!(body["run"]["status"] == "running", "{body}");
    let health = http_client().get(format!("{}/healthz", warden.url())).send().await?;
    ensure!(health.status().is_success(), "{}", health.status());
    warden.stop_ok().await
}
