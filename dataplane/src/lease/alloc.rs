//! Free-address allocation for one pool (DHCPv4 range, DHCPv6 range, or delegated-prefix pool).
//!
//! Dense pools (up to 2^24 units) use striped two-level bitmaps: a set bit is a free unit, a
//! summary bit marks a word with any free unit, so finding a free address costs a few word reads
//! even at 99% utilisation (no linear scan over leases). Each worker starts in its own stripe
//! (the "per-worker free list" of DESIGN.md), so workers rarely contend on a stripe lock.
//! Huge sparse pools (typical IPv6 /64s) cannot be bitmapped; they are probed at pseudo-random
//! offsets and the lease store's address index decides whether a candidate is free.
//!
//! Under high availability every address has an owner ([`Split`]), as in ISC DHCP's failover
//! design: a server allocates new addresses only from the free addresses it owns, so two servers
//! that cannot talk (or whose asynchronous replication lags) never hand the same free address to
//! two clients. The partner's free addresses become allocatable only when the control process
//! says so (`set_partner_free`), after partner-down plus a safety period.

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
        Bitmap {
            words,
            summary,
            free: units,
            cursor: 0,
        }
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

/// Who owns each unit of a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// This server owns everything (standalone, passive-backup active server).
    AllMine,
    /// Units whose mixed value modulo `modulus` is in `mine` (a bitmask of residues) are ours.
    /// Load-balancing: modulus 2, one residue each. Hot-standby: modulus 10, the standby owns
    /// one residue (a 10% reserve to serve new clients after a failover), the primary nine.
    Modulo { modulus: u8, mine: u16 },
}

impl Split {
    /// A stable hash of the unit so ownership interleaves across the whole pool.
    fn mix(unit: u64) -> u64 {
        let x = unit.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        x ^ (x >> 32)
    }
    pub fn is_mine(self, unit: u64) -> bool {
        match self {
            Split::AllMine => true,
            Split::Modulo { modulus, mine } => {
                mine & (1 << (Self::mix(unit) % u64::from(modulus))) != 0
            }
        }
    }
}

#[derive(Debug)]
enum Kind {
    Dense {
        stripe_units: u64,
        stripes: Box<[CachePadded<Mutex<Bitmap>>]>,
    },
    Sparse {
        probe: std::sync::atomic::AtomicU64,
    },
}

/// The free set of one pool. Units are offsets from the pool start (addresses, or prefixes of the
/// delegated length for PD pools).
#[derive(Debug)]
pub struct PoolAlloc {
    units: u64,
    /// Free units this server owns.
    kind: Kind,
    /// Free units the partner owns (empty when everything is ours).
    partner: Option<Kind>,
    split: Split,
    partner_free: std::sync::atomic::AtomicBool,
}

impl PoolAlloc {
    /// A pool of `units` free units, split into `stripes` stripes (clamped to sensible bounds).
    pub fn new(units: u64, stripes: usize) -> PoolAlloc {
        Self::with_split(units, stripes, Split::AllMine)
    }

    /// A pool whose units are owned according to `split`.
    pub fn with_split(units: u64, stripes: usize, split: Split) -> PoolAlloc {
        let kind = Self::new_kind(units, stripes);
        let partner = (split != Split::AllMine).then(|| Self::new_kind(units, stripes));
        let p = PoolAlloc {
            units,
            kind,
            partner,
            split,
            partner_free: std::sync::atomic::AtomicBool::new(false),
        };
        if let (Some(theirs), Kind::Dense { .. }) = (&p.partner, &p.kind) {
            // Each unit is free in exactly one of the two sets.
            for u in 0..units {
                if split.is_mine(u) {
                    Self::kind_take(theirs, units, u);
                } else {
                    Self::kind_take(&p.kind, units, u);
                }
            }
        }
        p
    }

    /// Allow (or stop) allocating the partner's free addresses.
    pub fn set_partner_free(&self, on: bool) {
        self.partner_free
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn split(&self) -> Split {
        self.split
    }

    fn new_kind(units: u64, stripes: usize) -> Kind {
        if units > DENSE_MAX_UNITS {
            return Kind::Sparse {
                probe: std::sync::atomic::AtomicU64::new(0),
            };
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
        Kind::Dense {
            stripe_units,
            stripes,
        }
    }

    pub fn units(&self) -> u64 {
        self.units
    }

    pub fn is_dense(&self) -> bool {
        matches!(self.kind, Kind::Dense { .. })
    }

    /// Take any free unit this server may allocate, starting in the worker's own stripe. For
    /// sparse pools, returns a candidate that the caller must confirm against the address index.
    pub fn pop(&self, worker: usize) -> Option<u64> {
        let partner_ok = self.partner_free.load(std::sync::atomic::Ordering::Relaxed);
        if let Some(u) = self.kind_pop(&self.kind, worker, partner_ok) {
            return Some(u);
        }
        match &self.partner {
            Some(theirs) if partner_ok => self.kind_pop(theirs, worker, true),
            _ => None,
        }
    }

    fn kind_pop(&self, kind: &Kind, worker: usize, any_owner: bool) -> Option<u64> {
        match kind {
            Kind::Dense {
                stripe_units,
                stripes,
            } => {
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
                for _ in 0..64 {
                    let n = probe.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let x = (n ^ (worker as u64) << 56).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                    let u = (x ^ (x >> 29)) % self.units;
                    if any_owner || self.split.is_mine(u) {
                        return Some(u);
                    }
                }
                None
            }
        }
    }

    fn kind_take(kind: &Kind, units: u64, unit: u64) -> bool {
        match kind {
            Kind::Dense {
                stripe_units,
                stripes,
            } if unit < units => stripes[(unit / stripe_units) as usize]
                .lock()
                .take(unit % stripe_units),
            _ => true,
        }
    }

    fn owner_kind(&self, unit: u64) -> &Kind {
        match &self.partner {
            Some(theirs) if !self.split.is_mine(unit) => theirs,
            _ => &self.kind,
        }
    }

    /// Mark a specific unit used (returns whether it was free; always true for sparse pools).
    pub fn take(&self, unit: u64) -> bool {
        Self::kind_take(self.owner_kind(unit), self.units, unit)
    }

    /// Return a unit to the free set.
    pub fn put(&self, unit: u64) {
        if let Kind::Dense {
            stripe_units,
            stripes,
        } = self.owner_kind(unit)
        {
            if unit < self.units {
                stripes[(unit / stripe_units) as usize]
                    .lock()
                    .put(unit % stripe_units);
            }
        }
    }

    /// Free units (exact for dense pools; the pool size for sparse ones).
    pub fn free(&self) -> u64 {
        let count = |k: &Kind| match k {
            Kind::Dense { stripes, .. } => stripes.iter().map(|s| s.lock().free).sum(),
            Kind::Sparse { .. } => self.units,
        };
        match (&self.kind, &self.partner) {
            (Kind::Sparse { .. }, _) => self.units,
            (k, Some(p)) => count(k) + count(p),
            (k, None) => count(k),
        }
    }

    /// Free units this server owns.
    pub fn free_mine(&self) -> u64 {
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
    fn split_pools_allocate_only_owned_units_until_partner_free() {
        for split in [
            Split::Modulo {
                modulus: 2,
                mine: 0b01,
            },
            Split::Modulo {
                modulus: 10,
                mine: 0b1,
            },
        ] {
            let units = 10_000u64;
            let p = PoolAlloc::with_split(units, 2, split);
            let mine = (0..units).filter(|&u| split.is_mine(u)).count() as u64;
            assert!(mine > 0 && mine < units);
            let mut got = Vec::new();
            while let Some(u) = p.pop(0) {
                assert!(split.is_mine(u), "allocated the partner's unit {u}");
                got.push(u);
            }
            assert_eq!(got.len() as u64, mine);
            // The partner's free units become available only after partner-down + safety period.
            p.set_partner_free(true);
            let mut theirs = 0;
            while let Some(u) = p.pop(1) {
                assert!(!split.is_mine(u));
                theirs += 1;
            }
            assert_eq!(theirs, units - mine);
            // Returned units go back to their owner's set.
            p.set_partner_free(false);
            let foreign = (0..units).find(|&u| !split.is_mine(u)).unwrap();
            p.put(foreign);
            assert_eq!(p.pop(0), None);
            p.put(got[0]);
            assert_eq!(p.pop(0), Some(got[0]));
        }
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
