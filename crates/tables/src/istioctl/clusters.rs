//! `istioctl proxy-config clusters` (configdump/cluster.go).

use serde_json::Value;

use super::{cluster_key_less, describe_management, gosort, parse_subset_key, tabwrite, Dump};

/// `--fqdn`, `--port`, `--subset`, `--direction`: substrings of the name.
#[derive(Debug, Clone, Default)]
pub struct ClusterFilter {
    pub fqdn: String,
    pub port: u32,
    pub subset: String,
    pub direction: String,
}

impl ClusterFilter {
    pub fn verify(&self, name: &str) -> bool {
        (self.fqdn.is_empty() || name.contains(&self.fqdn))
            && (self.direction.is_empty() || name.contains(&self.direction))
            && (self.subset.is_empty() || name.contains(&self.subset))
            && (self.port == 0 || name.contains(&format!("|{}|", self.port)))
    }
}

/// The clusters istioctl lists, in its order.
pub fn sorted_clusters<'a>(d: &Dump<'a>) -> Vec<&'a Value> {
    let mut c = d.clusters();
    gosort::sort_slice(&mut c, |a, b| {
        cluster_key_less(
            a["name"].as_str().unwrap_or_default(),
            b["name"].as_str().unwrap_or_default(),
        )
    });
    c
}

/// `Cluster.GetType()`: the enum's name, `STATIC` when absent (its zero
/// value, which protobuf JSON leaves out).
fn cluster_type(c: &Value) -> &str {
    c["type"].as_str().unwrap_or("STATIC")
}

/// `PrintClusterSummary`; `with_type` adds istioctl `all`'s `cluster/` names.
pub fn cluster_summary(d: &Dump<'_>, f: &ClusterFilter, with_type: bool) -> String {
    let mut s = String::from(if with_type {
        "NAME\tSERVICE FQDN\tPORT\tSUBSET\tDIRECTION\tTYPE\tDESTINATION RULE\n"
    } else {
        "SERVICE FQDN\tPORT\tSUBSET\tDIRECTION\tTYPE\tDESTINATION RULE\n"
    });
    for c in sorted_clusters(d) {
        let name = c["name"].as_str().unwrap_or_default();
        if !f.verify(name) {
            continue;
        }
        let mgmt = describe_management(&c["metadata"]);
        let ty = cluster_type(c);
        if name.split('|').count() > 3 {
            let (direction, subset, fqdn, port) = parse_subset_key(name);
            let subset = if subset.is_empty() {
                "-".into()
            } else {
                subset
            };
            if with_type {
                s.push_str(&format!(
                    "cluster/{name}\t{fqdn}\t{port}\t{subset}\t{direction}\t{ty}\t{mgmt}\n"
                ));
            } else {
                s.push_str(&format!(
                    "{fqdn}\t{port}\t{subset}\t{direction}\t{ty}\t{mgmt}\n"
                ));
            }
        } else if with_type && !name.is_empty() {
            // istioctl renames the cluster before printing both columns.
            s.push_str(&format!(
                "cluster/{name}\tcluster/{name}\t-\t-\t-\t{ty}\t{mgmt}\n"
            ));
        } else {
            s.push_str(&format!("{name}\t-\t-\t-\t{ty}\t{mgmt}\n"));
        }
    }
    tabwrite(5, &s)
}
