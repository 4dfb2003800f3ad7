//! fortio's report of a run — the text it prints (periodic.go Run,
//! httprunner.go RunHTTPTest, fortio_main.go) and its JSON result
//! (`HTTPRunnerResults`) — and what meshsim adds from the access logs.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use meshsim_mesh::curl::From;
use meshsim_mesh::Mesh;
use meshsim_proxy::accesslog;
use serde::Serialize;
use tokio::sync::watch;

use super::gofmt::{self, g};
use super::stats::{Histogram, HistogramData};
use super::{Plan, Thread};
use crate::LoadArgs;

/// What meshsim's load generator says it is (fortio's is
/// `fortio.org/fortio-VERSION`).
pub const USER_AGENT: &str = concat!("fortio.org/fortio-meshsim-", env!("CARGO_PKG_VERSION"));

/// What the proxies logged during the run, counted as lines come (no
/// line is kept beyond the sample).
#[derive(Default)]
struct Seen {
    /// Who answered, by the first proxy's `UPSTREAM_HOST`.
    destinations: BTreeMap<String, u64>,
    /// `(flag, proxy workload)` → lines.
    flags: BTreeMap<(String, String), u64>,
    flagged: Vec<String>,
    plain: Vec<String>,
}

struct Snapshot {
    destinations: BTreeMap<String, u64>,
    flags: BTreeMap<(String, String), u64>,
    lines: Vec<String>,
}

pub(super) struct Observed {
    seen: Arc<Mutex<Seen>>,
}

/// Each pod's IP → its workload and version (`reviews-v1.default (version v1)`).
fn workloads_by_ip(world: &meshsim_compiler::World) -> HashMap<std::net::IpAddr, String> {
    world
        .pods
        .iter()
        .map(|p| {
            let owner = p.owner.split_once('/').map_or(p.name.as_str(), |(_, n)| n);
            let version = p
                .labels
                .get("version")
                .map(|v| format!(" (version {v})"))
                .unwrap_or_default();
            (
                std::net::IpAddr::V4(p.ip),
                format!("{owner}.{}{version}", p.namespace),
            )
        })
        .collect()
}

impl Observed {
    /// Taps the mesh's access logs: the first proxy on the path (the
    /// client's sidecar, or the gateways from outside; else the server's
    /// sidecar) says who answered; every proxy's flags are counted.
    pub fn install(mesh: &Mesh, from: &From, sample: usize) -> Observed {
        let world = mesh.world();
        let first: BTreeSet<String> = match from {
            From::Pod(name, ns) => world
                .pods
                .iter()
                .filter(|p| p.sidecar && &p.name == name && &p.namespace == ns)
                .map(|p| p.id())
                .collect(),
            From::Outside => world
                .pods
                .iter()
                .filter(|p| p.role == meshsim_compiler::world::PodRole::Gateway)
                .map(|p| p.id())
                .collect(),
        };
        let by_ip = workloads_by_ip(&world);
        let seen = Arc::new(Mutex::new(Seen::default()));
        let s = seen.clone();
        let names: BTreeMap<String, String> = world
            .pods
            .iter()
            .map(|p| {
                let owner = p.owner.split_once('/').map_or(p.name.as_str(), |(_, n)| n);
                (p.id(), format!("{owner}.{}", p.namespace))
            })
            .collect();
        mesh.logs().tap(Arc::new(move |proxy, line, e| {
            let Ok(mut s) = s.lock() else { return };
            let inbound = e
                .upstream_cluster
                .as_deref()
                .is_some_and(|c| c.starts_with("inbound|"));
            let counts = if first.is_empty() {
                inbound
            } else {
                first.contains(proxy)
            };
            if counts {
                let who = if first.is_empty() {
                    names
                        .get(proxy)
                        .cloned()
                        .unwrap_or_else(|| proxy.to_string())
                } else {
                    match e.upstream_host.as_deref() {
                        Some(h) => h
                            .parse::<SocketAddr>()
                            .ok()
                            .and_then(|a| by_ip.get(&a.ip()).cloned())
                            .unwrap_or_else(|| h.to_string()),
                        None => format!("no upstream ({} {})", e.response_code, e.flags_string()),
                    }
                };
                *s.destinations.entry(who).or_default() += 1;
            }
            let workload = names.get(proxy).map_or(proxy, String::as_str);
            let mut counted: Vec<accesslog::Flag> = Vec::new();
            for f in &e.flags {
                if !counted.contains(f) {
                    counted.push(*f);
                    *s.flags
                        .entry((f.code().to_string(), workload.to_string()))
                        .or_default() += 1;
                }
            }
            // The sample: formatted only while it has room.
            let list = if e.flags.is_empty() {
                &mut s.plain
            } else {
                &mut s.flagged
            };
            if list.len() < sample {
                list.push(format!("[{workload}] {}", line.trim_end()));
            }
        }));
        Observed { seen }
    }

    /// Who answered, the flags by proxy, and the sample of lines.
    fn snapshot(&self, sample: usize) -> Snapshot {
        let s = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let lines = s
            .flagged
            .iter()
            .chain(s.plain.iter())
            .take(sample)
            .cloned()
            .collect();
        Snapshot {
            destinations: s.destinations.clone(),
            flags: s.flags.clone(),
            lines,
        }
    }
}

/// A progress bar on a terminal (stderr), until the run stops.
pub(super) fn progress(
    plan: &Plan,
    done: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let calls = if plan.exactly > 0 {
        Some(plan.per_thread * plan.threads + plan.leftover)
    } else if plan.qps > 0.0 && plan.duration.is_some() {
        Some(plan.per_thread * plan.threads)
    } else {
        None
    };
    let bar = match (calls, plan.duration) {
        (Some(n), _) => indicatif::ProgressBar::new(n).with_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} calls, {per_sec} [{elapsed_precise}]",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        ),
        (None, Some(d)) => indicatif::ProgressBar::new(d.as_secs().max(1)).with_style(
            indicatif::ProgressStyle::with_template("{bar:40} {elapsed}/{len}s {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        ),
        (None, None) => indicatif::ProgressBar::new_spinner(),
    };
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    let b = bar.clone();
    let by_time = calls.is_none() && plan.duration.is_some();
    let started = std::time::Instant::now();
    tokio::spawn(async move {
        loop {
            let n = done.load(Ordering::Relaxed);
            if by_time {
                b.set_position(started.elapsed().as_secs());
                b.set_message(format!("{n} calls"));
            } else {
                b.set_position(n);
            }
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    });
    Some(bar)
}

/// The address the client resolved the URL's host to (fortio's "resolved to").
pub(super) fn resolved(mesh: &Mesh, from: &From, url: &str) -> String {
    let Ok(u) = url.parse::<http::Uri>() else {
        return String::new();
    };
    let host = u
        .host()
        .unwrap_or_default()
        .trim_matches(['[', ']'])
        .to_string();
    let port = u.port_u16().unwrap_or(if u.scheme_str() == Some("https") {
        443
    } else {
        80
    });
    let ip = match from {
        From::Pod(name, ns) => {
            let world = mesh.world();
            world
                .pods
                .iter()
                .find(|p| &p.name == name && &p.namespace == ns)
                .and_then(|p| {
                    mesh.net()
                        .resolve_app(std::net::IpAddr::V4(p.ip), ns, &host)
                })
        }
        From::Outside => host
            .parse()
            .ok()
            .or(Some(std::net::IpAddr::V4(meshsim_mesh::mesh::INGRESS_IP))),
    };
    ip.map(|ip| SocketAddr::new(ip, port).to_string())
        .unwrap_or_default()
}

/// fortio's `HTTPRunnerResults` as JSON (field names and order; Go's
/// durations in nanoseconds, `[]byte` in base64).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Json<'a> {
    run_type: &'static str,
    labels: &'a str,
    start_time: String,
    #[serde(rename = "RequestedQPS")]
    requested_qps: &'a str,
    requested_duration: &'a str,
    #[serde(rename = "ActualQPS")]
    actual_qps: f64,
    actual_duration: u128,
    num_threads: u64,
    version: &'static str,
    duration_histogram: &'a HistogramData,
    errors_duration_histogram: &'a HistogramData,
    exactly: u64,
    jitter: bool,
    uniform: bool,
    no_catch_up: bool,
    #[serde(rename = "RunID")]
    run_id: i64,
    access_logger_info: &'static str,
    #[serde(rename = "ID")]
    id: &'a str,
    ret_codes: BTreeMap<String, i64>,
    #[serde(rename = "IPCountMap")]
    ip_count_map: BTreeMap<String, i64>,
    insecure: bool,
    #[serde(rename = "MTLS")]
    mtls: bool,
    #[serde(rename = "CACert")]
    ca_cert: &'static str,
    cert: &'static str,
    key: &'static str,
    unix_domain_socket: &'static str,
    #[serde(rename = "URL")]
    url: &'a str,
    num_connections: u64,
    compression: bool,
    disable_fast_client: bool,
    #[serde(rename = "HTTP10")]
    http10: bool,
    #[serde(rename = "H2")]
    h2: bool,
    disable_keep_alive: bool,
    allow_half_close: bool,
    follow_redirects: bool,
    resolve: &'static str,
    #[serde(rename = "HTTPReqTimeOut")]
    http_req_timeout: u128,
    user_credentials: &'static str,
    content_type: &'a str,
    payload: Option<String>,
    method_override: &'a str,
    log_errors: bool,
    sequential_warmup: bool,
    conn_reuse_range: [i64; 2],
    no_resolve_each_conn: bool,
    offset: i64,
    resolution: f64,
    sizes: &'a HistogramData,
    header_sizes: &'a HistogramData,
    sockets: &'a [i64],
    socket_count: i64,
    connection_stats: &'a HistogramData,
    abort_on: i32,
    /// meshsim: who answered, by workload (first proxy's UPSTREAM_HOST).
    meshsim_destinations: &'a BTreeMap<String, u64>,
    /// meshsim: access-log lines with each response flag.
    meshsim_response_flags: BTreeMap<String, u64>,
}

pub(super) struct Report {
    text: String,
    json: String,
    id: String,
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().split('.').next().unwrap_or_default().to_string())
        .unwrap_or_default()
}

impl Report {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        a: &LoadArgs,
        plan: &Plan,
        percentiles: &[f64],
        threads: Vec<Thread>,
        elapsed: Duration,
        start_time: SystemTime,
        resolved: String,
        warmup: u64,
        observed: &Observed,
    ) -> Report {
        let r = a.resolution;
        let (mut func, mut errors, mut sleep) = (
            Histogram::new(0.0, r),
            Histogram::new(0.0, r),
            Histogram::new(-0.001, 0.001),
        );
        let (mut sizes, mut header_sizes, mut connect) = (
            Histogram::new(0.0, 100.0),
            Histogram::new(0.0, 5.0),
            Histogram::new(0.0, r),
        );
        let mut codes: BTreeMap<i32, i64> = BTreeMap::new();
        let mut sockets = Vec::new();
        let mut per_thread = String::new();
        let mut ips: BTreeMap<String, i64> = BTreeMap::new();
        for t in &threads {
            func.merge(&t.func);
            errors.merge(&t.errors);
            sleep.merge(&t.sleep);
            sizes.merge(&t.sizes);
            header_sizes.merge(&t.header_sizes);
            connect.merge(&t.connect);
            for (c, n) in &t.codes {
                *codes.entry(*c).or_default() += n;
            }
            let used = t.connect.counter.count;
            sockets.push(used);
            if used > 0 {
                *ips.entry(resolved.clone()).or_default() += used;
            }
            let _ = write!(
                per_thread,
                "[{}] {used:>3} socket used, resolved to {}",
                t.id,
                if used > 0 { resolved.as_str() } else { "[]" }
            );
            per_thread.push_str(&t.connect.counter.line(", connection timing"));
        }
        let count = func.counter.count;
        let actual_qps = count as f64 / elapsed.as_secs_f64().max(1e-9);
        let mut requested_duration = plan.requested_duration.clone();
        if plan.exactly > 0 && count as u64 != plan.exactly {
            let _ = write!(requested_duration, ", interrupted after {count}");
        }
        let duration_h = func.export(percentiles);
        let errors_h = errors.export(percentiles);
        let connect_h = connect.export(percentiles);
        let sizes_h = sizes.export(&[]);
        let header_h = header_sizes.export(&[]);
        let Snapshot {
            destinations,
            flags,
            lines,
        } = observed.snapshot(a.show_logs);

        let mut out = String::new();
        let _ = writeln!(
            out,
            "Ended after {} : {count} calls. qps={}",
            gofmt::duration(elapsed),
            g(actual_qps, Some(5))
        );
        if plan.qps > 0.0 {
            let negative = 100.0 * sleep.first_bucket() as f64 / sleep.counter.count as f64;
            if negative > 5.0 {
                out.push_str(&sleep.export(&[50.0]).print("Aggregated Sleep Time"));
                let _ = writeln!(out, "WARNING {negative:.2}% of sleep were falling behind");
            } else {
                out.push_str(&sleep.counter.line("Sleep times"));
            }
        }
        out.push_str(&duration_h.print("Aggregated Function Time"));
        out.push_str(&errors_h.print("Error cases"));
        out.push_str("# Socket and IP used for each connection:\n");
        out.push_str(&per_thread);
        out.push_str(&connect_h.print("Connection time histogram (s)"));
        let socket_count: i64 = sockets.iter().sum();
        let _ = writeln!(
            out,
            "Sockets used: {socket_count} (for perfect keepalive, would be {})",
            plan.threads
        );
        let _ = writeln!(
            out,
            "Uniform: {}, Jitter: {}, Catchup allowed: {}",
            plan.uniform, plan.jitter, !plan.nocatchup
        );
        out.push_str("IP addresses distribution:\n");
        for (ip, n) in &ips {
            let _ = writeln!(out, "{ip}: {n}");
        }
        for (code, n) in &codes {
            let _ = writeln!(
                out,
                "Code {code:>3} : {n} ({:.1} %)",
                100.0 * *n as f64 / count.max(1) as f64
            );
        }
        out.push_str(&header_sizes.counter.line("Response Header Sizes"));
        out.push_str(&sizes.counter.line("Response Body/Total Sizes"));
        let _ = writeln!(
            out,
            "All done {count} calls (plus {warmup} warmup) {:.3} ms avg, {:.1} qps",
            1000.0 * duration_h.avg,
            actual_qps
        );
        // meshsim's own: what the access logs say.
        let answered: u64 = destinations.values().sum();
        if answered > 0 {
            out.push_str(
                "# meshsim: who answered (the first proxy's UPSTREAM_HOST, by workload):\n",
            );
            for (who, n) in &destinations {
                let _ = writeln!(
                    out,
                    "{who} : {n} ({:.1} %)",
                    100.0 * *n as f64 / answered as f64
                );
            }
        }
        let mut flag_totals: BTreeMap<String, u64> = BTreeMap::new();
        if !flags.is_empty() {
            out.push_str("# meshsim: response flags in the access logs (lines, by proxy):\n");
            for ((flag, proxy), n) in &flags {
                *flag_totals.entry(flag.clone()).or_default() += n;
                let _ = writeln!(out, "{flag} : {n} ({proxy})");
            }
        }
        if !lines.is_empty() {
            let _ = writeln!(
                out,
                "# meshsim: {} access-log lines of the run:",
                lines.len()
            );
            for l in &lines {
                let _ = writeln!(out, "{l}");
            }
        }

        let labels = if a.labels.is_empty() {
            let short = a
                .url
                .strip_prefix("https://")
                .or_else(|| a.url.strip_prefix("http://"))
                .unwrap_or(&a.url);
            format!("{short} , {}", hostname())
        } else {
            a.labels.clone()
        };
        let id = run_id(start_time, &labels);
        let payload = req_payload(a);
        let json = Json {
            run_type: "HTTP",
            labels: &labels,
            start_time: humantime::format_rfc3339_nanos(start_time).to_string(),
            requested_qps: &plan.requested_qps,
            requested_duration: &requested_duration,
            actual_qps,
            actual_duration: elapsed.as_nanos(),
            num_threads: plan.threads,
            version: env!("CARGO_PKG_VERSION"),
            duration_histogram: &duration_h,
            errors_duration_histogram: &errors_h,
            exactly: plan.exactly,
            jitter: plan.jitter,
            uniform: plan.uniform,
            no_catch_up: plan.nocatchup,
            run_id: 0,
            access_logger_info: "",
            id: &id,
            ret_codes: codes.iter().map(|(c, n)| (c.to_string(), *n)).collect(),
            ip_count_map: ips.clone(),
            insecure: a.insecure,
            mtls: false,
            ca_cert: "",
            cert: "",
            key: "",
            unix_domain_socket: "",
            url: &a.url,
            num_connections: 1,
            compression: false,
            disable_fast_client: false,
            http10: a.http10,
            h2: false,
            disable_keep_alive: !a.keepalive,
            allow_half_close: false,
            follow_redirects: false,
            resolve: "",
            http_req_timeout: a.timeout.as_nanos(),
            user_credentials: "",
            content_type: a.content_type.as_deref().unwrap_or_default(),
            payload,
            method_override: a.method.as_deref().unwrap_or_default(),
            log_errors: true,
            sequential_warmup: false,
            conn_reuse_range: [0, 0],
            no_resolve_each_conn: false,
            offset: 0,
            resolution: a.resolution,
            sizes: &sizes_h,
            header_sizes: &header_h,
            sockets: &sockets,
            socket_count,
            connection_stats: &connect_h,
            abort_on: a.abort_on.unwrap_or(0),
            meshsim_destinations: &destinations,
            meshsim_response_flags: flag_totals,
        };
        let json = serde_json::to_string_pretty(&json).unwrap_or_default();
        Report {
            text: out,
            json,
            id,
        }
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// `-json FILE|-` and `-a` (fortio's messages).
    pub fn write_json(&self, a: &LoadArgs) -> Result<()> {
        let target = match (&a.json, a.auto_save) {
            (Some(f), _) if !f.is_empty() => f.clone(),
            (_, true) => a
                .data_dir
                .join(format!("{}.json", self.id))
                .display()
                .to_string(),
            _ => return Ok(()),
        };
        let bytes = format!("{}\n", self.json);
        if target == "-" {
            crate::write_stdout(&bytes);
            eprintln!(
                "Successfully wrote {} bytes of Json data to stdout",
                bytes.len()
            );
        } else {
            std::fs::write(&target, &bytes)
                .with_context(|| format!("Unable to create {target}"))?;
            eprintln!(
                "Successfully wrote {} bytes of Json data to {target}",
                bytes.len()
            );
        }
        Ok(())
    }
}

/// fortio's run ID (periodic.go `GenID`): the start as `YYYY-MM-DD-HHMMSS`
/// (UTC here), `_`, the labels with each run of other characters one
/// `_`, at most 96 characters.
fn run_id(start: SystemTime, labels: &str) -> String {
    let ts = humantime::format_rfc3339_seconds(start).to_string();
    let (day, time) = ts
        .trim_end_matches('Z')
        .split_once('T')
        .unwrap_or((&ts, ""));
    let mut id = format!("{day}-{}", time.replace(':', ""));
    if labels.is_empty() {
        return id;
    }
    let mut last = '_';
    id.push(last);
    for c in labels.chars() {
        if c.is_ascii_alphanumeric() {
            last = c;
        } else if last == '_' {
            continue;
        } else {
            last = '_';
        }
        id.push(last);
    }
    if last == '_' {
        id.pop();
    }
    id.truncate(96);
    id
}

/// The request body as Go marshals `[]byte`: base64, or null.
fn req_payload(a: &LoadArgs) -> Option<String> {
    use base64::Engine as _;
    let p = a
        .payload
        .as_deref()
        .filter(|p| !p.is_empty() && a.payload_size == 0)?;
    Some(base64::engine::general_purpose::STANDARD.encode(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// periodic_test.go's `TestID` cases (its start time in UTC).
    #[test]
    fn run_ids_like_fortio() {
        let t = std::time::UNIX_EPOCH + Duration::from_secs(978_404_645);
        let digits = "1234567890".repeat(9);
        for (labels, suffix) in [
            ("", ""),
            ("abcDEF123", "_abcDEF123"),
            ("A!@#$%^&*()-+=/'B", "_A_B"),
            ("A  ", "_A"),
            (" ", ""),
            (digits.as_str(), &format!("_{}", &digits[..78])),
        ] {
            assert_eq!(run_id(t, labels), format!("2001-01-02-030405{suffix}"));
        }
    }
}
