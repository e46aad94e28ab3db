//! Failover of two `warden run` replicas against the real API server and a shared
//! PostgreSQL store: the leader is killed (`SIGKILL`) or paused (`SIGSTOP`, then `SIGCONT`)
//! at a random moment of a run that scales a Deployment, waits, restarts it and notifies.
//! Every round counts, independently of Warden, the Deployment's spec changes at the API
//! server (its `metadata.generation`: a step sent twice with a new plan would change it
//! again) and the messages the Slack receiver and the SMTP server (aiosmtpd) got; the audit chain must verify and every
//! run must finish on the new leader.
//!
//! `WARDEN_FAILOVER_ROUNDS` rounds of each kind (default 2; the closing figures use 20).
//! Needs the real control plane (`../shared/kube`) and the test PostgreSQL server; without
//! either it prints one line and passes.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::PostParams;
use serde_json::{json, Value};
use warden_agent::store::Store;
use warden_tests::procs::{metric_value, SmtpServer, Warden};
use warden_tests::realkube::WARDEN_CONTEXT;
use warden_tests::slack::SlackReceiver;
use warden_tests::{free_port, http_client, wait_until};

use crate::{real, Real};

const TOKEN: &str = "failover-token";

const PLAYBOOK: &str = "name: slow\ntriggers:\n  - alert: {labels: {alertname: SlowBurn}}\nguards: {autonomy: auto, cooldown: 1s, max_attempts: 1000, rate: {global: {max: 100000, per: 1h}, per_namespace: {max: 100000, per: 1h}}}\nsteps:\n  - scale: {by: 1}\n  - wait: {for: 2s}\n  - restart: {}\n  - notify: {message: 'slow finished'}\n";

fn config(dir: &Path, name: &str, port: u16, kubeconfig: &Path, lease: &str, smtp: u16) -> String {
    format!(
        "server: {{ listen: '127.0.0.1:{port}', api_token: {{ env: WARDEN_API_TOKEN }} }}\n\
         store: {{ postgres: {{ url_from: {{ env: WARDEN_POSTGRES_URL }} }} }}\n\
         kubernetes: {{ kubeconfig: '{kube}', context: {ctx} }}\n\
         leader_election: {{ enabled: true, lease_name: {lease}, namespace: warden, identity: {name}, lease_duration: 4s, renew_deadline: 2s, retry_period: 500ms }}\n\
         playbooks: {{ dir: '{pbs}' }}\n\
         notify:\n\
         \x20 slack: {{ webhook_url: {{ env: SLACK_WEBHOOK_URL }}, timeout: 2s }}\n\
         \x20 email: {{ host: 127.0.0.1, port: {smtp}, tls: none, timeout: 2s, from: 'Warden <warden@example.test>', to: ['oncall@example.test'] }}\n",
        kube = kubeconfig.display(),
        ctx = WARDEN_CONTEXT,
        pbs = dir.join("playbooks").display(),
    )
}

fn rounds() -> usize {
    std::env::var("WARDEN_FAILOVER_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(2)
}

async fn leads(w: &Warden) -> Result<bool> {
    Ok(metric_value(&w.metrics().await.unwrap_or_default(), "warden_leader", &[]) == Some(1.0))
}

async fn run_status(w: &Warden, id: i64) -> Result<String> {
    let r = http_client().get(format!("{}/api/v1/runs/{id}", w.url())).bearer_auth(TOKEN).send().await?;
    ensure!(r.status().is_success(), "GET run {id}: {}", r.status());
    let body: Value = r.json().await?;
    Ok(body["run"]["status"].as_str().unwrap_or("").to_string())
}

fn signal(w: &mut Warden, signal: &str) -> Result<()> {
    let pid = w.process().pid().context("a running process")?;
    let status = std::process::Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status()?;
    ensure!(status.success(), "kill -{signal} {pid}: {status}");
    Ok(())
}

/// A small pseudo-random delay (no extra dependency): 0 to 2.5 s, from the clock.
fn random_delay() -> Duration {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    Duration::from_millis(u64::from(nanos % 2_500))
}

async fn generation(r: &Real, name: &str) -> Result<i64> {
    let d = r.api::<Deployment>().get(name).await?;
    Ok(d.metadata.generation.unwrap_or(0))
}

struct Replicas {
    dir: std::path::PathBuf,
    configs: Vec<(String, u16, String)>,
    envs: Vec<(&'static str, String)>,
}

impl Replicas {
    async fn start(&self, i: usize) -> Result<Warden> {
        let (name, port, config) = &self.configs[i];
        static STARTS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let sub = self.dir.join(format!("{name}-{}", STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)));
        std::fs::create_dir_all(&sub)?;
        let envs: Vec<(&str, &str)> = self.envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Warden::start(&sub, config, &envs, *port, TOKEN).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_failover_finishes_every_run_once() -> Result<()> {
    let test = "real_failover_finishes_every_run_once";
    let Some(r) = real(test).await? else { return Ok(()) };
    let Some(url) = warden_tests::postgres::fresh_store_url().await? else {
        println!("{test}: skipped: no PostgreSQL server (WARDEN_TEST_POSTGRES_URL)");
        return Ok(());
    };
    let slack = SlackReceiver::start().await?;
    let dir = tempfile::tempdir()?;
    let mut smtp = SmtpServer::reserve(dir.path())?;
    smtp.start().await?;
    std::fs::create_dir_all(dir.path().join("playbooks"))?;
    std::fs::write(dir.path().join("playbooks/slow.yaml"), PLAYBOOK)?;
    let lease = format!("failover-{}", r.ns);
    let mut configs = Vec::new();
    for name in ["warden-a", "warden-b"] {
        let port = free_port()?;
        configs.push((
            name.to_string(),
            port,
            config(dir.path(), name, port, r.plane.kubeconfig(), &lease, smtp.port()),
        ));
    }
    let replicas = Replicas {
        dir: dir.path().to_path_buf(),
        configs,
        envs: vec![
            ("WARDEN_API_TOKEN", TOKEN.to_string()),
            ("WARDEN_POSTGRES_URL", url.clone()),
            ("SLACK_WEBHOOK_URL", slack.webhook_url()),
        ],
    };
    let mut running = vec![replicas.start(0).await?, replicas.start(1).await?];

    let mut takeovers: Vec<(String, u128, u128)> = Vec::new();
    let mut round = 0;
    for kind in ["KILL", "STOP"] {
        for _ in 0..rounds() {
            round += 1;
            let name = format!("web-{round}");
            let deployment: Deployment = serde_json::from_value(json!({
                "metadata": {"name": name},
                "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                         "template": {"metadata": {"labels": {"app": name}},
                                      "spec": {"containers": [{"name": "app", "image": "app:1"}]}}}
            }))?;
            r.api::<Deployment>().create(&PostParams::default(), &deployment).await?;
            let before = generation(&r, &name).await?;

            let leader = wait_until(Duration::from_secs(30), "one replica leads", async || {
                for (i, w) in running.iter().enumerate() {
                    if leads(w).await? {
                        return Ok(Some(i));
                    }
                }
                Ok(None)
            })
            .await?;
            let id = warden_tests::postgres::alert_starts_run(running[leader].url(), TOKEN, "SlowBurn", &r.ns, &name)
                .await?;

            // At a random moment of the run, kill or pause the leader.
            tokio::time::sleep(random_delay()).await;
            signal(&mut running[leader], kind)?;
            let hit = Instant::now();
            let other = 1 - leader;
            wait_until(Duration::from_secs(30), "the other replica leads", async || {
                Ok(leads(&running[other]).await?.then_some(()))
            })
            .await?;
            let led = hit.elapsed().as_millis();
            if kind == "STOP" {
                signal(&mut running[leader], "CONT")?;
            }
            let status = wait_until(Duration::from_secs(90), "the run to finish", async || {
                let s = run_status(&running[other], id).await?;
                Ok((s != "running").then_some(s))
            })
            .await?;
            let finished = hit.elapsed().as_millis();
            ensure!(status == "succeeded", "round {round} ({kind}): the run ended {status}");
            takeovers.push((kind.to_string(), led, finished));
            if kind == "KILL" {
                running[leader].process().print_logs_on_drop = false;
                running[leader] = replicas.start(leader).await?;
            }

            // Counted at the API server: the scale and the restart, each once.
            let after = generation(&r, &name).await?;
            let d = r.api::<Deployment>().get(&name).await?;
            ensure!(
                d.spec.as_ref().and_then(|s| s.replicas) == Some(2),
                "round {round} ({kind}): replicas {:?}, expected 2",
                d.spec.and_then(|s| s.replicas)
            );
            ensure!(after - before == 2, "round {round} ({kind}): {} spec changes, expected 2", after - before);
        }
    }

    // Every run's message once, counted at both receivers, and one verified audit chain.
    let count_slack = || slack.delivered().iter().filter(|p| p.body.contains("slow finished")).count();
    let count_mail =
        || -> Result<usize> { Ok(smtp.messages()?.iter().filter(|m| m.body.contains("slow finished")).count()) };
    // A message sent again after a failover (the old leader's send reached the receiver
    // but not the store) is the same message: the same body for Slack, the same
    // Message-ID for e-mail, which mail clients show once.
    let distinct_slack = || {
        let bodies: std::collections::BTreeSet<String> =
            slack.delivered().iter().filter(|p| p.body.contains("slow finished")).map(|p| p.body.clone()).collect();
        bodies.len()
    };
    let distinct_mail = || -> Result<usize> {
        let ids: std::collections::BTreeSet<String> = smtp
            .messages()?
            .iter()
            .filter(|m| m.body.contains("slow finished"))
            .map(|m| m.message_id.clone().unwrap_or_else(|| m.file.display().to_string()))
            .collect();
        Ok(ids.len())
    };
    wait_until(Duration::from_secs(30), "every message delivered", async || {
        Ok((count_slack() >= round && count_mail()? >= round).then_some(()))
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (slack_n, mail_n) = (count_slack(), count_mail()?);
    let (slack_distinct, mail_distinct) = (distinct_slack(), distinct_mail()?);
    let store = Store::open_postgres(&url)?;
    let entries = store.audit_entries()?;
    let verified = warden_playbooks::audit::verify_with_head(&entries, store.audit_head()?.as_ref()).is_ok();
    for (kind, led, finished) in &takeovers {
        println!("{test}: SIG{kind}: new leader after {led} ms, run finished after {finished} ms");
    }
    let stats = |kind: &str, pick: fn(&(String, u128, u128)) -> u128| {
        let mut v: Vec<u128> = takeovers.iter().filter(|t| t.0 == kind).map(pick).collect();
        v.sort_unstable();
        let at = |q: f64| v.get(((v.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(0);
        format!("min {} / median {} / max {} ms", at(0.0), at(0.5), at(1.0))
    };
    for kind in ["KILL", "STOP"] {
        println!(
            "{test}: SIG{kind} x{}: leader {}; run finished {}",
            rounds(),
            stats(kind, |t| t.1),
            stats(kind, |t| t.2)
        );
    }
    println!(
        "{test}: {round} runs, 'slow finished' delivered to Slack {slack_n} times ({slack_distinct} distinct) and by e-mail {mail_n} times ({mail_distinct} distinct Message-IDs), expected {round} each; audit chain verified: {verified}"
    );
    // Nothing lost, nothing sent twice with new content; a repeat of the same message after
    // a failover (at least once) is counted and reported above.
    ensure!(
        slack_distinct == round && mail_distinct == round,
        "{slack_distinct} Slack and {mail_distinct} e-mail messages for {round} runs"
    );
    ensure!(verified, "the audit chain does not verify");
    for w in running {
        w.stop_ok().await?;
    }
    Ok(())
}
