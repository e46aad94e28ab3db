//! `warden bench nab`.

use std::path::Path;

/// Run `detector` with `params` over the NAB corpus under `data` and print the scores.
pub fn run(data: &Path, detector: &str, params: &[(String, String)], json: bool) -> anyhow::Result<()> {
    let _ = (data, detector, params, json);
    anyhow::bail!("warden bench nab is not available yet")
}
