//! `POST /api/v1/slack/interactions`: Approve / Deny presses on the Slack app's approval
//! requests, and Acknowledge / Resolve / Silence 1h presses on an open incident's message
//! (the same allow-list; the same calls as `warden incidents ack|resolve` and
//! `warden silences add`, with the Slack identity as who).
//!
//! Slack cannot send Warden's bearer token, so this route is authenticated by Slack's
//! request signature instead ([`SlackApp::interaction`]: v0 HMAC-SHA256 over the raw
//! body, five-minute window, constant-time comparison). Then:
//!
//! * a bad, missing or stale signature is a 401 and nothing else happens; a signed body
//!   that is not a readable interaction is a 400;
//! * a presser who is not in `notify.slack_app.approvers` is told why in the incident's
//!   thread, and nothing is decided;
//! * an approver's press is recorded by [`Engine::decide`](warden_playbooks::engine::Engine::decide),
//!   the function behind `warden approve` and `POST /api/v1/runs/{id}/approve`, with the
//!   Slack identity (`slack:U123 (alice)`) as the approver in the audit trail. An approved
//!   run is advanced by that same call, at once. The thread is told who decided.
//!
//! A press is idempotent: a run that is no longer waiting (a second press, another
//! approver's press, Slack's retry with `X-Slack-Retry-Num`) is left as it is and the
//! thread is told so (a retry of a press already recorded says nothing more). A button
//! names its approval request (`run:ID:REQUESTED_AT_MS`), so a press never decides another
//! run that happens to have the same id.
//!
//! Slack expects an answer within three seconds. The decision is made in a task of its
//! own (the daemon's run tasks, which shutdown waits for): the answer waits for it up to
//! [`ANSWER_WITHIN`] after the request arrived, and the task goes on (advancing the run,
//! telling the thread) when the cluster is slower than that.

use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde_json::json;
use tokio::sync::oneshot;
use warden_connectors::slack_app::{ApprovalAction, IncidentAction, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use warden_playbooks::run::{Approval, Run};

use crate::api::AppState;
use crate::notify::{Interaction, SlackApp};
use crate::store::slack_inbox::InboxPress;

/// Slack's header on a request it sends again (1, 2, 3).
pub const RETRY_NUM_HEADER: &str = "X-Slack-Retry-Num";
/// How long the answer waits for the decision to be recorded (Slack gives up at 3 s).
pub const ANSWER_WITHIN: Duration = Duration::from_millis(2500);

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}

/// One approver's press, checked and read.
struct Press {
    run_id: i64,
    requested_at_ms: i64,
    approve: bool,
    /// The approver as the audit trail names them: `slack:U123 (alice)`.
    who: String,
    action: ApprovalAction,
    /// Slack sent this request again (`X-Slack-Retry-Num`).
    retry: bool,
    received: DateTime<Utc>,
}

/// What a press did.
#[derive(Debug)]
enum Outcome {
    /// This press decided the run; the run as the engine left it.
    Decided(Box<Run>),
    /// Nothing changed; why, for the thread.
    Unchanged(String),
    /// A retry of a press that is already recorded: nothing changed, nothing to say.
    Repeated,
}

pub async fn interactions(State(st): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let received = Utc::now();
    let arrived = Instant::now();
    let Some(app) = st.slack.clone() else {
        return error(StatusCode::NOT_FOUND, "Slack app mode is not configured (notify.slack_app)");
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let retry = header(RETRY_NUM_HEADER).is_some();
    let (timestamp, signature) = (header(TIMESTAMP_HEADER), header(SIGNATURE_HEADER));
    if !st.pipeline.leadership.is_leader() {
        return keep_for_leader(&st, &app, timestamp, signature, retry, &body, received);
    }
    handle(&st, app, timestamp, signature, retry, &body, received, arrived).await
}

/// A follower's side: Slack does not send a press again on an error, so a checked press is
/// kept in the store for the leader ([`crate::store::slack_inbox`]) and answered 200.
fn keep_for_leader(
    st: &AppState,
    app: &SlackApp,
    timestamp: Option<&str>,
    signature: Option<&str>,
    retry: bool,
    body: &[u8],
    received: DateTime<Utc>,
) -> Response {
    if let Err(why) = app.verify(timestamp, signature, body, received) {
        return error(StatusCode::UNAUTHORIZED, why);
    }
    let Ok(text) = std::str::from_utf8(body) else {
        return error(StatusCode::BAD_REQUEST, "the body is not UTF-8 (Slack sends form-encoded ASCII)");
    };
    let view = st.pipeline.leadership.view();
    let press = InboxPress {
        id: 0,
        received_at: received,
        received_by: view.identity.unwrap_or_else(|| "a follower".into()),
        slack_timestamp: timestamp.unwrap_or_default().to_string(),
        signature: signature.unwrap_or_default().to_string(),
        retry,
        body: text.to_string(),
    };
    match st.pipeline.store.enqueue_slack_press(&press) {
        Ok(id) => {
            tracing::info!(press = id, leader = ?view.leader, "Slack press kept for the leader");
            StatusCode::OK.into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "keeping a Slack press for the leader");
            error(StatusCode::SERVICE_UNAVAILABLE, format!("the press could not be kept for the leader: {e}"))
        }
    }
}

/// The leader's side of [`keep_for_leader`]: handles the presses followers kept, oldest
/// first, as if they had just arrived here (signature checked against their arrival time),
/// and marks each handled. Returns how many it handled; nothing on a follower.
pub async fn handle_kept_presses(st: &AppState) -> usize {
    let Some(app) = st.slack.clone() else { return 0 };
    if !st.pipeline.leadership.is_leader() {
        return 0;
    }
    let pending = match st.pipeline.store.pending_slack_presses(50) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "reading the Slack presses followers kept");
            return 0;
        }
    };
    let mut handled = 0;
    for p in pending {
        if !st.pipeline.leadership.is_leader() {
            break;
        }
        let (ts, sig) = (Some(p.slack_timestamp.as_str()), Some(p.signature.as_str()));
        let answer = handle(st, app.clone(), ts, sig, p.retry, p.body.as_bytes(), p.received_at, Instant::now()).await;
        tracing::info!(
            press = p.id,
            received_by = %p.received_by,
            status = answer.status().as_u16(),
            waited_ms = (Utc::now() - p.received_at).num_milliseconds(),
            "Slack press from a follower handled"
        );
        if let Err(e) = st.pipeline.store.mark_slack_press_handled(p.id, Utc::now()) {
            tracing::error!(press = p.id, error = %e, "marking a Slack press handled");
            break;
        }
        handled += 1;
    }
    handled
}

/// One press, on the leader: checked, read and acted on (see the module docs).
#[allow(clippy::too_many_arguments)]
async fn handle(
    st: &AppState,
    app: SlackApp,
    timestamp: Option<&str>,
    signature: Option<&str>,
    retry: bool,
    body: &[u8],
    received: DateTime<Utc>,
    arrived: Instant,
) -> Response {
    match app.interaction(timestamp, signature, body, received).await {
        Interaction::Unauthenticated(why) => error(StatusCode::UNAUTHORIZED, why),
        Interaction::Invalid(why) => error(StatusCode::BAD_REQUEST, why),
        Interaction::Ignored => StatusCode::OK.into_response(),
        Interaction::Refused { action, reason } => {
            tracing::warn!(run = action.run_id, user = %action.user.id, "Slack press refused: not an approver");
            let incident = incident_of(st, action.run_id);
            let store = st.pipeline.store.clone();
            spawn(st, async move {
                if let Err(e) = app.reply_for(&store, incident, &action, &reason).await {
                    tracing::warn!(run = action.run_id, error = %e, "telling the Slack thread why a press was refused");
                }
            });
            StatusCode::OK.into_response()
        }
        Interaction::IncidentRefused { action, reason } => {
            tracing::warn!(incident = action.incident_id, user = %action.user.id, "Slack press refused: not allowed");
            spawn(st, async move {
                if let Err(e) = app.reply_incident(&action, &reason).await {
                    tracing::warn!(incident = action.incident_id, error = %e, "telling the Slack thread why a press was refused");
                }
            });
            StatusCode::OK.into_response()
        }
        Interaction::OnIncident { action, who } => {
            let text = on_incident(st, &action, &who, received);
            spawn(st, async move {
                if let Err(e) = app.reply_incident(&action, &text).await {
                    tracing::warn!(incident = action.incident_id, error = %e, "telling the Slack thread");
                }
            });
            StatusCode::OK.into_response()
        }
        Interaction::Decide { run_id, approve, who, action } => {
            let press =
                Press { run_id, requested_at_ms: action.requested_at_ms, approve, who, action, retry, received };
            let (tx, rx) = oneshot::channel();
            // Two presses on one run at once are sorted out by the run's claim in the
            // engine: one decides, the other finds the run decided.
            spawn(st, {
                let st = st.clone();
                async move {
                    let outcome = decide(&st, &press).await;
                    let _ = tx.send(());
                    tell(&st, &app, &press, &outcome).await;
                }
            });
            let left = ANSWER_WITHIN.saturating_sub(arrived.elapsed());
            if tokio::time::timeout(left, rx).await.is_err() {
                tracing::info!(run = run_id, "the Slack press is still being recorded; answering Slack now");
            }
            StatusCode::OK.into_response()
        }
    }
}

/// Acknowledges, resolves or silences (for an hour: the incident's watch on its target)
/// the pressed incident as `who`, through the same calls as the CLI and the API; returns
/// what to tell the thread. Idempotent: a second press says the incident already is so.
fn on_incident(st: &AppState, action: &IncidentAction, who: &str, now: DateTime<Utc>) -> String {
    use crate::incident::tracker::HandOutcome;
    use warden_connectors::slack_app::IncidentDecision;
    let id = action.incident_id;
    let tracker = &st.pipeline.incidents;
    let by = format!("<@{}>", action.user.id);
    let hand = |outcome: Result<HandOutcome, crate::store::StoreError>, done: &str, already: &str| match outcome {
        Ok(HandOutcome::Done(_)) => {
            tracing::info!(incident = id, who, "incident {done} from Slack");
            format!("Incident #{id} {done} by {by}.")
        }
        Ok(HandOutcome::Unchanged(i)) if i.status != "open" => format!("Incident #{id} is already {}.", i.status),
        Ok(HandOutcome::Unchanged(_)) => format!("Incident #{id} was already {already}."),
        Ok(HandOutcome::NotFound) => format!("There is no incident #{id} in this Warden's store."),
        Err(e) => {
            tracing::error!(incident = id, error = %e, "an incident press from Slack");
            format!("Incident #{id}: the store could not be written ({e}); nothing was done, try again.")
        }
    };
    match action.decision {
        IncidentDecision::Acknowledge => {
            hand(tracker.acknowledge(id, who, Some("from Slack"), now), "acknowledged", "acknowledged")
        }
        IncidentDecision::Resolve => {
            hand(tracker.resolve_by_hand(id, who, Some("from Slack"), now), "resolved", "resolved")
        }
        IncidentDecision::Silence => silence_incident(st, id, who, &by, now),
    }
}

fn silence_incident(st: &AppState, id: i64, who: &str, by: &str, now: DateTime<Utc>) -> String {
    use crate::incident::silence::{check_request, SilenceRequest};
    let incident = match st.pipeline.store.get_incident(id) {
        Ok(Some(i)) => i,
        Ok(None) => return format!("There is no incident #{id} in this Warden's store."),
        Err(e) => return format!("Incident #{id}: the store could not be read ({e}); nothing was done, try again."),
    };
    let mut matchers = vec![format!("watch={}", incident.watch)];
    if let Some(t) = &incident.target {
        matchers.push(format!("namespace={}", t.namespace));
        matchers.push(format!("deployment={}", t.deployment));
    }
    let request = SilenceRequest {
        matchers,
        duration: Some(Duration::from_secs(3600)),
        created_by: who.to_string(),
        comment: format!("from Slack, on incident #{id}"),
        ..SilenceRequest::default()
    };
    let made = check_request(request, now)
        .map_err(|e| e.to_string())
        .and_then(|new| st.pipeline.store.add_silence(&new, now).map_err(|e| e.to_string()));
    match made {
        Ok(s) => {
            tracing::info!(incident = id, silence = s.id, who, "silence created from Slack");
            format!(
                "Silenced for an hour by {by}: silence {} ({}), until {}. `warden silences expire {}` ends it.",
                s.id,
                s.matchers.join(", "),
                s.ends_at.format("%H:%M UTC"),
                s.id
            )
        }
        Err(e) => format!("Incident #{id} could not be silenced: {e}"),
    }
}

/// Runs `work` in the daemon's tracked tasks (shutdown waits for them), or on the runtime.
fn spawn(st: &AppState, work: impl std::future::Future<Output = ()> + Send + 'static) {
    match st.pipeline.action_tasks() {
        Some(tasks) => {
            tasks.tracker.spawn(work);
        }
        None => {
            tokio::spawn(work);
        }
    }
}

fn incident_of(st: &AppState, run_id: i64) -> Option<i64> {
    st.pipeline.store.get_run(run_id).ok().flatten().and_then(|r| r.incident_id())
}

/// Records the press through the engine's `decide`, the same call as `warden approve`
/// and the API's approve / deny.
async fn decide(st: &AppState, p: &Press) -> Outcome {
    let id = p.run_id;
    let Some(rem) = st.pipeline.remediation().cloned() else {
        return Outcome::Unchanged("Playbooks did not load (see Warden's log): nothing was decided.".into());
    };
    let store = &st.pipeline.store;
    let run = match store.get_run(id) {
        Ok(Some(r)) => r,
        Ok(None) => return Outcome::Unchanged(format!("There is no run {id} in Warden's store: nothing was decided.")),
        Err(e) => return Outcome::Unchanged(format!("Could not read run {id} ({e}): nothing was decided; try again.")),
    };
    if run.approval.as_ref().map(|a| a.requested_at.timestamp_millis()) != Some(p.requested_at_ms) {
        return Outcome::Unchanged(format!(
            "This button belongs to another approval request than run {id}'s (another Warden store or installation?): nothing was decided."
        ));
    }
    let now = Utc::now();
    let result = rem.runs.decide(id, &p.who, p.approve, None, now).await;
    let recorded = store.get_run(id).ok().flatten();
    let mine = |a: &Approval| a.decided_by.as_deref() == Some(p.who.as_str()) && a.decided_at == Some(now);
    match result {
        Ok(run) => {
            tracing::info!(
                run = id,
                by = %p.who,
                approved = p.approve,
                status = %run.status,
                decided_after_ms = (now - p.received).num_milliseconds(),
                "Slack decision recorded"
            );
            Outcome::Decided(Box::new(run))
        }
        Err(e) => match recorded {
            // Recorded by this press; advancing the run afterwards failed.
            Some(r) if r.approval.as_ref().is_some_and(mine) => {
                tracing::error!(run = id, error = %e, "advancing a run approved from Slack");
                Outcome::Decided(Box::new(r))
            }
            Some(r) => match r.approval.as_ref().filter(|a| a.decided_by.is_some()) {
                Some(a)
                    if p.retry && a.decided_by.as_deref() == Some(p.who.as_str()) && a.approved == Some(p.approve) =>
                {
                    Outcome::Repeated
                }
                Some(a) => Outcome::Unchanged(already(&r, a, &p.action)),
                None => Outcome::Unchanged(format!("Nothing was decided: {e}.")),
            },
            None => Outcome::Unchanged(format!("Nothing was decided: {e}.")),
        },
    }
}

fn already(run: &Run, a: &Approval, action: &ApprovalAction) -> String {
    let verb = if a.approved == Some(true) { "approved" } else { "denied" };
    let by = a.decided_by.as_deref().unwrap_or("someone");
    let at = a.decided_at.map(|t| format!(" at {}", t.format("%H:%M:%S UTC"))).unwrap_or_default();
    format!(
        "Run {} was already {verb} by {by}{at} (it is {} now): this press by <@{}> changed nothing.",
        run.id, run.status, action.user.id
    )
}

/// Tells the incident's thread what the press did.
async fn tell(st: &AppState, app: &SlackApp, p: &Press, outcome: &Outcome) {
    let text = match outcome {
        Outcome::Repeated => return,
        Outcome::Unchanged(why) => why.clone(),
        Outcome::Decided(run) if p.approve => format!(
            "Run {} ({}) approved by <@{}> (`{}`); it is {} now.",
            run.id,
            run.title(),
            p.action.user.id,
            p.who,
            run.status
        ),
        Outcome::Decided(run) => format!(
            "Run {} ({}) denied by <@{}> (`{}`); nothing was sent.",
            run.id,
            run.title(),
            p.action.user.id,
            p.who
        ),
    };
    let incident = match outcome {
        Outcome::Decided(run) => run.incident_id(),
        _ => incident_of(st, p.run_id),
    };
    if let Err(e) = app.reply_for(&st.pipeline.store, incident, &p.action, &text).await {
        tracing::warn!(run = p.run_id, error = %e, "telling the Slack thread about a press");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;
    use warden_connectors::slack_api::SlackApi;
    use warden_connectors::slack_app::{signature, Approvers};
    use warden_connectors::Secret;

    use super::*;
    use crate::api::server::router;
    use crate::pipeline::Pipeline;

    const SIGNING: &str = "unit-signing-secret";

    use crate::app::assemble::NoSource;

    /// A router whose Slack app answers into the void (nothing listens on port 9): replies
    /// fail and are logged, decisions do not depend on them.
    fn app(dir: &std::path::Path, slack: bool) -> (axum::Router, Arc<crate::store::Store>) {
        let store = Arc::new(crate::store::Store::open_in_memory().expect("store"));
        let st = state(dir, store.clone(), slack, None);
        (router(st), store)
    }

    /// The API's state over `store`, leading or following by `leadership` (`None`: one
    /// replica).
    fn state(
        dir: &std::path::Path,
        store: Arc<crate::store::Store>,
        slack: bool,
        leadership: Option<crate::leadership::Leadership>,
    ) -> AppState {
        std::fs::write(
            dir.join("ask.yaml"),
            "name: ask\ntarget: none\ntriggers:\n  - alert: {labels: {alertname: A}}\nguards: {autonomy: recommend}\nsteps:\n  - notify: {message: 'went ahead'}\n",
        )
        .expect("write");
        let cfg = crate::config::parse_str(
            &format!("playbooks: {{dir: '{}'}}\n", dir.display()),
            std::path::Path::new("t.yaml"),
        )
        .expect("config");
        let mut pipeline = Pipeline::new(
            Arc::new(cfg),
            store,
            Arc::new(NoSource),
            None,
            Arc::new(crate::metrics::Metrics::new()),
            vec!["slack_app"],
            crate::timeline::Timeline::default(),
        );
        if let Some(l) = leadership {
            pipeline = pipeline.with_leadership(l, Duration::from_secs(10));
        }
        let api = SlackApi::new(Some("http://127.0.0.1:9/api/"), Secret::new("xoxb-1".into()), Duration::from_secs(1))
            .expect("client");
        let approvers = Approvers { users: ["U0OK".to_string()].into(), groups: Default::default() };
        let slack = slack.then(|| SlackApp::new(api, "C0CHAN".into(), Secret::new(SIGNING.into()), approvers));
        AppState {
            pipeline: Arc::new(pipeline),
            api_token: Some(Arc::from("t")),
            viewer_token: None,
            ready: Arc::new(AtomicBool::new(true)),
            slack,
        }
    }

    fn press(action: &str, value: &str, user: &str) -> Vec<u8> {
        let payload = json!({
            "type": "block_actions",
            "user": {"id": user, "username": "pat"},
            "container": {"type": "message", "message_ts": "1.2", "channel_id": "C0CHAN"},
            "actions": [{"action_id": action, "value": value, "type": "button"}]
        });
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("payload", &payload.to_string())
            .finish()
            .into_bytes()
    }

    async fn send(app: &axum::Router, body: &[u8], secret: &str, ts: i64, retry: bool) -> (StatusCode, String) {
        let sig = signature(&Secret::new(secret.into()), &ts.to_string(), body);
        let mut req = Request::post("/api/v1/slack/interactions")
            .header("content-type", "application/x-www-form-urlencoded")
            .header(TIMESTAMP_HEADER, ts.to_string())
            .header(SIGNATURE_HEADER, sig);
        if retry {
            req = req.header(RETRY_NUM_HEADER, "1");
        }
        let resp = app.clone().oneshot(req.body(Body::from(body.to_vec())).expect("request")).await.expect("response");
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.expect("body");
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    async fn waiting_run(app: &axum::Router, store: &crate::store::Store) -> (i64, String) {
        let alert = r#"{"version":"4","groupKey":"g","status":"firing","receiver":"w","alerts":[{"status":"firing","labels":{"alertname":"A"},"annotations":{},"startsAt":"2026-11-22T10:00:00Z"}]}"#;
        let req = Request::post("/api/v1/alerts")
            .header("authorization", "Bearer t")
            .header("content-type", "application/json")
            .body(Body::from(alert))
            .expect("request");
        assert_eq!(app.clone().oneshot(req).await.expect("response").status(), StatusCode::OK);
        let run = store.get_run(1).expect("read").expect("run 1");
        assert_eq!(run.status.to_string(), "awaiting_approval");
        let at = run.approval.expect("approval").requested_at.timestamp_millis();
        (1, warden_connectors::slack_app::button_value(1, at))
    }

    fn approvals(store: &crate::store::Store, id: i64) -> Vec<(String, bool)> {
        store
            .audit_for_run(id)
            .expect("audit")
            .into_iter()
            .filter_map(|e| Some((e.actor, e.detail.get("approved")?.as_bool()?)))
            .collect()
    }

    #[tokio::test]
    async fn presses_are_checked_then_decided_once_through_the_engine() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (app, store) = self::app(dir.path(), true);
        let (id, value) = waiting_run(&app, &store).await;
        let now = Utc::now().timestamp();
        let body = press("warden_approve", &value, "U0OK");

        // Refused at the door, and the bearer token is neither needed nor enough.
        let (st, text) = send(&app, &body, "wrong", now, false).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{text}");
        assert!(text.contains("does not match") && !text.contains(SIGNING), "{text}");
        assert_eq!(send(&app, &body, SIGNING, now - 301, false).await.0, StatusCode::UNAUTHORIZED);
        let req = Request::post("/api/v1/slack/interactions")
            .header("authorization", "Bearer t")
            .body(Body::from(body.clone()))
            .expect("request");
        assert_eq!(app.clone().oneshot(req).await.expect("response").status(), StatusCode::UNAUTHORIZED);
        let (st, text) = send(&app, b"payload=%7Bnope", SIGNING, now, false).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{text}");
        let (st, text) = send(&app, &press("warden_approve", "run:1", "U0OK"), SIGNING, now, false).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{text}");
        // Another app's button: ignored.
        assert_eq!(send(&app, &press("other", "x", "U0OK"), SIGNING, now, false).await.0, StatusCode::OK);

        // Not an approver, or another request's button: 200, nothing decided.
        assert_eq!(send(&app, &press("warden_approve", &value, "U0NO"), SIGNING, now, false).await.0, StatusCode::OK);
        let stale = warden_connectors::slack_app::button_value(id, 5);
        assert_eq!(send(&app, &press("warden_approve", &stale, "U0OK"), SIGNING, now, false).await.0, StatusCode::OK);
        assert!(approvals(&store, id).is_empty());
        assert_eq!(store.get_run(id).expect("read").expect("run").status.to_string(), "awaiting_approval");

        // The approver's press is the engine's decision, and the run has continued.
        assert_eq!(send(&app, &body, SIGNING, now, false).await.0, StatusCode::OK);
        let run = store.get_run(id).expect("read").expect("run");
        assert_eq!(run.status.to_string(), "succeeded");
        assert_eq!(approvals(&store, id), [("slack:U0OK (pat)".to_string(), true)]);

        // A retry, a second press, a deny: 200, nothing changes.
        assert_eq!(send(&app, &body, SIGNING, now, true).await.0, StatusCode::OK);
        assert_eq!(send(&app, &body, SIGNING, now, false).await.0, StatusCode::OK);
        let deny = press("warden_deny", &value, "U0OK");
        assert_eq!(send(&app, &deny, SIGNING, now, false).await.0, StatusCode::OK);
        assert_eq!(approvals(&store, id).len(), 1);
        assert_eq!(store.get_run(id).expect("read").expect("run").status.to_string(), "succeeded");
    }

    /// Two replicas on one store: a press that reaches the follower is checked, kept and
    /// answered 200 there, and decided by the leader (who pressed in the audit trail).
    #[tokio::test]
    async fn a_press_on_a_follower_is_kept_for_the_leader_and_decided_there() {
        use crate::leadership::testing::Election;
        let (dir_a, dir_b) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
        let store = Arc::new(crate::store::Store::open_in_memory().expect("store"));
        let election = Election::new();
        let (_a, leads) = election.leader("warden-0").await;
        let (_b, follows) = election.follower("warden-1").await;
        let leader = state(dir_a.path(), store.clone(), true, Some(leads));
        let follower = state(dir_b.path(), store.clone(), true, Some(follows));
        let (leader_app, follower_app) = (router(leader.clone()), router(follower.clone()));
        let (id, value) = waiting_run(&leader_app, &store).await;
        let now = Utc::now().timestamp();
        let body = press("warden_approve", &value, "U0OK");

        // A bad signature is refused by the follower too, and nothing is kept.
        assert_eq!(send(&follower_app, &body, "wrong", now, false).await.0, StatusCode::UNAUTHORIZED);
        assert!(store.pending_slack_presses(10).expect("inbox").is_empty());
        // The press: 200 at once, kept, nothing decided yet.
        let (st, text) = send(&follower_app, &body, SIGNING, now, false).await;
        assert_eq!(st, StatusCode::OK, "{text}");
        let kept = store.pending_slack_presses(10).expect("inbox");
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].received_by, "warden-1");
        assert_eq!(store.get_run(id).expect("read").expect("run").status.to_string(), "awaiting_approval");
        // A follower handles nothing; the leader handles it as its own press.
        assert_eq!(handle_kept_presses(&follower).await, 0);
        assert_eq!(handle_kept_presses(&leader).await, 1);
        assert_eq!(store.get_run(id).expect("read").expect("run").status.to_string(), "succeeded");
        assert_eq!(approvals(&store, id), [("slack:U0OK (pat)".to_string(), true)]);
        assert!(store.pending_slack_presses(10).expect("inbox").is_empty(), "marked handled");
        assert_eq!(handle_kept_presses(&leader).await, 0);
    }

    #[tokio::test]
    async fn without_the_slack_app_the_route_is_not_there() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (app, _) = self::app(dir.path(), false);
        let (st, text) = send(&app, b"payload=%7B%7D", SIGNING, Utc::now().timestamp(), false).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{text}");
        assert!(text.contains("notify.slack_app"), "{text}");
    }
}
