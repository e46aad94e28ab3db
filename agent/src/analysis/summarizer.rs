//! The summary writer: the configured local model, or the template.
//!
//! The model is loaded once, at start-up, and used by one summary at a time (a mutex): on a
//! small CPU machine two concurrent generations would only both be slow. Generation runs on a
//! blocking thread under the configured time budget. A model that fails to load is reported
//! once and every summary then uses the template, with the reason recorded in the summary.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use warden_detectors::rca::{Evidence, Ranking, Subject};
use warden_models::llm::{LlmModel, LoadOptions};
use warden_models::prompt::SummaryInput;
use warden_models::summary::{summarize, Summary, SummaryOptions};
use warden_models::{ModelInfo, TextGenerator};

use crate::config::ModelSection;

/// Writes summaries; holds the model when one is configured and loaded.
pub struct Summarizer {
    model: Option<Arc<Mutex<Box<dyn TextGenerator + Send>>>>,
    /// Why there is no model (not configured, or the load error).
    unavailable: String,
    options: SummaryOptions,
}

impl Summarizer {
    /// The template only.
    pub fn template_only(reason: &str) -> Self {
        Self { model: None, unavailable: reason.to_string(), options: SummaryOptions::default() }
    }

    /// Load the configured model; on failure, log it and use the template.
    pub fn from_config(section: Option<&ModelSection>) -> Self {
        let Some(m) = section else { return Self::template_only("no model configured") };
        let options =
            SummaryOptions { max_tokens: m.max_tokens, time_budget: m.time_budget.0, ..SummaryOptions::default() };
        let loaded = load_options(m).and_then(|o| LlmModel::load(&o).map_err(|e| e.to_string()));
        match loaded {
            Ok(model) => {
                let info = model.info();
                tracing::info!(model = %info.path, architecture = %info.architecture, device = %info.device, load_ms = info.load_time.as_millis() as u64, "summary model loaded");
                Self::with_generator(Box::new(model), options)
            }
            Err(e) => {
                tracing::error!(error = %e, "the summary model does not load: summaries use the template");
                Self { model: None, unavailable: format!("model failed to load: {e}"), options }
            }
        }
    }

    /// Summaries from `generator` (the loaded model; a scripted one in tests).
    pub fn with_generator(generator: Box<dyn TextGenerator + Send>, options: SummaryOptions) -> Self {
        Self { model: Some(Arc::new(Mutex::new(generator))), unavailable: String::new(), options }
    }

    /// Override the time budget (tests, the demo).
    pub fn with_time_budget(mut self, budget: Duration) -> Self {
        self.options.time_budget = budget;
        self
    }

    /// What is loaded, for `warden model info` and the API.
    pub fn info(&self) -> Option<ModelInfo> {
        self.model.as_ref().and_then(|m| m.lock().ok().map(|m| m.info()))
    }

    /// Write the summary of a ranking (on a blocking thread when a model runs).
    pub async fn summarize(
        &self,
        title: String,
        symptom: Option<Subject>,
        started: i64,
        ranking: Ranking,
        evidence: Vec<Evidence>,
    ) -> Summary {
        let options = self.options.clone();
        let Some(model) = self.model.clone() else {
            let input = SummaryInput {
                title: &title,
                symptom: symptom.as_ref(),
                started,
                ranking: &ranking,
                evidence: &evidence,
            };
            let mut s = summarize(&input, None, &options);
            s.fallback_reason = Some(self.unavailable.clone());
            return s;
        };
        let fallback = (title.clone(), symptom.clone(), ranking.clone(), evidence.clone());
        let job = tokio::task::spawn_blocking(move || {
            let input = SummaryInput {
                title: &title,
                symptom: symptom.as_ref(),
                started,
                ranking: &ranking,
                evidence: &evidence,
            };
            match model.lock() {
                Ok(mut m) => summarize(&input, Some(&mut **m), &options),
                Err(_) => {
                    let mut s = summarize(&input, None, &options);
                    s.fallback_reason = Some("model lock poisoned by an earlier failure".into());
                    s
                }
            }
        });
        match job.await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "summary task failed");
                let input = SummaryInput {
                    title: &fallback.0,
                    symptom: fallback.1.as_ref(),
                    started,
                    ranking: &fallback.2,
                    evidence: &fallback.3,
                };
                let mut s = summarize(&input, None, &self.options);
                s.fallback_reason = Some(format!("summary task failed: {e}"));
                s
            }
        }
    }
}

/// The model section as load options (values were checked by `warden check-config`; one
/// that is still invalid here is an error naming the field).
pub fn load_options(m: &ModelSection) -> Result<LoadOptions, String> {
    let mut o = LoadOptions::new(&m.path);
    o.tokenizer = m.tokenizer.clone();
    o.device = m.device.parse().map_err(|e| format!("analysis.model.device: {e}"))?;
    o.chat_template = m
        .chat_template
        .as_deref()
        .map(str::parse)
        .transpose()
        .map_err(|e| format!("analysis.model.chat_template: {e}"))?;
    o.expected_sha256 = m.sha256.clone();
    Ok(o)
}
