//! `warden bench summary`: how long an incident summary takes with the local model, how much
//! memory it needs, how candle compares with llama.cpp on the same prompt, and how often the
//! model's text survives the grounding check.
//!
//! Why: the summary runs on the agent's own CPU (incident data stays in the cluster), the
//! target is a small node with **2 cores**, and a summary that takes a minute or whose text is
//! always rejected by [`warden_models::grounding`] is not worth its memory. This command
//! measures the three things that decide that, on the recorded RCA scenario suite
//! (`tests/rca/scenarios`), with the model the daemon would load:
//!
//! 1. **Latency.** The prompt is that of one representative incident: the first `rollout`
//!    scenario of the suite (else the first scenario), ranked with its evidence
//!    ([`Mode::WithEvidence`]), built by [`build_prompt`] with the default [`PromptLimits`].
//!    The model is loaded once ([`LlmModel::load`], timed; the file's SHA-256 is not computed,
//!    as llama.cpp does not hash either; re-quantization as the daemon does it unless
//!    `--no-requantize`), then the prompt is generated from greedily, without stop strings,
//!    up to `--tokens` tokens: one warm-up run and [`RUNS`] timed runs, medians reported.
//!    The runtime has no "ignore end-of-turn" option, so a run may stop before `--tokens`:
//!    the tokens actually generated are reported and rates are computed from them. Prefill is
//!    the prompt's forward pass plus choosing the first token; after the warm-up run the
//!    prompt's fixed prefix (chat header, system text) comes from the model's prefix cache,
//!    so prefill tok/s counts the per-incident tokens only (llama.cpp prefills the whole
//!    prompt: its rate is of all tokens); decode is the rest, and decode
//!    tok/s is generated tokens over decode time (as [`Generation::tokens_per_second`]).
//!    Memory: `VmRSS` right after the load and `VmHWM` (peak) right after the timed runs.
//!    The process's CPU time per run (`/proc/self/stat`, all threads) is reported beside the
//!    wall time: CPU over wall is how many cores a run actually had.
//! 2. **llama.cpp** (`--compare-llama-cpp`): the embedded `llama_cpp_summary.py` runs PyPI
//!    `llama-cpp-python` with `python3` on the *same rendered prompt text* (chat template
//!    included, BOS added when candle adds it), the same threads, the same greedy choice and
//!    repeat penalty, and **exactly the token count candle generated** (it ignores
//!    end-of-generation tokens and, when candle stopped at an end-of-turn token, also evaluates
//!    the last token, so both sides run the same number of forward passes). Its peak memory
//!    is its own `VmHWM` too, not `ru_maxrss`, which Linux carries over from this (larger)
//!    process across fork and exec. The ratios
//!    candle / llama.cpp of decode and prefill tok/s are printed; the goal for decode is
//!    [`DECODE_RATIO_GOAL`].
//! 3. **Grounding share.** Every scenario (or the first `--max-scenarios`; 0 skips the pass) is
//!    ranked with evidence and summarised by [`summarize`] with the loaded model and the
//!    default [`SummaryOptions`] (160 tokens, 30 s budget, constrained decoding, the prompt
//!    prefix cached across scenarios): how many summaries are `llm` (every
//!    sentence grounded), `llm_filtered` (failing sentences dropped) and `template` (fallback),
//!    the most common fallback reasons, the problems of all failing sentences, and the mean
//!    summary time. On 2 cores this takes minutes (about 5-10 s per scenario).
//!
//! **Threads.** candle runs on rayon's global pool, which reads `RAYON_NUM_THREADS` once, when
//! it starts. The bench is meant to run as `RAYON_NUM_THREADS=2` on a 2-core machine;
//! `--threads N` sets that variable before anything starts the pool and is passed to
//! llama.cpp, and without it both sides use `RAYON_NUM_THREADS` or else every core. The load
//! average before the run is printed: another busy process on 2 cores halves every figure, and
//! llama.cpp's OpenMP threads suffer even more from it than rayon's.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use warden_detectors::rca::series::SeriesParams;
use warden_detectors::rca::suite::{rank_scenario, FaultType, Mode};
use warden_detectors::rca::TableRanking;
use warden_models::grounding::{GroundingReport, Problem};
use warden_models::llm::{LlmModel, LoadOptions};
use warden_models::prompt::{build_prompt, PromptLimits, SummaryInput};
use warden_models::summary::{summarize, Source, Summary, SummaryOptions};
use warden_models::{GenerateOptions, Generation, StopReason, TextGenerator};

use crate::cli::rca::{load_suite, SuiteScenario};

/// Timed generation runs (after one warm-up); medians are reported.
pub const RUNS: usize = 3;

/// The decode-speed ratio candle / llama.cpp this runtime aims for.
pub const DECODE_RATIO_GOAL: f64 = 0.8;

/// Generated tokens per summary in the grounding pass.
pub const GROUNDING_MAX_TOKENS: usize = 160;

/// The script that times llama.cpp.
const LLAMA_CPP_SCRIPT: &str = include_str!("llama_cpp_summary.py");

/// How to install what `--compare-llama-cpp` needs.
pub const LLAMA_CPP_INSTALL: &str =
    "pip install cmake ninja && CMAKE_ARGS=\"-DGGML_NATIVE=OFF -DLLAMA_CURL=OFF\" pip install llama-cpp-python \
(it compiles llama.cpp: several minutes; GGML_NATIVE=OFF avoids the AMX path that crashes with SIGILL on some CPUs)";

/// Arguments of `warden bench summary`.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryBenchArgs {
    /// The GGUF model.
    pub model: PathBuf,
    /// Upper bound on generated tokens of the latency runs.
    pub tokens: usize,
    /// The scenario suite directory.
    pub suite: PathBuf,
    /// Also time llama.cpp (`python3` with `llama-cpp-python`).
    pub compare_llama_cpp: bool,
    /// Print one JSON object.
    pub json: bool,
    /// Threads for both runtimes (sets `RAYON_NUM_THREADS`); `None`: `RAYON_NUM_THREADS` or
    /// every core.
    pub threads: Option<usize>,
    /// Scenarios of the grounding pass: `None` all, `Some(0)` none.
    pub max_scenarios: Option<usize>,
    /// Keep Q4_1/Q5_x tensors as they are instead of re-quantizing them to Q8_0.
    pub no_requantize: bool,
    /// Run llama-family models on candle's `quantized_llama` instead of Warden's own pass.
    pub candle_llama: bool,
    /// Where the model runs (`cpu`, `cuda`, `cuda:N`).
    pub device: warden_models::llm::DeviceSpec,
    /// The Python interpreter for the llama.cpp side.
    pub python: String,
}

impl Default for SummaryBenchArgs {
    fn default() -> Self {
        Self {
            model: PathBuf::new(),
            tokens: 120,
            suite: PathBuf::from("tests/rca/scenarios"),
            compare_llama_cpp: false,
            json: false,
            threads: None,
            max_scenarios: None,
            no_requantize: false,
            candle_llama: false,
            device: warden_models::llm::DeviceSpec::Cpu,
            python: "python3".into(),
        }
    }
}

/// One timed generation.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub prefill_s: f64,
    pub decode_s: f64,
    /// Wall time of the whole `generate` call (tokenization included).
    pub total_s: f64,
    /// CPU time of the process during the call, all threads (NaN where unknown).
    pub cpu_s: f64,
    pub generated_tokens: usize,
    pub stop: StopReason,
}

/// Medians of the timed runs (rates computed from the medians).
#[derive(Debug, Clone, PartialEq)]
pub struct Latency {
    pub prompt_tokens: usize,
    /// Prompt tokens whose KV cache was kept from an earlier call (the fixed prefix: chat
    /// header and system text); prefill tok/s counts only the tokens actually prefilled.
    pub cached_prefix_tokens: usize,
    pub prefill_s: f64,
    pub prefill_tok_s: f64,
    pub decode_tokens: usize,
    pub decode_s: f64,
    pub decode_tok_s: f64,
    pub total_s: f64,
    /// Median CPU seconds of a run; `cpu_s / total_s` is how many cores it had on average.
    pub cpu_s: f64,
    pub stop: StopReason,
    pub runs: Vec<Run>,
}

/// The candle side of the latency measurement.
#[derive(Debug, Clone)]
pub struct CandleReport {
    pub scenario: String,
    pub model: String,
    pub architecture: String,
    pub quantization: String,
    pub requantized_tensors: usize,
    pub load_s: f64,
    pub rss_after_load_mib: Option<f64>,
    pub peak_mib: Option<f64>,
    pub latency: Latency,
    /// The greedy text of the last run.
    pub text: String,
}

/// What `llama_cpp_summary.py` reported.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaCppReport {
    pub version: String,
    pub ggml_version: Option<String>,
    pub system_info: Option<String>,
    pub load_s: f64,
    pub prompt_tokens: usize,
    pub prefill_s: f64,
    pub prefill_tok_s: f64,
    pub decode_tokens: usize,
    pub decode_s: f64,
    pub decode_tok_s: f64,
    pub total_s: f64,
    pub cpu_s: Option<f64>,
    pub peak_rss_mib: Option<f64>,
    pub rss_after_load_mib: Option<f64>,
    /// Where llama.cpp's own greedy text hit an end-of-generation token, if it did.
    pub eog_at: Option<usize>,
    pub text: String,
    /// The script's whole JSON object.
    pub raw: Value,
}

/// One summary of the grounding pass.
#[derive(Debug, Clone)]
pub struct ScenarioSummary {
    pub scenario: String,
    pub seconds: f64,
    pub summary: Summary,
}

/// The grounding pass.
#[derive(Debug, Clone, Default)]
pub struct GroundingShare {
    pub summaries: Vec<ScenarioSummary>,
}

impl GroundingShare {
    /// Summaries per source: `(llm, llm_filtered, template)`.
    pub fn counts(&self) -> (usize, usize, usize) {
        let n = |src: Source| self.summaries.iter().filter(|s| s.summary.source == src).count();
        (n(Source::Llm), n(Source::LlmFiltered), n(Source::Template))
    }

    /// Mean seconds per summary.
    pub fn mean_seconds(&self) -> Option<f64> {
        (!self.summaries.is_empty())
            .then(|| self.summaries.iter().map(|s| s.seconds).sum::<f64>() / self.summaries.len() as f64)
    }

    /// Fallback reasons of the template summaries, by [`fallback_class`], most common first.
    pub fn fallback_reasons(&self) -> Vec<(String, usize)> {
        most_common(self.summaries.iter().filter_map(|s| fallback_class(&s.summary)))
    }

    /// Problems of every failing sentence of every model text (dropped ones included), most
    /// common first.
    pub fn sentence_problems(&self) -> Vec<(String, usize)> {
        most_common(
            self.summaries
                .iter()
                .filter_map(|s| s.summary.grounding.as_ref())
                .flat_map(|g| g.sentences.iter().filter(|c| !c.passed))
                .flat_map(|c| c.problems.iter().map(problem_class)),
        )
    }

    /// Model generations that hit the token limit (the text was cut).
    pub fn truncated(&self) -> usize {
        self.summaries.iter().filter(|s| s.summary.generation.as_ref().is_some_and(|g| g.stop == "max_tokens")).count()
    }
}

/// Everything the command reports.
#[derive(Debug, Clone)]
pub struct SummaryBenchReport {
    pub threads: usize,
    /// `/proc/loadavg`'s 1-minute figure before the run.
    pub load_average: Option<f64>,
    pub release_build: bool,
    /// x86 target features candle was compiled with (the whole build shares `RUSTFLAGS`).
    pub target_features: Vec<&'static str>,
    pub requantize: bool,
    /// Warden's own llama pass (`false`: candle's model for this file).
    pub native: bool,
    /// Where the model ran (`cpu`, `cuda:0`, ...).
    pub device: String,
    pub max_tokens: usize,
    pub candle: CandleReport,
    pub llama_cpp: Option<std::result::Result<LlamaCppReport, String>>,
    pub grounding: Option<GroundingShare>,
}

/// Which forward pass ran the model.
fn runtime_name(r: &SummaryBenchReport) -> &'static str {
    if r.native {
        "Warden's llama pass (Q4_1 kernels)"
    } else {
        "candle's model"
    }
}

/// `warden bench summary`: measure and print (a table, or JSON with `args.json`).
pub fn run(args: &SummaryBenchArgs, out: &mut dyn Write) -> Result<()> {
    let report = evaluate(args)?;
    if args.json {
        writeln!(out, "{}", to_json(&report))?;
    } else {
        write!(out, "{}", to_table(&report))?;
    }
    Ok(())
}

/// Run the three measurements (progress goes to stderr).
pub fn evaluate(args: &SummaryBenchArgs) -> Result<SummaryBenchReport> {
    if args.tokens == 0 {
        bail!("--tokens must be at least 1");
    }
    let threads = configure_threads(args.threads)?;
    let load_average = load_average();
    let scenarios = load_suite(&args.suite)?;
    let representative = scenarios
        .iter()
        .find(|s| s.spec.fault == FaultType::Rollout)
        .or_else(|| scenarios.first())
        .ok_or_else(|| anyhow!("{}: no scenarios", args.suite.display()))?;
    let ranked = rank(representative)?;
    let prompt = {
        let symptom = representative.spec.subject(&representative.spec.symptom);
        let title = title(representative);
        let input = input(&title, &symptom, representative, &ranked);
        build_prompt(&input, &PromptLimits::default())
    };

    let mut opts = LoadOptions::new(&args.model);
    opts.compute_sha256 = false;
    if args.no_requantize {
        opts.requantize = Some(false);
    }
    opts.native = !args.candle_llama;
    opts.device = args.device;
    let requantize = opts.requantize_effective();
    eprintln!("loading {} ...", args.model.display());
    let started = Instant::now();
    let mut model = LlmModel::load(&opts).context("loading the model")?;
    let load_s = started.elapsed().as_secs_f64();
    let rss_after_load_mib = proc_status_kib("VmRSS").map(kib_to_mib);

    eprintln!("timing {} generation(s) of up to {} tokens on {} ...", RUNS + 1, args.tokens, representative.name);
    let gen_opts =
        GenerateOptions { max_tokens: args.tokens, temperature: 0.0, seed: 42, stop: Vec::new(), deadline: None };
    let mut runs = Vec::with_capacity(RUNS);
    let mut text = String::new();
    for i in 0..=RUNS {
        let cpu0 = process_cpu_seconds();
        let t0 = Instant::now();
        let g = model.generate(&prompt, &gen_opts).context("generating")?;
        let total = t0.elapsed();
        let cpu = match (cpu0, process_cpu_seconds()) {
            (Some(a), Some(b)) => b - a,
            _ => f64::NAN,
        };
        if i > 0 {
            runs.push(run_of(&g, total, cpu));
            text = g.text;
        }
    }
    let peak_mib = proc_status_kib("VmHWM").map(kib_to_mib);
    let prompt_tokens = model.prompt_tokens(&prompt).context("tokenizing the prompt")?.len();
    let latency = latency(prompt_tokens, model.cached_prefix_tokens(), runs)?;
    let info = model.info();
    let candle = CandleReport {
        scenario: representative.name.clone(),
        model: info.name.clone().unwrap_or_else(|| info.path.clone()),
        architecture: info.architecture.clone(),
        quantization: info.quantization.clone(),
        requantized_tensors: model.requantized_tensors(),
        load_s,
        rss_after_load_mib,
        peak_mib,
        latency,
        text,
    };

    let llama_cpp = if args.compare_llama_cpp {
        eprintln!("timing llama.cpp on the same prompt ...");
        let rendered = model.render_prompt(&prompt);
        let add_bos = model.prompt_tokens(&prompt)?.len() > model.encode(&rendered)?.len();
        let job = LlamaCppJob {
            python: &args.python,
            model: &args.model,
            prompt: &rendered,
            add_bos,
            tokens: candle.latency.decode_tokens.max(1),
            eval_last: candle.latency.stop == StopReason::EndOfTurn,
            threads,
            repeat_penalty: opts.repeat_penalty,
            repeat_last_n: opts.repeat_last_n,
        };
        Some(measure_llama_cpp(&job))
    } else {
        None
    };

    let grounding = match args.max_scenarios {
        Some(0) => None,
        limit => {
            let take = limit.unwrap_or(usize::MAX).min(scenarios.len());
            Some(grounding_pass(&scenarios[..take], &mut model)?)
        }
    };

    Ok(SummaryBenchReport {
        threads,
        load_average,
        release_build: !cfg!(debug_assertions),
        target_features: target_features(),
        requantize,
        native: opts.native && opts.device.is_cpu() && candle.architecture == "llama",
        device: opts.device.to_string(),
        max_tokens: args.tokens,
        candle,
        llama_cpp,
        grounding,
    })
}

/// Sets `RAYON_NUM_THREADS` when asked to and returns the thread count both sides use.
fn configure_threads(threads: Option<usize>) -> Result<usize> {
    let from_env =
        std::env::var("RAYON_NUM_THREADS").ok().and_then(|v| v.trim().parse::<usize>().ok()).filter(|n| *n > 0);
    match threads {
        Some(0) => bail!("--threads must be at least 1"),
        Some(n) => {
            if from_env != Some(n) {
                // Before the model loads, so before anything starts rayon's global pool; the
                // CLI has no other threads that read the environment at this point.
                std::env::set_var("RAYON_NUM_THREADS", n.to_string());
            }
            Ok(n)
        }
        None => Ok(from_env.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))),
    }
}

/// The incident title of a scenario: its symptom, as a watch would be named (not the
/// description, which states the cause).
fn title(s: &SuiteScenario) -> String {
    format!("{} degraded", s.spec.symptom)
}

fn input<'a>(
    title: &'a str,
    symptom: &'a warden_detectors::rca::Subject,
    s: &SuiteScenario,
    ranked: &'a TableRanking,
) -> SummaryInput<'a> {
    SummaryInput {
        title,
        symptom: Some(symptom),
        started: s.spec.start,
        ranking: &ranked.ranking,
        evidence: &ranked.evidence,
    }
}

fn rank(s: &SuiteScenario) -> Result<TableRanking> {
    rank_scenario(&s.spec, &s.table.times, &s.table.columns, Mode::WithEvidence, &SeriesParams::default())
        .map_err(|e| anyhow!("{}: {e}", s.name))
}

fn run_of(g: &Generation, total: Duration, cpu_s: f64) -> Run {
    Run {
        prefill_s: g.prefill.as_secs_f64(),
        decode_s: g.decode.as_secs_f64(),
        total_s: total.as_secs_f64(),
        cpu_s,
        generated_tokens: g.generated_tokens,
        stop: g.stop,
    }
}

/// The median of `values` (the mean of the middle two for an even count); NaN when empty.
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

fn rate(count: usize, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        f64::NAN
    }
}

/// Medians of `runs`; greedy decoding must give every run the same token count.
fn latency(prompt_tokens: usize, cached_prefix_tokens: usize, runs: Vec<Run>) -> Result<Latency> {
    let Some(first) = runs.first() else { bail!("no timed runs") };
    let (decode_tokens, stop) = (first.generated_tokens, first.stop);
    if let Some(r) = runs.iter().find(|r| r.generated_tokens != decode_tokens) {
        bail!("greedy runs generated different token counts ({decode_tokens} and {})", r.generated_tokens);
    }
    let col = |f: fn(&Run) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>());
    let (prefill_s, decode_s, total_s) = (col(|r| r.prefill_s), col(|r| r.decode_s), col(|r| r.total_s));
    Ok(Latency {
        prompt_tokens,
        cached_prefix_tokens,
        prefill_s,
        prefill_tok_s: rate(prompt_tokens.saturating_sub(cached_prefix_tokens), prefill_s),
        decode_tokens,
        decode_s,
        decode_tok_s: rate(decode_tokens, decode_s),
        total_s,
        cpu_s: col(|r| r.cpu_s),
        stop,
        runs,
    })
}

/// Summarise every scenario with the model.
fn grounding_pass(scenarios: &[SuiteScenario], model: &mut LlmModel) -> Result<GroundingShare> {
    let opts = SummaryOptions { max_tokens: GROUNDING_MAX_TOKENS, ..SummaryOptions::default() };
    let mut share = GroundingShare::default();
    for (i, s) in scenarios.iter().enumerate() {
        let ranked = rank(s)?;
        let symptom = s.spec.subject(&s.spec.symptom);
        let title = title(s);
        let input = input(&title, &symptom, s, &ranked);
        let t0 = Instant::now();
        let summary = summarize(&input, Some(model as &mut dyn TextGenerator), &opts);
        let seconds = t0.elapsed().as_secs_f64();
        eprintln!("[{}/{}] {}: {} in {seconds:.1}s", i + 1, scenarios.len(), s.name, source_name(summary.source));
        share.summaries.push(ScenarioSummary { scenario: s.name.clone(), seconds, summary });
    }
    Ok(share)
}

fn source_name(s: Source) -> &'static str {
    match s {
        Source::Llm => "llm",
        Source::LlmFiltered => "llm_filtered",
        Source::Template => "template",
    }
}

fn stop_name(s: StopReason) -> &'static str {
    match s {
        StopReason::EndOfTurn => "end_of_turn",
        StopReason::StopString => "stop_string",
        StopReason::MaxTokens => "max_tokens",
    }
}

/// A grounding problem without its value: `unsupported number`, `no_citation`, ...
pub fn problem_class(p: &Problem) -> String {
    match p {
        Problem::NoCitation => "no_citation".into(),
        Problem::UnknownId { .. } => "unknown_id".into(),
        Problem::Unsupported { fact, .. } => format!("unsupported {fact}"),
        Problem::Untrusted { fact, .. } => format!("untrusted {fact}"),
        Problem::Directive { .. } => "directive".into(),
        Problem::Repetition { .. } => "repetition".into(),
    }
}

/// Why a summary fell back to the template, without the specifics (sentence numbers, values),
/// so that reasons can be counted; `None` for a model summary.
pub fn fallback_class(s: &Summary) -> Option<String> {
    if s.source != Source::Template {
        return None;
    }
    let reason = s.fallback_reason.as_deref().unwrap_or("unknown");
    if reason.starts_with("grounding:") {
        let uncited = reason.contains("cites the top candidate");
        let first = s.grounding.as_ref().and_then(GroundingReport::first_failure).map(|(_, c)| {
            let mut kinds: Vec<String> = c.problems.iter().map(problem_class).collect();
            kinds.sort();
            kinds.dedup();
            kinds.join(" + ")
        });
        return Some(match (first, uncited) {
            (Some(k), true) => format!("grounding: first failing sentence {k}; top candidate not cited"),
            (Some(k), false) => format!("grounding: first failing sentence {k}"),
            (None, _) => "grounding: top candidate not cited".into(),
        });
    }
    if reason.starts_with("time budget") {
        return Some("time budget exceeded".into());
    }
    if let Some(rest) = reason.strip_prefix("inference failed: ") {
        return Some(format!("inference failed: {}", rest.chars().take(80).collect::<String>()));
    }
    Some(reason.to_string())
}

fn most_common(items: impl Iterator<Item = String>) -> Vec<(String, usize)> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for k in items {
        *counts.entry(k).or_default() += 1;
    }
    let mut v: Vec<(String, usize)> = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v
}

/// The llama.cpp side of one comparison.
struct LlamaCppJob<'a> {
    python: &'a str,
    model: &'a Path,
    /// The rendered prompt text, without BOS.
    prompt: &'a str,
    add_bos: bool,
    /// Exactly this many tokens are generated.
    tokens: usize,
    /// Evaluate the last generated token too (candle stopped at an end-of-turn token).
    eval_last: bool,
    threads: usize,
    repeat_penalty: f32,
    repeat_last_n: usize,
}

/// Run `llama_cpp_summary.py`; `Err` is a message for the user.
fn measure_llama_cpp(job: &LlamaCppJob<'_>) -> std::result::Result<LlamaCppReport, String> {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let dir = std::env::temp_dir().join(format!("warden-bench-summary-{}-{nanos}", std::process::id()));
    let result = run_llama_cpp_in(&dir, job);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn run_llama_cpp_in(dir: &Path, job: &LlamaCppJob<'_>) -> std::result::Result<LlamaCppReport, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let prompt_file = dir.join("prompt.txt");
    let script = dir.join("llama_cpp_summary.py");
    std::fs::write(&prompt_file, job.prompt).map_err(|e| format!("writing {}: {e}", prompt_file.display()))?;
    std::fs::write(&script, LLAMA_CPP_SCRIPT).map_err(|e| format!("writing {}: {e}", script.display()))?;
    let mut cmd = Command::new(job.python);
    cmd.arg(&script)
        .arg("--model")
        .arg(job.model)
        .arg("--prompt-file")
        .arg(&prompt_file)
        .arg("--tokens")
        .arg(job.tokens.to_string())
        .arg("--threads")
        .arg(job.threads.to_string())
        .arg("--ignore-eos")
        .arg("--repeat-penalty")
        .arg(job.repeat_penalty.to_string())
        .arg("--repeat-last-n")
        .arg(job.repeat_last_n.to_string())
        .arg("--runs")
        .arg(RUNS.to_string())
        .arg("--warmup")
        .arg("1");
    if job.add_bos {
        cmd.arg("--add-bos");
    }
    if job.eval_last {
        cmd.arg("--eval-last");
    }
    let output = match cmd.output() {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!("`{}` was not found; install Python 3, then: {LLAMA_CPP_INSTALL}", job.python))
        }
        Err(e) => return Err(format!("running {}: {e}", job.python)),
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    match output.status.code() {
        Some(0) => {}
        Some(3) => {
            return Err(format!(
                "llama_cpp is not importable by {} ({}); install it: {LLAMA_CPP_INSTALL}",
                job.python,
                stderr.trim()
            ))
        }
        _ => return Err(format!("the llama.cpp script failed ({}): {}", output.status, stderr.trim())),
    }
    parse_llama_cpp(String::from_utf8_lossy(&output.stdout).trim())
}

/// Read the script's JSON object.
pub fn parse_llama_cpp(stdout: &str) -> std::result::Result<LlamaCppReport, String> {
    let v: Value =
        serde_json::from_str(stdout).map_err(|e| format!("reading the llama.cpp script's output `{stdout}`: {e}"))?;
    let num =
        |k: &str| v.get(k).and_then(Value::as_f64).ok_or_else(|| format!("the llama.cpp script's output has no `{k}`"));
    let count = |k: &str| {
        v.get(k)
            .and_then(Value::as_u64)
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| format!("the llama.cpp script's output has no `{k}`"))
    };
    let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let prompt_tokens = count("prompt_tokens")?;
    let decode_tokens = count("decode_tokens")?;
    let (prefill_s, decode_s) = (num("prefill_s")?, num("decode_s")?);
    Ok(LlamaCppReport {
        version: text("llama_cpp_version").unwrap_or_else(|| "unknown".into()),
        ggml_version: text("ggml_version"),
        system_info: text("system_info"),
        load_s: num("load_s")?,
        prompt_tokens,
        prefill_s,
        prefill_tok_s: rate(prompt_tokens, prefill_s),
        decode_tokens,
        decode_s,
        decode_tok_s: rate(decode_tokens, decode_s),
        total_s: num("total_s")?,
        cpu_s: v.get("cpu_s").and_then(Value::as_f64),
        peak_rss_mib: v.get("peak_rss_mb").and_then(Value::as_f64),
        rss_after_load_mib: v.get("rss_after_load_mb").and_then(Value::as_f64),
        eog_at: v.get("eog_at").and_then(Value::as_u64).and_then(|n| usize::try_from(n).ok()),
        text: text("text").unwrap_or_default(),
        raw: v,
    })
}

/// A field of `/proc/self/status` in KiB (`VmRSS`, `VmHWM`), where the system has it.
pub fn proc_status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_status_kib(&status, field)
}

fn parse_status_kib(status: &str, field: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.split(':').next() == Some(field))?;
    line.split_once(':')?.1.trim().trim_end_matches("kB").trim().parse().ok()
}

/// CPU seconds (user + system, all threads) of this process so far, from `/proc/self/stat`
/// (in `USER_HZ` ticks, which Linux fixes at 100 for this interface).
pub fn process_cpu_seconds() -> Option<f64> {
    parse_stat_cpu_seconds(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

fn parse_stat_cpu_seconds(stat: &str) -> Option<f64> {
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

fn kib_to_mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}

/// The SIMD target features this binary (and so candle) was compiled with.
fn target_features() -> Vec<&'static str> {
    let mut f = Vec::new();
    macro_rules! feature {
        ($($name:tt),*) => {$(if cfg!(target_feature = $name) { f.push($name); })*};
    }
    feature!("sse4.1", "sse4.2", "avx", "avx2", "fma", "f16c", "avx512f", "neon");
    f
}

fn num(x: f64) -> Value {
    if x.is_finite() {
        json!(x)
    } else {
        Value::Null
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        f64::NAN
    }
}

/// The `--json` object.
pub fn to_json(r: &SummaryBenchReport) -> Value {
    let c = &r.candle;
    let l = &c.latency;
    let runs: Vec<Value> = l
        .runs
        .iter()
        .map(|x| {
            json!({
                "prefill_s": num(x.prefill_s), "decode_s": num(x.decode_s), "total_s": num(x.total_s), "cpu_s": num(x.cpu_s),
                "decode_tokens": x.generated_tokens, "stop": stop_name(x.stop),
            })
        })
        .collect();
    let candle = json!({
        "scenario": c.scenario,
        "model": c.model,
        "architecture": c.architecture,
        "quantization": c.quantization,
        "requantize": r.requantize,
        "requantized_tensors": c.requantized_tensors,
        "runtime": runtime_name(r),
        "device": r.device,
        "load_s": num(c.load_s),
        "prompt_tokens": l.prompt_tokens,
        "cached_prefix_tokens": l.cached_prefix_tokens,
        "prefill_s": num(l.prefill_s),
        "prefill_tok_s": num(l.prefill_tok_s),
        "decode_tokens": l.decode_tokens,
        "decode_s": num(l.decode_s),
        "decode_tok_s": num(l.decode_tok_s),
        "total_s": num(l.total_s),
        "cpu_s": num(l.cpu_s),
        "stop": stop_name(l.stop),
        "rss_after_load_mib": c.rss_after_load_mib,
        "peak_mib": c.peak_mib,
        "runs": runs,
        "text": c.text,
    });
    let llama_cpp = match &r.llama_cpp {
        None => Value::Null,
        Some(Err(e)) => json!({ "error": e }),
        Some(Ok(x)) => json!({
            "llama_cpp_version": x.version,
            "ggml_version": x.ggml_version,
            "system_info": x.system_info,
            "load_s": num(x.load_s),
            "prompt_tokens": x.prompt_tokens,
            "prefill_s": num(x.prefill_s),
            "prefill_tok_s": num(x.prefill_tok_s),
            "decode_tokens": x.decode_tokens,
            "decode_s": num(x.decode_s),
            "decode_tok_s": num(x.decode_tok_s),
            "total_s": num(x.total_s),
            "cpu_s": x.cpu_s.map(num),
            "peak_rss_mb": x.peak_rss_mib,
            "ru_maxrss_mb": x.raw.get("ru_maxrss_mb").cloned().unwrap_or(Value::Null),
            "rss_after_load_mb": x.rss_after_load_mib,
            "eog_at": x.eog_at,
            "runs": x.raw.get("runs").cloned().unwrap_or(Value::Null),
            "text": x.text,
            "ratio_decode_tok_s": num(ratio(l.decode_tok_s, x.decode_tok_s)),
            "ratio_prefill_tok_s": num(ratio(l.prefill_tok_s, x.prefill_tok_s)),
            "decode_goal": DECODE_RATIO_GOAL,
            "decode_goal_met": ratio(l.decode_tok_s, x.decode_tok_s) >= DECODE_RATIO_GOAL,
        }),
    };
    let grounding = r.grounding.as_ref().map_or(Value::Null, |g| {
        let (llm, filtered, template) = g.counts();
        let pairs = |v: Vec<(String, usize)>| -> Vec<Value> {
            v.into_iter().map(|(k, n)| json!({"reason": k, "count": n})).collect()
        };
        let scenarios: Vec<Value> = g
            .summaries
            .iter()
            .map(|s| {
                json!({
                    "scenario": s.scenario,
                    "source": source_name(s.summary.source),
                    "seconds": num(s.seconds),
                    "generated_tokens": s.summary.generation.as_ref().map(|x| x.generated_tokens),
                    "stop": s.summary.generation.as_ref().map(|x| x.stop.clone()),
                    "fallback_reason": s.summary.fallback_reason,
                    "provenance": s.summary.provenance(),
                    "text": s.summary.text,
                    "model_text": s.summary.model_text,
                })
            })
            .collect();
        json!({
            "scenarios": g.summaries.len(),
            "max_tokens": GROUNDING_MAX_TOKENS,
            "llm": llm,
            "llm_filtered": filtered,
            "template": template,
            "truncated": g.truncated(),
            "mean_seconds": g.mean_seconds().map(num),
            "fallback_reasons": pairs(g.fallback_reasons()),
            "sentence_problems": pairs(g.sentence_problems()),
            "summaries": scenarios,
        })
    });
    json!({
        "threads": r.threads,
        "load_average_1m": r.load_average,
        "release_build": r.release_build,
        "target_features": r.target_features,
        "max_tokens": r.max_tokens,
        "runs": RUNS,
        "candle": candle,
        "llama_cpp": llama_cpp,
        "grounding": grounding,
    })
}

fn mib(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |m| format!("{m:.1} MiB"))
}

/// The readable report.
pub fn to_table(r: &SummaryBenchReport) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let c = &r.candle;
    let l = &c.latency;
    let features = if r.target_features.is_empty() { "baseline".to_string() } else { r.target_features.join(",") };
    let _ = writeln!(
        out,
        "summary bench: {} ({}, {}), {} thread(s), load average {} before the run, {} build, target features: {features}",
        c.model,
        c.architecture,
        c.quantization,
        r.threads,
        r.load_average.map_or_else(|| "-".into(), |v| format!("{v:.2}")),
        if r.release_build { "release" } else { "DEBUG (figures are not meaningful)" },
    );
    let _ = writeln!(
        out,
        "runtime: {} on {}; re-quantization to Q8_0: {}; prompt of scenario {} (with-evidence ranking, default prompt limits); greedy, up to {} tokens, 1 warm-up + median of {RUNS} runs",
        runtime_name(r),
        r.device,
        if r.requantize { format!("on ({} tensors)", c.requantized_tensors) } else { "off".into() },
        c.scenario,
        r.max_tokens,
    );
    let _ = writeln!(out);
    let llama = match &r.llama_cpp {
        Some(Ok(x)) => Some(x),
        _ => None,
    };
    let _ = writeln!(
        out,
        "{:<20} {:>14} {:>14} {:>8}",
        "",
        "candle",
        if llama.is_some() { "llama.cpp" } else { "" },
        if llama.is_some() { "ratio" } else { "" }
    );
    let row = |out: &mut String, name: &str, a: String, b: Option<String>, ratio: Option<f64>| {
        let _ = writeln!(
            out,
            "{name:<20} {a:>14} {:>14} {:>8}",
            b.unwrap_or_default(),
            ratio.filter(|x| x.is_finite()).map_or_else(String::new, |x| format!("{x:.2}"))
        );
    };
    row(&mut out, "load s", format!("{:.2}", c.load_s), llama.map(|x| format!("{:.2}", x.load_s)), None);
    row(&mut out, "prompt tokens", l.prompt_tokens.to_string(), llama.map(|x| x.prompt_tokens.to_string()), None);
    row(&mut out, "cached prefix tok", l.cached_prefix_tokens.to_string(), llama.map(|_| "0".to_string()), None);
    row(&mut out, "prefill s", format!("{:.3}", l.prefill_s), llama.map(|x| format!("{:.3}", x.prefill_s)), None);
    row(
        &mut out,
        "prefill tok/s",
        format!("{:.1}", l.prefill_tok_s),
        llama.map(|x| format!("{:.1}", x.prefill_tok_s)),
        llama.map(|x| ratio(l.prefill_tok_s, x.prefill_tok_s)),
    );
    row(&mut out, "decode tokens", l.decode_tokens.to_string(), llama.map(|x| x.decode_tokens.to_string()), None);
    row(&mut out, "decode s", format!("{:.3}", l.decode_s), llama.map(|x| format!("{:.3}", x.decode_s)), None);
    row(
        &mut out,
        "decode tok/s",
        format!("{:.1}", l.decode_tok_s),
        llama.map(|x| format!("{:.1}", x.decode_tok_s)),
        llama.map(|x| ratio(l.decode_tok_s, x.decode_tok_s)),
    );
    row(&mut out, "total s", format!("{:.3}", l.total_s), llama.map(|x| format!("{:.3}", x.total_s)), None);
    let cores = |cpu: f64, wall: f64| {
        if cpu.is_finite() && wall > 0.0 {
            format!("{cpu:.1} ({:.2})", cpu / wall)
        } else {
            "-".to_string()
        }
    };
    row(
        &mut out,
        "CPU s (cores used)",
        cores(l.cpu_s, l.total_s),
        llama.map(|x| cores(x.cpu_s.unwrap_or(f64::NAN), x.total_s)),
        None,
    );
    row(&mut out, "RSS after load", mib(c.rss_after_load_mib), llama.map(|x| mib(x.rss_after_load_mib)), None);
    row(&mut out, "peak RSS", mib(c.peak_mib), llama.map(|x| mib(x.peak_rss_mib)), None);
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "candle stopped at {} after {} tokens{}",
        stop_name(l.stop).replace('_', " "),
        l.decode_tokens,
        if l.stop == StopReason::EndOfTurn { " (the runtime cannot be told to ignore end-of-turn)" } else { "" }
    );
    match &r.llama_cpp {
        None => {}
        Some(Err(e)) => {
            let _ = writeln!(out, "llama.cpp comparison not run: {e}");
        }
        Some(Ok(x)) => {
            let d = ratio(l.decode_tok_s, x.decode_tok_s);
            let _ = writeln!(
                out,
                "llama.cpp: llama-cpp-python {}{}, generated exactly candle's {} tokens (end-of-generation ignored; its own greedy text {}); {}",
                x.version,
                x.ggml_version.as_deref().map_or_else(String::new, |g| format!(" (ggml {g})")),
                x.decode_tokens,
                x.eog_at.map_or_else(|| "did not end".to_string(), |n| format!("ended after {n} tokens")),
                x.system_info.as_deref().unwrap_or("")
            );
            if x.prompt_tokens != l.prompt_tokens {
                let _ = writeln!(
                    out,
                    "note: the tokenizers disagree on the prompt: {} tokens in candle, {} in llama.cpp",
                    l.prompt_tokens, x.prompt_tokens
                );
            }
            let _ = writeln!(
                out,
                "decode tok/s candle / llama.cpp = {d:.2} (goal >= {DECODE_RATIO_GOAL}: {}); prefill tok/s ratio {:.2}",
                if d >= DECODE_RATIO_GOAL { "met" } else { "NOT met" },
                ratio(l.prefill_tok_s, x.prefill_tok_s)
            );
        }
    }
    if let Some(g) = &r.grounding {
        let (llm, filtered, template) = g.counts();
        let n = g.summaries.len();
        let pct = |k: usize| if n > 0 { 100.0 * k as f64 / n as f64 } else { 0.0 };
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "grounding share over {n} scenario(s) (summarize, max {GROUNDING_MAX_TOKENS} tokens, default options): llm {llm} ({:.0}%), llm_filtered {filtered} ({:.0}%), template {template} ({:.0}%); mean {} per summary; {} generation(s) hit the token limit",
            pct(llm),
            pct(filtered),
            pct(template),
            g.mean_seconds().map_or_else(|| "-".into(), |s| format!("{s:.1}s")),
            g.truncated()
        );
        let reasons = g.fallback_reasons();
        if !reasons.is_empty() {
            let _ = writeln!(out, "fallback reasons:");
            for (k, c) in reasons.iter().take(6) {
                let _ = writeln!(out, "  {c:>3}  {k}");
            }
        }
        let problems = g.sentence_problems();
        if !problems.is_empty() {
            let _ = writeln!(out, "problems of failing sentences (all model texts):");
            for (k, c) in problems.iter().take(8) {
                let _ = writeln!(out, "  {c:>3}  {k}");
            }
        }
        let _ = writeln!(out, "{:<24} {:>13} {:>7} {:>7}  fallback reason", "scenario", "source", "s", "tokens");
        for s in &g.summaries {
            let _ = writeln!(
                out,
                "{:<24} {:>13} {:>7.1} {:>7}  {}",
                s.scenario,
                source_name(s.summary.source),
                s.seconds,
                s.summary.generation.as_ref().map_or_else(|| "-".into(), |x| x.generated_tokens.to_string()),
                s.summary.fallback_reason.as_deref().map_or_else(String::new, |x| x.chars().take(110).collect())
            );
        }
        let written: Vec<&ScenarioSummary> =
            g.summaries.iter().filter(|s| s.summary.source != Source::Template).take(5).collect();
        if !written.is_empty() {
            let _ = writeln!(out, "model-written summaries (first {}):", written.len());
            for s in written {
                let _ = writeln!(out, "  {}: {}", s.scenario, s.summary.text);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn latency_takes_medians_and_rejects_unequal_counts() {
        let run = |p: f64, d: f64, n: usize| Run {
            prefill_s: p,
            decode_s: d,
            total_s: p + d,
            cpu_s: 2.0 * (p + d),
            generated_tokens: n,
            stop: StopReason::MaxTokens,
        };
        let l = latency(500, 100, vec![run(0.5, 2.0, 40), run(0.4, 4.0, 40), run(0.6, 3.0, 40)])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((l.prefill_s, l.decode_s, l.decode_tokens), (0.5, 3.0, 40));
        // Only the 400 tokens after the cached prefix were prefilled.
        assert!((l.decode_tok_s - 40.0 / 3.0).abs() < 1e-9 && (l.prefill_tok_s - 800.0).abs() < 1e-9);
        assert!(latency(500, 0, vec![run(0.5, 2.0, 40), run(0.5, 2.0, 41)]).is_err());
        assert!(latency(500, 0, Vec::new()).is_err());
    }

    #[test]
    fn status_fields_are_parsed() {
        let s = "Name:\twarden\nVmHWM:\t  123456 kB\nVmRSS:\t  2048 kB\n";
        assert_eq!(parse_status_kib(s, "VmHWM"), Some(123_456));
        assert_eq!(parse_status_kib(s, "VmRSS"), Some(2048));
        assert_eq!(parse_status_kib(s, "VmSwap"), None);
        let stat = "42 (a b) c) R 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 100 1000 10";
        assert_eq!(parse_stat_cpu_seconds(stat), Some(3.0));
        assert_eq!(parse_stat_cpu_seconds("garbage"), None);
        if Path::new("/proc/self/status").exists() {
            assert!(proc_status_kib("VmHWM").is_some_and(|k| k > 0));
        }
    }

    #[test]
    fn the_script_output_is_read() {
        let out = r#"{"load_s": 0.5, "prompt_tokens": 600, "prefill_s": 0.3, "prefill_tok_s": 2000.0, "decode_tokens": 100,
            "decode_s": 1.25, "decode_tok_s": 80.0, "total_s": 1.6, "peak_rss_mb": 250.5, "rss_after_load_mb": 240.0,
            "llama_cpp_version": "0.3.36", "ggml_version": "0.25.3 abc", "system_info": "CPU : AVX2 = 1", "eog_at": 57,
            "text": "hi", "runs": []}"#;
        let r = parse_llama_cpp(out).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((r.prompt_tokens, r.decode_tokens, r.eog_at), (600, 100, Some(57)));
        assert!((r.decode_tok_s - 80.0).abs() < 1e-9 && (r.prefill_tok_s - 2000.0).abs() < 1e-9);
        assert_eq!(r.version, "0.3.36");
        assert!(parse_llama_cpp("{}").is_err_and(|e| e.contains("prompt_tokens")));
        assert!(parse_llama_cpp("not json").is_err());
    }

    #[test]
    fn fallback_reasons_are_classed() {
        use warden_models::grounding::{FactKind, SentenceCheck};
        let template = |reason: &str, grounding: Option<GroundingReport>| Summary {
            text: "t".into(),
            source: Source::Template,
            fallback_reason: Some(reason.into()),
            model: None,
            model_text: None,
            grounding,
            generation: None,
            decoding: None,
        };
        let report = GroundingReport {
            passed: false,
            sentences: vec![
                SentenceCheck { text: "a [E1].".into(), citations: vec!["E1".into()], passed: true, problems: vec![] },
                SentenceCheck {
                    text: "b 42.".into(),
                    citations: vec![],
                    passed: false,
                    problems: vec![
                        Problem::NoCitation,
                        Problem::Unsupported { fact: FactKind::Number, value: "42".into() },
                    ],
                },
            ],
        };
        let s = template("grounding: sentence 2: no_citation, unsupported(number: \"42\")", Some(report.clone()));
        assert_eq!(
            fallback_class(&s).as_deref(),
            Some("grounding: first failing sentence no_citation + unsupported number")
        );
        let s = template("grounding: sentence 2: x; no passing sentence cites the top candidate (E3)", Some(report));
        assert_eq!(
            fallback_class(&s).as_deref(),
            Some("grounding: first failing sentence no_citation + unsupported number; top candidate not cited")
        );
        let s = template(
            "grounding: no sentence cites the top candidate (E3)",
            Some(GroundingReport { passed: true, sentences: vec![] }),
        );
        assert_eq!(fallback_class(&s).as_deref(), Some("grounding: top candidate not cited"));
        assert_eq!(
            fallback_class(&template("time budget 30s exceeded after 12 tokens", None)).as_deref(),
            Some("time budget exceeded")
        );
        let llm = Summary { source: Source::Llm, fallback_reason: None, ..template("x", None) };
        assert_eq!(fallback_class(&llm), None);
        let share = GroundingShare {
            summaries: vec![
                ScenarioSummary { scenario: "a".into(), seconds: 2.0, summary: llm },
                ScenarioSummary {
                    scenario: "b".into(),
                    seconds: 4.0,
                    summary: template("model returned no text", None),
                },
                ScenarioSummary {
                    scenario: "c".into(),
                    seconds: 6.0,
                    summary: template("model returned no text", None),
                },
            ],
        };
        assert_eq!(share.counts(), (1, 0, 2));
        assert_eq!(share.mean_seconds(), Some(4.0));
        assert_eq!(share.fallback_reasons(), vec![("model returned no text".to_string(), 2)]);
    }
}
