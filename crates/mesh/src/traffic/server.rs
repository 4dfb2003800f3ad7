//! The traffic page's HTTP server (hyper, on the sandbox's runtime): the
//! page, Cytoscape.js and its dagre layout embedded in the binary, the graph as JSON, live
//! updates as Server-Sent Events, and the node and edge panels.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::{TrafficGraph, PUSH_EVERY};
use crate::curl::{CurlRequest, From};
use crate::mesh::Mesh;

const INDEX: &str = include_str!("../../assets/traffic/index.html");
const APP: &str = include_str!("../../assets/traffic/app.js");
const STYLE: &str = include_str!("../../assets/traffic/style.css");
const CYTOSCAPE: &str = include_str!("../../assets/traffic/cytoscape.min.js");
const DAGRE: &str = include_str!("../../assets/traffic/dagre.min.js");
const CYTOSCAPE_DAGRE: &str = include_str!("../../assets/traffic/cytoscape-dagre.js");

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// A body fed by a channel: each message is one Server-Sent Event; the
/// body ends when the sender does (the server task stops it).
struct EventBody(mpsc::Receiver<Bytes>);

impl http_body::Body for EventBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|m| m.map(|b| Ok(Frame::data(b))))
    }
}

fn full(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()).boxed());
    *r.status_mut() = status;
    if let Ok(v) = header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    r
}

fn json(v: &serde_json::Value) -> Response<Body> {
    full(StatusCode::OK, "application/json", v.to_string())
}

/// `name=value` of the query, percent-decoded.
fn query(req: &Request<Incoming>, name: &str) -> Option<String> {
    req.uri().query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| {
            percent_encoding::percent_decode_str(&v.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

/// Serves the page on `listener` until the task is dropped (the sandbox
/// owns it and aborts it when it ends; connections end with it).
pub async fn serve(mesh: Arc<Mesh>, graph: Arc<TrafficGraph>, listener: TcpListener) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    // Out of descriptors, say: do not spin.
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                };
                let (mesh, graph) = (mesh.clone(), graph.clone());
                conns.spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let (mesh, graph) = (mesh.clone(), graph.clone());
                        async move { Ok::<_, Infallible>(handle(&mesh, &graph, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

async fn handle(
    mesh: &Arc<Mesh>,
    graph: &Arc<TrafficGraph>,
    req: Request<Incoming>,
) -> Response<Body> {
    match req.uri().path() {
        "/" | "/index.html" => full(
            StatusCode::OK,
            "text/html; charset=utf-8",
            page(mesh, graph),
        ),
        "/app.js" => full(StatusCode::OK, "text/javascript", APP),
        "/style.css" => full(StatusCode::OK, "text/css", STYLE),
        "/cytoscape.min.js" => full(StatusCode::OK, "text/javascript", CYTOSCAPE),
        "/dagre.min.js" => full(StatusCode::OK, "text/javascript", DAGRE),
        "/cytoscape-dagre.js" => full(StatusCode::OK, "text/javascript", CYTOSCAPE_DAGRE),
        "/api/graph" => json(&serde_json::to_value(graph.snapshot(mesh)).unwrap_or_default()),
        "/api/events" => events(mesh.clone(), graph.clone()),
        "/api/node" => match query(&req, "id") {
            Some(id) => json(&node(mesh, graph, &id)),
            None => full(StatusCode::BAD_REQUEST, "text/plain", "id?"),
        },
        "/api/edge" => match query(&req, "id") {
            Some(id) => json(&edge(mesh, graph, &id)),
            None => full(StatusCode::BAD_REQUEST, "text/plain", "id?"),
        },
        _ => full(StatusCode::NOT_FOUND, "text/plain", "not found"),
    }
}

/// The page with the graph as it is now inlined (`<script
/// id="initial">`): it draws at once, before any request of its own.
fn page(mesh: &Mesh, graph: &TrafficGraph) -> String {
    let snap = serde_json::to_string(&graph.snapshot(mesh)).unwrap_or_default();
    // JSON inside <script>: a "<" (in "</script>" or "<!--") could end
    // or confuse it; "<" only occurs inside JSON strings, where \u003c is
    // the same character.
    let inline = format!(
        "<script id=\"initial\" type=\"application/json\">{}</script>",
        snap.replace('<', "\\u003c")
    );
    INDEX.replacen("<!--SNAPSHOT-->", &inline, 1)
}

/// Server-Sent Events: the graph now, then again every [`PUSH_EVERY`]
/// while the page listens (the task ends when the page goes).
fn events(mesh: Arc<Mesh>, graph: Arc<TrafficGraph>) -> Response<Body> {
    let (tx, rx) = mpsc::channel::<Bytes>(2);
    let scope = mesh.scope().clone();
    scope.spawn(async move {
        let mut tick = tokio::time::interval(PUSH_EVERY);
        loop {
            tick.tick().await;
            let snap = serde_json::to_string(&graph.snapshot(&mesh)).unwrap_or_default();
            if tx
                .send(Bytes::from(format!("data: {snap}\n\n")))
                .await
                .is_err()
            {
                return;
            }
        }
    });
    let mut r = Response::new(EventBody(rx).boxed());
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/event-stream"),
    );
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    r
}

/// The node panel: its proxy's tables as `istioctl proxy-config` prints
/// them, its sync state, and its access-log tail.
fn node(mesh: &Mesh, graph: &TrafficGraph, proxy: &str) -> serde_json::Value {
    use meshsim_tables::display::{render, Format, Kind, Options, Sources};
    let Some(p) = mesh.proxy(proxy) else {
        return json!({"proxy": proxy, "error": "no proxy (a workload without a sidecar, or outside the mesh)"});
    };
    let src = Sources::from_tables(&p.tables());
    let o = Options::default();
    let synced = mesh.status().into_iter().find(|s| s.id == proxy).map(|s| {
        if s.synced {
            "SYNCED"
        } else {
            "STALE"
        }
    });
    let tail: Vec<serde_json::Value> = graph
        .tail(proxy)
        .into_iter()
        .map(|(flags, line)| json!({"flags": flags, "line": line}))
        .collect();
    json!({
        "proxy": proxy,
        "sync": synced,
        "listeners": render(&src, Kind::Listeners, Format::Short, &o),
        "routes": render(&src, Kind::Routes, Format::Short, &o),
        "clusters": render(&src, Kind::Clusters, Format::Short, &o),
        "tail": tail,
    })
}

/// The edge panel: its last requests and, for the last failed one from
/// a workload, what `meshsim explain` says about it.
fn edge(mesh: &Mesh, graph: &TrafficGraph, id: &str) -> serde_json::Value {
    let recent = graph.recent(id);
    let failed = recent
        .iter()
        .rev()
        .find(|r| r.code >= 400 || r.code == 0 || r.flags != "-");
    let explained = failed.and_then(|r| {
        // From a workload's sidecar only: a gateway's lines carry the
        // Host its outside client sent (a sandbox's 127.0.0.1:PORT), not
        // an address explain can walk from outside.
        if !id.starts_with("wl:") {
            return None;
        }
        // The pod whose sidecar logged it (`pod.namespace`; a namespace
        // has no dots).
        let (pod, ns) = r.proxy.rsplit_once('.')?;
        let from = From::Pod(pod.to_string(), ns.to_string());
        let req = CurlRequest {
            url: format!("http://{}{}", r.authority, r.path),
            method: Some(r.method.clone()).filter(|m| !m.is_empty()),
            ..Default::default()
        };
        let e = crate::explain::explain(mesh, &from, &req, None);
        Some(e.render())
    });
    json!({"edge": id, "recent": recent, "explain": explained})
}
