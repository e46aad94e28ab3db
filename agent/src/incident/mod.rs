//! Incidents: signals in, incident changes out.
//!
//! [`identity`] is the one place that computes fingerprints (what makes two signals the same
//! incident), targets (which workload an incident is about) and severities; [`tracker`]
//! applies signals to the store (open, update, count quiet evaluations, resolve) and reports
//! what changed, which [`crate::act::responder`] acts on.

pub mod identity;
pub mod tracker;
