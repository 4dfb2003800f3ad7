//! DestinationRule traffic policies istiod turns into cluster settings
//! (cluster_traffic_policy.go).

mod common;

use common::tables;
use meshsim_tables::*;

const APPS: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: ledger, namespace: books}
spec:
  template:
    metadata: {labels: {app: ledger}}
    spec: {containers: [{name: l, image: example/ledger}]}
---
apiVersion: v1
kind: Service
metadata: {name: ledger, namespace: books}
spec:
  selector: {app: ledger}
  ports: [{name: http, port: 7000}, {name: grpc-admin, port: 7100}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ledger, namespace: books}
spec:
  host: ledger.books.svc.cluster.local
  trafficPolicy:
    outlierDetection: {consecutiveGatewayErrors: 3, interval: 5s, baseEjectionTime: 1m, maxEjectionPercent: 50}
    portLevelSettings:
    - port: {number: 7100}
      outlierDetection: {consecutive5xxErrors: 0, minHealthPercent: 30, splitExternalLocalOriginErrors: true, consecutiveLocalOriginFailures: 4}
";

fn cluster<'a>(t: &'a ProxyTables, name: &str) -> &'a Cluster {
    t.clusters.iter().find(|c| c.name == name).expect("cluster")
}

/// applyOutlierDetection: success rate off, each configured count
/// enforced (0 disables), the panic threshold from minHealthPercent (0
/// unless set), port-level settings replacing the DR's.
#[test]
fn outlier_detection_as_istiod_writes_it() {
    let t = tables(APPS, "ledger-0.books");
    let c = cluster(&t, "outbound|7000||ledger.books.svc.cluster.local");
    let o = c.outlier_detection.as_ref().expect("outlier");
    assert_eq!(o.consecutive_gateway_failure, Some(3));
    assert_eq!(o.enforcing_consecutive_gateway_failure, Some(100));
    assert_eq!(o.consecutive_5xx, None, "Envoy's default 5 then applies");
    assert_eq!(o.consecutive_5xx(), (5, 100));
    assert_eq!(o.interval(), std::time::Duration::from_secs(5));
    assert_eq!(o.base_ejection_time(), std::time::Duration::from_secs(60));
    assert_eq!(o.max_ejection_percent(), 50);
    assert_eq!(o.enforcing_success_rate, 0);
    assert_eq!(c.healthy_panic_threshold, Some(0.0));
    let c = cluster(&t, "outbound|7100||ledger.books.svc.cluster.local");
    let o = c.outlier_detection.as_ref().expect("outlier");
    assert_eq!(o.consecutive_5xx(), (0, 0), "0 disables");
    assert!(o.split_external_local_origin_errors);
    assert_eq!(o.consecutive_local_origin_failure(), (4, 100));
    assert_eq!(c.healthy_panic_threshold, Some(30.0));
    let t = tables(
        APPS.split("---\napiVersion: networking")
            .next()
            .unwrap_or(APPS),
        "ledger-0.books",
    );
    let c = cluster(&t, "outbound|7000||ledger.books.svc.cluster.local");
    assert!(c.outlier_detection.is_none() && c.healthy_panic_threshold.is_none());
}
