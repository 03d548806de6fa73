//! The sans-IO DHCP engine. A [`Worker`] takes a received frame and the current time and returns
//! the reply frame to send; it owns no socket, clock, thread or file. Every backend (plain
//! sockets, AF_XDP) runs one `Worker` per thread through the [`crate::backend::FrameHandler`] trait.
//! All workers share one [`Shared`]: the compiled configuration, the lease store, the HA gate and
//! the statistics; each has its own journal producer and parse scratch space, so the per-packet
//! path allocates nothing.

pub mod classes;
pub mod duid;
pub mod ha_gate;
pub mod lb_hash;
pub mod options;
pub mod runtime4;
pub mod runtime6;
pub mod stats;
pub mod v4;
pub mod v6;

use crate::backend::{FrameHandler, Now, RxContext};
use crate::lease::store::LeaseStore;
use crate::lease::LeaseChange;
use crate::wire::frame::{parse_udp_frame, L3};
use crate::wire::{dhcp4::Dhcp4Scratch, DropReason};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Where a worker sends lease changes to make them durable (the journal). Never blocks.
///
/// Changes to one lease must replay in the order the store made them, but workers push to
/// separate queues that the journal drains in its own order. So every change carries a version
/// taken with [`LeaseSink::take_version`] *inside* the store's critical section for that lease
/// (the store's `*_stamped` operations call it under the shard lock); replay keeps the highest.
pub trait LeaseSink: Send {
    /// True if the next `n` pushes are guaranteed to succeed (single producer per sink).
    fn room_for(&self, n: usize) -> bool;
    fn has_room(&self) -> bool {
        self.room_for(1)
    }
    /// A version for a change about to be made; call it under the store's lock for the lease.
    fn take_version(&self) -> u64;
    /// Queue a change with its version; false if the queue is full (the change was not recorded).
    fn push_versioned(&self, version: u64, change: LeaseChange) -> bool;
    /// Changes accepted so far (synchronous replication parks a reply until the journal wrote
    /// and the peers acknowledged this many). 0 for sinks that are not a journal.
    fn pushed(&self) -> u64 {
        0
    }
    /// How far the journal has written this sink's changes; `None` for sinks that are not a
    /// journal (nothing can wait for them).
    fn write_progress(&self) -> Option<crate::lease::journal::WriteProgress> {
        None
    }
    /// Queue a change made outside any concurrent writer's reach (replay, import).
    fn push(&self, change: LeaseChange) -> bool {
        let v = self.take_version();
        self.push_versioned(v, change)
    }
}

/// A sink for in-memory operation (`lease-database.persist: false`) and unit tests.
#[derive(Default)]
pub struct NullSink;

impl LeaseSink for NullSink {
    fn room_for(&self, _: usize) -> bool {
        true
    }
    fn take_version(&self) -> u64 {
        0
    }
    fn push_versioned(&self, _: u64, _: LeaseChange) -> bool {
        true
    }
}

/// A sink that records changes (with their versions), for tests.
#[derive(Default, Clone)]
pub struct VecSink(
    pub Arc<parking_lot::Mutex<Vec<LeaseChange>>>,
    pub Arc<std::sync::atomic::AtomicU64>,
);

impl VecSink {
    pub fn changes(&self) -> Vec<LeaseChange> {
        self.0.lock().clone()
    }
}

impl LeaseSink for VecSink {
    fn room_for(&self, _: usize) -> bool {
        true
    }
    fn take_version(&self) -> u64 {
        self.1.fetch_add(1, Ordering::Relaxed) + 1
    }
    fn push_versioned(&self, _: u64, c: LeaseChange) -> bool {
        self.0.lock().push(c);
        true
    }
}

/// State shared by all workers.
pub struct Shared {
    pub rt4: Option<runtime4::Runtime4>,
    pub rt6: Option<runtime6::Runtime6>,
    pub store: Arc<LeaseStore>,
    /// What HA lets this server answer, per family: Kea runs one HA service per daemon, so a
    /// dual-stack config has a DHCPv4 and a DHCPv6 relationship set, each driven by its own
    /// control process (`xdhcp-control --family 4|6`).
    pub gate4: ha_gate::HaGate,
    pub gate6: ha_gate::HaGate,
    pub stats: stats::Stats,
    /// `dhcp-disable`: when false nothing is answered (counted as `Disabled`).
    pub enabled: AtomicBool,
    /// Interfaces served: (ifindex, name), for subnet selection by interface.
    pub interfaces: Vec<(u32, String)>,
    /// Set on the old state while a configuration reload copies its leases; workers drop
    /// (and count) packets until they pick up the new state.
    pub retired: AtomicBool,
}

impl Shared {
    pub fn ifname(&self, ifindex: u32) -> &str {
        self.interfaces
            .iter()
            .find(|(i, _)| *i == ifindex)
            .map_or("", |(_, n)| n.as_str())
    }
}

/// One worker: per-thread scratch and journal producer around the shared state.
pub struct Worker {
    pub shared: Arc<Shared>,
    /// Where a reloaded configuration appears; loaded once `shared` is retired by a reload.
    pub source: Option<Arc<arc_swap::ArcSwap<Shared>>>,
    pub index: usize,
    pub sink: Box<dyn LeaseSink>,
    pub scratch4: Box<Dhcp4Scratch>,
    pub stats: Arc<stats::WorkerStats>,
    /// Synchronous replication (`None`: asynchronous, nothing is ever parked).
    pub sync: Option<WorkerSync>,
    /// Set by `handle_frame` when its reply must be parked (see [`FrameHandler::park_ticket`]).
    ticket: Option<u64>,
}

/// A worker's synchronous-replication settings.
#[derive(Clone)]
pub struct WorkerSync {
    pub gate: Arc<crate::syncrepl::gate::Gate>,
    pub timeout_ns: u64,
    pub capacity: usize,
}

impl Worker {
    pub fn new(shared: Arc<Shared>, index: usize, sink: Box<dyn LeaseSink>) -> Worker {
        let stats = shared.stats.worker(index);
        Worker {
            shared,
            source: None,
            index,
            sink,
            scratch4: Box::default(),
            stats,
            sync: None,
            ticket: None,
        }
    }

    /// A worker that follows configuration reloads published in `source`.
    pub fn following(
        source: Arc<arc_swap::ArcSwap<Shared>>,
        index: usize,
        sink: Box<dyn LeaseSink>,
    ) -> Worker {
        let mut w = Worker::new(source.load_full(), index, sink);
        w.source = Some(source);
        w
    }

    fn drop_frame(&self, r: DropReason) -> Option<usize> {
        self.stats.dropped(r);
        None
    }
}

impl FrameHandler for Worker {
    fn handle_frame(
        &mut self,
        now: Now,
        ctx: &RxContext,
        rx: &[u8],
        tx: &mut [u8],
    ) -> Option<usize> {
        self.ticket = None;
        let Some(sync) = &self.sync else {
            return self.handle(now, ctx, rx, tx);
        };
        // Kea parks a reply only while it sends lease updates to a partner that must ack; control
        // says so through the gate. Replies that changed nothing (NAK, INFORM, OFFER, ADVERTISE)
        // go at once.
        let waiting = sync.gate.waiting();
        let before = self.sink.pushed();
        let r = self.handle(now, ctx, rx, tx);
        if r.is_some() && waiting {
            let after = self.sink.pushed();
            if after > before {
                self.ticket = Some(after);
            }
        }
        r
    }

    fn park_ticket(&mut self) -> Option<u64> {
        self.ticket.take()
    }

    fn sync_link(&mut self) -> Option<crate::syncrepl::SyncLink> {
        let s = self.sync.as_ref()?;
        Some(crate::syncrepl::SyncLink {
            gate: s.gate.clone(),
            progress: self.sink.write_progress()?,
            timeout_ns: s.timeout_ns,
            capacity: s.capacity,
            stats: self.stats.clone(),
        })
    }

    fn prefetch(&mut self, ctx: &RxContext, rx: &[u8]) {
        let Ok(f) = parse_udp_frame(rx) else { return };
        if matches!(f.l3, L3::V4 { .. }) && f.dst_port == crate::wire::dhcp4::SERVER_PORT {
            v4::prefetch(self, ctx, &f, rx);
        }
    }

    fn tick(&mut self, _now: Now) {}
}

impl Worker {
    fn handle(&mut self, now: Now, ctx: &RxContext, rx: &[u8], tx: &mut [u8]) -> Option<usize> {
        // A reload marks the state it replaces `retired` before it publishes the new one (and
        // nothing else publishes), so a worker whose state is not retired has the current one:
        // only then is the shared pointer worth loading (per frame it was ~1% of the worker).
        if self.shared.retired.load(Ordering::Relaxed) {
            if let Some(src) = &self.source {
                let cur = src.load();
                if !Arc::ptr_eq(&cur, &self.shared) {
                    self.shared = arc_swap::Guard::into_inner(cur);
                }
            }
            if self.shared.retired.load(Ordering::Relaxed) {
                return self.drop_frame(DropReason::Disabled);
            }
        }
        let f = match parse_udp_frame(rx) {
            Ok(f) => f,
            Err(r) => return self.drop_frame(r),
        };
        if !self.shared.enabled.load(Ordering::Relaxed) {
            return self.drop_frame(DropReason::Disabled);
        }
        match f.l3 {
            L3::V4 { .. } if f.dst_port == crate::wire::dhcp4::SERVER_PORT => {
                v4::handle(self, now, ctx, &f, rx, tx)
            }
            L3::V6 { .. } if f.dst_port == crate::wire::dhcp6::SERVER_PORT => {
                v6::handle(self, now, ctx, &f, rx, tx)
            }
            _ => self.drop_frame(DropReason::NotDhcpPort),
        }
    }
}
