//! The crate's one error type.

/// Errors of the models crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Facts that cannot be summarised (e.g. an empty title).
    #[error("invalid incident facts: {0}")]
    InvalidFacts(String),
    /// A model file that cannot be read or used; `path` names it.
    #[error("{path}: {message}")]
    Load { path: String, message: String },
    /// A tokenizer that cannot be built, or text it cannot encode or decode.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// Inference failed (a tensor operation, an unsupported shape, ...).
    #[error("inference failed: {0}")]
    Inference(String),
    /// Generation passed its deadline.
    #[error("generation exceeded its time budget after {generated} tokens")]
    Budget { generated: usize },
    /// Downloading a model failed or its checksum did not match.
    #[error("model download: {0}")]
    Download(String),
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, Error>;
