//! `networking.istio.io` EnvoyFilter. Patch values are free-form Envoy
//! configuration, kept as JSON so the compiler can merge them into tables.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::common::{de_opt_port, NotSimulated, Unsimulated, WorkloadSelector};
use crate::report_unsimulated;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvoyFilterSpec {
    #[serde(default)]
    pub workload_selector: Option<WorkloadSelector>,
    #[serde(default)]
    pub target_refs: NotSimulated,
    #[serde(default, deserialize_with = "crate::common::null_is_default")]
    pub config_patches: Vec<EnvoyConfigObjectPatch>,
    #[serde(default)]
    pub priority: i32,
}

impl Unsimulated for EnvoyFilterSpec {
    fn unsimulated(&self, path: &str, out: &mut Vec<(String, (u64, u64))>) {
        report_unsimulated!(self, path, out; target_refs => "targetRefs");
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvoyConfigObjectPatch {
    pub apply_to: ApplyTo,
    #[serde(rename = "match", default)]
    pub match_: Option<EnvoyConfigObjectMatch>,
    pub patch: Patch,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ApplyTo {
    Invalid,
    Listener,
    FilterChain,
    NetworkFilter,
    HttpFilter,
    RouteConfiguration,
    VirtualHost,
    HttpRoute,
    Cluster,
    ExtensionConfig,
    Bootstrap,
    ListenerFilter,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PatchContext {
    #[default]
    Any,
    SidecarInbound,
    SidecarOutbound,
    Gateway,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvoyConfigObjectMatch {
    #[serde(default)]
    pub context: PatchContext,
    #[serde(default)]
    pub proxy: Option<ProxyMatch>,
    #[serde(default)]
    pub listener: Option<ListenerMatch>,
    #[serde(default)]
    pub route_configuration: Option<RouteConfigurationMatch>,
    #[serde(default)]
    pub cluster: Option<ClusterMatch>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProxyMatch {
    #[serde(default)]
    pub proxy_version: Option<String>,
    #[serde(default, deserialize_with = "crate::common::null_is_default")]
    pub metadata: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListenerMatch {
    #[serde(default, deserialize_with = "de_opt_port")]
    pub port_number: Option<u16>,
    #[serde(default)]
    pub port_name: Option<String>,
    #[serde(default)]
    pub filter_chain: Option<FilterChainMatch>,
    #[serde(default)]
    pub listener_filter: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FilterChainMatch {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub sni: Option<String>,
    #[serde(default)]
    pub transport_protocol: Option<String>,
    #[serde(default)]
    pub application_protocols: Option<String>,
    #[serde(default)]
    pub filter: Option<FilterMatch>,
    #[serde(default, deserialize_with = "de_opt_port")]
    pub destination_port: Option<u16>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FilterMatch {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub sub_filter: Option<SubFilterMatch>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubFilterMatch {
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteConfigurationMatch {
    #[serde(default, deserialize_with = "de_opt_port")]
    pub port_number: Option<u16>,
    #[serde(default)]
    pub port_name: Option<String>,
    #[serde(default)]
    pub gateway: Option<String>,
    #[serde(default)]
    pub vhost: Option<VirtualHostMatch>,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VirtualHostMatch {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub domain_name: Option<String>,
    #[serde(default)]
    pub route: Option<RouteMatch>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteMatch {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub action: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterMatch {
    #[serde(default, deserialize_with = "de_opt_port")]
    pub port_number: Option<u16>,
    #[serde(default)]
    pub service: Option<String>,
    #[serde(default)]
    pub subset: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Patch {
    pub operation: PatchOperation,
    #[serde(default)]
    pub value: Option<serde_json::Value>,
    #[serde(default)]
    pub filter_class: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PatchOperation {
    Invalid,
    Merge,
    Add,
    Remove,
    InsertBefore,
    InsertAfter,
    InsertFirst,
    Replace,
}
