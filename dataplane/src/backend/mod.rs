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
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes into the timespec we own; CLOCK_MONOTONIC always exists on Linux.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        Now {
            unix_secs,
            mono_ns: ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64,
        }
    }
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
