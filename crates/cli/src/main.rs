//! `meshsim`: the command-line entry point. Subcommands are thin: they load
//! YAML with meshsim-model, build the world, compile with
//! meshsim-compiler, and print.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};
use meshsim_compiler::{IstioVersion, NamespaceFlag, Settings, World};
use meshsim_model::Diagnostics;
use meshsim_tables::display;

mod curl;
mod load;
mod sandbox;

#[derive(Parser)]
#[command(
    name = "meshsim",
    version,
    about = "A real Istio data plane on one laptop: compile, run and debug mesh configs locally"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Options shared by every command that reads YAML.
#[derive(clap::Args, Clone)]
struct Input {
    /// YAML/JSON files or directories, as you would `kubectl apply -f`.
    #[arg(short = 'f', long = "filename", required = true)]
    files: Vec<PathBuf>,
    /// The Istio version the proxies report (changes version-dependent behaviour).
    #[arg(long, default_value_t = IstioVersion::DEFAULT.to_string())]
    istio_version: String,
    /// Treat namespaces that the input does not declare as NOT injected.
    #[arg(long)]
    no_implicit_injection: bool,
    /// As `kubectl apply -n`: the namespace of objects that name none; also
    /// the namespace of a PROXY / --from named without one (`istioctl -n`).
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// Seeds the mesh's random choices (weighted picks, request ids) so a
    /// run can be repeated; random by default, like a real mesh.
    #[arg(long)]
    seed: Option<u64>,
}

#[derive(Subcommand)]
enum Command {
    /// Check YAML for errors (exit status 1 on any error).
    Validate {
        #[command(flatten)]
        input: Input,
    },
    /// Show the Envoy configuration istiod would push to a proxy.
    #[command(name = "proxy-config", alias = "pc")]
    ProxyConfig {
        #[arg(value_enum)]
        kind: KindArg,
        /// POD[.NAMESPACE] or deploy/NAME[.NAMESPACE].
        proxy: String,
        #[command(flatten)]
        input: Input,
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value = "table")]
        output: FormatArg,
        /// Only resources with this name (listener, route config or cluster).
        #[arg(long)]
        name: Option<String>,
        /// Only listeners on / clusters for this port.
        #[arg(long)]
        port: Option<u16>,
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
        #[command(flatten)]
        input: Input,
        /// Stop after this long (default: until Ctrl-C).
        #[arg(long = "for")]
        duration: Option<String>,
    },
    /// Run one sidecar as its own process (as the fd-limit scenario does):
    /// `RLIMIT_NOFILE` set to `--fd-limit`; prints `READY <addr>` for its
    /// inbound capture (PROXY protocol v2); aborts like Envoy when out of
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
    /// Like `istioctl analyze`: IST0101 dangling references (hosts,
    /// host+subset, gateways), IST0132 VirtualService hosts a gateway does
    /// not serve, IST0118 port names, IST0102 injection. Exit 79 when an
    /// Error is found, as istioctl does.
    Analyze {
        #[command(flatten)]
        input: Input,
        /// Analyze every namespace (default: the `-n` namespace, or `default`).
        #[arg(short = 'A', long)]
        all_namespaces: bool,
    },
    /// Load like fortio: C keep-alive connections share N calls from a pod
    /// (through its sidecar) or from outside; prints latency percentiles,
    /// response codes and sockets used. Exit 1 unless every call got 200.
    Load {
        #[command(flatten)]
        input: Input,
        #[command(flatten)]
        load: LoadArgs,
    },
}

/// `meshsim load` options (fortio's spelling where it has one).
#[derive(clap::Args)]
struct LoadArgs {
    /// Where the load starts: POD[.NAMESPACE], deploy/NAME[.NAMESPACE], or `outside`.
    #[arg(long, default_value = "deploy/sleep")]
    from: String,
    /// Concurrent keep-alive connections (fortio `-c`).
    #[arg(short = 'c', long, default_value_t = 8)]
    connections: u64,
    /// Total calls, shared by the connections (fortio `-n`).
    #[arg(long, default_value_t = 1000)]
    calls: u64,
    /// Extra header, `Name: value`.
    #[arg(short = 'H', long = "header")]
    headers: Vec<String>,
    /// Per-call timeout in seconds.
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    url: String,
}

/// `meshsim curl` options (curl's spelling).
#[derive(clap::Args)]
struct CurlArgs {
    /// Where the request starts: POD[.NAMESPACE], deploy/NAME[.NAMESPACE], or `outside`.
    #[arg(long, default_value = "deploy/sleep")]
    from: String,
    /// Silent: no progress or error details.
    #[arg(short = 's', long)]
    silent: bool,
    /// Write the body to FILE (`/dev/null` to drop it).
    #[arg(short = 'o', long)]
    output: Option<String>,
    /// Print FORMAT after the transfer (`%{http_code}`).
    #[arg(short = 'w', long = "write-out")]
    write_out: Option<String>,
    /// Extra header, `Name: value`.
    #[arg(short = 'H', long = "header")]
    headers: Vec<String>,
    /// Request method.
    #[arg(short = 'X', long = "request")]
    method: Option<String>,
    /// Request body (makes it a POST).
    #[arg(short = 'd', long = "data")]
    data: Option<String>,
    /// Accept any server certificate.
    #[arg(short = 'k', long)]
    insecure: bool,
    /// Show the exchange on stderr.
    #[arg(short = 'v', long)]
    verbose: bool,
    /// HEAD request, print headers.
    #[arg(short = 'I', long)]
    head: bool,
    #[arg(long = "http1.0")]
    http10: bool,
    #[arg(long = "http1.1")]
    http11: bool,
    #[arg(long = "http2")]
    http2: bool,
    /// HOST:PORT:ADDR
    #[arg(long)]
    resolve: Vec<String>,
    /// HOST1:PORT1:HOST2:PORT2
    #[arg(long = "connect-to")]
    connect_to: Vec<String>,
    /// PEM file of CA certificates to trust.
    #[arg(long)]
    cacert: Option<PathBuf>,
    /// Client certificate (PEM) for TLS.
    #[arg(short = 'E', long = "cert")]
    cert: Option<PathBuf>,
    /// Private key (PEM) of the client certificate.
    #[arg(long)]
    key: Option<PathBuf>,
    /// Maximum time in seconds.
    #[arg(short = 'm', long = "max-time")]
    max_time: Option<f64>,
    url: String,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum KindArg {
    #[value(alias = "listener")]
    Listeners,
    #[value(alias = "route")]
    Routes,
    #[value(alias = "cluster")]
    Clusters,
    #[value(alias = "endpoint")]
    Endpoints,
    All,
}

impl From<KindArg> for display::Kind {
    fn from(k: KindArg) -> Self {
        match k {
            KindArg::Listeners => display::Kind::Listeners,
            KindArg::Routes => display::Kind::Routes,
            KindArg::Clusters => display::Kind::Clusters,
            KindArg::Endpoints => display::Kind::Endpoints,
            KindArg::All => display::Kind::All,
        }
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum FormatArg {
    Table,
    Json,
}

impl From<FormatArg> for display::Format {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::Table => display::Format::Table,
            FormatArg::Json => display::Format::Json,
        }
    }
}

/// Envoy's policy when a proxy runs out of file descriptors: the page's
/// critical assert line, then abort (Envoy treats EMFILE like OOM). Only
/// this binary installs it; the libraries never end the process.
fn envoy_fd_abort() -> meshsim_proxy::FdExhaustedHook {
    std::sync::Arc::new(|_| {
        eprintln!("{}", meshsim_proxy::envoy_fd_assert_line());
        std::process::abort();
    })
}

fn main() -> ExitCode {
    // A proxy started as its own process (`fd-limit` scenarios) runs here.
    meshsim_mesh::process::maybe_child(envoy_fd_abort());
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Writes to stdout; a closed pipe (`| head`) is not an error.
fn write_stdout(s: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(s.as_bytes()).and_then(|_| out.flush());
}

fn print_diagnostics(diags: &Diagnostics) {
    for d in diags {
        eprintln!("{d}");
    }
}

/// Loads the input and builds the world; errors stop here with every
/// diagnostic printed.
fn load_world(input: &Input) -> Result<(World, Diagnostics)> {
    load_world_ns(input, true)
}

/// [`load_world`]; `strict_namespace: false` is `istioctl analyze -n`, which
/// selects a namespace without rejecting objects in others.
fn load_world_ns(input: &Input, strict_namespace: bool) -> Result<(World, Diagnostics)> {
    Ok(World::load(
        &input.files,
        input.settings()?,
        &input.namespace_flag(strict_namespace),
    ))
}

impl Input {
    /// What the flags say about istiod and the proxies.
    fn settings(&self) -> Result<Settings> {
        let Some(version) = IstioVersion::parse(&self.istio_version) else {
            bail!(
                "--istio-version {:?}: expected MAJOR.MINOR[.PATCH], e.g. 1.28.0",
                self.istio_version
            );
        };
        Ok(Settings {
            istio_version: version,
            inject_undeclared_namespaces: !self.no_implicit_injection,
            ..Settings::default()
        })
    }

    /// `-n`, as kubectl apply (`strict`) or istioctl analyze reads it.
    fn namespace_flag(&self, strict: bool) -> NamespaceFlag {
        match (&self.namespace, strict) {
            (None, _) => NamespaceFlag::Unset,
            (Some(n), true) => NamespaceFlag::Apply(n.clone()),
            (Some(n), false) => NamespaceFlag::Select(n.clone()),
        }
    }
}

/// The mesh options of a run: `--seed`, else a fresh random seed.
fn mesh_options(input: &Input, echo_logs: bool) -> meshsim_mesh::MeshOptions {
    use std::hash::{BuildHasher, Hasher};
    let seed = input.seed.unwrap_or_else(|| {
        std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish()
    });
    meshsim_mesh::MeshOptions {
        seed,
        echo_logs,
        ..Default::default()
    }
}

/// Loads the input (stopping on errors) and runs `f` on a tokio runtime.
fn run_on_world<F, Fut>(input: &Input, f: F) -> Result<ExitCode>
where
    F: FnOnce(World) -> Fut,
    Fut: std::future::Future<Output = Result<ExitCode>>,
{
    let (world, diags) = load_world(input)?;
    print_diagnostics(&diags);
    if diags.has_errors() {
        return Ok(ExitCode::FAILURE);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(f(world))
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Validate { input } => {
            let (world, diags) = load_world(&input)?;
            print_diagnostics(&diags);
            let errors = diags.iter().filter(|d| d.is_error()).count();
            let warnings = diags.len() - errors;
            if errors > 0 {
                eprintln!("{errors} error(s), {warnings} warning(s)");
                return Ok(ExitCode::FAILURE);
            }
            write_stdout(&format!(
                "OK: {} services, {} pods ({} with proxies), {} Istio objects; {warnings} warning(s)\n",
                world.services.len(),
                world.pods.len(),
                world.proxies().count(),
                world.virtual_services.len() + world.destination_rules.len() + world.gateways.len() + world.envoy_filters.len() + world.sidecars.len() + world.peer_authentications.len()
            ));
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            paths,
            format,
            jobs,
        } => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let report = rt.block_on(meshsim_scenario::run_path(&paths, jobs));
            if format == "json" {
                write_stdout(&(serde_json::to_string_pretty(&report)? + "\n"));
            } else {
                for s in &report.scenarios {
                    write_stdout(&(s.transcript() + "\n"));
                }
                write_stdout(&format!(
                    "{} passed, {} failed\n",
                    report.passed, report.failed
                ));
            }
            Ok(if report.failed == 0 && !report.scenarios.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::ProxyStatus {
            input,
            apply,
            push_delay,
            after,
        } => {
            let (world, diags) = load_world(&input)?;
            print_diagnostics(&diags);
            if diags.has_errors() {
                return Ok(ExitCode::FAILURE);
            }
            let dur = |s: &str| {
                meshsim_model::common::Duration::parse(s)
                    .map(|d| std::time::Duration::from_millis(d.millis))
                    .map_err(|e| anyhow::anyhow!(e))
            };
            let (delay, after) = (dur(&push_delay)?, dur(&after)?);
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let opts = meshsim_mesh::MeshOptions {
                push_delay: delay,
                ..mesh_options(&input, false)
            };
            let ns = input.namespace_flag(true);
            let table = rt.block_on(async move {
                let mesh = meshsim_mesh::Mesh::start(world, opts).await?;
                if !apply.is_empty() {
                    let report = mesh
                        .apply(vec![meshsim_mesh::Change::apply_files(&apply, &ns)])
                        .await?;
                    for o in &report.objects {
                        eprintln!("{o}");
                    }
                }
                tokio::time::sleep(after).await;
                let table = meshsim_mesh::status::table(&mesh.status());
                mesh.shutdown().await;
                anyhow::Ok(table)
            })?;
            write_stdout(&table);
            Ok(ExitCode::SUCCESS)
        }
        Command::Sandbox { input, duration } => {
            let (world, diags) = load_world(&input)?;
            print_diagnostics(&diags);
            if diags.has_errors() {
                return Ok(ExitCode::FAILURE);
            }
            let duration = match duration.as_deref() {
                Some(d) => Some(
                    meshsim_model::common::Duration::parse(d)
                        .map(|d| std::time::Duration::from_millis(d.millis))
                        .map_err(|e| anyhow::anyhow!(e))?,
                ),
                None => None,
            };
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(sandbox::run(world, duration, mesh_options(&input, true)))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Proxy {
            input,
            proxy,
            app,
            fd_limit,
        } => {
            let mut apps = std::collections::BTreeMap::new();
            for a in &app {
                let Some((port, addr)) = a.split_once('=') else {
                    bail!("--app {a:?}: expected PORT=HOST:PORT")
                };
                apps.insert(
                    port.parse::<u16>()
                        .map_err(|_| anyhow::anyhow!("--app {a:?}: bad port"))?,
                    addr.parse()
                        .map_err(|_| anyhow::anyhow!("--app {a:?}: bad address"))?,
                );
            }
            let cfg = meshsim_mesh::process::ChildConfig {
                files: input.files.clone(),
                namespace: input.namespace.clone(),
                istio_version: input.istio_version.clone(),
                proxy,
                apps,
                fd_limit,
            };
            meshsim_mesh::process::run_proxy_process(cfg, envoy_fd_abort())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Analyze {
            input,
            all_namespaces,
        } => {
            let (world, diags) = load_world_ns(&input, false)?;
            print_diagnostics(&diags);
            if diags.has_errors() {
                return Ok(ExitCode::FAILURE);
            }
            let ns = input.namespace.as_deref().unwrap_or("default");
            let msgs = meshsim_compiler::analyze::analyze(&world, (!all_namespaces).then_some(ns));
            let scope = if all_namespaces {
                "all namespaces".to_string()
            } else {
                format!("namespace: {ns}")
            };
            let version = world.settings.istio_version;
            if msgs.is_empty() {
                write_stdout(&format!(
                    "\u{2714} No validation issues found when analyzing {scope}.\n"
                ));
                return Ok(ExitCode::SUCCESS);
            }
            let mut out = String::new();
            for m in &msgs {
                out.push_str(&format!("{m}\n"));
            }
            write_stdout(&out);
            let errors = msgs
                .iter()
                .any(|m| m.level == meshsim_compiler::analyze::Level::Error);
            if errors {
                eprintln!("Error: Analyzers found issues when analyzing {scope}.");
            }
            eprintln!(
                "See https://istio.io/v{}.{}/docs/reference/config/analysis for more information about causes and resolutions.",
                version.major, version.minor
            );
            Ok(if errors {
                ExitCode::from(79)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Curl { input, curl } => {
            let opts = mesh_options(&input, false);
            run_on_world(&input, |w| curl::run(w, *curl, opts))
        }
        Command::Load { input, load } => {
            let opts = mesh_options(&input, false);
            run_on_world(&input, |w| load::run(w, load, opts))
        }
        Command::ProxyConfig {
            kind,
            proxy,
            input,
            output,
            name,
            port,
        } => {
            let (world, diags) = load_world(&input)?;
            print_diagnostics(&diags);
            if diags.has_errors() {
                return Ok(ExitCode::FAILURE);
            }
            let pod = match meshsim_compiler::find_proxy(&world, &proxy) {
                Ok(p) => p,
                Err(e) => bail!("{e}"),
            };
            let tables = meshsim_compiler::compile_proxy(&world, pod);
            let filter = display::Filter { name, port };
            write_stdout(&display::render(
                &tables,
                kind.into(),
                output.into(),
                &filter,
            )?);
            Ok(ExitCode::SUCCESS)
        }
    }
}
