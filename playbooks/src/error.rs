//! The crate's one error type.

use crate::cluster::ClusterError;

/// Errors of the playbooks crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The cluster refused or failed a request.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// The audit trail could not be written: the action is not sent without a record.
    #[error("action log: {0}")]
    ActionLog(String),
    /// A policy that cannot be applied (e.g. min > max).
    #[error("invalid policy: {0}")]
    InvalidPolicy(String),
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, Error>;
