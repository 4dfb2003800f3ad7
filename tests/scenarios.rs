//! One test per scenario directory (`cargo test -p meshsim-tests --test
//! scenarios -- <name>` runs one). A failing scenario prints its transcript.

use libtest_mimic::{Arguments, Failed, Trial};
use meshsim_tests::root;

/// As the `meshsim` binary does: out of file descriptors, a proxy process
/// prints Envoy's assert line and aborts (the fd-limit scenario expects it).
fn envoy_fd_abort() -> meshsim_proxy::FdExhaustedHook {
    std::sync::Arc::new(|_| {
        eprintln!("{}", meshsim_proxy::envoy_fd_assert_line());
        std::process::abort();
    })
}

fn main() {
    // The fd-limit scenario re-runs this binary as a proxy process.
    meshsim_mesh::process::maybe_child(envoy_fd_abort());
    let args = Arguments::from_args();
    let files = meshsim_scenario::runner::discover(&root().join("scenarios"));
    let trials = files
        .into_iter()
        .map(|f| {
            let name = f
                .parent()
                .and_then(|d| d.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            Trial::test(name, move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .map_err(|e| Failed::from(e.to_string()))?;
                let report = rt.block_on(meshsim_scenario::run_scenario(&f));
                if report.passed {
                    Ok(())
                } else {
                    Err(Failed::from(report.transcript()))
                }
            })
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}
