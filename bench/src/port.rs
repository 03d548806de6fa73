//! Frame I/O for the load generator and the echo responder: AF_XDP (the dataplane's own
//! [`XskSocket`] and XDP program, steering the reply port) or, where XDP is unavailable, an
//! AF_PACKET socket driven with sendmmsg/recvmmsg and a kernel BPF filter.
//!
//! Both transmit in batches: frames are written straight into their buffers (UMEM frames or a
//! preallocated arena), then one `flush` hands the batch to the kernel with one system call.

use anyhow::{bail, Context};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use xdhcp_dataplane::backend::xdp::loader::{AttachMode, SteerPorts, XdpProgram};
use xdhcp_dataplane::backend::xdp::sys;
use xdhcp_dataplane::backend::xdp::xsk::{XdpDesc, XskConfig, XskSocket};

/// Batched frame I/O.
pub trait Port {
    /// Queues one frame, written by `write` (which returns its length; 0 cancels). False when
    /// no buffer or ring slot is free: the caller flushes and retries later.
    fn send(&mut self, write: &mut dyn FnMut(&mut [u8]) -> usize) -> bool;
    /// Hands every queued frame to the kernel.
    fn flush(&mut self);
    /// Receives up to `max` frames, calling `on_frame` for each. Returns how many.
    fn recv(&mut self, max: usize, on_frame: &mut dyn FnMut(&[u8])) -> usize;
    /// "xdp (native, copy)" or "packet".
    fn describe(&self) -> String;
    /// Nothing to do: block until a frame arrives or `timeout_ms` passes. Sleeping instead of
    /// spinning matters on veth: the kernel work of delivering frames (softirq, ksoftirqd) runs
    /// on this core too.
    fn wait(&mut self, timeout_ms: i32) {
        let _ = timeout_ms;
        std::thread::yield_now();
    }
    /// As [`Port::wait`], with a timeout in nanoseconds: an open-loop generator sleeps until its
    /// next exchange is due (or a reply arrives) instead of spinning or yielding, so on a shared
    /// core it leaves the CPU idle between sends. With the timer slack at 1 ns
    /// ([`fine_timer_slack`]) the wakeup is a few microseconds late at most.
    fn wait_ns(&mut self, timeout_ns: u64) {
        self.wait(timeout_ns.div_ceil(1_000_000).min(i32::MAX as u64) as i32);
    }
}

/// What the generator loop does when an iteration found nothing to receive or send: with an
/// exchange due at `next_due` (open loop), sleep until then, but at least [`MIN_SLEEP_NS`] (a
/// reply ends the sleep earlier), so at high rates the open loop sends micro-bursts of
/// rate × 20 µs exchanges rather than spinning between sends; with nothing due (closed loop with
/// a full window, or draining at the end), sleep until a reply arrives, 1 ms at most.
///
/// Why not spin or `sched_yield`: on a core shared with other work, a yield hands the CPU to
/// another task for a whole scheduler slice (milliseconds with HZ=250 and no preemption), which
/// showed up as millisecond latencies and RX ring overflows at a few percent load; and a
/// real-time generator that never sleeps is throttled by the kernel's fair server (50 ms of every
/// second for other tasks), which blew up the p99 of the half-rate row.
pub fn idle_wait<P: Port + ?Sized>(port: &mut P, now: u64, next_due: Option<u64>) {
    match next_due {
        Some(due) => port.wait_ns(due.max(now + MIN_SLEEP_NS) - now),
        None => port.wait_ns(1_000_000),
    }
}

/// The shortest open-loop sleep: below it a sleep costs about as much as it saves.
pub const MIN_SLEEP_NS: u64 = 20_000;

/// When the open loop's next exchange is due: the one after `launched`, at `rate` per second
/// from `t0`.
pub fn next_due_ns(t0: u64, launched: u64, rate: u64) -> u64 {
    if rate == 0 {
        return u64::MAX;
    }
    t0 + ((u128::from(launched) + 1) * 1_000_000_000 / u128::from(rate)) as u64
}

/// Sets this thread's timer slack to 1 ns (default 50 µs for normal tasks): the open loop's
/// short sleeps then end when asked. Best effort.
pub fn fine_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK takes one integer argument and only affects this thread.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0) };
}

/// Sleeps in `ppoll` on `fds` (POLLIN) for at most `timeout_ns`.
fn ppoll_in(fds: &mut [libc::pollfd], timeout_ns: u64) {
    for p in fds.iter_mut() {
        p.events = libc::POLLIN;
        p.revents = 0;
    }
    let ts = libc::timespec {
        tv_sec: (timeout_ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (timeout_ns % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: `fds` is a valid array for the call; `ts` lives across it; no signal mask.
    unsafe {
        libc::ppoll(
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            &ts,
            std::ptr::null(),
        )
    };
}

/// AF_XDP on every rx queue of one interface, with the xdhcp XDP program steering UDP
/// `port` to the sockets. Frames are transmitted round-robin over the queues' sockets, one batch
/// per socket, so in native mode the peer sees traffic on all its queues.
pub struct XdpPort {
    socks: Vec<XskSocket>,
    descs: Vec<XdpDesc>,
    tx_sock: usize,
    queued: usize,
    batch: usize,
    mode: String,
    /// One entry per socket, for `wait_ns` (allocated once).
    pollfds: Vec<libc::pollfd>,
    // Declared last: sockets close before the program is detached.
    _prog: XdpProgram,
}

impl std::fmt::Debug for XdpPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdpPort")
            .field("queues", &self.socks.len())
            .field("mode", &self.mode)
            .finish()
    }
}

/// Options of an [`XdpPort`].
#[derive(Debug, Clone, Copy)]
pub struct XdpPortConfig {
    pub ring_size: u32,
    pub frame_count: u32,
    pub batch: usize,
    pub attach: AttachMode,
}

impl Default for XdpPortConfig {
    fn default() -> Self {
        XdpPortConfig {
            ring_size: 2048,
            frame_count: 8192,
            batch: 64,
            attach: AttachMode::Auto,
        }
    }
}

impl XdpPort {
    pub fn open(iface: &str, port: u16, cfg: &XdpPortConfig) -> anyhow::Result<XdpPort> {
        // v6 is steered to the socket too but never used: pick a port nothing sends to.
        let ports = SteerPorts {
            v4: port,
            v6: if port == 67 { 547 } else { 546 },
        };
        XdpPort::open_steering(iface, ports, cfg)
    }

    /// Like [`XdpPort::open`] with both steered ports given (the DHCPv6 generator receives on
    /// UDP 546 over IPv6).
    pub fn open_steering(
        iface: &str,
        ports: SteerPorts,
        cfg: &XdpPortConfig,
    ) -> anyhow::Result<XdpPort> {
        let info = sys::interface_info(iface)
            .with_context(|| format!("reading interface {iface}"))?
            .with_context(|| format!("interface {iface} does not exist"))?;
        if let Err(e) = sys::raise_memlock() {
            tracing::warn!(error = %e, "could not raise RLIMIT_MEMLOCK");
        }
        let mut prog =
            XdpProgram::load(info.rx_queues, ports).context("loading the XDP program")?;
        let xcfg = XskConfig::new(cfg.ring_size, cfg.frame_count);
        let mut socks = Vec::new();
        for q in 0..info.rx_queues {
            let s = XskSocket::new(info.ifindex, q, &xcfg)
                .with_context(|| format!("AF_XDP socket on {iface} queue {q}"))?;
            prog.register_socket(q, s.as_raw_fd())
                .context("registering the AF_XDP socket")?;
            socks.push(s);
        }
        let attached = prog
            .attach(iface, info.ifindex, cfg.attach)
            .context("attaching the XDP program")?;
        let zc = socks.iter().any(|s| s.is_zero_copy());
        let mode = format!(
            "xdp ({}, {}, {} queue{})",
            attached,
            if zc { "zero-copy" } else { "copy" },
            socks.len(),
            if socks.len() == 1 { "" } else { "s" }
        );
        let pollfds = socks
            .iter()
            .map(|s| libc::pollfd {
                fd: s.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        Ok(XdpPort {
            pollfds,
            socks,
            descs: vec![XdpDesc::default(); cfg.batch],
            tx_sock: 0,
            queued: 0,
            batch: cfg.batch,
            mode,
            _prog: prog,
        })
    }

    /// The sockets, for the echo responder's in-place replies.
    pub fn sockets(&mut self) -> &mut [XskSocket] {
        &mut self.socks
    }

    /// Kernel drop counters summed over the queues (rx ring full, fill ring empty).
    pub fn kernel_drops(&self) -> (u64, u64) {
        let mut full = 0;
        let mut empty = 0;
        for s in &self.socks {
            if let Ok(k) = s.kernel_stats() {
                full += k.rx_ring_full + k.rx_dropped;
                empty += k.rx_fill_ring_empty_descs;
            }
        }
        (full, empty)
    }
}

impl Port for XdpPort {
    fn send(&mut self, write: &mut dyn FnMut(&mut [u8]) -> usize) -> bool {
        if self.queued >= self.batch {
            // Spread batches over the queues (all of them carry the reply port's traffic).
            self.flush();
        }
        let s = &mut self.socks[self.tx_sock];
        let Some(f) = s.alloc_frame() else {
            return false;
        };
        let len = write(s.frame_mut(f));
        if len == 0 {
            s.free_frame(f);
            return true;
        }
        match s.tx_push(f, len as u32) {
            Ok(()) => {
                self.queued += 1;
                true
            }
            Err(f) => {
                s.free_frame(f);
                false
            }
        }
    }

    fn flush(&mut self) {
        if self.queued > 0 {
            self.socks[self.tx_sock].tx_flush();
            self.queued = 0;
            self.tx_sock = (self.tx_sock + 1) % self.socks.len();
        } else {
            // Still return completed frames to the pool.
            for s in &mut self.socks {
                s.reclaim();
            }
        }
    }

    fn recv(&mut self, max: usize, on_frame: &mut dyn FnMut(&[u8])) -> usize {
        let mut total = 0;
        let max = max.min(self.descs.len());
        for s in &mut self.socks {
            let n = s.recv(&mut self.descs[..max]);
            for d in &self.descs[..n] {
                s.prefetch_rx(d);
            }
            for d in &self.descs[..n] {
                on_frame(s.rx_frame(d));
                s.release_rx(d);
            }
            s.refill();
            total += n;
        }
        total
    }

    fn describe(&self) -> String {
        self.mode.clone()
    }

    fn wait(&mut self, timeout_ms: i32) {
        self.wait_ns(u64::try_from(timeout_ms).unwrap_or(0) * 1_000_000);
    }

    fn wait_ns(&mut self, timeout_ns: u64) {
        // Replies may already be waiting in a ring (the poll below would return at once too,
        // but this saves the system call).
        if self.socks.iter_mut().any(|s| s.rx_pending()) {
            return;
        }
        ppoll_in(&mut self.pollfds, timeout_ns);
    }
}

const PACKET_QDISC_BYPASS: libc::c_int = 20;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
const FRAME_BUF: usize = 2048;

/// AF_PACKET on one interface: sendmmsg of a batch from a preallocated arena, recvmmsg into
/// another, with a classic BPF filter so only UDP to the reply port is copied up. A bound UDP
/// socket on the reply port keeps the kernel from answering the replies with ICMP port
/// unreachable (it only fills its small buffer and drops).
pub struct PacketPort {
    fd: OwnedFd,
    _sink: std::net::UdpSocket,
    tx_buf: Vec<u8>,
    tx_len: Vec<usize>,
    rx_buf: Vec<u8>,
    rx_len: Vec<usize>,
    batch: usize,
    ifindex: u32,
}

impl std::fmt::Debug for PacketPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacketPort")
            .field("fd", &self.fd.as_raw_fd())
            .finish()
    }
}

/// `udp dst port P` for untagged IPv4 (tcpdump -dd), unfragmented.
fn udp_port_filter(port: u16) -> [libc::sock_filter; 11] {
    let f = |code: u16, jt: u8, jf: u8, k: u32| libc::sock_filter { code, jt, jf, k };
    // Jump offsets count from the next instruction; 10 is the drop.
    [
        f(0x28, 0, 0, 12),              // 0: ldh [12]
        f(0x15, 0, 8, 0x0800),          // 1: jeq IPv4 else drop
        f(0x30, 0, 0, 23),              // 2: ldb [23]
        f(0x15, 0, 6, 17),              // 3: jeq UDP else drop
        f(0x28, 0, 0, 20),              // 4: ldh [20]
        f(0x45, 4, 0, 0x1fff),          // 5: jset fragment offset → drop
        f(0xb1, 0, 0, 14),              // 6: ldxb 4*([14]&0xf)
        f(0x48, 0, 0, 16),              // 7: ldh [x+16]  (UDP dst port)
        f(0x15, 0, 1, u32::from(port)), // 8: jeq port else drop
        f(0x06, 0, 0, 0x40000),         // 9: accept
        f(0x06, 0, 0, 0),               // 10: drop
    ]
}

/// `ip6 and udp dst port P` for untagged IPv6 without extension headers (servers send none).
pub(crate) fn udp6_port_filter(port: u16) -> [libc::sock_filter; 8] {
    let f = |code: u16, jt: u8, jf: u8, k: u32| libc::sock_filter { code, jt, jf, k };
    [
        f(0x28, 0, 0, 12),              // 0: ldh [12]
        f(0x15, 0, 5, 0x86dd),          // 1: jeq IPv6 else drop
        f(0x30, 0, 0, 20),              // 2: ldb [20] (next header)
        f(0x15, 0, 3, 17),              // 3: jeq UDP else drop
        f(0x28, 0, 0, 56),              // 4: ldh [56] (UDP dst port)
        f(0x15, 0, 1, u32::from(port)), // 5: jeq port else drop
        f(0x06, 0, 0, 0x40000),         // 6: accept
        f(0x06, 0, 0, 0),               // 7: drop
    ]
}

impl PacketPort {
    pub fn open(
        iface: &str,
        port: u16,
        bind_ip: std::net::Ipv4Addr,
        batch: usize,
    ) -> anyhow::Result<PacketPort> {
        let sink = std::net::UdpSocket::bind((bind_ip, port))
            .or_else(|_| std::net::UdpSocket::bind(("0.0.0.0", port)))
            .with_context(|| {
                format!("binding the UDP sink on port {port} (is something else listening there?)")
            })?;
        PacketPort::open_filtered(
            iface,
            libc::ETH_P_IP as u16,
            &mut udp_port_filter(port),
            sink,
            batch,
        )
    }

    /// The DHCPv6 form: IPv6 frames to UDP `port`, with the sink bound to [::]:port.
    pub fn open_v6(iface: &str, port: u16, batch: usize) -> anyhow::Result<PacketPort> {
        let sink = std::net::UdpSocket::bind((std::net::Ipv6Addr::UNSPECIFIED, port))
            .with_context(|| {
                format!("binding the UDP sink on [::]:{port} (is something else listening there?)")
            })?;
        PacketPort::open_filtered(
            iface,
            libc::ETH_P_IPV6 as u16,
            &mut udp6_port_filter(port),
            sink,
            batch,
        )
    }

    fn open_filtered(
        iface: &str,
        ethertype: u16,
        prog_insns: &mut [libc::sock_filter],
        sink: std::net::UdpSocket,
        batch: usize,
    ) -> anyhow::Result<PacketPort> {
        let ifindex =
            sys::ifindex(iface).with_context(|| format!("interface {iface} does not exist"))?;
        let proto = ethertype.to_be();
        // SAFETY: plain socket(2).
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                i32::from(proto),
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error())
                .context("AF_PACKET socket (needs root or CAP_NET_RAW)");
        }
        // SAFETY: fresh fd we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let prog = libc::sock_fprog {
            len: prog_insns.len() as u16,
            filter: prog_insns.as_mut_ptr(),
        };
        setsockopt(raw, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &prog)
            .context("attaching the BPF filter")?;
        let one: libc::c_int = 1;
        // Best effort: both only make the socket cheaper.
        let _ = setsockopt(raw, libc::SOL_PACKET, PACKET_QDISC_BYPASS, &one);
        let _ = setsockopt(raw, libc::SOL_PACKET, PACKET_IGNORE_OUTGOING, &one);
        let big: libc::c_int = 8 << 20;
        let _ = setsockopt(raw, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &big);
        let _ = setsockopt(raw, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, &big);
        // SAFETY: sockaddr_ll is plain data; zero is a valid start.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: passes a live sockaddr_ll and its size.
        let r = unsafe {
            libc::bind(
                raw,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error())
                .with_context(|| format!("binding AF_PACKET to {iface}"));
        }
        Ok(PacketPort {
            fd,
            _sink: sink,
            tx_buf: vec![0; batch * FRAME_BUF],
            tx_len: Vec::with_capacity(batch),
            rx_buf: vec![0; batch * FRAME_BUF],
            rx_len: vec![0; batch],
            batch,
            ifindex,
        })
    }
}

fn setsockopt<T>(fd: libc::c_int, level: libc::c_int, name: libc::c_int, v: &T) -> io::Result<()> {
    // SAFETY: passes a pointer to a live T and its size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (v as *const T).cast(),
            std::mem::size_of::<T>() as u32,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl Port for PacketPort {
    fn send(&mut self, write: &mut dyn FnMut(&mut [u8]) -> usize) -> bool {
        if self.tx_len.len() >= self.batch {
            self.flush();
            if self.tx_len.len() >= self.batch {
                return false;
            }
        }
        let i = self.tx_len.len();
        let len = write(&mut self.tx_buf[i * FRAME_BUF..(i + 1) * FRAME_BUF]);
        if len > 0 {
            self.tx_len.push(len);
        }
        true
    }

    fn flush(&mut self) {
        let n = self.tx_len.len();
        if n == 0 {
            return;
        }
        // SAFETY (for the zeroed values): iovec/mmsghdr/sockaddr_ll are plain data.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_ifindex = self.ifindex as i32;
        sll.sll_halen = 6;
        let mut iov: [libc::iovec; 256] = unsafe { std::mem::zeroed() };
        let mut msgs: [libc::mmsghdr; 256] = unsafe { std::mem::zeroed() };
        let n = n.min(256);
        for i in 0..n {
            iov[i] = libc::iovec {
                iov_base: self.tx_buf[i * FRAME_BUF..].as_mut_ptr().cast(),
                iov_len: self.tx_len[i],
            };
            msgs[i].msg_hdr.msg_iov = &mut iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
            msgs[i].msg_hdr.msg_name = (&mut sll as *mut libc::sockaddr_ll).cast();
            msgs[i].msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as u32;
        }
        let mut off = 0;
        // Bounded: each round either sends something or gives up on the rest of the batch.
        for _ in 0..8 {
            if off >= n {
                break;
            }
            // SAFETY: msgs[off..n] point at live buffers in self.tx_buf and at `sll`.
            let r = unsafe {
                libc::sendmmsg(
                    self.fd.as_raw_fd(),
                    msgs[off..].as_mut_ptr(),
                    (n - off) as u32,
                    0,
                )
            };
            if r <= 0 {
                break;
            }
            off += r as usize;
        }
        self.tx_len.clear();
    }

    fn recv(&mut self, max: usize, on_frame: &mut dyn FnMut(&[u8])) -> usize {
        let max = max.min(self.batch).min(256);
        let mut iov: [libc::iovec; 256] = unsafe { std::mem::zeroed() };
        // SAFETY: plain data.
        let mut msgs: [libc::mmsghdr; 256] = unsafe { std::mem::zeroed() };
        for i in 0..max {
            iov[i] = libc::iovec {
                iov_base: self.rx_buf[i * FRAME_BUF..].as_mut_ptr().cast(),
                iov_len: FRAME_BUF,
            };
            msgs[i].msg_hdr.msg_iov = &mut iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: msgs point at live buffers in self.rx_buf.
        let r = unsafe {
            libc::recvmmsg(
                self.fd.as_raw_fd(),
                msgs.as_mut_ptr(),
                max as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if r <= 0 {
            return 0;
        }
        let n = r as usize;
        for (i, m) in msgs.iter().enumerate().take(n) {
            self.rx_len[i] = m.msg_len as usize;
        }
        for i in 0..n {
            let len = self.rx_len[i].min(FRAME_BUF);
            on_frame(&self.rx_buf[i * FRAME_BUF..i * FRAME_BUF + len]);
        }
        n
    }

    fn describe(&self) -> String {
        "packet (AF_PACKET, sendmmsg/recvmmsg)".to_string()
    }

    fn wait(&mut self, timeout_ms: i32) {
        self.wait_ns(u64::try_from(timeout_ms).unwrap_or(0) * 1_000_000);
    }

    fn wait_ns(&mut self, timeout_ns: u64) {
        let mut pfd = [libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        ppoll_in(&mut pfd, timeout_ns);
    }
}

/// The MAC address of `iface` in this namespace.
pub fn iface_mac(iface: &str) -> anyhow::Result<[u8; 6]> {
    let info =
        sys::interface_info(iface)?.with_context(|| format!("interface {iface} does not exist"))?;
    Ok(info.mac)
}

/// The first IPv4 address of `iface`, if any.
pub fn iface_ipv4(iface: &str) -> anyhow::Result<std::net::Ipv4Addr> {
    let info =
        sys::interface_info(iface)?.with_context(|| format!("interface {iface} does not exist"))?;
    Ok(info.ipv4)
}

/// Finds the MAC address of `ip` on `iface` by letting the kernel resolve it: a UDP datagram to
/// the discard port triggers ARP, then the neighbour table (/proc/net/arp) is read.
pub fn resolve_mac(iface: &str, ip: std::net::Ipv4Addr) -> anyhow::Result<[u8; 6]> {
    let sock = std::net::UdpSocket::bind("0.0.0.0:0")?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while std::time::Instant::now() < deadline {
        let _ = sock.send_to(b"xdhcp-loadgen arp probe", (ip, 9));
        std::thread::sleep(std::time::Duration::from_millis(50));
        let arp = std::fs::read_to_string("/proc/net/arp").unwrap_or_default();
        for line in arp.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() >= 6 && f[0] == ip.to_string() && f[5] == iface && f[2] != "0x0" {
                return parse_mac(f[3]);
            }
        }
    }
    bail!("could not resolve the MAC address of {ip} on {iface} (no ARP answer within 3 s); pass --server-mac")
}

pub fn parse_mac(s: &str) -> anyhow::Result<[u8; 6]> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        bail!("bad MAC address {s:?} (want aa:bb:cc:dd:ee:ff)");
    }
    let mut m = [0u8; 6];
    for (o, p) in m.iter_mut().zip(parts) {
        *o = u8::from_str_radix(p, 16).with_context(|| format!("bad MAC address {s:?}"))?;
    }
    Ok(m)
}

/// Pins the calling thread to `cpu`.
pub fn pin(cpu: usize) -> io::Result<()> {
    sys::pin_current_thread(cpu)
}

/// Monotonic nanoseconds (vDSO, no system call): the dataplane's clock, so both ends read one.
pub use xdhcp_dataplane::backend::mono_ns;

/// CPU time of the calling thread, nanoseconds.
pub fn thread_cpu_ns() -> u64 {
    xdhcp_dataplane::backend::clock_ns(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// A [`Port`] that loops frames through a server in memory, for tests of the generator loops:
/// what is sent is handed to `server` at `flush`, and its answers are received in order. At most
/// `cap` frames are queued between flushes (back-pressure like a full TX ring).
#[cfg(test)]
pub(crate) struct MemoryPort<'s> {
    out: std::collections::VecDeque<Vec<u8>>,
    queued: Vec<Vec<u8>>,
    server: &'s mut dyn FnMut(&[u8]) -> Option<Vec<u8>>,
    cap: usize,
}

#[cfg(test)]
impl<'s> MemoryPort<'s> {
    pub(crate) fn new(server: &'s mut dyn FnMut(&[u8]) -> Option<Vec<u8>>, cap: usize) -> Self {
        MemoryPort {
            out: Default::default(),
            queued: Vec::new(),
            server,
            cap,
        }
    }
}

#[cfg(test)]
impl Port for MemoryPort<'_> {
    fn send(&mut self, write: &mut dyn FnMut(&mut [u8]) -> usize) -> bool {
        if self.queued.len() >= self.cap {
            return false;
        }
        let mut b = vec![0u8; 2048];
        let n = write(&mut b);
        b.truncate(n);
        self.queued.push(b);
        true
    }
    fn flush(&mut self) {
        for f in self.queued.drain(..) {
            if let Some(r) = (self.server)(&f) {
                self.out.push_back(r);
            }
        }
    }
    fn recv(&mut self, max: usize, on: &mut dyn FnMut(&[u8])) -> usize {
        let mut n = 0;
        while n < max {
            let Some(f) = self.out.pop_front() else { break };
            on(&f);
            n += 1;
        }
        n
    }
    fn describe(&self) -> String {
        "memory".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_udp_port_filter_is_accepted_by_the_kernel() {
        // SAFETY: plain socket(2); closed below through OwnedFd.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        assert!(
            raw >= 0,
            "AF_PACKET socket refused ({}): this test needs root or CAP_NET_RAW",
            io::Error::last_os_error()
        );
        // SAFETY: fresh fd we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut v4 = udp_port_filter(67);
        let mut v6 = udp6_port_filter(546);
        for insns in [&mut v4[..], &mut v6[..]] {
            // Every jump must land inside the program (the kernel checks it too; EINVAL otherwise).
            for (i, ins) in insns.iter().enumerate() {
                if ins.code & 0x07 == 0x05 {
                    assert!(
                        i + 1 + usize::from(ins.jt) < insns.len()
                            && i + 1 + usize::from(ins.jf) < insns.len()
                    );
                }
            }
            let prog = libc::sock_fprog {
                len: insns.len() as u16,
                filter: insns.as_mut_ptr(),
            };
            setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ATTACH_FILTER,
                &prog,
            )
            .expect("kernel accepts the filter");
        }
    }

    #[test]
    fn macs_parse_and_bad_ones_are_refused() {
        assert_eq!(
            parse_mac("02:00:0a:FF:00:01").unwrap(),
            [2, 0, 10, 255, 0, 1]
        );
        assert!(parse_mac("02:00:0a:ff:00").is_err());
        assert!(parse_mac("02:00:0a:ff:00:zz").is_err());
    }
}
