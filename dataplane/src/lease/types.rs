//! Lease records as the store, the journal, the CSV codec and the control process see them.
//! Fixed-size inline buffers keep the common case (MACs, client-ids and DUIDs up to 32 bytes)
//! free of heap allocation; longer identifiers spill to the heap (rare, and still correct).

use smallvec::SmallVec;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

pub use xdhcp_config::model::SubnetId;

/// Client identifier, DUID or any other opaque client key bytes.
pub type IdBuf = SmallVec<[u8; 32]>;

/// Hardware address with its ARP hardware type (1 = Ethernet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct HwAddr {
    pub htype: u8,
    pub len: u8,
    pub bytes: [u8; 16],
}

impl HwAddr {
    pub fn new(htype: u8, addr: &[u8]) -> Self {
        let len = addr.len().min(16);
        let mut bytes = [0u8; 16];
        bytes[..len].copy_from_slice(&addr[..len]);
        HwAddr {
            htype,
            len: len as u8,
            bytes,
        }
    }
    pub fn ethernet(mac: [u8; 6]) -> Self {
        Self::new(1, &mac)
    }
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Kea's lease state numbers (memfile CSV `state`, lease JSON `state`) plus xdhcp's internal
/// `Offered` (an address held for an OFFER/ADVERTISE; never exported, never replicated).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LeaseState {
    /// Kea 0: assigned to the client.
    Assigned,
    /// Kea 1: declined by a client; held for the probation period.
    Declined,
    /// Kea 2: expired or released and reclaimed; kept so the client gets the same address back.
    ExpiredReclaimed,
    /// Held for an offer; the address is not free until `cltt + valid_lft`.
    Offered,
}

impl LeaseState {
    pub fn kea_code(self) -> u8 {
        match self {
            LeaseState::Assigned | LeaseState::Offered => 0,
            LeaseState::Declined => 1,
            LeaseState::ExpiredReclaimed => 2,
        }
    }
    pub fn from_kea_code(code: u64) -> Option<Self> {
        match code {
            0 => Some(LeaseState::Assigned),
            1 => Some(LeaseState::Declined),
            2 => Some(LeaseState::ExpiredReclaimed),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease4 {
    pub addr: Ipv4Addr,
    pub hwaddr: HwAddr,
    /// Option 61 payload (type byte included); empty when the client sent none.
    pub client_id: IdBuf,
    pub subnet_id: SubnetId,
    /// Client last transaction time, unix seconds.
    pub cltt: u64,
    pub valid_lft: u32,
    pub state: LeaseState,
    pub fqdn_fwd: bool,
    pub fqdn_rev: bool,
    pub hostname: Option<Arc<str>>,
}

impl Lease4 {
    /// Unix seconds at which the lease expires.
    pub fn expire(&self) -> u64 {
        self.cltt + u64::from(self.valid_lft)
    }
    pub fn is_active(&self, now: u64) -> bool {
        matches!(self.state, LeaseState::Assigned | LeaseState::Offered) && self.expire() > now
    }
}

/// DHCPv6 lease type, Kea's numbering (CSV `lease_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lease6Type {
    Na = 0,
    Ta = 1,
    Pd = 2,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease6 {
    pub addr: Ipv6Addr,
    /// 128 for addresses; the delegated length for prefixes.
    pub prefix_len: u8,
    pub lease_type: Lease6Type,
    pub duid: IdBuf,
    pub iaid: u32,
    pub subnet_id: SubnetId,
    pub cltt: u64,
    pub valid_lft: u32,
    pub preferred_lft: u32,
    pub state: LeaseState,
    pub hwaddr: Option<HwAddr>,
    pub fqdn_fwd: bool,
    pub fqdn_rev: bool,
    pub hostname: Option<Arc<str>>,
}

impl Lease6 {
    pub fn expire(&self) -> u64 {
        self.cltt + u64::from(self.valid_lft)
    }
    pub fn is_active(&self, now: u64) -> bool {
        matches!(self.state, LeaseState::Assigned | LeaseState::Offered) && self.expire() > now
    }
}

/// One change to the lease database: what the workers hand to the journal and what the
/// control process replicates. `Offered` leases are never journaled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseChange {
    Put4(Lease4),
    Del4(Ipv4Addr),
    Put6(Lease6),
    Del6(Ipv6Addr, Lease6Type),
}
