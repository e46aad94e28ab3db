//! Playbooks: what Warden may do to a cluster, when it must refuse, and how a run survives a
//! crash.
//!
//! * [`spec`] is the file format and [`load`] reads and checks it (every error with its file,
//!   line and YAML path); [`builtin`] holds the playbooks shipped with Warden.
//! * [`template`] and [`params`] turn a playbook and its inputs into concrete arguments,
//!   with no shell anywhere; [`schedule`] is the cron trigger.
//! * [`guards`] decides, as pure functions, whether a run or a step may act.
//! * [`actions`] are what a step can do, one typed component per action (plan, apply,
//!   read back, inverse), each in a file of its own.
//! * [`run`] is the persisted state machine of one run and [`engine`] advances it, step by
//!   step, recording each transition before the request that follows it; [`claim`] makes
//!   sure one task at a time advances a run, and [`policy`] is how failed cluster requests
//!   are classified and retried.
//! * [`audit`] hash-chains every trigger, decision, request, response and verification.
//!
//! The crate performs no I/O itself: the cluster, metrics, webhooks, notifications and
//! storage are reached through the traits in [`cluster`] and [`engine`], implemented by the
//! agent on top of the connectors (and by the demo's simulated cluster).

pub mod actions;
pub mod audit;
pub mod builtin;
pub mod claim;
pub mod cluster;
pub mod duration;
pub mod engine;
pub mod error;
pub mod guards;
pub mod load;
pub mod params;
pub mod policy;
pub mod run;
pub mod schedule;
pub mod spec;
pub mod template;
pub mod time;
pub mod yaml_index;
pub mod yaml_load;

pub use claim::{FencingToken, RunClaim};
pub use cluster::{Cluster, ClusterError, ClusterErrorKind, ReplicaState, SetReplicasOutcome, WorkloadRef};
pub use error::{Error, Result, ValueKind};
