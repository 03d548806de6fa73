//! Free-address allocation for one pool (DHCPv4 range, DHCPv6 range, or delegated-prefix pool).
//!
//! Dense pools (up to 2^24 units) use striped two-level bitmaps: a set bit is a free unit, a
//! summary bit marks a word with any free unit, so finding a free address costs a few word reads
//! even at 99% utilisation (no linear scan over leases). Each worker starts in its own stripe
//! (the "per-worker free list" of DESIGN.md), so workers rarely contend on a stripe lock.
//! Huge sparse pools (typical IPv6 /64s) cannot be bitmapped; they are probed at pseudo-random
//! offsets and the lease store's address index decides whether a candidate is free.

use crossbeam_utils::CachePadded;
use parking_lot::Mutex;

/// Pools up to this many units are tracked exactly with bitmaps.
pub const DENSE_MAX_UNITS: u64 = 1 << 24;

#[derive(Debug)]
struct Bitmap {
    words: Box<[u64]>,
    summary: Box<[u64]>,
    free: u64,
    cursor: usize,
}

impl Bitmap {
    fn new_full(units: u64) -> Bitmap {
        let nwords = units.div_ceil(64) as usize;
        let mut words = vec![u64::MAX; nwords].into_boxed_slice();
        if units % 64 != 0 {
            words[nwords - 1] = (1u64 << (units % 64)) - 1;
        }
        let nsum = nwords.div_ceil(64);
        let mut summary = vec![u64::MAX; nsum].into_boxed_slice();
        if nwords % 64 != 0 {
            summary[nsum - 1] = (1u64 << (nwords % 64)) - 1;
        }
        Bitmap { words, summary, free: units, cursor: 0 }
    }

    fn pop(&mut self) -> Option<u64> {
        if self.free == 0 {
            return None;
        }
        let nsum = self.summary.len();
        for step in 0..=nsum {
            let si = (self.cursor + step) % nsum;
            let s = self.summary[si];
            if s == 0 {
                continue;
            }
            let wi = si * 64 + s.trailing_zeros() as usize;
            let w = self.words[wi];
            let bit = w.trailing_zeros() as u64;
            self.words[wi] = w & (w - 1);
            if self.words[wi] == 0 {
                self.summary[si] &= !(1u64 << (wi % 64));
            }
            self.free -= 1;
            self.cursor = si;
            return Some(wi as u64 * 64 + bit);
        }
        None
    }

    /// Mark used. Returns whether it was free.
    fn take(&mut self, unit: u64) -> bool {
        let wi = (unit / 64) as usize;
        let mask = 1u64 << (unit % 64);
        if self.words[wi] & mask == 0 {
            return false;
        }
        self.words[wi] &= !mask;
        if self.words[wi] == 0 {
            self.summary[wi / 64] &= !(1u64 << (wi % 64));
        }
        self.free -= 1;
        true
    }

    /// Mark free. Returns whether it was used.
    fn put(&mut self, unit: u64) -> bool {
        let wi = (unit / 64) as usize;
        let mask = 1u64 << (unit % 64);
        if self.words[wi] & mask != 0 {
            return false;
        }
        self.words[wi] |= mask;
        self.summary[wi / 64] |= 1u64 << (wi % 64);
        self.free += 1;
        true
    }
}

#[derive(Debug)]
enum Kind {
    Dense { stripe_units: u64, stripes: Box<[CachePadded<Mutex<Bitmap>>]> },
    Sparse { probe: std::sync::atomic::AtomicU64 },
}

/// The free set of one pool. Units are offsets from the pool start (addresses, or prefixes of the
/// delegated length for PD pools).
#[derive(Debug)]
pub struct PoolAlloc {
    units: u64,
    kind: Kind,
}

impl PoolAlloc {
    /// A pool of `units` free units, split into `stripes` stripes (clamped to sensible bounds).
    pub fn new(units: u64, stripes: usize) -> PoolAlloc {
        if units > DENSE_MAX_UNITS {
            return PoolAlloc { units, kind: Kind::Sparse { probe: std::sync::atomic::AtomicU64::new(0) } };
        }
        // Stripes of at least 4096 units keep the bitmaps' summary scans short but useful.
        let max_stripes = (units / 4096).max(1) as usize;
        let n = stripes.clamp(1, max_stripes.min(64));
        let stripe_units = units.div_ceil(n as u64);
        let stripes = (0..n)
            .map(|i| {
                let start = i as u64 * stripe_units;
                let len = stripe_units.min(units - start);
                CachePadded::new(Mutex::new(Bitmap::new_full(len)))
            })
            .collect();
        PoolAlloc { units, kind: Kind::Dense { stripe_units, stripes } }
    }

    pub fn units(&self) -> u64 {
        self.units
    }

    pub fn is_dense(&self) -> bool {
        matches!(self.kind, Kind::Dense { .. })
    }

    /// Take any free unit, starting in the worker's own stripe. For sparse pools, returns a
    /// candidate that the caller must confirm against the address index.
    pub fn pop(&self, worker: usize) -> Option<u64> {
        match &self.kind {
            Kind::Dense { stripe_units, stripes } => {
                let n = stripes.len();
                for i in 0..n {
                    let si = (worker + i) % n;
                    if let Some(u) = stripes[si].lock().pop() {
                        return Some(si as u64 * stripe_units + u);
                    }
                }
                None
            }
            Kind::Sparse { probe } => {
                // A multiplicative-hash sequence visits offsets spread over the whole pool.
                let n = probe.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let x = (n ^ (worker as u64) << 56).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                Some((x ^ (x >> 29)) % self.units)
            }
        }
    }

    /// Mark a specific unit used (returns whether it was free; always true for sparse pools).
    pub fn take(&self, unit: u64) -> bool {
        match &self.kind {
            Kind::Dense { stripe_units, stripes } if unit < self.units => {
                stripes[(unit / stripe_units) as usize].lock().take(unit % stripe_units)
            }
            _ => true,
        }
    }

    /// Return a unit to the free set.
    pub fn put(&self, unit: u64) {
        if let Kind::Dense { stripe_units, stripes } = &self.kind {
            if unit < self.units {
                stripes[(unit / stripe_units) as usize].lock().put(unit % stripe_units);
            }
        }
    }

    /// Free units (exact for dense pools; the pool size for sparse ones).
    pub fn free(&self) -> u64 {
        match &self.kind {
            Kind::Dense { stripes, .. } => stripes.iter().map(|s| s.lock().free).sum(),
            Kind::Sparse { .. } => self.units,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hands_out_every_unit_once_then_none() {
        for units in [1u64, 63, 64, 65, 5000, 70_000] {
            let p = PoolAlloc::new(units, 4);
            let mut seen = vec![false; units as usize];
            for i in 0..units {
                let u = p.pop(i as usize % 3).expect("free unit");
                assert!(!seen[u as usize], "unit {u} handed out twice");
                seen[u as usize] = true;
            }
            assert_eq!(p.pop(0), None);
            assert_eq!(p.free(), 0);
            p.put(units / 2);
            assert_eq!(p.pop(1), Some(units / 2));
        }
    }

    #[test]
    fn take_and_put_are_exact() {
        let p = PoolAlloc::new(10_000, 2);
        assert!(p.take(9_999));
        assert!(!p.take(9_999));
        p.put(9_999);
        assert!(p.take(9_999));
        assert_eq!(p.free(), 9_999);
    }

    #[test]
    fn stays_fast_when_nearly_full() {
        let p = PoolAlloc::new(1 << 20, 2);
        for _ in 0..(1u64 << 20) - 10 {
            p.pop(0).unwrap();
        }
        // The last 10 free units are still found (via the summary), not by a scan of a million bits.
        for _ in 0..10 {
            assert!(p.pop(1).is_some());
        }
        assert!(p.pop(0).is_none());
    }
}
