//! `rollback:` roll a Deployment back to an earlier revision (`kubectl rollout undo`).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Action, Ctx, Planned, Sent, StepError};
use crate::cluster::WorkloadRef;
use crate::load::{Checker, Lit};
use crate::spec::Arg;

/// Roll the target Deployment back (`kubectl rollout undo`): to the previous revision, or to
/// `to_revision`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackStep {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_revision: Option<Arg>,
}

/// Go from `from_revision` to `to_revision` (both resolved from the cluster's history when
/// planned, so sending it again is a no-op).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackPlan {
    pub namespace: String,
    pub name: String,
    pub from_revision: i64,
    pub to_revision: i64,
}

#[async_trait]
impl Action for RollbackStep {
    const KEY: &'static str = "rollback";
    const MUTATING: bool = true;
    type Plan = RollbackPlan;
    const EXAMPLE: &'static str = "{}";

    fn check(&self, c: &mut Checker<'_>, at: &str) {
        c.needs_deployment(at, Self::KEY);
        if let Some(a) = &self.to_revision {
            c.arg(&format!("{at}.to_revision"), a, Lit::Int(Some(1)));
        }
    }

    async fn plan(&self, cx: &Ctx<'_>) -> Result<Planned<RollbackPlan>, StepError> {
        let t = cx.deployment_target()?;
        let requested = match &self.to_revision {
            Some(a) => Some(cx.render_int(a, "rollback.to_revision")?),
            None => None,
        };
        // Both revisions come from the cluster's history, not its (lagging) annotation.
        let p = cx.cluster()?.plan_rollback(&t, requested).await?;
        Ok(Planned::Request(RollbackPlan {
            namespace: t.namespace,
            name: t.name,
            from_revision: p.from_revision,
            to_revision: p.to_revision,
        }))
    }

    async fn apply(plan: &RollbackPlan, cx: &Ctx<'_>) -> Result<Sent, StepError> {
        let t = WorkloadRef::new(plan.namespace.clone(), plan.name.clone());
        let to = plan.to_revision;
        let out = cx.cluster()?.rollback(&t, Some(to), cx.dry_run()).await?;
        Ok(Sent::Done(json!({
            "from_revision": out.from_revision, "to_revision": out.to_revision, "changed": out.changed, "response": out.response,
            "summary": format!("rolled {t} back from revision {} to revision {to}{}", plan.from_revision, cx.dry_note()),
        })))
    }

    fn inverse(plan: &RollbackPlan) -> Option<RollbackPlan> {
        Some(RollbackPlan {
            namespace: plan.namespace.clone(),
            name: plan.name.clone(),
            from_revision: plan.to_revision,
            to_revision: plan.from_revision,
        })
    }

    fn namespace(plan: &RollbackPlan) -> Option<&str> {
        Some(&plan.namespace)
    }

    fn describe(plan: &RollbackPlan) -> String {
        format!("roll {}/{} back from revision {} to {}", plan.namespace, plan.name, plan.from_revision, plan.to_revision)
    }
}
