//! The crash-safe lease journal: xdhcp's equivalent of Kea's memfile, and the log the control
//! process replicates from.
//!
//! This module owns the on-disk format (segments and snapshots in one directory), the journal
//! thread that collects [`LeaseChange`]s from the workers and writes them in group commits,
//! replay on start, background compaction (Kea's LFC) and a tail-following reader for
//! replication. It does not own the lease store: replay hands back the net state and the store
//! rebuilds its indexes from it.
//!
//! # Layout of the directory
//! - `seg-<first seq, 20 digits>.xjl`: append-only segments. Only the newest is written to.
//! - `snap-<through seq, 20 digits>.xjs`: a snapshot of the whole live state through that sequence
//!   number, written by compaction (to `.tmp`, fsynced, renamed, directory fsynced).
//! - `LOCK`: `flock`ed by the one process that writes the journal.
//! - `<name>.seq` (written by replication readers, e.g. the control process): the last sequence
//!   number that reader has fully processed. Compaction keeps the segments it still needs, up to
//!   `retain_max_bytes`.
//!
//! Every file starts with a 24-byte header: magic `XDHJ`, format version (u16), kind (u16:
//! 1 segment, 2 snapshot), a sequence number (u64: a segment's first, a snapshot's last) and a
//! CRC32 of those 16 bytes, then 4 reserved bytes. Records follow: `len u32 | crc32 u32 | seq u64 |
//! payload[len]`, little-endian, the CRC covering `seq` and the payload. Sequence numbers are
//! consecutive across segments, so a gap is detectable.
//!
//! # Ordering
//! Workers push from several threads, and two workers may change the same address a moment apart
//! (a release on one, a new allocation on the other). The order in which the journal thread drains
//! their queues is not the order of the changes, so every change also carries a *version*, taken from
//! one global counter when it is pushed. The caller pushes while holding the lock that serialises
//! changes to that lease, so for any one address versions increase in the order the store applied
//! them, and replay keeps, per address, the change with the highest version (deletes leave a
//! tombstone for that purpose). Sequence numbers order the file; versions order the leases.
//!
//! # Durability
//! A record counts as written once `write(2)` returned and as durable once the fsync policy says so
//! ([`FsyncPolicy::Never`]: when written; [`FsyncPolicy::EveryBatch`]: after the batch's fsync;
//! [`FsyncPolicy::IntervalMs`]: after the next periodic fsync). A crash mid-write leaves a torn tail
//! that replay detects by length and checksum and truncates; a bad record *followed by* good ones is
//! corruption and stops the open with the file and byte offset, unless salvage is set.

use crate::lease::spsc::Spsc;
use crate::lease::types::{HwAddr, IdBuf, Lease4, Lease6, Lease6Type, LeaseChange, LeaseState};
use crossbeam_utils::CachePadded;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::marker::PhantomData;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle, Thread};
use std::time::{Duration, Instant};
use xdhcp_config::model::{FsyncPolicy, LeaseDatabase};

/// On-disk format version written by this build. Bump it when the record or header encoding
/// changes; replay refuses versions it does not know instead of misreading them.
pub const FORMAT_VERSION: u16 = 1;
const MAGIC: [u8; 4] = *b"XDHJ";
const FILE_HEADER_LEN: usize = 24;
const RECORD_HEADER_LEN: usize = 16;
/// The largest payload a valid record can have (a Put6 with a 128-byte DUID, a 255-byte hostname
/// and a 16-byte hardware address is well under 1 KiB). Anything larger is a corrupt length.
pub const MAX_PAYLOAD: usize = 4096;
const KIND_SEGMENT: u16 = 1;
const KIND_SNAPSHOT: u16 = 2;

const TAG_PUT4: u8 = 1;
const TAG_DEL4: u8 = 2;
const TAG_PUT6: u8 = 3;
const TAG_DEL6: u8 = 4;
/// Last record of a snapshot: proves the snapshot is complete.
const TAG_SNAP_END: u8 = 0x7f;

const FLAG_FQDN_FWD: u8 = 1;
const FLAG_FQDN_REV: u8 = 2;
const FLAG_HOSTNAME: u8 = 4;
const FLAG_HWADDR: u8 = 8;

/// Errors of the journal. Every message names the file (or directory) concerned.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("lease journal {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "lease journal {path}: corrupt data at byte offset {offset}: {reason} \
         (records after it would be lost; restart with journal salvage enabled to skip it)"
    )]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("lease journal {path}: format version {found} is not supported (this build reads version {FORMAT_VERSION})")]
    Version { path: PathBuf, found: u16 },
    #[error(
        "lease journal {dir}: sequence {requested} was compacted away (oldest kept: {oldest}); \
         fall back to a full sync"
    )]
    Compacted {
        dir: PathBuf,
        requested: u64,
        oldest: u64,
    },
    #[error("lease journal {dir} is in use by another process (LOCK is held)")]
    Locked { dir: PathBuf },
    #[error("lease journal thread did not answer within {0:?}")]
    Timeout(Duration),
    #[error("lease journal thread has stopped")]
    Stopped,
}

impl JournalError {
    fn io(path: &Path, source: io::Error) -> Self {
        JournalError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
    fn corrupt(path: &Path, offset: usize, reason: impl Into<String>) -> Self {
        JournalError::Corrupt {
            path: path.to_path_buf(),
            offset: offset as u64,
            reason: reason.into(),
        }
    }
}

/// How the journal is set up. Build it with [`JournalConfig::new`] or
/// [`JournalConfig::from_lease_database`] and adjust fields.
#[derive(Debug, Clone)]
pub struct JournalConfig {
    /// The journal directory; created if missing.
    pub dir: PathBuf,
    pub fsync: FsyncPolicy,
    /// Capacity of each producer's queue. A full queue rejects the change (the engine drops the
    /// packet and counts it): the queue bounds memory and how much can be unwritten at a crash.
    pub queue_capacity: usize,
    /// Most records in one `write(2)`; bounds the batch buffer (about 100 bytes a record).
    pub batch_max_records: usize,
    /// A segment is closed and a new one started when it grows past this.
    pub segment_max_bytes: u64,
    /// Folded segments kept for replication readers (see [`Journal::set_retain_from_seq`] and the
    /// `*.seq` cursor files) are dropped anyway, oldest first, beyond this many bytes: a peer
    /// that stays away too long gets a full sync instead of an unbounded journal.
    pub retain_max_bytes: u64,
    /// Run compaction this often (Kea `lfc-interval`); `None` = only when asked.
    pub compaction_interval: Option<Duration>,
    /// Skip corrupt records in the middle of the journal (with a warning) instead of refusing to
    /// open. Leases in the skipped bytes are lost; use to recover from disk damage.
    pub salvage: bool,
    /// How long the journal thread sleeps before looking at the queues again: how long a change
    /// may wait before it is written. Workers wake it early only when a queue passes half full
    /// (a syscall per hundreds of changes at most), so this bounds the added latency. See
    /// [`write_delay`] for the default of a `lease-database`.
    pub idle_park: Duration,
    /// Producers wake the journal thread when their queue passes half full (default true; tests
    /// that need a queue to fill up turn it off).
    pub wake_when_half_full: bool,
}

impl JournalConfig {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        JournalConfig {
            dir: dir.into(),
            fsync: FsyncPolicy::EveryBatch,
            queue_capacity: 65_536,
            batch_max_records: 16_384,
            segment_max_bytes: 64 << 20,
            retain_max_bytes: 1 << 30,
            compaction_interval: None,
            salvage: false,
            idle_park: Duration::from_millis(1),
            wake_when_half_full: true,
        }
    }

    /// The journal for a Kea `lease-database` (memfile): `<name>.journal`, the configured fsync
    /// policy and `lfc-interval`. Returns `None` when `persist` is false or no name is set.
    pub fn from_lease_database(db: &LeaseDatabase, queue_capacity: u32) -> Option<Self> {
        if !db.persist {
            return None;
        }
        let path = db.path.as_ref()?;
        let mut dir = path.clone().into_os_string();
        dir.push(".journal");
        let mut cfg = JournalConfig::new(PathBuf::from(dir));
        cfg.fsync = db.fsync;
        cfg.idle_park = write_delay(db.fsync);
        cfg.queue_capacity = (queue_capacity as usize).max(1);
        cfg.compaction_interval = (db.lfc_interval_secs > 0)
            .then(|| Duration::from_secs(u64::from(db.lfc_interval_secs)));
        Some(cfg)
    }
}

/// The longest a change waits in its queue before the journal thread writes it, for a fsync
/// policy: the fsync interval (the power-loss window the operator chose: writing sooner would
/// not make anything durable sooner), between 1 and 10 ms; 1 ms with `every-batch`.
///
/// Why not always 1 ms: the writer shares the workers' cores when the machine has no other, and
/// each wake-up preempts a busy worker. Measured with one AF_XDP worker and the journal on one
/// core (`./scripts/bench`, two sets of five alternating runs): 10 ms instead of 1 ms gave
/// medians of 313,800 against 300,400 and 308,600 against 304,700 DORA/s. Synchronous
/// replication, whose replies wait for the write, sets 1 ms itself.
pub fn write_delay(fsync: FsyncPolicy) -> Duration {
    match fsync {
        FsyncPolicy::EveryBatch => Duration::from_millis(1),
        FsyncPolicy::IntervalMs(ms) => Duration::from_millis(u64::from(ms.clamp(1, 10))),
        FsyncPolicy::Never => Duration::from_millis(10),
    }
}

// ---------------------------------------------------------------------------------------------
// Record payload codec
// ---------------------------------------------------------------------------------------------

/// A decoded journal entry: its position in the log, the version that orders changes to the same
/// lease, and the change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry {
    pub seq: u64,
    pub version: u64,
    pub change: LeaseChange,
}

fn state_code(s: LeaseState) -> u8 {
    match s {
        LeaseState::Assigned => 0,
        LeaseState::Declined => 1,
        LeaseState::ExpiredReclaimed => 2,
        LeaseState::Offered => 3,
    }
}

fn state_from_code(c: u8) -> Option<LeaseState> {
    match c {
        0 => Some(LeaseState::Assigned),
        1 => Some(LeaseState::Declined),
        2 => Some(LeaseState::ExpiredReclaimed),
        3 => Some(LeaseState::Offered),
        _ => None,
    }
}

fn lease6_type_from_code(c: u8) -> Option<Lease6Type> {
    match c {
        0 => Some(Lease6Type::Na),
        1 => Some(Lease6Type::Ta),
        2 => Some(Lease6Type::Pd),
        _ => None,
    }
}

fn put_bytes16(out: &mut Vec<u8>, b: &[u8]) {
    // Identifiers and hostnames are far below 64 KiB; clamp rather than panic on absurd input so
    // the record stays decodable (MAX_PAYLOAD rejects it on replay if it ever got that big).
    let n = b.len().min(u16::MAX as usize);
    out.extend_from_slice(&(n as u16).to_le_bytes());
    out.extend_from_slice(&b[..n]);
}

fn put_hwaddr(out: &mut Vec<u8>, hw: &HwAddr) {
    out.push(hw.htype);
    let n = hw.len.min(16);
    out.push(n);
    out.extend_from_slice(&hw.bytes[..n as usize]);
}

/// Append the payload of one change (format version [`FORMAT_VERSION`]) to `out`.
pub fn encode_change(out: &mut Vec<u8>, version: u64, change: &LeaseChange) {
    match change {
        LeaseChange::Put4(l) => {
            out.push(TAG_PUT4);
            out.extend_from_slice(&version.to_le_bytes());
            out.extend_from_slice(&l.addr.octets());
            put_hwaddr(out, &l.hwaddr);
            put_bytes16(out, &l.client_id);
            out.extend_from_slice(&l.subnet_id.to_le_bytes());
            out.extend_from_slice(&l.cltt.to_le_bytes());
            out.extend_from_slice(&l.valid_lft.to_le_bytes());
            out.push(state_code(l.state));
            let mut flags = 0;
            if l.fqdn_fwd {
                flags |= FLAG_FQDN_FWD;
            }
            if l.fqdn_rev {
                flags |= FLAG_FQDN_REV;
            }
            if l.hostname.is_some() {
                flags |= FLAG_HOSTNAME;
            }
            out.push(flags);
            if let Some(h) = &l.hostname {
                put_bytes16(out, h.as_bytes());
            }
        }
        LeaseChange::Del4(a) => {
            out.push(TAG_DEL4);
            out.extend_from_slice(&version.to_le_bytes());
            out.extend_from_slice(&a.octets());
        }
        LeaseChange::Put6(l) => {
            out.push(TAG_PUT6);
            out.extend_from_slice(&version.to_le_bytes());
            out.extend_from_slice(&l.addr.octets());
            out.push(l.prefix_len);
            out.push(l.lease_type as u8);
            put_bytes16(out, &l.duid);
            out.extend_from_slice(&l.iaid.to_le_bytes());
            out.extend_from_slice(&l.subnet_id.to_le_bytes());
            out.extend_from_slice(&l.cltt.to_le_bytes());
            out.extend_from_slice(&l.valid_lft.to_le_bytes());
            out.extend_from_slice(&l.preferred_lft.to_le_bytes());
            out.push(state_code(l.state));
            let mut flags = 0;
            if l.fqdn_fwd {
                flags |= FLAG_FQDN_FWD;
            }
            if l.fqdn_rev {
                flags |= FLAG_FQDN_REV;
            }
            if l.hostname.is_some() {
                flags |= FLAG_HOSTNAME;
            }
            if l.hwaddr.is_some() {
                flags |= FLAG_HWADDR;
            }
            out.push(flags);
            if let Some(hw) = &l.hwaddr {
                put_hwaddr(out, hw);
            }
            if let Some(h) = &l.hostname {
                put_bytes16(out, h.as_bytes());
            }
        }
        LeaseChange::Del6(a, t) => {
            out.push(TAG_DEL6);
            out.extend_from_slice(&version.to_le_bytes());
            out.extend_from_slice(&a.octets());
            out.push(*t as u8);
        }
    }
}

/// Bounds-checked cursor over a payload: decoding never panics on any input.
struct Cur<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cur<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        let end = self.at.checked_add(n).ok_or("length overflow")?;
        let s = self.b.get(self.at..end).ok_or("record payload too short")?;
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, &'static str> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, &'static str> {
        let s = self.take(2)?;
        Ok(u16::from_le_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> Result<u32, &'static str> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn u64(&mut self) -> Result<u64, &'static str> {
        let s = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(u64::from_le_bytes(a))
    }
    fn v4(&mut self) -> Result<Ipv4Addr, &'static str> {
        let s = self.take(4)?;
        Ok(Ipv4Addr::new(s[0], s[1], s[2], s[3]))
    }
    fn v6(&mut self) -> Result<Ipv6Addr, &'static str> {
        let s = self.take(16)?;
        let mut a = [0u8; 16];
        a.copy_from_slice(s);
        Ok(Ipv6Addr::from(a))
    }
    fn bytes16(&mut self) -> Result<&'a [u8], &'static str> {
        let n = self.u16()? as usize;
        self.take(n)
    }
    fn hwaddr(&mut self) -> Result<HwAddr, &'static str> {
        let htype = self.u8()?;
        let n = self.u8()? as usize;
        if n > 16 {
            return Err("hardware address longer than 16 bytes");
        }
        Ok(HwAddr::new(htype, self.take(n)?))
    }
    fn hostname(&mut self, flags: u8) -> Result<Option<Arc<str>>, &'static str> {
        if flags & FLAG_HOSTNAME == 0 {
            return Ok(None);
        }
        let b = self.bytes16()?;
        let s = std::str::from_utf8(b).map_err(|_| "hostname is not UTF-8")?;
        Ok(Some(Arc::from(s)))
    }
}

enum Decoded {
    Change(u64, LeaseChange),
    SnapEnd { count: u64, max_version: u64 },
}

fn decode_payload(p: &[u8]) -> Result<Decoded, &'static str> {
    let mut c = Cur { b: p, at: 0 };
    let tag = c.u8()?;
    if tag == TAG_SNAP_END {
        let count = c.u64()?;
        let max_version = c.u64()?;
        return finish(c, Decoded::SnapEnd { count, max_version });
    }
    let version = c.u64()?;
    let change = match tag {
        TAG_PUT4 => {
            let addr = c.v4()?;
            let hwaddr = c.hwaddr()?;
            let client_id: IdBuf = IdBuf::from_slice(c.bytes16()?);
            let subnet_id = c.u32()?;
            let cltt = c.u64()?;
            let valid_lft = c.u32()?;
            let state = state_from_code(c.u8()?).ok_or("unknown lease state")?;
            let flags = c.u8()?;
            let hostname = c.hostname(flags)?;
            LeaseChange::Put4(Lease4 {
                addr,
                hwaddr,
                client_id,
                subnet_id,
                cltt,
                valid_lft,
                state,
                fqdn_fwd: flags & FLAG_FQDN_FWD != 0,
                fqdn_rev: flags & FLAG_FQDN_REV != 0,
                hostname,
            })
        }
        TAG_DEL4 => LeaseChange::Del4(c.v4()?),
        TAG_PUT6 => {
            let addr = c.v6()?;
            let prefix_len = c.u8()?;
            let lease_type = lease6_type_from_code(c.u8()?).ok_or("unknown lease6 type")?;
            let duid = IdBuf::from_slice(c.bytes16()?);
            let iaid = c.u32()?;
            let subnet_id = c.u32()?;
            let cltt = c.u64()?;
            let valid_lft = c.u32()?;
            let preferred_lft = c.u32()?;
            let state = state_from_code(c.u8()?).ok_or("unknown lease state")?;
            let flags = c.u8()?;
            let hwaddr = if flags & FLAG_HWADDR != 0 {
                Some(c.hwaddr()?)
            } else {
                None
            };
            let hostname = c.hostname(flags)?;
            LeaseChange::Put6(Lease6 {
                addr,
                prefix_len,
                lease_type,
                duid,
                iaid,
                subnet_id,
                cltt,
                valid_lft,
                preferred_lft,
                state,
                hwaddr,
                fqdn_fwd: flags & FLAG_FQDN_FWD != 0,
                fqdn_rev: flags & FLAG_FQDN_REV != 0,
                hostname,
            })
        }
        TAG_DEL6 => {
            let a = c.v6()?;
            let t = lease6_type_from_code(c.u8()?).ok_or("unknown lease6 type")?;
            LeaseChange::Del6(a, t)
        }
        _ => return Err("unknown record type"),
    };
    finish(c, Decoded::Change(version, change))
}

fn finish(c: Cur<'_>, d: Decoded) -> Result<Decoded, &'static str> {
    if c.at != c.b.len() {
        return Err("trailing bytes in record payload");
    }
    Ok(d)
}

/// Decode one record payload written by [`encode_change`]: `(version, change)`.
pub fn decode_change(payload: &[u8]) -> Result<(u64, LeaseChange), &'static str> {
    match decode_payload(payload)? {
        Decoded::Change(v, c) => Ok((v, c)),
        Decoded::SnapEnd { .. } => Err("snapshot end marker is not a lease change"),
    }
}

/// Append one framed record (header + payload) to `out`. The payload is encoded in place so a
/// batch is built in one reused buffer without allocating.
fn frame_record(out: &mut Vec<u8>, seq: u64, body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0u8; 8]);
    out.extend_from_slice(&seq.to_le_bytes());
    body(out);
    let len = out.len() - start - RECORD_HEADER_LEN;
    let mut h = crc32fast::Hasher::new();
    h.update(&out[start + 8..]);
    let crc = h.finalize();
    out[start..start + 4].copy_from_slice(&(len as u32).to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

fn file_header(kind: u16, seq: u64) -> [u8; FILE_HEADER_LEN] {
    let mut h = [0u8; FILE_HEADER_LEN];
    h[0..4].copy_from_slice(&MAGIC);
    h[4..6].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[6..8].copy_from_slice(&kind.to_le_bytes());
    h[8..16].copy_from_slice(&seq.to_le_bytes());
    let crc = crc32fast::hash(&h[0..16]);
    h[16..20].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Validate a file header; `Ok(None)` if the file is shorter than a header (torn at creation).
fn parse_file_header(path: &Path, buf: &[u8], kind: u16) -> Result<Option<u64>, JournalError> {
    if buf.len() < FILE_HEADER_LEN {
        return Ok(None);
    }
    if buf[0..4] != MAGIC {
        return Err(JournalError::corrupt(
            path,
            0,
            "not an xdhcp journal file (bad magic)",
        ));
    }
    let crc = u32::from_le_bytes([buf[16], buf[17], buf[18], buf[19]]);
    if crc != crc32fast::hash(&buf[0..16]) {
        return Err(JournalError::corrupt(
            path,
            0,
            "file header checksum mismatch",
        ));
    }
    let version = u16::from_le_bytes([buf[4], buf[5]]);
    if version != FORMAT_VERSION {
        return Err(JournalError::Version {
            path: path.to_path_buf(),
            found: version,
        });
    }
    let k = u16::from_le_bytes([buf[6], buf[7]]);
    if k != kind {
        return Err(JournalError::corrupt(
            path,
            6,
            format!("file kind {k}, expected {kind}"),
        ));
    }
    let mut s = [0u8; 8];
    s.copy_from_slice(&buf[8..16]);
    Ok(Some(u64::from_le_bytes(s)))
}

enum Parse<'a> {
    Ok {
        seq: u64,
        payload: &'a [u8],
        end: usize,
    },
    Short,
    Bad(&'static str),
}

fn parse_record(buf: &[u8], off: usize) -> Parse<'_> {
    let rest = match buf.get(off..) {
        Some(r) => r,
        None => return Parse::Short,
    };
    if rest.len() < RECORD_HEADER_LEN {
        return Parse::Short;
    }
    let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
    if len == 0 || len > MAX_PAYLOAD {
        return Parse::Bad("record length out of range");
    }
    if rest.len() < RECORD_HEADER_LEN + len {
        return Parse::Short;
    }
    let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
    if crc != crc32fast::hash(&rest[8..RECORD_HEADER_LEN + len]) {
        return Parse::Bad("record checksum mismatch");
    }
    let mut s = [0u8; 8];
    s.copy_from_slice(&rest[8..16]);
    Parse::Ok {
        seq: u64::from_le_bytes(s),
        payload: &rest[RECORD_HEADER_LEN..RECORD_HEADER_LEN + len],
        end: off + RECORD_HEADER_LEN + len,
    }
}

/// The next offset at or after `from` where a complete, checksummed record starts.
fn next_valid_record(buf: &[u8], from: usize) -> Option<usize> {
    (from..buf.len().saturating_sub(RECORD_HEADER_LEN - 1))
        .find(|&o| matches!(parse_record(buf, o), Parse::Ok { .. }))
}

// ---------------------------------------------------------------------------------------------
// Directory listing and replay
// ---------------------------------------------------------------------------------------------

fn seg_name(first_seq: u64) -> String {
    format!("seg-{first_seq:020}.xjl")
}
fn snap_name(through: u64) -> String {
    format!("snap-{through:020}.xjs")
}

#[derive(Debug, Default)]
struct Listing {
    /// (first seq, path), ascending.
    segments: Vec<(u64, PathBuf)>,
    /// (through seq, path), ascending.
    snapshots: Vec<(u64, PathBuf)>,
    temps: Vec<PathBuf>,
}

fn list_dir(dir: &Path) -> Result<Listing, JournalError> {
    let mut l = Listing::default();
    let rd = fs::read_dir(dir).map_err(|e| JournalError::io(dir, e))?;
    for ent in rd {
        let ent = ent.map_err(|e| JournalError::io(dir, e))?;
        let name = ent.file_name();
        let Some(name) = name.to_str() else { continue };
        let path = ent.path();
        if name.starts_with("snap-") && name.ends_with(".tmp") {
            // Only our own temporaries: other processes (the control's cursor files) share the dir.
            l.temps.push(path);
        } else if let Some(n) = name
            .strip_prefix("seg-")
            .and_then(|s| s.strip_suffix(".xjl"))
        {
            if let Ok(seq) = n.parse::<u64>() {
                l.segments.push((seq, path));
            }
        } else if let Some(n) = name
            .strip_prefix("snap-")
            .and_then(|s| s.strip_suffix(".xjs"))
        {
            if let Ok(seq) = n.parse::<u64>() {
                l.snapshots.push((seq, path));
            }
        }
    }
    l.segments.sort();
    l.snapshots.sort();
    Ok(l)
}

fn fsync_dir(dir: &Path) -> Result<(), JournalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| JournalError::io(dir, e))
}

struct Slot<L> {
    version: u64,
    lease: Option<L>,
    /// A tombstone that was already in the snapshot being folded: it has outlived every change that
    /// could have raced it, so the next snapshot drops it (keeps snapshots bounded).
    old_tombstone: bool,
}

/// The folded lease state: per key, the change with the highest version.
#[derive(Default)]
struct State {
    v4: HashMap<Ipv4Addr, Slot<Lease4>>,
    v6: HashMap<(Ipv6Addr, Lease6Type), Slot<Lease6>>,
    max_version: u64,
}

impl State {
    fn apply(&mut self, version: u64, change: LeaseChange, from_snapshot: bool) {
        self.max_version = self.max_version.max(version);
        fn upd<K: std::hash::Hash + Eq, L>(
            m: &mut HashMap<K, Slot<L>>,
            k: K,
            version: u64,
            lease: Option<L>,
            from_snapshot: bool,
        ) {
            let old_tombstone = from_snapshot && lease.is_none();
            match m.get_mut(&k) {
                Some(s) if s.version >= version => {}
                Some(s) => {
                    *s = Slot {
                        version,
                        lease,
                        old_tombstone,
                    }
                }
                None => {
                    m.insert(
                        k,
                        Slot {
                            version,
                            lease,
                            old_tombstone,
                        },
                    );
                }
            }
        }
        match change {
            LeaseChange::Put4(l) => upd(&mut self.v4, l.addr, version, Some(l), from_snapshot),
            LeaseChange::Del4(a) => upd(&mut self.v4, a, version, None, from_snapshot),
            LeaseChange::Put6(l) => upd(
                &mut self.v6,
                (l.addr, l.lease_type),
                version,
                Some(l),
                from_snapshot,
            ),
            LeaseChange::Del6(a, t) => upd(&mut self.v6, (a, t), version, None, from_snapshot),
        }
    }

    fn into_replayed(self, last_seq: u64, report: ReplayReport) -> Replayed {
        let mut leases4: Vec<Lease4> = self.v4.into_values().filter_map(|s| s.lease).collect();
        let mut leases6: Vec<Lease6> = self.v6.into_values().filter_map(|s| s.lease).collect();
        leases4.sort_by_key(|l| l.addr);
        leases6.sort_by_key(|l| (l.addr, l.lease_type as u8));
        Replayed {
            leases4,
            leases6,
            last_seq,
            max_version: self.max_version,
            report,
        }
    }
}

/// What replay found: counts for the log line and for tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// `Some(through seq)` when a snapshot was loaded.
    pub snapshot_seq: Option<u64>,
    pub segments: usize,
    /// Records applied from segments (after the snapshot).
    pub records: u64,
    /// Bytes of a torn tail cut from the last segment.
    pub truncated_bytes: u64,
    /// Bytes skipped as corrupt (salvage only).
    pub salvaged_bytes: u64,
}

/// The net lease state after replay: the latest Put per address, minus deletes.
#[derive(Debug, Clone, Default)]
pub struct Replayed {
    /// Sorted by address.
    pub leases4: Vec<Lease4>,
    /// Sorted by (address, type).
    pub leases6: Vec<Lease6>,
    /// Highest sequence number in the journal (0 for an empty one); the next record gets `last_seq + 1`.
    pub last_seq: u64,
    /// Highest change version seen; new changes are numbered above it.
    pub max_version: u64,
    pub report: ReplayReport,
}

struct SegScan {
    /// Sequence number the next record would have.
    next_seq: u64,
    /// Length of the valid prefix (where a torn tail starts), if the file needs truncating.
    torn_at: Option<usize>,
}

/// Scan one segment buffer, calling `f` for every record. `is_last` allows a torn tail.
fn scan_segment(
    path: &Path,
    buf: &[u8],
    first_seq: u64,
    is_last: bool,
    salvage: bool,
    report: &mut ReplayReport,
    mut f: impl FnMut(u64, u64, LeaseChange),
) -> Result<SegScan, JournalError> {
    let mut off = FILE_HEADER_LEN;
    let mut expect = first_seq;
    loop {
        if off == buf.len() {
            return Ok(SegScan {
                next_seq: expect,
                torn_at: None,
            });
        }
        let reason = match parse_record(buf, off) {
            Parse::Ok { seq, payload, end } => {
                if seq != expect && !(salvage && seq > expect) {
                    return Err(JournalError::corrupt(
                        path,
                        off,
                        format!("sequence {seq} where {expect} was expected"),
                    ));
                }
                match decode_payload(payload) {
                    Ok(Decoded::Change(version, change)) => f(seq, version, change),
                    Ok(Decoded::SnapEnd { .. }) => {
                        return Err(JournalError::corrupt(
                            path,
                            off,
                            "snapshot marker in a segment",
                        ))
                    }
                    Err(e) if salvage => {
                        tracing::warn!(file = %path.display(), offset = off, "skipping undecodable record: {e}");
                        report.salvaged_bytes += (end - off) as u64;
                    }
                    Err(e) => return Err(JournalError::corrupt(path, off, e)),
                }
                expect = seq + 1;
                off = end;
                continue;
            }
            Parse::Short => "record cut short",
            Parse::Bad(r) => r,
        };
        match next_valid_record(buf, off + 1) {
            None if is_last => {
                tracing::warn!(
                    file = %path.display(),
                    offset = off,
                    bytes = buf.len() - off,
                    "lease journal: torn tail ({reason}), truncating; records before it are intact"
                );
                report.truncated_bytes += (buf.len() - off) as u64;
                return Ok(SegScan {
                    next_seq: expect,
                    torn_at: Some(off),
                });
            }
            Some(next) if salvage => {
                tracing::warn!(
                    file = %path.display(),
                    offset = off,
                    bytes = next - off,
                    "lease journal salvage: skipping corrupt bytes ({reason})"
                );
                report.salvaged_bytes += (next - off) as u64;
                off = next;
            }
            None if salvage => {
                tracing::warn!(file = %path.display(), offset = off, "lease journal salvage: dropping corrupt tail ({reason})");
                report.salvaged_bytes += (buf.len() - off) as u64;
                return Ok(SegScan {
                    next_seq: expect,
                    torn_at: None,
                });
            }
            Some(_) => return Err(JournalError::corrupt(path, off, reason)),
            None => {
                return Err(JournalError::corrupt(
                    path,
                    off,
                    format!("{reason} at the end of a closed segment"),
                ))
            }
        }
    }
}

/// Load a snapshot into `state`, returning its through-seq. Tombstones are marked old.
fn load_snapshot(path: &Path, through: u64, state: &mut State) -> Result<(), JournalError> {
    let buf = fs::read(path).map_err(|e| JournalError::io(path, e))?;
    let hseq = parse_file_header(path, &buf, KIND_SNAPSHOT)?
        .ok_or_else(|| JournalError::corrupt(path, 0, "snapshot shorter than its header"))?;
    if hseq != through {
        return Err(JournalError::corrupt(
            path,
            8,
            format!("header says seq {hseq}, name says {through}"),
        ));
    }
    let mut off = FILE_HEADER_LEN;
    let mut count = 0u64;
    loop {
        match parse_record(&buf, off) {
            Parse::Ok { payload, end, .. } => {
                match decode_payload(payload).map_err(|e| JournalError::corrupt(path, off, e))? {
                    Decoded::Change(v, c) => {
                        state.apply(v, c, true);
                        count += 1;
                    }
                    Decoded::SnapEnd {
                        count: n,
                        max_version,
                    } => {
                        if n != count || end != buf.len() {
                            return Err(JournalError::corrupt(
                                path,
                                off,
                                "snapshot end marker does not match",
                            ));
                        }
                        state.max_version = state.max_version.max(max_version);
                        return Ok(());
                    }
                }
                off = end;
            }
            Parse::Short => return Err(JournalError::corrupt(path, off, "snapshot is incomplete")),
            Parse::Bad(r) => return Err(JournalError::corrupt(path, off, r)),
        }
    }
}

struct ReplayOutcome {
    state: State,
    last_seq: u64,
    report: ReplayReport,
    listing: Listing,
    /// (path, valid length) of the last segment if its tail must be cut (or the header rewritten).
    torn_last: Option<(PathBuf, usize)>,
}

fn replay_dir(dir: &Path, salvage: bool) -> Result<ReplayOutcome, JournalError> {
    let listing = list_dir(dir)?;
    let mut state = State::default();
    let mut report = ReplayReport::default();
    let mut base = 0u64;
    // Newest complete snapshot wins; older ones are leftovers of an interrupted compaction.
    if let Some((through, path)) = listing.snapshots.last() {
        match load_snapshot(path, *through, &mut state) {
            Ok(()) => {
                base = *through;
                report.snapshot_seq = Some(base);
            }
            Err(e) if salvage && listing.snapshots.len() > 1 => {
                tracing::warn!("lease journal salvage: ignoring snapshot: {e}");
                state = State::default();
                let (t, p) = &listing.snapshots[listing.snapshots.len() - 2];
                load_snapshot(p, *t, &mut state)?;
                base = *t;
                report.snapshot_seq = Some(base);
            }
            Err(e) => return Err(e),
        }
    }
    let mut next_expected: Option<u64> = None;
    let mut last_seq = base;
    let mut torn_last = None;
    let nseg = listing.segments.len();
    for (i, (first_seq, path)) in listing.segments.iter().enumerate() {
        let is_last = i + 1 == nseg;
        let buf = fs::read(path).map_err(|e| JournalError::io(path, e))?;
        let hseq = match parse_file_header(path, &buf, KIND_SEGMENT)? {
            Some(s) => s,
            None if is_last => {
                // Created but its header never fully reached the disk: it holds no records.
                torn_last = Some((path.clone(), 0));
                continue;
            }
            None => {
                return Err(JournalError::corrupt(
                    path,
                    0,
                    "segment shorter than its header",
                ))
            }
        };
        if hseq != *first_seq {
            return Err(JournalError::corrupt(
                path,
                8,
                format!("header says seq {hseq}, name says {first_seq}"),
            ));
        }
        match next_expected {
            None if *first_seq > base + 1 && !salvage => {
                return Err(JournalError::corrupt(
                    path,
                    0,
                    format!("sequences {}..{} are missing", base + 1, first_seq - 1),
                ))
            }
            Some(ne) if ne != *first_seq && !(salvage && *first_seq > ne) => {
                return Err(JournalError::corrupt(
                    path,
                    0,
                    format!("segment starts at {first_seq} but the previous one ends before {ne}"),
                ))
            }
            _ => {}
        }
        report.segments += 1;
        let mut applied = 0u64;
        let scan = scan_segment(
            path,
            &buf,
            *first_seq,
            is_last,
            salvage,
            &mut report,
            |seq, v, c| {
                if seq > base {
                    state.apply(v, c, false);
                    applied += 1;
                }
            },
        )?;
        report.records += applied;
        if let Some(at) = scan.torn_at {
            torn_last = Some((path.clone(), at));
        }
        last_seq = last_seq.max(scan.next_seq - 1);
        next_expected = Some(scan.next_seq);
    }
    Ok(ReplayOutcome {
        state,
        last_seq,
        report,
        listing,
        torn_last,
    })
}

/// Replay a journal directory without opening it for writing (no lock, nothing truncated or
/// deleted): for `xdhcp lease-export`, diagnostics and tests.
pub fn read_state(dir: &Path, salvage: bool) -> Result<Replayed, JournalError> {
    let o = replay_dir(dir, salvage)?;
    Ok(o.state.into_replayed(o.last_seq, o.report))
}

// ---------------------------------------------------------------------------------------------
// Producers
// ---------------------------------------------------------------------------------------------

struct Pending {
    version: u64,
    change: LeaseChange,
}

struct ProducerShared {
    queue: Spsc<Pending>,
    rejected: AtomicU64,
    closed: AtomicBool,
    /// Changes the journal thread took from `queue` (only it writes this).
    popped: AtomicU64,
    /// Published after each written batch, in this order: `written_seq_bound` (every change
    /// counted in `written_pushes` has a sequence number ≤ this), then `written_pushes`.
    written_seq_bound: AtomicU64,
    written_pushes: AtomicU64,
}

/// How far the journal has written one producer's changes: "your first N pushes are in the file,
/// all at sequence numbers ≤ S". Synchronous replication compares S with the sequence the HA
/// peers acknowledged (the same numbering `JournalReader` gives the control process).
#[derive(Clone)]
pub struct WriteProgress(Arc<ProducerShared>);

impl WriteProgress {
    /// `(pushes written, sequence bound)`. The bound may be newer than the count (never older).
    #[inline]
    pub fn get(&self) -> (u64, u64) {
        let n = self.0.written_pushes.load(Ordering::Acquire);
        let s = self.0.written_seq_bound.load(Ordering::Acquire);
        (n, s)
    }
}

/// A worker's handle for submitting changes. One per worker thread: it can be moved to another
/// thread but not shared (`!Sync`), because [`JournalProducer::has_room`]'s promise needs a single
/// pusher per queue.
pub struct JournalProducer {
    inner: Arc<Inner>,
    p: Arc<ProducerShared>,
    /// Changes accepted from this handle (the tickets of synchronous replication).
    pushed: std::cell::Cell<u64>,
    /// Free places in the queue as last seen: a lower bound, since only this handle fills the
    /// queue. Asking the queue reads the journal thread's head index, a cache line it writes on
    /// every pop; the bound spares that on most changes.
    room: std::cell::Cell<usize>,
    _not_sync: PhantomData<std::cell::Cell<()>>,
}

impl JournalProducer {
    /// Queue a change for the journal without blocking. Call it while holding the lock that
    /// serialises changes to this lease (the version taken here orders them), or take the version
    /// under that lock with [`JournalProducer::take_version`] and push later with
    /// [`JournalProducer::try_push_versioned`]. On `Err` the change was not queued (queue full or
    /// journal failing): do not acknowledge the client.
    #[inline]
    pub fn try_push(&self, change: LeaseChange) -> Result<(), LeaseChange> {
        if !self.has_room() {
            self.p.rejected.fetch_add(1, Ordering::Relaxed);
            return Err(change);
        }
        let version = self.take_version();
        self.try_push_versioned(version, change)
    }

    /// A version number for a change to be pushed later. Versions order changes to the same
    /// lease on replay (highest wins), so take it inside the store's critical section for the
    /// lease: then two workers changing the same address a moment apart replay in store order
    /// even if they push in the other order.
    #[inline]
    pub fn take_version(&self) -> u64 {
        // Relaxed is enough: read-modify-writes of one atomic are totally ordered, and that order
        // agrees with the happens-before the caller's lock provides.
        self.inner.version.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// [`JournalProducer::try_push`] with a version from [`JournalProducer::take_version`].
    #[inline]
    pub fn try_push_versioned(&self, version: u64, change: LeaseChange) -> Result<(), LeaseChange> {
        if !self.inner.healthy.load(Ordering::Relaxed) {
            self.p.rejected.fetch_add(1, Ordering::Relaxed);
            return Err(change);
        }
        match self.p.queue.push(Pending { version, change }) {
            Ok(()) => {
                self.pushed.set(self.pushed.get() + 1);
                self.room.set(self.room.get().saturating_sub(1));
                Ok(())
            }
            Err(p) => {
                self.p.rejected.fetch_add(1, Ordering::Relaxed);
                Err(p.change)
            }
        }
    }

    /// True if the next `try_push` from this handle will be accepted (only the journal thread
    /// takes from the queue, so the room cannot disappear). Lets the engine check before it
    /// commits a change to the store.
    #[inline]
    pub fn has_room(&self) -> bool {
        self.room_for(1)
    }

    /// True if the next `n` pushes from this handle will be accepted (an ACK that also releases
    /// the client's previous address needs two).
    #[inline]
    pub fn room_for(&self, n: usize) -> bool {
        let half = if self.inner.cfg.wake_when_half_full {
            self.p.queue.capacity() / 2
        } else {
            0
        };
        if self.room.get() < n.max(half) {
            // Looked at every `half` pushes while the journal keeps up; at every push while the
            // queue is more than half full, when the journal thread is woken rather than left to
            // its next timed look (a burst faster than its write delay).
            let room = self.p.queue.capacity() - self.p.queue.len();
            self.room.set(room);
            if room < half {
                self.inner.wake_writer();
            }
        }
        self.room.get() >= n && self.inner.healthy.load(Ordering::Relaxed)
    }

    /// Changes this handle had to refuse.
    pub fn rejected(&self) -> u64 {
        self.p.rejected.load(Ordering::Relaxed)
    }

    /// Changes queued but not yet taken by the journal thread.
    pub fn queued(&self) -> usize {
        self.p.queue.len()
    }

    /// Highest sequence number written (see [`Journal::written_seq`]).
    pub fn written_seq(&self) -> u64 {
        self.inner.written_seq.load(Ordering::Acquire)
    }

    /// Changes accepted from this handle so far.
    pub fn pushed(&self) -> u64 {
        self.pushed.get()
    }

    /// A handle on how far the journal has written this producer's changes.
    pub fn write_progress(&self) -> WriteProgress {
        WriteProgress(self.p.clone())
    }

    /// Highest sequence number durable under the fsync policy.
    pub fn durable_seq(&self) -> u64 {
        self.inner.durable_seq.load(Ordering::Acquire)
    }
}

impl Drop for JournalProducer {
    fn drop(&mut self) {
        // The journal thread still drains what is queued, then forgets the queue.
        self.p.closed.store(true, Ordering::Release);
    }
}

// ---------------------------------------------------------------------------------------------
// The journal and its thread
// ---------------------------------------------------------------------------------------------

enum Cmd {
    /// Write everything queued, fsync, reply with the durable seq.
    Flush(mpsc::Sender<Result<u64, String>>),
    /// Close the current segment and start a new one; reply with the new segment's first seq.
    Rotate(mpsc::Sender<Result<u64, String>>),
    Shutdown,
}

struct Inner {
    cfg: JournalConfig,
    producers: Mutex<Vec<Arc<ProducerShared>>>,
    producers_gen: AtomicU64,
    /// Taken by every worker for every change: on its own cache line, so the journal thread's
    /// per-batch counter updates below do not take it away from the workers (and back).
    version: CachePadded<AtomicU64>,
    written_seq: AtomicU64,
    durable_seq: AtomicU64,
    /// Read by every worker for every change, written only when writes start or stop failing.
    healthy: CachePadded<AtomicBool>,
    last_error: Mutex<Option<String>>,
    records: AtomicU64,
    batches: AtomicU64,
    bytes: AtomicU64,
    fsyncs: AtomicU64,
    compactions: AtomicU64,
    /// Refusals counted by producers that have since been dropped.
    rejected_retired: AtomicU64,
    /// Set before Shutdown is sent: a write retry loop on a failing disk gives up instead of
    /// holding shutdown forever.
    stopping: AtomicBool,
    retain_from_seq: AtomicU64,
    cmd_tx: Mutex<mpsc::Sender<Cmd>>,
    thread: Mutex<Option<Thread>>,
    compaction_lock: Mutex<()>,
}

impl Inner {
    /// Wakes the journal thread if it sleeps (no system call if it is awake).
    fn wake_writer(&self) {
        if let Some(t) = self.thread.lock().as_ref() {
            t.unpark();
        }
    }

    fn send(&self, cmd: Cmd) -> Result<(), JournalError> {
        self.cmd_tx
            .lock()
            .send(cmd)
            .map_err(|_| JournalError::Stopped)?;
        self.wake_writer();
        Ok(())
    }

    fn request(
        &self,
        make: impl FnOnce(mpsc::Sender<Result<u64, String>>) -> Cmd,
        timeout: Duration,
    ) -> Result<u64, JournalError> {
        let (tx, rx) = mpsc::channel();
        self.send(make(tx))?;
        match rx.recv_timeout(timeout) {
            Ok(Ok(seq)) => Ok(seq),
            Ok(Err(e)) => Err(JournalError::Io {
                path: self.cfg.dir.clone(),
                source: io::Error::other(e),
            }),
            Err(mpsc::RecvTimeoutError::Timeout) => Err(JournalError::Timeout(timeout)),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(JournalError::Stopped),
        }
    }
}

/// Counters for metrics and status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalStats {
    pub written_seq: u64,
    pub durable_seq: u64,
    pub records: u64,
    pub batches: u64,
    pub bytes: u64,
    pub fsyncs: u64,
    pub compactions: u64,
    /// Changes refused by all producers (queue full or journal failing).
    pub rejected: u64,
    /// False while writes are failing (the thread retries; producers refuse changes meanwhile).
    pub healthy: bool,
    pub last_error: Option<String>,
}

/// What one compaction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactionReport {
    /// The snapshot holds everything up to and including this sequence number.
    pub through_seq: u64,
    pub leases4: usize,
    pub leases6: usize,
    pub tombstones: usize,
    pub segments_removed: usize,
    /// Folded segments kept because a replication peer still needs them (`retain_from_seq`).
    pub segments_retained: usize,
    pub snapshot_bytes: u64,
}

/// Where a test makes compaction stop as if the process had died there.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompactionCrashPoint {
    AfterRotate,
    /// Half of the temporary snapshot written, not synced.
    PartialTemp,
    /// Temporary snapshot complete and synced, not renamed.
    AfterTemp,
    /// Snapshot renamed into place; old snapshot and folded segments not yet deleted.
    AfterRename,
    /// Only the first folded segment deleted.
    AfterFirstDelete,
}

/// The lease journal. Open it once per process; hand a [`JournalProducer`] to each worker.
pub struct Journal {
    inner: Arc<Inner>,
    thread: Option<JoinHandle<Result<(), JournalError>>>,
    _lock: File,
}

impl Journal {
    /// Open (or create) the journal in `cfg.dir`: take the directory lock, replay snapshot and
    /// segments, cut a torn tail, remove leftovers of an interrupted compaction, start a fresh
    /// segment and the journal thread.
    pub fn open(cfg: JournalConfig) -> Result<(Journal, Replayed), JournalError> {
        let dir = cfg.dir.clone();
        fs::create_dir_all(&dir).map_err(|e| JournalError::io(&dir, e))?;
        let lock_path = dir.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| JournalError::io(&lock_path, e))?;
        // SAFETY: flock on a descriptor we own; no memory is passed.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(JournalError::Locked { dir });
        }

        let o = replay_dir(&dir, cfg.salvage)?;
        let mut dirty_dir = false;
        for t in &o.listing.temps {
            // An interrupted compaction's unfinished snapshot: everything in it is still in the segments.
            fs::remove_file(t).map_err(|e| JournalError::io(t, e))?;
            dirty_dir = true;
        }
        for (t, p) in &o.listing.snapshots {
            // Older snapshots are leftovers of a compaction that stopped before deleting them.
            if Some(*t) != o.report.snapshot_seq {
                fs::remove_file(p).map_err(|e| JournalError::io(p, e))?;
                dirty_dir = true;
            }
        }
        if let Some((path, at)) = &o.torn_last {
            if *at < FILE_HEADER_LEN {
                fs::remove_file(path).map_err(|e| JournalError::io(path, e))?;
                dirty_dir = true;
            } else {
                let f = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(|e| JournalError::io(path, e))?;
                f.set_len(*at as u64)
                    .map_err(|e| JournalError::io(path, e))?;
                f.sync_all().map_err(|e| JournalError::io(path, e))?;
            }
        }
        if dirty_dir {
            fsync_dir(&dir)?;
        }

        let last_seq = o.last_seq;
        let next_seq = last_seq + 1;
        // Reuse the last segment if it is the empty one a previous run started; else start anew so
        // a replayed file is never appended to.
        let reuse = o.listing.segments.last().is_some_and(|(s, p)| {
            *s == next_seq
                && o.torn_last
                    .as_ref()
                    .is_none_or(|(tp, at)| tp != p || *at >= FILE_HEADER_LEN)
        });
        let seg = Segment::create(&dir, next_seq, reuse)?;

        let (cmd_tx, cmd_rx) = mpsc::channel();
        let inner = Arc::new(Inner {
            cfg: cfg.clone(),
            producers: Mutex::new(Vec::new()),
            producers_gen: AtomicU64::new(0),
            version: CachePadded::new(AtomicU64::new(o.state.max_version)),
            written_seq: AtomicU64::new(last_seq),
            durable_seq: AtomicU64::new(last_seq),
            healthy: CachePadded::new(AtomicBool::new(true)),
            last_error: Mutex::new(None),
            records: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            fsyncs: AtomicU64::new(0),
            compactions: AtomicU64::new(0),
            rejected_retired: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            retain_from_seq: AtomicU64::new(u64::MAX),
            cmd_tx: Mutex::new(cmd_tx),
            thread: Mutex::new(None),
            compaction_lock: Mutex::new(()),
        });
        let replayed = o.state.into_replayed(last_seq, o.report);
        tracing::info!(
            dir = %dir.display(),
            leases4 = replayed.leases4.len(),
            leases6 = replayed.leases6.len(),
            last_seq,
            snapshot = ?replayed.report.snapshot_seq,
            segments = replayed.report.segments,
            truncated_bytes = replayed.report.truncated_bytes,
            "lease journal replayed"
        );

        let w = WriterLoop {
            inner: inner.clone(),
            seg,
            next_seq,
            buf: Vec::with_capacity(cfg.batch_max_records.max(1) * 96),
            batch_last_seq: 0,
            local: Vec::new(),
            gen: u64::MAX,
            last_sync: Instant::now(),
            unsynced: false,
            last_compaction: Instant::now(),
            compaction: None,
        };
        let thread = thread::Builder::new()
            .name("xdhcp-journal".into())
            .spawn(move || w.run(cmd_rx))
            .map_err(|e| JournalError::io(&dir, e))?;
        *inner.thread.lock() = Some(thread.thread().clone());
        Ok((
            Journal {
                inner,
                thread: Some(thread),
                _lock: lock,
            },
            replayed,
        ))
    }

    /// The writer thread's pthread handle (to set its CPUs), while it runs.
    pub fn writer_pthread(&self) -> Option<libc::pthread_t> {
        use std::os::unix::thread::JoinHandleExt;
        self.thread.as_ref().map(|t| t.as_pthread_t())
    }

    /// A new producer with its own bounded queue, for one worker.
    pub fn producer(&self) -> JournalProducer {
        let p = Arc::new(ProducerShared {
            queue: Spsc::new(self.inner.cfg.queue_capacity.max(1)),
            rejected: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            popped: AtomicU64::new(0),
            written_seq_bound: AtomicU64::new(0),
            written_pushes: AtomicU64::new(0),
        });
        self.inner.producers.lock().push(p.clone());
        self.inner.producers_gen.fetch_add(1, Ordering::Release);
        JournalProducer {
            inner: self.inner.clone(),
            p,
            pushed: std::cell::Cell::new(0),
            room: std::cell::Cell::new(0),
            _not_sync: PhantomData,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.inner.cfg.dir
    }

    /// Highest sequence number handed to `write(2)`: survives a process crash.
    pub fn written_seq(&self) -> u64 {
        self.inner.written_seq.load(Ordering::Acquire)
    }

    /// Highest sequence number durable under the fsync policy (equal to `written_seq` with
    /// `Never`, as that policy accepts losing the page cache on a machine crash).
    pub fn durable_seq(&self) -> u64 {
        self.inner.durable_seq.load(Ordering::Acquire)
    }

    /// Write everything queued so far and fsync it; returns the durable sequence number.
    pub fn flush_blocking(&self, timeout: Duration) -> Result<u64, JournalError> {
        self.inner.request(Cmd::Flush, timeout)
    }

    /// Records with `seq >= seq` must survive compaction (a replication peer has not acknowledged
    /// them yet). `None` lifts the constraint.
    pub fn set_retain_from_seq(&self, seq: Option<u64>) {
        self.inner
            .retain_from_seq
            .store(seq.unwrap_or(u64::MAX), Ordering::Release);
    }

    /// Compact now, in the calling thread, while workers keep writing: the journal rotates to a new
    /// segment at `S`, everything before `S` is folded into one snapshot, and folded segments not
    /// needed for `retain_from_seq` are deleted. Crash-safe at every step.
    pub fn compact_now(&self) -> Result<CompactionReport, JournalError> {
        compact(&self.inner, None)
    }

    #[doc(hidden)]
    pub fn compact_with_crash(
        &self,
        at: CompactionCrashPoint,
    ) -> Result<CompactionReport, JournalError> {
        compact(&self.inner, Some(at))
    }

    pub fn stats(&self) -> JournalStats {
        let i = &self.inner;
        let rejected = i
            .producers
            .lock()
            .iter()
            .map(|p| p.rejected.load(Ordering::Relaxed))
            .sum::<u64>()
            + i.rejected_retired.load(Ordering::Relaxed);
        JournalStats {
            written_seq: i.written_seq.load(Ordering::Acquire),
            durable_seq: i.durable_seq.load(Ordering::Acquire),
            records: i.records.load(Ordering::Relaxed),
            batches: i.batches.load(Ordering::Relaxed),
            bytes: i.bytes.load(Ordering::Relaxed),
            fsyncs: i.fsyncs.load(Ordering::Relaxed),
            compactions: i.compactions.load(Ordering::Relaxed),
            rejected,
            healthy: i.healthy.load(Ordering::Relaxed),
            last_error: i.last_error.lock().clone(),
        }
    }

    /// Drain every queue, write, fsync and stop the journal thread (also done on drop).
    pub fn shutdown(mut self) -> Result<u64, JournalError> {
        self.stop()?;
        Ok(self.durable_seq())
    }

    fn stop(&mut self) -> Result<(), JournalError> {
        let Some(h) = self.thread.take() else {
            return Ok(());
        };
        self.inner.stopping.store(true, Ordering::Release);
        let _ = self.inner.send(Cmd::Shutdown);
        match h.join() {
            Ok(r) => r,
            Err(_) => Err(JournalError::Stopped),
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            tracing::error!("lease journal shutdown: {e}");
        }
    }
}

struct Segment {
    path: PathBuf,
    file: File,
    first_seq: u64,
    /// Bytes known good (header + whole records): where to cut back to after a failed write.
    len: u64,
}

impl Segment {
    fn create(dir: &Path, first_seq: u64, reuse: bool) -> Result<Segment, JournalError> {
        let path = dir.join(seg_name(first_seq));
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(!reuse)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| JournalError::io(&path, e))?;
        let io = |e| JournalError::io(&path, e);
        if reuse {
            // An empty segment a previous run started; cut anything past its header.
            file.set_len(FILE_HEADER_LEN as u64).map_err(io)?;
            file.seek(SeekFrom::End(0)).map_err(io)?;
        } else {
            file.write_all(&file_header(KIND_SEGMENT, first_seq))
                .map_err(io)?;
            file.sync_all().map_err(io)?;
            fsync_dir(dir)?;
        }
        Ok(Segment {
            path,
            file,
            first_seq,
            len: FILE_HEADER_LEN as u64,
        })
    }
}

struct WriterLoop {
    inner: Arc<Inner>,
    seg: Segment,
    next_seq: u64,
    buf: Vec<u8>,
    batch_last_seq: u64,
    local: Vec<Arc<ProducerShared>>,
    gen: u64,
    last_sync: Instant,
    unsynced: bool,
    last_compaction: Instant,
    compaction: Option<JoinHandle<()>>,
}

impl WriterLoop {
    fn run(mut self, rx: mpsc::Receiver<Cmd>) -> Result<(), JournalError> {
        let result = self.main_loop(&rx);
        if let Err(e) = &result {
            // Nothing more will be written: make producers refuse at once (the engine then drops
            // packets instead of acknowledging leases that cannot be made durable).
            tracing::error!("lease journal thread stopped: {e}");
            self.inner.healthy.store(false, Ordering::Relaxed);
            *self.inner.last_error.lock() = Some(e.to_string());
        }
        // Dropping the receiver fails any Rotate a running compaction is waiting for, so joining
        // it below cannot deadlock.
        drop(rx);
        if let Some(h) = self.compaction.take() {
            let _ = h.join();
        }
        result
    }

    fn main_loop(&mut self, rx: &mpsc::Receiver<Cmd>) -> Result<(), JournalError> {
        loop {
            let mut shutdown = false;
            while let Ok(cmd) = rx.try_recv() {
                match cmd {
                    Cmd::Flush(reply) => {
                        let r = self.drain_queued().and_then(|_| self.sync());
                        let _ = reply.send(r.map(|_| self.next_seq - 1).map_err(|e| e.to_string()));
                    }
                    Cmd::Rotate(reply) => {
                        let r = self.rotate();
                        let _ = reply.send(r.map(|_| self.next_seq).map_err(|e| e.to_string()));
                    }
                    Cmd::Shutdown => shutdown = true,
                }
            }
            if shutdown {
                self.drain_queued()?;
                self.sync()?;
                return Ok(());
            }
            let n = self.fill_batch(usize::MAX);
            if n > 0 {
                self.write_batch()?;
                continue;
            }
            self.maybe_interval_sync()?;
            self.maybe_start_compaction();
            thread::park_timeout(self.next_look());
        }
    }

    fn refresh_producers(&mut self) {
        let gen = self.inner.producers_gen.load(Ordering::Acquire);
        if gen != self.gen {
            self.gen = gen;
            self.local = self.inner.producers.lock().clone();
        }
    }

    /// Move up to `batch_max_records` queued changes into the write buffer, assigning sequence
    /// numbers. Returns how many.
    fn fill_batch(&mut self, limit: usize) -> usize {
        self.refresh_producers();
        let max = self.inner.cfg.batch_max_records.max(1).min(limit);
        let mut n = 0;
        let mut removed = false;
        // Round-robin: a busy worker cannot starve the others within a batch.
        loop {
            let mut progressed = false;
            for p in &self.local {
                if n >= max {
                    break;
                }
                // Take a few at a time from each queue to keep the loop cheap.
                for _ in 0..64 {
                    if n >= max {
                        break;
                    }
                    let Some(item) = p.queue.pop() else { break };
                    p.popped
                        .store(p.popped.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
                    let seq = self.next_seq;
                    self.next_seq += 1;
                    frame_record(&mut self.buf, seq, |b| {
                        encode_change(b, item.version, &item.change)
                    });
                    self.batch_last_seq = seq;
                    n += 1;
                    progressed = true;
                }
            }
            if !progressed || n >= max {
                break;
            }
        }
        for p in &self.local {
            if p.closed.load(Ordering::Acquire) && p.queue.is_empty() {
                removed = true;
            }
        }
        if removed {
            let mut all = self.inner.producers.lock();
            all.retain(|p| {
                let gone = p.closed.load(Ordering::Acquire) && p.queue.is_empty();
                if gone {
                    let r = p.rejected.load(Ordering::Relaxed);
                    self.inner.rejected_retired.fetch_add(r, Ordering::Relaxed);
                }
                !gone
            });
            self.local = all.clone();
        }
        n
    }

    /// Write what is queued now (not what producers add meanwhile, or a busy journal would never
    /// finish a flush). Everything pushed before the command was sent is included.
    fn drain_queued(&mut self) -> Result<(), JournalError> {
        self.refresh_producers();
        let mut left: usize = self.local.iter().map(|p| p.queue.len()).sum();
        if !self.buf.is_empty() {
            self.write_batch()?;
        }
        while left > 0 {
            let n = self.fill_batch(left);
            if n == 0 {
                break;
            }
            left -= n;
            self.write_batch()?;
        }
        Ok(())
    }

    /// One `write(2)` of the whole batch; retried (after cutting any partial write) while the disk
    /// fails, with producers refusing changes meanwhile.
    fn write_batch(&mut self) -> Result<(), JournalError> {
        let mut backoff = Duration::from_millis(10);
        loop {
            match self.seg.file.write_all(&self.buf) {
                Ok(()) => break,
                Err(e) => {
                    let msg = format!("writing {}: {e}", self.seg.path.display());
                    tracing::error!("lease journal: {msg}; retrying in {backoff:?}");
                    *self.inner.last_error.lock() = Some(msg);
                    self.inner.healthy.store(false, Ordering::Relaxed);
                    if self.inner.stopping.load(Ordering::Acquire) {
                        let _ = self.seg.file.set_len(self.seg.len);
                        return Err(JournalError::io(&self.seg.path, e));
                    }
                    // A partial write would leave a torn record in the middle of the segment.
                    let _ = self.seg.file.set_len(self.seg.len);
                    let _ = self.seg.file.seek(SeekFrom::Start(self.seg.len));
                    thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
        self.inner.healthy.store(true, Ordering::Relaxed);
        let nrec = self.batch_last_seq - self.inner.written_seq.load(Ordering::Relaxed);
        self.seg.len += self.buf.len() as u64;
        self.inner
            .bytes
            .fetch_add(self.buf.len() as u64, Ordering::Relaxed);
        self.inner.records.fetch_add(nrec, Ordering::Relaxed);
        self.inner.batches.fetch_add(1, Ordering::Relaxed);
        self.buf.clear();
        self.inner
            .written_seq
            .store(self.batch_last_seq, Ordering::Release);
        for p in &self.local {
            let popped = p.popped.load(Ordering::Relaxed);
            if popped != p.written_pushes.load(Ordering::Relaxed) {
                p.written_seq_bound
                    .store(self.batch_last_seq, Ordering::Release);
                p.written_pushes.store(popped, Ordering::Release);
            }
        }
        self.unsynced = true;
        match self.inner.cfg.fsync {
            FsyncPolicy::Never => {
                self.inner
                    .durable_seq
                    .store(self.batch_last_seq, Ordering::Release);
            }
            FsyncPolicy::EveryBatch => self.sync()?,
            FsyncPolicy::IntervalMs(_) => self.maybe_interval_sync()?,
        }
        if self.seg.len >= self.inner.cfg.segment_max_bytes {
            self.rotate()?;
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<(), JournalError> {
        if self.unsynced {
            self.seg
                .file
                .sync_data()
                .map_err(|e| JournalError::io(&self.seg.path, e))?;
            self.inner.fsyncs.fetch_add(1, Ordering::Relaxed);
            self.unsynced = false;
        }
        self.last_sync = Instant::now();
        let w = self.inner.written_seq.load(Ordering::Relaxed);
        self.inner.durable_seq.store(w, Ordering::Release);
        Ok(())
    }

    /// How long to sleep: the write delay, or less when written data is due for its fsync sooner.
    fn next_look(&self) -> Duration {
        let park = self.inner.cfg.idle_park;
        match self.inner.cfg.fsync {
            FsyncPolicy::IntervalMs(ms) if self.unsynced => {
                let due =
                    Duration::from_millis(u64::from(ms)).saturating_sub(self.last_sync.elapsed());
                park.min(due.max(Duration::from_micros(100)))
            }
            _ => park,
        }
    }

    fn maybe_interval_sync(&mut self) -> Result<(), JournalError> {
        if let FsyncPolicy::IntervalMs(ms) = self.inner.cfg.fsync {
            if self.unsynced && self.last_sync.elapsed() >= Duration::from_millis(u64::from(ms)) {
                self.sync()?;
            }
        }
        Ok(())
    }

    fn rotate(&mut self) -> Result<(), JournalError> {
        // Always fsync a segment before starting the next: replay treats a torn tail in any but
        // the last segment as corruption.
        self.unsynced = true;
        self.sync()?;
        let seg = Segment::create(&self.inner.cfg.dir, self.next_seq, false)?;
        tracing::debug!(
            from = self.seg.first_seq,
            to = seg.first_seq,
            "lease journal: new segment"
        );
        self.seg = seg;
        Ok(())
    }

    fn maybe_start_compaction(&mut self) {
        let Some(iv) = self.inner.cfg.compaction_interval else {
            return;
        };
        if self.last_compaction.elapsed() < iv {
            return;
        }
        if self.compaction.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        if let Some(h) = self.compaction.take() {
            let _ = h.join();
        }
        self.last_compaction = Instant::now();
        let inner = self.inner.clone();
        match thread::Builder::new()
            .name("xdhcp-journal-lfc".into())
            .spawn(move || match compact(&inner, None) {
                Ok(r) => tracing::info!(?r, "lease journal compacted"),
                Err(e) => {
                    tracing::error!("lease journal compaction failed: {e}");
                    *inner.last_error.lock() = Some(format!("compaction: {e}"));
                }
            }) {
            Ok(h) => self.compaction = Some(h),
            Err(e) => tracing::error!("lease journal: cannot start compaction thread: {e}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Compaction
// ---------------------------------------------------------------------------------------------

fn compact(
    inner: &Inner,
    crash: Option<CompactionCrashPoint>,
) -> Result<CompactionReport, JournalError> {
    let _one_at_a_time = inner.compaction_lock.lock();
    let dir = &inner.cfg.dir;
    let s = inner.request(Cmd::Rotate, Duration::from_secs(60))?;
    if crash == Some(CompactionCrashPoint::AfterRotate) {
        return Err(JournalError::Stopped);
    }
    let through = s - 1;
    let listing = list_dir(dir)?;
    let mut state = State::default();
    let mut base = 0;
    if let Some((t, p)) = listing.snapshots.last() {
        load_snapshot(p, *t, &mut state)?;
        base = *t;
    }
    let folded: Vec<&(u64, PathBuf)> = listing.segments.iter().filter(|(f, _)| *f < s).collect();
    let mut report = ReplayReport::default();
    for (first, path) in &folded {
        let buf = fs::read(path).map_err(|e| JournalError::io(path, e))?;
        if parse_file_header(path, &buf, KIND_SEGMENT)?.is_none() {
            return Err(JournalError::corrupt(
                path,
                0,
                "segment shorter than its header",
            ));
        }
        // Sealed segments: a bad tail here is corruption, never a torn write.
        scan_segment(
            path,
            &buf,
            *first,
            false,
            inner.cfg.salvage,
            &mut report,
            |seq, v, c| {
                if seq > base {
                    state.apply(v, c, false);
                }
            },
        )?;
    }

    // Serialise the live state plus the tombstones that are new since the last snapshot.
    let mut out = Vec::with_capacity((state.v4.len() + state.v6.len()) * 80 + 64);
    out.extend_from_slice(&file_header(KIND_SNAPSHOT, through));
    let (mut n4, mut n6, mut tombs, mut count) = (0usize, 0usize, 0usize, 0u64);
    for (addr, slot) in &state.v4 {
        let change = match &slot.lease {
            Some(l) => {
                n4 += 1;
                LeaseChange::Put4(l.clone())
            }
            None if !slot.old_tombstone => {
                tombs += 1;
                LeaseChange::Del4(*addr)
            }
            None => continue,
        };
        frame_record(&mut out, through, |b| {
            encode_change(b, slot.version, &change)
        });
        count += 1;
    }
    for ((addr, t), slot) in &state.v6 {
        let change = match &slot.lease {
            Some(l) => {
                n6 += 1;
                LeaseChange::Put6(l.clone())
            }
            None if !slot.old_tombstone => {
                tombs += 1;
                LeaseChange::Del6(*addr, *t)
            }
            None => continue,
        };
        frame_record(&mut out, through, |b| {
            encode_change(b, slot.version, &change)
        });
        count += 1;
    }
    let max_version = state.max_version;
    frame_record(&mut out, through, |b| {
        b.push(TAG_SNAP_END);
        b.extend_from_slice(&count.to_le_bytes());
        b.extend_from_slice(&max_version.to_le_bytes());
    });

    let final_path = dir.join(snap_name(through));
    let tmp_path = dir.join(format!("{}.tmp", snap_name(through)));
    {
        let io = |e| JournalError::io(&tmp_path, e);
        let mut f = File::create(&tmp_path).map_err(io)?;
        if crash == Some(CompactionCrashPoint::PartialTemp) {
            f.write_all(&out[..out.len() / 2]).map_err(io)?;
            return Err(JournalError::Stopped);
        }
        f.write_all(&out).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    if crash == Some(CompactionCrashPoint::AfterTemp) {
        return Err(JournalError::Stopped);
    }
    fs::rename(&tmp_path, &final_path).map_err(|e| JournalError::io(&final_path, e))?;
    fsync_dir(dir)?;
    if crash == Some(CompactionCrashPoint::AfterRename) {
        return Err(JournalError::Stopped);
    }

    for (t, p) in &listing.snapshots {
        if *t != through {
            fs::remove_file(p).map_err(|e| JournalError::io(p, e))?;
        }
    }
    // A folded segment may go once every record in it is below the retention point (the minimum
    // of `retain_from_seq` and the readers' cursor files), or when what is retained exceeds
    // `retain_max_bytes` (the lagging peer then gets `Compacted` and a full sync). Delete oldest
    // first so what remains is always a contiguous run up to the newest segment.
    let retain = inner
        .retain_from_seq
        .load(Ordering::Acquire)
        .min(reader_pins(dir));
    let sizes: Vec<u64> = folded
        .iter()
        .map(|(_, p)| fs::metadata(p).map_or(0, |m| m.len()))
        .collect();
    let mut kept_bytes: u64 = folded
        .iter()
        .enumerate()
        .filter(|(i, _)| folded.get(i + 1).map_or(s, |(f, _)| *f) > retain)
        .map(|(i, _)| sizes[i])
        .sum();
    let (mut removed, mut retained) = (0, 0);
    for (i, (_, p)) in folded.iter().enumerate() {
        let next_first = folded.get(i + 1).map_or(s, |(f, _)| *f);
        let over_cap = kept_bytes > inner.cfg.retain_max_bytes;
        if next_first <= retain || over_cap {
            if next_first > retain {
                kept_bytes -= sizes[i];
                tracing::warn!(
                    segment = %p.display(),
                    retain_from_seq = retain,
                    "lease journal: dropping a segment a replication reader still needs                      (retained bytes over retain_max_bytes); that peer will need a full sync"
                );
            }
            fs::remove_file(p).map_err(|e| JournalError::io(p, e))?;
            removed += 1;
            if crash == Some(CompactionCrashPoint::AfterFirstDelete) {
                fsync_dir(dir)?;
                return Err(JournalError::Stopped);
            }
        } else {
            retained = folded.len() - i;
            break;
        }
    }
    fsync_dir(dir)?;
    inner.compactions.fetch_add(1, Ordering::Relaxed);
    Ok(CompactionReport {
        through_seq: through,
        leases4: n4,
        leases6: n6,
        tombstones: tombs,
        segments_removed: removed,
        segments_retained: retained,
        snapshot_bytes: out.len() as u64,
    })
}

/// The lowest sequence number a replication reader still needs, from its cursor file:
/// `<dir>/<name>.seq` holding the last sequence number it has fully processed, in decimal
/// (`u64::MAX` if there are none). Files live in the journal directory so the pin survives a
/// restart of either process; deleting a file releases its pin.
fn reader_pins(dir: &Path) -> u64 {
    let Ok(rd) = fs::read_dir(dir) else {
        return u64::MAX;
    };
    rd.filter_map(Result::ok)
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.ends_with(".seq")))
        .filter_map(|e| fs::read_to_string(e.path()).ok())
        .filter_map(|t| t.trim().parse::<u64>().ok())
        .map(|acked| acked.saturating_add(1))
        .min()
        .unwrap_or(u64::MAX)
}

// ---------------------------------------------------------------------------------------------
// Replication reader
// ---------------------------------------------------------------------------------------------

/// Reads the journal from a sequence number on, following the tail as it grows: `next()` returns
/// `None` when it has caught up and can be called again later for more. Used by the control
/// process to ship changes to peers. It never changes the directory.
pub struct JournalReader {
    dir: PathBuf,
    next_seq: u64,
    cur: Option<ReaderSeg>,
    failed: bool,
}

struct ReaderSeg {
    path: PathBuf,
    file: File,
    first_seq: u64,
    buf: Vec<u8>,
    /// Parse position in `buf`.
    pos: usize,
    /// Nonzero once the header has been read and checked.
    file_off: u64,
    /// File offset of `buf[0]`, for error messages.
    buf_start_off: u64,
    /// Sequence number the next record in this segment should have.
    expect: u64,
}

impl JournalReader {
    /// Start at `from_seq` (the first sequence number wanted). Fails with
    /// [`JournalError::Compacted`] when segments holding it were removed by compaction.
    pub fn open(dir: &Path, from_seq: u64) -> Result<JournalReader, JournalError> {
        let from_seq = from_seq.max(1);
        let mut r = JournalReader {
            dir: dir.to_path_buf(),
            next_seq: from_seq,
            cur: None,
            failed: false,
        };
        r.open_segment_for(from_seq)?;
        Ok(r)
    }

    /// The sequence number the next entry will have.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    fn open_segment_for(&mut self, seq: u64) -> Result<bool, JournalError> {
        let l = list_dir(&self.dir)?;
        let Some(idx) = l.segments.iter().rposition(|(f, _)| *f <= seq) else {
            let oldest = l.segments.first().map_or(u64::MAX, |(f, _)| *f);
            let snap = l.snapshots.last().map_or(0, |(t, _)| *t);
            if seq <= snap || (oldest != u64::MAX && seq < oldest) {
                return Err(JournalError::Compacted {
                    dir: self.dir.clone(),
                    requested: seq,
                    oldest,
                });
            }
            return Ok(false);
        };
        let (first, path) = &l.segments[idx];
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Compaction removed it between listing and opening.
                return Err(JournalError::Compacted {
                    dir: self.dir.clone(),
                    requested: seq,
                    oldest: *first,
                });
            }
            Err(e) => return Err(JournalError::io(path, e)),
        };
        self.cur = Some(ReaderSeg {
            path: path.clone(),
            file,
            first_seq: *first,
            buf: Vec::new(),
            pos: 0,
            file_off: 0,
            buf_start_off: 0,
            expect: *first,
        });
        Ok(true)
    }

    fn next_inner(&mut self) -> Result<Option<JournalEntry>, JournalError> {
        if self.cur.is_none() && !self.open_segment_for(self.next_seq)? {
            return Ok(None);
        }
        loop {
            let Some(seg) = self.cur.as_mut() else {
                return Ok(None);
            };
            if let Some(e) = seg.next_record(self.next_seq)? {
                self.next_seq = e.seq + 1;
                return Ok(Some(e));
            }
            // Caught up with this segment. If a newer one exists, this one is sealed: read it to
            // the end once more (records may have landed since), then move on.
            let l = list_dir(&self.dir)?;
            let Some((nf, _)) = l.segments.iter().find(|(f, _)| *f > seg.first_seq) else {
                return Ok(None);
            };
            let nf = *nf;
            if let Some(e) = seg.next_record(self.next_seq)? {
                self.next_seq = e.seq + 1;
                return Ok(Some(e));
            }
            if nf > self.next_seq {
                return Err(JournalError::corrupt(
                    &seg.path,
                    seg.abs(seg.buf.len()),
                    format!(
                        "next segment starts at {nf}, sequences from {} are missing",
                        self.next_seq
                    ),
                ));
            }
            self.cur = None;
            if !self.open_segment_for(self.next_seq)? {
                return Ok(None);
            }
        }
    }
}

impl ReaderSeg {
    /// The next complete record with `seq >= want` in this segment, reading more of the file as
    /// needed; `None` at the current end.
    fn next_record(&mut self, want: u64) -> Result<Option<JournalEntry>, JournalError> {
        loop {
            match parse_record(&self.buf, self.pos) {
                Parse::Ok { seq, payload, end } => {
                    let at = self.abs(self.pos);
                    if seq != self.expect {
                        return Err(JournalError::corrupt(
                            &self.path,
                            at,
                            format!("sequence {seq} where {} was expected", self.expect),
                        ));
                    }
                    self.pos = end;
                    self.expect = seq + 1;
                    if seq < want {
                        continue;
                    }
                    return match decode_payload(payload) {
                        Ok(Decoded::Change(version, change)) => Ok(Some(JournalEntry {
                            seq,
                            version,
                            change,
                        })),
                        Ok(Decoded::SnapEnd { .. }) => Err(JournalError::corrupt(
                            &self.path,
                            at,
                            "snapshot marker in a segment",
                        )),
                        Err(e) => Err(JournalError::corrupt(&self.path, at, e)),
                    };
                }
                Parse::Short => {
                    if !self.fill()? {
                        return Ok(None);
                    }
                }
                Parse::Bad(r) => {
                    // Bytes below the file size are fully written (the kernel extends the size
                    // after copying), so a bad checksum here is damage, not a write in progress.
                    return Err(JournalError::corrupt(&self.path, self.abs(self.pos), r));
                }
            }
        }
    }

    fn abs(&self, pos: usize) -> usize {
        (self.buf_start_off as usize) + pos
    }

    /// Read whatever the file has beyond what we hold. Returns false if nothing new.
    fn fill(&mut self) -> Result<bool, JournalError> {
        let io = |e| JournalError::io(&self.path, e);
        if self.file_off == 0 {
            let mut h = [0u8; FILE_HEADER_LEN];
            let mut got = 0;
            while got < FILE_HEADER_LEN {
                let n = self.file.read(&mut h[got..]).map_err(io)?;
                if n == 0 {
                    break;
                }
                got += n;
            }
            if got < FILE_HEADER_LEN {
                // Header not written yet: start over next time.
                self.file.seek(SeekFrom::Start(0)).map_err(io)?;
                return Ok(false);
            }
            let s = parse_file_header(&self.path, &h, KIND_SEGMENT)?;
            if s != Some(self.first_seq) {
                return Err(JournalError::corrupt(
                    &self.path,
                    8,
                    "segment header does not match its name",
                ));
            }
            self.file_off = FILE_HEADER_LEN as u64;
            self.buf_start_off = FILE_HEADER_LEN as u64;
        }
        // Drop what has been parsed, keep a partial record.
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.buf_start_off += self.pos as u64;
            self.pos = 0;
        }
        let before = self.buf.len();
        let mut chunk = [0u8; 64 * 1024];
        loop {
            let n = self.file.read(&mut chunk).map_err(io)?;
            if n == 0 {
                break;
            }
            self.buf.extend_from_slice(&chunk[..n]);
            if self.buf.len() - before >= 1 << 20 {
                break;
            }
        }
        Ok(self.buf.len() > before)
    }
}

impl Iterator for JournalReader {
    type Item = Result<JournalEntry, JournalError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.next_inner() {
            Ok(Some(e)) => Some(Ok(e)),
            Ok(None) => None,
            Err(e) => {
                // Compacted / corrupt: the caller must reopen (or fall back to a full sync).
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}
