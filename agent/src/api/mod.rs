//! The HTTP API: health, metrics, incidents, runs, approvals, the outbox and the
//! Alertmanager webhook ([`server`]), with the run and outbox handlers in their own modules
//! and the listener (plain or TLS) in [`http_serve`].

pub mod http_serve;
pub mod outbox;
pub mod runs;
pub mod server;
