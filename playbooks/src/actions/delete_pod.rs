//! `delete_pod:` delete pods of the target's namespace, by name or selector, within the
//! blast radius.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Action, Ctx, Planned, Sent, StepError};
use crate::cluster::{Cluster, ClusterError};
use crate::guards;
use crate::load::{Checker, Lit};
use crate::run::StepStatus;
use crate::spec::Arg;

/// Delete pods in the target's namespace: one by `name`, or up to `max` matching `selector`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeletePodStep {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<Arg>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<Arg>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<Arg>,
}

/// One pod to delete, by name and uid (a replacement with the same name is kept).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodToDelete {
    pub name: String,
    #[serde(default)]
    pub uid: Option<String>,
}

/// Delete these pods of `namespace`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletePodPlan {
    pub namespace: String,
    pub pods: Vec<PodToDelete>,
}

#[async_trait]
impl Action for DeletePodStep {
    const KEY: &'static str = "delete_pod";
    const MUTATING: bool = true;
    type Plan = DeletePodPlan;
    const EXAMPLE: &'static str = "{name: pod-a}";

    fn check(&self, c: &mut Checker<'_>, at: &str) {
        c.needs_deployment(at, Self::KEY);
        match (&self.name, &self.selector) {
            (Some(_), Some(_)) => c.err(at, "`name` and `selector` exclude each other: give one"),
            (None, None) => c.err(at, "needs `name` (one pod) or `selector` (up to `max` pods)"),
            _ => {}
        }
        if let Some(a) = &self.name {
            c.arg(&format!("{at}.name"), a, Lit::Subdomain);
            if self.max.is_some() {
                c.err(format!("{at}.max"), "`max` applies to `selector`; `name` deletes one pod");
            }
        }
        if let Some(a) = &self.selector {
            c.arg(&format!("{at}.selector"), a, Lit::Text);
        }
        if let Some(a) = &self.max {
            let max = c.arg(&format!("{at}.max"), a, Lit::Int(Some(1)));
            let cap = c.playbook().guards.blast_radius.as_ref().and_then(|b| b.max_pods_deleted);
            if let (Some(m), Some(cap)) = (max, cap) {
                if m > i64::from(cap) {
                    c.err(format!("{at}.max"), format!("{m} exceeds guards.blast_radius.max_pods_deleted ({cap})"));
                }
            }
        }
    }

    async fn plan(&self, cx: &Ctx<'_>) -> Result<Planned<DeletePodPlan>, StepError> {
        let t = cx.deployment_target()?;
        let cluster = cx.cluster()?;
        let pods = match (&self.name, &self.selector) {
            (Some(n), _) => {
                let name = cx.render(n.as_str())?;
                match cluster.get_pod(&t.namespace, &name).await? {
                    Some(p) => vec![p],
                    None => return Ok(Planned::Skip(format!("pod {}/{name} does not exist", t.namespace))),
                }
            }
            (None, Some(sel)) => {
                let sel = cx.render(sel.as_str())?;
                let max = match &self.max {
                    Some(m) => cx.render_int(m, "delete_pod.max")?.max(1),
                    None => 1,
                };
                let mut pods = cluster.list_pods(&t.namespace, &sel).await?;
                pods.sort_by(|a, b| a.name.cmp(&b.name));
                pods.truncate(usize::try_from(max).unwrap_or(1));
                if pods.is_empty() {
                    return Err(StepError::Failed(format!("no pod in {} matches {sel:?}", t.namespace)));
                }
                pods
            }
            (None, None) => return Err(StepError::Failed("delete_pod needs `name` or `selector`".into())),
        };
        // Pods the run's other delete_pod steps deleted count against the same cap.
        let already: u32 = cx
            .run
            .steps
            .iter()
            .filter(|st| st.action == Self::KEY && st.status == StepStatus::Done && st.index != cx.index)
            .filter_map(|st| st.plan.as_ref()?.get("pods")?.as_array().map(|a| a.len() as u32))
            .sum();
        guards::check_pods_deleted(&cx.run.guards, already, pods.len() as u32).map_err(StepError::Refused)?;
        let pods = pods.into_iter().map(|p| PodToDelete { name: p.name, uid: Some(p.uid) }).collect();
        Ok(Planned::Request(DeletePodPlan { namespace: t.namespace, pods }))
    }

    async fn apply(plan: &DeletePodPlan, cx: &Ctx<'_>) -> Result<Sent, StepError> {
        let ns = &plan.namespace;
        let mut results = Vec::new();
        let (mut gone, mut terminating) = (Vec::new(), Vec::new());
        for p in &plan.pods {
            let out = cx.cluster()?.delete_pod(ns, &p.name, p.uid.as_deref(), cx.dry_run()).await?;
            let mut entry = json!({"name": p.name, "already_gone": out.already_gone, "response": out.response});
            // A pod still terminating is reported as such, never as deleted.
            match &out.terminating {
                Some(t) => {
                    entry["terminating"] = json!(t);
                    terminating.push(p.name.clone());
                }
                None => gone.push(p.name.clone()),
            }
            results.push(entry);
        }
        let mut summary = Vec::new();
        if !gone.is_empty() {
            summary.push(format!("deleted pod(s) {} in {ns}", gone.join(", ")));
        }
        if !terminating.is_empty() {
            summary
                .push(format!("pod(s) {} in {ns} terminating (deletion accepted, not yet confirmed by the node)", terminating.join(", ")));
        }
        Ok(Sent::Done(json!({"pods": results, "summary": format!("{}{}", summary.join("; "), cx.dry_note())})))
    }

    async fn read_back(plan: &DeletePodPlan, cluster: &dyn Cluster) -> Result<Option<bool>, ClusterError> {
        for p in &plan.pods {
            if let Some(pod) = cluster.get_pod(&plan.namespace, &p.name).await? {
                if p.uid.as_deref().is_none_or(|u| u == pod.uid) {
                    return Ok(Some(false));
                }
            }
        }
        Ok(Some(true))
    }

    fn namespace(plan: &DeletePodPlan) -> Option<&str> {
        Some(&plan.namespace)
    }

    fn describe(plan: &DeletePodPlan) -> String {
        let names: Vec<&str> = plan.pods.iter().map(|p| p.name.as_str()).collect();
        format!("delete pod(s) {} in {}", names.join(", "), plan.namespace)
    }
}
