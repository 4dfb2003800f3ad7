//! A scenario's transcript shows every step's "accepted but not simulated"
//! warnings (the files of the setup and of each `apply`), so a no-op is
//! never silent; and `from: deploy/NAME.NS` works for a pod without a
//! sidecar.

use std::fs;

const SETUP: &str = "apiVersion: v1
kind: Namespace
metadata: {name: archive}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: reader, namespace: archive}
spec:
  template:
    metadata: {labels: {app: reader}}
    spec: {containers: [{name: r, image: curlimages/curl}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: vault, namespace: default}
spec:
  template:
    metadata: {labels: {app: vault}}
    spec: {containers: [{name: v, image: example/vault}]}
---
apiVersion: v1
kind: Service
metadata: {name: vault, namespace: default}
spec:
  selector: {app: vault}
  ports: [{name: http, port: 8200}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vault}
spec:
  hosts: [vault]
  http:
  - corsPolicy: {allowOrigins: [{exact: \"https://ui.example\"}]}
    route: [{destination: {host: vault}}]
";

const CHANGE: &str = "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: vault}
spec:
  host: vault
  trafficPolicy: {loadBalancer: {consistentHash: {httpHeaderName: x-user}}}
";

const SCENARIO: &str = "name: warnings-in-transcript
section: test
summary: test
resources: [setup.yaml]
steps:
- name: from a pod without a sidecar
  request: {from: deploy/reader.archive, url: \"http://vault.default:8200/\"}
  expect: {status: 200}
- name: an unsimulated field in an applied file
  apply: [change.yaml]
  request: {from: deploy/reader.archive, url: \"http://vault.default:8200/\"}
  expect: {status: 200}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warnings_show_in_each_step_and_plain_pods_send() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("setup.yaml"), SETUP).expect("write");
    fs::write(dir.path().join("change.yaml"), CHANGE).expect("write");
    fs::write(dir.path().join("scenario.yaml"), SCENARIO).expect("write");
    let r = meshsim_scenario::runner::run_scenario(&dir.path().join("scenario.yaml")).await;
    let t = r.transcript();
    assert!(r.passed, "{t}");
    let setup = r.steps[0].transcript.join("\n");
    assert!(
        setup.contains("spec.http[0].corsPolicy: accepted but not simulated"),
        "{setup}"
    );
    let change = r.steps[2].transcript.join("\n");
    assert!(
        change.contains("loadBalancer.consistentHash: accepted but not simulated"),
        "{change}"
    );
}
