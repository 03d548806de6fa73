//! The DHCPv6 configuration compiled for the hot path: subnets with their candidate sets (shared
//! networks), address and prefix-delegation pools registered with the lease store, lookups by
//! relay link-address, interface and interface-id, reservations indexed by DUID and hardware
//! address, merged option tables (pool > subnet > shared network > global), the server DUID and
//! the unicast addresses the server accepts. Built once per (re)load; workers only read it.

use super::classes::ClassTable;
use crate::lease::alloc::{PoolAlloc, Split};
use crate::lease::store::{KeyKind, PoolInfo};
use crate::lease::{IdBuf, Lease6Type};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use xdhcp_config::model::{Dhcp6, HostIdentifier, OptionSet, Reservation6, Subnet6};

/// DHCPv6 options merged from several scopes, encoded once (code, length, payload) and indexed by
/// code, so building a reply costs one lookup and one copy per option sent.
#[derive(Debug, Clone, Default)]
pub struct Opts6 {
    blob: Vec<u8>,
    /// (code, start, len, from the global scope) sorted by code.
    index: Vec<(u16, u32, u32, bool)>,
    /// Codes configured with `always-send`.
    pub always: Vec<u16>,
}

impl Opts6 {
    /// Merge the `local` scopes, highest precedence first (pool, subnet, shared network), over the
    /// `global` one: the first scope that configures a code wins. Codes won by `global` are marked,
    /// since client-class options rank between the two (see [`Opts6::is_global`]).
    pub fn merge(local: &[&OptionSet], global: &OptionSet) -> Opts6 {
        let mut t = Opts6::default();
        let scopes = local.iter().map(|s| (*s, false)).chain([(global, true)]);
        for (set, is_global) in scopes {
            for o in &set.options {
                if o.data.len() > usize::from(u16::MAX)
                    || t.index.iter().any(|(c, ..)| *c == o.code)
                {
                    continue;
                }
                let start = t.blob.len();
                t.blob.extend_from_slice(&o.code.to_be_bytes());
                t.blob
                    .extend_from_slice(&(o.data.len() as u16).to_be_bytes());
                t.blob.extend_from_slice(&o.data);
                t.index.push((
                    o.code,
                    start as u32,
                    (t.blob.len() - start) as u32,
                    is_global,
                ));
                if o.always_send {
                    t.always.push(o.code);
                }
            }
        }
        t.index.sort_by_key(|e| e.0);
        t
    }

    /// The encoded option (header included), if configured.
    pub fn encoded(&self, code: u16) -> Option<&[u8]> {
        let i = self.index.binary_search_by_key(&code, |e| e.0).ok()?;
        let (_, s, l, _) = self.index[i];
        Some(&self.blob[s as usize..(s + l) as usize])
    }

    /// Whether option `code` came from the global scope (client-class options override it; the
    /// pool, subnet and shared network scopes override client classes).
    pub fn is_global(&self, code: u16) -> bool {
        self.index
            .binary_search_by_key(&code, |e| e.0)
            .is_ok_and(|i| self.index[i].3)
    }

    pub fn payload(&self, code: u16) -> Option<&[u8]> {
        self.encoded(code).map(|e| &e[4..])
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }
}

pub struct PoolRt6 {
    /// Index in the lease store's pool list.
    pub store_index: usize,
    pub first: Ipv6Addr,
    pub last: Ipv6Addr,
    pub client_class: Option<String>,
    pub opts: Opts6,
}

pub struct PdPoolRt6 {
    pub store_index: usize,
    pub prefix: Ipv6Addr,
    pub prefix_len: u8,
    pub delegated_len: u8,
    pub excluded: Option<(Ipv6Addr, u8)>,
    pub client_class: Option<String>,
    pub opts: Opts6,
}

impl PdPoolRt6 {
    pub fn contains(&self, p: Ipv6Addr, len: u8) -> bool {
        len == self.delegated_len && prefix_contains(self.prefix, self.prefix_len, p)
    }

    /// The PD-exclude option payload (RFC 6603 §4.2) for a delegated prefix, if configured:
    /// excluded prefix length, then the bits of the excluded prefix between the delegated length
    /// and the excluded length, left-aligned in the fewest whole bytes.
    pub fn pd_exclude(&self, out: &mut [u8; 17]) -> Option<usize> {
        let (ex, ex_len) = self.excluded?;
        // The configured excluded prefix names the subnet-id bits; apply them to this prefix.
        let dl = u32::from(self.delegated_len);
        let el = u32::from(ex_len);
        if el <= dl || el > 128 {
            return None;
        }
        let nbits = el - dl;
        // el > dl, so dl < 128 and the shift is in range; nbits is 1..=128.
        let keep = if nbits >= 128 {
            u128::MAX
        } else {
            !(u128::MAX >> nbits)
        };
        let ex_bits = (u128::from(ex) << dl) & keep;
        let nbytes = nbits.div_ceil(8) as usize;
        out[0] = ex_len;
        out[1..1 + nbytes].copy_from_slice(&ex_bits.to_be_bytes()[..nbytes]);
        Some(1 + nbytes)
    }
}

pub struct SubnetRt6 {
    pub cfg: Subnet6,
    pub pools: Vec<PoolRt6>,
    pub pd_pools: Vec<PdPoolRt6>,
    /// Options for addresses outside pools and for Information-request: subnet > shared > global.
    pub opts: Opts6,
    /// Subnets to allocate from, in order: this one, then the rest of its shared network.
    pub candidates: Vec<usize>,
    /// Reservations of this subnet by identifier kind + bytes.
    pub reservations: HashMap<(KeyKind, IdBuf), usize>,
    /// Reserved addresses and prefixes → reservation index.
    pub reserved_addrs: HashMap<u128, usize>,
    pub reserved_prefixes: HashMap<(u128, u8), usize>,
    /// Rapid commit allowed (subnet or its shared network).
    pub rapid_commit: bool,
}

impl SubnetRt6 {
    pub fn pool_of(&self, a: Ipv6Addr) -> Option<&PoolRt6> {
        self.pools.iter().find(|p| p.first <= a && a <= p.last)
    }
    pub fn pd_pool_of(&self, p: Ipv6Addr, len: u8) -> Option<&PdPoolRt6> {
        self.pd_pools.iter().find(|pp| pp.contains(p, len))
    }
}

pub struct Runtime6 {
    pub cfg: Dhcp6,
    pub classes: ClassTable,
    pub subnets: Vec<SubnetRt6>,
    pub by_relay: HashMap<Ipv6Addr, usize>,
    pub by_interface: HashMap<String, Vec<usize>>,
    pub by_interface_id: HashMap<Vec<u8>, usize>,
    pub global_reservations: HashMap<(KeyKind, IdBuf), usize>,
    pub global_opts: Opts6,
    /// The server DUID (option 2 payload), read or generated at startup by the shell.
    pub server_duid: Vec<u8>,
    /// Interfaces configured with a unicast address (`"eth1/2001:db8::1"`): the server accepts
    /// unicast there and announces the address in the Server Unicast option.
    pub unicast: HashMap<String, Ipv6Addr>,
    /// Link-local address per served interface index (the source of replies to direct clients),
    /// filled by the shell; interfaces missing here use the EUI-64 address of their MAC.
    pub link_local: HashMap<u32, Ipv6Addr>,
}

pub fn prefix_contains(net: Ipv6Addr, len: u8, a: Ipv6Addr) -> bool {
    let mask = if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len.min(128)))
    };
    u128::from(a) & mask == u128::from(net) & mask
}

fn res_key(id: &HostIdentifier) -> Option<(KeyKind, IdBuf)> {
    match id {
        HostIdentifier::HwAddress(b) => Some((KeyKind::HwAddr, IdBuf::from_slice(b))),
        HostIdentifier::Duid(b) => Some((KeyKind::Duid, IdBuf::from_slice(b))),
        _ => None,
    }
}

fn index_reservations(list: &[Reservation6]) -> HashMap<(KeyKind, IdBuf), usize> {
    list.iter()
        .enumerate()
        .filter_map(|(i, r)| res_key(&r.identifier).map(|k| (k, i)))
        .collect()
}

/// Units in an address range, saturated to what a pool allocator can count (a /64 has 2^64
/// addresses; the allocator treats anything over its dense limit as sparse anyway).
fn range_units(first: Ipv6Addr, last: Ipv6Addr) -> u64 {
    let n = u128::from(last)
        .saturating_sub(u128::from(first))
        .saturating_add(1);
    u64::try_from(n).unwrap_or(u64::MAX)
}

impl Runtime6 {
    /// Compile `cfg`. Pools are appended to `pools` (the lease store's list) after what is there
    /// (v4 pools, when both families are served); `stripes` sets the allocator striping.
    /// `split_for` says who owns each subnet's addresses and prefixes under HA.
    pub fn new(
        cfg: &Dhcp6,
        server_duid: Vec<u8>,
        pools: &mut Vec<PoolInfo>,
        stripes: usize,
        split_for: &dyn Fn(&Subnet6) -> Split,
    ) -> Runtime6 {
        let empty = OptionSet::default();
        let mut subnets = Vec::with_capacity(cfg.subnets.len());
        for s in &cfg.subnets {
            let shared = s.shared_network.map(|i| &cfg.shared_networks[i]);
            let shared_opts = shared.map(|n| &n.options).unwrap_or(&empty);
            let mut prt = Vec::new();
            for p in &s.pools {
                let store_index = pools.len();
                pools.push(PoolInfo {
                    subnet_id: s.id,
                    first: u128::from(p.first),
                    unit_shift: 0,
                    v6_type: Some(Lease6Type::Na),
                    alloc: PoolAlloc::with_split(
                        range_units(p.first, p.last),
                        stripes,
                        split_for(s),
                    ),
                });
                prt.push(PoolRt6 {
                    store_index,
                    first: p.first,
                    last: p.last,
                    client_class: p.client_class.clone(),
                    opts: Opts6::merge(&[&p.options, &s.options, shared_opts], &cfg.global_options),
                });
            }
            let mut pdrt = Vec::new();
            for p in &s.pd_pools {
                let store_index = pools.len();
                let bits = u32::from(p.delegated_len.saturating_sub(p.prefix_len));
                let units = if bits >= 64 { u64::MAX } else { 1u64 << bits };
                pools.push(PoolInfo {
                    subnet_id: s.id,
                    first: u128::from(p.prefix),
                    unit_shift: 128 - p.delegated_len,
                    v6_type: Some(Lease6Type::Pd),
                    alloc: PoolAlloc::with_split(units, stripes, split_for(s)),
                });
                pdrt.push(PdPoolRt6 {
                    store_index,
                    prefix: p.prefix,
                    prefix_len: p.prefix_len,
                    delegated_len: p.delegated_len,
                    excluded: p.excluded_prefix,
                    client_class: p.client_class.clone(),
                    opts: Opts6::merge(&[&p.options, &s.options, shared_opts], &cfg.global_options),
                });
            }
            let mut reserved_addrs = HashMap::new();
            let mut reserved_prefixes = HashMap::new();
            for (i, r) in s.reservations.iter().enumerate() {
                for a in &r.ip_addresses {
                    reserved_addrs.insert(u128::from(*a), i);
                }
                for (p, l) in &r.prefixes {
                    reserved_prefixes.insert((u128::from(*p), *l), i);
                }
            }
            subnets.push(SubnetRt6 {
                pools: prt,
                pd_pools: pdrt,
                opts: Opts6::merge(&[&s.options, shared_opts], &cfg.global_options),
                candidates: Vec::new(),
                reservations: index_reservations(&s.reservations),
                reserved_addrs,
                reserved_prefixes,
                rapid_commit: s.rapid_commit || shared.is_some_and(|n| n.rapid_commit),
                cfg: s.clone(),
            });
        }
        for (i, sr) in subnets.iter_mut().enumerate() {
            let members = sr
                .cfg
                .shared_network
                .map(|n| cfg.shared_networks[n].subnets.as_slice());
            sr.candidates = super::runtime4::candidates(i, members);
        }
        let mut by_relay = HashMap::new();
        let mut by_interface: HashMap<String, Vec<usize>> = HashMap::new();
        let mut by_interface_id = HashMap::new();
        for (i, s) in cfg.subnets.iter().enumerate() {
            for r in &s.relay {
                by_relay.entry(*r).or_insert(i);
            }
            if let Some(ifname) = &s.interface {
                by_interface.entry(ifname.clone()).or_default().push(i);
            }
            if let Some(id) = &s.interface_id {
                by_interface_id.entry(id.clone()).or_insert(i);
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
                if let Some(id) = &n.interface_id {
                    by_interface_id.entry(id.clone()).or_insert(first);
                }
            }
        }
        let unicast = cfg
            .interfaces
            .iter()
            .filter_map(|i| match i.address {
                Some(IpAddr::V6(a)) => Some((i.name.clone(), a)),
                _ => None,
            })
            .collect();
        Runtime6 {
            subnets,
            by_relay,
            by_interface,
            by_interface_id,
            global_reservations: index_reservations(&cfg.global_reservations),
            global_opts: Opts6::merge(&[], &cfg.global_options),
            classes: ClassTable::new(&cfg.client_classes),
            server_duid,
            unicast,
            link_local: HashMap::new(),
            cfg: cfg.clone(),
        }
    }

    /// Subnet selection as Kea does it. Relayed: the interface-id (nearest the client first),
    /// then the innermost relay's link-address against the subnets' relay lists, then the subnet
    /// containing that link-address. Direct: the subnets bound to the receiving interface, then the
    /// subnet containing the source address.
    pub fn select_subnet(
        &self,
        relay_link: Option<Ipv6Addr>,
        interface_id: Option<&[u8]>,
        ifname: &str,
        src: Ipv6Addr,
    ) -> Option<usize> {
        let containing = |a: Ipv6Addr| self.subnets.iter().position(|s| s.cfg.contains(a));
        if let Some(link) = relay_link {
            if let Some(id) = interface_id {
                if let Some(&i) = self.by_interface_id.get(id) {
                    return Some(i);
                }
            }
            if let Some(&i) = self.by_relay.get(&link) {
                return Some(i);
            }
            if !link.is_unspecified() {
                return containing(link);
            }
            return None;
        }
        if let Some(&i) = self.by_interface.get(ifname).and_then(|l| l.first()) {
            return Some(i);
        }
        if !src.is_unspecified() && !is_link_local(src) {
            return containing(src);
        }
        None
    }

    /// The reservation for a client in subnet `si` (subnet reservations first, then global),
    /// by DUID, then by hardware address.
    pub fn reservation(&self, si: usize, duid: &[u8], hw: Option<&[u8]>) -> Option<&Reservation6> {
        let s = &self.subnets[si];
        let lookup = |map: &HashMap<(KeyKind, IdBuf), usize>| -> Option<usize> {
            if map.is_empty() {
                return None;
            }
            if let Some(&i) = map.get(&(KeyKind::Duid, IdBuf::from_slice(duid))) {
                return Some(i);
            }
            hw.and_then(|hw| map.get(&(KeyKind::HwAddr, IdBuf::from_slice(hw))).copied())
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

    /// Whether `a` (an address, or a prefix when `len` < 128) is reserved in subnet `si` for a
    /// client other than the one holding reservation `res`.
    pub fn reserved_for_other(
        &self,
        si: usize,
        a: Ipv6Addr,
        len: u8,
        res: Option<&Reservation6>,
    ) -> bool {
        let s = &self.subnets[si];
        let hit = if len == 128 {
            s.reserved_addrs.get(&u128::from(a))
        } else {
            s.reserved_prefixes.get(&(u128::from(a), len))
        };
        match hit {
            Some(&i) => res.is_none_or(|r| r != &s.cfg.reservations[i]),
            None => false,
        }
    }
}

pub fn is_link_local(a: Ipv6Addr) -> bool {
    a.segments()[0] & 0xffc0 == 0xfe80
}

/// The EUI-64 link-local address of a MAC (RFC 4291 appendix A), the kernel's default.
pub fn eui64_link_local(mac: [u8; 6]) -> Ipv6Addr {
    Ipv6Addr::from([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        mac[0] ^ 2,
        mac[1],
        mac[2],
        0xff,
        0xfe,
        mac[3],
        mac[4],
        mac[5],
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use xdhcp_config::model::OptionValue;

    #[test]
    fn options_merge_by_precedence_and_encode_headers() {
        let hi = OptionSet {
            options: vec![OptionValue {
                code: 23,
                data: vec![1; 16],
                always_send: false,
            }],
        };
        let lo = OptionSet {
            options: vec![
                OptionValue {
                    code: 23,
                    data: vec![2; 16],
                    always_send: false,
                },
                OptionValue {
                    code: 24,
                    data: vec![3, b'a', b'b', b'c', 0],
                    always_send: true,
                },
            ],
        };
        let t = Opts6::merge(&[&hi], &lo);
        assert_eq!(&t.encoded(23).unwrap()[..4], &[0, 23, 0, 16]);
        assert_eq!(t.payload(23).unwrap(), &[1; 16]);
        assert_eq!(t.payload(24).unwrap(), &[3, b'a', b'b', b'c', 0]);
        assert_eq!(t.always, vec![24]);
        assert!(t.encoded(7).is_none());
        assert!(!t.is_global(23) && t.is_global(24) && !t.is_global(7));
    }

    #[test]
    fn pd_exclude_encodes_subnet_id_bits() {
        let p = PdPoolRt6 {
            store_index: 0,
            prefix: "2001:db8::".parse().unwrap(),
            prefix_len: 48,
            delegated_len: 56,
            // Excluded /64: subnet-id bits 56..64 = 0x01.
            excluded: Some(("2001:db8:0:1::".parse().unwrap(), 64)),
            client_class: None,
            opts: Opts6::default(),
        };
        let mut out = [0u8; 17];
        let n = p.pd_exclude(&mut out).unwrap();
        assert_eq!(&out[..n], &[64, 0x01]);
    }
}
