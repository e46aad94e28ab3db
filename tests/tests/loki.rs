//! The Loki connector against the local Loki API test server: complete paging
//! through crowded timestamps in both directions, authentication and tenant
//! headers, error mapping (bad LogQL, 429, 500, truncated bodies), labels and
//! series, and the live tail with its reconnect-and-resume guarantee.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use url::Url;
use warden_connectors::loki::{
    Direction, LogEntry, LokiClient, LokiConfig, LokiTail, TailEvent, TailOptions, Truncation,
};
use warden_connectors::{Error, HttpAuth, Secret};
use warden_tests::loki::{LokiEntry, LokiFault, LokiServer};

/// 2023-11-14T22:13:20Z in nanoseconds.
const T0: i64 = 1_700_000_000_000_000_000;
const TAIL_PATH: &str = "/loki/api/v1/tail";
const RANGE_PATH: &str = "/loki/api/v1/query_range";

fn at(ns: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_nanos(ns)
}

fn config(server: &LokiServer) -> Result<LokiConfig> {
    let mut cfg = LokiConfig::new(Url::parse(&server.url())?);
    cfg.timeout = Duration::from_secs(5);
    Ok(cfg)
}

fn client(server: &LokiServer) -> Result<LokiClient> {
    Ok(LokiClient::new(config(server)?)?)
}

/// `(labels, ts, line)` of a client entry, comparable with a server entry.
type Key = (BTreeMap<String, String>, i64, String);

fn key(e: &LogEntry) -> Key {
    ((*e.labels).clone(), e.timestamp_ns, e.line.clone())
}

fn server_key(e: &LokiEntry) -> Key {
    (e.labels.clone(), e.ts_ns, e.line.clone())
}

/// What the client promises: ascending time, ties by labels then line.
fn expected(entries: &[LokiEntry], range: (i64, i64)) -> Vec<Key> {
    let mut keys: Vec<Key> =
        entries.iter().filter(|e| e.ts_ns >= range.0 && e.ts_ns < range.1).map(server_key).collect();
    sort_by_time(&mut keys);
    keys
}

fn sort_by_time(keys: &mut [Key]) {
    keys.sort_by(|a, b| (a.1, &a.0, &a.2).cmp(&(b.1, &b.0, &b.2)));
}

/// Three streams; every seventh timestamp is a burst of 23 entries sharing one
/// nanosecond (more than a page of 10), the others carry 1 to 3 entries, so
/// page boundaries fall inside groups of equal timestamps.
fn crowded_data() -> Vec<LokiEntry> {
    let streams: [&[(&str, &str)]; 3] =
        [&[("app", "api"), ("pod", "api-0")], &[("app", "api"), ("pod", "api-1")], &[("app", "db"), ("pod", "db-0")]];
    let mut out = Vec::new();
    let mut n = 0;
    for k in 0..40i64 {
        let ts = T0 + k * 1_000;
        let count = if k % 7 == 3 { 23 } else { 1 + (k % 3) as usize };
        for i in 0..count {
            let labels = streams[(i + k as usize) % 3];
            out.push(LokiEntry::new(labels, ts, format!("line {n} level=info")));
            n += 1;
        }
    }
    // The same text in two streams at one nanosecond: two different entries.
    out.push(LokiEntry::new(streams[0], T0 + 3_000, "duplicate text"));
    out.push(LokiEntry::new(streams[1], T0 + 3_000, "duplicate text"));
    out
}

#[tokio::test]
async fn query_range_pages_through_crowded_timestamps_in_both_directions() -> Result<()> {
    let data = crowded_data();
    let server = LokiServer::start(data.clone()).await?;
    let loki = client(&server)?;
    let range = (T0, T0 + 3_600_000_000_000);
    let want = expected(&data, range);
    ensure!(want.len() > 150, "the scenario needs many pages");
    for direction in [Direction::Forward, Direction::Backward] {
        let before = server.requests_to(RANGE_PATH).len();
        let result = loki.query_range(r#"{app=~"api|db"}"#, at(range.0), at(range.1), direction, 10).await?;
        let got: Vec<Key> = result.entries.iter().map(key).collect();
        ensure!(got == want, "{direction:?}: got {} entries, want {}", got.len(), want.len());
        ensure!(result.is_complete(), "{direction:?}: {:?}", result.truncated);
        let requests = server.requests_to(RANGE_PATH);
        let sent = &requests[before..];
        ensure!(sent.len() as u32 == result.requests);
        ensure!(sent.len() > want.len() / 10, "{} requests", sent.len());
        ensure!(sent.iter().all(|r| r.status == 200));
        ensure!(sent.iter().all(|r| r.query_param("direction").as_deref() == Some(direction.as_str())));
        // The first page asks for the whole range, in nanoseconds.
        ensure!(sent[0].query_param("start") == Some(range.0.to_string()));
        ensure!(sent[0].query_param("end") == Some(range.1.to_string()));
        ensure!(sent[0].query_param("limit").as_deref() == Some("10"));
        // Crowded timestamps were fetched alone with a larger limit.
        ensure!(sent.iter().any(|r| r.query_param("limit").as_deref() == Some("40")), "no request grew the limit");
    }

    // Start inclusive, end exclusive, with a line filter.
    let sub = (T0 + 3_000, T0 + 10_000);
    let result =
        loki.query_range(r#"{app="api"} |= "level=info""#, at(sub.0), at(sub.1), Direction::Forward, 4).await?;
    let want: Vec<Key> = expected(&data, sub)
        .into_iter()
        .filter(|(labels, _, line)| labels["app"] == "api" && line.contains("level=info"))
        .collect();
    let got: Vec<Key> = result.entries.iter().map(key).collect();
    ensure!(got == want, "got {got:?}\nwant {want:?}");
    ensure!(got.first().map(|k| k.1) == Some(sub.0));
    ensure!(got.iter().all(|k| k.1 < sub.1));
    Ok(())
}

#[tokio::test]
async fn query_range_reports_truncation_instead_of_looping() -> Result<()> {
    let labels = [("app", "api")];
    let mut data: Vec<LokiEntry> =
        (0..50).map(|i| LokiEntry::new(&labels, T0 + 5, format!("same nanosecond {i}"))).collect();
    data.push(LokiEntry::new(&labels, T0 + 1, "first"));
    data.push(LokiEntry::new(&labels, T0 + 9, "last"));
    let server = LokiServer::start(data.clone()).await?;
    server.set_max_limit(16);

    // 50 entries share one nanosecond and Loki accepts at most 16 at once.
    let loki = client(&server)?;
    let result = loki.query_range(r#"{app="api"}"#, at(T0), at(T0 + 100), Direction::Forward, 10).await?;
    match &result.truncated {
        Some(Truncation::TimestampOverflow { timestamp_ns, .. }) => {
            ensure!(*timestamp_ns == T0 + 5)
        }
        other => bail!("expected a timestamp overflow, got {other:?}"),
    }
    ensure!(result.entries.first().map(|e| e.line.as_str()) == Some("first"));
    ensure!(result.entries.iter().all(|e| e.timestamp_ns <= T0 + 5));
    let refused = server.requests_to(RANGE_PATH);
    ensure!(refused.last().map(|r| r.status) == Some(400));

    // A cap on the total.
    server.set_max_limit(5000);
    let mut cfg = config(&server)?;
    cfg.max_entries = 25;
    let capped = LokiClient::new(cfg)?;
    for direction in [Direction::Forward, Direction::Backward] {
        let result = capped.query_range(r#"{app="api"}"#, at(T0), at(T0 + 100), direction, 10).await?;
        ensure!(result.truncated == Some(Truncation::MaxEntries { max: 25 }));
        ensure!(result.entries.len() == 25);
        let edge = match direction {
            Direction::Forward => "first",
            Direction::Backward => "last",
        };
        ensure!(result.entries.iter().any(|e| e.line == edge), "{direction:?} keeps the {edge} entry");
    }
    Ok(())
}

#[tokio::test]
async fn bearer_token_and_tenant_are_sent_everywhere() -> Result<()> {
    let server = LokiServer::start(crowded_data()).await?;
    server.require_bearer("t0k3n");
    server.require_tenant("team-a");
    let mut cfg = config(&server)?;
    cfg.auth = Some(HttpAuth::Bearer(Secret::new("t0k3n".into())));
    cfg.tenant = Some("team-a".into());
    let loki = LokiClient::new(cfg.clone())?;

    let result = loki.query_range(r#"{app="db"}"#, at(T0), at(T0 + 1_000_000), Direction::Forward, 100).await?;
    ensure!(!result.entries.is_empty());
    ensure!(!loki.labels(None, None).await?.is_empty());
    ensure!(!loki.label_values("app", None, None).await?.is_empty());
    ensure!(!loki.series(&[r#"{app="db"}"#], None, None).await?.is_empty());
    let cancel = CancellationToken::new();
    let mut tail = loki.tail(r#"{app="db"}"#, at(T0), fast_tail(), cancel.clone())?;
    match next_event(&mut tail).await? {
        TailEvent::Connected { .. } => {}
        other => bail!("expected Connected, got {other:?}"),
    }
    cancel.cancel();
    ensure!(tail.next().await.is_none());

    let requests = server.requests();
    ensure!(requests.len() == 5, "{requests:?}");
    ensure!(requests.iter().any(|r| r.path == TAIL_PATH && r.websocket && r.status == 101));
    for r in &requests {
        ensure!(r.authorization.as_deref() == Some("Bearer t0k3n"), "{r:?}");
        ensure!(r.tenant.as_deref() == Some("team-a"), "{r:?}");
        ensure!(r.status == 200 || r.status == 101, "{r:?}");
    }

    // Without the tenant: 401, not retryable, Loki's message in the error.
    cfg.tenant = None;
    let no_tenant = LokiClient::new(cfg)?;
    let err = no_tenant
        .query_range(r#"{app="db"}"#, at(T0), at(T0 + 1_000), Direction::Forward, 10)
        .await
        .expect_err("tenant required");
    match &err {
        Error::Http { status: Some(401), message, url } => {
            ensure!(message.contains("no org id"), "{message}");
            ensure!(url.starts_with(&server.url()), "{url}");
        }
        other => bail!("expected a 401, got {other:?}"),
    }
    ensure!(!err.is_retryable());
    ensure!(server.requests().last().is_some_and(|r| r.tenant.is_none()));

    // Basic authentication.
    let mut cfg = config(&server)?;
    cfg.auth = Some(HttpAuth::Basic { username: "warden".into(), password: Secret::new("pw".into()) });
    cfg.tenant = Some("team-a".into());
    let basic = LokiClient::new(cfg)?;
    let err = basic.labels(None, None).await.expect_err("wrong credentials");
    ensure!(matches!(err, Error::Http { status: Some(401), .. }), "{err:?}");
    let last = server.requests().pop().context("a request")?;
    ensure!(last.authorization.as_deref() == Some("Basic d2FyZGVuOnB3"), "{last:?}");
    Ok(())
}

#[tokio::test]
async fn bad_logql_gives_lokis_message() -> Result<()> {
    let server = LokiServer::start(crowded_data()).await?;
    let loki = client(&server)?;
    let err = loki
        .query_range(r#"{app="api""#, at(T0), at(T0 + 1_000), Direction::Forward, 10)
        .await
        .expect_err("unclosed selector");
    let text = err.to_string();
    match &err {
        Error::LokiQuery { status: 400, message, url } => {
            ensure!(message.starts_with("parse error at line 1, col 11"), "{message}");
            ensure!(*url == format!("{}{RANGE_PATH}", server.url()), "{url}");
        }
        other => bail!("expected LokiQuery, got {other:?}"),
    }
    ensure!(text.contains("parse error") && text.contains(RANGE_PATH), "{text}");
    ensure!(!err.is_retryable());

    let query = r#"{app="api"} |= "x""#;
    server.set_fault(LokiFault::BadQuery {
        query: query.into(),
        message: "parse error at line 1, col 13: syntax error: unexpected IDENTIFIER".into(),
    });
    let err =
        loki.query_range(query, at(T0), at(T0 + 1_000), Direction::Backward, 10).await.expect_err("injected bad query");
    ensure!(err.to_string().ends_with("parse error at line 1, col 13: syntax error: unexpected IDENTIFIER"), "{err}");

    // The tail handshake gets the same answer and the tail ends with it.
    let mut tail = loki.tail(query, at(T0), fast_tail(), CancellationToken::new())?;
    match tail.next().await {
        Some(Err(Error::LokiQuery { message, .. })) => {
            ensure!(message.contains("unexpected IDENTIFIER"), "{message}")
        }
        other => bail!("expected the query error, got {other:?}"),
    }
    ensure!(tail.next().await.is_none());
    Ok(())
}

#[tokio::test]
async fn rate_limits_server_errors_and_truncated_bodies_are_mapped() -> Result<()> {
    let server = LokiServer::start(crowded_data()).await?;
    let loki = client(&server)?;
    let query = r#"{app="api"}"#;
    let run = || loki.query_range(query, at(T0), at(T0 + 50_000), Direction::Forward, 1000);

    server.set_fault(LokiFault::RateLimited { retry_after_secs: 3, times: 1 });
    let err = run().await.expect_err("429");
    ensure!(matches!(err, Error::RateLimited { .. }), "{err:?}");
    ensure!(err.retry_after() == Some(Duration::from_secs(3)));
    ensure!(err.is_retryable());

    server.set_fault(LokiFault::ServerError { times: 1 });
    let err = run().await.expect_err("500");
    match &err {
        Error::Http { status: Some(500), message, .. } => ensure!(message.contains("injected failure"), "{message}"),
        other => bail!("expected HTTP 500, got {other:?}"),
    }
    ensure!(err.is_retryable());

    server.set_fault(LokiFault::TruncatedBody { times: 1 });
    let err = run().await.expect_err("truncated");
    match &err {
        Error::Decode { url, message } => {
            ensure!(*url == format!("{}{RANGE_PATH}", server.url()), "{url}");
            ensure!(message.contains("truncated JSON"), "{message}");
        }
        other => bail!("expected Decode, got {other:?}"),
    }
    ensure!(err.to_string().contains(RANGE_PATH));

    // Faults used up: the same call succeeds.
    ensure!(!run().await?.entries.is_empty());

    // Nothing listening: a retryable connection error naming the URL.
    let port = warden_tests::free_port()?;
    let mut cfg = LokiConfig::new(Url::parse(&format!("http://127.0.0.1:{port}"))?);
    cfg.timeout = Duration::from_secs(2);
    let err = LokiClient::new(cfg)?.labels(None, None).await.expect_err("connection refused");
    ensure!(matches!(err, Error::Connect { .. }), "{err:?}");
    ensure!(err.is_retryable());
    ensure!(err.to_string().contains(&format!("127.0.0.1:{port}")), "{err}");
    Ok(())
}

#[tokio::test]
async fn labels_values_and_series() -> Result<()> {
    let mut data = crowded_data();
    data.push(LokiEntry::new(&[("app", "web"), ("region", "eu")], T0 + 10_000_000, "late"));
    let server = LokiServer::start(data).await?;
    let loki = client(&server)?;

    ensure!(loki.labels(None, None).await? == ["app", "pod", "region"]);
    ensure!(loki.labels(Some(at(T0)), Some(at(T0 + 1_000_000))).await? == ["app", "pod"]);
    ensure!(loki.label_values("app", None, None).await? == ["api", "db", "web"]);
    ensure!(loki.label_values("pod", None, None).await? == ["api-0", "api-1", "db-0"]);
    ensure!(loki.label_values("nope", None, None).await?.is_empty());

    let series = loki.series(&[r#"{app="api"}"#], None, None).await?;
    ensure!(series.len() == 2, "{series:?}");
    ensure!(series.iter().all(|s| s["app"] == "api"));
    let series = loki.series(&[r#"{pod="db-0"}"#, r#"{region="eu"}"#], None, None).await?;
    ensure!(series.len() == 2, "{series:?}");
    let sent = server.requests_to("/loki/api/v1/series");
    let matchers: Vec<String> = sent
        .last()
        .context("a series request")?
        .query_params()
        .into_iter()
        .filter(|(k, _)| k == "match[]")
        .map(|(_, v)| v)
        .collect();
    ensure!(matchers == [r#"{pod="db-0"}"#, r#"{region="eu"}"#], "{matchers:?}");
    let err = loki.series(&[r#"{pod="db-0""#], None, None).await.expect_err("bad selector");
    ensure!(matches!(err, Error::LokiQuery { .. }), "{err:?}");
    Ok(())
}

/// Tail options for tests: quick reconnects, bounded failures.
fn fast_tail() -> TailOptions {
    TailOptions {
        backoff_initial: Duration::from_millis(50),
        backoff_max: Duration::from_millis(400),
        max_consecutive_failures: Some(20),
        ..TailOptions::default()
    }
}

async fn next_event(tail: &mut LokiTail) -> Result<TailEvent> {
    match tokio::time::timeout(Duration::from_secs(10), tail.next()).await {
        Err(_) => bail!("no tail event within 10 s"),
        Ok(None) => bail!("the tail ended"),
        Ok(Some(Err(e))) => bail!("the tail failed: {e}"),
        Ok(Some(Ok(event))) => Ok(event),
    }
}

/// Collects `n` entries, returning them with a one-line summary of every other event.
async fn entries(tail: &mut LokiTail, n: usize) -> Result<(Vec<LogEntry>, Vec<String>)> {
    let mut got = Vec::new();
    let mut other = Vec::new();
    while got.len() < n {
        match next_event(tail).await.with_context(|| format!("after {} of {n} entries; events {other:?}", got.len()))? {
            TailEvent::Entry(e) => got.push(e),
            TailEvent::Connected { start_ns, reconnect } => {
                other.push(format!("connected start={start_ns} reconnect={reconnect}"))
            }
            TailEvent::Reconnecting { error, attempt, .. } => other.push(format!("reconnecting #{attempt}: {error}")),
            TailEvent::Dropped(d) => other.push(format!("dropped {}", d.len())),
        }
    }
    Ok((got, other))
}

#[tokio::test]
async fn tail_replays_history_then_live_entries_and_reports_drops() -> Result<()> {
    let api = [("app", "api")];
    let history = vec![
        LokiEntry::new(&api, T0 - 5, "before start"),
        LokiEntry::new(&api, T0, "h1"),
        LokiEntry::new(&api, T0 + 1, "h2"),
        LokiEntry::new(&[("app", "db")], T0 + 1, "other stream"),
    ];
    let server = LokiServer::start(history).await?;
    let mut cfg = config(&server)?;
    cfg.tenant = Some("team-a".into());
    let loki = LokiClient::new(cfg)?;
    let cancel = CancellationToken::new();
    let mut tail = loki.tail(r#"{app="api"}"#, at(T0), fast_tail(), cancel.clone())?;

    match next_event(&mut tail).await? {
        TailEvent::Connected { start_ns, reconnect: false } => ensure!(start_ns == T0),
        other => bail!("expected Connected, got {other:?}"),
    }
    let (got, _) = entries(&mut tail, 2).await?;
    ensure!(got.iter().map(|e| e.line.as_str()).collect::<Vec<_>>() == ["h1", "h2"]);

    server.push(LokiEntry::new(&[("app", "db")], T0 + 2, "not selected"));
    server.push(LokiEntry::new(&api, T0 + 3, "live 1"));
    server.push(LokiEntry::new(&api, T0 + 3, "live 2"));
    let (got, _) = entries(&mut tail, 2).await?;
    ensure!(got.iter().map(|e| e.line.as_str()).collect::<Vec<_>>() == ["live 1", "live 2"]);
    ensure!(tail.resume_point_ns() == Some(T0 + 3));

    let dropped_labels: BTreeMap<String, String> = [("app".to_string(), "api".to_string())].into();
    server.push_dropped(vec![(dropped_labels.clone(), T0 + 4)]);
    match next_event(&mut tail).await? {
        TailEvent::Dropped(list) => {
            ensure!(list.len() == 1);
            ensure!(list[0].timestamp_ns == T0 + 4 && list[0].labels == dropped_labels);
        }
        other => bail!("expected Dropped, got {other:?}"),
    }

    let tail_request = server.requests_to(TAIL_PATH).pop().context("tail request")?;
    ensure!(tail_request.query_param("start") == Some(T0.to_string()));
    ensure!(tail_request.query_param("query").as_deref() == Some(r#"{app="api"}"#));
    ensure!(tail_request.tenant.as_deref() == Some("team-a"));

    cancel.cancel();
    ensure!(tokio::time::timeout(Duration::from_secs(5), tail.next()).await?.is_none());
    warden_tests::wait_until(Duration::from_secs(5), "the server to see the tail close", async || {
        Ok((server.live_tails() == 0).then_some(()))
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn tail_reconnects_and_resumes_without_gap_or_duplicate() -> Result<()> {
    let api = [("app", "api"), ("pod", "a")];
    let api_b = [("app", "api"), ("pod", "b")];
    // Several entries share each timestamp; frames of 4 split those groups.
    let offsets = [1, 1, 2, 2, 2, 3, 3, 3, 3, 4, 5, 5];
    let history: Vec<LokiEntry> = offsets
        .iter()
        .enumerate()
        .map(|(i, off)| {
            let labels: &[(&str, &str)] = if i % 2 == 0 { &api } else { &api_b };
            LokiEntry::new(labels, T0 + off, format!("entry {i}"))
        })
        .collect();
    let server = LokiServer::start(history.clone()).await?;
    server.set_tail_frame_size(4);
    // The first connection is cut after two frames (8 entries, up to ts T0+3).
    server.set_fault(LokiFault::DropTail { after_frames: 2, times: 1 });
    let loki = client(&server)?;
    let cancel = CancellationToken::new();
    let mut tail = loki.tail(r#"{app="api"}"#, at(T0), fast_tail(), cancel.clone())?;

    let (mut got, events) = entries(&mut tail, history.len()).await?;
    ensure!(events.iter().any(|e| e.starts_with("reconnecting #1")), "no reconnection: {events:?}");
    ensure!(
        events.contains(&format!("connected start={} reconnect=true", T0 + 3)),
        "did not resume from the last timestamp: {events:?}"
    );
    ensure!(server.tail_connections() == 2);
    let resumed = server.requests_to(TAIL_PATH);
    ensure!(resumed.len() == 2);
    ensure!(resumed[1].query_param("start") == Some((T0 + 3).to_string()));

    // Live entries after the reconnection, one sharing the timestamp of
    // entries already delivered (new, so delivered too).
    let live = vec![
        LokiEntry::new(&api, T0 + 5, "live at a delivered timestamp"),
        LokiEntry::new(&api_b, T0 + 6, "live later"),
    ];
    server.push_all(live.clone());
    let (more, _) = entries(&mut tail, live.len()).await?;
    got.extend(more);

    let mut want: Vec<Key> = history.iter().chain(live.iter()).map(server_key).collect();
    let got_keys: Vec<Key> = got.iter().map(key).collect();
    let mut sorted_got = got_keys.clone();
    sort_by_time(&mut sorted_got);
    sort_by_time(&mut want);
    ensure!(sorted_got == want, "got {got_keys:#?}\nwant {want:#?}");
    ensure!(got_keys.windows(2).all(|w| w[0].1 <= w[1].1), "entries out of time order: {got_keys:#?}");

    // Nothing else arrives: no duplicate was held back.
    match tokio::time::timeout(Duration::from_millis(300), tail.next()).await {
        Err(_) => {}
        Ok(other) => bail!("unexpected event {other:?}"),
    }
    cancel.cancel();
    ensure!(tail.next().await.is_none());
    Ok(())
}

#[tokio::test]
async fn tail_backs_off_on_429_and_gives_up_when_told() -> Result<()> {
    let server = LokiServer::start(vec![LokiEntry::new(&[("app", "api")], T0, "one")]).await?;
    server.set_fault(LokiFault::RateLimited { retry_after_secs: 1, times: 1 });
    let loki = client(&server)?;
    let mut tail = loki.tail(r#"{app="api"}"#, at(T0), fast_tail(), CancellationToken::new())?;
    match next_event(&mut tail).await? {
        TailEvent::Reconnecting { error: Error::RateLimited { .. }, attempt: 1, retry_in } => {
            ensure!(retry_in >= Duration::from_secs(1), "{retry_in:?}")
        }
        other => bail!("expected a 429 reconnection, got {other:?}"),
    }
    let (got, events) = entries(&mut tail, 1).await?;
    ensure!(got[0].line == "one");
    ensure!(events == ["connected start=1700000000000000000 reconnect=false"], "{events:?}");
    drop(tail);

    // A server that is gone: retryable failures until the configured limit.
    let port = warden_tests::free_port()?;
    let mut cfg = LokiConfig::new(Url::parse(&format!("http://127.0.0.1:{port}"))?);
    cfg.timeout = Duration::from_secs(2);
    let gone = LokiClient::new(cfg)?;
    let options = TailOptions { max_consecutive_failures: Some(2), ..fast_tail() };
    let mut tail = gone.tail(r#"{app="api"}"#, at(T0), options, CancellationToken::new())?;
    for attempt in 1..=2 {
        match next_event(&mut tail).await? {
            TailEvent::Reconnecting { error: Error::Connect { .. }, attempt: a, .. } => ensure!(a == attempt),
            other => bail!("expected a connection failure, got {other:?}"),
        }
    }
    match tokio::time::timeout(Duration::from_secs(10), tail.next()).await? {
        Some(Err(Error::Connect { url, .. })) => {
            ensure!(url.contains(&format!("127.0.0.1:{port}{TAIL_PATH}")), "{url}")
        }
        other => bail!("expected the final connection error, got {other:?}"),
    }
    ensure!(tail.next().await.is_none());
    Ok(())
}
