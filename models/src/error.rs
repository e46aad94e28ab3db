//! The crate's one error type.

/// Errors of the models crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Facts that cannot be summarised (e.g. an empty title).
    #[error("invalid incident facts: {0}")]
    InvalidFacts(String),
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, Error>;
