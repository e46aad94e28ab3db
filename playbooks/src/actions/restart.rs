//! `restart:` a rolling restart of a Deployment (`kubectl rollout restart`).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{Action, Ctx, Planned, Sent, StepError};
use crate::cluster::{Cluster, ClusterError, WorkloadRef};
use crate::load::Checker;

/// `kubectl rollout restart` of the target Deployment.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RestartStep {}

/// Stamp the pod template's `kubectl.kubernetes.io/restartedAt` with `restarted_at` (fixed
/// when planned, so sending it again is a no-op).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartPlan {
    pub namespace: String,
    pub name: String,
    pub restarted_at: String,
}

impl RestartPlan {
    fn target(&self) -> WorkloadRef {
        WorkloadRef::new(self.namespace.clone(), self.name.clone())
    }
}

#[async_trait]
impl Action for RestartStep {
    const KEY: &'static str = "restart";
    const MUTATING: bool = true;
    type Plan = RestartPlan;
    const EXAMPLE: &'static str = "{}";

    fn check(&self, c: &mut Checker<'_>, at: &str) {
        c.needs_deployment(at, Self::KEY);
    }

    async fn plan(&self, cx: &Ctx<'_>) -> Result<Planned<RestartPlan>, StepError> {
        let t = cx.deployment_target()?;
        Ok(Planned::Request(RestartPlan {
            namespace: t.namespace,
            name: t.name,
            restarted_at: cx.now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }))
    }

    async fn apply(plan: &RestartPlan, cx: &Ctx<'_>) -> Result<Sent, StepError> {
        let t = plan.target();
        let response = cx.cluster()?.restart(&t, &plan.restarted_at, cx.dry_run()).await?;
        Ok(Sent::Done(json!({"response": response, "summary": format!("restarted {t}{}", cx.dry_note())})))
    }

    async fn read_back(plan: &RestartPlan, cluster: &dyn Cluster) -> Result<Option<bool>, ClusterError> {
        let d = cluster.read_deployment(&plan.target()).await?;
        let at = d.pointer("/spec/template/metadata/annotations/kubectl.kubernetes.io~1restartedAt").and_then(Value::as_str);
        Ok(Some(at == Some(plan.restarted_at.as_str())))
    }

    fn namespace(plan: &RestartPlan) -> Option<&str> {
        Some(&plan.namespace)
    }

    fn describe(plan: &RestartPlan) -> String {
        format!("restart {}/{}", plan.namespace, plan.name)
    }
}
