//! Runs and plans in words, for notifications and the CLI.

use crate::run::{Run, RunStatus};

pub use crate::actions::describe_plan;

/// The planned steps in words (for approval requests).
pub(crate) fn plan_text(run: &Run) -> String {
    run.steps
        .iter()
        .enumerate()
        .map(|(i, s)| match s.result.as_ref().and_then(|r| r.get("preview")) {
            Some(p) => format!("{}. {}", i + 1, describe_plan(&s.action, p)),
            None => format!("{}. {}", i + 1, s.action),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// One line on how a run ended.
pub fn finished_text(run: &Run) -> String {
    let done = run.summary();
    let mut text = format!("run {} of {}: {}", run.id, run.title(), run.status);
    if !done.is_empty() {
        text.push_str(&format!(" ({done})"));
    }
    if let Some(r) = &run.reason {
        if !matches!(run.status, RunStatus::Succeeded) {
            text.push_str(&format!(": {r}"));
        }
    }
    text
}
