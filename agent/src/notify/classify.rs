//! What a failed delivery means for the message and for its channel.
//!
//! The outbox must never let one message block a channel, and must never give up on a
//! message only because the receiver was briefly away. So every delivery error is sorted
//! by *who* it is about (the channel, or this one message) and by whether waiting can help:
//!
//! | verdict | examples | what the outbox does |
//! |---|---|---|
//! | [`Verdict::ChannelDown`] | connection refused, timeout, HTTP 5xx, Slack 429, SMTP 421 | the channel pauses (backoff, or `Retry-After`); the message is not blamed unless the channel delivered others since it last failed |
//! | [`Verdict::Transient`] | SMTP 4xx (450, 451, 452) and 503 (bad sequence of commands: the session, not the message) | retried with backoff; dead-lettered after `notify.retry.max_attempts` |
//! | [`Verdict::Ambiguous`] | an unknown Slack 4xx body, an SMTP error without a reply code | retried; dead-lettered after [`AMBIGUOUS_ATTEMPTS`] |
//! | [`Verdict::Permanent`] | Slack `invalid_blocks`, `invalid_payload`, `no_text`; SMTP 5xx (500 line too long, 550, 552, 553, 554) | dead-lettered at once |
//! | [`Verdict::PermanentChannel`] | Slack `no_service`, `channel_not_found`, `action_prohibited`, `invalid_token`; SMTP 530/535 (authentication) | dead-lettered at once, and the channel waits the longest backoff before the next message |
//!
//! Slack's codes are the documented incoming-webhook and Web API errors; SMTP's follow
//! RFC 5321 (4yz transient, 5yz permanent). PagerDuty, Opsgenie, Teams and the signed
//! webhook are sorted by status: 400, 413, 415 and 422 reject the message, 401, 403, 404
//! and 410 the channel (a bad key or a revoked URL), 429, 408 and 5xx are the channel
//! being down.

use std::time::Duration;

use warden_connectors::Error;

/// Attempts for an error whose meaning is unclear before the message is dead-lettered.
pub const AMBIGUOUS_ATTEMPTS: u32 = 3;

/// What a delivery error means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The receiver is unreachable or overloaded: every message of the channel waits,
    /// for `retry_after` when the receiver said so.
    ChannelDown { retry_after: Option<Duration> },
    /// This message may be accepted later.
    Transient,
    /// Unclear whether a retry can help: a few attempts, then dead.
    Ambiguous,
    /// The receiver will never accept this message.
    Permanent,
    /// The receiver refuses every message (revoked webhook, archived channel, bad
    /// credentials): this one is dead-lettered and the channel backs off.
    PermanentChannel,
}

impl Verdict {
    /// Whether the message goes to the dead letters at once.
    pub fn is_permanent(&self) -> bool {
        matches!(self, Verdict::Permanent | Verdict::PermanentChannel)
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Verdict::ChannelDown { .. } => "channel_down",
            Verdict::Transient => "transient",
            Verdict::Ambiguous => "ambiguous",
            Verdict::Permanent => "permanent",
            Verdict::PermanentChannel => "permanent_channel",
        }
    }
}

/// Slack error codes that reject this message only.
const SLACK_MESSAGE_ERRORS: &[&str] = &[
    "invalid_payload",
    "invalid_blocks",
    "invalid_blocks_format",
    "invalid_attachments",
    "too_many_attachments",
    "no_text",
    "msg_too_long",
    "invalid_json",
];

/// Slack error codes that reject every message of the webhook.
const SLACK_CHANNEL_ERRORS: &[&str] = &[
    "no_service",
    "no_service_id",
    "no_team",
    "team_disabled",
    "channel_not_found",
    "channel_is_archived",
    "action_prohibited",
    "posting_to_general_channel_denied",
    "user_not_found",
    "invalid_token",
    "invalid_auth",
    "not_authed",
    "account_inactive",
    "token_revoked",
];

/// SMTP replies about authentication: every message of the channel fails the same way.
const SMTP_AUTH_CODES: &[u16] = &[530, 534, 535, 538];

/// The verdict for an error of `channel`'s connector.
pub fn classify(channel: &str, e: &Error) -> Verdict {
    match e {
        Error::Connect { .. } | Error::Timeout { .. } => Verdict::ChannelDown { retry_after: None },
        Error::RateLimited { retry_after } => Verdict::ChannelDown { retry_after: *retry_after },
        Error::Http { status: None, .. } => Verdict::ChannelDown { retry_after: None },
        Error::Http { status: Some(s), .. } if *s >= 500 || *s == 408 => Verdict::ChannelDown { retry_after: None },
        Error::Http { .. } => Verdict::Ambiguous,
        Error::Rejected { status, body } if matches!(channel, "slack" | "slack_app") => slack_rejection(*status, body),
        Error::Rejected { status, .. } => http_rejection(*status),
        Error::SlackApi { code, .. } => slack_api_error(code),
        Error::Smtp { code: Some(421), .. } => Verdict::ChannelDown { retry_after: None },
        Error::Smtp { code: Some(c), .. } if SMTP_AUTH_CODES.contains(c) => Verdict::PermanentChannel,
        Error::Smtp { code: Some(c), .. } if (400..500).contains(c) => Verdict::Transient,
        // 503 "bad sequence of commands" (`nested MAIL command`): the session's state, not
        // the message (a connection left mid-transaction); a new connection can deliver it.
        Error::Smtp { code: Some(503), .. } => Verdict::Transient,
        Error::Smtp { code: Some(c), .. } if (500..600).contains(c) => Verdict::Permanent,
        Error::Smtp { transient: true, .. } => Verdict::Transient,
        Error::Smtp { .. } => Verdict::Ambiguous,
        // The message could not even be built (an invalid header, say): it never will be.
        Error::InvalidInput(_) | Error::Payload(_) => Verdict::Permanent,
        Error::Config(_) => Verdict::PermanentChannel,
        other => {
            tracing::debug!(channel, error = %other, "unclassified delivery error");
            Verdict::Ambiguous
        }
    }
}

/// Slack answers a refused webhook post with a status and its error code as the body.
fn slack_rejection(status: u16, body: &str) -> Verdict {
    let code = body.split(|c: char| c.is_whitespace() || c == ':').next().unwrap_or("").trim().trim_matches('"');
    if SLACK_MESSAGE_ERRORS.contains(&code) {
        return Verdict::Permanent;
    }
    if SLACK_CHANNEL_ERRORS.contains(&code) {
        return Verdict::PermanentChannel;
    }
    match status {
        // Payload too large, unsupported media type: this message, always.
        413 | 415 => Verdict::Permanent,
        // A webhook that is gone or forbidden, with a body we do not know.
        401 | 403 | 404 | 410 => Verdict::PermanentChannel,
        408 => Verdict::ChannelDown { retry_after: None },
        _ => Verdict::Ambiguous,
    }
}

/// Slack Web API codes that reject every message of the app (beyond the webhook ones).
const SLACK_APP_CHANNEL_ERRORS: &[&str] = &[
    "not_in_channel",
    "is_archived",
    "missing_scope",
    "not_allowed_token_type",
    "ekm_access_denied",
    "restricted_action",
];

/// A Slack Web API `{"ok": false, "error": CODE}`.
fn slack_api_error(code: &str) -> Verdict {
    let error = Error::SlackApi { method: "", code: code.to_string() };
    if error.is_retryable() {
        return Verdict::ChannelDown { retry_after: None };
    }
    if SLACK_APP_CHANNEL_ERRORS.contains(&code) || SLACK_CHANNEL_ERRORS.contains(&code) {
        return Verdict::PermanentChannel;
    }
    if SLACK_MESSAGE_ERRORS.contains(&code)
        || matches!(code, "too_many_blocks" | "invalid_arguments" | "invalid_arg_name")
    {
        return Verdict::Permanent;
    }
    Verdict::Ambiguous
}

/// A refusal from PagerDuty, Opsgenie, Teams or a webhook, by status: a request the
/// receiver will never process (PagerDuty's `400 invalid event`, Opsgenie's `422`, Teams'
/// `400`) is this message's; a bad key or a revoked URL (401, 403, 404, 410) is the
/// channel's.
fn http_rejection(status: u16) -> Verdict {
    match status {
        400 | 413 | 415 | 422 => Verdict::Permanent,
        401 | 403 | 404 | 410 => Verdict::PermanentChannel,
        408 => Verdict::ChannelDown { retry_after: None },
        _ => Verdict::Ambiguous,
    }
}

/// File channel errors: a full disk or a permission problem is the channel's, not the
/// message's, and an operator can fix it.
pub fn classify_io(_e: &std::io::Error) -> Verdict {
    Verdict::ChannelDown { retry_after: None }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(status: u16, body: &str) -> Error {
        Error::Rejected { status, body: body.into() }
    }

    fn smtp(code: u16) -> Error {
        Error::Smtp { code: Some(code), transient: (400..500).contains(&code), message: "m".into() }
    }

    #[test]
    fn slack_errors() {
        for body in ["invalid_blocks", "invalid_payload", "no_text", "invalid_blocks_format"] {
            assert_eq!(classify("slack", &rejected(400, body)), Verdict::Permanent, "{body}");
        }
        assert_eq!(classify("slack", &rejected(404, "no_service")), Verdict::PermanentChannel);
        assert_eq!(classify("slack", &rejected(404, "channel_not_found")), Verdict::PermanentChannel);
        assert_eq!(classify("slack", &rejected(403, "action_prohibited")), Verdict::PermanentChannel);
        assert_eq!(classify("slack", &rejected(410, "channel_is_archived")), Verdict::PermanentChannel);
        assert_eq!(classify("slack", &rejected(404, "<html>not found</html>")), Verdict::PermanentChannel);
        assert_eq!(classify("slack", &rejected(400, "something_new")), Verdict::Ambiguous);
        assert_eq!(classify("slack", &rejected(413, "")), Verdict::Permanent);
        let limited = Error::RateLimited { retry_after: Some(Duration::from_secs(7)) };
        assert_eq!(classify("slack", &limited), Verdict::ChannelDown { retry_after: Some(Duration::from_secs(7)) });
        let down = Error::Http { url: "u".into(), status: Some(503), message: "m".into() };
        assert_eq!(classify("slack", &down), Verdict::ChannelDown { retry_after: None });
        let slow = Error::Timeout { url: "u".into(), after: None };
        assert_eq!(classify("slack", &slow), Verdict::ChannelDown { retry_after: None });
    }

    #[test]
    fn smtp_errors() {
        for code in [500, 550, 552, 553, 554] {
            assert_eq!(classify("email", &smtp(code)), Verdict::Permanent, "{code}");
        }
        for code in [450, 451, 452, 503] {
            assert_eq!(classify("email", &smtp(code)), Verdict::Transient, "{code}");
        }
        assert_eq!(classify("email", &smtp(421)), Verdict::ChannelDown { retry_after: None });
        assert_eq!(classify("email", &smtp(535)), Verdict::PermanentChannel);
        let no_code = Error::Smtp { code: None, transient: false, message: "bad response".into() };
        assert_eq!(classify("email", &no_code), Verdict::Ambiguous);
        let refused = Error::Connect { url: "smtp://h:25".into(), message: "refused".into() };
        assert_eq!(classify("email", &refused), Verdict::ChannelDown { retry_after: None });
        assert_eq!(classify("email", &Error::InvalidInput("bad".into())), Verdict::Permanent);
    }

    #[test]
    fn receiver_errors() {
        for ch in ["pagerduty", "opsgenie", "teams", "webhook"] {
            assert_eq!(classify(ch, &rejected(400, "invalid event: Event object is invalid")), Verdict::Permanent);
            assert_eq!(classify(ch, &rejected(422, "Request body is not processable")), Verdict::Permanent);
            assert_eq!(classify(ch, &rejected(401, "Could not authenticate")), Verdict::PermanentChannel);
            assert_eq!(classify(ch, &rejected(404, "")), Verdict::PermanentChannel);
            assert_eq!(classify(ch, &rejected(409, "")), Verdict::Ambiguous);
        }
        let api = |code: &str| Error::SlackApi { method: "chat.postMessage", code: code.into() };
        assert_eq!(classify("slack_app", &api("channel_not_found")), Verdict::PermanentChannel);
        assert_eq!(classify("slack_app", &api("not_in_channel")), Verdict::PermanentChannel);
        assert_eq!(classify("slack_app", &api("invalid_auth")), Verdict::PermanentChannel);
        assert_eq!(classify("slack_app", &api("invalid_blocks")), Verdict::Permanent);
        assert_eq!(classify("slack_app", &api("service_unavailable")), Verdict::ChannelDown { retry_after: None });
        assert_eq!(classify("slack_app", &api("something_new")), Verdict::Ambiguous);
    }
}
