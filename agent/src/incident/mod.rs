//! Incidents: signals in, incident changes out.
//!
//! [`identity`] is the one place that computes fingerprints (what makes two signals the same
//! incident), targets (which workload an incident is about) and severities; [`tracker`]
//! applies signals to the store (open, update, count quiet evaluations, resolve) and reports
//! what changed, which [`crate::act::responder`] acts on; [`silence`] matches the silences
//! people set against incidents (notifications and actions held back, history kept).

pub mod identity;
pub mod silence;
pub mod tracker;
