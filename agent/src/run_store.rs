//! Playbook runs and the audit trail in the SQLite store.
//!
//! A run is stored whole (JSON) next to the columns that queries need; the run and the audit
//! entries of one transition are written in one transaction. The audit chain is extended
//! inside that transaction (an IMMEDIATE one, so two processes sharing the file cannot both
//! append after the same head).

use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension, TransactionBehavior};
use warden_playbooks::audit::{self, AuditEntry, AuditEvent, AuditKind};
use warden_playbooks::engine::{HistoryQuery, RunStore, StoreFailure};
use warden_playbooks::guards::History;
use warden_playbooks::run::{Run, RunStatus};

use crate::store::{from_ms, ms, Store, StoreError, StoreResult};

fn append(tx: &rusqlite::Transaction<'_>, events: &[AuditEvent]) -> StoreResult<()> {
    for ev in events {
        let head: Option<(i64, String)> =
            tx.query_row("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1", [], |r| Ok((r.get(0)?, r.get(1)?))).optional()?;
        let entry = audit::chain(head.as_ref().map(|(s, h)| (*s, h.as_str())), ev.clone());
        tx.execute(
            "INSERT INTO audit (seq, at, run_id, kind, actor, detail, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                entry.seq,
                entry.at.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
                entry.run_id,
                entry.kind.as_str(),
                entry.actor,
                entry.detail.to_string(),
                entry.prev_hash,
                entry.hash
            ],
        )?;
    }
    Ok(())
}

fn body(run: &Run) -> StoreResult<String> {
    serde_json::to_string(run).map_err(|e| StoreError::Corrupt { table: "runs", message: e.to_string() })
}

fn active_key(run: &Run) -> Option<String> {
    if run.status.is_terminal() {
        None
    } else {
        run.target.as_ref().map(|t| t.lock_key())
    }
}

impl Store {
    fn insert_run_tx(&self, run: &Run, events: &[AuditEvent]) -> StoreResult<Result<i64, i64>> {
        let mut c = self.conn()?;
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let lock = active_key(run);
        if let Some(key) = &lock {
            let holder: Option<i64> =
                tx.query_row("SELECT id FROM runs WHERE active_target = ?1", params![key], |r| r.get(0)).optional()?;
            if let Some(h) = holder {
                return Ok(Err(h));
            }
        }
        tx.execute(
            "INSERT INTO runs (playbook, status, target_key, namespace, incident_id, trigger_kind, acted_at, dry_run,
                created_at, updated_at, wake_at, active_target, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL, ?7, ?8, ?9, ?10, ?11, '{}')",
            params![
                run.playbook,
                run.status.as_str(),
                run.target.as_ref().map(|t| t.lock_key()),
                run.target.as_ref().map(|t| t.namespace.clone()).filter(|n| !n.is_empty()),
                run.incident_id(),
                run.trigger.kind,
                run.dry_run,
                ms(run.created_at),
                ms(run.updated_at),
                run.wake_at.map(ms),
                lock,
            ],
        )?;
        let id = tx.last_insert_rowid();
        let mut stored = run.clone();
        stored.id = id;
        tx.execute("UPDATE runs SET body = ?1 WHERE id = ?2", params![body(&stored)?, id])?;
        let events: Vec<AuditEvent> = events.iter().cloned().map(|mut e| {
            e.run_id = Some(id);
            e
        }).collect();
        append(&tx, &events)?;
        tx.commit()?;
        Ok(Ok(id))
    }

    fn save_run_tx(&self, run: &Run, events: &[AuditEvent]) -> StoreResult<()> {
        let mut c = self.conn()?;
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let acted_at = run.acted.then(|| ms(run.updated_at));
        let n = tx.execute(
            "UPDATE runs SET status = ?2, acted_at = COALESCE(acted_at, ?3), updated_at = ?4, wake_at = ?5,
                active_target = ?6, body = ?7 WHERE id = ?1",
            params![run.id, run.status.as_str(), acted_at, ms(run.updated_at), run.wake_at.map(ms), active_key(run), body(run)?],
        )?;
        if n != 1 {
            return Err(StoreError::Corrupt { table: "runs", message: format!("run {} is not stored", run.id) });
        }
        append(&tx, events)?;
        tx.commit()?;
        Ok(())
    }

    pub fn get_run(&self, id: i64) -> StoreResult<Option<Run>> {
        let c = self.conn()?;
        let text: Option<String> = c.query_row("SELECT body FROM runs WHERE id = ?1", params![id], |r| r.get(0)).optional()?;
        text.map(|t| serde_json::from_str(&t).map_err(|e| StoreError::Corrupt { table: "runs", message: format!("run {id}: {e}") }))
            .transpose()
    }

    /// Runs, newest first, optionally only one status or one incident's.
    pub fn list_runs(&self, status: Option<RunStatus>, incident_id: Option<i64>, limit: u32) -> StoreResult<Vec<Run>> {
        let c = self.conn()?;
        let mut st = c.prepare(
            "SELECT id, body FROM runs WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR incident_id = ?2)
             ORDER BY id DESC LIMIT ?3",
        )?;
        let rows = st.query_map(params![status.map(|s| s.as_str()), incident_id, limit], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, text) = row?;
            out.push(serde_json::from_str(&text).map_err(|e| StoreError::Corrupt { table: "runs", message: format!("run {id}: {e}") })?);
        }
        Ok(out)
    }

    /// When the last run on the incident started (for re-triggering after a cooldown).
    pub fn last_run_for_incident(&self, incident_id: i64) -> StoreResult<Option<DateTime<Utc>>> {
        let c = self.conn()?;
        let t: Option<i64> = c.query_row("SELECT MAX(created_at) FROM runs WHERE incident_id = ?1", params![incident_id], |r| r.get(0))?;
        Ok(t.map(from_ms))
    }

    /// The whole audit trail, oldest first.
    pub fn audit_entries(&self) -> StoreResult<Vec<AuditEntry>> {
        let c = self.conn()?;
        let mut st = c.prepare("SELECT seq, at, run_id, kind, actor, detail, prev_hash, hash FROM audit ORDER BY seq")?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<i64>>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, String>(6)?,
                r.get::<_, String>(7)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, at, run_id, kind, actor, detail, prev_hash, hash) = row?;
            let corrupt = |m: String| StoreError::Corrupt { table: "audit", message: format!("entry {seq}: {m}") };
            let at = DateTime::parse_from_rfc3339(&at).map_err(|e| corrupt(format!("time {at:?}: {e}")))?.with_timezone(&Utc);
            let kind: AuditKind = serde_json::from_value(serde_json::Value::String(kind.clone())).map_err(|_| corrupt(format!("kind {kind:?}")))?;
            let detail = serde_json::from_str(&detail).map_err(|e| corrupt(format!("detail: {e}")))?;
            out.push(AuditEntry { seq, at, run_id, kind, actor, detail, prev_hash, hash });
        }
        Ok(out)
    }

    /// Audit entries of one run, oldest first.
    pub fn audit_for_run(&self, run_id: i64) -> StoreResult<Vec<AuditEntry>> {
        Ok(self.audit_entries()?.into_iter().filter(|e| e.run_id == Some(run_id)).collect())
    }
}

impl RunStore for Store {
    fn insert_run(&self, run: &Run, audit: &[AuditEvent]) -> Result<i64, StoreFailure> {
        match self.insert_run_tx(run, audit) {
            Ok(Ok(id)) => Ok(id),
            Ok(Err(holder)) => Err(StoreFailure::TargetBusy { run_id: holder }),
            Err(e) => Err(StoreFailure::Other(e.to_string())),
        }
    }

    fn save_run(&self, run: &Run, audit: &[AuditEvent]) -> Result<(), String> {
        self.save_run_tx(run, audit).map_err(|e| e.to_string())
    }

    fn get_run(&self, id: i64) -> Result<Option<Run>, String> {
        Store::get_run(self, id).map_err(|e| e.to_string())
    }

    fn due_runs(&self, now: DateTime<Utc>) -> Result<Vec<i64>, String> {
        let run = || -> StoreResult<Vec<i64>> {
            let c = self.conn()?;
            let mut st = c.prepare(
                "SELECT id FROM runs WHERE (status IN ('running', 'reverting') AND (wake_at IS NULL OR wake_at <= ?1))
                    OR (status = 'awaiting_approval' AND wake_at <= ?1) ORDER BY id",
            )?;
            let ids = st.query_map(params![ms(now)], |r| r.get(0))?.collect::<Result<Vec<i64>, _>>()?;
            Ok(ids)
        };
        run().map_err(|e| e.to_string())
    }

    fn history(&self, q: &HistoryQuery) -> Result<History, String> {
        let run = || -> StoreResult<History> {
            let c = self.conn()?;
            let last: Option<i64> = match &q.target_key {
                Some(k) => c.query_row(
                    "SELECT MAX(COALESCE(acted_at, CASE WHEN status = 'observed' THEN created_at END)) FROM runs WHERE target_key = ?1",
                    params![k],
                    |r| r.get(0),
                )?,
                None => None,
            };
            let attempts: i64 = match q.incident_id {
                Some(i) => c.query_row(
                    "SELECT COUNT(*) FROM runs WHERE incident_id = ?1 AND playbook = ?2 AND status != 'refused'",
                    params![i, q.playbook],
                    |r| r.get(0),
                )?,
                None => 0,
            };
            let global: i64 = match q.global_since {
                Some(t) => c.query_row("SELECT COUNT(*) FROM runs WHERE acted_at >= ?1", params![ms(t)], |r| r.get(0))?,
                None => 0,
            };
            let ns: i64 = match (&q.namespace, q.namespace_since) {
                (Some(n), Some(t)) => c.query_row(
                    "SELECT COUNT(*) FROM runs WHERE namespace = ?1 AND acted_at >= ?2",
                    params![n, ms(t)],
                    |r| r.get(0),
                )?,
                _ => 0,
            };
            Ok(History {
                last_acted_on_target: last.map(from_ms),
                attempts_for_incident: u32::try_from(attempts).unwrap_or(u32::MAX),
                acted_global: u32::try_from(global).unwrap_or(u32::MAX),
                acted_namespace: u32::try_from(ns).unwrap_or(u32::MAX),
            })
        };
        run().map_err(|e| e.to_string())
    }

    fn installation_id(&self) -> Result<Option<String>, String> {
        Store::installation_id(self).map(Some).map_err(|e| e.to_string())
    }
}
