//! Per-proxy compilation context: the world, the proxy being compiled for,
//! and lookups istiod's push context answers (DestinationRule for a host,
//! visible services).

use meshsim_model::destination_rule::{
    ClientTlsSettings, ConnectionPoolSettings, DestinationRuleSpec, SimpleLb, TrafficPolicy,
};
use meshsim_model::mesh::OutboundMode;
use meshsim_model::Object;

use crate::host;
use crate::version::IstioVersion;
use crate::world::{Pod, PodRole, Service, World};

pub struct Ctx<'a> {
    pub world: &'a World,
    pub proxy: &'a Pod,
    pub version: IstioVersion,
    /// DestinationRules applicable to this proxy, by namespace: exact
    /// resolved hosts indexed, wildcard hosts listed.
    dr_index: std::collections::HashMap<&'a str, DrIndex<'a>>,
    /// VirtualServices bound to `mesh`, in istiod's order (computed once).
    mesh_vs:
        std::cell::OnceCell<Vec<&'a Object<meshsim_model::virtual_service::VirtualServiceSpec>>>,
}

#[derive(Default)]
struct DrIndex<'a> {
    exact: std::collections::HashMap<String, &'a Object<DestinationRuleSpec>>,
    wildcard: Vec<(String, &'a Object<DestinationRuleSpec>)>,
}

/// The traffic policy that applies to one cluster (port, subset), after
/// istiod's merge: subset policy over top-level policy, port-level over
/// either.
#[derive(Debug, Clone, Default)]
pub struct EffectivePolicy {
    pub connection_pool: Option<ConnectionPoolSettings>,
    pub outlier_detection: Option<meshsim_model::destination_rule::OutlierDetection>,
    pub tls: Option<ClientTlsSettings>,
    pub lb: Option<SimpleLb>,
}

impl<'a> Ctx<'a> {
    pub fn new(world: &'a World, proxy: &'a Pod) -> Self {
        let mut dr_index: std::collections::HashMap<&'a str, DrIndex<'a>> =
            std::collections::HashMap::new();
        for dr in &world.destination_rules {
            if !crate::world::exported_to(
                &dr.spec.export_to,
                &world.mesh.default_destination_rule_export_to,
                dr.meta.ns(),
                &proxy.namespace,
            ) {
                continue;
            }
            if dr.spec.workload_selector.as_ref().is_some_and(|ws| {
                !meshsim_model::common::labels_match(&ws.match_labels, &proxy.labels)
            }) {
                continue;
            }
            let host = world
                .resolve_host(&dr.spec.host, dr.meta.ns())
                .to_ascii_lowercase();
            let idx = dr_index.entry(dr.meta.ns()).or_default();
            if host.starts_with('*') {
                idx.wildcard.push((host, dr));
            } else {
                idx.exact.entry(host).or_insert(dr);
            }
        }
        Self {
            world,
            proxy,
            version: world.settings.istio_version,
            dr_index,
            mesh_vs: std::cell::OnceCell::new(),
        }
    }

    /// VirtualServices bound to `mesh`, computed once per proxy.
    pub fn mesh_virtual_services(
        &self,
    ) -> &[&'a Object<meshsim_model::virtual_service::VirtualServiceSpec>] {
        self.mesh_vs.get_or_init(|| {
            let mut v = crate::routes::bound_virtual_services(self, "mesh");
            // sidecar.go `selectVirtualServices`: with a Sidecar's egress
            // hosts, only VirtualServices from a listed namespace whose
            // hosts meet a listed host.
            if let Some(patterns) = self.egress_patterns() {
                v.retain(|vs| {
                    patterns.iter().any(|(ns, h)| {
                        ns != "~"
                            && (ns == "*" || ns == vs.meta.ns())
                            && vs.spec.hosts.iter().any(|vh| {
                                let vh = self.world.resolve_host(vh, vs.meta.ns());
                                host::matches(h, &vh) || host::matches(&vh, h)
                            })
                    })
                });
            }
            v
        })
    }

    /// The applicable Sidecar's egress `namespace/host` patterns (`.` is
    /// the Sidecar's namespace), or `None` when no Sidecar limits egress.
    /// Whether this proxy's outbound listeners on `port` carry `svc`
    /// (listener.go `buildSidecarOutboundListeners`): an egress listener
    /// naming the port takes it with its own hosts; every other port is
    /// the catch-all listener's (the one without a port) — none when the
    /// Sidecar has no catch-all.
    pub fn egress_carries(&self, svc: &Service, port: u16) -> bool {
        let Some(sc) = self.sidecar_resource() else {
            return true;
        };
        let listeners = &sc.spec.egress;
        if listeners.iter().all(|e| e.port.is_none()) {
            return true;
        }
        let owner = listeners
            .iter()
            .find(|e| e.port.as_ref().is_some_and(|p| p.number == port))
            .or_else(|| listeners.iter().find(|e| e.port.is_none()));
        let Some(l) = owner else {
            return false;
        };
        l.hosts.iter().any(|h| {
            let Some((ns, host)) = h.split_once('/') else {
                return false;
            };
            let ns = if ns == "." { sc.meta.ns() } else { ns };
            ns != "~" && (ns == "*" || ns == svc.namespace) && host::matches(host, &svc.hostname)
        })
    }

    fn egress_patterns(&self) -> Option<Vec<(String, String)>> {
        let sc = self.sidecar_resource()?;
        let patterns: Vec<(String, String)> = sc
            .spec
            .egress
            .iter()
            .flat_map(|e| e.hosts.iter())
            .filter_map(|h| {
                let (ns, host) = h.split_once('/')?;
                let ns = if ns == "." {
                    sc.meta.ns().to_string()
                } else {
                    ns.to_string()
                };
                Some((ns, host.to_string()))
            })
            .collect();
        (!patterns.is_empty()).then_some(patterns)
    }

    pub fn is_gateway(&self) -> bool {
        self.proxy.role == PodRole::Gateway
    }

    /// The Sidecar resource that applies to this proxy, if any: one with a
    /// matching workload selector in its namespace, else the namespace's
    /// selector-less one, else the root namespace's.
    pub fn sidecar_resource(&self) -> Option<&'a Object<meshsim_model::sidecar::SidecarSpec>> {
        if self.is_gateway() {
            return None;
        }
        let w = self.world;
        let ns = &self.proxy.namespace;
        w.sidecars
            .iter()
            .find(|s| {
                s.meta.ns() == ns
                    && s.spec.workload_selector.as_ref().is_some_and(|ws| {
                        meshsim_model::common::labels_match(ws.labels(), &self.proxy.labels)
                    })
            })
            .or_else(|| {
                w.sidecars
                    .iter()
                    .find(|s| s.meta.ns() == ns && s.spec.workload_selector.is_none())
            })
            .or_else(|| {
                w.sidecars.iter().find(|s| {
                    s.meta.ns() == w.mesh.root_namespace && s.spec.workload_selector.is_none()
                })
            })
    }

    pub fn outbound_mode(&self) -> OutboundMode {
        self.sidecar_resource()
            .and_then(|s| s.spec.outbound_traffic_policy.as_ref())
            .map(|p| p.mode)
            .unwrap_or(self.world.mesh.outbound)
    }

    /// Services this proxy sees: all of them, narrowed by a Sidecar's
    /// `egress.hosts` (`ns/host`, `./host`, `*/host`, `~/*`).
    pub fn visible_services(&self) -> Vec<&'a Service> {
        let (w, ns) = (self.world, self.proxy.namespace.as_str());
        let all = self.world.services.iter().filter(move |s| {
            crate::world::exported_to(
                &s.export_to,
                &w.mesh.default_service_export_to,
                &s.namespace,
                ns,
            )
        });
        let Some(patterns) = self.egress_patterns() else {
            return all.collect();
        };
        // Plus the destinations of the VirtualServices the Sidecar imports
        // (sidecar.go adds them so their routes have clusters).
        let destinations: Vec<String> = self
            .mesh_virtual_services()
            .iter()
            .flat_map(|vs| {
                vs.spec
                    .destination_hosts()
                    .map(|h| self.world.resolve_host(h, vs.meta.ns()))
                    .collect::<Vec<_>>()
            })
            .collect();
        all.filter(|s| {
            destinations
                .iter()
                .any(|d| d.eq_ignore_ascii_case(&s.hostname))
                || patterns.iter().any(|(ns, h)| {
                    ns != "~" && (ns == "*" || *ns == s.namespace) && host::matches(h, &s.hostname)
                })
        })
        .collect()
    }

    /// istiod's DestinationRule lookup for a host as seen by this proxy:
    /// the proxy's namespace, then the service's, then the root namespace;
    /// within one, the most specific host wins.
    pub fn destination_rule(&self, svc: &Service) -> Option<&'a Object<DestinationRuleSpec>> {
        let w = self.world;
        let order = [
            self.proxy.namespace.as_str(),
            svc.namespace.as_str(),
            w.mesh.root_namespace.as_str(),
        ];
        let lower = svc.hostname.to_ascii_lowercase();
        for ns in order {
            let Some(idx) = self.dr_index.get(ns) else {
                continue;
            };
            if let Some(dr) = idx.exact.get(&lower) {
                return Some(dr);
            }
            let best = idx
                .wildcard
                .iter()
                .filter(|(h, _)| host::matches(h, &svc.hostname))
                .max_by_key(|(h, _)| host::specificity(h));
            if let Some((_, dr)) = best {
                return Some(dr);
            }
        }
        None
    }

    pub fn effective_policy(
        dr: Option<&DestinationRuleSpec>,
        port: u16,
        subset: &str,
    ) -> EffectivePolicy {
        let mut eff = EffectivePolicy::default();
        let Some(dr) = dr else {
            return eff;
        };
        apply_policy(&mut eff, dr.traffic_policy.as_ref(), port);
        if !subset.is_empty() {
            if let Some(s) = dr.subsets.iter().find(|s| s.name == subset) {
                apply_policy(&mut eff, s.traffic_policy.as_ref(), port);
            }
        }
        eff
    }
}

fn apply_policy(eff: &mut EffectivePolicy, tp: Option<&TrafficPolicy>, port: u16) {
    let Some(tp) = tp else {
        return;
    };
    if tp.connection_pool.is_some() {
        eff.connection_pool = tp.connection_pool.clone();
    }
    if tp.outlier_detection.is_some() {
        eff.outlier_detection = tp.outlier_detection.clone();
    }
    if tp.tls.is_some() {
        eff.tls = tp.tls.clone();
    }
    if let Some(lb) = tp.load_balancer.as_ref().and_then(|l| l.simple) {
        eff.lb = Some(lb);
    }
    for pl in &tp.port_level_settings {
        if pl.port.as_ref().and_then(|p| p.number) == Some(port) {
            if pl.connection_pool.is_some() {
                eff.connection_pool = pl.connection_pool.clone();
            }
            if pl.outlier_detection.is_some() {
                eff.outlier_detection = pl.outlier_detection.clone();
            }
            if pl.tls.is_some() {
                eff.tls = pl.tls.clone();
            }
            if let Some(lb) = pl.load_balancer.as_ref().and_then(|l| l.simple) {
                eff.lb = Some(lb);
            }
        }
    }
}
