//! Slack app mode: one message per incident, edited as the incident moves, with the
//! details in its thread; and the checks behind `POST /api/v1/slack/interactions`.
//!
//! **Delivery** (the outbox's `slack_app` channel). The first message of an incident is
//! posted with `chat.postMessage` and its channel and `ts` are stored (table
//! `slack_messages`, keyed by incident), so a restart or another replica edits the same
//! message. Each later event of the incident is `chat.update` of that message (the
//! message always shows the latest state) followed by the event as a reply in its thread.
//! The update goes first because it is idempotent: when the reply fails, the retry
//! updates again and replies once. An `analysis` only goes to the thread. A message that
//! is gone (`message_not_found`, `cant_update_message`, `edit_window_closed`) is posted
//! anew and the new one is stored. Messages without an incident (digests, dead-letter
//! notices) are plain posts.
//!
//! **Interactions.** [`SlackApp::interaction`] verifies Slack's request signature over
//! the raw body (v0, five-minute replay window, constant-time comparison), reads the
//! payload, and checks the presser against `notify.slack_app.approvers`; the caller
//! (`api::slack`) records the decision with [`Interaction::Decide`]'s `who`
//! (`slack:U123 (alice)`) and tells the incident's thread with [`SlackApp::reply_for`].

use std::time::Duration;

use chrono::{DateTime, Utc};
use warden_connectors::slack_api::{MessageRef, SlackApi};
use warden_connectors::slack_app::{self, ApprovalAction, Approvers, Decision, IncidentAction};
use warden_connectors::{Error, Secret};

use crate::config::SlackAppSection;
use crate::store::outbox::OutboxItem;
use crate::store::Store;

/// Slack error codes of a `chat.update` whose message cannot be edited any more.
const GONE: &[&str] = &["message_not_found", "cant_update_message", "edit_window_closed", "msg_not_found"];

/// The Slack app: its Web API client, channel, signing secret and approvers.
#[derive(Clone)]
pub struct SlackApp {
    pub api: SlackApi,
    pub channel: String,
    signing_secret: Secret,
    pub approvers: Approvers,
}

impl std::fmt::Debug for SlackApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackApp")
            .field("api", &self.api)
            .field("channel", &self.channel)
            .field("approvers", &self.approvers)
            .finish_non_exhaustive()
    }
}

/// What to do with a request to `POST /api/v1/slack/interactions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interaction {
    /// The signature is missing, stale or wrong: answer 401 and do nothing else.
    Unauthenticated(String),
    /// Signed, but not a payload Warden can read: answer 400 with the reason.
    Invalid(String),
    /// Not a Warden button (another interaction type or action): answer 200.
    Ignored,
    /// The presser is not an approver: answer 200 (Slack shows nothing for other codes)
    /// and tell them why in the thread ([`SlackApp::reply`] with `reason`).
    Refused { action: ApprovalAction, reason: String },
    /// Record the decision on `run_id` as `who`, then answer 200 and tell the thread.
    Decide { run_id: i64, approve: bool, who: String, action: ApprovalAction },
    /// An incident button (acknowledge, resolve, silence 1h) pressed by someone in the
    /// allow-list: do it as `who`, answer 200 and tell the thread.
    OnIncident { action: IncidentAction, who: String },
    /// An incident button pressed by someone else: answer 200, tell them why in the thread.
    IncidentRefused { action: IncidentAction, reason: String },
}

impl SlackApp {
    pub fn new(api: SlackApi, channel: String, signing_secret: Secret, approvers: Approvers) -> Self {
        Self { api, channel, signing_secret, approvers }
    }

    /// Builds the app from `notify.slack_app`, resolving its secrets.
    pub fn from_config(s: &SlackAppSection) -> anyhow::Result<Self> {
        let resolve = |path: &str, r: &crate::config::SecretRef| {
            r.resolve().map(Secret::new).map_err(|e| anyhow::anyhow!("{path}: {e}"))
        };
        let token = resolve("notify.slack_app.bot_token", &s.bot_token)?;
        let signing = resolve("notify.slack_app.signing_secret", &s.signing_secret)?;
        let api = SlackApi::new(s.api_url.as_deref(), token, s.timeout.get())
            .map_err(|e| anyhow::anyhow!("notify.slack_app: {e}"))?;
        let approvers = Approvers {
            users: s.approvers.users.iter().cloned().collect(),
            groups: s.approvers.groups.iter().cloned().collect(),
        };
        Ok(Self::new(api, s.channel.clone(), signing, approvers))
    }

    /// Only the signature check of [`Self::interaction`] (a follower's, before it keeps the
    /// request for the leader); the error says which check failed.
    pub fn verify(
        &self,
        timestamp: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<(), String> {
        slack_app::verify_request(&self.signing_secret, timestamp, signature, body, now.timestamp()).map_err(|e| {
            tracing::warn!(error = %e, "Slack interaction refused");
            e.to_string()
        })
    }

    /// Checks and reads one interaction request: `timestamp` and `signature` are the
    /// `X-Slack-Request-Timestamp` and `X-Slack-Signature` headers, `body` the raw body.
    pub async fn interaction(
        &self,
        timestamp: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Interaction {
        if let Err(e) = slack_app::verify_request(&self.signing_secret, timestamp, signature, body, now.timestamp()) {
            tracing::warn!(error = %e, "Slack interaction refused");
            return Interaction::Unauthenticated(e.to_string());
        }
        let action = match slack_app::parse_interaction(body) {
            Ok(slack_app::Interaction::Approval(a)) => a,
            Ok(slack_app::Interaction::Incident(a)) => return self.incident_press(a).await,
            Ok(slack_app::Interaction::Other { .. }) => return Interaction::Ignored,
            Err(e) => return Interaction::Invalid(e.to_string()),
        };
        match self.allowed(&action.user.id, &format!("approve or deny run {}", action.run_id)).await {
            Ok(()) => Interaction::Decide {
                run_id: action.run_id,
                approve: action.decision == Decision::Approve,
                who: action.user.audit_name(),
                action,
            },
            Err(reason) => Interaction::Refused { reason, action },
        }
    }

    /// Whether `user` is in `notify.slack_app.approvers`; when not (or when Slack could not
    /// say), what to tell them: they may not `what`.
    async fn allowed(&self, user: &str, what: &str) -> Result<(), String> {
        match self.approvers.allows(Some(&self.api), user).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(format!(
                "<@{user}> is not an approver: only the users and groups in `notify.slack_app.approvers` may {what}."
            )),
            Err(e) => Err(format!(
                "Could not check whether <@{user}> may {what} (Slack answered: {e}); nothing was done, try again."
            )),
        }
    }

    /// An incident button: the same people who may approve may acknowledge, resolve and
    /// silence from Slack.
    async fn incident_press(&self, action: IncidentAction) -> Interaction {
        match self.allowed(&action.user.id, &format!("change incident #{} from Slack", action.incident_id)).await {
            Ok(()) => Interaction::OnIncident { who: action.user.audit_name(), action },
            Err(reason) => Interaction::IncidentRefused { reason, action },
        }
    }

    /// Replies `text` in the thread of the incident button's message.
    pub async fn reply_incident(&self, action: &IncidentAction, text: &str) -> Result<(), Error> {
        let channel = action.channel_id.as_deref().unwrap_or(&self.channel);
        let thread = action.thread_ts.as_deref().or(action.message_ts.as_deref());
        self.reply_in(channel, thread, text).await
    }

    /// Replies `text` in the thread of the message whose button was pressed (or in the
    /// app's channel when Slack did not say where it was).
    pub async fn reply(&self, action: &ApprovalAction, text: &str) -> Result<(), Error> {
        let channel = action.channel_id.as_deref().unwrap_or(&self.channel);
        // A press on a reply is answered in the reply's thread, not under the reply.
        let thread = action.thread_ts.as_deref().or(action.message_ts.as_deref());
        self.reply_in(channel, thread, text).await
    }

    /// Replies `text` about a press on a run of `incident`: in the incident's thread when
    /// its message is known (the message Warden keeps editing), else as [`SlackApp::reply`].
    pub async fn reply_for(
        &self,
        store: &Store,
        incident: Option<i64>,
        action: &ApprovalAction,
        text: &str,
    ) -> Result<(), Error> {
        let known = match incident.map(|i| self.message_of(store, i)) {
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "reading the incident's Slack message; answering under the pressed one");
                None
            }
            None => None,
        };
        match known {
            Some(at) => self.reply_in(&at.channel, Some(&at.ts), text).await,
            None => self.reply(action, text).await,
        }
    }

    async fn reply_in(&self, channel: &str, thread_ts: Option<&str>, text: &str) -> Result<(), Error> {
        let message = serde_json::json!({"text": text});
        self.api.post_message(channel, &message, thread_ts).await.map(|_| ())
    }

    /// Delivers one outbox message (see the module documentation).
    pub(super) async fn deliver(&self, store: &Store, item: &OutboxItem) -> Result<(), Error> {
        let Some(incident) = item.incident_id else {
            return self.api.post_message(&self.channel, &item.payload, None).await.map(|_| ());
        };
        let known = match self.message_of(store, incident) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(incident, error = %e, "reading the incident's Slack message; posting a new one");
                None
            }
        };
        if let Some(at) = known {
            if item.event != "analysis" {
                match self.api.update(&at, &item.payload).await {
                    Ok(_) => {}
                    Err(Error::SlackApi { code, .. }) if GONE.contains(&code.as_str()) => {
                        tracing::info!(incident, code = %code, "the incident's Slack message is gone; posting a new one");
                        return self.post_first(store, incident, item).await;
                    }
                    Err(e) => return Err(e),
                }
            }
            return self.api.post_message(&at.channel, &item.payload, Some(&at.ts)).await.map(|_| ());
        }
        self.post_first(store, incident, item).await
    }

    async fn post_first(&self, store: &Store, incident: i64, item: &OutboxItem) -> Result<(), Error> {
        let at = self.api.post_message(&self.channel, &item.payload, None).await?;
        if let Err(e) = self.remember(store, incident, &at) {
            // The message is out; the next event of the incident starts a new one.
            tracing::error!(incident, error = %e, "storing the incident's Slack message");
        }
        Ok(())
    }

    /// The stored message of `incident`, if one was posted.
    pub fn message_of(&self, store: &Store, incident: i64) -> Result<Option<MessageRef>, String> {
        let found = store.slack_message(incident).map_err(|e| e.to_string())?;
        Ok(found.map(|(channel, ts)| MessageRef { channel, ts }))
    }

    fn remember(&self, store: &Store, incident: i64, at: &MessageRef) -> Result<(), String> {
        store.remember_slack_message(incident, &at.channel, &at.ts, Utc::now()).map_err(|e| e.to_string())
    }
}

/// The Slack API's time limit for answering an interaction: Slack shows an error to the
/// presser when the Request URL takes longer.
pub const INTERACTION_DEADLINE: Duration = Duration::from_secs(3);
