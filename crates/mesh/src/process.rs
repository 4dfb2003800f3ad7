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
use meshsim_proxy::listener::{proxy_header, Capture};
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
    /// Container port → real address of the pod's application.
    pub apps: BTreeMap<u16, SocketAddr>,
    pub fd_limit: u64,
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

struct Discard;
impl LogSink for Discard {
    fn write(&self, _: &str, _: &str, _: &LogEntry) {}
}

/// The process's world: its own application on loopback, nothing else.
struct ChildEnv {
    apps: BTreeMap<u16, SocketAddr>,
    workload: CertifiedKey,
    root: CertificateDer<'static>,
}

impl Environment for ChildEnv {
    fn connect(
        &self,
        dst: SocketAddr,
        source: Option<IpAddr>,
    ) -> BoxFuture<'_, std::io::Result<(BoxIo, SocketAddr)>> {
        Box::pin(async move {
            // Its own application: on loopback, or (from 127.0.0.6) on the pod IP.
            let real = if dst.ip().is_loopback() || source.is_some() {
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
    fn resolve(&self, _: &str) -> Option<IpAddr> {
        None
    }
    fn certificate(&self, name: &str) -> Option<CertifiedKey> {
        (name == "default").then(|| self.workload.clone())
    }
    fn trust_roots(&self, _: Option<&str>) -> Vec<CertificateDer<'static>> {
        vec![self.root.clone()]
    }
}

fn child(cfg: &str, on_fd_exhausted: FdExhaustedHook) -> Result<()> {
    let cfg: ChildConfig =
        serde_json::from_str(cfg).map_err(|e| fail(format!("proxy process config: {e}")))?;
    run_proxy_process(cfg, on_fd_exhausted)
}

/// Runs one sidecar as this process (`meshsim proxy`): sets the fd limit,
/// compiles the proxy's tables, prints `READY <capture address>`, serves
/// its inbound capture until killed. Out of descriptors, it runs
/// `on_fd_exhausted`.
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
        let ca = crate::ca::Ca::new("meshsim mesh CA (process)")?;
        let env = Arc::new(ChildEnv {
            apps: cfg.apps.clone(),
            workload: ca.workload(&pod.identity("cluster.local"))?,
            root: ca.root(),
        });
        let scope = Scope::new();
        let proxy = Proxy::new(
            tables,
            ProxyRuntime::new(env, Arc::new(Discard), scope.clone(), 1),
        );
        proxy.on_fd_exhausted(on_fd_exhausted);
        let l = crate::mesh::bind().await?;
        let addr = l
            .local_addr()
            .map_err(|e| MeshError::io("local address", e))?;
        println!("READY {addr}");
        use std::io::Write;
        std::io::stdout()
            .flush()
            .map_err(|e| MeshError::io("stdout", e))?;
        proxy.serve_capture(l, Capture::Inbound);
        // Serves until killed.
        scope.cancelled().await;
        Ok(())
    })
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

/// Starts this executable as a proxy process; its `READY` address, and a
/// task collecting its stderr. When it does not start, its own error
/// (e.g. `setrlimit: Operation not permitted`) is the error.
async fn start_child(
    cfg: &ChildConfig,
) -> Result<(
    tokio::process::Child,
    SocketAddr,
    tokio::task::JoinSet<String>,
)> {
    let exe = std::env::current_exe().map_err(|e| MeshError::io("current executable", e))?;
    let json = serde_json::to_string(cfg).map_err(fail)?;
    let mut child = tokio::process::Command::new(exe)
        .env(ENV, json)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| MeshError::io("start proxy process", e))?;
    let stdout = child.stdout.take().ok_or_else(|| fail("no stdout"))?;
    let mut stderr_pipe = child.stderr.take().ok_or_else(|| fail("no stderr"))?;
    // Read stderr while the child runs (a full pipe would block it).
    let mut stderr = tokio::task::JoinSet::new();
    stderr.spawn(async move {
        let mut s = String::new();
        let _ = stderr_pipe.read_to_string(&mut s).await;
        s
    });
    let mut lines = BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .ok()
        .and_then(|r| r.ok())
        .flatten()
        .unwrap_or_default();
    match ready.strip_prefix("READY ").and_then(|a| a.parse().ok()) {
        Some(addr) => Ok((child, addr, stderr)),
        None => {
            let _ = child.kill().await;
            let said = collected(stderr).await;
            Err(fail(format!(
                "the proxy process did not start: {}",
                said.trim().lines().last().unwrap_or("(no output)")
            )))
        }
    }
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
