//! `warden model pull` and `warden model info`: getting a local LLM and checking what it is.
//!
//! The daemon never downloads a model by itself; an operator pulls one once (SHA-256 checked,
//! see `warden_models::llm::pull`) and puts its path in the configuration. `info` loads the
//! model exactly as the daemon would, so a file that `info` accepts is one the daemon can use.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::json;
use warden_models::llm::{self, ChecksumSource, LlmModel, LoadOptions};
use warden_models::TextGenerator;

/// Downloads `file` from the Hugging Face repository `repo` into `dest` and prints its path
/// and SHA-256 (and what the hash was checked against).
pub fn pull_cmd(repo: &str, file: &str, revision: Option<&str>, dest: &Path, sha256: Option<&str>) -> Result<()> {
    let pulled = llm::pull_with_report(repo, file, revision, dest, sha256)
        .with_context(|| format!("pulling {file} from {repo}"))?;
    let checked = match pulled.verified_against {
        ChecksumSource::Expected => "matches the expected SHA-256",
        ChecksumSource::Hub => "matches the hub's SHA-256",
        ChecksumSource::Unverified => "not verified (no expected value and the hub gave none): pin it with --sha256",
    };
    println!("path:    {}", pulled.path.display());
    println!("sha256:  {}", pulled.sha256);
    println!("checked: {checked}{}", if pulled.cached { " (already present, not downloaded)" } else { "" });
    Ok(())
}

/// Loads the model as the daemon would and prints what it is: a table, or JSON with `json`.
pub fn info_cmd(opts: &LoadOptions, json: bool) -> Result<()> {
    let model = LlmModel::load(opts).context("loading the model")?;
    let info = model.info();
    if json {
        let mut value = serde_json::to_value(&info)?;
        if let Some(obj) = value.as_object_mut() {
            obj.insert("requantized_tensors".into(), json!(model.requantized_tensors()));
            obj.insert("stop_token_ids".into(), json!(model.stop_token_ids()));
        }
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    let rows: Vec<(&str, String)> = vec![
        ("path", info.path.clone()),
        ("name", info.name.clone().unwrap_or_else(|| "-".into())),
        ("architecture", info.architecture.clone()),
        ("parameters", human_count(info.parameters)),
        (
            "quantization",
            match model.requantized_tensors() {
                0 => info.quantization.clone(),
                n => format!("{} ({n} tensors re-quantized to Q8_0 for speed)", info.quantization),
            },
        ),
        ("context", format!("{} tokens", info.context_length)),
        ("chat template", info.chat_template.clone()),
        ("tokenizer", info.tokenizer.clone()),
        ("device", info.device.clone()),
        ("sha256", info.sha256.clone().unwrap_or_else(|| "-".into())),
        ("load time", format!("{:.2} s", info.load_time.as_secs_f64())),
    ];
    for (k, v) in rows {
        println!("{k:<14} {v}");
    }
    Ok(())
}

/// `134.5M`, `1.2B`.
fn human_count(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.1}B ({n})", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.1}M ({n})", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.1}K ({n})", n as f64 / 1e3),
        n => n.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_counts() {
        assert_eq!(human_count(134_515_008), "134.5M (134515008)");
        assert_eq!(human_count(999), "999");
    }

    #[test]
    fn info_of_a_missing_file_is_an_error() {
        let opts = LoadOptions::new("/nonexistent/model.gguf");
        let err = info_cmd(&opts, false).err().map(|e| format!("{e:#}")).unwrap_or_default();
        assert!(err.contains("/nonexistent/model.gguf"), "{err}");
    }
}
