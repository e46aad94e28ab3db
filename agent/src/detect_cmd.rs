//! `warden detect`: run a detector over a CSV file, streaming, one output row per input row.

use std::path::Path;

pub fn run(input: &Path, detector: &str, params: &[(String, String)], json: bool) -> anyhow::Result<()> {
    let _ = (input, detector, params, json);
    anyhow::bail!("warden detect is not available yet")
}
