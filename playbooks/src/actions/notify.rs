//! `notify:` send a message to the run's notice channels.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Action, Ctx, Planned, Sent, StepError};
use crate::engine::Notice;
use crate::load::{Checker, Lit};
use crate::spec::Arg;

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyStep {
    pub message: Arg,
}

/// The rendered message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifyPlan {
    pub message: String,
}

#[async_trait]
impl Action for NotifyStep {
    const KEY: &'static str = "notify";
    const MUTATING: bool = false;
    type Plan = NotifyPlan;
    const EXAMPLE: &'static str = "{message: 'run {{ run.id }} scaled'}";

    fn check(&self, c: &mut Checker<'_>, at: &str) {
        c.arg(&format!("{at}.message"), &self.message, Lit::Text);
    }

    async fn plan(&self, cx: &Ctx<'_>) -> Result<Planned<NotifyPlan>, StepError> {
        Ok(Planned::Request(NotifyPlan { message: cx.render(self.message.as_str())? }))
    }

    async fn apply(plan: &NotifyPlan, cx: &Ctx<'_>) -> Result<Sent, StepError> {
        cx.notices.notice(cx.run, Notice::Message, &plan.message);
        Ok(Sent::Done(json!({"message": plan.message})))
    }

    fn describe(plan: &NotifyPlan) -> String {
        let _ = plan;
        "notify".into()
    }
}
