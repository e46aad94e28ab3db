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

mod servers;
pub use servers::*;
mod warden;
pub use warden::*;

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
