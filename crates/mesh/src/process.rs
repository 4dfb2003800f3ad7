//! A sidecar as its own OS process with `RLIMIT_NOFILE` lowered (page:
//! "Envoy is crashing under load"). The process is this same executable
//! started with `MESHSIM_PROXY_PROCESS` set (the CLI's `meshsim proxy` and
//! the test harness both dispatch on it first). What running out of
//! descriptors does is the binary's choice: it passes a hook (Envoy's
//! behaviour is to print the critical assert line and abort).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use meshsim_compiler::{IstioVersion, NamespaceFlag, Settings, World};
use meshsim_proxy::accesslog::{LogEntry, LogSink};
use meshsim_proxy::env::{BoxFuture, CertifiedKey, Environment};
use meshsim_proxy::io::BoxIo;
use meshsim_proxy::listener::{proxy_header, read_proxy_header, Capture};
use meshsim_proxy::scope::Scope;
use meshsim_proxy::{FdExhaustedHook, Proxy, ProxyRuntime};
use rustls::pki_types::CertificateDer;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::error::{MeshError, Result};
use crate::mesh::Mesh;

/// A load against a sidecar run as its own process.
#[derive(Debug, Clone)]
pub struct ProcessLoad {
    /// The sidecar to run as a process (`deploy/helloworld-v1`).
    pub proxy: String,
    /// `RLIMIT_NOFILE` for the process.
    pub fd_limit: u64,
    /// Concurrent connections held open against it.
    pub connections: u32,
}

fn fail(what: impl std::fmt::Display) -> MeshError {
    MeshError::Process(what.to_string())
}

pub const ENV: &str = "MESHSIM_PROXY_PROCESS";
/// [`ENV`]'s value when the configuration comes on stdin (it carries the
/// workload's private key, which should not sit in the environment).
const FROM_STDIN: &str = "stdin";

/// The certificate and key a process sidecar presents (DER).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Identity {
    pub chain: Vec<Vec<u8>>,
    pub key: Vec<u8>,
    /// The mesh root (`ROOTCA`).
    pub root: Vec<u8>,
    /// The roots for everything else (the fake public CA).
    pub public_root: Vec<u8>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ChildConfig {
    pub files: Vec<PathBuf>,
    /// `-n`: namespace of objects that name none.
    #[serde(default)]
    pub namespace: Option<String>,
    pub istio_version: String,
    /// Helm's `compatibilityVersion`, when set.
    #[serde(default)]
    pub compatibility_version: Option<String>,
    pub proxy: String,
    /// Container port → real address of the pod's application (used
    /// without a relay).
    pub apps: BTreeMap<u16, SocketAddr>,
    pub fd_limit: u64,
    /// Wired into a running mesh: every upstream connection goes through
    /// this relay of the parent's network (see [`serve_relay`]).
    #[serde(default)]
    pub relay: Option<SocketAddr>,
    /// The mesh's certificates (else the process makes its own CA).
    #[serde(default)]
    pub identity: Option<Identity>,
    /// Names the proxy resolves (DNS clusters), as the mesh's DNS answers.
    #[serde(default)]
    pub dns: BTreeMap<String, IpAddr>,
    #[serde(default)]
    pub seed: u64,
    /// Access-log entries go to stdout as JSON lines (for the parent),
    /// else the rendered lines do (`meshsim proxy`).
    #[serde(default)]
    pub stream_logs: bool,
}

/// Call first thing in `main`: if this process was started as a proxy
/// process, run it (with `on_fd_exhausted` as its policy) and never return.
pub fn maybe_child(on_fd_exhausted: FdExhaustedHook) {
    let Ok(cfg) = std::env::var(ENV) else { return };
    let code = match child(&cfg, on_fd_exhausted) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("meshsim proxy: {e}");
            1
        }
    };
    std::process::exit(code);
}

/// Access-log lines of a process sidecar, written by one thread in
/// batches (a flush when no line is waiting): the rendered line
/// (`meshsim proxy`), or the entry as JSON for the parent mesh.
struct StdoutSink {
    tx: std::sync::Mutex<std::sync::mpsc::Sender<String>>,
    json: bool,
}

impl StdoutSink {
    fn new(json: bool) -> Self {
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            use std::io::Write;
            let mut out = std::io::BufWriter::new(std::io::stdout());
            while let Ok(line) = rx.recv() {
                let _ = out.write_all(line.as_bytes());
                while let Ok(more) = rx.try_recv() {
                    let _ = out.write_all(more.as_bytes());
                }
                let _ = out.flush();
            }
        });
        Self {
            tx: std::sync::Mutex::new(tx),
            json,
        }
    }
}

/// One streamed entry: proxy id, rendered line, entry.
#[derive(Serialize, Deserialize)]
struct Streamed {
    p: String,
    l: String,
    e: LogEntry,
}

impl LogSink for StdoutSink {
    fn write(&self, proxy_id: &str, line: &str, entry: &LogEntry) {
        let text = if self.json {
            let s = Streamed {
                p: proxy_id.to_string(),
                l: line.to_string(),
                e: entry.clone(),
            };
            match serde_json::to_string(&s) {
                Ok(j) => j + "\n",
                Err(_) => return,
            }
        } else {
            line.to_string()
        };
        if let Ok(tx) = self.tx.lock() {
            let _ = tx.send(text);
        }
    }
}

/// The process's world: its application (directly, or through the
/// parent's relay with the rest of the mesh), its certificates.
struct ChildEnv {
    ip: IpAddr,
    apps: BTreeMap<u16, SocketAddr>,
    relay: Option<SocketAddr>,
    dns: BTreeMap<String, IpAddr>,
    workload: CertifiedKey,
    root: CertificateDer<'static>,
    public_root: CertificateDer<'static>,
}

/// A relay's answer: `OK <local address>` or `ERR <kind> <message>`.
async fn relay_answer(s: &mut tokio::net::TcpStream) -> std::io::Result<SocketAddr> {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while line.len() < 512 {
        if s.read(&mut b).await? == 0 {
            return Err(std::io::ErrorKind::ConnectionReset.into());
        }
        if b[0] == b'\n' {
            break;
        }
        line.push(b[0]);
    }
    let line = String::from_utf8_lossy(&line);
    if let Some(addr) = line.strip_prefix("OK ") {
        return addr
            .parse()
            .map_err(|_| std::io::Error::other(format!("relay: bad address {addr}")));
    }
    let rest = line.strip_prefix("ERR ").unwrap_or(&line);
    let (kind, msg) = rest.split_once(' ').unwrap_or((rest, ""));
    Err(std::io::Error::new(kind_from(kind), msg.to_string()))
}

fn kind_from(name: &str) -> std::io::ErrorKind {
    use std::io::ErrorKind as K;
    [
        K::ConnectionRefused,
        K::ConnectionReset,
        K::ConnectionAborted,
        K::TimedOut,
        K::AddrNotAvailable,
        K::NotConnected,
        K::HostUnreachable,
        K::NetworkUnreachable,
    ]
    .into_iter()
    .find(|k| format!("{k:?}") == name)
    .unwrap_or(K::Other)
}

impl Environment for ChildEnv {
    fn connect(
        &self,
        dst: SocketAddr,
        source: Option<IpAddr>,
    ) -> BoxFuture<'_, std::io::Result<(BoxIo, SocketAddr)>> {
        Box::pin(async move {
            if let Some(relay) = self.relay {
                // The upstream socket is this process's (as Envoy's is);
                // the parent carries it on to the mesh.
                let mut s = tokio::net::TcpStream::connect(relay).await?;
                s.set_nodelay(true)?;
                let src = SocketAddr::new(source.unwrap_or(IpAddr::from([0, 0, 0, 0])), 0);
                s.write_all(&proxy_header(src, dst)).await?;
                let local = relay_answer(&mut s).await?;
                return Ok((Box::new(s) as BoxIo, local));
            }
            // Its own application: on loopback, or (from 127.0.0.6) on the pod IP.
            let real = if dst.ip().is_loopback() || source.is_some() || dst.ip() == self.ip {
                self.apps.get(&dst.port()).copied()
            } else {
                None
            };
            let real = real.ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "no route")
            })?;
            let s = tokio::net::TcpStream::connect(real).await?;
            let local = s.local_addr()?;
            Ok((Box::new(s) as BoxIo, local))
        })
    }
    fn resolve(&self, name: &str) -> Option<IpAddr> {
        self.dns.get(name).copied()
    }
    fn certificate(&self, name: &str) -> Option<CertifiedKey> {
        (name == "default").then(|| self.workload.clone())
    }
    fn trust_roots(&self, name: Option<&str>) -> Vec<CertificateDer<'static>> {
        match name {
            Some("ROOTCA") => vec![self.root.clone()],
            _ => vec![self.public_root.clone()],
        }
    }
}

fn child(cfg: &str, on_fd_exhausted: FdExhaustedHook) -> Result<()> {
    let text = if cfg == FROM_STDIN {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .map_err(|e| MeshError::io("proxy process config on stdin", e))?;
        s
    } else {
        cfg.to_string()
    };
    let cfg: ChildConfig =
        serde_json::from_str(&text).map_err(|e| fail(format!("proxy process config: {e}")))?;
    run_proxy_process(cfg, on_fd_exhausted)
}

/// Runs one sidecar as this process (`meshsim proxy`): sets the fd limit,
/// compiles the proxy's tables, serves its inbound and outbound capture
/// (PROXY protocol v2), admin, and a plain port per application port
/// (the connection's destination is the pod's IP at that port), then
/// prints `READY <inbound> outbound=A admin=A plain=PORT@A,...` and
/// serves until killed. Out of descriptors, it runs `on_fd_exhausted`.
pub fn run_proxy_process(cfg: ChildConfig, on_fd_exhausted: FdExhaustedHook) -> Result<()> {
    let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE)
        .map_err(|e| fail(format!("getrlimit(RLIMIT_NOFILE): {e}")))?;
    rlimit::setrlimit(
        rlimit::Resource::NOFILE,
        cfg.fd_limit,
        hard.max(cfg.fd_limit),
    )
    .map_err(|e| {
        fail(format!(
            "setrlimit(RLIMIT_NOFILE, {}) with hard limit {hard}: {e}",
            cfg.fd_limit
        ))
    })?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| MeshError::io("tokio runtime", e))?;
    rt.block_on(async move {
        let settings = Settings {
            istio_version: IstioVersion::parse(&cfg.istio_version).unwrap_or(IstioVersion::DEFAULT),
            compatibility_version: cfg
                .compatibility_version
                .as_deref()
                .and_then(IstioVersion::parse),
            ..Settings::default()
        };
        let ns = match &cfg.namespace {
            Some(n) => NamespaceFlag::Apply(n.clone()),
            None => NamespaceFlag::Unset,
        };
        let (world, _) = World::load(&cfg.files, settings, &ns);
        let pod = meshsim_compiler::find_proxy(&world, &cfg.proxy).map_err(fail)?;
        let tables = meshsim_compiler::compile_proxy(&world, pod);
        let ip = IpAddr::V4(pod.ip);
        let env = match &cfg.identity {
            Some(id) => ChildEnv {
                ip,
                apps: cfg.apps.clone(),
                relay: cfg.relay,
                dns: cfg.dns.clone(),
                workload: CertifiedKey {
                    chain: id
                        .chain
                        .iter()
                        .map(|c| CertificateDer::from(c.clone()))
                        .collect(),
                    key: rustls::pki_types::PrivateKeyDer::try_from(id.key.clone())
                        .map_err(|e| fail(format!("workload key: {e}")))?,
                },
                root: CertificateDer::from(id.root.clone()),
                public_root: CertificateDer::from(id.public_root.clone()),
            },
            None => {
                let ca = crate::ca::Ca::new("meshsim mesh CA (process)")?;
                ChildEnv {
                    ip,
                    apps: cfg.apps.clone(),
                    relay: cfg.relay,
                    dns: cfg.dns.clone(),
                    workload: ca.workload(&pod.identity("cluster.local"))?,
                    root: ca.root(),
                    public_root: ca.root(),
                }
            }
        };
        let scope = Scope::new();
        let proxy = Proxy::new(
            tables,
            ProxyRuntime::new(
                Arc::new(env),
                Arc::new(StdoutSink::new(cfg.stream_logs)),
                scope.clone(),
                cfg.seed,
            ),
        );
        proxy.on_fd_exhausted(on_fd_exhausted);
        let (inbound, outbound, admin) = (
            crate::mesh::bind().await?,
            crate::mesh::bind().await?,
            crate::mesh::bind().await?,
        );
        let addr = |l: &tokio::net::TcpListener| {
            l.local_addr()
                .map_err(|e| MeshError::io("local address", e))
        };
        let mut ready = format!(
            "READY {} outbound={} admin={}",
            addr(&inbound)?,
            addr(&outbound)?,
            addr(&admin)?
        );
        let mut plain = Vec::new();
        for &port in cfg.apps.keys() {
            let l = crate::mesh::bind().await?;
            plain.push(format!("{port}@{}", addr(&l)?));
            let p = proxy.clone();
            scope.spawn(async move {
                loop {
                    match l.accept().await {
                        Ok((s, peer)) => {
                            p.accept_with(s, peer, SocketAddr::new(ip, port), Capture::Inbound)
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                    }
                }
            });
        }
        if !plain.is_empty() {
            ready.push_str(&format!(" plain={}", plain.join(",")));
        }
        println!("{ready}");
        use std::io::Write;
        std::io::stdout()
            .flush()
            .map_err(|e| MeshError::io("stdout", e))?;
        proxy.serve_capture(inbound, Capture::Inbound);
        proxy.serve_capture(outbound, Capture::Outbound);
        proxy.serve_admin(admin);
        // Serves until killed.
        scope.cancelled().await;
        Ok(())
    })
}

/// The parent's side of a process sidecar's upstream connections: each
/// starts with a PROXY v2 header (source `0.0.0.0` when the proxy named
/// none; destination), is connected on the mesh's network exactly as an
/// in-process sidecar's would be, answered `OK <local>` or
/// `ERR <kind> <message>`, then carried both ways.
pub(crate) async fn serve_relay(
    l: tokio::net::TcpListener,
    net: Arc<crate::network::Network>,
    pod: IpAddr,
    scope: Scope,
) {
    loop {
        let Ok((mut s, _)) = l.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let net = net.clone();
        scope.spawn(async move {
            let Ok((src, dst)) = read_proxy_header(&mut s).await else {
                return;
            };
            let own_app = !src.ip().is_unspecified() && dst.ip() == pod;
            let up = if own_app {
                net.connect_own_app(pod, dst.port(), src.ip()).await
            } else {
                net.connect_direct(pod, dst).await
            };
            match up {
                Ok((mut up, local)) => {
                    if s.write_all(format!("OK {local}\n").as_bytes())
                        .await
                        .is_ok()
                    {
                        let _ = tokio::io::copy_bidirectional(&mut s, &mut up).await;
                    }
                }
                Err(e) => {
                    // This process's own EMFILE is not the sidecar's.
                    let kind = match e.raw_os_error() {
                        Some(24 | 23) => std::io::ErrorKind::Other,
                        _ => e.kind(),
                    };
                    let _ = s.write_all(format!("ERR {kind:?} {e}\n").as_bytes()).await;
                }
            }
        });
    }
}

/// A running sidecar process wired into the mesh.
pub(crate) struct SidecarProcess {
    pub outbound: SocketAddr,
    pub inbound: SocketAddr,
    pub admin: SocketAddr,
}

/// What starting a sidecar process needs from the mesh.
pub(crate) struct SidecarSpec<'a> {
    pub input: &'a ChildInput,
    pub proxy_id: &'a str,
    pub pod: IpAddr,
    pub fd_limit: u64,
    pub identity: Identity,
    pub dns: BTreeMap<String, IpAddr>,
    pub seed: u64,
}

/// Sidecars to run as their own OS processes (`--sidecar-process`), with
/// `RLIMIT_NOFILE` at `fd_limit`; they compile their tables from `input`.
#[derive(Debug, Clone)]
pub struct SidecarProcesses {
    /// `deploy/NAME[.NAMESPACE]` or `POD[.NAMESPACE]`.
    pub proxies: Vec<String>,
    pub fd_limit: u64,
    pub input: ChildInput,
}

/// The names a proxy's DNS clusters resolve, as the mesh's DNS answers
/// them now (a process sidecar gets the answers with its configuration).
pub(crate) fn dns_names(
    tables: &meshsim_tables::ProxyTables,
    mut resolve: impl FnMut(&str) -> Option<IpAddr>,
) -> BTreeMap<String, IpAddr> {
    let mut out = BTreeMap::new();
    for e in tables
        .endpoints
        .iter()
        .flat_map(|c| &c.endpoints)
        .flat_map(|l| &l.lb_endpoints)
    {
        let a = &e.endpoint.address.socket_address.address;
        if a.parse::<IpAddr>().is_err() && !out.contains_key(a) {
            if let Some(ip) = resolve(a) {
                out.insert(a.clone(), ip);
            }
        }
    }
    out
}

/// The input a sidecar process compiles its tables from (the files the
/// mesh was started with).
#[derive(Debug, Clone, Default)]
pub struct ChildInput {
    pub files: Vec<PathBuf>,
    pub namespace: Option<String>,
    pub istio_version: String,
    pub compatibility_version: Option<String>,
}

/// Starts a sidecar as its own process, wired into the mesh: its
/// upstream connections through a relay on `net`, its access-log
/// entries into `logs`, its stderr to this process's stderr (tagged with
/// the pod, as `kubectl logs` would show the container), and its exit
/// reported. Everything belongs to `scope`: the process is killed when
/// the scope ends.
pub(crate) async fn start_sidecar(
    spec: SidecarSpec<'_>,
    net: Arc<crate::network::Network>,
    logs: Arc<crate::logs::LogCollector>,
    scope: &Scope,
) -> Result<SidecarProcess> {
    let relay = crate::mesh::bind().await?;
    let relay_addr = relay
        .local_addr()
        .map_err(|e| MeshError::io("local address", e))?;
    scope.spawn(serve_relay(relay, net, spec.pod, scope.clone()));
    let cfg = ChildConfig {
        files: spec.input.files.clone(),
        namespace: spec.input.namespace.clone(),
        istio_version: spec.input.istio_version.clone(),
        compatibility_version: spec.input.compatibility_version.clone(),
        proxy: spec.proxy_id.to_string(),
        apps: BTreeMap::new(),
        fd_limit: spec.fd_limit,
        relay: Some(relay_addr),
        identity: Some(spec.identity),
        dns: spec.dns,
        seed: spec.seed,
        stream_logs: true,
    };
    let pod_name = spec
        .proxy_id
        .split('.')
        .next()
        .unwrap_or(spec.proxy_id)
        .to_string();
    let (mut child, ready, stdout, mut stderr) = spawn_child(&cfg).await?;
    let (inbound, outbound, admin) = match (ready.inbound, ready.outbound, ready.admin) {
        (i, Some(o), Some(a)) => (i, o, a),
        _ => return Err(fail("the proxy process did not report its ports")),
    };
    // Its access log, into the mesh's.
    scope.spawn(async move {
        let mut lines = stdout.lines();
        while let Ok(Some(l)) = lines.next_line().await {
            if let Ok(s) = serde_json::from_str::<Streamed>(&l) {
                logs.write(&s.p, &s.l, &s.e);
            }
        }
    });
    // Its stderr (Envoy's critical lines), and how it ended.
    let who = pod_name.clone();
    scope.spawn(async move {
        let mut lines = BufReader::new(&mut stderr).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            eprintln!("[pod/{who}/istio-proxy] {l}");
        }
        if let Ok(status) = child.wait().await {
            eprintln!(
                "meshsim: the istio-proxy process of pod {who} exited ({}); connections to the pod are refused from now on (Kubernetes would restart the container; meshsim does not)",
                describe(status)
            );
        }
    });
    Ok(SidecarProcess {
        outbound,
        inbound,
        admin,
    })
}

/// `signal 6 (SIGABRT), core dumped` / `exit status 1`.
fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status.signal() {
        Some(6) => format!(
            "killed by signal 6 (SIGABRT){}",
            if status.core_dumped() {
                ", core dumped"
            } else {
                ""
            }
        ),
        Some(9) => "killed by signal 9 (SIGKILL)".into(),
        Some(n) => format!("killed by signal {n}"),
        None => status.to_string(),
    }
}

/// The ports a process reported on its `READY` line.
struct Ready {
    inbound: SocketAddr,
    outbound: Option<SocketAddr>,
    admin: Option<SocketAddr>,
}

fn parse_ready(line: &str) -> Option<Ready> {
    let mut words = line.strip_prefix("READY ")?.split(' ');
    let inbound = words.next()?.parse().ok()?;
    let mut r = Ready {
        inbound,
        outbound: None,
        admin: None,
    };
    for w in words {
        match w.split_once('=') {
            Some(("outbound", a)) => r.outbound = a.parse().ok(),
            Some(("admin", a)) => r.admin = a.parse().ok(),
            _ => {}
        }
    }
    Some(r)
}

/// Starts this executable as a proxy process (configuration on stdin);
/// its `READY` ports, the rest of its stdout, and its stderr. When it
/// does not start, its own error (e.g. `setrlimit: Operation not
/// permitted`) is the error.
async fn spawn_child(
    cfg: &ChildConfig,
) -> Result<(
    tokio::process::Child,
    Ready,
    BufReader<tokio::process::ChildStdout>,
    tokio::process::ChildStderr,
)> {
    let exe = std::env::current_exe().map_err(|e| MeshError::io("current executable", e))?;
    let json = serde_json::to_string(cfg).map_err(fail)?;
    let mut child = tokio::process::Command::new(exe)
        .env(ENV, FROM_STDIN)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| MeshError::io("start proxy process", e))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(json.as_bytes())
            .await
            .map_err(|e| MeshError::io("proxy process config", e))?;
    }
    let stdout = child.stdout.take().ok_or_else(|| fail("no stdout"))?;
    let mut stderr = child.stderr.take().ok_or_else(|| fail("no stderr"))?;
    let mut stdout = BufReader::new(stdout);
    let mut ready = String::new();
    let got = tokio::time::timeout(Duration::from_secs(20), stdout.read_line(&mut ready)).await;
    match (got, parse_ready(ready.trim_end())) {
        (Ok(Ok(_)), Some(r)) => Ok((child, r, stdout, stderr)),
        _ => {
            let _ = child.kill().await;
            let mut said = String::new();
            let _ = tokio::time::timeout(Duration::from_secs(2), stderr.read_to_string(&mut said))
                .await;
            Err(fail(format!(
                "the proxy process did not start: {}",
                said.trim().lines().last().unwrap_or("(no output)")
            )))
        }
    }
}

pub struct Outcome {
    pub crashed: bool,
    pub exit: String,
    pub stderr: String,
    pub ok: usize,
}

/// Starts the proxy process for `spec.proxy`, holds `spec.connections`
/// concurrent connections with a request each against it, and reports
/// whether it survived.
pub async fn run_under_load(
    mesh: &Mesh,
    files: &[PathBuf],
    settings: &Settings,
    spec: &ProcessLoad,
) -> Result<Outcome> {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let world = mesh.world();
    let pod = meshsim_compiler::find_proxy(&world, &spec.proxy).map_err(fail)?;
    let pod_ip = IpAddr::V4(pod.ip);
    let apps: BTreeMap<u16, SocketAddr> = mesh
        .net()
        .pod(pod_ip)
        .map(|p| p.apps.into_iter().collect())
        .unwrap_or_default();
    let Some((&port, _)) = apps.iter().next() else {
        return Err(fail(format!("{} runs no application", spec.proxy)));
    };
    let cfg = ChildConfig {
        files: files.to_vec(),
        namespace: None,
        istio_version: settings.istio_version.to_string(),
        compatibility_version: settings.compatibility_version.map(|v| v.to_string()),
        proxy: spec.proxy.clone(),
        apps,
        fd_limit: spec.fd_limit,
        relay: None,
        identity: None,
        dns: BTreeMap::new(),
        seed: 1,
        stream_logs: false,
    };
    let (mut child, addr, stderr) = start_child(&cfg).await?;
    let ok = hold_connections(addr, SocketAddr::new(pod_ip, port), spec.connections).await;
    let status = tokio::time::timeout(Duration::from_millis(500), child.wait()).await;
    let (crashed, exit) = match status {
        Ok(Ok(st)) => (!st.success(), format!("exited: {st}")),
        _ => {
            let _ = child.kill().await;
            (false, "still running after the load (stopped)".to_string())
        }
    };
    let stderr = collected(stderr).await;
    Ok(Outcome {
        crashed,
        exit,
        stderr,
        ok,
    })
}

/// Starts a standalone proxy process (its own CA, its own apps); its
/// inbound capture and a task collecting its stderr.
async fn start_child(
    cfg: &ChildConfig,
) -> Result<(
    tokio::process::Child,
    SocketAddr,
    tokio::task::JoinSet<String>,
)> {
    let (child, ready, _stdout, mut stderr_pipe) = spawn_child(cfg).await?;
    // Read stderr while the child runs (a full pipe would block it).
    let mut stderr = tokio::task::JoinSet::new();
    stderr.spawn(async move {
        let mut s = String::new();
        let _ = stderr_pipe.read_to_string(&mut s).await;
        s
    });
    Ok((child, ready.inbound, stderr))
}

/// What the stderr reader collected, once the child's stderr closed.
async fn collected(mut reader: tokio::task::JoinSet<String>) -> String {
    reader
        .join_next()
        .await
        .and_then(|r| r.ok())
        .unwrap_or_default()
}

/// Opens `n` connections at once to the process's inbound capture (as
/// `src` 10.99.x.y → `dst`), sends a request on each and holds them all
/// open until every one has been tried; how many got a 200.
async fn hold_connections(capture: SocketAddr, dst: SocketAddr, n: u32) -> usize {
    let barrier = Arc::new(tokio::sync::Barrier::new(n as usize));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let barrier = barrier.clone();
        tasks.spawn(async move {
            let src = SocketAddr::new(
                IpAddr::from([10, 99, (i >> 8) as u8, (i & 0xff) as u8]),
                40000,
            );
            let mut conn = tokio::net::TcpStream::connect(capture).await.ok();
            let ok = match conn.as_mut() {
                Some(s) => request_ok(s, src, dst).await,
                None => false,
            };
            barrier.wait().await;
            drop(conn);
            ok
        });
    }
    let mut ok = 0;
    while let Some(r) = tasks.join_next().await {
        ok += usize::from(r.unwrap_or(false));
    }
    ok
}

async fn request_ok(s: &mut tokio::net::TcpStream, src: SocketAddr, dst: SocketAddr) -> bool {
    let req = b"GET / HTTP/1.1\r\nhost: load\r\nuser-agent: fortio.org/fortio-1.60\r\n\r\n";
    if s.write_all(&proxy_header(src, dst)).await.is_err() || s.write_all(req).await.is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await {
        Ok(Ok(n)) => buf[..n].starts_with(b"HTTP/1.1 200"),
        _ => false,
    }
}
