//! The web console in a real browser: Debian's `chromium`, headless, driven through
//! `chromedriver` (WebDriver) with `fantoccini`.
//!
//! * `warden run` with a playbook that waits for approval: an operator logs in with the API
//!   token, sees the incident, opens the pending run and approves it with a comment; the run
//!   goes on and the audit trail names `console/NAME`. A viewer logs in with the viewer token,
//!   gets no form, and a form posted from the viewer's page anyway is refused (403). The
//!   CSP and the other headers, and the session cookie's flags, are checked.
//! * `warden demo --serve`: the demo's incidents, their summaries and the watches are there
//!   with the printed read-only token.
//!
//! Screenshots go to `target/test-artifacts/console/`. Without chromium and chromedriver
//! the tests say so in one line and pass, unless `WARDEN_REQUIRE_BROWSER` is set (as
//! `tests/run.sh`, which installs them, does).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use warden_tests::procs::{warden_binary, workspace_root, ChildProcess, Warden};
use warden_tests::{free_port, http_client, wait_until};

const API_TOKEN: &str = "console-operator-token-0123456789";
const VIEWER_TOKEN: &str = "console-viewer-token-9876543210";
const CSP: &str = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

fn program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|n| std::env::split_paths(&path).map(|d| d.join(n)).find(|p| p.is_file()))
}

/// chromedriver on a free port and a headless chromium session through it.
struct Browser {
    client: Client,
    _driver: ChildProcess,
}

impl Browser {
    /// `None` (after one line saying why) when chromium or chromedriver is missing and
    /// `WARDEN_REQUIRE_BROWSER` is not set.
    async fn start(dir: &Path) -> Result<Option<Self>> {
        let (chromium, driver) = match (
            program(&["chromium", "chromium-browser", "google-chrome"]),
            program(&["chromedriver"]),
        ) {
            (Some(c), Some(d)) => (c, d),
            _ => {
                let why = "chromium or chromedriver is not installed (Debian: apt-get install chromium chromium-driver; tests/run.sh does)";
                if std::env::var_os("WARDEN_REQUIRE_BROWSER").is_some() {
                    bail!("WARDEN_REQUIRE_BROWSER is set but {why}");
                }
                // Written to stderr itself (not `eprintln!`, which the test harness captures),
                // so that the skip shows in every run.
                let _ = std::io::Write::write_all(
                    &mut std::io::stderr(),
                    format!("skipping the browser test: {why}\n").as_bytes(),
                );
                return Ok(None);
            }
        };
        let port = free_port()?;
        let mut driver = ChildProcess::spawn(
            "chromedriver",
            &driver,
            [format!("--port={port}"), "--allowed-ips=127.0.0.1".to_string()],
            &[],
            dir,
        )?;
        let url = format!("http://127.0.0.1:{port}");
        driver.wait_http_ready(&format!("{url}/status"), Duration::from_secs(30)).await?;
        let profile = dir.join("chromium-profile");
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium.display().to_string(),
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1280,1000", "--no-first-run", "--disable-extensions",
                    format!("--user-data-dir={}", profile.display()),
                ],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = tokio::time::timeout(
            Duration::from_secs(60),
            ClientBuilder::new(connector).capabilities(caps).connect(&url),
        )
        .await
        .context("chromium did not start within 60 s")?
        .with_context(|| format!("a WebDriver session with chromedriver: {}", driver.logs_tail(20)))?;
        Ok(Some(Self { client, _driver: driver }))
    }

    async fn goto(&self, url: &str) -> Result<()> {
        self.client.goto(url).await.with_context(|| format!("opening {url}"))
    }

    /// The element, waiting for it up to 10 s: a click that submits a form returns before
    /// the next page is there.
    async fn element(&self, css: &str) -> Result<fantoccini::elements::Element> {
        Ok(self.client.wait().at_most(Duration::from_secs(10)).for_element(Locator::Css(css)).await?)
    }

    async fn text(&self, css: &str) -> Result<String> {
        let e = self.element(css).await.with_context(|| format!("no element {css}"))?;
        Ok(e.text().await?)
    }

    async fn has(&self, css: &str) -> bool {
        self.client.find(Locator::Css(css)).await.is_ok()
    }

    async fn fill(&self, css: &str, text: &str) -> Result<()> {
        let e = self.element(css).await.with_context(|| format!("no field {css}"))?;
        e.send_keys(text).await?;
        Ok(())
    }

    async fn click(&self, css: &str) -> Result<()> {
        self.element(css).await.with_context(|| format!("no button {css}"))?.click().await?;
        Ok(())
    }

    /// Logs in at `base` with `token` as `name`; lands on the incidents.
    async fn login(&self, base: &str, token: &str, name: &str) -> Result<()> {
        self.goto(&format!("{base}/ui/incidents")).await?;
        ensure!(self.client.current_url().await?.path() == "/ui/login", "not sent to the login form");
        self.fill("#token", token).await?;
        if !name.is_empty() {
            self.fill("#name", name).await?;
        }
        self.click("#login-submit").await?;
        wait_until(Duration::from_secs(10), "the incidents page after login", async || {
            Ok((self.client.current_url().await?.path() == "/ui/incidents").then_some(()))
        })
        .await
    }

    /// Saves a screenshot as `target/test-artifacts/console/NAME.png`.
    async fn screenshot(&self, name: &str) -> Result<()> {
        let dir = workspace_root().join("target/test-artifacts/console");
        std::fs::create_dir_all(&dir)?;
        let png = self.client.screenshot().await?;
        ensure!(png.starts_with(b"\x89PNG"), "the screenshot is not a PNG");
        std::fs::write(dir.join(format!("{name}.png")), png)?;
        Ok(())
    }

    async fn close(self) -> Result<()> {
        self.client.close().await?;
        Ok(())
    }
}

fn config(dir: &Path, port: u16) -> Result<String> {
    let playbooks = dir.join("playbooks");
    std::fs::create_dir_all(&playbooks)?;
    std::fs::write(playbooks.join("ask-first.yaml"), warden_tests::config::ASK_FIRST_PLAYBOOK)?;
    let config = json!({
        "store": {"sqlite": dir.join("warden.db").display().to_string()},
        "server": {
            "listen": format!("127.0.0.1:{port}"),
            "api_token": {"env": "WARDEN_API_TOKEN"},
            "viewer_token": {"env": "WARDEN_VIEWER_TOKEN"},
        },
        "playbooks": {"dir": playbooks.display().to_string()},
    });
    Ok(serde_yaml::to_string(&config)?)
}

/// A firing `NeedsApproval` alert of `service`; the run it started.
async fn fire(warden: &Warden, service: &str) -> Result<i64> {
    let body = json!({"version": "4", "groupKey": service, "status": "firing", "receiver": "warden", "alerts": [
        {"status": "firing", "labels": {"alertname": "NeedsApproval", "service": service},
         "annotations": {"summary": "<img src=x onerror=alert(1)> needs a person"}, "startsAt": "2026-11-22T10:00:00Z"}
    ]});
    let r =
        http_client().post(format!("{}/api/v1/alerts", warden.url())).bearer_auth(API_TOKEN).json(&body).send().await?;
    let status = r.status();
    let v: Value = r.json().await?;
    ensure!(status.is_success(), "POST /api/v1/alerts: {status} {v}");
    v["runs"][0].as_i64().context("the alert started a run")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_approves_a_run_in_the_browser_and_a_viewer_cannot() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let Some(browser) = Browser::start(dir.path()).await? else { return Ok(()) };
    let port = free_port()?;
    let envs = [("WARDEN_API_TOKEN", API_TOKEN), ("WARDEN_VIEWER_TOKEN", VIEWER_TOKEN)];
    let warden = Warden::start(dir.path(), &config(dir.path(), port)?, &envs, port, API_TOKEN).await?;
    let base = warden.url().to_string();
    let run = fire(&warden, "checkout").await?;
    ensure!(warden.get_json(&format!("/api/v1/runs/{run}")).await?["run"]["status"] == "awaiting_approval");

    // The headers and the login cookie, as the server sends them.
    let r = http_client().get(format!("{base}/ui/login")).send().await?;
    ensure!(r.headers()["content-security-policy"] == CSP, "{:?}", r.headers());
    ensure!(r.headers()["x-content-type-options"] == "nosniff");
    ensure!(r.headers()["referrer-policy"] == "no-referrer");
    let set_cookie = r.headers()["set-cookie"].to_str()?.to_string();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
        ensure!(set_cookie.contains(flag), "{set_cookie}");
    }

    // The operator logs in and sees the incident; its (untrusted) text is shown, not run.
    browser.login(&base, API_TOKEN, "alice").await?;
    ensure!(browser.text("#who").await? == "alice (operator)");
    let list = browser.text("#incidents").await?;
    ensure!(list.contains("NeedsApproval"), "{list}");
    browser.screenshot("operator-incidents").await?;
    let cookies = browser.client.get_all_cookies().await?;
    let session = cookies.iter().find(|c| c.name() == "warden_session").context("the session cookie")?;
    ensure!(session.http_only() == Some(true), "{session:?}");
    ensure!(format!("{:?}", session.same_site()) == "Some(Strict)", "{session:?}");
    ensure!(session.path() == Some("/ui"), "{session:?}");
    ensure!(session.secure() != Some(true), "plain HTTP: not Secure: {session:?}");
    ensure!(!session.value().contains(API_TOKEN) && session.value().len() >= 64, "{session:?}");
    let js_cookies = browser.client.execute("return document.cookie", vec![]).await?;
    ensure!(js_cookies == json!(""), "HttpOnly cookies are not readable by scripts: {js_cookies}");

    // The pending run, from the approvals page.
    browser.click("#nav-approvals, header nav a[href='/ui/approvals']").await?;
    browser.click(&format!("#approvals a[href='/ui/runs/{run}']")).await?;
    ensure!(browser.text("#run-status").await? == "awaiting_approval");
    // A decision without a comment is refused on the page, nothing decided.
    browser.click("#approve").await?;
    ensure!(browser.text("#error").await?.contains("needs a comment"));
    ensure!(browser.text("#run-status").await? == "awaiting_approval");
    browser.fill("#comment", "checked the dashboards; go").await?;
    browser.screenshot("operator-run-pending").await?;
    browser.click("#approve").await?;
    let notice = browser.text("#notice").await?;
    ensure!(notice.contains("Approved"), "{notice}");
    let decided = browser.text("#decision").await?;
    ensure!(decided.contains("approved by console/alice") && decided.contains("checked the dashboards"), "{decided}");
    browser.screenshot("operator-run-approved").await?;

    // The run goes on, and the audit trail names the approver (the API says so too).
    let v = wait_until(Duration::from_secs(20), "the approved run to succeed", async || {
        let v = warden.get_json(&format!("/api/v1/runs/{run}")).await?;
        Ok((v["run"]["status"] == "succeeded").then_some(v))
    })
    .await?;
    let audit = v["audit"].as_array().context("audit")?;
    let approval = audit
        .iter()
        .find(|e| e["kind"] == "approval" && e["actor"] == "console/alice")
        .with_context(|| format!("no approval by console/alice in {audit:?}"))?;
    ensure!(approval["detail"].to_string().contains("checked the dashboards"), "{approval}");
    browser.goto(&format!("{base}/ui/runs/{run}")).await?;
    ensure!(browser.text("#run-status").await? == "succeeded");
    ensure!(browser.text("#audit").await?.contains("console/alice"));

    // A viewer: reads, gets no form, and a form sent anyway is refused.
    let second = fire(&warden, "payments").await?;
    browser.click("header form.who button").await?;
    ensure!(browser.client.current_url().await?.path() == "/ui/login");
    browser.login(&base, VIEWER_TOKEN, "").await?;
    ensure!(browser.text("#who").await? == "viewer (viewer)");
    browser.goto(&format!("{base}/ui/runs/{second}")).await?;
    ensure!(browser.text("#run-status").await? == "awaiting_approval");
    ensure!(!browser.has("#approve").await, "a viewer is shown the approve form");
    ensure!(browser.has("#viewer-note").await);
    browser.screenshot("viewer-run").await?;
    // The viewer's own session and CSRF token, in a form the page does not offer.
    let forge = format!(
        "var f = document.createElement('form'); f.method = 'post'; f.action = '/ui/runs/{second}/approve';
         var c = document.createElement('input'); c.name = 'csrf'; c.value = document.querySelector('input[name=csrf]').value; f.appendChild(c);
         var m = document.createElement('input'); m.name = 'comment'; m.value = 'sneaky'; f.appendChild(m);
         document.body.appendChild(f); f.submit();"
    );
    browser.client.execute(&forge, vec![]).await?;
    wait_until(Duration::from_secs(10), "the refusal page", async || Ok(browser.has("#message").await.then_some(())))
        .await?;
    let refused = browser.text("#message").await?;
    ensure!(refused.contains("viewer token"), "{refused}");
    browser.screenshot("viewer-refused").await?;
    ensure!(warden.get_json(&format!("/api/v1/runs/{second}")).await?["run"]["status"] == "awaiting_approval");

    browser.close().await?;
    let status = warden.stop().await?;
    ensure!(status.success(), "warden exited with {status}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_serves_its_incidents_with_a_printed_read_only_token() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let Some(browser) = Browser::start(dir.path()).await? else { return Ok(()) };
    let port = free_port()?;
    let out = dir.path().join("demo");
    let mut demo = ChildProcess::spawn(
        "demo",
        &warden_binary()?,
        ["demo".to_string(), "--out".into(), out.display().to_string(), "--serve".into(), format!("127.0.0.1:{port}")],
        &[],
        dir.path(),
    )?;
    demo.print_logs_on_drop = true;
    let stdout = demo.stdout_path().to_path_buf();
    let (url, token) = wait_until(Duration::from_secs(240), "the demo's console URL and token", async || {
        demo.ensure_running()?;
        let text = std::fs::read_to_string(&stdout).unwrap_or_default();
        let url = text.lines().find_map(|l| l.strip_prefix("console: ")).map(str::to_string);
        let token =
            text.lines().find_map(|l| l.strip_prefix("read-only token (paste it at the login): ")).map(str::to_string);
        Ok(url.zip(token))
    })
    .await?;
    ensure!(url == format!("http://127.0.0.1:{port}/ui/"), "{url}");
    ensure!(token.len() == 64 && token.chars().all(|c| c.is_ascii_hexdigit()), "{token}");
    let base = url.trim_end_matches("/ui/").to_string();
    // The token reads and nothing else: the demo's API has no operator.
    let r = http_client().get(format!("{base}/api/v1/incidents")).bearer_auth(&token).send().await?;
    ensure!(r.status() == 200);
    let incidents: Value = r.json().await?;
    let count = incidents["incidents"].as_array().map(Vec::len).unwrap_or(0);
    ensure!(count >= 5, "the demo opened {count} incidents");

    browser.login(&base, &token, "newcomer").await?;
    ensure!(browser.text("#who").await? == "newcomer (viewer)");
    browser.goto(&format!("{base}/ui/incidents?status=all")).await?;
    let rows = browser.client.find_all(Locator::Css("#incidents tbody tr")).await?;
    ensure!(rows.len() == count.min(50), "{} rows for {count} incidents", rows.len());
    let list = browser.text("#incidents").await?;
    ensure!(list.contains("checkout"), "{list}");
    browser.screenshot("demo-incidents").await?;
    // An analysed incident: summary, who wrote it, ranked causes and evidence.
    let first = incidents["incidents"].as_array().and_then(|a| a.last()).context("an incident")?["id"].clone();
    browser.goto(&format!("{base}/ui/incidents/{first}")).await?;
    ensure!(!browser.text("#summary").await?.is_empty());
    ensure!(browser.text("#author").await? == "template", "no model in the demo: the template wrote it");
    ensure!(browser.has("#causes").await && browser.has("#evidence").await);
    browser.screenshot("demo-incident").await?;
    browser.goto(&format!("{base}/ui/watches")).await?;
    let watches = browser.text("#watches").await?;
    ensure!(watches.contains("checkout"), "{watches}");
    browser.screenshot("demo-watches").await?;
    browser.close().await?;

    let status = demo.terminate(Duration::from_secs(20)).await?;
    ensure!(status.success(), "the demo exited with {status} on SIGTERM");
    demo.print_logs_on_drop = false;
    Ok(())
}
