//! The local LLM runtime: a quantized GGUF model run with candle, on the CPU by default.
//!
//! Why local and why GGUF: incident data (logs, workload names) must not leave the cluster, and
//! one file carries weights, tokenizer and chat template, so `warden model pull` plus a path in
//! the configuration is the whole setup. The model only writes text for people; its output is
//! grounded and checked in [`crate::summary`] and never chooses an action.
//!
//! * Architectures (GGUF `general.architecture`): `llama` (Llama, SmolLM2, Mistral-style) via
//!   candle's `quantized_llama`, `qwen2` via `quantized_qwen2`, `gemma3` via
//!   `quantized_gemma3`. Anything else is a load error naming the file and the architecture.
//! * Tokenizer: a `tokenizer.json` when given, else built from the GGUF metadata
//!   (the private `tokenizer` module explains why not candle's helper).
//! * Chat template: recognised from the GGUF's Jinja template ([`ChatTemplate`]).
//! * Speed: on CPU, tensor types without SIMD kernels in candle (Q4_1, Q5_0, Q5_1) are
//!   re-quantized to Q8_0 at load ([`LoadOptions::requantize`]).
//! * Each [`TextGenerator::generate`] call starts from an empty KV cache: the candle models
//!   overwrite every layer's cache when the position is 0, which the prompt's forward pass
//!   always is, so identical calls give identical text.
//! * Limits: the llama implementation precomputes RoPE for 4096 positions, so its usable
//!   context is `min(context_length, 4096)`; candle's Gemma 3 precomputes 131072 positions per
//!   layer (several GB for real models) and applies the sliding window only to the prompt.

mod chat;
mod device;
mod download;
mod gguf;
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

use crate::{ChatPrompt, Error, GenerateOptions, Generation, ModelInfo, Result, StopReason, TextGenerator};

pub use chat::ChatTemplate;
pub use device::DeviceSpec;
pub use download::{parse_sha256, pull, pull_with_report, sha256_file, verify_sha256, ChecksumSource, Pulled};

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
        }
    }

    /// Whether re-quantization applies on this device.
    pub fn requantize_effective(&self) -> bool {
        self.requantize.unwrap_or(self.device.is_cpu())
    }
}

/// The candle model behind an [`LlmModel`].
enum Weights {
    Llama(quantized_llama::ModelWeights),
    Qwen2(quantized_qwen2::ModelWeights),
    Gemma3(quantized_gemma3::ModelWeights),
}

impl Weights {
    fn forward(&mut self, input: &Tensor, pos: usize) -> candle_core::Result<Tensor> {
        match self {
            Weights::Llama(m) => m.forward(input, pos),
            Weights::Qwen2(m) => m.forward(input, pos),
            Weights::Gemma3(m) => m.forward(input, pos),
        }
    }

    /// Frees the KV cache between calls (Gemma 3 has no method for it; its cache is
    /// overwritten at position 0 like the others').
    fn clear_cache(&mut self) {
        match self {
            Weights::Llama(m) => m.clear_kv_cache(),
            Weights::Qwen2(m) => m.clear_kv_cache(),
            Weights::Gemma3(_) => {}
        }
    }
}

/// A loaded GGUF model that generates text.
pub struct LlmModel {
    weights: Weights,
    tokenizer: tokenizers::Tokenizer,
    template: ChatTemplate,
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
        let add_bos = bos.is_some()
            && (template.requires_bos() || gguf::get_bool(md, "tokenizer.ggml.add_bos_token").unwrap_or(false));
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
        let candidates = if opts.requantize_effective() { gguf::requantize_candidates(&content) } else { Vec::new() };
        let requantized = candidates.len();
        let weights = if candidates.is_empty() {
            build_weights(&arch, content, &mut file, &device)
        } else {
            let (content, mut mem) =
                gguf::requantize_to_memory(&content, &mut file, &candidates).map_err(|m| load_err(path, m))?;
            build_weights(&arch, content, &mut mem, &device)
        }
        .map_err(|m| load_err(path, format!("cannot build the {arch} model: {m}")))?;

        let info = ModelInfo {
            path: path.display().to_string(),
            architecture: arch,
            name,
            parameters: summary.parameters,
            quantization: summary.dominant,
            context_length,
            chat_template: template.name().to_string(),
            tokenizer: tokenizer_source,
            device: opts.device.to_string(),
            sha256,
            load_time: started.elapsed(),
        };
        Ok(Self {
            weights,
            tokenizer: tok,
            template,
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

    /// The prompt text exactly as the model sees it (without the BOS token).
    pub fn render_prompt(&self, prompt: &ChatPrompt) -> String {
        self.template.render(prompt)
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

    /// The prompt's token ids, BOS included when the model wants it.
    pub fn prompt_tokens(&self, prompt: &ChatPrompt) -> Result<Vec<u32>> {
        let mut ids = Vec::new();
        if self.add_bos {
            ids.extend(self.bos);
        }
        ids.extend(self.encode(&self.render_prompt(prompt))?);
        Ok(ids)
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
        let input = Tensor::new(ids.as_slice(), &self.device).and_then(|t| t.unsqueeze(0)).map_err(inf)?;
        let logits = self.weights.forward(&input, 0).map_err(inf)?;
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

fn build_weights<R: Read + Seek>(
    arch: &str,
    content: gguf_file::Content,
    reader: &mut R,
    device: &Device,
) -> std::result::Result<Weights, String> {
    let built = catch_unwind(AssertUnwindSafe(|| match arch {
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

impl TextGenerator for LlmModel {
    fn generate(&mut self, prompt: &ChatPrompt, opts: &GenerateOptions) -> Result<Generation> {
        let result = catch_unwind(AssertUnwindSafe(|| self.run(prompt, opts)));
        self.weights.clear_cache();
        match result {
            Ok(r) => r,
            Err(p) => Err(Error::Inference(format!("model panicked: {}", panic_message(p.as_ref())))),
        }
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
