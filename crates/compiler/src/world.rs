//! The resolved world: namespaces, pods with IPs, Services and
//! ServiceEntries with endpoints, the mesh settings, and the Istio config,
//! built deterministically from the loaded resources. This is what istiod's
//! registries and push context hold; everything the compiler needs and no I/O.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use meshsim_model::common::{labels_match, IntOrString};
use meshsim_model::destination_rule::DestinationRuleSpec;
use meshsim_model::envoy_filter::EnvoyFilterSpec;
use meshsim_model::gateway::GatewaySpec;
use meshsim_model::k8s::{L4Protocol, PodSpec};
use meshsim_model::mesh::{AccessLogEncoding, MeshConfig, OutboundMode, PathNormalization};
use meshsim_model::peer_auth::PeerAuthenticationSpec;
use meshsim_model::service_entry::{SeLocation, SeResolution};
use meshsim_model::sidecar::SidecarSpec;
use meshsim_model::virtual_service::VirtualServiceSpec;
use meshsim_model::{Diagnostic, Meta, Object, Origin, Resource, SecretData};

use crate::protocol::Protocol;
use crate::version::IstioVersion;

/// Annotation pinning a pod's IP (on a Pod), or a comma-separated list of
/// IPs by ordinal (on a Deployment/StatefulSet or its pod template).
pub const POD_IPS_ANNOTATION: &str = "meshsim.io/pod-ips";
/// Annotation on a pod template overriding which built-in app runs.
pub const APP_ANNOTATION: &str = "meshsim.io/app";

/// Settings not in the YAML: what istiod and the proxies are.
#[derive(Debug, Clone)]
pub struct Settings {
    pub istio_version: IstioVersion,
    /// Helm's `compatibilityVersion`: istiod keeps the defaults of that
    /// older release (see [`crate::features`]).
    pub compatibility_version: Option<IstioVersion>,
    /// Namespaces not declared in the input are treated as labelled
    /// `istio-injection=enabled` (a mesh is what the user is simulating).
    pub inject_undeclared_namespaces: bool,
    pub cluster_domain: String,
    /// The namespace of a proxy named without one (`istioctl -n`).
    pub default_namespace: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            istio_version: IstioVersion::DEFAULT,
            compatibility_version: None,
            inject_undeclared_namespaces: true,
            cluster_domain: "cluster.local".into(),
            default_namespace: "default".into(),
        }
    }
}

/// Mesh-wide settings from the mesh config, with Istio's defaults.
#[derive(Debug, Clone)]
pub struct MeshSettings {
    pub outbound: OutboundMode,
    pub auto_mtls: bool,
    pub access_log_file: String,
    pub access_log_encoding: AccessLogEncoding,
    pub access_log_format: String,
    pub root_namespace: String,
    pub trust_domain: String,
    pub connect_timeout_ms: u64,
    /// `defaultConfig.proxyMetadata.HTTP10 == "1"`.
    pub http10: bool,
    /// `defaultConfig.proxyMetadata`, every proxy's environment.
    pub proxy_metadata: BTreeMap<String, String>,
    /// `pathNormalization.normalization` (`DEFAULT` is `BASE`).
    pub path_normalization: PathNormalization,
    /// `defaultConfig.gatewayTopology.numTrustedProxies`.
    pub num_trusted_proxies: u32,
    /// `defaultServiceExportTo`, `defaultVirtualServiceExportTo`,
    /// `defaultDestinationRuleExportTo` (Istio's default: `*`).
    pub default_service_export_to: Vec<String>,
    pub default_virtual_service_export_to: Vec<String>,
    pub default_destination_rule_export_to: Vec<String>,
}

impl MeshSettings {
    fn from_config(m: Option<&MeshConfig>, version: IstioVersion) -> Self {
        let m = m.cloned().unwrap_or_default();
        Self {
            outbound: m
                .outbound_traffic_policy
                .map(|p| p.mode)
                .unwrap_or_default(),
            auto_mtls: m.enable_auto_mtls.unwrap_or(version.has_auto_mtls()),
            // Istio's demo profile (the one its tasks use) logs to stdout;
            // a mesh config that sets `accessLogFile` (even to "") wins.
            access_log_file: m.access_log_file.unwrap_or_else(|| "/dev/stdout".into()),
            access_log_encoding: m.access_log_encoding.unwrap_or_default(),
            access_log_format: m.access_log_format.unwrap_or_default(),
            root_namespace: m.root_namespace.unwrap_or_else(|| "istio-system".into()),
            trust_domain: m.trust_domain.unwrap_or_else(|| "cluster.local".into()),
            connect_timeout_ms: m.connect_timeout.map(|d| d.millis).unwrap_or(10_000),
            proxy_metadata: m
                .default_config
                .as_ref()
                .map(|d| d.proxy_metadata.clone())
                .unwrap_or_default(),
            http10: m
                .default_config
                .as_ref()
                .and_then(|d| d.proxy_metadata.get("HTTP10"))
                .is_some_and(|v| v == "1"),
            path_normalization: m
                .path_normalization
                .and_then(|p| p.normalization)
                .unwrap_or_default(),
            num_trusted_proxies: m
                .default_config
                .and_then(|d| d.gateway_topology)
                .and_then(|g| g.num_trusted_proxies)
                .unwrap_or(0),
            default_service_export_to: m.default_service_export_to.unwrap_or_else(everywhere),
            default_virtual_service_export_to: m
                .default_virtual_service_export_to
                .unwrap_or_else(everywhere),
            default_destination_rule_export_to: m
                .default_destination_rule_export_to
                .unwrap_or_else(everywhere),
        }
    }
}

fn everywhere() -> Vec<String> {
    vec!["*".into()]
}

/// Whether config exported with `export_to` (or `default` when empty) from
/// namespace `owner` is visible in namespace `viewer`: `*` everywhere, `.`
/// its own namespace, `~` nowhere, else the namespaces named
/// (model/push_context.go visibility).
pub fn exported_to(export_to: &[String], default: &[String], owner: &str, viewer: &str) -> bool {
    let list = if export_to.is_empty() {
        default
    } else {
        export_to
    };
    list.iter().any(|e| match e.as_str() {
        "*" => true,
        "." => owner == viewer,
        "~" => false,
        ns => ns == viewer,
    })
}

#[derive(Debug, Clone)]
pub struct Namespace {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub declared: bool,
}

impl Namespace {
    fn injection_enabled(&self, settings: &Settings) -> bool {
        match self.labels.get("istio-injection").map(String::as_str) {
            Some("enabled") => true,
            Some(_) => false,
            None => {
                self.labels.contains_key("istio.io/rev")
                    || (!self.declared && settings.inject_undeclared_namespaces)
            }
        }
    }
}

/// What a pod is in the simulated mesh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodRole {
    Workload,
    /// An Istio gateway (ingress/egress): the pod *is* a proxy.
    Gateway,
}

/// The endpoint label auto mTLS reads (`model.TLSModeLabelName`).
pub const TLS_MODE_LABEL: &str = "security.istio.io/tlsMode";

#[derive(Debug, Clone)]
pub struct Pod {
    pub name: String,
    pub namespace: String,
    pub ip: Ipv4Addr,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub service_account: String,
    pub role: PodRole,
    /// Has an injected sidecar (always true for gateways: they are proxies).
    pub sidecar: bool,
    pub image: String,
    pub container_ports: Vec<(u16, Option<String>)>,
    /// ConfigMaps mounted as volumes (configure built-in apps, e.g. nginx).
    pub config_maps: Vec<String>,
    /// `kind/name` of the owner (Deployment, StatefulSet) or `Pod/name`.
    pub owner: String,
    /// Its `Ready` condition (from a dump; true otherwise): a pod not
    /// ready is no Service endpoint.
    pub ready: bool,
    pub origin: Origin,
}

impl Pod {
    /// `pod.namespace`, istioctl's proxy id.
    pub fn id(&self) -> String {
        format!("{}.{}", self.name, self.namespace)
    }

    pub fn identity(&self, trust_domain: &str) -> String {
        format!(
            "spiffe://{trust_domain}/ns/{}/sa/{}",
            self.namespace, self.service_account
        )
    }

    /// Istio's DNS proxy in this pod's sidecar (`ISTIO_META_DNS_CAPTURE`
    /// in the mesh's or the pod's `proxy.istio.io/config` proxyMetadata),
    /// and whether it answers with auto-allocated addresses
    /// (`ISTIO_META_DNS_AUTO_ALLOCATE`, or istiod's
    /// `PILOT_ENABLE_IP_AUTOALLOCATE` from 1.25; service.go
    /// `nodeUsesAutoallocatedIPs`).
    pub fn dns_proxy(&self, mesh: &MeshSettings, f: &crate::features::PilotFeatures) -> DnsProxy {
        if !self.sidecar || self.role != PodRole::Workload {
            return DnsProxy::default();
        }
        let mut meta = mesh.proxy_metadata.clone();
        if let Some(a) = self
            .annotations
            .get(meshsim_model::mesh::PROXY_CONFIG_ANNOTATION)
            .and_then(|t| meshsim_model::mesh::parse_proxy_config_annotation(t).ok())
        {
            meta.extend(a);
        }
        let on = |k: &str| meta.get(k).is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let capture = on("ISTIO_META_DNS_CAPTURE");
        DnsProxy {
            capture,
            auto_allocate: capture
                && (on("ISTIO_META_DNS_AUTO_ALLOCATE") || f.enable_ip_autoallocate),
        }
    }

    pub fn is_proxy(&self) -> bool {
        self.sidecar || self.role == PodRole::Gateway
    }

    /// The pod's `security.istio.io/tlsMode` label as it runs: the
    /// sidecar injector sets it (to `istio` unless the pod says otherwise,
    /// injection-template.yaml); the gateway template and uninjected pods
    /// carry only what the user wrote. Auto mTLS follows it.
    pub fn tls_mode(&self) -> Option<&str> {
        match self.labels.get(TLS_MODE_LABEL) {
            Some(v) => Some(v.as_str()),
            None if self.sidecar && self.role == PodRole::Workload => Some("istio"),
            None => None,
        }
    }

    /// Resolves a Service `targetPort` against this pod's container ports.
    pub fn resolve_target_port(&self, target: &Option<IntOrString>, port: u16) -> Option<u16> {
        match target {
            None => Some(port),
            Some(IntOrString::Int(n)) => u16::try_from(*n).ok(),
            Some(IntOrString::Str(name)) => self
                .container_ports
                .iter()
                .find(|(_, n)| n.as_deref() == Some(name.as_str()))
                .map(|(p, _)| *p),
        }
    }
}

/// How a service's endpoints are found (istiod `model.Resolution`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// Kubernetes ClusterIP Services and STATIC ServiceEntries: EDS.
    ClientSideLb,
    /// ServiceEntry `DNS`.
    Dns,
    /// ServiceEntry `DNS_ROUND_ROBIN`.
    DnsRoundRobin,
    /// Headless Services and ServiceEntry `NONE`: original destination.
    Passthrough,
}

#[derive(Debug, Clone)]
pub struct ServicePort {
    pub name: String,
    pub port: u16,
    pub protocol: Protocol,
    /// Kubernetes `targetPort` / ServiceEntry `targetPort`.
    pub target_port: Option<IntOrString>,
}

/// One backend of a service: a pod or a ServiceEntry endpoint.
#[derive(Debug, Clone)]
pub struct ServiceEndpoint {
    /// Index into `World::pods`, for pod endpoints.
    pub pod: Option<usize>,
    /// IP or DNS name.
    pub address: String,
    /// Service port → endpoint port.
    pub ports: BTreeMap<u16, u16>,
    pub labels: BTreeMap<String, String>,
    /// The endpoint's `security.istio.io/tlsMode` is `istio`: auto mTLS
    /// sends it mutual TLS.
    pub sidecar: bool,
    pub service_account: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceSource {
    Kubernetes,
    ServiceEntry,
}

/// What a pod's sidecar DNS proxy does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DnsProxy {
    pub capture: bool,
    pub auto_allocate: bool,
}

#[derive(Debug, Clone)]
pub struct Service {
    /// FQDN (`reviews.default.svc.cluster.local`) or ServiceEntry host.
    pub hostname: String,
    pub name: String,
    pub namespace: String,
    /// ClusterIP(s) or ServiceEntry addresses; empty when none.
    pub addresses: Vec<String>,
    pub ports: Vec<ServicePort>,
    pub resolution: Resolution,
    pub mesh_external: bool,
    pub source: ServiceSource,
    pub endpoints: Vec<ServiceEndpoint>,
    pub selector: Option<BTreeMap<String, String>>,
    /// The address outside clients reach a gateway's Service at (its
    /// LoadBalancer ingress IP); `None` for Services of no gateway.
    pub external_ip: Option<Ipv4Addr>,
    /// The address istiod's IP auto-allocation gives a ServiceEntry host
    /// without `addresses` (240.240.0.0/16), which proxies with DNS capture
    /// answer for it.
    pub auto_address: Option<Ipv4Addr>,
    pub origin: Origin,
    /// `exportTo` (ServiceEntry) or the `networking.istio.io/exportTo`
    /// annotation (Service); empty: the mesh default.
    pub export_to: Vec<String>,
}

/// The external address of Istio's default ingress gateway, as in the
/// page's `curl 1.2.3.4 -H "Host: ..."`; other gateway Services get the
/// next free addresses unless `spec.loadBalancerIP` pins one.
pub const INGRESS_IP: Ipv4Addr = Ipv4Addr::new(1, 2, 3, 4);

impl Service {
    pub fn port(&self, port: u16) -> Option<&ServicePort> {
        self.ports.iter().find(|p| p.port == port)
    }

    pub fn is_headless(&self) -> bool {
        self.resolution == Resolution::Passthrough && self.source == ServiceSource::Kubernetes
    }

    /// Service accounts of the endpoints (for SAN verification).
    pub fn service_accounts(&self, trust_domain: &str) -> Vec<String> {
        let set: BTreeSet<String> = self
            .endpoints
            .iter()
            .filter_map(|e| e.service_account.as_ref())
            .map(|sa| {
                if sa.starts_with("spiffe://") {
                    sa.clone()
                } else {
                    format!("spiffe://{trust_domain}/ns/{}/sa/{sa}", self.namespace)
                }
            })
            .collect();
        set.into_iter().collect()
    }
}

/// Everything the compiler reads.
#[derive(Debug, Clone)]
pub struct World {
    pub settings: Settings,
    pub mesh: MeshSettings,
    /// istiod's behaviour switches for this version, profile and env.
    pub features: crate::features::PilotFeatures,
    pub namespaces: BTreeMap<String, Namespace>,
    pub pods: Vec<Pod>,
    pub services: Vec<Service>,
    pub virtual_services: Vec<Object<VirtualServiceSpec>>,
    pub destination_rules: Vec<Object<DestinationRuleSpec>>,
    pub gateways: Vec<Object<GatewaySpec>>,
    pub envoy_filters: Vec<Object<EnvoyFilterSpec>>,
    pub sidecars: Vec<Object<SidecarSpec>>,
    pub peer_authentications: Vec<Object<PeerAuthenticationSpec>>,
    pub secrets: Vec<Object<SecretData>>,
    pub config_maps: Vec<Object<BTreeMap<String, String>>>,
    /// The objects the world was built from, in creation order (a later
    /// object with the same kind, namespace and name replaced an earlier
    /// one): what a control plane rebuilds it from after a change.
    pub resources: Vec<Resource>,
    /// Hostname → index into `services` (first declared wins).
    service_index: std::collections::HashMap<String, usize>,
}
impl World {
    /// Pods that run a proxy (sidecars and gateways), in id order.
    pub fn proxies(&self) -> impl Iterator<Item = &Pod> {
        self.pods.iter().filter(|p| p.is_proxy())
    }

    pub fn pod(&self, name: &str, namespace: &str) -> Option<&Pod> {
        self.pods
            .iter()
            .find(|p| p.name == name && p.namespace == namespace)
    }

    /// The Kubernetes Service with this FQDN or ServiceEntry host.
    pub fn service(&self, hostname: &str) -> Option<&Service> {
        match self.service_index.get(hostname) {
            Some(i) => self.services.get(*i),
            None => self
                .service_index
                .get(&hostname.to_ascii_lowercase())
                .and_then(|i| self.services.get(*i)),
        }
    }

    /// Services selecting a pod (its inbound ports come from these).
    pub fn services_selecting<'a>(
        &'a self,
        pod: &'a Pod,
    ) -> impl Iterator<Item = &'a Service> + 'a {
        self.services.iter().filter(move |s| {
            s.source == ServiceSource::Kubernetes
                && s.endpoints
                    .iter()
                    .any(|e| e.pod.is_some_and(|i| std::ptr::eq(&self.pods[i], pod)))
        })
    }

    /// Turns a short host (`reviews`, `reviews.default`) into an FQDN the
    /// way istiod resolves hosts in config of namespace `ns`.
    pub fn resolve_host(&self, host: &str, ns: &str) -> String {
        resolve_short_name(host, ns, &self.settings.cluster_domain)
    }
}

/// istiod `host.Name` resolution for config hosts: a name without dots is
/// `NAME.<config namespace>.svc.<domain>`; `*` stays; others are kept.
pub fn resolve_short_name(host: &str, ns: &str, domain: &str) -> String {
    if host == "*" || host.contains('.') {
        host.to_string()
    } else {
        format!("{host}.{ns}.svc.{domain}")
    }
}

mod build;
mod install;
mod load;
pub use load::NamespaceFlag;
mod services;

#[cfg(test)]
mod tests;
