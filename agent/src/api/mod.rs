//! The HTTP API: health, metrics, incidents, runs, approvals, the outbox and the
//! Alertmanager webhook ([`server`]), with the run, outbox and incident-resolution handlers in their own modules,
//! Slack's button presses in [`slack`], the web console under `/ui/` in [`console`] and the
//! listener (plain or TLS) in [`http_serve`].

pub mod console;
pub mod http_serve;
pub mod incidents;
pub mod outbox;
pub mod runs;
pub mod server;
pub mod silences;
pub mod slack;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::notify::SlackApp;
use crate::pipeline::Pipeline;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub pipeline: Arc<Pipeline>,
    /// The operator token (`server.api_token`).
    pub api_token: Option<Arc<str>>,
    /// The viewer token (`server.viewer_token`).
    pub viewer_token: Option<Arc<str>>,
    /// Set once the scheduler runs; `/readyz` reports it.
    pub ready: Arc<AtomicBool>,
    /// Slack app mode (`notify.slack_app`): checks and answers button presses.
    pub slack: Option<SlackApp>,
}
