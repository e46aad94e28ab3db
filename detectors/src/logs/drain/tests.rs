//! Unit tests of the template miner: values sharing a template, optional fields, merges,
//! stable ids, bounded memory, state round trips and arbitrary lines.

use super::*;
use proptest::prelude::*;

fn miner() -> Miner {
    Miner::new(MinerParams::default()).expect("default params are valid")
}

fn ids(m: &mut Miner, lines: &[&str]) -> Vec<TemplateId> {
    lines.iter().map(|l| m.add(l).template_id).collect()
}

#[test]
fn values_share_a_template_and_ids_count_up() {
    let mut m = miner();
    let a = m.add("Received block blk_123 of size 67108864 from /10.251.42.84");
    assert_eq!((a.template_id, a.change, a.count), (1, Change::New, 1));
    assert_eq!(&*a.template, "Received block blk_<*> of size <*> from /<*>");
    let b = m.add("Received block blk_-99 of size 12 from /10.0.0.1");
    assert_eq!((b.template_id, b.change, b.count), (1, Change::Existing, 2));
    let c = m.add("Deleting block blk_5 file /mnt/hadoop/dfs/data/current/blk_5");
    assert_eq!((c.template_id, c.change), (2, Change::New));
    assert_eq!(m.len(), 2);
    let t = m.get(1).expect("template 1");
    assert_eq!((t.count, t.first_seen, t.last_seen), (2, 1, 2));
    assert_eq!(t.samples.len(), 2);
    assert!(m.get(3).is_none());
}

#[test]
fn a_word_becomes_a_value_after_enough_variants() {
    let mut m = miner();
    let first = m.add("Failed password for root from 1.2.3.4 port 22 ssh2");
    let second = m.add("Failed password for admin from 1.2.3.5 port 23 ssh2");
    let third = m.add("Failed password for guest from 1.2.3.6 port 24 ssh2");
    // Three variants: still three templates.
    assert_eq!([first.change, second.change, third.change], [Change::New; 3]);
    assert_eq!((first.template_id, second.template_id, third.template_id), (1, 2, 3));
    let fourth = m.add("Failed password for oracle from 1.2.3.7 port 25 ssh2");
    assert_eq!(fourth.template_id, 1, "merged into the oldest id");
    assert_eq!(fourth.change, Change::Updated);
    assert_eq!(fourth.merged, vec![2, 3]);
    assert_eq!(fourth.count, 4);
    assert_eq!(&*fourth.template, "Failed password for <*> from <*> port <*> ssh2");
    assert_eq!(m.len(), 1);
    // From now on any user matches.
    let fifth = m.add("Failed password for test from 9.9.9.9 port 1 ssh2");
    assert_eq!((fifth.template_id, fifth.change), (1, Change::Existing));
}

#[test]
fn message_words_with_few_variants_stay_apart() {
    let mut m = miner();
    let lines = [
        "[instance: 96abccce-8d1f-4e07-b6d1-4b2ab87e23b4] VM Started (Lifecycle Event)",
        "[instance: 96abccce-8d1f-4e07-b6d1-4b2ab87e23b4] VM Paused (Lifecycle Event)",
        "[instance: b9000564-fe1a-409b-b8cc-1e88b294cd1d] VM Resumed (Lifecycle Event)",
        "[instance: b9000564-fe1a-409b-b8cc-1e88b294cd1d] VM Started (Lifecycle Event)",
    ];
    assert_eq!(ids(&mut m, &lines), [1, 2, 3, 1]);
    // Drain's behaviour: the first difference generalises.
    let mut drain = Miner::new(MinerParams { min_variants: 2, ..MinerParams::default() }).expect("valid");
    assert_eq!(ids(&mut drain, &lines), [1, 1, 1, 1]);
    assert_eq!(drain.get(1).map(|t| t.template), Some("[instance: <*>] VM <*> (Lifecycle Event)"));
}

/// An optional parenthesised field, empty in some lines and holding a host name in others,
/// with textual dates: one event, whatever order the shapes come in.
#[test]
fn an_optional_field_and_textual_dates_do_not_split_an_event() {
    let lines = [
        "connection from 24.54.76.216 (24-54-76-216.bflony.adelphia.net) at Sat Jun 18 02:08:10 2005",
        "connection from 222.33.90.199 () at Sun Jul 17 23:21:54 2005",
        "connection from 82.68.222.194 (host194) at Mon Jun 20 03:40:59 2005",
        "connection from 211.72.2.106 () at Tue Jun 21 10:12:40 2005",
        "connection from 82.68.222.195 (gateway) at Wed Jun 22 04:30:04 2005",
        "connection from 24.54.76.217 (h217.example.org) at Thu Jun 23 05:01:00 2005",
        "connection from 10.1.1.1 at Fri Aug 5 11:00:00 2005",
    ];
    let orders: [&[usize]; 3] = [&[0, 1, 2, 3, 4, 5, 6], &[1, 2, 4, 0, 3, 5, 6], &[2, 4, 1, 3, 0, 6, 5]];
    for order in orders {
        let mut m = miner();
        for &i in order {
            m.add(lines[i]);
        }
        let all: Vec<_> = m.templates().map(|t| (t.template.to_string(), t.count)).collect();
        assert_eq!(all.len(), 1, "order {order:?}: {all:?}");
        assert_eq!(all[0].1, 7);
        assert!(all[0].0.starts_with("connection from <*>") && all[0].0.ends_with("at <*>"), "{all:?}");
        // Later lines of every shape match it.
        for l in lines {
            let r = m.add(l);
            assert_eq!((r.template_id, r.merged.len()), (m.templates().next().map_or(0, |t| t.id), 0), "{l}");
        }
    }
}

/// A state written before the optional-field and date rules (same format, version 1)
/// loads, and its templates take the new shapes of their lines.
#[test]
fn states_saved_before_the_optional_field_rule_load() {
    let json = r#"{"version":1,"params":{"sim_threshold":0.5,"depth":2,"min_variants":4,"max_children":100,"max_templates":5000,"max_line_bytes":4096,"max_tokens":128,"max_samples":3,"sample_max_bytes":256},"lines":2,"next_id":2,"templates":[{"id":1,"template":"connection from <*> (host1) at Sun Jul <*>","path":["connection","from"],"count":2,"first_seen":1,"last_seen":2,"samples":[]}]}"#;
    let mut m = Miner::from_state(MinerState::from_json(json).expect("parses")).expect("an old state loads");
    assert_eq!(m.get(1).map(|t| t.count), Some(2));
    let r = m.add("connection from 10.0.0.9 (host1) at Sun Jul 17 23:21:54 2005");
    assert_eq!(r.template_id, 2, "the dated shape is new: {r:?}");
    let r = m.add("connection from 10.0.0.9 at Mon Jun 20 03:40:59 2005");
    assert_eq!(r.template_id, 2);
    assert_eq!(m.len(), 2);
}

#[test]
fn a_trailing_field_present_in_some_lines_only() {
    let mut m = miner();
    let a = m.add("Session closed for uid 1001");
    let b = m.add("Session closed for uid 1002 [pid 4321]");
    let c = m.add("Session closed for uid 1003 (pid 77)");
    assert_eq!(b.template_id, a.template_id);
    assert_eq!(c.template_id, a.template_id);
    // Words that are part of the message are not a field.
    let mut m = miner();
    let x = m.add("Failed password for root from 1.2.3.4 port 22 ssh2");
    let y = m.add("Failed password for invalid user admin from 1.2.3.5 port 23 ssh2");
    assert_ne!(x.template_id, y.template_id);
}

#[test]
fn low_similarity_makes_a_new_template() {
    let mut m = Miner::new(MinerParams { min_variants: 2, ..MinerParams::default() }).expect("valid");
    assert_eq!(ids(&mut m, &["a b c d", "a x y z", "a b c e"]), [1, 2, 1]);
    assert_eq!(m.get(1).map(|t| t.template), Some("a b c <*>"));
    // With the default, `e` is a variant of `d` until enough variants are seen.
    let mut m = miner();
    assert_eq!(ids(&mut m, &["a b c d", "a x y z", "a b c e"]), [1, 2, 3]);
}

#[test]
fn merging_keeps_the_older_id_and_follows_collisions() {
    let template = |id: TemplateId, text: &str| TemplateState {
        id,
        template: text.into(),
        path: text.split(' ').take(2).map(str::to_string).collect(),
        count: 1,
        first_seen: id,
        last_seen: id,
        samples: Vec::new(),
    };
    let state = MinerState {
        version: STATE_VERSION,
        params: MinerParams::default(),
        lines: 4,
        next_id: 5,
        templates: vec![
            template(1, "x a z w"),
            template(2, "x y b w"),
            template(3, "x <*> <*> w"),
            template(4, "alpha beta"),
        ],
    };
    let mut m = Miner::from_state(state).expect("valid state");
    let slot = |m: &Miner, id: TemplateId| m.by_id.get(&id).copied().expect("live");
    let mut merged = Vec::new();
    // 2 into 1 gives "x <*> <*> w", which is 3's text, so 3 is merged too.
    let s = m.merge(slot(&m, 2), slot(&m, 1), &mut merged);
    assert_eq!(m.slot(s).map(|c| c.id), Some(1));
    assert_eq!(merged, vec![2, 3]);
    assert_eq!(m.get(1).map(|t| (t.template, t.count, t.last_seen)), Some(("x <*> <*> w", 3, 3)));
    assert_eq!(m.len(), 2);
    // Every index agrees with the slots.
    assert_eq!((m.by_text.len(), m.by_id.len()), (2, 2));
    let restored = Miner::from_state(m.state()).expect("restores");
    assert_eq!(restored.state(), m.state());
}

#[test]
fn short_and_empty_lines() {
    let mut m = miner();
    assert_eq!(ids(&mut m, &["", "   ", "running", "running", "normal", "x"]), [1, 1, 2, 2, 3, 4]);
    assert_eq!(m.get(1).map(|t| t.template), Some(""));
}

#[test]
fn state_round_trip_gives_the_same_future() {
    let mut rng = crate::harness::XorShift64::new(5);
    let words = ["alpha", "beta", "gamma", "delta", "error", "ok", "user", "disk", "node", "start", "stop"];
    let mut lines = Vec::new();
    for i in 0..3000 {
        let n = 2 + (rng.next_u64() % 7) as usize;
        let mut l: Vec<String> =
            (0..n).map(|_| words[(rng.next_u64() % words.len() as u64) as usize].to_string()).collect();
        if i % 3 == 0 {
            l.push(format!("{}", rng.next_u64() % 1000));
        }
        lines.push(l.join(" "));
    }
    let params = MinerParams { max_templates: 200, ..MinerParams::default() };
    let mut a = Miner::new(params.clone()).expect("valid");
    for l in &lines[..1500] {
        a.add(l);
    }
    let json = a.state().to_json().expect("serialises");
    let mut b = Miner::from_state(MinerState::from_json(&json).expect("parses")).expect("restores");
    assert_eq!(a.state(), b.state());
    for l in &lines[1500..] {
        assert_eq!(a.add(l), b.add(l), "line {l}");
    }
    assert_eq!(a.state(), b.state());
    // A miner that never stopped gives the same ids too (ids do not depend on hashing).
    let mut c = Miner::new(params).expect("valid");
    let ids_c: Vec<_> = lines.iter().map(|l| c.add(l).template_id).collect();
    let mut d = Miner::from_state(MinerState::from_json(&json).expect("parses")).expect("restores");
    let mut e = Miner::new(MinerParams { max_templates: 200, ..MinerParams::default() }).expect("valid");
    let ids_e: Vec<_> = lines[..1500]
        .iter()
        .map(|l| e.add(l).template_id)
        .chain(lines[1500..].iter().map(|l| d.add(l).template_id))
        .collect();
    assert_eq!(ids_c, ids_e);
}

#[test]
fn memory_is_bounded_by_max_templates() {
    let params = MinerParams { max_templates: 64, ..MinerParams::default() };
    let mut m = Miner::new(params).expect("valid");
    let mut evicted = Vec::new();
    let mut seen_ids = std::collections::BTreeSet::new();
    for i in 0..5000u64 {
        // Every line but the frequent one shares no word with any other: a new template.
        let line = if i % 10 == 0 {
            "heartbeat ok".to_string()
        } else {
            format!("{} {} {}", word(3 * i), word(3 * i + 1), word(3 * i + 2))
        };
        let r = m.add(&line);
        assert!(m.len() <= 64, "{} templates", m.len());
        evicted.extend(r.evicted.iter().copied());
        if r.change == Change::New {
            assert!(seen_ids.insert(r.template_id), "id {} reused", r.template_id);
        }
    }
    assert!(!evicted.is_empty());
    // The frequent template survives every eviction.
    assert!(m.templates().any(|t| t.template.starts_with("heartbeat ok")));
    for id in &evicted {
        assert!(m.get(*id).is_none());
    }
}

/// A distinct word for every number (letters only, so that it is not masked).
fn word(mut i: u64) -> String {
    let mut s = String::new();
    loop {
        s.push(char::from(b'a' + (i % 26) as u8));
        i /= 26;
        if i == 0 {
            return s;
        }
    }
}

#[test]
fn samples_are_few_distinct_and_cut() {
    let params = MinerParams { max_samples: 2, sample_max_bytes: 16, ..MinerParams::default() };
    let mut m = Miner::new(params).expect("valid");
    for l in ["job 1 done", "job 1 done", "job 2 done", "job 3 done with a long tail that is cut"] {
        m.add(l);
    }
    let t = m.get(1).expect("template");
    assert_eq!(t.samples, ["job 1 done", "job 2 done"]);
    let mut m = Miner::new(MinerParams { sample_max_bytes: 16, ..MinerParams::default() }).expect("valid");
    m.add("a very long line that goes past sixteen bytes");
    assert_eq!(m.get(1).map(|t| t.samples.to_vec()), Some(vec!["a very long line".to_string()]));
}

#[test]
fn params_are_validated() {
    assert!(MinerParams::default().validate().is_ok());
    for (p, name) in [
        (MinerParams { sim_threshold: 0.0, ..MinerParams::default() }, "sim_threshold"),
        (MinerParams { sim_threshold: f64::NAN, ..MinerParams::default() }, "sim_threshold"),
        (MinerParams { depth: 0, ..MinerParams::default() }, "depth"),
        (MinerParams { min_variants: 1, ..MinerParams::default() }, "min_variants"),
        (MinerParams { max_children: 1, ..MinerParams::default() }, "max_children"),
        (MinerParams { max_templates: 0, ..MinerParams::default() }, "max_templates"),
        (MinerParams { max_tokens: 1, ..MinerParams::default() }, "max_tokens"),
        (MinerParams { sample_max_bytes: 1, ..MinerParams::default() }, "sample_max_bytes"),
    ] {
        let err = Miner::new(p).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains(name), "{err}");
    }
    let partial: MinerParams = serde_json::from_str(r#"{"max_templates": 10}"#).expect("parses");
    assert_eq!(partial, MinerParams { max_templates: 10, ..MinerParams::default() });
    let err = serde_json::from_str::<MinerParams>(r#"{"max_template": 10}"#).map_err(|e| e.to_string());
    assert!(err.is_err_and(|e| e.contains("unknown field `max_template`")));
}

#[test]
fn bad_states_are_rejected_with_the_template_named() {
    let mut m = miner();
    m.add("disk full on sda");
    m.add("disk ok on sdb");
    let good = m.state();
    let check = |f: &dyn Fn(&mut MinerState), want: &str| {
        let mut s = good.clone();
        f(&mut s);
        let err = Miner::from_state(s).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains(want), "{err} should mention {want}");
    };
    check(&|s| s.version = 99, "version 99");
    check(&|s| s.templates[1].id = s.templates[0].id, "duplicate id");
    check(&|s| s.templates[0].id = 1000, "template 1000");
    check(&|s| s.templates[0].template = "a  b".into(), "empty tokens");
    check(&|s| s.templates[1].template = s.templates[0].template.clone(), "same text");
    check(&|s| s.templates[0].count = 0, "count");
    check(&|s| s.params.depth = 0, "depth");
    assert!(MinerState::from_json("{").is_err());
    assert!(Miner::from_state(good).is_ok());
}

#[test]
fn states_can_be_restored_with_new_settings() {
    let mut m = miner();
    for l in ["disk full on sda", "disk ok on sdb", "user 1 logged in", "user 2 logged in", "fan 3 failed"] {
        m.add(l);
    }
    let mut state = m.state();
    state.params.depth = 3;
    state.params.max_templates = 2;
    let mut r = Miner::from_state(state).expect("restores with new settings");
    assert_eq!(r.len(), 2);
    // The most recently matched survive, with their ids.
    assert_eq!(r.templates().map(|t| t.id).collect::<Vec<_>>(), [3, 4]);
    assert_eq!(r.add("user 7 logged in").template_id, 3);
    assert_eq!(r.add("fan 9 failed").template_id, 4);
}

#[test]
fn results_serialise() {
    let mut m = miner();
    let r = m.add("hello 42");
    let v = serde_json::to_value(&r).expect("serialises");
    assert_eq!(v["template"], "hello <*>");
    assert_eq!(v["change"], "new");
    assert_eq!(v["template_id"], 1);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Arbitrary lines never panic, stay within the bounds, and restore identically.
    #[test]
    fn arbitrary_lines(lines in prop::collection::vec(prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        "[a-c0-9 .:=/_-]{0,60}",
        "(GET|PUT|error|ok|user) [a-z]{1,3} [0-9]{1,4} (done|failed)",
    ], 0..120), max_templates in 1usize..20, min_variants in 2usize..6) {
        let params = MinerParams { max_templates, min_variants, max_tokens: 12, max_line_bytes: 64, ..MinerParams::default() };
        let mut m = Miner::new(params).expect("valid");
        let half = lines.len() / 2;
        for l in &lines[..half] {
            let r = m.add(l);
            prop_assert!(m.len() <= max_templates);
            prop_assert!(m.get(r.template_id).is_some());
            prop_assert!(r.template.split(' ').count() <= 12);
        }
        let mut restored = Miner::from_state(m.state()).expect("restores");
        for l in &lines[half..] {
            prop_assert_eq!(m.add(l), restored.add(l));
            prop_assert!(m.len() <= max_templates);
        }
        prop_assert_eq!(m.templates().count(), m.len());
    }
}
