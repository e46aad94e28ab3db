//! HTTP server limits of `warden run`: connections that send their headers too slowly, sit
//! idle, or send a body that stalls are closed, and the connection limit holds while probes
//! keep a reserve. Raw TCP clients, so that the client does exactly what a slow or
//! malicious one would; deadlines are generous (several times the configured timeouts).

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use warden_tests::procs::Warden;
use warden_tests::{free_port, wait_until};

const TOKEN: &str = "limits-token";

fn config(dir: &Path, port: u16, limits: &str) -> String {
    format!(
        "store: {{ sqlite: {db} }}\nserver:\n  listen: \"127.0.0.1:{port}\"\n  api_token: {{ env: WARDEN_API_TOKEN }}\n  limits: {limits}\n",
        db = dir.join("warden.db").display()
    )
}

async fn start(dir: &Path, limits: &str) -> Result<(Warden, u16)> {
    let port = free_port()?;
    let warden = Warden::start(dir, &config(dir, port, limits), &[("WARDEN_API_TOKEN", TOKEN)], port, TOKEN).await?;
    Ok((warden, port))
}

/// How a connection ended while the client waited for the server.
#[derive(Debug, PartialEq)]
enum End {
    /// The server closed it (EOF or reset), after sending these bytes.
    Closed(Vec<u8>),
    /// Still open when the deadline passed.
    Open,
}

/// Read until the server closes the connection or `deadline` passes.
async fn read_until_closed(stream: &mut TcpStream, deadline: Duration) -> End {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let read_all = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    match tokio::time::timeout(deadline, read_all).await {
        Ok(()) => End::Closed(got),
        Err(_) => End::Open,
    }
}

/// Read one response (head and `Content-Length` body) from a kept-alive connection.
async fn read_response(stream: &mut TcpStream) -> Result<(u16, String)> {
    tokio::time::timeout(Duration::from_secs(20), read_one(stream)).await.context("no response within 20s")?
}

async fn read_one(stream: &mut TcpStream) -> Result<(u16, String)> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_string();
            let mut len = 0;
            for line in head.lines() {
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse::<usize>()?;
                }
            }
            if got.len() >= end + 4 + len {
                let status = head.split(' ').nth(1).context("status line")?.parse()?;
                return Ok((status, String::from_utf8_lossy(&got[end + 4..end + 4 + len]).to_string()));
            }
        }
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            bail!("closed after {:?}", String::from_utf8_lossy(&got));
        }
        got.extend_from_slice(&buf[..n]);
    }
}

async fn connect(port: u16) -> Result<TcpStream> {
    TcpStream::connect(("127.0.0.1", port)).await.context("connecting")
}

/// A kept-alive request on `stream`.
async fn get(stream: &mut TcpStream, path: &str, token: Option<&str>) -> Result<(u16, String)> {
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}\r\n").as_bytes()).await?;
    read_response(stream).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_header_connections_are_closed_within_the_header_timeout() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (warden, port) = start(dir.path(), "{ header_read_timeout: 2s, max_connections: 1000 }").await?;
    let mut conns = Vec::new();
    for _ in 0..200 {
        let mut s = connect(port).await?;
        // A request line and one header, then nothing: the head never ends.
        s.write_all(b"GET /api/v1/incidents HTTP/1.1\r\nHost: 127.0.0.1\r\n").await?;
        conns.push(s);
    }
    let ends = futures::future::join_all(conns.iter_mut().map(|s| read_until_closed(s, Duration::from_secs(60)))).await;
    let open = ends.iter().filter(|e| **e == End::Open).count();
    ensure!(open == 0, "{open} of 200 slow-header connections were still open after 60s (header_read_timeout: 2s)");
    // The server still answers.
    let mut s = connect(port).await?;
    assert_eq!(get(&mut s, "/healthz", None).await?.0, 200);
    drop(warden);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slow_body_connections_are_closed() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (warden, port) = start(dir.path(), "{ header_read_timeout: 2s, body_read_timeout: 2s }").await?;

    // Connected, nothing sent.
    let mut silent = connect(port).await?;
    // Kept alive after one request, then idle.
    let mut idle = connect(port).await?;
    assert_eq!(get(&mut idle, "/healthz", None).await?.0, 200);
    // A body announced as 1000 bytes that stops after one.
    let mut slow_body = connect(port).await?;
    slow_body
        .write_all(
            format!("POST /api/v1/alerts HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{")
                .as_bytes(),
        )
        .await?;

    for (name, s) in [("silent", &mut silent), ("idle keep-alive", &mut idle), ("slow body", &mut slow_body)] {
        match read_until_closed(s, Duration::from_secs(60)).await {
            End::Open => bail!("the {name} connection was still open after 60s (timeouts: 2s)"),
            End::Closed(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                ensure!(!text.starts_with("HTTP/1.1 2"), "the {name} connection got a success: {text}");
            }
        }
    }
    let mut s = connect(port).await?;
    assert_eq!(get(&mut s, "/healthz", None).await?.0, 200);
    drop(warden);
    Ok(())
}

/// A kept-alive connection whose request to `path` answered 200. Retried: a connection the
/// client just closed holds its slot until the server has seen it go.
async fn hold(port: u16, path: &str, token: Option<&str>) -> Result<TcpStream> {
    wait_until(Duration::from_secs(30), &format!("a kept-alive connection answering {path}"), async || {
        let mut s = connect(port).await?;
        let (status, body) = get(&mut s, path, token).await?;
        ensure!(status == 200, "{status} {body}");
        Ok(Some(s))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_limit_holds_and_probes_keep_a_reserve() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (warden, port) =
        start(dir.path(), "{ header_read_timeout: 60s, max_connections: 8, reserved_connections: 2 }").await?;

    // Six kept-alive API connections fill the general part.
    let mut general = Vec::new();
    for _ in 0..6 {
        general.push(hold(port, "/api/v1/incidents", Some(TOKEN)).await?);
    }
    // A seventh gets the reserve: the API is refused there, probes are answered.
    let mut refused = connect(port).await?;
    let (status, body) = get(&mut refused, "/api/v1/incidents", Some(TOKEN)).await?;
    ensure!(status == 503 && body.contains("connection limit"), "{status} {body}");
    drop(refused);
    let _reserve1 = hold(port, "/healthz", None).await?;
    let _reserve2 = hold(port, "/readyz", None).await?;
    // Everything is taken: the next connection is closed without an answer.
    let mut over = connect(port).await?;
    let _ = over.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await;
    match read_until_closed(&mut over, Duration::from_secs(30)).await {
        End::Closed(bytes) => {
            ensure!(bytes.is_empty(), "over the limit but answered: {}", String::from_utf8_lossy(&bytes))
        }
        End::Open => bail!("a connection over the limit was kept open"),
    }
    // A freed slot is usable again.
    drop(general.pop());
    let _again = hold(port, "/api/v1/incidents", Some(TOKEN)).await?;
    drop(warden);
    Ok(())
}
