//! Real servers run as child processes on free loopback ports.
//!
//! * [`Prometheus`]: backfills series with `promtool tsdb create-blocks-from
//!   openmetrics`, then serves them; can be stopped and started again on the
//!   same data dir and port.
//! * [`Alertmanager`]: routes every alert to a webhook with a bearer token.
//! * [`SmtpServer`]: `aiosmtpd` storing mail in a Maildir; its port is chosen
//!   up front so that it can be started later.
//! * [`Warden`]: the `warden` binary built by cargo, driven through its CLI
//!   and HTTP API.
//!
//! Every child writes stdout and stderr to files in the test's directory, is
//! killed when its handle is dropped, and start-up waits for readiness with a
//! bounded timeout whose error includes the tail of the child's stderr. A
//! missing program is an error that says to run `tests/run.sh`.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

/// Hint appended to every "program missing" error.
pub const INSTALL_HINT: &str = "run tests/run.sh (it installs the test dependencies and builds warden)";

// ---------------------------------------------------------------------------
// Generic helpers

/// Polls `f` every 250 ms until it returns `Ok(Some(value))` or `timeout`
/// passes. `Ok(None)` and `Err(_)` mean "not yet"; the last error is part of
/// the timeout error, which names `what`.
pub async fn wait_until<T, F>(timeout: Duration, what: &str, mut f: F) -> Result<T>
where
    F: AsyncFnMut() -> Result<Option<T>>,
{
    let deadline = Instant::now() + timeout;
    let mut last_error: Option<anyhow::Error> = None;
    loop {
        match f().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(e) => last_error = Some(e),
        }
        if Instant::now() >= deadline {
            return Err(match last_error {
                Some(e) => {
                    anyhow!("timed out after {timeout:?} waiting for {what} (last error: {e:#})")
                }
                None => anyhow!("timed out after {timeout:?} waiting for {what}"),
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Runs `fut` with a timeout whose error names `what`.
pub async fn within<T>(timeout: Duration, what: &str, fut: impl Future<Output = Result<T>>) -> Result<T> {
    tokio::time::timeout(timeout, fut).await.map_err(|_| anyhow!("timed out after {timeout:?}: {what}"))?
}

static PORTS: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A free loopback port, never handed out twice in this process (so a port
/// reserved for a server started later is not reused by another test).
pub fn free_port() -> Result<u16> {
    let mut used = PORTS.lock().unwrap();
    let used = used.get_or_insert_with(HashSet::new);
    for _ in 0..100 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        if used.insert(port) {
            return Ok(port);
        }
    }
    bail!("could not find a free loopback port")
}

/// A reqwest client (installs the ring crypto provider once).
pub fn http_client() -> reqwest::Client {
    static PROVIDER: Once = Once::new();
    PROVIDER.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("building the HTTP client")
}

/// Full path of `program` in `PATH`, or an error telling to run `tests/run.sh`.
pub fn require_program(program: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(program);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!("`{program}` was not found in PATH: {INSTALL_HINT}")
}

/// The last `lines` lines of a file (empty when it cannot be read).
pub fn file_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn send_signal(pid: u32, signal: libc::c_int) {
    // SAFETY: plain kill(2) on the pid of a child this process spawned and has not reaped.
    unsafe {
        libc::kill(pid as libc::pid_t, signal);
    }
}

/// Makes the child get SIGKILL when the thread that spawned it goes away, so
/// that a test process killed mid-run leaves no server behind (Linux only).
fn die_with_parent(command: &mut Command) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0);
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = command;
}

// ---------------------------------------------------------------------------
// Child processes

/// A child process whose stdout/stderr go to `<dir>/<name>.stdout|.stderr`;
/// killed (SIGKILL) when dropped.
pub struct ChildProcess {
    name: String,
    child: Option<Child>,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
    exit: Option<ExitStatus>,
    /// Print the stderr tail on drop even when not panicking.
    pub print_logs_on_drop: bool,
}

impl ChildProcess {
    /// Spawns `program args...` with logs in `log_dir`. `name` names the log
    /// files (a later spawn with the same name appends to them).
    pub fn spawn<I, S>(name: &str, program: &Path, args: I, envs: &[(&str, &str)], log_dir: &Path) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let stdout_path = log_dir.join(format!("{name}.stdout"));
        let stderr_path = log_dir.join(format!("{name}.stderr"));
        let open = |p: &Path| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("opening {}", p.display()))
        };
        let mut command = Command::new(program);
        command
            .args(args)
            .current_dir(log_dir)
            .stdin(Stdio::null())
            .stdout(open(&stdout_path)?)
            .stderr(open(&stderr_path)?);
        for (k, v) in envs {
            command.env(k, v);
        }
        die_with_parent(&mut command);
        let child = command.spawn().with_context(|| format!("spawning {} ({name})", program.display()))?;
        Ok(Self {
            name: name.to_string(),
            child: Some(child),
            stdout_path,
            stderr_path,
            exit: None,
            print_logs_on_drop: false,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn stderr_path(&self) -> &Path {
        &self.stderr_path
    }

    pub fn stdout_path(&self) -> &Path {
        &self.stdout_path
    }

    /// The last `lines` lines of stderr.
    pub fn stderr_tail(&self, lines: usize) -> String {
        file_tail(&self.stderr_path, lines)
    }

    /// The last `lines` lines of stdout and stderr, labelled.
    pub fn logs_tail(&self, lines: usize) -> String {
        format!(
            "----- {} stdout ({}) -----\n{}\n----- {} stderr ({}) -----\n{}\n-----",
            self.name,
            self.stdout_path.display(),
            file_tail(&self.stdout_path, lines),
            self.name,
            self.stderr_path.display(),
            file_tail(&self.stderr_path, lines)
        )
    }

    /// `Some(status)` once the child has exited.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.exit = Some(status);
                }
            }
        }
        self.exit
    }

    pub fn is_running(&mut self) -> bool {
        self.child.is_some() && self.try_exit().is_none()
    }

    /// An error when the child has exited, with its stderr tail.
    pub fn ensure_running(&mut self) -> Result<()> {
        if let Some(status) = self.try_exit() {
            bail!("{} exited early with {status}\n{}", self.name, self.logs_tail(40));
        }
        Ok(())
    }

    /// Sends SIGTERM and waits up to `grace` for the exit; SIGKILL after that
    /// (then the result is an error).
    pub async fn terminate(&mut self, grace: Duration) -> Result<ExitStatus> {
        if let Some(status) = self.try_exit() {
            return Ok(status);
        }
        let pid = self.pid().ok_or_else(|| anyhow!("{} was never started", self.name))?;
        send_signal(pid, libc::SIGTERM);
        let deadline = Instant::now() + grace;
        loop {
            if let Some(status) = self.try_exit() {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                self.kill();
                bail!("{} did not exit within {grace:?} of SIGTERM; killed\n{}", self.name, self.logs_tail(40));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(child) = self.child.as_mut() {
            if self.exit.is_none() {
                let _ = child.kill();
                if let Ok(status) = child.wait() {
                    self.exit = Some(status);
                }
            }
        }
    }

    /// Waits until `GET url` answers 2xx, failing early when the child exits.
    pub async fn wait_http_ready(&mut self, url: &str, timeout: Duration) -> Result<()> {
        let client = http_client();
        let deadline = Instant::now() + timeout;
        let mut last: String;
        loop {
            self.ensure_running().with_context(|| format!("{} did not become ready at {url}", self.name))?;
            match client.get(url).timeout(Duration::from_secs(2)).send().await {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) => last = format!("HTTP {}", r.status()),
                Err(e) => last = format!("{e}"),
            }
            if Instant::now() >= deadline {
                bail!("{} was not ready at {url} within {timeout:?} ({last})\n{}", self.name, self.logs_tail(40));
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        let running = self.is_running();
        self.kill();
        if std::thread::panicking() || self.print_logs_on_drop {
            eprintln!("{} ({}):\n{}", self.name, if running { "killed" } else { "had exited" }, self.logs_tail(60));
        }
    }
}

// ---------------------------------------------------------------------------
// Prometheus

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

fn escape_label_value(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn format_value(v: f64) -> String {
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
    dir: PathBuf,
    data_dir: PathBuf,
    config_path: PathBuf,
    port: u16,
    child: Option<ChildProcess>,
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
    port: u16,
    child: ChildProcess,
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
    dir: PathBuf,
    maildir: PathBuf,
    port: u16,
    child: Option<ChildProcess>,
    reject_subjects: Option<String>,
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

async fn smtp_greets(port: u16) -> bool {
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

// ---------------------------------------------------------------------------
// warden

/// Root of the Cargo workspace.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the tests crate lives inside the workspace").to_path_buf()
}

/// Path of the `warden` binary: `$WARDEN_BIN` if set, else
/// `$CARGO_TARGET_DIR/debug/warden`, else `<workspace>/target/debug/warden`.
/// An error telling to build it when it does not exist.
pub fn warden_binary() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("WARDEN_BIN") {
        let bin = PathBuf::from(bin);
        if bin.is_file() {
            return Ok(bin);
        }
        bail!("WARDEN_BIN={} does not exist", bin.display());
    }
    let root = workspace_root();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .or_else(|| std::env::var_os("CARGO_BUILD_TARGET_DIR"))
        .map(|d| {
            let d = PathBuf::from(d);
            if d.is_absolute() {
                d
            } else {
                root.join(d)
            }
        })
        .unwrap_or_else(|| root.join("target"));
    let bin = target.join("debug").join("warden");
    if !bin.is_file() {
        bail!(
            "the warden binary was not found at {}: build it with `cargo build -p warden-agent --bins`, or {INSTALL_HINT}",
            bin.display()
        );
    }
    warn_if_stale(&bin, &root);
    Ok(bin)
}

fn newest_mtime(dir: &Path, newest: &mut SystemTime) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            newest_mtime(&path, newest);
        } else if path.extension().is_some_and(|e| e == "rs" || e == "sql") {
            if let Ok(m) = entry.metadata().and_then(|m| m.modified()) {
                *newest = (*newest).max(m);
            }
        }
    }
}

fn warn_if_stale(bin: &Path, root: &Path) {
    static WARNED: Once = Once::new();
    WARNED.call_once(|| {
        let Ok(built) = std::fs::metadata(bin).and_then(|m| m.modified()) else { return };
        let mut newest = SystemTime::UNIX_EPOCH;
        for krate in ["agent", "connectors", "detectors", "playbooks", "models"] {
            newest_mtime(&root.join(krate).join("src"), &mut newest);
        }
        if newest > built {
            eprintln!(
                "warning: {} is older than the workspace sources; run `cargo build -p warden-agent --bins` (tests/run.sh does)",
                bin.display()
            );
        }
    });
}

/// Output of a finished `warden` CLI command.
#[derive(Debug)]
pub struct CliOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `warden ARGS...` to completion (60 s at most).
pub async fn warden_cli(args: &[&str], envs: &[(&str, &str)]) -> Result<CliOutput> {
    let bin = warden_binary()?;
    let mut command = tokio::process::Command::new(&bin);
    command.args(args).stdin(Stdio::null()).kill_on_drop(true);
    for (k, v) in envs {
        command.env(k, v);
    }
    let output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .map_err(|_| anyhow!("`warden {}` did not finish within 60s", args.join(" ")))?
        .with_context(|| format!("running {}", bin.display()))?;
    Ok(CliOutput {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

/// A running `warden run -c CONFIG`, with a client for its HTTP API.
///
/// When dropped without a successful [`Warden::stop`] (a failing test), it is
/// killed and the tail of its logs is printed.
pub struct Warden {
    child: ChildProcess,
    base_url: String,
    token: String,
    config_path: PathBuf,
    client: reqwest::Client,
}

impl Warden {
    /// Writes `config_yaml` to `<dir>/warden.yaml`, starts `warden run -c` with
    /// `envs` (the secrets), and waits until `GET /healthz` on `listen_port`
    /// answers. `api_token` is what the API calls send as bearer token.
    pub async fn start(
        dir: &Path,
        config_yaml: &str,
        envs: &[(&str, &str)],
        listen_port: u16,
        api_token: &str,
    ) -> Result<Self> {
        let bin = warden_binary()?;
        let config_path = dir.join("warden.yaml");
        std::fs::write(&config_path, config_yaml)?;
        let mut all_envs: Vec<(&str, &str)> = vec![("RUST_LOG", "info"), ("RUST_BACKTRACE", "1")];
        all_envs.extend_from_slice(envs);
        let config_arg = config_path.display().to_string();
        let mut child = ChildProcess::spawn("warden", &bin, ["run", "-c", config_arg.as_str()], &all_envs, dir)?;
        child.print_logs_on_drop = true;
        let base_url = format!("http://127.0.0.1:{listen_port}");
        child.wait_http_ready(&format!("{base_url}/healthz"), Duration::from_secs(30)).await?;
        Ok(Self { child, base_url, token: api_token.to_string(), config_path, client: http_client() })
    }

    pub fn url(&self) -> &str {
        &self.base_url
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    pub fn process(&mut self) -> &mut ChildProcess {
        &mut self.child
    }

    /// The last `lines` lines of warden's stdout/stderr.
    pub fn logs_tail(&self, lines: usize) -> String {
        self.child.logs_tail(lines)
    }

    /// `GET path` with the API token.
    pub async fn get(&self, path: &str) -> Result<reqwest::Response> {
        Ok(self.client.get(format!("{}{path}", self.base_url)).bearer_auth(&self.token).send().await?)
    }

    /// `GET path` with the API token; the JSON body of a 2xx answer.
    pub async fn get_json(&self, path: &str) -> Result<Value> {
        let response = self.get(path).await?;
        let status = response.status();
        let text = response.text().await?;
        if !status.is_success() {
            bail!("GET {path}: {status}: {text}");
        }
        serde_json::from_str(&text).with_context(|| format!("GET {path}: not JSON: {text}"))
    }

    /// `GET /api/v1/incidents` (with `?status=` when given): the `incidents` array.
    pub async fn incidents(&self, status: Option<&str>) -> Result<Vec<Value>> {
        let path = match status {
            Some(s) => format!("/api/v1/incidents?status={s}"),
            None => "/api/v1/incidents".to_string(),
        };
        array_field(self.get_json(&path).await?, "incidents")
    }

    /// `GET /api/v1/watches`: the `watches` array.
    pub async fn watches(&self) -> Result<Vec<Value>> {
        array_field(self.get_json("/api/v1/watches").await?, "watches")
    }

    /// The entry of watch `name` in `/api/v1/watches`.
    pub async fn watch(&self, name: &str) -> Result<Value> {
        self.watches()
            .await?
            .into_iter()
            .find(|w| w.get("name").and_then(Value::as_str) == Some(name))
            .ok_or_else(|| anyhow!("watch {name:?} is not listed in /api/v1/watches"))
    }

    /// `GET /api/v1/actions`: the `actions` array.
    pub async fn actions(&self) -> Result<Vec<Value>> {
        array_field(self.get_json("/api/v1/actions").await?, "actions")
    }

    /// `GET /metrics` as text.
    pub async fn metrics(&self) -> Result<String> {
        let response = self.client.get(format!("{}/metrics", self.base_url)).send().await?;
        let status = response.status();
        let text = response.text().await?;
        if !status.is_success() {
            bail!("GET /metrics: {status}: {text}");
        }
        Ok(text)
    }

    /// Sends SIGTERM, waits (30 s at most) and returns the exit status.
    pub async fn stop(mut self) -> Result<ExitStatus> {
        let status = self.child.terminate(Duration::from_secs(30)).await?;
        if status.success() {
            self.child.print_logs_on_drop = false;
        }
        Ok(status)
    }

    /// [`Warden::stop`], then an error unless the exit code was 0.
    pub async fn stop_ok(self) -> Result<()> {
        let tail = self.child.stderr_path().to_path_buf();
        let status = self.stop().await?;
        if !status.success() {
            bail!("warden exited with {status} after SIGTERM (expected 0)\n{}", file_tail(&tail, 40));
        }
        Ok(())
    }
}

fn array_field(value: Value, field: &str) -> Result<Vec<Value>> {
    value
        .get(field)
        .and_then(Value::as_array)
        .cloned()
        .ok_or_else(|| anyhow!("expected an object with a {field:?} array, got {value}"))
}

/// The sum of the samples of `name` in a Prometheus text exposition whose
/// labels include every `labels` pair (`None` when there is no such sample).
pub fn metric_value(exposition: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for line in exposition.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (series, rest) = match (line.find('{'), line.rfind('}')) {
            (Some(open), Some(close)) if open < close => {
                if &line[..open] != name {
                    continue;
                }
                (&line[open + 1..close], &line[close + 1..])
            }
            _ => {
                let mut parts = line.splitn(2, ' ');
                let n = parts.next().unwrap_or("");
                if n != name {
                    continue;
                }
                ("", parts.next().unwrap_or(""))
            }
        };
        if !labels.iter().all(|(k, v)| series.contains(&format!("{k}=\"{v}\""))) {
            continue;
        }
        let value: f64 = match rest.split_whitespace().next().and_then(|v| v.parse().ok()) {
            Some(v) => v,
            None => continue,
        };
        *found.get_or_insert(0.0) += value;
    }
    found
}
