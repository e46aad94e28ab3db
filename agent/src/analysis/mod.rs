//! Root-cause analysis of an incident: evidence, a deterministic ranking, and a summary.
//!
//! When an incident opens (after its watch's first action, so what Warden did is part of the
//! story), the [`Analyzer`] collects evidence ([`collect`]), ranks candidate causes with
//! `warden_detectors::rca::rank`, and asks [`summarizer::Summarizer`] for a paragraph: the
//! local LLM when one is configured, checked by the grounding rules of `warden_models`, or the
//! deterministic template. The result is stored with the incident (`analyses` table), added
//! to its events and sent as an `analysis` notification. Nothing here acts: the ranking and
//! the summary are for people.
//!
//! The daemon analyses in a background task so a slow model never delays an evaluation; the
//! demo and tests analyse inline, on their simulated clock.

pub mod collect;
pub mod recent;
pub mod shim;
pub mod summarizer;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};
use serde_json::json;
use warden_detectors::rca::{self, Evidence, Ranking, RcaInput, Subject};
use warden_models::summary::Summary;

use crate::notify::render::render_analysis;
use crate::store::{from_ms, ms, Store, StoreError, StoreResult};
use crate::timeline::{Timeline, TimelineEvent};
pub use collect::{ClusterEvidence, ClusterFacts, Fact};
pub use recent::RecentAnomalies;
pub use summarizer::Summarizer;

/// The analysis of one incident, as stored and served.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Analysis {
    pub incident_id: i64,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symptom: Option<Subject>,
    pub ranking: Ranking,
    pub evidence: Vec<Evidence>,
    pub summary: Summary,
    /// Sources that could not be read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gaps: Vec<String>,
}

/// Settings of the analysis (the `analysis` section of `warden.yaml`).
#[derive(Debug, Clone)]
pub struct AnalysisSettings {
    /// How far before the incident's start evidence is looked for.
    pub lookback_secs: i64,
}

impl Default for AnalysisSettings {
    fn default() -> Self {
        Self { lookback_secs: 30 * 60 }
    }
}

/// Analyses incidents and records the result.
pub struct Analyzer {
    pub store: Arc<Store>,
    pub recent: Arc<RecentAnomalies>,
    pub cluster: Option<Arc<dyn ClusterEvidence>>,
    pub summarizer: Arc<Summarizer>,
    pub settings: AnalysisSettings,
    pub channels: Vec<&'static str>,
    pub timeline: Timeline,
    pub outbox_wake: Arc<tokio::sync::Notify>,
}

impl Analyzer {
    /// Analyse incident `incident_id` at `now`: collect, rank, summarise, store, notify.
    pub async fn analyze(&self, incident_id: i64, now: DateTime<Utc>) -> StoreResult<Option<Analysis>> {
        let Some(incident) = self.store.get_incident(incident_id)? else { return Ok(None) };
        let collected = collect::collect(
            &incident,
            now,
            self.settings.lookback_secs,
            &self.recent,
            &self.store,
            self.cluster.as_deref(),
        )
        .await;
        let input = RcaInput { start: incident.opened_at.timestamp(), symptom: collected.symptom.clone(), evidence: collected.evidence.clone(), ..Default::default() };
        let ranking = rca::rank(&input, &rca::RankParams::default());
        let summary = self.summarizer.summarize(incident.title.clone(), input.symptom.clone(), input.start, ranking.clone(), collected.evidence.clone()).await;
        let analysis = Analysis {
            incident_id,
            created_at: now,
            symptom: collected.symptom,
            ranking,
            evidence: collected.evidence,
            summary,
            gaps: collected.gaps,
        };
        let channels = self.channels.clone();
        self.store.save_analysis(&analysis, |i| render_analysis(i, &analysis, &channels))?;
        self.outbox_wake.notify_one();
        let top = analysis.ranking.candidates.first().map(|c| c.subject.display());
        tracing::info!(incident = incident_id, top = ?top, source = ?analysis.summary.source, "incident analysed");
        self.timeline.emit(TimelineEvent::Analysed {
            at: now,
            incident_id,
            top: top.unwrap_or_else(|| "-".into()),
            summary: analysis.summary.text.clone(),
        });
        Ok(Some(analysis))
    }
}

impl Store {
    /// Store (or replace) an incident's analysis, with an `analysis` incident event and the
    /// notifications `render` makes, in one transaction.
    pub fn save_analysis(
        &self,
        a: &Analysis,
        render: impl FnOnce(&crate::store::Incident) -> Vec<crate::store::NewNotification>,
    ) -> StoreResult<()> {
        let body = serde_json::to_string(a).map_err(|e| StoreError::Corrupt { table: "analyses", message: e.to_string() })?;
        let incident = self.get_incident(a.incident_id)?.ok_or(StoreError::Corrupt { table: "analyses", message: format!("no incident {}", a.incident_id) })?;
        let notes = render(&incident);
        let mut c = self.conn()?;
        let tx = c.transaction()?;
        tx.execute(
            "INSERT INTO analyses (incident_id, created_at, body) VALUES (?1, ?2, ?3)
             ON CONFLICT(incident_id) DO UPDATE SET created_at = excluded.created_at, body = excluded.body",
            params![a.incident_id, ms(a.created_at), body],
        )?;
        let top = a.ranking.candidates.first();
        let detail = json!({
            "top": top.map(|c| c.subject.display()),
            "score": top.map(|c| c.score),
            "summary_source": a.summary.source,
            "summary": a.summary.text,
        });
        crate::store::insert_event(&tx, a.incident_id, a.created_at, "analysis", &detail)?;
        for n in &notes {
            crate::store::insert_outbox(&tx, Some(a.incident_id), n, a.created_at)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The stored analysis of an incident, if it was analysed.
    pub fn get_analysis(&self, incident_id: i64) -> StoreResult<Option<Analysis>> {
        let c = self.conn()?;
        let row: Option<(i64, String)> = c
            .query_row("SELECT created_at, body FROM analyses WHERE incident_id = ?1", params![incident_id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        match row {
            None => Ok(None),
            Some((created, body)) => {
                let mut a: Analysis = serde_json::from_str(&body).map_err(|e| StoreError::Corrupt { table: "analyses", message: e.to_string() })?;
                a.created_at = from_ms(created);
                Ok(Some(a))
            }
        }
    }
}
