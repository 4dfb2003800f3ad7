//! The running mesh: the world it serves, the virtual network, the CAs and
//! secrets, every pod's application and proxy, internet hosts, and the
//! control plane. Everything it starts lives in its scope: `shutdown()`
//! (or drop) closes every socket it bound.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use meshsim_compiler::World;
use meshsim_proxy::listener::Capture;
use meshsim_proxy::scope::Scope;
use meshsim_proxy::{FdExhaustedHook, Proxy};
use tokio::net::TcpListener;

use crate::apps::{self, EchoIdentity};
use crate::ca::Ca;
use crate::control::ControlPlane;
use crate::error::{MeshError, Result};
use crate::logs::LogCollector;
use crate::network::Network;
use crate::runtime::Running;
use crate::sds::{CertPerName, Sds};
use crate::topology::{self, Topology};

pub use meshsim_compiler::world::INGRESS_IP;

#[derive(Clone)]
pub struct MeshOptions {
    /// Seeds every random choice (weighted picks, request ids).
    pub seed: u64,
    /// Print access logs to stderr as they happen.
    pub echo_logs: bool,
    /// How long istiod takes to push a change to each proxy.
    pub push_delay: Duration,
    /// What proxies do when out of file descriptors (none: back off).
    pub fd_exhausted: Option<FdExhaustedHook>,
    /// Lay the ports a user reaches (admin, gateways' outside ports, entry
    /// ports) out from this port upward, in start order, instead of
    /// letting the kernel pick: the same input gets the same ports.
    pub port_base: Option<u16>,
    /// Sidecars run as their own OS processes (`--sidecar-process`).
    pub sidecar_processes: Option<Arc<crate::process::SidecarProcesses>>,
    /// Keep each kept log line's entry (scenario expectations read them);
    /// a sandbox or load test needs only the text (and saves the copy).
    pub keep_log_entries: bool,
}

impl Default for MeshOptions {
    fn default() -> Self {
        Self {
            seed: 1,
            echo_logs: false,
            push_delay: Duration::ZERO,
            fd_exhausted: None,
            port_base: None,
            sidecar_processes: None,
            keep_log_entries: true,
        }
    }
}

impl std::fmt::Debug for MeshOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshOptions")
            .field("seed", &self.seed)
            .field("echo_logs", &self.echo_logs)
            .field("push_delay", &self.push_delay)
            .finish_non_exhaustive()
    }
}

/// What the mesh currently serves.
pub(crate) struct Served {
    pub world: Arc<World>,
    pub topology: Topology,
}

pub struct Mesh {
    pub(crate) scope: Scope,
    pub(crate) net: Arc<Network>,
    pub(crate) logs: Arc<LogCollector>,
    pub(crate) sds: Arc<Sds>,
    pub(crate) opts: MeshOptions,
    pub(crate) served: RwLock<Served>,
    running: Arc<Mutex<Running>>,
    pub(crate) control: Arc<ControlPlane>,
    warnings: Mutex<Vec<String>>,
    /// The next user-facing port under `--port-base`.
    next_port: Option<std::sync::atomic::AtomicU32>,
    /// Pods whose sidecar runs as its own process.
    pub(crate) process_pods: std::collections::BTreeSet<Ipv4Addr>,
}

/// Binds `127.0.0.1:0` with a deep accept queue (load tests open
/// thousands of connections at once).
pub async fn bind() -> Result<TcpListener> {
    let sock = tokio::net::TcpSocket::new_v4().map_err(|e| MeshError::io("socket", e))?;
    sock.bind((Ipv4Addr::LOCALHOST, 0).into())
        .map_err(|e| MeshError::io("bind 127.0.0.1:0", e))?;
    sock.listen(4096).map_err(|e| MeshError::io("listen", e))
}

/// Binds `127.0.0.1:port` (a port a user was promised).
async fn bind_port(port: u16) -> Result<TcpListener> {
    let sock = tokio::net::TcpSocket::new_v4().map_err(|e| MeshError::io("socket", e))?;
    // A server's port: reusable while the last run's connections linger
    // in TIME_WAIT (a restarted sandbox gets the same ports).
    sock.set_reuseaddr(true)
        .map_err(|e| MeshError::io("SO_REUSEADDR", e))?;
    sock.bind((Ipv4Addr::LOCALHOST, port).into()).map_err(|e| {
        MeshError::io(
            format!("bind 127.0.0.1:{port} (--port-base lays ports out from its value)"),
            e,
        )
    })?;
    sock.listen(4096).map_err(|e| MeshError::io("listen", e))
}

/// The proxies by id, as the mesh runs them now (ingress ports look their
/// gateway up per connection).
#[derive(Clone)]
pub(crate) struct Directory(Arc<Mutex<Running>>);

impl Directory {
    /// The proxy of the pod with this IP.
    pub fn by_ip(&self, ip: Ipv4Addr) -> Option<Proxy> {
        let r = self.0.lock().ok()?;
        r.proxies.get(&ip).map(|p| p.proxy.clone())
    }

    pub fn get(&self, id: &str) -> Option<Proxy> {
        let r = self.0.lock().ok()?;
        r.proxies
            .values()
            .find(|p| p.proxy.id() == id)
            .map(|p| p.proxy.clone())
    }
}

impl Mesh {
    /// Starts everything `world` plans, on fresh localhost ports.
    pub async fn start(world: World, opts: MeshOptions) -> Result<Mesh> {
        let net = Arc::new(Network::new(&world.settings.cluster_domain));
        let sds = Arc::new(Sds::new(
            Arc::new(Ca::new("meshsim mesh CA (cluster.local)")?),
            Arc::new(Ca::new("meshsim Public Root CA")?),
        ));
        let warnings = sds.load(&world)?;
        let topology = topology::plan(&world, None);
        let opts_port_base = opts.port_base;
        let mut process_pods = std::collections::BTreeSet::new();
        for spec in opts.sidecar_processes.iter().flat_map(|s| &s.proxies) {
            let pod = meshsim_compiler::find_proxy(&world, spec)
                .map_err(|e| MeshError::NotFound(format!("--sidecar-process {spec}: {e}")))?;
            if pod.role == meshsim_compiler::world::PodRole::Gateway {
                return Err(MeshError::NotFound(format!(
                    "--sidecar-process {spec}: {} is a gateway; only sidecars run as processes",
                    pod.id()
                )));
            }
            process_pods.insert(pod.ip);
        }
        let mesh = Mesh {
            scope: Scope::new(),
            net,
            logs: Arc::new(if opts.keep_log_entries {
                LogCollector::new(opts.echo_logs)
            } else {
                LogCollector::new(opts.echo_logs).without_entries()
            }),
            sds,
            control: Arc::new(ControlPlane::new(&world, opts.push_delay)),
            opts,
            served: RwLock::new(Served {
                world: Arc::new(world),
                topology: Topology::default(),
            }),
            running: Arc::new(Mutex::new(Running::default())),
            warnings: Mutex::new(warnings),
            next_port: opts_port_base.map(|b| std::sync::atomic::AtomicU32::new(u32::from(b))),
            process_pods,
        };
        mesh.start_internet().await?;
        if mesh.opts.echo_logs {
            let logs = mesh.logs.clone();
            mesh.scope.spawn(async move {
                loop {
                    tokio::time::sleep(crate::logs::FLUSH_EVERY).await;
                    logs.flush();
                }
            });
        }
        let world = mesh.world();
        mesh.reconcile(&world, &Topology::default(), &topology)
            .await?;
        mesh.write_served().topology = topology;
        mesh.control.synced_all(mesh.proxy_ids());
        for id in mesh.proxy_ids() {
            if let Some(p) = mesh.proxy(&id) {
                for w in p.warnings() {
                    mesh.warn(format!("{id}: {w}"));
                }
            }
        }
        Ok(mesh)
    }

    /// The rest of the internet (names no ServiceEntry declares, reached
    /// through PassthroughCluster under ALLOW_ANY): one catch-all server,
    /// HTTPS with a certificate for whatever name the client sends.
    async fn start_internet(&self) -> Result<()> {
        let (plain, tls) = (bind().await?, bind().await?);
        let addr = |l: &TcpListener| {
            l.local_addr()
                .map_err(|e| MeshError::io("local address", e))
        };
        self.net.set_internet(addr(&plain)?, addr(&tls)?);
        let anyone = Arc::new(EchoIdentity {
            pod: String::new(),
            namespace: String::new(),
            version: String::new(),
            host: Some(String::new()),
            status: None,
            bookinfo: None,
            httpbin: false,
            calls: Vec::new(),
            delay: None,
        });
        let mut any_tls =
            rustls::ServerConfig::builder_with_provider(meshsim_proxy::tls::provider())
                .with_safe_default_protocol_versions()?
                .with_no_client_auth()
                .with_cert_resolver(Arc::new(CertPerName {
                    ca: self.sds.public_ca.clone(),
                    cache: Mutex::new(Default::default()),
                }));
        any_tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let s = &self.scope;
        s.spawn(apps::serve_echo(
            plain,
            anyone.clone(),
            None,
            None,
            s.clone(),
        ));
        s.spawn(apps::serve_echo(
            tls,
            anyone,
            Some(Arc::new(any_tls)),
            None,
            s.clone(),
        ));
        Ok(())
    }

    pub(crate) fn lock_running(&self) -> MutexGuard<'_, Running> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn directory(&self) -> Directory {
        Directory(self.running.clone())
    }

    pub(crate) fn write_served(&self) -> std::sync::RwLockWriteGuard<'_, Served> {
        self.served.write().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn warn(&self, w: String) {
        if let Ok(mut v) = self.warnings.lock() {
            v.push(w);
        }
    }

    /// The world the mesh serves now.
    pub fn world(&self) -> Arc<World> {
        self.served
            .read()
            .map(|s| s.world.clone())
            .unwrap_or_else(|e| e.into_inner().world.clone())
    }

    /// The virtual network (addresses, DNS, pods' sockets).
    pub fn net(&self) -> &Arc<Network> {
        &self.net
    }

    /// A listener for a port a user reaches: the next one from
    /// `port_base` when set, else one the kernel picks.
    pub async fn bind_user(&self) -> Result<TcpListener> {
        match &self.next_port {
            Some(next) => {
                let p = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let port = u16::try_from(p).map_err(|_| {
                    MeshError::io("--port-base", std::io::Error::other("ports past 65535"))
                })?;
                bind_port(port).await
            }
            None => bind().await,
        }
    }

    /// Every access-log line the proxies write.
    pub fn logs(&self) -> &Arc<LogCollector> {
        &self.logs
    }

    /// The fake public CA that internet hosts and gateway credentials
    /// chain to (what a client trusts as its system store).
    pub fn public_ca(&self) -> &Ca {
        &self.sds.public_ca
    }

    /// Problems met while starting or changing (missing secrets...).
    pub fn warnings(&self) -> Vec<String> {
        self.warnings.lock().map(|w| w.clone()).unwrap_or_default()
    }

    /// A running proxy by id (`pod.namespace`).
    pub fn proxy(&self, id: &str) -> Option<Proxy> {
        self.directory().get(id)
    }

    /// Ids of every running proxy, sorted.
    pub fn proxy_ids(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .lock_running()
            .proxies
            .values()
            .map(|p| p.proxy.id().to_string())
            .collect();
        v.sort();
        v
    }

    /// Each proxy's admin socket, by id.
    pub fn admin(&self) -> BTreeMap<String, SocketAddr> {
        self.lock_running()
            .proxies
            .values()
            .map(|p| (p.proxy.id().to_string(), p.admin))
            .collect()
    }

    /// Gateway Services' outside addresses and the real sockets behind them.
    pub fn ingress(&self) -> BTreeMap<(Ipv4Addr, u16), IngressPort> {
        let served = self.served.read().unwrap_or_else(|e| e.into_inner());
        let running = self.lock_running();
        served
            .topology
            .ingress
            .iter()
            .filter_map(|(k, ing)| {
                Some((
                    *k,
                    IngressPort {
                        real: running.ingress.get(k)?.real,
                        proxy: ing.proxy.clone(),
                        service: ing.service.clone(),
                        target_port: ing.target_port,
                    },
                ))
            })
            .collect()
    }

    /// Opens a real localhost port that enters the mesh as pod `from`
    /// connecting to `dst` (its sidecar captures it, as iptables would):
    /// how a real client — curl, nginx, a browser — talks from inside a pod.
    pub async fn expose(&self, from: IpAddr, dst: SocketAddr) -> Result<SocketAddr> {
        let l = self.bind_user().await?;
        let addr = l
            .local_addr()
            .map_err(|e| MeshError::io("local address", e))?;
        let net = self.net.clone();
        let scope = self.scope.clone();
        let directory = self.directory();
        let in_process = match from {
            IpAddr::V4(v4) => !self.process_pods.contains(&v4),
            IpAddr::V6(_) => false,
        };
        self.scope.spawn(async move {
            loop {
                let Ok((mut down, _)) = l.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                // The pod's sidecar takes the connection itself, as
                // iptables hands it over (no relay through its capture
                // port): the sidecar running now, found per connection.
                let sidecar = match from {
                    IpAddr::V4(v4) if in_process && !dst.ip().is_loopback() => directory.by_ip(v4),
                    _ => None,
                };
                if let Some(p) = sidecar {
                    p.accept_with(down, net.source(from), dst, Capture::Outbound);
                    continue;
                }
                let net = net.clone();
                scope.spawn(async move {
                    if let Ok((mut up, _)) = net.connect_app(from, dst).await {
                        let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                    }
                });
            }
        });
        Ok(addr)
    }

    /// Where the mesh's tasks live (clients spawn connection drivers here).
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// Stops everything and waits until every socket the mesh bound is
    /// closed.
    pub async fn shutdown(&self) {
        self.scope.shutdown().await;
        self.logs.flush();
    }
}

impl Drop for Mesh {
    fn drop(&mut self) {
        self.scope.cancel();
    }
}

#[derive(Debug, Clone)]
pub struct IngressPort {
    pub real: SocketAddr,
    pub proxy: String,
    /// The gateway Service, `NAME.NAMESPACE`.
    pub service: String,
    pub target_port: u16,
}
