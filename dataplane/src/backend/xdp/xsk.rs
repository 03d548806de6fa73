//! AF_XDP sockets implemented directly on the kernel ABI (libc only): the UMEM, its fill and
//! completion rings, the RX and TX rings, bind with zero-copy-then-copy fallback, and a bounded
//! pool of free frames. It owns no thread and no policy: the dataplane backend, the load generator
//! and the raw echo responder all drive an [`XskSocket`] from their own loops.
//!
//! Frame ownership is explicit. Every UMEM frame is, at any moment, in exactly one place: the free
//! pool, the fill ring (lent to the kernel for RX), the RX ring or the caller's hands (received),
//! or the TX/completion rings (lent to the kernel for TX). The pool has the capacity of the whole
//! UMEM, allocated once, so moving frames never allocates.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

// Kernel ABI (include/uapi/linux/if_xdp.h). Written out because libc's coverage of AF_XDP varies
// between versions and these values are part of the stable uapi.
const AF_XDP: libc::c_int = 44;
const SOL_XDP: libc::c_int = 283;
const XDP_MMAP_OFFSETS: libc::c_int = 1;
const XDP_RX_RING: libc::c_int = 2;
const XDP_TX_RING: libc::c_int = 3;
const XDP_UMEM_REG: libc::c_int = 4;
const XDP_UMEM_FILL_RING: libc::c_int = 5;
const XDP_UMEM_COMPLETION_RING: libc::c_int = 6;
const XDP_STATISTICS: libc::c_int = 7;
const XDP_OPTIONS: libc::c_int = 8;
const XDP_OPTIONS_ZEROCOPY: u32 = 1;
const XDP_COPY: u16 = 1 << 1;
const XDP_ZEROCOPY: u16 = 1 << 2;
const XDP_USE_NEED_WAKEUP: u16 = 1 << 3;
const XDP_RING_NEED_WAKEUP: u32 = 1;
const XDP_PGOFF_RX_RING: libc::off_t = 0;
const XDP_PGOFF_TX_RING: libc::off_t = 0x8000_0000;
const XDP_UMEM_PGOFF_FILL_RING: libc::off_t = 0x1_0000_0000;
const XDP_UMEM_PGOFF_COMPLETION_RING: libc::off_t = 0x1_8000_0000;

/// Bytes the kernel reserves in front of every received frame in copy mode
/// (XDP_PACKET_HEADROOM): a 2048-byte frame holds at most 1792 bytes of packet.
pub const KERNEL_RX_HEADROOM: u32 = 256;

#[repr(C)]
struct XdpUmemReg {
    addr: u64,
    len: u64,
    chunk_size: u32,
    headroom: u32,
    flags: u32,
    tx_metadata_len: u32,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct XdpRingOffset {
    producer: u64,
    consumer: u64,
    desc: u64,
    flags: u64,
}

#[repr(C)]
#[derive(Default)]
struct XdpMmapOffsets {
    rx: XdpRingOffset,
    tx: XdpRingOffset,
    fr: XdpRingOffset,
    cr: XdpRingOffset,
}

#[repr(C)]
struct SockaddrXdp {
    family: u16,
    flags: u16,
    ifindex: u32,
    queue_id: u32,
    shared_umem_fd: u32,
}

/// An RX or TX descriptor as the kernel lays it out: a UMEM offset and a length.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct XdpDesc {
    pub addr: u64,
    pub len: u32,
    pub options: u32,
}

/// The kernel's per-socket counters (`XDP_STATISTICS`).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct XskKernelStats {
    /// Frames dropped for reasons other than an empty fill ring or a full RX ring.
    pub rx_dropped: u64,
    pub rx_invalid_descs: u64,
    pub tx_invalid_descs: u64,
    /// Frames dropped because the RX ring was full (the worker is too slow).
    pub rx_ring_full: u64,
    /// Frames dropped because the fill ring had no buffer.
    pub rx_fill_ring_empty_descs: u64,
    pub tx_ring_empty_descs: u64,
}

/// How to bind: zero-copy needs driver support (veth has none); copy works everywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BindMode {
    /// Try zero-copy, fall back to copy mode when the driver refuses.
    #[default]
    Auto,
    Copy,
    ZeroCopy,
}

/// Sizes of one socket's UMEM and rings. All ring sizes are powers of two (kernel rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XskConfig {
    /// Bytes per UMEM frame: 2048 or 4096 (aligned mode chunk sizes).
    pub frame_size: u32,
    /// Frames in the UMEM. Must cover the fill ring plus the TX ring plus one batch, so neither
    /// direction can starve the other.
    pub frame_count: u32,
    pub rx_size: u32,
    pub tx_size: u32,
    pub fill_size: u32,
    pub comp_size: u32,
    pub bind_mode: BindMode,
}

impl XskConfig {
    /// Every ring `ring_size` entries, `frame_count` frames of 2048 bytes.
    pub fn new(ring_size: u32, frame_count: u32) -> XskConfig {
        XskConfig {
            frame_size: 2048,
            frame_count,
            rx_size: ring_size,
            tx_size: ring_size,
            fill_size: ring_size,
            comp_size: ring_size,
            bind_mode: BindMode::Auto,
        }
    }

    /// Largest Ethernet frame (headers included) this configuration can receive.
    pub fn max_rx_frame(&self) -> u32 {
        self.frame_size - KERNEL_RX_HEADROOM
    }

    /// Checks the kernel's rules and that frames cover the rings.
    pub fn validate(&self) -> Result<(), XskError> {
        if self.frame_size != 2048 && self.frame_size != 4096 {
            return Err(XskError::Config(format!(
                "frame size {} must be 2048 or 4096",
                self.frame_size
            )));
        }
        for (name, v) in [
            ("rx ring", self.rx_size),
            ("tx ring", self.tx_size),
            ("fill ring", self.fill_size),
            ("completion ring", self.comp_size),
        ] {
            if !v.is_power_of_two() || !(8..=1 << 16).contains(&v) {
                return Err(XskError::Config(format!(
                    "{name} size {v} must be a power of two in 8..=65536"
                )));
            }
        }
        let needed = self.fill_size + self.tx_size;
        if self.frame_count < needed || self.frame_count > 1 << 20 {
            return Err(XskError::Config(format!(
                "frame count {} must be at least fill ring + tx ring = {needed} (and at most 1048576)",
                self.frame_count
            )));
        }
        Ok(())
    }
}

/// Why an AF_XDP socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum XskError {
    #[error("invalid AF_XDP configuration: {0}")]
    Config(String),
    #[error("creating an AF_XDP socket failed: {0} (needs root or CAP_NET_RAW)")]
    Socket(#[source] io::Error),
    #[error(
        "registering {bytes} bytes of UMEM failed: {source}. The UMEM is locked memory: raise \
         RLIMIT_MEMLOCK (ulimit -l), grant CAP_IPC_LOCK, or run as root"
    )]
    UmemRegister { bytes: usize, source: io::Error },
    #[error("allocating {bytes} bytes of UMEM failed: {source}")]
    UmemAlloc { bytes: usize, source: io::Error },
    #[error("setting up the AF_XDP {ring} failed: {source}")]
    Ring {
        ring: &'static str,
        source: io::Error,
    },
    #[error(
        "binding the AF_XDP socket to ifindex {ifindex} queue {queue} ({mode}) failed: {source}"
    )]
    Bind {
        ifindex: u32,
        queue: u32,
        mode: &'static str,
        source: io::Error,
    },
}

fn last_err() -> io::Error {
    io::Error::last_os_error()
}

/// A mapped region released on drop.
struct Mapping {
    base: NonNull<u8>,
    len: usize,
}

impl Mapping {
    fn anonymous(len: usize) -> io::Result<Mapping> {
        // SAFETY: a fresh private anonymous mapping; we check the result before use.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        Self::check(p, len)
    }

    fn ring(fd: RawFd, len: usize, pgoff: libc::off_t) -> io::Result<Mapping> {
        // SAFETY: maps the kernel ring of a socket we own at its documented page offset.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd,
                pgoff,
            )
        };
        Self::check(p, len)
    }

    fn check(p: *mut libc::c_void, len: usize) -> io::Result<Mapping> {
        if p == libc::MAP_FAILED {
            return Err(last_err());
        }
        let base =
            NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned NULL"))?;
        Ok(Mapping { base, len })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the region mmap returned; nothing borrows it past this point
        // because every borrow is tied to the owning socket's lifetime.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

/// One single-producer/single-consumer ring shared with the kernel. `cached_*` are our private
/// copies of the indices so the shared cache line is touched once per batch, not per entry.
struct Ring<T> {
    _map: Mapping,
    producer: NonNull<AtomicU32>,
    consumer: NonNull<AtomicU32>,
    flags: NonNull<AtomicU32>,
    descs: NonNull<T>,
    mask: u32,
    size: u32,
    cached_prod: u32,
    cached_cons: u32,
}

impl<T: Copy> Ring<T> {
    fn map(
        fd: RawFd,
        off: &XdpRingOffset,
        size: u32,
        pgoff: libc::off_t,
        name: &'static str,
    ) -> Result<Self, XskError> {
        let len = off.desc as usize + size as usize * std::mem::size_of::<T>();
        let map = Mapping::ring(fd, len, pgoff)
            .map_err(|source| XskError::Ring { ring: name, source })?;
        let base = map.base.as_ptr();
        // SAFETY: the kernel guarantees these offsets lie inside the mapping and are aligned.
        let (producer, consumer, flags, descs) = unsafe {
            (
                NonNull::new_unchecked(base.add(off.producer as usize).cast::<AtomicU32>()),
                NonNull::new_unchecked(base.add(off.consumer as usize).cast::<AtomicU32>()),
                NonNull::new_unchecked(base.add(off.flags as usize).cast::<AtomicU32>()),
                NonNull::new_unchecked(base.add(off.desc as usize).cast::<T>()),
            )
        };
        let mut ring = Ring {
            _map: map,
            producer,
            consumer,
            flags,
            descs,
            mask: size - 1,
            size,
            cached_prod: 0,
            cached_cons: 0,
        };
        ring.cached_prod = ring.prod().load(Ordering::Acquire);
        ring.cached_cons = ring.cons().load(Ordering::Acquire);
        Ok(ring)
    }

    fn prod(&self) -> &AtomicU32 {
        // SAFETY: points into our live mapping (see `map`).
        unsafe { self.producer.as_ref() }
    }

    fn cons(&self) -> &AtomicU32 {
        // SAFETY: as above.
        unsafe { self.consumer.as_ref() }
    }

    fn needs_wakeup(&self) -> bool {
        // SAFETY: as above.
        unsafe { self.flags.as_ref() }.load(Ordering::Relaxed) & XDP_RING_NEED_WAKEUP != 0
    }

    // --- producer side (fill, tx): we write descriptors, the kernel consumes them.

    /// Free slots, refreshing our view of the kernel's consumer index only when needed.
    fn prod_free(&mut self, want: u32) -> u32 {
        let free = self.size - self.cached_prod.wrapping_sub(self.cached_cons);
        if free >= want {
            return free;
        }
        self.cached_cons = self.cons().load(Ordering::Acquire);
        self.size - self.cached_prod.wrapping_sub(self.cached_cons)
    }

    /// Writes one entry; the caller checked `prod_free`.
    fn prod_write(&mut self, v: T) {
        let idx = (self.cached_prod & self.mask) as usize;
        // SAFETY: idx < size; the slot belongs to us until we publish the producer index.
        unsafe { self.descs.as_ptr().add(idx).write(v) };
        self.cached_prod = self.cached_prod.wrapping_add(1);
    }

    /// Publishes written entries to the kernel.
    fn prod_submit(&mut self) {
        self.prod().store(self.cached_prod, Ordering::Release);
    }

    /// Entries published but not yet consumed by the kernel.
    fn prod_outstanding(&mut self) -> u32 {
        self.cached_cons = self.cons().load(Ordering::Acquire);
        self.cached_prod.wrapping_sub(self.cached_cons)
    }

    // --- consumer side (rx, completion): the kernel writes, we read.

    fn cons_available(&mut self, want: u32) -> u32 {
        let mut avail = self.cached_prod.wrapping_sub(self.cached_cons);
        if avail == 0 {
            self.cached_prod = self.prod().load(Ordering::Acquire);
            avail = self.cached_prod.wrapping_sub(self.cached_cons);
        }
        avail.min(want)
    }

    fn cons_read(&mut self) -> T {
        let idx = (self.cached_cons & self.mask) as usize;
        // SAFETY: idx < size and the kernel published this entry (cons_available said so).
        let v = unsafe { self.descs.as_ptr().add(idx).read() };
        self.cached_cons = self.cached_cons.wrapping_add(1);
        v
    }

    fn cons_release(&mut self) {
        self.cons().store(self.cached_cons, Ordering::Release);
    }
}

/// A frame handed out for transmission: its UMEM offset. Must go back through
/// [`XskSocket::tx_push`] or [`XskSocket::free_frame`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame(u64);

impl Frame {
    pub fn addr(self) -> u64 {
        self.0
    }
}

/// Counters of what the user-space side of one socket did (single writer: the owning thread).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct XskCounters {
    pub rx_frames: u64,
    pub tx_frames: u64,
    /// A reply was ready but the TX ring was full: dropped.
    pub tx_ring_full: u64,
    /// No free frame to write a reply into: dropped.
    pub tx_no_frame: u64,
    /// `sendto` wakeups issued.
    pub tx_wakeups: u64,
    /// `sendto` failed with something other than "try again".
    pub tx_wakeup_errors: u64,
    /// `sendto` said EBUSY or ENOBUFS: the kernel dropped a frame on the way out (the device
    /// refused it, e.g. veth's ring towards the peer was full) or had no memory for it.
    pub tx_wakeup_busy: u64,
}

/// Bytes of a received frame worth prefetching ([`XskSocket::prefetch_rx`]): for DHCP, the
/// Ethernet, IP and UDP headers, the BOOTP header and the first options (message type, client
/// id, parameter request list).
pub const PREFETCH_BYTES: usize = 384;

/// One AF_XDP socket with its own UMEM, bound to one queue of one interface.
pub struct XskSocket {
    // Field order matters for drop: rings are unmapped and the socket closed before the UMEM
    // they reference is unmapped.
    rx: Ring<XdpDesc>,
    tx: Ring<XdpDesc>,
    fill: Ring<u64>,
    comp: Ring<u64>,
    fd: OwnedFd,
    umem: Mapping,
    /// Frames free for anything: RX buffers for the fill ring, and replies when `free_tx` is
    /// empty.
    free: Vec<u64>,
    /// Frames the kernel finished transmitting, reused first for replies (LIFO, up to a TX
    /// ring's worth). Why a pool of its own: in copy mode the kernel writes received frames on
    /// the *sender's* CPU, so a reply built in a just-released RX frame first has to take its
    /// cache lines back from that CPU; a frame the worker wrote and the kernel only read on this
    /// CPU (the copy-mode transmit) is still in this core's cache. The headers' stores into
    /// the reply frame were 6% of the worker's cycles before.
    free_tx: Vec<u64>,
    frame_size: u32,
    frame_mask: u64,
    fill_target_reserve: usize,
    zero_copy: bool,
    ifindex: u32,
    queue: u32,
    counters: XskCounters,
}

// SAFETY: the socket exclusively owns its mappings and fd; the raw pointers are only dereferenced
// through `&mut self`/`&self`, so moving the whole socket to another thread is sound. It is not
// `Sync`: two threads must not drive the same rings.
unsafe impl Send for XskSocket {}

impl std::fmt::Debug for XskSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XskSocket")
            .field("fd", &self.fd.as_raw_fd())
            .field("ifindex", &self.ifindex)
            .field("queue", &self.queue)
            .field("zero_copy", &self.zero_copy)
            .finish()
    }
}

fn setsockopt_u32(fd: RawFd, opt: libc::c_int, v: u32) -> io::Result<()> {
    // SAFETY: passes a pointer to a live u32 and its size.
    let r = unsafe { libc::setsockopt(fd, SOL_XDP, opt, (&v as *const u32).cast(), 4) };
    if r != 0 {
        return Err(last_err());
    }
    Ok(())
}

impl XskSocket {
    /// Creates the socket and its UMEM, maps the rings, binds to `(ifindex, queue)` and lends
    /// the fill ring its share of frames. The XDP program must redirect to this socket (XSKMAP)
    /// for it to receive anything.
    pub fn new(ifindex: u32, queue: u32, cfg: &XskConfig) -> Result<XskSocket, XskError> {
        cfg.validate()?;
        // SAFETY: plain socket(2) call.
        let raw = unsafe { libc::socket(AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(XskError::Socket(last_err()));
        }
        // SAFETY: `raw` is a fresh fd we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };

        let bytes = cfg.frame_size as usize * cfg.frame_count as usize;
        let umem =
            Mapping::anonymous(bytes).map_err(|source| XskError::UmemAlloc { bytes, source })?;
        let reg = XdpUmemReg {
            addr: umem.base.as_ptr() as u64,
            len: bytes as u64,
            chunk_size: cfg.frame_size,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        // SAFETY: passes a pointer to a live, fully initialised XdpUmemReg and its size.
        let r = unsafe {
            libc::setsockopt(
                raw,
                SOL_XDP,
                XDP_UMEM_REG,
                (&reg as *const XdpUmemReg).cast(),
                std::mem::size_of::<XdpUmemReg>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(XskError::UmemRegister {
                bytes,
                source: last_err(),
            });
        }
        let ring_err = |ring: &'static str| move |source| XskError::Ring { ring, source };
        setsockopt_u32(raw, XDP_UMEM_FILL_RING, cfg.fill_size).map_err(ring_err("fill ring"))?;
        setsockopt_u32(raw, XDP_UMEM_COMPLETION_RING, cfg.comp_size)
            .map_err(ring_err("completion ring"))?;
        setsockopt_u32(raw, XDP_RX_RING, cfg.rx_size).map_err(ring_err("rx ring"))?;
        setsockopt_u32(raw, XDP_TX_RING, cfg.tx_size).map_err(ring_err("tx ring"))?;

        let mut off = XdpMmapOffsets::default();
        let mut len = std::mem::size_of::<XdpMmapOffsets>() as libc::socklen_t;
        // SAFETY: the kernel writes at most `len` bytes into `off`.
        let r = unsafe {
            libc::getsockopt(
                raw,
                SOL_XDP,
                XDP_MMAP_OFFSETS,
                (&mut off as *mut XdpMmapOffsets).cast(),
                &mut len,
            )
        };
        if r != 0 {
            return Err(XskError::Ring {
                ring: "mmap offsets",
                source: last_err(),
            });
        }
        let fill = Ring::<u64>::map(
            raw,
            &off.fr,
            cfg.fill_size,
            XDP_UMEM_PGOFF_FILL_RING,
            "fill ring",
        )?;
        let comp = Ring::<u64>::map(
            raw,
            &off.cr,
            cfg.comp_size,
            XDP_UMEM_PGOFF_COMPLETION_RING,
            "completion ring",
        )?;
        let rx = Ring::<XdpDesc>::map(raw, &off.rx, cfg.rx_size, XDP_PGOFF_RX_RING, "rx ring")?;
        let tx = Ring::<XdpDesc>::map(raw, &off.tx, cfg.tx_size, XDP_PGOFF_TX_RING, "tx ring")?;

        let bind = |flags: u16| -> io::Result<()> {
            let sa = SockaddrXdp {
                family: AF_XDP as u16,
                flags: flags | XDP_USE_NEED_WAKEUP,
                ifindex,
                queue_id: queue,
                shared_umem_fd: 0,
            };
            // SAFETY: passes a live sockaddr_xdp and its exact size.
            let r = unsafe {
                libc::bind(
                    raw,
                    (&sa as *const SockaddrXdp).cast(),
                    std::mem::size_of::<SockaddrXdp>() as libc::socklen_t,
                )
            };
            if r != 0 {
                return Err(last_err());
            }
            Ok(())
        };
        let bind_err = |mode: &'static str| {
            move |source| XskError::Bind {
                ifindex,
                queue,
                mode,
                source,
            }
        };
        match cfg.bind_mode {
            BindMode::Copy => bind(XDP_COPY).map_err(bind_err("copy mode"))?,
            BindMode::ZeroCopy => bind(XDP_ZEROCOPY).map_err(bind_err("zero-copy mode"))?,
            BindMode::Auto => {
                if let Err(e) = bind(XDP_ZEROCOPY) {
                    tracing::debug!(ifindex, queue, error = %e, "zero-copy bind refused, using copy mode");
                    bind(XDP_COPY).map_err(bind_err("copy mode"))?;
                }
            }
        }

        let mut opts: u32 = 0;
        let mut len = 4 as libc::socklen_t;
        // SAFETY: the kernel writes at most 4 bytes into `opts`.
        let r = unsafe {
            libc::getsockopt(
                raw,
                SOL_XDP,
                XDP_OPTIONS,
                (&mut opts as *mut u32).cast(),
                &mut len,
            )
        };
        let zero_copy = r == 0 && opts & XDP_OPTIONS_ZEROCOPY != 0;

        let mut sock = XskSocket {
            rx,
            tx,
            fill,
            comp,
            fd,
            umem,
            free: Vec::with_capacity(cfg.frame_count as usize),
            free_tx: Vec::with_capacity(cfg.tx_size as usize),
            frame_size: cfg.frame_size,
            frame_mask: !(u64::from(cfg.frame_size) - 1),
            fill_target_reserve: cfg.tx_size as usize,
            zero_copy,
            ifindex,
            queue,
            counters: XskCounters::default(),
        };
        // Highest addresses last so the first frames handed out are the lowest (easier to debug).
        for i in (0..u64::from(cfg.frame_count)).rev() {
            sock.free.push(i * u64::from(cfg.frame_size));
        }
        while sock.free_tx.len() < sock.free_tx.capacity() {
            let Some(a) = sock.free.pop() else { break };
            sock.free_tx.push(a);
        }
        sock.refill();
        Ok(sock)
    }

    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    pub fn queue(&self) -> u32 {
        self.queue
    }

    /// Whether the driver accepted zero-copy (false on veth and in generic XDP).
    pub fn is_zero_copy(&self) -> bool {
        self.zero_copy
    }

    pub fn frame_size(&self) -> u32 {
        self.frame_size
    }

    pub fn counters(&self) -> XskCounters {
        self.counters
    }

    /// Frames currently in the free pool.
    pub fn free_frames(&self) -> usize {
        self.free.len() + self.free_tx.len()
    }

    /// The kernel's drop counters for this socket.
    pub fn kernel_stats(&self) -> io::Result<XskKernelStats> {
        xdp_statistics(self.fd.as_raw_fd())
    }

    /// A reader of [`XskSocket::kernel_stats`] for another thread (a duplicate of the socket's
    /// fd: `getsockopt` does not touch the rings, so it is safe while the owner drives them).
    pub fn stats_reader(&self) -> io::Result<XskStatsReader> {
        Ok(XskStatsReader {
            fd: self.fd.try_clone()?,
        })
    }

    /// Lends free frames to the kernel for RX, keeping enough in the pool for a full TX ring so
    /// replies never starve because RX took every frame.
    pub fn refill(&mut self) -> u32 {
        // Frames waiting in the TX pool count towards the reserve.
        let spare = self
            .free_frames()
            .saturating_sub(self.fill_target_reserve)
            .min(self.free.len()) as u32;
        let n = if spare == 0 {
            0
        } else {
            self.fill.prod_free(spare).min(spare)
        };
        for _ in 0..n {
            // `spare > 0` guarantees the pool has n entries.
            let Some(addr) = self.free.pop() else { break };
            self.fill.prod_write(addr);
        }
        if n > 0 {
            self.fill.prod_submit();
        }
        // Zero-copy drivers with XDP_USE_NEED_WAKEUP stop receiving until told the fill ring
        // has buffers again; copy mode never sets the flag, so this costs one load there.
        if self.fill.needs_wakeup() {
            // SAFETY: a zero-length non-blocking recvfrom is the documented AF_XDP RX kick.
            unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    std::ptr::null_mut(),
                    0,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                )
            };
        }
        n
    }

    /// Whether the kernel asked for a wakeup to refill RX (zero-copy drivers; see
    /// `XDP_USE_NEED_WAKEUP`). [`XskSocket::refill`] performs it.
    pub fn fill_needs_wakeup(&self) -> bool {
        self.fill.needs_wakeup()
    }

    /// Moves up to `out.len()` received descriptors into `out` and returns how many. The frames
    /// now belong to the caller: read them with [`XskSocket::rx_frame`] and give them back with
    /// [`XskSocket::release_rx`] (or transmit them in place with [`XskSocket::tx_push`]).
    pub fn recv(&mut self, out: &mut [XdpDesc]) -> usize {
        let n = self.rx.cons_available(out.len() as u32) as usize;
        for slot in out.iter_mut().take(n) {
            *slot = self.rx.cons_read();
        }
        if n > 0 {
            self.rx.cons_release();
            self.counters.rx_frames += n as u64;
        }
        n
    }

    /// Bytes of a received frame. A descriptor the kernel could have corrupted is clamped to
    /// the UMEM rather than trusted.
    pub fn rx_frame(&self, d: &XdpDesc) -> &[u8] {
        let (start, len) = self.clamp(d.addr, d.len);
        // SAFETY: `clamp` keeps the range inside the UMEM mapping, which lives as long as `self`.
        unsafe { std::slice::from_raw_parts(self.umem.base.as_ptr().add(start), len) }
    }

    /// Starts pulling the first [`PREFETCH_BYTES`] of a received frame into this core's cache.
    /// In copy mode the kernel wrote the frame on the sender's CPU: prefetching every frame of a
    /// batch before handling the first overlaps those misses instead of stalling on each in turn.
    pub fn prefetch_rx(&self, d: &XdpDesc) {
        let f = self.rx_frame(d);
        for line in f[..f.len().min(PREFETCH_BYTES)].chunks(64) {
            crate::prefetch::read(line.as_ptr());
        }
    }

    /// Bytes of a received frame, writable (for in-place replies).
    pub fn rx_frame_mut(&mut self, d: &XdpDesc) -> &mut [u8] {
        let (start, len) = self.clamp(d.addr, d.len);
        // SAFETY: in-bounds (clamp) and `&mut self` guarantees no other borrow of the UMEM.
        unsafe { std::slice::from_raw_parts_mut(self.umem.base.as_ptr().add(start), len) }
    }

    /// The frame a received descriptor points into.
    pub fn rx_as_frame(&self, d: &XdpDesc) -> Frame {
        Frame(d.addr & self.frame_mask)
    }

    /// Returns a received frame to the free pool.
    pub fn release_rx(&mut self, d: &XdpDesc) {
        self.free_frame(Frame(d.addr & self.frame_mask));
    }

    fn clamp(&self, addr: u64, len: u32) -> (usize, usize) {
        let total = self.umem.len as u64;
        let start = addr.min(total);
        let end = (addr + u64::from(len))
            .min(total)
            .min((addr & self.frame_mask) + u64::from(self.frame_size));
        (start as usize, end.saturating_sub(start) as usize)
    }

    /// Takes a frame for a reply: the most recently transmitted one (reclaiming completions when
    /// the TX pool is empty), else any free frame.
    pub fn alloc_frame(&mut self) -> Option<Frame> {
        if self.free_tx.is_empty() {
            self.reclaim();
        }
        match self.free_tx.pop().or_else(|| self.free.pop()) {
            Some(a) => Some(Frame(a)),
            None => {
                self.counters.tx_no_frame += 1;
                None
            }
        }
    }

    /// Returns an unused frame to the pool.
    pub fn free_frame(&mut self, f: Frame) {
        // The pool has the capacity of the whole UMEM and every frame is in one place only, so
        // this never reallocates; a double free would break that, hence the check.
        debug_assert!(self.free.len() < self.free.capacity(), "frame freed twice");
        if self.free.len() < self.free.capacity() {
            self.free.push(f.0);
        }
    }

    /// A whole frame as a writable buffer (for building a reply in place).
    pub fn frame_mut(&mut self, f: Frame) -> &mut [u8] {
        let (start, len) = self.clamp(f.0, self.frame_size);
        // SAFETY: in-bounds (clamp) and `&mut self` guarantees no other borrow of the UMEM.
        unsafe { std::slice::from_raw_parts_mut(self.umem.base.as_ptr().add(start), len) }
    }

    /// A received frame and a different, free frame at once: the reply is written straight into
    /// the UMEM while the request is read from it.
    ///
    /// # Panics
    /// If `tx` is the frame `rx` lives in (a caller bug, never network input).
    pub fn rx_and_tx(&mut self, rx: &XdpDesc, tx: Frame) -> (&[u8], &mut [u8]) {
        assert_ne!(
            rx.addr & self.frame_mask,
            tx.0,
            "reply frame must differ from the request frame"
        );
        let (rs, rl) = self.clamp(rx.addr, rx.len);
        let (ts, tl) = self.clamp(tx.0, self.frame_size);
        let base = self.umem.base.as_ptr();
        // SAFETY: both ranges are inside the UMEM and lie in different frames (asserted above), so
        // they do not overlap; `&mut self` excludes any other borrow.
        unsafe {
            (
                std::slice::from_raw_parts(base.add(rs), rl),
                std::slice::from_raw_parts_mut(base.add(ts), tl),
            )
        }
    }

    /// Queues `len` bytes at the start of `f` for transmission (published by
    /// [`XskSocket::tx_flush`]). When the TX ring is full the frame is handed back as `Err` for
    /// the caller to free and count.
    pub fn tx_push(&mut self, f: Frame, len: u32) -> Result<(), Frame> {
        if self.tx.prod_free(1) == 0 {
            self.counters.tx_ring_full += 1;
            return Err(f);
        }
        self.tx.prod_write(XdpDesc {
            addr: f.0,
            len: len.min(self.frame_size),
            options: 0,
        });
        self.counters.tx_frames += 1;
        Ok(())
    }

    /// Queues a received frame for transmission where it lies (an echo responder rewrites the
    /// request in place with [`XskSocket::rx_frame_mut`] and sends it back without a copy).
    /// Recompute the UDP checksum when rewriting: frames a kernel socket sent over veth carry
    /// CHECKSUM_PARTIAL (only the pseudo-header sum), and AF_XDP TX has no checksum offload.
    pub fn tx_push_in_place(&mut self, d: &XdpDesc) -> Result<(), Frame> {
        let (start, len) = self.clamp(d.addr, d.len);
        if self.tx.prod_free(1) == 0 {
            self.counters.tx_ring_full += 1;
            return Err(Frame(d.addr & self.frame_mask));
        }
        self.tx.prod_write(XdpDesc {
            addr: start as u64,
            len: len as u32,
            options: 0,
        });
        self.counters.tx_frames += 1;
        Ok(())
    }

    /// Publishes queued TX descriptors and wakes the kernel if it asked for it. In copy mode the
    /// kernel sends at most a small budget (32) of frames per wakeup, so this repeats while
    /// frames remain and the kernel makes progress, bounded by the ring size.
    pub fn tx_flush(&mut self) {
        self.tx.prod_submit();
        let mut rounds = self.tx.size / 16 + 2;
        while rounds > 0 && self.tx.prod_outstanding() > 0 {
            rounds -= 1;
            if !self.tx.needs_wakeup() {
                break;
            }
            // The kernel stops sending when the completion ring is full: make room first.
            self.reclaim();
            self.counters.tx_wakeups += 1;
            // SAFETY: a zero-length sendto with no address is the documented AF_XDP TX kick.
            let r = unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    std::ptr::null(),
                    0,
                    libc::MSG_DONTWAIT,
                    std::ptr::null(),
                    0,
                )
            };
            if r < 0 {
                let e = last_err();
                match e.raw_os_error() {
                    // The kernel is still busy with the previous batch or out of skbs: retry
                    // on the next flush rather than spin here.
                    Some(libc::EAGAIN) | Some(libc::EBUSY) | Some(libc::ENOBUFS) => {
                        if e.raw_os_error() != Some(libc::EAGAIN) {
                            self.counters.tx_wakeup_busy += 1;
                            break;
                        }
                    }
                    _ => {
                        self.counters.tx_wakeup_errors += 1;
                        break;
                    }
                }
            }
        }
        self.reclaim();
    }

    /// Moves completed TX frames back to the free pool.
    pub fn reclaim(&mut self) -> u32 {
        let n = self.comp.cons_available(self.comp.size);
        for _ in 0..n {
            let a = self.comp.cons_read() & self.frame_mask;
            if self.free_tx.len() < self.free_tx.capacity() {
                self.free_tx.push(a);
            } else {
                self.free_frame(Frame(a));
            }
        }
        if n > 0 {
            self.comp.cons_release();
        }
        n
    }

    /// Whether received frames wait in the RX ring (one shared-index load when the cached view
    /// is empty).
    pub fn rx_pending(&mut self) -> bool {
        self.rx.cons_available(1) > 0
    }

    /// Blocks until a frame is received or `timeout_ms` passes (also performs the fill-ring
    /// wakeup a zero-copy driver may be waiting for). Returns whether frames are ready.
    pub fn poll_rx(&mut self, timeout_ms: i32) -> io::Result<bool> {
        if self.rx.cons_available(1) > 0 {
            return Ok(true);
        }
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
        if r < 0 {
            let e = last_err();
            if e.raw_os_error() == Some(libc::EINTR) {
                return Ok(false);
            }
            return Err(e);
        }
        Ok(self.rx.cons_available(1) > 0)
    }
}

fn xdp_statistics(fd: RawFd) -> io::Result<XskKernelStats> {
    let mut st = XskKernelStats::default();
    let mut len = std::mem::size_of::<XskKernelStats>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `st`.
    let r = unsafe {
        libc::getsockopt(
            fd,
            SOL_XDP,
            XDP_STATISTICS,
            (&mut st as *mut XskKernelStats).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(last_err());
    }
    Ok(st)
}

/// Reads one socket's `XDP_STATISTICS` from any thread (see [`XskSocket::stats_reader`]).
#[derive(Debug)]
pub struct XskStatsReader {
    fd: OwnedFd,
}

impl XskStatsReader {
    pub fn read(&self) -> io::Result<XskKernelStats> {
        xdp_statistics(self.fd.as_raw_fd())
    }
}

impl AsRawFd for XskSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for XskSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_rejects_bad_sizes() {
        assert!(XskConfig::new(1024, 4096).validate().is_ok());
        assert!(
            XskConfig::new(1000, 4096).validate().is_err(),
            "not a power of two"
        );
        assert!(
            XskConfig::new(2048, 2048).validate().is_err(),
            "fill + tx exceed the frames"
        );
        let mut c = XskConfig::new(64, 256);
        c.frame_size = 3000;
        assert!(c.validate().is_err());
        assert_eq!(XskConfig::new(64, 256).max_rx_frame(), 1792);
    }

    #[test]
    fn abi_struct_sizes_match_the_kernel() {
        assert_eq!(std::mem::size_of::<XdpDesc>(), 16);
        assert_eq!(std::mem::size_of::<SockaddrXdp>(), 16);
        assert_eq!(std::mem::size_of::<XdpUmemReg>(), 32);
        assert_eq!(std::mem::size_of::<XdpMmapOffsets>(), 128);
        assert_eq!(std::mem::size_of::<XskKernelStats>(), 48);
    }
}
