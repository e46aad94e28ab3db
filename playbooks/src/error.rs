//! The crate's one error type.

use crate::claim::Fenced;
use crate::cluster::ClusterError;
use crate::engine::{FenceRefused, RunStoreError};
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
    /// The leader-election fence refused a request: nothing was sent, and the run waits in
    /// the store for the leader (or for the next renew).
    #[error(transparent)]
    Lease(#[from] FenceRefused),
    /// A request that cannot be served (unknown playbook, run in the wrong state, ...).
    #[error("{0}")]
    Invalid(String),
    /// A time computed from a setting is outside the representable range.
    #[error("{what} is out of range")]
    TimeOutOfRange { what: String },
    /// YAML text that does not parse, or nests deeper than [`crate::yaml_load::MAX_DEPTH`];
    /// `line` (1-based) is where the parser stopped, when it says.
    #[error("invalid YAML: {message}")]
    Yaml {
        line: Option<usize>,
        message: String,
        #[source]
        source: Option<serde_yaml::Error>,
    },
    /// A value that does not read as what its setting needs; `kind` says what it should have
    /// been and `message` what is wrong with it (quoting the value). The loaders put it under
    /// the value's file, line and YAML path.
    #[error("{message}")]
    Value { kind: ValueKind, message: String },
}

/// What a value that did not read should have been (see [`Error::Value`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    /// A duration (`30s`, `5m`, `1h30m`).
    Duration,
    /// A cron schedule of a `cron` trigger.
    Schedule,
    /// An IANA time zone name.
    TimeZone,
    /// A literal `http` step URL.
    Url,
    /// A `patch_allow` path pattern.
    PatchPath,
    /// A parameter value (type, bounds, allowed values).
    Param,
}

impl Error {
    /// A value that is not what its setting needs.
    pub fn value(kind: ValueKind, message: impl Into<String>) -> Self {
        Self::Value { kind, message: message.into() }
    }
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, Error>;
