//! Data-plane benchmark: HTTP/1.1 keep-alive requests from the sleep pod to
//! reviews through both sidecars (client outbound, server inbound with
//! auto mTLS), against the same requests sent straight to the reviews
//! application — the baseline, measured in the same run. Reports
//! throughput, latency percentiles (hdrhistogram) and the ratios.
//!
//! Run: `cargo bench -p meshsim-benches --bench dataplane`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use meshsim_compiler::{NamespaceFlag, Settings, World};
use meshsim_mesh::{Mesh, MeshOptions};

const REQUESTS: usize = 5_000;
const CONNECTIONS: usize = 4;

struct Result {
    rps: f64,
    p50_us: u64,
    p99_us: u64,
}

async fn drive(addr: SocketAddr, prefix: Option<Vec<u8>>) -> Result {
    let per_conn = REQUESTS / CONNECTIONS;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        let prefix = prefix.clone();
        tasks.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new(3).expect("histogram");
            let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
            stream.set_nodelay(true).expect("nodelay");
            if let Some(p) = prefix {
                use tokio::io::AsyncWriteExt;
                stream.write_all(&p).await.expect("prefix");
            }
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .expect("handshake");
            tokio::spawn(conn);
            for _ in 0..per_conn {
                let t = Instant::now();
                let req = http::Request::builder()
                    .uri("/")
                    .header("host", "reviews:9080")
                    .body(Empty::<Bytes>::new())
                    .expect("req");
                let resp = sender.send_request(req).await.expect("send");
                let _ = resp.into_body().collect().await.expect("body");
                let _ = hist.record(t.elapsed().as_micros() as u64);
            }
            hist
        }));
    }
    let mut all = Histogram::<u64>::new(3).expect("histogram");
    for t in tasks {
        all.add(t.await.expect("task")).expect("merge");
    }
    let secs = started.elapsed().as_secs_f64();
    Result {
        rps: (per_conn * CONNECTIONS) as f64 / secs,
        p50_us: all.value_at_quantile(0.5),
        p99_us: all.value_at_quantile(0.99),
    }
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let (world, _) = World::load(
        &[root.join("tests/fixtures/bookinfo")],
        Settings::default(),
        &NamespaceFlag::Unset,
    );
    let mut world = world;
    // Access logging off: measure the proxy path, not log formatting.
    world.mesh.access_log_file.clear();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let mesh = Mesh::start(world, MeshOptions::default()).await.expect("mesh");
        let world = mesh.world();
        let reviews = world.pod("reviews-v1-0", "default").expect("reviews");
        let app = mesh.net().pod(IpAddr::V4(reviews.ip)).and_then(|p| p.apps.get(&9080).copied()).expect("app socket");
        let sleep = world.pod("sleep-0", "default").expect("sleep");
        let capture = mesh.net().pod(IpAddr::V4(sleep.ip)).and_then(|p| p.capture).map(|(out, _)| out).expect("sleep capture");
        let vip: IpAddr = mesh.net().resolve("default", "reviews").expect("vip");
        let header = meshsim_proxy_header(SocketAddr::new(IpAddr::V4(sleep.ip), 45000), SocketAddr::new(vip, 9080));
        // Warm up both paths.
        let _ = drive(app, None).await;
        let _ = drive(capture, Some(header.clone())).await;
        let base = drive(app, None).await;
        let mesh_r = drive(capture, Some(header)).await;
        println!("{REQUESTS} HTTP/1.1 keep-alive requests over {CONNECTIONS} connections, 2 worker threads");
        println!("{:<36} {:>10} {:>10} {:>10}", "path", "req/s", "p50 (us)", "p99 (us)");
        println!("{:<36} {:>10.0} {:>10} {:>10}", "direct to the app (baseline)", base.rps, base.p50_us, base.p99_us);
        println!("{:<36} {:>10.0} {:>10} {:>10}", "sleep sidecar -> reviews sidecar", mesh_r.rps, mesh_r.p50_us, mesh_r.p99_us);
        println!("throughput ratio (mesh / baseline): {:.2}", mesh_r.rps / base.rps);
        println!("added p50: {} us, added p99: {} us", mesh_r.p50_us.saturating_sub(base.p50_us), mesh_r.p99_us.saturating_sub(base.p99_us));
        drop(mesh);
        tokio::time::sleep(Duration::from_millis(10)).await;
    });
}

fn meshsim_proxy_header(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    meshsim_proxy::listener::proxy_header(src, dst)
}
