//! The Kubernetes client, and reading and changing the replica count of Deployments.
//!
//! [`KubeClient`] is the one handle Warden has on a cluster. This module holds the
//! connection set-up, the shared plumbing (name checks, the per-call timeout, the
//! mapping of kube errors into [`Error`]) and scaling, the most common write action
//! of Warden's playbooks. Scaling goes through the `scale` subresource
//! (`apps/v1 .../deployments/{name}/scale`), which needs narrower RBAC than patching
//! the whole Deployment, supports server-side dry run, and is idempotent. The other
//! remediation actions (rollback, restart, pod deletion, cordon, Jobs, Deployment
//! patches) are in [`crate::kube_actions`]. API failures keep their HTTP status and
//! `Status` reason so callers can tell "not found" from "conflict" from "retry later".

use std::error::Error as StdError;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v1::Scale;
use kube::api::{Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Api;
use serde::Serialize;

use crate::http::error_chain;
use crate::{Error, Result};

/// Default limit for one API call, response included.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How to find the API server and credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KubeConnect {
    /// The service account of the pod Warden runs in.
    InCluster,
    /// A kubeconfig file: `path` or the default (`$KUBECONFIG`, `~/.kube/config`),
    /// with `context` or the file's current context.
    Kubeconfig { path: Option<PathBuf>, context: Option<String> },
}

/// A cheap-to-clone Kubernetes client for the operations Warden needs.
#[derive(Clone)]
pub struct KubeClient {
    client: kube::Client,
    target: String,
    request_timeout: Duration,
    waits: crate::kube_actions::ActionWaits,
}

impl fmt::Debug for KubeClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubeClient")
            .field("target", &self.target)
            .field("request_timeout", &self.request_timeout)
            .field("waits", &self.waits)
            .finish()
    }
}

/// The scale subresource of a Deployment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScaleState {
    pub namespace: String,
    pub name: String,
    /// Desired replicas (`spec.replicas`; absent means 0).
    pub spec_replicas: i32,
    /// Observed replicas (`status.replicas`).
    pub status_replicas: i32,
    pub resource_version: Option<String>,
}

/// What a scale request did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScaleOutcome {
    /// `spec.replicas` of the Scale returned by the API server.
    pub replicas: i32,
    /// Whether this was a server-side dry run (nothing was persisted).
    pub dry_run: bool,
    /// The Scale object returned by the API server.
    pub response: serde_json::Value,
}

impl KubeClient {
    /// Loads the configuration and builds a client. Fails with [`Error::Config`]
    /// when the in-cluster environment or the kubeconfig (file, context) is unusable.
    pub async fn connect(how: &KubeConnect) -> Result<Self> {
        crate::install_crypto_provider();
        let config = match how {
            KubeConnect::InCluster => kube::Config::incluster()
                .map_err(|e| Error::Config(format!("cannot load in-cluster Kubernetes config: {}", error_chain(&e))))?,
            KubeConnect::Kubeconfig { path, context } => {
                let options = KubeConfigOptions { context: context.clone(), ..KubeConfigOptions::default() };
                let context_note = context.as_deref().map(|c| format!(" (context {c:?})")).unwrap_or_default();
                match path {
                    Some(path) => {
                        let kubeconfig = Kubeconfig::read_from(path).map_err(|e| {
                            Error::Config(format!("cannot read kubeconfig {}: {}", path.display(), error_chain(&e)))
                        })?;
                        kube::Config::from_custom_kubeconfig(kubeconfig, &options).await.map_err(|e| {
                            Error::Config(format!(
                                "cannot use kubeconfig {}{context_note}: {}",
                                path.display(),
                                error_chain(&e)
                            ))
                        })?
                    }
                    None => kube::Config::from_kubeconfig(&options).await.map_err(|e| {
                        Error::Config(format!("cannot use the default kubeconfig{context_note}: {}", error_chain(&e)))
                    })?,
                }
            }
        };
        let target = config.cluster_url.to_string();
        let client = kube::Client::try_from(config)
            .map_err(|e| Error::Config(format!("cannot build Kubernetes client for {target}: {}", error_chain(&e))))?;
        Ok(Self {
            client,
            target,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            waits: crate::kube_actions::ActionWaits::default(),
        })
    }

    /// Wraps an existing client (tests, or a caller with its own configuration).
    pub fn from_client(client: kube::Client) -> Self {
        Self {
            client,
            target: "Kubernetes API server".to_string(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            waits: crate::kube_actions::ActionWaits::default(),
        }
    }

    /// Sets the limit for one API call (default [`DEFAULT_REQUEST_TIMEOUT`]).
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets how long actions wait for the cluster's controllers and how often a rollback
    /// retries after conflicts (default [`crate::kube_actions::ActionWaits::default`]).
    pub fn with_action_waits(mut self, waits: crate::kube_actions::ActionWaits) -> Self {
        self.waits = waits;
        self
    }

    /// The waits set with [`KubeClient::with_action_waits`].
    pub fn action_waits(&self) -> crate::kube_actions::ActionWaits {
        self.waits
    }

    /// Reads the scale subresource of a Deployment.
    pub async fn get_deployment_scale(&self, namespace: &str, name: &str) -> Result<ScaleState> {
        check_names(namespace, name)?;
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), namespace);
        let scale = self.call(namespace, name, api.get_scale(name)).await?;
        Ok(ScaleState {
            namespace: scale.metadata.namespace.clone().unwrap_or_else(|| namespace.to_string()),
            name: scale.metadata.name.clone().unwrap_or_else(|| name.to_string()),
            spec_replicas: spec_replicas(&scale),
            status_replicas: scale.status.as_ref().map_or(0, |s| s.replicas),
            resource_version: scale.metadata.resource_version.clone(),
        })
    }

    /// Sets `spec.replicas` through the scale subresource with a merge patch.
    /// With `dry_run` the API server validates the change without persisting it
    /// (`?dryRun=All`). Setting the current value again is not an error.
    pub async fn set_deployment_replicas(
        &self,
        namespace: &str,
        name: &str,
        replicas: i32,
        dry_run: bool,
    ) -> Result<ScaleOutcome> {
        check_names(namespace, name)?;
        if replicas < 0 {
            return Err(Error::InvalidInput(format!(
                "replica count for deployment {namespace}/{name} must not be negative, got {replicas}"
            )));
        }
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), namespace);
        let params = PatchParams { dry_run, ..PatchParams::default() };
        let patch = Patch::Merge(serde_json::json!({ "spec": { "replicas": replicas } }));
        tracing::info!(namespace, name, replicas, dry_run, "scaling deployment");
        let scale = self.call(namespace, name, api.patch_scale(name, &params, &patch)).await?;
        let response = serde_json::to_value(&scale).map_err(|e| Error::Decode {
            url: self.describe(namespace, name),
            message: format!("cannot re-encode Scale object: {e}"),
        })?;
        Ok(ScaleOutcome { replicas: spec_replicas(&scale), dry_run, response })
    }

    async fn call<F>(&self, namespace: &str, name: &str, fut: F) -> Result<Scale>
    where
        F: std::future::Future<Output = kube::Result<Scale>>,
    {
        self.call_api(&format!("deployment {namespace}/{name} scale"), fut).await
    }

    fn describe(&self, namespace: &str, name: &str) -> String {
        self.describe_object(&format!("deployment {namespace}/{name} scale"))
    }

    /// The underlying kube client, for the other action modules of this crate.
    pub(crate) fn kube_client(&self) -> kube::Client {
        self.client.clone()
    }

    /// Names the API server and `what` (e.g. `pod shop/web-1`) for error messages.
    pub(crate) fn describe_object(&self, what: &str) -> String {
        format!("{} ({what})", self.target)
    }

    /// Runs one API call under the request timeout and maps its error; `what`
    /// names the object for the error message (e.g. `deployment shop/web`).
    pub(crate) async fn call_api<T, F>(&self, what: &str, fut: F) -> Result<T>
    where
        F: std::future::Future<Output = kube::Result<T>>,
    {
        match tokio::time::timeout(self.request_timeout, fut).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(map_kube_error(err, &self.describe_object(what))),
            Err(_) => Err(Error::Timeout { url: self.describe_object(what), after: Some(self.request_timeout) }),
        }
    }
}

fn spec_replicas(scale: &Scale) -> i32 {
    scale.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

/// Rejects names that would produce a malformed request path.
fn check_names(namespace: &str, name: &str) -> Result<()> {
    check_name("namespace", namespace)?;
    check_name("deployment name", name)
}

/// Rejects one name (`what` says which, for the message) that would produce a
/// malformed request path: empty, `.`/`..`, or containing `/`, `?`, `#` or `%`.
pub(crate) fn check_name(what: &str, value: &str) -> Result<()> {
    if value.is_empty() {
        return Err(Error::InvalidInput(format!("{what} is empty")));
    }
    if value.contains(['/', '?', '#', '%']) || value == "." || value == ".." {
        return Err(Error::InvalidInput(format!("invalid {what} {value:?}")));
    }
    Ok(())
}

/// Maps a kube error; `target` names the API server and object.
pub(crate) fn map_kube_error(err: kube::Error, target: &str) -> Error {
    match err {
        kube::Error::Api(status) => {
            let status = *status;
            Error::Kube {
                status: status.code,
                reason: status.reason,
                message: if status.message.is_empty() {
                    format!("request for {target} failed")
                } else {
                    status.message
                },
            }
        }
        kube::Error::HyperError(e) => transport_error(&e, target),
        kube::Error::Service(e) => transport_error(e.as_ref(), target),
        kube::Error::SerdeError(e) => Error::Decode { url: target.to_string(), message: e.to_string() },
        kube::Error::FromUtf8(e) => Error::Decode { url: target.to_string(), message: e.to_string() },
        kube::Error::BuildRequest(e) => Error::InvalidInput(format!("cannot build request for {target}: {e}")),
        other => Error::KubeClient(format!("{target}: {}", error_chain(&other))),
    }
}

fn transport_error(err: &(dyn StdError + 'static), target: &str) -> Error {
    let message = error_chain(err);
    let mut source: Option<&(dyn StdError + 'static)> = Some(err);
    let mut timed_out = false;
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            timed_out |= io.kind() == std::io::ErrorKind::TimedOut;
        }
        source = e.source();
    }
    let lower = message.to_ascii_lowercase();
    if timed_out || lower.contains("timed out") || lower.contains("deadline has elapsed") {
        Error::Timeout { url: target.to_string(), after: None }
    } else {
        Error::Connect { url: target.to_string(), message }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_status_maps_to_kube_error() {
        let status = kube::core::Status::failure("deployments.apps \"web\" not found", "NotFound").with_code(404);
        let err = map_kube_error(kube::Error::Api(status.boxed()), "t");
        assert!(err.is_not_found());
        assert!(!err.is_retryable());
        assert_eq!(err.to_string(), "Kubernetes API error 404 NotFound: deployments.apps \"web\" not found");
    }

    #[test]
    fn io_errors_map_to_connect_or_timeout() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let err = transport_error(&refused, "api");
        assert!(matches!(err, Error::Connect { .. }));
        assert!(err.is_retryable());
        let slow = std::io::Error::new(std::io::ErrorKind::TimedOut, "slow");
        assert!(matches!(transport_error(&slow, "api"), Error::Timeout { .. }));
    }

    #[test]
    fn names_are_checked() {
        assert!(check_names("default", "web").is_ok());
        assert!(check_names("", "web").is_err());
        assert!(check_names("default", "a/b").is_err());
        assert!(check_names("default", "..").is_err());
        assert!(check_names("default", "a?b").is_err());
        assert!(check_name("node name", "node-1").is_ok());
        assert!(check_name("node name", "").is_err());
    }
}
