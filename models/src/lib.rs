//! Summaries of incidents for humans.
//!
//! Later this crate runs a local LLM (candle, GGUF) to write root-cause summaries grounded in
//! collected evidence. What every path needs, and what is here now, is the deterministic
//! template summary: it is what people read when no model is configured, when inference fails,
//! or when a model's text fails the grounding check. It states only facts it was given.

pub mod error;
pub mod template;

pub use error::{Error, Result};
pub use template::{format_value, template_summary, IncidentFacts};
