//! The portable backend: one `AF_PACKET` socket per interface per worker, joined in a
//! `PACKET_FANOUT_LB` group so workers share the load, with a classic BPF filter that lets
//! only UDP to ports 67/547 through (what Kea's `dhcp-socket-type: raw` does). Frames are read
//! with `recvmmsg` and replies written with `sendmmsg` in batches; because the engine builds whole
//! Ethernet frames, a reply reaches a client at its MAC address before it has an IP address,
//! and relayed traffic (giaddr) works the same way. A UDP socket is bound to each port on each
//! interface only so the kernel does not answer DHCP with ICMP port-unreachable; a drop-all filter
//! keeps it from queueing anything.

use super::{FrameHandler, Now, RxContext};
use std::ffi::CString;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Frames read or written per system call.
pub const BATCH: usize = 64;
const FRAME_BUF: usize = 2048;

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("interface '{0}' does not exist (check interfaces-config.interfaces)")]
    UnknownInterface(String),
    #[error("{what} on interface '{iface}': {source} (xdhcp needs root or CAP_NET_RAW)")]
    Sys {
        what: &'static str,
        iface: String,
        source: io::Error,
    },
}

/// An interface as the backend sees it.
#[derive(Debug, Clone)]
pub struct Interface {
    pub name: String,
    pub ifindex: u32,
    pub mac: [u8; 6],
    pub ipv4: Ipv4Addr,
}

/// Look up an interface's index, MAC and first IPv4 address.
pub fn interface_info(name: &str) -> Result<Interface, SocketError> {
    let cname = CString::new(name).map_err(|_| SocketError::UnknownInterface(name.to_string()))?;
    // SAFETY: if_nametoindex reads a NUL-terminated string we own.
    let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    if ifindex == 0 {
        return Err(SocketError::UnknownInterface(name.to_string()));
    }
    let sys = |what, source| SocketError::Sys {
        what,
        iface: name.to_string(),
        source,
    };
    // SAFETY: plain socket creation; the fd is owned immediately.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(sys("socket", io::Error::last_os_error()));
    }
    // SAFETY: fd is a fresh valid descriptor.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain old data; zeroed is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr
        .ifr_name
        .iter_mut()
        .zip(name.as_bytes().iter().take(libc::IFNAMSIZ - 1))
    {
        *d = *s as libc::c_char;
    }
    // SAFETY: SIOCGIFHWADDR fills ifr_hwaddr in the ifreq we pass.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFHWADDR, &mut ifr) } < 0 {
        return Err(sys("SIOCGIFHWADDR", io::Error::last_os_error()));
    }
    let mut mac = [0u8; 6];
    // SAFETY: the union member written by SIOCGIFHWADDR.
    let hw = unsafe { ifr.ifr_ifru.ifru_hwaddr };
    for (m, b) in mac.iter_mut().zip(hw.sa_data.iter()) {
        *m = *b as u8;
    }
    // SAFETY: as above, SIOCGIFADDR fills ifru_addr; an interface without IPv4 fails, which is fine.
    let ipv4 = if unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFADDR, &mut ifr) } == 0 {
        // SAFETY: the kernel wrote a sockaddr_in into the union.
        let sin: libc::sockaddr_in =
            unsafe { std::ptr::read(std::ptr::addr_of!(ifr.ifr_ifru.ifru_addr).cast()) };
        Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr))
    } else {
        Ipv4Addr::UNSPECIFIED
    };
    Ok(Interface {
        name: name.to_string(),
        ifindex,
        mac,
        ipv4,
    })
}

fn setsockopt<T>(fd: i32, level: i32, name: i32, v: &T) -> io::Result<()> {
    // SAFETY: v points to a live T of the size we pass.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (v as *const T).cast(),
            std::mem::size_of::<T>() as u32,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `udp dst port 67 or udp dst port 547`, with or without one VLAN tag (from `tcpdump -dd`).
const DHCP_FILTER: [libc::sock_filter; 34] = {
    const fn f(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
        libc::sock_filter { code, jt, jf, k }
    }
    [
        f(0x28, 0, 0, 0x0c),
        f(0x15, 0, 4, 0x86dd),
        f(0x30, 0, 0, 0x14),
        f(0x15, 0, 29, 0x11),
        f(0x28, 0, 0, 0x38),
        f(0x15, 26, 25, 0x43),
        f(0x15, 0, 7, 0x0800),
        f(0x30, 0, 0, 0x17),
        f(0x15, 0, 24, 0x11),
        f(0x28, 0, 0, 0x14),
        f(0x45, 22, 0, 0x1fff),
        f(0xb1, 0, 0, 0x0e),
        f(0x48, 0, 0, 0x10),
        f(0x15, 18, 17, 0x43),
        f(0x15, 2, 0, 0x8100),
        f(0x15, 1, 0, 0x88a8),
        f(0x15, 0, 16, 0x9100),
        f(0x28, 0, 0, 0x10),
        f(0x15, 0, 4, 0x86dd),
        f(0x30, 0, 0, 0x18),
        f(0x15, 0, 12, 0x11),
        f(0x28, 0, 0, 0x3c),
        f(0x15, 9, 8, 0x43),
        f(0x15, 0, 9, 0x0800),
        f(0x30, 0, 0, 0x1b),
        f(0x15, 0, 7, 0x11),
        f(0x28, 0, 0, 0x18),
        f(0x45, 5, 0, 0x1fff),
        f(0xb1, 0, 0, 0x12),
        f(0x48, 0, 0, 0x14),
        f(0x15, 1, 0, 0x43),
        f(0x15, 0, 1, 0x223),
        f(0x06, 0, 0, 0x40000),
        f(0x06, 0, 0, 0),
    ]
};

fn attach_filter(fd: i32, prog: &[libc::sock_filter]) -> io::Result<()> {
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_ptr() as *mut _,
    };
    setsockopt(fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &fprog)
}

/// A packet socket on one interface, in the fanout group `group`.
fn open_packet_socket(iface: &Interface, group: u16) -> Result<OwnedFd, SocketError> {
    let sys = |what, source| SocketError::Sys {
        what,
        iface: iface.name.clone(),
        source,
    };
    let proto = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain socket creation.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            i32::from(proto),
        )
    };
    if fd < 0 {
        return Err(sys("socket(AF_PACKET)", io::Error::last_os_error()));
    }
    // SAFETY: fresh descriptor.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // Filter before bind so no unfiltered frame is ever queued.
    attach_filter(fd, &DHCP_FILTER).map_err(|e| sys("SO_ATTACH_FILTER", e))?;
    let rcvbuf: i32 = 4 << 20;
    let _ = setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, &rcvbuf);
    let _ = setsockopt(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, &rcvbuf);
    // SAFETY: sockaddr_ll is plain data.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = iface.ifindex as i32;
    // SAFETY: bind with a sockaddr_ll of the right size.
    let r = unsafe {
        libc::bind(
            fd,
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if r < 0 {
        return Err(sys("bind(AF_PACKET)", io::Error::last_os_error()));
    }
    let fanout: i32 = i32::from(group) | (libc::PACKET_FANOUT_LB as i32) << 16;
    setsockopt(fd, libc::SOL_PACKET, libc::PACKET_FANOUT, &fanout)
        .map_err(|e| sys("PACKET_FANOUT", e))?;
    Ok(owned)
}

/// A UDP socket on `port` bound to the interface that never receives anything: its only job is to
/// stop the kernel from answering DHCP traffic with ICMP port-unreachable.
fn open_port_guard(iface: &Interface, port: u16, v6: bool) -> Result<OwnedFd, SocketError> {
    let sys = |what, source| SocketError::Sys {
        what,
        iface: iface.name.clone(),
        source,
    };
    let domain = if v6 { libc::AF_INET6 } else { libc::AF_INET };
    // SAFETY: plain socket creation.
    let fd = unsafe { libc::socket(domain, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(sys("socket(UDP)", io::Error::last_os_error()));
    }
    // SAFETY: fresh descriptor.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let drop_all = [libc::sock_filter {
        code: 0x06,
        jt: 0,
        jf: 0,
        k: 0,
    }];
    attach_filter(fd, &drop_all).map_err(|e| sys("SO_ATTACH_FILTER", e))?;
    let one: i32 = 1;
    let _ = setsockopt(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, &one);
    let _ = setsockopt(fd, libc::SOL_SOCKET, libc::SO_REUSEPORT, &one);
    let name = CString::new(iface.name.as_str())
        .map_err(|_| SocketError::UnknownInterface(iface.name.clone()))?;
    // SAFETY: SO_BINDTODEVICE takes the interface name bytes.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            name.as_ptr().cast(),
            name.as_bytes().len() as u32,
        )
    };
    if r < 0 {
        return Err(sys("SO_BINDTODEVICE", io::Error::last_os_error()));
    }
    let r = if v6 {
        // SAFETY: plain data.
        let mut sa: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
        sa.sin6_family = libc::AF_INET6 as u16;
        sa.sin6_port = port.to_be();
        // SAFETY: bind with a sockaddr_in6.
        unsafe {
            libc::bind(
                fd,
                (&sa as *const libc::sockaddr_in6).cast(),
                std::mem::size_of::<libc::sockaddr_in6>() as u32,
            )
        }
    } else {
        // SAFETY: plain data.
        let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        sa.sin_family = libc::AF_INET as u16;
        sa.sin_port = port.to_be();
        // SAFETY: bind with a sockaddr_in.
        unsafe {
            libc::bind(
                fd,
                (&sa as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as u32,
            )
        }
    };
    if r < 0 {
        return Err(sys("bind(UDP guard)", io::Error::last_os_error()));
    }
    if v6 {
        // Join All_DHCP_Relay_Agents_and_Servers (ff02::1:2) so the interface accepts the multicast
        // MAC 33:33:00:01:00:02 that DHCPv6 clients send to; the packet socket then sees those
        // frames on NICs that filter multicast. The drop-all filter still keeps this socket empty.
        let mreq = libc::ipv6_mreq {
            ipv6mr_multiaddr: libc::in6_addr {
                s6_addr: [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2],
            },
            ipv6mr_interface: iface.ifindex,
        };
        setsockopt(fd, libc::IPPROTO_IPV6, libc::IPV6_ADD_MEMBERSHIP, &mreq)
            .map_err(|e| sys("IPV6_ADD_MEMBERSHIP ff02::1:2", e))?;
    }
    Ok(owned)
}

pub struct SocketBackendConfig {
    pub interfaces: Vec<String>,
    pub workers: usize,
    /// Also guard UDP 547 (DHCPv6 served).
    pub v6: bool,
}

/// A running socket backend. Dropping it (or `stop`) ends the workers.
pub struct SocketBackend {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    _guards: Vec<OwnedFd>,
    pub interfaces: Vec<Interface>,
}

struct Batch {
    bufs: Vec<[u8; FRAME_BUF]>,
    lens: Vec<usize>,
    addrs: Vec<libc::sockaddr_ll>,
}

impl SocketBackend {
    pub fn start(
        cfg: &SocketBackendConfig,
        make_handler: &dyn Fn(usize) -> Box<dyn FrameHandler>,
    ) -> Result<SocketBackend, SocketError> {
        let ifaces: Vec<Interface> = cfg
            .interfaces
            .iter()
            .map(|n| interface_info(n))
            .collect::<Result<_, _>>()?;
        let mut guards = Vec::new();
        for i in &ifaces {
            guards.push(open_port_guard(i, 67, false)?);
            if cfg.v6 {
                guards.push(open_port_guard(i, 547, true)?);
            }
        }
        let stop = Arc::new(AtomicBool::new(false));
        let workers = cfg.workers.max(1);
        let mut threads = Vec::new();
        for w in 0..workers {
            let mut socks = Vec::new();
            for i in &ifaces {
                // One fanout group per interface per process.
                let group =
                    ((std::process::id() as u16) ^ (i.ifindex as u16).wrapping_mul(0x9e37)) | 1;
                socks.push((open_packet_socket(i, group)?, i.clone()));
            }
            let mut handler = make_handler(w);
            let stop = stop.clone();
            let t = std::thread::Builder::new()
                .name(format!("xdhcp-sock-{w}"))
                .spawn(move || worker_loop(&socks, handler.as_mut(), &stop))
                .map_err(|e| SocketError::Sys {
                    what: "spawn",
                    iface: String::new(),
                    source: e,
                })?;
            threads.push(t);
        }
        Ok(SocketBackend {
            stop,
            threads,
            _guards: guards,
            interfaces: ifaces,
        })
    }

    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for SocketBackend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A reply held for synchronous replication: which buffer slot, which socket, how long.
#[derive(Debug, Clone, Copy)]
struct ParkedFrame {
    slot: u32,
    sock: u16,
    len: u16,
}

/// The socket backend's park queue: the queue plus the buffers the parked replies live in, all
/// allocated once when the worker starts.
struct Parking {
    link: crate::syncrepl::SyncLink,
    q: crate::syncrepl::ParkQueue<ParkedFrame>,
    slots: Vec<[u8; FRAME_BUF]>,
    free: Vec<u32>,
    released: Vec<ParkedFrame>,
}

impl Parking {
    fn new(link: crate::syncrepl::SyncLink) -> Parking {
        let cap = link.capacity.max(1);
        Parking {
            q: crate::syncrepl::ParkQueue::new(cap, link.timeout_ns),
            slots: vec![[0u8; FRAME_BUF]; cap],
            free: (0..cap as u32).rev().collect(),
            released: Vec::with_capacity(cap),
            link,
        }
    }

    /// Hold `frame` until the peers acknowledged `ticket`; a full queue drops it (counted).
    fn park(&mut self, ticket: u64, now: Now, sock: usize, frame: &[u8]) {
        let Some(slot) = self.free.pop() else {
            self.link.count_full();
            return;
        };
        self.slots[slot as usize][..frame.len()].copy_from_slice(frame);
        let item = ParkedFrame {
            slot,
            sock: sock as u16,
            len: frame.len() as u16,
        };
        match self
            .q
            .park(ticket, now.mono_ns, self.link.gate.fail_gen(), item)
        {
            Ok(()) => self.link.count_parked(),
            Err(_) => {
                self.free.push(slot);
                self.link.count_full();
            }
        }
    }

    /// Send what the peers acknowledged, drop what failed or waited too long.
    fn release(&mut self, socks: &[(OwnedFd, Interface)]) {
        if self.q.is_empty() {
            return;
        }
        let view = self.link.view();
        let (link, free, released) = (&self.link, &mut self.free, &mut self.released);
        self.q.poll(Now::read().mono_ns, &view, |f, v| {
            link.count(v);
            if v == crate::syncrepl::Verdict::Send {
                released.push(f);
            } else {
                free.push(f.slot);
            }
        });
        if self.released.is_empty() {
            return;
        }
        for (si, (fd, _)) in socks.iter().enumerate() {
            let frames = self
                .released
                .iter()
                .filter(|f| usize::from(f.sock) == si)
                .map(|f| &self.slots[f.slot as usize][..usize::from(f.len)]);
            send_frames(fd.as_raw_fd(), frames);
        }
        for f in self.released.drain(..) {
            self.free.push(f.slot);
        }
    }
}

fn worker_loop(socks: &[(OwnedFd, Interface)], handler: &mut dyn FrameHandler, stop: &AtomicBool) {
    if let Err(e) = super::request_short_slice(super::WORKER_SLICE) {
        tracing::debug!(error = %e, "no short scheduler slice for the socket worker");
    }
    let mut rx = Batch {
        bufs: vec![[0u8; FRAME_BUF]; BATCH],
        lens: vec![0; BATCH],
        // SAFETY: sockaddr_ll is plain data.
        addrs: vec![unsafe { std::mem::zeroed() }; BATCH],
    };
    let mut tx_bufs = vec![[0u8; FRAME_BUF]; BATCH];
    let mut tx_lens = vec![0usize; BATCH];
    let mut parking = handler.sync_link().map(Parking::new);
    let mut pfds: Vec<libc::pollfd> = socks
        .iter()
        .map(|(fd, _)| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let mut last_tick = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        // While replies are parked, wake often to release them (acks arrive through shared
        // memory, not a file descriptor).
        let parked = parking.as_ref().is_some_and(|p| !p.q.is_empty());
        let ts = if parked {
            libc::timespec {
                tv_sec: 0,
                tv_nsec: 100_000,
            }
        } else {
            libc::timespec {
                tv_sec: 0,
                tv_nsec: 100_000_000,
            }
        };
        // SAFETY: pfds is a valid array of pollfd for the duration of the call; ts outlives it.
        let n = unsafe {
            libc::ppoll(
                pfds.as_mut_ptr(),
                pfds.len() as libc::nfds_t,
                &ts,
                std::ptr::null(),
            )
        };
        if let Some(p) = parking.as_mut() {
            p.release(socks);
        }
        if last_tick.elapsed() >= Duration::from_millis(500) {
            handler.tick(Now::read());
            last_tick = Instant::now();
        }
        if n <= 0 {
            continue;
        }
        for (si, (fd, iface)) in socks.iter().enumerate() {
            if pfds[si].revents & libc::POLLIN == 0 {
                continue;
            }
            let ctx = RxContext {
                ifindex: iface.ifindex,
                queue: 0,
                if_mac: iface.mac,
                if_ipv4: iface.ipv4,
            };
            // Drain the socket in batches, but bound the work per wakeup so other interfaces and
            // the stop flag are looked at.
            for _ in 0..16 {
                let got = recv_batch(fd.as_raw_fd(), &mut rx);
                if got == 0 {
                    break;
                }
                let now = Now::read();
                let mut ntx = 0;
                for i in 0..got {
                    if rx.addrs[i].sll_pkttype == libc::PACKET_OUTGOING {
                        continue; // our own replies, seen by the packet socket
                    }
                    if let Some(len) = handler.handle_frame(
                        now,
                        &ctx,
                        &rx.bufs[i][..rx.lens[i]],
                        &mut tx_bufs[ntx],
                    ) {
                        if let (Some(p), Some(t)) = (parking.as_mut(), handler.park_ticket()) {
                            p.park(t, now, si, &tx_bufs[ntx][..len]);
                            continue;
                        }
                        tx_lens[ntx] = len;
                        ntx += 1;
                    }
                }
                if ntx > 0 {
                    send_batch(fd.as_raw_fd(), &tx_bufs[..ntx], &tx_lens[..ntx]);
                }
                if let Some(p) = parking.as_mut() {
                    p.release(socks);
                }
                if got < BATCH {
                    break;
                }
            }
        }
    }
    if let Some(p) = parking.as_mut() {
        let link = p.link.clone();
        p.q.drain(|_| link.count(crate::syncrepl::Verdict::DropFailed));
    }
    // What the kernel dropped on these sockets (receive buffer full) never reached the engine's
    // statistics: say it on the way out, so a load test can tell its own losses from ours.
    for (fd, iface) in socks {
        let mut st = libc::tpacket_stats {
            tp_packets: 0,
            tp_drops: 0,
        };
        let mut len = std::mem::size_of::<libc::tpacket_stats>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into `st`, which we own.
        let r = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&mut st as *mut libc::tpacket_stats).cast(),
                &mut len,
            )
        };
        if r == 0 {
            tracing::info!(
                iface = %iface.name,
                packets = st.tp_packets,
                kernel_drops = st.tp_drops,
                "packet socket totals"
            );
        }
    }
}

/// Send frames with `sendmmsg`, up to [`BATCH`] per call (no allocation). Bounded retries: a full
/// socket buffer drops the rest (counted by the kernel), never blocks.
fn send_frames<'a>(fd: i32, frames: impl Iterator<Item = &'a [u8]>) {
    let mut iovs: [libc::iovec; BATCH] = std::array::from_fn(|_| libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    });
    let mut n = 0;
    let flush = |iovs: &mut [libc::iovec; BATCH], n: usize| {
        // SAFETY: plain data.
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        for i in 0..n {
            msgs[i].msg_hdr.msg_iov = &mut iovs[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        let mut sent = 0;
        for _ in 0..4 {
            // SAFETY: msgs[sent..n] point into live buffers.
            let r = unsafe {
                libc::sendmmsg(
                    fd,
                    msgs[sent..n].as_mut_ptr(),
                    (n - sent) as u32,
                    libc::MSG_DONTWAIT,
                )
            };
            if r <= 0 {
                break;
            }
            sent += r as usize;
            if sent >= n {
                break;
            }
        }
    };
    for f in frames {
        iovs[n] = libc::iovec {
            iov_base: f.as_ptr() as *mut _,
            iov_len: f.len(),
        };
        n += 1;
        if n == BATCH {
            flush(&mut iovs, n);
            n = 0;
        }
    }
    if n > 0 {
        flush(&mut iovs, n);
    }
}

fn recv_batch(fd: i32, b: &mut Batch) -> usize {
    let mut iovs: [libc::iovec; BATCH] = std::array::from_fn(|i| libc::iovec {
        iov_base: b.bufs[i].as_mut_ptr().cast(),
        iov_len: FRAME_BUF,
    });
    // SAFETY: mmsghdr is plain data; zeroed is valid before we fill pointers.
    let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
    for i in 0..BATCH {
        msgs[i].msg_hdr.msg_iov = &mut iovs[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_name = (&mut b.addrs[i] as *mut libc::sockaddr_ll).cast();
        msgs[i].msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as u32;
    }
    // SAFETY: every pointer in msgs points into buffers that outlive the call.
    let n = unsafe {
        libc::recvmmsg(
            fd,
            msgs.as_mut_ptr(),
            BATCH as u32,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    if n <= 0 {
        return 0;
    }
    let n = n as usize;
    for (len, m) in b.lens.iter_mut().zip(msgs.iter()).take(n) {
        // A frame larger than the buffer is truncated by the kernel: MSG_TRUNC marks it, and the
        // parser then rejects it as oversized rather than read past the buffer.
        *len = (m.msg_len as usize).min(FRAME_BUF);
        if m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
            *len = FRAME_BUF.min(crate::wire::frame::MAX_FRAME + 1);
        }
    }
    n
}

/// Send the first `lens.len()` reply buffers (see [`send_frames`]).
fn send_batch(fd: i32, bufs: &[[u8; FRAME_BUF]], lens: &[usize]) {
    send_frames(fd, bufs.iter().zip(lens).map(|(b, &len)| &b[..len]));
}
