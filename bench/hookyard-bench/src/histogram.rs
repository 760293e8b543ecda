//! A small log-bucketed latency histogram (HDR-style, about 1.6% relative
//! precision) for the benchmark tool.
//!
//! Why not keep every sample: a 10 s run at 75k req/s is 750k samples per
//! run and the receiver runs for as long as you like; a fixed array of
//! counters costs 30 KiB, records in O(1) without allocating, and merges by
//! addition (one histogram per load worker, merged at the end).
//!
//! Values are whole microseconds. Values below 64 have their own bucket;
//! above, every power of two is split into 64 equal sub-buckets, so a
//! bucket is never wider than 1/64 of its lower bound.

/// Sub-buckets per power of two (and the count of exact small values).
const SUB: u64 = 64;
/// log2(SUB).
const SUB_BITS: u32 = 6;
/// Buckets needed to cover every u64.
const BUCKETS: usize = (SUB + (64 - SUB_BITS as u64) * SUB) as usize;

#[derive(Clone)]
pub struct LatencyHistogram {
    counts: Vec<u64>,
    count: u64,
    sum: u128,
    max: u64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

/// Bucket index of a value.
fn index_of(value: u64) -> usize {
    if value < SUB {
        return value as usize;
    }
    let exp = 63 - value.leading_zeros(); // floor(log2(value)) >= SUB_BITS
    let shift = exp - SUB_BITS;
    let sub = (value >> shift) - SUB; // 0..SUB
    (SUB + u64::from(shift) * SUB + sub) as usize
}

/// The largest value that falls into bucket `index`.
fn highest_of(index: usize) -> u64 {
    let index = index as u64;
    if index < SUB {
        return index;
    }
    let shift = (index - SUB) / SUB;
    let sub = (index - SUB) % SUB;
    let lowest = (SUB + sub) << shift;
    lowest + ((1u64 << shift) - 1)
}

impl LatencyHistogram {
    pub fn new() -> Self {
        LatencyHistogram {
            counts: vec![0; BUCKETS],
            count: 0,
            sum: 0,
            max: 0,
        }
    }

    /// Records one latency in microseconds.
    pub fn record(&mut self, micros: u64) {
        self.counts[index_of(micros)] += 1;
        self.count += 1;
        self.sum += u128::from(micros);
        self.max = self.max.max(micros);
    }

    /// Adds every sample of `other` to `self`.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.count += other.count;
        self.sum += other.sum;
        self.max = self.max.max(other.max);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum as f64 / self.count as f64
        }
    }

    /// The value at quantile `q` (0.0..=1.0) in microseconds: the upper
    /// bound of the bucket holding the ⌈q·count⌉-th smallest sample, never
    /// above the true maximum. 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (index, n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return highest_of(index).min(self.max);
            }
        }
        self.max
    }

    /// [`Self::quantile`] in milliseconds, for reports.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        self.quantile(q) as f64 / 1000.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_values_are_exact() {
        let mut h = LatencyHistogram::new();
        for v in 1..=100 {
            h.record(v);
        }
        assert_eq!(h.quantile(0.5), 50);
        assert_eq!(h.quantile(0.9), 90);
        assert_eq!(h.quantile(0.99), 99);
        assert_eq!(h.quantile(1.0), 100);
        assert_eq!(h.max(), 100);
        assert_eq!(h.count(), 100);
        assert!((h.mean() - 50.5).abs() < 1e-9);
    }

    #[test]
    fn large_values_within_relative_precision() {
        let mut h = LatencyHistogram::new();
        for v in 1..=10_000 {
            h.record(v);
        }
        for (q, exact) in [(0.5, 5_000.0), (0.9, 9_000.0), (0.99, 9_900.0)] {
            let got = h.quantile(q) as f64;
            assert!(got >= exact, "q{q}: {got} < {exact}");
            assert!(got <= exact * (1.0 + 1.0 / 64.0), "q{q}: {got} too high");
        }
        assert_eq!(h.quantile(1.0), 10_000);
    }

    #[test]
    fn quantile_never_exceeds_the_maximum() {
        let mut h = LatencyHistogram::new();
        h.record(1_000_001);
        assert_eq!(h.quantile(0.5), 1_000_001);
        assert_eq!(h.quantile(0.99), 1_000_001);
    }

    #[test]
    fn bucket_bounds_round_trip() {
        for v in [
            0,
            1,
            63,
            64,
            65,
            127,
            128,
            129,
            1_000,
            65_535,
            1 << 40,
            u64::MAX,
        ] {
            let i = index_of(v);
            assert!(highest_of(i) >= v, "{v}");
            if i > 0 {
                assert!(highest_of(i - 1) < v, "{v}");
            }
        }
        assert_eq!(index_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn tail_is_found_among_many_fast_samples() {
        let mut h = LatencyHistogram::new();
        for _ in 0..990 {
            h.record(200);
        }
        for _ in 0..10 {
            h.record(50_000);
        }
        assert!((200..=203).contains(&h.quantile(0.5)));
        assert!((200..=203).contains(&h.quantile(0.99)));
        assert_eq!(h.quantile(0.991), 50_000);
    }

    #[test]
    fn merge_adds_counts_and_keeps_max() {
        let mut a = LatencyHistogram::new();
        let mut b = LatencyHistogram::new();
        for v in 1..=50 {
            a.record(v);
        }
        for v in 51..=100 {
            b.record(v);
        }
        a.merge(&b);
        assert_eq!(a.count(), 100);
        assert_eq!(a.quantile(0.5), 50);
        assert_eq!(a.max(), 100);
    }

    #[test]
    fn empty_histogram_reports_zero() {
        let h = LatencyHistogram::new();
        assert_eq!(h.quantile(0.99), 0);
        assert_eq!(h.mean(), 0.0);
    }
}
