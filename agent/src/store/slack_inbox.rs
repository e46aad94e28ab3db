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

    /// The leader handled press `id`.
    pub fn mark_slack_press_handled(&self, id: i64, now: DateTime<Utc>) -> StoreResult<()> {
        self.with(|c| {
            c.execute("UPDATE slack_inbox SET handled_at = ?2 WHERE id = ?1 AND handled_at IS NULL", args![id, ms(now)])
        })?;
        Ok(())
    }
}
