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
            clusters: vec![ClusterWeight::new("a", 90), ClusterWeight::new("b", 10)],
        };
        let picks: Vec<usize> = (0..100).filter_map(|r| pick_weighted(&wc, r)).collect();
        assert_eq!(picks.iter().filter(|i| **i == 0).count(), 90);
        assert_eq!(picks.iter().filter(|i| **i == 1).count(), 10);
        let zero = WeightedClusters {
            clusters: vec![ClusterWeight::new("a", 0)],
        };
        assert_eq!(pick_weighted(&zero, 5), None);
    }

    /// Over many seeds, 100 picks of a 90/10 split land within 0.1 of the
    /// weights almost always, while 10 picks often miss 90%: why the page
    /// asks for ~100 requests.
    #[test]
    fn statistical_check_over_seeds() {
        use rand::{Rng, SeedableRng};
        let wc = WeightedClusters {
            clusters: vec![ClusterWeight::new("v1", 90), ClusterWeight::new("v2", 10)],
        };
        let share = |seed: u64, n: usize| {
            let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
            let v1 = (0..n)
                .filter(|_| pick_weighted(&wc, rng.random()) == Some(0))
                .count();
            v1 as f64 / n as f64
        };
        let seeds = 0..500u64;
        let close_100 = seeds
            .clone()
            .filter(|s| (share(*s, 100) - 0.9).abs() <= 0.1)
            .count();
        let close_10 = seeds.filter(|s| (share(*s, 10) - 0.9).abs() < 0.05).count();
        assert!(
            close_100 >= 490,
            "100 samples within 0.1 for {close_100}/500 seeds"
        );
        assert!(
            close_10 < 300,
            "10 samples are often off: only {close_10}/500 hit 0.9"
        );
    }
}
