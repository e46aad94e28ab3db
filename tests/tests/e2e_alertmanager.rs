//! Alertmanager webhook: a real Alertmanager delivers a firing and then a
//! resolved alert to warden's `/api/v1/alerts`; the endpoint refuses posts
//! without the token and rejects malformed payloads.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};
use warden_tests::config::API_TOKEN;
use warden_tests::procs::Alertmanager;
use warden_tests::stack::Stack;
use warden_tests::{http_client, wait_until};

const ALERT_WATCH: &str = "alertmanager/CheckoutErrorRate";

fn alert(ends_at: Option<String>) -> Value {
    let mut alert = json!({
        "labels": {
            "alertname": "CheckoutErrorRate",
            "namespace": "shop",
            "deployment": "checkout",
            "severity": "critical",
        },
        "annotations": { "summary": "checkout error rate above 5%" },
        "startsAt": (chrono::Utc::now() - chrono::Duration::seconds(30)).to_rfc3339(),
    });
    if let Some(ends_at) = ends_at {
        alert["endsAt"] = json!(ends_at);
    }
    json!([alert])
}

fn alertmanager_incident(incidents: &[Value]) -> Option<Value> {
    incidents.iter().find(|i| i["watch"] == ALERT_WATCH).cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_alerts_open_and_resolve_incidents() -> Result<()> {
    let stack = Stack::start(None).await?;
    let warden = stack.start_warden(&stack.config()).await?;
    let webhook = format!("{}/api/v1/alerts", warden.url());
    let mut alertmanager = Alertmanager::start(stack.path(), &webhook, API_TOKEN).await?;

    alertmanager.post_alerts(&alert(None)).await?;
    let incident = wait_until(Duration::from_secs(30), "an incident from the Alertmanager alert", async || {
        Ok(alertmanager_incident(&warden.incidents(None).await?))
    })
    .await
    .map_err(|e| e.context(alertmanager.process().logs_tail(30)))?;
    assert_eq!(incident["source"], "alertmanager", "{incident}");
    assert_eq!(incident["status"], "open", "{incident}");
    assert_eq!(incident["labels"]["alertname"], "CheckoutErrorRate", "{incident}");
    assert_eq!(incident["labels"]["namespace"], "shop", "{incident}");
    assert_eq!(incident["resolved_at"], Value::Null, "{incident}");
    let id = incident["id"].clone();

    // One alert, one incident.
    let open = warden.incidents(Some("open")).await?;
    let n = open.iter().filter(|i| i["watch"] == ALERT_WATCH).count();
    assert_eq!(n, 1, "{open:?}");

    // Resolve: the alert ends, Alertmanager sends the resolved notification.
    alertmanager.post_alerts(&alert(Some(chrono::Utc::now().to_rfc3339()))).await?;
    let resolved = wait_until(Duration::from_secs(30), "the Alertmanager incident to resolve", async || {
        Ok(alertmanager_incident(&warden.incidents(Some("resolved")).await?))
    })
    .await
    .map_err(|e| e.context(alertmanager.process().logs_tail(30)))?;
    assert_eq!(resolved["id"], id, "{resolved}");
    assert_eq!(resolved["source"], "alertmanager", "{resolved}");
    ensure!(resolved["resolved_at"].is_string(), "{resolved}");

    warden.stop_ok().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_endpoint_requires_the_token_and_a_valid_payload() -> Result<()> {
    let stack = Stack::start(None).await?;
    let warden = stack.start_warden(&stack.config()).await?;
    let client = http_client();
    let url = format!("{}/api/v1/alerts", warden.url());
    let valid = json!({
        "version": "4",
        "groupKey": "{}:{alertname=\"X\"}",
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "warden",
        "groupLabels": {"alertname": "X"},
        "commonLabels": {"alertname": "X"},
        "commonAnnotations": {},
        "externalURL": "http://127.0.0.1:9093",
        "alerts": [{
            "status": "firing",
            "labels": {"alertname": "X"},
            "annotations": {},
            "startsAt": chrono::Utc::now().to_rfc3339(),
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "",
            "fingerprint": "0123456789abcdef",
        }],
    });

    let r = client.post(&url).json(&valid).send().await?;
    assert_eq!(r.status().as_u16(), 401, "no token");
    let r = client.post(&url).bearer_auth("wrong-token").json(&valid).send().await?;
    assert_eq!(r.status().as_u16(), 401, "wrong token");
    let r = client.get(format!("{}/api/v1/incidents", warden.url())).send().await?;
    assert_eq!(r.status().as_u16(), 401, "GET /api/v1/incidents without token");
    for open in ["/healthz", "/metrics"] {
        let r = client.get(format!("{}{open}", warden.url())).send().await?;
        ensure!(r.status().is_success(), "{open} needs no token, got {}", r.status());
    }
    ensure!(warden.incidents(None).await?.is_empty(), "an unauthorized post opened an incident");

    let bad_payloads = [
        ("not JSON", "this is not json".to_string()),
        ("alerts not a list", json!({"version": "4", "status": "firing", "alerts": "nope"}).to_string()),
        (
            "alert without labels",
            json!({"version": "4", "status": "firing", "alerts": [{"status": "firing"}]}).to_string(),
        ),
    ];
    for (what, body) in bad_payloads {
        let r = client
            .post(&url)
            .bearer_auth(API_TOKEN)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?;
        let status = r.status().as_u16();
        let text = r.text().await?;
        assert_eq!(status, 400, "{what}: want 400, got {status}: {text}");
        let body: Value =
            serde_json::from_str(&text).with_context(|| format!("{what}: the 400 body is not JSON: {text:?}"))?;
        let message = body["error"].as_str().unwrap_or_default();
        ensure!(
            message.contains("payload") || message.contains("version") || message.contains("status"),
            "{what}: 400 without a message naming the problem: {text:?}"
        );
    }
    ensure!(warden.incidents(None).await?.is_empty(), "a bad payload opened an incident");

    let r = client.post(&url).bearer_auth(API_TOKEN).json(&valid).send().await?;
    ensure!(r.status().is_success(), "a valid webhook was refused: {} {}", r.status(), r.text().await?);
    let incidents = warden.incidents(None).await?;
    ensure!(incidents.iter().any(|i| i["watch"] == "alertmanager/X" && i["source"] == "alertmanager"), "{incidents:?}");

    warden.stop_ok().await
}
