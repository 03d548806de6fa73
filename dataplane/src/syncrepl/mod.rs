//! Kea-compatible synchronous replication, dataplane side: a reply that changed a lease is held
//! ("parked") until the HA peers that must acknowledge have acknowledged the journal entries of
//! that change, and dropped if they fail or do not answer in time.
//!
//! - [`gate`]: the shared page through which the control process publishes acknowledgements
//!   (the IPC, versioned).
//! - [`park`]: the per-worker queue of parked replies (sans-IO, unit-tested).
//! - [`SyncLink`]: what a backend worker needs to run a [`park::ParkQueue`]: the gate, its
//!   worker's journal write progress, the deadline and the counters. Handlers hand it out through
//!   [`crate::backend::FrameHandler::sync_link`]; `None` means asynchronous operation and nothing
//!   is ever parked.

pub mod gate;
pub mod park;

use crate::engine::stats::WorkerStats;
use crate::lease::journal::WriteProgress;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

pub use park::{ParkQueue, Verdict, View};

/// The synchronous-replication settings of one worker, shared with its backend thread.
#[derive(Clone)]
pub struct SyncLink {
    pub gate: Arc<gate::Gate>,
    pub progress: WriteProgress,
    pub timeout_ns: u64,
    /// Replies this worker may hold (`parked-packet-limit`).
    pub capacity: usize,
    pub stats: Arc<WorkerStats>,
}

impl SyncLink {
    /// The state the park queue decides on, read now (a handful of atomic loads).
    #[inline]
    pub fn view(&self) -> View {
        // Progress first: a stamp must never be newer than what the journal reported.
        let (pushes_written, seq_bound) = self.progress.get();
        View {
            waiting: self.gate.waiting(),
            acked_seq: self.gate.acked_seq(),
            fail_gen: self.gate.fail_gen(),
            pushes_written,
            seq_bound,
        }
    }

    /// Count a reply leaving the park queue.
    #[inline]
    pub fn count(&self, v: Verdict) {
        let i = match v {
            Verdict::Send => SYNC_RELEASED,
            Verdict::DropTimeout => SYNC_DROP_TIMEOUT,
            Verdict::DropFailed => SYNC_DROP_FAILED,
        };
        self.stats.sync[i].fetch_add(1, Relaxed);
    }

    #[inline]
    pub fn count_parked(&self) {
        self.stats.sync[SYNC_PARKED].fetch_add(1, Relaxed);
    }

    #[inline]
    pub fn count_full(&self) {
        self.stats.sync[SYNC_DROP_FULL].fetch_add(1, Relaxed);
    }
}

/// Indexes of [`WorkerStats::sync`].
pub const SYNC_PARKED: usize = 0;
pub const SYNC_RELEASED: usize = 1;
pub const SYNC_DROP_TIMEOUT: usize = 2;
pub const SYNC_DROP_FAILED: usize = 3;
pub const SYNC_DROP_FULL: usize = 4;
pub const SYNC_COUNTERS: usize = 5;
/// Statistic names of those counters (`statistic-get-all`).
pub const SYNC_NAMES: [&str; SYNC_COUNTERS] = [
    "xdhcp-sync-parked",
    "xdhcp-sync-released",
    "xdhcp-sync-drop-timeout",
    "xdhcp-sync-drop-partner-failed",
    "xdhcp-sync-drop-parked-limit",
];
