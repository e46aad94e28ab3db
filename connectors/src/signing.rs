//! HMAC-SHA256 signatures: the ones Warden puts on its own webhook calls and the ones it
//! checks on Slack's requests.
//!
//! Both sides follow the same rule: the signed bytes are a version or timestamp prefix
//! followed by the raw body exactly as sent, the MAC is hex-encoded, and a received
//! signature is compared in constant time ([`subtle`]) so that the time a comparison
//! takes tells an attacker nothing about how many characters matched.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Lower-case hex HMAC-SHA256 of the concatenation of `parts` under `key`.
pub(crate) fn hmac_sha256_hex(key: &[u8], parts: &[&[u8]]) -> String {
    // HMAC accepts keys of any length (longer ones are hashed first), so this does not
    // fail; were it to, the empty signature matches nothing.
    let Ok(mut mac) = HmacSha256::new_from_slice(key) else {
        return String::new();
    };
    for p in parts {
        mac.update(p);
    }
    hex::encode(mac.finalize().into_bytes())
}

/// Whether two signatures are equal, in time independent of where they differ.
pub(crate) fn equal(a: &str, b: &str) -> bool {
    !a.is_empty() && a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_4231_case_2() {
        // RFC 4231, test case 2: key "Jefe", data "what do ya want for nothing?".
        let mac = hmac_sha256_hex(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(mac, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }

    #[test]
    fn equality() {
        assert!(equal("v0=abc", "v0=abc"));
        assert!(!equal("v0=abc", "v0=abd"));
        assert!(!equal("v0=abc", "v0=ab"));
    }
}
