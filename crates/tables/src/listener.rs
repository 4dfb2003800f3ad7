//! Listeners, filter chains and network filters.

use serde::Serialize;

use crate::route::RouteConfiguration;
use crate::types::TransportProtocol;

/// `address.socket_address` in Envoy JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Address {
    pub socket_address: SocketAddress,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SocketAddress {
    pub address: String,
    pub port_value: u16,
}

impl Address {
    pub fn new(address: impl Into<String>, port: u16) -> Self {
        Self {
            socket_address: SocketAddress {
                address: address.into(),
                port_value: port,
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TrafficDirection {
    Inbound,
    Outbound,
}

#[derive(Debug, Clone, Serialize)]
pub struct Listener {
    pub name: String,
    pub address: Address,
    pub traffic_direction: TrafficDirection,
    /// `virtualOutbound` hands connections to the listener for their
    /// original destination.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub use_original_dst: bool,
    /// False for the per-port listeners that only receive connections handed
    /// over by `virtualOutbound`.
    pub bind_to_port: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub listener_filters: Vec<NamedFilter>,
    /// How long the listener filters may take (only with filters).
    #[serde(skip)]
    pub listener_filters_timeout: ListenerFiltersTimeout,
    pub filter_chains: Vec<FilterChain>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_filter_chain: Option<FilterChain>,
}

/// `listener_filters_timeout` with `continue_on_listener_filters_timeout`,
/// as istiod writes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ListenerFiltersTimeout {
    /// `0s`, continuing (listener.go, listener_inbound.go: the mesh's
    /// `protocolDetectionTimeout`, 0 by default): the inspectors wait as
    /// long as the client takes.
    #[default]
    Disabled,
    /// Not set (gateway.go `buildGatewayListener`): Envoy's default
    /// [`ENVOY_LISTENER_FILTERS_TIMEOUT`], then the connection is closed.
    EnvoyDefault,
}

/// Envoy's `listener_filters_timeout` when a listener sets none.
pub const ENVOY_LISTENER_FILTERS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

impl ListenerFiltersTimeout {
    /// The deadline for the inspectors, and whether the connection goes on
    /// (with what they learned) when it passes.
    pub fn deadline(self) -> Option<(std::time::Duration, bool)> {
        match self {
            ListenerFiltersTimeout::Disabled => None,
            ListenerFiltersTimeout::EnvoyDefault => Some((ENVOY_LISTENER_FILTERS_TIMEOUT, false)),
        }
    }
}

/// A filter referred to by name only (listener filters).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NamedFilter {
    pub name: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct FilterChain {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    pub filter_chain_match: FilterChainMatch,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transport_socket: Option<DownstreamTransportSocket>,
    pub filters: Vec<NetworkFilter>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FilterChainMatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination_port: Option<u16>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub prefix_ranges: Vec<CidrRange>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub server_names: Vec<String>,
    #[serde(skip_serializing_if = "TransportProtocol::is_any")]
    pub transport_protocol: TransportProtocol,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub application_protocols: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CidrRange {
    pub address_prefix: String,
    pub prefix_len: u8,
}

/// `transport_socket` of a filter chain: TLS termination.
#[derive(Debug, Clone, Serialize)]
pub struct DownstreamTransportSocket {
    pub name: String,
    pub typed_config: DownstreamTlsContext,
}

#[derive(Debug, Clone, Serialize)]
pub struct DownstreamTlsContext {
    #[serde(rename = "@type")]
    pub type_url: &'static str,
    pub common_tls_context: CommonTlsContext,
    pub require_client_certificate: bool,
}

pub const DOWNSTREAM_TLS_TYPE: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext";
pub const UPSTREAM_TLS_TYPE: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext";
pub const TLS_SOCKET: &str = "envoy.transport_sockets.tls";

/// Certificates and validation, by SDS secret name as istiod sets them:
/// `default` (workload certificate), `ROOTCA` (mesh CA),
/// `kubernetes://NAME` (a credentialName), `file-cert:...` (files).
#[derive(Debug, Clone, Default, Serialize)]
pub struct CommonTlsContext {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub alpn_protocols: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tls_certificate_sds_secret_configs: Vec<SdsSecretConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validation_context: Option<ValidationContext>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SdsSecretConfig {
    pub name: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ValidationContext {
    /// SDS secret holding the trusted CA (`ROOTCA`, `kubernetes://NAME-cacert`);
    /// `None` with SIMPLE TLS means the system trust store.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trusted_ca_sds: Option<String>,
    /// SPIFFE ids or DNS names the peer certificate must carry.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub match_subject_alt_names: Vec<String>,
    /// DestinationRule `insecureSkipVerify`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub insecure_skip_verify: bool,
}

/// A network filter: `name` plus `typed_config`.
#[derive(Debug, Clone, Serialize)]
pub struct NetworkFilter {
    pub name: String,
    pub typed_config: NetworkFilterConfig,
}

#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum NetworkFilterConfig {
    HttpConnectionManager(Box<HttpConnectionManager>),
    TcpProxy(TcpProxy),
    /// `envoy.filters.network.rbac`, understood when the tables are built.
    Rbac(NetworkRbac),
    /// Any other filter (e.g. `istio.stats`, or one added by an EnvoyFilter):
    /// kept as the JSON it was given.
    Opaque(serde_json::Value),
}

pub const RBAC: &str = "envoy.filters.network.rbac";

/// Envoy's network RBAC filter as meshsim enforces it. Policies are kept
/// by name only: with none, `ALLOW` denies every connection and `DENY`
/// denies none (rbac_filter.cc); what a policy's principals and
/// permissions match is not evaluated. Serializes as the config given.
#[derive(Debug, Clone)]
pub struct NetworkRbac {
    pub decision: RbacDecision,
    pub config: serde_json::Value,
}

/// What the filter does to every connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RbacDecision {
    /// No `rules` (shadow only) or a `DENY` with no policy: nothing is denied.
    AllowAll,
    /// `ALLOW` with no policy matches nothing: every connection is denied.
    DenyAll,
    /// Policies exist: meshsim does not evaluate them and lets traffic pass.
    NotEvaluated,
}

impl NetworkRbac {
    /// Reads the filter's `typed_config` (snake_case or camelCase keys).
    pub fn from_config(config: serde_json::Value) -> Self {
        let decision = match config.get("rules") {
            None => RbacDecision::AllowAll,
            Some(rules) => {
                let action = rules
                    .get("action")
                    .and_then(|a| a.as_str())
                    .unwrap_or("ALLOW");
                let no_policies = rules
                    .get("policies")
                    .and_then(|p| p.as_object())
                    .is_none_or(|p| p.is_empty());
                match (action, no_policies) {
                    (_, false) => RbacDecision::NotEvaluated,
                    ("ALLOW", true) => RbacDecision::DenyAll,
                    _ => RbacDecision::AllowAll,
                }
            }
        };
        Self { decision, config }
    }
}

impl Serialize for NetworkRbac {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.config.serialize(s)
    }
}

pub const HCM: &str = "envoy.filters.network.http_connection_manager";
pub const TCP_PROXY: &str = "envoy.filters.network.tcp_proxy";

#[derive(Debug, Clone, Serialize)]
pub struct HttpConnectionManager {
    #[serde(rename = "@type")]
    pub type_url: &'static str,
    pub stat_prefix: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rds: Option<Rds>,
    /// Inline route configuration (inbound chains).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route_config: Option<RouteConfiguration>,
    pub http_filters: Vec<HttpFilter>,
    pub http_protocol_options: HttpProtocolOptions,
    /// Gateways use the downstream address as the client address.
    pub use_remote_address: bool,
    /// Trusted proxies in front (`x-forwarded-for` hops to skip).
    pub xff_num_trusted_hops: u32,
    /// RFC 3986 path normalisation (meshConfig `pathNormalization`).
    pub normalize_path: bool,
    pub merge_slashes: bool,
    pub path_with_escaped_slashes_action: EscapedSlashesAction,
    /// The `server` header on responses; `None` is Envoy's default
    /// (`envoy`). istiod sets `istio-envoy` except on sidecar outbound
    /// (util/proxy_headers.go).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// What happens to `x-forwarded-client-cert`; Envoy's default
    /// (`SANITIZE`: remove it) when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forward_client_cert_details: Option<ForwardClientCertDetails>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set_current_client_cert_details: Option<SetCurrentClientCertDetails>,
}

/// `HttpConnectionManager.PathWithEscapedSlashesAction` (istiod writes
/// `KEEP_UNCHANGED` unless the mesh asks to decode).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EscapedSlashesAction {
    #[default]
    KeepUnchanged,
    RejectRequest,
    UnescapeAndRedirect,
    UnescapeAndForward,
}

/// Envoy's `HttpConnectionManager.ForwardClientCertDetails`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ForwardClientCertDetails {
    Sanitize,
    ForwardOnly,
    AppendForward,
    SanitizeSet,
    AlwaysForwardOnly,
}

/// The parts of the client certificate added to `x-forwarded-client-cert`
/// (`By` and `Hash` are always there).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SetCurrentClientCertDetails {
    pub subject: bool,
    pub dns: bool,
    pub uri: bool,
}

pub const HCM_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
pub const TCP_PROXY_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy";

#[derive(Debug, Clone, Serialize)]
pub struct Rds {
    pub route_config_name: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct HttpProtocolOptions {
    pub accept_http_10: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct HttpFilter {
    pub name: String,
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    pub typed_config: serde_json::Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct TcpProxy {
    #[serde(rename = "@type")]
    pub type_url: &'static str,
    pub stat_prefix: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weighted_clusters: Option<crate::route::WeightedClusters>,
}

impl NetworkFilter {
    pub fn hcm(&self) -> Option<&HttpConnectionManager> {
        match &self.typed_config {
            NetworkFilterConfig::HttpConnectionManager(h) => Some(h),
            _ => None,
        }
    }

    pub fn tcp_proxy(&self) -> Option<&TcpProxy> {
        match &self.typed_config {
            NetworkFilterConfig::TcpProxy(t) => Some(t),
            _ => None,
        }
    }
}

impl FilterChain {
    /// The chain's HTTP connection manager, if it has one.
    pub fn hcm(&self) -> Option<&HttpConnectionManager> {
        self.filters.iter().find_map(NetworkFilter::hcm)
    }

    /// The chain's TCP proxy, if it has one.
    pub fn tcp_proxy(&self) -> Option<&TcpProxy> {
        self.filters.iter().find_map(NetworkFilter::tcp_proxy)
    }
}
