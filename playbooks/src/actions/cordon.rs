//! `cordon:` mark a node unschedulable (undone by uncordoning it).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{yes, Action, Ctx, Planned, Sent, StepError};
use crate::cluster::{Cluster, ClusterError};
use crate::load::{Checker, Lit};
use crate::spec::{Arg, TargetKind};

/// Mark a node unschedulable (reverted by uncordoning it).
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CordonStep {
    /// The node; defaults to the run's target when the playbook's target is a node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<Arg>,
}

/// Set `node`'s `unschedulable` (its inverse uncordons); `previous` is what it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CordonPlan {
    pub node: String,
    #[serde(default = "yes")]
    pub unschedulable: bool,
    #[serde(default)]
    pub previous: bool,
}

#[async_trait]
impl Action for CordonStep {
    const KEY: &'static str = "cordon";
    const MUTATING: bool = true;
    type Plan = CordonPlan;
    const EXAMPLE: &'static str = "{node: node-1}";

    fn check(&self, c: &mut Checker<'_>, at: &str) {
        match &self.node {
            Some(a) => {
                c.arg(&format!("{at}.node"), a, Lit::Subdomain);
            }
            None if c.playbook().target == TargetKind::Node => {}
            None => c.err(at, "needs `node:` (the playbook's target is not a node)"),
        }
    }

    async fn plan(&self, cx: &Ctx<'_>) -> Result<Planned<CordonPlan>, StepError> {
        let node = match (&self.node, &cx.run.target) {
            (Some(n), _) => cx.render(n.as_str())?,
            (None, Some(t)) if t.kind == TargetKind::Node => t.name.clone(),
            _ => return Err(StepError::Failed("cordon needs `node` or a node target".into())),
        };
        let previous = cx.cluster()?.node_unschedulable(&node).await?;
        Ok(Planned::Request(CordonPlan { node, unschedulable: true, previous }))
    }

    async fn apply(plan: &CordonPlan, cx: &Ctx<'_>) -> Result<Sent, StepError> {
        let response = cx.cluster()?.set_node_unschedulable(&plan.node, plan.unschedulable, cx.dry_run()).await?;
        let verb = if plan.unschedulable { "cordoned" } else { "uncordoned" };
        Ok(Sent::Done(json!({"response": response, "summary": format!("{verb} node {}{}", plan.node, cx.dry_note())})))
    }

    async fn read_back(plan: &CordonPlan, cluster: &dyn Cluster) -> Result<Option<bool>, ClusterError> {
        Ok(Some(cluster.node_unschedulable(&plan.node).await? == plan.unschedulable))
    }

    /// Nothing to undo when the node already was as the plan left it.
    fn inverse(plan: &CordonPlan) -> Option<CordonPlan> {
        (plan.previous != plan.unschedulable).then(|| CordonPlan {
            node: plan.node.clone(),
            unschedulable: plan.previous,
            previous: plan.unschedulable,
        })
    }

    fn describe(plan: &CordonPlan) -> String {
        if plan.unschedulable {
            format!("cordon node {}", plan.node)
        } else {
            format!("uncordon node {}", plan.node)
        }
    }
}
