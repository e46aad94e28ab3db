//! A real Kubernetes control plane for tests: `kube-apiserver` and
//! `kube-controller-manager` (v1.32) with etcd on 127.0.0.1, started with
//! `realkube.sh` from the `shared/kube` folder that sits beside the project (not
//! part of it, and absent from a fresh clone).
//!
//! [`shared_plane`] starts one plane per test binary, on free ports and in its own
//! state folder under the build's target directory, and stops it when the binary
//! exits; every test of the binary shares it (tests keep to their own namespaces).
//! Without the `shared/kube` folder it answers `None` after printing why, so that the
//! test can pass without it: a test that needs the plane says so in its first line
//! and returns early. When the folder is there but the plane cannot start, that is an
//! error (run `tests/run.sh`, which installs etcd).
//!
//! The plane has no kubelet and no scheduler: pods stay `Pending` unless a test binds
//! them (`spec.nodeName`) or writes their status; Jobs finish when a test marks their
//! pods `Succeeded` or `Failed`; the deployment and job controllers, garbage collection
//! and the rest of the controller manager run. Contexts of the kubeconfig:
//! [`ADMIN_CONTEXT`] (group `system:masters`) and [`WARDEN_CONTEXT`] (the
//! `warden/warden` service account, so `deploy/rbac.yaml` applies to it).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use anyhow::{bail, Context, Result};

/// Kubeconfig context of the admin user.
pub const ADMIN_CONTEXT: &str = "realkube";
/// Kubeconfig context of the `warden` service account in namespace `warden`.
pub const WARDEN_CONTEXT: &str = "realkube-warden";

/// A running control plane.
#[derive(Debug)]
pub struct RealKube {
    kubeconfig: PathBuf,
    dir: PathBuf,
    script: PathBuf,
    ports: (u16, u16),
}

impl RealKube {
    /// The kubeconfig with [`ADMIN_CONTEXT`] (current) and [`WARDEN_CONTEXT`].
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The plane's state and log folder (`log/apiserver.log`, `log/kcm.log`, ...).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The last lines of the API server's and controller manager's logs, for failure
    /// messages.
    pub fn log_tail(&self) -> String {
        ["apiserver", "kcm"]
            .iter()
            .map(|p| format!("--- {p}.log\n{}", crate::procs::file_tail(&self.dir.join(format!("log/{p}.log")), 15)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn stop(&self) {
        let _ = Command::new("bash").arg(&self.script).arg("stop").envs(plane_env(&self.dir, self.ports)).output();
    }
}

/// The `shared/kube` folder beside the project (or the folder `$WARDEN_SHARED_KUBE`
/// names), if it is there with its script.
pub fn shared_kube_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("WARDEN_SHARED_KUBE") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent()?;
            root.parent()?.join("shared").join("kube")
        }
    };
    dir.join("realkube.sh").is_file().then_some(dir)
}

static PLANE: OnceLock<Result<Option<RealKube>, String>> = OnceLock::new();
static STARTING: Mutex<()> = Mutex::new(());

/// The control plane of this test binary, started on first use; `None` (after
/// printing why once per binary, naming `test`) when the `shared/kube` folder is absent. The plane is
/// stopped when the test binary exits. Blocks while it starts (about 10-30 s).
pub fn shared_plane(test: &str) -> Result<Option<&'static RealKube>> {
    if shared_kube_dir().is_none() {
        // One line per test binary, naming the first test that asked.
        static SAID: std::sync::Once = std::sync::Once::new();
        SAID.call_once(|| {
            println!(
                "{test} (and every other test of this binary that needs it): skipped: needs the real \
                 control plane in ../shared/kube beside the project (or $WARDEN_SHARED_KUBE), which is not there"
            );
        });
        return Ok(None);
    }
    let _starting = STARTING.lock().unwrap_or_else(|e| e.into_inner());
    let plane = PLANE.get_or_init(|| start().map(Some).map_err(|e| format!("{e:#}")));
    match plane {
        Ok(plane) => Ok(plane.as_ref()),
        Err(e) => bail!("the real control plane in ../shared/kube did not start: {e}"),
    }
}

extern "C" fn stop_at_exit() {
    if let Some(Ok(Some(plane))) = PLANE.get() {
        plane.stop();
    }
}

fn plane_env(dir: &Path, (api, etcd): (u16, u16)) -> Vec<(String, String)> {
    vec![
        ("REALKUBE_DIR".into(), dir.display().to_string()),
        ("REALKUBE_PORT".into(), api.to_string()),
        ("REALKUBE_ETCD_PORT".into(), etcd.to_string()),
    ]
}

/// Whether every port in `ports` can be bound on 127.0.0.1 now.
fn all_free(ports: &[u16]) -> bool {
    ports.iter().all(|p| TcpListener::bind(("127.0.0.1", *p)).is_ok())
}

/// Ports for the API server (`p`, and `p + 1` for the controller manager) and etcd (`e`,
/// `e + 10`, `e + 20`), all free now.
fn choose_ports() -> Result<(u16, u16)> {
    for _ in 0..50 {
        let api = crate::free_port()?;
        let etcd = crate::free_port()?;
        let (Some(api1), Some(e10), Some(e20)) = (api.checked_add(1), etcd.checked_add(10), etcd.checked_add(20))
        else {
            continue;
        };
        if all_free(&[api, api1, etcd, e10, e20]) {
            return Ok((api, etcd));
        }
    }
    bail!("no free ports for the control plane")
}

fn start() -> Result<RealKube> {
    let shared = shared_kube_dir().context("no ../shared/kube")?;
    let script = shared.join("realkube.sh");
    // One folder per test binary, under the target directory of this build (so that
    // worktrees and binaries do not share a plane); a plane left by a killed run of the
    // same binary is stopped first.
    let exe = std::env::current_exe().context("locating the test binary")?;
    // `real_kube-0123abcd...` → `real_kube`: one folder per test file, kept
    // across builds (the unpacked binaries are reused).
    let stem = exe
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .map(|s| match s.rsplit_once('-') {
            Some((name, hash)) if hash.chars().all(|c| c.is_ascii_hexdigit()) => name.to_string(),
            _ => s,
        })
        .unwrap_or_else(|| "tests".into());
    let target = exe.parent().and_then(Path::parent).context("the test binary has no target directory")?;
    let dir = target.join("realkube").join(stem);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let _ = Command::new("bash").arg(&script).arg("stop").env("REALKUBE_DIR", &dir).output();
    // Every run starts from an empty etcd.
    let data = dir.join("etcd");
    if data.exists() {
        std::fs::remove_dir_all(&data).with_context(|| format!("removing {}", data.display()))?;
    }
    let ports = choose_ports()?;
    let output = Command::new("bash")
        .arg(&script)
        .envs(plane_env(&dir, ports))
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "{} failed ({}): {}{}\n(tests/run.sh installs etcd; see {}/log)",
            script.display(),
            output.status,
            stdout,
            String::from_utf8_lossy(&output.stderr),
            dir.display()
        );
    }
    let kubeconfig = stdout
        .lines()
        .last()
        .map(|l| PathBuf::from(l.trim()))
        .filter(|p| p.is_file())
        .with_context(|| format!("{} printed no kubeconfig: {stdout}", script.display()))?;
    // SAFETY: `atexit` only records the function pointer; `stop_at_exit` is a plain
    // `extern "C"` function that does not unwind.
    unsafe {
        libc::atexit(stop_at_exit);
    }
    Ok(RealKube { kubeconfig, dir, script, ports })
}
