//! The warden binary under test: finding it (and warning when it is older than the sources),
//! running the CLI, and a daemon with its API, metrics and logs.

use super::*;

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

pub(super) fn newest_mtime(dir: &Path, newest: &mut SystemTime) {
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

pub(super) fn warn_if_stale(bin: &Path, root: &Path) {
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
    pub(super) child: ChildProcess,
    pub(super) base_url: String,
    pub(super) token: String,
    pub(super) config_path: PathBuf,
    pub(super) client: reqwest::Client,
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

pub(super) fn array_field(value: Value, field: &str) -> Result<Vec<Value>> {
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
