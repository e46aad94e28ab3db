//! Summaries of incidents for humans.
//!
//! Root-cause text is written in two layers. The ranking of candidate causes is deterministic
//! and lives in `warden-detectors` (`rca`). This crate turns a ranking and its evidence into one
//! readable paragraph: [`prompt`] builds a compact prompt with evidence ids (log and cluster
//! text quoted as delimited, truncated data), [`llm`] runs a local GGUF model with candle,
//! [`grounding`] rejects any sentence that cites no known evidence id or names a workload,
//! node, version, number or time that its cited evidence does not contain, and [`summary`]
//! falls back to the deterministic [`template`] text when there is no model, when inference
//! fails or runs out of time, or when the model's text fails grounding. The model's text is
//! for people only: nothing here chooses or triggers an action.

pub mod constrain;
pub mod error;
pub mod generate;
pub mod grounding;
pub mod llm;
pub mod prompt;
pub mod summary;
pub mod template;

pub use error::{Error, Result};
pub use generate::{ChatPrompt, GenerateOptions, Generation, ModelInfo, StopReason, TextGenerator};
pub use template::{format_value, template_summary, IncidentFacts};
