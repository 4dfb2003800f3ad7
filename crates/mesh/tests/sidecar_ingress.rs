//! A Sidecar's `ingress` listeners (cluster.go
//! `buildInboundClustersFromSidecar`), through real sockets: the inbound
//! port goes to its `defaultEndpoint` — an application bound to localhost
//! on another port is reached — and only the listed ports are served.

mod common;

use common::{curl, get, line, start};
use meshsim_mesh::curl::From;

const APPS: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: caller, namespace: depot}
spec:
  template:
    metadata: {labels: {app: caller}}
    spec: {containers: [{name: c, image: curlimages/curl}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: stock, namespace: depot}
spec:
  template:
    metadata: {labels: {app: stock}}
    spec: {containers: [{name: s, image: example/stock, ports: [{containerPort: 7171}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: stock, namespace: depot}
spec:
  selector: {app: stock}
  ports: [{name: http, port: 8000, targetPort: 7000}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: stock-local, namespace: depot}
spec:
  workloadSelector: {labels: {app: stock}}
  ingress:
  - port: {number: 7000, protocol: HTTP, name: web}
    defaultEndpoint: ENDPOINT
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingress_listener_sends_to_its_default_endpoint() {
    let caller = From::Pod("caller-0".into(), "depot".into());
    let mesh = start(&[], &APPS.replace("ENDPOINT", "127.0.0.1:7171")).await;
    let (r, logs) = curl(&mesh, &caller, &get("http://stock.depot:8000/")).await;
    assert_eq!(r.status, Some(200), "{r:?}");
    let l = line(&logs, "stock-0");
    assert!(l.contains("\"127.0.0.1:7171\" inbound|7000||"), "{l}");
    mesh.shutdown().await;
    // Nothing listens on the endpoint: the inbound side fails to connect.
    let mesh = start(&[], &APPS.replace("ENDPOINT", "127.0.0.1:7999")).await;
    let (r, logs) = curl(&mesh, &caller, &get("http://stock.depot:8000/")).await;
    assert_eq!(r.status, Some(503), "{r:?}");
    assert!(
        line(&logs, "stock-0").contains("UF upstream_reset_before_response_started"),
        "{logs:#?}"
    );
    mesh.shutdown().await;
}
