//! Shared helpers for the journal tests: lease generators and an in-memory model of the journal's
//! replay semantics (latest change per key wins).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use xdhcp_dataplane::lease::types::{
    HwAddr, IdBuf, Lease4, Lease6, Lease6Type, LeaseChange, LeaseState,
};

pub fn v4(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(0x0a00_0000u32 + i)
}

pub fn v6(i: u32) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, (i >> 16) as u16, i as u16)
}

pub fn lease4(i: u32, cltt: u64) -> Lease4 {
    let b = i.to_be_bytes();
    Lease4 {
        addr: v4(i),
        hwaddr: HwAddr::ethernet([0x02, 0, b[0], b[1], b[2], b[3]]),
        client_id: if i % 3 == 0 {
            IdBuf::new()
        } else {
            IdBuf::from_slice(&[1, 0x02, 0, b[0], b[1], b[2], b[3]])
        },
        subnet_id: 1 + i % 7,
        cltt,
        valid_lft: 3600 + i % 100,
        state: match i % 5 {
            0 => LeaseState::Declined,
            1 => LeaseState::ExpiredReclaimed,
            _ => LeaseState::Assigned,
        },
        fqdn_fwd: i % 2 == 0,
        fqdn_rev: i % 4 == 0,
        hostname: if i % 2 == 1 {
            Some(Arc::from(format!("host-{i},a&b")))
        } else {
            None
        },
    }
}

pub fn lease6(i: u32, cltt: u64) -> Lease6 {
    let pd = i % 4 == 0;
    Lease6 {
        addr: v6(i),
        prefix_len: if pd { 56 } else { 128 },
        lease_type: if pd { Lease6Type::Pd } else { Lease6Type::Na },
        duid: IdBuf::from_slice(&[
            0,
            1,
            0,
            1,
            (i >> 8) as u8,
            i as u8,
            0xaa,
            0xbb,
            0xcc,
            0xdd,
            0xee,
            0xff,
            0x11,
            0x22,
        ]),
        iaid: i.wrapping_mul(7),
        subnet_id: 10 + i % 3,
        cltt,
        valid_lft: 7200,
        preferred_lft: 3600,
        state: if i % 7 == 0 {
            LeaseState::Declined
        } else {
            LeaseState::Assigned
        },
        hwaddr: if i % 2 == 0 {
            Some(HwAddr::ethernet([0x02, 0, 0, 0, (i >> 8) as u8, i as u8]))
        } else {
            None
        },
        fqdn_fwd: i % 3 == 0,
        fqdn_rev: false,
        hostname: if i % 5 == 0 {
            Some(Arc::from("v6-host"))
        } else {
            None
        },
    }
}

/// What replay must produce, given the changes in the order the store applied them.
#[derive(Default, Debug, Clone)]
pub struct Model {
    pub v4: BTreeMap<Ipv4Addr, Lease4>,
    pub v6: BTreeMap<(Ipv6Addr, u8), Lease6>,
}

impl Model {
    pub fn apply(&mut self, c: &LeaseChange) {
        match c {
            LeaseChange::Put4(l) => {
                self.v4.insert(l.addr, l.clone());
            }
            LeaseChange::Del4(a) => {
                self.v4.remove(a);
            }
            LeaseChange::Put6(l) => {
                self.v6.insert((l.addr, l.lease_type as u8), l.clone());
            }
            LeaseChange::Del6(a, t) => {
                self.v6.remove(&(*a, *t as u8));
            }
        }
    }
    pub fn leases4(&self) -> Vec<Lease4> {
        self.v4.values().cloned().collect()
    }
    pub fn leases6(&self) -> Vec<Lease6> {
        self.v6.values().cloned().collect()
    }
}

/// Push, waiting (briefly) while the queue is full: tests want every change in.
pub fn push_all(p: &xdhcp_dataplane::lease::journal::JournalProducer, c: LeaseChange) {
    let mut c = c;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match p.try_push(c) {
            Ok(()) => return,
            Err(back) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "journal queue stayed full for 30 s"
                );
                c = back;
                std::thread::yield_now();
            }
        }
    }
}
