//! `wait:` let time pass on the engine's clock (skipped in a dry run).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Action, Ctx, Planned, Sent, StepError};
use crate::duration::HumanDuration;
use crate::load::Checker;

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WaitStep {
    #[serde(rename = "for")]
    pub duration: HumanDuration,
}

/// Done at `until`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitPlan {
    pub until: DateTime<Utc>,
}

#[async_trait]
impl Action for WaitStep {
    const KEY: &'static str = "wait";
    const MUTATING: bool = false;
    type Plan = WaitPlan;
    const EXAMPLE: &'static str = "{for: 1m}";

    fn check(&self, c: &mut Checker<'_>, at: &str) {
        c.positive(&format!("{at}.for"), self.duration.get());
    }

    async fn plan(&self, cx: &Ctx<'_>) -> Result<Planned<WaitPlan>, StepError> {
        if cx.dry_run() {
            return Ok(Planned::Skip("dry-run: no wait".into()));
        }
        let until = crate::time::after(cx.now, self.duration.get())
            .ok_or_else(|| StepError::Failed(format!("wait.for {} is out of range", self.duration)))?;
        Ok(Planned::Request(WaitPlan { until }))
    }

    async fn apply(plan: &WaitPlan, cx: &Ctx<'_>) -> Result<Sent, StepError> {
        if plan.until <= cx.now {
            Ok(Sent::Done(json!({})))
        } else {
            Ok(Sent::Wait(plan.until, json!({})))
        }
    }

    async fn poll(plan: &WaitPlan, cx: &Ctx<'_>) -> Result<Sent, StepError> {
        let _ = (plan, cx);
        Ok(Sent::Done(json!({})))
    }

    fn describe(plan: &WaitPlan) -> String {
        let _ = plan;
        "wait".into()
    }
}
