//! `scale:` change a Deployment's replicas, clamped to `[min, max]` and to the blast radius.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Action, Ctx, Planned, Sent, StepError};
use crate::cluster::{Cluster, ClusterError, WorkloadRef};
use crate::guards::{self, GuardName, Refusal};
use crate::load::{Checker, Lit};
use crate::spec::Arg;

/// Change a Deployment's replicas: exactly one of `to` and `by`; the result is clamped to
/// `[min, max]`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScaleStep {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Arg>,
    /// Relative change (`2`, `-1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<Arg>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<Arg>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<Arg>,
}

/// Set `namespace/name` from `from` to `to` replicas (absolute, so sending it again is a
/// no-op).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScalePlan {
    pub namespace: String,
    pub name: String,
    pub from: i64,
    pub to: i64,
}

impl ScalePlan {
    fn target(&self) -> WorkloadRef {
        WorkloadRef::new(self.namespace.clone(), self.name.clone())
    }
}

#[async_trait]
impl Action for ScaleStep {
    const KEY: &'static str = "scale";
    const MUTATING: bool = true;
    type Plan = ScalePlan;
    const EXAMPLE: &'static str = "{to: 3}";

    fn check(&self, c: &mut Checker<'_>, at: &str) {
        c.needs_deployment(at, Self::KEY);
        match (&self.to, &self.by) {
            (Some(_), Some(_)) => c.err(at, "`to` and `by` exclude each other: give one"),
            (None, None) => c.err(at, "needs `to` (absolute replicas) or `by` (relative change)"),
            _ => {}
        }
        if let Some(a) = &self.to {
            c.arg(&format!("{at}.to"), a, Lit::Int(Some(0)));
        }
        if let Some(a) = &self.by {
            if c.arg(&format!("{at}.by"), a, Lit::Int(None)) == Some(0) {
                c.err(format!("{at}.by"), "must not be 0");
            }
        }
        let min = self.min.as_ref().and_then(|a| c.arg(&format!("{at}.min"), a, Lit::Int(Some(0))));
        let max = self.max.as_ref().and_then(|a| c.arg(&format!("{at}.max"), a, Lit::Int(Some(1))));
        if let (Some(lo), Some(hi)) = (min, max) {
            if lo > hi {
                c.err(format!("{at}.max"), format!("{hi} is below min {lo}"));
            }
        }
    }

    async fn plan(&self, cx: &Ctx<'_>) -> Result<Planned<ScalePlan>, StepError> {
        let t = cx.deployment_target()?;
        let current = cx.cluster()?.get_replicas(&t).await?.desired;
        let min = match &self.min {
            Some(a) => cx.render_int(a, "scale.min")?,
            None => 1,
        };
        let max = match &self.max {
            Some(a) => cx.render_int(a, "scale.max")?,
            None => i64::from(i32::MAX),
        };
        let wanted = match (&self.to, &self.by) {
            (Some(to), _) => cx.render_int(to, "scale.to")?,
            (None, Some(by)) => i64::from(current)
                .checked_add(cx.render_int(by, "scale.by")?)
                .ok_or_else(|| StepError::Failed("scale.by is out of range".into()))?,
            (None, None) => return Err(StepError::Failed("scale needs `to` or `by`".into())),
        };
        if min.max(0) > max {
            return Err(StepError::Failed(format!("scale.min {min} is greater than scale.max {max}")));
        }
        let to = i32::try_from(wanted.clamp(min.max(0), max)).unwrap_or(i32::MAX);
        if to == current {
            let bound = if wanted > i64::from(current) { "max" } else { "min" };
            return Err(StepError::Refused(Refusal::new(
                GuardName::Bounds,
                format!("{t} is already at {current} replicas; scale.{bound} allows no further step"),
            )));
        }
        guards::check_scale(&cx.run.guards, current, to).map_err(StepError::Refused)?;
        Ok(Planned::Request(ScalePlan { namespace: t.namespace, name: t.name, from: i64::from(current), to: i64::from(to) }))
    }

    async fn apply(plan: &ScalePlan, cx: &Ctx<'_>) -> Result<Sent, StepError> {
        let t = plan.target();
        let (from, to) = (plan.from, plan.to);
        let to = i32::try_from(to).map_err(|_| StepError::Failed(format!("replicas {to} out of range")))?;
        let out = cx.cluster()?.set_replicas(&t, to, cx.dry_run()).await?;
        Ok(Sent::Done(json!({
            "replicas": out.replicas, "dry_run": out.dry_run, "response": out.response,
            "summary": format!("scaled {t} from {from} to {to} replicas{}", cx.dry_note()),
        })))
    }

    async fn read_back(plan: &ScalePlan, cluster: &dyn Cluster) -> Result<Option<bool>, ClusterError> {
        Ok(Some(i64::from(cluster.get_replicas(&plan.target()).await?.desired) == plan.to))
    }

    fn inverse(plan: &ScalePlan) -> Option<ScalePlan> {
        Some(ScalePlan { namespace: plan.namespace.clone(), name: plan.name.clone(), from: plan.to, to: plan.from })
    }

    fn namespace(plan: &ScalePlan) -> Option<&str> {
        Some(&plan.namespace)
    }

    fn describe(plan: &ScalePlan) -> String {
        format!("scale {}/{} from {} to {} replicas", plan.namespace, plan.name, plan.from, plan.to)
    }
}
