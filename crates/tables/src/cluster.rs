//! Clusters and their endpoints.

use serde::Serialize;

use crate::listener::{Address, CommonTlsContext};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DiscoveryType {
    Static,
    StrictDns,
    LogicalDns,
    Eds,
    OriginalDst,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LbPolicy {
    RoundRobin,
    LeastRequest,
    Random,
    ClusterProvided,
}

/// Which way a cluster points, for `proxy-config clusters`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ClusterDirection {
    Outbound,
    Inbound,
    /// PassthroughCluster, BlackHoleCluster, InboundPassthroughCluster.
    Special,
}

#[derive(Debug, Clone, Serialize)]
pub struct Cluster {
    pub name: String,
    #[serde(rename = "type")]
    pub discovery_type: DiscoveryType,
    pub connect_timeout: crate::types::Duration,
    pub lb_policy: LbPolicy,
    pub circuit_breakers: CircuitBreakers,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transport_socket: Option<UpstreamTransportSocket>,
    /// Auto mTLS: endpoints labelled `tlsMode: istio` get mTLS, others plain.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub transport_socket_matches: Vec<TransportSocketMatch>,
    /// Upstream HTTP version: `true` when the port speaks HTTP/2 (gRPC, `http2`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub http2_protocol_options: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_requests_per_connection: Option<u32>,
    /// `upstream_http_protocol_options.auto_sni` (with
    /// `auto_san_validation`): TLS origination without a configured SNI
    /// sends each request's host and checks the certificate against it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub auto_sni: bool,
    /// `common_http_protocol_options.idle_timeout`: an upstream connection
    /// idle this long is closed (DestinationRule `http.idleTimeout`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<crate::types::Duration>,
    /// `upstream_bind_config.source_address`: istiod's inbound clusters
    /// connect from `127.0.0.6` (Istio 1.10+), so iptables lets the
    /// connection reach the application.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_bind_source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<OutlierDetection>,
    /// `common_lb_config.healthy_panic_threshold` (percent); Envoy's
    /// default is 50 when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthy_panic_threshold: Option<f64>,
    /// Inline endpoints for STATIC / STRICT_DNS clusters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_assignment: Option<ClusterLoadAssignment>,
    /// Display data for `proxy-config clusters`.
    pub metadata: ClusterMetadata,
}

/// Envoy's `OutlierDetection` as istiod fills it
/// (cluster_traffic_policy.go `applyOutlierDetection`); unset fields take
/// Envoy's defaults (see the accessors).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct OutlierDetection {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consecutive_5xx: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enforcing_consecutive_5xx: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consecutive_gateway_failure: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enforcing_consecutive_gateway_failure: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<crate::types::Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_ejection_time: Option<crate::types::Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_ejection_percent: Option<u32>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub split_external_local_origin_errors: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consecutive_local_origin_failure: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enforcing_consecutive_local_origin_failure: Option<u32>,
    /// istiod always turns success-rate ejection off (0).
    pub enforcing_success_rate: u32,
}

impl OutlierDetection {
    /// Threshold and enforcement (percent) of consecutive 5xx (Envoy: 5, 100).
    pub fn consecutive_5xx(&self) -> (u32, u32) {
        (
            self.consecutive_5xx.unwrap_or(5),
            self.enforcing_consecutive_5xx.unwrap_or(100),
        )
    }
    /// ... of consecutive gateway failures (Envoy: 5, 0).
    pub fn consecutive_gateway_failure(&self) -> (u32, u32) {
        (
            self.consecutive_gateway_failure.unwrap_or(5),
            self.enforcing_consecutive_gateway_failure.unwrap_or(0),
        )
    }
    /// ... of consecutive local-origin failures (Envoy: 5, 100).
    pub fn consecutive_local_origin_failure(&self) -> (u32, u32) {
        (
            self.consecutive_local_origin_failure.unwrap_or(5),
            self.enforcing_consecutive_local_origin_failure
                .unwrap_or(100),
        )
    }
    /// Sweep interval (Envoy: 10 s).
    pub fn interval(&self) -> std::time::Duration {
        self.interval
            .map(|d| d.get())
            .unwrap_or(std::time::Duration::from_secs(10))
    }
    /// Base ejection time (Envoy: 30 s).
    pub fn base_ejection_time(&self) -> std::time::Duration {
        self.base_ejection_time
            .map(|d| d.get())
            .unwrap_or(std::time::Duration::from_secs(30))
    }
    /// Envoy: 10%.
    pub fn max_ejection_percent(&self) -> u32 {
        self.max_ejection_percent.unwrap_or(10).min(100)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ClusterMetadata {
    pub direction: ClusterDirection,
    /// Service FQDN (empty for special clusters).
    pub service: String,
    /// The service's name and namespace (`filter_metadata.istio.services`).
    pub service_name: String,
    pub service_namespace: String,
    pub port: u16,
    pub subset: String,
    /// `name.namespace` of the DestinationRule applied, if any.
    pub destination_rule: String,
}

/// Envoy's per-priority thresholds; istiod sets each to the maximum unless a
/// DestinationRule lowers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CircuitBreakers {
    pub thresholds: Vec<Thresholds>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Thresholds {
    pub max_connections: u32,
    pub max_pending_requests: u32,
    pub max_requests: u32,
    pub max_retries: u32,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            max_connections: u32::MAX,
            max_pending_requests: u32::MAX,
            max_requests: u32::MAX,
            max_retries: u32::MAX,
        }
    }
}

impl CircuitBreakers {
    pub fn default_thresholds(&self) -> Thresholds {
        self.thresholds.first().copied().unwrap_or_default()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct UpstreamTransportSocket {
    pub name: String,
    pub typed_config: UpstreamTlsContext,
}

/// Which Istio TLS mode produced an upstream TLS context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum UpstreamTlsMode {
    Simple,
    Mutual,
    IstioMutual,
}

#[derive(Debug, Clone, Serialize)]
pub struct UpstreamTlsContext {
    #[serde(rename = "@type")]
    pub type_url: &'static str,
    pub common_tls_context: CommonTlsContext,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub sni: String,
    /// meshsim annotation: the Istio mode this context implements.
    pub istio_mode: UpstreamTlsMode,
}

#[derive(Debug, Clone, Serialize)]
pub struct TransportSocketMatch {
    pub name: String,
    #[serde(rename = "match")]
    pub match_: serde_json::Value,
    /// `None` = `envoy.transport_sockets.raw_buffer` (plaintext).
    pub transport_socket: Option<UpstreamTransportSocket>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClusterLoadAssignment {
    pub cluster_name: String,
    pub endpoints: Vec<LocalityLbEndpoints>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LocalityLbEndpoints {
    pub lb_endpoints: Vec<LbEndpoint>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LbEndpoint {
    pub endpoint: Endpoint,
    pub health_status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<EndpointMetadata>,
    pub load_balancing_weight: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct Endpoint {
    /// A pod IP, or a DNS name for STRICT_DNS clusters.
    pub address: Address,
}

#[derive(Debug, Clone, Serialize)]
pub struct EndpointMetadata {
    pub filter_metadata: EndpointFilterMetadata,
}

#[derive(Debug, Clone, Serialize)]
pub struct EndpointFilterMetadata {
    #[serde(rename = "envoy.transport_socket_match")]
    pub transport_socket_match: TlsModeLabel,
    pub istio: EndpointIstioMetadata,
}

#[derive(Debug, Clone, Serialize)]
pub struct TlsModeLabel {
    #[serde(rename = "tlsMode")]
    pub tls_mode: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct EndpointIstioMetadata {
    /// `pod;namespace;app;version;cluster` as istiod writes it.
    pub workload: String,
}

impl LbEndpoint {
    /// Whether auto mTLS should originate mTLS to this endpoint.
    pub fn tls_mode_istio(&self) -> bool {
        self.metadata
            .as_ref()
            .is_some_and(|m| m.filter_metadata.transport_socket_match.tls_mode == "istio")
    }
}

impl ClusterLoadAssignment {
    pub fn all(&self) -> impl Iterator<Item = &LbEndpoint> {
        self.endpoints.iter().flat_map(|l| l.lb_endpoints.iter())
    }
}
