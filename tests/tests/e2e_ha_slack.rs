//! A Slack press that reaches a follower: two `warden run` replicas with leader election
//! (on the local Kubernetes API test server's Lease) share one PostgreSQL store and one
//! Slack app. The approval request of a run the leader started is pressed on the
//! follower, the way Slack does (whichever replica its Request URL reaches): the follower
//! answers 200 at once, and the leader decides the run, with the Slack user in the audit
//! trail. The time from the signed request to the run continuing is printed.
//!
//! Needs the PostgreSQL server the test command starts (`WARDEN_TEST_POSTGRES_URL`);
//! without it the test prints one line and passes.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use warden_tests::kube_api::{write_kubeconfig, KubeApi, KUBECONFIG_CONTEXT};
use warden_tests::procs::{metric_value, Warden};
use warden_tests::slack_api::{button_press, sign, SlackApi};
use warden_tests::{free_port, http_client, wait_until};

const API_TOKEN: &str = "ha-slack-api-token";
const BOT_TOKEN: &str = "xoxb-ha-bot-token";
const SIGNING: &str = "ha-signing-secret-0123456789abcdef";
const CHANNEL: &str = "C0INCIDENTS";
const APPROVER: &str = "U0ALICE";

fn config(dir: &std::path::Path, name: &str, port: u16, kubeconfig: &std::path::Path, slack: &str) -> Result<String> {
    let config = json!({
        "server": {"listen": format!("127.0.0.1:{port}"), "api_token": {"env": "WARDEN_API_TOKEN"}},
        "store": {"postgres": {"url_from": {"env": "WARDEN_POSTGRES_URL"}}},
        "kubernetes": {"kubeconfig": kubeconfig.display().to_string(), "context": KUBECONFIG_CONTEXT},
        "leader_election": {"enabled": true, "namespace": "warden", "identity": name,
            "lease_duration": "4s", "renew_deadline": "2s", "retry_period": "500ms"},
        "playbooks": {"dir": dir.join("playbooks").display().to_string()},
        "notify": {
            "slack_app": {
                "bot_token": {"env": "SLACK_BOT_TOKEN"},
                "signing_secret": {"env": "SLACK_SIGNING_SECRET"},
                "channel": CHANNEL,
                "api_url": slack,
                "approvers": {"users": [APPROVER]},
                "timeout": "2s",
            },
            "retry": {"initial_backoff": "100ms", "max_backoff": "1s"},
        },
    });
    Ok(serde_yaml::to_string(&config)?)
}

async fn leads(w: &Warden) -> Result<bool> {
    Ok(metric_value(&w.metrics().await?, "warden_leader", &[]) == Some(1.0))
}

async fn run(w: &Warden, id: i64) -> Result<Value> {
    w.get_json(&format!("/api/v1/runs/{id}")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_press_on_the_follower_is_decided_by_the_leader() -> Result<()> {
    let Some(url) = warden_tests::postgres::fresh_store_url().await? else {
        println!("a_press_on_the_follower_is_decided_by_the_leader: skipped: no PostgreSQL server (WARDEN_TEST_POSTGRES_URL)");
        return Ok(());
    };
    let kube = KubeApi::start().await?;
    let slack = SlackApi::start(BOT_TOKEN, &[CHANNEL]).await?;
    let dir = tempfile::tempdir()?;
    std::fs::create_dir_all(dir.path().join("playbooks"))?;
    std::fs::write(dir.path().join("playbooks/ask-first.yaml"), warden_tests::config::ASK_FIRST_PLAYBOOK)?;
    let kubeconfig = write_kubeconfig(dir.path(), &kube.url())?;
    let envs = [
        ("WARDEN_API_TOKEN", API_TOKEN),
        ("WARDEN_POSTGRES_URL", url.as_str()),
        ("SLACK_BOT_TOKEN", BOT_TOKEN),
        ("SLACK_SIGNING_SECRET", SIGNING),
    ];
    let mut replicas = Vec::new();
    for name in ["warden-a", "warden-b"] {
        let sub = dir.path().join(name);
        std::fs::create_dir_all(&sub)?;
        let port = free_port()?;
        let config = config(dir.path(), name, port, &kubeconfig, &slack.url())?;
        replicas.push(Warden::start(&sub, &config, &envs, port, API_TOKEN).await?);
    }
    let leader = wait_until(Duration::from_secs(20), "one replica leads", async || {
        for (i, w) in replicas.iter().enumerate() {
            if leads(w).await? {
                return Ok(Some(i));
            }
        }
        Ok(None)
    })
    .await?;
    let (leader, follower) = (&replicas[leader], &replicas[1 - leader]);

    // The leader starts the run; its approval request reaches Slack with the buttons.
    let alert = json!({"version": "4", "groupKey": "g", "status": "firing", "receiver": "warden", "alerts": [
        {"status": "firing", "labels": {"alertname": "NeedsApproval"}, "annotations": {}, "startsAt": "2026-11-22T10:00:00Z"}
    ]});
    let r = http_client()
        .post(format!("{}/api/v1/alerts", leader.url()))
        .bearer_auth(API_TOKEN)
        .json(&alert)
        .send()
        .await?;
    let v: Value = r.json().await?;
    let id = v["runs"][0].as_i64().with_context(|| format!("a run: {v}"))?;
    let (message, value) = wait_until(Duration::from_secs(30), "the approval request on Slack", async || {
        Ok(slack.top_level().into_iter().find_map(|m| {
            let value = m.button_value("warden_approve")?;
            value.starts_with(&format!("run:{id}:")).then_some((m, value))
        }))
    })
    .await
    .with_context(|| slack.summary())?;

    // The press reaches the follower.
    let body = button_press("warden_approve", &value, APPROVER, CHANNEL, &message.ts);
    let press = |secret: &str, at: DateTime<Utc>| {
        http_client()
            .post(format!("{}/api/v1/slack/interactions", follower.url()))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("X-Slack-Request-Timestamp", at.timestamp().to_string())
            .header("X-Slack-Signature", sign(secret, at.timestamp(), &body))
            .body(body.clone())
            .send()
    };
    let forged = press("not-the-signing-secret", Utc::now()).await?;
    ensure!(forged.status().as_u16() == 401, "a forged press on the follower: {}", forged.status());
    let sent = Utc::now();
    let clock = Instant::now();
    let answer = press(SIGNING, sent).await?;
    let answered = clock.elapsed();
    ensure!(answer.status().as_u16() == 200, "the follower's answer: {}", answer.status());
    let decided = wait_until(Duration::from_secs(20), "the leader decides the run", async || {
        let v = run(leader, id).await?;
        Ok((v["run"]["status"] == "succeeded").then_some(v))
    })
    .await?;
    let observed = clock.elapsed();
    let who = format!("slack:{APPROVER} ({}-name)", APPROVER.to_lowercase());
    ensure!(decided["run"]["approval"]["decided_by"] == who.as_str(), "{decided}");
    let audit = decided["audit"].as_array().context("audit")?;
    ensure!(
        audit.iter().any(|e| e["kind"] == "approval" && e["actor"] == who.as_str()),
        "the audit names the Slack user: {audit:?}"
    );
    let decided_at: DateTime<Utc> = decided["run"]["approval"]["decided_at"].as_str().context("decided_at")?.parse()?;
    let ms = |d: chrono::Duration| d.num_microseconds().unwrap_or(i64::MAX) as f64 / 1000.0;
    println!(
        "slack press on a follower -> run decided by the leader: {:.1} ms (decided_at - request sent); the follower answered in {:.1} ms; run seen succeeded after {:.1} ms",
        ms(decided_at - sent),
        answered.as_secs_f64() * 1000.0,
        observed.as_secs_f64() * 1000.0
    );
    for w in replicas {
        w.stop_ok().await?;
    }
    Ok(())
}
