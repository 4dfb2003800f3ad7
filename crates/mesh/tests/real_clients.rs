//! Real clients where users meet them: the `curl` binary (OpenSSL) against
//! meshsim's ports, the `nginx` binary running the page's configuration,
//! and headless Chromium reusing one HTTP/2 connection. A test whose
//! program is not installed shows as ignored in the summary (and fails
//! under `CI=true`; `.ci/run` installs them).

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use meshsim_compiler::World;
use meshsim_mesh::{Mesh, MeshOptions};

mod common;
use common::programs::{run_all, Real};
use common::world as world_with;

fn world(files: &[&str], version: &str) -> World {
    world_with(files, "", version)
}

/// A private directory for a test's files, removed when it ends.
fn tmpdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("meshsim-real-")
        .tempdir()
        .expect("tmp")
}

fn sleep_ip(mesh: &Mesh) -> IpAddr {
    IpAddr::V4(mesh.world().pod("sleep-0", "default").expect("sleep").ip)
}

/// Runs the real curl (blocking, off the runtime's threads).
async fn real_curl(args: Vec<String>) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || {
        let o = Command::new("curl").args(&args).output().expect("curl");
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    })
    .await
    .expect("join")
}

/// Real curl inside the sleep pod: `curl https://httpbin.org` entering the
/// mesh through sleep's sidecar; the CA file is meshsim's public test CA.
async fn curl_httpbin_from_sleep(mesh: &Mesh, dir: &Path) -> (i32, String, String) {
    let vip = mesh
        .net()
        .resolve("default", "httpbin.org")
        .expect("httpbin.org resolves");
    let port = mesh
        .expose(sleep_ip(mesh), SocketAddr::new(vip, 443))
        .await
        .expect("expose");
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, mesh.public_ca().root_pem()).expect("ca");
    real_curl(vec![
        "-sS".into(),
        "--cacert".into(),
        ca.display().to_string(),
        "--connect-to".into(),
        format!("httpbin.org:443:127.0.0.1:{}", port.port()),
        "https://httpbin.org/".into(),
    ])
    .await
}

async fn real_curl_https_to_http_port_wrong_version_number() {
    let tmp = tmpdir();
    let dir = tmp.path().to_path_buf();
    let mesh = Mesh::start(
        world(
            &[
                "scenarios/_shared/sleep.yaml",
                "scenarios/https-to-http-port/serviceentry.yaml",
            ],
            "1.5.0",
        ),
        MeshOptions::default(),
    )
    .await
    .expect("mesh");
    let (code, _, err) = curl_httpbin_from_sleep(&mesh, &dir).await;
    assert_eq!(code, 35, "{err}");
    assert!(err.contains("wrong version number"), "{err}");
    let mesh = Mesh::start(
        world(
            &[
                "scenarios/_shared/sleep.yaml",
                "scenarios/https-to-http-port/fix-https.yaml",
            ],
            "1.28.0",
        ),
        MeshOptions::default(),
    )
    .await
    .expect("mesh");
    let (code, out, err) = curl_httpbin_from_sleep(&mesh, &dir).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("external host httpbin.org"), "{out}");
}

async fn real_curl_double_tls_wrong_version_number() {
    let tmp = tmpdir();
    let dir = tmp.path().to_path_buf();
    let mesh = Mesh::start(
        world(
            &[
                "scenarios/_shared/sleep.yaml",
                "scenarios/double-tls/broken.yaml",
            ],
            "1.28.0",
        ),
        MeshOptions::default(),
    )
    .await
    .expect("mesh");
    let (code, _, err) = curl_httpbin_from_sleep(&mesh, &dir).await;
    assert_eq!(code, 35, "{err}");
    assert!(err.contains("wrong version number"), "{err}");
}

/// The page's nginx configuration, with `upstream` pointing at a port that
/// enters the mesh from a pod with a sidecar.
fn nginx_conf(dir: &Path, listen: u16, upstream: u16, http11: bool) -> String {
    let fix = if http11 {
        "proxy_http_version 1.1;\n            proxy_set_header Connection \"\";"
    } else {
        ""
    };
    format!(
        "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\nhttp {{\n    access_log off;\n    client_body_temp_path {d}/body;\n    proxy_temp_path {d}/proxy;\n    fastcgi_temp_path {d}/fcgi;\n    uwsgi_temp_path {d}/uwsgi;\n    scgi_temp_path {d}/scgi;\n    upstream http_backend {{\n        server 127.0.0.1:{upstream};\n\n        keepalive 16;\n    }}\n\n    server {{\n        listen 127.0.0.1:{listen};\n        location /http/ {{\n            proxy_pass http://http_backend;\n            {fix}\n        }}\n    }}\n}}\n",
        d = dir.display()
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

async fn nginx_status(dir: &Path, upstream: u16, http11: bool) -> (u16, String) {
    let listen = free_port();
    let conf = dir.join(if http11 { "fixed.conf" } else { "broken.conf" });
    std::fs::write(&conf, nginx_conf(dir, listen, upstream, http11)).expect("conf");
    let mut child = Command::new("nginx")
        .arg("-c")
        .arg(&conf)
        .spawn()
        .expect("nginx");
    let mut result = (0, String::new());
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (code, out, _) = real_curl(vec![
            "-s".into(),
            "-m".into(),
            "5".into(),
            "-o".into(),
            "/dev/null".into(),
            "-w".into(),
            "%{http_code}".into(),
            format!("http://127.0.0.1:{listen}/http/hello"),
        ])
        .await;
        if code == 0 && out != "000" {
            result = (out.parse().unwrap_or(0), out);
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    result
}

async fn real_nginx_http10_upstream_gets_426_until_fixed() {
    let tmp = tmpdir();
    let dir = tmp.path().to_path_buf();
    let mesh = Mesh::start(
        world(
            &[
                "scenarios/_shared/sleep.yaml",
                "scenarios/_shared/helloworld.yaml",
            ],
            "1.28.0",
        ),
        MeshOptions::default(),
    )
    .await
    .expect("mesh");
    let vip = mesh
        .net()
        .resolve("default", "helloworld")
        .expect("helloworld");
    // nginx runs "in" the sleep pod: its upstream connections go through sleep's sidecar.
    let upstream = mesh
        .expose(sleep_ip(&mesh), SocketAddr::new(vip, 5000))
        .await
        .expect("expose")
        .port();
    let (status, _) = nginx_status(&dir, upstream, false).await;
    assert_eq!(
        status, 426,
        "nginx's default HTTP/1.0 upstream is rejected by Envoy"
    );
    let _ = mesh.logs().settle(0).await;
    assert!(
        mesh.logs()
            .lines()
            .iter()
            .any(|l| l.line.contains("\"- - HTTP/1.1\" 426 DPE low_version")),
        "server sidecar logged the 426"
    );
    let (status, _) = nginx_status(&dir, upstream, true).await;
    assert_eq!(status, 200, "proxy_http_version 1.1 fixes it");
}

/// Headless Chromium opens service1.test.com (a page with an iframe of
/// service2.test.com): Chromium reuses its HTTP/2 connection, so the
/// gateway gets service2 on gw1's chain and answers 404 NR — the page's
/// browser symptom. With one wildcard gateway both load.
async fn real_chromium_reuses_the_connection_and_gets_404() {
    let tmp = tmpdir();
    let dir = tmp.path().to_path_buf();
    let files = [
        "scenarios/_shared/helloworld.yaml",
        "scenarios/shared-cert-connection-reuse/wildcard-secret.yaml",
    ];
    for (fix, want_status) in [
        ("scenarios/shared-cert-connection-reuse/broken.yaml", 404u16),
        (
            "scenarios/shared-cert-connection-reuse/fix-one-gateway.yaml",
            200,
        ),
    ] {
        let mesh = Mesh::start(
            world(&[files[0], files[1], fix], "1.28.0"),
            MeshOptions::default(),
        )
        .await
        .expect("mesh");
        let port = mesh.ingress()[&(meshsim_mesh::mesh::INGRESS_IP, 443)]
            .real
            .port();
        let frame = format!("https://service2.test.com:{port}/hello");
        let url = format!("https://service1.test.com:{port}/page?frame={frame}");
        let profile = dir.join(format!("profile-{want_status}"));
        // Chromium trusts meshsim's public test CA through an NSS database
        // in its HOME (browsers pool connections only for trusted certs).
        let home = dir.join(format!("home-{want_status}"));
        let nssdb = home.join(".pki/nssdb");
        std::fs::create_dir_all(&nssdb).expect("nssdb");
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, mesh.public_ca().root_pem()).expect("ca");
        let db = format!("sql:{}", nssdb.display());
        let ok = Command::new("certutil")
            .args(["-d", &db, "-N", "--empty-password"])
            .status()
            .is_ok_and(|s| s.success())
            && Command::new("certutil")
                .args([
                    "-d",
                    &db,
                    "-A",
                    "-t",
                    "C,,",
                    "-n",
                    "meshsim-public-ca",
                    "-i",
                ])
                .arg(&ca)
                .status()
                .is_ok_and(|s| s.success());
        assert!(ok, "certutil could not trust the test CA");
        let args = vec![
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            format!("--user-data-dir={}", profile.display()),
            "--host-resolver-rules=MAP service1.test.com 127.0.0.1, MAP service2.test.com 127.0.0.1".into(),
            "--virtual-time-budget=3000".into(),
            "--dump-dom".into(),
            url,
        ];
        let out = tokio::task::spawn_blocking(move || {
            Command::new("chromium")
                .env("HOME", &home)
                .args(&args)
                .output()
        })
        .await
        .expect("join")
        .expect("chromium");
        let dom = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            dom.contains("instance: helloworld-v1-0"),
            "page from service1: {dom}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines = mesh.logs().settle(0).await;
        let frame_line = lines
            .iter()
            .find(|l| {
                l.proxy.starts_with("istio-ingressgateway")
                    && l.entry
                        .req_headers
                        .get(":authority")
                        .is_some_and(|a| a.starts_with("service2.test.com"))
            })
            .unwrap_or_else(|| panic!("no request for service2 reached the gateway: {lines:#?}"));
        assert_eq!(
            frame_line.entry.response_code, want_status,
            "{}",
            frame_line.line
        );
        if want_status == 404 {
            assert!(
                frame_line.line.contains(" 404 NR route_not_found "),
                "{}",
                frame_line.line
            );
            assert_eq!(
                frame_line.entry.requested_server_name.as_deref(),
                Some("service1.test.com"),
                "the browser reused service1's connection: {}",
                frame_line.line
            );
        }
    }
}

/// Bring your own app as a command line: meshsim runs Python's
/// http.server on `$PORT` as a workload's app, behind its sidecar (mTLS
/// from the sleep pod), and the process is gone once the mesh shuts down.
async fn a_command_line_is_a_workloads_app() {
    let dir = tmpdir();
    let marker = dir.path().display().to_string();
    std::fs::write(dir.path().join("index.html"), "<p>my own app</p>\n").expect("index");
    let extra = format!(
        "apiVersion: apps/v1
kind: Deployment
metadata: {{name: files, namespace: docs}}
spec:
  template:
    metadata:
      labels: {{app: files}}
      annotations: {{meshsim.io/app: \"cmd:exec python3 -m http.server $PORT --bind 127.0.0.1 --directory {marker}\"}}
    spec: {{containers: [{{name: files, image: example.com/files:1}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: files, namespace: docs}}
spec: {{selector: {{app: files}}, ports: [{{name: http, port: 8000}}]}}
"
    );
    let mesh = common::start(&["scenarios/_shared/sleep.yaml"], &extra).await;
    let (r, logs) = common::curl(
        &mesh,
        &common::sleep(),
        &common::get("http://files.docs:8000/index.html"),
    )
    .await;
    assert_eq!(r.status, Some(200), "{r:?}");
    assert_eq!(common::body(&r), "<p>my own app</p>\n");
    assert!(
        common::line(&logs, "files-").contains("inbound|8000||"),
        "{logs:?}"
    );
    mesh.shutdown().await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let left = std::process::Command::new("pgrep")
        .args(["-f", &marker])
        .output()
        .expect("pgrep");
    assert!(
        left.stdout.is_empty(),
        "still running: {}",
        String::from_utf8_lossy(&left.stdout)
    );
}

fn main() {
    run_all(vec![
        Real {
            name: "a_command_line_is_a_workloads_app",
            needs: &["python3", "pgrep"],
            run: || Box::pin(a_command_line_is_a_workloads_app()),
        },
        Real {
            name: "real_curl_https_to_http_port_wrong_version_number",
            needs: &["curl"],
            run: || Box::pin(real_curl_https_to_http_port_wrong_version_number()),
        },
        Real {
            name: "real_curl_double_tls_wrong_version_number",
            needs: &["curl"],
            run: || Box::pin(real_curl_double_tls_wrong_version_number()),
        },
        Real {
            name: "real_nginx_http10_upstream_gets_426_until_fixed",
            needs: &["nginx", "curl"],
            run: || Box::pin(real_nginx_http10_upstream_gets_426_until_fixed()),
        },
        Real {
            name: "real_chromium_reuses_the_connection_and_gets_404",
            needs: &["chromium", "certutil"],
            run: || Box::pin(real_chromium_reuses_the_connection_and_gets_404()),
        },
    ])
}
