//! The `warden` command line.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;
mod check_cmd;

use warden_agent::{
    bench, config, daemon, demo, detect_cmd, incident_cmd, logs_cmd, model_cmd, outbox_cmd, playbook_cmd, rca_cmd,
    store::Store,
};

/// `0.1.0 (commit 0123abcd4567, built 2026-01-31)`: `warden --version`.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("WARDEN_GIT_COMMIT"),
    ", built ",
    env!("WARDEN_BUILD_DATE"),
    ")"
);

/// Warden: an autonomous operations agent for Kubernetes.
///
/// Exit codes: 0 success; 1 error (invalid configuration, a failed start or run); 2 bad
/// command-line usage.
#[derive(Parser)]
#[command(name = "warden", version = VERSION, about, long_about = None, propagate_version = true)]
struct Cli {
    /// Log format on stderr (the level is set with RUST_LOG; default `info`, `error` for the demo).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Copy, Clone, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: evaluate watches, open incidents, act, notify, serve the API.
    Run {
        /// The configuration file.
        #[arg(short, long, env = "WARDEN_CONFIG", value_name = "FILE")]
        config: PathBuf,
    },
    /// Check a configuration file and print every error with its line and YAML path.
    CheckConfig {
        /// The configuration file.
        #[arg(value_name = "FILE", env = "WARDEN_CONFIG")]
        file: PathBuf,
        /// Also resolve every secret (`{ env }`, `{ file }`) and file it names, as `warden run`
        /// does at start, and report every one that is missing.
        #[arg(long)]
        resolve: bool,
        /// Print `{"file","valid","watches","errors":[..],"unresolved":[..]}`.
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script: `warden completions bash > /etc/bash_completion.d/warden`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff): `warden man > warden.1 && man ./warden.1`.
    Man,
    /// Inspect incidents in the store.
    Incidents {
        #[command(subcommand)]
        command: IncidentsCommand,
    },
    /// The notification outbox: what waits, dead letters and their reasons; retry or discard.
    Outbox {
        #[command(subcommand)]
        command: OutboxCommand,
    },
    /// Run a detector over a CSV file (`timestamp,value`), streaming: row i is scored from
    /// rows <= i only. Prints `timestamp,value,score,expected,lower,upper,anomaly`.
    Detect {
        /// Input CSV with a `timestamp,value` header; timestamps in RFC 3339,
        /// `YYYY-MM-DD HH:MM:SS` (UTC) or Unix seconds.
        #[arg(long, value_name = "FILE.csv")]
        input: PathBuf,
        /// Detector name (see docs/detectors.md); `auto` is the calibrated default.
        #[arg(long, default_value = warden_detectors::registry::DEFAULT)]
        detector: String,
        /// Detector parameter, repeatable: `--param threshold=5`.
        #[arg(long = "param", value_name = "K=V", value_parser = parse_kv)]
        params: Vec<(String, String)>,
        /// JSON lines instead of CSV.
        #[arg(long)]
        json: bool,
    },
    /// Score detectors and forecasters on public benchmarks.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// Work with logs: template mining.
    Logs {
        #[command(subcommand)]
        command: LogsCommand,
    },
    /// Playbooks: list, show, run by hand.
    Playbook {
        #[command(subcommand)]
        command: PlaybookCommand,
    },
    /// Playbook runs in the store.
    Runs {
        #[command(subcommand)]
        command: RunsCommand,
    },
    /// Approve (or with --deny, deny) a run that waits for approval, and follow it.
    Approve {
        /// The run id.
        id: i64,
        /// The configuration file (store, cluster and metrics connections).
        #[arg(short, long, env = "WARDEN_CONFIG", value_name = "FILE")]
        config: PathBuf,
        /// Deny instead of approving.
        #[arg(long)]
        deny: bool,
        /// Recorded with the decision.
        #[arg(long)]
        comment: Option<String>,
        /// Who decides (recorded as `user/NAME`; default $USER).
        #[arg(long = "as", value_name = "NAME")]
        actor: Option<String>,
        /// Return once the run first waits instead of following it to the end.
        #[arg(long)]
        detach: bool,
    },
    /// The hash-chained audit trail of playbook runs.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Rank the services of a recorded incident (a `time` column in Unix seconds and one
    /// column per metric named `<service>_<metric>`), most probable root cause first.
    Rca {
        /// The recorded metrics.
        #[arg(long, value_name = "FILE.csv")]
        metrics: PathBuf,
        /// Unix seconds: when the incident started (approximately).
        #[arg(long)]
        start: i64,
        /// Print `{"ranking":[{"service":..,"score":..}, ...], "found":.., ...}` instead of a table.
        #[arg(long)]
        json: bool,
        /// The service whose problem is being explained.
        #[arg(long)]
        symptom: Option<String>,
        /// Which of the symptom's metrics show the problem (`*` matches anything).
        #[arg(long)]
        symptom_metric: Option<String>,
        /// The call graph: a CSV with the header `caller,callee`.
        #[arg(long, value_name = "FILE.csv")]
        graph: Option<PathBuf>,
        /// A separate normal recording (any time range), in the layout of --metrics.
        #[arg(long, value_name = "FILE.csv")]
        normal: Option<PathBuf>,
        /// Wide layout: columns are `<service><SEP><metric>`, split at the first SEP.
        #[arg(long, value_name = "SEP")]
        separator: Option<String>,
        /// Wide layout: a regular expression with the named groups `service` and `metric`.
        #[arg(long, value_name = "REGEX")]
        pattern: Option<String>,
        /// Metric kinds: a CSV with the header `pattern,kind`.
        #[arg(long, value_name = "FILE.csv")]
        metric_kinds: Option<PathBuf>,
    },
    /// Local LLM for incident summaries: download one, or show what a model file is.
    Model {
        #[command(subcommand)]
        command: ModelCommand,
    },
    /// Run the embedded scenario: no cluster, no network, under a minute.
    Demo {
        /// Where the demo writes its store and notifications.
        #[arg(long, default_value = "warden-demo", value_name = "DIR")]
        out: PathBuf,
        /// Print every evaluation (default: changes, and one line every ten minutes).
        #[arg(long)]
        all_evaluations: bool,
        /// A GGUF model that writes the incident summaries (default: the template summary).
        #[arg(long, value_name = "FILE.gguf")]
        model: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ModelCommand {
    /// Download a GGUF file from a Hugging Face hub repository (needs network), check its
    /// SHA-256, and print its path for `analysis.model.path`.
    Pull {
        /// The repository, e.g. `HuggingFaceTB/SmolLM2-360M-Instruct-GGUF`.
        repo: String,
        /// The file in it, e.g. `smollm2-360m-instruct-q8_0.gguf`.
        file: String,
        /// A branch, tag or commit (default `main`).
        #[arg(long)]
        revision: Option<String>,
        /// Where to put it.
        #[arg(long, default_value = "models", value_name = "DIR")]
        dest: PathBuf,
        /// The SHA-256 it must have (otherwise the hub's own checksum is used when it gives one).
        #[arg(long, value_name = "HEX")]
        sha256: Option<String>,
    },
    /// Load a model as the daemon would and print what it is (architecture, size,
    /// quantization, context, chat template, tokenizer, device, SHA-256, load time).
    Info {
        /// The model of this configuration's `analysis.model`.
        #[arg(short, long, env = "WARDEN_CONFIG", value_name = "FILE", conflicts_with = "model")]
        config: Option<PathBuf>,
        /// A GGUF file.
        #[arg(long, value_name = "FILE.gguf")]
        model: Option<PathBuf>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum PlaybookCommand {
    /// List the playbooks: built-ins and those in `playbooks.dir`.
    List {
        /// Also the playbooks of this configuration's `playbooks.dir`, with its guards.
        #[arg(short, long, env = "WARDEN_CONFIG", value_name = "FILE")]
        config: Option<PathBuf>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print a playbook and its effective guards.
    Show {
        /// The playbook's name (see `warden playbook list`).
        name: String,
        /// The configuration whose `playbooks.dir` and guards apply.
        #[arg(short, long, env = "WARDEN_CONFIG", value_name = "FILE")]
        config: Option<PathBuf>,
        /// Print JSON (the playbook and its effective guards).
        #[arg(long)]
        json: bool,
    },
    /// Run a playbook now, behind its guards, and follow it.
    Run {
        /// The playbook's name (see `warden playbook list`).
        name: String,
        /// The configuration file (store, cluster, metrics and guards).
        #[arg(short, long, env = "WARDEN_CONFIG", value_name = "FILE")]
        config: PathBuf,
        /// Parameter, repeatable: `--param step=2`.
        #[arg(long = "param", value_name = "K=V", value_parser = parse_kv)]
        params: Vec<(String, String)>,
        /// `namespace/deployment` (or a node name for node playbooks).
        #[arg(long)]
        target: Option<String>,
        /// Send every write with Kubernetes server-side dry-run.
        #[arg(long)]
        dry_run: bool,
        /// Who runs it (recorded as `user/NAME`; default $USER).
        #[arg(long = "as", value_name = "NAME")]
        actor: Option<String>,
        /// Return once the run first waits instead of following it to the end.
        #[arg(long)]
        detach: bool,
    },
}

#[derive(Subcommand)]
enum RunsCommand {
    /// List runs, newest first.
    List {
        #[command(flatten)]
        db: DbArgs,
        /// Only runs in this state.
        #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(
            warden_playbooks::run::ALL_STATUSES.iter().map(|s| s.as_str())
        ))]
        status: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// At most this many runs.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Show one run: steps, plans, results, refusals and its audit entries.
    Show {
        /// The run id (see `warden runs list`).
        id: i64,
        #[command(flatten)]
        db: DbArgs,
        /// Print JSON (the run and its audit entries).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the hash chain against the audit head; exit 1 and name the first bad entry
    /// when it was edited, cut or truncated.
    Verify {
        #[command(flatten)]
        db: DbArgs,
        /// Print the result (chain, head, first break) as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Labelled series (NAB, SMD, ASD or timestamp,value,label CSVs): delay-k segment F1,
    /// false-alarm events and NAB score of several detectors side by side.
    Anomaly {
        /// A data set folder (layout detected); repeat for several.
        #[arg(long, value_name = "DIR", required = true)]
        data: Vec<PathBuf>,
        /// Comma-separated detectors, each `name` or `name:k=v:k=v`.
        #[arg(long, default_value = bench::anomaly::DEFAULT_DETECTORS)]
        detector: String,
        /// Points within a segment's start that still count as detecting it.
        #[arg(long, default_value_t = 7)]
        delay: usize,
        /// Choose among `--candidates` on all data sets but one and report on that one, for
        /// each in turn (needs two or more `--data`).
        #[arg(long)]
        leave_one_out: bool,
        /// With --leave-one-out: `;`-separated settings to choose from, the current default first.
        #[arg(long, default_value = bench::anomaly_lodo::DEFAULT_CANDIDATES)]
        candidates: String,
        /// With --leave-one-out: comma-separated baselines run on the same series.
        #[arg(long, default_value = bench::anomaly_lodo::DEFAULT_BASELINES)]
        baselines: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// NAB v1.1: stream every file through a detector and score the three profiles.
    Nab {
        /// The NAB directory (with `data/`, `labels/combined_windows.json`).
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
        /// Detector name.
        #[arg(long, default_value = "robust_baseline")]
        detector: String,
        /// Detector parameter, repeatable: `--param threshold=5`.
        #[arg(long = "param", value_name = "K=V", value_parser = parse_kv)]
        params: Vec<(String, String)>,
        /// Print `{"standard":..,"reward_low_fp":..,"reward_low_fn":..}`.
        #[arg(long)]
        json: bool,
    },
    /// M4 hourly: 48-step forecasts of the 414 series, sMAPE, MASE and OWA.
    M4 {
        /// The M4 hourly directory (`Hourly-train.csv`, `Hourly-test.csv`).
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
        /// Forecasting model.
        #[arg(long, default_value = "default")]
        model: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Loghub 2k: mine every system's messages with one generic setting; GA, PA, FGA, throughput.
    Loghub {
        /// The Loghub 2k directory (`<S>/<S>_2k.log_structured.csv` per system).
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
        /// Print `{"systems":[..],"average":{"ga":..,"pa":..,"fga":..},..}`.
        #[arg(long)]
        json: bool,
        /// Also time the PyPI `drain3` package (python3) on the same lines.
        #[arg(long)]
        compare_drain3: bool,
        /// Also score each system as unseen: the miner's setting chosen on the other systems.
        #[arg(long)]
        leave_one_out: bool,
    },
    /// Recorded root-cause scenarios: top-1 and top-3 accuracy of the ranking, from metrics
    /// only and with the scenario's cluster evidence, per fault type.
    Rca {
        /// The scenario directory (`<NN-name>/{metrics.csv,scenario.yaml}`).
        #[arg(long, value_name = "DIR", default_value = "tests/rca/scenarios")]
        suite: PathBuf,
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
        /// A public data set instead: `petshop`, `nezha` or `scenarios` (with --data), or
        /// `lodo` (with --petshop, --nezha and --suite): the benchmark's own metrics beside a
        /// BARO-style baseline.
        #[arg(long)]
        format: Option<String>,
        /// The data set's folder.
        #[arg(long, value_name = "DIR")]
        data: Option<PathBuf>,
        /// For `--format lodo`: the PetShop folder.
        #[arg(long, value_name = "DIR")]
        petshop: Option<PathBuf>,
        /// For `--format lodo`: the Nezha folder.
        #[arg(long, value_name = "DIR")]
        nezha: Option<PathBuf>,
    },
    /// Summary latency and memory of the local model on one scenario's prompt (beside llama.cpp
    /// with --compare-llama-cpp), and how many of the suite's summaries pass grounding.
    Summary {
        /// The GGUF model.
        #[arg(long, value_name = "FILE.gguf")]
        model: PathBuf,
        /// Tokens to generate, greedily (fewer when the model ends its turn).
        #[arg(long, default_value_t = 120)]
        tokens: usize,
        /// The scenario directory.
        #[arg(long, value_name = "DIR", default_value = "tests/rca/scenarios")]
        suite: PathBuf,
        /// Also time llama.cpp (python3 with llama-cpp-python) on the same prompt.
        #[arg(long)]
        compare_llama_cpp: bool,
        /// Threads for both runtimes (sets RAYON_NUM_THREADS); default: RAYON_NUM_THREADS, else every core.
        #[arg(long)]
        threads: Option<usize>,
        /// Summarise only the first N scenarios in the grounding pass (0 skips it).
        #[arg(long, value_name = "N")]
        max_scenarios: Option<usize>,
        /// Keep Q4_1/Q5_x tensors as they are instead of re-quantizing them to Q8_0.
        #[arg(long)]
        no_requantize: bool,
        /// The Python interpreter for --compare-llama-cpp.
        #[arg(long, default_value = "python3")]
        python: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum LogsCommand {
    /// Mine the templates of a file with one log message per line; prints every line's
    /// template id and template, then the template table.
    Mine {
        /// The log file.
        #[arg(long, value_name = "FILE")]
        input: PathBuf,
        /// JSON lines: `{"line","template_id","template"}` per line, then `{"templates":[..]}`.
        #[arg(long)]
        json: bool,
    },
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
        _ => Err(format!("expected K=V, got `{s}`")),
    }
}

#[derive(Subcommand)]
enum OutboxCommand {
    /// Counts per channel, then the messages in one state (default: pending, in queue order).
    List {
        #[command(flatten)]
        db: DbArgs,
        /// pending, delivered, digested, dead or discarded.
        #[arg(long, default_value = "pending")]
        state: String,
        /// Only this channel (slack, email, file).
        #[arg(long)]
        channel: Option<String>,
        /// Print JSON (counts and messages) instead of tables.
        #[arg(long)]
        json: bool,
        /// At most this many messages.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Dead letters: messages given up on, with the reason, newest first.
    Dead {
        #[command(flatten)]
        db: DbArgs,
        /// Only this channel (slack, email, file).
        #[arg(long)]
        channel: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// At most this many dead letters.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Queue a dead letter again (due now; the daemon sends it within seconds).
    Retry {
        /// The message id (see `warden outbox dead`).
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<i64>,
        /// Every dead letter (of --channel, when given).
        #[arg(long)]
        all: bool,
        /// With --all: only this channel's dead letters.
        #[arg(long, requires = "all")]
        channel: Option<String>,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Drop a dead letter for good (it stays listed as `discarded`).
    Discard {
        /// The message id (see `warden outbox dead`).
        id: i64,
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Subcommand)]
enum IncidentsCommand {
    /// List incidents, newest first.
    List {
        #[command(flatten)]
        db: DbArgs,
        /// Only `open` or `resolved` incidents.
        #[arg(long, value_parser = ["open", "resolved"])]
        status: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Show one incident: its root-cause ranking, evidence, summary and events.
    Show {
        /// The incident id.
        id: i64,
        #[command(flatten)]
        db: DbArgs,
        /// Print JSON (incident, events, analysis) instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// `--db` wins over `--config` (and over `WARDEN_CONFIG`).
#[derive(Args)]
#[group(required = true, multiple = true)]
struct DbArgs {
    /// Read the store location from this configuration file.
    #[arg(short, long, value_name = "FILE", env = "WARDEN_CONFIG")]
    config: Option<PathBuf>,
    /// The SQLite store itself.
    #[arg(long, value_name = "PATH")]
    db: Option<PathBuf>,
}

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

fn db_path(db: DbArgs) -> Result<PathBuf> {
    match (db.config, db.db) {
        (_, Some(p)) => Ok(p),
        (Some(c), None) => Ok(load_config(&c)?.store.sqlite),
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
    let path = db_path(db)?;
    if !path.exists() {
        return Err(anyhow!("no store at {} (has `warden run` or `warden demo` been started?)", path.display()));
    }
    Store::open(&path).with_context(|| format!("opening {}", path.display()))
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The daemon logs what it does; a command prints its answer, and its logs (a store
    // migration, a connection) would only interleave with it: warnings and errors only. The
    // demo prints its own timeline.
    let default_level = match cli.command {
        Command::Run { .. } => "info",
        Command::Demo { .. } => "error",
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
        Command::Outbox { command: OutboxCommand::List { db, state, channel, json, limit } } => open_store(db)
            .and_then(|s| outbox_cmd::list(&s, &state, channel.as_deref(), limit, json, &mut std::io::stdout().lock())),
        Command::Outbox { command: OutboxCommand::Dead { db, channel, json, limit } } => open_store(db)
            .and_then(|s| outbox_cmd::dead(&s, channel.as_deref(), limit, json, &mut std::io::stdout().lock())),
        Command::Outbox { command: OutboxCommand::Retry { id, all, channel, db } } => open_store(db)
            .and_then(|s| outbox_cmd::retry(&s, id, all, channel.as_deref(), &mut std::io::stdout().lock())),
        Command::Outbox { command: OutboxCommand::Discard { id, db } } => {
            open_store(db).and_then(|s| outbox_cmd::discard(&s, id, &mut std::io::stdout().lock()))
        }
        Command::Incidents { command: IncidentsCommand::Show { id, db, json } } => {
            open_store(db).and_then(|store| incident_cmd::show(&store, id, json, &mut std::io::stdout().lock()))
        }
        Command::Model { command: ModelCommand::Pull { repo, file, revision, dest, sha256 } } => {
            model_cmd::pull_cmd(&repo, &file, revision.as_deref(), &dest, sha256.as_deref())
        }
        Command::Model { command: ModelCommand::Info { config, model, json } } => model_info(config, model, json),
        Command::Rca {
            metrics,
            start,
            json,
            symptom,
            symptom_metric,
            graph,
            normal,
            separator,
            pattern,
            metric_kinds,
        } => rca_cmd::run_args(
            &rca_cmd::RcaArgs {
                metrics,
                start,
                json,
                symptom,
                symptom_metric,
                graph,
                normal,
                separator,
                pattern,
                metric_kinds,
            },
            &mut std::io::stdout().lock(),
            &mut std::io::stderr(),
        ),
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
            db_path(db).and_then(|p| playbook_cmd::runs_list(&p, status, json, limit))
        }
        Command::Runs { command: RunsCommand::Show { id, db, json } } => {
            db_path(db).and_then(|p| playbook_cmd::runs_show(&p, id, json))
        }
        Command::Audit { command: AuditCommand::Verify { db, json } } => {
            match db_path(db).and_then(|p| playbook_cmd::audit_verify(&p, json)) {
                Ok(true) => Ok(()),
                Ok(false) => return ExitCode::from(1),
                Err(e) => Err(e),
            }
        }
        Command::Demo { out, all_evaluations, model } => {
            let rt = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: starting the async runtime: {e}");
                    return ExitCode::from(1);
                }
            };
            rt.block_on(demo::run(&out, all_evaluations, model.as_deref()))
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
