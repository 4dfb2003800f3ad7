//! istiod's names for Envoy resources (pilot/pkg/model `BuildSubsetKey`,
//! `BuildInboundSubsetKey`, util constants).

pub const PASSTHROUGH_CLUSTER: &str = "PassthroughCluster";
pub const BLACKHOLE_CLUSTER: &str = "BlackHoleCluster";
pub const INBOUND_PASSTHROUGH_CLUSTER: &str = "InboundPassthroughCluster";
pub const VIRTUAL_OUTBOUND: &str = "virtualOutbound";
pub const VIRTUAL_INBOUND: &str = "virtualInbound";
pub const VIRTUAL_OUTBOUND_PORT: u16 = 15001;
pub const VIRTUAL_INBOUND_PORT: u16 = 15006;

/// `outbound|9080|v1|reviews.default.svc.cluster.local`
pub fn outbound_cluster(port: u16, subset: &str, host: &str) -> String {
    format!("outbound|{port}|{subset}|{host}")
}

/// `inbound|9080||`
pub fn inbound_cluster(port: u16) -> String {
    format!("inbound|{port}||")
}

/// SNI istiod sets for ISTIO_MUTUAL: `outbound_.9080_.v2_.reviews.default.svc.cluster.local`.
pub fn istio_mutual_sni(port: u16, subset: &str, host: &str) -> String {
    format!("outbound_.{port}_.{subset}_.{host}")
}

/// Listener names: `0.0.0.0_9080`, `10.96.0.5_3306`.
pub fn listener_name(address: &str, port: u16) -> String {
    format!("{address}_{port}")
}

/// `host:port`, istiod `util.DomainName`.
pub fn domain_name(host: &str, port: u16) -> String {
    format!("{host}:{port}")
}

/// Route metadata path of a VirtualService.
pub fn vs_config_path(ns: &str, name: &str) -> String {
    format!("/apis/networking.istio.io/v1/namespaces/{ns}/virtual-service/{name}")
}
