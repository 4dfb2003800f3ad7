use super::*;

fn build(yaml: &str) -> (World, Vec<Diagnostic>) {
    let l = meshsim_model::parse_str("w.yaml", yaml);
    assert!(!l.has_errors(), "{:?}", l.diagnostics);
    World::build(&l.resources, Settings::default())
}

#[test]
fn statefulset_pods_are_ordinal_and_pinnable() {
    let (w, d) = build("apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: web\n  annotations: {meshsim.io/pod-ips: \"10.1.1.171\"}\nspec:\n  replicas: 2\n  serviceName: nginx\n  template:\n    metadata: {labels: {app: nginx}}\n    spec: {containers: [{name: n, image: nginx}]}\n");
    assert!(d.is_empty(), "{d:?}");
    let names: Vec<(&str, String)> = w
        .pods
        .iter()
        .filter(|p| p.namespace == "default")
        .map(|p| (p.name.as_str(), p.ip.to_string()))
        .collect();
    assert_eq!(names[0], ("web-0", "10.1.1.171".to_string()));
    assert_eq!(names[1].0, "web-1");
    assert_ne!(names[1].1, "10.1.1.171");
}

#[test]
fn addresses_are_deterministic() {
    let y = "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {ports: [{port: 80}], selector: {app: a}}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: a, labels: {app: a}}\nspec: {containers: [{name: a, image: x}]}\n";
    let (w1, _) = build(y);
    let (w2, _) = build(y);
    assert_eq!(
        w1.pods.iter().map(|p| p.ip).collect::<Vec<_>>(),
        w2.pods.iter().map(|p| p.ip).collect::<Vec<_>>()
    );
    assert_eq!(
        w1.service("a.default.svc.cluster.local")
            .map(|s| s.addresses.clone()),
        w2.service("a.default.svc.cluster.local")
            .map(|s| s.addresses.clone())
    );
}

#[test]
fn identities_and_default_gateway() {
    let (w, _) = build("apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: {serviceAccountName: robot, containers: [{name: a, image: x}]}\n");
    let p = w.pod("a", "default").expect("pod");
    assert_eq!(
        p.identity("cluster.local"),
        "spiffe://cluster.local/ns/default/sa/robot"
    );
    let gw = w
        .service("istio-ingressgateway.istio-system.svc.cluster.local")
        .expect("gateway service");
    assert_eq!(
        gw.ports.iter().map(|p| p.port).collect::<Vec<_>>(),
        vec![15021, 80, 443]
    );
}

#[test]
fn later_objects_replace_earlier_with_a_warning() {
    let (w, d) = build("apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {ports: [{port: 80}]}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {ports: [{port: 81}]}\n");
    assert_eq!(d.len(), 1);
    assert_eq!(
        w.service("a.default.svc.cluster.local")
            .map(|s| s.ports[0].port),
        Some(81)
    );
}

/// Applying more objects does not move existing pods or ClusterIPs, as in
/// a cluster: a Deployment and Service in a namespace that sorts first
/// would otherwise take the addresses of everything after it.
#[test]
fn rebuild_keeps_addresses_of_existing_pods_and_services() {
    let base = "apiVersion: v1\nkind: Service\nmetadata: {name: shop, namespace: zeta}\nspec: {ports: [{port: 8080}], selector: {app: shop}}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: shop, namespace: zeta}\nspec:\n  replicas: 2\n  template:\n    metadata: {labels: {app: shop}}\n    spec: {containers: [{name: s, image: x}]}\n";
    let more = "---\napiVersion: v1\nkind: Service\nmetadata: {name: early, namespace: alpha}\nspec: {ports: [{port: 7000}], selector: {app: early}}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: early, namespace: alpha, labels: {app: early}}\nspec: {containers: [{name: e, image: x}]}\n";
    let (before, _) = build(base);
    let l = meshsim_model::parse_str("w.yaml", &format!("{base}{more}"));
    let (fresh, _) = World::build(&l.resources, Settings::default());
    let (after, d) = World::rebuild(&l.resources, Settings::default(), &before);
    assert!(d.is_empty(), "{d:?}");
    let ip = |w: &World, n: &str| w.pod(n, "zeta").map(|p| p.ip);
    let vip = |w: &World| {
        w.service("shop.zeta.svc.cluster.local")
            .map(|s| s.addresses.clone())
    };
    for pod in ["shop-0", "shop-1"] {
        assert_eq!(ip(&after, pod), ip(&before, pod), "{pod}");
    }
    assert_eq!(vip(&after), vip(&before));
    // A fresh build would have shifted them (the new pod sorts first).
    assert_ne!(ip(&fresh, "shop-0"), ip(&before, "shop-0"));
    // The new objects get addresses nobody else has.
    let early = after.pod("early", "alpha").map(|p| p.ip);
    assert!(early.is_some());
    assert!(after.pods.iter().filter(|p| Some(p.ip) == early).count() == 1);
}
