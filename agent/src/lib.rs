//! The `warden` agent: configuration, the evaluation engine, incidents, actions, the outbox,
//! the HTTP API and the daemon that runs them. See `docs/architecture.md` for the map.

pub mod action_tasks;
pub mod analysis;
pub mod api_outbox;
pub mod api_runs;
pub mod bench;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod detect_cmd;
pub mod drift_eval;
pub mod engine;
pub mod evaluate;
pub mod group_eval;
pub mod http_serve;
pub mod incident_cmd;
pub mod joint_eval;
pub mod kube_cluster;
pub mod line_limit;
pub mod log_watch;
pub mod logs_cmd;
pub mod metrics;
pub mod model_cmd;
pub mod notify;
pub mod outbox_cmd;
pub mod outbox_store;
pub mod playbook_cmd;
pub mod rca_cmd;
pub mod remediation;
pub mod run_store;
pub mod server;
pub mod source;
pub mod store;
pub mod timeline;
pub mod watch_kind;
