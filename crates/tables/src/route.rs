//! Route configurations, virtual hosts and routes.

use serde::{Serialize, Serializer};

use crate::types::{AppendAction, Duration, RetryOn};

#[derive(Debug, Clone, Serialize)]
pub struct RouteConfiguration {
    pub name: String,
    pub virtual_hosts: Vec<VirtualHost>,
    pub validate_clusters: bool,
    /// Sidecar outbound route configs match hosts without their port.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub ignore_port_in_host_matching: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct VirtualHost {
    pub name: String,
    pub domains: Vec<String>,
    pub routes: Vec<Route>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub include_request_attempt_count: bool,
    /// Envoy's `require_tls`: a request that did not come over TLS
    /// (`x-forwarded-proto` is not `https`) is redirected to `https://`
    /// before any route is looked at (istiod sets `ALL` for a gateway
    /// server's `httpsRedirect`).
    #[serde(skip_serializing_if = "TlsRequirement::is_none")]
    pub require_tls: TlsRequirement,
}

/// `VirtualHost.TlsRequirementType`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TlsRequirement {
    #[default]
    None,
    ExternalOnly,
    All,
}

impl TlsRequirement {
    pub fn is_none(&self) -> bool {
        *self == TlsRequirement::None
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Route {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(rename = "match")]
    pub match_: RouteMatch,
    #[serde(flatten)]
    pub action: RouteAction,
    #[serde(skip_serializing_if = "HeaderMutations::is_empty", flatten)]
    pub headers: HeaderMutations,
    /// istiod records the VirtualService a route came from
    /// (`metadata.filter_metadata.istio.config`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<RouteMetadata>,
    /// VirtualService `fault`: the route's `envoy.filters.http.fault` config.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub typed_per_filter_config: Option<PerFilterConfig>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PerFilterConfig {
    #[serde(rename = "envoy.filters.http.fault")]
    pub fault: HttpFault,
}

pub const FAULT_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault";

/// Envoy's `HTTPFault` as istiod builds it (route/route.go `translateFault`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HttpFault {
    #[serde(rename = "@type")]
    pub type_url: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay: Option<FaultDelay>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub abort: Option<FaultAbort>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaultDelay {
    pub fixed_delay: Duration,
    pub percentage: FractionalPercent,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaultAbort {
    pub http_status: u32,
    pub percentage: FractionalPercent,
}

/// `numerator` per `denominator` (istiod uses MILLION: percent × 10,000).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FractionalPercent {
    pub numerator: u32,
    pub denominator: &'static str,
}

impl FractionalPercent {
    /// From an Istio percentage (0–100, fractional).
    pub fn from_percent(p: f64) -> Self {
        Self {
            numerator: (p.clamp(0.0, 100.0) * 10_000.0).round() as u32,
            denominator: "MILLION",
        }
    }

    /// Whether a draw `r` (uniform over u64) falls inside the fraction.
    pub fn hit(&self, r: u64) -> bool {
        (r % 1_000_000) < u64::from(self.numerator)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RouteMetadata {
    pub filter_metadata: IstioFilterMetadata,
}

#[derive(Debug, Clone, Serialize)]
pub struct IstioFilterMetadata {
    pub istio: IstioConfigRef,
}

#[derive(Debug, Clone, Serialize)]
pub struct IstioConfigRef {
    /// `/apis/networking.istio.io/v1/namespaces/NS/virtual-service/NAME`
    pub config: String,
}

impl Route {
    /// A catch-all (`prefix: /`) route with no header operations, metadata
    /// or per-filter config: the routes istiod builds itself.
    pub fn catch_all(name: impl Into<String>, action: RouteAction) -> Route {
        Route {
            name: name.into(),
            match_: RouteMatch::default(),
            action,
            headers: HeaderMutations::default(),
            metadata: None,
            typed_per_filter_config: None,
        }
    }

    /// A catch-all route to one cluster, without a timeout (`0s`).
    pub fn to_cluster(
        name: impl Into<String>,
        cluster: String,
        retry_policy: Option<RetryPolicy>,
    ) -> Route {
        Route::catch_all(
            name,
            RouteAction::Route(RouteTarget {
                destination: ClusterSpecifier::Cluster(cluster),
                timeout: Duration::ZERO,
                retry_policy,
                prefix_rewrite: None,
                host_rewrite_literal: None,
                regex_rewrite: None,
                request_mirror_policies: vec![],
            }),
        )
    }

    /// `name.namespace` of the VirtualService this route came from.
    pub fn virtual_service(&self) -> Option<String> {
        let cfg = &self.metadata.as_ref()?.filter_metadata.istio.config;
        let mut parts = cfg.rsplit('/');
        let name = parts.next()?;
        let _kind = parts.next()?;
        let ns = parts.next()?;
        Some(format!("{name}.{ns}"))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HeaderMutations {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub request_headers_to_add: Vec<HeaderValueOption>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub request_headers_to_remove: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub response_headers_to_add: Vec<HeaderValueOption>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub response_headers_to_remove: Vec<String>,
}

impl HeaderMutations {
    /// `other`'s operations after these.
    pub fn append(&mut self, other: HeaderMutations) {
        self.request_headers_to_add
            .extend(other.request_headers_to_add);
        self.request_headers_to_remove
            .extend(other.request_headers_to_remove);
        self.response_headers_to_add
            .extend(other.response_headers_to_add);
        self.response_headers_to_remove
            .extend(other.response_headers_to_remove);
    }

    pub fn is_empty(&self) -> bool {
        self.request_headers_to_add.is_empty()
            && self.request_headers_to_remove.is_empty()
            && self.response_headers_to_add.is_empty()
            && self.response_headers_to_remove.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeaderValueOption {
    pub header: HeaderValue,
    pub append_action: AppendAction,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeaderValue {
    pub key: String,
    pub value: String,
}

/// `match` of a route. Exactly one path specifier.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RouteMatch {
    #[serde(flatten)]
    pub path: PathMatch,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub case_sensitive: Option<bool>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HeaderMatcher>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub query_parameters: Vec<QueryParameterMatcher>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PathMatch {
    Prefix(String),
    Path(String),
    SafeRegex(SafeRegex),
}

impl Default for PathMatch {
    fn default() -> Self {
        PathMatch::Prefix("/".into())
    }
}

/// An RE2-style regex, matched against the whole input as Envoy does.
#[derive(Debug, Clone)]
pub struct SafeRegex {
    pub regex: String,
    compiled: regex::Regex,
}

impl SafeRegex {
    pub fn new(pattern: &str) -> Result<Self, regex::Error> {
        let compiled = regex::Regex::new(&format!("^(?:{pattern})$"))?;
        Ok(Self {
            regex: pattern.to_string(),
            compiled,
        })
    }

    pub fn is_match(&self, s: &str) -> bool {
        self.compiled.is_match(s)
    }

    /// Envoy's `regex_rewrite`: substitutes every match of the pattern (not
    /// anchored: rewrites apply to parts of the path); `\1` style groups.
    pub fn replace_all(&self, s: &str, substitution: &str) -> String {
        let Ok(unanchored) = regex::Regex::new(&self.regex) else {
            return s.to_string();
        };
        let sub = substitution.replace("\\", "$");
        unanchored.replace_all(s, sub.as_str()).into_owned()
    }
}

impl Serialize for SafeRegex {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("SafeRegex", 1)?;
        st.serialize_field("regex", &self.regex)?;
        st.end()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct HeaderMatcher {
    pub name: String,
    #[serde(flatten)]
    pub matcher: HeaderMatchSpecifier,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub invert_match: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HeaderMatchSpecifier {
    StringMatch(StringMatcher),
    PresentMatch(bool),
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StringMatcher {
    Exact(String),
    Prefix(String),
    SafeRegex(SafeRegex),
}

impl StringMatcher {
    pub fn matches(&self, v: &str) -> bool {
        match self {
            StringMatcher::Exact(e) => v == e,
            StringMatcher::Prefix(p) => v.starts_with(p.as_str()),
            StringMatcher::SafeRegex(r) => r.is_match(v),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct QueryParameterMatcher {
    pub name: String,
    pub string_match: StringMatcher,
}

/// What a matched route does. Routes live in tables built once per push and
/// are only borrowed afterwards, so the variant size difference costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteAction {
    Route(RouteTarget),
    Redirect(Redirect),
    DirectResponse(DirectResponse),
}

#[derive(Debug, Clone, Serialize)]
pub struct RouteTarget {
    #[serde(flatten)]
    pub destination: ClusterSpecifier,
    /// Request timeout; `0s` disables it (istiod's default for sidecars).
    pub timeout: Duration,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_policy: Option<RetryPolicy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix_rewrite: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_rewrite_literal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub regex_rewrite: Option<RegexRewrite>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub request_mirror_policies: Vec<RequestMirrorPolicy>,
}

/// `RouteAction.RequestMirrorPolicy` as istiod writes it
/// (route.go `TranslateRequestMirrorPolicy`): a shadow copy of the
/// request to `cluster` for `runtime_fraction` of requests, its Host
/// suffixed `-shadow` unless `disable_shadow_host_suffix_append`.
#[derive(Debug, Clone, Serialize)]
pub struct RequestMirrorPolicy {
    pub cluster: String,
    pub runtime_fraction: FractionalPercent,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub disable_shadow_host_suffix_append: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct RegexRewrite {
    pub pattern: SafeRegex,
    pub substitution: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClusterSpecifier {
    Cluster(String),
    WeightedClusters(WeightedClusters),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WeightedClusters {
    pub clusters: Vec<ClusterWeight>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterWeight {
    pub name: String,
    pub weight: u32,
    /// The destination's own `headers` (route.go
    /// `processWeightedDestination`), applied after the route's.
    #[serde(skip_serializing_if = "HeaderMutations::is_empty", flatten)]
    pub headers: HeaderMutations,
}

impl ClusterWeight {
    pub fn new(name: impl Into<String>, weight: u32) -> Self {
        ClusterWeight {
            name: name.into(),
            weight,
            headers: HeaderMutations::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RetryPolicy {
    pub retry_on: RetryOn,
    pub num_retries: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_try_timeout: Option<Duration>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub retriable_status_codes: Vec<u16>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub retry_host_predicate: Vec<crate::listener::NamedFilter>,
    pub host_selection_retry_max_attempts: u32,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Redirect {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_redirect: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_redirect: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port_redirect: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheme_redirect: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub https_redirect: Option<bool>,
    /// `MOVED_PERMANENTLY` (301) unless Istio's `redirectCode` says otherwise.
    pub response_code: u16,
}

#[derive(Debug, Clone, Serialize)]
pub struct DirectResponse {
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<DataSource>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DataSource {
    pub inline_string: String,
}
