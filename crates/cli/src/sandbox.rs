//! `meshsim sandbox`: the mesh, kept running for real clients. Files it
//! writes (the CA to trust) go to a fresh private directory (`tempfile`:
//! 0700, unpredictable name) removed when the sandbox ends — by `--for`,
//! Ctrl-C or SIGTERM.

use std::fmt::Write;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::Result;
use meshsim_compiler::world::ServiceSource;
use meshsim_compiler::World;
use meshsim_mesh::{Mesh, MeshOptions};

pub async fn run(
    world: World,
    duration: Option<Duration>,
    opts: MeshOptions,
    limit: meshsim_mesh::fdlimit::FdLimit,
) -> Result<()> {
    let mesh = Mesh::start(world, opts).await?;
    for w in mesh.warnings() {
        eprintln!("meshsim: warning: {w}");
    }
    let dir = private_dir()?;
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, mesh.public_ca().root_pem())?;
    // Handlers first: a Ctrl-C right after the ports are printed must
    // still end the sandbox cleanly.
    let signals = Signals::install();
    let mut text = describe(&mesh, &ca).await?;
    let _ = writeln!(
        text,
        "\nEvery proxy, app and client here shares this process's {limit}."
    );
    print_ignoring_closed_stdout(&text);
    wait_for_end(duration, signals).await;
    mesh.shutdown().await;
    // `dir` is removed here, on every way out of `wait_for_end`.
    drop(dir);
    Ok(())
}

/// Prints `text` as one write; a reader that went away (`| head`, a
/// script that read the port it wanted) does not end the sandbox.
fn print_ignoring_closed_stdout(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = out
        .write_all(format!("{text}\n").as_bytes())
        .and_then(|()| out.flush());
}

/// A fresh directory only this user can read (0700), with an
/// unpredictable name; `create_dir` fails rather than reuse or follow
/// anything already at that path.
fn private_dir() -> std::io::Result<tempfile::TempDir> {
    use std::os::unix::fs::PermissionsExt;
    tempfile::Builder::new()
        .prefix("meshsim-sandbox-")
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()
}

/// SIGINT (Ctrl-C) and SIGTERM, listened for from the moment they are installed.
struct Signals {
    int: Option<tokio::signal::unix::Signal>,
    term: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn install() -> Self {
        use tokio::signal::unix::{signal, SignalKind};
        Self {
            int: signal(SignalKind::interrupt()).ok(),
            term: signal(SignalKind::terminate()).ok(),
        }
    }
}

async fn next(s: &mut Option<tokio::signal::unix::Signal>) {
    match s {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}

/// Until `duration` passes, or Ctrl-C, or SIGTERM.
async fn wait_for_end(duration: Option<Duration>, mut signals: Signals) {
    let timer = async {
        match duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = timer => {}
        _ = next(&mut signals.int) => {}
        _ = next(&mut signals.term) => {}
    }
}

/// What a user needs to reach the sandbox: gateway ports, entry ports
/// from inside client pods, admin ports and the CA.
async fn describe(mesh: &Mesh, ca: &std::path::Path) -> Result<String> {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "meshsim sandbox: {} proxies running; access logs follow on stderr.",
        mesh.proxy_ids().len()
    );
    let _ = writeln!(
        out,
        "\nThe test CA that gateway and internet certificates chain to: {}",
        ca.display()
    );
    let mut last = None;
    for ((ip, port), ing) in &mesh.ingress() {
        if last.as_ref() != Some(&(*ip, ing.service.clone())) {
            let _ = writeln!(
                out,
                "\nGateway Service {} (outside address {ip}):",
                ing.service
            );
            last = Some((*ip, ing.service.clone()));
        }
        let tls = mesh
            .proxy(&ing.proxy)
            .is_some_and(|p| p.expects_tls(ing.target_port));
        let scheme = if tls { "https" } else { "http" };
        let _ = writeln!(out, "  {port:>5} -> {}    curl --connect-to ::{} {scheme}://HOST:{port}/   (add --cacert {} for https)", ing.real, ing.real, ca.display());
    }
    let world = mesh.world();
    // Entry ports: a real client inside each client pod (no server app),
    // to every service it can name.
    let targets: Vec<(String, SocketAddr)> = world
        .services
        .iter()
        .filter(|s| !s.hostname.starts_with('*'))
        .flat_map(|s| {
            let host = s.hostname.clone();
            let ip = if s.source == ServiceSource::Kubernetes {
                s.addresses.first().and_then(|a| a.parse::<IpAddr>().ok())
            } else {
                None
            }
            .or_else(|| mesh.net().resolve("default", &s.hostname));
            s.ports
                .iter()
                .filter_map(move |p| {
                    ip.map(|ip| (format!("{host}:{}", p.port), SocketAddr::new(ip, p.port)))
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let is_client = |p: &&meshsim_compiler::world::Pod| {
        p.sidecar
            && meshsim_mesh::apps::app_for(
                &p.image,
                p.annotations
                    .get(meshsim_compiler::world::APP_ANNOTATION)
                    .map(String::as_str),
            ) == meshsim_mesh::apps::AppKind::Client
    };
    for pod in world.pods.iter().filter(is_client) {
        let _ = writeln!(out, "\nInside pod {} (through its sidecar):", pod.id());
        for (name, dst) in &targets {
            let local = mesh.expose(IpAddr::V4(pod.ip), *dst).await?;
            let _ = writeln!(
                out,
                "  {name:<60} -> {local}    curl --connect-to {name}:{local} http://{name}/"
            );
        }
    }
    let _ = writeln!(out, "\nAdmin (loopback):");
    for (id, addr) in &mesh.admin() {
        let _ = writeln!(
            out,
            "  {id:<44} http://{addr}/config_dump  /stats  /clusters"
        );
    }
    Ok(out)
}
