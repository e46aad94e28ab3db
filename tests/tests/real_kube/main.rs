//! The `real_kube` target: Warden against a real kube-apiserver and
//! kube-controller-manager (v1.32, `../shared/kube` beside the project), through the
//! `warden` service account with `deploy/rbac.yaml` applied: the playbook actions
//! ([`actions`]), leader election with fencing on a Lease ([`leader`]), and two `warden run`
//! replicas on a shared PostgreSQL store failing over mid-run ([`failover`]).
//!
//! Every test needs the real control plane: without `../shared/kube` the target prints
//! one line saying so and passes. One plane serves all tests of the target (started
//! once, ~10-30 s); each test works in its own namespace (actions) or on its own Lease
//! in namespace `warden` (leader election).

mod actions;
mod failover;
mod leader;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::PostParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Api;
use serde_json::{json, Value};
use warden_connectors::kube_actions::ActionWaits;
use warden_connectors::kubernetes::{KubeClient, KubeConnect};
use warden_tests::realkube::{self, RealKube, ADMIN_CONTEXT, WARDEN_CONTEXT};
use warden_tests::wait_until;

/// One test's view of the plane: an admin client for set-up and Warden's client (the
/// `warden` service account) for the actions, in namespace `ns`.
pub(crate) struct Real {
    pub(crate) plane: &'static RealKube,
    pub(crate) admin: kube::Client,
    pub(crate) warden: KubeClient,
    pub(crate) ns: String,
}

impl Real {
    pub(crate) fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.admin.clone(), &self.ns)
    }
}

pub(crate) async fn admin_client(plane: &RealKube) -> Result<kube::Client> {
    let kubeconfig = Kubeconfig::read_from(plane.kubeconfig())?;
    let options = KubeConfigOptions { context: Some(ADMIN_CONTEXT.to_string()), ..KubeConfigOptions::default() };
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options).await?;
    Ok(kube::Client::try_from(config)?)
}

/// Creates `object` unless it exists.
pub(crate) async fn ensure_created<K>(api: &Api<K>, object: &K) -> Result<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    match api.create(&PostParams::default(), object).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Applies the project's `deploy/rbac.yaml` (namespace `warden` first).
async fn apply_rbac(admin: &kube::Client) -> Result<()> {
    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": "warden"}}))?;
    ensure_created(&Api::<Namespace>::all(admin.clone()), &namespace).await?;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/rbac.yaml");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    for document in serde_yaml::Deserializer::from_str(&text) {
        let value: Value = serde::Deserialize::deserialize(document)?;
        match value.get("kind").and_then(Value::as_str) {
            Some("ServiceAccount") => {
                let sa: ServiceAccount = serde_json::from_value(value)?;
                ensure_created(&Api::<ServiceAccount>::namespaced(admin.clone(), "warden"), &sa).await?;
            }
            Some("ClusterRole") => {
                let role: ClusterRole = serde_json::from_value(value)?;
                ensure_created(&Api::<ClusterRole>::all(admin.clone()), &role).await?;
            }
            Some("ClusterRoleBinding") => {
                let binding: ClusterRoleBinding = serde_json::from_value(value)?;
                ensure_created(&Api::<ClusterRoleBinding>::all(admin.clone()), &binding).await?;
            }
            Some("Role") => {
                let role: Role = serde_json::from_value(value)?;
                ensure_created(&Api::<Role>::namespaced(admin.clone(), "warden"), &role).await?;
            }
            Some("RoleBinding") => {
                let binding: RoleBinding = serde_json::from_value(value)?;
                ensure_created(&Api::<RoleBinding>::namespaced(admin.clone(), "warden"), &binding).await?;
            }
            None => {}
            Some(other) => bail!("deploy/rbac.yaml has a {other}, which this test does not apply"),
        }
    }
    Ok(())
}

static NAMESPACES: AtomicU32 = AtomicU32::new(0);

/// The plane with RBAC applied, a fresh namespace and both clients; `None` without
/// `../shared/kube`.
pub(crate) async fn real(test: &str) -> Result<Option<Real>> {
    let Some(plane) = realkube::shared_plane(test)? else {
        return Ok(None);
    };
    warden_connectors::install_crypto_provider();
    let admin = admin_client(plane).await?;
    apply_rbac(&admin).await?;
    let ns = format!("t{}-{}", std::process::id(), NAMESPACES.fetch_add(1, Ordering::SeqCst));
    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}}))?;
    ensure_created(&Api::<Namespace>::all(admin.clone()), &namespace).await?;
    let warden = KubeClient::connect(&KubeConnect::Kubeconfig {
        path: Some(plane.kubeconfig().to_path_buf()),
        context: Some(WARDEN_CONTEXT.to_string()),
    })
    .await?
    .with_action_waits(ActionWaits { pod_gone: Duration::from_secs(2), ..ActionWaits::default() });
    // Pods can be created once the controller manager made the namespace's `default`
    // service account (admission checks it).
    let accounts = Api::<ServiceAccount>::namespaced(admin.clone(), &ns);
    wait_until(Duration::from_secs(90), "the namespace's default service account", async || {
        Ok(accounts.get_opt("default").await?.map(|_| ()))
    })
    .await
    .with_context(|| plane.log_tail())?;
    // RBAC takes effect once the API server's caches have the new bindings.
    wait_until(Duration::from_secs(20), "Warden's RBAC to apply", async || {
        Ok(warden.list_pods(&ns, None).await.ok().map(|_| ()))
    })
    .await?;
    Ok(Some(Real { plane, admin, warden, ns }))
}
