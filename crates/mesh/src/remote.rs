//! A running sandbox's control endpoint, and the client other commands use
//! to reach it: `meshsim apply/delete -f` change the live mesh through its
//! control plane (with its push delay), `meshsim proxy-status` without
//! `-f` reads it. The sandbox records itself in a state file in the
//! user's runtime directory (`$XDG_RUNTIME_DIR/meshsim/sandbox.json`, else
//! `~/.cache/meshsim/`), 0600 in a 0700 directory, holding the loopback
//! address and a random token every call must present.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use meshsim_compiler::NamespaceFlag;
use serde::{Deserialize, Serialize};

use crate::control::Change;
use crate::error::MeshError;
use crate::Mesh;

/// The largest request the endpoint reads (the files of one apply).
const MAX_REQUEST: usize = 64 << 20;

/// What the sandbox writes so other commands find it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxState {
    pub pid: u32,
    /// The control endpoint (loopback).
    pub control: SocketAddr,
    pub token: String,
}

/// Where the state file lives.
pub fn state_path() -> Option<PathBuf> {
    let dir = match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d).join("meshsim"),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".cache/meshsim"),
    };
    Some(dir.join("sandbox.json"))
}

/// One file's text, named as the user gave it (`-` is `STDIN`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Document {
    pub file: String,
    pub text: String,
}

/// `apply` or `delete` of documents, with kubectl's `-n`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChangeRequest {
    pub namespace: Option<String>,
    pub documents: Vec<Document>,
}

/// What a command prints and how it exits.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Reply {
    pub code: u8,
    pub stdout: String,
    pub stderr: String,
    /// For `/logs`: the index to ask from next (`-f` polls with it).
    #[serde(default)]
    pub next: Option<usize>,
}

/// What `istioctl proxy-config` reads of a running proxy: its config
/// dump, its `/clusters?format=json` and its EnvoyFilter patch outcomes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProxyDump {
    pub config_dump: serde_json::Value,
    pub clusters: serde_json::Value,
    pub patches: Vec<meshsim_tables::PatchOutcome>,
}

/// Which proxy (`POD[.NS]`, `deploy/NAME[.NS]`), with `-n`'s default.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProxyRequest {
    pub target: String,
    pub namespace: Option<String>,
}

pub use crate::analysis::{analyze_report, AnalyzeRequest};

/// `kubectl logs POD|deploy/NAME [-c istio-proxy] [--tail N]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogsRequest {
    /// `POD[.NS]`, `deploy/NAME[.NS]`, with kubectl's `-n` default.
    pub target: String,
    pub namespace: Option<String>,
    /// Lines from this index (a follow-up poll); else the kept ones.
    pub since: Option<usize>,
    pub tail: Option<usize>,
}

/// Serves the control endpoint on `listener` until the task is dropped
/// (the sandbox owns it and aborts it when it ends).
pub async fn serve(
    mesh: Arc<Mesh>,
    listener: tokio::net::TcpListener,
    token: String,
    ports: Arc<std::sync::Mutex<serde_json::Value>>,
) {
    let token = Arc::new(token);
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            continue;
        };
        while conns.try_join_next().is_some() {}
        let (mesh, token, ports) = (mesh.clone(), token.clone(), ports.clone());
        conns.spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let (mesh, token, ports) = (mesh.clone(), token.clone(), ports.clone());
                async move { Ok::<_, Infallible>(handle(&mesh, &token, &ports, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn json_response(status: StatusCode, r: &Reply) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(
        serde_json::to_vec(r).unwrap_or_default(),
    )));
    *resp.status_mut() = status;
    resp
}

async fn handle(
    mesh: &Mesh,
    token: &str,
    ports: &std::sync::Mutex<serde_json::Value>,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let authorized = req
        .headers()
        .get("x-meshsim-token")
        .is_some_and(|t| t.as_bytes() == token.as_bytes());
    if !authorized {
        let r = Reply {
            code: 2,
            stderr: "error: not authorized (token)\n".into(),
            ..Default::default()
        };
        return json_response(StatusCode::FORBIDDEN, &r);
    }
    let path = req.uri().path().to_string();
    let body = match http_body_util::Limited::new(req.into_body(), MAX_REQUEST)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            let r = Reply {
                code: 2,
                stderr: format!("error: request larger than {MAX_REQUEST} bytes\n"),
                ..Default::default()
            };
            return json_response(StatusCode::PAYLOAD_TOO_LARGE, &r);
        }
    };
    let reply = match path.as_str() {
        "/apply" | "/delete" => match serde_json::from_slice::<ChangeRequest>(&body) {
            Ok(c) => change(mesh, path == "/delete", c).await,
            Err(e) => Reply {
                code: 2,
                stderr: format!("error: bad request: {e}\n"),
                ..Default::default()
            },
        },
        "/logs" => match serde_json::from_slice::<LogsRequest>(&body) {
            Ok(l) => logs(mesh, &l),
            Err(e) => Reply {
                code: 2,
                stderr: format!("error: bad request: {e}\n"),
                ..Default::default()
            },
        },
        "/proxy-dump" => match serde_json::from_slice::<ProxyRequest>(&body) {
            Ok(p) => proxy_dump(mesh, &p),
            Err(e) => Reply {
                code: 2,
                stderr: format!("error: bad request: {e}\n"),
                ..Default::default()
            },
        },
        "/analyze" => match serde_json::from_slice::<AnalyzeRequest>(&body) {
            Ok(a) => analyze_report(&mesh.world(), &a),
            Err(e) => Reply {
                code: 2,
                stderr: format!("error: bad request: {e}\n"),
                ..Default::default()
            },
        },
        "/ports" => Reply {
            stdout: ports
                .lock()
                .map(|p| serde_json::to_string_pretty(&*p).unwrap_or_default() + "\n")
                .unwrap_or_default(),
            ..Default::default()
        },
        "/proxy-status" => Reply {
            stdout: crate::status::table(&mesh.status()),
            ..Default::default()
        },
        _ => Reply {
            code: 2,
            stderr: format!("error: unknown endpoint {path}\n"),
            ..Default::default()
        },
    };
    json_response(StatusCode::OK, &reply)
}

/// The proxy `target` names, as `istioctl -n` resolves it.
fn running_proxy(
    mesh: &Mesh,
    target: &str,
    ns: Option<&str>,
) -> Result<meshsim_proxy::Proxy, String> {
    let world = mesh.world();
    let name = match (ns, target.contains('.')) {
        (Some(ns), false) => format!("{target}.{ns}"),
        _ => target.to_string(),
    };
    let id = meshsim_compiler::find_proxy(&world, &name)
        .map_err(|e| e.to_string())?
        .id();
    mesh.proxy(&id)
        .ok_or_else(|| format!("proxy {id} is not running"))
}

/// The running proxy's own dump (what it serves now, pushed or not).
fn proxy_dump(mesh: &Mesh, p: &ProxyRequest) -> Reply {
    match running_proxy(mesh, &p.target, p.namespace.as_deref()) {
        Ok(proxy) => {
            let dump = ProxyDump {
                config_dump: proxy.config_dump_value(),
                clusters: serde_json::from_str(&proxy.clusters_json()).unwrap_or_default(),
                patches: proxy.tables().envoy_filter_patches,
            };
            Reply {
                stdout: serde_json::to_string(&dump).unwrap_or_default(),
                ..Default::default()
            }
        }
        Err(e) => Reply {
            code: 1,
            stderr: format!("error: {e}\n"),
            ..Default::default()
        },
    }
}

/// A pod's `istio-proxy` log: its access-log lines still kept by the
/// mesh (the last [`crate::logs::WINDOW`] of all proxies).
fn logs(mesh: &Mesh, l: &LogsRequest) -> Reply {
    let pod = match running_proxy(mesh, &l.target, l.namespace.as_deref()) {
        Ok(p) => p.id().to_string(),
        Err(e) => {
            return Reply {
                code: 1,
                stderr: format!("error: {e}\n"),
                ..Default::default()
            }
        }
    };
    let from = l.since.unwrap_or(0);
    let next = mesh.logs().len();
    let mine: Vec<String> = mesh
        .logs()
        .since(from)
        .into_iter()
        .filter(|x| x.proxy == pod)
        .map(|x| x.line.trim_end().to_string())
        .collect();
    let skip = match (l.since, l.tail) {
        (None, Some(n)) => mine.len().saturating_sub(n),
        _ => 0,
    };
    let mut stdout = String::new();
    for line in &mine[skip..] {
        let _ = writeln!(stdout, "{line}");
    }
    Reply {
        stdout,
        next: Some(next),
        ..Default::default()
    }
}

/// Applies or deletes the documents through the control plane; a change
/// with an error is rejected whole (the mesh keeps its configuration).
async fn change(mesh: &Mesh, delete: bool, c: ChangeRequest) -> Reply {
    let mut loaded = meshsim_model::Loaded::default();
    for d in &c.documents {
        loaded.extend(meshsim_model::parse_str(&d.file, &d.text));
    }
    let ns = match c.namespace {
        Some(n) => NamespaceFlag::Apply(n),
        None => NamespaceFlag::Unset,
    };
    ns.apply_to(&mut loaded);
    let mut r = Reply::default();
    if loaded.has_errors() {
        for d in &loaded.diagnostics {
            let _ = writeln!(r.stderr, "{d}");
        }
        let _ = writeln!(
            r.stderr,
            "rejected: nothing was changed (the mesh keeps its last good configuration)"
        );
        r.code = 1;
        return r;
    }
    let warnings = std::mem::take(&mut loaded.diagnostics);
    let change = if delete {
        Change::Delete(loaded)
    } else {
        Change::Apply(loaded)
    };
    for w in &warnings {
        let _ = writeln!(r.stderr, "{w}");
    }
    match mesh.apply(vec![change]).await {
        Ok(report) => {
            for o in &report.objects {
                let _ = writeln!(r.stdout, "{o}");
            }
            for w in report.warnings.iter() {
                let _ = writeln!(r.stderr, "{w}");
            }
            for (what, names) in [
                ("started", &report.restarts.started),
                ("restarted", &report.restarts.restarted),
                ("stopped", &report.restarts.stopped),
            ] {
                if !names.is_empty() {
                    let _ = writeln!(r.stderr, "meshsim: {what}: {}", names.join(", "));
                }
            }
            if report.pushed.is_empty() {
                let _ = writeln!(
                    r.stderr,
                    "meshsim: version {}: no proxy needed a push",
                    report.version
                );
            } else {
                let _ = writeln!(
                    r.stderr,
                    "meshsim: version {} pushed after {:?} to {} proxies: {}",
                    report.version,
                    report.push_delay,
                    report.pushed.len(),
                    report.pushed.join(", ")
                );
            }
            if delete && report.nothing_found() {
                r.code = 1;
            }
        }
        Err(MeshError::Rejected(diags)) => {
            for d in diags.iter() {
                let _ = writeln!(r.stderr, "{d}");
            }
            let _ = writeln!(
                r.stderr,
                "rejected: nothing was changed (the mesh keeps its last good configuration)"
            );
            r.code = 1;
        }
        Err(e) => {
            let _ = writeln!(r.stderr, "error: {e}");
            r.code = 1;
        }
    }
    r
}

/// Reads the state file of the running sandbox.
pub fn find_sandbox() -> Result<SandboxState, String> {
    let path = state_path().ok_or("no runtime directory (XDG_RUNTIME_DIR or HOME)")?;
    let text = std::fs::read_to_string(&path).map_err(|_| {
        format!(
            "no running sandbox (no {}): start one with `meshsim sandbox -f ...`, or give -f",
            path.display()
        )
    })?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Records the sandbox; the returned guard removes the file when dropped.
pub fn record(state: &SandboxState) -> std::io::Result<StateFile> {
    use std::io::Write as _;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let path = state_path().ok_or_else(|| std::io::Error::other("no runtime directory"))?;
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    // A fresh file next to it, renamed over: never written through a link.
    let tmp = path.with_extension(format!("json.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(serde_json::to_string(state).unwrap_or_default().as_bytes())?;
    std::fs::rename(&tmp, &path)?;
    Ok(StateFile {
        path,
        pid: state.pid,
    })
}

/// The state file while the sandbox runs.
pub struct StateFile {
    path: PathBuf,
    pid: u32,
}

impl Drop for StateFile {
    fn drop(&mut self) {
        // Only our own record (a newer sandbox may have replaced it).
        let ours = std::fs::read_to_string(&self.path)
            .ok()
            .and_then(|t| serde_json::from_str::<SandboxState>(&t).ok())
            .is_some_and(|s| s.pid == self.pid);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Calls the running sandbox's endpoint `path` with `body`.
pub async fn call(state: &SandboxState, path: &str, body: Vec<u8>) -> Result<Reply, String> {
    let stream = tokio::net::TcpStream::connect(state.control)
        .await
        .map_err(|e| {
            format!(
                "the sandbox recorded at {} does not answer ({e}): is it still running?",
                state.control
            )
        })?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    let conn = tokio::spawn(conn);
    let req = Request::post(path)
        .header(http::header::HOST, "meshsim")
        .header("x-meshsim-token", &state.token)
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    conn.abort();
    serde_json::from_slice(&bytes).map_err(|e| format!("sandbox reply: {e}"))
}
