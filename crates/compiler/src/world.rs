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
use meshsim_model::mesh::{AccessLogEncoding, MeshConfig, OutboundMode};
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
            http10: m
                .default_config
                .as_ref()
                .and_then(|d| d.proxy_metadata.get("HTTP10"))
                .is_some_and(|v| v == "1"),
        }
    }
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

    pub fn is_proxy(&self) -> bool {
        self.sidecar || self.role == PodRole::Gateway
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
    /// The endpoint runs a sidecar (auto mTLS target).
    pub sidecar: bool,
    pub service_account: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceSource {
    Kubernetes,
    ServiceEntry,
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
    pub origin: Origin,
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
    /// Hostname → index into `services` (first declared wins).
    service_index: std::collections::HashMap<String, usize>,
}

/// A pod as declared before IPs are assigned.
struct PodDecl {
    name: String,
    namespace: String,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    spec: PodSpec,
    pinned_ip: Option<String>,
    owner: String,
    origin: Origin,
}

impl World {
    /// Resolves the loaded resources into a world. Problems that are not
    /// parse errors (a pinned IP that is not an IP, two pods with one IP)
    /// come back as diagnostics.
    pub fn build(resources: &[Resource], settings: Settings) -> (World, Vec<Diagnostic>) {
        let mut diags = Vec::new();
        let deduped = dedupe(resources, &mut diags);
        let resources = deduped.as_slice();
        let mesh_cfg = resources.iter().rev().find_map(|r| match r {
            Resource::MeshConfig(m) => Some(&m.spec),
            _ => None,
        });
        let mesh = MeshSettings::from_config(mesh_cfg, settings.istio_version);

        let mut w = World {
            mesh,
            namespaces: BTreeMap::new(),
            pods: Vec::new(),
            services: Vec::new(),
            virtual_services: Vec::new(),
            destination_rules: Vec::new(),
            gateways: Vec::new(),
            envoy_filters: Vec::new(),
            sidecars: Vec::new(),
            peer_authentications: Vec::new(),
            secrets: Vec::new(),
            config_maps: Vec::new(),
            service_index: std::collections::HashMap::new(),
            settings,
        };
        let mut decls: Vec<PodDecl> = Vec::new();
        let mut k8s_services = Vec::new();
        let mut entries = Vec::new();
        for r in resources {
            match r {
                Resource::Namespace(o) => {
                    w.namespaces.insert(
                        o.meta.name.clone(),
                        Namespace {
                            name: o.meta.name.clone(),
                            labels: o.meta.labels.clone(),
                            declared: true,
                        },
                    );
                }
                Resource::Deployment(o) => {
                    let replicas = o.spec.replicas.unwrap_or(1);
                    expand_pods(
                        &mut decls,
                        &o.meta,
                        &o.spec.template,
                        replicas,
                        "Deployment",
                    );
                }
                Resource::StatefulSet(o) => {
                    let replicas = o.spec.replicas.unwrap_or(1);
                    let before = decls.len();
                    expand_pods(
                        &mut decls,
                        &o.meta,
                        &o.spec.template,
                        replicas,
                        "StatefulSet",
                    );
                    if let Some(svc) = &o.spec.service_name {
                        for d in &mut decls[before..] {
                            d.spec.hostname = Some(d.name.clone());
                            d.spec.subdomain = Some(svc.clone());
                        }
                    }
                }
                Resource::Pod(o) => decls.push(PodDecl {
                    name: o.meta.name.clone(),
                    namespace: o.meta.ns().to_string(),
                    labels: o.meta.labels.clone(),
                    annotations: o.meta.annotations.clone(),
                    spec: o.spec.clone(),
                    pinned_ip: o.meta.annotations.get(POD_IPS_ANNOTATION).cloned(),
                    owner: format!("Pod/{}", o.meta.name),
                    origin: o.meta.origin.clone(),
                }),
                Resource::Service(o) => k8s_services.push(o.clone()),
                Resource::ServiceEntry(o) => entries.push(o.clone()),
                Resource::VirtualService(o) => w.virtual_services.push(o.clone()),
                Resource::DestinationRule(o) => w.destination_rules.push(o.clone()),
                Resource::Gateway(o) => w.gateways.push(o.clone()),
                Resource::EnvoyFilter(o) => w.envoy_filters.push(o.clone()),
                Resource::Sidecar(o) => w.sidecars.push(o.clone()),
                Resource::PeerAuthentication(o) => w.peer_authentications.push(o.clone()),
                Resource::Secret(o) => w.secrets.push(o.clone()),
                Resource::ConfigMap(o) => w.config_maps.push(o.clone()),
                Resource::ServiceAccount(_) | Resource::MeshConfig(_) => {}
            }
        }

        let declares_gateway = decls.iter().any(is_gateway_decl);
        if !declares_gateway {
            add_default_ingress_gateway(&mut decls, &mut k8s_services);
        }

        // Namespaces referenced but not declared.
        let referenced: Vec<String> = decls
            .iter()
            .map(|d| d.namespace.clone())
            .chain(k8s_services.iter().map(|s| s.meta.ns().to_string()))
            .chain(entries.iter().map(|s| s.meta.ns().to_string()))
            .collect();
        for ns in referenced {
            w.namespaces.entry(ns.clone()).or_insert(Namespace {
                name: ns,
                labels: BTreeMap::new(),
                declared: false,
            });
        }

        w.assign_pods(decls, &mut diags);
        w.build_k8s_services(&k8s_services, &mut diags);
        w.build_service_entries(&entries);
        for (i, s) in w.services.iter().enumerate() {
            w.service_index
                .entry(s.hostname.to_ascii_lowercase())
                .or_insert(i);
        }
        (w, diags)
    }

    fn assign_pods(&mut self, mut decls: Vec<PodDecl>, diags: &mut Vec<Diagnostic>) {
        decls.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        let mut used: BTreeSet<Ipv4Addr> = BTreeSet::new();
        let mut pinned: Vec<Option<Ipv4Addr>> = Vec::with_capacity(decls.len());
        for d in &decls {
            let ip = d
                .pinned_ip
                .as_deref()
                .and_then(|s| match s.trim().parse::<Ipv4Addr>() {
                    Ok(ip) => Some(ip),
                    Err(_) => {
                        diags.push(Diagnostic::error(
                            &d.origin.file,
                            d.origin.line,
                            0,
                            format!("metadata.annotations[{POD_IPS_ANNOTATION}]"),
                            format!("{s:?} is not an IPv4 address (pod {})", d.name),
                        ));
                        None
                    }
                });
            if let Some(ip) = ip {
                if !used.insert(ip) {
                    diags.push(Diagnostic::error(
                        &d.origin.file,
                        d.origin.line,
                        0,
                        format!("metadata.annotations[{POD_IPS_ANNOTATION}]"),
                        format!("{ip} is already the IP of another pod"),
                    ));
                }
            }
            pinned.push(ip);
        }
        let mut next: u32 = u32::from(Ipv4Addr::new(10, 244, 0, 10));
        for (d, pin) in decls.into_iter().zip(pinned) {
            let ip = pin.unwrap_or_else(|| loop {
                let candidate = Ipv4Addr::from(next);
                next += 1;
                if used.insert(candidate) {
                    break candidate;
                }
            });
            let ns_inject = self
                .namespaces
                .get(&d.namespace)
                .is_some_and(|n| n.injection_enabled(&self.settings));
            let role = if is_gateway_decl(&d) {
                PodRole::Gateway
            } else {
                PodRole::Workload
            };
            let pod_inject = d
                .annotations
                .get("sidecar.istio.io/inject")
                .or_else(|| d.labels.get("sidecar.istio.io/inject"))
                .map(|v| v == "true");
            let sidecar = role == PodRole::Workload
                && !d.spec.host_network.unwrap_or(false)
                && pod_inject.unwrap_or(ns_inject);
            let sa = d
                .spec
                .service_account_name
                .clone()
                .or(d.spec.service_account.clone())
                .unwrap_or_else(|| "default".into());
            let image = d
                .spec
                .containers
                .first()
                .and_then(|c| c.image.clone())
                .unwrap_or_default();
            let container_ports = d
                .spec
                .containers
                .iter()
                .flat_map(|c| c.ports.iter().map(|p| (p.container_port, p.name.clone())))
                .collect();
            self.pods.push(Pod {
                name: d.name,
                namespace: d.namespace,
                ip,
                labels: d.labels,
                annotations: d.annotations,
                service_account: sa,
                role,
                sidecar,
                image,
                container_ports,
                config_maps: d
                    .spec
                    .volumes
                    .iter()
                    .filter_map(|v| v.config_map.as_ref().map(|c| c.name.clone()))
                    .collect(),
                owner: d.owner,
                origin: d.origin,
            });
        }
    }

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

/// A pod as a service endpoint (`pmap`: service port → pod port).
fn pod_endpoint(i: usize, pod: &Pod, pmap: BTreeMap<u16, u16>) -> ServiceEndpoint {
    ServiceEndpoint {
        pod: Some(i),
        address: pod.ip.to_string(),
        ports: pmap,
        labels: pod.labels.clone(),
        sidecar: pod.is_proxy(),
        service_account: Some(pod.service_account.clone()),
    }
}

/// Like `kubectl apply`: a later object with the same kind, namespace and
/// name replaces the earlier one (reported, so nothing is silently lost).
fn dedupe(resources: &[Resource], diags: &mut Vec<Diagnostic>) -> Vec<Resource> {
    let mut last: BTreeMap<(String, String, String), usize> = BTreeMap::new();
    for (i, r) in resources.iter().enumerate() {
        let m = r.meta();
        if let Some(prev) = last.insert((m.kind.clone(), m.ns().to_string(), m.name.clone()), i) {
            let p = resources[prev].meta();
            diags.push(Diagnostic::warning(
                &m.origin.file,
                m.origin.line,
                0,
                "metadata.name",
                format!(
                    "{} replaces the one from {} (later objects win, as with kubectl apply)",
                    m.key(),
                    p.origin
                ),
            ));
        }
    }
    let keep: BTreeSet<usize> = last.into_values().collect();
    resources
        .iter()
        .enumerate()
        .filter(|(i, _)| keep.contains(i))
        .map(|(_, r)| r.clone())
        .collect()
}

fn is_gateway_decl(d: &PodDecl) -> bool {
    d.labels
        .get("istio")
        .is_some_and(|v| v == "ingressgateway" || v == "egressgateway")
        || d.annotations
            .get("inject.istio.io/templates")
            .is_some_and(|v| v == "gateway")
        || d.spec.containers.iter().any(|c| {
            c.image.as_deref().is_some_and(|i| i.contains("proxyv2"))
                || c.image.as_deref() == Some("auto")
        })
}

fn expand_pods(
    decls: &mut Vec<PodDecl>,
    meta: &Meta,
    template: &meshsim_model::k8s::PodTemplate,
    replicas: u32,
    kind: &str,
) {
    let ns = meta.ns().to_string();
    let ips: Vec<String> = meta
        .annotations
        .get(POD_IPS_ANNOTATION)
        .or_else(|| template.metadata.annotations.get(POD_IPS_ANNOTATION))
        .map(|s| {
            s.split(',')
                .map(|x| x.trim().to_string())
                .filter(|x| !x.is_empty())
                .collect()
        })
        .unwrap_or_default();
    for ordinal in 0..replicas {
        decls.push(PodDecl {
            name: format!("{}-{ordinal}", meta.name),
            namespace: ns.clone(),
            labels: template.metadata.labels.clone(),
            annotations: template.metadata.annotations.clone(),
            spec: template.spec.clone(),
            pinned_ip: ips.get(ordinal as usize).cloned(),
            owner: format!("{kind}/{}", meta.name),
            origin: meta.origin.clone(),
        });
    }
}

/// Istio's default profile: `istio-ingressgateway` in `istio-system`.
fn add_default_ingress_gateway(
    decls: &mut Vec<PodDecl>,
    services: &mut Vec<Object<meshsim_model::k8s::ServiceSpec>>,
) {
    let labels: BTreeMap<String, String> =
        [("app", "istio-ingressgateway"), ("istio", "ingressgateway")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    let origin = Origin {
        file: "<built-in: Istio default profile>".into(),
        line: 0,
    };
    let spec = PodSpec {
        containers: vec![meshsim_model::k8s::Container {
            name: "istio-proxy".into(),
            image: Some("docker.io/istio/proxyv2".into()),
            ..Default::default()
        }],
        service_account_name: Some("istio-ingressgateway-service-account".into()),
        ..Default::default()
    };
    decls.push(PodDecl {
        name: "istio-ingressgateway-0".into(),
        namespace: "istio-system".into(),
        labels: labels.clone(),
        annotations: BTreeMap::new(),
        spec,
        pinned_ip: None,
        owner: "Deployment/istio-ingressgateway".into(),
        origin: origin.clone(),
    });
    let port = |name: &str, port: u16, target: u32| meshsim_model::k8s::ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(IntOrString::Int(target)),
        protocol: Some(L4Protocol::Tcp),
        app_protocol: None,
        node_port: None,
    };
    services.push(Object {
        meta: Meta {
            api_version: "v1".into(),
            kind: "Service".into(),
            name: "istio-ingressgateway".into(),
            namespace: Some("istio-system".into()),
            labels: labels.clone(),
            origin,
            ..Default::default()
        },
        spec: meshsim_model::k8s::ServiceSpec {
            ports: vec![
                port("status-port", 15021, 15021),
                port("http2", 80, 8080),
                port("https", 443, 8443),
            ],
            selector: Some(labels),
            type_: Some("LoadBalancer".into()),
            ..Default::default()
        },
    });
}

mod services;

#[cfg(test)]
mod tests;
