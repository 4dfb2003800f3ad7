//! `meshsim load`: fortio's load generator (fortio.org/fortio periodic/
//! periodic.go, fhttp/httprunner.go, cli/fortio_main.go) run from inside
//! a pod (through its sidecar) or from outside. Same flags, defaults,
//! pacing, warmup, histograms, text report (on stderr) and JSON result;
//! then what only a mesh can add: which workload answered (from the
//! first proxy's access-log `UPSTREAM_HOST`), the response flags every
//! proxy logged, and a sample of the lines.

pub mod gofmt;
mod report;
pub mod stats;

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use meshsim_compiler::World;
use meshsim_mesh::curl::{Connection, CurlRequest, From, HttpVersion};
use meshsim_mesh::{Mesh, MeshOptions};
use tokio::sync::watch;

use crate::LoadArgs;
use gofmt::g;
use report::{Observed, Report};
use stats::Histogram;

/// fortio `codeIsOK`: 2xx, and 418 (fortio's echo server teapot).
fn code_is_ok(code: i32) -> bool {
    (200..=299).contains(&code) || code == 418
}

/// The plan of a run, after fortio's normalisation (runQPSSetup /
/// runMaxQPSSetup).
#[derive(Debug, Clone)]
struct Plan {
    qps: f64,
    threads: u64,
    duration: Option<Duration>,
    exactly: u64,
    /// Calls per thread (0 = until the duration or ^C).
    per_thread: u64,
    /// The first thread's extra calls (`-n` not a multiple of `-c`).
    leftover: u64,
    requested_duration: String,
    requested_qps: String,
    jitter: bool,
    uniform: bool,
    nocatchup: bool,
}

impl Plan {
    /// Returns the plan and fortio's "Starting at ..." line.
    fn new(a: &LoadArgs) -> (Plan, String, Vec<String>) {
        let gomax = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut warnings = Vec::new();
        let mut threads = a.connections.max(1);
        let duration = (!a.duration.is_zero()).then_some(a.duration);
        let exactly = a.calls;
        let qps = if a.qps > 0.0 { a.qps } else { -1.0 };
        let mut plan = Plan {
            qps,
            threads,
            duration,
            exactly,
            per_thread: 0,
            leftover: 0,
            requested_duration: "until stop".into(),
            requested_qps: "max".into(),
            jitter: a.jitter,
            uniform: a.uniform,
            nocatchup: a.nocatchup,
        };
        let line;
        if qps > 0.0 {
            plan.requested_qps = g(qps, Some(9));
            if duration.is_none() && exactly == 0 {
                line = format!("Starting at {} qps with {threads} thread(s) [gomax {gomax}] until interrupted\n", g(qps, None));
                return (plan, line, warnings);
            }
            let d = duration.unwrap_or_default();
            plan.requested_duration = gofmt::duration(d);
            let mut n = (qps * d.as_secs_f64()) as u64;
            if exactly > 0 {
                n = exactly;
                plan.requested_duration = format!("exactly {n} calls");
            }
            if n < 2 {
                warnings.push("Increasing the number of calls to the minimum of 2 with 1 thread. total duration will increase".into());
                n = 2;
                threads = 1;
            }
            if 2 * threads > n {
                let new = n / 2;
                warnings.push(format!("Lowering number of threads - total call {n} -> lowering from {threads} to {new} threads"));
                threads = new;
            }
            plan.threads = threads;
            plan.per_thread = n / threads;
            let total = plan.per_thread * threads;
            line = if exactly > 0 {
                plan.leftover = exactly - total;
                format!(
                    "Starting at {} qps with {threads} thread(s) [gomax {gomax}] : exactly {exactly}, {} calls each (total {total} + {})\n",
                    g(qps, None), plan.per_thread, plan.leftover
                )
            } else {
                format!(
                    "Starting at {} qps with {threads} thread(s) [gomax {gomax}] for {} : {} calls each (total {total})\n",
                    g(qps, None), gofmt::duration(d), plan.per_thread
                )
            };
        } else if duration.is_none() && exactly == 0 {
            line = format!(
                "Starting at max qps with {threads} thread(s) [gomax {gomax}] until interrupted\n"
            );
            plan.requested_duration = String::new();
        } else if exactly > 0 {
            plan.requested_duration = format!("exactly {exactly} calls");
            plan.per_thread = exactly / threads;
            plan.leftover = exactly % threads;
            line = format!(
                "Starting at max qps with {threads} thread(s) [gomax {gomax}] for {} ({} per thread + {})\n",
                plan.requested_duration, plan.per_thread, plan.leftover
            );
        } else {
            plan.requested_duration = gofmt::duration(duration.unwrap_or_default());
            line = format!(
                "Starting at max qps with {threads} thread(s) [gomax {gomax}] for {}\n",
                plan.requested_duration
            );
        }
        (plan, line, warnings)
    }
}

/// One fortio "thread": its connection and what it measured.
struct Thread {
    id: u64,
    mesh: Arc<Mesh>,
    from: From,
    req: Arc<CurlRequest>,
    timeout: Duration,
    keepalive: bool,
    conn: Option<Connection>,
    /// Sockets opened and the time each connect took.
    connect: Histogram,
    pub codes: BTreeMap<i32, i64>,
    pub func: Histogram,
    pub errors: Histogram,
    pub sleep: Histogram,
    pub sizes: Histogram,
    pub header_sizes: Histogram,
}

/// What a call returned: fortio's (code, total size, header size).
struct Call {
    code: i32,
    size: usize,
    header_size: usize,
}

impl Thread {
    fn new(id: u64, mesh: Arc<Mesh>, from: From, req: Arc<CurlRequest>, a: &LoadArgs) -> Self {
        let r = a.resolution;
        Self {
            id,
            mesh,
            from,
            req,
            timeout: a.timeout,
            keepalive: a.keepalive,
            conn: None,
            connect: Histogram::new(0.0, r),
            codes: BTreeMap::new(),
            func: Histogram::new(0.0, r),
            errors: Histogram::new(0.0, r),
            sleep: Histogram::new(-0.001, 0.001),
            sizes: Histogram::new(0.0, 100.0),
            header_sizes: Histogram::new(0.0, 5.0),
        }
    }

    /// One call (fortio's `StreamFetch`): -1 for a socket error or a
    /// timeout, which covers connecting and the whole response.
    async fn fetch(&mut self) -> Call {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let failed = Call {
            code: -1,
            size: 0,
            header_size: 0,
        };
        if self.conn.is_none() {
            let t0 = Instant::now();
            let opened =
                tokio::time::timeout_at(deadline, self.mesh.open(&self.from, &self.req)).await;
            self.connect.record(t0.elapsed().as_secs_f64());
            match opened {
                Ok(Ok(c)) => self.conn = Some(c),
                _ => return failed,
            }
        }
        let Some(c) = self.conn.as_mut() else {
            return failed;
        };
        let r = match tokio::time::timeout_at(deadline, c.send(&self.req)).await {
            Ok(r) => r,
            Err(_) => {
                self.conn = None;
                return failed;
            }
        };
        let closes = r.error.is_some()
            || !self.keepalive
            || r.headers.iter().any(|(k, v)| {
                k.eq_ignore_ascii_case("connection") && v.eq_ignore_ascii_case("close")
            });
        if closes {
            self.conn = None;
        }
        match (r.status, &r.error) {
            (Some(s), None) => {
                let header_size = header_size(s, &r.headers);
                Call {
                    code: i32::from(s),
                    size: header_size + r.body.len(),
                    header_size,
                }
            }
            _ => failed,
        }
    }

    /// `HTTPRunnerResults.Run`: one call, counted.
    async fn run_once(&mut self) -> i32 {
        let c = self.fetch().await;
        *self.codes.entry(c.code).or_default() += 1;
        self.sizes.record(c.size as f64);
        self.header_sizes.record(c.header_size as f64);
        c.code
    }
}

/// The bytes of a response head: status line, headers, blank line.
fn header_size(status: u16, headers: &[(String, String)]) -> usize {
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    let line = "HTTP/1.1 ".len() + 3 + 1 + reason.len() + 2;
    line + headers
        .iter()
        .map(|(k, v)| k.len() + 2 + v.len() + 2)
        .sum::<usize>()
        + 2
}

/// Shared between threads: the stop signal, the abort-on code, progress.
#[derive(Clone)]
struct Control {
    stop: watch::Receiver<bool>,
    stopper: Arc<watch::Sender<bool>>,
    abort_on: Option<i32>,
    done: Arc<AtomicU64>,
}

impl Control {
    fn stopped(&self) -> bool {
        *self.stop.borrow()
    }
}

/// fortio's `runOne`: calls at the thread's share of the qps (or as fast
/// as it can) until its count, the duration, or a stop.
async fn run_one(
    mut t: Thread,
    plan: Arc<Plan>,
    calls: u64,
    start: Instant,
    ctl: Control,
) -> Thread {
    let mut stop = ctl.stop.clone();
    let per_thread_qps = plan.qps / plan.threads as f64;
    let use_qps = per_thread_qps > 0.0;
    let use_exactly = plan.exactly > 0;
    let end = plan.duration.map(|d| start + d);
    let mut start = start;
    if use_qps && plan.uniform {
        let between = 1.0 / per_thread_qps;
        let delay = between - between / plan.threads as f64 * (plan.threads - t.id) as f64;
        let delay = Duration::from_secs_f64(delay.max(0.0));
        start += delay;
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return t,
            _ = tokio::time::sleep(delay) => {}
        }
    }
    let mut i: u64 = 0;
    'main: loop {
        if ctl.stopped() {
            break;
        }
        let fstart = Instant::now();
        if let (false, Some(end)) = (use_exactly, end) {
            if fstart > end && (!use_qps || (i >= 2 && i + 1 != calls)) {
                break;
            }
        }
        let code = t.run_once().await;
        let latency = fstart.elapsed().as_secs_f64();
        t.func.record(latency);
        if !code_is_ok(code) {
            t.errors.record(latency);
        }
        ctl.done.fetch_add(1, Ordering::Relaxed);
        if ctl.abort_on == Some(code) {
            let _ = ctl.stopper.send(true);
        }
        if use_qps {
            loop {
                i += 1;
                if (use_exactly || end.is_some()) && i >= calls {
                    break 'main;
                }
                let target = if end.is_some() {
                    (i as f64 + i as f64 / (calls as f64 - 1.0)) / per_thread_qps
                } else {
                    i as f64 / per_thread_qps
                };
                let mut sleep = target - start.elapsed().as_secs_f64();
                if plan.nocatchup && sleep < 0.0 {
                    continue;
                }
                if plan.jitter {
                    sleep += jitter(sleep);
                }
                t.sleep.record(sleep);
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => break 'main,
                    _ = tokio::time::sleep(Duration::from_secs_f64(sleep.max(0.0))) => {}
                }
                break;
            }
        } else {
            i += 1;
            if use_exactly && i >= calls {
                break;
            }
        }
    }
    t
}

/// A generator seeded from the process's random state.
fn rng() -> rand::rngs::SmallRng {
    use rand::SeedableRng;
    use std::hash::{BuildHasher, Hasher};
    let seed = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    rand::rngs::SmallRng::seed_from_u64(seed)
}

/// ±10 % of `sleep` (fortio `getJitter`).
fn jitter(sleep: f64) -> f64 {
    use rand::Rng;
    sleep * 0.1 * rng().random_range(-1.0..=1.0)
}

/// A random payload of `n` printable bytes (`-payload-size`).
fn random_payload(n: usize) -> String {
    use rand::Rng;
    let mut r = rng();
    (0..n)
        .map(|_| char::from(r.random_range(b'!'..=b'~')))
        .collect()
}

fn request(a: &LoadArgs) -> CurlRequest {
    let mut headers = a.headers.clone();
    if !headers.iter().any(|h| {
        h.split(':')
            .next()
            .is_some_and(|k| k.trim().eq_ignore_ascii_case("user-agent"))
    }) {
        headers.push(format!("User-Agent: {}", report::USER_AGENT));
    }
    if let Some(ct) = &a.content_type {
        headers.push(format!("Content-Type: {ct}"));
    }
    let data = if a.payload_size > 0 {
        Some(random_payload(a.payload_size))
    } else {
        a.payload
            .clone()
            .or_else(|| a.content_type.as_ref().map(|_| String::new()))
    };
    CurlRequest {
        url: a.url.clone(),
        headers,
        method: a.method.clone(),
        data,
        insecure: a.insecure,
        version: if a.http10 {
            HttpVersion::Http10
        } else {
            HttpVersion::Default
        },
        timeout: Some(a.timeout),
        ..Default::default()
    }
}

pub async fn run(world: World, a: LoadArgs, opts: MeshOptions) -> Result<ExitCode> {
    let percentiles = stats::parse_percentiles(&a.percentiles).map_err(anyhow::Error::msg)?;
    if a.resolution <= 0.0 {
        bail!("-r {}: the resolution must be > 0", a.resolution);
    }
    let from = crate::curl::resolve_from(&world, &a.from)?;
    let req = Arc::new(request(&a));
    let procs = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut out = format!(
        "meshsim {} (fortio load) running at {} queries per second, {procs}->{procs} procs",
        env!("CARGO_PKG_VERSION"),
        g(a.qps, None)
    );
    out += &if a.calls > 0 {
        format!(", for {} calls: {}\n", a.calls, a.url)
    } else if a.duration.is_zero() {
        format!(", until interrupted: {}\n", a.url)
    } else {
        format!(", for {}: {}\n", gofmt::duration(a.duration), a.url)
    };
    eprint!("{out}");
    let mesh = Arc::new(Mesh::start(world, opts).await?);
    for w in mesh.warnings() {
        eprintln!("meshsim: warning: {w}");
    }
    let logged_before = mesh.logs().len();
    let fd_events = meshsim_mesh::fdlimit::exhaustion_events();
    let (plan, starting, warnings) = Plan::new(&a);
    for w in warnings {
        eprintln!("meshsim: warning: {w}");
    }
    let plan = Arc::new(plan);
    let (stopper, stop) = watch::channel(false);
    let ctl = Control {
        stop,
        stopper: Arc::new(stopper),
        abort_on: a.abort_on,
        done: Arc::new(AtomicU64::new(0)),
    };
    let mut threads: Vec<Thread> = (0..plan.threads)
        .map(|i| Thread::new(i, mesh.clone(), from.clone(), req.clone(), &a))
        .collect();
    // Warmup (duration mode): one call per thread, not counted.
    let warmup = if plan.exactly == 0 { plan.threads } else { 0 };
    if warmup > 0 {
        let mut set = tokio::task::JoinSet::new();
        for mut t in threads.drain(..) {
            set.spawn(async move {
                let c = t.fetch().await;
                (t, c)
            });
        }
        let mut failed = None;
        while let Some(r) = set.join_next().await {
            let (t, c) = r?;
            if !code_is_ok(c.code) && failed.is_none() {
                failed = Some(format!("error {} for {} ({} bytes)", c.code, a.url, c.size));
            }
            threads.push(t);
        }
        threads.sort_by_key(|t| t.id);
        if let (Some(why), false) = (failed, a.allow_initial_errors) {
            eprintln!("Aborting because of {why}");
            mesh.shutdown().await;
            return Ok(ExitCode::FAILURE);
        }
    }
    if warmup > 0 {
        // The warmup's log lines are not the run's.
        mesh.logs().settle(logged_before).await;
    }
    let observed = Observed::install(&mesh, &from, a.show_logs);
    eprint!("{starting}");
    let interrupted = ctrl_c(ctl.stopper.clone());
    let progress = report::progress(&plan, ctl.done.clone(), ctl.stop.clone());
    let start = Instant::now();
    let start_time = std::time::SystemTime::now();
    let mut set = tokio::task::JoinSet::new();
    for t in threads {
        let calls = plan.per_thread + if t.id == 0 { plan.leftover } else { 0 };
        set.spawn(run_one(t, plan.clone(), calls, start, ctl.clone()));
    }
    let mut done = Vec::new();
    while let Some(t) = set.join_next().await {
        done.push(t?);
    }
    let elapsed = start.elapsed();
    let _ = ctl.stopper.send(true);
    if let Some(p) = progress {
        p.finish_and_clear();
    }
    interrupted.abort();
    done.sort_by_key(|t| t.id);
    // Counted while the mesh still holds its descriptors.
    let fd_hint = meshsim_mesh::fdlimit::hint_if(fd_events, &[]);
    let resolved = report::resolved(&mesh, &from, &a.url);
    // The proxies' last lines (a call's log line follows its response).
    mesh.logs().settle(mesh.logs().len()).await;
    mesh.shutdown().await;
    let r = Report::new(
        &a,
        &plan,
        &percentiles,
        done,
        elapsed,
        start_time,
        resolved,
        warmup,
        &observed,
    );
    eprint!("{}", r.text());
    if let Some(h) = fd_hint {
        eprintln!("{h}");
    }
    r.write_json(&a)?;
    Ok(ExitCode::SUCCESS)
}

/// ^C stops the run and the partial result is printed (fortio's
/// aborter); a second ^C ends the process.
fn ctrl_c(stopper: Arc<watch::Sender<bool>>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("meshsim: interrupted, stopping (^C again to quit now)");
            let _ = stopper.send(true);
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    })
}
