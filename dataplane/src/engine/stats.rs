//! Packet statistics. Each worker owns its counters (relaxed atomics on its own cache lines, so
//! counting costs no contention); readers sum them. Names follow Kea's `statistic-get-all`.
//! Counters kept outside the engine — the AF_XDP sockets' kernel counters and the XDP program's
//! per-CPU counters — join the same listing through a [`StatsSource`] the backend registers, so
//! a drop anywhere on the path (XDP program, socket rings, worker, engine) is attributable from
//! one `statistic-get-all`.

use crate::wire::DropReason;
use crossbeam_utils::CachePadded;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

pub const MSG_TYPES: usize = 9;
pub const MSG_TYPES6: usize = 14;

#[derive(Default)]
pub struct WorkerStats {
    pub received4: CachePadded<[AtomicU64; MSG_TYPES]>,
    pub sent4: CachePadded<[AtomicU64; MSG_TYPES]>,
    pub drops: CachePadded<[AtomicU64; DropReason::COUNT]>,
    pub received6: [AtomicU64; MSG_TYPES6],
    pub sent6: [AtomicU64; MSG_TYPES6],
    /// Synchronous replication: parked, released and dropped replies (`crate::syncrepl`).
    pub sync: [AtomicU64; crate::syncrepl::SYNC_COUNTERS],
}

impl WorkerStats {
    pub fn dropped(&self, r: DropReason) {
        self.drops[r as usize].fetch_add(1, Relaxed);
    }
    pub fn received4(&self, t: u8) {
        self.received4[usize::from(t).min(MSG_TYPES - 1)].fetch_add(1, Relaxed);
    }
    pub fn sent4(&self, t: u8) {
        self.sent4[usize::from(t).min(MSG_TYPES - 1)].fetch_add(1, Relaxed);
    }
    /// DHCPv6 message types index `received6`/`sent6` directly (1..=13; 0 = unknown).
    pub fn received6(&self, t: u8) {
        let i = if usize::from(t) < MSG_TYPES6 {
            usize::from(t)
        } else {
            0
        };
        self.received6[i].fetch_add(1, Relaxed);
    }
    pub fn sent6(&self, t: u8) {
        let i = if usize::from(t) < MSG_TYPES6 {
            usize::from(t)
        } else {
            0
        };
        self.sent6[i].fetch_add(1, Relaxed);
    }
}

/// Statistics kept outside the engine, read when someone asks (never on the hot path).
pub trait StatsSource: Send + Sync {
    /// Appends `(name, value)` pairs.
    fn collect(&self, out: &mut Vec<(String, u64)>);
}

/// All workers' counters.
#[derive(Default)]
pub struct Stats {
    workers: Mutex<Vec<Arc<WorkerStats>>>,
    sources: Mutex<Vec<Arc<dyn StatsSource>>>,
}

/// Kea's `pkt6-*` names by DHCPv6 message type.
const V6_NAMES: [&str; MSG_TYPES6] = [
    "unknown",
    "solicit",
    "advertise",
    "request",
    "confirm",
    "renew",
    "rebind",
    "reply",
    "release",
    "decline",
    "reconfigure",
    "infrequest",
    "relay-forw",
    "relay-repl",
];

const V4_NAMES: [&str; MSG_TYPES] = [
    "unknown", "discover", "offer", "request", "decline", "ack", "nak", "release", "inform",
];

impl Stats {
    /// The counters of worker `i` (created on first use).
    pub fn worker(&self, i: usize) -> Arc<WorkerStats> {
        let mut w = self.workers.lock();
        while w.len() <= i {
            w.push(Arc::default());
        }
        w[i].clone()
    }

    /// Take over another registry's counters (configuration reload keeps statistics).
    pub fn adopt(&self, other: &Stats) {
        *self.workers.lock() = other.workers.lock().clone();
        *self.sources.lock() = other.sources.lock().clone();
    }

    /// Adds counters kept elsewhere (a backend's) to [`Stats::snapshot`].
    pub fn add_source(&self, source: Arc<dyn StatsSource>) {
        self.sources.lock().push(source);
    }

    fn sum(&self, f: &dyn Fn(&WorkerStats) -> u64) -> u64 {
        self.workers.lock().iter().map(|w| f(w)).sum()
    }

    pub fn drops(&self, r: DropReason) -> u64 {
        self.sum(&|w| w.drops[r as usize].load(Relaxed))
    }

    /// Every statistic as (name, value), Kea's names where Kea has one.
    pub fn snapshot(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        let received: u64 = self.sum(&|w| w.received4.iter().map(|c| c.load(Relaxed)).sum());
        out.push(("pkt4-received".to_string(), received));
        for (t, name) in V4_NAMES.iter().enumerate().skip(1) {
            if matches!(t, 1 | 3 | 4 | 7 | 8) {
                out.push((
                    format!("pkt4-{name}-received"),
                    self.sum(&|w| w.received4[t].load(Relaxed)),
                ));
            }
            if matches!(t, 2 | 5 | 6) {
                out.push((
                    format!("pkt4-{name}-sent"),
                    self.sum(&|w| w.sent4[t].load(Relaxed)),
                ));
            }
        }
        let sent: u64 = self.sum(&|w| w.sent4.iter().map(|c| c.load(Relaxed)).sum());
        out.push(("pkt4-sent".to_string(), sent));
        let received6: u64 = self.sum(&|w| w.received6.iter().map(|c| c.load(Relaxed)).sum());
        out.push(("pkt6-received".to_string(), received6));
        for (t, name) in V6_NAMES.iter().enumerate() {
            if matches!(t, 0 | 1 | 3 | 4 | 5 | 6 | 8 | 9 | 11) {
                out.push((
                    format!("pkt6-{name}-received"),
                    self.sum(&|w| w.received6[t].load(Relaxed)),
                ));
            }
            if matches!(t, 2 | 7) {
                out.push((
                    format!("pkt6-{name}-sent"),
                    self.sum(&|w| w.sent6[t].load(Relaxed)),
                ));
            }
        }
        let sent6: u64 = self.sum(&|w| w.sent6.iter().map(|c| c.load(Relaxed)).sum());
        out.push(("pkt6-sent".to_string(), sent6));
        let mut malformed = 0;
        let mut dropped = 0;
        for r in DropReason::ALL {
            let v = self.drops(r);
            dropped += v;
            if r.is_malformed() {
                malformed += v;
            }
            out.push((format!("xdhcp-drop-{}", r.name()), v));
        }
        for (i, name) in crate::syncrepl::SYNC_NAMES.iter().enumerate() {
            out.push((name.to_string(), self.sum(&|w| w.sync[i].load(Relaxed))));
        }
        out.push(("pkt4-parse-failed".to_string(), malformed));
        out.push(("pkt4-receive-drop".to_string(), dropped));
        let sources = self.sources.lock().clone();
        for s in sources {
            s.collect(&mut out);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(u64);
    impl StatsSource for Fixed {
        fn collect(&self, out: &mut Vec<(String, u64)>) {
            out.push(("xdhcp-test-counter".into(), self.0));
        }
    }

    #[test]
    fn sources_are_listed_and_survive_adopt() {
        let a = Stats::default();
        a.add_source(Arc::new(Fixed(7)));
        let listed = |s: &Stats| {
            s.snapshot()
                .into_iter()
                .filter(|(n, _)| n == "xdhcp-test-counter")
                .map(|(_, v)| v)
                .collect::<Vec<_>>()
        };
        assert_eq!(listed(&a), vec![7]);
        let b = Stats::default();
        assert!(listed(&b).is_empty());
        b.adopt(&a);
        assert_eq!(listed(&b), vec![7], "a reload keeps the backend's counters");
    }
}
