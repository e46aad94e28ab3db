//! `/ui/login` (paste a token, get a session) and `/ui/logout`.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use serde_json::json;

use crate::api::console::render::{base, message, page};
use crate::api::console::session::{self, random_hex, LOGIN_TTL, SESSION_TTL};
use crate::api::console::{cookie, over_https, session_of, set_cookie, Console, Fields, LOGIN_COOKIE, SESSION_COOKIE};
use crate::api::server::role_for_token;

/// The longest name accepted at login.
const MAX_NAME: usize = 64;

fn disabled(console: &Console) -> bool {
    console.app.api_token.is_none() && console.app.viewer_token.is_none()
}

/// The form, with a fresh CSRF value in a short-lived cookie and in the form.
fn login_page(status: StatusCode, headers: &HeaderMap, error: Option<&str>, name: &str) -> Response {
    let nonce = random_hex();
    let mut ctx = base(None, "login");
    ctx.insert("csrf".into(), json!(nonce));
    ctx.insert("error".into(), json!(error));
    ctx.insert("name".into(), json!(name));
    let mut r = page(status, "login.html", ctx);
    r.headers_mut()
        .append(header::SET_COOKIE, set_cookie(LOGIN_COOKIE, &nonce, LOGIN_TTL.as_secs(), over_https(headers)));
    r
}

pub async fn form(State(console): State<Console>, headers: HeaderMap) -> Response {
    if disabled(&console) {
        return message(
            StatusCode::FORBIDDEN,
            None,
            "The console is disabled",
            "No token is configured: set server.api_token (and server.viewer_token for read-only access).",
        );
    }
    if session_of(&console, &headers).is_some() {
        return Redirect::to("/ui/incidents").into_response();
    }
    login_page(StatusCode::OK, &headers, None, "")
}

pub async fn submit(
    State(console): State<Console>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if disabled(&console) {
        return message(StatusCode::FORBIDDEN, None, "The console is disabled", "No token is configured.");
    }
    // Without the peer's address (in-process), every client shares one count.
    let peer = peer.map(|Extension(ConnectInfo(a))| a.ip()).unwrap_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED));
    let addr = session::client_addr(peer, &headers, &console.trusted_proxies);
    if let Some(wait) = console.logins.wait(addr) {
        let secs = wait.as_secs().max(1);
        let mut r = login_page(
            StatusCode::TOO_MANY_REQUESTS,
            &headers,
            Some(&format!("Too many failed logins from this address: try again in {secs} s.")),
            "",
        );
        if let Ok(v) = header::HeaderValue::from_str(&secs.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    let fields = Fields::parse(&body);
    let expected = cookie(&headers, LOGIN_COOKIE);
    let given = fields.0.iter().find(|(k, _)| k == "csrf").map(|(_, v)| v.as_str());
    if !matches!((expected, given), (Some(e), Some(g)) if session::same(e, g)) {
        return login_page(
            StatusCode::FORBIDDEN,
            &headers,
            Some("The form expired or came from another page: try again."),
            "",
        );
    }
    let name = fields.get("name").unwrap_or("");
    if name.chars().count() > MAX_NAME
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
    {
        return login_page(
            StatusCode::BAD_REQUEST,
            &headers,
            Some("The name may use letters, digits and . _ - @ (at most 64)."),
            "",
        );
    }
    let token = fields.get("token").unwrap_or("");
    let Some(role) = role_for_token(&console.app, token) else {
        console.logins.failed(addr);
        tracing::warn!(address = %addr, "console login refused: not a valid token");
        return login_page(StatusCode::UNAUTHORIZED, &headers, Some("That token is not valid here."), name);
    };
    console.logins.succeeded(addr);
    let name = if name.is_empty() { "operator".to_string() } else { name.to_string() };
    let name = if name == "operator" && role == crate::api::server::Role::Viewer { "viewer".into() } else { name };
    tracing::info!(name = %name, role = ?role, "console login");
    let Some((id, _)) = console.sessions.create(role, name, token) else {
        return message(
            StatusCode::SERVICE_UNAVAILABLE,
            None,
            "Login failed",
            "The session could not be stored (the store is unavailable): try again shortly.",
        );
    };
    let secure = over_https(&headers);
    let mut r = Redirect::to("/ui/incidents").into_response();
    r.headers_mut().append(header::SET_COOKIE, set_cookie(SESSION_COOKIE, &id, SESSION_TTL.as_secs(), secure));
    r.headers_mut().append(header::SET_COOKIE, set_cookie(LOGIN_COOKIE, "", 0, secure));
    r
}

/// Ends the session (its CSRF token is checked like any form's).
pub async fn logout(State(console): State<Console>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let fields = Fields::parse(&body);
    if let (Some(id), Some(s)) = (cookie(&headers, SESSION_COOKIE), session_of(&console, &headers)) {
        let given = fields.0.iter().find(|(k, _)| k == "csrf").map(|(_, v)| v.as_str()).unwrap_or("");
        if !session::same(given, &s.csrf) {
            return message(
                StatusCode::FORBIDDEN,
                Some(&s),
                "Form refused",
                "The form did not carry this session's CSRF token.",
            );
        }
        console.sessions.remove(id);
    }
    let mut r = Redirect::to("/ui/login").into_response();
    r.headers_mut().append(header::SET_COOKIE, set_cookie(SESSION_COOKIE, "", 0, over_https(&headers)));
    r
}
