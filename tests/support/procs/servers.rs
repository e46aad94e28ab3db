//! The real servers the end-to-end tests run: Prometheus (scraping an OpenMetrics target
//! the test serves), Alertmanager, and an SMTP server (aiosmtpd) whose messages are read back.

use super::*;

/// One backfilled series: `metric{labels}` with `(unix seconds, value)` samples.
#[derive(Clone, Debug)]
pub struct PromSeries {
    pub metric: String,
    pub labels: Vec<(String, String)>,
    pub samples: Vec<(i64, f64)>,
}

impl PromSeries {
    pub fn new(metric: &str, labels: &[(&str, &str)]) -> Self {
        Self {
            metric: metric.to_string(),
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            samples: Vec::new(),
        }
    }
}

pub(super) fn escape_label_value(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

pub(super) fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else {
        format!("{v}")
    }
}

/// OpenMetrics text for `series` (every family typed `gauge`), ending in `# EOF`.
pub fn openmetrics_text(series: &[PromSeries]) -> String {
    let mut families: Vec<&str> = series.iter().map(|s| s.metric.as_str()).collect();
    families.sort();
    families.dedup();
    let mut out = String::new();
    for family in families {
        out.push_str(&format!("# HELP {family} Backfilled test data.\n# TYPE {family} gauge\n"));
        for s in series.iter().filter(|s| s.metric == family) {
            let labels = s
                .labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape_label_value(v)))
                .collect::<Vec<_>>()
                .join(",");
            let mut samples = s.samples.clone();
            samples.sort_by_key(|(t, _)| *t);
            for (t, v) in samples {
                out.push_str(&format!("{family}{{{labels}}} {} {t}\n", format_value(v)));
            }
        }
    }
    out.push_str("# EOF\n");
    out
}

/// A Prometheus server over backfilled data, with no scrape targets.
pub struct Prometheus {
    pub(super) dir: PathBuf,
    pub(super) data_dir: PathBuf,
    pub(super) config_path: PathBuf,
    pub(super) port: u16,
    pub(super) child: Option<ChildProcess>,
}

impl Prometheus {
    /// Backfills `series` into `<dir>/prometheus-data` and starts Prometheus on a free port.
    pub async fn start(dir: &Path, series: &[PromSeries]) -> Result<Self> {
        require_program("prometheus")?;
        let promtool = require_program("promtool")?;
        let data_dir = dir.join("prometheus-data");
        std::fs::create_dir_all(&data_dir)?;
        let om_path = dir.join("backfill.om.txt");
        std::fs::write(&om_path, openmetrics_text(series))?;
        let output = Command::new(&promtool)
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(&om_path)
            .arg(&data_dir)
            .output()
            .context("running promtool")?;
        if !output.status.success() {
            bail!(
                "promtool tsdb create-blocks-from openmetrics failed ({}):\n{}\n{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let config_path = dir.join("prometheus.yml");
        std::fs::write(&config_path, "global:\n  scrape_interval: 15s\nscrape_configs: []\n")?;
        let mut prometheus = Self { dir: dir.to_path_buf(), data_dir, config_path, port: free_port()?, child: None };
        prometheus.start_again().await?;
        Ok(prometheus)
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(ChildProcess::is_running)
    }

    /// Stops the server (SIGTERM, so the data dir is left clean).
    pub async fn stop(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.terminate(Duration::from_secs(15)).await?;
        }
        Ok(())
    }

    /// Starts the server (again) on the same port and data dir; waits for `/-/ready`.
    pub async fn start_again(&mut self) -> Result<()> {
        if self.is_running() {
            return Ok(());
        }
        let program = require_program("prometheus")?;
        let args = vec![
            format!("--config.file={}", self.config_path.display()),
            format!("--storage.tsdb.path={}", self.data_dir.display()),
            format!("--web.listen-address=127.0.0.1:{}", self.port),
            "--storage.tsdb.retention.time=30d".to_string(),
            "--log.level=warn".to_string(),
        ];
        let mut child = ChildProcess::spawn("prometheus", &program, &args, &[], &self.dir)?;
        child.wait_http_ready(&format!("{}/-/ready", self.url()), Duration::from_secs(30)).await?;
        self.child = Some(child);
        Ok(())
    }

    /// Stops and starts again.
    pub async fn restart(&mut self) -> Result<()> {
        self.stop().await?;
        self.start_again().await
    }

    /// `GET /api/v1/query_range` (times in unix seconds); the `data.result` array.
    pub async fn query_range(&self, query: &str, start: i64, end: i64, step_s: u64) -> Result<Vec<Value>> {
        let response: Value = http_client()
            .get(format!("{}/api/v1/query_range", self.url()))
            .query(&[
                ("query", query.to_string()),
                ("start", start.to_string()),
                ("end", end.to_string()),
                ("step", step_s.to_string()),
            ])
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        response
            .pointer("/data/result")
            .and_then(Value::as_array)
            .cloned()
            .ok_or_else(|| anyhow!("unexpected query_range answer: {response}"))
    }
}

// ---------------------------------------------------------------------------
// Alertmanager

/// An Alertmanager (no clustering) routing every alert to one webhook.
pub struct Alertmanager {
    pub(super) port: u16,
    pub(super) child: ChildProcess,
}

impl Alertmanager {
    /// Starts Alertmanager with a single receiver posting to `webhook_url`
    /// with `Authorization: Bearer <bearer_token>`, group_wait/interval 1s,
    /// and resolved notifications on.
    pub async fn start(dir: &Path, webhook_url: &str, bearer_token: &str) -> Result<Self> {
        let program = require_program("prometheus-alertmanager")?;
        let port = free_port()?;
        let storage = dir.join("alertmanager-data");
        std::fs::create_dir_all(&storage)?;
        let config_path = dir.join("alertmanager.yml");
        let config = format!(
            "route:\n\
             \x20 receiver: warden\n\
             \x20 group_by: ['alertname']\n\
             \x20 group_wait: 1s\n\
             \x20 group_interval: 1s\n\
             \x20 repeat_interval: 1h\n\
             receivers:\n\
             \x20 - name: warden\n\
             \x20   webhook_configs:\n\
             \x20     - url: '{webhook_url}'\n\
             \x20       send_resolved: true\n\
             \x20       http_config:\n\
             \x20         authorization:\n\
             \x20           type: Bearer\n\
             \x20           credentials: '{bearer_token}'\n"
        );
        std::fs::write(&config_path, config)?;
        let args = vec![
            format!("--config.file={}", config_path.display()),
            format!("--storage.path={}", storage.display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            "--cluster.listen-address=".to_string(),
            "--log.level=debug".to_string(),
        ];
        let mut child = ChildProcess::spawn("alertmanager", &program, &args, &[], dir)?;
        child.wait_http_ready(&format!("http://127.0.0.1:{port}/-/ready"), Duration::from_secs(30)).await?;
        Ok(Self { port, child })
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn process(&mut self) -> &mut ChildProcess {
        &mut self.child
    }

    /// `POST /api/v2/alerts` with a JSON list of `{labels, annotations, startsAt, endsAt?}`.
    pub async fn post_alerts(&self, alerts: &Value) -> Result<()> {
        let response = http_client().post(format!("{}/api/v2/alerts", self.url())).json(alerts).send().await?;
        let status = response.status();
        if !status.is_success() {
            bail!("Alertmanager refused the alerts: {status} {}", response.text().await.unwrap_or_default());
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// SMTP

/// One message stored by [`SmtpServer`].
#[derive(Clone, Debug)]
pub struct Email {
    pub subject: String,
    /// Message-ID with its angle brackets, e.g. `<warden-outbox-1@warden>`.
    pub message_id: Option<String>,
    pub from: String,
    pub to: Vec<String>,
    /// Decoded text body.
    pub body: String,
    pub raw: String,
    pub file: PathBuf,
}

/// An `aiosmtpd` server storing messages in a Maildir; its port is reserved
/// by [`SmtpServer::reserve`] and it listens only after [`SmtpServer::start`].
pub struct SmtpServer {
    pub(super) dir: PathBuf,
    pub(super) maildir: PathBuf,
    pub(super) port: u16,
    pub(super) child: Option<ChildProcess>,
    pub(super) reject_subjects: Option<String>,
}

/// An error unless `python3 -m aiosmtpd` can run.
pub fn require_aiosmtpd() -> Result<PathBuf> {
    let python = require_program("python3")?;
    let ok = Command::new(&python)
        .args(["-c", "import aiosmtpd"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        bail!("the Python package aiosmtpd is not installed: {INSTALL_HINT}");
    }
    Ok(python)
}

impl SmtpServer {
    /// Chooses the port (nothing listens yet).
    pub fn reserve(dir: &Path) -> Result<Self> {
        require_aiosmtpd()?;
        Ok(Self {
            dir: dir.to_path_buf(),
            maildir: dir.join("maildir"),
            port: free_port()?,
            child: None,
            reject_subjects: None,
        })
    }

    /// Before [`SmtpServer::start`]: refuse every message whose subject contains
    /// `marker` with a permanent `554` after DATA (`tests/support/smtp_handlers.py`).
    pub fn reject_subjects_containing(&mut self, marker: &str) {
        self.reject_subjects = Some(marker.to_string());
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn maildir(&self) -> &Path {
        &self.maildir
    }

    /// Starts listening on the reserved port; waits for the SMTP greeting.
    pub async fn start(&mut self) -> Result<()> {
        let python = require_aiosmtpd()?;
        let mut args = vec![
            "-m".to_string(),
            "aiosmtpd".to_string(),
            "-n".to_string(),
            "-l".to_string(),
            format!("127.0.0.1:{}", self.port),
            "-c".to_string(),
            "aiosmtpd.handlers.Mailbox".to_string(),
            self.maildir.display().to_string(),
        ];
        let support = Path::new(env!("CARGO_MANIFEST_DIR")).join("support");
        let support = support.display().to_string();
        let mut envs = vec![("PYTHONUNBUFFERED", "1")];
        if let Some(marker) = &self.reject_subjects {
            args[6] = "smtp_handlers.RejectingMailbox".to_string();
            envs.push(("PYTHONPATH", support.as_str()));
            envs.push(("WARDEN_TEST_SMTP_REJECT", marker.as_str()));
        }
        let mut child = ChildProcess::spawn("smtp", &python, &args, &envs, &self.dir)?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            child.ensure_running().context("aiosmtpd did not start")?;
            if smtp_greets(self.port).await {
                break;
            }
            if Instant::now() >= deadline {
                bail!("aiosmtpd did not greet on port {} within 20s\n{}", self.port, child.logs_tail(40));
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        self.child = Some(child);
        Ok(())
    }

    pub async fn stop(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.terminate(Duration::from_secs(10)).await?;
        }
        Ok(())
    }

    /// Every stored message, in delivery order.
    pub fn messages(&self) -> Result<Vec<Email>> {
        let mut files = Vec::new();
        for sub in ["new", "cur"] {
            let dir = self.maildir.join(sub);
            if let Ok(entries) = std::fs::read_dir(&dir) {
                for entry in entries {
                    let entry = entry?;
                    let modified = entry.metadata()?.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                    files.push((modified, entry.file_name(), entry.path()));
                }
            }
        }
        files.sort();
        files.into_iter().map(|(_, _, path)| parse_email(&path)).collect()
    }

    /// Stored messages whose subject starts with `prefix`.
    pub fn messages_with_subject_prefix(&self, prefix: &str) -> Result<Vec<Email>> {
        Ok(self.messages()?.into_iter().filter(|m| m.subject.starts_with(prefix)).collect())
    }
}

pub(super) async fn smtp_greets(port: u16) -> bool {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let Ok(Ok(stream)) =
        tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(("127.0.0.1", port))).await
    else {
        return false;
    };
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    let greeted = matches!(
        tokio::time::timeout(Duration::from_secs(2), reader.read_line(&mut line)).await,
        Ok(Ok(n)) if n > 0
    ) && line.starts_with("220");
    let _ = reader.get_mut().write_all(b"QUIT\r\n").await;
    greeted
}

/// Parses one stored message (MIME decoded).
pub fn parse_email(path: &Path) -> Result<Email> {
    use mail_parser::MessageParser;
    let raw = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let message =
        MessageParser::default().parse(&raw).ok_or_else(|| anyhow!("{} is not a parseable message", path.display()))?;
    let addresses = |a: Option<&mail_parser::Address>| -> Vec<String> {
        a.map(|a| a.iter().filter_map(|x| x.address().map(str::to_string)).collect()).unwrap_or_default()
    };
    let mut body = String::new();
    let mut i = 0;
    while let Some(text) = message.body_text(i) {
        if !body.is_empty() {
            body.push('\n');
        }
        body.push_str(&text);
        i += 1;
    }
    Ok(Email {
        subject: message.subject().unwrap_or_default().to_string(),
        message_id: message.message_id().map(|id| format!("<{id}>")),
        from: addresses(message.from()).join(", "),
        to: addresses(message.to()),
        body,
        raw: String::from_utf8_lossy(&raw).into_owned(),
        file: path.to_path_buf(),
    })
}
