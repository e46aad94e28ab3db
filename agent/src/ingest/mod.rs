//! Sources: where signals come from.
//!
//! Metric watches query Prometheus and judge every series with a detector
//! ([`evaluate`], with one module per watch kind that is not a plain streaming detector:
//! [`drift_eval`], [`group_eval`], [`joint_eval`]); log watches mine Loki lines into
//! templates and judge their rates ([`log_watch`]); the Alertmanager webhook turns alerts
//! into signals ([`alerts`]). Nothing here touches the store: what a verdict means for an
//! incident is decided in [`crate::incident`].

pub mod alerts;
pub mod drift_eval;
pub mod evaluate;
pub mod group_eval;
pub mod joint_eval;
pub mod log_watch;
pub mod source;
pub mod spec_params;
pub mod verdict;
pub mod watch_kind;
