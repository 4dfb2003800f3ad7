//! meshsim-mesh: the simulated cluster at run time. It turns a compiled
//! [`World`](meshsim_compiler::World) into running pieces on localhost —
//! applications, one real proxy per sidecar and gateway, internet hosts —
//! joined by a virtual network that maps Kubernetes addresses to real
//! sockets, plus the mesh CA, the control plane, and the clients users
//! drive it with.
//!
//! Place in the data flow: world + tables → **mesh** (plan, sockets, CA,
//! apps, control plane) → proxies. Everything the mesh starts lives in its
//! scope; [`Mesh::shutdown`] closes every socket it bound.
//!
//! # Layout
//! * [`topology`] — the pure plan: pods (app, proxy), services, DNS,
//!   internet hosts, gateway addresses; the diff between two plans.
//! * [`mesh`] — the running mesh and its queries; `runtime` launches a plan
//!   and moves the mesh from one plan to the next.
//! * [`control`] — istiod: `apply(changes)`, per-proxy pushes after the
//!   push delay, versions, `status()`, `wait_synced()`.
//! * [`network`] — virtual addresses, capture (PROXY v2), kube-proxy, DNS.
//! * [`sds`] — secrets for proxies (workload certs, gateway credentials).
//! * [`ca`] — mesh CA and fake public CA (rcgen).
//! * [`apps`], [`nginx`], [`bookinfo`], [`httpbin`] — built-in applications;
//!   [`graph`] — a user's own call graph on the built-in app (annotations).
//! * [`curl`] — a curl-compatible client from inside a pod or from outside.
//! * [`process`] — a sidecar as its own OS process (fd limits).
//! * [`remote`] — a running sandbox's control endpoint and its client.
//! * [`podproxy`] — a client pod's HTTP proxy port (`curl -x`).
//! * [`export`] — a proxy as a bootstrap stock Envoy runs, with cert files.
//! * [`status`], [`logs`] — `proxy-status` rows, collected access logs.
//! * [`fdlimit`] — the open-file limit and the hint when it runs out.

pub mod analysis;
pub mod apps;
pub mod bookinfo;
pub mod ca;
pub mod control;
pub mod curl;
pub mod error;
pub mod explain;
pub mod export;
pub mod fdlimit;
pub mod graph;
pub mod httpbin;
pub mod logs;
pub mod mesh;
pub mod network;
pub mod nginx;
pub mod podproxy;
pub mod process;
pub mod remote;
mod runtime;
pub mod sds;
pub mod status;
pub mod topology;
pub mod traffic;

pub use control::{ApplyReport, Change};
pub use error::MeshError;
pub use mesh::{Mesh, MeshOptions};
pub use runtime::Restarts;
