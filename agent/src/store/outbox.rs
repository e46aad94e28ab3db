//! The outbox table of the [`Store`]: messages waiting for delivery (some held by their
//! route's group, `group_key`), delivered, digested into a digest or group message, or
//! dead-lettered with their reason; and `notify_groups`, when each group last sent.
//!
//! A message is written with the event that caused it (`store::insert_outbox`, in the
//! event's transaction) and then moves through these states:
//!
//! ```text
//! pending ──┬─> delivered                      (the channel acknowledged it)
//!           ├─> digested ──> (delivered_at set when its digest or group message is delivered)
//!           └─> dead ──┬─> pending             (retried by an operator)
//!                      └─> discarded           (dropped by an operator; the row stays)
//! ```
//!
//! Scheduling (which message goes next) is the outbox worker's ([`crate::notify::outbox`]);
//! this module only reads and writes rows, each change in one statement or transaction.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::store::db::{args, Row};
use crate::store::{from_ms, insert_outbox, ms, NewNotification, NotifyGroup, Store, StoreError, StoreResult};

/// The subject stored beside a payload, for listings and digests: the e-mail `subject`,
/// else Slack's fallback `text`.
pub fn payload_subject(payload: &serde_json::Value) -> String {
    ["subject", "text"].iter().find_map(|k| payload.get(*k).and_then(|v| v.as_str())).unwrap_or("").to_string()
}

/// A message to deliver, with its payload.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxItem {
    pub id: i64,
    pub channel: String,
    pub incident_id: Option<i64>,
    pub event: String,
    pub payload: serde_json::Value,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// Failures charged to this message (not to its channel).
    pub strikes: u32,
    /// When it was queued: created, or retried by an operator.
    pub queued_at: DateTime<Utc>,
    pub last_attempt_at: Option<DateTime<Utc>>,
}

/// What scheduling needs to know of a pending message (no payload).
#[derive(Debug, Clone, PartialEq)]
pub struct PendingMessage {
    pub id: i64,
    pub incident_id: Option<i64>,
    pub event: String,
    pub attempts: u32,
    pub strikes: u32,
    pub next_attempt_at: DateTime<Utc>,
    pub queued_at: DateTime<Utc>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub subject: String,
    /// For a digest or a group message: the incidents of the messages it covers.
    pub digest_incidents: Vec<i64>,
    /// The group holding it back until the group is due (`None`: not held).
    pub group: Option<NotifyGroup>,
    /// When it was created (the group's window starts at its oldest message).
    pub created_at: DateTime<Utc>,
}

/// One outbox row as the API and the CLI show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutboxMessage {
    pub id: i64,
    pub channel: String,
    pub incident_id: Option<i64>,
    pub event: String,
    /// `pending`, `delivered`, `digested`, `dead` or `discarded`.
    pub state: String,
    pub subject: String,
    pub attempts: u32,
    pub created_at: DateTime<Utc>,
    /// For pending messages: not before this time.
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub dead_at: Option<DateTime<Utc>>,
    /// Why it was dead-lettered.
    pub reason: Option<String>,
    pub last_error: Option<String>,
    /// The digest or group message that carried it (state `digested`).
    pub digest_id: Option<i64>,
    /// The route group holding it back (pending only, until the group is due).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// Counts for one channel (metrics, `GET /api/v1/outbox`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChannelStats {
    pub channel: String,
    pub pending: u64,
    pub dead: u64,
    /// When the oldest pending message was queued.
    pub oldest_pending: Option<DateTime<Utc>>,
}

/// The outcome of an operator's retry or discard.
#[derive(Debug, Clone, PartialEq)]
pub enum DeadLetterChange {
    Done(Box<OutboxMessage>),
    NotFound,
    /// The message is not dead (its state is given).
    NotDead(String),
}

/// Insert one pending message (`event`: `digest` or `group`) standing for the pending
/// `members` of `channel`, which become `digested` under it; returns its id.
fn insert_standing_for(
    tx: &crate::store::db::Conn<'_>,
    channel: &str,
    event: &str,
    members: &[i64],
    payload: &serde_json::Value,
    now: DateTime<Utc>,
) -> StoreResult<i64> {
    let n =
        NewNotification { channel: channel.to_string(), event: event.into(), payload: payload.clone(), group: None };
    let id = insert_outbox(tx, None, &n, now)?;
    for m in members {
        tx.execute(
            "UPDATE outbox SET state = 'digested', digest_id = ?1 WHERE id = ?2 AND state = 'pending' AND channel = ?3",
            args![id, m, channel],
        )?;
    }
    Ok(id)
}

const MESSAGE_SELECT: &str =
    "SELECT id, channel, incident_id, event, state, subject, attempts, created_at, next_attempt_at,
    last_attempt_at, delivered_at, dead_at, dead_reason, last_error, digest_id, group_key FROM outbox";

fn message_from_row(r: &Row) -> StoreResult<OutboxMessage> {
    let state: String = r.get(4)?;
    let pending = state == "pending";
    Ok(OutboxMessage {
        id: r.get(0)?,
        channel: r.get(1)?,
        incident_id: r.get(2)?,
        event: r.get(3)?,
        subject: r.get(5)?,
        attempts: r.get(6)?,
        created_at: from_ms(r.get(7)?),
        next_attempt_at: if pending { Some(from_ms(r.get(8)?)) } else { None },
        last_attempt_at: r.get::<Option<i64>>(9)?.map(from_ms),
        delivered_at: r.get::<Option<i64>>(10)?.map(from_ms),
        dead_at: r.get::<Option<i64>>(11)?.map(from_ms),
        reason: r.get(12)?,
        last_error: r.get(13)?,
        digest_id: r.get(14)?,
        group: if pending { r.get(15)? } else { None },
        state,
    })
}

impl Store {
    /// Channels with pending messages.
    pub fn pending_channels(&self) -> StoreResult<Vec<String>> {
        let rows = self.with(|c| {
            c.query("SELECT DISTINCT channel FROM outbox WHERE state = 'pending' ORDER BY channel", args![])
        })?;
        rows.iter().map(|r| r.get(0)).collect()
    }

    /// Every pending message of `channel`, oldest first, without payloads.
    pub fn pending_messages(&self, channel: &str) -> StoreResult<Vec<PendingMessage>> {
        self.with(|c| {
            let rows = c.query(
                "SELECT id, incident_id, event, attempts, strikes, next_attempt_at, COALESCE(retried_at, created_at),
                        last_attempt_at, subject, group_key, group_wait_ms, group_interval_ms, created_at
                 FROM outbox WHERE state = 'pending' AND channel = ?1 ORDER BY id",
                args![channel],
            )?;
            let window = |ms: i64| std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0));
            let mut out = rows
                .iter()
                .map(|r| {
                    let group =
                        match (r.get::<Option<String>>(9)?, r.get::<Option<i64>>(10)?, r.get::<Option<i64>>(11)?) {
                            (Some(key), Some(wait), Some(interval)) => {
                                Some(NotifyGroup { key, wait: window(wait), interval: window(interval) })
                            }
                            _ => None,
                        };
                    Ok(PendingMessage {
                        id: r.get(0)?,
                        incident_id: r.get(1)?,
                        event: r.get(2)?,
                        attempts: r.get(3)?,
                        strikes: r.get(4)?,
                        next_attempt_at: from_ms(r.get(5)?),
                        queued_at: from_ms(r.get(6)?),
                        last_attempt_at: r.get::<Option<i64>>(7)?.map(from_ms),
                        subject: r.get(8)?,
                        digest_incidents: Vec::new(),
                        group,
                        created_at: from_ms(r.get(12)?),
                    })
                })
                .collect::<StoreResult<Vec<PendingMessage>>>()?;
            if out.iter().any(|m| matches!(m.event.as_str(), "digest" | "group")) {
                let members = c.query(
                    "SELECT m.digest_id, m.incident_id FROM outbox m JOIN outbox d ON d.id = m.digest_id
                     WHERE d.state = 'pending' AND d.channel = ?1 AND m.incident_id IS NOT NULL
                     GROUP BY m.digest_id, m.incident_id",
                    args![channel],
                )?;
                for m in members {
                    let (digest, incident): (i64, i64) = (m.get(0)?, m.get(1)?);
                    if let Some(d) = out.iter_mut().find(|p| p.id == digest) {
                        d.digest_incidents.push(incident);
                    }
                }
            }
            Ok(out)
        })
    }

    /// One message with its payload.
    pub fn outbox_item(&self, id: i64) -> StoreResult<Option<OutboxItem>> {
        let row = self.with(|c| {
            c.query_opt(
                "SELECT id, channel, incident_id, event, payload, attempts, strikes, COALESCE(retried_at, created_at), last_attempt_at
                 FROM outbox WHERE id = ?1",
                args![id],
            )
        })?;
        let Some(r) = row else { return Ok(None) };
        let payload = serde_json::from_str(&r.get::<String>(4)?)
            .map_err(|e| StoreError::Corrupt { table: "outbox", message: format!("message {id}: {e}") })?;
        Ok(Some(OutboxItem {
            id: r.get(0)?,
            channel: r.get(1)?,
            incident_id: r.get(2)?,
            event: r.get(3)?,
            payload,
            attempts: r.get(5)?,
            strikes: r.get(6)?,
            queued_at: from_ms(r.get(7)?),
            last_attempt_at: r.get::<Option<i64>>(8)?.map(from_ms),
        }))
    }

    /// The channel acknowledged the message (and, for a digest, every message it covers).
    pub fn mark_delivered(&self, id: i64, now: DateTime<Utc>) -> StoreResult<()> {
        self.tx(|tx| {
            tx.execute(
                "UPDATE outbox SET state = 'delivered', delivered_at = ?2, last_attempt_at = ?2, attempts = attempts + 1, last_error = NULL
                 WHERE id = ?1 AND state = 'pending'",
                args![id, ms(now)],
            )?;
            tx.execute(
                "UPDATE outbox SET delivered_at = ?2 WHERE digest_id = ?1 AND state = 'digested'",
                args![id, ms(now)],
            )?;
            Ok(())
        })
    }

    /// A failed attempt: try again at `next_attempt_at`. `strike` charges the failure to
    /// the message (it counts towards `notify.retry.max_attempts`).
    pub fn mark_failed(
        &self,
        id: i64,
        error: &str,
        next_attempt_at: DateTime<Utc>,
        strike: bool,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        self.with(|c| {
            c.execute(
                "UPDATE outbox SET attempts = attempts + 1, strikes = strikes + ?4, last_error = ?2, next_attempt_at = ?3, last_attempt_at = ?5
                 WHERE id = ?1 AND state = 'pending'",
                args![id, error, ms(next_attempt_at), i64::from(strike), ms(now)],
            )?;
            Ok(())
        })
    }

    /// Dead-letter a pending message with its reason; `attempted` counts the attempt that
    /// led to it.
    pub fn dead_letter(&self, id: i64, reason: &str, attempted: bool, now: DateTime<Utc>) -> StoreResult<bool> {
        let n = self.with(|c| {
            c.execute(
                "UPDATE outbox SET state = 'dead', dead_at = ?3, dead_reason = ?2, dead_noticed = 0,
                     attempts = attempts + ?4,
                     last_attempt_at = CASE WHEN CAST(?4 AS BIGINT) = 1 THEN ?3 ELSE last_attempt_at END,
                     last_error = CASE WHEN CAST(?4 AS BIGINT) = 1 THEN ?2 ELSE last_error END
                 WHERE id = ?1 AND state = 'pending'",
                args![id, reason, ms(now), i64::from(attempted)],
            )
        })?;
        Ok(n == 1)
    }

    /// Dead-letter the pending messages of `channel` queued before `cutoff`; the reason is
    /// `reason` followed by the message's last error, if any. Returns how many.
    pub fn expire_pending(
        &self,
        channel: &str,
        cutoff: DateTime<Utc>,
        reason: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<usize> {
        self.with(|c| {
            c.execute(
                "UPDATE outbox SET state = 'dead', dead_at = ?4, dead_noticed = 0,
                     dead_reason = CAST(?3 AS TEXT) || COALESCE('; last error: ' || last_error, '')
                 WHERE state = 'pending' AND channel = ?1 AND COALESCE(retried_at, created_at) < ?2",
                args![channel, ms(cutoff), reason, ms(now)],
            )
        })
    }

    /// Store a digest for `channel` covering the pending messages `members`, in one
    /// transaction: the digest becomes a pending message, its members `digested`.
    pub fn create_digest(
        &self,
        channel: &str,
        members: &[i64],
        payload: &serde_json::Value,
        now: DateTime<Utc>,
    ) -> StoreResult<i64> {
        self.tx(|tx| insert_standing_for(tx, channel, "digest", members, payload, now))
    }

    /// When each group of `channel` last sent a message.
    pub fn group_last_sent(&self, channel: &str) -> StoreResult<std::collections::HashMap<String, DateTime<Utc>>> {
        let rows = self.with(|c| {
            c.query("SELECT group_key, last_sent_at FROM notify_groups WHERE channel = ?1", args![channel])
        })?;
        rows.iter().map(|r| Ok((r.get::<String>(0)?, from_ms(r.get(1)?)))).collect()
    }

    /// Send group `key` of `channel` now, in one transaction: with `payload`, one `group`
    /// message stands for the pending `members` (they become `digested` under it); without,
    /// the members are released to go as they are. Either way the group's last message is
    /// now. Returns the group message's id.
    pub fn flush_group(
        &self,
        channel: &str,
        key: &str,
        members: &[i64],
        payload: Option<&serde_json::Value>,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<i64>> {
        self.tx(|tx| {
            let id = match payload {
                Some(payload) => Some(insert_standing_for(tx, channel, "group", members, payload, now)?),
                None => {
                    for m in members {
                        tx.execute(
                            "UPDATE outbox SET group_key = NULL, group_wait_ms = NULL, group_interval_ms = NULL
                             WHERE id = ?1 AND state = 'pending' AND channel = ?2",
                            args![m, channel],
                        )?;
                    }
                    None
                }
            };
            tx.execute(
                "INSERT INTO notify_groups (channel, group_key, last_sent_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (channel, group_key) DO UPDATE SET last_sent_at = excluded.last_sent_at",
                args![channel, key, ms(now)],
            )?;
            Ok(id)
        })
    }

    /// Dead letters nobody was told about yet, oldest first.
    pub fn unnoticed_dead(&self, limit: u32) -> StoreResult<Vec<OutboxMessage>> {
        let rows = self.with(|c| {
            c.query(
                &format!("{MESSAGE_SELECT} WHERE state = 'dead' AND dead_noticed = 0 ORDER BY id LIMIT ?1"),
                args![limit],
            )
        })?;
        rows.iter().map(message_from_row).collect()
    }

    /// Queue notifications that belong to no incident (a run's of no incident), atomically.
    pub fn enqueue(&self, notes: &[NewNotification], now: DateTime<Utc>) -> StoreResult<()> {
        self.enqueue_dead_letter_notices(&[], notes, now)
    }

    /// Queue the notices about dead letters and mark those dead letters as told, atomically.
    pub fn enqueue_dead_letter_notices(
        &self,
        told: &[i64],
        notices: &[NewNotification],
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        self.tx(|tx| {
            for n in notices {
                insert_outbox(tx, None, n, now)?;
            }
            for id in told {
                tx.execute("UPDATE outbox SET dead_noticed = 1 WHERE id = ?1", args![id])?;
            }
            Ok(())
        })
    }

    /// Messages, filtered by state and channel. Pending ones oldest first (queue order),
    /// the others newest first.
    pub fn list_outbox(
        &self,
        state: Option<&str>,
        channel: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<OutboxMessage>> {
        let order = if state == Some("pending") { "ASC" } else { "DESC" };
        let rows = self.with(|c| {
            c.query(
                &format!(
                    "{MESSAGE_SELECT} WHERE (CAST(?1 AS TEXT) IS NULL OR state = ?1) AND (CAST(?2 AS TEXT) IS NULL OR channel = ?2)
                     ORDER BY id {order} LIMIT ?3"
                ),
                args![state, channel, limit],
            )
        })?;
        rows.iter().map(message_from_row).collect()
    }

    pub fn get_outbox(&self, id: i64) -> StoreResult<Option<OutboxMessage>> {
        self.with(|c| c.query_opt(&format!("{MESSAGE_SELECT} WHERE id = ?1"), args![id]))?
            .map(|r| message_from_row(&r))
            .transpose()
    }

    /// Put a dead letter back in the queue, due now, with a fresh attempt budget and age.
    pub fn retry_dead(&self, id: i64, now: DateTime<Utc>) -> StoreResult<DeadLetterChange> {
        let n = self.with(|c| {
            c.execute(
                "UPDATE outbox SET state = 'pending', strikes = 0, next_attempt_at = ?2, retried_at = ?2,
                     dead_at = NULL, dead_reason = NULL, dead_noticed = 0
                 WHERE id = ?1 AND state = 'dead'",
                args![id, ms(now)],
            )
        })?;
        self.dead_letter_change(id, n)
    }

    /// Retry every dead letter (of `channel`, when given). Returns how many.
    pub fn retry_all_dead(&self, channel: Option<&str>, now: DateTime<Utc>) -> StoreResult<usize> {
        self.with(|c| {
            c.execute(
                "UPDATE outbox SET state = 'pending', strikes = 0, next_attempt_at = ?2, retried_at = ?2,
                     dead_at = NULL, dead_reason = NULL, dead_noticed = 0
                 WHERE state = 'dead' AND (CAST(?1 AS TEXT) IS NULL OR channel = ?1)",
                args![channel, ms(now)],
            )
        })
    }

    /// Drop a dead letter for good (the row stays, as `discarded`, with its reason).
    pub fn discard_dead(&self, id: i64) -> StoreResult<DeadLetterChange> {
        let n = self.with(|c| {
            c.execute(
                "UPDATE outbox SET state = 'discarded', dead_noticed = 1 WHERE id = ?1 AND state = 'dead'",
                args![id],
            )
        })?;
        self.dead_letter_change(id, n)
    }

    fn dead_letter_change(&self, id: i64, changed: usize) -> StoreResult<DeadLetterChange> {
        Ok(match self.get_outbox(id)? {
            None => DeadLetterChange::NotFound,
            Some(m) if changed == 1 => DeadLetterChange::Done(Box::new(m)),
            Some(m) => DeadLetterChange::NotDead(m.state),
        })
    }

    /// Pending and dead counts and the oldest pending message, per channel that has any.
    pub fn outbox_stats(&self) -> StoreResult<Vec<ChannelStats>> {
        let rows = self.with(|c| {
            c.query(
                "SELECT channel, COUNT(CASE WHEN state = 'pending' THEN 1 END), COUNT(CASE WHEN state = 'dead' THEN 1 END),
                        MIN(CASE WHEN state = 'pending' THEN COALESCE(retried_at, created_at) END)
                 FROM outbox WHERE state IN ('pending', 'dead') GROUP BY channel ORDER BY channel",
                args![],
            )
        })?;
        rows.iter()
            .map(|r| {
                Ok(ChannelStats {
                    channel: r.get(0)?,
                    pending: r.get::<i64>(1)?.max(0) as u64,
                    dead: r.get::<i64>(2)?.max(0) as u64,
                    oldest_pending: r.get::<Option<i64>>(3)?.map(from_ms),
                })
            })
            .collect()
    }

    /// Messages waiting for delivery, all channels.
    pub fn pending_notifications(&self) -> StoreResult<u64> {
        let n: i64 =
            self.with(|c| c.query_one("SELECT COUNT(*) FROM outbox WHERE state = 'pending'", args![])?.get(0))?;
        Ok(n.max(0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::IncidentSignal;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).expect("time")
    }

    fn sig(fp: &str) -> IncidentSignal {
        IncidentSignal {
            fingerprint: fp.into(),
            watch: "w".into(),
            source: "watch".into(),
            severity: "warning".into(),
            title: "t".into(),
            labels: BTreeMap::new(),
            target: None,
            observed: None,
            expected: None,
            lower: None,
            upper: None,
            score: None,
            detector: None,
        }
    }

    fn note(channel: &str, subject: &str) -> NewNotification {
        NewNotification {
            channel: channel.into(),
            event: "opened".into(),
            payload: json!({"subject": subject}),
            group: None,
        }
    }

    #[test]
    fn dead_letters_keep_their_reason_and_can_be_retried_or_discarded() {
        for s in crate::store::testing::stores() {
            let inc = s
                .open_incident(&sig("a"), t(0), &json!({}), |_| vec![note("email", "one"), note("email", "two")])
                .expect("open");
            let p = s.pending_messages("email").expect("pending");
            assert_eq!(p.iter().map(|m| m.subject.as_str()).collect::<Vec<_>>(), ["one", "two"]);
            assert!(s.dead_letter(p[0].id, "500 Line too long", true, t(1)).expect("dead"));
            // Only pending messages can be dead-lettered.
            assert!(!s.dead_letter(p[0].id, "again", true, t(1)).expect("dead"));
            let dead = s.list_outbox(Some("dead"), None, 10).expect("list");
            assert_eq!(dead.len(), 1);
            assert_eq!(dead[0].reason.as_deref(), Some("500 Line too long"));
            assert_eq!((dead[0].attempts, dead[0].incident_id), (1, Some(inc.id)));
            let stats = s.outbox_stats().expect("stats");
            assert_eq!((stats[0].pending, stats[0].dead), (1, 1));

            // The operator retries it: pending again, due now, with a fresh age.
            assert_eq!(s.retry_dead(p[1].id, t(2)).expect("retry"), DeadLetterChange::NotDead("pending".into()));
            assert_eq!(s.retry_dead(999, t(2)).expect("retry"), DeadLetterChange::NotFound);
            let DeadLetterChange::Done(m) = s.retry_dead(p[0].id, t(100)).expect("retry") else {
                panic!("not retried")
            };
            assert_eq!((m.state.as_str(), m.reason.as_deref()), ("pending", None));
            let again = s.pending_messages("email").expect("pending");
            assert_eq!((again[0].queued_at, again[0].strikes), (t(100), 0));
            // Expiry counts from the retry, not from the creation.
            assert_eq!(s.expire_pending("email", t(50), "not delivered within 50s", t(60)).expect("expire"), 1);
            let expired = s.get_outbox(p[1].id).expect("get").expect("row");
            assert_eq!(expired.state, "dead");
            assert!(expired.reason.as_deref().unwrap_or("").starts_with("not delivered within 50s"));
            let DeadLetterChange::Done(m) = s.discard_dead(p[1].id).expect("discard") else { panic!("not discarded") };
            assert_eq!(m.state, "discarded");
            assert_eq!(s.retry_all_dead(Some("email"), t(70)).expect("retry all"), 0);
        }
    }

    #[test]
    fn digests_cover_their_members_until_delivered() {
        for s in crate::store::testing::stores() {
            let a = s
                .open_incident(&sig("a"), t(0), &json!({}), |_| vec![note("slack", "a1"), note("slack", "a2")])
                .expect("open");
            let b = s.open_incident(&sig("b"), t(0), &json!({}), |_| vec![note("slack", "b1")]).expect("open");
            let members: Vec<i64> = s.pending_messages("slack").expect("pending").iter().map(|m| m.id).collect();
            let d = s.create_digest("slack", &members, &json!({"text": "digest"}), t(1)).expect("digest");
            let pending = s.pending_messages("slack").expect("pending");
            assert_eq!(pending.len(), 1);
            assert_eq!(
                (pending[0].id, pending[0].event.as_str(), pending[0].subject.as_str()),
                (d, "digest", "digest")
            );
            let mut incidents = pending[0].digest_incidents.clone();
            incidents.sort();
            assert_eq!(incidents, [a.id, b.id]);
            s.mark_delivered(d, t(2)).expect("delivered");
            let rows = s.list_outbox(Some("digested"), Some("slack"), 10).expect("list");
            assert_eq!(rows.len(), 3);
            assert!(rows.iter().all(|r| r.delivered_at == Some(t(2)) && r.digest_id == Some(d)));
            assert_eq!(s.pending_notifications().expect("count"), 0);
        }
    }

    #[test]
    fn notices_are_queued_with_the_mark_in_one_transaction() {
        for s in crate::store::testing::stores() {
            s.open_incident(&sig("a"), t(0), &json!({}), |_| vec![note("email", "x")]).expect("open");
            let id = s.pending_messages("email").expect("pending")[0].id;
            s.dead_letter(id, "550 no", true, t(1)).expect("dead");
            assert_eq!(s.unnoticed_dead(10).expect("unnoticed").len(), 1);
            s.enqueue_dead_letter_notices(&[id], &[note("slack", "a message to email was dead-lettered")], t(2))
                .expect("notice");
            assert!(s.unnoticed_dead(10).expect("unnoticed").is_empty());
            let slack = s.pending_messages("slack").expect("pending");
            assert_eq!((slack.len(), slack[0].incident_id), (1, None));
        }
    }
}
