//! `patch:` a strategic-merge patch of a Deployment, within `patch_allow`; its inverse
//! restores what it changed.

use std::collections::BTreeSet;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{Action, Ctx, Planned, Sent, StepError};
use crate::cluster::{Cluster, ClusterError, WorkloadRef};
use crate::guards;
use crate::load::{path_allowed, yaml_leaves, Checker};

/// A strategic-merge patch of the target Deployment; every field it sets must be allowed by
/// the `patch_allow` guard.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PatchStep {
    pub patch: serde_yaml::Value,
}

/// Apply `patch` to `namespace/name`; `inverse` (computed from the Deployment when planned)
/// restores what it changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatchPlan {
    pub namespace: String,
    pub name: String,
    pub patch: Value,
    pub inverse: Value,
}

impl PatchPlan {
    fn target(&self) -> WorkloadRef {
        WorkloadRef::new(self.namespace.clone(), self.name.clone())
    }
}

#[async_trait]
impl Action for PatchStep {
    const KEY: &'static str = "patch";
    const MUTATING: bool = true;
    type Plan = PatchPlan;
    const EXAMPLE: &'static str = "{patch: {spec: {template: {spec: {containers: [{name: app, resources: {limits: {memory: 512Mi}}}]}}}}}";

    fn check(&self, c: &mut Checker<'_>, at: &str) {
        c.needs_deployment(at, Self::KEY);
        let path = format!("{at}.patch");
        if !matches!(&self.patch, serde_yaml::Value::Mapping(m) if !m.is_empty()) {
            c.err(&path, "must be a non-empty mapping: a strategic-merge patch of the Deployment");
            return;
        }
        c.tree(&path, &self.patch);
        let mut leaves = Vec::new();
        // Tags and odd keys were reported by `tree` above.
        let mut already_reported = Vec::new();
        yaml_leaves(&self.patch, path.clone(), String::new(), &mut leaves, &mut already_reported);
        let allow = c.patch_allow().to_vec();
        let from = if c.playbook().guards.blast_radius.as_ref().and_then(|b| b.patch_allow.as_ref()).is_some() {
            "guards.blast_radius.patch_allow"
        } else {
            "the default patch_allow"
        };
        let mut seen = BTreeSet::new();
        for (yaml_path, patch_path) in leaves {
            if !path_allowed(&patch_path, &allow) && seen.insert(patch_path.clone()) {
                c.err(yaml_path, format!("the patch sets `{patch_path}`, which {from} does not allow ({})", allow.join(", ")));
            }
        }
    }

    async fn plan(&self, cx: &Ctx<'_>) -> Result<Planned<PatchPlan>, StepError> {
        let t = cx.deployment_target()?;
        let patch = cx.render_tree(&self.patch)?;
        guards::check_patch(&cx.run.guards, &patch).map_err(StepError::Refused)?;
        let current = cx.cluster()?.read_deployment(&t).await?;
        let inverse = inverse_patch(&patch, &current);
        Ok(Planned::Request(PatchPlan { namespace: t.namespace, name: t.name, patch, inverse }))
    }

    async fn apply(plan: &PatchPlan, cx: &Ctx<'_>) -> Result<Sent, StepError> {
        let t = plan.target();
        let response = cx.cluster()?.patch_deployment(&t, &plan.patch, cx.dry_run()).await?;
        Ok(Sent::Done(json!({"response": response, "summary": format!("patched {t}{}", cx.dry_note())})))
    }

    async fn read_back(plan: &PatchPlan, cluster: &dyn Cluster) -> Result<Option<bool>, ClusterError> {
        let d = cluster.read_deployment(&plan.target()).await?;
        Ok(Some(contains(&d, &plan.patch)))
    }

    fn inverse(plan: &PatchPlan) -> Option<PatchPlan> {
        Some(PatchPlan {
            namespace: plan.namespace.clone(),
            name: plan.name.clone(),
            patch: plan.inverse.clone(),
            inverse: plan.patch.clone(),
        })
    }

    fn namespace(plan: &PatchPlan) -> Option<&str> {
        Some(&plan.namespace)
    }

    fn describe(plan: &PatchPlan) -> String {
        format!("patch {}/{} with {}", plan.namespace, plan.name, plan.patch)
    }
}

/// The strategic-merge patch that restores what `patch` changes in `current`: previous
/// values, `null` for fields that were absent, and `$patch: delete` for list items (matched by
/// `name`) that did not exist.
pub fn inverse_patch(patch: &Value, current: &Value) -> Value {
    match (patch, current) {
        (Value::Object(p), cur) => {
            let mut out = serde_json::Map::new();
            for (k, pv) in p {
                let cv = cur.get(k).unwrap_or(&Value::Null);
                if cv.is_null() && !pv.is_object() && !pv.is_array() {
                    out.insert(k.clone(), Value::Null);
                } else {
                    out.insert(k.clone(), inverse_patch(pv, cv));
                }
            }
            Value::Object(out)
        }
        (Value::Array(items), cur) if items.iter().all(|i| i.get("name").is_some()) => {
            let current_items = cur.as_array().cloned().unwrap_or_default();
            let undone = items
                .iter()
                .map(|item| {
                    let name = item.get("name").cloned().unwrap_or(Value::Null);
                    match current_items.iter().find(|c| c.get("name") == Some(&name)) {
                        Some(c) => {
                            let mut inv = inverse_patch(item, c);
                            if let Value::Object(m) = &mut inv {
                                m.insert("name".into(), name);
                            }
                            inv
                        }
                        None => json!({"name": name, "$patch": "delete"}),
                    }
                })
                .collect();
            Value::Array(undone)
        }
        (_, cur) => cur.clone(),
    }
}

/// Whether `current` already has everything `patch` sets (a strategic-merge patch: `null`
/// removes a field, list items are matched by `name`, `$patch` directives are not checked).
pub fn contains(current: &Value, patch: &Value) -> bool {
    match (patch, current) {
        (Value::Null, cur) => cur.is_null(),
        (Value::Object(p), cur) => {
            p.iter().filter(|(k, _)| !k.starts_with('$')).all(|(k, pv)| contains(cur.get(k).unwrap_or(&Value::Null), pv))
        }
        (Value::Array(items), Value::Array(cur)) if items.iter().all(|i| i.get("name").is_some()) => {
            items.iter().filter(|i| i.get("$patch").is_none()).all(|i| cur.iter().any(|c| c.get("name") == i.get("name") && contains(c, i)))
        }
        (p, cur) => p == cur,
    }
}
