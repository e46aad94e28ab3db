//! Slack button presses a follower received, for the leader ([`crate::api::slack`]).
//!
//! Slack sends a press to whichever replica its Request URL reaches and does not send it
//! again on an error. A follower checks the request's signature, keeps the request here as
//! it came (raw body, Slack's timestamp and signature, when it arrived) and answers 200; the
//! leader handles what waits here as if it had received it, signature check included (with
//! the arrival time as "now"), and marks it handled. Handling is idempotent (a run already
//! decided stays so), so a crash between handling and marking repeats nothing harmful.

use chrono::{DateTime, Utc};

use crate::store::db::args;
use crate::store::{from_ms, ms, Store, StoreResult};

/// How long a handled press is kept (to look into a decision that went wrong).
pub const KEEP_HANDLED: std::time::Duration = std::time::Duration::from_secs(7 * 86_400);

/// One press as a follower received it.
#[derive(Debug, Clone, PartialEq)]
pub struct InboxPress {
    pub id: i64,
    pub received_at: DateTime<Utc>,
    /// The replica that received it.
    pub received_by: String,
    /// `X-Slack-Request-Timestamp` and `X-Slack-Signature` as sent.
    pub slack_timestamp: String,
    pub signature: String,
    /// Slack had sent it before (`X-Slack-Retry-Num`).
    pub retry: bool,
    /// The raw body (form-encoded ASCII).
    pub body: String,
}

impl Store {
    /// Keep a press for the leader; returns its id.
    pub fn enqueue_slack_press(&self, p: &InboxPress) -> StoreResult<i64> {
        self.with(|c| {
            c.query_one(
                "INSERT INTO slack_inbox (received_at, received_by, slack_timestamp, signature, retry, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id",
                args![ms(p.received_at), p.received_by, p.slack_timestamp, p.signature, i64::from(p.retry), p.body],
            )?
            .get(0)
        })
    }

    /// Presses not handled yet, oldest first, at most `limit`.
    pub fn pending_slack_presses(&self, limit: u32) -> StoreResult<Vec<InboxPress>> {
        let rows = self.with(|c| {
            c.query(
                "SELECT id, received_at, received_by, slack_timestamp, signature, retry, body
                 FROM slack_inbox WHERE handled_at IS NULL ORDER BY id LIMIT ?1",
                args![limit],
            )
        })?;
        rows.iter()
            .map(|r| {
                Ok(InboxPress {
                    id: r.get(0)?,
                    received_at: from_ms(r.get(1)?),
                    received_by: r.get(2)?,
                    slack_timestamp: r.get(3)?,
                    signature: r.get(4)?,
                    retry: r.get::<i64>(5)? != 0,
                    body: r.get(6)?,
                })
            })
            .collect()
    }

    /// The leader handled press `id`; presses handled more than [`KEEP_HANDLED`] ago are
    /// removed (the decisions they led to are in the runs and the audit trail).
    pub fn mark_slack_press_handled(&self, id: i64, now: DateTime<Utc>) -> StoreResult<()> {
        let cutoff = now - chrono::Duration::from_std(KEEP_HANDLED).unwrap_or(chrono::Duration::days(7));
        self.tx(|tx| {
            tx.execute(
                "UPDATE slack_inbox SET handled_at = ?2 WHERE id = ?1 AND handled_at IS NULL",
                args![id, ms(now)],
            )?;
            tx.execute("DELETE FROM slack_inbox WHERE handled_at < ?1", args![ms(cutoff)])?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).expect("time")
    }

    #[test]
    fn presses_wait_until_handled_and_old_ones_are_removed() {
        for store in crate::store::testing::stores() {
            let press = |at: i64| InboxPress {
                id: 0,
                received_at: t(at),
                received_by: "warden-1".into(),
                slack_timestamp: at.to_string(),
                signature: "v0=ab".into(),
                retry: false,
                body: "payload=%7B%7D".into(),
            };
            let a = store.enqueue_slack_press(&press(0)).expect("enqueue");
            let b = store.enqueue_slack_press(&press(1)).expect("enqueue");
            let pending = store.pending_slack_presses(10).expect("pending");
            assert_eq!(pending.iter().map(|p| p.id).collect::<Vec<_>>(), [a, b], "{}", store.backend());
            assert_eq!(pending[0], InboxPress { id: a, ..press(0) });
            store.mark_slack_press_handled(a, t(2)).expect("handled");
            assert_eq!(store.pending_slack_presses(10).expect("pending").len(), 1);
            // Handling b eight days later removes a's row, not b's.
            store.mark_slack_press_handled(b, t(2 + 8 * 86_400)).expect("handled");
            let rows: i64 =
                store.with(|c| c.query_one("SELECT COUNT(*) FROM slack_inbox", args![])?.get(0)).expect("count");
            assert_eq!(rows, 1);
            assert!(store.pending_slack_presses(10).expect("pending").is_empty());
        }
    }
}
