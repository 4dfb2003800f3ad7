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
    /// The controlling owner (`ownerReferences`): `(kind, name)`.
    pub owner: Option<(String, String)>,
    /// The object's `status`, when a dump carries one.
    pub status: Option<crate::common::ObservedStatus>,
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
    Service(Box<Object<k8s::ServiceSpec>>),
    ServiceAccount(Object<()>),
    Deployment(Box<Object<k8s::DeploymentSpec>>),
    StatefulSet(Box<Object<k8s::StatefulSetSpec>>),
    Pod(Box<Object<k8s::PodSpec>>),
    /// ConfigMaps other than the mesh config (e.g. an nginx.conf for a pod).
    ConfigMap(Box<Object<BTreeMap<String, String>>>),
    Secret(Box<Object<SecretData>>),
    /// ConfigMap `istio` in `istio-system`, key `mesh`, parsed.
    MeshConfig(Box<Object<mesh::MeshConfig>>),
    VirtualService(Box<Object<virtual_service::VirtualServiceSpec>>),
    DestinationRule(Box<Object<destination_rule::DestinationRuleSpec>>),
    Gateway(Box<Object<gateway::GatewaySpec>>),
    ServiceEntry(Box<Object<service_entry::ServiceEntrySpec>>),
    EnvoyFilter(Box<Object<envoy_filter::EnvoyFilterSpec>>),
    Sidecar(Box<Object<sidecar::SidecarSpec>>),
    PeerAuthentication(Box<Object<peer_auth::PeerAuthenticationSpec>>),
    EndpointSlice(Box<Object<k8s::EndpointSliceData>>),
}

/// Runs `$body` with `$o` bound to the resource's `Object`, whatever its kind.
macro_rules! with_object {
    ($r:expr, $o:ident => $body:expr) => {
        match $r {
            Resource::Namespace($o) | Resource::ServiceAccount($o) => $body,
            Resource::Service($o) => $body,
            Resource::Deployment($o) => $body,
            Resource::StatefulSet($o) => $body,
            Resource::Pod($o) => $body,
            Resource::ConfigMap($o) => $body,
            Resource::Secret($o) => $body,
            Resource::MeshConfig($o) => $body,
            Resource::VirtualService($o) => $body,
            Resource::DestinationRule($o) => $body,
            Resource::Gateway($o) => $body,
            Resource::ServiceEntry($o) => $body,
            Resource::EnvoyFilter($o) => $body,
            Resource::Sidecar($o) => $body,
            Resource::PeerAuthentication($o) => $body,
            Resource::EndpointSlice($o) => $body,
        }
    };
}

impl Resource {
    pub fn meta(&self) -> &Meta {
        with_object!(self, o => &o.meta)
    }

    pub fn meta_mut(&mut self) -> &mut Meta {
        with_object!(self, o => &mut o.meta)
    }

    /// Whether the kind lives in a namespace (everything but Namespace).
    pub fn is_namespaced(&self) -> bool {
        !matches!(self, Resource::Namespace(_))
    }
}
