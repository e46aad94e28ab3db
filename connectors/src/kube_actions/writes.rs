//! The writes: rollback, restart, pod deletion with a UID precondition, cordon, Jobs and
//! strategic-merge patches, each with server-side dry-run and idempotent on repetition, and
//! conflicts retried with the state read again.

use super::*;

impl KubeClient {
    /// Reads a Deployment.
    pub async fn get_deployment(&self, namespace: &str, name: &str) -> Result<Deployment> {
        check_name("namespace", namespace)?;
        check_name("deployment name", name)?;
        let api: Api<Deployment> = Api::namespaced(self.kube_client(), namespace);
        self.call_api(&format!("deployment {namespace}/{name}"), api.get(name)).await
    }

    /// The ReplicaSets of Deployment `namespace/name`: those in its namespace that
    /// match its selector and whose controller owner reference carries its UID
    /// (what `kubectl rollout history` looks at), sorted by revision (ReplicaSets
    /// without one first), then name.
    pub async fn list_replicasets_of(&self, namespace: &str, deployment: &str) -> Result<Vec<ReplicaSet>> {
        let deployment = self.get_deployment(namespace, deployment).await?;
        self.replicasets_owned_by(namespace, &deployment).await
    }

    /// The ReplicaSets in `namespace` matching the Deployment's selector whose controller
    /// owner reference is the Deployment's UID, by revision.
    pub(crate) async fn replicasets_owned_by(
        &self,
        namespace: &str,
        deployment: &Deployment,
    ) -> Result<Vec<ReplicaSet>> {
        let name = deployment.metadata.name.as_deref().unwrap_or_default();
        let what = format!("replicasets of deployment {namespace}/{name}");
        let uid = deployment.metadata.uid.as_deref().ok_or_else(|| Error::Decode {
            url: self.describe_object(&what),
            message: "the deployment has no metadata.uid".to_string(),
        })?;
        let selector = match deployment.spec.as_ref() {
            Some(spec) => selector_string(&spec.selector)?,
            None => None,
        };
        let params = ListParams { label_selector: selector, ..ListParams::default() };
        let api: Api<ReplicaSet> = Api::namespaced(self.kube_client(), namespace);
        let list = self.call_api(&what, api.list(&params)).await?;
        let mut owned: Vec<ReplicaSet> = list
            .items
            .into_iter()
            .filter(|rs| {
                rs.metadata
                    .owner_references
                    .as_ref()
                    .is_some_and(|refs| refs.iter().any(|r| r.controller == Some(true) && r.uid == uid))
            })
            .collect();
        owned.sort_by(|a, b| {
            (replicaset_revision(a), &a.metadata.name).cmp(&(replicaset_revision(b), &b.metadata.name))
        });
        Ok(owned)
    }

    /// What a rollback of Deployment `namespace/name` to `to_revision` (or, for `None`,
    /// to the newest other revision) would do, without changing anything. The revisions
    /// are resolved from the Deployment's ReplicaSets, like `kubectl rollout undo`: the
    /// current revision is that of the ReplicaSet whose pod template the Deployment has,
    /// not the Deployment's revision annotation, which the deployment controller updates
    /// only after it renumbered a reused ReplicaSet. When the controller has not yet
    /// caught up with the Deployment's last template change (no ReplicaSet with the
    /// current template yet, or not yet renumbered to the newest revision), this waits for
    /// it up to [`ActionWaits::controller`]; with still no ReplicaSet for the template it
    /// then fails with a retryable [`Error::Timeout`].
    pub async fn plan_rollback(&self, namespace: &str, name: &str, to_revision: Option<i64>) -> Result<RollbackPlan> {
        check_revision(namespace, name, to_revision)?;
        let (deployment, replica_sets) = self.read_for_rollback(namespace, name).await?;
        let what = self.describe_object(&format!("deployment {namespace}/{name}"));
        let resolved = resolve_rollback(&what, namespace, name, &deployment, &replica_sets, to_revision)?;
        Ok(resolved.plan)
    }

    /// The rollout revision of Deployment `namespace/name` resolved from its ReplicaSets
    /// (the revision of the one with the Deployment's pod template), waiting for the
    /// deployment controller like [`KubeClient::plan_rollback`]; the revision annotation
    /// when no ReplicaSet has the template (a paused Deployment); `None` without either.
    pub async fn current_revision(&self, namespace: &str, name: &str) -> Result<Option<i64>> {
        let (deployment, replica_sets) = self.read_for_rollback(namespace, name).await?;
        let current = without_hash_label(deployment.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default());
        Ok(current_replica_set(&current, &replica_sets)
            .and_then(replicaset_revision)
            .or_else(|| deployment_revision(&deployment)))
    }

    /// Rolls Deployment `namespace/name` back to an earlier revision, as
    /// `kubectl rollout undo [--to-revision]` does: the pod template of the
    /// ReplicaSet of that revision (without its `pod-template-hash` label) replaces
    /// the Deployment's `spec.template`, and the deployment controller then rolls
    /// the pods and makes that ReplicaSet the newest revision.
    ///
    /// Revisions are resolved from the ReplicaSets as in [`KubeClient::plan_rollback`].
    /// `to_revision: None` picks the newest revision other than the current one. That
    /// choice depends on the current state (like repeated `rollout undo`, calling
    /// it twice toggles), so a retry must pass the outcome's
    /// `Some(to_revision)`: a revision is also found after the controller renumbered
    /// its ReplicaSet (through the `revision-history` annotation), and when the
    /// Deployment already has the target template nothing is written
    /// (`changed: false`). Rolling *forward* again, the revert of a rollback, is a
    /// rollback to the outcome's `from_revision`.
    ///
    /// The patch is a JSON merge patch carrying the `metadata.resourceVersion` that
    /// was read, so a concurrent change of the Deployment answers 409 Conflict. A
    /// conflict is retried up to [`ActionWaits::conflict_retries`] times after a
    /// jittered, growing pause, each time reading the Deployment and its ReplicaSets
    /// again: when another writer changed only other fields (replicas, annotations, the
    /// controller's status), the rollback goes through; when the Deployment meanwhile
    /// got the target template, nothing is sent (`changed: false`); when another writer
    /// changed the pod template to a third one, the rollback stops with
    /// [`Error::Precondition`] rather than overwrite it. Unknown revisions, a paused
    /// Deployment and a Deployment without an older revision are
    /// [`Error::InvalidInput`].
    pub async fn rollback_deployment(
        &self,
        namespace: &str,
        name: &str,
        to_revision: Option<i64>,
        dry_run: bool,
    ) -> Result<RollbackOutcome> {
        check_revision(namespace, name, to_revision)?;
        let object = format!("deployment {namespace}/{name}");
        let what = self.describe_object(&object);
        let api: Api<Deployment> = Api::namespaced(self.kube_client(), namespace);
        let params = PatchParams { dry_run, ..PatchParams::default() };
        let retries = self.action_waits().conflict_retries;
        let mut to_revision = to_revision;
        let mut first: Option<(Value, i64)> = None;
        let mut conflicts = 0u32;
        loop {
            let (deployment, replica_sets) = self.read_for_rollback(namespace, name).await?;
            let resolved = resolve_rollback(&what, namespace, name, &deployment, &replica_sets, to_revision)?;
            let plan = &resolved.plan;
            // Later attempts go to the same revision, from the template first seen.
            to_revision = Some(plan.to_revision);
            let from_revision = match &first {
                None => {
                    first = Some((resolved.current.clone(), plan.from_revision));
                    plan.from_revision
                }
                Some((template, from)) => {
                    if *template != resolved.current && !plan.unchanged {
                        return Err(Error::Precondition {
                            object,
                            message: format!(
                                "another writer changed the pod template (now revision {}) while it \
                                 was being rolled back from revision {from} to revision {}, after \
                                 {conflicts} conflict(s); nothing was sent",
                                plan.from_revision, plan.to_revision
                            ),
                        });
                    }
                    *from
                }
            };
            if plan.unchanged {
                tracing::info!(
                    namespace,
                    name,
                    to_revision = plan.to_revision,
                    "deployment already has the template of the target revision"
                );
                return Ok(RollbackOutcome {
                    from_revision,
                    to_revision: plan.to_revision,
                    replica_set: plan.replica_set.clone(),
                    changed: false,
                    dry_run,
                    conflicts_retried: conflicts,
                    response: self.encode(&object, &deployment)?,
                });
            }
            let mut patch = json!({ "spec": { "template": merge_patch_diff(&resolved.current, &resolved.wanted) } });
            if let Some(rv) = &deployment.metadata.resource_version {
                patch["metadata"] = json!({ "resourceVersion": rv });
            }
            tracing::info!(
                namespace,
                name,
                from_revision,
                to_revision = plan.to_revision,
                replica_set = plan.replica_set,
                dry_run,
                attempt = conflicts + 1,
                "rolling deployment back"
            );
            match self.call_api(&object, api.patch(name, &params, &Patch::Merge(&patch))).await {
                Ok(answer) => {
                    return Ok(RollbackOutcome {
                        from_revision,
                        to_revision: plan.to_revision,
                        replica_set: plan.replica_set.clone(),
                        changed: true,
                        dry_run,
                        conflicts_retried: conflicts,
                        response: self.encode(&object, &answer)?,
                    })
                }
                Err(e) if e.is_conflict() && conflicts < retries => {
                    conflicts += 1;
                    let pause = conflict_backoff(conflicts);
                    tracing::info!(
                        namespace,
                        name,
                        conflicts,
                        pause_ms = pause.as_millis() as u64,
                        "the deployment changed under the rollback; reading it again"
                    );
                    tokio::time::sleep(pause).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads Deployment `namespace/name` and its ReplicaSets once the deployment
    /// controller has caught up with its last template change (see
    /// [`KubeClient::plan_rollback`]),
    /// or as they are when [`ActionWaits::controller`] has passed. A paused Deployment
    /// is [`Error::InvalidInput`] at once (its controller does not roll it).
    pub(super) async fn read_for_rollback(&self, namespace: &str, name: &str) -> Result<(Deployment, Vec<ReplicaSet>)> {
        let deadline = Instant::now() + self.action_waits().controller;
        let mut pause = Duration::from_millis(50);
        loop {
            let deployment = self.get_deployment(namespace, name).await?;
            let spec = deployment.spec.as_ref().ok_or_else(|| Error::Decode {
                url: self.describe_object(&format!("deployment {namespace}/{name}")),
                message: "the deployment has no spec".to_string(),
            })?;
            if spec.paused == Some(true) {
                return Err(Error::InvalidInput(format!(
                    "deployment {namespace}/{name} is paused; resume it before rolling it back"
                )));
            }
            let replica_sets = self.replicasets_owned_by(namespace, &deployment).await?;
            let current = without_hash_label(spec.template.clone());
            // Caught up: the template has a ReplicaSet, and it is the newest revision (a
            // reused one is renumbered first). Not `observedGeneration`: annotation writes
            // by anyone bump a Deployment's generation, so it can lag for long.
            let newest = replica_sets.iter().filter_map(replicaset_revision).max();
            let recorded = current_replica_set(&current, &replica_sets)
                .and_then(replicaset_revision)
                .is_some_and(|r| Some(r) == newest);
            let now = Instant::now();
            if recorded || now >= deadline {
                return Ok((deployment, replica_sets));
            }
            tracing::debug!(namespace, name, "waiting for the deployment controller");
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }

    /// Restarts the pods of Deployment `namespace/name` like `kubectl rollout
    /// restart`: sets the pod-template annotation [`RESTARTED_AT_ANNOTATION`] to
    /// `restarted_at` (strategic merge patch), which makes the controller roll all
    /// pods. The caller passes one fixed value per run (e.g. the action's start
    /// time), so repeating the call finds the annotation in place and writes
    /// nothing (`changed: false`).
    pub async fn restart_deployment(
        &self,
        namespace: &str,
        name: &str,
        restarted_at: &str,
        dry_run: bool,
    ) -> Result<WriteOutcome> {
        if restarted_at.trim().is_empty() {
            return Err(Error::InvalidInput(format!("restartedAt value for deployment {namespace}/{name} is empty")));
        }
        let deployment = self.get_deployment(namespace, name).await?;
        let what = format!("deployment {namespace}/{name}");
        let current = deployment
            .spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.annotations.as_ref())
            .and_then(|a| a.get(RESTARTED_AT_ANNOTATION));
        if current.map(String::as_str) == Some(restarted_at) {
            return Ok(WriteOutcome { changed: false, dry_run, response: self.encode(&what, &deployment)? });
        }
        let patch = json!({ "spec": { "template": { "metadata": { "annotations": {
            RESTARTED_AT_ANNOTATION: restarted_at
        } } } } });
        tracing::info!(namespace, name, restarted_at, dry_run, "restarting deployment");
        let api: Api<Deployment> = Api::namespaced(self.kube_client(), namespace);
        let params = PatchParams { dry_run, ..PatchParams::default() };
        let answer = self.call_api(&what, api.patch(name, &params, &Patch::Strategic(&patch))).await?;
        Ok(WriteOutcome { changed: true, dry_run, response: self.encode(&what, &answer)? })
    }

    /// Patches Deployment `namespace/name` with a strategic merge patch (lists such
    /// as `containers` and `env` merge by name, so `{"spec":{"template":{"spec":
    /// {"containers":[{"name":"app","resources":...}]}}}}` touches one container).
    /// `patch` must be a JSON object; which fields it may touch is the caller's
    /// allow-list. `changed` compares the Deployment's `spec`, labels and
    /// annotations before and after (the deployment controller's own annotations, such
    /// as `deployment.kubernetes.io/revision`, which it rewrites concurrently, are left
    /// out); patching values already in place is a no-op.
    pub async fn patch_deployment(
        &self,
        namespace: &str,
        name: &str,
        patch: &Value,
        dry_run: bool,
    ) -> Result<WriteOutcome> {
        if !patch.is_object() {
            return Err(Error::InvalidInput(format!("patch for deployment {namespace}/{name} must be a JSON object")));
        }
        let before = self.get_deployment(namespace, name).await?;
        let what = format!("deployment {namespace}/{name}");
        tracing::info!(namespace, name, dry_run, "patching deployment");
        let api: Api<Deployment> = Api::namespaced(self.kube_client(), namespace);
        let params = PatchParams { dry_run, ..PatchParams::default() };
        let answer = self.call_api(&what, api.patch(name, &params, &Patch::Strategic(patch))).await?;
        let changed = before.spec != answer.spec
            || before.metadata.labels != answer.metadata.labels
            || user_annotations(&before) != user_annotations(&answer);
        Ok(WriteOutcome { changed, dry_run, response: self.encode(&what, &answer)? })
    }

    /// Lists the Pods of a namespace, optionally filtered by a label selector in
    /// the API's syntax (`app=web,tier!=cache`).
    pub async fn list_pods(&self, namespace: &str, label_selector: Option<&str>) -> Result<Vec<Pod>> {
        check_name("namespace", namespace)?;
        let api: Api<Pod> = Api::namespaced(self.kube_client(), namespace);
        let params = ListParams { label_selector: label_selector.map(str::to_string), ..ListParams::default() };
        let list = self.call_api(&format!("pods in {namespace}"), api.list(&params)).await?;
        Ok(list.items)
    }

    /// Reads a Pod.
    pub async fn get_pod(&self, namespace: &str, name: &str) -> Result<Pod> {
        check_name("namespace", namespace)?;
        check_name("pod name", name)?;
        let api: Api<Pod> = Api::namespaced(self.kube_client(), namespace);
        self.call_api(&format!("pod {namespace}/{name}"), api.get(name)).await
    }

    /// Deletes Pod `namespace/name` (its controller replaces it). With `uid` the
    /// deletion carries a UID precondition, so a replacement Pod that took the same
    /// name is never deleted: the server answers 409, surfaced as a conflict
    /// ([`Error::is_conflict`]). A Pod that is already gone (404) is success with
    /// `already_gone: true`. The default grace period applies.
    ///
    /// A Pod bound to a node is not gone when the API server accepts the deletion: it
    /// gets a `deletionTimestamp` and stays `Terminating` until its kubelet confirms
    /// that the containers stopped (never, on an unreachable node). So after a real
    /// deletion this reads the Pod until it is gone, or replaced by a Pod with another
    /// UID, for up to [`ActionWaits::pod_gone`]; when it is still there then, the
    /// outcome says so in `terminating`, with its deletion timestamp and grace period.
    /// Deleting a terminating Pod again is accepted and changes nothing.
    pub async fn delete_pod(
        &self,
        namespace: &str,
        name: &str,
        uid: Option<&str>,
        dry_run: bool,
    ) -> Result<DeleteOutcome> {
        check_name("namespace", namespace)?;
        check_name("pod name", name)?;
        if uid.is_some_and(|u| u.trim().is_empty()) {
            return Err(Error::InvalidInput(format!("UID precondition for pod {namespace}/{name} is empty")));
        }
        let what = format!("pod {namespace}/{name}");
        let params = DeleteParams {
            dry_run,
            preconditions: uid.map(|uid| Preconditions { uid: Some(uid.to_string()), resource_version: None }),
            ..DeleteParams::default()
        };
        tracing::info!(namespace, name, uid, dry_run, "deleting pod");
        let api: Api<Pod> = Api::namespaced(self.kube_client(), namespace);
        match self.call_api(&what, api.delete(name, &params)).await {
            Ok(answer) => {
                // A `Status` answer (not a Pod) means the object was deleted at once.
                let terminating = match answer.as_ref().left() {
                    Some(pod) if !dry_run => {
                        let uid = uid.or(pod.metadata.uid.as_deref());
                        self.wait_pod_gone(namespace, name, uid, terminating_of(pod)).await
                    }
                    _ => None,
                };
                let response = answer.either(serde_json::to_value, serde_json::to_value);
                Ok(DeleteOutcome {
                    already_gone: false,
                    terminating,
                    dry_run,
                    response: response.map_err(|e| self.encode_error(&what, e))?,
                })
            }
            Err(Error::Kube { status, reason, message }) if status == 404 => Ok(DeleteOutcome {
                already_gone: true,
                terminating: None,
                dry_run,
                response: json!({
                    "kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "code": status, "reason": reason, "message": message,
                }),
            }),
            Err(e) => Err(e),
        }
    }

    /// Reads Pod `namespace/name` until it is gone or has another UID than `uid`, for
    /// up to [`ActionWaits::pod_gone`]: `None` when it went, else how it still stands
    /// (`last` until a read says more). An error that retrying will not cure (such as
    /// 403 on `get`) ends the wait early: the Pod is then reported as terminating,
    /// because nothing showed that it is gone.
    pub(super) async fn wait_pod_gone(
        &self,
        namespace: &str,
        name: &str,
        uid: Option<&str>,
        mut last: PodTerminating,
    ) -> Option<PodTerminating> {
        let deadline = Instant::now() + self.action_waits().pod_gone;
        let mut pause = Duration::from_millis(100);
        loop {
            match self.get_pod(namespace, name).await {
                Err(e) if e.is_not_found() => return None,
                Ok(pod) if uid.is_some() && pod.metadata.uid.as_deref() != uid => {
                    tracing::info!(namespace, name, "pod was replaced by one with another uid");
                    return None;
                }
                Ok(pod) => last = terminating_of(&pod),
                Err(e) if !e.is_retryable() => {
                    tracing::warn!(namespace, name, error = %e, "cannot tell whether the deleted pod is gone");
                    return Some(last);
                }
                Err(e) => {
                    tracing::debug!(namespace, name, error = %e, "reading the deleted pod failed; trying again");
                }
            }
            let now = Instant::now();
            if now >= deadline {
                tracing::info!(
                    namespace,
                    name,
                    deletion_timestamp = last.deletion_timestamp.as_deref(),
                    "pod is still terminating"
                );
                return Some(last);
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }

    /// Reads a Node.
    pub async fn get_node(&self, name: &str) -> Result<Node> {
        check_name("node name", name)?;
        let api: Api<Node> = Api::all(self.kube_client());
        self.call_api(&format!("node {name}"), api.get(name)).await
    }

    /// Cordons (`unschedulable: true`) or uncordons (`false`) a Node with a merge
    /// patch of `spec.unschedulable`, like `kubectl cordon` / `uncordon`. A Node
    /// already in that state is left alone (`changed: false`).
    pub async fn set_node_unschedulable(&self, name: &str, unschedulable: bool, dry_run: bool) -> Result<WriteOutcome> {
        let node = self.get_node(name).await?;
        let what = format!("node {name}");
        let current = node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false);
        if current == unschedulable {
            return Ok(WriteOutcome { changed: false, dry_run, response: self.encode(&what, &node)? });
        }
        tracing::info!(name, unschedulable, dry_run, "changing node schedulability");
        let api: Api<Node> = Api::all(self.kube_client());
        let params = PatchParams { dry_run, ..PatchParams::default() };
        let patch = json!({ "spec": { "unschedulable": unschedulable } });
        let answer = self.call_api(&what, api.patch(name, &params, &Patch::Merge(&patch))).await?;
        Ok(WriteOutcome { changed: true, dry_run, response: self.encode(&what, &answer)? })
    }

    /// Creates `job` in `namespace`. The Job must have a `metadata.name`: callers
    /// derive it from an idempotency key, so that a retried or resumed action finds the
    /// Job it created (409 `AlreadyExists`) rather than creating a second one. The Job
    /// must also carry labels that say whose it is (Warden's: the installation, the run
    /// and the step); an existing Job of that name is adopted (`created: false`) only
    /// when it carries every one of those labels with the same value. Any other Job of
    /// that name (made by hand, by another Warden installation or store, by another run)
    /// is never adopted: the call fails with [`Error::Precondition`] naming the labels
    /// that differ, and the Job is left alone. Other conflicts stay errors. The API
    /// server validates the Job, so an invalid one is a 422 `Invalid` error, in a dry
    /// run too.
    pub async fn create_job(&self, namespace: &str, job: &Job, dry_run: bool) -> Result<JobCreateOutcome> {
        check_name("namespace", namespace)?;
        let name = job.metadata.name.as_deref().unwrap_or_default();
        if name.is_empty() {
            return Err(Error::InvalidInput(format!(
                "a job created in {namespace} needs metadata.name (generateName is not idempotent)"
            )));
        }
        check_name("job name", name)?;
        if let Some(other) = job.metadata.namespace.as_deref() {
            if other != namespace {
                return Err(Error::InvalidInput(format!(
                    "job {name} names namespace {other:?} but is created in {namespace:?}"
                )));
            }
        }
        if job.metadata.labels.as_ref().is_none_or(|l| l.is_empty()) {
            return Err(Error::InvalidInput(format!(
                "job {namespace}/{name} needs labels that identify its creator (such as \
                 warden.io/run), so that a Job of the same name made by someone else is not \
                 taken for it"
            )));
        }
        let what = format!("job {namespace}/{name}");
        tracing::info!(namespace, name, dry_run, "creating job");
        let api: Api<Job> = Api::namespaced(self.kube_client(), namespace);
        let params = PostParams { dry_run, field_manager: None };
        let (created, job) = match self.call_api(&what, api.create(&params, job)).await {
            Ok(created) => (true, created),
            Err(Error::Kube { status: 409, reason, .. }) if reason == "AlreadyExists" => {
                let existing = self.get_job(namespace, name).await?;
                let differences = job_owner_differences(job, &existing);
                if !differences.is_empty() {
                    tracing::warn!(namespace, name, ?differences, "a job of this name exists and is not ours");
                    return Err(Error::Precondition {
                        object: what,
                        message: format!(
                            "a Job of this name already exists and was not created by this action \
                             ({}); it is not adopted and is left as it is",
                            differences.join("; ")
                        ),
                    });
                }
                tracing::info!(namespace, name, "job already exists (created earlier by this action)");
                (false, existing)
            }
            Err(e) => return Err(e),
        };
        Ok(JobCreateOutcome { created, dry_run, response: self.encode(&what, &job)?, job })
    }

    /// Reads a Job; [`job_phase`] says whether it finished.
    pub async fn get_job(&self, namespace: &str, name: &str) -> Result<Job> {
        check_name("namespace", namespace)?;
        check_name("job name", name)?;
        let api: Api<Job> = Api::namespaced(self.kube_client(), namespace);
        self.call_api(&format!("job {namespace}/{name}"), api.get(name)).await
    }

    pub(super) fn encode<T: Serialize>(&self, what: &str, value: &T) -> Result<Value> {
        serde_json::to_value(value).map_err(|e| self.encode_error(what, e))
    }

    pub(super) fn encode_error(&self, what: &str, e: serde_json::Error) -> Error {
        Error::Decode { url: self.describe_object(what), message: format!("cannot re-encode the object: {e}") }
    }
}
