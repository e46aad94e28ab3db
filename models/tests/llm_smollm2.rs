//! The LLM runtime on a real model: SmolLM2-135M-Instruct, Q4_1 (98 MB, Apache-2.0).
//!
//! The file is found through `WARDEN_TEST_GGUF`, else at
//! `<workspace>/target/test-models/SmolLM2-135M-Instruct.Q4_1.gguf`; `bash tests/run.sh`
//! downloads it there. Without it these tests fail (on purpose: a silently skipped model test
//! hides regressions). Generated token counts stay small because debug builds are slow.
//!
//! Speed is measured by `warden bench summary`, not here.

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use warden_models::llm::{ChatTemplate, LlmModel, LoadOptions};
use warden_models::{ChatPrompt, Error, GenerateOptions, StopReason, TextGenerator};

const FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

fn model_path() -> PathBuf {
    if let Some(p) = std::env::var_os("WARDEN_TEST_GGUF").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "WARDEN_TEST_GGUF={} does not exist", p.display());
        return p;
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("target").join("test-models").join(FILE);
    assert!(
        p.is_file(),
        "the test model {} is missing: run `bash tests/run.sh` (it downloads it) or set \
         WARDEN_TEST_GGUF to a copy of {FILE}",
        p.display()
    );
    p
}

/// One load shared by the tests (loading re-quantizes 210 tensors: slow in debug builds).
fn model() -> MutexGuard<'static, LlmModel> {
    static MODEL: OnceLock<Mutex<LlmModel>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let m = LlmModel::load(&LoadOptions::new(model_path()))
                .unwrap_or_else(|e| panic!("loading the test model: {e}"));
            Mutex::new(m)
        })
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn france() -> ChatPrompt {
    ChatPrompt {
        system: "You are a helpful assistant. Answer briefly.".into(),
        user: "Reply with one word: the capital of France?".into(),
    }
}

#[test]
fn loads_as_llama_with_chatml_and_gguf_tokenizer() {
    let m = model();
    let info = m.info();
    assert_eq!(info.architecture, "llama");
    assert_eq!(info.chat_template, "chatml (gguf jinja)");
    assert_eq!(m.chat_template(), ChatTemplate::ChatMl);
    assert_eq!(info.tokenizer, "gguf");
    assert_eq!(info.quantization, "Q4_1");
    assert_eq!(info.context_length, 4096, "min(8192 in the file, candle's 4096 RoPE table)");
    assert!((130_000_000..140_000_000).contains(&info.parameters), "{}", info.parameters);
    assert_eq!(info.name.as_deref(), Some("Smollm2 135M 8k Lc100K Mix1 Ep2"));
    assert_eq!(info.sha256.as_deref().map(str::len), Some(64));
    assert_eq!(info.device, "cpu");
    assert_eq!(m.requantized_tensors(), 0, "Warden's llama pass reads Q4_1 as it is");
    assert_eq!(m.stop_token_ids(), &[0, 2], "<|endoftext|> and <|im_end|>");
}

#[test]
fn tokenizes_like_llama_cpp() {
    let m = model();
    // smollm pre-tokenizer: one token per digit.
    let ids = m.encode("12345").expect("encode");
    let pieces: Vec<String> = ids.iter().filter_map(|&i| m.token_str(i)).collect();
    assert_eq!(pieces, vec!["1", "2", "3", "4", "5"]);
    // No prefix space; the space goes with the next word.
    let ids = m.encode("Hello world").expect("encode");
    let pieces: Vec<String> = ids.iter().filter_map(|&i| m.token_str(i)).collect();
    assert_eq!(pieces, vec!["Hello", "Ġworld"]);
    assert_eq!(m.encode("<|im_start|>user\n").expect("encode")[0], 1);
    assert_eq!(m.encode("<|im_end|>").expect("encode"), vec![2]);
    let text = "pod api-7f9c OOMKilled at 03:14, exit code 137 — 2 restarts";
    assert_eq!(m.decode(&m.encode(text).expect("encode")).expect("decode"), text);
    let prompt = m.prompt_tokens(&france()).expect("prompt");
    assert_eq!(prompt[0], 1, "no BOS for SmolLM2: the prompt starts with <|im_start|>");
}

/// Token ids produced by llama.cpp (llama-cpp-python 0.3.36, `tokenize(special=True)`) on this
/// file; ours must be identical, special tokens in the chat template included.
#[test]
fn token_ids_match_llama_cpp() {
    let m = model();
    let cases: [(&str, &[u32]); 6] = [
        (
            "pod api-7f9c OOMKilled at 03:14, exit code 137 \u{2014} 2 restarts",
            &[
                35213, 14615, 29, 39, 86, 41, 83, 492, 9232, 59, 2182, 418, 216, 32, 35, 42, 33, 36, 28, 11988, 2909,
                216, 33, 35, 39, 1841, 216, 34, 1532, 12019,
            ],
        ),
        (
            "\u{dc}n\u{ef}c\u{f6}d\u{e9} \u{2713}\ttabs\n\nnewlines  double  spaces   ",
            &[
                142, 246, 94, 25972, 83, 7466, 84, 2756, 4636, 246, 237, 197, 100, 7366, 198, 198, 2241, 5110, 216,
                5561, 216, 5600, 333,
            ],
        ),
        ("don't won't I'm we'll THEY'RE", &[12420, 982, 3763, 982, 339, 5248, 392, 3060, 6462, 73, 23, 3256]),
        ("3.14159 and 1,000,000", &[35, 30, 33, 36, 33, 37, 41, 284, 216, 33, 28, 32, 32, 32, 28, 32, 32, 32]),
        (
            "\u{65e5}\u{672c}\u{8a9e}\u{306e}\u{30c6}\u{30ad}\u{30b9}\u{30c8} \u{1f680} emoji",
            &[
                23274, 115, 40993, 179, 120, 248, 26453, 11100, 224, 10391, 251, 10391, 134, 11100, 226, 15107, 244,
                218, 649, 33777,
            ],
        ),
        (
            "<|im_start|>system\nYou are a helpful assistant. Answer briefly.<|im_end|>\n\
             <|im_start|>user\nReply with one word: the capital of France?<|im_end|>\n\
             <|im_start|>assistant\n",
            &[
                1, 9690, 198, 2683, 359, 253, 5356, 11173, 30, 19842, 13099, 30, 2, 198, 1, 4093, 198, 9302, 318, 351,
                582, 2229, 42, 260, 3575, 282, 4649, 47, 2, 198, 1, 520, 9531, 198,
            ],
        ),
    ];
    for (text, ids) in cases {
        assert_eq!(m.encode(text).expect("encode"), ids, "{text:?}");
        assert_eq!(m.decode(ids).expect("decode"), strip_specials(text), "{text:?}");
    }
    // The chat prompt as the template renders it is that last case.
    assert_eq!(m.render_prompt(&france()), cases[5].0);
}

fn strip_specials(s: &str) -> String {
    s.replace("<|im_start|>", "").replace("<|im_end|>", "")
}

#[test]
fn greedy_chat_answer_is_deterministic_and_ends_its_turn() {
    let mut m = model();
    let opts = GenerateOptions { max_tokens: 12, ..GenerateOptions::default() };
    let a = m.generate(&france(), &opts).expect("generate");
    let b = m.generate(&france(), &opts).expect("generate");
    eprintln!(
        "answer: {:?} ({} prompt tokens, {} generated, prefill {:?}, decode {:?}, {:?})",
        a.text, a.prompt_tokens, a.generated_tokens, a.prefill, a.decode, a.stop
    );
    assert!(!a.text.is_empty());
    assert_eq!(a.stop, StopReason::EndOfTurn);
    assert_eq!(a.text, b.text);
    assert_eq!(a.generated_tokens, b.generated_tokens);
    assert!(a.text.contains("Paris"), "{:?}", a.text);
    assert!(a.prefill > Duration::ZERO);
}

#[test]
fn deadline_gives_budget_error() {
    let mut m = model();
    let opts = GenerateOptions {
        max_tokens: 64,
        deadline: Some(Instant::now() + Duration::from_millis(1)),
        ..GenerateOptions::default()
    };
    match m.generate(&france(), &opts) {
        Err(Error::Budget { generated }) => assert!(generated < 64),
        other => panic!("expected a budget error, got {other:?}"),
    }
}

#[test]
fn constrained_summary_is_written_by_the_model_and_grounded() {
    use warden_detectors::rca::{Candidate, CauseKind, ChangeKind, Evidence, Payload, Ranking, Subject};
    use warden_models::prompt::SummaryInput;
    use warden_models::summary::{summarize, Author, Decoding, SummaryOptions};
    let t0 = 1_795_341_600;
    let checkout = Subject::workload(Some("shop"), "checkout");
    let evidence = vec![
        Evidence {
            id: "E1".into(),
            time: t0 - 120,
            subject: checkout.clone(),
            payload: Payload::Change {
                change: ChangeKind::Rollout,
                from: Some("registry.example/shop/checkout:1.4.2".into()),
                to: Some("registry.example/shop/checkout:1.5.0".into()),
                description: "image changed by ci-bot".into(),
            },
        },
        Evidence {
            id: "E2".into(),
            time: t0 + 150,
            subject: checkout.clone(),
            payload: Payload::Anomaly {
                forecast: None,
                watch: "checkout-latency".into(),
                metric: "checkout-latency".into(),
                observed: 2.1,
                expected: Some(0.3),
                score: 14.2,
                until: None,
            },
        },
        Evidence {
            id: "E3".into(),
            time: t0 + 300,
            subject: checkout.clone(),
            payload: Payload::Action {
                run_id: 12,
                playbook: "scale-up".into(),
                step: "scale".into(),
                status: "scaled shop/checkout from 2 to 3 replicas".into(),
            },
        },
    ];
    let ranking = Ranking {
        candidates: vec![Candidate {
            subject: checkout.clone(),
            cause: CauseKind::Change,
            score: 0.8,
            evidence: vec!["E1".into(), "E2".into()],
            reasons: vec![],
        }],
    };
    let input = SummaryInput {
        title: "checkout-latency",
        symptom: Some(&checkout),
        started: t0,
        ranking: &ranking,
        evidence: &evidence,
    };
    let mut m = model();
    // Debug builds on a busy 2-core machine are slow: a generous budget (the bench measures speed).
    let opts = SummaryOptions { max_tokens: 90, time_budget: Duration::from_secs(600), ..SummaryOptions::default() };
    let s = summarize(&input, Some(&mut *m as &mut dyn TextGenerator), &opts);
    eprintln!(
        "{}\n{}\nmodel text: {:?}\n{:?}",
        s.text,
        s.provenance(),
        s.model_text,
        s.grounding.as_ref().and_then(|g| g.failure_reason())
    );
    assert_eq!(s.decoding, Some(Decoding::Constrained));
    assert_eq!(s.author(), Author::Model, "{}", s.provenance());
    assert!(s.grounding.as_ref().is_some_and(|g| g.sentences.iter().any(|x| x.passed)));
    // The fixed prefix of the prompt is kept for the next summary.
    assert!(m.cached_prefix_tokens() > 0);
}

/// Warden's llama pass (Q4_1 kernels) against candle's model on the same file without
/// re-quantization: the same best next token after a real prompt, logits within the 8-bit
/// activation rounding, and the same greedy answer.
#[test]
fn native_pass_agrees_with_candle_on_the_shipped_model() {
    let mut native = model();
    let mut candle = LlmModel::load(&LoadOptions {
        native: false,
        requantize: Some(false),
        compute_sha256: false,
        ..LoadOptions::new(model_path())
    })
    .expect("load with candle");
    let ids = native.prompt_tokens(&france()).expect("tokens");
    let a = native.next_logits(&ids, ids.len()).expect("native logits");
    let b = candle.next_logits(&ids, ids.len()).expect("candle logits");
    let best = |l: &[f32]| l.iter().enumerate().fold((0, f32::MIN), |b, (i, &v)| if v > b.1 { (i, v) } else { b }).0;
    assert_eq!(best(&a), best(&b));
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
    let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    assert!(worst < 0.05 * scale, "max logit difference {worst} (logits up to {scale})");
    let opts = GenerateOptions { max_tokens: 12, ..GenerateOptions::default() };
    let x = native.generate(&france(), &opts).expect("native");
    let y = candle.generate(&france(), &opts).expect("candle");
    assert_eq!(x.text, y.text);
}
