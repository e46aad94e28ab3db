//! Where the Lease is read and written: the API server ([`KubeLeases`]) or, in tests, a
//! store that can stall or fail on demand. The elector needs only three calls, and each
//! write must carry the `resourceVersion` it read (a stale one is a 409 conflict): that
//! is what makes a race between two replicas have exactly one winner.

use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::PostParams;
use kube::Api;

use super::LeaseConfig;
use crate::kubernetes::KubeClient;
use crate::Result;

/// Reads and writes the one Lease of an election.
#[async_trait]
pub trait LeaseBackend: Send + Sync {
    /// The Lease, or `None` when it does not exist.
    async fn get(&self) -> Result<Option<Lease>>;
    /// Creates the Lease; a 409 ([`crate::Error::is_conflict`]) when it exists.
    async fn create(&self, lease: &Lease) -> Result<Lease>;
    /// Replaces the Lease; a 409 when its `metadata.resourceVersion` is not the stored one.
    async fn replace(&self, lease: &Lease) -> Result<Lease>;
}

/// The Lease on the API server, through Warden's [`KubeClient`]. Needs `get`, `create`
/// and `update` on `leases.coordination.k8s.io` in the lease's namespace.
#[derive(Debug, Clone)]
pub struct KubeLeases {
    client: KubeClient,
    namespace: String,
    name: String,
}

impl KubeLeases {
    /// The Lease `config` names. Each call is limited to the renew deadline: a call that
    /// takes longer is useless to the election.
    pub fn new(client: &KubeClient, config: &LeaseConfig) -> Self {
        let timeout = config.renew_deadline.max(Duration::from_secs(1));
        Self {
            client: client.clone().with_request_timeout(timeout),
            namespace: config.namespace.clone(),
            name: config.name.clone(),
        }
    }

    fn api(&self) -> Api<Lease> {
        Api::namespaced(self.client.kube_client(), &self.namespace)
    }

    fn what(&self) -> String {
        format!("lease {}/{}", self.namespace, self.name)
    }
}

#[async_trait]
impl LeaseBackend for KubeLeases {
    async fn get(&self) -> Result<Option<Lease>> {
        let api = self.api();
        self.client.call_api(&self.what(), api.get_opt(&self.name)).await
    }

    async fn create(&self, lease: &Lease) -> Result<Lease> {
        let api = self.api();
        self.client.call_api(&self.what(), api.create(&PostParams::default(), lease)).await
    }

    async fn replace(&self, lease: &Lease) -> Result<Lease> {
        let api = self.api();
        self.client.call_api(&self.what(), api.replace(&self.name, &PostParams::default(), lease)).await
    }
}
