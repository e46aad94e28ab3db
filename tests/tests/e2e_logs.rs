//! A log watch in `warden run` against the local Loki-API server: a new error pattern opens
//! an incident whose evidence is the template and the sample line; a bad query is "no
//! data"; a restart neither re-reads lines nor opens the incident twice.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use chrono::Utc;
use serde_json::Value;
use warden_tests::loki::{LokiEntry, LokiFault, LokiServer};
use warden_tests::procs::{free_port, Warden};
use warden_tests::wait_until;

const TOKEN: &str = "warden-e2e-api-token";
const LOKI_TOKEN: &str = "loki-e2e-token";
const TENANT: &str = "team-shop";
const QUERY: &str = r#"{namespace="shop"}"#;
const NEW_ERROR: &str = "ERROR payment 4711 declined by issuer: card 0x1f2e expired (attempt 3)";

fn labels() -> [(&'static str, &'static str); 2] {
    [("namespace", "shop"), ("app", "checkout")]
}

/// Ten minutes of ordinary access and worker lines, ending now.
fn history() -> Vec<LokiEntry> {
    let now = Utc::now().timestamp_nanos_opt().unwrap_or(0);
    (0..400i64)
        .map(|i| {
            let ts = now - (400 - i) * 1_500_000_000;
            let line = if i % 4 == 0 {
                format!("worker {} finished job {} in {} ms", i % 7, 1000 + i, 20 + i % 13)
            } else {
                format!("GET /api/cart/{} 200 {} ms user={}", 5000 + i, 3 + i % 11, 70 + i % 5)
            };
            LokiEntry::new(&labels(), ts, line)
        })
        .collect()
}

fn config(dir: &std::path::Path, loki: &str, port: u16) -> String {
    format!(
        r#"loki:
  url: {loki}
  tenant: {TENANT}
  auth: {{ bearer: {{ env: LOKI_TOKEN }} }}
  page_limit: 100
store: {{ sqlite: {db} }}
server: {{ listen: "127.0.0.1:{port}", api_token: {{ env: WARDEN_API_TOKEN }} }}
log_watches:
  - name: checkout-logs
    query: '{QUERY}'
    interval: 1s
    start_lookback: 15m
    offset: 0s
    identity: [app]
    severity: warning
    signals: {{ warmup_lines: 100, warmup_ms: 0, bucket_ms: 10000 }}
"#,
        db = dir.join("warden.db").display()
    )
}

async fn start(dir: &std::path::Path, loki: &LokiServer, port: u16) -> Result<Warden> {
    Warden::start(
        dir,
        &config(dir, &loki.url(), port),
        &[("WARDEN_API_TOKEN", TOKEN), ("LOKI_TOKEN", LOKI_TOKEN)],
        port,
        TOKEN,
    )
    .await
}

async fn evaluated(warden: &Warden) -> Result<Value> {
    wait_until(Duration::from_secs(30), "a first log evaluation", async || {
        let w = warden.watch("checkout-logs").await?;
        Ok((w["state"] == "ok" || w["state"] == "anomalous").then_some(w))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_error_pattern_opens_an_incident_with_its_template_and_sample() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let loki = LokiServer::start(history()).await?;
    loki.require_bearer(LOKI_TOKEN);
    loki.require_tenant(TENANT);
    let port = free_port()?;
    let warden = start(dir.path(), &loki, port).await?;

    let status = evaluated(&warden).await?;
    ensure!(
        warden.incidents(None).await?.is_empty(),
        "ordinary lines opened an incident: {:?}",
        warden.incidents(None).await?
    );
    assert!(status["series"].as_u64().unwrap_or(0) >= 2, "templates mined: {status}");
    let seen = loki.requests_to("/loki/api/v1/query_range");
    ensure!(!seen.is_empty(), "warden never queried Loki");
    // 400 lines at 100 per page: paging, with the tenant and the token on every request.
    ensure!(seen.len() >= 4, "expected paging, got {} requests", seen.len());

    // A bad query is no data, with Loki's message; nothing opens.
    loki.set_fault(LokiFault::BadQuery {
        query: QUERY.into(),
        message: "parse error at line 1, col 2: syntax error: unexpected IDENTIFIER".into(),
    });
    let bad = wait_until(Duration::from_secs(20), "no data on a bad query", async || {
        let w = warden.watch("checkout-logs").await?;
        Ok((w["state"] == "no_data").then_some(w))
    })
    .await?;
    assert!(bad["last_error"].as_str().unwrap_or_default().contains("parse error at line 1"), "{bad}");
    loki.clear_faults();
    evaluated(&warden).await?;

    // The new error pattern.
    loki.push(LokiEntry::new(&labels(), Utc::now().timestamp_nanos_opt().unwrap_or(0), NEW_ERROR));
    let incident = wait_until(Duration::from_secs(30), "an incident for the new pattern", async || {
        Ok(warden.incidents(Some("open")).await?.into_iter().find(|i| i["watch"] == "checkout-logs"))
    })
    .await?;
    let title = incident["title"].as_str().unwrap_or_default();
    assert!(title.contains("new log pattern on app=checkout") && title.contains("declined"), "{incident}");
    let id = incident["id"].as_i64().context("incident id")?;
    let detail = warden.get_json(&format!("/api/v1/incidents/{id}")).await?;
    let evidence = &detail["events"][0]["detail"]["evidence"];
    assert_eq!(evidence["samples"][0], NEW_ERROR, "{detail}");
    let template = evidence["template"].as_str().unwrap_or_default();
    assert!(template.contains("declined") && template.contains("<*>") && !template.contains("4711"), "{template}");
    assert_eq!(detail["events"][0]["detail"]["signal"], "new_template", "{detail}");

    for r in loki.requests_to("/loki/api/v1/query_range") {
        assert_eq!(r.tenant.as_deref(), Some(TENANT), "{r:?}");
        assert_eq!(r.authorization.as_deref(), Some(format!("Bearer {LOKI_TOKEN}").as_str()), "{r:?}");
    }

    // A restart continues after the last line read: the pattern is not new again, and the
    // lines already read are not requested again.
    warden.stop_ok().await?;
    let before = loki.requests_to("/loki/api/v1/query_range").len();
    let warden = start(dir.path(), &loki, port).await?;
    evaluated(&warden).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let incidents = warden.incidents(None).await?;
    assert_eq!(incidents.len(), 1, "{incidents:?}");
    let after: Vec<_> = loki.requests_to("/loki/api/v1/query_range").into_iter().skip(before).collect();
    ensure!(!after.is_empty(), "no reads after the restart");
    let first_start: i64 =
        after[0].query_param("start").and_then(|s| s.parse().ok()).context("start parameter in ns")?;
    let newest = loki.entries().iter().map(|e| e.ts_ns).max().unwrap_or(0);
    assert!(
        first_start > newest - 2_000_000_000,
        "after a restart the read started at {first_start}, before lines already read (newest {newest})"
    );
    warden.stop_ok().await?;
    Ok(())
}
