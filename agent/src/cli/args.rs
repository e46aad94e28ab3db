//! The `warden` command line's grammar (clap): every command, option and help text. The
//! binary's `main` dispatches on it; keeping it here keeps `main` to wiring.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::bench;

/// `0.1.0 (commit 0123abcd4567, built 2026-01-31)`: `warden --version`.
pub const VERSION: &str = concat!(
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
pub struct Cli {
    /// Log format on stderr (the level is set with RUST_LOG; default `info`, `error` for the demo).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Copy, Clone, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
pub enum Command {
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
    /// Silences: hold back the notifications and actions of matching incidents for a while
    /// (the incidents are still recorded).
    Silences {
        #[command(subcommand)]
        command: SilencesCommand,
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
    /// The hash-chained audit trail: playbook runs, and people's hands on incidents and
    /// silences.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Rank the services of a recorded incident (a `time` column in Unix seconds and one
    /// column per metric named `<service>_<metric>`), most probable root cause first.
    Rca {
        #[command(flatten)]
        args: crate::cli::rca::RcaArgs,
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
        /// JSON Lines instead of the timeline: a `start` object, every timeline event (tagged
        /// by `kind`), and a `summary` object last.
        #[arg(long)]
        json: bool,
        /// Then keep the demo's store up in the web console at this address (e.g.
        /// `127.0.0.1:8080`), read-only with a printed token, until Ctrl-C.
        #[arg(long, value_name = "ADDR")]
        serve: Option<std::net::SocketAddr>,
    },
}

#[derive(Subcommand)]
pub enum ModelCommand {
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
pub enum PlaybookCommand {
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
pub enum RunsCommand {
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
pub enum AuditCommand {
    /// List audit entries, oldest first (the last 50 unless `--last`).
    List {
        #[command(flatten)]
        db: DbArgs,
        /// Only this run's entries.
        #[arg(long, value_name = "ID")]
        run: Option<i64>,
        /// Only entries of this kind: trigger, guard, approval, request, response, verify,
        /// revert, state, incident (acknowledged or resolved by hand), silence.
        #[arg(long, value_name = "KIND", value_parser = parse_audit_kind)]
        kind: Option<warden_playbooks::audit::AuditKind>,
        /// How many of the latest entries.
        #[arg(long, value_name = "N", default_value_t = 50)]
        last: u32,
        /// Print the entries as JSON.
        #[arg(long)]
        json: bool,
    },
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
pub enum BenchCommand {
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
        /// Run llama-family models on candle's `quantized_llama` instead of Warden's own
        /// forward pass (to compare the two).
        #[arg(long)]
        candle_llama: bool,
        /// Where the model runs: cpu, cuda or cuda:N (CUDA needs a build with the `cuda`
        /// feature; llama.cpp's side stays on the CPU).
        #[arg(long, default_value = "cpu")]
        device: warden_models::llm::DeviceSpec,
        /// The Python interpreter for --compare-llama-cpp.
        #[arg(long, default_value = "python3")]
        python: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// The web console's pages on a temporary store of many incidents: median and p99
    /// response time of each page against the 50 ms target.
    Console {
        /// Incidents in the store (each with events and an analysis).
        #[arg(long, default_value_t = 10_000)]
        incidents: usize,
        /// Timed requests per page.
        #[arg(long, default_value_t = 200)]
        requests: usize,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum LogsCommand {
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

pub fn parse_kv(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
        _ => Err(format!("expected K=V, got `{s}`")),
    }
}

#[derive(Subcommand)]
pub enum OutboxCommand {
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
pub enum IncidentsCommand {
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
    /// Acknowledge an open incident: recorded in its events with who and why.
    Ack {
        /// The incident id.
        id: i64,
        #[command(flatten)]
        hand: HandArgs,
    },
    /// Resolve an open incident by hand (with its `resolved` notifications when the
    /// configuration is given). If its watch still sees the anomaly, a new incident opens.
    Resolve {
        /// The incident id.
        id: i64,
        #[command(flatten)]
        hand: HandArgs,
    },
}

#[derive(Subcommand)]
pub enum SilencesCommand {
    /// Silence the incidents every matcher matches, from now (or --start) for --for (or
    /// until --end).
    Add {
        /// A label matcher, repeatable: `watch=checkout-latency`, `namespace!=dev`,
        /// `severity=~warning|info`, `team!~web.*`. Labels: the incident's own, `watch`,
        /// `severity`, `source`, `namespace`, `deployment`.
        #[arg(long = "match", short = 'm', value_name = "MATCHER", required = true)]
        matchers: Vec<String>,
        /// How long: `2h`, `30m`, `1d`.
        #[arg(long = "for", value_name = "DURATION", conflicts_with = "end")]
        duration: Option<crate::config::HumanDuration>,
        /// When it ends (RFC 3339, `2026-12-24T08:00:00Z`).
        #[arg(long)]
        end: Option<chrono::DateTime<chrono::Utc>>,
        /// When it starts (RFC 3339; default now).
        #[arg(long)]
        start: Option<chrono::DateTime<chrono::Utc>>,
        /// Why, for whom: required, shown with the silence.
        #[arg(long)]
        comment: String,
        /// Who (recorded as `user/NAME`; default $USER).
        #[arg(long = "as", value_name = "NAME")]
        actor: Option<String>,
        #[command(flatten)]
        db: DbArgs,
    },
    /// The silences that have not ended (with --all, the ended ones too).
    List {
        #[command(flatten)]
        db: DbArgs,
        /// Ended silences too.
        #[arg(long)]
        all: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// End a silence now.
    Expire {
        /// The silence id.
        id: i64,
        /// Who (recorded as `user/NAME`; default $USER).
        #[arg(long = "as", value_name = "NAME")]
        actor: Option<String>,
        #[command(flatten)]
        db: DbArgs,
    },
}

/// Who acknowledges or resolves, and why.
#[derive(Args)]
pub struct HandArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// Recorded with the event.
    #[arg(long)]
    pub comment: Option<String>,
    /// Who (recorded as `user/NAME`; default $USER).
    #[arg(long = "as", value_name = "NAME")]
    pub actor: Option<String>,
}

/// `--db` wins over `--config` (and over `WARDEN_CONFIG`).
#[derive(Args)]
#[group(required = true, multiple = true)]
pub struct DbArgs {
    /// Read the store location from this configuration file.
    #[arg(short, long, value_name = "FILE", env = "WARDEN_CONFIG")]
    pub config: Option<PathBuf>,
    /// The SQLite store itself.
    #[arg(long, value_name = "PATH")]
    pub db: Option<PathBuf>,
}

/// An audit entry kind by its name (`incident`, `silence`, `approval`, ...).
fn parse_audit_kind(s: &str) -> Result<warden_playbooks::audit::AuditKind, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).map_err(|_| {
        format!(
            "unknown audit kind `{s}` (one of: trigger, guard, approval, request, response, verify, revert, state, incident, silence)"
        )
    })
}
