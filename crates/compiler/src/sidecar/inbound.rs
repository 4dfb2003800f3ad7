//! The sidecar's inbound side (listener.go `buildInboundListeners`,
//! cluster.go `buildInboundClusters`): `virtualInbound` with a chain per
//! port and mTLS mode (filterchain_options.go), and the `inbound|PORT||`
//! clusters — the Services' target ports, or a Sidecar's `ingress`
//! listeners.

use std::collections::BTreeMap;

use meshsim_model::peer_auth::MtlsMode;
use meshsim_tables::*;

use crate::clusters;
use crate::ctx::Ctx;
use crate::filters::{self, HTTP_INSPECTOR, ORIGINAL_DST, TLS_INSPECTOR};
use crate::mtls;
use crate::names;
use crate::protocol::Protocol;
use crate::routes;
use crate::world::Service;

use super::PLAINTEXT_HTTP_ALPNS;

const MTLS_HTTP_ALPNS: [&str; 3] = ["istio-http/1.0", "istio-http/1.1", "istio-h2"];
const ALL_ISTIO_MTLS_ALPNS: [&str; 5] = [
    "istio",
    "istio-peer-exchange",
    "istio-http/1.0",
    "istio-http/1.1",
    "istio-h2",
];
const MTLS_TCP_ALPNS: [&str; 2] = ["istio-peer-exchange", "istio"];

/// Inbound ports of the proxy's workload: target ports of the Services
/// selecting it, with the Service port's protocol.
/// One inbound port: its protocol, the Service it serves (if any), and
/// where a Sidecar's `ingress[].defaultEndpoint` sends it.
struct InboundPort<'w> {
    protocol: Protocol,
    svc: Option<&'w Service>,
    endpoint: Option<(String, u16)>,
}

/// The ports `virtualInbound` serves: a Sidecar's `ingress` listeners when
/// it has any (cluster.go `buildInboundClustersFromSidecar`: only those,
/// each to its `defaultEndpoint` — `127.0.0.1:P` localhost, `0.0.0.0:P`
/// the pod's IP, none the original destination), else every target port
/// of the Services selecting the pod.
fn inbound_ports<'w>(ctx: &Ctx<'w>) -> BTreeMap<u16, InboundPort<'w>> {
    let mut ports = BTreeMap::new();
    let services: Vec<&'w Service> = ctx.world.services_selecting(ctx.proxy).collect();
    if let Some(sc) = ctx
        .sidecar_resource()
        .filter(|s| !s.spec.ingress.is_empty())
    {
        for l in &sc.spec.ingress {
            let n = l.port.number;
            let svc = services.iter().copied().find(|s| {
                s.ports
                    .iter()
                    .any(|p| ctx.proxy.resolve_target_port(&p.target_port, p.port) == Some(n))
            });
            let endpoint = l.default_endpoint.as_deref().and_then(|e| {
                let (host, port) = e.rsplit_once(':')?;
                let port: u16 = port.parse().ok()?;
                match host {
                    "127.0.0.1" => Some(("127.0.0.1".to_string(), port)),
                    "0.0.0.0" => Some((ctx.proxy.ip.to_string(), port)),
                    _ => None,
                }
            });
            ports.entry(n).or_insert(InboundPort {
                protocol: Protocol::parse(l.port.protocol.as_deref().unwrap_or("")),
                svc,
                endpoint,
            });
        }
        return ports;
    }
    for svc in services {
        for p in &svc.ports {
            if p.protocol == Protocol::Udp {
                continue;
            }
            if let Some(tp) = ctx.proxy.resolve_target_port(&p.target_port, p.port) {
                ports.entry(tp).or_insert(InboundPort {
                    protocol: p.protocol,
                    svc: Some(svc),
                    endpoint: None,
                });
            }
        }
    }
    ports
}

struct ChainOpt {
    alpn: &'static [&'static str],
    transport: TransportProtocol,
    http: bool,
    tls: bool,
}

/// filterchain_options.go, by protocol class and mTLS mode.
fn chain_options(protocol: Protocol, mode: MtlsMode) -> Vec<ChainOpt> {
    let c = |alpn: &'static [&'static str], transport, http, tls| ChainOpt {
        alpn,
        transport,
        http,
        tls,
    };
    if protocol.is_http() {
        match mode {
            MtlsMode::Strict => vec![c(&[], TransportProtocol::Tls, true, true)],
            MtlsMode::Permissive | MtlsMode::Unset => vec![
                c(&ALL_ISTIO_MTLS_ALPNS, TransportProtocol::Tls, true, true),
                c(&[], TransportProtocol::RawBuffer, true, false),
            ],
            MtlsMode::Disable => vec![c(&[], TransportProtocol::RawBuffer, true, false)],
        }
    } else if protocol == Protocol::Unsupported {
        match mode {
            MtlsMode::Strict => vec![
                c(&MTLS_HTTP_ALPNS, TransportProtocol::Tls, true, true),
                c(&[], TransportProtocol::Tls, false, true),
            ],
            MtlsMode::Permissive | MtlsMode::Unset => vec![
                c(&MTLS_HTTP_ALPNS, TransportProtocol::Tls, true, true),
                c(
                    &PLAINTEXT_HTTP_ALPNS,
                    TransportProtocol::RawBuffer,
                    true,
                    false,
                ),
                c(&MTLS_TCP_ALPNS, TransportProtocol::Tls, false, true),
                c(&[], TransportProtocol::RawBuffer, false, false),
                c(&[], TransportProtocol::Tls, false, false),
            ],
            MtlsMode::Disable => vec![
                c(
                    &PLAINTEXT_HTTP_ALPNS,
                    TransportProtocol::RawBuffer,
                    true,
                    false,
                ),
                c(&[], TransportProtocol::RawBuffer, false, false),
            ],
        }
    } else {
        match mode {
            MtlsMode::Strict => vec![c(&[], TransportProtocol::Tls, false, true)],
            MtlsMode::Permissive | MtlsMode::Unset => vec![
                c(&ALL_ISTIO_MTLS_ALPNS, TransportProtocol::Tls, false, true),
                c(&[], TransportProtocol::RawBuffer, false, false),
                c(&[], TransportProtocol::Tls, false, false),
            ],
            MtlsMode::Disable => vec![c(&[], TransportProtocol::RawBuffer, false, false)],
        }
    }
}

fn inbound_chain(
    ctx: &Ctx<'_>,
    name: &str,
    port: Option<u16>,
    cluster: &str,
    opt: &ChainOpt,
    route_port: u16,
) -> FilterChain {
    let m = FilterChainMatch {
        destination_port: port,
        transport_protocol: opt.transport,
        application_protocols: opt.alpn.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    let filters = if opt.http {
        let rc = routes::inbound(cluster, route_port, &ctx.world.features);
        vec![filters::hcm(
            format!("inbound_0.0.0.0_{route_port}"),
            None,
            Some(rc),
            ctx.version,
            filters::HcmRole::SidecarInbound,
            ctx.world.mesh.http10,
            &ctx.world.mesh,
        )]
    } else {
        filters::tcp_filters(ctx.version, cluster.into(), Some(cluster.into()), None)
    };
    let transport_socket = opt.tls.then(|| {
        filters::istio_downstream_tls(if opt.http {
            &["h2", "http/1.1"]
        } else {
            &["istio-peer-exchange", "istio"]
        })
    });
    FilterChain {
        name: name.into(),
        filter_chain_match: m,
        transport_socket,
        filters,
    }
}

/// A chain that drops connections addressed to the capture port itself
/// (they would loop back into the proxy).
pub(super) fn blackhole_chain(ctx: &Ctx<'_>, name: &str, port: u16) -> FilterChain {
    let bh = names::BLACKHOLE_CLUSTER;
    FilterChain {
        name: name.into(),
        filter_chain_match: FilterChainMatch {
            destination_port: Some(port),
            ..Default::default()
        },
        transport_socket: None,
        filters: filters::tcp_filters(ctx.version, bh.into(), Some(bh.into()), None),
    }
}

/// `virtualInbound` and the `inbound|PORT||` clusters (STATIC: their
/// endpoints are inline, not EDS).
pub(super) fn virtual_inbound(ctx: &Ctx<'_>) -> (Listener, Vec<Cluster>) {
    let mut chains = vec![blackhole_chain(
        ctx,
        "virtualInbound-blackhole",
        names::VIRTUAL_INBOUND_PORT,
    )];
    let mut clusters = Vec::new();
    for (
        port,
        InboundPort {
            protocol,
            svc,
            endpoint,
        },
    ) in inbound_ports(ctx)
    {
        let cluster = names::inbound_cluster(port);
        clusters.push(clusters::inbound(
            ctx,
            &cluster,
            port,
            svc,
            protocol.is_http2(),
            endpoint,
        ));
        let mode = mtls::inbound_mode(ctx.world, ctx.proxy, port);
        for opt in chain_options(protocol, mode) {
            chains.push(inbound_chain(
                ctx,
                &cluster,
                Some(port),
                &cluster,
                &opt,
                port,
            ));
        }
    }
    // Passthrough chains for ports no Service declares.
    let mode = mtls::inbound_mode(ctx.world, ctx.proxy, 0);
    for opt in chain_options(Protocol::Unsupported, mode) {
        let name = if opt.http {
            "virtualInbound-catchall-http"
        } else {
            "virtualInbound"
        };
        chains.push(inbound_chain(
            ctx,
            name,
            None,
            names::INBOUND_PASSTHROUGH_CLUSTER,
            &opt,
            0,
        ));
    }
    let l = Listener {
        name: names::VIRTUAL_INBOUND.into(),
        address: Address::new("0.0.0.0", names::VIRTUAL_INBOUND_PORT),
        traffic_direction: TrafficDirection::Inbound,
        use_original_dst: false,
        bind_to_port: true,
        listener_filters: filters::listener_filters(&[ORIGINAL_DST, TLS_INSPECTOR, HTTP_INSPECTOR]),
        listener_filters_timeout: ListenerFiltersTimeout::Disabled,
        filter_chains: chains,
        default_filter_chain: None,
    };
    (l, clusters)
}
