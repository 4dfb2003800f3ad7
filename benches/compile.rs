//! Compile benchmark: a generated mesh of N services, each with a
//! VirtualService and a DestinationRule, compiled for one sidecar.
//! Reports wall time (best of runs) and peak RSS, and ratios against the
//! 1,000-service baseline measured in the same run.
//!
//! Run: `cargo bench -p meshsim-benches` (release profile).

use std::time::{Duration, Instant};

use meshsim_compiler::{compile_proxy, find_proxy, Settings, World};

fn mesh_yaml(n: usize) -> String {
    let mut s = String::with_capacity(n * 900);
    s.push_str("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: client}\nspec:\n  selector: {matchLabels: {app: client}}\n  template:\n    metadata: {labels: {app: client}}\n    spec: {containers: [{name: c, image: curl}]}\n");
    for i in 0..n {
        let ns = format!("ns{}", i % 50);
        s.push_str(&format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: svc{i}, namespace: {ns}}}\nspec:\n  ports: [{{port: {port}, name: http}}]\n  selector: {{app: svc{i}}}\n\
---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: svc{i}, namespace: {ns}}}\nspec:\n  hosts: [svc{i}]\n  http:\n  - match:\n    - headers: {{end-user: {{exact: jason}}}}\n    route:\n    - destination: {{host: svc{i}, subset: v2}}\n  - route:\n    - destination: {{host: svc{i}, subset: v1}}\n      weight: 90\n    - destination: {{host: svc{i}, subset: v2}}\n      weight: 10\n\
---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: svc{i}, namespace: {ns}}}\nspec:\n  host: svc{i}\n  trafficPolicy:\n    connectionPool: {{tcp: {{maxConnections: 100}}}}\n  subsets:\n  - {{name: v1, labels: {{version: v1}}}}\n  - {{name: v2, labels: {{version: v2}}}}\n",
            port = 8000 + (i % 20)
        ));
    }
    s
}

/// Peak resident set size of this process (Linux `VmHWM`), in KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

struct Sample {
    services: usize,
    parse: Duration,
    build: Duration,
    compile: Duration,
    rss_kib: u64,
    listeners: usize,
    clusters: usize,
}

fn measure(n: usize) -> Sample {
    let yaml = mesh_yaml(n);
    let t = Instant::now();
    let loaded = meshsim_model::parse_str("bench.yaml", &yaml);
    let parse = t.elapsed();
    assert!(!loaded.has_errors());
    let t = Instant::now();
    let (world, _) = World::build(&loaded.resources, Settings::default());
    let build = t.elapsed();
    let pod = find_proxy(&world, "deploy/client").expect("client");
    let mut best = Duration::MAX;
    let mut shape = (0, 0);
    for _ in 0..3 {
        let t = Instant::now();
        let tables = compile_proxy(&world, pod);
        best = best.min(t.elapsed());
        shape = (tables.listeners.len(), tables.clusters.len());
    }
    Sample {
        services: n,
        parse,
        build,
        compile: best,
        rss_kib: peak_rss_kib(),
        listeners: shape.0,
        clusters: shape.1,
    }
}

fn main() {
    let samples: Vec<Sample> = [1_000, 10_000].into_iter().map(measure).collect();
    let base = &samples[0];
    println!(
        "{:>8}  {:>10}  {:>10}  {:>12}  {:>13}  {:>9}  {:>8}  {:>14}",
        "services",
        "parse",
        "world",
        "compile(1px)",
        "compile ratio",
        "listeners",
        "clusters",
        "peak RSS (MiB)"
    );
    for s in &samples {
        println!(
            "{:>8}  {:>8.1}ms  {:>8.1}ms  {:>10.1}ms  {:>12.2}x  {:>9}  {:>8}  {:>14.1}",
            s.services,
            s.parse.as_secs_f64() * 1e3,
            s.build.as_secs_f64() * 1e3,
            s.compile.as_secs_f64() * 1e3,
            s.compile.as_secs_f64() / base.compile.as_secs_f64(),
            s.listeners,
            s.clusters,
            s.rss_kib as f64 / 1024.0
        );
    }
}
