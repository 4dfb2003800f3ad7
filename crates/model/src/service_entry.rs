//! `networking.istio.io` ServiceEntry.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::common::{de_port, NotSimulated, Unsimulated, WorkloadSelector};
use crate::report_unsimulated;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceEntrySpec {
    pub hosts: Vec<String>,
    #[serde(default, deserialize_with = "crate::common::null_is_default")]
    pub addresses: Vec<String>,
    #[serde(default, deserialize_with = "crate::common::null_is_default")]
    pub ports: Vec<SePort>,
    #[serde(default)]
    pub location: Option<SeLocation>,
    #[serde(default)]
    pub resolution: Option<SeResolution>,
    #[serde(default, deserialize_with = "crate::common::null_is_default")]
    pub endpoints: Vec<WorkloadEntrySpec>,
    #[serde(default)]
    pub workload_selector: Option<WorkloadSelector>,
    #[serde(default)]
    pub subject_alt_names: NotSimulated,
    #[serde(default, deserialize_with = "crate::common::null_is_default")]
    pub export_to: Vec<String>,
}

impl Unsimulated for ServiceEntrySpec {
    fn unsimulated(&self, path: &str, out: &mut Vec<(String, (u64, u64))>) {
        report_unsimulated!(self, path, out; subject_alt_names => "subjectAltNames");
        for (i, e) in self.endpoints.iter().enumerate() {
            let p = format!("{path}.endpoints[{i}]");
            report_unsimulated!(e, p, out; network => "network", locality => "locality", weight => "weight");
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SePort {
    #[serde(deserialize_with = "de_port")]
    pub number: u16,
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub target_port: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SeLocation {
    MeshExternal,
    MeshInternal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SeResolution {
    None,
    Static,
    Dns,
    DnsRoundRobin,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadEntrySpec {
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default, deserialize_with = "crate::common::null_is_default")]
    pub ports: BTreeMap<String, u32>,
    #[serde(default, deserialize_with = "crate::common::null_is_default")]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub network: NotSimulated,
    #[serde(default)]
    pub locality: NotSimulated,
    #[serde(default)]
    pub weight: NotSimulated,
    #[serde(default)]
    pub service_account: Option<String>,
}

#[cfg(test)]
mod tests {
    #[test]
    fn port_zero_is_rejected() {
        let r: Result<super::SePort, _> = serde_saphyr::from_str("number: 0\nname: x\n");
        assert!(r.is_err());
    }
}
