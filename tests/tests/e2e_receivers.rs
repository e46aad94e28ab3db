//! PagerDuty, Opsgenie, Teams, the signed webhook and Slack app mode, each driven through
//! the outbox against a local server that answers as the service documents it: every
//! message is delivered once, in order per incident; transient failures (429 with
//! `Retry-After`, 5xx, slow answers) are retried; permanent ones (PagerDuty `400 invalid
//! event`, Opsgenie `401`/`422`, Teams `400`, a wrong signature) are dead-lettered with the
//! receiver's reason while the rest flow. Slack button presses are signed here
//! independently of Warden's verifier.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Result};
use chrono::Utc;
use serde_json::json;
use warden_agent::metrics::Metrics;
use warden_agent::notify::render::render_approval_request;
use warden_agent::notify::{render, Channels, Interaction, NotifyEvent, Outbox, Policy, SlackApp};
use warden_agent::store::{Incident, IncidentSignal, Store};
use warden_agent::timeline::Timeline;
use warden_connectors::opsgenie::Opsgenie;
use warden_connectors::pagerduty::PagerDuty;
use warden_connectors::signed_webhook::SignedWebhook;
use warden_connectors::slack_api::SlackApi as SlackApiClient;
use warden_connectors::slack_app::{Approvers, APPROVE_ACTION, DENY_ACTION};
use warden_connectors::teams::TeamsWebhook;
use warden_connectors::Secret;
use warden_tests::receivers::{Fault, Kind, Receiver};
use warden_tests::slack_api::{button_press, sign, SlackApi, SlackApiFault};

const PD_KEY: &str = "0123456789abcdef0123456789abcdef";
const OG_KEY: &str = "og-api-key-1";
const HOOK_SECRET: &str = "hook-secret-0123456789";
const BOT_TOKEN: &str = "xoxb-test-token";
const SIGNING: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const CHANNEL: &str = "C0INCIDENT";

fn signal(fp: &str) -> IncidentSignal {
    IncidentSignal {
        fingerprint: fp.into(),
        watch: "checkout-latency".into(),
        source: "watch".into(),
        severity: "critical".into(),
        title: format!("checkout-latency anomalous ({fp})"),
        labels: BTreeMap::new(),
        target: None,
        observed: Some(0.9),
        expected: Some(0.1),
        lower: None,
        upper: None,
        score: None,
        detector: Some("auto".into()),
    }
}

fn outbox(store: &Arc<Store>, channels: Channels) -> Outbox {
    let policy = Policy {
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(300),
        ..Policy::default()
    };
    Outbox::new(store.clone(), channels, policy, Arc::new(Metrics::new()), Timeline::default())
}

/// Opened, an action, resolved: the life of one incident, notified on `channels`.
fn incident_life(store: &Store, fp: &str, channels: &[&str]) -> Result<Incident> {
    let i = store
        .open_incident(&signal(fp), Utc::now(), &json!({}), |i| render(NotifyEvent::Opened, i, None, &[], channels))?;
    let action = render(NotifyEvent::Action, &i, Some("scaled shop/checkout from 2 to 3"), &[], channels);
    store.add_event(i.id, Utc::now(), "action", &json!({}), &action)?;
    store.resolve_incident(i.id, Utc::now(), &json!({}), None, |i| {
        render(NotifyEvent::Resolved, i, None, &[], channels)
    })?;
    Ok(i)
}

async fn drain(outbox: &Outbox) -> Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let pass = outbox.deliver_due(Utc::now()).await;
        if outbox.store.pending_notifications()? == 0 && pass.next_due.is_none() {
            return Ok(());
        }
        ensure!(tokio::time::Instant::now() < deadline, "still {} pending", outbox.store.pending_notifications()?);
        let wait = pass
            .next_due
            .map(|t| (t - Utc::now()).to_std().unwrap_or_default())
            .unwrap_or_default()
            .clamp(Duration::from_millis(5), Duration::from_secs(2));
        tokio::time::sleep(wait).await;
    }
}

fn dead_reasons(store: &Store) -> Result<Vec<(String, String)>> {
    Ok(store
        .list_outbox(Some("dead"), None, 100)?
        .into_iter()
        .map(|m| (m.channel, m.reason.unwrap_or_default()))
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagerduty_triggers_and_resolves_once_through_429_and_5xx_and_drops_an_invalid_event() -> Result<()> {
    let pd = Receiver::start(Kind::PagerDuty { routing_key: PD_KEY.into() }).await?;
    let store = Arc::new(Store::open_in_memory()?);
    let client = PagerDuty::new(Some(&pd.url()), Secret::new(PD_KEY.into()), Duration::from_secs(5))?;
    let ob = outbox(&store, Channels { pagerduty: Some(client), ..Default::default() });

    // Rate limited, then down twice: retried, each event accepted once.
    pd.fail_next(&[Fault::RateLimited(1), Fault::Unavailable, Fault::ServerError]);
    let started = std::time::Instant::now();
    incident_life(&store, "fp-a", &["pagerduty"])?;
    drain(&ob).await?;
    ensure!(started.elapsed() >= Duration::from_millis(900), "Retry-After was not honoured");
    let alerts = pd.alerts();
    let a = alerts.get("fp-a").ok_or_else(|| anyhow::anyhow!("no alert: {}", pd.summary()))?;
    assert_eq!(a.history, ["trigger", "resolve"], "{}", pd.summary());
    assert_eq!(a.state, "resolved");
    let trigger = pd.accepted().into_iter().find(|r| r.json["event_action"] == "trigger").expect("trigger");
    assert_eq!(trigger.json["routing_key"], PD_KEY);
    assert_eq!(trigger.json["payload"]["severity"], "critical");
    assert_eq!(store.list_outbox(Some("delivered"), None, 10)?.len(), 2, "the action is not sent to PagerDuty");

    // PagerDuty refuses one event for good: it is dead-lettered, the next incident flows.
    pd.fail_next(&[Fault::Invalid]);
    incident_life(&store, "fp-b", &["pagerduty"])?;
    incident_life(&store, "fp-c", &["pagerduty"])?;
    drain(&ob).await?;
    let dead = dead_reasons(&store)?;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0].1.contains("invalid event: Event object is invalid"), "{dead:?}");
    assert!(!dead[0].1.contains(PD_KEY));
    assert_eq!(pd.alerts().get("fp-c").map(|a| a.history.clone()), Some(vec!["trigger".into(), "resolve".into()]));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opsgenie_creates_notes_and_closes_by_alias_and_refusals_are_permanent() -> Result<()> {
    let og = Receiver::start(Kind::Opsgenie { api_key: OG_KEY.into() }).await?;
    let store = Arc::new(Store::open_in_memory()?);
    let client = Opsgenie::new(Some(&og.url()), Secret::new(OG_KEY.into()), Duration::from_secs(5))?
        .with_tags(vec!["prod".into()]);
    let ob = outbox(&store, Channels { opsgenie: Some(client), ..Default::default() });
    og.flaky(Some(2));
    incident_life(&store, "fp/a b", &["opsgenie"])?;
    drain(&ob).await?;
    og.flaky(None);
    let alert = og.alerts().get("fp/a b").cloned().unwrap_or_default();
    assert_eq!(alert.history, ["create", "notes", "close"], "{}", og.summary());
    assert!(alert.notes[0].contains("scaled shop/checkout"), "{:?}", alert.notes);
    let create = og.accepted().into_iter().find(|r| r.path == "/v2/alerts").expect("create");
    assert_eq!(create.header("authorization"), Some(&*format!("GenieKey {OG_KEY}")));
    assert!(create.json["tags"].as_array().is_some_and(|t| t.contains(&json!("prod"))), "{}", create.json);

    // 422 on one message: dead; the rest of the incident still flows in order.
    og.fail_next(&[Fault::Invalid]);
    incident_life(&store, "fp-2", &["opsgenie"])?;
    drain(&ob).await?;
    let dead = dead_reasons(&store)?;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0].1.contains("Message can not be empty"), "{dead:?}");
    assert_eq!(og.alerts().get("fp-2").map(|a| a.history.clone()), Some(vec!["notes".into(), "close".into()]));

    // A wrong key: 401, permanent for the channel.
    let bad = Opsgenie::new(Some(&og.url()), Secret::new("wrong".into()), Duration::from_secs(5))?;
    let store2 = Arc::new(Store::open_in_memory()?);
    let ob2 = outbox(&store2, Channels { opsgenie: Some(bad), ..Default::default() });
    store2.open_incident(&signal("fp-3"), Utc::now(), &json!({}), |i| {
        render(NotifyEvent::Opened, i, None, &[], &["opsgenie"])
    })?;
    let pass = ob2.deliver_due(Utc::now()).await;
    assert_eq!(pass.dead_lettered, 1);
    assert!(dead_reasons(&store2)?[0].1.contains("Could not authenticate"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teams_gets_adaptive_cards_a_slow_answer_is_retried_and_a_400_is_dead() -> Result<()> {
    let teams = Receiver::start(Kind::Teams).await?;
    let store = Arc::new(Store::open_in_memory()?);
    let client = TeamsWebhook::new(Secret::new(teams.url()), Duration::from_millis(300))?;
    let ob = outbox(&store, Channels { teams: Some(client), ..Default::default() });
    teams.set_delay(Duration::from_millis(600));
    incident_life(&store, "fp-t", &["teams"])?;
    let first = ob.deliver_due(Utc::now()).await;
    assert_eq!((first.delivered, first.dead_lettered), (0, 0), "a slow answer is not a delivery");
    teams.set_delay(Duration::ZERO);
    drain(&ob).await?;
    let delivered = store.list_outbox(Some("delivered"), None, 10)?;
    assert_eq!(delivered.len(), 3);
    let card = &teams.accepted()[0].json["attachments"][0]["content"];
    assert_eq!(card["type"], "AdaptiveCard");
    assert!(card.to_string().contains("checkout-latency"), "{card}");
    assert!(!teams.summary().contains("t3st-sig"));

    teams.fail_next(&[Fault::Invalid]);
    incident_life(&store, "fp-u", &["teams"])?;
    drain(&ob).await?;
    let dead = dead_reasons(&store)?;
    assert_eq!(dead.len(), 1);
    assert!(dead[0].1.contains("InvalidRequestContent") && !dead[0].1.contains("t3st-sig"), "{dead:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_is_signed_every_retry_keeps_its_delivery_id_and_a_wrong_secret_is_refused() -> Result<()> {
    let hook = Receiver::start(Kind::Webhook { secret: HOOK_SECRET.into() }).await?;
    let store = Arc::new(Store::open_in_memory()?);
    let client = SignedWebhook::new(Secret::new(hook.url()), Secret::new(HOOK_SECRET.into()), Duration::from_secs(5))?;
    let ob = outbox(&store, Channels { webhook: Some(client), ..Default::default() });
    hook.fail_next(&[Fault::Unavailable, Fault::RateLimited(0)]);
    incident_life(&store, "fp-w", &["webhook"])?;
    drain(&ob).await?;
    let accepted = hook.accepted();
    assert_eq!(accepted.len(), 3, "{}", hook.summary());
    let events: Vec<_> = accepted.iter().map(|r| r.json["event"].as_str().unwrap_or("").to_string()).collect();
    assert_eq!(events, ["opened", "action", "resolved"]);
    assert_eq!(accepted[0].json["fingerprint"], "fp-w");
    // The first message was tried three times under one delivery id.
    let first_id = accepted[0].header("x-warden-delivery").unwrap_or("").to_string();
    let tries = hook.received().iter().filter(|r| r.header("x-warden-delivery") == Some(&first_id)).count();
    assert_eq!(tries, 3, "{}", hook.summary());

    let wrong = SignedWebhook::new(
        Secret::new(hook.url()),
        Secret::new("not-the-shared-secret".into()),
        Duration::from_secs(5),
    )?;
    let store2 = Arc::new(Store::open_in_memory()?);
    let ob2 = outbox(&store2, Channels { webhook: Some(wrong), ..Default::default() });
    store2.open_incident(&signal("fp-x"), Utc::now(), &json!({}), |i| {
        render(NotifyEvent::Opened, i, None, &[], &["webhook"])
    })?;
    assert_eq!(ob2.deliver_due(Utc::now()).await.dead_lettered, 1);
    assert!(dead_reasons(&store2)?[0].1.contains("signature mismatch"));
    Ok(())
}

fn app(api: &SlackApi, approvers: Approvers) -> Result<SlackApp> {
    let client = SlackApiClient::new(Some(&api.url()), Secret::new(BOT_TOKEN.into()), Duration::from_secs(5))?;
    Ok(SlackApp::new(client, CHANNEL.into(), Secret::new(SIGNING.into()), approvers))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_app_keeps_one_message_per_incident_across_a_restart() -> Result<()> {
    let api = SlackApi::start(BOT_TOKEN, &[CHANNEL]).await?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("w.db");
    let store = Arc::new(Store::open(&path)?);
    let ob = outbox(&store, Channels { slack_app: Some(app(&api, Approvers::default())?), ..Default::default() });
    let i = store.open_incident(&signal("fp-s"), Utc::now(), &json!({}), |i| {
        render(NotifyEvent::Opened, i, None, &[], &["slack_app"])
    })?;
    api.fail_next(&[SlackApiFault::RateLimited(0)]);
    drain(&ob).await?;
    assert_eq!(api.top_level().len(), 1, "{}", api.summary());

    // A restart: a new store handle and outbox edit the same message.
    drop(ob);
    drop(store);
    let store = Arc::new(Store::open(&path)?);
    let ob = outbox(&store, Channels { slack_app: Some(app(&api, Approvers::default())?), ..Default::default() });
    let action = render(NotifyEvent::Action, &i, Some("scaled shop/checkout from 2 to 3"), &[], &["slack_app"]);
    store.add_event(i.id, Utc::now(), "action", &json!({}), &action)?;
    store.resolve_incident(i.id, Utc::now(), &json!({}), None, |i| {
        render(NotifyEvent::Resolved, i, None, &[], &["slack_app"])
    })?;
    api.fail_next(&[SlackApiFault::Unavailable]);
    drain(&ob).await?;
    let top = api.top_level();
    assert_eq!(top.len(), 1, "{}", api.summary());
    assert_eq!(top[0].updates, 2, "{}", api.summary());
    assert!(top[0].text.contains("RESOLVED"), "{}", top[0].text);
    let replies = api.replies(&top[0].ts);
    assert_eq!(replies.len(), 2);
    assert!(replies[0].text.contains("ACTION") && replies[1].text.contains("RESOLVED"));

    // A bot removed from the channel: the channel is refused for good.
    api.fail_next(&[SlackApiFault::Error("not_in_channel".into())]);
    store.open_incident(&signal("fp-t"), Utc::now(), &json!({}), |i| {
        render(NotifyEvent::Opened, i, None, &[], &["slack_app"])
    })?;
    assert_eq!(ob.deliver_due(Utc::now()).await.dead_lettered, 1);
    assert!(dead_reasons(&store)?[0].1.contains("not_in_channel"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_button_press_becomes_a_decision_and_strangers_are_told_why() -> Result<()> {
    let api = SlackApi::start(BOT_TOKEN, &[CHANNEL]).await?;
    api.add_group("S0ONCALL", &["U0GROUPIE"]);
    let approvers = Approvers { users: ["U0ALICE".to_string()].into(), groups: ["S0ONCALL".to_string()].into() };
    let app = app(&api, approvers)?;
    let store = Arc::new(Store::open_in_memory()?);
    let ob = outbox(&store, Channels { slack_app: Some(app.clone()), ..Default::default() });
    let i = store.open_incident(&signal("fp-r"), Utc::now(), &json!({}), |i| {
        render(NotifyEvent::Opened, i, None, &[], &["slack_app"])
    })?;
    let ask = render_approval_request(&i, 7, 1_700_000_000_000, "run 7 awaits approval", &[], &["slack_app"]);
    store.add_event(i.id, Utc::now(), "run_awaiting_approval", &json!({}), &ask)?;
    drain(&ob).await?;
    let message = api.top_level().pop().ok_or_else(|| anyhow::anyhow!("no message"))?;
    assert!(message.blocks.to_string().contains(APPROVE_ACTION), "the message has no buttons");

    let now = Utc::now();
    let value = message.button_value(APPROVE_ACTION).ok_or_else(|| anyhow::anyhow!("no Approve button"))?;
    assert_eq!(message.button_value(DENY_ACTION).as_deref(), Some(value.as_str()));
    let press = |action: &str, user: &str| button_press(action, &value, user, CHANNEL, &message.ts);
    let signed = |body: &[u8]| sign(SIGNING, now.timestamp(), body);

    let body = press(APPROVE_ACTION, "U0ALICE");
    let started = std::time::Instant::now();
    let got = app.interaction(Some(&now.timestamp().to_string()), Some(&signed(&body)), &body, now).await;
    println!("slack interaction verified and parsed in {:?}", started.elapsed());
    let Interaction::Decide { run_id, approve, who, action } = got else { anyhow::bail!("not a decision: {got:?}") };
    assert_eq!((run_id, approve, who.as_str()), (7, true, "slack:U0ALICE (u0alice-name)"));
    assert_eq!(action.requested_at_ms, 1_700_000_000_000);
    app.reply(&action, "Approved by <@U0ALICE>").await?;
    assert_eq!(api.replies(&message.ts).last().map(|m| m.text.clone()), Some("Approved by <@U0ALICE>".into()));

    // A member of an approver group may deny.
    let body = press(DENY_ACTION, "U0GROUPIE");
    let got = app.interaction(Some(&now.timestamp().to_string()), Some(&signed(&body)), &body, now).await;
    assert!(matches!(got, Interaction::Decide { approve: false, .. }), "{got:?}");

    // A stranger is refused, and told why in the thread.
    let body = press(APPROVE_ACTION, "U0MALLORY");
    let got = app.interaction(Some(&now.timestamp().to_string()), Some(&signed(&body)), &body, now).await;
    let Interaction::Refused { action, reason } = got else { anyhow::bail!("not refused: {got:?}") };
    assert!(reason.contains("not an approver"), "{reason}");
    app.reply(&action, &reason).await?;
    assert!(api.replies(&message.ts).iter().any(|m| m.text.contains("<@U0MALLORY> is not an approver")));

    // Forged, replayed and garbled requests.
    let body = press(APPROVE_ACTION, "U0ALICE");
    let forged = sign("another-secret", now.timestamp(), &body);
    let got = app.interaction(Some(&now.timestamp().to_string()), Some(&forged), &body, now).await;
    assert!(matches!(&got, Interaction::Unauthenticated(r) if r.contains("does not match")), "{got:?}");
    let old = now - chrono::Duration::minutes(6);
    let replay = sign(SIGNING, old.timestamp(), &body);
    let got = app.interaction(Some(&old.timestamp().to_string()), Some(&replay), &body, now).await;
    assert!(matches!(&got, Interaction::Unauthenticated(r) if r.contains("5 minutes")), "{got:?}");
    let garbled = b"payload=%7B%22type%22%3A".to_vec();
    let got = app.interaction(Some(&now.timestamp().to_string()), Some(&signed(&garbled)), &garbled, now).await;
    assert!(matches!(&got, Interaction::Invalid(r) if r.contains("JSON")), "{got:?}");
    Ok(())
}
