//! Playbook runs and the audit trail in the store.
//!
//! A run is stored whole (JSON) next to the columns that queries need; the run and the audit
//! entries of one transition are written in one transaction. The audit chain is extended
//! inside that transaction (a serial one, `Db::tx_serial`, so two processes sharing the
//! store cannot both append after the same head), and the audit head (count and last hash) is updated in the
//! same transaction, so truncation is detected. Every write of a run checks the run's claim
//! (owner and fencing token, see `warden_playbooks::claim`); claim expiry is wall-clock time.

use std::time::Duration;

use chrono::{DateTime, Utc};
use warden_playbooks::audit::{self, AuditEntry, AuditEvent, AuditFence, AuditHead, AuditKind};
use warden_playbooks::claim::{check_fence, decide_claim, ClaimDecision, ClaimState, RunClaim, CLAIM_TTL};
use warden_playbooks::engine::{HistoryQuery, RunStore, RunStoreError};
use warden_playbooks::guards::History;
use warden_playbooks::run::{Run, RunStatus, StepStatus};

use crate::store::db::{args, Conn, Row, Value};
use crate::store::{from_ms, ms, Store, StoreError, StoreResult};

/// Extend the audit chain with `events` and move the audit head, inside `tx` (a serial
/// transaction, `Db::tx_serial`).
pub(crate) fn append(tx: &Conn<'_>, events: &[AuditEvent]) -> StoreResult<()> {
    let mut last = None;
    for ev in events {
        let head = match tx.query_opt("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1", args![])? {
            Some(r) => Some((r.get::<i64>(0)?, r.get::<String>(1)?)),
            None => None,
        };
        let entry = audit::chain(head.as_ref().map(|(s, h)| (*s, h.as_str())), ev.clone());
        tx.execute(
            "INSERT INTO audit (seq, at, run_id, kind, actor, detail, prev_hash, hash, lease, lease_holder, lease_transitions)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            args![
                entry.seq,
                entry.at.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
                entry.run_id,
                entry.kind.as_str(),
                entry.actor,
                entry.detail.to_string(),
                entry.prev_hash,
                entry.hash,
                entry.fence.as_ref().map(|f| f.lease.clone()),
                entry.fence.as_ref().map(|f| f.holder.clone()),
                entry.fence.as_ref().map(|f| f.transitions),
            ],
        )?;
        last = Some(AuditHead::after(&entry));
    }
    if let Some(head) = last {
        tx.execute(
            "INSERT INTO audit_head (id, count, last_hash) VALUES (1, ?1, ?2)
             ON CONFLICT (id) DO UPDATE SET count = excluded.count, last_hash = excluded.last_hash",
            args![head.count, head.last_hash],
        )?;
    }
    Ok(())
}

/// Wall-clock milliseconds `ttl` from now.
fn expiry(now: DateTime<Utc>, ttl: Duration) -> i64 {
    ms(now) + i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2)
}

fn claim_state(tx: &Conn<'_>, id: i64) -> StoreResult<Option<ClaimState>> {
    let Some(r) =
        tx.query_opt("SELECT claim_owner, claim_token, claim_expires_at FROM runs WHERE id = ?1", args![id])?
    else {
        return Ok(None);
    };
    Ok(Some(ClaimState {
        owner: r.get(0)?,
        token: u64::try_from(r.get::<i64>(1)?).unwrap_or(0),
        expires_at: r.get::<Option<i64>>(2)?.map(from_ms),
    }))
}

/// What a claimed write found.
enum Fence {
    Ok,
    Stale(warden_playbooks::claim::Fenced),
}

fn fence(tx: &Conn<'_>, claim: &RunClaim) -> StoreResult<Fence> {
    let Some(current) = claim_state(tx, claim.run_id)? else {
        return Err(StoreError::Corrupt { table: "runs", message: format!("run {} is not stored", claim.run_id) });
    };
    Ok(match check_fence(&current, claim) {
        Ok(()) => Fence::Ok,
        Err(f) => Fence::Stale(f),
    })
}

fn body(run: &Run) -> StoreResult<String> {
    serde_json::to_string(run).map_err(|e| StoreError::Corrupt { table: "runs", message: e.to_string() })
}

fn run_from_body(id: i64, text: &str) -> StoreResult<Run> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt { table: "runs", message: format!("run {id}: {e}") })
}

fn active_key(run: &Run) -> Option<String> {
    if run.status.is_terminal() {
        None
    } else {
        run.target.as_ref().map(|t| t.lock_key())
    }
}

/// A fencing token as stored (tokens start at 1 and grow by one per grant).
fn token(claim: &RunClaim) -> i64 {
    i64::try_from(claim.token.0).unwrap_or(i64::MAX)
}

impl Store {
    /// What runs changed on an incident, in words, oldest first (for notifications). A
    /// store that cannot be read gives an empty history (logged): the notification still goes.
    pub fn action_history(&self, incident_id: i64) -> Vec<String> {
        let mut runs = match self.list_runs(None, Some(incident_id), 100) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(incident = incident_id, error = %e, "reading the incident's runs");
                return Vec::new();
            }
        };
        runs.reverse();
        runs.iter()
            .flat_map(|r| r.steps.iter().chain(&r.revert_steps))
            .filter(|s| s.status == StepStatus::Done)
            .filter_map(|s| s.result.as_ref()?.get("summary")?.as_str().map(str::to_string))
            .filter(|t| !t.starts_with("verified"))
            .collect()
    }

    fn insert_run_tx(&self, run: &Run, events: &[AuditEvent], owner: &str) -> StoreResult<Result<RunClaim, i64>> {
        self.db.tx_serial(|tx| {
            let lock = active_key(run);
            if let Some(key) = &lock {
                if let Some(h) = tx.query_opt("SELECT id FROM runs WHERE active_target = ?1", args![key])? {
                    return Ok(Err(h.get(0)?));
                }
            }
            let id: i64 = tx
                .query_one(
                    "INSERT INTO runs (playbook, status, target_key, namespace, incident_id, trigger_kind, acted_at, dry_run,
                        created_at, updated_at, wake_at, active_target, body)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL, ?7, ?8, ?9, ?10, ?11, '{}')
                     RETURNING id",
                    args![
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
                )?
                .get(0)?;
            let mut stored = run.clone();
            stored.id = id;
            let claim = match decide_claim(id, &ClaimState::default(), owner, Utc::now(), CLAIM_TTL) {
                ClaimDecision::Granted(c) => c,
                ClaimDecision::Held { owner, .. } => {
                    return Err(StoreError::Corrupt {
                        table: "runs",
                        message: format!("new run {id} is held by {owner}"),
                    })
                }
            };
            tx.execute(
                "UPDATE runs SET body = ?1, claim_owner = ?3, claim_token = ?4, claim_expires_at = ?5 WHERE id = ?2",
                args![body(&stored)?, id, claim.owner, token(&claim), ms(claim.expires_at)],
            )?;
            let events: Vec<AuditEvent> = events
                .iter()
                .cloned()
                .map(|mut e| {
                    e.run_id = Some(id);
                    e
                })
                .collect();
            append(tx, &events)?;
            Ok(Ok(claim))
        })
    }

    /// Store the run under `claim` (refused with the stale claim's `Fenced` otherwise) and
    /// renew the claim.
    fn save_run_tx(
        &self,
        run: &Run,
        events: &[AuditEvent],
        claim: &RunClaim,
    ) -> StoreResult<Result<(), warden_playbooks::claim::Fenced>> {
        if claim.run_id != run.id {
            return Err(StoreError::Corrupt {
                table: "runs",
                message: format!("run {} written with the claim of run {}", run.id, claim.run_id),
            });
        }
        self.db.tx_serial(|tx| {
            if let Fence::Stale(f) = fence(tx, claim)? {
                return Ok(Err(f));
            }
            let acted_at = run.acted.then(|| ms(run.updated_at));
            let n = tx.execute(
                "UPDATE runs SET status = ?2, acted_at = COALESCE(acted_at, ?3), updated_at = ?4, wake_at = ?5,
                    active_target = ?6, body = ?7, claim_expires_at = ?8 WHERE id = ?1",
                args![
                    run.id,
                    run.status.as_str(),
                    acted_at,
                    ms(run.updated_at),
                    run.wake_at.map(ms),
                    active_key(run),
                    body(run)?,
                    expiry(Utc::now(), CLAIM_TTL)
                ],
            )?;
            if n != 1 {
                return Err(StoreError::Corrupt { table: "runs", message: format!("run {} is not stored", run.id) });
            }
            append(tx, events)?;
            Ok(Ok(()))
        })
    }

    fn claim_run_tx(&self, id: i64, owner: &str, ttl: Duration) -> StoreResult<Option<ClaimDecision>> {
        self.db.tx_serial(|tx| {
            let Some(current) = claim_state(tx, id)? else { return Ok(None) };
            let decision = decide_claim(id, &current, owner, Utc::now(), ttl);
            if let ClaimDecision::Granted(claim) = &decision {
                tx.execute(
                    "UPDATE runs SET claim_owner = ?2, claim_token = ?3, claim_expires_at = ?4 WHERE id = ?1",
                    args![id, claim.owner, token(claim), ms(claim.expires_at)],
                )?;
            }
            Ok(Some(decision))
        })
    }

    fn renew_claim_tx(
        &self,
        claim: &RunClaim,
        ttl: Duration,
    ) -> StoreResult<Result<(), warden_playbooks::claim::Fenced>> {
        self.db.tx_serial(|tx| {
            if let Fence::Stale(f) = fence(tx, claim)? {
                return Ok(Err(f));
            }
            tx.execute(
                "UPDATE runs SET claim_expires_at = ?2 WHERE id = ?1",
                args![claim.run_id, expiry(Utc::now(), ttl)],
            )?;
            Ok(Ok(()))
        })
    }

    fn release_claim_tx(&self, claim: &RunClaim) -> StoreResult<()> {
        // Only the holder's own claim is released; the token stays, so the next grant's is larger.
        self.with(|c| {
            c.execute(
                "UPDATE runs SET claim_owner = NULL, claim_expires_at = NULL WHERE id = ?1 AND claim_owner = ?2 AND claim_token = ?3",
                args![claim.run_id, claim.owner, token(claim)],
            )?;
            Ok(())
        })
    }

    /// The audit head (count and last hash), `None` in a store that has none yet.
    pub fn audit_head(&self) -> StoreResult<Option<AuditHead>> {
        self.with(|c| {
            c.query_opt("SELECT count, last_hash FROM audit_head WHERE id = 1", args![])?
                .map(|r| Ok(AuditHead { count: r.get(0)?, last_hash: r.get(1)? }))
                .transpose()
        })
    }

    pub fn get_run(&self, id: i64) -> StoreResult<Option<Run>> {
        let row = self.with(|c| c.query_opt("SELECT body FROM runs WHERE id = ?1", args![id]))?;
        row.map(|r| run_from_body(id, &r.get::<String>(0)?)).transpose()
    }

    /// Runs, newest first, optionally only one status or one incident's.
    pub fn list_runs(&self, status: Option<RunStatus>, incident_id: Option<i64>, limit: u32) -> StoreResult<Vec<Run>> {
        self.list_runs_before(status, incident_id, None, limit)
    }

    /// Like [`Self::list_runs`], only runs older than run `before` (newest first): the next
    /// page after a page ending at `before`.
    pub fn list_runs_before(
        &self,
        status: Option<RunStatus>,
        incident_id: Option<i64>,
        before: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<Run>> {
        let rows = self.with(|c| {
            c.query(
                "SELECT id, body FROM runs WHERE (CAST(?1 AS TEXT) IS NULL OR status = ?1)
                    AND (CAST(?2 AS BIGINT) IS NULL OR incident_id = ?2)
                    AND (CAST(?4 AS BIGINT) IS NULL OR id < ?4)
                 ORDER BY id DESC LIMIT ?3",
                args![status.map(|s| s.as_str()), incident_id, limit, before],
            )
        })?;
        rows.iter().map(|r| run_from_body(r.get(0)?, &r.get::<String>(1)?)).collect()
    }

    /// When the last run on the incident started (for re-triggering after a cooldown).
    pub fn last_run_for_incident(&self, incident_id: i64) -> StoreResult<Option<DateTime<Utc>>> {
        let t: Option<i64> = self.with(|c| {
            c.query_one("SELECT MAX(created_at) FROM runs WHERE incident_id = ?1", args![incident_id])?.get(0)
        })?;
        Ok(t.map(from_ms))
    }

    /// The whole audit trail, oldest first.
    pub fn audit_entries(&self) -> StoreResult<Vec<AuditEntry>> {
        let rows = self.with(|c| {
            c.query(
                "SELECT seq, at, run_id, kind, actor, detail, prev_hash, hash, lease, lease_holder, lease_transitions
                 FROM audit ORDER BY seq",
                args![],
            )
        })?;
        rows.iter().map(audit_from_row).collect()
    }

    /// Audit entries of one run, oldest first.
    pub fn audit_for_run(&self, run_id: i64) -> StoreResult<Vec<AuditEntry>> {
        self.audit_query(Some(run_id), None, None)
    }

    /// Audit entries, oldest first: of run `run_id` and of kind `kind` when given; with
    /// `last`, only the last that many of them.
    pub fn audit_query(
        &self,
        run_id: Option<i64>,
        kind: Option<AuditKind>,
        last: Option<u32>,
    ) -> StoreResult<Vec<AuditEntry>> {
        let rows = self.with(|c| {
            c.query(
                "SELECT * FROM (
                     SELECT seq, at, run_id, kind, actor, detail, prev_hash, hash, lease, lease_holder, lease_transitions
                     FROM audit
                     WHERE (CAST(?1 AS BIGINT) IS NULL OR run_id = ?1) AND (CAST(?2 AS TEXT) IS NULL OR kind = ?2)
                     ORDER BY seq DESC LIMIT ?3
                 ) AS last_entries ORDER BY seq",
                args![run_id, kind.map(AuditKind::as_str), last.map(i64::from).unwrap_or(i64::MAX)],
            )
        })?;
        rows.iter().map(audit_from_row).collect()
    }
}

fn audit_from_row(r: &Row) -> StoreResult<AuditEntry> {
    let seq: i64 = r.get(0)?;
    let at: String = r.get(1)?;
    let kind: String = r.get(3)?;
    let detail: String = r.get(5)?;
    let fence = match (r.get::<Option<String>>(8)?, r.get::<Option<String>>(9)?, r.get::<Option<i64>>(10)?) {
        (Some(lease), Some(holder), Some(transitions)) => Some(AuditFence { lease, holder, transitions }),
        _ => None,
    };
    let corrupt = |m: String| StoreError::Corrupt { table: "audit", message: format!("entry {seq}: {m}") };
    let at = DateTime::parse_from_rfc3339(&at).map_err(|e| corrupt(format!("time {at:?}: {e}")))?.with_timezone(&Utc);
    let kind: AuditKind = serde_json::from_value(serde_json::Value::String(kind.clone()))
        .map_err(|_| corrupt(format!("kind {kind:?}")))?;
    let detail = serde_json::from_str(&detail).map_err(|e| corrupt(format!("detail: {e}")))?;
    Ok(AuditEntry {
        seq,
        at,
        run_id: r.get(2)?,
        kind,
        actor: r.get(4)?,
        detail,
        fence,
        prev_hash: r.get(6)?,
        hash: r.get(7)?,
    })
}

impl RunStore for Store {
    fn insert_run(&self, run: &Run, audit: &[AuditEvent], owner: &str) -> Result<RunClaim, RunStoreError> {
        match self.insert_run_tx(run, audit, owner) {
            Ok(Ok(claim)) => Ok(claim),
            Ok(Err(holder)) => Err(RunStoreError::TargetBusy { run_id: holder }),
            Err(e) => Err(run_store_error(e)),
        }
    }

    fn save_run(&self, run: &Run, audit: &[AuditEvent], claim: &RunClaim) -> Result<(), RunStoreError> {
        match self.save_run_tx(run, audit, claim) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(f)) => Err(RunStoreError::Fenced(f)),
            Err(e) => Err(run_store_error(e)),
        }
    }

    fn claim_run(&self, id: i64, owner: &str, ttl: Duration) -> Result<ClaimDecision, RunStoreError> {
        match self.claim_run_tx(id, owner, ttl) {
            Ok(Some(d)) => Ok(d),
            Ok(None) => Err(RunStoreError::NoRun(id)),
            Err(e) => Err(run_store_error(e)),
        }
    }

    fn renew_claim(&self, claim: &RunClaim, ttl: Duration) -> Result<(), RunStoreError> {
        match self.renew_claim_tx(claim, ttl) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(f)) => Err(RunStoreError::Fenced(f)),
            Err(e) => Err(run_store_error(e)),
        }
    }

    fn release_claim(&self, claim: &RunClaim) -> Result<(), RunStoreError> {
        self.release_claim_tx(claim).map_err(run_store_error)
    }

    fn get_run(&self, id: i64) -> Result<Option<Run>, RunStoreError> {
        Store::get_run(self, id).map_err(run_store_error)
    }

    fn due_runs(&self, now: DateTime<Utc>) -> Result<Vec<i64>, RunStoreError> {
        // Claims expire on the wall clock, whatever clock `now` is.
        let run = || -> StoreResult<Vec<i64>> {
            let rows = self.with(|c| {
                c.query(
                    "SELECT id FROM runs WHERE ((status IN ('running', 'reverting') AND (wake_at IS NULL OR wake_at <= ?1))
                        OR (status = 'awaiting_approval' AND wake_at <= ?1))
                        AND (claim_owner IS NULL OR claim_expires_at IS NULL OR claim_expires_at <= ?2) ORDER BY id",
                    args![ms(now), ms(Utc::now())],
                )
            })?;
            rows.iter().map(|r| r.get(0)).collect()
        };
        run().map_err(run_store_error)
    }

    fn history(&self, q: &HistoryQuery) -> Result<History, RunStoreError> {
        let count = |c: &Conn<'_>, sql: &str, args: &[Value]| -> StoreResult<u32> {
            let n: i64 = c.query_one(sql, args)?.get(0)?;
            Ok(u32::try_from(n).unwrap_or(u32::MAX))
        };
        self.with(|c| {
            let last: Option<i64> = match &q.target_key {
                Some(k) => c
                    .query_one(
                        "SELECT MAX(COALESCE(acted_at, CASE WHEN status = 'observed' THEN created_at END)) FROM runs WHERE target_key = ?1",
                        args![k],
                    )?
                    .get(0)?,
                None => None,
            };
            Ok(History {
                last_acted_on_target: last.map(from_ms),
                attempts_for_incident: match q.incident_id {
                    Some(i) => count(
                        c,
                        "SELECT COUNT(*) FROM runs WHERE incident_id = ?1 AND playbook = ?2 AND status != 'refused'",
                        args![i, q.playbook],
                    )?,
                    None => 0,
                },
                acted_global: match q.global_since {
                    Some(t) => count(c, "SELECT COUNT(*) FROM runs WHERE acted_at >= ?1", args![ms(t)])?,
                    None => 0,
                },
                acted_namespace: match (&q.namespace, q.namespace_since) {
                    (Some(n), Some(t)) => count(
                        c,
                        "SELECT COUNT(*) FROM runs WHERE namespace = ?1 AND acted_at >= ?2",
                        args![n, ms(t)],
                    )?,
                    _ => 0,
                },
            })
        })
        .map_err(run_store_error)
    }

    fn installation_id(&self) -> Result<Option<String>, RunStoreError> {
        Store::installation_id(self).map(Some).map_err(run_store_error)
    }
}

/// A store error at the playbooks' seam: a busy or locked database, or a lost connection,
/// is worth retrying.
fn run_store_error(e: StoreError) -> RunStoreError {
    let retryable = e.is_retryable();
    RunStoreError::backend(e, retryable)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use warden_playbooks::claim::FencingToken;
    use warden_playbooks::guards::GuardSettings;
    use warden_playbooks::run::{Target, TriggerInfo};

    pub(crate) fn run() -> Run {
        let now = Utc::now();
        Run {
            id: 0,
            playbook: "p".into(),
            spec: warden_playbooks::load::parse_playbook(
                "name: p\nsteps: [{notify: {message: hi}}]\n",
                std::path::Path::new("p.yaml"),
            )
            .expect("playbook"),
            params: Default::default(),
            target: Some(Target::deployment("shop", "web")),
            trigger: TriggerInfo {
                kind: "manual".into(),
                actor: "user/t".into(),
                incident_id: None,
                detail: serde_json::Value::Null,
            },
            vars: Default::default(),
            guards: GuardSettings::default(),
            dry_run: false,
            status: RunStatus::Running,
            reason: None,
            refusal: None,
            approval: None,
            steps: Vec::new(),
            revert_steps: Vec::new(),
            acted: false,
            created_at: now,
            updated_at: now,
            wake_at: None,
        }
    }

    fn ev(kind: AuditKind) -> AuditEvent {
        AuditEvent::new(Utc::now(), None, kind, "warden", serde_json::json!({}))
    }

    #[test]
    fn one_owner_at_a_time_and_stale_tokens_are_fenced() {
        for store in crate::store::testing::stores() {
            let a = store.insert_run(&run(), &[ev(AuditKind::Trigger)], "a").expect("insert");
            assert_eq!(a.token, FencingToken(1));
            let id = a.run_id;
            // Held by a: b is refused, and the ticker does not list it.
            assert!(matches!(store.claim_run(id, "b", CLAIM_TTL), Ok(ClaimDecision::Held { .. })));
            assert!(store.due_runs(Utc::now()).expect("due").is_empty());
            let mut r = store.get_run(id).expect("get").expect("run");
            r.reason = Some("a wrote".into());
            assert!(store.save_run(&r, &[ev(AuditKind::State)], &a).is_ok());
            store.release_claim(&a).expect("release");
            assert_eq!(store.due_runs(Utc::now()).expect("due"), vec![id]);

            let b = match store.claim_run(id, "b", CLAIM_TTL) {
                Ok(ClaimDecision::Granted(c)) => c,
                other => panic!("b should get the run: {other:?}"),
            };
            assert_eq!(b.token, FencingToken(2));
            // a's late write is refused and stores nothing.
            r.reason = Some("a again".into());
            assert!(matches!(store.save_run(&r, &[ev(AuditKind::State)], &a), Err(RunStoreError::Fenced(_))));
            assert!(matches!(store.renew_claim(&a, CLAIM_TTL), Err(RunStoreError::Fenced(_))));
            assert_eq!(store.get_run(id).expect("get").expect("run").reason.as_deref(), Some("a wrote"));
            // a releasing its old claim does not free b's.
            store.release_claim(&a).expect("release");
            assert!(matches!(store.claim_run(id, "c", CLAIM_TTL), Ok(ClaimDecision::Held { .. })));
            assert!(store.save_run(&r, &[], &b).is_ok());
        }
    }

    #[test]
    fn the_audit_head_follows_every_append() {
        for store in crate::store::testing::stores() {
            assert_eq!(store.audit_head().expect("head").map(|h| h.count), Some(0));
            let a = store.insert_run(&run(), &[ev(AuditKind::Trigger), ev(AuditKind::Guard)], "a").expect("insert");
            let r = store.get_run(a.run_id).expect("get").expect("run");
            store.save_run(&r, &[ev(AuditKind::State)], &a).expect("save");
            let entries = store.audit_entries().expect("entries");
            let head = store.audit_head().expect("head").expect("a head");
            assert_eq!(head.count, 3);
            assert_eq!(Some(&head.last_hash), entries.last().map(|e| &e.hash));
            assert!(audit::verify_with_head(&entries, Some(&head)).is_ok());
            assert!(audit::verify_with_head(&entries[..2], Some(&head)).is_err());
        }
    }

    #[test]
    fn lease_fences_are_stored_with_their_entry_and_the_chain_verifies() {
        for store in crate::store::testing::stores() {
            // An entry without a fence (a single replica, or written before fences existed)...
            let a = store.insert_run(&run(), &[ev(AuditKind::Trigger)], "a").expect("insert");
            let r = store.get_run(a.run_id).expect("get").expect("run");
            // ... followed by a fenced request.
            let mut fenced = ev(AuditKind::Request);
            fenced.fence =
                Some(AuditFence { lease: "lease warden/warden".into(), holder: "warden-0".into(), transitions: 4 });
            store.save_run(&r, &[fenced, ev(AuditKind::Response)], &a).expect("save");
            let entries = store.audit_entries().expect("entries");
            assert_eq!(entries.len(), 3);
            assert_eq!(entries[0].fence, None);
            let f = entries[1].fence.as_ref().expect("the request keeps its fence");
            assert_eq!((f.holder.as_str(), f.transitions), ("warden-0", 4));
            assert_eq!(entries[2].fence, None);
            let head = store.audit_head().expect("head");
            assert!(audit::verify_with_head(&entries, head.as_ref()).is_ok());
            // The fence is covered by the hash: a rewritten holder is found.
            store
                .with(|c| c.execute("UPDATE audit SET lease_holder = 'warden-1' WHERE seq = 2", args![]))
                .expect("update");
            let edited = store.audit_entries().expect("entries");
            assert_eq!(audit::verify_with_head(&edited, head.as_ref()).unwrap_err().seq, 2);
        }
    }
}
