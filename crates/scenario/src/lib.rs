//! meshsim-scenario: each failure of Istio's "Traffic Management Problems"
//! page as a scenario — resources, ordered steps (apply, delete, wait,
//! requests, sessions, load, a proxy process with an fd limit), and
//! expectations on responses, access-log lines, counts, proxy status and
//! proxy config. The runner starts a real mesh, drives real traffic and
//! prints a transcript a person can follow, ending with `N passed, M failed`.
//!
//! Place in the data flow: scenario runner → mesh (world, proxies) →
//! access logs and responses → verdicts.
//!
//! The mesh (with its control plane and proxy processes) is the mesh
//! crate's; this crate is the file format and what a step does with it.
//!
//! # Layout
//! * [`format`] — the scenario file; a step is an optional change, an
//!   optional wait and at most one traffic action.
//! * [`runner`] — reports and transcripts; `runner/steps` executes steps on
//!   one running mesh, `runner/check` turns observations into verdicts.
//! * [`expect`] — verdicts.

pub mod expect;
pub mod format;
pub mod runner;

pub use runner::{run_path, run_scenario, Report, ScenarioReport};
