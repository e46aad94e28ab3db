//! What Warden may do to a cluster, and when it must refuse.
//!
//! This crate owns the *decision* half of remediation: typed actions, the guards that bound
//! them, and the executor that records every step before and after it reaches the cluster.
//! It performs no I/O itself: the cluster is reached through the [`Cluster`] trait (implemented
//! by the agent on top of the Kubernetes connector, and by the demo's simulated cluster), and
//! the audit trail is written through the [`ActionLog`] trait (implemented by the agent's store).
//! The full playbook engine (YAML playbooks, triggers, approvals, verify and revert) builds on
//! these seams.

pub mod cluster;
pub mod error;
pub mod executor;
pub mod scale;

pub use cluster::{Cluster, ClusterError, ClusterErrorKind, ReplicaState, SetReplicasOutcome, WorkloadRef};
pub use error::{Error, Result};
pub use executor::{ActionLog, ActionRecord, ActionStatus, ExecutionOutcome, ScaleExecutor, ScaleRequest};
pub use scale::{plan_scale, Guard, Refusal, ScaleDecision, ScalePolicy};
