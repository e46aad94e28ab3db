//! Sending notification e-mails over SMTP.
//!
//! E-mail is the fallback notification channel. Messages go out as
//! `multipart/alternative` (plain text and HTML) with a caller-chosen `Message-ID`,
//! so that a message re-sent by the outbox after an ambiguous failure can be
//! de-duplicated by the receiving side. SMTP failures are classified like the
//! HTTP connectors': 4xx replies and connection problems are retryable, 5xx replies
//! are not.
//!
//! Every message is made valid for SMTP before it is sent. `lettre` encodes non-ASCII
//! words of a header as RFC 2047 encoded-words and folds the header at spaces
//! (RFC 5322), but it cannot fold a long run without spaces — a label set such as
//! `pod=…,namespace=…` of 1.4 KB becomes one header line over SMTP's 998-octet limit,
//! which servers refuse (`500 Line too long`). So the subject is first made one clean
//! line (control characters such as CR/LF become spaces: no header injection from
//! labels) and cut to [`MAX_SUBJECT_CHARS`] with an ellipsis; the whole subject then
//! opens the body. Bodies need nothing: `lettre` picks quoted-printable or base64 for
//! long or non-ASCII lines.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::AsyncSmtpTransportBuilder;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tokio::sync::OnceCell;

use crate::http::error_chain;
use crate::{Error, Result, Secret};

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain text. Only for local relays and tests.
    None,
    /// Plain connection upgraded with STARTTLS, which is required to succeed.
    StartTls,
    /// TLS from the first byte (SMTPS, usually port 465).
    Tls,
}

/// Where and how to send e-mail.
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// `"Name <addr>"` or a bare address.
    pub from: String,
    /// Recipients, each `"Name <addr>"` or a bare address.
    pub to: Vec<String>,
    /// Limit for connecting and for each SMTP command.
    pub timeout: Duration,
}

/// One e-mail to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailMessage {
    pub subject: String,
    pub text: String,
    pub html: String,
    /// The `Message-ID` header, e.g. `<outbox-42@warden>`; angle brackets are
    /// added when missing.
    pub message_id: String,
}

/// The longest subject sent, in characters; a longer one is cut with `…` and given whole
/// at the top of the body.
pub const MAX_SUBJECT_CHARS: usize = 200;

/// `text` as one header-safe line: control characters (CR, LF, tab, ...) become spaces,
/// runs of whitespace one space, no leading or trailing space.
pub fn header_line(text: &str) -> String {
    text.split(|c: char| c.is_control() || c.is_whitespace()).filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ")
}

/// The subject to send and, when it had to be cut, the whole (cleaned) subject.
pub fn fit_subject(subject: &str) -> (String, Option<String>) {
    let clean = header_line(subject);
    match clean.char_indices().nth(MAX_SUBJECT_CHARS - 1) {
        None => (clean, None),
        Some((end, _)) => {
            let cut = format!("{}…", clean[..end].trim_end());
            (cut, Some(clean))
        }
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A cheap-to-clone SMTP sender. Each message has a connection of its own (no pool): a send
/// abandoned halfway (a timeout, a leader's lease running out) drops its connection with
/// it, so no later message inherits a session left mid-transaction (`503 nested MAIL
/// command`). Notification volumes make the extra handshake cheap.
#[derive(Clone)]
pub struct SmtpSender {
    inner: Arc<Inner>,
}

struct Inner {
    builder: AsyncSmtpTransportBuilder,
    // Built on first use (inside the runtime).
    transport: OnceCell<AsyncSmtpTransport<Tokio1Executor>>,
    from: Mailbox,
    to: Vec<Mailbox>,
    target: String,
    timeout: Duration,
}

impl fmt::Debug for SmtpSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpSender")
            .field("target", &self.inner.target)
            .field("from", &self.inner.from.to_string())
            .field("to", &self.inner.to.len())
            .finish()
    }
}

impl SmtpSender {
    /// Validates the configuration (host, addresses, credentials) and prepares the
    /// transport. No connection is made until the first [`SmtpSender::send`].
    pub fn new(cfg: SmtpConfig) -> Result<Self> {
        if cfg.host.trim().is_empty() {
            return Err(Error::Config("SMTP host is empty".into()));
        }
        if cfg.port == 0 {
            return Err(Error::Config("SMTP port must not be 0".into()));
        }
        if cfg.timeout.is_zero() {
            return Err(Error::Config("SMTP timeout must be greater than zero".into()));
        }
        let from = parse_mailbox(&cfg.from, "sender e-mail address")?;
        if cfg.to.is_empty() {
            return Err(Error::Config("no SMTP recipients configured".into()));
        }
        let to =
            cfg.to.iter().map(|addr| parse_mailbox(addr, "recipient e-mail address")).collect::<Result<Vec<_>>>()?;

        let target = format!("smtp://{}:{}", cfg.host, cfg.port);
        if matches!(cfg.tls, SmtpTls::StartTls | SmtpTls::Tls) {
            crate::install_crypto_provider();
        }
        let builder = match cfg.tls {
            SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&cfg.host),
            SmtpTls::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&cfg.host)
                .map_err(|e| tls_config_error(&target, &e))?,
            SmtpTls::Tls => {
                AsyncSmtpTransport::<Tokio1Executor>::relay(&cfg.host).map_err(|e| tls_config_error(&target, &e))?
            }
        };
        let mut builder = builder.port(cfg.port).timeout(Some(cfg.timeout));
        match (cfg.username, cfg.password) {
            (Some(user), Some(password)) => {
                builder = builder.credentials(Credentials::new(user, password.expose().to_string()));
            }
            (Some(user), None) => return Err(Error::Config(format!("SMTP username {user:?} is set but no password"))),
            (None, Some(_)) => return Err(Error::Config("SMTP password is set but no username".into())),
            (None, None) => {}
        }
        Ok(Self {
            inner: Arc::new(Inner { builder, transport: OnceCell::new(), from, to, target, timeout: cfg.timeout }),
        })
    }

    /// Sends `msg` to all configured recipients as `multipart/alternative`.
    pub async fn send(&self, msg: &EmailMessage) -> Result<()> {
        let email = self.build_message(msg)?;
        let inner = &self.inner;
        let transport = inner.transport.get_or_init(|| async { inner.builder.clone().build() }).await;
        tracing::debug!(target_server = %inner.target, message_id = %msg.message_id, "sending e-mail");
        transport.send(email).await.map(|_| ()).map_err(|e| map_smtp_error(&e, &inner.target, inner.timeout))
    }

    fn build_message(&self, msg: &EmailMessage) -> Result<Message> {
        let message_id = normalize_message_id(&msg.message_id)?;
        let (subject, whole) = fit_subject(&msg.subject);
        let (text, html) = match whole {
            None => (msg.text.clone(), msg.html.clone()),
            Some(whole) => (
                format!("Subject: {whole}\n\n{}", msg.text),
                format!("<p><b>Subject:</b> {}</p>\n{}", html_escape(&whole), msg.html),
            ),
        };
        let mut builder =
            Message::builder().from(self.inner.from.clone()).subject(subject).message_id(Some(message_id));
        for to in &self.inner.to {
            builder = builder.to(to.clone());
        }
        builder
            .multipart(MultiPart::alternative_plain_html(text, html))
            .map_err(|e| Error::InvalidInput(format!("cannot build e-mail: {e}")))
    }
}

/// Checks that `addr` is a mailbox (`Name <user@host>` or `user@host`) as sending will
/// parse it, so configuration checks and sending agree.
pub fn validate_mailbox(addr: &str) -> Result<()> {
    parse_mailbox(addr, "e-mail address").map(|_| ())
}

fn parse_mailbox(addr: &str, what: &str) -> Result<Mailbox> {
    addr.trim().parse::<Mailbox>().map_err(|e| Error::Config(format!("invalid {what} {addr:?}: {e}")))
}

fn normalize_message_id(id: &str) -> Result<String> {
    let id = id.trim();
    let bare = id.trim_start_matches('<').trim_end_matches('>');
    if bare.is_empty() || bare.chars().any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>') {
        return Err(Error::InvalidInput(format!("invalid Message-ID {id:?}")));
    }
    Ok(format!("<{bare}>"))
}

fn tls_config_error(target: &str, err: &lettre::transport::smtp::Error) -> Error {
    Error::Config(format!("cannot set up TLS for {target}: {}", error_chain(err)))
}

fn map_smtp_error(err: &lettre::transport::smtp::Error, target: &str, timeout: Duration) -> Error {
    let message = error_chain(err);
    if err.is_timeout() {
        return Error::Timeout { url: target.to_string(), after: Some(timeout) };
    }
    if err.is_transient() || err.is_permanent() {
        return Error::Smtp {
            code: err.status().map(u16::from),
            transient: err.is_transient(),
            message: format!("{target}: {message}"),
        };
    }
    if err.is_client() || err.is_response() {
        return Error::Smtp { code: None, transient: false, message: format!("{target}: {message}") };
    }
    // Connection, network and TLS failures: the server may be reachable later.
    let mut source: Option<&(dyn StdError + 'static)> = err.source();
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::TimedOut {
                return Error::Timeout { url: target.to_string(), after: Some(timeout) };
            }
        }
        source = e.source();
    }
    Error::Connect { url: target.to_string(), message }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> SmtpConfig {
        SmtpConfig {
            host: "127.0.0.1".into(),
            port: 2525,
            tls: SmtpTls::None,
            username: None,
            password: None,
            from: "Warden <warden@example.com>".into(),
            to: vec!["oncall@example.com".into()],
            timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn valid_config_builds_without_runtime() {
        let sender = SmtpSender::new(config()).expect("valid config");
        assert!(format!("{sender:?}").contains("smtp://127.0.0.1:2525"));
    }

    #[test]
    fn bad_addresses_are_named() {
        let mut cfg = config();
        cfg.to.push("not an address".into());
        let err = SmtpSender::new(cfg).expect_err("bad recipient");
        assert!(matches!(err, Error::Config(_)));
        assert!(err.to_string().contains("not an address"), "{err}");

        let mut cfg = config();
        cfg.from = "warden@@example".into();
        let err = SmtpSender::new(cfg).expect_err("bad sender");
        assert!(err.to_string().contains("warden@@example"), "{err}");

        let mut cfg = config();
        cfg.to.clear();
        assert!(SmtpSender::new(cfg).is_err());
    }

    #[test]
    fn validate_mailbox_accepts_both_forms() {
        assert!(validate_mailbox("Warden <warden@example.com>").is_ok());
        assert!(validate_mailbox("oncall@example.com").is_ok());
        let err = validate_mailbox("oncall.example.com").expect_err("no @");
        assert!(
            err.to_string().starts_with("invalid configuration: invalid e-mail address \"oncall.example.com\""),
            "{err}"
        );
    }

    #[test]
    fn credentials_must_be_complete() {
        let mut cfg = config();
        cfg.username = Some("warden".into());
        assert!(SmtpSender::new(cfg).is_err());
        let mut cfg = config();
        cfg.password = Some(Secret::new("pw".into()));
        let err = SmtpSender::new(cfg).expect_err("password without user");
        assert!(!err.to_string().contains("pw\""));
    }

    #[test]
    fn tls_modes_build() {
        for tls in [SmtpTls::StartTls, SmtpTls::Tls] {
            let mut cfg = config();
            cfg.host = "smtp.example.com".into();
            cfg.tls = tls;
            assert!(SmtpSender::new(cfg).is_ok(), "{tls:?}");
        }
    }

    #[test]
    fn message_ids_are_normalized() {
        assert_eq!(normalize_message_id("<outbox-42@warden>").expect("valid"), "<outbox-42@warden>");
        assert_eq!(normalize_message_id("outbox-42@warden").expect("valid"), "<outbox-42@warden>");
        assert!(normalize_message_id("").is_err());
        assert!(normalize_message_id("a b@c").is_err());
        assert!(normalize_message_id("a\r\nBcc: x@y").is_err());
    }

    /// The longest line of a formatted message, in octets, without CRLF.
    fn longest_line(raw: &[u8]) -> usize {
        raw.split(|b| *b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l).len()).max().unwrap_or(0)
    }

    #[test]
    fn long_and_hostile_subjects_become_valid_headers() {
        let sender = SmtpSender::new(config()).expect("valid config");
        let labels: String = (0..80).map(|i| format!("label_{i}=value-{i},")).collect();
        assert!(labels.len() > 1_400);
        for subject in [
            format!("[warden] OPENED warning w {labels}"),
            format!("[warden] OPENED {}", "ünïcödé ".repeat(200)),
            format!("[warden] OPENED {}", "ü".repeat(1_500)),
            "[warden] OPENED a\r\nBcc: victim@example.com\r\n\r\nbody".to_string(),
        ] {
            let msg = EmailMessage {
                subject: subject.clone(),
                text: "plain".into(),
                html: "<p>html</p>".into(),
                message_id: "<outbox-1@warden>".into(),
            };
            let raw = sender.build_message(&msg).expect("builds").formatted();
            assert!(longest_line(&raw) <= 998, "a line over 998 octets");
            let text = String::from_utf8_lossy(&raw);
            assert!(!text.contains("\nBcc:"), "header injected: {text}");
            let (sent, whole) = fit_subject(&subject);
            assert!(sent.chars().count() <= MAX_SUBJECT_CHARS, "{sent}");
            assert!(!sent.contains('\n') && !sent.contains('\r'));
            if let Some(whole) = whole {
                assert!(sent.ends_with('…'));
                // The whole subject is kept at the top of the text body.
                assert!(whole.chars().count() > MAX_SUBJECT_CHARS);
            }
        }
        assert_eq!(fit_subject("  a\tb\r\n c  "), ("a b c".to_string(), None));
        let (cut, whole) = fit_subject(&"x".repeat(500));
        assert_eq!(cut.chars().count(), MAX_SUBJECT_CHARS);
        assert_eq!(whole.as_deref(), Some("x".repeat(500).as_str()));
    }

    #[test]
    fn message_has_both_parts_and_id() {
        let sender = SmtpSender::new(config()).expect("valid config");
        let msg = EmailMessage {
            subject: "CPU high".into(),
            text: "plain body".into(),
            html: "<p>html body</p>".into(),
            message_id: "<outbox-1@warden>".into(),
        };
        let raw = sender.build_message(&msg).expect("builds").formatted();
        let raw = String::from_utf8_lossy(&raw);
        assert!(raw.contains("Message-ID: <outbox-1@warden>"), "{raw}");
        assert!(raw.contains("multipart/alternative"));
        assert!(raw.contains("text/plain"));
        assert!(raw.contains("text/html"));
    }
}
