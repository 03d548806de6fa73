//! Helpers shared by the XDP tests: synthetic frames with correct checksums, and network
//! namespaces with veth pairs that are always removed (Drop guard, also on panic). Code runs
//! inside a namespace on a thread that joined it with setns(2); threads it spawns inherit it.
#![allow(dead_code)]

use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::Command;

// ------------------------------------------------------------------ frames

pub const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0xa];
pub const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0xb];
pub const BROADCAST: [u8; 6] = [0xff; 6];

fn sum16(data: &[u8], mut acc: u32) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u32::from(*last) << 8;
    }
    acc
}

pub fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

pub fn ipv4_checksum(hdr: &[u8]) -> u16 {
    fold(sum16(hdr, 0))
}

/// UDP checksum over the IPv4 pseudo-header; 0 is sent as 0xffff (RFC 768).
pub fn udp4_checksum(src: Ipv4Addr, dst: Ipv4Addr, udp: &[u8]) -> u16 {
    let mut acc = sum16(&src.octets(), 0);
    acc = sum16(&dst.octets(), acc);
    acc += 17 + udp.len() as u32;
    let c = fold(sum16(udp, acc));
    if c == 0 {
        0xffff
    } else {
        c
    }
}

pub fn udp6_checksum(src: Ipv6Addr, dst: Ipv6Addr, udp: &[u8]) -> u16 {
    let mut acc = sum16(&src.octets(), 0);
    acc = sum16(&dst.octets(), acc);
    acc += udp.len() as u32 + 17;
    let c = fold(sum16(udp, acc));
    if c == 0 {
        0xffff
    } else {
        c
    }
}

pub fn eth(dst: [u8; 6], src: [u8; 6], vlan: Option<u16>, ethertype: u16) -> Vec<u8> {
    let mut f = Vec::with_capacity(64);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    if let Some(vid) = vlan {
        f.extend_from_slice(&0x8100u16.to_be_bytes());
        f.extend_from_slice(&vid.to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}

/// IPv4 header (no options) with checksum. `frag` is the raw flags+offset field.
pub fn ipv4_header(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    payload_len: usize,
    frag: u16,
) -> [u8; 20] {
    let mut h = [0u8; 20];
    h[0] = 0x45;
    h[2..4].copy_from_slice(&((20 + payload_len) as u16).to_be_bytes());
    h[6..8].copy_from_slice(&frag.to_be_bytes());
    h[8] = 64;
    h[9] = proto;
    h[12..16].copy_from_slice(&src.octets());
    h[16..20].copy_from_slice(&dst.octets());
    let c = ipv4_checksum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h
}

pub fn udp_segment(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = Vec::with_capacity(8 + payload.len());
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    u
}

/// A complete Ethernet/IPv4/UDP frame with both checksums.
#[allow(clippy::too_many_arguments)]
pub fn udp4_frame(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    vlan: Option<u16>,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut udp = udp_segment(sport, dport, payload);
    let c = udp4_checksum(src, dst, &udp);
    udp[6..8].copy_from_slice(&c.to_be_bytes());
    let mut f = eth(dst_mac, src_mac, vlan, 0x0800);
    f.extend_from_slice(&ipv4_header(src, dst, 17, udp.len(), 0));
    f.extend_from_slice(&udp);
    f
}

/// A complete Ethernet/IPv6/UDP frame; `ext` is a chain of (next-header-type, 8-byte-multiple
/// body) extension headers placed before UDP.
pub fn udp6_frame(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    sport: u16,
    dport: u16,
    payload: &[u8],
    ext: &[(u8, usize)],
) -> Vec<u8> {
    let mut udp = udp_segment(sport, dport, payload);
    let c = udp6_checksum(src, dst, &udp);
    udp[6..8].copy_from_slice(&c.to_be_bytes());
    let mut exts = Vec::new();
    for (i, (_, len)) in ext.iter().enumerate() {
        let next = ext.get(i + 1).map(|e| e.0).unwrap_or(17);
        let mut h = vec![0u8; *len];
        h[0] = next;
        h[1] = (len / 8 - 1) as u8;
        exts.extend_from_slice(&h);
    }
    let first = ext.first().map(|e| e.0).unwrap_or(17);
    let mut f = eth([0x33, 0x33, 0, 1, 0, 2], MAC_A, None, 0x86dd);
    let mut ip = [0u8; 40];
    ip[0] = 0x60;
    ip[4..6].copy_from_slice(&((exts.len() + udp.len()) as u16).to_be_bytes());
    ip[6] = first;
    ip[7] = 1;
    ip[8..24].copy_from_slice(&src.octets());
    ip[24..40].copy_from_slice(&dst.octets());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&exts);
    f.extend_from_slice(&udp);
    f
}

/// A DHCPv4-sized payload (a BOOTP header of zeros with the magic cookie): the XDP program only
/// looks at the port, but realistic sizes catch bounds mistakes.
pub fn dhcp4_payload() -> Vec<u8> {
    let mut p = vec![0u8; 240];
    p[0] = 1;
    p[1] = 1;
    p[2] = 6;
    p[236..240].copy_from_slice(&[99, 130, 83, 99]);
    p.extend_from_slice(&[53, 1, 1, 255]);
    p
}

/// The parts of an Ethernet/IPv4/UDP frame (untagged), `None` if it is not one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Udp4<'a> {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
    pub payload: &'a [u8],
}

pub fn parse_udp4(f: &[u8]) -> Option<Udp4<'_>> {
    if f.len() < 42 || f[12..14] != [0x08, 0x00] || f[14] >> 4 != 4 || f[23] != 17 {
        return None;
    }
    let ihl = usize::from(f[14] & 0xf) * 4;
    let l4 = 14 + ihl;
    let udp_len = usize::from(u16::from_be_bytes([*f.get(l4 + 4)?, *f.get(l4 + 5)?]));
    let payload = f.get(l4 + 8..l4 + udp_len.max(8))?;
    Some(Udp4 {
        dst_mac: f[0..6].try_into().ok()?,
        src_mac: f[6..12].try_into().ok()?,
        src: Ipv4Addr::new(f[26], f[27], f[28], f[29]),
        dst: Ipv4Addr::new(f[30], f[31], f[32], f[33]),
        sport: u16::from_be_bytes([f[l4], f[l4 + 1]]),
        dport: u16::from_be_bytes([f[l4 + 2], f[l4 + 3]]),
        payload,
    })
}

/// Writes the reply to a UDP/IPv4 request into `tx`: addresses and ports swapped, source MAC
/// `my_mac`, payload `prefix` + request payload, full IPv4 and UDP checksums (AF_XDP TX has no
/// offload). Returns the frame length.
pub fn echo_reply(rx: &[u8], my_mac: [u8; 6], prefix: &[u8], tx: &mut [u8]) -> Option<usize> {
    let req = parse_udp4(rx)?;
    let payload_len = prefix.len() + req.payload.len();
    let total = 14 + 20 + 8 + payload_len;
    if total > tx.len() {
        return None;
    }
    tx[0..6].copy_from_slice(&req.src_mac);
    tx[6..12].copy_from_slice(&my_mac);
    tx[12..14].copy_from_slice(&[0x08, 0x00]);
    tx[14..34].copy_from_slice(&ipv4_header(req.dst, req.src, 17, 8 + payload_len, 0));
    let udp = &mut tx[34..total];
    udp[0..2].copy_from_slice(&req.dport.to_be_bytes());
    udp[2..4].copy_from_slice(&req.sport.to_be_bytes());
    udp[4..6].copy_from_slice(&((8 + payload_len) as u16).to_be_bytes());
    udp[6..8].copy_from_slice(&[0, 0]);
    udp[8..8 + prefix.len()].copy_from_slice(prefix);
    udp[8 + prefix.len()..].copy_from_slice(req.payload);
    let c = udp4_checksum(req.dst, req.src, udp);
    udp[6..8].copy_from_slice(&c.to_be_bytes());
    Some(total)
}

// ------------------------------------------------------------------ namespaces

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!(
            "cannot run {cmd:?}: {e}. These tests need root and the Debian package `iproute2` (ip)"
        )
    });
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `ip args...`, panicking with its output on failure.
pub fn ip(args: &[&str]) -> String {
    String::from_utf8_lossy(&run(Command::new("ip").args(args)).stdout).into_owned()
}

/// A network namespace named `xd<tag><pid>`, deleted on drop (with every interface in it).
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        let name = format!("xd{tag}{}", std::process::id());
        // A namespace left by an earlier crashed run with the same pid would make `add` fail.
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        ip(&["netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n <ns> args...`.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// `ip netns exec <ns> cmd args...` (its own sysfs view of the namespace), panicking on failure.
    pub fn exec(&self, cmd: &str, args: &[&str]) -> String {
        let out = run(Command::new("ip")
            .args(["netns", "exec", &self.name, cmd])
            .args(args));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `f` on a thread that joined this namespace.
    pub fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|s| {
            s.spawn(|| {
                enter(&path);
                f()
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }

    /// Spawns a detached thread in this namespace (for servers that outlive a `run` call).
    pub fn spawn<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> std::thread::JoinHandle<R> {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            enter(&path);
            f()
        })
    }
}

fn enter(path: &str) {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("open {path}: {e}"));
    // SAFETY: setns on an fd we hold; affects only the calling thread.
    let r = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&f), libc::CLONE_NEWNET) };
    assert_eq!(r, 0, "setns({path}): {}", std::io::Error::last_os_error());
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Two namespaces joined by a veth pair: `srv` (interface `xds0`, 10.77.0.1/24) and `cli`
/// (interface `xdc0`, 10.77.0.2/24), both with `queues` tx and rx queues, both up.
pub struct Lab {
    pub srv: Netns,
    pub cli: Netns,
}

pub const SRV_IF: &str = "xds0";
pub const CLI_IF: &str = "xdc0";
pub const SRV_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
pub const CLI_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);

impl Lab {
    pub fn new(tag: &str, queues: u32) -> Lab {
        let srv = Netns::new(&format!("{tag}s"));
        let cli = Netns::new(&format!("{tag}c"));
        let q = queues.to_string();
        srv.ip(&[
            "link",
            "add",
            SRV_IF,
            "numtxqueues",
            &q,
            "numrxqueues",
            &q,
            "type",
            "veth",
            "peer",
            "name",
            CLI_IF,
            "netns",
            &cli.name,
            "numtxqueues",
            &q,
            "numrxqueues",
            &q,
        ]);
        srv.ip(&["addr", "add", "10.77.0.1/24", "dev", SRV_IF]);
        cli.ip(&["addr", "add", "10.77.0.2/24", "dev", CLI_IF]);
        srv.ip(&["link", "set", SRV_IF, "up"]);
        cli.ip(&["link", "set", CLI_IF, "up"]);
        Lab { srv, cli }
    }

    /// What `ip link show` says about the server interface's XDP attachment.
    pub fn srv_xdp_state(&self) -> String {
        let out = self.srv.ip(&["-d", "link", "show", "dev", SRV_IF]);
        out.split_whitespace()
            .filter(|w| w.starts_with("xdp") || w.starts_with("prog/xdp"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A UDP counter of /proc/net/snmp for the calling thread's namespace (`InDatagrams`,
/// `InCsumErrors`, ...).
pub fn udp_snmp(field: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/thread-self/net/snmp")
        .expect("read /proc/thread-self/net/snmp");
    let mut lines = text.lines().filter(|l| l.starts_with("Udp:"));
    let names: Vec<&str> = lines
        .next()
        .expect("Udp header")
        .split_whitespace()
        .collect();
    let values: Vec<&str> = lines
        .next()
        .expect("Udp values")
        .split_whitespace()
        .collect();
    let i = names
        .iter()
        .position(|n| *n == field)
        .unwrap_or_else(|| panic!("no Udp field {field}"));
    values[i].parse().expect("numeric snmp value")
}

/// Sends one ICMP echo request to `dst` from the calling thread's namespace over a raw socket
/// and waits up to 2 s for the reply (the `ping` binary is not installed everywhere).
pub fn ping(dst: Ipv4Addr) -> bool {
    // SAFETY: plain socket(2); closed below.
    let fd = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::IPPROTO_ICMP,
        )
    };
    assert!(
        fd >= 0,
        "raw ICMP socket (needs root): {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: fd is fresh and owned from here on.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
    let mut req = [8u8, 0, 0, 0, 0x12, 0x34, 0, 1, b'x', b'd', b'h', b'c'];
    let c = fold(sum16(&req, 0));
    req[2..4].copy_from_slice(&c.to_be_bytes());
    let sa = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(dst.octets()),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: buffer and address live for the call.
    let r = unsafe {
        libc::sendto(
            raw,
            req.as_ptr().cast(),
            req.len(),
            0,
            (&sa as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    assert_eq!(
        r,
        req.len() as isize,
        "send ICMP echo: {}",
        std::io::Error::last_os_error()
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    let mut buf = [0u8; 256];
    while std::time::Instant::now() < deadline {
        let mut pfd = libc::pollfd {
            fd: raw,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut pfd, 1, 200) } <= 0 {
            continue;
        }
        // SAFETY: receives into our buffer.
        let n = unsafe { libc::recv(raw, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 28 {
            continue;
        }
        let ihl = usize::from(buf[0] & 0xf) * 4;
        let icmp = &buf[ihl..n as usize];
        // Echo reply (type 0) with our identifier.
        if icmp.len() >= 8 && icmp[0] == 0 && icmp[4..6] == [0x12, 0x34] {
            return true;
        }
    }
    false
}
