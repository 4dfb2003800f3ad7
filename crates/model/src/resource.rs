//! The resource kinds meshsim understands, as one enum, with the metadata
//! every object carries.

use std::collections::BTreeMap;

use crate::diag::Origin;
use crate::{
    destination_rule, envoy_filter, gateway, k8s, mesh, peer_auth, service_entry, sidecar,
    virtual_service,
};

/// Metadata common to every object, plus where it was declared.
#[derive(Debug, Clone, Default)]
pub struct Meta {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    /// As written; `None` means "the default namespace" for namespaced kinds.
    pub namespace: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub creation_timestamp: Option<String>,
    pub origin: Origin,
}

impl Meta {
    /// The namespace with Kubernetes' default applied.
    pub fn ns(&self) -> &str {
        self.namespace
            .as_deref()
            .filter(|n| !n.is_empty())
            .unwrap_or("default")
    }

    /// istiod's order for config of one kind: creation time, then
    /// namespace, then name.
    pub fn config_order_key(&self) -> (&str, &str, &str) {
        (
            self.creation_timestamp.as_deref().unwrap_or(""),
            self.ns(),
            &self.name,
        )
    }

    /// `kind/namespace/name`, how messages name an object.
    pub fn key(&self) -> String {
        format!("{}/{}/{}", self.kind, self.ns(), self.name)
    }
}

/// An object of kind `S` with its metadata.
#[derive(Debug, Clone)]
pub struct Object<S> {
    pub meta: Meta,
    pub spec: S,
}

/// Secret contents (base64 already decoded where given as `data`).
#[derive(Debug, Clone, Default)]
pub struct SecretData {
    pub type_: Option<String>,
    pub data: BTreeMap<String, Vec<u8>>,
}

/// Every kind of resource a load can produce. Built once per load and then
/// borrowed, so the variant size difference is harmless.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Resource {
    Namespace(Object<()>),
    Service(Object<k8s::ServiceSpec>),
    ServiceAccount(Object<()>),
    Deployment(Object<k8s::DeploymentSpec>),
    StatefulSet(Object<k8s::StatefulSetSpec>),
    Pod(Object<k8s::PodSpec>),
    /// ConfigMaps other than the mesh config (e.g. an nginx.conf for a pod).
    ConfigMap(Object<BTreeMap<String, String>>),
    Secret(Object<SecretData>),
    /// ConfigMap `istio` in `istio-system`, key `mesh`, parsed.
    MeshConfig(Object<mesh::MeshConfig>),
    VirtualService(Object<virtual_service::VirtualServiceSpec>),
    DestinationRule(Object<destination_rule::DestinationRuleSpec>),
    Gateway(Object<gateway::GatewaySpec>),
    ServiceEntry(Object<service_entry::ServiceEntrySpec>),
    EnvoyFilter(Object<envoy_filter::EnvoyFilterSpec>),
    Sidecar(Object<sidecar::SidecarSpec>),
    PeerAuthentication(Object<peer_auth::PeerAuthenticationSpec>),
}

impl Resource {
    pub fn meta(&self) -> &Meta {
        match self {
            Resource::Namespace(o) | Resource::ServiceAccount(o) => &o.meta,
            Resource::Service(o) => &o.meta,
            Resource::Deployment(o) => &o.meta,
            Resource::StatefulSet(o) => &o.meta,
            Resource::Pod(o) => &o.meta,
            Resource::ConfigMap(o) => &o.meta,
            Resource::Secret(o) => &o.meta,
            Resource::MeshConfig(o) => &o.meta,
            Resource::VirtualService(o) => &o.meta,
            Resource::DestinationRule(o) => &o.meta,
            Resource::Gateway(o) => &o.meta,
            Resource::ServiceEntry(o) => &o.meta,
            Resource::EnvoyFilter(o) => &o.meta,
            Resource::Sidecar(o) => &o.meta,
            Resource::PeerAuthentication(o) => &o.meta,
        }
    }
}
