//! Unit tests of the Loki client without a server: response parsing, paging decisions,
//! de-duplication, tail frames and backoff.

use super::*;
use std::hash::{DefaultHasher, Hasher};

const T: &str = "http://loki/loki/api/v1/query_range";

fn labels(pairs: &[(&str, &str)]) -> Arc<Labels> {
    Arc::new(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
}

fn entry(l: &Arc<Labels>, ts: i64, line: &str) -> LogEntry {
    LogEntry { timestamp_ns: ts, labels: l.clone(), line: line.to_string() }
}

#[test]
fn parses_streams_with_and_without_metadata() {
    let body = br#"{"status":"success","data":{"resultType":"streams","result":[
            {"stream":{"app":"api"},"values":[["1700000000000000001","a"],["1700000000000000002","b",{"trace_id":"x"}]]},
            {"stream":{"app":"db"},"values":[["1700000000000000001","c"]]}],
            "stats":{"summary":{"bytesProcessedPerSecond":1}}},"warnings":["w1"]}"#;
    let (entries, warnings) = parse_query_range(body, T).expect("valid body");
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[1].timestamp_ns, 1_700_000_000_000_000_002);
    assert_eq!(entries[1].line, "b");
    assert_eq!(entries[2].labels.get("app").map(String::as_str), Some("db"));
    assert!(Arc::ptr_eq(&entries[0].labels, &entries[1].labels));
    assert_eq!(warnings, vec!["w1".to_string()]);
}

#[test]
fn rejects_metric_results_and_bad_values() {
    let body = br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
    let err = parse_query_range(body, T).expect_err("matrix");
    assert!(matches!(err, Error::Decode { .. }));
    assert!(err.to_string().contains("matrix"), "{err}");

    let body = br#"{"status":"success","data":{"resultType":"streams","result":[
            {"stream":{},"values":[["1","ok"],["soon","bad"]]}]}}"#;
    let err = parse_query_range(body, T).expect_err("bad timestamp");
    let text = err.to_string();
    assert!(text.contains("values[1]") && text.contains("soon"), "{text}");

    let body = br#"{"status":"success","data":{"resultType":"streams","result":[
            {"stream":{},"values":[["1"]]}]}}"#;
    assert!(parse_query_range(body, T).is_err());
}

#[test]
fn truncated_body_is_a_decode_error_naming_the_url() {
    let err = parse_query_range(br#"{"status":"success","data":{"resultType":"str"#, T).expect_err("truncated");
    match &err {
        Error::Decode { url, message } => {
            assert_eq!(url, T);
            assert!(message.contains("truncated JSON"), "{message}");
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert!(!err.is_retryable());
}

#[test]
fn maps_statuses() {
    let err = status_error(400, None, b"parse error at line 1, col 5: syntax error: unexpected IDENTIFIER\n", T);
    match &err {
        Error::LokiQuery { status, message, .. } => {
            assert_eq!(*status, 400);
            assert_eq!(message, "parse error at line 1, col 5: syntax error: unexpected IDENTIFIER");
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert!(!err.is_retryable());
    let err = status_error(429, Some(Duration::from_secs(7)), b"slow down", T);
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
    assert!(err.is_retryable());
    let err = status_error(503, None, b"", T);
    assert!(err.is_retryable());
    assert!(err.to_string().contains("Service Unavailable"), "{err}");
    let err = status_error(400, None, br#"{"status":"error","error":"bad thing"}"#, T);
    assert!(err.to_string().ends_with("bad thing"), "{err}");
    let err = status_error(401, None, b"no org id", T);
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("no org id"), "{err}");
}

#[test]
fn envelope_errors() {
    let err = parse_envelope::<Vec<String>>(br#"{"status":"error","error":"nope"}"#, T).expect_err("error status");
    assert!(matches!(err, Error::LokiQuery { .. }), "{err:?}");
    let err = parse_envelope::<Vec<String>>(br#"{"status":"success"}"#, T).expect_err("no data");
    assert!(err.to_string().contains("data"), "{err}");
    let (data, _) = parse_envelope::<Vec<String>>(br#"{"status":"success","data":["a","b"]}"#, T).expect("valid");
    assert_eq!(data, vec!["a".to_string(), "b".to_string()]);
}

/// An in-memory Loki: `[start, end)`, `limit`, direction, a maximum limit, and
/// an arbitrary (seeded) order among entries sharing a timestamp, answered in
/// shuffled order.
fn fake_loki(
    all: &[LogEntry],
    req: PageRequest,
    direction: Direction,
    max_limit: u32,
    seed: u64,
) -> std::result::Result<Vec<LogEntry>, ()> {
    if req.limit > max_limit {
        return Err(());
    }
    let noise = |e: &LogEntry, salt: u64| {
        let mut h = DefaultHasher::new();
        (seed, salt, &e.line, e.timestamp_ns).hash(&mut h);
        h.finish()
    };
    let mut hits: Vec<LogEntry> =
        all.iter().filter(|e| e.timestamp_ns >= req.start_ns && e.timestamp_ns < req.end_ns).cloned().collect();
    hits.sort_by_key(|e| {
        let ts = match direction {
            Direction::Forward => e.timestamp_ns,
            Direction::Backward => -e.timestamp_ns,
        };
        (ts, noise(e, 1))
    });
    hits.truncate(req.limit as usize);
    hits.sort_by_key(|e| noise(e, 2));
    Ok(hits)
}

fn run_pager(
    all: &[LogEntry],
    direction: Direction,
    range: (i64, i64),
    limit: u32,
    max_entries: usize,
    max_limit: u32,
) -> (Vec<LogEntry>, Option<Truncation>, u32) {
    let mut pager = Pager::new(direction, range.0, range.1, limit, max_entries);
    let mut requests = 0;
    while let Some(req) = pager.next_request() {
        requests += 1;
        assert!(requests < 10_000, "paging does not terminate");
        match fake_loki(all, req, direction, max_limit, u64::from(requests)) {
            Ok(page) => pager.accept(req, page).expect("consistent page"),
            Err(()) => {
                assert!(pager.is_growing_limit(), "refused a normal page");
                pager.limit_refused();
            }
        }
    }
    let (entries, truncated) = pager.finish();
    (entries, truncated, requests)
}

fn sorted(mut v: Vec<LogEntry>) -> Vec<LogEntry> {
    v.sort_by(|a, b| {
        a.timestamp_ns.cmp(&b.timestamp_ns).then_with(|| a.labels.cmp(&b.labels)).then_with(|| a.line.cmp(&b.line))
    });
    v
}

/// Two streams; bursts of entries sharing one nanosecond, some larger than a page.
fn crowded_data() -> Vec<LogEntry> {
    let a = labels(&[("app", "api")]);
    let b = labels(&[("app", "db")]);
    let mut all = Vec::new();
    let mut n = 0;
    for (ts, count) in [(10, 1), (11, 3), (12, 7), (20, 2), (21, 25), (22, 1), (30, 4), (31, 6)] {
        for i in 0..count {
            let l = if i % 2 == 0 { &a } else { &b };
            all.push(entry(l, ts, &format!("line {n}")));
            n += 1;
        }
    }
    // A line repeated verbatim in another stream at the same time is a different entry.
    all.push(entry(&b, 12, "line 3"));
    all
}

#[test]
fn pages_every_entry_exactly_once_in_both_directions() {
    let all = crowded_data();
    let expected = sorted(all.clone());
    for direction in [Direction::Forward, Direction::Backward] {
        for limit in [1, 2, 3, 4, 5, 7, 10, 100] {
            let (entries, truncated, _) = run_pager(&all, direction, (0, 100), limit, 10_000, 5000);
            assert_eq!(truncated, None, "{direction:?} limit {limit}");
            assert_eq!(entries, expected, "{direction:?} limit {limit}");
        }
    }
}

#[test]
fn range_is_start_inclusive_end_exclusive() {
    let all = crowded_data();
    let expected: Vec<LogEntry> =
        sorted(all.clone()).into_iter().filter(|e| (12..30).contains(&e.timestamp_ns)).collect();
    for direction in [Direction::Forward, Direction::Backward] {
        let (entries, truncated, _) = run_pager(&all, direction, (12, 30), 3, 10_000, 5000);
        assert_eq!(truncated, None);
        assert_eq!(entries, expected, "{direction:?}");
    }
    let (entries, _, requests) = run_pager(&all, Direction::Forward, (5, 5), 3, 10, 5000);
    assert!(entries.is_empty());
    assert_eq!(requests, 0);
}

#[test]
fn a_page_of_one_timestamp_grows_the_limit() {
    let l = labels(&[("app", "api")]);
    let all: Vec<LogEntry> = (0..50).map(|i| entry(&l, 7, &format!("same ns {i}"))).collect();
    for direction in [Direction::Forward, Direction::Backward] {
        let (entries, truncated, requests) = run_pager(&all, direction, (0, 10), 4, 1000, 5000);
        assert_eq!(truncated, None);
        assert_eq!(entries, sorted(all.clone()));
        assert!(requests <= 6, "{requests} requests");
    }
}

#[test]
fn refused_limit_is_reported_as_timestamp_overflow() {
    let l = labels(&[("app", "api")]);
    let mut all: Vec<LogEntry> = (0..50).map(|i| entry(&l, 7, &format!("same ns {i}"))).collect();
    all.push(entry(&l, 3, "before"));
    all.push(entry(&l, 9, "after"));
    let (entries, truncated, _) = run_pager(&all, Direction::Forward, (0, 10), 4, 1000, 16);
    assert_eq!(truncated, Some(Truncation::TimestampOverflow { timestamp_ns: 7, limit: 16 }));
    assert_eq!(entries.first().map(|e| e.line.as_str()), Some("before"));
    assert!(entries.iter().all(|e| e.timestamp_ns <= 7));
    let unique: HashSet<_> = entries.iter().map(EntryKey::of).collect();
    assert_eq!(unique.len(), entries.len(), "no duplicates");
}

#[test]
fn max_entries_truncates_at_the_right_end() {
    let all = crowded_data();
    let expected = sorted(all.clone());
    let (entries, truncated, _) = run_pager(&all, Direction::Forward, (0, 100), 4, 10, 5000);
    assert_eq!(truncated, Some(Truncation::MaxEntries { max: 10 }));
    assert_eq!(entries.len(), 10);
    assert!(entries.iter().all(|e| e.timestamp_ns <= expected[9].timestamp_ns));
    let (entries, truncated, _) = run_pager(&all, Direction::Backward, (0, 100), 4, 10, 5000);
    assert_eq!(truncated, Some(Truncation::MaxEntries { max: 10 }));
    assert_eq!(entries.len(), 10);
    let tenth_latest = expected[expected.len() - 10].timestamp_ns;
    assert!(entries.iter().all(|e| e.timestamp_ns >= tenth_latest));
    // Exactly max_entries in a range that fits in one page is complete.
    let (entries, truncated, _) = run_pager(&all, Direction::Forward, (0, 100), 500, all.len(), 5000);
    assert_eq!(truncated, None);
    assert_eq!(entries.len(), all.len());
}

#[test]
fn full_page_outside_the_range_is_an_error() {
    let l = labels(&[]);
    let mut pager = Pager::new(Direction::Forward, 100, 200, 2, 10);
    let req = pager.next_request().expect("a request");
    let err = pager.accept(req, vec![entry(&l, 5, "x"), entry(&l, 6, "y")]).expect_err("nothing in range");
    assert!(err.contains("none inside"), "{err}");
}

#[test]
fn resume_drops_only_what_was_delivered() {
    let a = labels(&[("app", "api")]);
    let b = labels(&[("app", "db")]);
    let mut r = Resume::default();
    assert!(r.admit(&entry(&a, 10, "x")));
    assert!(r.admit(&entry(&b, 10, "x")));
    assert!(r.admit(&entry(&a, 9, "late other stream")));
    assert_eq!(r.ts, Some(10));
    // Replayed after a reconnection from ts 10:
    assert!(!r.admit(&entry(&a, 10, "x")));
    assert!(!r.admit(&entry(&b, 10, "x")));
    assert!(r.admit(&entry(&a, 10, "y")), "new entry at the resume timestamp");
    assert!(r.admit(&entry(&a, 11, "z")));
    assert!(!r.admit(&entry(&a, 11, "z")));
    assert_eq!(r.ts, Some(11));
    assert_eq!(r.keys.len(), 1, "only the latest timestamp is remembered");
}

#[test]
fn parses_tail_frames() {
    let text = br#"{"streams":[{"stream":{"app":"api"},"values":[["20","b"],["10","a"]]}],
            "dropped_entries":[{"labels":{"app":"api"},"timestamp":"15"}]}"#;
    let frame = parse_tail_frame(text, "ws://loki/loki/api/v1/tail").expect("valid frame");
    let lines: Vec<&str> = frame.entries.iter().map(|e| e.line.as_str()).collect();
    assert_eq!(lines, ["a", "b"]);
    assert_eq!(frame.dropped.len(), 1);
    assert_eq!(frame.dropped[0].timestamp_ns, 15);
    let frame = parse_tail_frame(br#"{"streams":null}"#, "ws://x").expect("empty frame");
    assert!(frame.entries.is_empty() && frame.dropped.is_empty());
    let err = parse_tail_frame(br#"{"streams":[{"stream":{},"values":[["1""#, "ws://x").expect_err("truncated");
    assert!(err.to_string().contains("truncated JSON"), "{err}");
}

#[test]
fn client_and_tail_can_move_between_tasks() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<LokiClient>();
    send::<LokiTail>();
    send::<TailEvent>();
}

#[test]
fn backoff_grows_and_is_capped() {
    let initial = Duration::from_millis(100);
    let max = Duration::from_secs(2);
    for attempt in 1..40 {
        let d = backoff_delay(initial, max, attempt);
        let exp = attempt.saturating_sub(1).min(20);
        let base = initial.saturating_mul(1 << exp).min(max);
        assert!(d <= base && d >= base / 2, "attempt {attempt}: {d:?}");
    }
}

#[test]
fn builds_endpoints_and_validates_config() {
    let mut cfg = LokiConfig::new(Url::parse("http://user:pw@host:3100/loki-gw/?x=1").expect("url"));
    cfg.tenant = Some("team-a".into());
    let client = LokiClient::new(cfg.clone()).expect("valid config");
    let url = client.endpoint(&["label", "a/b c", "values"]).expect("endpoint");
    assert_eq!(url.path(), "/loki-gw/loki/api/v1/label/a%2Fb%20c/values");
    assert!(!format!("{client:?}").contains("pw"));
    let headers = client.request_headers().expect("headers");
    assert_eq!(headers.get("x-scope-orgid").and_then(|v| v.to_str().ok()), Some("team-a"));

    let tail = client.tail("{app=\"x\"}", Utc::now(), TailOptions::default(), CancellationToken::new()).expect("tail");
    assert_eq!(tail.url.scheme(), "ws");
    assert_eq!(tail.url.path(), "/loki-gw/loki/api/v1/tail");

    let mut bad = cfg.clone();
    bad.tenant = Some("a\nb".into());
    assert!(matches!(LokiClient::new(bad), Err(Error::Config(_))));
    let mut bad = cfg.clone();
    bad.url = Url::parse("ftp://host/").expect("url");
    assert!(matches!(LokiClient::new(bad), Err(Error::Config(_))));
    let mut bad = cfg;
    bad.max_entries = 0;
    assert!(matches!(LokiClient::new(bad), Err(Error::Config(_))));
}

#[test]
fn basic_auth_reaches_the_tail_headers() {
    let mut cfg = LokiConfig::new(Url::parse("https://loki.example").expect("url"));
    cfg.auth = Some(HttpAuth::Basic { username: "warden".into(), password: crate::Secret::new("s3cret".into()) });
    let client = LokiClient::new(cfg).expect("valid config");
    let headers = client.request_headers().expect("headers");
    // base64("warden:s3cret")
    assert_eq!(headers.get("authorization").and_then(|v| v.to_str().ok()), Some("Basic d2FyZGVuOnMzY3JldA=="));
    let tail = client.tail("{a=\"b\"}", Utc::now(), TailOptions::default(), CancellationToken::new()).expect("tail");
    assert_eq!(tail.url.scheme(), "wss");
}

#[tokio::test]
async fn invalid_inputs_are_rejected_before_any_request() {
    let client = LokiClient::new(LokiConfig::new(Url::parse("http://127.0.0.1:9").expect("url"))).expect("client");
    let now = Utc::now();
    let err = client.query_range(" ", now, now, Direction::Forward, 10).await.expect_err("empty query");
    assert!(matches!(err, Error::InvalidInput(_)));
    let err = client
        .query_range("{a=\"b\"}", now, now - chrono::Duration::seconds(1), Direction::Forward, 10)
        .await
        .expect_err("end before start");
    assert!(matches!(err, Error::InvalidInput(_)));
    let err = client.query_range("{a=\"b\"}", now, now, Direction::Forward, 0).await.expect_err("zero limit");
    assert!(matches!(err, Error::InvalidInput(_)));
    assert!(client.series(&[], None, None).await.is_err());
    assert!(client.label_values("", None, None).await.is_err());
}

/// A `wss://` tail server with a fresh self-signed certificate that sends one
/// frame and then stays open.
async fn start_wss_server() -> std::result::Result<(std::net::SocketAddr, String), Box<dyn std::error::Error>> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    crate::install_crypto_provider();
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()])?;
    let pem = certified.cert.pem();
    let cert: CertificateDer<'static> = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut ws) = tokio_tungstenite::accept_async(tls).await else {
                    return;
                };
                let frame = r#"{"streams":[{"stream":{"app":"tls"},"values":[["5","secure"]]}]}"#;
                if ws.send(Message::text(frame)).await.is_err() {
                    return;
                }
                while let Some(Ok(_)) = ws.next().await {}
            });
        }
    });
    Ok((addr, pem))
}

#[tokio::test]
async fn tail_over_wss_trusts_the_ca_file_only() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let (addr, pem) = start_wss_server().await?;
    let dir = tempfile::tempdir()?;
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, pem)?;
    let url = Url::parse(&format!("https://{addr}"))?;
    let start = DateTime::from_timestamp_nanos(0);
    let options = TailOptions { max_consecutive_failures: Some(0), ..TailOptions::default() };

    let mut cfg = LokiConfig::new(url.clone());
    cfg.timeout = Duration::from_secs(5);
    let untrusted = LokiClient::new(cfg.clone())?;
    let mut tail = untrusted.tail("{app=\"tls\"}", start, options.clone(), CancellationToken::new())?;
    let err = match tail.next().await {
        Some(Err(e)) => e,
        other => panic!("expected a TLS failure, got {other:?}"),
    };
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert!(err.to_string().to_lowercase().contains("certificate"), "{err}");
    assert!(tail.next().await.is_none());

    for tls in [
        TlsOptions { ca_file: Some(ca.clone()), insecure_skip_verify: false },
        TlsOptions { ca_file: None, insecure_skip_verify: true },
    ] {
        cfg.tls = tls;
        let client = LokiClient::new(cfg.clone())?;
        let cancel = CancellationToken::new();
        let mut tail = client.tail("{app=\"tls\"}", start, options.clone(), cancel.clone())?;
        match tail.next().await {
            Some(Ok(TailEvent::Connected { start_ns: 0, reconnect: false })) => {}
            other => panic!("expected Connected, got {other:?}"),
        }
        match tail.next().await {
            Some(Ok(TailEvent::Entry(e))) => assert_eq!(e.line, "secure"),
            other => panic!("expected the entry, got {other:?}"),
        }
        cancel.cancel();
        assert!(tail.next().await.is_none());
    }
    Ok(())
}
