//! Pure helpers of the actions: which ReplicaSet a rollback goes to (by revision, with its
//! template minus the hash label), the merge patch between two templates, a pod's terminating
//! state, Job ownership differences, label selectors and conflict backoff.

use super::*;

/// A pod template as the Deployment would carry it: without the ReplicaSet's
/// `pod-template-hash` label (and without an emptied label map).
pub(super) fn without_hash_label(mut template: PodTemplateSpec) -> PodTemplateSpec {
    if let Some(metadata) = template.metadata.as_mut() {
        if let Some(labels) = metadata.labels.as_mut() {
            labels.remove(POD_TEMPLATE_HASH_LABEL);
            if labels.is_empty() {
                metadata.labels = None;
            }
        }
    }
    template
}

/// The RFC 7386 merge patch that turns `from` into `to`: changed and new keys are
/// set, keys missing from `to` are set to `null`, and anything that is not an
/// object on both sides (lists included) is replaced whole.
pub(super) fn merge_patch_diff(from: &Value, to: &Value) -> Value {
    match (from, to) {
        (Value::Object(old), Value::Object(new)) => {
            let mut patch = serde_json::Map::new();
            for (key, old_value) in old {
                match new.get(key) {
                    None => {
                        patch.insert(key.clone(), Value::Null);
                    }
                    Some(new_value) if new_value != old_value => {
                        patch.insert(key.clone(), merge_patch_diff(old_value, new_value));
                    }
                    Some(_) => {}
                }
            }
            for (key, new_value) in new {
                if !old.contains_key(key) {
                    patch.insert(key.clone(), new_value.clone());
                }
            }
            Value::Object(patch)
        }
        _ => to.clone(),
    }
}

/// A rollback resolved from a Deployment and its ReplicaSets.
pub(super) struct Resolution {
    pub(super) plan: RollbackPlan,
    /// The Deployment's pod template without the hash label, as JSON.
    pub(super) current: Value,
    /// The target ReplicaSet's pod template without the hash label, as JSON.
    pub(super) wanted: Value,
}

/// Rejects a non-positive revision before anything is read.
pub(super) fn check_revision(namespace: &str, name: &str, to_revision: Option<i64>) -> Result<()> {
    match to_revision {
        Some(revision) if revision <= 0 => Err(Error::InvalidInput(format!(
            "revision to roll deployment {namespace}/{name} back to must be positive, got {revision}"
        ))),
        _ => Ok(()),
    }
}

/// Why `existing` is not the Job `requested` describes: each label of the requested Job
/// that the existing one lacks or carries with another value. Empty when it is the same
/// Job (extra labels on the existing Job, added by admission or by hand, do not count).
pub fn job_owner_differences(requested: &Job, existing: &Job) -> Vec<String> {
    let theirs = existing.metadata.labels.as_ref();
    requested
        .metadata
        .labels
        .iter()
        .flatten()
        .filter_map(|(key, want)| match theirs.and_then(|l| l.get(key)) {
            Some(have) if have == want => None,
            Some(have) => Some(format!("label {key} is {have:?}, not {want:?}")),
            None => Some(format!("label {key} is missing (expected {want:?})")),
        })
        .collect()
}

/// How a Pod stands in its deletion, from its metadata.
pub(super) fn terminating_of(pod: &Pod) -> PodTerminating {
    PodTerminating {
        deletion_timestamp: pod
            .metadata
            .deletion_timestamp
            .as_ref()
            .and_then(|t| serde_json::to_value(t).ok())
            .and_then(|v| v.as_str().map(str::to_string)),
        grace_period_seconds: pod.metadata.deletion_grace_period_seconds,
    }
}

/// The template of a ReplicaSet as the Deployment would carry it.
pub(super) fn replicaset_template(replica_set: &ReplicaSet) -> Option<PodTemplateSpec> {
    replica_set.spec.as_ref().and_then(|s| s.template.clone()).map(without_hash_label)
}

/// The ReplicaSet whose pod template is `template` (newest revision first, should the
/// controller ever have left two).
pub(super) fn current_replica_set<'a>(
    template: &PodTemplateSpec,
    replica_sets: &'a [ReplicaSet],
) -> Option<&'a ReplicaSet> {
    replica_sets
        .iter()
        .filter(|rs| replicaset_template(rs).as_ref() == Some(template))
        .max_by_key(|rs| replicaset_revision(rs))
}

/// Resolves a rollback of `deployment` (`describe` names it for errors) from its
/// `replica_sets`: the current revision is the revision of the ReplicaSet with the
/// Deployment's template; the target is the ReplicaSet of `to_revision` (also found under
/// an older number in its `revision-history`), or for `None` the newest ReplicaSet with
/// another template.
pub(super) fn resolve_rollback(
    describe: &str,
    namespace: &str,
    name: &str,
    deployment: &Deployment,
    replica_sets: &[ReplicaSet],
    to_revision: Option<i64>,
) -> Result<Resolution> {
    let encode = |template: &PodTemplateSpec| {
        serde_json::to_value(template).map_err(|e| Error::Decode {
            url: describe.to_string(),
            message: format!("cannot re-encode the pod template: {e}"),
        })
    };
    let template = deployment.spec.as_ref().map(|s| without_hash_label(s.template.clone())).ok_or_else(|| {
        Error::Decode { url: describe.to_string(), message: "the deployment has no spec".to_string() }
    })?;
    let known: Vec<i64> = replica_sets.iter().filter_map(replicaset_revision).collect();
    let from_revision =
        current_replica_set(&template, replica_sets).and_then(replicaset_revision).ok_or_else(|| Error::Timeout {
            url: format!(
                "{describe}: the deployment controller has not yet recorded a revision for the \
                 current pod template (known revisions: {})",
                list_revisions(&known)
            ),
            after: None,
        })?;
    let target = match to_revision {
        Some(revision) => replica_sets
            .iter()
            .find(|rs| replicaset_revision(rs) == Some(revision))
            .or_else(|| {
                replica_sets
                    .iter()
                    .filter(|rs| revision_history(rs).contains(&revision))
                    .max_by_key(|rs| replicaset_revision(rs))
            })
            .ok_or_else(|| {
                Error::InvalidInput(format!(
                    "deployment {namespace}/{name} has no revision {revision} (known revisions: {})",
                    list_revisions(&known)
                ))
            })?,
        None => replica_sets
            .iter()
            .filter(|rs| replicaset_revision(rs).is_some())
            .filter(|rs| replicaset_template(rs).as_ref() != Some(&template))
            .max_by_key(|rs| replicaset_revision(rs))
            .ok_or_else(|| {
                Error::InvalidInput(format!(
                    "deployment {namespace}/{name} has no revision older than {from_revision} \
                     to roll back to (known revisions: {})",
                    list_revisions(&known)
                ))
            })?,
    };
    let to_revision = to_revision.or_else(|| replicaset_revision(target)).unwrap_or(from_revision);
    let replica_set = target.metadata.name.clone().unwrap_or_default();
    let wanted = replicaset_template(target).ok_or_else(|| {
        Error::InvalidInput(format!(
            "replica set {namespace}/{replica_set} of revision {to_revision} has no pod template"
        ))
    })?;
    let current = encode(&template)?;
    let wanted = encode(&wanted)?;
    Ok(Resolution {
        plan: RollbackPlan { from_revision, to_revision, replica_set, unchanged: current == wanted },
        current,
        wanted,
    })
}

/// The pause before attempt `attempt + 1` after a conflict: 50 ms doubling up to 1 s,
/// jittered to between half and all of it, so that writers that collided do not collide
/// again in step.
pub(super) fn conflict_backoff(attempt: u32) -> Duration {
    let base =
        Duration::from_millis(50).saturating_mul(1u32 << attempt.saturating_sub(1).min(5)).min(Duration::from_secs(1));
    let half = base / 2;
    half + half.mul_f64(rand::random::<f64>())
}

/// A label selector in the API's query syntax; `None` for an empty selector.
pub(crate) fn selector_string(selector: &LabelSelector) -> Result<Option<String>> {
    let mut terms: Vec<String> = selector.match_labels.iter().flatten().map(|(k, v)| format!("{k}={v}")).collect();
    for expr in selector.match_expressions.iter().flatten() {
        let values = expr.values.as_deref().unwrap_or_default().join(",");
        terms.push(match expr.operator.as_str() {
            "In" => format!("{} in ({values})", expr.key),
            "NotIn" => format!("{} notin ({values})", expr.key),
            "Exists" => expr.key.clone(),
            "DoesNotExist" => format!("!{}", expr.key),
            other => {
                return Err(Error::InvalidInput(format!(
                    "unsupported label selector operator {other:?} for key {:?}",
                    expr.key
                )))
            }
        });
    }
    Ok((!terms.is_empty()).then(|| terms.join(",")))
}

pub(super) fn list_revisions(revisions: &[i64]) -> String {
    if revisions.is_empty() {
        return "none".to_string();
    }
    let mut sorted = revisions.to_vec();
    sorted.sort_unstable();
    sorted.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")
}

/// A Deployment's annotations without those its controller writes
/// (`deployment.kubernetes.io/...`): they change on their own, concurrently with
/// any patch, and say nothing about whether the patch changed anything.
pub(super) fn user_annotations(d: &Deployment) -> std::collections::BTreeMap<&str, &str> {
    d.metadata
        .annotations
        .iter()
        .flatten()
        .filter(|(k, _)| !k.starts_with("deployment.kubernetes.io/"))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}
