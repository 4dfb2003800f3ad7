//! `meshsim load`: a fortio-like load generator from inside a pod (through
//! its sidecar) or from outside: C keep-alive connections share N calls; it
//! reports the latency histogram (HdrHistogram), the response codes and the
//! sockets it had to open, in fortio's words.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use hdrhistogram::Histogram;
use meshsim_compiler::World;
use meshsim_mesh::curl::{CurlRequest, CurlResponse, From};
use meshsim_mesh::{Mesh, MeshOptions};

use crate::LoadArgs;

/// What one connection saw: counters and a histogram, O(1) in the calls.
struct Tally {
    codes: BTreeMap<String, u64>,
    sockets: u64,
    /// Latencies in µs (3 significant digits, as fortio's buckets need).
    latencies_us: Histogram<u64>,
}

impl Default for Tally {
    fn default() -> Self {
        Self {
            codes: BTreeMap::new(),
            sockets: 0,
            latencies_us: Histogram::new(3).unwrap_or_else(|_| unreachable!("3 digits is valid")),
        }
    }
}

impl Tally {
    fn record(&mut self, t0: Instant) {
        let us = (t0.elapsed().as_micros() as u64).max(1);
        self.latencies_us.saturating_record(us);
    }
}

pub async fn run(world: World, a: LoadArgs, opts: MeshOptions) -> Result<ExitCode> {
    let from = crate::curl::resolve_from(&world, &a.from)?;
    let mesh = Arc::new(Mesh::start(world, opts).await?);
    for w in mesh.warnings() {
        eprintln!("meshsim: warning: {w}");
    }
    let req = CurlRequest {
        url: a.url.clone(),
        headers: a.headers.clone(),
        timeout: Some(Duration::from_secs_f64(a.timeout)),
        ..Default::default()
    };
    let connections = a.connections.max(1);
    let calls = a.calls.max(1);
    eprintln!(
        "Starting at max qps with {connections} thread(s) [gomax 2] for exactly {calls} calls ({} per thread + {})",
        calls / connections,
        calls % connections
    );
    let before = mesh.logs().len();
    let fd_events = meshsim_mesh::fdlimit::exhaustion_events();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..connections {
        let n = calls / connections + u64::from(i < calls % connections);
        let (mesh, from, req) = (mesh.clone(), from.clone(), req.clone());
        tasks.spawn(connection(mesh, from, req, n));
    }
    let mut total = Tally::default();
    while let Some(t) = tasks.join_next().await {
        let t = t?;
        for (k, v) in t.codes {
            *total.codes.entry(k).or_default() += v;
        }
        total.sockets += t.sockets;
        total.latencies_us.add(&t.latencies_us)?;
    }
    let elapsed = started.elapsed();
    let logs = mesh.logs().len() - before;
    // Counted while the mesh still holds its descriptors.
    let fd_hint = meshsim_mesh::fdlimit::hint_if(fd_events, &[]);
    mesh.shutdown().await;
    print!(
        "{}",
        report(&total, connections, calls, elapsed, a.url.as_str())?
    );
    eprintln!("({logs} access-log lines written by the proxies on the path)");
    if let Some(h) = fd_hint {
        eprintln!("{h}");
    }
    let all_ok = total.codes.keys().all(|k| k == "200");
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// One fortio "thread": a keep-alive connection, reopened after an error
/// or a response that closes it.
async fn connection(mesh: Arc<Mesh>, from: From, req: CurlRequest, n: u64) -> Tally {
    let mut t = Tally::default();
    let mut conn = None;
    for _ in 0..n {
        let t0 = Instant::now();
        // The per-call timeout covers connecting and the response.
        let limit = req.timeout.unwrap_or(Duration::from_secs(86_400));
        let deadline = tokio::time::Instant::now() + limit;
        if conn.is_none() {
            t.sockets += 1;
            let opened = match tokio::time::timeout_at(deadline, mesh.open(&from, &req)).await {
                Ok(r) => r,
                Err(_) => Err(CurlResponse::timed_out(limit)),
            };
            match opened {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    *t.codes.entry(code_of(&e)).or_default() += 1;
                    t.record(t0);
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let r = tokio::time::timeout_at(deadline, c.send(&req))
            .await
            .unwrap_or_else(|_| CurlResponse::timed_out(limit));
        t.record(t0);
        let closes = r.error.is_some()
            || r.headers.iter().any(|(k, v)| {
                k.eq_ignore_ascii_case("connection") && v.eq_ignore_ascii_case("close")
            });
        *t.codes.entry(code_of(&r)).or_default() += 1;
        if closes {
            conn = None;
        }
    }
    t
}

/// fortio reports transport failures as code -1.
fn code_of(r: &meshsim_mesh::curl::CurlResponse) -> String {
    match (r.status, &r.error) {
        (Some(s), None) => s.to_string(),
        _ => "-1".into(),
    }
}

fn report(t: &Tally, connections: u64, calls: u64, elapsed: Duration, url: &str) -> Result<String> {
    let h = &t.latencies_us;
    let ms = |us: u64| us as f64 / 1000.0;
    let secs = elapsed.as_secs_f64();
    let mut out = String::new();
    let _ = writeln!(out, "Load of {url}");
    let _ = writeln!(
        out,
        "Ended after {:.3}s : {calls} calls. qps={:.1}",
        secs,
        calls as f64 / secs.max(1e-9)
    );
    let _ = writeln!(
        out,
        "Aggregated Function Time : count {} avg {:.3} ms +/- {:.3} min {:.3} max {:.3}",
        h.len(),
        h.mean() / 1000.0,
        h.stdev() / 1000.0,
        ms(h.min()),
        ms(h.max())
    );
    for q in [50.0, 75.0, 90.0, 99.0, 99.9] {
        let _ = writeln!(
            out,
            "# target {q}% {:.3} ms",
            ms(h.value_at_quantile(q / 100.0))
        );
    }
    let _ = writeln!(
        out,
        "Sockets used: {} (for perfect keepalive, would be {connections})",
        t.sockets
    );
    for (code, n) in &t.codes {
        let _ = writeln!(
            out,
            "Code {code:>3} : {n} ({:.1} %)",
            *n as f64 * 100.0 / calls as f64
        );
    }
    let _ = writeln!(
        out,
        "All done {calls} calls (plus 0 warmup) {:.3} ms avg, {:.1} qps",
        h.mean() / 1000.0,
        calls as f64 / secs.max(1e-9)
    );
    Ok(out)
}
