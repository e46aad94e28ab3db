//! The live tail: a WebSocket on `/loki/api/v1/tail` that reconnects with backoff and resumes
//! from the latest delivered timestamp, dropping the replayed entries it already delivered, and
//! the rustls configuration of that WebSocket (see the module docs of [`super`]).

use super::*;

pub(super) type WsStream = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Where a tail resumes: the latest timestamp delivered and the entries delivered at it.
#[derive(Debug, Default)]
pub(super) struct Resume {
    pub(super) ts: Option<i64>,
    pub(super) keys: HashSet<EntryKey>,
}

impl Resume {
    /// Whether `e` is new; records it as delivered when it is.
    pub(super) fn admit(&mut self, e: &LogEntry) -> bool {
        match self.ts {
            Some(ts) if e.timestamp_ns < ts => true,
            Some(ts) if e.timestamp_ns == ts => self.keys.insert(EntryKey::of(e)),
            _ => {
                self.ts = Some(e.timestamp_ns);
                self.keys.clear();
                self.keys.insert(EntryKey::of(e));
                true
            }
        }
    }
}

/// A live tail; see the [module documentation](self) for its guarantees.
///
/// Call [`LokiTail::next`] in a loop, or turn it into a stream with
/// [`LokiTail::into_stream`]. Dropping it closes the connection.
pub struct LokiTail {
    pub(super) client: LokiClient,
    pub(super) url: Url,
    pub(super) shown: String,
    pub(super) query: String,
    pub(super) options: TailOptions,
    pub(super) cancel: CancellationToken,
    pub(super) start_ns: i64,
    pub(super) resume: Resume,
    pub(super) conn: Option<WsStream>,
    pub(super) pending: VecDeque<TailEvent>,
    /// Consecutive failures since something was last received.
    pub(super) failures: u32,
    pub(super) retry_delay: Option<Duration>,
    pub(super) connections: u32,
    /// When the current connection last received anything.
    pub(super) last_heard: Instant,
    pub(super) finished: bool,
}

impl fmt::Debug for LokiTail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LokiTail")
            .field("url", &self.shown)
            .field("query", &self.query)
            .field("resume_ns", &self.resume.ts)
            .field("connected", &self.conn.is_some())
            .field("connections", &self.connections)
            .finish()
    }
}

pub(super) enum Received {
    Message(Option<std::result::Result<Message, tungstenite::Error>>),
    Quiet,
    Cancelled,
}

impl LokiTail {
    /// The next event; `None` once the tail is cancelled or has ended with an error.
    ///
    /// Retryable failures are reported as [`TailEvent::Reconnecting`] and handled
    /// here; a non-retryable failure (or exhausting
    /// [`TailOptions::max_consecutive_failures`]) is returned as `Some(Err(_))`,
    /// after which the tail is over.
    ///
    /// Cancel-safe: dropping the returned future (in a `select!`) loses no entry;
    /// received entries wait in the tail until a later call returns them.
    pub async fn next(&mut self) -> Option<Result<TailEvent>> {
        loop {
            if self.cancel.is_cancelled() {
                self.finish().await;
                return None;
            }
            if let Some(event) = self.pending.pop_front() {
                return Some(Ok(event));
            }
            if self.finished {
                return None;
            }
            if self.conn.is_none() {
                if let Some(delay) = self.retry_delay.take() {
                    tokio::select! {
                        _ = self.cancel.cancelled() => continue,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
                let start_ns = self.resume.ts.unwrap_or(self.start_ns);
                let connected = tokio::select! {
                    _ = self.cancel.cancelled() => continue,
                    r = self.connect(start_ns) => r,
                };
                match connected {
                    Ok(ws) => {
                        self.conn = Some(ws);
                        self.last_heard = Instant::now();
                        self.pending.push_back(TailEvent::Connected { start_ns, reconnect: self.connections > 0 });
                        self.connections += 1;
                    }
                    Err(e) => {
                        if let Some(fatal) = self.fail(e) {
                            return Some(Err(fatal));
                        }
                    }
                }
                continue;
            }
            if let Some(fatal) = self.read_once().await {
                return Some(Err(fatal));
            }
        }
    }

    /// Turns the tail into a [`futures::Stream`] of the events [`LokiTail::next`] yields.
    pub fn into_stream(self) -> impl futures::Stream<Item = Result<TailEvent>> + Send {
        futures::stream::unfold(self, |mut tail| async move { tail.next().await.map(|item| (item, tail)) })
    }

    /// The timestamp a reconnection would resume from (the latest delivered), if any.
    pub fn resume_point_ns(&self) -> Option<i64> {
        self.resume.ts
    }

    /// How many connections were established so far.
    pub fn connections(&self) -> u32 {
        self.connections
    }

    /// Closes the connection politely and ends the tail.
    pub(super) async fn finish(&mut self) {
        self.finished = true;
        self.pending.clear();
        if let Some(mut ws) = self.conn.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
        }
    }

    /// Waits for one message (or the ping interval) and handles it. Returns a
    /// fatal error when the tail must end.
    pub(super) async fn read_once(&mut self) -> Option<Error> {
        let ping_every = self.options.idle_timeout / 3;
        let received = {
            // No connection: nothing to read, and nothing fatal.
            let ws = self.conn.as_mut()?;
            tokio::select! {
                _ = self.cancel.cancelled() => Received::Cancelled,
                r = tokio::time::timeout(ping_every, ws.next()) => match r {
                    Ok(m) => Received::Message(m),
                    Err(_) => Received::Quiet,
                },
            }
        };
        match received {
            Received::Cancelled => None,
            Received::Quiet => self.on_quiet().await,
            Received::Message(None) => self.fail(Error::Http {
                url: self.shown.clone(),
                status: None,
                message: "the tail connection ended without a close frame".into(),
            }),
            Received::Message(Some(Err(e))) => {
                let err = map_ws_error(e, &self.shown);
                self.fail(err)
            }
            Received::Message(Some(Ok(msg))) => {
                self.failures = 0;
                self.last_heard = Instant::now();
                self.on_message(msg)
            }
        }
    }
}

impl LokiTail {
    /// Nothing arrived for a ping interval: declare the connection dead after
    /// `idle_timeout`, otherwise ping it.
    pub(super) async fn on_quiet(&mut self) -> Option<Error> {
        let idle = self.last_heard.elapsed();
        if idle >= self.options.idle_timeout {
            return self.fail(Error::Timeout { url: self.shown.clone(), after: Some(idle) });
        }
        let ws = self.conn.as_mut()?;
        let ping = ws.send(Message::Ping(Default::default()));
        match tokio::time::timeout(self.options.idle_timeout, ping).await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => {
                let err = map_ws_error(e, &self.shown);
                self.fail(err)
            }
            Err(_) => self.fail(Error::Timeout { url: self.shown.clone(), after: Some(self.options.idle_timeout) }),
        }
    }

    pub(super) fn on_message(&mut self, msg: Message) -> Option<Error> {
        let text = match &msg {
            Message::Text(t) => t.as_bytes(),
            Message::Binary(b) => b.as_ref(),
            // tungstenite answers pings itself; pongs only prove liveness.
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => return None,
            Message::Close(frame) => {
                let message = match frame {
                    Some(f) if !f.reason.is_empty() => format!(
                        "Loki closed the tail ({}): {}",
                        u16::from(f.code),
                        http::truncate_chars(f.reason.as_str(), MESSAGE_CHARS)
                    ),
                    Some(f) => format!("Loki closed the tail ({})", u16::from(f.code)),
                    None => "Loki closed the tail".to_string(),
                };
                return self.fail(Error::Http { url: self.shown.clone(), status: None, message });
            }
        };
        let frame = match parse_tail_frame(text, &self.shown) {
            Ok(frame) => frame,
            Err(e) => return self.fail(e),
        };
        if !frame.dropped.is_empty() {
            tracing::warn!(
                url = %self.shown,
                dropped = frame.dropped.len(),
                "Loki dropped entries from the tail"
            );
            self.pending.push_back(TailEvent::Dropped(frame.dropped));
        }
        for e in frame.entries {
            if self.resume.admit(&e) {
                self.pending.push_back(TailEvent::Entry(e));
            }
        }
        None
    }

    /// Records a failure: schedules a reconnection for a retryable one, or ends
    /// the tail and returns the error.
    pub(super) fn fail(&mut self, error: Error) -> Option<Error> {
        self.conn = None;
        if !error.is_retryable() {
            self.finished = true;
            return Some(error);
        }
        self.failures = self.failures.saturating_add(1);
        if self.options.max_consecutive_failures.is_some_and(|max| self.failures > max) {
            self.finished = true;
            return Some(error);
        }
        let mut delay = backoff_delay(self.options.backoff_initial, self.options.backoff_max, self.failures);
        if let Some(asked) = error.retry_after() {
            delay = delay.max(asked);
        }
        tracing::warn!(url = %self.shown, attempt = self.failures, retry_in = ?delay, "Loki tail disconnected: {error}");
        self.retry_delay = Some(delay);
        self.pending.push_back(TailEvent::Reconnecting { error, attempt: self.failures, retry_in: delay });
        None
    }

    /// Opens the WebSocket asking for entries from `start_ns` on.
    pub(super) async fn connect(&self, start_ns: i64) -> Result<WsStream> {
        let mut url = self.url.clone();
        url.query_pairs_mut()
            .append_pair("query", &self.query)
            .append_pair("start", &start_ns.to_string())
            .append_pair("limit", &self.options.limit.to_string())
            .append_pair("delay_for", &self.options.delay_for.as_secs().to_string());
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|e| Error::Config(format!("cannot build the tail request for {}: {e}", self.shown)))?;
        for (name, value) in &self.client.request_headers()? {
            request.headers_mut().insert(name.clone(), value.clone());
        }
        let connector = match &self.client.ws_tls {
            Some(cfg) => tokio_tungstenite::Connector::Rustls(cfg.clone()),
            None => tokio_tungstenite::Connector::Plain,
        };
        let config =
            WebSocketConfig::default().max_message_size(Some(MAX_FRAME_BYTES)).max_frame_size(Some(MAX_FRAME_BYTES));
        tracing::debug!(url = %self.shown, query = %self.query, start = start_ns, "opening Loki tail");
        let handshake = tokio_tungstenite::connect_async_tls_with_config(request, Some(config), true, Some(connector));
        match tokio::time::timeout(self.client.timeout, handshake).await {
            Err(_) => Err(Error::Timeout { url: self.shown.clone(), after: Some(self.client.timeout) }),
            Ok(Err(e)) => Err(map_ws_error(e, &self.shown)),
            Ok(Ok((ws, _response))) => Ok(ws),
        }
    }
}

/// `initial * 2^(attempt-1)`, capped at `max`, with up to 50 % jitter subtracted.
pub(super) fn backoff_delay(initial: Duration, max: Duration, attempt: u32) -> Duration {
    let exp = attempt.saturating_sub(1).min(20);
    let base = initial.saturating_mul(1u32 << exp).min(max);
    // A random value without a dependency: std's hasher keys are randomly seeded.
    let random = std::collections::hash_map::RandomState::new().hash_one(attempt);
    let fraction = (random % 1000) as f64 / 2000.0; // 0 to 0.5
    base.mul_f64(1.0 - fraction)
}

/// Maps a WebSocket error (handshake or stream) to [`Error`].
pub(super) fn map_ws_error(err: tungstenite::Error, target: &str) -> Error {
    use tungstenite::Error as W;
    match err {
        W::Http(resp) => {
            let status = resp.status().as_u16();
            let retry_after = crate::http::retry_after(resp.headers());
            let body = resp.body().as_deref().unwrap_or_default();
            if (200..300).contains(&status) {
                Error::Http {
                    url: target.to_string(),
                    status: Some(status),
                    message: "the server answered without switching to WebSocket".into(),
                }
            } else {
                status_error(status, retry_after, body, target)
            }
        }
        W::Io(e) => Error::Connect { url: target.to_string(), message: http::error_chain(&e) },
        W::Tls(e) => {
            Error::Connect { url: target.to_string(), message: format!("TLS error: {}", http::error_chain(&e)) }
        }
        W::Url(e) => Error::Config(format!("invalid tail URL {target}: {e}")),
        W::Capacity(e) => Error::Decode { url: target.to_string(), message: format!("tail message too large: {e}") },
        W::Utf8(e) => Error::Decode { url: target.to_string(), message: format!("tail message is not UTF-8: {e}") },
        other => Error::Http {
            url: target.to_string(),
            status: None,
            message: format!("WebSocket error: {}", http::error_chain(&other)),
        },
    }
}

#[derive(Deserialize)]
pub(super) struct RawTailFrame {
    #[serde(default)]
    pub(super) streams: Option<Vec<RawStream>>,
    #[serde(default)]
    pub(super) dropped_entries: Option<Vec<RawDropped>>,
}

#[derive(Deserialize)]
pub(super) struct RawDropped {
    pub(super) timestamp: NsTimestamp,
    #[serde(default)]
    pub(super) labels: Labels,
}

/// A decoded tail frame: entries in time order, dropped entries as sent.
#[derive(Debug)]
pub(super) struct TailFrame {
    pub(super) entries: Vec<LogEntry>,
    pub(super) dropped: Vec<DroppedEntry>,
}

pub(super) fn parse_tail_frame(text: &[u8], target: &str) -> Result<TailFrame> {
    let raw: RawTailFrame = decode(text)
        .map_err(|message| Error::Decode { url: target.to_string(), message: format!("tail frame: {message}") })?;
    let mut entries = flatten_streams(raw.streams.unwrap_or_default());
    entries.sort_by(|a, b| {
        a.timestamp_ns.cmp(&b.timestamp_ns).then_with(|| a.labels.cmp(&b.labels)).then_with(|| a.line.cmp(&b.line))
    });
    let dropped = raw
        .dropped_entries
        .unwrap_or_default()
        .into_iter()
        .map(|d| DroppedEntry { timestamp_ns: d.timestamp.0, labels: d.labels })
        .collect();
    Ok(TailFrame { entries, dropped })
}

// ---------------------------------------------------------------------------
// TLS of the tail

/// The rustls configuration for `wss://`: the same trust as the HTTP client
/// (platform roots plus the CA file, via rustls-platform-verifier), or no
/// certificate verification at all when asked.
pub(super) fn ws_tls_config(tls: &TlsOptions) -> Result<Arc<rustls::ClientConfig>> {
    crate::install_crypto_provider();
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("cannot configure TLS for the Loki tail: {e}")))?;
    let verifier: Arc<dyn rustls::client::danger::ServerCertVerifier> = if tls.insecure_skip_verify {
        Arc::new(NoCertificateVerification(provider))
    } else {
        let mut extra = Vec::new();
        if let Some(path) = &tls.ca_file {
            use rustls::pki_types::pem::PemObject;
            use rustls::pki_types::CertificateDer;
            let pem = std::fs::read(path)
                .map_err(|e| Error::Config(format!("cannot read CA file {}: {e}", path.display())))?;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                extra.push(
                    cert.map_err(|e| Error::Config(format!("CA file {} is not valid PEM: {e}", path.display())))?,
                );
            }
            if extra.is_empty() {
                return Err(Error::Config(format!("CA file {} contains no certificates", path.display())));
            }
        }
        Arc::new(
            rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider)
                .map_err(|e| Error::Config(format!("cannot load trusted certificates: {e}")))?,
        )
    };
    let config = builder.dangerous().with_custom_certificate_verifier(verifier).with_no_client_auth();
    Ok(Arc::new(config))
}

/// Accepts any server certificate (but still checks handshake signatures).
#[derive(Debug)]
pub(super) struct NoCertificateVerification(pub(super) Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoCertificateVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
