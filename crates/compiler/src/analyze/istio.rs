//! istioctl analyze's analyzers (istio `pkg/config/analysis/analyzers`),
//! each function naming its Go file. Templates are messages.yaml's.

use std::collections::{BTreeMap, BTreeSet};

use meshsim_model::destination_rule::ClientTlsMode;
use meshsim_model::envoy_filter::{ApplyTo, PatchOperation};
use meshsim_model::gateway::GatewaySpec;
use meshsim_model::service_entry::ServiceEntrySpec;
use meshsim_model::virtual_service::{Destination, VirtualServiceSpec};
use meshsim_model::{Object, Resource};

use super::{msg, Message};
use crate::host;
use crate::protocol::Protocol;
use crate::world::{ServiceSource, World};

pub(super) fn run(world: &World, out: &mut Vec<Message>) {
    destination_hosts(world, out);
    destination_rules(world, out);
    vs_gateways(world, out);
    conflicting_mesh_gateway_hosts(world, out);
    unreachable_rules(world, out);
    gateway_ports(world, out);
    gateway_secrets(world, out);
    duplicate_certificates(world, out);
    conflicting_gateways(world, out);
    ca_certificates(world, out);
    subsets_select_pods(world, out);
    service_entry_addresses(world, out);
    envoy_filter_patches(world, out);
    port_names(world, out);
    injection(world, out);
}

/// k8s `labels.SelectorFromSet(m).String()`: `k=v` sorted by key, joined by `,`.
pub(super) fn selector_string(m: &BTreeMap<String, String>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Go's `%v` of a `[]string`.
fn go_list<S: AsRef<str>>(v: &[S]) -> String {
    let items: Vec<&str> = v.iter().map(AsRef::as_ref).collect();
    format!("[{}]", items.join(" "))
}

/// `util.ConvertHostToFQDN`: a name without dots (and not a wildcard) is
/// `name.ns.svc.<domain>`.
fn fqdn(world: &World, ns: &str, h: &str) -> String {
    if h.starts_with('*') {
        h.to_string()
    } else {
        world.resolve_host(h, ns)
    }
}

/// The ServiceEntry-like view of a host istioctl builds
/// (`util.InitServiceEntryHostMap`): a Service's or a ServiceEntry's ports.
struct HostEntry {
    ports: Vec<u16>,
    /// A ServiceEntry's `workloadSelector` labels (Services have none there).
    selector: BTreeMap<String, String>,
}

fn service_entries(world: &World) -> impl Iterator<Item = &Object<ServiceEntrySpec>> {
    world.resources.iter().filter_map(|r| match r {
        Resource::ServiceEntry(o) => Some(&**o),
        _ => None,
    })
}

/// `util.GetDestinationHost`: the Service or ServiceEntry a config host
/// names (exact FQDN, then ServiceEntry wildcard hosts).
fn destination_host(world: &World, ns: &str, h: &str) -> Option<HostEntry> {
    let name = fqdn(world, ns, h);
    let hit = |s: &&crate::world::Service| {
        s.hostname == name
            || (s.source == ServiceSource::ServiceEntry
                && s.hostname
                    .strip_prefix('*')
                    .is_some_and(|suffix| name.trim_start_matches('*').ends_with(suffix)))
    };
    world.services.iter().find(hit).map(|s| HostEntry {
        ports: s.ports.iter().map(|p| p.port).collect(),
        // A Service becomes a ServiceEntry without a workload selector.
        selector: match s.source {
            ServiceSource::ServiceEntry => s.selector.clone().unwrap_or_default(),
            _ => BTreeMap::new(),
        },
    })
}

/// A route destination with the key istioctl reports it under.
fn route_destinations(vs: &VirtualServiceSpec) -> impl Iterator<Item = &Destination> {
    vs.http
        .iter()
        .flat_map(|h| h.route.iter().map(|r| &r.destination))
        .chain(
            vs.tcp
                .iter()
                .flat_map(|t| t.route.iter().map(|r| &r.destination)),
        )
        .chain(
            vs.tls
                .iter()
                .flat_map(|t| t.route.iter().map(|r| &r.destination)),
        )
}

fn mirror_destinations(vs: &VirtualServiceSpec) -> impl Iterator<Item = &Destination> {
    vs.http.iter().flat_map(|h| {
        h.mirror
            .iter()
            .chain(h.mirrors.iter().filter_map(|m| m.destination.as_ref()))
    })
}

/// virtualservice/destinationhosts.go: IST0101 host / mirror host /
/// host:port, IST0112, and IST0140 (ingress routes a mesh subset ignores).
fn destination_hosts(world: &World, out: &mut Vec<Message>) {
    // initVirtualServiceDestinations: subset destinations whose host is
    // one of the VirtualService's own hosts (as written).
    let mut subset_vs: Vec<(String, &Destination)> = Vec::new();
    for vs in &world.virtual_services {
        for h in &vs.spec.http {
            for r in &h.route {
                let d = &r.destination;
                if d.subset.as_deref().is_some_and(|s| !s.is_empty()) {
                    for host in &vs.spec.hosts {
                        if &d.host == host {
                            subset_vs.push((format!("{}/{}", vs.meta.ns(), vs.meta.name), d));
                        }
                    }
                }
            }
        }
    }
    for vs in &world.virtual_services {
        let ns = vs.meta.ns();
        let check = |d: &Destination, what: &str, out: &mut Vec<Message>| {
            let Some(entry) = destination_host(world, ns, &d.host) else {
                out.push(msg(
                    "IST0101",
                    &vs.meta,
                    format!("Referenced {what} not found: {:?}", d.host),
                ));
                return;
            };
            match d.port.as_ref().and_then(|p| p.number) {
                None if entry.ports.len() > 1 => out.push(msg(
                    "IST0112",
                    &vs.meta,
                    format!(
                        "This VirtualService routes to a service {:?} that exposes multiple ports {}. Specifying a port in the destination is required to disambiguate.",
                        d.host,
                        go_list(&entry.ports.iter().map(u16::to_string).collect::<Vec<_>>())
                    ),
                )),
                Some(p) if !entry.ports.contains(&p) => out.push(msg(
                    "IST0101",
                    &vs.meta,
                    format!("Referenced host:port not found: \"{}:{p}\"", d.host),
                )),
                _ => {}
            }
        };
        for d in route_destinations(&vs.spec) {
            check(d, "host", out);
        }
        for d in mirror_destinations(&vs.spec) {
            check(d, "mirror host", out);
        }
        if vs.spec.gateways.is_empty() {
            continue;
        }
        let me = format!("{ns}/{}", vs.meta.name);
        for h in &vs.spec.http {
            for r in &h.route {
                if r.destination
                    .subset
                    .as_deref()
                    .is_some_and(|s| !s.is_empty())
                {
                    continue;
                }
                for (other, d) in &subset_vs {
                    if d.host == r.destination.host {
                        out.push(msg(
                            "IST0140",
                            &vs.meta,
                            format!(
                                "Subset in virtual service {other} has no effect on ingress gateway {me} requests"
                            ),
                        ));
                    }
                }
            }
        }
    }
}

/// virtualservice/destinationrules.go: IST0101 host+subset (exact host, as
/// istioctl keys it) and mirror+subset.
fn destination_rules(world: &World, out: &mut Vec<Message>) {
    let known: BTreeSet<(String, &str)> = world
        .destination_rules
        .iter()
        .flat_map(|dr| {
            let h = fqdn(world, dr.meta.ns(), &dr.spec.host);
            dr.spec
                .subsets
                .iter()
                .map(move |s| (h.clone(), s.name.as_str()))
        })
        .collect();
    for vs in &world.virtual_services {
        let ns = vs.meta.ns();
        let missing = |d: &Destination| {
            d.subset
                .as_deref()
                .is_some_and(|s| !s.is_empty() && !known.contains(&(fqdn(world, ns, &d.host), s)))
        };
        for (what, d) in route_destinations(&vs.spec)
            .map(|d| ("host+subset", d))
            .chain(mirror_destinations(&vs.spec).map(|d| ("mirror+subset", d)))
        {
            if missing(d) {
                out.push(msg(
                    "IST0101",
                    &vs.meta,
                    format!(
                        "Referenced {what} in destinationrule not found: \"{}+{}\"",
                        d.host,
                        d.subset.as_deref().unwrap_or_default()
                    ),
                ));
            }
        }
    }
}

/// A Gateway by `namespace/name`.
fn find_gateway<'w>(world: &'w World, full: &str) -> Option<&'w Object<GatewaySpec>> {
    world
        .gateways
        .iter()
        .find(|gw| full.split_once('/') == Some((gw.meta.ns(), gw.meta.name.as_str())))
}

/// virtualservice/gateways.go: IST0101 gateway, IST0132 (no VirtualService
/// host among the gateway's hosts; also when the gateway is missing).
fn vs_gateways(world: &World, out: &mut Vec<Message>) {
    for vs in &world.virtual_services {
        let ns = vs.meta.ns();
        for g in vs.spec.gateways.iter().filter(|g| *g != "mesh") {
            // kube.IsInternalGatewayReference
            let short = g.split_once('/').map_or(g.as_str(), |(_, n)| n);
            if short.contains("~istio-autogenerated-k8s-gateway~") {
                out.push(msg(
                    "IST0165",
                    &vs.meta,
                    format!(
                        "Gateway reference in VirtualService {ns}/{} is to an implementation-generated internal Gateway: {g}.",
                        vs.meta.name
                    ),
                ));
                continue;
            }
            let full = if g.contains('/') {
                g.clone()
            } else {
                format!("{ns}/{g}")
            };
            let gw = find_gateway(world, &full);
            if gw.is_none() {
                out.push(msg(
                    "IST0101",
                    &vs.meta,
                    format!("Referenced gateway not found: {g:?}"),
                ));
            }
            // sanitizeServerHostNamespace + host.NamesForNamespace.
            let gw_hosts: Vec<&str> = gw
                .iter()
                .flat_map(|gw| gw.spec.servers.iter().flat_map(|s| &s.hosts))
                .filter_map(|h| match h.split_once('/') {
                    None => Some(h.as_str()),
                    Some(("*", h)) => Some(h),
                    Some((".", h)) => (gw.is_some_and(|g| g.meta.ns() == ns)).then_some(h),
                    Some((hns, h)) => (hns == ns).then_some(h),
                })
                .collect();
            let matched = gw_hosts
                .iter()
                .any(|gh| vs.spec.hosts.iter().any(|vh| host::matches(gh, vh)));
            if !matched {
                out.push(msg(
                    "IST0132",
                    &vs.meta,
                    format!(
                        "one or more host {} defined in VirtualService {ns}/{} not found in Gateway {full}.",
                        go_list(&vs.spec.hosts),
                        vs.meta.name
                    ),
                ));
            }
        }
    }
}

/// virtualservice/conflictingmeshgatewayhosts.go: IST0109, VirtualServices
/// bound to `mesh` (explicitly or by default) defining one host.
fn conflicting_mesh_gateway_hosts(world: &World, out: &mut Vec<Message>) {
    let mut by_host: BTreeMap<String, Vec<&Object<VirtualServiceSpec>>> = BTreeMap::new();
    for vs in &world.virtual_services {
        let mesh = vs.spec.gateways.is_empty() || vs.spec.gateways.iter().any(|g| g == "mesh");
        if !mesh {
            continue;
        }
        let ns = vs.meta.ns();
        let scopes: BTreeSet<String> =
            if vs.spec.export_to.is_empty() || vs.spec.export_to.iter().any(|e| e == "*") {
                ["*".to_string()].into()
            } else {
                vs.spec
                    .export_to
                    .iter()
                    .map(|e| if e == "." { ns.to_string() } else { e.clone() })
                    .collect()
            };
        for scope in scopes {
            for h in &vs.spec.hosts {
                by_host
                    .entry(format!("{scope}/{}", fqdn(world, ns, h)))
                    .or_default()
                    .push(vs);
            }
        }
    }
    let mut reported = BTreeSet::new();
    for (key, list) in &by_host {
        let mut list = list.clone();
        let (scope, h) = key.split_once('/').unwrap_or(("*", key));
        if scope != "*" {
            for (k2, l2) in &by_host {
                let (s2, h2) = k2.split_once('/').unwrap_or(("*", k2));
                if s2 == "*" && host::matches(h2, h) {
                    list.extend(l2.iter().copied());
                }
            }
        }
        if list.len() < 2 {
            continue;
        }
        let mut names: Vec<String> = list
            .iter()
            .map(|v| format!("{}/{}", v.meta.ns(), v.meta.name))
            .collect();
        names.sort();
        let names = names.join(",");
        for vs in list {
            if reported.insert((vs.meta.ns(), vs.meta.name.as_str())) {
                out.push(msg(
                    "IST0109",
                    &vs.meta,
                    format!(
                        "The VirtualServices {names} associated with mesh gateway define the same host {key} which can lead to undefined behavior. This can be fixed by merging the conflicting VirtualServices into a single resource."
                    ),
                ));
            }
        }
    }
}

/// pkg/config/validation `analyzeUnreachableHTTPRules` (and its TCP/TLS
/// twins) as the schema analyzer reports them: IST0130 and IST0131 for
/// rules after a match-less rule and for duplicate matches. (The
/// prefix-overlap part of the HTTP check is not reproduced.)
fn unreachable_rules(world: &World, out: &mut Vec<Message>) {
    for vs in &world.virtual_services {
        // asJSON(match) with the name cleared: the Debug form serves.
        let http: Rules = vs
            .spec
            .http
            .iter()
            .enumerate()
            .map(|(n, r)| {
                let name = r
                    .name
                    .as_ref()
                    .map_or(format!("#{n}"), |s| format!("{s:?}"));
                let ms = r
                    .matches
                    .iter()
                    .enumerate()
                    .map(|(i, m)| {
                        let mut m = m.clone();
                        let mname = m.name.take().map_or(format!("#{i}"), |s| format!("{s:?}"));
                        (mname, format!("{m:?}"))
                    })
                    .collect();
                (name, ms)
            })
            .collect();
        let tcp = l4_rules(vs.spec.tcp.iter().map(|r| r.matches.as_slice()));
        let tls = l4_rules(vs.spec.tls.iter().map(|r| r.matches.as_slice()));
        for rules in [http, tcp, tls] {
            let mut seen: BTreeMap<String, String> = BTreeMap::new();
            let mut empty_seen = false;
            for (rule, matches) in &rules {
                if matches.is_empty() {
                    if empty_seen {
                        out.push(unused(vs, rule, "only the last rule can have no matches"));
                    }
                    empty_seen = true;
                    continue;
                }
                let mut dups = 0;
                for (mname, key) in matches {
                    if empty_seen {
                        out.push(unused(vs, rule, "route without matches defined before"));
                        continue;
                    }
                    if let Some(first) = seen.get(key) {
                        out.push(msg(
                            "IST0131",
                            &vs.meta,
                            format!(
                                "VirtualService rule {rule} match {mname} is not used (duplicate/overlapping match in rule {first})."
                            ),
                        ));
                        dups += 1;
                        continue;
                    }
                    seen.insert(key.clone(), rule.clone());
                }
                if dups == matches.len() {
                    out.push(unused(vs, rule, "all matches used by prior rules"));
                }
            }
        }
    }
}

/// TCP and TLS rules (no names) as `(rule, [(match, key)])`.
type Rules = Vec<(String, Vec<(String, String)>)>;

fn l4_rules<'a, M: std::fmt::Debug + 'a>(rules: impl Iterator<Item = &'a [M]>) -> Rules {
    rules
        .enumerate()
        .map(|(n, ms)| {
            let ms = ms.iter().enumerate();
            (
                format!("#{n}"),
                ms.map(|(i, m)| (format!("#{i}"), format!("{m:?}")))
                    .collect(),
            )
        })
        .collect()
}

fn unused(vs: &Object<VirtualServiceSpec>, rule: &str, reason: &str) -> Message {
    let mut m = msg(
        "IST0131",
        &vs.meta,
        format!("VirtualService rule {rule} not used ({reason})."),
    );
    m.code = "IST0130";
    m.level = super::Level::Warning;
    m
}

/// Pods a Gateway selector picks, any namespace (istioctl's ForEach Pod).
fn gateway_pods<'w>(
    world: &'w World,
    sel: &'w BTreeMap<String, String>,
) -> impl Iterator<Item = &'w crate::world::Pod> {
    world
        .pods
        .iter()
        .filter(move |p| meshsim_model::common::labels_match(sel, &p.labels))
}

/// gateway/gateway.go: IST0101 selector (no pod), IST0162 (a server port
/// neither a Service port nor a target port of the gateway's Services).
fn gateway_ports(world: &World, out: &mut Vec<Message>) {
    for gw in &world.gateways {
        let sel = &gw.spec.selector;
        let mut target_ports = BTreeSet::new();
        let mut service_ports = BTreeSet::new();
        let mut any = false;
        for pod in gateway_pods(world, sel) {
            any = true;
            let selecting = world.services.iter().filter(|s| {
                s.source == ServiceSource::Kubernetes
                    && s.namespace == pod.namespace
                    && s.selector
                        .as_ref()
                        .is_some_and(|m| meshsim_model::common::labels_match(m, &pod.labels))
            });
            for s in selecting {
                for p in &s.ports {
                    match &p.target_port {
                        Some(meshsim_model::common::IntOrString::Int(t)) if *t != 0 => {
                            target_ports.insert(*t);
                            service_ports.insert(u32::from(p.port));
                        }
                        _ => {
                            target_ports.insert(u32::from(p.port));
                        }
                    }
                }
            }
        }
        if !any {
            out.push(selector_not_found(gw));
            continue;
        }
        for s in &gw.spec.servers {
            let n = u32::from(s.port.number);
            if !target_ports.contains(&n) && !service_ports.contains(&n) {
                out.push(msg(
                    "IST0162",
                    &gw.meta,
                    format!(
                        "The gateway is listening on a target port (port {n}) that is not defined in the Service associated with its workload instances (Pod selector {}). If you need to access the gateway port through the gateway Service, it will not be available.",
                        selector_string(sel)
                    ),
                ));
            }
        }
    }
}

fn selector_not_found(gw: &Object<GatewaySpec>) -> Message {
    msg(
        "IST0101",
        &gw.meta,
        format!(
            "Referenced selector not found: {:?}",
            selector_string(&gw.spec.selector)
        ),
    )
}

/// gateway/secret.go: IST0101 credentialName (no Secret in the gateway
/// workload's namespace).
fn gateway_secrets(world: &World, out: &mut Vec<Message>) {
    for gw in &world.gateways {
        let Some(pod) = gateway_pods(world, &gw.spec.selector).next() else {
            out.push(selector_not_found(gw));
            continue;
        };
        for s in &gw.spec.servers {
            let Some(cn) = s.tls.as_ref().and_then(|t| t.credential_name.as_deref()) else {
                continue;
            };
            if cn.is_empty() {
                continue;
            }
            let (sns, sname) = cn.split_once('/').unwrap_or((&pod.namespace, cn));
            let found = world
                .secrets
                .iter()
                .any(|sec| sec.meta.ns() == sns && sec.meta.name == sname);
            if !found {
                out.push(msg(
                    "IST0101",
                    &gw.meta,
                    format!("Referenced credentialName not found: {cn:?}"),
                ));
            }
        }
    }
}

/// gateway/certificate.go: IST0138, two gateways on the same workloads
/// serving one certificate.
fn duplicate_certificates(world: &World, out: &mut Vec<Message>) {
    let subset = |x: &BTreeMap<String, String>, y: &BTreeMap<String, String>| {
        x.iter().all(|(k, v)| y.get(k).is_none_or(|w| w == v))
            && x.keys().filter(|k| y.contains_key(*k)).count() == x.len()
    };
    for cur in &world.gateways {
        let cur_name = format!("{}/{}", cur.meta.ns(), cur.meta.name);
        for other in &world.gateways {
            if std::ptr::eq(cur, other)
                || !(cur.spec.selector.is_empty()
                    || subset(&cur.spec.selector, &other.spec.selector))
            {
                continue;
            }
            let other_name = format!("{}/{}", other.meta.ns(), other.meta.name);
            for a in cur.spec.servers.iter().filter_map(|s| s.tls.as_ref()) {
                for b in other.spec.servers.iter().filter_map(|s| s.tls.as_ref()) {
                    let same = match (&a.credential_name, &b.credential_name) {
                        (Some(x), Some(y)) if !x.is_empty() && !y.is_empty() => x == y,
                        _ => {
                            a.credential_name.as_deref().unwrap_or_default().is_empty()
                                && b.credential_name.as_deref().unwrap_or_default().is_empty()
                                && a.server_certificate.is_some()
                                && a.server_certificate == b.server_certificate
                                && a.private_key.is_some()
                                && a.private_key == b.private_key
                        }
                    };
                    if same {
                        out.push(msg(
                            "IST0138",
                            &cur.meta,
                            format!(
                                "Duplicate certificate in multiple gateways {} may cause 404s if clients re-use HTTP2 connections.",
                                go_list(&[&cur_name, &other_name])
                            ),
                        ));
                    }
                }
            }
        }
    }
}

/// gateway/conflictinggateway.go: IST0145, gateways on the same workloads
/// and port declaring the same host.
fn conflicting_gateways(world: &World, out: &mut Vec<Message>) {
    for gw in &world.gateways {
        let sel = selector_string(&gw.spec.selector);
        if sel.is_empty() {
            continue;
        }
        let name = format!("{}/{}", gw.meta.ns(), gw.meta.name);
        let pods: Vec<&crate::world::Pod> = gateway_pods(world, &gw.spec.selector).collect();
        for s in &gw.spec.servers {
            let mut others: Vec<String> = Vec::new();
            for o in &world.gateways {
                let oname = format!("{}/{}", o.meta.ns(), o.meta.name);
                if oname == name {
                    continue;
                }
                let osel = selector_string(&o.spec.selector);
                let same_workload = osel == sel
                    || ((osel.contains(&sel) || sel.contains(&osel))
                        && pods.iter().any(|p| {
                            meshsim_model::common::labels_match(&o.spec.selector, &p.labels)
                        }));
                if !same_workload {
                    continue;
                }
                let dup = o
                    .spec
                    .servers
                    .iter()
                    .filter(|os| os.port.number == s.port.number)
                    .any(|os| os.hosts.iter().any(|h| s.hosts.contains(h)));
                if dup {
                    others.push(oname);
                }
            }
            if !others.is_empty() {
                others.sort();
                out.push(msg(
                    "IST0145",
                    &gw.meta,
                    format!(
                        "Conflict with gateways {} (workload selector {sel}, port {}, hosts {}).",
                        others.join(","),
                        s.port.number,
                        s.hosts.join(",")
                    ),
                ));
            }
        }
    }
}

/// destinationrule/ca-certificates.go: IST0128 / IST0129, SIMPLE or
/// MUTUAL origination without caCertificates.
fn ca_certificates(world: &World, out: &mut Vec<Message>) {
    for dr in &world.destination_rules {
        let Some(tp) = &dr.spec.traffic_policy else {
            continue;
        };
        let name = format!("{}/{}", dr.meta.ns(), dr.meta.name);
        let unverified = |t: &meshsim_model::destination_rule::ClientTlsSettings| {
            matches!(t.mode, ClientTlsMode::Simple | ClientTlsMode::Mutual)
                && t.ca_certificates.as_deref().unwrap_or_default().is_empty()
                && !(t.credential_name.as_deref().is_some_and(|c| !c.is_empty())
                    && dr.spec.workload_selector.is_some())
        };
        if let Some(t) = tp.tls.as_ref().filter(|t| unverified(t)) {
            out.push(msg(
                "IST0128",
                &dr.meta,
                format!(
                    "DestinationRule {name} in namespace {} has TLS mode set to {} but no caCertificates are set to validate server identity for host: {}",
                    dr.meta.ns(),
                    mode_name(t.mode),
                    dr.spec.host
                ),
            ));
        }
        for pl in &tp.port_level_settings {
            if let Some(t) = pl.tls.as_ref().filter(|t| unverified(t)) {
                let port = pl.port.as_ref().and_then(|p| p.number).unwrap_or(0);
                out.push(msg(
                    "IST0129",
                    &dr.meta,
                    format!(
                        "DestinationRule {name} in namespace {} has TLS mode set to {} but no caCertificates are set to validate server identity for host: {} at port number:{port}",
                        dr.meta.ns(),
                        mode_name(t.mode),
                        dr.spec.host
                    ),
                ));
            }
        }
    }
}

pub(super) fn mode_name(m: ClientTlsMode) -> &'static str {
    match m {
        ClientTlsMode::Disable => "DISABLE",
        ClientTlsMode::Simple => "SIMPLE",
        ClientTlsMode::Mutual => "MUTUAL",
        ClientTlsMode::IstioMutual => "ISTIO_MUTUAL",
    }
}

/// destinationrule/subset.go: IST0174 (host matches no service), IST0173
/// (a subset's labels select no pod).
fn subsets_select_pods(world: &World, out: &mut Vec<Message>) {
    for dr in &world.destination_rules {
        let Some(entry) = destination_host(world, dr.meta.ns(), &dr.spec.host) else {
            out.push(msg(
                "IST0174",
                &dr.meta,
                format!(
                    "The host {} defined in the DestinationRule does not match any services in the mesh.",
                    dr.spec.host
                ),
            ));
            continue;
        };
        for s in &dr.spec.subsets {
            let mut sel = entry.selector.clone();
            sel.extend(s.labels.clone());
            let selected = world
                .pods
                .iter()
                .any(|p| meshsim_model::common::labels_match(&sel, &p.labels));
            if !selected {
                out.push(msg(
                    "IST0173",
                    &dr.meta,
                    format!(
                        "The Subset {} defined in the DestinationRule does not select any pods. Which may lead to 503 UH (NoHealthyUpstream).",
                        s.name
                    ),
                ));
            }
        }
    }
}

/// serviceentry/protocoladdresses.go: IST0134, a TCP (or unset) port
/// without addresses, unless the mesh's DNS proxy auto-allocates them.
fn service_entry_addresses(world: &World, out: &mut Vec<Message>) {
    let md = &world.mesh.proxy_metadata;
    let on = |k: &str| md.get(k).is_some_and(|v| v == "true");
    let auto = on("ISTIO_META_DNS_CAPTURE")
        && (on("ISTIO_META_DNS_AUTO_ALLOCATE") || on("PILOT_ENABLE_IP_AUTOALLOCATE"));
    if auto {
        return;
    }
    for se in service_entries(world) {
        if !se.spec.addresses.is_empty() {
            continue;
        }
        for p in &se.spec.ports {
            let proto = p.protocol.as_deref().unwrap_or_default();
            if proto.is_empty() || proto.eq_ignore_ascii_case("TCP") {
                out.push(msg(
                    "IST0134",
                    &se.meta,
                    "ServiceEntry addresses are required for this protocol.".into(),
                ));
            }
        }
    }
}

/// envoyfilter/envoyfilter.go: IST0151-IST0155 on each patch.
fn envoy_filter_patches(world: &World, out: &mut Vec<Message>) {
    // Names of patches whose match pins a proxy version, in visit order.
    let mut versioned: Vec<String> = Vec::new();
    for ef in &world.envoy_filters {
        for p in &ef.spec.config_patches {
            // instanceName: the patch value's name, else (a value without
            // one) the matched filter's name; the Go code compares the
            // protobuf text of the first with the plain second, so the two
            // kinds never equal each other.
            let value_name = p
                .patch
                .value
                .as_ref()
                .and_then(|v| v.get("name"))
                .and_then(|n| n.as_str())
                .map(|n| format!("value:{n}"));
            let instance = value_name.unwrap_or_else(|| {
                let has_value = p.patch.value.as_ref().is_some_and(|v| v.is_object());
                p.match_
                    .as_ref()
                    .and_then(|m| m.listener.as_ref())
                    .and_then(|l| l.filter_chain.as_ref())
                    .and_then(|fc| fc.filter.as_ref())
                    .and_then(|f| f.name.clone())
                    .filter(|_| has_value)
                    .unwrap_or_default()
            });
            let relative = |out: &mut Vec<Message>| {
                if ef.spec.priority == 0 {
                    let code = if versioned.contains(&instance) {
                        "IST0155"
                    } else {
                        "IST0151"
                    };
                    out.push(msg(code, &ef.meta, envoy_filter_text(code).into()));
                }
            };
            let route_level =
                matches!(p.apply_to, ApplyTo::RouteConfiguration | ApplyTo::HttpRoute);
            match p.patch.operation {
                PatchOperation::Add if route_level => out.push(msg(
                    "IST0153",
                    &ef.meta,
                    envoy_filter_text("IST0153").into(),
                )),
                PatchOperation::Remove if route_level => out.push(msg(
                    "IST0154",
                    &ef.meta,
                    envoy_filter_text("IST0154").into(),
                )),
                PatchOperation::Remove => relative(out),
                PatchOperation::Replace
                    if !matches!(
                        p.apply_to,
                        ApplyTo::NetworkFilter | ApplyTo::HttpFilter | ApplyTo::VirtualHost
                    ) =>
                {
                    out.push(msg(
                        "IST0152",
                        &ef.meta,
                        envoy_filter_text("IST0152").into(),
                    ))
                }
                PatchOperation::Replace
                | PatchOperation::InsertBefore
                | PatchOperation::InsertAfter => relative(out),
                _ => {}
            }
            let pinned = p
                .match_
                .as_ref()
                .and_then(|m| m.proxy.as_ref())
                .and_then(|px| px.proxy_version.as_deref())
                .is_some_and(|v| !v.is_empty());
            if pinned {
                versioned.push(instance);
            }
        }
    }
}

fn envoy_filter_text(code: &str) -> &'static str {
    match code {
        "IST0151" => "This EnvoyFilter does not have a priority and has a relative patch operation set which can cause the EnvoyFilter not to be applied. Using the INSERT_FIRST of ADD option or setting the priority may help in ensuring the EnvoyFilter is applied correctly.",
        "IST0152" => "The REPLACE operation is only valid for HTTP_FILTER and NETWORK_FILTER.",
        "IST0153" => "The ADD operation will be ignored when applyTo is set to ROUTE_CONFIGURATION, or HTTP_ROUTE.",
        "IST0154" => "The REMOVE operation will be ignored when applyTo is set to ROUTE_CONFIGURATION, or HTTP_ROUTE.",
        _ => "This EnvoyFilter does not have a priority and has a relative patch operation (NSTERT_BEFORE/AFTER, REPLACE, MERGE, DELETE) and proxyVersion set which can cause the EnvoyFilter not to be applied during an upgrade. Using the INSERT_FIRST or ADD option or setting the priority may help in ensuring the EnvoyFilter is applied correctly.",
    }
}

/// service/portname.go: IST0118, a port whose name (and `appProtocol`)
/// selects no protocol; IST0150 instead on an ExternalName Service (also
/// for a port named `tcp`). Services of managed gateways are skipped.
fn port_names(world: &World, out: &mut Vec<Message>) {
    const MANAGED: &[&str] = &[
        "istio.io-gateway-controller",
        "istio.io-mesh-controller",
        "istio.io-eastwest-controller",
    ];
    for r in &world.resources {
        let Resource::Service(s) = r else { continue };
        if s.meta
            .labels
            .get("gateway.istio.io/managed")
            .is_some_and(|v| MANAGED.contains(&v.as_str()))
        {
            continue;
        }
        let external_name = s.spec.type_.as_deref() == Some("ExternalName");
        for p in &s.spec.ports {
            let udp = p.protocol == Some(meshsim_model::k8s::L4Protocol::Udp);
            let proto =
                Protocol::from_service_port(p.name.as_deref(), p.app_protocol.as_deref(), udp);
            let name = p.name.as_deref().unwrap_or_default();
            if proto != Protocol::Unsupported && !(name == "tcp" && external_name) {
                continue;
            }
            if external_name {
                out.push(msg(
                    "IST0150",
                    &s.meta,
                    "Port name for ExternalName service is invalid. Proxy may prevent tcp named ports and unmatched traffic for ports serving TCP protocol from being forwarded correctly".into(),
                ));
                continue;
            }
            // intstr.String(): the number, or the name.
            let target = match &p.target_port {
                Some(meshsim_model::common::IntOrString::Int(t)) => t.to_string(),
                Some(meshsim_model::common::IntOrString::Str(t)) => t.clone(),
                None => "0".to_string(),
            };
            out.push(msg(
                "IST0118",
                &s.meta,
                format!(
                    "Port name {name} (port: {}, targetPort: {target}) doesn't follow the naming convention of Istio port.",
                    p.port
                ),
            ));
        }
    }
}

/// injection/injection.go: IST0102, a declared namespace with pods and no
/// injection label either way.
fn injection(world: &World, out: &mut Vec<Message>) {
    for ns in world.namespaces.values().filter(|n| n.declared) {
        let labelled =
            ns.labels.contains_key("istio-injection") || ns.labels.contains_key("istio.io/rev");
        let has_pods = world.pods.iter().any(|p| p.namespace == ns.name);
        if !labelled && has_pods && ns.name != "istio-system" {
            out.push(Message {
                level: super::Level::Info,
                code: "IST0102",
                kind: "Namespace".into(),
                name: ns.name.clone(),
                namespace: String::new(),
                reference: String::new(),
                text: format!(
                    "The namespace is not enabled for Istio injection. Run 'kubectl label namespace {0} istio-injection=enabled' to enable it, or 'kubectl label namespace {0} istio-injection=disabled' to explicitly mark it as not needing injection.",
                    ns.name
                ),
            });
        }
    }
}
