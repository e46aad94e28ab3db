//! The `warden` agent, laid out as the pipeline it runs (see `docs/architecture.md`):
//!
//! ```text
//! ingest/ ──signals──▶ incident/ ──changes──▶ act/ (playbooks) ─┐
//!   metric watches       fingerprints,          analysis/ (RCA) ├─▶ notify/ (outbox)
//!   log watches          targets, open /                        │
//!   Alertmanager         update / resolve       timeline, metrics ┘
//! ```
//!
//! `pipeline` drives one evaluation through those stages; `app` builds the pipeline for the
//! daemon, the demo and the CLI; `store` keeps incidents, runs, the outbox and the audit
//! chain; `api` serves HTTP; `cli` holds the commands that are not the daemon; `bench` the
//! benchmarks.

pub mod act;
pub mod analysis;
pub mod api;
pub mod app;
pub mod bench;
pub mod cli;
pub mod config;
pub mod incident;
pub mod ingest;
pub mod leadership;
pub mod metrics;
pub mod notify;
pub mod pipeline;
pub mod store;
pub mod timeline;
