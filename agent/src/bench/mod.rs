//! `warden bench`: run detectors and forecasters on public benchmark data sets and score them
//! exactly as published.

pub mod anomaly;
pub mod anomaly_lodo;
pub mod console;
pub mod loghub;
pub mod m4;
pub mod nab;
pub mod rca;
pub mod rca_data;
pub mod summary;
