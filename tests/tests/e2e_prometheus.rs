//! Main end-to-end scenario: a latency fault in Prometheus data opens an
//! incident, scales the Deployment once, notifies Slack and (once SMTP comes
//! up) email exactly once, survives a Prometheus outage as `no_data`, and
//! resolves after the fault with RESOLVED notifications.
//!
//! Timeline (seconds after the data's `t0`, which is the test's start):
//! baseline until 45, fault (0.5 s instead of ~0.1 s) from 45 to 120, baseline
//! again after. SMTP is down until the OPENED/ACTION Slack posts arrived;
//! Prometheus is stopped for a few evaluations in the fault window.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use serde_json::Value;
use warden_tests::config::WATCH;
use warden_tests::kube_api::KUBECONFIG_TOKEN;
use warden_tests::procs::{metric_value, warden_cli, SmtpServer};
use warden_tests::slack::SlackFailure;
use warden_tests::stack::{sleep, unix_field, watch_incident, Stack};
use warden_tests::wait_until;

const FAULT_START: i64 = 45;
const FAULT_END: i64 = 120;
const SUBJECT_OPENED: &str = "[warden] OPENED warning checkout-latency shop/checkout";
const PREFIX_ACTION: &str = "[warden] ACTION warning checkout-latency shop/checkout";
const PREFIX_RESOLVED: &str = "[warden] RESOLVED warning checkout-latency shop/checkout";

macro_rules! note {
    ($stack:expr, $($arg:tt)*) => {
        eprintln!("[t0+{:>3}s] {}", $stack.elapsed(), format!($($arg)*))
    };
}

fn secs(s: i64) -> Duration {
    Duration::from_secs(s.max(1) as u64)
}

fn is_outbox_message_id(id: &str) -> bool {
    id.strip_prefix("<warden-outbox-")
        .and_then(|rest| rest.strip_suffix("@warden>"))
        .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_fault_opens_scales_notifies_survives_outage_and_resolves() -> Result<()> {
    let mut stack = Stack::start(Some((FAULT_START, FAULT_END))).await?;
    let fault_start = stack.t0 + FAULT_START;
    let fault_end = stack.t0 + FAULT_END;
    // The first Slack post is rate limited: the outbox must retry it.
    stack.slack.fail_next(1, SlackFailure::RateLimited);
    let mut smtp = SmtpServer::reserve(stack.path())?;
    let mut config = stack.config();
    config.email_port = Some(smtp.port());
    let warden = stack.start_warden(&config).await?;
    note!(stack, "warden is up; fault from t0+{FAULT_START}s to t0+{FAULT_END}s");

    // --- Before the fault: the watch evaluates and is ok, nothing is open.
    wait_until(secs(30), "/readyz to answer 200", async || {
        Ok(warden.get("/readyz").await?.status().is_success().then_some(()))
    })
    .await?;
    let watch = wait_until(secs(30), "watch checkout-latency in state ok", async || {
        let w = warden.watch(WATCH).await?;
        Ok((w["state"] == "ok").then_some(w))
    })
    .await?;
    ensure!(watch["last_evaluation"].is_string(), "last_evaluation not set: {watch}");
    ensure!(watch["last_error"].is_null(), "last_error set while ok: {watch}");
    if stack.elapsed() < FAULT_START - 3 {
        let incidents = warden.incidents(None).await?;
        ensure!(incidents.is_empty(), "incident opened on the baseline: {incidents:?}");
    } else {
        eprintln!("note: set-up took {}s, skipping the pre-fault check", stack.elapsed());
    }

    // --- The fault opens an incident.
    let incident =
        wait_until(secs(FAULT_START + 40 - stack.elapsed()), "an open incident for checkout-latency", async || {
            Ok(watch_incident(&warden.incidents(Some("open")).await?))
        })
        .await?;
    let elapsed_at_open = stack.elapsed();
    note!(stack, "incident {} open", incident["id"]);
    ensure!(
        elapsed_at_open >= FAULT_START,
        "incident seen {elapsed_at_open}s after t0, before the fault (starts at {FAULT_START}s): {incident}"
    );
    ensure!(unix_field(&incident, "opened_at")? >= fault_start - 1, "opened_at before the fault: {incident}");
    assert_eq!(incident["status"], "open", "{incident}");
    assert_eq!(incident["source"], "watch", "{incident}");
    assert_eq!(incident["severity"], "warning", "{incident}");
    assert_eq!(incident["resolved_at"], Value::Null, "{incident}");
    assert_eq!(incident["target"]["namespace"], "shop", "{incident}");
    assert_eq!(incident["target"]["deployment"], "checkout", "{incident}");
    assert_eq!(incident["labels"]["namespace"], "shop", "{incident}");
    assert_eq!(incident["labels"]["deployment"], "checkout", "{incident}");
    let observed = incident["observed"].as_f64().context("observed is not a number")?;
    let expected = incident["expected"].as_f64().context("expected is not a number")?;
    ensure!((observed - 0.5).abs() < 0.01, "observed {observed}, want ~0.5: {incident}");
    ensure!((expected - 0.1).abs() < 0.01, "expected {expected}, want ~0.1: {incident}");
    let incident_id = incident["id"].as_i64().context("incident id is not an integer")?;
    let fingerprint = incident["fingerprint"].as_str().unwrap_or_default().to_string();
    ensure!(!fingerprint.is_empty(), "empty fingerprint: {incident}");
    let resolved = warden.incidents(Some("resolved")).await?;
    ensure!(watch_incident(&resolved).is_none(), "?status=resolved lists the open incident: {resolved:?}");

    // --- Exactly one scale PATCH: 2 -> 3, not a dry run, with the kubeconfig's token.
    let action = wait_until(secs(20), "a finished scale action", async || {
        Ok(warden.actions().await?.into_iter().find(|a| a["status"] == "succeeded" || a["status"] == "failed"))
    })
    .await?;
    assert_eq!(action["status"], "succeeded", "{action}\n{}", stack.kube.request_log());
    assert_eq!(action["kind"], "scale", "{action}");
    assert_eq!(action["incident_id"].as_i64(), Some(incident_id), "{action}");
    assert_eq!(action["namespace"], "shop", "{action}");
    assert_eq!(action["deployment"], "checkout", "{action}");
    assert_eq!(action["from_replicas"], 2, "{action}");
    assert_eq!(action["to_replicas"], 3, "{action}");
    assert_eq!(action["dry_run"], false, "{action}");
    let patches = stack.kube.scale_patches("shop", "checkout");
    assert_eq!(patches.len(), 1, "want exactly one scale PATCH:\n{}", stack.kube.request_log());
    assert_eq!(patches[0].requested_replicas(), Some(3), "{:?}", patches[0]);
    assert!(!patches[0].is_dry_run(), "unexpected dryRun: {:?}", patches[0]);
    assert_eq!(patches[0].query_param("dryRun"), None, "{:?}", patches[0]);
    assert_eq!(
        patches[0].authorization.as_deref(),
        Some(format!("Bearer {KUBECONFIG_TOKEN}").as_str()),
        "the kubeconfig's token was not sent"
    );
    assert_eq!(stack.kube.replicas("shop", "checkout"), Some(3));
    note!(stack, "scaled shop/checkout 2 -> 3");

    // --- Slack got OPENED and ACTION (after retrying the rate-limited post).
    let opened = wait_until(secs(20), "the OPENED Slack payload", async || {
        Ok(stack.slack.delivered_with_prefix(SUBJECT_OPENED).into_iter().next())
    })
    .await
    .with_context(|| format!("Slack posts:\n{}", stack.slack.summary()))?;
    assert_eq!(opened.text(), Some(SUBJECT_OPENED));
    ensure!(opened.json["blocks"].as_array().is_some_and(|b| !b.is_empty()), "no Block Kit blocks: {}", opened.body);
    for needle in ["checkout-latency", "shop/checkout", "0.5"] {
        ensure!(opened.body.contains(needle), "OPENED payload lacks {needle:?}: {}", opened.body);
    }
    let action_post = wait_until(secs(20), "the ACTION Slack payload", async || {
        Ok(stack.slack.delivered_with_prefix(PREFIX_ACTION).into_iter().next())
    })
    .await
    .with_context(|| format!("Slack posts:\n{}", stack.slack.summary()))?;
    for needle in ["checkout-latency", "shop/checkout"] {
        ensure!(action_post.body.contains(needle), "ACTION payload lacks {needle:?}: {}", action_post.body);
    }
    ensure!(
        stack.slack.posts().iter().any(|p| p.status == 429),
        "the injected 429 was never hit:\n{}",
        stack.slack.summary()
    );

    // --- SMTP was down: email failures are counted; once it is up, each mail arrives once.
    wait_until(secs(20), "warden_notification_failures_total{channel=\"email\"} > 0", async || {
        let metrics = warden.metrics().await?;
        Ok(metric_value(&metrics, "warden_notification_failures_total", &[("channel", "email")])
            .is_some_and(|v| v > 0.0)
            .then_some(()))
    })
    .await?;
    ensure!(smtp.messages()?.is_empty(), "mail stored before SMTP started");
    smtp.start().await?;
    note!(stack, "SMTP started");
    let mail = wait_until(secs(20), "the OPENED email", async || {
        Ok(smtp.messages_with_subject_prefix(SUBJECT_OPENED)?.into_iter().next())
    })
    .await?;
    wait_until(secs(20), "the ACTION email", async || {
        Ok(smtp.messages_with_subject_prefix(PREFIX_ACTION)?.into_iter().next())
    })
    .await?;
    assert_eq!(mail.subject, SUBJECT_OPENED);
    let mail_id = mail.message_id.clone().context("OPENED email without Message-ID")?;
    ensure!(is_outbox_message_id(&mail_id), "Message-ID {mail_id:?} is not <warden-outbox-ID@warden>");
    ensure!(mail.body.contains("0.5"), "OPENED email body lacks the observed value: {}", mail.body);
    ensure!(mail.body.contains("0.1"), "OPENED email body lacks the expected value: {}", mail.body);
    assert_eq!(mail.to, vec!["oncall@example.test".to_string()]);
    // A few retry periods (max backoff 2s) later there are still no duplicates.
    sleep(Duration::from_secs(6)).await;
    let opened_mails = smtp.messages_with_subject_prefix(SUBJECT_OPENED)?;
    let action_mails = smtp.messages_with_subject_prefix(PREFIX_ACTION)?;
    assert_eq!(opened_mails.len(), 1, "OPENED email delivered {} times", opened_mails.len());
    assert_eq!(action_mails.len(), 1, "ACTION email delivered {} times", action_mails.len());
    ensure!(
        action_mails[0].message_id.as_deref().is_some_and(is_outbox_message_id)
            && action_mails[0].message_id != mail.message_id,
        "ACTION Message-ID {:?} (OPENED: {mail_id})",
        action_mails[0].message_id
    );

    // --- Prometheus goes away: no_data, counted, nothing resolves, no new action.
    let stopped_at = stack.elapsed();
    stack.prometheus.stop().await?;
    note!(stack, "Prometheus stopped");
    let watch = wait_until(secs(20), "watch checkout-latency in state no_data", async || {
        let w = warden.watch(WATCH).await?;
        Ok((w["state"] == "no_data").then_some(w))
    })
    .await?;
    ensure!(watch["no_data_count"].as_u64().is_some_and(|n| n > 0), "no_data_count: {watch}");
    ensure!(watch["last_error"].is_string(), "no last_error while Prometheus is down: {watch}");
    wait_until(secs(10), "warden_watch_no_data_total{watch=\"checkout-latency\"} > 0", async || {
        let metrics = warden.metrics().await?;
        Ok(metric_value(&metrics, "warden_watch_no_data_total", &[("watch", WATCH)])
            .is_some_and(|v| v > 0.0)
            .then_some(()))
    })
    .await?;
    sleep(Duration::from_secs(5)).await;
    let watch = warden.watch(WATCH).await?;
    assert_eq!(watch["state"], "no_data", "{watch}");
    let incident = watch_incident(&warden.incidents(None).await?).context("incident vanished")?;
    assert_eq!(incident["status"], "open", "no data must not resolve: {incident}");
    assert_eq!(stack.kube.scale_writes("shop", "checkout").len(), 1, "{}", stack.kube.request_log());

    // --- Prometheus is back; after the fault ends the incident resolves.
    stack.prometheus.start_again().await?;
    note!(stack, "Prometheus started again (down since t0+{stopped_at}s)");
    wait_until(secs(20), "watch checkout-latency to leave no_data", async || {
        let w = warden.watch(WATCH).await?;
        Ok((w["state"] != "no_data").then_some(()))
    })
    .await?;
    let resolved =
        wait_until(secs(FAULT_END + 45 - stack.elapsed()), "the incident to resolve after the fault", async || {
            Ok(watch_incident(&warden.incidents(Some("resolved")).await?))
        })
        .await?;
    note!(stack, "incident resolved");
    assert_eq!(resolved["id"].as_i64(), Some(incident_id), "{resolved}");
    assert_eq!(resolved["status"], "resolved", "{resolved}");
    assert_eq!(resolved["fingerprint"].as_str(), Some(fingerprint.as_str()), "{resolved}");
    let resolved_at = unix_field(&resolved, "resolved_at")?;
    ensure!(resolved_at >= fault_end - 1, "resolved at {resolved_at}, before the fault ended ({fault_end})");
    let open = warden.incidents(Some("open")).await?;
    ensure!(watch_incident(&open).is_none(), "still listed as open: {open:?}");

    // --- RESOLVED on Slack and by email, once each.
    wait_until(secs(20), "the RESOLVED Slack payload", async || {
        Ok(stack.slack.delivered_with_prefix(PREFIX_RESOLVED).into_iter().next())
    })
    .await
    .with_context(|| format!("Slack posts:\n{}", stack.slack.summary()))?;
    let resolved_mail = wait_until(secs(20), "the RESOLVED email", async || {
        Ok(smtp.messages_with_subject_prefix(PREFIX_RESOLVED)?.into_iter().next())
    })
    .await?;
    ensure!(resolved_mail.subject.contains("checkout-latency"), "{}", resolved_mail.subject);
    sleep(Duration::from_secs(5)).await;
    for prefix in [SUBJECT_OPENED, PREFIX_ACTION, PREFIX_RESOLVED] {
        let n = stack.slack.delivered_with_prefix(prefix).len();
        assert_eq!(n, 1, "Slack {prefix:?} delivered {n} times:\n{}", stack.slack.summary());
        let n = smtp.messages_with_subject_prefix(prefix)?.len();
        assert_eq!(n, 1, "email {prefix:?} delivered {n} times");
    }

    // --- The notification file has one line per event.
    let lines = stack.notifications()?;
    for event in ["opened", "action", "resolved"] {
        let matching: Vec<&Value> = lines.iter().filter(|l| l["event"] == event).collect();
        assert_eq!(matching.len(), 1, "{event} lines in the notification file: {lines:?}");
        assert_eq!(matching[0]["incident_id"].as_i64(), Some(incident_id), "{}", matching[0]);
        assert_eq!(matching[0]["watch"], WATCH, "{}", matching[0]);
        ensure!(matching[0]["subject"].is_string(), "no subject: {}", matching[0]);
    }

    // --- Still exactly one action, and the metrics agree.
    assert_eq!(stack.kube.scale_writes("shop", "checkout").len(), 1, "{}", stack.kube.request_log());
    assert_eq!(warden.actions().await?.len(), 1);
    let metrics = warden.metrics().await?;
    assert_eq!(metric_value(&metrics, "warden_open_incidents", &[]), Some(0.0), "{metrics}");
    ensure!(metric_value(&metrics, "warden_actions_total", &[]).is_some_and(|v| v >= 1.0), "{metrics}");
    ensure!(metric_value(&metrics, "warden_evaluations_total", &[]).is_some_and(|v| v > 10.0), "{metrics}");

    // --- Clean shutdown.
    let unauthorized = warden_tests::http_client().get(format!("{}/api/v1/incidents", warden.url())).send().await?;
    assert_eq!(unauthorized.status().as_u16(), 401);
    let config_path = warden.config_path().to_str().context("non-UTF-8 path")?.to_string();
    warden.stop_ok().await?;
    note!(stack, "warden stopped with exit code 0");

    // --- The store outlives the daemon: the CLI lists the resolved incident.
    let out = warden_cli(&["incidents", "list", "-c", &config_path, "--json"], &[]).await?;
    ensure!(out.status.success(), "warden incidents list failed: {}\n{}", out.status, out.stderr);
    let listed: Value = serde_json::from_str(&out.stdout)
        .with_context(|| format!("warden incidents list --json printed no JSON: {}", out.stdout))?;
    let listed = listed["incidents"]
        .as_array()
        .cloned()
        .with_context(|| format!("expected {{\"incidents\": [...]}}: {}", out.stdout))?;
    let stored = watch_incident(&listed).with_context(|| format!("incident not listed: {}", out.stdout))?;
    assert_eq!(stored["id"].as_i64(), Some(incident_id), "{stored}");
    assert_eq!(stored["status"], "resolved", "{stored}");
    Ok(())
}
