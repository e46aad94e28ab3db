//! The silences table of the [`Store`] (see [`crate::incident::silence`]), and the outbox's
//! `silenced` state for the messages a silence held back.

use chrono::{DateTime, Utc};

use crate::incident::silence::Silence;
use crate::store::db::{args, Row};
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
    pub fn add_silence(&self, s: &NewSilence, now: DateTime<Utc>) -> StoreResult<Silence> {
        let matchers = serde_json::to_string(&s.matchers)
            .map_err(|e| StoreError::Corrupt { table: "silences", message: e.to_string() })?;
        let id: i64 = self.with(|c| {
            c.query_one(
                "INSERT INTO silences (matchers, starts_at, ends_at, created_by, comment, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id",
                args![matchers, ms(s.starts_at), ms(s.ends_at), s.created_by, s.comment, ms(now)],
            )?
            .get(0)
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

    /// End a silence now. `Ok(None)`: no such silence; `Ok(Some((silence, false)))`: it had
    /// already ended (nothing changed).
    pub fn expire_silence(&self, id: i64, by: &str, now: DateTime<Utc>) -> StoreResult<Option<(Silence, bool)>> {
        let changed = self.with(|c| {
            c.execute(
                "UPDATE silences SET expired_at = ?2, expired_by = ?3
                 WHERE id = ?1 AND expired_at IS NULL AND ends_at > ?2",
                args![id, ms(now), by],
            )
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
        }
    }
}
