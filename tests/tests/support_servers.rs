//! Checks of the test servers themselves, independent of the warden binary:
//! the Kubernetes API test server against the real kube client, the Slack
//! receiver, and the Prometheus, Alertmanager and SMTP processes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use axum::http::HeaderMap;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{json, Value};
use warden_tests::config::{baseline_value, latency_series, unix_now, FAULT_VALUE, METRIC};
use warden_tests::kube_api::{self, Failure, KubeApi};
use warden_tests::procs::{metric_value, Alertmanager, Prometheus, SmtpServer};
use warden_tests::slack::{SlackFailure, SlackReceiver};
use warden_tests::{http_client, wait_until};

async fn kube_client(api: &KubeApi, dir: &std::path::Path) -> Result<kube::Client> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let path = kube_api::write_kubeconfig(dir, &api.url())?;
    let kubeconfig = kube::config::Kubeconfig::read_from(&path)?;
    let options = kube::config::KubeConfigOptions {
        context: Some(kube_api::KUBECONFIG_CONTEXT.to_string()),
        ..Default::default()
    };
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options).await?;
    Ok(kube::Client::try_from(config)?)
}

#[tokio::test]
async fn kube_api_serves_deployments_and_scale_to_the_kube_client() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = KubeApi::start().await?;
    server.add_deployment("shop", "checkout", 2);
    let client = kube_client(&server, dir.path()).await?;
    let deployments: Api<Deployment> = Api::namespaced(client, "shop");

    let d = deployments.get("checkout").await?;
    assert_eq!(d.spec.as_ref().unwrap().replicas, Some(2));

    let scale = deployments.get_scale("checkout").await?;
    assert_eq!(scale.spec.as_ref().unwrap().replicas, Some(2));
    assert_eq!(scale.status.as_ref().unwrap().replicas, 2);
    assert_eq!(scale.status.as_ref().unwrap().selector.as_deref(), Some("app=checkout"));
    let rv_before = scale.metadata.resource_version.clone().unwrap();

    // Dry run: answered, not persisted.
    let dry = PatchParams { dry_run: true, ..PatchParams::default() };
    let patch = Patch::Merge(json!({"spec": {"replicas": 5}}));
    let answer = deployments.patch_scale("checkout", &dry, &patch).await?;
    assert_eq!(answer.spec.unwrap().replicas, Some(5));
    assert_eq!(server.replicas("shop", "checkout"), Some(2));

    // Merge patch: persisted, resourceVersion bumped.
    let patch = Patch::Merge(json!({"spec": {"replicas": 3}}));
    let answer = deployments.patch_scale("checkout", &PatchParams::default(), &patch).await?;
    assert_eq!(answer.spec.unwrap().replicas, Some(3));
    assert_eq!(server.replicas("shop", "checkout"), Some(3));
    assert_ne!(answer.metadata.resource_version.unwrap(), rv_before);

    // Strategic merge and JSON patch are accepted too.
    let patch: Patch<Value> = Patch::Strategic(json!({"spec": {"replicas": 4}}));
    deployments.patch_scale("checkout", &PatchParams::default(), &patch).await?;
    assert_eq!(server.replicas("shop", "checkout"), Some(4));
    let response = http_client()
        .patch(format!("{}{}", server.url(), kube_api::scale_path("shop", "checkout")))
        .header("content-type", "application/json-patch+json")
        .body(r#"[{"op":"test","path":"/spec/replicas","value":4},{"op":"replace","path":"/spec/replicas","value":6}]"#)
        .send()
        .await?;
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(server.replicas("shop", "checkout"), Some(6));

    // Negative replicas: 422 Invalid.
    let patch = Patch::Merge(json!({"spec": {"replicas": -1}}));
    match deployments.patch_scale("checkout", &PatchParams::default(), &patch).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422);
            assert_eq!(status.reason, "Invalid");
        }
        other => panic!("expected 422, got {other:?}"),
    }
    assert_eq!(server.replicas("shop", "checkout"), Some(6));

    // Unknown deployment: 404 NotFound Status.
    match deployments.get_scale("nope").await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 404);
            assert_eq!(status.reason, "NotFound");
            assert_eq!(status.message, "deployments.apps \"nope\" not found");
        }
        other => panic!("expected 404, got {other:?}"),
    }

    // Injected failures on PATCH only: GET still works, PATCH gets 409 then 500.
    server.fail_next(1, Failure::Conflict, true);
    deployments.get_scale("checkout").await?;
    let patch = Patch::Merge(json!({"spec": {"replicas": 7}}));
    match deployments.patch_scale("checkout", &PatchParams::default(), &patch).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"))
        }
        other => panic!("expected 409, got {other:?}"),
    }
    server.fail_next(1, Failure::Internal, false);
    match deployments.get_scale("checkout").await {
        Err(kube::Error::Api(status)) => assert_eq!((status.code, status.reason.as_str()), (500, "InternalError")),
        other => panic!("expected 500, got {other:?}"),
    }
    deployments.patch_scale("checkout", &PatchParams::default(), &patch).await?;
    assert_eq!(server.replicas("shop", "checkout"), Some(7));

    // Recording.
    let patches = server.scale_patches("shop", "checkout");
    assert_eq!(patches.len(), 7, "{}", server.request_log());
    assert!(patches[0].is_dry_run());
    assert_eq!(patches[0].requested_replicas(), Some(5));
    assert_eq!(patches[0].content_type.as_deref(), Some("application/merge-patch+json"));
    assert!(!patches[1].is_dry_run());
    assert_eq!(patches[3].requested_replicas(), Some(6));
    assert_eq!(patches[3].content_type.as_deref(), Some("application/json-patch+json"));
    assert_eq!(patches[1].authorization.as_deref(), Some(format!("Bearer {}", kube_api::KUBECONFIG_TOKEN).as_str()));
    Ok(())
}

#[tokio::test]
async fn kube_api_answers_real_status_objects() -> Result<()> {
    let server = KubeApi::start().await?;
    server.add_deployment("shop", "checkout", 2);
    let client = http_client();
    let response = client.get(format!("{}/apis/apps/v1/namespaces/shop/deployments/x", server.url())).send().await?;
    assert_eq!(response.status().as_u16(), 404);
    let body: Value = response.json().await?;
    assert_eq!(
        body,
        json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
               "message":"deployments.apps \"x\" not found","reason":"NotFound",
               "details":{"name":"x","group":"apps","kind":"deployments"},"code":404})
    );

    let scale: Value = client
        .get(format!("{}{}", server.url(), kube_api::scale_path("shop", "checkout")))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(scale["apiVersion"], "autoscaling/v1");
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["metadata"]["name"], "checkout");
    assert_eq!(scale["metadata"]["namespace"], "shop");
    assert!(scale["metadata"]["resourceVersion"].is_string());

    let response = client
        .patch(format!("{}{}?dryRun=All", server.url(), kube_api::scale_path("shop", "checkout")))
        .header("content-type", "application/merge-patch+json")
        .body(r#"{"spec":{"replicas":-3}}"#)
        .send()
        .await?;
    assert_eq!(response.status().as_u16(), 422);
    let body: Value = response.json().await?;
    assert_eq!(body["reason"], "Invalid");
    assert_eq!(body["kind"], "Status");

    let response = client
        .patch(format!("{}{}", server.url(), kube_api::scale_path("shop", "checkout")))
        .header("content-type", "text/plain")
        .body(r#"{"spec":{"replicas":3}}"#)
        .send()
        .await?;
    assert_eq!(response.status().as_u16(), 415);
    assert_eq!(server.replicas("shop", "checkout"), Some(2));
    Ok(())
}

#[tokio::test]
async fn slack_receiver_records_and_fails_on_request() -> Result<()> {
    let slack = SlackReceiver::start().await?;
    let client = http_client();
    slack.fail_next(1, SlackFailure::RateLimited);
    let r = client.post(slack.webhook_url()).json(&json!({"text": "one"})).send().await?;
    assert_eq!(r.status().as_u16(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    slack.fail_next(1, SlackFailure::ServerError);
    let r = client.post(slack.webhook_url()).json(&json!({"text": "one"})).send().await?;
    assert_eq!(r.status().as_u16(), 500);
    let r = client.post(slack.webhook_url()).json(&json!({"text": "one", "blocks": []})).send().await?;
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.text().await?, "ok");
    assert_eq!(slack.posts().len(), 3);
    assert_eq!(slack.delivered().len(), 1);
    assert_eq!(slack.delivered_with_prefix("one").len(), 1);
    assert_eq!(slack.delivered()[0].path, "/services/T000/B000/XXX");
    Ok(())
}

#[tokio::test]
async fn slack_receiver_answers_slacks_documented_errors() -> Result<()> {
    let slack = SlackReceiver::start().await?;
    let client = http_client();
    let post = |body: String| {
        let client = client.clone();
        let url = slack.webhook_url();
        async move {
            let r = client.post(url).header("content-type", "application/json").body(body).send().await?;
            anyhow::Ok((r.status().as_u16(), r.text().await?))
        }
    };
    let header = |n: usize| json!({"text": "t", "blocks": [{"type": "header", "text": {"type": "plain_text", "text": "h".repeat(n)}}]});
    assert_eq!(post(header(150).to_string()).await?, (200, "ok".into()));
    assert_eq!(post(header(151).to_string()).await?, (400, "invalid_blocks".into()));
    let section = json!({"blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "x".repeat(3001)}}]});
    assert_eq!(post(section.to_string()).await?, (400, "invalid_blocks".into()));
    let fields: Vec<Value> = (0..11).map(|_| json!({"type": "mrkdwn", "text": "f"})).collect();
    let section = json!({"text": "t", "blocks": [{"type": "section", "fields": fields}]});
    assert_eq!(post(section.to_string()).await?, (400, "invalid_blocks".into()));
    let many: Vec<Value> = (0..51).map(|_| json!({"type": "divider"})).collect();
    assert_eq!(post(json!({"text": "t", "blocks": many}).to_string()).await?, (400, "invalid_blocks".into()));
    assert_eq!(post(json!({"blocks": []}).to_string()).await?, (400, "no_text".into()));
    assert_eq!(post("not json".into()).await?, (400, "invalid_payload".into()));
    // Injected: a webhook that refuses one message, or everything.
    slack.reject_containing("bad", SlackFailure::NoText);
    assert_eq!(post(json!({"text": "a bad one"}).to_string()).await?, (400, "no_text".into()));
    assert_eq!(post(json!({"text": "a good one"}).to_string()).await?, (200, "ok".into()));
    slack.clear_rejections();
    for (failure, status, code) in [
        (SlackFailure::NoService, 404, "no_service"),
        (SlackFailure::ChannelNotFound, 404, "channel_not_found"),
        (SlackFailure::ActionProhibited, 403, "action_prohibited"),
        (SlackFailure::ChannelIsArchived, 410, "channel_is_archived"),
    ] {
        slack.fail_next(1, failure);
        assert_eq!(post(json!({"text": "t"}).to_string()).await?, (status, code.into()));
    }
    slack.fail_next(1, SlackFailure::RateLimitedFor(30));
    let r = client.post(slack.webhook_url()).json(&json!({"text": "t"})).send().await?;
    assert_eq!((r.status().as_u16(), r.headers()["retry-after"].to_str()?), (429, "30"));
    assert_eq!(slack.delivered().len(), 2);
    Ok(())
}

#[tokio::test]
async fn prometheus_serves_backfilled_past_and_future_samples_across_restarts() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let now = unix_now();
    // A fault from now+5s to now+25s: in the future when the data is written.
    let series = latency_series(now - 1800, now + 300, Some((now + 5, now + 25)));
    let mut prometheus = Prometheus::start(dir.path(), &[series]).await?;
    let query = format!("{METRIC}{{namespace=\"shop\"}}");

    let value_at = |result: &[Value], t: i64| -> Option<f64> {
        result[0]["values"]
            .as_array()?
            .iter()
            .find(|p| p[0].as_f64() == Some(t as f64))
            .and_then(|p| p[1].as_str()?.parse().ok())
    };
    let t = now - now.rem_euclid(5) - 60;
    let result = prometheus.query_range(&query, t, t + 120, 5).await?;
    assert_eq!(result.len(), 1, "{result:?}");
    assert_eq!(result[0]["metric"]["deployment"], "checkout");
    assert_eq!(value_at(&result, t), Some(baseline_value(t)));

    // As wall-clock time passes, a query ending "now" sees the (formerly future) fault.
    tokio::time::sleep(Duration::from_secs(12)).await;
    prometheus.restart().await?;
    let end = unix_now();
    let result = prometheus.query_range(&query, end - 60, end, 5).await?;
    let last: f64 = result[0]["values"].as_array().unwrap().last().unwrap()[1].as_str().unwrap().parse()?;
    assert_eq!(last, FAULT_VALUE, "{result:?}");

    prometheus.stop().await?;
    assert!(prometheus.query_range(&query, end - 60, end, 5).await.is_err());
    prometheus.start_again().await?;
    assert_eq!(prometheus.query_range(&query, end - 60, end, 5).await?.len(), 1);
    Ok(())
}

/// Authorization header and JSON body of one webhook post.
type WebhookPost = (Option<String>, Value);

#[tokio::test]
async fn alertmanager_posts_to_a_webhook_with_the_bearer_token() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let received: Arc<Mutex<Vec<WebhookPost>>> = Arc::default();
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/api/v1/alerts",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let sink = sink.clone();
            async move {
                let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string);
                sink.lock().unwrap().push((auth, serde_json::from_slice(&body).unwrap_or(Value::Null)));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let url = format!("http://127.0.0.1:{port}/api/v1/alerts");
    let alertmanager = Alertmanager::start(dir.path(), &url, "am-secret").await?;
    alertmanager
        .post_alerts(&json!([{
            "labels": {"alertname": "HighLatency", "namespace": "shop", "deployment": "checkout"},
            "annotations": {"summary": "p99 latency high"},
            "startsAt": chrono::Utc::now().to_rfc3339(),
        }]))
        .await?;
    let (auth, payload) = wait_until(Duration::from_secs(30), "a webhook post from Alertmanager", async || {
        Ok(received.lock().unwrap().first().cloned())
    })
    .await?;
    assert_eq!(auth.as_deref(), Some("Bearer am-secret"));
    assert_eq!(payload["version"], "4");
    assert_eq!(payload["status"], "firing");
    assert_eq!(payload["alerts"][0]["labels"]["alertname"], "HighLatency");
    server.abort();
    Ok(())
}

#[tokio::test]
async fn smtp_server_starts_late_and_stores_parseable_mail() -> Result<()> {
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
    let dir = tempfile::tempdir()?;
    let mut smtp = SmtpServer::reserve(dir.path())?;
    let message = || -> Result<Message> {
        Ok(Message::builder()
            .from("Warden <warden@example.test>".parse()?)
            .to("oncall@example.test".parse()?)
            .subject("[warden] OPENED warning checkout-latency shop/checkout")
            .message_id(Some("<warden-outbox-7@warden>".to_string()))
            .body("observed 0.5, expected 0.1 — über".to_string())?)
    };
    let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(smtp.port())
        .timeout(Some(Duration::from_secs(5)))
        .build();
    assert!(transport.send(message()?).await.is_err(), "nothing listens before start()");
    smtp.start().await?;
    transport.send(message()?).await?;
    let mails = smtp.messages()?;
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].subject, "[warden] OPENED warning checkout-latency shop/checkout");
    assert_eq!(mails[0].message_id.as_deref(), Some("<warden-outbox-7@warden>"));
    assert!(mails[0].body.contains("observed 0.5, expected 0.1 — über"), "{:?}", mails[0].body);
    assert_eq!(mails[0].to, vec!["oncall@example.test".to_string()]);
    smtp.stop().await?;
    Ok(())
}

#[test]
fn metric_value_reads_text_exposition() {
    let text = "# HELP warden_watch_no_data_total x\n# TYPE warden_watch_no_data_total counter\n\
                warden_watch_no_data_total{watch=\"checkout-latency\"} 3\n\
                warden_watch_no_data_total{watch=\"other\"} 1\n\
                warden_open_incidents 2\n# EOF\n";
    assert_eq!(metric_value(text, "warden_watch_no_data_total", &[("watch", "checkout-latency")]), Some(3.0));
    assert_eq!(metric_value(text, "warden_watch_no_data_total", &[]), Some(4.0));
    assert_eq!(metric_value(text, "warden_open_incidents", &[]), Some(2.0));
    assert_eq!(metric_value(text, "warden_open", &[]), None);
}
