//! Clusters and endpoints (istiod cluster.go, cluster_builder.go,
//! cluster_tls.go, cluster_traffic_policy.go).

use meshsim_model::destination_rule::{ClientTlsMode, ClientTlsSettings, SimpleLb};
use meshsim_model::peer_auth::MtlsMode;
use meshsim_tables::*;

use crate::ctx::{Ctx, EffectivePolicy};
use crate::mtls;
use crate::names;
use crate::world::{Resolution, Service, ServiceSource};

/// ALPN istiod sets on ISTIO_MUTUAL clusters (`util.ALPNInMeshWithMxc`).
pub const ALPN_IN_MESH: [&str; 2] = ["istio-peer-exchange", "istio"];

/// All outbound clusters (one per service port, plus one per subset) and
/// the EDS assignments for them.
pub fn outbound(
    ctx: &Ctx<'_>,
    services: &[&Service],
) -> (Vec<Cluster>, Vec<ClusterLoadAssignment>) {
    let mut clusters = Vec::new();
    let mut cla = Vec::new();
    for svc in services {
        let dr = ctx.destination_rule(svc);
        let dr_name = dr
            .map(|d| format!("{}.{}", d.meta.name, d.meta.ns()))
            .unwrap_or_default();
        let mut subsets: Vec<(&str, Option<&std::collections::BTreeMap<String, String>>)> =
            vec![("", None)];
        if let Some(dr) = dr {
            subsets.extend(
                dr.spec
                    .subsets
                    .iter()
                    .map(|s| (s.name.as_str(), Some(&s.labels))),
            );
        }
        for port in &svc.ports {
            if port.protocol == crate::protocol::Protocol::Udp {
                continue;
            }
            for (subset, labels) in &subsets {
                let name = names::outbound_cluster(port.port, subset, &svc.hostname);
                let policy = Ctx::effective_policy(dr.map(|d| &d.spec), port.port, subset);
                let mut c = base_cluster(ctx, &name, svc, port.port, subset, &policy);
                c.metadata.destination_rule = dr_name.clone();
                c.http2_protocol_options = port.protocol.is_http2();
                let endpoints = endpoints_for(svc, port.port, *labels, &name);
                match c.discovery_type {
                    DiscoveryType::Eds => cla.push(endpoints),
                    DiscoveryType::StrictDns
                    | DiscoveryType::LogicalDns
                    | DiscoveryType::Static => c.load_assignment = Some(endpoints),
                    DiscoveryType::OriginalDst => {}
                }
                apply_tls(ctx, &mut c, svc, port.port, subset, &policy);
                clusters.push(c);
            }
        }
    }
    (clusters, cla)
}

fn base_cluster(
    ctx: &Ctx<'_>,
    name: &str,
    svc: &Service,
    port: u16,
    subset: &str,
    policy: &EffectivePolicy,
) -> Cluster {
    let (discovery_type, mut lb) = match svc.resolution {
        Resolution::ClientSideLb => (DiscoveryType::Eds, LbPolicy::LeastRequest),
        Resolution::Dns => (DiscoveryType::StrictDns, LbPolicy::LeastRequest),
        Resolution::DnsRoundRobin => (DiscoveryType::LogicalDns, LbPolicy::LeastRequest),
        Resolution::Passthrough => (DiscoveryType::OriginalDst, LbPolicy::ClusterProvided),
    };
    if discovery_type != DiscoveryType::OriginalDst {
        lb = match policy.lb {
            Some(SimpleLb::RoundRobin) => LbPolicy::RoundRobin,
            Some(SimpleLb::Random) => LbPolicy::Random,
            Some(SimpleLb::Passthrough) => LbPolicy::ClusterProvided,
            _ => lb,
        };
    }
    let mut thresholds = Thresholds::default();
    let mut connect_timeout_ms = ctx.world.mesh.connect_timeout_ms;
    let mut max_requests_per_connection = None;
    let mut idle_timeout = None;
    if let Some(cp) = &policy.connection_pool {
        if let Some(tcp) = &cp.tcp {
            if let Some(n) = tcp.max_connections.filter(|n| *n > 0) {
                thresholds.max_connections = n;
            }
            if let Some(t) = tcp.connect_timeout {
                connect_timeout_ms = t.millis;
            }
        }
        if let Some(http) = &cp.http {
            if let Some(n) = http.http1_max_pending_requests.filter(|n| *n > 0) {
                thresholds.max_pending_requests = n;
            }
            if let Some(n) = http.http2_max_requests.filter(|n| *n > 0) {
                thresholds.max_requests = n;
            }
            if let Some(n) = http.max_retries.filter(|n| *n > 0) {
                thresholds.max_retries = n;
            }
            max_requests_per_connection = http.max_requests_per_connection.filter(|n| *n > 0);
            idle_timeout = http.idle_timeout.map(|d| Duration::from_millis(d.millis));
        }
    }
    Cluster {
        name: name.to_string(),
        discovery_type,
        connect_timeout: Duration::from_millis(connect_timeout_ms),
        lb_policy: lb,
        circuit_breakers: CircuitBreakers {
            thresholds: vec![thresholds],
        },
        transport_socket: None,
        transport_socket_matches: vec![],
        http2_protocol_options: false,
        max_requests_per_connection,
        idle_timeout,
        auto_sni: false,
        outlier_detection: policy.outlier_detection.as_ref().map(outlier_detection),
        // applyOutlierDetection: the panic threshold is the DR's
        // minHealthPercent (0, panic off, unless set).
        healthy_panic_threshold: policy
            .outlier_detection
            .as_ref()
            .map(|o| f64::from(o.min_health_percent.unwrap_or(0).max(0))),
        load_assignment: None,
        upstream_bind_source: None,
        metadata: ClusterMetadata {
            direction: ClusterDirection::Outbound,
            service: svc.hostname.clone(),
            service_name: svc.name.clone(),
            service_namespace: svc.namespace.clone(),
            port,
            subset: subset.to_string(),
            destination_rule: String::new(),
        },
    }
}

/// Endpoints of `svc` on `port`, narrowed to a subset's labels.
fn endpoints_for(
    svc: &Service,
    port: u16,
    subset: Option<&std::collections::BTreeMap<String, String>>,
    cluster: &str,
) -> ClusterLoadAssignment {
    let lb_endpoints = svc
        .endpoints
        .iter()
        .filter(|e| subset.is_none_or(|l| meshsim_model::common::labels_match(l, &e.labels)))
        .filter_map(|e| {
            let ep_port = *e.ports.get(&port)?;
            let app = e
                .labels
                .get("app")
                .cloned()
                .unwrap_or_else(|| svc.name.clone());
            let version = e
                .labels
                .get("version")
                .cloned()
                .unwrap_or_else(|| "latest".into());
            let workload = match e.pod {
                Some(_) => format!(
                    "{};{};{app};{version};Kubernetes",
                    pod_workload_name(e),
                    svc.namespace
                ),
                None => format!(";{};{app};{version};Kubernetes", svc.namespace),
            };
            Some(LbEndpoint {
                endpoint: Endpoint {
                    address: Address::new(e.address.clone(), ep_port),
                },
                health_status: "HEALTHY",
                metadata: Some(EndpointMetadata {
                    filter_metadata: EndpointFilterMetadata {
                        transport_socket_match: TlsModeLabel {
                            tls_mode: if e.sidecar {
                                "istio".into()
                            } else {
                                "disabled".into()
                            },
                        },
                        istio: EndpointIstioMetadata { workload },
                    },
                }),
                load_balancing_weight: 1,
            })
        })
        .collect();
    ClusterLoadAssignment {
        cluster_name: cluster.to_string(),
        endpoints: vec![LocalityLbEndpoints { lb_endpoints }],
    }
}

fn pod_workload_name(e: &crate::world::ServiceEndpoint) -> String {
    // Deployment pods are named `<deployment>-<ordinal>`: the workload is the deployment.
    e.labels
        .get("app")
        .map(|a| {
            let v = e
                .labels
                .get("version")
                .map(|v| format!("-{v}"))
                .unwrap_or_default();
            format!("{a}{v}")
        })
        .unwrap_or_default()
}

/// istiod's upstream TLS: the DestinationRule's mode, else auto mTLS.
fn apply_tls(
    ctx: &Ctx<'_>,
    c: &mut Cluster,
    svc: &Service,
    port: u16,
    subset: &str,
    policy: &EffectivePolicy,
) {
    let mesh = &ctx.world.mesh;
    match &policy.tls {
        Some(tls) => {
            c.transport_socket = user_tls(ctx, svc, port, subset, tls);
            // cluster_tls.go setAutoSniAndAutoSanValidation (1.21+): no
            // `sni` → the request's host is the SNI, checked against the
            // certificate unless SANs are given.
            c.auto_sni = matches!(tls.mode, ClientTlsMode::Simple | ClientTlsMode::Mutual)
                && tls.sni.is_none()
                && ctx.world.features.enable_auto_sni;
        }
        None => {
            let auto = mesh.auto_mtls
                && !svc.mesh_external
                && mtls::service_mode(ctx.world, &svc.namespace) != MtlsMode::Disable;
            if !auto {
                return;
            }
            let socket = istio_mutual(ctx, svc, port, subset, None);
            if c.discovery_type == DiscoveryType::OriginalDst {
                // Headless: no endpoint metadata to match, so istiod sets mTLS directly.
                c.transport_socket = Some(socket);
            } else {
                c.transport_socket_matches = vec![
                    TransportSocketMatch {
                        name: "tlsMode-istio".into(),
                        match_: serde_json::json!({"tlsMode": "istio"}),
                        transport_socket: Some(socket),
                    },
                    TransportSocketMatch {
                        name: "tlsMode-disabled".into(),
                        match_: serde_json::json!({}),
                        transport_socket: None,
                    },
                ];
            }
        }
    }
}

/// cluster_traffic_policy.go `applyOutlierDetection`: success-rate
/// ejection off; each configured consecutive count enforced at 100%;
/// local-origin failures apart only when split.
fn outlier_detection(o: &meshsim_model::destination_rule::OutlierDetection) -> OutlierDetection {
    let enforce = |v: u32| if v > 0 { 100 } else { 0 };
    let split = o.split_external_local_origin_errors;
    let local = o
        .consecutive_local_origin_failures
        .filter(|v| split && *v > 0);
    OutlierDetection {
        consecutive_5xx: o.consecutive_5xx_errors,
        enforcing_consecutive_5xx: o.consecutive_5xx_errors.map(enforce),
        consecutive_gateway_failure: o.consecutive_gateway_errors,
        enforcing_consecutive_gateway_failure: o.consecutive_gateway_errors.map(enforce),
        interval: o.interval.map(|d| Duration::from_millis(d.millis)),
        base_ejection_time: o
            .base_ejection_time
            .map(|d| Duration::from_millis(d.millis)),
        max_ejection_percent: o
            .max_ejection_percent
            .filter(|p| *p > 0)
            .and_then(|p| u32::try_from(p).ok()),
        split_external_local_origin_errors: split,
        consecutive_local_origin_failure: local,
        enforcing_consecutive_local_origin_failure: local.map(|_| 100),
        enforcing_success_rate: 0,
    }
}

fn user_tls(
    ctx: &Ctx<'_>,
    svc: &Service,
    port: u16,
    subset: &str,
    tls: &ClientTlsSettings,
) -> Option<UpstreamTransportSocket> {
    match tls.mode {
        ClientTlsMode::Disable => None,
        ClientTlsMode::IstioMutual => Some(istio_mutual(ctx, svc, port, subset, tls.sni.clone())),
        ClientTlsMode::Simple | ClientTlsMode::Mutual => {
            let mut common = CommonTlsContext::default();
            // Without `sni`, no SNI is configured: 1.21+ clusters send the
            // request's host instead (`auto_sni`, set by the caller; the
            // TCP proxy then sends none, as Envoy does); before 1.21 none.
            let features = &ctx.world.features;
            let sni = tls.sni.clone().unwrap_or_default();
            if tls.mode == ClientTlsMode::Mutual {
                let secret = match (
                    &tls.credential_name,
                    &tls.client_certificate,
                    &tls.private_key,
                ) {
                    (Some(cn), _, _) => format!("kubernetes://{cn}"),
                    (None, Some(cert), Some(key)) => format!("file-cert:{cert}~{key}"),
                    _ => "default".into(),
                };
                common
                    .tls_certificate_sds_secret_configs
                    .push(SdsSecretConfig { name: secret });
            }
            let trusted_ca_sds = match (&tls.credential_name, &tls.ca_certificates) {
                (Some(cn), _) => Some(format!("kubernetes://{cn}-cacert")),
                (None, Some(ca)) => Some(format!("file-root:{ca}")),
                _ => None,
            };
            // Before 1.21 (`VERIFY_CERTIFICATE_AT_CLIENT`) a server with no
            // `caCertificates` was not verified at all.
            let unverified = trusted_ca_sds.is_none() && !features.verify_certificate_at_client;
            common.validation_context = Some(ValidationContext {
                trusted_ca_sds,
                match_subject_alt_names: tls.subject_alt_names.clone(),
                insecure_skip_verify: tls.insecure_skip_verify.unwrap_or(false) || unverified,
            });
            Some(UpstreamTransportSocket {
                name: TLS_SOCKET.into(),
                typed_config: UpstreamTlsContext {
                    type_url: UPSTREAM_TLS_TYPE,
                    common_tls_context: common,
                    sni,
                    istio_mode: if tls.mode == ClientTlsMode::Mutual {
                        UpstreamTlsMode::Mutual
                    } else {
                        UpstreamTlsMode::Simple
                    },
                },
            })
        }
    }
}

fn istio_mutual(
    ctx: &Ctx<'_>,
    svc: &Service,
    port: u16,
    subset: &str,
    sni: Option<String>,
) -> UpstreamTransportSocket {
    let sans = if svc.source == ServiceSource::Kubernetes {
        svc.service_accounts(&ctx.world.mesh.trust_domain)
    } else {
        vec![]
    };
    UpstreamTransportSocket {
        name: TLS_SOCKET.into(),
        typed_config: UpstreamTlsContext {
            type_url: UPSTREAM_TLS_TYPE,
            common_tls_context: CommonTlsContext {
                alpn_protocols: ALPN_IN_MESH.iter().map(|s| s.to_string()).collect(),
                tls_certificate_sds_secret_configs: vec![SdsSecretConfig {
                    name: "default".into(),
                }],
                validation_context: Some(ValidationContext {
                    trusted_ca_sds: Some("ROOTCA".into()),
                    match_subject_alt_names: sans,
                    insecure_skip_verify: false,
                }),
            },
            sni: sni.unwrap_or_else(|| names::istio_mutual_sni(port, subset, &svc.hostname)),
            istio_mode: UpstreamTlsMode::IstioMutual,
        },
    }
}

/// `inbound|PORT||`: to the application. From Istio 1.10 an ORIGINAL_DST
/// cluster to the pod IP, connecting from `127.0.0.6` (which iptables lets
/// reach the application); before, STATIC to `127.0.0.1:PORT`.
pub fn inbound(
    ctx: &Ctx<'_>,
    name: &str,
    target_port: u16,
    svc: Option<&Service>,
    http2: bool,
    endpoint: Option<(String, u16)>,
) -> Cluster {
    let static_to = |address: Address| ClusterLoadAssignment {
        cluster_name: name.to_string(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints: vec![LbEndpoint {
                endpoint: Endpoint { address },
                health_status: "HEALTHY",
                metadata: None,
                load_balancing_weight: 1,
            }],
        }],
    };
    let (discovery_type, lb_policy, load_assignment, upstream_bind_source) =
        if let Some((host, port)) = endpoint {
            // A Sidecar ingress listener's defaultEndpoint.
            (
                DiscoveryType::Static,
                LbPolicy::RoundRobin,
                Some(static_to(Address::new(&host, port))),
                None,
            )
        } else if ctx.version.inbound_to_pod_ip() {
            (
                DiscoveryType::OriginalDst,
                LbPolicy::ClusterProvided,
                None,
                Some("127.0.0.6".to_string()),
            )
        } else {
            (
                DiscoveryType::Static,
                LbPolicy::RoundRobin,
                Some(static_to(Address::new("127.0.0.1", target_port))),
                None,
            )
        };
    // findOrCreateService: without a Service on the port, the Sidecar's
    // own name stands in.
    let (service, service_name, service_namespace) = match svc {
        Some(s) => (s.hostname.clone(), s.name.clone(), s.namespace.clone()),
        None => {
            let sc = ctx.sidecar_resource();
            let n = sc.map(|s| s.meta.name.clone()).unwrap_or_default();
            let ns = sc.map(|s| s.meta.ns().to_string()).unwrap_or_default();
            (format!("{n}.{ns}"), n, ns)
        }
    };
    Cluster {
        name: name.to_string(),
        discovery_type,
        connect_timeout: Duration::from_secs(10),
        lb_policy,
        circuit_breakers: CircuitBreakers {
            thresholds: vec![Thresholds::default()],
        },
        transport_socket: None,
        transport_socket_matches: vec![],
        http2_protocol_options: http2,
        max_requests_per_connection: None,
        idle_timeout: None,
        auto_sni: false,
        outlier_detection: None,
        healthy_panic_threshold: None,
        upstream_bind_source,
        load_assignment,
        metadata: ClusterMetadata {
            direction: ClusterDirection::Inbound,
            service,
            service_name,
            service_namespace,
            port: target_port,
            subset: String::new(),
            destination_rule: String::new(),
        },
    }
}

/// PassthroughCluster, BlackHoleCluster, InboundPassthroughCluster.
pub fn special(name: &str) -> Cluster {
    let (t, lb) = if name == names::BLACKHOLE_CLUSTER {
        (DiscoveryType::Static, LbPolicy::RoundRobin)
    } else {
        (DiscoveryType::OriginalDst, LbPolicy::ClusterProvided)
    };
    Cluster {
        name: name.to_string(),
        discovery_type: t,
        connect_timeout: Duration::from_secs(10),
        lb_policy: lb,
        circuit_breakers: CircuitBreakers {
            thresholds: vec![Thresholds::default()],
        },
        transport_socket: None,
        transport_socket_matches: vec![],
        http2_protocol_options: false,
        max_requests_per_connection: None,
        idle_timeout: None,
        auto_sni: false,
        upstream_bind_source: None,
        outlier_detection: None,
        healthy_panic_threshold: None,
        load_assignment: None,
        metadata: ClusterMetadata {
            direction: ClusterDirection::Special,
            service: String::new(),
            service_name: String::new(),
            service_namespace: String::new(),
            port: 0,
            subset: String::new(),
            destination_rule: String::new(),
        },
    }
}
