//! DHCPv6 request frames for the load generator and a minimal parser for the server's replies.
//!
//! The generator acts as the clients themselves, like `perfdhcp -6 -l <iface>`: every message goes
//! from the interface's link-local address, UDP 546, to All_DHCP_Relay_Agents_and_Servers
//! (ff02::1:2, MAC 33:33:00:01:00:02), UDP 547, and replies come back unicast to the link-local
//! address on 546. Clients are told apart by their DUID-LL (hardware type 1 and a MAC derived from
//! the client number, [`crate::frames::client_mac`]), one IA_NA (IAID 1) and/or one IA_PD (IAID 2)
//! each, as `perfdhcp -e address-only|prefix-only|address-and-prefix` does.
//!
//! SOLICIT and REQUEST are each built once as a template with every option at a fixed offset;
//! sending one copies the template and patches the xid, the DUID's MAC, the offered address and
//! prefix, appends the server identifier (REQUEST) and computes the UDP checksum (mandatory in
//! IPv6; AF_XDP has no offload). Nothing here allocates after the templates are made. The reply
//! parser reads only what the generator needs (message type, xid, server identifier, status codes,
//! the first address and prefix) and rejects anything malformed without panicking.

use crate::frames::{csum_add, csum_fold};
use std::net::Ipv6Addr;

pub const ETH_HLEN: usize = 14;
pub const IP6_OFF: usize = ETH_HLEN;
pub const UDP6_OFF: usize = IP6_OFF + 40;
pub const MSG6_OFF: usize = UDP6_OFF + 8;

pub const CLIENT_PORT: u16 = 546;
pub const SERVER_PORT: u16 = 547;
/// All_DHCP_Relay_Agents_and_Servers (RFC 8415 §7.1) and its Ethernet multicast address.
pub const ALL_SERVERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 1, 2);
pub const ALL_SERVERS_MAC: [u8; 6] = [0x33, 0x33, 0, 1, 0, 2];

pub const MSG_SOLICIT: u8 = 1;
pub const MSG_ADVERTISE: u8 = 2;
pub const MSG_REQUEST: u8 = 3;
pub const MSG_REPLY: u8 = 7;

const OPT_CLIENTID: u16 = 1;
const OPT_SERVERID: u16 = 2;
const OPT_IA_NA: u16 = 3;
const OPT_IAADDR: u16 = 5;
const OPT_ORO: u16 = 6;
const OPT_ELAPSED_TIME: u16 = 8;
const OPT_STATUS_CODE: u16 = 13;
const OPT_IA_PD: u16 = 25;
const OPT_IAPREFIX: u16 = 26;
/// What a typical client asks for: DNS servers and the domain search list.
const ORO: [u16; 2] = [23, 24];
pub const IAID_NA: u32 = 1;
pub const IAID_PD: u32 = 2;
/// RFC 8415 §11.1: a DUID is at most 128 bytes after its 2-byte type.
pub const MAX_DUID: usize = 130;
/// Largest request built: headers, the fixed options and the longest server identifier.
pub const MAX_FRAME6: usize = MSG6_OFF + 4 + 14 + 6 + 8 + 44 + 45 + 4 + MAX_DUID;

/// Which identity associations every client asks for (perfdhcp's `-e`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseType {
    /// One IA_NA: an address.
    Address,
    /// One IA_PD: a delegated prefix.
    Prefix,
    /// Both in every message.
    AddressAndPrefix,
}

impl LeaseType {
    pub fn na(self) -> bool {
        self != LeaseType::Prefix
    }

    pub fn pd(self) -> bool {
        self != LeaseType::Address
    }

    /// perfdhcp's name for it.
    pub fn name(self) -> &'static str {
        match self {
            LeaseType::Address => "address-only",
            LeaseType::Prefix => "prefix-only",
            LeaseType::AddressAndPrefix => "address-and-prefix",
        }
    }
}

/// The generator's end of the link: where requests come from and go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link6 {
    /// The interface's MAC address.
    pub src_mac: [u8; 6],
    /// The interface's link-local address: replies come back to it.
    pub src_ip: Ipv6Addr,
    /// ff02::1:2 normally; a server's unicast address (with its MAC) otherwise.
    pub dst_ip: Ipv6Addr,
    pub dst_mac: [u8; 6],
}

impl Link6 {
    /// Multicast to all DHCP servers on the link, as clients do.
    pub fn multicast(src_mac: [u8; 6], src_ip: Ipv6Addr) -> Link6 {
        Link6 {
            src_mac,
            src_ip,
            dst_ip: ALL_SERVERS,
            dst_mac: ALL_SERVERS_MAC,
        }
    }
}

/// The two messages the generator sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind6 {
    Solicit,
    /// REQUEST for what an ADVERTISE offered, to the server that offered it.
    Request,
}

/// Per-message fields patched into a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fields6<'a> {
    /// 24 bits.
    pub xid: u32,
    /// The MAC inside the client's DUID-LL.
    pub mac: [u8; 6],
    /// REQUEST: the offered address (IA_NA).
    pub addr: [u8; 16],
    /// REQUEST: the offered prefix and its length (IA_PD).
    pub prefix: [u8; 16],
    pub prefix_len: u8,
    /// REQUEST: the server's DUID (the ADVERTISE's server identifier).
    pub server_id: &'a [u8],
}

/// Where the patched fields of one template sit.
#[derive(Debug, Clone, Copy, Default)]
struct Layout {
    len: usize,
    duid_mac: usize,
    /// Data offset of the IAADDR (REQUEST with IA_NA).
    iaaddr: Option<usize>,
    /// Data offset of the IAPREFIX (REQUEST with IA_PD).
    iaprefix: Option<usize>,
}

/// The SOLICIT and REQUEST templates of one link and lease type.
pub struct Templates6 {
    link: Link6,
    lease_type: LeaseType,
    solicit: [u8; MAX_FRAME6],
    solicit_at: Layout,
    request: [u8; MAX_FRAME6],
    request_at: Layout,
}

impl std::fmt::Debug for Templates6 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates6")
            .field("link", &self.link)
            .field("lease_type", &self.lease_type)
            .finish()
    }
}

impl Templates6 {
    pub fn new(link: Link6, lease_type: LeaseType) -> Templates6 {
        let mut solicit = [0u8; MAX_FRAME6];
        let solicit_at = template(&link, lease_type, Kind6::Solicit, &mut solicit);
        let mut request = [0u8; MAX_FRAME6];
        let request_at = template(&link, lease_type, Kind6::Request, &mut request);
        Templates6 {
            link,
            lease_type,
            solicit,
            solicit_at,
            request,
            request_at,
        }
    }

    pub fn link(&self) -> Link6 {
        self.link
    }

    pub fn lease_type(&self) -> LeaseType {
        self.lease_type
    }

    /// Writes a complete request frame into `out` and returns its length (0 if `out` is too small
    /// or the server identifier is longer than a DUID can be).
    pub fn write(&self, kind: Kind6, f: &Fields6<'_>, out: &mut [u8]) -> usize {
        let (t, at) = match kind {
            Kind6::Solicit => (&self.solicit, &self.solicit_at),
            Kind6::Request => (&self.request, &self.request_at),
        };
        let sid = if kind == Kind6::Request {
            f.server_id
        } else {
            &[]
        };
        if sid.len() > MAX_DUID {
            return 0;
        }
        let len = at.len + if sid.is_empty() { 0 } else { 4 + sid.len() };
        let Some(out) = out.get_mut(..len) else {
            return 0;
        };
        out[..at.len].copy_from_slice(&t[..at.len]);
        let x = f.xid.to_be_bytes();
        out[MSG6_OFF + 1..MSG6_OFF + 4].copy_from_slice(&x[1..]);
        out[at.duid_mac..at.duid_mac + 6].copy_from_slice(&f.mac);
        if let Some(o) = at.iaaddr {
            out[o..o + 16].copy_from_slice(&f.addr);
        }
        if let Some(o) = at.iaprefix {
            out[o + 8] = f.prefix_len;
            out[o + 9..o + 25].copy_from_slice(&f.prefix);
        }
        if !sid.is_empty() {
            let o = at.len;
            out[o..o + 2].copy_from_slice(&OPT_SERVERID.to_be_bytes());
            out[o + 2..o + 4].copy_from_slice(&(sid.len() as u16).to_be_bytes());
            out[o + 4..o + 4 + sid.len()].copy_from_slice(sid);
        }
        let udp_len = (len - UDP6_OFF) as u16;
        out[IP6_OFF + 4..IP6_OFF + 6].copy_from_slice(&udp_len.to_be_bytes());
        out[UDP6_OFF + 4..UDP6_OFF + 6].copy_from_slice(&udp_len.to_be_bytes());
        set_udp6_checksum(out);
        len
    }
}

/// Appends an option header at `*o` and returns the offset of its data.
fn put_opt(b: &mut [u8], o: &mut usize, code: u16, len: usize) -> usize {
    b[*o..*o + 2].copy_from_slice(&code.to_be_bytes());
    b[*o + 2..*o + 4].copy_from_slice(&(len as u16).to_be_bytes());
    *o += 4;
    *o
}

fn template(link: &Link6, lt: LeaseType, kind: Kind6, b: &mut [u8; MAX_FRAME6]) -> Layout {
    b[0..6].copy_from_slice(&link.dst_mac);
    b[6..12].copy_from_slice(&link.src_mac);
    b[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
    let ip = &mut b[IP6_OFF..IP6_OFF + 40];
    ip[0] = 0x60;
    ip[6] = 17; // next header: UDP
    ip[7] = 1; // hop limit: what kernel sockets use for link-scope multicast
    ip[8..24].copy_from_slice(&link.src_ip.octets());
    ip[24..40].copy_from_slice(&link.dst_ip.octets());
    b[UDP6_OFF..UDP6_OFF + 2].copy_from_slice(&CLIENT_PORT.to_be_bytes());
    b[UDP6_OFF + 2..UDP6_OFF + 4].copy_from_slice(&SERVER_PORT.to_be_bytes());
    b[MSG6_OFF] = match kind {
        Kind6::Solicit => MSG_SOLICIT,
        Kind6::Request => MSG_REQUEST,
    };
    let mut at = Layout::default();
    let mut o = MSG6_OFF + 4;
    // Client identifier: DUID-LL (type 3), hardware type 1 (Ethernet), the client's MAC.
    let d = put_opt(b, &mut o, OPT_CLIENTID, 10);
    b[d..d + 4].copy_from_slice(&[0, 3, 0, 1]);
    at.duid_mac = d + 4;
    o = d + 10;
    // Elapsed time 0: every message is the first try (retransmission is not simulated).
    o = put_opt(b, &mut o, OPT_ELAPSED_TIME, 2) + 2;
    let d = put_opt(b, &mut o, OPT_ORO, 2 * ORO.len());
    for (i, c) in ORO.iter().enumerate() {
        b[d + 2 * i..d + 2 * i + 2].copy_from_slice(&c.to_be_bytes());
    }
    o = d + 2 * ORO.len();
    let request = kind == Kind6::Request;
    if lt.na() {
        // IAID, T1 0, T2 0 (the server chooses); REQUEST names the offered address.
        let d = put_opt(b, &mut o, OPT_IA_NA, if request { 12 + 28 } else { 12 });
        b[d..d + 4].copy_from_slice(&IAID_NA.to_be_bytes());
        o = d + 12;
        if request {
            let a = put_opt(b, &mut o, OPT_IAADDR, 24);
            at.iaaddr = Some(a);
            o = a + 24;
        }
    }
    if lt.pd() {
        let d = put_opt(b, &mut o, OPT_IA_PD, if request { 12 + 29 } else { 12 });
        b[d..d + 4].copy_from_slice(&IAID_PD.to_be_bytes());
        o = d + 12;
        if request {
            let p = put_opt(b, &mut o, OPT_IAPREFIX, 25);
            at.iaprefix = Some(p);
            o = p + 25;
        }
    }
    at.len = o;
    at
}

/// Computes the UDP checksum of an untagged IPv6 frame with no extension headers (pseudo-header
/// of RFC 8200 §8.1). Returns false if the frame is not that shape.
pub fn set_udp6_checksum(frame: &mut [u8]) -> bool {
    if frame.len() < MSG6_OFF {
        return false;
    }
    let udp_len = usize::from(u16::from_be_bytes([
        frame[UDP6_OFF + 4],
        frame[UDP6_OFF + 5],
    ]));
    if udp_len < 8 || UDP6_OFF + udp_len > frame.len() {
        return false;
    }
    frame[UDP6_OFF + 6] = 0;
    frame[UDP6_OFF + 7] = 0;
    let mut acc = csum_add(0, &frame[IP6_OFF + 8..IP6_OFF + 40]);
    acc += 17 + udp_len as u64;
    acc = csum_add(acc, &frame[UDP6_OFF..UDP6_OFF + udp_len]);
    let mut c = csum_fold(acc);
    if c == 0 {
        c = 0xffff;
    }
    frame[UDP6_OFF + 6..UDP6_OFF + 8].copy_from_slice(&c.to_be_bytes());
    true
}

/// What the generator reads from a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Reply6<'a> {
    pub msg_type: u8,
    /// 24 bits.
    pub xid: u32,
    /// The server identifier's DUID (empty when absent).
    pub server_id: &'a [u8],
    /// The message-level status code (0 when absent).
    pub status: u16,
    /// The IA_NA with IAID 1 was present; its status code and first address.
    pub na: bool,
    pub na_status: u16,
    pub addr: Option<[u8; 16]>,
    /// The IA_PD with IAID 2 was present; its status code and first prefix.
    pub pd: bool,
    pub pd_status: u16,
    pub prefix: Option<([u8; 16], u8)>,
}

impl Reply6<'_> {
    /// Whether the reply grants (ADVERTISE: offers) everything `lt` asked for.
    pub fn grants(&self, lt: LeaseType) -> bool {
        self.status == 0
            && (!lt.na() || (self.na && self.na_status == 0 && self.addr.is_some()))
            && (!lt.pd() || (self.pd && self.pd_status == 0 && self.prefix.is_some()))
    }
}

/// Options of one level: (code, data) pairs; stops at the first truncated option.
fn options(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if b.len() < 4 {
            return None;
        }
        let code = u16::from_be_bytes([b[0], b[1]]);
        let len = usize::from(u16::from_be_bytes([b[2], b[3]]));
        let data = b.get(4..4 + len)?;
        b = &b[4 + len..];
        Some((code, data))
    })
}

fn status_of(d: &[u8]) -> u16 {
    if d.len() >= 2 {
        u16::from_be_bytes([d[0], d[1]])
    } else {
        1 // a status option too short to hold a code: treat as UnspecFail
    }
}

/// Parses a DHCPv6 reply frame arriving on UDP port `port`. Accepts one 802.1Q tag; no IPv6
/// extension headers (servers send none); ignores the UDP checksum (kernel-sent frames over veth
/// carry a partial one). Returns None for anything that is not a DHCPv6 message.
pub fn parse_reply6(frame: &[u8], port: u16) -> Option<Reply6<'_>> {
    let mut off = ETH_HLEN;
    let mut et = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    if et == 0x8100 {
        et = u16::from_be_bytes([*frame.get(16)?, *frame.get(17)?]);
        off += 4;
    }
    if et != 0x86dd {
        return None;
    }
    let ip = frame.get(off..off + 40)?;
    if ip[0] >> 4 != 6 || ip[6] != 17 {
        return None;
    }
    let udp = off + 40;
    let hdr = frame.get(udp..udp + 8)?;
    if u16::from_be_bytes([hdr[2], hdr[3]]) != port {
        return None;
    }
    let udp_len = usize::from(u16::from_be_bytes([hdr[4], hdr[5]]));
    if udp_len < 8 + 4 {
        return None;
    }
    let m = frame.get(udp + 8..udp + udp_len)?;
    let mut r = Reply6 {
        msg_type: m[0],
        xid: u32::from_be_bytes([0, m[1], m[2], m[3]]),
        ..Reply6::default()
    };
    for (code, d) in options(&m[4..]) {
        match code {
            OPT_SERVERID => r.server_id = d,
            OPT_STATUS_CODE => r.status = status_of(d),
            OPT_IA_NA if d.len() >= 12 && !r.na => {
                r.na = true;
                for (c, s) in options(&d[12..]) {
                    match c {
                        OPT_IAADDR if s.len() >= 24 && r.addr.is_none() => {
                            let mut a = [0u8; 16];
                            a.copy_from_slice(&s[..16]);
                            r.addr = Some(a);
                        }
                        OPT_STATUS_CODE => r.na_status = status_of(s),
                        _ => {}
                    }
                }
            }
            OPT_IA_PD if d.len() >= 12 && !r.pd => {
                r.pd = true;
                for (c, s) in options(&d[12..]) {
                    match c {
                        OPT_IAPREFIX if s.len() >= 25 && r.prefix.is_none() => {
                            let mut p = [0u8; 16];
                            p.copy_from_slice(&s[9..25]);
                            r.prefix = Some((p, s[8]));
                        }
                        OPT_STATUS_CODE => r.pd_status = status_of(s),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frames::client_mac;
    use xdhcp_dataplane::wire::dhcp6::{Dhcp6View, Dhcp6Writer, IaKind, MessageType6, Status};
    use xdhcp_dataplane::wire::frame::{parse_udp_frame, L3};

    const LL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0x0c, 0xff, 0xfe00, 2);
    const SRV_DUID: [u8; 14] = [0, 1, 0, 1, 0x2a, 0x2b, 0x2c, 0x2d, 2, 0, 0, 0, 0, 1];

    fn templates(lt: LeaseType) -> Templates6 {
        Templates6::new(Link6::multicast([2, 0, 0, 0, 0, 2], LL), lt)
    }

    fn udp6_checksum_ok(f: &[u8]) -> bool {
        let udp_len = usize::from(u16::from_be_bytes([f[UDP6_OFF + 4], f[UDP6_OFF + 5]]));
        let mut acc = csum_add(0, &f[IP6_OFF + 8..IP6_OFF + 40]);
        acc += 17 + udp_len as u64;
        acc = csum_add(acc, &f[UDP6_OFF..UDP6_OFF + udp_len]);
        csum_fold(acc) == 0
    }

    fn fields(server_id: &[u8]) -> Fields6<'_> {
        Fields6 {
            xid: 0x00ab_cdef,
            mac: client_mac(7, 0x0102_0304),
            addr: Ipv6Addr::new(0x2001, 0xdb8, 0x64, 0, 0, 0, 0, 0x42).octets(),
            prefix: Ipv6Addr::new(0x2001, 0xdb8, 0xc000, 0x4200, 0, 0, 0, 0).octets(),
            prefix_len: 56,
            server_id,
        }
    }

    #[test]
    fn requests_parse_with_the_servers_own_codecs_and_valid_checksums() {
        for lt in [
            LeaseType::Address,
            LeaseType::Prefix,
            LeaseType::AddressAndPrefix,
        ] {
            let t = templates(lt);
            for kind in [Kind6::Solicit, Kind6::Request] {
                let mut buf = [0u8; 2048];
                let f = fields(&SRV_DUID);
                let n = t.write(kind, &f, &mut buf);
                assert!(n > MSG6_OFF && n <= MAX_FRAME6, "{lt:?} {kind:?}: {n}");
                let fr = &buf[..n];
                assert!(udp6_checksum_ok(fr), "UDP checksum of {lt:?} {kind:?}");
                let uf = parse_udp_frame(fr).expect("server parses the frame");
                assert_eq!((uf.src_port, uf.dst_port), (546, 547));
                assert_eq!(uf.dst_mac, ALL_SERVERS_MAC);
                match uf.l3 {
                    L3::V6 { src, dst, .. } => assert_eq!((src, dst), (LL, ALL_SERVERS)),
                    l3 => panic!("not IPv6: {l3:?}"),
                }
                assert_eq!(uf.payload_end, n, "lengths agree");
                let v =
                    Dhcp6View::parse(&fr[uf.payload_start..uf.payload_end]).expect("DHCPv6 parses");
                assert_eq!(v.xid(), [0xab, 0xcd, 0xef]);
                let mut duid = vec![0, 3, 0, 1];
                duid.extend_from_slice(&f.mac);
                assert_eq!(v.client_id(), Some(&duid[..]), "DUID-LL");
                let ias: Vec<_> = v.ias().collect();
                assert_eq!(ias.len(), usize::from(lt.na()) + usize::from(lt.pd()));
                match kind {
                    Kind6::Solicit => {
                        assert_eq!(v.msg_type(), Ok(MessageType6::Solicit));
                        assert_eq!(v.server_id(), None);
                        assert!(ias
                            .iter()
                            .all(|ia| ia.addrs().count() + ia.prefixes().count() == 0));
                    }
                    Kind6::Request => {
                        assert_eq!(v.msg_type(), Ok(MessageType6::Request));
                        assert_eq!(v.server_id(), Some(&SRV_DUID[..]));
                        for ia in &ias {
                            match ia.kind {
                                IaKind::Na => {
                                    assert_eq!(ia.iaid, IAID_NA);
                                    let a: Vec<_> = ia.addrs().collect();
                                    assert_eq!(a.len(), 1);
                                    assert_eq!(a[0].addr.octets(), f.addr);
                                }
                                IaKind::Pd => {
                                    assert_eq!(ia.iaid, IAID_PD);
                                    let p: Vec<_> = ia.prefixes().collect();
                                    assert_eq!(p.len(), 1);
                                    assert_eq!(
                                        (p[0].prefix.octets(), p[0].prefix_len),
                                        (f.prefix, 56)
                                    );
                                }
                                IaKind::Ta => panic!("no IA_TA is ever sent"),
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn an_oversized_server_id_or_buffer_is_refused() {
        let t = templates(LeaseType::AddressAndPrefix);
        let mut buf = [0u8; 2048];
        let long = [1u8; MAX_DUID + 1];
        assert_eq!(t.write(Kind6::Request, &fields(&long), &mut buf), 0);
        let mut small = [0u8; 64];
        assert_eq!(t.write(Kind6::Solicit, &fields(&[]), &mut small), 0);
    }

    /// A reply frame as a server writes it (the dataplane's writer), swapped addresses and ports.
    fn reply_frame(mt: MessageType6, xid: u32, na: Option<Status>, pd: Option<Status>) -> Vec<u8> {
        let mut f = vec![0u8; 1024];
        f[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
        f[IP6_OFF] = 0x60;
        f[IP6_OFF + 6] = 17;
        f[UDP6_OFF..UDP6_OFF + 2].copy_from_slice(&547u16.to_be_bytes());
        f[UDP6_OFF + 2..UDP6_OFF + 4].copy_from_slice(&546u16.to_be_bytes());
        let x = xid.to_be_bytes();
        let mut w = Dhcp6Writer::new(&mut f[MSG6_OFF..]);
        w.message_header(mt, [x[1], x[2], x[3]]);
        w.option(OPT_CLIENTID, &[0, 3, 0, 1, 2, 7, 1, 2, 3, 4]);
        w.option(OPT_SERVERID, &SRV_DUID);
        if let Some(s) = na {
            w.begin_ia(IaKind::Na, IAID_NA, 1000, 2000);
            if s == Status::Success {
                w.begin_iaaddr(
                    Ipv6Addr::new(0x2001, 0xdb8, 0x64, 0, 0, 0, 0, 9),
                    3000,
                    4000,
                );
                w.end();
            } else {
                w.status(s, "none left");
            }
            w.end();
        }
        if let Some(s) = pd {
            w.begin_ia(IaKind::Pd, IAID_PD, 1000, 2000);
            if s == Status::Success {
                w.begin_iaprefix(
                    Ipv6Addr::new(0x2001, 0xdb8, 0xc000, 0x0900, 0, 0, 0, 0),
                    56,
                    3000,
                    4000,
                );
                w.end();
            } else {
                w.status(s, "none left");
            }
            w.end();
        }
        let n = w.finish().expect("reply fits");
        let udp_len = (8 + n) as u16;
        f[IP6_OFF + 4..IP6_OFF + 6].copy_from_slice(&udp_len.to_be_bytes());
        f[UDP6_OFF + 4..UDP6_OFF + 6].copy_from_slice(&udp_len.to_be_bytes());
        f.truncate(MSG6_OFF + n);
        f
    }

    #[test]
    fn reply_parser_reads_type_xid_server_id_address_prefix_and_status() {
        let f = reply_frame(
            MessageType6::Advertise,
            0x00ab_cdef,
            Some(Status::Success),
            Some(Status::Success),
        );
        let r = parse_reply6(&f, 546).expect("parses");
        assert_eq!((r.msg_type, r.xid), (MSG_ADVERTISE, 0x00ab_cdef));
        assert_eq!(r.server_id, &SRV_DUID[..]);
        assert_eq!(
            r.addr,
            Some(Ipv6Addr::new(0x2001, 0xdb8, 0x64, 0, 0, 0, 0, 9).octets())
        );
        assert_eq!(
            r.prefix,
            Some((
                Ipv6Addr::new(0x2001, 0xdb8, 0xc000, 0x0900, 0, 0, 0, 0).octets(),
                56
            ))
        );
        assert!(r.grants(LeaseType::AddressAndPrefix));
        assert_eq!(parse_reply6(&f, 547), None, "wrong port");

        let f = reply_frame(
            MessageType6::Reply,
            5,
            Some(Status::Success),
            Some(Status::NoPrefixAvail),
        );
        let r = parse_reply6(&f, 546).unwrap();
        assert_eq!(r.msg_type, MSG_REPLY);
        assert_eq!(r.pd_status, Status::NoPrefixAvail as u16);
        assert!(r.grants(LeaseType::Address));
        assert!(!r.grants(LeaseType::AddressAndPrefix));
        assert!(!r.grants(LeaseType::Prefix));
        let f = reply_frame(MessageType6::Reply, 5, None, None);
        let r = parse_reply6(&f, 546).unwrap();
        assert!(!r.grants(LeaseType::Address), "no IA_NA at all");
    }

    /// Runs a classic BPF program (the opcodes the packet-socket filters use) over a frame and
    /// returns what it accepts (0 = drop).
    fn run_cbpf(prog: &[libc::sock_filter], pkt: &[u8]) -> u32 {
        let mut a: u32 = 0;
        let mut pc = 0;
        loop {
            let i = prog[pc];
            let k = i.k as usize;
            pc += 1;
            match i.code {
                0x28 => match pkt.get(k..k + 2) {
                    Some(b) => a = u32::from(u16::from_be_bytes([b[0], b[1]])),
                    None => return 0,
                },
                0x30 => match pkt.get(k) {
                    Some(b) => a = u32::from(*b),
                    None => return 0,
                },
                0x15 => pc += usize::from(if a == i.k { i.jt } else { i.jf }),
                0x06 => return i.k,
                c => panic!("opcode {c:#x} not modelled"),
            }
        }
    }

    #[test]
    fn the_packet_socket_filter_takes_replies_on_546_and_nothing_else() {
        let filter = crate::port::udp6_port_filter(CLIENT_PORT);
        let reply = reply_frame(MessageType6::Reply, 1, Some(Status::Success), None);
        assert_ne!(
            run_cbpf(&filter, &reply),
            0,
            "a DHCPv6 reply to 546 is taken"
        );
        let t = templates(LeaseType::Address);
        let mut buf = [0u8; 2048];
        let n = t.write(Kind6::Solicit, &fields(&[]), &mut buf);
        assert_eq!(run_cbpf(&filter, &buf[..n]), 0, "a request to 547 is not");
        let mut icmp = reply.clone();
        icmp[IP6_OFF + 6] = 58;
        assert_eq!(run_cbpf(&filter, &icmp), 0, "ICMPv6 is not");
        let mut v4 = reply.clone();
        v4[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        assert_eq!(run_cbpf(&filter, &v4), 0, "IPv4 is not");
        assert_eq!(run_cbpf(&filter, &reply[..20]), 0, "a runt is not");
    }

    #[test]
    fn the_parser_never_panics_on_truncated_or_corrupted_frames() {
        let f = reply_frame(
            MessageType6::Reply,
            77,
            Some(Status::Success),
            Some(Status::Success),
        );
        for cut in 0..f.len() {
            let _ = parse_reply6(&f[..cut], 546);
        }
        // Every byte set to every interesting value: still no panic.
        for i in 0..f.len() {
            for v in [0u8, 1, 0x7f, 0xff] {
                let mut g = f.clone();
                g[i] = v;
                let _ = parse_reply6(&g, 546);
            }
        }
        let t = templates(LeaseType::Address);
        let mut buf = [0u8; 2048];
        let n = t.write(Kind6::Solicit, &fields(&[]), &mut buf);
        assert_eq!(
            parse_reply6(&buf[..n], 546),
            None,
            "a request is on port 547"
        );
        assert_eq!(
            parse_reply6(&buf[..n], 547).map(|r| r.msg_type),
            Some(MSG_SOLICIT)
        );
    }
}
