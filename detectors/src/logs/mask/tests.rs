//! Unit tests of masking: numbers, ids, addresses, paths, dates and identifiers, token and
//! line limits, and the word scan matching a byte-by-byte scan.

use super::*;
use proptest::prelude::*;

fn m(line: &str) -> String {
    mask(line).as_str().to_string()
}

#[track_caller]
fn check(cases: &[(&str, &str)]) {
    for (line, want) in cases {
        assert_eq!(m(line), *want, "masking {line:?}");
    }
}

#[test]
fn numbers_with_signs_decimals_and_units() {
    check(&[
        ("status: 200 len: 1893 time: 0.2477829", "status: <*> len: <*> time: <*>"),
        ("offset -42 delta +7 x=-3.5", "offset <*> delta <*> x=<*>"),
        ("took 12ms, then 3.5GB used, 1e-5 rate, 100% done", "took <*>, then <*> used, <*> rate, <*>% done"),
        ("Took 19.05 seconds to spawn", "Took <*> to spawn"),
        ("memory 2048 MB, disk 20 GB", "memory <*>, disk <*>"),
        ("1190 bytes (1.16 KB) sent, 0 bytes received", "<*> sent, <*> received"),
        ("Temperature (41C) exceeds", "Temperature (<*>) exceeds"),
        ("lifetime <1 sec", "lifetime <<*>"),
        ("Fan speeds ( 3552 3534 3375 4245 )", "Fan speeds ( <*> )"),
        ("Fan speeds ( 3552 3534 **** 3515 )", "Fan speeds ( <*> **** <*> )"),
    ]);
}

#[test]
fn hex_ids_and_uuids() {
    check(&[
        ("flags=0x1 mask=fffffff0 at 0x7fed806eb5d", "flags=<*> mask=<*> at <*>"),
        ("file a489c868f0c37da93b76227c91bb03908ac0e742 ok", "file <*> ok"),
        ("[instance: d96a117b-0193-4549-bdcc-63b917273d1d] Claim successful", "[instance: <*>] Claim successful"),
        ("Token{9f4ef63 token=de9231d}", "Token{<*> token=<*>}"),
        ("QuorumPeer$QuorumServer@506a5ec8", "QuorumPeer$QuorumServer@<*>"),
        // Words made of hex letters stay words.
        ("added a facade deadbeef", "added a facade deadbeef"),
    ]);
}

#[test]
fn addresses_and_ports() {
    check(&[
        ("from 10.250.19.102:54106 to 10.0.0.1", "from <*>:<*> to <*>"),
        ("src: /10.250.19.102:54106 dest: /10.1.1.1:50010", "src: /<*>:<*> dest: /<*>:<*>"),
        ("peer fe80::1ff:fe23:4567:890a up", "peer <*> up"),
        ("proxy.cse.cuhk.edu.hk:5070 open through proxy www.google.com:443", "<*>:<*> open through proxy <*>:<*>"),
        ("rhost=5.36.59.76.dynamic-dsl-ip.omantel.net.om user=root", "rhost=<*> user=root"),
        ("mail bob.smith@example.org now", "mail <*> now"),
        ("Connecting to driver: spark://CoarseGrainedScheduler@10.10.34.11:48069", "Connecting to driver: spark://<*>"),
    ]);
}

#[test]
fn paths_and_times() {
    check(&[
        ("Active base files: /var/lib/nova/instances/_base/a489c868", "Active base files: <*>"),
        ("Loaded C:\\Windows\\winsxs\\cbscore.dll ok", "Loaded <*> ok"),
        ("opened ./conf/app.yaml and ~/x/y", "opened <*> and <*>"),
        ("at 2017-05-16 00:00:00.008 and 12:30:05", "at <*> and <*>"),
        ("stamp 2005-06-03-15.42.50.675872 done", "stamp <*> done"),
        ("cmp=com.tencent.mm/.plugin.base.stub.WXEntryActivity (has extras)", "cmp=<*> (has extras)"),
    ]);
}

#[test]
fn words_with_digits_and_identifiers() {
    check(&[
        ("via interface alt0 port 22 ssh2", "via interface alt0 port <*> ssh2"),
        ("domain storage234 on node-12 and R02-M1-N0", "domain <*> on node-<*> and <*>-M1-N0"),
        ("block blk_-6952295868487656571 done", "block blk_<*> done"),
        ("Created MRAppMaster for appattempt_1445144423722_0020_000001", "Created MRAppMaster for appattempt_<*>"),
        // Java class and package names stay constant.
        (
            "Registering org.apache.hadoop.mapreduce.v2.app.MRAppMaster",
            "Registering org.apache.hadoop.mapreduce.v2.app.MRAppMaster",
        ),
        ("mapred.job.id is deprecated", "mapred.job.id is deprecated"),
        ("uid=0 euid=0 tty=ssh ruser= force=false", "uid=<*> euid=<*> tty=ssh ruser= force=false"),
    ]);
}

#[test]
fn textual_dates_are_one_value() {
    check(&[
        ("connection from 10.1.1.1 () at Sun Jul 17 23:21:54 2005", "connection from <*> () at <*>"),
        ("connection from 10.1.1.2 (host1) at Mon Jun 20 03:40:59 2005", "connection from <*> (host1) at <*>"),
        ("backup done on Tuesday 3 MARCH 2015, next run Wed", "backup done on <*> next run Wed"),
        ("[Thu Jun 09 06:07:04 2005] [notice] started", "<*> [notice] started"),
        ("Jan  5, 04:02 cron ran", "<*> cron ran"),
        // Words that only look like dates, or date words with no number beside them, stay.
        ("May I help? Sun shines in March", "May I help? Sun shines in March"),
        ("Monkey Marching Sunday-best Jul", "Monkey Marching Sunday-best Jul"),
    ]);
}

#[test]
fn whitespace_is_normalised() {
    check(&[("  a \t b\r\n", "a b"), ("", ""), ("   ", ""), ("x\u{0}y z", "x y z")]);
    assert!(mask("  ").is_empty());
}

#[test]
fn kinds_of_tokens() {
    let line = mask("uid=0 error 42 blk_1 <*>");
    let kinds: Vec<_> = (0..line.len()).filter_map(|i| line.kind(i)).collect();
    assert_eq!(
        kinds,
        [TokenKind::Mixed, TokenKind::Constant, TokenKind::Variable, TokenKind::Mixed, TokenKind::Variable]
    );
    assert_eq!(line.tokens().collect::<Vec<_>>(), ["uid=<*>", "error", "<*>", "blk_<*>", "<*>"]);
    assert_eq!(line.token(1), Some("error"));
    assert_eq!(line.token(9), None);
}

#[test]
fn run_rules() {
    for run in ["42", "3rd", "0x1f", "a489c8", "storage234", "R02", "a1b2"] {
        assert!(run_is_variable(run), "{run} should be a value");
    }
    for run in ["ssh2", "alt0", "md5", "error", "facade", "ffffffff", "log4j", "v2beta"] {
        assert!(!run_is_variable(run), "{run} should stay a word");
    }
}

#[test]
fn token_limit_keeps_a_final_wildcard() {
    let line: String = (0..300).map(|i| format!("w{} ", ["a", "b", "c"][i % 3])).collect();
    let params = MaskParams { max_line_bytes: 4096, max_tokens: 10 };
    let mut out = MaskedLine::new();
    mask_into(&line, &params, &mut out);
    assert_eq!(out.len(), 10);
    assert!(out.truncated());
    assert_eq!(out.token(9), Some(WILDCARD));
    // Exactly at the limit: nothing is cut.
    mask_into("a b c d e f g h i j", &params, &mut out);
    assert_eq!((out.len(), out.truncated()), (10, false));
}

#[test]
fn line_limit_cuts_at_a_character_boundary() {
    let params = MaskParams { max_line_bytes: 16, max_tokens: 128 };
    let mut out = MaskedLine::new();
    mask_into("ééééééééé tail", &params, &mut out);
    assert!(out.truncated());
    assert_eq!(out.as_str(), "éééééééé");
    assert_eq!(truncate_str("aé", 2), "a");
    assert_eq!(truncate_str("abc", 10), "abc");
}

#[test]
fn params_are_validated_and_unknown_fields_rejected() {
    assert!(MaskParams::default().validate().is_ok());
    let bad = MaskParams { max_tokens: 1, ..MaskParams::default() };
    assert!(bad.validate().is_err_and(|e| e.to_string().contains("max_tokens")));
    let bad = MaskParams { max_line_bytes: 0, ..MaskParams::default() };
    assert!(bad.validate().is_err_and(|e| e.to_string().contains("max_line_bytes")));
    let err = serde_json::from_str::<MaskParams>(r#"{"max_tokns": 3}"#).map_err(|e| e.to_string());
    assert!(err.is_err_and(|e| e.contains("unknown field")));
}

/// The eight-bytes-at-a-time scan agrees with a byte-by-byte one.
#[test]
fn word_scan_matches_bytewise_scan() {
    let mut rng = crate::harness::XorShift64::new(11);
    let alphabet = b"ab.Z/9@\\ \t\x01\xc3\xa9-:=_";
    for _ in 0..2000 {
        let len = (rng.next_u64() % 40) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| alphabet[(rng.next_u64() % alphabet.len() as u64) as usize]).collect();
        for start in 0..bytes.len() {
            let mut end = start;
            let mut value = false;
            while end < bytes.len() && bytes[end] > 0x20 {
                value |= bytes[end].is_ascii_digit() || matches!(bytes[end], b'.' | b'/' | b'\\' | b'@');
                end += 1;
            }
            assert_eq!(scan_token(&bytes, start), (end, value), "{bytes:?} from {start}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any bytes: no panic, bounded output, single spaces, no whitespace inside tokens.
    #[test]
    fn arbitrary_input_is_safe(bytes in prop::collection::vec(any::<u8>(), 0..600), max_tokens in 2usize..40) {
        let line = String::from_utf8_lossy(&bytes);
        let params = MaskParams { max_line_bytes: 256, max_tokens };
        let mut out = MaskedLine::new();
        mask_into(&line, &params, &mut out);
        prop_assert!(out.len() <= max_tokens);
        prop_assert!(out.as_str().len() <= 3 * 256 + max_tokens);
        prop_assert!(!out.as_str().contains("  "));
        prop_assert_eq!(out.tokens().count(), out.len());
        for t in out.tokens() {
            prop_assert!(!t.is_empty() && !t.bytes().any(|b| b <= 0x20));
        }
        // Masking is idempotent on its own output's token count.
        let again = mask(out.as_str());
        prop_assert!(again.len() <= out.len());
    }

    #[test]
    fn arbitrary_text_is_safe(line in "\\PC{0,200}") {
        let out = mask(&line);
        prop_assert!(out.len() <= MaskParams::default().max_tokens);
    }
}
