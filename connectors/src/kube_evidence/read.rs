//! The reads: events paged and capped, ReplicaSets, referenced configuration (metadata only),
//! autoscalers, pods, nodes and services, each turning a forbidden part into a gap.

use super::*;

impl KubeClient {
    /// Core/v1 Events at or after `since` (unix seconds) in `namespace`, or in all
    /// namespaces for `None`, oldest first; at most [`MAX_EVENTS`] (the newest), listed
    /// [`EVENT_PAGE_SIZE`] per request. See [`KubeEventInfo::time`] for which timestamp
    /// counts. Needs `list` on `events` (cluster-wide for `None`).
    pub async fn events(&self, namespace: Option<&str>, since: i64) -> Result<EventList> {
        self.events_where(namespace, since, &|_| true).await
    }

    pub(super) async fn events_where(
        &self,
        namespace: Option<&str>,
        since: i64,
        keep: &(dyn Fn(&KubeEventInfo) -> bool + Sync),
    ) -> Result<EventList> {
        let (api, what): (Api<Event>, String) = match namespace {
            Some(ns) => {
                check_name("namespace", ns)?;
                (Api::namespaced(self.kube_client(), ns), format!("events in namespace {ns}"))
            }
            None => (Api::all(self.kube_client()), "events".to_string()),
        };
        let mut params = ListParams { limit: Some(EVENT_PAGE_SIZE), ..ListParams::default() };
        let mut kept: Vec<KubeEventInfo> = Vec::new();
        let mut truncated = false;
        let mut pages = 0;
        loop {
            let page = match self.call_api(&what, api.list(&params)).await {
                Ok(page) => page,
                // 410 Gone: the continue token expired (the server compacted its
                // history). Start again would repeat everything read so far; what was
                // read is still true, so report it as incomplete instead.
                Err(Error::Kube { status: 410, .. }) if pages > 0 => {
                    truncated = true;
                    break;
                }
                Err(e) => return Err(e),
            };
            pages += 1;
            kept.extend(page.items.iter().filter_map(event_info).filter(|e| e.time >= since && keep(e)));
            // Bound memory on busy clusters: keep only the newest MAX_EVENTS so far.
            if kept.len() > 2 * MAX_EVENTS {
                keep_newest(&mut kept);
                truncated = true;
            }
            match page.metadata.continue_.filter(|token| !token.is_empty()) {
                Some(_) if pages >= MAX_EVENT_PAGES => {
                    truncated = true;
                    break;
                }
                Some(token) => params.continue_token = Some(token),
                None => break,
            }
        }
        if kept.len() > MAX_EVENTS {
            truncated = true;
        }
        keep_newest(&mut kept);
        kept.sort_by_key(|e| e.time);
        Ok(EventList { events: kept, truncated, pages })
    }

    /// The rollouts of Deployment `namespace/deployment` since `since` (unix seconds),
    /// from its ReplicaSets; see [`rollout_changes`]. Needs `get` on `deployments` and
    /// `list` on `replicasets`.
    pub async fn rollouts(&self, namespace: &str, deployment: &str, since: i64) -> Result<Vec<RolloutChange>> {
        let object = self.get_deployment(namespace, deployment).await?;
        let replica_sets = self.replicasets_owned_by(namespace, &object).await?;
        Ok(rollout_changes(&replica_sets, since))
    }

    /// Metadata of each referenced ConfigMap and Secret (see [`KubeClient::config_change`]).
    pub async fn config_changes(&self, namespace: &str, refs: &[ConfigRef], since: i64) -> Result<Vec<ConfigChange>> {
        let mut out = Vec::with_capacity(refs.len());
        for config in refs {
            out.push(self.config_change(namespace, config, since).await?);
        }
        Ok(out)
    }

    /// Metadata of one ConfigMap or Secret, read with a metadata-only GET so that no
    /// data is transferred (see the module documentation). A missing object is
    /// `exists: false`, not an error. Needs `get` on `configmaps` or `secrets`.
    pub async fn config_change(&self, namespace: &str, config: &ConfigRef, since: i64) -> Result<ConfigChange> {
        check_name("namespace", namespace)?;
        check_name("config name", &config.name)?;
        let what = format!("{} {namespace}/{} (metadata)", config.kind.resource(), config.name);
        let read = match config.kind {
            ConfigKind::ConfigMap => {
                let api: Api<ConfigMap> = Api::namespaced(self.kube_client(), namespace);
                self.call_api(&what, api.get_metadata(&config.name)).await.map(|partial| partial.metadata)
            }
            ConfigKind::Secret => {
                // PartialObjectMeta has no data fields: whatever the server sends beyond
                // metadata is discarded by the decoder.
                let api: Api<Secret> = Api::namespaced(self.kube_client(), namespace);
                self.call_api(&what, api.get_metadata(&config.name)).await.map(|partial| partial.metadata)
            }
        };
        let metadata = match read {
            Ok(metadata) => metadata,
            Err(e) if e.is_not_found() => {
                return Ok(ConfigChange {
                    kind: config.kind,
                    name: config.name.clone(),
                    exists: false,
                    created: None,
                    last_change: None,
                    last_change_source: None,
                    last_manager: None,
                    resource_version: None,
                    changed_since: false,
                })
            }
            Err(e) => return Err(e),
        };
        let created = metadata.creation_timestamp.as_ref().map(secs);
        let newest = newest_write(&metadata);
        let (last_change, last_change_source, last_manager) = match newest {
            Some((time, manager)) => (Some(time), Some(TimeSource::ManagedFields), manager),
            None => (created, created.map(|_| TimeSource::CreationTimestamp), None),
        };
        Ok(ConfigChange {
            kind: config.kind,
            name: config.name.clone(),
            exists: true,
            created,
            last_change,
            last_change_source,
            last_manager,
            resource_version: metadata.resource_version,
            changed_since: last_change.is_some_and(|t| t >= since),
        })
    }

    /// Replica counts of Deployment `namespace/deployment` and the autoscalers
    /// (autoscaling/v2) that target it. Needs `get` on `deployments` and `list` on
    /// `horizontalpodautoscalers`.
    pub async fn scale_evidence(&self, namespace: &str, deployment: &str, since: i64) -> Result<ScaleEvidence> {
        let object = self.get_deployment(namespace, deployment).await?;
        let hpas = self.hpas_targeting(namespace, deployment, since).await?;
        Ok(scale_of(&object, hpas))
    }

    pub(super) async fn hpas_targeting(&self, namespace: &str, deployment: &str, since: i64) -> Result<Vec<HpaInfo>> {
        let api: Api<HorizontalPodAutoscaler> = Api::namespaced(self.kube_client(), namespace);
        let list = self
            .call_api(&format!("horizontalpodautoscalers in namespace {namespace}"), api.list(&ListParams::default()))
            .await?;
        let mut out: Vec<HpaInfo> = list
            .items
            .iter()
            .filter(|hpa| {
                hpa.spec.as_ref().is_some_and(|spec| {
                    let target = &spec.scale_target_ref;
                    target.kind == "Deployment"
                        && target.name == deployment
                        && target.api_version.as_deref().is_none_or(|v| v.starts_with("apps/"))
                })
            })
            .map(|hpa| hpa_info(hpa, since))
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Where Deployment `namespace/deployment` runs: its ReplicaSets, its pods (listed
    /// with its selector, kept when a ReplicaSet of it owns them), their nodes, and the
    /// Services whose selector matches its pod template. Needs `get` on `deployments`
    /// and `nodes`, `list` on `replicasets`, `pods` and `services`.
    pub async fn topology(&self, namespace: &str, deployment: &str) -> Result<Topology> {
        let object = self.get_deployment(namespace, deployment).await?;
        let replica_sets = self.replicasets_owned_by(namespace, &object).await?;
        self.topology_of(namespace, &object, Some(&replica_sets), &mut Gaps::strict()).await
    }

    pub(super) async fn topology_of(
        &self,
        namespace: &str,
        deployment: &Deployment,
        replica_sets: Option<&[ReplicaSet]>,
        gaps: &mut Gaps,
    ) -> Result<Topology> {
        let name = deployment.metadata.name.clone().unwrap_or_default();
        let selector = match deployment.spec.as_ref() {
            Some(spec) => crate::kube_actions::selector_string(&spec.selector)?,
            None => None,
        };
        let mut topology = Topology {
            namespace: namespace.to_string(),
            deployment: name.clone(),
            selector: selector.clone(),
            replica_sets: replica_sets.unwrap_or_default().iter().map(replicaset_info).collect(),
            pods: Vec::new(),
            nodes: Vec::new(),
            services: Vec::new(),
        };

        // Without a selector the list would return every pod of the namespace.
        if selector.is_some() {
            let api: Api<Pod> = Api::namespaced(self.kube_client(), namespace);
            let params = ListParams { label_selector: selector, ..ListParams::default() };
            let listed = self.call_api(&format!("pods of deployment {namespace}/{name}"), api.list(&params)).await;
            if let Some(list) = gaps.absorb("pods", listed)? {
                // Pod -> ReplicaSet -> Deployment: only pods a ReplicaSet of this
                // Deployment controls. When the ReplicaSets could not be read, the
                // selector alone decides.
                let owners: Option<BTreeMap<&str, &str>> = replica_sets.map(|sets| {
                    sets.iter()
                        .filter_map(|rs| Some((rs.metadata.uid.as_deref()?, rs.metadata.name.as_deref()?)))
                        .collect()
                });
                topology.pods = list
                    .items
                    .iter()
                    .filter(|pod| match &owners {
                        Some(owners) => controller_of(&pod.metadata).is_some_and(|(uid, _)| owners.contains_key(uid)),
                        None => true,
                    })
                    .map(pod_info)
                    .collect();
                topology.pods.sort_by(|a, b| a.name.cmp(&b.name));
            }
        }

        let node_names: BTreeSet<String> = topology.pods.iter().filter_map(|p| p.node.clone()).collect();
        for node in node_names {
            let read = match self.get_node(&node).await {
                Ok(object) => Ok(node_info(&node, Some(&object))),
                Err(e) if e.is_not_found() => Ok(node_info(&node, None)),
                Err(e) => Err(e),
            };
            match gaps.absorb("nodes", read)? {
                Some(info) => topology.nodes.push(info),
                // Forbidden: every other node would be refused too.
                None => break,
            }
        }

        let template_labels = deployment
            .spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        let api: Api<Service> = Api::namespaced(self.kube_client(), namespace);
        let listed =
            self.call_api(&format!("services in namespace {namespace}"), api.list(&ListParams::default())).await;
        if let Some(list) = gaps.absorb("services", listed)? {
            topology.services = list
                .items
                .iter()
                .filter(|svc| {
                    svc.spec.as_ref().and_then(|s| s.selector.as_ref()).is_some_and(|sel| {
                        !sel.is_empty() && sel.iter().all(|(k, v)| template_labels.get(k) == Some(v))
                    })
                })
                .filter_map(|svc| svc.metadata.name.clone())
                .collect();
            topology.services.sort();
        }
        Ok(topology)
    }
}
