//! meshsim-model: the typed Istio and Kubernetes resources a user would
//! `kubectl apply`, parsed from multi-document YAML.
//!
//! Place in the data flow: **YAML files → model** → compiler → tables →
//! proxy. This crate does no I/O beyond reading the files it is pointed at,
//! and depends on neither tokio nor hyper.
//!
//! Every problem in the input is a [`Diagnostic`] with `file:line:col`, the
//! field path and what was expected; a load reports all of them together.
//! Fields Istio defines but meshsim does not simulate are accepted and
//! reported as warnings, never silently dropped.
//!
//! # Layout
//! * [`load`] — splitting files into documents; one table of the kinds
//!   meshsim reads (API versions, how each parses); `List`; the mesh
//!   config inside ConfigMap `istio`.
//! * [`diag`] — diagnostics; [`Diagnostics`] is this stage's error.
//! * [`common`] — metadata, durations, selectors, not-simulated marker.
//! * [`k8s`] — Service, Deployment, StatefulSet, Pod and friends.
//! * [`mesh`] — the mesh config (`ConfigMap istio`, key `mesh`).
//! * one module per Istio kind.

pub mod common;
pub mod destination_rule;
pub mod diag;
pub mod envoy_filter;
pub mod gateway;
pub mod k8s;
pub mod load;
pub mod mesh;
pub mod peer_auth;
pub mod resource;
pub mod service_entry;
pub mod sidecar;
pub mod virtual_service;

pub use diag::{Diagnostic, Diagnostics, Origin, Severity};
pub use load::{input_files, load_paths, parse_bytes, parse_str, Loaded};
pub use resource::{Meta, Object, Resource, SecretData};
