//! fortio's statistics (fortio.org/fortio/stats/stats.go): a counter
//! (count, min, max, sum, sum of squares) and its histogram over fixed
//! bucket boundaries scaled by an offset and a divider, exported as
//! `HistogramData` with percentiles interpolated inside buckets. The same
//! buckets, rules and JSON field names, so meshsim's numbers are the
//! numbers fortio would print for the same latencies — and fortio's
//! report tools read them.

use serde::Serialize;
use std::fmt::Write as _;

use super::gofmt::g;

/// The bucket boundaries (stats.go `histogramBucketValues`).
const BUCKETS: [i32; 56] = [
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16, 18, 20, 25, 30, 35, 40, 45, 50, 60, 70, 80,
    90, 100, 120, 140, 160, 180, 200, 250, 300, 350, 400, 450, 500, 600, 700, 800, 900, 1000, 2000,
    3000, 4000, 5000, 7500, 10000, 20000, 30000, 40000, 50000, 75000, 100000,
];
const NUM_VALUES: usize = BUCKETS.len();
/// One bucket below the first value and one above the last.
const NUM_BUCKETS: usize = NUM_VALUES + 1;

#[derive(Debug, Clone, Copy, Default)]
pub struct Counter {
    pub count: i64,
    pub min: f64,
    pub max: f64,
    pub sum: f64,
    sum_of_squares: f64,
}

impl Counter {
    pub fn record(&mut self, v: f64) {
        if self.count == 0 {
            self.min = v;
            self.max = v;
        } else if v < self.min {
            self.min = v;
        } else if v > self.max {
            self.max = v;
        }
        self.count += 1;
        self.sum += v;
        self.sum_of_squares += v * v;
    }

    pub fn avg(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum / self.count as f64
        }
    }

    pub fn stddev(&self) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let n = self.count as f64;
        let sigma = (self.sum_of_squares - self.sum * self.sum / n) / n;
        if sigma < 0.0 {
            0.0
        } else {
            sigma.sqrt()
        }
    }

    /// Adds `o` (stats.go `Counter.Transfer`).
    pub fn merge(&mut self, o: &Counter) {
        if o.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = *o;
            return;
        }
        self.count += o.count;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
        self.sum += o.sum;
        self.sum_of_squares += o.sum_of_squares;
    }

    /// `Counter.Print`: `MSG : count N avg A +/- S min M max X sum T`.
    pub fn line(&self, msg: &str) -> String {
        format!(
            "{msg} : count {} avg {} +/- {} min {} max {} sum {}\n",
            self.count,
            g(self.avg(), Some(8)),
            g(self.stddev(), Some(4)),
            g(self.min, None),
            g(self.max, None),
            g(self.sum, Some(9))
        )
    }
}

#[derive(Debug, Clone)]
pub struct Histogram {
    pub counter: Counter,
    offset: f64,
    divider: f64,
    data: [i64; NUM_BUCKETS],
}

impl Histogram {
    pub fn new(offset: f64, divider: f64) -> Self {
        Self {
            counter: Counter::default(),
            offset,
            divider,
            data: [0; NUM_BUCKETS],
        }
    }

    pub fn record(&mut self, v: f64) {
        self.counter.record(v);
        let scaled = (v - self.offset) / self.divider;
        let idx = if scaled <= f64::from(BUCKETS[0]) {
            0
        } else if scaled > f64::from(BUCKETS[NUM_VALUES - 1]) {
            NUM_BUCKETS - 1
        } else {
            // Intervals are ]prev, cur]: a value exactly on a boundary
            // belongs to the bucket that ends there.
            let mut sv = scaled as i64;
            if scaled - (sv as f64) < 1e-12 {
                sv -= 1;
            }
            BUCKETS
                .iter()
                .position(|&b| i64::from(b) > sv)
                .unwrap_or(NUM_BUCKETS - 1)
        };
        self.data[idx] += 1;
    }

    /// Values in the first bucket (at or below the offset; for sleep
    /// times, the sleeps that were behind).
    pub fn first_bucket(&self) -> i64 {
        self.data[0]
    }

    /// Adds `o`, recorded with the same offset and divider.
    pub fn merge(&mut self, o: &Histogram) {
        self.counter.merge(&o.counter);
        for (a, b) in self.data.iter_mut().zip(o.data.iter()) {
            *a += b;
        }
    }

    /// `Histogram.Export` with `CalcPercentiles`.
    pub fn export(&self, percentiles: &[f64]) -> HistogramData {
        let c = &self.counter;
        let mut res = HistogramData {
            count: c.count,
            min: c.min,
            max: c.max,
            sum: c.sum,
            avg: c.avg(),
            std_dev: c.stddev(),
            data: Vec::new(),
            percentiles: None,
        };
        let Some(last) = self.data.iter().rposition(|&n| n > 0) else {
            return res;
        };
        let mut prev = BUCKETS[0];
        let mut total = 0i64;
        for (i, &n) in self.data.iter().enumerate().take(last + 1) {
            if n == 0 {
                if i < NUM_VALUES {
                    prev = BUCKETS[i];
                }
                continue;
            }
            total += n;
            let start = if res.data.is_empty() {
                c.min
            } else {
                self.divider * f64::from(prev) + self.offset
            };
            let end = if i < NUM_VALUES {
                let cur = BUCKETS[i];
                prev = cur;
                self.divider * f64::from(cur) + self.offset
            } else {
                c.max
            };
            res.data.push(Bucket {
                start,
                end,
                percent: 100.0 * total as f64 / c.count as f64,
                count: n,
            });
        }
        if let Some(b) = res.data.last_mut() {
            b.end = c.max;
        }
        if c.count > 0 && !percentiles.is_empty() {
            res.percentiles = Some(
                percentiles
                    .iter()
                    .map(|&p| Percentile {
                        percentile: p,
                        value: res.percentile(p),
                    })
                    .collect(),
            );
        }
        res
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Bucket {
    pub start: f64,
    pub end: f64,
    pub percent: f64,
    pub count: i64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Percentile {
    pub percentile: f64,
    pub value: f64,
}

/// fortio's `HistogramData`, field for field.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct HistogramData {
    pub count: i64,
    pub min: f64,
    pub max: f64,
    pub sum: f64,
    pub avg: f64,
    pub std_dev: f64,
    pub data: Vec<Bucket>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub percentiles: Option<Vec<Percentile>>,
}

impl HistogramData {
    /// `CalcPercentile`: linear inside the bucket holding `p`.
    pub fn percentile(&self, p: f64) -> f64 {
        if self.data.is_empty() {
            return 0.0;
        }
        if p >= 100.0 {
            return self.max;
        }
        let mut pp = 100.0 / self.count as f64;
        if p <= pp {
            return self.min;
        }
        for b in &self.data {
            if p <= b.percent {
                return b.start + (p - pp) / (b.percent - pp) * (b.end - b.start);
            }
            pp = b.percent;
        }
        self.max
    }

    /// `HistogramData.Print`: the counter line, the buckets, the targets.
    pub fn print(&self, msg: &str) -> String {
        if self.data.is_empty() {
            return format!("{msg} : no data\n");
        }
        let mut out = format!(
            "{msg} : count {} avg {} +/- {} min {} max {} sum {}\n",
            self.count,
            g(self.avg, Some(8)),
            g(self.std_dev, Some(4)),
            g(self.min, None),
            g(self.max, None),
            g(self.sum, Some(9))
        );
        out.push_str("# range, mid point, percentile, count\n");
        for (i, b) in self.data.iter().enumerate() {
            let sep = if i == 0 { ">=" } else { ">" };
            let _ = writeln!(
                out,
                "{sep} {} <= {} , {} , {:.2}, {}",
                g(b.start, Some(6)),
                g(b.end, Some(6)),
                g((b.start + b.end) / 2.0, Some(6)),
                b.percent,
                b.count
            );
        }
        for p in self.percentiles.iter().flatten() {
            let _ = writeln!(
                out,
                "# target {}% {}",
                g(p.percentile, None),
                g(p.value, Some(6))
            );
        }
        out
    }
}

/// `-p 50,75,90,99,99.9`.
pub fn parse_percentiles(s: &str) -> Result<Vec<f64>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse::<f64>()
                .ok()
                .filter(|v| (0.0..=100.0).contains(v))
                .ok_or_else(|| format!("invalid percentile {p:?} in -p {s:?}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// stats_test.go's histogram: data 10, 20, 30 with divider 10 — the
    /// doc comment of CalcPercentile (p50 = 15 between 10 and 20).
    #[test]
    fn percentiles_interpolate_like_fortio() {
        let mut h = Histogram::new(0.0, 1.0);
        for v in [10.0, 20.0, 30.0] {
            h.record(v);
        }
        let d = h.export(&[50.0, 100.0]);
        let buckets: Vec<(f64, f64, i64)> =
            d.data.iter().map(|b| (b.start, b.end, b.count)).collect();
        assert_eq!(
            buckets,
            vec![(10.0, 10.0, 1), (18.0, 20.0, 1), (25.0, 30.0, 1)]
        );
        let p = d.percentiles.as_ref().expect("percentiles");
        assert_eq!(p[1].value, 30.0);
        assert_eq!(d.percentile(33.0), 10.0);
        // Inside ]18, 20]: from 33.3 % to 66.7 %.
        assert!(
            (d.percentile(50.0) - 19.0).abs() < 1e-9,
            "{}",
            d.percentile(50.0)
        );
    }

    /// A value on a boundary falls in the bucket ending there; values
    /// past the last boundary in the extra bucket ending at max.
    #[test]
    fn boundaries_and_overflow() {
        let mut h = Histogram::new(0.0, 0.001);
        h.record(0.002); // ]0.001, 0.002]
        h.record(0.0025); // ]0.002, 0.003]
        h.record(250.0); // > 100 s
        let d = h.export(&[]);
        let ends: Vec<f64> = d.data.iter().map(|b| b.end).collect();
        assert_eq!(ends, vec![0.002, 0.003, 250.0]);
        assert!(d.print("X").contains("> 100 <= 250 , 175 , 100.00, 1"));
        assert_eq!(
            Histogram::new(0.0, 1.0).export(&[50.0]).print("E"),
            "E : no data\n"
        );
    }
}
