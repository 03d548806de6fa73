//! The DHCPv4 configuration compiled for the hot path: subnets with their candidate sets
//! (shared networks), relay and interface lookups, reservations indexed by identifier, and the
//! merged option tables per pool. Built once per (re)load; workers only read it.

use super::classes::ClassTable;
use super::options::Opts4;
use crate::lease::alloc::{PoolAlloc, Split};
use crate::lease::store::{KeyKind, PoolInfo};
use crate::lease::IdBuf;
use std::collections::HashMap;
use std::net::Ipv4Addr;
use xdhcp_config::model::{Dhcp4, HostIdentifier, OptionSet, Reservation4, Subnet4};

pub struct PoolRt4 {
    /// Index in the lease store's pool list.
    pub store_index: usize,
    pub first: Ipv4Addr,
    pub last: Ipv4Addr,
    pub client_class: Option<String>,
    /// Options: pool > subnet > shared network > global.
    pub opts: Opts4,
}

pub struct SubnetRt4 {
    pub cfg: Subnet4,
    pub mask: Ipv4Addr,
    pub pools: Vec<PoolRt4>,
    /// Options for addresses outside pools (reservations) and INFORM: subnet > shared > global.
    pub opts: Opts4,
    /// Subnets to allocate from, in order: this one, then the rest of its shared network.
    pub candidates: Vec<usize>,
    /// Reservations of this subnet by identifier kind + bytes, and by address.
    pub reservations: HashMap<(KeyKind, IdBuf), usize>,
    pub reserved_addrs: HashMap<Ipv4Addr, usize>,
}

impl SubnetRt4 {
    pub fn pool_of(&self, a: Ipv4Addr) -> Option<&PoolRt4> {
        self.pools.iter().find(|p| p.first <= a && a <= p.last)
    }
}

pub struct Runtime4 {
    pub cfg: Dhcp4,
    pub subnets: Vec<SubnetRt4>,
    pub by_relay: HashMap<Ipv4Addr, usize>,
    pub by_interface: HashMap<String, Vec<usize>>,
    pub global_reservations: HashMap<(KeyKind, IdBuf), usize>,
    pub global_opts: Opts4,
    pub classes: ClassTable,
}

/// The subnets a client of subnet `i` may get an address from, in order: `i` itself, then the
/// other members of its shared network (`members`, indexes into the subnet list).
pub(super) fn candidates(i: usize, members: Option<&[usize]>) -> Vec<usize> {
    let mut c = vec![i];
    c.extend(members.unwrap_or(&[]).iter().copied().filter(|&j| j != i));
    c
}

fn mask_of(len: u8) -> Ipv4Addr {
    Ipv4Addr::from(if len == 0 { 0 } else { u32::MAX << (32 - len) })
}

fn res_key(id: &HostIdentifier) -> Option<(KeyKind, IdBuf)> {
    match id {
        HostIdentifier::HwAddress(b) => Some((KeyKind::HwAddr, IdBuf::from_slice(b))),
        HostIdentifier::ClientId(b) => Some((KeyKind::ClientId, IdBuf::from_slice(b))),
        _ => None,
    }
}

fn index_reservations(list: &[Reservation4]) -> HashMap<(KeyKind, IdBuf), usize> {
    list.iter()
        .enumerate()
        .filter_map(|(i, r)| res_key(&r.identifier).map(|k| (k, i)))
        .collect()
}

impl Runtime4 {
    /// Compile `cfg`. Pools are appended to `pools` (the lease store's list) starting at its
    /// current length; `stripes` sets the allocator striping (one per worker is a good choice).
    /// `split_for` says who owns each subnet's addresses under HA ([`Split::AllMine`] standalone).
    pub fn new(
        cfg: &Dhcp4,
        pools: &mut Vec<PoolInfo>,
        stripes: usize,
        split_for: &dyn Fn(&Subnet4) -> Split,
    ) -> Runtime4 {
        let empty = OptionSet::default();
        let mut subnets = Vec::with_capacity(cfg.subnets.len());
        for s in &cfg.subnets {
            let shared = s.shared_network.map(|i| &cfg.shared_networks[i]);
            let shared_opts = shared.map(|n| &n.options).unwrap_or(&empty);
            let mut prt = Vec::new();
            for p in &s.pools {
                let units = u64::from(u32::from(p.last) - u32::from(p.first)) + 1;
                let store_index = pools.len();
                pools.push(PoolInfo {
                    subnet_id: s.id,
                    first: u128::from(u32::from(p.first)),
                    unit_shift: 0,
                    v6_type: None,
                    alloc: PoolAlloc::with_split(units, stripes, split_for(s)),
                });
                prt.push(PoolRt4 {
                    store_index,
                    first: p.first,
                    last: p.last,
                    client_class: p.client_class.clone(),
                    opts: Opts4::merge(&[&p.options, &s.options, shared_opts], &cfg.global_options),
                });
            }
            let reserved_addrs = s
                .reservations
                .iter()
                .enumerate()
                .filter_map(|(i, r)| r.ip_address.map(|a| (a, i)))
                .collect();
            subnets.push(SubnetRt4 {
                mask: mask_of(s.prefix_len),
                pools: prt,
                opts: Opts4::merge(&[&s.options, shared_opts], &cfg.global_options),
                candidates: Vec::new(),
                reservations: index_reservations(&s.reservations),
                reserved_addrs,
                cfg: s.clone(),
            });
        }
        for (i, s) in subnets.iter_mut().enumerate() {
            let members = s
                .cfg
                .shared_network
                .map(|n| cfg.shared_networks[n].subnets.as_slice());
            s.candidates = candidates(i, members);
        }
        let mut by_relay = HashMap::new();
        let mut by_interface: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, s) in cfg.subnets.iter().enumerate() {
            for r in &s.relay {
                by_relay.entry(*r).or_insert(i);
            }
            if let Some(ifname) = &s.interface {
                by_interface.entry(ifname.clone()).or_default().push(i);
            }
        }
        for n in &cfg.shared_networks {
            if let Some(&first) = n.subnets.first() {
                for r in &n.relay {
                    by_relay.entry(*r).or_insert(first);
                }
                if let Some(ifname) = &n.interface {
                    by_interface.entry(ifname.clone()).or_default().push(first);
                }
            }
        }
        Runtime4 {
            subnets,
            by_relay,
            by_interface,
            global_reservations: index_reservations(&cfg.global_reservations),
            global_opts: Opts4::merge(&[], &cfg.global_options),
            classes: ClassTable::new(&cfg.client_classes),
            cfg: cfg.clone(),
        }
    }

    /// Subnet selection as Kea does it: option 118 / option 82 link-selection, then giaddr (relay
    /// lists first, then the subnet containing giaddr); for direct traffic the subnets bound to the
    /// receiving interface, then the subnet containing the interface address, then ciaddr.
    pub fn select_subnet(
        &self,
        selection: Option<Ipv4Addr>,
        giaddr: Ipv4Addr,
        ciaddr: Ipv4Addr,
        ifname: Option<&str>,
        if_addr: Ipv4Addr,
    ) -> Option<usize> {
        let containing = |a: Ipv4Addr| self.subnets.iter().position(|s| s.cfg.contains(a));
        if let Some(sel) = selection {
            return containing(sel);
        }
        if !giaddr.is_unspecified() {
            if let Some(&i) = self.by_relay.get(&giaddr) {
                return Some(i);
            }
            return containing(giaddr);
        }
        if let Some(name) = ifname {
            if let Some(list) = self.by_interface.get(name) {
                if let Some(&i) = list.first() {
                    return Some(i);
                }
            }
        }
        if !if_addr.is_unspecified() {
            if let Some(i) = containing(if_addr) {
                return Some(i);
            }
        }
        if !ciaddr.is_unspecified() {
            return containing(ciaddr);
        }
        None
    }

    /// The reservation for a client in subnet `si` (subnet reservations first, then global).
    pub fn reservation(
        &self,
        si: usize,
        hw: &[u8],
        client_id: Option<&[u8]>,
    ) -> Option<&Reservation4> {
        let s = &self.subnets[si];
        let lookup = |map: &HashMap<(KeyKind, IdBuf), usize>| -> Option<usize> {
            if map.is_empty() {
                return None;
            }
            if let Some(cid) = client_id {
                if let Some(&i) = map.get(&(KeyKind::ClientId, IdBuf::from_slice(cid))) {
                    return Some(i);
                }
            }
            map.get(&(KeyKind::HwAddr, IdBuf::from_slice(hw))).copied()
        };
        if s.cfg.reservations_in_subnet {
            if let Some(i) = lookup(&s.reservations) {
                return Some(&s.cfg.reservations[i]);
            }
        }
        if s.cfg.reservations_global {
            if let Some(i) = lookup(&self.global_reservations) {
                return Some(&self.cfg.global_reservations[i]);
            }
        }
        None
    }

    /// Whether an address is reserved for someone in subnet `si`.
    pub fn reserved_for_other(&self, si: usize, a: Ipv4Addr, res: Option<&Reservation4>) -> bool {
        match self.subnets[si].reserved_addrs.get(&a) {
            Some(&i) => res.is_none_or(|r| r != &self.subnets[si].cfg.reservations[i]),
            None => false,
        }
    }
}
