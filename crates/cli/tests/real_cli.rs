//! The `meshsim` binary with real programs around it. A test whose program
//! is not installed shows as ignored (fails under `CI=true`).

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

#[path = "../../mesh/tests/common/programs.rs"]
mod programs;
use programs::{run_all, Real};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `meshsim sandbox` keeps the mesh up for real clients: the real curl,
/// entering "inside" the sleep pod through a printed port, is routed by the
/// reviews VirtualService. The CA it wrote is in a fresh private (0700)
/// directory of `$TMPDIR` that is gone once Ctrl-C (SIGINT) ends the
/// sandbox; symlinks planted where a predictable name
/// (`meshsim-sandbox-<pid>`) would have been are not followed.
async fn sandbox_serves_real_curl_and_cleans_up_on_ctrl_c() {
    let tmp = tempfile::tempdir().expect("TMPDIR for the sandbox");
    let victim = tempfile::tempdir().expect("where planted links point");
    let next_pid = std::process::id();
    for pid in next_pid..next_pid + 200 {
        let _ = std::os::unix::fs::symlink(
            victim.path(),
            tmp.path().join(format!("meshsim-sandbox-{pid}")),
        );
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_meshsim"))
        .args(["sandbox", "-f", "tests/fixtures/bookinfo", "--for", "60s"])
        .env("TMPDIR", tmp.path())
        .current_dir(root())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("sandbox");
    let stdout = child.stdout.take().expect("stdout");
    let (mut port, mut ca) = (None, None);
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref().map_while(Result::ok) {
        if let Some(p) = line.split("chain to: ").nth(1) {
            ca = Some(PathBuf::from(p.trim()));
        }
        if let Some(rest) = line
            .trim()
            .strip_prefix("reviews.default.svc.cluster.local:9080")
        {
            port = rest
                .split("-> ")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .map(String::from);
            break;
        }
    }
    // Keep reading what the sandbox prints, as a terminal would.
    let drain = std::thread::spawn(move || lines.map_while(Result::ok).count());
    let port = port.expect("sandbox printed an entry port for reviews");
    let ca = ca.expect("sandbox printed the CA path");
    let dir = ca.parent().expect("ca dir").to_path_buf();
    let meta = std::fs::symlink_metadata(&dir).expect("dir");
    assert!(
        meta.is_dir(),
        "a real directory, not a link: {}",
        dir.display()
    );
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o700,
        "{}",
        dir.display()
    );
    assert_eq!(dir.parent(), Some(tmp.path()), "{}", dir.display());
    assert_eq!(
        std::fs::read_dir(victim.path()).expect("victim").count(),
        0,
        "nothing written through a planted link"
    );
    let out = Command::new("curl")
        .args([
            "-s",
            "-H",
            "end-user: jason",
            "--connect-to",
            &format!("reviews:9080:{port}"),
            "http://reviews:9080/",
        ])
        .output()
        .expect("curl");
    let body = String::from_utf8_lossy(&out.stdout).into_owned();
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let status = child.wait().expect("wait");
    let _ = drain.join();
    assert!(
        body.starts_with("Hello version: v2, instance: reviews-v2-0"),
        "{body}"
    );
    assert!(status.success(), "sandbox ended by Ctrl-C: {status}");
    assert!(!dir.exists(), "{} still exists", dir.display());
}

/// `curl -x` through a client pod's proxy port acts from inside the pod:
/// a Service, an internet host over HTTPS (CONNECT, per the outbound
/// policy) and a pod IP, each logged by that pod's own sidecar.
async fn curl_x_acts_from_inside_the_pod() {
    let tmp = tempfile::tempdir().expect("tmp");
    let log = std::fs::File::create(tmp.path().join("stderr")).expect("log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_meshsim"))
        .args(["sandbox", "-f", "tests/fixtures/bookinfo", "--for", "60s"])
        .env("XDG_RUNTIME_DIR", tmp.path())
        .current_dir(root())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("sandbox");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let proxy = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| {
            l.split("curl -x ")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .map(String::from)
        })
        .expect("a proxy port for the sleep pod");
    let drain = std::thread::spawn(move || lines.map_while(Result::ok).count());
    let curl = |args: &[&str]| {
        let out = Command::new("curl")
            .args(["-s", "-x", &proxy])
            .args(args)
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let service = curl(&["-H", "end-user: jason", "http://reviews:9080/"]);
    assert!(service.starts_with("Hello version: v2"), "{service}");
    let external = curl(&["-k", "https://www.example.com/"]);
    assert!(
        external.starts_with("Hello from external host www.example.com"),
        "{external}"
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    let logged = std::fs::read_to_string(tmp.path().join("stderr")).expect("logs");
    let pod_ip = logged
        .lines()
        .find(|l| l.starts_with("[pod/sleep-0/istio-proxy]") && l.contains("\"reviews:9080\""))
        .and_then(|l| l.split('"').nth(13).map(String::from))
        .expect("the reviews line names the pod it reached");
    let by_ip = curl(&[&format!("http://{pod_ip}/")]);
    assert!(
        by_ip.starts_with("Hello version: v2"),
        "{by_ip} from {pod_ip}"
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    let logged = std::fs::read_to_string(tmp.path().join("stderr")).expect("logs");
    let sleep: Vec<&str> = logged
        .lines()
        .filter(|l| l.starts_with("[pod/sleep-0/istio-proxy]"))
        .collect();
    assert!(
        sleep.iter().any(|l| l.contains("outbound|9080|v2|reviews")),
        "{logged}"
    );
    assert!(
        sleep
            .iter()
            .any(|l| l.contains(":443\" PassthroughCluster")),
        "{logged}"
    );
    assert!(
        sleep
            .iter()
            .any(|l| l.contains(&format!("\"{pod_ip}\" \"{pod_ip}\" PassthroughCluster"))),
        "{logged}"
    );
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let _ = drain.join();
}

fn main() {
    run_all(vec![
        Real {
            name: "sandbox_serves_real_curl_and_cleans_up_on_ctrl_c",
            needs: &["curl", "kill"],
            run: || Box::pin(sandbox_serves_real_curl_and_cleans_up_on_ctrl_c()),
        },
        Real {
            name: "curl_x_acts_from_inside_the_pod",
            needs: &["curl", "kill"],
            run: || Box::pin(curl_x_acts_from_inside_the_pod()),
        },
    ])
}
