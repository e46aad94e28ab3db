//! The seam between summaries and a text generator.
//!
//! [`crate::summary`] asks a [`TextGenerator`] for text and checks what comes back; the local
//! GGUF runtime in [`crate::llm`] is the production implementation, tests use scripted ones.
//! A generator only ever returns text: nothing it writes is executed or chooses an action.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::constrain::Plan;
use crate::Result;

/// A chat prompt: the system instructions and one user turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatPrompt {
    pub system: String,
    pub user: String,
}

/// How to generate.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// Upper bound on generated tokens.
    pub max_tokens: usize,
    /// `0.0` is greedy decoding; above it, sampling with `seed`.
    pub temperature: f64,
    /// Seed for sampling (ignored when greedy).
    pub seed: u64,
    /// Extra stop strings, besides the model's end-of-turn tokens.
    pub stop: Vec<String>,
    /// Give up (with [`crate::Error::Budget`]) when this instant passes.
    pub deadline: Option<Instant>,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self { max_tokens: 160, temperature: 0.0, seed: 42, stop: Vec::new(), deadline: None }
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// An end-of-turn / end-of-sequence token.
    EndOfTurn,
    /// One of the stop strings.
    StopString,
    /// `max_tokens` reached.
    MaxTokens,
}

/// Generated text and how long it took.
#[derive(Debug, Clone, Serialize)]
pub struct Generation {
    pub text: String,
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    /// Time to process the prompt (up to the first generated token's logits).
    #[serde(with = "duration_ms")]
    pub prefill: Duration,
    /// Time spent generating after the prefill.
    #[serde(with = "duration_ms")]
    pub decode: Duration,
    pub stop: StopReason,
}

impl Generation {
    /// Generated tokens per second of decode time.
    pub fn tokens_per_second(&self) -> f64 {
        let s = self.decode.as_secs_f64();
        if s > 0.0 {
            self.generated_tokens as f64 / s
        } else {
            0.0
        }
    }
}

/// What a loaded model is, for `warden model info` and the API.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelInfo {
    /// The file it was loaded from.
    pub path: String,
    /// `llama`, `qwen2`, `gemma3`, ...
    pub architecture: String,
    /// `general.name` from the GGUF metadata, when present.
    pub name: Option<String>,
    /// Parameter count, from the tensors.
    pub parameters: u64,
    /// Dominant quantization type, e.g. `Q4_1`.
    pub quantization: String,
    pub context_length: usize,
    /// `chatml`, `llama3`, `gemma`, ...
    pub chat_template: String,
    /// Where the tokenizer came from: a `tokenizer.json` path or `gguf`.
    pub tokenizer: String,
    /// `cpu` or `cuda:N`.
    pub device: String,
    /// SHA-256 of the file, hex.
    pub sha256: Option<String>,
    #[serde(with = "duration_ms")]
    pub load_time: Duration,
}

/// Something that turns a chat prompt into text.
pub trait TextGenerator {
    fn generate(&mut self, prompt: &ChatPrompt, opts: &GenerateOptions) -> Result<Generation>;

    /// Generates under the constraints of `plan` ([`crate::constrain`]): each sentence made of
    /// the plan's words and closed with its citation. `None`: this generator cannot constrain
    /// its decoding (the caller generates freely instead).
    fn generate_constrained(
        &mut self,
        _prompt: &ChatPrompt,
        _plan: &Plan,
        _opts: &GenerateOptions,
    ) -> Option<Result<Generation>> {
        None
    }

    fn info(&self) -> ModelInfo;
}

mod duration_ms {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64() * 1000.0)
    }
}
