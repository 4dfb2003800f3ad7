//! A sidecar as its own OS process with `RLIMIT_NOFILE` lowered (page:
//! "Envoy is crashing under load"). The process is this same executable
//! started with `MESHSIM_PROXY_PROCESS` set (the CLI's `meshsim proxy` and
//! the test harness both dispatch on it first). Like Envoy, it treats
//! running out of descriptors as fatal: it prints the critical assert line
//! and aborts.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use meshsim_compiler::{IstioVersion, NamespaceFlag, Settings, World};
use meshsim_mesh::Mesh;
use meshsim_proxy::accesslog::{LogEntry, LogSink};
use meshsim_proxy::env::{BoxFuture, CertifiedKey, Environment};
use meshsim_proxy::io::BoxIo;
use meshsim_proxy::listener::{proxy_header, Capture};
use meshsim_proxy::{FdExhaustion, Proxy};
use rustls::pki_types::CertificateDer;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::format::ProcessSpec;

pub const ENV: &str = "MESHSIM_PROXY_PROCESS";

#[derive(Debug, Serialize, Deserialize)]
pub struct ChildConfig {
    pub files: Vec<PathBuf>,
    /// `-n`: namespace of objects that name none.
    #[serde(default)]
    pub namespace: Option<String>,
    pub istio_version: String,
    pub proxy: String,
    /// Container port → real address of the pod's application.
    pub apps: BTreeMap<u16, SocketAddr>,
    pub fd_limit: u64,
}

/// Call first thing in `main`: if this process was started as a proxy
/// process, run it and never return.
pub fn maybe_child() {
    let Ok(cfg) = std::env::var(ENV) else { return };
    let code = match child(&cfg) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("meshsim proxy: {e:#}");
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
    fn connect(&self, dst: SocketAddr) -> BoxFuture<'_, std::io::Result<(BoxIo, SocketAddr)>> {
        Box::pin(async move {
            let real = if dst.ip().is_loopback() {
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

fn child(cfg: &str) -> Result<()> {
    let cfg: ChildConfig = serde_json::from_str(cfg).context("proxy process config")?;
    run_proxy_process(cfg)
}

/// Runs one sidecar as this process (`meshsim proxy`): sets the fd limit,
/// compiles the proxy's tables, prints `READY <capture address>`, serves
/// its inbound capture until killed. Like Envoy, aborts on descriptor
/// exhaustion.
pub fn run_proxy_process(cfg: ChildConfig) -> Result<()> {
    let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE)?;
    rlimit::setrlimit(
        rlimit::Resource::NOFILE,
        cfg.fd_limit,
        hard.max(cfg.fd_limit),
    )
    .context("setrlimit(RLIMIT_NOFILE)")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let settings = Settings {
            istio_version: IstioVersion::parse(&cfg.istio_version).unwrap_or(IstioVersion::DEFAULT),
            ..Settings::default()
        };
        let ns = match &cfg.namespace {
            Some(n) => NamespaceFlag::Apply(n.clone()),
            None => NamespaceFlag::Unset,
        };
        let (world, _) = World::load(&cfg.files, settings, &ns);
        let pod = meshsim_compiler::find_proxy(&world, &cfg.proxy).map_err(|e| anyhow!(e))?;
        let tables = meshsim_compiler::compile_proxy(&world, pod);
        let ca = meshsim_mesh::ca::Ca::new("meshsim mesh CA (process)")?;
        let env = Arc::new(ChildEnv {
            apps: cfg.apps.clone(),
            workload: ca.workload(&pod.identity("cluster.local"))?,
            root: ca.root(),
        });
        let proxy = Proxy::new(tables, env, Arc::new(Discard), 1);
        proxy.set_fd_exhaustion(FdExhaustion::Abort);
        let l = meshsim_mesh::mesh::bind().await?;
        println!("READY {}", l.local_addr()?);
        use std::io::Write;
        std::io::stdout().flush()?;
        proxy.serve_capture(l, Capture::Inbound).await;
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
    spec: &ProcessSpec,
) -> Result<Outcome> {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let pod = meshsim_compiler::find_proxy(&mesh.world, &spec.proxy).map_err(|e| anyhow!(e))?;
    let pod_ip = IpAddr::V4(pod.ip);
    let apps: BTreeMap<u16, SocketAddr> = mesh
        .net
        .pod(pod_ip)
        .map(|p| p.apps.into_iter().collect())
        .unwrap_or_default();
    let Some((&port, _)) = apps.iter().next() else {
        bail!("{} runs no application", spec.proxy)
    };
    let cfg = ChildConfig {
        files: files.to_vec(),
        namespace: None,
        istio_version: settings.istio_version.to_string(),
        proxy: spec.proxy.clone(),
        apps,
        fd_limit: spec.fd_limit,
    };
    let exe = std::env::current_exe()?;
    let mut child = tokio::process::Command::new(exe)
        .env(ENV, serde_json::to_string(&cfg)?)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("start proxy process")?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
    let mut lines = BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .context("proxy process did not start")??
        .unwrap_or_default();
    let addr: SocketAddr = ready
        .strip_prefix("READY ")
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| anyhow!("proxy process said {ready:?}"))?;
    let mut stderr_pipe = child.stderr.take().ok_or_else(|| anyhow!("no stderr"))?;
    let stderr_task = tokio::spawn(async move {
        let mut s = String::new();
        let _ = stderr_pipe.read_to_string(&mut s).await;
        s
    });
    // Hold every connection open until all have been tried.
    let barrier = Arc::new(tokio::sync::Barrier::new(spec.connections as usize));
    let mut tasks = Vec::new();
    for i in 0..spec.connections {
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            let mut ok = false;
            let mut conn = tokio::net::TcpStream::connect(addr).await.ok();
            if let Some(s) = conn.as_mut() {
                let src = SocketAddr::new(
                    IpAddr::from([10, 99, (i >> 8) as u8, (i & 0xff) as u8]),
                    40000,
                );
                let req =
                    b"GET / HTTP/1.1\r\nhost: load\r\nuser-agent: fortio.org/fortio-1.60\r\n\r\n";
                if s.write_all(&proxy_header(src, SocketAddr::new(pod_ip, port)))
                    .await
                    .is_ok()
                    && s.write_all(req).await.is_ok()
                {
                    let mut buf = [0u8; 64];
                    match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await {
                        Ok(Ok(n)) => {
                            ok = buf[..n].starts_with(b"HTTP/1.1 200");
                            if !ok && std::env::var_os("MESHSIM_DEBUG").is_some() {
                                eprintln!("non-200: {:?}", String::from_utf8_lossy(&buf[..n]));
                            }
                        }
                        r => {
                            if std::env::var_os("MESHSIM_DEBUG").is_some() {
                                eprintln!("read: {r:?}");
                            }
                        }
                    }
                }
            }
            barrier.wait().await;
            drop(conn);
            ok
        }));
    }
    let mut ok = 0;
    for t in tasks {
        ok += usize::from(t.await.unwrap_or(false));
    }
    let status = tokio::time::timeout(Duration::from_millis(500), child.wait()).await;
    let (crashed, exit) = match status {
        Ok(Ok(st)) => (!st.success(), format!("exited: {st}")),
        _ => {
            let _ = child.kill().await;
            (false, "still running after the load (stopped)".to_string())
        }
    };
    let stderr = stderr_task.await.unwrap_or_default();
    Ok(Outcome {
        crashed,
        exit,
        stderr,
        ok,
    })
}
