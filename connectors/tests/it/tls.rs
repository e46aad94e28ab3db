use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsAcceptor;
use warden_connectors::prometheus::{PrometheusClient, PrometheusConfig};
use warden_connectors::{Error, TlsOptions};

use crate::support::TestResult;

const BODY: &str = r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"job":"tls"},"values":[[1700000000,"4"]]}]}}"#;

/// Starts an HTTPS server with a fresh self-signed certificate for 127.0.0.1 and
/// returns its address and the certificate as PEM.
async fn start_tls_server() -> Result<(std::net::SocketAddr, String), Box<dyn std::error::Error + Send + Sync>> {
    warden_connectors::install_crypto_provider();
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])?;
    let cert_pem = certified.cert.pem();
    let cert_der: CertificateDer<'static> = certified.cert.der().clone();
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![cert_der], key_der)?;
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // Handshakes rejected by the client end here; that is expected.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{BODY}",
                    BODY.len()
                );
                let _ = tls.write_all(response.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    Ok((addr, cert_pem))
}

async fn query(addr: std::net::SocketAddr, tls: TlsOptions) -> Result<usize, Error> {
    let prom = PrometheusClient::new(PrometheusConfig {
        url: format!("https://{addr}").parse().expect("test URL"),
        auth: None,
        timeout: Duration::from_secs(5),
        tls,
    })?;
    let start = Utc.timestamp_opt(1_700_000_000, 0).single().expect("valid time");
    let result = prom.query_range("up", start, start + chrono::Duration::minutes(1), Duration::from_secs(15)).await?;
    Ok(result.series.len())
}

#[tokio::test]
async fn self_signed_server_is_rejected_without_ca() -> TestResult {
    let (addr, _) = start_tls_server().await?;
    let err = query(addr, TlsOptions::default()).await.expect_err("untrusted cert");
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert!(err.to_string().contains("certificate"), "{err}");
    Ok(())
}

#[tokio::test]
async fn ca_file_trusts_the_server() -> TestResult {
    let (addr, pem) = start_tls_server().await?;
    let dir = tempfile::tempdir()?;
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, pem)?;
    let tls = TlsOptions { ca_file: Some(ca), insecure_skip_verify: false };
    assert_eq!(query(addr, tls).await?, 1);
    Ok(())
}

#[tokio::test]
async fn insecure_skip_verify_accepts_any_cert() -> TestResult {
    let (addr, _) = start_tls_server().await?;
    let tls = TlsOptions { ca_file: None, insecure_skip_verify: true };
    assert_eq!(query(addr, tls).await?, 1);
    Ok(())
}

#[test]
fn invalid_ca_file_is_a_config_error() -> TestResult {
    let dir = tempfile::tempdir()?;
    let ca = dir.path().join("garbage.pem");
    std::fs::write(&ca, "not a certificate")?;
    let err = PrometheusClient::new(PrometheusConfig {
        url: "https://127.0.0.1:1".parse()?,
        auth: None,
        timeout: Duration::from_secs(1),
        tls: TlsOptions { ca_file: Some(ca), insecure_skip_verify: false },
    })
    .expect_err("no certificate in file");
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    assert!(err.to_string().contains("garbage.pem"), "{err}");
    Ok(())
}
