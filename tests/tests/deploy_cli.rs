//! An operator's first hour with the `warden` binary, as found when installing it: every
//! missing secret and file reported at once (`check-config --resolve`, and `run` before it
//! starts), fatal errors in the log format asked for, no colour codes in log files,
//! `WARDEN_CONFIG` for the store commands, `--version` with commit and build date, shell
//! completions and a man page, `runs list --status` naming the valid statuses, and `demo
//! --json` for scripts.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use serde_json::Value;
use warden_tests::procs::{warden_binary, warden_cli, ChildProcess};

fn scratch(name: &str) -> Result<PathBuf> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("deploy-cli-{name}-{}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

const SECRET_VALUE: &str = "first-hour-secret-value";

/// A valid configuration with three references that do not resolve (two variables, one
/// file) and one that does (a file holding [`SECRET_VALUE`]).
fn config_with_missing_references(dir: &Path) -> Result<PathBuf> {
    let present = dir.join("api-token");
    std::fs::write(&present, format!("{SECRET_VALUE}\n"))?;
    let file = dir.join("warden.yaml");
    std::fs::write(
        &file,
        format!(
            "store:\n  sqlite: {db}\nserver:\n  listen: 127.0.0.1:9\n  api_token: {{ file: {present} }}\n  viewer_token: {{ env: WARDEN_FIRST_HOUR_VIEWER }}\n\
             notify:\n  slack: {{ webhook_url: {{ env: WARDEN_FIRST_HOUR_SLACK }} }}\n\
             prometheus:\n  url: http://127.0.0.1:9\n  tls: {{ ca_file: {ca} }}\n",
            db = dir.join("warden.db").display(),
            present = present.display(),
            ca = dir.join("missing-ca.pem").display(),
        ),
    )?;
    Ok(file)
}

const MISSING: &[&str] = &["server.viewer_token", "notify.slack.webhook_url", "prometheus.tls.ca_file"];

#[tokio::test]
async fn check_config_resolve_reports_every_missing_reference_at_once() -> Result<()> {
    let dir = scratch("resolve")?;
    let file = config_with_missing_references(&dir)?;
    let path = file.to_str().context("path")?;

    // Without --resolve the file is valid (the references are well formed).
    let plain = warden_cli(&["check-config", path], &[]).await?;
    ensure!(plain.status.success(), "{}{}", plain.stdout, plain.stderr);

    let text = warden_cli(&["check-config", "--resolve", path], &[]).await?;
    ensure!(text.status.code() == Some(1), "{:?}: {}", text.status, text.stderr);
    for missing in MISSING {
        ensure!(text.stderr.contains(&format!("  {missing}: ")), "{missing} not reported:\n{}", text.stderr);
    }
    ensure!(text.stderr.contains("3 unresolved reference(s)"), "{}", text.stderr);
    ensure!(!text.stderr.contains(SECRET_VALUE) && !text.stdout.contains(SECRET_VALUE));

    let json = warden_cli(&["check-config", "--resolve", "--json", path], &[]).await?;
    ensure!(json.status.code() == Some(1));
    let out: Value = serde_json::from_str(&json.stdout).with_context(|| format!("not JSON: {}", json.stdout))?;
    ensure!(out["valid"] == true && out["errors"].as_array().is_some_and(Vec::is_empty), "{out}");
    let paths: Vec<&str> =
        out["unresolved"].as_array().context("unresolved")?.iter().filter_map(|u| u["path"].as_str()).collect();
    ensure!(paths == MISSING, "{paths:?}");

    // Everything set: resolved, exit 0.
    std::fs::write(dir.join("missing-ca.pem"), "not checked here\n")?;
    let ok = warden_cli(
        &["check-config", "--resolve", "--json", path],
        &[("WARDEN_FIRST_HOUR_VIEWER", "v"), ("WARDEN_FIRST_HOUR_SLACK", "http://127.0.0.1:9/hook")],
    )
    .await?;
    ensure!(ok.status.success(), "{}{}", ok.stdout, ok.stderr);
    let out: Value = serde_json::from_str(&ok.stdout)?;
    ensure!(out["unresolved"].as_array().is_some_and(Vec::is_empty), "{out}");

    // An invalid file: the errors as JSON, exit 1.
    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, "server:\n  listen: nowhere\nunknown_key: 1\n")?;
    let invalid = warden_cli(&["check-config", "--json", bad.to_str().context("path")?], &[]).await?;
    ensure!(invalid.status.code() == Some(1));
    let out: Value = serde_json::from_str(&invalid.stdout)?;
    ensure!(out["valid"] == false && out["errors"].as_array().is_some_and(|e| e.len() >= 2), "{out}");
    Ok(())
}

#[tokio::test]
async fn run_reports_every_missing_reference_before_starting_in_the_log_format_asked() -> Result<()> {
    let dir = scratch("run")?;
    let file = config_with_missing_references(&dir)?;
    let path = file.to_str().context("path")?;

    let text = warden_cli(&["run", "-c", path], &[]).await?;
    ensure!(text.status.code() == Some(1), "{:?}", text.status);
    for missing in MISSING {
        ensure!(text.stderr.contains(missing), "{missing} not reported:\n{}", text.stderr);
    }
    ensure!(text.stderr.starts_with("error: 3 unresolved reference(s)"), "{}", text.stderr);
    ensure!(!dir.join("warden.db").exists(), "the store was opened before the references were checked");

    // --log-format json: the fatal error is one JSON line too.
    let json = warden_cli(&["--log-format", "json", "run", "-c", path], &[]).await?;
    ensure!(json.status.code() == Some(1));
    let lines: Vec<&str> = json.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    ensure!(!lines.is_empty(), "nothing on stderr");
    for line in &lines {
        let entry: Value = serde_json::from_str(line).with_context(|| format!("not a JSON line: {line}"))?;
        ensure!(entry["level"].is_string() && entry["timestamp"].is_string(), "{entry}");
    }
    let last: Value = serde_json::from_str(lines[lines.len() - 1])?;
    ensure!(last["level"] == "ERROR", "{last}");
    let message = last["fields"]["message"].as_str().context("no message")?;
    ensure!(MISSING.iter().all(|m| message.contains(m)), "{message}");
    ensure!(!json.stderr.contains(SECRET_VALUE));
    Ok(())
}

#[tokio::test]
async fn store_commands_honour_warden_config_and_logs_have_no_colour_off_a_terminal() -> Result<()> {
    let dir = scratch("env")?;
    let port = warden_tests::free_port()?;
    let config = dir.join("warden.yaml");
    std::fs::write(
        &config,
        format!("store:\n  sqlite: {}\nserver:\n  listen: 127.0.0.1:{port}\n", dir.join("warden.db").display()),
    )?;
    let config = config.to_str().context("path")?;

    // `warden run` makes the store; its stderr is a file, so no ANSI colour codes.
    let mut warden = ChildProcess::spawn("warden", &warden_binary()?, ["run", "-c", config], &[], &dir)?;
    warden.wait_http_ready(&format!("http://127.0.0.1:{port}/readyz"), Duration::from_secs(60)).await?;
    warden.terminate(Duration::from_secs(10)).await?;
    let log = std::fs::read_to_string(warden.stderr_path())?;
    ensure!(log.contains("warden started"), "{log}");
    ensure!(!log.contains('\u{1b}'), "colour codes in a log file:\n{log:?}");

    let env = [("WARDEN_CONFIG", config)];
    for args in [
        &["incidents", "list"][..],
        &["runs", "list"],
        &["audit", "verify", "--json"],
        &["outbox", "list"],
        &["check-config"],
    ] {
        let out = warden_cli(args, &env).await?;
        ensure!(
            out.status.success(),
            "warden {} with WARDEN_CONFIG: {:?}\n{}{}",
            args.join(" "),
            out.status,
            out.stdout,
            out.stderr
        );
        // A command's answer is on stdout; no log lines mixed in by default.
        ensure!(out.stderr.trim().is_empty(), "warden {}: log lines on stderr:\n{}", args.join(" "), out.stderr);
    }
    // --db still wins over WARDEN_CONFIG.
    let missing = dir.join("elsewhere.db");
    let out = warden_cli(&["runs", "list", "--db", missing.to_str().context("path")?], &env).await?;
    ensure!(!out.status.success() && out.stderr.contains("elsewhere.db"), "{}", out.stderr);
    Ok(())
}

#[tokio::test]
async fn version_completions_man_page_and_run_statuses() -> Result<()> {
    let version = warden_cli(&["--version"], &[]).await?;
    ensure!(version.status.success());
    let line = version.stdout.trim();
    let rest = line.strip_prefix("warden ").context(line.to_string())?;
    let (semver, meta) = rest.split_once(" (commit ").with_context(|| line.to_string())?;
    ensure!(semver.split('.').count() == 3, "{line}");
    let (commit, built) = meta.split_once(", built ").with_context(|| line.to_string())?;
    ensure!(commit == "unknown" || (commit.len() == 12 && commit.chars().all(|c| c.is_ascii_hexdigit())), "{line}");
    let date = built.strip_suffix(')').with_context(|| line.to_string())?;
    ensure!(chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").is_ok(), "{line}");

    for (shell, marker) in [("bash", "complete -F _warden"), ("zsh", "#compdef warden"), ("fish", "complete -c warden")]
    {
        let out = warden_cli(&["completions", shell], &[]).await?;
        ensure!(out.status.success() && out.stdout.contains(marker), "completions {shell}: {}", out.stderr);
        ensure!(out.stdout.contains("check-config"), "completions {shell} lack the subcommands");
    }
    let man = warden_cli(&["man"], &[]).await?;
    ensure!(man.status.success() && man.stdout.contains(".TH warden 1"), "{}", man.stderr);

    // The benchmark suites default to paths inside a source checkout; elsewhere (the tests
    // run in the tests crate's folder, which has no `tests/rca/scenarios`) that is said.
    let suite = warden_cli(&["bench", "rca"], &[]).await?;
    ensure!(suite.status.code() == Some(1) && suite.stderr.contains("give --suite DIR"), "{}", suite.stderr);

    // The summary bench on a GPU: without the `cuda` feature a clear error naming the fix; a
    // device that does not parse is refused with the choices.
    let suite = concat!(env!("CARGO_MANIFEST_DIR"), "/rca/scenarios");
    let args = ["bench", "summary", "--model", "/nonexistent/model.gguf", "--suite", suite, "--max-scenarios", "0"];
    let gpu = warden_cli(&[&args[..], &["--device", "cuda"]].concat(), &[]).await?;
    ensure!(
        gpu.status.code() == Some(1)
            && gpu.stderr.contains("no CUDA support")
            && gpu.stderr.contains("--features cuda"),
        "{:?} {}",
        gpu.status,
        gpu.stderr
    );
    let odd = warden_cli(&[&args[..], &["--device", "tpu"]].concat(), &[]).await?;
    ensure!(odd.status.code() == Some(2) && odd.stderr.contains("tpu"), "{:?} {}", odd.status, odd.stderr);

    let bogus = warden_cli(&["runs", "list", "--db", "/nonexistent/warden.db", "--status", "bogus"], &[]).await?;
    ensure!(bogus.status.code() == Some(2), "{:?}", bogus.status);
    for status in ["awaiting_approval", "failed", "revert_failed", "succeeded"] {
        ensure!(bogus.stderr.contains(status), "the valid statuses are not listed:\n{}", bogus.stderr);
    }
    Ok(())
}

/// `warden demo --json`: JSON Lines a script can read, with nothing else on stdout: a
/// `start` object, the timeline's events tagged by `kind`, and a `summary` object last
/// that agrees with the events. Then `incidents ack|resolve` on the demo's store.
#[tokio::test]
async fn demo_json_is_one_object_per_line_and_open_incidents_close_by_hand() -> Result<()> {
    let dir = scratch("demo-json")?;
    let out = dir.join("demo");
    let run = warden_cli(&["demo", "--json", "--out", out.to_str().context("path")?], &[]).await?;
    ensure!(run.status.success(), "{:?}: {}", run.status, run.stderr);
    let lines: Vec<Value> = run
        .stdout
        .lines()
        .enumerate()
        .map(|(i, l)| serde_json::from_str(l).with_context(|| format!("stdout line {}: {l}", i + 1)))
        .collect::<Result<_>>()?;
    let kinds: Vec<&str> = lines.iter().map(|v| v["kind"].as_str().unwrap_or("")).collect();
    ensure!(kinds.first() == Some(&"start") && kinds.last() == Some(&"summary"), "{kinds:?}");
    let count = |k: &str| kinds.iter().filter(|x| **x == k).count();
    let summary = lines.last().context("summary")?;
    ensure!(summary["incidents"].as_u64() == Some(count("incident_opened") as u64), "{summary}");
    ensure!(summary["resolved"].as_u64() == Some(count("incident_resolved") as u64), "{summary}");
    let first_analyses = lines.iter().filter(|v| v["kind"] == "analysed" && v["revision"] == 0).count();
    let revisions = lines.iter().filter(|v| v["kind"] == "analysed" && v["revision"].as_u64() > Some(0));
    ensure!(count("incident_opened") == 5 && first_analyses == 5, "{kinds:?}");
    ensure!(revisions.clone().count() > 0 && revisions.clone().all(|v| v["revised_because"].is_string()), "{kinds:?}");
    ensure!(count("approved") == 1 && count("no_data") > 0, "{kinds:?}");
    ensure!(lines[0]["watches"].as_array().is_some_and(|w| w.len() == 5), "{}", lines[0]);
    ensure!(lines.iter().all(|v| v["kind"] == "start" || v["kind"] == "summary" || v["at"].is_string()));
    let store = summary["store"].as_str().unwrap_or("");
    ensure!(std::path::Path::new(store).exists(), "{summary}");

    // Its incidents that are still open can be acknowledged and resolved by hand, once.
    let open: Vec<u64> = {
        let list = warden_cli(&["incidents", "list", "--db", store, "--status", "open", "--json"], &[]).await?;
        let v: Value = serde_json::from_str(&list.stdout)?;
        v["incidents"].as_array().context("incidents")?.iter().filter_map(|i| i["id"].as_u64()).collect()
    };
    // Every open incident names its target, the capacity one (from its labels) too.
    for id in &open {
        let shown = warden_cli(&["incidents", "show", &id.to_string(), "--db", store], &[]).await?;
        ensure!(shown.status.success() && !shown.stdout.contains("target -"), "{}{}", shown.stdout, shown.stderr);
    }
    let id = open.first().context("the demo leaves open incidents")?.to_string();
    let hand = |verb: &'static str, id: String| async move {
        warden_cli(&["incidents", verb, &id, "--db", store, "--as", "bob", "--comment", "on it"], &[]).await
    };
    let ack = hand("ack", id.clone()).await?;
    ensure!(ack.status.success() && ack.stdout.contains("acknowledged by user/bob"), "{}{}", ack.stdout, ack.stderr);
    let again = hand("ack", id.clone()).await?;
    ensure!(again.status.code() == Some(1) && again.stderr.contains("already acknowledged"), "{}", again.stderr);
    let resolved = hand("resolve", id.clone()).await?;
    ensure!(resolved.status.success(), "{}", resolved.stderr);
    ensure!(resolved.stdout.contains("no notifications queued"), "without a configuration: {}", resolved.stdout);
    let again = hand("resolve", id.clone()).await?;
    ensure!(again.status.code() == Some(1) && again.stderr.contains("already resolved"), "{}", again.stderr);
    let missing = hand("resolve", "999".into()).await?;
    ensure!(missing.status.code() == Some(1) && missing.stderr.contains("no incident 999"), "{}", missing.stderr);
    let shown = warden_cli(&["incidents", "show", &id, "--db", store, "--json"], &[]).await?;
    let v: Value = serde_json::from_str(&shown.stdout)?;
    ensure!(v["incident"]["status"] == "resolved", "{v}");
    let events = v["events"].as_array().context("events")?;
    let by = |kind: &str| events.iter().find(|e| e["kind"] == kind).map(|e| e["detail"]["by"].clone());
    ensure!(by("acknowledged") == Some("user/bob".into()) && by("resolved") == Some("user/bob".into()), "{v}");
    // Both hands are in the audit trail (not the refused second tries), which stays intact.
    let audit = warden_cli(&["audit", "list", "--db", store, "--kind", "incident"], &[]).await?;
    let lines: Vec<&str> = audit.stdout.lines().collect();
    ensure!(audit.status.success() && lines.len() == 2, "{}{}", audit.stdout, audit.stderr);
    for (line, action) in lines.iter().zip(["acknowledged", "resolved"]) {
        ensure!(
            line.contains("incident  user/bob")
                && line.contains(&format!("action={action}"))
                && line.contains(&format!("incident_id={id}"))
                && line.contains(r#"comment="on it""#),
            "{line}"
        );
    }
    let bad = warden_cli(&["audit", "list", "--db", store, "--kind", "ack"], &[]).await?;
    ensure!(bad.status.code() == Some(2) && bad.stderr.contains("unknown audit kind `ack`"), "{}", bad.stderr);
    let verify = warden_cli(&["audit", "verify", "--db", store], &[]).await?;
    ensure!(verify.status.success() && verify.stdout.contains("intact"), "{}{}", verify.stdout, verify.stderr);
    Ok(())
}

#[tokio::test]
async fn silences_are_added_listed_and_ended_from_the_command_line() -> Result<()> {
    let dir = scratch("silences")?;
    let db = dir.join("warden.db");
    // An empty file is a store the first command migrates.
    std::fs::write(&db, "")?;
    let db = db.to_str().context("path")?;
    let add = warden_cli(
        &[
            "silences",
            "add",
            "--db",
            db,
            "-m",
            "watch=checkout-latency",
            "-m",
            "namespace=~shop|cart",
            "--for",
            "2h",
            "--comment",
            "deploy",
            "--as",
            "alice",
        ],
        &[],
    )
    .await?;
    ensure!(add.status.success() && add.stdout.starts_with("silence 1 active until"), "{}{}", add.stdout, add.stderr);
    for (args, says) in [
        (vec!["-m", "watch", "--for", "1h", "--comment", "x"], "expected `name=value`"),
        (vec!["-m", "team!=a", "--for", "1h", "--comment", "x"], "silence everything"),
        (vec!["-m", "a=b", "--comment", "x"], "an end or a duration"),
        (vec!["-m", "a=b", "--for", "100d", "--comment", "x"], "at most 90 days"),
    ] {
        let mut all = vec!["silences", "add", "--db", db];
        all.extend(args);
        let out = warden_cli(&all, &[]).await?;
        ensure!(out.status.code() == Some(1) && out.stderr.contains(says), "{all:?}: {}", out.stderr);
    }
    let list = warden_cli(&["silences", "list", "--db", db, "--json"], &[]).await?;
    let v: Value = serde_json::from_str(&list.stdout)?;
    let rows = v["silences"].as_array().context("silences")?;
    ensure!(rows.len() == 1 && rows[0]["state"] == "active", "{v}");
    ensure!(
        rows[0]["silence"]["matchers"] == serde_json::json!(["watch=\"checkout-latency\"", "namespace=~\"shop|cart\""]),
        "{v}"
    );
    ensure!(rows[0]["silence"]["created_by"] == "user/alice", "{v}");
    let end = warden_cli(&["silences", "expire", "1", "--db", db, "--as", "bob"], &[]).await?;
    ensure!(end.status.success() && end.stdout.contains("silence 1 ended"), "{}{}", end.stdout, end.stderr);
    let again = warden_cli(&["silences", "expire", "1", "--db", db], &[]).await?;
    ensure!(again.status.code() == Some(1) && again.stderr.contains("already ended"), "{}", again.stderr);
    let table = warden_cli(&["silences", "list", "--db", db, "--all"], &[]).await?;
    ensure!(table.stdout.contains("expired") && table.stdout.contains("ended by user/bob"), "{}", table.stdout);
    let none = warden_cli(&["silences", "list", "--db", db], &[]).await?;
    ensure!(none.stdout.contains("no silences in force"), "{}", none.stdout);
    Ok(())
}

/// A command whose reader stops early (`warden completions bash | head -1`) ends on the
/// closed pipe like other Unix tools, killed by SIGPIPE, not with a Rust panic.
#[cfg(unix)]
#[test]
fn a_command_piped_into_a_reader_that_stops_ends_quietly() -> Result<()> {
    use std::io::Read;
    use std::os::unix::process::ExitStatusExt;
    let (mut reader, writer) = std::io::pipe()?;
    let child = std::process::Command::new(warden_binary()?)
        .args(["completions", "bash"])
        .stdin(std::process::Stdio::null())
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    // Read a little (the script is over 100 KB, more than a pipe holds), then stop reading.
    let mut first = [0u8; 16];
    reader.read_exact(&mut first)?;
    drop(reader);
    let out = child.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(!stderr.contains("panicked") && !stderr.contains("Broken pipe"), "{stderr}");
    // SIGPIPE is 13 on Linux and the BSDs.
    ensure!(out.status.signal() == Some(13), "{:?}: {stderr}", out.status);
    Ok(())
}
