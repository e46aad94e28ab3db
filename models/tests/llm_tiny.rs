//! The LLM runtime on tiny GGUF files written by the test itself: loading for each supported
//! architecture, the GGUF tokenizers, chat templates, greedy and seeded generation, stop
//! handling, budgets and load errors — without any downloaded model.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use gguf_file::Value;
use warden_models::llm::{sha256_file, ChatTemplate, LlmModel, LoadOptions};
use warden_models::{ChatPrompt, Error, GenerateOptions, StopReason, TextGenerator};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const HIDDEN: usize = 64;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const FF: usize = 128;
const LAYERS: usize = 2;

/// GPT-2's byte-to-character table.
fn byte_chars() -> Vec<char> {
    let mut bs: Vec<u32> = (33..=126).chain(161..=172).chain(174..=255).collect();
    let mut cs = bs.clone();
    let mut n = 0;
    for b in 0..=255u32 {
        if !bs.contains(&b) {
            bs.push(b);
            cs.push(256 + n);
            n += 1;
        }
    }
    let mut table = vec![' '; 256];
    for (b, c) in bs.into_iter().zip(cs) {
        table[b as usize] = char::from_u32(c).unwrap_or('?');
    }
    table
}

/// A byte-level BPE vocabulary: 3 control tokens, 256 byte tokens, a few merges and the
/// tokens of the scripted answer.
struct Vocab {
    tokens: Vec<String>,
    types: Vec<i32>,
    merges: Vec<String>,
}

impl Vocab {
    fn byte_level() -> Self {
        let mut tokens: Vec<String> = vec!["<|endoftext|>".into(), "<|im_start|>".into(), "<|im_end|>".into()];
        let mut types = vec![3, 3, 3];
        for c in byte_chars() {
            tokens.push(c.to_string());
            types.push(1);
        }
        let merges = ["h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or", "l d", "Ġwor ld"];
        for m in merges {
            tokens.push(m.replace(' ', ""));
            types.push(1);
        }
        for extra in ["Hi", "Ġthere"] {
            tokens.push(extra.into());
            types.push(1);
        }
        Self { tokens, types, merges: merges.iter().map(|s| s.to_string()).collect() }
    }

    fn id(&self, t: &str) -> usize {
        self.tokens.iter().position(|x| x == t).unwrap_or_else(|| panic!("no token {t}"))
    }

    fn len(&self) -> usize {
        self.tokens.len()
    }

    fn metadata(&self, pre: &str) -> Vec<(String, Value)> {
        let strings = |v: &[String]| Value::Array(v.iter().map(|s| Value::String(s.clone())).collect());
        vec![
            ("tokenizer.ggml.model".into(), Value::String("gpt2".into())),
            ("tokenizer.ggml.pre".into(), Value::String(pre.into())),
            ("tokenizer.ggml.tokens".into(), strings(&self.tokens)),
            ("tokenizer.ggml.token_type".into(), Value::Array(self.types.iter().map(|t| Value::I32(*t)).collect())),
            ("tokenizer.ggml.merges".into(), strings(&self.merges)),
            ("tokenizer.ggml.bos_token_id".into(), Value::U32(1)),
            ("tokenizer.ggml.eos_token_id".into(), Value::U32(2)),
            ("tokenizer.ggml.add_bos_token".into(), Value::Bool(false)),
        ]
    }
}

/// Deterministic pseudo-random numbers in [-0.5, 0.5).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    }

    fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.next() * scale).collect()
    }
}

fn qtensor(data: Vec<f32>, shape: &[usize], dtype: GgmlDType) -> QTensor {
    let t = Tensor::from_vec(data, shape, &Device::Cpu).expect("tensor");
    QTensor::quantize(&t, dtype).expect("quantize")
}

fn write_gguf(path: &Path, metadata: &[(String, Value)], tensors: &[(String, QTensor)]) {
    let md: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let ts: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut f = std::fs::File::create(path).expect("create");
    gguf_file::write(&mut f, &md, &ts).expect("write gguf");
}

enum Weights {
    /// Small random weights.
    Random { seed: u64, dtype: GgmlDType },
    /// Zero layers and hand-made embeddings: the model answers "Hi there!" and ends its turn.
    Scripted,
}

fn llama_tensors(vocab: &Vocab, weights: &Weights) -> Vec<(String, QTensor)> {
    let kv = HIDDEN / HEADS * KV_HEADS;
    let v = vocab.len();
    let mut out = Vec::new();
    let (mut rng, dtype, zero) = match weights {
        Weights::Random { seed, dtype } => (Lcg(*seed), *dtype, false),
        Weights::Scripted => (Lcg(1), GgmlDType::F32, true),
    };
    let mat = |rows: usize, cols: usize, rng: &mut Lcg| {
        let data = if zero { vec![0.0; rows * cols] } else { rng.vec(rows * cols, 0.5) };
        qtensor(data, &[rows, cols], dtype)
    };
    for l in 0..LAYERS {
        let p = format!("blk.{l}");
        out.push((format!("{p}.attn_q.weight"), mat(HIDDEN, HIDDEN, &mut rng)));
        out.push((format!("{p}.attn_k.weight"), mat(kv, HIDDEN, &mut rng)));
        out.push((format!("{p}.attn_v.weight"), mat(kv, HIDDEN, &mut rng)));
        out.push((format!("{p}.attn_output.weight"), mat(HIDDEN, HIDDEN, &mut rng)));
        out.push((format!("{p}.ffn_gate.weight"), mat(FF, HIDDEN, &mut rng)));
        out.push((format!("{p}.ffn_up.weight"), mat(FF, HIDDEN, &mut rng)));
        out.push((format!("{p}.ffn_down.weight"), mat(HIDDEN, FF, &mut rng)));
        out.push((format!("{p}.attn_norm.weight"), qtensor(vec![1.0; HIDDEN], &[HIDDEN], GgmlDType::F32)));
        out.push((format!("{p}.ffn_norm.weight"), qtensor(vec![1.0; HIDDEN], &[HIDDEN], GgmlDType::F32)));
    }
    out.push(("output_norm.weight".into(), qtensor(vec![1.0; HIDDEN], &[HIDDEN], GgmlDType::F32)));
    let (embd, output) = if zero {
        // Chain: "\n" -> "Hi" -> "Ġthere" -> "!" -> <|im_end|>. Token k of the chain embeds as
        // the unit vector e_k; the output row of its successor is 10 e_k; all else is zero.
        let chain = ["Ċ", "Hi", "Ġthere", "!", "<|im_end|>"];
        let mut embd = vec![0.0f32; v * HIDDEN];
        let mut output = vec![0.0f32; v * HIDDEN];
        for (k, pair) in chain.windows(2).enumerate() {
            embd[vocab.id(pair[0]) * HIDDEN + k] = 1.0;
            output[vocab.id(pair[1]) * HIDDEN + k] = 10.0;
        }
        (embd, output)
    } else {
        let embd = rng.vec(v * HIDDEN, 1.0);
        let mut output = rng.vec(v * HIDDEN, 1.0);
        // Control tokens never win, so random generation runs to max_tokens.
        for id in 0..3 {
            output[id * HIDDEN..(id + 1) * HIDDEN].iter_mut().for_each(|x| *x = 0.0);
        }
        (embd, output)
    };
    out.push(("token_embd.weight".into(), qtensor(embd, &[v, HIDDEN], GgmlDType::F32)));
    out.push(("output.weight".into(), qtensor(output, &[v, HIDDEN], dtype)));
    out
}

fn llama_metadata(vocab: &Vocab, context: u32, chat_template: Option<&str>) -> Vec<(String, Value)> {
    let mut md = vec![
        ("general.architecture".to_string(), Value::String("llama".into())),
        ("general.name".to_string(), Value::String("tiny-llama".into())),
        ("llama.context_length".to_string(), Value::U32(context)),
        ("llama.embedding_length".to_string(), Value::U32(HIDDEN as u32)),
        ("llama.feed_forward_length".to_string(), Value::U32(FF as u32)),
        ("llama.block_count".to_string(), Value::U32(LAYERS as u32)),
        ("llama.attention.head_count".to_string(), Value::U32(HEADS as u32)),
        ("llama.attention.head_count_kv".to_string(), Value::U32(KV_HEADS as u32)),
        ("llama.rope.dimension_count".to_string(), Value::U32((HIDDEN / HEADS) as u32)),
        ("llama.attention.layer_norm_rms_epsilon".to_string(), Value::F32(1e-5)),
        ("llama.rope.freq_base".to_string(), Value::F32(10000.0)),
    ];
    if let Some(t) = chat_template {
        md.push(("tokenizer.chat_template".into(), Value::String(t.into())));
    }
    md.extend(vocab.metadata("smollm"));
    md
}

const CHATML_JINJA: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + \
                            message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}\
                            {{ '<|im_start|>assistant\n' }}{% endif %}";

fn tiny_llama(dir: &Path, name: &str, weights: Weights, context: u32) -> PathBuf {
    let vocab = Vocab::byte_level();
    let path = dir.join(name);
    write_gguf(&path, &llama_metadata(&vocab, context, Some(CHATML_JINJA)), &llama_tensors(&vocab, &weights));
    path
}

fn prompt() -> ChatPrompt {
    ChatPrompt { system: "You are terse.".into(), user: "hello world 12345".into() }
}

fn greedy(max_tokens: usize) -> GenerateOptions {
    GenerateOptions { max_tokens, temperature: 0.0, ..GenerateOptions::default() }
}

fn load(path: &Path) -> LlmModel {
    LlmModel::load(&LoadOptions::new(path)).unwrap_or_else(|e| panic!("load {}: {e}", path.display()))
}

#[test]
fn scripted_llama_answers_and_stops_at_end_of_turn() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = tiny_llama(dir.path(), "scripted.gguf", Weights::Scripted, 256);
    let mut m = load(&path);
    assert_eq!(m.chat_template(), ChatTemplate::ChatMl);

    let g = m.generate(&prompt(), &greedy(20))?;
    assert_eq!(g.text, "Hi there!");
    assert_eq!(g.stop, StopReason::EndOfTurn);
    assert_eq!(g.generated_tokens, 3);
    assert_eq!(g.prompt_tokens, m.prompt_tokens(&prompt())?.len());

    let g = m.generate(&prompt(), &greedy(2))?;
    assert_eq!((g.text.as_str(), g.stop, g.generated_tokens), ("Hi there", StopReason::MaxTokens, 2));

    let stop = |s: &str| GenerateOptions { stop: vec![s.to_string()], ..greedy(20) };
    let g = m.generate(&prompt(), &stop("there"))?;
    assert_eq!((g.text.as_str(), g.stop), ("Hi", StopReason::StopString));
    let g = m.generate(&prompt(), &stop("!"))?;
    assert_eq!((g.text.as_str(), g.stop), ("Hi there", StopReason::StopString));

    let g = m.generate(&prompt(), &greedy(0))?;
    assert_eq!((g.text.as_str(), g.stop, g.generated_tokens), ("", StopReason::MaxTokens, 0));
    Ok(())
}

#[test]
fn gguf_byte_level_tokenizer_and_chatml_markers() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = tiny_llama(dir.path(), "tok.gguf", Weights::Scripted, 256);
    let m = load(&path);
    let vocab = Vocab::byte_level();
    let ids = m.encode("hello world")?;
    assert_eq!(ids, vec![vocab.id("hello") as u32, vocab.id("Ġworld") as u32]);
    // smollm pre-tokenizer: digits one by one, no prefix space.
    let digits = m.encode("12345")?;
    let strs: Vec<String> = digits.iter().filter_map(|&i| m.token_str(i)).collect();
    assert_eq!(strs, vec!["1", "2", "3", "4", "5"]);
    let text = "hello world, 12 Ünïcödé ✓ tabs\tand\nnewlines";
    assert_eq!(m.decode(&m.encode(text)?)?, text);
    // The template's markers are single special tokens.
    let rendered = m.render_prompt(&prompt());
    let ids = m.encode(&rendered)?;
    assert_eq!(ids[0], 1);
    assert_eq!(ids.iter().filter(|&&i| i == 2).count(), 2);
    assert_eq!(ids.iter().filter(|&&i| i == 1).count(), 3);
    assert_eq!(m.stop_token_ids(), &[0, 2]);
    Ok(())
}

#[test]
fn random_llama_is_deterministic_greedy_and_seeded() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = tiny_llama(dir.path(), "random.gguf", Weights::Random { seed: 7, dtype: GgmlDType::Q4_1 }, 256);
    let mut m = load(&path);
    // Warden's llama pass reads Q4_1 as it is; candle's model gets it re-quantized.
    assert_eq!(m.requantized_tensors(), 0);
    assert!(LlmModel::load(&LoadOptions { native: false, ..LoadOptions::new(&path) })?.requantized_tensors() > 0);
    let a = m.generate(&prompt(), &greedy(12))?;
    let b = m.generate(&prompt(), &greedy(12))?;
    assert_eq!(a.generated_tokens, 12);
    assert_eq!(a.stop, StopReason::MaxTokens);
    assert!(!a.text.is_empty());
    assert_eq!(a.text, b.text, "greedy decoding must not depend on the previous call");

    let sampled = |seed| GenerateOptions { max_tokens: 12, temperature: 1.0, seed, ..GenerateOptions::default() };
    let s1 = m.generate(&prompt(), &sampled(11))?;
    let s2 = m.generate(&prompt(), &sampled(11))?;
    assert_eq!(s1.text, s2.text, "same seed, same text");
    let others: Vec<String> =
        (12..16).map(|s| m.generate(&prompt(), &sampled(s)).map(|g| g.text)).collect::<Result<_, _>>()?;
    assert!(others.iter().any(|t| *t != s1.text), "different seeds should sample differently");

    // The same file without re-quantization loads and generates too.
    let mut opts = LoadOptions::new(&path);
    opts.requantize = Some(false);
    let mut plain = LlmModel::load(&opts)?;
    assert_eq!(plain.requantized_tensors(), 0);
    assert_eq!(plain.generate(&prompt(), &greedy(4))?.generated_tokens, 4);
    Ok(())
}

#[test]
fn model_info_is_filled_in() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = tiny_llama(dir.path(), "info.gguf", Weights::Random { seed: 3, dtype: GgmlDType::Q4_1 }, 256);
    let m = load(&path);
    let info = m.info();
    let v = Vocab::byte_level().len() as u64;
    let (h, kv, ff, l) = (HIDDEN as u64, (HIDDEN / HEADS * KV_HEADS) as u64, FF as u64, LAYERS as u64);
    let per_layer = h * h * 2 + kv * h * 2 + ff * h * 3 + h * 2;
    assert_eq!(info.parameters, per_layer * l + h + 2 * v * h);
    assert_eq!(info.architecture, "llama");
    assert_eq!(info.name.as_deref(), Some("tiny-llama"));
    assert_eq!(info.quantization, "Q4_1");
    assert_eq!(info.context_length, 256);
    assert_eq!(info.chat_template, "chatml (gguf jinja)");
    assert_eq!(info.tokenizer, "gguf");
    assert_eq!(info.device, "cpu");
    assert_eq!(info.sha256, Some(sha256_file(&path)?));
    assert_eq!(info.path, path.display().to_string());
    assert!(info.load_time > Duration::ZERO);
    let json = serde_json::to_value(&info)?;
    assert_eq!(json["architecture"], "llama");

    let mut opts = LoadOptions::new(&path);
    opts.compute_sha256 = false;
    opts.chat_template = Some(ChatTemplate::Llama2);
    let m = LlmModel::load(&opts)?;
    assert_eq!(m.info().sha256, None);
    assert_eq!(m.info().chat_template, "llama2");

    let mut opts = LoadOptions::new(&path);
    opts.expected_sha256 = Some("0".repeat(64));
    match LlmModel::load(&opts) {
        Err(Error::Load { message, .. }) => {
            assert!(message.contains("SHA-256 mismatch"), "{message}")
        }
        other => panic!("expected a load error, got {other:?}"),
    }
    Ok(())
}

#[test]
fn budgets_and_context() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = tiny_llama(dir.path(), "ctx.gguf", Weights::Random { seed: 5, dtype: GgmlDType::Q8_0 }, 64);
    let mut m = load(&path);
    assert_eq!(m.context_length(), 64);
    let past = GenerateOptions { deadline: Some(Instant::now()), ..greedy(8) };
    assert!(matches!(m.generate(&prompt(), &past), Err(Error::Budget { generated: 0 })));

    let long = ChatPrompt { system: String::new(), user: "a b c d e f g h ".repeat(10) };
    match m.generate(&long, &greedy(4)) {
        Err(Error::Inference(msg)) => {
            assert!(msg.contains("tokens but the model's context is 64"), "{msg}")
        }
        other => panic!("expected an inference error, got {other:?}"),
    }
    // Generation stops at the context's end.
    let g = m.generate(&prompt(), &greedy(1000))?;
    assert_eq!(g.stop, StopReason::MaxTokens);
    assert_eq!(g.prompt_tokens + g.generated_tokens, 64);

    // A deadline that passes during decoding.
    let soon = GenerateOptions { deadline: Some(Instant::now() + Duration::from_micros(200)), ..greedy(1000) };
    assert!(matches!(m.generate(&prompt(), &soon), Err(Error::Budget { .. })));
    Ok(())
}

fn expect_load_error(path: &Path, opts: Option<LoadOptions>, needle: &str) {
    let opts = opts.unwrap_or_else(|| LoadOptions::new(path));
    match LlmModel::load(&opts) {
        Err(Error::Load { path: p, message }) => {
            assert_eq!(p, path.display().to_string());
            assert!(message.contains(needle), "`{message}` should mention `{needle}`");
        }
        other => panic!("expected a load error for {}, got {other:?}", path.display()),
    }
}

#[test]
fn bad_files_are_load_errors_naming_the_file() -> TestResult {
    let dir = tempfile::tempdir()?;
    let garbage = dir.path().join("garbage.gguf");
    std::fs::write(&garbage, b"this is not a gguf file at all")?;
    expect_load_error(&garbage, None, "not a valid GGUF");

    let good = tiny_llama(dir.path(), "good.gguf", Weights::Random { seed: 1, dtype: GgmlDType::Q8_0 }, 128);
    let bytes = std::fs::read(&good)?;
    let truncated = dir.path().join("truncated.gguf");
    std::fs::write(&truncated, &bytes[..bytes.len() * 2 / 3])?;
    expect_load_error(&truncated, None, "");
    let header_only = dir.path().join("header.gguf");
    std::fs::write(&header_only, &bytes[..100])?;
    expect_load_error(&header_only, None, "not a valid GGUF");

    let missing = dir.path().join("missing.gguf");
    expect_load_error(&missing, None, "cannot read");

    let vocab = Vocab::byte_level();
    let mut md = llama_metadata(&vocab, 128, None);
    md[0].1 = Value::String("mamba".into());
    let mamba = dir.path().join("mamba.gguf");
    write_gguf(&mamba, &md, &llama_tensors(&vocab, &Weights::Scripted));
    expect_load_error(&mamba, None, "unsupported architecture `mamba`");

    let mut md = llama_metadata(&vocab, 128, None);
    md.retain(|(k, _)| k != "llama.attention.head_count");
    let no_heads = dir.path().join("noheads.gguf");
    write_gguf(&no_heads, &md, &llama_tensors(&vocab, &Weights::Scripted));
    expect_load_error(&no_heads, None, "head_count");

    let mut tensors = llama_tensors(&vocab, &Weights::Scripted);
    tensors.retain(|(k, _)| k != "blk.1.ffn_up.weight");
    let no_tensor = dir.path().join("notensor.gguf");
    write_gguf(&no_tensor, &llama_metadata(&vocab, 128, None), &tensors);
    expect_load_error(&no_tensor, None, "blk.1.ffn_up.weight");

    let mut opts = LoadOptions::new(&good);
    opts.device = "cuda:0".parse()?;
    if !cfg!(feature = "cuda") {
        expect_load_error(&good, Some(opts), "--features cuda");
    }
    Ok(())
}

#[test]
fn qwen2_loads_with_chatml_fallback_and_generates() -> TestResult {
    let dir = tempfile::tempdir()?;
    let vocab = Vocab::byte_level();
    let mut rng = Lcg(99);
    let kv = HIDDEN / HEADS * KV_HEADS;
    let v = vocab.len();
    let mut md = vec![
        ("general.architecture".to_string(), Value::String("qwen2".into())),
        ("qwen2.context_length".to_string(), Value::U32(128)),
        ("qwen2.embedding_length".to_string(), Value::U32(HIDDEN as u32)),
        ("qwen2.block_count".to_string(), Value::U32(LAYERS as u32)),
        ("qwen2.attention.head_count".to_string(), Value::U32(HEADS as u32)),
        ("qwen2.attention.head_count_kv".to_string(), Value::U32(KV_HEADS as u32)),
        ("qwen2.attention.layer_norm_rms_epsilon".to_string(), Value::F32(1e-6)),
        ("qwen2.rope.freq_base".to_string(), Value::F32(10000.0)),
    ];
    md.extend(vocab.metadata("qwen2"));
    let q = |rng: &mut Lcg, r: usize, c: usize| qtensor(rng.vec(r * c, 0.5), &[r, c], GgmlDType::Q8_0);
    let f = |data: Vec<f32>, n: usize| qtensor(data, &[n], GgmlDType::F32);
    let mut ts = Vec::new();
    for l in 0..LAYERS {
        let p = format!("blk.{l}");
        ts.push((format!("{p}.attn_q.weight"), q(&mut rng, HIDDEN, HIDDEN)));
        ts.push((format!("{p}.attn_k.weight"), q(&mut rng, kv, HIDDEN)));
        ts.push((format!("{p}.attn_v.weight"), q(&mut rng, kv, HIDDEN)));
        ts.push((format!("{p}.attn_q.bias"), f(rng.vec(HIDDEN, 0.1), HIDDEN)));
        ts.push((format!("{p}.attn_k.bias"), f(rng.vec(kv, 0.1), kv)));
        ts.push((format!("{p}.attn_v.bias"), f(rng.vec(kv, 0.1), kv)));
        ts.push((format!("{p}.attn_output.weight"), q(&mut rng, HIDDEN, HIDDEN)));
        ts.push((format!("{p}.ffn_gate.weight"), q(&mut rng, FF, HIDDEN)));
        ts.push((format!("{p}.ffn_up.weight"), q(&mut rng, FF, HIDDEN)));
        ts.push((format!("{p}.ffn_down.weight"), q(&mut rng, HIDDEN, FF)));
        ts.push((format!("{p}.attn_norm.weight"), f(vec![1.0; HIDDEN], HIDDEN)));
        ts.push((format!("{p}.ffn_norm.weight"), f(vec![1.0; HIDDEN], HIDDEN)));
    }
    ts.push(("output_norm.weight".into(), f(vec![1.0; HIDDEN], HIDDEN)));
    ts.push(("token_embd.weight".into(), q(&mut rng, v, HIDDEN)));
    let path = dir.path().join("qwen2.gguf");
    write_gguf(&path, &md, &ts);

    let mut m = load(&path);
    assert_eq!(m.info().architecture, "qwen2");
    assert_eq!(m.info().quantization, "Q8_0");
    assert_eq!(m.chat_template(), ChatTemplate::ChatMl);
    // qwen2 pre-tokenizer: digits one by one too.
    assert_eq!(m.encode("123")?.len(), 3);
    let a = m.generate(&prompt(), &greedy(5))?;
    let b = m.generate(&prompt(), &greedy(5))?;
    assert_eq!(a.text, b.text);
    assert!(a.generated_tokens > 0);
    Ok(())
}

/// A SentencePiece vocabulary as in Gemma/Llama 2 GGUFs.
fn spm_metadata(add_space_prefix: bool, specials: &[&str]) -> (Vec<(String, Value)>, usize) {
    let mut tokens: Vec<String> = vec!["<unk>".into(), "<bos>".into(), "<eos>".into()];
    let mut types = vec![2, 3, 3];
    let mut scores = vec![0.0f32; 3];
    for s in specials {
        tokens.push(s.to_string());
        types.push(3);
        scores.push(0.0);
    }
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(6);
        scores.push(0.0);
    }
    let mut score = -1.0;
    for c in "abcdefghijklmnopqrstuvwxyz\n"
        .chars()
        .map(String::from)
        .chain(["\u{2581}", "he", "ll", "hell", "hello", "\u{2581}hello", "user", "model"].map(String::from))
    {
        tokens.push(c);
        types.push(1);
        scores.push(score);
        score -= 1.0;
    }
    let n = tokens.len();
    let md = vec![
        ("tokenizer.ggml.model".to_string(), Value::String("llama".into())),
        ("tokenizer.ggml.tokens".to_string(), Value::Array(tokens.into_iter().map(Value::String).collect())),
        ("tokenizer.ggml.token_type".to_string(), Value::Array(types.into_iter().map(Value::I32).collect())),
        ("tokenizer.ggml.scores".to_string(), Value::Array(scores.into_iter().map(Value::F32).collect())),
        ("tokenizer.ggml.bos_token_id".to_string(), Value::U32(1)),
        ("tokenizer.ggml.eos_token_id".to_string(), Value::U32(2)),
        ("tokenizer.ggml.unknown_token_id".to_string(), Value::U32(0)),
        ("tokenizer.ggml.add_space_prefix".to_string(), Value::Bool(add_space_prefix)),
    ];
    (md, n)
}

#[test]
fn gemma3_loads_with_sentencepiece_tokenizer_and_gemma_template() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (tok_md, v) = spm_metadata(false, &["<start_of_turn>", "<end_of_turn>"]);
    let key_len = 8;
    let mut md = vec![
        ("general.architecture".to_string(), Value::String("gemma3".into())),
        ("gemma3.context_length".to_string(), Value::U32(256)),
        ("gemma3.embedding_length".to_string(), Value::U32(HIDDEN as u32)),
        ("gemma3.block_count".to_string(), Value::U32(LAYERS as u32)),
        ("gemma3.attention.head_count".to_string(), Value::U32(HEADS as u32)),
        ("gemma3.attention.head_count_kv".to_string(), Value::U32(KV_HEADS as u32)),
        ("gemma3.attention.key_length".to_string(), Value::U32(key_len as u32)),
        ("gemma3.attention.value_length".to_string(), Value::U32(key_len as u32)),
        ("gemma3.attention.layer_norm_rms_epsilon".to_string(), Value::F32(1e-6)),
        ("gemma3.attention.sliding_window".to_string(), Value::U32(16)),
        (
            "tokenizer.chat_template".to_string(),
            Value::String(include_str!("fixtures/chat_templates/gemma3.jinja").into()),
        ),
    ];
    md.extend(tok_md);
    let mut rng = Lcg(4242);
    let q = |rng: &mut Lcg, r: usize, c: usize| qtensor(rng.vec(r * c, 0.5), &[r, c], GgmlDType::Q5_0);
    let ones = |n: usize| qtensor(vec![1.0; n], &[n], GgmlDType::F32);
    let mut ts = Vec::new();
    for l in 0..LAYERS {
        let p = format!("blk.{l}");
        ts.push((format!("{p}.attn_q.weight"), q(&mut rng, HEADS * key_len, HIDDEN)));
        ts.push((format!("{p}.attn_k.weight"), q(&mut rng, KV_HEADS * key_len, HIDDEN)));
        ts.push((format!("{p}.attn_v.weight"), q(&mut rng, KV_HEADS * key_len, HIDDEN)));
        ts.push((format!("{p}.attn_output.weight"), q(&mut rng, HIDDEN, HEADS * key_len)));
        ts.push((format!("{p}.attn_q_norm.weight"), ones(key_len)));
        ts.push((format!("{p}.attn_k_norm.weight"), ones(key_len)));
        for n in ["attn_norm", "post_attention_norm", "ffn_norm", "post_ffw_norm"] {
            ts.push((format!("{p}.{n}.weight"), ones(HIDDEN)));
        }
        ts.push((format!("{p}.ffn_gate.weight"), q(&mut rng, FF, HIDDEN)));
        ts.push((format!("{p}.ffn_up.weight"), q(&mut rng, FF, HIDDEN)));
        ts.push((format!("{p}.ffn_down.weight"), q(&mut rng, HIDDEN, FF)));
    }
    ts.push(("output_norm.weight".into(), ones(HIDDEN)));
    ts.push(("token_embd.weight".into(), qtensor(rng.vec(v * HIDDEN, 1.0), &[v, HIDDEN], GgmlDType::Q8_0)));
    let path = dir.path().join("gemma3.gguf");
    write_gguf(&path, &md, &ts);

    let mut m = load(&path);
    assert_eq!(m.info().architecture, "gemma3");
    assert_eq!(m.chat_template(), ChatTemplate::Gemma);
    assert!(m.requantized_tensors() > 0, "Q5_0 is re-quantized on the CPU");
    let p = ChatPrompt { system: "sys".into(), user: "hello".into() };
    let ids = m.prompt_tokens(&p)?;
    assert_eq!(ids[0], 1, "gemma prompts start with <bos>");
    assert_eq!(ids[1], 3, "<start_of_turn> is one token");
    let text = m.decode(&ids[1..])?;
    assert_eq!(text, "user\nsys\n\nhello\nmodel\n", "special tokens are skipped when decoding");
    assert!(m.stop_token_ids().contains(&4) && m.stop_token_ids().contains(&2));
    let a = m.generate(&p, &greedy(4))?;
    let b = m.generate(&p, &greedy(4))?;
    assert_eq!(a.text, b.text);
    Ok(())
}

#[test]
fn llama_with_sentencepiece_vocab_falls_back_to_llama2_template() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (tok_md, v) = spm_metadata(true, &[]);
    let mut md = llama_metadata(&Vocab::byte_level(), 128, None);
    md.retain(|(k, _)| !k.starts_with("tokenizer."));
    md.extend(tok_md);
    let mut rng = Lcg(8);
    let mut ts: Vec<(String, QTensor)> =
        llama_tensors(&Vocab::byte_level(), &Weights::Random { seed: 2, dtype: GgmlDType::Q8_0 })
            .into_iter()
            .filter(|(k, _)| k != "token_embd.weight" && k != "output.weight")
            .collect();
    ts.push(("token_embd.weight".into(), qtensor(rng.vec(v * HIDDEN, 1.0), &[v, HIDDEN], GgmlDType::Q8_0)));
    let path = dir.path().join("llama2.gguf");
    write_gguf(&path, &md, &ts);

    let mut m = load(&path);
    assert_eq!(m.chat_template(), ChatTemplate::Llama2);
    let p = ChatPrompt { system: String::new(), user: "hello".into() };
    let ids = m.prompt_tokens(&p)?;
    assert_eq!(ids[0], 1, "<bos> first");
    assert_eq!(m.decode(&ids)?, "[INST] hello [/INST]");
    assert_eq!(m.stop_token_ids(), &[2]);
    let g = m.generate(&p, &greedy(3))?;
    assert!(g.generated_tokens <= 3);
    Ok(())
}

#[test]
fn tokenizer_json_overrides_the_gguf_tokenizer() -> TestResult {
    use tokenizers::models::bpe::BPE;
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    use tokenizers::{AddedToken, Tokenizer};

    let dir = tempfile::tempdir()?;
    let path = tiny_llama(dir.path(), "scripted.gguf", Weights::Scripted, 256);
    // The same vocabulary, but GPT-2 pre-tokenization without digit splitting.
    let vocab = Vocab::byte_level();
    let v: tokenizers::models::bpe::Vocab =
        vocab.tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
    let merges =
        vocab.merges.iter().filter_map(|m| m.split_once(' ').map(|(a, b)| (a.to_string(), b.to_string()))).collect();
    let mut tok = Tokenizer::new(BPE::builder().vocab_and_merges(v, merges).build().map_err(|e| e.to_string())?);
    tok.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
    tok.with_decoder(Some(ByteLevel::default()));
    tok.add_special_tokens(["<|endoftext|>", "<|im_start|>", "<|im_end|>"].map(|t| AddedToken::from(t, true)))
        .map_err(|e| e.to_string())?;
    let json = dir.path().join("tokenizer.json");
    tok.save(&json, false).map_err(|e| e.to_string())?;

    let mut opts = LoadOptions::new(&path);
    opts.tokenizer = Some(json.clone());
    let mut m = LlmModel::load(&opts)?;
    assert_eq!(m.info().tokenizer, json.display().to_string());
    assert_eq!(m.encode("12345")?.len(), 5, "no merges for digits: still one byte token each");
    assert_eq!(m.encode("hello world")?, vec![vocab.id("hello") as u32, vocab.id("Ġworld") as u32]);
    assert_eq!(m.generate(&prompt(), &greedy(20))?.text, "Hi there!");

    let mut opts = LoadOptions::new(&path);
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{}")?;
    opts.tokenizer = Some(bad.clone());
    expect_load_error(&bad, Some(opts), "tokenizer.json");
    Ok(())
}

/// A short incident for summaries on tiny weights.
fn incident() -> (warden_detectors::rca::Ranking, Vec<warden_detectors::rca::Evidence>) {
    use warden_detectors::rca::{Candidate, CauseKind, ChangeKind, Evidence, Payload, Ranking, Subject};
    let t0 = 1_795_341_600;
    let checkout = Subject::workload(Some("shop"), "checkout");
    let evidence = vec![
        Evidence {
            id: "E1".into(),
            time: t0 - 120,
            subject: checkout.clone(),
            payload: Payload::Change {
                change: ChangeKind::Rollout,
                from: Some("checkout:1.4.2".into()),
                to: Some("checkout:1.5.0".into()),
                description: "image changed".into(),
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
    ];
    let ranking = Ranking {
        candidates: vec![Candidate {
            subject: checkout,
            cause: CauseKind::Change,
            score: 0.8,
            evidence: vec!["E1".into(), "E2".into()],
            reasons: vec![],
        }],
    };
    (ranking, evidence)
}

/// Warden's own llama pass against candle's `quantized_llama` on the same file: the same
/// next-token logits (Q4_1 through Warden's kernel, other types through candle's), whether
/// the prompt is fed at once (block attention), token by token (decode attention) or in
/// chunks after cached positions. Warden's KV cache is f16 and candle's f32 (about 1e-4 of
/// the logits' scale with f32 weights); with quantized weights the activations are rounded
/// to 8 bits before every product, which turns such differences (and, for Q4_1, the two
/// kernels' different rounding of block sums) into a few percent, so the bound is wider
/// there and the best token must agree.
#[test]
fn native_llama_matches_candles_model() -> TestResult {
    let dir = tempfile::tempdir()?;
    let vocab = Vocab::byte_level();
    let mut rng = Lcg(3);
    let ids: Vec<u32> =
        (0..70).map(|_| (3 + ((rng.next() + 0.5) * 250.0) as usize).min(vocab.len() - 1) as u32).collect();
    for (name, dtype, tolerance) in
        [("f32.gguf", GgmlDType::F32, 1e-3), ("q8.gguf", GgmlDType::Q8_0, 4e-2), ("q41.gguf", GgmlDType::Q4_1, 4e-2)]
    {
        let path = tiny_llama(dir.path(), name, Weights::Random { seed: 9, dtype }, 512);
        let opts = LoadOptions { requantize: Some(false), ..LoadOptions::new(&path) };
        let mut native = LlmModel::load(&opts)?;
        let mut candle = LlmModel::load(&LoadOptions { native: false, ..opts.clone() })?;
        for len in [1, 2, 33, 70] {
            let want = candle.next_logits(&ids[..len], len)?;
            let scale = want.iter().fold(0f32, |a, v| a.max(v.abs())).max(1.0);
            for chunk in [len, 1, 5] {
                let got = native.next_logits(&ids[..len], chunk)?;
                assert_eq!(got.len(), want.len());
                let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
                assert!(
                    worst <= tolerance * scale,
                    "{name}: {len} tokens fed {chunk} at a time: max difference {worst} (logits up to {scale})"
                );
                let best = |l: &[f32]| {
                    l.iter().enumerate().fold((0, f32::MIN), |b, (i, &v)| if v > b.1 { (i, v) } else { b }).0
                };
                assert_eq!(best(&got), best(&want), "{name}: {len} tokens fed {chunk} at a time: best token");
            }
        }
        // Greedy text is the same too with f32 weights (with quantized ones, random weights
        // have near ties that the roundings break differently after a few tokens).
        if dtype == GgmlDType::F32 {
            let a = native.generate(&prompt(), &greedy(10))?;
            let b = candle.generate(&prompt(), &greedy(10))?;
            assert_eq!(a.text, b.text, "{name}");
        }
    }
    Ok(())
}

#[test]
fn prefix_cache_gives_the_same_text_as_a_full_prefill() -> TestResult {
    let dir = tempfile::tempdir()?;
    for (name, dtype) in [("f32.gguf", GgmlDType::F32), ("q8.gguf", GgmlDType::Q8_0), ("q41.gguf", GgmlDType::Q4_1)] {
        let path = tiny_llama(dir.path(), name, Weights::Random { seed: 5, dtype }, 512);
        let mut cached = load(&path);
        let mut plain = LlmModel::load(&LoadOptions { prefix_cache: false, ..LoadOptions::new(&path) })?;
        let prompts = [
            prompt(),
            ChatPrompt { system: "You are terse.".into(), user: "a different incident 42".into() },
            ChatPrompt { system: "Another system text.".into(), user: "hello world 12345".into() },
            prompt(),
        ];
        for p in &prompts {
            let a = cached.generate(p, &greedy(16))?;
            let b = plain.generate(p, &greedy(16))?;
            assert_eq!(a.text, b.text, "{name}: {p:?}");
            assert_eq!(a.generated_tokens, b.generated_tokens);
            assert!(cached.cached_prefix_tokens() > 0, "{name}: the prefix is cached");
            assert_eq!(plain.cached_prefix_tokens(), 0);
            let prefix = cached.prompt_prefix(&p.system).unwrap_or_default();
            assert!(cached.render_prompt(p).starts_with(&prefix) && prefix.ends_with("<|im_start|>user\n"), "{prefix}");
        }
    }
    Ok(())
}

#[test]
fn gguf_jinja_template_renders_the_prompt() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = tiny_llama(dir.path(), "jinja.gguf", Weights::Scripted, 256);
    let m = load(&path);
    assert!(m.uses_gguf_template());
    assert_eq!(m.info().chat_template, "chatml (gguf jinja)");
    assert_eq!(m.render_prompt(&prompt()), ChatTemplate::ChatMl.render(&prompt()));
    // A template that does not render falls back to the recognised shape.
    let vocab = Vocab::byte_level();
    let broken = dir.path().join("broken.gguf");
    let md = llama_metadata(&vocab, 256, Some("<|im_start|>{{ raise_exception('no') }}"));
    write_gguf(&broken, &md, &llama_tensors(&vocab, &Weights::Scripted));
    let m = load(&broken);
    assert!(!m.uses_gguf_template());
    assert!(m.info().chat_template.starts_with("chatml (built-in"), "{}", m.info().chat_template);
    assert_eq!(m.render_prompt(&prompt()), ChatTemplate::ChatMl.render(&prompt()));
    Ok(())
}

#[test]
fn constrained_decoding_writes_only_grounded_sentences() -> TestResult {
    use warden_detectors::rca::Subject;
    use warden_models::prompt::SummaryInput;
    use warden_models::summary::{summarize, Decoding, SummaryOptions};
    let dir = tempfile::tempdir()?;
    let (ranking, evidence) = incident();
    let symptom = Subject::workload(Some("shop"), "checkout");
    let input = SummaryInput {
        title: "checkout-latency",
        symptom: Some(&symptom),
        started: 1_795_341_600,
        ranking: &ranking,
        evidence: &evidence,
    };
    let plan = warden_models::constrain::plan(&input).ok_or("no plan")?;
    let mut passed = 0;
    for seed in [3u64, 9, 21] {
        let path =
            tiny_llama(dir.path(), &format!("c{seed}.gguf"), Weights::Random { seed, dtype: GgmlDType::F32 }, 2048);
        let mut m = load(&path);
        // Room for a whole first sentence of the longest words (29 words of at most ~38 bytes).
        let opts = GenerateOptions { max_tokens: 1500, ..greedy(1500) };
        let g = m
            .generate_constrained(&ChatPrompt { system: "s".into(), user: "u".into() }, &plan, &opts)
            .ok_or("constrained decoding is supported")??;
        println!("seed {seed}: {:?} after {} tokens: {}", g.stop, g.generated_tokens, g.text);
        // The mask never leads into a sentence that can neither go on nor end: a model that
        // has room always finishes its first sentence, whatever its weights prefer.
        assert!(!g.text.is_empty(), "seed {seed}: no sentence in {} tokens ({:?})", g.generated_tokens, g.stop);
        // Every finished sentence carries a planned citation and passes the grounding check.
        let report = warden_models::grounding::check(&g.text, &evidence);
        if !g.text.is_empty() {
            assert!(report.passed, "seed {seed}: {:?}\n{}", report.failure_reason(), g.text);
            passed += 1;
            for s in &report.sentences {
                assert!(s.citations == vec!["E2".to_string()] || s.citations == vec!["E1".to_string()], "{s:?}");
            }
        }
        let summary = summarize(&input, Some(&mut m as &mut dyn TextGenerator), &SummaryOptions::default());
        assert_eq!(summary.decoding, Some(Decoding::Constrained));
        assert!(!summary.provenance().is_empty());
    }
    assert_eq!(passed, 3);
    Ok(())
}
