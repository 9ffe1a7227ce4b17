//! A latency histogram of fixed size: logarithmic buckets, each power of
//! two split into [`SUB_BUCKETS`] linear ones (the layout of an HDR
//! histogram), so memory does not grow with the number of samples and a
//! percentile is off by at most 1 / `SUB_BUCKETS` (about 3 %).

use std::time::Duration;

/// Linear buckets per power of two, as a power of two.
const SUB_BUCKET_BITS: u32 = 5;
/// Linear buckets per power of two.
const SUB_BUCKETS: usize = 1 << SUB_BUCKET_BITS;
/// Largest recorded value, in microseconds (about 71 minutes); longer
/// samples count as this.
const MAX_VALUE_US: u64 = (1 << 32) - 1;
/// Buckets needed up to [`MAX_VALUE_US`].
const BUCKETS: usize = bucket_of(MAX_VALUE_US) + 1;

/// The bucket holding `us` microseconds: values below [`SUB_BUCKETS`] have
/// one each; above, `[2^e, 2^(e+1))` is split into `SUB_BUCKETS` equal parts.
const fn bucket_of(us: u64) -> usize {
    if us < SUB_BUCKETS as u64 {
        return us as usize;
    }
    let exponent = 63 - us.leading_zeros();
    let shift = exponent - SUB_BUCKET_BITS;
    let sub = ((us >> shift) as usize) & (SUB_BUCKETS - 1);
    (shift as usize + 1) * SUB_BUCKETS + sub
}

/// The largest value, in microseconds, that falls in `bucket`.
const fn highest_in(bucket: usize) -> u64 {
    if bucket < SUB_BUCKETS {
        return bucket as u64;
    }
    let shift = (bucket / SUB_BUCKETS - 1) as u32;
    let sub = (bucket % SUB_BUCKETS) as u64;
    ((SUB_BUCKETS as u64 + sub) << shift) + (1 << shift) - 1
}

/// Counts of latencies by bucket, with the exact maximum.
#[derive(Clone)]
pub struct Histogram {
    counts: Box<[u64]>,
    total: u64,
    max_us: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            total: 0,
            max_us: 0,
        }
    }
}

impl Histogram {
    pub fn record(&mut self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).map_or(MAX_VALUE_US, |us| us.min(MAX_VALUE_US));
        self.counts[bucket_of(us)] += 1;
        self.total += 1;
        self.max_us = self.max_us.max(us);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts.iter()) {
            *mine += theirs;
        }
        self.total += other.total;
        self.max_us = self.max_us.max(other.max_us);
    }

    /// Nearest-rank percentile `p` (0–100] in milliseconds: the highest
    /// value of the bucket holding that rank, never above the maximum;
    /// `None` without samples.
    pub fn percentile_ms(&self, p: f64) -> Option<f64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((p / 100.0) * self.total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (bucket, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(highest_in(bucket).min(self.max_us) as f64 / 1e3);
            }
        }
        Some(self.max_us as f64 / 1e3)
    }

    /// The largest sample in milliseconds; `None` without samples.
    pub fn max_ms(&self) -> Option<f64> {
        (self.total > 0).then(|| self.max_us as f64 / 1e3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_value_in_order() {
        let mut last = 0;
        for us in [0, 1, 31, 32, 33, 63, 64, 65, 1_000, 123_456, MAX_VALUE_US] {
            let bucket = bucket_of(us);
            assert!(bucket >= last && bucket < BUCKETS, "{us}");
            assert!(highest_in(bucket) >= us, "{us} above its bucket");
            assert!(
                highest_in(bucket) - us <= us / SUB_BUCKETS as u64,
                "{us}: bucket too wide"
            );
            last = bucket;
        }
    }

    #[test]
    fn percentiles_are_within_the_bucket_error() {
        let mut h = Histogram::default();
        for ms in 1..=100 {
            h.record(Duration::from_millis(ms));
        }
        let p50 = h.percentile_ms(50.0).unwrap_or_default();
        assert!((50.0..=50.0 * 1.04).contains(&p50), "{p50}");
        assert_eq!(h.percentile_ms(100.0), Some(100.0));
        assert_eq!(h.max_ms(), Some(100.0));
        assert_eq!(Histogram::default().percentile_ms(50.0), None);
    }
}
