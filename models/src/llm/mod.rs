//! The local LLM runtime: a quantized GGUF model run with candle, on the CPU by default.
//!
//! Why local and why GGUF: incident data (logs, workload names) must not leave the cluster, and
//! one file carries weights, tokenizer and chat template, so `warden model pull` plus a path in
//! the configuration is the whole setup. The model only writes text for people; its output is
//! grounded and checked in [`crate::summary`] and never chooses an action.
//!
//! * Architectures (GGUF `general.architecture`): `llama` (Llama, SmolLM2, Mistral-style) by
//!   Warden's own forward pass on the CPU (`native`, [`LoadOptions::native`]) or candle's
//!   `quantized_llama` (CUDA, experts, or `native: false`), `qwen2` via `quantized_qwen2`,
//!   `gemma3` via `quantized_gemma3`. Anything else is a load error naming the file and the
//!   architecture.
//! * Tokenizer: a `tokenizer.json` when given, else built from the GGUF metadata
//!   (the private `tokenizer` module explains why not candle's helper).
//! * Chat template: the GGUF's own Jinja template, rendered ([`JinjaTemplate`]); the built-in
//!   shapes of [`ChatTemplate`] when the file has none (or it does not render) or an override
//!   is configured. The recognised shape still names the end-of-turn tokens.
//! * Speed: on CPU, tensor types without SIMD kernels in candle (Q5_0, Q5_1, and Q4_1 when
//!   candle's model runs the file) are re-quantized to Q8_0 at load
//!   ([`LoadOptions::requantize`]); Warden's llama pass has its own Q4_1 kernel.
//! * Prefix cache ([`LoadOptions::prefix_cache`]): the fixed start of a prompt (chat header,
//!   system text, user header: [`LlmModel::prompt_prefix`]) is prefilled once per system
//!   text, and a copy of the model holding its KV cache is kept; each call starts from that
//!   copy and prefills only the rest (the incident). The cache applies only when the prompt's
//!   tokens start with the prefix's tokens, so the text is the one a full prefill gives.
//!   candle's Qwen2 model cannot be copied and its Gemma 3 model cannot take several tokens
//!   after a cached position: both always prefill in full. Otherwise each call
//!   starts from an empty KV cache, so identical calls give identical text.
//! * Constrained decoding ([`TextGenerator::generate_constrained`], [`crate::constrain`]):
//!   the logits are masked so every sentence is made of allowed words and closed by the
//!   code's citation.
//! * Limits: the llama implementation precomputes RoPE for 4096 positions, so its usable
//!   context is `min(context_length, 4096)`; candle's Gemma 3 precomputes 131072 positions per
//!   layer (several GB for real models) and applies the sliding window only to the prompt.

mod chat;
mod device;
mod download;
mod gguf;
mod jinja;
mod native;
mod tokenizer;

use std::fs::File;
use std::io::{Read, Seek};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use candle_core::quantized::gguf_file;
use candle_core::{DType, Device, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling};
use candle_transformers::models::{quantized_gemma3, quantized_llama, quantized_qwen2};

use crate::constrain::{Plan, SentenceState, Step, TokenTexts};
use crate::{ChatPrompt, Error, GenerateOptions, Generation, ModelInfo, Result, StopReason, TextGenerator};

pub use chat::ChatTemplate;
pub use device::DeviceSpec;
pub use download::{parse_sha256, pull, pull_with_report, sha256_file, verify_sha256, ChecksumSource, Pulled};
pub use jinja::{JinjaTemplate, Message};

/// An option value that does not parse (device, chat template).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseOptionError(pub String);

/// Architectures this runtime can load.
pub const SUPPORTED_ARCHITECTURES: [&str; 3] = ["llama", "qwen2", "gemma3"];

/// How to load a model.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadOptions {
    /// The GGUF file.
    pub model: PathBuf,
    /// A `tokenizer.json` to use instead of the GGUF's tokenizer metadata.
    pub tokenizer: Option<PathBuf>,
    pub device: DeviceSpec,
    /// Overrides the chat template recognised from the file.
    pub chat_template: Option<ChatTemplate>,
    /// Convert Q4_1/Q5_0/Q5_1 tensors to Q8_0 at load. `None`: on for the CPU, off for CUDA.
    pub requantize: Option<bool>,
    /// Penalty for tokens repeated within the last `repeat_last_n` *generated* tokens
    /// (1.0 disables it). Small models otherwise loop; prompt tokens are not penalised, so the
    /// model can still quote evidence ids from the prompt.
    pub repeat_penalty: f32,
    pub repeat_last_n: usize,
    /// Compute the file's SHA-256 at load (one extra read of the file).
    pub compute_sha256: bool,
    /// Refuse to load unless the file has this SHA-256 (implies computing it).
    pub expected_sha256: Option<String>,
    /// Keep the KV cache of the prompt's fixed prefix (chat header and system text) and reuse
    /// it for every prompt with the same system text (see the module docs).
    pub prefix_cache: bool,
    /// Run llama-family models on the CPU with Warden's own forward pass (Q4_1 kernels, an
    /// in-place KV cache); `false` runs candle's `quantized_llama` instead.
    pub native: bool,
}

impl LoadOptions {
    /// Defaults for `model`: GGUF tokenizer, CPU, template from the file, re-quantization on
    /// the CPU, repeat penalty 1.1 over 64 tokens, SHA-256 computed.
    pub fn new(model: impl Into<PathBuf>) -> Self {
        Self {
            model: model.into(),
            tokenizer: None,
            device: DeviceSpec::Cpu,
            chat_template: None,
            requantize: None,
            repeat_penalty: 1.1,
            repeat_last_n: 64,
            compute_sha256: true,
            expected_sha256: None,
            prefix_cache: true,
            native: true,
        }
    }

    /// Whether re-quantization applies on this device.
    pub fn requantize_effective(&self) -> bool {
        self.requantize.unwrap_or(self.device.is_cpu())
    }
}

/// The candle model behind an [`LlmModel`].
enum Weights {
    Native(native::NativeLlama),
    Llama(quantized_llama::ModelWeights),
    Qwen2(quantized_qwen2::ModelWeights),
    Gemma3(quantized_gemma3::ModelWeights),
}

impl Weights {
    fn forward(&mut self, input: &Tensor, pos: usize) -> candle_core::Result<Tensor> {
        match self {
            Weights::Native(m) => {
                let tokens = input.flatten_all()?.to_vec1::<u32>()?;
                let logits = m.forward(&tokens, pos)?;
                let n = logits.len();
                Tensor::from_vec(logits, (1, n), &Device::Cpu)
            }
            Weights::Llama(m) => m.forward(input, pos),
            Weights::Qwen2(m) => m.forward(input, pos),
            Weights::Gemma3(m) => m.forward(input, pos),
        }
    }

    /// A copy that shares the weights and holds the current KV cache. `None` for candle's
    /// Qwen2 model, which cannot be copied, and for Gemma 3, whose attention mask fails for
    /// several tokens after a cached position (a dtype mismatch in candle 0.11.1): neither
    /// gets a prefix cache.
    fn snapshot(&self) -> Option<Weights> {
        match self {
            Weights::Native(m) => Some(Weights::Native(m.clone())),
            Weights::Llama(m) => Some(Weights::Llama(m.clone())),
            Weights::Gemma3(_) | Weights::Qwen2(_) => None,
        }
    }

    /// Whether several tokens may be fed after a cached position in one pass (see
    /// [`Weights::snapshot`] for Gemma 3).
    fn batches_after_cache(&self) -> bool {
        !matches!(self, Weights::Gemma3(_))
    }

    /// Frees the KV cache between calls (Gemma 3 has no method for it; its cache is
    /// overwritten at position 0 like the others').
    fn clear_cache(&mut self) {
        match self {
            Weights::Native(m) => m.clear(),
            Weights::Llama(m) => m.clear_kv_cache(),
            Weights::Qwen2(m) => m.clear_kv_cache(),
            Weights::Gemma3(_) => {}
        }
    }
}

/// The KV cache after the fixed prefix of the prompts with one system text.
struct PrefixCache {
    system: String,
    ids: Vec<u32>,
    weights: Weights,
}

/// Stands for the user's text when the fixed prefix of a built-in template is computed.
const SENTINEL: &str = "\u{1}WARDEN-USER-TEXT\u{1}";

/// A loaded GGUF model that generates text.
pub struct LlmModel {
    weights: Weights,
    tokenizer: tokenizers::Tokenizer,
    template: ChatTemplate,
    /// The GGUF's own chat template, when it has a usable one and no override was given.
    jinja: Option<JinjaTemplate>,
    /// The BOS token's text: a rendered prompt that starts with it gets no second BOS.
    bos_text: Option<String>,
    use_prefix_cache: bool,
    prefix: Option<PrefixCache>,
    token_texts: Option<TokenTexts>,
    device: Device,
    bos: Option<u32>,
    add_bos: bool,
    stop_ids: Vec<u32>,
    context_length: usize,
    repeat_penalty: f32,
    repeat_last_n: usize,
    requantized: usize,
    info: ModelInfo,
}

impl std::fmt::Debug for LlmModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmModel").field("info", &self.info).finish_non_exhaustive()
    }
}

fn load_err(path: &Path, message: impl Into<String>) -> Error {
    Error::Load { path: path.display().to_string(), message: message.into() }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string())
}

/// Checks the hyper-parameters candle would divide by or index with, so a malformed file is a
/// load error rather than a panic.
fn check_hparams(arch: &str, md: &gguf::Metadata) -> std::result::Result<(), String> {
    let need = |key: String| -> std::result::Result<u64, String> {
        match gguf::get_u64(md, &key) {
            Some(0) => Err(format!("metadata `{key}` is 0")),
            Some(v) => Ok(v),
            None => Err(format!("metadata `{key}` is missing or not an integer")),
        }
    };
    let heads = need(format!("{arch}.attention.head_count"))?;
    let kv_heads = need(format!("{arch}.attention.head_count_kv"))?;
    let embd = need(format!("{arch}.embedding_length"))?;
    need(format!("{arch}.block_count"))?;
    if heads % kv_heads != 0 {
        return Err(format!("head_count {heads} is not a multiple of head_count_kv {kv_heads}"));
    }
    match arch {
        "gemma3" => {
            need("gemma3.attention.key_length".to_string())?;
            need("gemma3.attention.sliding_window".to_string())?;
            if let Some(0) = gguf::get_u64(md, "gemma3.attention.sliding_window_type") {
                return Err("metadata `gemma3.attention.sliding_window_type` is 0".into());
            }
        }
        _ => {
            if embd % heads != 0 {
                return Err(format!("embedding_length {embd} is not a multiple of head_count {heads}"));
            }
        }
    }
    if arch == "llama" {
        need("llama.rope.dimension_count".to_string())?;
    }
    if arch == "qwen2" {
        need("qwen2.context_length".to_string())?;
    }
    Ok(())
}

impl LlmModel {
    /// Loads a model. Every failure about the file is an [`Error::Load`] naming it.
    pub fn load(opts: &LoadOptions) -> Result<Self> {
        let started = Instant::now();
        let path = opts.model.as_path();
        let device = opts.device.open().map_err(|m| load_err(path, m))?;

        let sha256 = if opts.compute_sha256 || opts.expected_sha256.is_some() {
            let actual = sha256_file(path).map_err(|e| load_err(path, format!("cannot read: {e}")))?;
            if let Some(expected) = &opts.expected_sha256 {
                let expected = parse_sha256(expected).map_err(|e| load_err(path, e.to_string()))?;
                if expected != actual {
                    return Err(load_err(path, format!("SHA-256 mismatch: expected {expected}, got {actual}")));
                }
            }
            Some(actual)
        } else {
            None
        };

        let mut file = File::open(path).map_err(|e| load_err(path, format!("cannot open: {e}")))?;
        let content =
            gguf_file::Content::read(&mut file).map_err(|e| load_err(path, format!("not a valid GGUF file: {e}")))?;
        let md = &content.metadata;
        let arch = gguf::get_str(md, "general.architecture")
            .ok_or_else(|| load_err(path, "metadata `general.architecture` is missing"))?
            .to_string();
        if !SUPPORTED_ARCHITECTURES.contains(&arch.as_str()) {
            return Err(load_err(
                path,
                format!("unsupported architecture `{arch}` (supported: {})", SUPPORTED_ARCHITECTURES.join(", ")),
            ));
        }
        check_hparams(&arch, md).map_err(|m| load_err(path, format!("{arch} model: {m}")))?;
        let name = gguf::get_str(md, "general.name").map(str::to_string);
        let summary = gguf::summarize_tensors(&content);
        let context_length = {
            let declared = gguf::get_u64(md, &format!("{arch}.context_length")).and_then(|n| usize::try_from(n).ok());
            let limit = match arch.as_str() {
                "llama" => quantized_llama::MAX_SEQ_LEN,
                "gemma3" => quantized_gemma3::MAX_SEQ_LEN,
                _ => usize::MAX,
            };
            declared.unwrap_or(limit.min(4096)).min(limit)
        };

        // Tokenizer.
        let (mut tok, tokenizer_source) = match &opts.tokenizer {
            Some(tp) => (
                tokenizers::Tokenizer::from_file(tp)
                    .map_err(|e| load_err(tp, format!("cannot load tokenizer.json: {e}")))?,
                tp.display().to_string(),
            ),
            None => {
                (tokenizer::from_gguf(md).map_err(|m| load_err(path, format!("tokenizer: {m}")))?, "gguf".to_string())
            }
        };
        let vocab_len = gguf::get_str_array(md, "tokenizer.ggml.tokens")
            .map(|t| t.len())
            .unwrap_or_else(|_| tok.get_vocab_size(true));

        // Chat template.
        let template = match opts.chat_template {
            Some(t) => t,
            None => gguf::get_str(md, "tokenizer.chat_template")
                .and_then(ChatTemplate::from_jinja)
                .unwrap_or_else(|| ChatTemplate::fallback(&arch, |t| tok.token_to_id(t).is_some())),
        };
        tokenizer::ensure_markers(&mut tok, template.markers())
            .map_err(|m| load_err(path, format!("tokenizer: {m}")))?;

        // BOS and stop tokens.
        let bos = gguf::get_token_id(md, "tokenizer.ggml.bos_token_id", vocab_len).or_else(|| match template {
            ChatTemplate::Llama3 => tok.token_to_id("<|begin_of_text|>"),
            ChatTemplate::Gemma => tok.token_to_id("<bos>"),
            ChatTemplate::Llama2 => tok.token_to_id("<s>"),
            ChatTemplate::ChatMl => None,
        });
        let gguf_add_bos = gguf::get_bool(md, "tokenizer.ggml.add_bos_token").unwrap_or(false);
        let bos_text = bos.and_then(|id| tok.id_to_token(id)).filter(|t| !t.is_empty());
        // The GGUF's own template, unless an override was given; a template that does not
        // compile or render is replaced by the recognised built-in shape.
        let (jinja, jinja_note) = match (opts.chat_template, gguf::get_str(md, "tokenizer.chat_template")) {
            (None, Some(src)) => {
                let eos_text = gguf::get_token_id(md, "tokenizer.ggml.eos_token_id", vocab_len)
                    .and_then(|id| tok.id_to_token(id))
                    .unwrap_or_default();
                let probe = ChatPrompt { system: "s".into(), user: "u".into() };
                match JinjaTemplate::new(src, bos_text.as_deref().unwrap_or(""), &eos_text)
                    .and_then(|j| j.render_prompt(&probe).map(|_| j))
                {
                    Ok(j) => (Some(j), None),
                    Err(e) => (None, Some(e)),
                }
            }
            _ => (None, None),
        };
        let add_bos = bos.is_some() && (template.requires_bos() || gguf_add_bos);
        let mut stop_ids: Vec<u32> = template.end_of_turn_tokens().iter().filter_map(|t| tok.token_to_id(t)).collect();
        for key in ["tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"] {
            if let Some(id) = gguf::get_token_id(md, key, vocab_len) {
                stop_ids.push(id);
            }
        }
        stop_ids.sort_unstable();
        stop_ids.dedup();
        if stop_ids.is_empty() {
            return Err(load_err(path, format!("no end-of-turn token found for chat template `{template}`")));
        }

        // Weights, re-quantized in memory when that helps.
        // Warden's own llama pass reads Q4_1 as it is; candle's models get Q8_0 instead.
        let use_native = opts.native && device.is_cpu() && arch == "llama" && native::supports(&content);
        let candidates =
            if opts.requantize_effective() { gguf::requantize_candidates(&content, !use_native) } else { Vec::new() };
        let requantized = candidates.len();
        let builder = Builder { arch: &arch, device: &device, native: use_native, context_length };
        let weights = if candidates.is_empty() {
            builder.build(content, &mut file)
        } else {
            let (content, mut mem) =
                gguf::requantize_to_memory(&content, &mut file, &candidates).map_err(|m| load_err(path, m))?;
            builder.build(content, &mut mem)
        }
        .map_err(|m| load_err(path, format!("cannot build the {arch} model: {m}")))?;

        let info = ModelInfo {
            path: path.display().to_string(),
            architecture: arch,
            name,
            parameters: summary.parameters,
            quantization: summary.dominant,
            context_length,
            chat_template: match (&jinja, &jinja_note) {
                (Some(_), _) => format!("{} (gguf jinja)", template.name()),
                (None, Some(_)) => format!("{} (built-in; the gguf template failed to render)", template.name()),
                (None, None) => template.name().to_string(),
            },
            tokenizer: tokenizer_source,
            device: opts.device.to_string(),
            sha256,
            load_time: started.elapsed(),
        };
        Ok(Self {
            weights,
            tokenizer: tok,
            template,
            jinja,
            bos_text,
            use_prefix_cache: opts.prefix_cache,
            prefix: None,
            token_texts: None,
            device,
            bos,
            add_bos,
            stop_ids,
            context_length,
            repeat_penalty: opts.repeat_penalty,
            repeat_last_n: opts.repeat_last_n,
            requantized,
            info,
        })
    }

    /// The chat template in use.
    pub fn chat_template(&self) -> ChatTemplate {
        self.template
    }

    /// Usable context in tokens (prompt plus generated).
    pub fn context_length(&self) -> usize {
        self.context_length
    }

    /// How many tensors were re-quantized to Q8_0 at load.
    pub fn requantized_tensors(&self) -> usize {
        self.requantized
    }

    /// Token ids that end generation.
    pub fn stop_token_ids(&self) -> &[u32] {
        &self.stop_ids
    }

    /// Whether prompts are rendered by the GGUF's own (Jinja) chat template.
    pub fn uses_gguf_template(&self) -> bool {
        self.jinja.is_some()
    }

    /// The prompt text exactly as the model sees it: rendered by the GGUF's template, or by
    /// the built-in shape when there is none (or it fails to render). [`Self::prompt_tokens`]
    /// puts the BOS token in front when the model wants one and the text does not start with
    /// it already (templates such as Llama 3's and Gemma's write it themselves).
    pub fn render_prompt(&self, prompt: &ChatPrompt) -> String {
        match &self.jinja {
            Some(j) => j.render_prompt(prompt).unwrap_or_else(|_| self.template.render(prompt)),
            None => self.template.render(prompt),
        }
    }

    /// Token ids of a rendered prompt (or prefix), BOS included when the model wants it.
    fn text_tokens(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids = Vec::new();
        let has_bos = self.bos_text.as_deref().is_some_and(|b| text.starts_with(b));
        if self.add_bos && !has_bos {
            ids.extend(self.bos);
        }
        ids.extend(self.encode(text)?);
        Ok(ids)
    }

    /// The fixed start of every prompt with this system text (chat header, system turn, user
    /// header); `None` when the template does not put the user's text after a fixed prefix.
    pub fn prompt_prefix(&self, system: &str) -> Option<String> {
        let text = match &self.jinja {
            Some(j) => j.prefix(system)?,
            None => {
                let full = self.template.render(&ChatPrompt { system: system.to_string(), user: SENTINEL.into() });
                full[..full.find(SENTINEL)?].to_string()
            }
        };
        Some(text)
    }

    /// Token ids of `text`; special-token markers in it encode as special tokens.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.tokenizer.encode(text, false).map(|e| e.get_ids().to_vec()).map_err(|e| Error::Tokenizer(e.to_string()))
    }

    /// The text of token ids (special tokens skipped).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.tokenizer.decode(ids, true).map_err(|e| Error::Tokenizer(e.to_string()))
    }

    /// The vocabulary string of one token id.
    pub fn token_str(&self, id: u32) -> Option<String> {
        self.tokenizer.id_to_token(id)
    }

    /// The next-token logits after `ids`, fed from an empty cache `chunk` tokens at a time
    /// (for tests and benches that compare runtimes; no prefix cache).
    pub fn next_logits(&mut self, ids: &[u32], chunk: usize) -> Result<Vec<f32>> {
        if ids.is_empty() || chunk == 0 {
            return Err(Error::Inference("no tokens to feed".into()));
        }
        self.weights.clear_cache();
        let mut last = None;
        for (i, part) in ids.chunks(chunk).enumerate() {
            last = Some(self.feed(part, i * chunk)?);
        }
        self.weights.clear_cache();
        let logits = last.ok_or_else(|| Error::Inference("no tokens to feed".into()))?;
        Self::logits_vec(&logits)
    }

    /// The prompt's token ids, BOS included when the model wants it.
    pub fn prompt_tokens(&self, prompt: &ChatPrompt) -> Result<Vec<u32>> {
        self.text_tokens(&self.render_prompt(prompt))
    }

    fn next_token(&self, logits: &Tensor, sampler: &mut LogitsProcessor, generated: &[u32]) -> Result<u32> {
        let inf = |e: candle_core::Error| Error::Inference(e.to_string());
        let logits = logits.squeeze(0).and_then(|l| l.to_dtype(DType::F32)).map_err(inf)?;
        let logits = if self.repeat_penalty != 1.0 && !generated.is_empty() {
            let start = generated.len().saturating_sub(self.repeat_last_n);
            candle_transformers::utils::apply_repeat_penalty(&logits, self.repeat_penalty, &generated[start..])
                .map_err(inf)?
        } else {
            logits
        };
        sampler.sample(&logits).map_err(inf)
    }

    fn run(&mut self, prompt: &ChatPrompt, opts: &GenerateOptions) -> Result<Generation> {
        let inf = |e: candle_core::Error| Error::Inference(e.to_string());
        let ids = self.prompt_tokens(prompt)?;
        if ids.is_empty() {
            return Err(Error::Inference("the prompt encodes to no tokens".into()));
        }
        if ids.len() >= self.context_length {
            return Err(Error::Inference(format!(
                "the prompt has {} tokens but the model's context is {} tokens",
                ids.len(),
                self.context_length
            )));
        }
        let past_deadline = || opts.deadline.is_some_and(|d| Instant::now() >= d);
        if past_deadline() {
            return Err(Error::Budget { generated: 0 });
        }
        if opts.max_tokens == 0 {
            return Ok(Generation {
                text: String::new(),
                prompt_tokens: ids.len(),
                generated_tokens: 0,
                prefill: Duration::ZERO,
                decode: Duration::ZERO,
                stop: StopReason::MaxTokens,
            });
        }
        let sampling = if opts.temperature <= 0.0 || !opts.temperature.is_finite() {
            Sampling::ArgMax
        } else {
            Sampling::All { temperature: opts.temperature }
        };
        let mut sampler = LogitsProcessor::from_sampling(opts.seed, sampling);
        let stops: Vec<&str> = opts.stop.iter().map(|s| s.as_str()).filter(|s| !s.is_empty()).collect();

        let prefill_start = Instant::now();
        let logits = self.prefill(prompt, &ids)?;
        let mut next = self.next_token(&logits, &mut sampler, &[])?;
        let prefill = prefill_start.elapsed();

        let decode_start = Instant::now();
        let mut generated: Vec<u32> = Vec::new();
        let mut text = String::new();
        let stop = loop {
            if self.stop_ids.contains(&next) {
                break StopReason::EndOfTurn;
            }
            generated.push(next);
            text = self.decode(&generated)?;
            if let Some(cut) = stops.iter().filter_map(|s| text.find(s)).min() {
                text.truncate(cut);
                break StopReason::StopString;
            }
            if generated.len() >= opts.max_tokens || ids.len() + generated.len() >= self.context_length {
                break StopReason::MaxTokens;
            }
            if past_deadline() {
                return Err(Error::Budget { generated: generated.len() });
            }
            let pos = ids.len() + generated.len() - 1;
            let input = Tensor::new(&[next], &self.device).and_then(|t| t.unsqueeze(0)).map_err(inf)?;
            let logits = self.weights.forward(&input, pos).map_err(inf)?;
            next = self.next_token(&logits, &mut sampler, &generated)?;
        };
        let decode = decode_start.elapsed();
        // A token cut short mid-character decodes to U+FFFD: drop it.
        let text = text.trim().trim_end_matches('\u{FFFD}').trim_end().to_string();
        Ok(Generation { text, prompt_tokens: ids.len(), generated_tokens: generated.len(), prefill, decode, stop })
    }
}

impl LlmModel {
    /// Runs the prompt `ids` through the model and returns the last position's logits,
    /// starting from the cached prefix when it applies.
    fn prefill(&mut self, prompt: &ChatPrompt, ids: &[u32]) -> Result<Tensor> {
        let inf = |e: candle_core::Error| Error::Inference(e.to_string());
        let start = self.reuse_prefix(prompt, ids)?;
        let input = Tensor::new(&ids[start..], &self.device).and_then(|t| t.unsqueeze(0)).map_err(inf)?;
        self.weights.forward(&input, start).map_err(inf)
    }

    /// Puts the KV cache of the prompt's fixed prefix in place (computing and keeping it when
    /// the system text changed) and returns the prefix length; 0 when there is no usable
    /// prefix (cache off, a template without one, a tokenization that differs at the seam, a
    /// model that cannot be copied).
    fn reuse_prefix(&mut self, prompt: &ChatPrompt, ids: &[u32]) -> Result<usize> {
        if !self.use_prefix_cache {
            return Ok(0);
        }
        if let Some(c) = &self.prefix {
            if c.system == prompt.system && ids.len() > c.ids.len() && ids.starts_with(&c.ids) {
                if let Some(w) = c.weights.snapshot() {
                    self.weights = w;
                    return Ok(c.ids.len());
                }
            }
        }
        let Some(text) = self.prompt_prefix(&prompt.system) else { return Ok(0) };
        let pids = self.text_tokens(&text)?;
        if pids.len() < 2 || pids.len() >= ids.len() || !ids.starts_with(&pids) || self.weights.snapshot().is_none() {
            return Ok(0);
        }
        let inf = |e: candle_core::Error| Error::Inference(e.to_string());
        let input = Tensor::new(pids.as_slice(), &self.device).and_then(|t| t.unsqueeze(0)).map_err(inf)?;
        self.weights.forward(&input, 0).map_err(inf)?;
        let Some(weights) = self.weights.snapshot() else { return Ok(0) };
        let len = pids.len();
        self.prefix = Some(PrefixCache { system: prompt.system.clone(), ids: pids, weights });
        Ok(len)
    }

    /// Tokens of the cached prefix (0 when none is cached).
    pub fn cached_prefix_tokens(&self) -> usize {
        self.prefix.as_ref().map_or(0, |c| c.ids.len())
    }

    fn token_texts(&mut self) -> &TokenTexts {
        let tok = &self.tokenizer;
        self.token_texts.get_or_insert_with(|| {
            let n = tok.get_vocab_size(true);
            let pieces: Vec<String> = (0..n).map(|id| tok.id_to_token(id as u32).unwrap_or_default()).collect();
            let special: std::collections::HashSet<u32> = tok.get_added_tokens_decoder().keys().copied().collect();
            TokenTexts::new(&pieces, &special)
        })
    }

    fn logits_vec(logits: &Tensor) -> Result<Vec<f32>> {
        logits
            .squeeze(0)
            .and_then(|l| l.to_dtype(DType::F32))
            .and_then(|l| l.to_vec1::<f32>())
            .map_err(|e| Error::Inference(e.to_string()))
    }

    /// Feeds `tokens` at `pos` and returns the last one's logits.
    fn feed(&mut self, tokens: &[u32], pos: usize) -> Result<Tensor> {
        let inf = |e: candle_core::Error| Error::Inference(e.to_string());
        if tokens.len() > 1 && !self.weights.batches_after_cache() {
            let mut last = None;
            for (i, t) in tokens.iter().enumerate() {
                last = Some(self.feed(&[*t], pos + i)?);
            }
            return last.ok_or_else(|| Error::Inference("nothing to feed".into()));
        }
        let input = Tensor::new(tokens, &self.device).and_then(|t| t.unsqueeze(0)).map_err(inf)?;
        self.weights.forward(&input, pos).map_err(inf)
    }

    /// Constrained decoding (see [`crate::constrain`]).
    fn run_constrained(&mut self, prompt: &ChatPrompt, plan: &Plan, opts: &GenerateOptions) -> Result<Generation> {
        let ids = self.prompt_tokens(prompt)?;
        if ids.is_empty() {
            return Err(Error::Inference("the prompt encodes to no tokens".into()));
        }
        if ids.len() >= self.context_length {
            return Err(Error::Inference(format!(
                "the prompt has {} tokens but the model's context is {} tokens",
                ids.len(),
                self.context_length
            )));
        }
        let past_deadline = || opts.deadline.is_some_and(|d| Instant::now() >= d);
        if past_deadline() {
            return Err(Error::Budget { generated: 0 });
        }
        let texts = self.token_texts().clone();
        let sampling = if opts.temperature <= 0.0 || !opts.temperature.is_finite() {
            Sampling::ArgMax
        } else {
            Sampling::All { temperature: opts.temperature }
        };
        let mut sampler = LogitsProcessor::from_sampling(opts.seed, sampling);

        let prefill_start = Instant::now();
        let mut logits = Self::logits_vec(&self.prefill(prompt, &ids)?)?;
        let prefill = prefill_start.elapsed();
        let decode_start = Instant::now();
        let mut pos = ids.len();
        let mut chosen: Vec<u32> = Vec::new();
        let mut text = String::new();
        let mut body = String::new();
        let mut sentence = 0usize;
        let mut state = SentenceState::new();
        let stop = loop {
            let Some(sp) = plan.sentences.get(sentence) else { break StopReason::EndOfTurn };
            let can_end = state.can_end(sp, plan);
            let out_of_room = chosen.len() >= opts.max_tokens || pos + 8 >= self.context_length;
            if out_of_room {
                if can_end {
                    text.push_str(body.trim());
                    text.push_str(&plan.citation(sentence));
                }
                break StopReason::MaxTokens;
            }
            if past_deadline() {
                return Err(Error::Budget { generated: chosen.len() });
            }
            // The mask: allowed tokens keep their logits, the end-of-turn tokens too when the
            // sentence may end here; everything else is -inf.
            let mut masked = vec![f32::NEG_INFINITY; logits.len()];
            let mut ends: Vec<u32> = Vec::new();
            for (id, step) in texts.allowed(&state, sp, plan) {
                if let Some(&l) = logits.get(id as usize) {
                    masked[id as usize] = l;
                    if step == Step::End {
                        ends.push(id);
                    }
                }
            }
            if can_end {
                for &id in &self.stop_ids {
                    if let Some(&l) = logits.get(id as usize) {
                        masked[id as usize] = l;
                    }
                }
            }
            if self.repeat_penalty != 1.0 {
                let start = chosen.len().saturating_sub(self.repeat_last_n);
                for &id in &chosen[start..] {
                    if let Some(l) = masked.get_mut(id as usize) {
                        if l.is_finite() {
                            *l = if *l >= 0.0 { *l / self.repeat_penalty } else { *l * self.repeat_penalty };
                        }
                    }
                }
            }
            if masked.iter().all(|l| !l.is_finite()) {
                // Nothing fits: keep the sentence if it can end, else drop it, and stop.
                if can_end {
                    text.push_str(body.trim());
                    text.push_str(&plan.citation(sentence));
                }
                break StopReason::EndOfTurn;
            }
            let t = Tensor::new(masked.as_slice(), &Device::Cpu).map_err(|e| Error::Inference(e.to_string()))?;
            let next = sampler.sample(&t).map_err(|e| Error::Inference(e.to_string()))?;
            chosen.push(next);
            let is_stop = self.stop_ids.contains(&next);
            if is_stop || ends.contains(&next) {
                text.push_str(body.trim());
                text.push_str(&plan.citation(sentence));
                text.push(' ');
                body.clear();
                state = SentenceState::new();
                sentence += 1;
                if is_stop || sentence >= plan.sentences.len() {
                    break StopReason::EndOfTurn;
                }
                let forced = self.encode(plan.citation(sentence - 1).as_str())?;
                logits = Self::logits_vec(&self.feed(&forced, pos)?)?;
                pos += forced.len();
                continue;
            }
            let piece = texts.get(next as usize).unwrap_or_default();
            match state.advance(piece, sp, plan) {
                Some((st, _)) => state = st,
                None => return Err(Error::Inference("constrained decoding chose a masked token".into())),
            }
            body.push_str(piece);
            logits = Self::logits_vec(&self.feed(&[next], pos)?)?;
            pos += 1;
        };
        let decode = decode_start.elapsed();
        Ok(Generation {
            text: text.trim().to_string(),
            prompt_tokens: ids.len(),
            generated_tokens: chosen.len(),
            prefill,
            decode,
            stop,
        })
    }
}

/// What [`LlmModel::load`] builds the weights with.
struct Builder<'a> {
    arch: &'a str,
    device: &'a Device,
    /// Warden's own llama pass ([`native`]).
    native: bool,
    context_length: usize,
}

impl Builder<'_> {
    fn build<R: Read + Seek>(
        &self,
        content: gguf_file::Content,
        reader: &mut R,
    ) -> std::result::Result<Weights, String> {
        let device = self.device;
        let built = catch_unwind(AssertUnwindSafe(|| match self.arch {
            "llama" if self.native => {
                native::NativeLlama::from_gguf(&content, reader, self.context_length).map(Weights::Native)
            }
            "llama" => quantized_llama::ModelWeights::from_gguf(content, reader, device).map(Weights::Llama),
            "qwen2" => quantized_qwen2::ModelWeights::from_gguf(content, reader, device).map(Weights::Qwen2),
            _ => quantized_gemma3::ModelWeights::from_gguf(content, reader, device).map(Weights::Gemma3),
        }));
        match built {
            Ok(Ok(w)) => Ok(w),
            Ok(Err(e)) => Err(e.to_string()),
            Err(p) => Err(format!("malformed model ({})", panic_message(p.as_ref()))),
        }
    }
}

impl TextGenerator for LlmModel {
    fn generate(&mut self, prompt: &ChatPrompt, opts: &GenerateOptions) -> Result<Generation> {
        let result = catch_unwind(AssertUnwindSafe(|| self.run(prompt, opts)));
        self.weights.clear_cache();
        match result {
            Ok(r) => r,
            Err(p) => Err(Error::Inference(format!("model panicked: {}", panic_message(p.as_ref())))),
        }
    }

    fn generate_constrained(
        &mut self,
        prompt: &ChatPrompt,
        plan: &Plan,
        opts: &GenerateOptions,
    ) -> Option<Result<Generation>> {
        let result = catch_unwind(AssertUnwindSafe(|| self.run_constrained(prompt, plan, opts)));
        self.weights.clear_cache();
        Some(match result {
            Ok(r) => r,
            Err(p) => Err(Error::Inference(format!("model panicked: {}", panic_message(p.as_ref())))),
        })
    }

    fn info(&self) -> ModelInfo {
        self.info.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_can_move_to_a_worker_thread() {
        fn is_send<T: Send>() {}
        is_send::<LlmModel>();
    }

    #[test]
    fn options_defaults() {
        let o = LoadOptions::new("m.gguf");
        assert!(o.requantize_effective());
        let o = LoadOptions { device: DeviceSpec::Cuda(0), ..LoadOptions::new("m.gguf") };
        assert!(!o.requantize_effective());
        let o = LoadOptions { requantize: Some(true), ..o };
        assert!(o.requantize_effective());
    }
}
