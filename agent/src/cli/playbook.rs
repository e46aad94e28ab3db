//! `warden playbook`, `warden runs`, `warden approve` and `warden audit`.
//!
//! These work on the same SQLite store as the daemon. `playbook run` and `approve` act from
//! this process (like `kubectl`): they load the config's cluster and metrics connections and
//! advance the run until it waits; a run left waiting is continued by the daemon (or by
//! the next `warden playbook run`/`approve` that follows it). The store's target lock keeps
//! the two from acting on one target at once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use chrono::Utc;
use serde_json::json;
use warden_playbooks::engine::StartRequest;
use warden_playbooks::load::Catalog;
use warden_playbooks::run::{Run, RunStatus, StepState, Target, TriggerInfo};
use warden_playbooks::spec::TargetKind;
use warden_playbooks::template::Vars;

use crate::act::remediation::{Remediation, RunNotices};
use crate::app::assemble::{build_channels, build_cluster, build_prometheus};
use crate::config::Config;
use crate::ingest::source::MetricSource;
use crate::store::Store;
use crate::timeline::Timeline;

/// Who is acting, for the audit trail: `--as`, else `$USER`.
pub fn actor(given: Option<String>) -> String {
    let who = given.or_else(|| std::env::var("USER").ok()).unwrap_or_else(|| "unknown".into());
    format!("user/{who}")
}

fn catalog(cfg: Option<&Config>) -> Result<Catalog> {
    Catalog::load(cfg.and_then(|c| c.playbooks.dir.as_deref())).map_err(|e| anyhow!("{e}"))
}

pub fn list(cfg: Option<&Config>, json_out: bool) -> Result<()> {
    let cat = catalog(cfg)?;
    let defaults = warden_playbooks::guards::GuardSettings::default()
        .overlay(&cfg.map(|c| c.playbooks.guards.clone()).unwrap_or_default());
    if json_out {
        let list: Vec<_> = cat.iter().map(|e| &e.playbook)
            .map(|pb| json!({"name": pb.name, "description": pb.description, "target": pb.target, "autonomy": defaults.overlay(&pb.guards).autonomy.as_str(), "triggers": pb.triggers}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&json!({"playbooks": list}))?);
        return Ok(());
    }
    println!("{:<28} {:<11} {:<10} DESCRIPTION", "NAME", "TARGET", "AUTONOMY");
    for pb in cat.iter().map(|e| &e.playbook) {
        let first_line = pb.description.lines().next().unwrap_or_default();
        println!(
            "{:<28} {:<11} {:<10} {first_line}",
            pb.name,
            pb.target.to_string(),
            defaults.overlay(&pb.guards).autonomy.as_str()
        );
    }
    Ok(())
}

pub fn show(cfg: Option<&Config>, name: &str, json_out: bool) -> Result<()> {
    let cat = catalog(cfg)?;
    let pb = cat.get(name).ok_or_else(|| anyhow!("no playbook named {name:?} (known: {})", cat.names().join(", ")))?;
    let guards = warden_playbooks::guards::GuardSettings::default()
        .overlay(&cfg.map(|c| c.playbooks.guards.clone()).unwrap_or_default())
        .overlay(&pb.guards);
    if json_out {
        println!("{}", serde_json::to_string_pretty(&json!({"playbook": pb, "effective_guards": guards}))?);
    } else {
        // The playbook as written (its comments, no defaults filled in), then the guards that
        // apply to it with durations as they are written in YAML.
        let source = cat.source(name);
        let text = match source {
            Some(warden_playbooks::load::Source::File(path)) => {
                std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
            }
            _ => match warden_playbooks::builtin::builtin_text(name) {
                Some(text) => text.to_string(),
                None => serde_yaml::to_string(pb)?,
            },
        };
        match source {
            Some(s) => println!("# {name}: {s}"),
            None => println!("# {name}"),
        }
        print!("{text}");
        if !text.ends_with('\n') {
            println!();
        }
        println!("# effective guards (global defaults, then the playbook's own):");
        let guards = humanize_durations(serde_json::to_value(&guards)?);
        for line in serde_yaml::to_string(&guards)?.lines() {
            println!("#   {line}");
        }
    }
    Ok(())
}

/// Guard durations (`cooldown`, `approval_ttl`, serialised as seconds) as `10m`, `1h`.
fn humanize_durations(mut value: serde_json::Value) -> serde_json::Value {
    if let Some(map) = value.as_object_mut() {
        for key in ["cooldown", "approval_ttl"] {
            if let Some(secs) = map.get(key).and_then(serde_json::Value::as_f64).filter(|s| s.is_finite() && *s >= 0.0)
            {
                let d = Duration::from_millis((secs * 1000.0).round() as u64);
                map.insert(key.to_string(), json!(humantime::format_duration(d).to_string()));
            }
        }
    }
    value
}

/// One audit entry's detail on one line: `key=value` per field (nested values as compact
/// JSON), each value cut at 80 characters and the line at 240; `runs show --json` has it whole.
pub fn audit_detail(detail: &serde_json::Value) -> String {
    fn cut(s: &str, max: usize) -> String {
        if s.chars().count() <= max {
            s.to_string()
        } else {
            s.chars().take(max).chain(std::iter::once('…')).collect()
        }
    }
    let line = match detail {
        serde_json::Value::Object(map) => map
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| {
                let value = match v {
                    serde_json::Value::String(s) if !s.is_empty() && !s.contains(char::is_whitespace) => s.clone(),
                    serde_json::Value::String(s) => format!("{s:?}"),
                    other => other.to_string(),
                };
                format!("{k}={}", cut(&value, 80))
            })
            .collect::<Vec<_>>()
            .join(" "),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    };
    cut(&line, 240)
}

/// The connections a run needs, from the config.
pub async fn remediation(cfg: Config) -> Result<(Arc<Remediation>, Arc<Store>)> {
    warden_connectors::install_crypto_provider();
    let cfg = Arc::new(cfg);
    let store = Arc::new(crate::app::assemble::open_store(&cfg.store)?);
    let source: Option<Arc<dyn MetricSource>> = build_prometheus(&cfg)?.map(|p| Arc::new(p) as Arc<dyn MetricSource>);
    let cluster = build_cluster(&cfg).await?;
    let channels = crate::notify::Routes::new(build_channels(&cfg)?.names(), &cfg.notify.routes);
    let notices = Arc::new(RunNotices {
        store: store.clone(),
        channels,
        outbox_wake: Arc::new(tokio::sync::Notify::new()),
        timeline: Timeline::default(),
        late: Arc::default(),
    });
    let hand_off = cfg.leader_election.enabled;
    let mut rem = Remediation::new(cfg, store.clone(), source, cluster, notices).map_err(|e| anyhow!(e))?;
    if hand_off {
        // With leader election only the leader acts: this process records the run or the
        // decision, and the leader sends the requests (see `HandToLeader`).
        rem.runs.fencing = Some(Arc::new(crate::act::fencing::HandToLeader));
    }
    Ok((Arc::new(rem), store))
}

/// The first step of `pb` that acts on a cluster (every mutating action but `http`).
fn cluster_action(pb: &warden_playbooks::spec::Playbook) -> Option<&'static str> {
    pb.steps
        .iter()
        .flat_map(|s| s.actions())
        .map(|a| a.key())
        .find(|key| warden_playbooks::actions::is_mutating(key) && *key != "http")
}

pub struct RunArgs {
    pub name: String,
    pub params: Vec<(String, String)>,
    pub target: Option<String>,
    pub dry_run: bool,
    pub actor: String,
    pub detach: bool,
}

pub async fn run(cfg: Config, a: RunArgs) -> Result<bool> {
    let has_cluster = cfg.kubernetes.is_some();
    let (rem, _) = remediation(cfg).await?;
    let pb = rem
        .catalog
        .get(&a.name)
        .cloned()
        .ok_or_else(|| anyhow!("no playbook named {:?} (known: {})", a.name, rem.catalog.names().join(", ")))?;
    // Refused up front rather than stored as a run that fails at its first step.
    if !has_cluster {
        if let Some(key) = cluster_action(&pb) {
            bail!(
                "playbook {} has a `{key}` step, which acts on a cluster, and the configuration has no \
                 `kubernetes` section: add one (see docs/configuration.md)",
                pb.name
            );
        }
    }
    let target = match (&a.target, pb.target) {
        (Some(t), kind) if kind != TargetKind::None => {
            Some(Target::parse(kind, t).map_err(|e| anyhow!("--target: {e}"))?)
        }
        (Some(_), _) => bail!("playbook {} takes no --target", pb.name),
        (None, TargetKind::None) => None,
        (None, kind) => bail!(
            "playbook {} needs --target ({})",
            pb.name,
            if kind == TargetKind::Node { "a node name" } else { "namespace/deployment" }
        ),
    };
    let params: BTreeMap<String, String> = a.params.into_iter().collect();
    let req = StartRequest {
        playbook: pb,
        params,
        target,
        trigger: TriggerInfo { kind: "manual".into(), actor: a.actor, incident_id: None, detail: json!({}) },
        vars: Vars::new(),
        has_data: None,
        dry_run: a.dry_run,
        now: Utc::now(),
    };
    let run = rem.runs.start(req).await.map_err(|e| anyhow!("{e}"))?;
    follow(&rem, run, a.detach).await
}

pub async fn approve(
    cfg: Config,
    id: i64,
    deny: bool,
    comment: Option<String>,
    actor: String,
    detach: bool,
) -> Result<bool> {
    let (rem, _) = remediation(cfg).await?;
    let run = rem.runs.decide(id, &actor, !deny, comment, Utc::now()).await.map_err(|e| anyhow!("{e}"))?;
    follow(&rem, run, detach).await
}

/// Print the run and keep advancing it on the wall clock until it ends (or, with
/// `detach`, until it first waits). Returns whether it ended well.
async fn follow(rem: &Remediation, mut run: Run, detach: bool) -> Result<bool> {
    print_run(&run);
    if rem.config.leader_election.enabled && run.status.is_advancing() && !detach {
        eprintln!("run {}: leader election is on: the leader sends its requests; following it in the store", run.id);
    }
    while run.status.is_advancing() && !detach {
        if rem.config.leader_election.enabled {
            // Only the leader advances the run: watch the store for what it did.
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = rem.runs.store.get_run(run.id).map_err(|e| anyhow!("{e}"))?.context("the run is gone")?;
            if now.updated_at != run.updated_at || now.status != run.status {
                print_run(&now);
            }
            run = now;
            continue;
        }
        let wait = run
            .wake_at
            .map(|w| (w - Utc::now()).to_std().unwrap_or(Duration::ZERO))
            .unwrap_or(Duration::from_secs(1))
            .clamp(Duration::from_millis(200), Duration::from_secs(30));
        if let Some(w) = run.wake_at {
            eprintln!("run {}: waiting until {} ...", run.id, w.format("%H:%M:%S UTC"));
        }
        tokio::time::sleep(wait).await;
        run = rem.runs.advance(run.id, Utc::now()).await.map_err(|e| anyhow!("{e}"))?;
        print_run(&run);
    }
    if run.status.is_advancing() {
        println!("run {} continues in the background (the daemon advances it); `warden runs show {}`", run.id, run.id);
    }
    Ok(matches!(
        run.status,
        RunStatus::Succeeded
            | RunStatus::Observed
            | RunStatus::AwaitingApproval
            | RunStatus::Running
            | RunStatus::Reverting
    ))
}

fn step_line(s: &StepState) -> String {
    let mut line = format!("  {:<3} {:<24} {:<10} {:<9}", s.index + 1, s.name, s.action, s.status.as_str());
    if let Some(t) = s.result.as_ref().and_then(|r| r.get("summary")).and_then(|v| v.as_str()) {
        line.push_str(&format!(" {t}"));
    } else if let Some(p) = s.result.as_ref().and_then(|r| r.get("preview")) {
        line.push_str(&format!(" would {}", warden_playbooks::engine::describe_plan(&s.action, p)));
    } else if let Some(p) = &s.plan {
        if s.status.as_str() != "done" {
            line.push_str(&format!(" {}", warden_playbooks::engine::describe_plan(&s.action, p)));
        }
    }
    if let Some(r) = &s.refusal {
        line.push_str(&format!(" [{r}]"));
    }
    if let Some(e) = &s.error {
        line.push_str(&format!(" [error: {e}]"));
    }
    if let Some(w) = s.wake_at {
        line.push_str(&format!(" (until {})", w.format("%H:%M:%S UTC")));
    }
    line
}

pub fn print_run(run: &Run) {
    println!(
        "run {} {} [{}]{} trigger {} by {}",
        run.id,
        run.title(),
        run.status,
        if run.dry_run { " dry-run" } else { "" },
        run.trigger.kind,
        run.trigger.actor
    );
    if let Some(r) = &run.refusal {
        println!("  refused: {r}");
    } else if let Some(r) = &run.reason {
        println!("  {r}");
    }
    if let Some(a) = &run.approval {
        match (&a.decided_by, a.approved) {
            (Some(by), Some(ok)) => println!("  {} by {by}", if ok { "approved" } else { "denied" }),
            _ => println!(
                "  approval requested; expires {}: `warden approve {}`",
                a.expires_at.format("%Y-%m-%d %H:%M:%S UTC"),
                run.id
            ),
        }
    }
    for s in &run.steps {
        println!("{}", step_line(s));
    }
    if !run.revert_steps.is_empty() {
        println!("  revert:");
        for s in &run.revert_steps {
            println!("{}", step_line(s));
        }
    }
}

pub fn runs_list(store: &Store, status: Option<String>, json_out: bool, limit: u32) -> Result<()> {
    let status = match status.as_deref() {
        None => None,
        Some(s) => Some(RunStatus::parse(s).ok_or_else(|| anyhow!("unknown run status {s:?}"))?),
    };
    let runs = store.list_runs(status, None, limit)?;
    if json_out {
        println!("{}", serde_json::to_string_pretty(&json!({"runs": runs}))?);
        return Ok(());
    }
    if runs.is_empty() {
        println!("no runs");
        return Ok(());
    }
    println!(
        "{:>5}  {:<17} {:<26} {:<22} {:<8} {:<20} DETAIL",
        "ID", "STATUS", "PLAYBOOK", "TARGET", "TRIGGER", "STARTED"
    );
    for r in runs {
        let target = r.target.as_ref().map(|t| t.to_string()).unwrap_or_else(|| "-".into());
        let detail = match &r.refusal {
            Some(x) => x.to_string(),
            None => r.summary(),
        };
        println!(
            "{:>5}  {:<17} {:<26} {:<22} {:<8} {:<20} {detail}",
            r.id,
            r.status.as_str(),
            r.playbook,
            target,
            r.trigger.kind,
            r.created_at.format("%Y-%m-%d %H:%M:%S")
        );
    }
    Ok(())
}

/// `warden audit list`: the latest entries, oldest first, one line each.
pub fn audit_list(
    store: &Store,
    run: Option<i64>,
    kind: Option<warden_playbooks::audit::AuditKind>,
    last: u32,
    json_out: bool,
) -> Result<()> {
    let entries = store.audit_query(run, kind, Some(last))?;
    if json_out {
        println!("{}", serde_json::to_string_pretty(&entries)?);
        return Ok(());
    }
    if entries.is_empty() {
        println!("no audit entries");
    }
    for e in entries {
        let run = e.run_id.map(|r| format!("run {r}")).unwrap_or_else(|| "-".into());
        println!(
            "#{:<5} {} {:<8} {:<9} {:<22} {}",
            e.seq,
            e.at.format("%Y-%m-%d %H:%M:%S"),
            run,
            e.kind.as_str(),
            e.actor,
            audit_detail(&e.detail)
        );
    }
    Ok(())
}

pub fn runs_show(store: &Store, id: i64, json_out: bool) -> Result<()> {
    let run = store.get_run(id)?.ok_or_else(|| anyhow!("no run {id}"))?;
    let audit = store.audit_for_run(id)?;
    if json_out {
        println!("{}", serde_json::to_string_pretty(&json!({"run": run, "audit": audit}))?);
        return Ok(());
    }
    print_run(&run);
    println!("  audit:");
    for e in audit {
        println!(
            "    #{:<5} {} {:<9} {:<22} {}",
            e.seq,
            e.at.format("%H:%M:%S"),
            e.kind.as_str(),
            e.actor,
            audit_detail(&e.detail)
        );
    }
    Ok(())
}

/// `warden audit verify`: exit 0 when the chain is intact and ends where the audit head
/// (kept beside it, in the same transactions) says it ends.
pub fn audit_verify(store: &Store, json_out: bool) -> Result<bool> {
    let entries = store.audit_entries()?;
    let head = store.audit_head()?;
    let result = warden_playbooks::audit::verify_with_head(&entries, head.as_ref());
    if json_out {
        let chain_head =
            entries.last().map(|e| e.hash.clone()).unwrap_or_else(|| warden_playbooks::audit::GENESIS.to_string());
        let mut out = json!({
            "intact": result.is_ok(),
            "entries": entries.len(),
            "chain_head": chain_head,
            "head": head.as_ref().map(|h| json!({"count": h.count, "last_hash": h.last_hash})),
        });
        if let Err(b) = &result {
            out["broken_at"] = json!(b.seq);
            out["reason"] = json!(b.reason);
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(result.is_ok());
    }
    match result {
        Ok(s) => {
            println!("audit trail intact: {} entries, head {}", s.entries, s.head);
            Ok(true)
        }
        Err(b) => {
            eprintln!("audit trail BROKEN at entry {}: {}", b.seq, b.reason);
            Ok(false)
        }
    }
}

#[cfg(test)]
mod output_tests {
    use super::*;

    #[test]
    fn playbooks_that_act_on_a_cluster_are_told_apart_from_webhook_only_ones() {
        let pb = |yaml: &str| serde_yaml::from_str::<warden_playbooks::spec::Playbook>(yaml).expect("playbook");
        let scale = pb("name: s\nsteps:\n  - wait: {for: 1s}\n  - scale: {by: 1}\n");
        assert_eq!(cluster_action(&scale), Some("scale"));
        let hook = pb("name: h\ntarget: none\nsteps:\n  - http: {url: 'http://127.0.0.1:9/x'}\n  - wait: {for: 1s}\n");
        assert_eq!(cluster_action(&hook), None);
    }

    #[test]
    fn audit_details_are_one_short_line() {
        let long = "x".repeat(900);
        let detail = json!({"step": "scale", "status": "succeeded", "plan": {"replicas": {"from": 2, "to": 3}}, "note": "two words", "blob": long, "none": null});
        let line = audit_detail(&detail);
        assert!(line.starts_with("blob=xxx"), "{line}");
        assert!(line.contains("note=\"two words\""), "{line}");
        assert!(line.contains(r#"plan={"replicas":{"from":2,"to":3}}"#), "{line}");
        assert!(line.contains("step=scale") && line.contains("status=succeeded"), "{line}");
        assert!(!line.contains("none="), "{line}");
        assert!(line.chars().count() <= 241, "{} characters", line.chars().count());
        assert_eq!(audit_detail(&json!(null)), "");
    }

    #[test]
    fn guard_durations_read_as_written() {
        let v = humanize_durations(json!({"cooldown": 600.0, "approval_ttl": 3600.0, "max_attempts": 3}));
        assert_eq!(v, json!({"cooldown": "10m", "approval_ttl": "1h", "max_attempts": 3}));
    }
}
