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
    ports_json: Option<std::path::PathBuf>,
    watch: Option<(Vec<std::path::PathBuf>, meshsim_compiler::NamespaceFlag)>,
) -> Result<()> {
    let mesh = std::sync::Arc::new(Mesh::start(world, opts).await?);
    for w in mesh.warnings() {
        eprintln!("meshsim: warning: {w}");
    }
    // The control endpoint `meshsim apply/delete/proxy-status` reach, and
    // the state file that tells them where it is (removed at the end).
    let control = mesh.bind_user().await?;
    let state = meshsim_mesh::remote::SandboxState {
        pid: std::process::id(),
        control: control.local_addr()?,
        token: token(),
    };
    let shared_ports = std::sync::Arc::new(std::sync::Mutex::new(serde_json::Value::Null));
    let server = tokio::spawn(meshsim_mesh::remote::serve(
        mesh.clone(),
        control,
        state.token.clone(),
        shared_ports.clone(),
    ));
    // The live traffic page (graph, proxy tables, access-log tails) on its
    // own localhost port, fed by a tap on the access logs.
    let page = mesh.bind_user().await?;
    let page_addr = page.local_addr()?;
    let graph = meshsim_mesh::traffic::TrafficGraph::attach(&mesh);
    let page_server = tokio::spawn(meshsim_mesh::traffic::server::serve(
        mesh.clone(),
        graph,
        page,
    ));
    let recorded = match meshsim_mesh::remote::record(&state) {
        Ok(f) => Some(f),
        Err(e) => {
            eprintln!("meshsim: warning: the sandbox cannot record itself ({e}): apply/delete/proxy-status will not find it");
            None
        }
    };
    let dir = private_dir()?;
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, mesh.public_ca().root_pem())?;
    // Handlers first: a Ctrl-C right after the ports are printed must
    // still end the sandbox cleanly.
    let signals = Signals::install();
    let (proxy_ports, mut proxy_servers) = pod_proxies(&mesh).await?;
    // --watch: the -f files are applied again when they change.
    let watcher = match watch {
        Some((files, ns)) => Some(watch_files(mesh.clone(), files, ns)?),
        None => None,
    };
    let mut ports = serde_json::json!({
        "control": state.control.to_string(),
        "traffic": format!("http://{page_addr}/"),
    });
    let mut text = describe(&mesh, &ca, &proxy_ports, &mut ports).await?;
    let _ = writeln!(
        text,
        "\nLive traffic page (graph, proxy tables, access logs): http://{page_addr}/"
    );
    if let Ok(mut p) = shared_ports.lock() {
        *p = ports.clone();
    }
    if let Some(path) = &ports_json {
        // Written whole, then renamed: a script never reads half of it.
        let tmp = path.with_extension("json.partial");
        std::fs::write(&tmp, serde_json::to_string_pretty(&ports)? + "\n")
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|e| anyhow::anyhow!("--ports-json {}: {e}", path.display()))?;
    }
    let _ = writeln!(
        text,
        "\nEvery proxy, app and client here shares this process's {limit}."
    );
    let _ = writeln!(
        text,
        "Change it while it runs: meshsim apply -f FILE|DIR|-, meshsim delete -f ..., meshsim proxy-status."
    );
    print_ignoring_closed_stdout(&text);
    wait_for_end(duration, signals).await;
    drop(recorded);
    server.abort();
    let _ = server.await;
    page_server.abort();
    let _ = page_server.await;
    proxy_servers.abort_all();
    while proxy_servers.join_next().await.is_some() {}
    if let Some((w, task)) = watcher {
        drop(w);
        task.abort();
        let _ = task.await;
    }
    mesh.shutdown().await;
    // `dir` is removed here, on every way out of `wait_for_end`.
    drop(dir);
    Ok(())
}

/// Watches `files` (notify: inotify here); each burst of changes (quiet
/// for 300 ms) applies them again through the control plane and prints
/// what was pushed, or why the change was rejected whole.
fn watch_files(
    mesh: std::sync::Arc<Mesh>,
    files: Vec<std::path::PathBuf>,
    ns: meshsim_compiler::NamespaceFlag,
) -> Result<(notify::RecommendedWatcher, tokio::task::JoinHandle<()>)> {
    use notify::Watcher;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut w = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        if ev.is_ok_and(|e| e.kind.is_modify() || e.kind.is_create() || e.kind.is_remove()) {
            let _ = tx.send(());
        }
    })?;
    for f in &files {
        w.watch(f, notify::RecursiveMode::Recursive)
            .map_err(|e| anyhow::anyhow!("--watch {}: {e}", f.display()))?;
    }
    let task = tokio::spawn(async move {
        while rx.recv().await.is_some() {
            // Editors write in bursts: wait for quiet.
            while let Ok(Some(())) =
                tokio::time::timeout(Duration::from_millis(300), rx.recv()).await
            {}
            match mesh
                .apply(vec![meshsim_mesh::Change::apply_files(&files, &ns)])
                .await
            {
                Ok(r) => {
                    for o in &r.objects {
                        eprintln!("meshsim: watch: {o}");
                    }
                    for w in r.warnings.iter() {
                        eprintln!("{w}");
                    }
                    eprintln!(
                        "meshsim: watch: version {} pushed after {:?} to {} proxies",
                        r.version,
                        r.push_delay,
                        r.pushed.len()
                    );
                }
                Err(meshsim_mesh::MeshError::Rejected(d)) => {
                    for e in d.iter() {
                        eprintln!("{e}");
                    }
                    eprintln!("meshsim: watch: rejected: nothing was changed (the mesh keeps its last good configuration)");
                }
                Err(e) => eprintln!("meshsim: watch: {e}"),
            }
        }
    });
    Ok((w, task))
}

/// An HTTP proxy port for each client pod (`curl -x`): its address by
/// pod id, and the servers (owned here, ended with the sandbox).
async fn pod_proxies(
    mesh: &Mesh,
) -> Result<(
    std::collections::BTreeMap<String, SocketAddr>,
    tokio::task::JoinSet<()>,
)> {
    let mut ports = std::collections::BTreeMap::new();
    let mut servers = tokio::task::JoinSet::new();
    let world = mesh.world();
    for pod in world.pods.iter().filter(|p| is_client(p)) {
        let l = mesh.bind_user().await?;
        ports.insert(pod.id(), l.local_addr()?);
        let at = meshsim_mesh::podproxy::PodRef {
            ip: IpAddr::V4(pod.ip),
            namespace: pod.namespace.clone(),
        };
        servers.spawn(meshsim_mesh::podproxy::serve(mesh.net().clone(), at, l));
    }
    Ok((ports, servers))
}

/// A client pod: a sidecar and no server app (sleep, curl).
fn is_client(p: &meshsim_compiler::world::Pod) -> bool {
    p.sidecar
        && meshsim_mesh::apps::app_for(
            &p.image,
            p.annotations
                .get(meshsim_compiler::world::APP_ANNOTATION)
                .map(String::as_str),
        ) == meshsim_mesh::apps::AppKind::Client
}

/// A random token for the control endpoint (any local process could
/// otherwise change the mesh).
fn token() -> String {
    use std::hash::{BuildHasher, Hasher};
    (0..4)
        .map(|_| {
            format!(
                "{:016x}",
                std::collections::hash_map::RandomState::new()
                    .build_hasher()
                    .finish()
            )
        })
        .collect()
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
async fn describe(
    mesh: &Mesh,
    ca: &std::path::Path,
    proxies: &std::collections::BTreeMap<String, SocketAddr>,
    ports: &mut serde_json::Value,
) -> Result<String> {
    use serde_json::json;
    ports["ca"] = json!(ca.display().to_string());
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
        ports["gateways"][ing.service.as_str()][port.to_string()] = json!({
            "address": ip.to_string(), "local": ing.real.to_string(), "scheme": scheme,
        });
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
    for pod in world.pods.iter().filter(|p| is_client(p)) {
        let _ = writeln!(out, "\nInside pod {} (through its sidecar):", pod.id());
        if let Some(p) = proxies.get(&pod.id()) {
            ports["pods"][pod.id()]["proxy"] = json!(p.to_string());
            let _ = writeln!(
                out,
                "  any URL, as the pod:   curl -x http://{p} http://SERVICE:PORT/   (or https://HOST, a pod IP)"
            );
        }
        for (name, dst) in &targets {
            let local = mesh.expose(IpAddr::V4(pod.ip), *dst).await?;
            ports["pods"][pod.id()]["services"][name.as_str()] = json!(local.to_string());
            let _ = writeln!(
                out,
                "  {name:<60} -> {local}    curl --connect-to {name}:{local} http://{name}/"
            );
        }
    }
    let _ = writeln!(out, "\nAdmin (loopback):");
    for (id, addr) in &mesh.admin() {
        ports["admin"][id.as_str()] = json!(addr.to_string());
        let _ = writeln!(
            out,
            "  {id:<44} http://{addr}/config_dump  /stats  /clusters"
        );
    }
    Ok(out)
}
