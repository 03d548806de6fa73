//! The few kernel interfaces the XDP loader needs besides aya: interface facts by ioctl (index,
//! MTU, MAC, IPv4, rx queue count), rtnetlink to see and remove an XDP program attached to an
//! interface, bpf(2) to find and detach a bpf_link, and process setup (RLIMIT_MEMLOCK, CPU
//! affinity). Everything here works in the network namespace of the calling thread, which is what
//! makes the namespace tests possible (sysfs would show the namespace it was mounted in).

use std::ffi::CString;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

fn last_err() -> io::Error {
    io::Error::last_os_error()
}

fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(last_err())
    } else {
        Ok(r)
    }
}

// ---------------------------------------------------------------- interface facts (ioctl)

const SIOCGIFMTU: libc::c_ulong = 0x8921;
const SIOCGIFHWADDR: libc::c_ulong = 0x8927;
const SIOCGIFADDR: libc::c_ulong = 0x8915;
const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GCHANNELS: u32 = 0x3c;

#[repr(C)]
struct IfReq {
    name: [u8; 16],
    data: [u8; 24],
}

#[repr(C)]
#[derive(Default)]
struct EthtoolChannels {
    cmd: u32,
    max_rx: u32,
    max_tx: u32,
    max_other: u32,
    max_combined: u32,
    rx_count: u32,
    tx_count: u32,
    other_count: u32,
    combined_count: u32,
}

/// What the backend needs to know about one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceInfo {
    pub name: String,
    pub ifindex: u32,
    pub mtu: u32,
    pub mac: [u8; 6],
    /// Primary IPv4 address, `0.0.0.0` when the interface has none.
    pub ipv4: Ipv4Addr,
    pub rx_queues: u32,
}

fn ioctl_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the fd is owned immediately.
    let fd =
        check(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: fresh fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn ifreq(name: &str) -> io::Result<IfReq> {
    let b = name.as_bytes();
    if b.is_empty() || b.len() >= 16 || b.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "interface names are 1 to 15 bytes",
        ));
    }
    let mut r = IfReq {
        name: [0; 16],
        data: [0; 24],
    };
    r.name[..b.len()].copy_from_slice(b);
    Ok(r)
}

fn ioctl(fd: RawFd, req: libc::c_ulong, r: &mut IfReq) -> io::Result<()> {
    // SAFETY: `r` is a live, correctly sized ifreq for these requests.
    check(unsafe { libc::ioctl(fd, req as _, r as *mut IfReq) }).map(|_| ())
}

/// Index of an interface in the caller's network namespace, `None` if it does not exist.
pub fn ifindex(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: valid NUL-terminated string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
}

/// Reads everything the backend needs about `name`. `Ok(None)`: no such interface.
pub fn interface_info(name: &str) -> io::Result<Option<InterfaceInfo>> {
    let Some(ifindex) = ifindex(name) else {
        return Ok(None);
    };
    let sock = ioctl_socket()?;
    let fd = sock.as_raw_fd();

    let mut r = ifreq(name)?;
    ioctl(fd, SIOCGIFMTU, &mut r)?;
    let mtu = i32::from_ne_bytes([r.data[0], r.data[1], r.data[2], r.data[3]]).max(0) as u32;

    let mut r = ifreq(name)?;
    ioctl(fd, SIOCGIFHWADDR, &mut r)?;
    // struct sockaddr: family (2 bytes), then the hardware address.
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&r.data[2..8]);

    let mut r = ifreq(name)?;
    let ipv4 = match ioctl(fd, SIOCGIFADDR, &mut r) {
        // struct sockaddr_in: family (2), port (2), address (4).
        Ok(()) => Ipv4Addr::new(r.data[4], r.data[5], r.data[6], r.data[7]),
        Err(_) => Ipv4Addr::UNSPECIFIED,
    };

    let rx_queues = rx_queue_count(fd, name)?;
    Ok(Some(InterfaceInfo {
        name: name.to_string(),
        ifindex,
        mtu,
        mac,
        ipv4,
        rx_queues,
    }))
}

fn rx_queue_count(fd: RawFd, name: &str) -> io::Result<u32> {
    let mut ch = EthtoolChannels {
        cmd: ETHTOOL_GCHANNELS,
        ..Default::default()
    };
    let mut r = ifreq(name)?;
    let p = (&mut ch as *mut EthtoolChannels) as usize;
    r.data[..8].copy_from_slice(&p.to_ne_bytes());
    if ioctl(fd, SIOCETHTOOL, &mut r).is_ok() {
        // NICs report queue pairs as "combined" and dedicated rx queues as "rx"; veth reports rx.
        let n = ch.rx_count + ch.combined_count;
        if n > 0 {
            return Ok(n);
        }
    }
    // Drivers without get_channels: count the queues sysfs shows (correct when sysfs was mounted
    // in this namespace, as `ip netns exec` does), else assume one queue.
    let dir = format!("/sys/class/net/{name}/queues");
    match std::fs::read_dir(&dir) {
        Ok(entries) => {
            let n = entries
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
                .count() as u32;
            Ok(n.max(1))
        }
        Err(_) => Ok(1),
    }
}

// ---------------------------------------------------------------- rtnetlink

const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_SETLINK: u16 = 19;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLA_F_NESTED: u16 = 0x8000;
const IFLA_XDP: u16 = 43;
const IFLA_XDP_FD: u16 = 1;
const IFLA_XDP_ATTACHED: u16 = 2;
const IFLA_XDP_FLAGS: u16 = 3;
const IFLA_XDP_PROG_ID: u16 = 4;
const IFLA_XDP_DRV_PROG_ID: u16 = 5;
const IFLA_XDP_SKB_PROG_ID: u16 = 6;
/// XDP_FLAGS_SKB_MODE / XDP_FLAGS_DRV_MODE.
pub const XDP_FLAGS_SKB_MODE: u32 = 2;
pub const XDP_FLAGS_DRV_MODE: u32 = 4;

/// XDP programs attached to an interface, per mode (0 = none).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AttachedXdp {
    pub drv_prog_id: u32,
    pub skb_prog_id: u32,
}

impl AttachedXdp {
    pub fn any(&self) -> bool {
        self.drv_prog_id != 0 || self.skb_prog_id != 0
    }
}

struct Netlink {
    fd: OwnedFd,
    seq: u32,
}

impl Netlink {
    fn open() -> io::Result<Netlink> {
        // SAFETY: plain socket(2).
        let fd = check(unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        })?;
        // SAFETY: fresh fd.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // Bound receive time: a kernel that never answers must not hang startup.
        let tv = libc::timeval {
            tv_sec: 2,
            tv_usec: 0,
        };
        // SAFETY: passes a live timeval and its size.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        Ok(Netlink { fd, seq: 1 })
    }

    /// Sends one request (header filled in here) and returns the raw reply datagram.
    fn request(&mut self, msg_type: u16, flags: u16, body: &[u8]) -> io::Result<Vec<u8>> {
        self.seq += 1;
        let mut m = Vec::with_capacity(16 + body.len());
        m.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&msg_type.to_ne_bytes());
        m.extend_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
        m.extend_from_slice(&self.seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(body);
        // SAFETY: sends our buffer to the kernel (address zeroed = kernel).
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: buffer and address are live for the call.
        let r = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                m.as_ptr().cast(),
                m.len(),
                0,
                (&sa as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(last_err());
        }
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            // SAFETY: receives into our buffer.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                return Err(last_err());
            }
            buf.truncate(n as usize);
            // Skip replies to other sequence numbers (none expected, but be strict).
            if buf.len() >= 16 && u32::from_ne_bytes([buf[8], buf[9], buf[10], buf[11]]) == self.seq
            {
                return Ok(buf);
            }
            buf.resize(32 * 1024, 0);
        }
    }
}

fn ifinfomsg(ifindex: u32) -> Vec<u8> {
    let mut b = vec![0u8; 16];
    b[4..8].copy_from_slice(&(ifindex as i32).to_ne_bytes());
    b
}

fn push_attr(b: &mut Vec<u8>, ty: u16, payload: &[u8]) {
    let len = 4 + payload.len();
    b.extend_from_slice(&(len as u16).to_ne_bytes());
    b.extend_from_slice(&ty.to_ne_bytes());
    b.extend_from_slice(payload);
    while b.len() % 4 != 0 {
        b.push(0);
    }
}

/// Iterates netlink attributes `(type without flags, payload)`; stops at the first malformed one.
fn attrs(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if b.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
        let ty = u16::from_ne_bytes([b[2], b[3]]) & 0x3fff;
        if len < 4 || len > b.len() {
            return None;
        }
        let payload = &b[4..len];
        let adv = (len + 3) & !3;
        b = &b[adv.min(b.len())..];
        Some((ty, payload))
    })
}

fn nl_error(reply: &[u8]) -> Option<i32> {
    if reply.len() >= 20 && u16::from_ne_bytes([reply[4], reply[5]]) == NLMSG_ERROR {
        return Some(i32::from_ne_bytes([
            reply[16], reply[17], reply[18], reply[19],
        ]));
    }
    None
}

fn u32_of(p: &[u8]) -> u32 {
    if p.len() >= 4 {
        u32::from_ne_bytes([p[0], p[1], p[2], p[3]])
    } else {
        0
    }
}

/// Which XDP programs are attached to `ifindex`, as rtnetlink reports them.
pub fn attached_xdp(ifindex: u32) -> io::Result<AttachedXdp> {
    let mut nl = Netlink::open()?;
    let reply = nl.request(RTM_GETLINK, 0, &ifinfomsg(ifindex))?;
    if let Some(e) = nl_error(&reply) {
        return Err(io::Error::from_raw_os_error(-e));
    }
    if reply.len() < 32 || u16::from_ne_bytes([reply[4], reply[5]]) != RTM_NEWLINK {
        return Err(io::Error::other(
            "unexpected rtnetlink reply to RTM_GETLINK",
        ));
    }
    let msg_len = (u32_of(&reply[0..4]) as usize).min(reply.len());
    let mut out = AttachedXdp::default();
    for (ty, payload) in attrs(&reply[32..msg_len]) {
        if ty != IFLA_XDP {
            continue;
        }
        let mut attached = 0u8;
        let mut prog_id = 0;
        for (xty, xp) in attrs(payload) {
            match xty {
                IFLA_XDP_ATTACHED => attached = xp.first().copied().unwrap_or(0),
                IFLA_XDP_PROG_ID => prog_id = u32_of(xp),
                IFLA_XDP_DRV_PROG_ID => out.drv_prog_id = u32_of(xp),
                IFLA_XDP_SKB_PROG_ID => out.skb_prog_id = u32_of(xp),
                _ => {}
            }
        }
        // Older kernels report only the mode and one program id.
        match attached {
            1 if out.drv_prog_id == 0 => out.drv_prog_id = prog_id,
            2 if out.skb_prog_id == 0 => out.skb_prog_id = prog_id,
            _ => {}
        }
    }
    Ok(out)
}

/// Removes the XDP program attached in `mode_flags` (XDP_FLAGS_DRV_MODE / XDP_FLAGS_SKB_MODE)
/// through rtnetlink, like `ip link set dev X xdp off`. Fails with EBUSY when a bpf_link owns
/// the attachment (links must be detached through bpf(2), see [`detach_xdp_links`]).
pub fn netlink_detach_xdp(ifindex: u32, mode_flags: u32) -> io::Result<()> {
    let mut nl = Netlink::open()?;
    let mut body = ifinfomsg(ifindex);
    let mut nest = Vec::new();
    push_attr(&mut nest, IFLA_XDP_FD, &(-1i32).to_ne_bytes());
    push_attr(&mut nest, IFLA_XDP_FLAGS, &mode_flags.to_ne_bytes());
    push_attr(&mut body, IFLA_XDP | NLA_F_NESTED, &nest);
    let reply = nl.request(RTM_SETLINK, NLM_F_ACK, &body)?;
    match nl_error(&reply) {
        Some(0) => Ok(()),
        Some(e) => Err(io::Error::from_raw_os_error(-e)),
        None => Err(io::Error::other(
            "unexpected rtnetlink reply to RTM_SETLINK",
        )),
    }
}

// ---------------------------------------------------------------- bpf(2)

const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_LINK_GET_FD_BY_ID: libc::c_long = 30;
const BPF_LINK_GET_NEXT_ID: libc::c_long = 31;
const BPF_LINK_DETACH: libc::c_long = 34;
const BPF_LINK_TYPE_XDP: u32 = 6;

fn bpf(cmd: libc::c_long, attr: &mut [u64; 16]) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a zero-initialised 128-byte bpf_attr; the kernel reads/writes within it.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.as_mut_ptr(),
            std::mem::size_of::<[u64; 16]>(),
        )
    };
    if r < 0 {
        return Err(last_err());
    }
    Ok(r)
}

fn fd_by_id(cmd: libc::c_long, id: u32) -> io::Result<OwnedFd> {
    let mut attr = [0u64; 16];
    attr[0] = u64::from(id);
    let fd = bpf(cmd, &mut attr)?;
    // SAFETY: the kernel returned a fresh fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

fn obj_info(fd: &OwnedFd, info: &mut [u8]) -> io::Result<()> {
    let mut attr = [0u64; 16];
    attr[0] = u64::from(fd.as_raw_fd() as u32) | (info.len() as u64) << 32;
    attr[1] = info.as_mut_ptr() as u64;
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr).map(|_| ())
}

/// The name the kernel keeps for a loaded program (first 15 bytes of the function name).
pub fn prog_name(prog_id: u32) -> io::Result<String> {
    let fd = fd_by_id(BPF_PROG_GET_FD_BY_ID, prog_id)?;
    let mut info = [0u8; 232];
    obj_info(&fd, &mut info)?;
    let name = &info[64..80];
    let end = name.iter().position(|&c| c == 0).unwrap_or(name.len());
    Ok(String::from_utf8_lossy(&name[..end]).into_owned())
}

/// Detaches every XDP bpf_link on `ifindex` (BPF_LINK_DETACH: the link object lives on in its
/// owner, but the program leaves the interface). Returns how many were detached.
pub fn detach_xdp_links(ifindex: u32) -> io::Result<u32> {
    let mut detached = 0;
    let mut id = 0u32;
    // Bounded: link ids are finite and strictly increasing; 1<<20 links is far beyond any host.
    for _ in 0..1 << 20 {
        let mut attr = [0u64; 16];
        attr[0] = u64::from(id);
        match bpf(BPF_LINK_GET_NEXT_ID, &mut attr) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => break,
            Err(e) => return Err(e),
        }
        id = (attr[0] >> 32) as u32;
        let fd = match fd_by_id(BPF_LINK_GET_FD_BY_ID, id) {
            Ok(fd) => fd,
            // Raced with the link going away.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => return Err(e),
        };
        let mut info = [0u8; 48];
        obj_info(&fd, &mut info)?;
        if u32_of(&info[0..4]) == BPF_LINK_TYPE_XDP && u32_of(&info[16..20]) == ifindex {
            let mut attr = [0u64; 16];
            attr[0] = u64::from(fd.as_raw_fd() as u32);
            bpf(BPF_LINK_DETACH, &mut attr)?;
            detached += 1;
        }
    }
    Ok(detached)
}

// ---------------------------------------------------------------- multicast

/// All_DHCP_Relay_Agents_and_Servers (RFC 8415), where DHCPv6 clients send.
pub const ALL_DHCP_RELAY_AGENTS_AND_SERVERS: std::net::Ipv6Addr =
    std::net::Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 1, 2);

/// Joins an IPv6 multicast group on an interface and returns the socket that holds the
/// membership (dropping it leaves the group). With AF_XDP no kernel socket listens on 547, so
/// without this a NIC's multicast filter would discard DHCPv6 before XDP ever sees it.
pub fn join_ipv6_multicast(ifindex: u32, group: std::net::Ipv6Addr) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2).
    let fd =
        check(unsafe { libc::socket(libc::AF_INET6, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: fresh fd.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mreq = libc::ipv6_mreq {
        ipv6mr_multiaddr: libc::in6_addr {
            s6_addr: group.octets(),
        },
        ipv6mr_interface: ifindex,
    };
    // SAFETY: passes a live ipv6_mreq and its size.
    check(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_IPV6,
            libc::IPV6_ADD_MEMBERSHIP,
            (&mreq as *const libc::ipv6_mreq).cast(),
            std::mem::size_of::<libc::ipv6_mreq>() as libc::socklen_t,
        )
    })?;
    Ok(fd)
}

// ---------------------------------------------------------------- process setup

/// Lifts RLIMIT_MEMLOCK so UMEM and maps can be locked. Returns the limit now in force.
pub fn raise_memlock() -> io::Result<u64> {
    let inf = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: passes a live rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &inf) } == 0 {
        return Ok(u64::MAX);
    }
    // Without CAP_SYS_RESOURCE only the soft limit can move, up to the hard one.
    let mut cur = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: the kernel writes into `cur`.
    check(unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut cur) })?;
    let raised = libc::rlimit {
        rlim_cur: cur.rlim_max,
        rlim_max: cur.rlim_max,
    };
    // SAFETY: passes a live rlimit.
    check(unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &raised) })?;
    Ok(cur.rlim_max)
}

/// CPUs this process may run on, in order.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: passes the set and its size.
    let r = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if r != 0 {
        return vec![0];
    }
    // SAFETY: CPU_ISSET reads the set we own.
    let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect();
    if cpus.is_empty() {
        vec![0]
    } else {
        cpus
    }
}

fn cpu_set(cpus: &[usize]) -> libc::cpu_set_t {
    // SAFETY: cpu_set_t is plain data.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus {
        // SAFETY: CPU_SET writes into the set we own; out-of-range CPUs are ignored by the macro.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    set
}

/// Restricts the calling thread to `cpus`.
pub fn set_current_thread_cpus(cpus: &[usize]) -> io::Result<()> {
    let set = cpu_set(cpus);
    // SAFETY: passes the set and its size; 0 = calling thread.
    check(unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) })
        .map(|_| ())
}

/// Pins the calling thread to one CPU.
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    set_current_thread_cpus(&[cpu])
}

/// Restricts another thread of this process (its pthread handle, e.g. from
/// `std::os::unix::thread::JoinHandleExt::as_pthread_t`) to `cpus`.
pub fn set_thread_cpus(thread: libc::pthread_t, cpus: &[usize]) -> io::Result<()> {
    let set = cpu_set(cpus);
    // SAFETY: `thread` is a live thread of this process (the caller holds its join handle);
    // passes the set and its size.
    let r = unsafe {
        libc::pthread_setaffinity_np(thread, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(r))
    }
}

/// Runs `f` (which spawns threads) with the calling thread restricted to `cpus`, then restores
/// the calling thread's CPUs: threads spawned inside inherit `cpus`, the caller keeps its own.
/// Affinity is a placement hint here: if it cannot be set, `f` runs anyway (with a warning).
pub fn spawning_on<T>(cpus: &[usize], f: impl FnOnce() -> T) -> T {
    let before = allowed_cpus();
    let set = set_current_thread_cpus(cpus);
    if let Err(e) = &set {
        tracing::warn!(?cpus, error = %e, "could not move new threads to the housekeeping CPUs");
    }
    let out = f();
    if set.is_ok() {
        if let Err(e) = set_current_thread_cpus(&before) {
            tracing::warn!(cpus = ?before, error = %e, "could not restore this thread's CPUs");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netlink_attributes_parse_and_stop_on_garbage() {
        let mut b = Vec::new();
        push_attr(&mut b, 4, &7u32.to_ne_bytes());
        push_attr(&mut b, 2, &[1]);
        let got: Vec<_> = attrs(&b).map(|(t, p)| (t, p.to_vec())).collect();
        assert_eq!(got, vec![(4, 7u32.to_ne_bytes().to_vec()), (2, vec![1])]);
        // A length beyond the buffer ends iteration instead of reading out of bounds.
        let bad = [200u8, 0, 1, 0, 0, 0];
        assert_eq!(attrs(&bad).count(), 0);
    }

    #[test]
    fn loopback_facts() {
        let info = interface_info("lo").unwrap().expect("lo exists");
        assert_eq!(info.ifindex, ifindex("lo").unwrap());
        assert!(info.mtu >= 1500);
        assert!(info.rx_queues >= 1);
        assert_eq!(info.ipv4, Ipv4Addr::LOCALHOST);
        assert!(interface_info("xdnosuch0").unwrap().is_none());
    }
}
