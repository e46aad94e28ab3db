//! The crate's one error type.

use crate::claim::Fenced;
use crate::cluster::ClusterError;
use crate::engine::RunStoreError;
use crate::load::LoadErrors;

/// Errors of the playbooks crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The cluster refused or failed a request.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// Playbook files that do not load, every error with its file, line and YAML path.
    #[error("{0}")]
    Load(LoadErrors),
    /// A template that names an unknown variable or does not parse.
    #[error("template {template:?}: {message}")]
    Template { template: String, message: String },
    /// A parameter value that is missing, unknown, of the wrong type or out of bounds.
    #[error("parameter {name:?}: {message}")]
    Param { name: String, message: String },
    /// The run store failed; the run is not advanced without a record.
    #[error("run store: {0}")]
    Store(#[source] RunStoreError),
    /// This task's claim on a run is no longer the run's: another task advances it.
    #[error(transparent)]
    Fenced(#[from] Fenced),
    /// A request that cannot be served (unknown playbook, run in the wrong state, ...).
    #[error("{0}")]
    Invalid(String),
    /// A time computed from a setting is outside the representable range.
    #[error("{what} is out of range")]
    TimeOutOfRange { what: String },
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, Error>;
