//! The web console's sessions in the [`Store`]: shared by every replica that shares the
//! store, and kept across restarts. Rows are keyed by a SHA-256 of the session id (the
//! cookie's value), so the table alone opens no session; `token_hash` is a SHA-256 of the
//! API token the person logged in with, so rotating that token ends its sessions.

use chrono::{DateTime, Utc};

use crate::store::db::args;
use crate::store::{from_ms, ms, Store, StoreResult};

/// One stored session.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSession {
    /// `operator` or `viewer`.
    pub role: String,
    pub name: String,
    pub csrf: String,
    pub token_hash: String,
    pub expires_at: DateTime<Utc>,
}

impl Store {
    /// Store a session under `id_hash`; sessions that ended are removed, and beyond `max`
    /// live ones the one ending first.
    pub fn insert_console_session(
        &self,
        id_hash: &str,
        s: &StoredSession,
        max: u32,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        self.tx(|tx| {
            tx.execute("DELETE FROM console_sessions WHERE expires_at <= ?1", args![ms(now)])?;
            let live: i64 = tx.query_one("SELECT COUNT(*) FROM console_sessions", args![])?.get(0)?;
            if live >= i64::from(max) {
                tx.execute(
                    "DELETE FROM console_sessions WHERE id_hash IN
                         (SELECT id_hash FROM console_sessions ORDER BY expires_at LIMIT ?1)",
                    args![live - i64::from(max) + 1],
                )?;
            }
            tx.execute(
                "INSERT INTO console_sessions (id_hash, role, name, csrf, token_hash, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                args![id_hash, s.role, s.name, s.csrf, s.token_hash, ms(now), ms(s.expires_at)],
            )?;
            Ok(())
        })
    }

    /// The session stored under `id_hash`, if it has not ended at `now`.
    pub fn console_session(&self, id_hash: &str, now: DateTime<Utc>) -> StoreResult<Option<StoredSession>> {
        let row = self.with(|c| {
            c.query_opt(
                "SELECT role, name, csrf, token_hash, expires_at FROM console_sessions WHERE id_hash = ?1 AND expires_at > ?2",
                args![id_hash, ms(now)],
            )
        })?;
        row.map(|r| {
            Ok(StoredSession {
                role: r.get(0)?,
                name: r.get(1)?,
                csrf: r.get(2)?,
                token_hash: r.get(3)?,
                expires_at: from_ms(r.get(4)?),
            })
        })
        .transpose()
    }

    /// End the session stored under `id_hash` (a logout).
    pub fn delete_console_session(&self, id_hash: &str) -> StoreResult<()> {
        self.with(|c| c.execute("DELETE FROM console_sessions WHERE id_hash = ?1", args![id_hash]))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).expect("time")
    }

    #[test]
    fn sessions_are_found_until_they_end_and_the_oldest_make_room() {
        for store in crate::store::testing::stores() {
            let s = |name: &str, ends: i64| StoredSession {
                role: "viewer".into(),
                name: name.into(),
                csrf: format!("csrf-{name}"),
                token_hash: "th".into(),
                expires_at: t(ends),
            };
            store.insert_console_session("a", &s("ann", 100), 2, t(0)).expect("insert");
            store.insert_console_session("b", &s("bob", 50), 2, t(0)).expect("insert");
            assert_eq!(store.console_session("a", t(10)).expect("get"), Some(s("ann", 100)), "{}", store.backend());
            assert!(store.console_session("b", t(50)).expect("get").is_none(), "ended");
            assert!(store.console_session("nope", t(10)).expect("get").is_none());
            // A third live session: the one ending first (bob) makes room.
            store.insert_console_session("c", &s("cat", 200), 2, t(10)).expect("insert");
            assert!(store.console_session("b", t(11)).expect("get").is_none());
            assert!(store.console_session("a", t(11)).expect("get").is_some());
            store.delete_console_session("a").expect("delete");
            assert!(store.console_session("a", t(11)).expect("get").is_none());
            assert_eq!(store.console_session("c", t(11)).expect("get").map(|x| x.name), Some("cat".into()));
        }
    }
}
