//! Launching what a [`Topology`] plans, and changing the running mesh to a
//! new plan: only pieces whose plan changed are started, restarted or
//! stopped (new ones bound and registered before old ones close), each in
//! its own scope under the mesh's.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use meshsim_compiler::World;
use meshsim_proxy::listener::Capture;
use meshsim_proxy::scope::Scope;
use meshsim_proxy::{Proxy, ProxyRuntime};

use crate::apps::{self, AppKind};
use crate::error::{MeshError, Result};
use crate::mesh::{bind, Mesh};
use crate::sds::ProxyEnv;
use crate::topology::{AppPlan, Diff, ExternalHost, Ingress, PodPlan, ProxyPlan, Topology};

/// A running application: its sockets, and the scope that owns them.
pub(crate) struct RunningApp {
    pub scope: Scope,
    pub ports: HashMap<u16, SocketAddr>,
}

/// A running proxy and its admin socket.
#[derive(Clone)]
pub(crate) struct RunningProxy {
    pub proxy: Proxy,
    pub capture: (SocketAddr, SocketAddr),
    pub admin: SocketAddr,
}

/// A running internet host: virtual address → real socket.
pub(crate) struct RunningExternal {
    pub scope: Scope,
    pub sockets: Vec<(SocketAddr, SocketAddr)>,
}

/// An outside address of a gateway Service and its real localhost socket.
pub(crate) struct RunningIngress {
    pub scope: Scope,
    pub real: SocketAddr,
}

/// Everything running, by what planned it.
#[derive(Default)]
pub(crate) struct Running {
    pub apps: BTreeMap<Ipv4Addr, RunningApp>,
    pub proxies: BTreeMap<Ipv4Addr, RunningProxy>,
    pub externals: BTreeMap<String, RunningExternal>,
    pub ingress: BTreeMap<(Ipv4Addr, u16), RunningIngress>,
}

/// What a reconcile did, by pod or host name.
#[derive(Debug, Default, Clone)]
pub struct Restarts {
    pub started: Vec<String>,
    pub restarted: Vec<String>,
    pub stopped: Vec<String>,
}

impl Restarts {
    fn note(&mut self, what: String, had: bool, has: bool) {
        match (had, has) {
            (false, true) => self.started.push(what),
            (true, true) => self.restarted.push(what),
            (true, false) => self.stopped.push(what),
            (false, false) => {}
        }
    }

    pub fn is_empty(&self) -> bool {
        self.started.is_empty() && self.restarted.is_empty() && self.stopped.is_empty()
    }
}

impl Mesh {
    /// Brings the running mesh from `old` to `new` (built for `world`).
    /// Returns what was (re)started or stopped; proxies that keep running
    /// are not touched here (their tables are pushed by the control plane).
    pub(crate) async fn reconcile(
        &self,
        world: &World,
        old: &Topology,
        new: &Topology,
    ) -> Result<Restarts> {
        let diff = Diff::between(old, new);
        let mut done = Restarts::default();
        let mut retired: Vec<Scope> = Vec::new();
        for (ip, pod) in &new.pods {
            self.net
                .add_pod(IpAddr::V4(*ip), &pod.name, &pod.namespace, pod.dns);
        }
        for ip in &diff.apps {
            let (had, plan) = (old.pods.get(ip), new.pods.get(ip));
            let started = match plan.and_then(|p| p.app.as_ref().map(|a| (p, a))) {
                Some((pod, app)) => Some(self.start_app(pod, app).await?),
                None => None,
            };
            let mut running = self.lock_running();
            if let Some(old_app) = running.apps.remove(ip) {
                retired.push(old_app.scope);
            }
            let ports = started
                .as_ref()
                .map(|a| a.ports.clone())
                .unwrap_or_default();
            self.net.set_apps(IpAddr::V4(*ip), ports);
            if let Some(a) = started {
                running.apps.insert(*ip, a);
            }
            let name = |p: Option<&PodPlan>| p.map(|p| format!("{}.{}", p.name, p.namespace));
            let has_app = plan.is_some_and(|p| p.app.is_some());
            let had_app = had.is_some_and(|p| p.app.is_some());
            done.note(
                format!("app of {}", name(plan).or(name(had)).unwrap_or_default()),
                had_app,
                has_app,
            );
        }
        for ip in &diff.proxies {
            let (had, plan) = (old.pods.get(ip), new.pods.get(ip));
            let started = match plan.and_then(|p| p.proxy.as_ref()) {
                Some(pp) => Some(self.start_proxy(world, *ip, pp).await?),
                None => None,
            };
            let mut running = self.lock_running();
            if let Some(old_proxy) = running.proxies.remove(ip) {
                retired.push(old_proxy.proxy.scope());
            }
            self.net
                .set_capture(IpAddr::V4(*ip), started.as_ref().map(|p| p.capture));
            if let Some(p) = started {
                running.proxies.insert(*ip, p);
            }
            let id = |p: Option<&PodPlan>| p.and_then(|p| p.proxy.as_ref()).map(|x| x.id.clone());
            let label = id(plan).or(id(had)).unwrap_or_default();
            done.note(
                format!("proxy {label}"),
                id(had).is_some(),
                id(plan).is_some(),
            );
        }
        for ip in old.pods.keys().filter(|ip| !new.pods.contains_key(*ip)) {
            self.net.remove_pod(IpAddr::V4(*ip));
        }
        for host in &diff.external_hosts {
            let started = match new.external_hosts.get(host) {
                Some(ext) => Some(self.start_external(host, ext).await?),
                None => None,
            };
            let mut running = self.lock_running();
            if let Some(old_ext) = running.externals.remove(host) {
                retired.push(old_ext.scope);
            }
            if let Some(e) = started {
                running.externals.insert(host.clone(), e);
            }
            done.note(
                format!("internet host {host}"),
                old.external_hosts.contains_key(host),
                new.external_hosts.contains_key(host),
            );
        }
        for key in &diff.ingress {
            let started = match new.ingress.get(key) {
                Some(ing) => Some(self.start_ingress(ing).await?),
                None => None,
            };
            let mut running = self.lock_running();
            if let Some(old_ing) = running.ingress.remove(key) {
                retired.push(old_ing.scope);
            }
            if let Some(i) = started {
                running.ingress.insert(*key, i);
            }
        }
        self.publish(new);
        for scope in retired {
            scope.shutdown().await;
        }
        Ok(done)
    }

    /// Points the virtual network at the plan's services and hosts.
    fn publish(&self, t: &Topology) {
        self.net.set_vips(t.vips.clone());
        self.net.set_dns(t.dns.clone());
        self.net.set_name_tables(t.names.clone());
        let running = self.lock_running();
        let external: HashMap<SocketAddr, SocketAddr> = running
            .externals
            .values()
            .flat_map(|e| e.sockets.iter().copied())
            .collect();
        self.net.set_external(external);
    }

    async fn start_app(&self, pod: &PodPlan, app: &AppPlan) -> Result<RunningApp> {
        for w in &app.warnings {
            self.warn(w.clone());
        }
        let scope = self.scope.child();
        let ip = IpAddr::V4(pod.ip);
        let id = Arc::new(app.identity.clone());
        let mut ports = HashMap::new();
        if let AppKind::Local(addr) = app.kind {
            // The user's own process serves every port; nothing to start.
            for &port in &app.ports {
                ports.insert(port, addr);
            }
            return Ok(RunningApp { scope, ports });
        }
        if let (AppKind::Command, Some(cmd)) = (app.kind, &app.command) {
            let addr = self.run_command(pod, cmd, &scope).await?;
            for &port in &app.ports {
                ports.insert(port, addr);
            }
            return Ok(RunningApp { scope, ports });
        }
        for &port in &app.ports {
            let l = bind().await?;
            ports.insert(port, local_addr(&l)?);
            if app.kind == AppKind::TcpEcho {
                scope.spawn(apps::serve_tcp_echo(l, scope.clone()));
                continue;
            }
            match (&app.nginx, app.kind) {
                (Some(conf), AppKind::Nginx) => {
                    let f = crate::nginx::serve(
                        l,
                        conf.clone(),
                        id.clone(),
                        self.net.clone(),
                        ip,
                        scope.clone(),
                    );
                    scope.spawn(f);
                }
                _ => {
                    let out = crate::bookinfo::Outbound {
                        net: self.net.clone(),
                        ip,
                        namespace: pod.namespace.clone(),
                    };
                    scope.spawn(apps::serve_echo(
                        l,
                        id.clone(),
                        None,
                        Some(out),
                        scope.clone(),
                    ))
                }
            }
        }
        Ok(RunningApp { scope, ports })
    }

    /// Runs a pod's own command line (`sh -c CMD` with `$PORT` set to a
    /// free loopback port) as its app; the process belongs to `scope` and
    /// is killed when the app stops. Waits (10 s at most) until it listens.
    async fn run_command(&self, pod: &PodPlan, cmd: &str, scope: &Scope) -> Result<SocketAddr> {
        let addr = local_addr(&bind().await?)?;
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .env("PORT", addr.port().to_string())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| MeshError::io("start the app command", e))?;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                self.warn(format!(
                    "pod {}.{}: its app command {cmd:?} exited ({status}) before listening on $PORT {}",
                    pod.name, pod.namespace, addr.port()
                ));
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                self.warn(format!(
                    "pod {}.{}: its app command {cmd:?} is not listening on $PORT {} after 10 s",
                    pod.name,
                    pod.namespace,
                    addr.port()
                ));
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        scope.spawn(async move {
            let _ = child.wait().await;
        });
        Ok(addr)
    }

    async fn start_proxy(
        &self,
        world: &World,
        ip: Ipv4Addr,
        plan: &ProxyPlan,
    ) -> Result<RunningProxy> {
        let pod = world
            .pods
            .iter()
            .find(|p| p.ip == ip)
            .ok_or_else(|| MeshError::NotFound(format!("no pod with IP {ip}")))?;
        let env = Arc::new(ProxyEnv {
            net: self.net.clone(),
            ip: IpAddr::V4(ip),
            namespace: pod.namespace.clone(),
            workload: self.sds.mesh_ca.workload(&plan.identity)?,
            sds: self.sds.clone(),
        });
        let tables = meshsim_compiler::compile_proxy(world, pod);
        let rt = ProxyRuntime::new(
            env,
            self.logs.clone(),
            self.scope.child(),
            self.opts.seed.wrapping_add(plan.seed_index),
        );
        if let Some(sp) = self
            .opts
            .sidecar_processes
            .as_ref()
            .filter(|_| self.process_pods.contains(&ip))
        {
            return self.start_process_proxy(sp, pod, plan, tables, rt).await;
        }
        let proxy = Proxy::new(tables, rt);
        if let Some(hook) = &self.opts.fd_exhausted {
            proxy.on_fd_exhausted(hook.clone());
        }
        let (out_l, in_l, admin_l) = (bind().await?, bind().await?, self.bind_user().await?);
        let capture = (local_addr(&out_l)?, local_addr(&in_l)?);
        let admin = local_addr(&admin_l)?;
        proxy.serve_capture(out_l, Capture::Outbound);
        // A gateway has no iptables redirect: traffic to its pod IP meets
        // the listener bound on that port.
        let inbound = if plan.gateway {
            Capture::Direct
        } else {
            Capture::Inbound
        };
        proxy.serve_capture(in_l, inbound);
        proxy.serve_admin(admin_l);
        Ok(RunningProxy {
            proxy,
            capture,
            admin,
        })
    }

    /// A sidecar as its own OS process (`--sidecar-process`): the process
    /// serves the pod's capture and admin; the proxy kept here holds the
    /// same tables for `proxy-status` and `proxy-config` and serves nothing.
    async fn start_process_proxy(
        &self,
        sp: &crate::process::SidecarProcesses,
        pod: &meshsim_compiler::world::Pod,
        plan: &ProxyPlan,
        tables: meshsim_tables::ProxyTables,
        rt: ProxyRuntime,
    ) -> Result<RunningProxy> {
        let net = self.net.clone();
        let ns = pod.namespace.clone();
        let dns = crate::process::dns_names(&tables, |h| net.resolve(&ns, h));
        let workload = self.sds.mesh_ca.workload(&plan.identity)?;
        let identity = crate::process::Identity {
            chain: workload.chain.iter().map(|c| c.to_vec()).collect(),
            key: workload.key.secret_der().to_vec(),
            root: self.sds.mesh_ca.root().to_vec(),
            public_root: self.sds.public_ca.root().to_vec(),
        };
        let proxy = Proxy::new(tables, rt);
        let spec = crate::process::SidecarSpec {
            input: &sp.input,
            proxy_id: proxy.id(),
            pod: IpAddr::V4(pod.ip),
            fd_limit: sp.fd_limit,
            identity,
            dns,
            seed: self.opts.seed.wrapping_add(plan.seed_index),
        };
        let p = crate::process::start_sidecar(
            spec,
            self.net.clone(),
            self.logs.clone(),
            &proxy.scope(),
        )
        .await?;
        Ok(RunningProxy {
            proxy,
            capture: (p.outbound, p.inbound),
            admin: p.admin,
        })
    }

    async fn start_external(&self, host: &str, ext: &ExternalHost) -> Result<RunningExternal> {
        let scope = self.scope.child();
        let id = Arc::new(apps::EchoIdentity {
            pod: host.to_string(),
            namespace: String::new(),
            version: String::new(),
            host: Some(host.to_string()),
            status: None,
            bookinfo: None,
            httpbin: false,
            calls: Vec::new(),
            delay: None,
        });
        let tls = Arc::new(self.external_tls(host)?);
        let mut sockets = Vec::new();
        for &(port, is_tls) in &ext.ports {
            let l = bind().await?;
            let real = local_addr(&l)?;
            sockets.push((SocketAddr::new(ext.ip, port), real));
            for vip in &ext.vips {
                sockets.push((SocketAddr::new(*vip, port), real));
            }
            let tls = is_tls.then(|| tls.clone());
            scope.spawn(apps::serve_echo(l, id.clone(), tls, None, scope.clone()));
        }
        Ok(RunningExternal { scope, sockets })
    }

    /// An internet host's TLS: a certificate for its name from the fake
    /// public CA; client certificates from that CA are accepted (not
    /// required) and echoed, so MUTUAL origination shows.
    fn external_tls(&self, host: &str) -> Result<rustls::ServerConfig> {
        let public = &self.sds.public_ca;
        let ck = public.server(&[host.to_string()])?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(public.root())?;
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            meshsim_proxy::tls::provider(),
        )
        .allow_unauthenticated()
        .build()?;
        let mut tls = rustls::ServerConfig::builder_with_provider(meshsim_proxy::tls::provider())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(ck.chain, ck.key)?;
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(tls)
    }

    /// An outside address: a real localhost port whose connections go to
    /// the gateway proxy running for `ing.proxy` at the time (so the port
    /// stays when the gateway restarts). The status port answers
    /// readiness itself.
    async fn start_ingress(&self, ing: &Ingress) -> Result<RunningIngress> {
        let scope = self.scope.child();
        let l = self.bind_user().await?;
        let real = local_addr(&l)?;
        if ing.target_port == 15021 {
            scope.spawn(apps::serve_readiness(l, scope.clone()));
        } else {
            let directory = self.directory();
            let (id, port) = (ing.proxy.clone(), ing.target_port);
            scope.spawn(async move {
                loop {
                    let Ok((stream, peer)) = l.accept().await else {
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                        continue;
                    };
                    if let Some(p) = directory.get(&id) {
                        p.accept_port(stream, peer, port);
                    }
                }
            });
        }
        Ok(RunningIngress { scope, real })
    }
}

fn local_addr(l: &tokio::net::TcpListener) -> Result<SocketAddr> {
    l.local_addr()
        .map_err(|e| MeshError::io("local address of a listener", e))
}
