//! The sharded in-memory lease store.
//!
//! Two indexes, each split behind many small locks (no global lock):
//! - by address: `addr → lease`. This index is the truth: an address is leased to at most one
//!   client because every claim checks and writes it under the address's lock. DHCPv4 addresses
//!   of dense pools live in per-pool slot tables ([`Slots4`]: one cache line per address, found
//!   by its offset in the pool, locked per address); other v4 addresses and all v6 leases live in
//!   hash maps sharded by a hash of the address.
//! - by client: `(subnet, client key) → address`, sharded by a hash of the client key. Entries may
//!   go stale (the address was reclaimed and reused by someone else); lookups validate against
//!   the address index, so staleness is harmless.
//!
//! Lock order: an address-shard lock may be held while taking a client-shard lock, never the
//! reverse, so two workers cannot deadlock. Free addresses come from per-pool [`PoolAlloc`]s.
//! Capacity is reserved up front from the configured pool sizes, so the hot path does not
//! allocate while the store stays within them.

use super::alloc::PoolAlloc;
use super::slots::{
    encode_state, ClientIndex4, Hot4, SlotGuard, Slots4, CID_INLINE, F_CID_COLD, F_COLD,
    F_FQDN_FWD, F_FQDN_REV, F_HOST,
};
use super::types::*;
use crossbeam_utils::CachePadded;
use parking_lot::Mutex;
use smallvec::SmallVec;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

/// What an allocation did with one free unit it popped ([`LeaseStore::allocate_from`]).
enum Attempt<L> {
    /// Claimed: the lease is the allocation's result.
    Took(L),
    /// Refused by the caller (reserved for another client): stays free.
    Refused,
    /// Held by someone the free set did not know about: left taken.
    Held,
}

type Hasher = foldhash::fast::RandomState;

/// Which identifier a client key is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    HwAddr,
    ClientId,
    /// DHCPv6: DUID + IAID + lease type.
    Duid,
}

/// The identity a lease is bound to within a subnet.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientKey {
    pub subnet_id: SubnetId,
    pub kind: KeyKind,
    /// For v6: the IAID (and lease type in the top byte); 0 for v4.
    pub iaid: u64,
    pub id: IdBuf,
}

impl ClientKey {
    pub fn v4(
        subnet_id: SubnetId,
        hw: &HwAddr,
        client_id: Option<&[u8]>,
        match_client_id: bool,
    ) -> ClientKey {
        match client_id {
            Some(cid) if match_client_id => ClientKey {
                subnet_id,
                kind: KeyKind::ClientId,
                iaid: 0,
                id: IdBuf::from_slice(cid),
            },
            _ => ClientKey {
                subnet_id,
                kind: KeyKind::HwAddr,
                iaid: 0,
                id: IdBuf::from_slice(hw.as_slice()),
            },
        }
    }

    pub fn v6(subnet_id: SubnetId, duid: &[u8], iaid: u32, ty: Lease6Type) -> ClientKey {
        ClientKey {
            subnet_id,
            kind: KeyKind::Duid,
            iaid: u64::from(iaid) | (ty as u64) << 32,
            id: IdBuf::from_slice(duid),
        }
    }

    /// Does this lease belong to this key?
    pub fn matches4(&self, l: &Lease4) -> bool {
        l.subnet_id == self.subnet_id
            && match self.kind {
                KeyKind::ClientId => l.client_id.as_slice() == self.id.as_slice(),
                KeyKind::HwAddr => l.hwaddr.as_slice() == self.id.as_slice(),
                KeyKind::Duid => false,
            }
    }

    pub fn matches6(&self, l: &Lease6) -> bool {
        l.subnet_id == self.subnet_id
            && self.kind == KeyKind::Duid
            && l.duid.as_slice() == self.id.as_slice()
            && u64::from(l.iaid) | (l.lease_type as u64) << 32 == self.iaid
    }
}

/// A pool registered with the store.
#[derive(Debug)]
pub struct PoolInfo {
    pub subnet_id: SubnetId,
    /// First address (v4 as the low 32 bits) or first prefix.
    pub first: u128,
    /// Address units per allocation unit, as a shift: 0 for addresses, 128 - delegated_len for PD.
    pub unit_shift: u8,
    pub v6_type: Option<Lease6Type>,
    pub alloc: PoolAlloc,
}

impl PoolInfo {
    pub fn contains(&self, addr: u128) -> bool {
        addr >= self.first
            && ((addr - self.first) >> self.unit_shift) < u128::from(self.alloc.units())
    }
    fn unit_of(&self, addr: u128) -> u64 {
        ((addr - self.first) >> self.unit_shift) as u64
    }
    pub fn addr_of(&self, unit: u64) -> u128 {
        self.first + (u128::from(unit) << self.unit_shift)
    }
}

/// Why a claim failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimError {
    /// Another client holds the address (active, offered or declined in probation).
    InUse,
    /// No free address in the candidate pools.
    PoolsExhausted,
}

pub struct StoreSizing {
    pub shards: usize,
    pub stripes: usize,
    /// Leases to reserve room for (sum of pool sizes, capped).
    pub expected_leases: usize,
    /// Fault every page of the DHCPv4 tables in now (`prefault-tables`), not on first use.
    pub prefault: bool,
}

impl Default for StoreSizing {
    fn default() -> Self {
        StoreSizing {
            shards: 64,
            stripes: 4,
            expected_leases: 1 << 16,
            prefault: false,
        }
    }
}

type Shard<K, V> = CachePadded<Mutex<HashMap<K, V, Hasher>>>;

pub struct LeaseStore {
    hasher: Hasher,
    shard_mask: usize,
    /// v4 leases outside dense pools (reservations outside pools, sparse pools, imports).
    addrs4: Box<[Shard<u32, Lease4>]>,
    /// Per pool: the slot table of a dense v4 pool, else `None`.
    slots4: Vec<Option<Slots4>>,
    /// Out-of-line fields of slot-held leases (long client ids, hostnames), by address.
    cold4: Box<[Shard<u32, Cold4>]>,
    /// Dense v4 pools for the reclaimer: (pool, cumulative end in blocks of [`RECLAIM_BLOCK`]).
    reclaim_blocks4: Vec<(usize, usize)>,
    addrs6: Box<[Shard<(u128, Lease6Type), Lease6>]>,
    /// DHCPv4 client index (a hint table, see [`ClientIndex4`]).
    clients4: ClientIndex4,
    /// DHCPv6 client index.
    clients: Box<[Shard<ClientKey, u128>]>,
    pools: Vec<PoolInfo>,
    /// Pool indexes sorted by first address, for address → pool lookups.
    pools_by_first: Vec<usize>,
}

fn new_shards<K, V>(n: usize, per_shard: usize, h: &Hasher) -> Box<[Shard<K, V>]> {
    (0..n)
        .map(|_| {
            CachePadded::new(Mutex::new(HashMap::with_capacity_and_hasher(
                per_shard,
                h.clone(),
            )))
        })
        .collect()
}

/// Declined addresses are held this long unless the config says otherwise (Kea's default).
pub const DEFAULT_PROBATION_SECS: u32 = 86_400;

impl LeaseStore {
    pub fn new(pools: Vec<PoolInfo>, sizing: &StoreSizing) -> LeaseStore {
        let shards = sizing.shards.next_power_of_two().max(1);
        let hasher = Hasher::default();
        let mut pools_by_first: Vec<usize> = (0..pools.len()).collect();
        pools_by_first.sort_by_key(|&i| pools[i].first);
        let slots4: Vec<Option<Slots4>> = pools
            .iter()
            .map(|p| {
                (p.v6_type.is_none() && p.alloc.is_dense())
                    .then(|| Slots4::new(p.alloc.units() as usize, sizing.prefault))
            })
            .collect();
        let v4_units = pools
            .iter()
            .filter(|p| p.v6_type.is_none())
            .fold(0usize, |n, p| n.saturating_add(p.alloc.units() as usize));
        let mut reclaim_blocks4 = Vec::new();
        let mut end = 0;
        for (p, s) in slots4.iter().enumerate() {
            if let Some(s) = s {
                end += s.len().div_ceil(RECLAIM_BLOCK);
                reclaim_blocks4.push((p, end));
            }
        }
        LeaseStore {
            // Dense pools hold their leases in slots: the map only takes what falls outside.
            addrs4: new_shards(shards, 64, &hasher),
            slots4,
            cold4: new_shards(shards, 16, &hasher),
            reclaim_blocks4,
            addrs6: new_shards(shards, 16, &hasher),
            // Sized by the pools, not the capped estimate: the table never grows, and it is
            // allocated zeroed, so unused room costs address space only (RAM with `prefault`).
            clients4: ClientIndex4::new(sizing.expected_leases.max(v4_units), sizing.prefault),
            clients: new_shards(shards, 16, &hasher),
            hasher,
            shard_mask: shards - 1,
            pools,
            pools_by_first,
        }
    }

    fn shard_of<T: Hash>(&self, t: &T) -> usize {
        (self.hasher.hash_one(t) as usize) & self.shard_mask
    }

    pub fn pools(&self) -> &[PoolInfo] {
        &self.pools
    }

    /// The pool holding `addr` of the given family (v6 type `None` = v4).
    pub fn pool_of(&self, addr: u128, v6_type: Option<Lease6Type>) -> Option<usize> {
        // Pools do not overlap within a family (validated by config); PD and NA pools may share
        // ranges, so filter by type.
        let idx = self
            .pools_by_first
            .partition_point(|&i| self.pools[i].first <= addr);
        self.pools_by_first[..idx]
            .iter()
            .rev()
            .copied()
            .find(|&i| self.pools[i].v6_type == v6_type && self.pools[i].contains(addr))
    }

    // ------------------------------------------------------------------------------------------
    // DHCPv4
    // ------------------------------------------------------------------------------------------

    /// Lock the record of `a`: its pool slot when a dense pool holds it, else its map shard.
    fn lock4(&self, a: u32) -> Locked4<'_> {
        if let Some(p) = self.pool_of(u128::from(a), None) {
            if let Some(slots) = &self.slots4[p] {
                let unit = self.pools[p].unit_of(u128::from(a)) as usize;
                return self.lock_slot4(p, slots, unit, a);
            }
        }
        Locked4::Map {
            a,
            g: self.addrs4[self.shard_of(&a)].lock(),
        }
    }

    #[inline]
    fn lock_slot4<'s>(&'s self, p: usize, slots: &'s Slots4, unit: usize, a: u32) -> Locked4<'s> {
        Locked4::Slot {
            store: self,
            a,
            p,
            unit,
            slots,
            g: slots.lock(unit),
        }
    }

    pub fn get_by_addr4(&self, addr: Ipv4Addr) -> Option<Lease4> {
        self.lock4(u32::from(addr)).get()
    }

    /// The lease recorded for this client key (any state), validated against the address index.
    pub fn get_by_client4(&self, key: &ClientKey) -> Option<Lease4> {
        let addr = self.clients4.get(self.hasher.hash_one(key))?;
        let l = self.lock4(addr);
        if !l.matches(key) {
            return None;
        }
        l.get()
    }

    /// Starts loading the client-index bucket [`get_by_client4`](Self::get_by_client4) will read
    /// for `key`. The index is far larger than the caches, so that read is a miss for almost
    /// every request (it was 7% of a worker's cycles, nearly all on that one load); a worker
    /// calls this for each frame of a batch before handling the first, so the misses overlap.
    pub fn prefetch_client4(&self, key: &ClientKey) {
        self.clients4.prefetch(self.hasher.hash_one(key));
    }

    /// Point `key` at `a` in the v4 client index.
    fn index_client4(&self, key: &ClientKey, a: u32) {
        self.clients4.set(self.hasher.hash_one(key), a);
    }

    /// Point `key` at `addr` in the v6 client index. A client renewing its own address is already
    /// there: checked first, so the common case neither clones the key nor rewrites the entry.
    fn index_client(&self, key: &ClientKey, addr: u128) {
        let mut c = self.clients[self.shard_of(key)].lock();
        match c.get_mut(key) {
            Some(v) => *v = addr,
            None => {
                c.insert(key.clone(), addr);
            }
        }
    }

    /// Write `lease` for `key` at its address if the address is claimable. On success returns the
    /// previous lease at that address (if any).
    pub fn claim4(
        &self,
        key: &ClientKey,
        lease: Lease4,
        now: u64,
    ) -> Result<Option<Lease4>, ClaimError> {
        self.claim4_stamped(key, lease, now, &|| 0)
            .map(|(prev, _)| prev)
    }

    /// [`claim4`](Self::claim4), calling `stamp` under the address lock (see
    /// `engine::LeaseSink`) and returning its value with the previous lease.
    pub fn claim4_stamped(
        &self,
        key: &ClientKey,
        lease: Lease4,
        now: u64,
        stamp: &dyn Fn() -> u64,
    ) -> Result<(Option<Lease4>, u64), ClaimError> {
        let a = u32::from(lease.addr);
        let mut l = self.lock4(a);
        if !l.claimable(key, now) {
            return Err(ClaimError::InUse);
        }
        let was_free_in_pool = l
            .state_expire()
            .is_none_or(|(st, exp)| st == LeaseState::ExpiredReclaimed || exp <= now);
        if was_free_in_pool {
            self.take_unit4(&l, a);
        }
        let prev = l.replace(lease);
        let version = stamp();
        // Leaf lock taken while holding the address: allowed by the lock order.
        self.index_client4(key, a);
        Ok((prev, version))
    }

    /// Allocate a free address from the first candidate pool with room. `make` builds the lease
    /// for an address, or refuses it with `None` (an in-pool reservation for another client):
    /// refused addresses stay free and are skipped for this allocation only.
    pub fn allocate4(
        &self,
        key: &ClientKey,
        pools: &[usize],
        worker: usize,
        make: &dyn Fn(Ipv4Addr) -> Option<Lease4>,
        now: u64,
    ) -> Result<Lease4, ClaimError> {
        self.allocate_from(
            pools,
            worker,
            |_| true,
            |p, pool, unit| {
                let a = pool.addr_of(unit) as u32;
                let Some(lease) = make(Ipv4Addr::from(a)) else {
                    return Attempt::Refused;
                };
                let mut l = match &self.slots4[p] {
                    Some(slots) => self.lock_slot4(p, slots, unit as usize, a),
                    None => self.lock4(a),
                };
                if !l.claimable(key, now) {
                    return Attempt::Held;
                }
                l.set(&lease);
                self.index_client4(key, a);
                Attempt::Took(lease)
            },
        )
    }

    /// The allocation loop of both families: pops free units from the pools `serves` accepts, in
    /// order, and offers each to `attempt`. Bounded: a dense pool's free set is exact, so more
    /// than one pop per pool only happens after races, for addresses held outside the bitmap's
    /// knowledge (e.g. imported leases; left taken) and for refused ones, which go back to the
    /// free set afterwards (not at once, or the next pop would return them again).
    fn allocate_from<L>(
        &self,
        pools: &[usize],
        worker: usize,
        serves: impl Fn(&PoolInfo) -> bool,
        mut attempt: impl FnMut(usize, &PoolInfo, u64) -> Attempt<L>,
    ) -> Result<L, ClaimError> {
        let mut refused: SmallVec<[(usize, u64); 4]> = SmallVec::new();
        let found = 'found: {
            for &p in pools {
                let pool = &self.pools[p];
                if !serves(pool) {
                    continue;
                }
                for _ in 0..64 {
                    let Some(unit) = pool.alloc.pop(worker) else {
                        break;
                    };
                    match attempt(p, pool, unit) {
                        Attempt::Took(l) => break 'found Ok(l),
                        Attempt::Refused => refused.push((p, unit)),
                        Attempt::Held => {}
                    }
                }
            }
            Err(ClaimError::PoolsExhausted)
        };
        for (p, unit) in refused {
            self.pools[p].alloc.put(unit);
        }
        found
    }

    /// Update a lease in place if it still belongs to `key`. Returns the new lease.
    pub fn update4(
        &self,
        key: &ClientKey,
        addr: Ipv4Addr,
        f: &mut dyn FnMut(&mut Lease4),
    ) -> Option<Lease4> {
        self.update4_stamped(key, addr, f, &|| 0).map(|(l, _)| l)
    }

    /// [`update4`](Self::update4) with a version stamp taken under the address lock.
    pub fn update4_stamped(
        &self,
        key: &ClientKey,
        addr: Ipv4Addr,
        f: &mut dyn FnMut(&mut Lease4),
        stamp: &dyn Fn() -> u64,
    ) -> Option<(Lease4, u64)> {
        let a = u32::from(addr);
        let mut l = self.lock4(a);
        if !l.matches(key) {
            return None;
        }
        let mut lease = l.get()?;
        f(&mut lease);
        l.set(&lease);
        if lease.state == LeaseState::ExpiredReclaimed {
            self.free_unit4(&l, a);
        }
        let version = stamp();
        Some((lease, version))
    }

    /// The pool of a locked address, if any.
    fn pool_of4(&self, l: &Locked4<'_>, a: u32) -> Option<usize> {
        match l {
            Locked4::Slot { p, .. } => Some(*p),
            Locked4::Map { .. } => self.pool_of(u128::from(a), None),
        }
    }

    fn free_unit4(&self, l: &Locked4<'_>, a: u32) {
        if let Some(p) = self.pool_of4(l, a) {
            let pool = &self.pools[p];
            pool.alloc.put(pool.unit_of(u128::from(a)));
        }
    }

    fn take_unit4(&self, l: &Locked4<'_>, a: u32) {
        if let Some(p) = self.pool_of4(l, a) {
            let pool = &self.pools[p];
            pool.alloc.take(pool.unit_of(u128::from(a)));
        }
    }

    /// Insert or replace a lease unconditionally (journal replay, import, HA updates).
    /// A declined or active lease takes its address out of the free set.
    pub fn put4(&self, lease: Lease4) {
        self.put4_stamped(lease, &|| 0);
    }

    /// [`put4`](Self::put4) with a version stamp taken under the address lock.
    pub fn put4_stamped(&self, lease: Lease4, stamp: &dyn Fn() -> u64) -> u64 {
        let a = u32::from(lease.addr);
        let key = ClientKey::v4(
            lease.subnet_id,
            &lease.hwaddr,
            Some(&lease.client_id)
                .filter(|c| !c.is_empty())
                .map(|c| c.as_slice()),
            true,
        );
        let hw_key = ClientKey::v4(lease.subnet_id, &lease.hwaddr, None, false);
        let held = lease.state != LeaseState::ExpiredReclaimed;
        let mut l = self.lock4(a);
        if held {
            self.take_unit4(&l, a);
        } else {
            self.free_unit4(&l, a);
        }
        l.replace(lease);
        let version = stamp();
        if key.kind == KeyKind::ClientId {
            self.index_client4(&key, a);
        }
        if !hw_key.id.is_empty() {
            self.index_client4(&hw_key, a);
        }
        version
    }

    /// Remove the lease at `addr`, freeing the address. Returns it.
    pub fn delete4(&self, addr: Ipv4Addr) -> Option<Lease4> {
        self.delete4_stamped(addr, &|| 0).map(|(l, _)| l)
    }

    /// [`delete4`](Self::delete4) with a version stamp taken under the address lock.
    pub fn delete4_stamped(
        &self,
        addr: Ipv4Addr,
        stamp: &dyn Fn() -> u64,
    ) -> Option<(Lease4, u64)> {
        let a = u32::from(addr);
        let mut l = self.lock4(a);
        let removed = l.remove()?;
        self.free_unit4(&l, a);
        Some((removed, stamp()))
    }

    /// Reclaim up to `max` expired leases, scanning from `cursor` (updated): first the map
    /// shards, then each dense pool in blocks of [`RECLAIM_BLOCK`] addresses. Expired assigned
    /// leases become `ExpiredReclaimed` (kept for address affinity), expired offers and declined
    /// addresses past probation are removed. Reports every change through `on_change` so the
    /// caller can journal it (offers are never journaled and are not reported).
    pub fn reclaim4(
        &self,
        now: u64,
        max: usize,
        cursor: &mut usize,
        on_change: &mut dyn FnMut(LeaseChange),
    ) -> usize {
        self.reclaim4_within(now, max, cursor, &mut || true, on_change)
            .reclaimed
    }

    /// Steps of a whole v4 reclaim pass: one per map shard and per block of each dense pool.
    pub fn reclaim_positions4(&self) -> usize {
        self.addrs4.len() + self.reclaim_blocks4.last().map_or(0, |&(_, end)| end)
    }

    /// [`reclaim4`](Self::reclaim4) that also stops once `keep_going` says so (asked after every
    /// step), so that a caller sharing a CPU with workers can scan a large store in short slices:
    /// one uninterrupted pass over millions of leases takes milliseconds, and a worker preempted
    /// for that long misses its latency target. Reports how many steps it visited.
    pub fn reclaim4_within(
        &self,
        now: u64,
        max: usize,
        cursor: &mut usize,
        keep_going: &mut dyn FnMut() -> bool,
        on_change: &mut dyn FnMut(LeaseChange),
    ) -> ReclaimProgress {
        let nmap = self.addrs4.len();
        reclaim_steps(
            self.reclaim_positions4(),
            max,
            cursor,
            keep_going,
            |pos, left| {
                if pos < nmap {
                    return self.reclaim_shard(&self.addrs4[pos], now, left, on_change);
                }
                // Which dense pool, and which block of it.
                let i = self
                    .reclaim_blocks4
                    .partition_point(|&(_, end)| end <= pos - nmap);
                let (p, end) = self.reclaim_blocks4[i];
                let start = if i == 0 {
                    0
                } else {
                    self.reclaim_blocks4[i - 1].1
                };
                debug_assert!(pos - nmap < end);
                self.reclaim_slots4(p, pos - nmap - start, now, left, on_change)
            },
        )
    }

    /// [`reclaim4`](Self::reclaim4) over one block of a dense pool.
    fn reclaim_slots4(
        &self,
        p: usize,
        block: usize,
        now: u64,
        max: usize,
        on_change: &mut dyn FnMut(LeaseChange),
    ) -> usize {
        let Some(slots) = &self.slots4[p] else {
            return 0;
        };
        let words = RECLAIM_BLOCK / 64;
        let mut done = 0;
        for wi in block * words..((block + 1) * words).min(slots.words()) {
            let mut w = slots.occupied_word(wi);
            while w != 0 && done < max {
                let unit = wi * 64 + w.trailing_zeros() as usize;
                w &= w - 1;
                let a = self.pools[p].addr_of(unit as u64) as u32;
                let mut l = self.lock_slot4(p, slots, unit, a);
                let Some((state, expire)) = l.state_expire() else {
                    continue;
                };
                match reclaim_action(state, expire, now) {
                    Reclaim::Keep => continue,
                    Reclaim::MarkReclaimed => {
                        if let Some(mut lease) = l.get() {
                            lease.state = LeaseState::ExpiredReclaimed;
                            l.set(&lease);
                            on_change(LeaseChange::Put4(lease));
                        }
                    }
                    Reclaim::Remove { report } => {
                        if let Some(lease) = l.remove() {
                            if report {
                                on_change(LeaseChange::Del4(lease.addr));
                            }
                        }
                    }
                }
                self.free_unit4(&l, a);
                done += 1;
            }
            if done >= max {
                break;
            }
        }
        done
    }

    /// Visit every v4 lease (control API, export, compaction checks). Holds one lock at a time.
    pub fn for_each4(&self, f: &mut dyn FnMut(&Lease4)) {
        for s in self.addrs4.iter() {
            for l in s.lock().values() {
                f(l);
            }
        }
        for (p, slots) in self.slots4.iter().enumerate() {
            let Some(slots) = slots else { continue };
            for wi in 0..slots.words() {
                let mut w = slots.occupied_word(wi);
                while w != 0 {
                    let unit = wi * 64 + w.trailing_zeros() as usize;
                    w &= w - 1;
                    let a = self.pools[p].addr_of(unit as u64) as u32;
                    let lease = self.lock_slot4(p, slots, unit, a).get();
                    if let Some(lease) = lease {
                        f(&lease);
                    }
                }
            }
        }
    }

    pub fn count4(&self) -> usize {
        self.addrs4.iter().map(|s| s.lock().len()).sum::<usize>()
            + self
                .slots4
                .iter()
                .flatten()
                .map(|s| s.count())
                .sum::<usize>()
    }

    /// Reclaim expired records of one map shard (v4 outside dense pools, or v6).
    fn reclaim_shard<R: Record>(
        &self,
        shard: &Shard<R::Key, R>,
        now: u64,
        max: usize,
        on_change: &mut dyn FnMut(LeaseChange),
    ) -> usize {
        let mut done = 0;
        let mut shard = shard.lock();
        // Removals wait until the iteration ends; bounded so a shard never allocates.
        let mut to_remove: SmallVec<[R::Key; 16]> = SmallVec::new();
        for (k, l) in shard.iter_mut() {
            if done >= max || to_remove.len() == to_remove.inline_size() {
                break;
            }
            match reclaim_action(l.state(), l.expire(), now) {
                Reclaim::Keep => continue,
                Reclaim::MarkReclaimed => {
                    l.set_reclaimed();
                    on_change(l.put_change());
                    R::free_unit(self, k);
                }
                Reclaim::Remove { report } => {
                    if report {
                        on_change(l.del_change());
                    }
                    to_remove.push(*k);
                }
            }
            done += 1;
        }
        for k in to_remove {
            shard.remove(&k);
            R::free_unit(self, &k);
        }
        done
    }

    // ------------------------------------------------------------------------------------------
    // DHCPv6
    // ------------------------------------------------------------------------------------------

    pub fn get_by_addr6(&self, addr: Ipv6Addr, ty: Lease6Type) -> Option<Lease6> {
        let k = (u128::from(addr), ty);
        self.addrs6[self.shard_of(&k)].lock().get(&k).cloned()
    }

    pub fn get_by_client6(&self, key: &ClientKey, ty: Lease6Type) -> Option<Lease6> {
        let addr = *self.clients[self.shard_of(key)].lock().get(key)?;
        let lease = self.get_by_addr6(Ipv6Addr::from(addr), ty)?;
        key.matches6(&lease).then_some(lease)
    }

    fn claimable6(existing: Option<&Lease6>, key: &ClientKey, now: u64) -> bool {
        match existing {
            None => true,
            Some(l) if key.matches6(l) => true,
            Some(l) => l.state == LeaseState::ExpiredReclaimed || l.expire() <= now,
        }
    }

    pub fn claim6(
        &self,
        key: &ClientKey,
        lease: Lease6,
        now: u64,
    ) -> Result<Option<Lease6>, ClaimError> {
        self.claim6_stamped(key, lease, now, &|| 0).map(|(p, _)| p)
    }

    /// [`claim6`](Self::claim6) with a version stamp taken under the address lock.
    pub fn claim6_stamped(
        &self,
        key: &ClientKey,
        lease: Lease6,
        now: u64,
        stamp: &dyn Fn() -> u64,
    ) -> Result<(Option<Lease6>, u64), ClaimError> {
        let k = (u128::from(lease.addr), lease.lease_type);
        let mut shard = self.addrs6[self.shard_of(&k)].lock();
        let existing = shard.get(&k);
        if !Self::claimable6(existing, key, now) {
            return Err(ClaimError::InUse);
        }
        if let Some(p) = self.pool_of(k.0, Some(k.1)) {
            let pool = &self.pools[p];
            pool.alloc.take(pool.unit_of(k.0));
        }
        let prev = shard.insert(k, lease);
        let version = stamp();
        self.index_client(key, k.0);
        Ok((prev, version))
    }

    pub fn allocate6(
        &self,
        key: &ClientKey,
        pools: &[usize],
        worker: usize,
        make: &dyn Fn(Ipv6Addr) -> Option<Lease6>,
        now: u64,
    ) -> Result<Lease6, ClaimError> {
        let serves = |pool: &PoolInfo| pool.v6_type.is_some();
        self.allocate_from(pools, worker, serves, |_, pool, unit| {
            let Some(ty) = pool.v6_type else {
                return Attempt::Held; // not reached: `serves` admits v6 pools only
            };
            let k = (pool.addr_of(unit), ty);
            let Some(lease) = make(Ipv6Addr::from(k.0)) else {
                return Attempt::Refused;
            };
            let mut shard = self.addrs6[self.shard_of(&k)].lock();
            if !Self::claimable6(shard.get(&k), key, now) {
                return Attempt::Held;
            }
            shard.insert(k, lease.clone());
            self.index_client(key, k.0);
            Attempt::Took(lease)
        })
    }

    pub fn update6(
        &self,
        key: &ClientKey,
        addr: Ipv6Addr,
        ty: Lease6Type,
        f: &mut dyn FnMut(&mut Lease6),
    ) -> Option<Lease6> {
        self.update6_stamped(key, addr, ty, f, &|| 0)
            .map(|(l, _)| l)
    }

    /// [`update6`](Self::update6) with a version stamp taken under the address lock.
    pub fn update6_stamped(
        &self,
        key: &ClientKey,
        addr: Ipv6Addr,
        ty: Lease6Type,
        f: &mut dyn FnMut(&mut Lease6),
        stamp: &dyn Fn() -> u64,
    ) -> Option<(Lease6, u64)> {
        let k = (u128::from(addr), ty);
        let mut shard = self.addrs6[self.shard_of(&k)].lock();
        let l = shard.get_mut(&k)?;
        if !key.matches6(l) {
            return None;
        }
        f(l);
        let out = l.clone();
        if out.state == LeaseState::ExpiredReclaimed {
            self.free_unit6(k.0, ty);
        }
        Some((out, stamp()))
    }

    fn free_unit6(&self, a: u128, ty: Lease6Type) {
        if let Some(p) = self.pool_of(a, Some(ty)) {
            let pool = &self.pools[p];
            pool.alloc.put(pool.unit_of(a));
        }
    }

    pub fn put6(&self, lease: Lease6) {
        self.put6_stamped(lease, &|| 0);
    }

    /// [`put6`](Self::put6) with a version stamp taken under the address lock.
    pub fn put6_stamped(&self, lease: Lease6, stamp: &dyn Fn() -> u64) -> u64 {
        let k = (u128::from(lease.addr), lease.lease_type);
        let key = ClientKey::v6(lease.subnet_id, &lease.duid, lease.iaid, lease.lease_type);
        let held = lease.state != LeaseState::ExpiredReclaimed;
        let mut shard = self.addrs6[self.shard_of(&k)].lock();
        if let Some(p) = self.pool_of(k.0, Some(k.1)) {
            let pool = &self.pools[p];
            if held {
                pool.alloc.take(pool.unit_of(k.0));
            } else {
                pool.alloc.put(pool.unit_of(k.0));
            }
        }
        shard.insert(k, lease);
        let version = stamp();
        self.index_client(&key, k.0);
        version
    }

    pub fn delete6(&self, addr: Ipv6Addr, ty: Lease6Type) -> Option<Lease6> {
        self.delete6_stamped(addr, ty, &|| 0).map(|(l, _)| l)
    }

    /// [`delete6`](Self::delete6) with a version stamp taken under the address lock.
    pub fn delete6_stamped(
        &self,
        addr: Ipv6Addr,
        ty: Lease6Type,
        stamp: &dyn Fn() -> u64,
    ) -> Option<(Lease6, u64)> {
        let k = (u128::from(addr), ty);
        let mut shard = self.addrs6[self.shard_of(&k)].lock();
        let removed = shard.remove(&k)?;
        self.free_unit6(k.0, ty);
        Some((removed, stamp()))
    }

    /// [`reclaim4`](Self::reclaim4) for DHCPv6 leases (the same rules, one shard per step).
    pub fn reclaim6(
        &self,
        now: u64,
        max: usize,
        cursor: &mut usize,
        on_change: &mut dyn FnMut(LeaseChange),
    ) -> usize {
        self.reclaim6_within(now, max, cursor, &mut || true, on_change)
            .reclaimed
    }

    /// Steps of a whole v6 reclaim pass: one per shard.
    pub fn reclaim_positions6(&self) -> usize {
        self.addrs6.len()
    }

    /// [`reclaim6`](Self::reclaim6) in slices, as [`reclaim4_within`](Self::reclaim4_within).
    pub fn reclaim6_within(
        &self,
        now: u64,
        max: usize,
        cursor: &mut usize,
        keep_going: &mut dyn FnMut() -> bool,
        on_change: &mut dyn FnMut(LeaseChange),
    ) -> ReclaimProgress {
        reclaim_steps(self.addrs6.len(), max, cursor, keep_going, |si, left| {
            self.reclaim_shard(&self.addrs6[si], now, left, on_change)
        })
    }

    pub fn for_each6(&self, f: &mut dyn FnMut(&Lease6)) {
        for s in self.addrs6.iter() {
            for l in s.lock().values() {
                f(l);
            }
        }
    }

    pub fn count6(&self) -> usize {
        self.addrs6.iter().map(|s| s.lock().len()).sum()
    }

    /// Apply a change (journal replay, HA update).
    pub fn apply(&self, c: LeaseChange) {
        match c {
            LeaseChange::Put4(l) => self.put4(l),
            LeaseChange::Del4(a) => {
                self.delete4(a);
            }
            LeaseChange::Put6(l) => self.put6(l),
            LeaseChange::Del6(a, t) => {
                self.delete6(a, t);
            }
        }
    }
}

/// The step loop of both reclaimers: visits positions `cursor`, `cursor + 1`, ... (modulo
/// `total`) through `step(position, leases left)`, which reclaims at most that many and says how
/// many; stops once `max` are reclaimed, after a whole pass, or when `keep_going` says so (asked
/// before every step but the first). The cursor is read once: it names where this call starts, and
/// is left at the next position to visit (or at the last one visited when `max` cut it short, so
/// that it is re-visited first).
fn reclaim_steps(
    total: usize,
    max: usize,
    cursor: &mut usize,
    keep_going: &mut dyn FnMut() -> bool,
    mut step: impl FnMut(usize, usize) -> usize,
) -> ReclaimProgress {
    let mut done = 0;
    let mut visited = 0;
    let start = *cursor;
    for i in 0..total {
        if done >= max || (i > 0 && !keep_going()) {
            break;
        }
        let pos = (start + i) % total;
        done += step(pos, max - done);
        visited += 1;
        *cursor = if done >= max { pos } else { (pos + 1) % total };
    }
    ReclaimProgress {
        reclaimed: done,
        visited,
    }
}

/// What one call of [`LeaseStore::reclaim4_within`] / [`LeaseStore::reclaim6_within`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReclaimProgress {
    /// Leases reclaimed (marked expired-reclaimed or removed).
    pub reclaimed: usize,
    /// Steps visited (see [`LeaseStore::reclaim_positions4`]).
    pub visited: usize,
}

/// Addresses per step of the v4 reclaimer in a dense pool.
pub const RECLAIM_BLOCK: usize = 4096;

/// What the reclaimer does with a record.
enum Reclaim {
    Keep,
    /// An expired assigned lease: kept as `ExpiredReclaimed` for address affinity.
    MarkReclaimed,
    /// An expired offer (not reported: offers are never journaled) or a declined address past
    /// probation (reported as a delete).
    Remove {
        report: bool,
    },
}

fn reclaim_action(state: LeaseState, expire: u64, now: u64) -> Reclaim {
    if expire > now {
        return Reclaim::Keep;
    }
    match state {
        LeaseState::ExpiredReclaimed => Reclaim::Keep,
        LeaseState::Assigned => Reclaim::MarkReclaimed,
        LeaseState::Offered => Reclaim::Remove { report: false },
        LeaseState::Declined => Reclaim::Remove { report: true },
    }
}

/// A lease type held in map shards, as the shared reclaimer sees it.
trait Record {
    type Key: Copy + Eq + Hash;
    fn state(&self) -> LeaseState;
    fn expire(&self) -> u64;
    fn set_reclaimed(&mut self);
    fn put_change(&self) -> LeaseChange;
    fn del_change(&self) -> LeaseChange;
    fn free_unit(store: &LeaseStore, k: &Self::Key);
}

impl Record for Lease4 {
    type Key = u32;
    fn state(&self) -> LeaseState {
        self.state
    }
    fn expire(&self) -> u64 {
        Lease4::expire(self)
    }
    fn set_reclaimed(&mut self) {
        self.state = LeaseState::ExpiredReclaimed;
    }
    fn put_change(&self) -> LeaseChange {
        LeaseChange::Put4(self.clone())
    }
    fn del_change(&self) -> LeaseChange {
        LeaseChange::Del4(self.addr)
    }
    fn free_unit(store: &LeaseStore, a: &u32) {
        if let Some(p) = store.pool_of(u128::from(*a), None) {
            let pool = &store.pools[p];
            pool.alloc.put(pool.unit_of(u128::from(*a)));
        }
    }
}

impl Record for Lease6 {
    type Key = (u128, Lease6Type);
    fn state(&self) -> LeaseState {
        self.state
    }
    fn expire(&self) -> u64 {
        Lease6::expire(self)
    }
    fn set_reclaimed(&mut self) {
        self.state = LeaseState::ExpiredReclaimed;
    }
    fn put_change(&self) -> LeaseChange {
        LeaseChange::Put6(self.clone())
    }
    fn del_change(&self) -> LeaseChange {
        LeaseChange::Del6(self.addr, self.lease_type)
    }
    fn free_unit(store: &LeaseStore, k: &(u128, Lease6Type)) {
        store.free_unit6(k.0, k.1);
    }
}

/// Out-of-line fields of a slot-held v4 lease.
#[derive(Debug, Clone, Default)]
struct Cold4 {
    /// Only when longer than `slots::CID_INLINE`.
    client_id: Option<IdBuf>,
    hostname: Option<Arc<str>>,
}

/// A v4 address's record, locked: a dense pool's slot or an entry of a map shard.
enum Locked4<'a> {
    Slot {
        store: &'a LeaseStore,
        a: u32,
        p: usize,
        unit: usize,
        slots: &'a Slots4,
        g: SlotGuard<'a>,
    },
    Map {
        a: u32,
        g: parking_lot::MutexGuard<'a, HashMap<u32, Lease4, Hasher>>,
    },
}

impl Locked4<'_> {
    fn state_expire(&self) -> Option<(LeaseState, u64)> {
        match self {
            Locked4::Slot { g, .. } => g.lease_state().map(|s| (s, g.expire())),
            Locked4::Map { a, g } => g.get(a).map(|l| (l.state, l.expire())),
        }
    }

    /// Does the record belong to `key`?
    fn matches(&self, key: &ClientKey) -> bool {
        match self {
            Locked4::Slot { store, a, g, .. } => {
                if g.state == 0 || g.subnet_id != key.subnet_id {
                    return false;
                }
                match key.kind {
                    KeyKind::HwAddr => g.hw_slice() == key.id.as_slice(),
                    KeyKind::ClientId if g.flags & F_CID_COLD != 0 => store.cold4
                        [store.shard_of(a)]
                    .lock()
                    .get(a)
                    .and_then(|c| c.client_id.as_ref())
                    .is_some_and(|c| c.as_slice() == key.id.as_slice()),
                    KeyKind::ClientId => g.cid_inline() == key.id.as_slice(),
                    KeyKind::Duid => false,
                }
            }
            Locked4::Map { a, g } => g.get(a).is_some_and(|l| key.matches4(l)),
        }
    }

    /// Whether the address can be given to `key` now: free, expired, reclaimed, or theirs.
    fn claimable(&self, key: &ClientKey, now: u64) -> bool {
        match self.state_expire() {
            None => true,
            Some((LeaseState::ExpiredReclaimed, _)) => true,
            Some((_, expire)) if expire <= now => true,
            Some(_) => self.matches(key),
        }
    }

    /// The lease, if any.
    fn get(&self) -> Option<Lease4> {
        match self {
            Locked4::Slot { store, a, g, .. } => {
                let state = g.lease_state()?;
                let cold = if g.flags & F_COLD != 0 {
                    store.cold4[store.shard_of(a)]
                        .lock()
                        .get(a)
                        .cloned()
                        .unwrap_or_default()
                } else {
                    Cold4::default()
                };
                Some(Lease4 {
                    addr: Ipv4Addr::from(*a),
                    hwaddr: g.hwaddr(),
                    client_id: cold
                        .client_id
                        .unwrap_or_else(|| IdBuf::from_slice(g.cid_inline())),
                    subnet_id: g.subnet_id,
                    cltt: g.cltt(),
                    valid_lft: g.valid_lft,
                    state,
                    fqdn_fwd: g.flags & F_FQDN_FWD != 0,
                    fqdn_rev: g.flags & F_FQDN_REV != 0,
                    hostname: cold.hostname,
                })
            }
            Locked4::Map { a, g } => g.get(a).cloned(),
        }
    }

    /// Store `l` (whose address is this record's).
    fn set(&mut self, l: &Lease4) {
        match self {
            Locked4::Slot {
                store,
                a,
                unit,
                slots,
                g,
                ..
            } => {
                let long_cid = l.client_id.len() > CID_INLINE;
                let mut flags = 0;
                if l.fqdn_fwd {
                    flags |= F_FQDN_FWD;
                }
                if l.fqdn_rev {
                    flags |= F_FQDN_REV;
                }
                if long_cid {
                    flags |= F_CID_COLD;
                }
                if l.hostname.is_some() {
                    flags |= F_HOST;
                }
                if (flags | g.flags) & F_COLD != 0 {
                    let mut cold = store.cold4[store.shard_of(a)].lock();
                    if flags & F_COLD != 0 {
                        cold.insert(
                            *a,
                            Cold4 {
                                client_id: long_cid.then(|| l.client_id.clone()),
                                hostname: l.hostname.clone(),
                            },
                        );
                    } else {
                        cold.remove(a);
                    }
                }
                let h: &mut Hot4 = g;
                h.state = encode_state(l.state);
                h.flags = flags;
                h.hw_type = l.hwaddr.htype;
                h.hw_len = l.hwaddr.len;
                h.hw = l.hwaddr.bytes;
                h.subnet_id = l.subnet_id;
                h.valid_lft = l.valid_lft;
                h.set_cltt(l.cltt);
                h.cid = [0; CID_INLINE];
                if long_cid {
                    h.cid_len = 0;
                } else {
                    h.cid_len = l.client_id.len() as u8;
                    h.cid[..l.client_id.len()].copy_from_slice(&l.client_id);
                }
                slots.set_occupied(*unit, true);
            }
            Locked4::Map { a, g } => {
                g.insert(*a, l.clone());
            }
        }
    }

    /// Store `l`, returning what was there.
    fn replace(&mut self, l: Lease4) -> Option<Lease4> {
        match self {
            Locked4::Map { a, g } => g.insert(*a, l),
            Locked4::Slot { .. } => {
                let prev = self.get();
                self.set(&l);
                prev
            }
        }
    }

    /// Remove the lease, returning it.
    fn remove(&mut self) -> Option<Lease4> {
        match self {
            Locked4::Map { a, g } => g.remove(a),
            Locked4::Slot {
                store,
                a,
                unit,
                slots,
                ..
            } => {
                let (store, a, unit, slots) = (*store, *a, *unit, *slots);
                let prev = self.get()?;
                if let Locked4::Slot { g, .. } = self {
                    if g.flags & F_COLD != 0 {
                        store.cold4[store.shard_of(&a)].lock().remove(&a);
                    }
                    **g = Hot4::default();
                }
                slots.set_occupied(unit, false);
                Some(prev)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(first: Ipv4Addr, n: u64) -> LeaseStore {
        let pool = PoolInfo {
            subnet_id: 1,
            first: u128::from(u32::from(first)),
            unit_shift: 0,
            v6_type: None,
            alloc: PoolAlloc::new(n, 2),
        };
        LeaseStore::new(
            vec![pool],
            &StoreSizing {
                shards: 8,
                stripes: 2,
                expected_leases: 1024,
                prefault: false,
            },
        )
    }

    fn lease(addr: Ipv4Addr, mac: u8, now: u64) -> Lease4 {
        Lease4 {
            addr,
            hwaddr: HwAddr::ethernet([2, 0, 0, 0, 0, mac]),
            client_id: IdBuf::new(),
            subnet_id: 1,
            cltt: now,
            valid_lft: 100,
            state: LeaseState::Assigned,
            fqdn_fwd: false,
            fqdn_rev: false,
            hostname: None,
        }
    }

    fn key(mac: u8) -> ClientKey {
        ClientKey::v4(1, &HwAddr::ethernet([2, 0, 0, 0, 0, mac]), None, true)
    }

    #[test]
    fn an_address_is_never_given_to_two_clients() {
        let s = store(Ipv4Addr::new(10, 0, 0, 10), 4);
        let mut got = Vec::new();
        for mac in 0..4 {
            let l = s
                .allocate4(&key(mac), &[0], 0, &|a| Some(lease(a, mac, 1000)), 1000)
                .unwrap();
            got.push(l.addr);
        }
        got.sort();
        got.dedup();
        assert_eq!(got.len(), 4);
        assert_eq!(
            s.allocate4(&key(9), &[0], 0, &|a| Some(lease(a, 9, 1000)), 1000),
            Err(ClaimError::PoolsExhausted)
        );
        assert_eq!(
            s.claim4(&key(9), lease(got[0], 9, 1000), 1000),
            Err(ClaimError::InUse)
        );
        // The owner can re-claim its own address.
        let owner = s.get_by_addr4(got[0]).unwrap();
        let owner_key = ClientKey::v4(1, &owner.hwaddr, None, true);
        assert!(s.claim4(&owner_key, owner.clone(), 1000).is_ok());
    }

    #[test]
    fn expired_leases_are_reclaimed_and_reusable() {
        let s = store(Ipv4Addr::new(10, 0, 0, 10), 1);
        let l = s
            .allocate4(&key(1), &[0], 0, &|a| Some(lease(a, 1, 1000)), 1000)
            .unwrap();
        let mut changes = Vec::new();
        let mut cursor = 0;
        assert_eq!(
            s.reclaim4(1050, 10, &mut cursor, &mut |c| changes.push(c)),
            0
        );
        assert_eq!(
            s.reclaim4(1100, 10, &mut cursor, &mut |c| changes.push(c)),
            1
        );
        assert!(
            matches!(&changes[0], LeaseChange::Put4(l2) if l2.state == LeaseState::ExpiredReclaimed)
        );
        // Client 1 still finds its old lease (affinity); client 2 may take the address.
        assert_eq!(s.get_by_client4(&key(1)).unwrap().addr, l.addr);
        let l2 = s
            .allocate4(&key(2), &[0], 1, &|a| Some(lease(a, 2, 1200)), 1200)
            .unwrap();
        assert_eq!(l2.addr, l.addr);
        // Client 1's index entry is now stale and must not resolve to client 2's lease.
        assert_eq!(s.get_by_client4(&key(1)), None);
    }

    #[test]
    fn put_and_delete_keep_the_free_set_exact() {
        let s = store(Ipv4Addr::new(10, 0, 0, 10), 2);
        s.put4(lease(Ipv4Addr::new(10, 0, 0, 10), 1, 1000));
        let l = s
            .allocate4(&key(2), &[0], 0, &|a| Some(lease(a, 2, 1000)), 1000)
            .unwrap();
        assert_eq!(l.addr, Ipv4Addr::new(10, 0, 0, 11));
        s.delete4(Ipv4Addr::new(10, 0, 0, 10));
        let l = s
            .allocate4(&key(3), &[0], 0, &|a| Some(lease(a, 3, 1000)), 1000)
            .unwrap();
        assert_eq!(l.addr, Ipv4Addr::new(10, 0, 0, 10));
    }

    #[test]
    fn concurrent_workers_never_double_allocate() {
        let s = std::sync::Arc::new(store(Ipv4Addr::new(10, 0, 0, 0), 20_000));
        let handles: Vec<_> = (0..4)
            .map(|w| {
                let s = s.clone();
                std::thread::spawn(move || {
                    let mut mine = Vec::new();
                    for i in 0..5_000u32 {
                        let mac = [w as u8, (i >> 16) as u8, (i >> 8) as u8, i as u8, 0, 1];
                        let k = ClientKey::v4(1, &HwAddr::ethernet(mac), None, true);
                        let l = s
                            .allocate4(
                                &k,
                                &[0],
                                w,
                                &|a| {
                                    Some(Lease4 {
                                        hwaddr: HwAddr::ethernet(mac),
                                        ..lease(a, 0, 1)
                                    })
                                },
                                1,
                            )
                            .unwrap();
                        mine.push(l.addr);
                    }
                    mine
                })
            })
            .collect();
        let mut all: Vec<_> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        all.sort();
        let n = all.len();
        all.dedup();
        assert_eq!(all.len(), n);
        assert_eq!(s.count4(), 20_000);
    }

    #[test]
    fn slot_leases_keep_every_field_including_long_ones() {
        let s = store(Ipv4Addr::new(10, 0, 0, 0), 100);
        let now = 1000;
        let short = Lease4 {
            client_id: IdBuf::from_slice(&[1, 2, 0, 0, 0, 0, 7]),
            fqdn_fwd: true,
            ..lease(Ipv4Addr::new(10, 0, 0, 1), 1, now)
        };
        let long = Lease4 {
            client_id: IdBuf::from_slice(&[0xff; 40]),
            hostname: Some(Arc::from("host-a.example.org")),
            fqdn_rev: true,
            state: LeaseState::Declined,
            cltt: u64::from(u32::MAX) + 5,
            ..lease(Ipv4Addr::new(10, 0, 0, 2), 2, now)
        };
        let outside = lease(Ipv4Addr::new(192, 0, 2, 9), 3, now);
        for l in [&short, &long, &outside] {
            s.put4(l.clone());
            assert_eq!(s.get_by_addr4(l.addr).as_ref(), Some(l));
        }
        assert_eq!(s.count4(), 3);
        let mut seen = Vec::new();
        s.for_each4(&mut |l| seen.push(l.clone()));
        seen.sort_by_key(|l| l.addr);
        assert_eq!(seen, vec![short.clone(), long.clone(), outside.clone()]);
        // The long client id is what the client index matches on.
        let k = ClientKey::v4(1, &long.hwaddr, Some(&long.client_id), true);
        assert_eq!(s.get_by_client4(&k).as_ref(), Some(&long));
        // Replacing a long record with a short one drops the out-of-line part.
        let shorter = Lease4 {
            client_id: IdBuf::new(),
            hostname: None,
            ..long.clone()
        };
        s.put4(shorter.clone());
        assert_eq!(s.get_by_addr4(long.addr), Some(shorter));
        assert_eq!(s.delete4(long.addr).map(|l| l.addr), Some(long.addr));
        assert_eq!(s.get_by_addr4(long.addr), None);
        assert_eq!(s.count4(), 2);
    }

    #[test]
    fn the_reclaimer_visits_every_part_of_the_store_in_turn() {
        // 3 addresses in a dense pool, one outside any pool; reclaiming one at a time must reach
        // all four, wherever the cursor starts.
        let s = store(Ipv4Addr::new(10, 0, 0, 0), 3);
        for (i, a) in [[10, 0, 0, 0], [10, 0, 0, 1], [10, 0, 0, 2], [192, 0, 2, 1]]
            .into_iter()
            .enumerate()
        {
            s.put4(lease(Ipv4Addr::from(a), i as u8, 1000));
        }
        let mut cursor = 5;
        let mut changes = Vec::new();
        for _ in 0..4 {
            assert_eq!(
                s.reclaim4(2000, 1, &mut cursor, &mut |c| changes.push(c)),
                1
            );
        }
        assert_eq!(
            s.reclaim4(2000, 10, &mut cursor, &mut |c| changes.push(c)),
            0
        );
        assert_eq!(changes.len(), 4);
        assert_eq!(s.pools()[0].alloc.free(), 3);
    }

    #[test]
    fn a_reclaim_pass_in_one_step_slices_reaches_every_lease() {
        // 3 dense-pool blocks and 8 map shards; a budget that stops after every step must still
        // reclaim everything in exactly one pass worth of steps, from any cursor.
        let s = store(Ipv4Addr::new(10, 0, 0, 0), 3 * RECLAIM_BLOCK as u64);
        let mut expected = Vec::new();
        for block in 0..3u32 {
            let a = Ipv4Addr::from(
                u32::from(Ipv4Addr::new(10, 0, 0, 7)) + block * RECLAIM_BLOCK as u32,
            );
            s.put4(lease(a, block as u8, 1000));
            expected.push(a);
        }
        for i in 0..8u8 {
            let a = Ipv4Addr::new(192, 0, 2, i);
            s.put4(lease(a, 100 + i, 1000));
            expected.push(a);
        }
        let positions = s.reclaim_positions4();
        assert_eq!(positions, 8 + 3);
        let mut cursor = 4;
        let mut changes = Vec::new();
        let mut visited = 0;
        let mut calls = 0;
        while visited < positions {
            let p = s.reclaim4_within(2000, usize::MAX, &mut cursor, &mut || false, &mut |c| {
                changes.push(c)
            });
            assert_eq!(
                p.visited, 1,
                "a budget that says stop ends the call after one step"
            );
            visited += p.visited;
            calls += 1;
        }
        assert_eq!(calls, positions);
        let mut got: Vec<Ipv4Addr> = changes
            .iter()
            .map(|c| match c {
                LeaseChange::Put4(l) => l.addr,
                other => panic!("unexpected change {other:?}"),
            })
            .collect();
        got.sort();
        expected.sort();
        assert_eq!(got, expected);
        // Nothing is left for a second pass.
        let p = s.reclaim4_within(2000, usize::MAX, &mut cursor, &mut || true, &mut |_| {
            panic!("reclaimed twice")
        });
        assert_eq!(
            p,
            ReclaimProgress {
                reclaimed: 0,
                visited: positions
            }
        );
    }
}
