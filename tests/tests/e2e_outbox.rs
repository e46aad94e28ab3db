//! The outbox cannot be blocked: a message a receiver refuses for good is dead-lettered
//! with its reason while the rest arrive; messages are made valid for their receiver
//! first; order is kept per incident; a flood goes out as digests.
//!
//! E-mail is tested against the real `aiosmtpd` (which refuses lines over 1,000 octets,
//! as real servers do), Slack against `warden_tests::slack`, which answers with Slack's
//! documented webhook errors. The first tests drive the outbox in-process on a store file;
//! the last runs `warden run` and checks the API, the CLI and the metrics.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, ensure, Context, Result};
use chrono::Utc;
use serde_json::{json, Value};
use warden_agent::metrics::Metrics;
use warden_agent::notify::render::subject;
use warden_agent::notify::{render, Channels, NotifyEvent, Outbox, Policy};
use warden_agent::store::{Incident, IncidentSignal, Store};
use warden_agent::timeline::Timeline;
use warden_connectors::slack::SlackWebhook;
use warden_connectors::smtp::{SmtpConfig, SmtpSender, SmtpTls};
use warden_connectors::Secret;
use warden_tests::config::{to_yaml, API_TOKEN};
use warden_tests::procs::{free_port, http_client, metric_value, warden_cli, SmtpServer, Warden};
use warden_tests::slack::{SlackFailure, SlackReceiver};
use warden_tests::wait_until;

fn signal(fingerprint: &str, watch: &str, labels: BTreeMap<String, String>) -> IncidentSignal {
    IncidentSignal {
        fingerprint: fingerprint.into(),
        watch: watch.into(),
        source: "alertmanager".into(),
        severity: "warning".into(),
        title: format!("{watch} firing"),
        labels,
        target: None,
        observed: Some(0.5),
        expected: Some(0.1),
        lower: None,
        upper: None,
        score: None,
        detector: None,
    }
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// 1.4 KB of labels without a space: the subject line they make cannot be folded.
fn long_labels() -> BTreeMap<String, String> {
    (0..70).map(|i| (format!("label_{i:02}"), format!("value-{i:02}-abcdefgh"))).collect()
}

/// Opens an incident with its `opened` notifications for `channels`.
fn open(store: &Store, sig: &IncidentSignal, channels: &[&str]) -> Result<Incident> {
    Ok(store.open_incident(sig, Utc::now(), &json!({}), |i| render(NotifyEvent::Opened, i, None, &[], channels))?)
}

fn policy(digest_threshold: usize) -> Policy {
    Policy {
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        digest_threshold,
        ..Policy::default()
    }
}

/// Passes until nothing is pending (or 60 s), sleeping until the next due time.
async fn drain(outbox: &Outbox) -> Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let pass = outbox.deliver_due(Utc::now()).await;
        if outbox.store.pending_notifications()? == 0 && pass.next_due.is_none() {
            return Ok(());
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the outbox still has {} pending messages after 60s: {:?}",
            outbox.store.pending_notifications()?,
            outbox.store.list_outbox(Some("pending"), None, 5)?
        );
        let wait = pass
            .next_due
            .map(|t| (t - Utc::now()).to_std().unwrap_or_default())
            .unwrap_or_default()
            .clamp(Duration::from_millis(5), Duration::from_secs(2));
        tokio::time::sleep(wait).await;
    }
}

fn notification_lines(path: &Path) -> Result<Vec<Value>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines().map(|l| serde_json::from_str(l).map_err(|e| anyhow!("{l}: {e}"))).collect()
}

fn slack_hook(slack: &SlackReceiver) -> Result<SlackWebhook> {
    Ok(SlackWebhook::new(Secret::new(slack.webhook_url()), Duration::from_secs(5))?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_rejected_message_is_dead_lettered_and_the_next_100_arrive() -> Result<()> {
    let slack = SlackReceiver::start().await?;
    slack.reject_containing("POISON", SlackFailure::InvalidBlocks);
    let dir = tempfile::tempdir()?;
    let store = Arc::new(Store::open(&dir.path().join("warden.db"))?);
    let file = dir.path().join("notifications.jsonl");
    let channels = Channels { slack: Some(slack_hook(&slack)?), file: Some(file.clone()), ..Default::default() };
    let names = channels.names();
    // The refused message is first: strictly in order per channel, all others wait behind it.
    open(&store, &signal("poison", "POISON-watch", labels(&[("pod", "p-0")])), &names)?;
    let mut expected = Vec::new();
    for i in 0..100 {
        // One has labels over Slack's 2,000-character field limit: cut, not refused.
        let l = if i == 50 {
            (0..120).map(|j| (format!("l{j:03}"), "v".repeat(20))).collect()
        } else {
            labels(&[("pod", &format!("checkout-{i:03}")), ("namespace", "shop")])
        };
        let incident = open(&store, &signal(&format!("f{i}"), &format!("checkout-{i:03}"), l), &names)?;
        expected.push(subject(NotifyEvent::Opened, &incident));
    }
    let metrics = Arc::new(Metrics::new());
    let outbox = Outbox::new(store.clone(), channels, policy(1000), metrics.clone(), Timeline::default());
    drain(&outbox).await?;

    let delivered: Vec<String> = slack.delivered().iter().filter_map(|p| p.text().map(str::to_string)).collect();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for t in &delivered {
        *counts.entry(t.as_str()).or_default() += 1;
    }
    for s in &expected {
        ensure!(
            counts.get(s.as_str()) == Some(&1),
            "{s:?} delivered {:?} times\n{}",
            counts.get(s.as_str()),
            slack.summary()
        );
    }
    ensure!(delivered.len() == 100, "{} posts delivered\n{}", delivered.len(), slack.summary());
    // The refused message was tried once: a permanent rejection is not retried.
    let poison: Vec<_> = slack.posts().into_iter().filter(|p| p.body.contains("POISON")).collect();
    ensure!(poison.len() == 1 && poison[0].answer == "invalid_blocks", "{}", slack.summary());
    // The one with 2.4 KB of labels went out, its field cut with a marker.
    let big = slack
        .delivered()
        .into_iter()
        .find(|p| p.text().is_some_and(|t| t.contains("checkout-050")))
        .context("checkout-050 not delivered")?;
    ensure!(big.body.contains("… (truncated)"), "{}", big.body);

    let dead = store.list_outbox(Some("dead"), None, 10)?;
    ensure!(dead.len() == 1, "{dead:?}");
    ensure!(dead[0].channel == "slack" && dead[0].attempts == 1, "{dead:?}");
    let reason = dead[0].reason.clone().unwrap_or_default();
    ensure!(reason.contains("HTTP 400") && reason.contains("invalid_blocks"), "{reason}");

    // The file channel had every opening and a notice about the dead letter.
    let lines = notification_lines(&file)?;
    ensure!(lines.iter().filter(|l| l["event"] == "opened").count() == 101, "{} lines", lines.len());
    let notices: Vec<_> = lines.iter().filter(|l| l["event"] == "dead_letter").collect();
    ensure!(notices.len() == 1, "{notices:?}");
    ensure!(notices[0]["channel"] == "slack", "{}", notices[0]);
    ensure!(
        notices[0]["dead_letters"][0]["reason"].as_str().is_some_and(|r| r.contains("invalid_blocks")),
        "{}",
        notices[0]
    );

    let m = metrics.encode()?;
    ensure!(metric_value(&m, "warden_outbox_dead_letters_total", &[("channel", "slack")]) == Some(1.0), "{m}");
    ensure!(metric_value(&m, "warden_outbox_dead", &[("channel", "slack")]) == Some(1.0), "{m}");
    ensure!(metric_value(&m, "warden_outbox_pending", &[("channel", "slack")]) == Some(0.0), "{m}");
    Ok(())
}

/// The reply of aiosmtpd to a message with a `line_len`-octet header line.
async fn send_raw_line(port: u16, line_len: usize) -> Result<String> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let mut s = BufReader::new(stream);
    let mut reply = String::new();
    async fn read_reply(s: &mut BufReader<tokio::net::TcpStream>, reply: &mut String) -> Result<()> {
        loop {
            reply.clear();
            ensure!(s.read_line(reply).await? > 0, "connection closed");
            if reply.as_bytes().get(3) != Some(&b'-') {
                return Ok(());
            }
        }
    }
    read_reply(&mut s, &mut reply).await?;
    for cmd in ["EHLO test\r\n", "MAIL FROM:<warden@example.test>\r\n", "RCPT TO:<oncall@example.test>\r\n", "DATA\r\n"]
    {
        s.get_mut().write_all(cmd.as_bytes()).await?;
        read_reply(&mut s, &mut reply).await?;
    }
    let data = format!("Subject: {}\r\n\r\nbody\r\n.\r\n", "x".repeat(line_len - "Subject: ".len()));
    s.get_mut().write_all(data.as_bytes()).await?;
    read_reply(&mut s, &mut reply).await?;
    let _ = s.get_mut().write_all(b"QUIT\r\n").await;
    Ok(reply.trim().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_long_subject_is_sent_valid_and_a_refused_message_is_dead_lettered() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut smtp = SmtpServer::reserve(dir.path())?;
    smtp.reject_subjects_containing("REJECT-ME");
    smtp.start().await?;
    // The server refuses what the old outbox sent for a 1.4 KB subject.
    let reply = send_raw_line(smtp.port(), 1_450).await?;
    ensure!(reply.starts_with("500") && reply.contains("too long"), "aiosmtpd answered {reply:?}");

    let store = Arc::new(Store::open(&dir.path().join("warden.db"))?);
    let file = dir.path().join("notifications.jsonl");
    let sender = SmtpSender::new(SmtpConfig {
        host: "127.0.0.1".into(),
        port: smtp.port(),
        tls: SmtpTls::None,
        username: None,
        password: None,
        from: "Warden <warden@example.test>".into(),
        to: vec!["oncall@example.test".into()],
        timeout: Duration::from_secs(10),
    })?;
    let channels = Channels { email: Some(sender), file: Some(file.clone()), ..Default::default() };
    let names = channels.names();
    let long = open(&store, &signal("long", "alertmanager/LongLabels", long_labels()), &names)?;
    let long_subject = subject(NotifyEvent::Opened, &long);
    ensure!(long_subject.len() > 1_400 && !long_subject.contains(", "), "{}", long_subject.len());
    open(&store, &signal("refused", "alertmanager/REJECT-ME", labels(&[("pod", "p")])), &names)?;
    let mut expected = Vec::new();
    for i in 0..100 {
        let incident = open(
            &store,
            &signal(&format!("f{i}"), &format!("alertmanager/Alert{i:03}"), labels(&[("pod", &format!("p-{i}"))])),
            &names,
        )?;
        expected.push(subject(NotifyEvent::Opened, &incident));
    }
    let metrics = Arc::new(Metrics::new());
    let outbox = Outbox::new(store.clone(), channels, policy(1000), metrics.clone(), Timeline::default());
    drain(&outbox).await?;

    let mails = wait_until(Duration::from_secs(20), "101 e-mails in the maildir", async || {
        let m = smtp.messages()?;
        Ok((m.len() >= 101).then_some(m))
    })
    .await?;
    ensure!(mails.len() == 101, "{} mails", mails.len());
    for s in &expected {
        let n = mails.iter().filter(|m| &m.subject == s).count();
        ensure!(n == 1, "{s:?} arrived {n} times");
    }
    let mut ids: Vec<_> = mails.iter().filter_map(|m| m.message_id.clone()).collect();
    ids.sort();
    ids.dedup();
    ensure!(ids.len() == 101, "Message-IDs are not unique: {}", ids.len());
    // The long subject: cut to 200 characters with an ellipsis, whole at the top of the body.
    let long_mail = mails
        .iter()
        .find(|m| m.subject.starts_with("[warden] OPENED warning alertmanager/LongLabels"))
        .context("the long-subject mail")?;
    ensure!(long_mail.subject.chars().count() <= 200 && long_mail.subject.ends_with('…'), "{:?}", long_mail.subject);
    ensure!(long_mail.body.contains(&format!("Subject: {long_subject}")), "{}", long_mail.body);
    ensure!(long_mail.raw.lines().all(|l| l.len() <= 998), "a line over 998 octets");

    let dead = store.list_outbox(Some("dead"), None, 10)?;
    ensure!(dead.len() == 1 && dead[0].channel == "email", "{dead:?}");
    let reason = dead[0].reason.clone().unwrap_or_default();
    ensure!(reason.contains("554") && reason.contains("rejected by policy"), "{reason}");
    let lines = notification_lines(&file)?;
    let notice = lines.iter().find(|l| l["event"] == "dead_letter").context("no dead-letter notice")?;
    ensure!(notice["channel"] == "email" && notice.to_string().contains("554"), "{notice}");
    let m = metrics.encode()?;
    ensure!(metric_value(&m, "warden_outbox_dead_letters_total", &[("channel", "email")]) == Some(1.0), "{m}");
    smtp.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_is_digested_and_a_new_incident_is_not_stuck_behind_it() -> Result<()> {
    let slack = SlackReceiver::start().await?;
    let store = Arc::new(Store::open_in_memory()?);
    let channels = Channels { slack: Some(slack_hook(&slack)?), ..Default::default() };
    let names = channels.names();
    // The backlog: 300 incidents with five messages each, and one with 3,000 actions.
    let now = Utc::now();
    let mut backlog = 0;
    for i in 0..300 {
        let incident = open(
            &store,
            &signal(&format!("f{i}"), &format!("w{i:03}"), labels(&[("pod", &format!("p-{i}"))])),
            &names,
        )?;
        for e in [NotifyEvent::Action, NotifyEvent::Action, NotifyEvent::Action, NotifyEvent::Resolved] {
            store.add_event(
                incident.id,
                now,
                e.as_str(),
                &json!({}),
                &render(e, &incident, Some("scaled"), &[], &names),
            )?;
        }
        backlog += 5;
    }
    let busy = open(&store, &signal("busy", "busy", labels(&[("pod", "busy")])), &names)?;
    for _ in 0..3_000 {
        store.add_event(
            busy.id,
            now,
            "action",
            &json!({}),
            &render(NotifyEvent::Action, &busy, Some("scaled"), &[], &names),
        )?;
    }
    backlog += 3_001;
    let fresh = open(&store, &signal("fresh", "fresh-incident", labels(&[("pod", "new")])), &names)?;
    ensure!(store.pending_notifications()? == backlog + 1);

    let metrics = Arc::new(Metrics::new());
    let outbox = Outbox::new(store.clone(), channels, policy(20), metrics.clone(), Timeline::default());
    drain(&outbox).await?;

    let posts = slack.posts();
    ensure!(posts.iter().all(|p| p.accepted()), "{}", slack.summary());
    // 302 incidents, 50 per digest: 7 posts in all, the new incident in the last.
    ensure!(posts.len() == 7, "{} posts for {backlog} messages\n{}", posts.len(), slack.summary());
    let at =
        posts.iter().position(|p| p.body.contains("fresh-incident")).context("the new incident was never posted")?;
    ensure!(at < 7, "the new incident's message was post {}", at + 1);
    eprintln!(
        "flood: {} messages waiting before the new incident's; it arrived in post {} of {} (delivered strictly in order: post {})",
        backlog,
        at + 1,
        posts.len(),
        backlog + 1
    );
    // Each incident is one line, its events in order.
    let all: String = posts.iter().map(|p| p.body.clone()).collect();
    for i in (0..300).step_by(37) {
        let needle = format!("(opened, action ×3, resolved): [warden] RESOLVED warning w{i:03}");
        ensure!(all.matches(&needle).count() == 1, "{needle} not once in the digests");
    }
    ensure!(all.contains(&format!("#{} (opened, action ×3000)", busy.id)), "the busy incident's line");
    ensure!(
        all.contains(&format!("#{} (opened): [warden] OPENED warning fresh-incident", fresh.id)),
        "the new incident's line"
    );
    // Every message was delivered inside a digest.
    ensure!(store.pending_notifications()? == 0);
    let digested = store.list_outbox(Some("digested"), Some("slack"), 10_000)?;
    ensure!(digested.len() == backlog as usize + 1, "{} digested", digested.len());
    ensure!(digested.iter().all(|m| m.delivered_at.is_some()), "a digested message without delivery time");
    let m = metrics.encode()?;
    ensure!(metric_value(&m, "warden_outbox_digests_total", &[("channel", "slack")]) == Some(7.0), "{m}");
    Ok(())
}

/// A silenced incident's messages do not join a flood's digest: they are marked
/// `silenced`, and the digest lists the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_digest_leaves_out_silenced_incidents() -> Result<()> {
    let slack = SlackReceiver::start().await?;
    let store = Arc::new(Store::open_in_memory()?);
    let channels = Channels { slack: Some(slack_hook(&slack)?), ..Default::default() };
    let names = channels.names();
    let mut incidents = Vec::new();
    for i in 0..6 {
        let name = format!("flood-{i}");
        incidents.push(open(&store, &signal(&name, &name, labels(&[("pod", &name)])), &names)?);
    }
    store.add_silence(
        &warden_agent::store::silences::NewSilence {
            matchers: vec!["watch=flood-2".into()],
            starts_at: Utc::now() - chrono::Duration::minutes(1),
            ends_at: Utc::now() + chrono::Duration::hours(1),
            created_by: "user/alice".into(),
            comment: "known".into(),
        },
        Utc::now(),
    )?;
    let outbox = Outbox::new(store.clone(), channels, policy(3), Arc::new(Metrics::new()), Timeline::default());
    drain(&outbox).await?;
    let posts = slack.delivered();
    let all: String = posts.iter().map(|p| p.json.to_string()).collect();
    ensure!(posts.len() == 1 && all.contains("DIGEST 5 notifications"), "{}", slack.summary());
    for (n, i) in incidents.iter().enumerate() {
        let listed = all.contains(&format!("#{} (opened)", i.id));
        ensure!(listed == (n != 2), "incident {} listed: {listed}\n{all}", i.id);
    }
    let silenced = store.list_outbox(Some("silenced"), None, 10)?;
    ensure!(silenced.len() == 1 && silenced[0].incident_id == Some(incidents[2].id), "{silenced:?}");
    Ok(())
}

/// A route's grouping (`group_by`, `group_wait`, `group_interval`), driven with the
/// outbox's clock: a group's first message waits for the others, later ones keep the
/// interval (across an outbox restart: the store keeps when a group last sent), a group of
/// one goes as it is, an action behind a held message sends its group at once, a silenced
/// incident's held message is not sent, and incidents no grouping route matches go at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_groups_batch_incidents_and_keep_their_windows() -> Result<()> {
    use warden_agent::config::{HumanDuration, RouteConfig};
    use warden_agent::notify::Routes;
    let slack = SlackReceiver::start().await?;
    let dir = tempfile::tempdir()?;
    let store = Arc::new(Store::open(&dir.path().join("warden.db"))?);
    let channels = Channels { slack: Some(slack_hook(&slack)?), ..Default::default() };
    let routes = Routes::new(
        channels.names(),
        &[RouteConfig {
            matchers: vec!["namespace=~.+".into()],
            group_by: Some(vec!["namespace".into()]),
            group_wait: Some(HumanDuration(Duration::from_secs(30))),
            group_interval: Some(HumanDuration(Duration::from_secs(300))),
            ..RouteConfig::default()
        }],
    );
    // Whole seconds: the store keeps milliseconds.
    let t0 = chrono::DateTime::from_timestamp(Utc::now().timestamp() - 3600, 0).context("time")?;
    let at = |s: i64| t0 + chrono::Duration::seconds(s);
    let open_at = |name: &str, ns: Option<&str>, s: i64| -> Result<Incident> {
        let l = match ns {
            Some(ns) => labels(&[("namespace", ns), ("pod", name)]),
            None => labels(&[("pod", name)]),
        };
        Ok(store.open_incident(&signal(name, &format!("{name}-watch"), l), at(s), &json!({}), |i| {
            routes.grouped(i, render(NotifyEvent::Opened, i, None, &[], &routes.for_incident(i)))
        })?)
    };
    let resolve_at = |i: &Incident, s: i64| -> Result<()> {
        store.resolve_incident(i.id, at(s), &json!({}), None, |i| {
            routes.grouped(i, render(NotifyEvent::Resolved, i, None, &[], &routes.for_incident(i)))
        })?;
        Ok(())
    };
    let texts = || -> Vec<String> { slack.delivered().iter().filter_map(|p| p.text().map(str::to_string)).collect() };
    let outbox = |store: &Arc<Store>, channels: &Channels| {
        Outbox::new(store.clone(), channels.clone(), policy(1000), Arc::new(Metrics::new()), Timeline::default())
    };
    let first = outbox(&store, &channels);

    let a = open_at("a", Some("payments"), 0)?;
    let c = open_at("c", Some("shop"), 5)?;
    let b = open_at("b", Some("payments"), 10)?;
    let d = open_at("d", None, 11)?;
    let pass = first.deliver_due(at(12)).await;
    ensure!(pass.delivered == 1 && pass.next_due == Some(at(30)), "only the ungrouped incident: {pass:?}");
    ensure!(texts() == [subject(NotifyEvent::Opened, &d)], "{}", slack.summary());

    // payments' window ends: one message for a and b.
    let pass = first.deliver_due(at(30)).await;
    ensure!(pass.delivered == 1 && pass.next_due == Some(at(35)), "{pass:?}");
    let group = slack.delivered().last().map(|p| p.json.clone()).context("group message")?;
    let text = group.to_string();
    ensure!(
        group["text"] == r#"[warden] GROUP 2 incident(s): namespace="payments""#
            && text.contains(&format!("#{} (opened)", a.id))
            && text.contains(&format!("#{} (opened)", b.id)),
        "{group}"
    );
    // shop's group of one goes as it is.
    ensure!(first.deliver_due(at(35)).await.delivered == 1);
    ensure!(texts().last() == Some(&subject(NotifyEvent::Opened, &c)), "{}", slack.summary());

    // a resolves within payments' interval: held until 30 s + 5 min.
    resolve_at(&a, 60)?;
    let pass = first.deliver_due(at(61)).await;
    ensure!(pass.delivered == 0 && pass.next_due == Some(at(330)), "{pass:?}");
    ensure!(first.deliver_due(at(330)).await.delivered == 1);
    ensure!(texts().last() == Some(&subject(NotifyEvent::Resolved, &a)), "{}", slack.summary());

    // A new outbox (a restart, another leader) keeps the interval: the store has it.
    let second = outbox(&store, &channels);
    resolve_at(&b, 340)?;
    let pass = second.deliver_due(at(400)).await;
    ensure!(pass.delivered == 0 && pass.next_due == Some(at(630)), "{pass:?}");
    ensure!(second.deliver_due(at(630)).await.delivered == 1);

    // An action of a held incident does not wait behind it: the group goes at once.
    let e = open_at("e", Some("payments"), 700)?;
    let pass = second.deliver_due(at(701)).await;
    ensure!(pass.delivered == 0 && pass.next_due == Some(at(930)), "{pass:?}");
    let action = render(NotifyEvent::Action, &e, Some("scaled shop/e to 3"), &[], &routes.for_incident(&e));
    store.add_event(e.id, at(702), "action", &json!({}), &routes.grouped(&e, action))?;
    let pass = second.deliver_due(at(703)).await;
    ensure!(pass.delivered == 2, "{pass:?}");
    let last: Vec<String> = texts().into_iter().rev().take(2).rev().collect();
    ensure!(
        last == [subject(NotifyEvent::Opened, &e), subject(NotifyEvent::Action, &e)],
        "in order: {}",
        slack.summary()
    );

    // A silence made while f's message is held: it is never sent.
    let f = open_at("f", Some("shop"), 800)?;
    store.add_silence(
        &warden_agent::store::silences::NewSilence {
            matchers: vec!["watch=f-watch".into()],
            starts_at: at(800),
            ends_at: Utc::now() + chrono::Duration::hours(1),
            created_by: "user/alice".into(),
            comment: "known".into(),
        },
        at(801),
    )?;
    let sent = texts().len();
    let pass = second.deliver_due(at(830)).await;
    ensure!(pass.delivered == 0 && texts().len() == sent, "{pass:?}");
    let silenced = store.list_outbox(Some("silenced"), None, 10)?;
    ensure!(silenced.len() == 1 && silenced[0].incident_id == Some(f.id), "{silenced:?}");
    ensure!(store.pending_notifications()? == 0);
    ensure!(slack.posts().iter().all(|p| p.accepted()), "{}", slack.summary());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outages_and_rate_limits_keep_each_incidents_order() -> Result<()> {
    let slack = SlackReceiver::start().await?;
    let store = Arc::new(Store::open_in_memory()?);
    let channels = Channels { slack: Some(slack_hook(&slack)?), ..Default::default() };
    let names = channels.names();
    let now = Utc::now();
    let mut subjects = Vec::new();
    for name in ["alpha", "beta"] {
        let i = open(&store, &signal(name, name, labels(&[("pod", name)])), &names)?;
        store.add_event(
            i.id,
            now,
            "action",
            &json!({}),
            &render(NotifyEvent::Action, &i, Some("scaled"), &[], &names),
        )?;
        store.resolve_incident(i.id, now, &json!({}), None, |i| render(NotifyEvent::Resolved, i, None, &[], &names))?;
        subjects.push([NotifyEvent::Opened, NotifyEvent::Action, NotifyEvent::Resolved].map(|e| subject(e, &i)));
    }
    // Slack answers 500 twice, then asks to wait 1 s.
    slack.fail_next(2, SlackFailure::ServerError);
    let outbox = Outbox::new(store.clone(), channels, policy(1000), Arc::new(Metrics::new()), Timeline::default());
    let pass = outbox.deliver_due(Utc::now()).await;
    ensure!(pass.delivered == 0 && pass.dead_lettered == 0, "{pass:?}");
    drain(&outbox).await?;
    slack.fail_next(1, SlackFailure::RateLimitedFor(1));
    let gamma = open(&store, &signal("gamma", "gamma", labels(&[("pod", "gamma")])), &names)?;
    store.add_event(
        gamma.id,
        now,
        "action",
        &json!({}),
        &render(NotifyEvent::Action, &gamma, Some("scaled"), &[], &names),
    )?;
    drain(&outbox).await?;

    let posts = slack.posts();
    let texts: Vec<String> = slack.delivered().iter().filter_map(|p| p.text().map(str::to_string)).collect();
    for s in &subjects {
        let pos: Vec<usize> =
            s.iter().map(|x| texts.iter().position(|t| t.starts_with(x.as_str())).unwrap_or(usize::MAX)).collect();
        ensure!(
            pos.windows(2).all(|w| w[0] < w[1]) && pos[2] != usize::MAX,
            "out of order: {pos:?}\n{}",
            slack.summary()
        );
    }
    ensure!(texts.len() == 8, "{}", slack.summary());
    ensure!(store.list_outbox(Some("dead"), None, 10)?.is_empty(), "an outage dead-lettered a message");
    // Retry-After was honoured: the next post came a second after the 429.
    let limited = posts.iter().position(|p| p.status == 429).context("no 429")?;
    let gap = posts.get(limited + 1).context("nothing after the 429")?.at - posts[limited].at;
    ensure!(gap >= Duration::from_millis(900), "retried {gap:?} after a 429 with Retry-After: 1");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_answers_pause_the_channel_and_are_not_blamed_on_the_message() -> Result<()> {
    let slack = SlackReceiver::start().await?;
    slack.set_delay(Duration::from_millis(800));
    let store = Arc::new(Store::open_in_memory()?);
    let hook = SlackWebhook::new(Secret::new(slack.webhook_url()), Duration::from_millis(200))?;
    let channels = Channels { slack: Some(hook), ..Default::default() };
    let names = channels.names();
    for name in ["one", "two"] {
        open(&store, &signal(name, name, labels(&[("pod", name)])), &names)?;
    }
    let outbox = Outbox::new(store.clone(), channels, policy(1000), Arc::new(Metrics::new()), Timeline::default());
    let pass = outbox.deliver_due(Utc::now()).await;
    // The first post timed out: the channel pauses, the second message is not tried.
    ensure!(pass.delivered == 0 && pass.dead_lettered == 0, "{pass:?}");
    // Slack still processes the post the client gave up on; nothing else was posted.
    wait_until(Duration::from_secs(10), "the slow post processed", async || {
        Ok((!slack.posts().is_empty()).then_some(()))
    })
    .await?;
    ensure!(slack.posts().len() == 1, "{}", slack.summary());
    slack.set_delay(Duration::ZERO);
    drain(&outbox).await?;
    // Both arrive; the slow one may arrive twice (the first answer came after the
    // timeout): delivery is at least once.
    for name in ["one", "two"] {
        let n = slack.delivered().iter().filter(|p| p.text().is_some_and(|t| t.contains(&format!(" {name} ")))).count();
        ensure!((1..=2).contains(&n), "{name} delivered {n} times\n{}", slack.summary());
    }
    ensure!(store.list_outbox(Some("dead"), None, 10)?.is_empty(), "a slow receiver dead-lettered a message");
    // The timed-out message was tried again, not given up on.
    let delivered = store.list_outbox(Some("delivered"), None, 10)?;
    let one = delivered.iter().find(|m| m.subject.contains(" one ")).context("`one` not delivered")?;
    ensure!(one.attempts >= 2, "{one:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_webhook_dead_letters_the_message_tried_and_the_rest_flow_once_restored() -> Result<()> {
    let slack = SlackReceiver::start().await?;
    let store = Arc::new(Store::open_in_memory()?);
    let channels = Channels { slack: Some(slack_hook(&slack)?), ..Default::default() };
    let names = channels.names();
    for name in ["one", "two", "three"] {
        open(&store, &signal(name, name, labels(&[("pod", name)])), &names)?;
    }
    slack.fail_next(1, SlackFailure::NoService);
    let outbox = Outbox::new(store.clone(), channels, policy(1000), Arc::new(Metrics::new()), Timeline::default());
    let first = outbox.deliver_due(Utc::now()).await;
    // One dead letter, and the channel waits instead of burning through the queue.
    ensure!(first.dead_lettered == 1 && first.delivered == 0, "{first:?}");
    ensure!(first.next_due.is_some(), "{first:?}");
    ensure!(slack.posts().len() == 1, "posted on after no_service:\n{}", slack.summary());
    drain(&outbox).await?;
    ensure!(slack.delivered().len() == 2, "{}", slack.summary());
    let dead = store.list_outbox(Some("dead"), None, 10)?;
    ensure!(dead.len() == 1 && dead[0].reason.as_deref().is_some_and(|r| r.contains("no_service")), "{dead:?}");
    // An operator sends it again once the webhook works.
    store.retry_dead(dead[0].id, Utc::now())?;
    drain(&outbox).await?;
    ensure!(slack.delivered().len() == 3, "{}", slack.summary());
    ensure!(store.list_outbox(Some("dead"), None, 10)?.is_empty());
    Ok(())
}

fn alert(name: &str, extra: &[(&str, &str)]) -> Value {
    let mut labels = serde_json::Map::new();
    labels.insert("alertname".into(), json!(name));
    for (k, v) in extra {
        labels.insert(k.to_string(), json!(v));
    }
    json!({"status": "firing", "labels": labels, "annotations": {}, "startsAt": "2026-11-22T10:00:00Z"})
}

/// `warden run` with Slack and a file channel: a refused message shows up as a dead letter
/// in the API, the CLI and the metrics, is reported on the file channel, and an operator's
/// retry delivers it once Slack accepts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_in_the_api_cli_and_metrics_and_an_operator_retry() -> Result<()> {
    let slack = SlackReceiver::start().await?;
    // Slack refuses the OPENED message of one alert (its analysis message goes through).
    let poison = "[warden] OPENED warning alertmanager/PoisonAlert";
    slack.reject_containing(poison, SlackFailure::InvalidBlocks);
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let db = dir.path().join("warden.db");
    let file = dir.path().join("notifications.jsonl");
    let config = json!({
        "store": {"sqlite": db.display().to_string()},
        "server": {"listen": format!("127.0.0.1:{port}"), "api_token": {"env": "WARDEN_API_TOKEN"}, "viewer_token": {"env": "WARDEN_VIEWER_TOKEN"}},
        "notify": {
            "slack": {"webhook_url": {"env": "SLACK_WEBHOOK_URL"}},
            "file": {"path": file.display().to_string()},
            "retry": {"initial_backoff": "100ms", "max_backoff": "1s", "max_attempts": 5, "max_age": "1h"},
            "digest": {"threshold": 50},
        },
    });
    let url = slack.webhook_url();
    let envs =
        [("WARDEN_API_TOKEN", API_TOKEN), ("WARDEN_VIEWER_TOKEN", "viewer-token"), ("SLACK_WEBHOOK_URL", url.as_str())];
    let warden = Warden::start(dir.path(), &to_yaml(&config)?, &envs, port, API_TOKEN).await?;
    let client = http_client();
    let mut alerts = vec![alert("PoisonAlert", &[])];
    alerts.extend((0..10).map(|i| alert(&format!("Alert{i}"), &[("pod", &format!("p-{i}"))])));
    let body = json!({"version": "4", "groupKey": "g", "status": "firing", "receiver": "warden", "alerts": alerts});
    let r = client.post(format!("{}/api/v1/alerts", warden.url())).bearer_auth(API_TOKEN).json(&body).send().await?;
    ensure!(r.status().is_success(), "{}", r.text().await?);

    wait_until(Duration::from_secs(30), "10 alerts delivered to Slack", async || {
        Ok((slack.delivered_with_prefix("[warden] OPENED").len() == 10).then_some(()))
    })
    .await
    .with_context(|| slack.summary())?;
    let dead = wait_until(Duration::from_secs(30), "a dead letter in the API", async || {
        let v = warden.get_json("/api/v1/outbox/dead").await?;
        let d = v["dead_letters"].as_array().cloned().unwrap_or_default();
        Ok((!d.is_empty()).then_some(d))
    })
    .await?;
    ensure!(dead.len() == 1, "{dead:?}");
    let id = dead[0]["id"].as_i64().context("id")?;
    ensure!(
        dead[0]["channel"] == "slack" && dead[0]["reason"].as_str().is_some_and(|r| r.contains("invalid_blocks")),
        "{}",
        dead[0]
    );
    let summary = warden.get_json("/api/v1/outbox").await?;
    ensure!(
        summary["channels"].as_array().is_some_and(|c| c.iter().any(|c| c["channel"] == "slack" && c["dead"] == 1)),
        "{summary}"
    );
    let bad = warden.get("/api/v1/outbox?state=lost").await?;
    ensure!(bad.status() == 400, "unknown state: {}", bad.status());
    let missing =
        client.post(format!("{}/api/v1/outbox/999999/discard", warden.url())).bearer_auth(API_TOKEN).send().await?;
    ensure!(missing.status() == 404, "discarding an unknown message: {}", missing.status());
    // The file channel was told.
    wait_until(Duration::from_secs(20), "a dead-letter notice in the file", async || {
        Ok(notification_lines(&file).ok().and_then(|l| l.into_iter().find(|l| l["event"] == "dead_letter")))
    })
    .await?;
    let metrics = warden.metrics().await?;
    ensure!(
        metric_value(&metrics, "warden_outbox_dead_letters_total", &[("channel", "slack")]) == Some(1.0),
        "{metrics}"
    );
    ensure!(metric_value(&metrics, "warden_outbox_dead", &[("channel", "slack")]) == Some(1.0), "{metrics}");
    ensure!(
        metric_value(&metrics, "warden_outbox_oldest_pending_seconds", &[("channel", "slack")]).is_some(),
        "{metrics}"
    );

    // The CLI shows it, with the reason.
    let db_arg = db.display().to_string();
    let out = warden_cli(&["outbox", "dead", "--db", &db_arg], &[]).await?;
    ensure!(
        out.status.success() && out.stdout.contains("invalid_blocks") && out.stdout.contains(&id.to_string()),
        "{out:?}"
    );

    // A viewer may not retry; the operator may, and once Slack accepts it, it arrives.
    let retry = format!("{}/api/v1/outbox/{id}/retry", warden.url());
    let r = client.post(&retry).bearer_auth("viewer-token").send().await?;
    ensure!(r.status() == 403, "viewer retry: {}", r.status());
    slack.clear_rejections();
    let r = client.post(&retry).bearer_auth(API_TOKEN).send().await?;
    ensure!(r.status() == 200, "operator retry: {} {}", r.status(), r.text().await?);
    wait_until(Duration::from_secs(20), "the retried message delivered", async || {
        Ok((slack.delivered_with_prefix(poison).len() == 1).then_some(()))
    })
    .await?;
    let r = client.post(&retry).bearer_auth(API_TOKEN).send().await?;
    ensure!(r.status() == 409, "retrying a delivered message: {}", r.status());
    let v = warden.get_json("/api/v1/outbox/dead").await?;
    ensure!(v["dead_letters"].as_array().is_some_and(|d| d.is_empty()), "{v}");
    warden.stop_ok().await
}
