//! meshsim-mesh: the simulated cluster at run time. It turns a compiled
//! [`World`](meshsim_compiler::World) into running pieces on localhost —
//! applications, one real proxy per sidecar and gateway, external hosts —
//! joined by a virtual network that maps Kubernetes addresses to real
//! sockets, plus the mesh CA and the clients users drive it with.
//!
//! Place in the data flow: world + tables → **mesh** (sockets, CA, apps,
//! control plane) → proxies.
//!
//! # Layout
//! * [`network`] — virtual addresses, capture (PROXY v2), kube-proxy, DNS.
//! * [`ca`] — mesh CA and fake public CA (rcgen).
//! * [`apps`] — built-in applications.
//! * [`mesh`] — starting everything.
//! * [`nginx`] — built-in nginx with `proxy_pass` (HTTP/1.0 upstream by default).
//! * [`curl`] — a curl-compatible client from inside a pod or from outside.
//! * [`status`] — `proxy-status` (SYNCED / STALE).
//! * [`logs`] — collected access logs.

pub mod apps;
pub mod ca;
pub mod curl;
pub mod logs;
pub mod mesh;
pub mod network;
pub mod nginx;
pub mod status;

pub use mesh::{Mesh, MeshOptions};
