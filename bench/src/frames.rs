//! Request frames for the load generator and a minimal parser for the replies.
//!
//! A request is built from a template made once per message kind (Ethernet, IPv4, UDP and a
//! 300-byte BOOTP message with its options at fixed offsets); sending one copies the template
//! and patches the per-client fields (xid, chaddr, addresses) and the checksums. Nothing here
//! allocates after the templates are made. The parser reads only what the generator needs to
//! match a reply to its transaction (xid, message type, yiaddr, server identifier) and rejects
//! anything malformed without panicking.

use std::net::Ipv4Addr;

pub const ETH_HLEN: usize = 14;
pub const IP_OFF: usize = ETH_HLEN;
pub const UDP_OFF: usize = IP_OFF + 20;
pub const BOOTP_OFF: usize = UDP_OFF + 8;
/// BOOTP messages are padded to the RFC 2131 minimum, like most real clients: 342-byte frames.
pub const BOOTP_LEN: usize = 300;
pub const FRAME_LEN: usize = BOOTP_OFF + BOOTP_LEN;
const OPTS_OFF: usize = BOOTP_OFF + 240;
/// Offsets of the patched fields inside the frame.
const XID: usize = BOOTP_OFF + 4;
const CIADDR: usize = BOOTP_OFF + 12;
const CHADDR: usize = BOOTP_OFF + 28;
/// REQUEST (selecting) carries option 50 then option 54 right after option 53.
const OPT50_DATA: usize = OPTS_OFF + 3 + 2;
const OPT54_DATA: usize = OPTS_OFF + 3 + 6 + 2;
/// The parameter request list of a typical client (mask, router, DNS, domain, lease time, T1, T2).
const PRL: [u8; 7] = [1, 3, 6, 15, 51, 58, 59];
const MAGIC: [u8; 4] = [99, 130, 83, 99];

pub const MSG_DISCOVER: u8 = 1;
pub const MSG_OFFER: u8 = 2;
pub const MSG_REQUEST: u8 = 3;
pub const MSG_ACK: u8 = 5;
pub const MSG_NAK: u8 = 6;

/// How the generator talks to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addressing {
    /// As a relay agent (perfdhcp -l): from relay_ip:67 to server_ip:67 with giaddr = relay_ip.
    /// Replies come back unicast to relay_ip:67.
    Relay {
        relay_ip: Ipv4Addr,
        relay_mac: [u8; 6],
        server_ip: Ipv4Addr,
        server_mac: [u8; 6],
    },
    /// As the clients themselves: broadcast from 0.0.0.0:68 with the broadcast flag, so replies
    /// are broadcast to port 68. Renewals go unicast from the client's address.
    Direct {
        server_ip: Ipv4Addr,
        server_mac: [u8; 6],
    },
}

impl Addressing {
    /// The UDP port replies arrive on (what the XDP program must steer).
    pub fn reply_port(&self) -> u16 {
        match self {
            Addressing::Relay { .. } => 67,
            Addressing::Direct { .. } => 68,
        }
    }
}

/// The kinds of request the generator sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Discover,
    /// REQUEST in the selecting state: requested address and server identifier options.
    Select,
    /// REQUEST in the renewing state: ciaddr set, no options 50/54.
    Renew,
}

/// Per-message fields patched into a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fields {
    pub xid: u32,
    pub mac: [u8; 6],
    /// Requested address (Select) or ciaddr (Renew).
    pub addr: u32,
    /// Server identifier (Select).
    pub server_id: u32,
}

/// The three templates of one addressing mode.
pub struct Templates {
    addressing: Addressing,
    discover: [u8; FRAME_LEN],
    select: [u8; FRAME_LEN],
    renew: [u8; FRAME_LEN],
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates")
            .field("addressing", &self.addressing)
            .finish()
    }
}

impl Templates {
    pub fn new(addressing: Addressing) -> Templates {
        Templates {
            addressing,
            discover: template(addressing, Kind::Discover),
            select: template(addressing, Kind::Select),
            renew: template(addressing, Kind::Renew),
        }
    }

    pub fn addressing(&self) -> Addressing {
        self.addressing
    }

    /// Writes a complete request frame into `out` and returns its length (0 if `out` is too
    /// small, which a UMEM frame never is).
    pub fn write(&self, kind: Kind, f: &Fields, out: &mut [u8]) -> usize {
        let Some(out) = out.get_mut(..FRAME_LEN) else {
            return 0;
        };
        let t = match kind {
            Kind::Discover => &self.discover,
            Kind::Select => &self.select,
            Kind::Renew => &self.renew,
        };
        out.copy_from_slice(t);
        out[XID..XID + 4].copy_from_slice(&f.xid.to_be_bytes());
        out[CHADDR..CHADDR + 6].copy_from_slice(&f.mac);
        let mut ip_changed = false;
        match kind {
            Kind::Discover => {}
            Kind::Select => {
                out[OPT50_DATA..OPT50_DATA + 4].copy_from_slice(&f.addr.to_be_bytes());
                out[OPT54_DATA..OPT54_DATA + 4].copy_from_slice(&f.server_id.to_be_bytes());
            }
            Kind::Renew => {
                out[CIADDR..CIADDR + 4].copy_from_slice(&f.addr.to_be_bytes());
                if let Addressing::Direct { .. } = self.addressing {
                    // A renewing client sends from its own address and MAC.
                    out[6..12].copy_from_slice(&f.mac);
                    out[IP_OFF + 12..IP_OFF + 16].copy_from_slice(&f.addr.to_be_bytes());
                    ip_changed = true;
                }
            }
        }
        if let Addressing::Direct { .. } = self.addressing {
            if kind != Kind::Renew {
                out[6..12].copy_from_slice(&f.mac);
            }
        }
        if ip_changed {
            set_ip_checksum(out);
        }
        set_udp_checksum(out);
        FRAME_LEN
    }
}

fn template(a: Addressing, kind: Kind) -> [u8; FRAME_LEN] {
    let mut b = [0u8; FRAME_LEN];
    let (src_mac, dst_mac, src_ip, dst_ip, sport, giaddr) = match (a, kind) {
        (
            Addressing::Relay {
                relay_ip,
                relay_mac,
                server_ip,
                server_mac,
            },
            _,
        ) => (relay_mac, server_mac, relay_ip, server_ip, 67u16, relay_ip),
        (
            Addressing::Direct {
                server_ip,
                server_mac,
            },
            Kind::Renew,
        ) => {
            // Source MAC and IP are the client's, patched per message.
            (
                [0; 6],
                server_mac,
                Ipv4Addr::UNSPECIFIED,
                server_ip,
                68,
                Ipv4Addr::UNSPECIFIED,
            )
        }
        (Addressing::Direct { .. }, _) => (
            [0; 6],
            [0xff; 6],
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::BROADCAST,
            68,
            Ipv4Addr::UNSPECIFIED,
        ),
    };
    b[0..6].copy_from_slice(&dst_mac);
    b[6..12].copy_from_slice(&src_mac);
    b[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut b[IP_OFF..IP_OFF + 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&((20 + 8 + BOOTP_LEN) as u16).to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&src_ip.octets());
    ip[16..20].copy_from_slice(&dst_ip.octets());
    b[UDP_OFF..UDP_OFF + 2].copy_from_slice(&sport.to_be_bytes());
    b[UDP_OFF + 2..UDP_OFF + 4].copy_from_slice(&67u16.to_be_bytes());
    b[UDP_OFF + 4..UDP_OFF + 6].copy_from_slice(&((8 + BOOTP_LEN) as u16).to_be_bytes());
    let m = &mut b[BOOTP_OFF..];
    m[0] = 1; // BOOTREQUEST
    m[1] = 1; // Ethernet
    m[2] = 6;
    if !giaddr.is_unspecified() {
        m[3] = 1; // hops: one relay
    }
    if matches!(a, Addressing::Direct { .. }) && kind != Kind::Renew {
        m[10] = 0x80; // broadcast flag: the client has no address yet
    }
    m[24..28].copy_from_slice(&giaddr.octets());
    m[236..240].copy_from_slice(&MAGIC);
    let mut o = 240;
    let mt = match kind {
        Kind::Discover => MSG_DISCOVER,
        Kind::Select | Kind::Renew => MSG_REQUEST,
    };
    m[o..o + 3].copy_from_slice(&[53, 1, mt]);
    o += 3;
    if kind == Kind::Select {
        m[o..o + 2].copy_from_slice(&[50, 4]);
        o += 6;
        m[o..o + 2].copy_from_slice(&[54, 4]);
        o += 6;
    }
    m[o] = 55;
    m[o + 1] = PRL.len() as u8;
    m[o + 2..o + 2 + PRL.len()].copy_from_slice(&PRL);
    o += 2 + PRL.len();
    m[o] = 255;
    set_ip_checksum(&mut b);
    b
}

/// One's-complement sum of `data` (RFC 1071) added to `acc`: xdhcp's own routine, so the
/// generator, the echo and the server checksum at the same cost.
pub fn csum_add(acc: u64, data: &[u8]) -> u64 {
    acc + u64::from(xdhcp_dataplane::wire::checksum_add(0, data))
}

pub fn csum_fold(mut acc: u64) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// Recomputes the IPv4 header checksum of an untagged frame.
pub fn set_ip_checksum(frame: &mut [u8]) {
    frame[IP_OFF + 10] = 0;
    frame[IP_OFF + 11] = 0;
    let c = csum_fold(csum_add(0, &frame[IP_OFF..IP_OFF + 20]));
    frame[IP_OFF + 10..IP_OFF + 12].copy_from_slice(&c.to_be_bytes());
}

/// Recomputes the UDP checksum of an untagged IPv4 frame with a 20-byte IP header (AF_XDP TX
/// has no checksum offload). Returns false if the frame is not that shape.
pub fn set_udp_checksum(frame: &mut [u8]) -> bool {
    if frame.len() < UDP_OFF + 8 {
        return false;
    }
    let udp_len = usize::from(u16::from_be_bytes([frame[UDP_OFF + 4], frame[UDP_OFF + 5]]));
    if udp_len < 8 || UDP_OFF + udp_len > frame.len() {
        return false;
    }
    frame[UDP_OFF + 6] = 0;
    frame[UDP_OFF + 7] = 0;
    let mut acc = csum_add(0, &frame[IP_OFF + 12..IP_OFF + 20]);
    acc += 17 + udp_len as u64;
    acc = csum_add(acc, &frame[UDP_OFF..UDP_OFF + udp_len]);
    let mut c = csum_fold(acc);
    if c == 0 {
        c = 0xffff;
    }
    frame[UDP_OFF + 6..UDP_OFF + 8].copy_from_slice(&c.to_be_bytes());
    true
}

/// What the generator reads from a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Reply {
    pub xid: u32,
    /// BOOTP op: 2 for a server's reply, 1 for an echoed request.
    pub op: u8,
    /// DHCP message type (option 53), 0 when absent.
    pub msg_type: u8,
    pub yiaddr: u32,
    /// Server identifier (option 54), 0 when absent.
    pub server_id: u32,
}

/// Parses a DHCPv4 reply frame arriving on UDP port `port`. Accepts one 802.1Q tag and IP
/// options; ignores the UDP checksum (kernel-sent frames over veth carry a partial one).
pub fn parse_reply(frame: &[u8], port: u16) -> Option<Reply> {
    let mut off = ETH_HLEN;
    let mut et = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    if et == 0x8100 {
        et = u16::from_be_bytes([*frame.get(16)?, *frame.get(17)?]);
        off += 4;
    }
    if et != 0x0800 {
        return None;
    }
    let ip = frame.get(off..off + 20)?;
    if ip[0] >> 4 != 4 || ip[9] != 17 || u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0 {
        return None;
    }
    let ihl = usize::from(ip[0] & 0xf) * 4;
    let udp = off + ihl;
    let hdr = frame.get(udp..udp + 8)?;
    if u16::from_be_bytes([hdr[2], hdr[3]]) != port {
        return None;
    }
    let udp_len = usize::from(u16::from_be_bytes([hdr[4], hdr[5]]));
    let m = frame.get(udp + 8..(udp + udp_len).min(frame.len()))?;
    if m.len() < 240 || m[236..240] != MAGIC {
        return None;
    }
    let mut r = Reply {
        xid: u32::from_be_bytes([m[4], m[5], m[6], m[7]]),
        op: m[0],
        yiaddr: u32::from_be_bytes([m[16], m[17], m[18], m[19]]),
        ..Reply::default()
    };
    let mut i = 240;
    while i < m.len() {
        let code = m[i];
        if code == 0 {
            i += 1;
            continue;
        }
        if code == 255 || i + 1 >= m.len() {
            break;
        }
        let len = usize::from(m[i + 1]);
        let data = m.get(i + 2..i + 2 + len)?;
        match (code, len) {
            (53, 1) => r.msg_type = data[0],
            (54, 4) => r.server_id = u32::from_be_bytes([data[0], data[1], data[2], data[3]]),
            _ => {}
        }
        if r.msg_type != 0 && r.server_id != 0 {
            break;
        }
        i += 2 + len;
    }
    Some(r)
}

/// The MAC address of simulated client `n` (a locally administered unicast address whose
/// second byte separates generator instances).
pub fn client_mac(seed: u8, n: u32) -> [u8; 6] {
    let c = n.to_be_bytes();
    [0x02, seed, c[0], c[1], c[2], c[3]]
}

#[cfg(test)]
mod tests {
    use super::*;
    use xdhcp_dataplane::wire::dhcp4::{Dhcp4Scratch, Dhcp4View, MessageType};
    use xdhcp_dataplane::wire::frame::{parse_udp_frame, L3};

    const SRV: Ipv4Addr = Ipv4Addr::new(10, 64, 0, 1);
    const RELAY: Ipv4Addr = Ipv4Addr::new(10, 64, 0, 2);

    fn relay() -> Addressing {
        Addressing::Relay {
            relay_ip: RELAY,
            relay_mac: [2, 0, 0, 0, 0, 2],
            server_ip: SRV,
            server_mac: [2, 0, 0, 0, 0, 1],
        }
    }

    fn udp_checksum_ok(f: &[u8]) -> bool {
        let udp_len = usize::from(u16::from_be_bytes([f[UDP_OFF + 4], f[UDP_OFF + 5]]));
        let mut acc = csum_add(0, &f[IP_OFF + 12..IP_OFF + 20]);
        acc += 17 + udp_len as u64;
        acc = csum_add(acc, &f[UDP_OFF..UDP_OFF + udp_len]);
        csum_fold(acc) == 0
    }

    #[test]
    fn requests_parse_with_the_servers_own_codecs_and_valid_checksums() {
        for a in [
            relay(),
            Addressing::Direct {
                server_ip: SRV,
                server_mac: [2, 0, 0, 0, 0, 1],
            },
        ] {
            let t = Templates::new(a);
            for kind in [Kind::Discover, Kind::Select, Kind::Renew] {
                let mut buf = [0u8; 2048];
                let mac = client_mac(7, 0x0102_0304);
                let f = Fields {
                    xid: 0xdead_beef,
                    mac,
                    addr: u32::from(Ipv4Addr::new(10, 64, 1, 9)),
                    server_id: u32::from(SRV),
                };
                let n = t.write(kind, &f, &mut buf);
                assert_eq!(n, FRAME_LEN);
                let fr = &buf[..n];
                let uf = parse_udp_frame(fr).expect("server parses the frame");
                assert_eq!(uf.dst_port, 67);
                assert_eq!(
                    csum_fold(csum_add(0, &fr[IP_OFF..IP_OFF + 20])),
                    0,
                    "IP checksum"
                );
                assert!(udp_checksum_ok(fr), "UDP checksum of {kind:?}");
                let mut s = Dhcp4Scratch::default();
                let v = Dhcp4View::parse(&fr[uf.payload_start..uf.payload_end], &mut s)
                    .expect("DHCP parses");
                assert_eq!(u32::from_be_bytes(v.xid()), 0xdead_beef);
                assert_eq!(v.chaddr(), &mac);
                match kind {
                    Kind::Discover => assert_eq!(v.message_type(), Ok(MessageType::Discover)),
                    Kind::Select => {
                        assert_eq!(v.message_type(), Ok(MessageType::Request));
                        assert_eq!(v.requested_ip(), Some(Ipv4Addr::new(10, 64, 1, 9)));
                        assert_eq!(v.server_id(), Some(SRV));
                    }
                    Kind::Renew => {
                        assert_eq!(v.ciaddr(), Ipv4Addr::new(10, 64, 1, 9));
                        assert_eq!(v.requested_ip(), None);
                    }
                }
                if let Addressing::Relay { .. } = a {
                    assert_eq!(v.giaddr(), RELAY);
                    assert_eq!(uf.src_port, 67);
                    assert_eq!(
                        uf.l3,
                        L3::V4 {
                            src: RELAY,
                            dst: SRV
                        }
                    );
                }
            }
        }
    }

    #[test]
    fn reply_parser_reads_xid_type_and_server_id_and_rejects_garbage() {
        let t = Templates::new(relay());
        let mut buf = [0u8; 2048];
        let f = Fields {
            xid: 42,
            mac: client_mac(0, 1),
            addr: 0,
            server_id: u32::from(SRV),
        };
        let n = t.write(Kind::Select, &f, &mut buf);
        // The request itself, seen on port 67 (as the echo returns it).
        let r = parse_reply(&buf[..n], 67).unwrap();
        assert_eq!(
            (r.xid, r.op, r.msg_type, r.server_id),
            (42, 1, MSG_REQUEST, u32::from(SRV))
        );
        assert_eq!(parse_reply(&buf[..n], 68), None, "wrong port");
        for cut in 0..n {
            let _ = parse_reply(&buf[..cut], 67);
        }
        assert_eq!(parse_reply(&buf[..BOOTP_OFF + 100], 67), None);
    }
}
