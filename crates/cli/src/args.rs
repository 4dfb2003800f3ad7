//! The command line, as clap reads it: every command and its flags
//! (curl's and fortio's spellings where they have one).

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};
use meshsim_compiler::{IstioVersion, NamespaceFlag, Settings};
use meshsim_tables::display;

#[derive(Parser)]
#[command(
    name = "meshsim",
    version,
    about = "A real Istio data plane on one laptop: compile, run and debug mesh configs locally"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Options shared by every command that reads YAML.
#[derive(clap::Args, Clone)]
pub struct Input {
    /// YAML/JSON files or directories, as you would `kubectl apply -f`
    /// (`proxy-status` without it reads the running sandbox).
    #[arg(short = 'f', long = "filename")]
    pub files: Vec<PathBuf>,
    /// The Istio version the proxies report (changes version-dependent behaviour).
    #[arg(long, default_value_t = IstioVersion::DEFAULT.to_string())]
    pub istio_version: String,
    /// Helm's `compatibilityVersion` (e.g. 1.23): istiod keeps that
    /// release's defaults (the default retry policy retrying 503, ...).
    #[arg(long)]
    pub compatibility_version: Option<String>,
    /// Treat namespaces that the input does not declare as NOT injected.
    #[arg(long)]
    pub no_implicit_injection: bool,
    /// As `kubectl apply -n`: the namespace of objects that name none; also
    /// the namespace of a PROXY / --from named without one (`istioctl -n`).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Seeds the mesh's random choices (weighted picks, request ids) so a
    /// run can be repeated; random by default, like a real mesh.
    #[arg(long)]
    pub seed: Option<u64>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Check YAML for errors (exit status 1 on any error).
    Validate {
        #[command(flatten)]
        input: Input,
    },
    /// Show the Envoy configuration istiod would push to a proxy, as
    /// `istioctl proxy-config` shows it (same tables, sorts, flags).
    #[command(name = "proxy-config", alias = "pc")]
    ProxyConfig {
        /// all|a, bootstrap|b, cluster|clusters|c, endpoint|endpoints|ep,
        /// listener|listeners|l, route|routes|r, secret|secrets|s; and
        /// meshsim's `patches` (EnvoyFilter outcomes).
        #[arg(value_enum)]
        kind: KindArg,
        /// POD[.NAMESPACE] or deploy/NAME[.NAMESPACE].
        proxy: String,
        #[command(flatten)]
        input: Input,
        #[command(flatten)]
        view: ViewArgs,
    },
    /// Run scenarios (files or directories): each documented failure,
    /// reproduced and fixed through real traffic. Ends with `N passed, M failed`.
    Run {
        /// Scenario files or directories (e.g. `scenarios/`).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// `text` transcripts, or `json` for machines.
        #[arg(long, default_value = "text")]
        format: String,
        /// Scenarios run at once.
        #[arg(long, default_value_t = 4)]
        jobs: usize,
    },
    /// `istioctl proxy-status`: start the mesh, apply more files through a
    /// control plane that pushes after `--push-delay`, and show which
    /// proxies are SYNCED or STALE `--after` the apply.
    #[command(name = "proxy-status", alias = "ps")]
    ProxyStatus {
        #[command(flatten)]
        input: Input,
        /// Files applied after the mesh started.
        #[arg(long)]
        apply: Vec<PathBuf>,
        /// Delay before each proxy receives the change (e.g. 2s).
        #[arg(long, default_value = "0s")]
        push_delay: String,
        /// When to look, after the apply (e.g. 500ms).
        #[arg(long, default_value = "0s")]
        after: String,
    },
    /// Start the mesh and keep it running for real clients: prints the
    /// localhost ports of the ingress gateway, per-pod entry ports (a real
    /// curl or browser "inside" a client pod, through its sidecar), admin
    /// ports and the CA to trust; access logs stream to stderr.
    Sandbox {
        /// `ports`: print the running sandbox's ports as JSON.
        #[command(subcommand)]
        action: Option<SandboxAction>,
        #[command(flatten)]
        input: Input,
        /// Stop after this long (default: until Ctrl-C).
        #[arg(long = "for")]
        duration: Option<String>,
        /// How long istiod takes to push a change to each proxy (e.g. 2s).
        #[arg(long, default_value = "0s")]
        push_delay: String,
        /// Also write every port as JSON to FILE (gateways, each client
        /// pod's proxy and service ports, admin, control), for scripts.
        #[arg(long)]
        ports_json: Option<PathBuf>,
        /// Apply the -f files again whenever they change.
        #[arg(long)]
        watch: bool,
        /// Lay every port a user reaches out from N upward (admin ports
        /// and gateways' outside ports as the mesh starts, then the control
        /// endpoint, the traffic page, each client pod's proxy port and
        /// entry ports): the same input gets the same ports.
        #[arg(long)]
        port_base: Option<u16>,
    },
    /// `kubectl apply -f FILE|DIR|-` against the running sandbox: the
    /// change goes through its control plane (with its push delay); a file
    /// with an error is rejected whole.
    Apply(ChangeArgs),
    /// `kubectl delete -f FILE|DIR|-` against the running sandbox.
    Delete(ChangeArgs),
    /// `kubectl logs POD|deploy/NAME` against the running sandbox: the
    /// proxy's access log (`-c istio-proxy`, the only container with one).
    Logs {
        /// `POD[.NAMESPACE]` or `deploy/NAME[.NAMESPACE]`.
        target: String,
        /// The namespace of a target named without one.
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        /// The container: `istio-proxy`.
        #[arg(short = 'c', long, default_value = "istio-proxy")]
        container: String,
        /// Keep printing new lines.
        #[arg(short = 'f', long)]
        follow: bool,
        /// Only the last N lines.
        #[arg(long)]
        tail: Option<usize>,
    },
    /// Export a proxy's configuration for a stock Envoy: `DIR/bootstrap.yaml`
    /// (`envoy -c DIR/bootstrap.yaml`) and the certificate files it names.
    /// Istio-only filters are dropped (with a note in the file) unless
    /// `--istio-proxy`.
    Export {
        /// What to export as (only `envoy`).
        #[arg(value_parser = ["envoy"])]
        format: String,
        /// POD[.NAMESPACE] or deploy/NAME[.NAMESPACE].
        proxy: String,
        #[command(flatten)]
        input: Input,
        /// Directory to write into (created if missing).
        #[arg(short = 'o', long = "output")]
        dir: PathBuf,
        /// The Envoy that will run it is Istio's proxy (keep `istio.*` filters).
        #[arg(long)]
        istio_proxy: bool,
    },
    /// Run one sidecar as its own process: `RLIMIT_NOFILE` set to
    /// `--fd-limit`; prints `READY <inbound> outbound=A admin=A
    /// plain=PORT@A,...`: the captures take PROXY protocol v2, each plain
    /// port takes ordinary connections as if sent to the pod's IP at PORT.
    /// Access-log lines follow on stdout. Aborts like Envoy when out of
    /// file descriptors.
    Proxy {
        #[command(flatten)]
        input: Input,
        /// The workload whose sidecar this is: POD[.NAMESPACE] or deploy/NAME[.NAMESPACE].
        #[arg(long)]
        proxy: String,
        /// Its application: CONTAINER_PORT=HOST:PORT (repeatable).
        #[arg(long)]
        app: Vec<String>,
        #[arg(long, default_value_t = 1024)]
        fd_limit: u64,
    },
    /// Start the mesh and send one request like curl, from inside a pod
    /// (through its sidecar) or from outside (to the ingress gateway).
    /// Prints the response like curl; the access-log lines of every proxy
    /// on the path go to stderr.
    Curl {
        #[command(flatten)]
        input: Input,
        #[command(flatten)]
        curl: Box<CurlArgs>,
    },
    /// Explain one request: the path istiod's tables give it (listener,
    /// filter chain, route, cluster, endpoint, TLS, the server's inbound
    /// chain) and the predicted status and response flag. `--send` then
    /// sends it and sets the real access-log lines beside the prediction.
    /// Takes curl's flags, like `meshsim curl`.
    Explain {
        #[command(flatten)]
        input: Input,
        #[command(flatten)]
        curl: Box<CurlArgs>,
        /// Send the request too, and compare.
        #[arg(long)]
        send: bool,
    },
    /// Like `istioctl analyze` on the cluster the files describe: istioctl's
    /// traffic analyzers (IST codes, levels and messages of its
    /// messages.yaml) and meshsim's checks for each failure of the "Traffic
    /// Management Problems" page (MS codes, with the page's fix). Exits 79
    /// when a message reaches --failure-threshold (log output only), as
    /// istioctl does.
    Analyze {
        #[command(flatten)]
        input: Input,
        /// Analyze every namespace (default: the `-n` namespace, or `default`).
        #[arg(short = 'A', long)]
        all_namespaces: bool,
        /// Output format: log, json or yaml.
        #[arg(short = 'o', long, default_value = "log", value_parser = ["log", "json", "yaml"])]
        output: String,
        /// The severity level of analysis at which to set a non-zero exit
        /// code: Info, Warning or Error.
        #[arg(long, default_value = "Error", value_parser = ["Info", "Warning", "Error"], ignore_case = true)]
        failure_threshold: String,
        /// The severity level of analysis at which to display messages:
        /// Info, Warning or Error.
        #[arg(long, default_value = "Info", value_parser = ["Info", "Warning", "Error"], ignore_case = true)]
        output_threshold: String,
        /// Suppress reporting a message code on a resource:
        /// `CODE=Kind name.namespace` (`*` matches any run). Repeatable.
        #[arg(short = 'S', long)]
        suppress: Vec<String>,
    },
    /// Load like fortio (`fortio load`'s flags, with one dash or two):
    /// `-qps` (0 = max), `-c` connections, `-t` duration or `-n` calls,
    /// `-timeout`, `-p`, `-H`, `-payload`, `-json FILE|-`; fortio's report
    /// on stderr, plus who answered and the response flags in the access
    /// logs. From a pod (through its sidecar) or from outside.
    // `-n` is fortio's number of calls here: the namespace is long-only.
    #[command(mut_arg("namespace", |a| a.short(None)))]
    Load(Box<LoadArgs>),
}

/// fortio's `-n`: a count of calls. A word there is most likely a
/// namespace given the kubectl way; say so.
fn calls(s: &str) -> std::result::Result<u64, String> {
    s.parse::<u64>().map_err(|_| {
        format!("-n is the number of calls (as fortio's -n); for the namespace {s:?} use --namespace {s}")
    })
}

/// A Go duration (`10s`, `1m30s`, `500ms`, `0`).
fn go_duration(s: &str) -> std::result::Result<std::time::Duration, String> {
    crate::load::gofmt::parse_duration(s)
}

/// `meshsim load` options: fortio's names and defaults (fortio.org
/// cli/fortio_main.go, bincommon/commonflags.go), meshsim's own long.
#[derive(clap::Args)]
pub struct LoadArgs {
    #[command(flatten)]
    pub input: Input,
    /// Where the load starts: POD[.NAMESPACE], deploy/NAME[.NAMESPACE], or `outside`.
    #[arg(long, default_value = "deploy/sleep")]
    pub from: String,
    /// Queries per second in all, or 0 (or less) for no wait/max qps.
    #[arg(long, default_value_t = 8.0, allow_negative_numbers = true)]
    pub qps: f64,
    /// Number of connections/goroutines/threads.
    #[arg(short = 'c', default_value_t = 4)]
    pub connections: u64,
    /// How long to run (Go duration), or 0 to run until ^C.
    #[arg(short = 't', default_value = "5s", value_parser = go_duration)]
    pub duration: std::time::Duration,
    /// Run for exactly this number of calls instead of a duration (0 = use -t).
    #[arg(short = 'n', default_value_t = 0, value_parser = calls)]
    pub calls: u64,
    /// Connection and read timeout of each call (Go duration).
    #[arg(long, default_value = "3s", value_parser = go_duration)]
    pub timeout: std::time::Duration,
    /// List of pXX to calculate.
    #[arg(short = 'p', default_value = "50,75,90,99,99.9")]
    pub percentiles: String,
    /// Resolution of the histogram's lowest buckets in seconds.
    #[arg(short = 'r', default_value_t = 0.001)]
    pub resolution: f64,
    /// Additional header(s), `Name: value`.
    #[arg(short = 'H')]
    pub headers: Vec<String>,
    /// Payload string to send along (makes it a POST).
    #[arg(long)]
    pub payload: Option<String>,
    /// Additional random payload size, replaces -payload when set > 0.
    #[arg(long, default_value_t = 0)]
    pub payload_size: usize,
    /// Sets the Content-Type (and makes it a POST).
    #[arg(long)]
    pub content_type: Option<String>,
    /// HTTP method instead of GET/POST.
    #[arg(short = 'X')]
    pub method: Option<String>,
    /// JSON output to FILE, or `-` for stdout.
    #[arg(long)]
    pub json: Option<String>,
    /// Save the JSON result with a name from the labels and the time.
    #[arg(short = 'a')]
    pub auto_save: bool,
    /// Where `-a` saves.
    #[arg(long, default_value = ".")]
    pub data_dir: PathBuf,
    /// Labels in the JSON result (default: the URL without scheme and the host name).
    #[arg(long, default_value = "")]
    pub labels: String,
    /// Do not abort on warmup errors.
    #[arg(long)]
    pub allow_initial_errors: bool,
    /// HTTP status code that aborts the run (-1 for socket errors).
    #[arg(long, allow_negative_numbers = true)]
    pub abort_on: Option<i32>,
    /// Spread the connections' requests by ±10 %.
    #[arg(long)]
    pub jitter: bool,
    /// Stagger the connections' requests uniformly.
    #[arg(long)]
    pub uniform: bool,
    /// Do not catch up when behind the target qps.
    #[arg(long)]
    pub nocatchup: bool,
    /// Keep connections alive (`-keepalive=false` opens one per call).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub keepalive: bool,
    /// HTTP/1.0 instead of HTTP/1.1.
    #[arg(long = "http1.0")]
    pub http10: bool,
    /// Do not verify certificates.
    #[arg(short = 'k')]
    pub insecure: bool,
    /// meshsim: print N access-log lines of the run (those with response
    /// flags first).
    #[arg(long, default_value_t = 0)]
    pub show_logs: usize,
    /// meshsim: run this workload's sidecar as its own OS process (repeatable),
    /// with `RLIMIT_NOFILE` set to `--fd-limit`.
    #[arg(long)]
    pub sidecar_process: Vec<String>,
    /// meshsim: the open-file limit of `--sidecar-process` sidecars.
    #[arg(long, default_value_t = 1024)]
    pub fd_limit: u64,
    pub url: String,
}

/// What `meshsim sandbox` does besides starting one.
#[derive(clap::Subcommand)]
pub enum SandboxAction {
    /// Print the running sandbox's ports as JSON (as `--ports-json` writes them).
    Ports,
}

/// `apply` / `delete` options (kubectl's spelling).
#[derive(clap::Args)]
pub struct ChangeArgs {
    /// Files or directories (`.yaml`, `.yml`, `.json`), `-` for stdin.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<String>,
    /// The namespace of objects that name none (`kubectl -n`).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
}

/// `meshsim curl` options (curl's spelling).
#[derive(clap::Args)]
pub struct CurlArgs {
    /// Where the request starts: POD[.NAMESPACE], deploy/NAME[.NAMESPACE], or `outside`.
    #[arg(long, default_value = "deploy/sleep")]
    pub from: String,
    /// Silent: no progress or error details.
    #[arg(short = 's', long)]
    pub silent: bool,
    /// Write the body to FILE (`/dev/null` to drop it).
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// Print FORMAT after the transfer (`%{http_code}`).
    #[arg(short = 'w', long = "write-out")]
    pub write_out: Option<String>,
    /// Extra header, `Name: value`.
    #[arg(short = 'H', long = "header")]
    pub headers: Vec<String>,
    /// Request method.
    #[arg(short = 'X', long = "request")]
    pub method: Option<String>,
    /// Request body (makes it a POST).
    #[arg(short = 'd', long = "data")]
    pub data: Option<String>,
    /// Accept any server certificate.
    #[arg(short = 'k', long)]
    pub insecure: bool,
    /// Show the exchange on stderr.
    #[arg(short = 'v', long)]
    pub verbose: bool,
    /// HEAD request, print headers.
    #[arg(short = 'I', long)]
    pub head: bool,
    #[arg(long = "http1.0")]
    pub http10: bool,
    #[arg(long = "http1.1")]
    pub http11: bool,
    #[arg(long = "http2")]
    pub http2: bool,
    /// HOST:PORT:ADDR
    #[arg(long)]
    pub resolve: Vec<String>,
    /// HOST1:PORT1:HOST2:PORT2
    #[arg(long = "connect-to")]
    pub connect_to: Vec<String>,
    /// PEM file of CA certificates to trust.
    #[arg(long)]
    pub cacert: Option<PathBuf>,
    /// Client certificate (PEM) for TLS.
    #[arg(short = 'E', long = "cert")]
    pub cert: Option<PathBuf>,
    /// Private key (PEM) of the client certificate.
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// Maximum time in seconds.
    #[arg(short = 'm', long = "max-time")]
    pub max_time: Option<f64>,
    pub url: String,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum KindArg {
    #[value(aliases = ["a"])]
    All,
    #[value(aliases = ["b"])]
    Bootstrap,
    #[value(aliases = ["cluster", "c"])]
    Clusters,
    #[value(aliases = ["endpoint", "ep"])]
    Endpoints,
    #[value(aliases = ["listener", "l"])]
    Listeners,
    #[value(aliases = ["route", "r"])]
    Routes,
    #[value(aliases = ["secret", "s"])]
    Secrets,
    /// meshsim's own: each EnvoyFilter patch, applied or not, and why.
    #[value(aliases = ["envoyfilter", "patch"])]
    Patches,
}

impl From<KindArg> for display::Kind {
    fn from(k: KindArg) -> Self {
        match k {
            KindArg::All => display::Kind::All,
            KindArg::Bootstrap => display::Kind::Bootstrap,
            KindArg::Clusters => display::Kind::Clusters,
            KindArg::Endpoints => display::Kind::Endpoints,
            KindArg::Listeners => display::Kind::Listeners,
            KindArg::Routes => display::Kind::Routes,
            KindArg::Secrets => display::Kind::Secrets,
            KindArg::Patches => display::Kind::Patches,
        }
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum FormatArg {
    /// istioctl's summary table (`table` is accepted too).
    #[value(alias = "table")]
    Short,
    Json,
    Yaml,
}

impl From<FormatArg> for display::Format {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::Short => display::Format::Short,
            FormatArg::Json => display::Format::Json,
            FormatArg::Yaml => display::Format::Yaml,
        }
    }
}

/// `istioctl proxy-config`'s output and filter flags.
#[derive(clap::Args)]
pub struct ViewArgs {
    /// Output format: short (the default; json for bootstrap), json, yaml.
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<FormatArg>,
    /// Clusters: substring of the service FQDN.
    #[arg(long, default_value = "")]
    pub fqdn: String,
    /// Clusters: substring of the subset.
    #[arg(long, default_value = "")]
    pub subset: String,
    /// Clusters: direction (inbound, outbound).
    #[arg(long, default_value = "")]
    pub direction: String,
    /// Clusters, listeners, endpoints: port.
    #[arg(long, default_value_t = 0)]
    pub port: u32,
    /// Listeners, endpoints: address.
    #[arg(long, default_value = "")]
    pub address: String,
    /// Listeners: HTTP, TCP, HTTP+TCP.
    #[arg(long = "type", default_value = "")]
    pub listener_type: String,
    /// Endpoints: cluster name.
    #[arg(long, default_value = "")]
    pub cluster: String,
    /// Endpoints: health status (healthy, unhealthy, ...).
    #[arg(long, default_value = "")]
    pub status: String,
    /// Routes: route configuration name.
    #[arg(long, default_value = "")]
    pub name: String,
    /// Listeners and routes: matches and destinations (`--verbose=false`
    /// for the short form).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub verbose: bool,
    /// `all`: a title above each section.
    #[arg(long)]
    pub with_headers: bool,
}

impl ViewArgs {
    pub fn options(&self) -> display::Options {
        use meshsim_tables::istioctl::*;
        display::Options {
            filters: Filters {
                cluster: ClusterFilter {
                    fqdn: self.fqdn.clone(),
                    port: self.port,
                    subset: self.subset.clone(),
                    direction: self.direction.clone(),
                },
                listener: ListenerFilter {
                    address: self.address.clone(),
                    port: self.port,
                    kind: self.listener_type.clone(),
                    verbose: self.verbose,
                },
                route: RouteFilter {
                    name: self.name.clone(),
                    verbose: self.verbose,
                },
                endpoint: EndpointFilter {
                    address: self.address.clone(),
                    port: self.port,
                    cluster: self.cluster.clone(),
                    status: self.status.clone(),
                },
            },
            with_headers: self.with_headers,
            secrets: SecretView::default(),
        }
    }
}

impl Input {
    /// What the flags say about istiod and the proxies.
    pub fn settings(&self) -> Result<Settings> {
        let Some(version) = IstioVersion::parse(&self.istio_version) else {
            bail!(
                "--istio-version {:?}: expected MAJOR.MINOR[.PATCH], e.g. 1.28.0",
                self.istio_version
            );
        };
        let compatibility_version = match &self.compatibility_version {
            None => None,
            Some(c) => Some(
                meshsim_compiler::features::parse_compatibility_version(c).ok_or_else(|| {
                    anyhow::anyhow!("--compatibility-version {c:?}: expected 1.MINOR, e.g. 1.23")
                })?,
            ),
        };
        Ok(Settings {
            istio_version: version,
            compatibility_version,
            inject_undeclared_namespaces: !self.no_implicit_injection,
            ..Settings::default()
        })
    }

    /// `-n`, as kubectl apply (`strict`) or istioctl analyze reads it.
    pub fn namespace_flag(&self, strict: bool) -> NamespaceFlag {
        match (&self.namespace, strict) {
            (None, _) => NamespaceFlag::Unset,
            (Some(n), true) => NamespaceFlag::Apply(n.clone()),
            (Some(n), false) => NamespaceFlag::Select(n.clone()),
        }
    }
}
