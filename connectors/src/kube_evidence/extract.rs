//! Pure extraction from Kubernetes objects: events reduced to what an analysis needs,
//! rollouts and their image diffs from ReplicaSets, referenced ConfigMaps and Secrets, pods,
//! nodes and autoscalers, and the gaps left by parts the API refused.

use super::*;

/// Reduces one Event; `None` when it carries no usable time at all.
pub fn event_info(event: &Event) -> Option<KubeEventInfo> {
    let series = event.series.as_ref();
    let time = event
        .last_timestamp
        .as_ref()
        .map(secs)
        .or_else(|| series.and_then(|s| s.last_observed_time.as_ref()).map(|t| t.0.as_second()))
        .or_else(|| event.event_time.as_ref().map(|t| t.0.as_second()))
        .or_else(|| event.first_timestamp.as_ref().map(secs))
        .or_else(|| event.metadata.creation_timestamp.as_ref().map(secs))?;
    let count = event.count.or_else(|| series.and_then(|s| s.count)).unwrap_or(1);
    let involved = &event.involved_object;
    Some(KubeEventInfo {
        time,
        reason: event.reason.clone().unwrap_or_default(),
        message: truncate_chars(event.message.as_deref().unwrap_or_default(), MAX_MESSAGE_CHARS),
        count: u32::try_from(count).unwrap_or(0).max(1),
        type_: event.type_.clone().unwrap_or_default(),
        involved_kind: involved.kind.clone().unwrap_or_default(),
        involved_name: involved.name.clone().unwrap_or_default(),
        involved_namespace: involved.namespace.clone().filter(|ns| !ns.is_empty()),
    })
}

/// The rollouts recorded by a Deployment's ReplicaSets whose time is at or after
/// `since`, oldest first, each compared with the revision before it.
///
/// Every ReplicaSet holds one pod template and its current revision number
/// (`deployment.kubernetes.io/revision`); a rollback re-activates an old ReplicaSet, gives
/// it the next number and moves its old numbers to
/// `deployment.kubernetes.io/revision-history`. So revision `n` went from the template of
/// whichever ReplicaSet holds (or held) the largest number below `n` to this one.
///
/// Listed: each ReplicaSet's current revision and, for a reused ReplicaSet, also its
/// first revision. A new revision is dated by its ReplicaSet's creation (exact). A
/// rollback is not recorded anywhere with a time, so it is marked approximate and dated
/// by the ReplicaSet's newest non-status `managedFields` write (the controller's update
/// of the revision annotation, or a later one), or, without `managedFields`, by the
/// earliest moment it can have happened: the creation of the revision it replaced.
/// Intermediate history numbers (a template rolled back to twice) have no recorded
/// time and are not listed. A revision whose predecessor is no longer retained
/// (`revisionHistoryLimit`) has empty `from_images` and a note.
pub fn rollout_changes(replica_sets: &[ReplicaSet], since: i64) -> Vec<RolloutChange> {
    // Every revision number, current or historical, with the ReplicaSet behind it.
    let mut by_revision: BTreeMap<i64, &ReplicaSet> = BTreeMap::new();
    for rs in replica_sets {
        if let Some(revision) = replicaset_revision(rs) {
            by_revision.insert(revision, rs);
        }
        for revision in revision_history(rs) {
            by_revision.entry(revision).or_insert(rs);
        }
    }
    let created = |rs: &ReplicaSet| rs.metadata.creation_timestamp.as_ref().map(secs);
    let mut out = Vec::new();
    for rs in replica_sets {
        let Some(current) = replicaset_revision(rs) else {
            continue;
        };
        let first = revision_history(rs).into_iter().min().filter(|first| *first < current);
        let mut revisions = Vec::new();
        if let Some(first) = first {
            revisions.push((first, false));
        }
        revisions.push((current, first.is_some()));
        for (revision, rollback) in revisions {
            let previous = by_revision.range(..revision).next_back();
            let mut notes: Vec<String> = Vec::new();
            let dated = if rollback {
                let earliest = [created(rs), previous.and_then(|(_, p)| created(p))].into_iter().flatten().max();
                match newest_write(&rs.metadata) {
                    Some((time, _)) => {
                        notes
                            .push("rollback to an older ReplicaSet; dated by its last write (approximate)".to_string());
                        Some((earliest.map_or(time, |e| time.max(e)), TimeSource::ManagedFields))
                    }
                    None => {
                        notes.push(
                            "rollback to an older ReplicaSet; its time is not recorded, shown is the \
                             earliest it can have happened (the replaced revision's creation)"
                                .to_string(),
                        );
                        earliest.map(|t| (t, TimeSource::CreationTimestamp))
                    }
                }
            } else {
                created(rs).map(|t| (t, TimeSource::CreationTimestamp))
            };
            let Some((time, time_source)) = dated else {
                continue;
            };
            if time < since {
                continue;
            }
            let to_images = template_images(rs);
            let (previous_revision, from_images) = match previous {
                Some((number, prev)) => (Some(*number), template_images(prev)),
                None => (None, Vec::new()),
            };
            let image_changes = diff_images(&from_images, &to_images);
            match previous {
                None if revision > 1 => notes.push(format!(
                    "revision {} is no longer retained (revisionHistoryLimit); the images before \
                     this revision are unknown",
                    revision - 1
                )),
                Some(_) if image_changes.is_empty() => notes.push(
                    "the pod template changed without an image change (env, resources, config \
                     references, annotations...)"
                        .to_string(),
                ),
                _ => {}
            }
            out.push(RolloutChange {
                time,
                time_source,
                time_approximate: rollback,
                revision,
                replica_set: rs.metadata.name.clone().unwrap_or_default(),
                rollback,
                previous_revision,
                from_images,
                to_images,
                image_changes,
                note: (!notes.is_empty()).then(|| notes.join("; ")),
            });
        }
    }
    out.sort_by_key(|c| (c.time, c.revision));
    out
}

/// The ConfigMaps and Secrets the Deployment's pod template references: container and
/// init container `env[].valueFrom` (`configMapKeyRef`, `secretKeyRef`) and `envFrom`,
/// `volumes` (`configMap`, `secret`, `projected` sources) and `imagePullSecrets`. Sorted
/// by kind and name; each lists how it is used.
pub fn referenced_config(deployment: &Deployment) -> Vec<ConfigRef> {
    let mut found: BTreeMap<(ConfigKind, String), BTreeSet<String>> = BTreeMap::new();
    let mut add = |kind: ConfigKind, name: &str, use_: String| {
        if !name.is_empty() {
            found.entry((kind, name.to_string())).or_default().insert(use_);
        }
    };
    let Some(spec) = deployment.spec.as_ref().and_then(|s| s.template.spec.as_ref()) else {
        return Vec::new();
    };
    let PodSpec { containers, init_containers, volumes, image_pull_secrets, .. } = spec;
    for container in containers.iter().chain(init_containers.iter().flatten()) {
        for env in container.env.iter().flatten() {
            let Some(source) = env.value_from.as_ref() else {
                continue;
            };
            let use_ = format!("env {}/{}", container.name, env.name);
            if let Some(r) = &source.config_map_key_ref {
                add(ConfigKind::ConfigMap, &r.name, use_.clone());
            }
            if let Some(r) = &source.secret_key_ref {
                add(ConfigKind::Secret, &r.name, use_);
            }
        }
        for from in container.env_from.iter().flatten() {
            let use_ = format!("envFrom {}", container.name);
            if let Some(r) = &from.config_map_ref {
                add(ConfigKind::ConfigMap, &r.name, use_.clone());
            }
            if let Some(r) = &from.secret_ref {
                add(ConfigKind::Secret, &r.name, use_);
            }
        }
    }
    for volume in volumes.iter().flatten() {
        let use_ = format!("volume {}", volume.name);
        if let Some(cm) = &volume.config_map {
            add(ConfigKind::ConfigMap, &cm.name, use_.clone());
        }
        if let Some(name) = volume.secret.as_ref().and_then(|s| s.secret_name.as_deref()) {
            add(ConfigKind::Secret, name, use_.clone());
        }
        let sources = volume.projected.as_ref().and_then(|p| p.sources.as_ref());
        for source in sources.into_iter().flatten() {
            if let Some(cm) = &source.config_map {
                add(ConfigKind::ConfigMap, &cm.name, use_.clone());
            }
            if let Some(secret) = &source.secret {
                add(ConfigKind::Secret, &secret.name, use_.clone());
            }
        }
    }
    for pull in image_pull_secrets.iter().flatten() {
        add(ConfigKind::Secret, &pull.name, "imagePullSecrets".to_string());
    }
    found
        .into_iter()
        .map(|((kind, name), uses)| ConfigRef { kind, name, used_by: uses.into_iter().collect() })
        .collect()
}

/// Collects 403s as gaps (in [`collect`]) or passes them on (single-part reads).
pub(super) struct Gaps {
    pub(super) tolerate_forbidden: bool,
    pub(super) list: Vec<String>,
}

impl Gaps {
    pub(super) fn tolerant() -> Self {
        Self { tolerate_forbidden: true, list: Vec::new() }
    }

    pub(super) fn strict() -> Self {
        Self { tolerate_forbidden: false, list: Vec::new() }
    }

    /// `Ok(Some)` for a value, `Ok(None)` for a tolerated 403 (recorded as
    /// `"<part>: forbidden"`), `Err` for everything else.
    pub(super) fn absorb<T>(&mut self, part: &str, result: Result<T>) -> Result<Option<T>> {
        match result {
            Ok(value) => Ok(Some(value)),
            Err(e) if self.tolerate_forbidden && is_forbidden(&e) => {
                let gap = format!("{part}: forbidden");
                if !self.list.contains(&gap) {
                    tracing::info!(%e, part, "kubernetes evidence incomplete: forbidden");
                    self.list.push(gap);
                }
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    pub(super) fn into_list(self) -> Vec<String> {
        self.list
    }
}

pub(super) fn is_forbidden(error: &Error) -> bool {
    matches!(error, Error::Kube { status: 403, .. })
        || matches!(error, Error::Kube { reason, .. } if reason == "Forbidden")
}

/// Which events concern the workload, by involved object.
pub(super) struct Related {
    pub(super) deployment: String,
    pub(super) replica_sets: BTreeSet<String>,
    pub(super) pods: BTreeSet<String>,
    pub(super) hpas: BTreeSet<String>,
    pub(super) services: BTreeSet<String>,
    pub(super) configmaps: BTreeSet<String>,
    pub(super) secrets: BTreeSet<String>,
    /// `<deployment>-`: the name prefix of its ReplicaSets and pods, used when the
    /// ReplicaSets are unknown.
    pub(super) fallback_prefix: Option<String>,
}

impl Related {
    pub(super) fn by_name(deployment: &str) -> Self {
        Self {
            deployment: deployment.to_string(),
            replica_sets: BTreeSet::new(),
            pods: BTreeSet::new(),
            hpas: BTreeSet::new(),
            services: BTreeSet::new(),
            configmaps: BTreeSet::new(),
            secrets: BTreeSet::new(),
            fallback_prefix: Some(format!("{deployment}-")),
        }
    }

    pub(super) fn of(
        deployment: &str,
        replica_sets: Option<&[ReplicaSet]>,
        topology: &Topology,
        hpas: &[HpaInfo],
        config: &[ConfigRef],
    ) -> Self {
        let names = |kind: ConfigKind| config.iter().filter(|c| c.kind == kind).map(|c| c.name.clone()).collect();
        Self {
            deployment: deployment.to_string(),
            replica_sets: replica_sets.unwrap_or_default().iter().filter_map(|rs| rs.metadata.name.clone()).collect(),
            pods: topology.pods.iter().map(|p| p.name.clone()).collect(),
            hpas: hpas.iter().map(|h| h.name.clone()).collect(),
            services: topology.services.iter().cloned().collect(),
            configmaps: names(ConfigKind::ConfigMap),
            secrets: names(ConfigKind::Secret),
            fallback_prefix: replica_sets.is_none().then(|| format!("{deployment}-")),
        }
    }

    pub(super) fn matches(&self, event: &KubeEventInfo) -> bool {
        let name = event.involved_name.as_str();
        let by_prefix = self.fallback_prefix.as_deref().is_some_and(|p| name.starts_with(p));
        match event.involved_kind.as_str() {
            "Deployment" => name == self.deployment,
            "ReplicaSet" => self.replica_sets.contains(name) || by_prefix,
            // Pods that are gone (replaced after an OOM kill) still carry their
            // ReplicaSet's name as prefix.
            "Pod" => {
                self.pods.contains(name)
                    || self
                        .replica_sets
                        .iter()
                        .any(|rs| name.strip_prefix(rs.as_str()).is_some_and(|r| r.starts_with('-')))
                    || by_prefix
            }
            "HorizontalPodAutoscaler" => self.hpas.contains(name),
            "Service" | "Endpoints" => self.services.contains(name),
            "ConfigMap" => self.configmaps.contains(name),
            "Secret" => self.secrets.contains(name),
            _ => false,
        }
    }
}

pub(super) fn secs(time: &Time) -> i64 {
    time.0.as_second()
}

/// Sorts newest first and keeps at most [`MAX_EVENTS`].
pub(super) fn keep_newest(events: &mut Vec<KubeEventInfo>) {
    events.sort_by_key(|e| std::cmp::Reverse(e.time));
    events.truncate(MAX_EVENTS);
}

pub(super) fn truncate_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// The newest `managedFields` time (status subresource writes excluded) and its manager.
pub(super) fn newest_write(metadata: &ObjectMeta) -> Option<(i64, Option<String>)> {
    metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|entry| entry.subresource.as_deref().is_none_or(str::is_empty))
        .filter_map(|entry| Some((secs(entry.time.as_ref()?), entry.manager.clone())))
        .max_by_key(|(time, _)| *time)
}

pub(super) fn revision_history(rs: &ReplicaSet) -> Vec<i64> {
    rs.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REVISION_HISTORY_ANNOTATION))
        .map(|h| h.split(',').filter_map(|r| r.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// `(uid, kind)` of the controller owner reference.
pub(super) fn controller_of(metadata: &ObjectMeta) -> Option<(&str, &str)> {
    metadata
        .owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
        .map(|r| (r.uid.as_str(), r.kind.as_str()))
}

pub(super) fn template_images(rs: &ReplicaSet) -> Vec<ContainerImage> {
    let Some(spec) = rs.spec.as_ref().and_then(|s| s.template.as_ref()).and_then(|t| t.spec.as_ref()) else {
        return Vec::new();
    };
    spec.init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
        .map(|c| ContainerImage { container: c.name.clone(), image: c.image.clone().unwrap_or_default() })
        .collect()
}

pub(super) fn diff_images(from: &[ContainerImage], to: &[ContainerImage]) -> Vec<ImageChange> {
    let old: BTreeMap<&str, &str> = from.iter().map(|c| (c.container.as_str(), c.image.as_str())).collect();
    let new: BTreeMap<&str, &str> = to.iter().map(|c| (c.container.as_str(), c.image.as_str())).collect();
    if from.is_empty() {
        // The first known revision: nothing to compare with.
        return Vec::new();
    }
    let names: BTreeSet<&str> = old.keys().chain(new.keys()).copied().collect();
    names
        .into_iter()
        .filter(|name| old.get(name) != new.get(name))
        .map(|name| ImageChange {
            container: name.to_string(),
            from: old.get(name).map(|s| s.to_string()),
            to: new.get(name).map(|s| s.to_string()),
        })
        .collect()
}

pub(super) fn replicaset_info(rs: &ReplicaSet) -> ReplicaSetInfo {
    ReplicaSetInfo {
        name: rs.metadata.name.clone().unwrap_or_default(),
        revision: replicaset_revision(rs),
        replicas: rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
        ready_replicas: rs.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0),
        images: template_images(rs),
        created: rs.metadata.creation_timestamp.as_ref().map(secs),
    }
}

pub(super) fn pod_info(pod: &Pod) -> PodInfo {
    let status = pod.status.as_ref();
    let statuses: Vec<&ContainerStatus> = status
        .map(|s| s.init_container_statuses.iter().flatten().chain(s.container_statuses.iter().flatten()).collect())
        .unwrap_or_default();
    let restarts = statuses.iter().map(|c| c.restart_count).fold(0i32, i32::saturating_add);
    // The most recent termination, current state or last state, of any container.
    let last_termination = statuses
        .iter()
        .flat_map(|c| {
            [
                c.state.as_ref().and_then(|s| s.terminated.as_ref()),
                c.last_state.as_ref().and_then(|s| s.terminated.as_ref()),
            ]
        })
        .flatten()
        .max_by_key(|t| t.finished_at.as_ref().map(secs));
    let waiting_reason = statuses.iter().filter_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone()).next();
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conds| conds.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let replica_set = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true) && r.kind == "ReplicaSet")
        .map(|r| r.name.clone());
    PodInfo {
        name: pod.metadata.name.clone().unwrap_or_default(),
        node: pod.spec.as_ref().and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty()),
        phase: status.and_then(|s| s.phase.clone()),
        ready,
        restarts,
        last_termination_reason: last_termination.and_then(|t| t.reason.clone()),
        last_termination_exit_code: last_termination.map(|t| t.exit_code),
        waiting_reason,
        replica_set,
    }
}

pub(super) fn node_info(name: &str, node: Option<&Node>) -> NodeInfo {
    let Some(node) = node else {
        return NodeInfo {
            name: name.to_string(),
            found: false,
            ready: false,
            not_ready_reason: Some("node not found".to_string()),
            conditions: Vec::new(),
            unschedulable: false,
        };
    };
    let conditions = node.status.as_ref().and_then(|s| s.conditions.as_deref()).unwrap_or_default();
    let ready_condition = conditions.iter().find(|c| c.type_ == "Ready");
    let ready = ready_condition.is_some_and(|c| c.status == "True");
    let not_ready_reason = (!ready).then(|| match ready_condition {
        Some(c) => match &c.reason {
            Some(reason) => format!("{} ({reason})", c.status),
            None => c.status.clone(),
        },
        None => "no Ready condition".to_string(),
    });
    NodeInfo {
        name: name.to_string(),
        found: true,
        ready,
        not_ready_reason,
        conditions: conditions
            .iter()
            .filter(|c| c.type_ != "Ready" && c.status == "True")
            .map(|c| c.type_.clone())
            .collect(),
        unschedulable: node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false),
    }
}

pub(super) fn hpa_info(hpa: &HorizontalPodAutoscaler, since: i64) -> HpaInfo {
    let spec = hpa.spec.as_ref();
    let status = hpa.status.as_ref();
    let max_replicas = spec.map_or(0, |s| s.max_replicas);
    let current_replicas = status.and_then(|s| s.current_replicas);
    let desired_replicas = status.map(|s| s.desired_replicas);
    let last_scale_time = status.and_then(|s| s.last_scale_time.as_ref()).map(secs);
    HpaInfo {
        name: hpa.metadata.name.clone().unwrap_or_default(),
        min_replicas: spec.and_then(|s| s.min_replicas),
        max_replicas,
        current_replicas,
        desired_replicas,
        last_scale_time,
        scaled_since: last_scale_time.is_some_and(|t| t >= since),
        at_max: max_replicas > 0
            && (desired_replicas.is_some_and(|d| d >= max_replicas)
                || current_replicas.is_some_and(|c| c >= max_replicas)),
        conditions: status
            .and_then(|s| s.conditions.as_deref())
            .unwrap_or_default()
            .iter()
            .map(|c| ConditionInfo {
                type_: c.type_.clone(),
                status: c.status.clone(),
                reason: c.reason.clone(),
                message: c.message.as_deref().map(|m| truncate_chars(m, MAX_MESSAGE_CHARS)),
            })
            .collect(),
    }
}

pub(super) fn scale_of(deployment: &Deployment, hpas: Vec<HpaInfo>) -> ScaleEvidence {
    let status = deployment.status.as_ref();
    let count = |f: fn(&k8s_openapi::api::apps::v1::DeploymentStatus) -> Option<i32>| status.and_then(f).unwrap_or(0);
    ScaleEvidence {
        spec_replicas: deployment.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
        status_replicas: count(|s| s.replicas),
        ready_replicas: count(|s| s.ready_replicas),
        available_replicas: count(|s| s.available_replicas),
        updated_replicas: count(|s| s.updated_replicas),
        unavailable_replicas: count(|s| s.unavailable_replicas),
        hpas,
    }
}
