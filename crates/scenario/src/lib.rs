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
//! # Layout
//! * [`format`] — the scenario file.
//! * [`runner`] — executing steps, the control plane with push delay,
//!   proxy status, transcripts and reports.
//! * [`expect`] — verdicts.
//! * [`process`] — a sidecar as its own OS process (`meshsim proxy`).

pub mod expect;
pub mod format;
pub mod process;
pub mod runner;

pub use runner::{run_path, run_scenario, Report, ScenarioReport};
