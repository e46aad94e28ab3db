//! The web console under `/ui/`: incidents, runs, approvals, watches and silences as
//! server-rendered HTML, with a little JavaScript and no build step.
//!
//! * **Who.** The API's bearer tokens: a person pastes `server.api_token` (operator) or
//!   `server.viewer_token` (viewer) into `/ui/login` ([`login`]). The console then keeps a
//!   session ([`session`]): a random id in a cookie (`HttpOnly`, `SameSite=Strict`,
//!   `Path=/ui`, `Secure` when the request came over HTTPS), mapped in memory to the role,
//!   the name given at login and an expiry; the token itself is never stored in the browser.
//!   Viewers read; operators also act, recorded as `console/NAME`.
//! * **Forms.** Every `POST` carries the session's CSRF token in a hidden `csrf` field,
//!   compared in constant time before anything else ([`authenticated`]); the login form has
//!   its own (a short-lived cookie and the same value in the form). Writes go through the
//!   very calls the JSON API makes (`api::runs::decide_as`, `api::incidents::by_hand`,
//!   `api::silences::create_checked` / `expire_as`), so they are audited alike, and like the
//!   API's write routes only the leader takes them ([`crate::api::server::follower_refusal`]).
//! * **Headers.** Every answer carries a strict Content-Security-Policy (no inline script or
//!   style: the CSS and JS are files served from `/ui/static/`), `X-Content-Type-Options:
//!   nosniff`, `Referrer-Policy: no-referrer`, and pages are not cached.
//! * **Text.** Everything from the store (titles, labels, log templates, event details) is
//!   HTML-escaped by the templates ([`render`]).

pub mod incidents;
pub mod login;
pub mod render;
pub mod runs;
pub mod session;
pub mod silences;
pub mod watches;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::api::AppState;
use render::message;
use session::{LoginLimiter, Session, Sessions};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "warden_session";
/// The login form's CSRF cookie.
pub const LOGIN_COOKIE: &str = "warden_login";
/// The Content-Security-Policy of every answer under `/ui/`.
pub const CSP: &str = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; \
                       form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
/// The largest form accepted.
const MAX_FORM: usize = 64 * 1024;

/// What the console's handlers share: the API's state, the sessions and the failed-login
/// counts.
#[derive(Clone)]
pub struct Console {
    pub app: AppState,
    pub sessions: Arc<Sessions>,
    pub logins: Arc<LoginLimiter>,
    /// `server.trusted_proxies`: whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Arc<Vec<ipnet::IpNet>>,
}

/// A form's fields, decoded (`application/x-www-form-urlencoded`).
#[derive(Debug, Clone, Default)]
pub struct Fields(pub Vec<(String, String)>);

impl Fields {
    pub fn parse(body: &[u8]) -> Self {
        Fields(url::form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
    }

    /// The first value of `name`, trimmed; `None` when missing or blank.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim()).filter(|v| !v.is_empty())
    }
}

/// The console's routes, each under `/ui`.
pub fn router(app: AppState) -> Router {
    let sessions = Sessions::new(app.pipeline.store.clone(), app.api_token.as_deref(), app.viewer_token.as_deref());
    let trusted_proxies = Arc::new(app.pipeline.config.server.trusted_proxy_nets());
    let console =
        Console { app, sessions: Arc::new(sessions), logins: Arc::new(LoginLimiter::default()), trusted_proxies };
    let private = Router::new()
        .route("/ui/", get(|| async { Redirect::to("/ui/incidents") }))
        .route("/ui/incidents", get(incidents::list))
        .route("/ui/incidents/{id}", get(incidents::show))
        .route("/ui/incidents/{id}/ack", post(incidents::acknowledge))
        .route("/ui/incidents/{id}/resolve", post(incidents::resolve))
        .route("/ui/runs", get(runs::list))
        .route("/ui/runs/{id}", get(runs::show))
        .route("/ui/runs/{id}/approve", post(runs::approve))
        .route("/ui/runs/{id}/deny", post(runs::deny))
        .route("/ui/approvals", get(runs::approvals))
        .route("/ui/watches", get(watches::list))
        .route("/ui/silences", get(silences::list).post(silences::create))
        .route("/ui/silences/{id}/expire", post(silences::expire))
        .route_layer(middleware::from_fn_with_state(console.clone(), authenticated));
    Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/login", get(login::form).post(login::submit))
        .route("/ui/logout", post(login::logout))
        .route("/ui/static/console.css", get(stylesheet))
        .route("/ui/static/console.js", get(script))
        .route("/ui/{*rest}", get(not_found).post(not_found))
        .merge(private)
        .layer(middleware::from_fn(security_headers))
        .with_state(console)
}

async fn not_found() -> Response {
    message(StatusCode::NOT_FOUND, None, "Not found", "There is no such page in the console.")
}

async fn stylesheet() -> Response {
    asset("text/css; charset=utf-8", include_str!("static/console.css"))
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", include_str!("static/console.js"))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "public, max-age=3600")], body).into_response()
}

/// The headers every console answer carries.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    r
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// Whether the browser reached us over HTTPS (a TLS-terminating proxy says so in
/// `X-Forwarded-Proto`): the cookies are then `Secure`.
pub fn over_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').next().is_some_and(|p| p.trim().eq_ignore_ascii_case("https")))
}

/// A `Set-Cookie` value for the console's path.
pub fn set_cookie(name: &str, value: &str, max_age_secs: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let v = format!("{name}={value}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{secure}");
    HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static("warden_session=; Path=/ui; Max-Age=0"))
}

/// The session of a request, if its cookie names a live one.
pub fn session_of(console: &Console, headers: &HeaderMap) -> Option<Session> {
    cookie(headers, SESSION_COOKIE).and_then(|id| console.sessions.get(id))
}

/// Every page but the login needs a session. A `GET` without one goes to the login form; a
/// `POST` must come from an operator's session, carry that session's CSRF token, and reach
/// the leader. The form's fields and the session are handed to the handler as extensions.
async fn authenticated(State(console): State<Console>, req: Request, next: Next) -> Response {
    let Some(session) = session_of(&console, req.headers()) else {
        if req.method() == Method::GET {
            return Redirect::to("/ui/login").into_response();
        }
        return message(
            StatusCode::UNAUTHORIZED,
            None,
            "Not logged in",
            "Your session has ended or was never started: log in again (nothing was changed).",
        );
    };
    if req.method() != Method::POST {
        let mut req = req;
        req.extensions_mut().insert(session);
        return next.run(req).await;
    }
    if !session.operator() {
        return message(
            StatusCode::FORBIDDEN,
            Some(&session),
            "Operators only",
            "You are logged in with the viewer token, which only reads. Approving, denying, \
             acknowledging, resolving and silencing need the operator token (server.api_token).",
        );
    }
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_FORM).await {
        Ok(b) => b,
        Err(_) => {
            return message(StatusCode::PAYLOAD_TOO_LARGE, Some(&session), "Form too large", "Nothing was changed.")
        }
    };
    let fields = Fields::parse(&bytes);
    let csrf_ok = fields.0.iter().find(|(k, _)| k == "csrf").is_some_and(|(_, v)| session::same(v, &session.csrf));
    if !csrf_ok {
        return message(
            StatusCode::FORBIDDEN,
            Some(&session),
            "Form refused",
            "The form did not carry this session's CSRF token (an old page, or a request from \
             another site). Reload the page and try again; nothing was changed.",
        );
    }
    if let Some(why) = crate::api::server::follower_refusal(&console.app) {
        return message(StatusCode::SERVICE_UNAVAILABLE, Some(&session), "Not the leader", &why);
    }
    let mut req = Request::from_parts(parts, Body::empty());
    req.extensions_mut().insert(session);
    req.extensions_mut().insert(fields);
    next.run(req).await
}

/// A path id (`/ui/runs/12`), or a page saying it is not one.
#[allow(clippy::result_large_err)]
pub fn parse_id(raw: &str, what: &str, session: &Session) -> Result<i64, Response> {
    raw.parse::<i64>().map_err(|_| {
        message(
            StatusCode::NOT_FOUND,
            Some(session),
            "Not found",
            &format!("`{}` is not {what} id", render::cut(raw, 40)),
        )
    })
}

/// The page for an error of the shared API calls (`status`, `text`).
pub fn failed(session: &Session, status: StatusCode, text: &str) -> Response {
    let title = match status {
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::CONFLICT => "Not possible now",
        StatusCode::BAD_REQUEST => "Check the form",
        StatusCode::SERVICE_UNAVAILABLE => "Unavailable",
        _ => "Error",
    };
    message(status, Some(session), title, text)
}

/// Notices after a successful form (`?ok=...`): fixed texts, never from the query itself.
pub fn notice(code: Option<&str>) -> Option<&'static str> {
    Some(match code? {
        "approved" => "Approved: the run goes on.",
        "denied" => "Denied: the run will not act.",
        "acknowledged" => "Acknowledged.",
        "resolved" => "Resolved.",
        "silenced" => "Silence created.",
        "expired" => "Silence ended.",
        _ => return None,
    })
}

#[cfg(test)]
mod tests;
