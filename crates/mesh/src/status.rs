//! `istioctl proxy-status`: whether each proxy has the configuration the
//! control plane last computed.

use std::fmt::Write;

/// One proxy's row.
pub struct ProxyStatus {
    pub id: String,
    pub synced: bool,
    pub version: String,
}

/// istioctl's table: `SYNCED` or `STALE` per xDS type.
pub fn table(rows: &[ProxyStatus]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<44} {:<12} {:<8} {:<8} {:<8} {:<8} {:<10} {:<16} VERSION",
        "NAME", "CLUSTER", "CDS", "LDS", "EDS", "RDS", "ECDS", "ISTIOD"
    );
    for r in rows {
        let st = if r.synced { "SYNCED" } else { "STALE" };
        let _ = writeln!(
            s,
            "{:<44} {:<12} {st:<8} {st:<8} {st:<8} {st:<8} {:<10} {:<16} {}",
            r.id, "Kubernetes", "NOT SENT", "istiod-meshsim", r.version
        );
    }
    s
}
