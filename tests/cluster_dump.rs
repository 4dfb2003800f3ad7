//! A real cluster's dump (`kubectl get ... -A -o yaml`: a List with
//! status, managedFields, ownerReferences, EndpointSlices, last-applied
//! annotations) reproduces the cluster: its Pods stand for their
//! Deployments with their own addresses, a Pod not Ready is no endpoint,
//! and a Service without a selector takes its EndpointSlices. Compiled, it
//! gives a proxy exactly what the same objects written by hand give.

use meshsim_compiler::{compile_proxy, find_proxy, NamespaceFlag, Settings, World};

fn world(file: &str) -> World {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/cluster-dump")
        .join(file);
    let (w, diags) = World::load(&[path], Settings::default(), &NamespaceFlag::Unset);
    assert!(!diags.has_errors(), "{}", diags.error_text());
    assert_eq!(diags.warnings().count(), 0, "{}", diags.error_text());
    w
}

#[test]
fn dump_compiles_as_the_same_objects_written_by_hand() {
    let (dump, plain) = (world("dump.yaml"), world("plain.yaml"));
    // The dump's Pods are the pods: no generated ratings-v1-0/-1.
    let mut pods: Vec<String> = dump
        .pods
        .iter()
        .map(|p| format!("{} {} {}", p.id(), p.ip, p.sidecar))
        .collect();
    pods.sort();
    assert_eq!(
        pods,
        vec![
            "istio-ingressgateway-0.istio-system 10.244.0.10 false",
            "productpage-v1-7d9f6b8c4d-x2k9p.shop 10.244.1.20 true",
            "ratings-v1-5f9d8c7b6-abcde.shop 10.244.1.17 true",
            "ratings-v1-5f9d8c7b6-fghij.shop 10.244.2.31 true",
            "ratings-v2-6c8e9a1f2-klmno.shop 10.244.2.32 true",
        ]
    );
    let json = |w: &World| {
        let t = compile_proxy(
            w,
            find_proxy(w, "deploy/productpage-v1.shop").expect("proxy"),
        );
        serde_json::json!({
            "listeners": t.listeners,
            "clusters": t.clusters,
            "routes": t.route_configs,
            "endpoints": t.endpoints,
        })
    };
    let (a, b) = (json(&dump), json(&plain));
    assert!(
        a == b,
        "dump and manifests differ:\n{}",
        first_difference(&a, &b)
    );
    // Not Ready: ratings-v2 has no endpoint; the selector-less Service has
    // the ready address of its EndpointSlice only.
    let eps = a["endpoints"].to_string();
    assert!(!eps.contains("10.244.2.32"), "{eps}");
    assert!(
        eps.contains("192.168.50.10") && !eps.contains("192.168.50.11"),
        "{eps}"
    );
}

fn first_difference(a: &serde_json::Value, b: &serde_json::Value) -> String {
    let (sa, sb) = (
        serde_json::to_string_pretty(a).unwrap_or_default(),
        serde_json::to_string_pretty(b).unwrap_or_default(),
    );
    sa.lines()
        .zip(sb.lines())
        .enumerate()
        .find(|(_, (x, y))| x != y)
        .map(|(i, (x, y))| format!("line {i}:\n  dump:  {x}\n  plain: {y}"))
        .unwrap_or_else(|| "lengths differ".into())
}
