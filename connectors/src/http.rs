//! Shared construction of reqwest clients and mapping of their errors.
//!
//! Prometheus, Slack and the other notification receivers all speak HTTP(S). Building
//! the client (timeout, extra CA certificates, the "skip verification" escape hatch,
//! authentication), turning reqwest errors into [`Error`] values that name the target
//! without leaking credentials, and sorting a receiver's answer into delivered,
//! retryable or permanent ([`answer`]) is the same work for all, so it lives here once.

use std::error::Error as StdError;
use std::time::Duration;

use reqwest::header::HeaderValue;
use url::Url;

use crate::{Error, HttpAuth, Result, TlsOptions};

const USER_AGENT: &str = concat!("warden/", env!("CARGO_PKG_VERSION"));

/// Builds a reqwest client with an overall request `timeout` and the given TLS options.
pub(crate) fn build_client(timeout: Duration, tls: &TlsOptions) -> Result<reqwest::Client> {
    crate::install_crypto_provider();
    if timeout.is_zero() {
        return Err(Error::Config("HTTP timeout must be greater than zero".into()));
    }
    let mut builder = reqwest::Client::builder().user_agent(USER_AGENT).timeout(timeout).connect_timeout(timeout);
    if let Some(path) = &tls.ca_file {
        let pem =
            std::fs::read(path).map_err(|e| Error::Config(format!("cannot read CA file {}: {e}", path.display())))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| Error::Config(format!("CA file {} is not valid PEM: {}", path.display(), error_chain(&e))))?;
        if certs.is_empty() {
            return Err(Error::Config(format!("CA file {} contains no certificates", path.display())));
        }
        builder = builder.tls_certs_merge(certs);
    }
    if tls.insecure_skip_verify {
        tracing::warn!("TLS certificate verification is disabled for an HTTP client");
        builder = builder.tls_danger_accept_invalid_certs(true);
    }
    builder.build().map_err(|e| Error::Config(format!("cannot build HTTP client: {}", error_chain(&e))))
}

/// Checks that credentials can be sent as HTTP headers, so a bad token is reported
/// when the client is built rather than on every request.
pub(crate) fn validate_auth(auth: Option<&HttpAuth>) -> Result<()> {
    match auth {
        None => Ok(()),
        Some(HttpAuth::Bearer(token)) => {
            if token.expose().is_empty() {
                return Err(Error::Config("bearer token is empty".into()));
            }
            HeaderValue::from_str(&format!("Bearer {}", token.expose()))
                .map(|_| ())
                .map_err(|_| Error::Config("bearer token contains characters not allowed in an HTTP header".into()))
        }
        Some(HttpAuth::Basic { username, .. }) => {
            if username.contains(':') {
                return Err(Error::Config(format!("basic auth username {username:?} must not contain ':'")));
            }
            Ok(())
        }
    }
}

/// Adds the configured credentials to a request.
pub(crate) fn apply_auth(req: reqwest::RequestBuilder, auth: Option<&HttpAuth>) -> reqwest::RequestBuilder {
    match auth {
        None => req,
        Some(HttpAuth::Bearer(token)) => req.bearer_auth(token.expose()),
        Some(HttpAuth::Basic { username, password }) => req.basic_auth(username, Some(password.expose())),
    }
}

/// A URL fit for error messages and logs: no user info, query or fragment.
pub(crate) fn display_url(url: &Url) -> String {
    let mut shown = url.clone();
    // These setters only fail for URLs that cannot carry credentials at all.
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

/// Only the scheme, host and port of a URL, for targets whose path is itself a
/// secret (Slack webhook URLs).
pub(crate) fn display_origin(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{}://{host}:{port}/***", url.scheme()),
        (Some(host), None) => format!("{}://{host}/***", url.scheme()),
        _ => format!("{}://***", url.scheme()),
    }
}

/// Maps a reqwest error to [`Error`], naming `target` (already redacted) instead of
/// the request URL, which may carry secrets.
pub(crate) fn map_reqwest_error(err: reqwest::Error, target: &str, timeout: Duration) -> Error {
    let err = err.without_url();
    if err.is_timeout() {
        Error::Timeout { url: target.to_string(), after: Some(timeout) }
    } else if err.is_connect() {
        Error::Connect { url: target.to_string(), message: error_chain(&err) }
    } else {
        Error::Http { url: target.to_string(), status: err.status().map(|s| s.as_u16()), message: error_chain(&err) }
    }
}

/// Reads a response body, failing once it grows beyond `limit` bytes.
pub(crate) async fn read_body(
    mut resp: reqwest::Response,
    limit: usize,
    target: &str,
    timeout: Duration,
) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| map_reqwest_error(e, target, timeout))? {
        if body.len() + chunk.len() > limit {
            return Err(Error::Decode {
                url: target.to_string(),
                message: format!("response body exceeds {limit} bytes"),
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The error and all its sources, joined with `": "`, skipping sources whose text
/// the previous message already contains.
pub(crate) fn error_chain(err: &(dyn StdError + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !text.is_empty() && !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

/// `Retry-After` as delta-seconds or an HTTP date (a date in the past is zero).
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let delta = when.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(delta.to_std().unwrap_or(Duration::ZERO))
}

/// Longest part of a refusal body kept in an error.
pub(crate) const MAX_REFUSAL_CHARS: usize = 512;

/// A receiver's answer, sorted the way every notification receiver is: a 2xx gives the
/// body; 429 gives [`Error::RateLimited`] with `Retry-After`; 408 and 5xx give
/// [`Error::Http`] (retryable); any other status gives [`Error::Rejected`] with the body
/// (permanent). `target` is the redacted name used in errors.
pub(crate) async fn answer(
    resp: reqwest::Response,
    limit: usize,
    target: &str,
    timeout: Duration,
) -> Result<(u16, Vec<u8>)> {
    let status = resp.status();
    let code = status.as_u16();
    let wait = retry_after(resp.headers());
    let body = match read_body(resp, limit, target, timeout).await {
        Ok(b) => b,
        // A refusal whose body could not be read is still a refusal.
        Err(e) if status.is_success() => return Err(e),
        Err(_) => Vec::new(),
    };
    if status.is_success() {
        return Ok((code, body));
    }
    let text = truncate_chars(String::from_utf8_lossy(&body).trim(), MAX_REFUSAL_CHARS);
    Err(if code == 429 {
        Error::RateLimited { retry_after: wait }
    } else if code == 408 || status.is_server_error() {
        let message =
            if text.is_empty() { status.canonical_reason().unwrap_or("unexpected status").to_string() } else { text };
        Error::Http { url: target.to_string(), status: Some(code), message }
    } else {
        Error::Rejected { status: code, body: text }
    })
}

/// Checks a receiver URL from the configuration: http or https with a host. The error
/// never repeats the URL (it may carry a key in its path or query).
pub(crate) fn receiver_url(what: &str, url: &str) -> Result<Url> {
    let parsed = Url::parse(url).map_err(|e| Error::Config(format!("{what} URL is not a valid URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(Error::Config(format!(
            "{what} URL must be an http(s) URL with a host, got {}",
            display_origin(&parsed)
        )));
    }
    Ok(parsed)
}

/// At most `max` characters of `text`, with an ellipsis when something was cut.
/// A JSON decoding failure in words: truncated JSON, invalid JSON or an unexpected shape,
/// with the JSON path where it happened.
pub(crate) fn describe_json_error(e: serde_path_to_error::Error<serde_json::Error>) -> String {
    let path = e.path().to_string();
    let inner = e.into_inner();
    let location = if path == "." || path.is_empty() { String::new() } else { format!(" at {path}") };
    let what = if inner.is_eof() {
        "truncated JSON"
    } else if inner.is_syntax() {
        "invalid JSON"
    } else {
        "unexpected JSON shape"
    };
    format!("{what}{location}: {inner}")
}

pub(crate) fn truncate_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some((idx, _)) => format!("{}…", &text[..idx]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
        let headers = |value: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(RETRY_AFTER, HeaderValue::from_static(value));
            h
        };
        assert_eq!(retry_after(&headers("30")), Some(Duration::from_secs(30)));
        assert_eq!(retry_after(&headers("Wed, 21 Oct 2015 07:28:00 GMT")), Some(Duration::ZERO));
        assert_eq!(retry_after(&headers("soon")), None);
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }

    #[test]
    fn display_url_strips_credentials_and_query() {
        let url = Url::parse("https://user:pw@prom.example:9090/prom/api?token=abc#frag").expect("static URL parses");
        assert_eq!(display_url(&url), "https://prom.example:9090/prom/api");
    }

    #[test]
    fn display_origin_hides_path() {
        let url = Url::parse("https://hooks.slack.com/services/T0/B0/XYZ").expect("static URL");
        assert_eq!(display_origin(&url), "https://hooks.slack.com/***");
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate_chars("héllo", 2), "hé…");
        assert_eq!(truncate_chars("abc", 3), "abc");
        assert_eq!(truncate_chars("", 3), "");
    }

    #[test]
    fn validate_auth_rejects_bad_tokens() {
        let bad = HttpAuth::Bearer(crate::Secret::new("line\nbreak".into()));
        let err = validate_auth(Some(&bad)).expect_err("newline is not a header char");
        assert!(!err.to_string().contains("line"));
        let empty = HttpAuth::Bearer(crate::Secret::new(String::new()));
        assert!(validate_auth(Some(&empty)).is_err());
        let good = HttpAuth::Bearer(crate::Secret::new("abc.def".into()));
        assert!(validate_auth(Some(&good)).is_ok());
    }

    #[test]
    fn missing_ca_file_names_the_path() {
        let tls = TlsOptions { ca_file: Some("/nonexistent/warden-ca.pem".into()), insecure_skip_verify: false };
        let err = build_client(Duration::from_secs(1), &tls).expect_err("missing file");
        assert!(err.to_string().contains("warden-ca.pem"), "{err}");
    }
}
