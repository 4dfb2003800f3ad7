//! `meshsim`: the command-line entry point. Subcommands are thin: they load
//! YAML with meshsim-model, build the world, compile with
//! meshsim-compiler, and print. The command line itself is in `args`.

use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Parser;
use meshsim_compiler::World;
use meshsim_model::Diagnostics;
use meshsim_tables::display;

mod args;
mod curl;
mod load;
mod remote;
mod sandbox;

use args::{Cli, Command, CurlArgs, Input, LoadArgs};

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
    let cli = Cli::parse_from(fortio_flags(std::env::args_os().collect()));
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// `meshsim load` takes fortio's command line, whose flags have one dash
/// (Go's flag package): `-qps 100` is `--qps 100` here. Single-dash
/// words that name one of `load`'s long flags get their second dash.
fn fortio_flags(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    use clap::CommandFactory;
    let Some(at) = args.iter().position(|a| a == "load") else {
        return args;
    };
    let cmd = Cli::command();
    let Some(load) = cmd.find_subcommand("load") else {
        return args;
    };
    let longs: Vec<String> = load
        .get_arguments()
        .filter_map(|a| a.get_long().map(str::to_string))
        .collect();
    for a in args.iter_mut().skip(at + 1) {
        let Some(s) = a.to_str() else { continue };
        if s == "--" {
            break;
        }
        let Some(rest) = s.strip_prefix('-').filter(|r| !r.starts_with('-')) else {
            continue;
        };
        let name = rest.split('=').next().unwrap_or(rest);
        if name.len() > 1 && longs.iter().any(|l| l == name) {
            *a = format!("-{s}").into();
        }
    }
    args
}

/// Raises the open-file limit to the hard limit (the mesh's proxies, apps
/// and clients share this process's descriptors); says so when `verbose`.
fn raise_fd_limit(verbose: bool) -> meshsim_mesh::fdlimit::FdLimit {
    let l = meshsim_mesh::fdlimit::raise();
    if verbose {
        eprintln!("meshsim: {l}");
    }
    l
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
    if input.files.is_empty() {
        bail!("the following required arguments were not provided: --filename <FILES> (-f)");
    }
    Ok(World::load(
        &input.files,
        input.settings()?,
        &input.namespace_flag(strict_namespace),
    ))
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
            raise_fd_limit(false);
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
            if input.files.is_empty() {
                return remote::proxy_status();
            }
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
            raise_fd_limit(false);
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
        Command::Apply(a) => remote::change(&a, false),
        Command::Delete(a) => remote::change(&a, true),
        Command::Logs {
            target,
            namespace,
            container,
            follow,
            tail,
        } => {
            if container != "istio-proxy" {
                bail!("container {container:?} has no log in meshsim: only istio-proxy (the sidecar's access log)");
            }
            remote::logs(target, namespace, follow, tail)
        }
        Command::Sandbox {
            action: Some(args::SandboxAction::Ports),
            ..
        } => remote::ports(),
        Command::Sandbox {
            action: None,
            input,
            duration,
            push_delay,
            ports_json,
            watch,
            port_base,
        } => {
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
            let limit = raise_fd_limit(false);
            let push_delay = meshsim_model::common::Duration::parse(&push_delay)
                .map(|d| std::time::Duration::from_millis(d.millis))
                .map_err(|e| anyhow::anyhow!("--push-delay: {e}"))?;
            let opts = meshsim_mesh::MeshOptions {
                push_delay,
                port_base,
                keep_log_entries: false,
                ..mesh_options(&input, true)
            };
            let watch = watch.then(|| (input.files.clone(), input.namespace_flag(true)));
            rt.block_on(sandbox::run(
                world, duration, opts, limit, ports_json, watch,
            ))?;
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
                compatibility_version: input.compatibility_version.clone(),
                proxy,
                apps,
                fd_limit,
                relay: None,
                identity: None,
                dns: Default::default(),
                seed: input.seed.unwrap_or(1),
                stream_logs: false,
            };
            meshsim_mesh::process::run_proxy_process(cfg, envoy_fd_abort())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Analyze {
            input,
            all_namespaces,
            output,
            failure_threshold,
            output_threshold,
            suppress,
        } => {
            let mut req = meshsim_mesh::analysis::AnalyzeRequest {
                namespace: input.namespace.clone(),
                all_namespaces,
                output: Some(output),
                failure_threshold: Some(failure_threshold),
                output_threshold: Some(output_threshold),
                suppress,
                files: vec![],
            };
            if input.files.is_empty() {
                return remote::analyze(req);
            }
            let (world, diags) = load_world_ns(&input, false)?;
            print_diagnostics(&diags);
            if diags.has_errors() {
                return Ok(ExitCode::FAILURE);
            }
            req.files = input
                .files
                .iter()
                .map(|f| f.display().to_string())
                .collect();
            let r = meshsim_mesh::analysis::analyze_report(&world, &req);
            write_stdout(&r.stdout);
            eprint!("{}", r.stderr);
            Ok(ExitCode::from(r.code))
        }
        Command::Export {
            format: _,
            proxy,
            input,
            dir,
            istio_proxy,
        } => {
            let (world, diags) = load_world(&input)?;
            print_diagnostics(&diags);
            if diags.has_errors() {
                return Ok(ExitCode::FAILURE);
            }
            let opts = meshsim_tables::envoy::export::ExportOptions {
                istio_extensions: istio_proxy,
                ..Default::default()
            };
            let out = meshsim_mesh::export::export_envoy(&world, &proxy, &dir, opts)?;
            for n in &out.notes {
                eprintln!("note: {n}");
            }
            write_stdout(&format!("wrote {}\n", dir.join("bootstrap.yaml").display()));
            Ok(ExitCode::SUCCESS)
        }
        Command::Curl { input, curl } => {
            raise_fd_limit(curl.verbose);
            let opts = mesh_options(&input, false);
            run_on_world(&input, |w| curl::run(w, *curl, opts))
        }
        Command::Explain { input, curl, send } => {
            let opts = mesh_options(&input, false);
            run_on_world(&input, |w| curl::explain(w, *curl, send, opts))
        }
        Command::Load(load) => {
            raise_fd_limit(true);
            let input = load.input.clone();
            let mut opts = meshsim_mesh::MeshOptions {
                keep_log_entries: false,
                ..mesh_options(&input, false)
            };
            if !load.sidecar_process.is_empty() {
                if input.files.iter().any(|f| f.as_os_str() == "-") {
                    bail!("--sidecar-process: the sidecar processes read the -f files themselves; give files, not stdin");
                }
                opts.sidecar_processes = Some(std::sync::Arc::new(
                    meshsim_mesh::process::SidecarProcesses {
                        proxies: load.sidecar_process.clone(),
                        fd_limit: load.fd_limit,
                        input: meshsim_mesh::process::ChildInput {
                            files: input.files.clone(),
                            namespace: input.namespace.clone(),
                            istio_version: input.istio_version.clone(),
                            compatibility_version: input.compatibility_version.clone(),
                        },
                    },
                ));
            }
            run_on_world(&input, |w| load::run(w, *load, opts))
        }
        Command::ProxyConfig {
            kind,
            proxy,
            input,
            view,
        } => {
            let src = if input.files.is_empty() {
                // No -f: the running sandbox's proxy, as it serves now.
                let d = remote::proxy_dump(&proxy, input.namespace.clone())?;
                display::Sources {
                    config_dump: d.config_dump,
                    clusters: d.clusters,
                    patches: d.patches,
                }
            } else {
                let (world, diags) = load_world(&input)?;
                print_diagnostics(&diags);
                if diags.has_errors() {
                    return Ok(ExitCode::FAILURE);
                }
                let dump = match meshsim_mesh::export::proxy_dump(&world, &proxy) {
                    Ok(d) => d,
                    Err(e) => bail!("{e}"),
                };
                display::Sources {
                    config_dump: dump.config_dump,
                    clusters: dump.clusters,
                    patches: dump.tables.envoy_filter_patches.clone(),
                }
            };
            let kind: display::Kind = kind.into();
            let format = view.output.map(Into::into).unwrap_or(kind.default_format());
            write_stdout(&display::render(&src, kind, format, &view.options()));
            Ok(ExitCode::SUCCESS)
        }
    }
}
