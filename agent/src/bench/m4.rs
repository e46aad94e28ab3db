//! `warden bench m4`.

use std::path::Path;

/// Forecast the M4 hourly series under `data` and print sMAPE, MASE and OWA.
pub fn run(data: &Path, model: &str, json: bool) -> anyhow::Result<()> {
    let _ = (data, model, json);
    anyhow::bail!("warden bench m4 is not available yet")
}
