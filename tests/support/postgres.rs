//! The PostgreSQL server the test command starts (`WARDEN_TEST_POSTGRES_URL`) for the
//! shared-store tests: each test gets a schema of its own and a connection string that
//! selects it. Also how those tests start a run on a replica: an alert that triggers it. Without a server the tests that need one print a line and pass, unless
//! `WARDEN_REQUIRE_POSTGRES=1` (set by the test command) makes that a failure.

use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{bail, Context, Result};

static SCHEMAS: AtomicU32 = AtomicU32::new(0);

/// The test server's connection string, `None` when there is none (and none is required).
pub fn server() -> Result<Option<String>> {
    match std::env::var("WARDEN_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Ok(Some(url)),
        _ if std::env::var("WARDEN_REQUIRE_POSTGRES").as_deref() == Ok("1") => {
            bail!("WARDEN_REQUIRE_POSTGRES=1 but WARDEN_TEST_POSTGRES_URL is not set (run `bash tests/run.sh`)")
        }
        _ => Ok(None),
    }
}

/// A new, empty schema on the test server and the key=value connection string that uses
/// it (what `store.postgres.url_from` reads); `None` without a server.
pub async fn fresh_store_url() -> Result<Option<String>> {
    let Some(base) = server()? else { return Ok(None) };
    let schema = format!("e2e_{}_{}", std::process::id(), SCHEMAS.fetch_add(1, Ordering::Relaxed));
    let (client, connection) =
        tokio_postgres::connect(&base, tokio_postgres::NoTls).await.context("connecting to the test PostgreSQL")?;
    let driver = tokio::spawn(connection);
    client.batch_execute(&format!("CREATE SCHEMA {schema}")).await.context("creating the test schema")?;
    drop(client);
    let _ = driver.await;
    Ok(Some(format!("{base} options='-c search_path={schema}'")))
}

/// Posts a firing alert `alertname` about `namespace/deployment` to the `warden run` at
/// `base` (which must lead) and returns the id of the run it started.
pub async fn alert_starts_run(
    base: &str,
    token: &str,
    alertname: &str,
    namespace: &str,
    deployment: &str,
) -> Result<i64> {
    let alert = serde_json::json!({"version": "4", "groupKey": "g", "status": "firing", "receiver": "warden", "alerts": [{
        "status": "firing",
        "labels": {"alertname": alertname, "namespace": namespace, "deployment": deployment},
        "annotations": {}, "startsAt": "2026-11-22T10:00:00Z"
    }]});
    let client = crate::http_client();
    let r = client.post(format!("{base}/api/v1/alerts")).bearer_auth(token).json(&alert).send().await?;
    anyhow::ensure!(r.status().is_success(), "posting the alert: {}", r.status());
    crate::wait_until(std::time::Duration::from_secs(20), "the alert's run to start", async || {
        let r = client.get(format!("{base}/api/v1/runs?limit=20")).bearer_auth(token).send().await?;
        let body: serde_json::Value = r.json().await?;
        let found = body["runs"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|run| run["target"]["namespace"] == namespace && run["target"]["name"] == deployment);
        Ok(found.and_then(|run| run["id"].as_i64()))
    })
    .await
}
