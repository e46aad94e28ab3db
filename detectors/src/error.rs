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
}

/// Result type of this crate.
pub type Result<T> = std::result::Result<T, Error>;
