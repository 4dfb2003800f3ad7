//! The sandbox's traffic graph, without a browser: the aggregate the page
//! draws, from the access logs of real requests, on names unlike Bookinfo
//! (namespace `shop`, a weighted split 80/20, a server without a sidecar),
//! and the page's server over a real socket (the page with the graph
//! inlined, its scripts, the event stream).

use std::sync::Arc;
use std::time::Duration;

use meshsim_mesh::curl::From;
use meshsim_mesh::traffic::TrafficGraph;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod common;
use common::*;

const SHOP: &str = "apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio-injection: enabled}}
---
apiVersion: v1
kind: Namespace
metadata: {name: legacy}
---
apiVersion: v1
kind: Service
metadata: {name: catalog, namespace: shop}
spec:
  ports: [{port: 8181, name: http-api}]
  selector: {app: catalog}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: catalog-blue, namespace: shop}
spec:
  selector: {matchLabels: {app: catalog, version: blue}}
  template:
    metadata: {labels: {app: catalog, version: blue}}
    spec: {containers: [{name: app, image: example/catalog, ports: [{containerPort: 8181}]}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: catalog-green, namespace: shop}
spec:
  selector: {matchLabels: {app: catalog, version: green}}
  template:
    metadata: {labels: {app: catalog, version: green}}
    spec: {containers: [{name: app, image: example/catalog, ports: [{containerPort: 8181}]}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: buyer, namespace: shop}
spec:
  selector: {matchLabels: {app: buyer}}
  template:
    metadata: {labels: {app: buyer}}
    spec: {containers: [{name: app, image: curlimages/curl}]}
---
apiVersion: v1
kind: Service
metadata: {name: ledger, namespace: legacy}
spec:
  ports: [{port: 7070, name: http}]
  selector: {app: ledger}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: ledger, namespace: legacy}
spec:
  selector: {matchLabels: {app: ledger}}
  template:
    metadata: {labels: {app: ledger}}
    spec: {containers: [{name: app, image: example/ledger, ports: [{containerPort: 7070}]}]}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: catalog, namespace: shop}
spec:
  host: catalog
  subsets:
  - {name: blue, labels: {version: blue}}
  - {name: green, labels: {version: green}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: catalog, namespace: shop}
spec:
  hosts: [catalog]
  http:
  - route:
    - {destination: {host: catalog, subset: blue}, weight: 80}
    - {destination: {host: catalog, subset: green}, weight: 20}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: partner, namespace: shop}
spec:
  hosts: [api.partner-shop.io]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS
  location: MESH_EXTERNAL
";

fn buyer() -> From {
    From::Pod("buyer-0".into(), "shop".into())
}

/// Edges by workload with rates, codes, flags and mTLS as the servers'
/// lines tell it; the split observed next to the route's weights.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_graph_aggregates_real_requests() {
    let mesh = Arc::new(start(&[], SHOP).await);
    let graph = TrafficGraph::attach(&mesh);
    for _ in 0..50 {
        let (r, _) = curl(&mesh, &buyer(), &get("http://catalog:8181/items")).await;
        assert_eq!(r.status, Some(200));
    }
    let (r, _) = curl(&mesh, &buyer(), &get("http://ledger.legacy:7070/")).await;
    assert_eq!(r.status, Some(200));
    // A port the Service does not declare: the sidecar passes the bytes
    // through to the Service's IP, where nothing listens (Envoy's TCP
    // proxy: 0 UF, the client's connection closed).
    let (r, logs) = curl(&mesh, &buyer(), &get("http://catalog:9999/")).await;
    // An empty reply or a reset, as with real Envoy's tcp_proxy.
    assert!([52, 56].contains(&r.exit_code), "{r:?}");
    assert!(line(&logs, "buyer-0").contains(" 0 UF "), "{logs:?}");
    let (r, _) = curl(&mesh, &buyer(), &get("http://api.partner-shop.io/v1/quote")).await;
    assert_eq!(r.status, Some(200), "{r:?}");
    let snap = graph.snapshot(&mesh);
    let edge = |id: &str| {
        snap.edges
            .iter()
            .find(|e| e.id == id)
            .unwrap_or_else(|| panic!("{id} in {:#?}", snap.edges))
    };
    let blue = edge("wl:shop/buyer->wl:shop/catalog-blue");
    let green = edge("wl:shop/buyer->wl:shop/catalog-green");
    assert_eq!(blue.requests + green.requests, 50);
    assert!(blue.requests > green.requests, "80/20: {blue:?} {green:?}");
    assert_eq!(blue.codes.get("200"), Some(&1.0));
    assert_eq!(blue.mtls, Some(true), "{blue:?}");
    assert!(blue.rps > 0.0);
    // A workload without a sidecar: plaintext.
    let ledger = edge("wl:shop/buyer->wl:legacy/ledger");
    assert_eq!(ledger.mtls, Some(false), "{ledger:?}");
    let failed = edge("wl:shop/buyer->svc:shop/catalog");
    assert_eq!(failed.flags.get("UF"), Some(&1), "{failed:?}");
    assert_eq!(failed.codes.get("0"), Some(&1.0), "{failed:?}");
    assert_eq!(failed.error_rate, 1.0);
    // An external host: a node of its own at the edge of the mesh.
    let partner = edge("wl:shop/buyer->ext:api.partner-shop.io");
    assert_eq!(partner.codes.get("200"), Some(&1.0));
    assert!(snap
        .nodes
        .iter()
        .any(|n| n.id == "ext:api.partner-shop.io" && n.kind == "external"));
    // Nodes: workloads under their service; the split.
    let node = |id: &str| snap.nodes.iter().find(|n| n.id == id);
    assert_eq!(
        node("wl:shop/catalog-green").and_then(|n| n.parent.as_deref()),
        Some("svc:shop/catalog")
    );
    assert_eq!(node("svc:shop/catalog").map(|n| n.kind), Some("service"));
    let split = snap
        .splits
        .iter()
        .find(|s| s.id == "wl:shop/buyer->svc:shop/catalog")
        .unwrap_or_else(|| panic!("{:#?}", snap.splits));
    let share = |v: &[meshsim_mesh::traffic::Share], name: &str| {
        v.iter().find(|s| s.name == name).map(|s| s.share)
    };
    assert_eq!(share(&split.configured, "blue"), Some(0.8));
    assert_eq!(share(&split.configured, "green"), Some(0.2));
    assert_eq!(
        share(&split.observed, "blue").map(|s| (s * 50.0).round() as u64),
        Some(blue.requests)
    );
    // The node panel's tail keeps the proxy's lines.
    let tail = graph.tail("buyer-0.shop");
    assert!(tail.iter().any(|(_, l)| l.contains("outbound|8181|blue|")));
    // A node opens its proxy's panel; a workload without a sidecar has none.
    assert_eq!(
        node("wl:shop/buyer").and_then(|n| n.proxy.as_deref()),
        Some("buyer-0.shop")
    );
    assert_eq!(
        node("wl:legacy/ledger").map(|n| n.proxy.is_none()),
        Some(true)
    );

    // A workload applied while the graph runs is a node, and its
    // traffic an edge, at once.
    let courier = "apiVersion: apps/v1
kind: Deployment
metadata: {name: courier, namespace: shop}
spec:
  selector: {matchLabels: {app: courier}}
  template:
    metadata: {labels: {app: courier}}
    spec: {containers: [{name: app, image: curlimages/curl}]}
";
    let loaded = meshsim_model::parse_str("courier.yaml", courier);
    assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
    mesh.apply(vec![meshsim_mesh::Change::Apply(loaded)])
        .await
        .expect("apply");
    let from = From::Pod("courier-0".into(), "shop".into());
    let (r, _) = curl(&mesh, &from, &get("http://ledger.legacy:7070/")).await;
    assert_eq!(r.status, Some(200));
    let snap = graph.snapshot(&mesh);
    assert!(snap.nodes.iter().any(|n| n.id == "wl:shop/courier"));
    assert!(
        snap.edges
            .iter()
            .any(|e| e.id == "wl:shop/courier->wl:legacy/ledger"),
        "{:#?}",
        snap.edges
    );
    mesh.shutdown().await;
}

async fn http_get(addr: std::net::SocketAddr, path: &str, read_for: Duration) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(read_for, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The page's server: the page with the graph inlined and every script
/// it loads from itself (nothing from the network), JSON panels, and an
/// event stream that pushes graphs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_server_serves_everything_itself() {
    let mesh = Arc::new(start(&[], SHOP).await);
    let graph = TrafficGraph::attach(&mesh);
    let (r, _) = curl(&mesh, &buyer(), &get("http://catalog:8181/")).await;
    assert_eq!(r.status, Some(200));
    // A Host header is whatever a client sends. This one is not a valid
    // authority, so the sidecar rejects it before routing, as Envoy does
    // (400 DPE http.invalid_authority); nothing of it reaches the page as
    // markup (the inlined graph also escapes every "<").
    let mut hostile = get("http://catalog:8181/");
    hostile
        .headers
        .push("Host: </script><script>alert(1)</script>".into());
    let (r, logs) = curl(&mesh, &buyer(), &hostile).await;
    assert_eq!(r.status, Some(400), "{r:?}");
    assert!(
        line(&logs, "buyer-0").contains(" 400 DPE http.invalid_authority "),
        "{logs:?}"
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(meshsim_mesh::traffic::server::serve(
        mesh.clone(),
        graph,
        listener,
    ));
    let page = http_get(addr, "/", Duration::from_secs(5)).await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(
        page.contains("<script id=\"initial\" type=\"application/json\">{"),
        "{page}"
    );
    assert!(page.contains("wl:shop/buyer"), "{page}");
    assert!(!page.contains("alert(1)"), "{page}");
    assert_eq!(page.matches("</script>").count(), 5, "{page}");
    let scripts: Vec<&str> = page
        .split("<script src=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .collect();
    assert_eq!(
        scripts,
        [
            "cytoscape.min.js",
            "dagre.min.js",
            "cytoscape-dagre.js",
            "app.js"
        ]
    );
    for s in scripts.iter().chain(&["style.css"]) {
        let r = http_get(addr, &format!("/{s}"), Duration::from_secs(5)).await;
        assert!(
            r.starts_with("HTTP/1.1 200"),
            "{s}: {}",
            &r[..r.len().min(200)]
        );
        assert!(r.len() > 1000, "{s}");
    }
    let node = http_get(addr, "/api/node?id=buyer-0.shop", Duration::from_secs(5)).await;
    assert!(node.contains("\"sync\":\"SYNCED\""), "{node}");
    assert!(
        node.contains("outbound|8181|blue|catalog.shop.svc.cluster.local")
            || node.contains("outbound|8181|green|catalog.shop.svc.cluster.local"),
        "{node}"
    );
    let events = http_get(addr, "/api/events", Duration::from_millis(2500)).await;
    assert!(
        events.contains("content-type: text/event-stream"),
        "{events}"
    );
    assert!(events.matches("data: {").count() >= 2, "{events}");
    server.abort();
    let _ = server.await;
    mesh.shutdown().await;
}
