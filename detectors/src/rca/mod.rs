//! Root-cause ranking: candidate causes scored from evidence, deterministically.
//!
//! The agent collects [`Evidence`] for an incident; [`rank`] scores candidate causes
//! (workloads, nodes, changes) from temporal precedence (what moved first), anomaly strength,
//! topology proximity to the symptom and change correlation (a rollout shortly before the
//! first anomaly). The same function ranks the services of an offline recording
//! (`warden rca --metrics FILE.csv`), whose metrics are first turned into anomaly evidence by
//! [`series`]. Pure and synchronous, like the rest of this crate: the same evidence always
//! gives the same ranking.

pub mod evidence;
pub mod rank;
pub mod recording;
pub mod series;
pub mod suite;

pub use evidence::{Candidate, CauseKind, ChangeKind, Evidence, Forecast, Payload, Ranking, Subject, SubjectKind};
pub use rank::{rank, MetricClass, RankParams, RcaInput};
pub use recording::{
    rank_recording, CallGraph, MetricKinds, RecordingInput, RecordingParams, RecordingRanking, Series,
};
pub use series::{rank_table, rank_table_with, SeriesParams, TableInput, TableRanking};
