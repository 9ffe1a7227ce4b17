//! One customer's windows: fixed-size arrays only, so a tracked customer
//! costs the same few hundred bytes however much it pays.
//!
//! Times are whole seconds since the Unix epoch in a `u32` (good until
//! 2106), which halves every stored time; windows therefore have a one
//! second resolution. Everything here is pure: time is passed in.

use crate::domain::{
    Amount, Currency, CARD_METHOD_SLOTS, DUPLICATE_RING_ENTRIES, VELOCITY_BUCKETS,
};

/// Seconds since the Unix epoch.
pub(super) type Secs = u32;

/// How the velocity window is cut into buckets: `span` buckets of
/// `bucket_secs` each cover the window (the last bucket may overhang it by
/// less than one bucket).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct VelocityGeometry {
    pub bucket_secs: u32,
    pub span: u32,
}

impl VelocityGeometry {
    pub fn new(window_secs: u32) -> Self {
        assert!(window_secs > 0, "a velocity window has a length");
        let bucket_secs = window_secs.div_ceil(VELOCITY_BUCKETS as u32);
        let span = window_secs.div_ceil(bucket_secs);
        assert!(span >= 1 && span as usize <= VELOCITY_BUCKETS);
        VelocityGeometry { bucket_secs, span }
    }

    pub fn bucket(&self, at: Secs) -> u32 {
        at / self.bucket_secs
    }
}

/// Payments per time bucket, in a ring. Only the newest `span` buckets
/// count; a bucket is cleared as the ring turns over it.
#[derive(Debug, Clone)]
struct VelocityBuckets {
    counts: [u16; VELOCITY_BUCKETS],
    /// Number of the newest bucket written (absolute, not a ring index).
    newest: u32,
}

impl VelocityBuckets {
    const EMPTY: VelocityBuckets = VelocityBuckets {
        counts: [0; VELOCITY_BUCKETS],
        newest: 0,
    };

    /// Counts one payment in `bucket`; one older than the window is dropped.
    fn record(&mut self, bucket: u32, span: u32) {
        self.advance(bucket);
        if self.newest - bucket >= span {
            return;
        }
        let slot = &mut self.counts[bucket as usize % VELOCITY_BUCKETS];
        *slot = slot.saturating_add(1);
    }

    fn advance(&mut self, bucket: u32) {
        if bucket <= self.newest {
            return;
        }
        let gap = (bucket - self.newest).min(VELOCITY_BUCKETS as u32);
        for step in 1..=gap {
            self.counts[(self.newest + step) as usize % VELOCITY_BUCKETS] = 0;
        }
        self.newest = bucket;
    }

    /// Payments in the newest `span` buckets.
    fn count(&self, span: u32) -> u32 {
        assert!(span >= 1 && span as usize <= VELOCITY_BUCKETS);
        let oldest = self.newest.saturating_sub(span - 1);
        (oldest..=self.newest)
            .map(|bucket| u32::from(self.counts[bucket as usize % VELOCITY_BUCKETS]))
            .sum()
    }
}

/// The customer's last [`DUPLICATE_RING_ENTRIES`] payments as packed
/// (amount, currency) keys with their times, oldest overwritten first.
#[derive(Debug, Clone)]
struct RecentAmounts {
    /// [`amount_key`] values; 0 marks an empty entry (amounts are positive).
    keys: [u64; DUPLICATE_RING_ENTRIES],
    times: [Secs; DUPLICATE_RING_ENTRIES],
    next: u8,
}

impl RecentAmounts {
    const EMPTY: RecentAmounts = RecentAmounts {
        keys: [0; DUPLICATE_RING_ENTRIES],
        times: [0; DUPLICATE_RING_ENTRIES],
        next: 0,
    };

    fn record(&mut self, key: u64, at: Secs) {
        assert!(key != 0, "an amount key is never the empty marker");
        let at_index = usize::from(self.next);
        self.keys[at_index] = key;
        self.times[at_index] = at;
        self.next = ((at_index + 1) % DUPLICATE_RING_ENTRIES) as u8;
    }

    /// Entries with `key` newer than `after` (exclusive).
    fn count(&self, key: u64, after: Secs) -> u32 {
        self.keys
            .iter()
            .zip(&self.times)
            .filter(|(k, t)| **k == key && **t > after)
            .count() as u32
    }
}

/// Distinct payment methods (hashed) with the last time each was used.
#[derive(Debug, Clone)]
struct RecentMethods {
    /// Method hashes; 0 marks an empty slot ([`method_key`] never gives 0).
    hashes: [u64; CARD_METHOD_SLOTS],
    times: [Secs; CARD_METHOD_SLOTS],
}

impl RecentMethods {
    const EMPTY: RecentMethods = RecentMethods {
        hashes: [0; CARD_METHOD_SLOTS],
        times: [0; CARD_METHOD_SLOTS],
    };

    /// Notes `hash` used at `at`; entries not newer than `after` are out
    /// of the window and free. When every slot is live the oldest goes.
    fn record(&mut self, hash: u64, at: Secs, after: Secs) {
        assert!(hash != 0, "a method hash is never the empty marker");
        let slot = self
            .hashes
            .iter()
            .position(|h| *h == hash)
            .unwrap_or_else(|| self.free_or_oldest(after));
        self.hashes[slot] = hash;
        self.times[slot] = self.times[slot].max(at);
    }

    fn free_or_oldest(&mut self, after: Secs) -> usize {
        let free = (0..CARD_METHOD_SLOTS).find(|&i| self.hashes[i] == 0 || self.times[i] <= after);
        let slot = free.unwrap_or_else(|| {
            (0..CARD_METHOD_SLOTS)
                .min_by_key(|&i| self.times[i])
                .expect("slots exist")
        });
        self.times[slot] = 0;
        slot
    }

    /// Distinct methods used after `after` (exclusive).
    fn count(&self, after: Secs) -> u32 {
        self.hashes
            .iter()
            .zip(&self.times)
            .filter(|(h, t)| **h != 0 && **t > after)
            .count() as u32
    }
}

/// Everything the rules remember about one customer.
#[derive(Debug, Clone)]
pub(super) struct CustomerWindows {
    velocity: VelocityBuckets,
    amounts: RecentAmounts,
    methods: RecentMethods,
    /// Consecutive failed payments since the last success.
    failures: u32,
    /// The latest time seen for this customer: its clock never goes back.
    last_seen: Secs,
}

impl CustomerWindows {
    pub const EMPTY: CustomerWindows = CustomerWindows {
        velocity: VelocityBuckets::EMPTY,
        amounts: RecentAmounts::EMPTY,
        methods: RecentMethods::EMPTY,
        failures: 0,
        last_seen: 0,
    };

    /// Moves the customer's clock to `at` (never back) and returns it: an
    /// out-of-order time (warm-up, skew) counts as the latest seen.
    pub fn see(&mut self, at: Secs) -> Secs {
        self.last_seen = self.last_seen.max(at);
        self.last_seen
    }

    pub fn last_seen(&self) -> Secs {
        self.last_seen
    }

    /// Records a payment and returns the payments in the window.
    pub fn record_velocity(&mut self, at: Secs, geometry: VelocityGeometry) -> u32 {
        self.velocity.record(geometry.bucket(at), geometry.span);
        self.velocity.count(geometry.span)
    }

    /// Records an (amount, currency) and returns how often it was seen in
    /// the last `window_secs`, this time included.
    pub fn record_amount(&mut self, key: u64, at: Secs, window_secs: u32) -> u32 {
        self.amounts.record(key, at);
        self.amounts.count(key, at.saturating_sub(window_secs))
    }

    /// Records a payment method and returns the distinct methods in the
    /// last `window_secs`, this one included.
    pub fn record_method(&mut self, hash: u64, at: Secs, window_secs: u32) -> u32 {
        let after = at.saturating_sub(window_secs);
        self.methods.record(hash, at, after);
        self.methods.count(after)
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// A failure extends the streak; a success ends it.
    pub fn record_outcome(&mut self, succeeded: bool) {
        self.failures = if succeeded {
            0
        } else {
            self.failures.saturating_add(1)
        };
    }
}

/// An exact, collision-free key for (amount, currency): amounts fit in 37
/// bits and a currency's three letters in 15.
pub(super) fn amount_key(amount: Amount, currency: Currency) -> u64 {
    let minor = u64::try_from(amount.minor_units()).expect("amounts are positive");
    assert!(minor < 1 << 37, "amounts are at most MAX_AMOUNT");
    let letters = currency.code().bytes().fold(0u64, |acc, b| {
        (acc << 5) | u64::from(b.wrapping_sub(b'a') & 0x1f)
    });
    (minor << 15) | letters
}

/// A method hash that is never the empty marker.
pub(super) fn method_key(hash: u64) -> u64 {
    hash.max(1)
}

/// Whole seconds of a time in microseconds since the epoch, clamped to
/// what a [`Secs`] holds.
pub(super) fn secs_of(micros: i64) -> Secs {
    let secs = micros.div_euclid(1_000_000);
    Secs::try_from(secs.max(0)).unwrap_or(Secs::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Secs = 1_700_000_000;

    #[test]
    fn velocity_geometry_covers_the_window_in_at_most_sixty_buckets() {
        assert_eq!(
            VelocityGeometry::new(60),
            VelocityGeometry {
                bucket_secs: 1,
                span: 60
            }
        );
        assert_eq!(VelocityGeometry::new(7).span, 7);
        let hour = VelocityGeometry::new(3_600);
        assert_eq!((hour.bucket_secs, hour.span), (60, 60));
        let odd = VelocityGeometry::new(90);
        assert_eq!((odd.bucket_secs, odd.span), (2, 45));
    }

    #[test]
    fn velocity_slides_bucket_by_bucket() {
        let geometry = VelocityGeometry::new(60);
        let mut windows = CustomerWindows::EMPTY;
        assert_eq!(windows.record_velocity(T0, geometry), 1);
        assert_eq!(windows.record_velocity(T0 + 59, geometry), 2);
        assert_eq!(windows.record_velocity(T0 + 60, geometry), 2, "T0 left");
        assert_eq!(windows.record_velocity(T0 + 500, geometry), 1, "all left");
        // A late payment inside the window counts; one older is dropped.
        assert_eq!(windows.record_velocity(T0 + 450, geometry), 2);
        assert_eq!(windows.record_velocity(T0 + 400, geometry), 2);
    }

    #[test]
    fn duplicate_amounts_are_counted_per_amount_and_currency_in_the_window() {
        let usd = Currency::parse("usd").expect("usd");
        let eur = Currency::parse("eur").expect("eur");
        let a = amount_key(Amount::new(1_000).expect("amount"), usd);
        let b = amount_key(Amount::new(1_000).expect("amount"), eur);
        assert_ne!(a, b);
        let mut windows = CustomerWindows::EMPTY;
        assert_eq!(windows.record_amount(a, T0, 300), 1);
        assert_eq!(windows.record_amount(b, T0 + 1, 300), 1);
        assert_eq!(windows.record_amount(a, T0 + 2, 300), 2);
        assert_eq!(windows.record_amount(a, T0 + 300, 300), 2, "T0 left");
    }

    #[test]
    fn the_amount_ring_remembers_only_its_capacity() {
        let usd = Currency::parse("usd").expect("usd");
        let key = |minor| amount_key(Amount::new(minor).expect("amount"), usd);
        let mut windows = CustomerWindows::EMPTY;
        windows.record_amount(key(5), T0, 300);
        for other in 0..DUPLICATE_RING_ENTRIES as i64 - 1 {
            windows.record_amount(key(100 + other), T0, 300);
        }
        assert_eq!(windows.record_amount(key(5), T0, 300), 1, "overwritten");
    }

    #[test]
    fn methods_are_distinct_and_saturate_at_the_slot_count() {
        let mut windows = CustomerWindows::EMPTY;
        assert_eq!(windows.record_method(7, T0, 3_600), 1);
        assert_eq!(windows.record_method(7, T0 + 1, 3_600), 1, "same method");
        assert_eq!(windows.record_method(8, T0 + 2, 3_600), 2);
        for hash in 100..200 {
            windows.record_method(hash, T0 + 3, 3_600);
        }
        assert_eq!(
            windows.record_method(9, T0 + 4, 3_600),
            CARD_METHOD_SLOTS as u32
        );
        // An hour later only the new one counts.
        assert_eq!(windows.record_method(10, T0 + 3_604, 3_600), 1);
    }

    #[test]
    fn a_customers_clock_never_goes_back() {
        let mut windows = CustomerWindows::EMPTY;
        assert_eq!(windows.see(T0 + 10), T0 + 10);
        assert_eq!(windows.see(T0), T0 + 10);
        assert_eq!(secs_of(-5), 0);
        assert_eq!(secs_of(1_500_000), 1);
    }
}
