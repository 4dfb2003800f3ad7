//! Weighted cluster selection (Envoy `WeightedClusterEntry`): a random
//! number modulo the total weight walks the cumulative weights. The random
//! number is injected so tests and scenarios are deterministic.

use crate::route::WeightedClusters;

/// Index of the cluster picked by `random`, or `None` if all weights are 0.
pub fn pick_weighted(wc: &WeightedClusters, random: u64) -> Option<usize> {
    let total: u64 = wc.clusters.iter().map(|c| u64::from(c.weight)).sum();
    if total == 0 {
        return None;
    }
    let mut point = random % total;
    for (i, c) in wc.clusters.iter().enumerate() {
        let w = u64::from(c.weight);
        if point < w {
            return Some(i);
        }
        point -= w;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::ClusterWeight;

    #[test]
    fn cumulative_walk() {
        let wc = WeightedClusters {
            clusters: vec![
                ClusterWeight {
                    name: "a".into(),
                    weight: 90,
                },
                ClusterWeight {
                    name: "b".into(),
                    weight: 10,
                },
            ],
        };
        let picks: Vec<usize> = (0..100).filter_map(|r| pick_weighted(&wc, r)).collect();
        assert_eq!(picks.iter().filter(|i| **i == 0).count(), 90);
        assert_eq!(picks.iter().filter(|i| **i == 1).count(), 10);
        let zero = WeightedClusters {
            clusters: vec![ClusterWeight {
                name: "a".into(),
                weight: 0,
            }],
        };
        assert_eq!(pick_weighted(&zero, 5), None);
    }
}
