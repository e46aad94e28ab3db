//! `warden bench console`: the web console's response time on a large store.
//!
//! A temporary SQLite store is filled with `--incidents` incidents (10,000 by default), each
//! with its opening event, a note, an analysis (8 evidence items, 3 ranked causes, a
//! summary) and most of them resolved; 200 alerts start runs that wait for approval (the
//! runs and approvals pages), and 20 silences are created. Each console page is then asked
//! `--requests` times in-process (the daemon's router, a logged-in operator's cookie, the
//! body read to the end) and the median and 99th percentile are printed beside the 50 ms
//! target. Debug builds are much slower than release builds; the table says which ran.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use chrono::{TimeDelta, Utc};
use serde_json::json;
use tower::ServiceExt;

use crate::analysis::Analysis;
use crate::api::AppState;
use crate::app::assemble::NoSource;
use crate::pipeline::Pipeline;
use crate::store::{IncidentSignal, Store, TargetRef};

/// The target of the issue: every page under this.
pub const TARGET: Duration = Duration::from_millis(50);
/// Runs waiting for approval in the store.
const RUNS: usize = 200;

/// A playbook that waits for approval, started by a `NeedsApproval` alert (the bench's runs
/// and the console's tests).
pub(crate) const PLAYBOOK: &str = "\
name: ask-first
target: none
triggers:
  - alert: {labels: {alertname: NeedsApproval}}
guards: {autonomy: recommend}
steps:
  - name: say
    notify: {message: 'approved work ran'}
";

/// One page's figures.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PageTime {
    pub page: String,
    pub median_ms: f64,
    pub p99_ms: f64,
    pub bytes: usize,
}

/// A temporary directory removed on drop (the binary has no `tempfile`).
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn analysis(id: i64, at: chrono::DateTime<Utc>) -> Result<Analysis> {
    let t = at.timestamp();
    let evidence: Vec<serde_json::Value> = (1..=8)
        .map(|n| {
            let subject = json!({"kind": "workload", "namespace": "shop", "name": format!("svc-{}", (id + n) % 40)});
            let payload = match n % 4 {
                0 => json!({"type": "anomaly", "watch": "latency", "metric": "latency-p95", "observed": 0.93, "expected": 0.21, "score": 7.5}),
                1 => json!({"type": "change", "change": "rollout", "from": "shop/api:1.4.2", "to": "shop/api:1.4.3", "description": "rollout of shop/api <script>x</script>"}),
                2 => json!({"type": "kube_event", "reason": "BackOff", "message": "Back-off restarting failed container api in pod api-7d9f (untrusted text)", "count": 12, "object": "Pod/api-7d9f"}),
                _ => json!({"type": "log_signal", "signal": "error_burst", "template": "ERROR <*> timeout after <*> ms calling payments", "count": 431}),
            };
            json!({"id": format!("E{n}"), "time": t - 600 + n * 30, "subject": subject, "payload": payload})
        })
        .collect();
    let candidates: Vec<serde_json::Value> = (0..3)
        .map(|n| {
            json!({
                "subject": {"kind": "workload", "namespace": "shop", "name": format!("svc-{}", (id + n) % 40)},
                "cause": "workload",
                "score": 0.9 - n as f64 * 0.2,
                "evidence": ["E1", "E2", "E3"],
                "reasons": ["moved first", "rollout 3m before the first anomaly"],
            })
        })
        .collect();
    let v = json!({
        "incident_id": id,
        "created_at": at,
        "found": true,
        "ranking": {"candidates": candidates},
        "evidence": evidence,
        "summary": {
            "text": "The probable cause is the rollout of shop/api [E1]: latency rose 3 minutes later [E4].",
            "source": "template",
            "fallback_reason": "no model",
        },
    });
    serde_json::from_value(v).context("the bench's analysis")
}

/// Fill `store` with `n` incidents, most of them resolved.
fn fill(store: &Store, n: usize) -> Result<()> {
    let start = Utc::now() - TimeDelta::days(30);
    for i in 0..n {
        let at = start + TimeDelta::minutes(i as i64 * 4);
        let sig = IncidentSignal {
            fingerprint: format!("bench-{i}"),
            watch: format!("watch-{}", i % 25),
            source: "watch".into(),
            severity: if i % 7 == 0 { "critical" } else { "warning" }.into(),
            title: format!("p95 latency of shop/svc-{} above its baseline <b>{i}</b>", i % 40),
            labels: [
                ("namespace".to_string(), "shop".to_string()),
                ("deployment".to_string(), format!("svc-{}", i % 40)),
            ]
            .into_iter()
            .collect(),
            target: Some(TargetRef { namespace: "shop".into(), deployment: format!("svc-{}", i % 40) }),
            observed: Some(0.93),
            expected: Some(0.21),
            lower: None,
            upper: Some(0.4),
            score: Some(7.5),
            detector: Some("auto".into()),
        };
        let incident = store.open_incident(&sig, at, &json!({"observed": 0.93, "series": 1}), |_| vec![])?;
        store.add_event(
            incident.id,
            at + TimeDelta::seconds(30),
            "note",
            &json!({"text": "log line: <img src=x>"}),
            &[],
        )?;
        store.save_analysis(&analysis(incident.id, at + TimeDelta::seconds(60))?, |_| vec![])?;
        if i % 10 != 0 {
            store.resolve_incident(
                incident.id,
                at + TimeDelta::minutes(20),
                &json!({"reason": "back to normal"}),
                None,
                |_| vec![],
            )?;
        }
    }
    Ok(())
}

async fn call(app: &Router, method: &str, uri: &str, cookie: Option<&str>, body: Option<String>) -> Result<Answer> {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(c) = cookie {
        req = req.header(header::COOKIE, c);
    }
    let body = match body {
        Some(b) => {
            req = req.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
            Body::from(b)
        }
        None => Body::empty(),
    };
    let resp = app.clone().oneshot(req.body(body)?).await.map_err(|e| anyhow!("{e}"))?;
    let status = resp.status();
    let cookies: Vec<String> =
        resp.headers().get_all(header::SET_COOKIE).iter().filter_map(|v| v.to_str().ok()).map(str::to_string).collect();
    let bytes = axum::body::to_bytes(resp.into_body(), 64 << 20).await?;
    Ok(Answer { status, cookies, body: String::from_utf8_lossy(&bytes).into_owned() })
}

struct Answer {
    status: StatusCode,
    cookies: Vec<String>,
    body: String,
}

fn cookie_pair(cookies: &[String], name: &str) -> Result<String> {
    cookies
        .iter()
        .find(|c| c.starts_with(&format!("{name}=")))
        .and_then(|c| c.split(';').next())
        .map(str::to_string)
        .with_context(|| format!("no {name} cookie"))
}

/// Log in through the console's form; the session cookie.
async fn login(app: &Router, token: &str) -> Result<String> {
    let form = call(app, "GET", "/ui/login", None, None).await?;
    let at = form.body.find("name=\"csrf\" value=\"").context("the login form")? + 19;
    let csrf = form.body[at..].split('"').next().unwrap_or_default().to_string();
    let login_cookie = cookie_pair(&form.cookies, crate::api::console::LOGIN_COOKIE)?;
    let r = call(app, "POST", "/ui/login", Some(&login_cookie), Some(format!("csrf={csrf}&token={token}&name=bench")))
        .await?;
    if r.status != StatusCode::SEE_OTHER {
        bail!("login answered {}", r.status);
    }
    cookie_pair(&r.cookies, crate::api::console::SESSION_COOKIE)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Run the bench: fill, then time each page `requests` times.
pub async fn run(incidents: usize, requests: usize, json_out: bool, out: &mut dyn Write) -> Result<Vec<PageTime>> {
    let dir = TempDir(std::env::temp_dir().join(format!("warden-bench-console-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).with_context(|| format!("creating {}", dir.0.display()))?;
    std::fs::write(dir.0.join("ask-first.yaml"), PLAYBOOK)?;
    let store = Arc::new(Store::open(&dir.0.join("warden.db"))?);
    let filling = Instant::now();
    fill(&store, incidents)?;
    let cfg = crate::config::parse_str(
        &format!("playbooks: {{ dir: '{}' }}\n", dir.0.display()),
        std::path::Path::new("bench.yaml"),
    )
    .map_err(|e| anyhow!("{e}"))?;
    let pipeline = Pipeline::new(
        Arc::new(cfg),
        store.clone(),
        Arc::new(NoSource),
        None,
        Arc::new(crate::metrics::Metrics::new()),
        vec![],
        crate::timeline::Timeline::default(),
    );
    for r in 0..RUNS {
        let payload: warden_connectors::alertmanager::WebhookPayload = serde_json::from_value(json!({
            "version": "4", "groupKey": format!("g{r}"), "status": "firing", "receiver": "bench",
            "alerts": [{"status": "firing", "labels": {"alertname": "NeedsApproval", "service": format!("s{r}")},
                        "annotations": {}, "startsAt": Utc::now().to_rfc3339()}]
        }))?;
        pipeline.handle_alerts(&payload, Utc::now()).await.map_err(|e| anyhow!("{e}"))?;
    }
    let now = Utc::now();
    for s in 0..20 {
        let new = crate::incident::silence::check_request(
            crate::incident::silence::SilenceRequest {
                matchers: vec![format!("namespace=team-{s}")],
                starts_at: None,
                ends_at: None,
                duration: Some(Duration::from_secs(3600)),
                created_by: "bench".into(),
                comment: "bench".into(),
            },
            now,
        )
        .map_err(|e| anyhow!(e))?;
        store.add_silence(&new, now)?;
    }
    let filled = filling.elapsed();
    let app = crate::api::server::router(AppState {
        pipeline: Arc::new(pipeline),
        api_token: Some(Arc::from("bench-operator")),
        viewer_token: None,
        ready: Arc::new(AtomicBool::new(true)),
        slack: None,
    });
    let cookie = login(&app, "bench-operator").await?;
    let total = store.list_incidents(None, u32::MAX)?.len();
    let mid = (incidents / 2).max(1);
    let run_id = store.list_runs(None, None, 1)?.first().map(|r| r.id).unwrap_or(1);
    let deep = (incidents as u32 * 9 / 10 / crate::api::console::incidents::PAGE).max(1);
    let pages = [
        "/ui/incidents".to_string(),
        "/ui/incidents?status=open".into(),
        format!("/ui/incidents?status=resolved&page={deep}"),
        format!("/ui/incidents/{mid}"),
        "/ui/runs".into(),
        format!("/ui/runs/{run_id}"),
        "/ui/approvals".into(),
        "/ui/watches".into(),
        "/ui/silences".into(),
        // The login form, asked without a session (with one it sends to the incidents).
        "/ui/login".into(),
    ];
    let mut results = Vec::new();
    for page in &pages {
        let cookie = (page != "/ui/login").then_some(cookie.as_str());
        let mut bytes = 0;
        for _ in 0..3 {
            let r = call(&app, "GET", page, cookie, None).await?;
            if r.status != StatusCode::OK {
                bail!("{page} answered {}", r.status);
            }
            if page.starts_with("/ui/incidents/")
                && !(r.body.contains("id=\"causes\"") && r.body.contains("id=\"evidence\""))
            {
                bail!("{page} shows no analysis");
            }
            if page == "/ui/runs" && !r.body.contains("id=\"older-runs\"") {
                bail!("{page} has no link to older runs ({RUNS} runs)");
            }
            bytes = r.body.len();
        }
        let mut times = Vec::with_capacity(requests);
        for _ in 0..requests {
            let t = Instant::now();
            let r = call(&app, "GET", page, cookie, None).await?;
            times.push(t.elapsed());
            if r.status != StatusCode::OK {
                bail!("{page} answered {}", r.status);
            }
        }
        times.sort();
        results.push(PageTime {
            page: page.clone(),
            median_ms: percentile(&times, 50.0).as_secs_f64() * 1000.0,
            p99_ms: percentile(&times, 99.0).as_secs_f64() * 1000.0,
            bytes,
        });
    }
    let build = if cfg!(debug_assertions) { "debug" } else { "release" };
    if json_out {
        writeln!(
            out,
            "{}",
            json!({"build": build, "incidents": total, "runs": RUNS, "requests": requests,
                   "fill_seconds": filled.as_secs_f64(), "target_ms": TARGET.as_millis() as u64, "pages": results})
        )?;
        return Ok(results);
    }
    writeln!(
        out,
        "console pages ({build} build), {total} incidents, {RUNS} runs awaiting approval, {requests} requests per page (store filled in {:.1} s)",
        filled.as_secs_f64()
    )?;
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::NOTHING);
    table.set_header(["PAGE", "MEDIAN ms", "P99 ms", "BYTES", "< 50 ms"]);
    for r in &results {
        table.add_row([
            r.page.clone(),
            format!("{:.2}", r.median_ms),
            format!("{:.2}", r.p99_ms),
            r.bytes.to_string(),
            if r.p99_ms < TARGET.as_secs_f64() * 1000.0 { "yes" } else { "NO" }.to_string(),
        ]);
    }
    writeln!(out, "{table}")?;
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_bench_times_every_page_of_a_filled_store() {
        let mut out = Vec::new();
        let results = run(120, 3, false, &mut out).await.expect("bench");
        let text = String::from_utf8_lossy(&out);
        assert_eq!(results.len(), 10, "{text}");
        assert!(results.iter().all(|r| r.bytes > 0 && r.median_ms > 0.0 && r.p99_ms >= r.median_ms), "{text}");
        assert!(text.contains("120 incidents") || text.contains("320 incidents"), "{text}");
        assert!(text.contains("/ui/incidents/60") && text.contains("P99 ms"), "{text}");
        assert_eq!(percentile(&[Duration::from_millis(1), Duration::from_millis(9)], 50.0), Duration::from_millis(1));
        assert_eq!(percentile(&[Duration::from_millis(1), Duration::from_millis(9)], 99.0), Duration::from_millis(9));
    }
}
