//! Logs: template mining and the detectors that run on the mined stream.
//!
//! Metrics say *that* something changed; logs often say *what*. A raw log stream is too
//! varied to count or compare line by line, so every line is first mapped to its template —
//! the message with its variable parts replaced by `<*>` — and the detectors work on
//! templates: a template never seen before, a template whose rate leaves its own baseline, a
//! burst of error-level lines. Everything here is pure and synchronous, like the rest of the
//! crate: the agent reads the lines and the clock and passes them in.
//!
//! * [`mask`] — generic masking of variable tokens (numbers, ids, addresses, paths, times).
//! * [`drain`] — the streaming miner: [`Miner`] with stable ids, a bounded number of
//!   templates and a serialisable [`MinerState`].
//! * `gap` — optional fields: lining up a line with a template of another length.
//! * [`signals`] — [`LogSignals`]: new-template, per-template rate and error-burst signals
//!   with evidence (template, sample lines, counts).
//!
//! `docs/logs.md` has the settings, the memory bound and the Loghub benchmark figures.

pub mod drain;
mod gap;
mod hash;
pub mod mask;
pub mod signals;

pub use drain::{Change, MatchResult, Miner, MinerParams, MinerState, TemplateId, TemplateInfo};
pub use signals::{Evidence, LogSignals, Signal, SignalKind, SignalParams};
