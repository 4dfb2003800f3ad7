//! Services at run time: Kubernetes Services (ClusterIPs, headless,
//! endpoints from selectors) and ServiceEntries (hosts, resolution,
//! endpoints, workload selectors).

use super::build::pod_endpoint;
use super::*;

impl World {
    pub(super) fn build_k8s_services(
        &mut self,
        services: &[Object<meshsim_model::k8s::ServiceSpec>],
        slices: &[Object<meshsim_model::k8s::EndpointSliceData>],
        previous: Option<&World>,
        diags: &mut Vec<Diagnostic>,
    ) {
        let sorted = sorted_specs(services);
        let mut used: BTreeSet<Ipv4Addr> = sorted
            .iter()
            .filter_map(|s| s.spec.cluster_ip.as_deref().and_then(|ip| ip.parse().ok()))
            .collect();
        // A Service that existed before keeps its ClusterIP.
        let mut kept: BTreeMap<String, Ipv4Addr> = BTreeMap::new();
        for s in &sorted {
            if s.spec
                .cluster_ip
                .as_deref()
                .is_some_and(|ip| !ip.is_empty())
            {
                continue;
            }
            let hostname = format!(
                "{}.{}.svc.{}",
                s.meta.name,
                s.meta.ns(),
                self.settings.cluster_domain
            );
            let old = previous
                .and_then(|w| w.service(&hostname))
                .and_then(|o| o.addresses.first())
                .and_then(|a| a.parse::<Ipv4Addr>().ok());
            if let Some(ip) = old.filter(|ip| used.insert(*ip)) {
                kept.insert(hostname, ip);
            }
        }
        let mut next = u32::from(Ipv4Addr::new(10, 96, 0, 10));
        for s in sorted {
            let ns = s.meta.ns().to_string();
            let hostname = format!(
                "{}.{}.svc.{}",
                s.meta.name, ns, self.settings.cluster_domain
            );
            let headless = s.spec.cluster_ip.as_deref() == Some("None");
            let addresses = if headless {
                vec![]
            } else if let Some(ip) = s.spec.cluster_ip.as_deref().filter(|ip| !ip.is_empty()) {
                check_ipv4(s, "spec.clusterIP", ip, " or \"None\"", diags);
                vec![ip.to_string()]
            } else if let Some(ip) = kept.get(&hostname) {
                vec![ip.to_string()]
            } else {
                let ip = loop {
                    let c = Ipv4Addr::from(next);
                    next += 1;
                    if used.insert(c) {
                        break c;
                    }
                };
                vec![ip.to_string()]
            };
            let ports: Vec<ServicePort> = s
                .spec
                .ports
                .iter()
                .map(|p| ServicePort {
                    name: p.name.clone().unwrap_or_default(),
                    port: p.port,
                    protocol: Protocol::from_service_port(
                        p.name.as_deref(),
                        p.app_protocol.as_deref(),
                        p.protocol == Some(L4Protocol::Udp),
                    ),
                    target_port: p.target_port.clone(),
                })
                .collect();
            let mut endpoints = Vec::new();
            if let Some(sel) = &s.spec.selector {
                for (i, pod) in self.pods.iter().enumerate() {
                    // A pod not Ready is no endpoint (EndpointSlice
                    // `ready: false`; istiod does not send it).
                    if pod.namespace != ns
                        || sel.is_empty()
                        || !labels_match(sel, &pod.labels)
                        || !pod.ready
                    {
                        continue;
                    }
                    let pmap = ports
                        .iter()
                        .filter_map(|sp| {
                            pod.resolve_target_port(&sp.target_port, sp.port)
                                .map(|tp| (sp.port, tp))
                        })
                        .collect();
                    endpoints.push(pod_endpoint(i, pod, pmap));
                }
            } else {
                // No selector: the endpoints the cluster published.
                endpoints = self.slice_endpoints(slices, &s.meta.name, &ns, &s.spec.ports);
            }
            self.services.push(Service {
                hostname,
                name: s.meta.name.clone(),
                namespace: ns,
                addresses,
                ports,
                resolution: if headless {
                    Resolution::Passthrough
                } else {
                    Resolution::ClientSideLb
                },
                mesh_external: false,
                source: ServiceSource::Kubernetes,
                endpoints,
                selector: s.spec.selector.clone(),
                external_ip: None,
                auto_address: None,
                origin: s.meta.origin.clone(),
                export_to: s
                    .meta
                    .annotations
                    .get("networking.istio.io/exportTo")
                    .map(|v| {
                        v.split(',')
                            .map(|x| x.trim().to_string())
                            .filter(|x| !x.is_empty())
                            .collect()
                    })
                    .unwrap_or_default(),
            });
        }
        self.assign_external_ips(&sorted_specs(services), diags);
    }

    /// Every Service selecting a gateway pod gets an external address, as a
    /// cloud load balancer would give it: `spec.loadBalancerIP` when set,
    /// else the default ingress gateway 1.2.3.4 and the others the next
    /// free addresses in (namespace, name) order. A Service that says
    /// `type: ClusterIP` has none.
    fn assign_external_ips(
        &mut self,
        specs: &[&Object<meshsim_model::k8s::ServiceSpec>],
        diags: &mut Vec<Diagnostic>,
    ) {
        // One lookup per Service (not a scan of every spec for each).
        let by_name: std::collections::HashMap<
            (&str, &str),
            &Object<meshsim_model::k8s::ServiceSpec>,
        > = specs
            .iter()
            .rev()
            .map(|o| ((o.meta.ns(), o.meta.name.as_str()), *o))
            .collect();
        let spec_of = |s: &Service| {
            by_name
                .get(&(s.namespace.as_str(), s.name.as_str()))
                .copied()
        };
        let pinned = |s: &Service| spec_of(s).and_then(|o| o.spec.load_balancer_ip.as_deref());
        let cluster_ip_only =
            |s: &Service| spec_of(s).is_some_and(|o| o.spec.type_.as_deref() == Some("ClusterIP"));
        let gateway: Vec<usize> = (0..self.services.len())
            .filter(|&i| {
                let s = &self.services[i];
                s.source == ServiceSource::Kubernetes
                    && !cluster_ip_only(s)
                    && s.endpoints
                        .iter()
                        .any(|e| e.pod.is_some_and(|p| self.pods[p].role == PodRole::Gateway))
            })
            .collect();
        for o in specs {
            if let Some(ip) = o.spec.load_balancer_ip.as_deref() {
                check_ipv4(o, "spec.loadBalancerIP", ip, "", diags);
            }
        }
        let mut used = BTreeSet::new();
        for &i in &gateway {
            if let Some(a) = pinned(&self.services[i]).and_then(|ip| ip.parse::<Ipv4Addr>().ok()) {
                used.insert(a);
                self.services[i].external_ip = Some(a);
            }
        }
        let is_default = |s: &Service| s.name == "istio-ingressgateway";
        let mut order: Vec<usize> = gateway
            .into_iter()
            .filter(|&i| self.services[i].external_ip.is_none())
            .collect();
        order.sort_by_key(|&i| !is_default(&self.services[i]));
        let mut next = u32::from(INGRESS_IP);
        for i in order {
            let ip = loop {
                let c = Ipv4Addr::from(next);
                next += 1;
                if used.insert(c) {
                    break c;
                }
            };
            self.services[i].external_ip = Some(ip);
        }
    }
    /// ServiceEntry hosts without addresses (not wildcards, not
    /// `resolution: NONE`) get 240.240.0.1, .2, ... in (namespace, host)
    /// order, as istiod's allocator gives them (its order follows events;
    /// the range is its).
    /// The ready addresses of a selector-less Service's EndpointSlices,
    /// each port found by name (`kubernetes.io/service-name`).
    fn slice_endpoints(
        &self,
        slices: &[Object<meshsim_model::k8s::EndpointSliceData>],
        name: &str,
        ns: &str,
        ports: &[meshsim_model::k8s::ServicePort],
    ) -> Vec<ServiceEndpoint> {
        let mut out: Vec<ServiceEndpoint> = Vec::new();
        for sl in slices
            .iter()
            .filter(|s| s.spec.service == name && s.meta.ns() == ns)
        {
            let pmap: BTreeMap<u16, u16> = ports
                .iter()
                .filter_map(|sp| {
                    let want = sp.name.as_deref().unwrap_or("");
                    sl.spec
                        .ports
                        .iter()
                        .find(|p| p.name.as_deref().unwrap_or("") == want)
                        .and_then(|p| p.port)
                        .map(|p| (sp.port, p))
                })
                .collect();
            for e in sl
                .spec
                .endpoints
                .iter()
                .filter(|e| e.conditions.ready != Some(false))
            {
                for a in &e.addresses {
                    if out.iter().any(|o| &o.address == a) {
                        continue;
                    }
                    let pod = self.pods.iter().position(|p| p.ip.to_string() == *a);
                    out.push(match pod {
                        Some(i) => pod_endpoint(i, &self.pods[i], pmap.clone()),
                        None => ServiceEndpoint {
                            pod: None,
                            address: a.clone(),
                            ports: pmap.clone(),
                            labels: BTreeMap::new(),
                            sidecar: false,
                            service_account: None,
                        },
                    });
                }
            }
        }
        out
    }

    pub(super) fn auto_allocate_addresses(&mut self) {
        let mut idx: Vec<usize> = (0..self.services.len())
            .filter(|&i| {
                let s = &self.services[i];
                s.source == ServiceSource::ServiceEntry
                    && s.addresses.iter().all(|a| a.is_empty() || a == "0.0.0.0")
                    && !s.hostname.starts_with('*')
                    && s.resolution != Resolution::Passthrough
            })
            .collect();
        idx.sort_by(|&a, &b| {
            let (x, y) = (&self.services[a], &self.services[b]);
            (&x.namespace, &x.hostname).cmp(&(&y.namespace, &y.hostname))
        });
        let mut next: u32 = u32::from(Ipv4Addr::new(240, 240, 0, 1));
        let mut given: BTreeMap<String, Ipv4Addr> = BTreeMap::new();
        for i in idx {
            let host = self.services[i].hostname.clone();
            let ip = *given.entry(host).or_insert_with(|| {
                let ip = Ipv4Addr::from(next);
                next += 1;
                ip
            });
            self.services[i].auto_address = Some(ip);
        }
    }

    pub(super) fn build_service_entries(
        &mut self,
        entries: &[Object<meshsim_model::service_entry::ServiceEntrySpec>],
    ) {
        for se in entries {
            let ns = se.meta.ns().to_string();
            let resolution = match se.spec.resolution.unwrap_or(SeResolution::None) {
                SeResolution::None => Resolution::Passthrough,
                SeResolution::Static => Resolution::ClientSideLb,
                SeResolution::Dns => Resolution::Dns,
                SeResolution::DnsRoundRobin => Resolution::DnsRoundRobin,
            };
            let ports: Vec<ServicePort> = se
                .spec
                .ports
                .iter()
                .map(|p| ServicePort {
                    name: p.name.clone(),
                    port: p.number,
                    protocol: p
                        .protocol
                        .as_deref()
                        .map(Protocol::parse)
                        .unwrap_or(Protocol::Unsupported),
                    target_port: p.target_port.map(IntOrString::Int),
                })
                .collect();
            for host in &se.spec.hosts {
                let mut endpoints = Vec::new();
                for ep in &se.spec.endpoints {
                    let address = ep.address.clone().unwrap_or_else(|| host.clone());
                    let pmap = ports
                        .iter()
                        .map(|sp| {
                            let target = ep.ports.get(&sp.name).copied().or(match sp.target_port {
                                Some(IntOrString::Int(n)) => Some(n),
                                _ => None,
                            });
                            (
                                sp.port,
                                target
                                    .and_then(|t| u16::try_from(t).ok())
                                    .unwrap_or(sp.port),
                            )
                        })
                        .collect();
                    endpoints.push(ServiceEndpoint {
                        pod: None,
                        address,
                        ports: pmap,
                        labels: ep.labels.clone(),
                        // A WorkloadEntry-style endpoint labelled for mTLS.
                        sidecar: ep.labels.get(super::TLS_MODE_LABEL).map(String::as_str)
                            == Some("istio"),
                        service_account: ep.service_account.clone(),
                    });
                }
                if let Some(ws) = &se.spec.workload_selector {
                    for (i, pod) in self.pods.iter().enumerate() {
                        if pod.namespace != ns || !labels_match(ws.labels(), &pod.labels) {
                            continue;
                        }
                        let pmap = ports
                            .iter()
                            .map(|sp| {
                                (
                                    sp.port,
                                    pod.resolve_target_port(&sp.target_port, sp.port)
                                        .unwrap_or(sp.port),
                                )
                            })
                            .collect();
                        endpoints.push(pod_endpoint(i, pod, pmap));
                    }
                }
                if endpoints.is_empty()
                    && matches!(resolution, Resolution::Dns | Resolution::DnsRoundRobin)
                {
                    // DNS resolution without endpoints resolves the host itself.
                    let pmap = ports
                        .iter()
                        .map(|sp| {
                            let t = match sp.target_port {
                                Some(IntOrString::Int(n)) => u16::try_from(n).unwrap_or(sp.port),
                                _ => sp.port,
                            };
                            (sp.port, t)
                        })
                        .collect();
                    endpoints.push(ServiceEndpoint {
                        pod: None,
                        address: host.clone(),
                        ports: pmap,
                        labels: BTreeMap::new(),
                        sidecar: false,
                        service_account: None,
                    });
                }
                self.services.push(Service {
                    hostname: host.clone(),
                    name: se.meta.name.clone(),
                    namespace: ns.clone(),
                    addresses: se.spec.addresses.clone(),
                    ports: ports.clone(),
                    resolution,
                    mesh_external: se.spec.location != Some(SeLocation::MeshInternal),
                    source: ServiceSource::ServiceEntry,
                    endpoints,
                    selector: None,
                    external_ip: None,
                    auto_address: None,
                    origin: se.meta.origin.clone(),
                    export_to: se.spec.export_to.clone(),
                });
            }
        }
    }
}

fn sorted_specs(
    services: &[Object<meshsim_model::k8s::ServiceSpec>],
) -> Vec<&Object<meshsim_model::k8s::ServiceSpec>> {
    let mut sorted: Vec<&Object<meshsim_model::k8s::ServiceSpec>> = services.iter().collect();
    sorted.sort_by(|a, b| (a.meta.ns(), &a.meta.name).cmp(&(b.meta.ns(), &b.meta.name)));
    sorted
}

fn check_ipv4(
    o: &Object<meshsim_model::k8s::ServiceSpec>,
    field: &str,
    ip: &str,
    or_else: &str,
    diags: &mut Vec<Diagnostic>,
) {
    if ip.parse::<Ipv4Addr>().is_err() {
        diags.push(Diagnostic::error(
            &o.meta.origin.file,
            o.meta.origin.line,
            0,
            field,
            format!("{ip:?} is not an IPv4 address{or_else}"),
        ));
    }
}
