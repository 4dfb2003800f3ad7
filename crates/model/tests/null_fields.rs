//! A list or map field written as `key:` with nothing after it is null in
//! YAML; the Kubernetes API server reads a null field as absent, so
//! `kubectl apply` takes it. meshsim does too, in every kind — and a field
//! of the wrong shape is still an error naming its line and path.

const NULLS: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: billing, namespace: finance}
spec:
  selector: {matchLabels: {app: billing}}
  template:
    metadata:
      labels: {app: billing}
      annotations:
    spec:
      containers:
      - name: billing
        image: example/billing
        args:
        env:
        ports:
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: billing, namespace: finance}
spec:
  hosts: [billing]
  gateways:
  http:
  - match:
    route: [{destination: {host: billing}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: billing, namespace: finance}
spec:
  host: billing
  subsets:
  exportTo:
---
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: noop, namespace: finance}
spec:
  configPatches:
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: edge, namespace: finance}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8443, name: https, protocol: HTTPS}
    hosts: [\"pay.example.net\"]
    tls: {mode: SIMPLE, credentialName: pay-cert, subjectAltNames: }
";

#[test]
fn null_lists_and_maps_are_empty_as_kubectl_reads_them() {
    let l = meshsim_model::parse_str("nulls.yaml", NULLS);
    let errors: Vec<String> = l.errors().map(|d| d.to_string()).collect();
    assert!(errors.is_empty(), "{errors:#?}");
    assert_eq!(l.resources.len(), 5);
}

#[test]
fn a_list_of_the_wrong_shape_is_still_an_error_with_its_place() {
    let l = meshsim_model::parse_str(
        "bad.yaml",
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: billing}\nspec:\n  hosts: billing\n",
    );
    let errors: Vec<String> = l.errors().map(|d| d.to_string()).collect();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].starts_with("bad.yaml:5:") && errors[0].contains("spec.hosts"),
        "{errors:#?}"
    );
}
