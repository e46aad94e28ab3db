//! Two `warden run` replicas with leader election sharing one PostgreSQL store: a run the
//! leader started is finished by the next leader after the first is killed, no step reaches
//! the cluster twice, every notification is delivered once, and the audit chain verifies.
//!
//! Needs the PostgreSQL server the test command starts (`WARDEN_TEST_POSTGRES_URL`);
//! without it the test prints one line and passes.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use serde_json::Value;
use warden_agent::store::Store;
use warden_playbooks::run::{RunStatus, StepStatus};
use warden_tests::kube_api::{write_kubeconfig, KubeApi, Resource, KUBECONFIG_CONTEXT};
use warden_tests::procs::{metric_value, Warden};
use warden_tests::{free_port, http_client, wait_until};

const TOKEN: &str = "shared-store-token";

const PLAYBOOK: &str = "name: slow\ntriggers:\n  - alert: {labels: {alertname: SlowBurn}}\nguards: {autonomy: auto}\nsteps:\n  - scale: {by: 1}\n  - wait: {for: 3s}\n  - restart: {}\n  - notify: {message: 'slow finished'}\n";

fn config(dir: &Path, name: &str, port: u16, kubeconfig: &Path) -> String {
    format!(
        "server: {{ listen: '127.0.0.1:{port}', api_token: {{ env: WARDEN_API_TOKEN }} }}\n\
         store: {{ postgres: {{ url_from: {{ env: WARDEN_POSTGRES_URL }} }} }}\n\
         kubernetes: {{ kubeconfig: '{kube}', context: {ctx} }}\n\
         leader_election: {{ enabled: true, namespace: warden, identity: {name}, lease_duration: 4s, renew_deadline: 2s, retry_period: 500ms }}\n\
         playbooks: {{ dir: '{pbs}' }}\n\
         notify: {{ file: {{ path: '{out}' }} }}\n",
        kube = kubeconfig.display(),
        ctx = KUBECONFIG_CONTEXT,
        pbs = dir.join("playbooks").display(),
        out = dir.join(format!("{name}.jsonl")).display(),
    )
}

async fn leads(w: &Warden) -> Result<bool> {
    Ok(metric_value(&w.metrics().await?, "warden_leader", &[]) == Some(1.0))
}

fn delivered(dir: &Path, names: &[&str]) -> Vec<String> {
    names
        .iter()
        .flat_map(|n| {
            std::fs::read_to_string(dir.join(format!("{n}.jsonl")))
                .unwrap_or_default()
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

async fn get_run(w: &Warden, id: i64) -> Result<Value> {
    let r = http_client().get(format!("{}/api/v1/runs/{id}", w.url())).bearer_auth(TOKEN).send().await?;
    ensure!(r.status().is_success(), "GET run {id}: {}", r.status());
    Ok(r.json().await?)
}

const NAMES: [&str; 2] = ["warden-a", "warden-b"];

/// The Kubernetes API test server with `shop/checkout`, the `slow` playbook, and two
/// replicas on the store at `url`, one of them leading.
struct Rig {
    api: KubeApi,
    dir: tempfile::TempDir,
    kubeconfig: std::path::PathBuf,
    url: String,
    replicas: Vec<Warden>,
    leader: usize,
}

impl Rig {
    async fn start(url: &str) -> Result<Self> {
        let api = KubeApi::start().await?;
        api.add_deployment("shop", "checkout", 2);
        let dir = tempfile::tempdir()?;
        std::fs::create_dir_all(dir.path().join("playbooks"))?;
        std::fs::write(dir.path().join("playbooks/slow.yaml"), PLAYBOOK)?;
        let kubeconfig = write_kubeconfig(dir.path(), &api.url())?;
        let mut rig = Self { api, dir, kubeconfig, url: url.to_string(), replicas: Vec::new(), leader: 0 };
        for name in NAMES {
            let sub = rig.dir.path().join(name);
            std::fs::create_dir_all(&sub)?;
            let port = free_port()?;
            let config = config(rig.dir.path(), name, port, &rig.kubeconfig);
            rig.replicas.push(Warden::start(&sub, &config, &rig.envs(), port, TOKEN).await?);
        }
        let replicas = &rig.replicas;
        rig.leader = wait_until(Duration::from_secs(20), "one replica leads", async || {
            for (i, w) in replicas.iter().enumerate() {
                if leads(w).await? {
                    return Ok(Some(i));
                }
            }
            Ok(None)
        })
        .await?;
        Ok(rig)
    }

    fn envs(&self) -> [(&'static str, &str); 2] {
        [("WARDEN_API_TOKEN", TOKEN), ("WARDEN_POSTGRES_URL", self.url.as_str())]
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_finishes_the_killed_leaders_run_from_the_shared_store() -> Result<()> {
    let Some(url) = warden_tests::postgres::fresh_store_url().await? else {
        println!("a_new_leader_finishes_the_killed_leaders_run_from_the_shared_store: skipped: no PostgreSQL server (WARDEN_TEST_POSTGRES_URL)");
        return Ok(());
    };
    let mut rig = Rig::start(&url).await?;
    let (mut replicas, leader, names) = (std::mem::take(&mut rig.replicas), rig.leader, NAMES);
    let (api, dir) = (&rig.api, rig.dir.path());
    let survivor_name = names[1 - leader];
    let survivor = replicas.remove(1 - leader);
    let mut old = replicas.remove(0);

    // An alert to the leader opens an incident and starts the run; the follower reads both
    // from the shared store.
    let id = warden_tests::postgres::alert_starts_run(old.url(), TOKEN, "SlowBurn", "shop", "checkout").await?;
    wait_until(Duration::from_secs(20), "the follower sees the run wait after its scale step", async || {
        let run = get_run(&survivor, id).await?;
        Ok((run["run"]["steps"][1]["status"] == "waiting").then_some(()))
    })
    .await?;
    assert_eq!(api.replicas("shop", "checkout"), Some(3));

    // Kill the leader mid-run (SIGKILL: no lease release, no claim release).
    old.process().kill();
    old.process().print_logs_on_drop = false;
    let killed = Instant::now();
    wait_until(Duration::from_secs(20), "the survivor leads", async || Ok(leads(&survivor).await?.then_some(())))
        .await?;
    let led_ms = killed.elapsed().as_millis();
    let run = wait_until(Duration::from_secs(60), "the survivor finishes the run", async || {
        let run = get_run(&survivor, id).await?;
        let status = run["run"]["status"].as_str().unwrap_or("").to_string();
        Ok((status != "running").then_some(run))
    })
    .await?;
    let finished_ms = killed.elapsed().as_millis();
    println!("shared store: the survivor led {led_ms} ms and finished the run {finished_ms} ms after the kill");
    assert_eq!(run["run"]["status"], "succeeded", "{run}");

    // Nothing twice: one scale, one restart, one "slow finished".
    assert_eq!(api.scale_writes("shop", "checkout").len(), 1, "the scale was sent again");
    assert_eq!(api.replicas("shop", "checkout"), Some(3));
    let restarts =
        api.requests().into_iter().filter(|q| q.method == "PATCH" && q.path.ends_with("/deployments/checkout")).count();
    assert_eq!(restarts, 1, "the restart was sent {restarts} times");
    let finished = wait_until(Duration::from_secs(10), "the notification is delivered", async || {
        let n = delivered(dir, &names).iter().filter(|l| l.contains("slow finished")).count();
        Ok((n > 0).then_some(n))
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let again = delivered(dir, &names).iter().filter(|l| l.contains("slow finished")).count();
    assert_eq!((finished, again), (1, 1), "delivered once");

    // One audit chain, and the steps after the kill were fenced by the survivor's lease.
    let store = Store::open_postgres(&url)?;
    let entries = store.audit_for_run(id)?;
    let head = store.audit_head()?;
    let all = store.audit_entries()?;
    ensure!(warden_playbooks::audit::verify_with_head(&all, head.as_ref()).is_ok(), "the audit chain does not verify");
    let stored = store.get_run(id)?.context("the run")?;
    assert!(stored.steps.iter().all(|s| s.status == StepStatus::Done), "{:?}", stored.steps);
    assert_eq!(stored.status, RunStatus::Succeeded);
    let fenced_by: Vec<&str> = entries.iter().filter_map(|e| e.fence.as_ref()).map(|f| f.holder.as_str()).collect();
    ensure!(fenced_by.contains(&survivor_name), "no request fenced by {survivor_name}: {fenced_by:?}");
    let lease = api.object(Resource::Lease, "warden", "warden").context("the Lease")?;
    assert_eq!(lease["spec"]["holderIdentity"], survivor_name, "{lease}");
    survivor.stop_ok().await
}

/// `warden playbook run` with leader election configured: the command records the run in
/// the shared store and follows it there; the leader sends its requests, fenced by its
/// lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_hands_its_run_to_the_leader() -> Result<()> {
    let Some(url) = warden_tests::postgres::fresh_store_url().await? else {
        println!("a_command_hands_its_run_to_the_leader: skipped: no PostgreSQL server (WARDEN_TEST_POSTGRES_URL)");
        return Ok(());
    };
    let mut rig = Rig::start(&url).await?;
    let (replicas, leader, names) = (std::mem::take(&mut rig.replicas), rig.leader, NAMES);
    let (api, dir, kubeconfig, envs) = (&rig.api, rig.dir.path(), &rig.kubeconfig, rig.envs());

    let cli_config = dir.join("cli.yaml");
    std::fs::write(&cli_config, config(dir, "cli", free_port()?, kubeconfig))?;
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(warden_tests::procs::warden_binary()?)
            .args(["playbook", "run", "slow", "--target", "shop/checkout", "--as", "tester", "-c"])
            .arg(&cli_config)
            .envs(envs)
            .output(),
    )
    .await
    .context("the command did not finish within 60 s")??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.success(), "warden playbook run: {}\n{stdout}\n{stderr}", out.status);
    ensure!(stderr.contains("the leader sends its requests"), "{stderr}");

    let store = Store::open_postgres(&url)?;
    let run = store.list_runs(None, None, 1)?.pop().context("the run")?;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.reason);
    assert_eq!(run.trigger.actor, "user/tester");
    assert_eq!(api.scale_writes("shop", "checkout").len(), 1);
    let requests: Vec<_> = store
        .audit_for_run(run.id)?
        .into_iter()
        .filter(|e| e.kind == warden_playbooks::audit::AuditKind::Request)
        .filter(|e| e.detail["action"].as_str().is_some_and(warden_playbooks::actions::is_mutating))
        .collect();
    // The scale and the restart, each sent once.
    ensure!(requests.len() == 2, "{} cluster requests in the audit trail", requests.len());
    for e in &requests {
        let holder = e.fence.as_ref().map(|f| f.holder.as_str());
        ensure!(holder == Some(names[leader]), "request {} fenced by {holder:?}, not the leader: {}", e.seq, e.detail);
    }
    for w in replicas {
        w.stop_ok().await?;
    }
    Ok(())
}
