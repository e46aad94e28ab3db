//! (being written)
use super::{Evidence, Ranking, Subject};

/// Everything the ranking looks at.
#[derive(Debug, Clone, Default)]
pub struct RcaInput {
    /// Unix seconds: when the incident started.
    pub start: i64,
    /// The subject where the symptom was seen, when known.
    pub symptom: Option<Subject>,
    pub evidence: Vec<Evidence>,
}

/// Tunables of the ranking.
#[derive(Debug, Clone)]
pub struct RankParams {}

impl Default for RankParams {
    fn default() -> Self {
        Self {}
    }
}

/// Rank candidate causes.
pub fn rank(_input: &RcaInput, _params: &RankParams) -> Ranking {
    Ranking::default()
}
