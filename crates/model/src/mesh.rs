//! The mesh config as Istio keeps it: ConfigMap `istio` in `istio-system`,
//! key `mesh`, a YAML document of `MeshConfig`.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::common::{Duration, NotSimulated, Unsimulated};
use crate::report_unsimulated;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MeshConfig {
    #[serde(default)]
    pub outbound_traffic_policy: Option<OutboundTrafficPolicy>,
    /// Istio's default is true.
    #[serde(default)]
    pub enable_auto_mtls: Option<bool>,
    #[serde(default)]
    pub access_log_file: Option<String>,
    #[serde(default)]
    pub access_log_encoding: Option<AccessLogEncoding>,
    #[serde(default)]
    pub access_log_format: Option<String>,
    #[serde(default)]
    pub default_config: Option<ProxyConfig>,
    #[serde(default)]
    pub root_namespace: Option<String>,
    #[serde(default)]
    pub trust_domain: Option<String>,
    #[serde(default)]
    pub connect_timeout: Option<Duration>,
    /// How the HTTP connection manager normalises paths.
    #[serde(default)]
    pub path_normalization: Option<PathNormalizationConfig>,
    #[serde(default)]
    pub protocol_detection_timeout: NotSimulated,
    #[serde(default)]
    pub ingress_service: NotSimulated,
    #[serde(default)]
    pub ingress_class: NotSimulated,
    #[serde(default)]
    pub ingress_controller_mode: NotSimulated,
    #[serde(default)]
    pub enable_tracing: NotSimulated,
    #[serde(default)]
    pub enable_prometheus_merge: NotSimulated,
    #[serde(default)]
    pub extension_providers: NotSimulated,
    #[serde(default)]
    pub default_providers: NotSimulated,
    #[serde(default)]
    pub locality_lb_setting: NotSimulated,
    #[serde(default)]
    pub h2_upgrade_policy: NotSimulated,
    #[serde(default)]
    pub dns_refresh_rate: NotSimulated,
    #[serde(default)]
    pub tcp_keepalive: NotSimulated,
    #[serde(default)]
    pub discovery_selectors: NotSimulated,
    #[serde(default)]
    pub default_service_export_to: Option<Vec<String>>,
    #[serde(default)]
    pub default_virtual_service_export_to: Option<Vec<String>>,
    #[serde(default)]
    pub default_destination_rule_export_to: Option<Vec<String>>,
    #[serde(default)]
    pub trust_domain_aliases: NotSimulated,
    #[serde(default)]
    pub ca_certificates: NotSimulated,
    #[serde(default)]
    pub service_settings: NotSimulated,
    #[serde(default)]
    pub mesh_mtls: NotSimulated,
    #[serde(default)]
    pub tls_defaults: NotSimulated,
    #[serde(default)]
    pub inbound_cluster_stat_name: NotSimulated,
    #[serde(default)]
    pub outbound_cluster_stat_name: NotSimulated,
    #[serde(default)]
    pub verify_certificate_at_client: NotSimulated,
}

impl Unsimulated for MeshConfig {
    fn unsimulated(&self, path: &str, out: &mut Vec<(String, (u64, u64))>) {
        report_unsimulated!(self, path, out;
            ingress_controller_mode => "ingressControllerMode", enable_tracing => "enableTracing",
            protocol_detection_timeout => "protocolDetectionTimeout", ingress_service => "ingressService",
            ingress_class => "ingressClass",
            enable_prometheus_merge => "enablePrometheusMerge", extension_providers => "extensionProviders",
            default_providers => "defaultProviders", locality_lb_setting => "localityLbSetting",
            h2_upgrade_policy => "h2UpgradePolicy", dns_refresh_rate => "dnsRefreshRate",
            tcp_keepalive => "tcpKeepalive", discovery_selectors => "discoverySelectors",
            trust_domain_aliases => "trustDomainAliases", ca_certificates => "caCertificates",
            service_settings => "serviceSettings", mesh_mtls => "meshMTLS", tls_defaults => "tlsDefaults",
            inbound_cluster_stat_name => "inboundClusterStatName",
            outbound_cluster_stat_name => "outboundClusterStatName",
            verify_certificate_at_client => "verifyCertificateAtClient");
        if let Some(o) = &self.outbound_traffic_policy {
            let p = format!("{path}.outboundTrafficPolicy");
            report_unsimulated!(o, p, out; egress_proxy => "egressProxy");
        }
        if let Some(pc) = &self.default_config {
            let p = format!("{path}.defaultConfig");
            if let Some(g) = &pc.gateway_topology {
                let gp = format!("{p}.gatewayTopology");
                report_unsimulated!(g, gp, out; forward_client_cert_details => "forwardClientCertDetails",
                    proxy_protocol => "proxyProtocol");
            }
            report_unsimulated!(pc, p, out; tracing => "tracing", proxy_stats_matcher => "proxyStatsMatcher",
                termination_drain_duration => "terminationDrainDuration", drain_duration => "drainDuration",
                image => "image", proxy_headers => "proxyHeaders",
                tracing_service_name => "tracingServiceName", status_port => "statusPort",
                concurrency => "concurrency", hold_application_until_proxy_starts => "holdApplicationUntilProxyStarts",
                discovery_address => "discoveryAddress");
        }
    }
}

/// `meshConfig.pathNormalization`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PathNormalizationConfig {
    #[serde(default)]
    pub normalization: Option<PathNormalization>,
}

/// `MeshConfig.ProxyPathNormalization.NormalizationType`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PathNormalization {
    /// istiod treats it as `BASE`.
    #[default]
    Default,
    None,
    Base,
    MergeSlashes,
    DecodeAndMergeSlashes,
}

/// `defaultConfig.gatewayTopology`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GatewayTopology {
    /// Trusted proxies in front of gateways: the HCM's `xff_num_trusted_hops`.
    #[serde(default)]
    pub num_trusted_proxies: Option<u32>,
    #[serde(default)]
    pub forward_client_cert_details: NotSimulated,
    #[serde(default)]
    pub proxy_protocol: NotSimulated,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OutboundTrafficPolicy {
    #[serde(default)]
    pub mode: OutboundMode,
    #[serde(default)]
    pub egress_proxy: NotSimulated,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OutboundMode {
    RegistryOnly,
    #[default]
    AllowAny,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AccessLogEncoding {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProxyConfig {
    /// `HTTP10: "1"` makes Envoy accept HTTP/1.0 (istiod's PILOT_HTTP10 per proxy).
    #[serde(default, deserialize_with = "crate::common::null_is_default")]
    pub proxy_metadata: BTreeMap<String, String>,
    #[serde(default)]
    pub concurrency: NotSimulated,
    #[serde(default)]
    pub hold_application_until_proxy_starts: NotSimulated,
    #[serde(default)]
    pub discovery_address: NotSimulated,
    #[serde(default)]
    pub tracing: NotSimulated,
    #[serde(default)]
    pub proxy_stats_matcher: NotSimulated,
    #[serde(default)]
    pub termination_drain_duration: NotSimulated,
    #[serde(default)]
    pub drain_duration: NotSimulated,
    #[serde(default)]
    pub image: NotSimulated,
    #[serde(default)]
    pub gateway_topology: Option<GatewayTopology>,
    #[serde(default)]
    pub proxy_headers: NotSimulated,
    #[serde(default)]
    pub tracing_service_name: NotSimulated,
    #[serde(default)]
    pub status_port: NotSimulated,
}

/// `install.istio.io/v1alpha1` IstioOperator: where `istioctl install`
/// users keep their mesh config (`spec.meshConfig`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IstioOperatorSpec {
    #[serde(default)]
    pub mesh_config: Option<MeshConfig>,
    #[serde(default)]
    pub profile: NotSimulated,
    #[serde(default)]
    pub tag: NotSimulated,
    #[serde(default)]
    pub hub: NotSimulated,
    #[serde(default)]
    pub revision: NotSimulated,
    #[serde(default)]
    pub namespace: NotSimulated,
    #[serde(default)]
    pub components: NotSimulated,
    #[serde(default)]
    pub values: NotSimulated,
    #[serde(default)]
    pub install_package_path: NotSimulated,
}

impl Unsimulated for IstioOperatorSpec {
    fn unsimulated(&self, path: &str, out: &mut Vec<(String, (u64, u64))>) {
        report_unsimulated!(self, path, out; profile => "profile", tag => "tag", hub => "hub", revision => "revision",
            namespace => "namespace", components => "components", values => "values", install_package_path => "installPackagePath");
        self.mesh_config
            .unsimulated(&format!("{path}.meshConfig"), out);
    }
}

/// The pod annotation `proxy.istio.io/config`: a ProxyConfig in YAML that
/// overrides the mesh's `defaultConfig` for this proxy.
pub const PROXY_CONFIG_ANNOTATION: &str = "proxy.istio.io/config";

/// Parses a `proxy.istio.io/config` annotation (fields meshsim does not
/// know are ignored here; the mesh config reports them).
pub fn parse_proxy_config_annotation(text: &str) -> Result<BTreeMap<String, String>, String> {
    #[derive(Deserialize, Default)]
    #[serde(rename_all = "camelCase")]
    struct Lenient {
        #[serde(default, deserialize_with = "crate::common::null_is_default")]
        proxy_metadata: BTreeMap<String, String>,
    }
    serde_saphyr::from_str::<Lenient>(text)
        .map(|l| l.proxy_metadata)
        .map_err(|e| e.to_string())
}
