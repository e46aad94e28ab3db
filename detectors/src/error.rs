//! The crate's single error type.
//!
//! Detectors are pure functions of their input, so the only thing that can go
//! wrong is configuration: every failure is reported when a detector is built,
//! never while it processes points. Data problems (NaN, infinities, repeated
//! timestamps) are reported in the [`Detection`](crate::Detection) instead,
//! because a monitoring daemon must keep scoring a series whose samples are
//! occasionally broken.

/// Errors raised while configuring a detector.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// A parameter is outside its allowed range. `message` states the range
    /// and the value that was given.
    #[error("invalid parameter `{name}`: {message}")]
    InvalidParam {
        /// Name of the parameter, as spelled in the configuration.
        name: &'static str,
        /// The allowed range and the rejected value.
        message: String,
    },
    /// Input to a batch function (an evaluation, a fit) that cannot be used; `what` names
    /// the input (a file, a series, a row) and `message` says why.
    #[error("invalid input {what}: {message}")]
    InvalidInput {
        /// What was rejected, e.g. `windows of realKnownCause/nyc_taxi.csv`.
        what: String,
        /// Why it was rejected.
        message: String,
    },
    /// A model could not be fitted or could not predict (e.g. a decomposition or a
    /// forecaster failed on the data it was given).
    #[error("model {model}: {message}")]
    Model {
        /// The model, e.g. `mstl` or `ets`.
        model: &'static str,
        /// What went wrong.
        message: String,
    },
}

/// Result type of this crate.
pub type Result<T> = std::result::Result<T, Error>;
