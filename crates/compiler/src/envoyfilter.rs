//! EnvoyFilter patches (pilot/pkg/networking/core/envoyfilter): selected by
//! namespace (root namespace = every proxy) and workload selector, sorted
//! by priority, then creation time (load order when absent), then applied
//! in order. A relative insert whose anchor filter is absent is silently
//! not applied — exactly as in istiod; the outcome is recorded so
//! `proxy-config` can show it.

use meshsim_model::common::labels_match;
use meshsim_model::envoy_filter::{
    ApplyTo, EnvoyConfigObjectPatch, EnvoyFilterSpec, FilterChainMatch as FcMatch, PatchContext,
    PatchOperation,
};
use meshsim_model::Object;
use meshsim_tables::*;

use crate::ctx::Ctx;

/// EnvoyFilters that apply to this proxy, in istiod's order.
pub fn applicable<'a>(ctx: &Ctx<'a>) -> Vec<&'a Object<EnvoyFilterSpec>> {
    let w = ctx.world;
    let mut v: Vec<(usize, &Object<EnvoyFilterSpec>)> = w
        .envoy_filters
        .iter()
        .enumerate()
        .filter(|(_, f)| f.meta.ns() == w.mesh.root_namespace || f.meta.ns() == ctx.proxy.namespace)
        .filter(|(_, f)| {
            f.spec
                .workload_selector
                .as_ref()
                .is_none_or(|s| labels_match(s.labels(), &ctx.proxy.labels))
        })
        .collect();
    // istiod: priority, then creation time, then name. Objects without a
    // creationTimestamp were created in the order they were applied.
    let key = |i: usize, f: &Object<EnvoyFilterSpec>| {
        let ts = f.meta.creation_timestamp.clone();
        let name = if ts.is_some() {
            format!("{}/{}", f.meta.ns(), f.meta.name)
        } else {
            String::new()
        };
        (f.spec.priority, ts.unwrap_or_default(), name, i)
    };
    v.sort_by_key(|(i, f)| key(*i, f));
    v.into_iter().map(|(_, f)| f).collect()
}

pub fn apply(ctx: &Ctx<'_>, t: &mut ProxyTables) {
    for ef in applicable(ctx) {
        let key = format!("{}/{}", ef.meta.ns(), ef.meta.name);
        for (i, p) in ef.spec.config_patches.iter().enumerate() {
            let (applied, detail) = apply_one(ctx, t, p);
            t.envoy_filter_patches.push(PatchOutcome {
                envoy_filter: key.clone(),
                patch: i,
                apply_to: format!("{:?}", p.apply_to),
                operation: format!("{:?}", p.patch.operation),
                applied,
                detail,
            });
        }
    }
}

fn apply_one(ctx: &Ctx<'_>, t: &mut ProxyTables, p: &EnvoyConfigObjectPatch) -> (bool, String) {
    let m = p.match_.clone().unwrap_or_default();
    if let Some(pm) = &m.proxy {
        if let Some(re) = &pm.proxy_version {
            match regex::Regex::new(re) {
                Ok(r) if r.is_match(&ctx.version.to_string()) => {}
                Ok(_) => {
                    return (
                        false,
                        format!(
                            "proxyVersion {re:?} does not match this proxy's Istio version {}",
                            ctx.version
                        ),
                    )
                }
                Err(e) => {
                    return (
                        false,
                        format!("proxyVersion {re:?} is not a valid regex: {e}"),
                    )
                }
            }
        }
        if !pm.metadata.is_empty() {
            return (
                false,
                "match.proxy.metadata is not simulated by meshsim".into(),
            );
        }
    }
    let gateway = ctx.is_gateway();
    let ctx_ok = match m.context {
        PatchContext::Any => true,
        PatchContext::Gateway => gateway,
        PatchContext::SidecarInbound | PatchContext::SidecarOutbound => !gateway,
    };
    if !ctx_ok {
        return (
            false,
            format!(
                "context {:?} does not apply to a {}",
                m.context,
                if gateway { "gateway" } else { "sidecar" }
            ),
        );
    }
    match p.apply_to {
        ApplyTo::NetworkFilter | ApplyTo::FilterChain | ApplyTo::Listener | ApplyTo::HttpFilter => {
            listener_patch(t, p, &m, gateway)
        }
        ApplyTo::Cluster => cluster_patch(t, p, &m),
        ApplyTo::VirtualHost | ApplyTo::HttpRoute | ApplyTo::RouteConfiguration => {
            route_patch(t, p, &m)
        }
        other => (
            false,
            format!("applyTo {other:?} is not simulated by meshsim"),
        ),
    }
}

fn listener_in_context(l: &Listener, ctx: PatchContext, gateway: bool) -> bool {
    match ctx {
        PatchContext::Any => true,
        PatchContext::Gateway => gateway,
        PatchContext::SidecarInbound => {
            !gateway && l.traffic_direction == TrafficDirection::Inbound
        }
        PatchContext::SidecarOutbound => {
            !gateway && l.traffic_direction == TrafficDirection::Outbound
        }
    }
}

fn chain_matches(c: &FilterChain, l: &Listener, m: Option<&FcMatch>, port: Option<u16>) -> bool {
    // For virtualInbound, the port is the chain's destination port.
    if let Some(port) = port {
        let chain_port = if l.traffic_direction == TrafficDirection::Inbound {
            c.filter_chain_match.destination_port
        } else {
            Some(l.address.socket_address.port_value)
        };
        if chain_port != Some(port) {
            return false;
        }
    }
    let Some(m) = m else {
        return true;
    };
    m.name.as_ref().is_none_or(|n| *n == c.name)
        && m.sni
            .as_ref()
            .is_none_or(|s| c.filter_chain_match.server_names.contains(s))
        && m.transport_protocol
            .as_ref()
            .is_none_or(|tp| tp.as_str() == c.filter_chain_match.transport_protocol.as_str())
        && m.application_protocols.as_ref().is_none_or(|ap| {
            ap.split(',').any(|a| {
                c.filter_chain_match
                    .application_protocols
                    .iter()
                    .any(|x| x == a.trim())
            })
        })
        && m.destination_port
            .is_none_or(|dp| c.filter_chain_match.destination_port == Some(dp))
}

fn new_network_filter(p: &EnvoyConfigObjectPatch) -> Option<NetworkFilter> {
    let v = p.patch.value.as_ref()?;
    let name = v.get("name")?.as_str()?.to_string();
    let config = v
        .get("typed_config")
        .or(v.get("typedConfig"))
        .cloned()
        .unwrap_or(serde_json::Value::Null);
    let typed_config = if name == RBAC {
        NetworkFilterConfig::Rbac(NetworkRbac::from_config(config))
    } else {
        NetworkFilterConfig::Opaque(config)
    };
    Some(NetworkFilter { name, typed_config })
}

fn new_http_filter(p: &EnvoyConfigObjectPatch) -> Option<HttpFilter> {
    let v = p.patch.value.as_ref()?;
    let name = v.get("name")?.as_str()?.to_string();
    Some(HttpFilter {
        name,
        typed_config: v
            .get("typed_config")
            .or(v.get("typedConfig"))
            .cloned()
            .unwrap_or(serde_json::Value::Null),
    })
}

fn listener_patch(
    t: &mut ProxyTables,
    p: &EnvoyConfigObjectPatch,
    m: &meshsim_model::envoy_filter::EnvoyConfigObjectMatch,
    gateway: bool,
) -> (bool, String) {
    let lm = m.listener.clone().unwrap_or_default();
    let op = p.patch.operation;
    if p.apply_to == ApplyTo::Listener {
        if op != PatchOperation::Remove {
            return (
                false,
                format!("LISTENER {op:?} is not simulated by meshsim"),
            );
        }
        let before = t.listeners.len();
        t.listeners.retain(|l| {
            !(listener_in_context(l, m.context, gateway)
                && lm.name.as_ref().is_none_or(|n| *n == l.name)
                && lm
                    .port_number
                    .is_none_or(|pn| pn == l.address.socket_address.port_value))
        });
        let n = before - t.listeners.len();
        return (n > 0, format!("removed {n} listener(s)"));
    }
    let fc = lm.filter_chain.as_ref();
    let filter_name = fc
        .and_then(|f| f.filter.as_ref())
        .and_then(|f| f.name.clone());
    let sub_filter = fc
        .and_then(|f| f.filter.as_ref())
        .and_then(|f| f.sub_filter.as_ref())
        .and_then(|s| s.name.clone());
    let mut touched = 0usize;
    let mut anchor_missing = 0usize;
    for l in &mut t.listeners {
        if !listener_in_context(l, m.context, gateway)
            || lm.name.as_ref().is_some_and(|n| *n != l.name)
        {
            continue;
        }
        // The port of an outbound listener, or of an inbound chain.
        let outbound_port_ok = l.traffic_direction == TrafficDirection::Inbound
            || lm
                .port_number
                .is_none_or(|pn| pn == l.address.socket_address.port_value);
        if !outbound_port_ok {
            continue;
        }
        let port_for_chain = if l.traffic_direction == TrafficDirection::Inbound {
            lm.port_number
        } else {
            None
        };
        let snapshot = l.clone();
        let chains = l
            .filter_chains
            .iter_mut()
            .chain(l.default_filter_chain.iter_mut());
        if p.apply_to == ApplyTo::FilterChain {
            if op != PatchOperation::Remove {
                return (
                    false,
                    format!("FILTER_CHAIN {op:?} is not simulated by meshsim"),
                );
            }
            let before = l.filter_chains.len();
            l.filter_chains
                .retain(|c| !chain_matches(c, &snapshot, fc, port_for_chain));
            touched += before - l.filter_chains.len();
            continue;
        }
        for c in chains {
            if !chain_matches(c, &snapshot, fc, port_for_chain) {
                continue;
            }
            if p.apply_to == ApplyTo::NetworkFilter {
                let idx = filter_name
                    .as_ref()
                    .and_then(|n| c.filters.iter().position(|f| &f.name == n));
                if filter_name.is_some()
                    && idx.is_none()
                    && !matches!(op, PatchOperation::Add | PatchOperation::InsertFirst)
                {
                    anchor_missing += 1;
                    continue;
                }
                match (op, new_network_filter(p), idx) {
                    (PatchOperation::Add, Some(f), _) => c.filters.push(f),
                    (PatchOperation::InsertFirst, Some(f), _) => c.filters.insert(0, f),
                    (PatchOperation::InsertBefore, Some(f), Some(i)) => c.filters.insert(i, f),
                    (PatchOperation::InsertAfter, Some(f), Some(i)) => c.filters.insert(i + 1, f),
                    (PatchOperation::Replace, Some(f), Some(i)) => c.filters[i] = f,
                    (PatchOperation::Remove, _, Some(i)) => {
                        c.filters.remove(i);
                    }
                    (PatchOperation::Merge, _, Some(i)) => {
                        if !merge_network_filter(&mut c.filters[i], p.patch.value.as_ref()) {
                            return (
                                false,
                                format!(
                                    "MERGE into {} is not simulated by meshsim",
                                    c.filters[i].name
                                ),
                            );
                        }
                    }
                    (_, None, _) if op != PatchOperation::Remove => {
                        return (false, "patch.value needs a `name`".into())
                    }
                    _ => continue,
                }
                touched += 1;
            } else {
                let Some(h) = c
                    .filters
                    .iter_mut()
                    .find_map(|f| match &mut f.typed_config {
                        NetworkFilterConfig::HttpConnectionManager(h) => Some(h),
                        _ => None,
                    })
                else {
                    continue;
                };
                let idx = sub_filter
                    .as_ref()
                    .and_then(|n| h.http_filters.iter().position(|f| &f.name == n));
                if sub_filter.is_some()
                    && idx.is_none()
                    && !matches!(op, PatchOperation::Add | PatchOperation::InsertFirst)
                {
                    anchor_missing += 1;
                    continue;
                }
                match (op, new_http_filter(p), idx) {
                    (PatchOperation::Add, Some(f), _) => {
                        // istiod appends HTTP filters before the router.
                        let at = h
                            .http_filters
                            .iter()
                            .position(|f| f.name == "envoy.filters.http.router")
                            .unwrap_or(h.http_filters.len());
                        h.http_filters.insert(at, f);
                    }
                    (PatchOperation::InsertFirst, Some(f), _) => h.http_filters.insert(0, f),
                    (PatchOperation::InsertBefore, Some(f), Some(i)) => h.http_filters.insert(i, f),
                    (PatchOperation::InsertAfter, Some(f), Some(i)) => {
                        h.http_filters.insert(i + 1, f)
                    }
                    (PatchOperation::Replace, Some(f), Some(i)) => h.http_filters[i] = f,
                    (PatchOperation::Remove, _, Some(i)) => {
                        h.http_filters.remove(i);
                    }
                    (PatchOperation::Merge, _, Some(i)) => merge_json(
                        &mut h.http_filters[i].typed_config,
                        p.patch.value.as_ref().and_then(|v| v.get("typed_config")),
                    ),
                    _ => continue,
                }
                touched += 1;
            }
        }
    }
    if touched > 0 {
        (true, format!("applied to {touched} filter chain(s)"))
    } else if anchor_missing > 0 {
        let anchor = if p.apply_to == ApplyTo::HttpFilter {
            sub_filter
        } else {
            filter_name
        };
        (false, format!("{op:?}: filter {:?} not found in {anchor_missing} matching chain(s); silently not applied (as istiod)", anchor.unwrap_or_default()))
    } else {
        (false, "no listener or filter chain matched".into())
    }
}

fn merge_network_filter(f: &mut NetworkFilter, value: Option<&serde_json::Value>) -> bool {
    let patch = value.and_then(|v| v.get("typed_config").or(v.get("typedConfig")));
    match &mut f.typed_config {
        NetworkFilterConfig::Opaque(v) => {
            merge_json(v, patch);
            true
        }
        NetworkFilterConfig::Rbac(r) => {
            let mut v = std::mem::take(&mut r.config);
            merge_json(&mut v, patch);
            *r = NetworkRbac::from_config(v);
            true
        }
        NetworkFilterConfig::HttpConnectionManager(h) => {
            let Some(patch) = patch else { return true };
            let mut ok = true;
            if let Some(obj) = patch.as_object() {
                for (k, v) in obj {
                    match k.as_str() {
                        "@type" => {}
                        "http_protocol_options" | "httpProtocolOptions" => match v
                            .get("accept_http_10")
                            .or(v.get("acceptHttp10"))
                            .and_then(|b| b.as_bool())
                        {
                            Some(b) => h.http_protocol_options.accept_http_10 = b,
                            None => ok = false,
                        },
                        "stat_prefix" | "statPrefix" => {
                            h.stat_prefix = v.as_str().unwrap_or_default().to_string()
                        }
                        "use_remote_address" | "useRemoteAddress" => {
                            h.use_remote_address = v.as_bool().unwrap_or(false)
                        }
                        "xff_num_trusted_hops" | "xffNumTrustedHops" => match v.as_u64() {
                            Some(n) => h.xff_num_trusted_hops = n as u32,
                            None => ok = false,
                        },
                        "normalize_path" | "normalizePath" => match v.as_bool() {
                            Some(b) => h.normalize_path = b,
                            None => ok = false,
                        },
                        "merge_slashes" | "mergeSlashes" => match v.as_bool() {
                            Some(b) => h.merge_slashes = b,
                            None => ok = false,
                        },
                        "path_with_escaped_slashes_action" | "pathWithEscapedSlashesAction" => {
                            match serde_json::from_value(v.clone()) {
                                Ok(a) => h.path_with_escaped_slashes_action = a,
                                Err(_) => ok = false,
                            }
                        }
                        _ => ok = false,
                    }
                }
            }
            ok
        }
        NetworkFilterConfig::TcpProxy(tp) => {
            let Some(patch) = patch else { return true };
            match patch.get("stat_prefix").and_then(|s| s.as_str()) {
                Some(s) => {
                    tp.stat_prefix = s.to_string();
                    true
                }
                None => false,
            }
        }
    }
}

/// Protobuf-style merge of JSON: objects merge recursively, others replace.
pub fn merge_json(target: &mut serde_json::Value, patch: Option<&serde_json::Value>) {
    let Some(patch) = patch else { return };
    match (target, patch) {
        (serde_json::Value::Object(t), serde_json::Value::Object(p)) => {
            for (k, v) in p {
                merge_json(
                    t.entry(k.clone()).or_insert(serde_json::Value::Null),
                    Some(v),
                );
            }
        }
        (t, p) => *t = p.clone(),
    }
}

fn cluster_patch(
    t: &mut ProxyTables,
    p: &EnvoyConfigObjectPatch,
    m: &meshsim_model::envoy_filter::EnvoyConfigObjectMatch,
) -> (bool, String) {
    let cm = m.cluster.clone().unwrap_or_default();
    let matches = |c: &Cluster| {
        cm.name.as_ref().is_none_or(|n| *n == c.name)
            && cm.port_number.is_none_or(|pn| pn == c.metadata.port)
            && cm.service.as_ref().is_none_or(|s| *s == c.metadata.service)
            && cm.subset.as_ref().is_none_or(|s| *s == c.metadata.subset)
    };
    match p.patch.operation {
        PatchOperation::Remove => {
            let before = t.clusters.len();
            t.clusters.retain(|c| !matches(c));
            let n = before - t.clusters.len();
            (n > 0, format!("removed {n} cluster(s)"))
        }
        PatchOperation::Merge => {
            let Some(v) = &p.patch.value else {
                return (false, "MERGE needs a value".into());
            };
            let mut n = 0;
            for c in t.clusters.iter_mut().filter(|c| matches(c)) {
                if let Some(ct) = v
                    .get("connect_timeout")
                    .or(v.get("connectTimeout"))
                    .and_then(|x| x.as_str())
                    .and_then(|x| meshsim_model::common::Duration::parse(x).ok())
                {
                    c.connect_timeout = Duration::from_millis(ct.millis);
                }
                if let Some(th) = v
                    .pointer("/circuit_breakers/thresholds/0")
                    .or(v.pointer("/circuitBreakers/thresholds/0"))
                {
                    let cur = &mut c.circuit_breakers.thresholds[0];
                    let get = |k: &str, k2: &str| {
                        th.get(k)
                            .or(th.get(k2))
                            .and_then(|x| x.as_u64())
                            .and_then(|x| u32::try_from(x).ok())
                    };
                    if let Some(x) = get("max_connections", "maxConnections") {
                        cur.max_connections = x;
                    }
                    if let Some(x) = get("max_pending_requests", "maxPendingRequests") {
                        cur.max_pending_requests = x;
                    }
                    if let Some(x) = get("max_requests", "maxRequests") {
                        cur.max_requests = x;
                    }
                    if let Some(x) = get("max_retries", "maxRetries") {
                        cur.max_retries = x;
                    }
                }
                n += 1;
            }
            (n > 0, format!("merged into {n} cluster(s) (connect_timeout and circuit_breakers are simulated)"))
        }
        op => (false, format!("CLUSTER {op:?} is not simulated by meshsim")),
    }
}

fn route_patch(
    t: &mut ProxyTables,
    p: &EnvoyConfigObjectPatch,
    m: &meshsim_model::envoy_filter::EnvoyConfigObjectMatch,
) -> (bool, String) {
    let rm = m.route_configuration.clone().unwrap_or_default();
    if p.patch.operation != PatchOperation::Remove || p.apply_to == ApplyTo::RouteConfiguration {
        return (
            false,
            format!(
                "{:?} {:?} is not simulated by meshsim",
                p.apply_to, p.patch.operation
            ),
        );
    }
    let mut n = 0;
    for rc in t.route_configs.iter_mut() {
        if rm.name.as_ref().is_some_and(|x| *x != rc.name)
            || rm.port_number.is_some_and(|pn| rc.name != pn.to_string())
        {
            continue;
        }
        let vh_name = rm.vhost.as_ref().and_then(|v| v.name.clone());
        let route_name = rm
            .vhost
            .as_ref()
            .and_then(|v| v.route.as_ref())
            .and_then(|r| r.name.clone());
        if p.apply_to == ApplyTo::VirtualHost {
            let before = rc.virtual_hosts.len();
            rc.virtual_hosts
                .retain(|vh| vh_name.as_ref().is_some_and(|x| *x != vh.name));
            n += before - rc.virtual_hosts.len();
        } else {
            for vh in rc
                .virtual_hosts
                .iter_mut()
                .filter(|vh| vh_name.as_ref().is_none_or(|x| *x == vh.name))
            {
                let before = vh.routes.len();
                vh.routes
                    .retain(|r| route_name.as_ref().is_some_and(|x| *x != r.name));
                n += before - vh.routes.len();
            }
        }
    }
    (n > 0, format!("removed {n}"))
}
