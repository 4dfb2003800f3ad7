//! The filters istiod puts in chains, by Istio version.

use meshsim_tables::*;

use meshsim_model::mesh::PathNormalization;

use crate::version::IstioVersion;
use crate::world::MeshSettings;

fn http_filter(name: &str) -> HttpFilter {
    HttpFilter {
        name: name.into(),
        typed_config: serde_json::Value::Null,
    }
}

/// HTTP filters of an HCM. Outbound sidecar chains carry `istio.alpn`
/// (which sets `istio-http/1.1`/`istio-h2` ALPN on mTLS upstreams).
pub fn http_filters(version: IstioVersion, outbound_sidecar: bool) -> Vec<HttpFilter> {
    let mut v = Vec::new();
    if version.builtin_stats_filters() {
        v.push(http_filter("istio.metadata_exchange"));
    }
    if outbound_sidecar {
        v.push(http_filter("istio.alpn"));
    }
    v.push(http_filter("envoy.filters.http.fault"));
    v.push(http_filter("envoy.filters.http.cors"));
    if version.builtin_stats_filters() {
        v.push(http_filter("istio.stats"));
    }
    v.push(http_filter("envoy.filters.http.router"));
    v
}

/// Where an HTTP connection manager sits: it decides the filters, the
/// client address and what happens to `x-forwarded-client-cert`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HcmRole {
    SidecarOutbound,
    SidecarInbound,
    Gateway,
}

pub fn hcm(
    stat_prefix: String,
    rds: Option<String>,
    inline: Option<RouteConfiguration>,
    version: IstioVersion,
    role: HcmRole,
    accept_http_10: bool,
    mesh: &MeshSettings,
) -> NetworkFilter {
    // listener_builder.go buildHTTPConnectionManager: meshConfig
    // pathNormalization (BASE by default) and escaped slashes kept.
    let (normalize_path, merge_slashes, escaped) = match mesh.path_normalization {
        PathNormalization::None => (false, false, EscapedSlashesAction::KeepUnchanged),
        PathNormalization::Default | PathNormalization::Base => {
            (true, false, EscapedSlashesAction::KeepUnchanged)
        }
        PathNormalization::MergeSlashes => (true, true, EscapedSlashesAction::KeepUnchanged),
        PathNormalization::DecodeAndMergeSlashes => {
            (true, true, EscapedSlashesAction::UnescapeAndForward)
        }
    };
    // listener_builder.go: inbound sidecars APPEND_FORWARD the caller's
    // certificate; gateways default to meshConfig
    // `defaultConfig.gatewayTopology.forwardClientCertDetails` = SANITIZE_SET;
    // outbound sidecars keep Envoy's default, SANITIZE. Both set Subject,
    // DNS and URI.
    let forward = match role {
        HcmRole::SidecarOutbound => None,
        HcmRole::SidecarInbound => Some(ForwardClientCertDetails::AppendForward),
        HcmRole::Gateway => Some(ForwardClientCertDetails::SanitizeSet),
    };
    let set_current = forward.map(|_| SetCurrentClientCertDetails {
        subject: true,
        dns: true,
        uri: true,
    });
    NetworkFilter {
        name: HCM.into(),
        typed_config: NetworkFilterConfig::HttpConnectionManager(Box::new(HttpConnectionManager {
            type_url: HCM_TYPE,
            stat_prefix,
            rds: rds.map(|route_config_name| Rds { route_config_name }),
            route_config: inline,
            http_filters: http_filters(version, role == HcmRole::SidecarOutbound),
            http_protocol_options: HttpProtocolOptions { accept_http_10 },
            use_remote_address: role == HcmRole::Gateway,
            // gateway.go: gatewayTopology.numTrustedProxies, gateways only.
            xff_num_trusted_hops: if role == HcmRole::Gateway {
                mesh.num_trusted_proxies
            } else {
                0
            },
            normalize_path,
            merge_slashes,
            path_with_escaped_slashes_action: escaped,
            server_name: (role != HcmRole::SidecarOutbound).then(|| "istio-envoy".to_string()),
            forward_client_cert_details: forward,
            set_current_client_cert_details: set_current,
        })),
    }
}

/// Network filters of a TCP chain: `istio.stats` (when built in) then the proxy.
pub fn tcp_filters(
    version: IstioVersion,
    stat_prefix: String,
    cluster: Option<String>,
    weighted: Option<WeightedClusters>,
) -> Vec<NetworkFilter> {
    let mut v = Vec::new();
    if version.builtin_stats_filters() {
        v.push(NetworkFilter {
            name: "istio.stats".into(),
            typed_config: NetworkFilterConfig::Opaque(
                serde_json::json!({"@type": "type.googleapis.com/stats.PluginConfig"}),
            ),
        });
    }
    v.push(NetworkFilter {
        name: TCP_PROXY.into(),
        typed_config: NetworkFilterConfig::TcpProxy(TcpProxy {
            type_url: TCP_PROXY_TYPE,
            stat_prefix,
            cluster,
            weighted_clusters: weighted,
        }),
    });
    v
}

pub fn listener_filters(names: &[&str]) -> Vec<NamedFilter> {
    names
        .iter()
        .map(|n| NamedFilter {
            name: n.to_string(),
        })
        .collect()
}

pub const TLS_INSPECTOR: &str = "envoy.filters.listener.tls_inspector";
pub const HTTP_INSPECTOR: &str = "envoy.filters.listener.http_inspector";
pub const ORIGINAL_DST: &str = "envoy.filters.listener.original_dst";

/// A server-side TLS context with the workload certificate (mTLS inbound).
pub fn istio_downstream_tls(alpn: &[&str]) -> DownstreamTransportSocket {
    DownstreamTransportSocket {
        name: TLS_SOCKET.into(),
        typed_config: DownstreamTlsContext {
            type_url: DOWNSTREAM_TLS_TYPE,
            common_tls_context: CommonTlsContext {
                alpn_protocols: alpn.iter().map(|s| s.to_string()).collect(),
                tls_certificate_sds_secret_configs: vec![SdsSecretConfig {
                    name: "default".into(),
                }],
                validation_context: Some(ValidationContext {
                    trusted_ca_sds: Some("ROOTCA".into()),
                    match_subject_alt_names: vec![],
                    insecure_skip_verify: false,
                }),
            },
            require_client_certificate: true,
        },
    }
}
