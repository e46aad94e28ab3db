//! The `warden` command line.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, Context, Result};
use clap::Parser;
use tokio_util::sync::CancellationToken;
use warden_agent::app::{daemon, demo};
use warden_agent::cli::args::*;
use warden_agent::cli::{
    check as check_cmd, detect as detect_cmd, incidents as incident_cmd, logs as logs_cmd, model as model_cmd,
    outbox as outbox_cmd, playbook as playbook_cmd, rca as rca_cmd, silences as silences_cmd,
};
use warden_agent::config::StoreSection;
use warden_agent::{bench, config, store::Store};

fn init_logging(format: LogFormat, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    // Colours only for a person at a terminal, never in files or log collectors.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn load_config(path: &std::path::Path) -> Result<config::Config> {
    config::load_file(path).map_err(|e| anyhow!("{e}"))
}

async fn shutdown_on_signal(token: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                let _ = ctrl_c.await;
                token.cancel();
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down: no new evaluations; finishing in-flight work");
    token.cancel();
}

/// The store `--db` (a SQLite file) or the configuration names.
fn store_section(db: DbArgs) -> Result<StoreSection> {
    match (db.config, db.db) {
        (_, Some(p)) => Ok(StoreSection { sqlite: Some(p), postgres: None }),
        (Some(c), None) => Ok(load_config(&c)?.store),
        (None, None) => Err(anyhow!("give --config, --db or WARDEN_CONFIG")),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Runtime::new().context("starting the async runtime")
}

fn model_info(config: Option<PathBuf>, model: Option<PathBuf>, json: bool) -> Result<()> {
    let opts = match (config, model) {
        (_, Some(path)) => warden_models::llm::LoadOptions::new(path),
        (Some(c), None) => {
            let cfg = load_config(&c)?;
            let m =
                cfg.analysis.model.as_ref().ok_or_else(|| anyhow!("{}: no `analysis.model` section", c.display()))?;
            warden_agent::analysis::summarizer::load_options(m).map_err(|e| anyhow!("{}: {e}", c.display()))?
        }
        (None, None) => return Err(anyhow!("give --model FILE.gguf or --config FILE")),
    };
    model_cmd::info_cmd(&opts, json)
}

fn open_store(db: DbArgs) -> Result<Store> {
    warden_agent::app::assemble::open_existing_store(&store_section(db)?)
}

fn incidents_list(db: DbArgs, status: Option<String>, json: bool, limit: u32) -> Result<()> {
    let store = open_store(db)?;
    let incidents = store.list_incidents(status.as_deref(), limit)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "incidents": incidents }))?);
        return Ok(());
    }
    incident_cmd::list_table(&incidents, chrono::Utc::now(), &mut std::io::stdout().lock())
}

/// `incidents ack|resolve`: with a configuration, a resolution notifies its channels.
fn incidents_by_hand(id: i64, hand: HandArgs, resolve: bool) -> Result<()> {
    let channels = match (&hand.db.config, &hand.db.db) {
        (Some(c), None) => {
            let cfg = load_config(c)?;
            warden_agent::notify::Routes::new(
                warden_agent::app::assemble::build_channels(&cfg)?.names(),
                &cfg.notify.routes,
            )
        }
        _ => warden_agent::notify::Routes::default(),
    };
    let store = std::sync::Arc::new(open_store(hand.db)?);
    let who = playbook_cmd::actor(hand.actor);
    incident_cmd::by_hand(store, channels, id, &who, hand.comment.as_deref(), resolve, &mut std::io::stdout().lock())
}

/// A command whose output is piped into a reader that stops early (`warden incidents list
/// | head`) ends quietly when the pipe closes, as `ls | head` does, instead of panicking on
/// the broken pipe in `println!`. Servers (the daemon, `demo --serve`) keep Rust's default
/// (SIGPIPE ignored, a write to a closed pipe is an error they handle).
#[cfg(unix)]
#[allow(unsafe_code)]
fn end_quietly_on_a_closed_pipe() {
    // SAFETY: called at the start of `main`, before any other thread exists; SIG_DFL is a
    // valid disposition for SIGPIPE and no handler runs Rust code.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    #[cfg(unix)]
    if !matches!(cli.command, Command::Run { .. } | Command::Demo { serve: Some(_), .. }) {
        end_quietly_on_a_closed_pipe();
    }
    // The daemon logs what it does; a command prints its answer, and its logs (a store
    // migration, a connection) would only interleave with it: warnings and errors only. The
    // demo prints its own timeline.
    let default_level = match cli.command {
        Command::Run { .. } => "info",
        Command::Demo { .. } => "error",
        // The console bench opens incidents by the hundred: each would log a warning.
        Command::Bench { command: BenchCommand::Console { .. } } => "error",
        _ => "warn",
    };
    init_logging(cli.log_format, default_level);
    let log_format = cli.log_format;
    let result: Result<()> = match cli.command {
        Command::CheckConfig { file, resolve, json } => return check_config(&file, resolve, json),
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut <Cli as clap::CommandFactory>::command(), "warden", &mut script);
            std::io::Write::write_all(&mut std::io::stdout().lock(), &script).context("writing the completion script")
        }
        Command::Man => {
            let mut page = Vec::new();
            clap_mangen::Man::new(<Cli as clap::CommandFactory>::command())
                .render(&mut page)
                .context("rendering the manual page")
                .and_then(|()| {
                    std::io::Write::write_all(&mut std::io::stdout().lock(), &page).context("writing the manual page")
                })
        }
        Command::Incidents { command: IncidentsCommand::List { db, status, json, limit } } => {
            incidents_list(db, status, json, limit)
        }
        Command::Silences { command: SilencesCommand::Add { matchers, duration, end, start, comment, actor, db } } => {
            let request = warden_agent::incident::silence::SilenceRequest {
                matchers,
                starts_at: start,
                ends_at: end,
                duration: duration.map(|d| d.0),
                created_by: playbook_cmd::actor(actor),
                comment,
            };
            open_store(db).and_then(|s| silences_cmd::add(&s, request, &mut std::io::stdout().lock()))
        }
        Command::Silences { command: SilencesCommand::List { db, all, json } } => {
            open_store(db).and_then(|s| silences_cmd::list(&s, all, json, &mut std::io::stdout().lock()))
        }
        Command::Silences { command: SilencesCommand::Expire { id, actor, db } } => open_store(db)
            .and_then(|s| silences_cmd::expire(&s, id, &playbook_cmd::actor(actor), &mut std::io::stdout().lock())),
        Command::Outbox { command: OutboxCommand::List { db, state, channel, json, limit } } => open_store(db)
            .and_then(|s| outbox_cmd::list(&s, &state, channel.as_deref(), limit, json, &mut std::io::stdout().lock())),
        Command::Outbox { command: OutboxCommand::Dead { db, channel, json, limit } } => open_store(db)
            .and_then(|s| outbox_cmd::dead(&s, channel.as_deref(), limit, json, &mut std::io::stdout().lock())),
        Command::Outbox { command: OutboxCommand::Retry { id, all, channel, db } } => open_store(db)
            .and_then(|s| outbox_cmd::retry(&s, id, all, channel.as_deref(), &mut std::io::stdout().lock())),
        Command::Outbox { command: OutboxCommand::Discard { id, db } } => {
            open_store(db).and_then(|s| outbox_cmd::discard(&s, id, &mut std::io::stdout().lock()))
        }
        Command::Incidents { command: IncidentsCommand::Ack { id, hand } } => incidents_by_hand(id, hand, false),
        Command::Incidents { command: IncidentsCommand::Resolve { id, hand } } => incidents_by_hand(id, hand, true),
        Command::Incidents { command: IncidentsCommand::Show { id, db, json } } => {
            open_store(db).and_then(|store| incident_cmd::show(&store, id, json, &mut std::io::stdout().lock()))
        }
        Command::Model { command: ModelCommand::Pull { repo, file, revision, dest, sha256 } } => {
            model_cmd::pull_cmd(&repo, &file, revision.as_deref(), &dest, sha256.as_deref())
        }
        Command::Model { command: ModelCommand::Info { config, model, json } } => model_info(config, model, json),
        Command::Rca { args } => rca_cmd::run_args(&args, &mut std::io::stdout().lock(), &mut std::io::stderr()),
        Command::Bench { command: BenchCommand::Rca { suite, format, .. } }
            if !suite.is_dir() && format.as_deref().is_none_or(|f| f == "lodo") =>
        {
            Err(no_suite(&suite))
        }
        Command::Bench { command: BenchCommand::Summary { suite, .. } } if !suite.is_dir() => Err(no_suite(&suite)),
        Command::Bench { command: BenchCommand::Rca { suite, json, format, data, petshop, nezha } } => {
            match (format.as_deref(), data, petshop, nezha) {
                (None, _, _, _) => rca_cmd::bench(&suite, json, &mut std::io::stdout().lock()),
                (Some("lodo"), _, Some(p), Some(n)) => bench::rca::lodo(&p, &n, &suite, &mut std::io::stdout().lock()),
                (Some("lodo"), ..) => {
                    Err(anyhow!("--format lodo needs --petshop DIR and --nezha DIR (and --suite DIR)"))
                }
                (Some(f), Some(d), _, _) => bench::rca::run(f, &d, json, &mut std::io::stdout().lock()),
                (Some(f), None, _, _) => Err(anyhow!("--format {f} needs --data DIR")),
            }
        }
        Command::Detect { input, detector, params, json } => detect_cmd::run(&input, &detector, &params, json),
        Command::Bench { command: BenchCommand::Nab { data, detector, params, json } } => {
            bench::nab::run(&data, &detector, &params, json)
        }
        Command::Bench {
            command: BenchCommand::Anomaly { data, detector, delay, leave_one_out, candidates, baselines, json },
        } => {
            if leave_one_out {
                bench::anomaly_lodo::run(&data, &candidates, &baselines, delay, json)
            } else {
                data.iter().try_for_each(|d| bench::anomaly::run(d, &detector, delay, json))
            }
        }
        Command::Bench { command: BenchCommand::M4 { data, model, json } } => bench::m4::run(&data, &model, json),
        Command::Bench { command: BenchCommand::Console { incidents, requests, json } } => runtime().and_then(|rt| {
            rt.block_on(bench::console::run(incidents, requests, json, &mut std::io::stdout().lock())).map(|_| ())
        }),
        Command::Bench { command: BenchCommand::Loghub { data, json, compare_drain3, leave_one_out } } => {
            bench::loghub::run(&data, json, compare_drain3, leave_one_out)
        }
        Command::Bench {
            command:
                BenchCommand::Summary {
                    model,
                    tokens,
                    suite,
                    compare_llama_cpp,
                    threads,
                    max_scenarios,
                    no_requantize,
                    candle_llama,
                    device,
                    python,
                    json,
                },
        } => bench::summary::run(
            &bench::summary::SummaryBenchArgs {
                model,
                tokens,
                suite,
                compare_llama_cpp,
                json,
                threads,
                max_scenarios,
                no_requantize,
                candle_llama,
                device,
                python,
            },
            &mut std::io::stdout().lock(),
        ),
        Command::Logs { command: LogsCommand::Mine { input, json } } => logs_cmd::run(&input, json),
        Command::Run { config } => {
            load_config(&config).and_then(|cfg| resolved(&config).map(|()| cfg)).and_then(|cfg| {
                let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
                rt.block_on(async move {
                    let token = CancellationToken::new();
                    tokio::spawn(shutdown_on_signal(token.clone()));
                    daemon::run(cfg, token).await
                })
            })
        }
        Command::Playbook { command: PlaybookCommand::List { config, json } } => {
            config.as_deref().map(load_config).transpose().and_then(|c| playbook_cmd::list(c.as_ref(), json))
        }
        Command::Playbook { command: PlaybookCommand::Show { name, config, json } } => {
            config.as_deref().map(load_config).transpose().and_then(|c| playbook_cmd::show(c.as_ref(), &name, json))
        }
        Command::Playbook {
            command: PlaybookCommand::Run { name, config, params, target, dry_run, actor, detach },
        } => {
            let args =
                playbook_cmd::RunArgs { name, params, target, dry_run, actor: playbook_cmd::actor(actor), detach };
            match load_config(&config).and_then(|cfg| runtime()?.block_on(playbook_cmd::run(cfg, args))) {
                Ok(true) => Ok(()),
                Ok(false) => return ExitCode::from(1),
                Err(e) => Err(e),
            }
        }
        Command::Approve { id, config, deny, comment, actor, detach } => {
            match load_config(&config).and_then(|cfg| {
                runtime()?.block_on(playbook_cmd::approve(cfg, id, deny, comment, playbook_cmd::actor(actor), detach))
            }) {
                Ok(true) => Ok(()),
                Ok(false) => return ExitCode::from(1),
                Err(e) => Err(e),
            }
        }
        Command::Runs { command: RunsCommand::List { db, status, json, limit } } => {
            open_store(db).and_then(|s| playbook_cmd::runs_list(&s, status, json, limit))
        }
        Command::Runs { command: RunsCommand::Show { id, db, json } } => {
            open_store(db).and_then(|s| playbook_cmd::runs_show(&s, id, json))
        }
        Command::Audit { command: AuditCommand::List { db, run, kind, last, json } } => {
            open_store(db).and_then(|s| playbook_cmd::audit_list(&s, run, kind, last, json))
        }
        Command::Audit { command: AuditCommand::Verify { db, json } } => {
            match open_store(db).and_then(|s| playbook_cmd::audit_verify(&s, json)) {
                Ok(true) => Ok(()),
                Ok(false) => return ExitCode::from(1),
                Err(e) => Err(e),
            }
        }
        Command::Demo { out, all_evaluations, model, json, serve } => {
            let rt = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: starting the async runtime: {e}");
                    return ExitCode::from(1);
                }
            };
            rt.block_on(async move {
                let shutdown = CancellationToken::new();
                if serve.is_some() {
                    tokio::spawn(shutdown_on_signal(shutdown.clone()));
                }
                demo::run(&out, all_evaluations, model.as_deref(), json, demo::Serve { addr: serve, shutdown }).await
            })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            fatal(log_format, &format!("{e:#}"));
            ExitCode::from(1)
        }
    }
}

/// `bench rca` and `bench summary` default to the suite of a source checkout.
fn no_suite(suite: &std::path::Path) -> anyhow::Error {
    anyhow!(
        "{}: no such directory (the default is the suite inside a source checkout of warden, relative to the current directory); give --suite DIR",
        suite.display()
    )
}

/// Prints the error that ends the command: `error: ...`, or with `--log-format json` one JSON
/// line shaped like the other log lines (so a log collector parses it too).
fn fatal(format: LogFormat, message: &str) {
    match format {
        LogFormat::Text => eprintln!("error: {message}"),
        LogFormat::Json => eprintln!(
            "{}",
            serde_json::json!({
                "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                "level": "ERROR",
                "fields": { "message": message },
                "target": "warden",
            })
        ),
    }
}

/// Every secret and file `config` names resolves; otherwise all that do not, at once.
fn resolved(config: &std::path::Path) -> Result<()> {
    let text = std::fs::read_to_string(config).with_context(|| format!("reading {}", config.display()))?;
    let problems = check_cmd::unresolved(&text);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(anyhow!("{}", check_cmd::describe(config, &problems)))
    }
}

/// `warden check-config FILE [--resolve] [--json]`: exit 0 when valid (and resolved).
fn check_config(file: &std::path::Path, resolve: bool, json: bool) -> ExitCode {
    let loaded = config::load_file(file);
    let unresolved = match (&loaded, resolve) {
        (Ok(_), true) => match std::fs::read_to_string(file) {
            Ok(text) => Some(check_cmd::unresolved(&text)),
            Err(e) => {
                Some(vec![check_cmd::Unresolved { path: String::new(), problem: format!("reading the file: {e}") }])
            }
        },
        _ => None,
    };
    let ok = loaded.is_ok() && unresolved.as_ref().is_none_or(Vec::is_empty);
    if json {
        let errors: Vec<_> = match &loaded {
            Ok(_) => Vec::new(),
            Err(errors) => errors
                .0
                .iter()
                .map(|e| serde_json::json!({"line": e.line, "path": e.path, "message": e.message}))
                .collect(),
        };
        let out = serde_json::json!({
            "file": file.display().to_string(),
            "valid": loaded.is_ok(),
            "watches": loaded.as_ref().ok().map(|c| c.watches.len()),
            "errors": errors,
            "unresolved": unresolved,
        });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    } else {
        match (&loaded, &unresolved) {
            (Err(errors), _) => {
                eprintln!("{errors}");
                eprintln!("{} error(s) in {}", errors.0.len(), file.display());
            }
            (Ok(_), Some(problems)) if !problems.is_empty() => {
                eprintln!("error: {}", check_cmd::describe(file, problems))
            }
            (Ok(cfg), _) => {
                let resolved = if resolve { ", every secret and file resolved" } else { "" };
                println!("{}: ok ({} watch(es){resolved})", file.display(), cfg.watches.len());
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Commands without a description and arguments without help, under `cmd`.
    fn undocumented(cmd: &clap::Command, path: &str, out: &mut Vec<String>) {
        let here = format!("{path} {}", cmd.get_name()).trim().to_string();
        if cmd.get_about().is_none() {
            out.push(format!("{here}: no description"));
        }
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if id != "help" && id != "version" && arg.get_help().is_none() {
                out.push(format!("{here} {id}: no help text"));
            }
        }
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            undocumented(sub, &here, out);
        }
    }

    #[test]
    fn every_command_and_argument_has_help_text() {
        let mut missing = Vec::new();
        undocumented(&Cli::command(), "", &mut missing);
        assert!(missing.is_empty(), "{} without help text:\n{}", missing.len(), missing.join("\n"));
    }
}
