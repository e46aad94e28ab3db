//! Serving the HTTP API with limits, so that a slow or idle client cannot hold the server.
//!
//! `axum::serve` has no timeouts: a client that sends its headers a byte at a time, a body
//! that never finishes, or sockets opened and left idle stay open indefinitely, and only the
//! file-descriptor limit bounds how many. Each connection is therefore served here with
//! hyper's own HTTP/1 connection builder and tower-http's body timeout:
//!
//! * `header_read_timeout`: a request's head must arrive within this time. hyper starts the
//!   timer whenever the connection waits for a request, so it is also the idle (keep-alive)
//!   timeout between two requests.
//! * `body_read_timeout`: a request body that sends nothing for this long fails the request
//!   and the connection is closed (tower-http `RequestBodyTimeoutLayer`). The size limit of
//!   bodies is axum's default of 2 MiB.
//! * `max_connections`: connections above it are closed as soon as they are accepted. The
//!   last `reserved_connections` of them answer only `/healthz`, `/readyz` and `/metrics`,
//!   so that probes and scrapers still get in while the API is full.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::timeout::RequestBodyTimeoutLayer;

use crate::config::ServerLimits;

/// Paths a connection from the reserve may ask for.
const PROBE_PATHS: &[&str] = &["/healthz", "/readyz", "/metrics"];

/// Serve `app` on `listener` until `shutdown` is cancelled; open connections then finish
/// the request they are serving.
pub async fn serve(listener: TcpListener, app: Router, limits: ServerLimits, shutdown: CancellationToken) {
    let reserved = limits.reserved_connections.min(limits.max_connections);
    let general = Arc::new(Semaphore::new(limits.max_connections - reserved));
    let reserve = Arc::new(Semaphore::new(reserved));
    let probes = app.clone().layer(middleware::from_fn(probes_only));
    let tracker = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(s) => s,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little instead of spinning.
                    tracing::warn!(error = %e, "accepting an HTTP connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (permit, router) = match general.clone().try_acquire_owned() {
            Ok(p) => (p, app.clone()),
            Err(_) => match reserve.clone().try_acquire_owned() {
                Ok(p) => (p, probes.clone()),
                Err(_) => {
                    tracing::debug!(max = limits.max_connections, "connection limit reached: connection closed");
                    drop(stream);
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(
            tower::ServiceBuilder::new()
                .layer(RequestBodyTimeoutLayer::new(limits.body_read_timeout.get()))
                // The peer's address, for handlers that count per client (console logins).
                .map_request(
                    move |mut req: axum::http::Request<tower_http::timeout::TimeoutBody<hyper::body::Incoming>>| {
                        req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                        req
                    },
                )
                .service(router),
        );
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout.get());
        let token = shutdown.clone();
        tracker.spawn(async move {
            let _permit = permit;
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "HTTP connection ended");
                    }
                }
                _ = token.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.as_mut().await;
                }
            }
        });
    }
    tracker.close();
    tracker.wait().await;
}

/// A connection from the reserve: probes are answered, the API is not.
async fn probes_only(req: Request, next: Next) -> Response {
    if PROBE_PATHS.contains(&req.uri().path()) {
        return next.run(req).await;
    }
    let mut r = (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(serde_json::json!({"error": "connection limit reached (server.limits.max_connections)"})),
    )
        .into_response();
    r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}
