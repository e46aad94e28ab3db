//! Slack app mode, the incoming side: checking that a request comes from Slack, and
//! reading an Approve / Deny button press into a typed decision.
//!
//! Slack signs every request to an app's Request URL: `X-Slack-Signature` is `v0=` + hex
//! HMAC-SHA256, keyed with the app's signing secret, of `v0:{X-Slack-Request-Timestamp}:
//! {raw body}`. [`verify_request`] recomputes it over the raw bytes (before any parsing),
//! compares in constant time, and refuses a timestamp more than five minutes from the
//! local clock, so a captured request cannot be replayed later.
//!
//! An interaction arrives as a form body `payload=<JSON>`. [`parse_interaction`] reads the
//! `block_actions` that the buttons of [`approval_buttons`] produce into an
//! [`ApprovalAction`]: the run, approve or deny, and the Slack identity that pressed it.
//! Whether that person may approve is the caller's decision ([`Approvers`]).

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::signing;
use crate::slack_api::SlackApi;
use crate::{Error, Result, Secret};

pub const TIMESTAMP_HEADER: &str = "X-Slack-Request-Timestamp";
pub const SIGNATURE_HEADER: &str = "X-Slack-Signature";
/// How far a request's timestamp may be from the local clock.
pub const REPLAY_WINDOW: Duration = Duration::from_secs(300);
/// `action_id` of the Approve button.
pub const APPROVE_ACTION: &str = "warden_approve";
/// `action_id` of the Deny button.
pub const DENY_ACTION: &str = "warden_deny";
/// `action_id` of an incident message's Acknowledge button.
pub const ACK_ACTION: &str = "warden_ack";
/// `action_id` of an incident message's Resolve button.
pub const RESOLVE_ACTION: &str = "warden_resolve";
/// `action_id` of an incident message's "Silence 1h" button.
pub const SILENCE_ACTION: &str = "warden_silence_1h";
/// Largest interaction body read (Slack's payloads are a few KB).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// `v0=` + hex HMAC-SHA256 of `v0:{timestamp}:{body}` under the signing secret.
pub fn signature(signing_secret: &Secret, timestamp: &str, body: &[u8]) -> String {
    let prefix = format!("v0:{timestamp}:");
    format!("v0={}", signing::hmac_sha256_hex(signing_secret.expose().as_bytes(), &[prefix.as_bytes(), body]))
}

/// Checks a request to the app's Request URL: `timestamp` and `sig` are the values of
/// [`TIMESTAMP_HEADER`] and [`SIGNATURE_HEADER`], `body` the raw body, `now` the local
/// clock in Unix seconds. [`Error::Signature`] says which check failed (never the secret
/// or the expected signature).
pub fn verify_request(
    signing_secret: &Secret,
    timestamp: Option<&str>,
    sig: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<()> {
    let ts = timestamp.map(str::trim).ok_or_else(|| Error::Signature(format!("no {TIMESTAMP_HEADER} header")))?;
    let at: i64 = ts.parse().map_err(|_| Error::Signature(format!("{TIMESTAMP_HEADER} is not Unix seconds")))?;
    if now.abs_diff(at) > REPLAY_WINDOW.as_secs() {
        return Err(Error::Signature(format!(
            "{TIMESTAMP_HEADER} is more than 5 minutes from the local clock (a replay, or a wrong clock)"
        )));
    }
    let got = sig.map(str::trim).ok_or_else(|| Error::Signature(format!("no {SIGNATURE_HEADER} header")))?;
    if !got.starts_with("v0=") {
        return Err(Error::Signature(format!("{SIGNATURE_HEADER} is not a v0 signature")));
    }
    if !signing::equal(got, &signature(signing_secret, ts, body)) {
        return Err(Error::Signature(format!("{SIGNATURE_HEADER} does not match the body")));
    }
    Ok(())
}

/// Approve or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Deny,
}

/// Who pressed a button.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlackUser {
    /// `U...` (or `W...` on Enterprise Grid): what allow-lists name.
    pub id: String,
    pub username: Option<String>,
    pub team_id: Option<String>,
}

impl SlackUser {
    /// How the audit trail names the person: `slack:U123 (alice)`.
    pub fn audit_name(&self) -> String {
        match &self.username {
            Some(name) => format!("slack:{} ({name})", self.id),
            None => format!("slack:{}", self.id),
        }
    }
}

/// An Approve or Deny button pressed on an approval request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalAction {
    /// The playbook run waiting for approval.
    pub run_id: i64,
    /// When that run's approval was requested (Unix milliseconds): a run id alone could
    /// name another run (a new store numbers runs from 1 again), the pair cannot.
    pub requested_at_ms: i64,
    pub decision: Decision,
    pub user: SlackUser,
    /// Where the message with the buttons is: reply in its thread.
    pub channel_id: Option<String>,
    pub message_ts: Option<String>,
    /// The thread the message is in, when it is a reply (reply to the parent, not to it).
    pub thread_ts: Option<String>,
    /// Slack's URL for answering this interaction (valid 30 minutes, five uses).
    pub response_url: Option<String>,
}

/// What a person asks of an incident from its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncidentDecision {
    Acknowledge,
    Resolve,
    /// Silence the incident's watch on its target for an hour.
    Silence,
}

/// A button pressed on an incident's message ([`incident_buttons`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentAction {
    pub incident_id: i64,
    pub decision: IncidentDecision,
    pub user: SlackUser,
    /// Where the message is: reply in its thread.
    pub channel_id: Option<String>,
    pub message_ts: Option<String>,
    pub thread_ts: Option<String>,
}

/// What an interaction request is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interaction {
    Approval(ApprovalAction),
    Incident(IncidentAction),
    /// Any other interaction (another app's button, a shortcut, a view): answer 200 and
    /// ignore it. `kind` is Slack's `type`.
    Other {
        kind: String,
    },
}

#[derive(Deserialize)]
struct RawPayload {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    user: Option<RawUser>,
    #[serde(default)]
    team: Option<RawId>,
    #[serde(default)]
    channel: Option<RawId>,
    #[serde(default)]
    container: Option<RawContainer>,
    #[serde(default)]
    message: Option<RawMessage>,
    #[serde(default)]
    response_url: Option<String>,
    #[serde(default)]
    actions: Vec<RawAction>,
}

#[derive(Deserialize, Clone)]
struct RawUser {
    id: String,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    team_id: Option<String>,
}

#[derive(Deserialize, Clone)]
struct RawId {
    id: String,
}

#[derive(Deserialize, Clone)]
struct RawContainer {
    #[serde(default)]
    message_ts: Option<String>,
    #[serde(default)]
    channel_id: Option<String>,
    #[serde(default)]
    thread_ts: Option<String>,
}

#[derive(Deserialize)]
struct RawMessage {
    #[serde(default)]
    ts: Option<String>,
    #[serde(default)]
    thread_ts: Option<String>,
}

#[derive(Deserialize)]
struct RawAction {
    #[serde(default)]
    action_id: String,
    #[serde(default)]
    value: Option<String>,
}

/// Reads an interaction request body (`payload=<JSON>`, form-encoded). Call it only after
/// [`verify_request`]. A body that is not a Slack interaction, or an Approve / Deny press
/// without a valid run id or user, is [`Error::Payload`] naming what is wrong.
pub fn parse_interaction(body: &[u8]) -> Result<Interaction> {
    if body.len() > MAX_BODY_BYTES {
        return Err(Error::Payload(format!("interaction body exceeds {MAX_BODY_BYTES} bytes")));
    }
    let payload = url::form_urlencoded::parse(body)
        .find(|(k, _)| k == "payload")
        .map(|(_, v)| v.into_owned())
        .ok_or_else(|| Error::Payload("no `payload` field in the form body".into()))?;
    let mut de = serde_json::Deserializer::from_str(&payload);
    let raw: RawPayload = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| Error::Payload(format!("interaction payload: {}", crate::http::describe_json_error(e))))?;
    if raw.kind != "block_actions" {
        return Ok(Interaction::Other { kind: raw.kind });
    }
    let user = || -> Result<SlackUser> {
        let user = raw.user.clone().ok_or_else(|| Error::Payload("interaction payload: no `user`".into()))?;
        if user.id.trim().is_empty() {
            return Err(Error::Payload("interaction payload: empty user.id".into()));
        }
        Ok(SlackUser {
            id: user.id,
            username: user.username.or(user.name),
            team_id: user.team_id.or(raw.team.as_ref().map(|t| t.id.clone())),
        })
    };
    let container =
        raw.container.clone().unwrap_or(RawContainer { message_ts: None, channel_id: None, thread_ts: None });
    let (message_ts, message_thread) = match &raw.message {
        Some(m) => (m.ts.clone(), m.thread_ts.clone()),
        None => (None, None),
    };
    let channel_id = container.channel_id.or(raw.channel.as_ref().map(|c| c.id.clone()));
    let message_ts = container.message_ts.or(message_ts);
    let thread_ts = container.thread_ts.or(message_thread);
    if let Some((action, decision)) = raw.actions.iter().find_map(|a| match a.action_id.as_str() {
        ACK_ACTION => Some((a, IncidentDecision::Acknowledge)),
        RESOLVE_ACTION => Some((a, IncidentDecision::Resolve)),
        SILENCE_ACTION => Some((a, IncidentDecision::Silence)),
        _ => None,
    }) {
        let incident_id = parse_incident_value(action.value.as_deref().unwrap_or("")).ok_or_else(|| {
            Error::Payload(format!("actions[].value of {}: `incident:ID` expected", action.action_id))
        })?;
        return Ok(Interaction::Incident(IncidentAction {
            incident_id,
            decision,
            user: user()?,
            channel_id,
            message_ts,
            thread_ts,
        }));
    }
    let Some((action, decision)) = raw.actions.iter().find_map(|a| match a.action_id.as_str() {
        APPROVE_ACTION => Some((a, Decision::Approve)),
        DENY_ACTION => Some((a, Decision::Deny)),
        _ => None,
    }) else {
        return Ok(Interaction::Other { kind: raw.kind });
    };
    let (run_id, requested_at_ms) = parse_button_value(action.value.as_deref().unwrap_or("")).ok_or_else(|| {
        Error::Payload(format!("actions[].value of {}: `run:ID:REQUESTED_AT_MS` expected", action.action_id))
    })?;
    Ok(Interaction::Approval(ApprovalAction {
        run_id,
        requested_at_ms,
        decision,
        user: user()?,
        channel_id,
        message_ts,
        thread_ts,
        response_url: raw.response_url,
    }))
}

/// The `value` of an incident message's buttons: `incident:ID`.
pub fn incident_value(incident_id: i64) -> String {
    format!("incident:{incident_id}")
}

fn parse_incident_value(value: &str) -> Option<i64> {
    value.strip_prefix("incident:")?.parse::<i64>().ok().filter(|n| *n > 0)
}

/// An `actions` block for an open incident's message: Acknowledge, Resolve (confirmed) and
/// Silence 1h (confirmed).
pub fn incident_buttons(incident_id: i64) -> Value {
    let value = incident_value(incident_id);
    let confirm = |title: &str, text: &str, ok: &str| {
        json!({
            "title": {"type": "plain_text", "text": title},
            "text": {"type": "mrkdwn", "text": text},
            "confirm": {"type": "plain_text", "text": ok},
            "deny": {"type": "plain_text", "text": "Cancel"}
        })
    };
    json!({
        "type": "actions",
        "block_id": format!("warden_incident_{incident_id}"),
        "elements": [
            {"type": "button", "action_id": ACK_ACTION, "text": {"type": "plain_text", "text": "Acknowledge"}, "value": value},
            {
                "type": "button", "action_id": RESOLVE_ACTION, "text": {"type": "plain_text", "text": "Resolve"}, "value": value,
                "confirm": confirm("Resolve this incident?", &format!("Incident #{incident_id} is closed by hand; if its watch still sees the anomaly, a new one opens."), "Resolve")
            },
            {
                "type": "button", "action_id": SILENCE_ACTION, "text": {"type": "plain_text", "text": "Silence 1h"}, "value": value,
                "confirm": confirm("Silence for an hour?", &format!("No notifications and no actions for incident #{incident_id}'s watch on its target for an hour."), "Silence")
            }
        ]
    })
}

/// The `value` of both buttons: `run:ID:REQUESTED_AT_MS`, the run and when its approval
/// was requested (Unix milliseconds), so that a press names one approval request even
/// when run ids repeat (a new store, another installation behind the same Slack app).
pub fn button_value(run_id: i64, requested_at_ms: i64) -> String {
    format!("run:{run_id}:{requested_at_ms}")
}

/// Reads a [`button_value`]: a positive run id and a non-negative time.
pub fn parse_button_value(value: &str) -> Option<(i64, i64)> {
    let (id, at) = value.strip_prefix("run:")?.split_once(':')?;
    let id = id.parse::<i64>().ok().filter(|n| *n > 0)?;
    let at = at.parse::<i64>().ok().filter(|n| *n >= 0)?;
    Some((id, at))
}

/// An `actions` block with Approve (primary, with a confirmation dialog) and Deny buttons
/// for the approval request of `run_id` made at `requested_at_ms` (Unix milliseconds), to
/// put in an approval request's blocks.
pub fn approval_buttons(run_id: i64, requested_at_ms: i64) -> Value {
    let value = button_value(run_id, requested_at_ms);
    json!({
        "type": "actions",
        "block_id": format!("warden_run_{run_id}"),
        "elements": [
            {
                "type": "button",
                "action_id": APPROVE_ACTION,
                "style": "primary",
                "text": {"type": "plain_text", "text": "Approve"},
                "value": value,
                "confirm": {
                    "title": {"type": "plain_text", "text": "Approve this run?"},
                    "text": {"type": "mrkdwn", "text": format!("Run {run_id} will continue and act on the cluster.")},
                    "confirm": {"type": "plain_text", "text": "Approve"},
                    "deny": {"type": "plain_text", "text": "Cancel"}
                }
            },
            {
                "type": "button",
                "action_id": DENY_ACTION,
                "style": "danger",
                "text": {"type": "plain_text", "text": "Deny"},
                "value": value
            }
        ]
    })
}

/// Who may approve from Slack: user ids, and members of user groups (looked up through
/// the Web API, `usergroups:read`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Approvers {
    pub users: BTreeSet<String>,
    pub groups: BTreeSet<String>,
}

impl Approvers {
    /// Whether `user` may approve. A listed user needs no API call; group membership is
    /// read from Slack at every check (a removed member loses the right at once).
    pub async fn allows(&self, api: Option<&SlackApi>, user: &str) -> Result<bool> {
        if self.users.contains(user) {
            return Ok(true);
        }
        let Some(api) = api else { return Ok(false) };
        for g in &self.groups {
            if api.usergroup_members(g).await?.iter().any(|u| u == user) {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Slack's documented example ("Verifying requests from Slack").
    const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const TS: &str = "1531420618";
    const BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const SIG: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

    fn secret() -> Secret {
        Secret::new(SECRET.into())
    }

    #[test]
    fn slacks_documented_example_verifies() {
        assert_eq!(signature(&secret(), TS, BODY.as_bytes()), SIG);
        assert!(verify_request(&secret(), Some(TS), Some(SIG), BODY.as_bytes(), 1_531_420_618 + 299).is_ok());
    }

    #[test]
    fn every_check_refuses_with_its_reason() {
        let now = 1_531_420_618;
        type Case<'a> = (Option<&'a str>, Option<&'a str>, &'a str, i64, &'a str);
        let cases: [Case; 7] = [
            (Some(TS), Some(SIG), BODY, now + 301, "5 minutes"),
            (Some(TS), Some(SIG), BODY, now - 301, "5 minutes"),
            (None, Some(SIG), BODY, now, "no X-Slack-Request-Timestamp"),
            (Some("yesterday"), Some(SIG), BODY, now, "not Unix seconds"),
            (Some(TS), None, BODY, now, "no X-Slack-Signature"),
            (Some(TS), Some("v1=abc"), BODY, now, "not a v0 signature"),
            (Some(TS), Some(SIG), "token=changed", now, "does not match"),
        ];
        for (ts, sig, body, now, why) in cases {
            let e = verify_request(&secret(), ts, sig, body.as_bytes(), now).expect_err(why);
            assert!(matches!(e, Error::Signature(_)) && e.to_string().contains(why), "{why}: {e}");
            assert!(!e.to_string().contains(SECRET) && !e.to_string().contains(&SIG[3..]), "{e}");
        }
        // Another timestamp in the signed text does not verify with this one's signature.
        assert!(verify_request(&secret(), Some("1531420619"), Some(SIG), BODY.as_bytes(), now).is_err());
        // The wrong secret.
        let other = Secret::new("0000000000000000000000000000000".into());
        assert!(verify_request(&other, Some(TS), Some(SIG), BODY.as_bytes(), now).is_err());
    }

    fn form(payload: &Value) -> Vec<u8> {
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("payload", &payload.to_string())
            .finish()
            .into_bytes()
    }

    fn press(action_id: &str, value: &str) -> Value {
        json!({
            "type": "block_actions",
            "user": {"id": "U0APPROVER", "username": "alice", "name": "alice", "team_id": "T0001"},
            "api_app_id": "A0001",
            "token": "legacy",
            "container": {"type": "message", "message_ts": "1700000000.000100", "channel_id": "C0INCIDENTS", "is_ephemeral": false},
            "trigger_id": "1.2.3",
            "team": {"id": "T0001", "domain": "acme"},
            "channel": {"id": "C0INCIDENTS", "name": "incidents"},
            "message": {"type": "message", "ts": "1700000000.000100", "text": "approval"},
            "response_url": "https://hooks.slack.com/actions/T0001/1/xyz",
            "actions": [{"action_id": action_id, "block_id": "warden_run_7", "text": {"type": "plain_text", "text": "Approve"}, "value": value, "type": "button", "action_ts": "1700000001.000200"}]
        })
    }

    #[test]
    fn a_button_press_is_a_typed_decision() {
        let Interaction::Approval(a) =
            parse_interaction(&form(&press(APPROVE_ACTION, "run:7:1700000000123"))).expect("parse")
        else {
            panic!("not an approval");
        };
        assert_eq!((a.run_id, a.requested_at_ms, a.decision), (7, 1_700_000_000_123, Decision::Approve));
        assert_eq!(a.user.id, "U0APPROVER");
        assert_eq!(a.user.audit_name(), "slack:U0APPROVER (alice)");
        assert_eq!(a.channel_id.as_deref(), Some("C0INCIDENTS"));
        assert_eq!(a.message_ts.as_deref(), Some("1700000000.000100"));
        assert_eq!(a.thread_ts, None);
        let mut in_thread = press(DENY_ACTION, "run:12:0");
        in_thread["container"]["thread_ts"] = json!("1699999999.000001");
        let Interaction::Approval(d) = parse_interaction(&form(&in_thread)).expect("parse") else {
            panic!("not an approval");
        };
        assert_eq!((d.run_id, d.requested_at_ms, d.decision), (12, 0, Decision::Deny));
        assert_eq!(d.thread_ts.as_deref(), Some("1699999999.000001"));
        // The buttons Warden sends carry what the parser reads.
        let buttons = approval_buttons(7, 1_700_000_000_123);
        assert_eq!(buttons["elements"][0]["action_id"], APPROVE_ACTION);
        assert_eq!(buttons["elements"][1]["action_id"], DENY_ACTION);
        for b in 0..2 {
            let value = buttons["elements"][b]["value"].as_str().expect("value");
            assert_eq!(parse_button_value(value), Some((7, 1_700_000_000_123)), "{value}");
        }
    }

    #[test]
    fn an_incident_button_press_is_a_typed_request() {
        let buttons = incident_buttons(9);
        let ids: Vec<&str> = (0..3).map(|b| buttons["elements"][b]["action_id"].as_str().unwrap_or("")).collect();
        assert_eq!(ids, [ACK_ACTION, RESOLVE_ACTION, SILENCE_ACTION]);
        for (action, decision) in [
            (ACK_ACTION, IncidentDecision::Acknowledge),
            (RESOLVE_ACTION, IncidentDecision::Resolve),
            (SILENCE_ACTION, IncidentDecision::Silence),
        ] {
            let value = buttons["elements"].as_array().and_then(|e| e.iter().find(|b| b["action_id"] == action));
            let value = value.and_then(|b| b["value"].as_str()).expect("value");
            let Interaction::Incident(a) = parse_interaction(&form(&press(action, value))).expect("parse") else {
                panic!("not an incident press");
            };
            assert_eq!((a.incident_id, a.decision, a.user.id.as_str()), (9, decision, "U0APPROVER"));
            assert_eq!(a.channel_id.as_deref(), Some("C0INCIDENTS"));
        }
        for bad in ["incident:x", "incident:0", "9", "run:9:1"] {
            let e = parse_interaction(&form(&press(ACK_ACTION, bad))).expect_err(bad);
            assert!(e.to_string().contains("`incident:ID` expected"), "{bad}: {e}");
        }
    }

    #[test]
    fn other_interactions_are_ignored_and_bad_ones_are_named() {
        assert_eq!(
            parse_interaction(&form(&json!({"type": "view_submission", "user": {"id": "U1"}}))).expect("other"),
            Interaction::Other { kind: "view_submission".into() }
        );
        assert_eq!(
            parse_interaction(&form(&press("someone_elses_button", "x"))).expect("other"),
            Interaction::Other { kind: "block_actions".into() }
        );
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"token=abc".to_vec(), "no `payload`"),
            (b"payload=%7Bnot%20json".to_vec(), "invalid JSON"),
            (form(&json!({"user": {"id": "U1"}})), "unexpected JSON shape"),
            (form(&press(APPROVE_ACTION, "run:seven:1")), "`run:ID:REQUESTED_AT_MS` expected"),
            (form(&press(APPROVE_ACTION, "run:-1:1")), "`run:ID:REQUESTED_AT_MS` expected"),
            (form(&press(APPROVE_ACTION, "run:7")), "`run:ID:REQUESTED_AT_MS` expected"),
            (form(&press(APPROVE_ACTION, "run:7:")), "`run:ID:REQUESTED_AT_MS` expected"),
            (form(&press(APPROVE_ACTION, "run:7:-5")), "`run:ID:REQUESTED_AT_MS` expected"),
            (form(&press(DENY_ACTION, "7")), "`run:ID:REQUESTED_AT_MS` expected"),
            (vec![b'a'; MAX_BODY_BYTES + 1], "exceeds"),
        ];
        for (body, why) in cases {
            let e = parse_interaction(&body).expect_err(why);
            assert!(matches!(e, Error::Payload(_)) && e.to_string().contains(why), "{why}: {e}");
        }
        let mut no_user = press(APPROVE_ACTION, "run:1:1");
        no_user["user"] = json!({"id": ""});
        assert!(parse_interaction(&form(&no_user)).is_err());
    }

    #[tokio::test]
    async fn listed_users_are_approvers_without_a_call() {
        let a = Approvers { users: ["U1".to_string()].into(), groups: BTreeSet::new() };
        assert!(a.allows(None, "U1").await.expect("check"));
        assert!(!a.allows(None, "U2").await.expect("check"));
    }
}
