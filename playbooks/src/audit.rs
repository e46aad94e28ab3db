//! The audit trail: an append-only, hash-chained list of everything runs did and decided.
//!
//! Each entry's hash covers its own content and the previous entry's hash, so editing an
//! entry breaks its own hash, and deleting or reordering entries breaks the chain at the
//! next one. [`verify`] walks the chain and names the first entry that does not fit. The
//! chain proves integrity, not authorship: someone who can rewrite the whole table can
//! rewrite the chain, so operators who need that should ship entries off the machine too
//! (the head hash `warden audit verify` prints is what to compare).
//!
//! The chain alone cannot show that its *last* entries were removed: a truncated chain is a
//! valid shorter chain. So the store also keeps an [`AuditHead`] (how many entries there are
//! and the last one's hash), written in the same transaction as every append, and
//! [`verify_with_head`] compares the chain with it: truncation (or a head that no longer
//! matches the chain's end) is reported like any other break.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The hash before the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditKind {
    /// A run was asked for (by an incident, alert, schedule or person).
    Trigger,
    /// A guard allowed or refused.
    Guard,
    /// Approval requested, granted, denied or expired.
    Approval,
    /// A request is about to be sent (recorded before it is sent).
    Request,
    /// The answer to a request.
    Response,
    /// A verification's evaluation.
    Verify,
    /// A revert started or finished.
    Revert,
    /// A run changed state.
    State,
    /// A person acknowledged or resolved an incident by hand (CLI, API, console, Slack).
    Incident,
    /// A person created or ended a silence.
    Silence,
}

impl AuditKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::Trigger => "trigger",
            AuditKind::Guard => "guard",
            AuditKind::Approval => "approval",
            AuditKind::Request => "request",
            AuditKind::Response => "response",
            AuditKind::Verify => "verify",
            AuditKind::Revert => "revert",
            AuditKind::State => "state",
            AuditKind::Incident => "incident",
            AuditKind::Silence => "silence",
        }
    }
}

/// The leader lease an entry's request was sent under (see the agent's leader election):
/// the holder and `spec.leaseTransitions` at the fencing check before the request. Two
/// entries with the same `transitions` come from one term of one holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditFence {
    /// `lease NAMESPACE/NAME`.
    pub lease: String,
    /// The identity that held the lease (this replica's pod name).
    pub holder: String,
    /// The lease's transition count.
    pub transitions: i64,
}

/// An entry before it is chained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub at: DateTime<Utc>,
    pub run_id: Option<i64>,
    pub kind: AuditKind,
    /// Who or what: `user/alice`, `watch/checkout-latency`, `warden`.
    pub actor: String,
    pub detail: serde_json::Value,
    /// The lease a request was fenced with; `None` for other entries, for requests of a
    /// single replica (no leader election), and in entries written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fence: Option<AuditFence>,
}

impl AuditEvent {
    /// An entry without a fence.
    pub fn new(
        at: DateTime<Utc>,
        run_id: Option<i64>,
        kind: AuditKind,
        actor: impl Into<String>,
        detail: serde_json::Value,
    ) -> Self {
        Self { at, run_id, kind, actor: actor.into(), detail, fence: None }
    }
}

/// A stored entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub run_id: Option<i64>,
    pub kind: AuditKind,
    pub actor: String,
    pub detail: serde_json::Value,
    /// See [`AuditEvent::fence`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fence: Option<AuditFence>,
    pub prev_hash: String,
    pub hash: String,
}

impl AuditEntry {
    /// The content the entry's hash covers.
    pub fn event(&self) -> AuditEvent {
        AuditEvent {
            at: self.at,
            run_id: self.run_id,
            kind: self.kind,
            actor: self.actor.clone(),
            detail: self.detail.clone(),
            fence: self.fence.clone(),
        }
    }
}

/// The hash of an entry with sequence number `seq` following `prev_hash`. The content is
/// serialised as canonical JSON (object keys sorted, which `serde_json` does for `Value`
/// maps), with the time as RFC 3339 in nanoseconds, so the hash does not depend on how the
/// store happens to format it. The `fence` key is part of the content only when the entry
/// has one, so entries written before fences existed hash as they always did.
pub fn entry_hash(seq: i64, prev_hash: &str, event: &AuditEvent) -> String {
    let mut content = serde_json::json!({
        "seq": seq,
        "at": event.at.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        "run_id": event.run_id,
        "kind": event.kind.as_str(),
        "actor": event.actor,
        "detail": event.detail,
    });
    if let Some(f) = &event.fence {
        content["fence"] = serde_json::json!({"lease": f.lease, "holder": f.holder, "transitions": f.transitions});
    }
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(b"\n");
    h.update(content.to_string().as_bytes());
    hex::encode(h.finalize())
}

/// Chain `event` after the entry `(seq, hash)` (or after nothing).
pub fn chain(prev: Option<(i64, &str)>, event: AuditEvent) -> AuditEntry {
    let (seq, prev_hash) = match prev {
        Some((s, h)) => (s + 1, h.to_string()),
        None => (1, GENESIS.to_string()),
    };
    let hash = entry_hash(seq, &prev_hash, &event);
    AuditEntry {
        seq,
        at: event.at,
        run_id: event.run_id,
        kind: event.kind,
        actor: event.actor,
        detail: event.detail,
        fence: event.fence,
        prev_hash,
        hash,
    }
}

/// Where the chain is broken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainBreak {
    /// The first entry that does not fit (or the sequence number where one is missing).
    pub seq: i64,
    pub reason: String,
}

/// What [`verify`] found in an intact chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainSummary {
    pub entries: usize,
    pub head: String,
}

/// Check a chain given oldest first: sequence numbers without gaps from 1, each entry's
/// `prev_hash` equal to its predecessor's hash, and each hash recomputed from the content.
pub fn verify(entries: &[AuditEntry]) -> Result<ChainSummary, ChainBreak> {
    let mut prev_hash = GENESIS.to_string();
    for (expected_seq, e) in (1..).zip(entries) {
        if e.seq != expected_seq {
            return Err(ChainBreak {
                seq: expected_seq,
                reason: format!("entry {expected_seq} is missing (the next stored entry is {})", e.seq),
            });
        }
        if e.prev_hash != prev_hash {
            return Err(ChainBreak {
                seq: e.seq,
                reason:
                    "its prev_hash does not match the previous entry's hash (an entry before it was changed or removed)"
                        .into(),
            });
        }
        let recomputed = entry_hash(e.seq, &e.prev_hash, &e.event());
        if recomputed != e.hash {
            return Err(ChainBreak {
                seq: e.seq,
                reason: "its content does not match its hash (the entry was edited)".into(),
            });
        }
        prev_hash = e.hash.clone();
    }
    Ok(ChainSummary { entries: entries.len(), head: prev_hash })
}

/// The chain's end as recorded beside it, in the same transaction as each append.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditHead {
    /// How many entries were appended (the last sequence number).
    pub count: i64,
    /// The last entry's hash ([`GENESIS`] when there is none).
    pub last_hash: String,
}

impl AuditHead {
    /// The head after appending `entry`.
    pub fn after(entry: &AuditEntry) -> Self {
        Self { count: entry.seq, last_hash: entry.hash.clone() }
    }
}

/// [`verify`], then compare the chain's end with the head recorded beside it: fewer entries
/// than the head counts (the last entries were deleted), more (entries appended without the
/// head), or another last hash are breaks. `None`: a store without a head (nothing to
/// compare, the chain alone decides).
pub fn verify_with_head(entries: &[AuditEntry], head: Option<&AuditHead>) -> Result<ChainSummary, ChainBreak> {
    let summary = verify(entries)?;
    let Some(head) = head else { return Ok(summary) };
    let count = i64::try_from(summary.entries).unwrap_or(i64::MAX);
    if count < head.count {
        return Err(ChainBreak {
            seq: count + 1,
            reason: format!(
                "entries {} to {} are missing: the audit head records {} entries, the chain ends at entry {count} (the trail was truncated)",
                count + 1,
                head.count,
                head.count
            ),
        });
    }
    if count > head.count {
        return Err(ChainBreak {
            seq: head.count + 1,
            reason: format!("entry {} is not in the audit head, which records {} entries (entries were added behind the store's back)", head.count + 1, head.count),
        });
    }
    if summary.head != head.last_hash {
        return Err(ChainBreak {
            seq: count.max(1),
            reason:
                "the last entry's hash differs from the one the audit head records (the end of the chain was rewritten)"
                    .into(),
        });
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(i: i64) -> AuditEvent {
        AuditEvent {
            at: DateTime::from_timestamp(1_700_000_000 + i, 0).expect("time"),
            run_id: Some(1),
            kind: AuditKind::Request,
            actor: "warden".into(),
            detail: json!({"i": i, "b": [1, 2]}),
            fence: None,
        }
    }

    fn chain_of(n: i64) -> Vec<AuditEntry> {
        let mut out: Vec<AuditEntry> = Vec::new();
        for i in 0..n {
            let prev = out.last().map(|e| (e.seq, e.hash.as_str()));
            let e = chain(prev, ev(i));
            out.push(e);
        }
        out
    }

    #[test]
    fn an_intact_chain_verifies() {
        let c = chain_of(5);
        let s = verify(&c).expect("intact");
        assert_eq!(s.entries, 5);
        assert_eq!(s.head, c[4].hash);
    }

    #[test]
    fn edits_deletions_and_truncated_heads_are_found() {
        let mut edited = chain_of(5);
        edited[2].detail = json!({"i": 99});
        assert_eq!(verify(&edited).unwrap_err().seq, 3);

        let mut deleted = chain_of(5);
        deleted.remove(1);
        let b = verify(&deleted).unwrap_err();
        assert_eq!(b.seq, 2);
        assert!(b.reason.contains("missing"), "{}", b.reason);

        // Re-hashing an edited entry does not help: the next entry's prev_hash no longer fits.
        let mut rehashed = chain_of(5);
        rehashed[2].actor = "mallory".into();
        let ev2 = rehashed[2].event();
        rehashed[2].hash = entry_hash(3, &rehashed[2].prev_hash, &ev2);
        assert_eq!(verify(&rehashed).unwrap_err().seq, 4);
    }

    #[test]
    fn the_head_detects_truncation_and_a_rewritten_end() {
        let c = chain_of(5);
        let head = AuditHead::after(&c[4]);
        assert_eq!(verify_with_head(&c, Some(&head)).map(|s| s.entries), Ok(5));
        // Deleting the last entry leaves a valid chain of 4: only the head shows it.
        let truncated = &c[..4];
        assert!(verify(truncated).is_ok());
        let b = verify_with_head(truncated, Some(&head)).unwrap_err();
        assert_eq!(b.seq, 5);
        assert!(b.reason.contains("truncated"), "{}", b.reason);
        // Every entry deleted.
        assert_eq!(verify_with_head(&[], Some(&head)).unwrap_err().seq, 1);
        // An entry appended without the head.
        let mut longer = chain_of(6);
        assert_eq!(verify_with_head(&longer, Some(&head)).unwrap_err().seq, 6);
        // The end rewritten as a fresh chain of the same length.
        longer.truncate(5);
        longer[4].detail = json!({"rewritten": true});
        let ev4 = longer[4].event();
        longer[4].hash = entry_hash(5, &longer[4].prev_hash, &ev4);
        assert!(verify(&longer).is_ok());
        assert!(verify_with_head(&longer, Some(&head)).is_err());
        // No head: the chain alone decides.
        assert!(verify_with_head(truncated, None).is_ok());
    }

    #[test]
    fn a_fence_is_hashed_and_entries_without_one_hash_as_before() {
        // An entry without a fence hashes exactly as the content without the key did.
        let plain = ev(1);
        let legacy = serde_json::json!({
            "seq": 1,
            "at": plain.at.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            "run_id": plain.run_id,
            "kind": "request",
            "actor": "warden",
            "detail": plain.detail,
        });
        let mut h = Sha256::new();
        h.update(GENESIS.as_bytes());
        h.update(b"\n");
        h.update(legacy.to_string().as_bytes());
        assert_eq!(entry_hash(1, GENESIS, &plain), hex::encode(h.finalize()));

        // A chain mixing old entries and fenced ones verifies; editing a fence breaks it.
        let mut c = chain_of(2);
        let mut fenced = ev(2);
        fenced.fence =
            Some(AuditFence { lease: "lease warden/warden".into(), holder: "warden-0".into(), transitions: 3 });
        let e = chain(c.last().map(|e| (e.seq, e.hash.as_str())), fenced);
        assert_ne!(e.hash, chain(c.last().map(|e| (e.seq, e.hash.as_str())), ev(2)).hash);
        c.push(e);
        assert!(verify(&c).is_ok());
        if let Some(f) = c[2].fence.as_mut() {
            f.holder = "warden-1".into();
        }
        assert_eq!(verify(&c).unwrap_err().seq, 3);
        c[2].fence = None;
        assert_eq!(verify(&c).unwrap_err().seq, 3);
    }
}
