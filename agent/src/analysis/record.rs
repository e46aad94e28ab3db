//! The analysis of one incident as it is stored, served and rendered: a plain record, kept
//! apart from the [`super::Analyzer`] that makes it so that the renderers
//! (`notify::render`) can read it without depending on how it is made.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use warden_detectors::rca::{Evidence, Ranking, Subject};
use warden_models::summary::Summary;

use crate::analysis::graph;

/// The analysis of one incident, as stored and served.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Analysis {
    pub incident_id: i64,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symptom: Option<Subject>,
    /// The call graph the ranking used, and where it came from; `None` when none was known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graph: Option<graph::GraphUsed>,
    /// Whether the ranking found a credible cause (see [`crate::analysis::graph::found`]); older analyses,
    /// stored before this was recorded, read as found.
    #[serde(default = "found_default")]
    pub found: bool,
    pub ranking: Ranking,
    pub evidence: Vec<Evidence>,
    pub summary: Summary,
    /// Sources that could not be read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gaps: Vec<String>,
    /// 0 for the first analysis; each re-analysis on late evidence (see
    /// [`crate::analysis::late`]) counts one more.
    #[serde(default)]
    pub revision: u32,
    /// What made the previous revision out of date (`run 3 reverted`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revised_because: Option<String>,
}

fn found_default() -> bool {
    true
}
