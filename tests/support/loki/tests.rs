//! Unit tests of the Loki test server's LogQL subset and push format.

use super::*;

#[test]
fn parses_selectors_and_filters() {
    let q = parse_logql(r#"{app="api", env!="dev", pod=~"api-.*"} |= "error" != `debug`"#).expect("valid query");
    let hit = LokiEntry::new(&[("app", "api"), ("pod", "api-1")], 1, "an error here");
    let debug = LokiEntry::new(&[("app", "api"), ("pod", "api-1")], 1, "error debug");
    let other_pod = LokiEntry::new(&[("app", "api"), ("pod", "web-1")], 1, "error");
    assert!(q.matches(&hit));
    assert!(!q.matches(&debug));
    assert!(!q.matches(&other_pod));
}

#[test]
fn errors_look_like_loki() {
    let err = parse_logql(r#"{app="api""#).expect_err("unclosed");
    assert!(err.starts_with("parse error at line 1, col 11"), "{err}");
    let err = parse_logql("sum(rate({app=\"x\"}[1m]))").expect_err("metric");
    assert!(err.contains("unexpected IDENTIFIER"), "{err}");
    assert!(parse_logql("{app=~\".*\"}").is_err());
    assert!(parse_logql("").is_err());
}

#[test]
fn times_parse_like_loki() {
    assert_eq!(parse_time("1700000000"), Ok(1_700_000_000_000_000_000));
    assert_eq!(parse_time("1700000000000000001"), Ok(1_700_000_000_000_000_001));
    assert_eq!(parse_time("1700000000.5"), Ok(1_700_000_000_500_000_000));
    assert_eq!(parse_time("1970-01-01T00:00:01Z"), Ok(1_000_000_000));
    assert!(parse_time("soon").is_err());
}

#[test]
fn push_json_round_trips() {
    let entries = vec![
        LokiEntry::new(&[("app", "a")], 5, "x"),
        LokiEntry::new(&[("app", "b")], 6, "y"),
        LokiEntry::new(&[("app", "a")], 7, "z"),
    ];
    let text = push_json(&entries);
    let mut back = entries_from_push_json(&text).expect("valid");
    back.sort_by_key(|e| e.ts_ns);
    assert_eq!(back, entries);
}
