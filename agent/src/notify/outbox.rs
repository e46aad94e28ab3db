//! Delivers the outbox: at least once, in order per incident, and never blocked by one
//! message.
//!
//! A message is marked delivered only after the channel acknowledged it (Slack 2xx, SMTP
//! 250, file written and synced), so a crash or an unreachable server loses nothing. The
//! one window for a duplicate is a crash between the acknowledgement and the mark; emails
//! carry a stable `Message-ID` (`<warden-outbox-ID@warden>`) so mail systems can drop such
//! a copy.
//!
//! Each pass works on every channel at once, and on a channel:
//!
//! 1. **Expiry.** Messages queued longer than `notify.retry.max_age` are dead-lettered.
//! 2. **Groups wait for their window** ([`routes`](super::routes)): a message a route
//!    groups is held until its group is due: `group_wait` after the group's oldest message,
//!    or `group_interval` after the group's last send while that is later (kept in the
//!    store, so a restart keeps it). A due group of one message releases it as it is; a
//!    larger one becomes one `group` message standing for them (like a digest); messages of
//!    incidents silenced meanwhile are marked `silenced`. A message that is never held (an
//!    action, an approval request) waiting behind a held message of its incident makes the
//!    group due at once.
//! 3. **Floods become digests.** When more than `notify.digest.threshold` messages wait on
//!    Slack or e-mail, the oldest `notify.digest.max_items` incidents' messages are replaced
//!    by one digest message (one line per incident, its events in order; a silenced
//!    incident's messages are marked `silenced` instead), stored in one transaction. While a digest waits, only digests (and dead-letter notices) are sent on
//!    the channel; the next digest is made when this one is delivered, until the backlog is
//!    back under the threshold. The file channel is a local log and is never digested.
//! 4. **One head per incident.** A message is sent only when no earlier message of the same
//!    incident is still pending on the channel (a digest or group message counts for each
//!    incident it covers; a held message holds its incident's later ones), so "resolved"
//!    never overtakes "opened"; different incidents never wait for each other. Heads go oldest first, one per incident per round: a new incident's
//!    message waits at most one message per other incident.
//! 5. **Failures are classified** ([`classify`](super::classify)): a permanent rejection
//!    is dead-lettered at once; an unreachable channel pauses the whole channel (backoff,
//!    or the receiver's `Retry-After`) without blaming the message; a message-level
//!    transient failure is retried with backoff until `notify.retry.max_attempts`.
//!
//! 6. **Only the leader sends** (leader election, [`Leadership`]): a follower's pass does
//!    nothing, and before each send the leader passes the fence for the channel's timeout.
//!    A refused fence sends nothing and charges nothing: when this replica no longer leads
//!    the pass stops and the message stays pending for the next leader; when the lease is
//!    too short for the send it is tried again after the next renew. A send that outlasts
//!    the lease's validity is abandoned as a transient failure and sent again (delivery
//!    stays at least once).
//!
//! Dead letters keep their reason (`GET /api/v1/outbox/dead`, `warden outbox dead`) and are
//! reported on the other channels by a short notice, at most one per channel and minute; a
//! notice that is itself dead-lettered is only logged, so reports never loop.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use warden_connectors::opsgenie::{AlertRequest, Opsgenie};
use warden_connectors::pagerduty::{self, PagerDuty};
use warden_connectors::signed_webhook::SignedWebhook;
use warden_connectors::slack::SlackWebhook;
use warden_connectors::smtp::{EmailMessage, SmtpSender};
use warden_connectors::teams::TeamsWebhook;

use super::classify::{classify, classify_io, Verdict, AMBIGUOUS_ATTEMPTS};
use super::receivers::{ALERTING, DIGESTED};
use super::render::{render_dead_letter_notice, render_digest, render_group, DeadLetter, DigestEntry};
use super::slack_app::SlackApp;
use crate::config::NotifySection;
use crate::leadership::Leadership;
use crate::metrics::{ChannelLabel, Metrics};
use crate::store::outbox::{OutboxItem, PendingMessage};
use crate::store::{NotifyGroup, Store};
use crate::timeline::{Timeline, TimelineEvent};

/// The configured delivery channels.
#[derive(Clone, Default)]
pub struct Channels {
    pub slack: Option<SlackWebhook>,
    pub email: Option<SmtpSender>,
    pub file: Option<PathBuf>,
    /// Slack app mode: messages posted with the bot token to one channel.
    pub slack_app: Option<SlackApp>,
    pub pagerduty: Option<PagerDuty>,
    pub opsgenie: Option<Opsgenie>,
    pub teams: Option<TeamsWebhook>,
    pub webhook: Option<SignedWebhook>,
}

impl Channels {
    /// Names of the configured channels, in a fixed order.
    pub fn names(&self) -> Vec<&'static str> {
        crate::config::configured_channels([
            self.slack.is_some(),
            self.slack_app.is_some(),
            self.email.is_some(),
            self.file.is_some(),
            self.pagerduty.is_some(),
            self.opsgenie.is_some(),
            self.teams.is_some(),
            self.webhook.is_some(),
        ])
    }
}

/// How the outbox retries, gives up and groups (`notify.retry`, `notify.digest`).
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Failures charged to one message before it is dead-lettered.
    pub max_attempts: u32,
    /// A message not delivered within this time is dead-lettered.
    pub max_age: Duration,
    /// More pending messages than this on a channel are sent as digests.
    pub digest_threshold: usize,
    /// Incidents per digest.
    pub digest_max_items: usize,
    /// At most one dead-letter notice per channel in this time.
    pub notice_interval: Duration,
}

/// The longest a receiver's `Retry-After` is honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// Dead-letter notices about one channel: at most one in this time.
const NOTICE_INTERVAL: Duration = Duration::from_secs(60);
/// Rounds of one pass at most (each round delivers or dead-letters at least one message).
const MAX_ROUNDS: usize = 100_000;

impl Policy {
    pub fn from_config(n: &NotifySection) -> Self {
        Self {
            initial_backoff: n.retry.initial_backoff.get(),
            max_backoff: n.retry.max_backoff.get(),
            max_attempts: n.retry.max_attempts.max(1),
            max_age: n.retry.max_age.get(),
            digest_threshold: n.digest.threshold as usize,
            digest_max_items: (n.digest.max_items as usize).max(1),
            notice_interval: NOTICE_INTERVAL,
        }
    }
}

impl Default for Policy {
    fn default() -> Self {
        Self::from_config(&NotifySection::default())
    }
}

/// What the outbox knows of a channel between passes (in memory: a restart forgets a
/// pause, which costs one extra attempt).
#[derive(Debug, Default, Clone)]
struct ChannelState {
    paused_until: Option<DateTime<Utc>>,
    /// Channel-level failures in a row.
    failures: u32,
    last_success: Option<DateTime<Utc>>,
    last_notice: Option<DateTime<Utc>>,
}

/// What one [`Outbox::deliver_due`] did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Pass {
    pub delivered: usize,
    pub dead_lettered: usize,
    pub digests: usize,
    /// When something is due next (a retry, the end of a channel's pause, a held-back
    /// notice); `None` when nothing waits.
    pub next_due: Option<DateTime<Utc>>,
}

#[derive(Debug, Default)]
struct Round {
    delivered: usize,
    dead: usize,
    digests: usize,
    next_due: Option<DateTime<Utc>>,
    /// The fence said this replica no longer leads.
    stopped: bool,
}

enum Attempt {
    Delivered,
    Dead,
    /// A silence matched the message's incident: marked `silenced`, not sent.
    Silenced,
    Retry(DateTime<Utc>),
    /// The channel pauses until then; stop sending on it. `dead`: the message tried was
    /// dead-lettered.
    Paused {
        until: DateTime<Utc>,
        dead: bool,
    },
    /// The fence refused: nothing was sent or charged. `retry`: when to try again (the
    /// lease was too short); `None`: this replica does not lead, stop the pass.
    Fenced {
        retry: Option<DateTime<Utc>>,
    },
}

/// What a send asks the lease for on a channel without a configured timeout (the notify
/// default), and on the file channel (a local write).
const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(10);
const FILE_SEND_TIMEOUT: Duration = Duration::from_secs(1);
/// When a send the lease was too short for is tried again.
const FENCE_RETRY: Duration = Duration::from_secs(1);

fn earliest(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn after(now: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(d).ok().and_then(|d| now.checked_add_signed(d)).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// `1h30m`-style text for reasons.
fn human(d: Duration) -> String {
    warden_playbooks::duration::HumanDuration(d).to_string()
}

pub struct Outbox {
    pub store: Arc<Store>,
    pub channels: Channels,
    pub policy: Policy,
    pub metrics: Arc<Metrics>,
    pub timeline: Timeline,
    state: Mutex<HashMap<String, ChannelState>>,
    /// Only the leader delivers; every send is fenced (see the module docs).
    leadership: Leadership,
    /// Each channel's send timeout: what a send asks the lease for.
    send_timeouts: HashMap<String, Duration>,
}

impl Outbox {
    pub fn new(
        store: Arc<Store>,
        channels: Channels,
        policy: Policy,
        metrics: Arc<Metrics>,
        timeline: Timeline,
    ) -> Self {
        Self {
            store,
            channels,
            policy,
            metrics,
            timeline,
            state: Mutex::new(HashMap::new()),
            leadership: Leadership::AlwaysLeader,
            send_timeouts: HashMap::new(),
        }
    }

    /// Deliver only while `leadership` leads, fencing each send with the channel's timeout
    /// from `notify` (see the module docs).
    pub fn with_leadership(mut self, leadership: Leadership, notify: &NotifySection) -> Self {
        self.leadership = leadership;
        self.send_timeouts = notify.timeouts().into_iter().map(|(ch, _, t)| (ch.to_string(), t)).collect();
        self
    }

    /// What a send on `channel` asks the lease for.
    fn send_timeout(&self, channel: &str) -> Duration {
        match self.send_timeouts.get(channel) {
            Some(t) => *t,
            None if channel == "file" => FILE_SEND_TIMEOUT,
            None => DEFAULT_SEND_TIMEOUT,
        }
    }

    fn with_state<T>(&self, channel: &str, f: impl FnOnce(&mut ChannelState) -> T) -> T {
        let mut map = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(map.entry(channel.to_string()).or_default())
    }

    /// Deliver everything due at `now` on every channel.
    pub async fn deliver_due(&self, now: DateTime<Utc>) -> Pass {
        let mut pass = Pass::default();
        if !self.leadership.is_leader() {
            // A follower neither sends nor changes the outbox (digests, expiry, notices).
            return pass;
        }
        for round in 0.. {
            if round == MAX_ROUNDS {
                pass.next_due = Some(now);
                break;
            }
            let channels = match self.store.pending_channels() {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, "reading the outbox");
                    pass.next_due = Some(after(now, self.policy.initial_backoff));
                    break;
                }
            };
            let rounds = futures::future::join_all(channels.iter().map(|ch| self.channel_round(ch, now))).await;
            let mut progress = false;
            pass.next_due = None;
            let stopped = rounds.iter().any(|r| r.stopped);
            for r in rounds {
                progress |= r.delivered + r.dead + r.digests > 0;
                pass.delivered += r.delivered;
                pass.dead_lettered += r.dead;
                pass.digests += r.digests;
                pass.next_due = earliest(pass.next_due, r.next_due);
            }
            if stopped {
                // No longer the leader: what is left waits for the next one.
                pass.next_due = None;
                break;
            }
            let (noticed, notice_due) = self.report_dead_letters(now);
            pass.next_due = earliest(pass.next_due, notice_due);
            if !(progress || noticed) {
                break;
            }
        }
        self.refresh_gauges(now);
        pass
    }

    async fn channel_round(&self, channel: &str, now: DateTime<Utc>) -> Round {
        let mut r = Round::default();
        if !self.channels.names().contains(&channel) {
            // Nothing can deliver it: dead letters with the reason, retried after the
            // channel is configured again.
            let reason = format!("channel `{channel}` is not configured");
            r.dead += self.expire(channel, DateTime::<Utc>::MAX_UTC, &reason, now);
            return r;
        }
        let cutoff = now
            .checked_sub_signed(chrono::Duration::from_std(self.policy.max_age).unwrap_or(chrono::Duration::MAX))
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        r.dead += self.expire(channel, cutoff, &format!("not delivered within {}", human(self.policy.max_age)), now);

        if let Some(until) = self.with_state(channel, |s| s.paused_until).filter(|u| *u > now) {
            r.next_due = Some(until);
            return r;
        }
        let mut pending = match self.store.pending_messages(channel) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(channel, error = %e, "reading the outbox");
                r.next_due = Some(after(now, self.policy.initial_backoff));
                return r;
            }
        };
        let (flushed, group_due) = self.flush_groups(channel, &pending, now);
        r.next_due = earliest(r.next_due, group_due);
        if flushed {
            match self.store.pending_messages(channel) {
                Ok(p) => pending = p,
                Err(e) => {
                    tracing::error!(channel, error = %e, "reading the outbox");
                    return r;
                }
            }
        }
        let (digest, changed) = self.make_digest(channel, &pending, now);
        r.digests += usize::from(digest);
        if changed {
            match self.store.pending_messages(channel) {
                Ok(p) => pending = p,
                Err(e) => {
                    tracing::error!(channel, error = %e, "reading the outbox");
                    return r;
                }
            }
        }
        // While a digest waits, the flood it stands for goes out as digests only: the
        // rest of the backlog is in the next digest, not sent one by one beside it.
        let flood = pending.iter().any(|m| m.event == "digest");
        for head in heads(&pending) {
            if head.group.is_some() {
                // Held by its group's window (flush_groups said when it is due); the
                // incident's later messages wait behind it.
                continue;
            }
            if flood && !matches!(head.event.as_str(), "digest" | "group" | "dead_letter") {
                continue;
            }
            if head.next_attempt_at > now {
                r.next_due = earliest(r.next_due, Some(head.next_attempt_at));
                continue;
            }
            match self.attempt(channel, head, now).await {
                Attempt::Delivered => r.delivered += 1,
                Attempt::Dead => r.dead += 1,
                Attempt::Silenced => {}
                Attempt::Retry(at) => r.next_due = earliest(r.next_due, Some(at)),
                Attempt::Paused { until, dead } => {
                    r.dead += usize::from(dead);
                    r.next_due = earliest(r.next_due, Some(until));
                    break;
                }
                Attempt::Fenced { retry: Some(at) } => {
                    r.next_due = earliest(r.next_due, Some(at));
                    break;
                }
                Attempt::Fenced { retry: None } => {
                    r.stopped = true;
                    break;
                }
            }
        }
        r
    }

    /// Dead-letter the channel's pending messages queued before `cutoff`.
    fn expire(&self, channel: &str, cutoff: DateTime<Utc>, reason: &str, now: DateTime<Utc>) -> usize {
        match self.store.expire_pending(channel, cutoff, reason, now) {
            Ok(0) => 0,
            Ok(n) => {
                tracing::warn!(channel, messages = n, reason, "notifications dead-lettered");
                self.metrics.channel_by(&self.metrics.outbox_dead_letters, channel, n as u64);
                self.timeline.emit(TimelineEvent::NotificationDeadLettered {
                    at: now,
                    channel: channel.to_string(),
                    event: format!("{n} message(s)"),
                    reason: reason.to_string(),
                });
                n
            }
            Err(e) => {
                tracing::error!(channel, error = %e, "expiring old notifications");
                0
            }
        }
    }

    /// Send the groups of `channel` that are due (see the module docs): a group of one
    /// message releases it as it is, a larger one becomes one `group` message; messages of
    /// silenced incidents are marked `silenced` instead. Returns whether it changed the
    /// outbox, and when the next held group is due.
    fn flush_groups(
        &self,
        channel: &str,
        pending: &[PendingMessage],
        now: DateTime<Utc>,
    ) -> (bool, Option<DateTime<Utc>>) {
        let mut groups: Vec<(&NotifyGroup, Vec<&PendingMessage>)> = Vec::new();
        for m in pending {
            let Some(g) = &m.group else { continue };
            match groups.iter_mut().find(|(k, _)| k.key == g.key) {
                Some((_, members)) => members.push(m),
                None => groups.push((g, vec![m])),
            }
        }
        if groups.is_empty() {
            return (false, None);
        }
        let last_sent = match self.store.group_last_sent(channel) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(channel, error = %e, "reading notification groups");
                return (false, Some(after(now, self.policy.initial_backoff)));
            }
        };
        // Each incident's newest message that is never held.
        let mut unheld: HashMap<i64, i64> = HashMap::new();
        for p in pending.iter().filter(|p| p.group.is_none()) {
            if let Some(i) = p.incident_id {
                let newest = unheld.entry(i).or_insert(p.id);
                *newest = (*newest).max(p.id);
            }
        }
        let (mut changed, mut next) = (false, None);
        for (group, members) in groups {
            let oldest = members.iter().map(|m| m.created_at).min().unwrap_or(now);
            let due = match last_sent.get(&group.key) {
                // Within the interval after its last message: at the interval's end.
                Some(last) if after(*last, group.interval) > oldest => after(*last, group.interval),
                // A new group, or one quiet for a whole interval: it waits to fill.
                _ => after(oldest, group.wait),
            };
            // A message that is never held (an approval request) waiting behind a held
            // message of its incident sends the group now: a run waits for that answer.
            let urgent = members
                .iter()
                .any(|held| held.incident_id.and_then(|i| unheld.get(&i)).is_some_and(|newest| *newest > held.id));
            if due > now && !urgent {
                next = earliest(next, Some(due));
                continue;
            }
            let (send, marked) = self.drop_silenced(members, now);
            changed |= marked;
            if send.is_empty() {
                continue;
            }
            let ids: Vec<i64> = send.iter().map(|m| m.id).collect();
            let payload = (send.len() > 1).then(|| render_group(channel, &group.key, &entries(&send), send.len()));
            match self.store.flush_group(channel, &group.key, &ids, payload.as_ref(), now) {
                Ok(id) => {
                    changed = true;
                    tracing::info!(channel, group = %group.key, messages = ids.len(), message = ?id, urgent, "notification group due");
                }
                Err(e) => {
                    tracing::error!(channel, group = %group.key, error = %e, "sending a notification group");
                    next = earliest(next, Some(after(now, self.policy.initial_backoff)));
                }
            }
        }
        (changed, next)
    }

    /// Of `messages`, those whose incident no silence holds at `now`; the others are marked
    /// `silenced` (each incident's silences are looked up once). Also returns whether it
    /// marked any.
    fn drop_silenced<'a>(
        &self,
        messages: Vec<&'a PendingMessage>,
        now: DateTime<Utc>,
    ) -> (Vec<&'a PendingMessage>, bool) {
        let mut held: HashMap<i64, Option<i64>> = HashMap::new();
        let mut marked = false;
        let mut keep = Vec::with_capacity(messages.len());
        for m in messages {
            let silence = m.incident_id.and_then(|i| *held.entry(i).or_insert_with(|| self.silence_of(i, now)));
            match silence {
                Some(silence) => match self.store.mark_silenced(m.id, silence, now) {
                    Ok(_) => marked = true,
                    Err(e) => tracing::error!(id = m.id, error = %e, "marking a silenced notification"),
                },
                None => keep.push(m),
            }
        }
        (keep, marked)
    }

    /// In a flood, store the oldest incidents' messages as one digest (messages of silenced
    /// incidents are marked `silenced` instead of joining it). Returns whether it made one,
    /// and whether it changed the outbox at all.
    fn make_digest(&self, channel: &str, pending: &[PendingMessage], now: DateTime<Utc>) -> (bool, bool) {
        if !DIGESTED.contains(&channel) || pending.iter().any(|m| m.event == "digest") {
            return (false, false);
        }
        // Messages held by a group, and group messages, are batched already.
        let digestible: Vec<&PendingMessage> = pending
            .iter()
            .filter(|m| m.group.is_none() && !matches!(m.event.as_str(), "dead_letter" | "group"))
            .collect();
        if digestible.len() <= self.policy.digest_threshold {
            return (false, false);
        }
        // Groups by incident, in order of their oldest message; a message without an
        // incident is a group of its own.
        let mut groups: Vec<(Option<i64>, Vec<&PendingMessage>)> = Vec::new();
        let mut index: HashMap<i64, usize> = HashMap::new();
        for m in digestible {
            match m.incident_id.and_then(|i| index.get(&i).copied()) {
                Some(g) => groups[g].1.push(m),
                None => {
                    if let Some(i) = m.incident_id {
                        index.insert(i, groups.len());
                    }
                    groups.push((m.incident_id, vec![m]));
                }
            }
        }
        groups.truncate(self.policy.digest_max_items);
        let mut silenced = false;
        for (_, msgs) in &mut groups {
            let (keep, marked) = self.drop_silenced(std::mem::take(msgs), now);
            *msgs = keep;
            silenced |= marked;
        }
        groups.retain(|(_, msgs)| !msgs.is_empty());
        if groups.is_empty() {
            return (false, silenced);
        }
        let taken: Vec<&PendingMessage> = groups.iter().flat_map(|(_, msgs)| msgs.iter().copied()).collect();
        let entries = entries(&taken);
        let members: Vec<i64> = taken.iter().map(|m| m.id).collect();
        let payload = render_digest(channel, &entries, members.len());
        match self.store.create_digest(channel, &members, &payload, now) {
            Ok(id) => {
                tracing::info!(
                    channel,
                    digest = id,
                    messages = members.len(),
                    incidents = entries.len(),
                    waiting = pending.len(),
                    "flood: queued a digest"
                );
                self.metrics.channel(&self.metrics.outbox_digests, channel);
                (true, true)
            }
            Err(e) => {
                tracing::error!(channel, error = %e, "storing a digest");
                (false, silenced)
            }
        }
    }

    async fn attempt(&self, channel: &str, head: &PendingMessage, now: DateTime<Utc>) -> Attempt {
        let item = match self.store.outbox_item(head.id) {
            Ok(Some(item)) => item,
            Ok(None) => return Attempt::Retry(now),
            Err(crate::store::StoreError::Corrupt { message, .. }) => {
                return self.give_up(
                    channel,
                    head.id,
                    &head.event,
                    &format!("stored payload is unreadable: {message}"),
                    false,
                    now,
                );
            }
            Err(e) => {
                tracing::error!(channel, id = head.id, error = %e, "reading a notification");
                return Attempt::Paused { until: after(now, self.policy.initial_backoff), dead: false };
            }
        };
        if let Some(silence) = item.incident_id.and_then(|i| self.silence_of(i, now)) {
            if let Err(e) = self.store.mark_silenced(item.id, silence, now) {
                tracing::error!(id = item.id, error = %e, "marking a silenced notification");
                return Attempt::Paused { until: after(now, self.policy.initial_backoff), dead: false };
            }
            tracing::info!(id = item.id, channel, event = %item.event, silence, "notification held back by a silence");
            return Attempt::Silenced;
        }
        match self.send_fenced(channel, &item, now).await {
            Err(fenced) => fenced,
            Ok(Ok(())) => {
                if let Err(e) = self.store.mark_delivered(item.id, Utc::now().max(now)) {
                    tracing::error!(id = item.id, error = %e, "marking a delivered notification");
                    return Attempt::Paused { until: after(now, self.policy.initial_backoff), dead: false };
                }
                self.with_state(channel, |s| {
                    s.failures = 0;
                    s.paused_until = None;
                    s.last_success = Some(now);
                });
                self.metrics.channel(&self.metrics.notifications_sent, channel);
                tracing::info!(id = item.id, channel, event = %item.event, "notification delivered");
                self.timeline.emit(TimelineEvent::NotificationDelivered {
                    at: now,
                    channel: channel.to_string(),
                    event: item.event.clone(),
                    subject: head.subject.clone(),
                });
                Attempt::Delivered
            }
            Ok(Err((verdict, error))) => self.failed(channel, &item, verdict, error, now),
        }
    }

    /// The silence that holds back the notifications of `incident` at `now`, if any. A
    /// store that cannot be read silences nothing (logged): a message too many beats one lost.
    fn silence_of(&self, incident: i64, now: DateTime<Utc>) -> Option<i64> {
        let found = self.store.list_silences(false, now).and_then(|silences| {
            if silences.is_empty() {
                return Ok(None);
            }
            let Some(i) = self.store.get_incident(incident)? else { return Ok(None) };
            Ok(crate::incident::silence::silenced_by(&silences, &i, now).map(|s| s.id))
        });
        found.unwrap_or_else(|e| {
            tracing::error!(incident, error = %e, "reading silences: the notification is sent");
            None
        })
    }

    /// The fencing rule, in one place: before every send the lease must cover the
    /// channel's timeout, and a send still running when the lease's validity ends is
    /// abandoned (a transient failure: the message is sent again, at least once). A
    /// refusal sends nothing and is answered as [`Attempt::Fenced`].
    async fn send_fenced(
        &self,
        channel: &str,
        item: &OutboxItem,
        now: DateTime<Utc>,
    ) -> Result<Result<(), (Verdict, String)>, Attempt> {
        let grant = match self.leadership.fence(self.send_timeout(channel)) {
            Ok(g) => g,
            Err(why) if why.is_transient() => {
                tracing::info!(id = item.id, channel, reason = %why, "notification waits for the next lease renew");
                return Err(Attempt::Fenced { retry: Some(after(now, FENCE_RETRY)) });
            }
            Err(why) => {
                tracing::info!(id = item.id, channel, reason = %why, "not sent: this replica no longer leads");
                return Err(Attempt::Fenced { retry: None });
            }
        };
        Ok(match grant.valid_for {
            None => self.send(item).await,
            Some(limit) => match tokio::time::timeout(limit, self.send(item)).await {
                Ok(r) => r,
                Err(_) => Err((
                    Verdict::Transient,
                    format!("abandoned after {limit:?}, when the leader lease's validity ended"),
                )),
            },
        })
    }

    fn failed(&self, channel: &str, item: &OutboxItem, verdict: Verdict, error: String, now: DateTime<Utc>) -> Attempt {
        self.metrics.channel(&self.metrics.notification_failures, channel);
        let policy = &self.policy;
        // A channel-level failure is the message's own only when the channel delivered
        // others since this message last failed.
        let channel_worked = self.with_state(
            channel,
            |s| matches!((s.last_success, item.last_attempt_at), (Some(ok), Some(last)) if ok > last),
        );
        let charged = match verdict {
            Verdict::ChannelDown { .. } => channel_worked,
            _ => true,
        };
        let strikes = item.strikes + u32::from(charged);
        let age = (now - item.queued_at).to_std().unwrap_or_default();
        let dead_reason = match &verdict {
            v if v.is_permanent() => Some(error.clone()),
            Verdict::Ambiguous if strikes >= AMBIGUOUS_ATTEMPTS.min(policy.max_attempts) => {
                Some(format!("{error} (unclear rejection, {strikes} attempts)"))
            }
            Verdict::Transient | Verdict::ChannelDown { .. } if strikes >= policy.max_attempts => {
                Some(format!("{error} ({strikes} failed attempts)"))
            }
            _ if age >= policy.max_age => Some(format!("not delivered within {}: {error}", human(policy.max_age))),
            _ => None,
        };
        // The channel's own state: a pause for an unreachable or refusing receiver.
        let pausing = match verdict {
            Verdict::ChannelDown { retry_after } => Some(retry_after),
            Verdict::PermanentChannel => Some(None),
            _ => None,
        };
        let pause = pausing.map(|retry_after| {
            let failures = self.with_state(channel, |s| {
                s.failures = s.failures.saturating_add(1);
                s.failures
            });
            let wait = retry_after.map(|d| d.min(MAX_RETRY_AFTER)).unwrap_or_else(|| self.backoff(failures - 1));
            let until = after(now, wait);
            self.with_state(channel, |s| s.paused_until = Some(until));
            until
        });
        let attempts = item.attempts + 1;
        tracing::warn!(id = item.id, channel, attempts, strikes, verdict = verdict.as_str(), %error, "notification not delivered");
        let result = match dead_reason {
            Some(reason) => self.give_up(channel, item.id, &item.event, &reason, true, now),
            None => {
                let own = after(now, self.backoff(item.attempts));
                let next = pause.map_or(own, |p| p.max(own));
                self.timeline.emit(TimelineEvent::NotificationFailed {
                    at: now,
                    channel: channel.to_string(),
                    event: item.event.clone(),
                    error: error.clone(),
                    attempts,
                });
                if let Err(e) = self.store.mark_failed(item.id, &error, next, charged, now) {
                    tracing::error!(id = item.id, error = %e, "recording a failed notification");
                }
                Attempt::Retry(next)
            }
        };
        match (pause, result) {
            (Some(until), r) => Attempt::Paused { until, dead: matches!(r, Attempt::Dead) },
            (None, r) => r,
        }
    }

    fn give_up(
        &self,
        channel: &str,
        id: i64,
        event: &str,
        reason: &str,
        attempted: bool,
        now: DateTime<Utc>,
    ) -> Attempt {
        match self.store.dead_letter(id, reason, attempted, now) {
            Ok(true) => {
                tracing::error!(id, channel, event, reason, "notification dead-lettered");
                self.metrics.channel(&self.metrics.outbox_dead_letters, channel);
                self.timeline.emit(TimelineEvent::NotificationDeadLettered {
                    at: now,
                    channel: channel.to_string(),
                    event: event.to_string(),
                    reason: reason.to_string(),
                });
                Attempt::Dead
            }
            Ok(false) => Attempt::Retry(now),
            Err(e) => {
                tracing::error!(id, error = %e, "dead-lettering a notification");
                Attempt::Paused { until: after(now, self.policy.initial_backoff), dead: false }
            }
        }
    }

    /// Queue notices about new dead letters on the other channels. Returns whether it
    /// queued any, and when held-back ones are due.
    fn report_dead_letters(&self, now: DateTime<Utc>) -> (bool, Option<DateTime<Utc>>) {
        let dead = match self.store.unnoticed_dead(1000) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "reading dead letters");
                return (false, None);
            }
        };
        let mut by_channel: BTreeMap<String, Vec<_>> = BTreeMap::new();
        for d in dead {
            by_channel.entry(d.channel.clone()).or_default().push(d);
        }
        let configured = self.channels.names();
        let (mut queued, mut due) = (false, None);
        for (channel, rows) in by_channel {
            let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
            // Notices about notices would loop; they are only logged (above).
            let told: Vec<DeadLetter> = rows
                .iter()
                .filter(|r| r.event != "dead_letter")
                .map(|r| DeadLetter {
                    id: r.id,
                    incident_id: r.incident_id,
                    event: r.event.clone(),
                    subject: r.subject.clone(),
                    reason: r.reason.clone().unwrap_or_default(),
                })
                .collect();
            let targets: Vec<&str> =
                configured.iter().copied().filter(|c| *c != channel && !ALERTING.contains(c)).collect();
            if told.is_empty() || targets.is_empty() {
                if let Err(e) = self.store.enqueue_dead_letter_notices(&ids, &[], now) {
                    tracing::error!(error = %e, "marking dead letters");
                }
                continue;
            }
            let last = self.with_state(&channel, |s| s.last_notice);
            if let Some(next) = last.map(|l| after(l, self.policy.notice_interval)).filter(|n| *n > now) {
                due = earliest(due, Some(next));
                continue;
            }
            let notices = render_dead_letter_notice(&channel, &told, &targets);
            match self.store.enqueue_dead_letter_notices(&ids, &notices, now) {
                Ok(()) => {
                    self.with_state(&channel, |s| s.last_notice = Some(now));
                    queued = true;
                }
                Err(e) => tracing::error!(error = %e, "queueing dead-letter notices"),
            }
        }
        (queued, due)
    }

    fn refresh_gauges(&self, now: DateTime<Utc>) {
        let stats = match self.store.outbox_stats() {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "reading outbox counts");
                return;
            }
        };
        let mut names: BTreeSet<String> = self.channels.names().into_iter().map(str::to_string).collect();
        names.extend(self.state.lock().unwrap_or_else(|p| p.into_inner()).keys().cloned());
        names.extend(stats.iter().map(|s| s.channel.clone()));
        for name in names {
            let label = ChannelLabel { channel: name.clone() };
            let s = stats.iter().find(|s| s.channel == name);
            self.metrics.outbox_pending.get_or_create(&label).set(s.map_or(0, |s| s.pending) as i64);
            self.metrics.outbox_dead.get_or_create(&label).set(s.map_or(0, |s| s.dead) as i64);
            let oldest =
                s.and_then(|s| s.oldest_pending).map_or(0.0, |t| (now - t).num_milliseconds().max(0) as f64 / 1000.0);
            self.metrics.outbox_oldest_pending_seconds.get_or_create(&label).set(oldest);
            self.with_state(&name, |_| ());
        }
    }

    /// Exponential backoff with +-20 % jitter, capped.
    fn backoff(&self, attempts: u32) -> Duration {
        let max = self.policy.max_backoff.as_secs_f64();
        let base = self.policy.initial_backoff.as_secs_f64() * 2f64.powi(attempts.min(30) as i32);
        let jitter = rand::rng().random_range(0.8..1.2);
        Duration::from_secs_f64((base.min(max) * jitter).min(max))
    }

    async fn send(&self, item: &OutboxItem) -> Result<(), (Verdict, String)> {
        let missing = |ch: &str| (Verdict::PermanentChannel, format!("channel `{ch}` is not configured"));
        match item.channel.as_str() {
            "slack" => {
                let slack = self.channels.slack.as_ref().ok_or_else(|| missing("slack"))?;
                slack.post(&item.payload).await.map_err(|e| (classify("slack", &e), e.to_string()))
            }
            "email" => {
                let smtp = self.channels.email.as_ref().ok_or_else(|| missing("email"))?;
                let field = |k: &str| item.payload.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
                let msg = EmailMessage {
                    subject: field("subject"),
                    text: field("text"),
                    html: field("html"),
                    message_id: format!("<warden-outbox-{}@warden>", item.id),
                };
                smtp.send(&msg).await.map_err(|e| (classify("email", &e), e.to_string()))
            }
            "file" => {
                let path = self.channels.file.as_ref().ok_or_else(|| missing("file"))?;
                append_line(path, &item.payload).map_err(|e| (classify_io(&e), format!("{}: {e}", path.display())))
            }
            "slack_app" => {
                let app = self.channels.slack_app.as_ref().ok_or_else(|| missing("slack_app"))?;
                app.deliver(&self.store, item).await.map_err(|e| (classify("slack_app", &e), e.to_string()))
            }
            "pagerduty" => {
                let pd = self.channels.pagerduty.as_ref().ok_or_else(|| missing("pagerduty"))?;
                let event: pagerduty::Event = stored(&item.payload, "event", "PagerDuty event")?;
                pd.send(&event).await.map(|_| ()).map_err(|e| (classify("pagerduty", &e), e.to_string()))
            }
            "opsgenie" => {
                let og = self.channels.opsgenie.as_ref().ok_or_else(|| missing("opsgenie"))?;
                let req: AlertRequest = stored(&item.payload, "request", "Opsgenie request")?;
                og.send(&req).await.map(|_| ()).map_err(|e| (classify("opsgenie", &e), e.to_string()))
            }
            "teams" => {
                let teams = self.channels.teams.as_ref().ok_or_else(|| missing("teams"))?;
                let message = item.payload.get("message").ok_or_else(|| unreadable("Teams message", "no `message`"))?;
                teams.post(message).await.map_err(|e| (classify("teams", &e), e.to_string()))
            }
            "webhook" => {
                let hook = self.channels.webhook.as_ref().ok_or_else(|| missing("webhook"))?;
                let delivery = format!("warden-outbox-{}", item.id);
                hook.post(&item.payload, &delivery, &item.event, Utc::now().timestamp())
                    .await
                    .map_err(|e| (classify("webhook", &e), e.to_string()))
            }
            other => Err(missing(other)),
        }
    }
}

/// A stored payload that cannot be read is never sent: a permanent failure.
fn unreadable(what: &str, why: &str) -> (Verdict, String) {
    (Verdict::Permanent, format!("stored {what} is unreadable: {why}"))
}

/// The typed request under `key` of a stored payload.
fn stored<T: serde::de::DeserializeOwned>(
    payload: &serde_json::Value,
    key: &str,
    what: &str,
) -> Result<T, (Verdict, String)> {
    let value = payload.get(key).cloned().ok_or_else(|| unreadable(what, &format!("no `{key}`")))?;
    serde_json::from_value(value).map_err(|e| unreadable(what, &e.to_string()))
}

/// The messages that may be sent now: in id order, the first pending message of each
/// incident (a digest stands for each incident it covers; messages without an incident
/// are independent).
/// One line per incident for a digest or group message, in order of each incident's first
/// message, its events in order (a message of no incident is a line of its own).
fn entries(messages: &[&PendingMessage]) -> Vec<DigestEntry> {
    let mut out: Vec<DigestEntry> = Vec::new();
    let mut index: HashMap<i64, usize> = HashMap::new();
    for m in messages {
        match m.incident_id.and_then(|i| index.get(&i).copied()) {
            Some(e) => {
                out[e].events.push(m.event.clone());
                out[e].subject = m.subject.clone();
            }
            None => {
                if let Some(i) = m.incident_id {
                    index.insert(i, out.len());
                }
                out.push(DigestEntry {
                    incident_id: m.incident_id,
                    events: vec![m.event.clone()],
                    subject: m.subject.clone(),
                });
            }
        }
    }
    out
}

fn heads(pending: &[PendingMessage]) -> Vec<&PendingMessage> {
    let mut taken: BTreeSet<i64> = BTreeSet::new();
    let mut out = Vec::new();
    for m in pending {
        let keys: Vec<i64> = if matches!(m.event.as_str(), "digest" | "group") {
            m.digest_incidents.clone()
        } else {
            m.incident_id.into_iter().collect()
        };
        let blocked = keys.iter().any(|k| taken.contains(k));
        taken.extend(keys);
        if !blocked {
            out.push(m);
        }
    }
    out
}

fn append_line(path: &PathBuf, payload: &serde_json::Value) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    let mut line = payload.to_string();
    line.push('\n');
    f.write_all(line.as_bytes())?;
    f.sync_data()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{IncidentSignal, NewNotification};
    use serde_json::json;
    use std::collections::BTreeMap;

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

    fn note(channel: &str, event: &str, n: u32) -> NewNotification {
        NewNotification {
            channel: channel.into(),
            event: event.into(),
            payload: json!({"n": n, "subject": format!("{event} {n}")}),
            group: None,
        }
    }

    fn outbox(store: &Arc<Store>, file: Option<PathBuf>) -> Outbox {
        let policy = Policy {
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_secs(60),
            ..Policy::default()
        };
        Outbox::new(
            store.clone(),
            Channels { file, ..Default::default() },
            policy,
            Arc::new(Metrics::new()),
            Timeline::default(),
        )
    }

    fn pending(id: i64, incident: Option<i64>, event: &str, digest_incidents: Vec<i64>) -> PendingMessage {
        PendingMessage {
            id,
            incident_id: incident,
            event: event.into(),
            attempts: 0,
            strikes: 0,
            next_attempt_at: Utc::now(),
            queued_at: Utc::now(),
            last_attempt_at: None,
            subject: String::new(),
            digest_incidents,
            group: None,
            created_at: Utc::now(),
        }
    }

    #[test]
    fn one_head_per_incident_and_a_digest_holds_its_incidents() {
        let p = vec![
            pending(1, Some(7), "opened", vec![]),
            pending(2, Some(7), "resolved", vec![]),
            pending(3, Some(8), "opened", vec![]),
            pending(4, None, "dead_letter", vec![]),
            pending(5, None, "digest", vec![9, 10]),
            pending(6, Some(9), "resolved", vec![]),
            pending(7, Some(11), "opened", vec![]),
        ];
        let ids: Vec<i64> = heads(&p).iter().map(|m| m.id).collect();
        assert_eq!(ids, [1, 3, 4, 5, 7]);
    }

    #[tokio::test]
    async fn file_channel_delivers_in_order_and_unconfigured_channels_are_dead_lettered_with_a_notice() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open_in_memory().expect("store"));
        let now = Utc::now();
        store
            .open_incident(&sig("f"), now, &json!({}), |_| {
                vec![note("file", "opened", 1), note("file", "resolved", 2), note("slack", "opened", 3)]
            })
            .expect("open");
        let path = dir.path().join("out/n.jsonl");
        let outbox = outbox(&store, Some(path.clone()));
        let pass = outbox.deliver_due(now).await;
        assert_eq!((pass.delivered, pass.dead_lettered), (3, 1));
        let lines: Vec<serde_json::Value> = std::fs::read_to_string(&path)
            .expect("file")
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!((lines[0]["n"].as_u64(), lines[1]["n"].as_u64()), (Some(1), Some(2)));
        // The slack message could not go anywhere: a dead letter with its reason, reported on the file channel.
        assert_eq!(lines[2]["event"], "dead_letter");
        assert_eq!(lines[2]["channel"], "slack");
        assert_eq!(lines[2]["dead_letters"][0]["reason"], "channel `slack` is not configured");
        let dead = store.list_outbox(Some("dead"), None, 10).expect("dead");
        assert_eq!(dead.len(), 1);
        assert_eq!(store.pending_notifications().expect("count"), 0);
        let metrics = outbox.metrics.encode().expect("encode");
        assert!(metrics.contains("warden_outbox_dead_letters_total{channel=\"slack\"} 1"), "{metrics}");
        assert!(metrics.contains("warden_outbox_dead{channel=\"slack\"} 1"), "{metrics}");
        assert!(metrics.contains("warden_outbox_pending{channel=\"file\"} 0"), "{metrics}");
        // Nothing more to do, and no second notice.
        assert_eq!(outbox.deliver_due(now).await, Pass::default());
    }

    #[tokio::test]
    async fn a_silenced_incidents_messages_are_held_back_and_others_still_go() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open_in_memory().expect("store"));
        let now = Utc::now();
        let silence = store
            .add_silence(
                &crate::store::silences::NewSilence {
                    matchers: vec!["watch=quiet".into()],
                    starts_at: now - chrono::Duration::seconds(1),
                    ends_at: now + chrono::Duration::hours(1),
                    created_by: "user/a".into(),
                    comment: "maintenance".into(),
                },
                now,
            )
            .expect("silence");
        let mut quiet = sig("q");
        quiet.watch = "quiet".into();
        store.open_incident(&quiet, now, &json!({}), |_| vec![note("file", "opened", 1)]).expect("open");
        store.open_incident(&sig("loud"), now, &json!({}), |_| vec![note("file", "opened", 2)]).expect("open");
        let path = dir.path().join("n.jsonl");
        let outbox = outbox(&store, Some(path.clone()));
        assert_eq!(outbox.deliver_due(now).await.delivered, 1);
        let lines = std::fs::read_to_string(&path).expect("file");
        assert_eq!(lines.lines().count(), 1);
        assert!(lines.contains("\"n\":2"), "{lines}");
        let held = store.list_outbox(Some("silenced"), None, 10).expect("list");
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].reason.as_deref(), Some(format!("silenced by silence {}", silence.id).as_str()));
        assert_eq!(store.pending_notifications().expect("count"), 0);
        // Once the silence is ended, the incident's next message goes out.
        store.expire_silence(silence.id, "user/a", now).expect("expire");
        let inc = store.open_incident_by_fingerprint("q").expect("read").expect("open");
        store.add_event(inc.id, now, "note", &json!({}), &[note("file", "resolved", 3)]).expect("event");
        assert_eq!(outbox.deliver_due(now + chrono::Duration::seconds(1)).await.delivered, 1);
    }

    #[tokio::test]
    async fn only_the_leader_sends_and_a_refused_fence_leaves_the_message_pending() {
        use crate::leadership::testing::Election;
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open_in_memory().expect("store"));
        let now = Utc::now();
        store.open_incident(&sig("f"), now, &json!({}), |_| vec![note("file", "opened", 1)]).expect("open");
        let path = dir.path().join("n.jsonl");
        let election = Election::new();
        let (mut a, leader) = election.leader("warden-0").await;
        let (_b, follower) = election.follower("warden-1").await;
        let notify = NotifySection::default();

        // A follower does nothing: no send, no digest, no expiry.
        let follower = outbox(&store, Some(path.clone())).with_leadership(follower, &notify);
        assert_eq!(follower.deliver_due(now).await, Pass::default());
        assert_eq!(store.pending_notifications().expect("count"), 1);
        assert!(!path.exists());

        // The leader, 5 s after its last renew (9 s of lease left), with a send that may
        // take 10 s: the fence refuses, nothing is sent and nothing is charged.
        let mut leading = outbox(&store, Some(path.clone())).with_leadership(leader, &notify);
        leading.send_timeouts.insert("file".into(), Duration::from_secs(10));
        election.clock.advance(Duration::from_secs(5));
        let pass = leading.deliver_due(now).await;
        assert_eq!(pass.delivered, 0);
        assert!(pass.next_due.is_some(), "tried again after the next renew");
        assert!(!path.exists());
        let item = store.pending_messages("file").expect("pending");
        assert_eq!((item.len(), item[0].attempts, item[0].strikes), (1, 0, 0));

        // After a renew the lease covers the send.
        a.step().await.expect("renew");
        let pass = leading.deliver_due(now).await;
        assert_eq!(pass.delivered, 1);
        assert_eq!(store.pending_notifications().expect("count"), 0);
        assert_eq!(std::fs::read_to_string(&path).expect("file").lines().count(), 1);
    }

    #[tokio::test]
    async fn a_dead_notice_is_not_reported_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open_in_memory().expect("store"));
        let now = Utc::now();
        // A notice for a channel that cannot deliver it: it dies, and nobody is told about it.
        let notice = NewNotification {
            channel: "slack".into(),
            event: "dead_letter".into(),
            payload: json!({"text": "a message to email was dead-lettered"}),
            group: None,
        };
        store.enqueue_dead_letter_notices(&[], &[notice], now).expect("notice");
        let path = dir.path().join("n.jsonl");
        let outbox = outbox(&store, Some(path.clone()));
        let pass = outbox.deliver_due(now).await;
        assert_eq!((pass.delivered, pass.dead_lettered), (0, 1));
        assert!(!path.exists(), "a notice about a notice was written");
        assert!(store.unnoticed_dead(10).expect("unnoticed").is_empty());
        assert_eq!(outbox.deliver_due(now).await, Pass::default());
    }

    #[tokio::test]
    async fn an_unreachable_channel_pauses_without_blaming_the_message() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A directory where the file should be: every append fails.
        let path = dir.path().join("blocked");
        std::fs::create_dir_all(&path).expect("dir");
        let store = Arc::new(Store::open_in_memory().expect("store"));
        let now = Utc::now();
        store.open_incident(&sig("a"), now, &json!({}), |_| vec![note("file", "opened", 1)]).expect("open");
        store.open_incident(&sig("b"), now, &json!({}), |_| vec![note("file", "opened", 2)]).expect("open");
        let outbox = outbox(&store, Some(path.clone()));
        let pass = outbox.deliver_due(now).await;
        assert_eq!((pass.delivered, pass.dead_lettered), (0, 0));
        let next = pass.next_due.expect("a retry is due");
        assert!(next > now, "{next} {now}");
        // Only the first message was tried: the channel paused after it, not charged.
        let p = store.pending_messages("file").expect("pending");
        assert_eq!((p[0].attempts, p[0].strikes, p[1].attempts), (1, 0, 0));
        // While paused, nothing is tried.
        assert_eq!(outbox.deliver_due(now).await.delivered, 0);
        assert_eq!(store.pending_messages("file").expect("pending")[0].attempts, 1);
        // The receiver is back: both go out, in order.
        std::fs::remove_dir(&path).expect("rmdir");
        let later = next + chrono::Duration::seconds(1);
        assert_eq!(outbox.deliver_due(later).await.delivered, 2);
        let text = std::fs::read_to_string(&path).expect("file");
        assert_eq!(text.lines().count(), 2);
    }

    #[tokio::test]
    async fn messages_older_than_max_age_are_dead_lettered() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open_in_memory().expect("store"));
        let then = Utc::now() - chrono::Duration::hours(25);
        store.open_incident(&sig("a"), then, &json!({}), |_| vec![note("file", "opened", 1)]).expect("open");
        let outbox = outbox(&store, Some(dir.path().join("n.jsonl")));
        let pass = outbox.deliver_due(Utc::now()).await;
        assert_eq!((pass.delivered, pass.dead_lettered), (0, 1));
        let dead = store.list_outbox(Some("dead"), None, 10).expect("dead");
        assert_eq!(dead[0].reason.as_deref(), Some("not delivered within 1day"));
    }

    #[test]
    fn notify_keys_are_read_and_checked_with_their_paths() {
        let path = std::path::Path::new("n.yaml");
        let cfg = crate::config::parse_str(
            "notify:\n  retry: { max_attempts: 3, max_age: 2h }\n  digest: { threshold: 40, max_items: 10 }\n",
            path,
        )
        .expect("valid");
        let p = Policy::from_config(&cfg.notify);
        assert_eq!(
            (p.max_attempts, p.max_age, p.digest_threshold, p.digest_max_items),
            (3, Duration::from_secs(7200), 40, 10)
        );
        let d = Policy::default();
        assert_eq!(
            (d.max_attempts, d.max_age, d.digest_threshold, d.digest_max_items),
            (10, Duration::from_secs(86_400), 20, 50)
        );
        let text = "notify:\n  retry:\n    max_attempts: 0\n    max_age: 1s\n  digest:\n    threshold: 1\n    max_items: 501\n";
        let errors = crate::config::parse_str(text, path).expect_err("invalid").0;
        let got: Vec<(&str, Option<usize>)> = errors.iter().map(|e| (e.path.as_str(), e.line)).collect();
        assert_eq!(
            got,
            [
                ("notify.retry.max_attempts", Some(3)),
                ("notify.retry.max_age", Some(4)),
                ("notify.digest.threshold", Some(6)),
                ("notify.digest.max_items", Some(7))
            ]
        );
        let unknown = crate::config::parse_str("notify:\n  digest: { size: 3 }\n", path).expect_err("unknown key").0;
        assert_eq!(unknown[0].path, "notify.digest.size");
    }

    #[tokio::test]
    async fn file_channel_is_never_digested() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open_in_memory().expect("store"));
        let now = Utc::now();
        store
            .open_incident(&sig("a"), now, &json!({}), |_| (0..50).map(|n| note("file", "action", n)).collect())
            .expect("open");
        let path = dir.path().join("n.jsonl");
        let outbox = outbox(&store, Some(path.clone()));
        let pass = outbox.deliver_due(now).await;
        assert_eq!((pass.delivered, pass.digests), (50, 0));
        let ns: Vec<u64> = std::fs::read_to_string(&path)
            .expect("file")
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?["n"].as_u64())
            .collect();
        assert_eq!(ns, (0..50).collect::<Vec<u64>>());
    }
}
