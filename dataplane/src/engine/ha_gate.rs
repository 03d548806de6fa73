//! What the dataplane answers under high availability. The control process runs the HA state
//! machine and tells the dataplane, per relationship, whether DHCP is enabled and which peers'
//! scopes this server currently serves (`xdhcp-ha-serving`). The gate applies that per packet:
//! hot-standby and passive-backup serve everything or nothing; load-balancing hashes the client
//! (RFC 3074, [`super::lb_hash`]) to the primary's or the secondary's scope. Packets left
//! unanswered because they are out of scope are recorded (bounded) as observations for Kea's
//! unacked-clients failure detection.

use super::lb_hash::lb_server_index;
use crossbeam_queue::ArrayQueue;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use xdhcp_config::model::{HaMode, HaRelationship, HaRole, SubnetId};

/// A client seen out of scope: key bytes (option 61 or chaddr; DUID in v6) and `secs`/elapsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// Inline up to 32 bytes, so recording an observation does not allocate.
    pub key: crate::lease::IdBuf,
    pub secs: u16,
}

pub struct RelationshipGate {
    pub name: String,
    pub mode: HaMode,
    /// Peer names in config order; bit i of `scopes` = serve peer i's scope.
    pub peers: Vec<String>,
    /// Indexes into `peers` of the load-balancing servers, in hash order (primary, secondary).
    lb_order: Vec<usize>,
    /// Index of the primary in `peers` (hot-standby/passive-backup scope owner).
    primary: usize,
    pub enabled: AtomicBool,
    pub scopes: AtomicU32,
    pub analyzed: AtomicU64,
    pub observations: ArrayQueue<Observation>,
}

/// Per-subnet relationship lookup plus the live serving state.
pub struct HaGate {
    by_subnet: HashMap<SubnetId, usize>,
    /// When true (no HA configured), every subnet is served.
    standalone: bool,
    pub relationships: Vec<RelationshipGate>,
}

impl HaGate {
    pub fn standalone() -> HaGate {
        HaGate {
            by_subnet: HashMap::new(),
            standalone: true,
            relationships: Vec::new(),
        }
    }

    /// Build from config: subnets tagged `ha-server-name` go to that relationship; untagged subnets
    /// go to the only relationship when there is one (Kea 2.2's single-relationship behaviour).
    pub fn new(rels: &[HaRelationship], subnets: &[(SubnetId, Option<String>)]) -> HaGate {
        if rels.is_empty() {
            return HaGate::standalone();
        }
        let relationships: Vec<RelationshipGate> = rels
            .iter()
            .map(|r| {
                let peers: Vec<String> = r.peers.iter().map(|p| p.name.clone()).collect();
                let lb_order: Vec<usize> = r
                    .peers
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| matches!(p.role, HaRole::Primary))
                    .chain(
                        r.peers
                            .iter()
                            .enumerate()
                            .filter(|(_, p)| matches!(p.role, HaRole::Secondary)),
                    )
                    .map(|(i, _)| i)
                    .collect();
                let primary = r
                    .peers
                    .iter()
                    .position(|p| p.role == HaRole::Primary)
                    .unwrap_or(0);
                RelationshipGate {
                    name: r.this_server_name.clone(),
                    mode: r.mode,
                    peers,
                    lb_order,
                    primary,
                    // Kea starts every server in `waiting` with DHCP disabled until the state machine
                    // decides; the control process enables it.
                    enabled: AtomicBool::new(false),
                    scopes: AtomicU32::new(0),
                    analyzed: AtomicU64::new(0),
                    observations: ArrayQueue::new(1024),
                }
            })
            .collect();
        let mut by_subnet = HashMap::new();
        for (id, tag) in subnets {
            let idx = match tag {
                Some(name) => rels.iter().position(|r| {
                    &r.this_server_name == name || r.peers.iter().any(|p| &p.name == name)
                }),
                None if rels.len() == 1 => Some(0),
                None => None,
            };
            if let Some(i) = idx {
                by_subnet.insert(*id, i);
            }
        }
        HaGate {
            by_subnet,
            standalone: false,
            relationships,
        }
    }

    pub fn is_standalone(&self) -> bool {
        self.standalone
    }

    /// Decide whether to answer. `balanced` is whether the message type is load-balanced (RFC 3074
    /// scopes) or always belongs to the primary's scope.
    pub fn serve(&self, subnet: SubnetId, key: &[u8], balanced: bool, secs: u16) -> bool {
        if self.standalone {
            return true;
        }
        let Some(&ri) = self.by_subnet.get(&subnet) else {
            // A subnet outside every relationship is served locally.
            return true;
        };
        let r = &self.relationships[ri];
        r.analyzed.fetch_add(1, Relaxed);
        if !r.enabled.load(Relaxed) {
            return false;
        }
        let scopes = r.scopes.load(Relaxed);
        let owner = match r.mode {
            HaMode::LoadBalancing if balanced && r.lb_order.len() >= 2 => {
                r.lb_order[lb_server_index(key, r.lb_order.len())]
            }
            _ => r.primary,
        };
        let serve = scopes & (1 << owner) != 0;
        if !serve && !r.observations.is_full() {
            // Bounded: when full, the oldest observation stays and this one is dropped.
            let _ = r.observations.push(Observation {
                key: crate::lease::IdBuf::from_slice(key),
                secs,
            });
        }
        serve
    }

    /// Carry the serving state of same-named relationships over from `old` (configuration reload).
    pub fn adopt(&self, old: &HaGate) {
        for r in &self.relationships {
            if let Some(o) = old
                .relationships
                .iter()
                .find(|o| o.name == r.name && o.peers == r.peers)
            {
                r.enabled.store(o.enabled.load(Relaxed), Relaxed);
                r.scopes.store(o.scopes.load(Relaxed), Relaxed);
            }
        }
    }

    /// Apply `xdhcp-ha-serving` for one relationship.
    pub fn set(&self, rel_name: &str, enabled: bool, scopes: &[String]) -> Result<(), String> {
        let r = self
            .relationships
            .iter()
            .find(|r| r.name == rel_name)
            .ok_or_else(|| format!("no HA relationship named '{rel_name}'"))?;
        let mut mask = 0u32;
        for s in scopes {
            let i = r
                .peers
                .iter()
                .position(|p| p == s)
                .ok_or_else(|| format!("'{s}' is not a peer of '{rel_name}'"))?;
            mask |= 1 << i;
        }
        r.scopes.store(mask, Relaxed);
        r.enabled.store(enabled, Relaxed);
        Ok(())
    }
}
