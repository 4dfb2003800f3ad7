//! `networking.istio.io` VirtualService.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::common::{de_opt_port, Duration, NotSimulated, Unsimulated};
use crate::report_unsimulated;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VirtualServiceSpec {
    #[serde(default, deserialize_with = "crate::common::null_is_default")]
    pub hosts: Vec<String>,
    /// Empty means `mesh` only.
    #[serde(default, deserialize_with = "crate::common::null_is_default")]
    pub gateways: Vec<String>,
    #[serde(default, deserialize_with = "crate::common::null_is_default")]
    pub http: Vec<HttpRoute>,
    #[serde(default, deserialize_with = "crate::common::null_is_default")]
    pub tls: Vec<TlsRoute>,
    #[serde(default, deserialize_with = "crate::common::null_is_default")]
    pub tcp: Vec<TcpRoute>,
    #[serde(default, deserialize_with = "crate::common::null_is_default")]
    pub export_to: Vec<String>,
}

impl VirtualServiceSpec {
    /// Every destination host of its `http` (mirrors included), `tcp` and
    /// `tls` routes.
    pub fn destination_hosts(&self) -> impl Iterator<Item = &String> {
        let http = self.http.iter().flat_map(|r| {
            r.route
                .iter()
                .map(|d| &d.destination.host)
                .chain(r.mirror.iter().map(|d| &d.host))
                .chain(
                    r.mirrors
                        .iter()
                        .filter_map(|m| m.destination.as_ref().map(|d| &d.host)),
                )
        });
        let tcp = self
            .tcp
            .iter()
            .flat_map(|r| r.route.iter().map(|d| &d.destination.host));
        let tls = self
            .tls
            .iter()
            .flat_map(|r| r.route.iter().map(|d| &d.destination.host));
        http.chain(tcp).chain(tls)
    }
}

impl Unsimulated for VirtualServiceSpec {
    fn unsimulated(&self, path: &str, out: &mut Vec<(String, (u64, u64))>) {
        self.http.unsimulated(&format!("{path}.http"), out);
        for (i, r) in self.tls.iter().enumerate() {
            for (j, m) in r.matches.iter().enumerate() {
                let p = format!("{path}.tls[{i}].match[{j}]");
                report_unsimulated!(m, p, out; destination_subnets => "destinationSubnets", source_labels => "sourceLabels", source_namespace => "sourceNamespace");
            }
        }
        for (i, r) in self.tcp.iter().enumerate() {
            for (j, m) in r.matches.iter().enumerate() {
                let p = format!("{path}.tcp[{i}].match[{j}]");
                report_unsimulated!(m, p, out; destination_subnets => "destinationSubnets", source_labels => "sourceLabels", source_namespace => "sourceNamespace", source_subnet => "sourceSubnet");
            }
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRoute {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(
        rename = "match",
        default,
        deserialize_with = "crate::common::null_is_default"
    )]
    pub matches: Vec<HttpMatchRequest>,
    #[serde(default, deserialize_with = "crate::common::null_is_default")]
    pub route: Vec<HttpRouteDestination>,
    #[serde(default)]
    pub redirect: Option<HttpRedirect>,
    #[serde(default)]
    pub direct_response: Option<HttpDirectResponse>,
    #[serde(default)]
    pub rewrite: Option<HttpRewrite>,
    #[serde(default)]
    pub timeout: Option<Duration>,
    #[serde(default)]
    pub retries: Option<HttpRetry>,
    #[serde(default)]
    pub headers: Option<Headers>,
    #[serde(default)]
    pub fault: Option<HttpFaultInjection>,
    /// Shadow traffic: a copy of each request, not awaited.
    #[serde(default)]
    pub mirror: Option<Destination>,
    #[serde(default, deserialize_with = "crate::common::null_is_default")]
    pub mirrors: Vec<HttpMirrorPolicy>,
    #[serde(default)]
    pub mirror_percentage: Option<Percent>,
    /// Deprecated integer percentage.
    #[serde(default)]
    pub mirror_percent: Option<u32>,
    #[serde(default)]
    pub cors_policy: NotSimulated,
    #[serde(default)]
    pub delegate: NotSimulated,
}

impl Unsimulated for HttpRoute {
    fn unsimulated(&self, path: &str, out: &mut Vec<(String, (u64, u64))>) {
        report_unsimulated!(self, path, out;
            cors_policy => "corsPolicy", delegate => "delegate");
        self.matches.unsimulated(&format!("{path}.match"), out);
        if let Some(f) = &self.fault {
            if let Some(d) = &f.delay {
                report_unsimulated!(d, path, out; exponential_delay => "fault.delay.exponentialDelay");
            }
            if let Some(a) = &f.abort {
                report_unsimulated!(a, path, out; grpc_status => "fault.abort.grpcStatus", http2_error => "fault.abort.http2Error");
            }
        }
        if let Some(r) = &self.retries {
            report_unsimulated!(r, path, out; retry_remote_localities => "retries.retryRemoteLocalities");
        }
        if let Some(r) = &self.redirect {
            report_unsimulated!(r, path, out; derive_port => "redirect.derivePort");
        }
    }
}

/// A string match as Istio spells it: one of `exact`, `prefix`, `regex`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum StringMatch {
    Exact(String),
    Prefix(String),
    Regex(String),
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpMatchRequest {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub uri: Option<StringMatch>,
    #[serde(default)]
    pub scheme: Option<StringMatch>,
    #[serde(default)]
    pub method: Option<StringMatch>,
    #[serde(default)]
    pub authority: Option<StringMatch>,
    #[serde(default, deserialize_with = "crate::common::null_is_default")]
    pub headers: BTreeMap<String, StringMatch>,
    #[serde(default, deserialize_with = "crate::common::null_is_default")]
    pub without_headers: BTreeMap<String, StringMatch>,
    #[serde(default, deserialize_with = "de_opt_port")]
    pub port: Option<u16>,
    #[serde(default, deserialize_with = "crate::common::null_is_default")]
    pub source_labels: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "crate::common::null_is_default")]
    pub gateways: Vec<String>,
    #[serde(default, deserialize_with = "crate::common::null_is_default")]
    pub query_params: BTreeMap<String, StringMatch>,
    #[serde(default)]
    pub ignore_uri_case: bool,
    #[serde(default)]
    pub source_namespace: Option<String>,
    #[serde(default)]
    pub stat_prefix: NotSimulated,
}

impl Unsimulated for HttpMatchRequest {
    fn unsimulated(&self, path: &str, out: &mut Vec<(String, (u64, u64))>) {
        report_unsimulated!(self, path, out; stat_prefix => "statPrefix");
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Destination {
    pub host: String,
    #[serde(default)]
    pub subset: Option<String>,
    #[serde(default)]
    pub port: Option<PortSelector>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortSelector {
    #[serde(default, deserialize_with = "de_opt_port")]
    pub number: Option<u16>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRouteDestination {
    pub destination: Destination,
    #[serde(default)]
    pub weight: Option<u32>,
    /// Per-destination header operations.
    #[serde(default)]
    pub headers: Option<Headers>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Headers {
    #[serde(default)]
    pub request: Option<HeaderOperations>,
    #[serde(default)]
    pub response: Option<HeaderOperations>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderOperations {
    #[serde(default, deserialize_with = "crate::common::null_is_default")]
    pub set: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "crate::common::null_is_default")]
    pub add: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "crate::common::null_is_default")]
    pub remove: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRedirect {
    #[serde(default)]
    pub uri: Option<String>,
    #[serde(default)]
    pub authority: Option<String>,
    #[serde(default, deserialize_with = "de_opt_port")]
    pub port: Option<u16>,
    #[serde(default)]
    pub scheme: Option<String>,
    #[serde(default)]
    pub redirect_code: Option<u16>,
    #[serde(default)]
    pub derive_port: NotSimulated,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpDirectResponse {
    pub status: u16,
    #[serde(default)]
    pub body: Option<HttpBody>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpBody {
    #[serde(default)]
    pub string: Option<String>,
    #[serde(default)]
    pub bytes: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRewrite {
    #[serde(default)]
    pub uri: Option<String>,
    #[serde(default)]
    pub authority: Option<String>,
    #[serde(default)]
    pub uri_regex_rewrite: Option<RegexRewrite>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegexRewrite {
    #[serde(rename = "match")]
    pub match_: String,
    pub rewrite: String,
}

/// `fault`: delays and aborts injected by the client-side proxy.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpFaultInjection {
    #[serde(default)]
    pub delay: Option<FaultDelay>,
    #[serde(default)]
    pub abort: Option<FaultAbort>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultDelay {
    #[serde(default)]
    pub fixed_delay: Option<Duration>,
    #[serde(default)]
    pub exponential_delay: NotSimulated,
    #[serde(default)]
    pub percentage: Option<Percent>,
    /// Deprecated integer percentage.
    #[serde(default)]
    pub percent: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultAbort {
    #[serde(default)]
    pub http_status: Option<u32>,
    #[serde(default)]
    pub grpc_status: NotSimulated,
    #[serde(default)]
    pub http2_error: NotSimulated,
    #[serde(default)]
    pub percentage: Option<Percent>,
}

/// Istio's `Percent`: 0.0–100.0.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Percent {
    #[serde(default)]
    pub value: f64,
}

/// One of `mirrors`: a destination and its share of requests.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpMirrorPolicy {
    #[serde(default)]
    pub destination: Option<Destination>,
    #[serde(default)]
    pub percentage: Option<Percent>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRetry {
    #[serde(default)]
    pub attempts: u32,
    #[serde(default)]
    pub per_try_timeout: Option<Duration>,
    #[serde(default)]
    pub retry_on: Option<String>,
    #[serde(default)]
    pub retry_remote_localities: NotSimulated,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsRoute {
    #[serde(
        rename = "match",
        default,
        deserialize_with = "crate::common::null_is_default"
    )]
    pub matches: Vec<TlsMatchAttributes>,
    #[serde(default, deserialize_with = "crate::common::null_is_default")]
    pub route: Vec<RouteDestination>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsMatchAttributes {
    #[serde(default, deserialize_with = "crate::common::null_is_default")]
    pub sni_hosts: Vec<String>,
    #[serde(default)]
    pub destination_subnets: NotSimulated,
    #[serde(default, deserialize_with = "de_opt_port")]
    pub port: Option<u16>,
    #[serde(default)]
    pub source_labels: NotSimulated,
    #[serde(default, deserialize_with = "crate::common::null_is_default")]
    pub gateways: Vec<String>,
    #[serde(default)]
    pub source_namespace: NotSimulated,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpRoute {
    #[serde(
        rename = "match",
        default,
        deserialize_with = "crate::common::null_is_default"
    )]
    pub matches: Vec<L4MatchAttributes>,
    #[serde(default, deserialize_with = "crate::common::null_is_default")]
    pub route: Vec<RouteDestination>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct L4MatchAttributes {
    #[serde(default)]
    pub destination_subnets: NotSimulated,
    #[serde(default, deserialize_with = "de_opt_port")]
    pub port: Option<u16>,
    #[serde(default)]
    pub source_labels: NotSimulated,
    #[serde(default, deserialize_with = "crate::common::null_is_default")]
    pub gateways: Vec<String>,
    #[serde(default)]
    pub source_namespace: NotSimulated,
    #[serde(default)]
    pub source_subnet: NotSimulated,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteDestination {
    pub destination: Destination,
    #[serde(default)]
    pub weight: Option<u32>,
}
