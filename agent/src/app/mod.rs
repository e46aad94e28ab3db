//! The two ways Warden runs: the daemon ([`daemon`]: real time, Prometheus, Loki, the
//! cluster, the API) and the demo ([`demo`]: simulated time and metrics, an in-memory
//! store). Both build the same [`crate::pipeline::Pipeline`] through [`assemble`], so they
//! differ only in where time, metrics and the cluster come from.

pub mod assemble;
pub mod daemon;
pub mod demo;
