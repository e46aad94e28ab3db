use std::io::Read;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use warden_connectors::smtp::{EmailMessage, SmtpConfig, SmtpSender, SmtpTls};
use warden_connectors::Error;

use crate::support::{closed_port, TestResult};

/// An aiosmtpd server storing messages in a maildir; killed on drop.
struct SmtpServer {
    child: Child,
    port: u16,
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SmtpServer {
    fn start(maildir: &Path) -> SmtpServer {
        let port = closed_port();
        let child = Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(maildir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start python3 for the SMTP test server (is python3 installed?): {e}"));
        let mut server = SmtpServer { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                let mut stderr = String::new();
                if let Some(mut pipe) = server.child.stderr.take() {
                    let _ = pipe.read_to_string(&mut stderr);
                }
                panic!(
                    "aiosmtpd exited with {status} before accepting connections \
                     (install it with `pip install aiosmtpd`): {stderr}"
                );
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return server;
            }
            assert!(Instant::now() < deadline, "aiosmtpd did not accept connections on 127.0.0.1:{port} within 20s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn config(port: u16) -> SmtpConfig {
    SmtpConfig {
        host: "127.0.0.1".into(),
        port,
        tls: SmtpTls::None,
        username: None,
        password: None,
        from: "Warden <warden@example.com>".into(),
        to: vec!["On Call <oncall@example.com>".into(), "sre@example.com".into()],
        timeout: Duration::from_secs(10),
    }
}

fn stored_messages(maildir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(maildir.join("new")) else {
        return Vec::new();
    };
    entries.filter_map(|e| e.ok()).filter_map(|e| std::fs::read_to_string(e.path()).ok()).collect()
}

#[tokio::test]
async fn sends_multipart_message_to_real_smtp_server() -> TestResult {
    let dir = tempfile::tempdir()?;
    let maildir = dir.path().join("maildir");
    for sub in ["tmp", "new", "cur"] {
        std::fs::create_dir_all(maildir.join(sub))?;
    }
    let server = SmtpServer::start(&maildir);

    let sender = SmtpSender::new(config(server.port))?;
    let msg = EmailMessage {
        subject: "CPU high on web-1".into(),
        text: "CPU usage is above 90% on web-1.".into(),
        html: "<p>CPU usage is <b>above 90%</b> on web-1.</p>".into(),
        message_id: "<outbox-42@warden>".into(),
    };
    sender.send(&msg).await?;

    let deadline = Instant::now() + Duration::from_secs(10);
    let mut stored = stored_messages(&maildir);
    while stored.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        stored = stored_messages(&maildir);
    }
    assert_eq!(stored.len(), 1, "expected one stored message");
    let raw = &stored[0];
    assert!(raw.contains("Subject: CPU high on web-1"), "{raw}");
    assert!(raw.contains("Message-ID: <outbox-42@warden>"), "{raw}");
    assert!(raw.contains("From: Warden <warden@example.com>"), "{raw}");
    assert!(raw.contains("oncall@example.com"), "{raw}");
    assert!(raw.contains("sre@example.com"), "{raw}");
    assert!(raw.contains("multipart/alternative"), "{raw}");
    assert!(raw.contains("Content-Type: text/plain"), "{raw}");
    assert!(raw.contains("Content-Type: text/html"), "{raw}");
    assert!(raw.contains("CPU usage is above 90% on web-1."), "{raw}");
    assert!(raw.contains("<b>above 90%</b>"), "{raw}");
    Ok(())
}

#[tokio::test]
async fn connection_refused_is_retryable() -> TestResult {
    let sender = SmtpSender::new(config(closed_port()))?;
    let msg = EmailMessage {
        subject: "s".into(),
        text: "t".into(),
        html: "<p>h</p>".into(),
        message_id: "<outbox-1@warden>".into(),
    };
    let err = sender.send(&msg).await.expect_err("nothing listens");
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert!(err.is_retryable());
    assert!(err.to_string().contains("smtp://127.0.0.1:"), "{err}");
    Ok(())
}
