//! The silences table of the [`Store`] (see [`crate::incident::silence`]), and the outbox's
//! `silenced` state for the messages a silence held back.

use chrono::{DateTime, Utc};

use serde_json::json;
use warden_playbooks::audit::{AuditEvent, AuditKind};

use crate::incident::silence::Silence;
use crate::store::db::{args, Row};
use crate::store::runs::append;
use crate::store::{from_ms, ms, Store, StoreError, StoreResult};

/// A silence to store (its matchers already checked).
#[derive(Debug, Clone, PartialEq)]
pub struct NewSilence {
    pub matchers: Vec<String>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub created_by: String,
    pub comment: String,
}

const SILENCE_SELECT: &str =
    "SELECT id, matchers, starts_at, ends_at, created_by, comment, created_at, expired_at, expired_by FROM silences";

fn silence_from_row(r: &Row) -> StoreResult<Silence> {
    let id: i64 = r.get(0)?;
    let matchers: String = r.get(1)?;
    Ok(Silence {
        id,
        matchers: serde_json::from_str(&matchers)
            .map_err(|e| StoreError::Corrupt { table: "silences", message: format!("silence {id}: {e}") })?,
        starts_at: from_ms(r.get(2)?),
        ends_at: from_ms(r.get(3)?),
        created_by: r.get(4)?,
        comment: r.get(5)?,
        created_at: from_ms(r.get(6)?),
        expired_at: r.get::<Option<i64>>(7)?.map(from_ms),
        expired_by: r.get(8)?,
    })
}

impl Store {
    /// Store a silence and its audit entry (`created` by `created_by`), in one transaction.
    pub fn add_silence(&self, s: &NewSilence, now: DateTime<Utc>) -> StoreResult<Silence> {
        let matchers = serde_json::to_string(&s.matchers)
            .map_err(|e| StoreError::Corrupt { table: "silences", message: e.to_string() })?;
        let id: i64 = self.db.tx_serial(|tx| {
            let id: i64 = tx
                .query_one(
                    "INSERT INTO silences (matchers, starts_at, ends_at, created_by, comment, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id",
                    args![matchers, ms(s.starts_at), ms(s.ends_at), s.created_by, s.comment, ms(now)],
                )?
                .get(0)?;
            let detail = json!({
                "action": "created",
                "silence_id": id,
                "matchers": s.matchers,
                "starts_at": s.starts_at.to_rfc3339(),
                "ends_at": s.ends_at.to_rfc3339(),
                "comment": s.comment,
            });
            append(tx, &[AuditEvent::new(now, None, AuditKind::Silence, &s.created_by, detail)])?;
            Ok(id)
        })?;
        self.get_silence(id)?
            .ok_or_else(|| StoreError::Corrupt { table: "silences", message: format!("silence {id} vanished") })
    }

    pub fn get_silence(&self, id: i64) -> StoreResult<Option<Silence>> {
        self.with(|c| c.query_opt(&format!("{SILENCE_SELECT} WHERE id = ?1"), args![id]))?
            .map(|r| silence_from_row(&r))
            .transpose()
    }

    /// Silences that have not ended by `now` (active and pending), oldest first; with
    /// `all`, the ended ones too (newest first after them is not needed: ordered by id).
    pub fn list_silences(&self, all: bool, now: DateTime<Utc>) -> StoreResult<Vec<Silence>> {
        let rows = self.with(|c| {
            c.query(
                &format!(
                    "{SILENCE_SELECT} WHERE CAST(?1 AS BIGINT) = 1 OR (ends_at > ?2 AND (expired_at IS NULL OR expired_at > ?2)) ORDER BY id"
                ),
                args![all, ms(now)],
            )
        })?;
        rows.iter().map(silence_from_row).collect()
    }

    /// End a silence now, with its audit entry (`expired` by `by`). `Ok(None)`: no such
    /// silence; `Ok(Some((silence, false)))`: it had already ended (nothing changed, nothing
    /// audited).
    pub fn expire_silence(&self, id: i64, by: &str, now: DateTime<Utc>) -> StoreResult<Option<(Silence, bool)>> {
        let changed = self.db.tx_serial(|tx| {
            let changed = tx.execute(
                "UPDATE silences SET expired_at = ?2, expired_by = ?3
                 WHERE id = ?1 AND expired_at IS NULL AND ends_at > ?2",
                args![id, ms(now), by],
            )?;
            if changed == 1 {
                let matchers: String =
                    tx.query_one("SELECT matchers FROM silences WHERE id = ?1", args![id])?.get(0)?;
                let matchers: serde_json::Value = serde_json::from_str(&matchers)
                    .map_err(|e| StoreError::Corrupt { table: "silences", message: format!("silence {id}: {e}") })?;
                let detail = json!({ "action": "expired", "silence_id": id, "matchers": matchers });
                append(tx, &[AuditEvent::new(now, None, AuditKind::Silence, by, detail)])?;
            }
            Ok(changed)
        })?;
        Ok(self.get_silence(id)?.map(|s| (s, changed == 1)))
    }

    /// A pending message a silence held back: `silenced` (terminal; the row stays, with
    /// the silence in its reason).
    pub fn mark_silenced(&self, id: i64, silence: i64, now: DateTime<Utc>) -> StoreResult<bool> {
        let n = self.with(|c| {
            c.execute(
                "UPDATE outbox SET state = 'silenced', dead_at = ?2, dead_reason = ?3, dead_noticed = 1
                 WHERE id = ?1 AND state = 'pending'",
                args![id, ms(now), format!("silenced by silence {silence}")],
            )
        })?;
        Ok(n == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).expect("time")
    }

    #[test]
    fn silences_are_listed_until_they_end_and_can_be_ended_early() {
        for s in crate::store::testing::stores() {
            let new = |m: &str, to: i64| NewSilence {
                matchers: vec![m.to_string()],
                starts_at: t(0),
                ends_at: t(to),
                created_by: "user/a".into(),
                comment: "deploy".into(),
            };
            let a = s.add_silence(&new("watch=a", 100), t(0)).expect("add");
            let b = s.add_silence(&new("watch=b", 50), t(0)).expect("add");
            assert_eq!(a.matchers, ["watch=a"]);
            let ids = |v: Vec<Silence>| v.into_iter().map(|x| x.id).collect::<Vec<_>>();
            assert_eq!(ids(s.list_silences(false, t(10)).expect("list")), [a.id, b.id], "{}", s.backend());
            assert_eq!(ids(s.list_silences(false, t(60)).expect("list")), [a.id]);
            assert_eq!(ids(s.list_silences(true, t(60)).expect("list")), [a.id, b.id]);
            let (ended, changed) = s.expire_silence(a.id, "user/b", t(20)).expect("expire").expect("found");
            assert!(changed);
            assert_eq!((ended.expired_by.as_deref(), ended.state(t(21))), (Some("user/b"), "expired"));
            assert!(!s.expire_silence(a.id, "user/b", t(30)).expect("again").expect("found").1);
            assert!(s.expire_silence(999, "user/b", t(30)).expect("none").is_none());
            assert!(s.list_silences(false, t(21)).expect("list").iter().all(|x| x.id != a.id));
            // Both creations and the one real ending are audited (not the no-op second end).
            let audit = s.audit_query(None, Some(AuditKind::Silence), None).expect("audit");
            let seen: Vec<(String, String, i64)> = audit
                .iter()
                .map(|e| {
                    let action = e.detail["action"].as_str().unwrap_or("").to_string();
                    (e.actor.clone(), action, e.detail["silence_id"].as_i64().unwrap_or(0))
                })
                .collect();
            assert_eq!(
                seen,
                [
                    ("user/a".into(), "created".into(), a.id),
                    ("user/a".into(), "created".into(), b.id),
                    ("user/b".into(), "expired".into(), a.id)
                ],
                "{}",
                s.backend()
            );
            assert_eq!(audit[0].detail["matchers"], serde_json::json!(["watch=a"]));
            assert_eq!(audit[0].detail["comment"], "deploy");
            assert!(s.audit_query(None, Some(AuditKind::Incident), None).expect("audit").is_empty());
            assert_eq!(s.audit_query(None, None, Some(2)).expect("audit").len(), 2);
            let entries = s.audit_entries().expect("entries");
            let head = s.audit_head().expect("head");
            assert!(warden_playbooks::audit::verify_with_head(&entries, head.as_ref()).is_ok());
        }
    }
}
