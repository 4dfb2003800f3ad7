//! Per-cluster counters, named as Envoy names them on `/stats`.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters a cluster exposes on `/stats` and `/clusters`. They survive
/// table pushes (Envoy keeps stats by cluster name).
#[derive(Debug, Default)]
pub struct ClusterStats {
    pub upstream_cx_total: AtomicU64,
    pub upstream_cx_active: AtomicU64,
    pub upstream_cx_overflow: AtomicU64,
    pub upstream_cx_connect_fail: AtomicU64,
    pub upstream_cx_connect_timeout: AtomicU64,
    pub upstream_rq_total: AtomicU64,
    pub upstream_rq_pending_overflow: AtomicU64,
    pub upstream_rq_pending_total: AtomicU64,
    pub upstream_rq_per_try_timeout: AtomicU64,
    pub upstream_rq_retry: AtomicU64,
    pub upstream_rq_timeout: AtomicU64,
    pub upstream_rq_2xx: AtomicU64,
    pub upstream_rq_4xx: AtomicU64,
    pub upstream_rq_5xx: AtomicU64,
}

impl ClusterStats {
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a response by status class.
    pub fn count_status(&self, status: u16) {
        match status {
            200..=299 => Self::inc(&self.upstream_rq_2xx),
            400..=499 => Self::inc(&self.upstream_rq_4xx),
            500..=599 => Self::inc(&self.upstream_rq_5xx),
            _ => {}
        }
    }

    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        vec![
            ("upstream_cx_total", g(&self.upstream_cx_total)),
            ("upstream_cx_active", g(&self.upstream_cx_active)),
            ("upstream_cx_overflow", g(&self.upstream_cx_overflow)),
            (
                "upstream_cx_connect_fail",
                g(&self.upstream_cx_connect_fail),
            ),
            (
                "upstream_cx_connect_timeout",
                g(&self.upstream_cx_connect_timeout),
            ),
            ("upstream_rq_total", g(&self.upstream_rq_total)),
            (
                "upstream_rq_pending_overflow",
                g(&self.upstream_rq_pending_overflow),
            ),
            (
                "upstream_rq_pending_total",
                g(&self.upstream_rq_pending_total),
            ),
            (
                "upstream_rq_per_try_timeout",
                g(&self.upstream_rq_per_try_timeout),
            ),
            ("upstream_rq_retry", g(&self.upstream_rq_retry)),
            ("upstream_rq_timeout", g(&self.upstream_rq_timeout)),
            ("upstream_rq_2xx", g(&self.upstream_rq_2xx)),
            ("upstream_rq_4xx", g(&self.upstream_rq_4xx)),
            ("upstream_rq_5xx", g(&self.upstream_rq_5xx)),
        ]
    }
}
