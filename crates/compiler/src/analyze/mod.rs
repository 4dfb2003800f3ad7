//! `meshsim analyze`: istioctl analyze's traffic analyzers (istio
//! `pkg/config/analysis/analyzers`), with the codes, levels and templates
//! of `pkg/config/analysis/msg/messages.yaml`, plus meshsim's own checks
//! (`MS0xxx`), one per failure of the "Traffic Management Problems" page,
//! each naming the page's fix. Pure: no network, no proxies.
//!
//! The world is the cluster the files describe (Deployments have pods, the
//! built-in `istio-system` is installed), so this is `istioctl analyze`
//! against that cluster; objects meshsim adds by itself are never reported.
//!
//! # Layout
//! * this file — messages, istioctl's order, scope and suppressions;
//! * [`istio`] — istioctl's analyzers;
//! * [`checks`] — meshsim's checks, one per documented failure.

mod checks;
mod istio;

use std::fmt;

use meshsim_model::Meta;

use crate::world::World;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Error,
    Warning,
    Info,
}

impl Level {
    /// istioctl's `--failure-threshold` / `--output-threshold` values.
    pub fn parse(s: &str) -> Option<Level> {
        match s.to_ascii_lowercase().as_str() {
            "error" => Some(Level::Error),
            "warning" => Some(Level::Warning),
            "info" => Some(Level::Info),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Level::Error => "Error",
            Level::Warning => "Warning",
            Level::Info => "Info",
        }
    }

    /// `a.is_worse_than_or_equal(b)`: Error is worse than Warning.
    pub fn at_least(self, threshold: Level) -> bool {
        self <= threshold
    }
}

/// One finding, printed as istioctl (>= 1.12) prints it:
/// `Error [IST0101] (VirtualService default/reviews file.yaml:12) Referenced host not found: "reviewss"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub level: Level,
    pub code: &'static str,
    /// The resource's kind (`VirtualService`).
    pub kind: String,
    pub name: String,
    /// Empty for cluster-scoped resources (Namespace).
    pub namespace: String,
    /// `file:line` where the resource was declared; empty when unknown.
    pub reference: String,
    pub text: String,
}

impl Message {
    /// istioctl's origin: `Kind namespace/name` (`Kind name` when cluster-scoped).
    pub fn origin(&self) -> String {
        if self.namespace.is_empty() {
            format!("{} {}", self.kind, self.name)
        } else {
            format!("{} {}/{}", self.kind, self.namespace, self.name)
        }
    }

    /// The `--suppress` form: `Kind name.namespace`.
    pub fn suppress_name(&self) -> String {
        if self.namespace.is_empty() {
            format!("{} {}", self.kind, self.name)
        } else {
            format!("{} {}.{}", self.kind, self.name, self.namespace)
        }
    }

    /// istioctl's `Comparator`: kind/name/namespace.
    fn comparator(&self) -> String {
        format!("{}/{}/{}", self.kind, self.name, self.namespace)
    }

    fn builtin(&self) -> bool {
        self.reference.starts_with('<')
    }
}

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} [{}] ({}",
            self.level.name(),
            self.code,
            self.origin()
        )?;
        if !self.reference.is_empty() {
            write!(f, " {}", self.reference)?;
        }
        write!(f, ") {}", self.text)
    }
}

/// Every code meshsim can report: istioctl's (name and level from
/// messages.yaml) and meshsim's own.
pub const CODES: &[(&str, &str, Level)] = &[
    ("IST0101", "ReferencedResourceNotFound", Level::Error),
    ("IST0102", "NamespaceNotInjected", Level::Info),
    (
        "IST0109",
        "ConflictingMeshGatewayVirtualServiceHosts",
        Level::Error,
    ),
    (
        "IST0112",
        "VirtualServiceDestinationPortSelectorRequired",
        Level::Error,
    ),
    ("IST0118", "PortNameIsNotUnderNamingConvention", Level::Info),
    (
        "IST0128",
        "NoServerCertificateVerificationDestinationLevel",
        Level::Warning,
    ),
    (
        "IST0129",
        "NoServerCertificateVerificationPortLevel",
        Level::Warning,
    ),
    ("IST0131", "VirtualServiceIneffectiveMatch", Level::Info),
    (
        "IST0132",
        "VirtualServiceHostNotFoundInGateway",
        Level::Warning,
    ),
    ("IST0134", "ServiceEntryAddressesRequired", Level::Warning),
    ("IST0138", "GatewayDuplicateCertificate", Level::Warning),
    ("IST0140", "IngressRouteRulesNotAffected", Level::Warning),
    ("IST0145", "ConflictingGateways", Level::Error),
    (
        "IST0150",
        "ExternalNameServiceTypeInvalidPortName",
        Level::Warning,
    ),
    (
        "IST0151",
        "EnvoyFilterUsesRelativeOperation",
        Level::Warning,
    ),
    (
        "IST0152",
        "EnvoyFilterUsesReplaceOperationIncorrectly",
        Level::Error,
    ),
    (
        "IST0153",
        "EnvoyFilterUsesAddOperationIncorrectly",
        Level::Error,
    ),
    (
        "IST0154",
        "EnvoyFilterUsesRemoveOperationIncorrectly",
        Level::Error,
    ),
    (
        "IST0155",
        "EnvoyFilterUsesRelativeOperationWithProxyVersion",
        Level::Warning,
    ),
    ("IST0162", "GatewayPortNotDefinedOnService", Level::Warning),
    ("IST0165", "ReferencedInternalGateway", Level::Warning),
    (
        "IST0173",
        "DestinationRuleSubsetNotSelectPods",
        Level::Error,
    ),
    ("IST0174", "UnknownDestinationRuleHost", Level::Warning),
    ("MS0001", "TlsRoutesOnTerminatingServer", Level::Warning),
    ("MS0002", "HttpRoutesOnPassthroughServer", Level::Warning),
    ("MS0003", "HttpProtocolOnTlsPort", Level::Warning),
    ("MS0004", "DoubleTls", Level::Warning),
    ("MS0005", "MutualTlsConflict", Level::Error),
    ("MS0006", "HttpRoutesOnTcpPort", Level::Warning),
    ("MS0008", "SniRequiredBehindTlsLoadBalancer", Level::Warning),
    ("MS0009", "RelativePatchOnVersionedFilter", Level::Warning),
    ("MS0010", "HeadlessHttpPortUnderStrict", Level::Warning),
    ("MS0011", "LowCircuitBreakerLimits", Level::Warning),
    ("MS0012", "NoDefaultRoute", Level::Info),
    ("MS0013", "NginxHttp10Upstream", Level::Warning),
];

/// The level of a known code.
pub fn level_of(code: &str) -> Option<Level> {
    CODES
        .iter()
        .find(|(c, _, _)| *c == code)
        .map(|(_, _, l)| *l)
}

/// `--suppress "CODE=Kind name.namespace"` (`*` matches any run of characters).
#[derive(Debug, Clone)]
pub struct Suppression {
    pub code: String,
    pub resource: String,
}

impl Suppression {
    /// istioctl's parse: exactly one `=`.
    pub fn parse(s: &str) -> Result<Suppression, String> {
        match s.split('=').collect::<Vec<_>>().as_slice() {
            [code, resource] => Ok(Suppression {
                code: code.to_string(),
                resource: resource.to_string(),
            }),
            _ => Err(format!(
                "{s} is not a valid suppression value. See istioctl analyze --help"
            )),
        }
    }

    fn matches(&self, m: &Message) -> bool {
        self.code == m.code && glob(&self.resource, &m.suppress_name())
    }
}

/// `*` as any run of characters, everything else literal.
fn glob(pattern: &str, s: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == s;
    }
    let mut rest = s;
    for (i, p) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(p) else {
                return false;
            };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(p);
        } else {
            match rest.find(p) {
                Some(at) => rest = &rest[at + p.len()..],
                None => return false,
            }
        }
    }
    true
}

/// Runs every analyzer on the world and keeps the messages of `namespace`
/// (every namespace when `None`), minus suppressions and meshsim's own
/// objects, in istioctl's order, deduplicated as istioctl does.
pub fn analyze(world: &World, namespace: Option<&str>, suppress: &[Suppression]) -> Vec<Message> {
    let mut out = Vec::new();
    istio::run(world, &mut out);
    checks::run(world, &mut out);
    out.retain(|m| {
        !m.builtin()
            && namespace
                .is_none_or(|ns| m.namespace == ns || m.namespace.is_empty() && m.name == ns)
            && !suppress.iter().any(|s| s.matches(m))
    });
    // diag.Messages.Sort: level, code, resource, then the whole string.
    out.sort_by(|a, b| {
        (a.level, a.code, a.comparator(), a.to_string()).cmp(&(
            b.level,
            b.code,
            b.comparator(),
            b.to_string(),
        ))
    });
    out.dedup_by(|a, b| a.to_string() == b.to_string());
    out
}

/// A message on a resource.
fn msg(code: &'static str, meta: &Meta, text: String) -> Message {
    Message {
        level: level_of(code).unwrap_or(Level::Info),
        code,
        kind: meta.kind.clone(),
        name: meta.name.clone(),
        namespace: meta.ns().to_string(),
        reference: reference(&meta.origin),
        text,
    }
}

/// `file:line`, as istioctl's Position prints it.
fn reference(o: &meshsim_model::diag::Origin) -> String {
    match (o.file.is_empty(), o.line) {
        (true, _) => String::new(),
        (false, 0) => o.file.clone(),
        (false, l) => format!("{}:{l}", o.file),
    }
}

#[cfg(test)]
mod tests;
