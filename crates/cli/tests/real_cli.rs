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

/// The proxy port in the sandbox's `curl -x http://ADDR ...` line.
fn proxy_port(line: &str) -> Option<String> {
    line.split("curl -x ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .map(String::from)
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
        .find_map(|l| proxy_port(&l))
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

/// A running Bookinfo sandbox and what it printed.
struct Sandbox {
    child: std::process::Child,
    /// The gateway's local address for outside port 80.
    gw: String,
    /// The sleep pod's proxy (`curl -x`).
    proxy: String,
    /// The live traffic page.
    page: String,
}

/// Starts a Bookinfo sandbox (its own runtime dir).
fn bookinfo_sandbox(runtime: &std::path::Path) -> Sandbox {
    let mut child = Command::new(env!("CARGO_BIN_EXE_meshsim"))
        .args(["sandbox", "-f", "tests/fixtures/bookinfo", "--for", "300s"])
        .env("XDG_RUNTIME_DIR", runtime)
        .current_dir(root())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("sandbox");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let gw = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| {
            let t = l.trim_start();
            t.strip_prefix("80 -> ")
                .and_then(|r| r.split_whitespace().next())
                .map(String::from)
        })
        .expect("the gateway's port 80");
    let proxy = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| proxy_port(&l))
        .expect("the sleep pod's proxy port");
    let page = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| {
            l.strip_prefix("Live traffic page")
                .and_then(|r| r.split_whitespace().last())
                .map(String::from)
        })
        .expect("the traffic page's address");
    std::thread::spawn(move || lines.map_while(Result::ok).count());
    Sandbox {
        child,
        gw,
        proxy,
        page,
    }
}

/// `meshsim apply -f -` with `yaml`, as istio.io's tasks run kubectl.
fn apply(runtime: &std::path::Path, yaml: &str) {
    use std::io::Write;
    let mut c = Command::new(env!("CARGO_BIN_EXE_meshsim"))
        .args(["apply", "-f", "-"])
        .env("XDG_RUNTIME_DIR", runtime)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("apply");
    c.stdin
        .take()
        .expect("stdin")
        .write_all(yaml.as_bytes())
        .expect("yaml");
    let out = c.wait_with_output().expect("apply");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Headless Chromium signs in as `user` on productpage (Bookinfo's login
/// form) and returns the page's DOM; with `shot`, also a screenshot.
fn chromium_as(
    user: &str,
    gw: &str,
    dir: &std::path::Path,
    shot: Option<&std::path::Path>,
) -> String {
    let page = dir.join(format!("login-{user}.html"));
    std::fs::write(
        &page,
        format!("<html><body><form method=\"post\" action=\"http://{gw}/login\"><input name=\"username\" value=\"{user}\"><input name=\"passwd\" value=\"\"></form><script>document.forms[0].submit()</script></body></html>"),
    )
    .expect("login page");
    let url = format!("file://{}", page.display());
    let run = |extra: &[String], profile: &str| {
        Command::new("chromium")
            .env("HOME", dir)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--window-size=900,700",
                "--virtual-time-budget=10000",
                &format!("--user-data-dir={}", dir.join(profile).display()),
            ])
            .args(extra)
            .arg(&url)
            .output()
            .expect("chromium")
    };
    if let Some(p) = shot {
        run(&[format!("--screenshot={}", p.display())], "shot");
    }
    String::from_utf8_lossy(&run(&["--dump-dom".to_string()], "dom").stdout).into_owned()
}

/// istio.io's Bookinfo traffic-management tasks in one running sandbox,
/// each change applied with `meshsim apply -f - <<EOF`: request routing
/// (jason sees v2's black stars, in a real browser), traffic shifting
/// (v1 and v3's red stars), fault injection (the documented bug: a 7 s
/// ratings delay for jason breaks productpage's own 3 s × 2 reviews
/// call), request timeouts (a 0.5 s reviews timeout) and circuit
/// breaking (httpbin and its DestinationRule applied into the mesh).
async fn bookinfo_tasks_in_a_running_sandbox() {
    let tmp = tempfile::tempdir().expect("tmp");
    let Sandbox {
        mut child,
        gw,
        proxy,
        ..
    } = bookinfo_sandbox(tmp.path());
    let page = |cookie: Option<&str>| {
        let mut c = Command::new("curl");
        c.args(["-s", "-w", "\ntime=%{time_total}"]);
        if let Some(k) = cookie {
            c.args(["-H", &format!("Cookie: session={k}")]);
        }
        let out = c
            .arg(format!("http://{gw}/productpage"))
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // Request routing: the fixture's reviews-test-v2 (jason → v2, else v1).
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("bookinfo-jason.png");
    let dom = chromium_as("jason", &gw, tmp.path(), Some(&shot));
    assert!(dom.contains("<p id=\"user\">jason"), "{dom}");
    assert!(dom.contains("data-color=\"black\""), "{dom}");
    assert!(dom.contains("reviews-v2-0"), "{dom}");
    assert!(
        std::fs::metadata(&shot).is_ok_and(|m| m.len() > 1000),
        "screenshot"
    );
    let anon = page(None);
    assert!(
        anon.contains("reviews-v1-0") && !anon.contains("data-color"),
        "{anon}"
    );

    // Traffic shifting: 50/50 v1/v3.
    apply(tmp.path(), "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: reviews\nspec:\n  hosts:\n  - reviews\n  http:\n  - route:\n    - destination:\n        host: reviews\n        subset: v1\n      weight: 50\n    - destination:\n        host: reviews\n        subset: v3\n      weight: 50\n");
    let served: std::collections::BTreeSet<bool> = (0..16)
        .map(|_| page(None).contains("data-color=\"red\""))
        .collect();
    assert_eq!(served.len(), 2, "both v1 and v3 (red stars) answer");
    // v3 only: the browser shows red stars.
    apply(tmp.path(), "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: reviews\nspec:\n  hosts: [reviews]\n  http:\n  - route: [{destination: {host: reviews, subset: v3}}]\n");
    let v3 = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("bookinfo-v3.png");
    let dom = chromium_as("jason", &gw, tmp.path(), Some(&v3));
    assert!(
        dom.contains("data-color=\"red\"") && dom.contains("reviews-v3-0"),
        "{dom}"
    );

    // Fault injection: jason to v2, ratings delayed 7 s for jason.
    apply(tmp.path(), "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: reviews\nspec:\n  hosts: [reviews]\n  http:\n  - match: [{headers: {end-user: {exact: jason}}}]\n    route: [{destination: {host: reviews, subset: v2}}]\n  - route: [{destination: {host: reviews, subset: v1}}]\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: ratings\nspec:\n  hosts:\n  - ratings\n  http:\n  - match:\n    - headers:\n        end-user:\n          exact: jason\n    fault:\n      delay:\n        percentage:\n          value: 100.0\n        fixedDelay: 7s\n    route:\n    - destination:\n        host: ratings\n        subset: v1\n  - route:\n    - destination:\n        host: ratings\n        subset: v1\n");
    let broken = page(Some("jason"));
    assert!(
        broken.contains("Sorry, product reviews are currently unavailable for this book."),
        "{broken}"
    );
    let secs: f64 = broken
        .rsplit("time=")
        .next()
        .and_then(|t| t.trim().parse().ok())
        .expect("time");
    assert!((5.5..7.0).contains(&secs), "two 3 s tries: {secs}");

    // Request timeouts: ratings delayed 2 s, reviews timeout 0.5 s.
    apply(tmp.path(), "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: ratings\nspec:\n  hosts: [ratings]\n  http:\n  - fault: {delay: {percentage: {value: 100}, fixedDelay: 2s}}\n    route: [{destination: {host: ratings, subset: v1}}]\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: reviews\nspec:\n  hosts: [reviews]\n  http:\n  - route: [{destination: {host: reviews, subset: v2}}]\n    timeout: 0.5s\n");
    let timed_out = page(None);
    assert!(
        timed_out.contains("Sorry, product reviews are currently unavailable for this book."),
        "{timed_out}"
    );

    // Circuit breaking (the task's httpbin and DestinationRule, deployed
    // into the running mesh), driven from inside the sleep pod through its
    // proxy port by parallel curls: some calls overflow.
    apply(tmp.path(), "apiVersion: v1\nkind: Service\nmetadata: {name: httpbin, labels: {app: httpbin}}\nspec:\n  ports: [{name: http, port: 8000, targetPort: 8080}]\n  selector: {app: httpbin}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: httpbin}\nspec:\n  selector: {matchLabels: {app: httpbin, version: v1}}\n  template:\n    metadata: {labels: {app: httpbin, version: v1}}\n    spec: {containers: [{name: httpbin, image: docker.io/kong/httpbin, ports: [{containerPort: 8080}]}]}\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: httpbin}\nspec:\n  host: httpbin\n  trafficPolicy:\n    connectionPool:\n      tcp: {maxConnections: 1}\n      http: {http1MaxPendingRequests: 1, maxRequestsPerConnection: 1}\n    outlierDetection: {consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 3m, maxEjectionPercent: 100}\n");
    let out = Command::new("curl")
        .args([
            "-s",
            "-x",
            &proxy,
            "--parallel",
            "--parallel-immediate",
            "--parallel-max",
            "10",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}\n",
            "http://httpbin:8000/delay/0.2?[1-20]",
        ])
        .output()
        .expect("curl");
    let codes = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(codes.lines().any(|c| c == "200"), "{codes}");
    assert!(codes.lines().any(|c| c == "503"), "{codes}");
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

/// Headless Chromium's DOM of `url` with every host name but loopback
/// unresolvable (the page must need nothing from the network). `settle`
/// lets the page's own requests finish (virtual time), which only a page
/// without a live event stream allows.
fn chromium_dom(url: &str, dir: &std::path::Path, profile: &str, settle: bool) -> String {
    chromium(url, dir, profile, settle, "--dump-dom")
}

/// Headless Chromium on `url` (as [`chromium_dom`]) with `output`
/// (`--dump-dom`, `--screenshot=FILE`); its stdout.
fn chromium(url: &str, dir: &std::path::Path, profile: &str, settle: bool, output: &str) -> String {
    let wait = if settle {
        "--virtual-time-budget=5000"
    } else {
        "--timeout=3000"
    };
    let out = Command::new("chromium")
        .env("HOME", dir)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--window-size=1400,1000",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            wait,
            &format!("--user-data-dir={}", dir.join(profile).display()),
            output,
            url,
        ])
        .output()
        .expect("chromium");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The side panel the traffic page opens for `#hash`, once its request
/// is answered (a still page: `?live=0`).
fn panel(page: &str, hash: &str, dir: &std::path::Path) -> String {
    let profile = hash.split('=').next().unwrap_or("panel");
    let dom = chromium_dom(&format!("{page}?live=0#{hash}"), dir, profile, true);
    element(&dom, "<aside id=\"side\"", "</aside>")
        .unwrap_or_else(|| panic!("the panel in {dom}"))
        .to_string()
}

/// The text of the first element of `dom` that opens with `open` (up to
/// its matching `close` tag name, not nested).
fn element<'a>(dom: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = dom.find(open)?;
    let rest = &dom[start..];
    let end = rest.find(close)?;
    Some(&rest[..end])
}

/// The sandbox's live traffic page in a real browser (issue 14): Bookinfo
/// with reviews limited to one connection and one pending request and
/// split 50/50 between v1 and v3; a burst of 60 productpage calls, 30 at
/// a time, overflows productpage's pool to reviews (503 UO, which
/// productpage shows as "reviews unavailable"), then 40 calls one by one
/// show the split. Headless Chromium, with no name resolving but
/// loopback, finds in the DOM every Bookinfo workload grouped under its
/// service, the edges with their rates, the UO flag on productpage →
/// reviews, mTLS on the meshed hops, and the observed split next to the
/// weights; a node panel shows the proxy's tables and its log tail with
/// the flag marked; an edge panel shows the failed requests and `meshsim
/// explain`'s path. The event stream pushes fresh graphs. A screenshot
/// is kept (`target/tmp/traffic-page.png`; the README's copy is one).
async fn traffic_page_in_a_real_browser() {
    let tmp = tempfile::tempdir().expect("tmp");
    let Sandbox {
        mut child,
        gw,
        page,
        ..
    } = bookinfo_sandbox(tmp.path());
    apply(tmp.path(), "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews}\nspec:\n  host: reviews\n  trafficPolicy:\n    connectionPool:\n      tcp: {maxConnections: 1}\n      http: {http1MaxPendingRequests: 1, maxRequestsPerConnection: 1}\n  subsets:\n  - {name: v1, labels: {version: v1}}\n  - {name: v2, labels: {version: v2}}\n  - {name: v3, labels: {version: v3}}\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews}\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - {destination: {host: reviews, subset: v1}, weight: 50}\n    - {destination: {host: reviews, subset: v3}, weight: 50}\n");
    let burst = Command::new("curl")
        .args([
            "-s",
            "--parallel",
            "--parallel-immediate",
            "--parallel-max",
            "30",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}\n",
            &format!("http://{gw}/productpage?[1-60]"),
        ])
        .output()
        .expect("curl");
    let codes = String::from_utf8_lossy(&burst.stdout).into_owned();
    assert_eq!(codes.lines().filter(|c| *c == "200").count(), 60, "{codes}");
    // A node's panel (before newer lines push the burst out of its
    // tail): its proxy's tables, sync state, log tail with the flags
    // marked.
    let side = panel(&page, "node=productpage-v1-0.default", tmp.path());
    assert!(side.contains("productpage-v1-0.default"), "{side}");
    assert!(side.contains("sync: SYNCED"), "{side}");
    assert!(side.contains("<mark class=\"flag\">UO</mark>"), "{side}");
    assert!(
        side.contains("outbound|9080|v3|reviews.default.svc.cluster.local"),
        "{side}"
    );
    for table in ["listeners", "routes", "clusters"] {
        assert!(side.contains(&format!("<h3>{table}</h3><pre>")), "{side}");
    }
    for _ in 0..40 {
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/null", &format!("http://{gw}/productpage")])
            .status()
            .expect("curl");
        assert!(out.success());
    }

    let dom = chromium_dom(&page, tmp.path(), "live", false);
    // Cytoscape drew the graph (its canvases), from the binary alone.
    let graph = element(&dom, "<div id=\"graph\"", "</main>").expect("#graph");
    assert!(graph.contains("<canvas"), "{graph}");
    // Nodes: each workload under its service; the gateway and outside.
    for (id, kind) in [
        ("wl:default/productpage-v1", "workload"),
        ("wl:default/reviews-v1", "workload"),
        ("wl:default/reviews-v2", "workload"),
        ("wl:default/reviews-v3", "workload"),
        ("wl:default/ratings-v1", "workload"),
        ("wl:default/details-v1", "workload"),
        ("svc:default/reviews", "service"),
        ("gw:istio-system/istio-ingressgateway", "gateway"),
        ("outside", "outside"),
    ] {
        assert!(
            dom.contains(&format!("data-node=\"{id}\" data-kind=\"{kind}\"")),
            "{id} ({kind}) in {dom}"
        );
    }
    let row = |id: &str| {
        element(&dom, &format!("<tr data-edge=\"{id}\""), "</tr>")
            .unwrap_or_else(|| panic!("edge {id} in {dom}"))
            .to_string()
    };
    let rate = |row: &str| -> f64 {
        element(row, "<td class=\"rps\">", "</td>")
            .and_then(|t| t.rsplit('>').next())
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("a rate in {row}"))
    };
    // The overflow: productpage's sidecar answered 503 UO for reviews.
    let uo = row("wl:default/productpage-v1-&gt;svc:default/reviews");
    assert!(uo.contains("class=\"err\""), "{uo}");
    assert!(uo.contains("503: 100%"), "{uo}");
    assert!(uo.contains("<span class=\"flag flag-UO\">UO "), "{uo}");
    assert!(rate(&uo) > 0.0, "{uo}");
    // The meshed hops: rates, 200s, mTLS.
    for id in [
        "outside-&gt;gw:istio-system/istio-ingressgateway",
        "gw:istio-system/istio-ingressgateway-&gt;wl:default/productpage-v1",
        "wl:default/productpage-v1-&gt;wl:default/details-v1",
        "wl:default/productpage-v1-&gt;wl:default/reviews-v1",
        "wl:default/productpage-v1-&gt;wl:default/reviews-v3",
        "wl:default/reviews-v3-&gt;wl:default/ratings-v1",
    ] {
        let r = row(id);
        assert!(rate(&r) > 0.0, "{r}");
        assert!(r.contains("<td class=\"codes\">200: 100%</td>"), "{r}");
        let mtls = if id.starts_with("outside") {
            "no"
        } else {
            "mTLS"
        };
        assert!(
            r.contains(&format!("<td class=\"mtls\">{mtls}</td>")),
            "{r}"
        );
    }
    assert!(!dom.contains("reviews-v2-&gt;"), "v2 got no traffic");
    // The split: observed shares next to the 50/50 weights.
    let split = element(
        &dom,
        "<li data-split=\"wl:default/productpage-v1-&gt;svc:default/reviews\"",
        "</li>",
    )
    .unwrap_or_else(|| panic!("the reviews split in {dom}"));
    for v in ["v1", "v3"] {
        let share: u32 = split
            .split(&format!(" {v} "))
            .nth(1)
            .and_then(|t| t.split('%').next())
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("{v}'s share in {split}"));
        assert!((20..=80).contains(&share), "{split}");
        assert!(
            split.contains(&format!(" {v} {share}% (weight 50%)")),
            "{split}"
        );
    }
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("traffic-page.png");
    chromium(
        &page,
        tmp.path(),
        "shot",
        false,
        &format!("--screenshot={}", shot.display()),
    );
    assert!(
        std::fs::metadata(&shot).is_ok_and(|m| m.len() > 10_000),
        "screenshot"
    );
    eprintln!("traffic page screenshot: {}", shot.display());

    // An edge's panel: the last requests and explain's path.
    let side = panel(
        &page,
        "edge=wl:default/productpage-v1-%3Esvc:default/reviews",
        tmp.path(),
    );
    assert!(side.contains("503 GET reviews:9080/reviews/0"), "{side}");
    assert!(side.contains("meshsim explain"), "{side}");
    assert!(
        side.contains("trips its circuit breaker") && side.contains("503 UO"),
        "{side}"
    );

    // Live updates: the event stream pushes a graph every second.
    let sse = Command::new("curl")
        .args(["-sN", "--max-time", "2.5", &format!("{page}api/events")])
        .output()
        .expect("curl");
    let events = String::from_utf8_lossy(&sse.stdout).into_owned();
    let graphs: Vec<&str> = events
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert!(graphs.len() >= 2, "{events}");
    assert!(
        graphs.iter().all(|g| g.contains("\"edges\":[{")),
        "{events}"
    );

    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

fn main() {
    run_all(vec![
        Real {
            name: "sandbox_serves_real_curl_and_cleans_up_on_ctrl_c",
            needs: &["curl", "kill"],
            run: || Box::pin(sandbox_serves_real_curl_and_cleans_up_on_ctrl_c()),
        },
        Real {
            name: "bookinfo_tasks_in_a_running_sandbox",
            needs: &["curl", "chromium", "kill"],
            run: || Box::pin(bookinfo_tasks_in_a_running_sandbox()),
        },
        Real {
            name: "traffic_page_in_a_real_browser",
            needs: &["curl", "chromium", "kill"],
            run: || Box::pin(traffic_page_in_a_real_browser()),
        },
        Real {
            name: "curl_x_acts_from_inside_the_pod",
            needs: &["curl", "kill"],
            run: || Box::pin(curl_x_acts_from_inside_the_pod()),
        },
    ])
}
