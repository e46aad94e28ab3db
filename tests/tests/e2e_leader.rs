//! Two `warden run` daemons electing a leader on a Lease of the local Kubernetes API test
//! server: only the leader accepts alerts and delivers notifications, the follower is ready
//! and names the leader, and a graceful shutdown of the leader hands the lease over.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};
use warden_tests::kube_api::{write_kubeconfig, KubeApi, Resource};
use warden_tests::procs::{metric_value, Warden};
use warden_tests::{free_port, http_client, wait_until};

const TOKEN: &str = "leader-test-token";

fn config(dir: &Path, name: &str, port: u16, kubeconfig: &Path) -> String {
    format!(
        "server: {{ listen: '127.0.0.1:{port}', api_token: {{ env: WARDEN_API_TOKEN }} }}\n\
         store: {{ sqlite: '{db}' }}\n\
         kubernetes: {{ kubeconfig: '{kube}' }}\n\
         leader_election: {{ enabled: true, namespace: warden, identity: {name}, lease_duration: 4s, renew_deadline: 2s, retry_period: 500ms }}\n\
         notify: {{ file: {{ path: '{out}' }} }}\n",
        db = dir.join(format!("{name}.db")).display(),
        kube = kubeconfig.display(),
        out = dir.join(format!("{name}.jsonl")).display(),
    )
}

async fn leads(w: &Warden) -> Result<bool> {
    Ok(metric_value(&w.metrics().await?, "warden_leader", &[]) == Some(1.0))
}

fn alert(name: &str) -> Value {
    json!({"version": "4", "groupKey": "g", "status": "firing", "receiver": "warden", "alerts": [
        {"status": "firing", "labels": {"alertname": name}, "annotations": {}, "startsAt": "2026-11-22T10:00:00Z"}
    ]})
}

async fn post_alert(w: &Warden, name: &str) -> Result<(u16, Value)> {
    let r =
        http_client().post(format!("{}/api/v1/alerts", w.url())).bearer_auth(TOKEN).json(&alert(name)).send().await?;
    let status = r.status().as_u16();
    Ok((status, r.json().await.unwrap_or(Value::Null)))
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path).map(|t| t.lines().count()).unwrap_or(0)
}

/// Two `warden run` replicas (`warden-a`, `warden-b`) with leader election on one Lease of
/// `api`, each with its own directory under `dir`.
async fn two_replicas(dir: &Path, api: &KubeApi) -> Result<Vec<(&'static str, Warden)>> {
    let kubeconfig = write_kubeconfig(dir, &api.url())?;
    let envs = [("WARDEN_API_TOKEN", TOKEN)];
    let mut replicas = Vec::new();
    for name in ["warden-a", "warden-b"] {
        let sub = dir.join(name);
        std::fs::create_dir_all(&sub)?;
        let port = free_port()?;
        replicas.push((name, Warden::start(&sub, &config(dir, name, port, &kubeconfig), &envs, port, TOKEN).await?));
    }
    Ok(replicas)
}

#[tokio::test]
async fn only_the_leader_acts_and_a_graceful_shutdown_hands_the_lease_over() -> Result<()> {
    let api = KubeApi::start().await?;
    let dir = tempfile::tempdir()?;
    let mut replicas = two_replicas(dir.path(), &api).await?;

    // Exactly one leads.
    let leader = wait_until(Duration::from_secs(20), "one replica leads", async || {
        let mut leading = Vec::new();
        for (i, (_, w)) in replicas.iter().enumerate() {
            if leads(w).await? {
                leading.push(i);
            }
        }
        Ok((leading.len() == 1).then(|| leading[0]))
    })
    .await?;
    let follower = 1 - leader;
    let (leader_name, follower_name) = (replicas[leader].0, replicas[follower].0);
    let lease = api.object(Resource::Lease, "warden", "warden").context("the Lease exists")?;
    assert_eq!(lease["spec"]["holderIdentity"], leader_name, "{lease}");

    // The follower is ready for reads and names the leader; it refuses writes.
    let ready: Value = http_client().get(format!("{}/readyz", replicas[follower].1.url())).send().await?.json().await?;
    assert_eq!((ready["role"].as_str(), ready["leader"].as_str()), (Some("follower"), Some(leader_name)), "{ready}");
    let (status, body) = post_alert(&replicas[follower].1, "Refused").await?;
    assert_eq!(status, 503, "{body}");
    assert!(body["error"].as_str().is_some_and(|e| e.contains(leader_name)), "{body}");

    // The leader accepts the alert and delivers its notification; the follower sends nothing.
    let (status, body) = post_alert(&replicas[leader].1, "First").await?;
    assert_eq!((status, body["accepted"].as_u64()), (200, Some(1)), "{body}");
    let leader_out = dir.path().join(format!("{leader_name}.jsonl"));
    let follower_out = dir.path().join(format!("{follower_name}.jsonl"));
    wait_until(Duration::from_secs(10), "the leader delivers", async || Ok((lines(&leader_out) >= 1).then_some(())))
        .await?;
    assert_eq!(lines(&follower_out), 0);

    // A graceful shutdown releases the lease: the follower leads soon after.
    let (_, old) = replicas.remove(leader);
    let stopped = Instant::now();
    old.stop_ok().await?;
    let shutdown_ms = stopped.elapsed().as_millis();
    let (_, new_leader) = replicas.remove(0);
    wait_until(Duration::from_secs(10), "the follower takes over", async || {
        Ok(leads(&new_leader).await?.then_some(()))
    })
    .await?;
    println!(
        "graceful hand-over: shutdown took {shutdown_ms} ms, the new leader led {} ms after the shutdown began",
        stopped.elapsed().as_millis()
    );
    let lease = api.object(Resource::Lease, "warden", "warden").context("the Lease")?;
    assert_eq!(lease["spec"]["holderIdentity"], follower_name, "{lease}");
    assert_eq!(lease["spec"]["leaseTransitions"], 1, "{lease}");

    // The new leader acts: the alert is accepted and its notification delivered.
    let (status, body) = post_alert(&new_leader, "Second").await?;
    assert_eq!((status, body["accepted"].as_u64()), (200, Some(1)), "{body}");
    wait_until(Duration::from_secs(10), "the new leader delivers", async || {
        Ok((lines(&follower_out) >= 1).then_some(()))
    })
    .await?;
    let delivered: Vec<Value> = std::fs::read_to_string(&follower_out)?
        .lines()
        .map(serde_json::from_str)
        .collect::<std::result::Result<_, _>>()?;
    ensure!(
        delivered.iter().all(|m| !m.to_string().contains("First")),
        "the first alert was the old leader's: {delivered:?}"
    );
    new_leader.stop_ok().await
}

/// Sends `signal` (`STOP`, `CONT`) to the daemon with kill(1).
fn signal(w: &mut Warden, signal: &str) -> Result<()> {
    let pid = w.process().pid().context("a running process")?;
    let status = std::process::Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status()?;
    ensure!(status.success(), "kill -{signal} {pid}: {status}");
    Ok(())
}

#[tokio::test]
async fn a_paused_leader_stops_acting_and_a_killed_one_is_replaced_after_the_lease_duration() -> Result<()> {
    let api = KubeApi::start().await?;
    let dir = tempfile::tempdir()?;
    let mut replicas = two_replicas(dir.path(), &api).await?;
    let first = wait_until(Duration::from_secs(20), "one replica leads", async || {
        for (i, (_, w)) in replicas.iter().enumerate() {
            if leads(w).await? {
                return Ok(Some(i));
            }
        }
        Ok(None)
    })
    .await?;
    let (second_name, mut second) = replicas.remove(1 - first);
    let (first_name, mut first) = replicas.remove(0);

    // Pause the leader (SIGSTOP): the other takes over once the lease has run out.
    signal(&mut first, "STOP")?;
    let paused = Instant::now();
    wait_until(Duration::from_secs(20), "the other replica takes over", async || {
        Ok(leads(&second).await?.then_some(()))
    })
    .await?;
    println!("takeover from a paused leader (lease 4s, retry 500ms): {} ms", paused.elapsed().as_millis());

    // Woken up, the old leader does not act: its lease is past the renew deadline by its
    // own clock, so writes are refused at once, and it follows the new holder.
    signal(&mut first, "CONT")?;
    let (status, body) = post_alert(&first, "AfterPause").await?;
    assert_eq!(status, 503, "a woken leader must not act: {body}");
    wait_until(Duration::from_secs(10), "the woken replica follows", async || {
        let ready: Value = http_client().get(format!("{}/readyz", first.url())).send().await?.json().await?;
        Ok((ready["role"] == "follower" && ready["leader"] == second_name).then_some(()))
    })
    .await?;
    assert_eq!(lines(&dir.path().join(format!("{first_name}.jsonl"))), 0);
    let (status, body) = post_alert(&second, "Leader").await?;
    assert_eq!(status, 200, "{body}");
    let second_out = dir.path().join(format!("{second_name}.jsonl"));
    wait_until(
        Duration::from_secs(10),
        "the new leader delivers",
        async || Ok((lines(&second_out) >= 1).then_some(())),
    )
    .await?;

    // Kill the leader (SIGKILL): the lease is not released, the other waits it out.
    second.process().kill();
    // Killed on purpose: its logs are not a failure's.
    second.process().print_logs_on_drop = false;
    let killed = Instant::now();
    wait_until(Duration::from_secs(20), "the survivor takes over", async || Ok(leads(&first).await?.then_some(())))
        .await?;
    println!("takeover from a killed leader (lease 4s, retry 500ms): {} ms", killed.elapsed().as_millis());
    let lease = api.object(Resource::Lease, "warden", "warden").context("the Lease")?;
    assert_eq!(lease["spec"]["holderIdentity"], first_name, "{lease}");
    assert_eq!(lease["spec"]["leaseTransitions"], 2, "{lease}");
    let (status, body) = post_alert(&first, "Survivor").await?;
    assert_eq!(status, 200, "{body}");
    let first_out = dir.path().join(format!("{first_name}.jsonl"));
    wait_until(Duration::from_secs(10), "the survivor delivers", async || Ok((lines(&first_out) >= 1).then_some(())))
        .await?;
    first.stop_ok().await
}
