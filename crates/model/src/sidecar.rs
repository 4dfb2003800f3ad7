//! `networking.istio.io` Sidecar (egress host scoping and outbound policy).

use serde::Deserialize;

use crate::common::{NotSimulated, Unsimulated, WorkloadSelector};
use crate::report_unsimulated;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SidecarSpec {
    #[serde(default)]
    pub workload_selector: Option<WorkloadSelector>,
    #[serde(default)]
    pub egress: Vec<IstioEgressListener>,
    #[serde(default)]
    pub outbound_traffic_policy: Option<crate::mesh::OutboundTrafficPolicy>,
    #[serde(default)]
    pub ingress: NotSimulated,
    #[serde(default)]
    pub inbound_connection_pool: NotSimulated,
}

impl Unsimulated for SidecarSpec {
    fn unsimulated(&self, path: &str, out: &mut Vec<(String, (u64, u64))>) {
        report_unsimulated!(self, path, out; ingress => "ingress", inbound_connection_pool => "inboundConnectionPool");
        for (i, e) in self.egress.iter().enumerate() {
            let p = format!("{path}.egress[{i}]");
            report_unsimulated!(e, p, out; port => "port", bind => "bind", capture_mode => "captureMode");
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IstioEgressListener {
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub port: NotSimulated,
    #[serde(default)]
    pub bind: NotSimulated,
    #[serde(default)]
    pub capture_mode: NotSimulated,
}
