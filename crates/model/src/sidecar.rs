//! `networking.istio.io` Sidecar (egress host scoping and outbound policy).

use serde::Deserialize;

use crate::common::{NotSimulated, Unsimulated, WorkloadSelector};
use crate::report_unsimulated;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SidecarSpec {
    #[serde(default)]
    pub workload_selector: Option<WorkloadSelector>,
    #[serde(default, deserialize_with = "crate::common::null_is_default")]
    pub egress: Vec<IstioEgressListener>,
    #[serde(default)]
    pub outbound_traffic_policy: Option<crate::mesh::OutboundTrafficPolicy>,
    #[serde(default, deserialize_with = "crate::common::null_is_default")]
    pub ingress: Vec<IstioIngressListener>,
    #[serde(default)]
    pub inbound_connection_pool: NotSimulated,
}

impl Unsimulated for SidecarSpec {
    fn unsimulated(&self, path: &str, out: &mut Vec<(String, (u64, u64))>) {
        report_unsimulated!(self, path, out; inbound_connection_pool => "inboundConnectionPool");
        for (i, l) in self.ingress.iter().enumerate() {
            let p = format!("{path}.ingress[{i}]");
            report_unsimulated!(l, p, out; bind => "bind", capture_mode => "captureMode",
                tls => "tls", connection_pool => "connectionPool");
        }
        for (i, e) in self.egress.iter().enumerate() {
            let p = format!("{path}.egress[{i}]");
            report_unsimulated!(e, p, out; bind => "bind", capture_mode => "captureMode");
        }
    }
}

/// An ingress listener: the inbound port it serves and where it sends.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IstioIngressListener {
    pub port: SidecarPort,
    /// `127.0.0.1:PORT`, `0.0.0.0:PORT` (the pod's IP) or `unix://...`;
    /// absent: the original destination.
    #[serde(default)]
    pub default_endpoint: Option<String>,
    #[serde(default)]
    pub bind: NotSimulated,
    #[serde(default)]
    pub capture_mode: NotSimulated,
    #[serde(default)]
    pub tls: NotSimulated,
    #[serde(default)]
    pub connection_pool: NotSimulated,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SidecarPort {
    #[serde(deserialize_with = "crate::common::de_port")]
    pub number: u16,
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub target_port: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IstioEgressListener {
    #[serde(default, deserialize_with = "crate::common::null_is_default")]
    pub hosts: Vec<String>,
    /// The port this listener owns; none: the catch-all listener, for
    /// every port no other egress listener names.
    #[serde(default)]
    pub port: Option<SidecarPort>,
    #[serde(default)]
    pub bind: NotSimulated,
    #[serde(default)]
    pub capture_mode: NotSimulated,
}
