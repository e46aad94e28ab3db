//! The Kustomize manifests of `deploy/kustomize`: every overlay (alone and with the opt-in
//! components) renders with `kubectl kustomize`; `overlays/ha` runs two replicas that cannot
//! all be down at once, with leader election and the shared PostgreSQL store; each overlay's
//! `warden.yaml` passes `warden check-config`; `deploy/rbac.yaml` grants what the base does;
//! the RBAC table below covers every Kubernetes API type the code calls; the leader-election
//! Lease is granted by a Role in Warden's own namespace only. Against the real API server in
//! `../shared/kube` (skipped, with one line, when it is absent): every overlay's manifests pass
//! `kubectl apply --dry-run=server` without PodSecurity warnings, and `kubectl auth can-i` as
//! `system:serviceaccount:warden:warden` answers yes for every call the code makes (Leases in
//! `warden` only) and no for Secrets, unless the read-secrets component is applied.
//!
//! Without `kubectl` on the PATH the rendering tests print why and pass (it is not something
//! `tests/run.sh` can install).

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;
use warden_tests::procs::{warden_cli, workspace_root};
use warden_tests::realkube::{self, ADMIN_CONTEXT};

/// The service account the Deployment runs as.
const SERVICE_ACCOUNT: &str = "system:serviceaccount:warden:warden";

/// Every API call the code makes: (verb, resource as `kubectl auth can-i` names it, where it
/// is called). Derived from `connectors/src/kube_actions.rs`, `kubernetes.rs` and
/// `kube_evidence.rs`; [`rbac_table_covers_every_api_type_the_code_uses`] keeps it complete.
const CALLS: &[(&str, &str, &str)] = &[
    ("get", "deployments.apps", "kube_actions: get_deployment"),
    ("patch", "deployments.apps", "kube_actions: restart, rollback, patch steps"),
    ("get", "deployments.apps/scale", "kubernetes: get_scale"),
    ("patch", "deployments.apps/scale", "kubernetes: patch_scale"),
    ("list", "replicasets.apps", "kube_actions: rollback revisions; evidence: rollouts"),
    ("get", "pods", "kube_actions: delete_pod reads the uid"),
    ("list", "pods", "kube_actions: pods by selector; evidence: topology"),
    ("delete", "pods", "kube_actions: delete_pod"),
    ("get", "nodes", "kube_actions: cordon; evidence: node conditions"),
    ("patch", "nodes", "kube_actions: cordon and uncordon"),
    ("create", "jobs.batch", "kube_actions: run_job"),
    ("get", "jobs.batch", "kube_actions: job status"),
    ("list", "events", "evidence: events"),
    ("list", "services", "evidence: topology"),
    ("list", "horizontalpodautoscalers.autoscaling", "evidence: autoscalers"),
    ("get", "configmaps", "evidence: config changes (metadata)"),
];

/// Namespace of the Role that grants the leader-election Lease.
const LEASE_NAMESPACE: &str = "warden";

/// The API calls on the leader-election Lease, granted by the Role
/// `warden-leader-election` in [`LEASE_NAMESPACE`] only (`connectors/src/leader`).
const LEASE_CALLS: &[(&str, &str, &str)] = &[
    ("get", "leases.coordination.k8s.io", "leader: read the holder"),
    ("create", "leases.coordination.k8s.io", "leader: the first replica creates the Lease"),
    ("update", "leases.coordination.k8s.io", "leader: renew, take over, release"),
];

/// The API types of `Api<T>` in the code, and the resource each is granted on.
const API_TYPES: &[(&str, &str)] = &[
    ("Deployment", "deployments.apps"),
    ("ReplicaSet", "replicasets.apps"),
    ("Pod", "pods"),
    ("Node", "nodes"),
    ("Job", "jobs.batch"),
    ("Event", "events"),
    ("ConfigMap", "configmaps"),
    ("Secret", "secrets"),
    ("HorizontalPodAutoscaler", "horizontalpodautoscalers.autoscaling"),
    ("Service", "services"),
    ("Lease", "leases.coordination.k8s.io"),
];

/// What the service account must not be able to do by default.
const REFUSED: &[(&str, &str)] = &[
    ("get", "secrets"),
    ("list", "secrets"),
    ("update", "deployments.apps/scale"),
    ("delete", "deployments.apps"),
    ("create", "deployments.apps"),
    ("create", "pods/exec"),
    ("create", "pods/eviction"),
    ("delete", "jobs.batch"),
    ("update", "configmaps"),
    ("list", "namespaces"),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
    ("escalate", "clusterroles.rbac.authorization.k8s.io"),
    // Leases only in Warden's namespace, and never deleted.
    ("update", "leases.coordination.k8s.io"),
    ("create", "leases.coordination.k8s.io"),
    ("delete", "leases.coordination.k8s.io"),
];

fn kustomize_dir() -> PathBuf {
    workspace_root().join("deploy/kustomize")
}

fn kubectl() -> Option<PathBuf> {
    warden_tests::procs::require_program("kubectl").ok()
}

fn run(command: &mut Command) -> Result<Output> {
    let out = command.output().with_context(|| format!("running {command:?}"))?;
    Ok(out)
}

fn stdout_of(command: &mut Command) -> Result<String> {
    let out = run(command)?;
    ensure!(out.status.success(), "{command:?}: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `to` relative to the directory `from` (both absolute).
fn relative(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<Component> = from.components().collect();
    let to: Vec<Component> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut path = PathBuf::new();
    for _ in common..from.len() {
        path.push("..");
    }
    for c in &to[common..] {
        path.push(c.as_os_str());
    }
    path
}

static SCRATCH: AtomicU32 = AtomicU32::new(0);

/// A fresh folder under the build's temporary directory.
fn scratch(name: &str) -> Result<PathBuf> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "deploy-{name}-{}-{}",
        std::process::id(),
        SCRATCH.fetch_add(1, Ordering::SeqCst)
    ));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir.canonicalize()?)
}

/// Renders `overlay` (a folder under deploy/kustomize) with the given components added.
fn render(kubectl: &Path, overlay: &str, components: &[&str]) -> Result<Vec<Value>> {
    let base = kustomize_dir().canonicalize()?;
    let target = if components.is_empty() {
        base.join(overlay)
    } else {
        let dir = scratch("render")?;
        let mut text = String::from("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n");
        text += &format!("  - {}\ncomponents:\n", relative(&dir, &base.join(overlay)).display());
        for c in components {
            text += &format!("  - {}\n", relative(&dir, &base.join(c)).display());
        }
        std::fs::write(dir.join("kustomization.yaml"), text)?;
        dir
    };
    let yaml = stdout_of(Command::new(kubectl).arg("kustomize").arg(&target))?;
    let mut docs = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&yaml) {
        let value: Value = serde::Deserialize::deserialize(doc)?;
        if !value.is_null() {
            docs.push(value);
        }
    }
    ensure!(!docs.is_empty(), "{overlay} {components:?} rendered nothing");
    Ok(docs)
}

fn kind_of(v: &Value) -> &str {
    v["kind"].as_str().unwrap_or_default()
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> Result<&'a Value> {
    docs.iter()
        .find(|d| kind_of(d) == kind && d["metadata"]["name"] == name)
        .with_context(|| format!("no {kind} {name} in the rendering"))
}

fn to_yaml(docs: &[Value]) -> Result<String> {
    let mut text = String::new();
    for d in docs {
        text += "---\n";
        text += &serde_yaml::to_string(d)?;
    }
    Ok(text)
}

/// Whether any rule of `role` grants `verb` on `resource` (core group when no dot).
fn grants(role: &Value, verb: &str, resource: &str) -> bool {
    let (name, sub) = match resource.split_once('/') {
        Some((name, sub)) => (name, Some(sub)),
        None => (resource, None),
    };
    let (plain, group) = name.split_once('.').unwrap_or((name, ""));
    let resource = match sub {
        Some(sub) => format!("{plain}/{sub}"),
        None => plain.to_string(),
    };
    let resource = resource.as_str();
    role["rules"].as_array().into_iter().flatten().any(|rule| {
        let has = |key: &str, want: &str| rule[key].as_array().is_some_and(|a| a.iter().any(|v| v == want || v == "*"));
        has("apiGroups", group) && has("resources", resource) && has("verbs", verb)
    })
}

/// Every overlay under deploy/kustomize/overlays, as `overlays/NAME`, sorted.
fn overlays() -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(kustomize_dir().join("overlays"))? {
        let path = entry?.path();
        if path.join("kustomization.yaml").is_file() {
            let name = path.file_name().and_then(|n| n.to_str()).context("an overlay name that is not UTF-8")?;
            names.push(format!("overlays/{name}"));
        }
    }
    names.sort();
    Ok(names)
}

/// The ConfigMap `warden`'s `warden.yaml`: its text and the parsed value.
fn warden_yaml(docs: &[Value]) -> Result<(String, Value)> {
    let text = find(docs, "ConfigMap", "warden")?["data"]["warden.yaml"]
        .as_str()
        .context("the ConfigMap has no warden.yaml")?
        .to_string();
    let parsed = serde_yaml::from_str(&text)?;
    Ok((text, parsed))
}

/// Whether every label of `selector` (a `matchLabels` map) is among `labels` with its value.
fn selects(selector: &Value, labels: &Value) -> bool {
    selector.as_object().is_some_and(|m| !m.is_empty() && m.iter().all(|(k, v)| &labels[k] == v))
}

#[test]
fn every_overlay_renders_with_kubectl_kustomize() -> Result<()> {
    let Some(kubectl) = kubectl() else {
        println!("every_overlay_renders_with_kubectl_kustomize: skipped: no kubectl on the PATH");
        return Ok(());
    };
    let base = render(&kubectl, "base", &[])?;
    let single = render(&kubectl, "overlays/single", &[])?;
    let kinds: BTreeSet<&str> = single.iter().map(kind_of).collect();
    for want in [
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "ConfigMap",
        "Deployment",
        "Service",
        "PersistentVolumeClaim",
    ] {
        ensure!(kinds.contains(want), "overlays/single has no {want}: {kinds:?}");
    }
    ensure!(!base.iter().any(|d| kind_of(d) == "PersistentVolumeClaim"), "the base should not claim storage");

    // One replica (no leader election yet), replaced (Recreate) so two never share the file,
    // the store on the claim.
    let deployment = find(&single, "Deployment", "warden")?;
    let spec = &deployment["spec"];
    ensure!(spec["replicas"] == 1, "replicas: {}", spec["replicas"]);
    ensure!(spec["strategy"]["type"] == "Recreate", "strategy: {}", spec["strategy"]);
    let pod = &spec["template"]["spec"];
    let volumes = pod["volumes"].as_array().context("no volumes")?;
    let data = volumes.iter().find(|v| v["name"] == "data").context("no data volume")?;
    ensure!(
        data["persistentVolumeClaim"]["claimName"] == "warden-data" && data.get("emptyDir").is_none(),
        "data volume: {data}"
    );
    find(&single, "PersistentVolumeClaim", "warden-data")?;

    // Probes on the server's real paths, resources, a locked-down security context.
    let container = &pod["containers"][0];
    ensure!(container["livenessProbe"]["httpGet"]["path"] == "/healthz");
    ensure!(container["readinessProbe"]["httpGet"]["path"] == "/readyz");
    ensure!(container["resources"]["requests"]["memory"].is_string());
    ensure!(container["resources"]["limits"]["memory"].is_string());
    let security = &container["securityContext"];
    ensure!(security["readOnlyRootFilesystem"] == true, "{security}");
    ensure!(security["allowPrivilegeEscalation"] == false, "{security}");
    ensure!(security["capabilities"]["drop"][0] == "ALL", "{security}");
    ensure!(pod["securityContext"]["runAsNonRoot"] == true);
    ensure!(pod["serviceAccountName"] == "warden");
    // The service exposes the port the probes and the ServiceMonitor use.
    let service = find(&single, "Service", "warden")?;
    ensure!(service["spec"]["ports"][0]["targetPort"] == "http");
    ensure!(container["ports"][0]["name"] == "http");

    // No Secrets by default; the component adds exactly `get` on them.
    ensure!(
        !single.iter().filter(|d| kind_of(d) == "ClusterRole").any(|r| grants(r, "get", "secrets")),
        "overlays/single grants Secrets"
    );
    let with_secrets = render(&kubectl, "overlays/single", &["components/read-secrets"])?;
    let reader = find(&with_secrets, "ClusterRole", "warden-read-secrets")?;
    ensure!(grants(reader, "get", "secrets") && !grants(reader, "list", "secrets"));
    find(&with_secrets, "ClusterRoleBinding", "warden-read-secrets")?;

    // The monitoring component: a ServiceMonitor on the Service's labels and port.
    let monitored = render(&kubectl, "overlays/single", &["components/monitoring"])?;
    let monitor = find(&monitored, "ServiceMonitor", "warden")?;
    find(&monitored, "PrometheusRule", "warden")?;
    // The dashboard's ConfigMap for Grafana's sidecar carries the dashboard unchanged.
    let grafana = render(&kubectl, "../grafana", &[])?;
    let dashboard = find(&grafana, "ConfigMap", "warden-dashboard")?;
    ensure!(dashboard["metadata"]["labels"]["grafana_dashboard"] == "1");
    let shipped: Value =
        serde_json::from_str(&std::fs::read_to_string(workspace_root().join("deploy/grafana/warden-dashboard.json"))?)?;
    let rendered: Value = serde_json::from_str(
        dashboard["data"]["warden-dashboard.json"].as_str().context("no dashboard in the ConfigMap")?,
    )?;
    ensure!(rendered == shipped, "the ConfigMap's dashboard differs from the file");
    ensure!(monitor["spec"]["endpoints"][0]["port"] == "http");
    ensure!(monitor["spec"]["endpoints"][0]["path"] == "/metrics");
    for (k, v) in monitor["spec"]["selector"]["matchLabels"].as_object().context("ServiceMonitor selector")? {
        ensure!(
            &service["metadata"]["labels"][k] == v,
            "the Service lacks the label {k}={v} the ServiceMonitor selects"
        );
    }

    // Every overlay there is, alone and with each opt-in component.
    let overlays = overlays()?;
    ensure!(overlays.iter().any(|o| o == "overlays/ha"), "overlays: {overlays:?}");
    for overlay in &overlays {
        for components in [&[][..], &["components/read-secrets"], &["components/monitoring"]] {
            let docs = render(&kubectl, overlay, components)?;
            find(&docs, "Deployment", "warden")?;
            find(&docs, "ConfigMap", "warden")?;
        }
    }
    Ok(())
}

#[test]
fn the_ha_overlay_runs_two_leader_elected_replicas_on_postgres() -> Result<()> {
    let Some(kubectl) = kubectl() else {
        println!("the_ha_overlay_runs_two_leader_elected_replicas_on_postgres: skipped: no kubectl on the PATH");
        return Ok(());
    };
    let ha = render(&kubectl, "overlays/ha", &[])?;
    let deployment = find(&ha, "Deployment", "warden")?;
    let spec = &deployment["spec"];
    let pod_labels = &spec["template"]["metadata"]["labels"];
    ensure!(selects(&spec["selector"]["matchLabels"], pod_labels), "the Deployment's selector: {}", spec["selector"]);

    // Two replicas, rolled one at a time with the new pod up before the old one goes.
    ensure!(spec["replicas"] == 2, "replicas: {}", spec["replicas"]);
    let strategy = &spec["strategy"];
    ensure!(strategy["type"] == "RollingUpdate", "strategy: {strategy}");
    ensure!(strategy["rollingUpdate"]["maxUnavailable"] == 0, "strategy: {strategy}");
    ensure!(strategy["rollingUpdate"]["maxSurge"].as_u64().is_some_and(|n| n >= 1), "strategy: {strategy}");

    // A PodDisruptionBudget on the Warden pods that lets at most one go at a time.
    let pdbs: Vec<&Value> = ha.iter().filter(|d| kind_of(d) == "PodDisruptionBudget").collect();
    ensure!(pdbs.len() == 1, "{} PodDisruptionBudgets", pdbs.len());
    let pdb = pdbs[0];
    ensure!(pdb["apiVersion"] == "policy/v1", "{pdb}");
    ensure!(pdb["metadata"]["namespace"] == "warden", "{pdb}");
    ensure!(selects(&pdb["spec"]["selector"]["matchLabels"], pod_labels), "the PDB does not select the pods: {pdb}");
    ensure!(
        pdb["spec"]["minAvailable"] == 1 || pdb["spec"]["maxUnavailable"] == 1,
        "the PDB should keep one replica: {}",
        pdb["spec"]
    );

    // The replicas spread over nodes: anti-affinity on the pods' own labels, per host name.
    let pod = &spec["template"]["spec"];
    let anti = &pod["affinity"]["podAntiAffinity"];
    let terms: Vec<&Value> = anti["preferredDuringSchedulingIgnoredDuringExecution"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| &t["podAffinityTerm"])
        .chain(anti["requiredDuringSchedulingIgnoredDuringExecution"].as_array().into_iter().flatten())
        .collect();
    ensure!(
        terms
            .iter()
            .any(|t| t["topologyKey"] == "kubernetes.io/hostname"
                && selects(&t["labelSelector"]["matchLabels"], pod_labels)),
        "no pod anti-affinity across nodes on the Warden pods: {anti}"
    );

    // The database URL from the Secret warden-postgres, key url; the Lease's namespace and
    // identity from the pod; no local state.
    let container = &pod["containers"][0];
    let env = container["env"].as_array().context("no env")?;
    let var = |name: &str| env.iter().find(|e| e["name"] == name).with_context(|| format!("no env {name}"));
    let url = &var("WARDEN_POSTGRES_URL")?["valueFrom"]["secretKeyRef"];
    ensure!(url["name"] == "warden-postgres" && url["key"] == "url", "WARDEN_POSTGRES_URL from {url}");
    ensure!(var("POD_NAME")?["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name");
    ensure!(var("POD_NAMESPACE")?["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace");
    ensure!(!ha.iter().any(|d| kind_of(d) == "PersistentVolumeClaim"), "overlays/ha claims storage");
    ensure!(
        !pod["volumes"].as_array().into_iter().flatten().any(|v| v.get("persistentVolumeClaim").is_some()),
        "overlays/ha mounts a claim"
    );
    ensure!(!ha.iter().any(|d| kind_of(d) == "Secret"), "overlays/ha ships a Secret");

    // The Lease: get, create, update in warden (never delete), bound to the service account.
    let role = find(&ha, "Role", "warden-leader-election")?;
    ensure!(role["metadata"]["namespace"] == LEASE_NAMESPACE, "{role}");
    for (verb, resource, _) in LEASE_CALLS {
        ensure!(grants(role, verb, resource), "overlays/ha does not grant {verb} {resource}");
    }
    ensure!(!grants(role, "delete", "leases.coordination.k8s.io"), "overlays/ha grants delete on Leases");
    let binding = find(&ha, "RoleBinding", "warden-leader-election")?;
    ensure!(binding["metadata"]["namespace"] == LEASE_NAMESPACE, "{binding}");
    ensure!(binding["roleRef"]["kind"] == "Role" && binding["roleRef"]["name"] == "warden-leader-election");
    let subject = &binding["subjects"][0];
    ensure!(
        subject["kind"] == "ServiceAccount" && subject["name"] == "warden" && subject["namespace"] == "warden",
        "{binding}"
    );
    ensure!(pod["serviceAccountName"] == "warden");

    // warden.yaml: leader election on, the store in PostgreSQL (and no SQLite file).
    let (_, config) = warden_yaml(&ha)?;
    ensure!(config["leader_election"]["enabled"] == true, "leader_election: {}", config["leader_election"]);
    ensure!(config["store"]["postgres"]["url_from"]["env"] == "WARDEN_POSTGRES_URL", "store: {}", config["store"]);
    ensure!(config["store"].get("sqlite").is_none(), "store: {}", config["store"]);
    Ok(())
}

#[tokio::test]
async fn the_configmap_config_passes_check_config() -> Result<()> {
    let Some(kubectl) = kubectl() else {
        println!("the_configmap_config_passes_check_config: skipped: no kubectl on the PATH");
        return Ok(());
    };
    for overlay in overlays()? {
        let docs = render(&kubectl, &overlay, &[])?;
        let (config, parsed) = warden_yaml(&docs)?;
        let dir = scratch("config")?;
        let file = dir.join("warden.yaml");
        std::fs::write(&file, &config)?;
        // What the Deployment's fieldRefs give a pod (leader election reads them).
        let pod_env = [("POD_NAMESPACE", "warden"), ("POD_NAME", "warden-0")];
        let out = warden_cli(&["check-config", file.to_str().context("path")?], &pod_env).await?;
        ensure!(
            out.status.success(),
            "{overlay}: the ConfigMap's warden.yaml fails check-config: {}\n{}",
            out.stdout,
            out.stderr
        );
        // Its secrets are the files the Deployment mounts from the Secret `warden`.
        let deployment = find(&docs, "Deployment", "warden")?;
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        let mounts = container["volumeMounts"].as_array().context("volumeMounts")?;
        let secrets_at = mounts
            .iter()
            .find(|m| m["name"] == "secrets")
            .and_then(|m| m["mountPath"].as_str())
            .context("no secrets mount")?;
        let config_at = mounts
            .iter()
            .find(|m| m["name"] == "config")
            .and_then(|m| m["mountPath"].as_str())
            .context("no config mount")?;
        ensure!(config_at == "/etc/warden", "{overlay}: config mounted at {config_at}");
        for file in [
            &parsed["server"]["api_token"]["file"],
            &parsed["server"]["viewer_token"]["file"],
            &parsed["notify"]["slack"]["webhook_url"]["file"],
        ] {
            let file = file.as_str().context("a secret that is not a file reference")?;
            ensure!(
                file.starts_with(&format!("{secrets_at}/")),
                "{overlay}: {file} is not under the Secret's mount {secrets_at}"
            );
        }
        // The store: a SQLite file on the data volume, or PostgreSQL at a URL the Deployment
        // sets from a Secret.
        let store = &parsed["store"];
        if let Some(var) = store["postgres"]["url_from"]["env"].as_str() {
            let env = container["env"].as_array().context("no env")?;
            ensure!(
                env.iter().any(|e| e["name"] == var && e["valueFrom"]["secretKeyRef"]["key"].is_string()),
                "{overlay}: the Deployment does not set {var} from a Secret"
            );
        } else {
            ensure!(
                store["sqlite"].as_str().is_some_and(|p| p.starts_with("/var/lib/warden/")),
                "{overlay}: the store is not on the data volume: {store}"
            );
        }
    }
    Ok(())
}

/// The object of `kind` named `name` in a YAML stream.
fn object_in(text: &str, kind: &str, name: &str) -> Result<Value> {
    for doc in serde_yaml::Deserializer::from_str(text) {
        let value: Value = serde::Deserialize::deserialize(doc)?;
        if kind_of(&value) == kind && value["metadata"]["name"] == name {
            return Ok(value);
        }
    }
    bail!("no {kind} {name}")
}

/// The ClusterRole `warden` of a YAML stream.
fn cluster_role(text: &str) -> Result<Value> {
    object_in(text, "ClusterRole", "warden")
}

#[test]
fn deploy_rbac_yaml_grants_what_the_base_grants() -> Result<()> {
    let root = workspace_root();
    let plain = cluster_role(&std::fs::read_to_string(root.join("deploy/rbac.yaml"))?)?;
    let base = cluster_role(&std::fs::read_to_string(root.join("deploy/kustomize/base/rbac.yaml"))?)?;
    ensure!(
        plain["rules"] == base["rules"],
        "deploy/rbac.yaml and deploy/kustomize/base/rbac.yaml differ:\n{}\n{}",
        plain["rules"],
        base["rules"]
    );
    for (verb, resource, _) in CALLS {
        ensure!(grants(&base, verb, resource), "the base does not grant {verb} {resource}");
    }
    for (verb, resource) in REFUSED {
        ensure!(!grants(&base, verb, resource), "the base grants {verb} {resource}");
    }
    // The Lease: a Role in Warden's namespace, bound to its service account, the same in both.
    let plain_text = std::fs::read_to_string(root.join("deploy/rbac.yaml"))?;
    let base_text = std::fs::read_to_string(root.join("deploy/kustomize/base/rbac.yaml"))?;
    let plain_role = object_in(&plain_text, "Role", "warden-leader-election")?;
    let base_role = object_in(&base_text, "Role", "warden-leader-election")?;
    ensure!(plain_role["rules"] == base_role["rules"], "the leader-election Roles differ");
    ensure!(plain_role["metadata"]["namespace"] == LEASE_NAMESPACE, "deploy/rbac.yaml's Role is not in warden");
    for (verb, resource, _) in LEASE_CALLS {
        ensure!(grants(&base_role, verb, resource), "the leader-election Role does not grant {verb} {resource}");
    }
    ensure!(!grants(&base_role, "delete", "leases.coordination.k8s.io"), "the Role grants delete on Leases");
    for text in [&plain_text, &base_text] {
        let binding = object_in(text, "RoleBinding", "warden-leader-election")?;
        ensure!(binding["roleRef"]["name"] == "warden-leader-election", "{binding}");
        ensure!(binding["subjects"][0]["name"] == "warden", "{binding}");
    }
    Ok(())
}

#[test]
fn rbac_table_covers_every_api_type_the_code_uses() -> Result<()> {
    let mut used = BTreeSet::new();
    for dir in ["connectors/src", "agent/src"] {
        let dir = workspace_root().join(dir);
        let mut stack = vec![dir];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir)? {
                let path = entry?.path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path)?;
                    let mut rest = text.as_str();
                    while let Some(at) = rest.find("Api<") {
                        rest = &rest[at + 4..];
                        let name: String = rest.chars().take_while(char::is_ascii_alphanumeric).collect();
                        if !name.is_empty() && name != "K" {
                            used.insert(name);
                        }
                    }
                }
            }
        }
    }
    ensure!(used.contains("Deployment"), "found no Api<T> in the code: {used:?}");
    for name in &used {
        let Some((_, resource)) = API_TYPES.iter().find(|(t, _)| t == name) else {
            bail!("the code calls Api<{name}>, which the RBAC table of this test does not know: add its verbs to CALLS and deploy/kustomize/base/rbac.yaml");
        };
        ensure!(
            *resource == "secrets" || CALLS.iter().chain(LEASE_CALLS).any(|(_, r, _)| r == resource),
            "Api<{name}> is used but no call on {resource} is checked"
        );
    }
    Ok(())
}

/// `kubectl --kubeconfig K --context C ARGS...`.
fn kubectl_at(kubectl: &Path, kubeconfig: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(kubectl);
    command.arg("--kubeconfig").arg(kubeconfig).arg("--context").arg(ADMIN_CONTEXT).args(args);
    command
}

/// `kubectl auth can-i VERB RESOURCE --as the service account` in `namespace`: yes or no.
fn can_i(kubectl: &Path, kubeconfig: &Path, verb: &str, resource: &str, namespace: &str) -> Result<bool> {
    let (resource, sub) = match resource.split_once('/') {
        Some((r, s)) => (r, Some(s)),
        None => (resource, None),
    };
    let mut args = vec!["auth", "can-i", verb, resource, "--as", SERVICE_ACCOUNT, "-n", namespace];
    let subresource;
    if let Some(s) = sub {
        subresource = format!("--subresource={s}");
        args.push(&subresource);
    }
    let out = run(&mut kubectl_at(kubectl, kubeconfig, &args))?;
    let answer = String::from_utf8_lossy(&out.stdout).trim().to_string();
    match answer.as_str() {
        "yes" => Ok(true),
        "no" => Ok(false),
        _ => bail!("kubectl auth can-i {verb} {resource}: {answer} {}", String::from_utf8_lossy(&out.stderr)),
    }
}

/// Asks until the answer is `want` (the authorizer's cache follows RBAC writes within
/// moments), for at most 30 s; returns the last answer.
fn can_i_becomes(kubectl: &Path, kubeconfig: &Path, verb: &str, resource: &str, want: bool) -> Result<bool> {
    for _ in 0..60 {
        if can_i(kubectl, kubeconfig, verb, resource, "shop")? == want {
            return Ok(want);
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    Ok(!want)
}

#[test]
fn the_real_api_server_accepts_the_manifests_and_rbac_allows_exactly_the_code() -> Result<()> {
    let test = "the_real_api_server_accepts_the_manifests_and_rbac_allows_exactly_the_code";
    let Some(plane) = realkube::shared_plane(test)? else {
        return Ok(());
    };
    let Some(kubectl) = kubectl() else {
        println!("{test}: skipped: no kubectl on the PATH");
        return Ok(());
    };
    let kubeconfig = plane.kubeconfig();
    let dir = scratch("apply")?;
    let docs = render(&kubectl, "overlays/single", &[])?;
    let overlays = overlays()?;

    // The Namespace for real first (server-side dry-run does not create it, and the
    // namespaced objects need it), with its PodSecurity label.
    let namespace: Vec<Value> = docs.iter().filter(|d| kind_of(d) == "Namespace").cloned().collect();
    std::fs::write(dir.join("namespace.yaml"), to_yaml(&namespace)?)?;
    let ns = dir.join("namespace.yaml");
    stdout_of(&mut kubectl_at(&kubectl, kubeconfig, &["apply", "-f", ns.to_str().context("path")?]))?;

    // Everything with server-side dry-run, each overlay: schema, defaulting and admission run,
    // nothing is stored. A pod template that breaks the namespace's `restricted` PodSecurity
    // level is a warning on the Deployment.
    for overlay in &overlays {
        let rendered = render(&kubectl, overlay, &[])?;
        let all = dir.join(format!("{}.yaml", overlay.replace('/', "-")));
        std::fs::write(&all, to_yaml(&rendered)?)?;
        let out = run(&mut kubectl_at(
            &kubectl,
            kubeconfig,
            &["apply", "--dry-run=server", "-f", all.to_str().context("path")?],
        ))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(
            out.status.success(),
            "{overlay}: kubectl apply --dry-run=server failed:\n{stdout}\n{stderr}\n{}",
            plane.log_tail()
        );
        ensure!(!stderr.contains("PodSecurity"), "{overlay}: PodSecurity warnings:\n{stderr}");
        ensure!(
            stdout.contains("deployment.apps/warden created (server dry run)")
                || stdout.contains("deployment.apps/warden configured (server dry run)")
                || stdout.contains("deployment.apps/warden unchanged (server dry run)"),
            "{overlay}: {stdout}"
        );
    }

    // RBAC for real, then ask the server what the service account may do.
    let rbac: Vec<Value> = docs
        .iter()
        .filter(|d| {
            matches!(kind_of(d), "ServiceAccount" | "ClusterRole" | "ClusterRoleBinding" | "Role" | "RoleBinding")
        })
        .cloned()
        .collect();
    let rbac_file = dir.join("rbac.yaml");
    std::fs::write(&rbac_file, to_yaml(&rbac)?)?;
    stdout_of(&mut kubectl_at(&kubectl, kubeconfig, &["apply", "-f", rbac_file.to_str().context("path")?]))?;
    // The authorizer sees new bindings shortly after they are written.
    let (verb, resource, _) = CALLS[0];
    can_i_becomes(&kubectl, kubeconfig, verb, resource, true)?;
    let mut wrong = Vec::new();
    for (verb, resource, why) in CALLS {
        // In a namespace Warden has never seen: the grants are cluster-wide.
        if !can_i(&kubectl, kubeconfig, verb, resource, "shop")? {
            wrong.push(format!("cannot {verb} {resource} ({why})"));
        }
    }
    for (verb, resource) in REFUSED {
        if can_i(&kubectl, kubeconfig, verb, resource, "shop")? {
            wrong.push(format!("can {verb} {resource}"));
        }
    }
    for (verb, resource, why) in LEASE_CALLS {
        if !can_i(&kubectl, kubeconfig, verb, resource, LEASE_NAMESPACE)? {
            wrong.push(format!("cannot {verb} {resource} in {LEASE_NAMESPACE} ({why})"));
        }
    }
    if can_i(&kubectl, kubeconfig, "delete", "leases.coordination.k8s.io", LEASE_NAMESPACE)? {
        wrong.push(format!("can delete leases in {LEASE_NAMESPACE}"));
    }
    ensure!(wrong.is_empty(), "RBAC of the warden service account:\n{}", wrong.join("\n"));

    // The opt-in component: `get` on Secrets, nothing more.
    let with_secrets = render(&kubectl, "overlays/single", &["components/read-secrets"])?;
    let reader: Vec<Value> =
        with_secrets.iter().filter(|d| d["metadata"]["name"] == "warden-read-secrets").cloned().collect();
    ensure!(reader.len() == 2, "read-secrets renders {} objects", reader.len());
    let reader_file = dir.join("read-secrets.yaml");
    std::fs::write(&reader_file, to_yaml(&reader)?)?;
    let reader_path = reader_file.to_str().context("path")?;
    stdout_of(&mut kubectl_at(&kubectl, kubeconfig, &["apply", "-f", reader_path]))?;
    let get = can_i_becomes(&kubectl, kubeconfig, "get", "secrets", true)?;
    let list = can_i(&kubectl, kubeconfig, "list", "secrets", "shop")?;
    stdout_of(&mut kubectl_at(&kubectl, kubeconfig, &["delete", "-f", reader_path]))?;
    ensure!(get, "with components/read-secrets the account still cannot get secrets");
    ensure!(!list, "components/read-secrets lets the account list secrets");
    Ok(())
}
