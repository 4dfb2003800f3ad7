//! Outlier detection (Envoy's outlier_detection_impl.cc, consecutive
//! errors): every answer or failure of a host is reported; a run of
//! `consecutive_5xx` 5xx answers (or of gateway errors, or of local-origin
//! failures when split) ejects the host at once, if fewer than
//! `max_ejection_percent` of the hosts are already out. An ejected host
//! leaves the load-balancing set for `base_ejection_time` × the times it
//! was ejected (capped at 300 s), and comes back on the first interval
//! sweep after that; each sweep that finds a host in service lowers its
//! count. With every host out and no panic threshold, requests find no
//! healthy upstream (`UH`).

use std::sync::Mutex;
use std::time::Duration;

use meshsim_tables::OutlierDetection;
use tokio::time::Instant;

/// Envoy's `max_ejection_time` default.
const MAX_EJECTION_TIME: Duration = Duration::from_secs(300);

/// What one attempt to a host came to, as the router reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// The host answered with this status.
    Status(u16),
    /// Connecting failed, or the exchange was reset (counted as a 503
    /// unless local-origin errors are split).
    LocalFailure,
    /// The attempt timed out (counted as a 504 unless split).
    LocalTimeout,
}

#[derive(Default, Clone)]
struct HostState {
    consecutive_5xx: u32,
    consecutive_gateway: u32,
    consecutive_local: u32,
    ejected_at: Option<Instant>,
    ejections: u32,
}

struct State {
    hosts: Vec<HostState>,
    /// Sweeps up to this one have been applied.
    last_sweep: u64,
}

pub struct Outlier {
    config: OutlierDetection,
    started: Instant,
    state: Mutex<State>,
}

impl Outlier {
    pub fn new(config: OutlierDetection, hosts: usize) -> Self {
        Outlier {
            config,
            started: Instant::now(),
            state: Mutex::new(State {
                hosts: vec![HostState::default(); hosts],
                last_sweep: 0,
            }),
        }
    }

    /// The `n`-th host (round robin) of the load-balancing set now; with a
    /// panic threshold, of all hosts when too few are healthy (Envoy's
    /// panic mode). `None` when no host is left. Per request: no
    /// allocation.
    pub fn pick(&self, n: usize, panic_threshold: Option<f64>) -> Option<usize> {
        let mut st = self.state.lock().ok()?;
        self.sweep(&mut st, Instant::now());
        let total = st.hosts.len();
        let healthy = st.hosts.iter().filter(|h| h.ejected_at.is_none()).count();
        // Envoy's default threshold is 50% when the cluster sets none.
        let threshold = panic_threshold.unwrap_or(50.0);
        let pct = if total == 0 {
            0.0
        } else {
            100.0 * healthy as f64 / total as f64
        };
        if total > 0 && threshold > 0.0 && pct < threshold {
            return Some(n % total);
        }
        if healthy == 0 {
            return None;
        }
        st.hosts
            .iter()
            .enumerate()
            .filter(|(_, h)| h.ejected_at.is_none())
            .nth(n % healthy)
            .map(|(i, _)| i)
    }

    /// Hosts in the load-balancing set now (see [`Outlier::pick`]).
    #[cfg(test)]
    fn available(&self, panic_threshold: Option<f64>) -> Vec<usize> {
        let n = self.state.lock().map(|s| s.hosts.len()).unwrap_or(0);
        let mut v: Vec<usize> = (0..n)
            .filter_map(|k| self.pick(k, panic_threshold))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Whether host `i` is ejected now.
    pub fn is_ejected(&self, i: usize) -> bool {
        let Ok(mut st) = self.state.lock() else {
            return false;
        };
        self.sweep(&mut st, Instant::now());
        st.hosts.get(i).is_some_and(|h| h.ejected_at.is_some())
    }

    /// `putHttpResponseCode` / `putResult` for host `i`.
    pub fn report(&self, i: usize, r: Report) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        let now = Instant::now();
        self.sweep(&mut st, now);
        let split = self.config.split_external_local_origin_errors;
        let status = match r {
            Report::Status(s) => s,
            Report::LocalFailure | Report::LocalTimeout if split => {
                let h = &mut st.hosts[i];
                h.consecutive_local += 1;
                let (n, enforce) = self.config.consecutive_local_origin_failure();
                if h.consecutive_local == n {
                    h.consecutive_local = 0;
                    self.eject(&mut st, i, enforce, now);
                }
                return;
            }
            // Not split: local failures count as the host's 503 / 504.
            Report::LocalFailure => 503,
            Report::LocalTimeout => 504,
        };
        let Some(h) = st.hosts.get_mut(i) else {
            return;
        };
        if split && matches!(r, Report::Status(_)) {
            h.consecutive_local = 0;
        }
        if status < 500 {
            h.consecutive_5xx = 0;
            h.consecutive_gateway = 0;
            return;
        }
        let mut eject = None;
        if matches!(status, 502..=504) {
            h.consecutive_gateway += 1;
            let (n, enforce) = self.config.consecutive_gateway_failure();
            if h.consecutive_gateway == n {
                h.consecutive_gateway = 0;
                eject = Some(enforce);
            }
        } else {
            h.consecutive_gateway = 0;
        }
        h.consecutive_5xx += 1;
        let (n, enforce) = self.config.consecutive_5xx();
        if h.consecutive_5xx == n {
            h.consecutive_5xx = 0;
            eject = Some(eject.unwrap_or(0).max(enforce));
        }
        if let Some(enforce) = eject {
            self.eject(&mut st, i, enforce, now);
        }
    }

    /// `ejectHost`: only while fewer than `max_ejection_percent` of the
    /// hosts are out, and only if enforced (istiod enforces at 100%).
    fn eject(&self, st: &mut State, i: usize, enforce: u32, now: Instant) {
        if enforce == 0 || st.hosts[i].ejected_at.is_some() {
            return;
        }
        let out = st.hosts.iter().filter(|h| h.ejected_at.is_some()).count();
        let pct = 100.0 * out as f64 / st.hosts.len() as f64;
        if pct < f64::from(self.config.max_ejection_percent()) {
            let h = &mut st.hosts[i];
            h.ejected_at = Some(now);
            h.ejections += 1;
        }
    }

    /// The interval sweeps due by `now`: a host whose ejection time has
    /// passed comes back; one in service has its ejection count lowered.
    fn sweep(&self, st: &mut State, now: Instant) {
        let interval = self.config.interval().max(Duration::from_millis(1));
        let due =
            (now.saturating_duration_since(self.started).as_nanos() / interval.as_nanos()) as u64;
        let base = self.config.base_ejection_time();
        // Past this many sweeps nothing is left to change.
        let from = st.last_sweep.max(due.saturating_sub(10_000));
        for k in (from + 1)..=due {
            let at = self.started + interval * u32::try_from(k).unwrap_or(u32::MAX);
            for h in &mut st.hosts {
                match h.ejected_at {
                    Some(t) => {
                        let time = (base * h.ejections).min(MAX_EJECTION_TIME.max(base));
                        if at.saturating_duration_since(t) >= time {
                            h.ejected_at = None;
                        }
                    }
                    None => h.ejections = h.ejections.saturating_sub(1),
                }
            }
        }
        st.last_sweep = st.last_sweep.max(due);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn od(n5xx: u32, max_pct: u32) -> OutlierDetection {
        OutlierDetection {
            consecutive_5xx: Some(n5xx),
            enforcing_consecutive_5xx: Some(100),
            interval: Some(meshsim_tables::Duration::from_secs(1)),
            base_ejection_time: Some(meshsim_tables::Duration::from_secs(3)),
            max_ejection_percent: Some(max_pct),
            ..Default::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn consecutive_5xx_eject_and_the_sweep_brings_back() {
        let o = Outlier::new(od(2, 100), 2);
        o.report(0, Report::Status(500));
        o.report(0, Report::Status(200));
        o.report(0, Report::Status(500));
        assert!(!o.is_ejected(0), "a success in between resets the run");
        o.report(0, Report::LocalFailure);
        assert!(o.is_ejected(0), "a connect failure counts as a 5xx");
        assert_eq!(o.available(Some(0.0)), vec![1]);
        o.report(1, Report::Status(503));
        o.report(1, Report::Status(503));
        assert!(
            o.available(Some(0.0)).is_empty(),
            "all out: no healthy host"
        );
        assert_eq!(o.available(Some(60.0)), vec![0, 1], "panic mode");
        // Ejected at t=0 for 3 s: back at the sweep at t=3 s.
        tokio::time::advance(Duration::from_millis(2900)).await;
        assert!(o.is_ejected(0));
        tokio::time::advance(Duration::from_millis(200)).await;
        assert!(!o.is_ejected(0));
    }

    // ejectHost: `ejected_percent < max_ejection_percent` before ejecting,
    // so with 10% the first host of any cluster goes, the second does not.
    #[tokio::test(start_paused = true)]
    async fn max_ejection_percent_limits_ejections() {
        let o = Outlier::new(od(1, 10), 3);
        o.report(0, Report::Status(500));
        o.report(1, Report::Status(500));
        assert!(o.is_ejected(0));
        assert!(!o.is_ejected(1));
    }

    // A 4xx resets the run; gateway errors alone are not enforced by
    // default (Envoy: enforcing_consecutive_gateway_failure 0).
    #[tokio::test(start_paused = true)]
    async fn gateway_errors_need_enforcement() {
        let cfg = OutlierDetection {
            consecutive_gateway_failure: Some(2),
            consecutive_5xx: Some(10),
            ..Default::default()
        };
        let o = Outlier::new(cfg, 1);
        o.report(0, Report::Status(502));
        o.report(0, Report::Status(502));
        assert!(!o.is_ejected(0));
        let cfg = OutlierDetection {
            consecutive_gateway_failure: Some(2),
            enforcing_consecutive_gateway_failure: Some(100),
            consecutive_5xx: Some(10),
            ..Default::default()
        };
        let o = Outlier::new(cfg, 1);
        o.report(0, Report::Status(504));
        o.report(0, Report::Status(404));
        o.report(0, Report::Status(504));
        assert!(!o.is_ejected(0));
        o.report(0, Report::Status(502));
        assert!(o.is_ejected(0));
    }
}
