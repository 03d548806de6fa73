//! The sharded in-memory lease store.
//!
//! Two indexes, each split into shards behind their own small locks (no global lock):
//! - by address: `addr → lease`, sharded by a hash of the address. This index is the truth: an
//!   address is leased to at most one client because every claim checks and writes it under the
//!   shard lock.
//! - by client: `(subnet, client key) → address`, sharded by a hash of the client key. Entries may
//!   go stale (the address was reclaimed and reused by someone else); lookups validate against
//!   the address index, so staleness is harmless.
//!
//! Lock order: an address-shard lock may be held while taking a client-shard lock, never the
//! reverse, so two workers cannot deadlock. Free addresses come from per-pool [`PoolAlloc`]s.
//! Capacity is reserved up front from the configured pool sizes, so the hot path does not
//! allocate while the store stays within them.

use super::alloc::PoolAlloc;
use super::types::*;
use crossbeam_utils::CachePadded;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::net::{Ipv4Addr, Ipv6Addr};

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
}

impl Default for StoreSizing {
    fn default() -> Self {
        StoreSizing {
            shards: 64,
            stripes: 4,
            expected_leases: 1 << 16,
        }
    }
}

type Shard<K, V> = CachePadded<Mutex<HashMap<K, V, Hasher>>>;

pub struct LeaseStore {
    hasher: Hasher,
    shard_mask: usize,
    addrs4: Box<[Shard<u32, Lease4>]>,
    addrs6: Box<[Shard<(u128, Lease6Type), Lease6>]>,
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
        let per_shard = sizing.expected_leases / shards + 16;
        let mut pools_by_first: Vec<usize> = (0..pools.len()).collect();
        pools_by_first.sort_by_key(|&i| pools[i].first);
        LeaseStore {
            addrs4: new_shards(shards, per_shard, &hasher),
            addrs6: new_shards(shards, 16, &hasher),
            clients: new_shards(shards, per_shard, &hasher),
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

    pub fn get_by_addr4(&self, addr: Ipv4Addr) -> Option<Lease4> {
        let a = u32::from(addr);
        self.addrs4[self.shard_of(&a)].lock().get(&a).cloned()
    }

    /// The lease recorded for this client key (any state), validated against the address index.
    pub fn get_by_client4(&self, key: &ClientKey) -> Option<Lease4> {
        let addr = *self.clients[self.shard_of(key)].lock().get(key)?;
        let lease = self.get_by_addr4(Ipv4Addr::from(addr as u32))?;
        key.matches4(&lease).then_some(lease)
    }

    /// Whether `addr` can be given to `key` now: free, expired, reclaimed, or already theirs.
    fn claimable4(existing: Option<&Lease4>, key: &ClientKey, now: u64) -> bool {
        match existing {
            None => true,
            Some(l) if key.matches4(l) => true,
            Some(l) => match l.state {
                LeaseState::ExpiredReclaimed => true,
                LeaseState::Assigned | LeaseState::Offered => l.expire() <= now,
                LeaseState::Declined => l.expire() <= now,
            },
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
        let mut shard = self.addrs4[self.shard_of(&a)].lock();
        let existing = shard.get(&a);
        if !Self::claimable4(existing, key, now) {
            return Err(ClaimError::InUse);
        }
        let was_free_in_pool =
            existing.is_none_or(|l| l.state == LeaseState::ExpiredReclaimed || l.expire() <= now);
        if was_free_in_pool {
            if let Some(p) = self.pool_of(u128::from(a), None) {
                let pool = &self.pools[p];
                pool.alloc.take(pool.unit_of(u128::from(a)));
            }
        }
        let prev = shard.insert(a, lease);
        let version = stamp();
        // Leaf lock taken while holding the address shard: allowed by the lock order.
        self.clients[self.shard_of(key)]
            .lock()
            .insert(key.clone(), u128::from(a));
        Ok((prev, version))
    }

    /// Allocate a free address from the first candidate pool with room.
    pub fn allocate4(
        &self,
        key: &ClientKey,
        pools: &[usize],
        worker: usize,
        make: &dyn Fn(Ipv4Addr) -> Lease4,
        now: u64,
    ) -> Result<Lease4, ClaimError> {
        for &p in pools {
            let pool = &self.pools[p];
            // Bounded: a dense pool's free set is exact, so retries only happen after races or
            // for addresses held outside the bitmap's knowledge (e.g. imported leases).
            for _ in 0..64 {
                let Some(unit) = pool.alloc.pop(worker) else {
                    break;
                };
                let addr = Ipv4Addr::from(pool.addr_of(unit) as u32);
                let lease = make(addr);
                let a = u32::from(addr);
                let mut shard = self.addrs4[self.shard_of(&a)].lock();
                if !Self::claimable4(shard.get(&a), key, now) {
                    continue; // held by someone the bitmap did not know about; leave it taken
                }
                shard.insert(a, lease.clone());
                self.clients[self.shard_of(key)]
                    .lock()
                    .insert(key.clone(), u128::from(a));
                return Ok(lease);
            }
        }
        Err(ClaimError::PoolsExhausted)
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
        let mut shard = self.addrs4[self.shard_of(&a)].lock();
        let l = shard.get_mut(&a)?;
        if !key.matches4(l) {
            return None;
        }
        f(l);
        let out = l.clone();
        if matches!(out.state, LeaseState::ExpiredReclaimed) {
            self.free_unit4(a);
        }
        Some((out, stamp()))
    }

    fn free_unit4(&self, a: u32) {
        if let Some(p) = self.pool_of(u128::from(a), None) {
            let pool = &self.pools[p];
            pool.alloc.put(pool.unit_of(u128::from(a)));
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
        let mut shard = self.addrs4[self.shard_of(&a)].lock();
        if let Some(p) = self.pool_of(u128::from(a), None) {
            let pool = &self.pools[p];
            if held {
                pool.alloc.take(pool.unit_of(u128::from(a)));
            } else {
                pool.alloc.put(pool.unit_of(u128::from(a)));
            }
        }
        shard.insert(a, lease);
        let version = stamp();
        if key.kind == KeyKind::ClientId {
            self.clients[self.shard_of(&key)]
                .lock()
                .insert(key, u128::from(a));
        }
        if !hw_key.id.is_empty() {
            self.clients[self.shard_of(&hw_key)]
                .lock()
                .insert(hw_key, u128::from(a));
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
        let mut shard = self.addrs4[self.shard_of(&a)].lock();
        let removed = shard.remove(&a)?;
        self.free_unit4(a);
        Some((removed, stamp()))
    }

    /// Reclaim up to `max` expired leases, scanning shards from `cursor` (updated). Expired
    /// assigned leases become `ExpiredReclaimed` (kept for address affinity), expired offers and
    /// declined addresses past probation are removed. Reports every change through `on_change`
    /// so the caller can journal it (offers are never journaled and are not reported).
    pub fn reclaim4(
        &self,
        now: u64,
        max: usize,
        cursor: &mut usize,
        on_change: &mut dyn FnMut(LeaseChange),
    ) -> usize {
        let mut done = 0;
        let n = self.addrs4.len();
        for step in 0..n {
            if done >= max {
                break;
            }
            let si = (*cursor + step) % n;
            let mut shard = self.addrs4[si].lock();
            let mut to_remove: smallvec::SmallVec<[u32; 16]> = smallvec::SmallVec::new();
            for (a, l) in shard.iter_mut() {
                if done >= max {
                    break;
                }
                if l.expire() > now || l.state == LeaseState::ExpiredReclaimed {
                    continue;
                }
                match l.state {
                    LeaseState::Assigned => {
                        l.state = LeaseState::ExpiredReclaimed;
                        on_change(LeaseChange::Put4(l.clone()));
                        self.free_unit4(*a);
                    }
                    LeaseState::Offered => to_remove.push(*a),
                    LeaseState::Declined => {
                        on_change(LeaseChange::Del4(l.addr));
                        to_remove.push(*a);
                    }
                    LeaseState::ExpiredReclaimed => {}
                }
                done += 1;
                if to_remove.len() == to_remove.inline_size() {
                    break;
                }
            }
            for a in to_remove {
                shard.remove(&a);
                self.free_unit4(a);
            }
            *cursor = si;
        }
        done
    }

    /// Visit every v4 lease (control API, export, compaction checks). Holds one shard at a time.
    pub fn for_each4(&self, f: &mut dyn FnMut(&Lease4)) {
        for s in self.addrs4.iter() {
            for l in s.lock().values() {
                f(l);
            }
        }
    }

    pub fn count4(&self) -> usize {
        self.addrs4.iter().map(|s| s.lock().len()).sum()
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
        self.clients[self.shard_of(key)]
            .lock()
            .insert(key.clone(), k.0);
        Ok((prev, version))
    }

    pub fn allocate6(
        &self,
        key: &ClientKey,
        pools: &[usize],
        worker: usize,
        make: &dyn Fn(Ipv6Addr) -> Lease6,
        now: u64,
    ) -> Result<Lease6, ClaimError> {
        for &p in pools {
            let pool = &self.pools[p];
            let Some(ty) = pool.v6_type else { continue };
            for _ in 0..64 {
                let Some(unit) = pool.alloc.pop(worker) else {
                    break;
                };
                let k = (pool.addr_of(unit), ty);
                let lease = make(Ipv6Addr::from(k.0));
                let mut shard = self.addrs6[self.shard_of(&k)].lock();
                if !Self::claimable6(shard.get(&k), key, now) {
                    continue;
                }
                shard.insert(k, lease.clone());
                self.clients[self.shard_of(key)]
                    .lock()
                    .insert(key.clone(), k.0);
                return Ok(lease);
            }
        }
        Err(ClaimError::PoolsExhausted)
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
        self.clients[self.shard_of(&key)].lock().insert(key, k.0);
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

    pub fn reclaim6(
        &self,
        now: u64,
        max: usize,
        cursor: &mut usize,
        on_change: &mut dyn FnMut(LeaseChange),
    ) -> usize {
        let mut done = 0;
        let n = self.addrs6.len();
        for step in 0..n {
            if done >= max {
                break;
            }
            let si = (*cursor + step) % n;
            let mut shard = self.addrs6[si].lock();
            let mut to_remove: smallvec::SmallVec<[(u128, Lease6Type); 16]> =
                smallvec::SmallVec::new();
            for (k, l) in shard.iter_mut() {
                if done >= max || to_remove.len() == to_remove.inline_size() {
                    break;
                }
                if l.expire() > now || l.state == LeaseState::ExpiredReclaimed {
                    continue;
                }
                match l.state {
                    LeaseState::Assigned => {
                        l.state = LeaseState::ExpiredReclaimed;
                        on_change(LeaseChange::Put6(l.clone()));
                        self.free_unit6(k.0, k.1);
                    }
                    LeaseState::Offered => to_remove.push(*k),
                    LeaseState::Declined => {
                        on_change(LeaseChange::Del6(l.addr, l.lease_type));
                        to_remove.push(*k);
                    }
                    LeaseState::ExpiredReclaimed => {}
                }
                done += 1;
            }
            for k in to_remove {
                shard.remove(&k);
                self.free_unit6(k.0, k.1);
            }
            *cursor = si;
        }
        done
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
                .allocate4(&key(mac), &[0], 0, &|a| lease(a, mac, 1000), 1000)
                .unwrap();
            got.push(l.addr);
        }
        got.sort();
        got.dedup();
        assert_eq!(got.len(), 4);
        assert_eq!(
            s.allocate4(&key(9), &[0], 0, &|a| lease(a, 9, 1000), 1000),
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
            .allocate4(&key(1), &[0], 0, &|a| lease(a, 1, 1000), 1000)
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
            .allocate4(&key(2), &[0], 1, &|a| lease(a, 2, 1200), 1200)
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
            .allocate4(&key(2), &[0], 0, &|a| lease(a, 2, 1000), 1000)
            .unwrap();
        assert_eq!(l.addr, Ipv4Addr::new(10, 0, 0, 11));
        s.delete4(Ipv4Addr::new(10, 0, 0, 10));
        let l = s
            .allocate4(&key(3), &[0], 0, &|a| lease(a, 3, 1000), 1000)
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
                                &|a| Lease4 {
                                    hwaddr: HwAddr::ethernet(mac),
                                    ..lease(a, 0, 1)
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
}
