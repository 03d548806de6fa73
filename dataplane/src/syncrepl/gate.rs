//! The synchronous-replication gate: a one-page shared file through which the control process
//! tells the dataplane's workers how far the HA peers have acknowledged the lease journal.
//!
//! # Why a shared page
//! In synchronous mode every reply that changed a lease waits for the partner's acknowledgement,
//! so acknowledgements arrive at the packet rate (10k+/s). A control-socket command per ack (or
//! per batch) would cost a syscall pair and a JSON parse each, and a worker would have to block
//! on or poll a socket. Instead both processes map the same 4 KiB file (`MAP_SHARED`); control
//! stores a few atomic words, workers load them between packets: no syscall, no lock, nothing
//! allocated on either side. Words are naturally aligned `u64`s, read and written as atomics.
//!
//! # IPC protocol, version [`GATE_VERSION`] (part of the control↔dataplane protocol; the
//! control socket's `xdhcp-hello` answer carries `"sync-gate": {"path", "version"}`)
//! The file is `<lease journal dir>/sync-gate.shm` (both processes derive the journal directory
//! from the same `lease-database`). Either process creates it (`O_CREAT`, 4096 bytes, never
//! truncated or unlinked), so a restart of either side keeps the other's mapping valid.
//!
//! Word 0 is `magic`, written by the creator: `"XDSG"` in the low 32 bits, [`GATE_VERSION`] in the
//! high 32. Then one slot of 8 words per control process: slot 0 at byte 64 for the DHCPv4 control
//! process, slot 1 at byte 128 for the DHCPv6 one (a dual-stack server with HA in both families
//! runs one control process per family over one journal):
//!
//! | slot offset | word | writer | meaning |
//! |---|---|---|---|
//! | 0 | `flags` | control | bit 0 [`FLAG_WAIT`]: replies that changed a lease must wait |
//! | 8 | `acked_seq` | control | every peer that must acknowledge has acknowledged journal sequence numbers ≤ this |
//! | 16 | `fail_gen` | control | bumped when such a peer failed an update: drop what waits |
//! | 24 | `control_pid` | control | informational |
//! | 32 | `control_epoch` | control | bumped each time a control process attaches |
//!
//! Control publishes `acked_seq` before it sets [`FLAG_WAIT`]; the dataplane drops (never sends)
//! what waits when no flag is set or a `fail_gen` moved, as Kea drops a parked reply whose lease
//! update failed. The dataplane combines the slots: it waits while any slot waits, for the lowest
//! `acked_seq` of the slots that wait (each control process moves its cursor past the other
//! family's entries without shipping them, so a v4 reply is not held by v6 acknowledgements, only
//! until the v6 process has read past it). The numbering of `acked_seq` is the
//! journal's sequence numbers: the same numbers `JournalReader` hands control and that the journal
//! thread reports back to each producer (see `JournalProducer::write_progress`).

use std::fs::OpenOptions;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Version of the gate layout above. Bump on any change of meaning.
pub const GATE_VERSION: u32 = 1;
const MAGIC: u64 = (GATE_VERSION as u64) << 32 | u32::from_le_bytes(*b"XDSG") as u64;
const SIZE: usize = 4096;

/// Replies that changed a lease wait for the peers' acknowledgement.
pub const FLAG_WAIT: u64 = 1;

const W_MAGIC: usize = 0;
/// Word index of slot 0; a slot is 8 words.
const W_SLOT0: usize = 8;
const SLOTS: usize = 2;
const W_FLAGS: usize = 0;
const W_ACKED: usize = 1;
const W_FAIL: usize = 2;
const W_PID: usize = 3;
const W_EPOCH: usize = 4;

/// A control process's slot in the gate: by the family of its HA relationships.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    V4 = 0,
    V6 = 1,
}

#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("synchronous-replication gate {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("synchronous-replication gate {path}: written by another xdhcp version (magic {found:#x}, this build speaks gate version {GATE_VERSION})")]
    Version { path: PathBuf, found: u64 },
}

/// The gate file for a lease journal directory.
pub fn gate_path(journal_dir: &Path) -> PathBuf {
    journal_dir.join("sync-gate.shm")
}

/// A mapping of the gate page. Cheap to share (`Arc<Gate>`) between threads.
pub struct Gate {
    ptr: *mut u8,
    path: PathBuf,
}

// SAFETY: the mapping is only ever accessed through `AtomicU64`s, which are Sync.
unsafe impl Send for Gate {}
// SAFETY: as above.
unsafe impl Sync for Gate {}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("path", &self.path)
            .field("waiting", &self.waiting())
            .field("acked_seq", &self.acked_seq())
            .field("fail_gen", &self.fail_gen())
            .finish()
    }
}

impl Gate {
    /// Open (creating if needed) and map the gate file. A fresh file is initialised; a file of
    /// another layout version is refused.
    pub fn open(path: &Path) -> Result<Gate, GateError> {
        let io = |source| GateError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io)?;
        if f.metadata().map_err(io)?.len() < SIZE as u64 {
            f.set_len(SIZE as u64).map_err(io)?;
        }
        // SAFETY: a shared read/write mapping of a file we hold open, SIZE bytes long; the fd may
        // be closed afterwards (the mapping keeps the file).
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                f.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io(io::Error::last_os_error()));
        }
        let g = Gate {
            ptr: p.cast(),
            path: path.to_path_buf(),
        };
        match g
            .w(W_MAGIC)
            .compare_exchange(0, MAGIC, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => {}
            Err(m) if m == MAGIC => {}
            Err(found) => {
                return Err(GateError::Version {
                    path: path.to_path_buf(),
                    found,
                })
            }
        }
        Ok(g)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn w(&self, i: usize) -> &AtomicU64 {
        debug_assert!(i * 8 < SIZE);
        // SAFETY: the page is mapped for the life of `self`, page-aligned, and word `i` lies
        // inside it; every access to it (in both processes) is atomic.
        unsafe { &*(self.ptr.add(i * 8) as *const AtomicU64) }
    }

    // ----- read by the dataplane -----

    fn s(&self, slot: usize, i: usize) -> &AtomicU64 {
        self.w(W_SLOT0 + slot * 8 + i)
    }

    fn slot_waiting(&self, slot: usize) -> bool {
        self.s(slot, W_FLAGS).load(Ordering::Acquire) & FLAG_WAIT != 0
    }

    /// Whether replies that changed a lease must wait now (any slot).
    #[inline]
    pub fn waiting(&self) -> bool {
        (0..SLOTS).any(|i| self.slot_waiting(i))
    }

    /// The lowest acknowledged sequence of the slots that wait (`u64::MAX` when none waits).
    #[inline]
    pub fn acked_seq(&self) -> u64 {
        (0..SLOTS)
            .filter(|&i| self.slot_waiting(i))
            .map(|i| self.s(i, W_ACKED).load(Ordering::Acquire))
            .min()
            .unwrap_or(u64::MAX)
    }

    /// Sum of the slots' failure generations: moves whenever one of them does.
    #[inline]
    pub fn fail_gen(&self) -> u64 {
        (0..SLOTS)
            .map(|i| self.s(i, W_FAIL).load(Ordering::Acquire))
            .fold(0u64, u64::wrapping_add)
    }

    pub fn control_epoch(&self, slot: Slot) -> u64 {
        self.s(slot as usize, W_EPOCH).load(Ordering::Acquire)
    }

    // ----- written by the control process -----

    /// A control process attaches to its slot: records its pid and starts a new epoch. Nothing
    /// waits for this slot until control sets the flag.
    pub fn attach_control(&self, slot: Slot) {
        let i = slot as usize;
        self.s(i, W_PID)
            .store(u64::from(std::process::id()), Ordering::Release);
        self.s(i, W_EPOCH).fetch_add(1, Ordering::AcqRel);
    }

    /// Publish how far every peer that must acknowledge has acknowledged. Control computes it as
    /// the minimum over those peers and stores it under one lock, so it never runs ahead of a
    /// peer that joined the set (it may go down when one does).
    pub fn publish_acked(&self, slot: Slot, seq: u64) {
        self.s(slot as usize, W_ACKED).store(seq, Ordering::Release);
    }

    /// Turn waiting on or off. Turning it off makes the dataplane drop what waits.
    pub fn set_waiting(&self, slot: Slot, on: bool) {
        let f = self.s(slot as usize, W_FLAGS);
        if on {
            f.fetch_or(FLAG_WAIT, Ordering::AcqRel);
        } else {
            f.fetch_and(!FLAG_WAIT, Ordering::AcqRel);
        }
    }

    /// A peer that must acknowledge failed an update: what waits now is dropped.
    pub fn partner_failed(&self, slot: Slot) {
        self.s(slot as usize, W_FAIL).fetch_add(1, Ordering::AcqRel);
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        // SAFETY: unmapping the mapping made in `open`; nothing borrows it past `self`.
        unsafe { libc::munmap(self.ptr.cast(), SIZE) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_mappings_see_each_other() {
        let d = tempfile::tempdir().unwrap();
        let p = gate_path(d.path());
        let control = Gate::open(&p).unwrap();
        let dp = Gate::open(&p).unwrap();
        assert!(!dp.waiting());
        control.attach_control(Slot::V4);
        control.publish_acked(Slot::V4, 42);
        control.set_waiting(Slot::V4, true);
        assert!(dp.waiting());
        assert_eq!(dp.acked_seq(), 42);
        let g = dp.fail_gen();
        control.partner_failed(Slot::V4);
        assert_eq!(dp.fail_gen(), g + 1);
        // The DHCPv6 control process waits too, behind: the lower one counts; its failures too.
        control.publish_acked(Slot::V6, 30);
        control.set_waiting(Slot::V6, true);
        assert_eq!(dp.acked_seq(), 30);
        control.partner_failed(Slot::V6);
        assert_eq!(dp.fail_gen(), g + 2);
        control.set_waiting(Slot::V4, false);
        assert!(dp.waiting());
        assert_eq!(dp.acked_seq(), 30);
        control.set_waiting(Slot::V6, false);
        assert!(!dp.waiting());
        assert_eq!(dp.control_epoch(Slot::V4), 1);
        assert_eq!(dp.control_epoch(Slot::V6), 0);
    }

    #[test]
    fn another_version_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let p = gate_path(d.path());
        let mut b = vec![0u8; SIZE];
        b[..8].copy_from_slice(&(99u64 << 32 | 7).to_le_bytes());
        std::fs::write(&p, b).unwrap();
        let e = Gate::open(&p).unwrap_err();
        assert!(e.to_string().contains("another xdhcp version"), "{e}");
    }
}
