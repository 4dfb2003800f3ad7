use super::*;

fn kinds(l: &Loaded) -> Vec<String> {
    l.resources.iter().map(|r| r.meta().kind.clone()).collect()
}

#[test]
fn multi_document_with_positions() {
    let text = "apiVersion: v1\nkind: Service\nmetadata:\n  name: a\nspec:\n  ports:\n  - port: 80\n    name: http\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: a\nspec:\n  hosts: [a]\n  htpp: []\n";
    let l = parse_str("f.yaml", text);
    assert_eq!(kinds(&l), vec!["Service"]);
    let e = l.errors().next().expect("an error");
    assert_eq!((e.file.as_str(), e.line), ("f.yaml", 16), "{e}");
    assert!(e.message.contains("unknown field `htpp`"), "{e}");
    assert!(
        e.message.contains("expected one of hosts, gateways, http"),
        "says what was expected: {e}"
    );
}

#[test]
fn all_errors_are_reported_together() {
    let text = "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {portz: []}\n---\napiVersion: networking.istio.io/v1beta1\nkind: DestinationRule\nmetadata: {name: b}\nspec:\n  host: b\n  trafficPolicy:\n    tls:\n      mode: ISTIO_MUTUALL\n";
    let l = parse_str("f.yaml", text);
    let errs: Vec<_> = l.errors().collect();
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert_eq!(errs[1].line, 13, "{}", errs[1]);
    assert_eq!(errs[1].path, "spec.trafficPolicy.tls.mode", "{}", errs[1]);
    assert!(errs[1].message.contains("ISTIO_MUTUAL"), "{}", errs[1]);
}

#[test]
fn wrong_type_names_the_field() {
    let text =
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: a}\nspec:\n  replicas: many\n";
    let l = parse_str("d.yaml", text);
    let e = l.errors().next().expect("error");
    assert_eq!(e.path, "spec.replicas");
    assert_eq!(e.line, 5);
}

#[test]
fn unsimulated_fields_are_warnings() {
    let text = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: a}\nspec:\n  hosts: [a]\n  http:\n  - corsPolicy:\n      allowOrigins: [{exact: b}]\n    route:\n    - destination: {host: a}\n";
    let l = parse_str("v.yaml", text);
    assert!(!l.has_errors());
    let w = &l.diagnostics[0];
    assert_eq!(w.severity, crate::Severity::Warning);
    assert_eq!(w.path, "spec.http[0].corsPolicy");
    assert_eq!(w.line, 8, "{w}");
}

#[test]
fn kind_list_items_keep_their_lines() {
    let text = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Service\n  metadata:\n    name: a\n  spec:\n    ports: [{port: 80}]\n- apiVersion: v1\n  kind: Service\n  metadata:\n    name: b\n  spec:\n    portss: []\n";
    let l = parse_str("l.yaml", text);
    assert_eq!(kinds(&l), vec!["Service"]);
    let e = l.errors().next().expect("error");
    assert_eq!(e.line, 15, "{e}");
}

#[test]
fn mesh_config_from_configmap() {
    let text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: istio\n  namespace: istio-system\ndata:\n  mesh: |-\n    outboundTrafficPolicy:\n      mode: REGISTRY_ONLY\n    enableAutoMtls: false\n    accessLogFile: /dev/stdout\n";
    let l = parse_str("m.yaml", text);
    assert!(!l.has_errors(), "{:?}", l.diagnostics);
    let Resource::MeshConfig(m) = &l.resources[0] else {
        panic!("not mesh config")
    };
    assert_eq!(m.spec.enable_auto_mtls, Some(false));
    let bad = text.replace("REGISTRY_ONLY", "REGISTRY");
    let l = parse_str("m.yaml", &bad);
    let e = l.errors().next().expect("error");
    assert_eq!(e.line, 9, "{e}");
    assert!(e.path.starts_with("data.mesh"), "{e}");
}

#[test]
fn hostile_inputs_get_errors() {
    let bomb = "a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\nh: [*g,*g,*g,*g,*g,*g,*g,*g,*g]\nkind: Service\napiVersion: v1\n";
    assert!(parse_str("bomb.yaml", bomb).has_errors());
    let deep = format!(
        "kind: Service\napiVersion: v1\nspec: {}{}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    assert!(parse_str("deep.yaml", &deep).has_errors());
    assert!(parse_bytes("bin", &[0xff, 0xfe, 0x00, 0x12]).has_errors());
    assert!(parse_bytes("big", &vec![b'a'; MAX_FILE_BYTES + 1]).has_errors());
}

#[test]
fn unknown_istio_kind_is_an_error_and_other_kinds_warn() {
    let l = parse_str(
        "k.yaml",
        "apiVersion: networking.istio.io/v1\nkind: VirtualSevice\nmetadata: {name: a}\n",
    );
    assert!(l.has_errors());
    let l = parse_str(
        "k.yaml",
        "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: a}\n",
    );
    assert!(!l.has_errors());
    assert_eq!(l.diagnostics.len(), 1);
}

#[test]
fn json_list_items() {
    let text = r#"{"apiVersion": "v1", "kind": "List", "items": [{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"}, "spec": {"ports": [{"port": 80}]}}, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "b", "annotations": {"note": "b}"}}, "spec": {}}]}"#;
    let l = parse_str("l.json", text);
    assert!(!l.has_errors(), "{:?}", l.diagnostics);
    assert_eq!(kinds(&l), vec!["Service", "Service"]);
}

#[test]
fn kubectl_style_list_with_trailing_keys() {
    let text = "apiVersion: v1\nitems:\n- apiVersion: v1\n  kind: Service\n  metadata:\n    name: a\n  spec:\n    ports:\n    - port: 80\nkind: List\nmetadata:\n  resourceVersion: \"\"\n";
    let l = parse_str("l.yaml", text);
    assert!(!l.has_errors(), "{:?}", l.diagnostics);
    assert_eq!(kinds(&l), vec!["Service"]);
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        /// The loader never panics, whatever the bytes.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_bytes("fuzz", &bytes);
        }

        /// Nor on YAML-looking text assembled from manifest fragments.
        #[test]
        fn yaml_fragments_never_panic(parts in proptest::collection::vec(prop::sample::select(vec![
            "apiVersion: v1\n", "apiVersion: networking.istio.io/v1\n", "kind: Service\n", "kind: VirtualService\n", "kind: List\n",
            "metadata:\n  name: a\n", "spec:\n", "  hosts: [a]\n", "  http:\n  - route:\n    - destination: {host: a}\n", "items:\n- ",
            "---\n", "  ports: [{port: 80}]\n", "&a [*a]\n", "{", "]", "\"", "  - ", "\t", "key: *x\n", "mesh: |\n  x: [\n",
        ]), 0..24)) {
            let text: String = parts.concat();
            let _ = parse_str("fuzz.yaml", &text);
        }
    }
}

#[test]
fn istio_operator_mesh_config() {
    let text = "apiVersion: install.istio.io/v1alpha1\nkind: IstioOperator\nmetadata: {name: install}\nspec:\n  profile: demo\n  meshConfig:\n    accessLogFile: /dev/stdout\n    outboundTrafficPolicy:\n      mode: REGISTRY_ONLY\n";
    let l = parse_str("iop.yaml", text);
    assert!(!l.has_errors(), "{:?}", l.diagnostics);
    let Resource::MeshConfig(m) = &l.resources[0] else {
        panic!("mesh config")
    };
    assert_eq!(
        m.spec.outbound_traffic_policy.as_ref().map(|p| p.mode),
        Some(crate::mesh::OutboundMode::RegistryOnly)
    );
    assert_eq!(
        l.diagnostics.len(),
        1,
        "profile is reported as not simulated"
    );
    let bad = text.replace("REGISTRY_ONLY", "NONE");
    let e = parse_str("iop.yaml", &bad);
    let err = e.errors().next().expect("error");
    assert_eq!(
        (err.line, err.path.as_str()),
        (9, "spec.meshConfig.outboundTrafficPolicy.mode"),
        "{err}"
    );
}

/// A Gateway API object is that API's kind, honestly not simulated — not a
/// wrong apiVersion of Istio's Gateway; a wrong Istio version still is.
#[test]
fn gateway_api_kinds_warn_as_not_simulated() {
    let text = "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: g}\nspec: {gatewayClassName: istio}\n---\napiVersion: gateway.networking.k8s.io/v1beta1\nkind: HTTPRoute\nmetadata: {name: r}\nspec: {}\n---\napiVersion: networking.istio.io/v2\nkind: Gateway\nmetadata: {name: x}\nspec: {}\n";
    let l = parse_str("g.yaml", text);
    let msgs: Vec<String> = l.diagnostics.iter().map(|d| d.to_string()).collect();
    assert_eq!(msgs.len(), 3, "{msgs:#?}");
    assert!(
        msgs[0].contains("warning") && msgs[0].contains("Gateway API is not simulated"),
        "{}",
        msgs[0]
    );
    assert!(
        msgs[1].contains("warning") && msgs[1].contains("HTTPRoute"),
        "{}",
        msgs[1]
    );
    assert!(
        msgs[2].contains("error") && msgs[2].contains("networking.istio.io/v2"),
        "{}",
        msgs[2]
    );
}

/// `annotations:` with nothing after it (as Istio's addon manifests write
/// it) is an empty map, as the API server reads it.
#[test]
fn empty_labels_and_annotations_are_empty_maps() {
    let text = "apiVersion: v1\nkind: Service\nmetadata:\n  name: kiali-like\n  labels:\n  annotations:\nspec:\n  ports: [{name: http, port: 20001}]\n";
    let l = parse_str("s.yaml", text);
    assert!(!l.has_errors(), "{:?}", l.diagnostics);
}

#[test]
fn one_load_reads_at_most_its_total_cap() {
    let tmp = tempfile::tempdir().expect("private dir");
    let dir = tmp.path();
    let doc = "apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: x}\n";
    for f in ["a.yaml", "b.yaml", "c.yaml"] {
        std::fs::write(dir.join(f), doc).expect("write");
    }
    let cap = 2 * doc.len() as u64;
    let l = load_paths_within(&[dir], cap);
    assert_eq!(l.resources.len(), 2);
    let e = l.errors().next().expect("the third file is refused");
    assert!(e.file.ends_with("c.yaml"), "{e}");
    assert!(
        e.message
            .contains(&format!("one run reads at most {cap} bytes")),
        "{e}"
    );
}
