//! The tracked customers: a capped table with least-recently-seen order.
//!
//! Written small instead of taken from a crate so that its memory is known
//! exactly: a slab of fixed-size slots (never more than the cap) linked in
//! recency order, and an open-addressing index from customer key to slot
//! (linear probing, deletion by backward shift, so no tombstones pile up
//! under eviction churn). Every operation is O(1) expected; evicting idle
//! customers is O(1) per customer evicted.

use super::customer::{CustomerWindows, Secs};
use std::mem::size_of;

/// "No slot" in links and in the free list.
const NIL: u32 = u32::MAX;
/// Index buckets to start with; the index doubles as customers arrive.
const INDEX_MIN_BUCKETS: usize = 1_024;
/// The index grows before it is fuller than 3/4 (numerator, denominator).
const INDEX_MAX_LOAD: (usize, usize) = (3, 4);
/// Bytes of one index bucket: a key and a slot number.
const INDEX_BUCKET_BYTES: usize = size_of::<u64>() + size_of::<u32>();
/// Most index bytes per tracked customer: at worst the index is a power of
/// two just past 4/3 of the cap, under 8/3 buckets per customer.
pub const INDEX_BYTES_PER_CUSTOMER: usize = (INDEX_BUCKET_BYTES * 8).div_ceil(3);

/// One tracked customer: its key, its place in recency order, its windows.
#[derive(Debug, Clone)]
struct Slot {
    key: u64,
    /// Toward the most recently seen.
    newer: u32,
    /// Toward the least recently seen; in the free list, the next free slot.
    older: u32,
    windows: CustomerWindows,
}

/// Bytes one tracked customer costs at most: its slot plus its share of
/// the index. Every buffer is fixed-size: nothing grows with traffic.
pub const BYTES_PER_CUSTOMER: usize = size_of::<Slot>() + INDEX_BYTES_PER_CUSTOMER;

/// What finding a customer did to the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Found {
    /// Already tracked.
    Tracked,
    /// Newly tracked, in room the table had.
    Added,
    /// Newly tracked in the place of the least recently seen customer.
    Replaced,
}

/// Customers by key, at most `cap` of them, in least-recently-seen order.
#[derive(Debug)]
pub(super) struct CustomerTable {
    index: KeyIndex,
    slots: Vec<Slot>,
    free: u32,
    newest: u32,
    oldest: u32,
    len: u32,
    cap: u32,
}

impl CustomerTable {
    pub fn new(cap: usize) -> Self {
        let cap = u32::try_from(cap).expect("the cap fits a slot number");
        assert!(
            (1..NIL).contains(&cap),
            "a table tracks at least one customer"
        );
        CustomerTable {
            index: KeyIndex::new(cap as usize),
            slots: Vec::new(),
            free: NIL,
            newest: NIL,
            oldest: NIL,
            len: 0,
            cap,
        }
    }

    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Bytes held by the slab and the index, allocated capacity included.
    pub fn memory_bytes(&self) -> usize {
        self.slots.capacity() * size_of::<Slot>() + self.index.memory_bytes()
    }

    /// The customer `key`, tracked from now on and made the most recently
    /// seen; at the cap the least recently seen one makes room.
    pub fn find(&mut self, key: u64) -> (&mut CustomerWindows, Found) {
        let (slot, found) = match self.index.get(key) {
            Some(slot) => {
                self.unlink(slot);
                (slot, Found::Tracked)
            }
            None => self.admit(key),
        };
        self.link_newest(slot);
        self.check();
        (&mut self.slots[slot as usize].windows, found)
    }

    /// Forgets customers, least recently seen first, while `idle` says so.
    /// Returns how many went.
    pub fn evict_while(&mut self, idle: impl Fn(Secs) -> bool) -> usize {
        let mut evicted = 0;
        while self.oldest != NIL && idle(self.slots[self.oldest as usize].windows.last_seen()) {
            let slot = self.oldest;
            self.remove(slot);
            self.release(slot);
            evicted += 1;
        }
        self.check();
        evicted
    }

    fn admit(&mut self, key: u64) -> (u32, Found) {
        let (slot, found) = if self.len < self.cap {
            self.len += 1;
            (self.take_free(), Found::Added)
        } else {
            let slot = self.oldest;
            self.remove(slot);
            self.len += 1;
            (slot, Found::Replaced)
        };
        let entry = &mut self.slots[slot as usize];
        entry.key = key;
        entry.windows = CustomerWindows::EMPTY;
        self.index.insert(key, slot);
        (slot, found)
    }

    /// Unlinks and unindexes a tracked slot.
    fn remove(&mut self, slot: u32) {
        self.unlink(slot);
        let removed = self.index.remove(self.slots[slot as usize].key);
        assert_eq!(removed, Some(slot), "the index and the slab agree");
        self.len -= 1;
    }

    fn take_free(&mut self) -> u32 {
        if self.free != NIL {
            let slot = self.free;
            self.free = self.slots[slot as usize].older;
            return slot;
        }
        self.grow_slab();
        self.slots.push(Slot {
            key: 0,
            newer: NIL,
            older: NIL,
            windows: CustomerWindows::EMPTY,
        });
        (self.slots.len() - 1) as u32
    }

    /// Doubles the slab, never past the cap.
    fn grow_slab(&mut self) {
        let (len, cap) = (self.slots.len(), self.cap as usize);
        assert!(len < cap, "a free slot is taken only below the cap");
        if len == self.slots.capacity() {
            self.slots.reserve_exact(len.max(16).min(cap - len));
        }
    }

    fn release(&mut self, slot: u32) {
        self.slots[slot as usize].older = self.free;
        self.free = slot;
    }

    fn unlink(&mut self, slot: u32) {
        let Slot { newer, older, .. } = self.slots[slot as usize];
        match newer {
            NIL => self.newest = older,
            newer => self.slots[newer as usize].older = older,
        }
        match older {
            NIL => self.oldest = newer,
            older => self.slots[older as usize].newer = newer,
        }
    }

    fn link_newest(&mut self, slot: u32) {
        let entry = &mut self.slots[slot as usize];
        entry.newer = NIL;
        entry.older = self.newest;
        match self.newest {
            NIL => self.oldest = slot,
            newest => self.slots[newest as usize].newer = slot,
        }
        self.newest = slot;
    }

    /// What must hold after every operation (cheap: no walk).
    fn check(&self) {
        assert!(self.len <= self.cap, "never more customers than the cap");
        assert!(
            self.slots.capacity() <= self.cap as usize,
            "the slab stays within the cap"
        );
        assert_eq!(
            self.index.len(),
            self.len as usize,
            "one index entry per customer"
        );
        assert_eq!(self.newest == NIL, self.len == 0);
        assert_eq!(self.oldest == NIL, self.len == 0);
    }
}

/// Customer key to slot: open addressing with linear probing over keys
/// that are already uniform hashes (0 marks an empty bucket).
#[derive(Debug)]
struct KeyIndex {
    keys: Box<[u64]>,
    slots: Box<[u32]>,
    len: usize,
    /// Most buckets it may grow to: enough for the cap under the load limit.
    max_buckets: usize,
}

impl KeyIndex {
    fn new(cap: usize) -> Self {
        let max_buckets = (cap * INDEX_MAX_LOAD.1)
            .div_ceil(INDEX_MAX_LOAD.0)
            .next_power_of_two();
        let buckets = INDEX_MIN_BUCKETS.min(max_buckets);
        KeyIndex {
            keys: vec![0; buckets].into_boxed_slice(),
            slots: vec![NIL; buckets].into_boxed_slice(),
            len: 0,
            max_buckets,
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    fn memory_bytes(&self) -> usize {
        self.keys.len() * INDEX_BUCKET_BYTES
    }

    fn mask(&self) -> usize {
        self.keys.len() - 1
    }

    /// The bucket holding `key`, or the empty one where it would go.
    fn probe(&self, key: u64) -> usize {
        assert!(key != 0, "0 marks an empty bucket");
        let mask = self.mask();
        let mut at = key as usize & mask;
        while self.keys[at] != 0 && self.keys[at] != key {
            at = (at + 1) & mask;
        }
        at
    }

    fn get(&self, key: u64) -> Option<u32> {
        let at = self.probe(key);
        (self.keys[at] == key).then(|| self.slots[at])
    }

    fn insert(&mut self, key: u64, slot: u32) {
        if (self.len + 1) * INDEX_MAX_LOAD.1 > self.keys.len() * INDEX_MAX_LOAD.0 {
            self.grow();
        }
        let at = self.probe(key);
        assert_eq!(self.keys[at], 0, "a key is inserted once");
        self.keys[at] = key;
        self.slots[at] = slot;
        self.len += 1;
        assert!(
            self.len < self.keys.len(),
            "an empty bucket always ends a probe"
        );
    }

    fn remove(&mut self, key: u64) -> Option<u32> {
        let mut hole = self.probe(key);
        if self.keys[hole] != key {
            return None;
        }
        let removed = self.slots[hole];
        let mask = self.mask();
        let mut next = (hole + 1) & mask;
        // Backward shift: pull later entries of the run into the hole when
        // their home bucket is not between the hole and where they sit.
        while self.keys[next] != 0 {
            let home = self.keys[next] as usize & mask;
            if (next.wrapping_sub(home) & mask) >= (next.wrapping_sub(hole) & mask) {
                self.keys[hole] = self.keys[next];
                self.slots[hole] = self.slots[next];
                hole = next;
            }
            next = (next + 1) & mask;
        }
        self.keys[hole] = 0;
        self.slots[hole] = NIL;
        self.len -= 1;
        Some(removed)
    }

    fn grow(&mut self) {
        let buckets = self.keys.len() * 2;
        assert!(
            buckets <= self.max_buckets,
            "the index grows only up to the cap"
        );
        let keys = std::mem::replace(&mut self.keys, vec![0; buckets].into_boxed_slice());
        let slots = std::mem::replace(&mut self.slots, vec![NIL; buckets].into_boxed_slice());
        self.len = 0;
        for (key, slot) in keys.iter().zip(slots.iter()) {
            if *key != 0 {
                let at = self.probe(*key);
                self.keys[at] = *key;
                self.slots[at] = *slot;
                self.len += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{CARD_METHOD_SLOTS, DUPLICATE_RING_ENTRIES, VELOCITY_BUCKETS};

    #[test]
    fn bytes_per_customer_is_its_slot_and_its_share_of_the_index() {
        // The fixed-capacity buffers of one customer ...
        let velocity = VELOCITY_BUCKETS * size_of::<u16>() + size_of::<u32>();
        let amounts = DUPLICATE_RING_ENTRIES * (size_of::<u64>() + size_of::<Secs>()) + 1;
        let methods = CARD_METHOD_SLOTS * (size_of::<u64>() + size_of::<Secs>());
        let streak_and_clock = size_of::<u32>() + size_of::<Secs>();
        // ... its key and recency links.
        let slot_fields = size_of::<u64>() + 2 * size_of::<u32>();
        let fields = velocity + amounts + methods + streak_and_clock + slot_fields;
        let slot = size_of::<Slot>();
        // Nested arrays are aligned to 8 bytes each: a few bytes of padding.
        assert!(
            slot >= fields && slot - fields < 16,
            "{slot} vs {fields}: padding only"
        );
        assert_eq!(BYTES_PER_CUSTOMER, slot + INDEX_BYTES_PER_CUSTOMER);
        assert_eq!(INDEX_BYTES_PER_CUSTOMER, 32);
        // A full table is within the bound, allocated capacity included.
        for cap in [1, 3, 767, 768, 769, 1_000, 4_096] {
            let mut table = CustomerTable::new(cap);
            for i in 0..2 * cap as u64 {
                table.find(key(i));
            }
            assert_eq!(table.len(), cap);
            assert!(
                table.memory_bytes() <= cap * BYTES_PER_CUSTOMER,
                "cap {cap}"
            );
        }
    }

    /// Keys spread like hashes, never 0.
    fn key(i: u64) -> u64 {
        i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1
    }

    #[test]
    fn the_least_recently_seen_customer_makes_room() {
        let mut table = CustomerTable::new(3);
        for i in 0..3 {
            assert_eq!(table.find(key(i)).1, Found::Added);
        }
        assert_eq!(table.find(key(0)).1, Found::Tracked, "0 is now the newest");
        assert_eq!(table.find(key(3)).1, Found::Replaced, "1 went");
        assert_eq!(table.len(), 3);
        assert_eq!(table.find(key(0)).1, Found::Tracked);
        assert_eq!(table.find(key(2)).1, Found::Tracked);
        assert_eq!(table.find(key(1)).1, Found::Replaced, "1 was forgotten");
    }

    #[test]
    fn idle_customers_are_evicted_oldest_first_and_their_slots_reused() {
        let mut table = CustomerTable::new(10);
        for i in 0..5 {
            table.find(key(i)).0.see(100 + i as Secs);
        }
        assert_eq!(table.evict_while(|seen| seen < 103), 3);
        assert_eq!(table.len(), 2);
        assert_eq!(table.find(key(4)).1, Found::Tracked);
        assert_eq!(table.find(key(0)).1, Found::Added);
        assert_eq!(table.slots.len(), 5, "a freed slot was reused");
        assert_eq!(table.evict_while(|_| true), 3);
        assert_eq!(table.len(), 0);
    }

    #[test]
    fn the_index_survives_churn_without_growing_past_the_cap() {
        let cap = 5_000;
        let mut table = CustomerTable::new(cap);
        for i in 0..200_000 {
            table.find(key(i));
            assert!(table.len() <= cap);
        }
        // The newest `cap` are all still found.
        for i in 200_000 - cap as u64..200_000 {
            assert_eq!(table.find(key(i)).1, Found::Tracked, "{i}");
        }
        assert!(table.memory_bytes() <= cap * BYTES_PER_CUSTOMER);
        assert!(table.index.keys.len() <= table.index.max_buckets);
    }

    #[test]
    fn removal_keeps_every_other_key_reachable() {
        let mut index = KeyIndex::new(64);
        // Keys sharing a home bucket form one run.
        let keys: Vec<u64> = (1..=40).map(|i| (i << 20) | 3).collect();
        for (slot, k) in keys.iter().enumerate() {
            index.insert(*k, slot as u32);
        }
        for k in keys.iter().step_by(3) {
            assert!(index.remove(*k).is_some());
        }
        for (slot, k) in keys.iter().enumerate() {
            let expected = (slot % 3 != 0).then_some(slot as u32);
            assert_eq!(index.get(*k), expected, "key {k}");
        }
    }
}
