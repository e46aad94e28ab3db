//! Console sessions: a random id in an HttpOnly cookie, mapped to the role the pasted token
//! carried, the person's name, a CSRF token and an expiry. The cookie never holds the token
//! itself. Sessions live in the store ([`crate::store::sessions`]), keyed by a SHA-256 of
//! the id: every replica sharing the store knows them, and a restart keeps them. Each
//! remembers a SHA-256 of the token it was opened with, so rotating a token ends the
//! sessions it opened. Failed logins are counted per client address ([`LoginLimiter`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::api::server::Role;
use crate::store::sessions::StoredSession;
use crate::store::Store;

/// How long a login lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);
/// How long the login form's CSRF cookie lasts.
pub const LOGIN_TTL: Duration = Duration::from_secs(15 * 60);
/// At most this many live sessions; the one ending first makes room for a new one.
const MAX_SESSIONS: u32 = 10_000;
/// Failed logins from one address within [`FAILED_LOGIN_WINDOW`] before it must wait.
pub const MAX_FAILED_LOGINS: u32 = 10;
/// The window failed logins are counted in, and how long a limited address waits.
pub const FAILED_LOGIN_WINDOW: Duration = Duration::from_secs(300);
/// Addresses tracked at most (beyond, the oldest windows are forgotten).
const MAX_TRACKED_ADDRESSES: usize = 10_000;

/// One logged-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    pub role: Role,
    /// Who, as given at login (recorded as `console/NAME` in the audit trail).
    pub name: String,
    /// The value every form of this session must send back (`csrf` field).
    pub csrf: String,
    pub expires: DateTime<Utc>,
}

impl Session {
    pub fn operator(&self) -> bool {
        self.role == Role::Operator
    }

    /// The actor written to the audit trail and incident events.
    pub fn actor(&self) -> String {
        format!("console/{}", self.name)
    }
}

/// 32 random bytes from the thread's CSPRNG, hex.
pub fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Constant-time equality of two strings (lengths are not secret).
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Operator => "operator",
        Role::Viewer => "viewer",
    }
}

/// The sessions, in the store.
pub struct Sessions {
    store: Arc<Store>,
    /// SHA-256 of the operator's and the viewer's token as configured now.
    operator_token: Option<String>,
    viewer_token: Option<String>,
}

impl Sessions {
    pub fn new(store: Arc<Store>, operator_token: Option<&str>, viewer_token: Option<&str>) -> Self {
        Self { store, operator_token: operator_token.map(sha256_hex), viewer_token: viewer_token.map(sha256_hex) }
    }

    /// A new session for `role`, opened with `token`; returns its id (the cookie's value)
    /// and the session. `None`: the store could not keep it (logged).
    pub fn create(&self, role: Role, name: String, token: &str) -> Option<(String, Session)> {
        let id = random_hex();
        let now = Utc::now();
        let expires = now + chrono::Duration::from_std(SESSION_TTL).unwrap_or(chrono::Duration::hours(8));
        let session = Session { role, name, csrf: random_hex(), expires };
        let stored = StoredSession {
            role: role_name(role).into(),
            name: session.name.clone(),
            csrf: session.csrf.clone(),
            token_hash: sha256_hex(token),
            expires_at: expires,
        };
        match self.store.insert_console_session(&sha256_hex(&id), &stored, MAX_SESSIONS, now) {
            Ok(()) => Some((id, session)),
            Err(e) => {
                tracing::error!(error = %e, "storing a console session");
                None
            }
        }
    }

    /// The live session with this id, if the token it was opened with is still the
    /// role's token. A store that cannot be read knows no session (logged).
    pub fn get(&self, id: &str) -> Option<Session> {
        let stored = match self.store.console_session(&sha256_hex(id), Utc::now()) {
            Ok(s) => s?,
            Err(e) => {
                tracing::error!(error = %e, "reading a console session");
                return None;
            }
        };
        let (role, current) = match stored.role.as_str() {
            "operator" => (Role::Operator, &self.operator_token),
            "viewer" => (Role::Viewer, &self.viewer_token),
            _ => return None,
        };
        if !current.as_deref().is_some_and(|t| same(t, &stored.token_hash)) {
            return None;
        }
        Some(Session { role, name: stored.name, csrf: stored.csrf, expires: stored.expires_at })
    }

    pub fn remove(&self, id: &str) {
        if let Err(e) = self.store.delete_console_session(&sha256_hex(id)) {
            tracing::error!(error = %e, "ending a console session");
        }
    }
}

/// The client a request comes from: the peer, or when the peer is one of the `trusted`
/// proxies, the nearest address in `X-Forwarded-For` that is not (read from the right, as
/// each proxy appends the address it saw); an entry that is not an address stops the walk at
/// the last trusted hop.
pub fn client_addr(peer: IpAddr, headers: &axum::http::HeaderMap, trusted: &[ipnet::IpNet]) -> IpAddr {
    let is_trusted = |a: &IpAddr| trusted.iter().any(|n| n.contains(a));
    if !is_trusted(&peer) {
        return peer;
    }
    let forwarded: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for hop in forwarded.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(a) if is_trusted(&a) => client = a,
            Ok(a) => return a,
            Err(_) => break,
        }
    }
    client
}

/// Failed logins per client address: after [`MAX_FAILED_LOGINS`] within
/// [`FAILED_LOGIN_WINDOW`], the address waits out the window (in this replica's memory;
/// it slows guessing a weak token). Behind a proxy listed in `server.trusted_proxies` the
/// address is the client's from `X-Forwarded-For` ([`client_addr`]), else the proxy's.
#[derive(Default)]
pub struct LoginLimiter {
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl LoginLimiter {
    /// How long `addr` must still wait, if it is limited.
    pub fn wait(&self, addr: IpAddr) -> Option<Duration> {
        let map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let (count, since) = map.get(&addr)?;
        let left = FAILED_LOGIN_WINDOW.checked_sub(since.elapsed())?;
        (*count >= MAX_FAILED_LOGINS).then_some(left)
    }

    /// Count a failed login from `addr`.
    pub fn failed(&self, addr: IpAddr) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_TRACKED_ADDRESSES {
            map.retain(|_, (_, since)| since.elapsed() < FAILED_LOGIN_WINDOW);
        }
        let entry = map.entry(addr).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= FAILED_LOGIN_WINDOW {
            *entry = (0, Instant::now());
        }
        entry.0 += 1;
    }

    /// A successful login clears the address's count.
    pub fn succeeded(&self, addr: IpAddr) {
        self.failures.lock().unwrap_or_else(|p| p.into_inner()).remove(&addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_random_kept_in_the_store_and_end_with_their_token() {
        let store = Arc::new(Store::open_in_memory().expect("store"));
        let sessions = Sessions::new(store.clone(), Some("op-token"), Some("view-token"));
        let (a, sa) = sessions.create(Role::Viewer, "ann".into(), "view-token").expect("session");
        let (b, _) = sessions.create(Role::Operator, "bob".into(), "op-token").expect("session");
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert_ne!(sa.csrf, a, "the CSRF token is not the session id");
        assert_eq!(sessions.get(&a).map(|s| s.role), Some(Role::Viewer));
        assert_eq!(sessions.get(&b).map(|s| s.actor()), Some("console/bob".into()));
        assert!(sessions.get("nope").is_none());
        // Another replica (or a restart) with the same store and tokens knows them.
        let other = Sessions::new(store.clone(), Some("op-token"), Some("view-token"));
        assert_eq!(other.get(&b).map(|s| s.csrf), sessions.get(&b).map(|s| s.csrf));
        // A rotated operator token ends the operator's sessions, not the viewer's.
        let rotated = Sessions::new(store.clone(), Some("new-op-token"), Some("view-token"));
        assert!(rotated.get(&b).is_none() && rotated.get(&a).is_some());
        sessions.remove(&a);
        assert!(sessions.get(&a).is_none() && other.get(&a).is_none());
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }

    #[test]
    fn the_client_is_read_from_trusted_proxies_only() {
        let trusted = vec![crate::config::parse_net("10.0.0.0/8").expect("net")];
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        let with = |xff: &[&str]| {
            let mut h = axum::http::HeaderMap::new();
            for v in xff {
                h.append("x-forwarded-for", v.parse().expect("header"));
            }
            h
        };
        // An untrusted peer's header is not believed.
        assert_eq!(client_addr(ip("192.0.2.7"), &with(&["203.0.113.9"]), &trusted), ip("192.0.2.7"));
        // Behind the ingress (10.1.1.1): the client it saw, past other trusted hops.
        let h = with(&["198.51.100.1, 203.0.113.9", "10.2.2.2"]);
        assert_eq!(client_addr(ip("10.1.1.1"), &h, &trusted), ip("203.0.113.9"), "the rightmost untrusted");
        assert_eq!(client_addr(ip("10.1.1.1"), &with(&[]), &trusted), ip("10.1.1.1"));
        assert_eq!(client_addr(ip("10.1.1.1"), &with(&["garbage, 10.3.3.3"]), &trusted), ip("10.3.3.3"));
        assert_eq!(client_addr(ip("10.1.1.1"), &with(&["203.0.113.9"]), &[]), ip("10.1.1.1"), "none trusted");
        assert!(crate::config::parse_net("10.0.0.0/33").is_err() && crate::config::parse_net("fd00::1").is_ok());
    }

    #[test]
    fn an_address_with_too_many_failed_logins_waits() {
        let limiter = LoginLimiter::default();
        let (one, two): (IpAddr, IpAddr) = ("127.0.0.1".parse().expect("ip"), "127.0.0.2".parse().expect("ip"));
        for _ in 0..MAX_FAILED_LOGINS - 1 {
            limiter.failed(one);
        }
        assert!(limiter.wait(one).is_none(), "under the limit");
        limiter.failed(one);
        let left = limiter.wait(one).expect("limited");
        assert!(left <= FAILED_LOGIN_WINDOW && left > FAILED_LOGIN_WINDOW - Duration::from_secs(60));
        assert!(limiter.wait(two).is_none(), "per address");
        limiter.succeeded(one);
        assert!(limiter.wait(one).is_none());
    }
}
