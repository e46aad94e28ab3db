//! Temporary stand-ins while the models crate's summary API lands.
use serde::{Deserialize, Serialize};
use warden_detectors::rca::{Evidence, Ranking, Subject};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Source { Llm, LlmFiltered, Template }

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary { pub text: String, pub source: Source, pub fallback_reason: Option<String>, pub model: Option<String> }

impl Summary {
    pub fn template_only(reason: String) -> Self { Self { text: String::new(), source: Source::Template, fallback_reason: Some(reason), model: None } }
}

#[derive(Clone, Default)]
pub struct SummaryOptions { pub max_tokens: usize, pub time_budget: std::time::Duration }

pub struct SummaryInput<'a> { pub title: &'a str, pub symptom: Option<&'a Subject>, pub started: i64, pub ranking: &'a Ranking, pub evidence: &'a [Evidence] }

pub fn summarize(_i: &SummaryInput, _g: Option<&mut dyn warden_models::TextGenerator>, _o: &SummaryOptions) -> Summary { Summary::template_only("shim".into()) }

pub struct LlmModel;
#[derive(Default)]
pub struct LoadOptions { pub path: std::path::PathBuf, pub tokenizer: Option<std::path::PathBuf>, pub chat_template: Option<String>, pub device: String }
impl LlmModel {
    pub fn load(_o: &LoadOptions) -> Result<Self, String> { Err("shim".into()) }
}
impl warden_models::TextGenerator for LlmModel {
    fn generate(&mut self, _p: &warden_models::ChatPrompt, _o: &warden_models::GenerateOptions) -> warden_models::Result<warden_models::Generation> { Err(warden_models::Error::Inference("shim".into())) }
    fn info(&self) -> warden_models::ModelInfo { unreachable!() }
}
