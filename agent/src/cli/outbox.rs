//! `warden outbox list|dead|retry|discard`: the outbox from the command line.
//!
//! Works on the store file directly, like `warden runs`, so it also works while the daemon
//! runs (SQLite serialises the writers). A retried message is due at once; the daemon's
//! outbox worker picks it up within seconds.

use std::io::Write;

use anyhow::{anyhow, bail, Result};
use chrono::Utc;
use serde_json::json;

use crate::api::outbox::STATES;
use crate::store::outbox::{DeadLetterChange, OutboxMessage};
use crate::store::Store;

/// At most this many characters of a subject or reason in the table.
const COLUMN_CHARS: usize = 90;

fn short(s: &str) -> String {
    let one_line = s.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(COLUMN_CHARS) {
        None => one_line,
        Some((i, _)) => format!("{}…", &one_line[..i]),
    }
}

/// `warden outbox list`: counts per channel, then the messages in `state`.
pub fn list(
    store: &Store,
    state: &str,
    channel: Option<&str>,
    limit: u32,
    json_out: bool,
    out: &mut impl Write,
) -> Result<()> {
    if !STATES.contains(&state) {
        bail!("unknown state {state:?}: one of {}", STATES.join(", "));
    }
    let stats = store.outbox_stats()?;
    let messages = store.list_outbox(Some(state), channel, limit)?;
    if json_out {
        writeln!(out, "{}", serde_json::to_string_pretty(&json!({"channels": stats, "messages": messages}))?)?;
        return Ok(());
    }
    let now = Utc::now();
    if stats.is_empty() {
        writeln!(out, "nothing pending, no dead letters")?;
    }
    for s in &stats {
        let oldest = s
            .oldest_pending
            .map(|t| format!(", oldest queued {}s ago", (now - t).num_seconds().max(0)))
            .unwrap_or_default();
        writeln!(out, "{}: {} pending, {} dead{oldest}", s.channel, s.pending, s.dead)?;
    }
    writeln!(out)?;
    table(&messages, state, out)
}

/// `warden outbox dead`: the dead letters with their reasons, newest first.
pub fn dead(store: &Store, channel: Option<&str>, limit: u32, json_out: bool, out: &mut impl Write) -> Result<()> {
    let messages = store.list_outbox(Some("dead"), channel, limit)?;
    if json_out {
        writeln!(out, "{}", serde_json::to_string_pretty(&json!({"dead_letters": messages}))?)?;
        return Ok(());
    }
    table(&messages, "dead", out)
}

fn table(messages: &[OutboxMessage], state: &str, out: &mut impl Write) -> Result<()> {
    if messages.is_empty() {
        writeln!(out, "no {state} messages")?;
        return Ok(());
    }
    let dead = state == "dead" || state == "discarded";
    let last = if dead { "REASON" } else { "SUBJECT" };
    writeln!(
        out,
        "{:>6}  {:<7} {:>8}  {:<22} {:>8}  {:<20} {last}",
        "ID", "CHANNEL", "INCIDENT", "EVENT", "ATTEMPTS", "CREATED"
    )?;
    for m in messages {
        let incident = m.incident_id.map(|i| format!("#{i}")).unwrap_or_else(|| "-".into());
        let text = match (&m.group, dead) {
            (_, true) => m.reason.as_deref().unwrap_or("-").to_string(),
            (Some(group), false) => format!("(held by group {group}) {}", m.subject),
            (None, false) => m.subject.clone(),
        };
        writeln!(
            out,
            "{:>6}  {:<7} {:>8}  {:<22} {:>8}  {:<20} {}",
            m.id,
            m.channel,
            incident,
            m.event,
            m.attempts,
            m.created_at.format("%Y-%m-%d %H:%M:%S"),
            short(&text)
        )?;
    }
    Ok(())
}

/// `warden outbox retry ID` or `--all [--channel C]`: dead letters are queued again.
pub fn retry(store: &Store, id: Option<i64>, all: bool, channel: Option<&str>, out: &mut impl Write) -> Result<()> {
    match (id, all) {
        (Some(id), false) => match store.retry_dead(id, Utc::now())? {
            DeadLetterChange::Done(m) => {
                writeln!(out, "message {id} ({} to {}) queued again", m.event, m.channel)?;
                Ok(())
            }
            DeadLetterChange::NotFound => Err(anyhow!("no outbox message {id}")),
            DeadLetterChange::NotDead(state) => {
                Err(anyhow!("outbox message {id} is {state}, not dead: only dead letters can be retried"))
            }
        },
        (None, true) => {
            let n = store.retry_all_dead(channel, Utc::now())?;
            writeln!(out, "{n} dead letter(s) queued again")?;
            Ok(())
        }
        _ => Err(anyhow!("give a message ID or --all")),
    }
}

/// `warden outbox discard ID`: a dead letter is dropped (kept as `discarded`).
pub fn discard(store: &Store, id: i64, out: &mut impl Write) -> Result<()> {
    match store.discard_dead(id)? {
        DeadLetterChange::Done(m) => {
            writeln!(out, "message {id} ({} to {}) discarded", m.event, m.channel)?;
            Ok(())
        }
        DeadLetterChange::NotFound => Err(anyhow!("no outbox message {id}")),
        DeadLetterChange::NotDead(state) => {
            Err(anyhow!("outbox message {id} is {state}, not dead: only dead letters can be discarded"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{IncidentSignal, NewNotification};
    use std::collections::BTreeMap;

    fn store_with_dead_letter() -> (Store, i64) {
        let s = Store::open_in_memory().expect("store");
        let sig = IncidentSignal {
            fingerprint: "f".into(),
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
        };
        let now = Utc::now();
        s.open_incident(&sig, now, &json!({}), |_| {
            vec![
                NewNotification {
                    channel: "email".into(),
                    event: "opened".into(),
                    payload: json!({"subject": "[warden] OPENED a"}),
                    group: None,
                },
                NewNotification {
                    channel: "email".into(),
                    event: "resolved".into(),
                    payload: json!({"subject": "[warden] RESOLVED a"}),
                    group: None,
                },
            ]
        })
        .expect("open");
        let id = s.pending_messages("email").expect("pending")[0].id;
        s.dead_letter(id, "SMTP delivery failed with reply 500: Line too long", true, now).expect("dead");
        (s, id)
    }

    fn run(f: impl FnOnce(&mut Vec<u8>) -> Result<()>) -> Result<String> {
        let mut buf = Vec::new();
        f(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }

    #[test]
    fn lists_dead_letters_with_reasons_and_retries_them() {
        let (s, id) = store_with_dead_letter();
        let text = run(|o| dead(&s, None, 50, false, o)).expect("dead");
        assert!(text.contains("REASON") && text.contains("reply 500: Line too long"), "{text}");
        let text = run(|o| list(&s, "pending", None, 50, false, o)).expect("list");
        assert!(text.contains("email: 1 pending, 1 dead"), "{text}");
        assert!(text.contains("[warden] RESOLVED a"), "{text}");
        let json_text = run(|o| dead(&s, Some("email"), 50, true, o)).expect("json");
        let v: serde_json::Value = serde_json::from_str(&json_text).expect("json");
        assert_eq!(v["dead_letters"][0]["id"], id);
        assert!(run(|o| list(&s, "lost", None, 50, false, o)).is_err());

        let err = run(|o| discard(&s, id + 1, o)).expect_err("pending is not dead");
        assert!(err.to_string().contains("is pending, not dead"), "{err}");
        assert!(run(|o| retry(&s, Some(999), false, None, o)).is_err());
        let text = run(|o| retry(&s, Some(id), false, None, o)).expect("retry");
        assert_eq!(text.trim(), format!("message {id} (opened to email) queued again"));
        assert_eq!(s.pending_notifications().expect("count"), 2);
        assert!(run(|o| retry(&s, None, false, None, o)).is_err());
    }
}
