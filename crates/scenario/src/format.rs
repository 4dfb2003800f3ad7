//! The scenario file format (`scenario.yaml`), documented with a complete
//! example in `scenarios/README.md`. Unknown fields are errors, like every
//! other input meshsim reads.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    /// The section of Istio's "Traffic Management Problems" page.
    pub section: String,
    pub summary: String,
    /// Istio version the proxies report (default: meshsim's).
    #[serde(default)]
    pub istio_version: Option<String>,
    /// Helm's `compatibilityVersion` (istiod keeps that release's defaults).
    #[serde(default)]
    pub compatibility_version: Option<String>,
    /// Seeds weighted picks and request ids.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Files (relative to the scenario) applied before the first step.
    pub resources: Vec<String>,
    /// Control-plane delay before a change reaches each proxy (`"2s"`).
    #[serde(default)]
    pub push_delay: Option<String>,
    /// `meshsim analyze -A` on the resources, every message as
    /// `CODE Kind namespace/name` (`[]`: silent). Absent, the scenario's
    /// analyze messages are shown but not checked.
    #[serde(default)]
    pub analyze: Option<Vec<String>>,
    pub steps: Vec<Step>,
}

/// One step: an optional configuration change, an optional wait, at most
/// one traffic action, then expectations — in that order. The file spells
/// them as flat fields (`apply`, `wait`, `request`, ...); loading checks
/// the combination and builds this shape.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawStep")]
pub struct Step {
    /// What the step is for, shown in the transcript.
    pub name: String,
    pub change: Option<ChangeSpec>,
    pub wait: Option<Wait>,
    pub traffic: Option<Traffic>,
    pub expect: Expect,
}

/// `kubectl apply` / `kubectl delete` / `istioctl upgrade`, as one change.
#[derive(Debug, Clone, Default)]
pub struct ChangeSpec {
    /// Istio upgrade: proxies restart reporting this version.
    pub upgrade: Option<String>,
    /// Files (relative to the scenario) to apply.
    pub apply: Vec<String>,
    /// Files whose objects are deleted.
    pub delete: Vec<String>,
}

#[derive(Debug, Clone)]
pub enum Wait {
    /// `wait: 2s`
    For(String),
    /// `waitSynced: true`: until every proxy is SYNCED.
    Synced,
}

/// What traffic a step sends.
#[derive(Debug, Clone)]
pub enum Traffic {
    /// One request (or `count` in a row).
    Request(RequestSpec),
    /// Several requests on one connection, as a browser reuses HTTP/2.
    Session(SessionSpec),
    /// Concurrent clients.
    Load(LoadSpec),
    /// A proxy as its own OS process with an fd limit, under load.
    Process(ProcessSpec),
}

/// The step as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawStep {
    name: String,
    #[serde(default)]
    apply: Vec<String>,
    #[serde(default)]
    delete: Vec<String>,
    #[serde(default)]
    wait: Option<String>,
    #[serde(default)]
    wait_synced: bool,
    #[serde(default)]
    upgrade: Option<String>,
    #[serde(default)]
    request: Option<RequestSpec>,
    #[serde(default)]
    session: Option<SessionSpec>,
    #[serde(default)]
    load: Option<LoadSpec>,
    #[serde(default)]
    process: Option<ProcessSpec>,
    #[serde(default)]
    expect: Expect,
}

impl TryFrom<RawStep> for Step {
    type Error = String;

    fn try_from(r: RawStep) -> Result<Self, String> {
        let mut traffic: Vec<(&str, Traffic)> = Vec::new();
        if let Some(x) = r.request {
            traffic.push(("request", Traffic::Request(x)));
        }
        if let Some(x) = r.session {
            traffic.push(("session", Traffic::Session(x)));
        }
        if let Some(x) = r.load {
            traffic.push(("load", Traffic::Load(x)));
        }
        if let Some(x) = r.process {
            traffic.push(("process", Traffic::Process(x)));
        }
        if traffic.len() > 1 {
            let names: Vec<&str> = traffic.iter().map(|(n, _)| *n).collect();
            return Err(format!(
                "step {:?}: one of request, session, load, process per step (found {})",
                r.name,
                names.join(", ")
            ));
        }
        let wait = match (r.wait, r.wait_synced) {
            (Some(_), true) => {
                return Err(format!(
                    "step {:?}: wait and waitSynced exclude each other",
                    r.name
                ))
            }
            (Some(d), false) => Some(Wait::For(d)),
            (None, true) => Some(Wait::Synced),
            (None, false) => None,
        };
        let change = (r.upgrade.is_some() || !r.apply.is_empty() || !r.delete.is_empty())
            .then_some(ChangeSpec {
                upgrade: r.upgrade,
                apply: r.apply,
                delete: r.delete,
            });
        let traffic = traffic.pop().map(|(_, t)| t);
        if change.is_none() && wait.is_none() && traffic.is_none() {
            return Err(format!(
                "step {:?}: nothing to do (apply, delete, upgrade, wait, waitSynced, request, session, load or process)",
                r.name
            ));
        }
        Ok(Step {
            name: r.name,
            change,
            wait,
            traffic,
            expect: r.expect,
        })
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestSpec {
    /// `deploy/sleep`, `POD.NS`, or `outside` (default `deploy/sleep`).
    #[serde(default)]
    pub from: Option<String>,
    pub url: String,
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub headers: Vec<String>,
    #[serde(default)]
    pub data: Option<String>,
    /// `"1.0"`, `"1.1"`, `"2"`.
    #[serde(default)]
    pub http: Option<String>,
    #[serde(default)]
    pub resolve: Vec<String>,
    #[serde(default)]
    pub connect_to: Vec<String>,
    #[serde(default)]
    pub insecure: bool,
    /// Send this many times (sequentially).
    #[serde(default)]
    pub count: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SessionSpec {
    #[serde(default)]
    pub from: Option<String>,
    /// The first request opens the connection (its URL gives address and SNI).
    pub requests: Vec<RequestSpec>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoadSpec {
    #[serde(default)]
    pub from: Option<String>,
    pub url: String,
    pub connections: u32,
    pub requests: u32,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProcessSpec {
    /// The sidecar to run as a process (`deploy/helloworld-v1`).
    pub proxy: String,
    /// `RLIMIT_NOFILE` for the process.
    pub fd_limit: u64,
    /// Concurrent connections held open against it.
    pub connections: u32,
}

/// What must be observed after the step's action.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Expect {
    /// Every response has this status.
    #[serde(default)]
    pub status: Option<u16>,
    /// Per-response expectations, in order (sessions).
    #[serde(default)]
    pub responses: Vec<ResponseExpect>,
    #[serde(default)]
    pub header: BTreeMap<String, String>,
    #[serde(default)]
    pub body_contains: Option<String>,
    #[serde(default)]
    pub body_not_contains: Option<String>,
    /// curl's error line contains this (TLS errors, refused connections).
    #[serde(default)]
    pub client_error: Option<String>,
    /// Access-log lines that must appear (each matched by one line).
    #[serde(default)]
    pub logs: Vec<LogExpect>,
    /// Counts over all responses, by status: `{"503": ">0", "200": "=30"}`.
    #[serde(default)]
    pub status_counts: BTreeMap<String, String>,
    /// Counts over access-log lines of the client proxy, by flag.
    #[serde(default)]
    pub flag_counts: BTreeMap<String, String>,
    /// Share of responses whose body contains each key (`"version: v1": 0.9`).
    #[serde(default)]
    pub split: BTreeMap<String, f64>,
    /// Some key of `split` misses its share by at least this much (a small
    /// sample far from the weights).
    #[serde(default)]
    pub split_deviates_at_least: Option<f64>,
    /// Allowed absolute error for `split` (default 0.1).
    #[serde(default)]
    pub tolerance: Option<f64>,
    /// Every response body contains one of these (e.g. both versions).
    #[serde(default)]
    pub bodies_include_all: Vec<String>,
    /// Proxy status: `{"sleep-0.default": "STALE"}`.
    #[serde(default)]
    pub proxy_status: BTreeMap<String, String>,
    /// Admin counters: `{"sleep-0.default": {"cluster.X.upstream_rq_pending_overflow": ">0"}}`.
    #[serde(default)]
    pub stats: BTreeMap<String, BTreeMap<String, String>>,
    /// EnvoyFilter patch outcomes: `{"sleep-0.default": {"default/x": true}}`.
    #[serde(default)]
    pub patches: BTreeMap<String, BTreeMap<String, bool>>,
    /// proxy-config facts: route/listener/cluster names present or absent.
    #[serde(default)]
    pub config: Vec<ConfigExpect>,
    /// The process step: crashed (with the log line) or not.
    #[serde(default)]
    pub crashed: Option<bool>,
    #[serde(default)]
    pub stderr_contains: Option<String>,
    /// The process step: how many requests got a 200 (`"=1100"`).
    #[serde(default)]
    pub answered: Option<String>,
    /// `meshsim analyze -A` after this step's change, every message as
    /// `CODE Kind namespace/name`. In a scenario that declares `analyze`,
    /// a step with a change is always checked (absent means silent); a
    /// step without one only when given.
    #[serde(default)]
    pub analyze: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResponseExpect {
    #[serde(default)]
    pub status: Option<u16>,
    #[serde(default)]
    pub body_contains: Option<String>,
    #[serde(default)]
    pub client_error: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LogExpect {
    /// Proxy id prefix (`sleep-0`, `istio-ingressgateway`).
    pub proxy: String,
    #[serde(default)]
    pub status: Option<u16>,
    /// Exactly these flags (`URX,UF`, or `-`).
    #[serde(default)]
    pub flags: Option<String>,
    #[serde(default)]
    pub details: Option<String>,
    #[serde(default)]
    pub cluster: Option<String>,
    #[serde(default)]
    pub route: Option<String>,
    #[serde(default)]
    pub sni: Option<String>,
    /// The rendered line contains this.
    #[serde(default)]
    pub contains: Option<String>,
    /// No line of this proxy may match (instead of one must).
    #[serde(default)]
    pub absent: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigExpect {
    pub proxy: String,
    /// `listeners`, `routes`, `clusters`.
    pub kind: String,
    /// This text appears in `proxy-config KIND` (table) ...
    #[serde(default)]
    pub contains: Option<String>,
    /// ... or does not.
    #[serde(default)]
    pub not_contains: Option<String>,
}
