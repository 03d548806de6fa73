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
//! | offset | word | writer | meaning |
//! |---|---|---|---|
//! | 0 | `magic` | creator | `"XDSG"` in the low 32 bits, [`GATE_VERSION`] in the high 32 |
//! | 8 | `flags` | control | bit 0 [`FLAG_WAIT`]: replies that changed a lease must wait |
//! | 16 | `acked_seq` | control | every peer that must acknowledge has acknowledged journal sequence numbers ≤ this |
//! | 24 | `fail_gen` | control | bumped when such a peer failed an update: drop what waits |
//! | 32 | `control_pid` | control | informational |
//! | 40 | `control_epoch` | control | bumped each time a control process attaches |
//!
//! Control publishes `acked_seq` before it sets [`FLAG_WAIT`] and bumps `fail_gen` before it clears
//! it; the dataplane drops (never sends) what waits when the flag is clear or `fail_gen` moved,
//! as Kea drops a parked reply whose lease update failed. The numbering of `acked_seq` is the
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
const W_FLAGS: usize = 1;
const W_ACKED: usize = 2;
const W_FAIL: usize = 3;
const W_PID: usize = 4;
const W_EPOCH: usize = 5;

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

    /// Whether replies that changed a lease must wait now.
    #[inline]
    pub fn waiting(&self) -> bool {
        self.w(W_FLAGS).load(Ordering::Acquire) & FLAG_WAIT != 0
    }
    #[inline]
    pub fn acked_seq(&self) -> u64 {
        self.w(W_ACKED).load(Ordering::Acquire)
    }
    #[inline]
    pub fn fail_gen(&self) -> u64 {
        self.w(W_FAIL).load(Ordering::Acquire)
    }
    pub fn control_epoch(&self) -> u64 {
        self.w(W_EPOCH).load(Ordering::Acquire)
    }

    // ----- written by the control process -----

    /// A control process attaches: records its pid and starts a new epoch. Nothing waits until
    /// control sets the flag.
    pub fn attach_control(&self) {
        self.w(W_PID)
            .store(u64::from(std::process::id()), Ordering::Release);
        self.w(W_EPOCH).fetch_add(1, Ordering::AcqRel);
    }

    /// Publish how far every peer that must acknowledge has acknowledged. Control computes it as
    /// the minimum over those peers and stores it under one lock, so it never runs ahead of a
    /// peer that joined the set (it may go down when one does).
    pub fn publish_acked(&self, seq: u64) {
        self.w(W_ACKED).store(seq, Ordering::Release);
    }

    /// Turn waiting on or off. Turning it off makes the dataplane drop what waits.
    pub fn set_waiting(&self, on: bool) {
        if on {
            self.w(W_FLAGS).fetch_or(FLAG_WAIT, Ordering::AcqRel);
        } else {
            self.w(W_FLAGS).fetch_and(!FLAG_WAIT, Ordering::AcqRel);
        }
    }

    /// A peer that must acknowledge failed an update: what waits now is dropped.
    pub fn partner_failed(&self) {
        self.w(W_FAIL).fetch_add(1, Ordering::AcqRel);
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
        control.attach_control();
        control.publish_acked(42);
        control.set_waiting(true);
        assert!(dp.waiting());
        assert_eq!(dp.acked_seq(), 42);
        let g = dp.fail_gen();
        control.partner_failed();
        assert_eq!(dp.fail_gen(), g + 1);
        control.set_waiting(false);
        assert!(!dp.waiting());
        assert_eq!(dp.control_epoch(), 1);
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
