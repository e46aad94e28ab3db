//! Console sessions: a random id in an HttpOnly cookie, mapped here to the role the pasted
//! token carried, the person's name, a CSRF token and an expiry. The cookie never holds the
//! token itself; the map is keyed by a SHA-256 of the id and lives as long as the process.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::api::server::Role;

/// How long a login lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);
/// How long the login form's CSRF cookie lasts.
pub const LOGIN_TTL: Duration = Duration::from_secs(15 * 60);
/// At most this many live sessions; the oldest is dropped for a new one.
const MAX_SESSIONS: usize = 10_000;

/// One logged-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    pub role: Role,
    /// Who, as given at login (recorded as `console/NAME` in the audit trail).
    pub name: String,
    /// The value every form of this session must send back (`csrf` field).
    pub csrf: String,
    pub expires: Instant,
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

fn key(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

/// The live sessions.
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<[u8; 32], Session>>,
}

impl Sessions {
    /// A new session for `role`; returns its id (the cookie's value) and the session.
    pub fn create(&self, role: Role, name: String) -> (String, Session) {
        let id = random_hex();
        let session = Session { role, name, csrf: random_hex(), expires: Instant::now() + SESSION_TTL };
        if let Ok(mut map) = self.map.lock() {
            let now = Instant::now();
            map.retain(|_, s| s.expires > now);
            if map.len() >= MAX_SESSIONS {
                if let Some(oldest) = map.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| *k) {
                    map.remove(&oldest);
                }
            }
            map.insert(key(&id), session.clone());
        }
        (id, session)
    }

    /// The live session with this id.
    pub fn get(&self, id: &str) -> Option<Session> {
        let map = self.map.lock().ok()?;
        map.get(&key(id)).filter(|s| s.expires > Instant::now()).cloned()
    }

    pub fn remove(&self, id: &str) {
        if let Ok(mut map) = self.map.lock() {
            map.remove(&key(id));
        }
    }

    #[cfg(test)]
    pub fn expire_all(&self) {
        if let Ok(mut map) = self.map.lock() {
            for s in map.values_mut() {
                s.expires = Instant::now();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_random_keyed_by_hash_and_expire() {
        let sessions = Sessions::default();
        let (a, sa) = sessions.create(Role::Viewer, "ann".into());
        let (b, _) = sessions.create(Role::Operator, "bob".into());
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert_ne!(sa.csrf, a, "the CSRF token is not the session id");
        assert_eq!(sessions.get(&a).map(|s| s.role), Some(Role::Viewer));
        assert_eq!(sessions.get(&b).map(|s| s.actor()), Some("console/bob".into()));
        assert!(sessions.get("nope").is_none());
        sessions.remove(&a);
        assert!(sessions.get(&a).is_none());
        sessions.expire_all();
        assert!(sessions.get(&b).is_none(), "an expired session is refused");
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }
}
