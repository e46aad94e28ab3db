//! `verify:` a PromQL condition that must hold over a window starting now. No data is never
//! "verified": an evaluation without a sample fails the step.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use warden_connectors::prometheus::Series;

use super::{Action, Ctx, Planned, Sent, StepError};
use crate::audit::AuditKind;
use crate::duration::HumanDuration;
use crate::load::{Checker, Lit, MAX_VERIFY_POINTS};
use crate::spec::Arg;

/// The evaluation step of a window when the step does not say.
pub const DEFAULT_VERIFY_STEP: Duration = Duration::from_secs(30);

/// A PromQL condition that must hold at every step of a window starting now. The query must
/// return a non-zero sample when healthy (`rate(errors[5m]) < bool 0.05`, or a filter such
/// as `... < 0.05`); a step with no sample fails: no data is never "verified".
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyStep {
    pub query: Arg,
    #[serde(rename = "for")]
    pub duration: HumanDuration,
    /// Evaluation step inside the window; 30s when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<HumanDuration>,
}

/// Evaluate `query` every `step_secs` from `start` to `end`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerifyPlan {
    pub query: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    #[serde(default = "default_step_secs")]
    pub step_secs: f64,
}

fn default_step_secs() -> f64 {
    DEFAULT_VERIFY_STEP.as_secs_f64()
}

#[async_trait]
impl Action for VerifyStep {
    const KEY: &'static str = "verify";
    const MUTATING: bool = false;
    const AUDIT: AuditKind = AuditKind::Verify;
    type Plan = VerifyPlan;
    const EXAMPLE: &'static str = "{query: up, for: 1m}";

    fn check(&self, c: &mut Checker<'_>, at: &str) {
        c.arg(&format!("{at}.query"), &self.query, Lit::Text);
        c.positive(&format!("{at}.for"), self.duration.get());
        if let Some(s) = self.step {
            c.positive(&format!("{at}.step"), s.get());
            if s > self.duration {
                c.err(format!("{at}.step"), format!("{s} is longer than the window `for: {}`", self.duration));
            }
        }
        // Prometheus answers at most 11,000 points per series; the engine evaluates every
        // one of them.
        let step = self.step.map(|s| s.get()).unwrap_or(DEFAULT_VERIFY_STEP).max(Duration::from_secs(1));
        let points = self.duration.get().as_millis() / step.as_millis().max(1);
        if points > MAX_VERIFY_POINTS {
            c.err(
                format!("{at}.for"),
                format!(
                    "{} holds {points} evaluations of {}; at most {MAX_VERIFY_POINTS}: raise `step` or shorten `for`",
                    self.duration,
                    HumanDuration(step)
                ),
            );
        }
    }

    async fn plan(&self, cx: &Ctx<'_>) -> Result<Planned<VerifyPlan>, StepError> {
        if cx.dry_run() {
            return Ok(Planned::Skip("dry-run: nothing was changed, so nothing is verified".into()));
        }
        let query = cx.render(self.query.as_str())?;
        let end = crate::time::after(cx.now, self.duration.get())
            .ok_or_else(|| StepError::Failed(format!("verify.for {} is out of range", self.duration)))?;
        let step = self.step.map(|s| s.get()).unwrap_or(DEFAULT_VERIFY_STEP);
        Ok(Planned::Request(VerifyPlan { query, start: cx.now, end, step_secs: step.as_secs_f64() }))
    }

    async fn apply(plan: &VerifyPlan, cx: &Ctx<'_>) -> Result<Sent, StepError> {
        if plan.end > cx.now {
            Ok(Sent::Wait(plan.end, json!({"query": plan.query})))
        } else {
            evaluate(plan, cx).await
        }
    }

    async fn poll(plan: &VerifyPlan, cx: &Ctx<'_>) -> Result<Sent, StepError> {
        evaluate(plan, cx).await
    }

    fn describe(plan: &VerifyPlan) -> String {
        format!("verify `{}`", plan.query)
    }
}

/// The verification: every evaluation step of the window must have a sample, and every
/// sample must be non-zero. A missing sample is a failure: no data is never "verified".
async fn evaluate(plan: &VerifyPlan, cx: &Ctx<'_>) -> Result<Sent, StepError> {
    let metrics = cx.metrics.ok_or_else(|| StepError::Failed("no metrics source to verify with".into()))?;
    let (query, start, end) = (&plan.query, plan.start, plan.end);
    let step = Duration::try_from_secs_f64(plan.step_secs.max(1.0)).unwrap_or(DEFAULT_VERIFY_STEP);
    // A partial answer (Prometheus' warnings) is judged on what it holds: a missing sample
    // still fails the window.
    let answer =
        metrics.query_range(query, start, end, step).await.map_err(|e| StepError::Failed(format!("verify query failed: {e}")))?;
    let check = judge_window(&answer.series, start, end, step);
    let summary = format!("verified `{query}` over {} evaluation(s)", check.checked);
    if check.no_data.is_empty() && check.false_at.is_empty() {
        return Ok(Sent::Done(json!({"checked": check.checked, "summary": summary})));
    }
    let mut why = Vec::new();
    if let Some(t) = check.no_data.first() {
        why.push(format!("no data at {} of {} evaluation(s) (first {})", check.no_data.len(), check.checked, t.format("%H:%M:%S")));
    }
    if let Some(t) = check.false_at.first() {
        why.push(format!("false at {} of {} evaluation(s) (first {})", check.false_at.len(), check.checked, t.format("%H:%M:%S")));
    }
    Err(StepError::Failed(format!("verification `{query}` did not hold: {}", why.join("; "))))
}

/// What a verification window showed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WindowCheck {
    pub checked: usize,
    pub no_data: Vec<DateTime<Utc>>,
    pub false_at: Vec<DateTime<Utc>>,
}

/// Judge a window: at each evaluation time `start + k·step` up to `end`, the condition holds
/// when at least one series has a sample there and every sample there is finite and non-zero.
pub fn judge_window(series: &[Series], start: DateTime<Utc>, end: DateTime<Utc>, step: Duration) -> WindowCheck {
    let mut out = WindowCheck::default();
    let step_ms = (step.as_millis() as i64).max(1);
    let mut t = start;
    while t <= end {
        out.checked += 1;
        let at: Vec<f64> = series
            .iter()
            .filter_map(|s| {
                s.points
                    .iter()
                    .find(|p| p.timestamp_ms.saturating_sub(t.timestamp_millis()).saturating_abs() < step_ms / 2 + 1)
                    .map(|p| p.value)
            })
            .collect();
        if at.is_empty() {
            out.no_data.push(t);
        } else if at.iter().any(|v| !v.is_finite() || *v == 0.0) {
            out.false_at.push(t);
        }
        match t.checked_add_signed(chrono::Duration::milliseconds(step_ms)) {
            Some(next) => t = next,
            None => break,
        }
    }
    out
}
