//! The mesh owns what it starts: a restart closes the sockets of what it
//! replaced, and a shut-down mesh leaves no listening socket behind. The
//! count is of this process's own listening TCP sockets (`/proc/self/fd`
//! against `/proc/net/tcp`), so this test is alone in its binary.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use meshsim_compiler::{NamespaceFlag, Settings, World};
use meshsim_mesh::{Change, Mesh, MeshOptions};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Inodes of sockets in LISTEN state (`st` 0A) on this machine.
fn listening_inodes() -> HashSet<u64> {
    let mut out = HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.get(3) == Some(&"0A") {
                if let Some(inode) = cols.get(9).and_then(|i| i.parse().ok()) {
                    out.insert(inode);
                }
            }
        }
    }
    out
}

/// How many listening TCP sockets this process holds.
fn my_listeners() -> usize {
    let listening = listening_inodes();
    std::fs::read_dir("/proc/self/fd")
        .map(|rd| {
            rd.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter_map(|l| {
                    let s = l.to_string_lossy().into_owned();
                    s.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
                })
                .filter(|inode: &u64| listening.contains(inode))
                .count()
        })
        .unwrap_or(0)
}

fn bookinfo() -> World {
    let (w, diags) = World::load(
        &[root().join("tests/fixtures/bookinfo")],
        Settings::default(),
        &NamespaceFlag::Unset,
    );
    assert!(!diags.has_errors(), "{}", diags.error_text());
    w
}

/// A change that restarts workloads: reviews-v1 gets another service
/// account (its proxy restarts with a new identity) and a `version` label
/// its app reports (its app restarts).
const RESTART_REVIEWS_V1: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: reviews-v1, labels: {app: reviews, version: v1}}
spec:
  replicas: 1
  selector: {matchLabels: {app: reviews, version: v1}}
  template:
    metadata: {labels: {app: reviews, version: v1-restarted}}
    spec:
      serviceAccountName: bookinfo-reviews-renamed
      containers:
      - name: reviews
        image: docker.io/istio/examples-bookinfo-reviews-v1:1.20.3
        ports: [{containerPort: 9080}]
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_and_shut_down_meshes_leave_no_listening_socket() {
    let before = my_listeners();
    let mesh = Mesh::start(bookinfo(), MeshOptions::default())
        .await
        .expect("mesh");
    let running = my_listeners();
    assert!(running > before + 10, "{before} before, {running} running");

    let change = meshsim_model::parse_str("restart.yaml", RESTART_REVIEWS_V1);
    let report = mesh
        .apply(vec![Change::Apply(change)])
        .await
        .expect("apply");
    assert!(
        report
            .restarts
            .restarted
            .iter()
            .any(|r| r.contains("reviews-v1-0")),
        "{:?}",
        report.restarts
    );
    // The replaced app and proxy closed theirs; the new ones bound as many.
    assert_eq!(my_listeners(), running, "after a restart");

    mesh.shutdown().await;
    assert_eq!(my_listeners(), before, "after shutdown");

    // Dropping a running mesh closes its sockets too (without awaiting).
    let dropped = Mesh::start(bookinfo(), MeshOptions::default())
        .await
        .expect("mesh");
    assert!(my_listeners() > before);
    drop(dropped);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while my_listeners() != before && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(my_listeners(), before, "after drop");
}
