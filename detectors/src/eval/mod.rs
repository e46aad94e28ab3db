//! Benchmark scoring, as published: NAB v1.1 for streaming anomaly detection and the M4
//! competition's sMAPE, MASE and OWA for forecasting. Pure functions on in-memory data; the
//! agent's `warden bench` commands read the files.

pub mod anomaly;
pub mod loghub;
pub mod m4;
pub mod nab;
