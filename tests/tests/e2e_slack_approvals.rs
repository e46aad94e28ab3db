//! Slack approvals end to end: `warden run` with the Slack app receiver pointed at the
//! local Slack Web API server and a playbook that waits for approval. A firing alert
//! starts the run; its approval request reaches Slack with Approve / Deny buttons; the test
//! presses them the way Slack does (a form body signed with the app's signing secret,
//! computed here independently of Warden's verifier) on
//! `POST /api/v1/slack/interactions`:
//!
//! * badly signed, unsigned, stale or garbled requests are refused (401, 400) and change
//!   nothing;
//! * a user outside the allow-list, or a button of another approval request, is told why in
//!   the incident's thread and nothing is decided;
//! * an approver's press continues the run, the audit trail names the Slack user, the
//!   thread says who decided; a second press, Slack's retry of the first and a press on a
//!   decided run change nothing (the thread says so, except for the retry);
//! * a group member denies a second run.
//!
//! The time from the signed request to the run continuing is read from what the engine
//! records (the approval's `decided_at`, the first step's `started_at`) against the
//! wall-clock time the request was sent, and printed.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use warden_tests::procs::Warden;
use warden_tests::slack_api::{button_press, sign, Message, SlackApi};
use warden_tests::{free_port, http_client, wait_until};

const API_TOKEN: &str = "slack-e2e-api-token";
const BOT_TOKEN: &str = "xoxb-e2e-bot-token";
const SIGNING: &str = "e2e-signing-secret-0123456789abcdef";
const CHANNEL: &str = "C0INCIDENTS";
const APPROVER: &str = "U0ALICE";
const GROUP: &str = "S0ONCALL";
const GROUPIE: &str = "U0BOB";
const STRANGER: &str = "U0MALLORY";
const APPROVE: &str = "warden_approve";
const DENY: &str = "warden_deny";

fn config(dir: &std::path::Path, port: u16, slack_url: &str) -> Result<String> {
    let playbooks = dir.join("playbooks");
    std::fs::create_dir_all(&playbooks)?;
    std::fs::write(playbooks.join("ask-first.yaml"), warden_tests::config::ASK_FIRST_PLAYBOOK)?;
    let config = json!({
        "store": {"sqlite": dir.join("warden.db").display().to_string()},
        "server": {"listen": format!("127.0.0.1:{port}"), "api_token": {"env": "WARDEN_API_TOKEN"}},
        "playbooks": {"dir": playbooks.display().to_string()},
        "notify": {
            "slack_app": {
                "bot_token": {"env": "SLACK_BOT_TOKEN"},
                "signing_secret": {"env": "SLACK_SIGNING_SECRET"},
                "channel": CHANNEL,
                "api_url": slack_url,
                "approvers": {"users": [APPROVER], "groups": [GROUP]},
            },
            "retry": {"initial_backoff": "100ms", "max_backoff": "1s"},
        },
    });
    Ok(serde_yaml::to_string(&config)?)
}

/// A firing `NeedsApproval` alert of `service` (one incident per service); the runs it
/// started.
async fn fire(warden: &Warden, service: &str) -> Result<Vec<i64>> {
    let body = json!({"version": "4", "groupKey": service, "status": "firing", "receiver": "warden", "alerts": [
        {"status": "firing", "labels": {"alertname": "NeedsApproval", "service": service}, "annotations": {}, "startsAt": "2026-11-22T10:00:00Z"}
    ]});
    let r =
        http_client().post(format!("{}/api/v1/alerts", warden.url())).bearer_auth(API_TOKEN).json(&body).send().await?;
    let status = r.status();
    let v: Value = r.json().await?;
    ensure!(status.is_success(), "POST /api/v1/alerts: {status} {v}");
    Ok(v["runs"].as_array().map(|a| a.iter().filter_map(Value::as_i64).collect()).unwrap_or_default())
}

/// The incident message on Slack whose Approve button names `run`.
async fn approval_message(api: &SlackApi, run: i64) -> Result<(Message, String)> {
    wait_until(Duration::from_secs(30), "the approval request with buttons on Slack", async || {
        Ok(api.top_level().into_iter().find_map(|m| {
            let value = m.button_value(APPROVE)?;
            value.starts_with(&format!("run:{run}:")).then_some((m, value))
        }))
    })
    .await
    .with_context(|| api.summary())
}

/// `GET /api/v1/runs/{id}`: the run and its audit entries.
async fn run(warden: &Warden, id: i64) -> Result<(Value, Vec<Value>)> {
    let v = warden.get_json(&format!("/api/v1/runs/{id}")).await?;
    Ok((v["run"].clone(), v["audit"].as_array().cloned().unwrap_or_default()))
}

fn approvals(audit: &[Value]) -> Vec<Value> {
    audit.iter().filter(|e| e["kind"] == "approval" && e["detail"].get("by").is_some()).cloned().collect()
}

struct Slack<'a> {
    warden: &'a Warden,
    client: reqwest::Client,
}

impl Slack<'_> {
    /// Sends `body` as Slack does, with the given headers; the status and body.
    async fn send(&self, body: &[u8], headers: &[(&str, String)]) -> Result<(u16, String)> {
        let mut req = self
            .client
            .post(format!("{}/api/v1/slack/interactions", self.warden.url()))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.to_vec());
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let r = req.send().await?;
        Ok((r.status().as_u16(), r.text().await?))
    }

    /// Sends `body` signed with `secret` at `at`.
    async fn signed(&self, body: &[u8], secret: &str, at: DateTime<Utc>, retry: Option<u32>) -> Result<(u16, String)> {
        let mut headers = vec![
            ("X-Slack-Request-Timestamp", at.timestamp().to_string()),
            ("X-Slack-Signature", sign(secret, at.timestamp(), body)),
        ];
        if let Some(n) = retry {
            headers.push(("X-Slack-Retry-Num", n.to_string()));
            headers.push(("X-Slack-Retry-Reason", "http_timeout".to_string()));
        }
        self.send(body, &headers).await
    }
}

/// Waits for a reply in the thread of `ts` whose text or blocks contain `needle`; all
/// replies so far.
async fn reply_containing(api: &SlackApi, ts: &str, needle: &str) -> Result<Vec<Message>> {
    wait_until(Duration::from_secs(20), &format!("a thread reply containing {needle:?}"), async || {
        let replies = api.replies(ts);
        let has = |m: &Message| m.text.contains(needle) || m.blocks.to_string().contains(needle);
        Ok(replies.iter().any(has).then_some(replies))
    })
    .await
    .with_context(|| api.messages().iter().map(|m| m.text.clone()).collect::<Vec<_>>().join("\n"))
}

/// The Slack Web API test server (with the group `S0ONCALL`) and a `warden run` whose
/// Slack app points at it.
async fn start() -> Result<(SlackApi, tempfile::TempDir, Warden)> {
    let api = SlackApi::start(BOT_TOKEN, &[CHANNEL]).await?;
    api.add_group(GROUP, &[GROUPIE]);
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let envs = [("WARDEN_API_TOKEN", API_TOKEN), ("SLACK_BOT_TOKEN", BOT_TOKEN), ("SLACK_SIGNING_SECRET", SIGNING)];
    let warden = Warden::start(dir.path(), &config(dir.path(), port, &api.url())?, &envs, port, API_TOKEN).await?;
    Ok((api, dir, warden))
}

fn at(v: &Value) -> Result<DateTime<Utc>> {
    Ok(v.as_str().context("a time")?.parse::<DateTime<Utc>>()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_slack_press_approves_the_run_once_and_the_audit_names_the_slack_user() -> Result<()> {
    let (api, _dir, warden) = start().await?;
    let slack = Slack { warden: &warden, client: http_client() };

    let runs = fire(&warden, "checkout").await?;
    ensure!(runs.len() == 1, "one run expected: {runs:?}");
    let id = runs[0];
    let (message, value) = approval_message(&api, id).await?;
    ensure!(message.button_value(DENY).as_deref() == Some(value.as_str()), "Deny names the same request");
    ensure!(run(&warden, id).await?.0["status"] == "awaiting_approval");
    let press = |action: &str, user: &str| button_press(action, &value, user, CHANNEL, &message.ts);

    // Refused at the door: nothing is decided.
    let body = press(APPROVE, APPROVER);
    let (status, text) = slack.signed(&body, "not-the-signing-secret", Utc::now(), None).await?;
    ensure!(status == 401 && text.contains("does not match"), "forged: {status} {text}");
    let (status, text) = slack.send(&body, &[]).await?;
    ensure!(status == 401 && text.contains("no X-Slack-Request-Timestamp"), "unsigned: {status} {text}");
    let (status, text) = slack.signed(&body, SIGNING, Utc::now() - chrono::Duration::minutes(6), None).await?;
    ensure!(status == 401 && text.contains("5 minutes"), "replayed: {status} {text}");
    let garbled = b"payload=%7B%22type%22%3A".to_vec();
    let (status, text) = slack.signed(&garbled, SIGNING, Utc::now(), None).await?;
    ensure!(status == 400 && text.contains("JSON"), "garbled: {status} {text}");
    let (status, _) = slack.signed(b"token=abc&team_id=T1", SIGNING, Utc::now(), None).await?;
    ensure!(status == 400, "no payload: {status}");
    ensure!(run(&warden, id).await?.0["status"] == "awaiting_approval");

    // A stranger is told why in the incident's thread; nothing is decided.
    let (status, _) = slack.signed(&press(APPROVE, STRANGER), SIGNING, Utc::now(), None).await?;
    ensure!(status == 200, "stranger: {status}");
    reply_containing(&api, &message.ts, &format!("<@{STRANGER}> is not an approver")).await?;
    // A button of another approval request (run ids repeat across stores) decides nothing.
    let other = button_press(APPROVE, &format!("run:{id}:12345"), APPROVER, CHANNEL, &message.ts);
    let (status, _) = slack.signed(&other, SIGNING, Utc::now(), None).await?;
    ensure!(status == 200, "another request's button: {status}");
    reply_containing(&api, &message.ts, "belongs to another approval request").await?;
    let (r, audit) = run(&warden, id).await?;
    ensure!(r["status"] == "awaiting_approval" && approvals(&audit).is_empty(), "{r}");

    // The approver's press: the run continues at once.
    let sent = Utc::now();
    let clock = Instant::now();
    let (status, text) = slack.signed(&press(APPROVE, APPROVER), SIGNING, sent, None).await?;
    let answered = clock.elapsed();
    ensure!(status == 200, "approve: {status} {text}");
    let (r, audit) = wait_until(Duration::from_secs(20), "the approved run to finish", async || {
        let (r, audit) = run(&warden, id).await?;
        Ok((r["status"] == "succeeded").then_some((r, audit)))
    })
    .await?;
    let observed = clock.elapsed();
    let who = format!("slack:{APPROVER} ({}-name)", APPROVER.to_lowercase());
    ensure!(r["approval"]["decided_by"] == who.as_str() && r["approval"]["approved"] == true, "{r}");
    let decided = approvals(&audit);
    ensure!(decided.len() == 1 && decided[0]["actor"] == who.as_str(), "{decided:?}");
    ensure!(decided[0]["detail"]["approved"] == true, "{decided:?}");
    let decided_at = at(&r["approval"]["decided_at"])?;
    let continued_at = at(&r["steps"][0]["started_at"])?;
    ensure!(continued_at >= decided_at, "the step started before the decision: {r}");
    ensure!(r["steps"][0]["status"] == "done", "{r}");
    let ms = |d: chrono::Duration| d.num_microseconds().unwrap_or(i64::MAX) as f64 / 1000.0;
    // The engine reads its clock once per decision: the approval and the first step carry
    // the same instant. The answer comes after the engine's call has advanced the run, so
    // its wall time bounds the same interval from above.
    println!(
        "slack press -> run continuing: {:.1} ms by the engine's clock (first step started_at - request sent; decided_at - request sent: {:.1} ms); at most {:.1} ms by the wall clock (signed request sent -> 200 answered after the run advanced); run seen succeeded through the API after {:.1} ms",
        ms(continued_at - sent),
        ms(decided_at - sent),
        answered.as_secs_f64() * 1000.0,
        observed.as_secs_f64() * 1000.0
    );
    reply_containing(&api, &message.ts, &format!("approved by <@{APPROVER}>")).await?;
    // The notify step's message reached the incident's thread: the run did continue.
    reply_containing(&api, &message.ts, "approved work for NeedsApproval ran").await?;

    // Slack's retry of that press, a second press and a deny on the decided run: 200 each,
    // nothing changes; the thread is told, except for the retry.
    let (status, _) = slack.signed(&press(APPROVE, APPROVER), SIGNING, sent, Some(1)).await?;
    ensure!(status == 200, "retry: {status}");
    let (status, _) = slack.signed(&press(APPROVE, APPROVER), SIGNING, Utc::now(), None).await?;
    ensure!(status == 200, "second press: {status}");
    let (status, _) = slack.signed(&press(DENY, GROUPIE), SIGNING, Utc::now(), None).await?;
    ensure!(status == 200, "late deny: {status}");
    let replies = wait_until(Duration::from_secs(20), "both later presses answered in the thread", async || {
        let replies = api.replies(&message.ts);
        let told = |u: &str| replies.iter().any(|m| m.text.contains(&format!("this press by <@{u}> changed nothing")));
        Ok((told(APPROVER) && told(GROUPIE)).then_some(replies))
    })
    .await?;
    let already = replies.iter().filter(|m| m.text.contains("was already approved by")).count();
    let texts: Vec<&str> = replies.iter().map(|m| m.text.as_str()).collect();
    ensure!(already == 2, "one reply for the second press and one for the deny, none for the retry: {texts:#?}");
    let (r, audit) = run(&warden, id).await?;
    ensure!(r["status"] == "succeeded" && approvals(&audit).len() == 1, "{r}");

    // A group member denies another run.
    let runs = fire(&warden, "billing").await?;
    ensure!(runs.len() == 1, "one run expected: {runs:?}");
    let second = runs[0];
    let (message2, value2) = approval_message(&api, second).await?;
    let deny = button_press(DENY, &value2, GROUPIE, CHANNEL, &message2.ts);
    let (status, _) = slack.signed(&deny, SIGNING, Utc::now(), None).await?;
    ensure!(status == 200, "deny: {status}");
    let (r2, audit2) = wait_until(Duration::from_secs(20), "the second run denied", async || {
        let (r, audit) = run(&warden, second).await?;
        Ok((r["status"] == "denied").then_some((r, audit)))
    })
    .await?;
    let by = format!("slack:{GROUPIE} ({}-name)", GROUPIE.to_lowercase());
    ensure!(approvals(&audit2).iter().any(|e| e["actor"] == by.as_str() && e["detail"]["approved"] == false), "{r2}");
    reply_containing(&api, &message2.ts, &format!("denied by <@{GROUPIE}>")).await?;

    let chain = warden.get_json("/api/v1/audit/verify").await?;
    ensure!(chain["intact"] == true, "{chain}");
    ensure!(!warden.logs_tail(400).contains(SIGNING), "the signing secret is never logged");
    warden.stop_ok().await
}

/// Acknowledge, Silence 1h and Resolve on an open incident's Slack message: the allow-list
/// applies, each press does what the CLI and API do, in the incident's history under the
/// Slack identity, and the thread says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incident_buttons_acknowledge_silence_and_resolve_from_slack() -> Result<()> {
    let (api, _dir, warden) = start().await?;
    let slack = Slack { warden: &warden, client: http_client() };
    fire(&warden, "cart").await?;
    let (message, value) = wait_until(Duration::from_secs(30), "the incident message with its buttons", async || {
        Ok(api.top_level().into_iter().find_map(|m| {
            let value = m.button_value("warden_ack")?;
            Some((m, value))
        }))
    })
    .await
    .with_context(|| api.summary())?;
    let incident: i64 = value.strip_prefix("incident:").context("incident:ID")?.parse()?;
    let press = |action: &str, user: &str| button_press(action, &value, user, CHANNEL, &message.ts);
    let history = async || -> Result<Vec<Value>> {
        let v = warden.get_json(&format!("/api/v1/incidents/{incident}")).await?;
        Ok(v["events"].as_array().cloned().unwrap_or_default())
    };

    // Someone outside the allow-list: told why, nothing done.
    let (status, _) = slack.signed(&press("warden_ack", STRANGER), SIGNING, Utc::now(), None).await?;
    ensure!(status == 200, "stranger: {status}");
    reply_containing(&api, &message.ts, &format!("<@{STRANGER}> is not an approver: only the users and groups in `notify.slack_app.approvers` may change incident #{incident}")).await?;
    ensure!(history().await?.iter().all(|e| e["kind"] != "acknowledged"));

    let (status, _) = slack.signed(&press("warden_ack", APPROVER), SIGNING, Utc::now(), None).await?;
    ensure!(status == 200, "ack: {status}");
    reply_containing(&api, &message.ts, &format!("acknowledged by <@{APPROVER}>")).await?;
    let (status, _) = slack.signed(&press("warden_ack", APPROVER), SIGNING, Utc::now(), None).await?;
    ensure!(status == 200);
    reply_containing(&api, &message.ts, "was already acknowledged").await?;
    let acked = history().await?.into_iter().find(|e| e["kind"] == "acknowledged").context("acknowledged event")?;
    ensure!(acked["detail"]["by"].as_str().is_some_and(|b| b.starts_with(&format!("slack:{APPROVER}"))), "{acked}");

    let (status, _) = slack.signed(&press("warden_silence_1h", APPROVER), SIGNING, Utc::now(), None).await?;
    ensure!(status == 200, "silence: {status}");
    reply_containing(&api, &message.ts, "Silenced for an hour").await?;
    let silences = warden.get_json("/api/v1/silences").await?;
    let s = &silences["silences"][0]["silence"];
    ensure!(s["created_by"].as_str().is_some_and(|b| b.starts_with(&format!("slack:{APPROVER}"))), "{silences}");
    ensure!(s["matchers"] == json!(["watch=\"alertmanager/NeedsApproval\""]), "{silences}");

    let (status, _) = slack.signed(&press("warden_resolve", APPROVER), SIGNING, Utc::now(), None).await?;
    ensure!(status == 200, "resolve: {status}");
    reply_containing(&api, &message.ts, &format!("resolved by <@{APPROVER}>")).await?;
    let v = warden.get_json(&format!("/api/v1/incidents/{incident}")).await?;
    ensure!(v["incident"]["status"] == "resolved", "{v}");
    let garbled = button_press("warden_resolve", "incident:x", APPROVER, CHANNEL, &message.ts);
    let (status, text) = slack.signed(&garbled, SIGNING, Utc::now(), None).await?;
    ensure!(status == 400 && text.contains("`incident:ID` expected"), "{status} {text}");
    warden.stop_ok().await
}
