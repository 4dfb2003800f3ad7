//! `meshsim load` as fortio users drive it: fortio's command line
//! (one-dash flags), its text report on stderr and its JSON result
//! (fortio.org/fortio `HTTPRunnerResults`), the per-call `-timeout`, and
//! ^C printing the partial result. Fixtures are written here with names,
//! namespaces and ports unlike the scenarios'.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A client `tester` and a server `ledger` (port 7070, two versions) in
/// namespace `accounts`; `delay` makes the server answer that much later.
fn mesh(dir: &Path, delay: Option<&str>) -> PathBuf {
    let annotations = delay
        .map(|d| format!("      annotations: {{meshsim.io/app-delay: {d}}}\n"))
        .unwrap_or_default();
    let server = |v: &str| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: ledger-{v}, namespace: accounts}}\nspec:\n  selector: {{matchLabels: {{app: ledger, version: {v}}}}}\n  template:\n    metadata:\n      labels: {{app: ledger, version: {v}}}\n{annotations}    spec:\n      containers:\n      - name: ledger\n        image: example.com/ledger:1\n        ports: [{{containerPort: 7070}}]\n"
        )
    };
    let yaml = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: accounts, labels: {{istio-injection: enabled}}}}\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: ledger, namespace: accounts}}\nspec:\n  selector: {{app: ledger}}\n  ports: [{{name: http-api, port: 7070}}]\n---\n{}---\n{}---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: tester, namespace: accounts}}\nspec:\n  selector: {{matchLabels: {{app: tester}}}}\n  template:\n    metadata: {{labels: {{app: tester}}}}\n    spec:\n      containers: [{{name: tester, image: example.com/curl:1}}]\n",
        server("blue"),
        server("green")
    );
    let f = dir.join("accounts.yaml");
    std::fs::write(&f, yaml).expect("write fixture");
    f
}

fn load(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_meshsim"))
        .arg("load")
        .args(args)
        .current_dir(root())
        .output()
        .expect("run meshsim load");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("meshsim-load-")
        .tempdir()
        .expect("tmp")
}

/// fortio's command line (`-qps 100 -c 8 -t 10s -json -`, shorter here)
/// runs; stdout is fortio's JSON result with its keys and types, stderr
/// its report; the split between versions comes from the access logs.
#[test]
fn fortio_command_line_and_json_result() {
    let dir = tempdir();
    let f = mesh(dir.path(), None);
    let f = f.to_str().expect("path");
    let (code, out, err) = load(&[
        "-f",
        f,
        "--namespace",
        "accounts",
        "--from",
        "deploy/tester",
        "-qps",
        "40",
        "-c",
        "4",
        "-t",
        "1s",
        "-json",
        "-",
        "-p",
        "50,99",
        "http://ledger:7070/balance",
    ]);
    assert_eq!(code, 0, "{err}");
    let j: serde_json::Value = serde_json::from_str(&out).expect("stdout is the JSON result");
    for key in [
        "RunType",
        "Labels",
        "StartTime",
        "RequestedQPS",
        "RequestedDuration",
        "ActualQPS",
        "ActualDuration",
        "NumThreads",
        "Version",
        "DurationHistogram",
        "ErrorsDurationHistogram",
        "Exactly",
        "Jitter",
        "Uniform",
        "NoCatchUp",
        "RunID",
        "AccessLoggerInfo",
        "ID",
        "RetCodes",
        "IPCountMap",
        "URL",
        "NumConnections",
        "HTTPReqTimeOut",
        "Payload",
        "Sizes",
        "HeaderSizes",
        "Sockets",
        "SocketCount",
        "ConnectionStats",
        "AbortOn",
    ] {
        assert!(j.get(key).is_some(), "JSON result lacks {key}: {out}");
    }
    assert_eq!(j["RunType"], "HTTP");
    assert_eq!(j["RequestedQPS"], "40");
    assert_eq!(j["RequestedDuration"], "1s");
    assert_eq!(j["NumThreads"], 4);
    assert_eq!(
        j["HTTPReqTimeOut"], 3_000_000_000u64,
        "fortio's 3s default, in ns"
    );
    let h = &j["DurationHistogram"];
    assert_eq!(h["Count"], 40, "40 qps for 1s: {out}");
    assert_eq!(j["RetCodes"]["200"], 40);
    for k in [
        "Count",
        "Min",
        "Max",
        "Sum",
        "Avg",
        "StdDev",
        "Data",
        "Percentiles",
    ] {
        assert!(h.get(k).is_some(), "DurationHistogram lacks {k}");
    }
    let data = h["Data"].as_array().expect("Data");
    let counted: u64 = data
        .iter()
        .map(|b| b["Count"].as_u64().expect("Count"))
        .sum();
    assert_eq!(counted, 40);
    for b in data {
        for k in ["Start", "End", "Percent", "Count"] {
            assert!(b.get(k).is_some(), "bucket lacks {k}");
        }
    }
    let p: Vec<f64> = h["Percentiles"]
        .as_array()
        .expect("Percentiles")
        .iter()
        .map(|p| p["Percentile"].as_f64().expect("Percentile"))
        .collect();
    assert_eq!(p, vec![50.0, 99.0]);
    assert_eq!(j["Sockets"].as_array().map(Vec::len), Some(4));
    // fortio's text on stderr.
    for want in [
        "Starting at 40 qps with 4 thread(s) [gomax ",
        "] for 1s : 10 calls each (total 40)",
        "Ended after ",
        "Aggregated Function Time : count 40 avg ",
        "# range, mid point, percentile, count",
        "# target 50% ",
        "# target 99% ",
        "Error cases : no data",
        "Sockets used: 4 (for perfect keepalive, would be 4)",
        "Code 200 : 40 (100.0 %)",
        "Response Header Sizes : count 40 ",
        "All done 40 calls (plus 4 warmup) ",
        "Successfully wrote ",
    ] {
        assert!(err.contains(want), "stderr lacks {want:?}:\n{err}");
    }
    // Who answered: both versions, by workload, summing to the calls.
    let blue = err.contains("ledger-blue.accounts (version blue) : ");
    let green = err.contains("ledger-green.accounts (version green) : ");
    assert!(blue && green, "{err}");
    let dest = j["MeshsimDestinations"].as_object().expect("destinations");
    assert_eq!(
        dest.values().filter_map(|v| v.as_u64()).sum::<u64>(),
        40,
        "{out}"
    );
}

/// `-timeout` covers the whole call: a server answering after 2 s is a
/// socket error (-1) at 300 ms, as fortio counts it; the run still ends
/// with exit status 0 (fortio exits 0 whatever the codes).
#[test]
fn timeout_is_enforced_per_call() {
    let dir = tempdir();
    let f = mesh(dir.path(), Some("2s"));
    let f = f.to_str().expect("path");
    let t0 = Instant::now();
    let (code, out, err) = load(&[
        "-f",
        f,
        "--namespace=accounts",
        "--from",
        "deploy/tester",
        "-qps",
        "0",
        "-c",
        "2",
        "-n",
        "4",
        "-timeout",
        "300ms",
        "-json",
        "-",
        "http://ledger:7070/slow",
    ]);
    assert_eq!(code, 0, "{err}");
    let j: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(j["RetCodes"]["-1"], 4, "{err}");
    assert!(j["RetCodes"].get("200").is_none(), "{err}");
    assert_eq!(j["HTTPReqTimeOut"], 300_000_000u64);
    assert_eq!(j["ErrorsDurationHistogram"]["Count"], 4);
    assert!(err.contains("Code  -1 : 4 (100.0 %)"), "{err}");
    // Four calls on two connections never waited for the 2 s answers.
    assert!(t0.elapsed() < Duration::from_secs(60));
    assert!(
        j["DurationHistogram"]["Max"].as_f64().expect("Max") < 1.5,
        "{out}"
    );
}

/// `-n` is fortio's number of calls; a namespace there is an error that
/// says which flag to use.
#[test]
fn n_is_calls_and_the_namespace_is_long_only() {
    let dir = tempdir();
    let f = mesh(dir.path(), None);
    let (code, _, err) = load(&[
        "-f",
        f.to_str().expect("path"),
        "-n",
        "accounts",
        "http://ledger:7070/",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("-n is the number of calls (as fortio's -n); for the namespace \"accounts\" use --namespace accounts"),
        "{err}"
    );
}

/// ^C during `-t 0` (until interrupted) prints fortio's result for the
/// calls made so far, and exits 0.
#[test]
fn ctrl_c_prints_the_partial_result() {
    let dir = tempdir();
    let f = mesh(dir.path(), None);
    let mut child = Command::new(env!("CARGO_BIN_EXE_meshsim"))
        .args([
            "load",
            "-f",
            f.to_str().expect("path"),
            "--namespace",
            "accounts",
        ])
        .args([
            "--from",
            "deploy/tester",
            "-qps",
            "50",
            "-c",
            "2",
            "-t",
            "0",
        ])
        .args(["-json", "-", "http://ledger:7070/"])
        .current_dir(root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start load");
    let mut stderr = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    // Running: it says so before the first paced call.
    std::thread::sleep(Duration::from_millis(2500));
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(killed.success());
    let mut out = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("stdout");
    let status = child.wait().expect("wait");
    let err = reader.join().expect("stderr");
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(
        err.contains("Starting at 50 qps with 2 thread(s) [gomax ")
            && err.contains("until interrupted"),
        "{err}"
    );
    assert!(err.contains("All done "), "{err}");
    let j: serde_json::Value = serde_json::from_str(&out).expect("JSON after ^C");
    let n = j["DurationHistogram"]["Count"].as_u64().expect("Count");
    assert!(n > 0, "{out}");
    assert_eq!(j["RetCodes"]["200"].as_u64(), Some(n));
}

/// A sidecar run as its own process with 256 descriptors, driven past
/// them by 300 connections: Envoy's critical assert line, the abort, and
/// what the clients saw — 503s from the caller's sidecar with the flags
/// it logged. The same load with room to spare completes (the fd
/// accounting: a downstream and an upstream socket per connection).
#[test]
fn sidecar_process_past_its_fd_limit_aborts_like_envoy() {
    let dir = tempdir();
    let f = mesh(dir.path(), None);
    let f = f.to_str().expect("path");
    let run = |limit: &str| {
        load(&[
            "-f",
            f,
            "--namespace",
            "accounts",
            "--from",
            "deploy/tester",
            "--sidecar-process",
            "deploy/ledger-blue",
            "--fd-limit",
            limit,
            "-qps",
            "0",
            "-c",
            "300",
            "-n",
            "900",
            "-timeout",
            "10s",
            "-json",
            "-",
            "http://ledger:7070/",
        ])
    };
    let (code, out, err) = run("256");
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("[pod/ledger-blue-0/istio-proxy] ")
            && err.contains("[critical][assert] assert failure: fd_ != -1: external/envoy/source/common/network/connection_impl.cc:58"),
        "{err}"
    );
    assert!(
        err.contains("meshsim: the istio-proxy process of pod ledger-blue-0 exited (killed by signal 6 (SIGABRT)"),
        "{err}"
    );
    let j: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let failed =
        j["RetCodes"]["503"].as_u64().unwrap_or(0) + j["RetCodes"]["-1"].as_u64().unwrap_or(0);
    assert!(failed > 0, "{out}");
    let flags = j["MeshsimResponseFlags"].as_object().expect("flags");
    assert!(
        ["UF", "UC", "URX"].iter().any(|f| flags.contains_key(*f)),
        "the caller's sidecar logged why: {flags:?}"
    );
    let (code, out, err) = run("4096");
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("assert failure"), "{err}");
    let j: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(j["RetCodes"]["200"], 900, "{err}");
    let dest = j["MeshsimDestinations"].as_object().expect("destinations");
    assert!(
        dest.keys().any(|k| k.starts_with("ledger-blue.accounts")),
        "{dest:?}"
    );
}

/// `meshsim proxy` (one sidecar as a process) takes plain connections on
/// a port per application port — as if sent to the pod's IP there — and
/// prints its access log on stdout.
#[test]
fn meshsim_proxy_takes_plain_connections_and_prints_its_access_log() {
    use std::io::{BufRead, BufReader, Write};
    let dir = tempdir();
    let f = mesh(dir.path(), None);
    // The application: answers every request 200 "ok".
    let app = std::net::TcpListener::bind("127.0.0.1:0").expect("bind app");
    let app_addr = app.local_addr().expect("addr");
    std::thread::spawn(move || {
        for s in app.incoming().flatten() {
            std::thread::spawn(move || {
                let mut r = BufReader::new(s.try_clone().expect("clone"));
                let mut w = s;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    if line == "\r\n" {
                        let _ = w.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
                    }
                }
            });
        }
    });
    let mut child = Command::new(env!("CARGO_BIN_EXE_meshsim"))
        .args(["proxy", "-f", f.to_str().expect("path"), "-n", "accounts"])
        .args(["--proxy", "deploy/ledger-green", "--fd-limit", "512"])
        .args(["--app", &format!("7070={app_addr}")])
        .current_dir(root())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start meshsim proxy");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut ready = String::new();
    out.read_line(&mut ready).expect("READY line");
    let plain = ready
        .split_whitespace()
        .find_map(|w| w.strip_prefix("plain=7070@"))
        .unwrap_or_else(|| panic!("no plain port for 7070: {ready}"))
        .to_string();
    let mut s = std::net::TcpStream::connect(&plain).expect("connect plain port");
    s.write_all(
        b"GET /entries HTTP/1.1\r\nhost: ledger.accounts:7070\r\nuser-agent: test/1\r\n\r\n",
    )
    .expect("send");
    let mut status = String::new();
    BufReader::new(s.try_clone().expect("clone"))
        .read_line(&mut status)
        .expect("status line");
    assert_eq!(status.trim_end(), "HTTP/1.1 200 OK");
    let mut line = String::new();
    out.read_line(&mut line).expect("access log line");
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        line.contains("\"GET /entries HTTP/1.1\" 200 - via_upstream")
            && line.contains("inbound|7070||")
            && line.contains("\"ledger.accounts:7070\""),
        "{line}"
    );
}
