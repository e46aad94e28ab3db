//! Scale actions in dry-run mode and against a failing API server.
//!
//! Both tests start a fault 10 s after the test starts and keep it for five
//! minutes, so the watch opens an incident and acts within seconds.

use std::time::Duration;

use anyhow::{ensure, Result};
use serde_json::Value;
use warden_tests::config::WATCH;
use warden_tests::kube_api::Failure;
use warden_tests::procs::Warden;
use warden_tests::stack::{sleep, watch_incident, Stack};
use warden_tests::wait_until;

const FAULT: Option<(i64, i64)> = Some((10, 310));

async fn first_finished_action(warden: &Warden) -> Result<Value> {
    wait_until(Duration::from_secs(90), "a finished scale action", async || {
        Ok(warden.actions().await?.into_iter().find(|a| a["status"] != "pending"))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_patches_with_dry_run_all_and_changes_nothing() -> Result<()> {
    let stack = Stack::start(FAULT).await?;
    let mut config = stack.config();
    config.dry_run = true;
    let warden = stack.start_warden(&config).await?;

    let action = first_finished_action(&warden).await?;
    assert_eq!(action["status"], "succeeded", "{action}\n{}", stack.kube.request_log());
    assert_eq!(action["dry_run"], true, "{action}");
    assert_eq!(action["kind"], "scale", "{action}");
    assert_eq!(action["namespace"], "shop", "{action}");
    assert_eq!(action["deployment"], "checkout", "{action}");
    assert_eq!(action["from_replicas"], 2, "{action}");
    assert_eq!(action["to_replicas"], 3, "{action}");
    let incident = watch_incident(&warden.incidents(Some("open")).await?);
    ensure!(incident.is_some(), "no open incident next to the action");
    assert_eq!(action["incident_id"], incident.unwrap()["id"], "{action}");

    // Give warden a few more evaluations: still one PATCH, a dry run, nothing persisted.
    sleep(Duration::from_secs(6)).await;
    let writes = stack.kube.scale_writes("shop", "checkout");
    assert_eq!(writes.len(), 1, "want exactly one scale write:\n{}", stack.kube.request_log());
    assert_eq!(writes[0].method, "PATCH");
    assert!(writes[0].is_dry_run(), "PATCH without dryRun=All: {:?}", writes[0]);
    assert_eq!(writes[0].requested_replicas(), Some(3), "{:?}", writes[0]);
    assert_eq!(writes[0].status, 200);
    assert_eq!(stack.kube.replicas("shop", "checkout"), Some(2), "a dry run changed the deployment");
    assert_eq!(warden.actions().await?.len(), 1);

    warden.stop_ok().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflict_on_patch_records_a_failed_action() -> Result<()> {
    let stack = Stack::start(FAULT).await?;
    // A conflict on every attempt: conflicts are retried (after re-reading the object), so
    // one conflict alone would be overcome; a lasting one fails the action without acting.
    stack.kube.fail_next(1000, Failure::Conflict, true);
    let config = stack.config();
    let mut warden = stack.start_warden(&config).await?;

    let action = first_finished_action(&warden).await?;
    assert_eq!(action["status"], "failed", "{action}\n{}", stack.kube.request_log());
    assert_eq!(action["dry_run"], false, "{action}");
    assert_eq!(action["namespace"], "shop", "{action}");
    assert_eq!(action["deployment"], "checkout", "{action}");
    ensure!(
        action["reason"].as_str().is_some_and(|r| !r.trim().is_empty()),
        "a failed action needs a reason: {action}"
    );
    let patches = stack.kube.scale_patches("shop", "checkout");
    ensure!(!patches.is_empty(), "no PATCH was sent:\n{}", stack.kube.request_log());
    assert_eq!(patches[0].status, 409, "{}", stack.kube.request_log());
    assert_eq!(patches[0].requested_replicas(), Some(3));

    // Warden keeps running and serving; the incident stays open.
    sleep(Duration::from_secs(4)).await;
    warden.process().ensure_running()?;
    let health = warden.get("/healthz").await?;
    assert!(health.status().is_success(), "/healthz: {}", health.status());
    let watch = warden.watch(WATCH).await?;
    assert_eq!(watch["state"], "anomalous", "{watch}");
    let incident = watch_incident(&warden.incidents(Some("open")).await?);
    ensure!(incident.is_some(), "the incident is not open after the failed action");
    warden.metrics().await?;
    let stderr = std::fs::read_to_string(warden.process().stderr_path())?;
    ensure!(!stderr.contains("panicked"), "warden panicked:\n{}", warden.logs_tail(60));

    warden.stop_ok().await
}
