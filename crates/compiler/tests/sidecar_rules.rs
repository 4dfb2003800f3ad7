//! Sidecar egress listeners with a port (listener.go
//! `buildSidecarOutboundListeners`): the listener naming a port carries
//! only its own hosts there; every other port belongs to the catch-all
//! listener, and to nobody when there is none.

mod common;

use common::tables;
use meshsim_tables::*;

fn yaml(egress: &str) -> String {
    let mut y = String::from(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: mall, labels: {istio-injection: enabled}}\n",
    );
    for (name, port) in [
        ("front", 8000),
        ("cart", 8000),
        ("ledger", 8000),
        ("search", 7700),
    ] {
        y.push_str(&format!(
            "---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}, namespace: mall}}\nspec:\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec: {{containers: [{{name: c, image: example/{name}}}]}}\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: mall}}\nspec:\n  selector: {{app: {name}}}\n  ports: [{{name: http, port: {port}}}]\n"
        ));
    }
    y.push_str(&format!(
        "---\napiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: front, namespace: mall}}\nspec:\n  workloadSelector: {{labels: {{app: front}}}}\n  egress:\n{egress}"
    ));
    y
}

fn vhosts(t: &ProxyTables, rc: &str) -> Vec<String> {
    t.route_configs
        .iter()
        .find(|r| r.name == rc)
        .map(|r| r.virtual_hosts.iter().map(|v| v.name.clone()).collect())
        .unwrap_or_default()
}

#[test]
fn egress_port_listener_carries_only_its_hosts() {
    let t = tables(
        &yaml(
            "  - port: {number: 8000, protocol: HTTP, name: http}\n    hosts: [./cart.mall.svc.cluster.local]\n  - hosts: [\"*/*\"]\n",
        ),
        "front-0.mall",
    );
    let on_8000 = vhosts(&t, "8000");
    assert!(
        on_8000.contains(&"cart.mall.svc.cluster.local:8000".to_string()),
        "{on_8000:?}"
    );
    assert!(
        !on_8000.iter().any(|v| v.starts_with("ledger")),
        "{on_8000:?}"
    );
    // 7700 is the catch-all listener's.
    assert!(vhosts(&t, "7700").contains(&"search.mall.svc.cluster.local:7700".to_string()));
    // Clusters stay for every imported service.
    assert!(t
        .clusters
        .iter()
        .any(|c| c.name == "outbound|8000||ledger.mall.svc.cluster.local"));
}

#[test]
fn without_a_catch_all_other_ports_have_no_listener() {
    let t = tables(
        &yaml("  - port: {number: 8000, protocol: HTTP, name: http}\n    hosts: [\"mall/*\"]\n"),
        "front-0.mall",
    );
    assert!(vhosts(&t, "8000").iter().any(|v| v.starts_with("ledger")));
    assert!(vhosts(&t, "7700").is_empty());
    assert!(!t.listeners.iter().any(|l| l.name.ends_with("_7700")));
}
