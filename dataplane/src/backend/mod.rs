//! Packet I/O shells. A backend owns sockets, rings and threads; it hands every received frame to a
//! [`FrameHandler`] (one per worker) and transmits what the handler writes. The handler owns no I/O,
//! so the socket backend and the AF_XDP backend drive exactly the same engine.

pub mod socket;
#[cfg(feature = "xdp")]
pub mod xdp;

/// The time a handler is given with every frame. Protocol code never reads a clock itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Wall clock, unix seconds: lease times (cltt, expire) are wall-clock in Kea's formats.
    pub unix_secs: u64,
    /// Monotonic nanoseconds since an arbitrary origin: for rate limits and hold timers.
    pub mono_ns: u64,
}

impl Now {
    /// Read the system clocks. Only shells call this.
    pub fn read() -> Now {
        let unix_secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Now {
            unix_secs,
            mono_ns: mono_ns(),
        }
    }
}

/// The monotonic clock in nanoseconds (vDSO: no system call).
pub fn mono_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// A clock in nanoseconds (`CLOCK_MONOTONIC`, `CLOCK_THREAD_CPUTIME_ID`, ...); 0 if the kernel
/// does not know it.
pub fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own; an unknown clock fails with EINVAL
    // and leaves it zero.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Notices when a busy-polling loop lost its core: two consecutive looks at the clock at least
/// [`StallMeter::THRESHOLD_NS`] apart with no sleep of the loop's own between them mean that
/// something else had the CPU (another thread, a kernel thread, an interrupt storm, or the
/// hypervisor running another guest) while requests waited in the ring. A loop iteration handles
/// one batch, far below the threshold, so what is counted is time taken from the loop, not work it
/// did. This is what a latency tail on a shared or virtualised host is made of, counted where it
/// happens: the AF_XDP workers publish it (`worker-stalls`, `worker-stalled-us`), and the
/// benchmark's raw echo and load generator report the same, so a run can tell the lab's stalls
/// from the server's.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StallMeter {
    /// The previous look at the clock; 0 after [`StallMeter::sleeping`].
    last_ns: u64,
    /// Gaps counted.
    pub stalls: u64,
    /// Their total length.
    pub stalled_ns: u64,
}

impl StallMeter {
    /// Half the latency target (1 ms at the 99th percentile for a DORA, two round trips): a gap
    /// this long alone can put a round trip out of it.
    pub const THRESHOLD_NS: u64 = 500_000;

    /// Called with every look at the monotonic clock the loop takes anyway; true when this look
    /// ended a stall.
    #[inline]
    pub fn observe(&mut self, now_ns: u64) -> bool {
        let gap = now_ns.saturating_sub(self.last_ns);
        let stalled = self.last_ns != 0 && gap >= Self::THRESHOLD_NS;
        if stalled {
            self.stalls += 1;
            self.stalled_ns += gap;
        }
        self.last_ns = now_ns;
        stalled
    }

    /// Called before the loop sleeps (poll with a timeout): the time until the next
    /// [`StallMeter::observe`] is the loop's own choice, not a stall.
    #[inline]
    pub fn sleeping(&mut self) {
        self.last_ns = 0;
    }
}

/// The scheduler time slice a worker asks for (see [`request_short_slice`]).
pub const WORKER_SLICE: std::time::Duration = std::time::Duration::from_micros(100);

/// Asks the scheduler for a short time slice for the calling thread: EEVDF's custom slice (Linux
/// 6.12 and later; `sched_attr.sched_runtime` of a normal thread), keeping its policy and nice
/// level. A thread with a shorter slice gets the CPU first when it wakes or becomes eligible, so a
/// worker that shares its core with the journal, the reclaimer or any other thread answers within
/// about `slice` instead of waiting out the other's whole slice (milliseconds; measured: p99 of
/// several ms at half load without it). It does not change the worker's share of the CPU. Real-time
/// threads are left as they are. Errors (an older kernel) are the caller's to log.
pub fn request_short_slice(slice: std::time::Duration) -> std::io::Result<()> {
    /// `struct sched_attr` (uapi/linux/sched/types.h), up to the utilization clamps.
    #[repr(C)]
    #[derive(Default)]
    struct SchedAttr {
        size: u32,
        policy: u32,
        flags: u64,
        nice: i32,
        priority: u32,
        runtime: u64,
        deadline: u64,
        period: u64,
        util_min: u32,
        util_max: u32,
    }
    let mut attr = SchedAttr::default();
    let size = std::mem::size_of::<SchedAttr>() as u32;
    // SAFETY: sched_getattr writes at most `size` bytes into the struct we own; 0 = this thread.
    let r = unsafe {
        libc::syscall(
            libc::SYS_sched_getattr,
            0,
            &mut attr as *mut SchedAttr,
            size,
            0,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if attr.policy != libc::SCHED_OTHER as u32 && attr.policy != libc::SCHED_BATCH as u32 {
        return Ok(());
    }
    attr.size = size;
    attr.flags = 0;
    attr.runtime = slice.as_nanos() as u64;
    // SAFETY: passes the struct we own with its size; 0 = this thread.
    let r = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Where a frame came from: the interface index and, on multi-queue backends, the rx queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxContext {
    pub ifindex: u32,
    pub queue: u32,
    /// The MAC address of the receiving interface: source MAC of replies.
    pub if_mac: [u8; 6],
    /// The primary IPv4 address of the receiving interface (server identifier when no other fits).
    pub if_ipv4: std::net::Ipv4Addr,
}

/// One worker's protocol logic, driven by a backend.
pub trait FrameHandler: Send {
    /// Handle one received Ethernet frame. If a reply is due, write the complete reply frame
    /// (Ethernet, IP and UDP headers with correct checksums) into `tx` and return its length.
    /// Malformed input returns `None` and is counted inside the handler; it never panics.
    fn handle_frame(
        &mut self,
        now: Now,
        ctx: &RxContext,
        rx: &[u8],
        tx: &mut [u8],
    ) -> Option<usize>;

    /// A hint, for each frame of a received batch before the first is handled: `rx` is about to
    /// be passed to [`FrameHandler::handle_frame`], so the handler may start loading the state it
    /// will read (prefetch). It must not change anything or count anything. Default: nothing.
    fn prefetch(&mut self, _ctx: &RxContext, _rx: &[u8]) {}

    /// Periodic work (expiry, statistics flush). Called at least once a second by every backend.
    fn tick(&mut self, now: Now);

    /// Synchronous replication: called right after `handle_frame` returned a reply. `Some(ticket)`
    /// means the reply must not be sent yet: park it in the backend's
    /// [`crate::syncrepl::ParkQueue`] with this ticket. `None`: send it now.
    fn park_ticket(&mut self) -> Option<u64> {
        None
    }

    /// Synchronous replication: what the backend needs to run this handler's park queue, asked
    /// once when the worker starts. `None` (the default): replies are never parked.
    fn sync_link(&mut self) -> Option<crate::syncrepl::SyncLink> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::StallMeter;

    const MS: u64 = 1_000_000;

    #[test]
    fn a_gap_in_a_busy_loop_is_a_stall_and_a_sleep_is_not() {
        let mut m = StallMeter::default();
        // Busy iterations 10 µs apart: nothing.
        for i in 0..100 {
            assert!(!m.observe(1_000 * MS + i * 10_000));
        }
        assert_eq!((m.stalls, m.stalled_ns), (0, 0));
        // The loop lost its core for 4 ms (a scheduler tick), then for exactly the threshold.
        let t = 1_000 * MS + 99 * 10_000;
        assert!(m.observe(t + 4 * MS));
        assert!(m.observe(t + 4 * MS + StallMeter::THRESHOLD_NS));
        assert_eq!(m.stalls, 2);
        assert_eq!(m.stalled_ns, 4 * MS + StallMeter::THRESHOLD_NS);
        // Just under the threshold: not counted.
        let t = t + 4 * MS + StallMeter::THRESHOLD_NS;
        m.observe(t + StallMeter::THRESHOLD_NS - 1);
        assert_eq!(m.stalls, 2);
        // A sleep of the loop's own, however long, is not a stall; counting resumes after it.
        m.sleeping();
        m.observe(t + 100 * MS);
        assert_eq!(m.stalls, 2);
        m.observe(t + 100 * MS + 2 * MS);
        assert_eq!(
            (m.stalls, m.stalled_ns),
            (3, 6 * MS + StallMeter::THRESHOLD_NS)
        );
    }

    #[test]
    fn the_first_look_and_a_clock_going_nowhere_count_nothing() {
        let mut m = StallMeter::default();
        m.observe(5_000 * MS);
        m.observe(5_000 * MS);
        m.observe(4_000 * MS); // never for CLOCK_MONOTONIC; saturates rather than wraps
        assert_eq!((m.stalls, m.stalled_ns), (0, 0));
    }
}
