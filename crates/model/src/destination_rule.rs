//! `networking.istio.io` DestinationRule.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::common::{Duration, MatchLabelsSelector, NotSimulated, Unsimulated};
use crate::report_unsimulated;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DestinationRuleSpec {
    pub host: String,
    #[serde(default)]
    pub traffic_policy: Option<TrafficPolicy>,
    #[serde(default, deserialize_with = "crate::common::null_is_default")]
    pub subsets: Vec<Subset>,
    #[serde(default)]
    pub workload_selector: Option<MatchLabelsSelector>,
    #[serde(default, deserialize_with = "crate::common::null_is_default")]
    pub export_to: Vec<String>,
}

impl Unsimulated for DestinationRuleSpec {
    fn unsimulated(&self, path: &str, out: &mut Vec<(String, (u64, u64))>) {
        self.traffic_policy
            .unsimulated(&format!("{path}.trafficPolicy"), out);
        for (i, s) in self.subsets.iter().enumerate() {
            s.traffic_policy
                .unsimulated(&format!("{path}.subsets[{i}].trafficPolicy"), out);
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Subset {
    pub name: String,
    #[serde(default, deserialize_with = "crate::common::null_is_default")]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub traffic_policy: Option<TrafficPolicy>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrafficPolicy {
    #[serde(default)]
    pub connection_pool: Option<ConnectionPoolSettings>,
    #[serde(default)]
    pub tls: Option<ClientTlsSettings>,
    #[serde(default)]
    pub load_balancer: Option<LoadBalancerSettings>,
    #[serde(default, deserialize_with = "crate::common::null_is_default")]
    pub port_level_settings: Vec<PortTrafficPolicy>,
    #[serde(default)]
    pub outlier_detection: Option<OutlierDetection>,
    #[serde(default)]
    pub tunnel: NotSimulated,
    #[serde(default)]
    pub proxy_protocol: NotSimulated,
    #[serde(default)]
    pub retry_budget: NotSimulated,
}

impl Unsimulated for TrafficPolicy {
    fn unsimulated(&self, path: &str, out: &mut Vec<(String, (u64, u64))>) {
        report_unsimulated!(self, path, out;
            tunnel => "tunnel",
            proxy_protocol => "proxyProtocol", retry_budget => "retryBudget");
        if let Some(od) = &self.outlier_detection {
            report_unsimulated!(od, path, out; consecutive_errors => "outlierDetection.consecutiveErrors");
        }
        if let Some(lb) = &self.load_balancer {
            report_unsimulated!(lb, path, out; consistent_hash => "loadBalancer.consistentHash",
                locality_lb_setting => "loadBalancer.localityLbSetting", warmup => "loadBalancer.warmup",
                warmup_duration_secs => "loadBalancer.warmupDurationSecs");
        }
        if let Some(cp) = &self.connection_pool {
            if let Some(tcp) = &cp.tcp {
                report_unsimulated!(tcp, path, out; tcp_keepalive => "connectionPool.tcp.tcpKeepalive",
                    max_connection_duration => "connectionPool.tcp.maxConnectionDuration",
                    idle_timeout => "connectionPool.tcp.idleTimeout");
            }
            if let Some(http) = &cp.http {
                report_unsimulated!(http, path, out; h2_upgrade_policy => "connectionPool.http.h2UpgradePolicy",
                    use_client_protocol => "connectionPool.http.useClientProtocol",
                    max_concurrent_streams => "connectionPool.http.maxConcurrentStreams");
            }
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortTrafficPolicy {
    #[serde(default)]
    pub port: Option<crate::virtual_service::PortSelector>,
    #[serde(default)]
    pub connection_pool: Option<ConnectionPoolSettings>,
    #[serde(default)]
    pub tls: Option<ClientTlsSettings>,
    #[serde(default)]
    pub load_balancer: Option<LoadBalancerSettings>,
    #[serde(default)]
    pub outlier_detection: Option<OutlierDetection>,
}

/// Passive health checking: hosts that keep failing leave the load
/// balancing set for a while.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OutlierDetection {
    #[serde(rename = "consecutive5xxErrors", default)]
    pub consecutive_5xx_errors: Option<u32>,
    #[serde(default)]
    pub consecutive_gateway_errors: Option<u32>,
    /// Deprecated; istiod no longer reads it.
    #[serde(default)]
    pub consecutive_errors: NotSimulated,
    #[serde(default)]
    pub interval: Option<Duration>,
    #[serde(default)]
    pub base_ejection_time: Option<Duration>,
    #[serde(default)]
    pub max_ejection_percent: Option<i32>,
    #[serde(default)]
    pub min_health_percent: Option<i32>,
    #[serde(default)]
    pub split_external_local_origin_errors: bool,
    #[serde(default)]
    pub consecutive_local_origin_failures: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConnectionPoolSettings {
    #[serde(default)]
    pub tcp: Option<TcpSettings>,
    #[serde(default)]
    pub http: Option<HttpSettings>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpSettings {
    #[serde(default)]
    pub max_connections: Option<u32>,
    #[serde(default)]
    pub connect_timeout: Option<Duration>,
    #[serde(default)]
    pub tcp_keepalive: NotSimulated,
    #[serde(default)]
    pub max_connection_duration: NotSimulated,
    #[serde(default)]
    pub idle_timeout: NotSimulated,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpSettings {
    #[serde(default)]
    pub http1_max_pending_requests: Option<u32>,
    #[serde(default)]
    pub http2_max_requests: Option<u32>,
    #[serde(default)]
    pub max_requests_per_connection: Option<u32>,
    #[serde(default)]
    pub max_retries: Option<u32>,
    #[serde(default)]
    pub idle_timeout: Option<Duration>,
    #[serde(default)]
    pub h2_upgrade_policy: NotSimulated,
    #[serde(default)]
    pub use_client_protocol: NotSimulated,
    #[serde(default)]
    pub max_concurrent_streams: NotSimulated,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoadBalancerSettings {
    #[serde(default)]
    pub simple: Option<SimpleLb>,
    #[serde(default)]
    pub consistent_hash: NotSimulated,
    #[serde(default)]
    pub locality_lb_setting: NotSimulated,
    #[serde(default)]
    pub warmup: NotSimulated,
    #[serde(default)]
    pub warmup_duration_secs: NotSimulated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SimpleLb {
    Unspecified,
    LeastConn,
    Random,
    Passthrough,
    RoundRobin,
    LeastRequest,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientTlsSettings {
    #[serde(default)]
    pub mode: ClientTlsMode,
    #[serde(default)]
    pub client_certificate: Option<String>,
    #[serde(default)]
    pub private_key: Option<String>,
    #[serde(default)]
    pub ca_certificates: Option<String>,
    #[serde(default)]
    pub credential_name: Option<String>,
    #[serde(default, deserialize_with = "crate::common::null_is_default")]
    pub subject_alt_names: Vec<String>,
    #[serde(default)]
    pub sni: Option<String>,
    #[serde(default)]
    pub insecure_skip_verify: Option<bool>,
    #[serde(default)]
    pub ca_crl: NotSimulated,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ClientTlsMode {
    #[default]
    Disable,
    Simple,
    Mutual,
    IstioMutual,
}
