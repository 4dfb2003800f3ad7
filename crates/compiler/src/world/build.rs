//! Building the world from loaded resources: pods expanded from their
//! workloads with deterministic IPs, namespaces, the default gateway, and
//! `kubectl apply`'s "later object wins".

use super::install::{
    add_default_gateway, declares_istio_gateway, istiod_features, uses_egress_gateway,
};
use super::*;

/// A pod as declared before IPs are assigned.
pub(super) struct PodDecl {
    pub(super) name: String,
    pub(super) namespace: String,
    pub(super) labels: BTreeMap<String, String>,
    pub(super) annotations: BTreeMap<String, String>,
    pub(super) spec: PodSpec,
    pub(super) pinned_ip: Option<String>,
    pub(super) owner: String,
    /// A Pod from a cluster dump (it has a status or an owner): its
    /// injection is what its containers say, not what a webhook would do.
    pub(super) observed: bool,
    /// Its `Ready` condition (a pod not ready is no endpoint).
    pub(super) ready: bool,
    pub(super) origin: Origin,
}

impl World {
    /// Resolves the loaded resources into a world. Problems that are not
    /// parse errors (a pinned IP that is not an IP, two pods with one IP)
    /// come back as diagnostics.
    pub fn build(resources: &[Resource], settings: Settings) -> (World, Vec<Diagnostic>) {
        World::build_with(resources, settings, None)
    }

    /// [`World::build`], keeping the addresses pods and Services had in
    /// `previous` (see [`World::rebuild`]).
    pub(super) fn build_with(
        resources: &[Resource],
        settings: Settings,
        previous: Option<&World>,
    ) -> (World, Vec<Diagnostic>) {
        let mut diags = Vec::new();
        let deduped = dedupe(resources, &mut diags);
        let resources = deduped.as_slice();
        let mesh_cfg = resources.iter().rev().find_map(|r| match r {
            Resource::MeshConfig(m) => Some(&m.spec),
            _ => None,
        });
        let mesh = MeshSettings::from_config(mesh_cfg, settings.istio_version);

        let features = istiod_features(resources, &settings, &mut diags);
        let mut w = World {
            mesh,
            features,
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
            resources: Vec::new(),
            settings,
        };
        // Workloads whose Pods the input has (a cluster dump): those Pods
        // stand for them, with their own names and addresses.
        let dumped: std::collections::BTreeSet<String> = resources
            .iter()
            .filter_map(|r| match r {
                Resource::Pod(o) if o.meta.owner.is_some() => {
                    Some(format!("{}/{}", o.meta.ns(), pod_owner(&o.meta)))
                }
                _ => None,
            })
            .collect();
        let mut decls: Vec<PodDecl> = Vec::new();
        let mut k8s_services = Vec::new();
        let mut slices = Vec::new();
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
                Resource::Deployment(o)
                    if dumped.contains(&workload_key("Deployment", &o.meta)) => {}
                Resource::StatefulSet(o)
                    if dumped.contains(&workload_key("StatefulSet", &o.meta)) => {}
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
                    pinned_ip: o
                        .meta
                        .annotations
                        .get(POD_IPS_ANNOTATION)
                        .cloned()
                        .or_else(|| o.meta.status.as_ref().and_then(|s| s.pod_ip.clone())),
                    owner: pod_owner(&o.meta),
                    observed: o.meta.status.is_some() || o.meta.owner.is_some(),
                    ready: o
                        .meta
                        .status
                        .as_ref()
                        .and_then(|s| s.ready())
                        .unwrap_or(true),
                    origin: o.meta.origin.clone(),
                }),
                Resource::Service(o) => k8s_services.push((**o).clone()),
                Resource::ServiceEntry(o) => entries.push((**o).clone()),
                Resource::VirtualService(o) => w.virtual_services.push((**o).clone()),
                Resource::DestinationRule(o) => w.destination_rules.push((**o).clone()),
                Resource::Gateway(o) => w.gateways.push((**o).clone()),
                Resource::EnvoyFilter(o) => w.envoy_filters.push((**o).clone()),
                Resource::Sidecar(o) => w.sidecars.push((**o).clone()),
                Resource::PeerAuthentication(o) => w.peer_authentications.push((**o).clone()),
                Resource::Secret(o) => w.secrets.push((**o).clone()),
                Resource::ConfigMap(o) => w.config_maps.push((**o).clone()),
                Resource::EndpointSlice(o) => slices.push((**o).clone()),
                Resource::ServiceAccount(_) | Resource::MeshConfig(_) => {}
            }
        }

        // Istio's own gateways stay unless the input declares them (its
        // other gateway workloads do not replace them): the ingress gateway
        // of the default profile, and the egress gateway of the demo
        // profile when the configuration uses it.
        if !declares_istio_gateway(&decls, &k8s_services, "ingressgateway") {
            add_default_gateway(&mut decls, &mut k8s_services, "ingressgateway");
        }
        if uses_egress_gateway(&w)
            && !declares_istio_gateway(&decls, &k8s_services, "egressgateway")
        {
            add_default_gateway(&mut decls, &mut k8s_services, "egressgateway");
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

        w.assign_pods(decls, previous, &mut diags);
        w.build_k8s_services(&k8s_services, &slices, previous, &mut diags);
        w.build_service_entries(&entries);
        w.auto_allocate_addresses();
        for (i, s) in w.services.iter().enumerate() {
            w.service_index
                .entry(s.hostname.to_ascii_lowercase())
                .or_insert(i);
        }
        w.resources = deduped;
        (w, diags)
    }

    fn assign_pods(
        &mut self,
        mut decls: Vec<PodDecl>,
        previous: Option<&World>,
        diags: &mut Vec<Diagnostic>,
    ) {
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
        // A pod that existed before keeps its IP (unless it is taken now).
        for (d, pin) in decls.iter().zip(pinned.iter_mut()) {
            if pin.is_none() {
                *pin = previous
                    .and_then(|w| w.pod(&d.name, &d.namespace))
                    .map(|p| p.ip)
                    .filter(|ip| used.insert(*ip));
            }
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
                && if d.observed {
                    // A running pod was injected or it was not.
                    d.spec.containers.iter().any(is_istio_proxy)
                        || d.annotations.contains_key("sidecar.istio.io/status")
                } else {
                    pod_inject.unwrap_or(ns_inject)
                };
            let sa = d
                .spec
                .service_account_name
                .clone()
                .or(d.spec.service_account.clone())
                .unwrap_or_else(|| "default".into());
            // The application's containers (not an injected istio-proxy).
            let app = |c: &&meshsim_model::k8s::Container| !(d.observed && is_istio_proxy(c));
            let image = d
                .spec
                .containers
                .iter()
                .find(app)
                .and_then(|c| c.image.clone())
                .unwrap_or_default();
            let container_ports = d
                .spec
                .containers
                .iter()
                .filter(app)
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
                ready: d.ready,
                origin: d.origin,
            });
        }
    }
}

/// A pod as a service endpoint (`pmap`: service port → pod port).
pub(super) fn pod_endpoint(i: usize, pod: &Pod, pmap: BTreeMap<u16, u16>) -> ServiceEndpoint {
    ServiceEndpoint {
        pod: Some(i),
        address: pod.ip.to_string(),
        ports: pmap,
        labels: {
            let mut l = pod.labels.clone();
            if let Some(m) = pod.tls_mode() {
                l.insert(super::TLS_MODE_LABEL.into(), m.into());
            }
            l
        },
        sidecar: pod.tls_mode() == Some("istio"),
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

/// `Kind/name` of the workload a Pod belongs to: a ReplicaSet
/// `NAME-HASH` (its `pod-template-hash` label) is Deployment `NAME`.
fn pod_owner(meta: &meshsim_model::Meta) -> String {
    match &meta.owner {
        Some((kind, name)) if kind == "ReplicaSet" => {
            let deploy = meta
                .labels
                .get("pod-template-hash")
                .and_then(|h| name.strip_suffix(&format!("-{h}")))
                .unwrap_or(name);
            format!("Deployment/{deploy}")
        }
        Some((kind, name)) => format!("{kind}/{name}"),
        None => format!("Pod/{}", meta.name),
    }
}

fn workload_key(kind: &str, meta: &meshsim_model::Meta) -> String {
    format!("{}/{kind}/{}", meta.ns(), meta.name)
}

/// Istio's sidecar container, as the injector adds it.
fn is_istio_proxy(c: &meshsim_model::k8s::Container) -> bool {
    c.name == "istio-proxy"
}

fn is_gateway_decl(d: &PodDecl) -> bool {
    d.labels
        .get("istio")
        .is_some_and(|v| v == "ingressgateway" || v == "egressgateway")
        || d.annotations
            .get("inject.istio.io/templates")
            .is_some_and(|v| v == "gateway")
        || (!d.spec.containers.is_empty()
            && d.spec.containers.iter().all(|c| {
                c.image.as_deref().is_some_and(|i| i.contains("proxyv2"))
                    || c.image.as_deref() == Some("auto")
            })
            && !d
                .spec
                .containers
                .iter()
                .any(|c| c.args.iter().any(|a| a == "sidecar")))
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
            observed: false,
            ready: true,
            origin: meta.origin.clone(),
        });
    }
}
