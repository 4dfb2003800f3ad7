//! The control plane: istiod's part of the mesh. It keeps the objects
//! applied so far (the API server's store), turns each change into a new
//! world, has the mesh restart only the workloads whose plan changed, and
//! pushes new tables to every other proxy after the configured delay —
//! so "route rules are slow to take effect" is reproducible and
//! `proxy-status` shows STALE until each proxy has its push.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use meshsim_compiler::store::{ChangeKind, ConfigStore, ObjectChange};
use meshsim_compiler::{IstioVersion, NamespaceFlag, Settings, World};
use meshsim_model::{Diagnostics, Loaded};
use tokio::sync::Notify;

use crate::error::{MeshError, Result};
use crate::mesh::Mesh;
use crate::runtime::Restarts;
use crate::status::ProxyStatus;
use crate::topology::{self, Diff};

/// A change to the running mesh, as kubectl and istioctl make them.
pub enum Change {
    /// `kubectl apply -f`: create or replace these objects.
    Apply(Loaded),
    /// `kubectl delete -f`: delete these objects.
    Delete(Loaded),
    /// `istioctl upgrade`: proxies restart reporting this version.
    Upgrade(IstioVersion),
}

impl Change {
    /// `kubectl apply -f PATH...` (with `-n` as kubectl applies it).
    pub fn apply_files<P: AsRef<Path>>(paths: &[P], ns: &NamespaceFlag) -> Change {
        let mut l = meshsim_model::load_paths(paths);
        ns.apply_to(&mut l);
        Change::Apply(l)
    }

    /// `kubectl delete -f PATH...`.
    pub fn delete_files<P: AsRef<Path>>(paths: &[P], ns: &NamespaceFlag) -> Change {
        let mut l = meshsim_model::load_paths(paths);
        ns.apply_to(&mut l);
        Change::Delete(l)
    }
}

/// What one change did.
#[derive(Debug, Clone)]
pub struct ApplyReport {
    /// The configuration version the change produced.
    pub version: u64,
    /// Per object, as kubectl prints it.
    pub objects: Vec<ObjectChange>,
    /// Workloads started, restarted or stopped.
    pub restarts: Restarts,
    /// Proxies that get the new tables (after the push delay).
    pub pushed: Vec<String>,
    pub push_delay: Duration,
    /// Warnings of the new configuration (`file:line: warning: ...`).
    pub warnings: Diagnostics,
}

impl ApplyReport {
    /// Whether a delete found none of its objects.
    pub fn nothing_found(&self) -> bool {
        !self.objects.is_empty() && self.objects.iter().all(|o| o.what == ChangeKind::NotFound)
    }
}

struct CpState {
    store: ConfigStore,
    settings: Settings,
    /// The configuration version istiod computed last.
    version: u64,
    /// What each proxy has acknowledged.
    acked: BTreeMap<String, u64>,
}

pub(crate) struct ControlPlane {
    push_delay: Duration,
    state: Mutex<CpState>,
    acked: Notify,
    /// Changes are applied one at a time.
    applying: tokio::sync::Mutex<()>,
}

impl ControlPlane {
    pub fn new(world: &World, push_delay: Duration) -> Self {
        Self {
            push_delay,
            state: Mutex::new(CpState {
                store: ConfigStore::new(world.resources.clone()),
                settings: world.settings.clone(),
                version: 0,
                acked: BTreeMap::new(),
            }),
            acked: Notify::new(),
            applying: tokio::sync::Mutex::new(()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CpState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new version every proxy in `ids` already has (the mesh started
    /// with it).
    pub fn synced_all(&self, ids: Vec<String>) {
        let mut s = self.lock();
        s.version += 1;
        let v = s.version;
        s.acked = ids.into_iter().map(|id| (id, v)).collect();
        drop(s);
        self.acked.notify_waiters();
    }

    /// istiod computes a new version; proxies that are gone are forgotten.
    fn next_version(&self, running: &[String]) -> u64 {
        let mut s = self.lock();
        s.version += 1;
        s.acked.retain(|id, _| running.contains(id));
        s.version
    }

    fn ack(&self, id: &str, version: u64) {
        let mut s = self.lock();
        let a = s.acked.entry(id.to_string()).or_default();
        *a = (*a).max(version);
        drop(s);
        self.acked.notify_waiters();
    }
}

impl Mesh {
    /// Applies changes through the control plane. A change with errors is
    /// rejected whole and the mesh keeps its configuration. Istio config is
    /// pushed to the proxies (after the push delay) without touching their
    /// connections; only workloads whose plan changed restart.
    pub async fn apply(&self, changes: Vec<Change>) -> Result<ApplyReport> {
        let _one_at_a_time = self.control.applying.lock().await;
        let (store, settings, objects, mut diags) = {
            let s = self.control.lock();
            let mut store = s.store.clone();
            let mut settings = s.settings.clone();
            let mut diags = Diagnostics::new();
            let mut objects = Vec::new();
            for c in changes {
                match c {
                    Change::Apply(l) => {
                        objects.extend(store.apply(&l.resources));
                        diags.extend(l.diagnostics);
                    }
                    Change::Delete(l) => {
                        objects.extend(store.delete(&l.resources));
                        diags.extend(l.diagnostics);
                    }
                    Change::Upgrade(v) => settings.istio_version = v,
                }
            }
            (store, settings, objects, diags)
        };
        let old_world = self.world();
        let (world, more) = World::rebuild(store.resources(), settings.clone(), &old_world);
        diags.extend(more);
        if diags.has_errors() {
            return Err(MeshError::Rejected(diags));
        }
        {
            let mut s = self.control.lock();
            s.store = store;
            s.settings = settings;
        }
        let world = Arc::new(world);
        for w in self.sds.load(&world)? {
            self.warn(w);
        }
        let old_topology = self
            .served
            .read()
            .map(|s| s.topology.clone())
            .unwrap_or_default();
        let new_topology = topology::plan(&world, Some(&old_topology));
        let fresh = Diff::between(&old_topology, &new_topology).proxies;
        let restarts = self.reconcile(&world, &old_topology, &new_topology).await?;
        {
            let mut served = self.write_served();
            served.world = world.clone();
            served.topology = new_topology;
        }
        let (version, pushed) = self.push(&world, &fresh);
        Ok(ApplyReport {
            version,
            objects,
            restarts,
            pushed,
            push_delay: self.control.push_delay,
            warnings: diags,
        })
    }

    /// istiod's push of a new version: proxies started for it already have
    /// it; every other proxy gets it after the push delay.
    fn push(&self, world: &Arc<World>, fresh: &[std::net::Ipv4Addr]) -> (u64, Vec<String>) {
        let ids = self.proxy_ids();
        let version = self.control.next_version(&ids);
        let mut pushed = Vec::new();
        for pod in world.proxies() {
            let id = pod.id();
            if !ids.contains(&id) {
                continue;
            }
            if fresh.contains(&pod.ip) {
                self.control.ack(&id, version);
                continue;
            }
            pushed.push(id.clone());
            let deliver = self.deliverer();
            let delay = self.control.push_delay;
            if delay.is_zero() {
                deliver(world, &id, version);
                continue;
            }
            let world = world.clone();
            self.scope.spawn(async move {
                tokio::time::sleep(delay).await;
                deliver(&world, &id, version);
            });
        }
        (version, pushed)
    }

    /// Compiles a proxy's tables for `world`, hands them to the proxy
    /// running under that id now, and records its acknowledgement.
    fn deliverer(&self) -> impl Fn(&World, &str, u64) + Send + 'static {
        let (directory, control) = (self.directory(), self.control.clone());
        move |world, id, version| {
            let Some(pod) = world.pods.iter().find(|p| p.id() == id) else {
                return;
            };
            if let Some(p) = directory.get(id) {
                p.update(meshsim_compiler::compile_proxy(world, pod));
                control.ack(id, version);
            }
        }
    }

    /// `istioctl proxy-status`: SYNCED when a proxy has acknowledged the
    /// last version istiod computed, else STALE.
    pub fn status(&self) -> Vec<ProxyStatus> {
        let s = self.control.lock();
        let version = self.world().settings.istio_version.to_string();
        self.proxy_ids()
            .into_iter()
            .map(|id| ProxyStatus {
                synced: s.acked.get(&id).copied().unwrap_or(0) >= s.version,
                id,
                version: version.clone(),
            })
            .collect()
    }

    /// Waits until every proxy is SYNCED (or `timeout` passes); whether
    /// they all are.
    pub async fn wait_synced(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.control.acked.notified();
            if self.status().iter().all(|s| s.synced) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.status().iter().all(|s| s.synced);
            }
        }
    }
}
