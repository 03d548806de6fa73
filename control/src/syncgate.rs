//! Synchronous replication, control side: what the dataplane's parked replies wait for.
//!
//! [`SyncPublisher`] keeps, per peer, the journal sequence that peer acknowledged through and
//! whether replies must wait for it ("must ack": synchronous mode, the peer is being sent lease
//! updates now, and it is not a backup, or it is a backup of a passive-backup relationship with
//! `wait-backup-ack`). It writes the gate page the dataplane maps
//! (`xdhcp_dataplane::syncrepl::gate`): the minimum acknowledged sequence over the peers that
//! must ack, the wait flag (on while any peer must ack) and the failure generation (bumped when
//! such a peer fails an update, which makes the dataplane drop what waits, as Kea does).
//!
//! [`AckWindow`] turns out-of-order completions of pipelined updates into the contiguous
//! "acknowledged through" sequence that the cursor file and the gate need.

use std::collections::VecDeque;
use std::sync::Mutex;

use xdhcp_dataplane::syncrepl::gate::{Gate, Slot};

/// The contiguous prefix of journal sequences whose updates completed, with updates in flight
/// completing in any order. Bounded by the caller (it never dispatches more than its window).
#[derive(Debug, Default)]
pub struct AckWindow {
    acked: u64,
    /// Sequences handed out and not yet part of `acked`, ascending, with their completion.
    pending: VecDeque<(u64, bool)>,
    in_flight: usize,
}

impl AckWindow {
    /// A window whose cursor starts at `acked` (everything ≤ it is done).
    pub fn new(acked: u64) -> AckWindow {
        AckWindow {
            acked,
            pending: VecDeque::new(),
            in_flight: 0,
        }
    }

    /// Everything ≤ this is done.
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// Updates handed out and not completed.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// An update for `seq` was handed out (sequences must ascend).
    pub fn dispatched(&mut self, seq: u64) {
        debug_assert!(self.pending.back().is_none_or(|b| b.0 < seq) && seq > self.acked);
        self.pending.push_back((seq, false));
        self.in_flight += 1;
    }

    /// `seq` needs no update (an echo of the peer's own change, a superseded backlog entry, or a
    /// v6 batch shipped inline): done at once, in order.
    pub fn skipped(&mut self, seq: u64) {
        if self.pending.is_empty() {
            self.acked = self.acked.max(seq);
        } else {
            self.pending.push_back((seq, true));
        }
        self.advance();
    }

    /// The update for `seq` completed (acknowledged, or given up on after refusals).
    pub fn completed(&mut self, seq: u64) {
        if let Ok(i) = self.pending.binary_search_by_key(&seq, |p| p.0) {
            if !self.pending[i].1 {
                self.pending[i].1 = true;
                self.in_flight -= 1;
            }
        }
        self.advance();
    }

    fn advance(&mut self) {
        while let Some(&(seq, true)) = self.pending.front() {
            self.acked = seq;
            self.pending.pop_front();
        }
    }
}

#[derive(Debug)]
struct PeerAck {
    name: String,
    acked: u64,
    must_ack: bool,
}

/// Publishes the peers' acknowledgements to the dataplane's gate page (no-op without a gate:
/// asynchronous mode).
#[derive(Debug)]
pub struct SyncPublisher {
    gate: Option<(Gate, Slot)>,
    peers: Mutex<Vec<PeerAck>>,
}

impl SyncPublisher {
    /// Asynchronous mode: nothing to publish.
    pub fn disabled() -> SyncPublisher {
        SyncPublisher {
            gate: None,
            peers: Mutex::new(Vec::new()),
        }
    }

    /// Synchronous mode over `gate`, in this process's slot (its family). Nothing waits until a
    /// peer must ack.
    pub fn new(gate: Gate, slot: Slot) -> SyncPublisher {
        gate.attach_control(slot);
        gate.set_waiting(slot, false);
        SyncPublisher {
            gate: Some((gate, slot)),
            peers: Mutex::new(Vec::new()),
        }
    }

    pub fn enabled(&self) -> bool {
        self.gate.is_some()
    }

    fn with_peer(&self, name: &str, f: impl FnOnce(&mut PeerAck)) {
        let Some((g, slot)) = &self.gate else { return };
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        let i = match peers.iter().position(|p| p.name == name) {
            Some(i) => i,
            None => {
                peers.push(PeerAck {
                    name: name.to_string(),
                    acked: 0,
                    must_ack: false,
                });
                peers.len() - 1
            }
        };
        f(&mut peers[i]);
        // Under the lock, so concurrent publishers cannot store an older minimum over a newer
        // one computed for another set of peers.
        let waiting: Vec<&PeerAck> = peers.iter().filter(|p| p.must_ack).collect();
        match waiting.iter().map(|p| p.acked).min() {
            Some(min) => {
                // The minimum first: a reply parked as soon as the flag is seen must not be
                // released against an acknowledgement of another peer set.
                g.publish_acked(*slot, min);
                g.set_waiting(*slot, true);
            }
            None => g.set_waiting(*slot, false),
        }
    }

    /// The replicator of `peer` moved its cursor: every change ≤ `seq` is acknowledged (or needs
    /// no update).
    pub fn peer_acked(&self, peer: &str, seq: u64) {
        self.with_peer(peer, |p| p.acked = seq);
    }

    /// Whether replies must wait for `peer` now (the core, from the HA state).
    pub fn set_must_ack(&self, peer: &str, on: bool) {
        self.with_peer(peer, |p| p.must_ack = on);
    }

    /// An update to `peer` failed: if replies wait for it, the dataplane drops them.
    pub fn peer_failed(&self, peer: &str) {
        let Some((g, slot)) = &self.gate else { return };
        let peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        if peers.iter().any(|p| p.name == peer && p.must_ack) {
            g.partner_failed(*slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xdhcp_dataplane::syncrepl::gate::gate_path;

    #[test]
    fn window_acks_the_contiguous_prefix_only() {
        let mut w = AckWindow::new(10);
        w.dispatched(11);
        w.dispatched(12);
        w.skipped(13);
        w.dispatched(14);
        assert_eq!((w.acked(), w.in_flight()), (10, 3));
        w.completed(12);
        assert_eq!(w.acked(), 10, "11 still in flight");
        w.completed(11);
        assert_eq!(w.acked(), 13, "11, 12 done and 13 skipped");
        w.completed(14);
        assert_eq!((w.acked(), w.in_flight()), (14, 0));
        w.skipped(20);
        assert_eq!(w.acked(), 20);
        w.completed(99); // unknown: ignored
        assert_eq!(w.acked(), 20);
    }

    #[test]
    fn publisher_waits_for_the_slowest_peer_that_must_ack() {
        let d = tempfile::tempdir().unwrap();
        let p = gate_path(d.path());
        let pubr = SyncPublisher::new(Gate::open(&p).unwrap(), Slot::V4);
        let dp = Gate::open(&p).unwrap();
        assert!(!dp.waiting());
        pubr.peer_acked("server2", 5);
        assert!(!dp.waiting(), "no peer must ack yet");
        pubr.set_must_ack("server2", true);
        assert!(dp.waiting());
        assert_eq!(dp.acked_seq(), 5);
        // A backup with wait-backup-ack joins behind: the minimum goes down to it.
        pubr.peer_acked("backup1", 3);
        pubr.set_must_ack("backup1", true);
        assert_eq!(dp.acked_seq(), 3);
        pubr.peer_acked("server2", 9);
        assert_eq!(dp.acked_seq(), 3);
        pubr.peer_acked("backup1", 9);
        assert_eq!(dp.acked_seq(), 9);
        // A failure of a peer that must ack bumps the generation; of one that need not, not.
        let g = dp.fail_gen();
        pubr.peer_failed("server2");
        assert_eq!(dp.fail_gen(), g + 1);
        pubr.set_must_ack("backup1", false);
        pubr.peer_failed("backup1");
        assert_eq!(dp.fail_gen(), g + 1);
        // Partner down: nobody must ack, nothing waits.
        pubr.set_must_ack("server2", false);
        assert!(!dp.waiting());
    }

    #[test]
    fn disabled_publisher_touches_nothing() {
        let p = SyncPublisher::disabled();
        p.set_must_ack("x", true);
        p.peer_acked("x", 1);
        p.peer_failed("x");
        assert!(!p.enabled());
    }
}
